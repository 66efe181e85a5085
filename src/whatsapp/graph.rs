//! [`GraphClient`]: the Graph API `/calls` actions (reference §4.1) with timeouts, typed errors
//! and retries only where safe.
//!
//! Retry policy: network errors, timeouts, HTTP 5xx, 429 and Graph errors marked
//! `is_transient: true` are retried with exponential backoff and jitter; other 4xx never are.
//! `connect` creates a call and is not idempotent, so it is retried only when the request
//! certainly did not reach Meta (connection not established) or on 429; so is a call
//! permission request ([`GraphClient::request_call_permission`]), a message the user would see
//! twice and that counts against Meta's limit.
//!
//! The access token is only ever written into the `Authorization` header; no request, header map
//! or client is ever logged. Graph's own error texts are kept (and so logged) only redacted and
//! cut ([`MAX_ERROR_TEXT`]): a proxy or a misbehaving Graph could echo the token, or send
//! megabytes.
//!
//! A client made with [`GraphClient::until`] stops retrying once told to: the calls actor tells
//! a call's request in flight when the call's final action (reject, terminate) is queued behind
//! it, so nothing of the call reaches Meta after that action.

// `GraphError::Api` carries Graph's whole error inline so callers can match on its fields; it is
// returned only on a network path where its size costs nothing measurable.
#![allow(clippy::result_large_err)]

use std::fmt;
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;
use tracing::{debug, instrument, warn};

use super::model::{
    CallAction, CallRequest, CallResponse, CallingSettings, GraphErrorEnvelope, InteractiveRequest,
    MessageRequest, MessageResponse, NamedAction, SdpType, Session, SettingsRequest,
    TemplateLanguage, TemplateRequest, TextBody, INTERACTIVE_PERMISSION_REQUEST,
    MESSAGE_INTERACTIVE, MESSAGE_TEMPLATE, MESSAGING_PRODUCT, RECIPIENT_INDIVIDUAL,
    SETTING_DISABLED, SETTING_ENABLED,
};
use crate::config::Secret;
use crate::ids::WaCallId;
use crate::ops::names;

/// A failed Graph call.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// Graph answered with its error object.
    #[error(
        "graph {action} for {} failed: HTTP {status}, code {code}, subcode {subcode:?}, \
         {message:?}, details {details:?}, fbtrace_id {fbtrace_id:?}",
        label(.call_id)
    )]
    Api {
        /// The action attempted.
        action: CallAction,
        /// The call (none for connect).
        call_id: Option<WaCallId>,
        /// HTTP status.
        status: u16,
        /// Graph error code (100, 190, 138006…).
        code: i64,
        /// Graph error subcode.
        subcode: Option<i64>,
        /// Graph error type (`OAuthException`…).
        kind: Option<String>,
        /// Graph's message.
        message: String,
        /// `error_data.details` (SDP validation problems…).
        details: Option<String>,
        /// Meta's trace id.
        fbtrace_id: Option<String>,
        /// Graph's `is_transient`.
        is_transient: bool,
    },
    /// An error status without a Graph error body (a proxy, a load balancer…).
    #[error("graph {action} for {} failed: HTTP {status} without a Graph error body", label(.call_id))]
    Http {
        /// The action attempted.
        action: CallAction,
        /// The call.
        call_id: Option<WaCallId>,
        /// HTTP status.
        status: u16,
    },
    /// The request could not be sent or the response not read.
    #[error("graph {action} for {} failed: network error: {source}", label(.call_id))]
    Network {
        /// The action attempted.
        action: CallAction,
        /// The call.
        call_id: Option<WaCallId>,
        /// True when the connection was never established (the request surely did not arrive).
        connect: bool,
        /// The transport error (its text holds the URL, never headers).
        source: reqwest::Error,
    },
    /// Connect or request timeout.
    #[error("graph {action} for {} timed out", label(.call_id))]
    Timeout {
        /// The action attempted.
        action: CallAction,
        /// The call.
        call_id: Option<WaCallId>,
    },
    /// A success status whose body could not be read.
    #[error("graph {action} for {}: HTTP {status} body unreadable: {reason}", label(.call_id))]
    Decode {
        /// The action attempted.
        action: CallAction,
        /// The call.
        call_id: Option<WaCallId>,
        /// HTTP status.
        status: u16,
        /// The parser's message.
        reason: String,
    },
    /// A success status whose body does not say success.
    #[error("graph {action} for {}: response does not confirm success: {reason}", label(.call_id))]
    Unconfirmed {
        /// The action attempted.
        action: CallAction,
        /// The call.
        call_id: Option<WaCallId>,
        /// What was missing.
        reason: &'static str,
    },
    /// The HTTP client could not be built (TLS backend).
    #[error("cannot build the Graph HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// The most characters of a text from Graph's error body (message, details, type, trace id) kept
/// in a [`GraphError`], and so in a log line.
pub const MAX_ERROR_TEXT: usize = 300;

/// What stands in a Graph error text for the access token.
const REDACTED: &str = "[access token]";

/// `text` from Graph as it may be kept and logged: the access token replaced, control
/// characters escaped (no line of the human log format can be forged), at most
/// [`MAX_ERROR_TEXT`] characters (then `…`).
fn sanitize(text: &str, token: &str) -> String {
    let redacted = if token.is_empty() {
        std::borrow::Cow::Borrowed(text)
    } else {
        std::borrow::Cow::Owned(text.replace(token, REDACTED))
    };
    let mut out = String::with_capacity(redacted.len().min(4 * MAX_ERROR_TEXT));
    let mut kept = 0;
    for c in redacted.chars() {
        let piece: String = if c.is_control() {
            c.escape_default().collect()
        } else {
            c.into()
        };
        kept += piece.chars().count();
        if kept > MAX_ERROR_TEXT {
            out.push('…');
            break;
        }
        out.push_str(&piece);
    }
    out
}

fn label(call_id: &Option<WaCallId>) -> &str {
    call_id.as_ref().map_or("a new call", |c| c.0.as_str())
}

impl GraphError {
    /// True when retrying the same request may succeed: network errors, timeouts, 5xx, 429, or
    /// Graph's `is_transient`.
    pub fn is_retryable(&self) -> bool {
        match self {
            GraphError::Api {
                status,
                is_transient,
                ..
            } => *status >= 500 || *status == 429 || *is_transient,
            GraphError::Http { status, .. } => *status >= 500 || *status == 429,
            GraphError::Network { .. } | GraphError::Timeout { .. } => true,
            GraphError::Decode { .. } | GraphError::Unconfirmed { .. } | GraphError::Client(_) => {
                false
            }
        }
    }

    /// Retry rule for a request that is not idempotent (connect): only when it surely did not
    /// arrive, or was refused for rate.
    fn is_retryable_unsent(&self) -> bool {
        match self {
            GraphError::Network { connect, .. } => *connect,
            GraphError::Api { status, .. } | GraphError::Http { status, .. } => *status == 429,
            _ => false,
        }
    }

    /// The Graph error code, when Graph gave one.
    pub fn code(&self) -> Option<i64> {
        match self {
            GraphError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// `error_data.details`, when Graph gave them.
    pub fn details(&self) -> Option<&str> {
        match self {
            GraphError::Api { details, .. } => details.as_deref(),
            _ => None,
        }
    }

    /// The HTTP status, when a response arrived.
    pub fn status(&self) -> Option<u16> {
        match self {
            GraphError::Api { status, .. }
            | GraphError::Http { status, .. }
            | GraphError::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    fn log(&self, action: CallAction, call_id: &str) {
        match self {
            GraphError::Api {
                status,
                code,
                subcode,
                kind,
                message,
                details,
                fbtrace_id,
                ..
            } => warn!(
                call_id,
                %action,
                status,
                code,
                subcode = ?subcode,
                kind = kind.as_deref().unwrap_or(""),
                message = %message,
                details = details.as_deref().unwrap_or(""),
                fbtrace_id = fbtrace_id.as_deref().unwrap_or(""),
                "graph {action} failed"
            ),
            other => warn!(call_id, %action, error = %other, "graph {action} failed"),
        }
    }
}

/// Backoff schedule: attempt `n` (from 1) waits `base * 2^(n-1)`, capped at `max`, jittered
/// to between half and all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, including the first (1 = no retry).
    pub max_attempts: u32,
    /// Delay before the first retry.
    pub base_delay: Duration,
    /// Largest delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1 = first retry), with jitter.
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry.saturating_sub(1)))
            .min(self.max_delay);
        let hi = exp.as_micros().min(u128::from(u64::MAX)) as u64;
        let lo = hi / 2;
        Duration::from_micros(rand::thread_rng().gen_range(lo..=hi))
    }
}

/// Timeouts and retries of a [`GraphClient`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphOptions {
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout, per attempt.
    pub request_timeout: Duration,
    /// Backoff schedule.
    pub retry: RetryPolicy,
}

impl Default for GraphOptions {
    fn default() -> Self {
        GraphOptions {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
        }
    }
}

/// Client of `POST {graph_url}/{version}/{phone_number_id}/calls`. Cheap to clone.
#[derive(Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    calls_url: String,
    access_token: Secret,
    retry: RetryPolicy,
    /// When it says `true`, no retry is started (see [`GraphClient::until`]).
    stop: Option<watch::Receiver<bool>>,
    /// This number's recent `call_permissions` requests (shared by the client's clones): Meta
    /// takes at most [`PERMISSION_CHECKS_PER_SEC`] a second per number.
    permission_checks: std::sync::Arc<PermissionWindow>,
}

/// Meta's limit on `GET /{phone-number-id}/call_permissions` (reference §4.6): requests a second
/// per number.
pub const PERMISSION_CHECKS_PER_SEC: usize = 5;

/// The metric label (and `CallAction::Other` name) of a permission request message.
const PERMISSION_REQUEST: &str = "permission_request";
/// The metric label of a settings change.
const SETTINGS: &str = "settings";

/// An approved message template that asks for call permission, for users outside the customer
/// service window (Meta refuses a free-form request there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionTemplate {
    /// The template's name, as approved in WhatsApp Manager.
    pub name: String,
    /// Its language code (`en_US`…).
    pub language: String,
}

/// The body of a permission request to `user` (reference §4.6): interactive, or `template`.
pub fn permission_request(
    user: &str,
    body: &str,
    template: Option<&PermissionTemplate>,
) -> MessageRequest {
    let mut request = MessageRequest {
        messaging_product: Some(MESSAGING_PRODUCT.into()),
        recipient_type: Some(RECIPIENT_INDIVIDUAL.into()),
        to: Some(user.to_owned()),
        ..MessageRequest::default()
    };
    match template {
        Some(t) => {
            request.kind = Some(MESSAGE_TEMPLATE.into());
            request.template = Some(TemplateRequest {
                name: Some(t.name.clone()),
                language: Some(TemplateLanguage {
                    code: Some(t.language.clone()),
                }),
            });
        }
        None => {
            request.kind = Some(MESSAGE_INTERACTIVE.into());
            request.interactive = Some(InteractiveRequest {
                kind: Some(INTERACTIVE_PERMISSION_REQUEST.into()),
                action: Some(NamedAction {
                    name: Some(INTERACTIVE_PERMISSION_REQUEST.into()),
                }),
                body: Some(TextBody {
                    text: Some(body.to_owned()),
                }),
            });
        }
    }
    request
}

/// The body of a settings change of `callback_permission_status` (reference §4.4).
pub fn callback_permission_settings(enabled: bool) -> SettingsRequest {
    let status = if enabled {
        SETTING_ENABLED
    } else {
        SETTING_DISABLED
    };
    SettingsRequest {
        calling: Some(CallingSettings {
            callback_permission_status: Some(status.into()),
        }),
    }
}

/// A sliding one-second window of a number's permission checks. Callers wait their turn in
/// order (tokio's mutex is fair), so a burst of checks goes out at Meta's rate instead of being
/// refused with 613.
#[derive(Debug, Default)]
struct PermissionWindow(tokio::sync::Mutex<std::collections::VecDeque<tokio::time::Instant>>);

impl PermissionWindow {
    async fn admit(&self) {
        let mut sent = self.0.lock().await;
        loop {
            let now = tokio::time::Instant::now();
            while sent
                .front()
                .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
            {
                sent.pop_front();
            }
            match sent.front() {
                Some(first) if sent.len() >= PERMISSION_CHECKS_PER_SEC => {
                    // A margin over the second: the clocks here and at Meta are not one.
                    let until = *first + Duration::from_millis(1_050);
                    tokio::time::sleep_until(until).await;
                }
                _ => {
                    sent.push_back(now);
                    return;
                }
            }
        }
    }
}

impl fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphClient")
            .field("calls_url", &self.calls_url)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl GraphClient {
    /// A client with default timeouts (10 s) and retries (3 attempts from 200 ms).
    pub fn new(
        graph_url: &str,
        graph_version: &str,
        phone_number_id: &str,
        access_token: Secret,
    ) -> Result<Self, GraphError> {
        Self::with_options(
            graph_url,
            graph_version,
            phone_number_id,
            access_token,
            GraphOptions::default(),
        )
    }

    /// A client with explicit timeouts and retry schedule.
    pub fn with_options(
        graph_url: &str,
        graph_version: &str,
        phone_number_id: &str,
        access_token: Secret,
        options: GraphOptions,
    ) -> Result<Self, GraphError> {
        let http = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(GraphError::Client)?;
        Ok(GraphClient {
            http,
            calls_url: format!(
                "{}/{}/{}/calls",
                graph_url.trim_end_matches('/'),
                graph_version.trim_matches('/'),
                phone_number_id
            ),
            access_token,
            retry: options.retry,
            stop: None,
            permission_checks: std::sync::Arc::default(),
        })
    }

    /// This client, retrying only while `stop` says `false`: once it says `true`, a failed
    /// attempt is final and a retry being waited for is not made. An attempt already sent is
    /// never cut short (Meta may be acting on it).
    pub fn until(&self, stop: watch::Receiver<bool>) -> GraphClient {
        GraphClient {
            stop: Some(stop),
            ..self.clone()
        }
    }

    fn stopped(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| *s.borrow())
    }

    /// Waits `delay` before a retry; false when told to stop meanwhile (or before).
    async fn wait_to_retry(&self, delay: Duration) -> bool {
        match &self.stop {
            None => tokio::time::sleep(delay).await,
            Some(stop) => {
                let mut stop = stop.clone();
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    Ok(_) = stop.wait_for(|s| *s) => {}
                }
            }
        }
        !self.stopped()
    }

    /// The endpoint every action is posted to.
    pub fn calls_url(&self) -> &str {
        &self.calls_url
    }

    /// Sends our answer early (`pre_accept`), so ICE/DTLS can complete while the user rings.
    #[instrument(skip_all, fields(call_id = %call_id))]
    pub async fn pre_accept(&self, call_id: &WaCallId, sdp: &str) -> Result<(), GraphError> {
        let mut body = CallRequest::new(CallAction::PreAccept, call_id);
        body.session = Some(Session::new(SdpType::Answer, sdp));
        self.action(CallAction::PreAccept, call_id, &body).await
    }

    /// Connects the call (`accept`) with the same answer SDP as pre_accept.
    #[instrument(skip_all, fields(call_id = %call_id))]
    pub async fn accept(
        &self,
        call_id: &WaCallId,
        sdp: &str,
        biz_opaque_callback_data: Option<&str>,
    ) -> Result<(), GraphError> {
        let mut body = CallRequest::new(CallAction::Accept, call_id);
        body.session = Some(Session::new(SdpType::Answer, sdp));
        body.biz_opaque_callback_data = biz_opaque_callback_data.map(str::to_owned);
        self.action(CallAction::Accept, call_id, &body).await
    }

    /// Declines a call that was not accepted.
    #[instrument(skip_all, fields(call_id = %call_id))]
    pub async fn reject(&self, call_id: &WaCallId) -> Result<(), GraphError> {
        let body = CallRequest::new(CallAction::Reject, call_id);
        self.action(CallAction::Reject, call_id, &body).await
    }

    /// Ends the call.
    #[instrument(skip_all, fields(call_id = %call_id))]
    pub async fn terminate(&self, call_id: &WaCallId) -> Result<(), GraphError> {
        let body = CallRequest::new(CallAction::Terminate, call_id);
        self.action(CallAction::Terminate, call_id, &body).await
    }

    /// Whether the business may call `user_wa_id`, and what Meta's limits allow now
    /// (`GET /{phone-number-id}/call_permissions`, reference §4.6). At most
    /// [`PERMISSION_CHECKS_PER_SEC`] go out a second for this number, however many callers ask
    /// at once; a 613 (Meta's rate limit, hit by another client of the number) is waited out and
    /// asked again, twice at most.
    #[instrument(skip_all)]
    pub async fn call_permissions(
        &self,
        user_wa_id: &str,
    ) -> Result<crate::whatsapp::model::CallPermissions, GraphError> {
        let action = CallAction::Other("call_permissions".into());
        let url = self.number_url("call_permissions");
        let mut attempt = 1;
        loop {
            self.permission_checks.admit().await;
            let started = std::time::Instant::now();
            let result = self.get_permissions(&action, &url, user_wa_id).await;
            metrics::histogram!(names::GRAPH_DURATION, "action" => "call_permissions")
                .record(started.elapsed().as_secs_f64());
            let outcome = if result.is_ok() { "ok" } else { "error" };
            metrics::counter!(names::GRAPH_REQUESTS, "action" => "call_permissions", "outcome" => outcome)
                .increment(1);
            match result {
                Err(GraphError::Api { code: 613, .. }) if attempt < 3 && !self.stopped() => {
                    debug!(
                        attempt,
                        "call_permissions rate-limited by Meta; waiting a second"
                    );
                    attempt += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    if let GraphError::Api { code, .. } = &e {
                        metrics::counter!(names::GRAPH_ERRORS, "action" => "call_permissions", "code" => names::meta_code_label(*code))
                            .increment(1);
                    }
                    e.log(action.clone(), "");
                    return Err(e);
                }
                ok => return ok,
            }
        }
    }

    async fn get_permissions(
        &self,
        action: &CallAction,
        url: &str,
        user_wa_id: &str,
    ) -> Result<crate::whatsapp::model::CallPermissions, GraphError> {
        let request = self
            .http
            .get(url)
            .query(&[("user_wa_id", user_wa_id)])
            .bearer_auth(self.access_token.expose());
        self.exchange(request, action, None).await
    }

    /// Starts a business-initiated call to `to` with our offer; returns Meta's call id.
    #[instrument(skip_all, fields(call_id = tracing::field::Empty))]
    pub async fn connect(
        &self,
        to: &str,
        offer_sdp: &str,
        biz_opaque_callback_data: Option<&str>,
    ) -> Result<WaCallId, GraphError> {
        let body = CallRequest {
            messaging_product: Some(MESSAGING_PRODUCT.to_owned()),
            to: Some(to.to_owned()),
            action: Some(CallAction::Connect),
            session: Some(Session::new(SdpType::Offer, offer_sdp)),
            biz_opaque_callback_data: biz_opaque_callback_data.map(str::to_owned),
            ..Default::default()
        };
        let resp = self.post(CallAction::Connect, None, &body).await?;
        let id = resp
            .calls
            .and_then(|c| c.into_iter().next())
            .map(|c| c.id)
            .filter(|id| !id.0.is_empty());
        match id {
            Some(id) => {
                tracing::Span::current().record("call_id", tracing::field::display(&id));
                debug!("graph connect succeeded");
                Ok(id)
            }
            None => {
                count_unconfirmed(&CallAction::Connect);
                let e = GraphError::Unconfirmed {
                    action: CallAction::Connect,
                    call_id: None,
                    reason: "no calls[0].id",
                };
                e.log(CallAction::Connect, "");
                Err(e)
            }
        }
    }

    /// The Graph URL of this number's `leaf` (`messages`, `settings`, `call_permissions`).
    fn number_url(&self, leaf: &str) -> String {
        format!("{}{leaf}", self.calls_url.trim_end_matches("calls"))
    }

    /// Asks `user` for permission to call them (reference §1.3, §4.6): the interactive
    /// `call_permission_request` message with `body` as its text, which Meta takes only inside
    /// the customer service window, or, with `template`, that approved template (`body` is then
    /// unused: the template carries its own text). Returns the request's `wamid.…`, which the
    /// user's reply names as its `context.id` ([`crate::whatsapp::webhook::WaEvent::PermissionReply`]).
    ///
    /// Meta's refusals come back with their code ([`GraphError::code`]): 138009 (the request
    /// limit for this user, 1 a day and 2 a week in Meta's samples), 138017 (the user granted a
    /// permanent permission: nothing to ask), 131047 (outside the service window: use a
    /// template), and so on. A message is not idempotent (a second copy would use up the limit
    /// and bother the user twice), so it is retried only when it surely did not reach Meta.
    #[instrument(skip_all)]
    pub async fn request_call_permission(
        &self,
        user: &str,
        body: &str,
        template: Option<&PermissionTemplate>,
    ) -> Result<String, GraphError> {
        let action = CallAction::Other(PERMISSION_REQUEST.into());
        let request = permission_request(user, body, template);
        let url = self.number_url("messages");
        let resp: MessageResponse = self
            .post_to(&url, action.clone(), None, false, &request)
            .await?;
        match resp
            .messages
            .into_iter()
            .next()
            .map(|m| m.id)
            .filter(|id| !id.is_empty())
        {
            Some(id) => {
                debug!(wamid = %id, "call permission requested");
                Ok(id)
            }
            None => {
                count_unconfirmed(&action);
                let e = GraphError::Unconfirmed {
                    action: action.clone(),
                    call_id: None,
                    reason: "no messages[0].id",
                };
                e.log(action, "");
                Err(e)
            }
        }
    }

    /// Turns `callback_permission_status` on or off (reference §4.4): when on, Meta asks a
    /// user who called the business for permission to be called back, and their answer comes
    /// as a permission reply with `response_source: "automatic"`. Setting the same value twice
    /// is harmless, so this is retried like the call actions.
    #[instrument(skip_all, fields(enabled))]
    pub async fn set_callback_permission(&self, enabled: bool) -> Result<(), GraphError> {
        let action = CallAction::Other(SETTINGS.into());
        let body = callback_permission_settings(enabled);
        let url = self.number_url("settings");
        let resp: CallResponse = self
            .post_to(&url, action.clone(), None, true, &body)
            .await?;
        if resp.success == Some(true) {
            debug!(enabled, "callback permission setting changed");
            Ok(())
        } else {
            count_unconfirmed(&action);
            let e = GraphError::Unconfirmed {
                action: action.clone(),
                call_id: None,
                reason: "no \"success\": true",
            };
            e.log(action, "");
            Err(e)
        }
    }

    async fn action(
        &self,
        action: CallAction,
        call_id: &WaCallId,
        body: &CallRequest,
    ) -> Result<(), GraphError> {
        let resp = self.post(action.clone(), Some(call_id), body).await?;
        if resp.success == Some(true) {
            debug!(%action, "graph action succeeded");
            Ok(())
        } else {
            count_unconfirmed(&action);
            let e = GraphError::Unconfirmed {
                action: action.clone(),
                call_id: Some(call_id.clone()),
                reason: "no \"success\": true",
            };
            e.log(action, &call_id.0);
            Err(e)
        }
    }

    async fn post(
        &self,
        action: CallAction,
        call_id: Option<&WaCallId>,
        body: &CallRequest,
    ) -> Result<CallResponse, GraphError> {
        let idempotent = action != CallAction::Connect;
        self.post_to(&self.calls_url, action, call_id, idempotent, body)
            .await
    }

    /// Posts `body` to `url` with the retry rule for an idempotent request or not.
    async fn post_to<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        action: CallAction,
        call_id: Option<&WaCallId>,
        idempotent: bool,
        body: &B,
    ) -> Result<T, GraphError> {
        let mut attempt = 1;
        loop {
            let err = match self.post_once(url, &action, call_id, body).await {
                Ok(resp) => return Ok(resp),
                Err(e) => e,
            };
            let retry = if idempotent {
                err.is_retryable()
            } else {
                err.is_retryable_unsent()
            };
            if retry && attempt < self.retry.max_attempts && !self.stopped() {
                let delay = self.retry.delay(attempt);
                debug!(%action, attempt, delay_ms = delay.as_millis() as u64, error = %err,
                    "graph request failed; retrying");
                if self.wait_to_retry(delay).await {
                    attempt += 1;
                    continue;
                }
            }
            if retry && self.stopped() {
                debug!(%action, attempt, "no retry: the call's final action is queued after it");
            }
            err.log(action, call_id.map_or("", |c| c.0.as_str()));
            return Err(err);
        }
    }

    /// One request, timed and counted by action and outcome.
    async fn post_once<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        action: &CallAction,
        call_id: Option<&WaCallId>,
        body: &B,
    ) -> Result<T, GraphError> {
        let started = std::time::Instant::now();
        let request = self
            .http
            .post(url)
            .bearer_auth(self.access_token.expose())
            .json(body);
        let result = self.exchange(request, action, call_id).await;
        let label = known_action(action);
        metrics::histogram!(names::GRAPH_DURATION, "action" => label)
            .record(started.elapsed().as_secs_f64());
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!(names::GRAPH_REQUESTS, "action" => label, "outcome" => outcome)
            .increment(1);
        if let Err(e) = &result {
            let code = match e {
                GraphError::Api { code, .. } => names::meta_code_label(*code),
                GraphError::Http { .. } => "http",
                GraphError::Network { .. } => "network",
                GraphError::Timeout { .. } => "timeout",
                GraphError::Decode { .. } => "decode",
                _ => "other",
            };
            metrics::counter!(names::GRAPH_ERRORS, "action" => label, "code" => code).increment(1);
        }
        result
    }

    /// Sends `request` and reads Meta's answer as `T`, or its error as a [`GraphError`]
    /// (transport, Graph error object, or a body that is neither), the token never in it.
    async fn exchange<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        action: &CallAction,
        call_id: Option<&WaCallId>,
    ) -> Result<T, GraphError> {
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                GraphError::Timeout {
                    action: action.clone(),
                    call_id: call_id.cloned(),
                }
            } else {
                GraphError::Network {
                    action: action.clone(),
                    call_id: call_id.cloned(),
                    connect: e.is_connect(),
                    source: e,
                }
            }
        };
        let resp = request.send().await.map_err(transport)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(transport)?;
        let clean = |text: String| sanitize(&text, self.access_token.expose());
        if status.is_success() {
            return serde_json::from_slice::<T>(&bytes).map_err(|e| GraphError::Decode {
                action: action.clone(),
                call_id: call_id.cloned(),
                status: status.as_u16(),
                reason: clean(e.to_string()),
            });
        }
        match serde_json::from_slice::<GraphErrorEnvelope>(&bytes) {
            Ok(GraphErrorEnvelope { error }) => Err(GraphError::Api {
                action: action.clone(),
                call_id: call_id.cloned(),
                status: status.as_u16(),
                code: error.code,
                subcode: error.error_subcode,
                kind: error.kind.map(clean),
                message: clean(error.message),
                details: error.error_data.and_then(|d| d.details).map(clean),
                fbtrace_id: error.fbtrace_id.map(clean),
                is_transient: error.is_transient.unwrap_or(false),
            }),
            Err(_) => Err(GraphError::Http {
                action: action.clone(),
                call_id: call_id.cloned(),
                status: status.as_u16(),
            }),
        }
    }
}

fn count_unconfirmed(action: &CallAction) {
    metrics::counter!(names::GRAPH_ERRORS, "action" => known_action(action), "code" => "unconfirmed")
        .increment(1);
}

/// The action as a metric label (only our own actions are sent; the set stays bounded).
fn known_action(action: &CallAction) -> &'static str {
    match action {
        CallAction::PreAccept => "pre_accept",
        CallAction::Accept => "accept",
        CallAction::Reject => "reject",
        CallAction::Terminate => "terminate",
        CallAction::Connect => "connect",
        CallAction::Other(a) if a == PERMISSION_REQUEST => PERMISSION_REQUEST,
        CallAction::Other(a) if a == SETTINGS => SETTINGS,
        CallAction::Other(_) => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, transient: bool) -> GraphError {
        GraphError::Api {
            action: CallAction::Accept,
            call_id: Some(WaCallId::from("wacid.1")),
            status,
            code: 100,
            subcode: None,
            kind: None,
            message: "m".into(),
            details: Some("d".into()),
            fbtrace_id: None,
            is_transient: transient,
        }
    }

    #[test]
    fn only_safe_errors_are_retryable() {
        assert!(api(500, false).is_retryable());
        assert!(api(503, false).is_retryable());
        assert!(api(429, false).is_retryable());
        assert!(api(400, true).is_retryable());
        assert!(!api(400, false).is_retryable());
        assert!(!api(401, false).is_retryable());
        assert!(!api(404, false).is_retryable());
        assert!(!api(503, false).is_retryable_unsent());
        assert!(api(429, false).is_retryable_unsent());
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_millis(500),
        };
        for _ in 0..50 {
            let d1 = p.delay(1);
            assert!(d1 >= Duration::from_millis(100) && d1 <= Duration::from_millis(200));
            let d2 = p.delay(2);
            assert!(d2 >= Duration::from_millis(200) && d2 <= Duration::from_millis(400));
            let d9 = p.delay(9);
            assert!(d9 >= Duration::from_millis(250) && d9 <= Duration::from_millis(500));
        }
    }

    #[test]
    fn display_names_the_call_and_details() {
        let s = api(400, false).to_string();
        assert!(
            s.contains("wacid.1") && s.contains("code 100") && s.contains("\"d\""),
            "{s}"
        );
    }

    #[test]
    fn graph_texts_are_redacted_escaped_and_cut() {
        let token = "EAAG-secret-token";
        assert_eq!(
            sanitize(&format!("bad token {token}\nINFO forged"), token),
            "bad token [access token]\\nINFO forged"
        );
        let long = sanitize(&format!("{token}{}", "x".repeat(5000)), token);
        assert_eq!(long.chars().count(), MAX_ERROR_TEXT + 1);
        assert!(long.starts_with(REDACTED) && long.ends_with('…'));
        assert_eq!(sanitize("short", ""), "short");
    }

    #[test]
    fn permission_requests_have_metas_exact_shape() {
        let interactive = serde_json::to_value(permission_request(
            "15551234567",
            "May we call you about your order?",
            None,
        ))
        .unwrap();
        assert_eq!(
            interactive,
            serde_json::json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "15551234567",
                "type": "interactive",
                "interactive": {
                    "type": "call_permission_request",
                    "action": {"name": "call_permission_request"},
                    "body": {"text": "May we call you about your order?"}
                }
            })
        );
        let template = PermissionTemplate {
            name: "call_permission".into(),
            language: "en_US".into(),
        };
        let templated =
            serde_json::to_value(permission_request("15551234567", "unused", Some(&template)))
                .unwrap();
        assert_eq!(
            templated,
            serde_json::json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "15551234567",
                "type": "template",
                "template": {"name": "call_permission", "language": {"code": "en_US"}}
            })
        );
        assert_eq!(
            serde_json::to_value(callback_permission_settings(true)).unwrap(),
            serde_json::json!({"calling": {"callback_permission_status": "ENABLED"}})
        );
        assert_eq!(
            serde_json::to_value(callback_permission_settings(false)).unwrap(),
            serde_json::json!({"calling": {"callback_permission_status": "DISABLED"}})
        );
    }

    #[test]
    fn debug_does_not_leak_the_token() {
        let c = GraphClient::new(
            "http://127.0.0.1:1/",
            "v23.0",
            "123",
            Secret::new("TOKEN-XYZZY"),
        )
        .unwrap();
        assert_eq!(c.calls_url(), "http://127.0.0.1:1/v23.0/123/calls");
        assert!(!format!("{c:?}").contains("XYZZY"));
    }
}
