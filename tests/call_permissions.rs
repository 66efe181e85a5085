//! Call permissions (issue 25, reference §4.6) through the Graph client against the fake Graph
//! API: a user's permission and Meta's limits read as Meta reports them (never hard-coded), no
//! permission for a user who gave none, and Meta's limit of 5 `call_permissions` requests a
//! second per number held under 50 checks at once — every check answered, none refused with 613.

use std::time::Duration;

use switchboard::config::Secret;
use switchboard::whatsapp::graph::{GraphClient, GraphError, PERMISSION_CHECKS_PER_SEC};
use switchboard::whatsapp::model::{CallPermissions, PermissionStatus};
use switchboard::whatsapp::simulator::FakeGraph;

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
