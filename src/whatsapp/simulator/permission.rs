//! Simulated users answering the business's call permission requests (reference §1.3, §3.6).
//!
//! The fake Graph API decides, when a request arrives, how its user answers ([`Reply`], set
//! with [`super::FakeGraph::on_permission_request`]) and reports it as
//! [`super::FakeGraphEvent::PermissionRequested`]; the [`super::Simulator`]'s dispatcher turns
//! that into Meta's signed `messages` webhook ([`permission_reply_webhook`]) and delivers it
//! like every other webhook. Deciding at request time keeps the fake's `call_permissions`
//! answer and the webhook in agreement whatever order they are read in.

use std::time::Duration;

use crate::whatsapp::model::{
    CallPermissionReply, Change, ChangeValue, Contact, Entry, MessageContext, Metadata,
    PermissionReplyInteractive, PermissionReplyMessage, PermissionResponse, UnixTime,
    WebhookEnvelope, FIELD_MESSAGES, INTERACTIVE_PERMISSION_REPLY, MESSAGE_INTERACTIVE,
    MESSAGING_PRODUCT, OBJECT_WABA,
};

use super::caller::{unix_now, SimulatorConfig};

/// How a simulated user answers a call permission request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reply {
    /// The user allows calls: for good (`permanent`), or for `valid_for` from the request.
    Accept {
        /// A permission that never expires.
        permanent: bool,
        /// How long a temporary permission lasts (7 days at Meta, by providers' accounts).
        valid_for: Duration,
    },
    /// The user declines.
    Reject,
    /// The user never answers: no webhook. What users do unless told otherwise.
    #[default]
    Ignore,
}

impl Reply {
    /// A temporary permission of Meta's usual 7 days.
    pub fn accept_for_a_week() -> Reply {
        Reply::Accept {
            permanent: false,
            valid_for: Duration::from_secs(7 * 24 * 3600),
        }
    }

    /// When the permission this reply grants at `now` (unix seconds) ends; `None` for a
    /// permanent one or none.
    pub fn expires_at(&self, now: u64) -> Option<u64> {
        match self {
            Reply::Accept {
                permanent: false,
                valid_for,
            } => Some(now.saturating_add(valid_for.as_secs())),
            _ => None,
        }
    }
}

/// The body of Meta's `messages` webhook carrying `user`'s `reply` to our request `request_id`
/// to business number `phone_number_id`, sent at `now` (unix seconds); `None` for
/// [`Reply::Ignore`]. Unsigned. The reply's own id is `reply_id`.
pub fn permission_reply_webhook(
    cfg: &SimulatorConfig,
    phone_number_id: &str,
    user: &str,
    request_id: &str,
    reply_id: &str,
    reply: Reply,
    now: u64,
) -> Option<Vec<u8>> {
    let (response, permanent) = match reply {
        Reply::Accept { permanent, .. } => (PermissionResponse::Accept, permanent),
        Reply::Reject => (PermissionResponse::Reject, false),
        Reply::Ignore => return None,
    };
    let message = PermissionReplyMessage {
        from: user.to_owned(),
        id: reply_id.to_owned(),
        timestamp: Some(UnixTime(now)),
        kind: MESSAGE_INTERACTIVE.into(),
        context: Some(MessageContext {
            from: Some(cfg.display_phone_number.clone()),
            id: Some(request_id.to_owned()),
        }),
        interactive: PermissionReplyInteractive {
            kind: INTERACTIVE_PERMISSION_REPLY.into(),
            call_permission_reply: CallPermissionReply {
                response,
                is_permanent: permanent,
                expiration_timestamp: reply.expires_at(now).map(UnixTime),
                response_source: Some("user_action".into()),
            },
        },
    };
    let mut value = ChangeValue {
        messaging_product: Some(MESSAGING_PRODUCT.into()),
        metadata: Some(Metadata {
            display_phone_number: Some(cfg.display_phone_number.clone()),
            phone_number_id: Some(phone_number_id.to_owned()),
        }),
        contacts: vec![Contact {
            profile: None,
            wa_id: Some(user.to_owned()),
            user_id: None,
        }
        .into()],
        ..ChangeValue::default()
    };
    value.push_message(&message).ok()?;
    let env = WebhookEnvelope {
        object: OBJECT_WABA.into(),
        entry: vec![Entry {
            id: cfg.waba_id.clone(),
            changes: vec![Change {
                value: value.into(),
                field: FIELD_MESSAGES.into(),
            }
            .into()],
        }],
    };
    serde_json::to_vec(&env).ok()
}

/// [`permission_reply_webhook`] now, with a fresh reply id.
pub(super) fn reply_now(
    cfg: &SimulatorConfig,
    phone_number_id: &str,
    user: &str,
    request_id: &str,
    reply: Reply,
) -> Option<Vec<u8>> {
    let reply_id = format!(
        "wamid.SIMREPLY{}",
        hex::encode(rand::random::<[u8; 12]>()).to_uppercase()
    );
    permission_reply_webhook(
        cfg,
        phone_number_id,
        user,
        request_id,
        &reply_id,
        reply,
        unix_now(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::whatsapp::webhook::{parse_detailed, WaEvent};

    #[test]
    fn the_webhook_reads_back_as_the_reply_it_carries() {
        let cfg = SimulatorConfig::default();
        let body = permission_reply_webhook(
            &cfg,
            "42",
            "15551234567",
            "wamid.REQ",
            "wamid.REP",
            Reply::Accept {
                permanent: false,
                valid_for: Duration::from_secs(60),
            },
            1_000,
        )
        .unwrap();
        let (events, skipped) = parse_detailed(&body).unwrap();
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(
            events,
            vec![WaEvent::PermissionReply {
                phone_number_id: Some("42".into()),
                user: "15551234567".into(),
                response: PermissionResponse::Accept,
                permanent: false,
                expires_at: Some(UnixTime(1_060)),
                source: Some("user_action".into()),
                context_id: Some("wamid.REQ".into()),
                timestamp: Some(UnixTime(1_000)),
                message_id: "wamid.REP".into(),
            }]
        );
        // Meta sends the expiry as a number, not a string.
        let text = String::from_utf8(body).unwrap();
        assert!(text.contains(r#""expiration_timestamp":1060"#), "{text}");
        assert!(permission_reply_webhook(&cfg, "42", "1", "r", "m", Reply::Ignore, 1).is_none());
    }
}
