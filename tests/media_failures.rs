//! What happens when things go wrong: bad offers leave no leg behind, legs that never connect or
//! go silent are reported failed, closing is heard by the peer, and junk on the socket is counted
//! and dropped.

mod common;

use std::time::Duration;

use common::*;
use switchboard::media::{FailReason, MediaError, MediaEvent};
use switchboard::sim::peer::PendingPeer;

const META_OFFER: &str = include_str!("fixtures/meta_offer.sdp");

fn without(sdp: &str, prefix: &str) -> String {
    sdp.split("\r\n")
        .filter(|l| !l.starts_with(prefix))
        .collect::<Vec<_>>()
        .join("\r\n")
}

#[tokio::test]
async fn bad_offers_get_an_error_and_leave_no_leg() {
    let e = engine();
    let video = META_OFFER.replace("m=audio", "m=video");
    let two_m = format!("{META_OFFER}m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:second\r\na=rtpmap:111 opus/48000/2\r\n");
    let no_opus = META_OFFER
        .replace("UDP/TLS/RTP/SAVPF 111 126", "UDP/TLS/RTP/SAVPF 0 126")
        .replace("a=rtpmap:111 opus/48000/2", "a=rtpmap:0 PCMU/8000");
    let cases: Vec<(&str, String)> = vec![
        ("no fingerprint", without(META_OFFER, "a=fingerprint")),
        (
            "sha-1 only",
            META_OFFER.replace("a=fingerprint:sha-256", "a=fingerprint:sha-1"),
        ),
        ("no audio", video),
        ("two m-lines", two_m),
        ("no opus", no_opus),
        ("garbage", "this is not SDP at all".to_owned()),
        ("empty", String::new()),
        ("truncated", META_OFFER[..200].to_owned()),
        (
            "binary",
            String::from_utf8_lossy(&[0xff, 0x00, 0x13, 0x37]).into_owned(),
        ),
        ("no ice credentials", without(META_OFFER, "a=ice-")),
    ];
    for (what, offer) in cases {
        let r = e.handle.answer_whatsapp(offer).await;
        let err = r.expect_err(what);
        assert!(
            !matches!(err, MediaError::EngineGone),
            "{what}: engine died: {err}"
        );
        assert!(!err.to_string().is_empty());
        let c = e.handle.counters().await.unwrap();
        assert_eq!(c.legs, 0, "{what} left a leg behind");
    }
    // The engine still works afterwards.
    let (meta, _) = meta_leg(&e).await;
    connected(&meta).await;
    assert_eq!(e.handle.counters().await.unwrap().legs, 1);
}

#[tokio::test]
async fn the_real_meta_offer_is_accepted_as_is() {
    // Meta's own text (its candidates are unreachable from here, so it will time out later).
    let e = engine();
    let a = e.handle.answer_whatsapp(META_OFFER).await.unwrap();
    assert!(a.sdp.contains("a=setup:active"));
    assert_eq!(e.handle.counters().await.unwrap().legs, 1);
}

#[tokio::test]
async fn a_leg_that_never_connects_fails_and_is_removed() {
    let mut e = engine_with(Duration::from_millis(600), Duration::from_secs(10));
    // The peer offers but never applies the answer, so ICE never completes.
    let pending = PendingPeer::meta(LOOPBACK).await.unwrap();
    let a = e.handle.answer_whatsapp(pending.offer()).await.unwrap();
    let ev = e
        .expect_event(LONG, |ev| matches!(ev, MediaEvent::Failed { .. }))
        .await;
    assert_eq!(
        ev,
        MediaEvent::Failed {
            leg: a.leg,
            reason: FailReason::ConnectTimeout
        }
    );
    assert_eq!(e.handle.counters().await.unwrap().legs, 0);
    assert!(matches!(
        e.handle.start_sending(a.leg).await,
        Err(MediaError::UnknownLeg { .. })
    ));
}

#[tokio::test]
async fn a_leg_whose_peer_vanishes_fails_as_silent() {
    let mut e = engine_with(Duration::from_secs(10), Duration::from_millis(1500));
    let (meta, wa) = meta_leg(&e).await;
    connected(&meta).await;
    e.expect_event(LONG, |ev| matches!(ev, MediaEvent::Connected { .. }))
        .await;
    e.handle.start_sending(wa.leg).await.unwrap();
    // Gone without a goodbye: no BYE, no DTLS close, no more consent responses.
    drop(meta);
    let ev = e
        .expect_event(LONG, |ev| matches!(ev, MediaEvent::Failed { .. }))
        .await;
    assert_eq!(
        ev,
        MediaEvent::Failed {
            leg: wa.leg,
            reason: FailReason::Silent
        }
    );
    assert_eq!(e.handle.counters().await.unwrap().legs, 0);
}

#[tokio::test]
async fn closing_a_leg_is_heard_by_the_peer_and_unroutes_it() {
    let mut e = engine();
    let (meta, wa) = meta_leg(&e).await;
    let (agent, a) = browser_leg(&e, 1).await;
    connected(&meta).await;
    connected(&agent).await;
    e.handle.route(wa.streams[0], Some(a.leg)).await.unwrap();
    e.handle.start_sending(wa.leg).await.unwrap();
    e.handle.close(a.leg).await.unwrap();
    let ev = e
        .expect_event(LONG, |ev| matches!(ev, MediaEvent::Closed { .. }))
        .await;
    assert_eq!(
        ev,
        MediaEvent::Closed {
            leg: a.leg,
            by_remote: false
        }
    );
    agent
        .wait_for(LONG, |s| s.closed)
        .await
        .expect("the browser peer sees the close");
    // The caller keeps hearing packets (silence) after its source went away.
    let before = meta.status().packets_received;
    meta.wait_for(LONG, |s| s.packets_received >= before + 10)
        .await
        .expect("silence continues");
    assert!(matches!(
        e.handle.route(wa.streams[0], Some(a.leg)).await,
        Err(MediaError::UnknownLeg { .. })
    ));
    assert!(matches!(
        e.handle.route(wa.streams[0], Some(wa.leg)).await,
        Err(MediaError::RouteToSelf { .. })
    ));
}

#[tokio::test]
async fn junk_datagrams_are_counted_and_dropped() {
    let e = engine();
    let (meta, wa) = meta_leg(&e).await;
    connected(&meta).await;
    let sock = std::net::UdpSocket::bind((LOOPBACK, 0)).unwrap();
    let target = e.driver.local_addr();
    // Junk: too short, unknown protocol, fake RTP from a stranger, a STUN request for nobody.
    let mut stun = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
    stun.extend_from_slice(&[7; 12]);
    let junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x42],
        vec![0xff; 100],
        [vec![0x80, 111], vec![0; 30]].concat(),
        stun,
    ];
    for j in &junk {
        sock.send_to(j, target).unwrap();
    }
    // The counters have no event: polled until the junk is counted, for at most LONG.
    let c = eventually_showing("junk never counted", LONG, || async {
        let c = e.handle.counters().await.unwrap();
        if c.engine.datagrams_malformed + c.engine.datagrams_unmatched >= 4 {
            Ok(c)
        } else {
            Err(format!("{c:?}"))
        }
    })
    .await;
    assert_eq!(c.legs, 1);
    // The real leg is unaffected: after the junk it still carries media to its peer.
    e.handle.start_sending(wa.leg).await.unwrap();
    meta.wait_for(LONG, |s| s.connected && s.packets_received >= 10)
        .await
        .expect("the real leg still carries media after the junk");
}
