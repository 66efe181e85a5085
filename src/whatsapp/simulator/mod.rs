//! Stand-ins for Meta, used by tests, demos and the load tester.
//!
//! **Owns**: [`graph::FakeGraph`], a fake Graph API that checks `/calls` requests the way Meta
//! does (bearer token, phone number id, JSON shape, SDP rules, pre_accept/accept SDP identity,
//! call state) and reports what it accepted as [`graph::FakeGraphEvent`]s.
//!
//! **Does not touch**: media. The simulated caller that answers Graph events with real WebRTC
//! media lives beside this file and consumes the event stream.
//!
//! **Invariants**: the fake never panics on a request; every request is recorded in order.

pub mod graph;

pub use graph::{FakeGraph, FakeGraphEvent, FakeGraphServer, RecordedRequest};
