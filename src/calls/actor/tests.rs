//! The calls actor on simulated time (`start_paused`), against fake ports for media, Graph and
//! records (`calls::fakes`): what it carries out, in which order, and at which instant — no
//! socket, no thread, no wall clock. Every instant asserted is exact, because nothing but the
//! fakes and the actor's own timers moves the clock.

use super::*;
use crate::calls::event::{RingStop, Stage};
use crate::calls::fakes::*;
use crate::ids::StreamId;
use crate::store::Outcome;

/// The call's WhatsApp leg `wa` connects and alice (her session `rx`) answers: talking.
async fn answer(r: &Rig, rx: &mut mpsc::Receiver<Notice>, call: &WaCallId, wa: LegId) {
    r.media_events
        .send(MediaEvent::Connected { leg: wa })
        .await
        .unwrap();
    r.calls
        .command("alice".into(), Command::Answer { call: call.clone() })
        .await
        .unwrap();
    notice(rx, |n| matches!(n, Notice::Talking { .. }).then_some(())).await;
}

fn ringing(call: &str) -> impl Fn(&Notice) -> Option<()> + '_ {
    move |n| matches!(n, Notice::Ringing { call: c, .. } if c.0 == call).then_some(())
}

#[tokio::test(start_paused = true)]
async fn a_call_rings_is_answered_and_ends_with_each_step_in_order() {
    let r = rig();
    let mut alice = r.agent("alice").await;
    r.webhooks.send(offered("wacid.1")).await.unwrap();
    notice(&mut alice, ringing("wacid.1")).await;
    // Nothing here takes time: the call rings at the instant its webhook came.
    assert_eq!(r.elapsed(), Duration::ZERO);
    let call = WaCallId::from("wacid.1");
    let wa = r.wa_leg(0);
    let pre_accept = r
        .log
        .position(&Did::Graph(call.clone(), GraphAction::PreAccept))
        .expect("pre_accept sent");
    assert!(r.log.position(&Did::AnswerWhatsApp(wa)).unwrap() < pre_accept);

    answer(&r, &mut alice, &call, wa).await;
    let accept = r
        .log
        .position(&Did::Graph(call.clone(), GraphAction::Accept))
        .expect("accept sent");
    // Media to the caller starts only once Meta took `accept` (reference §9).
    let sending = r
        .log
        .position(&Did::Post(LegOp::StartSending(wa)))
        .expect("sending started");
    assert!(pre_accept < accept && accept < sending, "{:?}", r.log.all());

    r.webhooks.send(terminated("wacid.1")).await.unwrap();
    notice(&mut alice, |n| {
        matches!(n, Notice::CallEnded { .. }).then_some(())
    })
    .await;
    settle().await;
    let live = r
        .log
        .position(&Did::MarkLive(call.clone()))
        .expect("marked live");
    let finished = r
        .log
        .position(&Did::Finish(call.clone(), Outcome::Answered))
        .expect("recorded as answered");
    assert!(live < finished);
    // The caller's side ended it: nothing more goes to Meta, and its leg is closed.
    let graph: Vec<GraphAction> = r
        .log
        .all()
        .into_iter()
        .filter_map(|(_, d)| match d {
            Did::Graph(c, a) if c == call => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(graph, vec![GraphAction::PreAccept, GraphAction::Accept]);
    assert!(r.log.position(&Did::Post(LegOp::Close(wa))).is_some());
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_ring_stops_at_the_ring_timeout_and_the_call_waits_in_its_queue() {
    let r = rig();
    let mut alice = r.agent("alice").await;
    r.webhooks.send(offered("wacid.2")).await.unwrap();
    notice(&mut alice, ringing("wacid.2")).await;
    let rang_at = r.elapsed();
    r.media_events
        .send(MediaEvent::Connected { leg: r.wa_leg(0) })
        .await
        .unwrap();
    let reason = notice(&mut alice, |n| match n {
        Notice::RingStopped { reason, .. } => Some(*reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, RingStop::Missed);
    // Exactly the ring timeout later, on the actor's own timer.
    assert_eq!(r.elapsed() - rang_at, RING);
    // Nobody else is free: the call is accepted into its queue at once (hold audio), well
    // within Meta's window.
    let call = WaCallId::from("wacid.2");
    settle().await;
    assert_eq!(
        r.log.when(&Did::Graph(call.clone(), GraphAction::Accept)),
        Some(RING)
    );
    assert!(RING < ANSWER_DEADLINE);
    let wa = r.wa_leg(0);
    let hold = StreamId { leg: wa, index: 0 };
    assert!(r
        .log
        .position(&Did::Post(LegOp::Hold(hold, true)))
        .is_some());
    let view = r.calls.floor().borrow().clone();
    assert_eq!(view.calls[0].state, Stage::Queued);
}

#[tokio::test(start_paused = true)]
async fn a_slow_answer_from_the_engine_holds_up_no_other_call() {
    let r = rig();
    // The engine takes 5 s to answer the first call's offer, nothing for the second.
    r.media
        .whatsapp_delays
        .lock()
        .unwrap()
        .extend([Duration::from_secs(5)]);
    let mut alice = r.agent("alice").await;
    let mut bob = r.agent("bob").await;
    r.webhooks.send(offered("wacid.slow")).await.unwrap();
    r.webhooks.send(offered("wacid.fast")).await.unwrap();
    // The second rings at once, while the first is still being answered.
    let first = tokio::select! {
        () = notice(&mut alice, ringing("wacid.fast")) => "alice",
        () = notice(&mut bob, ringing("wacid.fast")) => "bob",
    };
    assert_eq!(r.elapsed(), Duration::ZERO);
    let other = if first == "alice" {
        &mut bob
    } else {
        &mut alice
    };
    notice(other, ringing("wacid.slow")).await;
    assert_eq!(r.elapsed(), Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn a_slow_graph_action_holds_up_neither_other_calls_nor_the_floor() {
    let r = rig();
    r.graph
        .delays
        .lock()
        .unwrap()
        .insert(GraphAction::PreAccept, Duration::from_secs(3));
    let mut alice = r.agent("alice").await;
    r.webhooks.send(offered("wacid.a")).await.unwrap();
    r.webhooks.send(offered("wacid.b")).await.unwrap();
    settle().await;
    // Both pre_accepts are on their way at once, neither waiting for the other.
    for call in ["wacid.a", "wacid.b"] {
        let sent = Did::GraphSent(call.into(), GraphAction::PreAccept);
        assert_eq!(r.log.when(&sent), Some(Duration::ZERO));
    }
    // Both answers came back together, 3 s later; one of them rings.
    let rung = notice(&mut alice, |n| match n {
        Notice::Ringing { call, .. } => Some(call.clone()),
        _ => None,
    })
    .await;
    assert_eq!(r.elapsed(), Duration::from_secs(3));
    let both = [WaCallId::from("wacid.a"), WaCallId::from("wacid.b")];
    assert!(both.contains(&rung));
    for call in &both {
        assert_eq!(
            r.log
                .when(&Did::Graph(call.clone(), GraphAction::PreAccept)),
            Some(Duration::from_secs(3))
        );
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_ends_each_call_at_meta_and_records_it_after_its_live_mark() {
    let r = rig();
    let mut alice = r.agent("alice").await;
    r.webhooks.send(offered("wacid.3")).await.unwrap();
    notice(&mut alice, ringing("wacid.3")).await;
    let call = WaCallId::from("wacid.3");
    answer(&r, &mut alice, &call, r.wa_leg(0)).await;
    r.calls.shutdown().await;
    let terminate = r
        .log
        .position(&Did::Graph(call.clone(), GraphAction::Terminate))
        .expect("terminated at Meta");
    let live = r.log.position(&Did::MarkLive(call.clone())).unwrap();
    let finished = r
        .log
        .all()
        .iter()
        .position(|(_, d)| matches!(d, Did::Finish(c, _) if *c == call))
        .expect("recorded");
    assert!(live < finished && terminate > live, "{:?}", r.log.all());
}

#[test]
fn the_machine_is_distrusted_after_three_panics_within_a_minute_not_three_in_a_day() {
    let t0 = Instant::now();
    let mut panics = Panics::default();
    assert!(!panics.record(t0));
    assert!(!panics.record(t0 + Duration::from_secs(30)));
    // Three, but spread over more than a minute: a rare bug, not a broken machine.
    assert!(!panics.record(t0 + Duration::from_secs(90)));
    assert!(!panics.record(t0 + Duration::from_secs(3600)));
    assert!(!panics.record(t0 + Duration::from_secs(3610)));
    // The third within a minute of the first of them.
    assert!(panics.record(t0 + Duration::from_secs(3620)));
}
