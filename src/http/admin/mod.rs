//! `/api/v1/accounts`: the operator's API for accounts (issue 23). Who runs the deployment
//! creates a business's account, lists them and reads one, with `Authorization: Bearer KEY`
//! (`SWITCHBOARD_OPERATOR_KEY`). Without a key configured the routes answer 404: the API is off.
//!
//! *Owns*: the JSON shapes of the API and the mapping of refusals to statuses (401 no or wrong
//! key, 404 no such account, 409 a slug or number taken, 413 too large, 422 a field refused —
//! always naming the field). *Does not touch*: the accounts' rules (`crate::accounts`) or
//! their storage (`crate::store`).
//!
//! Request bodies take no field the API does not know: a typo is refused, never ignored.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::accounts::{
    Account, AccountError, AccountSlug, CallSettings, NumberRoute, QueueDef, QueuePolicy, SealKey,
};
use crate::config::{defaults, Role, Secret};
use crate::signaling::auth::AuthHandle;
use crate::store::{StoreError, StoreHandle};

mod account;
mod callbacks;
mod endpoints;
mod sessions;

/// The accounts API's part of the OpenAPI document ([`crate::http::openapi`]).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list, one, create),
    components(schemas(
        ErrorBody,
        NewAccount,
        AccountJson,
        NumberJson,
        QueueJson,
        PolicyName,
        SettingsJson,
        PersonJson
    ))
)]
pub(crate) struct Doc;

/// Every route of the accounts API in the OpenAPI document, this part and the account's.
pub(crate) fn doc() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    let mut d = Doc::openapi();
    d.merge(account::Doc::openapi());
    d.merge(sessions::Doc::openapi());
    d.merge(endpoints::Doc::openapi());
    d.merge(callbacks::Doc::openapi());
    d
}

/// How long a change waits to be applied on this node before its answer goes anyway.
const APPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Tells the running call centre that accounts changed: this node at once, and every other
/// node through Redis (each reads them again from the database).
#[derive(Clone, Debug)]
pub struct AccountsChanged {
    local: Arc<tokio::sync::Notify>,
    cluster: Option<crate::cluster::Cluster>,
    /// Changes announced so far on this node.
    asked: Arc<std::sync::atomic::AtomicU64>,
    /// How many of them the running call centre has applied (see [`AccountsChanged::asked`]).
    applied: tokio::sync::watch::Receiver<u64>,
}

impl AccountsChanged {
    /// Wakes `local`, and waits for `applied` to count the change; with several nodes,
    /// announces it on `cluster` too.
    pub fn new(
        local: Arc<tokio::sync::Notify>,
        cluster: Option<crate::cluster::Cluster>,
        applied: tokio::sync::watch::Receiver<u64>,
    ) -> AccountsChanged {
        AccountsChanged {
            local,
            cluster,
            asked: Arc::default(),
            applied,
        }
    }

    /// How many changes were announced on this node: whoever applies them reads this before
    /// reading the accounts, and reports it applied after.
    pub fn asked(&self) -> u64 {
        self.asked.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Tells everyone, and returns once this node applies the change (so that the answer to
    /// the request that made it means it is live here), or after [`APPLY_WAIT`]. A Redis
    /// failure is logged: the other nodes catch up at their resync.
    pub async fn announce(&self) {
        let n = self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        self.local.notify_one();
        if let Some(c) = &self.cluster {
            if let Err(e) = c.announce_accounts().await {
                tracing::warn!(error = %e, "the other nodes were not told of the change; they catch up at their resync");
            }
        }
        let mut applied = self.applied.clone();
        if tokio::time::timeout(APPLY_WAIT, applied.wait_for(|a| *a >= n))
            .await
            .is_err()
        {
            tracing::warn!("a change of accounts is not applied yet; answering anyway");
        }
    }
}

/// The largest request body taken.
const BODY_LIMIT: usize = 64 * 1024;
/// An account created with no settings of its own gets the configuration file's defaults.
fn default_settings() -> CallSettings {
    let secs = std::time::Duration::from_secs_f64;
    CallSettings::new(
        secs(defaults::RING_TIMEOUT_SECS),
        secs(defaults::WRAP_UP_SECS),
        secs(defaults::AGENT_GRACE_SECS),
        secs(defaults::ANSWER_DEADLINE_SECS),
    )
}

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No key, or the wrong one.
    #[error("the operator's key is missing or wrong")]
    Unauthorized,
    /// The API is off (no `SWITCHBOARD_OPERATOR_KEY`), or no such account.
    #[error("not found")]
    NotFound,
    /// A field is refused.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field (`numbers[1].phone_number_id`; empty when the body is not JSON at all).
        field: String,
        /// Why.
        reason: String,
    },
    /// The slug, or a number, is another account's.
    #[error("{reason}")]
    Conflict {
        /// The field at fault.
        field: String,
        /// Why.
        reason: String,
    },
    /// The store did not answer.
    #[error("the accounts are unavailable")]
    Unavailable,
    /// Signed in, but without the role the request needs.
    #[error("this needs the {needed} role")]
    Forbidden {
        /// The role needed.
        needed: Role,
    },
    /// `If-Match` names a version the resource no longer has.
    #[error("the resource changed since it was read (If-Match); read it again")]
    PreconditionFailed,
    /// Other changes kept getting in first.
    #[error("the account is changing too often; try again")]
    Busy,
    /// Only the deployment's operator may (add a business number: which business a number
    /// is, is Meta's to say).
    #[error("only the operator may do this")]
    OperatorOnly,
}

/// A refusal: what is wrong, and the field at fault when one is (`numbers[1].queue`).
#[derive(Serialize, utoipa::ToSchema)]
struct ErrorBody {
    error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, field) = match &self {
            AdminError::Unauthorized => (StatusCode::UNAUTHORIZED, None),
            AdminError::NotFound => (StatusCode::NOT_FOUND, None),
            AdminError::Invalid { field, .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, Some(field.clone()))
            }
            AdminError::Conflict { field, .. } => (StatusCode::CONFLICT, Some(field.clone())),
            AdminError::Unavailable | AdminError::Busy => (StatusCode::SERVICE_UNAVAILABLE, None),
            AdminError::Forbidden { .. } | AdminError::OperatorOnly => {
                (StatusCode::FORBIDDEN, None)
            }
            AdminError::PreconditionFailed => (StatusCode::PRECONDITION_FAILED, None),
        };
        let mut response = (
            status,
            Json(ErrorBody {
                error: self.to_string(),
                field,
            }),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<AccountError> for AdminError {
    fn from(e: AccountError) -> AdminError {
        AdminError::Invalid {
            field: as_api_field(&e.field),
            reason: e.reason.replace("milliseconds", "ms"),
        }
    }
}

/// A field of a stored account as the API names it: the API takes seconds where the account
/// keeps milliseconds (`settings.ring_timeout_ms` is sent as `settings.ring_timeout_secs`).
fn as_api_field(field: &str) -> String {
    match field.strip_suffix("_ms") {
        Some(stem) => format!("{stem}_secs"),
        None => field.to_owned(),
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> AdminError {
        match e {
            StoreError::InvalidAccount(e) => e.into(),
            StoreError::AccountExists(slug) => AdminError::Conflict {
                field: "slug".into(),
                reason: format!("account {slug} exists already"),
            },
            StoreError::NumberTaken { number, account } => AdminError::Conflict {
                field: "numbers".into(),
                reason: format!("number {number} belongs to {account} already"),
            },
            StoreError::NoAccount(_) => AdminError::NotFound,
            e => {
                tracing::warn!(error = %e, "the accounts store failed");
                AdminError::Unavailable
            }
        }
    }
}

/// A new account, as the operator sends it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewAccount {
    slug: String,
    name: String,
    #[serde(default)]
    waba_id: Option<String>,
    /// Its Graph access token: sealed at once, never answered.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    access_token: Option<Secret>,
    #[serde(default)]
    numbers: Vec<NumberJson>,
    queues: Vec<QueueJson>,
    default_queue: String,
    #[serde(default)]
    away_reasons: Option<Vec<String>>,
    #[serde(default)]
    settings: Option<SettingsJson>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NumberJson {
    phone_number_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    queue: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct QueueJson {
    id: String,
    /// `queue` (hold audio, at most `max_wait_secs`) or `decline`.
    policy: PolicyName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_wait_secs: Option<f64>,
    /// Its lost callers (hung up while waiting, or called when nobody was staffed) become
    /// call-back tasks for its agents. Default false.
    #[serde(default)]
    callbacks: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
enum PolicyName {
    Queue,
    Decline,
}

/// Call settings in seconds, as the configuration file writes them.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SettingsJson {
    ring_timeout_secs: f64,
    wrap_up_secs: f64,
    grace_secs: f64,
    answer_deadline_secs: f64,
}

/// An account as the API shows it: never a password hash.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct AccountJson {
    slug: String,
    name: String,
    waba_id: Option<String>,
    /// Whether a token is stored (the token itself never leaves the database).
    has_access_token: bool,
    numbers: Vec<NumberJson>,
    queues: Vec<QueueJson>,
    default_queue: String,
    people: Vec<PersonJson>,
    away_reasons: Vec<String>,
    settings: SettingsJson,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct PersonJson {
    id: String,
    name: String,
    role: Role,
    queues: Vec<String>,
    disabled: bool,
}

fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// Seconds as whole milliseconds; a value that is not a number of seconds is refused naming
/// `field` (the account's own rules then check its range).
fn millis(field: &str, secs: f64) -> Result<u64, AdminError> {
    if secs.is_finite() && (0.0..=1e9).contains(&secs) {
        Ok((secs * 1000.0).round() as u64)
    } else {
        Err(AdminError::Invalid {
            field: field.into(),
            reason: "a number of seconds".into(),
        })
    }
}

impl NewAccount {
    fn into_account(self, seal: Option<&SealKey>) -> Result<Account, AdminError> {
        let slug = AccountSlug::try_from(self.slug)?;
        let access_token = match (self.access_token, seal) {
            (None, _) => None,
            (Some(t), _) if t.expose().is_empty() || t.expose().len() > 4096 => {
                return Err(AdminError::Invalid {
                    field: "access_token".into(),
                    reason: "1-4096 characters".into(),
                })
            }
            (Some(t), Some(key)) => Some(key.seal(&slug, &t)),
            (Some(_), None) => {
                return Err(AdminError::Invalid {
                    field: "access_token".into(),
                    reason: "SWITCHBOARD_SECRETS_KEY is not set: no token can be stored".into(),
                })
            }
        };
        let queues = self
            .queues
            .into_iter()
            .enumerate()
            .map(|(i, q)| {
                let policy = match (q.policy, q.max_wait_secs) {
                    (PolicyName::Decline, None) => QueuePolicy::Decline,
                    (PolicyName::Decline, Some(_)) => {
                        return Err(AdminError::Invalid {
                            field: format!("queues[{i}].max_wait_secs"),
                            reason: "only a queue with policy \"queue\" waits".into(),
                        })
                    }
                    (PolicyName::Queue, wait) => QueuePolicy::Queue {
                        max_wait_ms: millis(
                            &format!("queues[{i}].max_wait_secs"),
                            wait.unwrap_or(120.0),
                        )?,
                    },
                };
                Ok(QueueDef {
                    id: q.id,
                    policy,
                    callbacks: q.callbacks,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let settings = match self.settings {
            None => default_settings(),
            Some(s) => CallSettings {
                ring_timeout_ms: millis("settings.ring_timeout_secs", s.ring_timeout_secs)?,
                wrap_up_ms: millis("settings.wrap_up_secs", s.wrap_up_secs)?,
                grace_ms: millis("settings.grace_secs", s.grace_secs)?,
                answer_deadline_ms: millis(
                    "settings.answer_deadline_secs",
                    s.answer_deadline_secs,
                )?,
            },
        };
        let account = Account {
            slug,
            name: self.name,
            waba_id: self.waba_id,
            access_token,
            numbers: self
                .numbers
                .into_iter()
                .map(|n| NumberRoute {
                    phone_number_id: n.phone_number_id,
                    queue: n.queue,
                })
                .collect(),
            queues,
            default_queue: self.default_queue,
            // People are added through their own routes (the next step of issue 23).
            people: vec![],
            away_reasons: self.away_reasons.unwrap_or_else(|| {
                defaults::AWAY_REASONS
                    .iter()
                    .map(|r| (*r).to_owned())
                    .collect()
            }),
            settings,
            version: 0,
            api_keys: vec![],
            hold_audio: None,
            allowed_origins: vec![],
            endpoints: vec![],
        };
        account.validate()?;
        Ok(account)
    }
}

impl From<&Account> for AccountJson {
    fn from(a: &Account) -> AccountJson {
        AccountJson {
            slug: a.slug.to_string(),
            name: a.name.clone(),
            waba_id: a.waba_id.clone(),
            has_access_token: a.access_token.is_some(),
            numbers: a
                .numbers
                .iter()
                .map(|n| NumberJson {
                    phone_number_id: n.phone_number_id.clone(),
                    queue: n.queue.clone(),
                })
                .collect(),
            queues: a.queues.iter().map(account::queue_json).collect(),
            default_queue: a.default_queue.clone(),
            people: a
                .people
                .iter()
                .map(|p| PersonJson {
                    id: p.id.0.clone(),
                    name: p.name.clone(),
                    role: p.role,
                    queues: p.queues.clone(),
                    disabled: p.disabled,
                })
                .collect(),
            away_reasons: a.away_reasons.clone(),
            settings: SettingsJson {
                ring_timeout_secs: secs(a.settings.ring_timeout_ms),
                wrap_up_secs: secs(a.settings.wrap_up_ms),
                grace_secs: secs(a.settings.grace_ms),
                answer_deadline_secs: secs(a.settings.answer_deadline_ms),
            },
        }
    }
}

#[derive(Clone)]
struct Admin {
    store: StoreHandle,
    key: Option<Arc<Secret>>,
    seal: Option<SealKey>,
    changed: AccountsChanged,
    auth: AuthHandle,
    /// Event endpoints may be private addresses (`SWITCHBOARD_EVENTS_PRIVATE_TARGETS`).
    events_private: bool,
    /// Wakes the event delivery task (a redelivery).
    events_wake: Arc<tokio::sync::Notify>,
    /// This node's calls machine, which takes scheduled call-backs; `None`: none are taken.
    calls: Option<crate::calls::actor::CallsHandle>,
    /// Every account's queues and people as the floor has them now.
    roster: Option<tokio::sync::watch::Receiver<Arc<crate::accounts::Roster>>>,
}

/// What the admin API needs of call events.
#[derive(Debug, Clone)]
pub struct EventsAdmin {
    /// Event endpoints may be private addresses.
    pub private_targets: bool,
    /// Wakes the delivery task.
    pub wake: Arc<tokio::sync::Notify>,
}

/// What the admin API needs of the running call centre: scheduled call-backs go to `calls`,
/// checked against the queues and people of `roster`.
#[derive(Debug, Clone)]
pub struct CentreAdmin {
    /// This node's calls machine.
    pub calls: crate::calls::actor::CallsHandle,
    /// The floor's accounts as they are now.
    pub roster: tokio::sync::watch::Receiver<Arc<crate::accounts::Roster>>,
}

impl Admin {
    /// The request carries the operator's key. With no key configured, the API does not exist.
    fn operator(&self, headers: &HeaderMap) -> Result<(), AdminError> {
        let Some(key) = &self.key else {
            return Err(AdminError::NotFound);
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if bool::from(given.as_bytes().ct_eq(key.expose().as_bytes())) {
            Ok(())
        } else {
            Err(AdminError::Unauthorized)
        }
    }
}

/// The accounts API's routes, answered with `key` (`None`: 404 everywhere); access tokens are
/// sealed with `seal`.
pub fn router(
    store: StoreHandle,
    key: Option<Secret>,
    seal: Option<SealKey>,
    changed: AccountsChanged,
    auth: AuthHandle,
    events: EventsAdmin,
    centre: Option<CentreAdmin>,
) -> Router {
    let admin = Admin {
        store,
        key: key.map(Arc::new),
        seal,
        changed,
        auth,
        events_private: events.private_targets,
        events_wake: events.wake,
        calls: centre.as_ref().map(|c| c.calls.clone()),
        roster: centre.map(|c| c.roster),
    };
    Router::new()
        .route("/api/v1/accounts", get(list).post(create))
        .route("/api/v1/accounts/{slug}", get(one))
        .merge(account::routes())
        .merge(sessions::routes())
        .merge(endpoints::routes())
        .merge(callbacks::routes())
        .layer(tower_http::limit::RequestBodyLimitLayer::new(BODY_LIMIT))
        // An audio file is larger than any JSON body.
        .merge(
            account::audio_routes().layer(tower_http::limit::RequestBodyLimitLayer::new(
                crate::accounts::MAX_HOLD_AUDIO,
            )),
        )
        .with_state(admin)
}

/// Every account.
#[utoipa::path(get, path = "/api/v1/accounts", tag = "accounts",
    security(("operator" = [])),
    responses((status = 200, description = "`{\"accounts\": [Account…]}`"),
              (status = 401, body = ErrorBody), (status = 404, description = "no operator key configured", body = ErrorBody)))]
async fn list(State(admin): State<Admin>, headers: HeaderMap) -> Result<Response, AdminError> {
    admin.operator(&headers)?;
    let accounts = admin.store.accounts().await?;
    let body: Vec<AccountJson> = accounts.iter().map(AccountJson::from).collect();
    Ok(Json(serde_json::json!({ "accounts": body })).into_response())
}

/// One account.
#[utoipa::path(get, path = "/api/v1/accounts/{slug}", tag = "accounts",
    security(("operator" = [])),
    params(("slug" = String, Path, description = "the account's slug")),
    responses((status = 200, body = AccountJson), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn one(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(slug): Path<String>,
) -> Result<Response, AdminError> {
    admin.operator(&headers)?;
    let accounts = admin.store.accounts().await?;
    let account = accounts
        .iter()
        .find(|a| a.slug.as_str() == slug)
        .ok_or(AdminError::NotFound)?;
    Ok(Json(AccountJson::from(account)).into_response())
}

/// `r`, never kept by a cache on the way: it carries a secret shown this once (a key, a
/// session, a signing secret).
fn no_store(mut r: Response) -> Response {
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    r
}

/// The account a request is about: the caller's own (`own`: an API key's or a session's),
/// which it may also name; or, for the operator (`own` is `None`), the one it must name.
/// Naming another account than one's own is 404, as for a session of another account.
fn account_asked(own: Option<String>, named: Option<String>) -> Result<String, AdminError> {
    match (own, named) {
        (Some(own), None) => Ok(own),
        (Some(own), Some(named)) if named == own => Ok(own),
        (Some(_), Some(_)) => Err(AdminError::NotFound),
        (None, Some(named)) => Ok(named),
        (None, None) => Err(AdminError::Invalid {
            field: "account".into(),
            reason: "the operator names the account".into(),
        }),
    }
}

/// A JSON body of `T`; refused naming the field that does not fit.
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, AdminError> {
    serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(bytes)).map_err(
        |e| AdminError::Invalid {
            // The path names an unknown field itself, and `.` the body as a whole.
            field: e.path().to_string().trim_start_matches('.').to_owned(),
            reason: e.inner().to_string(),
        },
    )
}

/// Creates an account.
#[utoipa::path(post, path = "/api/v1/accounts", tag = "accounts",
    security(("operator" = [])),
    request_body = NewAccount,
    responses((status = 201, body = AccountJson, headers(("Location" = String))),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, description = "slug or number taken", body = ErrorBody),
              (status = 413, description = "body over 64 KiB"),
              (status = 422, description = "a field refused, named", body = ErrorBody)))]
async fn create(
    State(admin): State<Admin>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, AdminError> {
    admin.operator(&headers)?;
    let new: NewAccount = body(&bytes)?;
    let account = new.into_account(admin.seal.as_ref())?;
    admin
        .store
        .create_account(account.clone())
        .await
        .map_err(|e| match e {
            // Named by its place in the request.
            StoreError::NumberTaken {
                number,
                account: owner,
            } => {
                let i = account
                    .numbers
                    .iter()
                    .position(|n| n.phone_number_id == number)
                    .unwrap_or(0);
                AdminError::Conflict {
                    field: format!("numbers[{i}].phone_number_id"),
                    reason: format!("number {number} belongs to {owner} already"),
                }
            }
            e => e.into(),
        })?;
    tracing::info!(account = %account.slug, "account created");
    let entry = crate::accounts::AuditEntry {
        id: 0,
        at: crate::store::unix_ms(std::time::SystemTime::now()),
        actor: "operator".into(),
        action: "account.create".into(),
        target: String::new(),
        before: None,
        after: serde_json::to_value(AccountJson::from(&account)).ok(),
    };
    if let Err(e) = admin
        .store
        .append_audit(account.slug.to_string(), entry)
        .await
    {
        tracing::warn!(account = %account.slug, error = %e, "the account's creation is not in its audit log");
    }
    admin.changed.announce().await;
    let location = format!("/api/v1/accounts/{}", account.slug);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(AccountJson::from(&account)),
    )
        .into_response())
}
