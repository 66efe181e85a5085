//! The media engine's one error type.

use crate::ids::{LegId, StreamId};

/// What can go wrong when the rest of the program asks the engine for something.
///
/// Grouped by fault: the remote peer's SDP (`InvalidOffer`, `Unsupported…`), the caller's use of
/// the API (`UnknownLeg`, …), and our own side (`Rtc`, `Io`, `EngineGone`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// The offer is not SDP we can read, or breaks a rule we enforce; no leg was created.
    #[error("invalid SDP offer: {reason}")]
    InvalidOffer {
        /// What is wrong, for the log line and the remote's error message.
        reason: String,
    },
    /// The offer carries no DTLS fingerprint we can verify (only sha-256 is accepted).
    #[error("SDP offer has no sha-256 fingerprint (found: {found})")]
    NoSha256Fingerprint {
        /// The hash functions offered, e.g. `none` or `sha-1`.
        found: String,
    },
    /// The offer and our configuration have no audio codec in common (we only relay Opus).
    #[error("SDP offer has no Opus 48000/2 audio we can relay")]
    NoOpus,
    /// str0m refused the offer or failed to build the answer.
    #[error("WebRTC engine refused the offer: {0}")]
    Rtc(#[from] str0m::RtcError),
    /// The leg does not exist (never did, or has been closed or failed).
    #[error("no such leg: {leg}")]
    UnknownLeg {
        /// The id that was asked for.
        leg: LegId,
    },
    /// The stream does not exist on that leg.
    #[error("no such outgoing stream: {stream}")]
    UnknownStream {
        /// The id that was asked for.
        stream: StreamId,
    },
    /// The operation needs a WhatsApp leg but was given a browser leg (or the reverse).
    #[error("{leg} is not a {expected} leg")]
    WrongLegKind {
        /// The leg.
        leg: LegId,
        /// What kind was needed.
        expected: &'static str,
    },
    /// A DTMF digit outside `0-9 * # A-D`.
    #[error("invalid DTMF digit {digit:?}")]
    InvalidDigit {
        /// The character.
        digit: char,
    },
    /// The peer did not negotiate telephone-event/8000, so digits cannot be sent to it.
    #[error("{leg} did not negotiate telephone-event/8000")]
    NoTelephoneEvent {
        /// The leg.
        leg: LegId,
    },
    /// A route would send a leg's own audio back to itself.
    #[error("cannot route {leg} to its own stream")]
    RouteToSelf {
        /// The leg.
        leg: LegId,
    },
    /// Every local socket already serves a live leg whose remote has this address: a new leg
    /// there would share a 5-tuple with it, and neither end could demultiplex the two.
    #[error(
        "no free media port for a new call from {remote}: all {ports} ports already carry a \
         call from that address (widen SWITCHBOARD_MEDIA_PORTS)"
    )]
    NoFreePort {
        /// The remote address (the offer's first candidate).
        remote: std::net::SocketAddr,
        /// How many ports the pool has.
        ports: usize,
    },
    /// The engine already holds its maximum number of legs.
    #[error("the media engine already holds its limit of {limit} legs")]
    TooManyLegs {
        /// The limit.
        limit: usize,
    },
    /// A browser offer carries more audio m-lines than allowed.
    #[error("the offer has {offered} m-lines; at most {limit} are accepted")]
    TooManyStreams {
        /// How many the offer has.
        offered: usize,
        /// The limit.
        limit: usize,
    },
    /// Too many DTMF digits are already waiting to be sent on the leg.
    #[error("{leg} already has {limit} DTMF digits queued")]
    DtmfQueueFull {
        /// The leg.
        leg: LegId,
        /// The limit.
        limit: usize,
    },
    /// The engine's settings are unusable.
    #[error("media engine configuration: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// The UDP socket could not be bound or used.
    #[error("media socket: {0}")]
    Io(#[from] std::io::Error),
    /// The engine thread has stopped (shutdown, or a bug); the command was not carried out.
    #[error("media engine is not running")]
    EngineGone,
}
