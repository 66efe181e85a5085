//! `/api/v1/openapi.json`: the OpenAPI 3 document of every route the HTTP listener answers,
//! made from each handler's own annotation and each body's own type (utoipa), merged here.
//! A test reads the routes the code registers and checks each is in the document, and the
//! test suite validates the document with openapi-spec-validator.
//!
//! *Owns*: the document's frame (title, security schemes) and its route. *Does not touch*: what
//! each route does.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;

/// Where the document is served.
pub const PATH: &str = "/api/v1/openapi.json";

/// This document, as JSON.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "this document")))]
async fn openapi_json() -> impl IntoResponse {
    static JSON: OnceLock<String> = OnceLock::new();
    let body = JSON.get_or_init(|| document().to_pretty_json().unwrap_or_default());
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body.as_str(),
    )
}

/// The frame: title, the document's own route, and how callers authenticate.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "switchboard",
        description = "WhatsApp calls answered in a browser call centre. The WebSocket protocol \
                       and every body are described in docs/protocol.md."
    ),
    paths(openapi_json),
    modifiers(&Security, &Pages)
)]
struct Frame;

/// The pages and their assets ([`crate::web::PAGES`], the table the router serves).
struct Pages;

impl utoipa::Modify for Pages {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{HttpMethod, OperationBuilder};
        use utoipa::openapi::{ContentBuilder, ResponseBuilder};
        for &(path, content_type, _) in crate::web::PAGES {
            let ok = ResponseBuilder::new()
                .description(
                    "the page or asset, with a Content-Security-Policy of this origin only",
                )
                .content(content_type, ContentBuilder::new().build())
                .build();
            let op = OperationBuilder::new()
                .tag("pages")
                .response("200", ok)
                .build();
            openapi
                .paths
                .add_path_operation(path, vec![HttpMethod::Get], op);
        }
    }
}

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer =
            || SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
        // SWITCHBOARD_OPERATOR_KEY.
        components.add_security_scheme("operator", bearer());
        // A session token from /api/login, as a bearer token …
        components.add_security_scheme("session", bearer());
        // … or as the cookie the pages send.
        components.add_security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                crate::signaling::auth::COOKIE_NAME,
            ))),
        );
    }
}

/// The whole document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut d = Frame::openapi();
    for part in [
        super::admin::doc(),
        crate::signaling::auth::AuthDoc::openapi(),
        crate::store::http::RecordsDoc::openapi(),
        super::HttpDoc::openapi(),
        crate::whatsapp::webhook::WebhookDoc::openapi(),
        crate::signaling::ws::WsDoc::openapi(),
        crate::ops::HealthDoc::openapi(),
        super::nodes::NodesDoc::openapi(),
    ] {
        d.merge(part);
    }
    d
}

/// The route serving the document (no sign-in: it describes, it holds no data).
pub fn router() -> Router {
    Router::new().route(PATH, get(openapi_json))
}
