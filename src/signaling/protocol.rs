//! The browser protocol on `/ws`, version 1: typed JSON messages, one per WebSocket text frame,
//! each an object with a `type` field. Every message, field and error is documented in
//! `docs/protocol.md`; this file is the source of truth it is checked against.

use serde::{Deserialize, Serialize};

/// The protocol version this server speaks.
pub const VERSION: u32 = 1;

/// The largest text frame accepted; an SDP offer with a handful of audio m-lines is ~6 KiB.
pub const MAX_MESSAGE: usize = 32 * 1024;

/// The longest away reason, in characters; a longer one is refused with `bad_message`.
pub const MAX_REASON_CHARS: usize = 64;

/// WebSocket close codes (private range, RFC 6455 §7.4.2) sent after the `error` that ends a
/// session, so a client that missed the message still learns why.
pub mod close {
    /// The person signed in elsewhere (`error` `replaced`).
    pub const REPLACED: u16 = 4001;
    /// The sign-in ended: logout or expiry (`error` `signed_out`).
    pub const SIGNED_OUT: u16 = 4002;
    /// The session was refreshed (`POST /api/v1/sessions/refresh`): go on with the new token.
    pub const REFRESHED: u16 = 4003;
}

/// What a browser sends. The field-less messages are empty struct variants, not unit ones:
/// serde lets a unit variant of an internally tagged enum ignore extra fields, and the protocol
/// promises `bad_message` for any unknown field.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMsg {
    /// The session's one PeerConnection offer (audio m-lines: the first sends the microphone).
    Offer {
        /// The SDP offer.
        sdp: String,
    },
    /// Available, or away with a reason.
    SetPresence {
        /// True: ready for calls.
        available: bool,
        /// Why away (ignored when available).
        #[serde(default)]
        reason: Option<String>,
    },
    /// Take the ringing call.
    Answer {
        /// The call.
        call_id: String,
    },
    /// Decline the ringing call (it rings on elsewhere; you are set away).
    Decline {
        /// The call.
        call_id: String,
    },
    /// End the call.
    HangUp {
        /// The call.
        call_id: String,
    },
    /// Mute (the caller hears silence) or unmute.
    Mute {
        /// The call.
        call_id: String,
        /// On or off.
        on: bool,
    },
    /// Hold (the caller hears hold audio) or resume.
    Hold {
        /// The call.
        call_id: String,
        /// On or off.
        on: bool,
    },
    /// Blind transfer to an agent or a queue (exactly one of the two).
    Transfer {
        /// The call.
        call_id: String,
        /// To this agent.
        #[serde(default)]
        to_agent: Option<String>,
        /// To this queue.
        #[serde(default)]
        to_queue: Option<String>,
    },
    /// Supervisor: listen to a call.
    Monitor {
        /// The call.
        call_id: String,
    },
    /// Supervisor: speak to the call's agent only.
    Whisper {
        /// The call.
        call_id: String,
    },
    /// Supervisor: stop monitoring or whispering.
    StopMonitor {},
    /// End your wrap-up now ("Done"): back to the state you had before the call.
    WrapUpDone {},
    /// Keep-alive; answered with `pong`.
    Ping {},
    /// Call a customer back (docs/protocol.md, "Call-backs").
    CallBack {
        /// Their WhatsApp number; `+`, spaces, dashes, dots and parentheses are ignored.
        to: String,
        /// The call-back task it answers.
        #[serde(default)]
        task_id: Option<String>,
    },
    /// Stop a call-back the customer has not answered.
    CancelCallBack {},
    /// Pass an offered call-back task on.
    SkipTask {
        /// The task.
        task_id: String,
    },
    /// Send the customer WhatsApp's call-permission request.
    AskPermission {
        /// Their WhatsApp number.
        to: String,
    },
}

/// An agent's state, as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceView {
    /// `offline`, `available`, `away`, `ringing`, `on_call`, `wrap_up`.
    pub state: String,
    /// Why away.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The call, when ringing, on a call or in wrap-up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// In wrap-up: seconds until it ends by itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds_left: Option<u64>,
}

/// One live call in a supervisor's floor view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FloorCall {
    /// Meta's call id.
    pub call_id: String,
    /// The caller's number.
    pub from: Option<String>,
    /// The caller's name.
    pub name: Option<String>,
    /// Its queue.
    pub queue: String,
    /// Its state.
    pub state: String,
    /// The agent on it.
    pub agent: Option<String>,
    /// Seconds since Meta offered it.
    pub age_secs: u64,
    /// Per-leg quality, as last reported (every few seconds).
    pub legs: Vec<FloorLeg>,
}

/// One leg's quality in a supervisor's floor view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FloorLeg {
    /// `whatsapp`, or the agent's id.
    pub leg: String,
    /// Fraction of incoming packets lost (0–1).
    pub loss: Option<f32>,
    /// Interarrival jitter, milliseconds.
    pub jitter_ms: Option<f64>,
    /// Round-trip time, milliseconds.
    pub rtt_ms: Option<f64>,
}

/// One agent in a supervisor's floor view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloorAgent {
    /// The agent.
    pub id: String,
    /// Their queues.
    pub queues: Vec<String>,
    /// What they are doing.
    pub presence: PresenceView,
}

/// One queue in a supervisor's floor view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloorQueue {
    /// The queue.
    pub id: String,
    /// Calls waiting.
    pub waiting: usize,
    /// Seconds the longest-waiting call has waited.
    pub longest_wait_secs: u64,
}

/// What the server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// First message of every session.
    Welcome {
        /// The protocol version.
        version: u32,
        /// Who you are.
        id: String,
        /// Your name.
        name: String,
        /// `agent` or `supervisor`.
        role: String,
        /// Your queues.
        queues: Vec<String>,
        /// The reasons you can pick when going away.
        away_reasons: Vec<String>,
    },
    /// The answer to your offer: set it as the remote description.
    Answer {
        /// The SDP answer.
        sdp: String,
    },
    /// Your state changed.
    Presence(PresenceView),
    /// A call rings at you.
    Ringing {
        /// The call.
        call_id: String,
        /// The caller's number.
        from: Option<String>,
        /// The caller's name.
        name: Option<String>,
        /// Its queue.
        queue: String,
        /// The business number called, as people know it (Meta's `display_phone_number`).
        business_number: Option<String>,
        /// Its id at Meta (`phone_number_id`), which `[[numbers]]` maps to queues.
        business_number_id: Option<String>,
        /// Seconds the caller has waited so far.
        waited_secs: u64,
        /// Seconds it rings here before it moves on.
        ring_secs: u64,
    },
    /// The ring stopped (`missed`, `caller hung up`, …).
    RingStopped {
        /// The call.
        call_id: String,
        /// Why.
        reason: String,
    },
    /// You are talking with the caller.
    Talking {
        /// The call.
        call_id: String,
        /// The caller's number.
        from: Option<String>,
        /// The caller's name.
        name: Option<String>,
    },
    /// Mute or hold changed.
    CallState {
        /// The call.
        call_id: String,
        /// Muted.
        muted: bool,
        /// On hold.
        held: bool,
    },
    /// The caller pressed a key.
    Dtmf {
        /// The call.
        call_id: String,
        /// The key.
        digit: String,
    },
    /// The call is over for you.
    CallEnded {
        /// The call.
        call_id: String,
        /// Why.
        reason: String,
    },
    /// Your monitoring started (with a call) or stopped.
    Monitoring {
        /// The call, or none.
        call_id: Option<String>,
        /// Whispering.
        whisper: bool,
    },
    /// Supervisors: the whole floor, sent on every change.
    Floor {
        /// Live calls.
        calls: Vec<FloorCall>,
        /// Signed-in agents.
        agents: Vec<FloorAgent>,
        /// Queues.
        queues: Vec<FloorQueue>,
    },
    /// A supervisor started (`on`) or stopped whispering to you.
    Whisper {
        /// The call.
        call_id: String,
        /// Whispering now.
        on: bool,
    },
    /// Where a call can be transferred: the agents available now (not you) and the queues. Sent
    /// on connect and whenever it changes.
    Directory {
        /// Available agents.
        agents: Vec<String>,
        /// Queues.
        queues: Vec<String>,
    },
    /// A message of yours was refused; nothing changed.
    Error {
        /// Stable code: `bad_message`, `too_large`, `forbidden`, `not_ringing`, …
        code: String,
        /// In words.
        message: String,
    },
    /// Answer to `ping`.
    Pong,
    /// A step of the agent's call-back.
    CallBack {
        /// The customer's number, digits.
        to: String,
        /// Meta's call id, once known.
        call_id: Option<String>,
        /// `calling`, `ringing`, `connected`, `declined`, `no_answer`, `cancelled`, `failed`.
        status: String,
        /// What the agent reads.
        message: String,
        /// Meta's error code, when Meta refused.
        code: Option<i64>,
        /// A permission request may be sent now.
        can_ask_permission: bool,
        /// When calling the customer is allowed again (unix ms), when Meta said.
        retry_at: Option<i64>,
    },
    /// A call-back task offered to the agent.
    Task {
        /// Its id.
        task_id: String,
        /// The customer's number, digits.
        to: String,
        /// Their name.
        name: Option<String>,
        /// The queue it came from.
        queue: String,
        /// `abandoned`, `unstaffed` or `scheduled`.
        reason: String,
        /// The scheduler's note.
        note: Option<String>,
        /// When it was due, unix ms.
        due_at: Option<i64>,
    },
    /// A permission request's step.
    Permission {
        /// The customer's number, digits.
        to: String,
        /// `requested`, `granted`, `rejected` or `failed`.
        status: String,
        /// What the agent reads.
        message: String,
        /// When a temporary permission ends, unix ms.
        expires_at: Option<i64>,
        /// Granted for good.
        permanent: bool,
    },
    /// A task offer is withdrawn.
    TaskStopped {
        /// The task.
        task_id: String,
        /// `taken`, `skipped`, `cancelled`, `called_in` or `call`.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_less_messages_refuse_unknown_fields() {
        for (text, msg) in [
            (r#"{"type":"ping"}"#, ClientMsg::Ping {}),
            (r#"{"type":"wrap_up_done"}"#, ClientMsg::WrapUpDone {}),
            (r#"{"type":"stop_monitor"}"#, ClientMsg::StopMonitor {}),
        ] {
            assert_eq!(serde_json::from_str::<ClientMsg>(text).unwrap(), msg);
            assert_eq!(serde_json::to_string(&msg).unwrap(), text);
            let extra = text.replace('}', r#","x":1}"#);
            assert!(
                serde_json::from_str::<ClientMsg>(&extra).is_err(),
                "{extra} accepted"
            );
        }
        // As every other message.
        assert!(
            serde_json::from_str::<ClientMsg>(r#"{"type":"answer","call_id":"c","x":1}"#).is_err()
        );
    }
}
