//! Meta's webhook bodies read into typed [`WaEvent`]s: the calls of each change, their errors,
//! the account's quality notices; calls that cannot be used are skipped one by one.
//!
//! *Does not touch*: signatures, de-duplication, the queue: a body reaching here is authentic.

use tracing::{debug, warn};

use super::model::{self, CallEventKind, Lenient, SdpType, WebhookEnvelope};
use crate::ids::WaCallId;
use crate::ops::names;

use super::*;

/// Parses an (already authenticated) webhook body into events, in order. Calls or changes that
/// cannot be used are logged and skipped; only an unreadable envelope fails the whole body.
pub fn parse_webhook(body: &[u8]) -> Result<Vec<WaEvent>, WebhookError> {
    let (events, skipped) = parse_detailed(body)?;
    for e in skipped {
        warn!(error = %e, "webhook call skipped");
    }
    Ok(events)
}

/// Like [`parse_webhook`] but returns the per-call problems instead of logging them.
pub fn parse_detailed(body: &[u8]) -> Result<(Vec<WaEvent>, Vec<WebhookError>), WebhookError> {
    let env: WebhookEnvelope =
        serde_json::from_slice(body).map_err(|e| WebhookError::InvalidJson {
            reason: e.to_string(),
        })?;
    if env.object != model::OBJECT_WABA {
        return Err(WebhookError::UnexpectedObject { object: env.object });
    }
    let mut events = Vec::new();
    let mut skipped = Vec::new();
    for entry in &env.entry {
        for change in &entry.changes {
            let Some(change) = change.valid() else {
                debug!(entry_id = ?entry.id, "unreadable change skipped");
                continue;
            };
            if change.field == model::FIELD_MESSAGES {
                // Most messages are not ours to read; an odd value here is not a call lost.
                if let Lenient::Valid(value) = &change.value {
                    permission_replies(value, &mut events, &mut skipped);
                }
                continue;
            }
            if change.field != model::FIELD_CALLS {
                debug!(field = ?change.field, "non-calls change skipped");
                continue;
            }
            let value = match &change.value {
                Lenient::Valid(v) => v,
                Lenient::Invalid { error, .. } => {
                    skipped.push(WebhookError::InvalidChange {
                        entry_id: entry.id.clone(),
                        reason: error.clone(),
                    });
                    continue;
                }
            };
            value_events(value, &mut events, &mut skipped);
        }
    }
    Ok((events, skipped))
}

/// A calling-quality notice from Meta's `account_update` webhook (§9): a warning (low quality,
/// low pickup rate) or a restriction (calling paused, the call button hidden).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QualityEvent {
    /// The business number concerned.
    pub phone_number: Option<String>,
    /// `ACCOUNT_VIOLATION`, `ACCOUNT_RESTRICTION`, …
    pub event: String,
    /// The violation or restriction type.
    pub kind: String,
    /// When a restriction lifts (Unix seconds), if Meta says.
    pub expiration: Option<u64>,
}

/// The `account_update` notices in an (authenticated) webhook body. Bodies without one cost a
/// substring search; unreadable ones give nothing (they are not calls, and are logged).
pub fn parse_quality_events(body: &[u8]) -> Vec<QualityEvent> {
    let field = model::FIELD_ACCOUNT_UPDATE.as_bytes();
    if !body.windows(field.len()).any(|w| w == field) {
        return vec![];
    }
    let env: model::AccountEnvelope = match serde_json::from_slice(body) {
        Ok(e) => e,
        Err(_) => return vec![],
    };
    if env.object != model::OBJECT_WABA {
        return vec![];
    }
    let mut out = vec![];
    for change in env.entry.iter().flat_map(|e| &e.changes) {
        if change.field != model::FIELD_ACCOUNT_UPDATE {
            continue;
        }
        let update: model::AccountUpdate = match serde_json::from_value(change.value.clone()) {
            Ok(u) => u,
            Err(e) => {
                warn!(error = %e, "account_update change unreadable; skipped");
                continue;
            }
        };
        let event = update.event.clone().unwrap_or_default();
        let mut kinds: Vec<(String, Option<u64>)> = update
            .restriction_info
            .iter()
            .filter_map(|r| r.restriction_type.clone().map(|t| (t, r.expiration)))
            .collect();
        if kinds.is_empty() {
            if let Some(t) = update
                .violation_info
                .as_ref()
                .and_then(|v| v.violation_type.clone())
            {
                kinds.push((t, None));
            }
        }
        for (kind, expiration) in kinds {
            out.push(QualityEvent {
                phone_number: update.phone_number.clone(),
                event: event.clone(),
                kind,
                expiration,
            });
        }
    }
    out
}

/// Counts and logs Meta's calling-quality notices: operators must see them, since a low pickup
/// rate ends with the business's call button hidden (§9).
pub(super) fn quality_events(body: &[u8]) {
    for q in parse_quality_events(body) {
        let event = names::quality_event_label(&q.event);
        let kind = names::quality_type_label(&q.kind);
        metrics::counter!(names::META_QUALITY_EVENTS, "event" => event, "type" => kind)
            .increment(1);
        let number = q.phone_number.as_deref().map(model::mask_number);
        // Meta's strings, logged with `?` (escaped): nothing from outside goes raw into a line.
        warn!(
            event = ?q.event,
            kind = ?q.kind,
            number = ?number,
            expiration = ?q.expiration,
            "Meta calling-quality notice (account_update): unanswered calls cost the call button"
        );
    }
}

pub(super) fn errors_of(list: &[Lenient<model::WebhookErrorObject>]) -> Vec<WaErrorInfo> {
    list.iter()
        .filter_map(Lenient::valid)
        .map(WaErrorInfo::from)
        .collect()
}

pub(super) fn invalid_call<T>(l: &Lenient<T>) -> Option<WebhookError> {
    match l {
        Lenient::Valid(_) => None,
        Lenient::Invalid { error, .. } => Some(WebhookError::InvalidCall {
            call_id: l.raw_id().map(|s| s.chars().take(64).collect()),
            reason: error.clone(),
        }),
    }
}

/// The longest message id kept: Meta's wamids are well under it.
const MAX_MESSAGE_ID: usize = 128;

/// A message id that may be logged and used as a de-duplication key: printable ASCII, short.
fn usable_message_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_MESSAGE_ID && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The call permission replies of a `messages` change; unreadable ones are skipped and
/// reported, every other message is left alone.
pub(super) fn permission_replies(
    v: &model::ChangeValue,
    events: &mut Vec<WaEvent>,
    skipped: &mut Vec<WebhookError>,
) {
    let phone_number_id = v.metadata.as_ref().and_then(|m| m.phone_number_id.clone());
    for reply in v.permission_replies() {
        let raw_id = reply
            .raw_id()
            .filter(|id| usable_message_id(id))
            .map(str::to_owned);
        let m = match reply {
            Lenient::Valid(m) if usable_message_id(&m.id) && !m.from.is_empty() => m,
            Lenient::Valid(m) => {
                skipped.push(WebhookError::InvalidMessage {
                    message_id: None,
                    reason: format!("unusable id ({} bytes) or empty from", m.id.len()),
                });
                continue;
            }
            Lenient::Invalid { error, .. } => {
                skipped.push(WebhookError::InvalidMessage {
                    message_id: raw_id,
                    reason: error,
                });
                continue;
            }
        };
        let answer = m.interactive.call_permission_reply;
        events.push(WaEvent::PermissionReply {
            phone_number_id: phone_number_id.clone(),
            user: m.from,
            response: answer.response,
            permanent: answer.is_permanent,
            expires_at: answer.expiration_timestamp,
            source: answer.response_source,
            context_id: m.context.and_then(|c| c.id),
            timestamp: m.timestamp,
            message_id: m.id,
        });
    }
}

/// Refuses a call id without Meta's shape, before it is used or logged.
pub(super) fn checked_id(id: &WaCallId) -> Result<(), WebhookError> {
    WaCallId::check(&id.0).map_err(|reason| WebhookError::InvalidCallId {
        shown: id.0.chars().take(32).collect(),
        len: id.0.len(),
        reason,
    })
}

pub(super) fn value_events(
    v: &model::ChangeValue,
    events: &mut Vec<WaEvent>,
    skipped: &mut Vec<WebhookError>,
) {
    let phone_number_id = v.metadata.as_ref().and_then(|m| m.phone_number_id.clone());
    let display_number = v
        .metadata
        .as_ref()
        .and_then(|m| m.display_phone_number.clone());
    let contacts: Vec<&model::Contact> = v.contacts.iter().filter_map(Lenient::valid).collect();
    let value_errors = errors_of(&v.errors);
    for call in &v.calls {
        let Lenient::Valid(c) = call else {
            skipped.extend(invalid_call(call));
            continue;
        };
        if let Err(e) = checked_id(&c.id) {
            skipped.push(e);
            continue;
        }
        match &c.event {
            CallEventKind::Connect => {
                match connect_event(c, &phone_number_id, &display_number, &contacts) {
                    Ok(e) => events.push(e),
                    Err(e) => skipped.push(e),
                }
            }
            CallEventKind::Terminate => events.push(WaEvent::CallTerminated {
                call_id: c.id.clone(),
                status: c.status.clone(),
                duration: c.duration,
                start_time: c.start_time,
                end_time: c.end_time,
                errors: match &c.errors {
                    Some(own) => errors_of(own),
                    None => value_errors.clone(),
                },
                biz_opaque_callback_data: c.biz_opaque_callback_data.clone(),
            }),
            CallEventKind::Other(kind) => {
                debug!(call_id = %c.id, event = ?kind, "call event of unknown kind skipped");
            }
        }
    }
    for status in &v.statuses {
        let Lenient::Valid(s) = status else {
            skipped.extend(invalid_call(status));
            continue;
        };
        if let Err(e) = checked_id(&s.id) {
            skipped.push(e);
            continue;
        }
        if s.kind
            .as_deref()
            .is_some_and(|k| !k.eq_ignore_ascii_case("call"))
        {
            debug!(call_id = %s.id, "non-call status skipped");
            continue;
        }
        events.push(WaEvent::CallStatusChanged {
            call_id: s.id.clone(),
            status: s.status.clone(),
            timestamp: s.timestamp,
            recipient_id: s.recipient_id.clone(),
            biz_opaque_callback_data: s.biz_opaque_callback_data.clone(),
            errors: s.errors.as_deref().map(errors_of).unwrap_or_default(),
        });
    }
}

pub(super) fn connect_event(
    c: &model::Call,
    phone_number_id: &Option<String>,
    display_number: &Option<String>,
    contacts: &[&model::Contact],
) -> Result<WaEvent, WebhookError> {
    let session = c.session.as_ref();
    let sdp = session
        .and_then(|s| s.sdp.clone())
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| WebhookError::MissingSession {
            call_id: c.id.clone(),
        })?;
    match session.and_then(|s| s.sdp_type.as_ref()) {
        Some(SdpType::Offer) => {
            let by_number = contacts
                .iter()
                .find(|k| k.wa_id.is_some() && k.wa_id == c.from);
            let contact = by_number.or(match contacts {
                [only] => Some(only),
                _ => None,
            });
            Ok(WaEvent::CallOffered {
                call_id: c.id.clone(),
                phone_number_id: phone_number_id.clone(),
                // The callee of a user-initiated call is our number too.
                display_phone_number: display_number.clone().or_else(|| c.to.clone()),
                from: c.from.clone(),
                to: c.to.clone(),
                caller_name: contact
                    .and_then(|k| k.profile.as_ref())
                    .and_then(|p| p.name.clone()),
                offer_sdp: sdp,
                timestamp: c.timestamp,
                deeplink_payload: c.deeplink_payload.clone(),
                cta_payload: c.cta_payload.clone(),
                received_at: None,
                agent: None,
                unshared: false,
            })
        }
        Some(SdpType::Answer) => Ok(WaEvent::CallAnswered {
            call_id: c.id.clone(),
            answer_sdp: sdp,
        }),
        other => Err(WebhookError::UnexpectedSdpType {
            call_id: c.id.clone(),
            sdp_type: other.map(|t| t.to_string()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    use crate::whatsapp::sdp::SAMPLE_META_OFFER;

    fn id(s: &str) -> WaCallId {
        WaCallId::from(s)
    }

    fn envelope(calls: &str) -> String {
        format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"calls",
            "value":{{"metadata":{{"phone_number_id":"42"}},
            "contacts":[{{"profile":{{"name":"Ann"}},"wa_id":"111"}}],
            "errors":[{{"code":138021,"message":"Media receive timeout"}}],
            "calls":[{calls}]}}}}]}}]}}"#
        )
    }

    #[test]
    fn call_ids_without_metas_shape_are_skipped_and_never_shown_whole() {
        let forged = "wacid.A\\n2026-01-01T00:00:00Z  INFO switchboard: forged line";
        let huge = format!("wacid.{}", "A".repeat(900_000));
        let calls: Vec<String> = [forged, huge.as_str(), "wacid.ABGGFjFVU2AfAgo6V-Hc5eCgK5Gh"]
            .iter()
            .map(|id| format!(r#"{{"id":"{id}","event":"terminate","status":"COMPLETED"}}"#))
            .collect();
        let status = r#"{"id":"wacid.S\u0000","type":"call","status":"RINGING"}"#;
        let body = envelope(&calls.join(",")).replace(
            r#""calls":["#,
            &format!(r#""statuses":[{status}],"calls":["#),
        );
        let (events, skipped) = parse_detailed(body.as_bytes()).unwrap();
        let ids: Vec<&str> = events.iter().map(|e| e.call_id().0.as_str()).collect();
        assert_eq!(ids, vec!["wacid.ABGGFjFVU2AfAgo6V-Hc5eCgK5Gh"]);
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        for e in &skipped {
            assert!(matches!(e, WebhookError::InvalidCallId { .. }), "{e:?}");
            let line = e.to_string();
            assert!(!line.contains('\n') && !line.contains('\0'), "{line}");
            assert!(line.len() < 200, "{} bytes", line.len());
        }
        assert!(matches!(
            skipped[1],
            WebhookError::InvalidCallId {
                len: 900_006,
                reason: CallIdError::TooLong { .. },
                ..
            }
        ));
    }

    #[test]
    fn a_connects_age_comes_from_its_timestamp() {
        let sdp = serde_json::to_string(SAMPLE_META_OFFER).unwrap();
        let at = |ts: &str| {
            let body = envelope(&format!(
                r#"{{"id":"wacid.A","event":"connect","timestamp":"{ts}",
                   "session":{{"sdp_type":"offer","sdp":{sdp}}}}}"#
            ));
            parse_webhook(body.as_bytes()).unwrap().remove(0)
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(
            connect_age(&at("1799999940"), now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            connect_age(&at("1768464000"), now),
            Some(Duration::from_secs(31_536_000))
        );
        // Meta's clock ahead of ours: not old.
        assert_eq!(connect_age(&at("1800000005"), now), Some(Duration::ZERO));
        // No timestamp, or not a user's connect: nothing to judge.
        assert_eq!(connect_age(&at("garbage"), now), None);
        let terminate = envelope(r#"{"id":"wacid.T","event":"terminate","timestamp":"5"}"#);
        let ev = parse_webhook(terminate.as_bytes()).unwrap().remove(0);
        assert_eq!(connect_age(&ev, now), None);
    }

    #[test]
    fn offer_becomes_call_offered_with_caller_name() {
        let sdp = serde_json::to_string(SAMPLE_META_OFFER).unwrap();
        let body = envelope(&format!(
            r#"{{"id":"wacid.A","from":"111","to":"222","event":"connect","timestamp":"5",
               "cta_payload":"sales","session":{{"sdp_type":"offer","sdp":{sdp}}}}}"#
        ));
        let ev = parse_webhook(body.as_bytes()).unwrap();
        assert_eq!(
            ev,
            vec![WaEvent::CallOffered {
                call_id: id("wacid.A"),
                phone_number_id: Some("42".into()),
                display_phone_number: Some("222".into()),
                from: Some("111".into()),
                to: Some("222".into()),
                caller_name: Some("Ann".into()),
                offer_sdp: SAMPLE_META_OFFER.into(),
                timestamp: Some(UnixTime(5)),
                deeplink_payload: None,
                cta_payload: Some("sales".into()),
                received_at: None,
                agent: None,
                unshared: false,
            }]
        );
    }

    #[test]
    fn terminate_prefers_per_call_errors_over_value_errors() {
        let body = envelope(
            r#"{"id":"wacid.A","event":"terminate","status":"Failed"},
               {"id":"wacid.B","event":"terminate","status":"completed","duration":7,
                "errors":[{"code":138023,"message":"no media","error_data":{"details":"d"}}]}"#,
        );
        let ev = parse_webhook(body.as_bytes()).unwrap();
        let codes: Vec<(TerminateStatus, Vec<i64>)> = ev
            .iter()
            .map(|e| match e {
                WaEvent::CallTerminated { status, errors, .. } => (
                    status.clone().unwrap(),
                    errors.iter().map(|x| x.code).collect(),
                ),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            codes,
            vec![
                (TerminateStatus::Failed, vec![138021]),
                (TerminateStatus::Completed, vec![138023])
            ]
        );
    }

    #[test]
    fn bad_connect_is_skipped_alone() {
        let body = envelope(
            r#"{"id":"wacid.A","event":"connect"},
               {"id":"wacid.B","event":"connect","session":{"sdp_type":"pranswer","sdp":"v=0"}},
               {"id":"wacid.C","event":"ringing"},
               {"event":"terminate"},
               {"id":"wacid.D","event":"terminate"}"#,
        );
        let (ev, skipped) = parse_detailed(body.as_bytes()).unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].call_id(), &id("wacid.D"));
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        assert_eq!(
            skipped[0],
            WebhookError::MissingSession {
                call_id: id("wacid.A")
            }
        );
        assert!(matches!(skipped[1], WebhookError::UnexpectedSdpType { .. }));
        assert!(matches!(
            skipped[2],
            WebhookError::InvalidCall { call_id: None, .. }
        ));
    }

    #[test]
    fn envelope_errors() {
        assert!(matches!(
            parse_webhook(b"nope"),
            Err(WebhookError::InvalidJson { .. })
        ));
        assert_eq!(
            parse_webhook(br#"{"object":"page","entry":[]}"#),
            Err(WebhookError::UnexpectedObject {
                object: "page".into()
            })
        );
        // A non-calls change with an odd value is skipped, not an error.
        let ok = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[
            {"field":"messages","value":{"statuses":[{"id":1}],"messages":[{"x":1}]}},
            {"field":"calls","value":"garbage"}, 7]}]}"#;
        let (ev, skipped) = parse_detailed(ok).unwrap();
        assert!(ev.is_empty());
        assert_eq!(skipped.len(), 1);
    }

    #[test]
    fn statuses_become_status_events() {
        let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"calls",
            "value":{"statuses":[{"id":"wacid.S","type":"call","status":"ringing","timestamp":"9"},
                                 {"id":"wamid.M","type":"message","status":"read"}]}}]}]}"#;
        let ev = parse_webhook(body).unwrap();
        assert_eq!(ev.len(), 1);
        assert!(matches!(
            &ev[0],
            WaEvent::CallStatusChanged {
                status: CallStatusKind::Ringing,
                timestamp: Some(UnixTime(9)),
                ..
            }
        ));
    }

    /// Meta's `messages` webhook around `messages` (reference §3.6).
    fn messages(messages: &str) -> String {
        format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"id":"WABA","changes":[{{
            "value":{{"messaging_product":"whatsapp",
              "metadata":{{"display_phone_number":"15550001111","phone_number_id":"42"}},
              "contacts":[{{"profile":{{"name":"Ann"}},"wa_id":"15551234567"}}],
              "messages":[{messages}]}},
            "field":"messages"}}]}}]}}"#
        )
    }

    fn reply(id: &str, answer: &str) -> String {
        format!(
            r#"{{"context":{{"from":"15550001111","id":"wamid.REQUEST"}},
               "from":"15551234567","id":"{id}","timestamp":"1744830000","type":"interactive",
               "interactive":{{"type":"call_permission_reply","call_permission_reply":{answer}}}}}"#
        )
    }

    #[test]
    fn permission_replies_are_read_in_metas_shape() {
        let body = messages(&[
            reply(
                "wamid.A",
                r#"{"response":"accept","is_permanent":false,"expiration_timestamp":1745434800,
                   "response_source":"user_action"}"#,
            ),
            reply(
                "wamid.P",
                r#"{"response":"accept","is_permanent":true,"response_source":"user_action"}"#,
            ),
            reply("wamid.R", r#"{"response":"reject","response_source":"user_action"}"#),
            reply(
                "wamid.U",
                r#"{"response":"accept","is_permanent":false,"expiration_timestamp":"1745434801",
                   "response_source":"automatic"}"#,
            ),
            // Other messages on the same field are none of ours and not malformed.
            r#"{"from":"15551234567","id":"wamid.T","type":"text","text":{"body":"hi"}}"#.into(),
            r#"{"from":"15551234567","id":"wamid.B","type":"interactive",
               "interactive":{"type":"button_reply","button_reply":{"id":"x"}}}"#
                .into(),
        ]
        .join(","));
        let (events, skipped) = parse_detailed(body.as_bytes()).unwrap();
        assert!(skipped.is_empty(), "{skipped:?}");
        let expect = |id: &str, response, permanent, expires: Option<u64>, source: &str| {
            WaEvent::PermissionReply {
                phone_number_id: Some("42".into()),
                user: "15551234567".into(),
                response,
                permanent,
                expires_at: expires.map(UnixTime),
                source: Some(source.into()),
                context_id: Some("wamid.REQUEST".into()),
                timestamp: Some(UnixTime(1744830000)),
                message_id: id.into(),
            }
        };
        assert_eq!(
            events,
            vec![
                expect(
                    "wamid.A",
                    PermissionResponse::Accept,
                    false,
                    Some(1745434800),
                    "user_action"
                ),
                expect(
                    "wamid.P",
                    PermissionResponse::Accept,
                    true,
                    None,
                    "user_action"
                ),
                expect(
                    "wamid.R",
                    PermissionResponse::Reject,
                    false,
                    None,
                    "user_action"
                ),
                expect(
                    "wamid.U",
                    PermissionResponse::Accept,
                    false,
                    Some(1745434801),
                    "automatic"
                ),
            ]
        );
        assert_eq!(events[0].call(), None);
        assert_eq!(events[0].call_id().0, "");
        assert_eq!(
            events[0].dedup_key(),
            DedupKey::Message {
                id: "wamid.A".into()
            }
        );
    }

    #[test]
    fn a_malformed_permission_reply_is_skipped_alone() {
        let body = messages(
            &[
                reply("wamid.BAD", r#"{"response":"maybe"}"#),
                reply("wamid.NOANSWER", r#"null"#),
                reply("wamid.\\nforged line", r#"{"response":"accept"}"#),
                reply("wamid.OK", r#"{"response":"reject"}"#),
            ]
            .join(","),
        );
        let (events, skipped) = parse_detailed(body.as_bytes()).unwrap();
        assert_eq!(events.len(), 1);
        assert!(matches!(
            &events[0],
            WaEvent::PermissionReply { message_id, response: PermissionResponse::Reject, .. }
                if message_id == "wamid.OK"
        ));
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        assert!(matches!(
            &skipped[0],
            WebhookError::InvalidMessage { message_id: Some(id), .. } if id == "wamid.BAD"
        ));
        assert!(matches!(
            &skipped[1],
            WebhookError::InvalidMessage { message_id: Some(id), .. } if id == "wamid.NOANSWER"
        ));
        // An id that could forge a log line is neither used nor shown.
        assert!(matches!(
            &skipped[2],
            WebhookError::InvalidMessage {
                message_id: None,
                ..
            }
        ));
    }

    fn account_update(value: &str) -> String {
        format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"id":"0","time":1641848059,
            "changes":[{{"field":"account_update","value":{value}}}]}}]}}"#
        )
    }

    #[test]
    fn account_update_quality_notices_are_read_in_metas_shapes() {
        // Meta's warning and enforcement samples for low pickup rates (§9).
        let warning = account_update(
            r#"{"phone_number":"16505552771","event":"ACCOUNT_VIOLATION",
            "violation_info":{"violation_type":"USER_INITIATED_CALLS_LOW_PICKUP_RATE",
            "remediation":"Please identify and address the cause"}}"#,
        );
        assert_eq!(
            parse_quality_events(warning.as_bytes()),
            vec![QualityEvent {
                phone_number: Some("16505552771".into()),
                event: "ACCOUNT_VIOLATION".into(),
                kind: "USER_INITIATED_CALLS_LOW_PICKUP_RATE".into(),
                expiration: None,
            }]
        );
        let hidden = account_update(
            r#"{"phone_number":"16505552771","event":"ACCOUNT_RESTRICTION",
            "restriction_info":[{"restriction_type":
            "RESTRICTED_USER_INITIATED_CALLING_CALL_BUTTON_HIDDEN","remediation":"..."}]}"#,
        );
        let q = parse_quality_events(hidden.as_bytes());
        assert_eq!(q.len(), 1);
        assert_eq!(
            q[0].kind,
            "RESTRICTED_USER_INITIATED_CALLING_CALL_BUTTON_HIDDEN"
        );
        // The 7-day pause names both the violation and the restriction: the restriction counts.
        let paused = account_update(
            r#"{"phone_number":"PN","event":"ACCOUNT_RESTRICTION",
            "violation_info":{"violation_type":"LOW_CALLING_QUALITY"},
            "restriction_info":[{"restriction_type":
            "RESTRICTED_BIZ_INITIATED_AND_USER_INITIATED_CALLING","expiration":1641848057}]}"#,
        );
        let q = parse_quality_events(paused.as_bytes());
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].expiration, Some(1641848057));
        // Calls bodies, other objects and odd values give nothing and never fail.
        assert!(parse_quality_events(envelope("[]").as_bytes()).is_empty());
        assert!(parse_quality_events(b"{\"object\":\"page\",\"account_update\":1}").is_empty());
        assert!(parse_quality_events(account_update("[1,2]").as_bytes()).is_empty());
        assert!(parse_quality_events(b"account_update").is_empty());
    }

    #[test]
    fn phone_numbers_are_masked_for_logs() {
        assert_eq!(model::mask_number("16505552771"), "*******2771");
        assert_eq!(model::mask_number("+1 650 555"), "***0555");
        assert_eq!(model::mask_number("12345"), "**345");
        assert_eq!(model::mask_number(""), "");
    }
}
