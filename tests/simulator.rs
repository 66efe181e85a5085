//! The WhatsApp simulator behaves like Meta toward a business: signed connect webhooks with a
//! Meta-shaped offer, a caller that talks once accepted and whose hearing is measurable, and
//! Meta's no-media rule. Here the test itself plays the business with the engine and the Graph
//! client, so each of Meta's behaviours can be provoked on purpose.

mod common;

use std::time::Duration;

use common::*;
use switchboard::config::Secret;
use switchboard::ids::WaCallId;
use switchboard::sim::peer::Outgoing;
use switchboard::whatsapp::graph::GraphClient;
use switchboard::whatsapp::model::TerminateStatus;
use switchboard::whatsapp::simulator::{
    CallPhase, CallSpec, CallerAudio, FakeGraph, SimulatedCall, Simulator, SimulatorConfig,
};
use switchboard::whatsapp::webhook::{self, WaEvent, WebhookOptions, WebhookState};
use tokio::sync::mpsc;

const SECRET: &str = "sim-secret";
const TOKEN: &str = "sim-token";
const PHONE_ID: &str = "5550001";

struct Business {
    sim: Simulator,
    graph: GraphClient,
    webhooks: mpsc::Receiver<WaEvent>,
    _processor: webhook::WebhookProcessor,
}

async fn business(no_media_timeout: Duration) -> Business {
    let fake = FakeGraph::new(TOKEN, PHONE_ID);
    let events = fake.take_events().unwrap();
    let (graph_addr, server) = fake.clone().serve((LOOPBACK, 0).into()).await.unwrap();
    std::mem::forget(server);
    let (tx, webhooks) = mpsc::channel(64);
    let (state, processor) = WebhookState::spawn(
        Secret::new(SECRET),
        Secret::new("verify"),
        tx,
        WebhookOptions::default(),
    );
    let listener = tokio::net::TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    let hook_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, webhook::router(state)).await });
    let sim = Simulator::start(
        SimulatorConfig {
            webhook_url: format!("http://{hook_addr}{}", webhook::WEBHOOK_PATH),
            app_secret: Secret::new(SECRET),
            phone_number_id: PHONE_ID.into(),
            no_media_timeout,
            ..SimulatorConfig::default()
        },
        fake,
        events,
    );
    let graph = GraphClient::new(
        &format!("http://{graph_addr}"),
        "v23.0",
        PHONE_ID,
        Secret::new(TOKEN),
    )
    .unwrap();
    Business {
        sim,
        graph,
        webhooks,
        _processor: processor,
    }
}

async fn next_webhook(b: &mut Business) -> WaEvent {
    tokio::time::timeout(LONG, b.webhooks.recv())
        .await
        .expect("a webhook arrives")
        .expect("webhook channel open")
}

/// Places a call and answers it as a business would: a WhatsApp leg, pre_accept, accept.
async fn answered_call(
    b: &mut Business,
    e: &TestEngine,
    spec: CallSpec,
) -> (SimulatedCall, switchboard::media::Answer) {
    let call = b.sim.place_call(spec).await.unwrap();
    let WaEvent::CallOffered {
        call_id,
        offer_sdp,
        caller_name,
        from,
        ..
    } = next_webhook(b).await
    else {
        panic!("the first webhook is a connect with an offer");
    };
    assert_eq!(call_id, call.call_id);
    assert_eq!(caller_name.as_deref(), Some("Simulated Caller"));
    assert!(from.is_some());
    let answer = e.handle.answer_whatsapp(offer_sdp).await.unwrap();
    b.graph.pre_accept(&call_id, &answer.sdp).await.unwrap();
    call.wait_for(LONG, |p| *p == CallPhase::PreAccepted)
        .await
        .unwrap();
    call.peer()
        .unwrap()
        .wait_for(LONG, |s| s.connected)
        .await
        .expect("caller's media connects on pre_accept");
    b.graph.accept(&call_id, &answer.sdp, None).await.unwrap();
    call.wait_for(LONG, |p| *p == CallPhase::Accepted)
        .await
        .unwrap();
    (call, answer)
}

fn terminate_of(ev: WaEvent, id: &WaCallId) -> (Option<TerminateStatus>, Vec<i64>, Option<u64>) {
    match ev {
        WaEvent::CallTerminated {
            call_id,
            status,
            errors,
            duration,
            ..
        } => {
            assert_eq!(&call_id, id);
            (status, errors.iter().map(|e| e.code).collect(), duration)
        }
        other => panic!("expected a terminate webhook, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_media_after_accept_ends_the_call_with_138021() {
    let mut b = business(Duration::from_millis(1500)).await;
    let e = engine();
    // Accepted, but the business never starts sending: Meta's rule applies.
    let (call, _answer) = answered_call(&mut b, &e, CallSpec::default()).await;
    let phase = call
        .wait_for(LONG, |p| matches!(p, CallPhase::Ended { .. }))
        .await
        .unwrap();
    assert_eq!(
        phase,
        CallPhase::Ended {
            status: "FAILED".into(),
            error: Some(138021)
        }
    );
    let (status, errors, _) = terminate_of(next_webhook(&mut b).await, &call.call_id);
    assert_eq!(status, Some(TerminateStatus::Failed));
    assert_eq!(errors, vec![138021]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_talking_caller_is_heard_and_hears_the_agent() {
    let mut b = business(Duration::from_millis(1500)).await;
    let e = engine();
    let (call, wa) = answered_call(
        &mut b,
        &e,
        CallSpec {
            audio: CallerAudio::Tone { hz: 440.0 },
            hang_up_after: None,
            ..CallSpec::default()
        },
    )
    .await;
    // An agent's browser playing 1 kHz, relayed both ways.
    let (agent, a) = browser_leg(&e, 1).await;
    connected(&agent).await;
    agent.send(Outgoing::Tone { hz: 1000.0 }).await.unwrap();
    e.handle.route(a.streams[0], Some(wa.leg)).await.unwrap();
    e.handle.route(wa.streams[0], Some(a.leg)).await.unwrap();
    e.handle.start_sending(wa.leg).await.unwrap();

    let caller = call.peer().unwrap();
    caller
        .wait_for(LONG, |s| s.packets_received >= 100)
        .await
        .expect("the caller hears the business");
    agent
        .wait_for(LONG, |s| s.packets_received >= 100)
        .await
        .expect("the agent hears the caller");
    let heard = call.recording().await.unwrap();
    let (hz, _) = heard.heard.expect("the caller hears sound, not silence");
    assert!((hz - 1000.0).abs() <= 20.0, "caller heard {hz} Hz");
    assert_eq!(heard.undecodable, 0);
    let (hz, _) = agent.recording().await.unwrap().heard.expect("agent hears");
    assert!((hz - 440.0).abs() <= 20.0, "agent heard {hz} Hz");
    // Media flowed, so Meta's no-media rule (1.5 s here) did not end the call.
    assert_eq!(call.phase(), CallPhase::Accepted);

    call.hang_up().await;
    let (status, errors, duration) = terminate_of(next_webhook(&mut b).await, &call.call_id);
    assert_eq!(status, Some(TerminateStatus::Completed));
    assert!(errors.is_empty());
    assert!(
        duration.is_some(),
        "a call that was picked up has a duration"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_the_caller_plays_the_built_in_melody_packet_for_packet() {
    let mut b = business(Duration::from_secs(20)).await;
    let e = engine();
    let spec = CallSpec {
        hang_up_after: None,
        ..CallSpec::default()
    };
    let CallerAudio::Clip(melody) = spec.audio.clone() else {
        panic!("the default is the melody");
    };
    let (call, wa) = answered_call(&mut b, &e, spec).await;
    let (agent, a) = browser_leg(&e, 1).await;
    connected(&agent).await;
    // The agent's stream carries what the WhatsApp leg hears.
    e.handle.route(a.streams[0], Some(wa.leg)).await.unwrap();
    agent
        .wait_for(LONG, |s| s.packets_received >= 60)
        .await
        .expect("the agent hears the caller");
    let heard = agent.recording().await.unwrap().packets;
    let first = melody
        .iter()
        .position(|p| **p == *heard[0].payload)
        .expect("the agent hears the melody's packets");
    for (k, p) in heard.iter().enumerate() {
        assert_eq!(
            *p.payload,
            *melody[(first + k) % melody.len()],
            "packet {k} after the first is the melody's next"
        );
    }
    call.hang_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_business_terminate_is_answered_by_metas_terminate_webhook() {
    let mut b = business(Duration::from_secs(20)).await;
    let e = engine();
    let (call, _wa) = answered_call(&mut b, &e, CallSpec::default()).await;
    b.graph.terminate(&call.call_id).await.unwrap();
    let (status, _, _) = terminate_of(next_webhook(&mut b).await, &call.call_id);
    assert_eq!(status, Some(TerminateStatus::Completed));
    call.wait_for(LONG, |p| matches!(p, CallPhase::Ended { .. }))
        .await
        .expect("the simulated call ends");
}
