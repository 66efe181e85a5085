//! The time as the program's state machines and their drivers read it: tokio's clock, so that
//! they run on simulated time in their tests (`start_paused`); in the program (no `test-util`)
//! it is the system's monotonic clock, as `Instant::now()`.

use std::time::Instant;

/// Now.
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}
