//! People and sign-in: the validated `[[people]]` directory, argon2id password hashes, and the
//! session, password-check and browser-origin settings of `crate::signaling::auth`.
//!
//! *Owns*: [`AuthConfig`], [`Person`], [`Role`], [`PasswordHash`], and the rules a person's id,
//! name, queues and hash must follow.
//!
//! *Does not touch*: checking a password (only that a hash parses), sessions themselves. A
//! password hash never reaches an error message or a `Debug` print.

use std::fmt;
use std::num::NonZeroUsize;
use std::time::Duration;

use crate::ids::AgentId;

use super::file::FilePerson;
use super::{defaults, ConfigError};

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
    /// The operator's key for the accounts API (`SWITCHBOARD_OPERATOR_KEY`); `None`: the API
    /// answers 404.
    pub operator_key: Option<super::Secret>,
    /// The key accounts' access tokens are sealed with (`SWITCHBOARD_SECRETS_KEY`): 32 bytes in
    /// base64, checked. `None`: no token can be stored.
    pub secrets_key: Option<super::Secret>,
}

impl AuthConfig {
    /// Sign-in settings with the defaults and these people and session lifetime (tests and
    /// embedders that build no whole [`Config`](super::Config)).
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
            operator_key: None,
            secrets_key: None,
        }
    }
}

/// What a person may do, each role all the one before it may and more (hence `Ord`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Takes calls from their queues.
    Agent,
    /// Takes calls, watches and steers the floor, and manages the account's people and
    /// queues (the admin API and page).
    Supervisor,
    /// All a supervisor may, and the account's settings, numbers, API keys and admins.
    Admin,
}

impl Role {
    /// The role's name, as the configuration, the API and the store write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Supervisor => "supervisor",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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

/// 1-64 of `a-z 0-9 . _ -`, starting with a letter or digit: a person's id or a queue name.
pub(crate) fn is_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

pub(super) fn people(file: Vec<FilePerson>) -> Result<Vec<Person>, ConfigError> {
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

pub(super) fn session_hours(value: Option<f64>) -> Result<Duration, ConfigError> {
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

pub(super) fn password_workers(value: Option<usize>) -> Result<NonZeroUsize, ConfigError> {
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

pub(super) fn password_queue(value: Option<usize>) -> Result<NonZeroUsize, ConfigError> {
    let v = value.unwrap_or(defaults::PASSWORD_QUEUE);
    NonZeroUsize::new(v)
        .filter(|n| n.get() <= 65_536)
        .ok_or_else(|| ConfigError::Invalid {
            key: "SWITCHBOARD_PASSWORD_QUEUE",
            reason: format!("{v} is not a number of sign-ins between 1 and 65536"),
        })
}

/// Each origin as browsers send it: `scheme://host[:port]`, no path, lower case.
pub(super) fn allowed_origins(value: Option<Vec<String>>) -> Result<Vec<String>, ConfigError> {
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

    use crate::config::file::FileConfig;
    use crate::config::{Config, Secret, Settings};

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
            (person("alice", "owner", PHC, ""), "unknown variant"),
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

/// How failed sign-ins of one kind of key (names, addresses) are throttled: on one node
/// (`signaling::throttle`) and shared by the nodes (`cluster::sessions`) alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures allowed before the first block.
    pub free_failures: u32,
    /// The first block; each further failure doubles it.
    pub base_delay: Duration,
    /// The longest block.
    pub max_delay: Duration,
    /// A key with no failure for this long is forgotten (its count starts again).
    pub forget_after: Duration,
    /// Most keys remembered; past it the stalest is forgotten first.
    pub max_entries: usize,
}

impl ThrottlePolicy {
    /// Per sign-in name: 5 free failures, then 1 s, 2 s, 4 s… up to 15 minutes.
    pub const NAMES: ThrottlePolicy = ThrottlePolicy {
        free_failures: 5,
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(15 * 60),
        forget_after: Duration::from_secs(60 * 60),
        max_entries: 65_536,
    };
    /// Per client address, more lenient (an office shares one address): 20 free failures.
    pub const ADDRESSES: ThrottlePolicy = ThrottlePolicy {
        free_failures: 20,
        ..ThrottlePolicy::NAMES
    };
    /// Per name and address together: never blocks by itself, only remembers (for as long as
    /// a name's failures) which addresses a name's block applies to.
    pub const PAIRS: ThrottlePolicy = ThrottlePolicy {
        free_failures: u32::MAX,
        ..ThrottlePolicy::NAMES
    };

    /// The block after the `failures`-th failure, if any.
    pub(crate) fn delay(&self, failures: u32) -> Option<Duration> {
        let over = failures.checked_sub(self.free_failures)?.checked_sub(1)?;
        let factor = 1u32.checked_shl(over.min(31)).unwrap_or(u32::MAX);
        Some(
            self.base_delay
                .checked_mul(factor)
                .unwrap_or(self.max_delay)
                .min(self.max_delay),
        )
    }
}
