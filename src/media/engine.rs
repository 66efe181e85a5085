//! The sans-IO engine: every leg, the forwarding table, demultiplexing, pacing and timers.
//!
//! Inputs: [`Engine::handle_datagram`], [`Engine::handle_timeout`] and the command methods
//! (`answer_*`, `route`, `start_sending`, `send_dtmf`, `close`). Outputs:
//! [`Engine::poll_transmit`], [`Engine::poll_event`], [`Engine::poll_timeout`]. The engine never
//! reads the clock and owns no socket: time comes in with every input.
//!
//! After every input to an `Rtc` the engine drains that `Rtc`'s `poll_output` until it reports a
//! timeout (str0m notes §0: in RTP mode an undrained packet is overwritten by the next).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::config::DtlsCert;
use str0m::format::{Codec, FormatParams};
use str0m::media::{Frequency, Mid};
use str0m::net::{DatagramRecv, Protocol, Receive};
use str0m::rtp::{Extension, ExtensionMap, RtpPacket, RtpWrite};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tracing::{debug, error, info, trace, warn};

use super::dtmf::{self, Report};
use super::leg::{Leg, LegKind, LegStats, OutStream, Paced, StunKeys};
use super::rewrite::{Producer, FRAME};
use super::sdp::{self, AnswerEdits, OfferShape};
use super::MediaError;
use crate::ids::{LegId, StreamId};

/// The Opus packet sent when a paced stream has nothing else: TOC 0xF8 (CELT-only, fullband,
/// 20 ms, one frame) followed by the common two-byte silence frame (str0m notes §3).
pub const OPUS_SILENCE: [u8; 3] = [0xF8, 0xFF, 0xFE];

/// How long a closing leg may take to flush its goodbye (RTCP BYE, DTLS close_notify).
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Opus fmtp parameters we ask browsers to send with, WhatsApp's own (reference §3.1, §5
/// rule 14), so their packets can be relayed to Meta without transcoding.
/// The payload types every leg offers or answers with: Opus, and telephone-event at 8 kHz.
const OPUS_PT: u8 = 111;
const TELE_PT: u8 = 126;

mod trunk;

/// Opus with Meta's minimum packet time; telephone-event at 8 kHz only (Meta supports no other
/// rate, and a browser offered only 8 kHz sends its DTMF at 8 kHz too).
fn add_codecs(cfg: &mut RtcConfig) {
    cfg.codec_config().add_config(
        OPUS_PT.into(),
        None,
        Codec::Opus,
        Frequency::FORTY_EIGHT_KHZ,
        Some(2),
        FormatParams {
            min_p_time: Some(20),
            use_inband_fec: Some(true),
            ..Default::default()
        },
    );
    cfg.codec_config().add_config(
        TELE_PT.into(),
        None,
        Codec::Tele,
        Frequency::EIGHT_KHZ,
        None,
        FormatParams::default(),
    );
}

const BROWSER_OPUS_FMTP: &str = "maxaveragebitrate=20000;maxplaybackrate=16000;stereo=0";

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

/// A count per kind of leg.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByLeg {
    /// On WhatsApp legs.
    pub whatsapp: u64,
    /// On browser legs.
    pub browser: u64,
    /// On internal legs to other nodes.
    pub trunk: u64,
}

impl ByLeg {
    fn add(&mut self, kind: LegKind, n: u64) {
        match kind {
            LegKind::WhatsApp => self.whatsapp += n,
            LegKind::Browser => self.browser += n,
            LegKind::Trunk => self.trunk += n,
        }
    }

    fn merge(&mut self, o: &ByLeg) {
        self.whatsapp += o.whatsapp;
        self.browser += o.browser;
        self.trunk += o.trunk;
    }
}

/// Engine-wide counters, kept as plain integers and read by whoever flushes metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams handed to the engine.
    pub datagrams_in: u64,
    /// Datagrams no leg claimed (stale peers, scanners).
    pub datagrams_unmatched: u64,
    /// Datagrams that are not STUN, DTLS, RTP or RTCP.
    pub datagrams_malformed: u64,
    /// RTP packets written to an outgoing stream from another leg.
    pub rtp_forwarded: u64,
    /// Of those, by the kind of leg they were sent on.
    pub forwarded_packets: ByLeg,
    /// Their RTP payload bytes, by the kind of leg they were sent on.
    pub forwarded_bytes: ByLeg,
    /// Legs failed because ICE and DTLS did not complete in time, by kind.
    pub failed_connect_timeout: ByLeg,
    /// Legs failed because nothing authenticated arrived within the idle timeout, by kind.
    pub failed_silent: ByLeg,
    /// Legs failed because str0m failed or panicked on them, by kind.
    pub failed_internal: ByLeg,
    /// Silence packets written by the pacer.
    pub silence_sent: u64,
    /// Hold-audio packets written by the pacer.
    pub hold_sent: u64,
    /// Packets of a source dropped because its stream was on hold.
    pub dropped_on_hold: u64,
    /// DTMF reports written by the engine.
    pub dtmf_reports_sent: u64,
    /// Incoming RTP with a payload type we did not negotiate.
    pub dropped_unknown_pt: u64,
    /// Packets routed to a WhatsApp stream before it was started (Meta: no media before accept).
    pub dropped_not_started: u64,
    /// Packets older than their producer's switch-over.
    pub dropped_stale: u64,
    /// Packets of a source dropped while the engine sent its own DTMF on that stream.
    pub dropped_during_dtmf: u64,
    /// Packets from a leg that is no longer its stream's source (they crossed from another
    /// shard while the route changed).
    pub dropped_unrouted: u64,
    /// Packets handed to another shard, whose leg is the destination.
    pub crossed_out: u64,
    /// Packets taken from another shard and forwarded here.
    pub crossed_in: u64,
    /// Legs discarded because str0m failed or panicked on them.
    pub legs_discarded: u64,
    /// Times a leg's timer fired and str0m was given the time.
    pub leg_timeouts: u64,
    /// Statistics and DTMF events dropped because `max_pending_events` were already waiting.
    pub events_dropped: u64,
    /// WhatsApp offers refused because every socket already serves a leg with the same remote
    /// address.
    pub refused_no_port: u64,
    /// Offers refused because `max_legs` legs were alive.
    pub refused_too_many_legs: u64,
    /// Browser offers refused for carrying more than `max_browser_streams` m-lines.
    pub refused_too_many_streams: u64,
    /// DTMF send requests refused because the leg's queue was full.
    pub refused_dtmf_queue_full: u64,
    /// STUN messages on a known flow whose integrity did not check (spoofed or stale).
    pub stun_unauthenticated: u64,
}
impl Counters {
    /// Adds another shard's counters to these (the node's counters are the sum of its shards').
    pub fn merge(&mut self, o: &Counters) {
        self.datagrams_in += o.datagrams_in;
        self.datagrams_unmatched += o.datagrams_unmatched;
        self.datagrams_malformed += o.datagrams_malformed;
        self.rtp_forwarded += o.rtp_forwarded;
        self.forwarded_packets.merge(&o.forwarded_packets);
        self.forwarded_bytes.merge(&o.forwarded_bytes);
        self.failed_connect_timeout.merge(&o.failed_connect_timeout);
        self.failed_silent.merge(&o.failed_silent);
        self.failed_internal.merge(&o.failed_internal);
        self.silence_sent += o.silence_sent;
        self.hold_sent += o.hold_sent;
        self.dropped_on_hold += o.dropped_on_hold;
        self.dtmf_reports_sent += o.dtmf_reports_sent;
        self.dropped_unknown_pt += o.dropped_unknown_pt;
        self.dropped_not_started += o.dropped_not_started;
        self.dropped_stale += o.dropped_stale;
        self.dropped_during_dtmf += o.dropped_during_dtmf;
        self.dropped_unrouted += o.dropped_unrouted;
        self.crossed_out += o.crossed_out;
        self.crossed_in += o.crossed_in;
        self.legs_discarded += o.legs_discarded;
        self.leg_timeouts += o.leg_timeouts;
        self.events_dropped += o.events_dropped;
        self.refused_no_port += o.refused_no_port;
        self.refused_too_many_legs += o.refused_too_many_legs;
        self.refused_too_many_streams += o.refused_too_many_streams;
        self.refused_dtmf_queue_full += o.refused_dtmf_queue_full;
        self.stun_unauthenticated += o.stun_unauthenticated;
    }
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PacketKind {
    Opus,
    Tele,
}

/// What one shard's engine hands another: a packet for a stream whose leg lives there, or a
/// change to a route whose two ends live on different shards. Produced by
/// [`Engine::poll_crossing`], delivered (in order, per pair of shards) to
/// [`Engine::handle_crossing`] of the shard [`Crossing::shard`] names.
#[derive(Debug)]
pub enum Crossing {
    /// A source's packet for a stream on another shard, already read and decrypted.
    Packet(Relayed),
    /// Start sending `src`'s incoming audio to `stream` (the route's destination side is set).
    Subscribe {
        /// The source leg, on the receiving shard.
        src: LegId,
        /// The stream it feeds.
        stream: StreamId,
    },
    /// Stop sending `src`'s audio to `stream`.
    Unsubscribe {
        /// The source leg, on the receiving shard.
        src: LegId,
        /// The stream it fed.
        stream: StreamId,
    },
    /// `src` is gone (or never existed): `stream`, on the receiving shard, has no source now.
    SourceGone {
        /// The stream, on the receiving shard.
        stream: StreamId,
        /// The source that is gone.
        src: LegId,
    },
}

impl Crossing {
    /// The shard the crossing is for.
    pub fn shard(&self) -> usize {
        match self {
            Crossing::Packet(p) => p.dst.leg.shard(),
            Crossing::Subscribe { src, .. } | Crossing::Unsubscribe { src, .. } => src.shard(),
            Crossing::SourceGone { stream, .. } => stream.leg.shard(),
        }
    }
}

/// A packet on its way from one shard to another: what forwarding needs of it, and the payload
/// str0m shares by reference count (crossing copies no audio and allocates nothing).
#[derive(Debug)]
pub struct Relayed {
    dst: StreamId,
    producer: Producer,
    kind: PacketKind,
    seq: u64,
    ts: u32,
    marker: bool,
    payload: Arc<[u8]>,
}

/// A packet being forwarded to one stream.
struct Frame {
    seq: u64,
    ts: u32,
    marker: bool,
    payload: Arc<[u8]>,
}

/// The media engine. See the module docs.
pub struct Engine {
    cfg: EngineConfig,
    cert: DtlsCert,
    legs: Legs,
    /// Established flows: (local socket, remote address) → leg.
    by_addr: HashMap<(usize, SocketAddr), LegId>,
    by_ufrag: HashMap<String, LegId>,
    /// Remote candidates offered to full-ICE legs: (local socket, candidate) → the one leg on
    /// that socket with that candidate. One, because placement never puts two legs with the same
    /// remote address on one socket: that is what lets both ends demultiplex.
    by_candidate: HashMap<(usize, SocketAddr), LegId>,
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
        let provider = str0m::crypto::from_feature_flags();
        let cert = provider
            .dtls_provider
            .generate_certificate()
            .ok_or_else(|| MediaError::InvalidOffer {
                reason: "no DTLS certificate could be generated".into(),
            })?;
        Ok(Engine {
            cfg,
            cert,
            legs: Legs {
                shard: index,
                ..Legs::default()
            },
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_candidate: HashMap::new(),
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

    // ------------------------------------------------------------------ commands

    /// Answers Meta's offer (a user-initiated call's `connect` webhook) with a new WhatsApp leg:
    /// full ICE and controlling, DTLS client (`a=setup:active`), one sha-256 fingerprint, Meta's
    /// mid and payload types, `a=ptime:20`, one SSRC and our candidate inline.
    pub fn answer_whatsapp(&mut self, now: Instant, offer: &str) -> Result<Answer, MediaError> {
        self.answer(now, offer, LegKind::WhatsApp, true)
    }

    /// Answers a browser's offer with a new ICE-lite browser leg. Every m-line must be audio; each
    /// one the browser receives on becomes one of the leg's outgoing streams.
    pub fn answer_browser(&mut self, now: Instant, offer: &str) -> Result<Answer, MediaError> {
        self.answer(now, offer, LegKind::Browser, true)
    }

    /// Answers an offer as [`Engine::answer_whatsapp`] or [`Engine::answer_browser`] do. With
    /// `last_resort` false, a refusal for want of a port or a leg slot is not counted: the
    /// sharded driver then tries the next shard, and only the last one's refusal is the node's.
    pub fn answer(
        &mut self,
        now: Instant,
        offer: &str,
        kind: LegKind,
        last_resort: bool,
    ) -> Result<Answer, MediaError> {
        if self.legs.live >= self.cfg.limits.max_legs {
            self.counters.refused_too_many_legs += u64::from(last_resort);
            return Err(MediaError::TooManyLegs {
                limit: self.cfg.limits.max_legs,
            });
        }
        let shape = match kind {
            LegKind::WhatsApp => OfferShape::WhatsApp,
            LegKind::Browser => OfferShape::Browser {
                max_m_lines: self.cfg.limits.max_browser_streams,
            },
            // Offered by this engine (`offer_trunk`), never answered.
            LegKind::Trunk => {
                return Err(MediaError::InvalidOffer {
                    reason: "an internal leg is offered, not answered".into(),
                })
            }
        };
        let screened = match sdp::screen_offer(offer, shape) {
            Err(e @ MediaError::TooManyStreams { .. }) => {
                self.counters.refused_too_many_streams += 1;
                return Err(e);
            }
            other => other?,
        };
        // Full-ICE legs (WhatsApp) learn their remote's address from the offer, so they can be
        // kept off any socket already talking to that address; browsers are ICE-lite toward us
        // and come from their own NAT address, so any socket will do.
        // Only candidates of a family we have sockets for can ever carry this leg.
        let ip6 = self.cfg.public_ip6.is_some();
        let remote: Vec<SocketAddr> = if kind == LegKind::WhatsApp {
            screened
                .candidates
                .iter()
                .copied()
                .filter(|c| c.is_ipv4() || ip6)
                .collect()
        } else {
            Vec::new()
        };
        let socket = match self.place(&remote) {
            Some(s) => s,
            None => {
                self.counters.refused_no_port += u64::from(last_resort);
                return Err(MediaError::NoFreePort {
                    remote: remote
                        .first()
                        .copied()
                        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
                    ports: self.cfg.ports.len(),
                });
            }
        };
        let parsed =
            SdpOffer::from_sdp_string(&screened.text).map_err(|e| MediaError::InvalidOffer {
                reason: e.to_string(),
            })?;

        let mut cfg = RtcConfig::new()
            .clear_codecs()
            .set_extension_map(audio_extensions())
            .set_rtp_mode(true)
            .set_ice_lite(kind == LegKind::Browser)
            .set_dtls_cert(self.cert.clone())
            .set_stats_interval(Some(self.cfg.stats_interval));
        add_codecs(&mut cfg);
        let mut rtc = cfg.build(now);
        for addr in self.local_addrs(socket) {
            let candidate = Candidate::host(addr, "udp").map_err(|e| MediaError::InvalidOffer {
                reason: format!("local candidate: {e}"),
            })?;
            rtc.add_local_candidate(candidate);
        }
        // The offer came from the network: a str0m bug on odd SDP must cost this offer only.
        let answer = catch_unwind(AssertUnwindSafe(|| rtc.sdp_api().accept_offer(parsed)))
            .map_err(|_| MediaError::InvalidOffer {
                reason: "the WebRTC engine could not process this offer".into(),
            })??;
        let answer_text = answer.to_sdp_string();

        let mids = sdp::mids(&answer_text);
        let (opus_pt, tele_pt) = negotiated(&rtc, &mids).ok_or(MediaError::NoOpus)?;
        let mut outs = Vec::new();
        for mid in &mids {
            let mid = Mid::from(mid.as_str());
            if let Some(tx) = rtc.direct_api().stream_tx_by_mid(mid, None) {
                outs.push(OutStream::new(tx.ssrc(), kind == LegKind::WhatsApp));
            }
        }
        if kind == LegKind::WhatsApp && outs.len() != 1 {
            return Err(MediaError::InvalidOffer {
                reason: "the offer does not let us send audio (a WhatsApp offer is sendrecv)"
                    .into(),
            });
        }
        // Screening capped the m-lines at 255 or fewer, so every index fits.
        let Ok(stream_count) = u8::try_from(outs.len()) else {
            return Err(MediaError::TooManyStreams {
                offered: outs.len(),
                limit: self.cfg.limits.max_browser_streams,
            });
        };
        let edits = match kind {
            // Meta's answer keeps the shape it is known to take.
            LegKind::WhatsApp => AnswerEdits {
                ptime: true,
                drop_trickle: true,
                opus_fmtp_extra: None,
                complete_candidates: false,
            },
            LegKind::Browser | LegKind::Trunk => AnswerEdits {
                ptime: true,
                drop_trickle: false,
                opus_fmtp_extra: Some(BROWSER_OPUS_FMTP),
                complete_candidates: matches!(kind, LegKind::Browser),
            },
        };
        let sdp_text = sdp::edit_answer(&answer_text, *opus_pt, edits);
        let local_creds = rtc.direct_api().local_ice_credentials();

        let id = self.legs.alloc();
        let streams = (0..stream_count)
            .map(|index| StreamId { leg: id, index })
            .collect();
        let candidates = remote;
        for c in &candidates {
            self.by_candidate.insert((socket, *c), id);
        }
        self.by_ufrag.insert(local_creds.ufrag.clone(), id);
        let mut leg = Leg::new(
            id,
            kind,
            rtc,
            socket,
            now,
            local_creds.ufrag,
            StunKeys {
                local: local_creds.pass,
                remote: screened.ice_pwd,
            },
        );
        leg.opus_pt = opus_pt;
        leg.tele_pt = tele_pt;
        leg.outs = outs;
        leg.candidates = candidates;
        self.install(now, leg);
        Ok(Answer {
            leg: id,
            sdp: sdp_text,
            streams,
        })
    }

    /// Files a new leg and lets str0m produce what it has to send.
    fn install(&mut self, now: Instant, leg: Leg) {
        let (id, kind, socket) = (leg.id, leg.kind, leg.socket);
        self.legs.slots[id.slot as usize].leg = Some(leg);
        self.legs.live += 1;
        info!(leg = %id, kind = kind.name(), port = self.cfg.ports[socket], "leg created");
        self.drain(now, id);
    }

    /// The socket for a new leg whose remote side will send from `remote`: the next one, round
    /// robin, on which no live leg talks to any of those addresses. Two legs with one remote
    /// address on one local socket share a 5-tuple, and neither end could tell their STUN, DTLS
    /// and SRTP apart (Meta's relays send many calls from one address: reference §9).
    fn place(&mut self, remote: &[SocketAddr]) -> Option<usize> {
        let n = self.cfg.ports.len();
        for k in 0..n {
            let s = (self.next_socket + k) % n;
            let taken = remote.iter().any(|r| {
                self.by_candidate.contains_key(&(s, *r)) || self.by_addr.contains_key(&(s, *r))
            });
            if !taken {
                self.next_socket = (s + 1) % n;
                return Some(s);
            }
        }
        None
    }

    /// Our candidate addresses on `socket`: the IPv4 one and, when configured, the IPv6 one.
    fn local_addrs(&self, socket: usize) -> impl Iterator<Item = SocketAddr> + '_ {
        let port = self.cfg.ports[socket];
        std::iter::once(SocketAddr::new(self.cfg.public_ip, port))
            .chain(self.cfg.public_ip6.map(|ip| SocketAddr::new(ip, port)))
    }

    /// The local address a datagram from `source` arrived at, as str0m's candidates name it.
    fn local_addr_for(&self, socket: usize, source: SocketAddr) -> SocketAddr {
        let port = self.cfg.ports[socket];
        match (source, self.cfg.public_ip6) {
            (SocketAddr::V6(_), Some(ip6)) => SocketAddr::new(ip6, port),
            _ => SocketAddr::new(self.cfg.public_ip, port),
        }
    }

    /// The local UDP ports, one per socket.
    pub fn ports(&self) -> &[u16] {
        &self.cfg.ports
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.cfg.limits
    }

    /// Points an outgoing stream at a source leg's incoming audio (`None`: nothing, which on a
    /// WhatsApp stream means silence). Takes effect with the next packet; the receiver sees one
    /// continuous stream across any number of changes.
    ///
    /// The stream's leg must be this shard's. A source on another shard is subscribed to through
    /// a [`Crossing`]; if it turns out to be gone, a [`Crossing::SourceGone`] comes back and
    /// the stream falls back to silence, as when a same-shard source closes.
    pub fn route(&mut self, stream: StreamId, source: Option<LegId>) -> Result<(), MediaError> {
        if let Some(src) = source {
            if src == stream.leg {
                return Err(MediaError::RouteToSelf { leg: src });
            }
            if self.legs.is_local(src) && self.legs.get(src).is_none() {
                return Err(MediaError::UnknownLeg { leg: src });
            }
        }
        let out = self
            .legs
            .get_mut(stream.leg)
            .ok_or(MediaError::UnknownLeg { leg: stream.leg })?
            .outs
            .get_mut(stream.index as usize)
            .ok_or(MediaError::UnknownStream { stream })?;
        let old = std::mem::replace(&mut out.source, source);
        if old != source {
            out.announce_source = source.is_some();
        }
        if source.is_none() {
            // Silence takes over at the next tick rather than after the source-gap grace.
            out.last_source_at = None;
        }
        if old == source {
            return Ok(());
        }
        if let Some(old) = old {
            self.unsubscribe(old, stream);
        }
        if let Some(new) = source {
            self.subscribe(new, stream);
        }
        debug!(%stream, ?source, "route changed");
        Ok(())
    }

    /// Makes `src` send its incoming audio to `stream`: directly when `src` is this shard's,
    /// else through a crossing to its shard.
    fn subscribe(&mut self, src: LegId, stream: StreamId) {
        if !self.legs.is_local(src) {
            self.crossings
                .push_back(Crossing::Subscribe { src, stream });
            return;
        }
        match self.legs.get_mut(src) {
            Some(leg) => {
                if !leg.subscribers.contains(&stream) {
                    leg.subscribers.push(stream);
                }
            }
            None => self.source_gone(stream, src),
        }
    }

    fn unsubscribe(&mut self, src: LegId, stream: StreamId) {
        if !self.legs.is_local(src) {
            self.crossings
                .push_back(Crossing::Unsubscribe { src, stream });
        } else if let Some(leg) = self.legs.get_mut(src) {
            leg.subscribers.retain(|s| *s != stream);
        }
    }

    /// `src` no longer feeds `stream` (it closed, or never existed on its shard).
    fn source_gone(&mut self, stream: StreamId, src: LegId) {
        if !self.legs.is_local(stream.leg) {
            self.crossings
                .push_back(Crossing::SourceGone { stream, src });
            return;
        }
        if let Some(out) = self
            .legs
            .get_mut(stream.leg)
            .and_then(|l| l.outs.get_mut(stream.index as usize))
        {
            if out.source == Some(src) {
                out.source = None;
                out.last_source_at = None;
            }
        }
    }

    /// Takes what another shard's [`Engine::poll_crossing`] produced for this one.
    pub fn handle_crossing(&mut self, now: Instant, crossing: Crossing) {
        match crossing {
            Crossing::Packet(p) => {
                let Relayed {
                    dst,
                    producer,
                    kind,
                    seq,
                    ts,
                    marker,
                    payload,
                } = p;
                let pkt = Frame {
                    seq,
                    ts,
                    marker,
                    payload,
                };
                self.counters.crossed_in += 1;
                self.forward_one(now, producer, kind, pkt, dst);
            }
            Crossing::Subscribe { src, stream } => self.subscribe(src, stream),
            Crossing::Unsubscribe { src, stream } => self.unsubscribe(src, stream),
            Crossing::SourceGone { stream, src } => self.source_gone(stream, src),
        }
    }

    /// The next crossing for another shard (see [`Crossing::shard`]).
    pub fn poll_crossing(&mut self) -> Option<Crossing> {
        self.crossings.pop_front()
    }

    /// Plays hold audio on a WhatsApp stream in place of its source (or stops). Before
    /// [`Engine::start_sending`] nothing is sent either way (Meta: no media before accept).
    pub fn hold(&mut self, stream: StreamId, on: bool) -> Result<(), MediaError> {
        let leg = self
            .legs
            .get_mut(stream.leg)
            .ok_or(MediaError::UnknownLeg { leg: stream.leg })?;
        if leg.kind != LegKind::WhatsApp {
            return Err(MediaError::WrongLegKind {
                leg: stream.leg,
                expected: "whatsapp",
            });
        }
        let out = leg
            .outs
            .get_mut(stream.index as usize)
            .ok_or(MediaError::UnknownStream { stream })?;
        match (on, out.hold) {
            (true, None) => out.hold = Some(0),
            (false, Some(_)) => {
                out.hold = None;
                // The source (or silence) takes over at the next packet.
                out.last_source_at = None;
            }
            _ => {}
        }
        debug!(%stream, on, "hold");
        Ok(())
    }

    /// Starts the WhatsApp leg's outgoing stream: from now on it sends a packet every 20 ms for
    /// the life of the leg. Call it when `accept` has been answered 200 OK (reference §6).
    pub fn start_sending(&mut self, now: Instant, leg: LegId) -> Result<(), MediaError> {
        let l = self
            .legs
            .get_mut(leg)
            .ok_or(MediaError::UnknownLeg { leg })?;
        if l.kind != LegKind::WhatsApp {
            return Err(MediaError::WrongLegKind {
                leg,
                expected: "whatsapp",
            });
        }
        for (i, out) in l.outs.iter_mut().enumerate() {
            if !out.started {
                out.started = true;
                out.announce_start = true;
                self.paced.push(StreamId {
                    leg,
                    index: i as u8,
                });
            }
        }
        // The first packet goes out now, not a tick later.
        self.next_tick = Some(self.next_tick.map_or(now, |t| t.min(now)));
        self.handle_timeout(now);
        Ok(())
    }

    /// Queues DTMF digits to send on the leg's first outgoing stream, on its negotiated
    /// telephone-event/8000 payload type, each lasting `duration`.
    pub fn send_dtmf(
        &mut self,
        leg: LegId,
        digits: &str,
        duration: Duration,
    ) -> Result<(), MediaError> {
        let codes = digits
            .chars()
            .map(|c| dtmf::digit_code(c).ok_or(MediaError::InvalidDigit { digit: c }))
            .collect::<Result<Vec<u8>, _>>()?;
        let l = self
            .legs
            .get_mut(leg)
            .ok_or(MediaError::UnknownLeg { leg })?;
        if l.tele_pt.is_none() {
            return Err(MediaError::NoTelephoneEvent { leg });
        }
        if l.kind != LegKind::WhatsApp {
            return Err(MediaError::WrongLegKind {
                leg,
                expected: "whatsapp",
            });
        }
        let out = l
            .outs
            .first_mut()
            .ok_or(MediaError::NoTelephoneEvent { leg })?;
        if out.dtmf_queue.len() + codes.len() > self.cfg.limits.max_dtmf_queue {
            self.counters.refused_dtmf_queue_full += 1;
            return Err(MediaError::DtmfQueueFull {
                leg,
                limit: self.cfg.limits.max_dtmf_queue,
            });
        }
        out.dtmf_queue
            .extend(codes.into_iter().map(|c| (c, duration)));
        Ok(())
    }

    /// Closes a leg gracefully (RTCP BYE, DTLS close_notify). `Closed` follows once it is gone.
    pub fn close(&mut self, now: Instant, leg: LegId) -> Result<(), MediaError> {
        let l = self
            .legs
            .get_mut(leg)
            .ok_or(MediaError::UnknownLeg { leg })?;
        if !l.connected {
            // Nothing to say goodbye on: no DTLS session, so no close_notify to wait for.
            l.rtc.disconnect();
            self.remove_closed(leg, false);
            return Ok(());
        }
        l.closing = Some(now + CLOSE_GRACE);
        if let Err(e) = l.rtc.close() {
            debug!(%leg, error = %e, "close");
        }
        self.drain(now, leg);
        Ok(())
    }

    /// Closes every leg (shutdown).
    pub fn close_all(&mut self, now: Instant) {
        let ids: Vec<LegId> = self
            .legs
            .slots
            .iter()
            .filter_map(|s| s.leg.as_ref().map(|l| l.id))
            .collect();
        for id in ids {
            let _ = self.close(now, id);
        }
    }

    // ------------------------------------------------------------------ inputs

    /// Handles one datagram received from `source` on local socket `socket` (an index into
    /// [`EngineConfig::ports`]).
    pub fn handle_datagram(&mut self, now: Instant, socket: usize, source: SocketAddr, buf: &[u8]) {
        self.counters.datagrams_in += 1;
        if socket >= self.cfg.ports.len() {
            self.counters.datagrams_unmatched += 1;
            return;
        }
        let Ok(contents) = DatagramRecv::try_from(buf) else {
            self.counters.datagrams_malformed += 1;
            trace!(%source, len = buf.len(), "datagram of no known protocol");
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.local_addr_for(socket, source),
                contents,
            },
        );
        let Some(id) = self.demux(&input, socket, source, buf) else {
            self.counters.datagrams_unmatched += 1;
            trace!(%source, "datagram for no leg");
            return;
        };
        let Some(leg) = self.legs.get_mut(id) else {
            return;
        };
        // The idle timer counts only what str0m authenticates: a STUN message whose integrity
        // checks here, or SRTP that str0m decrypts (see `on_event`). Junk from a leg's address
        // must not keep a dead leg alive.
        if is_stun(buf) {
            if leg.stun_keys.verify(buf) {
                leg.last_rx = now;
            } else {
                self.counters.stun_unauthenticated += 1;
            }
        }
        if !leg.addrs.contains(&source) {
            leg.addrs.push(source);
            self.by_addr.insert((socket, source), id);
        }
        let ok = catch_unwind(AssertUnwindSafe(|| leg.rtc.handle_input(input)));
        match ok {
            Ok(Ok(())) => self.drain(now, id),
            Ok(Err(e)) => {
                // A bad packet (SRTP auth failure, DTLS alert…) is the peer's problem, not
                // a reason to drop the leg: str0m has already discarded it.
                debug!(leg = %id, error = %e, "input refused");
                self.drain(now, id);
            }
            Err(_) => self.discard(id, "handle_input panicked"),
        }
    }

    /// Which leg a datagram belongs to: the address map first (established flows), then the STUN
    /// username (a new flow's ICE checks name our ufrag), then — for STUN responses, which carry
    /// no username — the leg that was offered this address as a candidate on this socket. Never
    /// a scan of all legs.
    fn demux(&self, input: &Input, socket: usize, source: SocketAddr, buf: &[u8]) -> Option<LegId> {
        if let Some(id) = self.by_addr.get(&(socket, source)) {
            if let Some(leg) = self.legs.get(*id) {
                if leg.rtc.accepts(input) {
                    return Some(*id);
                }
            }
        }
        if !is_stun(buf) {
            return None;
        }
        let msg = str0m::ice::StunMessage::parse(buf).ok()?;
        let id = match msg.split_username() {
            Some((ours, _theirs)) => *self.by_ufrag.get(ours)?,
            None => *self.by_candidate.get(&(socket, source))?,
        };
        self.legs
            .get(id)
            .filter(|l| l.socket == socket && l.rtc.accepts(input))
            .map(|_| id)
    }

    /// Advances time: the 20 ms pacer, and every leg whose deadline has come.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_tick.is_some_and(|t| t <= now) {
            self.tick(now);
        }
        while let Some(Reverse((at, id))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let (connect_timeout, idle_timeout) = (self.cfg.connect_timeout, self.cfg.idle_timeout);
            let Some(leg) = self.legs.get_mut(id) else {
                continue;
            };
            if leg.scheduled != Some(at) {
                continue; // superseded entry
            }
            leg.scheduled = None;
            if leg.closing.is_some_and(|until| now >= until) {
                // The peer never acknowledged our goodbye; stop waiting for it.
                leg.rtc.disconnect();
                self.remove_closed(id, false);
                continue;
            }
            if !leg.connected && now >= leg.created_at + connect_timeout {
                self.fail(id, FailReason::ConnectTimeout);
                continue;
            }
            if leg.connected && now >= leg.last_rx + idle_timeout {
                self.fail(id, FailReason::Silent);
                continue;
            }
            if now >= leg.rtc_timeout {
                self.counters.leg_timeouts += 1;
                let ok = catch_unwind(AssertUnwindSafe(|| {
                    leg.rtc.handle_input(Input::Timeout(now))
                }));
                match ok {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => debug!(leg = %id, error = %e, "timeout input refused"),
                    Err(_) => {
                        self.discard(id, "timeout panicked");
                        continue;
                    }
                }
            }
            self.drain(now, id);
        }
    }

    // ------------------------------------------------------------------ outputs

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the rest of the program.
    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }

    /// When [`Engine::handle_timeout`] must be called next; `None` when nothing is pending.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        // Superseded heap entries pile up with every drain; rebuild when they dominate.
        if self.timers.len() > 1024 + 4 * self.legs.live {
            self.timers = self
                .legs
                .slots
                .iter()
                .filter_map(|s| s.leg.as_ref())
                .filter_map(|l| l.scheduled.map(|at| Reverse((at, l.id))))
                .collect();
        }
        let legs = self.timers.peek().map(|Reverse((at, _))| *at);
        match (legs, self.next_tick) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ------------------------------------------------------------------ internals

    fn drain(&mut self, now: Instant, id: LegId) {
        loop {
            let Some(leg) = self.legs.get_mut(id) else {
                return;
            };
            let out = catch_unwind(AssertUnwindSafe(|| leg.rtc.poll_output()));
            match out {
                Ok(Ok(Output::Timeout(at))) => {
                    leg.rtc_timeout = at;
                    if !leg.rtc.is_alive() {
                        let by_remote = leg.remote_closed;
                        self.remove_closed(id, by_remote);
                        return;
                    }
                    let deadline = leg.deadline(self.cfg.connect_timeout, self.cfg.idle_timeout);
                    if leg.scheduled != Some(deadline) {
                        leg.scheduled = Some(deadline);
                        self.timers.push(Reverse((deadline, id)));
                    }
                    return;
                }
                Ok(Ok(Output::Transmit(t))) => self.transmits.push_back(Transmit {
                    socket: leg.socket,
                    destination: t.destination,
                    contents: t.contents.into(),
                }),
                Ok(Ok(Output::Event(e))) => self.on_event(now, id, e),
                Ok(Err(e)) => {
                    warn!(leg = %id, error = %e, "poll_output failed; discarding leg");
                    self.discard(id, "poll_output failed");
                    return;
                }
                Err(_) => {
                    self.discard(id, "poll_output panicked");
                    return;
                }
            }
        }
    }

    fn on_event(&mut self, now: Instant, id: LegId, event: Event) {
        let Some(leg) = self.legs.get_mut(id) else {
            return;
        };
        match event {
            Event::Connected => {
                leg.connected = true;
                leg.last_rx = now;
                info!(leg = %id, kind = leg.kind.name(), "leg connected");
                self.events.push_back(MediaEvent::Connected { leg: id });
            }
            Event::IceConnectionStateChange(state) => {
                debug!(leg = %id, ?state, "ice state");
                if state == IceConnectionState::Disconnected {
                    // str0m never gives up on ICE; the idle timeout decides (str0m notes §6).
                    debug!(leg = %id, "ice disconnected; waiting for the idle timeout");
                }
            }
            Event::RtpPacket(pkt) => {
                // str0m decrypted and authenticated it: the peer is alive.
                leg.last_rx = now;
                self.on_rtp(now, id, pkt)
            }
            Event::PeerStats(s) => {
                leg.stats.bytes_rx = s.peer_bytes_rx;
                leg.stats.bytes_tx = s.peer_bytes_tx;
                leg.stats.rtt = s
                    .selected_candidate_pair
                    .and_then(|p| p.current_round_trip_time)
                    .or(s.rtt)
                    .or(leg.stats.rtt);
                let stats = leg.stats.clone();
                let kind = leg.kind;
                self.emit(MediaEvent::Stats {
                    leg: id,
                    kind,
                    stats,
                });
            }
            Event::MediaIngressStats(s) => {
                leg.stats.packets_rx = s.packets;
                leg.stats.loss_rx = s.loss.or(leg.stats.loss_rx);
                // RFC 3550 jitter is in RTP clock units; audio here runs at 48 kHz.
                leg.stats.jitter = Some(Duration::from_micros(u64::from(s.jitter) * 1000 / 48));
            }
            Event::MediaEgressStats(s) => {
                leg.stats.packets_tx = s.packets;
                leg.stats.loss_tx = s.loss.or(leg.stats.loss_tx);
                if leg.stats.rtt.is_none() {
                    leg.stats.rtt = s.rtt;
                }
            }
            Event::Closed => {
                leg.remote_closed = true;
                debug!(leg = %id, "peer closed");
            }
            other => trace!(leg = %id, event = ?other, "ignored event"),
        }
    }

    fn on_rtp(&mut self, now: Instant, src: LegId, pkt: RtpPacket) {
        let Some(leg) = self.legs.get_mut(src) else {
            return;
        };
        let pt = pkt.header.payload_type;
        let kind = if pt == leg.opus_pt {
            PacketKind::Opus
        } else if Some(pt) == leg.tele_pt {
            PacketKind::Tele
        } else {
            self.counters.dropped_unknown_pt += 1;
            return;
        };
        if kind == PacketKind::Tele {
            if let Some(report) = Report::parse(&pkt.payload) {
                let mut found = [None, None];
                let mut n = 0;
                leg.dtmf_rx.handle(pkt.header.timestamp, report, |d| {
                    if let Some(slot) = found.get_mut(n) {
                        *slot = Some(d);
                        n += 1;
                    }
                });
                for d in found.into_iter().flatten() {
                    info!(leg = %src, digit = %d.digit, "dtmf received");
                    self.emit(MediaEvent::Dtmf {
                        leg: src,
                        digit: d.digit,
                        duration: d.duration,
                    });
                }
            }
        }
        let producer = Producer::Leg {
            leg: src,
            ssrc: *pkt.header.ssrc,
        };
        // Index loop: forwarding borrows other legs mutably, so no borrow of `leg` may live.
        let mut i = 0;
        while let Some(dst) = self
            .legs
            .get(src)
            .and_then(|l| l.subscribers.get(i).copied())
        {
            i += 1;
            if !self.legs.is_local(dst.leg) {
                self.counters.crossed_out += 1;
                self.crossings.push_back(Crossing::Packet(Relayed {
                    dst,
                    producer,
                    kind,
                    seq: *pkt.seq_no,
                    ts: pkt.header.timestamp,
                    marker: pkt.header.marker,
                    payload: pkt.payload.clone(),
                }));
                continue;
            }
            let frame = Frame {
                seq: *pkt.seq_no,
                ts: pkt.header.timestamp,
                marker: pkt.header.marker,
                payload: pkt.payload.clone(),
            };
            self.forward_one(now, producer, kind, frame, dst);
        }
    }

    fn forward_one(
        &mut self,
        now: Instant,
        producer: Producer,
        kind: PacketKind,
        pkt: Frame,
        dst: StreamId,
    ) {
        let Some(leg) = self.legs.get_mut(dst.leg) else {
            return;
        };
        let Some(out) = leg.outs.get_mut(dst.index as usize) else {
            return;
        };
        // A packet that crossed from another shard may have been in flight while the route
        // changed: only the stream's current source is heard.
        if let Producer::Leg { leg: from, .. } = producer {
            if out.source != Some(from) {
                self.counters.dropped_unrouted += 1;
                return;
            }
        }
        if out.paced && !out.started {
            self.counters.dropped_not_started += 1;
            return;
        }
        if out.hold.is_some() && !self.cfg.hold_audio.is_empty() {
            self.counters.dropped_on_hold += 1;
            return;
        }
        if out.dtmf.is_some() {
            out.rewriter.skip(producer);
            self.counters.dropped_during_dtmf += 1;
            return;
        }
        let pt = match kind {
            PacketKind::Opus => leg.opus_pt,
            PacketKind::Tele => match leg.tele_pt {
                Some(pt) => pt,
                None => {
                    out.rewriter.skip(producer);
                    return;
                }
            },
        };
        let Some((seq, ts)) = out.rewriter.forward(now, producer, pkt.seq, pkt.ts) else {
            self.counters.dropped_stale += 1;
            return;
        };
        if kind == PacketKind::Opus {
            out.last_source_at = Some(now);
        }
        let ssrc = out.ssrc;
        let first = std::mem::take(&mut out.announce_start);
        let from_source = std::mem::take(&mut out.announce_source);
        let kind_out = leg.kind;
        let mut api = leg.rtc.direct_api();
        let Some(tx) = api.stream_tx(&ssrc) else {
            return;
        };
        let bytes = pkt.payload.len() as u64;
        tx.write_rtp(RtpWrite::new(pt, seq.into(), ts, now, pkt.payload).marker(pkt.marker));
        self.counters.rtp_forwarded += 1;
        self.counters.forwarded_packets.add(kind_out, 1);
        self.counters.forwarded_bytes.add(kind_out, bytes);
        if first {
            self.emit(MediaEvent::FirstPacket { stream: dst });
        }
        if from_source {
            if let Producer::Leg { leg: source, .. } = producer {
                self.emit(MediaEvent::SourceFlowing {
                    stream: dst,
                    source,
                });
            }
        }
        self.drain(now, dst.leg);
    }

    /// The 20 ms pacer of started WhatsApp streams: own DTMF first, then silence wherever the
    /// source has gone quiet (or there is none).
    fn tick(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.paced.len() {
            let sid = self.paced[i];
            let Some(leg) = self.legs.get_mut(sid.leg) else {
                self.paced.swap_remove(i);
                continue;
            };
            i += 1;
            if !leg.connected {
                continue;
            }
            let (opus_pt, tele_pt) = (leg.opus_pt, leg.tele_pt);
            let Some(out) = leg.outs.get_mut(sid.index as usize) else {
                continue;
            };
            let packet = out.pace(now, opus_pt, tele_pt, &self.silence, &self.cfg.hold_audio);
            match &packet {
                Some((_, Paced::Dtmf)) => self.counters.dtmf_reports_sent += 1,
                Some((_, Paced::Silence)) => self.counters.silence_sent += 1,
                Some((_, Paced::Hold)) => self.counters.hold_sent += 1,
                None => {}
            }
            let ssrc = out.ssrc;
            if let Some((packet, _)) = packet {
                let first = std::mem::take(&mut out.announce_start);
                if let Some(tx) = leg.rtc.direct_api().stream_tx(&ssrc) {
                    tx.write_rtp(packet);
                }
                if first {
                    self.emit(MediaEvent::FirstPacket { stream: sid });
                }
                self.drain(now, sid.leg);
            }
        }
        self.next_tick = if self.paced.is_empty() {
            None
        } else {
            let next = self.next_tick.unwrap_or(now) + FRAME;
            // After a stall, resume the grid from now rather than bursting to catch up.
            Some(if next <= now { now + FRAME } else { next })
        };
    }

    /// Queues an event for the program. Statistics and DTMF past `max_pending_events` are dropped
    /// and counted (a peer flooding key presses must not grow memory); lifecycle events are
    /// always kept, being at most three per leg.
    fn emit(&mut self, event: MediaEvent) {
        if event.is_droppable() && self.events.len() >= self.cfg.limits.max_pending_events {
            self.counters.events_dropped += 1;
            return;
        }
        self.events.push_back(event);
    }

    /// Events waiting to be polled.
    pub fn pending_events(&self) -> usize {
        self.events.len()
    }

    fn fail(&mut self, id: LegId, reason: FailReason) {
        if let Some(leg) = self.legs.get_mut(id) {
            leg.rtc.disconnect();
            warn!(leg = %id, kind = leg.kind.name(), ?reason, "leg failed");
            let by_kind = match reason {
                FailReason::ConnectTimeout => &mut self.counters.failed_connect_timeout,
                FailReason::Silent => &mut self.counters.failed_silent,
                FailReason::Internal => &mut self.counters.failed_internal,
            };
            by_kind.add(leg.kind, 1);
        }
        self.remove(id);
        self.events
            .push_back(MediaEvent::Failed { leg: id, reason });
    }

    fn discard(&mut self, id: LegId, why: &'static str) {
        error!(leg = %id, why, "discarding leg after an engine fault");
        self.counters.legs_discarded += 1;
        self.fail(id, FailReason::Internal);
    }

    fn remove_closed(&mut self, id: LegId, by_remote: bool) {
        self.remove(id);
        self.events
            .push_back(MediaEvent::Closed { leg: id, by_remote });
        info!(leg = %id, by_remote, "leg closed");
    }

    /// Removes a leg and every trace of it: maps, routes from and to it, pacing.
    fn remove(&mut self, id: LegId) {
        let Some(leg) = self.legs.take(id) else {
            return;
        };
        for a in &leg.addrs {
            let key = (leg.socket, *a);
            if self.by_addr.get(&key) == Some(&id) {
                self.by_addr.remove(&key);
            }
        }
        if self.by_ufrag.get(&leg.ufrag) == Some(&id) {
            self.by_ufrag.remove(&leg.ufrag);
        }
        for c in &leg.candidates {
            let key = (leg.socket, *c);
            if self.by_candidate.get(&key) == Some(&id) {
                self.by_candidate.remove(&key);
            }
        }
        for s in &leg.subscribers {
            self.source_gone(*s, id);
        }
        for (i, out) in leg.outs.iter().enumerate() {
            if let Some(src) = out.source {
                let me = StreamId {
                    leg: id,
                    index: i as u8,
                };
                self.unsubscribe(src, me);
            }
        }
        self.paced.retain(|s| s.leg != id);
    }
}

/// The RTP header extensions a leg answers with: the audio level and the MID (which keeps a
/// browser's streams apart). Not transport-wide congestion control: Meta's offer negotiates no
/// extension at all, and on browser legs its feedback (every 50 ms per leg) cost the engine a
/// str0m visit per five forwarded packets for bandwidth estimation that fixed-rate Opus audio
/// does not need. Nor abs-send-time (the same purpose) or the video ones.
fn audio_extensions() -> ExtensionMap {
    let mut exts = ExtensionMap::empty();
    exts.set(1, Extension::AudioLevel);
    exts.set(4, Extension::RtpMid);
    exts
}

/// Opus and telephone-event/8000 payload types negotiated on the audio m-lines.
fn negotiated(rtc: &Rtc, mids: &[String]) -> Option<(str0m::media::Pt, Option<str0m::media::Pt>)> {
    let mut remote = Vec::new();
    for mid in mids {
        if let Some(m) = rtc.media(Mid::from(mid.as_str())) {
            remote.extend_from_slice(m.remote_pts());
        }
    }
    let params = rtc.codec_config().params();
    let find = |codec: Codec, rate: u32| {
        params
            .iter()
            .find(|p| {
                p.spec().codec == codec
                    && p.spec().clock_rate.get() == rate
                    && remote.contains(&p.pt())
            })
            .map(|p| p.pt())
    };
    Some((find(Codec::Opus, 48_000)?, find(Codec::Tele, 8_000)))
}

/// STUN: first two bits zero and the magic cookie at bytes 4..8 (RFC 5389 §6).
fn is_stun(buf: &[u8]) -> bool {
    buf.len() >= 20 && buf[0] < 2 && buf[4..8] == [0x21, 0x12, 0xA4, 0x42]
}

#[cfg(test)]
mod tests {
    use super::*;

    const META_OFFER: &str = include_str!("../../tests/fixtures/meta_offer.sdp");

    fn engine(ports: Vec<u16>) -> Engine {
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

    fn port_of(answer: &Answer) -> u16 {
        crate::sdp::candidate_addrs(&answer.sdp)[0].port()
    }

    /// Meta's offer, from another relay address.
    fn offer_from(ip: &str) -> String {
        META_OFFER.replace("57.144.125.35", ip)
    }

    #[test]
    fn calls_from_one_relay_address_never_share_a_socket() {
        let now = Instant::now();
        let mut e = engine(vec![7000, 7001, 7002]);
        let ports: Vec<u16> = (0..3)
            .map(|_| port_of(&e.answer_whatsapp(now, META_OFFER).unwrap()))
            .collect();
        assert_eq!(ports, vec![7000, 7001, 7002]);
        let err = e.answer_whatsapp(now, META_OFFER).unwrap_err();
        assert!(
            matches!(err, MediaError::NoFreePort { ports: 3, .. }),
            "{err}"
        );
        assert_eq!(e.counters().refused_no_port, 1);
        assert_eq!(e.leg_count(), 3);
        // Another relay address fits on any socket, and so does a browser.
        e.answer_whatsapp(now, &offer_from("57.144.125.36"))
            .unwrap();
        assert_eq!(e.leg_count(), 4);
    }

    #[test]
    fn a_socket_is_free_again_once_its_call_is_gone() {
        let now = Instant::now();
        let mut e = engine(vec![7000]);
        let a = e.answer_whatsapp(now, META_OFFER).unwrap();
        assert!(e.answer_whatsapp(now, META_OFFER).is_err());
        e.close(now, a.leg).unwrap();
        assert_eq!(e.leg_count(), 0);
        let b = e.answer_whatsapp(now, META_OFFER).unwrap();
        assert_eq!(port_of(&b), 7000);
    }

    #[test]
    fn the_dtls_certificate_is_ecdsa_p256() {
        let e = engine(vec![7000]);
        let der = &e.cert.certificate;
        let has = |oid: &[u8]| der.windows(oid.len()).any(|w| w == oid);
        // ecdsa-with-SHA256 (1.2.840.10045.4.3.2), id-ecPublicKey (1.2.840.10045.2.1) and
        // prime256v1 (1.2.840.10045.3.1.7): what Meta recommends (reference §9).
        assert!(has(&[
            0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02
        ]));
        assert!(has(&[0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01]));
        assert!(has(&[
            0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07
        ]));
        assert!(
            !has(&[0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01]),
            "not RSA"
        );
    }

    #[test]
    fn a_datagram_on_another_socket_does_not_reach_a_leg() {
        let now = Instant::now();
        let mut e = engine(vec![7000, 7001]);
        e.answer_whatsapp(now, META_OFFER).unwrap();
        let before = e.counters().datagrams_unmatched;
        // A STUN response from Meta's address but on the socket that leg does not use.
        let meta: SocketAddr = "57.144.125.35:3484".parse().unwrap();
        let mut junk = vec![0u8; 256];
        let n = str0m::ice::StunMessage::binding_reply(str0m::ice::TransId::new(), meta)
            .to_bytes(Some(b"pwd"), &mut junk, super::super::leg::hmac_sha1)
            .unwrap();
        junk.truncate(n);
        e.handle_datagram(now, 1, meta, &junk);
        e.handle_datagram(now, 9, meta, &junk);
        assert_eq!(e.counters().datagrams_unmatched, before + 2);
    }

    fn shard(index: u8, port: u16) -> Engine {
        let mut cfg = engine(vec![port]).cfg;
        cfg.shards = 2;
        Engine::shard(cfg, index).unwrap()
    }

    /// Hands every crossing `from` produced to `to`, returning how many there were.
    fn deliver(now: Instant, from: &mut Engine, to: &mut Engine) -> usize {
        let mut n = 0;
        while let Some(c) = from.poll_crossing() {
            assert_eq!(c.shard(), to.legs.shard as usize, "{c:?}");
            to.handle_crossing(now, c);
            n += 1;
        }
        n
    }

    fn subscribers(e: &Engine, leg: LegId) -> Vec<StreamId> {
        e.legs.get(leg).unwrap().subscribers.clone()
    }

    fn source(e: &Engine, stream: StreamId) -> Option<LegId> {
        e.legs.get(stream.leg).unwrap().outs[stream.index as usize].source
    }

    /// Routes between shards: the destination side is set at once, the source side through a
    /// crossing; a source that closes (or never existed) clears the stream on its shard; a
    /// packet still in flight from a replaced source is dropped and counted, never heard.
    #[test]
    fn routes_between_shards_follow_their_sources_life() {
        let now = Instant::now();
        let mut a = shard(0, 7000);
        let mut b = shard(1, 7001);
        let wa = a.answer_whatsapp(now, META_OFFER).unwrap();
        let agent = b.answer_whatsapp(now, META_OFFER).unwrap();
        assert_eq!((wa.leg.shard(), agent.leg.shard()), (0, 1));
        // Another shard's leg is not this shard's, whatever its slot.
        assert!(a.legs.get(agent.leg).is_none());
        assert!(matches!(
            a.route(agent.streams[0], Some(wa.leg)),
            Err(MediaError::UnknownLeg { .. })
        ));

        let stream = wa.streams[0];
        a.route(stream, Some(agent.leg)).unwrap();
        assert_eq!(source(&a, stream), Some(agent.leg));
        assert_eq!(deliver(now, &mut a, &mut b), 1);
        assert_eq!(subscribers(&b, agent.leg), vec![stream]);

        // Routed away and back: one subscription, in the order the routes were made.
        a.route(stream, None).unwrap();
        a.route(stream, Some(agent.leg)).unwrap();
        assert_eq!(deliver(now, &mut a, &mut b), 2);
        assert_eq!(subscribers(&b, agent.leg), vec![stream]);

        // A packet from a source the stream no longer has is dropped on arrival.
        let stale = Crossing::Packet(Relayed {
            dst: stream,
            producer: Producer::Leg {
                leg: LegId {
                    shard: 1,
                    slot: 99,
                    generation: 0,
                },
                ssrc: 1,
            },
            kind: PacketKind::Opus,
            seq: 1,
            ts: 960,
            marker: false,
            payload: Arc::from(&OPUS_SILENCE[..]),
        });
        a.handle_crossing(now, stale);
        assert_eq!(a.counters().dropped_unrouted, 1);

        // The source closes on its shard: the stream on the other falls back to silence.
        b.remove(agent.leg);
        assert_eq!(deliver(now, &mut b, &mut a), 1);
        assert_eq!(source(&a, stream), None);

        // A route to another shard's leg that does not exist comes back cleared.
        a.route(stream, Some(agent.leg)).unwrap();
        assert_eq!(deliver(now, &mut a, &mut b), 1);
        assert_eq!(deliver(now, &mut b, &mut a), 1);
        assert_eq!(source(&a, stream), None);

        // The destination closes: its source's shard forgets the subscription.
        let agent2 = b
            .answer_whatsapp(now, &offer_from("57.144.125.36"))
            .unwrap();
        a.route(stream, Some(agent2.leg)).unwrap();
        deliver(now, &mut a, &mut b);
        assert_eq!(subscribers(&b, agent2.leg), vec![stream]);
        a.remove(wa.leg);
        assert_eq!(deliver(now, &mut a, &mut b), 1);
        assert!(subscribers(&b, agent2.leg).is_empty());
    }
}
