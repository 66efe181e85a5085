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
//!
//! Where each part lives: this file holds the types, the [`Centre`] and its public face
//! (`handle`, `handle_timeout`, the polls and views); `meta` what Meta and the media engine
//! report and the call's deadlines; `agents` what agents' sessions report and ask; `route` the
//! routing steps (ring, queue, answer, talk, wrap-up, waiting calls); `transfer` mute, hold and
//! transfers; `supervise` listening and whispering; `end` how calls end and who is told;
//! `handoff` calls moved between nodes.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use tracing::info;

use super::event::{normalize_number, PermissionStep};
use super::event::{
    Action, AgentLeg, CallBackStatus, CallStep, CalleeStatus, Command, DialFailure, Dialled, Ended,
    EndedBy, GraphAction, GraphFailure, HostEvent, Input, LegFailure, LegOf, Metric, Notice,
    Outcome, Placed, Reconfigure, Refusal, RejectReason, RingStop, Role, SetupStep, Stage, Task,
    TaskReason, TaskStop, TransferTarget, WaLeg,
};
use crate::accounts::{same_account, CallTimes};
use crate::ids::{AgentId, LegId, QueueId, StreamId, WaCallId};
use crate::media::LegStats;
use crate::routing::{AwayReason, NoAgentPolicy, Presence, Routing};

mod agents;
mod callback;
mod end;
mod handoff;
mod meta;
mod route;
mod supervise;
mod transfer;

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
/// [`CentreConfig::callback_no_answer`] when nothing else is said: about as long as a WhatsApp
/// phone rings before its user sees a missed call.
pub const DEFAULT_CALLBACK_NO_ANSWER: Duration = Duration::from_secs(45);

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
    /// Each account's own timings, by slug, in place of the four above for its calls and
    /// people (ids say their account: [`crate::accounts::account_of`]).
    pub account_times: HashMap<String, CallTimes>,
    /// The accounts' own hold audio, by slug: their calls' WhatsApp legs play it.
    pub account_hold: HashMap<String, crate::media::HoldAudio>,
    /// A call-back the customer has not answered within this is ended (Graph `terminate`):
    /// "No answer".
    pub callback_no_answer: Duration,
    /// Queues whose lost callers become call-back tasks (hung up while waiting, or called
    /// when nobody was staffed).
    pub callback_queues: HashSet<QueueId>,
}

impl CentreConfig {
    /// The timings for the call or person `id` (a queue's or an agent's id): its account's,
    /// else the centre's.
    pub fn times(&self, id: &str) -> CallTimes {
        match self.account_times.get(crate::accounts::account_of(id)) {
            Some(t) => *t,
            None => CallTimes {
                ring_timeout: self.ring_timeout,
                wrap_up: self.wrap_up,
                grace: self.grace,
                answer_deadline: self.answer_deadline,
            },
        }
    }
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
            account_times: HashMap::new(),
            account_hold: HashMap::new(),
            callback_no_answer: DEFAULT_CALLBACK_NO_ANSWER,
            callback_queues: HashSet::new(),
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
        /// The agent muted themselves: the caller hears silence.
        muted: bool,
        /// The agent put the caller on hold: the caller hears hold audio.
        held: bool,
    },
    /// The agent's session or media dropped; the caller hears hold audio.
    AgentLost {
        /// Who.
        agent: AgentId,
        /// Until when they may come back.
        until: Instant,
    },
    /// A call-back placed by `agent`, not answered yet.
    Calling {
        /// Who placed it.
        agent: AgentId,
        /// When it gives up ("No answer").
        until: Instant,
        /// Meta said the customer's phone rings.
        ringing: bool,
        /// The customer's answer is being applied.
        answering: bool,
    },
}

impl Phase {
    /// Talking with `agent`, neither muted nor on hold.
    pub fn talking(agent: AgentId) -> Phase {
        Phase::Talking {
            agent,
            muted: false,
            held: false,
        }
    }

    /// Its stage, as supervisors and records name it.
    pub fn stage(&self) -> Stage {
        match self {
            Phase::Answering => Stage::Answering,
            Phase::PreAccepting => Stage::PreAccepted,
            Phase::Ringing { .. } => Stage::Ringing,
            Phase::Queued { .. } => Stage::Queued,
            Phase::Connecting { .. } => Stage::Connecting,
            Phase::Talking { .. } => Stage::Talking,
            Phase::AgentLost { .. } => Stage::AgentLost,
            Phase::Calling { ringing: false, .. } => Stage::Calling,
            Phase::Calling { ringing: true, .. } => Stage::CalleeRinging,
        }
    }

    fn agent(&self) -> Option<&AgentId> {
        match self {
            Phase::Ringing { agent, .. }
            | Phase::Connecting { agent }
            | Phase::Talking { agent, .. }
            | Phase::AgentLost { agent, .. }
            | Phase::Calling { agent, .. } => Some(agent),
            _ => None,
        }
    }
}

/// Where a call stands with Meta's `accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Acceptance {
    /// Not asked: the call may still be declined (`reject`).
    Open,
    /// `accept` is in flight.
    Sent,
    /// Meta took `accept`.
    Accepted,
}

impl Acceptance {
    /// `accept` went out (in flight or taken): Meta may count the call answered, so only a
    /// `terminate` ends it now.
    fn committed(self) -> bool {
        self != Acceptance::Open
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
    /// Its WhatsApp leg's ICE and DTLS completed (it stays set if the leg goes: the call ends).
    connected: bool,
    acceptance: Acceptance,
    answered_at: Option<Instant>,
    /// Set-up latency marks: the agent answered and `accept` is not sent yet; `accept` sent and
    /// no packet to Meta yet; the agent answered and the caller's audio has not reached them.
    answer_waits_accept: Option<Instant>,
    accept_waits_packet: Option<Instant>,
    answer_waits_caller: Option<Instant>,
    /// Agents rung without answer in the current routing round.
    tried: Vec<AgentId>,
    agents: Vec<AgentId>,
    /// Since when it waits (kept when it goes back to the front of its queue).
    waiting_since: Option<Instant>,
    /// With several nodes: the agent chosen for it across the cluster, rung first if free.
    preferred: Option<AgentId>,
    transitions: Vec<(Stage, Instant, Option<AgentId>)>,
    meta_errors: Vec<i64>,
    stats: Vec<(LegOf, LegStats)>,
    /// A call-back: who placed it, from which task.
    dialled: Option<Dialled>,
    /// A call-back: when the customer's answer webhook came (the first packet to them is
    /// measured from it).
    answer_waits_packet: Option<Instant>,
}

impl Call {
    /// A call this centre has just taken up: answering, nothing said to Meta, no agent.
    fn new(
        id: WaCallId,
        caller: Caller,
        queue: QueueId,
        received_at: Instant,
        now: Instant,
        first: Stage,
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
            acceptance: Acceptance::Open,
            answered_at: None,
            answer_waits_accept: None,
            accept_waits_packet: None,
            answer_waits_caller: None,
            tried: vec![],
            agents: vec![],
            waiting_since: None,
            preferred: caller.preferred,
            transitions: vec![(first, now, None)],
            meta_errors: vec![],
            stats: vec![],
            dialled: None,
            answer_waits_packet: None,
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
    /// Its phase's stage.
    pub state: Stage,
    /// The agent on it, if any.
    pub agent: Option<AgentId>,
    /// Since when it exists.
    pub offered_at: Instant,
    /// The last statistics of each of its legs.
    pub legs: Vec<(LegOf, LegStats)>,
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
    /// Each signed-in agent's presence as last told to their account's backend (`agent.state`
    /// goes out on a change only, however often their page is told).
    told: HashMap<AgentId, Presence>,
    /// Call-backs whose `connect` is on its way, by dial.
    dials: HashMap<u64, callback::Dial>,
    next_dial: u64,
    /// Meta's word on call-backs whose `connect` has not answered yet (a status or the answer
    /// can overtake it), kept only while some dial is on its way.
    early: HashMap<WaCallId, Vec<(Instant, Input)>>,
    /// Call-back tasks, by id.
    tasks: BTreeMap<String, callback::TaskState>,
    /// Who asked each customer for permission last, and from which business number, to tell
    /// them of the reply.
    asked: HashMap<String, (AgentId, Option<String>)>,
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
            told: HashMap::new(),
            dials: HashMap::new(),
            next_dial: 1,
            early: HashMap::new(),
            tasks: BTreeMap::new(),
            asked: HashMap::new(),
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
                state: c.phase.stage(),
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
        let tasks = self
            .tasks
            .values()
            .filter_map(|t| t.due.filter(|_| t.offered.is_none()));
        calls.chain(wraps).chain(tasks).min()
    }

    fn deadline_of(&self, c: &Call) -> Option<Instant> {
        let phase = match &c.phase {
            Phase::Ringing { until, .. }
            | Phase::Queued { until }
            | Phase::AgentLost { until, .. } => Some(*until),
            Phase::Calling {
                until,
                answering: false,
                ..
            } => Some(*until),
            _ => None,
        };
        let answer_by =
            awaits_answer(c).then(|| c.offered_at + self.cfg.times(&c.queue.0).answer_deadline);
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
            Input::AgentRevoked { agent } => self.on_agent_revoked(now, agent),
            Input::AgentCommand { agent, command } => self.on_command(now, agent, command),
            Input::QueuesShared { on } => {
                if on != self.queues_shared {
                    info!(on, "queues served in the order shared by the nodes");
                    self.queues_shared = on;
                }
            }
            Input::Reconfigure(r) => {
                let Reconfigure {
                    queues,
                    default_queue,
                    numbers,
                    times,
                    agent_queues,
                    hold_audio,
                    callback_queues,
                } = *r;
                self.cfg.account_hold = hold_audio;
                self.cfg.callback_queues = callback_queues;
                info!(
                    queues = queues.len(),
                    numbers = numbers.len(),
                    "accounts changed"
                );
                self.routing.set_queues(queues, default_queue);
                self.cfg.number_queues = numbers;
                self.cfg.account_times = times;
                for (agent, queues) in agent_queues {
                    self.routing.set_agent_queues(&agent, queues);
                }
                // An agent who serves a queue now may take one of its waiting calls.
                self.dispatch(now);
                self.actions.push_back(Action::FloorChanged);
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
            Input::Dialed { dial, result } => self.on_dialed(now, dial, result),
            Input::CalleeStatus { call, status } => self.on_callee_status(now, call, status),
            Input::CalleeAnswered {
                call,
                sdp,
                received_at,
            } => self.on_callee_answered(now, call, sdp, received_at),
            Input::AnswerApplied { call, result } => self.on_answer_applied(now, call, result),
            Input::TaskAdded { task, due } => self.add_task_due(*task, due),
            Input::TaskCancelled { task } => self.drop_task(&task, TaskStop::Cancelled),
            Input::PermissionAsked { agent, to, result } => {
                self.on_permission_asked(agent, to, result)
            }
            Input::PermissionReply {
                business_number,
                user,
                granted,
                permanent,
                expires_at,
                source,
            } => self.on_permission_reply(
                business_number,
                user,
                granted,
                permanent,
                expires_at,
                source,
            ),
        }
        self.dispatch(now);
        self.offer_tasks(now);
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
        self.offer_tasks(now);
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
            dialled: call.dialled,
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
    !c.acceptance.committed()
        && matches!(
            c.phase,
            Phase::Answering | Phase::PreAccepting | Phase::Ringing { .. }
        )
}

/// Moves `call` to `phase`, noting the transition, and tells its account's backend of the steps
/// it hears of: a ring, a wait in the queue, an answer (talking after ringing or connecting; not
/// the return of an agent whose page reloaded).
fn set_phase(call: &mut Call, actions: &mut VecDeque<Action>, now: Instant, phase: Phase) {
    let step = match (&call.phase, &phase) {
        (_, Phase::Ringing { .. }) => Some(CallStep::Ringing),
        (_, Phase::Queued { .. }) => Some(CallStep::Queued),
        (Phase::Connecting { .. } | Phase::Ringing { .. }, Phase::Talking { .. }) => {
            Some(CallStep::Answered)
        }
        _ => None,
    };
    call.transitions
        .push((phase.stage(), now, phase.agent().cloned()));
    call.phase = phase;
    if let Some(step) = step {
        let agent = call.phase.agent().cloned();
        actions.push_back(call_event(call, step, agent, None));
    }
}

/// The event telling `call`'s account's backend of `step`.
fn call_event(
    call: &Call,
    step: CallStep,
    agent: Option<AgentId>,
    to: Option<TransferTarget>,
) -> Action {
    Action::Event(Box::new(HostEvent::Call {
        kind: step,
        call: call.id.clone(),
        queue: call.queue.clone(),
        from: call.from.clone(),
        name: call.name.clone(),
        business_number: call.business_number.clone(),
        agent,
        to,
    }))
}
