//! Defaults, in one place.
//!
//! *Owns*: the value every setting takes when neither the file, the environment nor a flag gives
//! one (each named after the setting it is the default of).
//!
//! *Does not touch*: reading or checking settings (the checks in `validate`, `media` and `auth`
//! apply these).

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
/// `[calls] callback_no_answer`, seconds: about as long as a WhatsApp phone rings.
pub const CALLBACK_NO_ANSWER_SECS: f64 = 45.0;
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

/// Seconds before a failed call event is tried again the first time.
pub const EVENTS_RETRY_FIRST_SECS: f64 = 5.0;
/// Hours a call event is retried (Standard Webhooks senders retry for about a day or more).
pub const EVENTS_RETRY_HOURS: f64 = 24.0;
/// Seconds an event endpoint has to answer.
pub const EVENTS_TIMEOUT_SECS: f64 = 10.0;
