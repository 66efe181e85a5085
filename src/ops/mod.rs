//! Operations: the metrics (names, the Prometheus recorder, the once-a-second flush of the
//! owners' counters) and health (`/healthz`, `/readyz`).
//!
//! *Owns*: the metric names and descriptions, the process's one recorder, and the readiness
//! flag. *Does not touch*: any state it reports; it reads the owners' counters through their
//! handles and never sits on a per-packet path (the engine counts in plain integers).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::calls::actor::CallsHandle;
use crate::calls::{Ended, Metric, Outcome, SetupStep};
use crate::ids::QueueId;
use crate::media::EngineHandle;
use crate::media::{LegKind, LegStats};
use crate::store::StoreHandle;

pub mod names;

use names::*;

/// The process's recorder: installed once, shared by every switchboard in the process (tests
/// start several).
pub fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = || {
                let buckets = [
                    (SETUP_WEBHOOK_TO_PRE_ACCEPT, LATENCY_BUCKETS),
                    (SETUP_ANSWER_TO_ACCEPT, LATENCY_BUCKETS),
                    (SETUP_ACCEPT_TO_FIRST_PACKET, LATENCY_BUCKETS),
                    (SETUP_ANSWER_TO_CALLER_PACKET, LATENCY_BUCKETS),
                    (GRAPH_DURATION, LATENCY_BUCKETS),
                    (EVENT_LAG, EVENT_LAG_BUCKETS),
                    (MEDIA_LEG_LOSS, LOSS_BUCKETS),
                    (MEDIA_LEG_JITTER, NETWORK_BUCKETS),
                    (MEDIA_LEG_RTT, NETWORK_BUCKETS),
                ];
                buckets
                    .into_iter()
                    .try_fold(PrometheusBuilder::new(), |b, (name, values)| {
                        b.set_buckets_for_metric(Matcher::Full(name.to_owned()), values)
                    })
                    .expect("the bucket lists are not empty")
            };
            let handle = match builder().install_recorder() {
                Ok(h) => h,
                // Another recorder is installed (a host program's): keep ours local.
                Err(_) => builder().build_recorder().handle(),
            };
            describe();
            gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            handle
        })
        .clone()
}

/// What the flush and the health checks read.
#[derive(Clone)]
pub struct Ops {
    /// The media engine.
    pub media: EngineHandle,
    /// The call centre.
    pub calls: CallsHandle,
    /// Call records.
    pub store: StoreHandle,
    /// The per-number cap.
    pub cap: usize,
    /// Set when switchboard starts draining: not ready any more.
    pub draining: Arc<AtomicBool>,
    /// The engine's busy time at the last flush, and when: the busy ratio is the difference.
    pub busy: Arc<Mutex<Option<(Instant, Duration)>>>,
    /// The nodes' shared state, when there are several nodes: Redis must answer.
    pub cluster: Option<crate::cluster::Cluster>,
}

/// The agent states, as the `state` label spells them.
const AGENT_STATES: [&str; 5] = ["available", "away", "ringing", "on_call", "wrap_up"];

impl Ops {
    /// Copies every owner's counters into the recorder, once a second, until the media engine
    /// stops.
    pub async fn flush_forever(self) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            if !self.flush().await {
                return;
            }
        }
    }

    /// One flush; false once the engine is gone.
    pub async fn flush(&self) -> bool {
        let Ok(c) = self.media.counters().await else {
            return false;
        };
        let e = &c.engine;
        gauge!(MEDIA_LEGS).set(c.legs as f64);
        for (leg, packets, bytes) in [
            (
                "whatsapp",
                e.forwarded_packets.whatsapp,
                e.forwarded_bytes.whatsapp,
            ),
            (
                "browser",
                e.forwarded_packets.browser,
                e.forwarded_bytes.browser,
            ),
            ("trunk", e.forwarded_packets.trunk, e.forwarded_bytes.trunk),
        ] {
            counter!(MEDIA_FORWARDED_PACKETS, "leg" => leg).absolute(packets);
            counter!(MEDIA_FORWARDED_BYTES, "leg" => leg).absolute(bytes);
        }
        counter!(MEDIA_GENERATED, "kind" => "silence").absolute(e.silence_sent);
        counter!(MEDIA_GENERATED, "kind" => "hold").absolute(e.hold_sent);
        counter!(MEDIA_GENERATED, "kind" => "dtmf").absolute(e.dtmf_reports_sent);
        for (reason, n) in [
            ("on_hold", e.dropped_on_hold),
            ("unknown_payload_type", e.dropped_unknown_pt),
            ("not_started", e.dropped_not_started),
            ("stale", e.dropped_stale),
            ("during_dtmf", e.dropped_during_dtmf),
            ("unrouted", e.dropped_unrouted),
            ("inbox_full", c.crossings_dropped),
        ] {
            counter!(MEDIA_DROPPED, "reason" => reason).absolute(n);
        }
        for (outcome, n) in [
            ("received", e.datagrams_in),
            ("unmatched", e.datagrams_unmatched),
            ("malformed", e.datagrams_malformed),
            ("unauthenticated_stun", e.stun_unauthenticated),
        ] {
            counter!(MEDIA_DATAGRAMS, "outcome" => outcome).absolute(n);
        }
        for (reason, n) in [
            ("no_free_port", e.refused_no_port),
            ("too_many_legs", e.refused_too_many_legs),
            ("too_many_streams", e.refused_too_many_streams),
        ] {
            counter!(MEDIA_OFFERS_REFUSED, "reason" => reason).absolute(n);
        }
        for (reason, by) in [
            ("connect_timeout", e.failed_connect_timeout),
            ("silent", e.failed_silent),
            ("internal", e.failed_internal),
        ] {
            counter!(MEDIA_LEGS_FAILED, "leg" => "whatsapp", "reason" => reason)
                .absolute(by.whatsapp);
            counter!(MEDIA_LEGS_FAILED, "leg" => "browser", "reason" => reason)
                .absolute(by.browser);
            counter!(MEDIA_LEGS_FAILED, "leg" => "trunk", "reason" => reason).absolute(by.trunk);
        }
        counter!(MEDIA_SEND_ERRORS).absolute(c.send_errors);
        counter!(MEDIA_EVENTS_DROPPED).absolute(c.events_dropped + e.events_dropped);
        counter!(MEDIA_BUSY_SECONDS).absolute(c.busy.as_secs());
        counter!(MEDIA_CROSSED).absolute(e.crossed_in);
        gauge!(MEDIA_SHARDS).set(c.shards as f64);
        self.busy_ratio(c.busy, c.shards);

        let floor = self.calls.floor().borrow().clone();
        gauge!(CALLS_ACTIVE).set(floor.calls.len() as f64);
        gauge!(CALLS_CAP).set(self.cap as f64);
        let draining = self.draining.load(Ordering::Relaxed);
        gauge!(DRAINING).set(if draining { 1.0 } else { 0.0 });
        for (q, waiting) in &floor.queues {
            let oldest = waiting
                .first()
                .map_or(0.0, |w| w.since.elapsed().as_secs_f64());
            gauge!(QUEUE_WAITING, "queue" => q.0.clone()).set(waiting.len() as f64);
            gauge!(QUEUE_OLDEST_WAIT, "queue" => q.0.clone()).set(oldest);
        }
        for (q, level) in &floor.service {
            gauge!(QUEUE_SERVICE_LEVEL, "queue" => q.0.clone()).set(level.ratio());
        }
        for state in AGENT_STATES {
            let n = floor
                .agents
                .iter()
                .filter(|a| a.presence.name() == state)
                .count();
            gauge!(AGENTS, "state" => state).set(n as f64);
        }
        true
    }

    /// The media threads' busy share since the last flush, averaged over the shards.
    fn busy_ratio(&self, busy: Duration, shards: usize) {
        let mut last = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if let Some((at, before)) = *last {
            let wall = now.saturating_duration_since(at).as_secs_f64();
            if wall > 0.0 {
                let worked = busy.saturating_sub(before).as_secs_f64();
                let threads = shards.max(1) as f64;
                gauge!(MEDIA_BUSY_RATIO).set((worked / wall / threads).min(1.0));
            }
        }
        *last = Some((now, busy));
    }

    /// Gives every series with a known label set its first value, so that dashboards and
    /// alerts see zeros rather than nothing before the first event.
    pub fn register(&self, queues: &[QueueId], service_level_target: Duration) {
        gauge!(SERVICE_LEVEL_TARGET).set(service_level_target.as_secs_f64());
        for q in queues {
            let q = q.0.clone();
            for name in [
                CALLS_OFFERED,
                CALLS_ANSWERED,
                CALLS_WITHIN_TARGET,
                RING_NO_ANSWER,
            ] {
                counter!(name, "queue" => q.clone()).absolute(0);
            }
            for outcome in crate::store::Outcome::ALL {
                counter!(CALLS_ENDED, "queue" => q.clone(), "outcome" => outcome.as_str())
                    .absolute(0);
            }
            for reason in crate::calls::RejectReason::ALL {
                counter!(CALLS_REJECTED, "queue" => q.clone(), "reason" => reason.as_str())
                    .absolute(0);
            }
            counter!(CALLS_FAILED, "queue" => q.clone(), "meta_code" => "none").absolute(0);
            gauge!(QUEUE_SERVICE_LEVEL, "queue" => q.clone()).set(1.0);
        }
        for step in [
            SETUP_WEBHOOK_TO_PRE_ACCEPT,
            SETUP_ANSWER_TO_ACCEPT,
            SETUP_ACCEPT_TO_FIRST_PACKET,
            SETUP_ANSWER_TO_CALLER_PACKET,
        ] {
            let _ = histogram!(step);
        }
        for action in ["pre_accept", "accept", "reject", "terminate"] {
            let _ = histogram!(GRAPH_DURATION, "action" => action);
            for outcome in ["ok", "error"] {
                counter!(GRAPH_REQUESTS, "action" => action, "outcome" => outcome).absolute(0);
            }
            for code in ["http", "network", "timeout"] {
                counter!(GRAPH_ERRORS, "action" => action, "code" => code).absolute(0);
            }
        }
        for leg in ["whatsapp", "browser"] {
            for name in [MEDIA_LEG_LOSS, MEDIA_LEG_JITTER, MEDIA_LEG_RTT] {
                let _ = histogram!(name, "leg" => leg);
            }
        }
        for outcome in crate::whatsapp::webhook::WEBHOOK_OUTCOMES {
            counter!(WEBHOOKS, "outcome" => *outcome).absolute(0);
        }
        for outcome in crate::whatsapp::webhook::EVENT_OUTCOMES {
            counter!(WEBHOOK_EVENTS, "outcome" => *outcome).absolute(0);
        }
        // The notices that matter most (§9), so that an alert on their increase sees a zero.
        for (event, kind) in [
            ("account_violation", "user_initiated_calls_low_pickup_rate"),
            (
                "account_restriction",
                "restricted_user_initiated_calling_call_button_hidden",
            ),
            ("account_violation", "low_calling_quality"),
            (
                "account_restriction",
                "restricted_biz_initiated_and_user_initiated_calling",
            ),
        ] {
            counter!(META_QUALITY_EVENTS, "event" => event, "type" => kind).absolute(0);
        }
        gauge!(MEDIA_BUSY_RATIO).set(0.0);
        for result in ["ok", "failed"] {
            counter!(EVENTS_WRITTEN, "result" => result).absolute(0);
        }
        for result in ["delivered", "retry", "failed"] {
            counter!(EVENT_DELIVERIES, "result" => result).absolute(0);
        }
        counter!(EVENT_ENDPOINTS_DISABLED).absolute(0);
    }

    /// Ready to take calls: not draining, the media engine answers, the store answers, and
    /// Redis answers when there are several nodes.
    async fn ready(&self) -> Result<(), &'static str> {
        if self.draining.load(Ordering::Relaxed) {
            return Err("draining");
        }
        if !self.calls.is_running() {
            return Err("the call machines stopped");
        }
        let limit = Duration::from_secs(1);
        match tokio::time::timeout(limit, self.media.counters()).await {
            Ok(Ok(_)) => {}
            _ => return Err("the media engine does not answer"),
        }
        match tokio::time::timeout(limit, self.store.check_writable()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err("the call records cannot be written"),
            Err(_) => return Err("the call records do not answer"),
        }
        if let Some(cluster) = &self.cluster {
            if cluster.ping().await.is_err() {
                return Err("the shared state (Redis) does not answer");
            }
        }
        Ok(())
    }
}

/// Records what the call machines report.
pub fn record(m: Metric) {
    match m {
        Metric::Offered { queue } => counter!(CALLS_OFFERED, "queue" => queue.0).increment(1),
        Metric::Rejected { queue, reason } => {
            counter!(CALLS_REJECTED, "queue" => queue.0, "reason" => reason.as_str()).increment(1)
        }
        Metric::Answered {
            queue,
            within_target,
        } => {
            counter!(CALLS_ANSWERED, "queue" => queue.0.clone()).increment(1);
            if within_target {
                counter!(CALLS_WITHIN_TARGET, "queue" => queue.0).increment(1);
            }
        }
        Metric::RingNoAnswer { queue } => counter!(RING_NO_ANSWER, "queue" => queue.0).increment(1),
        Metric::Setup { step, took } => {
            let name = match step {
                SetupStep::WebhookToPreAccept => SETUP_WEBHOOK_TO_PRE_ACCEPT,
                SetupStep::AnswerToAccept => SETUP_ANSWER_TO_ACCEPT,
                SetupStep::AcceptToFirstPacket => SETUP_ACCEPT_TO_FIRST_PACKET,
                SetupStep::AnswerToFirstCallerPacket => SETUP_ANSWER_TO_CALLER_PACKET,
                SetupStep::CallBackToConnect => SETUP_CALLBACK_TO_CONNECT,
                SetupStep::CalleeAnswerToFirstPacket => SETUP_CALLEE_ANSWER_TO_PACKET,
            };
            histogram!(name).record(took.as_secs_f64());
        }
        Metric::Permission { outcome } => {
            counter!(PERMISSION_REQUESTS, "outcome" => outcome).increment(1)
        }
        Metric::CallBack { outcome, code } => {
            let code = code.map_or("none", meta_code_label);
            counter!(CALLBACKS, "outcome" => outcome, "code" => code).increment(1)
        }
    }
}

/// `n` call events written to the outbox (`ok`), or lost with a refused write.
pub fn record_events_written(n: usize, ok: bool) {
    let result = if ok { "ok" } else { "failed" };
    counter!(EVENTS_WRITTEN, "result" => result).increment(n as u64);
}

/// Records a call's end: by outcome, and a failure by the last Meta error code seen.
pub fn record_ended(e: &Ended) {
    counter!(CALLS_ENDED, "queue" => e.queue.0.clone(), "outcome" => e.outcome.as_str())
        .increment(1);
    if e.outcome == Outcome::Failed {
        let code = e.meta_errors.last().map_or("none", |c| meta_code_label(*c));
        counter!(CALLS_FAILED, "queue" => e.queue.0.clone(), "meta_code" => code).increment(1);
    }
}

/// One statistics report of a leg, into the quality histograms.
pub fn observe_leg_stats(kind: LegKind, stats: &LegStats) {
    let leg = kind.name();
    if let Some(loss) = stats.loss_rx {
        histogram!(MEDIA_LEG_LOSS, "leg" => leg).record(f64::from(loss));
    }
    if let Some(j) = stats.jitter {
        histogram!(MEDIA_LEG_JITTER, "leg" => leg).record(j.as_secs_f64());
    }
    if let Some(rtt) = stats.rtt {
        histogram!(MEDIA_LEG_RTT, "leg" => leg).record(rtt.as_secs_f64());
    }
}

/// `/healthz` (alive), `/readyz` (ready to take calls).
pub fn health_router(ops: Ops) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(ops)
}

/// Alive.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "`ok`")))]
async fn healthz() -> &'static str {
    "ok"
}

/// Ready to take calls (not draining, records writable, media engine running).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "`ready`"), (status = 503, description = "`not ready: why`")))]
async fn readyz(State(ops): State<Ops>) -> impl IntoResponse {
    match ops.ready().await {
        Ok(()) => (StatusCode::OK, "ready".to_owned()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")),
    }
}

/// `/metrics`, for the separate metrics listener.
pub fn metrics_router(handle: PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    handle.render(),
                )
            }
        }),
    )
}

/// The health routes in the OpenAPI document ([`crate::http::openapi`]).
#[derive(utoipa::OpenApi)]
#[openapi(paths(healthz, readyz))]
pub(crate) struct HealthDoc;
