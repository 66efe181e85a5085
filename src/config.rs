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

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::ids::AgentId;
use crate::media::{Limits, Ports};

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

/// Defaults, in one place.
pub mod defaults {
    /// `SWITCHBOARD_HTTP_ADDR`.
    pub const HTTP_ADDR: &str = "127.0.0.1:8080";
    /// `SWITCHBOARD_DRAIN_SECS`: five minutes, most calls' remaining time.
    pub const DRAIN_SECS: f64 = 300.0;
    /// `SWITCHBOARD_NODE_LEASE`: a dead node's calls are ended within about this long (plus a
    /// third of it), well inside Meta's 20 s no-media rule for most of them.
    pub const NODE_LEASE_SECS: f64 = 10.0;
    /// `SWITCHBOARD_METRICS_ADDR` (9464: the port commonly used for Prometheus exporters).
    pub const METRICS_ADDR: &str = "127.0.0.1:9464";
    /// `SWITCHBOARD_MEDIA_ADDR`.
    pub const MEDIA_ADDR: &str = "0.0.0.0";
    /// The queue every call goes to unless its number is mapped elsewhere.
    pub const QUEUE: &str = "support";
    /// `[calls] away_reasons`.
    pub const AWAY_REASONS: &[&str] = &["Break", "Lunch", "Meeting", "Training", "Admin"];
    /// `[[queues]] max_wait`, seconds.
    pub const QUEUE_MAX_WAIT_SECS: f64 = 120.0;
    /// `SWITCHBOARD_RING_TIMEOUT`, seconds.
    pub const RING_TIMEOUT_SECS: f64 = 15.0;
    /// `SWITCHBOARD_WRAP_UP`, seconds.
    pub const WRAP_UP_SECS: f64 = 10.0;
    /// `SWITCHBOARD_AGENT_GRACE`, seconds.
    pub const AGENT_GRACE_SECS: f64 = 30.0;
    /// `[calls] answer_deadline`, seconds: well inside Meta's ~30–60 s accept window.
    pub const ANSWER_DEADLINE_SECS: f64 = 25.0;
    /// `[calls] service_level_target`, seconds: the usual contact-centre "80/20" target's 20.
    pub const SERVICE_LEVEL_TARGET_SECS: f64 = 20.0;
    /// `SWITCHBOARD_MEDIA_PORTS`.
    pub const MEDIA_PORTS: &str = "50000-50999";
    /// `SWITCHBOARD_GRAPH_URL`.
    pub const GRAPH_URL: &str = "https://graph.facebook.com";
    /// `SWITCHBOARD_GRAPH_VERSION`.
    pub const GRAPH_VERSION: &str = "v23.0";
    /// `SWITCHBOARD_MEDIA_CONNECT_TIMEOUT`, seconds.
    pub const CONNECT_TIMEOUT_SECS: f64 = 10.0;
    /// `SWITCHBOARD_MEDIA_IDLE_TIMEOUT`, seconds.
    pub const IDLE_TIMEOUT_SECS: f64 = 15.0;
    /// `SWITCHBOARD_MEDIA_STATS_INTERVAL`, seconds.
    pub const STATS_INTERVAL_SECS: f64 = 5.0;
    /// `SWITCHBOARD_MAX_CALLS_PER_NUMBER`: Meta's own cap on one business number.
    pub const MAX_CALLS_PER_NUMBER: usize = 1000;
    /// `SWITCHBOARD_SANDBOX_MAX_CALLS`: each simulated call is a media peer on this machine.
    pub const SANDBOX_MAX_CALLS: usize = 4;
    /// `SWITCHBOARD_DB`, relative to the working directory.
    pub const DB_PATH: &str = "switchboard.db";
    /// `SWITCHBOARD_SESSION_HOURS`: a working day and then some.
    pub const SESSION_HOURS: f64 = 12.0;
    /// Seconds for a request's headers, and idle between requests.
    pub const HTTP_HEADER_TIMEOUT_SECS: f64 = 10.0;
    /// Seconds for a whole request, its body included.
    pub const HTTP_REQUEST_TIMEOUT_SECS: f64 = 30.0;
    /// HTTP connections one client address may hold.
    pub const HTTP_MAX_CONNECTIONS_PER_CLIENT: std::num::NonZeroUsize =
        std::num::NonZeroUsize::new(256).expect("not zero");
    /// The most connections a listener may be set to hold.
    pub const HTTP_MAX_CONNECTIONS_CAP: usize = 1_000_000;
    /// `SWITCHBOARD_PASSWORD_QUEUE`: a burst of a floor signing in at once waits, a flood does not.
    pub const PASSWORD_QUEUE: usize = 64;
}

/// Every setting as it may come from flags or the environment (clap fills both).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Settings {
    /// HTTP listen address (webhook, pages, WebSocket). [default: 127.0.0.1:8080]
    #[arg(long, env = "SWITCHBOARD_HTTP_ADDR")]
    pub http_addr: Option<String>,
    /// Prometheus metrics listen address (`/metrics`). [default: 127.0.0.1:9464]
    #[arg(long, env = "SWITCHBOARD_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// Seconds calls in progress may go on after SIGTERM before they are ended. [default: 300]
    #[arg(long, env = "SWITCHBOARD_DRAIN_SECS")]
    pub drain_secs: Option<f64>,
    /// IP address the media engine's UDP sockets bind. [default: 0.0.0.0] `IP:PORT` binds that
    /// one port only (small set-ups: one call per Meta relay address at a time).
    #[arg(long, env = "SWITCHBOARD_MEDIA_ADDR")]
    pub media_addr: Option<String>,
    /// Local UDP ports for media: `FIRST-LAST`, one `PORT`, or `ephemeral:N` (N ports the OS
    /// picks; tests only). Calls from one Meta relay address can be as many as the ports.
    /// [default: 50000-50999]
    #[arg(long, env = "SWITCHBOARD_MEDIA_PORTS")]
    pub media_ports: Option<String>,
    /// Public IPv6 address offered as a second ICE candidate (Meta offers IPv4 and IPv6);
    /// every media port is then bound on IPv6 too. [default: none]
    #[arg(long, env = "SWITCHBOARD_PUBLIC_IP6")]
    pub public_ip6: Option<String>,
    /// Most media legs alive at once (calls plus browser sessions). [default: 20000]
    #[arg(long, env = "SWITCHBOARD_MEDIA_MAX_LEGS")]
    pub media_max_legs: Option<usize>,
    /// Most audio m-lines in a browser's offer (1-16). [default: 4]
    #[arg(long, env = "SWITCHBOARD_MEDIA_MAX_BROWSER_STREAMS")]
    pub media_max_browser_streams: Option<usize>,
    /// Statistics and DTMF events the engine holds for the program before dropping them.
    /// [default: 16384]
    #[arg(long, env = "SWITCHBOARD_MEDIA_MAX_PENDING_EVENTS")]
    pub media_max_pending_events: Option<usize>,
    /// DTMF digits queued for sending on one leg. [default: 64]
    #[arg(long, env = "SWITCHBOARD_MEDIA_MAX_DTMF_QUEUE")]
    pub media_max_dtmf_queue: Option<usize>,
    /// Media engine threads (1-64), each owning its share of the media ports and the legs on
    /// them. [default: one per core, at most one per port]
    #[arg(long, env = "SWITCHBOARD_MEDIA_SHARDS")]
    pub media_shards: Option<usize>,
    /// An Ogg/Opus file (20 ms frames) played to callers on hold and waiting in a queue.
    /// [default: a built-in melody]
    #[arg(long, env = "SWITCHBOARD_HOLD_AUDIO")]
    pub hold_audio: Option<PathBuf>,
    /// Public IP written in ICE candidates. Set it when the media address is 0.0.0.0 and WhatsApp
    /// credentials are set (otherwise the default route's interface is used, with a warning);
    /// the sandbox uses 127.0.0.1.
    #[arg(long, env = "SWITCHBOARD_PUBLIC_IP")]
    pub public_ip: Option<String>,
    /// Seconds a media leg may take to connect before it is failed. [default: 10]
    #[arg(long, env = "SWITCHBOARD_MEDIA_CONNECT_TIMEOUT")]
    pub media_connect_timeout: Option<f64>,
    /// Seconds a connected media leg may receive nothing before it is failed. [default: 15]
    #[arg(long, env = "SWITCHBOARD_MEDIA_IDLE_TIMEOUT")]
    pub media_idle_timeout: Option<f64>,
    /// Seconds between per-leg statistics reports. [default: 5]
    #[arg(long, env = "SWITCHBOARD_MEDIA_STATS_INTERVAL")]
    pub media_stats_interval: Option<f64>,
    /// Graph API base URL. [default: https://graph.facebook.com]
    #[arg(long, env = "SWITCHBOARD_GRAPH_URL")]
    pub graph_url: Option<String>,
    /// Graph API version. [default: v23.0]
    #[arg(long, env = "SWITCHBOARD_GRAPH_VERSION")]
    pub graph_version: Option<String>,
    /// WhatsApp business phone number id.
    #[arg(long, env = "SWITCHBOARD_PHONE_NUMBER_ID")]
    pub phone_number_id: Option<String>,
    /// Graph API access token (secret).
    #[arg(long, env = "SWITCHBOARD_ACCESS_TOKEN", hide_env_values = true)]
    pub access_token: Option<Secret>,
    /// Meta app secret that signs webhooks (secret).
    #[arg(long, env = "SWITCHBOARD_APP_SECRET", hide_env_values = true)]
    pub app_secret: Option<Secret>,
    /// Webhook verification token (secret).
    #[arg(long, env = "SWITCHBOARD_VERIFY_TOKEN", hide_env_values = true)]
    pub verify_token: Option<Secret>,
    /// Calls in progress at once on the business number (1-1000); more are rejected at once.
    /// [default: 1000, Meta's cap]
    #[arg(long, env = "SWITCHBOARD_MAX_CALLS_PER_NUMBER")]
    pub max_calls_per_number: Option<usize>,
    /// Simulated calls in progress at once in the sandbox (1-100); more get 429. [default: 4]
    #[arg(long, env = "SWITCHBOARD_SANDBOX_MAX_CALLS")]
    pub sandbox_max_calls: Option<usize>,
    /// SQLite file of the call records, created if missing. [default: switchboard.db]
    #[arg(long, env = "SWITCHBOARD_DB")]
    pub db: Option<PathBuf>,
    /// PostgreSQL URL of call records shared by several nodes (postgres://user:pass@host/db);
    /// takes the place of SWITCHBOARD_DB. A secret: never logged. [default: none]
    #[arg(long, env = "SWITCHBOARD_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,
    /// Redis shared by several nodes (redis://[:password@]host:6379[/db]): webhook
    /// de-duplication across them, and readiness. A secret: never logged. [default: none]
    #[arg(long, env = "SWITCHBOARD_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<Secret>,
    /// Seconds a node's lease lasts unless renewed; another node ends the calls of a node
    /// silent for longer. [default: 10]
    #[arg(long, env = "SWITCHBOARD_NODE_LEASE")]
    pub node_lease: Option<f64>,
    /// Where the other nodes reach this node's HTTP listener (http://host:port). [default:
    /// the listener's address; the node id as the host when it listens on all addresses]
    #[arg(long, env = "SWITCHBOARD_NODE_URL")]
    pub node_url: Option<String>,
    /// This node's name among several (letters, digits, '.', '-', '_'; at most 64).
    /// [default: the host name]
    #[arg(long, env = "SWITCHBOARD_NODE_ID")]
    pub node_id: Option<String>,
    /// Seconds a call rings at an agent before going to the next (who is set away). [default: 15]
    #[arg(long, env = "SWITCHBOARD_RING_TIMEOUT")]
    pub ring_timeout: Option<f64>,
    /// Seconds of wrap-up after each call. [default: 10]
    #[arg(long, env = "SWITCHBOARD_WRAP_UP")]
    pub wrap_up: Option<f64>,
    /// Seconds an agent whose browser dropped mid-call has to come back. [default: 30]
    #[arg(long, env = "SWITCHBOARD_AGENT_GRACE")]
    pub agent_grace: Option<f64>,
    /// Hours a sign-in stays valid, more than 0 and at most 720; then its token expires.
    /// [default: 12]
    #[arg(long, env = "SWITCHBOARD_SESSION_HOURS")]
    pub session_hours: Option<f64>,
    /// Give the session cookie `Secure` (sent over HTTPS only): true or false.
    /// [default: true; false in the sandbox]
    #[arg(long, env = "SWITCHBOARD_COOKIE_SECURE", value_parser = clap::builder::BoolishValueParser::new())]
    pub cookie_secure: Option<bool>,
    /// Behind a reverse proxy: take the client's address (for the sign-in throttle) from the
    /// last `X-Forwarded-For` entry, which the proxy appends. [default: false]
    #[arg(long, env = "SWITCHBOARD_TRUST_FORWARDED_FOR", value_parser = clap::builder::BoolishValueParser::new())]
    pub trust_forwarded_for: Option<bool>,
    /// Seconds a connection may take to send a request's headers, and stay idle between
    /// requests; then it is closed. [default: 10]
    #[arg(long, env = "SWITCHBOARD_HTTP_HEADER_TIMEOUT")]
    pub http_header_timeout: Option<f64>,
    /// Seconds a request may take, body included; then it is answered 408. [default: 30]
    #[arg(long, env = "SWITCHBOARD_HTTP_REQUEST_TIMEOUT")]
    pub http_request_timeout: Option<f64>,
    /// HTTP connections held at once on the public listener (the metrics listener gets 64).
    /// [default: from the open-file limit, at most 4096]
    #[arg(long, env = "SWITCHBOARD_HTTP_MAX_CONNECTIONS")]
    pub http_max_connections: Option<usize>,
    /// HTTP connections one client address may hold at once (with
    /// SWITCHBOARD_TRUST_FORWARDED_FOR: requests in flight per forwarded address). [default: 256]
    #[arg(long, env = "SWITCHBOARD_HTTP_MAX_CONNECTIONS_PER_CLIENT")]
    pub http_max_connections_per_client: Option<usize>,
    /// Password checks run at once, each on a thread of its own that keeps its argon2 memory
    /// (~19 MiB with the default hash). [default: the core count, at most 4]
    #[arg(long, env = "SWITCHBOARD_PASSWORD_WORKERS")]
    pub password_workers: Option<usize>,
    /// Sign-ins that may wait for a password check; past it a sign-in is answered 503 with
    /// `Retry-After`. [default: 64]
    #[arg(long, env = "SWITCHBOARD_PASSWORD_QUEUE")]
    pub password_queue: Option<usize>,
    /// Origins, besides the page's own, whose pages may open `/ws` and sign out
    /// (comma-separated, e.g. `https://crm.example.com`). [default: none]
    #[arg(long, env = "SWITCHBOARD_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Option<Vec<String>>,
}

/// The config file's shape; every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    http_addr: Option<String>,
    metrics_addr: Option<String>,
    drain_secs: Option<f64>,
    #[serde(default)]
    media: FileMedia,
    #[serde(default)]
    whatsapp: FileWhatsApp,
    #[serde(default)]
    sandbox: FileSandbox,
    #[serde(default)]
    auth: FileAuth,
    #[serde(default)]
    people: Vec<FilePerson>,
    #[serde(default)]
    store: FileStore,
    #[serde(default)]
    cluster: FileCluster,
    #[serde(default)]
    calls: FileCalls,
    #[serde(default)]
    queues: Vec<FileQueue>,
    #[serde(default)]
    numbers: Vec<FileNumber>,
    #[serde(default)]
    http: FileHttp,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHttp {
    header_timeout: Option<f64>,
    request_timeout: Option<f64>,
    max_connections: Option<usize>,
    max_connections_per_client: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCalls {
    default_queue: Option<String>,
    away_reasons: Option<Vec<String>>,
    ring_timeout: Option<f64>,
    wrap_up: Option<f64>,
    grace: Option<f64>,
    answer_deadline: Option<f64>,
    service_level_target: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileQueue {
    id: String,
    /// `queue` (hold audio, up to `max_wait`) or `decline` (Graph reject at once).
    policy: Option<String>,
    max_wait: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileNumber {
    phone_number_id: String,
    queue: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCluster {
    redis_url: Option<Secret>,
    lease_secs: Option<f64>,
    node_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStore {
    path: Option<PathBuf>,
    database_url: Option<Secret>,
    node_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSandbox {
    max_calls: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMedia {
    addr: Option<String>,
    ports: Option<String>,
    public_ip: Option<String>,
    public_ip6: Option<String>,
    max_legs: Option<usize>,
    max_browser_streams: Option<usize>,
    max_pending_events: Option<usize>,
    max_dtmf_queue: Option<usize>,
    shards: Option<usize>,
    hold_audio: Option<PathBuf>,
    connect_timeout: Option<f64>,
    idle_timeout: Option<f64>,
    stats_interval: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWhatsApp {
    graph_url: Option<String>,
    graph_version: Option<String>,
    phone_number_id: Option<String>,
    access_token: Option<Secret>,
    app_secret: Option<Secret>,
    verify_token: Option<Secret>,
    max_calls_per_number: Option<usize>,
}

impl Config {
    /// Loads the file (if any) under the flag/env settings and validates the result.
    pub fn load(config_path: Option<&Path>, settings: Settings) -> Result<Config, ConfigError> {
        let file = match config_path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                toml::from_str::<FileConfig>(&text).map_err(|source| ConfigError::Parse {
                    path: path.to_owned(),
                    source: Box::new(source),
                })?
            }
            None => FileConfig::default(),
        };
        Self::from_layers(settings, file)
    }

    /// Validates flag/env settings alone (no file); used by tests and the simulator.
    pub fn from_settings(settings: Settings) -> Result<Config, ConfigError> {
        Self::from_layers(settings, FileConfig::default())
    }

    fn from_layers(s: Settings, f: FileConfig) -> Result<Config, ConfigError> {
        let calls = calls_config(&s, &f)?;
        let http = http_limits(&s, &f.http)?;
        let http_addr = parse_addr(
            "SWITCHBOARD_HTTP_ADDR",
            s.http_addr.or(f.http_addr).as_deref(),
            defaults::HTTP_ADDR,
        )?;
        let (bind_ip, ports) = media_bind(
            s.media_addr.or(f.media.addr).as_deref(),
            s.media_ports.or(f.media.ports).as_deref(),
        )?;
        let public_ip6 = match s.public_ip6.or(f.media.public_ip6) {
            Some(text) => match text.trim().parse::<IpAddr>() {
                Ok(ip @ IpAddr::V6(v6)) if !v6.is_unspecified() => Some(ip),
                _ => {
                    return Err(ConfigError::Invalid {
                        key: "SWITCHBOARD_PUBLIC_IP6",
                        reason: format!("{text:?} is not an IPv6 address peers can send to"),
                    })
                }
            },
            None => None,
        };
        let limits = media_limits([
            s.media_max_legs.or(f.media.max_legs),
            s.media_max_browser_streams.or(f.media.max_browser_streams),
            s.media_max_pending_events.or(f.media.max_pending_events),
            s.media_max_dtmf_queue.or(f.media.max_dtmf_queue),
        ])?;
        let shards = media_shards(s.media_shards.or(f.media.shards), ports.count())?;
        let public_ip = match s.public_ip.or(f.media.public_ip) {
            Some(text) => {
                Some(
                    text.trim()
                        .parse::<IpAddr>()
                        .map_err(|e| ConfigError::Invalid {
                            key: "SWITCHBOARD_PUBLIC_IP",
                            reason: format!("{text:?} is not an IP address: {e}"),
                        })?,
                )
            }
            None => None,
        };

        let credentials = credentials(
            s.phone_number_id.or(f.whatsapp.phone_number_id),
            s.access_token.or(f.whatsapp.access_token),
            s.app_secret.or(f.whatsapp.app_secret),
            s.verify_token.or(f.whatsapp.verify_token),
        )?;

        let credentials_set = credentials.is_some();
        let mut public_ip_detected = false;
        let public_ip = match public_ip {
            Some(ip) if ip.is_unspecified() => {
                return Err(ConfigError::Invalid {
                    key: "SWITCHBOARD_PUBLIC_IP",
                    reason: "must be an address peers can send to, not 0.0.0.0 or ::".into(),
                })
            }
            Some(ip) => ip,
            None if !bind_ip.is_unspecified() => bind_ip,
            // In the sandbox every peer is on this machine.
            None if credentials.is_none() => IpAddr::from([127, 0, 0, 1]),
            // Live, binding every interface, no address given: advertise the interface of the
            // default route (and say so at start-up), rather than refuse to start.
            None => {
                public_ip_detected = true;
                detect_local_ip().unwrap_or(IpAddr::from([127, 0, 0, 1]))
            }
        };

        let graph_url = s
            .graph_url
            .or(f.whatsapp.graph_url)
            .unwrap_or_else(|| defaults::GRAPH_URL.to_owned());
        if !(graph_url.starts_with("http://") || graph_url.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                key: "SWITCHBOARD_GRAPH_URL",
                reason: format!("{graph_url:?} is not an http(s) URL"),
            });
        }
        let graph_version = s
            .graph_version
            .or(f.whatsapp.graph_version)
            .unwrap_or_else(|| defaults::GRAPH_VERSION.to_owned());
        if !is_graph_version(&graph_version) {
            return Err(ConfigError::Invalid {
                key: "SWITCHBOARD_GRAPH_VERSION",
                reason: format!("{graph_version:?} is not of the form v23.0"),
            });
        }

        Ok(Config {
            http_addr,
            drain_deadline: seconds(
                "SWITCHBOARD_DRAIN_SECS",
                s.drain_secs.or(f.drain_secs),
                defaults::DRAIN_SECS,
            )?,
            metrics_addr: parse_addr(
                "SWITCHBOARD_METRICS_ADDR",
                s.metrics_addr.as_deref().or(f.metrics_addr.as_deref()),
                defaults::METRICS_ADDR,
            )?,
            media: MediaConfig {
                bind_ip,
                ports,
                public_ip,
                public_ip6,
                limits,
                shards,
                hold_audio: s.hold_audio.clone().or(f.media.hold_audio.clone()),
                public_ip_detected,
                connect_timeout: seconds(
                    "SWITCHBOARD_MEDIA_CONNECT_TIMEOUT",
                    s.media_connect_timeout.or(f.media.connect_timeout),
                    defaults::CONNECT_TIMEOUT_SECS,
                )?,
                idle_timeout: seconds(
                    "SWITCHBOARD_MEDIA_IDLE_TIMEOUT",
                    s.media_idle_timeout.or(f.media.idle_timeout),
                    defaults::IDLE_TIMEOUT_SECS,
                )?,
                stats_interval: seconds(
                    "SWITCHBOARD_MEDIA_STATS_INTERVAL",
                    s.media_stats_interval.or(f.media.stats_interval),
                    defaults::STATS_INTERVAL_SECS,
                )?,
            },
            whatsapp: WhatsAppConfig {
                graph_url: graph_url.trim_end_matches('/').to_owned(),
                graph_version,
                credentials,
            },
            limits: CallLimits {
                max_calls_per_number: count(
                    "SWITCHBOARD_MAX_CALLS_PER_NUMBER",
                    s.max_calls_per_number.or(f.whatsapp.max_calls_per_number),
                    defaults::MAX_CALLS_PER_NUMBER,
                    // Meta refuses calls beyond its cap anyway; a higher value is a mistake.
                    defaults::MAX_CALLS_PER_NUMBER,
                )?,
                sandbox_max_calls: count(
                    "SWITCHBOARD_SANDBOX_MAX_CALLS",
                    s.sandbox_max_calls.or(f.sandbox.max_calls),
                    defaults::SANDBOX_MAX_CALLS,
                    100,
                )?,
            },
            auth: AuthConfig {
                people: people(f.people)?,
                session_ttl: session_hours(s.session_hours.or(f.auth.session_hours))?,
                cookie_secure: s
                    .cookie_secure
                    .or(f.auth.cookie_secure)
                    .unwrap_or(credentials_set),
                trust_forwarded_for: s
                    .trust_forwarded_for
                    .or(f.auth.trust_forwarded_for)
                    .unwrap_or(false),
                password_workers: password_workers(s.password_workers.or(f.auth.password_workers))?,
                password_queue: password_queue(s.password_queue.or(f.auth.password_queue))?,
                allowed_origins: allowed_origins(s.allowed_origins.or(f.auth.allowed_origins))?,
            },
            store: StoreConfig {
                path: db_path(s.db.or(f.store.path), credentials_set)?,
                database_url: database_url(s.database_url.or(f.store.database_url))?,
                node_id: node_id(s.node_id.or(f.store.node_id))?,
            },
            cluster: ClusterConfig {
                redis_url: redis_url(s.redis_url.or(f.cluster.redis_url))?,
                lease: seconds(
                    "SWITCHBOARD_NODE_LEASE",
                    s.node_lease.or(f.cluster.lease_secs),
                    defaults::NODE_LEASE_SECS,
                )?,
                node_url: node_url(s.node_url.or(f.cluster.node_url))?,
            },
            calls,
            http,
        })
    }

    /// True when no WhatsApp credentials are set and the simulator stands in for Meta.
    pub fn is_sandbox(&self) -> bool {
        self.whatsapp.credentials.is_none()
    }
}

fn credentials(
    phone_number_id: Option<String>,
    access_token: Option<Secret>,
    app_secret: Option<Secret>,
    verify_token: Option<Secret>,
) -> Result<Option<Credentials>, ConfigError> {
    let phone_number_id = phone_number_id.filter(|s| !s.trim().is_empty());
    let access_token = access_token.filter(|s| !s.0.is_empty());
    let app_secret = app_secret.filter(|s| !s.0.is_empty());
    let verify_token = verify_token.filter(|s| !s.0.is_empty());
    match (phone_number_id, access_token, app_secret, verify_token) {
        (None, None, None, None) => Ok(None),
        (Some(phone_number_id), Some(access_token), Some(app_secret), Some(verify_token)) => {
            if !phone_number_id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ConfigError::Invalid {
                    key: "SWITCHBOARD_PHONE_NUMBER_ID",
                    reason: "a phone number id is all digits".into(),
                });
            }
            Ok(Some(Credentials {
                phone_number_id,
                access_token,
                app_secret,
                verify_token,
            }))
        }
        (p, a, s, v) => {
            let missing: Vec<&str> = [
                (p.is_none(), "SWITCHBOARD_PHONE_NUMBER_ID"),
                (a.is_none(), "SWITCHBOARD_ACCESS_TOKEN"),
                (s.is_none(), "SWITCHBOARD_APP_SECRET"),
                (v.is_none(), "SWITCHBOARD_VERIFY_TOKEN"),
            ]
            .into_iter()
            .filter_map(|(m, name)| m.then_some(name))
            .collect();
            Err(ConfigError::IncompleteCredentials {
                missing: missing.join(", "),
            })
        }
    }
}

/// The local address of the interface that would carry traffic to the Internet. A UDP
/// `connect` only selects a route; nothing is sent.
fn detect_local_ip() -> Option<IpAddr> {
    let sock = std::net::UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    sock.connect((std::net::Ipv4Addr::new(192, 0, 2, 1), 9))
        .ok()?;
    let ip = sock.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

fn parse_addr(
    key: &'static str,
    value: Option<&str>,
    default: &str,
) -> Result<SocketAddr, ConfigError> {
    let text = value.unwrap_or(default).trim();
    text.parse().map_err(|e| ConfigError::Invalid {
        key,
        reason: format!("{text:?} is not an address like 127.0.0.1:8080: {e}"),
    })
}

/// `SWITCHBOARD_MEDIA_ADDR` (an IP, or the older `IP:PORT` for a single port) and
/// `SWITCHBOARD_MEDIA_PORTS` into the bind address and the pool.
fn media_bind(addr: Option<&str>, ports: Option<&str>) -> Result<(IpAddr, Ports), ConfigError> {
    let addr_text = addr.unwrap_or(defaults::MEDIA_ADDR).trim();
    let (ip, single) = if let Ok(ip) = addr_text.parse::<IpAddr>() {
        (ip, None)
    } else if let Ok(sa) = addr_text.parse::<SocketAddr>() {
        (sa.ip(), Some(sa.port()))
    } else {
        return Err(ConfigError::Invalid {
            key: "SWITCHBOARD_MEDIA_ADDR",
            reason: format!("{addr_text:?} is not an IP address (or IP:PORT)"),
        });
    };
    let ports = match (single, ports) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::Invalid {
                key: "SWITCHBOARD_MEDIA_PORTS",
                reason: "SWITCHBOARD_MEDIA_ADDR names a port too; give the ports in one place"
                    .into(),
            })
        }
        (Some(0), None) => Ports::Ephemeral(1),
        (Some(p), None) => Ports::Range { first: p, last: p },
        (None, text) => parse_ports(text.unwrap_or(defaults::MEDIA_PORTS))?,
    };
    Ok((ip, ports))
}

fn parse_ports(text: &str) -> Result<Ports, ConfigError> {
    let text = text.trim();
    let invalid = |reason: String| ConfigError::Invalid {
        key: "SWITCHBOARD_MEDIA_PORTS",
        reason,
    };
    if let Some(n) = text.strip_prefix("ephemeral:") {
        return match n.trim().parse::<u16>() {
            Ok(n) if (1..=4096).contains(&n) => Ok(Ports::Ephemeral(n)),
            _ => Err(invalid(format!(
                "{text:?}: ephemeral:N takes N from 1 to 4096"
            ))),
        };
    }
    let port = |p: &str| -> Result<u16, ConfigError> {
        match p.trim().parse::<u16>() {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(invalid(format!("{p:?} is not a port from 1 to 65535"))),
        }
    };
    let (first, last) = match text.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => {
            let p = port(text)?;
            (p, p)
        }
    };
    if first > last {
        return Err(invalid(format!("{text:?}: the range runs backwards")));
    }
    if usize::from(last - first) >= 16_384 {
        return Err(invalid(format!("{text:?}: at most 16384 ports")));
    }
    Ok(Ports::Range { first, last })
}

/// The engine's limits, each at its default when not given, each refused at 0.
fn media_limits(values: [Option<usize>; 4]) -> Result<Limits, ConfigError> {
    let d = Limits::default();
    let [legs, streams, events, dtmf] = values;
    let pick = |key: &'static str, v: Option<usize>, default: usize, max: usize| {
        let v = v.unwrap_or(default);
        if v == 0 || v > max {
            return Err(ConfigError::Invalid {
                key,
                reason: format!("{v} is not between 1 and {max}"),
            });
        }
        Ok(v)
    };
    Ok(Limits {
        max_legs: pick("SWITCHBOARD_MEDIA_MAX_LEGS", legs, d.max_legs, 1_000_000)?,
        max_browser_streams: pick(
            "SWITCHBOARD_MEDIA_MAX_BROWSER_STREAMS",
            streams,
            d.max_browser_streams,
            16,
        )?,
        max_pending_events: pick(
            "SWITCHBOARD_MEDIA_MAX_PENDING_EVENTS",
            events,
            d.max_pending_events,
            1_000_000,
        )?,
        max_dtmf_queue: pick(
            "SWITCHBOARD_MEDIA_MAX_DTMF_QUEUE",
            dtmf,
            d.max_dtmf_queue,
            4096,
        )?,
    })
}

/// Queues (from `[[queues]]`, plus every queue a person names, with the `queue` policy), the
/// default queue, the number → queue map and the timers.
fn calls_config(s: &Settings, f: &FileConfig) -> Result<CallsConfig, ConfigError> {
    use crate::ids::QueueId;
    use crate::routing::{NoAgentPolicy, QueueConfig};
    let mut queues: Vec<QueueConfig> = vec![];
    for q in &f.queues {
        let id = q.id.trim();
        if id.is_empty() || queues.iter().any(|x| x.id.0 == id) {
            return Err(ConfigError::Invalid {
                key: "[[queues]] id",
                reason: format!("{id:?} is empty or listed twice"),
            });
        }
        let max_wait = seconds(
            "[[queues]] max_wait",
            q.max_wait,
            defaults::QUEUE_MAX_WAIT_SECS,
        )?;
        let policy = match q.policy.as_deref().unwrap_or("queue") {
            "queue" => NoAgentPolicy::Queue { max_wait },
            "decline" => NoAgentPolicy::Decline,
            other => {
                return Err(ConfigError::Invalid {
                    key: "[[queues]] policy",
                    reason: format!("{other:?} is neither \"queue\" nor \"decline\""),
                })
            }
        };
        queues.push(QueueConfig {
            id: QueueId(id.to_owned()),
            policy,
        });
    }
    // A queue a person serves exists even when not listed, with the default policy.
    let named = f.people.iter().flat_map(|p| p.queues.iter());
    for q in named.map(|q| q.trim()).chain([defaults::QUEUE]) {
        if !q.is_empty() && !queues.iter().any(|x| x.id.0 == q) {
            queues.push(QueueConfig {
                id: QueueId(q.to_owned()),
                policy: NoAgentPolicy::Queue {
                    max_wait: Duration::from_secs_f64(defaults::QUEUE_MAX_WAIT_SECS),
                },
            });
        }
    }
    let known = |q: &str, key: &'static str| {
        if queues.iter().any(|x| x.id.0 == q) {
            Ok(QueueId(q.to_owned()))
        } else {
            Err(ConfigError::Invalid {
                key,
                reason: format!("no queue {q:?} (add it under [[queues]])"),
            })
        }
    };
    let default_queue = known(
        f.calls.default_queue.as_deref().unwrap_or(defaults::QUEUE),
        "[calls] default_queue",
    )?;
    let mut numbers = std::collections::HashMap::new();
    for n in &f.numbers {
        numbers.insert(
            n.phone_number_id.trim().to_owned(),
            known(n.queue.trim(), "[[numbers]] queue")?,
        );
    }
    Ok(CallsConfig {
        queues,
        default_queue,
        numbers,
        ring_timeout: seconds(
            "SWITCHBOARD_RING_TIMEOUT",
            s.ring_timeout.or(f.calls.ring_timeout),
            defaults::RING_TIMEOUT_SECS,
        )?,
        wrap_up: seconds_or_zero(
            "SWITCHBOARD_WRAP_UP",
            s.wrap_up.or(f.calls.wrap_up),
            defaults::WRAP_UP_SECS,
        )?,
        grace: seconds(
            "SWITCHBOARD_AGENT_GRACE",
            s.agent_grace.or(f.calls.grace),
            defaults::AGENT_GRACE_SECS,
        )?,
        answer_deadline: seconds(
            "[calls] answer_deadline",
            f.calls.answer_deadline,
            defaults::ANSWER_DEADLINE_SECS,
        )?,
        service_level_target: seconds(
            "[calls] service_level_target",
            f.calls.service_level_target,
            defaults::SERVICE_LEVEL_TARGET_SECS,
        )?,
        away_reasons: away_reasons(f.calls.away_reasons.clone())?,
    })
}

/// The away reasons: 1 to 20, each 1 to 40 characters; a default list when not given.
fn away_reasons(given: Option<Vec<String>>) -> Result<Vec<String>, ConfigError> {
    let Some(list) = given else {
        return Ok(defaults::AWAY_REASONS
            .iter()
            .map(|r| (*r).to_owned())
            .collect());
    };
    let list: Vec<String> = list.iter().map(|r| r.trim().to_owned()).collect();
    if list.is_empty()
        || list.len() > 20
        || list.iter().any(|r| r.is_empty() || r.chars().count() > 40)
    {
        return Err(ConfigError::Invalid {
            key: "[calls] away_reasons",
            reason: "1 to 20 reasons of 1 to 40 characters each".into(),
        });
    }
    Ok(list)
}

fn seconds_or_zero(
    key: &'static str,
    value: Option<f64>,
    default: f64,
) -> Result<Duration, ConfigError> {
    match value {
        Some(0.0) => Ok(Duration::ZERO),
        other => seconds(key, other, default),
    }
}

fn seconds(key: &'static str, value: Option<f64>, default: f64) -> Result<Duration, ConfigError> {
    let v = value.unwrap_or(default);
    if !(v.is_finite() && v > 0.0 && v <= 3600.0) {
        return Err(ConfigError::Invalid {
            key,
            reason: format!("{v} is not a number of seconds between 0 and 3600"),
        });
    }
    Ok(Duration::from_secs_f64(v))
}

/// `SWITCHBOARD_MEDIA_SHARDS`: 1 to 64 and no more than the ports (each shard owns at least
/// one); unset, one per core the process may run on, within the same bounds.
fn media_shards(value: Option<usize>, ports: usize) -> Result<usize, ConfigError> {
    let Some(n) = value else {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        return Ok(cores.clamp(1, MAX_SHARDS).min(ports.max(1)));
    };
    if n == 0 || n > MAX_SHARDS || n > ports {
        return Err(ConfigError::Invalid {
            key: "SWITCHBOARD_MEDIA_SHARDS",
            reason: format!(
                "{n} media threads for {ports} ports: give 1 to {}, at most one per port",
                MAX_SHARDS.min(ports)
            ),
        });
    }
    Ok(n)
}

/// The most media engine threads: a leg's id names its shard in a byte, and past this many
/// cores the node is better split.
const MAX_SHARDS: usize = 64;

fn http_limits(s: &Settings, f: &FileHttp) -> Result<HttpLimits, ConfigError> {
    let connections = |key: &'static str, value: Option<usize>| match value {
        Some(n) => NonZeroUsize::new(n)
            .filter(|n| n.get() <= defaults::HTTP_MAX_CONNECTIONS_CAP)
            .map(Some)
            .ok_or_else(|| ConfigError::Invalid {
                key,
                reason: format!(
                    "{n} is not a number of connections between 1 and {}",
                    defaults::HTTP_MAX_CONNECTIONS_CAP
                ),
            }),
        None => Ok(None),
    };
    Ok(HttpLimits {
        header_timeout: seconds(
            "SWITCHBOARD_HTTP_HEADER_TIMEOUT",
            s.http_header_timeout.or(f.header_timeout),
            defaults::HTTP_HEADER_TIMEOUT_SECS,
        )?,
        request_timeout: seconds(
            "SWITCHBOARD_HTTP_REQUEST_TIMEOUT",
            s.http_request_timeout.or(f.request_timeout),
            defaults::HTTP_REQUEST_TIMEOUT_SECS,
        )?,
        max_connections: connections(
            "SWITCHBOARD_HTTP_MAX_CONNECTIONS",
            s.http_max_connections.or(f.max_connections),
        )?,
        max_connections_per_client: connections(
            "SWITCHBOARD_HTTP_MAX_CONNECTIONS_PER_CLIENT",
            s.http_max_connections_per_client
                .or(f.max_connections_per_client),
        )?
        .unwrap_or(defaults::HTTP_MAX_CONNECTIONS_PER_CLIENT),
    })
}

fn count(
    key: &'static str,
    value: Option<usize>,
    default: usize,
    max: usize,
) -> Result<NonZeroUsize, ConfigError> {
    let v = value.unwrap_or(default);
    NonZeroUsize::new(v)
        .filter(|n| n.get() <= max)
        .ok_or_else(|| ConfigError::Invalid {
            key,
            reason: format!("{v} is not a number of calls between 1 and {max}"),
        })
}

/// `SWITCHBOARD_DATABASE_URL`: a `postgres://` or `postgresql://` URL (or a libpq key-value
/// string with `host=`). Its value is never put in an error: it may hold a password.
fn database_url(value: Option<Secret>) -> Result<Option<Secret>, ConfigError> {
    let Some(url) = value else {
        return Ok(None);
    };
    let text = url.expose().trim();
    let looks_right = text.starts_with("postgres://")
        || text.starts_with("postgresql://")
        || text.split_whitespace().any(|kv| kv.starts_with("host="));
    if !looks_right || text.parse::<::postgres::Config>().is_err() {
        return Err(ConfigError::Invalid {
            key: "SWITCHBOARD_DATABASE_URL",
            reason: "not a PostgreSQL connection URL (postgres://user:password@host:5432/db)"
                .into(),
        });
    }
    Ok(Some(url))
}

/// `SWITCHBOARD_REDIS_URL`: a `redis://` (or `unix://`) URL the client accepts. Its value is
/// never put in an error: it may hold a password.
fn redis_url(value: Option<Secret>) -> Result<Option<Secret>, ConfigError> {
    let Some(url) = value else {
        return Ok(None);
    };
    let text = url.expose().trim();
    let scheme_ok = text.starts_with("redis://") || text.starts_with("unix://");
    if !scheme_ok || redis::Client::open(text).is_err() {
        return Err(ConfigError::Invalid {
            key: "SWITCHBOARD_REDIS_URL",
            reason: "not a Redis URL this build can use (redis://[:password@]host:6379[/db]; \
                     no TLS: reach Redis over a private network)"
                .into(),
        });
    }
    Ok(Some(url))
}

/// `SWITCHBOARD_NODE_ID`, else the host name, else `switchboard`.
fn node_url(value: Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(v) = value else { return Ok(None) };
    let ok = reqwest::Url::parse(&v)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    match ok {
        Some(_) => Ok(Some(v.trim_end_matches('/').to_owned())),
        None => Err(ConfigError::Invalid {
            key: "SWITCHBOARD_NODE_URL",
            reason: format!("{v:?} is not an http:// or https:// URL with a host"),
        }),
    }
}

fn node_id(value: Option<String>) -> Result<String, ConfigError> {
    let valid = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    match value {
        Some(v) if valid(v.trim()) => Ok(v.trim().to_owned()),
        Some(v) => Err(ConfigError::Invalid {
            key: "SWITCHBOARD_NODE_ID",
            reason: format!(
                "{v:?}: use 1 to 64 letters, digits, '.', '-' or '_' (a name unique per node)"
            ),
        }),
        None => Ok(std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| valid(h))
            .unwrap_or_else(|| "switchboard".to_owned())),
    }
}

/// `SWITCHBOARD_DB`: a file path (created at start if missing), not empty, not a directory.
fn db_path(value: Option<PathBuf>, live: bool) -> Result<Option<PathBuf>, ConfigError> {
    // The sandbox's calls are made up: kept in memory unless a file is asked for.
    let path = match value {
        Some(p) if p.as_os_str() == ":memory:" => return Ok(None),
        Some(p) => p,
        None if live => PathBuf::from(defaults::DB_PATH),
        None => return Ok(None),
    };
    if path.as_os_str().is_empty() || path.is_dir() {
        return Err(ConfigError::Invalid {
            key: "SWITCHBOARD_DB",
            reason: format!("{} is not a file path", path.display()),
        });
    }
    Ok(Some(path))
}

fn is_graph_version(v: &str) -> bool {
    let Some(rest) = v.strip_prefix('v') else {
        return false;
    };
    let mut parts = rest.split('.');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(a), Some(b), None)
            if !a.is_empty() && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
    )
}

// ---- People and sign-in -----------------------------------------------------------------------

/// Who may sign in, and how sessions behave (used by `crate::signaling::auth`).
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The people of `[[people]]`. Empty in the sandbox means demo people made up for the run;
    /// empty with live credentials means nobody can sign in (start-up says so).
    pub people: Vec<Person>,
    /// How long a session token is valid after sign-in (`SWITCHBOARD_SESSION_HOURS`).
    pub session_ttl: Duration,
    /// Whether the session cookie carries `Secure` (`SWITCHBOARD_COOKIE_SECURE`).
    pub cookie_secure: bool,
    /// Whether the sign-in throttle takes the client's address from the last
    /// `X-Forwarded-For` entry (`SWITCHBOARD_TRUST_FORWARDED_FOR`).
    pub trust_forwarded_for: bool,
    /// Password checks run at once, one thread each (`SWITCHBOARD_PASSWORD_WORKERS`).
    pub password_workers: NonZeroUsize,
    /// Sign-ins that may wait for a check before one is answered 503
    /// (`SWITCHBOARD_PASSWORD_QUEUE`).
    pub password_queue: NonZeroUsize,
    /// Origins besides the page's own allowed to open `/ws` and sign out, each as
    /// `scheme://host[:port]` in lower case (`SWITCHBOARD_ALLOWED_ORIGINS`).
    pub allowed_origins: Vec<String>,
}

impl AuthConfig {
    /// Sign-in settings with the defaults and these people and session lifetime (tests and
    /// embedders that build no whole [`Config`]).
    pub fn with_people(people: Vec<Person>, session_ttl: Duration) -> AuthConfig {
        AuthConfig {
            people,
            session_ttl,
            cookie_secure: true,
            trust_forwarded_for: false,
            password_workers: default_password_workers(),
            password_queue: NonZeroUsize::new(defaults::PASSWORD_QUEUE)
                .unwrap_or(NonZeroUsize::MIN),
            allowed_origins: Vec::new(),
        }
    }
}

/// What a person may do. A supervisor can do all an agent can (take calls) and more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Takes calls from their queues.
    Agent,
    /// Takes calls, and watches and steers the floor.
    Supervisor,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Agent => "agent",
            Role::Supervisor => "supervisor",
        })
    }
}

/// One `[[people]]` entry, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// The sign-in name: 1-64 of `a-z 0-9 . _ -`, starting with a letter or digit.
    pub id: AgentId,
    /// The name shown to others.
    pub name: String,
    /// What they may do.
    pub role: Role,
    /// Their password, as an argon2id PHC string.
    pub password_hash: PasswordHash,
    /// The queues they take calls from (names; the queues themselves are configured apart).
    pub queues: Vec<String>,
}

/// An argon2id PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) that parses; `Debug` and
/// `Display` print a redaction, as the hash is enough to guess passwords offline.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Checks that `phc` is an argon2id (version 19) PHC string with usable parameters.
    pub fn parse(phc: &str) -> Result<PasswordHash, String> {
        let parsed = argon2::password_hash::PasswordHash::new(phc)
            .map_err(|e| format!("not a PHC string ({e})"))?;
        if parsed.algorithm != argon2::Algorithm::Argon2id.ident() {
            return Err(format!(
                "the algorithm is {}, not argon2id",
                parsed.algorithm.as_str()
            ));
        }
        if parsed.version != Some(argon2::Version::V0x13.into()) {
            return Err("the version is not v=19".into());
        }
        argon2::Params::try_from(&parsed).map_err(|e| format!("bad parameters ({e})"))?;
        if parsed.salt.is_none() || parsed.hash.is_none() {
            return Err("the salt or the hash is missing".into());
        }
        Ok(PasswordHash(phc.to_owned()))
    }

    /// The PHC string, for the password check.
    pub fn as_phc(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash([redacted])")
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAuth {
    session_hours: Option<f64>,
    cookie_secure: Option<bool>,
    trust_forwarded_for: Option<bool>,
    password_workers: Option<usize>,
    password_queue: Option<usize>,
    allowed_origins: Option<Vec<String>>,
}

/// `[[people]]` exactly as operators (and other tools) write it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePerson {
    id: String,
    name: String,
    role: Role,
    password_hash: String,
    #[serde(default)]
    queues: Vec<String>,
}

impl fmt::Debug for FilePerson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilePerson")
            .field("id", &self.id)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// 1-64 of `a-z 0-9 . _ -`, starting with a letter or digit: a person's id or a queue name.
fn is_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

fn people(file: Vec<FilePerson>) -> Result<Vec<Person>, ConfigError> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(file.len());
    for (i, p) in file.into_iter().enumerate() {
        let invalid = |reason: String| ConfigError::Invalid {
            key: "people",
            reason: format!("[[people]] #{} ({:?}): {reason}", i + 1, p.id),
        };
        if !is_name(&p.id) {
            return Err(invalid(
                "id must be 1-64 of a-z 0-9 . _ -, starting with a letter or digit".into(),
            ));
        }
        if !seen.insert(p.id.clone()) {
            return Err(invalid("a second person with this id".into()));
        }
        let name = p.name.trim();
        if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
            return Err(invalid("name must be 1-128 printable characters".into()));
        }
        let password_hash = PasswordHash::parse(&p.password_hash).map_err(|e| {
            invalid(format!(
                "password_hash: {e}; make one with `switchboard hash-password`"
            ))
        })?;
        if p.role == Role::Agent && p.queues.is_empty() {
            return Err(invalid("an agent needs at least one queue".into()));
        }
        let mut queues = std::collections::HashSet::new();
        for q in &p.queues {
            if !is_name(q) || !queues.insert(q) {
                return Err(invalid(format!(
                    "queue {q:?} is repeated or not 1-64 of a-z 0-9 . _ -"
                )));
            }
        }
        out.push(Person {
            id: AgentId(p.id.clone()),
            name: name.to_owned(),
            role: p.role,
            password_hash,
            queues: p.queues.clone(),
        });
    }
    Ok(out)
}

fn session_hours(value: Option<f64>) -> Result<Duration, ConfigError> {
    let h = value.unwrap_or(defaults::SESSION_HOURS);
    if !(h.is_finite() && h > 0.0 && h <= 720.0) {
        return Err(ConfigError::Invalid {
            key: "SWITCHBOARD_SESSION_HOURS",
            reason: format!("{h} is not a number of hours more than 0 and at most 720"),
        });
    }
    Ok(Duration::from_secs_f64(h * 3600.0))
}

// ---- Sign-in capacity and browser origins ----------------------------------------------------

/// The core count, at most 4: argon2 checks are CPU-bound, and each worker keeps its memory.
fn default_password_workers() -> NonZeroUsize {
    std::thread::available_parallelism().map_or(NonZeroUsize::MIN, |n| {
        n.min(NonZeroUsize::MIN.saturating_add(3))
    })
}

fn password_workers(value: Option<usize>) -> Result<NonZeroUsize, ConfigError> {
    let Some(v) = value else {
        return Ok(default_password_workers());
    };
    NonZeroUsize::new(v)
        .filter(|n| n.get() <= 64)
        .ok_or_else(|| ConfigError::Invalid {
            key: "SWITCHBOARD_PASSWORD_WORKERS",
            reason: format!("{v} is not a number of threads between 1 and 64"),
        })
}

fn password_queue(value: Option<usize>) -> Result<NonZeroUsize, ConfigError> {
    let v = value.unwrap_or(defaults::PASSWORD_QUEUE);
    NonZeroUsize::new(v)
        .filter(|n| n.get() <= 65_536)
        .ok_or_else(|| ConfigError::Invalid {
            key: "SWITCHBOARD_PASSWORD_QUEUE",
            reason: format!("{v} is not a number of sign-ins between 1 and 65536"),
        })
}

/// Each origin as browsers send it: `scheme://host[:port]`, no path, lower case.
fn allowed_origins(value: Option<Vec<String>>) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::new();
    for raw in value.unwrap_or_default() {
        let o = raw.trim().trim_end_matches('/').to_ascii_lowercase();
        if o.is_empty() {
            continue;
        }
        let ok = o.split_once("://").is_some_and(|(scheme, rest)| {
            matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.contains('/')
        });
        if !ok {
            return Err(ConfigError::Invalid {
                key: "SWITCHBOARD_ALLOWED_ORIGINS",
                reason: format!(
                    "{raw:?} is not an origin like https://crm.example.com (scheme and host, \
                     no path)"
                ),
            });
        }
        out.push(o);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_sandbox_on_loopback() {
        let c = Config::from_settings(Settings::default()).unwrap();
        assert!(c.is_sandbox());
        assert_eq!(c.http_addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.media.public_ip, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(
            c.media.ports,
            Ports::Range {
                first: 50000,
                last: 50999
            }
        );
        assert_eq!(c.media.public_ip6, None);
        assert_eq!(c.whatsapp.graph_version, "v23.0");
        assert_eq!(c.limits.max_calls_per_number.get(), 1000);
        assert_eq!(c.limits.sandbox_max_calls.get(), 4);
        assert_eq!(c.store.path, None, "the sandbox keeps records in memory");
    }

    #[test]
    fn partial_credentials_name_what_is_missing() {
        let s = Settings {
            phone_number_id: Some("123".into()),
            access_token: Some(Secret::new("tok")),
            ..Default::default()
        };
        let e = Config::from_settings(s).unwrap_err().to_string();
        assert!(e.contains("SWITCHBOARD_APP_SECRET"), "{e}");
        assert!(e.contains("SWITCHBOARD_VERIFY_TOKEN"), "{e}");
        assert!(e.starts_with("WhatsApp credentials are incomplete: SWITCHBOARD_APP_SECRET, SWITCHBOARD_VERIFY_TOKEN not set"), "{e}");
    }

    #[test]
    fn live_credentials_without_a_public_ip_guess_one_and_say_so() {
        let s = Settings {
            phone_number_id: Some("123".into()),
            access_token: Some(Secret::new("tok-XYZZY")),
            app_secret: Some(Secret::new("sec-XYZZY")),
            verify_token: Some(Secret::new("ver-XYZZY")),
            ..Default::default()
        };
        let guessed = Config::from_settings(s.clone()).unwrap();
        assert!(guessed.media.public_ip_detected);
        assert!(!guessed.media.public_ip.is_unspecified());
        let c = Config::from_settings(Settings {
            public_ip: Some("203.0.113.7".into()),
            ..s
        })
        .unwrap();
        assert!(!c.media.public_ip_detected);
        assert_eq!(c.media.public_ip, IpAddr::from([203, 0, 113, 7]));
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("XYZZY"), "{dbg}");
    }

    #[test]
    fn file_layer_sits_under_env_and_flags() {
        let file: FileConfig = toml::from_str(
            "http_addr = \"127.0.0.1:9000\"\n[media]\naddr = \"127.0.0.1:41000\"\nidle_timeout = 3\n",
        )
        .unwrap();
        let c = Config::from_layers(
            Settings {
                http_addr: Some("127.0.0.1:9001".into()),
                ..Default::default()
            },
            file,
        )
        .unwrap();
        assert_eq!(c.http_addr.port(), 9001);
        assert_eq!(
            c.media.ports,
            Ports::Range {
                first: 41000,
                last: 41000
            }
        );
        assert_eq!(c.media.idle_timeout, Duration::from_secs(3));
    }

    #[test]
    fn shards_database_and_node_are_checked_and_the_url_never_echoed() {
        let c = Config::from_settings(Settings::default()).unwrap();
        assert!(c.media.shards >= 1 && c.media.shards <= 64);
        assert_eq!(c.store.database_url.as_ref().map(Secret::expose), None);
        assert!(!c.store.node_id.is_empty());
        let shards = |n: usize, ports: &str| {
            Config::from_settings(Settings {
                media_shards: Some(n),
                media_ports: Some(ports.into()),
                ..Settings::default()
            })
        };
        assert_eq!(shards(4, "50000-50099").unwrap().media.shards, 4);
        for (n, ports) in [(0, "50000-50099"), (65, "50000-50999"), (3, "50000-50001")] {
            let e = shards(n, ports).unwrap_err().to_string();
            assert!(e.contains("SWITCHBOARD_MEDIA_SHARDS"), "{e}");
        }

        let db = |url: &str, node: Option<&str>| {
            Config::from_settings(Settings {
                database_url: Some(Secret::new(url)),
                node_id: node.map(str::to_owned),
                ..Settings::default()
            })
        };
        let c = db(
            "postgres://sb:pw-XYZZY@db.internal:5432/calls",
            Some("node-1"),
        )
        .unwrap();
        assert_eq!(c.store.node_id, "node-1");
        assert!(!format!("{c:?}").contains("XYZZY"));
        let e = db("mysql://sb:pw-XYZZY@db/calls", None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("SWITCHBOARD_DATABASE_URL") && !e.contains("XYZZY"),
            "{e}"
        );
        let e = db("postgres://db/calls", Some("node 1"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("SWITCHBOARD_NODE_ID"), "{e}");
    }

    #[test]
    fn port_pool_forms() {
        let ports = |addr: Option<&str>, ports: Option<&str>| media_bind(addr, ports).unwrap().1;
        assert_eq!(
            ports(None, Some("40000-40009")),
            Ports::Range {
                first: 40000,
                last: 40009
            }
        );
        assert_eq!(
            ports(Some("127.0.0.1:7000"), None),
            Ports::Range {
                first: 7000,
                last: 7000
            }
        );
        assert_eq!(ports(Some("127.0.0.1:0"), None), Ports::Ephemeral(1));
        assert_eq!(
            ports(Some("127.0.0.1"), Some("ephemeral:20")),
            Ports::Ephemeral(20)
        );
        assert_eq!(ports(None, Some("ephemeral:20")).count(), 20);
        assert!(media_bind(None, Some("ephemeral:0")).is_err());
        assert!(media_bind(None, Some("0")).is_err());
        assert!(media_bind(None, Some("1-40000")).is_err());
    }

    #[test]
    fn limits_come_from_the_file_under_env_and_flags() {
        let file = || {
            toml::from_str::<FileConfig>(
                "[whatsapp]\nmax_calls_per_number = 7\n[sandbox]\nmax_calls = 2\n",
            )
            .unwrap()
        };
        let c = Config::from_layers(Settings::default(), file()).unwrap();
        assert_eq!(c.limits.max_calls_per_number.get(), 7);
        assert_eq!(c.limits.sandbox_max_calls.get(), 2);
        let c = Config::from_layers(
            Settings {
                sandbox_max_calls: Some(3),
                ..Default::default()
            },
            file(),
        )
        .unwrap();
        assert_eq!(c.limits.sandbox_max_calls.get(), 3);
        let zero = toml::from_str::<FileConfig>("[sandbox]\nmax_calls = 0\n").unwrap();
        let e = Config::from_layers(Settings::default(), zero).unwrap_err();
        assert!(
            e.to_string().contains("SWITCHBOARD_SANDBOX_MAX_CALLS"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let file = toml::from_str::<FileConfig>("[media]\nbogus = 1\n");
        assert!(file.unwrap_err().to_string().contains("bogus"));
        for (s, key) in [
            (
                Settings {
                    media_addr: Some("nope".into()),
                    ..Default::default()
                },
                "SWITCHBOARD_MEDIA_ADDR",
            ),
            (
                Settings {
                    media_ports: Some("6000-5000".into()),
                    ..Default::default()
                },
                "SWITCHBOARD_MEDIA_PORTS",
            ),
            (
                Settings {
                    media_addr: Some("0.0.0.0:5000".into()),
                    media_ports: Some("6000-6010".into()),
                    ..Default::default()
                },
                "SWITCHBOARD_MEDIA_PORTS",
            ),
            (
                Settings {
                    public_ip6: Some("10.0.0.1".into()),
                    ..Default::default()
                },
                "SWITCHBOARD_PUBLIC_IP6",
            ),
            (
                Settings {
                    media_max_browser_streams: Some(300),
                    ..Default::default()
                },
                "SWITCHBOARD_MEDIA_MAX_BROWSER_STREAMS",
            ),
            (
                Settings {
                    media_max_legs: Some(0),
                    ..Default::default()
                },
                "SWITCHBOARD_MEDIA_MAX_LEGS",
            ),
            (
                Settings {
                    graph_version: Some("23".into()),
                    ..Default::default()
                },
                "SWITCHBOARD_GRAPH_VERSION",
            ),
            (
                Settings {
                    media_idle_timeout: Some(-1.0),
                    ..Default::default()
                },
                "SWITCHBOARD_MEDIA_IDLE_TIMEOUT",
            ),
            (
                Settings {
                    max_calls_per_number: Some(0),
                    ..Default::default()
                },
                "SWITCHBOARD_MAX_CALLS_PER_NUMBER",
            ),
            (
                Settings {
                    max_calls_per_number: Some(1001),
                    ..Default::default()
                },
                "SWITCHBOARD_MAX_CALLS_PER_NUMBER",
            ),
            (
                Settings {
                    sandbox_max_calls: Some(0),
                    ..Default::default()
                },
                "SWITCHBOARD_SANDBOX_MAX_CALLS",
            ),
            (
                Settings {
                    db: Some(std::env::temp_dir()),
                    ..Default::default()
                },
                "SWITCHBOARD_DB",
            ),
        ] {
            let e = Config::from_settings(s).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
    }

    /// A well-formed argon2id PHC string (of no password in particular).
    const PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$8L9yhCRq2iVJ9rUIfD1oQ3vlXKw2mi6x5HkG2y1kQ3I";

    fn people_toml(body: &str) -> Result<Config, String> {
        let file = toml::from_str::<FileConfig>(body).map_err(|e| e.to_string())?;
        Config::from_layers(Settings::default(), file).map_err(|e| e.to_string())
    }

    #[test]
    fn people_parse_in_the_documented_shape() {
        let c = people_toml(&format!(
            "[[people]]\nid = \"alice\"\nname = \"Alice Martin\"\nrole = \"agent\"\n\
             password_hash = \"{PHC}\"\nqueues = [\"support\", \"sales\"]\n\
             [[people]]\nid = \"bob\"\nname = \"Bob\"\nrole = \"supervisor\"\n\
             password_hash = \"{PHC}\"\n"
        ))
        .unwrap();
        let p = &c.auth.people;
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].id, AgentId("alice".into()));
        assert_eq!(p[0].name, "Alice Martin");
        assert_eq!(p[0].role, Role::Agent);
        assert_eq!(p[0].queues, ["support", "sales"]);
        assert_eq!(p[0].password_hash.as_phc(), PHC);
        assert_eq!(p[1].role, Role::Supervisor);
        assert!(p[1].queues.is_empty());
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("c29tZXNhbHRzb21lc2FsdA"), "{dbg}");
        // The sandbox's cookie is not Secure (plain http on loopback); sessions last 12 h.
        assert!(!c.auth.cookie_secure);
        assert_eq!(c.auth.session_ttl, Duration::from_secs(12 * 3600));
    }

    #[test]
    fn bad_people_are_refused_with_the_reason() {
        let person = |id: &str, role: &str, hash: &str, extra: &str| {
            format!(
                "[[people]]\nid = \"{id}\"\nname = \"N\"\nrole = \"{role}\"\n\
                 password_hash = \"{hash}\"\nqueues = [\"support\"]\n{extra}"
            )
        };
        for (toml, want) in [
            (person("Alice", "agent", PHC, ""), "id must be"),
            (person("-a", "agent", PHC, ""), "id must be"),
            (person("a b", "agent", PHC, ""), "id must be"),
            (person("alice", "admin", PHC, ""), "unknown variant"),
            (person("alice", "agent", "hunter2", ""), "password_hash"),
            (
                person(
                    "alice",
                    "agent",
                    "$argon2i$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG",
                    "",
                ),
                "not argon2id",
            ),
            (
                person("alice", "agent", PHC, "email = \"a@b\"\n"),
                "unknown field",
            ),
            (
                person("alice", "agent", PHC, "") + &person("alice", "supervisor", PHC, ""),
                "a second person",
            ),
            (
                format!(
                    "[[people]]\nid = \"a\"\nname = \"N\"\nrole = \"agent\"\n\
                     password_hash = \"{PHC}\"\n"
                ),
                "at least one queue",
            ),
        ] {
            let e = people_toml(&toml).unwrap_err();
            assert!(e.contains(want), "{toml}: {e}");
            assert!(!e.contains("RdescudvJCsgt3ub"), "{e}");
        }
    }

    #[test]
    fn session_settings_and_the_cookie_default_outside_the_sandbox() {
        let live = Settings {
            phone_number_id: Some("123".into()),
            access_token: Some(Secret::new("t")),
            app_secret: Some(Secret::new("s")),
            verify_token: Some(Secret::new("v")),
            public_ip: Some("203.0.113.7".into()),
            ..Default::default()
        };
        let c = Config::from_settings(live.clone()).unwrap();
        assert!(c.auth.cookie_secure);
        assert!(!c.auth.trust_forwarded_for);
        let c = Config::from_settings(Settings {
            cookie_secure: Some(false),
            session_hours: Some(0.5),
            trust_forwarded_for: Some(true),
            ..live
        })
        .unwrap();
        assert!(!c.auth.cookie_secure);
        assert!(c.auth.trust_forwarded_for);
        assert_eq!(c.auth.session_ttl, Duration::from_secs(1800));
        for bad in [0.0, -1.0, 721.0, f64::NAN] {
            let e = Config::from_settings(Settings {
                session_hours: Some(bad),
                ..Default::default()
            })
            .unwrap_err();
            assert!(e.to_string().contains("SWITCHBOARD_SESSION_HOURS"), "{e}");
            // The message says the same as the docs: more than 0, at most 720.
            assert!(e.to_string().contains("more than 0 and at most 720"), "{e}");
        }
    }

    #[test]
    fn sign_in_capacity_and_origins_are_checked() {
        let c = Config::from_settings(Settings::default()).unwrap();
        assert!((1..=4).contains(&c.auth.password_workers.get()));
        assert_eq!(c.auth.password_queue.get(), 64);
        assert!(c.auth.allowed_origins.is_empty());
        let c = Config::from_settings(Settings {
            password_workers: Some(2),
            password_queue: Some(8),
            allowed_origins: Some(vec![
                "https://CRM.example.com/".into(),
                " http://localhost:3000".into(),
            ]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.auth.password_workers.get(), 2);
        assert_eq!(c.auth.password_queue.get(), 8);
        assert_eq!(
            c.auth.allowed_origins,
            ["https://crm.example.com", "http://localhost:3000"]
        );
        for (bad, key) in [
            (
                Settings {
                    password_workers: Some(0),
                    ..Default::default()
                },
                "SWITCHBOARD_PASSWORD_WORKERS",
            ),
            (
                Settings {
                    password_queue: Some(0),
                    ..Default::default()
                },
                "SWITCHBOARD_PASSWORD_QUEUE",
            ),
            (
                Settings {
                    allowed_origins: Some(vec!["null".into()]),
                    ..Default::default()
                },
                "SWITCHBOARD_ALLOWED_ORIGINS",
            ),
            (
                Settings {
                    allowed_origins: Some(vec!["https://a.example/page".into()]),
                    ..Default::default()
                },
                "SWITCHBOARD_ALLOWED_ORIGINS",
            ),
        ] {
            let e = Config::from_settings(bad).unwrap_err();
            assert!(e.to_string().contains(key), "{e}");
        }
    }
}
