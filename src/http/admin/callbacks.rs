//! Call-backs scheduled from outside (issue 25): a CRM, holding one of the account's API keys,
//! or a supervisor on the floor asks that a customer be called back — now or from a time on,
//! by whoever of a queue is free first or by one person. The task goes to this node's calls
//! machine, which offers it to an agent like a call (and keeps it over a restart).
//!
//! *Owns*: the routes `POST /api/v1/callbacks`, `GET /api/v1/callbacks` and
//! `DELETE /api/v1/callbacks/{id}`, and their JSON. *Does not touch*: what a task is or who
//! is offered it (`crate::calls`), nor its storage (`crate::store`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::account::{Caller, KEY_PREFIX};
use super::{body, Admin, AdminError, ErrorBody};
use crate::accounts::{account_of, qualify};
use crate::calls::actor::TaskRefused;
use crate::calls::{normalize_number, Task, TaskReason};
use crate::config::Role;
use crate::ids::{AgentId, QueueId};
use crate::signaling::auth;

/// The longest note kept with a task.
const MAX_NOTE: usize = 500;
/// The longest name kept with a task.
const MAX_NAME: usize = 200;

/// The routes.
pub(super) fn routes() -> Router<Admin> {
    Router::new()
        .route(
            "/api/v1/callbacks",
            post(schedule_callback).get(list_callbacks),
        )
        .route("/api/v1/callbacks/{id}", delete(cancel_callback))
}

/// The accounts API's call-back part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(schedule_callback, list_callbacks, cancel_callback),
    components(schemas(NewCallBack, CallBackTask))
)]
pub(super) struct Doc;

/// A call-back to schedule.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewCallBack {
    /// The customer's WhatsApp number (`+44 7700 900123`, `447700900123`: 6–15 digits once
    /// `+`, spaces, dashes, dots and parentheses are left out).
    to: String,
    /// The queue whose agents call (its id within the account: `support`). Without it, the
    /// person's first queue.
    #[serde(default)]
    queue: Option<String>,
    /// The one person who calls (their id within the account: `ann`); without it, whoever of
    /// the queue is free first.
    #[serde(default)]
    person: Option<String>,
    /// The customer's name, shown to the agent.
    #[serde(default)]
    name: Option<String>,
    /// Shown to the agent with the task ("promised a call about order 1182").
    #[serde(default)]
    note: Option<String>,
    /// Not offered before then, unix milliseconds; absent or past: now.
    #[serde(default)]
    due_at: Option<i64>,
    /// The account: the operator's key must name it; an API key's or a session's is its own
    /// (naming another is 404).
    #[serde(default)]
    account: Option<String>,
}

/// An open call-back task.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct CallBackTask {
    /// Its id (for `DELETE /api/v1/callbacks/{id}`, and in the agent's `task` event).
    id: String,
    /// The customer's number, digits.
    to: String,
    /// Their name, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// The queue (as the floor knows it: `support@acme`).
    queue: String,
    /// The one person it is for (`ann@acme`), when it names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    person: Option<String>,
    /// `abandoned` (hung up waiting), `unstaffed` (nobody was there) or `scheduled` (this API).
    reason: String,
    /// The scheduler's note.
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    /// Not offered before then (unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    due_at: Option<i64>,
}

impl Admin {
    /// Who asks, and for which account: the operator (who names it), an API key of the
    /// account, or a supervisor's or admin's session.
    async fn scheduler(&self, headers: &HeaderMap) -> Result<(Option<String>, Caller), AdminError> {
        let token = auth::token_from(headers).ok_or(AdminError::Unauthorized)?;
        if let Some(key) = &self.key {
            if bool::from(token.as_bytes().ct_eq(key.expose().as_bytes())) {
                return Ok((None, Caller::Operator));
            }
        }
        if token.starts_with(KEY_PREFIX) {
            let (slug, caller) = self.key_owner(token).await?;
            return Ok((Some(slug), caller));
        }
        let who = self
            .auth
            .authenticate_anywhere(token)
            .await
            .map_err(|_| AdminError::Unauthorized)?;
        let slug = account_of(&who.person_id.0).to_owned();
        Ok((
            Some(slug),
            Caller::Person {
                id: who.person_id,
                role: who.role,
            },
        ))
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> AdminError {
    AdminError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A text field: trimmed, absent when empty, else checked as the accounts' own texts are.
fn text(field: &str, v: Option<String>, max: usize) -> Result<Option<String>, AdminError> {
    let v = v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    if let Some(s) = &v {
        crate::accounts::check_text(field, s, max)?;
    }
    Ok(v)
}

/// Schedules a call-back: the customer is offered, as a task, to the first free agent of the
/// queue (or to the person named) from `due_at` on.
#[utoipa::path(post, path = "/api/v1/callbacks", tag = "callbacks",
    security(("operator" = []), ("session" = [])),
    request_body = NewCallBack,
    responses((status = 201, body = CallBackTask),
              (status = 401, description = "no API key, session or operator key", body = ErrorBody),
              (status = 403, description = "an agent's session or key", body = ErrorBody),
              (status = 404, description = "another account", body = ErrorBody),
              (status = 409, description = "the customer has an open call-back task (`field`: its id)", body = ErrorBody),
              (status = 422, description = "a field refused, named", body = ErrorBody),
              (status = 503, description = "the call centre is not running here", body = ErrorBody)))]
async fn schedule_callback(
    State(admin): State<Admin>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, AdminError> {
    let Some(calls) = admin.calls.clone() else {
        return Err(AdminError::NotFound);
    };
    // Who asks is checked before the body is read: a stranger learns nothing of the shape.
    let (own, caller) = admin.scheduler(&headers).await?;
    caller.require(Role::Supervisor)?;
    let new: NewCallBack = body(&bytes)?;
    let slug = super::account_asked(own, new.account.clone())?;
    let to = normalize_number(&new.to)
        .ok_or_else(|| invalid("to", "not a WhatsApp number: 6 to 15 digits"))?;
    let roster = admin.roster.as_ref().map(|r| r.borrow().clone());
    let person = match &new.person {
        Some(p) => {
            let id = AgentId(qualify(&slug, p));
            let info = admin
                .auth
                .person(&id)
                .filter(|_| !p.contains('@'))
                .ok_or_else(|| invalid("person", format!("no person {p} in {slug}")))?;
            Some(info)
        }
        None => None,
    };
    let queue = match (&new.queue, &person) {
        (Some(q), _) => {
            let id = QueueId(qualify(&slug, q));
            let unknown = q.contains('@')
                || roster
                    .as_ref()
                    .is_some_and(|r| !r.queues.iter().any(|c| c.id == id));
            if unknown {
                return Err(invalid("queue", format!("no queue {q} in {slug}")));
            }
            id
        }
        (None, Some(p)) => QueueId(
            p.queues
                .first()
                .cloned()
                .ok_or_else(|| invalid("queue", "the person takes no queue: name one"))?,
        ),
        (None, None) => return Err(invalid("queue", "name a queue or a person")),
    };
    let task = Task {
        id: format!("task-{}", hex::encode(rand::random::<[u8; 8]>())),
        to,
        name: text("name", new.name, MAX_NAME)?,
        queue,
        reason: TaskReason::Scheduled,
        note: text("note", new.note, MAX_NOTE)?,
        due_at: new.due_at.filter(|&at| at > 0),
        agent: person.map(|p| p.id),
    };
    tracing::info!(task = %task.id, queue = %task.queue, by = %caller.name(), "call-back scheduled");
    match calls.add_task(task.clone(), task.due_at).await {
        Ok(()) => Ok((StatusCode::CREATED, Json(json_of_task(&task))).into_response()),
        Err(TaskRefused::Duplicate(id)) => Err(AdminError::Conflict {
            field: id,
            reason: "this customer has an open call-back task already".into(),
        }),
        Err(TaskRefused::Stopped) => Err(AdminError::Unavailable),
    }
}

fn json_of_task(t: &Task) -> CallBackTask {
    CallBackTask {
        id: t.id.clone(),
        to: t.to.clone(),
        name: t.name.clone(),
        queue: t.queue.0.clone(),
        person: t.agent.as_ref().map(|a| a.0.clone()),
        reason: t.reason.as_str().to_owned(),
        note: t.note.clone(),
        due_at: t.due_at,
    }
}

/// The query of `GET /api/v1/callbacks`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// The operator names the account.
    #[serde(default)]
    account: Option<String>,
}

/// The account's open call-back tasks, oldest first (`{"callbacks": [CallBackTask…]}`).
#[utoipa::path(get, path = "/api/v1/callbacks", tag = "callbacks",
    security(("operator" = []), ("session" = [])),
    params(("account" = Option<String>, Query, description = "the operator names the account")),
    responses((status = 200, description = "`{\"callbacks\": [CallBackTask…]}`"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_callbacks(
    State(admin): State<Admin>,
    headers: HeaderMap,
    query: Result<axum::extract::Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AdminError> {
    let (own, caller) = admin.scheduler(&headers).await?;
    caller.require(Role::Supervisor)?;
    let axum::extract::Query(query) = query.map_err(|e| invalid("account", e.body_text()))?;
    let slug = super::account_asked(own, query.account)?;
    let rows = admin.store.tasks(Some(slug)).await?;
    let tasks: Vec<CallBackTask> = rows
        .into_iter()
        .map(|r| CallBackTask {
            id: r.task_id,
            to: r.customer,
            name: r.name,
            queue: r.queue,
            person: r.agent,
            reason: r.reason,
            note: r.note,
            due_at: r.due_at,
        })
        .collect();
    Ok(Json(serde_json::json!({ "callbacks": tasks })).into_response())
}

/// Withdraws an open call-back task: nobody is offered it any more.
#[utoipa::path(delete, path = "/api/v1/callbacks/{id}", tag = "callbacks",
    security(("operator" = []), ("session" = [])),
    params(("id" = String, Path, description = "the task's id")),
    responses((status = 204, description = "withdrawn"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, description = "no open task of this id in the account", body = ErrorBody)))]
async fn cancel_callback(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    let Some(calls) = admin.calls.clone() else {
        return Err(AdminError::NotFound);
    };
    let (own, caller) = admin.scheduler(&headers).await?;
    caller.require(Role::Supervisor)?;
    // The task must be the asker's account's (the operator's: any).
    let rows = admin.store.tasks(own).await?;
    if !rows.iter().any(|r| r.task_id == id) {
        return Err(AdminError::NotFound);
    }
    match calls.cancel_task(id).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT.into_response()),
        // Kept by another node's machine: that node withdraws it.
        Ok(false) => Err(AdminError::NotFound),
        Err(_) => Err(AdminError::Unavailable),
    }
}
