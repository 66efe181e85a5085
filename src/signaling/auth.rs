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
//! operation and never across an `.await`; the directory is immutable after start.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tracing::{debug, error, info, warn};

use crate::cluster::Cluster;
use crate::config::PasswordHash;
pub use crate::config::{AuthConfig, Person, Role};
use crate::ids::AgentId;
use crate::signaling::password::{self, Checker, PasswordError, MAX_PASSWORD_BYTES};
use crate::signaling::throttle::{NewBlocks, Policy, SignInStats, SignInThrottle, Verdict};
pub use crate::signaling::tokens::SessionKey;
use crate::signaling::tokens::{Full, SessionLimits, Sessions, Token};

/// The session cookie's name.
pub const COOKIE_NAME: &str = "switchboard_session";

/// Largest `POST /api/login` body, in bytes; a larger one is answered 413.
pub const LOGIN_BODY_MAX: usize = 4096;

/// Longest sign-in name accepted, in bytes (ids are at most 64).
const MAX_ID_BYTES: usize = 64;

/// Longest token looked up; anything longer is no token of ours.
const MAX_TOKEN_BYTES: usize = 128;

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

/// What others may know of a person: no password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonInfo {
    /// The sign-in name.
    pub id: AgentId,
    /// The name shown to others.
    pub name: String,
    /// What they may do.
    pub role: Role,
    /// The queues they take calls from.
    pub queues: Vec<String>,
}

/// A person and how many sessions they have live: an entry of `GET /api/people`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonStatus {
    /// Who.
    #[serde(flatten)]
    pub person: PersonInfo,
    /// Their live sessions (browser tabs, devices).
    pub sessions: usize,
}

#[derive(Debug)]
struct Entry {
    info: PersonInfo,
    hash: PasswordHash,
}

/// A demo person of the sandbox and the password made up for this run. `Debug` redacts it.
#[derive(Clone)]
pub struct DemoSignIn {
    /// The sign-in name.
    pub id: AgentId,
    /// Their role.
    pub role: Role,
    /// The password, valid for this run only.
    pub password: String,
}

impl fmt::Debug for DemoSignIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DemoSignIn")
            .field("id", &self.id)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for DemoSignIn {
    /// `agent1 / Xk3…` `(agent)`: how the sandbox's start-up line shows it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} / {} ({})", self.id, self.password, self.role)
    }
}

/// The sandbox's demo people: agents `agent1` (queues support, sales) and `agent2` (support),
/// and supervisor `super`, each with a random password made up for this run. Only for the
/// sandbox; the caller prints the passwords.
pub async fn demo_people() -> (Vec<Person>, Vec<DemoSignIn>) {
    tokio::task::spawn_blocking(|| {
        use rand::Rng;
        let demo = [
            (
                "agent1",
                "Agent One",
                Role::Agent,
                &["support", "sales"][..],
            ),
            ("agent2", "Agent Two", Role::Agent, &["support"][..]),
            (
                "super",
                "Supervisor",
                Role::Supervisor,
                &["support", "sales"][..],
            ),
        ];
        let mut people = Vec::new();
        let mut sign_ins = Vec::new();
        for (id, name, role, queues) in demo {
            let pw: String = rand::rngs::OsRng
                .sample_iter(&rand::distributions::Alphanumeric)
                .take(12)
                .map(char::from)
                .collect();
            people.push(Person {
                id: AgentId(id.into()),
                name: name.into(),
                role,
                // A 12-character password is neither empty nor too long.
                password_hash: password::hash(&pw).expect("a demo password hashes"),
                queues: queues.iter().map(|q| q.to_string()).collect(),
            });
            sign_ins.push(DemoSignIn {
                id: AgentId(id.into()),
                role,
                password: pw,
            });
        }
        (people, sign_ins)
    })
    .await
    // The closure above does not panic (hashing fixed-size passwords).
    .expect("making the demo people does not panic")
}

/// Hashes a password for `[[people]]` (`switchboard hash-password`). CPU-heavy: not on the
/// async runtime.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    password::hash(password).map(|h| h.as_phc().to_owned())
}

/// Who made a request: the result of the [`Authenticated`] extractor and of
/// [`AuthHandle::authenticate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The person.
    pub person_id: AgentId,
    /// Their role.
    pub role: Role,
    /// The session the request came with (for [`AuthHandle::session_alive`] and sign-out).
    pub session: SessionKey,
}

impl Authenticated {
    /// True when the person may act as `needed`: a supervisor may do all an agent may.
    pub fn has_role(&self, needed: Role) -> bool {
        matches!(
            (self.role, needed),
            (_, Role::Agent) | (Role::Supervisor, Role::Supervisor)
        )
    }

    /// `Ok` when the person may act as `needed`, else [`AuthError::Forbidden`] (403).
    pub fn require(&self, needed: Role) -> Result<(), AuthError> {
        if self.has_role(needed) {
            Ok(())
        } else {
            Err(AuthError::Forbidden { needed })
        }
    }
}

impl<S> FromRequestParts<S> for Authenticated
where
    AuthHandle: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = AuthHandle::from_ref(state);
        let token = token_from(&parts.headers).ok_or(AuthError::Unauthenticated)?;
        auth.authenticate_anywhere(token).await
    }
}

/// A signed-in supervisor; anyone else is answered 403 (or 401 when not signed in).
#[derive(Debug, Clone)]
pub struct RequireSupervisor(pub Authenticated);

impl<S> FromRequestParts<S> for RequireSupervisor
where
    AuthHandle: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let who = Authenticated::from_request_parts(parts, state).await?;
        who.require(Role::Supervisor)?;
        Ok(RequireSupervisor(who))
    }
}

/// A request that is not from a browser page of another origin: its `Origin` header, if any, is
/// the request's own host (switchboard's pages) or one of `SWITCHBOARD_ALLOWED_ORIGINS`. Without
/// `Origin` (a non-browser client with a bearer token; browsers always send it on a WebSocket
/// upgrade and on a POST) it passes. Anything else, `null` included, is answered 403.
#[derive(Debug, Clone, Copy)]
pub struct SameOrigin;

impl<S> FromRequestParts<S> for SameOrigin
where
    AuthHandle: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = AuthHandle::from_ref(state);
        if origin_allowed(parts, &auth.inner.allowed_origins) {
            Ok(SameOrigin)
        } else {
            Err(AuthError::ForeignOrigin)
        }
    }
}

/// See [`SameOrigin`].
fn origin_allowed(parts: &Parts, allowed: &[String]) -> bool {
    let Some(origin) = parts.headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim().to_ascii_lowercase();
    if allowed.contains(&origin) {
        return true;
    }
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => return false,
    };
    // HTTP/1.1 carries the host in `Host`, HTTP/2 in the URI's authority.
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()));
    let Some(host) = host else {
        return false;
    };
    let host = host.trim().to_ascii_lowercase();
    let bare = |a: &str| a.strip_suffix(default_port).unwrap_or(a).to_owned();
    !authority.is_empty() && bare(authority) == bare(&host)
}

/// The token a request carries: `Authorization: Bearer` first, else the session cookie.
pub fn token_from(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim())
            .filter(|t| !t.is_empty());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim())
        .filter(|t| !t.is_empty())
}

/// The outcome of a successful sign-in.
#[derive(Debug)]
pub struct SignedIn {
    /// The session token; hand it to its owner only.
    pub token: Token,
    /// Who signed in.
    pub person: PersonInfo,
    /// How long the token is valid.
    pub expires_in: Duration,
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
            .field("people", &self.inner.people.len())
            .finish_non_exhaustive()
    }
}

struct Inner {
    people: HashMap<AgentId, Arc<Entry>>,
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
        let people = people
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
            .collect();
        AuthHandle {
            inner: Arc::new(Inner {
                people,
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

    /// Checks `id` and `password` (from `client`) and, if right, opens a session. Throttled
    /// names and addresses are refused unchecked; an unknown id costs a check all the same.
    pub async fn sign_in(
        &self,
        id: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<SignedIn, AuthError> {
        // Ids are lower case; someone typing "Alice" means alice.
        let name: String = id.trim().to_ascii_lowercase();
        let (verdict, blocks) = self.throttle().begin(self.now(), &name, client);
        if let Verdict::Blocked { retry_after } = verdict {
            return Err(AuthError::Throttled { retry_after });
        }
        if let Some(retry_after) = self.blocked_elsewhere(&name, client).await {
            self.throttle().abandoned(&name, client);
            return Err(AuthError::Throttled { retry_after });
        }
        let entry = self.inner.people.get(&AgentId(name.clone())).cloned();
        let hash = entry
            .as_ref()
            .map_or(&self.inner.dummy, |e| &e.hash)
            .clone();
        let right = match self.check(hash, password.to_owned()).await {
            Ok(right) => right,
            Err(e) => {
                self.throttle().abandoned(&name, client);
                return Err(e);
            }
        };
        let Some(entry) = entry.filter(|_| right) else {
            let blocks = self.throttle().failed(self.now(), &name, blocks);
            self.log_failure(&name, client, blocks);
            self.count_failure_elsewhere(&name, client).await;
            return Err(AuthError::BadCredentials);
        };
        self.throttle().succeeded(&name, client);
        self.forgive_elsewhere(&name, client).await;
        let token = Token::generate();
        self.sessions()
            .create(self.now(), &entry.info.id, token.key())?;
        if let Some(cluster) = self.inner.cluster.get() {
            if let Err(e) = cluster
                .put_session(&token.key().hex(), &entry.info.id.0, self.inner.ttl)
                .await
            {
                warn!(error = %e, "session not shared with the other nodes; it works on this one");
            }
        }
        info!(person = %entry.info.id, role = %entry.info.role, "signed in");
        Ok(SignedIn {
            token,
            person: entry.info.clone(),
            expires_in: self.inner.ttl,
        })
    }

    /// The block another node's tally puts on this name or address, if any (Redis down: none,
    /// this node's own throttle still applies).
    async fn blocked_elsewhere(&self, name: &str, client: IpAddr) -> Option<Duration> {
        let cluster = self.inner.cluster.get()?;
        let addr = client.to_string();
        let by_name = cluster.sign_in_name_blocked(name, &addr).await;
        let by_addr = cluster.sign_in_blocked("addr", &addr).await;
        match (by_name, by_addr) {
            (Ok(a), Ok(b)) => a.max(b),
            (Err(e), _) | (_, Err(e)) => {
                debug!(error = %e, "shared sign-in tally unavailable");
                None
            }
        }
    }

    /// Adds a failure to the cluster's tallies of this name, this address, and the two together.
    async fn count_failure_elsewhere(&self, name: &str, client: IpAddr) {
        let Some(cluster) = self.inner.cluster.get() else {
            return;
        };
        let counted = cluster
            .sign_in_failed_as(
                name,
                &client.to_string(),
                &Policy::NAMES,
                &Policy::ADDRESSES,
            )
            .await;
        if let Err(e) = counted {
            debug!(error = %e, "shared sign-in tally unavailable");
        }
    }

    /// Takes what this address failed for this name off the cluster's tally of the name.
    async fn forgive_elsewhere(&self, name: &str, client: IpAddr) {
        let Some(cluster) = self.inner.cluster.get() else {
            return;
        };
        let forgiven = cluster
            .sign_in_succeeded_as(name, &client.to_string(), &Policy::NAMES)
            .await;
        if let Err(e) = forgiven {
            debug!(error = %e, "shared sign-in tally unavailable");
        }
    }

    fn log_failure(&self, name: &str, client: IpAddr, blocks: NewBlocks) {
        // An unknown id is not logged: it may be a password typed in the wrong box.
        let known = self.inner.people.contains_key(&AgentId(name.to_owned()));
        let person = if known { name } else { "(unknown id)" };
        info!(person, "sign-in failed");
        if let Some(d) = blocks.name {
            warn!(
                person,
                block_secs = whole_secs(d),
                "repeated failed sign-ins: this name is blocked for a while"
            );
        }
        if let Some(d) = blocks.address {
            warn!(
                %client,
                block_secs = whole_secs(d),
                "repeated failed sign-ins: this address is blocked for a while"
            );
        }
    }

    /// Checks a password on the checker's threads; refused at once (503) when its queue is full.
    async fn check(&self, hash: PasswordHash, password: String) -> Result<bool, AuthError> {
        let answer = self.inner.checker.submit(hash, password).map_err(|_| {
            self.inner.busy.fetch_add(1, Ordering::Relaxed);
            AuthError::Busy
        })?;
        answer.await.map_err(|_| AuthError::PasswordCheck)
    }

    /// The hash an unknown id is checked against (the tests compare its parameters).
    #[doc(hidden)]
    pub fn dummy_hash(&self) -> &PasswordHash {
        &self.inner.dummy
    }

    /// Who holds `token`, if it is a live session's.
    pub fn authenticate(&self, token: &str) -> Result<Authenticated, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Unauthenticated);
        }
        let key = SessionKey::of(token);
        let (person_id, _expires) = self
            .sessions()
            .resolve(self.now(), &key)
            .ok_or(AuthError::Unauthenticated)?;
        let role = self
            .inner
            .people
            .get(&person_id)
            .map(|e| e.info.role)
            // The directory never changes, and sessions are only made for people in it.
            .ok_or(AuthError::Unauthenticated)?;
        Ok(Authenticated {
            person_id,
            role,
            session: key,
        })
    }

    /// Who holds `token`: a session of this node's, or with several nodes one made on
    /// another node (then filed here for the time it has left). A session signed out on
    /// another node is refused here too; with Redis unreachable this node's own table decides.
    pub async fn authenticate_anywhere(&self, token: &str) -> Result<Authenticated, AuthError> {
        let local = self.authenticate(token);
        let Some(cluster) = self.inner.cluster.get() else {
            return local;
        };
        match local {
            Ok(who) => {
                return if self.session_alive_anywhere(&who.session).await {
                    Ok(who)
                } else {
                    Err(AuthError::Unauthenticated)
                };
            }
            Err(AuthError::Unauthenticated) if token.len() <= MAX_TOKEN_BYTES => {}
            other => return other,
        }
        let key = SessionKey::of(token);
        let (person, left) = match cluster.session(&key.hex()).await {
            Ok(Some(found)) => found,
            Ok(None) => return Err(AuthError::Unauthenticated),
            Err(e) => {
                warn!(error = %e, "shared sessions unavailable; only this node's are known");
                return Err(AuthError::Unauthenticated);
            }
        };
        let person = AgentId(person);
        if !self.inner.people.contains_key(&person) {
            // Another deployment's directory, or a person removed since: not ours.
            return Err(AuthError::Unauthenticated);
        }
        self.sessions().adopt(self.now(), &person, key, left)?;
        debug!(%person, "session made on another node taken up here");
        self.authenticate(token)
    }

    /// True while the session is live (not signed out, not expired).
    pub fn session_alive(&self, session: &SessionKey) -> bool {
        self.sessions().resolve(self.now(), session).is_some()
    }

    /// As [`session_alive`](Self::session_alive), and with several nodes not signed out on
    /// another node either (Redis unreachable: this node's word stands).
    pub async fn session_alive_anywhere(&self, session: &SessionKey) -> bool {
        if !self.session_alive(session) {
            return false;
        }
        let Some(cluster) = self.inner.cluster.get() else {
            return true;
        };
        match cluster.session(&session.hex()).await {
            Ok(Some(_)) => true,
            Ok(None) => {
                self.sessions().remove(session);
                false
            }
            Err(_) => true,
        }
    }

    /// Ends a session, on every node; true if it was live here.
    pub async fn sign_out(&self, session: &SessionKey) -> bool {
        if let Some(cluster) = self.inner.cluster.get() {
            if let Err(e) = cluster.drop_session(&session.hex()).await {
                warn!(error = %e, "sign-out not shared with the other nodes");
            }
        }
        match self.sessions().remove(session) {
            Some(person) => {
                info!(%person, "signed out");
                true
            }
            None => false,
        }
    }

    /// Ends every session of `person`, on every node; returns how many there were here.
    pub async fn sign_out_everywhere(&self, person: &AgentId) -> usize {
        if let Some(cluster) = self.inner.cluster.get() {
            if let Err(e) = cluster.drop_sessions_of(&person.0).await {
                warn!(error = %e, "sign-out not shared with the other nodes");
            }
        }
        self.sessions().remove_person(person)
    }

    /// A person of the directory.
    pub fn person(&self, id: &AgentId) -> Option<PersonInfo> {
        self.inner.people.get(id).map(|e| e.info.clone())
    }

    /// Everyone in the directory, by id.
    pub fn people(&self) -> Vec<PersonInfo> {
        let mut all: Vec<_> = self.inner.people.values().map(|e| e.info.clone()).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// The counters so far.
    pub fn stats(&self) -> AuthStats {
        AuthStats {
            sign_in: self.throttle().stats(),
            sessions: self.sessions().len(),
            busy: self.inner.busy.load(Ordering::Relaxed),
        }
    }

    fn cookie(&self, token: &str, max_age: Duration) -> HeaderValue {
        let secure = if self.inner.cookie_secure {
            "; Secure"
        } else {
            ""
        };
        let value = format!(
            "{COOKIE_NAME}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            max_age.as_secs()
        );
        // A token is hex and the rest is fixed ASCII.
        HeaderValue::from_str(&value).expect("a cookie of hex and ASCII is a header value")
    }

    /// The address a sign-in comes from, for the throttle.
    fn client_of(&self, parts: &Parts) -> IpAddr {
        if self.inner.trust_forwarded_for {
            if let Some(ip) = forwarded_client(&parts.headers) {
                return ip;
            }
        }
        parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| a.ip())
            // Served without connect info (unit tests): everyone shares one address.
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }
}

/// The client's address a trusted proxy appended: the last entry of the last
/// `X-Forwarded-For` header (entries before it are the client's own word).
pub fn forwarded_client(headers: &HeaderMap) -> Option<IpAddr> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|ip| ip.trim().parse().ok())
}

/// The client's address, as [`AuthHandle::client_of`] sees it.
struct ClientAddr(IpAddr);

impl FromRequestParts<AuthHandle> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        auth: &AuthHandle,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(auth.client_of(parts)))
    }
}

/// The routes of sign-in: `POST /api/login`, `POST /api/logout`, `GET /api/me`, and the
/// supervisors' `GET /api/people`.
pub fn router(auth: AuthHandle) -> Router {
    Router::new()
        .route(
            "/api/login",
            post(login).layer(tower_http::limit::RequestBodyLimitLayer::new(
                LOGIN_BODY_MAX,
            )),
        )
        .route("/api/logout", post(logout))
        .route("/api/me", get(me))
        .route("/api/people", get(people))
        .with_state(auth)
}

/// Body of `POST /api/login`. No `Debug`: it holds a password.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// The sign-in name.
    pub id: String,
    /// The password.
    pub password: String,
}

/// Answer of `POST /api/login`; the token is also set as the session cookie.
#[derive(Serialize, Deserialize)]
pub struct LoginAnswer {
    /// The session token, for `Authorization: Bearer`.
    pub token: String,
    /// Seconds until it expires.
    pub expires_in_secs: u64,
    /// Who signed in.
    pub person: PersonInfo,
}

impl fmt::Debug for LoginAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginAnswer")
            .field("token", &"[redacted]")
            .field("expires_in_secs", &self.expires_in_secs)
            .field("person", &self.person)
            .finish()
    }
}

async fn login(
    State(auth): State<AuthHandle>,
    ClientAddr(client): ClientAddr,
    body: Result<Json<Login>, JsonRejection>,
) -> Result<Response, AuthError> {
    let Json(req) = body?;
    if req.id.trim().is_empty() || req.id.len() > MAX_ID_BYTES {
        return Err(AuthError::Invalid("id must be 1 to 64 characters"));
    }
    if req.password.is_empty() || req.password.len() > MAX_PASSWORD_BYTES {
        return Err(AuthError::Invalid("password must be 1 to 1024 bytes"));
    }
    let signed_in = auth.sign_in(&req.id, &req.password, client).await?;
    let cookie = auth.cookie(signed_in.token.expose(), signed_in.expires_in);
    let answer = LoginAnswer {
        token: signed_in.token.expose().to_owned(),
        expires_in_secs: signed_in.expires_in.as_secs(),
        person: signed_in.person,
    };
    Ok((
        [
            (header::SET_COOKIE, cookie),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Json(answer),
    )
        .into_response())
}

/// Signing out is refused to pages of other origins ([`SameOrigin`]): the cookie is
/// `SameSite=Strict` already, and the `Origin` check also holds where a browser or a proxy does
/// not honour it, whatever the body's content type (a cross-site form included).
async fn logout(
    State(auth): State<AuthHandle>,
    _origin: SameOrigin,
    who: Authenticated,
) -> Response {
    auth.sign_out(&who.session).await;
    (
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, auth.cookie("", Duration::ZERO))],
    )
        .into_response()
}

async fn me(
    State(auth): State<AuthHandle>,
    who: Authenticated,
) -> Result<Json<PersonInfo>, AuthError> {
    auth.person(&who.person_id)
        .map(Json)
        .ok_or(AuthError::Unauthenticated)
}

async fn people(
    State(auth): State<AuthHandle>,
    RequireSupervisor(_): RequireSupervisor,
) -> Json<Vec<PersonStatus>> {
    let now = auth.now();
    let sessions = auth.sessions();
    let all = auth
        .people()
        .into_iter()
        .map(|person| PersonStatus {
            sessions: sessions.count_of(now, &person.id),
            person,
        })
        .collect();
    Json(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forwarded_client_is_the_proxys_last_entry() {
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "1.1.1.1, 2.2.2.2".parse().unwrap());
        h.append("x-forwarded-for", "9.9.9.9, 3.3.3.3".parse().unwrap());
        assert_eq!(forwarded_client(&h), Some([3, 3, 3, 3].into()));
        assert_eq!(forwarded_client(&HeaderMap::new()), None);
    }

    #[test]
    fn the_token_comes_from_bearer_first_then_the_cookie() {
        let mut h = HeaderMap::new();
        assert_eq!(token_from(&h), None);
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; switchboard_session=abc ; c=d"),
        );
        assert_eq!(token_from(&h), Some("abc"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer xyz"),
        );
        assert_eq!(token_from(&h), Some("xyz"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic xyz"));
        assert_eq!(token_from(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer  "));
        assert_eq!(token_from(&h), None);
    }

    #[test]
    fn a_supervisor_may_do_what_an_agent_may() {
        let who = |role| Authenticated {
            person_id: AgentId("x".into()),
            role,
            session: SessionKey::of("t"),
        };
        assert!(who(Role::Supervisor).has_role(Role::Agent));
        assert!(who(Role::Supervisor).has_role(Role::Supervisor));
        assert!(who(Role::Agent).has_role(Role::Agent));
        assert!(matches!(
            who(Role::Agent).require(Role::Supervisor),
            Err(AuthError::Forbidden {
                needed: Role::Supervisor
            })
        ));
    }

    #[test]
    fn the_origin_must_be_this_host_or_allowed() {
        let parts = |origin: Option<&str>, host: &str| {
            let mut req = axum::http::Request::builder()
                .uri("/ws")
                .header("host", host);
            if let Some(o) = origin {
                req = req.header("origin", o);
            }
            req.body(()).unwrap().into_parts().0
        };
        let allowed = vec!["https://crm.example.com".to_owned()];
        for (origin, host, ok) in [
            (None, "sb.example.com", true),
            (Some("https://sb.example.com"), "sb.example.com", true),
            (Some("https://SB.example.com:443"), "sb.example.com", true),
            (Some("http://127.0.0.1:8080"), "127.0.0.1:8080", true),
            (Some("https://crm.example.com"), "sb.example.com", true),
            (Some("https://evil.example"), "sb.example.com", false),
            (Some("null"), "sb.example.com", false),
            (Some("http://127.0.0.1:8081"), "127.0.0.1:8080", false),
            (
                Some("https://sb.example.com.evil.example"),
                "sb.example.com",
                false,
            ),
            (Some("file://"), "sb.example.com", false),
        ] {
            assert_eq!(
                origin_allowed(&parts(origin, host), &allowed),
                ok,
                "{origin:?} on {host}"
            );
        }
    }

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(whole_secs(Duration::from_millis(1)), 1);
        assert_eq!(whole_secs(Duration::from_millis(1500)), 2);
        assert_eq!(whole_secs(Duration::from_secs(4)), 4);
        assert_eq!(whole_secs(Duration::ZERO), 1);
    }

    fn config(ttl: Duration) -> AuthConfig {
        AuthConfig::with_people(vec![], ttl)
    }

    /// (m, t, p) of a PHC string.
    fn params_of(phc: &str) -> (u32, u32, u32) {
        let parsed = argon2::password_hash::PasswordHash::new(phc).unwrap();
        let p = argon2::Params::try_from(&parsed).unwrap();
        (p.m_cost(), p.t_cost(), p.p_cost())
    }

    #[test]
    fn an_unknown_id_is_checked_against_the_costliest_configured_parameters() {
        // Hashes made by other tools than `switchboard hash-password` (the README accepts any
        // argon2id PHC string): a made-up id must cost what the costliest of them costs.
        let made = |m, t, p, pw: &str| {
            use argon2::password_hash::{PasswordHasher, SaltString};
            let params = argon2::Params::new(m, t, p, None).unwrap();
            let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
            let phc =
                argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                    .hash_password(pw.as_bytes(), &salt)
                    .unwrap()
                    .to_string();
            PasswordHash::parse(&phc).unwrap()
        };
        let person = |id: &str, hash| Person {
            id: AgentId(id.into()),
            name: id.into(),
            role: Role::Agent,
            password_hash: hash,
            queues: vec!["support".into()],
        };
        let people = vec![
            person("a", made(2048, 3, 1, "a")),
            person("b", made(4096, 1, 2, "b")),
        ];
        let auth = AuthHandle::new(&config(Duration::from_secs(60)), people);
        assert_eq!(params_of(auth.dummy_hash().as_phc()), (4096, 3, 2));
        // Not the fixed OWASP dummy of before, whose cost had nothing to do with these.
        assert_ne!(params_of(auth.dummy_hash().as_phc()), password::PARAMS);
    }

    #[tokio::test]
    async fn a_token_expires_after_the_session_lifetime() {
        let (people, demo) = demo_people().await;
        let auth = AuthHandle::new(&config(Duration::from_secs(60)), people);
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let signed = auth.sign_in("agent1", &demo[0].password, lo).await.unwrap();
        let who = auth.authenticate(signed.token.expose()).unwrap();
        assert_eq!(who.person_id, AgentId("agent1".into()));
        assert_eq!(who.role, Role::Agent);
        auth.advance_clock(Duration::from_secs(59));
        assert!(auth.session_alive(&who.session));
        auth.advance_clock(Duration::from_secs(1));
        assert!(!auth.session_alive(&who.session));
        assert!(matches!(
            auth.authenticate(signed.token.expose()),
            Err(AuthError::Unauthenticated)
        ));
        assert_eq!(auth.stats().sessions, 0);
        // An unknown id and a wrong password get the same answer.
        assert!(matches!(
            auth.sign_in("nobody", "x", lo).await,
            Err(AuthError::BadCredentials)
        ));
        assert!(matches!(
            auth.sign_in("agent1", "x", lo).await,
            Err(AuthError::BadCredentials)
        ));
        assert_eq!(auth.stats().sign_in.failures, 2);
    }
}
