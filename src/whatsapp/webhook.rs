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

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, info_span, warn, Instrument};

use super::model::{
    self, CallEventKind, CallStatusKind, Lenient, SdpType, TerminateStatus, UnixTime,
    WebhookEnvelope,
};
use crate::cluster::{Cluster, ClusterError};
use crate::config::Secret;
use crate::ids::{CallIdError, WaCallId};
use crate::ops::names;

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
}

impl WaEvent {
    /// The call this event is about.
    pub fn call_id(&self) -> &WaCallId {
        match self {
            WaEvent::CallOffered { call_id, .. }
            | WaEvent::CallAnswered { call_id, .. }
            | WaEvent::CallTerminated { call_id, .. }
            | WaEvent::CallStatusChanged { call_id, .. } => call_id,
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
        }
    }
}

/// Parses an (already authenticated) webhook body into events, in order. Calls or changes that
/// cannot be used are logged and skipped; only an unreadable envelope fails the whole body.
pub fn parse_webhook(body: &[u8]) -> Result<Vec<WaEvent>, WebhookError> {
    let (events, skipped) = parse_detailed(body)?;
    for e in skipped {
        warn!(error = %e, "webhook call skipped");
    }
    Ok(events)
}

/// Like [`parse_webhook`] but returns the per-call problems instead of logging them.
pub fn parse_detailed(body: &[u8]) -> Result<(Vec<WaEvent>, Vec<WebhookError>), WebhookError> {
    let env: WebhookEnvelope =
        serde_json::from_slice(body).map_err(|e| WebhookError::InvalidJson {
            reason: e.to_string(),
        })?;
    if env.object != model::OBJECT_WABA {
        return Err(WebhookError::UnexpectedObject { object: env.object });
    }
    let mut events = Vec::new();
    let mut skipped = Vec::new();
    for entry in &env.entry {
        for change in &entry.changes {
            let Some(change) = change.valid() else {
                debug!(entry_id = ?entry.id, "unreadable change skipped");
                continue;
            };
            if change.field != model::FIELD_CALLS {
                debug!(field = ?change.field, "non-calls change skipped");
                continue;
            }
            let value = match &change.value {
                Lenient::Valid(v) => v,
                Lenient::Invalid { error, .. } => {
                    skipped.push(WebhookError::InvalidChange {
                        entry_id: entry.id.clone(),
                        reason: error.clone(),
                    });
                    continue;
                }
            };
            value_events(value, &mut events, &mut skipped);
        }
    }
    Ok((events, skipped))
}

/// A calling-quality notice from Meta's `account_update` webhook (§9): a warning (low quality,
/// low pickup rate) or a restriction (calling paused, the call button hidden).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QualityEvent {
    /// The business number concerned.
    pub phone_number: Option<String>,
    /// `ACCOUNT_VIOLATION`, `ACCOUNT_RESTRICTION`, …
    pub event: String,
    /// The violation or restriction type.
    pub kind: String,
    /// When a restriction lifts (Unix seconds), if Meta says.
    pub expiration: Option<u64>,
}

/// The `account_update` notices in an (authenticated) webhook body. Bodies without one cost a
/// substring search; unreadable ones give nothing (they are not calls, and are logged).
pub fn parse_quality_events(body: &[u8]) -> Vec<QualityEvent> {
    let field = model::FIELD_ACCOUNT_UPDATE.as_bytes();
    if !body.windows(field.len()).any(|w| w == field) {
        return vec![];
    }
    let env: model::AccountEnvelope = match serde_json::from_slice(body) {
        Ok(e) => e,
        Err(_) => return vec![],
    };
    if env.object != model::OBJECT_WABA {
        return vec![];
    }
    let mut out = vec![];
    for change in env.entry.iter().flat_map(|e| &e.changes) {
        if change.field != model::FIELD_ACCOUNT_UPDATE {
            continue;
        }
        let update: model::AccountUpdate = match serde_json::from_value(change.value.clone()) {
            Ok(u) => u,
            Err(e) => {
                warn!(error = %e, "account_update change unreadable; skipped");
                continue;
            }
        };
        let event = update.event.clone().unwrap_or_default();
        let mut kinds: Vec<(String, Option<u64>)> = update
            .restriction_info
            .iter()
            .filter_map(|r| r.restriction_type.clone().map(|t| (t, r.expiration)))
            .collect();
        if kinds.is_empty() {
            if let Some(t) = update
                .violation_info
                .as_ref()
                .and_then(|v| v.violation_type.clone())
            {
                kinds.push((t, None));
            }
        }
        for (kind, expiration) in kinds {
            out.push(QualityEvent {
                phone_number: update.phone_number.clone(),
                event: event.clone(),
                kind,
                expiration,
            });
        }
    }
    out
}

/// Counts and logs Meta's calling-quality notices: operators must see them, since a low pickup
/// rate ends with the business's call button hidden (§9).
fn quality_events(body: &[u8]) {
    for q in parse_quality_events(body) {
        let event = names::quality_event_label(&q.event);
        let kind = names::quality_type_label(&q.kind);
        metrics::counter!(names::META_QUALITY_EVENTS, "event" => event, "type" => kind)
            .increment(1);
        let number = q.phone_number.as_deref().map(model::mask_number);
        // Meta's strings, logged with `?` (escaped): nothing from outside goes raw into a line.
        warn!(
            event = ?q.event,
            kind = ?q.kind,
            number = ?number,
            expiration = ?q.expiration,
            "Meta calling-quality notice (account_update): unanswered calls cost the call button"
        );
    }
}

fn errors_of(list: &[Lenient<model::WebhookErrorObject>]) -> Vec<WaErrorInfo> {
    list.iter()
        .filter_map(Lenient::valid)
        .map(WaErrorInfo::from)
        .collect()
}

fn invalid_call<T>(l: &Lenient<T>) -> Option<WebhookError> {
    match l {
        Lenient::Valid(_) => None,
        Lenient::Invalid { error, .. } => Some(WebhookError::InvalidCall {
            call_id: l.raw_id().map(|s| s.chars().take(64).collect()),
            reason: error.clone(),
        }),
    }
}

/// Refuses a call id without Meta's shape, before it is used or logged.
fn checked_id(id: &WaCallId) -> Result<(), WebhookError> {
    WaCallId::check(&id.0).map_err(|reason| WebhookError::InvalidCallId {
        shown: id.0.chars().take(32).collect(),
        len: id.0.len(),
        reason,
    })
}

fn value_events(
    v: &model::ChangeValue,
    events: &mut Vec<WaEvent>,
    skipped: &mut Vec<WebhookError>,
) {
    let phone_number_id = v.metadata.as_ref().and_then(|m| m.phone_number_id.clone());
    let display_number = v
        .metadata
        .as_ref()
        .and_then(|m| m.display_phone_number.clone());
    let contacts: Vec<&model::Contact> = v.contacts.iter().filter_map(Lenient::valid).collect();
    let value_errors = errors_of(&v.errors);
    for call in &v.calls {
        let Lenient::Valid(c) = call else {
            skipped.extend(invalid_call(call));
            continue;
        };
        if let Err(e) = checked_id(&c.id) {
            skipped.push(e);
            continue;
        }
        match &c.event {
            CallEventKind::Connect => {
                match connect_event(c, &phone_number_id, &display_number, &contacts) {
                    Ok(e) => events.push(e),
                    Err(e) => skipped.push(e),
                }
            }
            CallEventKind::Terminate => events.push(WaEvent::CallTerminated {
                call_id: c.id.clone(),
                status: c.status.clone(),
                duration: c.duration,
                start_time: c.start_time,
                end_time: c.end_time,
                errors: match &c.errors {
                    Some(own) => errors_of(own),
                    None => value_errors.clone(),
                },
                biz_opaque_callback_data: c.biz_opaque_callback_data.clone(),
            }),
            CallEventKind::Other(kind) => {
                debug!(call_id = %c.id, event = ?kind, "call event of unknown kind skipped");
            }
        }
    }
    for status in &v.statuses {
        let Lenient::Valid(s) = status else {
            skipped.extend(invalid_call(status));
            continue;
        };
        if let Err(e) = checked_id(&s.id) {
            skipped.push(e);
            continue;
        }
        if s.kind
            .as_deref()
            .is_some_and(|k| !k.eq_ignore_ascii_case("call"))
        {
            debug!(call_id = %s.id, "non-call status skipped");
            continue;
        }
        events.push(WaEvent::CallStatusChanged {
            call_id: s.id.clone(),
            status: s.status.clone(),
            timestamp: s.timestamp,
            recipient_id: s.recipient_id.clone(),
            biz_opaque_callback_data: s.biz_opaque_callback_data.clone(),
            errors: s.errors.as_deref().map(errors_of).unwrap_or_default(),
        });
    }
}

fn connect_event(
    c: &model::Call,
    phone_number_id: &Option<String>,
    display_number: &Option<String>,
    contacts: &[&model::Contact],
) -> Result<WaEvent, WebhookError> {
    let session = c.session.as_ref();
    let sdp = session
        .and_then(|s| s.sdp.clone())
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| WebhookError::MissingSession {
            call_id: c.id.clone(),
        })?;
    match session.and_then(|s| s.sdp_type.as_ref()) {
        Some(SdpType::Offer) => {
            let by_number = contacts
                .iter()
                .find(|k| k.wa_id.is_some() && k.wa_id == c.from);
            let contact = by_number.or(match contacts {
                [only] => Some(only),
                _ => None,
            });
            Ok(WaEvent::CallOffered {
                call_id: c.id.clone(),
                phone_number_id: phone_number_id.clone(),
                // The callee of a user-initiated call is our number too.
                display_phone_number: display_number.clone().or_else(|| c.to.clone()),
                from: c.from.clone(),
                to: c.to.clone(),
                caller_name: contact
                    .and_then(|k| k.profile.as_ref())
                    .and_then(|p| p.name.clone()),
                offer_sdp: sdp,
                timestamp: c.timestamp,
                deeplink_payload: c.deeplink_payload.clone(),
                cta_payload: c.cta_payload.clone(),
                received_at: None,
                agent: None,
                unshared: false,
            })
        }
        Some(SdpType::Answer) => Ok(WaEvent::CallAnswered {
            call_id: c.id.clone(),
            answer_sdp: sdp,
        }),
        other => Err(WebhookError::UnexpectedSdpType {
            call_id: c.id.clone(),
            sdp_type: other.map(|t| t.to_string()),
        }),
    }
}

/// The `X-Hub-Signature-256` value for `body`: `sha256=<hex HMAC-SHA256(app_secret, body)>`.
pub fn sign(app_secret: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(app_secret, body).finalize().into_bytes())
    )
}

fn mac(app_secret: &str, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    m.update(body);
    m
}

/// Checks a signature header against the raw body, in constant time.
pub fn verify_signature(
    app_secret: &str,
    header: Option<&HeaderValue>,
    body: &[u8],
) -> Result<(), WebhookError> {
    let header = header.ok_or(WebhookError::MissingSignature)?;
    let text = header
        .to_str()
        .map_err(|_| WebhookError::MalformedSignature {
            reason: "not ASCII",
        })?;
    let hex_part = text
        .trim()
        .strip_prefix("sha256=")
        .ok_or(WebhookError::MalformedSignature {
            reason: "no sha256= prefix",
        })?;
    if hex_part.len() != 64 {
        return Err(WebhookError::MalformedSignature {
            reason: "not 64 hex digits",
        });
    }
    let expected = hex::decode(hex_part)
        .map_err(|_| WebhookError::MalformedSignature { reason: "not hex" })?;
    mac(app_secret, body)
        .verify_slice(&expected)
        .map_err(|_| WebhookError::SignatureMismatch)
}

/// Key under which a redelivered webhook event is recognised.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DedupKey {
    /// A call event: (call id, event kind).
    Call {
        /// The call.
        call_id: WaCallId,
        /// connect / terminate.
        event: CallEventKind,
    },
    /// A call status: (call id, status).
    Status {
        /// The call.
        call_id: WaCallId,
        /// The status.
        status: CallStatusKind,
    },
}

impl DedupKey {
    /// The key's name among the nodes (`call:<id>:connect`, `status:<id>:RINGING`).
    pub fn shared_name(&self) -> String {
        match self {
            DedupKey::Call { call_id, event } => format!("call:{call_id}:{event}"),
            DedupKey::Status { call_id, status } => format!("status:{call_id}:{status}"),
        }
    }
}

/// What [`Dedup::check`] makes of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Not seen before: forward it.
    New,
    /// Seen already (Meta redelivers when we answer slowly).
    Duplicate,
    /// A connect whose call was already seen terminated (§9: terminate can overtake connect).
    Late,
}

/// `switchboard_webhooks_total` outcomes: what became of each request.
pub const WEBHOOK_OUTCOMES: &[&str] = &[
    "accepted",
    "missing_signature",
    "bad_signature",
    "verification_refused",
    "queue_full",
];

/// `switchboard_webhook_events_total` outcomes: what became of each call event in an
/// authenticated body (`stale`: a connect that came after its call's terminate; `too_old`: a
/// connect older than [`CONNECT_MAX_AGE`]; `unusable_body`: a body that could not be read at
/// all).
pub const EVENT_OUTCOMES: &[&str] = &[
    "forwarded",
    "duplicate",
    "stale",
    "too_old",
    "skipped",
    "unusable_body",
];

/// How old (by its `timestamp`) a `connect` may be when it is processed; an older one is
/// refused, never pre-accepted. Meta retries an unacknowledged webhook for a long time
/// (reference §2.4), but gives the business 30–60 s from the connect to accept the call
/// (§1.2, §7.1) and the caller sees "Not Answered" after that: a connect older than the longest
/// accept window is a late retry or a replay, and answering it can only ring an agent for a
/// call that is already over. The 60 s also covers a few seconds of clock skew against Meta.
pub const CONNECT_MAX_AGE: Duration = Duration::from_secs(60);

/// How long before `now` (wall clock) Meta sent `event`, when it is a user's `connect` with a
/// `timestamp`; `None` otherwise. A timestamp ahead of `now` (clock skew) is age zero.
pub fn connect_age(event: &WaEvent, now: SystemTime) -> Option<Duration> {
    let WaEvent::CallOffered {
        timestamp: Some(sent),
        ..
    } = event
    else {
        return None;
    };
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    Some(Duration::from_secs(now.saturating_sub(sent.0)))
}

fn count_request(outcome: &'static str) {
    metrics::counter!(names::WEBHOOKS, "outcome" => outcome).increment(1);
}

fn count_events(outcome: &'static str, n: u64) {
    if n > 0 {
        metrics::counter!(names::WEBHOOK_EVENTS, "outcome" => outcome).increment(n);
    }
}

/// Remembers which events were delivered, to drop Meta's redeliveries. Sans-IO: time is passed
/// in. Memory is bounded: entries are forgotten after `ttl`, and beyond `capacity` the oldest are
/// evicted first.
#[derive(Debug)]
pub struct Dedup {
    ttl: Duration,
    capacity: usize,
    seen: HashMap<DedupKey, Instant>,
    order: VecDeque<(Instant, DedupKey)>,
}

impl Dedup {
    /// An empty table.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Dedup {
            ttl,
            capacity: capacity.max(1),
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// True if the event with `key` is new and should be forwarded; false for a duplicate, or
    /// for a connect of a call already seen terminated.
    pub fn admit(&mut self, now: Instant, key: DedupKey) -> bool {
        self.check(now, key) == Admission::New
    }

    /// Like [`Dedup::admit`], telling a redelivery from a connect that came after its call's
    /// terminate.
    pub fn check(&mut self, now: Instant, key: DedupKey) -> Admission {
        self.expire(now);
        if self.seen.contains_key(&key) {
            return Admission::Duplicate;
        }
        if let DedupKey::Call {
            call_id,
            event: CallEventKind::Connect,
        } = &key
        {
            let terminated = DedupKey::Call {
                call_id: call_id.clone(),
                event: CallEventKind::Terminate,
            };
            if self.seen.contains_key(&terminated) {
                return Admission::Late;
            }
        }
        self.seen.insert(key.clone(), now);
        self.order.push_back((now, key));
        while self.order.len() > self.capacity {
            self.pop_oldest();
        }
        Admission::New
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) < self.ttl {
                break;
            }
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((_, key)) = self.order.pop_front() {
            self.seen.remove(&key);
        }
    }
}

/// Folds refused webhook requests into at most one log line per interval. Sans-IO: time is
/// passed in, and what to log comes back as a [`RefusalSummary`].
///
/// The first refusal after a quiet interval is reported at once (one bad request is worth
/// seeing promptly); refusals within `interval` of a report are counted, and reported by the
/// first refusal or [`RefusalLog::handle_timeout`] once the interval has passed.
#[derive(Debug)]
pub struct RefusalLog {
    interval: Duration,
    last_report: Option<Instant>,
    unreported: u64,
    first_reason: Option<WebhookError>,
}

/// One log line's worth of refused requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalSummary {
    /// Requests refused since the previous summary.
    pub refused: u64,
    /// Why the first of them was refused.
    pub first_reason: WebhookError,
}

impl RefusalLog {
    /// Nothing refused yet; reports at most once per `interval`.
    pub fn new(interval: Duration) -> Self {
        RefusalLog {
            interval,
            last_report: None,
            unreported: 0,
            first_reason: None,
        }
    }

    /// A request was refused at `now` for `reason`; returns a summary when one is due.
    pub fn handle_refusal(&mut self, now: Instant, reason: WebhookError) -> Option<RefusalSummary> {
        self.unreported += 1;
        self.first_reason.get_or_insert(reason);
        self.handle_timeout(now)
    }

    /// The interval may have passed: returns the summary of unreported refusals if it is due.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<RefusalSummary> {
        // Callers read the clock before taking the lock, so `now` may be a little behind
        // `last_report`; saturating keeps that from counting as a long interval.
        let due = self
            .last_report
            .is_none_or(|at| now.saturating_duration_since(at) >= self.interval);
        if !due {
            return None;
        }
        let summary = self.flush()?;
        // Only a report starts a new interval: a quiet timer tick must not delay the next.
        self.last_report = Some(now);
        Some(summary)
    }

    /// The unreported refusals now, due or not (at shutdown).
    pub fn flush(&mut self) -> Option<RefusalSummary> {
        let first_reason = self.first_reason.take()?;
        let refused = std::mem::take(&mut self.unreported);
        Some(RefusalSummary {
            refused,
            first_reason,
        })
    }
}

fn log_refusals(summary: RefusalSummary, interval: Duration) {
    warn!(
        refused = summary.refused,
        first_reason = %summary.first_reason,
        interval_secs = interval.as_secs_f64(),
        "webhook refused (at most one such line per interval)"
    );
}

/// Tunables of the webhook edge.
#[derive(Debug, Clone)]
pub struct WebhookOptions {
    /// Largest accepted body; larger gets 413.
    pub body_limit: usize,
    /// Authenticated bodies waiting for the processor; beyond this the POST gets 503.
    pub queue_capacity: usize,
    /// How long a delivered event is remembered for de-duplication.
    pub dedup_ttl: Duration,
    /// How many delivered events are remembered at most.
    pub dedup_capacity: usize,
    /// A `connect` older than this (by its `timestamp`) is refused; see [`CONNECT_MAX_AGE`].
    pub connect_max_age: Duration,
    /// At most one log line per this interval reports refused (unsigned, badly signed)
    /// requests, with their count.
    pub refusal_log_interval: Duration,
    /// The nodes' shared state: with it, an event is forwarded only by the node that takes it
    /// first (Meta may deliver a copy to every node behind the load balancer). Which node then
    /// handles it is not the edge's to decide (`calls::dispatch`).
    pub cluster: Option<Cluster>,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        WebhookOptions {
            // A calls webhook is a few KiB (the SDP is most of it); every byte of an unsigned
            // body is held until it is complete and its signature checked.
            body_limit: 256 * 1024,
            queue_capacity: 256,
            dedup_ttl: Duration::from_secs(3600),
            dedup_capacity: 100_000,
            connect_max_age: CONNECT_MAX_AGE,
            refusal_log_interval: Duration::from_secs(10),
            cluster: None,
        }
    }
}

/// Counters of the processor task, returned by [`WebhookProcessor::shutdown`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessorStats {
    /// Authenticated bodies processed.
    pub bodies: u64,
    /// Bodies that could not be parsed at all.
    pub invalid_bodies: u64,
    /// Calls or changes skipped as unusable.
    pub skipped: u64,
    /// Events dropped as duplicates or late connects.
    pub duplicates: u64,
    /// Connects refused as older than the freshness window.
    pub too_old: u64,
    /// Events forwarded to the calls side.
    pub forwarded: u64,
}

/// Counters of the webhook edge, read with [`WebhookState::stats`]; the metrics issue exports
/// them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookStats {
    /// Requests refused: POSTs with no signature or one that does not match the body (401),
    /// and verification handshakes without the verify token (403).
    pub refused: u64,
}

struct Shared {
    app_secret: Secret,
    verify_token: Secret,
    queue: mpsc::Sender<Inbound>,
    body_limit: usize,
    refused: AtomicU64,
    refusals: Arc<Refusals>,
}

/// The refusal log and its interval, shared by the handlers (which feed it) and the processor
/// task (which flushes it on a timer).
#[derive(Debug)]
struct Refusals {
    interval: Duration,
    log: Mutex<RefusalLog>,
}

impl Refusals {
    fn lock(&self) -> MutexGuard<'_, RefusalLog> {
        // No code below panics while holding the lock; if one did, the log's counts are still
        // usable, so carry on with them.
        self.log.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    fn handle_refusal(&self, reason: WebhookError) {
        let now = Instant::now();
        let summary = self.lock().handle_refusal(now, reason);
        if let Some(s) = summary {
            log_refusals(s, self.interval);
        }
    }

    fn handle_timeout(&self) {
        let now = Instant::now();
        let summary = self.lock().handle_timeout(now);
        if let Some(s) = summary {
            log_refusals(s, self.interval);
        }
    }

    fn flush(&self) {
        let summary = self.lock().flush();
        if let Some(s) = summary {
            log_refusals(s, self.interval);
        }
    }
}

/// The router's state: secrets and the queue's sending end. Cheap to clone.
#[derive(Clone)]
pub struct WebhookState {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WebhookState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookState")
            .field("body_limit", &self.shared.body_limit)
            .finish_non_exhaustive()
    }
}

/// Owner of the processor task. Dropping it aborts the task; [`WebhookProcessor::shutdown`]
/// drains what is queued first.
#[derive(Debug)]
pub struct WebhookProcessor {
    task: Option<JoinHandle<ProcessorStats>>,
    stop: Option<oneshot::Sender<()>>,
}

impl WebhookProcessor {
    /// Stops accepting new bodies, processes those already queued, and returns the counters.
    pub async fn shutdown(mut self) -> ProcessorStats {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => ProcessorStats::default(),
        }
    }
}

impl Drop for WebhookProcessor {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl WebhookState {
    /// Spawns the processor task (call inside a Tokio runtime) forwarding to `events`, and
    /// returns the router state and the task's owner.
    pub fn spawn(
        app_secret: Secret,
        verify_token: Secret,
        events: mpsc::Sender<WaEvent>,
        options: WebhookOptions,
    ) -> (WebhookState, WebhookProcessor) {
        let (queue, rx) = mpsc::channel(options.queue_capacity.max(1));
        let (stop_tx, stop_rx) = oneshot::channel();
        let dedup = Dedup::new(options.dedup_ttl, options.dedup_capacity);
        // A zero interval would make the timer below spin.
        let interval = options.refusal_log_interval.max(Duration::from_millis(1));
        let refusals = Arc::new(Refusals {
            interval,
            log: Mutex::new(RefusalLog::new(interval)),
        });
        let shared = options.cluster.map(|c| (c, options.dedup_ttl));
        let task = tokio::spawn(process(
            rx,
            stop_rx,
            events,
            Admitter {
                dedup,
                connect_max_age: options.connect_max_age,
                shared,
                redis_down_until: None,
                unshared: false,
            },
            refusals.clone(),
        ));
        let state = WebhookState {
            shared: Arc::new(Shared {
                app_secret,
                verify_token,
                queue,
                body_limit: options.body_limit,
                refused: AtomicU64::new(0),
                refusals,
            }),
        };
        (
            state,
            WebhookProcessor {
                task: Some(task),
                stop: Some(stop_tx),
            },
        )
    }

    /// The edge's counters so far.
    pub fn stats(&self) -> WebhookStats {
        WebhookStats {
            refused: self.shared.refused.load(Ordering::Relaxed),
        }
    }

    /// Counts a refused request and logs it, folded with the others (see [`RefusalLog`]).
    fn refuse(&self, reason: WebhookError) {
        self.shared.refused.fetch_add(1, Ordering::Relaxed);
        count_request(match reason {
            WebhookError::MissingSignature => "missing_signature",
            WebhookError::VerificationRefused => "verification_refused",
            _ => "bad_signature",
        });
        self.shared.refusals.handle_refusal(reason);
    }
}

/// Who decides whether an event is new: this node's table, then (with several nodes) Redis.
struct Admitter {
    dedup: Dedup,
    /// Connects older than this are refused.
    connect_max_age: Duration,
    shared: Option<(Cluster, Duration)>,
    /// After Redis failed, it is not asked again before this: a burst of webhooks while it is
    /// down is admitted at once rather than each waiting out the command deadline.
    redis_down_until: Option<Instant>,
    /// The last event checked could not be shared (Redis unreachable).
    unshared: bool,
}

/// What reaches the processor: a body Meta signed, and when it arrived.
struct Inbound(Instant, Bytes);

/// How long a failed Redis is left alone by the webhook path (readiness keeps asking).
const REDIS_RETRY: Duration = Duration::from_secs(1);

impl Admitter {
    /// Whether `key` is new. With several nodes and Redis unreachable, a new event is
    /// admitted here and `unshared` set: a new call is then declined (no node can be sure it
    /// takes it alone), while the events of calls in progress carry on.
    async fn check(&mut self, key: DedupKey) -> Admission {
        self.unshared = false;
        let now = Instant::now();
        let local = self.dedup.check(now, key.clone());
        let (Some((cluster, ttl)), Admission::New) = (&self.shared, local) else {
            return local;
        };
        if self.redis_down_until.is_some_and(|t| now < t) {
            self.unshared = true;
            return Admission::New;
        }
        match shared_admission(cluster, &key, *ttl).await {
            Ok(a) => {
                self.redis_down_until = None;
                a
            }
            Err(e) => {
                warn!(error = %e, "shared de-duplication unavailable; this node takes the event");
                self.redis_down_until = Some(Instant::now() + REDIS_RETRY);
                self.unshared = true;
                Admission::New
            }
        }
    }
}

/// The cluster's verdict on an event this node has not seen: late when any node has taken the
/// call's terminate, a duplicate when another node took this very event first. Redis
/// unreachable admits the event here (fail open: a call answered by two nodes is bounded by
/// Meta, which takes one answer per call; a call dropped is not), says so, and readiness is
/// already 503 so the load balancer steers new webhooks to healthy nodes.
async fn shared_admission(
    cluster: &Cluster,
    key: &DedupKey,
    ttl: Duration,
) -> Result<Admission, ClusterError> {
    if let DedupKey::Call {
        call_id,
        event: CallEventKind::Connect,
    } = key
    {
        let terminated = DedupKey::Call {
            call_id: call_id.clone(),
            event: CallEventKind::Terminate,
        };
        if cluster.event_taken(&terminated.shared_name()).await? {
            return Ok(Admission::Late);
        }
    }
    Ok(if cluster.claim_event(&key.shared_name(), ttl).await? {
        Admission::New
    } else {
        debug!(key = ?key, "another node took this webhook event");
        Admission::Duplicate
    })
}

async fn process(
    mut rx: mpsc::Receiver<Inbound>,
    mut stop: oneshot::Receiver<()>,
    out: mpsc::Sender<WaEvent>,
    mut admitter: Admitter,
    refusals: Arc<Refusals>,
) -> ProcessorStats {
    let stats = process_bodies(&mut rx, &mut stop, &out, &mut admitter, &refusals).await;
    // Whatever the processor stopped for, the refusals not yet reported are reported now.
    refusals.flush();
    stats
}

async fn process_bodies(
    rx: &mut mpsc::Receiver<Inbound>,
    stop: &mut oneshot::Receiver<()>,
    out: &mpsc::Sender<WaEvent>,
    admitter: &mut Admitter,
    refusals: &Refusals,
) -> ProcessorStats {
    let mut stats = ProcessorStats::default();
    let mut stopping = false;
    // Reports refusals that came in after the last report once their interval has passed, so
    // a flood that stops is still reported in full. A missed tick needs no catching up.
    let mut refusal_timer = tokio::time::interval(refusals.interval);
    refusal_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let body = if stopping {
            rx.recv().await
        } else {
            tokio::select! {
                _ = &mut *stop => {
                    stopping = true;
                    rx.close();
                    continue;
                }
                _ = refusal_timer.tick() => {
                    refusals.handle_timeout();
                    continue;
                }
                body = rx.recv() => body,
            }
        };
        let Some(Inbound(received, body)) = body else {
            break;
        };
        stats.bodies += 1;
        quality_events(&body);
        let (events, skipped) = match parse_detailed(&body) {
            Ok(parsed) => parsed,
            Err(e) => {
                stats.invalid_bodies += 1;
                count_events("unusable_body", 1);
                warn!(error = %e, bytes = body.len(), "authenticated webhook body unusable");
                continue;
            }
        };
        count_events("skipped", skipped.len() as u64);
        for e in skipped {
            stats.skipped += 1;
            warn!(error = %e, "webhook call skipped");
        }
        for mut event in events {
            if let WaEvent::CallOffered { received_at, .. } = &mut event {
                *received_at = Some(received);
            }
            let span = info_span!("wa_call", call_id = %event.call_id());
            // Before de-duplication: a replay after a restart (the table empty) is refused the
            // same way as a late retry.
            let age = connect_age(&event, SystemTime::now());
            if let Some(age) = age.filter(|a| *a > admitter.connect_max_age) {
                stats.too_old += 1;
                count_events("too_old", 1);
                // Folded like unsigned requests: one captured body replayed in a loop must not
                // become a stream of lines.
                refusals.handle_refusal(WebhookError::ConnectTooOld {
                    call_id: event.call_id().clone(),
                    age_secs: age.as_secs(),
                    max_age_secs: admitter.connect_max_age.as_secs(),
                });
                continue;
            }
            let admission = admitter
                .check(event.dedup_key())
                .instrument(span.clone())
                .await;
            {
                let _enter = span.enter();
                match admission {
                    Admission::New => log_event(&event),
                    Admission::Duplicate => {
                        debug!(key = ?event.dedup_key(), "duplicate webhook event dropped")
                    }
                    Admission::Late => {
                        info!(key = ?event.dedup_key(), "connect after its terminate dropped")
                    }
                }
            }
            if admission != Admission::New {
                stats.duplicates += 1;
                count_events(
                    if admission == Admission::Late {
                        "stale"
                    } else {
                        "duplicate"
                    },
                    1,
                );
                continue;
            }
            if admitter.unshared {
                if let WaEvent::CallOffered { unshared, .. } = &mut event {
                    *unshared = true;
                }
            }
            if out.send(event).await.is_err() {
                warn!("event receiver gone; webhook processor stops");
                return stats;
            }
            stats.forwarded += 1;
            count_events("forwarded", 1);
        }
    }
    stats
}

fn log_event(event: &WaEvent) {
    match event {
        WaEvent::CallOffered { offer_sdp, .. } => {
            info!("call offered");
            debug!(sdp = ?offer_sdp, "offer");
        }
        WaEvent::CallAnswered { answer_sdp, .. } => {
            info!("call answered");
            debug!(sdp = ?answer_sdp, "answer");
        }
        WaEvent::CallTerminated {
            status,
            duration,
            errors,
            ..
        } => {
            let codes: Vec<i64> = errors.iter().map(|e| e.code).collect();
            info!(status = ?status, duration = ?duration, error_codes = ?codes, "call terminated");
        }
        WaEvent::CallStatusChanged { status, .. } => info!(%status, "call status changed"),
    }
}

/// The routes under [`WEBHOOK_PATH`]: GET handshake and POST deliveries, with the body limit.
pub fn router(state: WebhookState) -> Router {
    let limit = state.shared.body_limit;
    Router::new()
        .route(WEBHOOK_PATH, get(verify).post(receive))
        // Refuses a declared Content-Length over the limit with 413 before reading, and stops
        // a body without one as it streams past it.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(limit))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
struct VerifyParams {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

async fn verify(
    State(state): State<WebhookState>,
    params: Result<Query<VerifyParams>, QueryRejection>,
) -> Response {
    let Ok(Query(p)) = params else {
        state.refuse(WebhookError::VerificationRefused);
        return StatusCode::FORBIDDEN.into_response();
    };
    let token_ok = p.verify_token.as_deref().is_some_and(|t| {
        bool::from(
            t.as_bytes()
                .ct_eq(state.shared.verify_token.expose().as_bytes()),
        )
    });
    match (
        p.mode.as_deref() == Some("subscribe") && token_ok,
        p.challenge,
    ) {
        (true, Some(challenge)) => {
            info!("webhook verification handshake accepted");
            (
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                challenge,
            )
                .into_response()
        }
        _ => {
            // As cheap to send as an unsigned POST, so folded into the same log and counter.
            state.refuse(WebhookError::VerificationRefused);
            StatusCode::FORBIDDEN.into_response()
        }
    }
}

async fn receive(State(state): State<WebhookState>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if let Err(e) = verify_signature(
        state.shared.app_secret.expose(),
        headers.get(SIGNATURE_HEADER),
        &body,
    ) {
        state.refuse(e);
        return StatusCode::UNAUTHORIZED;
    }
    enqueue(&state, Inbound(Instant::now(), body))
}

fn enqueue(state: &WebhookState, inbound: Inbound) -> StatusCode {
    match state.shared.queue.try_send(inbound) {
        Ok(()) => {
            count_request("accepted");
            StatusCode::OK
        }
        Err(mpsc::error::TrySendError::Full(_)) => {
            count_request("queue_full");
            warn!("webhook queue full; answering 503 so Meta retries");
            StatusCode::SERVICE_UNAVAILABLE
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            count_request("queue_full");
            warn!("webhook processor stopped; answering 503");
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::whatsapp::sdp::SAMPLE_META_OFFER;

    fn id(s: &str) -> WaCallId {
        WaCallId::from(s)
    }

    fn connect(s: &str) -> DedupKey {
        DedupKey::Call {
            call_id: id(s),
            event: CallEventKind::Connect,
        }
    }

    fn terminate(s: &str) -> DedupKey {
        DedupKey::Call {
            call_id: id(s),
            event: CallEventKind::Terminate,
        }
    }

    #[test]
    fn dedup_drops_duplicates_and_forgets_after_ttl() {
        let t0 = Instant::now();
        let mut d = Dedup::new(Duration::from_secs(3600), 100);
        assert!(d.admit(t0, connect("a")));
        assert!(!d.admit(t0 + Duration::from_secs(10), connect("a")));
        assert!(d.admit(t0 + Duration::from_secs(10), terminate("a")));
        let status = DedupKey::Status {
            call_id: id("a"),
            status: CallStatusKind::Ringing,
        };
        assert!(d.admit(t0, status.clone()));
        assert!(!d.admit(t0 + Duration::from_secs(1), status));
        // After an hour the first connect is forgotten, but the terminate (at +10 s) is not yet.
        let later = t0 + Duration::from_secs(3600);
        assert!(
            !d.admit(later, connect("a")),
            "late connect after terminate"
        );
        assert!(d.admit(later + Duration::from_secs(10), connect("a")));
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn dedup_late_connect_after_terminate_is_dropped() {
        let t0 = Instant::now();
        let mut d = Dedup::new(Duration::from_secs(3600), 100);
        assert!(d.admit(t0, terminate("x")));
        assert!(!d.admit(t0 + Duration::from_secs(5), connect("x")));
        assert!(d.admit(t0 + Duration::from_secs(5), connect("y")));
    }

    #[test]
    fn dedup_capacity_evicts_oldest_first() {
        let t0 = Instant::now();
        let mut d = Dedup::new(Duration::from_secs(3600), 3);
        for (i, c) in ["a", "b", "c", "d"].iter().enumerate() {
            assert!(d.admit(t0 + Duration::from_secs(i as u64), connect(c)));
        }
        assert_eq!(d.len(), 3);
        let t = t0 + Duration::from_secs(10);
        assert!(!d.admit(t, connect("d")));
        assert!(!d.admit(t, connect("c")));
        assert!(
            d.admit(t, connect("a")),
            "a was evicted, so it is new again"
        );
    }

    #[test]
    fn refusals_are_reported_at_most_once_per_interval_with_their_count() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut log = RefusalLog::new(Duration::from_secs(10));
        let missing = WebhookError::MissingSignature;
        let mismatch = WebhookError::SignatureMismatch;
        // The first refusal is reported at once.
        assert_eq!(
            log.handle_refusal(t0, missing.clone()),
            Some(RefusalSummary {
                refused: 1,
                first_reason: missing.clone()
            })
        );
        // A flood within the interval is only counted...
        for i in 1..=1000 {
            assert_eq!(log.handle_refusal(t0 + ms(i), mismatch.clone()), None);
        }
        assert_eq!(log.handle_timeout(t0 + ms(9_999)), None);
        // ...and reported, with its first reason, once the interval has passed.
        assert_eq!(
            log.handle_timeout(t0 + ms(10_000)),
            Some(RefusalSummary {
                refused: 1000,
                first_reason: mismatch.clone()
            })
        );
        // Nothing unreported: the timer has nothing to say.
        assert_eq!(log.handle_timeout(t0 + ms(30_000)), None);
        // The next refusal is due (the last report was 20 s ago), so it is reported alone.
        assert_eq!(
            log.handle_refusal(t0 + ms(30_000), missing.clone()),
            Some(RefusalSummary {
                refused: 1,
                first_reason: missing.clone()
            })
        );
        // A refusal that arrives when its interval has passed carries the ones before it.
        assert_eq!(log.handle_refusal(t0 + ms(31_000), mismatch.clone()), None);
        assert_eq!(
            log.handle_refusal(t0 + ms(40_000), missing.clone()),
            Some(RefusalSummary {
                refused: 2,
                first_reason: mismatch.clone()
            })
        );
        // At shutdown the rest is flushed, due or not; a clock read before the lock (a little
        // behind the last report) is not a long interval.
        assert_eq!(log.handle_refusal(t0 + ms(39_999), missing.clone()), None);
        assert_eq!(
            log.flush(),
            Some(RefusalSummary {
                refused: 1,
                first_reason: missing
            })
        );
        assert_eq!(log.flush(), None);
    }

    #[test]
    fn signature_round_trip_and_rejections() {
        let body = br#"{"object":"x"}"#;
        let good = sign("s3cret", body);
        let hv = |s: &str| HeaderValue::from_str(s).unwrap();
        verify_signature("s3cret", Some(&hv(&good)), body).unwrap();
        verify_signature(
            "s3cret",
            Some(&hv(&good.to_uppercase().replace("SHA256=", "sha256="))),
            body,
        )
        .unwrap();
        assert_eq!(
            verify_signature("s3cret", None, body),
            Err(WebhookError::MissingSignature)
        );
        assert_eq!(
            verify_signature("other", Some(&hv(&good)), body),
            Err(WebhookError::SignatureMismatch)
        );
        assert_eq!(
            verify_signature("s3cret", Some(&hv(&good)), b"{\"object\":\"y\"}"),
            Err(WebhookError::SignatureMismatch)
        );
        for bad in [
            good.replace("sha256=", "sha1="),
            good[..good.len() - 2].to_owned(),
            good.replace(&good[7..9], "zz"),
            "sha256=".to_owned(),
        ] {
            assert!(
                matches!(
                    verify_signature("s3cret", Some(&hv(&bad)), body),
                    Err(WebhookError::MalformedSignature { .. })
                ),
                "{bad}"
            );
        }
    }

    fn envelope(calls: &str) -> String {
        format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"calls",
            "value":{{"metadata":{{"phone_number_id":"42"}},
            "contacts":[{{"profile":{{"name":"Ann"}},"wa_id":"111"}}],
            "errors":[{{"code":138021,"message":"Media receive timeout"}}],
            "calls":[{calls}]}}}}]}}]}}"#
        )
    }

    #[test]
    fn call_ids_without_metas_shape_are_skipped_and_never_shown_whole() {
        let forged = "wacid.A\\n2026-01-01T00:00:00Z  INFO switchboard: forged line";
        let huge = format!("wacid.{}", "A".repeat(900_000));
        let calls: Vec<String> = [forged, huge.as_str(), "wacid.ABGGFjFVU2AfAgo6V-Hc5eCgK5Gh"]
            .iter()
            .map(|id| format!(r#"{{"id":"{id}","event":"terminate","status":"COMPLETED"}}"#))
            .collect();
        let status = r#"{"id":"wacid.S\u0000","type":"call","status":"RINGING"}"#;
        let body = envelope(&calls.join(",")).replace(
            r#""calls":["#,
            &format!(r#""statuses":[{status}],"calls":["#),
        );
        let (events, skipped) = parse_detailed(body.as_bytes()).unwrap();
        let ids: Vec<&str> = events.iter().map(|e| e.call_id().0.as_str()).collect();
        assert_eq!(ids, vec!["wacid.ABGGFjFVU2AfAgo6V-Hc5eCgK5Gh"]);
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        for e in &skipped {
            assert!(matches!(e, WebhookError::InvalidCallId { .. }), "{e:?}");
            let line = e.to_string();
            assert!(!line.contains('\n') && !line.contains('\0'), "{line}");
            assert!(line.len() < 200, "{} bytes", line.len());
        }
        assert!(matches!(
            skipped[1],
            WebhookError::InvalidCallId {
                len: 900_006,
                reason: CallIdError::TooLong { .. },
                ..
            }
        ));
    }

    #[test]
    fn a_connects_age_comes_from_its_timestamp() {
        let sdp = serde_json::to_string(SAMPLE_META_OFFER).unwrap();
        let at = |ts: &str| {
            let body = envelope(&format!(
                r#"{{"id":"wacid.A","event":"connect","timestamp":"{ts}",
                   "session":{{"sdp_type":"offer","sdp":{sdp}}}}}"#
            ));
            parse_webhook(body.as_bytes()).unwrap().remove(0)
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(
            connect_age(&at("1799999940"), now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            connect_age(&at("1768464000"), now),
            Some(Duration::from_secs(31_536_000))
        );
        // Meta's clock ahead of ours: not old.
        assert_eq!(connect_age(&at("1800000005"), now), Some(Duration::ZERO));
        // No timestamp, or not a user's connect: nothing to judge.
        assert_eq!(connect_age(&at("garbage"), now), None);
        let terminate = envelope(r#"{"id":"wacid.T","event":"terminate","timestamp":"5"}"#);
        let ev = parse_webhook(terminate.as_bytes()).unwrap().remove(0);
        assert_eq!(connect_age(&ev, now), None);
    }

    #[test]
    fn offer_becomes_call_offered_with_caller_name() {
        let sdp = serde_json::to_string(SAMPLE_META_OFFER).unwrap();
        let body = envelope(&format!(
            r#"{{"id":"wacid.A","from":"111","to":"222","event":"connect","timestamp":"5",
               "cta_payload":"sales","session":{{"sdp_type":"offer","sdp":{sdp}}}}}"#
        ));
        let ev = parse_webhook(body.as_bytes()).unwrap();
        assert_eq!(
            ev,
            vec![WaEvent::CallOffered {
                call_id: id("wacid.A"),
                phone_number_id: Some("42".into()),
                display_phone_number: Some("222".into()),
                from: Some("111".into()),
                to: Some("222".into()),
                caller_name: Some("Ann".into()),
                offer_sdp: SAMPLE_META_OFFER.into(),
                timestamp: Some(UnixTime(5)),
                deeplink_payload: None,
                cta_payload: Some("sales".into()),
                received_at: None,
                agent: None,
                unshared: false,
            }]
        );
    }

    #[test]
    fn terminate_prefers_per_call_errors_over_value_errors() {
        let body = envelope(
            r#"{"id":"wacid.A","event":"terminate","status":"Failed"},
               {"id":"wacid.B","event":"terminate","status":"completed","duration":7,
                "errors":[{"code":138023,"message":"no media","error_data":{"details":"d"}}]}"#,
        );
        let ev = parse_webhook(body.as_bytes()).unwrap();
        let codes: Vec<(TerminateStatus, Vec<i64>)> = ev
            .iter()
            .map(|e| match e {
                WaEvent::CallTerminated { status, errors, .. } => (
                    status.clone().unwrap(),
                    errors.iter().map(|x| x.code).collect(),
                ),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            codes,
            vec![
                (TerminateStatus::Failed, vec![138021]),
                (TerminateStatus::Completed, vec![138023])
            ]
        );
    }

    #[test]
    fn bad_connect_is_skipped_alone() {
        let body = envelope(
            r#"{"id":"wacid.A","event":"connect"},
               {"id":"wacid.B","event":"connect","session":{"sdp_type":"pranswer","sdp":"v=0"}},
               {"id":"wacid.C","event":"ringing"},
               {"event":"terminate"},
               {"id":"wacid.D","event":"terminate"}"#,
        );
        let (ev, skipped) = parse_detailed(body.as_bytes()).unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].call_id(), &id("wacid.D"));
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        assert_eq!(
            skipped[0],
            WebhookError::MissingSession {
                call_id: id("wacid.A")
            }
        );
        assert!(matches!(skipped[1], WebhookError::UnexpectedSdpType { .. }));
        assert!(matches!(
            skipped[2],
            WebhookError::InvalidCall { call_id: None, .. }
        ));
    }

    #[test]
    fn envelope_errors() {
        assert!(matches!(
            parse_webhook(b"nope"),
            Err(WebhookError::InvalidJson { .. })
        ));
        assert_eq!(
            parse_webhook(br#"{"object":"page","entry":[]}"#),
            Err(WebhookError::UnexpectedObject {
                object: "page".into()
            })
        );
        // A non-calls change with an odd value is skipped, not an error.
        let ok = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[
            {"field":"messages","value":{"statuses":[{"id":1}],"messages":[{"x":1}]}},
            {"field":"calls","value":"garbage"}, 7]}]}"#;
        let (ev, skipped) = parse_detailed(ok).unwrap();
        assert!(ev.is_empty());
        assert_eq!(skipped.len(), 1);
    }

    #[test]
    fn statuses_become_status_events() {
        let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"calls",
            "value":{"statuses":[{"id":"wacid.S","type":"call","status":"ringing","timestamp":"9"},
                                 {"id":"wamid.M","type":"message","status":"read"}]}}]}]}"#;
        let ev = parse_webhook(body).unwrap();
        assert_eq!(ev.len(), 1);
        assert!(matches!(
            &ev[0],
            WaEvent::CallStatusChanged {
                status: CallStatusKind::Ringing,
                timestamp: Some(UnixTime(9)),
                ..
            }
        ));
    }

    fn account_update(value: &str) -> String {
        format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"id":"0","time":1641848059,
            "changes":[{{"field":"account_update","value":{value}}}]}}]}}"#
        )
    }

    #[test]
    fn account_update_quality_notices_are_read_in_metas_shapes() {
        // Meta's warning and enforcement samples for low pickup rates (§9).
        let warning = account_update(
            r#"{"phone_number":"16505552771","event":"ACCOUNT_VIOLATION",
            "violation_info":{"violation_type":"USER_INITIATED_CALLS_LOW_PICKUP_RATE",
            "remediation":"Please identify and address the cause"}}"#,
        );
        assert_eq!(
            parse_quality_events(warning.as_bytes()),
            vec![QualityEvent {
                phone_number: Some("16505552771".into()),
                event: "ACCOUNT_VIOLATION".into(),
                kind: "USER_INITIATED_CALLS_LOW_PICKUP_RATE".into(),
                expiration: None,
            }]
        );
        let hidden = account_update(
            r#"{"phone_number":"16505552771","event":"ACCOUNT_RESTRICTION",
            "restriction_info":[{"restriction_type":
            "RESTRICTED_USER_INITIATED_CALLING_CALL_BUTTON_HIDDEN","remediation":"..."}]}"#,
        );
        let q = parse_quality_events(hidden.as_bytes());
        assert_eq!(q.len(), 1);
        assert_eq!(
            q[0].kind,
            "RESTRICTED_USER_INITIATED_CALLING_CALL_BUTTON_HIDDEN"
        );
        // The 7-day pause names both the violation and the restriction: the restriction counts.
        let paused = account_update(
            r#"{"phone_number":"PN","event":"ACCOUNT_RESTRICTION",
            "violation_info":{"violation_type":"LOW_CALLING_QUALITY"},
            "restriction_info":[{"restriction_type":
            "RESTRICTED_BIZ_INITIATED_AND_USER_INITIATED_CALLING","expiration":1641848057}]}"#,
        );
        let q = parse_quality_events(paused.as_bytes());
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].expiration, Some(1641848057));
        // Calls bodies, other objects and odd values give nothing and never fail.
        assert!(parse_quality_events(envelope("[]").as_bytes()).is_empty());
        assert!(parse_quality_events(b"{\"object\":\"page\",\"account_update\":1}").is_empty());
        assert!(parse_quality_events(account_update("[1,2]").as_bytes()).is_empty());
        assert!(parse_quality_events(b"account_update").is_empty());
    }

    #[test]
    fn phone_numbers_are_masked_for_logs() {
        assert_eq!(model::mask_number("16505552771"), "*******2771");
        assert_eq!(model::mask_number("+1 650 555"), "***0555");
        assert_eq!(model::mask_number("12345"), "**345");
        assert_eq!(model::mask_number(""), "");
    }
}
