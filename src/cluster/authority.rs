//! The routing authority of several nodes ([`crate::routing::Authority`]) on Redis, and the
//! node-to-node HTTP client that hands events and waiting calls to another node.
//!
//! *Owns*: the subscription to `switchboard:floor` (the changes other nodes announce), the
//! HTTP client for hand-overs, and the translation of the shared keys' answers into the
//! authority's terms.
//!
//! *Does not touch*: calls or media: it answers and claims; `calls::dispatch` decides what to
//! do with the answers and the calls actor carries them out.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::Notify;
use tracing::{debug, warn};

use super::{Claim, Cluster, ClusterError, NodeKey, EVENTS_PATH, FORWARD_HEADER, PREFIX};
use crate::calls::{AdoptAnswer, AdoptError, AdoptRequest, HandOver, ADOPT_PATH};
use crate::ids::{AgentId, QueueId, WaCallId};
use crate::routing::{Authority, AuthorityError, NodeAddr, Placement, Turn};

/// How long handing an event to another node may take before this node handles it itself.
const EVENT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the other node may take to adopt a waiting call (it answers an internal leg).
const ADOPT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a node waits before subscribing again after Redis dropped the subscription.
const RESUBSCRIBE: Duration = Duration::from_secs(1);

impl From<ClusterError> for AuthorityError {
    fn from(e: ClusterError) -> Self {
        AuthorityError::Unavailable(e.to_string())
    }
}

/// After Redis failed, it is not asked again for this long: a burst of events while it is down
/// is handled here at once rather than each waiting out the command deadline (readiness keeps
/// asking, and says when it is back).
const DOWN_FOR: Duration = Duration::from_secs(1);

/// The authority of a node among several, on the shared Redis.
#[derive(Clone)]
pub struct RedisAuthority {
    cluster: Cluster,
    link: NodeLink,
    changes: Arc<Notify>,
    /// Until when Redis is taken to be down (see [`DOWN_FOR`]).
    down_until: Arc<Mutex<Option<Instant>>>,
}

impl std::fmt::Debug for RedisAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisAuthority")
            .field("node", &self.cluster.node())
            .finish_non_exhaustive()
    }
}

impl RedisAuthority {
    /// The authority of this node, signing hand-overs with `key`. Spawns the subscription to
    /// the other nodes' changes (call inside a Tokio runtime); it ends with the last clone.
    pub fn new(cluster: Cluster, key: NodeKey) -> RedisAuthority {
        let changes = Arc::new(Notify::new());
        tokio::spawn(listen(
            cluster.clone(),
            format!("{PREFIX}:floor"),
            Arc::downgrade(&changes),
        ));
        RedisAuthority {
            link: NodeLink::new(cluster.node(), key),
            cluster,
            changes,
            down_until: Arc::default(),
        }
    }

    /// Runs a Redis command unless Redis failed in the last [`DOWN_FOR`]; a failure starts
    /// that time.
    async fn ask<T>(
        &self,
        command: impl std::future::Future<Output = Result<T, ClusterError>>,
    ) -> Result<T, AuthorityError> {
        let down = |until: &Option<Instant>| until.is_some_and(|t| Instant::now() < t);
        if down(&self.down_until.lock().unwrap_or_else(|p| p.into_inner())) {
            return Err(AuthorityError::Unavailable(
                "Redis failed a moment ago".into(),
            ));
        }
        command.await.map_err(|e| {
            *self.down_until.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(Instant::now() + DOWN_FOR);
            e.into()
        })
    }

    /// The client that hands waiting calls to other nodes.
    pub fn link(&self) -> NodeLink {
        self.link.clone()
    }
}

/// Wakes `changes` at each announcement on `channel` (`switchboard:floor`,
/// `switchboard:accounts`), and once after each (re)subscription for what was announced
/// meanwhile, until nobody holds it.
pub(super) async fn listen(cluster: Cluster, channel: String, changes: std::sync::Weak<Notify>) {
    let mut failing = false;
    loop {
        let subscribed = async {
            let mut pubsub = cluster.inner.client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = match tokio::time::timeout(RESUBSCRIBE * 2, subscribed).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                if !failing {
                    warn!(error = %e, %channel, "not subscribed to the other nodes' changes; caught up when subscribed again");
                }
                failing = true;
                tokio::time::sleep(RESUBSCRIBE).await;
                if changes.strong_count() == 0 {
                    return;
                }
                continue;
            }
            Err(_) => {
                failing = true;
                continue;
            }
        };
        if failing {
            debug!("subscribed to the other nodes' changes again");
            failing = false;
        }
        // Whatever was announced while unsubscribed is caught by serving once now.
        match changes.upgrade() {
            Some(n) => n.notify_one(),
            None => return,
        }
        let mut messages = pubsub.into_on_message();
        while messages.next().await.is_some() {
            match changes.upgrade() {
                Some(n) => n.notify_one(),
                None => return,
            }
        }
        tokio::time::sleep(RESUBSCRIBE).await;
    }
}

impl Authority for RedisAuthority {
    fn node(&self) -> &str {
        self.cluster.node()
    }

    async fn place(&self, queue: &QueueId) -> Result<Placement, AuthorityError> {
        let (node, agent) = match self.ask(self.cluster.claim_agent(&queue.0)).await? {
            Some(claimed) => (Some(claimed.node), Some(AgentId(claimed.agent))),
            None => (self.ask(self.cluster.most_staffed(&queue.0)).await?, None),
        };
        let Some(node) = node.filter(|n| n != self.cluster.node()) else {
            return Ok(Placement::Here { agent });
        };
        let unknown = match self.address(&node).await {
            Ok(Some(addr)) => return Ok(Placement::Elsewhere { node: addr, agent }),
            other => other,
        };
        // Handled here after all: the agent claimed there is next in line again.
        if let Some(agent) = &agent {
            let _ = self.give_back(agent).await;
        }
        unknown.map(|_| {
            warn!(%node, "no address for the node a call belongs to; handled here");
            Placement::Here { agent: None }
        })
    }

    async fn owner(&self, call: &WaCallId) -> Result<Option<NodeAddr>, AuthorityError> {
        match self.ask(self.cluster.owner_of(call)).await? {
            Some(node) if node != self.cluster.node() => {
                let addr = self.address(&node).await?;
                if addr.is_none() {
                    warn!(%node, "no address for the node an event belongs to; handled here");
                }
                Ok(addr)
            }
            _ => Ok(None),
        }
    }

    async fn own(&self, call: &WaCallId) -> Result<(), AuthorityError> {
        self.ask(self.cluster.own_call(call)).await
    }

    async fn hand_event<E: serde::Serialize + Sync>(
        &self,
        node: &NodeAddr,
        event: &E,
    ) -> Result<(), AuthorityError> {
        let refused = |reason: String| AuthorityError::NodeRefused {
            node: node.name.clone(),
            reason,
        };
        let body = serde_json::to_vec(event).map_err(|e| refused(e.to_string()))?;
        let r = self
            .link
            .post(&node.url, EVENTS_PATH, body, EVENT_TIMEOUT)
            .await
            .map_err(refused)?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(refused(format!("HTTP {}", r.status().as_u16())))
        }
    }

    async fn turn(&self, queue: &QueueId, call: &WaCallId) -> Result<Turn, AuthorityError> {
        Ok(
            match self
                .ask(self.cluster.claim_agent_for(&queue.0, call))
                .await?
            {
                Claim::Agent(c) => Turn::Agent {
                    agent: AgentId(c.agent),
                    node: c.node,
                },
                Claim::NoAgent => Turn::NoAgent,
                Claim::Older { call, node } => Turn::Older { call, node },
            },
        )
    }

    async fn withdraw_waiting(
        &self,
        queue: &QueueId,
        call: &WaCallId,
    ) -> Result<(), AuthorityError> {
        self.ask(self.cluster.withdraw_waiting(&queue.0, call))
            .await
    }

    async fn give_back(&self, agent: &AgentId) -> Result<(), AuthorityError> {
        self.ask(self.cluster.give_back(&agent.0)).await
    }

    async fn address(&self, node: &str) -> Result<Option<NodeAddr>, AuthorityError> {
        Ok(self
            .ask(self.cluster.url_of(node))
            .await?
            .map(|url| NodeAddr {
                name: node.to_owned(),
                url,
            }))
    }

    async fn healthy(&self) -> bool {
        // The probe itself: never skipped, and a success ends the down time at once.
        let ok = self.cluster.ping().await.is_ok();
        if ok {
            *self.down_until.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        ok
    }

    async fn changed(&self) {
        self.changes.notified().await;
    }
}

/// How this node reaches the others: signed node-to-node requests.
#[derive(Clone)]
pub struct NodeLink {
    node: String,
    key: NodeKey,
    http: reqwest::Client,
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
                .timeout(ADOPT_TIMEOUT)
                .build()
                .unwrap_or_default(),
        }
    }

    async fn post(
        &self,
        url: &str,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<reqwest::Response, String> {
        let signature = self.key.sign(&self.node, &body);
        self.http
            .post(format!("{}{path}", url.trim_end_matches('/')))
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(FORWARD_HEADER, signature)
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())
    }
}

impl HandOver for NodeLink {
    fn node(&self) -> &str {
        &self.node
    }

    fn adopt(
        &self,
        url: String,
        request: AdoptRequest,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, AdoptError>> + Send>>
    {
        let link = self.clone();
        Box::pin(async move {
            let body = serde_json::to_vec(&request).map_err(|e| AdoptError(e.to_string()))?;
            let r = link
                .post(&url, ADOPT_PATH, body, ADOPT_TIMEOUT)
                .await
                .map_err(AdoptError)?;
            if !r.status().is_success() {
                return Err(AdoptError(format!("HTTP {}", r.status().as_u16())));
            }
            let a: AdoptAnswer = r.json().await.map_err(|e| AdoptError(e.to_string()))?;
            Ok(a.answer)
        })
    }
}
