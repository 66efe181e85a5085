//! `GraphClient` against the fake Graph API over real HTTP on 127.0.0.1: what is retried, what
//! is not, typed errors, and the pre_accept/accept SDP identity rule.

mod common;

use std::time::Duration;

use switchboard::config::Secret;
use switchboard::ids::WaCallId;
use switchboard::whatsapp::graph::{GraphClient, GraphError, GraphOptions, RetryPolicy};
use switchboard::whatsapp::model::CallAction;
use switchboard::whatsapp::sdp::{SAMPLE_ANSWER, SAMPLE_META_OFFER};
use switchboard::whatsapp::simulator::graph::SDP_MISMATCH_DETAILS;
use switchboard::whatsapp::simulator::{FakeGraph, FakeGraphEvent, FakeGraphServer};

const TOKEN: &str = "EAAG-test-token";
const PHONE: &str = "115017831530658";
const CALL: &str = "wacid.HBgMOTE4MDk3NTM0Njg0FQIAEhggMURENUU5MDg2";

async fn fake() -> (String, FakeGraphServer) {
    let graph = FakeGraph::new(TOKEN, PHONE);
    graph.register_call(WaCallId::from(CALL), SAMPLE_META_OFFER);
    let (addr, server) = graph.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    (format!("http://{addr}"), server)
}

fn client(url: &str, token: &str) -> GraphClient {
    let options = GraphOptions {
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        },
        ..GraphOptions::default()
    };
    GraphClient::with_options(url, "v23.0", PHONE, Secret::new(token), options).unwrap()
}

async fn next(events: &mut tokio::sync::mpsc::Receiver<FakeGraphEvent>) -> FakeGraphEvent {
    tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("a fake graph event within 5 s")
        .expect("event stream open")
}

fn call() -> WaCallId {
    WaCallId::from(CALL)
}

#[tokio::test]
async fn bad_sdp_is_a_400_that_is_not_retried() {
    let (url, server) = fake().await;
    let bad = SAMPLE_ANSWER.replace("a=setup:active", "a=setup:passive");
    let err = client(&url, TOKEN)
        .pre_accept(&call(), &bad)
        .await
        .unwrap_err();
    match &err {
        GraphError::Api {
            action,
            status,
            code,
            details,
            fbtrace_id,
            ..
        } => {
            assert_eq!(*action, CallAction::PreAccept);
            assert_eq!(*status, 400);
            assert_eq!(*code, 100);
            let details = details.as_deref().unwrap();
            assert!(details.contains("a=setup must be active"), "{details}");
            assert!(fbtrace_id.is_some());
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_retryable());
    assert_eq!(server.graph().requests().len(), 1);
}

#[tokio::test]
async fn two_503s_then_success_is_retried() {
    let (url, server) = fake().await;
    server.graph().fail_next(2, 503, 2);
    client(&url, TOKEN)
        .pre_accept(&call(), SAMPLE_ANSWER)
        .await
        .unwrap();
    let statuses: Vec<u16> = server.graph().requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 503, 200]);
}

#[tokio::test]
async fn three_503s_exhaust_the_retries() {
    let (url, server) = fake().await;
    server.graph().fail_next(3, 503, 2);
    let err = client(&url, TOKEN).terminate(&call()).await.unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert!(err.is_retryable());
    assert_eq!(server.graph().requests().len(), 3);
}

#[tokio::test]
async fn wrong_token_is_401_code_190_not_retried() {
    let (url, server) = fake().await;
    let err = client(&url, "wrong-token")
        .accept(&call(), SAMPLE_ANSWER, None)
        .await
        .unwrap_err();
    match &err {
        GraphError::Api {
            status, code, kind, ..
        } => {
            assert_eq!((*status, *code), (401, 190));
            assert_eq!(kind.as_deref(), Some("OAuthException"));
        }
        other => panic!("{other:?}"),
    }
    assert!(!format!("{err} {err:?}").contains("wrong-token"));
    assert_eq!(server.graph().requests().len(), 1);
}

#[tokio::test]
async fn pre_accept_then_accept_with_the_same_sdp_succeeds() {
    let (url, server) = fake().await;
    let mut events = server.graph().take_events().unwrap();
    let c = client(&url, TOKEN);
    c.pre_accept(&call(), SAMPLE_ANSWER).await.unwrap();
    c.accept(&call(), SAMPLE_ANSWER, Some("sb:session-1"))
        .await
        .unwrap();
    assert_eq!(
        next(&mut events).await,
        FakeGraphEvent::PreAccepted {
            call_id: call(),
            sdp: SAMPLE_ANSWER.into()
        }
    );
    assert_eq!(
        next(&mut events).await,
        FakeGraphEvent::Accepted {
            call_id: call(),
            sdp: SAMPLE_ANSWER.into()
        }
    );
    let log = server.graph().requests();
    let body: serde_json::Value = serde_json::from_str(&log[1].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "messaging_product": "whatsapp",
            "call_id": CALL,
            "action": "accept",
            "session": { "sdp_type": "answer", "sdp": SAMPLE_ANSWER },
            "biz_opaque_callback_data": "sb:session-1"
        })
    );
    c.terminate(&call()).await.unwrap();
    assert_eq!(
        next(&mut events).await,
        FakeGraphEvent::Terminated { call_id: call() }
    );
}

#[tokio::test]
async fn accept_with_a_different_sdp_fails_with_the_mismatch_details() {
    let (url, server) = fake().await;
    let c = client(&url, TOKEN);
    c.pre_accept(&call(), SAMPLE_ANSWER).await.unwrap();
    let other = SAMPLE_ANSWER.replace("a=ssrc:1111", "a=ssrc:2222");
    let err = c.accept(&call(), &other, None).await.unwrap_err();
    assert_eq!(err.code(), Some(100));
    assert_eq!(err.details(), Some(SDP_MISMATCH_DETAILS));
    assert_eq!(server.graph().requests().len(), 2);
}

#[tokio::test]
async fn reject_and_actions_on_unknown_or_ended_calls() {
    let (url, server) = fake().await;
    let c = client(&url, TOKEN);
    c.reject(&call()).await.unwrap();
    let err = c.terminate(&call()).await.unwrap_err();
    assert!(
        err.details().unwrap().contains("already completed"),
        "{err}"
    );
    let err = c
        .pre_accept(&WaCallId::from("wacid.unknown"), SAMPLE_ANSWER)
        .await
        .unwrap_err();
    assert!(err.details().unwrap().contains("invalid call id"), "{err}");
    assert_eq!(server.graph().requests().len(), 3);
}

#[tokio::test]
async fn connect_returns_the_new_call_id() {
    let (url, server) = fake().await;
    let mut events = server.graph().take_events().unwrap();
    let id = client(&url, TOKEN)
        .connect("15551234567", SAMPLE_ANSWER, Some("sb:out-1"))
        .await
        .unwrap();
    assert!(id.0.starts_with("wacid."), "{id}");
    match next(&mut events).await {
        FakeGraphEvent::Connected { call_id, to, sdp } => {
            assert_eq!(call_id, id);
            assert_eq!(to, "15551234567");
            assert_eq!(sdp, SAMPLE_ANSWER);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn connect_is_not_retried_on_5xx() {
    let (url, server) = fake().await;
    server.graph().fail_next(1, 500, 1);
    let err = client(&url, TOKEN)
        .connect("15551234567", SAMPLE_ANSWER, None)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(500));
    assert_eq!(server.graph().requests().len(), 1);
}

#[tokio::test]
async fn unreachable_graph_is_a_retried_network_error() {
    // Bind then drop a listener: nothing listens on that port afterwards.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = client(&format!("http://127.0.0.1:{port}"), TOKEN)
        .terminate(&call())
        .await
        .unwrap_err();
    assert!(
        matches!(err, GraphError::Network { connect: true, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
}

#[tokio::test]
async fn failures_are_logged_once_with_ids_and_never_the_token() {
    let logs = common::global_logs(tracing::Level::TRACE);
    let (url, server) = fake().await;
    let id = WaCallId::from("wacid.LOG-TEST");
    server.graph().register_call(id.clone(), SAMPLE_META_OFFER);
    let bad = SAMPLE_ANSWER.replace("a=rtcp-mux\r\n", "");
    client(&url, TOKEN).pre_accept(&id, &bad).await.unwrap_err();
    let text = logs.text();
    let failures: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("graph pre_accept failed") && l.contains("wacid.LOG-TEST"))
        .collect();
    assert_eq!(failures.len(), 1, "{text}");
    let line = failures[0];
    assert!(line.contains("code=100"), "{line}");
    assert!(line.contains("a=rtcp-mux is missing"), "{line}");
    assert!(line.contains("fbtrace_id="), "{line}");
    assert!(!text.contains(TOKEN), "{text}");
}

#[tokio::test]
async fn graph_error_texts_are_logged_cut_and_without_the_token() {
    let logs = common::global_logs(tracing::Level::TRACE);
    // A Graph (or a proxy in front of it) that echoes the token in a huge message.
    let echo = format!(
        r#"{{"error":{{"message":"Invalid token {TOKEN}\nINFO forged {long}","type":"OAuthException",
        "code":190,"error_data":{{"details":"{TOKEN}"}},"fbtrace_id":"ECHO-TRACE"}}}}"#,
        long = "x".repeat(100_000)
    );
    let app = axum::Router::new().route(
        "/{version}/{phone}/calls",
        axum::routing::post(move || {
            let body = echo.clone();
            async move { (axum::http::StatusCode::UNAUTHORIZED, body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let err = client(&format!("http://{addr}"), TOKEN)
        .terminate(&WaCallId::from("wacid.ECHO"))
        .await
        .unwrap_err();
    match &err {
        GraphError::Api {
            message, details, ..
        } => {
            assert!(message.chars().count() <= 301, "{} chars", message.len());
            assert!(message.starts_with("Invalid token [access token]\\nINFO forged"));
            assert_eq!(details.as_deref(), Some("[access token]"));
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.to_string().contains(TOKEN));
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("ECHO-TRACE"))
        .unwrap_or_else(|| panic!("no warning for the failure: {text}"));
    assert!(line.len() < 1000, "{} bytes", line.len());
    assert!(!text.contains(TOKEN), "{text}");
    assert!(
        !text.lines().any(|l| l.starts_with("INFO forged")),
        "{text}"
    );
    server.abort();
}
