//! [`FakeGraph`]: a fake `POST /{version}/{phone_number_id}/calls` that checks requests the way
//! Meta does and answers in Graph's shapes.
//!
//! State design: one `std::sync::Mutex<Book>` held only for the synchronous decision about one
//! request (never across an `.await`), as in mini-redis's `db.rs`. Requests are handled in the
//! order they take the lock; each is recorded before its response is sent, so a test that has
//! its response can read [`FakeGraph::requests`] without waiting.
//!
//! Checks, in order: injected faults ([`FakeGraph::fail_next`]); bearer token (401, code 190);
//! phone number id (400, code 100); JSON shape (400, code 100 with `error_data.details`); the
//! call's state (unknown id, already completed, already in progress); for pre_accept/accept the
//! SDP rules of [`crate::whatsapp::sdp::check_answer`] against the registered offer; for accept
//! the byte-identity with the pre_accept SDP.
//!
//! It also takes `POST …/messages` (call permission requests: their shape, then Meta's 138017
//! for a user with a permanent permission and 138009 for a second request within a day) and
//! `POST …/settings` (`callback_permission_status`), after the same faults, token and number
//! checks. How each simulated user answers a request is decided when it is taken
//! ([`FakeGraph::on_permission_request`]) and reported as
//! [`FakeGraphEvent::PermissionRequested`], which the simulator turns into the reply webhook.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::config::Secret;
use crate::ids::WaCallId;
use crate::whatsapp::model::{
    CallAction, CallPermissions, CallRef, CallRequest, CallResponse, ErrorData, GraphErrorEnvelope,
    GraphErrorObject, MessageContact, MessageRef, MessageRequest, MessageResponse, Permission,
    PermissionAction, PermissionStatus, SdpType, SettingsRequest, UnixTime,
    INTERACTIVE_PERMISSION_REQUEST, MESSAGE_INTERACTIVE, MESSAGE_TEMPLATE, MESSAGING_PRODUCT,
    RECIPIENT_INDIVIDUAL, SETTING_DISABLED, SETTING_ENABLED,
};
use crate::whatsapp::sdp;

use super::permission::Reply;

/// Capacity of the event stream; events beyond it (nobody reading) are dropped and logged.
pub const EVENT_CAPACITY: usize = 256;

/// Details Meta gives when accept's SDP differs from pre_accept's.
pub const SDP_MISMATCH_DETAILS: &str =
    "SDP answer provided in accept does not match the SDP answer given in the Pre-Accept endpoint";

/// What the fake accepted, for the simulated caller to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeGraphEvent {
    /// A valid pre_accept: the caller can start ICE/DTLS with this answer.
    PreAccepted {
        /// The call.
        call_id: WaCallId,
        /// The business's answer.
        sdp: String,
    },
    /// A valid accept: the call is connected.
    Accepted {
        /// The call.
        call_id: WaCallId,
        /// The business's answer.
        sdp: String,
    },
    /// The business rejected the call.
    Rejected {
        /// The call.
        call_id: WaCallId,
    },
    /// The business terminated the call.
    Terminated {
        /// The call.
        call_id: WaCallId,
    },
    /// The business started a call.
    Connected {
        /// The new call's id.
        call_id: WaCallId,
        /// Who is called.
        to: String,
        /// The business's offer.
        sdp: String,
    },
    /// The business asked a user for call permission, and Meta took the request.
    PermissionRequested {
        /// The business number asking.
        phone_number_id: String,
        /// The user asked.
        user: String,
        /// The request's `wamid.…` (what the reply's `context.id` names).
        wamid: String,
        /// How the user answers ([`FakeGraph::on_permission_request`]).
        reply: Reply,
    },
}

impl FakeGraphEvent {
    /// The call the event is about; `None` for a permission request.
    pub fn call_id(&self) -> Option<&WaCallId> {
        match self {
            FakeGraphEvent::PreAccepted { call_id, .. }
            | FakeGraphEvent::Accepted { call_id, .. }
            | FakeGraphEvent::Rejected { call_id }
            | FakeGraphEvent::Terminated { call_id }
            | FakeGraphEvent::Connected { call_id, .. } => Some(call_id),
            FakeGraphEvent::PermissionRequested { .. } => None,
        }
    }
}

/// One request as the fake saw it, with the answer it gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// The business number in the path.
    pub phone_number_id: String,
    /// The action, if the body named one.
    pub action: Option<CallAction>,
    /// The call id, if the body had one.
    pub call_id: Option<WaCallId>,
    /// The HTTP status answered.
    pub status: u16,
    /// The Graph error code answered, if any.
    pub error_code: Option<i64>,
    /// The raw body (lossy UTF-8).
    pub body: String,
}

#[derive(Debug)]
enum CallState {
    Offered { offer: String },
    PreAccepted { offer: String, sdp: String },
    Accepted,
    Outbound,
    Ended,
}

#[derive(Debug)]
struct Fault {
    remaining: usize,
    status: StatusCode,
    code: i64,
}

#[derive(Debug)]
struct Book {
    calls: HashMap<WaCallId, CallState>,
    /// Numbers of other businesses served ([`FakeGraph::add_number`]), each with the only token
    /// it takes.
    tokens: HashMap<String, Secret>,
    /// The latest [`LOG_CAP`] requests: a sandbox left running for days must not grow.
    log: VecDeque<RecordedRequest>,
    /// Requests recorded since the start, including those the log no longer holds.
    recorded: usize,
    faults: VecDeque<Fault>,
    next_call: u64,
    next_trace: u64,
    /// How long each answer is held back (a slow Graph).
    delay: Duration,
    /// Each user's call permission ([`FakeGraph::set_permission`]); others have none.
    permissions: HashMap<String, crate::whatsapp::model::CallPermissions>,
    /// When each number's recent `call_permissions` requests came, for Meta's 5-a-second limit.
    permission_checks: HashMap<String, VecDeque<std::time::Instant>>,
    /// `call_permissions` requests refused with 613 (over the limit).
    permission_throttled: usize,
    /// How each user answers a permission request ([`FakeGraph::on_permission_request`]).
    replies: HashMap<String, Reply>,
    /// How every other user answers one, and the permission they have until they are asked
    /// ([`FakeGraph::on_permission_request_by_default`]).
    default_reply: Reply,
    /// When each user was last sent a permission request, for Meta's limit (138009).
    permission_requests: HashMap<String, std::time::Instant>,
    /// `callback_permission_status` as last set; `None` until it is.
    callback_permission: Option<bool>,
    next_message: u64,
}

/// How long Meta makes the business wait between two permission requests to one user (the
/// sample limit of reference §4.6: one a day).
pub const PERMISSION_REQUEST_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// Meta's code for a permission request over the limit for this user (reference §7.2).
pub const PERMISSION_REQUEST_LIMIT: i64 = 138009;
/// Meta's code for a permission request to a user who granted a permanent permission.
pub const PERMISSION_UNNECESSARY: i64 = 138017;

/// Meta's limit on `GET /{phone-number-id}/call_permissions` (reference §4.6): requests a
/// second per number; more are refused with error 613.
pub const PERMISSION_CHECKS_PER_SEC: usize = 5;

/// How many requests the fake keeps for [`FakeGraph::requests`].
pub const LOG_CAP: usize = 10_000;

struct Inner {
    access_token: Secret,
    phone_number_id: String,
    /// More business numbers this fake serves (`serving_also`).
    also: Vec<String>,
    state: Mutex<Book>,
    events_tx: mpsc::Sender<FakeGraphEvent>,
    events_rx: Mutex<Option<mpsc::Receiver<FakeGraphEvent>>>,
    /// How many requests have been recorded.
    seen: watch::Sender<usize>,
}

/// The fake Graph API. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct FakeGraph {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FakeGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeGraph")
            .field("phone_number_id", &self.inner.phone_number_id)
            .finish_non_exhaustive()
    }
}

struct Answer {
    status: StatusCode,
    body: String,
    error_code: Option<i64>,
    event: Option<FakeGraphEvent>,
}

impl FakeGraph {
    /// A fake that accepts `access_token` as bearer token for `phone_number_id`.
    pub fn new(access_token: impl Into<String>, phone_number_id: impl Into<String>) -> Self {
        Self::serving(access_token, phone_number_id, Vec::new())
    }

    /// A fake for several business numbers of one account (Meta allows 1 000 calls in progress
    /// per number: a load beyond that spreads over numbers).
    pub fn serving(
        access_token: impl Into<String>,
        phone_number_id: impl Into<String>,
        also: Vec<String>,
    ) -> Self {
        let (events_tx, events_rx) = mpsc::channel(EVENT_CAPACITY);
        FakeGraph {
            inner: Arc::new(Inner {
                access_token: Secret::new(access_token),
                phone_number_id: phone_number_id.into(),
                also,
                state: Mutex::new(Book {
                    calls: HashMap::new(),
                    tokens: HashMap::new(),
                    log: VecDeque::new(),
                    recorded: 0,
                    faults: VecDeque::new(),
                    next_call: 1,
                    next_trace: 1,
                    delay: Duration::ZERO,
                    permissions: HashMap::new(),
                    permission_checks: HashMap::new(),
                    permission_throttled: 0,
                    replies: HashMap::new(),
                    default_reply: Reply::Ignore,
                    permission_requests: HashMap::new(),
                    callback_permission: None,
                    next_message: 1,
                }),
                events_tx,
                events_rx: Mutex::new(Some(events_rx)),
                seen: watch::Sender::new(0),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, Book> {
        // A poisoned lock means a panic in a section below, which is a bug in this file; the
        // state is still usable for a test double, so carry on with it.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Makes `call_id` known with Meta's `offer_sdp` (call before sending its connect webhook).
    pub fn register_call(&self, call_id: WaCallId, offer_sdp: impl Into<String>) {
        self.state().calls.insert(
            call_id,
            CallState::Offered {
                offer: offer_sdp.into(),
            },
        );
    }

    /// Serves `phone_number_id` too, as another business's number: only `access_token` (that
    /// business's) is taken for it, and that token for no other number.
    pub fn add_number(&self, phone_number_id: impl Into<String>, access_token: impl Into<String>) {
        self.state()
            .tokens
            .insert(phone_number_id.into(), Secret::new(access_token));
    }

    /// The event stream; `Some` only the first time.
    pub fn take_events(&self) -> Option<mpsc::Receiver<FakeGraphEvent>> {
        self.inner
            .events_rx
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .take()
    }

    /// The requests so far, in order (the latest [`LOG_CAP`]).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().log.iter().cloned().collect()
    }

    /// Waits until at least `n` requests have been recorded (they are recorded on arrival,
    /// before a slow answer is sent).
    pub async fn wait_for_requests(&self, n: usize) {
        let mut seen = self.inner.seen.subscribe();
        // The sender lives as long as `self`, so this cannot fail while we hold `self`.
        let _ = seen.wait_for(|count| *count >= n).await;
    }

    /// Makes Graph slow: every request is decided and recorded when it arrives (the call's
    /// state changes, as at Meta), but its answer is sent only `delay` later.
    pub fn set_delay(&self, delay: Duration) {
        self.state().delay = delay;
    }

    /// The next `n` requests get `status` with Graph error `graph_error_code` (5xx and 429 are
    /// marked `is_transient`), before any other check.
    pub fn fail_next(&self, n: usize, status: u16, graph_error_code: i64) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        self.state().faults.push_back(Fault {
            remaining: n,
            status,
            code: graph_error_code,
        });
    }

    /// The `/{version}/{phone_number_id}/calls` and `…/call_permissions` routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/{version}/{phone_number_id}/calls", post(calls))
            .route(
                "/{version}/{phone_number_id}/call_permissions",
                axum::routing::get(call_permissions),
            )
            .route("/{version}/{phone_number_id}/messages", post(messages))
            .route("/{version}/{phone_number_id}/settings", post(settings))
            .with_state(self.clone())
    }

    /// How `user` answers the business's call permission requests from now on (until told
    /// otherwise; [`Reply::Ignore`] before). An accepted request also gives the user that
    /// permission in `GET …/call_permissions`, so the business may then call.
    pub fn on_permission_request(&self, user: &str, reply: Reply) {
        self.state().replies.insert(user.to_owned(), reply);
    }

    /// How every user given neither a permission ([`FakeGraph::set_permission`]) nor a reply
    /// ([`FakeGraph::on_permission_request`]) of their own answers a permission request from
    /// now on ([`Reply::Ignore`] before). With [`Reply::Accept`] such users also have the
    /// permission that reply grants before they are asked, as if they had accepted a request
    /// just now, so the business may call them at once: the sandbox's simulated customers.
    pub fn on_permission_request_by_default(&self, reply: Reply) {
        self.state().default_reply = reply;
    }

    /// The latest `callback_permission_status` set through `POST …/settings`: `Some(true)`
    /// for `ENABLED`; `None` when it was never set.
    pub fn callback_permission(&self) -> Option<bool> {
        self.state().callback_permission
    }

    /// Records one request of any route, with its answer, in arrival order.
    fn record(
        &self,
        st: &mut Book,
        phone_number_id: &str,
        action: Option<CallAction>,
        call_id: Option<WaCallId>,
        answer: &Answer,
        body: &[u8],
    ) {
        if st.log.len() == LOG_CAP {
            st.log.pop_front();
        }
        st.log.push_back(RecordedRequest {
            phone_number_id: phone_number_id.to_owned(),
            action,
            call_id,
            status: answer.status.as_u16(),
            error_code: answer.error_code,
            body: String::from_utf8_lossy(body).into_owned(),
        });
        st.recorded += 1;
        self.inner.seen.send_replace(st.recorded);
    }

    /// Injected faults, the bearer token and the phone number id, checked as for `/calls`;
    /// the refusal, if any.
    fn gate(&self, st: &mut Book, phone_number_id: &str, auth: Option<&str>) -> Option<Answer> {
        if let Some(fault) = st.faults.front_mut() {
            fault.remaining = fault.remaining.saturating_sub(1);
            let (status, code) = (fault.status, fault.code);
            if fault.remaining == 0 {
                st.faults.pop_front();
            }
            let transient = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
            return Some(error(
                st,
                status,
                code,
                "OAuthException",
                "Injected fault",
                None,
                transient,
            ));
        }
        let token = st
            .tokens
            .get(phone_number_id)
            .unwrap_or(&self.inner.access_token);
        let expected = format!("Bearer {}", token.expose());
        if auth != Some(expected.as_str()) {
            return Some(error(
                st,
                StatusCode::UNAUTHORIZED,
                190,
                "OAuthException",
                "Invalid OAuth access token - Cannot parse access token",
                None,
                false,
            ));
        }
        if phone_number_id != self.inner.phone_number_id
            && !self.inner.also.iter().any(|n| n == phone_number_id)
            && !st.tokens.contains_key(phone_number_id)
        {
            return Some(invalid(
                st,
                format!("Object with ID '{phone_number_id}' does not exist"),
            ));
        }
        None
    }

    /// `POST …/messages`: a call permission request, checked and answered as Meta does.
    fn handle_message(&self, phone_number_id: &str, auth: Option<&str>, body: &[u8]) -> Answer {
        let mut st = self.state();
        let answer = match self.gate(&mut st, phone_number_id, auth) {
            Some(refused) => refused,
            None => permission_request(&mut st, phone_number_id, body),
        };
        let action = Some(CallAction::Other("messages".into()));
        self.record(&mut st, phone_number_id, action, None, &answer, body);
        answer
    }

    /// `POST …/settings`: only `calling.callback_permission_status` is understood.
    fn handle_settings(&self, phone_number_id: &str, auth: Option<&str>, body: &[u8]) -> Answer {
        let mut st = self.state();
        let answer = match self.gate(&mut st, phone_number_id, auth) {
            Some(refused) => refused,
            None => settings_change(&mut st, body),
        };
        let action = Some(CallAction::Other("settings".into()));
        self.record(&mut st, phone_number_id, action, None, &answer, body);
        answer
    }

    /// `user`'s call permission from now on, as `GET …/call_permissions` answers it.
    pub fn set_permission(&self, user: &str, permissions: crate::whatsapp::model::CallPermissions) {
        self.state()
            .permissions
            .insert(user.to_owned(), permissions);
    }

    /// `call_permissions` requests refused with 613 so far (over Meta's 5 a second).
    pub fn permission_throttled(&self) -> usize {
        self.state().permission_throttled
    }

    /// Answers `GET …/call_permissions` for `user` as Meta does: the token checked, at most
    /// [`PERMISSION_CHECKS_PER_SEC`] a second per number (613 past it), the user's permission.
    fn permission_check(
        &self,
        phone_number_id: &str,
        auth: Option<&str>,
        user: Option<&str>,
    ) -> Answer {
        let mut st = self.state();
        let token = st
            .tokens
            .get(phone_number_id)
            .unwrap_or(&self.inner.access_token);
        let expected = format!("Bearer {}", token.expose());
        if auth != Some(expected.as_str()) {
            return error(
                &mut st,
                StatusCode::UNAUTHORIZED,
                190,
                "OAuthException",
                "Invalid OAuth access token - Cannot parse access token",
                None,
                false,
            );
        }
        let now = std::time::Instant::now();
        let window = st
            .permission_checks
            .entry(phone_number_id.to_owned())
            .or_default();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            window.pop_front();
        }
        if window.len() >= PERMISSION_CHECKS_PER_SEC {
            st.permission_throttled += 1;
            return error(
                &mut st,
                StatusCode::BAD_REQUEST,
                613,
                "OAuthException",
                "(#613) Calls to this api have exceeded the rate limit.",
                None,
                true,
            );
        }
        window.push_back(now);
        let Some(user) = user.filter(|u| !u.is_empty()) else {
            return invalid(&mut st, "user_wa_id or recipient is required".into());
        };
        let answer = permission_of(&st, user);
        Answer {
            status: StatusCode::OK,
            body: json(&answer),
            error_code: None,
            event: None,
        }
    }

    /// Serves [`FakeGraph::router`] on `addr` (use port 0 for any).
    pub async fn serve(self, addr: SocketAddr) -> std::io::Result<(SocketAddr, FakeGraphServer)> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let app = self.router();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop_rx.await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                warn!(error = %e, "fake graph server stopped");
            }
        });
        Ok((
            local,
            FakeGraphServer {
                graph: self,
                task: Some(task),
                stop: Some(stop_tx),
            },
        ))
    }

    fn handle(&self, phone_number_id: &str, auth: Option<&str>, body: &[u8]) -> Answer {
        let parsed = serde_json::from_slice::<CallRequest>(body);
        let mut st = self.state();
        let reply = self.decide(&mut st, phone_number_id, auth, &parsed);
        let (action, call_id) = match &parsed {
            Ok(r) => (r.action.clone(), r.call_id.clone()),
            Err(_) => (None, None),
        };
        self.record(&mut st, phone_number_id, action, call_id, &reply, body);
        reply
    }

    fn decide(
        &self,
        st: &mut Book,
        phone_number_id: &str,
        auth: Option<&str>,
        parsed: &Result<CallRequest, serde_json::Error>,
    ) -> Answer {
        if let Some(refused) = self.gate(st, phone_number_id, auth) {
            return refused;
        }
        let req = match parsed {
            Ok(r) => r,
            Err(e) => return invalid(st, format!("request body is not valid JSON: {e}")),
        };
        if req.messaging_product.as_deref() != Some(MESSAGING_PRODUCT) {
            return invalid(st, "messaging_product must be \"whatsapp\"".into());
        }
        if req
            .biz_opaque_callback_data
            .as_ref()
            .is_some_and(|b| b.chars().count() > 512)
        {
            return invalid(st, "biz_opaque_callback_data is longer than 512".into());
        }
        let Some(action) = req.action.clone() else {
            return invalid(st, "action is required".into());
        };
        if action == CallAction::Connect {
            return connect(st, req);
        }
        if let CallAction::Other(a) = &action {
            return invalid(st, format!("unknown action {a:?}"));
        }
        let Some(call_id) = req.call_id.clone() else {
            return invalid(st, "call_id is required".into());
        };
        let answer = match action {
            CallAction::PreAccept | CallAction::Accept => {
                match req.session.as_ref().map(|s| (&s.sdp_type, &s.sdp)) {
                    Some((Some(SdpType::Answer), Some(sdp))) if !sdp.is_empty() => {
                        Some(sdp.clone())
                    }
                    Some((Some(_), Some(_))) => {
                        return invalid(st, "session.sdp_type must be \"answer\"".into())
                    }
                    _ => return invalid(st, "session with sdp_type and sdp is required".into()),
                }
            }
            _ => None,
        };
        let Some(call) = st.calls.remove(&call_id) else {
            return invalid(st, format!("invalid call id {call_id}"));
        };
        let (next, result) = transition(&action, &call_id, call, answer);
        st.calls.insert(call_id, next);
        match result {
            Ok(event) => Answer {
                status: StatusCode::OK,
                body: json(&CallResponse {
                    messaging_product: Some(MESSAGING_PRODUCT.into()),
                    success: Some(true),
                    calls: None,
                }),
                error_code: None,
                event: Some(event),
            },
            Err(details) => invalid(st, details),
        }
    }
}

/// The state change for pre_accept/accept/reject/terminate: the next state, and the event or
/// the error details.
fn transition(
    action: &CallAction,
    call_id: &WaCallId,
    call: CallState,
    answer: Option<String>,
) -> (CallState, Result<FakeGraphEvent, String>) {
    let id = call_id.clone();
    match (action, call) {
        (_, CallState::Ended) => (
            CallState::Ended,
            Err(format!("call {call_id} is already completed")),
        ),
        (CallAction::Terminate, _) => (
            CallState::Ended,
            Ok(FakeGraphEvent::Terminated { call_id: id }),
        ),
        (CallAction::Reject, CallState::Offered { .. } | CallState::PreAccepted { .. }) => (
            CallState::Ended,
            Ok(FakeGraphEvent::Rejected { call_id: id }),
        ),
        (CallAction::Reject, s @ CallState::Accepted) => (
            s,
            Err(format!(
                "call {call_id} is already in progress; terminate it"
            )),
        ),
        (_, CallState::Outbound) => (
            CallState::Outbound,
            Err(format!(
                "{action} is not valid for business-initiated call {call_id}"
            )),
        ),
        (CallAction::PreAccept | CallAction::Accept, s @ CallState::Accepted) => {
            (s, Err(format!("call {call_id} is already in progress")))
        }
        (CallAction::PreAccept | CallAction::Accept, CallState::Offered { offer }) => {
            let sdp = answer.unwrap_or_default();
            if let Err(v) = sdp::check_answer(&offer, &sdp) {
                let details = format!("SDP Validation error: {}", sdp::describe(&v));
                return (CallState::Offered { offer }, Err(details));
            }
            answered(action, id, offer, sdp)
        }
        (CallAction::PreAccept | CallAction::Accept, CallState::PreAccepted { offer, sdp }) => {
            let answer = answer.unwrap_or_default();
            if answer != sdp {
                let details = if *action == CallAction::Accept {
                    SDP_MISMATCH_DETAILS.to_owned()
                } else {
                    "SDP answer differs from the one given in the earlier pre_accept".to_owned()
                };
                return (CallState::PreAccepted { offer, sdp }, Err(details));
            }
            // A repeated identical pre_accept (a retry) is harmless.
            answered(action, id, offer, sdp)
        }
        (other, s) => (s, Err(format!("unsupported action {other}"))),
    }
}

fn connect(st: &mut Book, req: &CallRequest) -> Answer {
    let Some(to) = req.to.clone().filter(|t| !t.is_empty()) else {
        return invalid(st, "to is required for connect".into());
    };
    let sdp = match req.session.as_ref().map(|s| (&s.sdp_type, &s.sdp)) {
        Some((Some(SdpType::Offer), Some(sdp))) if sdp.contains("m=audio") => sdp.clone(),
        _ => {
            return invalid(
                st,
                "session with sdp_type \"offer\" and an audio SDP is required".into(),
            )
        }
    };
    let call_id = WaCallId(format!("wacid.fake-{}", st.next_call));
    st.next_call += 1;
    st.calls.insert(call_id.clone(), CallState::Outbound);
    Answer {
        status: StatusCode::OK,
        body: json(&CallResponse {
            messaging_product: Some(MESSAGING_PRODUCT.into()),
            success: None,
            calls: Some(vec![CallRef {
                id: call_id.clone(),
            }]),
        }),
        error_code: None,
        event: Some(FakeGraphEvent::Connected { call_id, to, sdp }),
    }
}

/// A call permission request as Meta takes it: the message's shape, then Meta's refusals
/// (a permanent permission already there: 138017; a request within the limit's interval:
/// 138009); a request taken gets its wamid, and the user's answer is decided now.
fn permission_request(st: &mut Book, phone_number_id: &str, body: &[u8]) -> Answer {
    let req = match serde_json::from_slice::<MessageRequest>(body) {
        Ok(r) => r,
        Err(e) => return invalid(st, format!("request body is not valid JSON: {e}")),
    };
    if let Err(details) = check_permission_request(&req) {
        return invalid(st, details);
    }
    let user = req.to.clone().unwrap_or_default();
    let permanent = permission_of(st, &user).permission.status == PermissionStatus::Permanent;
    if permanent {
        return error(
            st,
            StatusCode::BAD_REQUEST,
            PERMISSION_UNNECESSARY,
            "OAuthException",
            "Permission request unnecessary",
            Some("The user has granted a permanent call permission".into()),
            false,
        );
    }
    let now = std::time::Instant::now();
    let recent = st
        .permission_requests
        .get(&user)
        .is_some_and(|at| now.duration_since(*at) < PERMISSION_REQUEST_INTERVAL);
    if recent {
        return error(
            st,
            StatusCode::BAD_REQUEST,
            PERMISSION_REQUEST_LIMIT,
            "OAuthException",
            "Call permission request limit reached",
            Some("Limit of call permission requests to this user reached".into()),
            false,
        );
    }
    st.permission_requests.insert(user.clone(), now);
    let wamid = format!("wamid.FAKE{:010}", st.next_message);
    st.next_message += 1;
    let reply = st.replies.get(&user).copied().unwrap_or(st.default_reply);
    if let Some(granted) = granted_by(reply) {
        st.permissions.insert(user.clone(), granted);
    }
    Answer {
        status: StatusCode::OK,
        body: json(&MessageResponse {
            messaging_product: Some(MESSAGING_PRODUCT.into()),
            contacts: vec![MessageContact {
                input: Some(user.clone()),
                wa_id: Some(user.clone()),
            }],
            messages: vec![MessageRef { id: wamid.clone() }],
        }),
        error_code: None,
        event: Some(FakeGraphEvent::PermissionRequested {
            phone_number_id: phone_number_id.to_owned(),
            user,
            wamid,
            reply,
        }),
    }
}

/// What is wrong with a permission request's shape (reference §4.6), if anything.
fn check_permission_request(req: &MessageRequest) -> Result<(), String> {
    if req.messaging_product.as_deref() != Some(MESSAGING_PRODUCT) {
        return Err("messaging_product must be \"whatsapp\"".into());
    }
    if req
        .recipient_type
        .as_deref()
        .is_some_and(|r| r != RECIPIENT_INDIVIDUAL)
    {
        return Err("recipient_type must be \"individual\"".into());
    }
    if req.to.as_deref().is_none_or(str::is_empty) {
        return Err("to is required".into());
    }
    match req.kind.as_deref() {
        Some(MESSAGE_INTERACTIVE) => {
            let Some(i) = &req.interactive else {
                return Err("interactive is required".into());
            };
            if i.kind.as_deref() != Some(INTERACTIVE_PERMISSION_REQUEST) {
                return Err("interactive.type must be \"call_permission_request\"".into());
            }
            let name = i.action.as_ref().and_then(|a| a.name.as_deref());
            if name != Some(INTERACTIVE_PERMISSION_REQUEST) {
                return Err("interactive.action.name must be \"call_permission_request\"".into());
            }
            let text = i.body.as_ref().and_then(|b| b.text.as_deref());
            if text.is_none_or(|t| t.trim().is_empty()) {
                return Err("interactive.body.text is required".into());
            }
            Ok(())
        }
        Some(MESSAGE_TEMPLATE) => {
            let Some(t) = &req.template else {
                return Err("template is required".into());
            };
            if t.name.as_deref().is_none_or(str::is_empty) {
                return Err("template.name is required".into());
            }
            let code = t.language.as_ref().and_then(|l| l.code.as_deref());
            if code.is_none_or(str::is_empty) {
                return Err("template.language.code is required".into());
            }
            Ok(())
        }
        other => Err(format!(
            "type must be \"interactive\" or \"template\", not {other:?}"
        )),
    }
}

/// A settings change: `calling.callback_permission_status` `ENABLED` or `DISABLED`.
fn settings_change(st: &mut Book, body: &[u8]) -> Answer {
    let req = match serde_json::from_slice::<SettingsRequest>(body) {
        Ok(r) => r,
        Err(e) => return invalid(st, format!("request body is not valid JSON: {e}")),
    };
    let status = req
        .calling
        .as_ref()
        .and_then(|c| c.callback_permission_status.as_deref());
    let enabled = match status {
        Some(SETTING_ENABLED) => true,
        Some(SETTING_DISABLED) => false,
        _ => {
            return invalid(
                st,
                "calling.callback_permission_status must be ENABLED or DISABLED".into(),
            )
        }
    };
    st.callback_permission = Some(enabled);
    Answer {
        status: StatusCode::OK,
        body: json(&CallResponse {
            messaging_product: None,
            success: Some(true),
            calls: None,
        }),
        error_code: None,
        event: None,
    }
}

fn invalid(st: &mut Book, details: String) -> Answer {
    error(
        st,
        StatusCode::BAD_REQUEST,
        100,
        "OAuthException",
        "(#100) Invalid parameter",
        Some(details),
        false,
    )
}

fn error(
    st: &mut Book,
    status: StatusCode,
    code: i64,
    kind: &str,
    message: &str,
    details: Option<String>,
    is_transient: bool,
) -> Answer {
    let trace = format!("FakeTrace{:06}", st.next_trace);
    st.next_trace += 1;
    let body = json(&GraphErrorEnvelope {
        error: GraphErrorObject {
            message: message.to_owned(),
            kind: Some(kind.to_owned()),
            code,
            error_subcode: None,
            error_data: details.map(|d| ErrorData {
                messaging_product: Some(MESSAGING_PRODUCT.into()),
                details: Some(d),
            }),
            fbtrace_id: Some(trace),
            is_transient: Some(is_transient),
        },
    });
    Answer {
        status,
        body,
        error_code: Some(code),
        event: None,
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    // Serialising these plain structs (strings, numbers, options) cannot fail.
    serde_json::to_string(value).expect("plain structs serialise")
}

/// The bearer credential a request carries.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// What a POST route of the fake does with a request: its number, credential and body.
type Handler = fn(&FakeGraph, &str, Option<&str>, &[u8]) -> Answer;

/// Runs a POST route's handler and sends its answer.
async fn answer_post(
    graph: FakeGraph,
    phone_number_id: &str,
    headers: &HeaderMap,
    body: &[u8],
    handle: Handler,
) -> Response {
    let answer = handle(&graph, phone_number_id, bearer(headers), body);
    graph.send(answer).await
}

async fn calls(
    State(graph): State<FakeGraph>,
    Path((_version, phone_number_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer_post(graph, &phone_number_id, &headers, &body, FakeGraph::handle).await
}

async fn messages(
    State(graph): State<FakeGraph>,
    Path((_version, phone_number_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer_post(
        graph,
        &phone_number_id,
        &headers,
        &body,
        FakeGraph::handle_message,
    )
    .await
}

async fn settings(
    State(graph): State<FakeGraph>,
    Path((_version, phone_number_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer_post(
        graph,
        &phone_number_id,
        &headers,
        &body,
        FakeGraph::handle_settings,
    )
    .await
}

impl FakeGraph {
    /// Passes on the answer's event, holds the answer back as long as Graph is slow, and
    /// answers.
    async fn send(&self, answer: Answer) -> Response {
        debug!(status = answer.status.as_u16(), "fake graph answered");
        if let Some(event) = answer.event {
            if self.inner.events_tx.try_send(event).is_err() {
                warn!("fake graph event dropped: stream full or not taken");
            }
        }
        let delay = self.state().delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        (
            answer.status,
            [(header::CONTENT_TYPE, "application/json")],
            answer.body,
        )
            .into_response()
    }
}

/// `user`'s permission as `GET …/call_permissions` answers it: their own, else the one the
/// default reply grants to a user with no reply of their own, else none.
fn permission_of(st: &Book, user: &str) -> CallPermissions {
    if let Some(own) = st.permissions.get(user) {
        return own.clone();
    }
    let by_default = (!st.replies.contains_key(user))
        .then(|| granted_by(st.default_reply))
        .flatten();
    by_default.unwrap_or_else(no_permission)
}

/// The permission `reply` grants now (`None` unless it accepts).
fn granted_by(reply: Reply) -> Option<CallPermissions> {
    let Reply::Accept { permanent, .. } = reply else {
        return None;
    };
    Some(CallPermissions {
        permission: Permission {
            status: if permanent {
                PermissionStatus::Permanent
            } else {
                PermissionStatus::Temporary
            },
            expiration_time: reply.expires_at(super::caller::unix_now()).map(UnixTime),
        },
        actions: vec![PermissionAction {
            action_name: "start_call".into(),
            can_perform_action: true,
            limits: vec![],
        }
        .into()],
    })
}

/// What Meta answers for a user who gave no permission: none, with the sample limits of its
/// documentation (reference §4.6).
pub fn no_permission() -> crate::whatsapp::model::CallPermissions {
    serde_json::from_value(serde_json::json!({
        "messaging_product": "whatsapp",
        "permission": {"status": "no_permission"},
        "actions": [
            {"action_name": "send_call_permission_request", "can_perform_action": true,
             "limits": [{"time_period": "PT24H", "max_allowed": 1, "current_usage": 0},
                        {"time_period": "P7D", "max_allowed": 2, "current_usage": 0}]},
            {"action_name": "start_call", "can_perform_action": false,
             "limits": [{"time_period": "PT24H", "max_allowed": 5, "current_usage": 0}]}
        ]
    }))
    .expect("the sample parses")
}

async fn call_permissions(
    State(graph): State<FakeGraph>,
    Path((_version, phone_number_id)): Path<(String, String)>,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let auth = bearer(&headers);
    let user = q.get("user_wa_id").or_else(|| q.get("recipient"));
    let reply = graph.permission_check(&phone_number_id, auth, user.map(String::as_str));
    (
        reply.status,
        [(header::CONTENT_TYPE, "application/json")],
        reply.body,
    )
        .into_response()
}

/// A running [`FakeGraph`] server. Dropping it aborts the server task.
#[derive(Debug)]
pub struct FakeGraphServer {
    graph: FakeGraph,
    task: Option<JoinHandle<()>>,
    stop: Option<oneshot::Sender<()>>,
}

impl FakeGraphServer {
    /// The fake being served (shared state).
    pub fn graph(&self) -> &FakeGraph {
        &self.graph
    }

    /// Stops accepting connections and waits for the server task to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for FakeGraphServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// The state and event after a valid pre_accept or accept.
fn answered(
    action: &CallAction,
    id: WaCallId,
    offer: String,
    sdp: String,
) -> (CallState, Result<FakeGraphEvent, String>) {
    if *action == CallAction::Accept {
        (
            CallState::Accepted,
            Ok(FakeGraphEvent::Accepted { call_id: id, sdp }),
        )
    } else {
        (
            CallState::PreAccepted {
                offer,
                sdp: sdp.clone(),
            },
            Ok(FakeGraphEvent::PreAccepted { call_id: id, sdp }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::whatsapp::sdp::{SAMPLE_ANSWER, SAMPLE_META_OFFER};

    fn body(action: &str, id: &str, sdp: Option<&str>) -> Vec<u8> {
        let mut r = CallRequest::new(CallAction::from(action), &WaCallId::from(id));
        r.session = sdp.map(|s| crate::whatsapp::model::Session::new(SdpType::Answer, s));
        serde_json::to_vec(&r).unwrap()
    }

    const AUTH: Option<&str> = Some("Bearer tok");

    #[test]
    fn state_machine_of_a_user_call() {
        let g = FakeGraph::new("tok", "42");
        g.register_call("wacid.1".into(), SAMPLE_META_OFFER);
        let r = g.handle(
            "42",
            AUTH,
            &body("pre_accept", "wacid.1", Some(SAMPLE_ANSWER)),
        );
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let other = SAMPLE_ANSWER.replace("1111", "2222");
        let r = g.handle("42", AUTH, &body("accept", "wacid.1", Some(&other)));
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.body.contains(SDP_MISMATCH_DETAILS), "{}", r.body);
        let r = g.handle("42", AUTH, &body("accept", "wacid.1", Some(SAMPLE_ANSWER)));
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert!(matches!(r.event, Some(FakeGraphEvent::Accepted { .. })));
        let r = g.handle("42", AUTH, &body("reject", "wacid.1", None));
        assert!(r.body.contains("in progress"), "{}", r.body);
        let r = g.handle("42", AUTH, &body("terminate", "wacid.1", None));
        assert_eq!(r.status, StatusCode::OK);
        let r = g.handle("42", AUTH, &body("accept", "wacid.1", Some(SAMPLE_ANSWER)));
        assert!(r.body.contains("already completed"), "{}", r.body);
        assert_eq!(g.requests().len(), 6);
    }

    #[tokio::test]
    async fn the_request_log_keeps_the_latest_and_counts_them_all() {
        let g = FakeGraph::new("tok", "42");
        for i in 0..LOG_CAP + 5 {
            g.handle("42", AUTH, &body("terminate", &format!("wacid.{i}"), None));
        }
        let log = g.requests();
        assert_eq!(log.len(), LOG_CAP);
        assert_eq!(log[0].call_id.as_ref().unwrap().0, "wacid.5");
        // Waiting on a count the log no longer holds still returns.
        g.wait_for_requests(LOG_CAP + 5).await;
    }

    #[test]
    fn refusals_carry_graph_codes() {
        let g = FakeGraph::new("tok", "42");
        g.register_call("wacid.1".into(), SAMPLE_META_OFFER);
        let ok = body("reject", "wacid.1", None);
        let r = g.handle("42", Some("Bearer nope"), &ok);
        assert_eq!(
            (r.status, r.error_code),
            (StatusCode::UNAUTHORIZED, Some(190))
        );
        let r = g.handle("43", AUTH, &ok);
        assert_eq!(
            (r.status, r.error_code),
            (StatusCode::BAD_REQUEST, Some(100))
        );
        let r = g.handle("42", AUTH, b"{");
        assert!(r.body.contains("not valid JSON"), "{}", r.body);
        let r = g.handle("42", AUTH, br#"{"action":"reject","call_id":"wacid.1"}"#);
        assert!(r.body.contains("messaging_product"), "{}", r.body);
        let r = g.handle("42", AUTH, &body("reject", "wacid.nope", None));
        assert!(r.body.contains("invalid call id"), "{}", r.body);
        let bad = SAMPLE_ANSWER.replace("a=setup:active", "a=setup:passive");
        let r = g.handle("42", AUTH, &body("pre_accept", "wacid.1", Some(&bad)));
        assert!(r.body.contains("a=setup must be active"), "{}", r.body);
        g.fail_next(2, 503, 1);
        for _ in 0..2 {
            let r = g.handle("42", AUTH, &ok);
            assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(r.body.contains("\"is_transient\":true"));
        }
        let r = g.handle("42", AUTH, &ok);
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }

    #[test]
    fn users_without_their_own_answer_take_the_default_one() {
        let g = FakeGraph::new("tok", "42");
        let status = |g: &FakeGraph, user: &str| {
            let r = g.permission_check("42", AUTH, Some(user));
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            serde_json::from_str::<CallPermissions>(&r.body)
                .unwrap()
                .permission
                .status
        };
        assert_eq!(status(&g, "1555"), PermissionStatus::NoPermission);
        g.on_permission_request_by_default(Reply::accept_for_a_week());
        g.on_permission_request("1666", Reply::Reject);
        // Granted before being asked, as if they had accepted just now; one with a reply of
        // their own has only what that gives.
        assert_eq!(status(&g, "1555"), PermissionStatus::Temporary);
        assert_eq!(status(&g, "1666"), PermissionStatus::NoPermission);
        let ask = |to: &str| {
            serde_json::to_vec(&serde_json::json!({
                "messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
                "type": "interactive",
                "interactive": {"type": "call_permission_request",
                    "action": {"name": "call_permission_request"},
                    "body": {"text": "May we call you?"}}
            }))
            .unwrap()
        };
        let r = g.handle_message("42", AUTH, &ask("1555"));
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert!(matches!(
            r.event,
            Some(FakeGraphEvent::PermissionRequested {
                reply: Reply::Accept {
                    permanent: false,
                    ..
                },
                ..
            })
        ));
        let r = g.handle_message("42", AUTH, &ask("1666"));
        assert!(matches!(
            r.event,
            Some(FakeGraphEvent::PermissionRequested {
                reply: Reply::Reject,
                ..
            })
        ));
        // A default of "for good" is Meta's: nothing to ask.
        g.on_permission_request_by_default(Reply::Accept {
            permanent: true,
            valid_for: Duration::ZERO,
        });
        let r = g.handle_message("42", AUTH, &ask("1777"));
        assert_eq!(r.error_code, Some(PERMISSION_UNNECESSARY), "{}", r.body);
    }
}
