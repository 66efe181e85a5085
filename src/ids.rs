//! Identifier newtypes shared by every module. No logic lives here beyond the shape a call id
//! from outside must have ([`WaCallId::check`]).

use std::fmt;

/// A media leg inside the engine: one `str0m::Rtc` (a WhatsApp call's leg or a browser session's).
///
/// The shard is the engine thread that owns the leg (its sockets, its `Rtc`); the slot indexes
/// that engine's leg table; the generation makes a stale id (of a leg that has been closed and
/// whose slot was reused) harmless instead of pointing at someone else's leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegId {
    pub(crate) shard: u8,
    pub(crate) slot: u32,
    pub(crate) generation: u32,
}

impl LegId {
    /// The engine shard that owns the leg.
    pub fn shard(&self) -> usize {
        usize::from(self.shard)
    }
}

impl fmt::Display for LegId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "leg-{}.{}.{}", self.shard, self.slot, self.generation)
    }
}

/// One outgoing audio stream of a leg (an m-line we send on). A WhatsApp leg has exactly one;
/// a supervisor's browser leg can have two (caller and agent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    /// The leg that owns the stream.
    pub leg: LegId,
    /// Position of the stream among the leg's outgoing streams, in SDP order.
    pub index: u8,
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/out{}", self.leg, self.index)
    }
}

/// Meta's call id (`wacid.…`), the key of every Graph action and webhook about one call.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct WaCallId(pub String);

/// Why a call id from outside (a webhook, a URL) is refused: see [`WaCallId::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallIdError {
    /// The id is empty.
    #[error("call id is empty")]
    Empty,
    /// The id is longer than [`WaCallId::MAX_LEN`] bytes.
    #[error("call id is {len} bytes long, more than {max}", max = WaCallId::MAX_LEN)]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The id holds a character outside Meta's alphabet.
    #[error("call id has a character outside letters, digits and . _ - + / = at byte {at}")]
    BadCharacter {
        /// The byte offset of the first such character.
        at: usize,
    },
}

impl WaCallId {
    /// The longest call id taken from outside. Meta's are `wacid.` and base64 of a few dozen
    /// bytes (about 100 characters in reference §3.1); four times the headroom of the longest
    /// seen still keeps a log line short.
    pub const MAX_LEN: usize = 256;

    /// Checks an id received from outside against Meta's shape: 1 to [`WaCallId::MAX_LEN`]
    /// bytes of ASCII letters, digits, `.` (after `wacid`), and base64's `+ / =` or its URL-safe
    /// `- _` (reference §3.1, §3.2). No control character, space or quote can pass, so a checked
    /// id cannot forge or break a log line.
    pub fn check(id: &str) -> Result<(), CallIdError> {
        if id.is_empty() {
            return Err(CallIdError::Empty);
        }
        if id.len() > Self::MAX_LEN {
            return Err(CallIdError::TooLong { len: id.len() });
        }
        match id.bytes().position(|b| !is_id_byte(b)) {
            Some(at) => Err(CallIdError::BadCharacter { at }),
            None => Ok(()),
        }
    }

    /// A checked id from outside.
    pub fn parse(id: &str) -> Result<WaCallId, CallIdError> {
        Self::check(id).map(|()| WaCallId(id.to_owned()))
    }
}

fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+' | b'/' | b'=')
}

impl fmt::Display for WaCallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Ids are checked where they enter, but one that came another way (a test, a peer
        // node) must still not forge a log line: anything outside the alphabet is escaped.
        if self.0.bytes().all(is_id_byte) {
            f.write_str(&self.0)
        } else {
            write!(f, "{}", self.0.escape_debug())
        }
    }
}

impl From<&str> for WaCallId {
    fn from(s: &str) -> Self {
        WaCallId(s.to_owned())
    }
}

/// A person who signs in: their `[[people]]` id (`alice`). Agents and supervisors alike, since a
/// supervisor can take calls too.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct AgentId(pub String);

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for AgentId {
    fn from(s: &str) -> Self {
        AgentId(s.to_owned())
    }
}

/// A queue of calls (`support`, `sales`, …), served by the agents who belong to it.
#[derive(
    Debug,
    Clone,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct QueueId(pub String);

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for QueueId {
    fn from(s: &str) -> Self {
        QueueId(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_ids_have_metas_shape() {
        for ok in [
            "wacid.HBgMOTE4MDk3NTM0Njg0FQIAEhggMURENUU5MDg2asdfNjk3OEUzMDM5MzEyRTccGAw5MTkxNjk5NTk5NTkVAgAVAgA=",
            "wacid.ABGGFjFVU2AfAgo6V-Hc5eCgK5Gh",
            "wacid.a+b/c_d",
        ] {
            assert_eq!(WaCallId::check(ok), Ok(()), "{ok}");
        }
        assert_eq!(WaCallId::check(""), Err(CallIdError::Empty));
        assert_eq!(
            WaCallId::check(&"a".repeat(257)),
            Err(CallIdError::TooLong { len: 257 })
        );
        assert_eq!(WaCallId::check(&"a".repeat(256)), Ok(()));
        for (bad, at) in [
            ("wacid.a\nb", 7),
            ("a b", 1),
            ("é", 0),
            ("a\"", 1),
            ("a%0A", 1),
        ] {
            assert_eq!(
                WaCallId::check(bad),
                Err(CallIdError::BadCharacter { at }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_call_id_never_prints_a_line_break() {
        let id = WaCallId::from("wacid.A\n2026-01-01 INFO forged");
        let shown = id.to_string();
        assert!(!shown.contains('\n'), "{shown}");
        assert_eq!(shown, "wacid.A\\n2026-01-01 INFO forged");
        assert_eq!(WaCallId::from("wacid.A-b_c=").to_string(), "wacid.A-b_c=");
    }
}
