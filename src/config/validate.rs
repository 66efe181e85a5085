//! Laying the layers and checking every value: the file under the environment under the flags,
//! each value turned into a typed one (`Duration`, `SocketAddr`, `NonZeroUsize`…) or refused
//! with an error naming its key.
//!
//! *Owns*: [`Config::from_settings`] and the precedence of the layers; the checks of the
//! listeners, WhatsApp credentials, queues and timers, call records and cluster settings.
//!
//! *Does not touch*: reading the file (`file`); the media engine's and sign-in settings'
//! own checks (`media`, `auth`), which it calls.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use super::auth::{allowed_origins, password_queue, password_workers, people, session_hours};
use super::file::{FileConfig, FileHttp};
use super::media::{detect_local_ip, media_bind, media_limits, media_shards};
use super::{
    defaults, AuthConfig, CallLimits, CallsConfig, ClusterConfig, Config, ConfigError, Credentials,
    EventsConfig, HttpLimits, MediaConfig, Secret, Settings, StoreConfig, WhatsAppConfig,
};

impl Config {
    /// Validates flag/env settings alone (no file); used by tests and the simulator.
    pub fn from_settings(settings: Settings) -> Result<Config, ConfigError> {
        Self::from_layers(settings, FileConfig::default())
    }

    pub(super) fn from_layers(s: Settings, f: FileConfig) -> Result<Config, ConfigError> {
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
                callback_permission_status: s.callback_permission_status,
                permission_template: permission_template(s.permission_template.as_deref())?,
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
                operator_key: operator_key(s.operator_key.or(f.auth.operator_key))?,
                secrets_key: secrets_key(s.secrets_key.or(f.auth.secrets_key))?,
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
            events: EventsConfig {
                retry: crate::events::RetryPolicy {
                    first: seconds(
                        "SWITCHBOARD_EVENTS_RETRY_FIRST",
                        s.events_retry_first.or(f.events.retry_first_secs),
                        defaults::EVENTS_RETRY_FIRST_SECS,
                    )?,
                    retry_for: retry_hours(s.events_retry_hours.or(f.events.retry_hours))?,
                },
                timeout: seconds(
                    "SWITCHBOARD_EVENTS_TIMEOUT",
                    s.events_timeout.or(f.events.timeout_secs),
                    defaults::EVENTS_TIMEOUT_SECS,
                )?,
                private_targets: s
                    .events_private_targets
                    .or(f.events.private_targets)
                    .unwrap_or(!credentials_set),
            },
        })
    }
}

/// `SWITCHBOARD_PERMISSION_TEMPLATE`: `name` or `name:language`.
fn permission_template(
    raw: Option<&str>,
) -> Result<Option<crate::whatsapp::graph::PermissionTemplate>, ConfigError> {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    let (name, language) = raw.split_once(':').unwrap_or((raw, "en_US"));
    let fine = |s: &str| {
        !s.is_empty()
            && s.len() <= 512
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if !fine(name) || !fine(language) {
        return Err(ConfigError::Invalid {
            key: "SWITCHBOARD_PERMISSION_TEMPLATE",
            reason: "a template name, optionally `:language` (letters, digits, _ and -)".into(),
        });
    }
    Ok(Some(crate::whatsapp::graph::PermissionTemplate {
        name: name.to_owned(),
        language: language.to_owned(),
    }))
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

/// Queues (from `[[queues]]`, plus every queue a person names, with the `queue` policy), the
/// default queue, the number → queue map and the timers.
fn calls_config(s: &Settings, f: &FileConfig) -> Result<CallsConfig, ConfigError> {
    use crate::ids::QueueId;
    use crate::routing::{NoAgentPolicy, QueueConfig};
    let mut queues: Vec<QueueConfig> = vec![];
    let mut callback_queues = std::collections::HashSet::new();
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
        if q.callbacks {
            callback_queues.insert(QueueId(id.to_owned()));
        }
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
        callback_queues,
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
        callback_no_answer: seconds(
            "[calls] callback_no_answer",
            f.calls.callback_no_answer,
            defaults::CALLBACK_NO_ANSWER_SECS,
        )?,
        away_reasons: away_reasons(f.calls.away_reasons.clone())?,
    })
}

/// The away reasons: 1 to 20, each 1 to 40 characters; a default list when not given.
/// `SWITCHBOARD_OPERATOR_KEY`: a key, not a password (it is compared, never hashed).
fn operator_key(key: Option<Secret>) -> Result<Option<Secret>, ConfigError> {
    match key.filter(|k| !k.0.is_empty()) {
        Some(k) if k.0.chars().count() < 32 || k.0.chars().any(char::is_whitespace) => {
            Err(ConfigError::Invalid {
                key: "SWITCHBOARD_OPERATOR_KEY",
                reason: "at least 32 characters, no spaces (openssl rand -hex 32 makes one)".into(),
            })
        }
        k => Ok(k),
    }
}

/// `SWITCHBOARD_SECRETS_KEY`: 32 bytes in base64 (the key of XChaCha20-Poly1305).
fn secrets_key(key: Option<Secret>) -> Result<Option<Secret>, ConfigError> {
    use base64::prelude::{Engine as _, BASE64_STANDARD};
    match key.filter(|k| !k.0.trim().is_empty()) {
        Some(k) if BASE64_STANDARD.decode(k.0.trim()).map(|b| b.len()) != Ok(32) => {
            Err(ConfigError::Invalid {
                key: "SWITCHBOARD_SECRETS_KEY",
                reason: "not 32 bytes in base64 (openssl rand -base64 32 makes one)".into(),
            })
        }
        k => Ok(k),
    }
}

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

fn retry_hours(value: Option<f64>) -> Result<Duration, ConfigError> {
    let v = value.unwrap_or(defaults::EVENTS_RETRY_HOURS);
    if !(v.is_finite() && v > 0.0 && v <= 720.0) {
        return Err(ConfigError::Invalid {
            key: "SWITCHBOARD_EVENTS_RETRY_HOURS",
            reason: format!("{v} is not a number of hours between 0 and 720"),
        });
    }
    Ok(Duration::from_secs_f64(v * 3600.0))
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
#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Ports;

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
}
