//! Accounts: the businesses one switchboard serves. An account is one WhatsApp Business
//! Account: its numbers, its queues, its people, its away reasons and its call settings.
//!
//! *Owns*: what an account is and the rules a valid one follows ([`Account::validate`]), and how
//! today's configuration file becomes the first account ([`Account::from_config`]).
//!
//! *Does not touch*: the database (the store keeps accounts: [`crate::store::AccountStore`]),
//! calls, HTTP.
//!
//! Accounts are stored (SQLite and PostgreSQL); the `default` account is seeded from the
//! configuration file on first start (`app`), so today's deployments keep running unchanged.
//! The running call centre serves every stored account on one floor, each id qualified with
//! its account ([`Roster`]). An account's access token is kept sealed ([`SealKey`]).

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{Config, PasswordHash, Role};
use crate::ids::AgentId;
use crate::routing::NoAgentPolicy;

mod roster;
mod seal;
pub use roster::{account_of, qualify, same_account, CallTimes, Roster};
pub use seal::{SealError, SealKey, SealedToken};

/// The account today's configuration file seeds.
pub const DEFAULT_ACCOUNT: &str = "default";
/// Longest slug, name, id or away reason accepted.
const MAX_TEXT: usize = 64;
/// Longest display name accepted.
const MAX_NAME: usize = 128;

/// An account's short name: in sign-in (`default`, `acme-support`) and in the admin API's
/// paths. 1–40 of `a-z 0-9 -`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountSlug(String);

impl AccountSlug {
    /// The slug as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AccountSlug {
    type Error = AccountError;

    fn try_from(s: String) -> Result<AccountSlug, AccountError> {
        let ok = (1..=40).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-');
        if ok {
            Ok(AccountSlug(s))
        } else {
            Err(AccountError::invalid(
                "slug",
                "1-40 of a-z 0-9 -, starting with a letter or digit",
            ))
        }
    }
}

impl From<AccountSlug> for String {
    fn from(s: AccountSlug) -> String {
        s.0
    }
}

impl fmt::Display for AccountSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One business.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Its short name.
    pub slug: AccountSlug,
    /// Its name, as people know it.
    pub name: String,
    /// Its WhatsApp Business Account id at Meta, when known.
    pub waba_id: Option<String>,
    /// Its Graph API access token, sealed ([`SealKey`]); `None`: none stored (the `default`
    /// account seeded from the configuration uses the configuration's).
    pub access_token: Option<SealedToken>,
    /// Its business numbers.
    pub numbers: Vec<NumberRoute>,
    /// Its queues.
    pub queues: Vec<QueueDef>,
    /// Where calls to a number with no queue of its own go.
    pub default_queue: String,
    /// Who may sign in.
    pub people: Vec<PersonDef>,
    /// The reasons its agents pick from when going away.
    pub away_reasons: Vec<String>,
    /// Its call settings.
    pub settings: CallSettings,
    /// How many times it has been written: 1 when created, one more at each change; 0 for
    /// one never stored. A change is written only over the version it was made from.
    pub version: u64,
    /// The keys its own servers call the admin API with.
    pub api_keys: Vec<ApiKeyDef>,
    /// Its callers' hold audio: an Ogg/Opus file of 20 ms packets; `None`: the deployment's.
    pub hold_audio: Option<Vec<u8>>,
    /// The origins (`https://inbox.example.com`) whose pages may use its people's sessions:
    /// open `/ws` and call the API from the host's own product (issue 24).
    pub allowed_origins: Vec<String>,
    /// Where its call events go: its own backend's URLs (issue 24, [`crate::events`]).
    pub endpoints: Vec<EndpointDef>,
}

/// One of an account's event endpoints: a URL of its backend that switchboard POSTs its call
/// events to, signed with the endpoint's own secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointDef {
    /// Its id (`ep_` and 16 hex digits), unique in the deployment.
    pub id: String,
    /// Where events go: `https://…` (or `http://…`).
    pub url: String,
    /// What it is for, as its maker wrote it.
    pub description: String,
    /// The event types it takes (`call.ended`, …); empty: every type.
    pub types: Vec<String>,
    /// Whether events go to it. An endpoint that kept failing is disabled by switchboard.
    pub enabled: bool,
    /// Why switchboard disabled it, when it did.
    pub disabled_reason: Option<String>,
    /// Its signing secret (`whsec_…`), sealed like an access token.
    pub secret: SealedToken,
    /// When it was made, unix ms.
    pub created_at: i64,
    /// Who made it (as the audit log names them).
    pub created_by: String,
}

/// Most event endpoints an account has.
pub const MAX_ENDPOINTS: usize = 10;
/// The longest endpoint URL taken.
pub const MAX_URL: usize = 2048;

/// Why `url` cannot be an event endpoint, if it cannot: `http` or `https`, a host, no
/// credentials in it, no fragment. With `private` false, a host that is a loopback, private or
/// link-local address (or `localhost`) is refused too: an account's admin must not make
/// switchboard call into the network it runs in.
pub fn endpoint_url_problem(url: &str, private: bool) -> Option<&'static str> {
    let Ok(u) = reqwest::Url::parse(url) else {
        return Some("an absolute http:// or https:// URL");
    };
    if !matches!(u.scheme(), "http" | "https") || url.len() > MAX_URL {
        return Some("an absolute http:// or https:// URL of at most 2048 characters");
    }
    if !u.username().is_empty() || u.password().is_some() || u.fragment().is_some() {
        return Some("no user, password or #fragment in it");
    }
    let Some(host) = u.host() else {
        return Some("a URL with a host");
    };
    if private {
        return None;
    }
    let internal = match host {
        url::Host::Domain(d) => d == "localhost" || d.ends_with(".localhost"),
        url::Host::Ipv4(ip) => !is_public_ip(std::net::IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => !is_public_ip(std::net::IpAddr::V6(ip)),
    };
    internal.then_some(
        "a public address (loopback, private and link-local addresses are refused unless \
         SWITCHBOARD_EVENTS_PRIVATE_TARGETS is set)",
    )
}

/// Whether `ip` is an address of the open internet: not loopback, private, link-local,
/// unspecified, shared (100.64/10), documentation or multicast.
pub fn is_public_ip(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || (a == 100 && (64..128).contains(&b))
                || a == 0)
        }
        std::net::IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_ip(std::net::IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// Most origins an account allows.
pub const MAX_ORIGINS: usize = 20;

/// True when `origin` is written as browsers send it: `http` or `https`, `://`, a host of
/// lower-case letters, digits, `-` and `.` (or an IPv6 literal in brackets), an optional
/// port; nothing after.
pub fn is_origin(origin: &str) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    if !matches!(scheme, "http" | "https") || rest.is_empty() || origin.len() > 200 {
        return false;
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !h.ends_with(':') && !p.contains(']') => (h, Some(p)),
        _ => (rest, None),
    };
    let host_ok = if let Some(v6) = host.strip_prefix('[') {
        v6.strip_suffix(']')
            .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        host.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    host_ok && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0))
}

/// Largest hold audio file an account keeps (a minute of speech at 64 kbit/s).
pub const MAX_HOLD_AUDIO: usize = 512 * 1024;

/// The packets of an account's hold audio file, or why it is refused.
pub fn hold_audio_packets(file: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    if file.len() > MAX_HOLD_AUDIO {
        return Err(format!("at most {MAX_HOLD_AUDIO} bytes"));
    }
    let ogg = crate::media::ogg::read(file).map_err(|e| e.to_string())?;
    if ogg.packets.is_empty() {
        return Err("no audio in it".into());
    }
    Ok(ogg.packets)
}

/// A key an account's own servers call the admin API with (server to server). The key itself
/// (`sbk_<id>_<64 hex digits>`) is shown once, when made; only its SHA-256 is kept (it is 256
/// random bits: no slow hash is needed to make guessing it hopeless).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyDef {
    /// Its public id (12 hex digits, also inside the key).
    pub id: String,
    /// What it is for, as its maker named it.
    pub name: String,
    /// What it may do: `supervisor` or `admin`.
    pub role: Role,
    /// The key's SHA-256, in hex.
    pub hash: String,
    /// When it was made, unix ms.
    pub created_at: i64,
    /// Who made it (as the audit log names them).
    pub created_by: String,
}

/// Most API keys an account has at once.
pub const MAX_API_KEYS: usize = 50;

/// One administrative change of an account, as its audit log keeps it: who, when, what, and
/// the thing changed before and after (secrets never: a password or token shows as changed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Its place in the log (0 until stored).
    #[serde(default)]
    pub id: i64,
    /// When, unix ms.
    pub at: i64,
    /// Who: `operator`, a person's id, or `key:NAME` for an API key.
    pub actor: String,
    /// What: `person.create`, `person.update`, `queue.update`, …
    pub action: String,
    /// Which: the person's, queue's or number's id; empty for the account itself.
    pub target: String,
    /// The thing before (`null` when created).
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    /// The thing after (`null` when removed).
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
}

/// A business number of an account, and the queue its calls go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberRoute {
    /// Meta's id of the number (`phone_number_id`): webhooks name it, and it is unique across
    /// accounts.
    pub phone_number_id: String,
    /// Its queue; `None`: the account's default queue.
    pub queue: Option<String>,
}

/// A queue of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDef {
    /// Its id, unique within the account.
    pub id: String,
    /// What happens when no agent is free.
    pub policy: QueuePolicy,
    /// Its lost callers (hung up while waiting, or called when nobody was staffed) become
    /// call-back tasks.
    pub callbacks: bool,
}

/// What a queue does when no agent is free (as [`NoAgentPolicy`], in a storable shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum QueuePolicy {
    /// Graph `reject` at once.
    Decline,
    /// Hold audio for at most `max_wait_ms`, then `terminate`.
    Queue {
        /// The longest a caller waits, in milliseconds.
        max_wait_ms: u64,
    },
}

impl From<NoAgentPolicy> for QueuePolicy {
    fn from(p: NoAgentPolicy) -> QueuePolicy {
        match p {
            NoAgentPolicy::Decline => QueuePolicy::Decline,
            NoAgentPolicy::Queue { max_wait } => QueuePolicy::Queue {
                max_wait_ms: millis(max_wait),
            },
        }
    }
}

impl From<QueuePolicy> for NoAgentPolicy {
    fn from(p: QueuePolicy) -> NoAgentPolicy {
        match p {
            QueuePolicy::Decline => NoAgentPolicy::Decline,
            QueuePolicy::Queue { max_wait_ms } => NoAgentPolicy::Queue {
                max_wait: Duration::from_millis(max_wait_ms),
            },
        }
    }
}

/// A person of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonDef {
    /// The sign-in name, unique within the account.
    pub id: AgentId,
    /// The name shown to others.
    pub name: String,
    /// What they may do.
    pub role: Role,
    /// Their password, as an argon2id PHC string.
    pub password_hash: PasswordHash,
    /// The queues they take calls from.
    pub queues: Vec<String>,
    /// A disabled person cannot sign in.
    pub disabled: bool,
}

impl From<crate::config::Person> for PersonDef {
    fn from(p: crate::config::Person) -> PersonDef {
        PersonDef {
            id: p.id,
            name: p.name,
            role: p.role,
            password_hash: p.password_hash,
            queues: p.queues,
            disabled: false,
        }
    }
}

/// An account's call settings, in milliseconds (the configuration file takes fractions of a
/// second).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallSettings {
    /// An agent who does not answer in this time is skipped and set away.
    pub ring_timeout_ms: u64,
    /// After a call, the agent's wrap-up time.
    pub wrap_up_ms: u64,
    /// An agent whose browser drops mid-call has this long to come back.
    pub grace_ms: u64,
    /// A call not answered this long after Meta offered it is queued or declined (Meta's
    /// window is about 30–60 s).
    pub answer_deadline_ms: u64,
}

/// Longest of any setting: an hour, as the configuration file allows.
const MAX_MS: u64 = 3_600_000;

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What is wrong with an account: the field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct AccountError {
    /// The field, as the admin API names it (`people[2].queues[0]`).
    pub field: String,
    /// Why it is refused.
    pub reason: String,
}

impl AccountError {
    fn invalid(field: impl Into<String>, reason: impl Into<String>) -> AccountError {
        AccountError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// `text` is 1–`max` characters with no control character.
pub(crate) fn check_text(field: &str, text: &str, max: usize) -> Result<(), AccountError> {
    let n = text.chars().count();
    if n == 0 || n > max || text.chars().any(char::is_control) {
        return Err(AccountError::invalid(
            field,
            format!("1-{max} characters, no control characters"),
        ));
    }
    Ok(())
}

impl CallSettings {
    /// Settings of these durations (to the millisecond).
    pub fn new(
        ring_timeout: Duration,
        wrap_up: Duration,
        grace: Duration,
        answer_deadline: Duration,
    ) -> CallSettings {
        CallSettings {
            ring_timeout_ms: millis(ring_timeout),
            wrap_up_ms: millis(wrap_up),
            grace_ms: millis(grace),
            answer_deadline_ms: millis(answer_deadline),
        }
    }

    fn validate(&self) -> Result<(), AccountError> {
        let within = |field: &str, v: u64, lo: u64| {
            if (lo..=MAX_MS).contains(&v) {
                Ok(())
            } else {
                Err(AccountError::invalid(
                    format!("settings.{field}"),
                    format!("{lo}-{MAX_MS} milliseconds"),
                ))
            }
        };
        within("ring_timeout_ms", self.ring_timeout_ms, 1)?;
        within("wrap_up_ms", self.wrap_up_ms, 0)?;
        within("grace_ms", self.grace_ms, 1)?;
        within("answer_deadline_ms", self.answer_deadline_ms, 1)
    }
}

impl Account {
    /// The account today's configuration describes: its queues, numbers, people, away reasons
    /// and call settings, under the slug [`DEFAULT_ACCOUNT`]. Its access token is not copied:
    /// the configuration keeps it.
    pub fn from_config(config: &Config) -> Account {
        let calls = &config.calls;
        let mut numbers: Vec<NumberRoute> = calls
            .numbers
            .iter()
            .map(|(n, q)| NumberRoute {
                phone_number_id: n.clone(),
                queue: Some(q.0.clone()),
            })
            .collect();
        if let Some(c) = &config.whatsapp.credentials {
            if !calls.numbers.contains_key(&c.phone_number_id) {
                numbers.push(NumberRoute {
                    phone_number_id: c.phone_number_id.clone(),
                    queue: None,
                });
            }
        }
        numbers.sort_by(|a, b| a.phone_number_id.cmp(&b.phone_number_id));
        Account {
            slug: AccountSlug(DEFAULT_ACCOUNT.into()),
            name: "Default".into(),
            waba_id: None,
            access_token: None,
            numbers,
            queues: calls
                .queues
                .iter()
                .map(|q| QueueDef {
                    id: q.id.0.clone(),
                    policy: q.policy.into(),
                    callbacks: calls.callback_queues.contains(&q.id),
                })
                .collect(),
            default_queue: calls.default_queue.0.clone(),
            people: config
                .auth
                .people
                .iter()
                .cloned()
                .map(PersonDef::from)
                .collect(),
            away_reasons: calls.away_reasons.clone(),
            settings: CallSettings::new(
                calls.ring_timeout,
                calls.wrap_up,
                calls.grace,
                calls.answer_deadline,
            ),
            version: 0,
            api_keys: vec![],
            hold_audio: None,
            allowed_origins: vec![],
            endpoints: vec![],
        }
    }

    /// Checks every rule a stored account follows; the first broken one, naming its field.
    /// (Numbers unique across accounts is the store's to check: it sees them all.)
    pub fn validate(&self) -> Result<(), AccountError> {
        check_text("name", &self.name, MAX_NAME)?;
        if let Some(w) = &self.waba_id {
            if w.is_empty() || w.len() > MAX_TEXT || !w.bytes().all(|b| b.is_ascii_digit()) {
                return Err(AccountError::invalid("waba_id", "Meta's numeric id"));
            }
        }
        let mut queues = HashSet::new();
        for (i, q) in self.queues.iter().enumerate() {
            // As the configuration file takes them (people's queues are stricter names there).
            check_text(&format!("queues[{i}].id"), &q.id, MAX_TEXT)?;
            if q.id.contains('@') {
                // It separates an id from its account's slug on the floor ([`Roster`]).
                return Err(AccountError::invalid(
                    format!("queues[{i}].id"),
                    "no @ (the floor writes support@acme for the queue support of acme)",
                ));
            }
            if !queues.insert(q.id.as_str()) {
                return Err(AccountError::invalid(
                    format!("queues[{i}].id"),
                    format!("queue {} is listed twice", q.id),
                ));
            }
            if let QueuePolicy::Queue { max_wait_ms } = q.policy {
                if !(1..=MAX_MS).contains(&max_wait_ms) {
                    return Err(AccountError::invalid(
                        format!("queues[{i}].max_wait_ms"),
                        format!("1-{MAX_MS} milliseconds"),
                    ));
                }
            }
        }
        if !queues.contains(self.default_queue.as_str()) {
            return Err(AccountError::invalid(
                "default_queue",
                format!("no queue {}", self.default_queue),
            ));
        }
        let mut numbers = HashSet::new();
        for (i, n) in self.numbers.iter().enumerate() {
            let id = &n.phone_number_id;
            // Meta's ids are digits; the configuration file has taken any id, and what it took
            // is kept.
            if id.is_empty() || id.len() > MAX_TEXT || !id.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(AccountError::invalid(
                    format!("numbers[{i}].phone_number_id"),
                    "1-64 visible ASCII characters (Meta's ids are digits)",
                ));
            }
            if !numbers.insert(id.as_str()) {
                return Err(AccountError::invalid(
                    format!("numbers[{i}].phone_number_id"),
                    format!("number {id} is listed twice"),
                ));
            }
            if let Some(q) = n.queue.as_deref().filter(|q| !queues.contains(q)) {
                return Err(AccountError::invalid(
                    format!("numbers[{i}].queue"),
                    format!("no queue {q}"),
                ));
            }
        }
        let mut people = HashSet::new();
        for (i, p) in self.people.iter().enumerate() {
            if !crate::config::is_name(&p.id.0) {
                return Err(AccountError::invalid(
                    format!("people[{i}].id"),
                    "1-64 of a-z 0-9 . _ -, starting with a letter or digit",
                ));
            }
            if !people.insert(p.id.0.as_str()) {
                return Err(AccountError::invalid(
                    format!("people[{i}].id"),
                    format!("{} is listed twice", p.id),
                ));
            }
            check_text(&format!("people[{i}].name"), &p.name, MAX_NAME)?;
            for (j, q) in p.queues.iter().enumerate() {
                if !queues.contains(q.as_str()) {
                    return Err(AccountError::invalid(
                        format!("people[{i}].queues[{j}]"),
                        format!("no queue {q}"),
                    ));
                }
            }
        }
        if self.away_reasons.is_empty() || self.away_reasons.len() > 20 {
            return Err(AccountError::invalid("away_reasons", "1 to 20 reasons"));
        }
        for (i, r) in self.away_reasons.iter().enumerate() {
            check_text(&format!("away_reasons[{i}]"), r, 40)?;
        }
        if let Some(file) = &self.hold_audio {
            hold_audio_packets(file).map_err(|why| {
                AccountError::invalid(
                    "hold_audio",
                    format!("an Ogg/Opus file of 20 ms packets: {why}"),
                )
            })?;
        }
        if self.allowed_origins.len() > MAX_ORIGINS {
            return Err(AccountError::invalid(
                "allowed_origins",
                format!("at most {MAX_ORIGINS} origins"),
            ));
        }
        for (i, o) in self.allowed_origins.iter().enumerate() {
            if !is_origin(o) {
                return Err(AccountError::invalid(
                    format!("allowed_origins[{i}]"),
                    "an origin as browsers send it: https://host or https://host:port, lower case, no path",
                ));
            }
        }
        if self.api_keys.len() > MAX_API_KEYS {
            return Err(AccountError::invalid(
                "api_keys",
                format!("at most {MAX_API_KEYS} keys; revoke one first"),
            ));
        }
        let mut keys = HashSet::new();
        for (i, k) in self.api_keys.iter().enumerate() {
            check_text(&format!("api_keys[{i}].name"), &k.name, MAX_TEXT)?;
            let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
            if !hex(&k.id, 12) || !keys.insert(k.id.as_str()) {
                return Err(AccountError::invalid(
                    format!("api_keys[{i}].id"),
                    "12 hex digits, unique",
                ));
            }
            if !hex(&k.hash, 64) {
                return Err(AccountError::invalid(
                    format!("api_keys[{i}].hash"),
                    "a SHA-256 in hex",
                ));
            }
            if k.role == Role::Agent {
                return Err(AccountError::invalid(
                    format!("api_keys[{i}].role"),
                    "supervisor or admin",
                ));
            }
        }
        self.validate_endpoints()?;
        self.settings.validate()
    }

    fn validate_endpoints(&self) -> Result<(), AccountError> {
        if self.endpoints.len() > MAX_ENDPOINTS {
            return Err(AccountError::invalid(
                "endpoints",
                format!("at most {MAX_ENDPOINTS} endpoints; remove one first"),
            ));
        }
        let mut ids = HashSet::new();
        for (i, e) in self.endpoints.iter().enumerate() {
            let id_ok =
                e.id.strip_prefix("ep_")
                    .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()));
            if !id_ok || !ids.insert(e.id.as_str()) {
                return Err(AccountError::invalid(
                    format!("endpoints[{i}].id"),
                    "ep_ and 16 hex digits, unique",
                ));
            }
            // Private addresses were judged when the URL was given (the deployment's setting
            // then); what is stored is only checked for its form.
            if let Some(why) = endpoint_url_problem(&e.url, true) {
                return Err(AccountError::invalid(format!("endpoints[{i}].url"), why));
            }
            if e.description.len() > MAX_NAME {
                return Err(AccountError::invalid(
                    format!("endpoints[{i}].description"),
                    format!("at most {MAX_NAME} bytes"),
                ));
            }
            for (j, t) in e.types.iter().enumerate() {
                if crate::events::EventType::parse(t).is_none() {
                    return Err(AccountError::invalid(
                        format!("endpoints[{i}].types[{j}]"),
                        format!(
                            "one of {}",
                            crate::events::EventType::ALL.map(|t| t.as_str()).join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests;
