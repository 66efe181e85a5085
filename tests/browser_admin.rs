//! The administration page (`/admin`, issue 23) in real headless Chromium, driven only through
//! its labelled controls, against switchboard in live mode and the fake Graph API: a supervisor
//! adds an agent there, the agent signs in on the agent page at once and answers a call, and the
//! change shows who made it (to the supervisor at once, and in the audit log an admin reads).
//!
//! Needs Debian's `chromium` and `tests/browser/node_modules` (playwright-core); `scripts/deps`
//! installs both. Screenshots land in `target/browser-shots/`.

mod common;

use common::{Browser, LONG};
use switchboard::app;
use switchboard::config::{Role, Settings};
use switchboard::whatsapp::simulator::CallPhase;

const SHOTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/browser-shots");

/// axe-core finds no serious or critical accessibility violation on the page as it is now.
async fn assert_accessible(b: &mut Browser, what: &str) {
    let found = b.run("axe").await;
    assert_eq!(found, "[]", "accessibility violations on {what}: {found}");
}

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
    assert_accessible(&mut admin, "the admin page's sign-in form").await;
    admin.sign_in(&admin_url, "sam", common::PASSWORD).await;
    admin.run("wait_text person-sam sam").await;
    // The audit log is an admin's: a supervisor is told so.
    admin
        .run("wait_text audit-note Only admins see the audit log.")
        .await;
    assert_accessible(&mut admin, "the admin page, a supervisor signed in").await;

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
    assert_accessible(&mut admin, "the admin page after adding a person").await;

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
    assert_accessible(&mut admin, "the admin page, an agent signed in").await;

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
    assert_accessible(&mut admin, "the admin page, an admin signed in").await;

    drop(bob);
    drop(admin);
    running.shutdown().await;
}
