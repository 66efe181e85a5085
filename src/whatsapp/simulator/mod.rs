//! Stand-ins for Meta, used by tests, demos and the load tester.
//!
//! **Owns**: [`graph::FakeGraph`], a fake Graph API that checks `/calls` requests the way Meta
//! does (bearer token, phone number id, JSON shape, SDP rules, pre_accept/accept SDP identity,
//! call state) and reports what it accepted as [`graph::FakeGraphEvent`]s; it also takes call
//! permission requests and settings, and [`permission`] has its simulated users answer them.
//!
//! **Does not touch**: switchboard's media engine. [`caller::Simulator`] places calls like
//! WhatsApp users, and [`callee`] answers the business's own calls as they would: Meta-shaped WebRTC peers (`crate::sim::peer`), signed webhooks, and Meta's
//! rules (accept window, 20 s no-media rule); it consumes the fake Graph API's event stream.
//!
//! **Invariants**: the fake never panics on a request; every request is recorded in order.

pub mod callee;
pub mod caller;
pub mod graph;
pub mod permission;

pub use callee::{CalleeSpec, Outbound, Pickup};
pub use caller::{
    connect_webhook, CallPhase, CallSpec, CallerAudio, SimError, SimulatedCall, Simulator,
    SimulatorConfig,
};
pub use graph::{FakeGraph, FakeGraphEvent, FakeGraphServer, RecordedRequest};
pub use permission::{permission_reply_webhook, Reply};
