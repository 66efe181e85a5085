//! The sign-in throttle: failed sign-ins are counted per name and per client address, and past
//! a few free failures each further one blocks that name (or address) for a delay that doubles,
//! up to a ceiling. Pure: every call takes `now`.
//!
//! **A name's block stops only the addresses that have failed for that name.** Otherwise anyone
//! could keep a chosen person out for good with one wrong guess per block expiry. Her right
//! password from an address that has not failed for her name is checked, so a stranger elsewhere
//! cannot lock her out; every address that guesses is still held to the doubling block after the
//! free failures, and each address to its own per-address limit across all names. The price: a
//! guesser with many addresses gets one check per fresh address while the name is blocked (then
//! that address is blocked too), which the per-address limit, argon2's cost and the hour before
//! an address's failures are forgotten bound.
//!
//! A right password forgets what that address failed for that name (and only that): the
//! failures others made keep their addresses blocked.
//!
//! An attempt counts as a failure *when it starts* ([`SignInThrottle::begin`]) and is given
//! back if the password was right ([`SignInThrottle::succeeded`]): so many attempts sent at
//! once cannot all slip past the check while their passwords are being hashed.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How one kind of key is throttled; with the nodes' shared state (`cluster::sessions`), too.
pub use crate::config::ThrottlePolicy as Policy;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    blocked_until: Option<Instant>,
}

/// Failure counts for one kind of key.
#[derive(Debug)]
pub struct Throttle<K> {
    policy: Policy,
    entries: HashMap<K, Entry>,
}

impl<K: Hash + Eq + Clone> Throttle<K> {
    /// An empty throttle.
    pub fn new(policy: Policy) -> Self {
        Throttle {
            policy,
            entries: HashMap::new(),
        }
    }

    /// How long `key` is still blocked, if it is.
    pub fn blocked_for(&mut self, now: Instant, key: &K) -> Option<Duration> {
        let e = self.entries.get(key)?;
        if now.saturating_duration_since(e.last_failure) >= self.policy.forget_after {
            self.entries.remove(key);
            return None;
        }
        e.blocked_until
            .and_then(|until| until.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    /// Counts a failure; returns the block it starts, if it starts one.
    pub fn fail(&mut self, now: Instant, key: &K) -> Option<Duration> {
        self.count(now, key);
        self.block(now, key)
    }

    /// Counts a failure without starting a block (yet): see [`block`](Self::block).
    pub fn count(&mut self, now: Instant, key: &K) {
        if !self.entries.contains_key(key) && self.entries.len() >= self.policy.max_entries {
            self.make_room(now);
        }
        let forget = self.policy.forget_after;
        let e = self.entries.entry(key.clone()).or_insert(Entry {
            failures: 0,
            last_failure: now,
            blocked_until: None,
        });
        if now.saturating_duration_since(e.last_failure) >= forget {
            e.failures = 0;
            e.blocked_until = None;
        }
        e.failures = e.failures.saturating_add(1);
        e.last_failure = now;
    }

    /// Starts the block the failures counted so far call for, if any.
    pub fn block(&mut self, now: Instant, key: &K) -> Option<Duration> {
        let e = self.entries.get_mut(key)?;
        let delay = self.policy.delay(e.failures)?;
        e.blocked_until = Some(now + delay);
        Some(delay)
    }

    /// True when `key` has a failure not yet forgotten.
    pub fn has_failed(&mut self, now: Instant, key: &K) -> bool {
        let Some(e) = self.entries.get(key) else {
            return false;
        };
        if now.saturating_duration_since(e.last_failure) >= self.policy.forget_after {
            self.entries.remove(key);
            return false;
        }
        e.failures > 0
    }

    /// Takes back one failure counted by [`fail`](Self::fail) (the attempt succeeded).
    pub fn give_back(&mut self, key: &K) {
        self.give_back_n(key, 1);
    }

    /// Takes back `n` failures counted by [`fail`](Self::fail).
    pub fn give_back_n(&mut self, key: &K, n: u32) {
        if let Some(e) = self.entries.get_mut(key) {
            e.failures = e.failures.saturating_sub(n);
            if e.failures <= self.policy.free_failures {
                e.blocked_until = None;
            }
            if e.failures == 0 {
                self.entries.remove(key);
            }
        }
    }

    /// Forgets `key` entirely.
    pub fn clear(&mut self, key: &K) {
        self.entries.remove(key);
    }

    /// Failures counted against `key` and not forgotten.
    pub fn failures(&self, key: &K) -> u32 {
        self.entries.get(key).map_or(0, |e| e.failures)
    }

    /// Keys remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets stale keys; if none are stale, the one whose last failure is oldest.
    fn make_room(&mut self, now: Instant) {
        let forget = self.policy.forget_after;
        self.entries
            .retain(|_, e| now.saturating_duration_since(e.last_failure) < forget);
        if self.entries.len() >= self.policy.max_entries {
            if let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_failure)
                .map(|(k, _)| k.clone())
            {
                self.entries.remove(&oldest);
            }
        }
    }
}

/// Counters of the sign-in throttle, read with [`SignInThrottle::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignInStats {
    /// Sign-ins that succeeded.
    pub successes: u64,
    /// Sign-ins refused for a wrong id or password.
    pub failures: u64,
    /// Sign-ins refused unchecked because the name or the address was blocked (429).
    pub throttled: u64,
    /// Blocks started on a name.
    pub names_blocked: u64,
    /// Blocks started on a client address.
    pub addresses_blocked: u64,
}

/// What [`SignInThrottle::begin`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Check the password.
    Proceed,
    /// Refuse without checking; try again after this long.
    Blocked {
        /// The longer of the name's and the address's remaining block.
        retry_after: Duration,
    },
}

/// Blocks started by an attempt that went on to fail, to be logged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NewBlocks {
    /// The name is now blocked for this long.
    pub name: Option<Duration>,
    /// The address is now blocked for this long.
    pub address: Option<Duration>,
    /// The attempt came from an address that had not failed for the name: its failure was
    /// counted on the name, but the name's block waits for the outcome (see
    /// [`SignInThrottle::failed`]), so that a right password does not leave the block longer.
    name_pending: bool,
}

/// The throttle per sign-in name and per client address, with its counters.
#[derive(Debug)]
pub struct SignInThrottle {
    names: Throttle<String>,
    addresses: Throttle<IpAddr>,
    /// Which addresses failed for which names: a name's block applies to these only.
    pairs: Throttle<(String, IpAddr)>,
    stats: SignInStats,
}

impl Default for SignInThrottle {
    fn default() -> Self {
        Self::new(Policy::NAMES, Policy::ADDRESSES)
    }
}

impl SignInThrottle {
    /// A throttle with these policies.
    pub fn new(names: Policy, addresses: Policy) -> Self {
        SignInThrottle {
            names: Throttle::new(names),
            addresses: Throttle::new(addresses),
            pairs: Throttle::new(Policy {
                forget_after: names.forget_after,
                max_entries: names.max_entries,
                ..Policy::PAIRS
            }),
            stats: SignInStats::default(),
        }
    }

    /// An attempt to sign in as `name` from `addr` starts: blocked, or counted as a failure
    /// until [`succeeded`](Self::succeeded) or [`failed`](Self::failed) says how it went.
    /// The blocks it starts, if any, are returned with the verdict. The name's block applies
    /// only if `addr` has failed for `name` before (see the module's docs).
    pub fn begin(&mut self, now: Instant, name: &str, addr: IpAddr) -> (Verdict, NewBlocks) {
        let name_key = name.to_owned();
        let pair = (name_key.clone(), addr);
        let by_name = if self.pairs.has_failed(now, &pair) {
            self.names.blocked_for(now, &name_key)
        } else {
            None
        };
        let wait = by_name.max(self.addresses.blocked_for(now, &addr));
        if let Some(retry_after) = wait {
            self.stats.throttled += 1;
            return (Verdict::Blocked { retry_after }, NewBlocks::default());
        }
        let clean = !self.pairs.has_failed(now, &pair);
        self.pairs.fail(now, &pair);
        // A repeat from a failed address blocks at once, so that many attempts sent together
        // cannot all slip past; a first one from a clean address waits for its outcome.
        let name = if clean {
            self.names.count(now, &name_key);
            None
        } else {
            self.names.fail(now, &name_key)
        };
        let blocks = NewBlocks {
            name,
            address: self.addresses.fail(now, &addr),
            name_pending: clean,
        };
        (Verdict::Proceed, blocks)
    }

    /// The attempt begun for `name` from `addr` had the right password: the failures this
    /// address made for the name are forgotten (those of other addresses stay), and the
    /// address's provisional failure is given back.
    pub fn succeeded(&mut self, name: &str, addr: IpAddr) {
        let name_key = name.to_owned();
        let pair = (name_key.clone(), addr);
        let own = self.pairs.failures(&pair);
        self.pairs.clear(&pair);
        self.names.give_back_n(&name_key, own);
        self.addresses.give_back(&addr);
        self.stats.successes += 1;
    }

    /// The attempt as `name` had a wrong id or password (already counted); `blocks` are those
    /// its [`begin`](Self::begin) started. Returns them with the name's block that waited for
    /// the outcome, if it starts one now.
    pub fn failed(&mut self, now: Instant, name: &str, mut blocks: NewBlocks) -> NewBlocks {
        if blocks.name_pending {
            blocks.name_pending = false;
            blocks.name = self.names.block(now, &name.to_owned());
        }
        self.stats.failures += 1;
        self.stats.names_blocked += u64::from(blocks.name.is_some());
        self.stats.addresses_blocked += u64::from(blocks.address.is_some());
        blocks
    }

    /// The attempt could not be checked at all (an internal fault): not the person's failure.
    pub fn abandoned(&mut self, name: &str, addr: IpAddr) {
        self.names.give_back(&name.to_owned());
        self.addresses.give_back(&addr);
        self.pairs.give_back(&(name.to_owned(), addr));
    }

    /// The counters so far.
    pub fn stats(&self) -> SignInStats {
        self.stats
    }

    /// Failures remembered against `name` and against `addr`.
    pub fn failures(&self, name: &str, addr: IpAddr) -> (u32, u32) {
        (
            self.names.failures(&name.to_owned()),
            self.addresses.failures(&addr),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    /// Begins and fails one attempt; returns the verdict.
    fn fail(t: &mut SignInThrottle, now: Instant, name: &str, addr: IpAddr) -> Verdict {
        let (v, blocks) = t.begin(now, name, addr);
        if v == Verdict::Proceed {
            t.failed(now, name, blocks);
        }
        v
    }

    #[test]
    fn delays_double_from_the_first_failure_past_the_free_ones() {
        let p = Policy::NAMES;
        assert_eq!(p.delay(5), None);
        assert_eq!(p.delay(6), Some(s(1)));
        assert_eq!(p.delay(7), Some(s(2)));
        assert_eq!(p.delay(10), Some(s(16)));
        assert_eq!(p.delay(40), Some(s(900)));
        assert_eq!(p.delay(u32::MAX), Some(s(900)));
    }

    #[test]
    fn a_name_is_blocked_after_its_free_failures_and_released_after_the_delay() {
        let t0 = Instant::now();
        let mut t = SignInThrottle::default();
        for _ in 0..5 {
            assert_eq!(fail(&mut t, t0, "alice", A), Verdict::Proceed);
        }
        // The sixth still gets checked (and starts the first block)...
        assert_eq!(fail(&mut t, t0, "alice", A), Verdict::Proceed);
        assert_eq!(t.stats().names_blocked, 1);
        // ...the seventh, at once, is refused unchecked.
        assert_eq!(
            fail(&mut t, t0, "alice", A),
            Verdict::Blocked { retry_after: s(1) }
        );
        // Another name from the same address is not blocked.
        assert_eq!(t.begin(t0, "bob", A).0, Verdict::Proceed);
        t.succeeded("bob", A);
        // After the delay, one more try; it fails and doubles the block.
        let t1 = t0 + s(1);
        assert_eq!(fail(&mut t, t1, "alice", A), Verdict::Proceed);
        assert_eq!(
            t.begin(t1 + Duration::from_millis(500), "alice", A).0,
            Verdict::Blocked {
                retry_after: Duration::from_millis(1500)
            }
        );
        let st = t.stats();
        assert_eq!((st.failures, st.throttled, st.successes), (7, 2, 1));
        assert_eq!(st.names_blocked, 2);
        assert_eq!(st.addresses_blocked, 0);
    }

    #[test]
    fn a_success_forgets_the_names_failures_but_not_the_addresses() {
        let t0 = Instant::now();
        let mut t = SignInThrottle::default();
        for _ in 0..4 {
            fail(&mut t, t0, "alice", A);
        }
        assert_eq!(t.failures("alice", A), (4, 4));
        assert_eq!(t.begin(t0, "alice", A).0, Verdict::Proceed);
        t.succeeded("alice", A);
        assert_eq!(t.failures("alice", A), (0, 4));
    }

    #[test]
    fn an_address_spraying_many_names_is_blocked() {
        let t0 = Instant::now();
        let mut t = SignInThrottle::default();
        for i in 0..21 {
            assert_eq!(fail(&mut t, t0, &format!("user{i}"), A), Verdict::Proceed);
        }
        assert_eq!(t.stats().addresses_blocked, 1);
        assert_eq!(
            t.begin(t0, "someone-else", A).0,
            Verdict::Blocked { retry_after: s(1) }
        );
        // Another address is not.
        assert_eq!(t.begin(t0, "someone-else", B).0, Verdict::Proceed);
    }

    #[test]
    fn attempts_at_once_count_before_their_passwords_are_checked() {
        let t0 = Instant::now();
        let mut t = SignInThrottle::default();
        // Seven attempts begin before any of them is decided.
        let verdicts: Vec<_> = (0..7).map(|_| t.begin(t0, "alice", A)).collect();
        assert!(verdicts[..6].iter().all(|(v, _)| *v == Verdict::Proceed));
        assert!(matches!(verdicts[6].0, Verdict::Blocked { .. }));
    }

    #[test]
    fn a_stranger_guessing_at_every_block_expiry_never_locks_the_person_out() {
        let t0 = Instant::now();
        let mut t = SignInThrottle::default();
        // The stranger at B: free failures, then one guess each time the block lifts.
        let mut now = t0;
        for _ in 0..6 {
            assert_eq!(fail(&mut t, now, "alice", B), Verdict::Proceed);
        }
        for round in 0..12 {
            // B is refused unchecked while the name's block lasts...
            let Verdict::Blocked { retry_after } = t.begin(now, "alice", B).0 else {
                panic!("round {round}: the guessing address is not blocked");
            };
            // ...and alice, whose address never failed, is checked and signs in meanwhile.
            assert_eq!(
                t.begin(now, "alice", A).0,
                Verdict::Proceed,
                "round {round}"
            );
            t.succeeded("alice", A);
            now += retry_after;
            assert_eq!(fail(&mut t, now, "alice", B), Verdict::Proceed);
        }
        // Her successes did not forgive the stranger: the block on B kept doubling.
        let Verdict::Blocked { retry_after } = t.begin(now, "alice", B).0 else {
            panic!("B is not blocked");
        };
        assert!(retry_after >= s(900), "{retry_after:?}");
        assert_eq!(t.failures("alice", A), (18, 0));
    }

    #[test]
    fn a_name_block_applies_to_every_address_that_failed_for_it() {
        let t0 = Instant::now();
        let mut t = SignInThrottle::default();
        const C: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 3));
        // Failures from two addresses add up on the name: both are blocked, a third is not.
        for _ in 0..3 {
            fail(&mut t, t0, "alice", A);
            fail(&mut t, t0, "alice", B);
        }
        assert!(matches!(t.begin(t0, "alice", A).0, Verdict::Blocked { .. }));
        assert!(matches!(t.begin(t0, "alice", B).0, Verdict::Blocked { .. }));
        // C's first try is checked; a wrong one puts C under the name's block too.
        assert_eq!(fail(&mut t, t0, "alice", C), Verdict::Proceed);
        assert!(matches!(t.begin(t0, "alice", C).0, Verdict::Blocked { .. }));
        assert_eq!(t.stats().throttled, 3);
    }

    #[test]
    fn a_right_password_forgets_only_its_own_addresses_failures_for_the_name() {
        let t0 = Instant::now();
        let mut t = SignInThrottle::default();
        for _ in 0..3 {
            fail(&mut t, t0, "alice", A);
        }
        for _ in 0..2 {
            fail(&mut t, t0, "alice", B);
        }
        assert_eq!(t.failures("alice", A).0, 5);
        assert_eq!(t.begin(t0, "alice", A).0, Verdict::Proceed);
        t.succeeded("alice", A);
        assert_eq!(t.failures("alice", A), (2, 3));
        // An attempt that could not be checked is nobody's failure.
        assert_eq!(t.begin(t0, "alice", A).0, Verdict::Proceed);
        t.abandoned("alice", A);
        assert_eq!(t.failures("alice", A), (2, 3));
        assert_eq!(t.begin(t0, "alice", A).0, Verdict::Proceed);
        t.succeeded("alice", A);
        assert_eq!(t.failures("alice", A), (2, 3));
    }

    #[test]
    fn failures_are_forgotten_after_a_quiet_hour() {
        let t0 = Instant::now();
        let mut t = SignInThrottle::default();
        for _ in 0..8 {
            fail(&mut t, t0, "alice", A);
        }
        assert!(matches!(t.begin(t0, "alice", A).0, Verdict::Blocked { .. }));
        let later = t0 + s(3600);
        assert_eq!(t.begin(later, "alice", A).0, Verdict::Proceed);
        assert_eq!(t.failures("alice", A), (1, 1));
    }

    #[test]
    fn memory_is_bounded_by_forgetting_the_stalest() {
        let p = Policy {
            max_entries: 3,
            ..Policy::NAMES
        };
        let t0 = Instant::now();
        let mut t: Throttle<u32> = Throttle::new(p);
        for k in 0..10u32 {
            t.fail(t0 + s(u64::from(k)), &k);
        }
        assert_eq!(t.len(), 3);
        assert_eq!(t.failures(&9), 1);
        assert_eq!(t.failures(&0), 0);
    }
}
