//! The WhatsApp leg of a business-initiated call (issue 25, first step), over real UDP on
//! 127.0.0.1: the engine *offers* it, Meta-shaped (one sendrecv audio section, Opus/48000/2 with
//! Meta's fmtp, telephone-event/8000 on 126, `a=setup:actpass`, host candidates, full ICE); a
//! Meta-shaped callee answers as Meta does in its `connect` webhook (ICE-lite,
//! `a=setup:active`), so the engine checks and is the DTLS server. Nothing reaches the callee
//! before the answer is applied, nor any audio before the engine is told to send; then audio
//! flows both ways with an agent's browser leg, one continuous stream, and the callee's DTMF
//! is heard once.

mod common;

use common::*;
use switchboard::media::{MediaError, MediaEvent};
use switchboard::sim::peer::{Outgoing, PendingPeer};

const CALLEE: u8 = 1;
const AGENT: u8 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offered_whatsapp_leg_takes_metas_answer_and_carries_the_call_both_ways() {
    let mut e = engine();
    let offer = e.handle.offer_whatsapp().await.unwrap();
    let sdp = &offer.sdp;
    for line in [
        "a=setup:actpass",
        "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 maxaveragebitrate=20000;maxplaybackrate=16000;minptime=20;sprop-maxcapturerate=16000;useinbandfec=1",
        "a=rtpmap:126 telephone-event/8000",
        "a=sendrecv",
        "typ host",
    ] {
        assert!(sdp.contains(line), "the offer has {line}: {sdp}");
    }
    assert!(
        !sdp.contains("a=ice-lite"),
        "we check: full ICE toward Meta"
    );
    assert_eq!(sdp.matches("m=audio").count(), 1);

    // Meta's callee answers (its `connect` webhook).
    let (callee, answer) = PendingPeer::meta_callee(LOOPBACK, sdp).await.unwrap();
    assert!(answer.contains("a=ice-lite") && answer.contains("a=setup:active"));
    e.handle
        .whatsapp_answered(offer.leg, answer.clone())
        .await
        .unwrap();
    let leg = offer.leg;
    e.expect_event(
        LONG,
        |ev| matches!(ev, MediaEvent::Connected { leg: l } if *l == leg),
    )
    .await;
    connected(&callee).await;
    // Connected, and not told to send yet: no audio at the callee (Meta counts media as the
    // call's own only once the callee answered).
    assert_eq!(callee.status().packets_received, 0);
    // A second answer to the same offer is refused and changes nothing.
    assert!(matches!(
        e.handle.whatsapp_answered(offer.leg, answer).await,
        Err(MediaError::WrongLegKind { .. })
    ));

    // The agent's browser leg, both ways; the call's leg sends from now on (silence first).
    let (agent, agent_leg) = browser_leg(&e, 1).await;
    connected(&agent).await;
    e.handle.start_sending(offer.leg).await.unwrap();
    e.handle
        .route(offer.streams[0], Some(agent_leg.leg))
        .await
        .unwrap();
    e.handle
        .route(agent_leg.streams[0], Some(offer.leg))
        .await
        .unwrap();
    callee.send(Outgoing::Tagged { tag: CALLEE }).await.unwrap();
    agent.send(Outgoing::Tagged { tag: AGENT }).await.unwrap();
    let at_callee = wait_recording(&callee, "the callee hears the agent", |r| {
        r.packets
            .iter()
            .filter(|p| origin(&p.payload) == Some(AGENT))
            .count()
            > 50
    })
    .await;
    let at_agent = wait_recording(&agent, "the agent hears the callee", |r| {
        r.packets
            .iter()
            .filter(|p| origin(&p.payload) == Some(CALLEE))
            .count()
            > 50
    })
    .await;
    assert!(at_callee
        .packets
        .iter()
        .all(|p| matches!(origin(&p.payload), Some(0 | AGENT))));
    assert!(at_agent
        .packets
        .iter()
        .all(|p| origin(&p.payload) == Some(CALLEE)));
    for (who, packets) in [("callee", &at_callee.packets), ("agent", &at_agent.packets)] {
        for w in packets.windows(2) {
            assert_eq!(w[1].ssrc, w[0].ssrc, "{who}: one SSRC");
            assert_eq!(w[1].seq, w[0].seq + 1, "{who}: no sequence gap");
        }
    }
    // A key the callee presses is heard once.
    callee
        .dtmf('7', std::time::Duration::from_millis(120))
        .await
        .unwrap();
    e.expect_event(
        LONG,
        |ev| matches!(ev, MediaEvent::Dtmf { leg: l, digit: '7', .. } if *l == leg),
    )
    .await;
    e.handle.close(offer.leg).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offered_leg_waits_for_its_answer_past_the_connect_timeout_and_refuses_a_bad_one() {
    // A connect timeout far shorter than a phone rings: the offered leg outlives it.
    let mut e = engine_with(
        std::time::Duration::from_millis(300),
        std::time::Duration::from_secs(10),
    );
    let offer = e.handle.offer_whatsapp().await.unwrap();
    // A browser leg that never connects fails at the connect timeout: the marker that it ran.
    let pending = PendingPeer::browser(LOOPBACK, 1).await.unwrap();
    let never = e.handle.answer_browser(pending.offer()).await.unwrap();
    e.expect_event(
        LONG,
        |ev| matches!(ev, MediaEvent::Failed { leg, .. } if *leg == never.leg),
    )
    .await;
    // An answer that is not one is refused; the leg still waits.
    for bad in [
        "",
        "v=0\r\n",
        "v=0\r\na=ice-ufrag:x\r\na=ice-pwd:yyyyyyyyyyyyyyyyyyyyyy\r\na=setup:active\r\n",
    ] {
        let r = e.handle.whatsapp_answered(offer.leg, bad).await;
        assert!(
            matches!(r, Err(MediaError::InvalidOffer { .. })),
            "{bad:?}: {r:?}"
        );
    }
    // The real answer, late: it connects.
    let (callee, answer) = PendingPeer::meta_callee(LOOPBACK, &offer.sdp)
        .await
        .unwrap();
    e.handle.whatsapp_answered(offer.leg, answer).await.unwrap();
    let leg = offer.leg;
    e.expect_event(
        LONG,
        |ev| matches!(ev, MediaEvent::Connected { leg: l } if *l == leg),
    )
    .await;
    connected(&callee).await;
}
