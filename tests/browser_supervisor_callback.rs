//! A supervisor's Call back on a record, in real headless Chromium (issue 25), driven only by
//! the supervisor page's labels, against the sandbox: a customer called and was answered; the
//! supervisor presses **Call back** on that record, the call-back waits under "Call-backs to
//! make" and is offered to the free agent as a task; **Withdraw** takes it back, and the agent
//! is told.
//!
//! Needs Debian's `chromium` and `tests/browser/node_modules` (playwright-core); `scripts/deps`
//! installs both. Screenshots land in `target/browser-shots/`.

mod common;

use std::time::Duration;

use common::{sign_in, Browser, LONG};
use switchboard::app;
use switchboard::config::{Config, Settings};
use switchboard::signaling::protocol::{ClientMsg, ServerMsg};
use switchboard::whatsapp::simulator::{CallPhase, CallSpec, CallerAudio};

const SHOTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/browser-shots");
/// The customer's number.
const CUSTOMER: &str = "15557650001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_calls_back_a_recorded_customer_through_the_next_free_agent_and_withdraws_it()
{
    let config = Config::from_settings(common::loopback(Settings::default())).unwrap();
    std::fs::create_dir_all(SHOTS).unwrap();
    let running = app::start(config).await.unwrap();
    let sim = running.simulator.clone().expect("the sandbox's simulator");

    // The customer calls, agent1 answers; the customer hangs up: an answered record.
    let mut agent = sign_in(&running, "agent1").await;
    let call = sim
        .place_call(CallSpec {
            from: CUSTOMER.into(),
            name: "Ada".into(),
            audio: CallerAudio::Tone { hz: 660.0 },
            hang_up_after: Some(Duration::from_millis(500)),
            ..CallSpec::default()
        })
        .await
        .unwrap();
    let id = agent.ringing(LONG).await.unwrap();
    agent.answer(&id, LONG).await.unwrap();
    call.wait_for(LONG, |p| matches!(p, CallPhase::Ended { .. }))
        .await
        .expect("the customer hangs up");
    let record = common::record_of(&running.store, &call.call_id, LONG).await;
    assert_eq!(record.outcome.as_str(), "answered");
    agent.send(ClientMsg::WrapUpDone {}).await.unwrap();

    // The supervisor's records list the call; Call back on it schedules a call-back.
    let password = running
        .sandbox_sign_ins
        .iter()
        .find(|d| d.id.0 == "super")
        .expect("a demo supervisor")
        .password
        .clone();
    let mut sup = Browser::start(660.0);
    sup.sign_in(
        &format!("http://{}/supervisor", running.http_addr),
        "super",
        &password,
    )
    .await;
    sup.run(&format!("wait_contains record-rows +{CUSTOMER}"))
        .await;
    sup.run("wait_contains record-rows customer called").await;
    sup.run(&format!("click Call back +{CUSTOMER}")).await;
    sup.run(&format!(
        "wait_contains callback-result Call-back to +{CUSTOMER} scheduled"
    ))
    .await;
    sup.run(&format!("wait_contains task-rows +{CUSTOMER}"))
        .await;
    sup.assert_accessible("the supervisor page, a call-back to make")
        .await;
    sup.run(&format!("shot {SHOTS}/supervisor-call-back.png"))
        .await;

    // The free agent is offered it: who, and why.
    let task = match agent
        .expect(LONG, "a call-back task", |m| {
            matches!(m, ServerMsg::Task { .. })
        })
        .await
        .unwrap()
    {
        ServerMsg::Task {
            task_id,
            to,
            reason,
            name,
            queue,
            ..
        } => {
            assert_eq!(
                (to.as_str(), reason.as_str(), name.as_deref()),
                (CUSTOMER, "scheduled", Some("Ada"))
            );
            assert_eq!(Some(queue), record.queue);
            task_id
        }
        _ => unreachable!(),
    };

    // Pressing it again: the customer has one waiting already.
    sup.run(&format!("click Call back +{CUSTOMER}")).await;
    sup.run(&format!(
        "wait_contains callback-result +{CUSTOMER} already has a call-back waiting"
    ))
    .await;

    // Withdrawn from the page: the agent hears it, and nothing is left to make.
    sup.run(&format!("click Withdraw the call-back to +{CUSTOMER}"))
        .await;
    sup.run("wait_visible tasks-empty").await;
    match agent
        .expect(LONG, "the task withdrawn", |m| {
            matches!(m, ServerMsg::TaskStopped { .. })
        })
        .await
        .unwrap()
    {
        ServerMsg::TaskStopped { task_id, reason } => {
            assert_eq!((task_id, reason.as_str()), (task, "cancelled"))
        }
        _ => unreachable!(),
    }
    drop(sup);
    drop(agent);
    running.shutdown().await;
}
