//! A fixed run of the per-packet forwarding path, for instruction counts that do not depend on
//! how busy the machine is (issue 26: this shared 2-core machine's timings vary by more than a
//! change of a few per cent). The same in-memory network as `benches/forward.rs`: 200 calls on
//! one port, each caller sending 50 packets a second of simulated time; 20 000 caller packets
//! after a warm-up of 100 per call.
//!
//! Natively (`cargo bench --bench forward_steps`) it prints the engine's time per packet. Under
//! callgrind it counts only the engine's own calls, from the first measured packet on:
//!
//! ```text
//! valgrind --tool=callgrind --zero-before=forward_steps_measured \
//!   --toggle-collect='*Engine*handle_datagram*' --toggle-collect='*Engine*handle_timeout*' \
//!   --toggle-collect='*Engine*poll_transmit*' target/release/deps/forward_steps-<hash>
//! callgrind_annotate callgrind.out.<pid> | grep 'PROGRAM TOTALS'
//! ```

use std::hint::black_box;
use std::time::Duration;

use switchboard::sim::memory::MemoryNet;

const CALLS: usize = 200;
const STEPS: usize = 20_000;

/// Where counting starts (callgrind's `--zero-before` names it).
#[inline(never)]
#[no_mangle]
pub extern "C" fn forward_steps_measured(seq: u64) -> u64 {
    black_box(seq)
}

fn main() {
    let mut net = MemoryNet::with_ports(CALLS, 1);
    for _ in 0..CALLS * 100 {
        net.step();
    }
    let (seq, forwarded, timeouts) = (
        net.seq,
        net.engine.counters().rtp_forwarded,
        net.engine.counters().leg_timeouts,
    );
    forward_steps_measured(seq);
    let mut engine_time = Duration::ZERO;
    for _ in 0..STEPS {
        engine_time += net.step();
    }
    let forwarded = net.engine.counters().rtp_forwarded - forwarded;
    assert!(forwarded > 0, "packets were forwarded");
    println!(
        "{CALLS} calls: {} caller packets, {forwarded} forwarded, {} leg timeouts, \
         engine {:.2} µs per forwarded packet",
        net.seq - seq,
        net.engine.counters().leg_timeouts - timeouts,
        engine_time.as_secs_f64() * 1e6 / forwarded as f64
    );
}
