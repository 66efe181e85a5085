//! The call machines: every live call's state, the agents' sessions, and the routing floor,
//! driven by [`Input`]s and the current time, answering with [`Action`]s.
//!
//! One [`Centre`] holds all of them, so that a routing decision (who is free, who is next) and
//! the call it concerns change together, with no message between owners in between. It is pure:
//! `handle(now, input)`, `handle_timeout(now)`, `poll_action()`, `poll_timeout()`.
//!
//! A call's life (user-initiated):
//!
//! ```text
//! Offered ─▶ Answering ─▶ PreAccepting ─▶ Ringing(agent) ─▶ Connecting ─▶ Talking ─▶ ended
//!                │              │            │  ▲  ring timeout: next agent   │  agent lost:
//!                │              │            ▼  │                            ▼  AgentLost(grace)
//!              reject         reject       Queued (accepted, hold audio) ◀── grace over
//! ```
//!
//! `accept` goes out once an agent answered *and* the WhatsApp leg is connected (pre_accept gave
//! it the ringing time to connect), or when the call enters a queue with hold audio; media starts
//! only after `accept` succeeded (reference §9: media after pre_accept counts as answering).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::event::{
    Action, AgentLeg, Command, Ended, EndedBy, GraphAction, GraphFailure, Input, Metric, Notice,
    Outcome, RejectReason, Role, SetupStep, TransferTarget, WaLeg,
};
use crate::ids::{AgentId, LegId, QueueId, StreamId, WaCallId};
use crate::media::LegStats;
use crate::routing::{AwayReason, NoAgentPolicy, Presence, Routing};

mod handoff;
pub use handoff::HandedCall;

/// How long an accepted call with no agent may wait in a queue whose policy is `Decline`
/// (it was accepted elsewhere: a transfer, an agent lost): it cannot be declined any more.
const ACCEPTED_FALLBACK_WAIT: Duration = Duration::from_secs(120);
/// Ended calls remembered so that late or duplicate events for them change nothing.
const TOMBSTONES: usize = 10_000;
/// [`CentreConfig::max_setting_up`] when nothing else is said (the program scales it with its
/// media threads): about what one media thread sets up well within the 10 s connect timeout
/// (docs/performance.md: ramps of 100–250 new calls a second set up in milliseconds).
pub const DEFAULT_MAX_SETTING_UP: usize = 128;

/// Settings of the call machines.
#[derive(Debug, Clone)]
pub struct CentreConfig {
    /// An agent who does not answer within this is skipped (and set away).
    pub ring_timeout: Duration,
    /// After a call, the agent's wrap-up time.
    pub wrap_up: Duration,
    /// An agent whose session or media drops mid-call has this long to come back.
    pub grace: Duration,
    /// A call not accepted this long after Meta offered it is queued (policy `queue`) or
    /// declined: Meta's accept window is ~30–60 s, and unanswered calls cost the business its
    /// call button (reference §9).
    pub answer_deadline: Duration,
    /// Calls in progress at once per business number; past it, rejected at once.
    pub max_calls_per_number: usize,
    /// Calls being set up at once (offered, their WhatsApp leg's ICE and DTLS not yet done);
    /// past it, a new call is rejected at once (Graph `reject`, reason `setup_busy`). A burst
    /// beyond what the engine can set up within its connect timeout would otherwise fail
    /// every call in it a few seconds later, after ringing agents.
    pub max_setting_up: usize,
    /// Business number id → queue; numbers not listed go to the default queue.
    pub number_queues: HashMap<String, QueueId>,
    /// A call answered within this of its offer counts toward the service level.
    pub service_level_target: Duration,
}

impl Default for CentreConfig {
    fn default() -> Self {
        CentreConfig {
            ring_timeout: Duration::from_secs(15),
            wrap_up: Duration::from_secs(10),
            grace: Duration::from_secs(30),
            answer_deadline: Duration::from_secs(25),
            max_calls_per_number: 1000,
            max_setting_up: DEFAULT_MAX_SETTING_UP,
            number_queues: HashMap::new(),
            service_level_target: Duration::from_secs(20),
        }
    }
}

/// Where a call is. Each variant holds what is valid in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// The engine answers Meta's offer.
    Answering,
    /// `pre_accept` is in flight.
    PreAccepting,
    /// Ringing at an agent.
    Ringing {
        /// Who.
        agent: AgentId,
        /// Until when.
        until: Instant,
    },
    /// Waiting in its queue (accepted, or being accepted, with hold audio).
    Queued {
        /// Until when, at most.
        until: Instant,
    },
    /// The agent answered; `accept` is pending (the leg connecting, or the request in flight).
    Connecting {
        /// Who.
        agent: AgentId,
    },
    /// Caller and agent talk.
    Talking {
        /// Who.
        agent: AgentId,
    },
    /// The agent's session or media dropped; the caller hears hold audio.
    AgentLost {
        /// Who.
        agent: AgentId,
        /// Until when they may come back.
        until: Instant,
    },
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::Answering => "answering",
            Phase::PreAccepting => "pre_accepted",
            Phase::Ringing { .. } => "ringing",
            Phase::Queued { .. } => "queued",
            Phase::Connecting { .. } => "connecting",
            Phase::Talking { .. } => "talking",
            Phase::AgentLost { .. } => "agent_lost",
        }
    }

    fn agent(&self) -> Option<&AgentId> {
        match self {
            Phase::Ringing { agent, .. }
            | Phase::Connecting { agent }
            | Phase::Talking { agent }
            | Phase::AgentLost { agent, .. } => Some(agent),
            _ => None,
        }
    }
}

/// One live call.
#[derive(Debug, Clone)]
struct Call {
    id: WaCallId,
    from: Option<String>,
    name: Option<String>,
    business_number: Option<String>,
    display_number: Option<String>,
    queue: QueueId,
    offered_at: Instant,
    /// When switchboard received Meta's webhook (set-up latency runs from here).
    received_at: Instant,
    phase: Phase,
    wa: Option<WaLeg>,
    connected: bool,
    accept_sent: bool,
    accepted: bool,
    answered_at: Option<Instant>,
    /// Set-up latency marks: the agent answered and `accept` is not sent yet; `accept` sent and
    /// no packet to Meta yet; the agent answered and the caller's audio has not reached them.
    answer_waits_accept: Option<Instant>,
    accept_waits_packet: Option<Instant>,
    answer_waits_caller: Option<Instant>,
    muted: bool,
    held: bool,
    /// Agents rung without answer in the current routing round.
    tried: Vec<AgentId>,
    agents: Vec<AgentId>,
    /// Since when it waits (kept when it goes back to the front of its queue).
    waiting_since: Option<Instant>,
    /// With several nodes: the agent chosen for it across the cluster, rung first if free.
    preferred: Option<AgentId>,
    transitions: Vec<(&'static str, Instant, Option<AgentId>)>,
    meta_errors: Vec<i64>,
    stats: Vec<(String, LegStats)>,
}

impl Call {
    /// A call this centre has just taken up: answering, nothing said to Meta, no agent.
    fn new(
        id: WaCallId,
        caller: Caller,
        queue: QueueId,
        received_at: Instant,
        now: Instant,
        first: &'static str,
    ) -> Call {
        Call {
            id,
            from: caller.from,
            name: caller.name,
            business_number: caller.business_number,
            display_number: caller.display_number,
            queue,
            offered_at: received_at,
            received_at,
            phase: Phase::Answering,
            wa: None,
            connected: false,
            accept_sent: false,
            accepted: false,
            answered_at: None,
            answer_waits_accept: None,
            accept_waits_packet: None,
            answer_waits_caller: None,
            muted: false,
            held: false,
            tried: vec![],
            agents: vec![],
            waiting_since: None,
            preferred: caller.preferred,
            transitions: vec![(first, now, None)],
            meta_errors: vec![],
            stats: vec![],
        }
    }
}

/// One agent's (or supervisor's) session.
#[derive(Debug, Clone)]
struct Session {
    role: Role,
    online: bool,
    leg: Option<AgentLeg>,
    connected: bool,
    wrap_until: Option<Instant>,
    /// A supervisor's monitoring: the call, and whether they whisper.
    monitoring: Option<(WaCallId, bool)>,
}

/// A snapshot of one call, for supervisors.
#[derive(Debug, Clone, PartialEq)]
pub struct CallView {
    /// Meta's call id.
    pub call: WaCallId,
    /// The caller's number.
    pub from: Option<String>,
    /// The caller's name.
    pub name: Option<String>,
    /// Its queue.
    pub queue: QueueId,
    /// Its state's name.
    pub state: &'static str,
    /// The agent on it, if any.
    pub agent: Option<AgentId>,
    /// Since when it exists.
    pub offered_at: Instant,
    /// The last statistics of each of its legs: ("whatsapp" | agent id, stats).
    pub legs: Vec<(String, LegStats)>,
}

/// What the call machines count; the metrics issue exports these.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CentreCounters {
    /// Calls offered by Meta (duplicates not counted).
    pub offered: u64,
    /// Calls rejected at once because the business number had its cap of calls in progress.
    pub rejected_at_capacity: u64,
    /// Calls rejected at once because as many as allowed were being set up.
    pub rejected_setup_busy: u64,
    /// Calls declined at once: nobody staffed, or nobody free with the `decline` policy.
    pub declined_at_once: u64,
    /// Calls that ended, any way.
    pub ended: u64,
}

/// One queue's service level so far: of the calls that ended, how many an agent answered
/// within the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServiceLevel {
    /// Calls offered to the queue that have ended (their fate is known).
    pub ended: u64,
    /// Of those, answered within the target.
    pub within_target: u64,
}

impl ServiceLevel {
    /// The share answered within the target, 0..1 (1 while nothing ended).
    pub fn ratio(&self) -> f64 {
        if self.ended == 0 {
            1.0
        } else {
            self.within_target as f64 / self.ended as f64
        }
    }
}

/// The calls machines; see the module docs.
pub struct Centre<R: Routing> {
    counters: CentreCounters,
    service: BTreeMap<QueueId, ServiceLevel>,
    /// New calls are declined; calls in progress go on.
    draining: bool,
    /// With several nodes and Redis answering: waiting calls get agents through the shared
    /// order (`Input::Dispatch`), not from `dispatch`.
    queues_shared: bool,
    cfg: CentreConfig,
    routing: R,
    calls: HashMap<WaCallId, Call>,
    sessions: HashMap<AgentId, Session>,
    wa_legs: HashMap<LegId, WaCallId>,
    agent_legs: HashMap<LegId, AgentId>,
    tombstones: (VecDeque<WaCallId>, HashSet<WaCallId>),
    actions: VecDeque<Action>,
}

impl<R: Routing> Centre<R> {
    /// A centre with no calls, over `routing`.
    pub fn new(cfg: CentreConfig, routing: R) -> Centre<R> {
        Centre {
            counters: CentreCounters::default(),
            service: BTreeMap::new(),
            draining: false,
            queues_shared: false,
            cfg,
            routing,
            calls: HashMap::new(),
            sessions: HashMap::new(),
            wa_legs: HashMap::new(),
            agent_legs: HashMap::new(),
            tombstones: (VecDeque::new(), HashSet::new()),
            actions: VecDeque::new(),
        }
    }

    /// The counters so far.
    pub fn counters(&self) -> CentreCounters {
        self.counters
    }

    /// Each queue's service level so far (queues with an ended call only).
    pub fn service_levels(&self) -> Vec<(QueueId, ServiceLevel)> {
        self.service.iter().map(|(q, s)| (q.clone(), *s)).collect()
    }

    /// The routing floor (agents, queues).
    pub fn routing(&self) -> &R {
        &self.routing
    }

    /// Live calls.
    pub fn calls(&self) -> Vec<CallView> {
        let mut v: Vec<CallView> = self
            .calls
            .values()
            .map(|c| CallView {
                call: c.id.clone(),
                from: c.from.clone(),
                name: c.name.clone(),
                queue: c.queue.clone(),
                state: c.phase.name(),
                agent: c.phase.agent().cloned(),
                offered_at: c.offered_at,
                legs: c.stats.clone(),
            })
            .collect();
        v.sort_by(|a, b| (a.offered_at, &a.call).cmp(&(b.offered_at, &b.call)));
        v
    }

    /// A live call's state.
    pub fn phase(&self, call: &WaCallId) -> Option<&Phase> {
        self.calls.get(call).map(|c| &c.phase)
    }

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Centre::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let calls = self.calls.values().filter_map(|c| self.deadline_of(c));
        let wraps = self.sessions.values().filter_map(|s| s.wrap_until);
        calls.chain(wraps).min()
    }

    fn deadline_of(&self, c: &Call) -> Option<Instant> {
        let phase = match &c.phase {
            Phase::Ringing { until, .. }
            | Phase::Queued { until }
            | Phase::AgentLost { until, .. } => Some(*until),
            _ => None,
        };
        let answer_by = awaits_answer(c).then(|| c.offered_at + self.cfg.answer_deadline);
        match (phase, answer_by) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ------------------------------------------------------------------ inputs

    /// Handles one input.
    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Offered {
                call,
                from,
                name,
                business_number,
                display_number,
                offer,
                received_at,
                unshared,
                agent,
            } => self.on_offered(
                now,
                received_at.min(now),
                call,
                Caller {
                    from,
                    name,
                    business_number,
                    display_number,
                    preferred: agent,
                },
                unshared,
                offer,
            ),
            Input::Terminated {
                call,
                status,
                errors,
            } => self.on_terminated(now, call, status, errors),
            Input::Answered { call, result } => self.on_answered(now, call, result),
            Input::GraphDone {
                call,
                action,
                result,
            } => self.on_graph_done(now, call, action, result),
            Input::MediaConnected { leg } => self.on_media_connected(now, leg),
            Input::MediaGone { leg, failed } => self.on_media_gone(now, leg, failed),
            Input::Dtmf { leg, digit } => {
                if let Some(c) = self.wa_legs.get(&leg).and_then(|id| self.calls.get(id)) {
                    if let Some(agent) = c.phase.agent() {
                        let notice = Notice::Dtmf {
                            call: c.id.clone(),
                            digit,
                        };
                        self.notify(agent.clone(), notice);
                    }
                }
            }
            Input::Stats { leg, stats } => self.on_stats(leg, stats),
            Input::FirstPacket { stream } => self.on_first_packet(now, stream),
            Input::SourceFlowing { stream, source } => self.on_source_flowing(now, stream, source),
            Input::AgentJoined {
                agent,
                role,
                queues,
            } => self.on_agent_joined(now, agent, role, queues),
            Input::AgentLegReady { agent, leg } => self.on_agent_leg(agent, leg),
            Input::AgentLeft { agent, signed_out } => self.on_agent_left(now, agent, signed_out),
            Input::AgentCommand { agent, command } => self.on_command(now, agent, command),
            Input::QueuesShared { on } => {
                if on != self.queues_shared {
                    info!(on, "queues served in the order shared by the nodes");
                    self.queues_shared = on;
                }
            }
            Input::Dispatch { call, agent } => {
                let queue = self.calls.get(&call).and_then(|c| match c.phase {
                    Phase::Queued { .. } if self.may_ring(c, now) => Some(c.queue.clone()),
                    _ => None,
                });
                if queue.is_some_and(|q| self.free_for(&agent, &q)) {
                    self.ring(now, &call, agent);
                }
            }
            Input::Drain => {
                info!(calls = self.calls.len(), "draining: new calls are declined");
                self.draining = true;
            }
            Input::Shutdown => self.on_shutdown(now),
        }
        self.dispatch(now);
    }

    /// Advances time: ring timeouts, queue waits, grace periods, wrap-ups, Meta's window.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<WaCallId> = self
            .calls
            .values()
            .filter(|c| self.deadline_of(c).is_some_and(|d| d <= now))
            .map(|c| c.id.clone())
            .collect();
        for id in due {
            self.on_call_deadline(now, &id);
        }
        let wraps: Vec<AgentId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.wrap_until.is_some_and(|t| t <= now))
            .map(|(a, _)| a.clone())
            .collect();
        for agent in wraps {
            if let Some(s) = self.sessions.get_mut(&agent) {
                s.wrap_until = None;
            }
            self.routing.end_wrap_up(now, &agent);
            self.notify_presence(&agent);
        }
        self.dispatch(now);
    }

    fn on_offered(
        &mut self,
        now: Instant,
        received_at: Instant,
        id: WaCallId,
        caller: Caller,
        unshared: bool,
        offer: String,
    ) {
        let Caller {
            from,
            name,
            business_number,
            display_number,
            preferred,
        } = caller;
        if self.calls.contains_key(&id) || self.tombstones.1.contains(&id) {
            debug!(call_id = %id, "duplicate or late connect; ignored");
            return;
        }
        let queue = crate::routing::queue_of(
            &self.cfg.number_queues,
            self.routing.default_queue(),
            business_number.as_deref(),
        );
        let mut call = Call::new(
            id.clone(),
            Caller {
                from,
                name,
                business_number: business_number.clone(),
                display_number,
                preferred,
            },
            queue.clone(),
            received_at,
            now,
            "offered",
        );
        call.offered_at = now;
        let on_number = self
            .calls
            .values()
            .filter(|c| c.business_number == business_number)
            .count();
        let setting_up = self
            .calls
            .values()
            .filter(|c| !c.connected && !c.accepted)
            .count();
        self.counters.offered += 1;
        self.actions.push_back(Action::Metric(Metric::Offered {
            queue: queue.clone(),
        }));
        let refusal = if self.draining {
            Some((RejectReason::Draining, "switchboard is draining"))
        } else if unshared {
            Some((
                RejectReason::SharedStateDown,
                "the nodes' shared state (Redis) is unreachable",
            ))
        } else if on_number >= self.cfg.max_calls_per_number {
            self.counters.rejected_at_capacity += 1;
            Some((
                RejectReason::AtCapacity,
                "over the business number's concurrent call cap",
            ))
        } else if setting_up >= self.cfg.max_setting_up {
            self.counters.rejected_setup_busy += 1;
            Some((
                RejectReason::SetupBusy,
                "as many calls as allowed are being set up",
            ))
        } else if !self.routing.staffed(&queue) {
            Some((RejectReason::Unstaffed, "nobody is signed in to the queue"))
        } else if self.policy(&queue) == NoAgentPolicy::Decline
            && self.next_free(&queue, &[]).is_none()
        {
            Some((
                RejectReason::NoFreeAgent,
                "no agent is free and the queue declines",
            ))
        } else {
            None
        };
        if let Some((why, reason)) = refusal {
            self.counters.declined_at_once += 1;
            self.actions.push_back(Action::Metric(Metric::Rejected {
                queue: queue.clone(),
                reason: why,
            }));
            info!(call_id = %id, %queue, reason, "call declined at once");
            self.end_at_meta(&id, false);
            call.transitions.push(("declined", now, None));
            self.finish(now, call, Outcome::Declined, reason.into(), EndedBy::System);
            return;
        }
        info!(call_id = %id, %queue, "call offered");
        self.actions.push_back(Action::AnswerWhatsApp {
            call: id.clone(),
            offer,
        });
        self.calls.insert(id.clone(), call);
        self.mark_live(now, &id);
        self.actions.push_back(Action::FloorChanged);
    }

    fn on_answered(&mut self, now: Instant, id: WaCallId, result: Result<WaLeg, String>) {
        let Some(call) = self.calls.get_mut(&id) else {
            // The call ended while the engine answered: its leg must not linger.
            if let Ok(wa) = result {
                self.actions.push_back(Action::CloseLeg { leg: wa.leg });
            }
            return;
        };
        if call.phase != Phase::Answering {
            // Answered too late (Meta's window moved the call on meanwhile): a leg the call does
            // not use must not linger either.
            if let Ok(wa) = result {
                if call.wa.as_ref().is_none_or(|w| w.leg != wa.leg) {
                    self.actions.push_back(Action::CloseLeg { leg: wa.leg });
                }
            }
            return;
        }
        match result {
            Ok(wa) => {
                self.wa_legs.insert(wa.leg, id.clone());
                self.actions.push_back(Action::Graph {
                    call: id.clone(),
                    action: GraphAction::PreAccept,
                    sdp: Some(wa.sdp.clone()),
                });
                self.actions.push_back(Action::Metric(Metric::Setup {
                    step: SetupStep::WebhookToPreAccept,
                    took: now.saturating_duration_since(call.received_at),
                }));
                call.wa = Some(wa);
                set_phase(call, now, Phase::PreAccepting);
            }
            Err(e) => {
                warn!(call_id = %id, error = %e, "offer unusable; rejecting");
                self.actions.push_back(Action::Metric(Metric::Rejected {
                    queue: call.queue.clone(),
                    reason: RejectReason::MediaRefused,
                }));
                self.end_at_meta(&id, false);
                self.end(
                    now,
                    &id,
                    Outcome::Failed,
                    format!("offer unusable: {e}"),
                    EndedBy::System,
                );
            }
        }
    }

    fn on_graph_done(
        &mut self,
        now: Instant,
        id: WaCallId,
        action: GraphAction,
        result: Result<(), GraphFailure>,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if let Err(GraphFailure {
            code: Some(code), ..
        }) = &result
        {
            call.meta_errors.push(*code);
        }
        match (action, result) {
            (GraphAction::PreAccept, Ok(())) if call.phase == Phase::PreAccepting => {
                self.route_call(now, &id);
            }
            (GraphAction::PreAccept, Err(f)) => {
                // Meta's window may have queued the call meanwhile and its leg connected: then
                // `accept` went out behind this `pre_accept`, Meta may take it, and only a
                // `terminate` ends the call.
                let accepted = call.accepted || call.accept_sent;
                warn!(call_id = %id, error = %f.message, "pre_accept failed; ending the call");
                self.end_at_meta(&id, accepted);
                self.end(
                    now,
                    &id,
                    Outcome::Failed,
                    format!("pre_accept failed: {}", f.message),
                    EndedBy::System,
                );
            }
            (GraphAction::Accept, Ok(())) => {
                call.accepted = true;
                let wa = call.wa.clone();
                let phase = call.phase.clone();
                call.transitions
                    .push(("accepted", now, phase.agent().cloned()));
                if let Some(wa) = wa {
                    match &phase {
                        Phase::Connecting { agent } => {
                            let agent = agent.clone();
                            mark_answered(
                                call,
                                now,
                                self.cfg.service_level_target,
                                &mut self.actions,
                            );
                            set_phase(
                                call,
                                now,
                                Phase::Talking {
                                    agent: agent.clone(),
                                },
                            );
                            self.actions.push_back(Action::StartSending { leg: wa.leg });
                            self.notify_talking(&id, &agent);
                        }
                        _ => {
                            // Accepted into a queue (or the agent left meanwhile): hold audio.
                            self.actions.push_back(Action::Hold {
                                stream: wa.stream,
                                on: true,
                            });
                            self.actions.push_back(Action::StartSending { leg: wa.leg });
                        }
                    }
                }
                self.actions.push_back(Action::FloorChanged);
            }
            (GraphAction::Accept, Err(f)) => {
                warn!(call_id = %id, error = %f.message, "accept failed; ending the call");
                if let Some(agent) = call.phase.agent().cloned() {
                    self.notify(
                        agent.clone(),
                        Notice::CallEnded {
                            call: id.clone(),
                            reason: format!("WhatsApp refused to connect the call: {}", f.message),
                        },
                    );
                }
                self.end_at_meta(&id, false);
                self.end(
                    now,
                    &id,
                    Outcome::Failed,
                    format!("accept failed: {}", f.message),
                    EndedBy::System,
                );
            }
            (a @ (GraphAction::Reject | GraphAction::Terminate), Err(f)) => {
                warn!(call_id = %id, action = a.name(), error = %f.message, "ending the call at Meta failed");
            }
            _ => {}
        }
    }

    fn on_terminated(
        &mut self,
        now: Instant,
        id: WaCallId,
        status: Option<String>,
        errors: Vec<i64>,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            // A terminate before its connect (§9): remember it so the connect changes nothing.
            self.tombstone(id);
            return;
        };
        call.meta_errors.extend(errors);
        let talked = call.answered_at.is_some();
        let outcome = if talked {
            Outcome::Answered
        } else if status.as_deref() == Some("FAILED") {
            Outcome::Failed
        } else {
            Outcome::Abandoned
        };
        info!(call_id = %id, ?status, "the caller's side ended the call");
        self.end(
            now,
            &id,
            outcome,
            format!(
                "ended by WhatsApp ({})",
                status.as_deref().unwrap_or("no status")
            ),
            EndedBy::Caller,
        );
    }

    fn on_media_connected(&mut self, now: Instant, leg: LegId) {
        if let Some(id) = self.wa_legs.get(&leg).cloned() {
            if let Some(call) = self.calls.get_mut(&id) {
                call.connected = true;
                call.transitions.push(("media_connected", now, None));
            }
            self.maybe_accept(now, &id);
            return;
        }
        let Some(agent) = self.agent_legs.get(&leg).cloned() else {
            return;
        };
        if let Some(s) = self.sessions.get_mut(&agent) {
            s.connected = true;
        }
        let waiting_for_audio = self.routing.agent(&agent).is_some_and(|a| {
            matches!(
                &a.presence,
                Presence::Away {
                    reason: AwayReason::NoAudio
                }
            )
        });
        if waiting_for_audio {
            let _ = self.routing.set_presence(now, &agent, true, None);
            self.notify_presence(&agent);
            self.actions.push_back(Action::FloorChanged);
        }
        // An agent coming back during the grace period takes the call up again.
        let lost = self
            .calls
            .values()
            .find(|c| matches!(&c.phase, Phase::AgentLost { agent: a, .. } if *a == agent))
            .map(|c| c.id.clone());
        if let Some(id) = lost {
            info!(call_id = %id, %agent, "agent is back; resuming the call");
            self.start_talking(now, &id, &agent);
            self.actions.push_back(Action::FloorChanged);
        }
    }

    fn on_media_gone(&mut self, now: Instant, leg: LegId, failed: bool) {
        if let Some(id) = self.wa_legs.remove(&leg) {
            let Some(call) = self.calls.get_mut(&id) else {
                return;
            };
            // Ours is gone already: nothing to close.
            call.wa = None;
            if !failed {
                // Meta closed the media (DTLS close_notify): the caller's side ended the call.
                // Meta knows; its terminate webhook, if it follows, finds the call ended.
                let outcome = if call.answered_at.is_some() {
                    Outcome::Answered
                } else {
                    Outcome::Abandoned
                };
                info!(call_id = %id, "WhatsApp closed the media: the caller's side ended the call");
                self.end(
                    now,
                    &id,
                    outcome,
                    "ended by WhatsApp (media closed)".into(),
                    EndedBy::Caller,
                );
                return;
            }
            let accepted = call.accepted || call.accept_sent;
            warn!(call_id = %id, failed, "the WhatsApp leg is gone; ending the call");
            self.end_at_meta(&id, accepted);
            if let Some(agent) = self.calls.get(&id).and_then(|c| c.phase.agent().cloned()) {
                self.notify(
                    agent,
                    Notice::CallEnded {
                        call: id.clone(),
                        reason: "the caller's audio connection failed".into(),
                    },
                );
            }
            self.end(
                now,
                &id,
                Outcome::Failed,
                "WhatsApp media failed".into(),
                EndedBy::System,
            );
            return;
        }
        if let Some(agent) = self.agent_legs.remove(&leg) {
            let Some(s) = self.sessions.get_mut(&agent) else {
                return;
            };
            if s.leg.as_ref().is_some_and(|l| l.leg == leg) {
                s.leg = None;
                s.connected = false;
                self.agent_lost(now, &agent);
                let idle = self
                    .routing
                    .agent(&agent)
                    .is_some_and(|a| matches!(a.presence, Presence::Available));
                if idle {
                    let _ =
                        self.routing
                            .set_presence(now, &agent, false, Some(AwayReason::NoAudio));
                    self.notify_presence(&agent);
                }
            }
        }
    }

    /// The first packet to Meta after `accept`.
    fn on_first_packet(&mut self, now: Instant, stream: StreamId) {
        let Some(call) = self
            .wa_legs
            .get(&stream.leg)
            .and_then(|id| self.calls.get_mut(id))
        else {
            return;
        };
        if let Some(t) = call.accept_waits_packet.take() {
            self.actions.push_back(Action::Metric(Metric::Setup {
                step: SetupStep::AcceptToFirstPacket,
                took: now.saturating_duration_since(t),
            }));
        }
    }

    /// The caller's audio reached a stream; it counts when that is the answering agent's.
    fn on_source_flowing(&mut self, now: Instant, stream: StreamId, source: LegId) {
        let Some(call) = self
            .wa_legs
            .get(&source)
            .and_then(|id| self.calls.get_mut(id))
        else {
            return;
        };
        let agent_leg = call
            .phase
            .agent()
            .and_then(|a| self.sessions.get(a))
            .and_then(|s| s.leg.as_ref());
        if agent_leg.is_none_or(|l| l.leg != stream.leg) {
            return;
        }
        if let Some(t) = call.answer_waits_caller.take() {
            self.actions.push_back(Action::Metric(Metric::Setup {
                step: SetupStep::AnswerToFirstCallerPacket,
                took: now.saturating_duration_since(t),
            }));
        }
    }

    fn on_stats(&mut self, leg: LegId, stats: LegStats) {
        let (id, label) = if let Some(id) = self.wa_legs.get(&leg) {
            (id.clone(), "whatsapp".to_owned())
        } else if let Some(agent) = self.agent_legs.get(&leg) {
            let Some(c) = self.calls.values().find(|c| c.phase.agent() == Some(agent)) else {
                return;
            };
            (c.id.clone(), agent.0.clone())
        } else {
            return;
        };
        if let Some(call) = self.calls.get_mut(&id) {
            match call.stats.iter_mut().find(|(l, _)| *l == label) {
                Some((_, s)) => *s = stats,
                None => call.stats.push((label, stats)),
            }
        }
    }

    fn on_agent_joined(&mut self, now: Instant, agent: AgentId, role: Role, queues: Vec<QueueId>) {
        let resumed = self.sessions.contains_key(&agent);
        let s = self.sessions.entry(agent.clone()).or_insert(Session {
            role,
            online: true,
            leg: None,
            connected: false,
            wrap_until: None,
            monitoring: None,
        });
        s.role = role;
        s.online = true;
        // A new page (a reload, or a second session replacing the first) brings a
        // PeerConnection of its own: the audio is up again only once that one connects.
        s.connected = false;
        if resumed {
            let available = self
                .routing
                .agent(&agent)
                .is_some_and(|a| matches!(a.presence, Presence::Available));
            if available {
                let _ = self
                    .routing
                    .set_presence(now, &agent, false, Some(AwayReason::NoAudio));
            }
        }
        if !resumed || self.routing.agent(&agent).is_none() {
            self.routing.sign_in(now, agent.clone(), queues);
            // Nobody is rung before their audio is up; the leg's connection makes them
            // available.
            let _ = self
                .routing
                .set_presence(now, &agent, false, Some(AwayReason::NoAudio));
        }
        info!(%agent, resumed, "agent signed in");
        self.notify_presence(&agent);
        self.actions.push_back(Action::FloorChanged);
    }

    fn on_agent_leg(&mut self, agent: AgentId, leg: AgentLeg) {
        let Some(s) = self.sessions.get_mut(&agent) else {
            self.actions.push_back(Action::CloseLeg { leg: leg.leg });
            return;
        };
        if let Some(old) = s.leg.replace(leg.clone()) {
            self.agent_legs.remove(&old.leg);
            self.actions.push_back(Action::CloseLeg { leg: old.leg });
        }
        s.connected = false;
        self.agent_legs.insert(leg.leg, agent);
    }

    fn on_agent_left(&mut self, now: Instant, agent: AgentId, signed_out: bool) {
        let Some(s) = self.sessions.get_mut(&agent) else {
            return;
        };
        s.online = false;
        s.connected = false;
        let leg = s.leg.take();
        if let Some(l) = &leg {
            self.agent_legs.remove(&l.leg);
            self.actions.push_back(Action::CloseLeg { leg: l.leg });
        }
        self.stop_monitoring(&agent);
        let on_call = self
            .calls
            .values()
            .any(|c| c.phase.agent() == Some(&agent) && !matches!(c.phase, Phase::Ringing { .. }));
        if on_call && !signed_out {
            self.agent_lost(now, &agent);
            return;
        }
        if on_call {
            // Signing out mid-call hangs the call up, as the agent's own choice.
            let id = self
                .calls
                .values()
                .find(|c| c.phase.agent() == Some(&agent))
                .map(|c| c.id.clone());
            if let Some(id) = id {
                self.hang_up(now, &id, EndedBy::Agent, "agent signed out");
            }
        }
        self.ring_lost(now, &agent);
        self.sessions.remove(&agent);
        self.routing.sign_out(&agent);
        info!(%agent, "agent signed out");
        self.actions.push_back(Action::FloorChanged);
    }

    fn on_command(&mut self, now: Instant, agent: AgentId, command: Command) {
        let refuse = |code: &'static str, message: String| Notice::Refused { code, message };
        if !self.sessions.get(&agent).is_some_and(|s| s.online) {
            return;
        }
        match command {
            Command::SetPresence { available, reason } => {
                let audio_up = self.sessions.get(&agent).is_some_and(|s| s.connected);
                if available && !audio_up {
                    // Never rung without audio: away with the system's reason, which the leg's
                    // connection turns into available (`on_media_connected`).
                    match self
                        .routing
                        .set_presence(now, &agent, false, Some(AwayReason::NoAudio))
                    {
                        Ok(()) => {
                            self.notify_presence(&agent);
                            self.actions.push_back(Action::FloorChanged);
                            self.notify(
                                agent,
                                refuse(
                                    "no_audio",
                                    "your audio connection is not up; you become available \
                                     as soon as it is"
                                        .into(),
                                ),
                            );
                        }
                        Err(e) => self.notify(agent, refuse("busy", e.to_string())),
                    }
                    return;
                }
                match self.routing.set_presence(
                    now,
                    &agent,
                    available,
                    reason.map(AwayReason::Chosen),
                ) {
                    Ok(()) => {
                        self.notify_presence(&agent);
                        self.actions.push_back(Action::FloorChanged);
                    }
                    Err(e) => self.notify(agent, refuse("busy", e.to_string())),
                }
            }
            Command::Answer { call } => self.answer(now, agent, call),
            Command::Decline { call } => {
                let ringing = self.calls.get(&call).is_some_and(
                    |c| matches!(&c.phase, Phase::Ringing { agent: a, .. } if *a == agent),
                );
                if !ringing {
                    self.notify(
                        agent,
                        refuse("not_ringing", format!("{call} is not ringing at you")),
                    );
                    return;
                }
                self.ring_missed(now, &call, &agent);
            }
            Command::HangUp { call } => {
                let mine = self.calls.get(&call).is_some_and(|c| {
                    c.phase.agent() == Some(&agent) && !matches!(c.phase, Phase::Ringing { .. })
                });
                if !mine {
                    self.notify(
                        agent,
                        refuse("not_your_call", format!("you are not on {call}")),
                    );
                    return;
                }
                self.hang_up(now, &call, EndedBy::Agent, "agent hung up");
            }
            Command::Mute { call, on } => self.mute_or_hold(now, agent, call, Some(on), None),
            Command::Hold { call, on } => self.mute_or_hold(now, agent, call, None, Some(on)),
            Command::Transfer { call, to } => self.transfer(now, agent, call, to),
            Command::Monitor { call } => self.monitor(agent, call, false),
            Command::Whisper { call } => self.monitor(agent, call, true),
            Command::EndWrapUp => {
                let wrapping = self
                    .sessions
                    .get_mut(&agent)
                    .and_then(|s| s.wrap_until.take())
                    .is_some();
                if wrapping {
                    self.routing.end_wrap_up(now, &agent);
                    self.notify_presence(&agent);
                    self.actions.push_back(Action::FloorChanged);
                }
            }
            Command::StopMonitor => {
                self.stop_monitoring(&agent);
                self.notify(
                    agent,
                    Notice::Monitoring {
                        call: None,
                        whisper: false,
                    },
                );
            }
        }
    }

    fn on_shutdown(&mut self, now: Instant) {
        let ids: Vec<WaCallId> = self.calls.keys().cloned().collect();
        for id in ids {
            self.end_by_system(
                now,
                &id,
                "switchboard is shutting down",
                "switchboard shut down",
            );
        }
    }

    /// Ends `call` at Meta and here, as failed: the driver found the machine cannot carry it on
    /// (it panicked handling one of its inputs). Nothing when the call is not live.
    pub fn abort(&mut self, now: Instant, call: &WaCallId) {
        self.end_by_system(
            now,
            call,
            "the call failed in switchboard",
            "internal error in switchboard",
        );
    }

    fn end_by_system(&mut self, now: Instant, id: &WaCallId, told: &str, reason: &str) {
        let Some(call) = self.calls.get(id) else {
            return;
        };
        let accepted = call.accepted || call.accept_sent;
        self.end_at_meta(id, accepted);
        if let Some(agent) = self.calls.get(id).and_then(|c| c.phase.agent().cloned()) {
            self.notify(
                agent,
                Notice::CallEnded {
                    call: id.clone(),
                    reason: told.into(),
                },
            );
        }
        self.end(now, id, Outcome::Failed, reason.into(), EndedBy::System);
    }

    /// The call an input concerns, when it names one (itself or by its Meta leg): what a
    /// failure handling the input is logged with.
    pub fn call_of(&self, input: &Input) -> Option<WaCallId> {
        match input {
            Input::Offered { call, .. }
            | Input::Terminated { call, .. }
            | Input::Answered { call, .. }
            | Input::GraphDone { call, .. }
            | Input::Dispatch { call, .. } => Some(call.clone()),
            Input::MediaConnected { leg }
            | Input::MediaGone { leg, .. }
            | Input::Dtmf { leg, .. }
            | Input::Stats { leg, .. } => self.wa_legs.get(leg).cloned(),
            Input::FirstPacket { stream } | Input::SourceFlowing { stream, .. } => {
                self.wa_legs.get(&stream.leg).cloned()
            }
            _ => None,
        }
    }

    fn on_call_deadline(&mut self, now: Instant, id: &WaCallId) {
        let Some(call) = self.calls.get(id) else {
            return;
        };
        let answer_by = call.offered_at + self.cfg.answer_deadline;
        if awaits_answer(call) && now >= answer_by {
            // Meta's accept window: answer (into the queue) or decline now, never let it ring
            // out at Meta.
            if let Phase::Ringing { agent, .. } = call.phase.clone() {
                self.routing.unring(&agent);
                self.notify(
                    agent.clone(),
                    Notice::RingStopped {
                        call: id.clone(),
                        reason: "not answered in time",
                    },
                );
                self.notify_presence(&agent);
            }
            match self.policy(&self.calls[id].queue.clone()) {
                NoAgentPolicy::Queue { max_wait } => self.enter_queue(now, id, max_wait, false),
                NoAgentPolicy::Decline => {
                    self.end_at_meta(id, false);
                    self.end(
                        now,
                        id,
                        Outcome::Declined,
                        "not answered within Meta's window".into(),
                        EndedBy::System,
                    );
                }
            }
            return;
        }
        match call.phase.clone() {
            Phase::Ringing { agent, until } if until <= now => {
                info!(call_id = %id, %agent, "ring timeout; next agent");
                self.ring_missed(now, id, &agent);
            }
            Phase::Queued { until } if until <= now => {
                info!(call_id = %id, "longest queue wait reached; ending the call");
                let accepted = call.accepted || call.accept_sent;
                self.end_at_meta(id, accepted);
                self.end(
                    now,
                    id,
                    Outcome::TimedOut,
                    "waited the longest allowed in the queue".into(),
                    EndedBy::System,
                );
            }
            Phase::AgentLost { agent, until } if until <= now => {
                info!(call_id = %id, %agent, "agent did not come back; the call goes back to its queue");
                let queue = call.queue.clone();
                let since = call.waiting_since.unwrap_or(call.offered_at);
                if self.sessions.get(&agent).is_some_and(|s| s.online) {
                    // Back on the page but without audio: no longer on this call.
                    self.routing.wrap_up(now, &agent, id, now);
                    let _ =
                        self.routing
                            .set_presence(now, &agent, false, Some(AwayReason::NoAudio));
                    self.notify(agent.clone(), Notice::CallEnded { call: id.clone(), reason: "your audio did not come back in time; the call went back to the queue".into() });
                    self.notify_presence(&agent);
                } else {
                    self.sessions.remove(&agent);
                    self.routing.sign_out(&agent);
                }
                self.routing.requeue_front(&queue, id.clone(), since);
                let max_wait = self.max_wait(&queue);
                if let Some(call) = self.calls.get_mut(id) {
                    call.tried.clear();
                    call.waiting_since = Some(since);
                    set_phase(
                        call,
                        now,
                        Phase::Queued {
                            until: now + max_wait,
                        },
                    );
                }
                self.actions.push_back(Action::FloorChanged);
            }
            _ => {}
        }
    }

    // ------------------------------------------------------------------ steps

    /// Pre-accepted (or back from a missed ring): ring the next agent, else apply the queue's
    /// policy.
    fn route_call(&mut self, now: Instant, id: &WaCallId) {
        // The agent chosen for it across the nodes first, once (a later round is ordinary).
        let preferred = self.calls.get_mut(id).and_then(|c| c.preferred.take());
        let Some(call) = self.calls.get(id) else {
            return;
        };
        let queue = call.queue.clone();
        let preferred = preferred.filter(|p| !call.tried.contains(p) && self.free_for(p, &queue));
        // With the order shared, a free agent here may be due to an older call elsewhere.
        let next = (!self.queues_shared)
            .then(|| self.next_free(&queue, &call.tried))
            .flatten();
        if let Some(agent) = preferred.or(next) {
            self.ring(now, id, agent);
            return;
        }
        match self.policy(&queue) {
            NoAgentPolicy::Decline if !call.accepted && !call.accept_sent => {
                self.end_at_meta(id, false);
                self.end(
                    now,
                    id,
                    Outcome::Declined,
                    "no agent is free and the queue declines".into(),
                    EndedBy::System,
                );
            }
            policy => {
                let max_wait = match policy {
                    NoAgentPolicy::Queue { max_wait } => max_wait,
                    NoAgentPolicy::Decline => ACCEPTED_FALLBACK_WAIT,
                };
                self.enter_queue(now, id, max_wait, true);
            }
        }
    }

    /// The call waits in its queue: accepted (at once if its leg is connected) so the caller
    /// hears hold audio rather than ringing into Meta's window.
    fn enter_queue(&mut self, now: Instant, id: &WaCallId, max_wait: Duration, back: bool) {
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        let since = *call.waiting_since.get_or_insert(now);
        call.tried.clear();
        set_phase(
            call,
            now,
            Phase::Queued {
                until: since + max_wait,
            },
        );
        if call.accepted {
            if let Some(wa) = &call.wa {
                Self::hold_caller(&mut self.actions, wa.stream);
            }
        }
        let queue = call.queue.clone();
        if back {
            self.routing.enqueue(&queue, id.clone(), since);
        } else {
            self.routing.requeue_front(&queue, id.clone(), since);
        }
        self.maybe_accept(now, id);
        self.actions.push_back(Action::FloorChanged);
    }

    fn ring(&mut self, now: Instant, id: &WaCallId, agent: AgentId) {
        let until = now + self.cfg.ring_timeout;
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        self.routing.ring(&agent, id);
        set_phase(
            call,
            now,
            Phase::Ringing {
                agent: agent.clone(),
                until,
            },
        );
        let notice = Notice::Ringing {
            call: id.clone(),
            from: call.from.clone(),
            name: call.name.clone(),
            queue: call.queue.clone(),
            business_number: call.business_number.clone(),
            display_number: call.display_number.clone(),
            waited: now.saturating_duration_since(call.offered_at),
            rings_for: self.cfg.ring_timeout,
        };
        let queue = call.queue.clone();
        self.routing.dequeue(&queue, id);
        info!(call_id = %id, %agent, "ringing");
        self.notify(agent.clone(), notice);
        self.notify_presence(&agent);
        self.actions.push_back(Action::FloorChanged);
    }

    /// The ringing agent did not take the call (timeout or decline): away for a missed call,
    /// and the call goes on to the next agent.
    fn ring_missed(&mut self, now: Instant, id: &WaCallId, agent: &AgentId) {
        self.routing.missed(agent);
        self.notify(
            agent.clone(),
            Notice::RingStopped {
                call: id.clone(),
                reason: "missed",
            },
        );
        self.notify_presence(agent);
        if let Some(call) = self.calls.get_mut(id) {
            call.tried.push(agent.clone());
            self.actions.push_back(Action::Metric(Metric::RingNoAnswer {
                queue: call.queue.clone(),
            }));
        }
        self.route_call(now, id);
    }

    /// An agent who was ringing is gone: the ring moves on, with no penalty.
    fn ring_lost(&mut self, now: Instant, agent: &AgentId) {
        let ringing = self
            .calls
            .values()
            .find(|c| matches!(&c.phase, Phase::Ringing { agent: a, .. } if a == agent))
            .map(|c| c.id.clone());
        if let Some(id) = ringing {
            self.routing.unring(agent);
            if let Some(call) = self.calls.get_mut(&id) {
                call.tried.push(agent.clone());
            }
            self.route_call(now, &id);
        }
    }

    fn answer(&mut self, now: Instant, agent: AgentId, id: WaCallId) {
        let ringing = self
            .calls
            .get(&id)
            .is_some_and(|c| matches!(&c.phase, Phase::Ringing { agent: a, .. } if *a == agent));
        if !ringing {
            let notice = Notice::Refused {
                code: "not_ringing",
                message: format!("{id} is not ringing at you"),
            };
            self.notify(agent, notice);
            return;
        }
        if !self
            .sessions
            .get(&agent)
            .is_some_and(|s| s.connected && s.leg.is_some())
        {
            let notice = Notice::Refused {
                code: "no_audio",
                message: "your audio connection is not up; the call rings on".into(),
            };
            self.notify(agent, notice);
            return;
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        self.routing.talking(&agent, &id);
        if !call.agents.contains(&agent) {
            call.agents.push(agent.clone());
        }
        info!(call_id = %id, %agent, "agent answered");
        call.answer_waits_caller = Some(now);
        if !call.accepted && !call.accept_sent {
            call.answer_waits_accept = Some(now);
        }
        if call.accepted {
            self.start_talking(now, &id, &agent);
        } else {
            set_phase(
                call,
                now,
                Phase::Connecting {
                    agent: agent.clone(),
                },
            );
            self.connect_parties(&id, &agent);
            self.maybe_accept(now, &id);
        }
        self.notify_presence(&agent);
        self.actions.push_back(Action::FloorChanged);
    }

    /// Caller and agent talk: both routed, the agent told. An accepted call counts as answered
    /// from its first agent.
    fn start_talking(&mut self, now: Instant, id: &WaCallId, agent: &AgentId) {
        if let Some(call) = self.calls.get_mut(id) {
            if call.accepted {
                mark_answered(call, now, self.cfg.service_level_target, &mut self.actions);
            }
            set_phase(
                call,
                now,
                Phase::Talking {
                    agent: agent.clone(),
                },
            );
        }
        self.connect_parties(id, agent);
        self.notify_talking(id, agent);
        // The live mark learns who took it: a takeover records the agent and the answer.
        self.mark_live(now, id);
    }

    /// Marks `id` live in the records with what is known of it now.
    pub(super) fn mark_live(&mut self, now: Instant, id: &WaCallId) {
        let Some(call) = self.calls.get(id) else {
            return;
        };
        let mut if_lost = Ended::of(
            call.clone(),
            now,
            Outcome::Failed,
            "lost with the node that handled it".into(),
            EndedBy::System,
        );
        if_lost.transitions.push(("ended", now, None));
        self.actions.push_back(Action::MarkLive {
            call: id.clone(),
            business_number: call.business_number.clone(),
            if_lost: Box::new(if_lost),
        });
    }

    /// Sends `accept` once: when an agent answered or the call is queued, and the leg is
    /// connected.
    fn maybe_accept(&mut self, now: Instant, id: &WaCallId) {
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        let wants = matches!(call.phase, Phase::Connecting { .. } | Phase::Queued { .. });
        if wants && call.connected && !call.accept_sent && !call.accepted {
            if let Some(wa) = &call.wa {
                call.accept_sent = true;
                self.actions.push_back(Action::Graph {
                    call: id.clone(),
                    action: GraphAction::Accept,
                    sdp: Some(wa.sdp.clone()),
                });
                call.accept_waits_packet = Some(now);
                if let Some(t) = call.answer_waits_accept.take() {
                    self.actions.push_back(Action::Metric(Metric::Setup {
                        step: SetupStep::AnswerToAccept,
                        took: now.saturating_duration_since(t),
                    }));
                }
            }
        }
    }

    /// Caller ↔ agent, both ways; hold and mute off.
    fn connect_parties(&mut self, id: &WaCallId, agent: &AgentId) {
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        let Some(wa) = call.wa.clone() else {
            return;
        };
        let Some(leg) = self.sessions.get(agent).and_then(|s| s.leg.clone()) else {
            return;
        };
        call.muted = false;
        call.held = false;
        self.actions.push_back(Action::Hold {
            stream: wa.stream,
            on: false,
        });
        self.actions.push_back(Action::Route {
            stream: wa.stream,
            source: Some(leg.leg),
        });
        if let Some(s) = leg.streams.first() {
            self.actions.push_back(Action::Route {
                stream: *s,
                source: Some(wa.leg),
            });
        }
    }

    fn agent_lost(&mut self, now: Instant, agent: &AgentId) {
        self.ring_lost(now, agent);
        let on_call = self
            .calls
            .values()
            .find(|c| matches!(&c.phase, Phase::Talking { agent: a } | Phase::Connecting { agent: a } if a == agent))
            .map(|c| c.id.clone());
        let Some(id) = on_call else {
            return;
        };
        let until = now + self.cfg.grace;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        warn!(call_id = %id, %agent, "agent lost mid-call; caller on hold for the grace period");
        if let Some(wa) = &call.wa {
            Self::hold_caller(&mut self.actions, wa.stream);
        }
        set_phase(
            call,
            now,
            Phase::AgentLost {
                agent: agent.clone(),
                until,
            },
        );
        self.actions.push_back(Action::FloorChanged);
    }

    fn hang_up(&mut self, now: Instant, id: &WaCallId, by: EndedBy, reason: &str) {
        let Some(call) = self.calls.get(id) else {
            return;
        };
        let accepted = call.accepted || call.accept_sent;
        let outcome = if call.answered_at.is_some() {
            Outcome::Answered
        } else {
            Outcome::Failed
        };
        self.end_at_meta(id, accepted);
        self.end(now, id, outcome, reason.into(), by);
    }

    fn mute_or_hold(
        &mut self,
        now: Instant,
        agent: AgentId,
        id: WaCallId,
        mute: Option<bool>,
        hold: Option<bool>,
    ) {
        // A call that does not exist is answered as one that is not yours: the answer tells
        // nobody which call ids are live.
        let Some(call) = self
            .calls
            .get_mut(&id)
            .filter(|c| matches!(&c.phase, Phase::Talking { agent: a } if *a == agent))
        else {
            let notice = Notice::Refused {
                code: "not_talking",
                message: format!("you are not talking on {id}"),
            };
            self.notify(agent, notice);
            return;
        };
        let Some(wa) = call.wa.clone() else {
            return;
        };
        let leg = self.sessions.get(&agent).and_then(|s| s.leg.clone());
        if let Some(m) = mute {
            call.muted = m;
        }
        if let Some(h) = hold {
            call.held = h;
        }
        let (muted, held) = (call.muted, call.held);
        // What the caller hears: hold audio, silence (muted), or the agent.
        self.actions.push_back(Action::Hold {
            stream: wa.stream,
            on: held,
        });
        let agent_voice = leg.as_ref().map(|l| l.leg).filter(|_| !muted && !held);
        self.actions.push_back(Action::Route {
            stream: wa.stream,
            source: agent_voice,
        });
        // What the agent hears: the caller, except on hold.
        if let Some(s) = leg.as_ref().and_then(|l| l.streams.first()) {
            self.actions.push_back(Action::Route {
                stream: *s,
                source: (!held).then_some(wa.leg),
            });
        }
        let state = if held {
            "on_hold"
        } else if muted {
            "muted"
        } else {
            "talking"
        };
        call.transitions.push((state, now, Some(agent.clone())));
        self.notify(
            agent,
            Notice::CallState {
                call: id,
                muted,
                held,
            },
        );
    }

    fn transfer(&mut self, now: Instant, agent: AgentId, id: WaCallId, to: TransferTarget) {
        let talking = self.calls.get(&id).is_some_and(|c| {
            matches!(&c.phase, Phase::Talking { agent: a } if *a == agent) && c.accepted
        });
        if !talking {
            let notice = Notice::Refused {
                code: "not_talking",
                message: format!("you are not talking on {id}"),
            };
            self.notify(agent, notice);
            return;
        }
        let target_agent = match &to {
            TransferTarget::Agent(b) => {
                let free = self
                    .routing
                    .agent(b)
                    .is_some_and(|a| a.presence == Presence::Available)
                    && self.sessions.get(b).is_some_and(|s| s.connected);
                if !free || *b == agent {
                    let notice = Notice::Refused {
                        code: "agent_unavailable",
                        message: format!("{b} cannot take a call now"),
                    };
                    self.notify(agent, notice);
                    return;
                }
                Some(b.clone())
            }
            TransferTarget::Queue(q) => {
                if self.routing.queue(q).is_none() {
                    let notice = Notice::Refused {
                        code: "unknown_queue",
                        message: format!("no queue {q}"),
                    };
                    self.notify(agent, notice);
                    return;
                }
                None
            }
        };
        info!(call_id = %id, from = %agent, ?to, "blind transfer");
        // The first agent is done with it: unroute them and start their wrap-up.
        if let Some(leg) = self.sessions.get(&agent).and_then(|s| s.leg.clone()) {
            if let Some(s) = leg.streams.first() {
                self.actions.push_back(Action::Route {
                    stream: *s,
                    source: None,
                });
            }
        }
        self.notify(
            agent.clone(),
            Notice::CallEnded {
                call: id.clone(),
                reason: "transferred".into(),
            },
        );
        self.start_wrap_up(now, &agent, &id);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        // The caller hears hold audio on the same stream meanwhile: SSRC, sequence numbers and
        // timestamps carry on (the WhatsApp leg never changes).
        if let Some(wa) = &call.wa {
            Self::hold_caller(&mut self.actions, wa.stream);
        }
        call.tried = vec![agent.clone()];
        if let TransferTarget::Queue(q) = &to {
            call.queue = q.clone();
            call.waiting_since = Some(now);
        }
        let queue = call.queue.clone();
        match target_agent {
            Some(b) => self.ring(now, &id, b),
            None => {
                let max_wait = self.max_wait(&queue);
                self.enter_queue(now, &id, max_wait, true);
            }
        }
    }

    fn monitor(&mut self, sup: AgentId, id: WaCallId, whisper: bool) {
        let refuse = |code, message: String| Notice::Refused { code, message };
        let Some(session) = self.sessions.get(&sup) else {
            return;
        };
        if session.role != Role::Supervisor {
            self.notify(
                sup,
                refuse("forbidden", "only supervisors monitor calls".into()),
            );
            return;
        }
        let Some(sup_leg) = session
            .leg
            .clone()
            .filter(|l| l.streams.len() >= 2 && session.connected)
        else {
            self.notify(
                sup,
                refuse(
                    "no_audio",
                    "your audio connection is not up (or has one stream)".into(),
                ),
            );
            return;
        };
        let Some(call) = self.calls.get(&id) else {
            self.notify(sup, refuse("no_such_call", format!("no live call {id}")));
            return;
        };
        let (Some(wa), Phase::Talking { agent }) = (call.wa.clone(), call.phase.clone()) else {
            self.notify(
                sup,
                refuse("not_talking", format!("{id} has no agent talking")),
            );
            return;
        };
        if agent == sup {
            self.notify(sup, refuse("own_call", "that is your own call".into()));
            return;
        }
        self.stop_monitoring(&sup);
        let agent_leg = self.sessions.get(&agent).and_then(|s| s.leg.clone());
        // The supervisor hears the caller on stream 0 and the agent on stream 1; nothing of the
        // supervisor's reaches the caller.
        self.actions.push_back(Action::Route {
            stream: sup_leg.streams[0],
            source: Some(wa.leg),
        });
        if let Some(a) = &agent_leg {
            self.actions.push_back(Action::Route {
                stream: sup_leg.streams[1],
                source: Some(a.leg),
            });
            if whisper {
                if let Some(s) = a.streams.get(1) {
                    self.actions.push_back(Action::Route {
                        stream: *s,
                        source: Some(sup_leg.leg),
                    });
                }
            }
        }
        if let Some(s) = self.sessions.get_mut(&sup) {
            s.monitoring = Some((id.clone(), whisper));
        }
        info!(call_id = %id, supervisor = %sup, whisper, "monitoring");
        if whisper {
            let notice = Notice::Whisper {
                call: id.clone(),
                on: true,
            };
            self.notify(agent, notice);
        }
        self.notify(
            sup,
            Notice::Monitoring {
                call: Some(id),
                whisper,
            },
        );
    }

    fn stop_monitoring(&mut self, sup: &AgentId) {
        let Some(s) = self.sessions.get_mut(sup) else {
            return;
        };
        let Some((id, whisper)) = s.monitoring.take() else {
            return;
        };
        if let Some(l) = &s.leg {
            for st in l.streams.iter().take(2) {
                self.actions.push_back(Action::Route {
                    stream: *st,
                    source: None,
                });
            }
        }
        if whisper {
            let agent = self.calls.get(&id).and_then(|c| c.phase.agent().cloned());
            if let Some(a) = &agent {
                let notice = Notice::Whisper {
                    call: id.clone(),
                    on: false,
                };
                self.notify(a.clone(), notice);
            }
            if let Some(s) = agent
                .and_then(|a| self.sessions.get(&a))
                .and_then(|s| s.leg.as_ref())
                .and_then(|l| l.streams.get(1))
            {
                self.actions.push_back(Action::Route {
                    stream: *s,
                    source: None,
                });
            }
        }
    }

    fn start_wrap_up(&mut self, now: Instant, agent: &AgentId, id: &WaCallId) {
        let until = now + self.cfg.wrap_up;
        self.routing.wrap_up(now, agent, id, until);
        if let Some(s) = self.sessions.get_mut(agent) {
            s.wrap_until = (until > now).then_some(until);
        }
        self.notify_presence(agent);
    }

    /// True when `agent` is available, takes calls from `queue`, and can be rung (see
    /// [`Centre::audio_up`]).
    fn free_for(&self, agent: &AgentId, queue: &QueueId) -> bool {
        self.audio_up(agent)
            && self
                .routing
                .agent(agent)
                .is_some_and(|a| a.presence == Presence::Available && a.queues.contains(queue))
    }

    /// Whether `agent`'s session is there with its audio connected. Presence alone can lag
    /// behind it: an agent whose page reloaded (or whose leg was replaced) while rung, on a
    /// call or wrapping up comes back to available with no connection yet, and a ring they
    /// cannot answer would only cost the caller the ring timeout and them a missed call.
    fn audio_up(&self, agent: &AgentId) -> bool {
        self.sessions
            .get(agent)
            .is_some_and(|s| s.online && s.connected && s.leg.is_some())
    }

    /// The longest-idle free agent of `queue` (see [`Centre::free_for`]), skipping `tried`.
    fn next_free(&self, queue: &QueueId, tried: &[AgentId]) -> Option<AgentId> {
        let mut skip = tried.to_vec();
        skip.extend(self.sessions.keys().filter(|a| !self.audio_up(a)).cloned());
        self.routing.next_agent(queue, &skip)
    }

    /// Whether a waiting call may ring an agent now. One Meta has not accepted rings only
    /// within Meta's window: past it, the window's deadline would take the ring straight back
    /// (at the same instant, again and again), and the queue is where its leg's connection
    /// accepts it at once.
    fn may_ring(&self, c: &Call, now: Instant) -> bool {
        c.accepted || c.accept_sent || now < c.offered_at + self.cfg.answer_deadline
    }

    /// Rings free agents for waiting calls, oldest first per queue (with the order shared by
    /// several nodes, `Input::Dispatch` does instead).
    fn dispatch(&mut self, now: Instant) {
        if self.queues_shared {
            return;
        }
        for queue in self.routing.queue_ids() {
            for w in self.routing.waiting(&queue) {
                let ready = self.calls.get(&w.call).is_some_and(|c| {
                    matches!(c.phase, Phase::Queued { .. }) && self.may_ring(c, now)
                });
                if !ready {
                    continue;
                }
                // Only agents whose audio is up (see `Centre::audio_up`).
                let Some(agent) = self.next_free(&queue, &[]) else {
                    break;
                };
                self.ring(now, &w.call, agent);
            }
        }
    }

    /// Ends a live call: legs closed, agents told and wrapped up, record written.
    fn end(&mut self, now: Instant, id: &WaCallId, outcome: Outcome, reason: String, by: EndedBy) {
        let Some(call) = self.calls.remove(id) else {
            return;
        };
        if let Some(wa) = &call.wa {
            self.wa_legs.remove(&wa.leg);
            self.actions.push_back(Action::CloseLeg { leg: wa.leg });
        }
        self.routing.dequeue(&call.queue, id);
        // Supervisors monitoring it stop.
        let watchers: Vec<AgentId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.monitoring.as_ref().is_some_and(|(c, _)| c == id))
            .map(|(a, _)| a.clone())
            .collect();
        for sup in watchers {
            self.stop_monitoring(&sup);
            self.notify(
                sup,
                Notice::Monitoring {
                    call: None,
                    whisper: false,
                },
            );
        }
        match call.phase.clone() {
            Phase::Ringing { agent, .. } => {
                self.routing.unring(&agent);
                let why = if by == EndedBy::Caller {
                    "caller hung up"
                } else {
                    "call ended"
                };
                self.notify(
                    agent.clone(),
                    Notice::RingStopped {
                        call: id.clone(),
                        reason: why,
                    },
                );
                self.notify_presence(&agent);
            }
            Phase::Connecting { agent } | Phase::Talking { agent } => {
                if let Some(s) = self
                    .sessions
                    .get(&agent)
                    .and_then(|s| s.leg.as_ref())
                    .and_then(|l| l.streams.first())
                {
                    self.actions.push_back(Action::Route {
                        stream: *s,
                        source: None,
                    });
                }
                if by != EndedBy::Agent {
                    self.notify(
                        agent.clone(),
                        Notice::CallEnded {
                            call: id.clone(),
                            reason: reason.clone(),
                        },
                    );
                } else {
                    self.notify(
                        agent.clone(),
                        Notice::CallEnded {
                            call: id.clone(),
                            reason: "you hung up".into(),
                        },
                    );
                }
                self.start_wrap_up(now, &agent, id);
            }
            Phase::AgentLost { agent, .. } => {
                // Gone agent: straight back to their previous state if they return.
                self.routing.wrap_up(now, &agent, id, now);
            }
            _ => {}
        }
        self.finish(now, call, outcome, reason, by);
    }

    fn finish(
        &mut self,
        now: Instant,
        mut call: Call,
        outcome: Outcome,
        reason: String,
        by: EndedBy,
    ) {
        call.transitions.push(("ended", now, None));
        self.counters.ended += 1;
        let level = self.service.entry(call.queue.clone()).or_default();
        level.ended += 1;
        if call.answered_within(self.cfg.service_level_target) {
            level.within_target += 1;
        }
        info!(call_id = %call.id, outcome = outcome.as_str(), ended_by = by.as_str(), %reason, "call ended");
        self.tombstone(call.id.clone());
        self.actions.push_back(Action::Finished(Box::new(Ended::of(
            call, now, outcome, reason, by,
        ))));
        self.actions.push_back(Action::FloorChanged);
    }

    /// The caller hears hold audio: the WhatsApp stream's source cut, hold on. (An associated
    /// function over the queue, as the callers hold a borrow of the call.)
    fn hold_caller(actions: &mut VecDeque<Action>, stream: crate::ids::StreamId) {
        actions.push_back(Action::Route {
            stream,
            source: None,
        });
        actions.push_back(Action::Hold { stream, on: true });
    }

    /// Tells Meta the call is over: `terminate` once accepted (or accepting), else `reject`.
    fn end_at_meta(&mut self, id: &WaCallId, accepted: bool) {
        let action = if accepted {
            GraphAction::Terminate
        } else {
            GraphAction::Reject
        };
        self.actions.push_back(Action::Graph {
            call: id.clone(),
            action,
            sdp: None,
        });
    }

    fn tombstone(&mut self, id: WaCallId) {
        let (order, set) = &mut self.tombstones;
        if set.insert(id.clone()) {
            order.push_back(id);
            if order.len() > TOMBSTONES {
                if let Some(old) = order.pop_front() {
                    set.remove(&old);
                }
            }
        }
    }

    fn policy(&self, queue: &QueueId) -> NoAgentPolicy {
        self.routing
            .queue(queue)
            .map_or(NoAgentPolicy::Decline, |q| q.policy)
    }

    fn max_wait(&self, queue: &QueueId) -> Duration {
        match self.policy(queue) {
            NoAgentPolicy::Queue { max_wait } => max_wait,
            NoAgentPolicy::Decline => ACCEPTED_FALLBACK_WAIT,
        }
    }

    fn notify(&mut self, agent: AgentId, notice: Notice) {
        self.actions.push_back(Action::Notify { agent, notice });
    }

    fn notify_presence(&mut self, agent: &AgentId) {
        let presence = self
            .routing
            .agent(agent)
            .map_or(Presence::Offline, |a| a.presence.clone());
        self.notify(agent.clone(), Notice::Presence(presence));
    }

    fn notify_talking(&mut self, id: &WaCallId, agent: &AgentId) {
        let Some(call) = self.calls.get(id) else {
            return;
        };
        let notice = Notice::Talking {
            call: id.clone(),
            from: call.from.clone(),
            name: call.name.clone(),
        };
        self.notify(agent.clone(), notice);
    }
}

/// Still ringing toward Meta's accept window: nobody has answered and it is not yet queued.
/// The call counts as answered from now (once): the metrics hear whether within the target.
fn mark_answered(call: &mut Call, now: Instant, target: Duration, actions: &mut VecDeque<Action>) {
    if call.answered_at.is_some() {
        return;
    }
    call.answered_at = Some(now);
    actions.push_back(Action::Metric(Metric::Answered {
        queue: call.queue.clone(),
        within_target: call.answered_within(target),
    }));
}

impl Ended {
    /// `call`'s record, were it to end at `now` this way.
    fn of(call: Call, now: Instant, outcome: Outcome, reason: String, by: EndedBy) -> Ended {
        Ended {
            call: call.id,
            from: call.from,
            name: call.name,
            business_number: call.business_number,
            queue: call.queue,
            agents: call.agents,
            offered_at: call.offered_at,
            answered_at: call.answered_at,
            ended_at: now,
            transitions: call.transitions,
            outcome,
            reason,
            ended_by: by,
            meta_errors: call.meta_errors,
            legs: call.stats,
        }
    }
}

impl Call {
    /// An agent answered it within `target` of Meta's offer (the service level's test).
    fn answered_within(&self, target: Duration) -> bool {
        self.answered_at
            .is_some_and(|t| t.saturating_duration_since(self.offered_at) <= target)
    }
}

/// Who calls, as Meta's webhook says.
/// Who calls, which of our numbers, and the agent chosen for the call across the nodes.
pub(super) struct Caller {
    from: Option<String>,
    name: Option<String>,
    business_number: Option<String>,
    display_number: Option<String>,
    preferred: Option<AgentId>,
}

fn awaits_answer(c: &Call) -> bool {
    !c.accepted
        && !c.accept_sent
        && matches!(
            c.phase,
            Phase::Answering | Phase::PreAccepting | Phase::Ringing { .. }
        )
}

fn set_phase(call: &mut Call, now: Instant, phase: Phase) {
    call.transitions
        .push((phase.name(), now, phase.agent().cloned()));
    call.phase = phase;
}
