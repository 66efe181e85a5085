//! `/api/v1/openapi.json` (issue 23): the document validates as OpenAPI 3 (with
//! openapi-spec-validator, which `scripts/deps` installs), every route the code registers is
//! in it, and every method it names for a path is the one the server answers there (any other
//! gets 405).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use switchboard::app;
use switchboard::config::{Config, Secret, Settings};

/// Routes served elsewhere than the HTTP listener the document describes.
const ELSEWHERE: &[(&str, &str)] = &[
    (
        "/metrics",
        "the separate metrics listener (SWITCHBOARD_METRICS_ADDR)",
    ),
    (
        "/{version}/{phone_number_id}/calls",
        "the sandbox's fake Graph API, on a loopback port of its own",
    ),
    (
        "/{version}/{phone_number_id}/call_permissions",
        "the sandbox's fake Graph API, on a loopback port of its own",
    ),
    (
        "/{version}/{phone_number_id}/messages",
        "the sandbox's fake Graph API, on a loopback port of its own",
    ),
    (
        "/{version}/{phone_number_id}/settings",
        "the sandbox's fake Graph API, on a loopback port of its own",
    ),
];

/// Every path the source registers with `.route(…)`: string literals, and constants resolved
/// from their `const NAME: &str = "…";`.
fn registered_paths() -> BTreeSet<String> {
    let mut files = vec![];
    let mut dirs = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src"
    ))];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(std::fs::read_to_string(p).unwrap());
            }
        }
    }
    let all = files.join("\n");
    let constant = |name: &str| {
        let key = format!("const {name}: &str = \"");
        let at = all.find(&key).unwrap_or_else(|| panic!("no const {name}")) + key.len();
        all[at..at + all[at..].find('"').unwrap()].to_owned()
    };
    let mut paths = BTreeSet::new();
    for (i, _) in all.match_indices(".route(") {
        let rest = all[i + ".route(".len()..].trim_start();
        if let Some(lit) = rest.strip_prefix('"') {
            paths.insert(lit[..lit.find('"').unwrap()].to_owned());
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let name = name.rsplit("::").next().unwrap().to_owned();
            if name.chars().all(|c| c.is_ascii_uppercase() || c == '_') && !name.is_empty() {
                paths.insert(constant(&name));
            }
        }
    }
    paths
}

async fn document(running: &app::Running) -> Value {
    let r = reqwest::get(format!("http://{}/api/v1/openapi.json", running.http_addr))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    r.json().await.unwrap()
}

#[tokio::test]
async fn the_document_validates_and_names_every_route_with_its_methods() {
    // The sandbox serves its own routes too.
    let config = Config::from_settings(common::loopback(Settings {
        operator_key: Some(Secret::new("0123456789abcdef0123456789abcdef-operator")),
        ..Settings::default()
    }))
    .unwrap();
    let running = app::start(config).await.unwrap();
    let doc = document(&running).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));

    // Valid OpenAPI, by an outside validator.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let out = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(file.path())
        .output()
        .expect("python3 runs (scripts/deps installs openapi-spec-validator)");
    assert!(
        out.status.success(),
        "openapi-spec-validator refused the document (or is missing: run scripts/deps):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Every route the code registers is in the document.
    let documented: BTreeMap<String, Vec<String>> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(p, ops)| {
            (
                p.clone(),
                ops.as_object().unwrap().keys().cloned().collect(),
            )
        })
        .collect();
    let mut registered = registered_paths();
    // The pages are served from one table, by a loop.
    registered.extend(
        switchboard::web::PAGES
            .iter()
            .map(|(p, _, _)| (*p).to_owned()),
    );
    assert!(registered.len() >= 30, "{registered:?}");
    let elsewhere: BTreeSet<&str> = ELSEWHERE.iter().map(|(p, _)| *p).collect();
    let missing: Vec<&String> = registered
        .iter()
        .filter(|p| !documented.contains_key(*p) && !elsewhere.contains(p.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "routes missing from the document: {missing:?}"
    );
    let unknown: Vec<&String> = documented
        .keys()
        .filter(|p| !registered.contains(*p))
        .collect();
    assert!(
        unknown.is_empty(),
        "documented but not registered: {unknown:?}"
    );

    // Each documented method is answered (not 405); on a path served here, no other is. As
    // the sandbox's supervisor, so that sign-in checks in front of a route let every method
    // through to it.
    let sup = running
        .sandbox_sign_ins
        .iter()
        .find(|d| d.id.0 == "super")
        .unwrap();
    let token = switchboard::sim::agent::sign_in(running.http_addr, "super", &sup.password)
        .await
        .unwrap();
    let http = reqwest::Client::new();
    for (path, methods) in &documented {
        let url = format!(
            "http://{}{}",
            running.http_addr,
            path.replace("{slug}", "default")
                .replace("{id}", "nobody")
                .replace("{number}", "1")
                .replace("{call_id}", "wacid.X")
        );
        for m in ["get", "post", "patch", "put", "delete"] {
            let status = http
                .request(
                    reqwest::Method::from_bytes(m.to_uppercase().as_bytes()).unwrap(),
                    &url,
                )
                // (Not signing the supervisor out halfway.)
                .bearer_auth(if path == "/api/logout" {
                    "none"
                } else {
                    &token
                })
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            if methods.iter().any(|d| d == m) {
                assert_ne!(status, 405, "{m} {path} is documented but not answered");
            } else if status != 404 {
                assert_eq!(
                    status, 405,
                    "{m} {path} is answered ({status}) but not documented"
                );
            }
        }
    }
    running.shutdown().await;
}
