//! Who takes the next call: agents, their presence, the queues and their waiting calls.
//!
//! *Owns*: each signed-in agent's presence (available, away with a reason, ringing, on a call,
//! wrap-up), how long each has been idle, the state to return to after a call, and each queue's
//! waiting calls in order.
//!
//! *Does not touch*: media, sockets, Meta, the WebSocket. It is told what happened and answers
//! who is next; the call machines in `calls` decide what to do with that.
//!
//! *Invariants*:
//! - Pure and sans-IO: time is passed in; nothing here reads a clock or awaits.
//! - An agent rings or talks for at most one call at a time.
//! - The longest-idle available agent of a queue is chosen first; idle time starts when an agent
//!   becomes available (sign-in, back from away, end of wrap-up).
//! - After wrap-up an agent returns to the state they had before the call (Amazon Connect's rule):
//!   away stays away.
//!
//! [`Routing`] is the narrow interface the call machines use, so that a multi-node switchboard
//! can keep presence and queues in a shared store (Redis, as LiveKit does) without touching
//! them; [`Floor`] is the in-process implementation.

mod authority;

pub use authority::{Authority, AuthorityError, NodeAddr, Placement, Turn};

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::ids::{AgentId, QueueId, WaCallId};

/// The call centre's rule from a business number to its queue: its own queue if it has one,
/// else the default. Used by the call machines and by placement, so both agree.
#[derive(Debug, Clone)]
pub struct QueueRule {
    /// Business number id → queue.
    pub numbers: std::collections::HashMap<String, QueueId>,
    /// The queue of every other number.
    pub default: QueueId,
    /// The number a call without one is for (the configured business number).
    pub ours: String,
}

impl QueueRule {
    /// The queue a call to `number` waits in.
    pub fn queue_of(&self, number: Option<&str>) -> QueueId {
        queue_of(
            &self.numbers,
            &self.default,
            Some(number.unwrap_or(&self.ours)),
        )
    }
}

/// The queue a call to `number` waits in: the number's own queue in `numbers`, else `default`.
pub fn queue_of(
    numbers: &std::collections::HashMap<String, QueueId>,
    default: &QueueId,
    number: Option<&str>,
) -> QueueId {
    number
        .and_then(|n| numbers.get(n))
        .unwrap_or(default)
        .clone()
}

/// What an agent is doing, as supervisors and the agent see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    /// Not signed in.
    Offline,
    /// Ready for a call.
    Available,
    /// Signed in, not taking calls, with a reason ("lunch", "missed call", …).
    Away {
        /// Why.
        reason: AwayReason,
    },
    /// A call is ringing at the agent.
    Ringing {
        /// The call.
        call: WaCallId,
    },
    /// On a call.
    OnCall {
        /// The call.
        call: WaCallId,
    },
    /// After a call, finishing notes; no calls until `until`.
    WrapUp {
        /// The call just ended.
        call: WaCallId,
        /// When wrap-up ends.
        until: Instant,
    },
}

impl Presence {
    /// A short name for logs, records and the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Presence::Offline => "offline",
            Presence::Available => "available",
            Presence::Away { .. } => "away",
            Presence::Ringing { .. } => "ringing",
            Presence::OnCall { .. } => "on_call",
            Presence::WrapUp { .. } => "wrap_up",
        }
    }
}

/// How [`AwayReason::MissedCall`] reads.
pub const MISSED_CALL: &str = "missed call";
/// How [`AwayReason::NoAudio`] reads.
pub const NO_AUDIO: &str = "audio not connected";

/// Why an agent is away: the system's own reasons apart from the ones people choose, so that a
/// configured reason that reads like one of the system's is never taken for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AwayReason {
    /// Their browser's audio connection is not up: they cannot be rung until it is (and become
    /// available as soon as it is).
    NoAudio,
    /// They let a call ring out; they come back by choosing to.
    MissedCall,
    /// What they chose: one of the configured reasons, or "away".
    Chosen(String),
}

impl AwayReason {
    /// How the reason reads, for agents, supervisors and logs.
    pub fn text(&self) -> &str {
        match self {
            AwayReason::NoAudio => NO_AUDIO,
            AwayReason::MissedCall => MISSED_CALL,
            AwayReason::Chosen(s) => s,
        }
    }
}

/// What a queue does with a call no agent can take now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoAgentPolicy {
    /// Graph `reject` at once: with Meta's voicemail configured, the caller leaves a message.
    Decline,
    /// `accept`, play hold audio until an agent is free, for at most `max_wait`; then a clean
    /// `terminate`.
    Queue {
        /// The longest a caller waits.
        max_wait: Duration,
    },
}

/// One queue's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// The queue.
    pub id: QueueId,
    /// What happens when no agent is free.
    pub policy: NoAgentPolicy,
}

/// What goes wrong when routing is asked to do something that does not fit the floor's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoutingError {
    /// No such agent is signed in.
    #[error("agent {agent} is not signed in")]
    NotSignedIn {
        /// The agent.
        agent: AgentId,
    },
    /// No such queue.
    #[error("no queue {queue}")]
    UnknownQueue {
        /// The queue.
        queue: QueueId,
    },
    /// The agent is ringing, on a call or in wrap-up: their state follows the call.
    #[error("agent {agent} is {state}; that follows the call")]
    Busy {
        /// The agent.
        agent: AgentId,
        /// Their state.
        state: &'static str,
    },
}

/// One signed-in agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// Who.
    pub id: AgentId,
    /// The queues they take calls from.
    pub queues: Vec<QueueId>,
    /// What they are doing.
    pub presence: Presence,
    /// When they last became available (for longest-idle routing).
    pub idle_since: Instant,
    /// The state to return to after a call's wrap-up: available, or the away they were in.
    pub resume: Presence,
}

/// A call waiting in a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// The call.
    pub call: WaCallId,
    /// Since when it waits (a call put back at the front keeps its first time).
    pub since: Instant,
}

/// The interface the call machines use; see the module docs.
pub trait Routing {
    /// The queue's settings, if it exists.
    fn queue(&self, queue: &QueueId) -> Option<&QueueConfig>;
    /// The default queue (for business numbers mapped to none).
    fn default_queue(&self) -> &QueueId;
    /// An agent's state, if signed in.
    fn agent(&self, agent: &AgentId) -> Option<&Agent>;
    /// Signs an agent in (or refreshes their queues), available from `now`.
    fn sign_in(&mut self, now: Instant, agent: AgentId, queues: Vec<QueueId>);
    /// Signs an agent out; returns what they were doing.
    fn sign_out(&mut self, agent: &AgentId) -> Option<Presence>;
    /// The agent sets themself available or away; refused while ringing, on a call or in
    /// wrap-up (during wrap-up it changes what they return to).
    fn set_presence(
        &mut self,
        now: Instant,
        agent: &AgentId,
        available: bool,
        reason: Option<AwayReason>,
    ) -> Result<(), RoutingError>;
    /// True when at least one signed-in agent serves the queue (available or not).
    fn staffed(&self, queue: &QueueId) -> bool;
    /// The longest-idle available agent of the queue, skipping `exclude`.
    fn next_agent(&self, queue: &QueueId, exclude: &[AgentId]) -> Option<AgentId>;
    /// The call rings at the agent.
    fn ring(&mut self, agent: &AgentId, call: &WaCallId);
    /// The agent let the call ring out: away with [`MISSED_CALL`] until they come back.
    fn missed(&mut self, agent: &AgentId);
    /// A ring ended without the agent's fault (the caller hung up, the call went elsewhere):
    /// back to what they were doing before, keeping their idle time.
    fn unring(&mut self, agent: &AgentId);
    /// The agent took the call.
    fn talking(&mut self, agent: &AgentId, call: &WaCallId);
    /// The call ended for the agent: wrap-up until `until` (or straight back when `until` is
    /// `now`).
    fn wrap_up(&mut self, now: Instant, agent: &AgentId, call: &WaCallId, until: Instant);
    /// Wrap-up is over: back to the state before the call.
    fn end_wrap_up(&mut self, now: Instant, agent: &AgentId);
    /// Puts a call at the back of its queue.
    fn enqueue(&mut self, queue: &QueueId, call: WaCallId, since: Instant);
    /// Puts a call back at the front of its queue (its agent was lost).
    fn requeue_front(&mut self, queue: &QueueId, call: WaCallId, since: Instant);
    /// Takes a call out of its queue (answered elsewhere, hung up, timed out).
    fn dequeue(&mut self, queue: &QueueId, call: &WaCallId);
    /// The calls waiting in a queue, first first.
    fn waiting(&self, queue: &QueueId) -> Vec<Waiting>;
    /// Every queue's id.
    fn queue_ids(&self) -> Vec<QueueId>;
    /// Every signed-in agent.
    fn agents(&self) -> Vec<Agent>;
    /// Replaces the queues and their settings (an account changed them). A queue kept keeps
    /// its waiting calls in order; a queue removed keeps serving the calls waiting in it (no
    /// number leads to it any more), and is dropped by a later change once empty.
    fn set_queues(&mut self, queues: Vec<QueueConfig>, default_queue: QueueId);
    /// Changes the queues a signed-in agent serves (nothing when not signed in).
    fn set_agent_queues(&mut self, agent: &AgentId, queues: Vec<QueueId>);
}

/// The in-process floor: agents and queues of this node.
#[derive(Debug, Clone)]
pub struct Floor {
    queues: BTreeMap<QueueId, (QueueConfig, VecDeque<Waiting>)>,
    default_queue: QueueId,
    agents: BTreeMap<AgentId, Agent>,
}

impl Floor {
    /// A floor with these queues; `default_queue` must be one of them (the first is used
    /// otherwise). At least one queue is required: an empty list gets a `default` queue with the
    /// `Decline` policy.
    pub fn new(queues: Vec<QueueConfig>, default_queue: QueueId) -> Floor {
        let mut queues = queues;
        if queues.is_empty() {
            queues.push(QueueConfig {
                id: default_queue.clone(),
                policy: NoAgentPolicy::Decline,
            });
        }
        let default_queue = if queues.iter().any(|q| q.id == default_queue) {
            default_queue
        } else {
            queues[0].id.clone()
        };
        Floor {
            queues: queues
                .into_iter()
                .map(|q| (q.id.clone(), (q, VecDeque::new())))
                .collect(),
            default_queue,
            agents: BTreeMap::new(),
        }
    }
}

impl Routing for Floor {
    fn queue(&self, queue: &QueueId) -> Option<&QueueConfig> {
        self.queues.get(queue).map(|(c, _)| c)
    }

    fn default_queue(&self) -> &QueueId {
        &self.default_queue
    }

    fn agent(&self, agent: &AgentId) -> Option<&Agent> {
        self.agents.get(agent)
    }

    fn sign_in(&mut self, now: Instant, agent: AgentId, queues: Vec<QueueId>) {
        match self.agents.get_mut(&agent) {
            // A second browser session: same agent, same state.
            Some(a) => a.queues = queues,
            None => {
                self.agents.insert(
                    agent.clone(),
                    Agent {
                        id: agent,
                        queues,
                        presence: Presence::Available,
                        idle_since: now,
                        resume: Presence::Available,
                    },
                );
            }
        }
    }

    fn sign_out(&mut self, agent: &AgentId) -> Option<Presence> {
        self.agents.remove(agent).map(|a| a.presence)
    }

    fn set_presence(
        &mut self,
        now: Instant,
        agent: &AgentId,
        available: bool,
        reason: Option<AwayReason>,
    ) -> Result<(), RoutingError> {
        let a = self
            .agents
            .get_mut(agent)
            .ok_or_else(|| RoutingError::NotSignedIn {
                agent: agent.clone(),
            })?;
        let wanted = if available {
            Presence::Available
        } else {
            Presence::Away {
                reason: reason.unwrap_or_else(|| AwayReason::Chosen("away".into())),
            }
        };
        match &a.presence {
            Presence::Available | Presence::Away { .. } | Presence::Offline => {
                if available && a.presence != Presence::Available {
                    a.idle_since = now;
                }
                a.presence = wanted.clone();
                a.resume = wanted;
                Ok(())
            }
            // Choosing away (or available) during wrap-up says where to go after it.
            Presence::WrapUp { .. } => {
                a.resume = wanted;
                Ok(())
            }
            other => Err(RoutingError::Busy {
                agent: agent.clone(),
                state: other.name(),
            }),
        }
    }

    fn staffed(&self, queue: &QueueId) -> bool {
        self.agents.values().any(|a| a.queues.contains(queue))
    }

    fn next_agent(&self, queue: &QueueId, exclude: &[AgentId]) -> Option<AgentId> {
        self.agents
            .values()
            .filter(|a| {
                a.presence == Presence::Available
                    && a.queues.contains(queue)
                    && !exclude.contains(&a.id)
            })
            .min_by_key(|a| (a.idle_since, a.id.clone()))
            .map(|a| a.id.clone())
    }

    fn ring(&mut self, agent: &AgentId, call: &WaCallId) {
        if let Some(a) = self.agents.get_mut(agent) {
            a.presence = Presence::Ringing { call: call.clone() };
        }
    }

    fn missed(&mut self, agent: &AgentId) {
        if let Some(a) = self.agents.get_mut(agent) {
            let away = Presence::Away {
                reason: AwayReason::MissedCall,
            };
            a.presence = away.clone();
            a.resume = away;
        }
    }

    fn unring(&mut self, agent: &AgentId) {
        if let Some(a) = self.agents.get_mut(agent) {
            if matches!(a.presence, Presence::Ringing { .. }) {
                a.presence = a.resume.clone();
            }
        }
    }

    fn talking(&mut self, agent: &AgentId, call: &WaCallId) {
        if let Some(a) = self.agents.get_mut(agent) {
            a.presence = Presence::OnCall { call: call.clone() };
        }
    }

    fn wrap_up(&mut self, now: Instant, agent: &AgentId, call: &WaCallId, until: Instant) {
        if until <= now {
            self.end_wrap_up(now, agent);
            return;
        }
        if let Some(a) = self.agents.get_mut(agent) {
            a.presence = Presence::WrapUp {
                call: call.clone(),
                until,
            };
        }
    }

    fn end_wrap_up(&mut self, now: Instant, agent: &AgentId) {
        if let Some(a) = self.agents.get_mut(agent) {
            a.presence = a.resume.clone();
            if a.presence == Presence::Available {
                a.idle_since = now;
            }
        }
    }

    fn enqueue(&mut self, queue: &QueueId, call: WaCallId, since: Instant) {
        if let Some((_, q)) = self.queues.get_mut(queue) {
            if !q.iter().any(|w| w.call == call) {
                q.push_back(Waiting { call, since });
            }
        }
    }

    fn requeue_front(&mut self, queue: &QueueId, call: WaCallId, since: Instant) {
        if let Some((_, q)) = self.queues.get_mut(queue) {
            q.retain(|w| w.call != call);
            q.push_front(Waiting { call, since });
        }
    }

    fn dequeue(&mut self, queue: &QueueId, call: &WaCallId) {
        if let Some((_, q)) = self.queues.get_mut(queue) {
            q.retain(|w| &w.call != call);
        }
    }

    fn set_queues(&mut self, queues: Vec<QueueConfig>, default_queue: QueueId) {
        let mut old = std::mem::take(&mut self.queues);
        let fresh = Floor::new(queues, default_queue);
        self.default_queue = fresh.default_queue;
        self.queues = fresh
            .queues
            .into_iter()
            .map(|(id, (config, _))| {
                let waiting = old.remove(&id).map(|(_, w)| w).unwrap_or_default();
                (id, (config, waiting))
            })
            .collect();
        self.queues
            .extend(old.into_iter().filter(|(_, (_, w))| !w.is_empty()));
    }

    fn set_agent_queues(&mut self, agent: &AgentId, queues: Vec<QueueId>) {
        if let Some(a) = self.agents.get_mut(agent) {
            a.queues = queues;
        }
    }

    fn waiting(&self, queue: &QueueId) -> Vec<Waiting> {
        self.queues
            .get(queue)
            .map(|(_, q)| q.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn queue_ids(&self) -> Vec<QueueId> {
        self.queues.keys().cloned().collect()
    }

    fn agents(&self) -> Vec<Agent> {
        self.agents.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floor() -> Floor {
        Floor::new(
            vec![
                QueueConfig {
                    id: "support".into(),
                    policy: NoAgentPolicy::Queue {
                        max_wait: Duration::from_secs(120),
                    },
                },
                QueueConfig {
                    id: "sales".into(),
                    policy: NoAgentPolicy::Decline,
                },
            ],
            "support".into(),
        )
    }

    fn q(s: &str) -> QueueId {
        s.into()
    }

    fn a(s: &str) -> AgentId {
        s.into()
    }

    #[test]
    fn queues_change_under_waiting_calls() {
        let t0 = Instant::now();
        let mut f = floor();
        f.enqueue(&q("support"), "c1".into(), t0);
        f.enqueue(&q("sales"), "c2".into(), t0);
        f.sign_in(t0, a("bob"), vec![q("support")]);
        // support turns to decline, sales goes, billing comes and is the default.
        f.set_queues(
            vec![
                QueueConfig {
                    id: "support".into(),
                    policy: NoAgentPolicy::Decline,
                },
                QueueConfig {
                    id: "billing".into(),
                    policy: NoAgentPolicy::Decline,
                },
            ],
            "billing".into(),
        );
        assert_eq!(
            f.queue(&q("support")).map(|c| c.policy),
            Some(NoAgentPolicy::Decline)
        );
        assert_eq!(f.default_queue(), &q("billing"));
        assert_eq!(f.waiting(&q("support")).len(), 1);
        // The call waiting in sales is still served there.
        assert_eq!(f.waiting(&q("sales")).len(), 1);
        f.dequeue(&q("sales"), &"c2".into());
        f.set_queues(
            vec![QueueConfig {
                id: "support".into(),
                policy: NoAgentPolicy::Decline,
            }],
            "support".into(),
        );
        assert_eq!(f.queue_ids(), [q("support")]);
        // Moving an agent between queues.
        f.set_agent_queues(&a("bob"), vec![q("billing")]);
        assert_eq!(f.agent(&a("bob")).unwrap().queues, [q("billing")]);
        f.set_agent_queues(&a("nobody"), vec![q("billing")]);
        assert!(f.agent(&a("nobody")).is_none());
    }

    #[test]
    fn the_longest_idle_available_agent_of_the_queue_is_next() {
        let t0 = Instant::now();
        let mut f = floor();
        f.sign_in(t0, a("bob"), vec![q("support")]);
        f.sign_in(
            t0 + Duration::from_secs(1),
            a("alice"),
            vec![q("support"), q("sales")],
        );
        f.sign_in(t0, a("carol"), vec![q("sales")]);
        assert_eq!(f.next_agent(&q("support"), &[]), Some(a("bob")));
        assert_eq!(f.next_agent(&q("support"), &[a("bob")]), Some(a("alice")));
        assert_eq!(f.next_agent(&q("sales"), &[]), Some(a("carol")));
        f.ring(&a("bob"), &"c1".into());
        assert_eq!(f.next_agent(&q("support"), &[]), Some(a("alice")));
        // Bob takes the call and wraps up: he is idle again only from the end of wrap-up.
        f.talking(&a("bob"), &"c1".into());
        let t = t0 + Duration::from_secs(10);
        f.wrap_up(t, &a("bob"), &"c1".into(), t + Duration::from_secs(5));
        assert_eq!(f.next_agent(&q("support"), &[]), Some(a("alice")));
        f.end_wrap_up(t + Duration::from_secs(5), &a("bob"));
        assert_eq!(f.agent(&a("bob")).unwrap().presence, Presence::Available);
        assert_eq!(
            f.next_agent(&q("support"), &[]),
            Some(a("alice")),
            "alice idled longer"
        );
    }

    #[test]
    fn after_wrap_up_an_agent_returns_to_the_state_before_the_call() {
        let t0 = Instant::now();
        let mut f = floor();
        f.sign_in(t0, a("bob"), vec![q("support")]);
        f.ring(&a("bob"), &"c1".into());
        f.talking(&a("bob"), &"c1".into());
        f.wrap_up(t0, &a("bob"), &"c1".into(), t0 + Duration::from_secs(30));
        // During wrap-up Bob chooses lunch: that is where he goes after it.
        f.set_presence(
            t0,
            &a("bob"),
            false,
            Some(AwayReason::Chosen("lunch".into())),
        )
        .unwrap();
        assert!(matches!(
            f.agent(&a("bob")).unwrap().presence,
            Presence::WrapUp { .. }
        ));
        f.end_wrap_up(t0 + Duration::from_secs(30), &a("bob"));
        assert_eq!(
            f.agent(&a("bob")).unwrap().presence,
            Presence::Away {
                reason: AwayReason::Chosen("lunch".into())
            }
        );
        assert_eq!(f.next_agent(&q("support"), &[]), None);
    }

    #[test]
    fn a_missed_call_sets_the_agent_away_until_they_come_back() {
        let t0 = Instant::now();
        let mut f = floor();
        f.sign_in(t0, a("bob"), vec![q("support")]);
        f.ring(&a("bob"), &"c1".into());
        f.missed(&a("bob"));
        assert_eq!(
            f.agent(&a("bob")).unwrap().presence,
            Presence::Away {
                reason: AwayReason::MissedCall
            }
        );
        assert!(f.staffed(&q("support")), "away agents still staff a queue");
        assert_eq!(f.next_agent(&q("support"), &[]), None);
        f.set_presence(t0, &a("bob"), true, None).unwrap();
        assert_eq!(f.next_agent(&q("support"), &[]), Some(a("bob")));
        assert!(!f.staffed(&q("sales")));
    }

    #[test]
    fn presence_follows_the_call_while_ringing_or_talking() {
        let t0 = Instant::now();
        let mut f = floor();
        f.sign_in(t0, a("bob"), vec![q("support")]);
        f.ring(&a("bob"), &"c1".into());
        assert!(matches!(
            f.set_presence(t0, &a("bob"), false, None),
            Err(RoutingError::Busy {
                state: "ringing",
                ..
            })
        ));
        f.unring(&a("bob"));
        assert_eq!(f.agent(&a("bob")).unwrap().presence, Presence::Available);
        assert!(matches!(
            f.set_presence(t0, &a("nobody"), true, None),
            Err(RoutingError::NotSignedIn { .. })
        ));
    }

    #[test]
    fn queues_keep_order_and_a_lost_call_goes_back_to_the_front() {
        let t0 = Instant::now();
        let mut f = floor();
        f.enqueue(&q("support"), "c1".into(), t0);
        f.enqueue(&q("support"), "c2".into(), t0);
        f.enqueue(&q("support"), "c1".into(), t0);
        f.requeue_front(&q("support"), "c3".into(), t0);
        let order: Vec<String> = f
            .waiting(&q("support"))
            .into_iter()
            .map(|w| w.call.0)
            .collect();
        assert_eq!(order, vec!["c3", "c1", "c2"]);
        f.dequeue(&q("support"), &"c1".into());
        assert_eq!(f.waiting(&q("support")).len(), 2);
    }
}
