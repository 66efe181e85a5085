//! The per-packet forwarding path, in one process, with no sockets: a str0m peer sends SRTP to
//! the engine's WhatsApp leg, the engine decrypts, rewrites and re-encrypts it toward a browser
//! leg. Only the engine's own calls are timed (`handle_datagram`, `handle_timeout` when due,
//! `poll_transmit`); the peers are driven outside the measurement. Time is simulated so that
//! every call's caller sends 50 packets a second: with many calls, each packet's figure carries
//! its share of every leg's timers (RTCP, ICE consent, stats), as on a loaded server.
//!
//! `200_calls_pool` spreads the same 200 calls over a pool of 200 local ports (one socket per
//! call, as calls from one Meta relay are placed) against `200_calls` on one port: the pool's
//! cost per packet is its demultiplexing by (socket, address).
//!
//! Run: `cargo bench --bench forward`.

use criterion::{criterion_group, criterion_main, Criterion};
use switchboard::sim::memory::MemoryNet;

fn forward(c: &mut Criterion) {
    for (calls, ports, name) in [
        (1usize, 1u16, "1_calls"),
        (200, 1, "200_calls"),
        (200, 200, "200_calls_pool"),
    ] {
        let mut h = MemoryNet::with_ports(calls, ports);
        c.bench_function(&format!("forward_one_packet/{name}"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| h.step()).sum())
        });
        if h.seq == 1 {
            continue; // filtered out on the command line
        }
        eprintln!(
            "{calls} calls on {ports} ports: {} packets, {} leg timeouts",
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
