//! `/api/v1/accounts/{slug}/endpoints…`: where an account's call events go (issue 24), and
//! each endpoint's delivery log. An admin of the account (or its API key with the admin role,
//! or the operator) manages them; a supervisor may read them and their logs.
//!
//! An endpoint's signing secret (`whsec_…`) is answered once, when it is made (or rotated),
//! and kept sealed with `SWITCHBOARD_SECRETS_KEY`: without that key no endpoint can be made.
//! Every change is an account change like the others: versioned, audited (the secret never
//! in the log), applied on every node at once.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::account::{
    as_sent, check_if_match, etag_of, json, list_part, query, tagged, Page, Refused,
};
use super::{body, no_store, Admin, AdminError};
use crate::accounts::{endpoint_url_problem, EndpointDef};
use crate::config::{Role, Secret};
use crate::events::EventType;
use crate::store::{DeliveryQuery, DeliveryStatus};

/// This part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        list_endpoints,
        one_endpoint,
        create_endpoint,
        update_endpoint,
        remove_endpoint,
        rotate_secret,
        deliveries,
        redeliver
    ),
    components(schemas(
        NewEndpoint,
        EndpointPatch,
        EndpointJson,
        MadeEndpoint,
        crate::store::Delivery,
        DeliveryStatus
    ))
)]
pub(super) struct Doc;

/// The routes.
pub(super) fn routes() -> Router<Admin> {
    Router::new()
        .route(
            "/api/v1/accounts/{slug}/endpoints",
            get(list_endpoints).post(create_endpoint),
        )
        .route(
            "/api/v1/accounts/{slug}/endpoints/{id}",
            get(one_endpoint)
                .patch(update_endpoint)
                .delete(remove_endpoint),
        )
        .route(
            "/api/v1/accounts/{slug}/endpoints/{id}/secret",
            post(rotate_secret),
        )
        .route(
            "/api/v1/accounts/{slug}/endpoints/{id}/deliveries",
            get(deliveries),
        )
        .route(
            "/api/v1/accounts/{slug}/endpoints/{id}/deliveries/{msg_id}/redeliver",
            post(redeliver),
        )
}

/// A new endpoint.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewEndpoint {
    /// Where events go: an `https://` (or `http://`) URL of your backend.
    url: String,
    /// What it is for.
    #[serde(default)]
    description: String,
    /// The event types it takes (`call.offered`, `call.ringing`, `call.queued`,
    /// `call.answered`, `call.held`, `call.resumed`, `call.transferred`, `call.ended`,
    /// `agent.state`); absent or empty: every type.
    #[serde(default)]
    types: Vec<String>,
}

/// A change of an endpoint: only the fields given change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct EndpointPatch {
    url: Option<String>,
    description: Option<String>,
    types: Option<Vec<String>>,
    /// `true` enables an endpoint (one switchboard disabled too: its held events go then).
    enabled: Option<bool>,
}

/// An endpoint as the API answers it (never its secret).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct EndpointJson {
    /// `ep_` and 16 hex digits.
    id: String,
    url: String,
    description: String,
    /// Empty: every type.
    types: Vec<String>,
    enabled: bool,
    /// Why switchboard disabled it, when it did.
    disabled_reason: Option<String>,
    /// Unix ms.
    created_at: i64,
    created_by: String,
}

/// A new endpoint, with its signing secret: shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct MadeEndpoint {
    #[serde(flatten)]
    listed: EndpointJson,
    /// `whsec_…`: verify each delivery's `webhook-signature` with it (Standard Webhooks).
    secret: String,
}

fn endpoint_json(e: &EndpointDef) -> EndpointJson {
    EndpointJson {
        id: e.id.clone(),
        url: e.url.clone(),
        description: e.description.clone(),
        types: e.types.clone(),
        enabled: e.enabled,
        disabled_reason: e.disabled_reason.clone(),
        created_at: e.created_at,
        created_by: e.created_by.clone(),
    }
}

fn endpoint_etag(e: &EndpointDef) -> String {
    etag_of(&endpoint_json(e), &hex::encode(e.secret.as_bytes()))
}

impl Admin {
    /// The URL refused as the deployment judges it (private addresses allowed or not).
    fn check_url(&self, url: &str) -> Result<(), AdminError> {
        match endpoint_url_problem(url, self.events_private) {
            None => Ok(()),
            Some(why) => Err(AdminError::Invalid {
                field: "url".into(),
                reason: why.into(),
            }),
        }
    }

    /// A new secret, sealed for account `slug`; 422 without the deployment's key.
    fn new_secret(&self, slug: &str) -> Result<(String, crate::accounts::SealedToken), AdminError> {
        let Some(seal) = &self.seal else {
            return Err(AdminError::Invalid {
                field: "secret".into(),
                reason: "SWITCHBOARD_SECRETS_KEY is not set: no signing secret can be stored"
                    .into(),
            });
        };
        let slug = crate::accounts::AccountSlug::try_from(slug.to_owned())?;
        let secret = crate::events::new_secret();
        let sealed = seal.seal(&slug, &Secret::new(secret.clone()));
        Ok((secret, sealed))
    }
}

fn check_types(types: &[String]) -> Result<(), AdminError> {
    for (i, t) in types.iter().enumerate() {
        if EventType::parse(t).is_none() {
            return Err(AdminError::Invalid {
                field: format!("types[{i}]"),
                reason: format!("one of {}", EventType::ALL.map(|t| t.as_str()).join(", ")),
            });
        }
    }
    Ok(())
}

/// The account's event endpoints (supervisor).
#[utoipa::path(get, path = "/api/v1/accounts/{slug}/endpoints", tag = "events",
    security(("operator" = []), ("session" = [])),
    params(("slug" = String, Path, description = "the account's slug"), ("limit" = Option<u32>, Query, description = "1-500, default 100"), ("after" = Option<String>, Query, description = "the `next` of the page before")),
    responses((status = 200, description = "`{\"endpoints\": [Endpoint…], \"next\": id | null}`"), Refused))]
async fn list_endpoints(
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
        "endpoints",
        |a| {
            a.endpoints
                .iter()
                .map(|e| (e.id.clone(), endpoint_json(e)))
                .collect()
        },
    )
    .await
}

/// One event endpoint (supervisor).
#[utoipa::path(get, path = "/api/v1/accounts/{slug}/endpoints/{id}", tag = "events",
    security(("operator" = []), ("session" = [])),
    params(("slug" = String, Path, description = "the account's slug"), ("id" = String, Path)),
    responses((status = 200, body = EndpointJson, headers(("ETag" = String))), Refused))]
async fn one_endpoint(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Response, AdminError> {
    admin
        .caller(&headers, &slug)
        .await?
        .require(Role::Supervisor)?;
    let account = admin.account(&slug).await?;
    let e = account
        .endpoints
        .iter()
        .find(|e| e.id == id)
        .ok_or(AdminError::NotFound)?;
    Ok(tagged(StatusCode::OK, &endpoint_etag(e), endpoint_json(e)))
}

/// Adds an event endpoint (admin): its signing secret is answered this once.
#[utoipa::path(post, path = "/api/v1/accounts/{slug}/endpoints", tag = "events",
    security(("operator" = []), ("session" = [])),
    params(("slug" = String, Path, description = "the account's slug")),
    request_body = NewEndpoint,
    responses((status = 201, body = MadeEndpoint, headers(("Location" = String))), Refused))]
async fn create_endpoint(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    bytes: Bytes,
) -> Result<Response, AdminError> {
    let caller = admin.caller(&headers, &slug).await?;
    caller.require(Role::Admin)?;
    let new: NewEndpoint = body(&bytes)?;
    admin.check_url(&new.url)?;
    check_types(&new.types)?;
    let (secret, sealed) = admin.new_secret(&slug)?;
    let def = EndpointDef {
        id: crate::events::new_endpoint_id(),
        url: new.url,
        description: new.description,
        types: new.types,
        enabled: true,
        disabled_reason: None,
        secret: sealed,
        created_at: crate::store::unix_ms(std::time::SystemTime::now()),
        created_by: caller.name(),
    };
    let (_, made) = admin
        .edit(&slug, &caller, "endpoint.create", &def.id, |a| {
            a.endpoints.push(def.clone());
            let i = a.endpoints.len() - 1;
            a.validate()
                .map_err(|e| as_sent(e, &format!("endpoints[{i}]")))?;
            Ok((None, json(&endpoint_json(&def)), def.clone()))
        })
        .await?;
    let location = format!("/api/v1/accounts/{slug}/endpoints/{}", made.id);
    let body = MadeEndpoint {
        listed: endpoint_json(&made),
        secret,
    };
    let mut r = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(no_store(r))
}

/// Changes an event endpoint (admin): its URL, description, types, or whether it is enabled.
#[utoipa::path(patch, path = "/api/v1/accounts/{slug}/endpoints/{id}", tag = "events",
    security(("operator" = []), ("session" = [])),
    params(("slug" = String, Path, description = "the account's slug"), ("id" = String, Path),
           ("If-Match" = Option<String>, Header, description = "the ETag it was read with")),
    request_body = EndpointPatch,
    responses((status = 200, body = EndpointJson, headers(("ETag" = String))), Refused))]
async fn update_endpoint(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path((slug, id)): Path<(String, String)>,
    bytes: Bytes,
) -> Result<Response, AdminError> {
    let caller = admin.caller(&headers, &slug).await?;
    caller.require(Role::Admin)?;
    let patch: EndpointPatch = body(&bytes)?;
    if let Some(url) = &patch.url {
        admin.check_url(url)?;
    }
    if let Some(types) = &patch.types {
        check_types(types)?;
    }
    let (_, after) = admin
        .edit(&slug, &caller, "endpoint.update", &id, |a| {
            let i = a
                .endpoints
                .iter()
                .position(|e| e.id == id)
                .ok_or(AdminError::NotFound)?;
            check_if_match(&headers, &endpoint_etag(&a.endpoints[i]))?;
            let before = endpoint_json(&a.endpoints[i]);
            let e = &mut a.endpoints[i];
            if let Some(url) = &patch.url {
                e.url = url.clone();
            }
            if let Some(d) = &patch.description {
                e.description = d.clone();
            }
            if let Some(t) = &patch.types {
                e.types = t.clone();
            }
            if let Some(on) = patch.enabled {
                e.enabled = on;
                if on {
                    e.disabled_reason = None;
                }
            }
            let after = e.clone();
            a.validate()
                .map_err(|e| as_sent(e, &format!("endpoints[{i}]")))?;
            Ok((json(&before), json(&endpoint_json(&after)), after))
        })
        .await?;
    Ok(tagged(
        StatusCode::OK,
        &endpoint_etag(&after),
        endpoint_json(&after),
    ))
}

/// Removes an event endpoint (admin), with its delivery log and its undelivered events.
#[utoipa::path(delete, path = "/api/v1/accounts/{slug}/endpoints/{id}", tag = "events",
    security(("operator" = []), ("session" = [])),
    params(("slug" = String, Path, description = "the account's slug"), ("id" = String, Path)),
    responses((status = 204, description = "removed"), Refused))]
async fn remove_endpoint(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Response, AdminError> {
    let caller = admin.caller(&headers, &slug).await?;
    caller.require(Role::Admin)?;
    admin
        .edit(&slug, &caller, "endpoint.remove", &id, |a| {
            let i = a
                .endpoints
                .iter()
                .position(|e| e.id == id)
                .ok_or(AdminError::NotFound)?;
            let gone = a.endpoints.remove(i);
            Ok((json(&endpoint_json(&gone)), None, ()))
        })
        .await?;
    admin.store.forget_endpoint(id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Gives an endpoint a new signing secret (admin), answered this once; deliveries are signed
/// with it from now on.
#[utoipa::path(post, path = "/api/v1/accounts/{slug}/endpoints/{id}/secret", tag = "events",
    security(("operator" = []), ("session" = [])),
    params(("slug" = String, Path, description = "the account's slug"), ("id" = String, Path)),
    responses((status = 200, body = MadeEndpoint), Refused))]
async fn rotate_secret(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Response, AdminError> {
    let caller = admin.caller(&headers, &slug).await?;
    caller.require(Role::Admin)?;
    let (secret, sealed) = admin.new_secret(&slug)?;
    let (_, after) = admin
        .edit(&slug, &caller, "endpoint.rotate_secret", &id, |a| {
            let e = a
                .endpoints
                .iter_mut()
                .find(|e| e.id == id)
                .ok_or(AdminError::NotFound)?;
            e.secret = sealed.clone();
            // The audit log says the secret changed, never what it is.
            let said = serde_json::json!({ "secret": "changed" });
            Ok((None, Some(said), e.clone()))
        })
        .await?;
    let body = MadeEndpoint {
        listed: endpoint_json(&after),
        secret,
    };
    Ok(no_store((StatusCode::OK, Json(body)).into_response()))
}

/// Paging of a delivery log.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogPage {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    before: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

/// An endpoint's delivery log, newest first (supervisor): each event's id, type, call,
/// status, attempts, last answer or error, and body.
#[utoipa::path(get, path = "/api/v1/accounts/{slug}/endpoints/{id}/deliveries", tag = "events",
    security(("operator" = []), ("session" = [])),
    params(("slug" = String, Path, description = "the account's slug"), ("id" = String, Path),
           ("status" = Option<String>, Query, description = "pending, paused, delivered or failed"),
           ("before" = Option<i64>, Query, description = "the `next` of the page before"),
           ("limit" = Option<u32>, Query, description = "1-500, default 100")),
    responses((status = 200, description = "`{\"deliveries\": [Delivery…], \"next\": seq | null}`"), Refused))]
async fn deliveries(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path((slug, id)): Path<(String, String)>,
    page: Result<Query<LogPage>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AdminError> {
    admin
        .caller(&headers, &slug)
        .await?
        .require(Role::Supervisor)?;
    let page = query(page)?;
    let account = admin.account(&slug).await?;
    if !account.endpoints.iter().any(|e| e.id == id) {
        return Err(AdminError::NotFound);
    }
    let status = match page.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(DeliveryStatus::parse(s).ok_or_else(|| AdminError::Invalid {
            field: "status".into(),
            reason: "pending, paused, delivered or failed".into(),
        })?),
    };
    let before = match page.before.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(s.parse::<i64>().map_err(|_| AdminError::Invalid {
            field: "before".into(),
            reason: "the `next` of the page before".into(),
        })?),
    };
    let limit = Page::limit_of(page.limit.as_deref())?;
    let mut rows = admin
        .store
        .deliveries(DeliveryQuery {
            account: slug,
            endpoint: id,
            status,
            before,
            limit: limit + 1,
        })
        .await?;
    let next = (rows.len() > limit as usize).then(|| rows[limit as usize - 1].seq);
    rows.truncate(limit as usize);
    Ok(Json(serde_json::json!({ "deliveries": rows, "next": next })).into_response())
}

/// Sends an event again (admin): a delivered or failed one, or a pending one at once; with the
/// same `webhook-id`, and retried for a new window.
#[utoipa::path(post, path = "/api/v1/accounts/{slug}/endpoints/{id}/deliveries/{msg_id}/redeliver", tag = "events",
    security(("operator" = []), ("session" = [])),
    params(("slug" = String, Path, description = "the account's slug"), ("id" = String, Path),
           ("msg_id" = String, Path, description = "the event's `webhook-id`")),
    responses((status = 202, description = "queued"), Refused))]
async fn redeliver(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path((slug, id, msg_id)): Path<(String, String, String)>,
) -> Result<Response, AdminError> {
    let caller = admin.caller(&headers, &slug).await?;
    caller.require(Role::Admin)?;
    let account = admin.account(&slug).await?;
    if !account.endpoints.iter().any(|e| e.id == id) {
        return Err(AdminError::NotFound);
    }
    let now = crate::store::unix_ms(std::time::SystemTime::now());
    if !admin
        .store
        .redeliver(id.clone(), msg_id.clone(), now)
        .await?
    {
        return Err(AdminError::NotFound);
    }
    tracing::info!(account = %slug, endpoint = %id, %msg_id, by = %caller.name(), "event redelivered by hand");
    admin.events_wake.notify_one();
    Ok(StatusCode::ACCEPTED.into_response())
}
