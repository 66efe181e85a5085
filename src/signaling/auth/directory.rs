//! The directory of people as others see it (no password hash), and the sandbox's demo people.
//!
//! *Owns*: [`PersonInfo`], [`PersonStatus`], [`DemoSignIn`], making the demo people and hashing
//! a password for `[[people]]`, and looking people up in the directory.
//!
//! *Does not touch*: checking passwords (`login`), sessions (`session`). The directory is
//! immutable once the component is built. A demo password never reaches a `Debug` print.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::AuthHandle;
use crate::config::{Person, Role};
use crate::ids::AgentId;
use crate::signaling::password::{self, PasswordError};

/// What others may know of a person: no password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonInfo {
    /// The sign-in name.
    pub id: AgentId,
    /// The name shown to others.
    pub name: String,
    /// What they may do.
    pub role: Role,
    /// The queues they take calls from.
    pub queues: Vec<String>,
}

/// A person and how many sessions they have live: an entry of `GET /api/people`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonStatus {
    /// Who.
    #[serde(flatten)]
    pub person: PersonInfo,
    /// Their live sessions (browser tabs, devices).
    pub sessions: usize,
}

/// A demo person of the sandbox and the password made up for this run. `Debug` redacts it.
#[derive(Clone)]
pub struct DemoSignIn {
    /// The sign-in name.
    pub id: AgentId,
    /// Their role.
    pub role: Role,
    /// The password, valid for this run only.
    pub password: String,
}

impl fmt::Debug for DemoSignIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DemoSignIn")
            .field("id", &self.id)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for DemoSignIn {
    /// `agent1 / Xk3…` `(agent)`: how the sandbox's start-up line shows it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} / {} ({})", self.id, self.password, self.role)
    }
}

/// The sandbox's demo people: agents `agent1` (queues support, sales) and `agent2` (support),
/// and supervisor `super`, each with a random password made up for this run. Only for the
/// sandbox; the caller prints the passwords.
pub async fn demo_people() -> (Vec<Person>, Vec<DemoSignIn>) {
    tokio::task::spawn_blocking(|| {
        use rand::Rng;
        let demo = [
            (
                "agent1",
                "Agent One",
                Role::Agent,
                &["support", "sales"][..],
            ),
            ("agent2", "Agent Two", Role::Agent, &["support"][..]),
            (
                "super",
                "Supervisor",
                Role::Supervisor,
                &["support", "sales"][..],
            ),
        ];
        let mut people = Vec::new();
        let mut sign_ins = Vec::new();
        for (id, name, role, queues) in demo {
            let pw: String = rand::rngs::OsRng
                .sample_iter(&rand::distributions::Alphanumeric)
                .take(12)
                .map(char::from)
                .collect();
            people.push(Person {
                id: AgentId(id.into()),
                name: name.into(),
                role,
                // A 12-character password is neither empty nor too long.
                password_hash: password::hash(&pw).expect("a demo password hashes"),
                queues: queues.iter().map(|q| q.to_string()).collect(),
            });
            sign_ins.push(DemoSignIn {
                id: AgentId(id.into()),
                role,
                password: pw,
            });
        }
        (people, sign_ins)
    })
    .await
    // The closure above does not panic (hashing fixed-size passwords).
    .expect("making the demo people does not panic")
}

/// Hashes a password for `[[people]]` (`switchboard hash-password`). CPU-heavy: not on the
/// async runtime.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    password::hash(password).map(|h| h.as_phc().to_owned())
}

impl AuthHandle {
    /// A person of the directory.
    pub fn person(&self, id: &AgentId) -> Option<PersonInfo> {
        self.directory().get(id).map(|e| e.info.clone())
    }

    /// Everyone in the directory, by id.
    pub fn people(&self) -> Vec<PersonInfo> {
        let mut all: Vec<_> = self.directory().values().map(|e| e.info.clone()).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }
}
