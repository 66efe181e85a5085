//! The node-to-node side of the call centre (several nodes): `POST /internal/v1/adopt`, where
//! another node hands this one a waiting call together with its offer of an internal leg to the
//! call's Meta leg, and the task that serves this node's waiting calls in the queue order the
//! nodes share (ringing an agent here, or handing the call to the free agent's node).
//!
//! *Does not touch*: media or Meta directly — the calls actor does, through
//! [`CallsHandle::adopt`], [`CallsHandle::hand_off`] and [`CallsHandle::dispatch`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::actor::{CallsHandle, FloorView};
use super::HandedCall;
use crate::cluster::{Claim, Claimed, Cluster, NodeKey, FORWARD_HEADER};
use crate::ids::{AgentId, WaCallId};

/// Where a waiting call is handed over.
pub const ADOPT_PATH: &str = "/internal/v1/adopt";

/// A hand-over: the call, and the owner's offer of the internal leg.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdoptRequest {
    /// The call.
    pub call: HandedCall,
    /// The owner's SDP offer for the internal leg (Meta-shaped).
    pub offer: String,
}

/// The adopting node's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdoptAnswer {
    /// Its SDP answer for the internal leg.
    pub answer: String,
}

/// How this node reaches the others for hand-overs.
#[derive(Clone)]
pub struct NodeLink {
    /// This node's name.
    pub node: String,
    /// Signs and checks node-to-node requests.
    pub key: NodeKey,
    /// The client hand-overs go out with.
    pub http: reqwest::Client,
}

impl std::fmt::Debug for NodeLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeLink")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl NodeLink {
    /// This node's link, signing with `key`.
    pub fn new(node: impl Into<String>, key: NodeKey) -> NodeLink {
        NodeLink {
            node: node.into(),
            key,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
        }
    }

    /// Hands `request` to the node at `url`; its answer SDP.
    pub async fn adopt(&self, url: &str, request: &AdoptRequest) -> Result<String, String> {
        let body = serde_json::to_vec(request).map_err(|e| e.to_string())?;
        let signature = self.key.sign(&self.node, &body);
        let r = self
            .http
            .post(format!("{}{ADOPT_PATH}", url.trim_end_matches('/')))
            .header("content-type", "application/json")
            .header(FORWARD_HEADER, signature)
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("HTTP {}", r.status().as_u16()));
        }
        let a: AdoptAnswer = r.json().await.map_err(|e| e.to_string())?;
        Ok(a.answer)
    }
}

#[derive(Clone)]
struct NodesState {
    key: NodeKey,
    calls: CallsHandle,
    cluster: Cluster,
}

/// The node-to-node routes of the call centre.
pub fn router(key: NodeKey, calls: CallsHandle, cluster: Cluster) -> Router {
    Router::new()
        .route(ADOPT_PATH, post(adopt))
        // An adopted call is its offer and a few ids: a few KiB.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(64 * 1024))
        .with_state(Arc::new(NodesState {
            key,
            calls,
            cluster,
        }))
}

async fn adopt(State(st): State<Arc<NodesState>>, headers: HeaderMap, body: Bytes) -> Response {
    let header = headers.get(FORWARD_HEADER).and_then(|v| v.to_str().ok());
    let from = match st.key.check(header, &body) {
        Ok(node) => node,
        Err(e) => {
            debug!(error = %e, "hand-over refused");
            return StatusCode::UNAUTHORIZED.into_response();
        }
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
            if let Err(e) = st.cluster.own_call(&call).await {
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

/// Serves this node's waiting calls in the order the nodes share, every `every`: for each
/// queue, oldest first, as long as the call is the oldest waiting in its queue on any node and
/// an agent is free on any node — this node's agent rings for it here, another node's takes it
/// over. While Redis does not answer, the call machines go back to serving their waiting calls
/// by themselves (and again to the shared order once it answers).
pub async fn move_waiting_calls(
    cluster: Cluster,
    calls: CallsHandle,
    mut floor: watch::Receiver<Arc<FloorView>>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shared = false;
    loop {
        tick.tick().await;
        if floor.has_changed().is_err() {
            return;
        }
        let view = floor.borrow_and_update().clone();
        let mut redis_ok = true;
        'queues: for (queue, waiting) in &view.queues {
            let mut order: VecDeque<WaCallId> = waiting.iter().map(|w| w.call.clone()).collect();
            // Every call may be tried once more after an older one of ours is moved first.
            let mut budget = order.len() * 2 + 2;
            while let Some(call) = order.pop_front() {
                if budget == 0 {
                    break;
                }
                budget -= 1;
                let claimed = match cluster.claim_agent_for(&queue.0, &call).await {
                    Ok(Claim::Agent(c)) => c,
                    // No agent free anywhere, or an older call waits on another node: its turn.
                    Ok(Claim::NoAgent) => continue 'queues,
                    Ok(Claim::Older { call: older, node }) => {
                        if node != cluster.node() {
                            continue 'queues;
                        }
                        // Ours: two calls that began to wait in the same millisecond (or clocks
                        // read a moment apart) may be ordered otherwise here than in Redis; the
                        // older one first. Not waiting here any more: a stale entry.
                        match order.iter().position(|c| *c == older) {
                            Some(at) => {
                                order.remove(at);
                                order.push_front(call);
                                order.push_front(older);
                            }
                            None => {
                                if let Err(e) = cluster.withdraw_waiting(&queue.0, &older).await {
                                    debug!(error = %e, "a stale waiting call not withdrawn");
                                    continue 'queues;
                                }
                                order.push_front(call);
                            }
                        }
                        continue;
                    }
                    Err(e) => {
                        debug!(error = %e, "waiting calls not served: Redis unavailable");
                        redis_ok = false;
                        break 'queues;
                    }
                };
                if serve(&cluster, &calls, &call, &claimed).await {
                    continue;
                }
                // Not waiting any more (answered, ended, its `accept` still in flight) or the
                // agent no longer free: the agent is next in line again at once.
                if let Err(e) = cluster.give_back(&claimed.agent).await {
                    debug!(error = %e, "a claimed agent was not given back");
                }
                continue 'queues;
            }
        }
        if redis_ok && !shared {
            redis_ok = cluster.ping().await.is_ok();
        }
        if redis_ok != shared {
            shared = redis_ok;
            calls.share_queues(shared).await;
        }
    }
}

/// Rings this node's `claimed` agent for `call`, or hands `call` to the agent's node; false
/// when neither happened.
async fn serve(cluster: &Cluster, calls: &CallsHandle, call: &WaCallId, claimed: &Claimed) -> bool {
    let agent = AgentId(claimed.agent.clone());
    if claimed.node == cluster.node() {
        return calls.dispatch(call.clone(), agent).await;
    }
    let Ok(Some(url)) = cluster.url_of(&claimed.node).await else {
        warn!(node = %claimed.node, "no address for a node with a free agent");
        return false;
    };
    let handed = calls
        .hand_off(call.clone(), agent, claimed.node.clone(), url)
        .await;
    if handed {
        info!(call_id = %call, node = %claimed.node, agent = %claimed.agent, "a waiting call goes to a free agent on another node");
    }
    handed
}
