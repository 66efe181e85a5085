//! The per-packet forwarding path, in one process, with no sockets: a str0m peer sends SRTP to
//! the engine's WhatsApp leg, the engine decrypts, rewrites and re-encrypts it toward a browser
//! leg. Only the engine's own calls are timed (`handle_datagram`, `handle_timeout` when due,
//! `poll_transmit`); the peers are driven outside the measurement. Time is simulated: one
//! millisecond per packet, so timers, RTCP and consent checks run at a realistic share.
//!
//! Run: `cargo bench --bench forward`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use str0m::change::SdpAnswer;
use str0m::format::{Codec, FormatParams};
use str0m::media::{Direction, Frequency, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use switchboard::media::{Engine, EngineConfig};

struct Peer {
    rtc: Rtc,
    addr: SocketAddr,
    tx: Option<Ssrc>,
    received: u64,
}

fn peer(addr: SocketAddr, now: Instant) -> (Peer, String, str0m::change::SdpPendingOffer) {
    let mut cfg = RtcConfig::new().clear_codecs().set_rtp_mode(true);
    cfg.codec_config().add_config(
        111.into(),
        None,
        Codec::Opus,
        Frequency::FORTY_EIGHT_KHZ,
        Some(2),
        FormatParams::default(),
    );
    let mut rtc = cfg.build(now);
    rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let (offer, pending) = api.apply().unwrap();
    (
        Peer {
            rtc,
            addr,
            tx: None,
            received: 0,
        },
        offer.to_sdp_string(),
        pending,
    )
}

struct Harness {
    now: Instant,
    engine: Engine,
    engine_addr: SocketAddr,
    meta: Peer,
    agent: Peer,
    seq: u64,
    /// Datagrams in flight toward the engine: (from, bytes).
    to_engine: VecDeque<(SocketAddr, Vec<u8>)>,
}

impl Harness {
    fn new() -> Harness {
        let now = Instant::now();
        let engine_addr: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let mut engine = Engine::new(EngineConfig {
            public_addr: engine_addr,
            connect_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            stats_interval: Duration::from_secs(5),
        })
        .unwrap();
        let (mut meta, offer, pending) = peer("10.0.0.2:6000".parse().unwrap(), now);
        let meta_mid = offer
            .lines()
            .find_map(|l| l.trim_end().strip_prefix("a=mid:"))
            .map(Mid::from)
            .unwrap();
        let wa = engine.answer_whatsapp(now, &offer).unwrap();
        meta.rtc
            .sdp_api()
            .accept_answer(pending, SdpAnswer::from_sdp_string(&wa.sdp).unwrap())
            .unwrap();
        let (mut agent, offer, pending) = peer("10.0.0.3:7000".parse().unwrap(), now);
        let a = engine.answer_browser(now, &offer).unwrap();
        agent
            .rtc
            .sdp_api()
            .accept_answer(pending, SdpAnswer::from_sdp_string(&a.sdp).unwrap())
            .unwrap();
        engine.route(a.streams[0], Some(wa.leg)).unwrap();
        meta.tx = meta
            .rtc
            .direct_api()
            .stream_tx_by_mid(meta_mid, None)
            .map(|s| s.ssrc());
        let mut h = Harness {
            now,
            engine,
            engine_addr,
            meta,
            agent,
            seq: 1,
            to_engine: VecDeque::new(),
        };
        for _ in 0..2000 {
            h.pump();
            h.now += Duration::from_millis(1);
            if h.meta.rtc.is_connected() && h.agent.rtc.is_connected() {
                break;
            }
        }
        assert!(h.meta.rtc.is_connected() && h.agent.rtc.is_connected());
        h
    }

    /// Moves everything in flight, peers untimed; returns the time spent inside the engine.
    fn pump(&mut self) -> Duration {
        let mut spent = Duration::ZERO;
        for _ in 0..20 {
            for p in [&mut self.meta, &mut self.agent] {
                p.rtc.handle_input(Input::Timeout(self.now)).unwrap();
                drain_peer(p, &mut self.to_engine);
            }
            let t = Instant::now();
            let mut moved = !self.to_engine.is_empty();
            while let Some((from, d)) = self.to_engine.pop_front() {
                self.engine.handle_datagram(self.now, from, &d);
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
                let p = if tx.destination == self.meta.addr {
                    &mut self.meta
                } else {
                    &mut self.agent
                };
                let r =
                    Receive::new(Protocol::Udp, self.engine_addr, p.addr, &tx.contents).unwrap();
                p.rtc.handle_input(Input::Receive(self.now, r)).unwrap();
                drain_peer(p, &mut self.to_engine);
            }
            if !moved {
                break;
            }
        }
        spent
    }

    /// Meta sends one packet; returns the engine's time for everything that followed.
    fn step(&mut self) -> Duration {
        self.now += Duration::from_millis(1);
        let ssrc = self.meta.tx.unwrap();
        let payload = vec![0xF8u8; 60];
        let ts = (self.seq as u32).wrapping_mul(960);
        self.meta
            .rtc
            .direct_api()
            .stream_tx(&ssrc)
            .unwrap()
            .write_rtp(RtpWrite::new(
                111.into(),
                self.seq.into(),
                ts,
                self.now,
                payload,
            ));
        self.seq += 1;
        drain_peer(&mut self.meta, &mut self.to_engine);
        self.pump()
    }
}

fn drain_peer(p: &mut Peer, to_engine: &mut VecDeque<(SocketAddr, Vec<u8>)>) {
    while let Ok(o) = p.rtc.poll_output() {
        match o {
            Output::Timeout(_) => break,
            Output::Transmit(t) => to_engine.push_back((p.addr, t.contents.into())),
            Output::Event(Event::RtpPacket(_)) => p.received += 1,
            Output::Event(_) => {}
        }
    }
}

fn forward(c: &mut Criterion) {
    let mut h = Harness::new();
    c.bench_function("forward_one_packet_meta_to_agent", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| h.step()).sum())
    });
    let forwarded = h.engine.counters().rtp_forwarded;
    assert!(forwarded > 0, "the agent leg was fed");
    assert!(
        h.agent.received * 10 >= forwarded * 9,
        "the agent received what was forwarded: {} of {forwarded}",
        h.agent.received
    );
}

criterion_group!(benches, forward);
criterion_main!(benches);
