//! The agent page in real headless Chromium, driven only through its labelled controls: sign in
//! with the sandbox's demo credentials, become Available, answer the simulated WhatsApp call that
//! rings, and talk: the page hears the caller's 1 kHz, the caller hears the page's 440 Hz fake
//! microphone. Hang up on the page ends the call at Meta and shows the wrap-up.
//!
//! Needs Debian's `chromium` and `tests/browser/node_modules` (playwright-core); `scripts/deps`
//! installs both. Screenshots land in `target/browser-shots/`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{write_tone, LONG};
use switchboard::app;
use switchboard::config::{Config, Settings};
use switchboard::whatsapp::simulator::{CallPhase, CallSpec, CallerAudio};
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_answers_on_the_page_and_both_sides_hear_each_other() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
    assert!(
        std::path::Path::new(dir)
            .join("node_modules/playwright-core")
            .exists()
            && std::path::Path::new("/usr/bin/chromium").exists(),
        "browser tests need chromium and tests/browser/node_modules: run scripts/deps"
    );
    let config = Config::from_settings(Settings {
        http_addr: Some("127.0.0.1:0".into()),
        media_addr: Some("127.0.0.1:0".into()),
        ..Settings::default()
    })
    .unwrap();
    let running = app::start(config).await.unwrap();
    let sim = running
        .simulator
        .clone()
        .expect("the sandbox has a simulator");
    let demo = running
        .sandbox_sign_ins
        .iter()
        .find(|d| d.id.0 == "agent1")
        .expect("the sandbox's demo agent")
        .clone();

    let tmp = std::env::temp_dir().join(format!("sb-agent-page-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let wav = tmp.join("tone440.wav");
    write_tone(&wav, 440.0);
    let shots = concat!(env!("CARGO_MANIFEST_DIR"), "/target/browser-shots");
    std::fs::create_dir_all(shots).unwrap();

    let mut child = Command::new("node")
        .arg("agent.js")
        .arg(format!("http://{}/", running.http_addr))
        .arg(&wav)
        .arg(&demo.id.0)
        .arg(&demo.password)
        .arg(shots)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .expect("node runs");
    let pid = child.id();
    // Whatever happens below, the browser's whole process group goes with the test.
    struct Kill(u32);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.0)])
                .status();
        }
    }
    let _kill = Kill(pid);
    let mut stdin = child.stdin.take().unwrap();
    let (line_tx, mut lines) = mpsc::unbounded_channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line_tx.send(line).is_err() {
                return;
            }
        }
    });
    async fn next(lines: &mut mpsc::UnboundedReceiver<String>, prefix: &str) -> String {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(90), lines.recv())
                .await
                .unwrap_or_else(|_| panic!("the page never said {prefix}"))
                .unwrap_or_else(|| panic!("the browser ended before saying {prefix}"));
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.trim().to_owned();
            }
        }
    }

    next(&mut lines, "READY").await;
    let call = sim
        .place_call(CallSpec {
            audio: CallerAudio::Tone { hz: 1000.0 },
            hang_up_after: None,
            ..CallSpec::default()
        })
        .await
        .unwrap();
    call.wait_for(LONG, |p| *p == CallPhase::Accepted)
        .await
        .expect("the agent answered on the page");
    let caller = call.peer().expect("the caller's media");
    let page_heard: f64 = next(&mut lines, "MEASURED").await.parse().unwrap();
    let from_page = caller.status().packets_received + 100;
    caller
        .wait_for(LONG, |s| s.packets_received > from_page)
        .await
        .expect("the caller hears the page");
    let caller_heard = caller.recording().await.unwrap().heard;
    writeln!(stdin, "DONE").unwrap();
    next(&mut lines, "RESULT").await;
    call.wait_for(LONG, |p| matches!(p, CallPhase::Ended { .. }))
        .await
        .expect("Hang up on the page ends the call at Meta");
    let terminated = sim.graph().requests().iter().any(|r| {
        r.call_id.as_ref() == Some(&call.call_id)
            && r.action.as_ref().is_some_and(|a| a.as_str() == "terminate")
    });
    assert!(terminated, "the fake Graph API saw terminate");
    assert!(
        (page_heard - 1000.0).abs() < 30.0,
        "the page hears the caller's 1 kHz: {page_heard}"
    );
    let (hz, _) = caller_heard.expect("the caller heard audio");
    assert!(
        (hz - 440.0).abs() < 30.0,
        "the caller hears the page's 440 Hz: {hz}"
    );
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&tmp);
    running.shutdown().await;
}
