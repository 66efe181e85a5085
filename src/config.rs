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
    /// Media engine settings.
    pub media: MediaConfig,
    /// Meta's Graph API and webhook settings, or the sandbox.
    pub whatsapp: WhatsAppConfig,
    /// How many calls may be in progress at once.
    pub limits: Limits,
}

/// Caps on concurrent calls: what is over them is refused at once, never queued.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Calls in progress at once on the business number; a connect beyond it is rejected.
    pub max_calls_per_number: NonZeroUsize,
    /// Simulated calls in progress at once in the sandbox; a request beyond it gets 429.
    pub sandbox_max_calls: NonZeroUsize,
}

/// Settings of the media engine (`crate::media`).
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// The UDP address the engine binds.
    pub bind_addr: SocketAddr,
    /// The address written into our ICE candidates: what peers send to.
    pub public_addr: SocketAddr,
    /// True when `SWITCHBOARD_PUBLIC_IP` was not given and the address was guessed from the
    /// default route's interface (worth a warning: behind NAT it is the wrong one).
    pub public_ip_detected: bool,
    /// A leg that has not connected (ICE and DTLS) within this time is reported failed.
    pub connect_timeout: Duration,
    /// A connected leg that has received nothing (no media, no consent) for this long is failed.
    pub idle_timeout: Duration,
    /// How often each leg reports its statistics.
    pub stats_interval: Duration,
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
    /// `SWITCHBOARD_MEDIA_ADDR`.
    pub const MEDIA_ADDR: &str = "0.0.0.0:50000";
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
}

/// Every setting as it may come from flags or the environment (clap fills both).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Settings {
    /// HTTP listen address (webhook, pages, WebSocket). [default: 127.0.0.1:8080]
    #[arg(long, env = "SWITCHBOARD_HTTP_ADDR")]
    pub http_addr: Option<String>,
    /// UDP address the media engine binds. [default: 0.0.0.0:50000]
    #[arg(long, env = "SWITCHBOARD_MEDIA_ADDR")]
    pub media_addr: Option<String>,
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
}

/// The config file's shape; every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    http_addr: Option<String>,
    #[serde(default)]
    media: FileMedia,
    #[serde(default)]
    whatsapp: FileWhatsApp,
    #[serde(default)]
    sandbox: FileSandbox,
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
    public_ip: Option<String>,
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
        let http_addr = parse_addr(
            "SWITCHBOARD_HTTP_ADDR",
            s.http_addr.or(f.http_addr).as_deref(),
            defaults::HTTP_ADDR,
        )?;
        let bind_addr = parse_addr(
            "SWITCHBOARD_MEDIA_ADDR",
            s.media_addr.or(f.media.addr).as_deref(),
            defaults::MEDIA_ADDR,
        )?;
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

        let mut public_ip_detected = false;
        let public_ip = match public_ip {
            Some(ip) if ip.is_unspecified() => {
                return Err(ConfigError::Invalid {
                    key: "SWITCHBOARD_PUBLIC_IP",
                    reason: "must be an address peers can send to, not 0.0.0.0 or ::".into(),
                })
            }
            Some(ip) => ip,
            None if !bind_addr.ip().is_unspecified() => bind_addr.ip(),
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
            media: MediaConfig {
                bind_addr,
                public_addr: SocketAddr::new(public_ip, bind_addr.port()),
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
            limits: Limits {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_sandbox_on_loopback() {
        let c = Config::from_settings(Settings::default()).unwrap();
        assert!(c.is_sandbox());
        assert_eq!(c.http_addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.media.public_addr, "127.0.0.1:50000".parse().unwrap());
        assert_eq!(c.whatsapp.graph_version, "v23.0");
        assert_eq!(c.limits.max_calls_per_number.get(), 1000);
        assert_eq!(c.limits.sandbox_max_calls.get(), 4);
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
        assert!(!guessed.media.public_addr.ip().is_unspecified());
        let c = Config::from_settings(Settings {
            public_ip: Some("203.0.113.7".into()),
            ..s
        })
        .unwrap();
        assert!(!c.media.public_ip_detected);
        assert_eq!(c.media.public_addr, "203.0.113.7:50000".parse().unwrap());
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
        assert_eq!(c.media.bind_addr.port(), 41000);
        assert_eq!(c.media.idle_timeout, Duration::from_secs(3));
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
        ] {
            let e = Config::from_settings(s).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
    }
}
