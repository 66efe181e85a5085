//! One typed [`Config`] for the whole program.
//!
//! Owns: reading the config file, the environment (`SWITCHBOARD_*`) and the command-line flags,
//! and turning them into validated, typed values. Precedence, lowest first: defaults in code,
//! the TOML file (`--config` / `SWITCHBOARD_CONFIG`), environment variables, flags.
//!
//! Does not touch: anything at run time. This is the only module that reads files or the
//! environment for settings; every other module receives its sub-struct.
//!
//! Secrets (app secret, access token, verify token) are held in [`Secret`], whose `Debug` and
//! `Display` print a redaction, so a logged `Config` never leaks them.
//!
//! The pieces, one submodule each:
//! - [`Settings`] (`settings`): every setting as flags and environment variables give it;
//! - `file`: the TOML file's shape and reading it;
//! - `validate`: laying the file under the settings, and turning each value into a typed one
//!   (`media` and `auth` for the media engine's and the sign-in settings);
//! - [`defaults`]: every default value, in one place.
//!
//! This module holds the validated tree itself ([`Config`] and its sub-structs), [`Secret`]
//! and [`ConfigError`].

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::media::{Limits, Ports};

mod auth;
pub mod defaults;
mod file;
mod media;
mod settings;
mod validate;

pub(crate) use auth::is_name;
pub use auth::{AuthConfig, PasswordHash, Person, Role, ThrottlePolicy};
pub use settings::Settings;

/// Errors found while loading or validating the configuration. Each names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file named by `--config` / `SWITCHBOARD_CONFIG`.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has unknown keys.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the TOML parser said (it names the key and line).
        source: Box<toml::de::Error>,
    },
    /// A value is present but not acceptable.
    #[error("invalid value for {key}: {reason}")]
    Invalid {
        /// The setting, as its environment variable name.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Some, but not all, WhatsApp credentials are set: that is neither live nor sandbox.
    #[error(
        "WhatsApp credentials are incomplete: {missing} not set (set all of \
         SWITCHBOARD_PHONE_NUMBER_ID, SWITCHBOARD_ACCESS_TOKEN, SWITCHBOARD_APP_SECRET and \
         SWITCHBOARD_VERIFY_TOKEN to talk to Meta, or none of them for the sandbox)"
    )]
    IncompleteCredentials {
        /// The names of the missing settings.
        missing: String,
    },
}

/// A secret string: printed as `[redacted]` by `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; call only where it is used (a header, an HMAC key).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the HTTP server (webhook, pages, WebSocket) listens.
    pub http_addr: SocketAddr,
    /// Where Prometheus scrapes `/metrics` (a listener of its own, kept off the public one).
    pub metrics_addr: SocketAddr,
    /// On SIGTERM, how long calls in progress may go on before they are ended at Meta.
    pub drain_deadline: Duration,
    /// Media engine settings.
    pub media: MediaConfig,
    /// Meta's Graph API and webhook settings, or the sandbox.
    pub whatsapp: WhatsAppConfig,
    /// How many calls may be in progress at once.
    pub limits: CallLimits,
    /// Who may sign in, and how sign-in sessions behave.
    pub auth: AuthConfig,
    /// Where call records are kept.
    pub store: StoreConfig,
    /// What several nodes share in real time.
    pub cluster: ClusterConfig,
    /// Queues, business numbers and the call lifecycle's timers.
    pub calls: CallsConfig,
    /// Timeouts and connection caps of the HTTP listeners.
    pub http: HttpLimits,
    /// Call events to the accounts' backends.
    pub events: EventsConfig,
}

/// How call events are delivered (`crate::events`).
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// When a failed delivery is tried again, and for how long.
    pub retry: crate::events::RetryPolicy,
    /// How long an endpoint has to answer.
    pub timeout: Duration,
    /// Endpoints may be loopback, private or link-local addresses.
    pub private_targets: bool,
}

/// What one client may hold of an HTTP listener, and for how long (`crate::http::serve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// From a connection's accept, or the end of its last response, to the end of the next
    /// request's headers: a connection idle or trickling its headers longer is closed. It is
    /// the keep-alive idle timeout too.
    pub header_timeout: Duration,
    /// Longest time a request may take, its body included; then 408 and the connection closes.
    pub request_timeout: Duration,
    /// Connections held at once; `None`: worked out at start from the open-file limit.
    pub max_connections: Option<NonZeroUsize>,
    /// Connections one client address may hold at once (behind a trusted proxy: requests in
    /// flight, by the `X-Forwarded-For` address).
    pub max_connections_per_client: NonZeroUsize,
}

/// Several nodes: the Redis they share (`crate::cluster`).
#[derive(Debug, Clone, Default)]
pub struct ClusterConfig {
    /// `SWITCHBOARD_REDIS_URL`, `[cluster] redis_url`; `None`: a single node.
    pub redis_url: Option<Secret>,
    /// `SWITCHBOARD_NODE_LEASE`, `[cluster] lease_secs`: how long a node's lease lasts unless
    /// renewed (every third of it). A node silent for longer is taken for dead.
    pub lease: Duration,
    /// `SWITCHBOARD_NODE_URL`, `[cluster] node_url`: where the other nodes reach this one's
    /// HTTP listener (events of calls it owns are handed to it there); `None`: worked out from
    /// the listener's address, or the node id as a host name when that is a wildcard.
    pub node_url: Option<String>,
}

/// The call centre's shape: queues, which business number goes to which, and the timers of the
/// call lifecycle (`crate::calls`).
#[derive(Debug, Clone)]
pub struct CallsConfig {
    /// Every queue, with what it does when no agent is free.
    pub queues: Vec<crate::routing::QueueConfig>,
    /// Where calls for numbers not listed in `numbers` go.
    pub default_queue: crate::ids::QueueId,
    /// The queues whose lost callers become call-back tasks (`[[queues]] callbacks = true`).
    pub callback_queues: std::collections::HashSet<crate::ids::QueueId>,
    /// Business phone number id → queue.
    pub numbers: std::collections::HashMap<String, crate::ids::QueueId>,
    /// An agent who does not answer in this time is skipped and set away.
    pub ring_timeout: Duration,
    /// After a call, the agent's wrap-up time.
    pub wrap_up: Duration,
    /// An agent whose browser drops mid-call has this long to come back.
    pub grace: Duration,
    /// A call not answered this long after Meta offered it is queued or declined.
    pub answer_deadline: Duration,
    /// A call-back the customer has not answered in this time is ended ("No answer";
    /// `[calls] callback_no_answer`).
    pub callback_no_answer: Duration,
    /// A call answered within this of its offer counts toward the service level
    /// (`[calls] service_level_target`).
    pub service_level_target: Duration,
    /// The reasons an agent can pick when going away (`[calls] away_reasons`).
    pub away_reasons: Vec<String>,
}

/// Settings of the call records (`crate::store`).
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The SQLite file (`SWITCHBOARD_DB`, `[store] path`), created if missing.
    /// `None`: kept in memory only (`SWITCHBOARD_DB=:memory:`, and the sandbox's default).
    pub path: Option<PathBuf>,
    /// A PostgreSQL database the nodes share (`SWITCHBOARD_DATABASE_URL`,
    /// `[store] database_url`): when set, records go there and `path` is not used.
    pub database_url: Option<Secret>,
    /// This process's name among the nodes (`SWITCHBOARD_NODE_ID`, `[store] node_id`): its
    /// records and live calls carry it. Default: the host name.
    pub node_id: String,
}

/// Caps on concurrent calls: what is over them is refused at once, never queued.
#[derive(Debug, Clone)]
pub struct CallLimits {
    /// Calls in progress at once on the business number; a connect beyond it is rejected.
    pub max_calls_per_number: NonZeroUsize,
    /// Simulated calls in progress at once in the sandbox; a request beyond it gets 429.
    pub sandbox_max_calls: NonZeroUsize,
}

/// Settings of the media engine (`crate::media`).
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// The IP address the engine's UDP sockets bind.
    pub bind_ip: IpAddr,
    /// The pool of local UDP ports: each call's WhatsApp leg gets a port that no other live leg
    /// from the same remote address uses.
    pub ports: Ports,
    /// The address written into our ICE candidates: what peers send to.
    pub public_ip: IpAddr,
    /// An IPv6 address offered as a second candidate (Meta's offers carry one of each family);
    /// every port is then bound on IPv6 too.
    pub public_ip6: Option<IpAddr>,
    /// True when `SWITCHBOARD_PUBLIC_IP` was not given and the address was guessed from the
    /// default route's interface (worth a warning: behind NAT it is the wrong one).
    pub public_ip_detected: bool,
    /// A leg that has not connected (ICE and DTLS) within this time is reported failed.
    pub connect_timeout: Duration,
    /// A connected leg that has received nothing (no media, no consent) for this long is failed.
    pub idle_timeout: Duration,
    /// How often each leg reports its statistics.
    pub stats_interval: Duration,
    /// Bounds on what outside input can make the engine hold.
    pub limits: Limits,
    /// Media engine threads, each with its share of the ports (`SWITCHBOARD_MEDIA_SHARDS`).
    pub shards: usize,
    /// An Ogg/Opus file to play as hold audio (20 ms frames) in place of the built-in melody.
    pub hold_audio: Option<PathBuf>,
}

/// Meta's side: live credentials, or the built-in simulator.
#[derive(Debug, Clone)]
pub struct WhatsAppConfig {
    /// Base URL of the Graph API, without version (`https://graph.facebook.com`).
    pub graph_url: String,
    /// Graph API version path segment, e.g. `v23.0`.
    pub graph_version: String,
    /// Live credentials; `None` means the sandbox: the simulator stands in for Meta.
    pub credentials: Option<Credentials>,
    /// `callback_permission_status` to set on the business number at start, when said.
    pub callback_permission_status: Option<bool>,
    /// The template permission requests are sent as, when set.
    pub permission_template: Option<crate::whatsapp::graph::PermissionTemplate>,
}

/// What is needed to talk to Meta for real.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The business phone number's id, the `{phone-number-id}` of `/calls`.
    pub phone_number_id: String,
    /// The system-user access token sent as a bearer token.
    pub access_token: Secret,
    /// The app secret that signs webhooks (`X-Hub-Signature-256`).
    pub app_secret: Secret,
    /// The token Meta echoes in the webhook verification handshake.
    pub verify_token: Secret,
}

impl Config {
    /// True when no WhatsApp credentials are set and the simulator stands in for Meta.
    pub fn is_sandbox(&self) -> bool {
        self.whatsapp.credentials.is_none()
    }
}
