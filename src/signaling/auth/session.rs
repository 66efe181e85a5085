//! Sessions: who holds a token, whether a session is still alive (here and, with several nodes,
//! on the others), and signing out.
//!
//! *Owns*: [`AuthHandle::authenticate`] and its cluster-wide form, `session_alive*`,
//! `sign_out*`, and the longest token looked up.
//!
//! *Does not touch*: making sessions (`login`), the token's wire form (`cookie`), the session
//! table's own rules (`signaling::tokens`).

use tracing::{debug, info, warn};

use super::{AuthError, AuthHandle, Authenticated};
use crate::ids::AgentId;
use crate::signaling::tokens::SessionKey;

/// Longest token looked up; anything longer is no token of ours.
const MAX_TOKEN_BYTES: usize = 128;

impl AuthHandle {
    /// Who holds `token`, if it is a live session's.
    pub fn authenticate(&self, token: &str) -> Result<Authenticated, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Unauthenticated);
        }
        let key = SessionKey::of(token);
        let (person_id, _expires) = self
            .sessions()
            .resolve(self.now(), &key)
            .ok_or(AuthError::Unauthenticated)?;
        let role = self
            .directory()
            .get(&person_id)
            .map(|e| e.info.role)
            // Removed since (their sessions end with the change; this covers the instant between).
            .ok_or(AuthError::Unauthenticated)?;
        Ok(Authenticated {
            person_id,
            role,
            session: key,
        })
    }

    /// Who holds `token`: a session of this node's, or with several nodes one made on
    /// another node (then filed here for the time it has left). A session signed out on
    /// another node is refused here too; with Redis unreachable this node's own table decides.
    pub async fn authenticate_anywhere(&self, token: &str) -> Result<Authenticated, AuthError> {
        let local = self.authenticate(token);
        let Some(cluster) = self.inner.cluster.get() else {
            return local;
        };
        match local {
            Ok(who) => {
                return if self.session_alive_anywhere(&who.session).await {
                    Ok(who)
                } else {
                    Err(AuthError::Unauthenticated)
                };
            }
            Err(AuthError::Unauthenticated) if token.len() <= MAX_TOKEN_BYTES => {}
            other => return other,
        }
        let key = SessionKey::of(token);
        let (person, left) = match cluster.session(&key.hex()).await {
            Ok(Some(found)) => found,
            Ok(None) => return Err(AuthError::Unauthenticated),
            Err(e) => {
                warn!(error = %e, "shared sessions unavailable; only this node's are known");
                return Err(AuthError::Unauthenticated);
            }
        };
        let person = AgentId(person);
        if !self.directory().contains_key(&person) {
            // Another deployment's directory, or a person removed since: not ours.
            return Err(AuthError::Unauthenticated);
        }
        self.sessions().adopt(self.now(), &person, key, left)?;
        debug!(%person, "session made on another node taken up here");
        self.authenticate(token)
    }

    /// True while the session is live (not signed out, not expired).
    pub fn session_alive(&self, session: &SessionKey) -> bool {
        self.sessions().resolve(self.now(), session).is_some()
    }

    /// As [`session_alive`](Self::session_alive), and with several nodes not signed out on
    /// another node either (Redis unreachable: this node's word stands).
    pub async fn session_alive_anywhere(&self, session: &SessionKey) -> bool {
        if !self.session_alive(session) {
            return false;
        }
        let Some(cluster) = self.inner.cluster.get() else {
            return true;
        };
        match cluster.session(&session.hex()).await {
            Ok(Some(_)) => true,
            Ok(None) => {
                self.sessions().remove(session);
                false
            }
            Err(_) => true,
        }
    }

    /// Ends a session, on every node; true if it was live here.
    pub async fn sign_out(&self, session: &SessionKey) -> bool {
        if let Some(cluster) = self.inner.cluster.get() {
            if let Err(e) = cluster.drop_session(&session.hex()).await {
                warn!(error = %e, "sign-out not shared with the other nodes");
            }
        }
        match self.sessions().remove(session) {
            Some(person) => {
                info!(%person, "signed out");
                true
            }
            None => false,
        }
    }

    /// Ends every session of `person`, on every node; returns how many there were here.
    pub async fn sign_out_everywhere(&self, person: &AgentId) -> usize {
        if let Some(cluster) = self.inner.cluster.get() {
            if let Err(e) = cluster.drop_sessions_of(&person.0).await {
                warn!(error = %e, "sign-out not shared with the other nodes");
            }
        }
        self.sessions().remove_person(person)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    use crate::config::Role;
    use crate::signaling::auth::demo_people;
    use crate::signaling::auth::fixtures::*;

    #[tokio::test]
    async fn a_token_expires_after_the_session_lifetime() {
        let (people, demo) = demo_people().await;
        let auth = AuthHandle::new(&config(Duration::from_secs(60)), people);
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let signed = auth.sign_in("agent1", &demo[0].password, lo).await.unwrap();
        let who = auth.authenticate(signed.token.expose()).unwrap();
        assert_eq!(who.person_id, AgentId("agent1".into()));
        assert_eq!(who.role, Role::Agent);
        auth.advance_clock(Duration::from_secs(59));
        assert!(auth.session_alive(&who.session));
        auth.advance_clock(Duration::from_secs(1));
        assert!(!auth.session_alive(&who.session));
        assert!(matches!(
            auth.authenticate(signed.token.expose()),
            Err(AuthError::Unauthenticated)
        ));
        assert_eq!(auth.stats().sessions, 0);
        // An unknown id and a wrong password get the same answer.
        assert!(matches!(
            auth.sign_in("nobody", "x", lo).await,
            Err(AuthError::BadCredentials)
        ));
        assert!(matches!(
            auth.sign_in("agent1", "x", lo).await,
            Err(AuthError::BadCredentials)
        ));
        assert_eq!(auth.stats().sign_in.failures, 2);
    }

    #[tokio::test]
    async fn a_host_issued_session_expires_after_its_own_lifetime() {
        let (people, _) = demo_people().await;
        let auth = AuthHandle::new(&config(Duration::from_secs(3600)), people);
        let agent1 = AgentId("agent1".into());
        let issued = auth.issue(&agent1, Duration::from_secs(120)).await.unwrap();
        let who = auth.authenticate(issued.token.expose()).unwrap();
        assert_eq!(who.person_id, agent1);
        auth.advance_clock(Duration::from_secs(119));
        assert!(auth.authenticate(issued.token.expose()).is_ok());
        auth.advance_clock(Duration::from_secs(1));
        assert!(matches!(
            auth.authenticate(issued.token.expose()),
            Err(AuthError::Unauthenticated)
        ));
        // Nobody of that id: nothing issued.
        assert!(auth
            .issue(&AgentId("nobody".into()), Duration::from_secs(120))
            .await
            .is_err());
    }
}
