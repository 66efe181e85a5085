//! The pages agents and supervisors use (`web/`), embedded in the binary: one file to deploy,
//! nothing loaded from the network.
//!
//! *Owns*: the static files and the headers they are served with (a Content Security Policy
//! that allows this origin only). *Does not touch*: anything else; the pages speak
//! `docs/protocol.md` like any other client.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

/// Only this origin: no outside script, style, connection or frame.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   media-src 'self' blob: mediastream:; img-src 'self' data:; \
                   frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn page(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

/// `/` (the agent page), `/supervisor` (the supervisor console) and their assets.
pub fn router() -> Router {
    Router::new()
        .route(
            "/supervisor",
            get(|| async {
                page(
                    "text/html; charset=utf-8",
                    include_str!("../web/supervisor.html"),
                )
            }),
        )
        .route(
            "/supervisor.js",
            get(|| async {
                page(
                    "text/javascript; charset=utf-8",
                    include_str!("../web/supervisor.js"),
                )
            }),
        )
        .route(
            "/session.js",
            get(|| async {
                page(
                    "text/javascript; charset=utf-8",
                    include_str!("../web/session.js"),
                )
            }),
        )
        .route(
            "/",
            get(|| async {
                page(
                    "text/html; charset=utf-8",
                    include_str!("../web/index.html"),
                )
            }),
        )
        .route(
            "/agent.js",
            get(|| async {
                page(
                    "text/javascript; charset=utf-8",
                    include_str!("../web/agent.js"),
                )
            }),
        )
        .route(
            "/style.css",
            get(|| async { page("text/css; charset=utf-8", include_str!("../web/style.css")) }),
        )
}
