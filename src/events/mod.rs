//! Call events to the accounts' own backends (issue 24): what happened to a call or an agent,
//! POSTed to each endpoint an account registered, signed the Standard Webhooks way
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`), from a
//! durable outbox.
//!
//! *Owns*: the event types and their JSON ([`payload`]), the signature ([`sign`]), the
//! endpoints' secrets in the clear ([`Targets`], opened from the accounts), which endpoints an
//! event goes to ([`Emitter::rows`]), the retry schedule ([`RetryPolicy`]) and the delivery task
//! ([`deliver::Deliverer`]).
//!
//! *Does not touch*: when events happen (the call machines say, `crate::calls::HostEvent`),
//! where they are kept (`crate::store`'s outbox), or the endpoints' definitions
//! (`crate::accounts::EndpointDef`, changed through the admin API).
//!
//! *Invariants*:
//! - An event is written to the outbox by the calls' records line, in the same transaction as
//!   the call's live mark or record when it goes with one; the call never waits for it.
//! - Each (event, endpoint) is one outbox row with one `webhook-id`, the same on every attempt.
//! - Per endpoint, the events of one call (or one agent) are delivered in the order they
//!   happened: a later one waits while an earlier one is retried.
//! - Secrets and signatures never reach a log line.

pub mod deliver;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::prelude::{Engine as _, BASE64_STANDARD};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::{watch, Notify};

use crate::accounts::{Account, AccountSlug, SealKey};

/// What a secret starts with (the Standard Webhooks convention).
pub const SECRET_PREFIX: &str = "whsec_";

/// The events an account's backend can be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Meta offered a call.
    CallOffered,
    /// A call rings at an agent.
    CallRinging,
    /// A call waits in its queue.
    CallQueued,
    /// An agent answered a call.
    CallAnswered,
    /// The agent put the caller on hold.
    CallHeld,
    /// The agent took the caller off hold.
    CallResumed,
    /// The agent sent the call to another agent or a queue.
    CallTransferred,
    /// The call ended; its record goes with it.
    CallEnded,
    /// An agent's presence changed.
    AgentState,
}

impl EventType {
    /// Every type, in the order the docs list them.
    pub const ALL: [EventType; 9] = [
        EventType::CallOffered,
        EventType::CallRinging,
        EventType::CallQueued,
        EventType::CallAnswered,
        EventType::CallHeld,
        EventType::CallResumed,
        EventType::CallTransferred,
        EventType::CallEnded,
        EventType::AgentState,
    ];

    /// Its name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::CallOffered => "call.offered",
            EventType::CallRinging => "call.ringing",
            EventType::CallQueued => "call.queued",
            EventType::CallAnswered => "call.answered",
            EventType::CallHeld => "call.held",
            EventType::CallResumed => "call.resumed",
            EventType::CallTransferred => "call.transferred",
            EventType::CallEnded => "call.ended",
            EventType::AgentState => "agent.state",
        }
    }

    /// The type named `name`.
    pub fn parse(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// One event on its way to one endpoint: a row of the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// `webhook-id`: the same for every endpoint the event goes to, and on every attempt.
    pub msg_id: String,
    /// The account.
    pub account: String,
    /// The endpoint's id.
    pub endpoint: String,
    /// What its order is kept within: the call's id, or the agent's.
    pub order_key: String,
    /// Its type's name.
    pub kind: String,
    /// The body, exactly as sent and signed.
    pub payload: String,
    /// When it happened, unix ms.
    pub created_at: i64,
}

/// A new signing secret: `whsec_` and 32 random bytes in base64.
pub fn new_secret() -> String {
    format!(
        "{SECRET_PREFIX}{}",
        BASE64_STANDARD.encode(rand::random::<[u8; 32]>())
    )
}

/// The HMAC key of a `whsec_…` secret; `None` when it is not one.
pub fn secret_key(secret: &str) -> Option<Vec<u8>> {
    let key = BASE64_STANDARD
        .decode(secret.strip_prefix(SECRET_PREFIX)?)
        .ok()?;
    (!key.is_empty()).then_some(key)
}

/// The `webhook-signature` of `body` sent as message `msg_id` at `timestamp` (unix seconds):
/// `v1,` and the base64 HMAC-SHA256, under `key`, of `msg_id.timestamp.body`.
pub fn sign(key: &[u8], msg_id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("v1,{}", BASE64_STANDARD.encode(mac.finalize().into_bytes()))
}

/// A new message id: `msg_` and 32 hex digits.
pub fn new_msg_id() -> String {
    format!("msg_{}", hex::encode(rand::random::<[u8; 16]>()))
}

/// A new endpoint id: `ep_` and 16 hex digits.
pub fn new_endpoint_id() -> String {
    format!("ep_{}", hex::encode(rand::random::<[u8; 8]>()))
}

/// The body of an event: `{"type", "timestamp", "data"}`, as the Standard Webhooks spec
/// shapes a payload (the timestamp in ISO 8601, UTC, to the millisecond).
pub fn payload(kind: EventType, at_ms: i64, data: Value) -> String {
    json!({ "type": kind.as_str(), "timestamp": iso8601(at_ms), "data": data }).to_string()
}

/// `ms` (unix milliseconds) as `2026-12-07T09:15:02.113Z`.
pub fn iso8601(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// An endpoint events are delivered to, its secret opened.
#[derive(Clone)]
pub struct Target {
    /// Its account.
    pub account: String,
    /// Where it is.
    pub url: String,
    /// Its HMAC key.
    key: Vec<u8>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("account", &self.account)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// The `webhook-signature` of `body` as message `msg_id` sent at `timestamp`.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &str) -> String {
        sign(&self.key, msg_id, timestamp, body)
    }
}

/// The enabled endpoints of every account, as the accounts say now: which an event goes to,
/// and where each is. Made again whenever the accounts change.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    /// Account → its enabled endpoints, each with the types it takes (empty: all).
    routes: HashMap<String, Vec<(String, Vec<EventType>)>>,
    /// Endpoint id → where it is.
    endpoints: HashMap<String, Target>,
}

impl Targets {
    /// The enabled endpoints of `accounts`, their secrets opened with `seal`. An endpoint
    /// whose secret does not open (no key, another key) gets nothing, and says so in the log.
    pub fn of(accounts: &[Account], seal: Option<&SealKey>) -> Targets {
        let mut t = Targets::default();
        for a in accounts {
            for e in a.endpoints.iter().filter(|e| e.enabled) {
                let key = seal
                    .and_then(|s| open(s, &a.slug, &e.secret))
                    .and_then(|s| secret_key(&s));
                let Some(key) = key else {
                    tracing::warn!(account = %a.slug, endpoint = %e.id,
                        "the endpoint's secret does not open with SWITCHBOARD_SECRETS_KEY; no events go to it");
                    continue;
                };
                let types = e.types.iter().filter_map(|t| EventType::parse(t)).collect();
                t.routes
                    .entry(a.slug.to_string())
                    .or_default()
                    .push((e.id.clone(), types));
                t.endpoints.insert(
                    e.id.clone(),
                    Target {
                        account: a.slug.to_string(),
                        url: e.url.clone(),
                        key,
                    },
                );
            }
        }
        t
    }

    /// Where endpoint `id` is, when it is enabled.
    pub fn target(&self, id: &str) -> Option<&Target> {
        self.endpoints.get(id)
    }

    /// The ids of the enabled endpoints.
    pub fn enabled(&self) -> impl Iterator<Item = &str> {
        self.endpoints.keys().map(String::as_str)
    }

    /// The endpoints of `account` that take `kind`.
    fn routes(&self, account: &str, kind: EventType) -> impl Iterator<Item = &str> {
        self.routes
            .get(account)
            .into_iter()
            .flatten()
            .filter(move |(_, types)| types.is_empty() || types.contains(&kind))
            .map(|(id, _)| id.as_str())
    }
}

fn open(
    seal: &SealKey,
    slug: &AccountSlug,
    sealed: &crate::accounts::SealedToken,
) -> Option<String> {
    seal.open(slug, sealed).ok().map(|s| s.expose().to_owned())
}

/// What the calls' records line makes outbox rows with: the endpoints as the accounts say now,
/// and who to wake once rows are written.
#[derive(Debug, Clone)]
pub struct Emitter {
    targets: watch::Receiver<Arc<Targets>>,
    wake: Arc<Notify>,
}

impl Emitter {
    /// Rows from `targets`; [`Emitter::written`] wakes `wake`.
    pub fn new(targets: watch::Receiver<Arc<Targets>>, wake: Arc<Notify>) -> Emitter {
        Emitter { targets, wake }
    }

    /// The rows of one event of `kind` for `account`, ordered within `key`, one per endpoint
    /// that takes it; `data` is made only when one does (an account with no endpoint costs a
    /// map lookup).
    pub fn rows(
        &self,
        kind: EventType,
        account: &str,
        key: &str,
        at_ms: i64,
        data: impl FnOnce() -> Value,
    ) -> Vec<OutboxRow> {
        let targets = self.targets.borrow();
        let mut endpoints = targets.routes(account, kind).peekable();
        if endpoints.peek().is_none() {
            return Vec::new();
        }
        let msg_id = new_msg_id();
        let body = payload(kind, at_ms, data());
        endpoints
            .map(|endpoint| OutboxRow {
                msg_id: msg_id.clone(),
                account: account.to_owned(),
                endpoint: endpoint.to_owned(),
                order_key: key.to_owned(),
                kind: kind.as_str().to_owned(),
                payload: body.clone(),
                created_at: at_ms,
            })
            .collect()
    }

    /// Rows were written: the delivery task looks for them now rather than at its next round.
    pub fn written(&self) {
        self.wake.notify_one();
    }
}

/// When a failed delivery is tried again: after [`RetryPolicy::first`], six times longer each
/// time up to [`RetryPolicy::MAX_GAP`], until the event is [`RetryPolicy::retry_for`] old (24 h
/// by default); then it has failed, and its endpoint is disabled.
///
/// With the defaults the attempts come at 0, 5 s, 35 s, 3.6 min, 21.6 min, 2.2 h, then every
/// 8 h until 24 h have passed: eight or nine attempts in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait after the first failure.
    pub first: Duration,
    /// How long an event is retried, from when it happened (or was redelivered by hand).
    pub retry_for: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first: Duration::from_secs(5),
            retry_for: Duration::from_secs(24 * 3600),
        }
    }
}

impl RetryPolicy {
    /// The longest wait between two attempts.
    pub const MAX_GAP: Duration = Duration::from_secs(8 * 3600);

    /// The wait after failure number `failures` (1 for the first).
    pub fn gap(&self, failures: u32) -> Duration {
        let mut gap = self.first;
        for _ in 1..failures {
            gap = gap.saturating_mul(6);
            if gap >= Self::MAX_GAP {
                return Self::MAX_GAP;
            }
        }
        gap.min(Self::MAX_GAP)
    }

    /// When to try again an event retried since `since` (unix ms) that has just failed for the
    /// `failures`th time at `now`; `None`: it has been retried long enough. The last attempt
    /// comes no later than the end of the window, so the window is used to its end.
    pub fn next_attempt(&self, failures: u32, since: i64, now: i64) -> Option<i64> {
        let end = since.saturating_add(ms(self.retry_for));
        if now >= end {
            return None;
        }
        Some(now.saturating_add(ms(self.gap(failures))).min(end))
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
