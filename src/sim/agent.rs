//! A simulated agent: signs in over HTTP, opens `/ws`, sets up its one PeerConnection (a
//! browser-shaped str0m peer with two receive streams) and then speaks the protocol like the
//! agent's page does. The tests and, later, the load test drive the call centre with it.
//!
//! This is test scaffolding over real sockets: it speaks only the wire protocol and WebRTC.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::peer::{Peer, PeerError, PendingPeer};
use crate::signaling::protocol::{ClientMsg, ServerMsg};

/// Errors of a simulated agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Sign-in failed.
    #[error("sign-in: {0}")]
    SignIn(String),
    /// The WebSocket failed.
    #[error("websocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    /// The media peer failed.
    #[error("media: {0}")]
    Peer(#[from] PeerError),
    /// The server did not say what was expected in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The session is gone.
    #[error("the session is closed")]
    Closed,
}

/// A signed-in agent with a live `/ws` session.
pub struct SimAgent {
    /// The sign-in name.
    pub id: String,
    /// The bearer token.
    pub token: String,
    out: mpsc::Sender<Message>,
    inbox: mpsc::Receiver<ServerMsg>,
    /// Every message received so far, in order.
    pub seen: Vec<ServerMsg>,
    task: JoinHandle<()>,
    /// The agent's PeerConnection, once set up.
    pub peer: Option<Peer>,
}

impl Drop for SimAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `POST /api/login`; the token.
pub async fn sign_in(http: SocketAddr, id: &str, password: &str) -> Result<String, AgentError> {
    #[derive(serde::Deserialize)]
    struct Token {
        token: String,
    }
    let r = reqwest::Client::new()
        .post(format!("http://{http}/api/login"))
        .json(&serde_json::json!({ "id": id, "password": password }))
        .send()
        .await
        .map_err(|e| AgentError::SignIn(e.to_string()))?;
    if !r.status().is_success() {
        return Err(AgentError::SignIn(format!("HTTP {}", r.status())));
    }
    let t: Token = r
        .json()
        .await
        .map_err(|e| AgentError::SignIn(e.to_string()))?;
    Ok(t.token)
}

impl SimAgent {
    /// Signs in, opens `/ws`, and connects a PeerConnection with `streams` audio m-lines from
    /// `media_ip`; returns once the media is connected.
    pub async fn start(
        http: SocketAddr,
        id: &str,
        password: &str,
        media_ip: IpAddr,
        streams: usize,
    ) -> Result<SimAgent, AgentError> {
        let token = sign_in(http, id, password).await?;
        let mut agent = SimAgent::open(http, id, &token).await?;
        agent.connect_media(media_ip, streams).await?;
        Ok(agent)
    }

    /// Opens `/ws` with a token; waits for `welcome`.
    pub async fn open(http: SocketAddr, id: &str, token: &str) -> Result<SimAgent, AgentError> {
        let mut req = format!("ws://{http}/ws").into_client_request()?;
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| AgentError::SignIn("token is not a header value".into()))?;
        req.headers_mut().insert("authorization", value);
        let (ws, _) = tokio_tungstenite::connect_async(req).await?;
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::channel::<Message>(64);
        let (in_tx, inbox) = mpsc::channel(4096);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    m = out_rx.recv() => match m {
                        Some(m) => if sink.send(m).await.is_err() { return },
                        None => { let _ = sink.close().await; return }
                    },
                    m = stream.next() => match m {
                        Some(Ok(Message::Text(t))) => {
                            if let Ok(msg) = serde_json::from_str::<ServerMsg>(t.as_str()) {
                                if in_tx.send(msg).await.is_err() { return }
                            }
                        }
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                        Some(Ok(_)) => {}
                    }
                }
            }
        });
        let mut agent = SimAgent {
            id: id.to_owned(),
            token: token.to_owned(),
            out,
            inbox,
            seen: vec![],
            task,
            peer: None,
        };
        agent
            .expect(Duration::from_secs(10), "welcome", |m| {
                matches!(m, ServerMsg::Welcome { .. })
            })
            .await?;
        Ok(agent)
    }

    /// Offers a PeerConnection with `streams` audio m-lines and waits until it is connected.
    pub async fn connect_media(&mut self, ip: IpAddr, streams: usize) -> Result<(), AgentError> {
        let pending = PendingPeer::browser(ip, streams).await?;
        self.send(ClientMsg::Offer {
            sdp: pending.offer().to_owned(),
        })
        .await?;
        let answer = self
            .expect(Duration::from_secs(10), "answer", |m| {
                matches!(m, ServerMsg::Answer { .. } | ServerMsg::Error { .. })
            })
            .await?;
        let ServerMsg::Answer { sdp } = answer else {
            return Err(AgentError::SignIn(format!("offer refused: {answer:?}")));
        };
        let peer = pending.connect(&sdp)?;
        peer.wait_for(Duration::from_secs(10), |s| s.connected)
            .await
            .ok_or(AgentError::Timeout("media connected"))?;
        self.peer = Some(peer);
        // Connected here is not yet connected there: wait until switchboard has seen the leg
        // up (the "audio not connected" away state is over), so the next command finds it.
        let audio_up = |m: &ServerMsg| {
            matches!(m, ServerMsg::Presence(p)
                if !(p.state == "away" && p.reason.as_deref() == Some(crate::calls::NO_AUDIO)))
        };
        let last = self
            .seen
            .iter()
            .rev()
            .find(|m| matches!(m, ServerMsg::Presence(_)));
        if !last.is_some_and(audio_up) {
            self.expect(Duration::from_secs(10), "audio up at switchboard", audio_up)
                .await?;
        }
        Ok(())
    }

    /// Sends a message.
    pub async fn send(&self, msg: ClientMsg) -> Result<(), AgentError> {
        let text = serde_json::to_string(&msg).map_err(|_| AgentError::Closed)?;
        self.send_raw(Message::Text(text.into())).await
    }

    /// Sends any frame, as a faulty or hostile client could.
    pub async fn send_raw(&self, msg: Message) -> Result<(), AgentError> {
        self.out.send(msg).await.map_err(|_| AgentError::Closed)
    }

    /// The next message that satisfies `f` (others are kept in `seen`), or an error after
    /// `limit`.
    pub async fn expect(
        &mut self,
        limit: Duration,
        what: &'static str,
        mut f: impl FnMut(&ServerMsg) -> bool,
    ) -> Result<ServerMsg, AgentError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.inbox.recv()).await {
                Ok(Some(m)) => {
                    self.seen.push(m.clone());
                    if f(&m) {
                        return Ok(m);
                    }
                }
                Ok(None) => return Err(AgentError::Closed),
                Err(_) => return Err(AgentError::Timeout(what)),
            }
        }
    }

    /// Waits for a call to ring; its id.
    pub async fn ringing(&mut self, limit: Duration) -> Result<String, AgentError> {
        match self
            .expect(limit, "ringing", |m| matches!(m, ServerMsg::Ringing { .. }))
            .await?
        {
            ServerMsg::Ringing { call_id, .. } => Ok(call_id),
            _ => Err(AgentError::Closed),
        }
    }

    /// Answers `call_id` and waits until the call is talking.
    pub async fn answer(&mut self, call_id: &str, limit: Duration) -> Result<(), AgentError> {
        self.send(ClientMsg::Answer {
            call_id: call_id.to_owned(),
        })
        .await?;
        self.expect(limit, "talking", |m| matches!(m, ServerMsg::Talking { .. }))
            .await
            .map(|_| ())
    }

    /// The PeerConnection (panics before `connect_media`: a test bug).
    pub fn media(&self) -> &Peer {
        self.peer
            .as_ref()
            .expect("connect_media was called before using the agent's media")
    }
}
