//! The pages in real headless Chromium, driven only through their labelled controls, against
//! the sandbox (simulated WhatsApp callers, demo people). Each browser's fake microphone plays
//! its own tone, so who hears whom is a frequency:
//! caller 1 kHz, agent page 440 Hz, supervisor page 660 Hz.
//!
//! Needs Debian's `chromium` and `tests/browser/node_modules` (playwright-core); `scripts/deps`
//! installs both. Screenshots land in `target/browser-shots/`.

mod common;

use std::collections::HashSet;

use common::{Browser, LONG};
use switchboard::app::{self, Running};
use switchboard::config::{Config, Settings};
use switchboard::whatsapp::simulator::{CallPhase, CallSpec, CallerAudio, SimulatedCall};

const SHOTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/browser-shots");

async fn sandbox() -> Running {
    let config = Config::from_settings(common::loopback(Settings {
        ..Settings::default()
    }))
    .unwrap();
    std::fs::create_dir_all(SHOTS).unwrap();
    app::start(config).await.unwrap()
}

fn password(running: &Running, id: &str) -> String {
    running
        .sandbox_sign_ins
        .iter()
        .find(|d| d.id.0 == id)
        .expect("a demo person")
        .password
        .clone()
}

/// An agent page signed in and Available.
async fn agent_page(running: &Running, id: &str, hz: f64) -> Browser {
    let mut b = Browser::start(hz);
    let url = format!("http://{}/", running.http_addr);
    b.run(&format!("goto {url}")).await;
    b.assert_accessible("the sign-in form").await;
    b.sign_in(&url, id, &password(running, id)).await;
    b.run("wait_text state Available").await;
    b
}

/// A simulated caller playing 1 kHz, answered on the agent page.
async fn answered_call(running: &Running, agent: &mut Browser) -> SimulatedCall {
    let sim = running.simulator.clone().unwrap();
    let call = sim
        .place_call(CallSpec {
            audio: CallerAudio::Tone { hz: 1000.0 },
            hang_up_after: None,
            ..CallSpec::default()
        })
        .await
        .unwrap();
    agent.run("wait_heading Incoming call").await;
    agent.assert_accessible("the agent page, ringing").await;
    agent.run(&format!("shot {SHOTS}/agent-ringing.png")).await;
    agent.run("click Answer").await;
    agent.run("wait_button Hang up").await;
    call.wait_for(LONG, |p| *p == CallPhase::Accepted)
        .await
        .expect("the agent answered on the page");
    call
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_answers_on_the_page_talks_mutes_holds_and_hangs_up() {
    let running = sandbox().await;
    let mut agent = agent_page(&running, "agent1", 440.0).await;
    let call = answered_call(&running, &mut agent).await;
    agent.run(&format!("shot {SHOTS}/agent-in-call.png")).await;
    agent.assert_accessible("the agent page, in a call").await;
    let page = agent.hears("party", 3000).await;
    assert!(
        common::near(page, 1000.0),
        "the page hears the caller's 1 kHz: {page}"
    );
    let heard = common::caller_hears(&call, 100)
        .await
        .expect("the caller hears audio");
    assert!(
        common::near(heard, 440.0),
        "the caller hears the page's 440 Hz: {heard}"
    );

    // Hold: the caller hears the hold file (the melody's packets), not the agent.
    agent.run("click Hold").await;
    let caller = call.peer().unwrap();
    let before = caller.recording().await.unwrap().packets.len();
    common::caller_hears(&call, 60).await;
    let hold: HashSet<Vec<u8>> = switchboard::media::ogg::read(switchboard::media::ogg::MELODY)
        .unwrap()
        .packets
        .into_iter()
        .collect();
    let rec = caller.recording().await.unwrap();
    let held = rec.packets[before..]
        .iter()
        .filter(|p| hold.contains(&p.payload[..]))
        .count();
    assert!(
        held >= 40,
        "the caller hears the hold file: {held} of its packets"
    );
    agent.run("click Hold").await;
    // Mute: silence frames.
    agent.run("click Mute").await;
    let before = caller.recording().await.unwrap().packets.len();
    common::caller_hears(&call, 60).await;
    let rec = caller.recording().await.unwrap();
    let silent = rec.packets[before..]
        .iter()
        .filter(|p| p.payload[..] == [0xF8, 0xFF, 0xFE])
        .count();
    assert!(
        silent >= 40,
        "the caller hears silence: {silent} silence frames"
    );
    agent.run("click Mute").await;

    // A reload mid-call: the page signs back in by itself and the call resumes, both ways.
    agent.run("eval location.reload()").await;
    agent.run("wait_button Hang up").await;
    let page = agent.hears("party", 3000).await;
    assert!(
        common::near(page, 1000.0),
        "after the reload the page hears the caller: {page}"
    );
    let heard = common::caller_hears(&call, 100)
        .await
        .expect("the caller hears audio");
    assert!(
        common::near(heard, 440.0),
        "after the reload the caller hears the page: {heard}"
    );

    // Hang up on the page: terminate at Meta, and the wrap-up countdown shows; Done ends it.
    agent.run("click Hang up").await;
    agent.run("wait_heading Wrap-up").await;
    agent.run("wait_text wrapup-text Wrap-up:").await;
    agent.run(&format!("shot {SHOTS}/agent-wrap-up.png")).await;
    agent.run("click Done").await;
    agent.run("wait_text state Available").await;
    call.wait_for(LONG, |p| matches!(p, CallPhase::Ended { .. }))
        .await
        .expect("the call ends at Meta");
    let sim = running.simulator.clone().unwrap();
    let terminated = sim.graph().requests().iter().any(|r| {
        r.call_id.as_ref() == Some(&call.call_id)
            && r.action.as_ref().is_some_and(|a| a.as_str() == "terminate")
    });
    assert!(terminated, "the fake Graph API saw terminate");
    drop(agent);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_listens_to_both_parties_and_whispers_to_the_agent_only() {
    let running = sandbox().await;
    let mut agent = agent_page(&running, "agent1", 440.0).await;
    let call = answered_call(&running, &mut agent).await;
    let mut sup = Browser::start(660.0);
    let url = format!("http://{}/supervisor", running.http_addr);
    sup.sign_in(&url, "super", &password(&running, "super"))
        .await;
    // Listening needs the supervisor's own audio connection up.
    sup.run("wait_text state Available").await;
    sup.run("wait_button Listen").await;
    // The agents table shows the call by its last characters (Meta's ids run to ~70), the
    // whole id on hover, and the page does not scroll sideways.
    let id = &call.call_id.0;
    let shown = sup
        .run(&format!(
            "eval [...document.querySelectorAll('#agents td')].find((t) => t.title === {id:?})?.textContent"
        ))
        .await;
    assert_eq!(shown, format!("{:?}", format!("…{}", &id[id.len() - 8..])));
    let fits = sup
        .run("eval document.documentElement.scrollWidth <= document.documentElement.clientWidth")
        .await;
    assert_eq!(fits, "true");
    sup.run("click Listen").await;
    sup.run("wait_text monitoring Listening").await;
    sup.run(&format!("shot {SHOTS}/supervisor-listening.png"))
        .await;
    sup.assert_accessible("the supervisor board").await;
    let caller_side = sup.hears("party", 3000).await;
    let agent_side = sup.hears("second", 3000).await;
    assert!(
        common::near(caller_side, 1000.0),
        "the supervisor hears the caller: {caller_side}"
    );
    assert!(
        common::near(agent_side, 440.0),
        "the supervisor hears the agent: {agent_side}"
    );
    // Listening is silent: nothing of the supervisor's reaches the agent (its second stream
    // carries nothing) or the caller.
    let at_agent = agent.hears("second", 2000).await;
    assert!(
        !common::near(at_agent, 660.0),
        "the agent does not hear a listening supervisor: {at_agent}"
    );
    let at_caller = common::caller_hears(&call, 60)
        .await
        .expect("the caller hears audio");
    assert!(
        common::near(at_caller, 440.0),
        "the caller hears only the agent: {at_caller}"
    );
    // Whisper: the agent hears the supervisor's 660 Hz on the second stream; the caller never
    // hears the supervisor.
    sup.run("click Whisper").await;
    sup.run("wait_text monitoring Whispering").await;
    // The agent's page says so.
    agent.run("wait_visible whisper").await;
    let whisper = agent.hears("second", 3000).await;
    assert!(
        common::near(whisper, 660.0),
        "the agent hears the whisper: {whisper}"
    );
    let at_caller = common::caller_hears(&call, 100)
        .await
        .expect("the caller hears audio");
    assert!(
        common::near(at_caller, 440.0),
        "the caller hears only the agent: {at_caller}"
    );
    sup.run("click Stop").await;
    sup.run("wait_text monitoring Not listening").await;
    drop(sup);
    drop(agent);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_agent_page_takes_a_transfer_and_the_caller_hears_that_agent() {
    let running = sandbox().await;
    let mut first = agent_page(&running, "agent1", 440.0).await;
    let mut second = agent_page(&running, "agent2", 880.0).await;
    let call = answered_call(&running, &mut first).await;
    first.run("select Transfer to|Agent agent2").await;
    first.run("click Transfer").await;
    second.run("wait_heading Incoming call").await;
    second.run("click Answer").await;
    second.run("wait_button Hang up").await;
    let page = second.hears("party", 3000).await;
    assert!(
        common::near(page, 1000.0),
        "the second agent hears the caller: {page}"
    );
    let heard = common::caller_hears(&call, 100)
        .await
        .expect("the caller hears audio");
    assert!(
        common::near(heard, 880.0),
        "the caller hears the second agent: {heard}"
    );
    drop(first);
    drop(second);
    running.shutdown().await;
}

/// How many "Place a test call" buttons a person can see on the page.
const TEST_CALL_BUTTONS: &str = "eval [...document.querySelectorAll('button')]\
    .filter((b) => b.textContent.trim() === 'Place a test call' && b.checkVisibility()).length";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_call_button_shows_in_the_sandbox_only() {
    // In the sandbox the button is there to press.
    let running = sandbox().await;
    let mut b = agent_page(&running, "agent1", 440.0).await;
    assert_eq!(b.run(TEST_CALL_BUTTONS).await, "1");
    running.shutdown().await;

    // With real credentials it could only fail: nobody sees it.
    let (_fake, _events, mut config) = common::live_config(Settings {
        cookie_secure: Some(false),
        ..Settings::default()
    })
    .await;
    config.auth.people = common::agents(1);
    let running = app::start(config).await.unwrap();
    let url = format!("http://{}/", running.http_addr);
    b.sign_in(&url, "agent1", common::PASSWORD).await;
    // The page decides before it shows the desk, where the state is.
    b.run("wait_text state Available").await;
    assert_eq!(b.run(TEST_CALL_BUTTONS).await, "0");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_goes_away_declines_answers_from_the_keyboard_sees_the_keys_and_switches_microphone(
) {
    let running = sandbox().await;
    let sim = running.simulator.clone().unwrap();
    let mut agent = agent_page(&running, "agent1", 440.0).await;

    // The microphone check shows once the microphone is granted, with the devices named.
    agent.run("wait_visible audio-check").await;
    let mics: Vec<String> = serde_json::from_str(
        &agent
            .run(
                "eval [...document.getElementById('mic-select').options].map((o) => o.textContent)",
            )
            .await,
    )
    .expect("the microphones' names");
    assert!(
        !mics.is_empty() && mics.iter().all(|m| !m.is_empty()),
        "the microphones are listed by name: {mics:?}"
    );
    // The account's away reasons, and back.
    agent.run("select Away reason|Lunch").await;
    agent.run("click Away").await;
    agent.run("wait_text state Away (Lunch)").await;
    agent.run("click Available").await;
    agent.run("wait_text state Available").await;

    // A call rings and Answer has the keyboard; Decline sets the agent away, and the page says
    // so.
    let first = sim
        .place_call(CallSpec {
            hang_up_after: None,
            ..CallSpec::default()
        })
        .await
        .unwrap();
    agent.run("wait_heading Incoming call").await;
    agent.run("wait_contains in-name Simulated Caller").await;
    assert_eq!(
        agent.run("eval document.activeElement?.textContent").await,
        "\"Answer\""
    );
    agent.run("click Decline").await;
    agent
        .run("wait_text notice You missed a call and were set away. Press Available when you are back.")
        .await;
    agent.run("wait_text state Away").await;
    assert_eq!(
        agent
            .run("eval document.getElementById('incoming').hidden")
            .await,
        "true"
    );
    first.hang_up().await;
    agent.run("click Available").await;
    agent.run("wait_text state Available").await;

    // The next one is answered with Enter, Answer having the keyboard; the caller's keys show
    // as they are pressed.
    let call = sim
        .place_call(CallSpec {
            audio: CallerAudio::Tone { hz: 1000.0 },
            hang_up_after: None,
            ..CallSpec::default()
        })
        .await
        .unwrap();
    agent.run("wait_heading Incoming call").await;
    agent.run("press Enter").await;
    agent.run("wait_button Hang up").await;
    call.wait_for(LONG, |p| *p == CallPhase::Accepted)
        .await
        .expect("the agent answered from the keyboard");
    agent.run("wait_text state On a call").await;
    let caller = call.peer().unwrap();
    for d in ['4', '2', '#'] {
        caller
            .dtmf(d, std::time::Duration::from_millis(120))
            .await
            .unwrap();
    }
    agent.run("wait_text dtmf 42#").await;

    // Another microphone mid-call: the caller goes on hearing the page.
    let last = mics.last().unwrap();
    agent.run(&format!("select Microphone|{last}")).await;
    let heard = common::caller_hears(&call, 100)
        .await
        .expect("the caller hears audio");
    assert!(
        common::near(heard, 440.0),
        "after the switch the caller hears the page's 440 Hz: {heard}"
    );
    let notice = agent
        .run("eval document.getElementById('notice').textContent")
        .await;
    assert!(
        !notice.contains("could not be opened"),
        "the microphone opened: {notice}"
    );

    // Mute shows pressed, and again not; Hang up: the page says why the call ended and lists it.
    agent.run("click Mute").await;
    agent
        .run("wait_js document.getElementById('mute').getAttribute('aria-pressed') === 'true'")
        .await;
    agent.run("click Mute").await;
    agent
        .run("wait_js document.getElementById('mute').getAttribute('aria-pressed') === 'false'")
        .await;
    agent.run("click Hang up").await;
    agent.run("wait_heading Wrap-up").await;
    agent.run("wait_text notice Call ended:").await;
    agent.run("wait_contains recent-calls answered").await;
    agent.assert_accessible("the agent page, in wrap-up").await;
    agent.run("click Done").await;
    agent.run("wait_text state Available").await;

    // The same person signs in elsewhere: this page says so and stays off (had it connected
    // again, on its first retry a second later, the new page would have been replaced in turn).
    let mut elsewhere = agent_page(&running, "agent1", 880.0).await;
    agent.run("wait_text notice you signed in elsewhere").await;
    elsewhere.run("wait_text state Available").await;
    assert_eq!(
        elsewhere
            .run("eval document.getElementById('notice').hidden")
            .await,
        "true",
        "the new page is live"
    );
    drop(elsewhere);
    drop(agent);
    running.shutdown().await;
}
