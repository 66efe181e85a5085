//! Sign-in sessions and failed-sign-in counts shared by the nodes: a browser whose node died
//! reconnects to another with the same token, a sign-out on one node ends the session on all,
//! and guessing passwords across nodes counts against one tally.
//!
//! Only a token's SHA-256 is stored, as on one node. Failed sign-ins follow the node's own
//! [`Policy`] (a few free, then blocks that double), kept in one hash per name or address.
//!
//! As on one node, a name's block applies only to addresses that have failed for that name
//! (as `signaling::throttle` does on one node): a tally per name and address remembers which.
//!
//! Keys: `switchboard:session:<sha256>` (person, expiring with the session),
//! `switchboard:sessions-of:<person>` (set of their sessions), `switchboard:signin:<kind>:<key>`
//! (hash: failures, until-ms; forgotten after the policy's quiet time; kinds `name`, `addr`,
//! and `pair` keyed `<name>|<address>`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Script;

use super::{deadline, Cluster, ClusterError, PREFIX};
use crate::config::ThrottlePolicy as Policy;

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

/// A right password: forgets the failures one address made for one name. KEYS[1]: the name's
/// tally, KEYS[2]: the pair's. ARGV[1]: the name policy's free failures. Returns how many.
const FORGIVE: &str = r#"
local n = tonumber(redis.call('HGET', KEYS[2], 'failures') or '0')
redis.call('DEL', KEYS[2])
if n > 0 and redis.call('EXISTS', KEYS[1]) == 1 then
  local f = redis.call('HINCRBY', KEYS[1], 'failures', -n)
  if f <= 0 then
    redis.call('DEL', KEYS[1])
  elseif f <= tonumber(ARGV[1]) then
    redis.call('HDEL', KEYS[1], 'until')
  end
end
return n
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

    /// How long sign-ins as `name` from `addr` are still blocked by the name's tally: only if
    /// `addr` has failed for `name` (its pair tally exists), as on one node.
    pub async fn sign_in_name_blocked(
        &self,
        name: &str,
        addr: &str,
    ) -> Result<Option<Duration>, ClusterError> {
        let mut conn = self.conn();
        let (until, failed): (Option<u64>, bool) = deadline(
            redis::pipe()
                .cmd("HGET")
                .arg(tally_key("name", name))
                .arg("until")
                .cmd("EXISTS")
                .arg(pair_key(name, addr))
                .query_async(&mut conn),
        )
        .await??;
        Ok(until
            .filter(|_| failed)
            .and_then(|u| u.checked_sub(now_ms()))
            .filter(|&ms| ms > 0)
            .map(Duration::from_millis))
    }

    /// Counts a failed sign-in as `name` from `addr` in the name's, the address's and the
    /// pair's tallies; the blocks it starts on the name and on the address, if any.
    pub async fn sign_in_failed_as(
        &self,
        name: &str,
        addr: &str,
        names: &Policy,
        addresses: &Policy,
    ) -> Result<(Option<Duration>, Option<Duration>), ClusterError> {
        let pair = Policy {
            forget_after: names.forget_after,
            ..Policy::PAIRS
        };
        self.count(pair_key(name, addr), &pair).await?;
        let by_name = self.count(tally_key("name", name), names).await?;
        let by_addr = self.count(tally_key("addr", addr), addresses).await?;
        Ok((by_name, by_addr))
    }

    /// A right password as `name` from `addr`: the failures that address made for the name are
    /// taken off the name's tally (and its block lifted if it is back within the free ones).
    pub async fn sign_in_succeeded_as(
        &self,
        name: &str,
        addr: &str,
        names: &Policy,
    ) -> Result<(), ClusterError> {
        let mut conn = self.conn();
        let _: i64 = deadline(
            Script::new(FORGIVE)
                .key(tally_key("name", name))
                .key(pair_key(name, addr))
                .arg(names.free_failures)
                .invoke_async(&mut conn),
        )
        .await??;
        Ok(())
    }

    /// Counts a failed sign-in by `key` under `policy`; the block it starts, if any.
    pub async fn sign_in_failed(
        &self,
        kind: &str,
        key: &str,
        policy: &Policy,
    ) -> Result<Option<Duration>, ClusterError> {
        self.count(tally_key(kind, key), policy).await
    }

    async fn count(
        &self,
        tally: String,
        policy: &Policy,
    ) -> Result<Option<Duration>, ClusterError> {
        let mut conn = self.conn();
        let script = Script::new(FAIL);
        let ms: u64 = deadline(
            script
                .key(tally)
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

/// An address has no `|`, so the last one splits the key without doubt.
fn pair_key(name: &str, addr: &str) -> String {
    tally_key("pair", &format!("{name}|{addr}"))
}
