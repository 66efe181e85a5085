//! The webhook edge: `GET`/`POST /webhooks/whatsapp`, signature checking, typed [`WaEvent`]s.
//!
//! Flow: the POST handler checks `X-Hub-Signature-256` over the raw bytes, `try_send`s the body
//! into a bounded queue and answers 200 (503 if the queue is full, so Meta retries). One
//! processor task ([`WebhookState::spawn`]) owns the queue's receiving end and the [`Dedup`]
//! table: it parses ([`parse_webhook`]), drops duplicates and late connects, and forwards
//! [`WaEvent`]s to the app's channel.
//!
//! Refused requests (no or a bad signature) can come from anyone, as fast as they like, so they
//! are not logged one by one: a [`RefusalLog`] folds them into at most one warning per interval
//! carrying their count, and [`WebhookState::stats`] counts them all. It sits behind a std
//! `Mutex` held for a few instructions, never across an `.await`; the processor task flushes it
//! on a timer so the tail of a flood is reported without waiting for the next refusal.

mod dedup;
mod parse;
mod process;
mod verify;

pub use dedup::*;
pub use parse::*;
pub use process::*;
pub use verify::*;

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::model::{
    self, CallEventKind, CallStatusKind, PermissionResponse, TerminateStatus, UnixTime,
};
use crate::ids::{CallIdError, WaCallId};

/// The path of both webhook routes.
pub const WEBHOOK_PATH: &str = "/webhooks/whatsapp";
/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// Everything that can go wrong with one webhook delivery or one call inside it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// No `X-Hub-Signature-256` header.
    #[error("missing X-Hub-Signature-256 header")]
    MissingSignature,
    /// The header is not `sha256=<64 hex digits>`.
    #[error("malformed X-Hub-Signature-256 header: {reason}")]
    MalformedSignature {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The HMAC does not match the body.
    #[error("X-Hub-Signature-256 does not match the body")]
    SignatureMismatch,
    /// A verification handshake (`GET`) without `hub.mode=subscribe`, the right
    /// `hub.verify_token` and a `hub.challenge`.
    #[error("verification handshake without subscribe mode, the verify token and a challenge")]
    VerificationRefused,
    /// The body is not a webhook envelope.
    #[error("webhook body is not valid JSON of the expected shape: {reason}")]
    InvalidJson {
        /// The parser's message.
        reason: String,
    },
    /// `object` is not `whatsapp_business_account`.
    #[error("webhook object is {object:?}, expected whatsapp_business_account")]
    UnexpectedObject {
        /// The object received.
        object: String,
    },
    /// A `calls` change whose value could not be read.
    #[error("calls change in entry {entry_id:?} is malformed: {reason}")]
    InvalidChange {
        /// The WABA id of the entry.
        entry_id: String,
        /// The parser's message.
        reason: String,
    },
    /// A call or status object that could not be read.
    #[error("call object {call_id:?} is malformed: {reason}")]
    InvalidCall {
        /// Its id, if it had a readable one.
        call_id: Option<String>,
        /// The parser's message.
        reason: String,
    },
    /// A call permission reply (field `messages`) that could not be read.
    #[error("call permission reply {message_id:?} is malformed: {reason}")]
    InvalidMessage {
        /// Its `id`, if it had a readable one (a `wamid`, never a phone number).
        message_id: Option<String>,
        /// The parser's message.
        reason: String,
    },
    /// A call or status whose id does not have Meta's shape ([`WaCallId::check`]): it is
    /// neither used nor logged whole.
    #[error("call id {shown:?} ({len} bytes; only its start shown) refused: {reason}")]
    InvalidCallId {
        /// Its first 32 characters (shown escaped).
        shown: String,
        /// Its length in bytes.
        len: usize,
        /// What is wrong with it.
        reason: CallIdError,
    },
    /// A connect older than the freshness window ([`CONNECT_MAX_AGE`]): a late retry or a
    /// replay, refused.
    #[error(
        "connect for {call_id} is {age_secs} s old, older than the {max_age_secs} s window \
         (a late retry or a replay: Meta's accept window is over)"
    )]
    ConnectTooOld {
        /// The call.
        call_id: WaCallId,
        /// How old it is.
        age_secs: u64,
        /// The window.
        max_age_secs: u64,
    },
    /// A connect without a session or SDP.
    #[error("connect for {call_id} has no usable session SDP")]
    MissingSession {
        /// The call.
        call_id: WaCallId,
    },
    /// A connect whose `sdp_type` is neither offer nor answer.
    #[error("connect for {call_id} has sdp_type {sdp_type:?}")]
    UnexpectedSdpType {
        /// The call.
        call_id: WaCallId,
        /// What it said.
        sdp_type: Option<String>,
    },
}

/// An error object from a webhook, typed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaErrorInfo {
    /// Meta's code (138021…).
    pub code: i64,
    /// The title.
    pub message: Option<String>,
    /// `error_data.details`.
    pub details: Option<String>,
    /// Documentation link.
    pub href: Option<String>,
}

impl From<&model::WebhookErrorObject> for WaErrorInfo {
    fn from(e: &model::WebhookErrorObject) -> Self {
        WaErrorInfo {
            code: e.code,
            message: e.message.clone().or_else(|| e.title.clone()),
            details: e.error_data.as_ref().and_then(|d| d.details.clone()),
            href: e.href.clone(),
        }
    }
}

/// What a webhook told us, typed. No JSON inside. (Serialized only between nodes, to hand an
/// event to the node that owns its call.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WaEvent {
    /// A user calls us: Meta's SDP offer (user-initiated connect).
    CallOffered {
        /// The call.
        call_id: WaCallId,
        /// Our business number's id (from `metadata`).
        phone_number_id: Option<String>,
        /// Our business number as people know it (`metadata.display_phone_number`).
        #[serde(default)]
        display_phone_number: Option<String>,
        /// The caller.
        from: Option<String>,
        /// Our number.
        to: Option<String>,
        /// The caller's profile name, from `contacts`.
        caller_name: Option<String>,
        /// Meta's offer.
        offer_sdp: String,
        /// When Meta sent it.
        timestamp: Option<UnixTime>,
        /// Deep-link `biz_payload`, for routing.
        deeplink_payload: Option<String>,
        /// Call-button `payload`, for routing.
        cta_payload: Option<String>,
        /// When switchboard received the webhook carrying it (set by the processor; `None`
        /// from [`parse_webhook`]).
        #[serde(skip)]
        received_at: Option<Instant>,
        /// With several nodes, the agent chosen for it across the cluster (set by the processor
        /// of the node that took the webhook; rung first by the node that handles the call).
        #[serde(default)]
        agent: Option<String>,
        /// Set by the processor when, with several nodes, the shared state (Redis) could not
        /// be asked about this call: the call centre declines it (Graph `reject`, reference
        /// §4.1).
        #[serde(skip)]
        unshared: bool,
    },
    /// The user picked up our call: Meta's SDP answer (business-initiated connect).
    CallAnswered {
        /// The call.
        call_id: WaCallId,
        /// Meta's answer.
        answer_sdp: String,
    },
    /// The call ended.
    CallTerminated {
        /// The call.
        call_id: WaCallId,
        /// COMPLETED / FAILED / …, if given.
        status: Option<TerminateStatus>,
        /// Seconds, if the call was picked up.
        duration: Option<u64>,
        /// When it was picked up.
        start_time: Option<UnixTime>,
        /// When it ended.
        end_time: Option<UnixTime>,
        /// Why it failed (per-call errors win over value-level ones).
        errors: Vec<WaErrorInfo>,
        /// Echo of what we passed in accept/connect.
        biz_opaque_callback_data: Option<String>,
    },
    /// A business-initiated call's status changed.
    CallStatusChanged {
        /// The call.
        call_id: WaCallId,
        /// RINGING / ACCEPTED / REJECTED / ….
        status: CallStatusKind,
        /// When Meta sent it.
        timestamp: Option<UnixTime>,
        /// The callee's number.
        recipient_id: Option<String>,
        /// Echo of what we passed in connect.
        biz_opaque_callback_data: Option<String>,
        /// Errors about this status.
        errors: Vec<WaErrorInfo>,
    },
    /// A user answered a call permission request, or Meta answered for them (reference §3.6:
    /// a user who called with `callback_permission_status` on, or a permission revoked after
    /// unanswered calls). Not about a call: [`WaEvent::call`] is `None`.
    PermissionReply {
        /// Our business number's id (from `metadata`).
        phone_number_id: Option<String>,
        /// The user (`from`).
        user: String,
        /// Accept or reject.
        response: PermissionResponse,
        /// Whether the permission never expires.
        permanent: bool,
        /// When a temporary permission ends.
        expires_at: Option<UnixTime>,
        /// `user_action` or `automatic`.
        source: Option<String>,
        /// The wamid of our request, or the wacid of the call that prompted the reply.
        context_id: Option<String>,
        /// When the user answered.
        timestamp: Option<UnixTime>,
        /// The reply's own `wamid.…`: Meta's redelivery of it is recognised by it.
        message_id: String,
    },
}

/// What [`WaEvent::call_id`] gives for an event about no call.
static NO_CALL: WaCallId = WaCallId(String::new());

impl WaEvent {
    /// The call this event is about; an empty id for an event about no call (a permission
    /// reply). Kept total so that the code that orders and places events by call goes on
    /// unchanged: every event without a call lands under the one empty key, is owned by no
    /// node and so is handled where it arrived. Use [`WaEvent::call`] to tell the two apart.
    pub fn call_id(&self) -> &WaCallId {
        self.call().unwrap_or(&NO_CALL)
    }

    /// The call this event is about, when it is about one.
    pub fn call(&self) -> Option<&WaCallId> {
        match self {
            WaEvent::CallOffered { call_id, .. }
            | WaEvent::CallAnswered { call_id, .. }
            | WaEvent::CallTerminated { call_id, .. }
            | WaEvent::CallStatusChanged { call_id, .. } => Some(call_id),
            WaEvent::PermissionReply { .. } => None,
        }
    }

    /// The key under which a redelivery of this event is recognised.
    pub fn dedup_key(&self) -> DedupKey {
        let call_id = self.call_id().clone();
        match self {
            WaEvent::CallOffered { .. } | WaEvent::CallAnswered { .. } => DedupKey::Call {
                call_id,
                event: CallEventKind::Connect,
            },
            WaEvent::CallTerminated { .. } => DedupKey::Call {
                call_id,
                event: CallEventKind::Terminate,
            },
            WaEvent::CallStatusChanged { status, .. } => DedupKey::Status {
                call_id,
                status: status.clone(),
            },
            WaEvent::PermissionReply { message_id, .. } => DedupKey::Message {
                id: message_id.clone(),
            },
        }
    }
}
