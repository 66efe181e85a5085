//! With no WhatsApp credentials, switchboard runs wired to its simulator: a person (or this
//! test) can place a simulated call and it is answered, pre-accepted and connected.

mod common;

use std::process::Command;

use base64::prelude::{Engine as _, BASE64_STANDARD};

use switchboard::app;
use switchboard::config::{Config, Settings};
use switchboard::http::{EndedCall, PlacedCall, SandboxStats};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_takes_a_simulated_call_placed_over_http() {
    let config = Config::from_settings(common::loopback(Settings {
        ..Settings::default()
    }))
    .unwrap();
    assert!(config.is_sandbox());
    let running = app::start(config).await.unwrap();
    // A demo agent signed in with audio up: the call rings there (nobody staffed: declined).
    let _agent = common::sign_in(&running, "agent1").await;
    let sim = running
        .simulator
        .clone()
        .expect("the sandbox has a simulator");
    let resp = reqwest::Client::new()
        .post(format!("http://{}/sandbox/calls", running.http_addr))
        .json(&serde_json::json!({ "tone_hz": 600.0, "hang_up_after_secs": 0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let placed: PlacedCall = resp.json().await.unwrap();
    assert!(placed.call_id.starts_with("wacid."));
    // The sandbox's fake Graph API saw a valid pre_accept for exactly that call.
    common::eventually_showing(
        "pre_accept accepted",
        std::time::Duration::from_secs(5),
        || async {
            let requests = sim.graph().requests();
            let ok = requests.iter().any(|r| {
                r.call_id.as_ref().is_some_and(|c| c.0 == placed.call_id)
                    && r.action
                        .as_ref()
                        .is_some_and(|a| a.as_str() == "pre_accept")
                    && r.status == 200
            });
            if ok {
                Ok(())
            } else {
                Err(format!("{requests:?}"))
            }
        },
    )
    .await;
    assert_eq!(
        running.media.counters().await.unwrap().legs,
        2,
        "the call's leg and the agent's"
    );
    // Bad requests are refused with a reason, and place nothing.
    let bad = reqwest::Client::new()
        .post(format!("http://{}/sandbox/calls", running.http_addr))
        .json(&serde_json::json!({ "tone_hz": 1.0e9 }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    // The caller can play any Ogg/Opus file sent along; what is not one is refused with a reason.
    let post = |body: serde_json::Value| {
        reqwest::Client::new()
            .post(format!("http://{}/sandbox/calls", running.http_addr))
            .json(&body)
            .send()
    };
    let melody = BASE64_STANDARD.encode(switchboard::sim::audio::MELODY);
    let ok = post(serde_json::json!({ "audio_ogg_base64": melody, "hang_up_after_secs": 1 }))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    for (body, reason) in [
        (
            serde_json::json!({ "audio_ogg_base64": "%%%" }),
            "not base64",
        ),
        (
            serde_json::json!({ "audio_ogg_base64": BASE64_STANDARD.encode("RIFF....WAVE") }),
            "not an Ogg file",
        ),
        (
            serde_json::json!({ "audio_ogg_base64": melody, "tone_hz": 440 }),
            "not both",
        ),
    ] {
        let resp = post(body).await.unwrap();
        assert_eq!(resp.status(), 422);
        let text = resp.text().await.unwrap();
        assert!(text.contains(reason), "{text}");
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_caps_simulated_calls_in_progress() {
    let config = Config::from_settings(common::loopback(Settings {
        sandbox_max_calls: Some(2),
        ..Settings::default()
    }))
    .unwrap();
    let running = app::start(config).await.unwrap();
    // Both demo agents up: two calls ring and stay in progress.
    let _a1 = common::sign_in(&running, "agent1").await;
    let _a2 = common::sign_in(&running, "agent2").await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/sandbox/calls", running.http_addr);
    let place = || {
        http.post(&url)
            .json(&serde_json::json!({ "hang_up_after_secs": 0 }))
            .send()
    };
    let mut placed = vec![];
    for _ in 0..2 {
        let resp = place().await.unwrap();
        assert_eq!(resp.status(), 200);
        placed.push(resp.json::<PlacedCall>().await.unwrap().call_id);
    }
    let over = place().await.unwrap();
    assert_eq!(over.status(), 429);
    let body: serde_json::Value = over.json().await.unwrap();
    let error = body["error"].as_str().expect("a JSON error body");
    assert!(error.contains("too many simulated calls"), "{error}");
    assert_eq!(
        running.sandbox_stats(),
        Some(SandboxStats {
            in_progress: 2,
            refused_over_limit: 1
        })
    );

    // Hanging up answers once the call has ended (Meta's terminate sent): its slot is free.
    let hung_up = http
        .delete(format!("{url}/{}", placed[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(hung_up.status(), 200);
    let ended: EndedCall = hung_up.json().await.unwrap();
    assert_eq!(ended.call_id, placed[0]);
    assert_eq!(ended.status, "COMPLETED");
    assert_eq!(place().await.unwrap().status(), 200);
    assert_eq!(
        running.sandbox_stats(),
        Some(SandboxStats {
            in_progress: 2,
            refused_over_limit: 1
        })
    );
    let unknown = http
        .delete(format!("{url}/{}", placed[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    // An id that could forge a log line (a newline) or flood one (too long) is refused as such.
    for bad in [
        "wacid.A%0A2026-01-01T00:00:00Z%20INFO%20forged",
        &"A".repeat(300),
    ] {
        let refused = http.delete(format!("{url}/{bad}")).send().await.unwrap();
        assert_eq!(refused.status(), 422, "{bad}");
    }
    running.shutdown().await;
}

#[tokio::test]
async fn live_credentials_have_no_sandbox_routes() {
    let config = Config::from_settings(common::loopback(Settings {
        graph_url: Some("http://127.0.0.1:9".into()),
        phone_number_id: Some("1".into()),
        access_token: Some(switchboard::config::Secret::new("t")),
        app_secret: Some(switchboard::config::Secret::new("s")),
        verify_token: Some(switchboard::config::Secret::new("v")),
        db: Some(":memory:".into()),
        ..Settings::default()
    }))
    .unwrap();
    let running = app::start(config).await.unwrap();
    assert!(running.simulator.is_none());
    let resp = reqwest::Client::new()
        .post(format!("http://{}/sandbox/calls", running.http_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_audio_that_is_not_ogg_opus_stops_start_up_with_its_reason() {
    let dir = std::env::temp_dir().join(format!("sb-hold-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("hold.wav");
    std::fs::write(&bad, b"RIFF....WAVEfmt ").unwrap();
    for path in [bad.clone(), dir.join("missing.opus")] {
        let config = Config::from_settings(common::loopback(Settings {
            hold_audio: Some(path.clone()),
            ..Settings::default()
        }))
        .unwrap();
        let e = app::start(config).await.err().expect("start-up refuses it");
        let text = e.to_string();
        assert!(text.contains("SWITCHBOARD_HOLD_AUDIO"), "{text}");
    }
    // A real Ogg/Opus file is taken.
    let good = dir.join("hold.opus");
    std::fs::write(&good, switchboard::media::ogg::MELODY).unwrap();
    let config = Config::from_settings(common::loopback(Settings {
        hold_audio: Some(good),
        ..Settings::default()
    }))
    .unwrap();
    let running = app::start(config).await.unwrap();
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn help_lists_every_setting() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("--help")
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let commands = ["simulate-call", "hash-password"];
    for key in common::SETTING_VARS.iter().chain(&commands) {
        assert!(help.contains(key), "--help does not mention {key}:\n{help}");
    }
}

#[test]
fn secrets_never_reach_the_output_and_bad_config_is_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .env_clear()
        .env("SWITCHBOARD_APP_SECRET", "hunter2-very-secret")
        .env("SWITCHBOARD_ACCESS_TOKEN", "EAAB-token-secret")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "incomplete credentials must not start"
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("SWITCHBOARD_PHONE_NUMBER_ID"), "{all}");
    assert!(
        !all.contains("hunter2") && !all.contains("EAAB-token"),
        "{all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_are_served_from_the_binary_under_a_same_origin_policy() {
    let config = Config::from_settings(common::loopback(Settings {
        ..Settings::default()
    }))
    .unwrap();
    let running = app::start(config).await.unwrap();
    let http = reqwest::Client::new();
    for (path, must) in [
        ("/", "Sign in"),
        ("/supervisor", "Live calls"),
        // The agent page is built on the softphone module (one client).
        ("/agent.js", "from '/sdk/v1/switchboard.js'"),
        ("/session.js", "RTCPeerConnection"),
        ("/supervisor.js", "stop_monitor"),
        ("/style.css", "button"),
    ] {
        let r = http
            .get(format!("http://{}{path}", running.http_addr))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.starts_with("default-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("http"), "no outside origin: {csp}");
        let body = r.text().await.unwrap();
        assert!(
            body.contains(must),
            "{path}: {}",
            &body[..body.len().min(300)]
        );
        assert!(
            !body.contains("https://") && !body.contains("http://"),
            "{path} loads nothing from the network"
        );
    }
    running.shutdown().await;
}

#[test]
fn sigterm_drains_and_exits_zero() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SWITCHBOARD_HTTP_ADDR", "127.0.0.1:0")
        .env("SWITCHBOARD_MEDIA_ADDR", "127.0.0.1:0")
        .env("SWITCHBOARD_METRICS_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the binary runs");
    let out = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let started = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut seen = vec![];
    loop {
        let line = rx
            .recv_timeout(started.saturating_duration_since(std::time::Instant::now()))
            .expect("switchboard starts within 60 s");
        seen.push(line);
        if seen
            .last()
            .is_some_and(|l| l.contains("switchboard started"))
        {
            break;
        }
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = common::eventually_blocking(
        "switchboard did not exit within 30 s of SIGTERM",
        std::time::Duration::from_secs(30),
        || child.try_wait().unwrap(),
    );
    assert!(status.success(), "exit status {status}");
    let lines: Vec<String> = rx.try_iter().collect();
    assert!(lines.iter().any(|l| l.contains("draining")), "{lines:?}");
    // Standard output is a pipe, not a terminal: no colour codes in the lines.
    seen.extend(lines);
    assert!(
        seen.iter().all(|l| !l.contains('\x1b')),
        "colour codes in a piped log: {seen:?}"
    );
}
