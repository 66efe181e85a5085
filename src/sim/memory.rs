//! An in-memory network around a sans-IO [`Engine`]: str0m peers and the engine exchange
//! datagrams through queues, on a simulated clock, with no sockets and no threads. The benchmark
//! of the forwarding path and the robustness tests run on it.
//!
//! Each call is a caller (a str0m peer facing the engine's WhatsApp leg) and an agent (a str0m
//! peer facing a browser leg that hears the caller). Peers here are plain SDP-API offerers; the
//! Meta-exact shape is `super::peer`'s job over real sockets.
//!
//! This is test and benchmark scaffolding: a failure to set up the network panics with its
//! reason, as a failed test should.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

use crate::ids::LegId;
use crate::media::{Engine, EngineConfig, Limits};

/// The engine's address on the in-memory network; its ports start at [`BASE_PORT`].
const ENGINE_IP: [u8; 4] = [10, 0, 0, 1];
/// The engine's first port.
const BASE_PORT: u16 = 5000;

/// One str0m peer on the in-memory network.
struct Peer {
    rtc: Rtc,
    addr: SocketAddr,
    /// The engine's address in the answer this peer got.
    engine: SocketAddr,
    tx: Option<Ssrc>,
    received: u64,
    /// RTCP from the engine seen: receiver reports on what this peer sends (its egress stats
    /// carry the loss they report), sender reports on what it receives.
    receiver_reports: bool,
    sender_reports: bool,
}

fn peer(addr: SocketAddr, now: Instant) -> (Peer, String, str0m::change::SdpPendingOffer) {
    let mut cfg = RtcConfig::new()
        .clear_codecs()
        .set_rtp_mode(true)
        .set_stats_interval(Some(Duration::from_secs(1)));
    super::peer::codecs(&mut cfg);
    let mut rtc = cfg.build(now);
    rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let (offer, pending) = api.apply().unwrap();
    (
        Peer {
            rtc,
            addr,
            engine: addr,
            tx: None,
            received: 0,
            receiver_reports: false,
            sender_reports: false,
        },
        offer.to_sdp_string(),
        pending,
    )
}

/// The network: an engine, its calls' peers, the datagrams in flight and the clock.
pub struct MemoryNet {
    now: Instant,
    /// The engine under test.
    pub engine: Engine,
    /// Per call: a Meta-side peer (index 2k) and an agent peer (2k + 1).
    peers: Vec<Peer>,
    by_addr: HashMap<SocketAddr, usize>,
    /// Peers cut off the network: nothing reaches them, so they answer nothing.
    cut: Vec<usize>,
    /// Per call: the WhatsApp leg and the browser leg.
    legs: Vec<(LegId, LegId)>,
    /// Packets sent by callers so far, plus one.
    pub seq: u64,
    /// Datagrams in flight toward the engine: (from, to, bytes).
    to_engine: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    /// The engine's SDP answers, every leg.
    answers: Vec<String>,
}

impl MemoryNet {
    /// An engine with `calls` connected calls (caller ↔ WhatsApp leg, agent ↔ browser leg
    /// routed to hear the caller).
    pub fn new(calls: usize) -> MemoryNet {
        MemoryNet::with_ports(calls, 1)
    }

    /// Like [`MemoryNet::new`], with the engine's legs spread over a pool of `ports` sockets.
    pub fn with_ports(calls: usize, ports: u16) -> MemoryNet {
        MemoryNet::with_limits(calls, ports, Limits::default())
    }

    /// Like [`MemoryNet::with_ports`], with the engine's limits given.
    pub fn with_limits(calls: usize, ports: u16, limits: Limits) -> MemoryNet {
        let now = Instant::now();
        let mut engine = Engine::new(EngineConfig {
            public_ip: ENGINE_IP.into(),
            public_ip6: None,
            ports: (BASE_PORT..BASE_PORT + ports.max(1)).collect(),
            shards: 1,
            connect_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            stats_interval: Duration::from_secs(5),
            limits,
            hold_audio: std::sync::Arc::from(Vec::new()),
        })
        .unwrap();
        let mut peers = Vec::new();
        let mut legs = Vec::new();
        let mut answers = Vec::new();
        for i in 0..calls {
            let host = |n: usize| -> SocketAddr {
                format!("10.{}.{}.{}:6000", 1 + n / 65536, (n / 256) % 256, n % 256)
                    .parse()
                    .unwrap()
            };
            let (mut meta, offer, pending) = peer(host(2 * i), now);
            let meta_mid = offer
                .lines()
                .find_map(|l| l.trim_end().strip_prefix("a=mid:"))
                .map(Mid::from)
                .unwrap();
            let wa = engine.answer_whatsapp(now, &offer).unwrap();
            meta.engine = first_candidate(&wa.sdp);
            meta.rtc
                .sdp_api()
                .accept_answer(pending, SdpAnswer::from_sdp_string(&wa.sdp).unwrap())
                .unwrap();
            meta.tx = meta
                .rtc
                .direct_api()
                .stream_tx_by_mid(meta_mid, None)
                .map(|s| s.ssrc());
            let (mut agent, offer, pending) = peer(host(2 * i + 1), now);
            let a = engine.answer_browser(now, &offer).unwrap();
            agent.engine = first_candidate(&a.sdp);
            agent
                .rtc
                .sdp_api()
                .accept_answer(pending, SdpAnswer::from_sdp_string(&a.sdp).unwrap())
                .unwrap();
            engine.route(a.streams[0], Some(wa.leg)).unwrap();
            answers.push(wa.sdp);
            answers.push(a.sdp);
            legs.push((wa.leg, a.leg));
            peers.push(meta);
            peers.push(agent);
        }
        let by_addr = peers.iter().enumerate().map(|(i, p)| (p.addr, i)).collect();
        let mut h = MemoryNet {
            now,
            engine,
            peers,
            by_addr,
            seq: 1,
            cut: Vec::new(),
            legs,
            to_engine: VecDeque::new(),
            answers,
        };
        for _ in 0..5000 {
            h.pump(true);
            h.now += Duration::from_millis(1);
            if h.peers.iter().all(|p| p.rtc.is_connected()) {
                break;
            }
        }
        assert!(h.peers.iter().all(|p| p.rtc.is_connected()));
        h
    }

    /// Moves everything in flight, peers untimed; returns the time spent inside the engine.
    /// `all` gives every peer its timeout (set-up); otherwise only peers that received.
    pub fn pump(&mut self, all: bool) -> Duration {
        let mut spent = Duration::ZERO;
        if all {
            for (i, p) in self.peers.iter_mut().enumerate() {
                if self.cut.contains(&i) {
                    continue;
                }
                p.rtc.handle_input(Input::Timeout(self.now)).unwrap();
                drain_peer(p, &mut self.to_engine);
            }
        }
        for _ in 0..20 {
            let t = Instant::now();
            let mut moved = !self.to_engine.is_empty();
            while let Some((from, to, d)) = self.to_engine.pop_front() {
                let socket = usize::from(to.port().wrapping_sub(BASE_PORT));
                self.engine.handle_datagram(self.now, socket, from, &d);
            }
            if self.engine.poll_timeout().is_some_and(|at| at <= self.now) {
                self.engine.handle_timeout(self.now);
            }
            let mut out = Vec::new();
            while let Some(tx) = self.engine.poll_transmit() {
                out.push(tx);
            }
            spent += t.elapsed();
            for tx in out {
                moved = true;
                let Some(&i) = self.by_addr.get(&tx.destination) else {
                    continue;
                };
                if self.cut.contains(&i) {
                    continue;
                }
                let p = &mut self.peers[i];
                let from = SocketAddr::from((ENGINE_IP, self.engine.ports()[tx.socket]));
                let r = Receive::new(Protocol::Udp, from, p.addr, &tx.contents).unwrap();
                p.rtc.handle_input(Input::Receive(self.now, r)).unwrap();
                drain_peer(p, &mut self.to_engine);
            }
            if !moved {
                break;
            }
        }
        spent
    }

    /// One Meta-side peer (round robin over the calls) sends one packet; returns the engine's
    /// time for everything that followed. Every 1000 packets all peers get their timers.
    pub fn step(&mut self) -> Duration {
        let calls = self.peers.len() / 2;
        // Each call's caller sends 50 packets a second, as a 20 ms Opus stream does.
        self.now += Duration::from_micros(20_000 / calls as u64);
        let i = 2 * (self.seq as usize % calls);
        let seq = self.seq / calls as u64 + 1;
        let meta = &mut self.peers[i];
        let ssrc = meta.tx.unwrap();
        let payload = vec![0xF8u8; 60];
        let ts = (seq as u32).wrapping_mul(960);
        meta.rtc
            .direct_api()
            .stream_tx(&ssrc)
            .unwrap()
            .write_rtp(RtpWrite::new(111.into(), seq.into(), ts, self.now, payload));
        meta.rtc.handle_input(Input::Timeout(self.now)).unwrap();
        drain_peer(meta, &mut self.to_engine);
        self.seq += 1;
        let housekeeping = self.seq.is_multiple_of(1000);
        self.pump(housekeeping)
    }

    /// Queues one packet from call `i`'s caller without delivering it (see [`Self::in_flight`]).
    pub fn caller_sends(&mut self, i: usize) {
        let meta = &mut self.peers[2 * i];
        let ssrc = meta.tx.expect("the caller has a send stream");
        let seq = self.seq;
        self.seq += 1;
        let ts = (seq as u32).wrapping_mul(960);
        if let Some(tx) = meta.rtc.direct_api().stream_tx(&ssrc) {
            tx.write_rtp(RtpWrite::new(
                111.into(),
                seq.into(),
                ts,
                self.now,
                vec![0xF8u8; 60],
            ));
        }
        let _ = meta.rtc.handle_input(Input::Timeout(self.now));
        drain_peer(meta, &mut self.to_engine);
    }

    /// Datagrams on their way to the engine: (sender, engine address, bytes). Tests may alter
    /// them.
    pub fn in_flight(&mut self) -> &mut VecDeque<(SocketAddr, SocketAddr, Vec<u8>)> {
        &mut self.to_engine
    }

    /// The address of call `i`'s caller and agent.
    pub fn addrs(&self, i: usize) -> (SocketAddr, SocketAddr) {
        (self.peers[2 * i].addr, self.peers[2 * i + 1].addr)
    }

    /// Queues one RFC 4733 end-of-event report from call `i`'s caller, on the telephone-event
    /// payload type with RTP timestamp `ts` (a new `ts` is a new key press).
    pub fn caller_sends_dtmf(&mut self, i: usize, event: u8, ts: u32) {
        let meta = &mut self.peers[2 * i];
        let ssrc = meta.tx.expect("the caller has a send stream");
        let seq = self.seq;
        self.seq += 1;
        // Event, end bit with volume 10, duration 800 (100 ms at 8 kHz).
        let payload = vec![event, 0x80 | 10, 0x03, 0x20];
        if let Some(tx) = meta.rtc.direct_api().stream_tx(&ssrc) {
            tx.write_rtp(RtpWrite::new(126.into(), seq.into(), ts, self.now, payload).marker(true));
        }
        let _ = meta.rtc.handle_input(Input::Timeout(self.now));
        drain_peer(meta, &mut self.to_engine);
    }

    /// Call `i`'s WhatsApp leg and browser leg.
    pub fn call_legs(&self, i: usize) -> (LegId, LegId) {
        self.legs[i]
    }

    /// Cuts call `i`'s caller off the network: from now on it hears nothing and says nothing,
    /// as a peer that vanished.
    pub fn cut_caller(&mut self, i: usize) {
        self.cut.push(2 * i);
    }

    /// The engine's address that call `i`'s caller talks to.
    pub fn engine_addr_of_caller(&self, i: usize) -> SocketAddr {
        self.peers[2 * i].engine
    }

    /// The simulated clock's time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Advances the simulated clock.
    pub fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    /// Whether call `i`'s caller has had receiver reports from the engine (on its audio), and
    /// its agent sender reports (on the audio it hears): the RTCP feedback peers rely on.
    pub fn rtcp_seen(&self, i: usize) -> (bool, bool) {
        (
            self.peers[2 * i].receiver_reports,
            self.peers[2 * i + 1].sender_reports,
        )
    }

    /// Whether any leg answer of the engine negotiated transport-wide congestion control.
    pub fn negotiated_twcc(&self) -> bool {
        self.answers.iter().any(|a| a.contains("transport-wide-cc"))
    }

    /// RTP packets the agents have received.
    pub fn received_by_agents(&self) -> u64 {
        self.peers
            .iter()
            .skip(1)
            .step_by(2)
            .map(|p| p.received)
            .sum()
    }
}

/// The address of the first candidate in an answer.
fn first_candidate(sdp: &str) -> SocketAddr {
    crate::sdp::candidate_addrs(sdp)[0]
}

fn drain_peer(p: &mut Peer, to_engine: &mut VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>) {
    while let Ok(o) = p.rtc.poll_output() {
        match o {
            Output::Timeout(_) => break,
            Output::Transmit(t) => to_engine.push_back((p.addr, t.destination, t.contents.into())),
            Output::Event(Event::RtpPacket(_)) => p.received += 1,
            Output::Event(Event::MediaEgressStats(s)) => {
                p.receiver_reports |= s.loss.is_some();
            }
            Output::Event(Event::MediaIngressStats(s)) => {
                p.sender_reports |= s.remote.is_some();
            }
            Output::Event(_) => {}
        }
    }
}
