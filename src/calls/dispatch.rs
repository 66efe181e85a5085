//! The drivers of routing across several nodes: each asks the one [`Authority`] and carries
//! out its answer, so that no other part of switchboard decides who takes a call.
//!
//! - [`place_events`]: every admitted event of Meta's goes to the node that handles it — a new
//!   call to the node of the agent claimed for it (or, nobody free, the best-staffed node), a
//!   later event to its call's owner. Events of different calls are placed concurrently; those
//!   of one call in the order they came.
//! - [`serve_waiting`]: this node's waiting calls, oldest first across the nodes, each rung here
//!   or handed to the node of the agent claimed for it — woken by a change on this node's floor
//!   or an announcement from another node, not by a poll.
//! - [`HandOver`] / [`AdoptRequest`]: the port through which the calls actor hands a waiting
//!   call to another node (`cluster` implements it over HTTP).
//!
//! *Owns*: the events in flight to their node and the per-call order of those events.
//!
//! *Does not touch*: HTTP, Redis, media: the authority and the actor do. With one node none of
//! this runs: the call machines' own floor decides.
//!
//! *Fallback*: the authority failing leaves an event on this node (handled as a single node
//! would), and makes the call machines serve their own waiting calls until it answers again.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, info_span, warn, Instrument};

use super::actor::{CallsHandle, FloorView};
use super::HandedCall;
use crate::ids::{AgentId, QueueId, WaCallId};
use crate::routing::{Authority, NodeAddr, Placement, QueueRule, Turn};
use crate::whatsapp::webhook::{Admission, Dedup, WaEvent};

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

/// A hand-over that did not happen.
#[derive(Debug, Clone, thiserror::Error)]
#[error("hand-over failed: {0}")]
pub struct AdoptError(pub String);

/// How the calls actor hands a waiting call to another node.
pub trait HandOver: Send + Sync + 'static {
    /// This node's name.
    fn node(&self) -> &str;
    /// Hands `request` to the node at `url`; its answer SDP for the internal leg.
    fn adopt(
        &self,
        url: String,
        request: AdoptRequest,
    ) -> Pin<Box<dyn Future<Output = Result<String, AdoptError>> + Send>>;
}

/// An event another node handed to this one (which handles it), and when it arrived.
#[derive(Debug)]
pub struct Handed(pub Box<WaEvent>, pub Instant);

/// What is placed: an event Meta delivered to this node, or one another node handed to it
/// (which stays here).
#[derive(Debug)]
enum Inbound {
    Meta(Box<WaEvent>),
    Handed(Box<WaEvent>, Instant),
}

/// Events placed at once (a burst of new calls is placed this many at a time; more wait in the
/// channel, and the webhook answers 503 once that is full).
const IN_FLIGHT: usize = 64;

/// Places every event from `meta` (admitted by the webhook edge) on its node, and hands those
/// this node handles — and every event from `handed` (other nodes') — to `calls`, until both
/// close (everything in flight is finished first) or `calls` is gone.
pub async fn place_events<A: Authority>(
    authority: A,
    rule: watch::Receiver<Arc<QueueRule>>,
    mut meta: mpsc::Receiver<WaEvent>,
    mut handed: mpsc::Receiver<Handed>,
    calls: mpsc::Sender<WaEvent>,
    dedup_ttl: Duration,
) {
    let mut handed_seen = Dedup::new(dedup_ttl, 100_000);
    // Events waiting behind an event of the same call that is being placed.
    let mut behind: HashMap<WaCallId, VecDeque<Inbound>> = HashMap::new();
    // Placements in flight, polled by this task itself: a new call's first Redis command goes
    // out as soon as its event is read, with no task of its own to be scheduled first (on a busy
    // node each scheduling hop adds to the set-up tail).
    let mut placing: FuturesUnordered<Placing> = FuturesUnordered::new();
    let (mut meta_open, mut handed_open) = (true, true);
    loop {
        let room = placing.len() < IN_FLIGHT;
        let next = tokio::select! {
            m = meta.recv(), if meta_open && room => match m {
                Some(e) => Inbound::Meta(Box::new(e)),
                None => { meta_open = false; continue; }
            },
            h = handed.recv(), if handed_open && room => match h {
                Some(Handed(e, at)) => Inbound::Handed(e, at),
                None => { handed_open = false; continue; }
            },
            done = placing.next(), if !placing.is_empty() => {
                let Some((call, alive)) = done else { continue };
                if !alive {
                    return;
                }
                match behind.get_mut(&call).and_then(VecDeque::pop_front) {
                    Some(next) => placing.push(placement(&authority, &rule, &calls, call, next)),
                    None => {
                        behind.remove(&call);
                    }
                }
                continue;
            },
            else => return,
        };
        if let Inbound::Handed(event, at) = &next {
            // Taken cluster-wide by the node that handed it over, so only the same hand-over
            // twice is dropped here.
            if handed_seen.check(*at, event.dedup_key()) != Admission::New {
                debug!(call_id = %event.call_id(), "the same hand-over twice dropped");
                continue;
            }
        }
        let call = match &next {
            Inbound::Meta(e) => e.call_id().clone(),
            Inbound::Handed(e, _) => e.call_id().clone(),
        };
        match behind.get_mut(&call) {
            Some(queue) => queue.push_back(next),
            None => {
                behind.insert(call.clone(), VecDeque::new());
                placing.push(placement(&authority, &rule, &calls, call, next));
            }
        }
    }
}

/// A placement in flight: its call, and whether the call machines are still there.
type Placing = Pin<Box<dyn Future<Output = (WaCallId, bool)> + Send>>;

/// Places `inbound` (an event of `call`). A panic while placing it is caught: logged, and the
/// call's next events still go.
fn placement<A: Authority>(
    authority: &A,
    rule: &watch::Receiver<Arc<QueueRule>>,
    calls: &mpsc::Sender<WaEvent>,
    call: WaCallId,
    inbound: Inbound,
) -> Placing {
    // The rule as accounts are now: a call placed after a change follows the change.
    let rule = rule.borrow().clone();
    let (authority, calls) = (authority.clone(), calls.clone());
    let span = info_span!("wa_call", call_id = %call);
    Box::pin(async move {
        let placed = AssertUnwindSafe(place(&authority, &rule, &calls, inbound))
            .catch_unwind()
            .instrument(span)
            .await;
        let alive = placed.unwrap_or_else(|_| {
            warn!(call_id = %call, "placing an event panicked");
            true
        });
        (call, alive)
    })
}

/// Places one event; false when the call machines are gone.
async fn place<A: Authority>(
    authority: &A,
    rule: &QueueRule,
    calls: &mpsc::Sender<WaEvent>,
    inbound: Inbound,
) -> bool {
    let mut event = match inbound {
        Inbound::Handed(mut event, at) => {
            if let WaEvent::CallOffered { received_at, .. } = &mut *event {
                *received_at = Some(at);
            }
            info!("event handed over by another node");
            return here(authority, calls, *event).await;
        }
        Inbound::Meta(event) => *event,
    };
    let to = match &mut event {
        // The shared state did not answer the edge's de-duplication: declined here.
        WaEvent::CallOffered { unshared: true, .. } => None,
        WaEvent::CallOffered {
            phone_number_id,
            agent,
            ..
        } => {
            let queue = rule.queue_of(phone_number_id.as_deref());
            match authority.place(&queue).await {
                Ok(Placement::Here { agent: claimed }) => {
                    *agent = claimed.map(|a| a.0);
                    None
                }
                Ok(Placement::Elsewhere {
                    node,
                    agent: claimed,
                }) => {
                    debug!(node = %node.name, agent = ?claimed, %queue, "placed on another node");
                    *agent = claimed.map(|a| a.0);
                    Some(node)
                }
                Err(e) => {
                    warn!(error = %e, "placement across the nodes unavailable; handled here");
                    None
                }
            }
        }
        _ => match authority.owner(event.call_id()).await {
            Ok(owner) => owner,
            Err(e) => {
                warn!(error = %e, "the call's owner is unknown; handled here");
                None
            }
        },
    };
    if let Some(node) = to {
        if hand(authority, &node, &event).await {
            return true;
        }
        if let WaEvent::CallOffered { agent, .. } = &mut event {
            // Handled here after all: the agent claimed there is next in line again.
            if let Some(a) = agent.take() {
                if let Err(e) = authority.give_back(&AgentId(a)).await {
                    debug!(error = %e, "a claimed agent was not given back");
                }
            }
        }
    }
    here(authority, calls, event).await
}

async fn hand<A: Authority>(authority: &A, node: &NodeAddr, event: &WaEvent) -> bool {
    match authority.hand_event(node, event).await {
        Ok(()) => {
            info!(node = %node.name, "event handed to the node that handles it");
            metrics::counter!(crate::ops::names::WEBHOOK_EVENTS, "outcome" => "handed_over")
                .increment(1);
            true
        }
        Err(e) => {
            warn!(error = %e, "hand-over failed; handled here");
            false
        }
    }
}

/// Hands an event this node handles to the call machines (recording that it owns a new call);
/// false when they are gone.
async fn here<A: Authority>(authority: &A, calls: &mpsc::Sender<WaEvent>, event: WaEvent) -> bool {
    if let WaEvent::CallOffered {
        call_id,
        unshared: false,
        ..
    } = &event
    {
        if let Err(e) = authority.own(call_id).await {
            warn!(error = %e, "call ownership not recorded; its later events may land elsewhere");
        }
    }
    if calls.send(event).await.is_err() {
        warn!("the call machines are gone; placement stops");
        return false;
    }
    true
}

/// What serving the waiting calls needs of the calls actor ([`CallsHandle`]; the tests fake it).
pub trait WaitingCalls: Send + Sync + 'static {
    /// Rings `agent` (free here) for the waiting `call`; false when either is no longer free.
    fn dispatch(&self, call: WaCallId, agent: AgentId) -> impl Future<Output = bool> + Send;
    /// Hands the waiting `call` to `agent`'s node; false when it is not waiting here any more.
    fn hand_off(
        &self,
        call: WaCallId,
        agent: AgentId,
        node: NodeAddr,
    ) -> impl Future<Output = bool> + Send;
    /// Whether the waiting calls are served in the shared order (else by the call machines).
    fn share_queues(&self, on: bool) -> impl Future<Output = ()> + Send;
}

impl WaitingCalls for CallsHandle {
    async fn dispatch(&self, call: WaCallId, agent: AgentId) -> bool {
        CallsHandle::dispatch(self, call, agent).await
    }

    async fn hand_off(&self, call: WaCallId, agent: AgentId, node: NodeAddr) -> bool {
        CallsHandle::hand_off(self, call, agent, node.name, node.url).await
    }

    async fn share_queues(&self, on: bool) {
        CallsHandle::share_queues(self, on).await;
    }
}

/// How often the waiting calls are served even when nothing announced a change: a change
/// announced while the subscription was down is caught then.
pub const RESYNC: Duration = Duration::from_secs(1);

/// Serves this node's waiting calls in the order the nodes share, whenever this node's floor
/// changes, another node announces a change, or `resync` passes: for each queue, oldest first,
/// as long as the call is the oldest waiting in its queue on any node and an agent is free on
/// any node — this node's agent rings for it here, another node's takes it over. While the
/// authority does not answer, the call machines serve their waiting calls by themselves (and
/// again in the shared order once it answers). Ends when the floor's sender is gone.
pub async fn serve_waiting<A: Authority, C: WaitingCalls>(
    authority: A,
    calls: C,
    mut floor: watch::Receiver<Arc<FloorView>>,
    resync: Duration,
) {
    let mut tick = tokio::time::interval(resync);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shared = false;
    loop {
        tokio::select! {
            changed = floor.changed() => if changed.is_err() { return },
            () = authority.changed() => {}
            _ = tick.tick() => {}
        }
        let view = floor.borrow_and_update().clone();
        let mut ok = true;
        for (queue, waiting) in &view.queues {
            let order: VecDeque<WaCallId> = waiting.iter().map(|w| w.call.clone()).collect();
            if !serve_queue(&authority, &calls, queue, order).await {
                ok = false;
                break;
            }
        }
        if ok && !shared {
            ok = authority.healthy().await;
        }
        if ok != shared {
            shared = ok;
            calls.share_queues(shared).await;
        }
    }
}

/// Serves one queue's waiting calls here, oldest first; false when the authority failed.
async fn serve_queue<A: Authority, C: WaitingCalls>(
    authority: &A,
    calls: &C,
    queue: &QueueId,
    mut order: VecDeque<WaCallId>,
) -> bool {
    // Every call may be tried once more after an older one of ours is moved first.
    let mut budget = order.len() * 2 + 2;
    while let Some(call) = order.pop_front() {
        if budget == 0 {
            break;
        }
        budget -= 1;
        let (agent, node) = match authority.turn(queue, &call).await {
            Ok(Turn::Agent { agent, node }) => (agent, node),
            // No agent free anywhere, or an older call waits on another node: its turn.
            Ok(Turn::NoAgent) => return true,
            Ok(Turn::Older { call: older, node }) => {
                if node != authority.node() {
                    return true;
                }
                // Ours: two calls that began to wait in the same millisecond (or clocks read a
                // moment apart) may be ordered otherwise here than in the shared order; the
                // older one first. Not waiting here any more: a stale entry.
                match order.iter().position(|c| *c == older) {
                    Some(at) => {
                        order.remove(at);
                        order.push_front(call);
                        order.push_front(older);
                    }
                    None => {
                        if let Err(e) = authority.withdraw_waiting(queue, &older).await {
                            debug!(error = %e, "a stale waiting call not withdrawn");
                            return true;
                        }
                        order.push_front(call);
                    }
                }
                continue;
            }
            Err(e) => {
                debug!(error = %e, "waiting calls not served: the shared order is unavailable");
                return false;
            }
        };
        if serve(authority, calls, &call, &agent, &node).await {
            continue;
        }
        // Not waiting any more (answered, ended, its `accept` still in flight) or the agent no
        // longer free: the agent is next in line again at once.
        if let Err(e) = authority.give_back(&agent).await {
            debug!(error = %e, "a claimed agent was not given back");
        }
        return true;
    }
    true
}

/// Rings this node's `agent` for `call`, or hands `call` to the agent's node; false when
/// neither happened.
async fn serve<A: Authority, C: WaitingCalls>(
    authority: &A,
    calls: &C,
    call: &WaCallId,
    agent: &AgentId,
    node: &str,
) -> bool {
    if node == authority.node() {
        return calls.dispatch(call.clone(), agent.clone()).await;
    }
    let Ok(Some(addr)) = authority.address(node).await else {
        warn!(%node, "no address for a node with a free agent");
        return false;
    };
    let handed = calls.hand_off(call.clone(), agent.clone(), addr).await;
    if handed {
        info!(call_id = %call, %node, %agent, "a waiting call goes to a free agent on another node");
    }
    handed
}

#[cfg(test)]
mod tests;
