//! The sandbox's "Place a missed call" in real headless Chromium (issue 25), driven only through
//! the agent page's labelled controls: the simulated customer calls and hangs up before anyone
//! answers, the page says so in its status line, the call returns as a call-back request, and
//! the agent's Call back reaches the sandbox's simulated customer, who answers; the page hears
//! them (440 Hz).
//!
//! Needs Debian's `chromium` and `tests/browser/node_modules` (playwright-core); `scripts/deps`
//! installs both. Screenshots land in `target/browser-shots/`.

mod common;

use std::time::Duration;

use common::Browser;
use switchboard::app;
use switchboard::config::{Config, Settings};
use switchboard::whatsapp::simulator::{CalleeSpec, CallerAudio, Pickup};

const SHOTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/browser-shots");
const AGENT_HZ: f64 = 1000.0;
const CUSTOMER_HZ: f64 = 440.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_call_placed_from_the_page_returns_as_a_request_the_agent_calls_back() {
    let config = Config::from_settings(common::loopback(Settings::default())).unwrap();
    std::fs::create_dir_all(SHOTS).unwrap();
    let running = app::start(config).await.unwrap();
    // A tone, to measure what the page hears (the sandbox's customers play the melody).
    running.sandbox().unwrap().set_callee(Some(CalleeSpec {
        ring_for: Duration::from_millis(300),
        pickup: Pickup::Answer,
        audio: CallerAudio::Tone { hz: CUSTOMER_HZ },
        hang_up_after: None,
    }));
    let password = running
        .sandbox_sign_ins
        .iter()
        .find(|d| d.id.0 == "agent1")
        .expect("a demo agent")
        .password
        .clone();
    let mut agent = Browser::start(AGENT_HZ);
    agent
        .sign_in(
            &format!("http://{}/", running.http_addr),
            "agent1",
            &password,
        )
        .await;
    agent.run("wait_text state Available").await;

    agent.run("click Place a missed call").await;
    agent
        .run("wait_text sandbox-status Missed call from +1555")
        .await;
    agent.run("wait_heading Call-back request").await;
    let number = agent
        .run("eval document.getElementById('task-number').textContent")
        .await;
    assert!(number.starts_with("\"+1555"), "{number}");
    agent
        .assert_accessible("the agent page, a missed call's request")
        .await;
    agent
        .run(&format!("shot {SHOTS}/agent-missed-call-request.png"))
        .await;

    agent.run("click Call back").await;
    agent.run("wait_text callback-status Connected").await;
    agent.run("wait_heading In call").await;
    let page = agent.hears("party", 3000).await;
    assert!(
        common::near(page, CUSTOMER_HZ),
        "the page hears the sandbox's customer: {page}"
    );
    agent.run("click Hang up").await;
    agent.run("wait_heading Wrap-up").await;
    drop(agent);
    running.shutdown().await;
}
