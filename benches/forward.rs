//! The per-packet forwarding path, in one process, with no sockets: a str0m peer sends SRTP to
//! the engine's WhatsApp leg, the engine decrypts, rewrites and re-encrypts it toward a browser
//! leg. Only the engine's own calls are timed (`handle_datagram`, `handle_timeout` when due,
//! `poll_transmit`); the peers are driven outside the measurement. Time is simulated so that
//! every call's caller sends 50 packets a second: with many calls, each packet's figure carries
//! its share of every leg's timers (RTCP, ICE consent, stats), as on a loaded server.
//!
//! Run: `cargo bench --bench forward`.

use criterion::{criterion_group, criterion_main, Criterion};
use switchboard::sim::memory::MemoryNet;

fn forward(c: &mut Criterion) {
    for calls in [1usize, 200] {
        let mut h = MemoryNet::new(calls);
        c.bench_function(&format!("forward_one_packet/{calls}_calls"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| h.step()).sum())
        });
        if h.seq == 1 {
            continue; // filtered out on the command line
        }
        eprintln!(
            "{calls} calls: {} packets, {} leg timeouts",
            h.seq,
            h.engine.counters().leg_timeouts
        );
        let forwarded = h.engine.counters().rtp_forwarded;
        assert!(forwarded > 0, "the agent legs were fed");
        let received = h.received_by_agents();
        assert!(
            received * 10 >= forwarded * 9,
            "the agents received what was forwarded: {received} of {forwarded}"
        );
    }
}

criterion_group!(benches, forward);
criterion_main!(benches);
