//! The binary under SIGTERM with a call in progress, as an orchestrator stops it: `/readyz`
//! turns 503 at once, a new call is rejected at Meta, the live call goes on until its agent
//! hangs up, then the process exits 0 with both calls recorded. It runs with JSON logs, so the
//! same run shows every line is a JSON object and the call's lines carry its id.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use switchboard::signaling::protocol::ClientMsg;
use switchboard::sim::agent::SimAgent;
use switchboard::store::{CallQuery, Outcome, StoreHandle};

const LONG: Duration = Duration::from_secs(30);

/// Kills the child if the test fails half-way.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The process's log, one JSON object a line.
struct Log {
    lines: mpsc::Receiver<String>,
    seen: Vec<Value>,
}

impl Log {
    /// The next line that satisfies `want`; every line read must be JSON.
    fn next(&mut self, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + LONG;
        loop {
            let line = self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("the log line comes within 30 s");
            let v = parse(&line);
            self.seen.push(v.clone());
            if want(&v) {
                return v;
            }
        }
    }

    /// Every line so far, the ones not read yet included.
    fn all(mut self) -> Vec<Value> {
        let rest: Vec<String> = self.lines.try_iter().collect();
        self.seen.extend(rest.iter().map(|l| parse(l)));
        self.seen
    }
}

fn parse(line: &str) -> Value {
    serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"))
}

fn message(v: &Value) -> &str {
    v["fields"]["message"].as_str().unwrap_or("")
}

use common::metric_value as value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_call_drains_it_and_exits_zero_with_records_written() {
    let dir = std::env::temp_dir().join(format!("sb-drain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("calls.db");
    let _ = std::fs::remove_file(&db);
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SWITCHBOARD_HTTP_ADDR", "127.0.0.1:0")
            .env("SWITCHBOARD_MEDIA_ADDR", "127.0.0.1")
            .env("SWITCHBOARD_MEDIA_PORTS", "ephemeral:4")
            .env("SWITCHBOARD_METRICS_ADDR", "127.0.0.1:0")
            .env("SWITCHBOARD_DRAIN_SECS", "120")
            .env("SWITCHBOARD_DB", &db)
            .env("SWITCHBOARD_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary runs"),
    );
    let out = BufReader::new(child.0.stdout.take().unwrap());
    let (tx, lines) = mpsc::channel();
    let mut log = Log {
        lines,
        seen: vec![],
    };
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });

    // The demo sign-ins and the addresses, from the start-up lines.
    let demo = log.next(|v| message(v).contains("demo sign-ins"));
    let demo = message(&demo);
    let password = demo
        .split("agent1 / ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .expect("agent1's password is printed")
        .to_owned();
    let started = log.next(|v| message(v) == "switchboard started");
    let addr = |key: &str| -> SocketAddr {
        started["fields"][key]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{key} in {started}"))
    };
    let (http_addr, metrics_addr) = (addr("http"), addr("metrics"));
    let http = reqwest::Client::new();
    let get = |url: String| {
        let http = http.clone();
        async move { http.get(url).send().await.unwrap() }
    };
    let readyz = || get(format!("http://{http_addr}/readyz"));
    let scrape = || async {
        get(format!("http://{metrics_addr}/metrics"))
            .await
            .text()
            .await
            .unwrap()
    };
    assert_eq!(readyz().await.status(), 200);

    // agent1 takes a call that never hangs up by itself.
    let mut agent = SimAgent::start(
        http_addr,
        "agent1",
        &password,
        Ipv4Addr::LOCALHOST.into(),
        2,
    )
    .await
    .expect("agent1 signs in with audio");
    let place = |body: Value| {
        let http = http.clone();
        async move {
            let r = http
                .post(format!("http://{http_addr}/sandbox/calls"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.status());
            r.json::<Value>().await.unwrap()["call_id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let live = place(serde_json::json!({ "hang_up_after_secs": 0 })).await;
    let id = agent.ringing(LONG).await.expect("the call rings at agent1");
    assert_eq!(id, live);
    agent.answer(&id, LONG).await.unwrap();

    // SIGTERM: unready from then on, while the call is still live.
    let pid = child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    log.next(|v| message(v).contains("draining"));
    let r = readyz().await;
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("draining"));

    // A new call is rejected at Meta (the documented way), and counted so.
    let _declined = place(serde_json::json!({})).await;
    // The rejection is counted as it happens, the drain flag at the next flush (1 s).
    let metrics = common::eventually_showing(
        "the declined call counted and the drain flagged",
        Duration::from_secs(10),
        || async {
            let metrics = scrape().await;
            if value(
                &metrics,
                r#"switchboard_calls_rejected_total{queue="support",reason="draining"}"#,
            ) == Some(1.0)
                && value(&metrics, "switchboard_draining") == Some(1.0)
            {
                Ok(metrics)
            } else {
                Err(metrics)
            }
        },
    )
    .await;
    assert_eq!(
        value(
            &metrics,
            r#"switchboard_calls_rejected_total{queue="support",reason="draining"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(value(&metrics, "switchboard_draining"), Some(1.0));
    assert_eq!(value(&metrics, "switchboard_calls_active"), Some(1.0));
    assert!(child.0.try_wait().unwrap().is_none(), "still draining");

    // The live call finishes when its agent hangs up; then the process exits 0.
    agent
        .send(ClientMsg::HangUp {
            call_id: id.clone(),
        })
        .await
        .unwrap();
    let status = common::eventually("no exit within 30 s of the hang-up", LONG, || {
        std::future::ready(child.0.try_wait().unwrap())
    })
    .await;
    assert!(status.success(), "exit status {status}");

    // Every line was JSON, and the call's lines carry its id; no phone number whole.
    let all = log.all();
    let of_call = all
        .iter()
        .filter(|v| {
            v["span"]["call_id"].as_str() == Some(live.as_str())
                || v["fields"]["call_id"].as_str() == Some(live.as_str())
        })
        .count();
    assert!(of_call >= 3, "the call's lines carry its id: {of_call}");
    for v in &all {
        let text = v.to_string();
        assert!(
            !text.contains("15557654321"),
            "a caller's number whole: {text}"
        );
        assert!(!text.contains("a=ice-pwd"), "SDP only at debug: {text}");
    }

    // Both calls are recorded: the live one answered, the new one declined.
    let (store, driver) = StoreHandle::open(&db).await.unwrap();
    let page = store.list(CallQuery::default()).await.unwrap();
    drop(store);
    driver.join().await.unwrap();
    let outcome = |id: &str| {
        page.calls
            .iter()
            .find(|c| c.call_id.0 == id)
            .map(|c| c.outcome)
    };
    assert_eq!(outcome(&live), Some(Outcome::Answered));
    assert!(
        page.calls
            .iter()
            .any(|c| c.outcome == Outcome::Declined && c.end_reason.contains("draining")),
        "{:?}",
        page.calls
    );
    assert_eq!(page.calls.len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}
