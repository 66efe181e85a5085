//! Signing in: the throttle first, then the password check on the checker's threads (an unknown
//! id costs a check all the same), then a new session, shared with the other nodes when there
//! are several; failures are counted here and, with several nodes, in the cluster's tallies.
//!
//! *Owns*: [`AuthHandle::sign_in`], [`SignedIn`], and what a failed sign-in logs.
//!
//! *Does not touch*: the HTTP side of `/api/login` (`routes`), the throttle's and the checker's
//! own rules (`signaling::throttle`, `signaling::password`). A password never reaches a log
//! line.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::{debug, info, warn};

use super::{whole_secs, AuthError, AuthHandle, Entry, PersonInfo};
use crate::config::PasswordHash;
use crate::ids::AgentId;
use crate::signaling::throttle::{NewBlocks, Policy, Verdict};
use crate::signaling::tokens::Token;

/// The outcome of a successful sign-in.
#[derive(Debug)]
pub struct SignedIn {
    /// The session token; hand it to its owner only.
    pub token: Token,
    /// Who signed in.
    pub person: PersonInfo,
    /// How long the token is valid.
    pub expires_in: Duration,
}

impl AuthHandle {
    /// Checks `id` and `password` (from `client`) and, if right, opens a session. Throttled
    /// names and addresses are refused unchecked; an unknown id costs a check all the same.
    pub async fn sign_in(
        &self,
        id: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<SignedIn, AuthError> {
        // Ids are lower case; someone typing "Alice" means alice.
        let name: String = id.trim().to_ascii_lowercase();
        let (verdict, blocks) = self.throttle().begin(self.now(), &name, client);
        if let Verdict::Blocked { retry_after } = verdict {
            return Err(AuthError::Throttled { retry_after });
        }
        if let Some(retry_after) = self.blocked_elsewhere(&name, client).await {
            self.throttle().abandoned(&name, client);
            return Err(AuthError::Throttled { retry_after });
        }
        let entry = self.directory().get(&AgentId(name.clone())).cloned();
        let hash = entry
            .as_ref()
            .map_or(&self.inner.dummy, |e| &e.hash)
            .clone();
        let right = match self.check(hash, password.to_owned()).await {
            Ok(right) => right,
            Err(e) => {
                self.throttle().abandoned(&name, client);
                return Err(e);
            }
        };
        let Some(entry) = entry.filter(|_| right) else {
            let blocks = self.throttle().failed(self.now(), &name, blocks);
            self.log_failure(&name, client, blocks);
            self.count_failure_elsewhere(&name, client).await;
            return Err(AuthError::BadCredentials);
        };
        self.throttle().succeeded(&name, client);
        self.forgive_elsewhere(&name, client).await;
        let signed = self.open_session(&entry, self.inner.ttl).await?;
        info!(person = %entry.info.id, role = %entry.info.role, "signed in");
        Ok(signed)
    }

    /// A new session of `entry`'s person lasting `ttl` (at most the sessions' lifetime), on
    /// every node.
    async fn open_session(&self, entry: &Entry, ttl: Duration) -> Result<SignedIn, AuthError> {
        let token = Token::generate();
        let now = self.now();
        let expires = self
            .sessions()
            .create_lasting(now, &entry.info.id, token.key(), ttl)?;
        let ttl = expires.saturating_duration_since(now);
        if let Some(cluster) = self.inner.cluster.get() {
            if let Err(e) = cluster
                .put_session(&token.key().hex(), &entry.info.id.0, ttl)
                .await
            {
                warn!(error = %e, "session not shared with the other nodes; it works on this one");
            }
        }
        self.restored(&entry.info.id);
        Ok(SignedIn {
            token,
            person: entry.info.clone(),
            expires_in: ttl,
        })
    }

    /// A session for `person`, issued by the host's backend (which authenticated as the
    /// account, with an API key): no password. It lasts `ttl`, at most the sessions' lifetime
    /// (`SWITCHBOARD_SESSION_HOURS`). A person who is not in the directory (unknown,
    /// disabled) gets none.
    pub async fn issue(&self, person: &AgentId, ttl: Duration) -> Result<SignedIn, AuthError> {
        let entry = self
            .directory()
            .get(person)
            .cloned()
            .ok_or(AuthError::BadCredentials)?;
        let signed = self.open_session(&entry, ttl).await?;
        info!(person = %entry.info.id, role = %entry.info.role, "session issued by the host");
        Ok(signed)
    }

    /// A fresh session in place of the live one `token` holds, lasting as long as a new one
    /// (`ttl`, at most the sessions' lifetime); the old one ends. Refused (401) when `token`
    /// holds no live session.
    pub async fn refresh(&self, token: &str, ttl: Duration) -> Result<SignedIn, AuthError> {
        let who = self.authenticate_anywhere(token).await?;
        let entry = self
            .directory()
            .get(&who.person_id)
            .cloned()
            .ok_or(AuthError::Unauthenticated)?;
        let signed = self.open_session(&entry, ttl).await?;
        self.supersede(&who.session);
        self.sign_out(&who.session).await;
        info!(person = %entry.info.id, "session refreshed");
        Ok(signed)
    }

    /// The block another node's tally puts on this name or address, if any (Redis down: none,
    /// this node's own throttle still applies).
    async fn blocked_elsewhere(&self, name: &str, client: IpAddr) -> Option<Duration> {
        let cluster = self.inner.cluster.get()?;
        let addr = client.to_string();
        let by_name = cluster.sign_in_name_blocked(name, &addr).await;
        let by_addr = cluster.sign_in_blocked("addr", &addr).await;
        match (by_name, by_addr) {
            (Ok(a), Ok(b)) => a.max(b),
            (Err(e), _) | (_, Err(e)) => {
                debug!(error = %e, "shared sign-in tally unavailable");
                None
            }
        }
    }

    /// Adds a failure to the cluster's tallies of this name, this address, and the two together.
    async fn count_failure_elsewhere(&self, name: &str, client: IpAddr) {
        let Some(cluster) = self.inner.cluster.get() else {
            return;
        };
        let counted = cluster
            .sign_in_failed_as(
                name,
                &client.to_string(),
                &Policy::NAMES,
                &Policy::ADDRESSES,
            )
            .await;
        if let Err(e) = counted {
            debug!(error = %e, "shared sign-in tally unavailable");
        }
    }

    /// Takes what this address failed for this name off the cluster's tally of the name.
    async fn forgive_elsewhere(&self, name: &str, client: IpAddr) {
        let Some(cluster) = self.inner.cluster.get() else {
            return;
        };
        let forgiven = cluster
            .sign_in_succeeded_as(name, &client.to_string(), &Policy::NAMES)
            .await;
        if let Err(e) = forgiven {
            debug!(error = %e, "shared sign-in tally unavailable");
        }
    }

    fn log_failure(&self, name: &str, client: IpAddr, blocks: NewBlocks) {
        // An unknown id is not logged: it may be a password typed in the wrong box.
        let known = self.directory().contains_key(&AgentId(name.to_owned()));
        let person = if known { name } else { "(unknown id)" };
        info!(person, "sign-in failed");
        if let Some(d) = blocks.name {
            warn!(
                person,
                block_secs = whole_secs(d),
                "repeated failed sign-ins: this name is blocked for a while"
            );
        }
        if let Some(d) = blocks.address {
            warn!(
                %client,
                block_secs = whole_secs(d),
                "repeated failed sign-ins: this address is blocked for a while"
            );
        }
    }

    /// Checks a password on the checker's threads; refused at once (503) when its queue is full.
    async fn check(&self, hash: PasswordHash, password: String) -> Result<bool, AuthError> {
        let answer = self.inner.checker.submit(hash, password).map_err(|_| {
            self.inner.busy.fetch_add(1, Ordering::Relaxed);
            AuthError::Busy
        })?;
        answer.await.map_err(|_| AuthError::PasswordCheck)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Person, Role};
    use crate::signaling::auth::fixtures::*;
    use crate::signaling::password;

    #[tokio::test]
    async fn a_refreshed_session_ends_as_superseded_not_signed_out() {
        let (people, _) = crate::signaling::auth::demo_people().await;
        let auth = AuthHandle::new(&config(Duration::from_secs(3600)), people);
        let agent = AgentId("agent1".into());
        let issued = auth.issue(&agent, Duration::from_secs(600)).await.unwrap();
        assert_eq!(issued.expires_in, Duration::from_secs(600));
        let old = auth.authenticate(issued.token.expose()).unwrap().session;
        let fresh = auth
            .refresh(issued.token.expose(), Duration::from_secs(7200))
            .await
            .unwrap();
        // Never longer than a session lives here.
        assert_eq!(fresh.expires_in, Duration::from_secs(3600));
        assert!(!auth.session_alive(&old));
        assert!(auth.authenticate(fresh.token.expose()).is_ok());
        // Its socket learns it was refreshed, once; a logout is not that.
        assert!(auth.take_superseded(&old));
        assert!(!auth.take_superseded(&old));
        let now = auth.authenticate(fresh.token.expose()).unwrap().session;
        auth.sign_out(&now).await;
        assert!(!auth.take_superseded(&now));
        // Nobody of the directory: nothing issued.
        assert!(auth
            .issue(&AgentId("nobody".into()), Duration::from_secs(60))
            .await
            .is_err());
    }

    /// (m, t, p) of a PHC string.
    fn params_of(phc: &str) -> (u32, u32, u32) {
        let parsed = argon2::password_hash::PasswordHash::new(phc).unwrap();
        let p = argon2::Params::try_from(&parsed).unwrap();
        (p.m_cost(), p.t_cost(), p.p_cost())
    }

    #[test]
    fn an_unknown_id_is_checked_against_the_costliest_configured_parameters() {
        // Hashes made by other tools than `switchboard hash-password` (the README accepts any
        // argon2id PHC string): a made-up id must cost what the costliest of them costs.
        let made = |m, t, p, pw: &str| {
            use argon2::password_hash::{PasswordHasher, SaltString};
            let params = argon2::Params::new(m, t, p, None).unwrap();
            let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
            let phc =
                argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                    .hash_password(pw.as_bytes(), &salt)
                    .unwrap()
                    .to_string();
            PasswordHash::parse(&phc).unwrap()
        };
        let person = |id: &str, hash| Person {
            id: AgentId(id.into()),
            name: id.into(),
            role: Role::Agent,
            password_hash: hash,
            queues: vec!["support".into()],
        };
        let people = vec![
            person("a", made(2048, 3, 1, "a")),
            person("b", made(4096, 1, 2, "b")),
        ];
        let auth = AuthHandle::new(&config(Duration::from_secs(60)), people);
        assert_eq!(params_of(auth.dummy_hash().as_phc()), (4096, 3, 2));
        // Not the fixed OWASP dummy of before, whose cost had nothing to do with these.
        assert_ne!(params_of(auth.dummy_hash().as_phc()), password::PARAMS);
    }
}
