//! A business-initiated call's Meta side in the simulator (issue 25), with switchboard's media
//! engine and Graph client and no call machine yet: the engine offers the WhatsApp leg, Graph
//! `connect` (the fake's) takes the offer and names the call, the simulated user's phone rings
//! (`RINGING` status webhook), the user answers — Meta's `connect` webhook carrying its answer,
//! ICE-lite and `a=setup:active` — the engine applies it and the call carries audio both ways;
//! `ACCEPTED` comes once media is up; the business's `terminate` ends it with Meta's
//! `terminate` webhook. A user who declines sends `REJECTED` and `terminate`, and no answer.
//! Every webhook is read with switchboard's own parser, as the edge reads Meta's.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use switchboard::config::Secret;
use switchboard::media::MediaEvent;
use switchboard::sim::peer::Outgoing;
use switchboard::whatsapp::graph::GraphClient;
use switchboard::whatsapp::model::CallStatusKind;
use switchboard::whatsapp::simulator::{
    CallPhase, CalleeSpec, FakeGraph, Pickup, Simulator, SimulatorConfig,
};
use switchboard::whatsapp::webhook::{parse_webhook, WaEvent};

const TOKEN: &str = "bi-token";
const PHONE: &str = "100000000000077";
const CALLEE: u8 = 1;
const AGENT: u8 = 2;

/// A webhook receiver standing for switchboard's edge: every event, parsed, in order.
#[derive(Clone, Default)]
struct Edge {
    got: Arc<Mutex<Vec<WaEvent>>>,
    progress: Arc<tokio::sync::Notify>,
}

impl Edge {
    async fn serve(self) -> String {
        let app = axum::Router::new()
            .route(
                "/webhooks/whatsapp",
                axum::routing::post(
                    |axum::extract::State(e): axum::extract::State<Edge>,
                     body: axum::body::Bytes| async move {
                        let events = parse_webhook(&body).expect("Meta's webhooks parse");
                        e.got.lock().unwrap().extend(events);
                        e.progress.notify_waiters();
                        axum::http::StatusCode::OK
                    },
                ),
            )
            .with_state(self);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/webhooks/whatsapp")
    }

    /// Waits until an event satisfies `f`; that event.
    async fn event(&self, what: &str, f: impl Fn(&WaEvent) -> bool) -> WaEvent {
        let deadline = tokio::time::Instant::now() + LONG;
        loop {
            let wait = self.progress.notified();
            if let Some(e) = self.got.lock().unwrap().iter().find(|e| f(e)) {
                return e.clone();
            }
            assert!(
                tokio::time::timeout_at(deadline, wait).await.is_ok(),
                "no {what}: {:#?}",
                self.got.lock().unwrap()
            );
        }
    }

    fn statuses(&self, call: &str) -> Vec<CallStatusKind> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                WaEvent::CallStatusChanged {
                    call_id, status, ..
                } if call_id.0 == call => Some(status.clone()),
                _ => None,
            })
            .collect()
    }
}

async fn meta() -> (Simulator, GraphClient, Edge) {
    let fake = FakeGraph::new(TOKEN, PHONE);
    let events = fake.take_events().unwrap();
    let (graph_addr, server) = fake
        .clone()
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    std::mem::forget(server);
    let edge = Edge::default();
    let url = edge.clone().serve().await;
    let sim = Simulator::start(
        SimulatorConfig {
            webhook_url: url,
            phone_number_id: PHONE.into(),
            ..SimulatorConfig::default()
        },
        fake,
        events,
    );
    let graph = GraphClient::new(
        &format!("http://{graph_addr}"),
        "v23.0",
        PHONE,
        Secret::new(TOKEN),
    )
    .unwrap();
    (sim, graph, edge)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_business_calls_the_user_answers_by_webhook_and_the_call_carries_audio_both_ways() {
    let (sim, graph, edge) = meta().await;
    let mut e = engine();
    let offer = e.handle.offer_whatsapp().await.unwrap();
    let call_id = graph
        .connect("15551234567", &offer.sdp, None)
        .await
        .unwrap();
    // Meta's side takes the call up: the phone rings, then the user answers.
    let out = sim
        .next_outbound(LONG)
        .await
        .expect("the call reaches Meta");
    assert_eq!(out.call_id, call_id);
    assert_eq!(out.to, "15551234567");
    assert_eq!(out.offer, offer.sdp, "Graph carried our offer as it was");
    let callee = sim
        .answer_outbound(
            out,
            CalleeSpec {
                ring_for: Duration::from_millis(200),
                pickup: Pickup::Answer,
                ..CalleeSpec::default()
            },
        )
        .await
        .unwrap();
    edge.event("RINGING", |e| {
        matches!(
            e,
            WaEvent::CallStatusChanged {
                status: CallStatusKind::Ringing,
                ..
            }
        )
    })
    .await;
    let WaEvent::CallAnswered { answer_sdp, .. } = edge
        .event(
            "the answer",
            |e| matches!(e, WaEvent::CallAnswered { call_id: c, .. } if *c == call_id),
        )
        .await
    else {
        unreachable!()
    };
    assert!(answer_sdp.contains("a=ice-lite") && answer_sdp.contains("a=setup:active"));
    // The business applies it (matched on the call id Graph gave) and joins its agent.
    e.handle
        .whatsapp_answered(offer.leg, answer_sdp)
        .await
        .unwrap();
    let leg = offer.leg;
    e.expect_event(
        LONG,
        |ev| matches!(ev, MediaEvent::Connected { leg: l } if *l == leg),
    )
    .await;
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
    agent.send(Outgoing::Tagged { tag: AGENT }).await.unwrap();
    // ACCEPTED once the call is up (Meta's order: often after media).
    edge.event("ACCEPTED", |e| {
        matches!(
            e,
            WaEvent::CallStatusChanged {
                status: CallStatusKind::Accepted,
                ..
            }
        )
    })
    .await;
    assert_eq!(
        edge.statuses(&call_id.0),
        [CallStatusKind::Ringing, CallStatusKind::Accepted]
    );
    let peer = callee.peer().expect("the callee's media");
    peer.send(Outgoing::Tagged { tag: CALLEE }).await.unwrap();
    let heard = |tag: u8| {
        move |r: &switchboard::sim::peer::Recording| {
            r.packets
                .iter()
                .filter(|p| origin(&p.payload) == Some(tag))
                .count()
                > 50
        }
    };
    let mut at_callee = None;
    for _ in 0..100 {
        let r = peer.recording().await.unwrap();
        if heard(AGENT)(&r) {
            at_callee = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(at_callee.is_some(), "the callee hears the agent");
    wait_recording(&agent, "the agent hears the callee", heard(CALLEE)).await;

    // The business hangs up: Meta ends the call and says so.
    graph.terminate(&call_id).await.unwrap();
    callee
        .wait_for(LONG, |p| matches!(p, CallPhase::Ended { .. }))
        .await
        .expect("the callee's call ends");
    edge.event("terminate", |e| {
        matches!(e, WaEvent::CallTerminated { call_id: c, start_time: Some(_), .. } if *c == call_id)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_who_declines_sends_rejected_and_terminate_and_no_answer() {
    let (sim, graph, edge) = meta().await;
    let e = engine();
    let offer = e.handle.offer_whatsapp().await.unwrap();
    let call_id = graph
        .connect("15557654321", &offer.sdp, None)
        .await
        .unwrap();
    let out = sim.next_outbound(LONG).await.unwrap();
    let callee = sim
        .answer_outbound(
            out,
            CalleeSpec {
                ring_for: Duration::from_millis(100),
                pickup: Pickup::Reject,
                ..CalleeSpec::default()
            },
        )
        .await
        .unwrap();
    edge.event("terminate", |e| {
        matches!(e, WaEvent::CallTerminated { call_id: c, start_time: None, .. } if *c == call_id)
    })
    .await;
    assert_eq!(
        edge.statuses(&call_id.0),
        [CallStatusKind::Ringing, CallStatusKind::Rejected]
    );
    assert!(!edge
        .got
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, WaEvent::CallAnswered { .. })));
    assert!(callee.peer().is_none());
}
