//! The internal leg between two nodes' engines, over real UDP on 127.0.0.1: engine A holds a
//! Meta-shaped caller's leg and offers a trunk; engine B answers it as a WhatsApp leg and joins
//! it to a browser-shaped agent. Payloads cross both engines untouched, both ends hear one
//! continuous stream (silence first, then the other side), the caller's DTMF reaches B, and
//! closing B's end ends A's.

mod common;

use common::*;
use switchboard::media::MediaEvent;
use switchboard::sim::peer::{Outgoing, Received};

const CALLER: u8 = 1;
const AGENT: u8 = 2;

fn assert_continuous(who: &str, packets: &[Received]) {
    assert!(packets.len() > 10, "{who} heard {} packets", packets.len());
    for w in packets.windows(2) {
        assert_eq!(w[1].ssrc, w[0].ssrc, "{who}: a second SSRC");
        assert_eq!(w[1].seq, w[0].seq + 1, "{who}: sequence gap");
        let ticks = w[1].ts.wrapping_sub(w[0].ts);
        assert!(
            ticks > 0 && ticks % 960 == 0,
            "{who}: timestamp step {ticks}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_crosses_two_engines_untouched_and_continuous() {
    let mut a = engine();
    let mut b = engine();
    // Node A: the caller's Meta leg, sending from the start (as after `accept`).
    let (caller, wa) = meta_leg(&a).await;
    connected(&caller).await;
    a.handle.start_sending(wa.leg).await.unwrap();

    // A offers the trunk; B answers it as a WhatsApp leg; A takes the answer.
    let offer = a.handle.offer_trunk().await.unwrap();
    assert!(offer.sdp.contains("a=ice-lite") && offer.sdp.contains("a=setup:actpass"));
    let b_end = b.handle.answer_whatsapp(offer.sdp.clone()).await.unwrap();
    a.handle
        .trunk_answered(offer.leg, b_end.sdp.clone())
        .await
        .unwrap();
    a.handle
        .route(wa.streams[0], Some(offer.leg))
        .await
        .unwrap();
    a.handle
        .route(offer.streams[0], Some(wa.leg))
        .await
        .unwrap();
    let trunk_a = offer.leg;
    a.expect_event(
        LONG,
        |e| matches!(e, MediaEvent::Connected { leg } if *leg == trunk_a),
    )
    .await;
    let trunk_b = b_end.leg;
    b.expect_event(
        LONG,
        |e| matches!(e, MediaEvent::Connected { leg } if *leg == trunk_b),
    )
    .await;
    // Node B: the trunk is the call's WhatsApp leg; it sends from now on (silence first).
    b.handle.start_sending(trunk_b).await.unwrap();

    // The agent on node B.
    let (agent, leg) = browser_leg(&b, 1).await;
    connected(&agent).await;
    b.handle
        .route(b_end.streams[0], Some(leg.leg))
        .await
        .unwrap();
    b.handle.route(leg.streams[0], Some(trunk_b)).await.unwrap();
    caller.send(Outgoing::Tagged { tag: CALLER }).await.unwrap();
    agent.send(Outgoing::Tagged { tag: AGENT }).await.unwrap();

    let at_caller = wait_recording(&caller, "the caller hears the agent", |r| {
        r.packets
            .iter()
            .filter(|p| origin(&p.payload) == Some(AGENT))
            .count()
            > 50
    })
    .await;
    let at_agent = wait_recording(&agent, "the agent hears the caller", |r| {
        r.packets
            .iter()
            .filter(|p| origin(&p.payload) == Some(CALLER))
            .count()
            > 50
    })
    .await;
    // Every payload is one that was sent (or our silence), byte for byte.
    for p in &at_caller.packets {
        assert!(
            matches!(origin(&p.payload), Some(0 | AGENT)),
            "the caller got a payload nobody sent"
        );
    }
    for p in &at_agent.packets {
        assert_eq!(
            origin(&p.payload),
            Some(CALLER),
            "the agent got a stranger's payload"
        );
    }
    assert_continuous("caller", &at_caller.packets);
    assert_continuous("agent", &at_agent.packets);
    // The caller heard silence before the agent came, then the agent: one stream throughout.
    assert_eq!(origin(&at_caller.packets[0].payload), Some(0));

    // A digit the caller presses crosses too: node B, which handles the call, hears it.
    caller
        .dtmf('5', std::time::Duration::from_millis(120))
        .await
        .unwrap();
    b.expect_event(
        LONG,
        |e| matches!(e, MediaEvent::Dtmf { leg, digit, .. } if *leg == trunk_b && *digit == '5'),
    )
    .await;

    // Node B ends its end (the call ended there): node A's end notices and closes.
    b.handle.close(trunk_b).await.unwrap();
    a.expect_event(LONG, |e| {
        matches!(e, MediaEvent::Closed { leg, .. } | MediaEvent::Failed { leg, .. } if *leg == trunk_a)
    })
    .await;
}
