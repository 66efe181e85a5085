//! The flag and environment layer: every setting as `clap` reads it from the command line or a
//! `SWITCHBOARD_*` variable, each optional, none checked yet.
//!
//! *Owns*: [`Settings`], the names of the flags and environment variables, and their help text.
//!
//! *Does not touch*: the file (`file`), defaults and checks (`validate`).

use std::path::PathBuf;

use super::Secret;

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
    /// The operator's key for the accounts API (`Authorization: Bearer KEY` on
    /// `/api/v1/accounts`), at least 32 characters (secret). [default: none: the API is off]
    #[arg(long, env = "SWITCHBOARD_OPERATOR_KEY", hide_env_values = true)]
    pub operator_key: Option<Secret>,
    /// The key accounts' access tokens are sealed with in the database: 32 random bytes in
    /// base64 (`openssl rand -base64 32`; secret). [default: none: tokens cannot be stored]
    #[arg(long, env = "SWITCHBOARD_SECRETS_KEY", hide_env_values = true)]
    pub secrets_key: Option<Secret>,
    /// Seconds before a failed call event is tried again the first time; each wait is six
    /// times the one before, up to 8 hours. [default: 5]
    #[arg(long, env = "SWITCHBOARD_EVENTS_RETRY_FIRST")]
    pub events_retry_first: Option<f64>,
    /// Hours a call event is retried before it has failed and its endpoint is disabled.
    /// [default: 24]
    #[arg(long, env = "SWITCHBOARD_EVENTS_RETRY_HOURS")]
    pub events_retry_hours: Option<f64>,
    /// Seconds an event endpoint has to answer a delivery. [default: 10]
    #[arg(long, env = "SWITCHBOARD_EVENTS_TIMEOUT")]
    pub events_timeout: Option<f64>,
    /// Let event endpoints be loopback, private or link-local addresses (backends next to
    /// switchboard): true or false. [default: false; true in the sandbox]
    #[arg(long, env = "SWITCHBOARD_EVENTS_PRIVATE_TARGETS", value_parser = clap::builder::BoolishValueParser::new())]
    pub events_private_targets: Option<bool>,
    /// Set the business number's `callback_permission_status` at start: true (a caller is
    /// asked to allow call-backs after a missed or connected call) or false. [default: left
    /// as it is at Meta]
    #[arg(long, env = "SWITCHBOARD_CALLBACK_PERMISSION_STATUS", value_parser = clap::builder::BoolishValueParser::new())]
    pub callback_permission_status: Option<bool>,
    /// The approved template permission requests are sent as, `name` or `name:language`
    /// (language default `en_US`). [default: the interactive request, which Meta delivers
    /// only within 24 hours of the customer's last message]
    #[arg(long, env = "SWITCHBOARD_PERMISSION_TEMPLATE")]
    pub permission_template: Option<String>,
}
