//! Sign-in sessions and failed-sign-in counts shared by the nodes: a browser whose node died
//! reconnects to another with the same token, a sign-out on one node ends the session on all,
//! and guessing passwords across nodes counts against one tally.
//!
//! Only a token's SHA-256 is stored, as on one node. Failed sign-ins follow the node's own
//! [`Policy`] (a few free, then blocks that double), kept in one hash per name or address.
//!
//! Keys: `switchboard:session:<sha256>` (person, expiring with the session),
//! `switchboard:sessions-of:<person>` (set of their sessions), `switchboard:signin:<kind>:<key>`
//! (hash: failures, until-ms; forgotten after the policy's quiet time).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Script;

use super::{deadline, Cluster, ClusterError, PREFIX};
use crate::signaling::throttle::Policy;

/// Counts one failure. KEYS[1]: the tally. ARGV: now ms, free failures, base ms, max ms,
/// forget ms. Returns the block it starts in ms (0: none).
const FAIL: &str = r#"
local f = redis.call('HINCRBY', KEYS[1], 'failures', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
local over = f - tonumber(ARGV[2]) - 1
if over < 0 then return 0 end
local d = tonumber(ARGV[3]) * (2 ^ math.min(over, 40))
if d > tonumber(ARGV[4]) then d = tonumber(ARGV[4]) end
redis.call('HSET', KEYS[1], 'until', tonumber(ARGV[1]) + d)
return d
"#;

impl Cluster {
    /// Files a new session (by its key's hex) for `person`, expiring after `ttl`.
    pub async fn put_session(
        &self,
        key: &str,
        person: &str,
        ttl: Duration,
    ) -> Result<(), ClusterError> {
        let mut conn = self.conn();
        deadline(
            redis::pipe()
                .atomic()
                .cmd("SET")
                .arg(session_key(key))
                .arg(person)
                .arg("PX")
                .arg(ttl.as_millis().max(1) as u64)
                .ignore()
                .cmd("SADD")
                .arg(person_key(person))
                .arg(key)
                .ignore()
                .cmd("PEXPIRE")
                .arg(person_key(person))
                .arg(ttl.as_millis().max(1) as u64)
                .ignore()
                .query_async::<()>(&mut conn),
        )
        .await??;
        Ok(())
    }

    /// The person a session belongs to and how long it has left, if it is live.
    pub async fn session(&self, key: &str) -> Result<Option<(String, Duration)>, ClusterError> {
        let mut conn = self.conn();
        let (person, ms): (Option<String>, i64) = deadline(
            redis::pipe()
                .cmd("GET")
                .arg(session_key(key))
                .cmd("PTTL")
                .arg(session_key(key))
                .query_async(&mut conn),
        )
        .await??;
        Ok(person
            .filter(|_| ms > 0)
            .map(|p| (p, Duration::from_millis(ms as u64))))
    }

    /// Ends a session on every node.
    pub async fn drop_session(&self, key: &str) -> Result<(), ClusterError> {
        let mut conn = self.conn();
        deadline(
            redis::cmd("DEL")
                .arg(session_key(key))
                .query_async::<()>(&mut conn),
        )
        .await??;
        Ok(())
    }

    /// Ends every session of `person` on every node.
    pub async fn drop_sessions_of(&self, person: &str) -> Result<(), ClusterError> {
        let mut conn = self.conn();
        let keys: Vec<String> = deadline(
            redis::cmd("SMEMBERS")
                .arg(person_key(person))
                .query_async(&mut conn),
        )
        .await??;
        let mut pipe = redis::pipe();
        for k in &keys {
            pipe.cmd("DEL").arg(session_key(k)).ignore();
        }
        pipe.cmd("DEL").arg(person_key(person)).ignore();
        deadline(pipe.query_async::<()>(&mut conn)).await??;
        Ok(())
    }

    /// How long sign-ins by `key` (a name or an address, of `kind`) are still blocked.
    pub async fn sign_in_blocked(
        &self,
        kind: &str,
        key: &str,
    ) -> Result<Option<Duration>, ClusterError> {
        let mut conn = self.conn();
        let until: Option<u64> = deadline(
            redis::cmd("HGET")
                .arg(tally_key(kind, key))
                .arg("until")
                .query_async(&mut conn),
        )
        .await??;
        Ok(until
            .and_then(|u| u.checked_sub(now_ms()))
            .filter(|&ms| ms > 0)
            .map(Duration::from_millis))
    }

    /// Counts a failed sign-in by `key` under `policy`; the block it starts, if any.
    pub async fn sign_in_failed(
        &self,
        kind: &str,
        key: &str,
        policy: &Policy,
    ) -> Result<Option<Duration>, ClusterError> {
        let mut conn = self.conn();
        let script = Script::new(FAIL);
        let ms: u64 = deadline(
            script
                .key(tally_key(kind, key))
                .arg(now_ms())
                .arg(policy.free_failures)
                .arg(policy.base_delay.as_millis() as u64)
                .arg(policy.max_delay.as_millis() as u64)
                .arg(policy.forget_after.as_millis() as u64)
                .invoke_async(&mut conn),
        )
        .await??;
        Ok((ms > 0).then(|| Duration::from_millis(ms)))
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn session_key(key: &str) -> String {
    format!("{PREFIX}:session:{key}")
}

fn person_key(person: &str) -> String {
    format!("{PREFIX}:sessions-of:{person}")
}

fn tally_key(kind: &str, key: &str) -> String {
    format!("{PREFIX}:signin:{kind}:{key}")
}
