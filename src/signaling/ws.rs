//! `/ws`: one WebSocket per signed-in browser session. It translates the wire protocol
//! ([`super::protocol`]) to the call centre's commands and notices, and nothing more: every
//! decision is the call machines'.

use crate::clock::now;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{Sink, Stream, StreamExt};

use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
use axum::extract::{FromRef, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use futures_util::SinkExt;
use tracing::{debug, info, info_span, Instrument};

use super::auth::{AuthHandle, Authenticated};
use super::protocol::{
    close, ClientMsg, FloorAgent, FloorCall, FloorLeg, FloorQueue, PresenceView, ServerMsg,
    MAX_MESSAGE, MAX_REASON_CHARS, VERSION,
};
use crate::accounts::{same_account, Roster};
use crate::calls::actor::{CallsHandle, Directory, FloorView};
use crate::calls::{Command, Notice, Role, TransferTarget};
use crate::config;
use crate::ids::{AgentId, QueueId, WaCallId};
use crate::routing::Presence;

/// How often a session checks that its sign-in is still valid (logout, expiry).
const SESSION_CHECK: Duration = Duration::from_secs(5);
/// A supervisor's floor is sent at most this often (its latest state).
const FLOOR_EVERY: Duration = Duration::from_millis(250);
/// An agent's transfer directory is sent at most this often (its latest state): every agent
/// follows it, so with hundreds of agents this bounds the floor's cost to sessions.
const DIRECTORY_EVERY: Duration = Duration::from_secs(1);
/// How long a session that sent its Close waits for the client's (the end of the handshake).
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// A session's WebSocket: axum's in the program, an in-memory pair in the tests.
trait Socket:
    Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Unpin + Send
{
}

impl<T> Socket for T where
    T: Stream<Item = Result<Message, axum::Error>>
        + Sink<Message, Error = axum::Error>
        + Unpin
        + Send
{
}

/// What `/ws` needs.
#[derive(Clone, FromRef)]
pub struct WsState {
    /// Sign-in.
    pub auth: AuthHandle,
    /// The call centre.
    pub calls: CallsHandle,
    /// Every account's people, queues and away reasons: a session offers its account's away
    /// reasons and shows only its account's floor.
    pub roster: tokio::sync::watch::Receiver<Arc<Roster>>,
}

/// The `/ws` route.
pub fn router(state: WsState) -> Router {
    Router::new().route("/ws", get(upgrade)).with_state(state)
}

/// The agents' and supervisors' WebSocket (docs/protocol.md).
///
/// Browsers send `Origin` on a WebSocket upgrade but apply no same-origin rule to it: a page of
/// another site could open `/ws` with the cookie. Only switchboard's own pages, the origins of
/// `SWITCHBOARD_ALLOWED_ORIGINS`, and those the signed-in person's account allows (its
/// product's own pages, with a host-issued token) may: any other is refused (403).
#[utoipa::path(get, path = "/ws", tag = "agents",
    security(("session" = [])),
    responses((status = 101, description = "switching to the WebSocket protocol"),
              (status = 401, description = "not signed in"), (status = 403, description = "another site's page")))]
async fn upgrade(
    who: Authenticated,
    State(st): State<WsState>,
    headers: axum::http::HeaderMap,
    uri: axum::http::Uri,
    ws: WebSocketUpgrade,
) -> Response {
    if let Some(origin) = st.auth.foreign_origin(&headers, &uri) {
        if !st
            .roster
            .borrow()
            .origin_allowed_for(&who.person_id.0, &origin)
        {
            return axum::response::IntoResponse::into_response(
                super::auth::AuthError::ForeignOrigin,
            );
        }
    }
    // The library's own cap is far above ours, so an oversized message gets our error instead
    // of a dropped connection. A page of another origin offers the protocol with its token.
    ws.protocols([super::auth::WS_PROTOCOL])
        .max_message_size(4 * MAX_MESSAGE)
        .on_upgrade(move |socket| {
            let span = info_span!("session", agent = %who.person_id);
            session(socket, who, st).instrument(span)
        })
}

async fn session(mut socket: impl Socket, who: Authenticated, st: WsState) {
    let agent = who.person_id.clone();
    let Some(person) = st.auth.person(&agent) else {
        return;
    };
    let role = match who.role {
        config::Role::Agent => Role::Agent,
        // On the floor, an admin is a supervisor.
        config::Role::Supervisor | config::Role::Admin => Role::Supervisor,
    };
    let queues: Vec<QueueId> = person.queues.iter().map(|q| QueueId(q.clone())).collect();
    let Ok((session_id, mut notices)) = st.calls.join(agent.clone(), role, queues).await else {
        return;
    };
    info!("session opened");
    let welcome = ServerMsg::Welcome {
        version: VERSION,
        id: agent.0.clone(),
        name: person.name.clone(),
        role: if role == Role::Supervisor {
            "supervisor"
        } else {
            "agent"
        }
        .into(),
        queues: person.queues.clone(),
        away_reasons: st.roster.borrow().away_reasons_of(&agent.0).to_vec(),
    };
    if send(&mut socket, &welcome).await.is_err() {
        return;
    }
    let mut floor = st.calls.floor();
    let mut directory = st.calls.directory();
    let supervisor = role == Role::Supervisor;
    if supervisor {
        let view = floor.borrow_and_update().clone();
        let _ = send(&mut socket, &floor_msg(&view, &agent)).await;
    }
    let mut sent_directory = {
        let d = directory_msg(&directory.borrow_and_update().clone(), &agent);
        let _ = send(&mut socket, &d).await;
        Some(d)
    };
    // Changes are sent at most once per period each (a busy floor changes many times a
    // second; a session needs its latest state, not every step).
    let mut floor_due: Option<Instant> = None;
    let mut directory_due: Option<Instant> = None;
    let mut floor_sent = now();
    let mut directory_sent = now();
    let mut check = tokio::time::interval(SESSION_CHECK);
    // A change of people (disabled, removed, new password) ends sessions at once.
    let mut revoked = st.auth.revocations();
    let mut signed_out = false;
    loop {
        tokio::select! {
            msg = socket.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    if let Some(reply) = handle_text(&st, &agent, text.as_str()).await {
                        if send(&mut socket, &reply).await.is_err() {
                            break;
                        }
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    let e = error("bad_message", "messages are JSON text frames");
                    if send(&mut socket, &e).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) => {
                    // RFC 6455 §5.5.1: answer with a Close. tungstenite queued the echo of the
                    // client's; flushing sends it.
                    let _ = socket.flush().await;
                    break;
                }
                None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            n = notices.recv() => match n {
                Some(n) => {
                    if send(&mut socket, &notice_msg(n)).await.is_err() {
                        break;
                    }
                }
                None => {
                    // A newer session of the same person took over.
                    let e = error("replaced", "you signed in elsewhere; this page is no longer live");
                    let _ = send(&mut socket, &e).await;
                    close_with(&mut socket, close::REPLACED, "replaced").await;
                    return;
                }
            },
            changed = floor.changed(), if supervisor && floor_due.is_none() => {
                if changed.is_err() {
                    break;
                }
                floor_due = Some((floor_sent + FLOOR_EVERY).max(now()));
            }
            _ = sleep_until_due(floor_due) => {
                floor_due = None;
                floor_sent = now();
                let view = floor.borrow_and_update().clone();
                if send(&mut socket, &floor_msg(&view, &agent)).await.is_err() {
                    break;
                }
            }
            changed = directory.changed(), if directory_due.is_none() => {
                if changed.is_err() {
                    break;
                }
                directory_due = Some((directory_sent + DIRECTORY_EVERY).max(now()));
            }
            _ = sleep_until_due(directory_due) => {
                directory_due = None;
                directory_sent = now();
                // Who and where a call can be transferred to, when it changed.
                let d = directory_msg(&directory.borrow_and_update().clone(), &agent);
                if sent_directory.as_ref() != Some(&d) {
                    if send(&mut socket, &d).await.is_err() {
                        break;
                    }
                    sent_directory = Some(d);
                }
            }
            // (The sender of `revoked` lives in `st.auth`: `changed` cannot fail here.)
            _ = async {
                tokio::select! {
                    _ = check.tick() => {}
                    _ = revoked.changed() => {}
                }
            } => {
                if !st.auth.session_alive_anywhere(&who.session).await {
                    if st.auth.take_superseded(&who.session) {
                        // Refreshed: its holder goes on with the new session. Not a sign-out:
                        // a call in progress waits for the new socket (the grace period).
                        close_with(&mut socket, close::REFRESHED, "session refreshed").await;
                        break;
                    }
                    // Withdrawn by someone else (disabled, new password…): the call the agent is
                    // on goes back to its queue rather than ending with their page.
                    if st.auth.withdrawn(&agent) {
                        st.calls.revoke(agent.clone()).await;
                    }
                    let e = error("signed_out", "your sign-in ended; sign in again");
                    let _ = send(&mut socket, &e).await;
                    close_with(&mut socket, close::SIGNED_OUT, "signed out").await;
                    signed_out = true;
                    break;
                }
            }
        }
    }
    info!(signed_out, "session closed");
    let _ = st.calls.leave(agent, session_id, signed_out).await;
}

/// Sends our Close with `code` and `reason`, then waits a little for the client's.
async fn close_with(socket: &mut impl Socket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    if socket.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(m)) = socket.next().await {
            if matches!(m, Message::Close(_)) {
                return;
            }
        }
    })
    .await;
}

/// A text frame refused before it did anything: the `error` to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refused {
    code: &'static str,
    message: String,
}

/// Checks one text frame: its size, its JSON, and what the types alone cannot say (an away
/// reason's length).
fn parse(text: &str) -> Result<ClientMsg, Refused> {
    if text.len() > MAX_MESSAGE {
        return Err(Refused {
            code: "too_large",
            message: format!("messages are at most {MAX_MESSAGE} bytes"),
        });
    }
    let msg: ClientMsg = serde_json::from_str(text).map_err(|e| Refused {
        code: "bad_message",
        message: format!("not a message of protocol {VERSION}: {e}"),
    })?;
    if let ClientMsg::SetPresence {
        reason: Some(r), ..
    } = &msg
    {
        if r.chars().count() > MAX_REASON_CHARS {
            return Err(Refused {
                code: "bad_message",
                message: format!("an away reason is at most {MAX_REASON_CHARS} characters"),
            });
        }
    }
    Ok(msg)
}

/// Parses and carries out one text frame; returns what to send back, if anything.
async fn handle_text(st: &WsState, agent: &AgentId, text: &str) -> Option<ServerMsg> {
    let msg = match parse(text) {
        Ok(m) => m,
        Err(r) => return Some(error(r.code, &r.message)),
    };
    let call = |id: String| WaCallId(id);
    let command = match msg {
        ClientMsg::Ping {} => return Some(ServerMsg::Pong),
        ClientMsg::Offer { sdp } => {
            return Some(match st.calls.offer(agent.clone(), sdp).await {
                Ok(sdp) => ServerMsg::Answer { sdp },
                Err(e) => error("offer_refused", &e.to_string()),
            })
        }
        ClientMsg::SetPresence { available, reason } => Command::SetPresence { available, reason },
        ClientMsg::Answer { call_id } => Command::Answer {
            call: call(call_id),
        },
        ClientMsg::Decline { call_id } => Command::Decline {
            call: call(call_id),
        },
        ClientMsg::HangUp { call_id } => Command::HangUp {
            call: call(call_id),
        },
        ClientMsg::Mute { call_id, on } => Command::Mute {
            call: call(call_id),
            on,
        },
        ClientMsg::Hold { call_id, on } => Command::Hold {
            call: call(call_id),
            on,
        },
        ClientMsg::Transfer {
            call_id,
            to_agent,
            to_queue,
        } => {
            let to = match (to_agent, to_queue) {
                (Some(a), None) => TransferTarget::Agent(AgentId(a)),
                (None, Some(q)) => TransferTarget::Queue(QueueId(q)),
                _ => {
                    return Some(error(
                        "bad_message",
                        "transfer takes exactly one of to_agent and to_queue",
                    ))
                }
            };
            Command::Transfer {
                call: call(call_id),
                to,
            }
        }
        ClientMsg::Monitor { call_id } => Command::Monitor {
            call: call(call_id),
        },
        ClientMsg::Whisper { call_id } => Command::Whisper {
            call: call(call_id),
        },
        ClientMsg::StopMonitor {} => Command::StopMonitor,
        ClientMsg::WrapUpDone {} => Command::EndWrapUp,
        ClientMsg::CallBack { to, task_id } => Command::CallBack { to, task: task_id },
        ClientMsg::CancelCallBack {} => Command::CancelCallBack,
        ClientMsg::SkipTask { task_id } => Command::SkipTask { task: task_id },
        ClientMsg::AskPermission { to } => Command::AskPermission { to },
    };
    debug!(?command, "command");
    if st.calls.command(agent.clone(), command).await.is_err() {
        return Some(error("unavailable", "the call centre is stopping"));
    }
    None
}

async fn send(socket: &mut impl Socket, msg: &ServerMsg) -> Result<(), axum::Error> {
    // Our own types always serialize; an empty object would be a bug, not a crash.
    let text = serde_json::to_string(msg).unwrap_or_else(|_| "{}".into());
    socket.send(Message::Text(text.into())).await
}

fn error(code: &str, message: &str) -> ServerMsg {
    ServerMsg::Error {
        code: code.into(),
        message: message.into(),
    }
}

/// The wire form of a presence.
pub fn presence_view(p: &Presence) -> PresenceView {
    let (reason, call_id) = match p {
        Presence::Away { reason } => (Some(reason.text().to_owned()), None),
        Presence::Ringing { call } | Presence::OnCall { call } | Presence::WrapUp { call, .. } => {
            (None, Some(call.0.clone()))
        }
        _ => (None, None),
    };
    let seconds_left = match p {
        Presence::WrapUp { until, .. } => Some(until.saturating_duration_since(now()).as_secs()),
        _ => None,
    };
    PresenceView {
        state: p.name().into(),
        reason,
        call_id,
        seconds_left,
    }
}

fn notice_msg(n: Notice) -> ServerMsg {
    match n {
        Notice::Presence(p) => ServerMsg::Presence(presence_view(&p)),
        Notice::Ringing {
            call,
            from,
            name,
            queue,
            business_number,
            display_number,
            waited,
            rings_for,
        } => ServerMsg::Ringing {
            call_id: call.0,
            from,
            name,
            queue: queue.0,
            // What the agent greets with; the id only where Meta sent no number.
            business_number: display_number.or_else(|| business_number.clone()),
            business_number_id: business_number,
            waited_secs: waited.as_secs(),
            ring_secs: rings_for.as_secs(),
        },
        Notice::RingStopped { call, reason } => ServerMsg::RingStopped {
            call_id: call.0,
            reason: reason.as_str().into(),
        },
        Notice::Talking { call, from, name } => ServerMsg::Talking {
            call_id: call.0,
            from,
            name,
        },
        Notice::CallState { call, muted, held } => ServerMsg::CallState {
            call_id: call.0,
            muted,
            held,
        },
        Notice::Dtmf { call, digit } => ServerMsg::Dtmf {
            call_id: call.0,
            digit: digit.to_string(),
        },
        Notice::CallEnded { call, reason } => ServerMsg::CallEnded {
            call_id: call.0,
            reason,
        },
        Notice::Monitoring { call, whisper } => ServerMsg::Monitoring {
            call_id: call.map(|c| c.0),
            whisper,
        },
        Notice::Whisper { call, on } => ServerMsg::Whisper {
            call_id: call.0,
            on,
        },
        Notice::Refused { code, message } => error(code.code(), &message),
        Notice::CallBack {
            to,
            call,
            status,
            code,
            message,
            can_ask_permission,
            retry_at,
        } => ServerMsg::CallBack {
            to,
            call_id: call.map(|c| c.0),
            status: status.as_str().into(),
            message,
            code,
            can_ask_permission,
            retry_at,
        },
        Notice::Task(t) => ServerMsg::Task {
            task_id: t.id,
            to: t.to,
            name: t.name,
            queue: t.queue.0,
            reason: t.reason.as_str().into(),
            note: t.note,
            due_at: t.due_at,
        },
        Notice::Permission {
            to,
            step,
            message,
            expires_at,
            permanent,
        } => ServerMsg::Permission {
            to,
            status: step.as_str().into(),
            message,
            expires_at,
            permanent,
        },
        Notice::TaskStopped { task, reason } => ServerMsg::TaskStopped {
            task_id: task,
            reason: reason.as_str().into(),
        },
    }
}

/// Who and where `me` can transfer to: their own account's agents and queues only.
fn directory_msg(d: &Directory, me: &AgentId) -> ServerMsg {
    ServerMsg::Directory {
        agents: d
            .available
            .iter()
            .filter(|a| *a != me && same_account(&a.0, &me.0))
            .map(|a| a.0.clone())
            .collect(),
        queues: d
            .queues
            .iter()
            .filter(|q| same_account(&q.0, &me.0))
            .map(|q| q.0.clone())
            .collect(),
    }
}

/// Sleeps until `due`; never wakes when there is none.
async fn sleep_until_due(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The floor as the supervisor `me` sees it: their own account's calls, agents and queues.
fn floor_msg(view: &Arc<FloorView>, me: &AgentId) -> ServerMsg {
    let now = now();
    let secs = |t: Instant| now.saturating_duration_since(t).as_secs();
    let ours = |id: &str| same_account(id, &me.0);
    ServerMsg::Floor {
        calls: view
            .calls
            .iter()
            .filter(|c| ours(&c.queue.0))
            .map(|c| FloorCall {
                call_id: c.call.0.clone(),
                from: c.from.clone(),
                name: c.name.clone(),
                queue: c.queue.0.clone(),
                state: c.state.as_str().into(),
                agent: c.agent.as_ref().map(|a| a.0.clone()),
                age_secs: secs(c.offered_at),
                legs: c
                    .legs
                    .iter()
                    .map(|(leg, s)| FloorLeg {
                        leg: leg.label().to_owned(),
                        loss: s.loss_rx,
                        jitter_ms: s.jitter.map(|d| d.as_secs_f64() * 1000.0),
                        rtt_ms: s.rtt.map(|d| d.as_secs_f64() * 1000.0),
                    })
                    .collect(),
            })
            .collect(),
        agents: view
            .agents
            .iter()
            .filter(|a| ours(&a.id.0))
            .map(|a| FloorAgent {
                id: a.id.0.clone(),
                queues: a.queues.iter().map(|q| q.0.clone()).collect(),
                presence: presence_view(&a.presence),
            })
            .collect(),
        queues: view
            .queues
            .iter()
            .filter(|(q, _)| ours(&q.0))
            .map(|(q, w)| FloorQueue {
                id: q.0.clone(),
                waiting: w.len(),
                longest_wait_secs: w.first().map_or(0, |w| secs(w.since)),
            })
            .collect(),
    }
}

/// `/ws` in the OpenAPI document ([`crate::http::openapi`]).
#[derive(utoipa::OpenApi)]
#[openapi(paths(upgrade))]
pub(crate) struct WsDoc;

#[cfg(test)]
mod tests;
