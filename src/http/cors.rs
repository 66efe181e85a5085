//! Cross-origin use of the API (issue 24): a page of the customer's own product, served from an
//! origin its account allows (`allowed_origins`), calls `/api/…` with a session of one of the
//! account's people (a host-issued token). Nothing else of another origin may.
//!
//! *Owns*: the CORS answers of `/api/…` — preflights, and `Access-Control-Allow-Origin` on what
//! an allowed page gets — and the refusal (403) of a request of another origin whose session
//! is not of an account allowing it. *Does not touch*: same-origin requests (switchboard's own
//! pages) and origins of `SWITCHBOARD_ALLOWED_ORIGINS`, which pass as before; what the routes
//! do.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

use crate::accounts::Roster;
use crate::signaling::auth::{self, AuthError, AuthHandle};

/// How long a browser may keep a preflight's answer.
const PREFLIGHT_MAX_AGE: &str = "600";

/// What the check needs.
#[derive(Clone)]
pub struct Cors {
    /// Sessions.
    pub auth: AuthHandle,
    /// Each account's allowed origins.
    pub roster: watch::Receiver<Arc<Roster>>,
}

/// The middleware (`axum::middleware::from_fn_with_state`), on the whole router: it looks only
/// at `/api/…`.
pub async fn check(State(cors): State<Cors>, req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/api/") {
        return next.run(req).await;
    }
    let Some(origin) = cors.auth.foreign_origin(req.headers(), req.uri()) else {
        return next.run(req).await;
    };
    let allow = |mut r: Response| {
        if let Ok(v) = HeaderValue::from_str(&origin) {
            let h = r.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
            h.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
        r
    };
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        // A preflight carries no credentials: it is answered for any account's origin, and
        // the request that follows is checked against its session's account.
        if !cors.roster.borrow().origin_allowed_anywhere(&origin) {
            return AuthError::ForeignOrigin.into_response();
        }
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, if-match"),
        );
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("etag, location, retry-after"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(PREFLIGHT_MAX_AGE),
        );
        return allow(r);
    }
    // Only a live session of an account that allows this origin (never a cookie: the host's
    // page holds a token; never an API key or the operator's: those are for servers).
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|_| auth::token_from(req.headers()))
        .map(str::to_owned);
    let allowed = match token {
        Some(t) if !t.starts_with("sbk_") => match cors.auth.authenticate_anywhere(&t).await {
            Ok(who) => cors
                .roster
                .borrow()
                .origin_allowed_for(&who.person_id.0, &origin),
            Err(_) => false,
        },
        _ => false,
    };
    if !allowed {
        return AuthError::ForeignOrigin.into_response();
    }
    allow(next.run(req).await)
}
