//! Serde types for Meta's wire JSON: webhook envelopes, Graph `/calls` request bodies, Graph
//! responses and the Graph error object (reference §3, §4).
//!
//! Parsing is deliberately lenient: unknown keys are ignored, every field Meta may omit is an
//! `Option`, string enums keep unknown values (`Other`) instead of failing, and each change, call
//! and status is wrapped in [`Lenient`] so one malformed element never hides its neighbours.
//! Every type also serialises, so the simulator can build and sign webhooks from them.
//!
//! This is the only file of the module that may hold `serde_json::Value`.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::WaCallId;

/// The `object` value of every WhatsApp Business Account webhook.
pub const OBJECT_WABA: &str = "whatsapp_business_account";
/// The `messaging_product` value of every body and response.
pub const MESSAGING_PRODUCT: &str = "whatsapp";
/// The `changes[].field` that carries call events and call statuses.
pub const FIELD_CALLS: &str = "calls";

/// An element that either parsed as `T` or did not; the raw JSON is kept either way for
/// serialisation. Deserialising a `Lenient` never fails (unless the input is not JSON at all).
#[derive(Debug, Clone, PartialEq)]
pub enum Lenient<T> {
    /// The element has the expected shape.
    Valid(T),
    /// The element could not be read as `T`.
    Invalid {
        /// The element as received.
        raw: serde_json::Value,
        /// Why it could not be read.
        error: String,
    },
}

impl<T> Lenient<T> {
    /// The parsed element, if it parsed.
    pub fn valid(&self) -> Option<&T> {
        match self {
            Lenient::Valid(t) => Some(t),
            Lenient::Invalid { .. } => None,
        }
    }

    /// For an invalid element: its `"id"` string, if it has one (for logging).
    pub fn raw_id(&self) -> Option<&str> {
        match self {
            Lenient::Valid(_) => None,
            Lenient::Invalid { raw, .. } => raw.get("id").and_then(|v| v.as_str()),
        }
    }
}

impl<T> From<T> for Lenient<T> {
    fn from(t: T) -> Self {
        Lenient::Valid(t)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = serde_json::Value::deserialize(d)?;
        Ok(match T::deserialize(&raw) {
            Ok(t) => Lenient::Valid(t),
            Err(e) => Lenient::Invalid {
                error: e.to_string(),
                raw,
            },
        })
    }
}

impl<T: Serialize> Serialize for Lenient<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Lenient::Valid(t) => t.serialize(s),
            Lenient::Invalid { raw, .. } => raw.serialize(s),
        }
    }
}

/// Declares a string enum whose parsing is case-insensitive and keeps unknown values.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(from = "String", into = "String")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A value this version does not know, kept verbatim.
            Other(String),
        }

        impl $name {
            /// The canonical wire spelling.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)+
                    $name::Other(s) => s,
                }
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $(if s.eq_ignore_ascii_case($text) { return $name::$variant; })+
                $name::Other(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name::from(s.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                match v {
                    $name::Other(s) => s,
                    other => other.as_str().to_owned(),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// `calls[].event`.
    CallEventKind {
        /// A call is being set up (offer for user-initiated, answer for business-initiated).
        Connect => "connect",
        /// The call ended.
        Terminate => "terminate",
    }
);

wire_enum!(
    /// `calls[].direction`.
    CallDirection {
        /// The WhatsApp user called the business.
        UserInitiated => "USER_INITIATED",
        /// The business called the user.
        BusinessInitiated => "BUSINESS_INITIATED",
    }
);

wire_enum!(
    /// `calls[].status` of a terminate webhook (Meta spells it `COMPLETED` or `Completed`).
    TerminateStatus {
        /// The call ended normally.
        Completed => "COMPLETED",
        /// The call failed.
        Failed => "FAILED",
        /// Not documented by Meta; seen in other implementations.
        Rejected => "REJECTED",
    }
);

wire_enum!(
    /// `statuses[].status` of a business-initiated call.
    CallStatusKind {
        /// The user's device rings.
        Ringing => "RINGING",
        /// The user answered (may arrive after media started).
        Accepted => "ACCEPTED",
        /// The user declined.
        Rejected => "REJECTED",
    }
);

wire_enum!(
    /// `session.sdp_type`.
    SdpType {
        /// An SDP offer.
        Offer => "offer",
        /// An SDP answer.
        Answer => "answer",
    }
);

wire_enum!(
    /// `action` of a Graph `/calls` request.
    CallAction {
        /// Send our answer early so ICE/DTLS can complete while the user hears ringing.
        PreAccept => "pre_accept",
        /// Connect the call (same answer SDP as pre_accept).
        Accept => "accept",
        /// Decline a call that was not accepted.
        Reject => "reject",
        /// End the call.
        Terminate => "terminate",
        /// Start a business-initiated call.
        Connect => "connect",
    }
);

/// A UNIX timestamp in seconds. Meta sends these as strings; integers are accepted too, and an
/// unreadable value is read as absent rather than failing the whole call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnixTime(pub u64);

impl fmt::Display for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for UnixTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for UnixTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        lenient_u64(d)?
            .map(UnixTime)
            .ok_or_else(|| serde::de::Error::custom("not a UNIX time"))
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrText {
    Num(u64),
    Text(String),
    Float(f64),
}

fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(v.and_then(|v| match NumOrText::deserialize(&v).ok()? {
        NumOrText::Num(n) => Some(n),
        NumOrText::Text(t) => t.trim().parse().ok(),
        NumOrText::Float(f) if f.is_finite() && f >= 0.0 => Some(f as u64),
        NumOrText::Float(_) => None,
    }))
}

fn lenient_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<UnixTime>, D::Error> {
    Ok(lenient_u64(d)?.map(UnixTime))
}

/// The top of every webhook POST.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookEnvelope {
    /// Must be [`OBJECT_WABA`].
    pub object: String,
    /// One element per WhatsApp Business Account.
    #[serde(default)]
    pub entry: Vec<Entry>,
}

/// `entry[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The WABA id.
    #[serde(default)]
    pub id: String,
    /// The changes for this account.
    #[serde(default)]
    pub changes: Vec<Lenient<Change>>,
}

/// `changes[]`: a subscribed field and its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// The value; read only when `field` is [`FIELD_CALLS`].
    pub value: Lenient<ChangeValue>,
    /// The subscribed field (`calls`, `messages`, …).
    pub field: String,
}

/// `changes[].value`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChangeValue {
    /// Always `whatsapp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messaging_product: Option<String>,
    /// The business number this is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// The WhatsApp users involved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<Lenient<Contact>>,
    /// Call events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<Lenient<Call>>,
    /// Call statuses (business-initiated calls).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statuses: Vec<Lenient<Status>>,
    /// Errors at value level (they apply to the calls beside them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<Lenient<WebhookErrorObject>>,
    /// Messages (field `messages`): kept raw, because only one kind is read (call permission
    /// replies, [`ChangeValue::permission_replies`]) and a text or image message of a shape we
    /// do not model must never count as malformed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<serde_json::Value>,
}

impl ChangeValue {
    /// The call permission replies among `messages` (reference §3.6), each read or not; every
    /// other message is left out unread.
    pub fn permission_replies(&self) -> Vec<Lenient<PermissionReplyMessage>> {
        self.messages
            .iter()
            .filter(|m| {
                MessageProbe::deserialize(*m).is_ok_and(|p| {
                    p.kind.as_deref() == Some(MESSAGE_INTERACTIVE)
                        && p.interactive.and_then(|i| i.kind).as_deref()
                            == Some(INTERACTIVE_PERMISSION_REPLY)
                })
            })
            .map(|m| match PermissionReplyMessage::deserialize(m) {
                Ok(r) => Lenient::Valid(r),
                Err(e) => Lenient::Invalid {
                    raw: m.clone(),
                    error: e.to_string(),
                },
            })
            .collect()
    }

    /// Adds `message` to `messages` (the simulator builds reply webhooks with it).
    pub fn push_message<T: Serialize>(&mut self, message: &T) -> Result<(), serde_json::Error> {
        self.messages.push(serde_json::to_value(message)?);
        Ok(())
    }
}

/// The field that carries messages, among them call permission replies.
pub const FIELD_MESSAGES: &str = "messages";
/// `messages[].type` of interactive messages and replies.
pub const MESSAGE_INTERACTIVE: &str = "interactive";
/// `interactive.type` of the user's answer to a call permission request.
pub const INTERACTIVE_PERMISSION_REPLY: &str = "call_permission_reply";
/// `interactive.type` (and `action.name`) of a call permission request.
pub const INTERACTIVE_PERMISSION_REQUEST: &str = "call_permission_request";

/// Just enough of a message to tell a permission reply from anything else: no field is required,
/// so no message fails here.
#[derive(Deserialize)]
struct MessageProbe {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    interactive: Option<InteractiveProbe>,
}

#[derive(Deserialize)]
struct InteractiveProbe {
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

/// A `messages[]` element of `type: "interactive"`, `interactive.type: "call_permission_reply"`
/// (reference §3.6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PermissionReplyMessage {
    /// The user who answered.
    pub from: String,
    /// The reply's own `wamid.…`.
    pub id: String,
    /// When the user answered.
    #[serde(
        default,
        deserialize_with = "lenient_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub timestamp: Option<UnixTime>,
    /// Always `interactive`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What the reply answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<MessageContext>,
    /// The answer.
    pub interactive: PermissionReplyInteractive,
}

/// `messages[].context`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MessageContext {
    /// Our business number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The wamid of our permission request, or the wacid of the call that prompted the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// `messages[].interactive` of a permission reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PermissionReplyInteractive {
    /// Always `call_permission_reply`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The answer itself.
    pub call_permission_reply: CallPermissionReply,
}

/// What the user chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PermissionResponse {
    /// The business may call.
    Accept,
    /// The business may not (also how Meta revokes a permission after unanswered calls).
    Reject,
}

impl PermissionResponse {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PermissionResponse::Accept => "accept",
            PermissionResponse::Reject => "reject",
        }
    }
}

/// `interactive.call_permission_reply`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallPermissionReply {
    /// `accept` or `reject`; anything else makes the reply unreadable (it cannot be acted on).
    pub response: PermissionResponse,
    /// Whether the permission never expires.
    #[serde(default)]
    pub is_permanent: bool,
    /// When a temporary permission ends (Meta sends an integer).
    #[serde(
        default,
        deserialize_with = "lenient_time",
        serialize_with = "time_as_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub expiration_timestamp: Option<UnixTime>,
    /// `user_action` or `automatic` (the user called with callback permission on, or Meta
    /// revoked the permission).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_source: Option<String>,
}

fn time_as_number<S: Serializer>(t: &Option<UnixTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_u64(t.0),
        None => s.serialize_none(),
    }
}

/// `recipient_type` of a message to one user.
pub const RECIPIENT_INDIVIDUAL: &str = "individual";
/// `type` of a template message.
pub const MESSAGE_TEMPLATE: &str = "template";

/// Body of `POST /{phone-number-id}/messages` for a call permission request (reference §4.6).
/// Every field is optional so the fake Graph API can read a malformed one and say what is
/// missing.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MessageRequest {
    /// Always `whatsapp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messaging_product: Option<String>,
    /// Always `individual`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_type: Option<String>,
    /// The user's number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// `interactive` or `template`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The free-form request (inside the customer service window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interactive: Option<InteractiveRequest>,
    /// The template request (outside it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateRequest>,
}

/// `interactive` of a permission request.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct InteractiveRequest {
    /// `call_permission_request`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `{ "name": "call_permission_request" }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<NamedAction>,
    /// The text shown above the buttons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<TextBody>,
}

/// `interactive.action`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NamedAction {
    /// The action's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `interactive.body`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TextBody {
    /// The text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// `template` of a template message.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TemplateRequest {
    /// The approved template's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<TemplateLanguage>,
}

/// `template.language`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TemplateLanguage {
    /// e.g. `en_US`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// A successful `POST /{phone-number-id}/messages` response.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MessageResponse {
    /// Always `whatsapp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messaging_product: Option<String>,
    /// The recipients as Meta read them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<MessageContact>,
    /// The messages sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<MessageRef>,
}

/// `contacts[]` of a messages response.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MessageContact {
    /// The number as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// The user's WhatsApp id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<String>,
}

/// `messages[]` of a messages response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageRef {
    /// The message's `wamid.…`.
    pub id: String,
}

/// Body of `POST /{phone-number-id}/settings` (reference §4.4), only the part switchboard sets.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SettingsRequest {
    /// The calling settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calling: Option<CallingSettings>,
}

/// `calling` of the settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CallingSettings {
    /// `ENABLED` or `DISABLED`: whether a user who called is asked for call permission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_permission_status: Option<String>,
}

/// `ENABLED`, in settings.
pub const SETTING_ENABLED: &str = "ENABLED";
/// `DISABLED`, in settings.
pub const SETTING_DISABLED: &str = "DISABLED";

/// `value.metadata`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Metadata {
    /// The business number as displayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_phone_number: Option<String>,
    /// The id used in `POST /{phone-number-id}/calls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number_id: Option<String>,
}

/// `value.contacts[]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Contact {
    /// The user's profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    /// The user's WhatsApp number; absent for users who adopted usernames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<String>,
    /// The business-scoped user id (BSUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// `contacts[].profile`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Profile {
    /// The user's display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `value.calls[]`: one call event (connect or terminate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    /// The `wacid.…` call id.
    pub id: WaCallId,
    /// `connect`, `terminate`, or something newer.
    pub event: CallEventKind,
    /// The caller (user-initiated) or, in some samples, the business.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The callee.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The callee's BSUID (business-initiated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_user_id: Option<String>,
    /// When Meta produced the event.
    #[serde(
        default,
        deserialize_with = "lenient_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub timestamp: Option<UnixTime>,
    /// Who started the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<CallDirection>,
    /// The SDP of a connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<Session>,
    /// How a terminated call ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TerminateStatus>,
    /// When the call was picked up (terminate; absent if it never was).
    #[serde(
        default,
        deserialize_with = "lenient_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub start_time: Option<UnixTime>,
    /// When the call ended (terminate).
    #[serde(
        default,
        deserialize_with = "lenient_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub end_time: Option<UnixTime>,
    /// Seconds the call lasted (terminate).
    #[serde(
        default,
        deserialize_with = "lenient_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub duration: Option<u64>,
    /// Echo of what we passed in accept/connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub biz_opaque_callback_data: Option<String>,
    /// The `biz_payload` of the deep link the user called from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deeplink_payload: Option<String>,
    /// The `payload` of the call button the user pressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cta_payload: Option<String>,
    /// Per-call errors (some senders put them here; they win over value-level ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<Lenient<WebhookErrorObject>>>,
}

impl Call {
    /// A call object with only the id and event set; fill the rest with struct update syntax.
    pub fn new(id: WaCallId, event: CallEventKind) -> Self {
        Call {
            id,
            event,
            from: None,
            to: None,
            to_user_id: None,
            timestamp: None,
            direction: None,
            session: None,
            status: None,
            start_time: None,
            end_time: None,
            duration: None,
            biz_opaque_callback_data: None,
            deeplink_payload: None,
            cta_payload: None,
            errors: None,
        }
    }
}

/// `calls[].session` of a connect (also the `session` of Graph requests).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Session {
    /// `offer` or `answer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_type: Option<SdpType>,
    /// The SDP text (CRLF line endings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp: Option<String>,
}

impl Session {
    /// A session with both fields set.
    pub fn new(sdp_type: SdpType, sdp: impl Into<String>) -> Self {
        Session {
            sdp_type: Some(sdp_type),
            sdp: Some(sdp.into()),
        }
    }
}

/// `value.statuses[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The call id.
    pub id: WaCallId,
    /// `call` for call statuses.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// RINGING / ACCEPTED / REJECTED.
    pub status: CallStatusKind,
    /// When Meta produced it.
    #[serde(
        default,
        deserialize_with = "lenient_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub timestamp: Option<UnixTime>,
    /// The callee's number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_id: Option<String>,
    /// The callee's BSUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_user_id: Option<String>,
    /// Echo of what we passed in connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub biz_opaque_callback_data: Option<String>,
    /// Errors about this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<Lenient<WebhookErrorObject>>>,
}

/// An error object inside a webhook (reference §3.5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookErrorObject {
    /// Meta's error code (e.g. 138021).
    pub code: i64,
    /// The title (calling webhooks use `message`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The title (message-status webhooks use `title`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Link to Meta's documentation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// Details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_data: Option<ErrorData>,
}

/// `error_data` of webhook and Graph errors.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ErrorData {
    /// Present in Graph errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messaging_product: Option<String>,
    /// The specifics (SDP validation problems, next allowed time…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

/// Body of `POST /{phone-number-id}/calls` for every action (reference §4.1).
///
/// Every field is optional so the fake Graph API can read a malformed request and say what is
/// missing; [`CallRequest::new`] and the builders produce the exact bodies Meta documents.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CallRequest {
    /// Always `whatsapp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messaging_product: Option<String>,
    /// The call (all actions but connect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<WaCallId>,
    /// The number to call (connect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// What to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<CallAction>,
    /// Our SDP (answer for pre_accept/accept, offer for connect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<Session>,
    /// Echoed back in webhooks (accept, connect; ≤ 512 chars).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub biz_opaque_callback_data: Option<String>,
}

impl CallRequest {
    /// A request for `action` on `call_id` without a session.
    pub fn new(action: CallAction, call_id: &WaCallId) -> Self {
        CallRequest {
            messaging_product: Some(MESSAGING_PRODUCT.to_owned()),
            call_id: Some(call_id.clone()),
            action: Some(action),
            ..Default::default()
        }
    }
}

/// A successful Graph `/calls` response.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CallResponse {
    /// Always `whatsapp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messaging_product: Option<String>,
    /// `true` for pre_accept/accept/reject/terminate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success: Option<bool>,
    /// The new call for connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls: Option<Vec<CallRef>>,
}

/// `calls[]` of a connect response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRef {
    /// The new call's id.
    pub id: WaCallId,
}

wire_enum!(
    /// `permission.status` of `GET /{phone-number-id}/call_permissions` (reference §4.6).
    PermissionStatus {
        /// The business may not call this user now.
        NoPermission => "no_permission",
        /// The user granted a permission that expires (`expiration_time`).
        Temporary => "temporary",
        /// The user granted a permission that does not expire.
        Permanent => "permanent",
    }
);

/// The answer of `GET /{phone-number-id}/call_permissions?user_wa_id=…` (reference §4.6):
/// whether the business may call the user, and what it may do next within Meta's limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallPermissions {
    /// The permission itself.
    pub permission: Permission,
    /// What the business may do (`send_call_permission_request`, `start_call`), with Meta's
    /// limits as Meta reports them now (never hard-coded: Meta's own pages disagree).
    #[serde(default)]
    pub actions: Vec<Lenient<PermissionAction>>,
}

/// `permission`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Permission {
    /// `no_permission`, `temporary` or `permanent`.
    pub status: PermissionStatus,
    /// When a temporary permission ends.
    #[serde(
        default,
        deserialize_with = "lenient_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub expiration_time: Option<UnixTime>,
}

/// One of `actions[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PermissionAction {
    /// `send_call_permission_request` or `start_call`.
    pub action_name: String,
    /// Whether Meta would take it now.
    pub can_perform_action: bool,
    /// Meta's limits on it.
    #[serde(default)]
    pub limits: Vec<Lenient<ActionLimit>>,
}

/// One of an action's `limits[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionLimit {
    /// The window, ISO 8601 (`PT24H`, `P7D`).
    pub time_period: String,
    /// How many are allowed in it.
    pub max_allowed: u32,
    /// How many were used in it.
    pub current_usage: u32,
    /// When the window frees up again, when it is full.
    #[serde(
        default,
        deserialize_with = "lenient_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub limit_expiration_time: Option<UnixTime>,
}

impl CallPermissions {
    /// The action named `name`, when Meta listed it (and it parsed).
    pub fn action(&self, name: &str) -> Option<&PermissionAction> {
        self.actions
            .iter()
            .filter_map(Lenient::valid)
            .find(|a| a.action_name == name)
    }
}

/// `{"error": {...}}`, the Graph error envelope (reference §4.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphErrorEnvelope {
    /// The error.
    pub error: GraphErrorObject,
}

/// The Graph error object.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GraphErrorObject {
    /// Human-readable title.
    #[serde(default)]
    pub message: String,
    /// e.g. `OAuthException`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Meta's error code (100, 190, 138006…).
    #[serde(default)]
    pub code: i64,
    /// Sub-code, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_subcode: Option<i64>,
    /// Details (SDP validation problems land in `details`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_data: Option<ErrorData>,
    /// Meta's trace id, asked for by Meta support.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fbtrace_id: Option<String>,
    /// Whether Graph says retrying may succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_transient: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_parse_case_insensitively_and_keep_unknowns() {
        assert_eq!(
            TerminateStatus::from("Completed"),
            TerminateStatus::Completed
        );
        assert_eq!(TerminateStatus::from("failed"), TerminateStatus::Failed);
        assert_eq!(
            TerminateStatus::from("NOT_ANSWERED"),
            TerminateStatus::Other("NOT_ANSWERED".into())
        );
        let s: CallAction = serde_json::from_str("\"pre_accept\"").unwrap();
        assert_eq!(s, CallAction::PreAccept);
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"pre_accept\"");
    }

    #[test]
    fn timestamps_accept_strings_and_integers_and_ignore_garbage() {
        let c: Call = serde_json::from_str(
            r#"{"id":"wacid.1","event":"terminate","timestamp":"17","start_time":18,
                "end_time":"soon","duration":"120"}"#,
        )
        .unwrap();
        assert_eq!(c.timestamp, Some(UnixTime(17)));
        assert_eq!(c.start_time, Some(UnixTime(18)));
        assert_eq!(c.end_time, None);
        assert_eq!(c.duration, Some(120));
        let back = serde_json::to_string(&c).unwrap();
        assert!(back.contains(r#""timestamp":"17""#), "{back}");
    }

    #[test]
    fn a_malformed_call_does_not_hide_its_neighbours() {
        let v: ChangeValue = serde_json::from_str(
            r#"{"calls":[{"event":"connect"},{"id":"wacid.2","event":"terminate"}],
                "statuses":[{"id":"m","status":"delivered","extra":{"x":1}}]}"#,
        )
        .unwrap();
        assert!(v.calls[0].valid().is_none());
        assert_eq!(v.calls[1].valid().unwrap().id.0, "wacid.2");
        assert_eq!(
            v.statuses[0].valid().unwrap().status,
            CallStatusKind::Other("delivered".into())
        );
    }

    #[test]
    fn graph_error_reads_every_documented_field() {
        let e: GraphErrorEnvelope = serde_json::from_str(
            r#"{"error":{"message":"m","type":"OAuthException","code":138006,"error_subcode":7,
                "error_data":{"messaging_product":"whatsapp","details":"d"},"fbtrace_id":"F",
                "is_transient":false}}"#,
        )
        .unwrap();
        assert_eq!(e.error.code, 138006);
        assert_eq!(e.error.kind.as_deref(), Some("OAuthException"));
        assert_eq!(e.error.error_subcode, Some(7));
        assert_eq!(e.error.error_data.unwrap().details.as_deref(), Some("d"));
        assert_eq!(e.error.is_transient, Some(false));
    }
}

/// The field of Meta's account notices (quality warnings and restrictions, §9).
pub const FIELD_ACCOUNT_UPDATE: &str = "account_update";

/// The envelope of a webhook read only for its `account_update` changes: values stay raw JSON
/// until the field says what they are.
#[derive(Debug, Clone, Deserialize)]
pub struct AccountEnvelope {
    /// Must be [`OBJECT_WABA`].
    pub object: String,
    /// One element per WhatsApp Business Account.
    #[serde(default)]
    pub entry: Vec<AccountEntry>,
}

/// `entry[]`, for account notices.
#[derive(Debug, Clone, Deserialize)]
pub struct AccountEntry {
    /// The changes.
    #[serde(default)]
    pub changes: Vec<RawChange>,
}

/// `changes[]` with the value unread.
#[derive(Debug, Clone, Deserialize)]
pub struct RawChange {
    /// The subscribed field.
    #[serde(default)]
    pub field: String,
    /// The value, as received.
    #[serde(default)]
    pub value: serde_json::Value,
}

/// `changes[].value` of an `account_update` change.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct AccountUpdate {
    /// The business number concerned.
    #[serde(default)]
    pub phone_number: Option<String>,
    /// `ACCOUNT_VIOLATION`, `ACCOUNT_RESTRICTION`, … (other account events exist too).
    #[serde(default)]
    pub event: Option<String>,
    /// A warning's detail.
    #[serde(default)]
    pub violation_info: Option<ViolationInfo>,
    /// A restriction's details.
    #[serde(default)]
    pub restriction_info: Vec<RestrictionInfo>,
}

/// `violation_info`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct ViolationInfo {
    /// `LOW_CALLING_QUALITY`, `USER_INITIATED_CALLS_LOW_PICKUP_RATE`, …
    #[serde(default)]
    pub violation_type: Option<String>,
}

/// `restriction_info[]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct RestrictionInfo {
    /// `RESTRICTED_USER_INITIATED_CALLING_CALL_BUTTON_HIDDEN`, …
    #[serde(default)]
    pub restriction_type: Option<String>,
    /// When it lifts (Unix seconds), if Meta says.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub expiration: Option<u64>,
}

/// A phone number for a log line: only its last four digits, the rest masked.
pub fn mask_number(number: &str) -> String {
    let digits: Vec<char> = number.chars().filter(char::is_ascii_digit).collect();
    let keep = digits.len().min(4).min(digits.len().saturating_sub(2));
    let shown: String = digits[digits.len() - keep..].iter().collect();
    format!("{}{shown}", "*".repeat(digits.len() - keep))
}
