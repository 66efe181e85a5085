//! The WhatsApp Cloud API edge: signed webhooks in, Graph `/calls` actions out, and a fake Graph
//! API that checks requests the way Meta does.
//!
//! **Owns**
//! - [`webhook`]: the `/webhooks/whatsapp` routes (GET verification handshake, POST with
//!   `X-Hub-Signature-256` checked over the raw body before anything is parsed), and the single
//!   processor task that parses, de-duplicates and forwards typed [`webhook::WaEvent`]s.
//! - [`graph`]: [`graph::GraphClient`], the reqwest client for pre_accept / accept / reject /
//!   terminate / connect, with timeouts and retries only where a retry is safe; and the call
//!   permission calls (`call_permissions`, the permission request message, the
//!   `callback_permission_status` setting).
//! - [`sdp`]: Meta's SDP rules as a checker ([`sdp::check_answer`], [`sdp::check_offer`]).
//! - [`model`]: serde types of Meta's wire JSON, the only place `serde_json::Value` appears.
//! - [`simulator`]: the fake Graph API (and, from other files, the simulated callers).
//!
//! **Does not touch**: media sockets, str0m, ICE/DTLS, agents, routing decisions or call state.
//! This module translates wire formats into typed events and typed calls; `calls` decides.
//!
//! **Invariants**
//! - A webhook body is authenticated (HMAC-SHA256 with the app secret, constant-time compare)
//!   before a single byte of it is parsed; an unauthenticated body has no effect at all.
//! - An authenticated body is answered 200 once queued; processing failures are ours (logged and
//!   counted), never the sender's. A full queue answers 503 so Meta retries: nothing is lost.
//! - De-duplication state is owned by one task; memory is bounded (age and count).
//! - A `connect` for a call already seen terminated is dropped.
//! - Nothing received from the network panics; secrets (app secret, verify token, access token)
//!   never reach a log line; SDP is logged at debug only.
//! - Graph calls are retried only on network errors, timeouts, 5xx, 429 or `is_transient`;
//!   never on other 4xx.

pub mod graph;
pub mod model;
pub mod sdp;
pub mod simulator;
pub mod webhook;
