//! Call permissions (issue 25, reference §4.6) through the Graph client against the fake Graph
//! API: a user's permission and Meta's limits read as Meta reports them (never hard-coded), no
//! permission for a user who gave none, and Meta's limit of 5 `call_permissions` requests a
//! second per number held under 50 checks at once — every check answered, none refused with 613.
//!
//! Asking for permission, end to end: the request goes out through `GraphClient` in Meta's
//! shape (interactive or template), the simulated user's answer comes back as Meta's signed
//! `messages` webhook to switchboard's own webhook edge and out of it as
//! `WaEvent::PermissionReply`; a granted request makes `call_permissions` say so; Meta's
//! refusals (138009 over the limit, 138017 a permanent permission already there) come back
//! with their codes and are not retried. `callback_permission_status` is set; the permission
//! rows go through the store and back.

use std::time::Duration;

use switchboard::config::Secret;
use switchboard::store::{PermissionRow, PermissionState, StoreHandle};
use switchboard::whatsapp::graph::{
    GraphClient, GraphError, PermissionTemplate, PERMISSION_CHECKS_PER_SEC,
};
use switchboard::whatsapp::model::{CallPermissions, PermissionResponse, PermissionStatus};
use switchboard::whatsapp::simulator::{FakeGraph, Reply, Simulator, SimulatorConfig};
use switchboard::whatsapp::webhook::{router, WaEvent, WebhookOptions, WebhookState};
use tokio::sync::mpsc;

const TOKEN: &str = "permissions-token";
const PHONE: &str = "100000000000088";

async fn graph() -> (FakeGraph, GraphClient, String) {
    let fake = FakeGraph::new(TOKEN, PHONE);
    let (addr, server) = fake
        .clone()
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    std::mem::forget(server);
    let url = format!("http://{addr}");
    let client = GraphClient::new(&url, "v23.0", PHONE, Secret::new(TOKEN)).unwrap();
    (fake, client, url)
}

/// Meta's documented answer for a user with a temporary permission (reference §4.6).
fn temporary() -> CallPermissions {
    serde_json::from_value(serde_json::json!({
        "messaging_product": "whatsapp",
        "permission": {"status": "temporary", "expiration_time": 1745343479},
        "actions": [
            {"action_name": "send_call_permission_request", "can_perform_action": true,
             "limits": [{"time_period": "PT24H", "max_allowed": 1, "current_usage": 0},
                        {"time_period": "P7D", "max_allowed": 2, "current_usage": 1}]},
            {"action_name": "start_call", "can_perform_action": false,
             "limits": [{"time_period": "PT24H", "max_allowed": 100, "current_usage": 100,
                         "limit_expiration_time": 1745622600}]}
        ]
    }))
    .unwrap()
}

#[tokio::test]
async fn a_users_permission_and_metas_limits_are_read_as_meta_reports_them() {
    let (fake, client, url) = graph().await;
    fake.set_permission("15551234567", temporary());
    let p = client.call_permissions("15551234567").await.unwrap();
    assert_eq!(p, temporary());
    assert_eq!(p.permission.status, PermissionStatus::Temporary);
    assert_eq!(p.permission.expiration_time.map(|t| t.0), Some(1745343479));
    // Meta's own limit, not ours: 100 here where its other page says 5.
    let start = p.action("start_call").unwrap();
    assert!(!start.can_perform_action);
    let limit = start.limits[0].valid().unwrap();
    assert_eq!((limit.max_allowed, limit.current_usage), (100, 100));
    assert_eq!(limit.limit_expiration_time.map(|t| t.0), Some(1745622600));
    // A user who gave nothing: no permission, and what may be asked of them.
    let none = client.call_permissions("15550000000").await.unwrap();
    assert_eq!(none.permission.status, PermissionStatus::NoPermission);
    assert!(
        none.action("send_call_permission_request")
            .unwrap()
            .can_perform_action
    );
    // Another token: Meta's 190, named, the token nowhere in it.
    let wrong = GraphClient::new(&url, "v23.0", PHONE, Secret::new("not-the-token")).unwrap();
    let e = wrong.call_permissions("15551234567").await.unwrap_err();
    assert!(matches!(e, GraphError::Api { code: 190, .. }), "{e}");
    assert!(!e.to_string().contains("not-the-token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_checks_at_once_go_out_at_metas_rate_and_none_is_refused() {
    let (fake, client, _) = graph().await;
    let started = tokio::time::Instant::now();
    let checks: Vec<_> = (0..50)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.call_permissions(&format!("1555000{i:04}")).await })
        })
        .collect();
    for c in checks {
        let p = c.await.unwrap().expect("every check is answered");
        assert_eq!(p.permission.status, PermissionStatus::NoPermission);
    }
    // The fake refuses (613) a sixth request within any second of one number's: it refused
    // none, so none went out faster.
    assert_eq!(fake.permission_throttled(), 0);
    // 50 at 5 a second take at least 9 windows.
    assert!(
        started.elapsed() >= Duration::from_secs((50 / PERMISSION_CHECKS_PER_SEC as u64) - 1),
        "{:?}",
        started.elapsed()
    );
}

const APP_SECRET: &str = "permissions-app-secret";
const WAIT: Duration = Duration::from_secs(10);

/// The fake Graph API with its simulated users, switchboard's webhook edge they answer to (its
/// events out on the returned channel), and a Graph client.
async fn loopback() -> (FakeGraph, GraphClient, mpsc::Receiver<WaEvent>, Simulator) {
    let (fake, client, _) = graph().await;
    let (events_tx, events) = mpsc::channel(16);
    let (state, processor) = WebhookState::spawn(
        Secret::new(APP_SECRET),
        Secret::new("verify"),
        events_tx,
        WebhookOptions::default(),
    );
    std::mem::forget(processor);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    let cfg = SimulatorConfig {
        webhook_url: format!("http://{addr}/webhooks/whatsapp"),
        app_secret: Secret::new(APP_SECRET),
        phone_number_id: PHONE.into(),
        ..SimulatorConfig::default()
    };
    let sim = Simulator::start(cfg, fake.clone(), fake.take_events().unwrap());
    (fake, client, events, sim)
}

async fn next_reply(events: &mut mpsc::Receiver<WaEvent>) -> WaEvent {
    let e = tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("a permission reply in time")
        .expect("the edge is up");
    assert!(matches!(e, WaEvent::PermissionReply { .. }), "{e:?}");
    e
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn a_granted_request_comes_back_as_a_reply_and_lets_the_business_call() {
    let (fake, client, mut events, _sim) = loopback().await;
    let user = "15551234567";
    let week = Duration::from_secs(7 * 24 * 3600);
    fake.on_permission_request(
        user,
        Reply::Accept {
            permanent: false,
            valid_for: week,
        },
    );
    let before = unix_now();
    let wamid = client
        .request_call_permission(user, "May we call you about your order?", None)
        .await
        .unwrap();
    assert!(wamid.starts_with("wamid."), "{wamid}");
    // The request as Meta documents it.
    let sent = fake.requests().pop().unwrap();
    assert_eq!(sent.phone_number_id, PHONE);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&sent.body).unwrap(),
        serde_json::json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": user,
            "type": "interactive",
            "interactive": {
                "type": "call_permission_request",
                "action": {"name": "call_permission_request"},
                "body": {"text": "May we call you about your order?"}
            }
        })
    );
    let WaEvent::PermissionReply {
        phone_number_id,
        user: from,
        response,
        permanent,
        expires_at,
        source,
        context_id,
        timestamp,
        message_id,
    } = next_reply(&mut events).await
    else {
        unreachable!("checked by next_reply")
    };
    assert_eq!(phone_number_id.as_deref(), Some(PHONE));
    assert_eq!(from, user);
    assert_eq!(response, PermissionResponse::Accept);
    assert!(!permanent);
    assert_eq!(source.as_deref(), Some("user_action"));
    assert_eq!(context_id.as_deref(), Some(wamid.as_str()));
    assert!(message_id.starts_with("wamid.") && message_id != wamid);
    let answered = timestamp.unwrap().0;
    assert!(answered >= before && answered <= unix_now());
    let expires = expires_at.unwrap().0;
    assert_eq!(expires, answered + week.as_secs());
    // The business may call now, until the same expiry.
    let p = client.call_permissions(user).await.unwrap();
    assert_eq!(p.permission.status, PermissionStatus::Temporary);
    assert_eq!(p.permission.expiration_time.map(|t| t.0), Some(expires));
    assert!(p.action("start_call").unwrap().can_perform_action);

    // A second request the same day: Meta's 138009, sent once (not retried).
    let sent_before = fake.requests().len();
    let e = client
        .request_call_permission(user, "Again?", None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(138009), "{e}");
    assert_eq!(e.status(), Some(400));
    assert!(!e.is_retryable());
    assert_eq!(fake.requests().len(), sent_before + 1);
}

#[tokio::test]
async fn rejections_templates_permanent_permissions_and_silence() {
    let (fake, client, mut events, _sim) = loopback().await;
    let (silent, refuser, loyal) = ("15550000001", "15550000002", "15550000003");
    fake.on_permission_request(refuser, Reply::Reject);
    fake.on_permission_request(
        loyal,
        Reply::Accept {
            permanent: true,
            valid_for: Duration::ZERO,
        },
    );
    // A user who never answers sends nothing: the next reply is the next user's.
    client
        .request_call_permission(silent, "May we call?", None)
        .await
        .unwrap();
    let template = PermissionTemplate {
        name: "call_permission_request_v1".into(),
        language: "en_US".into(),
    };
    let wamid = client
        .request_call_permission(refuser, "unused with a template", Some(&template))
        .await
        .unwrap();
    let sent = fake.requests().pop().unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&sent.body).unwrap(),
        serde_json::json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": refuser,
            "type": "template",
            "template": {"name": "call_permission_request_v1", "language": {"code": "en_US"}}
        })
    );
    match next_reply(&mut events).await {
        WaEvent::PermissionReply {
            user,
            response,
            permanent,
            expires_at,
            context_id,
            ..
        } => {
            assert_eq!(user, refuser);
            assert_eq!(response, PermissionResponse::Reject);
            assert!(!permanent);
            assert_eq!(expires_at, None);
            assert_eq!(context_id, Some(wamid));
        }
        other => unreachable!("{other:?}"),
    }
    assert_eq!(
        client
            .call_permissions(refuser)
            .await
            .unwrap()
            .permission
            .status,
        PermissionStatus::NoPermission
    );

    client
        .request_call_permission(loyal, "May we call?", None)
        .await
        .unwrap();
    match next_reply(&mut events).await {
        WaEvent::PermissionReply {
            user,
            response,
            permanent,
            expires_at,
            ..
        } => {
            assert_eq!(user, loyal);
            assert_eq!(response, PermissionResponse::Accept);
            assert!(permanent);
            assert_eq!(expires_at, None);
        }
        other => unreachable!("{other:?}"),
    }
    let p = client.call_permissions(loyal).await.unwrap();
    assert_eq!(p.permission.status, PermissionStatus::Permanent);
    // Asking a user who granted a permanent permission: Meta's 138017, not retried.
    let sent_before = fake.requests().len();
    let e = client
        .request_call_permission(loyal, "Again?", None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(138017), "{e}");
    assert_eq!(fake.requests().len(), sent_before + 1);
    // A refusal Graph injects is surfaced with its code too.
    fake.fail_next(1, 400, 131047);
    let e = client
        .request_call_permission("15550000004", "May we call?", None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(131047), "{e}");
}

#[tokio::test]
async fn callback_permission_status_is_set_both_ways() {
    let (fake, client, _) = graph().await;
    assert_eq!(fake.callback_permission(), None);
    client.set_callback_permission(true).await.unwrap();
    assert_eq!(fake.callback_permission(), Some(true));
    let sent = fake.requests().pop().unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&sent.body).unwrap(),
        serde_json::json!({"calling": {"callback_permission_status": "ENABLED"}})
    );
    client.set_callback_permission(false).await.unwrap();
    assert_eq!(fake.callback_permission(), Some(false));
    // Another token: refused with Meta's 190.
    let (_, _, url) = graph().await;
    let wrong = GraphClient::new(&url, "v23.0", PHONE, Secret::new("nope")).unwrap();
    let e = wrong.set_callback_permission(true).await.unwrap_err();
    assert_eq!(e.code(), Some(190));
}

#[tokio::test]
async fn permission_rows_go_through_the_store_handle_and_back() {
    let (store, driver) = StoreHandle::open_in_memory().await.unwrap();
    let row = |status, expires_at, at| PermissionRow {
        business_number: PHONE.into(),
        user_number: "15551234567".into(),
        status,
        permanent: false,
        expires_at,
        source: None,
        requested_by: Some("agent-7".into()),
        updated_at: at,
    };
    assert_eq!(
        store
            .permission(PHONE.into(), "15551234567".into())
            .await
            .unwrap(),
        None
    );
    store
        .put_permission(row(PermissionState::Requested, None, 1))
        .await
        .unwrap();
    // Without waiting, as the call actor writes; the read queued after it sees it.
    let granted = row(PermissionState::Granted, Some(10_000), 2);
    store.try_put_permission(granted.clone()).unwrap();
    let read = store
        .permission(PHONE.into(), "15551234567".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read, granted);
    drop(store);
    driver.join().await.unwrap();
}
