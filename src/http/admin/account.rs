//! `/api/v1/accounts/{slug}/…`: one account's people, queues, numbers, settings and audit log,
//! for the operator and for the account's own supervisors and admins (signed in as on the
//! agent page: the session cookie, or its token as `Authorization: Bearer`).
//!
//! Who may do what: a supervisor manages agents and supervisors (create, update, disable,
//! reset a password) and queue policies; an admin all of that, and admins, new queues, which
//! queue a number leads to, the call settings and the audit log; the operator everything,
//! and adds numbers. Someone of another account is answered 404, as for an account that does
//! not exist: nothing says whether it does.
//!
//! Every change is made on the account as read, written only over the version it was read at
//! (a change made meanwhile on any node is never overwritten: the change is made again on the
//! newer account), recorded in the audit log in the same transaction, and applied to the
//! running call centre at once, on every node. A resource answers with an `ETag`; a change
//! sent with `If-Match` is refused with 412 when the resource changed since.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{
    body, millis, secs, Admin, AdminError, ErrorBody, NumberJson, PersonJson, PolicyName, QueueJson,
};
use crate::accounts::{
    account_of, Account, AuditEntry, CallSettings, PersonDef, QueueDef, QueuePolicy,
};
use crate::config::{PasswordHash, Role};
use crate::ids::AgentId;
use crate::signaling::auth;
use crate::store::StoreError;

/// How an API key starts: `sbk_<id>_<64 hex digits>`.
pub(super) const KEY_PREFIX: &str = "sbk_";

/// An API key's SHA-256, in hex (what is stored).
fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// How many times a change is made again on a newer account before giving up (each time
/// another change was written first).
const MAX_TRIES: usize = 8;
/// Shortest password taken.
const MIN_PASSWORD: usize = 12;
/// Longest password taken (characters).
const MAX_PASSWORD: usize = 256;
/// Most entries in one page of a list.
const MAX_PAGE: u32 = 500;
/// Entries in a page when no `limit` is given.
const DEFAULT_PAGE: u32 = 100;

/// Every refusal an account's route may answer (in the OpenAPI document).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // Only its description is used.
pub(super) enum Refused {
    /// No token, or one that is neither the operator's key, a live session nor a live key.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The caller's role may not.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// No such account or resource, or another account's.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// An id the account has already, or a number another account has.
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// `If-Match` names a version the resource no longer has.
    #[response(status = 412)]
    PreconditionFailed(ErrorBody),
    /// A field of the body or query refused: `field` names it.
    #[response(status = 422)]
    Invalid(ErrorBody),
    /// The database did not answer, or other changes kept getting in first.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// This part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        list_people,
        one_person,
        create_person,
        update_person,
        list_queues,
        one_queue,
        create_queue,
        update_queue,
        list_numbers,
        one_number,
        add_number,
        update_number,
        settings,
        update_settings,
        audit,
        list_keys,
        create_key,
        revoke_key,
        hold_audio,
        put_hold_audio,
        remove_hold_audio
    ),
    components(schemas(
        NewPerson,
        PersonPatch,
        QueuePatch,
        NumberPatch,
        SettingsBody,
        SettingsPatch,
        AuditEntry,
        NewKey,
        KeyJson,
        MadeKey,
        HoldAudioJson
    ))
)]
pub(super) struct Doc;

/// The routes.
pub(super) fn routes() -> Router<Admin> {
    Router::new()
        .route(
            "/api/v1/accounts/{slug}/people",
            get(list_people).post(create_person),
        )
        .route(
            "/api/v1/accounts/{slug}/people/{id}",
            get(one_person).patch(update_person),
        )
        .route(
            "/api/v1/accounts/{slug}/queues",
            get(list_queues).post(create_queue),
        )
        .route(
            "/api/v1/accounts/{slug}/queues/{id}",
            get(one_queue).patch(update_queue),
        )
        .route(
            "/api/v1/accounts/{slug}/numbers",
            get(list_numbers).post(add_number),
        )
        .route(
            "/api/v1/accounts/{slug}/numbers/{number}",
            get(one_number).patch(update_number),
        )
        .route(
            "/api/v1/accounts/{slug}/settings",
            get(settings).patch(update_settings),
        )
        .route("/api/v1/accounts/{slug}/audit", get(audit))
        .route(
            "/api/v1/accounts/{slug}/keys",
            get(list_keys).post(create_key),
        )
        .route(
            "/api/v1/accounts/{slug}/keys/{id}",
            axum::routing::delete(revoke_key),
        )
}

/// Who is asking.
#[derive(Debug, Clone)]
pub(super) enum Caller {
    /// The deployment (`SWITCHBOARD_OPERATOR_KEY`).
    Operator,
    /// A supervisor or admin of the account.
    Person {
        /// As the floor knows them (`sam@acme`).
        id: AgentId,
        /// Their role.
        role: Role,
    },
    /// One of the account's API keys.
    Key {
        /// The key's name.
        name: String,
        /// What it may do.
        role: Role,
    },
}

impl Caller {
    /// How the audit log names them.
    pub(super) fn name(&self) -> String {
        match self {
            Caller::Operator => "operator".into(),
            Caller::Person { id, .. } => id.0.clone(),
            Caller::Key { name, .. } => format!("key:{name}"),
        }
    }

    /// 403 unless they may act as `role`.
    pub(super) fn require(&self, role: Role) -> Result<(), AdminError> {
        match self {
            Caller::Operator => Ok(()),
            Caller::Person { role: r, .. } | Caller::Key { role: r, .. } if *r >= role => Ok(()),
            Caller::Person { .. } | Caller::Key { .. } => {
                Err(AdminError::Forbidden { needed: role })
            }
        }
    }

    fn is_operator(&self) -> bool {
        matches!(self, Caller::Operator)
    }
}

impl Admin {
    /// Who asks about account `slug`: the operator (their key), or a supervisor or admin of
    /// that account (a session). A session of another account is told 404.
    pub(super) async fn caller(
        &self,
        headers: &HeaderMap,
        slug: &str,
    ) -> Result<Caller, AdminError> {
        let token = auth::token_from(headers).ok_or(AdminError::Unauthorized)?;
        if let Some(key) = &self.key {
            if bool::from(token.as_bytes().ct_eq(key.expose().as_bytes())) {
                return Ok(Caller::Operator);
            }
        }
        if token.starts_with(KEY_PREFIX) {
            let (of, caller) = self.key_owner(token).await?;
            // Another account's key: as for a session of another account.
            if of != slug {
                return Err(AdminError::NotFound);
            }
            return Ok(caller);
        }
        let who = self
            .auth
            .authenticate_anywhere(token)
            .await
            .map_err(|_| AdminError::Unauthorized)?;
        if account_of(&who.person_id.0) != slug {
            return Err(AdminError::NotFound);
        }
        if who.role < Role::Supervisor {
            return Err(AdminError::Forbidden {
                needed: Role::Supervisor,
            });
        }
        Ok(Caller::Person {
            id: who.person_id,
            role: who.role,
        })
    }

    /// The account (its slug) whose API key `token` is, and the key as a caller; 401 when it
    /// is no live key.
    pub(super) async fn key_owner(&self, token: &str) -> Result<(String, Caller), AdminError> {
        let id = token
            .strip_prefix(KEY_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .ok_or(AdminError::Unauthorized)?;
        let hash = key_hash(token);
        for a in self.store.accounts().await? {
            let Some(k) = a.api_keys.iter().find(|k| k.id == id) else {
                continue;
            };
            if !bool::from(hash.as_bytes().ct_eq(k.hash.as_bytes())) {
                break;
            }
            let caller = Caller::Key {
                name: k.name.clone(),
                role: k.role,
            };
            return Ok((a.slug.to_string(), caller));
        }
        Err(AdminError::Unauthorized)
    }

    /// Account `slug` as stored.
    pub(super) async fn account(&self, slug: &str) -> Result<Account, AdminError> {
        self.store
            .accounts()
            .await?
            .into_iter()
            .find(|a| a.slug.as_str() == slug)
            .ok_or(AdminError::NotFound)
    }

    /// Makes `change` on account `slug` as stored now and writes it over that version, with an
    /// audit entry saying `action` on `target` by `caller` (`change` answers the thing before
    /// and after); made again on the newer account when another change got in first. Told to
    /// the running call centre once written.
    pub(super) async fn edit<T>(
        &self,
        slug: &str,
        caller: &Caller,
        action: &str,
        target: &str,
        change: impl Fn(&mut Account) -> Result<(Option<Value>, Option<Value>, T), AdminError>,
    ) -> Result<(Account, T), AdminError> {
        for _ in 0..MAX_TRIES {
            let mut account = self.account(slug).await?;
            let (before, after, out) = change(&mut account)?;
            let entry = AuditEntry {
                id: 0,
                at: crate::store::unix_ms(std::time::SystemTime::now()),
                actor: caller.name(),
                action: action.into(),
                target: target.into(),
                before,
                after,
            };
            match self.store.replace_account(account.clone(), entry).await {
                Ok(version) => {
                    account.version = version;
                    tracing::info!(account = %slug, action, target, by = %caller.name(), "account changed");
                    self.changed.announce().await;
                    return Ok((account, out));
                }
                Err(StoreError::Stale(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AdminError::Busy)
    }
}

/// A strong ETag of a resource as answered (and of a secret behind it, hashed with it, so that
/// a new password changes it too).
pub(super) fn etag_of(resource: &impl Serialize, secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(resource).unwrap_or_default());
    h.update([0]);
    h.update(secret.as_bytes());
    format!("\"{}\"", hex::encode(&h.finalize()[..12]))
}

/// 412 when the request's `If-Match` names another version than `etag` (`*` matches any).
pub(super) fn check_if_match(headers: &HeaderMap, etag: &str) -> Result<(), AdminError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(());
    };
    let v = v.to_str().unwrap_or("");
    let matches = v
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t == etag || t.strip_prefix("W/") == Some(etag));
    if matches {
        Ok(())
    } else {
        Err(AdminError::PreconditionFailed)
    }
}

/// `body` with an `ETag` header.
pub(super) fn tagged(status: StatusCode, etag: &str, body: impl Serialize) -> Response {
    let mut r = (status, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(etag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

/// Paging of a list: `limit` (1-500, default 100) and `after` (the `next` of the page before).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Page {
    #[serde(default)]
    limit: Option<String>,
    #[serde(default)]
    after: Option<String>,
}

impl Page {
    fn limit(&self) -> Result<usize, AdminError> {
        Self::limit_of(self.limit.as_deref()).map(|n| n as usize)
    }

    /// A `limit` as given: 1-500, 100 when absent.
    pub(super) fn limit_of(limit: Option<&str>) -> Result<u32, AdminError> {
        match limit.filter(|s| !s.is_empty()) {
            None => Ok(DEFAULT_PAGE),
            Some(s) => match s.parse::<u32>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
                _ => Err(AdminError::Invalid {
                    field: "limit".into(),
                    reason: format!("1 to {MAX_PAGE}"),
                }),
            },
        }
    }
}

/// One page of `items` (sorted by their key), after `page.after`.
/// One page of `items` (each with its key, in any order) after `page.after`, as
/// `{"<name>": [...], "next": key | null}`.
fn paged<T: Serialize>(
    mut items: Vec<(String, T)>,
    page: &Page,
    name: &str,
) -> Result<Response, AdminError> {
    let limit = page.limit()?;
    let after = page.after.clone().filter(|s| !s.is_empty());
    items.sort_by(|a, b| a.0.cmp(&b.0));
    items.retain(|(k, _)| after.as_ref().is_none_or(|a| k > a));
    let next = (items.len() > limit).then(|| items[limit - 1].0.clone());
    items.truncate(limit);
    let rest: Vec<T> = items.into_iter().map(|(_, t)| t).collect();
    let mut body = serde_json::Map::new();
    body.insert(name.into(), serde_json::to_value(rest).unwrap_or_default());
    body.insert("next".into(), next.map_or(Value::Null, Value::String));
    Ok(Json(Value::Object(body)).into_response())
}

/// A page of one of the account's lists (`name`: `people`, `queues`…), each item with its key,
/// for a caller who may act as `role`.
pub(super) async fn list_part<T: Serialize>(
    admin: &Admin,
    headers: &HeaderMap,
    slug: &str,
    page: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
    role: Role,
    name: &str,
    items: impl FnOnce(&Account) -> Vec<(String, T)>,
) -> Result<Response, AdminError> {
    admin.caller(headers, slug).await?.require(role)?;
    let page = query(page)?;
    paged(items(&admin.account(slug).await?), &page, name)
}

/// One thing of the account as `find` answers it, with its ETag.
async fn one_part<T: Serialize>(
    admin: &Admin,
    headers: &HeaderMap,
    slug: &str,
    find: impl FnOnce(&Account) -> Option<(T, String)>,
) -> Result<Response, AdminError> {
    admin.caller(headers, slug).await?;
    let (thing, etag) = find(&admin.account(slug).await?).ok_or(AdminError::NotFound)?;
    Ok(tagged(StatusCode::OK, &etag, thing))
}

pub(super) fn query<T: serde::de::DeserializeOwned>(
    q: Result<Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, AdminError> {
    q.map(|Query(q)| q).map_err(|e| AdminError::Invalid {
        field: String::new(),
        reason: e.body_text(),
    })
}

/// An account's rule broken by a change to one of its parts: named as the request names it
/// (`people[3].queues[0]` → `queues[0]`).
pub(super) fn as_sent(e: crate::accounts::AccountError, part: &str) -> AdminError {
    let AdminError::Invalid { field, reason } = AdminError::from(e) else {
        unreachable!("an account's rule is an invalid field")
    };
    let field = match field.strip_prefix(part) {
        Some(rest) => rest.trim_start_matches('.').to_owned(),
        None => field,
    };
    AdminError::Invalid { field, reason }
}

pub(super) fn json<T: Serialize>(t: &T) -> Option<Value> {
    serde_json::to_value(t).ok()
}

// ---- people ----

pub(super) fn person_json(p: &PersonDef) -> PersonJson {
    PersonJson {
        id: p.id.0.clone(),
        name: p.name.clone(),
        role: p.role,
        queues: p.queues.clone(),
        disabled: p.disabled,
    }
}

fn person_etag(p: &PersonDef) -> String {
    etag_of(&person_json(p), p.password_hash.as_phc())
}

/// A new person, as sent.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewPerson {
    id: String,
    name: String,
    role: Role,
    #[serde(default)]
    queues: Vec<String>,
    /// Set now (12-256 characters); the person may change it later.
    #[schema(value_type = String)]
    password: crate::config::Secret,
}

/// A change to a person, as sent: only the fields given change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PersonPatch {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    queues: Option<Vec<String>>,
    #[serde(default)]
    disabled: Option<bool>,
    /// A new password (the person's sessions end).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    password: Option<crate::config::Secret>,
}

/// A password checked and hashed (off the async threads: argon2 takes tens of ms).
async fn hashed(password: &crate::config::Secret) -> Result<PasswordHash, AdminError> {
    let n = password.expose().chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&n) {
        return Err(AdminError::Invalid {
            field: "password".into(),
            reason: format!("{MIN_PASSWORD}-{MAX_PASSWORD} characters"),
        });
    }
    let p = password.expose().to_owned();
    let phc = tokio::task::spawn_blocking(move || auth::hash_password(&p))
        .await
        .map_err(|_| AdminError::Unavailable)?
        .map_err(|e| AdminError::Invalid {
            field: "password".into(),
            reason: e.to_string(),
        })?;
    PasswordHash::parse(&phc).map_err(|_| AdminError::Unavailable)
}

/// A supervisor manages agents and supervisors; admins are an admin's to manage.
fn may_manage(caller: &Caller, role: Role) -> Result<(), AdminError> {
    caller.require(if role == Role::Admin {
        Role::Admin
    } else {
        Role::Supervisor
    })
}

/// The account's people, by id, a page at a time.
#[utoipa::path(get, path = "/api/v1/accounts/{slug}/people", tag = "accounts",
    security(("operator" = []), ("session" = [])),
    params(("slug" = String, Path, description = "the account's slug"), ("limit" = Option<u32>, Query, description = "1-500, default 100"), ("after" = Option<String>, Query, description = "the `next` of the page before")),
    responses((status = 200, description = "`{\"people\": [Person…], \"next\": id | null}`"), Refused))]
async fn list_people(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    page: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AdminError> {
    list_part(
        &admin,
        &headers,
        &slug,
        page,
        Role::Supervisor,
        "people",
        |a| {
            a.people
                .iter()
                .map(|p| (p.id.0.clone(), person_json(p)))
                .collect()
        },
    )
    .await
}

/// One person, with its ETag.
#[utoipa::path(get, path = "/api/v1/accounts/{slug}/people/{id}", tag = "accounts",
    security(("operator" = []), ("session" = [])),
    params(("slug" = String, Path, description = "the account's slug"), ("id" = String, Path)),
    responses((status = 200, body = PersonJson, headers(("ETag" = String))), Refused))]
async fn one_person(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Response, AdminError> {
    one_part(&admin, &headers, &slug, |a| {
        let p = a.people.iter().find(|p| p.id.0 == id)?;
        Some((person_json(p), person_etag(p)))
    })
    .await
}

/// Adds a person (admins only by an admin).
#[utoipa::path(post, path = "/api/v1/accounts/{slug}/people", tag = "accounts",
    security(("operator" = []), ("session" = [])),
    params(("slug" = String, Path, description = "the account's slug")),
    request_body = NewPerson,
    responses((status = 201, body = PersonJson, headers(("ETag" = String), ("Location" = String))), Refused))]
async fn create_person(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    bytes: Bytes,
) -> Result<Response, AdminError> {
    let caller = admin.caller(&headers, &slug).await?;
    let new: NewPerson = body(&bytes)?;
    may_manage(&caller, new.role)?;
    let hash = hashed(&new.password).await?;
    let person = PersonDef {
        id: AgentId(new.id.clone()),
        name: new.name,
        role: new.role,
        password_hash: hash,
        queues: new.queues,
        disabled: false,
    };
    let (_, p) = admin
        .edit(&slug, &caller, "person.create", &new.id, |a| {
            if a.people.iter().any(|p| p.id == person.id) {
                return Err(AdminError::Conflict {
                    field: "id".into(),
                    reason: format!("{} exists already", person.id),
                });
            }
            a.people.push(person.clone());
            let i = a.people.len() - 1;
            a.validate()
                .map_err(|e| as_sent(e, &format!("people[{i}]")))?;
            Ok((None, json(&person_json(&person)), person.clone()))
        })
        .await?;
    let mut r = tagged(StatusCode::CREATED, &person_etag(&p), person_json(&p));
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/accounts/{slug}/people/{}", p.id)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

/// Changes a person: only the fields given. A new password, role, or disabling ends their sessions at once.
#[utoipa::path(patch, path = "/api/v1/accounts/{slug}/people/{id}", tag = "accounts",
    security(("operator" = []), ("session" = [])),
    params(("slug" = String, Path, description = "the account's slug"), ("id" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body = PersonPatch,
    responses((status = 200, body = PersonJson, headers(("ETag" = String))), Refused))]
async fn update_person(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path((slug, id)): Path<(String, String)>,
    bytes: Bytes,
) -> Result<Response, AdminError> {
    let caller = admin.caller(&headers, &slug).await?;
    let patch: PersonPatch = body(&bytes)?;
    if let Some(role) = patch.role {
        may_manage(&caller, role)?;
    }
    let hash = match &patch.password {
        Some(p) => Some(hashed(p).await?),
        None => None,
    };
    let (_, p) = admin
        .edit(&slug, &caller, "person.update", &id, |a| {
            let i = a
                .people
                .iter()
                .position(|p| p.id.0 == id)
                .ok_or(AdminError::NotFound)?;
            let before = a.people[i].clone();
            may_manage(&caller, before.role)?;
            check_if_match(&headers, &person_etag(&before))?;
            let p = &mut a.people[i];
            if let Some(n) = &patch.name {
                p.name = n.clone();
            }
            if let Some(r) = patch.role {
                p.role = r;
            }
            if let Some(q) = &patch.queues {
                p.queues = q.clone();
            }
            if let Some(d) = patch.disabled {
                p.disabled = d;
            }
            if let Some(h) = &hash {
                p.password_hash = h.clone();
            }
            let after = p.clone();
            a.validate()
                .map_err(|e| as_sent(e, &format!("people[{i}]")))?;
            let mut after_json = json(&person_json(&after));
            // Secrets never reach the log: a new password shows as changed.
            if hash.is_some() {
                if let Some(Value::Object(m)) = &mut after_json {
                    m.insert("password".into(), Value::String("changed".into()));
                }
            }
            Ok((json(&person_json(&before)), after_json, after))
        })
        .await?;
    Ok(tagged(StatusCode::OK, &person_etag(&p), person_json(&p)))
}

// ---- queues ----

pub(super) fn queue_json(q: &QueueDef) -> QueueJson {
    let (policy, max_wait_secs) = match q.policy {
        QueuePolicy::Decline => (PolicyName::Decline, None),
        QueuePolicy::Queue { max_wait_ms } => (PolicyName::Queue, Some(secs(max_wait_ms))),
    };
    QueueJson {
        id: q.id.clone(),
        policy,
        max_wait_secs,
        callbacks: q.callbacks,
    }
}

fn queue_etag(q: &QueueDef) -> String {
    etag_of(&queue_json(q), "")
}

/// A queue's policy as sent: `max_wait_secs` only with `queue` (default 120 s).
fn policy_of(policy: PolicyName, max_wait_secs: Option<f64>) -> Result<QueuePolicy, AdminError> {
    match (policy, max_wait_secs) {
        (PolicyName::Decline, None) => Ok(QueuePolicy::Decline),
        (PolicyName::Decline, Some(_)) => Err(AdminError::Invalid {
            field: "max_wait_secs".into(),
            reason: "only a queue with policy \"queue\" waits".into(),
        }),
        (PolicyName::Queue, wait) => Ok(QueuePolicy::Queue {
            max_wait_ms: millis("max_wait_secs", wait.unwrap_or(120.0))?,
        }),
    }
}

/// A change to a queue, as sent.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct QueuePatch {
    policy: PolicyName,
    #[serde(default)]
    max_wait_secs: Option<f64>,
    /// Lost callers become call-back tasks; unchanged when left out.
    #[serde(default)]
    callbacks: Option<bool>,
}

/// The account's queues.
#[utoipa::path(get, path = "/api/v1/accounts/{slug}/queues", tag = "accounts",
    security(("operator" = []), ("session" = [])),
    params(("slug" = String, Path, description = "the account's slug"), ("limit" = Option<u32>, Query, description = "1-500, default 100"), ("after" = Option<String>, Query, description = "the `next` of the page before")),
    responses((status = 200, description = "`{\"queues\": [Queue…], \"next\": id | null}`"), Refused))]
async fn list_queues(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    page: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AdminError> {
    list_part(
        &admin,
        &headers,
        &slug,
        page,
        Role::Supervisor,
        "queues",
        |a| {
            a.queues
                .iter()
                .map(|q| (q.id.clone(), queue_json(q)))
                .collect()
        },
    )
    .await
}

/// One queue, with its ETag.
#[utoipa::path(get, path = "/api/v1/accounts/{slug}/queues/{id}", tag = "accounts",
    security(("operator" = []), ("session" = [])),
    params(("slug" = String, Path, description = "the account's slug"), ("id" = String, Path)),
    responses((status = 200, body = QueueJson, headers(("ETag" = String))), Refused))]
async fn one_queue(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Response, AdminError> {
    one_part(&admin, &headers, &slug, |a| {
        let q = a.queues.iter().find(|q| q.id == id)?;
        Some((queue_json(q), queue_etag(q)))
    })
    .await
}

/// Adds a queue (admin).
#[utoipa::path(post, path = "/api/v1/accounts/{slug}/queues", tag = "accounts",
    security(("operator" = []), ("session" = [])),
    params(("slug" = String, Path, description = "the account's slug")),
    request_body = QueueJson,
    responses((status = 201, body = QueueJson, headers(("ETag" = String))), Refused))]
async fn create_queue(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    bytes: Bytes,
) -> Result<Response, AdminError> {
    let caller = admin.caller(&headers, &slug).await?;
    caller.require(Role::Admin)?;
    let new: QueueJson = body(&bytes)?;
    let queue = QueueDef {
        id: new.id.clone(),
        policy: policy_of(new.policy, new.max_wait_secs)?,
        callbacks: new.callbacks,
    };
    let (_, q) = admin
        .edit(&slug, &caller, "queue.create", &new.id, |a| {
            if a.queues.iter().any(|q| q.id == queue.id) {
                return Err(AdminError::Conflict {
                    field: "id".into(),
                    reason: format!("queue {} exists already", queue.id),
                });
            }
            a.queues.push(queue.clone());
            let i = a.queues.len() - 1;
            a.validate()
                .map_err(|e| as_sent(e, &format!("queues[{i}]")))?;
            Ok((None, json(&queue_json(&queue)), queue.clone()))
        })
        .await?;
    Ok(tagged(StatusCode::CREATED, &queue_etag(&q), queue_json(&q)))
}

/// Changes a queue's policy: the next call follows it.
#[utoipa::path(patch, path = "/api/v1/accounts/{slug}/queues/{id}", tag = "accounts",
    security(("operator" = []), ("session" = [])),
    params(("slug" = String, Path, description = "the account's slug"), ("id" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body = QueuePatch,
    responses((status = 200, body = QueueJson, headers(("ETag" = String))), Refused))]
async fn update_queue(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path((slug, id)): Path<(String, String)>,
    bytes: Bytes,
) -> Result<Response, AdminError> {
    let caller = admin.caller(&headers, &slug).await?;
    let patch: QueuePatch = body(&bytes)?;
    let policy = policy_of(patch.policy, patch.max_wait_secs)?;
    let (_, q) = admin
        .edit(&slug, &caller, "queue.update", &id, |a| {
            let i = a
                .queues
                .iter()
                .position(|q| q.id == id)
                .ok_or(AdminError::NotFound)?;
            let before = a.queues[i].clone();
            check_if_match(&headers, &queue_etag(&before))?;
            a.queues[i].policy = policy;
            if let Some(on) = patch.callbacks {
                a.queues[i].callbacks = on;
            }
            let after = a.queues[i].clone();
            a.validate()
                .map_err(|e| as_sent(e, &format!("queues[{i}]")))?;
            Ok((json(&queue_json(&before)), json(&queue_json(&after)), after))
        })
        .await?;
    Ok(tagged(StatusCode::OK, &queue_etag(&q), queue_json(&q)))
}

// ---- numbers ----

fn number_json(n: &crate::accounts::NumberRoute) -> NumberJson {
    NumberJson {
        phone_number_id: n.phone_number_id.clone(),
        queue: n.queue.clone(),
    }
}

/// A change to a number, as sent: its queue (`null`: the account's default queue).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NumberPatch {
    queue: Option<String>,
}

/// The account's business numbers and their queues.
#[utoipa::path(get, path = "/api/v1/accounts/{slug}/numbers", tag = "accounts",
    security(("operator" = []), ("session" = [])),
    params(("slug" = String, Path, description = "the account's slug"), ("limit" = Option<u32>, Query, description = "1-500, default 100"), ("after" = Option<String>, Query, description = "the `next` of the page before")),
    responses((status = 200, description = "`{\"numbers\": [Number…], \"next\": id | null}`"), Refused))]
async fn list_numbers(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    page: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AdminError> {
    list_part(
        &admin,
        &headers,
        &slug,
        page,
        Role::Supervisor,
        "numbers",
        |a| {
            a.numbers
                .iter()
                .map(|n| (n.phone_number_id.clone(), number_json(n)))
                .collect()
        },
    )
    .await
}

/// One number, with its ETag.
#[utoipa::path(get, path = "/api/v1/accounts/{slug}/numbers/{number}", tag = "accounts",
    security(("operator" = []), ("session" = [])),
    params(("slug" = String, Path, description = "the account's slug"), ("number" = String, Path, description = "Meta's phone_number_id")),
    responses((status = 200, body = NumberJson, headers(("ETag" = String))), Refused))]
async fn one_number(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path((slug, number)): Path<(String, String)>,
) -> Result<Response, AdminError> {
    one_part(&admin, &headers, &slug, |a| {
        let n = a.numbers.iter().find(|n| n.phone_number_id == number)?;
        let j = number_json(n);
        let etag = etag_of(&j, "");
        Some((j, etag))
    })
    .await
}

/// Adds a business number (operator).
#[utoipa::path(post, path = "/api/v1/accounts/{slug}/numbers", tag = "accounts",
    security(("operator" = []), ("session" = [])),
    params(("slug" = String, Path, description = "the account's slug")),
    request_body = NumberJson,
    responses((status = 201, body = NumberJson, headers(("ETag" = String))), Refused))]
async fn add_number(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    bytes: Bytes,
) -> Result<Response, AdminError> {
    let caller = admin.caller(&headers, &slug).await?;
    // Which business a number is is Meta's to say: the deployment adds it.
    if !caller.is_operator() {
        return Err(AdminError::OperatorOnly);
    }
    let new: NumberJson = body(&bytes)?;
    let route = crate::accounts::NumberRoute {
        phone_number_id: new.phone_number_id.clone(),
        queue: new.queue,
    };
    let (_, n) = admin
        .edit(&slug, &caller, "number.add", &new.phone_number_id, |a| {
            if a.numbers
                .iter()
                .any(|n| n.phone_number_id == route.phone_number_id)
            {
                return Err(AdminError::Conflict {
                    field: "phone_number_id".into(),
                    reason: format!("number {} is the account's already", route.phone_number_id),
                });
            }
            a.numbers.push(route.clone());
            let i = a.numbers.len() - 1;
            a.validate()
                .map_err(|e| as_sent(e, &format!("numbers[{i}]")))?;
            Ok((None, json(&number_json(&route)), route.clone()))
        })
        .await
        .map_err(|e| match e {
            AdminError::Conflict { reason, .. } => AdminError::Conflict {
                field: "phone_number_id".into(),
                reason,
            },
            e => e,
        })?;
    let j = number_json(&n);
    Ok(tagged(StatusCode::CREATED, &etag_of(&j, ""), j))
}

/// Moves a number to another queue (admin): the next call follows.
#[utoipa::path(patch, path = "/api/v1/accounts/{slug}/numbers/{number}", tag = "accounts",
    security(("operator" = []), ("session" = [])),
    params(("slug" = String, Path, description = "the account's slug"), ("number" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body = NumberPatch,
    responses((status = 200, body = NumberJson, headers(("ETag" = String))), Refused))]
async fn update_number(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path((slug, number)): Path<(String, String)>,
    bytes: Bytes,
) -> Result<Response, AdminError> {
    let caller = admin.caller(&headers, &slug).await?;
    caller.require(Role::Admin)?;
    let patch: NumberPatch = body(&bytes)?;
    let (_, n) = admin
        .edit(&slug, &caller, "number.update", &number, |a| {
            let i = a
                .numbers
                .iter()
                .position(|n| n.phone_number_id == number)
                .ok_or(AdminError::NotFound)?;
            let before = number_json(&a.numbers[i]);
            check_if_match(&headers, &etag_of(&before, ""))?;
            a.numbers[i].queue = patch.queue.clone();
            let after = a.numbers[i].clone();
            a.validate()
                .map_err(|e| as_sent(e, &format!("numbers[{i}]")))?;
            Ok((json(&before), json(&number_json(&after)), after))
        })
        .await?;
    let j = number_json(&n);
    Ok(tagged(StatusCode::OK, &etag_of(&j, ""), j))
}

// ---- settings ----

/// An account's settings as the API shows and takes them: call timings in seconds, where a
/// number with no queue of its own leads, and the away reasons.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SettingsBody {
    name: String,
    default_queue: String,
    away_reasons: Vec<String>,
    /// Origins whose pages may use the account's sessions (`https://inbox.example.com`).
    allowed_origins: Vec<String>,
    ring_timeout_secs: f64,
    wrap_up_secs: f64,
    grace_secs: f64,
    answer_deadline_secs: f64,
}

/// A change to the settings: only the fields given change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SettingsPatch {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    default_queue: Option<String>,
    #[serde(default)]
    away_reasons: Option<Vec<String>>,
    #[serde(default)]
    allowed_origins: Option<Vec<String>>,
    #[serde(default)]
    ring_timeout_secs: Option<f64>,
    #[serde(default)]
    wrap_up_secs: Option<f64>,
    #[serde(default)]
    grace_secs: Option<f64>,
    #[serde(default)]
    answer_deadline_secs: Option<f64>,
}

fn settings_of(a: &Account) -> SettingsBody {
    SettingsBody {
        name: a.name.clone(),
        default_queue: a.default_queue.clone(),
        away_reasons: a.away_reasons.clone(),
        allowed_origins: a.allowed_origins.clone(),
        ring_timeout_secs: secs(a.settings.ring_timeout_ms),
        wrap_up_secs: secs(a.settings.wrap_up_ms),
        grace_secs: secs(a.settings.grace_ms),
        answer_deadline_secs: secs(a.settings.answer_deadline_ms),
    }
}

/// The account's name, default queue, away reasons and call timings.
#[utoipa::path(get, path = "/api/v1/accounts/{slug}/settings", tag = "accounts",
    security(("operator" = []), ("session" = [])),
    params(("slug" = String, Path, description = "the account's slug")),
    responses((status = 200, body = SettingsBody, headers(("ETag" = String))), Refused))]
async fn settings(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(slug): Path<String>,
) -> Result<Response, AdminError> {
    admin.caller(&headers, &slug).await?;
    let s = settings_of(&admin.account(&slug).await?);
    Ok(tagged(StatusCode::OK, &etag_of(&s, ""), s))
}

/// Changes the settings (admin): only the fields given.
#[utoipa::path(patch, path = "/api/v1/accounts/{slug}/settings", tag = "accounts",
    security(("operator" = []), ("session" = [])),
    params(("slug" = String, Path, description = "the account's slug"), ("If-Match" = Option<String>, Header)),
    request_body = SettingsPatch,
    responses((status = 200, body = SettingsBody, headers(("ETag" = String))), Refused))]
async fn update_settings(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    bytes: Bytes,
) -> Result<Response, AdminError> {
    let caller = admin.caller(&headers, &slug).await?;
    caller.require(Role::Admin)?;
    let p: SettingsPatch = body(&bytes)?;
    let ms = |field: &str, v: Option<f64>| v.map(|s| millis(field, s)).transpose();
    let ring = ms("ring_timeout_secs", p.ring_timeout_secs)?;
    let wrap = ms("wrap_up_secs", p.wrap_up_secs)?;
    let grace = ms("grace_secs", p.grace_secs)?;
    let answer = ms("answer_deadline_secs", p.answer_deadline_secs)?;
    let (account, ()) = admin
        .edit(&slug, &caller, "settings.update", "", |a| {
            let before = settings_of(a);
            check_if_match(&headers, &etag_of(&before, ""))?;
            if let Some(n) = &p.name {
                a.name = n.clone();
            }
            if let Some(q) = &p.default_queue {
                a.default_queue = q.clone();
            }
            if let Some(r) = &p.away_reasons {
                a.away_reasons = r.clone();
            }
            if let Some(o) = &p.allowed_origins {
                a.allowed_origins = o.clone();
            }
            let s = &mut a.settings;
            *s = CallSettings {
                ring_timeout_ms: ring.unwrap_or(s.ring_timeout_ms),
                wrap_up_ms: wrap.unwrap_or(s.wrap_up_ms),
                grace_ms: grace.unwrap_or(s.grace_ms),
                answer_deadline_ms: answer.unwrap_or(s.answer_deadline_ms),
            };
            a.validate().map_err(|e| {
                // `settings.ring_timeout_ms` is sent as `ring_timeout_secs`.
                let field = e
                    .field
                    .strip_prefix("settings.")
                    .map(|f| f.replace("_ms", "_secs"))
                    .unwrap_or(e.field);
                AdminError::Invalid {
                    field,
                    reason: e.reason,
                }
            })?;
            Ok((json(&before), json(&settings_of(a)), ()))
        })
        .await?;
    let s = settings_of(&account);
    Ok(tagged(StatusCode::OK, &etag_of(&s, ""), s))
}

// ---- audit ----

/// Paging of the audit log: `limit` (1-500, default 100) and `before` (the `next` of the page
/// before).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditPage {
    #[serde(default)]
    limit: Option<String>,
    #[serde(default)]
    before: Option<String>,
}

/// The audit log, newest first (admin).
#[utoipa::path(get, path = "/api/v1/accounts/{slug}/audit", tag = "accounts",
    security(("operator" = []), ("session" = [])),
    params(("slug" = String, Path, description = "the account's slug"), ("limit" = Option<u32>, Query), ("before" = Option<String>, Query, description = "the `next` of the page before")),
    responses((status = 200, description = "`{\"entries\": [AuditEntry…], \"next\": id | null}`"), Refused))]
async fn audit(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    page: Result<Query<AuditPage>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AdminError> {
    let caller = admin.caller(&headers, &slug).await?;
    caller.require(Role::Admin)?;
    let page = query(page)?;
    let limit = Page {
        limit: page.limit,
        after: None,
    }
    .limit()?;
    let before = match page.before.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(s.parse::<i64>().map_err(|_| AdminError::Invalid {
            field: "before".into(),
            reason: "the next of the page before".into(),
        })?),
    };
    // An account that does not exist has no log: 404 as for every other route.
    admin.account(&slug).await?;
    let limit = u32::try_from(limit).unwrap_or(MAX_PAGE);
    let mut entries = admin
        .store
        .audit_log(slug.clone(), before, limit + 1)
        .await?;
    let next = (entries.len() > limit as usize).then(|| entries[limit as usize - 1].id.to_string());
    entries.truncate(limit as usize);
    Ok(Json(serde_json::json!({ "entries": entries, "next": next })).into_response())
}

// ---- API keys ----

/// An API key as listed: never the key, nor its hash.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct KeyJson {
    id: String,
    name: String,
    role: Role,
    /// Unix ms.
    created_at: i64,
    created_by: String,
}

/// A key just made: the key itself, shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct MadeKey {
    #[serde(flatten)]
    listed: KeyJson,
    /// `Authorization: Bearer <key>` on this account's `/api/v1/accounts/{slug}/…` routes.
    key: String,
}

/// A new key, as sent.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewKey {
    /// What it is for (1-64 characters).
    name: String,
    /// `supervisor` or `admin` (the default).
    #[serde(default)]
    role: Option<Role>,
}

fn key_json(k: &crate::accounts::ApiKeyDef) -> KeyJson {
    KeyJson {
        id: k.id.clone(),
        name: k.name.clone(),
        role: k.role,
        created_at: k.created_at,
        created_by: k.created_by.clone(),
    }
}

/// The account's API keys (admin), never the keys themselves.
#[utoipa::path(get, path = "/api/v1/accounts/{slug}/keys", tag = "accounts",
    security(("operator" = []), ("session" = [])),
    params(("slug" = String, Path, description = "the account's slug"), ("limit" = Option<u32>, Query, description = "1-500, default 100"), ("after" = Option<String>, Query, description = "the `next` of the page before")),
    responses((status = 200, description = "`{\"keys\": [Key…], \"next\": id | null}`"), Refused))]
async fn list_keys(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    page: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AdminError> {
    list_part(&admin, &headers, &slug, page, Role::Admin, "keys", |a| {
        a.api_keys
            .iter()
            .map(|k| (k.id.clone(), key_json(k)))
            .collect()
    })
    .await
}

/// Makes an API key (admin): the key is answered this once, and only its hash is kept.
#[utoipa::path(post, path = "/api/v1/accounts/{slug}/keys", tag = "accounts",
    security(("operator" = []), ("session" = [])),
    params(("slug" = String, Path, description = "the account's slug")),
    request_body = NewKey,
    responses((status = 201, body = MadeKey), Refused,
              (status = 422, description = "a field refused, named", body = ErrorBody)))]
async fn create_key(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    bytes: Bytes,
) -> Result<Response, AdminError> {
    let caller = admin.caller(&headers, &slug).await?;
    caller.require(Role::Admin)?;
    let new: NewKey = body(&bytes)?;
    let role = new.role.unwrap_or(Role::Admin);
    if role == Role::Agent {
        return Err(AdminError::Invalid {
            field: "role".into(),
            reason: "supervisor or admin".into(),
        });
    }
    let id = hex::encode(rand::random::<[u8; 6]>());
    let key = format!(
        "{KEY_PREFIX}{id}_{}",
        hex::encode(rand::random::<[u8; 32]>())
    );
    let def = crate::accounts::ApiKeyDef {
        id: id.clone(),
        name: new.name,
        role,
        hash: key_hash(&key),
        created_at: crate::store::unix_ms(std::time::SystemTime::now()),
        created_by: caller.name(),
    };
    let (_, made) = admin
        .edit(&slug, &caller, "key.create", &id, |a| {
            a.api_keys.push(def.clone());
            let i = a.api_keys.len() - 1;
            a.validate()
                .map_err(|e| as_sent(e, &format!("api_keys[{i}]")))?;
            Ok((None, json(&key_json(&def)), def.clone()))
        })
        .await?;
    let body = MadeKey {
        listed: key_json(&made),
        key,
    };
    Ok(super::no_store(
        (StatusCode::CREATED, Json(body)).into_response(),
    ))
}

/// Revokes an API key (admin): refused from the next request on.
#[utoipa::path(delete, path = "/api/v1/accounts/{slug}/keys/{id}", tag = "accounts",
    security(("operator" = []), ("session" = [])),
    params(("slug" = String, Path, description = "the account's slug"), ("id" = String, Path)),
    responses((status = 204, description = "revoked"), Refused))]
async fn revoke_key(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Response, AdminError> {
    let caller = admin.caller(&headers, &slug).await?;
    caller.require(Role::Admin)?;
    admin
        .edit(&slug, &caller, "key.revoke", &id, |a| {
            let i = a
                .api_keys
                .iter()
                .position(|k| k.id == id)
                .ok_or(AdminError::NotFound)?;
            let gone = a.api_keys.remove(i);
            Ok((json(&key_json(&gone)), None, ()))
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- hold audio ----

/// The routes of an account's hold audio (a body limit of their own: an audio file).
pub(super) fn audio_routes() -> Router<Admin> {
    Router::new().route(
        "/api/v1/accounts/{slug}/hold-audio",
        get(hold_audio)
            .put(put_hold_audio)
            .delete(remove_hold_audio),
    )
}

/// What the API says of a hold audio file (the file itself is `GET …/hold-audio`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct HoldAudioJson {
    /// The file's size.
    bytes: usize,
    /// Its 20 ms packets.
    packets: usize,
    /// How long it plays before it loops.
    seconds: f64,
}

fn hold_audio_json(file: &[u8]) -> Option<HoldAudioJson> {
    let packets = crate::accounts::hold_audio_packets(file).ok()?.len();
    Some(HoldAudioJson {
        bytes: file.len(),
        packets,
        seconds: packets as f64 * 0.02,
    })
}

/// The account's own hold audio file (`audio/ogg`); 404 while it plays the deployment's.
#[utoipa::path(get, path = "/api/v1/accounts/{slug}/hold-audio", tag = "accounts",
    security(("operator" = []), ("session" = [])),
    params(("slug" = String, Path, description = "the account's slug")),
    responses((status = 200, description = "the Ogg/Opus file", content_type = "audio/ogg",
               headers(("ETag" = String))), Refused))]
async fn hold_audio(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(slug): Path<String>,
) -> Result<Response, AdminError> {
    admin.caller(&headers, &slug).await?;
    let file = admin
        .account(&slug)
        .await?
        .hold_audio
        .ok_or(AdminError::NotFound)?;
    let etag = etag_of(&file.len(), &hex::encode(Sha256::digest(&file)));
    let mut r = ([(header::CONTENT_TYPE, "audio/ogg")], file).into_response();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    Ok(r)
}

/// Sets the account's hold audio (admin): an Ogg/Opus file of 20 ms packets (`opusenc
/// --framesize 20`), at most 512 KiB, as the body. Its callers hear it from their next hold.
#[utoipa::path(put, path = "/api/v1/accounts/{slug}/hold-audio", tag = "accounts",
    security(("operator" = []), ("session" = [])),
    params(("slug" = String, Path, description = "the account's slug")),
    request_body(content = Vec<u8>, content_type = "audio/ogg"),
    responses((status = 200, body = HoldAudioJson), (status = 413, description = "over 512 KiB"),
              Refused))]
async fn put_hold_audio(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    bytes: Bytes,
) -> Result<Response, AdminError> {
    let caller = admin.caller(&headers, &slug).await?;
    caller.require(Role::Admin)?;
    let file = bytes.to_vec();
    let about = hold_audio_json(&file);
    let (account, ()) = admin
        .edit(&slug, &caller, "hold_audio.update", "", |a| {
            let before = a.hold_audio.as_deref().and_then(hold_audio_json);
            a.hold_audio = Some(file.clone());
            a.validate()?;
            Ok((json(&before), json(&about), ()))
        })
        .await?;
    let file = account.hold_audio.unwrap_or_default();
    Ok(Json(hold_audio_json(&file)).into_response())
}

/// Back to the deployment's hold audio (admin).
#[utoipa::path(delete, path = "/api/v1/accounts/{slug}/hold-audio", tag = "accounts",
    security(("operator" = []), ("session" = [])),
    params(("slug" = String, Path, description = "the account's slug")),
    responses((status = 204, description = "the deployment's hold audio from the next hold"), Refused))]
async fn remove_hold_audio(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(slug): Path<String>,
) -> Result<Response, AdminError> {
    let caller = admin.caller(&headers, &slug).await?;
    caller.require(Role::Admin)?;
    admin
        .edit(&slug, &caller, "hold_audio.remove", "", |a| {
            let before = a.hold_audio.take().ok_or(AdminError::NotFound)?;
            Ok((json(&hold_audio_json(&before)), None, ()))
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
