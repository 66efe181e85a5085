//! Host-issued sign-in (issue 24): the host's backend, holding one of the account's API keys,
//! asks for a short-lived session for one of the account's people, who never sees a
//! switchboard password. The session is an ordinary one (it opens `/ws` and calls the API as
//! that person), refreshed before it expires, ended by its holder or by the host.
//!
//! *Owns*: the routes `POST /api/v1/sessions`, `POST /api/v1/sessions/refresh`,
//! `DELETE /api/v1/sessions/current` and `DELETE /api/v1/accounts/{slug}/people/{id}/sessions`.
//! *Does not touch*: what a session is (`signaling::auth`).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::account::Caller;
use super::{body, Admin, AdminError, ErrorBody};
use crate::accounts::qualify;
use crate::config::Role;
use crate::ids::AgentId;
use crate::signaling::auth::{self, AuthError, PersonInfo, SignedIn};

/// A session lasts this long unless asked for less.
const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// The shortest session issued.
const MIN_TTL_SECS: u64 = 60;

/// The routes.
pub(super) fn routes() -> Router<Admin> {
    Router::new()
        .route("/api/v1/sessions", post(issue))
        .route("/api/v1/sessions/refresh", post(refresh))
        .route("/api/v1/sessions/current", delete(end_current))
        .route(
            "/api/v1/accounts/{slug}/people/{id}/sessions",
            delete(end_persons),
        )
}

/// A session asked for by the host's backend.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewSession {
    /// The person's id within the account (`alice`, never `alice@acme`).
    person: String,
    /// How long it lasts: at least 60 s, at most the sessions' lifetime
    /// (`SWITCHBOARD_SESSION_HOURS`); default an hour.
    #[serde(default)]
    ttl_secs: Option<u64>,
    /// The account: the operator's key must name it; an API key's is its own (naming another
    /// is 404).
    #[serde(default)]
    account: Option<String>,
    /// Just-in-time provisioning: when the account has no such person yet, they are added
    /// first with this name, role and queues (and no password: they sign in through the host
    /// only). Ignored when the person exists.
    #[serde(default)]
    create: Option<NewPerson>,
}

/// A person added on their first session.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewPerson {
    name: String,
    role: Role,
    #[serde(default)]
    queues: Vec<String>,
}

/// A refresh: how long the new session lasts.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Refresh {
    #[serde(default)]
    ttl_secs: Option<u64>,
}

/// A session issued: the token, for the person's page only.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct IssuedSession {
    /// `Authorization: Bearer <token>` on the API, and the WebSocket's token.
    token: String,
    /// Seconds it is valid for.
    expires_in_secs: u64,
    /// Who it signs in: `id` as the floor knows them (`alice@acme`), `name`, `role`, `queues`.
    #[schema(value_type = Object)]
    person: PersonInfo,
}

fn ttl_of(secs: Option<u64>) -> Result<Duration, AdminError> {
    match secs {
        None => Ok(DEFAULT_TTL),
        Some(s) if s >= MIN_TTL_SECS => Ok(Duration::from_secs(s)),
        Some(_) => Err(AdminError::Invalid {
            field: "ttl_secs".into(),
            reason: format!("at least {MIN_TTL_SECS} seconds"),
        }),
    }
}

fn issued(signed: SignedIn) -> Response {
    let body = IssuedSession {
        token: signed.token.expose().to_owned(),
        expires_in_secs: signed.expires_in.as_secs(),
        person: signed.person,
    };
    super::no_store((StatusCode::CREATED, Json(body)).into_response())
}

/// Issues a session for one of the account's people (an API key of the account, or the
/// operator naming the account). No password: the host vouches for its user.
#[utoipa::path(post, path = "/api/v1/sessions", tag = "sessions",
    security(("operator" = []), ("session" = [])),
    request_body = NewSession,
    responses((status = 201, body = IssuedSession),
              (status = 401, description = "no API key or operator key", body = ErrorBody),
              (status = 403, description = "a supervisor's key asking for an admin's session", body = ErrorBody),
              (status = 404, description = "another account", body = ErrorBody),
              (status = 422, description = "no such person (or disabled), or a field refused", body = ErrorBody),
              (status = 503, description = "too many sessions", body = ErrorBody)))]
async fn issue(
    State(admin): State<Admin>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, AdminError> {
    let token = auth::token_from(&headers).ok_or(AdminError::Unauthorized)?;
    let operator = admin
        .key
        .as_ref()
        .is_some_and(|k| bool::from(token.as_bytes().ct_eq(k.expose().as_bytes())));
    let (slug, caller) = if operator {
        (None, Caller::Operator)
    } else {
        let (slug, caller) = admin.key_owner(token).await?;
        (Some(slug), caller)
    };
    caller.require(Role::Supervisor)?;
    let new: NewSession = body(&bytes)?;
    let slug = super::account_asked(slug, new.account)?;
    let ttl = ttl_of(new.ttl_secs)?;
    let no_such = || AdminError::Invalid {
        field: "person".into(),
        reason: format!("no person {} in {slug} who may sign in", new.person),
    };
    if new.person.contains('@') {
        return Err(no_such());
    }
    let id = AgentId(qualify(&slug, &new.person));
    if let (None, Some(create)) = (admin.auth.person(&id), &new.create) {
        provision(&admin, &caller, &slug, &new.person, create).await?;
    }
    let person = admin.auth.person(&id).ok_or_else(no_such)?;
    // A supervisor's key signs in agents and supervisors, never an admin.
    caller.require(person.role)?;
    match admin.auth.issue(&id, ttl).await {
        Ok(signed) => Ok(issued(signed)),
        Err(AuthError::BadCredentials) => Err(no_such()),
        Err(e) => {
            tracing::warn!(error = %e, "no session issued");
            Err(AdminError::Unavailable)
        }
    }
}

/// Adds `person` to account `slug` as `create` says, with a password nobody knows (a hash of
/// 256 random bits): they sign in through the host only. A person who exists meanwhile (added
/// by another request) is left as they are.
async fn provision(
    admin: &Admin,
    caller: &Caller,
    slug: &str,
    person: &str,
    create: &NewPerson,
) -> Result<(), AdminError> {
    // A supervisor's key provisions agents and supervisors only.
    caller.require(create.role)?;
    let unusable = crate::config::Secret::new(hex::encode(rand::random::<[u8; 32]>()));
    let phc = tokio::task::spawn_blocking(move || auth::hash_password(unusable.expose()))
        .await
        .map_err(|_| AdminError::Unavailable)?
        .map_err(|_| AdminError::Unavailable)?;
    let hash = crate::config::PasswordHash::parse(&phc).map_err(|_| AdminError::Unavailable)?;
    let def = crate::accounts::PersonDef {
        id: AgentId(person.to_owned()),
        name: create.name.clone(),
        role: create.role,
        password_hash: hash,
        queues: create.queues.clone(),
        disabled: false,
    };
    // Nothing is written (nor audited) when the person exists by then: said by this refusal.
    let exists = || AdminError::Conflict {
        field: "person".into(),
        reason: "exists".into(),
    };
    let added = admin
        .edit(slug, caller, "person.create", person, |a| {
            if a.people.iter().any(|p| p.id == def.id) {
                return Err(exists());
            }
            a.people.push(def.clone());
            let i = a.people.len() - 1;
            a.validate().map_err(|e| {
                let AdminError::Invalid { field, reason } = AdminError::from(e) else {
                    unreachable!("an account's rule is an invalid field")
                };
                let field = match field.strip_prefix(&format!("people[{i}]")) {
                    Some(rest) => format!("create{rest}"),
                    None => field,
                };
                AdminError::Invalid { field, reason }
            })?;
            Ok((
                None,
                serde_json::to_value(super::account::person_json(&def)).ok(),
                (),
            ))
        })
        .await;
    match added {
        Ok(_) => {
            tracing::info!(
                account = slug,
                person,
                "person added on their first session"
            );
            Ok(())
        }
        Err(AdminError::Conflict { field, .. }) if field == "person" => Ok(()),
        Err(e) => Err(e),
    }
}

/// A new session in place of the caller's, which ends (its own token as
/// `Authorization: Bearer`).
#[utoipa::path(post, path = "/api/v1/sessions/refresh", tag = "sessions",
    security(("session" = [])),
    request_body(content = Option<Refresh>),
    responses((status = 201, body = IssuedSession),
              (status = 401, description = "no live session", body = ErrorBody),
              (status = 422, body = ErrorBody)))]
async fn refresh(
    State(admin): State<Admin>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, AdminError> {
    let token = auth::token_from(&headers).ok_or(AdminError::Unauthorized)?;
    let asked: Refresh = if bytes.is_empty() {
        Refresh::default()
    } else {
        body(&bytes)?
    };
    let ttl = ttl_of(asked.ttl_secs)?;
    match admin.auth.refresh(token, ttl).await {
        Ok(signed) => Ok(issued(signed)),
        Err(AuthError::Unauthenticated) => Err(AdminError::Unauthorized),
        Err(e) => {
            tracing::warn!(error = %e, "no session refreshed");
            Err(AdminError::Unavailable)
        }
    }
}

/// Ends the caller's own session (its token as `Authorization: Bearer`), on every node.
#[utoipa::path(delete, path = "/api/v1/sessions/current", tag = "sessions",
    security(("session" = [])),
    responses((status = 204, description = "ended"),
              (status = 401, description = "no live session", body = ErrorBody)))]
async fn end_current(
    State(admin): State<Admin>,
    headers: HeaderMap,
) -> Result<Response, AdminError> {
    let token = auth::token_from(&headers).ok_or(AdminError::Unauthorized)?;
    let who = admin
        .auth
        .authenticate_anywhere(token)
        .await
        .map_err(|_| AdminError::Unauthorized)?;
    admin.auth.sign_out(&who.session).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Ends every session of one of the account's people, on every node (the host signed them
/// out): open WebSockets are told at once, and a call they are on goes back to its queue.
#[utoipa::path(delete, path = "/api/v1/accounts/{slug}/people/{id}/sessions", tag = "sessions",
    security(("operator" = []), ("session" = [])),
    params(("slug" = String, Path), ("id" = String, Path)),
    responses((status = 204, description = "ended"), super::account::Refused))]
async fn end_persons(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Response, AdminError> {
    let caller = admin.caller(&headers, &slug).await?;
    caller.require(Role::Supervisor)?;
    let person = AgentId(qualify(&slug, &id));
    let role = admin
        .account(&slug)
        .await?
        .people
        .iter()
        .find(|p| p.id.0 == id)
        .map(|p| p.role)
        .ok_or(AdminError::NotFound)?;
    caller.require(role)?;
    admin.auth.end_sessions(&person).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// This part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(issue, refresh, end_current, end_persons),
    components(schemas(NewSession, NewPerson, Refresh, IssuedSession))
)]
pub(super) struct Doc;
