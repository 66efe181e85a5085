//! Call-backs scheduled from outside (issue 25) over real sockets: a CRM's API key, a
//! supervisor's session or the operator `POST /api/v1/callbacks`; the task reaches a free
//! agent of the queue (or the one person named) as a `task` event; it is listed, refused when
//! the customer has one already, withdrawn with `DELETE`, and kept over a restart. Records of
//! call-backs say so (`direction`, `dialled_by`, `task_id`).

mod common;

use std::time::Duration;

use common::{api, sign_in, LONG};
use serde_json::{json, Value};
use switchboard::app;
use switchboard::config::{Role, Secret, Settings};
use switchboard::signaling::protocol::ServerMsg;
use switchboard::sim::agent::SimAgent;

const KEY: &str = "operator-key-0123456789abcdef0123456789";

/// The next task offered to `a`: its id, customer, reason and note.
async fn next_task(a: &mut SimAgent) -> (String, String, String, Option<String>) {
    match a
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
            note,
            ..
        } => (task_id, to, reason, note),
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_call_backs_reach_an_agent_are_listed_withdrawn_and_kept_over_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (_fake, _events, mut config) = common::live_config(Settings {
        media_addr: Some("127.0.0.1".into()),
        media_ports: Some("ephemeral:8".into()),
        operator_key: Some(Secret::new(KEY)),
        db: Some(dir.path().join("calls.db")),
        ..Settings::default()
    })
    .await;
    let mut people = common::agents(2);
    people.push(common::person("sam", Role::Supervisor, &["support"]));
    config.auth.people = people;
    let running = app::start(config.clone()).await.unwrap();
    let addr = running.http_addr;
    let http = reqwest::Client::new();

    // Nobody who may not: no token, an agent's session.
    let body = json!({"account": "default", "to": "+1 555 765 4321", "queue": "support"});
    let (status, _) = api(
        &http,
        addr,
        "POST",
        "/api/v1/callbacks",
        "",
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, 401);
    let agent_token = switchboard::sim::agent::sign_in(addr, "agent2", common::PASSWORD)
        .await
        .unwrap();
    let (status, _) = api(
        &http,
        addr,
        "POST",
        "/api/v1/callbacks",
        &agent_token,
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, 403);
    // Fields refused, each named.
    for (bad, field) in [
        (
            json!({"account": "default", "to": "12ab", "queue": "support"}),
            "to",
        ),
        (
            json!({"account": "default", "to": "15557654321", "queue": "nope"}),
            "queue",
        ),
        (json!({"account": "default", "to": "15557654321"}), "queue"),
        (
            json!({"account": "default", "to": "15557654321", "person": "zed"}),
            "person",
        ),
        (
            json!({"account": "default", "to": "15557654321", "queue": "support", "colour": 1}),
            "colour",
        ),
        (json!({"to": "15557654321", "queue": "support"}), "account"),
    ] {
        let (status, answer) = api(
            &http,
            addr,
            "POST",
            "/api/v1/callbacks",
            KEY,
            Some(bad.clone()),
        )
        .await;
        assert_eq!(status, 422, "{bad}: {answer}");
        assert_eq!(answer["field"], field, "{bad}: {answer}");
    }

    // One agent on the floor: the operator's call-back is offered to them at once.
    let mut a1 = sign_in(&running, "agent1").await;
    let scheduled = json!({"account": "default", "to": "+1 (555) 765-4321", "queue": "support",
                           "name": "Ada", "note": "promised a call about order 1182"});
    let (status, made) = api(
        &http,
        addr,
        "POST",
        "/api/v1/callbacks",
        KEY,
        Some(scheduled.clone()),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let id = made["id"].as_str().unwrap().to_owned();
    assert_eq!(made["to"], "15557654321");
    assert_eq!(made["reason"], "scheduled");
    let (task, to, reason, note) = next_task(&mut a1).await;
    assert_eq!(
        (task.as_str(), to.as_str(), reason.as_str()),
        (id.as_str(), "15557654321", "scheduled")
    );
    assert_eq!(note.as_deref(), Some("promised a call about order 1182"));

    // The same customer again: refused, naming the open task.
    let (status, answer) = api(
        &http,
        addr,
        "POST",
        "/api/v1/callbacks",
        KEY,
        Some(scheduled.clone()),
    )
    .await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["field"], id.as_str());

    // A supervisor's session schedules another customer, for a later time, for agent1: it
    // waits for its time (listed meanwhile, not offered).
    let sam = switchboard::sim::agent::sign_in(addr, "sam", common::PASSWORD)
        .await
        .unwrap();
    let later = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 3_600_000;
    let (status, made) = api(
        &http,
        addr,
        "POST",
        "/api/v1/callbacks",
        &sam,
        Some(json!({"to": "447700900123", "person": "agent1", "due_at": later})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let later_id = made["id"].as_str().unwrap().to_owned();
    assert_eq!(made["queue"], "support", "the person's first queue");
    assert_eq!(made["person"], "agent1");
    let listed = |answer: &Value| -> Vec<String> {
        answer["callbacks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, answer) = api(&http, addr, "GET", "/api/v1/callbacks", &sam, None).await;
    assert_eq!(status, 200, "{answer}");
    let mut ids = listed(&answer);
    ids.sort();
    let mut want = vec![id.clone(), later_id.clone()];
    want.sort();
    assert_eq!(ids, want);

    // Withdrawn: the agent it was offered to hears it; it is gone from the list.
    let (status, _) = api(
        &http,
        addr,
        "DELETE",
        &format!("/api/v1/callbacks/{id}"),
        &sam,
        None,
    )
    .await;
    assert_eq!(status, 204);
    match a1
        .expect(LONG, "the task withdrawn", |m| {
            matches!(m, ServerMsg::TaskStopped { .. })
        })
        .await
        .unwrap()
    {
        ServerMsg::TaskStopped { task_id, reason } => {
            assert_eq!(
                (task_id.as_str(), reason.as_str()),
                (id.as_str(), "cancelled")
            )
        }
        _ => unreachable!(),
    }
    let (status, _) = api(
        &http,
        addr,
        "DELETE",
        &format!("/api/v1/callbacks/{id}"),
        &sam,
        None,
    )
    .await;
    assert_eq!(status, 404, "withdrawn once");

    // A third customer, offered to agent1; then the process stops before anyone calls.
    let (status, made) = api(
        &http,
        addr,
        "POST",
        "/api/v1/callbacks",
        KEY,
        Some(json!({"account": "default", "to": "15550001234", "queue": "support"})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let kept_id = made["id"].as_str().unwrap().to_owned();
    assert_eq!(next_task(&mut a1).await.0, kept_id);
    drop(a1);
    running.shutdown().await;

    // Started again on the same database: both open tasks are there, and the due one is
    // offered to the agent who signs in.
    let running = app::start(config).await.unwrap();
    let addr = running.http_addr;
    let (status, answer) = api(
        &http,
        addr,
        "GET",
        "/api/v1/callbacks?account=default",
        KEY,
        None,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let mut ids = listed(&answer);
    ids.sort();
    let mut want = vec![kept_id.clone(), later_id];
    want.sort();
    assert_eq!(ids, want);
    let mut a1 = sign_in(&running, "agent1").await;
    let (task, to, reason, _) = next_task(&mut a1).await;
    assert_eq!(
        (task.as_str(), to.as_str(), reason.as_str()),
        (kept_id.as_str(), "15550001234", "scheduled")
    );
    drop(a1);
    tokio::time::timeout(Duration::from_secs(30), running.shutdown())
        .await
        .unwrap();
}
