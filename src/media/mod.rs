//! The media engine: answers WebRTC offers with str0m and relays Opus between legs, packet for
//! packet, never decoding it.
//!
//! *Owns*: the pool of UDP sockets, every `str0m::Rtc` (one leg each: a WhatsApp call's leg, a browser
//! session's leg), the forwarding table (which leg's audio feeds which outgoing stream), each
//! outgoing stream's SSRC, sequence numbers and timestamps, silence and DTMF generation, and
//! per-leg statistics. [`ogg`] reads Ogg/Opus files into packets to play (pure, no decoding).
//!
//! *Does not touch*: HTTP, WhatsApp's JSON, agents, queues, calls. It knows legs and streams;
//! what they mean is decided by `calls`.
//!
//! *Invariants*:
//! - [`Engine`] is sans-IO: it is fed datagrams, commands and the current time and returns
//!   transmits, events and its next deadline. [`MediaDriver`] is the only async code here.
//! - After every input to an `Rtc`, its output is drained until it reports a timeout.
//! - Payload bytes are never changed; only the RTP header's payload type, SSRC, sequence number
//!   and timestamp are rewritten per destination (see [`rewrite`]).
//! - A WhatsApp leg, once started, sends a packet every 20 ms until it is closed, whatever its
//!   source does (Meta ends calls that receive no media: reference §6).
//! - A datagram finds its leg through maps keyed by (local socket, remote address), the STUN
//!   username or the offered candidate, never a scan of all legs; the per-packet path takes no
//!   lock and allocates nothing of its own.
//! - No two live legs whose remote has the same address share a local socket (placement, in
//!   `Engine::answer_*`): the 5-tuple is all either end can demultiplex by, and Meta's relays
//!   send many calls from one address. A WhatsApp offer no socket can take is refused.
//! - Everything outside input can make the engine hold is bounded ([`Limits`]).
//! - Nothing received from the network can panic the engine: a leg whose `Rtc` fails or panics
//!   is discarded and reported failed; the others carry on.

mod driver;
pub mod dtmf;
mod engine;
mod error;
mod leg;
pub mod ogg;
pub mod recv;
pub mod rewrite;
mod sdp;

pub use driver::{Bind, DriverCounters, EngineHandle, LegOp, MediaDriver, Ports, Posted};
pub(crate) use engine::peer_provider;
pub use engine::{
    Answer, ByLeg, Counters, Engine, EngineConfig, FailReason, Limits, MediaEvent, Transmit,
    OPUS_SILENCE,
};
pub use error::MediaError;
pub use leg::{LegKind, LegStats};

/// Hold audio of its own for one WhatsApp leg (an account's, see [`Engine::set_hold_audio`]):
/// Opus packets of 20 ms, played in a loop. Cheap to clone; two are equal when they are the
/// same clip (not compared byte by byte).
#[derive(Clone)]
pub struct HoldAudio(pub std::sync::Arc<[std::sync::Arc<[u8]>]>);

impl std::fmt::Debug for HoldAudio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HoldAudio({} packets)", self.0.len())
    }
}

impl PartialEq for HoldAudio {
    fn eq(&self, other: &HoldAudio) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for HoldAudio {}
