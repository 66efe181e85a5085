//! Simulated media peers and test audio: the far ends that stand in for Meta's media servers and
//! for browsers in tests, in the sandbox and in the load test.
//!
//! *Owns*: nothing of switchboard's; each peer owns its own `Rtc` and UDP socket.
//!
//! *Does not touch*: switchboard's engine, calls or HTTP. A peer speaks only the real protocols
//! (ICE, DTLS, SRTP, RTP) over real sockets, so what passes with it passes on the wire.

#[cfg(feature = "test-support")]
pub mod agent;
pub mod audio;
#[cfg(feature = "test-support")]
pub mod memory;
pub mod peer;
pub mod relay;
