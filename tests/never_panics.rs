//! Robustness: everything that comes from outside — SDP offers, webhook bodies, datagrams on
//! the media socket — is mutated at random (seeded, so a failure is reproducible) and fed in.
//! Nothing panics, nothing is left half-made, and the engine keeps relaying afterwards.

use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use switchboard::media::{Engine, EngineConfig, Limits, MediaEvent};
use switchboard::sim::memory::MemoryNet;
use switchboard::whatsapp::webhook::parse_webhook;

const META_OFFER: &str = include_str!("fixtures/meta_offer.sdp");

/// One random mutation of `input`: bit flips, a cut, a splice of junk, a duplicated or dropped
/// chunk.
fn mutate(rng: &mut StdRng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..rng.gen_range(1..4) {
        if v.is_empty() {
            v.push(rng.gen());
            continue;
        }
        let at = rng.gen_range(0..v.len());
        match rng.gen_range(0..6) {
            0 => v[at] ^= 1 << rng.gen_range(0..8),
            1 => v.truncate(at),
            2 => {
                let junk: Vec<u8> = (0..rng.gen_range(1..16)).map(|_| rng.gen()).collect();
                v.splice(at..at, junk);
            }
            3 => {
                let end = (at + rng.gen_range(1..64)).min(v.len());
                let chunk = v[at..end].to_vec();
                v.splice(at..at, chunk);
            }
            4 => {
                let end = (at + rng.gen_range(1..64)).min(v.len());
                v.drain(at..end);
            }
            _ => v[at] = rng.gen(),
        }
    }
    v
}

fn sdp_mutation(rng: &mut StdRng) -> String {
    if rng.gen_bool(0.5) {
        return String::from_utf8_lossy(&mutate(rng, META_OFFER.as_bytes())).into_owned();
    }
    // Line-level: drop, duplicate or swap whole lines, the way a hand-built SDP goes wrong.
    let mut lines: Vec<&str> = META_OFFER.split("\r\n").collect();
    for _ in 0..rng.gen_range(1..4) {
        let i = rng.gen_range(0..lines.len());
        match rng.gen_range(0..3) {
            0 => {
                lines.remove(i);
            }
            1 => {
                let l = lines[i];
                lines.insert(i, l);
            }
            _ => {
                let j = rng.gen_range(0..lines.len());
                lines.swap(i, j);
            }
        }
    }
    lines.join("\r\n")
}

#[test]
fn mutated_offers_get_an_answer_or_an_error_and_never_a_half_made_leg() {
    let mut rng = StdRng::seed_from_u64(0x5b_0ff3);
    let now = Instant::now();
    let mut engine = Engine::new(EngineConfig {
        public_ip: [10, 0, 0, 1].into(),
        public_ip6: None,
        ports: vec![5000],
        shards: 1,
        connect_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(10),
        stats_interval: Duration::from_secs(5),
        limits: Limits::default(),
        hold_audio: std::sync::Arc::from(Vec::new()),
    })
    .unwrap();
    let (mut ok, mut refused) = (0, 0);
    for round in 0..1500 {
        let offer = sdp_mutation(&mut rng);
        let before = engine.leg_count();
        let r = catch_unwind(AssertUnwindSafe(|| engine.answer_whatsapp(now, &offer)));
        let r = r.unwrap_or_else(|_| panic!("round {round}: panicked on offer:\n{offer}"));
        match r {
            Ok(a) => {
                ok += 1;
                assert_eq!(engine.leg_count(), before + 1);
                engine.close(now, a.leg).unwrap();
            }
            Err(_) => refused += 1,
        }
        assert_eq!(engine.leg_count(), 0, "round {round} left a leg behind");
    }
    assert!(
        ok > 0 && refused > 0,
        "both outcomes exercised: {ok} ok, {refused} refused"
    );
}

#[test]
fn mutated_webhook_bodies_never_panic() {
    let mut rng = StdRng::seed_from_u64(0x0eb_400c);
    let fixtures = [
        include_str!("fixtures/connect_offer.json"),
        include_str!("fixtures/terminate.json"),
        include_str!("fixtures/status_ringing.json"),
        include_str!("fixtures/connect_answer_business.json"),
        include_str!("fixtures/call_permission_reply.json"),
    ];
    let mut parsed = 0;
    for round in 0..4000 {
        let base = fixtures[round % fixtures.len()].as_bytes();
        let body = mutate(&mut rng, base);
        let r = catch_unwind(|| parse_webhook(&body));
        let r = r.unwrap_or_else(|_| {
            panic!(
                "round {round}: panicked on body:\n{}",
                String::from_utf8_lossy(&body)
            )
        });
        if r.is_ok() {
            parsed += 1;
        }
    }
    assert!(parsed > 0, "some mutations still parse");
}

#[test]
fn mutated_and_junk_datagrams_leave_the_relay_working() {
    let mut rng = StdRng::seed_from_u64(0xda7a_9a11);
    let mut net = MemoryNet::new(1);
    let (caller, agent) = net.addrs(0);
    let stranger: SocketAddr = "10.9.9.9:999".parse().unwrap();
    for round in 0..3000 {
        net.caller_sends(0);
        net.advance(Duration::from_millis(20));
        if rng.gen_bool(0.3) {
            // Alter what the caller really sent (SRTP, RTCP, STUN or DTLS).
            if let Some((_, _, d)) = net.in_flight().back_mut() {
                *d = mutate(&mut rng, d);
            }
        }
        if rng.gen_bool(0.2) {
            let from = [caller, agent, stranger][rng.gen_range(0..3)];
            let mut junk: Vec<u8> = (0..rng.gen_range(0..200)).map(|_| rng.gen()).collect();
            if !junk.is_empty() && rng.gen_bool(0.5) {
                // Make it look like RTP, STUN or DTLS to get past the first byte check.
                junk[0] = [0x80, 0x00, 0x16, 0x17][rng.gen_range(0..4)];
            }
            let to = "10.0.0.1:5000".parse().unwrap();
            net.in_flight().push_back((from, to, junk));
        }
        let r = catch_unwind(AssertUnwindSafe(|| net.pump(round % 50 == 0)));
        assert!(r.is_ok(), "round {round} panicked");
    }
    let mut gone = vec![];
    while let Some(ev) = net.engine.poll_event() {
        if matches!(ev, MediaEvent::Failed { .. } | MediaEvent::Closed { .. }) {
            gone.push(ev);
        }
    }
    assert_eq!(
        net.engine.leg_count() + gone.len(),
        2,
        "every leg is alive or reported gone"
    );
    assert_eq!(
        net.engine.leg_count(),
        2,
        "junk did not tear down the call: {gone:?}"
    );
    // Clean traffic still flows end to end.
    let before = net.received_by_agents();
    for _ in 0..100 {
        net.caller_sends(0);
        net.advance(Duration::from_millis(20));
        net.pump(false);
    }
    assert!(
        net.received_by_agents() >= before + 90,
        "{} of 100 clean packets arrived",
        net.received_by_agents() - before
    );
}
