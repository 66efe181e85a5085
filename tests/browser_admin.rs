//! The administration page (`/admin`, issue 23) in real headless Chromium, driven only through
//! its labelled controls, against switchboard in live mode and the fake Graph API: a supervisor
//! adds an agent there, the agent signs in on the agent page at once and answers a call, and the
//! change shows who made it (to the supervisor at once, and in the audit log an admin reads).
//! An admin then makes an API key there, which a server uses until the admin revokes it on the
//! page, and edits the away reasons the supervisor could only read.
//!
//! Needs Debian's `chromium` and `tests/browser/node_modules` (playwright-core); `scripts/deps`
//! installs both. Screenshots land in `target/browser-shots/`.

mod common;

use common::{Browser, LONG};
use switchboard::app;
use switchboard::config::{Role, Settings};
use switchboard::whatsapp::simulator::CallPhase;

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
