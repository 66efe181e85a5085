//! Identifier newtypes shared by every module. No logic lives here.

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

impl fmt::Display for WaCallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
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
