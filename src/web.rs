//! The pages agents, supervisors and admins use (`web/`), embedded in the binary: one file to
//! deploy, nothing loaded from the network.
//!
//! *Owns*: the static files and the headers they are served with (a Content Security Policy
//! that allows this origin only). *Does not touch*: anything else; the pages speak
//! `docs/protocol.md` like any other client.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// Only this origin: no outside script, style, connection or frame.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   media-src 'self' blob: mediastream:; img-src 'self' data:; \
                   frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Where the embeddable softphone lives (issue 24): a page of any origin imports it, and a
/// module script is fetched with CORS, so these answer `Access-Control-Allow-Origin: *` (they
/// are public files; which origins may *use* a session is the account's `allowed_origins`).
const SDK: &str = "/sdk/";

fn page(path: &'static str, content_type: &'static str, body: &'static str) -> Response {
    let mut r = (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response();
    if path.starts_with(SDK) {
        r.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    }
    r
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// Every page and asset: its path, content type and body. The router serves them and the
/// OpenAPI document lists them, both from here.
pub const PAGES: &[(&str, &str, &str)] = &[
    ("/", HTML, include_str!("../web/index.html")),
    ("/agent.js", JS, include_str!("../web/agent.js")),
    ("/supervisor", HTML, include_str!("../web/supervisor.html")),
    ("/supervisor.js", JS, include_str!("../web/supervisor.js")),
    ("/admin", HTML, include_str!("../web/admin.html")),
    ("/admin.js", JS, include_str!("../web/admin.js")),
    ("/session.js", JS, include_str!("../web/session.js")),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("../web/style.css"),
    ),
    // The embeddable softphone and its TypeScript declarations (docs/embedding.md).
    (
        "/sdk/v1/switchboard.js",
        JS,
        include_str!("../web/sdk/v1/switchboard.js"),
    ),
    (
        "/sdk/v1/switchboard.d.ts",
        "application/typescript; charset=utf-8",
        include_str!("../web/sdk/v1/switchboard.d.ts"),
    ),
];

/// `/` (the agent page), `/supervisor` (the supervisor console), `/admin` (the account's
/// administration) and their assets: [`PAGES`].
pub fn router() -> Router {
    PAGES
        .iter()
        .fold(Router::new(), |r, &(path, content_type, body)| {
            r.route(
                path,
                get(move || async move { page(path, content_type, body) }),
            )
        })
}
