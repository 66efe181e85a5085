//! Host-issued sign-in (issue 24): the host's backend, with one of the account's API keys,
//! gets a session for one of the account's people without any password; the session opens
//! `/ws` and calls the API as that person, is refreshed, and ends when its holder or the host
//! ends it, when it expires, or when the person is disabled. Another account's key or person
//! gets nothing.

mod common;

use std::time::Duration;

use serde_json::{json, Value};
use switchboard::app::{self, Running};
use switchboard::config::{Role, Secret, Settings};
use switchboard::signaling::protocol::ServerMsg;
use switchboard::sim::agent::SimAgent;

const KEY: &str = "0123456789abcdef0123456789abcdef-operator";
/// 32 bytes in base64.
const SECRETS_KEY: &str = "c3dpdGNoYm9hcmQtdGVzdC1zZWNyZXRzLWtleS0zMmI=";
const LIMIT: Duration = Duration::from_secs(10);

struct World {
    running: Running,
    http: reqwest::Client,
    /// acme's admin key, acme's supervisor key, the default account's admin key.
    acme: String,
    acme_sup: String,
    default: String,
}

impl World {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        common::api(
            &self.http,
            self.running.http_addr,
            method,
            path,
            token,
            body,
        )
        .await
    }

    /// A session for `person` from `key`: its token.
    async fn issue(&self, key: &str, body: Value) -> String {
        let (status, s) = self.call("POST", "/api/v1/sessions", key, Some(body)).await;
        assert_eq!(status, 201, "{s}");
        s["token"].as_str().unwrap().to_owned()
    }

    async fn me(&self, token: &str) -> u16 {
        self.call("GET", "/api/me", token, None).await.0
    }
}

/// The default account (from the file: `alice`), and `acme` through the API (`ann` agent,
/// `ada` admin), and an admin and a supervisor key of acme's, an admin key of the default's.
async fn world() -> World {
    let (_fake, _events, mut config) = common::live_config(Settings {
        media_addr: Some("127.0.0.1".into()),
        media_ports: Some("ephemeral:4".into()),
        operator_key: Some(Secret::new(KEY)),
        secrets_key: Some(Secret::new(SECRETS_KEY)),
        ..Settings::default()
    })
    .await;
    config.auth.people = vec![common::person("alice", Role::Agent, &["support"])];
    let running = app::start(config).await.unwrap();
    let mut w = World {
        running,
        http: reqwest::Client::new(),
        acme: String::new(),
        acme_sup: String::new(),
        default: String::new(),
    };
    let (status, v) = w
        .call(
            "POST",
            "/api/v1/accounts",
            KEY,
            Some(json!({"slug": "acme", "name": "Acme", "queues": [{"id": "support", "policy": "queue"}],
                        "default_queue": "support"})),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    for (id, role) in [("ann", "agent"), ("ada", "admin")] {
        let (status, v) = w
            .call(
                "POST",
                "/api/v1/accounts/acme/people",
                KEY,
                Some(
                    json!({"id": id, "name": id, "role": role, "queues": ["support"],
                            "password": common::PASSWORD}),
                ),
            )
            .await;
        assert_eq!(status, 201, "{v}");
    }
    let key = |slug: &'static str, role: &'static str| {
        let w = &w;
        async move {
            let (status, v) = w
                .call(
                    "POST",
                    &format!("/api/v1/accounts/{slug}/keys"),
                    KEY,
                    Some(json!({"name": "backend", "role": role})),
                )
                .await;
            assert_eq!(status, 201, "{v}");
            v["key"].as_str().unwrap().to_owned()
        }
    };
    let (acme, acme_sup, default) = (
        key("acme", "admin").await,
        key("acme", "supervisor").await,
        key("default", "admin").await,
    );
    w.acme = acme;
    w.acme_sup = acme_sup;
    w.default = default;
    w
}

#[tokio::test]
async fn a_host_issued_session_signs_the_person_in_with_no_password() {
    let w = world().await;
    let (status, s) = w
        .call(
            "POST",
            "/api/v1/sessions",
            &w.acme,
            Some(json!({"person": "ann"})),
        )
        .await;
    assert_eq!(status, 201, "{s}");
    assert_eq!(s["person"]["id"], "ann@acme");
    assert_eq!(s["expires_in_secs"], 3600);
    let token = s["token"].as_str().unwrap();
    // The API and /ws, as ann.
    let (_, me) = w.call("GET", "/api/me", token, None).await;
    assert_eq!(me["id"], "ann@acme");
    let agent = SimAgent::open(w.running.http_addr, "ann@acme", token)
        .await
        .unwrap();
    assert!(matches!(&agent.seen[0], ServerMsg::Welcome { id, .. } if id == "ann@acme"));
    // Shorter when asked; never under a minute.
    let (_, short) = w
        .call(
            "POST",
            "/api/v1/sessions",
            &w.acme,
            Some(json!({"person": "ann", "ttl_secs": 120})),
        )
        .await;
    assert_eq!(short["expires_in_secs"], 120);
    let (status, v) = w
        .call(
            "POST",
            "/api/v1/sessions",
            &w.acme,
            Some(json!({"person": "ann", "ttl_secs": 5})),
        )
        .await;
    assert_eq!((status, v["field"].as_str()), (422, Some("ttl_secs")));
    // The operator names the account.
    let (status, v) = w
        .call(
            "POST",
            "/api/v1/sessions",
            KEY,
            Some(json!({"person": "ann"})),
        )
        .await;
    assert_eq!((status, v["field"].as_str()), (422, Some("account")));
    w.issue(KEY, json!({"person": "ann", "account": "acme"}))
        .await;
    // Refreshed: a new token; the old one ends.
    let (status, fresh) = w
        .call("POST", "/api/v1/sessions/refresh", token, None)
        .await;
    assert_eq!(status, 201, "{fresh}");
    let fresh = fresh["token"].as_str().unwrap().to_owned();
    assert_eq!(w.me(token).await, 401);
    assert_eq!(w.me(&fresh).await, 200);
    // Ended by its holder.
    let (status, _) = w
        .call("DELETE", "/api/v1/sessions/current", &fresh, None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(w.me(&fresh).await, 401);
    assert_eq!(
        w.call("POST", "/api/v1/sessions/refresh", &fresh, None)
            .await
            .0,
        401
    );
    // Expired: the short one is refused two minutes on.
    let short = short["token"].as_str().unwrap().to_owned();
    assert_eq!(w.me(&short).await, 200);
    w.running.auth.advance_clock(Duration::from_secs(121));
    assert_eq!(w.me(&short).await, 401);
}

#[tokio::test]
async fn the_host_ends_sessions_and_a_disabled_person_has_none() {
    let w = world().await;
    // Ended by the host: the open socket is told at once, the token is refused.
    let token = w.issue(&w.acme, json!({"person": "ann"})).await;
    let mut agent = SimAgent::open(w.running.http_addr, "ann@acme", &token)
        .await
        .unwrap();
    let (status, _) = w
        .call(
            "DELETE",
            "/api/v1/accounts/acme/people/ann/sessions",
            &w.acme,
            None,
        )
        .await;
    assert_eq!(status, 204);
    agent
        .expect(
            LIMIT,
            "signed_out",
            |m| matches!(m, ServerMsg::Error { code, .. } if code == "signed_out"),
        )
        .await
        .unwrap();
    assert_eq!(w.me(&token).await, 401);
    // A person disabled after their session was issued: refused, and none issued since.
    let token = w.issue(&w.acme, json!({"person": "ann"})).await;
    let (status, _) = w
        .call(
            "PATCH",
            "/api/v1/accounts/acme/people/ann",
            &w.acme,
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(w.me(&token).await, 401);
    let (status, v) = w
        .call(
            "POST",
            "/api/v1/sessions",
            &w.acme,
            Some(json!({"person": "ann"})),
        )
        .await;
    assert_eq!((status, v["field"].as_str()), (422, Some("person")));
}

#[tokio::test]
async fn another_accounts_key_or_person_gets_nothing() {
    let w = world().await;
    let post = |key: &str, body: Value| {
        let key = key.to_owned();
        let w = &w;
        async move { w.call("POST", "/api/v1/sessions", &key, Some(body)).await }
    };
    // The default account's key: acme's person is none of its own, and acme is not its.
    let (status, v) = post(&w.default, json!({"person": "ann"})).await;
    assert_eq!((status, v["field"].as_str()), (422, Some("person")));
    assert_eq!(
        post(&w.default, json!({"person": "ann", "account": "acme"}))
            .await
            .0,
        404
    );
    assert_eq!(post(&w.default, json!({"person": "ann@acme"})).await.0, 422);
    // acme's key, for the default account's alice.
    assert_eq!(post(&w.acme, json!({"person": "alice"})).await.0, 422);
    // A supervisor's key: agents yes, an admin no.
    assert_eq!(post(&w.acme_sup, json!({"person": "ann"})).await.0, 201);
    assert_eq!(post(&w.acme_sup, json!({"person": "ada"})).await.0, 403);
    // No key, a made-up key, a session token in place of a key.
    assert_eq!(post("", json!({"person": "ann"})).await.0, 401);
    assert_eq!(
        post("sbk_000000000000_00", json!({"person": "ann"}))
            .await
            .0,
        401
    );
    let session = w.issue(&w.acme, json!({"person": "ann"})).await;
    assert_eq!(post(&session, json!({"person": "ann"})).await.0, 401);
    // The host ends sessions of its own account's people only.
    assert_eq!(
        w.call(
            "DELETE",
            "/api/v1/accounts/acme/people/ann/sessions",
            &w.default,
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(w.me(&session).await, 200);
}

/// Just-in-time provisioning: a person the account does not have yet is added on their first
/// session (audited, with no password anyone knows), within what the key's role may add;
/// existing people are left as they are.
#[tokio::test]
async fn a_person_is_added_on_their_first_session_when_asked() {
    let w = world().await;
    let create = json!({"name": "Bo", "role": "agent", "queues": ["support"]});
    let (status, s) = w
        .call(
            "POST",
            "/api/v1/sessions",
            &w.acme,
            Some(json!({"person": "bo", "create": create})),
        )
        .await;
    assert_eq!(status, 201, "{s}");
    assert_eq!(s["person"]["id"], "bo@acme");
    assert_eq!(s["person"]["queues"], json!(["support@acme"]));
    let token = s["token"].as_str().unwrap().to_owned();
    assert_eq!(w.me(&token).await, 200);
    // No password signs bo in: the host does.
    assert!(
        switchboard::sim::agent::sign_in(w.running.http_addr, "bo@acme", common::PASSWORD)
            .await
            .is_err()
    );
    // Asked again: bo exists and is left as they are (no second audit entry).
    let again = json!({"person": "bo", "create": {"name": "Other", "role": "agent"}});
    w.issue(&w.acme, again).await;
    let (_, bo) = w
        .call("GET", "/api/v1/accounts/acme/people/bo", &w.acme, None)
        .await;
    assert_eq!(bo["name"], "Bo");
    let (_, log) = w
        .call("GET", "/api/v1/accounts/acme/audit", &w.acme, None)
        .await;
    let added: Vec<&Value> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target"] == "bo")
        .collect();
    assert_eq!(added.len(), 1);
    assert_eq!(added[0]["actor"], "key:backend");
    // A supervisor's key adds no admin; a queue the account lacks is named.
    let (status, _) = w
        .call(
            "POST",
            "/api/v1/sessions",
            &w.acme_sup,
            Some(json!({"person": "boss", "create": {"name": "Boss", "role": "admin"}})),
        )
        .await;
    assert_eq!(status, 403);
    let (status, v) = w
        .call(
            "POST",
            "/api/v1/sessions",
            &w.acme,
            Some(
                json!({"person": "cy", "create": {"name": "Cy", "role": "agent",
                                                   "queues": ["billing"]}}),
            ),
        )
        .await;
    assert_eq!(
        (status, v["field"].as_str()),
        (422, Some("create.queues[0]"))
    );
}
