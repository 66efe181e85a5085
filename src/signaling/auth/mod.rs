//! People and sign-in: the directory of people, their sessions, the sign-in throttle, the
//! `/api/login`, `/api/logout`, `/api/me` and `/api/people` routes, and the extractors that
//! guard every other route.
//!
//! # Guarding a route in another router
//!
//! [`Authenticated`] (any signed-in person) and [`RequireSupervisor`] are axum extractors. They
//! find the [`AuthHandle`] in the router's state through [`FromRef`], so a router whose state
//! is the handle itself, or a struct holding one, can use them:
//!
//! ```ignore
//! #[derive(Clone, axum::extract::FromRef)]
//! struct WsState { auth: AuthHandle, calls: CallsHandle }
//!
//! async fn ws(who: Authenticated, State(calls): State<CallsHandle>, …) { … who.person_id … }
//! async fn barge(RequireSupervisor(who): RequireSupervisor, …) { … }
//!
//! Router::new().route("/ws", get(ws)).with_state(WsState { auth, calls })
//! ```
//!
//! A request without a valid token (`Authorization: Bearer …` or the `switchboard_session`
//! cookie) is answered 401 with a JSON error before the handler runs; a role it lacks, 403. A
//! long-lived connection (the WebSocket) keeps [`Authenticated::session`] and asks
//! [`AuthHandle::session_alive`] to learn when it was signed out or expired.
//!
//! State: the session table and the throttle are each behind a std `Mutex`, held for a map
//! operation and never across an `.await`; the directory of people is replaced whole when it
//! changes (an `Arc` behind a `RwLock`, held only to clone or swap it).
//!
//! # Layout
//!
//! *Owns* (here): [`AuthHandle`] (the component: its state, construction, clock and counters)
//! and [`AuthError`] (each refusal and its HTTP answer). The rest, one submodule each:
//! - `login`: signing in (password check, throttle, the cluster's tallies);
//! - `session`: who holds a token, sessions alive, signing out;
//! - `directory`: what others see of a person, and the sandbox's demo people;
//! - `extract`: the extractors guarding routes, and where a request comes from;
//! - `cookie`: the session token on the wire (bearer or cookie in, `Set-Cookie` out);
//! - `routes`: the `/api/login`, `/api/logout`, `/api/me` and `/api/people` handlers.
//!
//! *Does not touch*: calls, queues, presence or media; the rules of the pure cores it drives
//! (the session table in `tokens`, the throttle in `throttle`, the checker in `password`).
//!
//! [`FromRef`]: axum::extract::FromRef

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::cluster::Cluster;
use crate::config::PasswordHash;
pub use crate::config::{AuthConfig, Person, Role};
use crate::ids::AgentId;
use crate::signaling::password::{self, Checker};
use crate::signaling::throttle::{SignInStats, SignInThrottle};
pub use crate::signaling::tokens::SessionKey;
use crate::signaling::tokens::{Full, SessionLimits, Sessions};

mod cookie;
mod directory;
mod extract;
mod login;
mod routes;
mod session;

pub use cookie::{token_from, COOKIE_NAME, WS_PROTOCOL};
pub use directory::{demo_people, hash_password, DemoSignIn, PersonInfo, PersonStatus};
pub use extract::{forwarded_client, Authenticated, RequireSupervisor, SameOrigin};
pub use login::SignedIn;
pub(crate) use routes::AuthDoc;
pub use routes::{router, Login, LoginAnswer, LOGIN_BODY_MAX};

/// Why a request was refused. Each maps to its status in [`IntoResponse`].
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No token, or one that is unknown, expired or signed out (401).
    #[error(
        "sign in first: no valid session token (Authorization: Bearer, or the session cookie)"
    )]
    Unauthenticated,
    /// Unknown id or wrong password; one message for both (401).
    #[error("wrong id or password")]
    BadCredentials,
    /// Too many failed sign-ins for this name or from this address (429, `Retry-After`).
    #[error("too many failed sign-ins; try again in {} s", whole_secs(*retry_after))]
    Throttled {
        /// How long until the next attempt is checked.
        retry_after: Duration,
    },
    /// The person's role may not do this (403).
    #[error("this needs the {needed} role")]
    Forbidden {
        /// The role needed.
        needed: Role,
    },
    /// A browser page of another origin (`Origin` neither this host nor allowed) (403).
    #[error("requests from this page's origin are not allowed")]
    ForeignOrigin,
    /// Too many password checks are waiting already (503).
    #[error("too many sign-ins in progress; try again in a moment")]
    Busy,
    /// The session table is full (503).
    #[error("cannot sign in now: {0}")]
    TooManySessions(#[from] Full),
    /// The body is not the JSON asked for (400, 413, 415 or 422, as axum says).
    #[error("malformed request: {}", .0.body_text())]
    Malformed(#[from] JsonRejection),
    /// A field is out of range (422).
    #[error("invalid request: {0}")]
    Invalid(&'static str),
    /// The password check did not finish (argon2 panicked on its worker); our fault (500).
    #[error("the password check did not finish")]
    PasswordCheck,
}

fn whole_secs(d: Duration) -> u64 {
    // Round up, and never say 0: "try again in 0 s" would be retried at once.
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let status = match &self {
            AuthError::Unauthenticated | AuthError::BadCredentials => StatusCode::UNAUTHORIZED,
            AuthError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            AuthError::Forbidden { .. } | AuthError::ForeignOrigin => StatusCode::FORBIDDEN,
            AuthError::Busy | AuthError::TooManySessions(_) => StatusCode::SERVICE_UNAVAILABLE,
            AuthError::Malformed(r) => r.status(),
            AuthError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AuthError::PasswordCheck => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let extra = match &self {
            AuthError::Unauthenticated | AuthError::BadCredentials => {
                Some((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")))
            }
            AuthError::Throttled { retry_after } => Some((
                header::RETRY_AFTER,
                HeaderValue::from(whole_secs(*retry_after)),
            )),
            AuthError::Busy => Some((header::RETRY_AFTER, HeaderValue::from(1u64))),
            _ => None,
        };
        let error = match &self {
            AuthError::PasswordCheck => {
                error!(error = %self, "password check failed");
                "internal error".to_owned()
            }
            AuthError::TooManySessions(_) => {
                warn!(error = %self, %status, "sign-in refused");
                self.to_string()
            }
            // Counted where they happen; a stream of them must not become a stream of lines.
            _ => {
                debug!(error = %self, %status, "request refused");
                self.to_string()
            }
        };
        let mut resp = (status, Json(ErrorBody { error })).into_response();
        let headers = resp.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some((name, value)) = extra {
            headers.insert(name, value);
        }
        resp
    }
}

#[derive(Debug)]
struct Entry {
    info: PersonInfo,
    hash: PasswordHash,
}

/// Counters of sign-in, read with [`AuthHandle::stats`]; the metrics issue exports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthStats {
    /// Sign-ins that succeeded, failed, and were throttled.
    pub sign_in: SignInStats,
    /// Sessions held (expired ones not yet noticed included).
    pub sessions: usize,
    /// Sign-ins refused because too many password checks were waiting.
    pub busy: u64,
}

/// The sign-in component: people, sessions and the throttle. Cheap to clone.
#[derive(Clone)]
pub struct AuthHandle {
    inner: Arc<Inner>,
}

impl fmt::Debug for AuthHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthHandle")
            .field("people", &self.directory().len())
            .finish_non_exhaustive()
    }
}

/// Everyone who may sign in, by id.
type People = HashMap<AgentId, Arc<Entry>>;

struct Inner {
    /// Replaced whole when an account's people change ([`AuthHandle::set_people`]); read
    /// under the lock for as long as it takes to clone the `Arc`.
    people: RwLock<Arc<People>>,
    /// Counts the times sessions were ended for a change of people: open WebSockets follow it
    /// to say `signed_out` at once instead of at their next check.
    revoked: watch::Sender<u64>,
    /// Whose sign-in a change of people withdrew (until they sign in again): their sessions
    /// ended by someone else's doing, not their own sign-out.
    withdrawn: Mutex<std::collections::HashSet<AgentId>>,
    /// Sessions ended because their holder refreshed them: the holder goes on with a new one,
    /// so a socket still open on the old one is not a sign-out (a call in progress waits for
    /// the new socket, as for a page reload). Taken when the socket notices; bounded.
    superseded: Mutex<std::collections::HashSet<SessionKey>>,
    dummy: PasswordHash,
    sessions: Mutex<Sessions>,
    throttle: Mutex<SignInThrottle>,
    ttl: Duration,
    cookie_secure: bool,
    trust_forwarded_for: bool,
    allowed_origins: Vec<String>,
    checker: Checker,
    busy: AtomicU64,
    /// Added to the system clock; only [`AuthHandle::advance_clock`] (tests) changes it.
    clock_skew_ns: AtomicU64,
    /// With several nodes: sessions and failed-sign-in tallies shared through Redis.
    cluster: OnceLock<Cluster>,
}

impl AuthHandle {
    /// The component for `people` with the session settings of `config` (its own `people`
    /// are not read: the caller passes them, or the sandbox's demo people).
    pub fn new(config: &AuthConfig, people: Vec<Person>) -> AuthHandle {
        Self::with_limits(config, people, SessionLimits::default())
    }

    /// As [`new`](Self::new), with other bounds on sessions.
    pub fn with_limits(
        config: &AuthConfig,
        people: Vec<Person>,
        limits: SessionLimits,
    ) -> AuthHandle {
        let dummy = password::dummy_for(people.iter().map(|p| &p.password_hash));
        AuthHandle {
            inner: Arc::new(Inner {
                people: RwLock::new(Arc::new(entries(people))),
                revoked: watch::Sender::new(0),
                withdrawn: Mutex::default(),
                superseded: Mutex::default(),
                dummy,
                sessions: Mutex::new(Sessions::new(config.session_ttl, limits)),
                throttle: Mutex::new(SignInThrottle::default()),
                ttl: config.session_ttl,
                cookie_secure: config.cookie_secure,
                trust_forwarded_for: config.trust_forwarded_for,
                allowed_origins: config.allowed_origins.clone(),
                checker: Checker::new(config.password_workers, config.password_queue),
                busy: AtomicU64::new(0),
                clock_skew_ns: AtomicU64::new(0),
                cluster: OnceLock::new(),
            }),
        }
    }

    /// Everyone who may sign in now.
    fn directory(&self) -> Arc<People> {
        // Nothing panics while holding the lock; a poisoned map is still a valid map.
        self.inner
            .people
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces everyone who may sign in (an account's people changed). The sessions of a
    /// person who is gone (removed, disabled) or whose role or password changed end at once, on
    /// every node; open WebSockets learn it through [`AuthHandle::revocations`]. A change of
    /// name or queues keeps the sessions (the call machines move their queues at once).
    /// Returns the people whose sessions ended.
    pub async fn set_people(&self, people: Vec<Person>) -> Vec<AgentId> {
        let new = Arc::new(entries(people));
        let old = std::mem::replace(
            &mut *self.inner.people.write().unwrap_or_else(|p| p.into_inner()),
            new.clone(),
        );
        let ended: Vec<AgentId> = old
            .iter()
            .filter(|(id, was)| {
                new.get(*id)
                    .is_none_or(|now| now.info.role != was.info.role || now.hash != was.hash)
            })
            .map(|(id, _)| id.clone())
            .collect();
        self.inner
            .withdrawn
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(ended.iter().cloned());
        let mut removed = 0;
        for person in &ended {
            removed += self.sign_out_everywhere(person).await;
        }
        if removed > 0 {
            self.inner.revoked.send_modify(|n| *n += 1);
            info!(
                people = ended.len(),
                sessions = removed,
                "sessions ended: their people changed"
            );
        }
        ended
    }

    /// Ends every session of `person`, on every node, by someone else's doing (the host's
    /// backend, an admin): open WebSockets are told at once, and a call they are on goes back
    /// to its queue as for a withdrawn sign-in. Returns how many were live here.
    pub async fn end_sessions(&self, person: &AgentId) -> usize {
        self.inner
            .withdrawn
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(person.clone());
        let n = self.sign_out_everywhere(person).await;
        self.inner.revoked.send_modify(|r| *r += 1);
        info!(%person, sessions = n, "sessions ended by the host");
        n
    }

    /// True when `person`'s sign-in was withdrawn by a change of people (and they have not
    /// signed in since): what ended their session was not their own doing.
    pub fn withdrawn(&self, person: &AgentId) -> bool {
        self.inner
            .withdrawn
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(person)
    }

    /// The session `old` ended because its holder refreshed it (see `superseded`).
    fn supersede(&self, old: &SessionKey) {
        let mut s = self
            .inner
            .superseded
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Sockets take theirs within seconds; one that never does must not grow this.
        if s.len() >= 10_000 {
            s.clear();
        }
        s.insert(*old);
    }

    /// True (once) when `session` ended because its holder refreshed it: not a sign-out.
    pub fn take_superseded(&self, session: &SessionKey) -> bool {
        self.inner
            .superseded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(session)
    }

    /// `person` signed in again: a later end of their session is theirs.
    fn restored(&self, person: &AgentId) {
        self.inner
            .withdrawn
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(person);
    }

    /// Bumped each time [`AuthHandle::set_people`] ended sessions: a long-lived connection
    /// checks its session when it changes.
    pub fn revocations(&self) -> watch::Receiver<u64> {
        self.inner.revoked.subscribe()
    }

    /// Shares sessions and failed-sign-in tallies with the other nodes from now on: a session
    /// made on any node works here, a sign-out anywhere ends it here, and failures on every
    /// node count toward one block. This node's own table stays the first word (a Redis
    /// outage signs nobody out; sessions made meanwhile work on this node only).
    pub fn share_with(&self, cluster: Cluster) {
        let _ = self.inner.cluster.set(cluster);
    }

    fn now(&self) -> Instant {
        Instant::now() + Duration::from_nanos(self.inner.clock_skew_ns.load(Ordering::Relaxed))
    }

    /// Moves this component's clock forward by `by`: sessions expire and blocks lift as if
    /// that time had passed. For tests: not in the release build.
    #[cfg(any(test, feature = "test-support"))]
    pub fn advance_clock(&self, by: Duration) {
        let ns = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.inner.clock_skew_ns.fetch_add(ns, Ordering::Relaxed);
    }

    fn sessions(&self) -> MutexGuard<'_, Sessions> {
        // Nothing panics while holding the lock; a poisoned table is still a valid table.
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn throttle(&self) -> MutexGuard<'_, SignInThrottle> {
        // As for `sessions`.
        self.inner
            .throttle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The hash an unknown id is checked against (the tests compare its parameters).
    #[doc(hidden)]
    pub fn dummy_hash(&self) -> &PasswordHash {
        &self.inner.dummy
    }

    /// The counters so far.
    pub fn stats(&self) -> AuthStats {
        AuthStats {
            sign_in: self.throttle().stats(),
            sessions: self.sessions().len(),
            busy: self.inner.busy.load(Ordering::Relaxed),
        }
    }
}

fn entries(people: Vec<Person>) -> People {
    people
        .into_iter()
        .map(|p| {
            let entry = Entry {
                info: PersonInfo {
                    id: p.id.clone(),
                    name: p.name,
                    role: p.role,
                    queues: p.queues,
                },
                hash: p.password_hash,
            };
            (p.id, Arc::new(entry))
        })
        .collect()
}

/// What the submodules' tests build the component from.
#[cfg(test)]
mod fixtures {
    use super::*;

    pub(super) fn config(ttl: Duration) -> AuthConfig {
        AuthConfig::with_people(vec![], ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(whole_secs(Duration::from_millis(1)), 1);
        assert_eq!(whole_secs(Duration::from_millis(1500)), 2);
        assert_eq!(whole_secs(Duration::from_secs(4)), 4);
        assert_eq!(whole_secs(Duration::ZERO), 1);
    }
}
