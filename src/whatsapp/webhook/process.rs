//! The edge's moving parts: the routes (`GET` handshake, signed `POST`), the bounded queue, the
//! processor task that parses, de-duplicates (with several nodes, across them in Redis) and
//! forwards, and the folded log of refused requests.
//!
//! *Does not touch*: which node or agent takes a call (`calls::dispatch` decides).

use crate::clock::now;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, info_span, warn, Instrument};

use super::model::CallEventKind;
use crate::cluster::{Cluster, ClusterError};
use crate::config::Secret;
use crate::ops::names;

use super::*;

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

pub(super) fn count_request(outcome: &'static str) {
    metrics::counter!(names::WEBHOOKS, "outcome" => outcome).increment(1);
}

pub(super) fn count_events(outcome: &'static str, n: u64) {
    if n > 0 {
        metrics::counter!(names::WEBHOOK_EVENTS, "outcome" => outcome).increment(n);
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
        let now = now();
        let summary = self.lock().handle_refusal(now, reason);
        if let Some(s) = summary {
            log_refusals(s, self.interval);
        }
    }

    fn handle_timeout(&self) {
        let now = now();
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
        let at = now();
        let local = self.dedup.check(at, key.clone());
        let (Some((cluster, ttl)), Admission::New) = (&self.shared, local) else {
            return local;
        };
        if self.redis_down_until.is_some_and(|t| at < t) {
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
                self.redis_down_until = Some(now() + REDIS_RETRY);
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
            let span = match event.call() {
                Some(call_id) => info_span!("wa_call", call_id = %call_id),
                None => info_span!("wa_message"),
            };
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
        WaEvent::PermissionReply {
            user,
            response,
            permanent,
            expires_at,
            source,
            ..
        } => info!(
            user = %super::model::mask_number(user),
            response = response.as_str(),
            permanent,
            expires_at = ?expires_at.map(|t| t.0),
            source = source.as_deref().unwrap_or(""),
            "call permission reply"
        ),
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

/// Meta's verification handshake (reference §2).
#[utoipa::path(get, path = "/webhooks/whatsapp", tag = "meta",
    params(("hub.mode" = String, Query), ("hub.verify_token" = String, Query), ("hub.challenge" = String, Query)),
    responses((status = 200, description = "the challenge, as text"), (status = 403, description = "wrong token")))]
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

/// Meta's webhooks, signed with the app secret (`X-Hub-Signature-256`).
#[utoipa::path(post, path = "/webhooks/whatsapp", tag = "meta",
    request_body(content = Object, description = "Meta's webhook envelope (reference §3)"),
    responses((status = 200, description = "taken"), (status = 401, description = "unsigned or badly signed"),
              (status = 400, description = "unreadable"), (status = 413, description = "too large"),
              (status = 503, description = "too busy: Meta retries")))]
async fn receive(State(state): State<WebhookState>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if let Err(e) = verify_signature(
        state.shared.app_secret.expose(),
        headers.get(SIGNATURE_HEADER),
        &body,
    ) {
        state.refuse(e);
        return StatusCode::UNAUTHORIZED;
    }
    enqueue(&state, Inbound(now(), body))
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

/// The webhook's part of the OpenAPI document (`crate::http::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(verify, receive))]
pub(crate) struct WebhookDoc;

#[cfg(test)]
mod tests {
    use super::*;

    use tower::ServiceExt;

    use crate::whatsapp::simulator::{connect_webhook, SimulatorConfig};
    use crate::whatsapp::webhook::sign;

    /// POSTs `body`, signed, to the webhook route, in process.
    async fn post(router: &Router, body: &[u8]) -> StatusCode {
        let request = axum::http::Request::post(super::super::WEBHOOK_PATH)
            .header(SIGNATURE_HEADER, sign("secret", body))
            .body(axum::body::Body::from(body.to_vec()))
            .unwrap();
        router.clone().oneshot(request).await.unwrap().status()
    }

    #[tokio::test(start_paused = true)]
    async fn a_redelivery_is_dropped_within_the_ttl_and_taken_again_after_it() {
        let (events_tx, mut events) = mpsc::channel(16);
        let options = WebhookOptions {
            dedup_ttl: Duration::from_secs(60),
            // The bodies' timestamps are the wall clock's; simulated time does not age them.
            connect_max_age: Duration::from_secs(3600),
            ..WebhookOptions::default()
        };
        let (state, processor) = WebhookState::spawn(
            Secret::new("secret"),
            Secret::new("token"),
            events_tx,
            options,
        );
        let router = router(state);
        let cfg = SimulatorConfig::default();
        let body = |id: &str| connect_webhook(&cfg, &id.into(), "15551234567", "Caller", "v=0");
        let forwarded = |e: Option<WaEvent>| e.expect("forwarded").call_id().0.clone();

        assert_eq!(post(&router, &body("wacid.A")).await, StatusCode::OK);
        assert_eq!(forwarded(events.recv().await), "wacid.A");
        // Meta retries 59 s later: acknowledged, not forwarded. The next event is the marker
        // that the retry was processed (the processor keeps the order bodies came in).
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(post(&router, &body("wacid.A")).await, StatusCode::OK);
        assert_eq!(post(&router, &body("wacid.B")).await, StatusCode::OK);
        assert_eq!(forwarded(events.recv().await), "wacid.B");
        // Past the TTL the event is new again to this node (the connect's age guards it then).
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(post(&router, &body("wacid.A")).await, StatusCode::OK);
        assert_eq!(forwarded(events.recv().await), "wacid.A");
        let stats = processor.shutdown().await;
        assert_eq!((stats.forwarded, stats.duplicates), (3, 1));
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
}
