//! `GET /api/calls`: the call records for supervisors, newest first, one page at a time.
//!
//! Query parameters, all optional (an empty value counts as absent):
//!
//! | parameter | meaning |
//! |---|---|
//! | `from`, `to` | calls that started at or after `from` and before `to`, unix ms |
//! | `agent` | calls this agent took part in |
//! | `queue` | calls that went to this queue |
//! | `outcome` | `answered`, `abandoned`, `declined`, `timed_out` or `failed` |
//! | `direction` | `inbound` (the customer called) or `outbound` (call-backs) |
//! | `limit` | records per page, 1 to 500; default 50 |
//! | `cursor` | the `next` of the previous page |
//!
//! The answer is a [`CallPage`]: `{"calls": [CallRecord…], "next": "…" | null}`. A parameter
//! that is malformed, out of range or unknown gives 400 with `{"error": "…"}`.
//!
//! **No authentication here.** Call records name callers and agents: whoever mounts
//! [`router`] must wrap it with the supervisor-only check, which also puts the supervisor's
//! [`AccountScope`] in the request: a supervisor lists their own account's calls only.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{CallPage, CallQuery, Direction, Outcome, StoreError, StoreHandle};

/// The routes of the call records API (`GET /api/calls`), unauthenticated: the caller must wrap
/// them with the supervisor-only check before serving them.
pub fn router(store: StoreHandle) -> Router {
    Router::new()
        .route("/api/calls", get(list_calls))
        .with_state(store)
}

/// Whose calls a request may list: an account's slug, put in the request's extensions by the
/// layer that checked who is asking. Without one, every account's calls are listed.
#[derive(Debug, Clone)]
pub struct AccountScope(pub String);

/// The query string as sent; parsed field by field so that an error names the parameter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    from: Option<String>,
    to: Option<String>,
    agent: Option<String>,
    queue: Option<String>,
    outcome: Option<String>,
    direction: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// Why a listing failed.
#[derive(Debug, thiserror::Error)]
enum ListError {
    /// The query string is not of the expected shape (unknown or repeated parameter).
    #[error("invalid query: {0}")]
    BadQueryString(String),
    /// The store refused the query or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

impl IntoResponse for ListError {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            ListError::BadQueryString(_) | ListError::Store(StoreError::InvalidQuery { .. }) => {
                (StatusCode::BAD_REQUEST, self.to_string())
            }
            ListError::Store(StoreError::Stopped) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "call records are unavailable".to_owned(),
            ),
            ListError::Store(_) => {
                // Ours, not the caller's: the details go to the log, not the response.
                tracing::error!(error = %self, "listing call records failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error".to_owned(),
                )
            }
        };
        (status, Json(ErrorBody { error: message })).into_response()
    }
}

/// The supervisor's account's call records, newest first (see the module's docs).
#[utoipa::path(get, path = "/api/calls", tag = "records",
    security(("session" = [])),
    params(("from" = Option<i64>, Query), ("to" = Option<i64>, Query), ("agent" = Option<String>, Query),
           ("queue" = Option<String>, Query), ("outcome" = Option<String>, Query),
           ("direction" = Option<String>, Query, description = "`inbound` or `outbound` (call-backs)"),
           ("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, description = "`{\"calls\": [CallRecord…], \"next\": cursor | null}`"),
              (status = 400, description = "a parameter refused, named"),
              (status = 401, description = "not signed in"), (status = 403, description = "not a supervisor")))]
async fn list_calls(
    State(store): State<StoreHandle>,
    scope: Option<axum::Extension<AccountScope>>,
    params: Result<Query<Params>, QueryRejection>,
) -> Result<Json<CallPage>, ListError> {
    let Query(params) = params.map_err(|e| ListError::BadQueryString(e.body_text()))?;
    let mut query = parse(params)?;
    query.account = scope.map(|axum::Extension(AccountScope(slug))| slug);
    Ok(Json(store.list(query).await?))
}

fn parse(p: Params) -> Result<CallQuery, StoreError> {
    fn present(v: Option<String>) -> Option<String> {
        v.filter(|s| !s.is_empty())
    }
    fn number<T: std::str::FromStr>(
        field: &'static str,
        v: Option<String>,
        what: &str,
    ) -> Result<Option<T>, StoreError> {
        present(v)
            .map(|s| {
                s.parse().map_err(|_| StoreError::InvalidQuery {
                    field,
                    reason: format!("{s:?} is not {what}"),
                })
            })
            .transpose()
    }
    let outcome = present(p.outcome)
        .map(|s| {
            s.parse::<Outcome>().map_err(|_| StoreError::InvalidQuery {
                field: "outcome",
                reason: format!(
                    "{s:?} is not one of {}",
                    Outcome::ALL.map(Outcome::as_str).join(", ")
                ),
            })
        })
        .transpose()?;
    let direction = present(p.direction)
        .map(|s| {
            s.parse::<Direction>()
                .map_err(|_| StoreError::InvalidQuery {
                    field: "direction",
                    reason: format!(
                        "{s:?} is not one of {}",
                        Direction::ALL.map(Direction::as_str).join(", ")
                    ),
                })
        })
        .transpose()?;
    let query = CallQuery {
        from: number("from", p.from, "a time in unix milliseconds")?,
        to: number("to", p.to, "a time in unix milliseconds")?,
        agent: present(p.agent),
        queue: present(p.queue),
        outcome,
        direction,
        limit: number("limit", p.limit, "a number of records")?,
        cursor: present(p.cursor).map(|s| s.parse()).transpose()?,
        // Whose calls is the caller's to say (`AccountScope`), never the query string's.
        account: None,
    };
    // Range checks (limit, from before to) are the store's; run them here too so that a bad
    // query never reaches the store's queue.
    query.checked_limit()?;
    Ok(query)
}

/// This route's part of the OpenAPI document ([`crate::http::openapi`]).
#[derive(utoipa::OpenApi)]
#[openapi(paths(list_calls))]
pub(crate) struct RecordsDoc;

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &str) -> Result<CallQuery, String> {
        let p: Params = serde_urlencoded_from(pairs)?;
        parse(p).map_err(|e| e.to_string())
    }

    fn serde_urlencoded_from(s: &str) -> Result<Params, String> {
        let uri: axum::http::Uri = format!("/api/calls?{s}").parse().unwrap();
        Query::<Params>::try_from_uri(&uri)
            .map(|q| q.0)
            .map_err(|e| e.body_text())
    }

    #[test]
    fn parses_every_parameter() {
        let q = params(
            "from=1000&to=2000&agent=a1&queue=sales&outcome=timed_out&direction=outbound&limit=10",
        )
        .unwrap();
        assert_eq!(
            q,
            CallQuery {
                from: Some(1000),
                to: Some(2000),
                agent: Some("a1".into()),
                queue: Some("sales".into()),
                outcome: Some(Outcome::TimedOut),
                direction: Some(Direction::Outbound),
                limit: Some(10),
                cursor: None,
                account: None,
            }
        );
        assert_eq!(params("agent=&queue=").unwrap(), CallQuery::default());
    }

    #[test]
    fn bad_parameters_name_the_parameter() {
        for (query, field) in [
            ("from=yesterday", "from"),
            ("to=1.5", "to"),
            ("outcome=lost", "outcome"),
            ("direction=in", "direction"),
            ("limit=0", "limit"),
            ("limit=501", "limit"),
            ("limit=-1", "limit"),
            ("cursor=nope", "cursor"),
            ("from=10&to=5", "from"),
            ("agnet=a1", "agnet"),
        ] {
            let e = params(query).unwrap_err();
            assert!(e.contains(field), "{query}: {e}");
        }
    }
}
