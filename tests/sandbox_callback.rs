//! Call-backs in the sandbox (issue 25): with no WhatsApp credentials, the built-in simulator's
//! customers answer the business's own calls the way Meta's do (its `RINGING` and `ACCEPTED`
//! statuses, its answer in a `connect` webhook, ICE-lite, `a=setup:active`), and they allow the
//! business to call them. "Place a missed call" (`POST /sandbox/missed-calls`) is a customer who
//! hangs up while waiting: the sandbox's default queue has call-backs on, so it returns as a
//! call-back task to a free agent, who calls back from it.

mod common;

use std::time::Duration;

use common::{near, sign_in, LONG};
use switchboard::app::{self, Running};
use switchboard::config::{Config, Settings};
use switchboard::http::{MissedCall, SandboxStats};
use switchboard::ids::WaCallId;
use switchboard::signaling::protocol::{ClientMsg, ServerMsg};
use switchboard::sim::agent::SimAgent;
use switchboard::sim::peer::{Outgoing, PeerHandle};
use switchboard::store::Outcome;
use switchboard::whatsapp::simulator::{CallPhase, CalleeSpec, CallerAudio, Pickup, SimulatedCall};

const AGENT_HZ: f64 = 1000.0;
const CUSTOMER_HZ: f64 = 440.0;

async fn sandbox() -> Running {
    let config = Config::from_settings(common::loopback(Settings::default())).unwrap();
    assert!(config.is_sandbox());
    app::start(config).await.unwrap()
}

/// Presses Call back (for `task` when given) and follows it to `connected` and `talking`: the
/// sandbox's simulated customer took it up and answered. Their side of the call.
async fn called_back(
    running: &Running,
    a: &mut SimAgent,
    to: &str,
    task: Option<String>,
) -> SimulatedCall {
    a.send(ClientMsg::CallBack {
        to: to.into(),
        task_id: task,
    })
    .await
    .unwrap();
    common::call_back_status(a, "calling").await;
    let ServerMsg::CallBack {
        call_id: Some(ringing),
        ..
    } = common::call_back_status(a, "ringing").await
    else {
        panic!("ringing names the call");
    };
    let ServerMsg::CallBack {
        call_id: Some(connected),
        code,
        ..
    } = common::call_back_status(a, "connected").await
    else {
        panic!("connected names the call");
    };
    assert_eq!(connected, ringing);
    assert_eq!(code, None);
    let talking = a
        .expect(LONG, "talking", |m| matches!(m, ServerMsg::Talking { .. }))
        .await
        .unwrap();
    assert!(
        matches!(&talking, ServerMsg::Talking { call_id, .. } if *call_id == connected),
        "{talking:?}"
    );
    let customer = running
        .sandbox()
        .expect("the sandbox's controls")
        .simulated_call(&WaCallId(connected))
        .expect("the sandbox's simulated customer holds the call");
    customer
        .wait_for(LONG, |p| *p == CallPhase::Accepted)
        .await
        .expect("the customer picked up");
    customer
}

/// `peer` hears `hz`, within [`LONG`].
async fn hears(peer: &PeerHandle, hz: f64, who: &str) {
    common::eventually(&format!("{who} never heard {hz} Hz"), LONG, || async {
        peer.recording()
            .await
            .ok()?
            .heard
            .filter(|(got, _)| near(*got, hz))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandboxs_customer_answers_an_agents_call_back_and_they_talk_both_ways() {
    let running = sandbox().await;
    let mut a = sign_in(&running, "agent1").await;
    // Any number: the sandbox's customers have allowed the business to call them.
    let customer = called_back(&running, &mut a, "+44 20 7946 0018", None).await;
    assert_eq!(
        running.sandbox_stats(),
        Some(SandboxStats {
            in_progress: 1,
            refused_over_limit: 0
        }),
        "the customer holds a slot like a placed call"
    );
    // Both ways: the customer (the built-in melody) is heard by the agent, the agent's tone by
    // the customer.
    let agent = a.media();
    let before = agent.status().packets_received;
    agent
        .wait_for(LONG, |s| s.packets_received > before + 50)
        .await
        .expect("packets from the customer reach the agent");
    let melody = agent.handle();
    common::eventually("the agent hears only silence", LONG, || async {
        melody.recording().await.ok()?.heard
    })
    .await;
    agent.send(Outgoing::Tone { hz: AGENT_HZ }).await.unwrap();
    let peer = customer.peer().expect("the customer's media");
    hears(&peer, AGENT_HZ, "the customer").await;
    // The customer never hangs up first: the agent does, and Meta's call ends.
    a.send(ClientMsg::HangUp {
        call_id: customer.call_id.0.clone(),
    })
    .await
    .unwrap();
    a.expect(LONG, "call ended", |m| {
        matches!(m, ServerMsg::CallEnded { .. })
    })
    .await
    .unwrap();
    customer
        .wait_for(LONG, |p| matches!(p, CallPhase::Ended { .. }))
        .await
        .expect("the customer's call ends at Meta");
    let record = common::record_of(&running.store, &customer.call_id, LONG).await;
    assert_eq!(record.outcome, Outcome::Answered);
    assert_eq!(record.caller_number, "442079460018");
    assert_eq!(record.agents, vec!["agent1".to_owned()]);
    common::assert_call_back_steps(&record);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_call_returns_as_one_call_back_task_and_the_customer_answers_it() {
    let running = sandbox().await;
    running.sandbox().unwrap().set_callee(Some(CalleeSpec {
        ring_for: Duration::from_millis(300),
        pickup: Pickup::Answer,
        audio: CallerAudio::Tone { hz: CUSTOMER_HZ },
        hang_up_after: None,
    }));
    let mut a = sign_in(&running, "agent1").await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/sandbox/missed-calls", running.http_addr);
    let resp = http
        .post(&url)
        .json(&serde_json::json!({"from": "15550009876", "name": "Missed Customer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let missed: MissedCall = resp.json().await.unwrap();
    assert_eq!(missed.from, "15550009876");
    assert_eq!(missed.status, "COMPLETED", "the customer hung up");
    // Lost while waiting for an agent: recorded so.
    let record = common::record_of(&running.store, &WaCallId(missed.call_id.clone()), LONG).await;
    assert_eq!(record.outcome, Outcome::Abandoned);
    assert!(record.agents.is_empty(), "nobody answered it");

    // It comes back to the free agent of the sandbox's queue as a call-back task.
    let task = a
        .expect(LONG, "task", |m| matches!(m, ServerMsg::Task { .. }))
        .await
        .unwrap();
    let ServerMsg::Task {
        task_id,
        to,
        name,
        queue,
        reason,
        ..
    } = task
    else {
        unreachable!("matched above");
    };
    assert_eq!(to, "15550009876");
    assert_eq!(name.as_deref(), Some("Missed Customer"));
    assert_eq!(queue, "support", "the sandbox's default queue");
    assert_eq!(reason, "abandoned");

    // Called back from the task: the customer answers and they talk both ways.
    let customer = called_back(&running, &mut a, &to, Some(task_id.clone())).await;
    let agent = a.media();
    agent.send(Outgoing::Tone { hz: AGENT_HZ }).await.unwrap();
    hears(&agent.handle(), CUSTOMER_HZ, "the agent").await;
    let peer = customer.peer().expect("the customer's media");
    hears(&peer, AGENT_HZ, "the customer").await;

    // One task, offered once (the customer's tone heard after it is later than any second
    // offer of the missed call could have come), and no other.
    let tasks: Vec<&ServerMsg> = a
        .seen
        .iter()
        .filter(|m| matches!(m, ServerMsg::Task { .. }))
        .collect();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    // The customer hangs up: the call-back ends as any call.
    customer.hang_up().await;
    a.expect(LONG, "call ended", |m| {
        matches!(m, ServerMsg::CallEnded { .. })
    })
    .await
    .unwrap();
    let record = common::record_of(&running.store, &customer.call_id, LONG).await;
    assert_eq!(record.outcome, Outcome::Answered);
    assert_eq!(record.caller_number, "15550009876");
    running.shutdown().await;
}
