//! Pages of the customer's own product (issue 24): an origin an account allows may call the API
//! and open `/ws` with a session of one of that account's people (a host-issued token, the
//! WebSocket's carried as a subprotocol); any other origin, another account's session, a
//! cookie or an API key from such a page are refused. switchboard's own pages are unchanged.

mod common;

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use switchboard::app::{self, Running};
use switchboard::config::{Role, Secret, Settings};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const KEY: &str = "0123456789abcdef0123456789abcdef-operator";
const HOST: &str = "http://inbox.example.com";
const EVIL: &str = "http://evil.example.com";

struct World {
    running: Running,
    http: reqwest::Client,
    /// A host-issued session of acme's ann; alice's (the default account's) from /api/login.
    ann: String,
    alice: String,
    key: String,
}

async fn send(
    w: &World,
    method: &str,
    path: &str,
    token: Option<&str>,
    origin: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = w
        .http
        .request(method, format!("http://{}{path}", w.running.http_addr));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap()
}

async fn world() -> World {
    let (_fake, _events, mut config) = common::live_config(Settings {
        media_addr: Some("127.0.0.1".into()),
        media_ports: Some("ephemeral:4".into()),
        operator_key: Some(Secret::new(KEY)),
        ..Settings::default()
    })
    .await;
    config.auth.people = vec![common::person("alice", Role::Agent, &["support"])];
    let running = app::start(config).await.unwrap();
    let mut w = World {
        running,
        http: reqwest::Client::new(),
        ann: String::new(),
        alice: String::new(),
        key: String::new(),
    };
    let ok = |r: reqwest::Response| async move {
        assert!(r.status().is_success(), "{}", r.status());
        r.json::<Value>().await.unwrap_or(Value::Null)
    };
    ok(send(
        &w,
        "POST",
        "/api/v1/accounts",
        Some(KEY),
        None,
        Some(json!({"slug": "acme", "name": "Acme",
                    "queues": [{"id": "support", "policy": "queue"}], "default_queue": "support"})),
    )
    .await)
    .await;
    ok(send(
        &w,
        "PATCH",
        "/api/v1/accounts/acme/settings",
        Some(KEY),
        None,
        Some(json!({"allowed_origins": [HOST]})),
    )
    .await)
    .await;
    ok(send(
        &w,
        "POST",
        "/api/v1/accounts/acme/people",
        Some(KEY),
        None,
        Some(
            json!({"id": "ann", "name": "Ann", "role": "agent", "queues": ["support"],
                    "password": common::PASSWORD}),
        ),
    )
    .await)
    .await;
    let key = ok(send(
        &w,
        "POST",
        "/api/v1/accounts/acme/keys",
        Some(KEY),
        None,
        Some(json!({"name": "backend"})),
    )
    .await)
    .await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let ann = ok(send(
        &w,
        "POST",
        "/api/v1/sessions",
        Some(&key),
        None,
        Some(json!({"person": "ann"})),
    )
    .await)
    .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    w.alice = switchboard::sim::agent::sign_in(w.running.http_addr, "alice", common::PASSWORD)
        .await
        .unwrap();
    w.ann = ann;
    w.key = key;
    w
}

#[tokio::test]
async fn only_an_allowed_origin_calls_the_api_with_its_accounts_session() {
    let w = world().await;
    // A preflight: answered for an allowed origin, refused for any other.
    let preflight = |origin: &'static str| {
        w.http
            .request(
                reqwest::Method::OPTIONS,
                format!("http://{}/api/me", w.running.http_addr),
            )
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let r = preflight(HOST).await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["access-control-allow-origin"], HOST);
    assert!(r.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("authorization"));
    let r = preflight(EVIL).await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    // The allowed page with ann's host-issued session: answered, readable by that page.
    let r = send(&w, "GET", "/api/me", Some(&w.ann), Some(HOST), None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], HOST);
    assert_eq!(r.json::<Value>().await.unwrap()["id"], "ann@acme");
    // Any other origin; the default account's session from acme's origin; an API key or no
    // token from a page: refused.
    for (token, origin) in [
        (Some(w.ann.as_str()), EVIL),
        (Some(w.alice.as_str()), HOST),
        (Some(w.key.as_str()), HOST),
        (None, HOST),
    ] {
        let r = send(&w, "GET", "/api/me", token, Some(origin), None).await;
        assert_eq!(r.status(), 403, "{origin}");
        assert!(r.headers().get("access-control-allow-origin").is_none());
    }
    // switchboard's own pages, and servers (no Origin), as before.
    let own = format!("http://{}", w.running.http_addr);
    let r = send(&w, "GET", "/api/me", Some(&w.alice), Some(&own), None).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    assert_eq!(
        send(&w, "GET", "/api/me", Some(&w.ann), None, None)
            .await
            .status(),
        200
    );
    // An origin that is not one is refused as a setting.
    let r = send(
        &w,
        "PATCH",
        "/api/v1/accounts/acme/settings",
        Some(KEY),
        None,
        Some(json!({"allowed_origins": ["inbox.example.com"]})),
    )
    .await;
    assert_eq!(r.status(), 422);
    assert_eq!(
        r.json::<Value>().await.unwrap()["field"],
        "allowed_origins[0]"
    );
}

/// Opens `/ws` as a page of `origin` does: the token as a second subprotocol.
async fn open_ws(w: &World, token: &str, origin: &str) -> Result<Option<String>, u16> {
    let mut req = format!("ws://{}/ws", w.running.http_addr)
        .into_client_request()
        .unwrap();
    let h = req.headers_mut();
    h.insert("origin", origin.parse().unwrap());
    h.insert(
        "sec-websocket-protocol",
        format!("switchboard.v1, bearer.{token}").parse().unwrap(),
    );
    match tokio_tungstenite::connect_async(req).await {
        Ok((mut ws, resp)) => {
            assert_eq!(resp.headers()["sec-websocket-protocol"], "switchboard.v1");
            let first = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .unwrap();
            Ok(first.and_then(|m| m.ok()).map(|m| m.to_string()))
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn only_an_allowed_origin_opens_the_websocket_with_its_accounts_session() {
    let w = world().await;
    let welcome = open_ws(&w, &w.ann, HOST).await.unwrap().unwrap();
    let welcome: Value = serde_json::from_str(&welcome).unwrap();
    assert_eq!(
        (welcome["type"].as_str(), welcome["id"].as_str()),
        (Some("welcome"), Some("ann@acme"))
    );
    assert_eq!(open_ws(&w, &w.ann, EVIL).await, Err(403));
    assert_eq!(open_ws(&w, &w.alice, HOST).await, Err(403));
    assert_eq!(open_ws(&w, "not-a-token", HOST).await, Err(401));
}
