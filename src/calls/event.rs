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
    /// A call-back: switchboard's `connect` went out; the customer's phone has not rung yet.
    Calling,
    /// A call-back rings on the customer's phone (Meta's `RINGING`).
    CalleeRinging,
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
            Stage::Calling => "calling",
            Stage::CalleeRinging => "callee_ringing",
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
    /// A presence change while ringing or on a call; a call-back while busy.
    Busy,
    /// A call-back's number is not a WhatsApp number (6–15 digits).
    BadNumber,
    /// No such call-back task, or not offered to this agent.
    NoSuchTask,
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
            Refusal::BadNumber => "bad_number",
            Refusal::NoSuchTask => "no_such_task",
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
    /// Call a customer back (a business-initiated call, issue 25).
    CallBack {
        /// The customer's WhatsApp number, digits only (see [`normalize_number`]).
        to: String,
        /// The call-back task it answers, when one was offered.
        task: Option<String>,
    },
    /// Stop the agent's call-back before the customer answered.
    CancelCallBack,
    /// Pass an offered call-back task on to someone else.
    SkipTask {
        /// The task.
        task: String,
    },
    /// Send a customer WhatsApp's call-permission request (reference §4.6).
    AskPermission {
        /// Their number (see [`normalize_number`]).
        to: String,
    },
}

/// Where a permission request stands, as the agent who sent it sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PermissionStep {
    /// Sent; the customer has not answered.
    Requested,
    /// The customer allowed calls.
    Granted,
    /// The customer refused.
    Rejected,
    /// Meta refused the request.
    Failed,
}

impl PermissionStep {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PermissionStep::Requested => "requested",
            PermissionStep::Granted => "granted",
            PermissionStep::Rejected => "rejected",
            PermissionStep::Failed => "failed",
        }
    }
}

/// `raw` as a WhatsApp number: digits only, with `+`, spaces, dashes, dots and parentheses
/// ignored; `None` unless 6–15 digits remain (E.164's longest is 15).
pub fn normalize_number(raw: &str) -> Option<String> {
    let mut digits = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '0'..='9' => digits.push(c),
            '+' | ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    (6..=15).contains(&digits.len()).then_some(digits)
}

/// A call-back's step as the agent who placed it sees it (docs/protocol.md, "Call-backs").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallBackStatus {
    /// `connect` is on its way or taken; the customer's phone has not rung yet.
    Calling,
    /// Ringing on the customer's phone.
    Ringing,
    /// The customer answered.
    Connected,
    /// The customer declined.
    Declined,
    /// Nobody answered in time.
    NoAnswer,
    /// The agent stopped it.
    Cancelled,
    /// It could not be placed (permission, Meta's limits, media).
    Failed,
}

impl CallBackStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            CallBackStatus::Calling => "calling",
            CallBackStatus::Ringing => "ringing",
            CallBackStatus::Connected => "connected",
            CallBackStatus::Declined => "declined",
            CallBackStatus::NoAnswer => "no_answer",
            CallBackStatus::Cancelled => "cancelled",
            CallBackStatus::Failed => "failed",
        }
    }

    /// What the agent reads.
    pub fn sentence(self) -> &'static str {
        match self {
            CallBackStatus::Calling => "Calling…",
            CallBackStatus::Ringing => "Ringing on their phone",
            CallBackStatus::Connected => "Connected",
            CallBackStatus::Declined => "Declined",
            CallBackStatus::NoAnswer => "No answer",
            CallBackStatus::Cancelled => "Cancelled",
            CallBackStatus::Failed => "The call could not be placed.",
        }
    }
}

/// Why a call-back was not placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialRefusal {
    /// Meta's `call_permissions` says the customer has not allowed calls; `can_ask`: a
    /// permission request may be sent now.
    NoPermission {
        /// A permission request may be sent now.
        can_ask: bool,
    },
    /// `call_permissions` says the calls allowed to this customer are used up.
    Limit {
        /// When calling is allowed again (unix ms): the latest `limit_expiration_time` of the
        /// full limits, when Meta gave one.
        until: Option<i64>,
    },
    /// Graph refused `connect` (or the permission check) with this code, or failed.
    Meta {
        /// Meta's error code.
        code: Option<i64>,
        /// What Meta said (`error_data.details` when given).
        message: String,
    },
    /// The media engine could not make the offer.
    Media(String),
}

/// Unix time `ms` as `HH:MM` UTC (within Meta's windows of a day or a week, the agent's page
/// shows the date in the agent's own time from `retry_at`).
fn clock_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}", secs / 3600, secs % 3600 / 60)
}

/// Meta's call-back refusals in the words an agent reads (reference §7.2). Codes not listed
/// keep Meta's own message.
pub fn meta_sentence(code: i64) -> Option<&'static str> {
    Some(match code {
        138006 => "This customer has not given permission to be called. Ask for permission first.",
        138009 => "Permission has been asked of this customer as often as WhatsApp allows; try again after the limit resets.",
        138012 => "This customer has been called as often as WhatsApp allows for now; try again later.",
        138013 => "WhatsApp does not allow business calls to this customer's number.",
        138017 => "This customer has already given permanent permission to be called.",
        138001 => "This number cannot be called on WhatsApp.",
        138003 => "A call with this customer is already in progress.",
        138002 | 138005 => "WhatsApp is limiting calls from this business number right now; try again in a moment.",
        138000 | 131055 | 138018 => "Calling is not enabled on this business number.",
        138014 => "WhatsApp has paused calling on this business number for low call quality.",
        _ => return None,
    })
}

impl DialRefusal {
    /// The sentence the agent reads.
    pub fn sentence(&self) -> String {
        match self {
            DialRefusal::NoPermission { can_ask: true } => Self::known(138006),
            DialRefusal::NoPermission { can_ask: false } => {
                "This customer has not given permission to be called, and WhatsApp allows no \
                 permission request to them right now."
                    .into()
            }
            DialRefusal::Limit { until: None } => Self::known(138012),
            DialRefusal::Limit { until: Some(at) } => format!(
                "This customer has been called as often as WhatsApp allows for now; calling \
                 them is allowed again from {} UTC.",
                clock_utc(*at)
            ),
            DialRefusal::Meta {
                code: Some(c),
                message,
            } => match meta_sentence(*c) {
                Some(s) if *c == 138012 && !message.is_empty() => format!("{s} ({message})"),
                Some(s) => s.into(),
                None => format!("WhatsApp refused the call: {message} (code {c})."),
            },
            DialRefusal::Meta {
                code: None,
                message,
            } => format!("WhatsApp could not be reached to place the call: {message}"),
            DialRefusal::Media(_) => {
                "switchboard could not set up the audio for this call; try again.".into()
            }
        }
    }

    /// The sentence of a code [`meta_sentence`] knows.
    fn known(code: i64) -> String {
        meta_sentence(code).unwrap_or_default().to_owned()
    }

    /// Meta's code, for the record and the agent.
    pub fn code(&self) -> Option<i64> {
        match self {
            DialRefusal::NoPermission { .. } => Some(138006),
            DialRefusal::Limit { .. } => Some(138012),
            DialRefusal::Meta { code, .. } => *code,
            DialRefusal::Media(_) => None,
        }
    }

    /// When calling the customer is allowed again (unix ms), when Meta said.
    pub fn retry_at(&self) -> Option<i64> {
        match self {
            DialRefusal::Limit { until } => *until,
            _ => None,
        }
    }

    /// Whether a permission request may help.
    pub fn can_ask(&self) -> bool {
        match self {
            DialRefusal::NoPermission { can_ask } => *can_ask,
            DialRefusal::Meta { code, .. } => *code == Some(138006),
            _ => false,
        }
    }
}

/// A placed call-back: Meta's call id (from Graph `connect`) and its WhatsApp leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// Meta's call id.
    pub call: WaCallId,
    /// The leg whose offer went in `connect`.
    pub wa: WaLeg,
}

/// A call-back that was not placed, and the id its record is kept under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialFailure {
    /// switchboard's own id for the attempt's record (there is no Meta call id).
    pub attempt: WaCallId,
    /// Why.
    pub refusal: DialRefusal,
}

/// Meta's statuses of a business-initiated call (reference §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalleeStatus {
    /// The customer's phone rings.
    Ringing,
    /// The customer answered (may arrive after media flows; for the audit).
    Accepted,
    /// The customer declined.
    Rejected,
}

/// Why a call-back task exists (docs/protocol.md, `task`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskReason {
    /// The customer hung up while waiting in the queue.
    Abandoned,
    /// The customer called when nobody was staffed.
    Unstaffed,
    /// Scheduled through the API.
    Scheduled,
}

impl TaskReason {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskReason::Abandoned => "abandoned",
            TaskReason::Unstaffed => "unstaffed",
            TaskReason::Scheduled => "scheduled",
        }
    }

    /// The reason named `s`.
    pub fn parse(s: &str) -> Option<TaskReason> {
        [
            TaskReason::Abandoned,
            TaskReason::Unstaffed,
            TaskReason::Scheduled,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// A customer to call back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// Its id.
    pub id: String,
    /// The customer's number, digits.
    pub to: String,
    /// Their name, when known.
    pub name: Option<String>,
    /// The queue whose agents take it.
    pub queue: QueueId,
    /// Why.
    pub reason: TaskReason,
    /// What the scheduler wrote.
    pub note: Option<String>,
    /// Not offered before then (unix ms); `None`: now.
    pub due_at: Option<i64>,
    /// For this person only, when the scheduler named one.
    pub agent: Option<AgentId>,
}

/// Why a task offer was withdrawn from an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskStop {
    /// The agent is calling the customer.
    Taken,
    /// The agent skipped it.
    Skipped,
    /// Another agent is calling the customer back.
    Cancelled,
    /// The customer called in again.
    CalledIn,
    /// A call rings at the agent.
    Call,
}

impl TaskStop {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStop::Taken => "taken",
            TaskStop::Skipped => "skipped",
            TaskStop::Cancelled => "cancelled",
            TaskStop::CalledIn => "called_in",
            TaskStop::Call => "call",
        }
    }
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
    /// A call-back's `connect` went out (or did not): the result of [`Action::Dial`].
    Dialed {
        /// The dial.
        dial: u64,
        /// Meta's call id and the leg, or why not.
        result: Result<Placed, DialFailure>,
    },
    /// Meta's status of a business-initiated call (`statuses[]` on field `calls`).
    CalleeStatus {
        /// The call.
        call: WaCallId,
        /// Which.
        status: CalleeStatus,
    },
    /// The customer picked up a call-back: Meta's `connect` webhook with its answer.
    CalleeAnswered {
        /// The call.
        call: WaCallId,
        /// Meta's answer.
        sdp: String,
        /// When switchboard received the webhook.
        received_at: Instant,
    },
    /// The engine applied (or refused) the customer's answer: the result of
    /// [`Action::ApplyAnswer`].
    AnswerApplied {
        /// The call.
        call: WaCallId,
        /// How it went.
        result: Result<(), LegFailure>,
    },
    /// A call-back task to offer (the API).
    TaskAdded {
        /// The task.
        task: Box<Task>,
        /// Not offered before then (its `due_at` on this clock).
        due: Option<Instant>,
    },
    /// A call-back task is withdrawn (the API): nobody calls the customer for it.
    TaskCancelled {
        /// Its id.
        task: String,
    },
    /// A permission request went out (or did not): the result of [`Action::AskPermission`].
    PermissionAsked {
        /// Who asked.
        agent: AgentId,
        /// The customer.
        to: String,
        /// How it went.
        result: Result<(), GraphFailure>,
    },
    /// A customer answered a permission request (Meta's `call_permission_reply`), or Meta
    /// granted or revoked one on its own (`response_source: automatic`).
    PermissionReply {
        /// The business number it concerns (`None`: the main one).
        business_number: Option<String>,
        /// The customer.
        user: String,
        /// Calls allowed.
        granted: bool,
        /// For good.
        permanent: bool,
        /// Until then (unix ms), when temporary.
        expires_at: Option<i64>,
        /// Meta's `response_source`: `user_action` or `automatic`.
        source: Option<String>,
    },
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
    /// The queues whose lost callers become call-back tasks.
    pub callback_queues: std::collections::HashSet<QueueId>,
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
    /// A call-back: the agent who placed it and the task it came from.
    pub dialled: Option<Dialled>,
}

/// Who placed a call-back, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialled {
    /// The agent.
    pub by: AgentId,
    /// The call-back task it answered.
    pub task: Option<String>,
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
    /// A step of the agent's call-back.
    CallBack {
        /// The customer's number.
        to: String,
        /// Meta's call id, once `connect` gave one.
        call: Option<WaCallId>,
        /// The step.
        status: CallBackStatus,
        /// Meta's error code, when it refused.
        code: Option<i64>,
        /// What the agent reads.
        message: String,
        /// A permission request may be sent now.
        can_ask_permission: bool,
        /// When calling the customer is allowed again (unix ms), for a refusal that says.
        retry_at: Option<i64>,
    },
    /// A call-back task is offered to the agent.
    Task(Box<Task>),
    /// A task offer is withdrawn.
    TaskStopped {
        /// The task.
        task: String,
        /// Why.
        reason: TaskStop,
    },
    /// A permission request's step.
    Permission {
        /// The customer.
        to: String,
        /// The step.
        step: PermissionStep,
        /// What the agent reads.
        message: String,
        /// Until then (unix ms), when granted for a time.
        expires_at: Option<i64>,
        /// Granted for good.
        permanent: bool,
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
    /// Place a call-back: check Meta's permission, make the WhatsApp leg's offer, send Graph
    /// `connect` (result: [`Input::Dialed`]).
    Dial {
        /// The dial, as [`Input::Dialed`] names it.
        dial: u64,
        /// Who dials.
        agent: AgentId,
        /// The customer's number.
        to: String,
        /// The business number to call from (`None`: the main one).
        business_number: Option<String>,
    },
    /// Send the customer the call-permission request (result: [`Input::PermissionAsked`]).
    AskPermission {
        /// Who asks.
        agent: AgentId,
        /// The customer.
        to: String,
        /// The business number to ask from (`None`: the main one).
        business_number: Option<String>,
    },
    /// Keep a customer's call permission as it stands now (the `call_permissions` table), in
    /// the order the machine learns of it: a reply that overtook Graph's answer to the request
    /// is not written over by "requested".
    KeepPermission {
        /// The business number (`None`: the main one).
        business_number: Option<String>,
        /// The customer.
        user: String,
        /// Granted, rejected, or requested.
        state: crate::store::PermissionState,
        /// Granted for good.
        permanent: bool,
        /// Until then (unix ms), when granted for a time.
        expires_at: Option<i64>,
        /// Meta's `response_source`.
        source: Option<String>,
        /// Who asked, for a request.
        requested_by: Option<AgentId>,
    },
    /// Keep an open call-back task (the `call_tasks` table): it survives a restart.
    KeepTask(Box<Task>),
    /// The task is done with (taken, cancelled, or the customer called in): forget it.
    ForgetTask {
        /// Its id.
        task: String,
    },
    /// Apply the customer's answer to a call-back's leg (result: [`Input::AnswerApplied`]).
    ApplyAnswer {
        /// The call.
        call: WaCallId,
        /// Its WhatsApp leg.
        leg: LegId,
        /// Meta's answer.
        sdp: String,
    },
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
    /// A call-back's answer webhook received → the first packet to the customer.
    CalleeAnswerToFirstPacket,
    /// An agent pressed Call back → Graph `connect` sent (Meta's permission checked, the
    /// offer made).
    CallBackToConnect,
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
    /// A call-back's fate: `placed`, `connected`, `declined`, `no_answer`, `cancelled`, or
    /// `refused` with Meta's code.
    CallBack {
        /// What happened.
        outcome: &'static str,
        /// Meta's code, when refused.
        code: Option<i64>,
    },
    /// A permission request: `requested`, `granted` (permanent already), `failed`; a reply
    /// `accepted` or `rejected`.
    Permission {
        /// What happened.
        outcome: &'static str,
    },
    /// One set-up step took this long.
    Setup {
        /// Which.
        step: SetupStep,
        /// How long.
        took: Duration,
    },
}
