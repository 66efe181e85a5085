//! The fake Graph API over raw HTTP: Graph's error shape for requests a client library would
//! never send (wrong phone number id, bad JSON shape, wrong sdp_type).

use reqwest::StatusCode;
use switchboard::ids::WaCallId;
use switchboard::whatsapp::model::GraphErrorEnvelope;
use switchboard::whatsapp::sdp::{SAMPLE_ANSWER, SAMPLE_META_OFFER};
use switchboard::whatsapp::simulator::{FakeGraph, FakeGraphServer};

const TOKEN: &str = "tok";

async fn fake() -> (String, FakeGraphServer) {
    let graph = FakeGraph::new(TOKEN, "42");
    graph.register_call(WaCallId::from("wacid.F"), SAMPLE_META_OFFER);
    let (addr, server) = graph.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    (format!("http://{addr}"), server)
}

async fn post(url: &str, body: serde_json::Value) -> (StatusCode, GraphErrorEnvelope) {
    let resp = reqwest::Client::new()
        .post(url)
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let env: GraphErrorEnvelope = resp.json().await.unwrap();
    (status, env)
}

#[tokio::test]
async fn malformed_requests_get_graph_errors_with_details() {
    let (base, server) = fake().await;
    let good = format!("{base}/v23.0/42/calls");
    let cases = [
        (
            format!("{base}/v23.0/999/calls"),
            serde_json::json!({"messaging_product":"whatsapp","call_id":"wacid.F","action":"reject"}),
            "does not exist",
        ),
        (
            good.clone(),
            serde_json::json!({"call_id":"wacid.F","action":"reject"}),
            "messaging_product",
        ),
        (
            good.clone(),
            serde_json::json!({"messaging_product":"whatsapp","call_id":"wacid.F"}),
            "action is required",
        ),
        (
            good.clone(),
            serde_json::json!({"messaging_product":"whatsapp","action":"reject"}),
            "call_id is required",
        ),
        (
            good.clone(),
            serde_json::json!({"messaging_product":"whatsapp","call_id":"wacid.F","action":"pre_accept",
                "session":{"sdp_type":"offer","sdp":SAMPLE_ANSWER}}),
            "sdp_type must be \"answer\"",
        ),
        (
            good.clone(),
            serde_json::json!({"messaging_product":"whatsapp","call_id":"wacid.F","action":"accept"}),
            "session with sdp_type and sdp is required",
        ),
        (
            good.clone(),
            serde_json::json!({"messaging_product":"whatsapp","call_id":"wacid.F","action":"hold"}),
            "unknown action",
        ),
    ];
    for (url, body, expected) in &cases {
        let (status, env) = post(url, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(env.error.code, 100, "{body}");
        let details = env.error.error_data.unwrap().details.unwrap();
        assert!(details.contains(expected), "{body}: {details}");
        assert!(env.error.fbtrace_id.is_some());
    }
    let log = server.graph().requests();
    assert_eq!(log.len(), cases.len());
    assert!(log
        .iter()
        .all(|r| r.status == 400 && r.error_code == Some(100)));
}
