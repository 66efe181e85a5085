//! The one authority on who takes a call when several nodes share the floor: where a new call
//! is handled, which waiting call is next across the nodes and which agent takes it, who owns a
//! call, and the hand-over of an event to the node that handles it.
//!
//! *Owns*: nothing but the interface. [`crate::cluster::RedisAuthority`] implements it on
//! Redis (atomic claims in Lua, changes announced by pub/sub); the tests implement it in memory.
//! With one node there is no authority: the call machines' own [`super::Floor`] decides, and
//! nothing here runs.
//!
//! *Does not touch*: calls, media, Meta. The drivers in `calls::dispatch` ask it and carry out
//! its answers; the WhatsApp edge never asks it (it translates Meta's events, it does not route).
//!
//! *Invariants* every implementation keeps:
//! - An agent is claimed for at most one call at a time: a claim takes them out of the shared
//!   order until they are offered again (available anew) or given back.
//! - Calls waiting in a queue are served oldest first across the nodes: [`Turn::Older`] while an
//!   older call waits on a node that is alive.
//! - [`Authority::changed`] resolves after any change elsewhere that may let a waiting call be
//!   served (an agent freed, a call no longer waiting, a claim given back); a change it missed is
//!   caught by the drivers' slow resync, never lost for good.

use std::future::Future;

use crate::ids::{AgentId, QueueId, WaCallId};

/// Where a new call is handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// On this node; `agent` is the agent claimed for it (rung first), if any was free.
    Here {
        /// The agent claimed across the nodes.
        agent: Option<AgentId>,
    },
    /// On another node: its agent was claimed, or nobody is free and it has the most agents
    /// signed in to the queue.
    Elsewhere {
        /// The node.
        node: NodeAddr,
        /// The agent claimed there, if any was free.
        agent: Option<AgentId>,
    },
}

/// Whose turn it is for one of this node's waiting calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turn {
    /// This agent was claimed for the call; it is signed in on `node` (this one or another).
    Agent {
        /// The agent.
        agent: AgentId,
        /// Where they are signed in.
        node: String,
    },
    /// Nobody is free for the queue on any node.
    NoAgent,
    /// An older call waits in the queue on `node`: it goes first.
    Older {
        /// The older call.
        call: WaCallId,
        /// Its node.
        node: String,
    },
}

/// A node and where it listens for the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddr {
    /// Its name.
    pub name: String,
    /// Its base URL.
    pub url: String,
}

/// The shared state could not be asked or changed; the caller handles the call as a single
/// node would (and readiness already says so).
#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    /// The shared store did not answer or refused.
    #[error("the nodes' shared routing state is unavailable: {0}")]
    Unavailable(String),
    /// Another node could not be reached or refused a hand-over.
    #[error("node {node} did not take the hand-over: {reason}")]
    NodeRefused {
        /// The node.
        node: String,
        /// Why.
        reason: String,
    },
}

/// What the call-routing drivers need to know and change across the nodes, nothing more.
///
/// Every method may fail with [`AuthorityError`]; none may hang (implementations put deadlines
/// on their I/O).
pub trait Authority: Clone + Send + Sync + 'static {
    /// This node's name.
    fn node(&self) -> &str;

    /// Where a new call for `queue` is handled: the node of the longest-idle available agent
    /// across the nodes (claimed for it), unless a call already waits in that queue anywhere;
    /// with nobody free, the node with the most agents signed in to the queue.
    fn place(
        &self,
        queue: &QueueId,
    ) -> impl Future<Output = Result<Placement, AuthorityError>> + Send;

    /// The node that owns `call`, when one other than this one does.
    fn owner(
        &self,
        call: &WaCallId,
    ) -> impl Future<Output = Result<Option<NodeAddr>, AuthorityError>> + Send;

    /// Records this node as the owner of `call` (its later events come here).
    fn own(&self, call: &WaCallId) -> impl Future<Output = Result<(), AuthorityError>> + Send;

    /// Hands `event` (one of Meta's, typed by the WhatsApp edge) to `node`, which handles it
    /// from now on.
    fn hand_event<E: serde::Serialize + Sync>(
        &self,
        node: &NodeAddr,
        event: &E,
    ) -> impl Future<Output = Result<(), AuthorityError>> + Send;

    /// Claims an agent for this node's waiting `call` of `queue`, if it is the oldest waiting
    /// there on any node; the call then leaves the shared order.
    fn turn(
        &self,
        queue: &QueueId,
        call: &WaCallId,
    ) -> impl Future<Output = Result<Turn, AuthorityError>> + Send;

    /// Takes a call that no longer waits here out of the shared order.
    fn withdraw_waiting(
        &self,
        queue: &QueueId,
        call: &WaCallId,
    ) -> impl Future<Output = Result<(), AuthorityError>> + Send;

    /// Puts back an agent claimed for a call that did not take them, with the idle time they had.
    fn give_back(&self, agent: &AgentId)
        -> impl Future<Output = Result<(), AuthorityError>> + Send;

    /// The address of `node`, if it has published one.
    fn address(
        &self,
        node: &str,
    ) -> impl Future<Output = Result<Option<NodeAddr>, AuthorityError>> + Send;

    /// Whether the shared state answers.
    fn healthy(&self) -> impl Future<Output = bool> + Send;

    /// Resolves after the next change on another node that may let a waiting call be served.
    fn changed(&self) -> impl Future<Output = ()> + Send;
}
