//! The public HTTP listener under attack, over real sockets on loopback: idle and trickling
//! connections are closed by the header timeout while a signed webhook and a sign-in are
//! still served, one address cannot hold more than its share, bodies over a route's limit are
//! refused before they are read, and at a low open-file limit the connection cap keeps
//! `/healthz` and webhooks answering.
//!
//! Attackers connect from other loopback addresses (127.0.0.2 and up) than the legitimate
//! client (127.0.0.1), as they would from other hosts.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};

use common::{metric_value, LONG};
use switchboard::config::{Role, Settings};

/// A connection from `from` to `to`, as an attacker's raw socket.
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from((from, 0)).into())
        .expect("binds a loopback source address");
    socket.connect(&to.into()).expect("connects");
    let stream: TcpStream = socket.into();
    stream.set_nonblocking(true).unwrap();
    stream
}

/// Whether switchboard has closed `s` (reading any answer it sent first).
fn closed(mut s: &TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// Waits until switchboard has closed every one of `conns`.
async fn all_closed(what: &str, conns: &[TcpStream]) {
    common::eventually(what, LONG * 3, || async {
        conns.iter().all(closed).then_some(())
    })
    .await;
}

/// Half a request: the start line and one header, never the blank line that ends them.
const HALF_HEADER: &[u8] = b"POST /webhooks/whatsapp HTTP/1.1\r\nHost: switchboard\r\n";

fn half_open(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let mut s = connect_from(from, to);
    s.write_all(HALF_HEADER).unwrap();
    s
}

/// A status webhook for no call in particular, signed: switchboard takes it (200).
fn signed_webhook() -> (Vec<u8>, String) {
    let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"calls","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001111","phone_number_id":"123456789012345"},"statuses":[{"id":"wacid.HBgLMTU1NTAwMDExMTEVAgARGBJBQUFBQUFBQUFBQUFBQUFBQUEA","type":"call","status":"RINGING","timestamp":"1700000000","recipient_id":"15550002222"}]}}]}]}"#;
    let sig = switchboard::whatsapp::webhook::sign(common::APP_SECRET, body);
    (body.to_vec(), sig)
}

async fn post_webhook(http: &reqwest::Client, addr: SocketAddr) -> reqwest::StatusCode {
    let (body, sig) = signed_webhook();
    http.post(format!("http://{addr}/webhooks/whatsapp"))
        .header("x-hub-signature-256", sig)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the webhook is answered")
        .status()
}

async fn scrape(addr: SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits until `series` in the scrape at `addr` reaches `at_least`.
async fn wait_metric(addr: SocketAddr, series: &str, at_least: f64) {
    common::eventually(&format!("{series} at {at_least}"), LONG * 3, || async {
        let v = metric_value(&scrape(addr).await, series).unwrap_or(0.0);
        (v >= at_least).then_some(())
    })
    .await;
}

async fn start(extra: Settings) -> switchboard::app::Running {
    let (_fake, _events, mut config) = common::live_config(extra).await;
    config.auth.people = vec![common::person("agent1", Role::Agent, &["support"])];
    switchboard::app::start(config).await.expect("starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_is_closed_by_the_timeout_while_a_webhook_and_a_sign_in_are_served() {
    let running = start(Settings {
        http_header_timeout: Some(5.0),
        http_request_timeout: Some(8.0),
        http_max_connections_per_client: Some(30),
        ..Settings::default()
    })
    .await;
    let addr = running.http_addr;
    let open_before = metric_value(
        &scrape(running.metrics_addr).await,
        r#"switchboard_http_connections{listener="public"}"#,
    )
    .unwrap_or(0.0);

    // 240 connections trickling their headers, from eight addresses, each at its share.
    let loris: Vec<TcpStream> = (2..10)
        .flat_map(|i| (0..30).map(move |_| Ipv4Addr::new(127, 0, 0, i)))
        .map(|from| half_open(from, addr))
        .collect();
    // 20 that have sent their headers and stall their body.
    let stalled: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = connect_from(Ipv4Addr::new(127, 0, 0, 10), addr);
            s.write_all(
                b"POST /webhooks/whatsapp HTTP/1.1\r\nHost: switchboard\r\n\
                  Content-Type: application/json\r\nContent-Length: 200000\r\n\r\n{\"object\":",
            )
            .unwrap();
            s
        })
        .collect();
    wait_metric(
        running.metrics_addr,
        r#"switchboard_http_connections{listener="public"}"#,
        open_before + 260.0,
    )
    .await;
    // One address past its share: closed at once, nobody else held back.
    let over: Vec<TcpStream> = (0..10)
        .map(|_| half_open(Ipv4Addr::new(127, 0, 0, 2), addr))
        .collect();
    all_closed("the connections past the address's share", &over).await;

    // Meanwhile Meta and an agent are served.
    let http = reqwest::Client::new();
    assert_eq!(post_webhook(&http, addr).await, reqwest::StatusCode::OK);
    let login = http
        .post(format!("http://{addr}/api/login"))
        .json(&serde_json::json!({"id": "agent1", "password": common::PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), reqwest::StatusCode::OK);
    // … before the timeout has closed any of the attackers: they were served during the attack.
    let still_open =
        loris.iter().filter(|s| !closed(s)).count() + stalled.iter().filter(|s| !closed(s)).count();
    assert_eq!(still_open, 260, "served only once the attackers were gone");

    // Then the timeouts close every one of them.
    all_closed("the trickling connections", &loris).await;
    all_closed("the stalled bodies", &stalled).await;
    let scraped = scrape(running.metrics_addr).await;
    let value = |series: &str| metric_value(&scraped, series).unwrap_or(0.0);
    assert!(
        value(r#"switchboard_http_closed_total{listener="public",reason="header_timeout"}"#)
            >= 240.0,
        "{scraped}"
    );
    assert!(
        value(r#"switchboard_http_refused_total{listener="public",reason="per_client"}"#) >= 10.0,
        "{scraped}"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_by_the_header_timeout() {
    let running = start(Settings {
        http_header_timeout: Some(1.0),
        ..Settings::default()
    })
    .await;
    let mut s = connect_from(Ipv4Addr::LOCALHOST, running.http_addr);
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: switchboard\r\n\r\n")
        .unwrap();
    // The answer comes and the connection stays for the next request, then idles out.
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    common::eventually("never closed", LONG, || {
        // Everything there is to read now; `None` while the connection stays open.
        std::future::ready(loop {
            match s.read(&mut buf) {
                Ok(0) => break Some(()),
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break None,
                Err(_) => break Some(()),
            }
        })
    })
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(!answer.contains("connection: close"), "{answer}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_routes_limit_are_refused_before_they_are_read() {
    let running = start(Settings::default()).await;
    let addr = running.http_addr;
    // A declared 100 GB: 413 at once, not a byte of body sent.
    for path in ["/webhooks/whatsapp", "/api/login"] {
        let mut s = connect_from(Ipv4Addr::LOCALHOST, addr);
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(LONG)).unwrap();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: switchboard\r\nContent-Type: application/json\r\n\
             Content-Length: 100000000000\r\n\r\n"
        )
        .unwrap();
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).unwrap();
        assert!(line.starts_with("HTTP/1.1 413"), "{path}: {line}");
    }
    // No length declared: stopped as it streams past the limit (256 KiB for webhooks).
    let mut s = connect_from(Ipv4Addr::LOCALHOST, addr);
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(LONG)).unwrap();
    s.write_all(
        b"POST /webhooks/whatsapp HTTP/1.1\r\nHost: switchboard\r\n\
          X-Hub-Signature-256: sha256=00\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .unwrap();
    let chunk = [b' '; 16 * 1024];
    for _ in 0..64 {
        // switchboard may answer and close before the last chunks: that is the point.
        if write!(s, "{:x}\r\n", chunk.len()).is_err()
            || s.write_all(&chunk).is_err()
            || s.write_all(b"\r\n").is_err()
        {
            break;
        }
    }
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 413"), "{line}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_carry_the_privacy_headers_and_api_answers_are_never_cached() {
    let running = start(Settings::default()).await;
    let addr = running.http_addr;
    for path in ["/", "/api/me", "/healthz"] {
        let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
        let h = r.headers();
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert!(
            h["permissions-policy"]
                .to_str()
                .unwrap()
                .contains("microphone=(self)"),
            "{path}"
        );
        if path.starts_with("/api/") {
            assert_eq!(h["cache-control"], "no-store", "{path}");
        }
    }
    running.shutdown().await;
}

/// A switchboard process at a low open-file limit, and what it logged.
struct Process {
    child: std::process::Child,
    http: SocketAddr,
    metrics: SocketAddr,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

fn start_process(nofile: u32, extra: &[(&str, &str)]) -> Process {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -n {nofile} && exec \"$0\""))
        .arg(env!("CARGO_BIN_EXE_switchboard"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SWITCHBOARD_HTTP_ADDR", "127.0.0.1:0")
        .env("SWITCHBOARD_METRICS_ADDR", "127.0.0.1:0")
        .env("SWITCHBOARD_MEDIA_ADDR", "127.0.0.1")
        .env("SWITCHBOARD_MEDIA_PORTS", "ephemeral:4")
        .env("SWITCHBOARD_DB", dir.path().join("calls.db"))
        .env("SWITCHBOARD_GRAPH_URL", "http://127.0.0.1:9")
        .env("SWITCHBOARD_PHONE_NUMBER_ID", common::PHONE_ID)
        .env("SWITCHBOARD_ACCESS_TOKEN", common::TOKEN)
        .env("SWITCHBOARD_APP_SECRET", common::APP_SECRET)
        .env("SWITCHBOARD_VERIFY_TOKEN", common::VERIFY_TOKEN)
        .env("SWITCHBOARD_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("the binary runs");
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut started = None;
    for line in out.lines().map_while(Result::ok) {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["fields"]["message"] == "switchboard started" {
            started = Some(v);
            break;
        }
    }
    let started = started.expect("the binary starts");
    let addr = |key: &str| -> SocketAddr {
        started["fields"][key]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{key} in {started}"))
    };
    std::mem::forget(dir); // the database outlives this function
    Process {
        http: addr("http"),
        metrics: addr("metrics"),
        child,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_a_low_open_file_limit_the_cap_keeps_healthz_and_webhooks_answering() {
    // 1 100 open files (the media engine asks for 1 024 spare): about 900 connections once the
    // media sockets, the metrics listener and the reserve are set aside. The header timeout is
    // long: the cap, not the timeout, keeps switchboard answering.
    let node = start_process(1100, &[("SWITCHBOARD_HTTP_HEADER_TIMEOUT", "60")]);
    // 1 500 half-open connections from 75 addresses, each well within its share.
    let attack: Vec<TcpStream> = (2..77)
        .flat_map(|i| (0..20).map(move |_| Ipv4Addr::new(127, 0, 0, i)))
        .map(|from| half_open(from, node.http))
        .collect();
    // The last of them is being served: every one before it was accepted or made room for it.
    wait_metric(
        node.metrics,
        r#"switchboard_http_closed_total{listener="public",reason="evicted"}"#,
        500.0,
    )
    .await;
    let http = reqwest::Client::builder().timeout(LONG).build().unwrap();
    let health = http
        .get(format!("http://{}/healthz", node.http))
        .send()
        .await
        .expect("/healthz answers");
    assert_eq!(health.status(), reqwest::StatusCode::OK);
    assert_eq!(
        post_webhook(&http, node.http).await,
        reqwest::StatusCode::OK
    );
    // While most of the attack is still connected.
    let open = attack.iter().filter(|s| !closed(s)).count();
    assert!(open >= 700, "only {open} attackers held");
    assert!(node.open_files() < 1100, "{} files", node.open_files());
    let scraped = scrape(node.metrics).await;
    assert_eq!(
        metric_value(
            &scraped,
            r#"switchboard_http_refused_total{listener="public",reason="accept_error"}"#
        ),
        None,
        "accept failed for want of a file: {scraped}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_cap_counts_requests_per_forwarded_address() {
    let running = start(Settings {
        trust_forwarded_for: Some(true),
        http_max_connections_per_client: Some(1),
        ..Settings::default()
    })
    .await;
    let addr = running.http_addr;
    // Every connection comes from the proxy (127.0.0.1). Client 203.0.113.5 has one request in
    // flight: its headers are in, its body stalls.
    let send_stalled = || {
        let mut s = connect_from(Ipv4Addr::LOCALHOST, addr);
        s.write_all(
            b"POST /webhooks/whatsapp HTTP/1.1\r\nHost: switchboard\r\n\
              X-Forwarded-For: 203.0.113.5\r\nContent-Length: 100\r\n\r\n{",
        )
        .unwrap();
        s
    };
    let mut stalled = send_stalled();
    let http = reqwest::Client::new();
    let healthz = |client: &'static str| {
        http.get(format!("http://{addr}/healthz"))
            .header("x-forwarded-for", client)
            .send()
    };
    // Its next one is refused; another client behind the same proxy is served.
    let refused = common::eventually("the stalled request holds its client's share", LONG, || {
        // A stalled connection the server could not take (this process short of files for a
        // moment, with the attack tests of this file beside it) holds nothing: send it again.
        if closed(&stalled) {
            stalled = send_stalled();
        }
        let r = healthz("203.0.113.5");
        async move {
            let r = r.await.unwrap();
            (r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS).then_some(r)
        }
    })
    .await;
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(
        healthz("198.51.100.9").await.unwrap().status(),
        reqwest::StatusCode::OK
    );
    drop(stalled);
    running.shutdown().await;
}
