//! Which node owns each call, where each node listens, and the signed node-to-node delivery of
//! a webhook event to its call's owner.
//!
//! A call's media lives on the node that answered Meta's offer; every later event of the call
//! (terminate, status) must reach that node, whichever node Meta's delivery landed on. The
//! event is sent as JSON to the owner's `POST /internal/v1/events`, signed with a key derived
//! from the app secret (every node of one business has it; nothing new to configure) over a
//! timestamp, the sending node and the body. The receiver refuses a stale or wrong signature;
//! a replay within the window is dropped by its de-duplication like any redelivery.
//!
//! Keys: `switchboard:owner:<call>` (node), `switchboard:node-url:<node>` (base URL).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{deadline, Cluster, ClusterError, PREFIX};
use crate::config::Secret;
use crate::ids::WaCallId;

/// The internal route events are delivered to.
pub const EVENTS_PATH: &str = "/internal/v1/events";
/// The header carrying `t=<ms>,node=<id>,sig=<hex>`.
pub const FORWARD_HEADER: &str = "x-switchboard-forward";
/// How old a forwarded event may be (clock skew between nodes included).
const FRESH: Duration = Duration::from_secs(60);
/// How long ownership is remembered: longer than any call.
const OWNER_TTL: Duration = Duration::from_secs(12 * 3600);

impl Cluster {
    /// Records this node as the owner of `call` (it answers the offer).
    pub async fn own_call(&self, call: &WaCallId) -> Result<(), ClusterError> {
        let mut conn = self.conn();
        deadline(
            redis::cmd("SET")
                .arg(owner_key(call))
                .arg(&self.node)
                .arg("EX")
                .arg(OWNER_TTL.as_secs())
                .query_async::<()>(&mut conn),
        )
        .await??;
        Ok(())
    }

    /// The node that owns `call`, if any node took it.
    pub async fn owner_of(&self, call: &WaCallId) -> Result<Option<String>, ClusterError> {
        let mut conn = self.conn();
        Ok(deadline(
            redis::cmd("GET")
                .arg(owner_key(call))
                .query_async(&mut conn),
        )
        .await??)
    }

    /// Publishes where this node takes node-to-node requests.
    pub async fn publish_url(&self, url: &str) -> Result<(), ClusterError> {
        let mut conn = self.conn();
        deadline(
            redis::cmd("SET")
                .arg(url_key(&self.node))
                .arg(url)
                .query_async::<()>(&mut conn),
        )
        .await??;
        Ok(())
    }

    /// Where `node` takes node-to-node requests.
    pub async fn url_of(&self, node: &str) -> Result<Option<String>, ClusterError> {
        let mut conn = self.conn();
        Ok(deadline(redis::cmd("GET").arg(url_key(node)).query_async(&mut conn)).await??)
    }
}

/// Signs and checks node-to-node requests.
#[derive(Clone)]
pub struct NodeKey {
    key: [u8; 32],
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeKey([redacted])")
    }
}

/// Why a node-to-node request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardRefused {
    /// No or an unreadable header.
    #[error("no node signature")]
    Missing,
    /// Signed too long ago (or in the future).
    #[error("node signature is stale")]
    Stale,
    /// The signature does not match.
    #[error("node signature does not match")]
    Mismatch,
}

impl NodeKey {
    /// The key of every node sharing `app_secret`.
    pub fn derive(app_secret: &Secret) -> NodeKey {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(app_secret.expose().as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(b"switchboard node-to-node v1");
        NodeKey {
            key: mac.finalize().into_bytes().into(),
        }
    }

    fn mac(&self, t: u64, node: &str, body: &[u8]) -> [u8; 32] {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes 32-byte keys");
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(node.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().into()
    }

    /// The header value for `body` sent now by `node`.
    pub fn sign(&self, node: &str, body: &[u8]) -> String {
        let t = now_ms();
        format!(
            "t={t},node={node},sig={}",
            hex::encode(self.mac(t, node, body))
        )
    }

    /// Checks a header value against `body`; the sending node on success.
    pub fn check(&self, header: Option<&str>, body: &[u8]) -> Result<String, ForwardRefused> {
        let header = header.ok_or(ForwardRefused::Missing)?;
        let (mut t, mut node, mut sig) = (None, None, None);
        for part in header.split(',') {
            match part.split_once('=') {
                Some(("t", v)) => t = v.parse::<u64>().ok(),
                Some(("node", v)) => node = Some(v),
                Some(("sig", v)) => sig = hex::decode(v).ok(),
                _ => {}
            }
        }
        let (Some(t), Some(node), Some(sig)) = (t, node, sig) else {
            return Err(ForwardRefused::Missing);
        };
        if now_ms().abs_diff(t) > FRESH.as_millis() as u64 {
            return Err(ForwardRefused::Stale);
        }
        if bool::from(self.mac(t, node, body).as_slice().ct_eq(&sig)) {
            Ok(node.to_owned())
        } else {
            Err(ForwardRefused::Mismatch)
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn owner_key(call: &WaCallId) -> String {
    format!("{PREFIX}:owner:{}", call.0)
}

fn url_key(node: &str) -> String {
    format!("{PREFIX}:node-url:{node}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_body_checks_and_any_change_does_not() {
        let key = NodeKey::derive(&Secret::new("app-secret"));
        let h = key.sign("node-a", b"{\"x\":1}");
        assert_eq!(key.check(Some(&h), b"{\"x\":1}").unwrap(), "node-a");
        assert_eq!(
            key.check(Some(&h), b"{\"x\":2}"),
            Err(ForwardRefused::Mismatch)
        );
        let forged = h.replace("node=node-a", "node=node-b");
        assert_eq!(
            key.check(Some(&forged), b"{\"x\":1}"),
            Err(ForwardRefused::Mismatch)
        );
        let other = NodeKey::derive(&Secret::new("another-secret"));
        assert_eq!(
            other.check(Some(&h), b"{\"x\":1}"),
            Err(ForwardRefused::Mismatch)
        );
        assert_eq!(key.check(None, b""), Err(ForwardRefused::Missing));
        assert_eq!(
            key.check(Some("t=1,node=a,sig=00"), b""),
            Err(ForwardRefused::Stale)
        );
        assert!(!format!("{key:?}").contains(&hex::encode(key.key)));
    }
}
