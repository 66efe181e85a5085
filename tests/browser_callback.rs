//! A call-back in real headless Chromium (issue 25), driven only through the agent page's
//! labelled controls, against the sandbox: a simulated customer calls in and is answered on
//! the page; from Recent calls the agent presses Call back on that call, the customer (who
//! gave the business permission to call) picks up, and they talk. Who hears whom is a
//! frequency: the agent page's fake microphone 1 kHz, the customer 440 Hz (660 Hz when they
//! called in).
//!
//! Needs Debian's `chromium` and `tests/browser/node_modules` (playwright-core); `scripts/deps`
//! installs both. Screenshots land in `target/browser-shots/`.

mod common;

use std::time::Duration;

use common::{Browser, LONG};
use switchboard::app;
use switchboard::config::{Config, Settings};
use switchboard::whatsapp::simulator::{CallPhase, CallSpec, CalleeSpec, CallerAudio, Pickup};

const SHOTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/browser-shots");
/// The customer's number.
const CUSTOMER: &str = "15557654321";
const AGENT_HZ: f64 = 1000.0;
const CUSTOMER_HZ: f64 = 440.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_calls_back_a_recent_caller_from_the_page_and_they_talk_both_ways() {
    let config = Config::from_settings(common::loopback(Settings::default())).unwrap();
    std::fs::create_dir_all(SHOTS).unwrap();
    let running = app::start(config).await.unwrap();
    let sim = running.simulator.clone().expect("the sandbox's simulator");
    // This test plays the customer itself (`next_outbound` below), not the sandbox's own.
    running.sandbox().unwrap().set_callee(None);
    sim.graph().set_permission(CUSTOMER, common::granted());
    let password = running
        .sandbox_sign_ins
        .iter()
        .find(|d| d.id.0 == "agent1")
        .expect("a demo agent")
        .password
        .clone();
    let mut agent = Browser::start(AGENT_HZ);
    let url = format!("http://{}/", running.http_addr);
    agent.sign_in(&url, "agent1", &password).await;
    agent.run("wait_text state Available").await;

    // The customer calls in, is answered on the page and hung up on: the call is listed.
    let inbound = sim
        .place_call(CallSpec {
            from: CUSTOMER.into(),
            audio: CallerAudio::Tone { hz: 660.0 },
            hang_up_after: None,
            ..CallSpec::default()
        })
        .await
        .unwrap();
    agent.run("wait_heading Incoming call").await;
    agent.run("click Answer").await;
    agent.run("wait_button Hang up").await;
    inbound
        .wait_for(LONG, |p| *p == CallPhase::Accepted)
        .await
        .expect("the agent answered on the page");
    agent.run("click Hang up").await;
    inbound
        .wait_for(LONG, |p| matches!(p, CallPhase::Ended { .. }))
        .await
        .expect("the inbound call ends at Meta");
    agent.run("wait_heading Wrap-up").await;
    agent.run("click Done").await;
    agent.run("wait_text state Available").await;
    agent
        .run(&format!("wait_contains recent-calls +{CUSTOMER}"))
        .await;

    // Call back from that row: the status line says what is happening, and the page is
    // accessible while it does.
    agent.run(&format!("click Call back +{CUSTOMER}")).await;
    agent.run("wait_text callback-status Calling…").await;
    agent
        .run(&format!("wait_text callback-to +{CUSTOMER}"))
        .await;
    agent.run("wait_button Cancel").await;
    agent
        .assert_accessible("the agent page, calling back")
        .await;
    agent
        .run(&format!("shot {SHOTS}/agent-calling-back.png"))
        .await;
    let out = sim
        .next_outbound(LONG)
        .await
        .expect("switchboard sent Graph connect");
    assert_eq!(out.to, CUSTOMER);
    let callee = sim
        .answer_outbound(
            out,
            CalleeSpec {
                ring_for: Duration::from_millis(300),
                pickup: Pickup::Answer,
                audio: CallerAudio::Tone { hz: CUSTOMER_HZ },
                hang_up_after: None,
            },
        )
        .await
        .unwrap();
    agent.run("wait_text callback-status Connected").await;
    agent.run("wait_heading In call").await;
    agent.run("wait_button Hang up").await;
    agent
        .run(&format!("wait_text call-number +{CUSTOMER}"))
        .await;
    callee
        .wait_for(LONG, |p| *p == CallPhase::Accepted)
        .await
        .expect("the customer picked up");
    agent.assert_accessible("the agent page, called back").await;
    agent
        .run(&format!("shot {SHOTS}/agent-called-back.png"))
        .await;

    // Both ways, by frequency.
    let page = agent.hears("party", 3000).await;
    assert!(
        common::near(page, CUSTOMER_HZ),
        "the page hears the customer's 440 Hz: {page}"
    );
    let heard = common::caller_hears(&callee, 100)
        .await
        .expect("the customer hears audio");
    assert!(
        common::near(heard, AGENT_HZ),
        "the customer hears the page's 1 kHz: {heard}"
    );

    // The agent hangs up: Meta is told to terminate, and the customer's call ends.
    agent.run("click Hang up").await;
    callee
        .wait_for(LONG, |p| matches!(p, CallPhase::Ended { .. }))
        .await
        .expect("the customer's call ends");
    let terminated = sim.graph().requests().iter().any(|r| {
        r.call_id.as_ref() == Some(&callee.call_id)
            && r.action.as_ref().is_some_and(|a| a.as_str() == "terminate")
    });
    assert!(
        terminated,
        "the fake Graph API saw terminate for the call-back"
    );
    agent.run("wait_heading Wrap-up").await;
    // The ended call-back's status line is cleared.
    agent
        .run("wait_js document.getElementById('callback-status').textContent === ''")
        .await;
    drop(agent);
    running.shutdown().await;
}
