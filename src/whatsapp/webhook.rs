//! The webhook edge: `GET`/`POST /webhooks/whatsapp`, signature checking, typed [`WaEvent`]s.
//!
//! Flow: the POST handler checks `X-Hub-Signature-256` over the raw bytes, `try_send`s the body
//! into a bounded queue and answers 200 (503 if the queue is full, so Meta retries). One
//! processor task ([`WebhookState::spawn`]) owns the queue's receiving end and the [`Dedup`]
//! table: it parses ([`parse_webhook`]), drops duplicates and late connects, and forwards
//! [`WaEvent`]s to the app's channel. No locks.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, info_span, warn};

use super::model::{
    self, CallEventKind, CallStatusKind, Lenient, SdpType, TerminateStatus, UnixTime,
    WebhookEnvelope,
};
use crate::config::Secret;
use crate::ids::WaCallId;

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
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// What a webhook told us, typed. No JSON inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaEvent {
    /// A user calls us: Meta's SDP offer (user-initiated connect).
    CallOffered {
        /// The call.
        call_id: WaCallId,
        /// Our business number's id (from `metadata`).
        phone_number_id: Option<String>,
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
                debug!(entry_id = %entry.id, "unreadable change skipped");
                continue;
            };
            if change.field != model::FIELD_CALLS {
                debug!(field = %change.field, "non-calls change skipped");
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
            call_id: l.raw_id().map(|s| s.chars().take(200).collect()),
            reason: error.clone(),
        }),
    }
}

fn value_events(
    v: &model::ChangeValue,
    events: &mut Vec<WaEvent>,
    skipped: &mut Vec<WebhookError>,
) {
    let phone_number_id = v.metadata.as_ref().and_then(|m| m.phone_number_id.clone());
    let contacts: Vec<&model::Contact> = v.contacts.iter().filter_map(Lenient::valid).collect();
    let value_errors = errors_of(&v.errors);
    for call in &v.calls {
        let Lenient::Valid(c) = call else {
            skipped.extend(invalid_call(call));
            continue;
        };
        match &c.event {
            CallEventKind::Connect => match connect_event(c, &phone_number_id, &contacts) {
                Ok(e) => events.push(e),
                Err(e) => skipped.push(e),
            },
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
                debug!(call_id = %c.id, event = %kind, "call event of unknown kind skipped");
            }
        }
    }
    for status in &v.statuses {
        let Lenient::Valid(s) = status else {
            skipped.extend(invalid_call(status));
            continue;
        };
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
                from: c.from.clone(),
                to: c.to.clone(),
                caller_name: contact
                    .and_then(|k| k.profile.as_ref())
                    .and_then(|p| p.name.clone()),
                offer_sdp: sdp,
                timestamp: c.timestamp,
                deeplink_payload: c.deeplink_payload.clone(),
                cta_payload: c.cta_payload.clone(),
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
        self.expire(now);
        if self.seen.contains_key(&key) {
            return false;
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
                return false;
            }
        }
        self.seen.insert(key.clone(), now);
        self.order.push_back((now, key));
        while self.order.len() > self.capacity {
            self.pop_oldest();
        }
        true
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
}

impl Default for WebhookOptions {
    fn default() -> Self {
        WebhookOptions {
            body_limit: 1024 * 1024,
            queue_capacity: 256,
            dedup_ttl: Duration::from_secs(3600),
            dedup_capacity: 100_000,
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
    /// Events forwarded.
    pub forwarded: u64,
}

struct Shared {
    app_secret: Secret,
    verify_token: Secret,
    queue: mpsc::Sender<Bytes>,
    body_limit: usize,
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
        let task = tokio::spawn(process(rx, stop_rx, events, dedup));
        let state = WebhookState {
            shared: Arc::new(Shared {
                app_secret,
                verify_token,
                queue,
                body_limit: options.body_limit,
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
}

async fn process(
    mut rx: mpsc::Receiver<Bytes>,
    mut stop: oneshot::Receiver<()>,
    out: mpsc::Sender<WaEvent>,
    mut dedup: Dedup,
) -> ProcessorStats {
    let mut stats = ProcessorStats::default();
    let mut stopping = false;
    loop {
        let body = if stopping {
            rx.recv().await
        } else {
            tokio::select! {
                _ = &mut stop => {
                    stopping = true;
                    rx.close();
                    continue;
                }
                body = rx.recv() => body,
            }
        };
        let Some(body) = body else { break };
        stats.bodies += 1;
        let (events, skipped) = match parse_detailed(&body) {
            Ok(parsed) => parsed,
            Err(e) => {
                stats.invalid_bodies += 1;
                warn!(error = %e, bytes = body.len(), "authenticated webhook body unusable");
                continue;
            }
        };
        for e in skipped {
            stats.skipped += 1;
            warn!(error = %e, "webhook call skipped");
        }
        for event in events {
            let span = info_span!("wa_call", call_id = %event.call_id());
            let admitted = {
                let _enter = span.enter();
                let admitted = dedup.admit(Instant::now(), event.dedup_key());
                if admitted {
                    log_event(&event);
                } else {
                    debug!(key = ?event.dedup_key(), "duplicate or late webhook event dropped");
                }
                admitted
            };
            if !admitted {
                stats.duplicates += 1;
                continue;
            }
            if out.send(event).await.is_err() {
                warn!("event receiver gone; webhook processor stops");
                return stats;
            }
            stats.forwarded += 1;
        }
    }
    stats
}

fn log_event(event: &WaEvent) {
    match event {
        WaEvent::CallOffered { offer_sdp, .. } => {
            info!("call offered");
            debug!(sdp = %offer_sdp, "offer");
        }
        WaEvent::CallAnswered { answer_sdp, .. } => {
            info!("call answered");
            debug!(sdp = %answer_sdp, "answer");
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
        .layer(DefaultBodyLimit::max(limit))
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
            warn!("webhook verification handshake refused");
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
        warn!(error = %e, "webhook refused");
        return StatusCode::UNAUTHORIZED;
    }
    match state.shared.queue.try_send(body) {
        Ok(()) => StatusCode::OK,
        Err(mpsc::error::TrySendError::Full(_)) => {
            warn!("webhook queue full; answering 503 so Meta retries");
            StatusCode::SERVICE_UNAVAILABLE
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
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
                from: Some("111".into()),
                to: Some("222".into()),
                caller_name: Some("Ann".into()),
                offer_sdp: SAMPLE_META_OFFER.into(),
                timestamp: Some(UnixTime(5)),
                deeplink_payload: None,
                cta_payload: Some("sales".into()),
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
}
