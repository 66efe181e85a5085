//! The session table: which token (by its SHA-256) belongs to whom, until when. Pure: every
//! call takes `now`; the token itself is never stored.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::ids::AgentId;

/// A session token as handed to the browser: 256 random bits, hex. `Debug` prints a redaction.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A fresh token from the operating system's random source.
    pub fn generate() -> Token {
        use rand::RngCore;
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Token(hex::encode(bytes))
    }

    /// The token, to hand to its owner (response body, cookie).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The key it is filed under.
    pub fn key(&self) -> SessionKey {
        SessionKey::of(&self.0)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token([redacted])")
    }
}

/// A session's key: the SHA-256 of its token. A lookup by it reveals nothing about other
/// tokens, so no constant-time compare is needed; holding it does not let anyone sign in.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionKey([u8; 32]);

impl SessionKey {
    /// The key of the token `token` (which may be anything a client sent).
    pub fn of(token: &str) -> SessionKey {
        SessionKey(Sha256::digest(token.as_bytes()).into())
    }

    /// The key in hex, as the nodes share it in Redis (a hash, never the token).
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey([redacted])")
    }
}

/// Bounds of the session table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Live sessions of one person (tabs, devices); a new one past it ends their oldest.
    pub per_person: usize,
    /// Live sessions in all; a sign-in past it is refused.
    pub total: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            per_person: 8,
            total: 10_000,
        }
    }
}

/// Why a session could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{total} sessions are live, the most allowed")]
pub struct Full {
    /// The cap.
    pub total: usize,
}

#[derive(Debug, Clone)]
struct Session {
    person: AgentId,
    expires: Instant,
}

/// The live sessions.
#[derive(Debug)]
pub struct Sessions {
    ttl: Duration,
    limits: SessionLimits,
    by_key: HashMap<SessionKey, Session>,
    /// Each person's sessions, oldest first.
    by_person: HashMap<AgentId, VecDeque<SessionKey>>,
}

impl Sessions {
    /// An empty table whose sessions last `ttl`.
    pub fn new(ttl: Duration, limits: SessionLimits) -> Self {
        Sessions {
            ttl,
            limits,
            by_key: HashMap::new(),
            by_person: HashMap::new(),
        }
    }

    /// Files a new session for `person` under `key`, valid until the returned instant. Past
    /// the per-person cap the person's oldest session ends.
    pub fn create(
        &mut self,
        now: Instant,
        person: &AgentId,
        key: SessionKey,
    ) -> Result<Instant, Full> {
        self.file(now, person, key, self.ttl)
    }

    /// Files a new session for `person` under `key` that lasts `ttl`, at most the lifetime
    /// sessions have here (a host's short-lived session); valid until the returned instant.
    pub fn create_lasting(
        &mut self,
        now: Instant,
        person: &AgentId,
        key: SessionKey,
        ttl: std::time::Duration,
    ) -> Result<Instant, Full> {
        self.file(now, person, key, ttl.min(self.ttl))
    }

    /// Files a session made on another node, with the time it has left there. Filing a key
    /// already held replaces it.
    pub fn adopt(
        &mut self,
        now: Instant,
        person: &AgentId,
        key: SessionKey,
        left: Duration,
    ) -> Result<Instant, Full> {
        self.remove(&key);
        self.file(now, person, key, left.min(self.ttl))
    }

    fn file(
        &mut self,
        now: Instant,
        person: &AgentId,
        key: SessionKey,
        ttl: Duration,
    ) -> Result<Instant, Full> {
        self.prune_person(now, person);
        if self.by_key.len() >= self.limits.total {
            self.prune(now);
        }
        let mine = self.by_person.get(person).map_or(0, VecDeque::len);
        if mine >= self.limits.per_person.max(1) {
            if let Some(oldest) = self.by_person.get_mut(person).and_then(VecDeque::pop_front) {
                self.by_key.remove(&oldest);
            }
        } else if self.by_key.len() >= self.limits.total {
            return Err(Full {
                total: self.limits.total,
            });
        }
        let expires = now + ttl;
        self.by_key.insert(
            key,
            Session {
                person: person.clone(),
                expires,
            },
        );
        self.by_person
            .entry(person.clone())
            .or_default()
            .push_back(key);
        Ok(expires)
    }

    /// Whose session `key` is, and until when; an expired one is removed and is no one's.
    pub fn resolve(&mut self, now: Instant, key: &SessionKey) -> Option<(AgentId, Instant)> {
        let s = self.by_key.get(key)?;
        if now >= s.expires {
            self.remove(key);
            return None;
        }
        Some((s.person.clone(), s.expires))
    }

    /// Ends the session `key`; returns whose it was.
    pub fn remove(&mut self, key: &SessionKey) -> Option<AgentId> {
        let s = self.by_key.remove(key)?;
        if let Some(q) = self.by_person.get_mut(&s.person) {
            q.retain(|k| k != key);
            if q.is_empty() {
                self.by_person.remove(&s.person);
            }
        }
        Some(s.person)
    }

    /// Ends every session of `person`; returns how many there were.
    pub fn remove_person(&mut self, person: &AgentId) -> usize {
        let keys = self.by_person.remove(person).unwrap_or_default();
        for k in &keys {
            self.by_key.remove(k);
        }
        keys.len()
    }

    /// Live sessions of `person` (expired ones not yet removed are not counted).
    pub fn count_of(&self, now: Instant, person: &AgentId) -> usize {
        self.by_person.get(person).map_or(0, |q| {
            q.iter()
                .filter(|k| self.by_key.get(k).is_some_and(|s| now < s.expires))
                .count()
        })
    }

    /// Sessions held, expired ones not yet removed included.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// True when none are held.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Removes every expired session.
    pub fn prune(&mut self, now: Instant) {
        self.by_key.retain(|_, s| now < s.expires);
        let by_key = &self.by_key;
        self.by_person.retain(|_, q| {
            q.retain(|k| by_key.contains_key(k));
            !q.is_empty()
        });
    }

    fn prune_person(&mut self, now: Instant, person: &AgentId) {
        let Some(q) = self.by_person.get_mut(person) else {
            return;
        };
        let by_key = &mut self.by_key;
        q.retain(|k| match by_key.get(k) {
            Some(s) if now < s.expires => true,
            _ => {
                by_key.remove(k);
                false
            }
        });
        if q.is_empty() {
            self.by_person.remove(person);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> AgentId {
        AgentId("alice".into())
    }

    #[test]
    fn tokens_are_256_random_bits_and_never_printed() {
        let a = Token::generate();
        let b = Token::generate();
        assert_eq!(a.expose().len(), 64);
        assert_ne!(a, b);
        assert!(!format!("{a:?}").contains(a.expose()));
        assert_eq!(a.key(), SessionKey::of(a.expose()));
        assert_ne!(a.key(), b.key());
    }

    #[test]
    fn a_session_expires_after_its_lifetime() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(3600);
        let mut s = Sessions::new(ttl, SessionLimits::default());
        let k = Token::generate().key();
        assert_eq!(s.create(t0, &alice(), k), Ok(t0 + ttl));
        assert_eq!(
            s.resolve(t0 + ttl - Duration::from_nanos(1), &k),
            Some((alice(), t0 + ttl))
        );
        assert_eq!(s.resolve(t0 + ttl, &k), None);
        assert!(s.is_empty(), "an expired session is removed when seen");
        assert_eq!(s.resolve(t0, &Token::generate().key()), None);
    }

    #[test]
    fn removing_ends_a_session() {
        let t0 = Instant::now();
        let mut s = Sessions::new(Duration::from_secs(60), SessionLimits::default());
        let (k1, k2) = (Token::generate().key(), Token::generate().key());
        s.create(t0, &alice(), k1).unwrap();
        s.create(t0, &alice(), k2).unwrap();
        assert_eq!(s.remove(&k1), Some(alice()));
        assert_eq!(s.remove(&k1), None);
        assert_eq!(s.resolve(t0, &k1), None);
        assert!(s.resolve(t0, &k2).is_some());
        assert_eq!(s.count_of(t0, &alice()), 1);
        assert_eq!(s.remove_person(&alice()), 1);
        assert!(s.is_empty());
    }

    #[test]
    fn a_persons_oldest_session_ends_past_their_cap() {
        let t0 = Instant::now();
        let limits = SessionLimits {
            per_person: 2,
            total: 100,
        };
        let mut s = Sessions::new(Duration::from_secs(60), limits);
        let keys: Vec<_> = (0..3).map(|_| Token::generate().key()).collect();
        for k in &keys {
            s.create(t0, &alice(), *k).unwrap();
        }
        assert_eq!(s.resolve(t0, &keys[0]), None);
        assert!(s.resolve(t0, &keys[1]).is_some());
        assert!(s.resolve(t0, &keys[2]).is_some());
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn the_table_is_bounded_and_expired_sessions_make_room() {
        let t0 = Instant::now();
        let limits = SessionLimits {
            per_person: 2,
            total: 3,
        };
        let mut s = Sessions::new(Duration::from_secs(60), limits);
        for i in 0..3 {
            s.create(t0, &AgentId(format!("p{i}")), Token::generate().key())
                .unwrap();
        }
        let late = Token::generate().key();
        assert_eq!(
            s.create(t0, &AgentId("p9".into()), late),
            Err(Full { total: 3 })
        );
        // Once the others have expired there is room again.
        let t1 = t0 + Duration::from_secs(60);
        assert!(s.create(t1, &AgentId("p9".into()), late).is_ok());
        assert_eq!(s.len(), 1);
    }
}
