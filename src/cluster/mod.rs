//! What several switchboard nodes share in real time, in Redis (`SWITCHBOARD_REDIS_URL`), as
//! LiveKit shares its routing state. With no Redis configured there is no [`Cluster`] and every
//! caller of this module behaves as the single node it is.
//!
//! *Owns*: the Redis connection (the `redis` crate's connection manager, which reconnects by
//! itself) and the layout of switchboard's keys (`switchboard:…`).
//!
//! *Does not touch*: calls, media, agents or Meta: it answers questions ("has any node taken
//! this webhook event?", "which nodes stopped renewing their lease?", "is Redis there?") and
//! decides nothing. It holds webhook de-duplication across nodes — Meta retries, and
//! behind a load balancer every node may get a copy —, the nodes' leases (a node that dies
//! stops renewing its own; another takes over its calls), the health that readiness reports,
//! which node owns each call and where each node listens ([`calls`]), available agents and the
//! atomic longest-idle choice ([`presence`]), and sign-in sessions and failed-sign-in tallies
//! ([`sessions`]).
//!
//! *Failure*: every command has a short deadline. Redis unreachable fails the command (never
//! hangs a webhook); the caller decides what that means (see `whatsapp::webhook`), and
//! `/readyz` turns 503 so the load balancer sends new work elsewhere.

use std::sync::{Arc, RwLock};
use std::time::Duration;

mod authority;
pub mod calls;
pub mod presence;
pub mod sessions;

pub use authority::{NodeLink, RedisAuthority};
pub use calls::{ForwardRefused, NodeKey, EVENTS_PATH, FORWARD_HEADER};
pub use presence::{Claim, Claimed, Idle};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// The longest any Redis command may take before it counts as failed.
const DEADLINE: Duration = Duration::from_secs(1);

/// Key prefix: several switchboard deployments may share one Redis.
const PREFIX: &str = "switchboard";

/// What can go wrong with Redis.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// `SWITCHBOARD_REDIS_URL` is not a Redis URL this build can use (its value is not shown).
    #[error("SWITCHBOARD_REDIS_URL is not a usable Redis URL: {reason}")]
    InvalidUrl {
        /// Why (never the URL itself: it may hold a password).
        reason: String,
    },
    /// Redis did not answer in time.
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Redis answered with an error, or the connection failed.
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// A cheap, cloneable handle on the shared state.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
    node: String,
}

struct Inner {
    client: redis::Client,
    /// Replaced by [`Cluster::ping`] when it stops working: the connection manager reconnects
    /// by itself after short outages, but was seen giving up after Redis had been away for a
    /// few seconds. Read per command (a clone), written only then.
    conn: RwLock<ConnectionManager>,
}

impl std::fmt::Debug for Cluster {
    // No URL here: it may carry a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects to Redis at `url` as node `node`. Fails when Redis does not answer at start:
    /// a node configured for a cluster must not start as if it were alone.
    pub async fn connect(url: &str, node: &str) -> Result<Cluster, ClusterError> {
        let client = redis::Client::open(url).map_err(|e| ClusterError::InvalidUrl {
            reason: e.to_string(),
        })?;
        let conn = deadline(client.get_connection_manager_with_config(manager_config())).await??;
        let cluster = Cluster {
            inner: Arc::new(Inner {
                client,
                conn: RwLock::new(conn),
            }),
            node: node.to_owned(),
        };
        cluster.ping().await?;
        Ok(cluster)
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The connection to send a command on.
    fn conn(&self) -> ConnectionManager {
        // Nothing panics while holding the lock; a poisoned one still holds a connection.
        self.inner
            .conn
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether Redis answers now (readiness, and each lease renewal). When it does not, a
    /// fresh connection is tried, and kept if it answers.
    pub async fn ping(&self) -> Result<(), ClusterError> {
        let Err(first) = ping(self.conn()).await else {
            return Ok(());
        };
        let fresh = deadline(
            self.inner
                .client
                .get_connection_manager_with_config(manager_config()),
        )
        .await;
        let Ok(Ok(fresh)) = fresh else {
            return Err(first);
        };
        ping(fresh.clone()).await?;
        *self.inner.conn.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }
}

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(DEADLINE)
        .set_response_timeout(DEADLINE)
        .set_number_of_retries(2)
}

async fn ping(mut conn: ConnectionManager) -> Result<(), ClusterError> {
    let pong: String = deadline(redis::cmd("PING").query_async(&mut conn)).await??;
    if pong != "PONG" {
        return Err(ClusterError::Redis(redis::RedisError::from((
            redis::ErrorKind::ResponseError,
            "unexpected PING reply",
        ))));
    }
    Ok(())
}

impl Cluster {
    /// Takes a webhook event (named by `key`) for this node: true when no node has taken it in
    /// the last `ttl`, atomically across nodes (`SET NX`). The key records which node took it.
    pub async fn claim_event(&self, key: &str, ttl: Duration) -> Result<bool, ClusterError> {
        self.claim(event_key(key), ttl).await
    }

    /// `SET key <this node> NX PX ttl`: true for the one node that set it.
    async fn claim(&self, key: String, ttl: Duration) -> Result<bool, ClusterError> {
        let mut conn = self.conn();
        let set: Option<String> = deadline(
            redis::cmd("SET")
                .arg(key)
                .arg(&self.node)
                .arg("NX")
                .arg("PX")
                .arg(ttl.as_millis().max(1) as u64)
                .query_async(&mut conn),
        )
        .await??;
        Ok(set.is_some())
    }

    /// Whether any node has taken the event named by `key` (and it has not expired).
    pub async fn event_taken(&self, key: &str) -> Result<bool, ClusterError> {
        let mut conn = self.conn();
        let n: i64 = deadline(
            redis::cmd("EXISTS")
                .arg(event_key(key))
                .query_async(&mut conn),
        )
        .await??;
        Ok(n > 0)
    }
}

impl Cluster {
    /// Says this node is alive for `ttl` more (and a member of the cluster): call it every
    /// third of `ttl`.
    pub async fn renew_lease(&self, ttl: Duration) -> Result<(), ClusterError> {
        let mut conn = self.conn();
        deadline(
            redis::pipe()
                .atomic()
                .cmd("SADD")
                .arg(nodes_key())
                .arg(&self.node)
                .ignore()
                .cmd("SET")
                .arg(lease_key(&self.node))
                .arg(&self.node)
                .arg("PX")
                .arg(ttl.as_millis().max(1) as u64)
                .ignore()
                .query_async::<()>(&mut conn),
        )
        .await??;
        Ok(())
    }

    /// The other members whose lease has run out: they died (or lost Redis for longer than
    /// the lease, which to the others is the same).
    pub async fn dead_nodes(&self) -> Result<Vec<String>, ClusterError> {
        let mut conn = self.conn();
        let members: Vec<String> = deadline(
            redis::cmd("SMEMBERS")
                .arg(nodes_key())
                .query_async(&mut conn),
        )
        .await??;
        let mut dead = Vec::new();
        for node in members.into_iter().filter(|n| *n != self.node) {
            if !self.alive(&node).await? {
                dead.push(node);
            }
        }
        Ok(dead)
    }

    /// Whether `node`'s lease is current.
    async fn alive(&self, node: &str) -> Result<bool, ClusterError> {
        let mut conn = self.conn();
        let n: i64 = deadline(
            redis::cmd("EXISTS")
                .arg(lease_key(node))
                .query_async(&mut conn),
        )
        .await??;
        Ok(n > 0)
    }

    /// Takes the job of ending a dead node's calls: true for exactly one node (`SET NX`), for
    /// `ttl`, after which another may try again if the node is still listed.
    pub async fn claim_takeover(&self, node: &str, ttl: Duration) -> Result<bool, ClusterError> {
        self.claim(format!("{PREFIX}:takeover:{node}"), ttl).await
    }

    /// Removes a node from the members (a dead one whose calls were ended, or this one when it
    /// stops cleanly, so nobody takes over what it already ended).
    pub async fn leave(&self, node: &str) -> Result<(), ClusterError> {
        let mut conn = self.conn();
        deadline(
            redis::pipe()
                .atomic()
                .cmd("SREM")
                .arg(nodes_key())
                .arg(node)
                .ignore()
                .cmd("DEL")
                .arg(lease_key(node))
                .ignore()
                .query_async::<()>(&mut conn),
        )
        .await??;
        Ok(())
    }
}

fn nodes_key() -> String {
    format!("{PREFIX}:nodes")
}

fn lease_key(node: &str) -> String {
    format!("{PREFIX}:lease:{node}")
}

fn event_key(key: &str) -> String {
    format!("{PREFIX}:webhook:{key}")
}

async fn deadline<T>(f: impl std::future::Future<Output = T>) -> Result<T, ClusterError> {
    tokio::time::timeout(DEADLINE, f)
        .await
        .map_err(|_| ClusterError::Timeout(DEADLINE))
}

impl Cluster {
    /// Tells every node that the accounts changed: each reads them again from the database
    /// ([`Cluster::follow_accounts`]).
    pub async fn announce_accounts(&self) -> Result<(), ClusterError> {
        let mut conn = self.conn();
        deadline(
            redis::cmd("PUBLISH")
                .arg(format!("{PREFIX}:accounts"))
                .arg("changed")
                .query_async::<()>(&mut conn),
        )
        .await??;
        Ok(())
    }

    /// Wakes `changes` at every node's [`Cluster::announce_accounts`], and once each time the
    /// subscription is made again (after a Redis outage: what was announced meanwhile is caught
    /// up from the database), until nobody holds `changes`. Call inside a Tokio runtime.
    pub fn follow_accounts(&self, changes: std::sync::Weak<tokio::sync::Notify>) {
        tokio::spawn(authority::listen(
            self.clone(),
            format!("{PREFIX}:accounts"),
            changes,
        ));
    }
}
