//! The engine under hostile input, on the in-memory network with simulated time: what a peer
//! (or a spoofer) can make it hold is bounded, and only authenticated datagrams keep a leg alive.

use std::net::SocketAddr;
use std::time::Duration;

use str0m::ice::{StunMessage, TransId};
use switchboard::media::{FailReason, Limits, MediaError, MediaEvent};
use switchboard::sim::memory::MemoryNet;

const META_OFFER: &str = include_str!("fixtures/meta_offer.sdp");

/// A well-formed STUN binding success response keyed with the wrong password: what a spoofer
/// who does not know the ICE password can send.
fn spoofed_stun_response(to: SocketAddr) -> Vec<u8> {
    fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> [u8; 20] {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key).unwrap();
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }
    let mut buf = vec![0u8; 256];
    let n = StunMessage::binding_reply(TransId::new(), to)
        .to_bytes(Some(b"not-the-password"), &mut buf, hmac_sha1)
        .unwrap();
    buf.truncate(n);
    buf
}

#[test]
fn junk_from_a_dead_callers_address_does_not_keep_its_leg_alive() {
    let mut net = MemoryNet::new(1);
    let (wa_leg, browser_leg) = net.call_legs(0);
    let (caller, _) = net.addrs(0);
    let engine_addr = net.engine_addr_of_caller(0);
    net.cut_caller(0);
    let mut failed_at = None;
    // Every 100 ms for 60 s: SRTP-looking junk and a spoofed STUN response from the caller's
    // very address, which is the leg's nominated address.
    for tick in 0..600u32 {
        net.advance(Duration::from_millis(100));
        let mut junk = vec![0x80, 111];
        junk.extend_from_slice(&tick.to_be_bytes());
        junk.extend_from_slice(&[0x5A; 56]);
        net.in_flight().push_back((caller, engine_addr, junk));
        if tick % 10 == 0 {
            net.in_flight()
                .push_back((caller, engine_addr, spoofed_stun_response(engine_addr)));
        }
        net.pump(tick % 10 == 0);
        while let Some(ev) = net.engine.poll_event() {
            if let MediaEvent::Failed { leg, reason } = ev {
                assert_eq!(leg, wa_leg, "only the cut caller's leg fails");
                assert_eq!(reason, FailReason::Silent);
                failed_at = Some(tick);
            }
        }
        if failed_at.is_some() {
            break;
        }
    }
    let tick = failed_at.expect("the dead caller's leg failed despite the junk");
    // The idle timeout is 30 s; the leg went at its expiry, not later.
    assert!(
        (290..=320).contains(&tick),
        "failed after {tick} ticks of 100 ms"
    );
    assert!(
        net.engine.counters().stun_unauthenticated > 0,
        "{:?}",
        net.engine.counters()
    );
    assert_eq!(net.engine.leg_count(), 1, "the agent's leg lives on");
    let _ = browser_leg;
}

#[test]
fn a_dtmf_flood_leaves_the_event_queue_bounded() {
    let limits = Limits {
        max_pending_events: 100,
        ..Limits::default()
    };
    let mut net = MemoryNet::with_limits(1, 1, limits);
    // Nobody reads events while 3000 distinct key presses arrive.
    for k in 0..3000u32 {
        net.caller_sends_dtmf(0, (k % 10) as u8, k.wrapping_mul(1600));
        net.advance(Duration::from_millis(1));
        if k % 20 == 0 {
            net.pump(false);
        }
    }
    net.pump(false);
    let c = net.engine.counters().clone();
    assert!(
        net.engine.pending_events() <= 100 + 2,
        "{} events held (100 DTMF at most, plus the two legs' Connected)",
        net.engine.pending_events()
    );
    assert!(c.events_dropped >= 2800, "dropped and counted: {c:?}");
    // The first ones were kept, in order.
    let mut digits = vec![];
    let mut others = vec![];
    while let Some(ev) = net.engine.poll_event() {
        match ev {
            MediaEvent::Dtmf { digit, .. } => digits.push(digit),
            other => others.push(other),
        }
    }
    // The two legs' Connected, and the first packet to Meta once the call was accepted.
    assert!(others.len() <= 3, "{others:?}");
    assert_eq!(digits.len() + others.len(), 100, "the queue was full");
    assert_eq!(&digits[..3], &['0', '1', '2']);
}

#[test]
fn the_dtmf_send_queue_and_the_leg_count_are_bounded() {
    let limits = Limits {
        max_legs: 2,
        max_dtmf_queue: 8,
        ..Limits::default()
    };
    let mut net = MemoryNet::with_limits(1, 1, limits);
    let (wa_leg, _) = net.call_legs(0);
    let now = std::time::Instant::now();
    let err = net.engine.answer_whatsapp(now, META_OFFER).unwrap_err();
    assert!(matches!(err, MediaError::TooManyLegs { limit: 2 }), "{err}");
    assert_eq!(net.engine.leg_count(), 2);
    let d = Duration::from_millis(100);
    net.engine.send_dtmf(wa_leg, "12345", d).unwrap();
    let err = net.engine.send_dtmf(wa_leg, "6789", d).unwrap_err();
    assert!(
        matches!(err, MediaError::DtmfQueueFull { limit: 8, .. }),
        "{err}"
    );
    net.engine.send_dtmf(wa_leg, "678", d).unwrap();
    let c = net.engine.counters();
    assert_eq!((c.refused_too_many_legs, c.refused_dtmf_queue_full), (1, 1));
}
