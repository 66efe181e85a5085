//! The file layer: the TOML file's shape, every key optional and unknown keys refused, and
//! reading it.
//!
//! *Owns*: [`Config::load`] and the `File*` structs (the file's sections as written, before any
//! check).
//!
//! *Does not touch*: the environment or flags (`settings`), defaults and checks (`validate`).
//! A `[[people]]` entry's password hash never reaches a `Debug` print.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::auth::Role;
use super::{Config, ConfigError, Secret, Settings};

/// The config file's shape; every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub(super) http_addr: Option<String>,
    pub(super) metrics_addr: Option<String>,
    pub(super) drain_secs: Option<f64>,
    #[serde(default)]
    pub(super) media: FileMedia,
    #[serde(default)]
    pub(super) whatsapp: FileWhatsApp,
    #[serde(default)]
    pub(super) sandbox: FileSandbox,
    #[serde(default)]
    pub(super) auth: FileAuth,
    #[serde(default)]
    pub(super) people: Vec<FilePerson>,
    #[serde(default)]
    pub(super) store: FileStore,
    #[serde(default)]
    pub(super) cluster: FileCluster,
    #[serde(default)]
    pub(super) calls: FileCalls,
    #[serde(default)]
    pub(super) queues: Vec<FileQueue>,
    #[serde(default)]
    pub(super) numbers: Vec<FileNumber>,
    #[serde(default)]
    pub(super) http: FileHttp,
    #[serde(default)]
    pub(super) events: FileEvents,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileEvents {
    pub(super) retry_first_secs: Option<f64>,
    pub(super) retry_hours: Option<f64>,
    pub(super) timeout_secs: Option<f64>,
    pub(super) private_targets: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileHttp {
    pub(super) header_timeout: Option<f64>,
    pub(super) request_timeout: Option<f64>,
    pub(super) max_connections: Option<usize>,
    pub(super) max_connections_per_client: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileCalls {
    pub(super) default_queue: Option<String>,
    pub(super) away_reasons: Option<Vec<String>>,
    pub(super) ring_timeout: Option<f64>,
    pub(super) wrap_up: Option<f64>,
    pub(super) grace: Option<f64>,
    pub(super) answer_deadline: Option<f64>,
    pub(super) service_level_target: Option<f64>,
    pub(super) callback_no_answer: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileQueue {
    pub(super) id: String,
    /// `queue` (hold audio, up to `max_wait`) or `decline` (Graph reject at once).
    pub(super) policy: Option<String>,
    pub(super) max_wait: Option<f64>,
    /// Lost callers become call-back tasks.
    #[serde(default)]
    pub(super) callbacks: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileNumber {
    pub(super) phone_number_id: String,
    pub(super) queue: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileCluster {
    pub(super) redis_url: Option<Secret>,
    pub(super) lease_secs: Option<f64>,
    pub(super) node_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileStore {
    pub(super) path: Option<PathBuf>,
    pub(super) database_url: Option<Secret>,
    pub(super) node_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileSandbox {
    pub(super) max_calls: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileMedia {
    pub(super) addr: Option<String>,
    pub(super) ports: Option<String>,
    pub(super) public_ip: Option<String>,
    pub(super) public_ip6: Option<String>,
    pub(super) max_legs: Option<usize>,
    pub(super) max_browser_streams: Option<usize>,
    pub(super) max_pending_events: Option<usize>,
    pub(super) max_dtmf_queue: Option<usize>,
    pub(super) shards: Option<usize>,
    pub(super) hold_audio: Option<PathBuf>,
    pub(super) connect_timeout: Option<f64>,
    pub(super) idle_timeout: Option<f64>,
    pub(super) stats_interval: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileWhatsApp {
    pub(super) graph_url: Option<String>,
    pub(super) graph_version: Option<String>,
    pub(super) phone_number_id: Option<String>,
    pub(super) access_token: Option<Secret>,
    pub(super) app_secret: Option<Secret>,
    pub(super) verify_token: Option<Secret>,
    pub(super) max_calls_per_number: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAuth {
    pub(super) session_hours: Option<f64>,
    pub(super) cookie_secure: Option<bool>,
    pub(super) trust_forwarded_for: Option<bool>,
    pub(super) password_workers: Option<usize>,
    pub(super) password_queue: Option<usize>,
    pub(super) allowed_origins: Option<Vec<String>>,
    pub(super) operator_key: Option<Secret>,
    pub(super) secrets_key: Option<Secret>,
}

/// `[[people]]` exactly as operators (and other tools) write it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FilePerson {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) role: Role,
    pub(super) password_hash: String,
    #[serde(default)]
    pub(super) queues: Vec<String>,
}

impl fmt::Debug for FilePerson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilePerson")
            .field("id", &self.id)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
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
}
