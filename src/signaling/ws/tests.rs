//! The wire protocol's translation, and whole sessions on simulated time: an in-memory socket
//! in place of the browser's, the calls actor on fake ports (`calls::fakes`).

use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use super::*;
use crate::calls::fakes::{rig, Rig};
use crate::signaling::auth::{demo_people, AuthConfig};

fn code_of(r: Result<ClientMsg, Refused>) -> &'static str {
    match r {
        Err(r) => r.code,
        Ok(m) => panic!("not refused: {m:?}"),
    }
}

#[test]
fn ringing_names_the_business_number_people_know_and_its_id_apart() {
    let ringing = |display: Option<&str>| {
        let msg = notice_msg(Notice::Ringing {
            call: WaCallId("wacid.A".into()),
            from: Some("15551234567".into()),
            name: None,
            queue: QueueId("support".into()),
            business_number: Some("106540352242922".into()),
            display_number: display.map(Into::into),
            waited: Duration::from_secs(2),
            rings_for: Duration::from_secs(15),
        });
        serde_json::to_value(msg).unwrap()
    };
    let m = ringing(Some("15550001111"));
    assert_eq!(m["business_number"], "15550001111");
    assert_eq!(m["business_number_id"], "106540352242922");
    // Meta sent no number: the id is all there is to show.
    assert_eq!(ringing(None)["business_number"], "106540352242922");
}

#[test]
fn unknown_fields_on_field_less_messages_are_bad_messages() {
    for text in [
        r#"{"type":"ping","extra":true}"#,
        r#"{"type":"wrap_up_done","call_id":"c1"}"#,
        r#"{"type":"stop_monitor","x":null}"#,
    ] {
        assert_eq!(code_of(parse(text)), "bad_message", "{text}");
    }
    assert_eq!(parse(r#"{"type":"ping"}"#).unwrap(), ClientMsg::Ping {});
}

#[test]
fn an_away_reason_over_64_characters_is_refused_not_cut() {
    let msg = |reason: &str| {
        serde_json::json!({"type": "set_presence", "available": false, "reason": reason})
            .to_string()
    };
    // 64 characters (not bytes) pass, whatever their width.
    let ok = "é".repeat(64);
    assert_eq!(
        parse(&msg(&ok)).unwrap(),
        ClientMsg::SetPresence {
            available: false,
            reason: Some(ok.clone())
        }
    );
    assert_eq!(code_of(parse(&msg(&"x".repeat(65)))), "bad_message");
    assert_eq!(code_of(parse(&"x".repeat(MAX_MESSAGE + 1))), "too_large");
}

/// The server's end of an in-memory WebSocket.
struct Pipe {
    from_client: mpsc::UnboundedReceiver<Message>,
    to_client: mpsc::UnboundedSender<Message>,
}

impl Stream for Pipe {
    type Item = Result<Message, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.from_client.poll_recv(cx).map(|m| m.map(Ok))
    }
}

impl Sink<Message> for Pipe {
    type Error = axum::Error;

    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), axum::Error>> {
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, m: Message) -> Result<(), axum::Error> {
        self.to_client
            .send(m)
            .map_err(|_| axum::Error::new("the client is gone"))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), axum::Error>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), axum::Error>> {
        Poll::Ready(Ok(()))
    }
}

/// The browser's end: what the session sent, as JSON (or the close frame), and when.
struct Client {
    rx: mpsc::UnboundedReceiver<Message>,
    _tx: mpsc::UnboundedSender<Message>,
}

enum Got {
    Json(serde_json::Value),
    Close(u16),
}

impl Client {
    async fn next(&mut self) -> Got {
        match self.rx.recv().await.expect("the session sends more") {
            Message::Text(t) => Got::Json(serde_json::from_str(t.as_str()).unwrap()),
            Message::Close(Some(f)) => Got::Close(f.code),
            other => panic!("unexpected frame {other:?}"),
        }
    }

    /// The next message of `kind`, skipping others.
    async fn next_of(&mut self, kind: &str) -> serde_json::Value {
        loop {
            if let Got::Json(v) = self.next().await {
                if v["type"] == kind {
                    return v;
                }
            }
        }
    }
}

/// A signed-in session of `who` (`agent1`, `agent2` or `super`), its actor on fake ports, and
/// the auth it signed in with; the clock is paused once signed in (the password check runs on
/// the blocking pool, outside simulated time).
async fn session_of(who: &str) -> (Client, Rig, AuthHandle, Authenticated) {
    let (people, demo) = demo_people().await;
    let auth = AuthHandle::new(
        &AuthConfig::with_people(vec![], Duration::from_secs(3600)),
        people,
    );
    let password = &demo.iter().find(|d| d.id.0 == who).unwrap().password;
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let signed = auth.sign_in(who, password, lo).await.unwrap();
    let authenticated = auth.authenticate(signed.token.expose()).unwrap();
    tokio::time::pause();
    let r = rig();
    let (to_server, from_client) = mpsc::unbounded_channel();
    let (to_client, rx) = mpsc::unbounded_channel();
    let st = WsState {
        auth: auth.clone(),
        calls: r.calls.clone(),
        roster: tokio::sync::watch::channel(Arc::new(crate::accounts::Roster {
            away_reasons: [("default".to_owned(), vec!["lunch".to_owned()])].into(),
            ..Default::default()
        }))
        .1,
    };
    tokio::spawn(session(
        Pipe {
            from_client,
            to_client,
        },
        authenticated.clone(),
        st,
    ));
    let client = Client { rx, _tx: to_server };
    (client, r, auth, authenticated)
}

/// `elapsed` is `expected` on the simulated clock, give or take the timer's millisecond (tokio
/// fires a deadline on the next whole millisecond of its wheel).
fn at(elapsed: Duration, expected: Duration) {
    assert!(
        elapsed >= expected && elapsed <= expected + Duration::from_millis(1),
        "at {elapsed:?}, expected {expected:?}"
    );
}

#[tokio::test]
async fn a_supervisor_gets_the_floor_at_most_every_250_ms_with_its_latest_state() {
    let (mut client, r, _auth, _) = session_of("super").await;
    let t0 = tokio::time::Instant::now();
    assert_eq!(client.next_of("welcome").await["role"], "supervisor");
    client.next_of("floor").await;
    // Three agents sign in 100 ms apart: three changes of the floor.
    let mut notices = vec![];
    for (i, who) in ["a1", "a2", "a3"].into_iter().enumerate() {
        tokio::time::sleep_until(t0 + Duration::from_millis(100 * i as u64)).await;
        let (_, rx) = r
            .calls
            .join(
                who.into(),
                crate::calls::Role::Agent,
                vec!["support".into()],
            )
            .await
            .unwrap();
        notices.push(rx);
    }
    // One floor message, 250 ms after the first, with all three: not one per change.
    let floor = client.next_of("floor").await;
    at(t0.elapsed(), FLOOR_EVERY);
    let agents: Vec<&str> = floor["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    // Everyone signed in: the supervisor and the three.
    assert_eq!(agents.len(), 4, "{floor}");
    for who in ["super", "a1", "a2", "a3"] {
        assert!(agents.contains(&who), "{floor}");
    }
}

#[tokio::test]
async fn a_session_whose_sign_in_ended_is_told_at_its_next_check_and_closed_4002() {
    let (mut client, r, auth, who) = session_of("agent2").await;
    let t0 = tokio::time::Instant::now();
    client.next_of("welcome").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let on_floor = |r: &Rig| {
        r.calls
            .floor()
            .borrow()
            .agents
            .iter()
            .any(|a| a.id.0 == "agent2")
    };
    assert!(on_floor(&r));
    assert!(auth.sign_out(&who.session).await);
    let error = client.next_of("error").await;
    assert_eq!(error["code"], "signed_out");
    // The check runs every SESSION_CHECK from the session's start: the one at 5 s finds it.
    at(t0.elapsed(), SESSION_CHECK);
    match client.next().await {
        Got::Close(code) => assert_eq!(code, close::SIGNED_OUT),
        Got::Json(v) => panic!("expected the close frame, got {v}"),
    }
    // The browser answers the close; signed out deliberately, the agent leaves the floor at
    // once (no grace period), with no wait for a client that stays silent.
    client._tx.send(Message::Close(None)).unwrap();
    let mut floor = r.calls.floor();
    while floor
        .borrow_and_update()
        .agents
        .iter()
        .any(|a| a.id.0 == "agent2")
    {
        floor.changed().await.unwrap();
    }
    at(t0.elapsed(), SESSION_CHECK);
}

#[tokio::test]
async fn a_ping_is_answered_and_a_bad_frame_refused_without_ending_the_session() {
    let (mut client, _r, _auth, _) = session_of("agent1").await;
    client.next_of("welcome").await;
    let send = |text: &str| {
        client
            ._tx
            .send(Message::Text(text.to_owned().into()))
            .unwrap();
    };
    send("not json");
    send(r#"{"type":"ping"}"#);
    let error = client.next_of("error").await;
    assert_eq!(error["code"], "bad_message");
    client.next_of("pong").await;
}
