//! The records the store keeps, and the query that lists them. Plain data, serde for the API.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::ids::WaCallId;

/// Records per page when the query names no limit.
pub const DEFAULT_LIMIT: u32 = 50;
/// The most records one page may hold.
pub const MAX_LIMIT: u32 = 500;

/// A call in progress, as far as the store knows: enough to end it at Meta after a crash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveCall {
    /// Meta's call id (`wacid.…`).
    pub call_id: WaCallId,
    /// The business phone number's id the call came in on (the `{phone-number-id}` of Graph's
    /// `/calls`, needed to terminate it).
    pub business_number: String,
    /// When the call was offered, unix ms.
    pub started_at: i64,
    /// Its record had it been lost at the last mark (caller, queue, agents, states so far):
    /// what a node ending it after its own node died writes, with the end filled in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known: Option<Box<CallRecord>>,
}

/// Everything recorded about one call, written once when it has ended.
///
/// Times are unix milliseconds (UTC) throughout, in JSON as plain integers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// Meta's call id (`wacid.…`); the record's key.
    pub call_id: WaCallId,
    /// The customer's WhatsApp number, as Meta gave it (digits, no `+`): who called, or who
    /// was called back.
    pub caller_number: String,
    /// The caller's profile name, when Meta sent one.
    pub caller_name: Option<String>,
    /// The business phone number's id the call came in on.
    pub business_number: String,
    /// The queue the call waited in, if it reached one.
    pub queue: Option<String>,
    /// Every agent who took part, in order (a transfer adds one).
    pub agents: Vec<String>,
    /// When the call was offered (the `connect` webhook), unix ms.
    pub started_at: i64,
    /// When an agent first answered, unix ms; `None` for a call no agent answered.
    pub answered_at: Option<i64>,
    /// When the call ended, unix ms.
    pub ended_at: i64,
    /// Every state the call went through, in order, with when it entered it.
    pub transitions: Vec<Transition>,
    /// How the call turned out.
    pub outcome: Outcome,
    /// Why it ended, in words (Meta's terminate reason, `agent_hung_up`, `ring_timeout`…).
    pub end_reason: String,
    /// Who ended it.
    pub ended_by: EndedBy,
    /// Error codes Meta returned or reported during the call (Graph errors, webhook errors).
    pub meta_error_codes: Vec<i64>,
    /// Media quality of each leg, as last reported by the engine.
    pub legs: Vec<LegQuality>,
    /// The node that handled the call (`SWITCHBOARD_NODE_ID`); absent in records written
    /// before nodes were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Who called whom: `inbound` (the customer called) or `outbound` (a call-back); records
    /// written before call-backs are `inbound`.
    #[serde(default)]
    pub direction: Direction,
    /// A call-back: the agent who placed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dialled_by: Option<String>,
    /// A call-back: the call-back task it came from, when it came from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
}

/// Who placed a call; the API's `direction` filter takes these names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The customer called the business.
    #[default]
    Inbound,
    /// The business called the customer (a call-back).
    Outbound,
}

impl Direction {
    /// Both, in declaration order.
    pub const ALL: [Direction; 2] = [Direction::Inbound, Direction::Outbound];

    /// The name used in JSON, in the API and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

impl FromStr for Direction {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Direction::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or(UnknownName)
    }
}

/// The call entered `state` at `at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// The state's name as the call's machine names it: `offered`, `pre_accepted`, `queued`,
    /// `ringing`, `talking`, `on_hold`, `wrap_up`, `ended`…
    pub state: String,
    /// When, unix ms.
    pub at: i64,
    /// The agent concerned (who is ringing, talking, wrapping up), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

/// How a call turned out; the API's `outcome` filter takes these names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// An agent answered.
    Answered,
    /// The caller hung up before any agent answered.
    Abandoned,
    /// Nobody could take it: rejected at once.
    Declined,
    /// It waited in the queue longer than allowed.
    TimedOut,
    /// Media or Graph failure ended it.
    Failed,
}

impl Outcome {
    /// Every outcome, in declaration order.
    pub const ALL: [Outcome; 5] = [
        Outcome::Answered,
        Outcome::Abandoned,
        Outcome::Declined,
        Outcome::TimedOut,
        Outcome::Failed,
    ];

    /// The name used in JSON, in the API and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Abandoned => "abandoned",
            Outcome::Declined => "declined",
            Outcome::TimedOut => "timed_out",
            Outcome::Failed => "failed",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Outcome {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Outcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or(UnknownName)
    }
}

/// Who ended a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndedBy {
    /// The WhatsApp caller hung up (Meta's `terminate` webhook).
    Caller,
    /// The agent hung up.
    Agent,
    /// A supervisor ended it.
    Supervisor,
    /// switchboard did: a timeout, a failure, a decline, shutdown.
    System,
}

impl EndedBy {
    const ALL: [EndedBy; 4] = [
        EndedBy::Caller,
        EndedBy::Agent,
        EndedBy::Supervisor,
        EndedBy::System,
    ];

    /// The name used in JSON and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            EndedBy::Caller => "caller",
            EndedBy::Agent => "agent",
            EndedBy::Supervisor => "supervisor",
            EndedBy::System => "system",
        }
    }
}

impl FromStr for EndedBy {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EndedBy::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or(UnknownName)
    }
}

/// A name that is not one of an enum's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown name")]
pub struct UnknownName;

/// Which side of the call a leg was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegRole {
    /// The leg to Meta (the caller).
    Whatsapp,
    /// An agent's browser.
    Agent,
    /// A supervisor's browser listening in.
    Supervisor,
}

/// A summary of one leg's media quality, from the engine's last statistics for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LegQuality {
    /// Which side.
    pub role: LegRole,
    /// The agent or supervisor on a browser leg.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// RTP packets received.
    pub packets_rx: u64,
    /// RTP packets sent.
    pub packets_tx: u64,
    /// Fraction of incoming packets lost, 0 to 1.
    pub loss_rx: Option<f32>,
    /// Fraction of outgoing packets the peer reported lost, 0 to 1.
    pub loss_tx: Option<f32>,
    /// Interarrival jitter of incoming audio, milliseconds.
    pub jitter_ms: Option<f64>,
    /// Round-trip time, milliseconds.
    pub rtt_ms: Option<f64>,
}

/// What [`CallStore::finish`](super::CallStore::finish) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The record was written.
    New,
    /// A record for this call existed already; it was kept as it was.
    Duplicate,
}

/// Which records to list. Every filter is optional; together they narrow (AND).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallQuery {
    /// Calls that started at or after this time, unix ms.
    pub from: Option<i64>,
    /// Calls that started before this time, unix ms.
    pub to: Option<i64>,
    /// Calls this agent took part in.
    pub agent: Option<String>,
    /// Calls that went to this queue.
    pub queue: Option<String>,
    /// Calls with this outcome.
    pub outcome: Option<Outcome>,
    /// Inbound calls or call-backs only.
    pub direction: Option<Direction>,
    /// Calls of this account only (by slug): the calls whose queue is the account's
    /// ([`crate::accounts::account_of`]). Set by the route from who asks, never by the query
    /// string.
    pub account: Option<String>,
    /// Records per page, 1 to [`MAX_LIMIT`]; `None` means [`DEFAULT_LIMIT`].
    pub limit: Option<u32>,
    /// Where the previous page stopped (its [`CallPage::next`]).
    pub cursor: Option<Cursor>,
}

impl CallQuery {
    /// The page size, after checking the query is coherent.
    pub fn checked_limit(&self) -> Result<u32, StoreError> {
        if let (Some(from), Some(to)) = (self.from, self.to) {
            if from > to {
                return Err(StoreError::InvalidQuery {
                    field: "from",
                    reason: format!("{from} is after to={to}"),
                });
            }
        }
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(n @ 1..=MAX_LIMIT) => Ok(n),
            Some(n) => Err(StoreError::InvalidQuery {
                field: "limit",
                reason: format!("{n} is not between 1 and {MAX_LIMIT}"),
            }),
        }
    }
}

/// One page of records, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallPage {
    /// The records.
    pub calls: Vec<CallRecord>,
    /// Pass this as the next query's cursor to get the following page; `None` on the last page.
    pub next: Option<Cursor>,
}

/// A position in the listing: the last record of a page, by (`started_at`, `call_id`).
///
/// Written as an opaque, URL-safe string (lowercase hex); clients pass it back unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The `started_at` of the last record returned.
    pub started_at: i64,
    /// The call id of the last record returned.
    pub call_id: WaCallId,
}

impl Cursor {
    /// The cursor that continues after `record`.
    pub fn after(record: &CallRecord) -> Cursor {
        Cursor {
            started_at: record.started_at,
            call_id: record.call_id.clone(),
        }
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plain = format!("{}:{}", self.started_at, self.call_id);
        f.write_str(&hex::encode(plain))
    }
}

impl FromStr for Cursor {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || StoreError::InvalidQuery {
            field: "cursor",
            reason: "not a cursor returned by this API".into(),
        };
        let bytes = hex::decode(s).map_err(|_| invalid())?;
        let plain = String::from_utf8(bytes).map_err(|_| invalid())?;
        let (at, id) = plain.split_once(':').ok_or_else(invalid)?;
        let started_at = at.parse().map_err(|_| invalid())?;
        if id.is_empty() {
            return Err(invalid());
        }
        Ok(Cursor {
            started_at,
            call_id: WaCallId(id.to_owned()),
        })
    }
}

impl Serialize for Cursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cursor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_junk() {
        let c = Cursor {
            started_at: 1_700_000_000_123,
            call_id: WaCallId("wacid.HBgL:MTIx=".into()),
        };
        let s = c.to_string();
        assert!(s.bytes().all(|b| b.is_ascii_hexdigit()), "{s}");
        assert_eq!(s.parse::<Cursor>().unwrap(), c);
        for junk in ["", "zz", "31323a", &hex::encode("abc:wacid.1"), "3132"] {
            assert!(junk.parse::<Cursor>().is_err(), "{junk}");
        }
    }

    #[test]
    fn names_round_trip() {
        for o in Outcome::ALL {
            assert_eq!(o.as_str().parse::<Outcome>().unwrap(), o);
            assert_eq!(serde_json::to_string(&o).unwrap(), format!("\"{o}\""));
        }
        for e in EndedBy::ALL {
            assert_eq!(e.as_str().parse::<EndedBy>().unwrap(), e);
            assert_eq!(
                serde_json::to_string(&e).unwrap(),
                format!("\"{}\"", e.as_str())
            );
        }
        assert!("Answered".parse::<Outcome>().is_err());
        for d in Direction::ALL {
            assert_eq!(d.as_str().parse::<Direction>().unwrap(), d);
            assert_eq!(
                serde_json::to_string(&d).unwrap(),
                format!("\"{}\"", d.as_str())
            );
        }
        assert!("out".parse::<Direction>().is_err());
    }

    #[test]
    fn limits() {
        let q = |limit| CallQuery {
            limit,
            ..Default::default()
        };
        assert_eq!(q(None).checked_limit().unwrap(), DEFAULT_LIMIT);
        assert_eq!(q(Some(500)).checked_limit().unwrap(), 500);
        assert!(q(Some(0)).checked_limit().is_err());
        assert!(q(Some(501)).checked_limit().is_err());
        let backwards = CallQuery {
            from: Some(10),
            to: Some(5),
            ..Default::default()
        };
        assert!(backwards.checked_limit().is_err());
    }
}
