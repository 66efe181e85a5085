//! The operator's accounts API (`/api/v1/accounts`, issue 23) over a real socket: the key,
//! creating, listing and reading accounts, and every refusal naming its field with nothing
//! changed.

mod common;

use serde_json::{json, Value};
use switchboard::app;
use switchboard::config::{Config, Secret, Settings};

const KEY: &str = "0123456789abcdef0123456789abcdef-operator";
/// 32 bytes in base64.
const SECRETS_KEY: &str = "c3dpdGNoYm9hcmQtdGVzdC1zZWNyZXRzLWtleS0zMmI=";

async fn start(key: Option<&str>) -> app::Running {
    start_with(key, Settings::default()).await
}

async fn start_with(key: Option<&str>, settings: Settings) -> app::Running {
    let config = Config::from_settings(common::loopback(Settings {
        operator_key: key.map(Secret::new),
        ..settings
    }))
    .unwrap();
    app::start(config).await.unwrap()
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn of(running: &app::Running) -> Api {
        Api {
            base: format!("http://{}/api/v1/accounts", running.http_addr),
            http: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str, key: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(&self.base)
            .bearer_auth(KEY)
            .json(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
}

fn acme() -> Value {
    json!({
        "slug": "acme",
        "name": "Acme Support",
        "waba_id": "300000000000003",
        "numbers": [
            {"phone_number_id": "300000000000011", "queue": "sales"},
            {"phone_number_id": "300000000000012"}
        ],
        "queues": [
            {"id": "support", "policy": "queue", "max_wait_secs": 90},
            {"id": "sales", "policy": "decline"}
        ],
        "default_queue": "support",
        "settings": {"ring_timeout_secs": 20, "wrap_up_secs": 5, "grace_secs": 30,
                     "answer_deadline_secs": 25}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_creates_lists_and_reads_accounts() {
    let running = start(Some(KEY)).await;
    let api = Api::of(&running);
    let (status, created) = api.post(&acme()).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["slug"], "acme");
    assert_eq!(created["queues"][0]["max_wait_secs"], 90.0);
    assert_eq!(created["settings"]["ring_timeout_secs"], 20.0);
    assert_eq!(created["people"], json!([]));

    let (status, list) = api.get("", Some(KEY)).await;
    assert_eq!(status, 200);
    let slugs: Vec<&str> = list["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["slug"].as_str().unwrap())
        .collect();
    // The default account the configuration seeded, and acme.
    assert_eq!(slugs, ["acme", "default"]);
    let (status, one) = api.get("/acme", Some(KEY)).await;
    assert_eq!(status, 200);
    assert_eq!(one, created);
    // The seeded account shows its people without their password hashes.
    let (_, default) = api.get("/default", Some(KEY)).await;
    assert!(!default.to_string().contains("argon2"), "{default}");
    assert_eq!(api.get("/nobody", Some(KEY)).await.0, 404);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_names_its_field_and_changes_nothing() {
    let running = start(Some(KEY)).await;
    let api = Api::of(&running);
    assert_eq!(api.post(&acme()).await.0, 201);
    let (_, before) = api.get("", Some(KEY)).await;

    let with = |path: &[&str], value: Value| {
        let mut body = acme();
        body["slug"] = json!("other");
        let mut at = &mut body;
        for (i, key) in path.iter().enumerate() {
            if i + 1 == path.len() {
                at[*key] = value.clone();
            } else if let Ok(n) = key.parse::<usize>() {
                at = &mut at[n];
            } else {
                at = &mut at[*key];
            }
        }
        body
    };
    let cases: Vec<(Value, u16, &str)> = vec![
        // Wrong types, unknown fields, over-long strings, bad values.
        (with(&["name"], json!(42)), 422, "name"),
        (with(&["colour"], json!("red")), 422, "colour"),
        (
            with(&["queues", "0", "colour"], json!("red")),
            422,
            "queues[0].colour",
        ),
        (
            with(&["queues", "0", "policy"], json!("voicemail")),
            422,
            "queues[0].policy",
        ),
        (with(&["name"], json!("x".repeat(129))), 422, "name"),
        (with(&["slug"], json!("Acme Inc")), 422, "slug"),
        (with(&["queues", "0", "id"], json!("")), 422, "queues[0].id"),
        (
            with(&["default_queue"], json!("billing")),
            422,
            "default_queue",
        ),
        (
            with(&["numbers", "0", "queue"], json!("billing")),
            422,
            "numbers[0].queue",
        ),
        (
            with(&["settings", "ring_timeout_secs"], json!(-1)),
            422,
            "settings.ring_timeout_secs",
        ),
        (
            with(&["settings", "answer_deadline_secs"], json!(0)),
            422,
            "settings.answer_deadline_secs",
        ),
        // Duplicate ids, taken slugs and numbers.
        (
            with(&["queues", "1", "id"], json!("support")),
            422,
            "queues[1].id",
        ),
        (with(&["slug"], json!("acme")), 409, "slug"),
        (
            with(
                &["numbers"],
                json!([{"phone_number_id": "400000000000001"}, {"phone_number_id": "300000000000012"}]),
            ),
            409,
            "numbers[1].phone_number_id",
        ),
        (
            with(
                &["numbers", "1", "phone_number_id"],
                json!("300000000000011"),
            ),
            422,
            "numbers[1].phone_number_id",
        ),
    ];
    for (body, status, field) in cases {
        let (got, answer) = api.post(&body).await;
        assert_eq!(
            (got, answer["field"].as_str()),
            (status, Some(field)),
            "{answer}"
        );
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    // Not JSON at all.
    let r = reqwest::Client::new()
        .post(&api.base)
        .bearer_auth(KEY)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    // Too large.
    let r = reqwest::Client::new()
        .post(&api.base)
        .bearer_auth(KEY)
        .body(vec![b' '; 70 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let (_, after) = api.get("", Some(KEY)).await;
    assert_eq!(after, before, "nothing changed");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_key_nothing_is_shown_and_without_a_key_configured_the_api_is_off() {
    let running = start(Some(KEY)).await;
    let api = Api::of(&running);
    assert_eq!(api.get("", None).await.0, 401);
    assert_eq!(
        api.get("", Some("0123456789abcdef0123456789abcdef-wrong"))
            .await
            .0,
        401
    );
    assert_eq!(api.get("/default", Some("x")).await.0, 401);
    running.shutdown().await;

    let off = start(None).await;
    let api = Api::of(&off);
    assert_eq!(api.get("", Some(KEY)).await.0, 404);
    assert_eq!(api.post(&acme()).await.0, 404);
    off.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_token_is_sealed_in_the_database_and_never_answered() {
    const TOKEN: &str = "EAAG-the-access-token-of-acme";
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("switchboard.db");
    let running = start_with(
        Some(KEY),
        Settings {
            db: Some(db.clone()),
            secrets_key: Some(Secret::new(SECRETS_KEY)),
            ..Settings::default()
        },
    )
    .await;
    let api = Api::of(&running);
    let mut body = acme();
    body["access_token"] = json!(TOKEN);
    let (status, created) = api.post(&body).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["has_access_token"], true);
    let (_, list) = api.get("", Some(KEY)).await;
    assert!(!list.to_string().contains("EAAG"), "{list}");
    assert_eq!(
        list["accounts"][1]["has_access_token"], false,
        "the default keeps the file's"
    );
    running.shutdown().await;
    // Not a byte of it in the database's files.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()));
    }

    // Without a key to seal it with, a token is refused, naming the field.
    let unsealed = start(Some(KEY)).await;
    let (status, answer) = Api::of(&unsealed).post(&body).await;
    assert_eq!(
        (status, answer["field"].as_str()),
        (422, Some("access_token"))
    );
    unsealed.shutdown().await;
}

#[test]
fn a_secrets_key_that_is_not_32_bytes_is_refused_at_start() {
    let e = Config::from_settings(common::loopback(Settings {
        secrets_key: Some(Secret::new("c2hvcnQ=")),
        ..Settings::default()
    }))
    .unwrap_err();
    assert!(e.to_string().contains("SWITCHBOARD_SECRETS_KEY"), "{e}");
    assert!(
        !e.to_string().contains("c2hvcnQ"),
        "the key is not echoed: {e}"
    );
}

#[test]
fn a_short_operator_key_is_refused_at_start() {
    let e = Config::from_settings(common::loopback(Settings {
        operator_key: Some(Secret::new("short")),
        ..Settings::default()
    }))
    .unwrap_err();
    assert!(e.to_string().contains("SWITCHBOARD_OPERATOR_KEY"), "{e}");
    assert!(
        !e.to_string().contains("short"),
        "the key is not echoed: {e}"
    );
}

/// `method path` with the operator's key and `body`: status and JSON answered.
async fn send(running: &app::Running, method: &str, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("http://{}{path}", running.http_addr),
        )
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// An account's people, queues, numbers and settings: every bad request is refused naming its
/// field (or the conflict), and nothing of the account changes, its audit log included.
#[tokio::test]
async fn every_refusal_of_an_accounts_parts_names_its_field_and_changes_nothing() {
    let running = start(Some(KEY)).await;
    let api = Api::of(&running);
    assert_eq!(api.post(&acme()).await.0, 201);
    let person = |extra: Value| {
        let mut p = json!({"id": "bob", "name": "Bob", "role": "agent", "queues": ["support"],
                           "password": common::PASSWORD});
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        p
    };
    let (status, _) = send(
        &running,
        "POST",
        "/api/v1/accounts/acme/people",
        person(json!({"id": "ann"})),
    )
    .await;
    assert_eq!(status, 201);
    let (_, before) = api.get("/acme", Some(KEY)).await;
    let (_, log_before) = send(&running, "GET", "/api/v1/accounts/acme/audit", Value::Null).await;

    let people = "/api/v1/accounts/acme/people";
    let cases: Vec<(&str, String, Value, u16, &str)> = vec![
        (
            "POST",
            people.into(),
            person(json!({"id": "ann"})),
            409,
            "id",
        ),
        (
            "POST",
            people.into(),
            person(json!({"id": "Bad Id"})),
            422,
            "id",
        ),
        ("POST", people.into(), person(json!({"id": 7})), 422, "id"),
        (
            "POST",
            people.into(),
            person(json!({"name": "x".repeat(129)})),
            422,
            "name",
        ),
        (
            "POST",
            people.into(),
            person(json!({"role": "owner"})),
            422,
            "role",
        ),
        (
            "POST",
            people.into(),
            person(json!({"queues": ["billing"]})),
            422,
            "queues[0]",
        ),
        (
            "POST",
            people.into(),
            person(json!({"password": "short"})),
            422,
            "password",
        ),
        (
            "POST",
            people.into(),
            person(json!({"colour": "red"})),
            422,
            "colour",
        ),
        (
            "PATCH",
            format!("{people}/ann"),
            json!({"disabled": "yes"}),
            422,
            "disabled",
        ),
        (
            "PATCH",
            format!("{people}/ann"),
            json!({"queues": ["support", 3]}),
            422,
            "queues[1]",
        ),
        (
            "PATCH",
            format!("{people}/ann"),
            json!({"nick": "a"}),
            422,
            "nick",
        ),
        (
            "PATCH",
            format!("{people}/nobody"),
            json!({"name": "N"}),
            404,
            "",
        ),
        (
            "PATCH",
            "/api/v1/accounts/acme/queues/support".into(),
            json!({"policy": "decline", "max_wait_secs": 3}),
            422,
            "max_wait_secs",
        ),
        (
            "PATCH",
            "/api/v1/accounts/acme/queues/support".into(),
            json!({"policy": "queue", "max_wait_secs": -1}),
            422,
            "max_wait_secs",
        ),
        (
            "PATCH",
            "/api/v1/accounts/acme/queues/support".into(),
            json!({"policy": "queue", "max_wait_secs": 0}),
            422,
            "max_wait_secs",
        ),
        (
            "POST",
            "/api/v1/accounts/acme/queues".into(),
            json!({"id": "support", "policy": "decline"}),
            409,
            "id",
        ),
        (
            "POST",
            "/api/v1/accounts/acme/queues".into(),
            json!({"id": "a@b", "policy": "decline"}),
            422,
            "id",
        ),
        (
            "PATCH",
            "/api/v1/accounts/acme/numbers/300000000000011".into(),
            json!({"queue": "billing"}),
            422,
            "queue",
        ),
        (
            "POST",
            "/api/v1/accounts/acme/numbers".into(),
            json!({"phone_number_id": "300000000000012"}),
            409,
            "phone_number_id",
        ),
        (
            "PATCH",
            "/api/v1/accounts/acme/settings".into(),
            json!({"ring_timeout_secs": 0}),
            422,
            "ring_timeout_secs",
        ),
        (
            "PATCH",
            "/api/v1/accounts/acme/settings".into(),
            json!({"default_queue": "billing"}),
            422,
            "default_queue",
        ),
        (
            "PATCH",
            "/api/v1/accounts/acme/settings".into(),
            json!({"away_reasons": []}),
            422,
            "away_reasons",
        ),
        (
            "PATCH",
            "/api/v1/accounts/acme/settings".into(),
            json!({"ring_timeout_secs": "15"}),
            422,
            "ring_timeout_secs",
        ),
        (
            "GET",
            format!("{people}?limit=0"),
            Value::Null,
            422,
            "limit",
        ),
        (
            "GET",
            "/api/v1/accounts/nobody/people".into(),
            Value::Null,
            404,
            "",
        ),
    ];
    for (method, path, body, status, field) in cases {
        let (got, answer) = send(&running, method, &path, body.clone()).await;
        assert_eq!(got, status, "{method} {path} {body}: {answer}");
        if !field.is_empty() {
            assert_eq!(answer["field"], field, "{method} {path} {body}: {answer}");
        }
        assert!(answer["error"].is_string(), "{answer}");
    }
    // A number another account has cannot be added here.
    let mut other = acme();
    other["slug"] = json!("other");
    other["numbers"] = json!([{"phone_number_id": "400000000000001"}]);
    assert_eq!(api.post(&other).await.0, 201);
    let (status, answer) = send(
        &running,
        "POST",
        "/api/v1/accounts/acme/numbers",
        json!({"phone_number_id": "400000000000001"}),
    )
    .await;
    assert_eq!(
        (status, answer["field"].as_str()),
        (409, Some("phone_number_id"))
    );
    assert_eq!(api.get("/acme", Some(KEY)).await.1, before);
    let (_, log_after) = send(&running, "GET", "/api/v1/accounts/acme/audit", Value::Null).await;
    assert_eq!(log_after, log_before);
}
