//! The routes of sign-in: `POST /api/login` (the token in the body and as the cookie),
//! `POST /api/logout`, `GET /api/me`, and the supervisors' `GET /api/people`.
//!
//! *Owns*: [`router`], the login body and answer ([`Login`], [`LoginAnswer`]) and their bounds.
//!
//! *Does not touch*: the decisions behind each route (`login`, `session`, `directory`); it only
//! translates between HTTP and the component.

use std::fmt;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::directory::{PersonInfo, PersonStatus};
use super::extract::{Authenticated, ClientAddr, RequireSupervisor, SameOrigin};
use super::{AuthError, AuthHandle};
use crate::signaling::password::MAX_PASSWORD_BYTES;

/// Largest `POST /api/login` body, in bytes; a larger one is answered 413.
pub const LOGIN_BODY_MAX: usize = 4096;

/// Longest sign-in name accepted, in bytes: an id (at most 64), `@` and an account's slug (at
/// most 40).
const MAX_ID_BYTES: usize = 64 + 1 + 40;

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

/// Signs in: the session token, also set as the `switchboard_session` cookie.
#[utoipa::path(post, path = "/api/login", tag = "sign-in",
    request_body(content = Object, description = "`{\"id\", \"password\"}`: the id is `alice`, or `alice@acme` for account acme"),
    responses((status = 200, description = "`{\"token\", \"expires_in_secs\", \"person\"}` and Set-Cookie"),
              (status = 400, description = "malformed"), (status = 401, description = "wrong id or password"),
              (status = 429, description = "throttled; Retry-After"), (status = 503, description = "too busy to check")))]
async fn login(
    State(auth): State<AuthHandle>,
    ClientAddr(client): ClientAddr,
    body: Result<Json<Login>, JsonRejection>,
) -> Result<Response, AuthError> {
    let Json(req) = body?;
    if req.id.trim().is_empty() || req.id.len() > MAX_ID_BYTES {
        return Err(AuthError::Invalid(
            "id must be 1 to 105 characters (an id of 64, @ and a slug of 40)",
        ));
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
#[utoipa::path(post, path = "/api/logout", tag = "sign-in",
    security(("session" = [])),
    responses((status = 204, description = "signed out everywhere this session was"),
              (status = 401, description = "not signed in"), (status = 403, description = "another site's page")))]
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

/// The signed-in person.
#[utoipa::path(get, path = "/api/me", tag = "sign-in",
    security(("session" = [])),
    responses((status = 200, description = "`{\"id\", \"name\", \"role\", \"queues\"}`"),
              (status = 401, description = "not signed in")))]
async fn me(
    State(auth): State<AuthHandle>,
    who: Authenticated,
) -> Result<Json<PersonInfo>, AuthError> {
    auth.person(&who.person_id)
        .map(Json)
        .ok_or(AuthError::Unauthenticated)
}

/// The supervisor's account's people and their sessions.
#[utoipa::path(get, path = "/api/people", tag = "sign-in",
    security(("session" = [])),
    responses((status = 200, description = "`[{\"id\", \"name\", \"role\", \"queues\", \"sessions\"}]`"),
              (status = 401, description = "not signed in"), (status = 403, description = "not a supervisor")))]
async fn people(
    State(auth): State<AuthHandle>,
    RequireSupervisor(who): RequireSupervisor,
) -> Json<Vec<PersonStatus>> {
    let now = auth.now();
    let sessions = auth.sessions();
    // A supervisor sees their own account's people only.
    let all = auth
        .people()
        .into_iter()
        .filter(|p| crate::accounts::same_account(&p.id.0, &who.person_id.0))
        .map(|person| PersonStatus {
            sessions: sessions.count_of(now, &person.id),
            person,
        })
        .collect();
    Json(all)
}

/// These routes' part of the OpenAPI document ([`crate::http::openapi`]).
#[derive(utoipa::OpenApi)]
#[openapi(paths(login, logout, me, people))]
pub(crate) struct AuthDoc;
