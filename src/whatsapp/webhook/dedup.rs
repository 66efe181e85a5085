//! Which events are new: the key a redelivery is recognised by, the table that remembers
//! delivered events (bounded in time and size), and the freshness rule for `connect`s.
//!
//! *Does not touch*: Redis (the processor asks it after this table), parsing, HTTP.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use super::model::{CallEventKind, CallStatusKind};
use crate::ids::WaCallId;

use super::*;

/// Key under which a redelivered webhook event is recognised.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DedupKey {
    /// A call event: (call id, event kind).
    Call {
        /// The call.
        call_id: WaCallId,
        /// connect / terminate.
        event: CallEventKind,
    },
    /// A call status: (call id, status).
    Status {
        /// The call.
        call_id: WaCallId,
        /// The status.
        status: CallStatusKind,
    },
    /// A message (a call permission reply): its `wamid`, unique at Meta.
    Message {
        /// The message's id.
        id: String,
    },
}

impl DedupKey {
    /// The key's name among the nodes (`call:<id>:connect`, `status:<id>:RINGING`).
    pub fn shared_name(&self) -> String {
        match self {
            DedupKey::Call { call_id, event } => format!("call:{call_id}:{event}"),
            DedupKey::Status { call_id, status } => format!("status:{call_id}:{status}"),
            DedupKey::Message { id } => format!("message:{id}"),
        }
    }
}

/// What [`Dedup::check`] makes of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Not seen before: forward it.
    New,
    /// Seen already (Meta redelivers when we answer slowly).
    Duplicate,
    /// A connect whose call was already seen terminated (§9: terminate can overtake connect).
    Late,
}

/// How old (by its `timestamp`) a `connect` may be when it is processed; an older one is
/// refused, never pre-accepted. Meta retries an unacknowledged webhook for a long time
/// (reference §2.4), but gives the business 30–60 s from the connect to accept the call
/// (§1.2, §7.1) and the caller sees "Not Answered" after that: a connect older than the longest
/// accept window is a late retry or a replay, and answering it can only ring an agent for a
/// call that is already over. The 60 s also covers a few seconds of clock skew against Meta.
pub const CONNECT_MAX_AGE: Duration = Duration::from_secs(60);

/// How long before `now` (wall clock) Meta sent `event`, when it is a user's `connect` with a
/// `timestamp`; `None` otherwise. A timestamp ahead of `now` (clock skew) is age zero.
pub fn connect_age(event: &WaEvent, now: SystemTime) -> Option<Duration> {
    let WaEvent::CallOffered {
        timestamp: Some(sent),
        ..
    } = event
    else {
        return None;
    };
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    Some(Duration::from_secs(now.saturating_sub(sent.0)))
}

/// Remembers which events were delivered, to drop Meta's redeliveries. Sans-IO: time is passed
/// in. Memory is bounded: entries are forgotten after `ttl`, and beyond `capacity` the oldest are
/// evicted first.
#[derive(Debug)]
pub struct Dedup {
    ttl: Duration,
    capacity: usize,
    seen: HashMap<DedupKey, Instant>,
    order: VecDeque<(Instant, DedupKey)>,
}

impl Dedup {
    /// An empty table.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Dedup {
            ttl,
            capacity: capacity.max(1),
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// True if the event with `key` is new and should be forwarded; false for a duplicate, or
    /// for a connect of a call already seen terminated.
    pub fn admit(&mut self, now: Instant, key: DedupKey) -> bool {
        self.check(now, key) == Admission::New
    }

    /// Like [`Dedup::admit`], telling a redelivery from a connect that came after its call's
    /// terminate.
    pub fn check(&mut self, now: Instant, key: DedupKey) -> Admission {
        self.expire(now);
        if self.seen.contains_key(&key) {
            return Admission::Duplicate;
        }
        if let DedupKey::Call {
            call_id,
            event: CallEventKind::Connect,
        } = &key
        {
            let terminated = DedupKey::Call {
                call_id: call_id.clone(),
                event: CallEventKind::Terminate,
            };
            if self.seen.contains_key(&terminated) {
                return Admission::Late;
            }
        }
        self.seen.insert(key.clone(), now);
        self.order.push_back((now, key));
        while self.order.len() > self.capacity {
            self.pop_oldest();
        }
        Admission::New
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) < self.ttl {
                break;
            }
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((_, key)) = self.order.pop_front() {
            self.seen.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> WaCallId {
        WaCallId::from(s)
    }

    fn connect(s: &str) -> DedupKey {
        DedupKey::Call {
            call_id: id(s),
            event: CallEventKind::Connect,
        }
    }

    fn terminate(s: &str) -> DedupKey {
        DedupKey::Call {
            call_id: id(s),
            event: CallEventKind::Terminate,
        }
    }

    #[test]
    fn dedup_drops_duplicates_and_forgets_after_ttl() {
        let t0 = Instant::now();
        let mut d = Dedup::new(Duration::from_secs(3600), 100);
        assert!(d.admit(t0, connect("a")));
        assert!(!d.admit(t0 + Duration::from_secs(10), connect("a")));
        assert!(d.admit(t0 + Duration::from_secs(10), terminate("a")));
        let status = DedupKey::Status {
            call_id: id("a"),
            status: CallStatusKind::Ringing,
        };
        assert!(d.admit(t0, status.clone()));
        assert!(!d.admit(t0 + Duration::from_secs(1), status));
        // After an hour the first connect is forgotten, but the terminate (at +10 s) is not yet.
        let later = t0 + Duration::from_secs(3600);
        assert!(
            !d.admit(later, connect("a")),
            "late connect after terminate"
        );
        assert!(d.admit(later + Duration::from_secs(10), connect("a")));
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn dedup_late_connect_after_terminate_is_dropped() {
        let t0 = Instant::now();
        let mut d = Dedup::new(Duration::from_secs(3600), 100);
        assert!(d.admit(t0, terminate("x")));
        assert!(!d.admit(t0 + Duration::from_secs(5), connect("x")));
        assert!(d.admit(t0 + Duration::from_secs(5), connect("y")));
    }

    #[test]
    fn dedup_capacity_evicts_oldest_first() {
        let t0 = Instant::now();
        let mut d = Dedup::new(Duration::from_secs(3600), 3);
        for (i, c) in ["a", "b", "c", "d"].iter().enumerate() {
            assert!(d.admit(t0 + Duration::from_secs(i as u64), connect(c)));
        }
        assert_eq!(d.len(), 3);
        let t = t0 + Duration::from_secs(10);
        assert!(!d.admit(t, connect("d")));
        assert!(!d.admit(t, connect("c")));
        assert!(
            d.admit(t, connect("a")),
            "a was evicted, so it is new again"
        );
    }
}
