//! Operations: the metrics (names, the Prometheus recorder, the once-a-second flush of the
//! owners' counters) and health (`/healthz`, `/readyz`).
//!
//! *Owns*: the metric names and descriptions, the process's one recorder, and the readiness
//! flag. *Does not touch*: any state it reports; it reads the owners' counters through their
//! handles and never sits on a per-packet path (the engine counts in plain integers).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics::{counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::calls::actor::CallsHandle;
use crate::media::EngineHandle;
use crate::store::StoreHandle;
use crate::whatsapp::webhook::WebhookState;

/// Calls that ended, by queue and outcome (`answered`, `abandoned`, `declined`, `timed_out`,
/// `failed`).
pub const CALLS_ENDED: &str = "switchboard_calls_ended_total";
/// Calls offered by Meta (duplicates not counted).
pub const CALLS_OFFERED: &str = "switchboard_calls_offered_total";
/// Calls rejected at once because the business number had its cap of calls in progress.
pub const CALLS_REJECTED_AT_CAPACITY: &str = "switchboard_calls_rejected_at_capacity_total";
/// Calls in progress now.
pub const CALLS_ACTIVE: &str = "switchboard_calls_active";
/// The configured cap of calls in progress per business number.
pub const CALLS_CAP: &str = "switchboard_calls_per_number_cap";
/// Calls waiting in each queue now.
pub const QUEUE_WAITING: &str = "switchboard_queue_waiting_calls";
/// Seconds the oldest waiting call of each queue has waited.
pub const QUEUE_OLDEST_WAIT: &str = "switchboard_queue_oldest_wait_seconds";
/// Signed-in agents by state.
pub const AGENTS: &str = "switchboard_agents";
/// Media legs alive.
pub const MEDIA_LEGS: &str = "switchboard_media_legs";
/// RTP packets forwarded from one leg to another.
pub const RTP_FORWARDED: &str = "switchboard_media_rtp_forwarded_packets_total";
/// Packets the engine made itself, by kind (`silence`, `hold`, `dtmf`).
pub const RTP_GENERATED: &str = "switchboard_media_generated_packets_total";
/// Datagrams received, and those dropped by reason.
pub const DATAGRAMS: &str = "switchboard_media_datagrams_total";
/// Offers the engine refused, by reason.
pub const OFFERS_REFUSED: &str = "switchboard_media_offers_refused_total";
/// Webhook requests refused (bad or missing signature, bad verification token).
pub const WEBHOOKS_REFUSED: &str = "switchboard_webhooks_refused_total";

/// The process's recorder: installed once, shared by every switchboard in the process (tests
/// start several).
pub fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = match PrometheusBuilder::new().install_recorder() {
                Ok(h) => h,
                // Another recorder is installed (a host program's): keep ours local.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            };
            describe();
            handle
        })
        .clone()
}

fn describe() {
    describe_counter!(CALLS_ENDED, "Calls that ended, by queue and outcome.");
    describe_counter!(
        CALLS_OFFERED,
        "Calls offered by Meta (duplicates not counted)."
    );
    describe_counter!(
        CALLS_REJECTED_AT_CAPACITY,
        "Calls rejected at once: the business number had its cap of calls in progress."
    );
    describe_gauge!(CALLS_ACTIVE, "Calls in progress.");
    describe_gauge!(
        CALLS_CAP,
        "The configured cap of calls in progress per business number."
    );
    describe_gauge!(QUEUE_WAITING, "Calls waiting in each queue.");
    describe_gauge!(
        QUEUE_OLDEST_WAIT,
        "Seconds the oldest waiting call of each queue has waited."
    );
    describe_gauge!(AGENTS, "Signed-in agents by state.");
    describe_gauge!(MEDIA_LEGS, "Media legs alive.");
    describe_counter!(
        RTP_FORWARDED,
        "RTP packets forwarded from one leg to another."
    );
    describe_counter!(
        RTP_GENERATED,
        "Packets the engine made itself, by kind (silence, hold, dtmf)."
    );
    describe_counter!(DATAGRAMS, "Datagrams received, and dropped by reason.");
    describe_counter!(OFFERS_REFUSED, "Offers the engine refused, by reason.");
    describe_counter!(WEBHOOKS_REFUSED, "Webhook requests refused.");
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
    /// The webhook edge.
    pub webhook: WebhookState,
    /// The per-number cap.
    pub cap: usize,
    /// Set when switchboard starts draining: not ready any more.
    pub draining: Arc<AtomicBool>,
}

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
        counter!(RTP_FORWARDED).absolute(e.rtp_forwarded);
        counter!(RTP_GENERATED, "kind" => "silence").absolute(e.silence_sent);
        counter!(RTP_GENERATED, "kind" => "hold").absolute(e.hold_sent);
        counter!(RTP_GENERATED, "kind" => "dtmf").absolute(e.dtmf_reports_sent);
        counter!(DATAGRAMS, "outcome" => "received").absolute(e.datagrams_in);
        counter!(DATAGRAMS, "outcome" => "unmatched").absolute(e.datagrams_unmatched);
        counter!(DATAGRAMS, "outcome" => "malformed").absolute(e.datagrams_malformed);
        counter!(DATAGRAMS, "outcome" => "unauthenticated_stun").absolute(e.stun_unauthenticated);
        counter!(OFFERS_REFUSED, "reason" => "no_free_port").absolute(e.refused_no_port);
        counter!(OFFERS_REFUSED, "reason" => "too_many_legs").absolute(e.refused_too_many_legs);
        counter!(OFFERS_REFUSED, "reason" => "too_many_streams")
            .absolute(e.refused_too_many_streams);
        counter!(WEBHOOKS_REFUSED).absolute(self.webhook.stats().refused);

        let floor = self.calls.floor().borrow().clone();
        counter!(CALLS_OFFERED).absolute(floor.counters.offered);
        counter!(CALLS_REJECTED_AT_CAPACITY).absolute(floor.counters.rejected_at_capacity);
        gauge!(CALLS_ACTIVE).set(floor.calls.len() as f64);
        gauge!(CALLS_CAP).set(self.cap as f64);
        for (q, waiting) in &floor.queues {
            let oldest = waiting
                .first()
                .map_or(0.0, |w| w.since.elapsed().as_secs_f64());
            gauge!(QUEUE_WAITING, "queue" => q.0.clone()).set(waiting.len() as f64);
            gauge!(QUEUE_OLDEST_WAIT, "queue" => q.0.clone()).set(oldest);
        }
        for state in ["available", "away", "ringing", "on_call", "wrap_up"] {
            let n = floor
                .agents
                .iter()
                .filter(|a| a.presence.name() == state)
                .count();
            gauge!(AGENTS, "state" => state).set(n as f64);
        }
        true
    }

    /// Ready to take calls: not draining, the media engine answers, the store answers.
    async fn ready(&self) -> Result<(), &'static str> {
        if self.draining.load(Ordering::Relaxed) {
            return Err("draining");
        }
        let limit = Duration::from_secs(1);
        match tokio::time::timeout(limit, self.media.counters()).await {
            Ok(Ok(_)) => {}
            _ => return Err("the media engine does not answer"),
        }
        match tokio::time::timeout(limit, self.store.live_calls()).await {
            Ok(Ok(_)) => {}
            _ => return Err("the call records do not answer"),
        }
        Ok(())
    }
}

/// `/healthz` (alive), `/readyz` (ready to take calls).
pub fn health_router(ops: Ops) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(ops)
}

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
