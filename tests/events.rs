//! Call events to the host's backend (issue 24), over real sockets: an account's endpoint made
//! through the API gets, for a call, `call.offered → call.ringing → call.answered → call.held →
//! call.resumed → call.ended` in order, the record in the last, each delivery verified by the
//! Standard Webhooks library itself (`tests/browser/host/receiver.mjs`, the example of
//! `docs/embedding.md`, on Node), and a tampered body fails there. A receiver that refuses for
//! a while gets every event afterwards, in order, each retry with the same `webhook-id`; the
//! delivery log and a redelivery by hand say and do what they should; and switchboard killed
//! with deliveries pending delivers them once it is started again.
//!
//! (The minute-long outage and the 24-hour window run on simulated time in `src/events`.)

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use switchboard::app::{self, Running};
use switchboard::config::{Role, Secret, Settings};
use switchboard::signaling::protocol::ClientMsg;
use switchboard::sim::agent::SimAgent;
use switchboard::whatsapp::simulator::Simulator;
use tokio::io::{AsyncBufReadExt, BufReader};

const KEY: &str = "0123456789abcdef0123456789abcdef-operator";
/// 32 bytes in base64.
const SECRETS_KEY: &str = "c3dpdGNoYm9hcmQtdGVzdC1zZWNyZXRzLWtleS0zMmI=";
const LIMIT: Duration = Duration::from_secs(15);

struct World {
    running: Running,
    sim: Simulator,
    http: reqwest::Client,
}

impl World {
    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) =
            common::api(&self.http, self.running.http_addr, method, path, KEY, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {v}"
        );
        v
    }

    /// An endpoint of the default account at `url`: its id and secret.
    async fn endpoint(&self, url: &str, types: Value) -> (String, String) {
        let made = self
            .ok(
                "POST",
                "/api/v1/accounts/default/endpoints",
                Some(json!({"url": url, "description": "the test's backend", "types": types})),
            )
            .await;
        (
            made["id"].as_str().unwrap().to_owned(),
            made["secret"].as_str().unwrap().to_owned(),
        )
    }

    async fn deliveries(&self, endpoint: &str) -> Vec<Value> {
        let v = self
            .ok(
                "GET",
                &format!("/api/v1/accounts/default/endpoints/{endpoint}/deliveries"),
                None,
            )
            .await;
        v["deliveries"].as_array().unwrap().clone()
    }
}

/// switchboard against the fake Graph API, with `alice` taking calls and events retried after
/// 200 ms; `private`: loopback endpoints allowed; `sealed`: a secrets key set.
async fn world(private: bool, sealed: bool) -> World {
    let (fake, events, mut config) = common::live_config(Settings {
        media_addr: Some("127.0.0.1".into()),
        media_ports: Some("ephemeral:8".into()),
        operator_key: Some(Secret::new(KEY)),
        secrets_key: sealed.then(|| Secret::new(SECRETS_KEY)),
        events_retry_first: Some(0.2),
        events_private_targets: Some(private),
        ..Settings::default()
    })
    .await;
    config.auth.people = vec![common::person("alice", Role::Agent, &["support"])];
    let running = app::start(config).await.unwrap();
    let sim = common::simulator(&running, &fake, events, None);
    World {
        running,
        sim,
        http: reqwest::Client::new(),
    }
}

/// A call alice answers, holds, takes off hold and hangs up: its id.
async fn a_whole_call(w: &World) -> String {
    let mut alice = SimAgent::start(
        w.running.http_addr,
        "alice",
        common::PASSWORD,
        common::LOOPBACK,
        1,
    )
    .await
    .unwrap();
    let call = common::held_call(&w.sim).await;
    let id = alice.ringing(LIMIT).await.unwrap();
    assert_eq!(id, call.call_id.0);
    alice.answer(&id, LIMIT).await.unwrap();
    for on in [true, false] {
        alice
            .send(ClientMsg::Hold {
                call_id: id.clone(),
                on,
            })
            .await
            .unwrap();
        alice
            .expect(LIMIT, "hold changed", |m| {
                matches!(m, switchboard::signaling::protocol::ServerMsg::CallState { held, .. } if *held == on)
            })
            .await
            .unwrap();
    }
    alice
        .send(ClientMsg::HangUp {
            call_id: id.clone(),
        })
        .await
        .unwrap();
    alice
        .expect(LIMIT, "the call ended", |m| {
            matches!(
                m,
                switchboard::signaling::protocol::ServerMsg::CallEnded { .. }
            )
        })
        .await
        .unwrap();
    id
}

/// The example receiver on Node, verifying with the Standard Webhooks library: its port, and
/// its output lines as they come.
struct NodeReceiver {
    child: tokio::process::Child,
    port: u16,
    lines: tokio::sync::mpsc::UnboundedReceiver<Value>,
}

impl NodeReceiver {
    async fn start(secret: &str) -> NodeReceiver {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/host");
        let mut child = tokio::process::Command::new("node")
            .arg("receiver.mjs")
            .current_dir(dir)
            .env("SWITCHBOARD_EVENTS_SECRET", secret)
            .env("PORT", "0")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs (scripts/deps installs it, and tests/browser's npm packages)");
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = out.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        let first = tokio::time::timeout(LIMIT, lines.recv())
            .await
            .expect("the receiver starts")
            .expect("the receiver prints its port");
        let port = first["listening"].as_u64().expect("its port") as u16;
        NodeReceiver { child, port, lines }
    }

    /// Its verified events until `until` is among them.
    async fn until(&mut self, mut until: impl FnMut(&Value) -> bool) -> Vec<Value> {
        let mut got = vec![];
        loop {
            let v = tokio::time::timeout(LIMIT, self.lines.recv())
                .await
                .unwrap_or_else(|_| panic!("the receiver got, and verified, only {got:#?}"))
                .expect("the receiver runs");
            let done = until(&v);
            got.push(v);
            if done {
                return got;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_events_reach_the_backend_in_order_signed_and_verified_by_the_spec_library() {
    let w = world(true, true).await;
    // The endpoint first (its secret is shown once), then the receiver with it, then its URL.
    let (endpoint, secret) = w.endpoint("http://127.0.0.1:9/not-yet", json!([])).await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    let mut receiver = NodeReceiver::start(&secret).await;
    let url = format!("http://127.0.0.1:{}/switchboard/events", receiver.port);
    w.ok(
        "PATCH",
        &format!("/api/v1/accounts/default/endpoints/{endpoint}"),
        Some(json!({"url": url})),
    )
    .await;
    // Listed, never with its secret.
    let listed = w
        .ok("GET", "/api/v1/accounts/default/endpoints", None)
        .await;
    assert_eq!(listed["endpoints"][0]["url"], url);
    assert!(listed["endpoints"][0].get("secret").is_none(), "{listed}");

    let id = a_whole_call(&w).await;
    // The call's end and alice's wrap-up are two events with no order between them (the
    // wrap-up may be decided in the step before the record or after it): wait for both.
    let (mut ended, mut wrapped) = (false, false);
    let got = receiver
        .until(|v| {
            ended |= v["event"]["type"] == "call.ended" && v["event"]["data"]["call_id"] == id;
            wrapped |=
                v["event"]["type"] == "agent.state" && v["event"]["data"]["state"] == "wrap_up";
            ended && wrapped
        })
        .await;
    let of_call: Vec<&Value> = got
        .iter()
        .filter(|v| v["event"]["data"]["call_id"] == id && v["event"]["type"] != "agent.state")
        .collect();
    let types: Vec<&str> = of_call
        .iter()
        .map(|v| v["event"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "call.offered",
            "call.ringing",
            "call.answered",
            "call.held",
            "call.resumed",
            "call.ended"
        ]
    );
    let ringing = &of_call[1]["event"]["data"];
    assert_eq!(ringing["agent"], "alice");
    assert_eq!(ringing["queue"], "support");
    assert_eq!(ringing["account"], "default");
    let ended = &of_call[5]["event"]["data"];
    assert_eq!(ended["record"]["call_id"], id);
    assert_eq!(ended["record"]["outcome"], "answered");
    assert_eq!(ended["record"]["agents"], json!(["alice"]));
    assert!(ended["record"]["transitions"].as_array().unwrap().len() > 3);
    // Every delivery has its own id; none came twice.
    let ids: std::collections::HashSet<&str> =
        got.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), got.len());
    assert!(got.iter().all(|v| v["again"] == false));
    // alice's presence went along: available, ringing, on the call, wrap-up.
    let states: Vec<&str> = got
        .iter()
        .filter(|v| v["event"]["type"] == "agent.state")
        .map(|v| v["event"]["data"]["state"].as_str().unwrap())
        .collect();
    assert!(
        states
            .windows(3)
            .any(|s| s == ["ringing", "on_call", "wrap_up"]),
        "{states:?}"
    );

    // A delivery replayed as it came is taken; with one byte of its body changed it fails
    // verification at the receiver.
    let raw = &of_call[5]["raw"];
    let body = raw["body"].as_str().unwrap();
    let replay = |body: String| {
        w.http
            .post(&url)
            .header("webhook-id", of_call[5]["id"].as_str().unwrap())
            .header("webhook-timestamp", raw["timestamp"].as_str().unwrap())
            .header("webhook-signature", raw["signature"].as_str().unwrap())
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_eq!(replay(body.to_owned()).await.unwrap().status(), 204);
    let tampered = body.replacen("\"answered\"", "\"abandoned\"", 1);
    assert_ne!(tampered, body);
    assert_eq!(replay(tampered).await.unwrap().status(), 400);

    // The delivery log: every event delivered at the first attempt.
    let log = w.deliveries(&endpoint).await;
    assert!(log.len() >= 6);
    assert!(log
        .iter()
        .all(|d| d["status"] == "delivered" && d["attempts"] == 1 && d["last_status"] == 204));
    let _ = receiver.child.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_refuses_for_a_while_gets_every_event_after_in_order_with_the_same_ids() {
    let w = world(true, true).await;
    let flaky = common::EventsReceiver::default();
    flaky.set_down(true);
    let addr = flaky.clone().serve().await;
    let (endpoint, secret) = w
        .endpoint(
            &format!("http://{addr}/events"),
            json!([
                "call.offered",
                "call.ringing",
                "call.answered",
                "call.held",
                "call.resumed",
                "call.ended"
            ]),
        )
        .await;
    flaky.set_secret(&secret);
    let id = a_whole_call(&w).await;
    // Down: the call's first event is tried again and again; the others wait behind it.
    flaky
        .until("three refused attempts", |got| {
            got.iter().filter(|g| !g.taken).count() >= 3
        })
        .await;
    let refused: Vec<(String, Value)> = flaky
        .got
        .lock()
        .unwrap()
        .iter()
        .filter(|g| !g.taken)
        .map(|g| (g.id.clone(), g.event["type"].clone()))
        .collect();
    assert!(
        refused
            .iter()
            .all(|(i, t)| *i == refused[0].0 && t == "call.offered"),
        "{refused:?}"
    );
    // The receiver has answered the third attempt; switchboard writes its outcome to the log
    // right after, so the log is read until it shows it.
    let first = common::eventually_showing(
        "the third refused attempt in the delivery log",
        common::LONG,
        || async {
            let log = w.deliveries(&endpoint).await;
            let first = log
                .iter()
                .find(|d| d["msg_id"] == refused[0].0.as_str())
                .cloned()
                .ok_or_else(|| format!("not in the log: {log:?}"))?;
            if first["attempts"].as_u64().unwrap_or(0) >= 3 {
                Ok(first)
            } else {
                Err(first.to_string())
            }
        },
    )
    .await;
    assert_eq!(first["status"], "pending");
    assert_eq!(first["last_status"], 503);
    assert!(first["next_at"].as_i64().is_some());
    // Up: everything, in order, the first with the id it was refused with.
    flaky.set_down(false);
    flaky
        .until("the call's end", |got| {
            got.iter()
                .any(|g| g.taken && g.event["type"] == "call.ended")
        })
        .await;
    let got = flaky.got.lock().unwrap().clone();
    assert!(got.iter().all(|g| g.signed), "every attempt signed right");
    let taken: Vec<(&str, &str)> = got
        .iter()
        .filter(|g| g.taken && g.event["data"]["call_id"] == id)
        .map(|g| (g.id.as_str(), g.event["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        taken.iter().map(|t| t.1).collect::<Vec<_>>(),
        [
            "call.offered",
            "call.ringing",
            "call.answered",
            "call.held",
            "call.resumed",
            "call.ended"
        ]
    );
    assert_eq!(
        taken[0].0, refused[0].0,
        "the retry carries the same webhook-id"
    );
    // Sent again by hand: the same id once more.
    let (status, _) = common::api(
        &w.http,
        w.running.http_addr,
        "POST",
        &format!(
            "/api/v1/accounts/default/endpoints/{endpoint}/deliveries/{}/redeliver",
            taken[5].0
        ),
        KEY,
        None,
    )
    .await;
    assert_eq!(status, 202);
    let again = taken[5].0.to_owned();
    flaky
        .until("the redelivery", |got| {
            got.iter().filter(|g| g.id == again).count() == 2
        })
        .await;
    // Another account's key or a supervisor of another account sees none of it.
    let (status, _) = common::api(
        &w.http,
        w.running.http_addr,
        "GET",
        &format!("/api/v1/accounts/default/endpoints/{endpoint}/deliveries"),
        "not-a-key",
        None,
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_are_checked_and_need_the_secrets_key() {
    let w = world(false, true).await;
    for (url, field) in [
        ("ftp://hooks.example.com/x", "url"),
        ("http://127.0.0.1:8080/x", "url"),
        ("http://10.1.2.3/x", "url"),
        ("http://169.254.169.254/latest", "url"),
        ("http://[::1]/x", "url"),
        ("http://localhost/x", "url"),
        ("https://user:pw@hooks.example.com/x", "url"),
    ] {
        let (status, v) = common::api(
            &w.http,
            w.running.http_addr,
            "POST",
            "/api/v1/accounts/default/endpoints",
            KEY,
            Some(json!({ "url": url })),
        )
        .await;
        assert_eq!(
            (status, v["field"].as_str()),
            (422, Some(field)),
            "{url}: {v}"
        );
    }
    let (status, v) = common::api(
        &w.http,
        w.running.http_addr,
        "POST",
        "/api/v1/accounts/default/endpoints",
        KEY,
        Some(json!({ "url": "https://hooks.example.com/x", "types": ["call.exploded"] })),
    )
    .await;
    assert_eq!(
        (status, v["field"].as_str()),
        (422, Some("types[0]")),
        "{v}"
    );
    let made = w
        .endpoint("https://hooks.example.com/x", json!(["call.ended"]))
        .await;
    // The audit log says it was made, never its secret.
    let audit = w.ok("GET", "/api/v1/accounts/default/audit", None).await;
    let text = audit.to_string();
    assert!(text.contains("endpoint.create"), "{text}");
    assert!(!text.contains(&made.1), "the secret in the audit log");
    // A new secret: answered once, another one.
    let rotated = w
        .ok(
            "POST",
            &format!("/api/v1/accounts/default/endpoints/{}/secret", made.0),
            None,
        )
        .await;
    assert_ne!(rotated["secret"], made.1.as_str());
    // Removed: gone, with its log.
    w.ok(
        "DELETE",
        &format!("/api/v1/accounts/default/endpoints/{}", made.0),
        None,
    )
    .await;
    let (status, _) = common::api(
        &w.http,
        w.running.http_addr,
        "GET",
        &format!("/api/v1/accounts/default/endpoints/{}", made.0),
        KEY,
        None,
    )
    .await;
    assert_eq!(status, 404);

    // Without SWITCHBOARD_SECRETS_KEY no secret can be kept, so no endpoint can be made.
    let w = world(true, false).await;
    let (status, v) = common::api(
        &w.http,
        w.running.http_addr,
        "POST",
        "/api/v1/accounts/default/endpoints",
        KEY,
        Some(json!({ "url": "https://hooks.example.com/x" })),
    )
    .await;
    assert_eq!(status, 422, "{v}");
    assert!(v.to_string().contains("SWITCHBOARD_SECRETS_KEY"), "{v}");
}

/// The running binary, its JSON log lines as they come.
struct Binary {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<Value>,
}

impl Binary {
    fn start(db: &std::path::Path) -> Binary {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SWITCHBOARD_HTTP_ADDR", "127.0.0.1:0")
            .env("SWITCHBOARD_METRICS_ADDR", "127.0.0.1:0")
            .env("SWITCHBOARD_MEDIA_ADDR", "127.0.0.1")
            .env("SWITCHBOARD_MEDIA_PORTS", "ephemeral:4")
            .env("SWITCHBOARD_DB", db)
            .env("SWITCHBOARD_OPERATOR_KEY", KEY)
            .env("SWITCHBOARD_SECRETS_KEY", SECRETS_KEY)
            .env("SWITCHBOARD_EVENTS_RETRY_FIRST", "0.2")
            .env("SWITCHBOARD_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("the binary runs");
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in out.lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        Binary { child, lines }
    }

    /// Its HTTP address, from the start-up line.
    fn http_addr(&self) -> SocketAddr {
        loop {
            let v = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .expect("switchboard starts");
            if v["fields"]["message"] == "switchboard started" {
                return v["fields"]["http"].as_str().unwrap().parse().unwrap();
            }
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_pending_when_switchboard_is_killed_are_delivered_after_it_starts_again() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("calls.db");
    let http = reqwest::Client::new();
    let flaky = common::EventsReceiver::default();
    flaky.set_down(true);
    let receiver = flaky.clone().serve().await;

    let first = Binary::start(&db);
    let addr = first.http_addr();
    let (status, made) = common::api(
        &http,
        addr,
        "POST",
        "/api/v1/accounts/default/endpoints",
        KEY,
        Some(json!({"url": format!("http://{receiver}/events")})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let endpoint = made["id"].as_str().unwrap().to_owned();
    flaky.set_secret(made["secret"].as_str().unwrap());
    // A call in the sandbox that nobody can take: offered, then declined at once.
    let placed = http
        .post(format!("http://{addr}/sandbox/calls"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(placed.status().is_success(), "{}", placed.status());
    flaky
        .until("a refused attempt", |got| got.iter().any(|g| !g.taken))
        .await;
    let pending = |log: &[Value]| log.iter().filter(|d| d["status"] == "pending").count();
    let log = common::eventually("both events in the log", LIMIT, || {
        let http = http.clone();
        let endpoint = endpoint.clone();
        async move {
            let (_, v) = common::api(
                &http,
                addr,
                "GET",
                &format!("/api/v1/accounts/default/endpoints/{endpoint}/deliveries"),
                KEY,
                None,
            )
            .await;
            let log = v["deliveries"].as_array()?.clone();
            (log.len() >= 2).then_some(log)
        }
    })
    .await;
    assert_eq!(pending(&log), log.len(), "{log:#?}");
    let ids: Vec<String> = log
        .iter()
        .rev()
        .map(|d| d["msg_id"].as_str().unwrap().to_owned())
        .collect();
    // Killed (no drain, no goodbye) with the events pending; the receiver comes back.
    drop(first);
    flaky.set_down(false);
    let second = Binary::start(&db);
    let _addr = second.http_addr();
    flaky
        .until("every pending event delivered", |got| {
            ids.iter()
                .all(|i| got.iter().any(|g| g.taken && g.id == *i))
        })
        .await;
    let got = flaky.got.lock().unwrap().clone();
    let taken: Vec<&str> = got
        .iter()
        .filter(|g| g.taken)
        .map(|g| g.id.as_str())
        .collect();
    let order: Vec<&str> = ids
        .iter()
        .map(|i| i.as_str())
        .filter(|i| taken.contains(i))
        .collect();
    let mut by_taken = order.clone();
    by_taken.sort_by_key(|i| taken.iter().position(|t| t == i));
    assert_eq!(by_taken, order, "in the order they happened");
    let kinds: HashMap<&str, &str> = got
        .iter()
        .map(|g| (g.id.as_str(), g.event["type"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(kinds[ids[0].as_str()], "call.offered");
    assert!(got.iter().all(|g| g.signed), "every attempt signed right");
}
