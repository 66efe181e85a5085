//! One leg: a `str0m::Rtc` plus what the engine keeps about it — its negotiated payload types,
//! its outgoing streams and their rewriting state, its timers and its statistics.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use std::sync::Arc;

use str0m::media::Pt;
use str0m::rtp::{RtpWrite, Ssrc};
use str0m::Rtc;

use super::dtmf;
use super::rewrite::{Producer, Rewriter};
use crate::ids::{LegId, StreamId};

/// Which side a leg faces; it decides the ICE/DTLS roles and whether the engine paces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegKind {
    /// Toward Meta: full ICE, controlling, DTLS client, paced (a packet every 20 ms once started).
    WhatsApp,
    /// Toward an agent's or supervisor's browser: ICE-lite, DTLS server, forwarded as it comes.
    Browser,
    /// Toward another node's engine, offered by this one (several nodes): shaped like Meta's
    /// end (ICE-lite, DTLS server), forwarded as it comes; the other node answers it as a
    /// WhatsApp leg.
    Trunk,
}

impl LegKind {
    /// The name metrics and logs use.
    pub fn name(self) -> &'static str {
        match self {
            LegKind::WhatsApp => "whatsapp",
            LegKind::Browser => "browser",
            LegKind::Trunk => "trunk",
        }
    }
}

/// Statistics of one leg, as last reported by str0m.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LegStats {
    /// Round-trip time (ICE consent checks, else RTCP).
    pub rtt: Option<Duration>,
    /// RTP packets received on the leg's incoming audio.
    pub packets_rx: u64,
    /// RTP packets sent on the leg's outgoing audio (all streams).
    pub packets_tx: u64,
    /// Bytes received (everything on the leg, not only media).
    pub bytes_rx: u64,
    /// Bytes sent.
    pub bytes_tx: u64,
    /// Fraction of incoming packets lost, 0..1 (from our receiver reports).
    pub loss_rx: Option<f32>,
    /// Fraction of outgoing packets the peer reports lost, 0..1.
    pub loss_tx: Option<f32>,
    /// Interarrival jitter of incoming audio.
    pub jitter: Option<Duration>,
}

/// One outgoing audio stream (an m-line we send on).
#[derive(Debug)]
pub(crate) struct OutStream {
    pub ssrc: Ssrc,
    /// The leg whose incoming audio feeds this stream.
    pub source: Option<LegId>,
    pub rewriter: Rewriter,
    /// Paced streams send a packet every 20 ms once started (silence when nothing arrives).
    pub paced: bool,
    pub started: bool,
    /// When the source last delivered audio here; silence fills in when it stops.
    pub last_source_at: Option<Instant>,
    pub dtmf_queue: VecDeque<(u8, Duration)>,
    pub dtmf: Option<dtmf::Sender>,
    /// Ticks of ordinary audio still to send before the next queued digit.
    pub dtmf_pause: u8,
    /// Hold audio in place of the source: the position of the next hold packet.
    pub hold: Option<usize>,
    /// The next packet is the stream's first since it started: report it (set-up latency).
    pub announce_start: bool,
    /// The next packet forwarded from `source` is its first since the route changed: report it.
    pub announce_source: bool,
}

/// A source that has delivered nothing for this long is replaced by silence on paced streams:
/// three frames, so a source's ordinary jitter never interleaves silence with its audio.
const SOURCE_GAP: Duration = Duration::from_millis(60);

/// Ticks of ordinary audio between two queued digits (RFC 4733 wants a gap of 40 ms or more).
const INTER_DIGIT_TICKS: u8 = 3;

/// What the pacer produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Paced {
    Silence,
    Dtmf,
    Hold,
}

impl OutStream {
    /// A new stream on `ssrc` with no source, starting at random sequence and timestamp.
    pub(crate) fn new(ssrc: Ssrc, paced: bool) -> OutStream {
        OutStream {
            ssrc,
            source: None,
            rewriter: Rewriter::new(rand::random(), rand::random()),
            paced,
            started: false,
            last_source_at: None,
            dtmf_queue: VecDeque::new(),
            dtmf: None,
            dtmf_pause: 0,
            hold: None,
            announce_start: false,
            announce_source: false,
        }
    }

    /// What a started, paced stream sends at this 20 ms tick: a report of the engine's own DTMF,
    /// else silence when the source has gone quiet (or there is none), else nothing (the source's
    /// own packets are flowing).
    pub(crate) fn pace(
        &mut self,
        now: Instant,
        opus_pt: Pt,
        tele_pt: Option<Pt>,
        silence: &Arc<[u8]>,
        hold: &[Arc<[u8]>],
    ) -> Option<(RtpWrite, Paced)> {
        if let Some(tele_pt) = tele_pt {
            if self.dtmf.is_none() && self.dtmf_pause == 0 {
                if let Some((code, duration)) = self.dtmf_queue.pop_front() {
                    let ts = self.rewriter.begin_event(now);
                    self.dtmf = Some(dtmf::Sender::new(code, duration, ts));
                }
            }
            if let Some(sender) = &mut self.dtmf {
                if let Some((report, first)) = sender.next_report() {
                    let seq = self.rewriter.event_seq();
                    let payload = report.to_bytes().to_vec();
                    let w = RtpWrite::new(tele_pt, seq.into(), sender.ts, now, payload);
                    return Some((w.marker(first), Paced::Dtmf));
                }
                self.dtmf = None;
                self.dtmf_pause = INTER_DIGIT_TICKS;
            }
        }
        self.dtmf_pause = self.dtmf_pause.saturating_sub(1);
        if let (Some(pos), false) = (self.hold, hold.is_empty()) {
            // Hold audio replaces the source, one file packet per 20 ms tick, looped; the
            // stream's SSRC, sequence and timestamps carry on (a producer change re-bases).
            let packet = hold[pos % hold.len()].clone();
            self.hold = Some((pos + 1) % hold.len());
            let (seq, ts) = self.rewriter.own(now, Producer::Hold);
            let w = RtpWrite::new(opus_pt, seq.into(), ts, now, packet);
            return Some((w, Paced::Hold));
        }
        let quiet = self
            .last_source_at
            .is_none_or(|t| now.saturating_duration_since(t) >= SOURCE_GAP);
        if !quiet {
            return None;
        }
        let (seq, ts) = self.rewriter.own(now, Producer::Silence);
        let w = RtpWrite::new(opus_pt, seq.into(), ts, now, silence.clone());
        Some((w, Paced::Silence))
    }
}

/// A leg and its bookkeeping.
pub(crate) struct Leg {
    pub id: LegId,
    pub kind: LegKind,
    pub rtc: Rtc,
    /// The local socket (index into the engine's ports) every datagram of this leg uses.
    pub socket: usize,
    pub created_at: Instant,
    /// Offered (a business-initiated call) and the callee's answer not applied yet: no ICE or
    /// DTLS can start, so the connect timeout does not run (the call's own ring timeout ends
    /// it); it runs from the answer.
    pub awaiting_answer: bool,
    pub connected: bool,
    /// Set by `close`: the leg is removed once str0m is done, or at this moment at the latest.
    pub closing: Option<Instant>,
    pub remote_closed: bool,
    /// Last authenticated datagram for this leg: SRTP str0m decrypted, or STUN whose integrity
    /// checked. The idle timeout runs from here.
    pub last_rx: Instant,
    /// What str0m asked for in its last `Output::Timeout`.
    pub rtc_timeout: Instant,
    /// The deadline this leg is filed under in the engine's timer heap.
    pub scheduled: Option<Instant>,
    pub opus_pt: Pt,
    pub tele_pt: Option<Pt>,
    pub outs: Vec<OutStream>,
    /// Hold audio of its own (its account's), in place of the engine's.
    pub hold_audio: Option<crate::media::HoldAudio>,
    /// Streams (of other legs) that take this leg's incoming audio.
    pub subscribers: Vec<StreamId>,
    /// Remote addresses filed in the engine's address map for this leg.
    pub addrs: Vec<SocketAddr>,
    /// Our ICE ufrag, filed in the engine's ufrag map.
    pub ufrag: String,
    pub stun_keys: StunKeys,
    /// Remote candidate addresses from the offer, filed for STUN responses (full-ICE legs).
    pub candidates: Vec<SocketAddr>,
    pub dtmf_rx: dtmf::Detector,
    pub stats: LegStats,
}

/// The ICE passwords that key a leg's STUN MESSAGE-INTEGRITY (RFC 8445 §7.2.2): requests
/// sent to us are keyed with our password, responses to our checks with the remote's.
pub(crate) struct StunKeys {
    pub local: String,
    /// From the offer's `a=ice-pwd`; a browser (ICE-lite toward us) never answers our checks.
    pub remote: Option<String>,
}

impl StunKeys {
    /// True when `buf` is a STUN request or response whose integrity checks with our keys.
    pub(crate) fn verify(&self, buf: &[u8]) -> bool {
        let Ok(msg) = str0m::ice::StunMessage::parse(buf) else {
            return false;
        };
        let key = if msg.is_binding_request() {
            Some(self.local.as_str())
        } else {
            self.remote.as_deref()
        };
        key.is_some_and(|k| msg.verify(k.as_bytes(), hmac_sha1))
    }
}

pub(crate) fn hmac_sha1(key: &[u8], payloads: &[&[u8]]) -> [u8; 20] {
    use hmac::{Hmac, Mac};
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(key) else {
        return [0; 20];
    };
    for p in payloads {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

impl Leg {
    /// A new leg on `socket`, not connected, with nothing routed; the caller fills in its
    /// payload types, streams and remote candidates.
    pub(crate) fn new(
        id: LegId,
        kind: LegKind,
        rtc: Rtc,
        socket: usize,
        now: Instant,
        ufrag: String,
        stun_keys: StunKeys,
    ) -> Leg {
        Leg {
            id,
            kind,
            rtc,
            socket,
            created_at: now,
            awaiting_answer: false,
            connected: false,
            closing: None,
            remote_closed: false,
            last_rx: now,
            rtc_timeout: now,
            scheduled: None,
            opus_pt: 111.into(),
            tele_pt: None,
            outs: Vec::new(),
            hold_audio: None,
            subscribers: Vec::new(),
            addrs: Vec::new(),
            ufrag,
            stun_keys,
            candidates: Vec::new(),
            dtmf_rx: dtmf::Detector::default(),
            stats: LegStats::default(),
        }
    }

    /// The earliest moment this leg needs the engine: str0m's timeout, or the connect/idle limit.
    pub(crate) fn deadline(&self, connect_timeout: Duration, idle_timeout: Duration) -> Instant {
        let limit = if self.connected {
            self.last_rx + idle_timeout
        } else if self.awaiting_answer {
            self.rtc_timeout
        } else {
            self.created_at + connect_timeout
        };
        let limit = self.closing.map_or(limit, |c| c.min(limit));
        self.rtc_timeout.min(limit)
    }
}
