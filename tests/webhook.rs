//! The webhook edge over real HTTP on 127.0.0.1: verification handshake, signatures, fixtures
//! from reference §3, batching, de-duplication, late connects, body limit, backpressure.
//!
//! A flood of refused requests leaves a few log lines carrying their count, not one per request.
//!
//! "Nothing came out" is proven without sleeping: after the request under test, a signed
//! marker webhook is sent and the next event must be the marker (the processor is FIFO).

mod common;

use std::time::{Duration, Instant, SystemTime};

use reqwest::StatusCode;
use switchboard::config::Secret;
use switchboard::ids::WaCallId;
use switchboard::whatsapp::model::{
    Call, CallEventKind, CallStatusKind, Change, ChangeValue, Entry, Metadata, SdpType, Session,
    TerminateStatus, UnixTime, WebhookEnvelope, FIELD_CALLS, OBJECT_WABA,
};
use switchboard::whatsapp::sdp::{check_offer, SAMPLE_META_OFFER};
use switchboard::whatsapp::webhook::{
    parse_webhook, router, sign, WaEvent, WebhookOptions, WebhookProcessor, WebhookState,
    SIGNATURE_HEADER,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const SECRET: &str = "app-secret-for-tests";
const VERIFY: &str = "verify-token-for-tests";
const WAIT: Duration = Duration::from_secs(5);

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

struct Harness {
    url: String,
    http: reqwest::Client,
    events: mpsc::Receiver<WaEvent>,
    processor: Option<WebhookProcessor>,
    state: WebhookState,
    server: JoinHandle<()>,
    markers: u32,
    /// The server's port, which makes this harness's markers its own.
    port: u16,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn start_with(options: WebhookOptions, event_capacity: usize) -> Harness {
    let (tx, events) = mpsc::channel(event_capacity);
    let (state, processor) =
        WebhookState::spawn(Secret::new(SECRET), Secret::new(VERIFY), tx, options);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = state.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, router(served)).await.unwrap();
    });
    Harness {
        url: format!("http://{addr}/webhooks/whatsapp"),
        http: reqwest::Client::new(),
        events,
        processor: Some(processor),
        state,
        server,
        markers: 0,
        port: addr.port(),
    }
}

async fn start() -> Harness {
    start_with(WebhookOptions::default(), 64).await
}

impl Harness {
    async fn post(&self, body: &[u8], signature: Option<&str>) -> StatusCode {
        let mut req = self.http.post(&self.url).body(body.to_vec());
        if let Some(sig) = signature {
            req = req.header(SIGNATURE_HEADER, sig);
        }
        req.send().await.unwrap().status()
    }

    async fn post_signed(&self, body: &[u8]) -> StatusCode {
        self.post(body, Some(&sign(SECRET, body))).await
    }

    async fn next_event(&mut self) -> WaEvent {
        tokio::time::timeout(WAIT, self.events.recv())
            .await
            .expect("an event within 5 s")
            .expect("event channel open")
    }

    /// Sends a signed marker and asserts it is the very next event: nothing else came out.
    async fn assert_nothing_came_out(&mut self) {
        self.markers += 1;
        // Unique per harness too: two harnesses sharing Redis must not take each other's.
        let id = format!("wacid.MARKER-{}-{}", self.port, self.markers);
        let body = json(&envelope(vec![value(vec![terminate_call(&id)])]));
        assert_eq!(self.post_signed(&body).await, StatusCode::OK);
        let ev = self.next_event().await;
        assert_eq!(
            ev.call_id().0,
            id,
            "unexpected event before the marker: {ev:?}"
        );
    }

    async fn get(&self, query: &str) -> reqwest::Response {
        self.http
            .get(format!("{}?{query}", self.url))
            .send()
            .await
            .unwrap()
    }
}

fn envelope(values: Vec<ChangeValue>) -> WebhookEnvelope {
    WebhookEnvelope {
        object: OBJECT_WABA.into(),
        entry: vec![Entry {
            id: "waba-1".into(),
            changes: values
                .into_iter()
                .map(|v| {
                    Change {
                        value: v.into(),
                        field: FIELD_CALLS.into(),
                    }
                    .into()
                })
                .collect(),
        }],
    }
}

fn value(calls: Vec<Call>) -> ChangeValue {
    ChangeValue {
        messaging_product: Some("whatsapp".into()),
        metadata: Some(Metadata {
            display_phone_number: Some("15550001111".into()),
            phone_number_id: Some("115017831530658".into()),
        }),
        calls: calls.into_iter().map(Into::into).collect(),
        ..Default::default()
    }
}

/// Now, in UNIX seconds, as Meta stamps a webhook it sends.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The fixture's body as Meta would send it now: the same call, its `timestamp` this second
/// (the fixture's own, from 2025, is far older than the freshness window).
fn fresh(body: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(body)
        .replace(
            r#""timestamp": "1753115233""#,
            &format!(r#""timestamp": "{}""#, unix_now()),
        )
        .into_bytes()
}

fn connect_call(id: &str) -> Call {
    connect_call_at(id, unix_now())
}

fn connect_call_at(id: &str, timestamp: u64) -> Call {
    Call {
        from: Some("15551234567".into()),
        to: Some("15550001111".into()),
        timestamp: Some(UnixTime(timestamp)),
        session: Some(Session::new(SdpType::Offer, SAMPLE_META_OFFER)),
        ..Call::new(WaCallId::from(id), CallEventKind::Connect)
    }
}

fn terminate_call(id: &str) -> Call {
    Call {
        status: Some(TerminateStatus::Completed),
        ..Call::new(WaCallId::from(id), CallEventKind::Terminate)
    }
}

fn json(v: &WebhookEnvelope) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

#[tokio::test]
async fn verification_handshake() {
    let h = start().await;
    let ok = h
        .get(&format!(
            "hub.mode=subscribe&hub.verify_token={VERIFY}&hub.challenge=1158201444"
        ))
        .await;
    assert_eq!(ok.status(), StatusCode::OK);
    let ct = ok.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain"), "{ct}");
    assert_eq!(ok.text().await.unwrap(), "1158201444");

    let wrong_token = h
        .get("hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1")
        .await;
    assert_eq!(wrong_token.status(), StatusCode::FORBIDDEN);
    let wrong_mode = h
        .get(&format!(
            "hub.mode=unsubscribe&hub.verify_token={VERIFY}&hub.challenge=1"
        ))
        .await;
    assert_eq!(wrong_mode.status(), StatusCode::FORBIDDEN);
    assert_eq!(h.get("").await.status(), StatusCode::FORBIDDEN);
    assert_eq!(h.state.stats().refused, 3);
}

#[tokio::test]
async fn signed_offer_is_delivered_as_typed_event() {
    let mut h = start().await;
    let body = fresh(&fixture("connect_offer.json"));
    let sent = unix_now();
    assert_eq!(h.post_signed(&body).await, StatusCode::OK);
    match h.next_event().await {
        WaEvent::CallOffered {
            call_id,
            phone_number_id,
            from,
            caller_name,
            offer_sdp,
            timestamp,
            ..
        } => {
            assert!(call_id.0.starts_with("wacid.HBgMOTE4"));
            assert_eq!(phone_number_id.as_deref(), Some("115017831530658"));
            assert_eq!(from.as_deref(), Some("91809753****"));
            assert_eq!(caller_name.as_deref(), Some("Rahul"));
            assert!(
                timestamp.is_some_and(|t| t.0.abs_diff(sent) <= 1),
                "{timestamp:?}"
            );
            assert_eq!(offer_sdp, SAMPLE_META_OFFER);
            check_offer(&offer_sdp).unwrap();
        }
        other => panic!("expected CallOffered, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_signatures_get_401_and_have_no_effect() {
    let mut h = start().await;
    let body = json(&envelope(vec![value(vec![connect_call("wacid.UNSIGNED")])]));
    let good = sign(SECRET, &body);
    let hex = good.trim_start_matches("sha256=");
    let mut altered = body.clone();
    altered[10] ^= 1;
    let cases: Vec<(&str, Option<String>, &[u8])> = vec![
        ("missing", None, &body),
        ("sha1 prefix", Some(format!("sha1={hex}")), &body),
        ("no prefix", Some(hex.to_owned()), &body),
        ("bad hex", Some(format!("sha256={}zz", &hex[..62])), &body),
        ("short", Some(format!("sha256={}", &hex[..40])), &body),
        ("wrong secret", Some(sign("another-secret", &body)), &body),
        ("body altered after signing", Some(good.clone()), &altered),
    ];
    for (name, sig, b) in cases {
        assert_eq!(
            h.post(b, sig.as_deref()).await,
            StatusCode::UNAUTHORIZED,
            "{name}"
        );
    }
    assert_eq!(h.state.stats().refused, 7);
    h.assert_nothing_came_out().await;
}

#[test]
fn every_reference_payload_parses() {
    let offer = parse_webhook(&fixture("connect_offer.json")).unwrap();
    assert!(matches!(&offer[..], [WaEvent::CallOffered { .. }]));

    let term = parse_webhook(&fixture("terminate.json")).unwrap();
    match &term[..] {
        [WaEvent::CallTerminated {
            call_id,
            status,
            duration,
            start_time,
            end_time,
            errors,
            biz_opaque_callback_data,
        }] => {
            assert_eq!(call_id.0, "wacid.ABGGFjFVU2AfAgo6V-Hc5eCgK5Gh");
            assert_eq!(status, &Some(TerminateStatus::Completed));
            assert_eq!(*duration, Some(120));
            assert_eq!(*start_time, Some(UnixTime(1_671_644_824)));
            assert_eq!(*end_time, Some(UnixTime(1_671_644_944)));
            assert_eq!(errors.len(), 1);
            assert_eq!(errors[0].code, 138021);
            assert_eq!(errors[0].message.as_deref(), Some("Media receive timeout"));
            assert_eq!(errors[0].details.as_deref(), Some("<ERROR_DETAILS>"));
            assert_eq!(
                biz_opaque_callback_data.as_deref(),
                Some("agent-42/queue-sales")
            );
        }
        other => panic!("{other:?}"),
    }

    let answer = parse_webhook(&fixture("connect_answer_business.json")).unwrap();
    match &answer[..] {
        [WaEvent::CallAnswered {
            call_id,
            answer_sdp,
        }] => {
            assert_eq!(call_id.0, "wacid.ABGGFjFVU2AfAgo6V-Hc5eCgK5Gh");
            assert!(answer_sdp.contains("a=setup:active"));
        }
        other => panic!("{other:?}"),
    }

    let status = parse_webhook(&fixture("status_ringing.json")).unwrap();
    match &status[..] {
        [WaEvent::CallStatusChanged {
            call_id,
            status,
            biz_opaque_callback_data,
            ..
        }] => {
            assert_eq!(call_id.0, "wacid.ABGGFjFVU2AfAgo6V");
            assert_eq!(*status, CallStatusKind::Ringing);
            assert_eq!(biz_opaque_callback_data.as_deref(), Some("random_string"));
        }
        other => panic!("{other:?}"),
    }

    // Meta's sample reply (reference §3.6) is read; the delivery status beside it is not.
    assert_eq!(
        parse_webhook(&fixture("call_permission_reply.json")).unwrap(),
        vec![WaEvent::PermissionReply {
            phone_number_id: Some("<PHONE_NUMBER_ID>".into()),
            user: "16315553601".into(),
            response: switchboard::whatsapp::model::PermissionResponse::Accept,
            permanent: false,
            expires_at: Some(UnixTime(1672249624)),
            source: Some("user_action".into()),
            context_id: Some("wamid.gBGGFjFVU2AfAgo6V-Hc5eCgK5Gh".into()),
            timestamp: Some(UnixTime(1671644824)),
            message_id: "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA=".into(),
        }]
    );
    assert_eq!(
        parse_webhook(&fixture("call_recording_available.json")).unwrap(),
        vec![]
    );
}

#[tokio::test]
async fn fixtures_over_http_including_ignored_ones() {
    let mut h = start().await;
    for name in [
        "call_permission_reply.json",
        "call_recording_available.json",
    ] {
        assert_eq!(
            h.post_signed(&fixture(name)).await,
            StatusCode::OK,
            "{name}"
        );
    }
    // The permission reply goes to the call centre; the recording notice does not.
    assert!(matches!(
        h.next_event().await,
        WaEvent::PermissionReply { .. }
    ));
    h.assert_nothing_came_out().await;
    for name in [
        "connect_answer_business.json",
        "terminate.json",
        "status_ringing.json",
    ] {
        assert_eq!(
            h.post_signed(&fixture(name)).await,
            StatusCode::OK,
            "{name}"
        );
    }
    assert!(matches!(h.next_event().await, WaEvent::CallAnswered { .. }));
    assert!(matches!(
        h.next_event().await,
        WaEvent::CallTerminated { .. }
    ));
    assert!(matches!(
        h.next_event().await,
        WaEvent::CallStatusChanged { .. }
    ));
    h.assert_nothing_came_out().await;
}

#[tokio::test]
async fn a_batch_yields_every_call() {
    let mut h = start().await;
    let mut env = envelope(vec![
        value(vec![connect_call("wacid.B1"), connect_call("wacid.B2")]),
        value(vec![terminate_call("wacid.B0")]),
    ]);
    env.entry.push(Entry {
        id: "waba-2".into(),
        changes: vec![Change {
            value: value(vec![connect_call("wacid.B3")]).into(),
            field: FIELD_CALLS.into(),
        }
        .into()],
    });
    assert_eq!(h.post_signed(&json(&env)).await, StatusCode::OK);
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(h.next_event().await.call_id().0.clone());
    }
    assert_eq!(ids, ["wacid.B1", "wacid.B2", "wacid.B0", "wacid.B3"]);
    h.assert_nothing_came_out().await;
}

#[tokio::test]
async fn duplicate_connect_gives_one_event() {
    let mut h = start().await;
    let body = json(&envelope(vec![value(vec![connect_call("wacid.DUP")])]));
    assert_eq!(h.post_signed(&body).await, StatusCode::OK);
    assert_eq!(h.post_signed(&body).await, StatusCode::OK);
    assert!(matches!(h.next_event().await, WaEvent::CallOffered { .. }));
    h.assert_nothing_came_out().await;
}

#[tokio::test]
async fn terminate_before_connect_drops_the_late_connect() {
    let mut h = start().await;
    let term = json(&envelope(vec![value(vec![terminate_call("wacid.LATE")])]));
    let conn = json(&envelope(vec![value(vec![connect_call("wacid.LATE")])]));
    assert_eq!(h.post_signed(&term).await, StatusCode::OK);
    assert_eq!(h.post_signed(&conn).await, StatusCode::OK);
    let ev = h.next_event().await;
    assert!(
        matches!(&ev, WaEvent::CallTerminated { call_id, .. } if call_id.0 == "wacid.LATE"),
        "{ev:?}"
    );
    h.assert_nothing_came_out().await;
}

#[tokio::test]
async fn body_over_the_limit_gets_413() {
    let mut h = start().await;
    let mut env = envelope(vec![value(vec![connect_call("wacid.BIG")])]);
    env.entry[0].id = "x".repeat(1024 * 1024 + 1);
    let body = json(&env);
    assert_eq!(h.post_signed(&body).await, StatusCode::PAYLOAD_TOO_LARGE);
    h.assert_nothing_came_out().await;
}

#[tokio::test]
async fn authenticated_garbage_is_accepted_counted_and_ignored() {
    let mut h = start().await;
    assert_eq!(h.post_signed(b"{not json").await, StatusCode::OK);
    assert_eq!(
        h.post_signed(br#"{"object":"page","entry":[]}"#).await,
        StatusCode::OK
    );
    h.assert_nothing_came_out().await;
    let stats = h.processor.take().unwrap().shutdown().await;
    assert_eq!(stats.invalid_bodies, 2);
    assert_eq!(stats.forwarded, 1);
    assert_eq!(stats.bodies, 3);
}

#[tokio::test]
async fn full_queue_answers_503_and_loses_nothing_accepted() {
    let options = WebhookOptions {
        queue_capacity: 1,
        ..WebhookOptions::default()
    };
    // Nobody reads events until the end, so the processor blocks and the queue fills.
    let mut h = start_with(options, 1).await;
    let mut accepted = Vec::new();
    let mut refused = false;
    for i in 0..10 {
        let id = format!("wacid.Q{i}");
        let body = json(&envelope(vec![value(vec![connect_call(&id)])]));
        match h.post_signed(&body).await {
            StatusCode::OK => accepted.push(id),
            StatusCode::SERVICE_UNAVAILABLE => {
                refused = true;
                break;
            }
            other => panic!("{other}"),
        }
    }
    assert!(refused, "a full queue must answer 503");
    assert!(accepted.len() <= 3, "{accepted:?}");
    for id in &accepted {
        assert_eq!(&h.next_event().await.call_id().0, id);
    }
    h.assert_nothing_came_out().await;
}

#[tokio::test]
async fn a_flood_of_refused_webhooks_leaves_a_few_lines_that_count_it() {
    const FLOOD: u64 = 2000;
    let logs = common::global_logs(tracing::Level::WARN);
    let interval = Duration::from_millis(200);
    let mut h = start_with(
        WebhookOptions {
            refusal_log_interval: interval,
            ..WebhookOptions::default()
        },
        64,
    )
    .await;
    let body = json(&envelope(vec![value(vec![connect_call("wacid.FLOOD")])]));
    // A signature that is not even ASCII: no other test in this file sends one, so the lines
    // whose first reason says so are this test's.
    let bad = reqwest::header::HeaderValue::from_bytes(b"sha256=\xff").unwrap();
    let started = Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..FLOOD / 100 {
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..100 {
            let req = h
                .http
                .post(&h.url)
                .header(SIGNATURE_HEADER, bad.clone())
                .body(body.clone());
            batch.spawn(async move { req.send().await.unwrap().status() });
        }
        while let Some(status) = batch.join_next().await {
            statuses.push(status.unwrap());
        }
    }
    assert_eq!(statuses.len() as u64, FLOOD);
    assert!(statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED));
    assert_eq!(h.state.stats().refused, FLOOD);
    h.assert_nothing_came_out().await;
    // Stopping the processor reports the refusals the last line had not.
    h.processor.take().unwrap().shutdown().await;
    let elapsed = started.elapsed();

    let text = logs.text();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("webhook refused") && l.contains("not ASCII"))
        .collect();
    // One line at the first refusal, at most one per interval after it, one at shutdown.
    let most = elapsed.as_millis() / interval.as_millis() + 2;
    assert!(
        (lines.len() as u128) <= most,
        "{} lines in {elapsed:?}:\n{}",
        lines.len(),
        lines.join("\n")
    );
    let counted: u64 = lines
        .iter()
        .map(|l| {
            let n = l.split(" refused=").nth(1).expect("a count");
            n.split(' ').next().unwrap().parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(counted, FLOOD, "{}", lines.join("\n"));
}

/// Two nodes behind one webhook URL, sharing Redis: Meta's copy of an event reaching both
/// (or a retry reaching the other) is taken by one node only; a connect whose terminate another
/// node took is late; different calls go through wherever they land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_sharing_redis_take_each_event_once() {
    let redis = common::Redis::start();
    let node = |name: &'static str| {
        let url = redis.url();
        async move {
            let cluster = switchboard::cluster::Cluster::connect(&url, name)
                .await
                .unwrap();
            start_with(
                WebhookOptions {
                    cluster: Some(cluster),
                    ..WebhookOptions::default()
                },
                64,
            )
            .await
        }
    };
    let mut a = node("node-a").await;
    let mut b = node("node-b").await;

    // The same connect delivered to both at once: one call, on whichever node took it first
    // (the two processors race for it). Each node's marker, queued after its copy, shows that
    // node has dealt with its copy.
    let dup = json(&envelope(vec![value(vec![connect_call("wacid.BOTH")])]));
    let (ra, rb) = tokio::join!(a.post_signed(&dup), b.post_signed(&dup));
    assert_eq!((ra, rb), (StatusCode::OK, StatusCode::OK));
    let first = tokio::time::timeout(WAIT, async {
        tokio::select! {
            Some(ev) = a.events.recv() => (ev, true),
            Some(ev) = b.events.recv() => (ev, false),
        }
    })
    .await
    .expect("one node takes the connect");
    let (taker, other) = match first {
        (ev, true) => (ev, &mut b),
        (ev, false) => (ev, &mut a),
    };
    assert!(
        matches!(&taker, WaEvent::CallOffered { call_id, .. } if call_id.0 == "wacid.BOTH"),
        "{taker:?}"
    );
    other.assert_nothing_came_out().await;
    a.assert_nothing_came_out().await;
    b.assert_nothing_came_out().await;

    // A terminate taken by node A makes the connect that reaches node B late.
    let term = json(&envelope(vec![value(vec![terminate_call("wacid.LATE2")])]));
    let conn = json(&envelope(vec![value(vec![connect_call("wacid.LATE2")])]));
    assert_eq!(a.post_signed(&term).await, StatusCode::OK);
    assert!(matches!(
        a.next_event().await,
        WaEvent::CallTerminated { .. }
    ));
    assert_eq!(b.post_signed(&conn).await, StatusCode::OK);
    b.assert_nothing_came_out().await;

    // Calls alternating between the nodes, as a load balancer sends them, each go through
    // once.
    for i in 0..6 {
        let id = format!("wacid.ALT{i}");
        let body = json(&envelope(vec![value(vec![connect_call(&id)])]));
        let (first, second) = if i % 2 == 0 {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        assert_eq!(first.post_signed(&body).await, StatusCode::OK);
        let ev = first.next_event().await;
        assert_eq!(ev.call_id().0, id);
        // Meta's retry of it lands on the other node: dropped there.
        assert_eq!(second.post_signed(&body).await, StatusCode::OK);
        second.assert_nothing_came_out().await;
    }
}

#[tokio::test]
async fn a_connect_older_than_the_window_is_refused_counted_and_not_forwarded() {
    let logs = common::global_logs(tracing::Level::WARN);
    let mut h = start().await;
    let window = WebhookOptions::default().connect_max_age.as_secs();
    assert_eq!(window, 60, "the documented window (docs/operations.md)");
    let now = unix_now();
    // Signed a year ago (a captured body), and one just past the window (a late retry).
    let year_old = json(&envelope(vec![value(vec![connect_call_at(
        "wacid.OLD1",
        now - 365 * 24 * 3600,
    )])]));
    let late = json(&envelope(vec![value(vec![connect_call_at(
        "wacid.OLD2",
        now - window - 30,
    )])]));
    // Authenticated, so Meta gets its 200 (a retry would be just as old); nothing goes on.
    assert_eq!(h.post_signed(&year_old).await, StatusCode::OK);
    assert_eq!(h.post_signed(&late).await, StatusCode::OK);
    h.assert_nothing_came_out().await;
    // A connect within the window goes through, and so does the terminate of an old call.
    let recent = json(&envelope(vec![value(vec![connect_call_at(
        "wacid.RECENT",
        now - 10,
    )])]));
    assert_eq!(h.post_signed(&recent).await, StatusCode::OK);
    assert_eq!(h.next_event().await.call_id().0, "wacid.RECENT");
    let stats = h.processor.take().unwrap().shutdown().await;
    assert_eq!(stats.too_old, 2);
    assert_eq!(stats.forwarded, 2, "the recent connect and the marker");
    // Logged (folded with other refusals: at most one line per interval, with the count).
    let text = logs.text();
    assert!(
        text.lines()
            .any(|l| l.contains("connect for wacid.OLD1 is 31536")
                && l.contains("older than the 60 s window")),
        "{text}"
    );

    // After a restart (nothing remembered) a replay of the captured body is refused the same way.
    let mut restarted = start().await;
    assert_eq!(restarted.post_signed(&year_old).await, StatusCode::OK);
    restarted.assert_nothing_came_out().await;
    let stats = restarted.processor.take().unwrap().shutdown().await;
    assert_eq!(stats.too_old, 1);
}

#[tokio::test]
async fn call_ids_without_metas_shape_never_reach_the_calls() {
    let mut h = start().await;
    for id in [
        "wacid.A\n2026-01-01T00:00:00.000000Z  INFO switchboard: forged".to_owned(),
        // Long, yet within the webhook body limit (256 KiB): the id check refuses it.
        format!("wacid.{}", "A".repeat(100_000)),
    ] {
        let body = json(&envelope(vec![value(vec![connect_call(&id)])]));
        assert_eq!(h.post_signed(&body).await, StatusCode::OK);
    }
    h.assert_nothing_came_out().await;
    let stats = h.processor.take().unwrap().shutdown().await;
    assert_eq!(stats.skipped, 2);
}
