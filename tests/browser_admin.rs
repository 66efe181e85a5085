//! The administration page (`/admin`, issue 23) in real headless Chromium, driven only through
//! its labelled controls, against switchboard in live mode and the fake Graph API: a supervisor
//! adds an agent there, the agent signs in on the agent page at once and answers a call, and the
//! change shows who made it (to the supervisor at once, and in the audit log an admin reads).
//! An admin then makes an API key there, which a server uses until the admin revokes it on the
//! page, and edits the away reasons the supervisor could only read.
//!
//! An admin runs an event endpoint there too: adds one for a receiver of the test's own, copies
//! its secret (shown once), reads its delivery log as a call's events reach the receiver,
//! redelivers one, gives it a new secret, disables and enables it, is told at the top of the
//! section when switchboard disabled it, and removes it; a supervisor reads it all and changes
//! nothing. And the page says why an endpoint cannot be added (a private address, no secrets
//! key).
//!
//! Needs Debian's `chromium` and `tests/browser/node_modules` (playwright-core); `scripts/deps`
//! installs both. Screenshots land in `target/browser-shots/`.

mod common;

use std::time::Duration;

use common::{Browser, EventsReceiver as Receiver, LONG};
use serde_json::{json, Value};
use switchboard::app::{self, Running};
use switchboard::config::{Role, Secret, Settings};
use switchboard::signaling::protocol::{ClientMsg, ServerMsg};
use switchboard::sim::agent::SimAgent;
use switchboard::whatsapp::simulator::{CallPhase, Simulator};

const SHOTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/browser-shots");

/// The cells of each row of the table body `id`, as the page shows them.
async fn rows(b: &mut Browser, id: &str) -> Vec<Vec<String>> {
    let json = b
        .run(&format!(
            "eval [...document.querySelectorAll('#{id} tr')]\
             .map((r) => [...r.cells].map((c) => c.textContent))"
        ))
        .await;
    serde_json::from_str(&json).expect("rows as JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_adds_an_agent_on_the_admin_page_who_answers_the_next_call() {
    let (fake, events, mut config) = common::live_config(Settings {
        media_addr: Some("127.0.0.1".into()),
        media_ports: Some("ephemeral:8".into()),
        cookie_secure: Some(false),
        ..Settings::default()
    })
    .await;
    // The default account from the file: queue `support`, nobody to take its calls yet.
    config.auth.people = vec![
        common::person("sam", Role::Supervisor, &[]),
        common::person("ada", Role::Admin, &[]),
    ];
    std::fs::create_dir_all(SHOTS).unwrap();
    let running = app::start(config).await.unwrap();
    let sim = common::simulator(&running, &fake, events, None);
    let admin_url = format!("http://{}/admin", running.http_addr);

    // sam, a supervisor, signs in on the admin page and sees the account's people.
    let mut admin = Browser::start(660.0);
    admin.run(&format!("goto {admin_url}")).await;
    admin
        .assert_accessible("the admin page's sign-in form")
        .await;
    admin.sign_in(&admin_url, "sam", common::PASSWORD).await;
    admin.run("wait_text person-sam sam").await;
    // The audit log is an admin's: a supervisor is told so.
    admin
        .run("wait_text audit-note Only admins see the audit log.")
        .await;
    // So are the API keys, and the away reasons are there to read, not to change.
    admin
        .run("wait_text keys-note Only admins manage API keys.")
        .await;
    assert_eq!(
        admin
            .run(
                "eval [document.getElementById('keys-part').hidden, \
                 document.getElementById('s-away').readOnly]"
            )
            .await,
        "[true,true]"
    );
    admin
        .assert_accessible("the admin page, a supervisor signed in")
        .await;

    // sam adds bob, an agent of `support`, through the labelled controls.
    admin.run("fill Id bob").await;
    admin.run("fill Name Bob").await;
    admin.run("select Role|Agent").await;
    admin.run("check support").await;
    admin
        .run(&format!("fill Password {}", common::PASSWORD))
        .await;
    admin.run("click Add person").await;
    admin.run("wait_text status Saved by sam").await;
    assert_eq!(
        admin
            .run("eval document.getElementById('status').textContent")
            .await,
        "\"Saved by sam: bob added (Agent, support).\""
    );
    admin.run("wait_text person-bob bob").await;
    let bob_row = rows(&mut admin, "people-rows")
        .await
        .into_iter()
        .find(|r| r[0] == "bob")
        .expect("bob in the table");
    assert_eq!(bob_row[1..5], ["Bob", "Agent", "support", "Active"]);
    admin
        .run(&format!("shot {SHOTS}/admin-supervisor.png"))
        .await;
    admin
        .assert_accessible("the admin page after adding a person")
        .await;

    // bob signs in on the agent page at once, and takes the next call.
    let mut bob = Browser::start(440.0);
    bob.sign_in(
        &format!("http://{}/", running.http_addr),
        "bob",
        common::PASSWORD,
    )
    .await;
    bob.run("wait_text state Available").await;
    let call = common::held_call(&sim).await;
    bob.run("wait_heading Incoming call").await;
    bob.run("click Answer").await;
    bob.run("wait_button Hang up").await;
    call.wait_for(LONG, |p| *p == CallPhase::Accepted)
        .await
        .expect("bob answered on the page");
    let actions: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r.call_id.as_ref() == Some(&call.call_id))
        .filter_map(|r| r.action.as_ref().map(|a| a.as_str().to_owned()))
        .collect();
    assert!(
        actions.iter().any(|a| a == "accept"),
        "Graph saw the call accepted: {actions:?}"
    );

    // An agent opening the page is told it is not theirs, and sees none of the account.
    admin.run("click Sign out").await;
    admin.run("wait_heading Sign in").await;
    admin.sign_in(&admin_url, "bob", common::PASSWORD).await;
    admin
        .run("wait_heading Only for supervisors and admins")
        .await;
    assert_eq!(
        admin
            .run("eval document.getElementById('people-rows') === null")
            .await,
        "true"
    );
    admin
        .assert_accessible("the admin page, an agent signed in")
        .await;

    // ada, an admin, reads in the audit log that sam added bob.
    admin.run("click Sign out").await;
    admin.run("wait_heading Sign in").await;
    admin.sign_in(&admin_url, "ada", common::PASSWORD).await;
    admin.run("wait_text audit-note Newest first.").await;
    let log = rows(&mut admin, "audit-rows").await;
    let entry = log
        .iter()
        .find(|r| r[3] == "bob")
        .unwrap_or_else(|| panic!("bob's creation in the audit log: {log:?}"));
    assert_eq!(entry[1..4], ["sam", "added a person", "bob"]);
    assert!(
        entry[4].contains("role: agent") && entry[4].contains("queues: support"),
        "the change shows what bob was made: {entry:?}"
    );
    admin.run(&format!("shot {SHOTS}/admin-admin.png")).await;
    admin
        .assert_accessible("the admin page, an admin signed in")
        .await;

    // ada makes an API key for the CRM through the labelled controls; the page shows it once,
    // in a labelled read-only field.
    admin.run("wait_heading API keys").await;
    admin.run("wait_text key-rows No keys yet.").await;
    admin.run("fill Key name|crm").await;
    admin.run("select Key role|Supervisor").await;
    admin.run("click Make key").await;
    admin
        .run("wait_text status Saved by ada: key crm made")
        .await;
    assert_eq!(
        admin
            .run("eval document.getElementById('status').textContent")
            .await,
        "\"Saved by ada: key crm made (Supervisor); copy it now, it is not shown again.\""
    );
    admin.run("wait_visible new-key").await;
    let field: (String, bool, bool) = serde_json::from_str(
        &admin
            .run(
                "eval (() => { const f = [...document.querySelectorAll('label')]\
                 .find((l) => l.textContent === 'New key — copy it now, it is not shown again')\
                 .control; return [f.value, f.readOnly, document.activeElement === f]; })()",
            )
            .await,
    )
    .expect("the new key's field");
    let (key, read_only, focused) = field;
    assert!(
        read_only && focused,
        "the key's field is read-only and has focus"
    );
    assert!(key.starts_with("sbk_") && key.len() > 70, "a key: {key:?}");
    let key_row = rows(&mut admin, "key-rows")
        .await
        .into_iter()
        .find(|r| r[0] == "crm")
        .expect("the key in the table");
    assert_eq!(key_row[1], "Supervisor");
    assert_eq!(key_row[3], "ada");
    assert!(
        key.starts_with(&format!("sbk_{}_", key_row[4])),
        "the key is the listed one: {key_row:?}"
    );
    assert_eq!(key_row[5], "Revoke");
    admin.run("wait_contains audit-rows made an API key").await;
    admin.run(&format!("shot {SHOTS}/admin-key.png")).await;
    admin
        .assert_accessible("the admin page, a key just made")
        .await;

    // The CRM uses it: the people of the account, bob among them.
    let http = reqwest::Client::new();
    let api = format!("http://{}/api/v1/accounts/default", running.http_addr);
    let people = http
        .get(format!("{api}/people"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(people.status(), 200);
    let people: serde_json::Value = people.json().await.unwrap();
    assert!(
        people["people"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == "bob"),
        "the key lists bob: {people}"
    );

    // ada edits the away reasons, one a line: a reason may hold a comma.
    let settings = |http: reqwest::Client, api: String, key: String| async move {
        let r = http
            .get(format!("{api}/settings"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<serde_json::Value>().await.unwrap()
    };
    let before = settings(http.clone(), api.clone(), key.clone()).await;
    let shown: String = serde_json::from_str(
        &admin
            .run("eval document.getElementById('s-away').value")
            .await,
    )
    .unwrap();
    let reasons: Vec<&str> = before["away_reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(shown, reasons.join("\n"), "the away reasons, one a line");
    admin.run("fill Away reasons|Coaching, one to one").await;
    admin.run("click Save settings").await;
    admin
        .run("wait_text status Saved by ada: settings changed.")
        .await;
    let after = settings(http.clone(), api.clone(), key.clone()).await;
    assert_eq!(
        after["away_reasons"],
        serde_json::json!(["Coaching, one to one"])
    );
    assert_eq!(after["ring_timeout_secs"], before["ring_timeout_secs"]);

    // ada revokes it on the page, once she confirms; from then on it is refused.
    admin.run("click Revoke").await;
    admin.run("wait_heading Revoke key crm?").await;
    admin
        .run(&format!("shot {SHOTS}/admin-key-revoke.png"))
        .await;
    admin
        .assert_accessible("the admin page, revoking a key")
        .await;
    admin.run("click Revoke key").await;
    admin
        .run("wait_text status Saved by ada: key crm revoked.")
        .await;
    admin.run("wait_text key-rows No keys yet.").await;
    assert_eq!(
        admin
            .run("eval document.getElementById('new-key-part').hidden")
            .await,
        "true",
        "the revoked key is no longer shown"
    );
    let refused = http
        .get(format!("{api}/people"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    admin
        .run("wait_contains audit-rows revoked an API key")
        .await;
    let log = rows(&mut admin, "audit-rows").await;
    for what in ["made an API key", "revoked an API key"] {
        let entry = log
            .iter()
            .find(|r| r[2] == what)
            .unwrap_or_else(|| panic!("{what} in the audit log: {log:?}"));
        assert_eq!([&entry[1], &entry[3]], ["ada", &key_row[4]]);
        assert!(
            entry[4].contains("name: crm") && entry[4].contains("role: supervisor"),
            "the entry shows the key: {entry:?}"
        );
    }
    admin
        .assert_accessible("the admin page, a key revoked")
        .await;

    drop(bob);
    drop(admin);
    running.shutdown().await;
}

/// The operator's key: the test reads what switchboard did through the API with it.
const KEY: &str = "0123456789abcdef0123456789abcdef-operator";
/// `SWITCHBOARD_SECRETS_KEY` (32 bytes in base64): endpoints' secrets can be kept.
const SECRETS_KEY: &str = "c3dpdGNoYm9hcmQtdGVzdC1zZWNyZXRzLWtleS0zMmI=";

/// A call alice answers and hangs up: its id.
async fn a_call(sim: &Simulator, alice: &mut SimAgent) -> String {
    let call = common::held_call(sim).await;
    let id = alice.ringing(LONG).await.unwrap();
    assert_eq!(id, call.call_id.0);
    alice.answer(&id, LONG).await.unwrap();
    alice
        .send(ClientMsg::HangUp {
            call_id: id.clone(),
        })
        .await
        .unwrap();
    alice
        .expect(LONG, "the call ended", |m| {
            matches!(m, ServerMsg::CallEnded { .. })
        })
        .await
        .unwrap();
    id
}

/// `method path` with the operator's key; the JSON of a 2xx answer.
async fn ok(running: &Running, method: &str, path: &str) -> Value {
    let (status, v) = common::api(
        &reqwest::Client::new(),
        running.http_addr,
        method,
        path,
        KEY,
        None,
    )
    .await;
    assert!(
        (200..300).contains(&status),
        "{method} {path}: {status} {v}"
    );
    v
}

/// The default account's endpoint `id`, once `done` holds of its whole delivery log (newest
/// first); panics after [`LONG`].
async fn log_until(
    running: &Running,
    id: &str,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let path = format!("/api/v1/accounts/default/endpoints/{id}/deliveries?limit=500");
    common::eventually_showing(what, LONG, || async {
        let log = ok(running, "GET", &path).await["deliveries"]
            .as_array()
            .unwrap()
            .clone();
        if done(&log) {
            Ok(log)
        } else {
            Err(serde_json::to_string_pretty(&log).unwrap())
        }
    })
    .await
}

/// The row ids of the delivery log as the page shows it, top to bottom.
async fn shown_ids(b: &mut Browser) -> Vec<String> {
    serde_json::from_str(
        &b.run(
            "eval [...document.querySelectorAll('#delivery-rows tr')]\
             .map((r) => r.id.replace(/^delivery-/, ''))",
        )
        .await,
    )
    .unwrap()
}

/// Waits until the delivery log shows rows, each with a status starting with `status`.
async fn wait_status(b: &mut Browser, status: &str) {
    b.run(&format!(
        "wait_js (() => {{ const r = [...document.querySelectorAll('#delivery-rows tr')]; \
         return !document.getElementById('deliveries-table').hidden && r.length > 0 \
         && r.every((x) => x.cells[3].textContent.startsWith({status:?})); }})()"
    ))
    .await;
}

/// The field labelled `label`: its value, whether it is read-only, and whether it has focus.
async fn field(b: &mut Browser, label: &str) -> (String, bool, bool) {
    serde_json::from_str(
        &b.run(&format!(
            "eval (() => {{ const f = [...document.querySelectorAll('label')]\
             .find((l) => l.textContent === {label:?}).control; \
             return [f.value, f.readOnly, document.activeElement === f]; }})()"
        ))
        .await,
    )
    .expect("the field")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_runs_an_event_endpoint_on_the_admin_page() {
    let (fake, events, mut config) = common::live_config(Settings {
        media_addr: Some("127.0.0.1".into()),
        media_ports: Some("ephemeral:8".into()),
        cookie_secure: Some(false),
        operator_key: Some(Secret::new(KEY)),
        secrets_key: Some(Secret::new(SECRETS_KEY)),
        // The receiver is on loopback; a failing event is retried every 0.2 s and fails for
        // good after 3.6 s (0.001 h), so switchboard disables its endpoint within the test.
        events_private_targets: Some(true),
        events_retry_first: Some(0.2),
        events_retry_hours: Some(0.001),
        wrap_up: Some(0.0),
        ..Settings::default()
    })
    .await;
    config.auth.people = vec![
        common::person("ada", Role::Admin, &[]),
        common::person("sam", Role::Supervisor, &[]),
        common::person("alice", Role::Agent, &["support"]),
    ];
    std::fs::create_dir_all(SHOTS).unwrap();
    let running = app::start(config).await.unwrap();
    let sim = common::simulator(&running, &fake, events, None);
    let admin_url = format!("http://{}/admin", running.http_addr);
    let receiver = Receiver::default();
    let url = format!("http://{}/events", receiver.clone().serve().await);

    // ada, an admin, finds the account without endpoints, and a form to add one.
    let mut admin = Browser::start(660.0);
    admin.sign_in(&admin_url, "ada", common::PASSWORD).await;
    admin.run("wait_heading Event endpoints").await;
    admin.run("wait_text endpoint-rows No endpoints yet.").await;
    assert_eq!(
        admin
            .run("eval document.getElementById('endpoints-alert').hidden")
            .await,
        "true",
        "no notice while no endpoint is disabled"
    );

    // She adds one for the receiver, for some of the events, through the labelled controls.
    admin.run(&format!("fill Endpoint URL|{url}")).await;
    admin.run("fill Description|crm backend").await;
    for t in [
        "call.offered",
        "call.ringing",
        "call.answered",
        "call.ended",
        "agent.state",
    ] {
        admin.run(&format!("check {t}")).await;
    }
    admin.run("click Add endpoint").await;
    admin
        .run("wait_text status Saved by ada: event endpoint crm backend added")
        .await;
    // Its secret, once, in a labelled read-only field with the focus.
    admin.run("wait_visible new-secret").await;
    let (secret, read_only, focused) = field(
        &mut admin,
        "Signing secret — copy it now, it will not be shown again",
    )
    .await;
    assert!(
        read_only && focused,
        "the secret's field is read-only and has focus"
    );
    assert!(secret.starts_with("whsec_"), "a secret: {secret:?}");
    receiver.set_secret(&secret);
    let row = rows(&mut admin, "endpoint-rows").await;
    assert_eq!(row.len(), 1, "{row:?}");
    assert_eq!(
        row[0][..4],
        [
            url.as_str(),
            "crm backend",
            "call.offered, call.ringing, call.answered, call.ended, agent.state",
            "Enabled"
        ]
    );
    assert!(row[0][4].ends_with(" by ada"), "{row:?}");
    assert_eq!(row[0][5], "DeliveriesDisableNew secretRemove");
    let listed = ok(&running, "GET", "/api/v1/accounts/default/endpoints").await;
    let endpoint = listed["endpoints"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(listed["endpoints"][0]["url"], url.as_str());
    assert_eq!(
        listed["endpoints"][0]["types"],
        json!([
            "call.offered",
            "call.ringing",
            "call.answered",
            "call.ended",
            "agent.state"
        ])
    );
    admin
        .run(&format!("shot {SHOTS}/admin-endpoint-secret.png"))
        .await;
    admin
        .assert_accessible("the admin page, an endpoint's secret just shown")
        .await;

    // Reloaded, the page has no way to show it again.
    admin.run(&format!("goto {admin_url}")).await;
    admin.run(&format!("wait_text endpoint-rows {url}")).await;
    assert_eq!(
        admin
            .run(&format!(
                "eval [document.getElementById('new-secret-part').hidden, \
                 document.getElementById('new-secret').value, \
                 document.body.innerText.includes({secret:?})]"
            ))
            .await,
        "[true,\"\",false]"
    );

    // A call: its events and alice's reach the receiver, signed with that secret.
    let mut alice = SimAgent::start(
        running.http_addr,
        "alice",
        common::PASSWORD,
        common::LOOPBACK,
        1,
    )
    .await
    .unwrap();
    let call = a_call(&sim, &mut alice).await;
    receiver
        .until("the call's end", |got| {
            got.iter()
                .any(|g| g.kind == "call.ended" && g.about == call)
        })
        .await;
    assert!(
        receiver
            .got
            .lock()
            .unwrap()
            .iter()
            .all(|g| g.signed && g.taken),
        "every delivery signed with the secret the page showed"
    );
    let log = log_until(&running, &endpoint, "the call's events delivered", |log| {
        log.iter().any(|d| d["type"] == "call.ended")
            && log.iter().all(|d| d["status"] == "delivered")
    })
    .await;

    // The delivery log on the page: newest first, each delivered at the first attempt.
    admin.run("click Deliveries to crm backend").await;
    admin
        .run(&format!("wait_heading Deliveries to crm backend ({url})"))
        .await;
    admin.run("wait_visible deliveries-table").await;
    let ids: Vec<&str> = log.iter().map(|d| d["msg_id"].as_str().unwrap()).collect();
    assert_eq!(
        shown_ids(&mut admin).await,
        ids,
        "as the API lists them, newest first"
    );
    let shown = rows(&mut admin, "delivery-rows").await;
    for (d, r) in log.iter().zip(&shown) {
        let kind = d["type"].as_str().unwrap();
        assert!(r[1].starts_with(kind), "{r:?}");
        let about = if kind == "agent.state" {
            "alice"
        } else {
            call.as_str()
        };
        assert_eq!(r[2], about, "{r:?}");
        assert!(r[3].starts_with("Delivered"), "{r:?}");
        assert_eq!(r[4], "1", "{r:?}");
        assert!(r[5].starts_with("HTTP 204 ("), "{r:?}");
        assert_eq!(r[6], "Redeliver", "{r:?}");
    }
    let kinds: Vec<&str> = log.iter().map(|d| d["type"].as_str().unwrap()).collect();
    for kind in [
        "call.offered",
        "call.ringing",
        "call.answered",
        "call.ended",
        "agent.state",
    ] {
        assert!(kinds.contains(&kind), "{kind} in the log: {kinds:?}");
    }
    admin
        .run(&format!("shot {SHOTS}/admin-endpoint-deliveries.png"))
        .await;
    admin
        .assert_accessible("the admin page, an endpoint's delivery log")
        .await;

    // A new secret, once ada confirms: shown once, and what deliveries are signed with now.
    admin.run("click New secret for crm backend").await;
    admin
        .run("wait_heading Give crm backend a new secret?")
        .await;
    admin
        .assert_accessible("the admin page, asking before a new secret")
        .await;
    admin.run("click Make new secret").await;
    admin
        .run("wait_text status Saved by ada: event endpoint crm backend has a new signing secret")
        .await;
    admin.run("wait_visible new-secret").await;
    let (rotated, _, focused) = field(
        &mut admin,
        "Signing secret — copy it now, it will not be shown again",
    )
    .await;
    assert!(focused, "the new secret's field has focus");
    assert!(
        rotated.starts_with("whsec_") && rotated != secret,
        "{rotated:?}"
    );
    receiver.set_secret(&rotated);

    // ada redelivers the call's end: the receiver gets the same webhook-id again, signed anew.
    let ended = log.iter().find(|d| d["type"] == "call.ended").unwrap()["msg_id"]
        .as_str()
        .unwrap()
        .to_owned();
    admin
        .run(&format!("click Redeliver call.ended {ended}"))
        .await;
    admin
        .run(&format!(
            "wait_text status Sent again by ada: call.ended event {ended}"
        ))
        .await;
    receiver
        .until("the redelivery", |got| {
            got.iter().filter(|g| g.id == ended).count() == 2
        })
        .await;
    let again = receiver
        .got
        .lock()
        .unwrap()
        .iter()
        .rfind(|g| g.id == ended)
        .cloned()
        .unwrap();
    assert!(
        again.taken && again.signed,
        "signed with the new secret: {again:?}"
    );
    log_until(&running, &endpoint, "the redelivery in the log", |log| {
        log.iter().any(|d| {
            d["msg_id"] == ended.as_str() && d["attempts"] == 2 && d["status"] == "delivered"
        })
    })
    .await;
    admin.run("click Refresh deliveries").await;
    admin
        .run(&format!(
            "wait_js document.getElementById('delivery-{ended}')?.cells[4].textContent === '2'"
        ))
        .await;
    // Filtered by status: none failed.
    admin.run("select Delivery status|Failed").await;
    admin
        .run("wait_text deliveries-note No failed events yet.")
        .await;
    admin.run("select Delivery status|Delivered").await;
    wait_status(&mut admin, "Delivered").await;
    admin.run("select Delivery status|All").await;
    admin.run("wait_visible deliveries-table").await;

    // Disabled by ada, and enabled again: no notice, that was hers.
    admin.run("click Disable crm backend").await;
    admin
        .run("wait_text status Saved by ada: event endpoint crm backend disabled")
        .await;
    admin
        .run("wait_js document.getElementById('endpoint-rows').rows[0].cells[3].textContent === 'Disabled'")
        .await;
    assert_eq!(
        admin
            .run("eval [document.getElementById('endpoints-alert').hidden, document.activeElement.textContent]")
            .await,
        "[true,\"Enable\"]",
        "the focus stays on the row's button, which now enables"
    );
    let listed = ok(
        &running,
        "GET",
        &format!("/api/v1/accounts/default/endpoints/{endpoint}"),
    )
    .await;
    assert_eq!(
        (listed["enabled"].clone(), listed["disabled_reason"].clone()),
        (json!(false), Value::Null)
    );
    admin.run("click Enable crm backend").await;
    admin
        .run("wait_text status Saved by ada: event endpoint crm backend enabled.")
        .await;
    admin
        .run("wait_js document.getElementById('endpoint-rows').rows[0].cells[3].textContent === 'Enabled'")
        .await;

    // The receiver is down through a whole retry window: switchboard disables the endpoint, and
    // the page tells ada at the top of the section why, with the button to enable it again.
    receiver.set_down(true);
    let second = a_call(&sim, &mut alice).await;
    let disabled = common::eventually(
        "switchboard disabled the endpoint",
        Duration::from_secs(20),
        || async {
            let e = ok(
                &running,
                "GET",
                &format!("/api/v1/accounts/default/endpoints/{endpoint}"),
            )
            .await;
            (e["enabled"] == false).then_some(e)
        },
    )
    .await;
    let reason = disabled["disabled_reason"]
        .as_str()
        .expect("a reason")
        .to_owned();
    assert!(reason.contains("HTTP 503"), "{reason}");
    admin.run("click Reload").await;
    admin.run("wait_visible endpoints-alert").await;
    let notice: String = serde_json::from_str(
        &admin
            .run("eval document.getElementById('endpoints-alert').textContent")
            .await,
    )
    .unwrap();
    assert!(
        notice.starts_with(&format!(
            "switchboard disabled event endpoint crm backend ({url}): {reason}."
        )) && notice.ends_with("Enable"),
        "{notice}"
    );
    assert_eq!(
        admin
            .run("eval document.getElementById('endpoints-alert').getAttribute('role')")
            .await,
        "\"alert\""
    );
    assert_eq!(
        rows(&mut admin, "endpoint-rows").await[0][3],
        format!("Disabled by switchboard: {reason}")
    );
    // The log (still open, read again): the event that failed, and the call's others kept.
    admin.run("select Delivery status|Failed").await;
    wait_status(&mut admin, "Failed").await;
    let failed = rows(&mut admin, "delivery-rows").await;
    assert!(!failed.is_empty(), "a failed event");
    for r in &failed {
        assert!(r[3].starts_with("Failed"), "{r:?}");
        assert!(r[5].starts_with("HTTP 503 ("), "{r:?}");
    }
    let failed_ids = shown_ids(&mut admin).await;
    admin.run("select Delivery status|Paused").await;
    wait_status(&mut admin, "Paused: kept until the endpoint is enabled").await;
    admin
        .run("eval document.getElementById('endpoints').scrollIntoView()")
        .await;
    admin
        .run(&format!("shot {SHOTS}/admin-endpoint-disabled.png"))
        .await;
    admin
        .assert_accessible("the admin page, an endpoint switchboard disabled")
        .await;

    // A supervisor reads all of it, and can change none of it.
    let mut sam = Browser::start(440.0);
    sam.sign_in(&admin_url, "sam", common::PASSWORD).await;
    sam.run("wait_visible endpoints-alert").await;
    sam.run(&format!("wait_text endpoint-rows {url}")).await;
    let seen = rows(&mut sam, "endpoint-rows").await;
    assert_eq!(seen[0][3], format!("Disabled by switchboard: {reason}"));
    assert_eq!(seen[0][5], "Deliveries", "only the log to read");
    assert_eq!(
        sam.run(
            "eval [document.getElementById('add-endpoint-part').hidden, \
             document.querySelectorAll('#endpoints-alert button').length]"
        )
        .await,
        "[true,0]"
    );
    sam.run("click Deliveries to crm backend").await;
    sam.run("wait_visible deliveries-table").await;
    assert_eq!(
        sam.run(
            "eval [document.getElementById('deliveries-actions').hidden, \
             document.querySelectorAll('#delivery-rows button').length, \
             document.querySelector('#delivery-rows tr').cells.length]"
        )
        .await,
        "[true,0,6]"
    );
    sam.assert_accessible("the admin page, a supervisor reading an endpoint")
        .await;
    drop(sam);

    // ada enables it from the notice once the receiver is up: the kept events go, in order.
    receiver.set_down(false);
    admin.run("click Enable crm backend").await;
    admin
        .run("wait_text status Saved by ada: event endpoint crm backend enabled; its kept events go now.")
        .await;
    admin
        .run("wait_js document.getElementById('endpoints-alert').hidden")
        .await;
    assert_eq!(
        admin
            .run("eval document.activeElement.getAttribute('aria-label')")
            .await,
        "\"Disable crm backend\"",
        "the notice gone, the keyboard is on the endpoint's own button"
    );
    assert_eq!(rows(&mut admin, "endpoint-rows").await[0][3], "Enabled");
    receiver
        .until("the second call's kept events", |got| {
            got.iter()
                .any(|g| g.taken && g.kind == "call.ended" && g.about == second)
        })
        .await;
    // And what failed, sent again by hand.
    admin.run("select Delivery status|Failed").await;
    wait_status(&mut admin, "Failed").await;
    let log = ok(
        &running,
        "GET",
        &format!("/api/v1/accounts/default/endpoints/{endpoint}/deliveries?status=failed"),
    )
    .await;
    for lost in &failed_ids {
        let d = log["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["msg_id"] == lost.as_str())
            .expect("the failed event in the log");
        admin
            .run(&format!(
                "click Redeliver {} {lost}",
                d["type"].as_str().unwrap()
            ))
            .await;
        receiver
            .until("the failed event, taken", |got| {
                got.iter().any(|g| g.id == *lost && g.taken)
            })
            .await;
    }
    log_until(&running, &endpoint, "every event delivered", |log| {
        log.iter().all(|d| d["status"] == "delivered")
    })
    .await;
    assert!(
        receiver.got.lock().unwrap().iter().all(|g| g.signed),
        "every delivery signed"
    );

    // More calls, until the log is longer than the page's 20 rows: More reads the older ones,
    // from the keyboard too.
    let path = format!("/api/v1/accounts/default/endpoints/{endpoint}/deliveries?limit=500");
    for _ in 0..4 {
        if ok(&running, "GET", &path).await["deliveries"]
            .as_array()
            .unwrap()
            .len()
            > 20
        {
            break;
        }
        let c = a_call(&sim, &mut alice).await;
        receiver
            .until("another call's end", |got| {
                got.iter()
                    .any(|g| g.taken && g.kind == "call.ended" && g.about == c)
            })
            .await;
    }
    log_until(
        &running,
        &endpoint,
        "a log longer than a page, delivered",
        |log| log.len() > 20 && log.iter().all(|d| d["status"] == "delivered"),
    )
    .await;
    admin.run("select Delivery status|All").await;
    admin
        .run(
            "wait_js document.querySelectorAll('#delivery-rows tr').length === 20 \
             && !document.getElementById('deliveries-more').hidden",
        )
        .await;
    admin.run("focus More").await;
    admin.run("press Enter").await;
    admin
        .run("wait_js document.getElementById('deliveries-more').hidden")
        .await;
    let log = ok(&running, "GET", &path).await;
    let ids: Vec<&str> = log["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["msg_id"].as_str().unwrap())
        .collect();
    assert!(ids.len() > 20 && ids.len() <= 40, "{}", ids.len());
    assert_eq!(shown_ids(&mut admin).await, ids, "both pages, newest first");
    assert_eq!(
        admin
            .run(
                "eval [document.activeElement.tagName, \
                 document.activeElement.closest('tr')?.id, \
                 document.getElementById('deliveries-note').textContent]"
            )
            .await,
        serde_json::to_string(&json!([
            "SUMMARY",
            format!("delivery-{}", ids[20]),
            format!("{} events, newest first.", ids.len())
        ]))
        .unwrap(),
        "the keyboard goes on from the first older row"
    );

    // ada removes it, once she confirms: gone, with its log.
    admin.run("click Remove crm backend").await;
    admin.run("wait_heading Remove endpoint crm backend?").await;
    assert_eq!(
        admin.run("eval document.activeElement.textContent").await,
        "\"Cancel\"",
        "Enter on opening does not remove"
    );
    admin
        .assert_accessible("the admin page, removing an endpoint")
        .await;
    admin.run("click Remove endpoint").await;
    admin
        .run("wait_text status Saved by ada: event endpoint crm backend removed.")
        .await;
    admin.run("wait_text endpoint-rows No endpoints yet.").await;
    assert_eq!(
        admin
            .run(
                "eval [document.getElementById('deliveries-part').hidden, \
                 document.getElementById('new-secret-part').hidden, \
                 document.activeElement.id]"
            )
            .await,
        "[true,true,\"e-url\"]"
    );
    let (status, _) = common::api(
        &reqwest::Client::new(),
        running.http_addr,
        "GET",
        &format!("/api/v1/accounts/default/endpoints/{endpoint}"),
        KEY,
        None,
    )
    .await;
    assert_eq!(status, 404);
    // The audit log says who did what to it.
    admin
        .run("wait_contains audit-rows removed an event endpoint")
        .await;
    let audit = rows(&mut admin, "audit-rows").await;
    for (who, what) in [
        ("ada", "added an event endpoint"),
        ("ada", "gave an event endpoint a new secret"),
        ("ada", "changed an event endpoint"),
        ("switchboard", "disabled an event endpoint"),
        ("ada", "removed an event endpoint"),
    ] {
        assert!(
            audit
                .iter()
                .any(|r| r[1] == who && r[2] == what && r[3] == endpoint),
            "{who} {what} in the audit log: {audit:?}"
        );
    }
    assert!(
        !audit
            .iter()
            .flatten()
            .any(|c| c.contains(&secret) || c.contains(&rotated)),
        "no secret in the audit log"
    );
    admin
        .assert_accessible("the admin page, an endpoint removed")
        .await;

    drop(alice);
    drop(admin);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_says_why_an_endpoint_cannot_be_added() {
    // Neither a secrets key nor private targets: what a deployment refuses, the page says.
    let (_fake, _events, mut config) = common::live_config(Settings {
        media_addr: Some("127.0.0.1".into()),
        media_ports: Some("ephemeral:8".into()),
        cookie_secure: Some(false),
        ..Settings::default()
    })
    .await;
    config.auth.people = vec![common::person("ada", Role::Admin, &[])];
    let running = app::start(config).await.unwrap();
    let admin_url = format!("http://{}/admin", running.http_addr);
    let mut admin = Browser::start(660.0);
    admin.sign_in(&admin_url, "ada", common::PASSWORD).await;
    admin.run("wait_text endpoint-rows No endpoints yet.").await;

    // A loopback URL: refused, the field marked and focused.
    admin
        .run("fill Endpoint URL|http://127.0.0.1:9/events")
        .await;
    admin.run("click Add endpoint").await;
    admin
        .run("wait_text add-endpoint-error Endpoint URL: ")
        .await;
    assert_eq!(
        admin
            .run(
                "eval [document.activeElement.id, \
                 document.getElementById('e-url').getAttribute('aria-invalid')]"
            )
            .await,
        "[\"e-url\",\"true\"]"
    );
    admin
        .assert_accessible("the admin page, an endpoint's URL refused")
        .await;

    // A public one: no secret can be kept without SWITCHBOARD_SECRETS_KEY, and the page says so.
    admin
        .run("fill Endpoint URL|https://hooks.example.com/events")
        .await;
    admin.run("click Add endpoint").await;
    admin
        .run("wait_contains add-endpoint-error SWITCHBOARD_SECRETS_KEY")
        .await;
    let said: String = serde_json::from_str(
        &admin
            .run("eval document.getElementById('add-endpoint-error').textContent")
            .await,
    )
    .unwrap();
    assert!(
        said.starts_with("Signing secret: SWITCHBOARD_SECRETS_KEY is not set")
            && said.ends_with("until then no endpoint can be added."),
        "{said}"
    );
    assert_eq!(
        admin
            .run("eval [document.getElementById('e-url').hasAttribute('aria-invalid'), document.getElementById('new-secret-part').hidden]")
            .await,
        "[false,true]"
    );
    admin.run("wait_text endpoint-rows No endpoints yet.").await;

    drop(admin);
    running.shutdown().await;
}
