//! The HTTP edge: assembles the axum router (Meta's webhook, and in the sandbox the controls of
//! the simulator) and turns errors into responses.
//!
//! *Owns*: routes and the mapping of errors to status codes, and in the sandbox the cap on
//! simulated calls in progress and the simulated customers who answer the business's own calls
//! ([`Sandbox`]). *Does not touch*: any other state; handlers hold handles to the components
//! that own state.

pub mod admin;
pub mod cors;
pub mod nodes;
pub mod openapi;
pub mod serve;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use base64::prelude::{Engine as _, BASE64_STANDARD};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::ids::WaCallId;
use crate::media::ogg::OggError;
use crate::signaling::auth::{self, AuthHandle};
use crate::whatsapp::simulator::{
    CallPhase, CallSpec, CalleeSpec, CallerAudio, Outbound, Pickup, SimError, SimulatedCall,
    Simulator,
};
use crate::whatsapp::webhook::{self, WebhookState};

/// Errors of the HTTP edge, each with its status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The simulator could not place the call.
    #[error("simulator: {0}")]
    Simulator(#[from] SimError),
    /// A request field is out of range.
    #[error("invalid request: {0}")]
    Invalid(&'static str),
    /// As many simulated calls as allowed are in progress.
    #[error(
        "too many simulated calls: {max} in progress, the most allowed \
         (SWITCHBOARD_SANDBOX_MAX_CALLS); hang one up or wait for one to end"
    )]
    TooManyCalls {
        /// The cap.
        max: usize,
    },
    /// No simulated call in progress has this id.
    #[error("no simulated call {call_id:?} in progress")]
    UnknownCall {
        /// The id asked for.
        call_id: String,
    },
    /// The simulated caller hung up but the call had not ended in time.
    #[error("simulated call {call_id:?} did not end within {secs} s of hanging up")]
    HangUpTimedOut {
        /// The call.
        call_id: String,
        /// How long we waited.
        secs: u64,
    },
    /// The audio sent is not a usable Ogg/Opus file.
    #[error("invalid request: audio: {0}")]
    Audio(#[from] OggError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Invalid(_) | ApiError::Audio(_) => StatusCode::UNPROCESSABLE_ENTITY,
            // Asked for what this build cannot do: the request's fault.
            ApiError::Simulator(SimError::NoTones) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Simulator(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooManyCalls { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::UnknownCall { .. } => StatusCode::NOT_FOUND,
            ApiError::HangUpTimedOut { .. } => StatusCode::GATEWAY_TIMEOUT,
        };
        if let ApiError::TooManyCalls { .. } = self {
            // Counted in `SandboxStats`; a stream of them must not become a stream of lines.
            tracing::debug!(error = %self, %status, "request refused");
        } else {
            tracing::warn!(error = %self, %status, "request failed");
        }
        (
            status,
            Json(ErrorBody {
                error: self.to_string(),
            }),
        )
            .into_response()
    }
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

/// The signed-in person's own 20 latest call records (any role).
#[utoipa::path(get, path = "/api/calls/mine", tag = "records",
    security(("session" = [])),
    responses((status = 200, description = "`{\"calls\": [CallRecord…], \"next\": …}`"),
              (status = 401, description = "not signed in"), (status = 503, description = "records unavailable")))]
async fn mine(
    who: auth::Authenticated,
    State(store): State<crate::store::StoreHandle>,
) -> Response {
    let query = crate::store::CallQuery {
        agent: Some(who.person_id.0.clone()),
        limit: Some(20),
        ..Default::default()
    };
    match store.list(query).await {
        Ok(page) => Json(page).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "listing a person's calls failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(ErrorBody {
                    error: "call records are unavailable".into(),
                }),
            )
                .into_response()
        }
    }
}

/// `GET /api/calls/mine`: the signed-in person's own 20 latest call records (any role), for the
/// agent page's "Recent calls".
pub fn my_calls(store: crate::store::StoreHandle, auth: AuthHandle) -> Router {
    #[derive(Clone, axum::extract::FromRef)]
    struct Mine {
        store: crate::store::StoreHandle,
        auth: AuthHandle,
    }
    Router::new()
        .route("/api/calls/mine", axum::routing::get(mine))
        .with_state(Mine { store, auth })
}

/// `inner`, answered only for a signed-in supervisor (401 without a sign-in, 403 for an agent).
pub fn supervisors_only(inner: Router, auth: AuthHandle) -> Router {
    // A route layer: unmatched paths stay 404 for everyone.
    inner.route_layer(axum::middleware::from_fn_with_state(
        auth,
        require_supervisor,
    ))
}

async fn require_supervisor(
    State(auth): State<AuthHandle>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::extract::FromRequestParts;
    let (mut parts, body) = req.into_parts();
    match auth::RequireSupervisor::from_request_parts(&mut parts, &auth).await {
        Ok(auth::RequireSupervisor(who)) => {
            // What the supervisor may see: their own account's.
            let slug = crate::accounts::account_of(&who.person_id.0).to_owned();
            parts
                .extensions
                .insert(crate::store::http::AccountScope(slug));
            next.run(axum::extract::Request::from_parts(parts, body))
                .await
        }
        Err(e) => e.into_response(),
    }
}

/// The whole router. The sandbox routes exist only when `sandbox` is given.
pub fn router(webhook_state: WebhookState, auth: AuthHandle, sandbox: Option<Sandbox>) -> Router {
    let mut r = webhook::router(webhook_state).merge(auth::router(auth));
    if let Some(sandbox) = sandbox {
        r = r.merge(
            Router::new()
                .route("/sandbox/calls", post(place_call))
                .route("/sandbox/calls/{call_id}", delete(hang_up))
                .route("/sandbox/missed-calls", post(place_missed_call))
                // An Ogg file of a few minutes, base64: refused up front when declared larger.
                .layer(tower_http::limit::RequestBodyLimitLayer::new(
                    SANDBOX_BODY_MAX,
                ))
                .with_state(sandbox),
        );
    }
    r
}

/// Largest body of `POST /sandbox/calls` (axum's default body limit, now declared).
const SANDBOX_BODY_MAX: usize = 2 * 1024 * 1024;

/// How long `DELETE /sandbox/calls/{id}` waits for the call to end: Meta's terminate webhook
/// is delivered with a few retries first.
const HANG_UP_WAIT: Duration = Duration::from_secs(15);

/// How long the sandbox's simulated customer's phone rings before they answer a call-back.
pub const CALLEE_RINGS_FOR: Duration = Duration::from_millis(1500);

/// How the sandbox's simulated customers answer the business's own calls unless told otherwise
/// ([`Sandbox::set_callee`]): the phone rings [`CALLEE_RINGS_FOR`], they pick up, play the
/// built-in melody and never hang up first.
pub fn sandbox_callee() -> CalleeSpec {
    CalleeSpec {
        ring_for: CALLEE_RINGS_FOR,
        pickup: Pickup::Answer,
        audio: CallerAudio::default(),
        hang_up_after: None,
    }
}

/// The sandbox's controls: the simulator, a cap on simulated calls in progress, and how the
/// simulated customers answer the business's own calls (call-backs). Each simulated call is a
/// media peer on this machine, so a stream of requests must not start a stream of peers. Cheap
/// to clone.
///
/// A call — placed through `POST /sandbox/calls`, or a call-back a simulated customer took up
/// ([`Sandbox::answer_call_backs`]) — holds one of `max_calls` slots until it has ended (Meta's
/// terminate webhook sent). The slot lives in the call's entry in `calls`; whoever sees the end
/// first removes the entry (a task per call that waits for it, or the hang-up handler), and with
/// it the slot. The table is behind a std `Mutex` held only to insert or remove, never across
/// an `.await`.
#[derive(Debug, Clone)]
pub struct Sandbox {
    sim: Simulator,
    max_calls: usize,
    slots: Arc<Semaphore>,
    calls: Arc<Mutex<HashMap<WaCallId, InProgress>>>,
    refused: Arc<AtomicU64>,
    /// How the simulated customers answer call-backs; `None`: they leave them to whoever reads
    /// [`Simulator::next_outbound`].
    callee: Arc<watch::Sender<Option<CalleeSpec>>>,
}

#[derive(Debug)]
struct InProgress {
    call: SimulatedCall,
    _slot: OwnedSemaphorePermit,
}

/// Counters of the sandbox's controls, read with [`Sandbox::stats`]; the metrics issue exports
/// them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SandboxStats {
    /// Simulated calls placed and not yet ended.
    pub in_progress: u64,
    /// Requests refused with 429 because `in_progress` was at the cap.
    pub refused_over_limit: u64,
}

impl Sandbox {
    /// Controls over `sim` allowing `max_calls` simulated calls at once.
    pub fn new(sim: Simulator, max_calls: NonZeroUsize) -> Sandbox {
        Sandbox {
            sim,
            max_calls: max_calls.get(),
            slots: Arc::new(Semaphore::new(max_calls.get())),
            calls: Arc::new(Mutex::new(HashMap::new())),
            refused: Arc::new(AtomicU64::new(0)),
            callee: Arc::new(watch::Sender::new(Some(sandbox_callee()))),
        }
    }

    /// How the simulated customers answer the business's calls from now on
    /// ([`sandbox_callee`] until told otherwise). `None`: they no longer pick up by themselves,
    /// and the calls wait for [`Simulator::next_outbound`] (a test playing the customer).
    pub fn set_callee(&self, spec: Option<CalleeSpec>) {
        self.callee.send_replace(spec);
    }

    /// A simulated call in progress: placed through the sandbox, or a call-back its simulated
    /// customer took up.
    pub fn simulated_call(&self, call_id: &WaCallId) -> Option<SimulatedCall> {
        self.calls().get(call_id).map(|c| c.call.clone())
    }

    /// Takes up every call the business places (a call-back's Graph `connect`) as the called
    /// customer, as [`Sandbox::set_callee`] says; each holds a slot as a placed call does, and
    /// with none free the customer declines. Runs until its task is cancelled (the app does at
    /// shutdown); each customer's own task ends with their call.
    pub async fn answer_call_backs(self) {
        let mut callee = self.callee.subscribe();
        loop {
            let Some(spec) = callee.borrow_and_update().clone() else {
                // Nobody picks up here: the calls wait in the simulator's queue. The sender
                // lives in `self`, so this only returns at a change.
                let _ = callee.changed().await;
                continue;
            };
            let outbound = tokio::select! {
                // A change first: a test that takes the customer's part from now on must find
                // the queue no longer read here.
                biased;
                _ = callee.changed() => continue,
                o = self.sim.next_outbound(Duration::MAX) => o,
            };
            let Some(outbound) = outbound else {
                // The simulator's dispatcher has stopped: no call will come.
                return;
            };
            self.pick_up(outbound, spec).await;
        }
    }

    /// One simulated customer takes up `call` as `spec` says, holding a slot until it ends.
    async fn pick_up(&self, call: Outbound, spec: CalleeSpec) {
        let slot = self.slots.clone().try_acquire_owned().ok();
        let spec = match slot {
            Some(_) => spec,
            None => {
                tracing::warn!(
                    call_id = %call.call_id,
                    max = self.max_calls,
                    "too many simulated calls in progress: the simulated customer declines the \
                     call-back (SWITCHBOARD_SANDBOX_MAX_CALLS)"
                );
                // No media peer: declining costs nothing to hold.
                CalleeSpec {
                    ring_for: Duration::ZERO,
                    pickup: Pickup::Reject,
                    ..spec
                }
            }
        };
        match self.sim.answer_outbound(call, spec).await {
            Ok(taken) => {
                if let Some(slot) = slot {
                    self.track(taken, slot);
                }
            }
            Err(e) => tracing::warn!(error = %e, "the simulated customer could not take the call"),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> SandboxStats {
        let free = self.slots.available_permits();
        SandboxStats {
            in_progress: self.max_calls.saturating_sub(free) as u64,
            refused_over_limit: self.refused.load(Ordering::Relaxed),
        }
    }

    fn calls(&self) -> MutexGuard<'_, HashMap<WaCallId, InProgress>> {
        // Nothing panics while holding the lock; if something did, the table is still a valid
        // map, so carry on with it.
        self.calls
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    async fn place(&self, spec: CallSpec) -> Result<SimulatedCall, ApiError> {
        let slot = self.slots.clone().try_acquire_owned().map_err(|_| {
            self.refused.fetch_add(1, Ordering::Relaxed);
            ApiError::TooManyCalls {
                max: self.max_calls,
            }
        })?;
        // If placing fails, the slot is dropped here and is free again.
        let call = self.sim.place_call(spec).await?;
        self.track(call.clone(), slot);
        Ok(call)
    }

    /// Keeps `call` in the table with its `slot` until it ends.
    fn track(&self, call: SimulatedCall, slot: OwnedSemaphorePermit) {
        self.calls().insert(
            call.call_id.clone(),
            InProgress {
                call: call.clone(),
                _slot: slot,
            },
        );
        // Frees the slot when the call ends. The task needs no owner to stop it: it ends with
        // the call, or when the simulator's call task is gone (its phase sender dropped).
        let this = self.clone();
        tokio::spawn(async move {
            call.wait_for(Duration::MAX, is_ended).await;
            this.calls().remove(&call.call_id);
        });
    }

    /// Places a call whose caller hangs up as soon as switchboard has it waiting for an agent
    /// (its `pre_accept` came, or its `accept` into the queue), before anyone can answer it: a
    /// caller lost while waiting, which a queue with call-backs on turns into a call-back task.
    /// Returns once the call has ended: its id and Meta's terminate status.
    async fn place_missed(&self, spec: CallSpec) -> Result<(WaCallId, String), ApiError> {
        let call = self.place(spec).await?;
        // Still `Ringing` only until switchboard has handled the connect webhook: a hang-up
        // before that would end a call it never had.
        let status = match call
            .wait_for(HANG_UP_WAIT, |p| *p != CallPhase::Ringing)
            .await
        {
            // Declined at once (nobody staffed, or the queue declines): lost all the same.
            Some(CallPhase::Ended { status, .. }) => status,
            _ => self.end(&call).await?,
        };
        Ok((call.call_id, status))
    }

    /// Hangs up a call in progress and waits for its end; returns Meta's terminate status.
    async fn hang_up(&self, call_id: WaCallId) -> Result<String, ApiError> {
        let call = self
            .simulated_call(&call_id)
            .ok_or_else(|| ApiError::UnknownCall {
                // The id comes from the URL; keep an absurd one out of the log.
                call_id: call_id.0.chars().take(64).collect(),
            })?;
        self.end(&call).await
    }

    /// The simulated WhatsApp user of `call` hangs up; Meta's terminate status once it ended.
    async fn end(&self, call: &SimulatedCall) -> Result<String, ApiError> {
        call.hang_up().await;
        let ended = call.wait_for(HANG_UP_WAIT, is_ended).await;
        // Free the slot before answering, so a call placed right after this answer is taken.
        self.calls().remove(&call.call_id);
        match ended {
            Some(CallPhase::Ended { status, .. }) => Ok(status),
            _ => Err(ApiError::HangUpTimedOut {
                call_id: call.call_id.0.clone(),
                secs: HANG_UP_WAIT.as_secs(),
            }),
        }
    }
}

fn is_ended(p: &CallPhase) -> bool {
    matches!(p, CallPhase::Ended { .. })
}

/// Body of `POST /sandbox/calls`; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceCall {
    /// The caller's number.
    pub from: Option<String>,
    /// The caller's name.
    pub name: Option<String>,
    /// A test tone for the caller to play, Hz (50–4000); only builds with the `tones` feature
    /// make tones (others answer 422).
    pub tone_hz: Option<f64>,
    /// An Ogg/Opus file (mono or stereo, 20 ms frames), base64, for the caller to play in a
    /// loop. With neither this nor `tone_hz` the caller plays the built-in melody.
    pub audio_ogg_base64: Option<String>,
    /// Seconds until the caller hangs up (0: never).
    pub hang_up_after_secs: Option<u64>,
}

impl PlaceCall {
    /// The caller's number and name, checked, onto `spec`.
    fn caller(
        from: Option<String>,
        name: Option<String>,
        spec: &mut CallSpec,
    ) -> Result<(), ApiError> {
        if let Some(from) = from {
            if from.is_empty() || from.len() > 20 || !from.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ApiError::Invalid("from must be up to 20 digits"));
            }
            spec.from = from;
        }
        if let Some(name) = name {
            spec.name = name.chars().take(64).collect();
        }
        Ok(())
    }
}

/// Body of `POST /sandbox/missed-calls`; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceMissedCall {
    /// The caller's number (the call-back task's customer); by default a new one each time,
    /// `1555` and seven random digits (one customer has one call-back task at a time).
    pub from: Option<String>,
    /// The caller's name.
    pub name: Option<String>,
}

/// Answer of `POST /sandbox/missed-calls`: the call has ended.
#[derive(Debug, Serialize, Deserialize)]
pub struct MissedCall {
    /// Meta's call id.
    pub call_id: String,
    /// The caller's number, digits.
    pub from: String,
    /// The status of Meta's terminate webhook (COMPLETED: the caller hung up, or switchboard
    /// declined the call at once).
    pub status: String,
}

/// Answer of `POST /sandbox/calls`.
#[derive(Debug, Serialize, Deserialize)]
pub struct PlacedCall {
    /// Meta's call id of the simulated call.
    pub call_id: String,
}

/// Answer of `DELETE /sandbox/calls/{call_id}`: the call has ended.
#[derive(Debug, Serialize, Deserialize)]
pub struct EndedCall {
    /// Meta's call id.
    pub call_id: String,
    /// The status of Meta's terminate webhook (COMPLETED, FAILED).
    pub status: String,
}

/// The sandbox only: the simulated Meta calls switchboard.
#[utoipa::path(post, path = "/sandbox/calls", tag = "sandbox",
    request_body(content = Option<Object>, description = "`{\"from\"?, \"name\"?, \"tone_hz\"?, \"audio_ogg_base64\"?, \"hang_up_after_secs\"?}`"),
    responses((status = 200, description = "`{\"call_id\"}`"), (status = 400, description = "refused"),
              (status = 429, description = "too many simulated calls")))]
async fn place_call(
    State(sandbox): State<Sandbox>,
    body: Option<Json<PlaceCall>>,
) -> Result<Json<PlacedCall>, ApiError> {
    let req = body.map(|Json(b)| b).unwrap_or_default();
    let mut spec = CallSpec::default();
    match (req.tone_hz, req.audio_ogg_base64) {
        (Some(_), Some(_)) => {
            return Err(ApiError::Invalid(
                "give tone_hz or audio_ogg_base64, not both",
            ))
        }
        (Some(hz), None) => {
            if !(50.0..=4000.0).contains(&hz) {
                return Err(ApiError::Invalid("tone_hz must be between 50 and 4000"));
            }
            spec.audio = CallerAudio::Tone { hz };
        }
        (None, Some(b64)) => {
            let bytes = BASE64_STANDARD
                .decode(b64.trim())
                .map_err(|_| ApiError::Invalid("audio_ogg_base64 is not base64"))?;
            spec.audio = CallerAudio::from_ogg(&bytes)?;
        }
        (None, None) => {}
    }
    PlaceCall::caller(req.from, req.name, &mut spec)?;
    if let Some(secs) = req.hang_up_after_secs {
        spec.hang_up_after = (secs > 0).then(|| Duration::from_secs(secs.min(24 * 3600)));
    }
    let call = sandbox.place(spec).await?;
    Ok(Json(PlacedCall {
        call_id: call.call_id.0.clone(),
    }))
}

/// The sandbox only: a simulated WhatsApp user calls and hangs up while waiting for an agent
/// (as soon as switchboard has pre-accepted the call or accepted it into its queue, before any
/// agent can answer). A queue with call-backs on (the sandbox's default queue has them) makes it
/// a call-back task for a free agent. Answers once the call has ended.
#[utoipa::path(post, path = "/sandbox/missed-calls", tag = "sandbox",
    request_body(content = Option<Object>, description = "`{\"from\"?, \"name\"?}`"),
    responses((status = 200, description = "`{\"call_id\", \"from\", \"status\"}`: the call has ended"),
              (status = 422, description = "refused"), (status = 429, description = "too many simulated calls"),
              (status = 504, description = "the call did not end in time")))]
async fn place_missed_call(
    State(sandbox): State<Sandbox>,
    body: Option<Json<PlaceMissedCall>>,
) -> Result<Json<MissedCall>, ApiError> {
    let req = body.map(|Json(b)| b).unwrap_or_default();
    let mut spec = CallSpec {
        from: format!("1555{:07}", rand::random::<u32>() % 10_000_000),
        hang_up_after: None,
        ..CallSpec::default()
    };
    PlaceCall::caller(req.from, req.name, &mut spec)?;
    let from = spec.from.clone();
    let (call_id, status) = sandbox.place_missed(spec).await?;
    Ok(Json(MissedCall {
        call_id: call_id.0,
        from,
        status,
    }))
}

/// The sandbox only: the simulated caller hangs up.
#[utoipa::path(delete, path = "/sandbox/calls/{call_id}", tag = "sandbox",
    params(("call_id" = String, Path)),
    responses((status = 200, description = "`{\"call_id\", \"status\"}`"), (status = 400, description = "not a call id"),
              (status = 404, description = "no such simulated call")))]
async fn hang_up(
    State(sandbox): State<Sandbox>,
    Path(call_id): Path<String>,
) -> Result<Json<EndedCall>, ApiError> {
    // From the URL, without authentication: refused before it is looked up or logged.
    let id = WaCallId::parse(&call_id).map_err(|_| {
        ApiError::Invalid("call id must be up to 256 letters, digits or . _ - + / =")
    })?;
    let status = sandbox.hang_up(id).await?;
    Ok(Json(EndedCall { call_id, status }))
}

/// These routes' part of the OpenAPI document ([`openapi`]).
#[derive(utoipa::OpenApi)]
#[openapi(paths(mine, place_call, hang_up, place_missed_call))]
pub(crate) struct HttpDoc;
