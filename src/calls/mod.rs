//! The call lifecycle: one explicit state machine per call, the agents' sessions as far as calls
//! care, and the driver that carries out what they ask.
//!
//! *Owns*: every live call's state (offered, pre-accepted, ringing, queued, talking, agent lost,
//! ended), which leg belongs to which call or agent, ring/queue/grace/wrap-up deadlines, and
//! the record of each call until it is handed to the store.
//!
//! *Does not touch*: HTTP, WebSocket frames, sockets or SQL. It is told what happened
//! ([`Input`]) and says what to do ([`Action`]); the driver talks to the media engine, the Graph
//! API, agents' sessions and the store.
//!
//! *Invariants*:
//! - [`Centre`] is pure and sans-IO: time is passed in; nothing in it reads a clock or awaits.
//! - Every call ends exactly once and produces exactly one [`Action::Finished`].
//! - Nothing is sent on a WhatsApp leg before `accept` succeeded (reference §9).
//! - A call is either answered by an agent, queued with hold audio, or declined: it never rings
//!   into Meta's accept window.
//! - Events for ended or unknown calls, duplicates and events out of place change nothing.

pub mod actor;
pub mod dispatch;
mod event;
mod machine;
mod ports;
pub mod shared;

/// How an agent whose audio is not up reads as away (see [`crate::routing::AwayReason`]).
pub use crate::routing::NO_AUDIO;
pub use dispatch::{AdoptAnswer, AdoptError, AdoptRequest, HandOver, ADOPT_PATH};
pub use ports::{GraphClients, GraphPort, MediaPort, Pending, RecordsPort};

pub use event::{
    meta_sentence, normalize_number, Action, AgentLeg, CallBackStatus, CallStep, CalleeStatus,
    Command, DialFailure, DialRefusal, Dialled, Ended, EndedBy, GraphAction, GraphFailure,
    HostEvent, Input, LegFailure, LegOf, Metric, Notice, Outcome, PermissionStep, Placed,
    Reconfigure, Refusal, RejectReason, RingStop, Role, SetupStep, Stage, Task, TaskReason,
    TaskStop, TransferTarget, WaLeg,
};
pub use machine::{
    CallView, Centre, CentreConfig, CentreCounters, HandedCall, Phase, ServiceLevel,
    DEFAULT_CALLBACK_NO_ANSWER, DEFAULT_MAX_SETTING_UP,
};

#[cfg(test)]
pub(crate) mod fakes;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
