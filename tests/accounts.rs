//! Two businesses on one switchboard (issue 23), over real sockets against the fake Graph API:
//! each account's calls ring only its own agents and go to Graph with its own access token;
//! nobody of one account sees the other's calls, people, queues or records, through `/ws` or
//! any route; and people and queues changed through the admin API apply at once, with no
//! restart.

mod common;

use std::time::Duration;

use serde_json::{json, Value};
use switchboard::app::{self, Running};
use switchboard::config::{Role, Secret, Settings};
use switchboard::signaling::protocol::{ClientMsg, ServerMsg};
use switchboard::sim::agent::SimAgent;
use switchboard::whatsapp::simulator::{CallPhase, CallSpec, FakeGraph, Simulator};

const KEY: &str = "0123456789abcdef0123456789abcdef-operator";
/// 32 bytes in base64.
const SECRETS_KEY: &str = "c3dpdGNoYm9hcmQtdGVzdC1zZWNyZXRzLWtleS0zMmI=";
/// Acme's business number and Graph token (the default account's are `common::PHONE_ID` and
/// `common::TOKEN`).
const ACME_NUMBER: &str = "300000000000011";
const ACME_TOKEN: &str = "acme-graph-access-token";
const LIMIT: Duration = Duration::from_secs(10);

struct World {
    running: Running,
    fake: FakeGraph,
    sim: Simulator,
    http: reqwest::Client,
}

impl World {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.http_addr)
    }

    /// `method path` with `token` and `body`: the status and the JSON answered.
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

    async fn ok(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, token, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {v}"
        );
        v
    }

    /// Signs `id` in (as soon as the change that made them has reached sign-in).
    async fn agent(&self, id: &str) -> SimAgent {
        let addr = self.running.http_addr;
        common::eventually("the person can sign in", LIMIT, || async move {
            SimAgent::start(addr, id, common::PASSWORD, common::LOOPBACK, 2)
                .await
                .ok()
        })
        .await
    }
}

/// The default account (from the file: `alice` agent, `sam` supervisor, queue `support`) and
/// `acme` (through the API: its number and token, `ann` agent, `sue` supervisor).
async fn world() -> World {
    let (fake, events, mut config) = common::live_config(Settings {
        media_addr: Some("127.0.0.1".into()),
        media_ports: Some("ephemeral:8".into()),
        operator_key: Some(Secret::new(KEY)),
        secrets_key: Some(Secret::new(SECRETS_KEY)),
        ..Settings::default()
    })
    .await;
    config.auth.people = vec![
        common::person("alice", Role::Agent, &["support"]),
        // Supervisors serve no queue here: only agents are rung.
        common::person("sam", Role::Supervisor, &[]),
    ];
    // Meta takes acme's token for acme's number only, and nobody else's there.
    fake.add_number(ACME_NUMBER, ACME_TOKEN);
    let running = app::start(config).await.unwrap();
    let sim = common::simulator(&running, &fake, events, None);
    let w = World {
        running,
        fake,
        sim,
        http: reqwest::Client::new(),
    };
    w.ok(
        "POST",
        "/api/v1/accounts",
        KEY,
        Some(json!({
            "slug": "acme",
            "name": "Acme",
            "access_token": ACME_TOKEN,
            "numbers": [{"phone_number_id": ACME_NUMBER}],
            "queues": [{"id": "support", "policy": "queue", "max_wait_secs": 60}],
            "default_queue": "support",
        })),
    )
    .await;
    for (id, role, queues) in [
        ("ann", "agent", json!(["support"])),
        ("sue", "supervisor", json!([])),
    ] {
        w.ok(
            "POST",
            "/api/v1/accounts/acme/people",
            KEY,
            Some(json!({"id": id, "name": id.to_uppercase(), "role": role,
                        "queues": queues, "password": common::PASSWORD})),
        )
        .await;
    }
    w
}

/// A call to the business number `number` whose caller never hangs up by itself.
async fn held_call_to(
    sim: &Simulator,
    number: &str,
) -> switchboard::whatsapp::simulator::SimulatedCall {
    sim.place_call(CallSpec {
        to: Some(number.into()),
        hang_up_after: None,
        ..CallSpec::default()
    })
    .await
    .unwrap()
}

/// How many calls rang at `a` so far.
fn rung(a: &SimAgent) -> usize {
    a.seen
        .iter()
        .filter(|m| matches!(m, ServerMsg::Ringing { .. }))
        .count()
}

fn requests_of(fake: &FakeGraph, call: &str) -> Vec<(String, String, u16)> {
    fake.requests()
        .iter()
        .filter(|r| r.call_id.as_ref().is_some_and(|c| c.0 == call))
        .map(|r| {
            (
                r.phone_number_id.clone(),
                r.action.as_ref().map_or("", |a| a.as_str()).to_owned(),
                r.status,
            )
        })
        .collect()
}

/// The latest floor `sup` was sent once it shows `calls` calls.
async fn floor_with(sup: &mut SimAgent, calls: usize) -> ServerMsg {
    sup.expect(
        LIMIT,
        "a floor with the calls",
        |m| matches!(m, ServerMsg::Floor { calls: c, .. } if c.len() == calls),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn each_account_rings_its_own_agents_with_its_own_token_and_sees_only_its_own() {
    let w = world().await;
    let mut alice = w.agent("alice").await;
    let mut ann = w.agent("ann@acme").await;
    let mut sue = w.agent("sue@acme").await;
    let mut sam = w.agent("sam").await;
    // A call to each business: each rings its own agent.
    let to_default = common::held_call(&w.sim).await;
    let id = alice.ringing(LIMIT).await.unwrap();
    assert_eq!(id, to_default.call_id.0);
    alice.answer(&id, LIMIT).await.unwrap();
    let to_acme = held_call_to(&w.sim, ACME_NUMBER).await;
    let id = ann.ringing(LIMIT).await.unwrap();
    assert_eq!(id, to_acme.call_id.0);
    ann.answer(&id, LIMIT).await.unwrap();
    // Neither agent was offered the other business's call.
    assert_eq!((rung(&alice), rung(&ann)), (1, 1));
    // Graph: acme's call on acme's number with acme's token (the fake takes no other there),
    // the default's on its own; every action taken.
    let acme_reqs = requests_of(&w.fake, &to_acme.call_id.0);
    let default_reqs = requests_of(&w.fake, &to_default.call_id.0);
    assert!(acme_reqs.iter().any(|r| r.1 == "accept"), "{acme_reqs:?}");
    assert!(
        default_reqs.iter().any(|r| r.1 == "accept"),
        "{default_reqs:?}"
    );
    assert!(acme_reqs
        .iter()
        .all(|(n, _, s)| n == ACME_NUMBER && *s == 200));
    assert!(default_reqs
        .iter()
        .all(|(n, _, s)| n == common::PHONE_ID && *s == 200));
    // Each supervisor's floor has their own account's call, agents and queues only.
    let ServerMsg::Floor {
        calls,
        agents,
        queues,
    } = floor_with(&mut sue, 1).await
    else {
        unreachable!()
    };
    assert_eq!(calls[0].call_id, to_acme.call_id.0);
    let mut names: Vec<_> = agents.iter().map(|a| a.id.as_str()).collect();
    names.sort();
    assert_eq!(names, ["ann@acme", "sue@acme"]);
    assert_eq!(
        queues.iter().map(|q| q.id.as_str()).collect::<Vec<_>>(),
        ["support@acme"]
    );
    let ServerMsg::Floor { calls, agents, .. } = floor_with(&mut sam, 1).await else {
        unreachable!()
    };
    assert_eq!(calls[0].call_id, to_default.call_id.0);
    assert!(agents.iter().all(|a| !a.id.contains('@')));
    // Listening in on the other business's call: as if there were none.
    sue.send(ClientMsg::Monitor {
        call_id: to_default.call_id.0.clone(),
    })
    .await
    .unwrap();
    sue.expect(
        LIMIT,
        "refused",
        |m| matches!(m, ServerMsg::Error { code, .. } if code == "no_such_call"),
    )
    .await
    .unwrap();
    // Both calls end and are recorded.
    for a in [&alice, &ann] {
        let call_id = a
            .seen
            .iter()
            .find_map(|m| match m {
                ServerMsg::Ringing { call_id, .. } => Some(call_id.clone()),
                _ => None,
            })
            .unwrap();
        a.send(ClientMsg::HangUp { call_id }).await.unwrap();
    }
    let store = w.running.store.clone();
    common::eventually("both calls recorded", LIMIT, || {
        let store = store.clone();
        async move {
            let page = store.list(Default::default()).await.ok()?;
            (page.calls.len() == 2).then_some(())
        }
    })
    .await;

    // Every route with acme's supervisor's token, against the default account's ids: 404 or
    // 403, or an answer holding none of the default account's data.
    let sue_token = sue.token.clone();
    for (method, path) in [
        ("GET", "/api/v1/accounts"),
        ("GET", "/api/v1/accounts/default"),
        ("GET", "/api/v1/accounts/default/people"),
        ("GET", "/api/v1/accounts/default/people/alice"),
        ("PATCH", "/api/v1/accounts/default/people/alice"),
        ("POST", "/api/v1/accounts/default/people"),
        ("GET", "/api/v1/accounts/default/queues"),
        ("GET", "/api/v1/accounts/default/queues/support"),
        ("PATCH", "/api/v1/accounts/default/queues/support"),
        ("POST", "/api/v1/accounts/default/queues"),
        ("GET", "/api/v1/accounts/default/numbers"),
        (
            "GET",
            &format!("/api/v1/accounts/default/numbers/{}", common::PHONE_ID),
        ),
        (
            "PATCH",
            &format!("/api/v1/accounts/default/numbers/{}", common::PHONE_ID),
        ),
        ("POST", "/api/v1/accounts/default/numbers"),
        ("GET", "/api/v1/accounts/default/settings"),
        ("PATCH", "/api/v1/accounts/default/settings"),
        ("GET", "/api/v1/accounts/default/audit"),
        ("GET", "/api/v1/accounts/default/keys"),
        ("POST", "/api/v1/accounts/default/keys"),
        ("DELETE", "/api/v1/accounts/default/keys/0123456789ab"),
    ] {
        let (status, body) = w
            .call(method, path, &sue_token, Some(json!({"disabled": true})))
            .await;
        assert!(
            [401, 403, 404].contains(&status),
            "{method} {path} answered {status} {body}"
        );
        let text = body.to_string();
        assert!(
            !text.contains("alice") && !text.contains(common::PHONE_ID),
            "{text}"
        );
    }
    let (status, calls) = w.call("GET", "/api/calls", &sue_token, None).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = calls["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["call_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [to_acme.call_id.0.as_str()]);
    for q in ["agent=alice", "queue=support", "agent=alice&queue=support"] {
        let (_, page) = w
            .call("GET", &format!("/api/calls?{q}"), &sue_token, None)
            .await;
        assert_eq!(page["calls"], json!([]), "{q}");
    }
    let (_, people) = w.call("GET", "/api/people", &sue_token, None).await;
    let mut ids: Vec<&str> = people
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["ann@acme", "sue@acme"]);
    // The default account's supervisor sees only their own calls too.
    let (_, calls) = w.call("GET", "/api/calls", &sam.token, None).await;
    assert_eq!(calls["calls"].as_array().unwrap().len(), 1);
    assert_eq!(calls["calls"][0]["call_id"], to_default.call_id.0.as_str());
    // And the alice still in the default account did not change.
    let (_, alice_now) = w
        .call("GET", "/api/v1/accounts/default/people/alice", KEY, None)
        .await;
    assert_eq!(alice_now["disabled"], false);
}

#[tokio::test]
async fn people_and_queues_changed_through_the_api_apply_at_once() {
    let w = world().await;
    // A supervisor of the account adds an agent: they sign in and take the next call.
    let mut sam = w.agent("sam").await;
    let (status, created) = w
        .call(
            "POST",
            "/api/v1/accounts/default/people",
            &sam.token,
            Some(json!({"id": "bob", "name": "Bob", "role": "agent",
                        "queues": ["support"], "password": common::PASSWORD})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let mut bob = w.agent("bob").await;
    let call = common::held_call(&w.sim).await;
    let id = bob.ringing(LIMIT).await.unwrap();
    assert_eq!(id, call.call_id.0);
    bob.answer(&id, LIMIT).await.unwrap();

    // Disabled mid-call: bob's open socket is told at once (not at its next 5 s check) and
    // closed, and the caller is not hung up on: the call goes back to its queue.
    let r = w
        .http
        .patch(w.url("/api/v1/accounts/default/people/bob"))
        .bearer_auth(&sam.token)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    bob.expect(
        Duration::from_millis(2500),
        "signed_out",
        |m| matches!(m, ServerMsg::Error { code, .. } if code == "signed_out"),
    )
    .await
    .unwrap();
    assert!(
        switchboard::sim::agent::sign_in(w.running.http_addr, "bob", common::PASSWORD)
            .await
            .is_err()
    );
    sam.expect(LIMIT, "the call back in its queue", |m| {
        matches!(m, ServerMsg::Floor { calls, .. }
            if calls.iter().any(|c| c.call_id == call.call_id.0 && c.state == "queued"))
    })
    .await
    .unwrap();
    assert!(!requests_of(&w.fake, &call.call_id.0)
        .iter()
        .any(|r| r.1 == "terminate"));
    assert!(!matches!(call.phase(), CallPhase::Ended { .. }));

    // Two supervisors edit one person: the second, sending the version it read, is refused.
    let r = w
        .http
        .get(w.url("/api/v1/accounts/default/people/alice"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let patch = |name: &str| {
        w.http
            .patch(w.url("/api/v1/accounts/default/people/alice"))
            .bearer_auth(&sam.token)
            .header("if-match", &etag)
            .json(&json!({ "name": name }))
    };
    assert_eq!(patch("Alice M.").send().await.unwrap().status(), 200);
    assert_eq!(patch("Alice N.").send().await.unwrap().status(), 412);
    let (_, alice) = w
        .call("GET", "/api/v1/accounts/default/people/alice", KEY, None)
        .await;
    assert_eq!(alice["name"], "Alice M.");

    // The queue switched to decline: the next call (nobody free) is declined at once.
    w.ok(
        "PATCH",
        "/api/v1/accounts/default/queues/support",
        &sam.token,
        Some(json!({"policy": "decline"})),
    )
    .await;
    let declined = common::eventually("a call declined", LIMIT, || async {
        let call = common::held_call(&w.sim).await;
        call.wait_for(LIMIT, |p| matches!(p, CallPhase::Ended { .. }))
            .await;
        let reqs = requests_of(&w.fake, &call.call_id.0);
        reqs.iter().any(|r| r.1 == "reject").then_some(reqs)
    })
    .await;
    assert!(!declined.iter().any(|r| r.1 == "accept"), "{declined:?}");

    // Each change is in the audit log, who made it, before and after; no password in it.
    let (_, log) = w
        .call("GET", "/api/v1/accounts/default/audit", KEY, None)
        .await;
    let entries = log["entries"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "queue.update",
            "person.update",
            "person.update",
            "person.create"
        ]
    );
    assert!(entries.iter().all(|e| e["actor"] == "sam"));
    assert_eq!(entries[0]["before"]["policy"], "queue");
    assert_eq!(entries[0]["after"]["policy"], "decline");
    assert!(!log.to_string().contains("argon2") && !log.to_string().contains(common::PASSWORD));
}

/// Two nodes on one PostgreSQL database and one Redis: a person created through node A signs
/// in on node B at once (B is told through Redis and reads the database); a change made while
/// B is down applies when B starts again; a queue's policy changed on A applies on B.
#[tokio::test]
async fn a_change_made_on_one_node_applies_on_the_other_at_once_and_after_a_restart() {
    let redis = common::Redis::start();
    let pg = common::Postgres::start();
    let (_fake, _events, config) = common::live_config(Settings {
        media_addr: Some("127.0.0.1".into()),
        media_ports: Some("ephemeral:8".into()),
        operator_key: Some(Secret::new(KEY)),
        secrets_key: Some(Secret::new(SECRETS_KEY)),
        redis_url: Some(Secret::new(redis.url())),
        database_url: Some(Secret::new(pg.database("accounts_live"))),
        node_id: Some("node-a".into()),
        ..Settings::default()
    })
    .await;
    let mut config_b = config.clone();
    config_b.store.node_id = "node-b".into();
    let a = app::start(config).await.unwrap();
    let b = app::start(config_b.clone()).await.unwrap();
    let http = reqwest::Client::new();
    let post = |node: &Running, path: &str, body: Value| {
        http.post(format!("http://{}{path}", node.http_addr))
            .bearer_auth(KEY)
            .json(&body)
            .send()
    };
    let r = post(
        &a,
        "/api/v1/accounts",
        json!({"slug": "acme", "name": "Acme", "access_token": ACME_TOKEN,
               "numbers": [{"phone_number_id": ACME_NUMBER}],
               "queues": [{"id": "support", "policy": "queue"}], "default_queue": "support"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let person = |id: &str| {
        json!({"id": id, "name": id, "role": "agent", "queues": ["support"],
               "password": common::PASSWORD})
    };
    let r = post(&a, "/api/v1/accounts/acme/people", person("ann"))
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // On B, as soon as Redis carries the word (well within the 30 s resync).
    let b_addr = b.http_addr;
    let signed = common::eventually(
        "ann@acme signs in on node B",
        Duration::from_secs(5),
        || async move {
            switchboard::sim::agent::sign_in(b_addr, "ann@acme", common::PASSWORD)
                .await
                .ok()
        },
    )
    .await;
    assert!(!signed.is_empty());

    // B stops; a person is added meanwhile; B starts again and knows them from the start.
    b.shutdown().await;
    let r = post(&a, "/api/v1/accounts/acme/people", person("cy"))
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let b = app::start(config_b).await.unwrap();
    assert!(
        switchboard::sim::agent::sign_in(b.http_addr, "cy@acme", common::PASSWORD)
            .await
            .is_ok(),
        "node B read the change it missed from the database at start"
    );
    // And a change made on B reaches A.
    let r = http
        .patch(format!(
            "http://{}/api/v1/accounts/acme/people/ann",
            b.http_addr
        ))
        .bearer_auth(KEY)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let a_addr = a.http_addr;
    common::eventually(
        "ann@acme refused on node A",
        Duration::from_secs(5),
        || async move {
            switchboard::sim::agent::sign_in(a_addr, "ann@acme", common::PASSWORD)
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
    b.shutdown().await;
    a.shutdown().await;
}

/// An account's API key: made by an admin and shown once, works on its own account's routes
/// only (another account's are 404), is named in the audit log, never listed, and once revoked
/// is refused.
#[tokio::test]
async fn an_api_key_works_for_its_own_account_only_until_revoked() {
    let w = world().await;
    let made = w
        .ok(
            "POST",
            "/api/v1/accounts/acme/keys",
            KEY,
            Some(json!({"name": "crm"})),
        )
        .await;
    let key = made["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("sbk_"));
    assert_eq!(made["role"], "admin");
    let id = made["id"].as_str().unwrap().to_owned();
    // With the key: acme's people, and a change made in its name.
    let people = w
        .ok("GET", "/api/v1/accounts/acme/people", &key, None)
        .await;
    assert_eq!(people["people"].as_array().unwrap().len(), 2);
    w.ok(
        "PATCH",
        "/api/v1/accounts/acme/people/ann",
        &key,
        Some(json!({"name": "Ann B."})),
    )
    .await;
    let (_, log) = w
        .call("GET", "/api/v1/accounts/acme/audit", &key, None)
        .await;
    assert_eq!(log["entries"][0]["actor"], "key:crm");
    assert_eq!(log["entries"][0]["action"], "person.update");
    assert_eq!(log["entries"][1]["action"], "key.create");
    // Another account's routes, and the operator's: as if they did not exist, or refused.
    assert_eq!(
        w.call("GET", "/api/v1/accounts/default/people", &key, None)
            .await
            .0,
        404
    );
    assert_eq!(w.call("GET", "/api/v1/accounts", &key, None).await.0, 401);
    // Listed without the key or its hash.
    let (_, listed) = w
        .call("GET", "/api/v1/accounts/acme/keys", &key, None)
        .await;
    assert_eq!(listed["keys"][0]["id"], id.as_str());
    let text = listed.to_string();
    assert!(
        !text.contains(&key[key.len() - 64..]) && !text.contains("hash"),
        "{text}"
    );
    // A guessed key of the same id, and a revoked key: refused.
    let guess = format!("{}{}", &key[..key.len() - 64], "0".repeat(64));
    assert_eq!(
        w.call("GET", "/api/v1/accounts/acme/people", &guess, None)
            .await
            .0,
        401
    );
    let (status, _) = w
        .call(
            "DELETE",
            &format!("/api/v1/accounts/acme/keys/{id}"),
            KEY,
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        w.call("GET", "/api/v1/accounts/acme/people", &key, None)
            .await
            .0,
        401
    );
    // A supervisor may not make keys.
    let sue = w.agent("sue@acme").await;
    let (status, _) = w
        .call(
            "POST",
            "/api/v1/accounts/acme/keys",
            &sue.token,
            Some(json!({"name": "mine"})),
        )
        .await;
    assert_eq!(status, 403);
}

/// The same isolation on two nodes sharing Redis and PostgreSQL, webhooks reaching either
/// node: a call to acme's number rings acme's agent signed in on node B and never the default
/// account's agent on node A, and the other way round; each with its own account's token.
#[tokio::test]
async fn on_two_nodes_each_accounts_calls_ring_only_its_own_agents() {
    use switchboard::whatsapp::simulator::SimulatorConfig;
    let redis = common::Redis::start();
    let pg = common::Postgres::start();
    let (fake, events, mut config) = common::live_config(Settings {
        media_addr: Some("127.0.0.1".into()),
        media_ports: Some("ephemeral:8".into()),
        operator_key: Some(Secret::new(KEY)),
        secrets_key: Some(Secret::new(SECRETS_KEY)),
        redis_url: Some(Secret::new(redis.url())),
        database_url: Some(Secret::new(pg.database("accounts_calls"))),
        node_id: Some("node-a".into()),
        ..Settings::default()
    })
    .await;
    config.auth.people = vec![common::person("alice", Role::Agent, &["support"])];
    fake.add_number(ACME_NUMBER, ACME_TOKEN);
    let mut config_b = config.clone();
    config_b.store.node_id = "node-b".into();
    let a = app::start(config).await.unwrap();
    let b = app::start(config_b).await.unwrap();
    let webhook = |r: &Running| format!("http://{}/webhooks/whatsapp", r.http_addr);
    let sim = Simulator::start(
        SimulatorConfig {
            webhook_url: webhook(&a),
            more_webhook_urls: vec![webhook(&b)],
            app_secret: Secret::new(common::APP_SECRET),
            phone_number_id: common::PHONE_ID.into(),
            ..SimulatorConfig::default()
        },
        fake.clone(),
        events,
    );
    let w = World {
        running: a,
        fake,
        sim,
        http: reqwest::Client::new(),
    };
    w.ok(
        "POST",
        "/api/v1/accounts",
        KEY,
        Some(
            json!({"slug": "acme", "name": "Acme", "access_token": ACME_TOKEN,
                    "numbers": [{"phone_number_id": ACME_NUMBER}],
                    "queues": [{"id": "support", "policy": "queue"}],
                    "default_queue": "support"}),
        ),
    )
    .await;
    w.ok(
        "POST",
        "/api/v1/accounts/acme/people",
        KEY,
        Some(
            json!({"id": "ann", "name": "Ann", "role": "agent", "queues": ["support"],
                    "password": common::PASSWORD}),
        ),
    )
    .await;
    let b_addr = b.http_addr;
    let mut ann = common::eventually("ann@acme on node B", LIMIT, || async move {
        SimAgent::start(b_addr, "ann@acme", common::PASSWORD, common::LOOPBACK, 2)
            .await
            .ok()
    })
    .await;
    let mut alice = w.agent("alice").await;
    for (number, agent) in [(ACME_NUMBER, &mut ann), (common::PHONE_ID, &mut alice)] {
        let call = held_call_to(&w.sim, number).await;
        let id = agent.ringing(LIMIT).await.unwrap();
        assert_eq!(id, call.call_id.0);
        agent.answer(&id, LIMIT).await.unwrap();
        let reqs = requests_of(&w.fake, &call.call_id.0);
        assert!(reqs.iter().any(|r| r.1 == "accept"), "{reqs:?}");
        assert!(
            reqs.iter().all(|(n, _, s)| n == number && *s == 200),
            "{reqs:?}"
        );
    }
    assert_eq!((rung(&ann), rung(&alice)), (1, 1));
    b.shutdown().await;
}

/// An account's own hold audio: set by its admin (a file checked as Ogg/Opus, at most 512 KiB),
/// read back as set, heard by its waiting callers byte for byte, and removed again.
#[tokio::test]
async fn an_accounts_own_hold_audio_is_what_its_waiting_callers_hear() {
    let w = world().await;
    let melody = switchboard::media::ogg::read(switchboard::media::ogg::MELODY)
        .unwrap()
        .packets;
    let own: Vec<Vec<u8>> = melody.iter().rev().cloned().collect();
    let file = switchboard::media::ogg::write(&own);
    let url = w.url("/api/v1/accounts/acme/hold-audio");
    let put = |body: Vec<u8>, token: &str| {
        w.http
            .put(&url)
            .bearer_auth(token)
            .header("content-type", "audio/ogg")
            .body(body)
            .send()
    };
    // Refused: not Ogg/Opus, too large, a supervisor's.
    let r = put(b"not audio".to_vec(), KEY).await.unwrap();
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["field"], "hold_audio");
    assert_eq!(put(vec![0; 600 * 1024], KEY).await.unwrap().status(), 413);
    let sue = w.agent("sue@acme").await;
    assert_eq!(put(file.clone(), &sue.token).await.unwrap().status(), 403);
    // Set, and read back as set.
    let r = put(file.clone(), KEY).await.unwrap();
    assert_eq!(r.status(), 200);
    let about: Value = r.json().await.unwrap();
    assert_eq!(about["packets"], own.len());
    let r = w
        .http
        .get(&url)
        .bearer_auth(&sue.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().to_vec(), file);

    // Ann is signed in but away: a call to acme waits in its queue, hearing acme's audio.
    let mut ann = w.agent("ann@acme").await;
    ann.send(ClientMsg::SetPresence {
        available: false,
        reason: None,
    })
    .await
    .unwrap();
    ann.expect(
        LIMIT,
        "away",
        |m| matches!(m, ServerMsg::Presence(p) if p.state == "away"),
    )
    .await
    .unwrap();
    let call = common::eventually("a call waiting in acme's queue", LIMIT, || async {
        let call = held_call_to(&w.sim, ACME_NUMBER).await;
        call.wait_for(LIMIT, |p| {
            matches!(p, CallPhase::Accepted | CallPhase::Ended { .. })
        })
        .await;
        matches!(call.phase(), CallPhase::Accepted).then_some(call)
    })
    .await;
    let peer = call.peer().unwrap();
    peer.wait_for(LIMIT, |s| s.packets_received >= 40)
        .await
        .expect("hold audio flows");
    let heard: Vec<Vec<u8>> = peer
        .recording()
        .await
        .unwrap()
        .packets
        .iter()
        .filter(|p| p.pt == 111)
        .map(|p| p.payload.to_vec())
        .collect();
    let start = heard
        .iter()
        .position(|p| *p == own[0])
        .expect("acme's own clip is heard");
    assert_eq!(heard[start..start + 20], own[..20]);

    // Removed: the deployment's again (from the next call); the file is gone.
    let r = w.http.delete(&url).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = w.http.get(&url).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let (_, log) = w
        .call("GET", "/api/v1/accounts/acme/audit", KEY, None)
        .await;
    assert_eq!(log["entries"][0]["action"], "hold_audio.remove");
    assert_eq!(log["entries"][1]["action"], "hold_audio.update");
    assert_eq!(log["entries"][1]["after"]["packets"], own.len());
}
