//! The embeddable softphone (issue 24, `/sdk/v1/switchboard.js`) in real headless Chromium: a
//! page of the customer's own product, served by a second HTTP server standing for the host
//! (`tests/browser/host/`, with a strict Content Security Policy of its own), imports the module
//! from switchboard with a session the host's backend minted (`POST /api/v1/sessions` with an
//! account API key), renders `<switchboard-phone>`, goes away and available, answers a call
//! through the element's labelled Answer button, hears the caller (and the caller the page),
//! mutes with the agent page's shortcut, resumes the call after a reload and after a new token
//! handed to the element, hangs up from the keyboard and refreshes its own session. The same
//! page served from an origin the account does not allow is refused, and says so. axe-core
//! checks the page with the element at each step.
//!
//! Needs Debian's `chromium` and `tests/browser/node_modules` (playwright-core); `scripts/deps`
//! installs both. Screenshots land in `target/browser-shots/`.

mod common;

use std::net::SocketAddr;

use axum::http::header;
use axum::routing::get;
use axum::Router;
use common::{Browser, LONG};
use serde_json::{json, Value};
use switchboard::app;
use switchboard::config::{Secret, Settings};
use switchboard::whatsapp::simulator::{CallPhase, CallSpec, CallerAudio};

const SHOTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/browser-shots");
const KEY: &str = "0123456789abcdef0123456789abcdef-operator";
/// 32 bytes in base64.
const SECRETS_KEY: &str = "c3dpdGNoYm9hcmQtdGVzdC1zZWNyZXRzLWtleS0zMmI=";
/// Acme's business number and Graph token.
const ACME_NUMBER: &str = "300000000000011";
const ACME_TOKEN: &str = "acme-graph-access-token";
/// The element's phone.
const PHONE: &str = "document.querySelector('switchboard-phone').phone";

/// How many lines of the host page's event log start with `what`.
fn logged(what: &str) -> String {
    format!(
        "[...document.querySelectorAll('#events li')]\
         .filter((l) => l.textContent.startsWith({what:?})).length"
    )
}

/// A session for ann, minted by the host's backend with its API key.
async fn mint(sb: SocketAddr, key: &str) -> String {
    ok(
        sb,
        "POST",
        "/api/v1/sessions",
        key,
        json!({"person": "ann"}),
    )
    .await["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `GET /api/me`'s status with `token`.
async fn me(sb: SocketAddr, token: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("http://{sb}/api/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The dominant frequency the element's phone plays of the caller, over 3 s.
async fn page_hears(page: &mut Browser) -> f64 {
    page.run(&format!("measure_expr 3000 {PHONE}.audio.party"))
        .await
        .parse()
        .expect("a frequency")
}

/// The host's web server: `tests/browser/host/` with a Content Security Policy of the host's
/// own, as strict as switchboard's (no inline script or style, no eval), that lets the page
/// import the module from switchboard at `sb` and connect to it. Its address.
async fn host_server(sb: SocketAddr) -> SocketAddr {
    let csp: &'static str = Box::leak(
        format!(
            "default-src 'self'; script-src 'self' http://{sb}; style-src 'self'; \
             connect-src 'self' http://{sb} ws://{sb}; img-src 'self'; object-src 'none'; \
             base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
        )
        .into_boxed_str(),
    );
    let file = move |content_type: &'static str, body: &'static str| {
        get(move || async move {
            (
                [
                    (header::CONTENT_TYPE, content_type),
                    (header::CONTENT_SECURITY_POLICY, csp),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                body,
            )
        })
    };
    let app = Router::new()
        .route(
            "/",
            file(
                "text/html; charset=utf-8",
                include_str!("browser/host/index.html"),
            ),
        )
        .route(
            "/host.js",
            file(
                "text/javascript; charset=utf-8",
                include_str!("browser/host/host.js"),
            ),
        )
        .route(
            "/host.css",
            file(
                "text/css; charset=utf-8",
                include_str!("browser/host/host.css"),
            ),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// `method path` on switchboard with `token` and `body`; asserts success, answers the JSON.
async fn ok(sb: SocketAddr, method: &str, path: &str, token: &str, body: Value) -> Value {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let r = reqwest::Client::new()
        .request(method.clone(), format!("http://{sb}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v = r.json::<Value>().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{method} {path}: {status} {v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_page_answers_a_call_with_the_softphone_and_another_origin_is_refused() {
    let (fake, events, config) = common::live_config(Settings {
        media_addr: Some("127.0.0.1".into()),
        media_ports: Some("ephemeral:8".into()),
        operator_key: Some(Secret::new(KEY)),
        secrets_key: Some(Secret::new(SECRETS_KEY)),
        ..Settings::default()
    })
    .await;
    fake.add_number(ACME_NUMBER, ACME_TOKEN);
    std::fs::create_dir_all(SHOTS).unwrap();
    let running = app::start(config).await.unwrap();
    let sb = running.http_addr;
    let sim = common::simulator(&running, &fake, events, None);
    // The host's product, and a page of it served from an origin acme never allowed.
    let host = host_server(sb).await;
    let elsewhere = host_server(sb).await;

    // The operator makes acme; acme allows the host's origin; its backend holds an API key and
    // mints a session for ann, who never sees a switchboard password.
    ok(
        sb,
        "POST",
        "/api/v1/accounts",
        KEY,
        json!({
            "slug": "acme",
            "name": "Acme",
            "access_token": ACME_TOKEN,
            "numbers": [{"phone_number_id": ACME_NUMBER}],
            "queues": [{"id": "support", "policy": "queue"}],
            "default_queue": "support",
        }),
    )
    .await;
    ok(
        sb,
        "PATCH",
        "/api/v1/accounts/acme/settings",
        KEY,
        json!({"allowed_origins": [format!("http://{host}")]}),
    )
    .await;
    ok(
        sb,
        "POST",
        "/api/v1/accounts/acme/people",
        KEY,
        json!({"id": "ann", "name": "Ann", "role": "agent", "queues": ["support"],
               "password": common::PASSWORD}),
    )
    .await;
    let key = ok(
        sb,
        "POST",
        "/api/v1/accounts/acme/keys",
        KEY,
        json!({"name": "inbox backend"}),
    )
    .await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = mint(sb, &key).await;
    let query = format!("?url=http://{sb}&token={token}");

    // The host's page: the phone connects with the token and ann is Available once her audio
    // is up (by itself, as on the agent page).
    let mut page = Browser::start(440.0);
    page.run(&format!("goto http://{host}/{query}")).await;
    page.run("wait_text status Phone: Available").await;
    page.run("wait_in switchboard-phone #state|Available").await;
    // Away with a reason through the element's labelled controls, and back.
    page.run("select Away reason|Lunch").await;
    page.run("click Away").await;
    page.run("wait_in switchboard-phone #state|Away (Lunch)")
        .await;
    page.run("wait_text status Phone: Away (Lunch)").await;
    page.run("click Available").await;
    page.run("wait_text status Phone: Available").await;
    page.run(&format!("shot {SHOTS}/sdk-available.png")).await;
    page.assert_accessible("the host page with the phone").await;

    // A call to acme's number rings on the host's page.
    let call = sim
        .place_call(CallSpec {
            to: Some(ACME_NUMBER.into()),
            audio: CallerAudio::Tone { hz: 1000.0 },
            hang_up_after: None,
            ..CallSpec::default()
        })
        .await
        .unwrap();
    page.run("wait_heading Incoming call").await;
    page.run("wait_contains events ringing").await;
    // Nothing else of the page had the keyboard: Answer has it.
    assert_eq!(
        page.run("eval document.activeElement?.shadowRoot?.activeElement?.textContent ?? null")
            .await,
        "\"Answer\""
    );
    page.run(&format!("shot {SHOTS}/sdk-ringing.png")).await;
    page.assert_accessible("the host page, ringing").await;
    page.run("click Answer").await;
    page.run("wait_button Hang up").await;
    call.wait_for(LONG, |p| *p == CallPhase::Accepted)
        .await
        .expect("ann answered on the host's page");
    page.run("wait_contains events talking").await;
    page.assert_accessible("the host page, in a call").await;
    let heard = page_hears(&mut page).await;
    assert!(
        common::near(heard, 1000.0),
        "the page hears the caller's 1 kHz: {heard}"
    );
    let at_caller = common::caller_hears(&call, 100)
        .await
        .expect("the caller hears audio");
    assert!(
        common::near(at_caller, 440.0),
        "the caller hears the page's 440 Hz: {at_caller}"
    );

    // The agent page's shortcuts work while the focus is in the element: Alt+M mutes, and
    // again unmutes.
    page.run("focus Hold").await;
    page.run("press Alt+m").await;
    page.run("wait_in switchboard-phone #mute[aria-pressed=\"true\"]|Mute")
        .await;
    page.run("press Alt+m").await;
    page.run("wait_in switchboard-phone #mute[aria-pressed=\"false\"]|Mute")
        .await;

    // A reload mid-call: the phone connects again with the same token within the grace period
    // and the call resumes.
    page.run("eval location.reload()").await;
    page.run("wait_button Hang up").await;
    let heard = page_hears(&mut page).await;
    assert!(
        common::near(heard, 1000.0),
        "after the reload the page hears the caller: {heard}"
    );

    // Before the session expires, the host's backend mints a new one and hands it to the
    // element: the phone goes on with it at once (a new socket), and so does the call.
    page.run(&format!("wait_js {} === 1", logged("ready")))
        .await;
    let second = mint(sb, &key).await;
    page.run(&format!(
        "eval document.querySelector('switchboard-phone').token = {second:?}"
    ))
    .await;
    page.run(&format!(
        "wait_js {} === 2 && {} === 2",
        logged("ready"),
        logged("talking")
    ))
    .await;
    let heard = page_hears(&mut page).await;
    assert!(
        common::near(heard, 1000.0),
        "on the new session the page hears the caller: {heard}"
    );
    let at_caller = common::caller_hears(&call, 100)
        .await
        .expect("the caller hears audio");
    assert!(
        common::near(at_caller, 440.0),
        "on the new session the caller hears the page: {at_caller}"
    );

    // Hang up from the keyboard.
    page.run("focus Hang up").await;
    page.run("press Enter").await;
    page.run("wait_heading Wrap-up").await;
    page.run("wait_contains events ended").await;
    page.run("click Done").await;
    page.run("wait_text status Phone: Available").await;
    call.wait_for(LONG, |p| matches!(p, CallPhase::Ended { .. }))
        .await
        .expect("the call ends at Meta");
    let actions: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r.call_id.as_ref() == Some(&call.call_id))
        .filter_map(|r| r.action.as_ref().map(|a| a.as_str().to_owned()))
        .collect();
    for action in ["accept", "terminate"] {
        assert!(
            actions.iter().any(|a| a == action),
            "Graph saw {action}: {actions:?}"
        );
    }

    // The page refreshes its own session (`POST /api/v1/sessions/refresh` from the host's
    // origin, CORS): the old token ends, the phone goes on with the new one.
    let third: String = serde_json::from_str(
        &page
            .run(&format!("eval {PHONE}.refresh().then((r) => r.token)"))
            .await,
    )
    .expect("the new token");
    page.run(&format!(
        "wait_js {} === 3 && {PHONE}.state.presence === 'available'",
        logged("ready")
    ))
    .await;
    assert_eq!(
        (me(sb, &second).await, me(sb, &third).await),
        (401, 200),
        "the refreshed token ended, the new one lives"
    );
    let query = format!("?url=http://{sb}&token={third}");

    // The same page, a live session, from an origin acme does not allow: the module
    // loads (it is public), the WebSocket is refused, and the page and the element say so.
    page.run(&format!("goto http://{elsewhere}/{query}")).await;
    page.run("wait_contains events error connect_failed").await;
    page.run("wait_text status Phone: Could not connect to switchboard")
        .await;
    page.run("wait_in switchboard-phone #notice|Could not connect to switchboard")
        .await;
    assert!(
        !page
            .run("eval document.getElementById('events').textContent")
            .await
            .contains("state connected"),
        "the refused page never connected"
    );
    page.run(&format!("shot {SHOTS}/sdk-refused.png")).await;
    page.assert_accessible("the host page, refused").await;

    drop(page);
    running.shutdown().await;
}
