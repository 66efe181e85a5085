//! The edges of `/ws` and sign-out that a browser's security model leans on, over real sockets:
//! `Origin` is checked, the close handshake is answered, and the server's own closes carry a code
//! and a reason.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::{header, StatusCode};
use serde_json::json;
use switchboard::app::{self, Running};
use switchboard::config::{Config, PasswordHash, Person, Role, Settings};
use switchboard::ids::AgentId;
use switchboard::signaling::auth::{hash_password, LoginAnswer};
use switchboard::signaling::protocol::{close, ServerMsg};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const WAIT: Duration = Duration::from_secs(20);

async fn start(allowed_origins: Vec<String>) -> Running {
    let mut config = Config::from_settings(Settings {
        http_addr: Some("127.0.0.1:0".into()),
        metrics_addr: Some("127.0.0.1:0".into()),
        media_addr: Some("127.0.0.1:0".into()),
        ..Settings::default()
    })
    .unwrap();
    config.auth.people = vec![Person {
        id: AgentId("alice".into()),
        name: "Alice".into(),
        role: Role::Agent,
        password_hash: PasswordHash::parse(&hash_password("alice-pw").unwrap()).unwrap(),
        queues: vec!["support".into()],
    }];
    config.auth.allowed_origins = allowed_origins;
    app::start(config).await.unwrap()
}

async fn token(running: &Running) -> String {
    let resp = reqwest::Client::new()
        .post(format!("http://{}/api/login", running.http_addr))
        .json(&json!({"id": "alice", "password": "alice-pw"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json::<LoginAnswer>().await.unwrap().token
}

/// Opens `/ws` with the session cookie (as a browser does) and `origin`, if any.
async fn open(running: &Running, token: &str, origin: Option<&str>) -> Result<Ws, WsError> {
    let mut req = format!("ws://{}/ws", running.http_addr)
        .into_client_request()
        .unwrap();
    let h = req.headers_mut();
    h.insert(
        "cookie",
        format!("switchboard_session={token}").parse().unwrap(),
    );
    if let Some(o) = origin {
        h.insert("origin", o.parse().unwrap());
    }
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

fn refused_status(r: Result<Ws, WsError>) -> u16 {
    match r {
        Err(WsError::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("refused otherwise: {e}"),
        Ok(_) => panic!("the upgrade was accepted"),
    }
}

/// Reads until the server's Close frame; returns it and the `error` codes seen before it. Fails
/// if the connection ends without one (what a client sees as 1006).
async fn until_close(ws: &mut Ws) -> (Option<CloseFrame>, Vec<String>) {
    let mut errors = Vec::new();
    let read = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(Message::Text(t))) => {
                    if let Ok(ServerMsg::Error { code, .. }) = serde_json::from_str(t.as_str()) {
                        errors.push(code);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("the connection ended without a Close frame: {e}"),
                None => panic!("the connection ended without a Close frame"),
            }
        }
    };
    let frame = tokio::time::timeout(WAIT, read)
        .await
        .expect("a Close frame in time");
    (frame, errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_accepts_its_own_origin_and_allowed_ones_and_refuses_others() {
    let running = start(vec!["https://crm.example.com".into()]).await;
    let token = token(&running).await;
    let own = format!("http://{}", running.http_addr);
    for origin in [None, Some(own.as_str()), Some("https://crm.example.com")] {
        let mut ws = open(&running, &token, origin)
            .await
            .unwrap_or_else(|e| panic!("{origin:?} refused: {e}"));
        ws.close(None).await.unwrap();
    }
    for origin in ["https://evil.example", "null", "http://127.0.0.1:1"] {
        assert_eq!(
            refused_status(open(&running, &token, Some(origin)).await),
            403,
            "{origin}"
        );
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_from_another_sites_page_is_refused() {
    let running = start(vec![]).await;
    let token = token(&running).await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", running.http_addr);
    let cookie = format!("switchboard_session={token}");
    // A cross-site form post, cookie attached (as a browser not honouring SameSite would).
    let forged = http
        .post(format!("{base}/api/logout"))
        .header(header::COOKIE, &cookie)
        .header(header::ORIGIN, "https://evil.example")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("a=b")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let me = http
        .get(format!("{base}/api/me"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200, "still signed in");
    // The page's own sign-out works.
    let own = http
        .post(format!("{base}/api/logout"))
        .header(header::COOKIE, &cookie)
        .header(header::ORIGIN, &base)
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), StatusCode::NO_CONTENT);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_close_is_answered_with_a_close() {
    let running = start(vec![]).await;
    let token = token(&running).await;
    let mut ws = open(&running, &token, None).await.unwrap();
    ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    })))
    .await
    .unwrap();
    let (frame, _) = until_close(&mut ws).await;
    assert_eq!(frame.map(|f| f.code), Some(CloseCode::Normal));
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_and_signed_out_sessions_close_with_their_codes() {
    let running = start(vec![]).await;
    let token = token(&running).await;
    let mut first = open(&running, &token, None).await.unwrap();
    let mut second = open(&running, &token, None).await.unwrap();
    let (frame, errors) = until_close(&mut first).await;
    let frame = frame.expect("a close code");
    assert_eq!(u16::from(frame.code), close::REPLACED);
    assert_eq!(frame.reason.as_str(), "replaced");
    assert_eq!(errors, ["replaced"]);

    let out = reqwest::Client::new()
        .post(format!("http://{}/api/logout", running.http_addr))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    let (frame, errors) = until_close(&mut second).await;
    let frame = frame.expect("a close code");
    assert_eq!(u16::from(frame.code), close::SIGNED_OUT);
    assert_eq!(frame.reason.as_str(), "signed out");
    assert_eq!(errors, ["signed_out"]);
    running.shutdown().await;
}
