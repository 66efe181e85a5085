//! The sans-IO engine: every leg, the forwarding table, demultiplexing, pacing and timers.
//!
//! Inputs: [`Engine::handle_datagram`], [`Engine::handle_timeout`] and the command methods
//! (`answer_*`, `route`, `start_sending`, `send_dtmf`, `close`). Outputs:
//! [`Engine::poll_transmit`], [`Engine::poll_event`], [`Engine::poll_timeout`]. The engine never
//! reads the clock and owns no socket: time comes in with every input.
//!
//! After every input to an `Rtc` the engine drains that `Rtc`'s `poll_output` until it reports a
//! timeout (str0m notes §0: in RTP mode an undrained packet is overwritten by the next).
//!
//! *Owns* (here): the [`Engine`] itself, its settings ([`EngineConfig`], [`Limits`]), what it
//! hands out ([`MediaEvent`], [`Transmit`], [`Answer`]) and the generation-checked leg table.
//! The methods on [`Engine`] are spread over one submodule per concern:
//! - [`answer`]: answering offers with new legs, and placing each on a socket;
//! - [`forward`]: the forwarding table (routes, crossings between shards) and relaying a packet;
//! - [`pace`]: what the engine sends of its own on a WhatsApp stream (silence, hold audio, DTMF);
//! - [`io`]: datagrams and time in, transmits, events and deadlines out, and the drain loop;
//! - [`lifecycle`]: filing, closing, failing and removing legs;
//! - [`counters`]: the engine-wide counters;
//! - [`dtls`]: the DTLS every leg runs (str0m's crypto with switchboard's dimpl settings);
//! - [`offer`]: legs this engine offers: internal legs between two nodes' engines, and the
//!   WhatsApp legs of business-initiated calls.
//!
//! *Does not touch*: sockets, the clock, threads (the driver's); what a leg or a stream means
//! (`calls`').

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::config::{CryptoProvider, DtlsCert};

use super::leg::{Leg, LegKind, LegStats};
use super::MediaError;
use crate::ids::{LegId, StreamId};

/// The Opus packet sent when a paced stream has nothing else: TOC 0xF8 (CELT-only, fullband,
/// 20 ms, one frame) followed by the common two-byte silence frame (str0m notes §3).
pub const OPUS_SILENCE: [u8; 3] = [0xF8, 0xFF, 0xFE];

/// The payload types every leg offers or answers with: Opus, and telephone-event at 8 kHz.
const OPUS_PT: u8 = 111;
const TELE_PT: u8 = 126;

mod answer;
mod counters;
mod dtls;
mod forward;
mod io;
mod lifecycle;
mod offer;
mod pace;

pub use counters::{ByLeg, Counters};
pub(crate) use dtls::peer_provider;
pub(super) use forward::Crossing;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The IPv4 (or only) address in our candidates: where peers send, and the local address
    /// str0m matches incoming datagrams against.
    pub public_ip: IpAddr,
    /// An IPv6 address to offer as a second host candidate (Meta offers one of each).
    pub public_ip6: Option<IpAddr>,
    /// The local UDP ports, one per socket of the pool; a socket is named by its index here.
    /// At least one. [`super::MediaDriver`] fills it with the ports it bound.
    pub ports: Vec<u16>,
    /// Engine threads ("shards") the driver runs, each an [`Engine`] of its own with its share
    /// of the ports and the legs placed on them; calls whose legs live on two shards are
    /// forwarded between them ([`Crossing`]). At least 1, at most the ports and 64. One
    /// `Engine` on its own ignores it.
    pub shards: usize,
    /// A leg that has not connected in this time fails.
    pub connect_timeout: Duration,
    /// A connected leg that has received nothing for this long fails.
    pub idle_timeout: Duration,
    /// How often legs report statistics.
    pub stats_interval: Duration,
    /// Bounds on what outside input can make the engine hold.
    pub limits: Limits,
    /// Hold audio: Opus packets of 20 ms, played in a loop on a held WhatsApp stream (read once
    /// from an Ogg/Opus file by the caller, see [`super::ogg`]). Empty: silence instead.
    pub hold_audio: Arc<[Arc<[u8]>]>,
}

/// Bounds on what peers and callers can make the engine hold. Each one, when hit, gives a
/// typed error or drops and counts (see [`Counters`]); none lets memory grow without bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Legs alive at once; an offer past it is refused ([`MediaError::TooManyLegs`]).
    pub max_legs: usize,
    /// Audio m-lines a browser offer may carry (a supervisor's page needs two); more is
    /// refused ([`MediaError::TooManyStreams`]). At most 255: stream indexes are a `u8`.
    pub max_browser_streams: usize,
    /// Events the engine holds for the program before it drops statistics and DTMF events
    /// (counted in [`Counters::events_dropped`]). Lifecycle events (connected, failed, closed)
    /// are never dropped: there are at most three per leg, so `max_legs` bounds them.
    pub max_pending_events: usize,
    /// DTMF digits queued for sending on one leg; more is refused
    /// ([`MediaError::DtmfQueueFull`]).
    pub max_dtmf_queue: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_legs: 20_000,
            max_browser_streams: 4,
            max_pending_events: 16_384,
            max_dtmf_queue: 64,
        }
    }
}

/// What the engine tells the rest of the program.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// ICE and DTLS are up: media can flow.
    Connected {
        /// The leg.
        leg: LegId,
    },
    /// The leg failed and is gone.
    Failed {
        /// The leg.
        leg: LegId,
        /// Why.
        reason: FailReason,
    },
    /// The leg was closed (by us, or by the peer) and is gone.
    Closed {
        /// The leg.
        leg: LegId,
        /// True when the peer closed first (DTLS close_notify).
        by_remote: bool,
    },
    /// A DTMF digit arrived on the leg (RFC 4733), reported once per key press.
    Dtmf {
        /// The leg.
        leg: LegId,
        /// `0-9`, `*`, `#`, `A-D`.
        digit: char,
        /// How long the key was held, as the sender reports.
        duration: Duration,
    },
    /// Periodic statistics.
    Stats {
        /// The leg.
        leg: LegId,
        /// Its kind.
        kind: LegKind,
        /// The figures.
        stats: LegStats,
    },
    /// The first packet of a WhatsApp stream went out after [`Engine::start_sending`] (silence,
    /// hold audio or forwarded audio, whichever came first).
    FirstPacket {
        /// The stream.
        stream: StreamId,
    },
    /// The first packet from a stream's new source (after [`Engine::route`] changed it) was
    /// written to the stream.
    SourceFlowing {
        /// The stream.
        stream: StreamId,
        /// Its source.
        source: LegId,
    },
}

impl MediaEvent {
    /// Events only statistics or metrics depend on (and DTMF, which a peer can flood): past
    /// `max_pending_events` these are dropped and counted. Lifecycle events are always kept.
    pub fn is_droppable(&self) -> bool {
        !matches!(
            self,
            MediaEvent::Connected { .. } | MediaEvent::Failed { .. } | MediaEvent::Closed { .. }
        )
    }
}

/// Why a leg failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// ICE and DTLS did not complete within the connect timeout.
    ConnectTimeout,
    /// Nothing (no media, no consent checks) arrived within the idle timeout.
    Silent,
    /// str0m returned an error or panicked on this leg; it was discarded.
    Internal,
}

/// A datagram to send.
#[derive(Debug)]
pub struct Transmit {
    /// The local socket to send it from: an index into [`EngineConfig::ports`] (the IPv4 or
    /// IPv6 socket of that port, after the destination's family).
    pub socket: usize,
    /// Where to.
    pub destination: SocketAddr,
    /// The bytes.
    pub contents: Vec<u8>,
}

/// The result of answering an offer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The new leg.
    pub leg: LegId,
    /// The SDP answer, final: send it verbatim (for WhatsApp, in both pre_accept and accept).
    pub sdp: String,
    /// The leg's outgoing streams, in SDP order.
    pub streams: Vec<StreamId>,
}
struct Slot {
    generation: u32,
    leg: Option<Leg>,
}

/// The leg table: a slab indexed by `LegId::slot`, generation-checked so a stale id finds nothing.
/// A struct of its own so that borrowing a leg borrows only the table, not the whole engine.
#[derive(Default)]
struct Legs {
    /// The shard these legs belong to: an id of another shard's leg finds nothing here.
    shard: u8,
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
}

impl Legs {
    fn alloc(&mut self) -> LegId {
        if let Some(slot) = self.free.pop() {
            LegId {
                shard: self.shard,
                slot,
                generation: self.slots[slot as usize].generation,
            }
        } else {
            self.slots.push(Slot {
                generation: 0,
                leg: None,
            });
            LegId {
                shard: self.shard,
                slot: (self.slots.len() - 1) as u32,
                generation: 0,
            }
        }
    }

    fn is_local(&self, id: LegId) -> bool {
        id.shard == self.shard
    }

    /// Every live leg.
    fn iter(&self) -> impl Iterator<Item = &Leg> {
        self.slots.iter().filter_map(|s| s.leg.as_ref())
    }

    fn get(&self, id: LegId) -> Option<&Leg> {
        if id.shard != self.shard {
            return None;
        }
        let slot = self.slots.get(id.slot as usize)?;
        (slot.generation == id.generation)
            .then_some(slot.leg.as_ref())
            .flatten()
    }

    fn get_mut(&mut self, id: LegId) -> Option<&mut Leg> {
        if id.shard != self.shard {
            return None;
        }
        let slot = self.slots.get_mut(id.slot as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.leg.as_mut()
    }

    /// Removes the leg; its slot's next tenant gets a new generation.
    fn take(&mut self, id: LegId) -> Option<Leg> {
        if id.shard != self.shard {
            return None;
        }
        let slot = self.slots.get_mut(id.slot as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        let leg = slot.leg.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.slot);
        self.live -= 1;
        Some(leg)
    }
}
/// The media engine. See the module docs.
pub struct Engine {
    cfg: EngineConfig,
    cert: DtlsCert,
    /// The crypto every leg uses: str0m's, with switchboard's DTLS provider ([`dtls`]).
    crypto: Arc<CryptoProvider>,
    legs: Legs,
    /// Established flows: (local socket, remote address) → leg. Looked up for every datagram,
    /// so hashed with foldhash (seeded per process: remote addresses are the peer's choice).
    by_addr: foldhash::HashMap<(usize, SocketAddr), LegId>,
    by_ufrag: HashMap<String, LegId>,
    /// Remote candidates offered to full-ICE legs: (local socket, candidate) → the one leg on
    /// that socket with that candidate. One, because placement never puts two legs with the same
    /// remote address on one socket: that is what lets both ends demultiplex.
    by_candidate: foldhash::HashMap<(usize, SocketAddr), LegId>,
    /// Where placement starts looking next (round robin over the sockets).
    next_socket: usize,
    timers: BinaryHeap<Reverse<(Instant, LegId)>>,
    paced: Vec<StreamId>,
    next_tick: Option<Instant>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<MediaEvent>,
    crossings: VecDeque<Crossing>,
    counters: Counters,
    silence: Arc<[u8]>,
}

impl Engine {
    /// A new engine with no legs. Generates the DTLS certificate every leg shares (one per
    /// engine, as mediasoup does per worker: certificate generation is the costliest step of a
    /// new leg).
    pub fn new(cfg: EngineConfig) -> Result<Engine, MediaError> {
        Engine::shard(cfg, 0)
    }

    /// A new engine that is shard `index` of a sharded driver: its legs' ids name the shard,
    /// and routes to legs of other shards go out through [`Engine::poll_crossing`].
    pub fn shard(cfg: EngineConfig, index: u8) -> Result<Engine, MediaError> {
        if cfg.ports.is_empty() {
            return Err(MediaError::InvalidConfig {
                reason: "the engine needs at least one local port".into(),
            });
        }
        if cfg.limits.max_browser_streams == 0 || cfg.limits.max_browser_streams > 255 {
            return Err(MediaError::InvalidConfig {
                reason: format!(
                    "max_browser_streams is {}; it must be between 1 and 255",
                    cfg.limits.max_browser_streams
                ),
            });
        }
        // str0m 0.25 with aws-lc-rs makes an ECDSA P-256 certificate (dimpl's generator), the
        // kind Meta recommends; a test below holds it to that.
        let crypto = dtls::provider();
        let cert = crypto.dtls_provider.generate_certificate().ok_or_else(|| {
            MediaError::InvalidOffer {
                reason: "no DTLS certificate could be generated".into(),
            }
        })?;
        Ok(Engine {
            cfg,
            cert,
            crypto,
            legs: Legs {
                shard: index,
                ..Legs::default()
            },
            by_addr: Default::default(),
            by_ufrag: HashMap::new(),
            by_candidate: Default::default(),
            next_socket: 0,
            timers: BinaryHeap::new(),
            paced: Vec::new(),
            next_tick: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            crossings: VecDeque::new(),
            counters: Counters::default(),
            silence: Arc::from(&OPUS_SILENCE[..]),
        })
    }

    /// Number of legs alive.
    pub fn leg_count(&self) -> usize {
        self.legs.live
    }

    /// The counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The local UDP ports, one per socket.
    pub fn ports(&self) -> &[u16] {
        &self.cfg.ports
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.cfg.limits
    }

    /// Events waiting to be polled.
    pub fn pending_events(&self) -> usize {
        self.events.len()
    }
}

/// What the submodules' tests build engines and offers from.
#[cfg(test)]
mod fixtures {
    use super::*;

    pub(super) const META_OFFER: &str = include_str!("../../../tests/fixtures/meta_offer.sdp");

    pub(super) fn engine(ports: Vec<u16>) -> Engine {
        Engine::new(EngineConfig {
            public_ip: [10, 0, 0, 1].into(),
            public_ip6: None,
            ports,
            shards: 1,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            stats_interval: Duration::from_secs(5),
            limits: Limits::default(),
            hold_audio: Arc::from(Vec::new()),
        })
        .unwrap()
    }

    pub(super) fn port_of(answer: &Answer) -> u16 {
        crate::sdp::candidate_addrs(&answer.sdp)[0].port()
    }

    /// Meta's offer, from another relay address.
    pub(super) fn offer_from(ip: &str) -> String {
        META_OFFER.replace("57.144.125.35", ip)
    }
}
