//! What the call machines are told ([`Input`]) and what they ask for ([`Action`]).
//!
//! Inputs are past-tense facts from the edges (Meta's webhooks, the media engine, agents'
//! sessions) and the results of earlier actions; actions are imperative commands the driver
//! carries out and whose results come back as inputs.

use std::time::{Duration, Instant};

use crate::ids::{AgentId, LegId, QueueId, StreamId, WaCallId};
use crate::media::LegStats;
use crate::routing::Presence;

/// A media leg of an agent's browser session: stream 0 carries the call's other party, stream 1
/// a second voice (the agent being monitored, for a supervisor; the supervisor's whisper, for an
/// agent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentLeg {
    /// The leg.
    pub leg: LegId,
    /// Its outgoing streams, in SDP order.
    pub streams: Vec<StreamId>,
}

/// A call's WhatsApp leg, once the engine answered Meta's offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaLeg {
    /// The leg.
    pub leg: LegId,
    /// Its one outgoing stream (what the caller hears).
    pub stream: StreamId,
    /// The answer, sent verbatim in `pre_accept` and `accept`.
    pub sdp: String,
}

/// The Graph API call actions switchboard makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GraphAction {
    /// `pre_accept` with the answer: media may connect, the caller hears ringing.
    PreAccept,
    /// `accept` with the same answer: the call is answered.
    Accept,
    /// `reject`: decline a call never accepted.
    Reject,
    /// `terminate`: end an accepted call.
    Terminate,
}

impl GraphAction {
    /// Meta's spelling.
    pub fn name(self) -> &'static str {
        match self {
            GraphAction::PreAccept => "pre_accept",
            GraphAction::Accept => "accept",
            GraphAction::Reject => "reject",
            GraphAction::Terminate => "terminate",
        }
    }
}

/// A step of a call's life: the phases supervisors see, and the milestones its record lists
/// between them. Records and the floor show [`Stage::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Meta offered it.
    Offered,
    /// Taken over, waiting, from another node.
    HandedOver,
    /// Declined at once (capacity, draining, nobody staffed).
    Declined,
    /// The engine answers Meta's offer.
    Answering,
    /// `pre_accept` is in flight or done: the caller hears ringing.
    PreAccepted,
    /// Ringing at an agent.
    Ringing,
    /// Waiting in its queue.
    Queued,
    /// An agent answered; `accept` is pending.
    Connecting,
    /// Caller and agent talk.
    Talking,
    /// Talking, the agent muted.
    Muted,
    /// Talking, the caller on hold.
    OnHold,
    /// The agent's session or media dropped; the caller hears hold audio.
    AgentLost,
    /// Meta took `accept`.
    Accepted,
    /// The WhatsApp leg's ICE and DTLS completed.
    MediaConnected,
    /// Over.
    Ended,
}

impl Stage {
    /// The name records, the floor and the docs use.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Offered => "offered",
            Stage::HandedOver => "handed_over",
            Stage::Declined => "declined",
            Stage::Answering => "answering",
            Stage::PreAccepted => "pre_accepted",
            Stage::Ringing => "ringing",
            Stage::Queued => "queued",
            Stage::Connecting => "connecting",
            Stage::Talking => "talking",
            Stage::Muted => "muted",
            Stage::OnHold => "on_hold",
            Stage::AgentLost => "agent_lost",
            Stage::Accepted => "accepted",
            Stage::MediaConnected => "media_connected",
            Stage::Ended => "ended",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whose media leg: the caller's (WhatsApp) or an agent's browser.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LegOf {
    /// The caller's WhatsApp leg.
    WhatsApp,
    /// This agent's browser leg.
    Agent(AgentId),
}

impl LegOf {
    /// As the floor shows it: `whatsapp`, or the agent's id.
    pub fn label(&self) -> &str {
        match self {
            LegOf::WhatsApp => "whatsapp",
            LegOf::Agent(a) => &a.0,
        }
    }
}

/// Why the engine gave no leg for an offer (Meta's or a browser's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LegFailure {
    /// The offer itself is unusable (unreadable SDP, no Opus, no sha-256 fingerprint, too
    /// many m-lines): the remote's fault.
    #[error("the offer is unusable: {0}")]
    Offer(String),
    /// The engine could not take it (no free port, its leg limit, stopped): ours.
    #[error("the media engine could not take it: {0}")]
    Engine(String),
    /// The answer has no outgoing stream to send the other party's audio on.
    #[error("the answer has no outgoing stream")]
    NoStream,
}

impl From<&crate::media::MediaError> for LegFailure {
    fn from(e: &crate::media::MediaError) -> LegFailure {
        use crate::media::MediaError as M;
        match e {
            M::InvalidOffer { .. }
            | M::NoSha256Fingerprint { .. }
            | M::NoOpus
            | M::Rtc(_)
            | M::TooManyStreams { .. } => LegFailure::Offer(e.to_string()),
            _ => LegFailure::Engine(e.to_string()),
        }
    }
}

/// Why an agent's or supervisor's command was refused; the client sees [`Refusal::code`]
/// (docs/protocol.md, "Error codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The role may not do this.
    Forbidden,
    /// Not ringing at this agent.
    NotRinging,
    /// Not this agent's call.
    NotYourCall,
    /// Not talking on that call (or it does not exist), or not in conversation to monitor.
    NotTalking,
    /// The transfer's agent is not available.
    AgentUnavailable,
    /// The transfer's queue does not exist.
    UnknownQueue,
    /// No such live call.
    NoSuchCall,
    /// A supervisor's own call.
    OwnCall,
    /// The PeerConnection is not up (or has too few streams).
    NoAudio,
    /// A presence change while ringing or on a call.
    Busy,
}

impl Refusal {
    /// The stable code the client sees.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Forbidden => "forbidden",
            Refusal::NotRinging => "not_ringing",
            Refusal::NotYourCall => "not_your_call",
            Refusal::NotTalking => "not_talking",
            Refusal::AgentUnavailable => "agent_unavailable",
            Refusal::UnknownQueue => "unknown_queue",
            Refusal::NoSuchCall => "no_such_call",
            Refusal::OwnCall => "own_call",
            Refusal::NoAudio => "no_audio",
            Refusal::Busy => "busy",
        }
    }
}

/// Why a call stopped ringing at an agent who had not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RingStop {
    /// The ring timed out: the agent is set away.
    Missed,
    /// The caller hung up.
    CallerHungUp,
    /// Meta's accept window closed before anyone answered.
    NotAnsweredInTime,
    /// It ended another way.
    CallEnded,
}

impl RingStop {
    /// As the agent's page shows it (docs/protocol.md, `ring_stopped`).
    pub fn as_str(self) -> &'static str {
        match self {
            RingStop::Missed => "missed",
            RingStop::CallerHungUp => "caller hung up",
            RingStop::NotAnsweredInTime => "not answered in time",
            RingStop::CallEnded => "call ended",
        }
    }
}

/// Why a Graph action failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphFailure {
    /// Meta's error code, when Meta answered one.
    pub code: Option<i64>,
    /// What happened, for the log and the record.
    pub message: String,
}

/// Where a transfer sends the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferTarget {
    /// To this agent (rung at once).
    Agent(AgentId),
    /// To the back of this queue.
    Queue(QueueId),
}

/// What an agent (or supervisor) asks for, from their session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Available, or away with a reason.
    SetPresence {
        /// True: available.
        available: bool,
        /// Why away.
        reason: Option<String>,
    },
    /// Take the ringing call.
    Answer {
        /// The call.
        call: WaCallId,
    },
    /// Decline the ringing call: it goes to the next agent, and the agent is set away.
    Decline {
        /// The call.
        call: WaCallId,
    },
    /// End the call.
    HangUp {
        /// The call.
        call: WaCallId,
    },
    /// The caller hears silence (or the agent again).
    Mute {
        /// The call.
        call: WaCallId,
        /// On or off.
        on: bool,
    },
    /// The caller hears hold audio and the agent hears nothing (or both talk again).
    Hold {
        /// The call.
        call: WaCallId,
        /// On or off.
        on: bool,
    },
    /// Blind transfer.
    Transfer {
        /// The call.
        call: WaCallId,
        /// Where to.
        to: TransferTarget,
    },
    /// Supervisor: listen to a call silently.
    Monitor {
        /// The call.
        call: WaCallId,
    },
    /// Supervisor: speak to the call's agent only.
    Whisper {
        /// The call.
        call: WaCallId,
    },
    /// Supervisor: stop monitoring or whispering.
    StopMonitor,
    /// The agent is done with wrap-up before its time is up.
    EndWrapUp,
}

/// A role, as far as the call machines care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Takes calls.
    Agent,
    /// Takes calls, monitors and whispers.
    Supervisor,
}

/// Everything the call machines are told.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Meta's `connect` webhook with an offer.
    Offered {
        /// Meta's call id.
        call: WaCallId,
        /// The caller's number.
        from: Option<String>,
        /// The caller's profile name.
        name: Option<String>,
        /// The business number's id the call is for.
        business_number: Option<String>,
        /// The business number as people know it (Meta's `display_phone_number`).
        display_number: Option<String>,
        /// The SDP offer.
        offer: String,
        /// When switchboard received the webhook (set-up latency runs from here).
        received_at: Instant,
        /// With several nodes: the shared state (Redis) could not be reached for it, so no
        /// node could be sure to take it alone or choose its agent: it is declined.
        unshared: bool,
        /// With several nodes: the agent chosen for it across the cluster, rung first if still
        /// free here (so the agent taken out of the shared order is the one rung).
        agent: Option<AgentId>,
    },
    /// Meta's `terminate` webhook: the caller's side ended the call.
    Terminated {
        /// The call.
        call: WaCallId,
        /// Meta's status (COMPLETED, FAILED…).
        status: Option<String>,
        /// Meta's error codes.
        errors: Vec<i64>,
    },
    /// The engine answered (or refused) a call's offer.
    Answered {
        /// The call.
        call: WaCallId,
        /// The leg, or why not.
        result: Result<WaLeg, LegFailure>,
    },
    /// A Graph action finished.
    GraphDone {
        /// The call.
        call: WaCallId,
        /// Which action.
        action: GraphAction,
        /// How it went.
        result: Result<(), GraphFailure>,
    },
    /// A leg's ICE and DTLS completed.
    MediaConnected {
        /// The leg.
        leg: LegId,
    },
    /// A WhatsApp stream's first packet went out (after `StartSending`).
    FirstPacket {
        /// The stream.
        stream: StreamId,
    },
    /// A stream's new source's first packet was written to it.
    SourceFlowing {
        /// The stream.
        stream: StreamId,
        /// The source leg.
        source: LegId,
    },
    /// A leg is gone (failed, or closed by either side).
    MediaGone {
        /// The leg.
        leg: LegId,
        /// True when it failed rather than closed.
        failed: bool,
    },
    /// A DTMF key press on a leg.
    Dtmf {
        /// The leg.
        leg: LegId,
        /// The key.
        digit: char,
    },
    /// A leg's statistics.
    Stats {
        /// The leg.
        leg: LegId,
        /// The figures.
        stats: LegStats,
    },
    /// An agent's session opened (sign-in, page reload).
    AgentJoined {
        /// Who.
        agent: AgentId,
        /// Their role.
        role: Role,
        /// The queues they serve.
        queues: Vec<QueueId>,
    },
    /// An agent's session's media leg was answered (it connects next).
    AgentLegReady {
        /// Who.
        agent: AgentId,
        /// The leg.
        leg: AgentLeg,
    },
    /// An agent's session closed (WebSocket gone, sign-out).
    AgentLeft {
        /// Who.
        agent: AgentId,
        /// True for a deliberate sign-out (no grace period).
        signed_out: bool,
    },
    /// An agent's sign-in was withdrawn by someone else (disabled, removed, a new password or
    /// role): the call they are on goes back to the front of its queue at once, the caller
    /// hearing hold audio meanwhile, and they are signed out (their session's own
    /// [`Input::AgentLeft`] follows).
    AgentRevoked {
        /// Who.
        agent: AgentId,
    },
    /// An agent asks for something.
    AgentCommand {
        /// Who.
        agent: AgentId,
        /// What.
        command: Command,
    },
    /// switchboard is draining: decline new calls (Graph `reject`, so Meta's voicemail or
    /// another node serves the caller); calls in progress go on.
    Drain,
    /// With several nodes: whether the queues are served first come, first served across the
    /// nodes (Redis answers). While they are, this centre rings no agent for a waiting call
    /// by itself: the shared order picks the call and the agent ([`Input::Dispatch`]).
    QueuesShared {
        /// True while Redis answers.
        on: bool,
    },
    /// With several nodes: ring `agent` (free here, taken in the shared order) for the waiting
    /// `call`; nothing when either is no longer free.
    Dispatch {
        /// The waiting call.
        call: WaCallId,
        /// The agent.
        agent: AgentId,
    },
    /// The accounts changed (the admin API): queues, numbers, timings and who serves which
    /// queue, from now on. Calls in progress keep their queue; the next call follows the new.
    Reconfigure(Box<Reconfigure>),
    /// switchboard is stopping: end every call cleanly at Meta.
    Shutdown,
}

/// The call centre's settings that accounts decide ([`Input::Reconfigure`]), with qualified
/// ids ([`crate::accounts::Roster`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconfigure {
    /// Every queue.
    pub queues: Vec<crate::routing::QueueConfig>,
    /// Where a call to a number in none goes.
    pub default_queue: QueueId,
    /// Each business number's queue.
    pub numbers: std::collections::HashMap<String, QueueId>,
    /// Each account's timings, by slug.
    pub times: std::collections::HashMap<String, crate::accounts::CallTimes>,
    /// The queues each person serves.
    pub agent_queues: std::collections::HashMap<AgentId, Vec<QueueId>>,
    /// The accounts' own hold audio, by slug (an account without stays on the deployment's).
    pub hold_audio: std::collections::HashMap<String, crate::media::HoldAudio>,
}

// Why a call ended and who ended it: the records' own types, so a call's end is written as the
// machine decided it.
pub use crate::store::{EndedBy, Outcome};

/// A call's life, handed to the store when it ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    /// Meta's call id.
    pub call: WaCallId,
    /// The caller's number.
    pub from: Option<String>,
    /// The caller's name.
    pub name: Option<String>,
    /// The business number's id.
    pub business_number: Option<String>,
    /// The queue it was in.
    pub queue: QueueId,
    /// Every agent who took part, in order.
    pub agents: Vec<AgentId>,
    /// When Meta offered it.
    pub offered_at: Instant,
    /// When an agent first answered (the call was accepted with an agent on it).
    pub answered_at: Option<Instant>,
    /// When it ended.
    pub ended_at: Instant,
    /// Every state it went through: (state, when, agent).
    pub transitions: Vec<(Stage, Instant, Option<AgentId>)>,
    /// Why it ended.
    pub outcome: Outcome,
    /// In words.
    pub reason: String,
    /// Who ended it.
    pub ended_by: EndedBy,
    /// Meta's error codes seen (Graph and webhooks).
    pub meta_errors: Vec<i64>,
    /// The last statistics of each leg that took part.
    pub legs: Vec<(LegOf, LegStats)>,
}

/// What an agent's session is told.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// The agent's presence changed.
    Presence(Presence),
    /// A call rings at the agent.
    Ringing {
        /// The call.
        call: WaCallId,
        /// The caller's number.
        from: Option<String>,
        /// The caller's name.
        name: Option<String>,
        /// The queue.
        queue: QueueId,
        /// The business number's id.
        business_number: Option<String>,
        /// The business number called, as people know it.
        display_number: Option<String>,
        /// How long the caller has waited so far.
        waited: Duration,
        /// How long it rings here before it moves on.
        rings_for: Duration,
    },
    /// The ring stopped without the agent answering.
    RingStopped {
        /// The call.
        call: WaCallId,
        /// Why.
        reason: RingStop,
    },
    /// The agent is talking with the caller (after answer, or a resume after reconnecting).
    Talking {
        /// The call.
        call: WaCallId,
        /// The caller's number.
        from: Option<String>,
        /// The caller's name.
        name: Option<String>,
    },
    /// Mute or hold changed.
    CallState {
        /// The call.
        call: WaCallId,
        /// Muted.
        muted: bool,
        /// On hold.
        held: bool,
    },
    /// The caller pressed a key.
    Dtmf {
        /// The call.
        call: WaCallId,
        /// The key.
        digit: char,
    },
    /// The call is over for this agent.
    CallEnded {
        /// The call.
        call: WaCallId,
        /// Why.
        reason: String,
    },
    /// A supervisor's monitoring started or stopped.
    Monitoring {
        /// The call, or `None` when stopped.
        call: Option<WaCallId>,
        /// Whispering to the agent.
        whisper: bool,
    },
    /// Agents: a supervisor started or stopped whispering to you.
    Whisper {
        /// The call.
        call: WaCallId,
        /// Whispering now.
        on: bool,
    },
    /// A command was refused.
    Refused {
        /// Which refusal (its code is the client's).
        code: Refusal,
        /// In words.
        message: String,
    },
}

/// Everything the call machines ask for.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Answer Meta's offer with a new WhatsApp leg (result: [`Input::Answered`]).
    AnswerWhatsApp {
        /// The call.
        call: WaCallId,
        /// The offer.
        offer: String,
    },
    /// A Graph call action (result: [`Input::GraphDone`]).
    Graph {
        /// The call.
        call: WaCallId,
        /// Which.
        action: GraphAction,
        /// The answer SDP, for pre_accept and accept.
        sdp: Option<String>,
    },
    /// Point an outgoing stream at a leg's audio, or at nothing (silence on a WhatsApp stream).
    Route {
        /// The stream.
        stream: StreamId,
        /// The source.
        source: Option<LegId>,
    },
    /// Play hold audio on a WhatsApp stream (or stop).
    Hold {
        /// The stream.
        stream: StreamId,
        /// On or off.
        on: bool,
    },
    /// A WhatsApp leg's hold audio is its account's own, not the deployment's.
    HoldAudio {
        /// The leg.
        leg: LegId,
        /// The clip.
        audio: crate::media::HoldAudio,
    },
    /// Start the WhatsApp leg's 20 ms packets (after `accept` succeeded).
    StartSending {
        /// The leg.
        leg: LegId,
    },
    /// Close a leg.
    CloseLeg {
        /// The leg.
        leg: LegId,
    },
    /// Tell an agent's session.
    Notify {
        /// Who.
        agent: AgentId,
        /// What.
        notice: Notice,
    },
    /// The floor (calls, agents, queues) changed: supervisors get a fresh view.
    FloorChanged,
    /// The call is live, or got further (an agent took it): recorded so that a process that
    /// dies leaves a trace to clean up, and whoever cleans up records what was known.
    MarkLive {
        /// The call.
        call: WaCallId,
        /// The business number.
        business_number: Option<String>,
        /// The call's record if it were lost now: what a node taking it over writes.
        if_lost: Box<Ended>,
    },
    /// The call ended: write its record.
    Finished(Box<Ended>),
    /// Something the account's own backend is told (call events, issue 24). The driver turns
    /// it into a signed delivery when the account has an endpoint for it; it never waits for
    /// one.
    Event(Box<HostEvent>),
    /// Something for the metrics (never a decision: the driver only records it).
    Metric(Metric),
}

/// What happened, as an account's backend hears of it (`docs/embedding.md`, "Receiving
/// events"): the machine says when, the driver says how.
#[derive(Debug, Clone, PartialEq)]
pub enum HostEvent {
    /// A step of a call's life.
    Call {
        /// Which step.
        kind: CallStep,
        /// The call.
        call: WaCallId,
        /// Its queue (after a transfer to a queue, the new one).
        queue: QueueId,
        /// The caller's number.
        from: Option<String>,
        /// The caller's name.
        name: Option<String>,
        /// The business number's id.
        business_number: Option<String>,
        /// The agent it concerns: rung, answering, holding, transferring.
        agent: Option<AgentId>,
        /// Where a transfer sent it.
        to: Option<TransferTarget>,
    },
    /// An agent's presence changed.
    Agent {
        /// Who.
        agent: AgentId,
        /// Their presence now.
        presence: Presence,
    },
}

/// The steps of a call that its account's backend hears of; its end is told with its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallStep {
    /// Meta offered it.
    Offered,
    /// It rings at an agent.
    Ringing,
    /// It waits in its queue.
    Queued,
    /// An agent answered it: caller and agent talk.
    Answered,
    /// The agent put the caller on hold.
    Held,
    /// The agent took the caller off hold.
    Resumed,
    /// The agent sent it on to another agent or a queue.
    Transferred,
}

/// A step of a call's set-up whose latency is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupStep {
    /// Meta's `connect` webhook received → `pre_accept` sent.
    WebhookToPreAccept,
    /// The agent answered → `accept` sent.
    AnswerToAccept,
    /// `accept` sent → the first packet to Meta.
    AcceptToFirstPacket,
    /// The agent answered → the caller's first packet written to the agent's leg.
    AnswerToFirstCallerPacket,
}

/// Why a call was rejected at Meta before it was ever answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// switchboard is draining.
    Draining,
    /// The business number had its cap of calls in progress.
    AtCapacity,
    /// Nobody is signed in to the queue.
    Unstaffed,
    /// Nobody is free and the queue's policy is `decline`.
    NoFreeAgent,
    /// The media engine refused the offer (no free port, too many legs, unusable SDP).
    MediaRefused,
    /// With several nodes, the shared state (Redis) was unreachable.
    SharedStateDown,
    /// As many calls as allowed were being set up (answered, their WhatsApp leg not yet
    /// connected); this one could not be set up in time.
    SetupBusy,
}

impl RejectReason {
    /// Every reason.
    pub const ALL: [RejectReason; 7] = [
        RejectReason::Draining,
        RejectReason::AtCapacity,
        RejectReason::Unstaffed,
        RejectReason::NoFreeAgent,
        RejectReason::MediaRefused,
        RejectReason::SharedStateDown,
        RejectReason::SetupBusy,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Draining => "draining",
            RejectReason::AtCapacity => "at_capacity",
            RejectReason::Unstaffed => "unstaffed",
            RejectReason::NoFreeAgent => "no_free_agent",
            RejectReason::MediaRefused => "media_refused",
            RejectReason::SharedStateDown => "shared_state_down",
            RejectReason::SetupBusy => "setup_busy",
        }
    }
}

/// What the call machines report for the metrics.
#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    /// Meta offered a call to this queue.
    Offered {
        /// Its queue.
        queue: QueueId,
    },
    /// Rejected at Meta before it was answered.
    Rejected {
        /// Its queue.
        queue: QueueId,
        /// Why.
        reason: RejectReason,
    },
    /// Answered by an agent, once per call; `within_target`: within the service-level target of
    /// the offer.
    Answered {
        /// Its queue.
        queue: QueueId,
        /// Answered within the target.
        within_target: bool,
    },
    /// An agent was rung and did not answer.
    RingNoAnswer {
        /// The call's queue.
        queue: QueueId,
    },
    /// One set-up step took this long.
    Setup {
        /// Which.
        step: SetupStep,
        /// How long.
        took: Duration,
    },
}
