//! The node-to-node routes of several nodes, each signed with the nodes' key
//! ([`crate::cluster::NodeKey`]): `POST /internal/v1/events`, where another node hands this one
//! an event of a call it handles, and `POST /internal/v1/adopt`, where another node hands it a
//! waiting call together with its offer of an internal leg to the call's Meta leg.
//!
//! *Does not touch*: routing decisions (`calls::dispatch` makes them) or the calls themselves
//! (the calls actor adopts). With one node these routes are not served (404).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::calls::actor::CallsHandle;
use crate::calls::dispatch::{AdoptAnswer, AdoptRequest, Handed, ADOPT_PATH};
use crate::cluster::{NodeKey, EVENTS_PATH, FORWARD_HEADER};
use crate::ids::WaCallId;
use crate::routing::Authority;
use crate::whatsapp::webhook::WaEvent;

struct Nodes<A> {
    key: NodeKey,
    calls: CallsHandle,
    authority: A,
    placed: mpsc::Sender<Handed>,
}

/// The node-to-node routes: events go to `placed` (the placement driver, which keeps them
/// here), adopted calls to `calls`.
pub fn router<A: Authority>(
    key: NodeKey,
    calls: CallsHandle,
    authority: A,
    placed: mpsc::Sender<Handed>,
) -> Router {
    Router::new()
        .route(ADOPT_PATH, post(adopt::<A>))
        .route(EVENTS_PATH, post(event::<A>))
        // An adopted call or a handed event is its SDP and a few ids: a few KiB.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(64 * 1024))
        .with_state(Arc::new(Nodes {
            key,
            calls,
            authority,
            placed,
        }))
}

/// The sending node when the signature holds.
fn signed_by<A>(st: &Nodes<A>, headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let header = headers.get(FORWARD_HEADER).and_then(|v| v.to_str().ok());
    match st.key.check(header, body) {
        Ok(node) => Some(node),
        Err(e) => {
            metrics::counter!(crate::ops::names::WEBHOOKS, "outcome" => "bad_signature")
                .increment(1);
            debug!(error = %e, "node-to-node request refused");
            None
        }
    }
}

/// An event another node took from Meta and hands to this one, which owns its call (or has
/// the agent for it). 401 unsigned or badly signed, 400 unreadable, 503 when this node cannot
/// take more now (the sender then handles it itself).
#[utoipa::path(post, path = "/internal/v1/events", tag = "nodes",
    responses((status = 200, description = "taken"), (status = 400, description = "unreadable"),
              (status = 401, description = "not signed by a node"), (status = 503, description = "busy")))]
async fn event<A: Authority>(
    State(st): State<Arc<Nodes<A>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let Some(from) = signed_by(&st, &headers, &body) else {
        return StatusCode::UNAUTHORIZED;
    };
    let event: WaEvent = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => {
            warn!(%from, error = %e, "unreadable event from another node");
            return StatusCode::BAD_REQUEST;
        }
    };
    if let Err(reason) = WaCallId::check(&event.call_id().0) {
        warn!(%from, %reason, "event from another node refused: unusable call id");
        return StatusCode::BAD_REQUEST;
    }
    match st.placed.try_send(Handed(Box::new(event), Instant::now())) {
        Ok(()) => StatusCode::OK,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Another node hands over a waiting call (signed by the nodes' key).
#[utoipa::path(post, path = "/internal/v1/adopt", tag = "nodes",
    responses((status = 200, description = "the internal leg's answer"), (status = 400, description = "unreadable"),
              (status = 401, description = "not signed by a node"), (status = 409, description = "refused"),
              (status = 503, description = "draining or busy")))]
async fn adopt<A: Authority>(
    State(st): State<Arc<Nodes<A>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(from) = signed_by(&st, &headers, &body) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let request: AdoptRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            warn!(%from, error = %e, "unreadable hand-over");
            return StatusCode::BAD_REQUEST.into_response();
        }
    };
    let call = request.call.call.clone();
    match st.calls.adopt(request.call, request.offer).await {
        Ok(answer) => {
            if let Err(e) = st.authority.own(&call).await {
                warn!(call_id = %call, error = %e, "ownership of a taken-over call not recorded");
            }
            Json(AdoptAnswer { answer }).into_response()
        }
        Err(e) => {
            info!(call_id = %call, %from, error = %e, "hand-over declined");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// The node-to-node routes in the OpenAPI document ([`super::openapi`]).
#[derive(utoipa::OpenApi)]
#[openapi(paths(event, adopt))]
pub(crate) struct NodesDoc;
