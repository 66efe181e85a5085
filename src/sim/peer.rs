//! A WebRTC peer made of a str0m `Rtc` and a UDP socket of its own, driven by a tokio task:
//! the far end of a leg in tests, the simulated WhatsApp caller, and later the load test's
//! agents.
//!
//! Two shapes:
//! - [`PendingPeer::meta`]: shaped like Meta's WhatsApp media server — ICE-lite, offers with the
//!   exact text of Meta's real offer (reference §3.1) with its own credentials, candidate and
//!   fingerprint substituted, `a=setup:actpass`, Opus on 111, telephone-event/8000 on 126. It
//!   applies the answer through str0m's direct API, as Meta's stack would: it trusts only what
//!   the answer says (ufrag, pwd, fingerprint, setup role, candidates, SSRC).
//! - [`PendingPeer::browser`]: shaped like a browser — full ICE, SDP offerer through str0m's SDP
//!   API, one `sendrecv` audio m-line per requested stream (a supervisor's page receives two).
//!
//! What a peer hears is recorded (packets with their header fields and payload, DTMF digits,
//! and, with the `tones` feature, decoded audio for frequency measurement) and can be read at any
//! time through its handle.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::{Codec, FormatParams};
use str0m::media::{Direction, Frequency, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::audio::{AudioError, Listener, ToneEncoder};
use super::relay::{Datagram, MetaRelay};
use crate::media::dtmf::{self, Report};
use crate::sdp::{Kind, Sdp};

/// Meta's payload types in its real offer.
pub const META_OPUS_PT: u8 = 111;
/// Meta's telephone-event/8000 payload type.
pub const META_TELE_PT: u8 = 126;
/// The SSRC in Meta's real offer; the Meta-shaped peer sends with it.
pub const META_SSRC: u32 = 3_435_760_938;
/// At most this many received packets are kept in full; later ones are only counted.
const MAX_RECORDED: usize = 20_000;

/// Errors of a simulated peer.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The socket failed.
    #[error("peer socket: {0}")]
    Io(#[from] std::io::Error),
    /// str0m refused something.
    #[error("peer rtc: {0}")]
    Rtc(#[from] str0m::RtcError),
    /// The answer is not usable SDP.
    #[error("unusable answer: {0}")]
    Answer(String),
    /// Test audio failed (libopus).
    #[error("audio: {0}")]
    Audio(#[from] AudioError),
    /// The peer's task has ended.
    #[error("peer is gone")]
    Gone,
}

/// What a peer sends every 20 ms once connected.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    /// Nothing.
    Nothing,
    /// Numbered payloads, see [`tagged_payload`]: the receiver can check every byte.
    Tagged {
        /// A byte identifying this sender.
        tag: u8,
    },
    /// A sine tone encoded with Opus (needs the `tones` feature; without it nothing is sent).
    Tone {
        /// Frequency in Hz.
        hz: f64,
    },
    /// Opus packets, 20 ms each, played in a loop (an Ogg/Opus file's: `media::ogg`).
    Clip {
        /// The packets.
        packets: Arc<[Vec<u8>]>,
    },
}

/// The payload of the `n`th tagged packet from sender `tag`: an Opus-looking TOC byte, the tag,
/// the number, and filler — 24 bytes no relay has any reason to change.
pub fn tagged_payload(tag: u8, n: u32) -> Vec<u8> {
    let mut p = vec![0xF8, tag];
    p.extend_from_slice(&n.to_be_bytes());
    p.extend((0..18u8).map(|i| i.wrapping_mul(37) ^ tag));
    p
}

/// One packet as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// When it arrived.
    pub at: Instant,
    /// Extended sequence number (str0m's).
    pub seq: u64,
    /// RTP timestamp.
    pub ts: u32,
    /// Payload type.
    pub pt: u8,
    /// SSRC.
    pub ssrc: u32,
    /// Marker bit.
    pub marker: bool,
    /// Payload bytes.
    pub payload: Arc<[u8]>,
}

/// The peer's live status, watched by tests and the simulator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// ICE and DTLS are up.
    pub connected: bool,
    /// The peer closed or the remote closed.
    pub closed: bool,
    /// RTP packets received so far (audio and DTMF).
    pub packets_received: u64,
    /// RTP packets sent so far.
    pub packets_sent: u64,
    /// DTMF digits received, in order.
    pub digits: String,
}

/// Everything recorded so far.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    /// Received packets, in arrival order (the first [`MAX_RECORDED`]).
    pub packets: Vec<Received>,
    /// The payloads sent, in order (the first [`MAX_RECORDED`]).
    pub sent: Vec<Arc<[u8]>>,
    /// When the peer connected.
    pub connected_at: Option<Instant>,
    /// The dominant frequency (Hz) and RMS of the last 500 ms heard, if not silent (always
    /// `None` without the `tones` feature: nothing is decoded).
    pub heard: Option<(f64, f64)>,
    /// Packets heard that libopus could not decode (0 without the `tones` feature).
    pub undecodable: u64,
}

enum Cmd {
    Send(Outgoing),
    Dtmf(char, Duration),
    Snapshot(oneshot::Sender<Recording>),
    Close,
}

/// Controls a running peer.
#[derive(Debug, Clone)]
pub struct PeerHandle {
    cmd: mpsc::Sender<Cmd>,
    status: watch::Receiver<Status>,
    local_addr: SocketAddr,
}

/// A running peer. Dropping it stops its task.
#[derive(Debug)]
pub struct Peer {
    handle: PeerHandle,
    task: JoinHandle<()>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::ops::Deref for Peer {
    type Target = PeerHandle;
    fn deref(&self) -> &PeerHandle {
        &self.handle
    }
}

impl Peer {
    /// A cloneable handle to this peer.
    pub fn handle(&self) -> PeerHandle {
        self.handle.clone()
    }
}

impl PeerHandle {
    /// The peer's UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Waits until `f(status)` holds, or `limit` passes; returns the status that satisfied it.
    pub async fn wait_for(
        &self,
        limit: Duration,
        f: impl FnMut(&Status) -> bool,
    ) -> Option<Status> {
        wait_watch(&self.status, limit, f).await
    }

    /// What to send from now on.
    pub async fn send(&self, what: Outgoing) -> Result<(), PeerError> {
        self.cmd
            .send(Cmd::Send(what))
            .await
            .map_err(|_| PeerError::Gone)
    }

    /// Sends one DTMF digit (RFC 4733 on the telephone-event/8000 payload type, in the audio's
    /// sequence and timestamp space, as WhatsApp does).
    pub async fn dtmf(&self, digit: char, duration: Duration) -> Result<(), PeerError> {
        self.cmd
            .send(Cmd::Dtmf(digit, duration))
            .await
            .map_err(|_| PeerError::Gone)
    }

    /// A copy of everything recorded so far.
    pub async fn recording(&self) -> Result<Recording, PeerError> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Snapshot(tx))
            .await
            .map_err(|_| PeerError::Gone)?;
        rx.await.map_err(|_| PeerError::Gone)
    }

    /// Closes the peer gracefully (RTCP BYE, DTLS close_notify).
    pub async fn close(&self) -> Result<(), PeerError> {
        self.cmd.send(Cmd::Close).await.map_err(|_| PeerError::Gone)
    }
}

enum Pending {
    Meta,
    Browser { pending: SdpPendingOffer },
}

/// How a peer's datagrams travel: its own socket, or a relay socket shared with other peers.
enum Transport {
    Own(UdpSocket),
    Relay {
        relay: MetaRelay,
        socket: Arc<UdpSocket>,
        /// Where the relay delivers to this peer (kept to file it under the answer's addresses).
        inbox_tx: mpsc::Sender<Datagram>,
        /// What the relay routes to this peer; dropped when the peer closes, which frees its
        /// addresses at the relay.
        inbox: Option<mpsc::Receiver<Datagram>>,
    },
}

impl Transport {
    async fn recv(&mut self, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
        match self {
            Transport::Own(s) => s.recv_from(buf).await,
            Transport::Relay {
                inbox: Some(rx), ..
            } => match rx.recv().await {
                Some((source, d)) => {
                    let n = d.len().min(buf.len());
                    buf[..n].copy_from_slice(&d[..n]);
                    Ok((n, source))
                }
                None => std::future::pending().await,
            },
            Transport::Relay { inbox: None, .. } => std::future::pending().await,
        }
    }

    /// The peer is done: the relay may give its addresses to another call.
    fn release(&mut self) {
        if let Transport::Relay { inbox, .. } = self {
            *inbox = None;
        }
    }

    async fn send_to(&self, bytes: &[u8], to: SocketAddr) -> std::io::Result<usize> {
        match self {
            Transport::Own(s) => s.send_to(bytes, to).await,
            Transport::Relay { socket, .. } => socket.send_to(bytes, to).await,
        }
    }
}

/// A peer that has made its offer and waits for the answer.
pub struct PendingPeer {
    offered: Offered,
    transport: Transport,
    local_addr: SocketAddr,
}

/// A peer's `Rtc` with its offer made, before the answer: the sans-IO half of a simulated peer,
/// which the load generator drives in its own loop.
pub struct Offered {
    /// The peer's str0m instance.
    pub rtc: Rtc,
    /// The SDP offer to hand to switchboard.
    pub offer: String,
    pending: Pending,
}

/// A peer whose answer is applied: ICE and DTLS start with the next datagrams.
pub struct Accepted {
    /// The peer's str0m instance.
    pub rtc: Rtc,
    /// The SSRC it sends audio on (its first stream).
    pub tx_ssrc: Ssrc,
    /// Switchboard's candidate addresses from the answer (Meta-shaped peers only).
    pub remote: Vec<SocketAddr>,
}

impl Offered {
    /// A Meta-shaped peer at `local_addr`: ICE-lite, offering Meta's SDP with these ICE
    /// credentials.
    pub fn meta(local_addr: SocketAddr, creds: str0m::IceCreds) -> Result<Offered, PeerError> {
        let (rtc, fingerprint) = meta_rtc(local_addr, &creds)?;
        let offer = meta_offer_text(local_addr, &creds.ufrag, &creds.pass, &fingerprint);
        Ok(Offered {
            rtc,
            offer,
            pending: Pending::Meta,
        })
    }

    /// A Meta-shaped callee at `local_addr` (a business-initiated call, reference §3.3):
    /// answers switchboard's `offer` as Meta does — ICE-lite, `a=setup:active` (so it is the
    /// DTLS client and switchboard the server), Meta's own SDP shape — and is ready to run.
    /// The answer is what Meta sends in its `connect` webhook.
    pub fn meta_callee(
        local_addr: SocketAddr,
        creds: str0m::IceCreds,
        offer: &str,
    ) -> Result<(Accepted, String), PeerError> {
        let o = AnswerLines::parse(offer)?;
        if o.setup != "actpass" {
            return Err(PeerError::Answer(format!(
                "a business-initiated offer is a=setup:actpass, not {}",
                o.setup
            )));
        }
        let (mut rtc, fingerprint) = meta_rtc(local_addr, &creds)?;
        let mut remote = vec![];
        {
            let mut api = rtc.direct_api();
            api.set_remote_ice_credentials(str0m::IceCreds {
                ufrag: o.ufrag.clone(),
                pass: o.pwd.clone(),
            });
            let fp = o
                .fingerprint
                .parse()
                .map_err(|_| PeerError::Answer("fingerprint does not parse".into()))?;
            api.set_remote_fingerprint(fp);
            api.set_ice_controlling(false);
            api.start_dtls(true)?;
            let mid = Mid::from("audio");
            api.declare_media(mid, MediaKind::Audio);
            api.declare_stream_tx(META_SSRC.into(), None, mid, None);
            if let Some(ssrc) = o.ssrc {
                api.expect_stream_rx(ssrc.into(), None, mid, None);
            }
        }
        for c in &o.candidates {
            let c = Candidate::from_sdp_string(c)
                .map_err(|e| PeerError::Answer(format!("candidate {c}: {e}")))?;
            remote.push(c.addr());
            rtc.add_remote_candidate(c);
        }
        // Meta's answer is its offer's shape, the client's role in it.
        let answer = meta_offer_text(local_addr, &creds.ufrag, &creds.pass, &fingerprint)
            .replace("a=setup:actpass", "a=setup:active");
        Ok((
            Accepted {
                rtc,
                tx_ssrc: Ssrc::from(META_SSRC),
                remote,
            },
            answer,
        ))
    }

    /// A browser-shaped peer at `local_addr`: full ICE, offering `streams` sendrecv audio
    /// m-lines.
    pub fn browser(local_addr: SocketAddr, streams: usize) -> Result<Offered, PeerError> {
        let mut cfg = RtcConfig::new()
            .clear_codecs()
            .set_rtp_mode(true)
            .set_crypto_provider(crate::media::peer_provider());
        codecs(&mut cfg);
        let mut rtc = cfg.build(Instant::now());
        let candidate = Candidate::host(local_addr, "udp")
            .map_err(|e| PeerError::Answer(format!("candidate: {e}")))?;
        rtc.add_local_candidate(candidate);
        let mut api = rtc.sdp_api();
        for _ in 0..streams.max(1) {
            api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        }
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| PeerError::Answer("no offer produced".into()))?;
        Ok(Offered {
            rtc,
            offer: offer.to_sdp_string(),
            pending: Pending::Browser { pending },
        })
    }

    /// Applies switchboard's answer.
    pub fn accept(mut self, answer: &str) -> Result<Accepted, PeerError> {
        let tx_ssrc;
        let mut remote = vec![];
        match self.pending {
            Pending::Meta => {
                let a = AnswerLines::parse(answer)?;
                let mut api = self.rtc.direct_api();
                api.set_remote_ice_credentials(str0m::IceCreds {
                    ufrag: a.ufrag.clone(),
                    pass: a.pwd.clone(),
                });
                let fp = a
                    .fingerprint
                    .parse()
                    .map_err(|_| PeerError::Answer("fingerprint does not parse".into()))?;
                api.set_remote_fingerprint(fp);
                api.set_ice_controlling(false);
                // The answer's role decides ours; Meta requires `active` from the business.
                match a.setup.as_str() {
                    "active" => api.start_dtls(false)?,
                    "passive" => api.start_dtls(true)?,
                    other => return Err(PeerError::Answer(format!("a=setup:{other}"))),
                }
                let mid = Mid::from("audio");
                api.declare_media(mid, MediaKind::Audio);
                api.declare_stream_tx(META_SSRC.into(), None, mid, None);
                if let Some(ssrc) = a.ssrc {
                    api.expect_stream_rx(ssrc.into(), None, mid, None);
                }
                tx_ssrc = Ssrc::from(META_SSRC);
                for c in &a.candidates {
                    let c = Candidate::from_sdp_string(c)
                        .map_err(|e| PeerError::Answer(format!("candidate {c}: {e}")))?;
                    remote.push(c.addr());
                    self.rtc.add_remote_candidate(c);
                }
            }
            Pending::Browser { pending } => {
                let answer = SdpAnswer::from_sdp_string(answer)
                    .map_err(|e| PeerError::Answer(e.to_string()))?;
                self.rtc.sdp_api().accept_answer(pending, answer)?;
                let mid = Sdp::parse(&self.offer)
                    .media()
                    .find_map(|m| m.value("mid"))
                    .map(Mid::from)
                    .ok_or_else(|| PeerError::Answer("no mid".into()))?;
                tx_ssrc = self
                    .rtc
                    .direct_api()
                    .stream_tx_by_mid(mid, None)
                    .map(|s| s.ssrc())
                    .ok_or_else(|| PeerError::Answer("no send stream".into()))?;
            }
        }
        Ok(Accepted {
            rtc: self.rtc,
            tx_ssrc,
            remote,
        })
    }
}

/// A Meta-shaped peer's `Rtc` at `local_addr` (ICE-lite, these credentials, its host
/// candidate), and its DTLS fingerprint. Meta negotiates no RTP header extension (no
/// a=extmap): its packets carry none, so neither do this peer's (str0m would add
/// transport-wide sequence numbers).
fn meta_rtc(local_addr: SocketAddr, creds: &str0m::IceCreds) -> Result<(Rtc, String), PeerError> {
    let mut cfg = RtcConfig::new()
        .clear_codecs()
        .clear_extension_map()
        .set_ice_lite(true)
        .set_rtp_mode(true)
        .set_local_ice_credentials(creds.clone())
        .set_crypto_provider(crate::media::peer_provider());
    codecs(&mut cfg);
    let mut rtc = cfg.build(Instant::now());
    let candidate = Candidate::host(local_addr, "udp")
        .map_err(|e| PeerError::Answer(format!("candidate: {e}")))?;
    rtc.add_local_candidate(candidate);
    let fingerprint = rtc.direct_api().local_dtls_fingerprint().to_string();
    Ok((rtc, fingerprint))
}

/// Opus on 111 and telephone-event/8000 on 126: what Meta offers and browsers send.
pub(crate) fn codecs(cfg: &mut RtcConfig) {
    cfg.codec_config().add_config(
        META_OPUS_PT.into(),
        None,
        Codec::Opus,
        Frequency::FORTY_EIGHT_KHZ,
        Some(2),
        FormatParams {
            min_p_time: Some(10),
            use_inband_fec: Some(true),
            ..Default::default()
        },
    );
    cfg.codec_config().add_config(
        META_TELE_PT.into(),
        None,
        Codec::Tele,
        Frequency::EIGHT_KHZ,
        None,
        FormatParams::default(),
    );
}

impl PendingPeer {
    /// The SDP offer to hand to switchboard.
    pub fn offer(&self) -> &str {
        &self.offered.offer
    }

    /// The peer's UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A Meta-shaped peer on `ip` (a fresh port): ICE-lite, offering Meta's SDP.
    pub async fn meta(ip: IpAddr) -> Result<PendingPeer, PeerError> {
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
        let local_addr = socket.local_addr()?;
        Ok(PendingPeer {
            offered: Offered::meta(local_addr, str0m::IceCreds::new())?,
            transport: Transport::Own(socket),
            local_addr,
        })
    }

    /// A Meta-shaped peer on a shared relay socket: its candidate is the relay's address, like
    /// every other call on that relay.
    pub fn meta_via(relay: &MetaRelay) -> Result<PendingPeer, PeerError> {
        let creds = str0m::IceCreds::new();
        let (inbox_tx, inbox) = relay.register(&creds.ufrag);
        let transport = Transport::Relay {
            relay: relay.clone(),
            socket: relay.socket(),
            inbox_tx,
            inbox: Some(inbox),
        };
        Ok(PendingPeer {
            offered: Offered::meta(relay.local_addr(), creds)?,
            transport,
            local_addr: relay.local_addr(),
        })
    }

    /// A browser-shaped peer on `ip`: full ICE, offering `streams` sendrecv audio m-lines.
    pub async fn browser(ip: IpAddr, streams: usize) -> Result<PendingPeer, PeerError> {
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
        let local_addr = socket.local_addr()?;
        Ok(PendingPeer {
            offered: Offered::browser(local_addr, streams)?,
            transport: Transport::Own(socket),
            local_addr,
        })
    }

    /// A Meta-shaped callee on `ip` (a fresh port) answering switchboard's `offer`
    /// ([`Offered::meta_callee`]): the running peer, and its answer for switchboard.
    pub async fn meta_callee(ip: IpAddr, offer: &str) -> Result<(Peer, String), PeerError> {
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
        let local_addr = socket.local_addr()?;
        let (accepted, answer) = Offered::meta_callee(local_addr, str0m::IceCreds::new(), offer)?;
        let peer = Self::run(accepted, Transport::Own(socket), local_addr)?;
        Ok((peer, answer))
    }

    /// Applies switchboard's answer and starts the peer.
    pub fn connect(self, answer: &str) -> Result<Peer, PeerError> {
        let accepted = self.offered.accept(answer)?;
        Self::run(accepted, self.transport, self.local_addr)
    }

    fn run(
        accepted: Accepted,
        transport: Transport,
        local_addr: SocketAddr,
    ) -> Result<Peer, PeerError> {
        let Accepted {
            rtc,
            tx_ssrc,
            remote,
        } = accepted;
        if let Transport::Relay {
            relay, inbox_tx, ..
        } = &transport
        {
            relay.file(&remote, inbox_tx);
        }
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (status_tx, status_rx) = watch::channel(Status::default());
        let state = PeerTask {
            rtc,
            transport,
            local_addr,
            tx_ssrc,
            opus_pt: META_OPUS_PT.into(),
            tele_pt: META_TELE_PT.into(),
            seq: u64::from(rand::random::<u16>()),
            ts: rand::random(),
            outgoing: Outgoing::Nothing,
            tone: None,
            audio_count: 0,
            next_frame: None,
            dtmf_queue: VecDeque::new(),
            dtmf: None,
            dtmf_rx: dtmf::Detector::default(),
            recording: Recording::default(),
            listener: Listener::new()?,
            status: status_tx,
        };
        let task = tokio::spawn(state.run(cmd_rx));
        Ok(Peer {
            handle: PeerHandle {
                cmd: cmd_tx,
                status: status_rx,
                local_addr,
            },
            task,
        })
    }
}

/// Waits until `f` holds for the watched value, or `limit` passes; the value that satisfied it.
pub(crate) async fn wait_watch<T: Clone>(
    rx: &watch::Receiver<T>,
    limit: Duration,
    f: impl FnMut(&T) -> bool,
) -> Option<T> {
    let mut rx = rx.clone();
    let r = tokio::time::timeout(limit, rx.wait_for(f)).await;
    match r {
        Ok(Ok(v)) => Some(v.clone()),
        _ => None,
    }
}

/// Meta's real offer (reference §3.1), the one copy of it.
const META_OFFER: &str = include_str!("../../tests/fixtures/meta_offer.sdp");

/// Meta's real offer with only this peer's address, port, ICE credentials and fingerprint put
/// in. Meta's offer carries the same port on an IPv4 and an IPv6 candidate; a peer has one
/// address, so the candidate of the other family is left out rather than left pointing at Meta.
fn meta_offer_text(addr: SocketAddr, ufrag: &str, pwd: &str, fingerprint: &str) -> String {
    let ip = addr.ip().to_string();
    let port = addr.port().to_string();
    let family = if addr.is_ipv4() { "IP4" } else { "IP6" };
    let mut out = String::with_capacity(META_OFFER.len());
    for line in Sdp::parse(META_OFFER).lines() {
        let mut words: Vec<&str> = line.text.split(' ').collect();
        let text = match (line.kind, line.attribute().map(|a| a.name)) {
            (Kind::Other { key: 'c' }, _) => format!("c=IN {family} {ip}"),
            (_, Some("ice-ufrag")) => format!("a=ice-ufrag:{ufrag}"),
            (_, Some("ice-pwd")) => format!("a=ice-pwd:{pwd}"),
            (_, Some("fingerprint")) => format!("a=fingerprint:{fingerprint}"),
            // `m=audio port proto formats…`
            (Kind::Media, _) if words.len() > 1 => {
                words[1] = &port;
                words.join(" ")
            }
            // `a=candidate:foundation component transport priority address port typ …`
            (_, Some("candidate")) if words.len() > 5 => {
                let offered: Option<IpAddr> = words[4].parse().ok();
                if offered.is_some_and(|o| o.is_ipv4() != addr.is_ipv4()) {
                    continue;
                }
                words[4] = &ip;
                words[5] = &port;
                words.join(" ")
            }
            _ => line.text.to_owned(),
        };
        out.push_str(&text);
        out.push_str("\r\n");
    }
    out
}

/// What the Meta-shaped peer reads from an answer.
struct AnswerLines {
    ufrag: String,
    pwd: String,
    fingerprint: String,
    setup: String,
    candidates: Vec<String>,
    ssrc: Option<u32>,
}

impl AnswerLines {
    fn parse(answer: &str) -> Result<AnswerLines, PeerError> {
        let sdp = Sdp::parse(answer);
        let last = |name: &str| {
            sdp.all_attrs(name)
                .filter_map(|a| a.value)
                .last()
                .unwrap_or_default()
                .to_owned()
        };
        let a = AnswerLines {
            ufrag: last("ice-ufrag"),
            pwd: last("ice-pwd"),
            fingerprint: last("fingerprint"),
            setup: last("setup"),
            candidates: sdp
                .lines()
                .iter()
                .filter(|l| l.is_attr("candidate"))
                .map(|l| l.value.to_owned())
                .collect(),
            ssrc: sdp
                .all_attrs("ssrc")
                .last()
                .and_then(|a| a.value?.split_whitespace().next()?.parse().ok()),
        };
        if a.ufrag.is_empty() || a.pwd.is_empty() || a.fingerprint.is_empty() {
            return Err(PeerError::Answer(
                "missing ice-ufrag, ice-pwd or fingerprint".into(),
            ));
        }
        Ok(a)
    }
}

struct PeerTask {
    rtc: Rtc,
    transport: Transport,
    local_addr: SocketAddr,
    tx_ssrc: Ssrc,
    opus_pt: Pt,
    tele_pt: Pt,
    seq: u64,
    ts: u32,
    outgoing: Outgoing,
    tone: Option<ToneEncoder>,
    audio_count: u32,
    next_frame: Option<Instant>,
    dtmf_queue: VecDeque<(u8, Duration)>,
    dtmf: Option<dtmf::Sender>,
    dtmf_rx: dtmf::Detector,
    recording: Recording,
    listener: Listener,
    status: watch::Sender<Status>,
}

impl PeerTask {
    async fn run(mut self, mut cmds: mpsc::Receiver<Cmd>) {
        let mut buf = vec![0u8; 2048];
        let mut rtc_timeout = Instant::now();
        loop {
            if !self.rtc.is_alive() {
                self.transport.release();
                self.status.send_modify(|s| s.closed = true);
                // Closed: nothing more on the wire, but what was recorded stays readable.
                while let Some(cmd) = cmds.recv().await {
                    if let Cmd::Snapshot(tx) = cmd {
                        let _ = tx.send(self.snapshot());
                    }
                }
                return;
            }
            let mut deadline = rtc_timeout;
            if let Some(f) = self.next_frame {
                deadline = deadline.min(f);
            }
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    None => return,
                    Some(Cmd::Send(o)) => {
                        if let Outgoing::Tone { hz } = o {
                            self.tone = ToneEncoder::new(hz).ok();
                        }
                        self.outgoing = o;
                    }
                    Some(Cmd::Dtmf(c, d)) => {
                        if let Some(code) = dtmf::digit_code(c) {
                            self.dtmf_queue.push_back((code, d));
                        }
                    }
                    Some(Cmd::Snapshot(tx)) => {
                        let _ = tx.send(self.snapshot());
                    }
                    Some(Cmd::Close) => {
                        let _ = self.rtc.close();
                        self.status.send_modify(|s| s.closed = true);
                    }
                },
                r = self.transport.recv(&mut buf) => {
                    if let Ok((n, source)) = r {
                        if let Ok(recv) = Receive::new(Protocol::Udp, source, self.local_addr, &buf[..n]) {
                            let input = Input::Receive(Instant::now(), recv);
                            if self.rtc.accepts(&input) {
                                let _ = self.rtc.handle_input(input);
                            }
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => {
                    let now = Instant::now();
                    if self.next_frame.is_some_and(|f| f <= now) {
                        self.send_frame(now);
                    }
                    let _ = self.rtc.handle_input(Input::Timeout(now));
                }
            }
            rtc_timeout = self.drain().await;
        }
    }

    fn snapshot(&self) -> Recording {
        let mut r = self.recording.clone();
        r.heard = super::audio::dominant_frequency(&self.listener.recent(500));
        r.undecodable = self.listener.undecodable;
        r
    }

    async fn drain(&mut self) -> Instant {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => return t,
                Ok(Output::Transmit(t)) => {
                    let _ = self.transport.send_to(&t.contents, t.destination).await;
                }
                Ok(Output::Event(e)) => self.on_event(e),
                Err(_) => return Instant::now() + Duration::from_millis(10),
            }
        }
    }

    fn on_event(&mut self, e: Event) {
        match e {
            Event::Connected => {
                let now = Instant::now();
                self.recording.connected_at = Some(now);
                self.next_frame = Some(now);
                self.status.send_modify(|s| s.connected = true);
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.status.send_modify(|s| s.connected = false);
            }
            Event::Closed => {
                // The call is over for the relay too: its addresses may serve another call.
                self.transport.release();
                self.status.send_modify(|s| s.closed = true);
            }
            Event::RtpPacket(p) => {
                let pt = *p.header.payload_type;
                if pt == *self.tele_pt {
                    if let Some(r) = Report::parse(&p.payload) {
                        let status = &self.status;
                        self.dtmf_rx.handle(p.header.timestamp, r, |d| {
                            status.send_modify(|s| s.digits.push(d.digit));
                        });
                    }
                } else if pt == *self.opus_pt {
                    self.listener.push(&p.payload);
                }
                if self.recording.packets.len() < MAX_RECORDED {
                    self.recording.packets.push(Received {
                        at: p.timestamp,
                        seq: *p.seq_no,
                        ts: p.header.timestamp,
                        pt,
                        ssrc: *p.header.ssrc,
                        marker: p.header.marker,
                        payload: p.payload.clone(),
                    });
                }
                self.status.send_modify(|s| s.packets_received += 1);
            }
            _ => {}
        }
    }

    fn send_frame(&mut self, now: Instant) {
        self.next_frame = Some(self.next_frame.unwrap_or(now) + Duration::from_millis(20));
        if self.next_frame.is_some_and(|f| f < now) {
            self.next_frame = Some(now + Duration::from_millis(20));
        }
        if self.dtmf.is_none() {
            if let Some((code, d)) = self.dtmf_queue.pop_front() {
                self.dtmf = Some(dtmf::Sender::new(code, d, self.ts.wrapping_add(960)));
            }
        }
        // Time runs on during an event too, so audio after it continues where the clock is.
        self.ts = self.ts.wrapping_add(960);
        let (pt, ts, payload, marker): (Pt, u32, Vec<u8>, bool) = if let Some(s) = &mut self.dtmf {
            match s.next_report() {
                Some((r, first)) => (self.tele_pt, s.ts, r.to_bytes().to_vec(), first),
                None => {
                    self.dtmf = None;
                    return;
                }
            }
        } else {
            let payload = match &self.outgoing {
                Outgoing::Nothing => return,
                Outgoing::Tagged { tag } => tagged_payload(*tag, self.audio_count),
                Outgoing::Tone { .. } => match self.tone.as_mut().map(|t| t.next_frame()) {
                    Some(Ok(p)) => p,
                    _ => return,
                },
                Outgoing::Clip { packets } => {
                    match packets.get(self.audio_count as usize % packets.len().max(1)) {
                        Some(p) => p.clone(),
                        None => return,
                    }
                }
            };
            self.audio_count += 1;
            (self.opus_pt, self.ts, payload, false)
        };
        let payload: Arc<[u8]> = payload.into();
        if self.recording.sent.len() < MAX_RECORDED && pt == self.opus_pt {
            self.recording.sent.push(payload.clone());
        }
        let seq = self.seq;
        self.seq += 1;
        if let Some(tx) = self.rtc.direct_api().stream_tx(&self.tx_ssrc) {
            tx.write_rtp(RtpWrite::new(pt, seq.into(), ts, now, payload).marker(marker));
        }
        self.status.send_modify(|s| s.packets_sent += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const META_FP: &str = "sha-256 D8:C5:19:9F:8C:AD:AA:21:24:7A:71:6B:4d:6D:54:BC:45:75:FA:AA:61:F8:13:E6:F5:7E:D9:14:1F:59:6D:5E";

    #[test]
    fn the_meta_offer_is_metas_own_with_only_the_peers_values_put_in() {
        // Meta's own values give back Meta's offer, less the candidate of the other family.
        let v4 = meta_offer_text(
            "57.144.125.35:3484".parse().unwrap(),
            "MkBWnyZXw+wMTKqA",
            "X29zIx+RGAlhVLF1/lo0oQ==",
            META_FP,
        );
        let without_v6: String = META_OFFER
            .split_inclusive("\r\n")
            .filter(|l| !l.contains("2a03:2880"))
            .collect();
        assert_eq!(v4, without_v6);

        let fp = format!("sha-256 {}", ["AB"; 32].join(":"));
        let v6 = meta_offer_text("[::1]:40000".parse().unwrap(), "uf", "pw", &fp);
        let expected: String = META_OFFER
            .split_inclusive("\r\n")
            .filter(|l| !l.contains("57.144.125.35 3484 typ"))
            .collect::<String>()
            .replace("c=IN IP4 57.144.125.35", "c=IN IP6 ::1")
            .replace("2a03:2880:f33e:120:face:b00c:0:699c 3484", "::1 40000")
            .replace("m=audio 3484", "m=audio 40000")
            .replace("a=ice-ufrag:MkBWnyZXw+wMTKqA", "a=ice-ufrag:uf")
            .replace("a=ice-pwd:X29zIx+RGAlhVLF1/lo0oQ==", "a=ice-pwd:pw")
            .replace(META_FP, &fp);
        assert_eq!(v6, expected);
        crate::whatsapp::sdp::check_offer(&v6).expect("still a Meta-style offer");
    }
}
