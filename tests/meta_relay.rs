//! A running switchboard against callers that all come from one Meta relay address, as in
//! production (reference §9): one UDP socket carries every simulated caller's media, told apart
//! only by switchboard's address. Each call must get a business address of its own; with a
//! single port configured, the second call from that relay is rejected cleanly.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;

use common::{LONG, LOOPBACK};
use switchboard::app::{self, Running};
use switchboard::config::Settings;
use switchboard::sim::relay::MetaRelay;
use switchboard::whatsapp::simulator::{
    CallPhase, FakeGraph, RecordedRequest, SimulatedCall, Simulator,
};

struct World {
    running: Running,
    fake: FakeGraph,
    sim: Simulator,
    relay: MetaRelay,
    _agent: switchboard::sim::agent::SimAgent,
}

/// switchboard with `ports` media ports, Meta's Graph API faked on loopback, and a simulator
/// whose callers all share one relay socket.
async fn world(ports: &str) -> World {
    let (fake, events, config) = common::live_config(Settings {
        media_addr: Some("127.0.0.1".into()),
        media_ports: Some(ports.into()),
        ..Settings::default()
    })
    .await;
    let mut config = config;
    config.auth.people = common::agents(1);
    let running = app::start(config).await.unwrap();
    // One agent with its audio up: the first call rings there, the others wait in the queue
    // (accepted, hearing hold audio); a queue nobody staffs would decline every call.
    let agent = common::sign_in(&running, "agent1").await;
    let relay = MetaRelay::bind((LOOPBACK, 0).into()).await.unwrap();
    let sim = common::simulator(&running, &fake, events, Some(relay.clone()));
    World {
        running,
        fake,
        sim,
        relay,
        _agent: agent,
    }
}

async fn place(w: &World) -> SimulatedCall {
    common::held_call(&w.sim).await
}

fn requests_for<'a>(reqs: &'a [RecordedRequest], call: &SimulatedCall) -> Vec<&'a RecordedRequest> {
    reqs.iter()
        .filter(|r| r.call_id.as_ref() == Some(&call.call_id))
        .collect()
}

/// The business addresses in the answer switchboard pre-accepted `call` with.
fn answer_addrs(reqs: &[RecordedRequest], call: &SimulatedCall) -> Vec<SocketAddr> {
    let r = requests_for(reqs, call)
        .into_iter()
        .find(|r| {
            r.action
                .as_ref()
                .is_some_and(|a| a.as_str() == "pre_accept")
        })
        .expect("a pre_accept");
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    switchboard::sdp::candidate_addrs(body["session"]["sdp"].as_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_callers_from_one_relay_address_each_connect_on_their_own_port() {
    let w = world("ephemeral:20").await;
    let mut calls = vec![];
    for _ in 0..20 {
        calls.push(place(&w).await);
    }
    for call in &calls {
        // Pre-accepted, and then accepted into the queue for all but the first.
        call.wait_for(LONG, |p| {
            matches!(p, CallPhase::PreAccepted | CallPhase::Accepted)
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "{} not pre-accepted: phase {:?}, Graph {:?}",
                call.call_id,
                call.phase(),
                requests_for(&w.fake.requests(), call)
                    .iter()
                    .map(|r| (r.action.clone(), r.status, r.error_code))
                    .collect::<Vec<_>>()
            )
        });
        let peer = call.peer().expect("the caller has the answer");
        peer.wait_for(LONG, |s| s.connected)
            .await
            .expect("ICE and DTLS complete through the shared relay socket");
    }
    let reqs = w.fake.requests();
    let addrs: HashSet<SocketAddr> = calls.iter().flat_map(|c| answer_addrs(&reqs, c)).collect();
    assert_eq!(addrs.len(), 20, "no business address is used by two calls");
    let ports: HashSet<u16> = w.running.media_ports.iter().copied().collect();
    assert!(addrs.iter().all(|a| ports.contains(&a.port())));
    let r = w.relay.counters();
    assert_eq!(r.collisions, 0, "{r:?}");
    assert_eq!(
        w.running.media.counters().await.unwrap().legs,
        20 + 1,
        "20 calls and the agent's browser"
    );
    w.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_port_the_second_call_from_a_relay_is_rejected_not_half_made() {
    let w = world("ephemeral:1").await;
    let first = place(&w).await;
    first
        .wait_for(LONG, |p| *p == CallPhase::PreAccepted)
        .await
        .expect("the first call is pre-accepted");
    let second = place(&w).await;
    // Meta answers a business reject with its terminate webhook: the marker that it is over.
    let ended = second
        .wait_for(LONG, |p| matches!(p, CallPhase::Ended { .. }))
        .await
        .expect("the second call is ended");
    assert!(matches!(ended, CallPhase::Ended { .. }));
    let reqs = w.fake.requests();
    let seen: Vec<String> = requests_for(&reqs, &second)
        .iter()
        .filter_map(|r| r.action.as_ref().map(|a| a.as_str().to_owned()))
        .collect();
    assert_eq!(
        seen,
        vec!["reject".to_owned()],
        "rejected at once, never pre-accepted"
    );
    let c = w.running.media.counters().await.unwrap();
    assert_eq!(
        c.legs,
        1 + 1,
        "the first call and the agent: nothing of the refused call"
    );
    assert_eq!(c.engine.refused_no_port, 1);
    // The first call is untouched.
    let peer = first.peer().expect("the first caller has its answer");
    peer.wait_for(LONG, |s| s.connected)
        .await
        .expect("the first call's media connects");
    w.running.shutdown().await;
}
