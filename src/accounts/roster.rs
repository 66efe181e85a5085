//! The running call centre's view of every account: one floor serves them all, and each id it
//! holds says whose it is.
//!
//! An account other than `default` has its ids qualified with its slug after an `@`, as an
//! e-mail address is: the person `alice` of `acme` signs in as `alice@acme`, and its queue
//! `support` is `support@acme` on the floor, on the WebSocket and in call records. The
//! `default` account's ids stay as they are, so today's deployments see no change. Person ids
//! and queue ids cannot hold `@` ([`super::Account::validate`]), so a qualified id names one
//! account and one id in it, and two accounts' ids never meet: a call to one account's number
//! waits in that account's queue, and only that account's people serve it.

use std::collections::HashMap;
use std::time::Duration;

use super::{Account, QueueDef, DEFAULT_ACCOUNT};
use crate::config::Person;
use crate::ids::{AgentId, QueueId};
use crate::routing::QueueConfig;

/// The account an id (a person's, a queue's) belongs to.
pub fn account_of(id: &str) -> &str {
    id.rsplit_once('@')
        .map_or(DEFAULT_ACCOUNT, |(_, slug)| slug)
}

/// True when two ids (people, queues, in any mix) belong to the same account.
pub fn same_account(a: &str, b: &str) -> bool {
    account_of(a) == account_of(b)
}

/// `id` of account `slug` as the floor knows it.
pub fn qualify(slug: &str, id: &str) -> String {
    if slug == DEFAULT_ACCOUNT {
        id.to_owned()
    } else {
        format!("{id}@{slug}")
    }
}

/// An account's call timings, as the call machines use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallTimes {
    /// An agent who does not answer within this is skipped (and set away).
    pub ring_timeout: Duration,
    /// After a call, the agent's wrap-up time.
    pub wrap_up: Duration,
    /// An agent whose session or media drops mid-call has this long to come back.
    pub grace: Duration,
    /// A call not accepted this long after Meta offered it is queued or declined.
    pub answer_deadline: Duration,
}

impl From<super::CallSettings> for CallTimes {
    fn from(s: super::CallSettings) -> CallTimes {
        CallTimes {
            ring_timeout: Duration::from_millis(s.ring_timeout_ms),
            wrap_up: Duration::from_millis(s.wrap_up_ms),
            grace: Duration::from_millis(s.grace_ms),
            answer_deadline: Duration::from_millis(s.answer_deadline_ms),
        }
    }
}

/// Every account's queues, numbers, people, away reasons and timings, with qualified ids:
/// what the floor, sign-in and the call machines are built from.
#[derive(Debug, Clone, Default)]
pub struct Roster {
    /// Every queue of every account.
    pub queues: Vec<QueueConfig>,
    /// Where a call to a number no account has goes: the `default` account's default queue.
    pub default_queue: QueueId,
    /// Every account's numbers, each to its queue.
    pub numbers: HashMap<String, QueueId>,
    /// Each number's account.
    pub number_accounts: HashMap<String, String>,
    /// Everyone who may sign in (disabled people are left out).
    pub people: Vec<Person>,
    /// Each account's away reasons, by slug.
    pub away_reasons: HashMap<String, Vec<String>>,
    /// Each account's call timings, by slug.
    pub times: HashMap<String, CallTimes>,
    /// The hold audio of each account that has its own, by slug.
    pub hold_audio: HashMap<String, crate::media::HoldAudio>,
    /// Each account's allowed origins, by slug.
    pub origins: HashMap<String, Vec<String>>,
    /// The queues whose lost callers become call-back tasks.
    pub callback_queues: std::collections::HashSet<QueueId>,
}

impl Roster {
    /// The roster of `accounts` (which should include `default`: without it, calls to
    /// unknown numbers go to the first account's default queue).
    pub fn new(accounts: &[Account]) -> Roster {
        let mut roster = Roster::default();
        let main = accounts
            .iter()
            .find(|a| a.slug.as_str() == DEFAULT_ACCOUNT)
            .or(accounts.first());
        if let Some(a) = main {
            roster.default_queue = QueueId(qualify(a.slug.as_str(), &a.default_queue));
        }
        for a in accounts {
            let slug = a.slug.as_str();
            let q = |id: &str| QueueId(qualify(slug, id));
            roster.queues.extend(
                a.queues
                    .iter()
                    .map(|QueueDef { id, policy, .. }| QueueConfig {
                        id: q(id),
                        policy: (*policy).into(),
                    }),
            );
            roster
                .callback_queues
                .extend(a.queues.iter().filter(|d| d.callbacks).map(|d| q(&d.id)));
            for n in &a.numbers {
                let queue = q(n.queue.as_deref().unwrap_or(&a.default_queue));
                roster.numbers.insert(n.phone_number_id.clone(), queue);
                roster
                    .number_accounts
                    .insert(n.phone_number_id.clone(), slug.to_owned());
            }
            roster
                .people
                .extend(a.people.iter().filter(|p| !p.disabled).map(|p| Person {
                    id: AgentId(qualify(slug, &p.id.0)),
                    name: p.name.clone(),
                    role: p.role,
                    password_hash: p.password_hash.clone(),
                    queues: p.queues.iter().map(|id| qualify(slug, id)).collect(),
                }));
            roster
                .away_reasons
                .insert(slug.to_owned(), a.away_reasons.clone());
            roster.times.insert(slug.to_owned(), a.settings.into());
            if !a.allowed_origins.is_empty() {
                roster
                    .origins
                    .insert(slug.to_owned(), a.allowed_origins.clone());
            }
            // (Checked when stored: a file that does not read is left out, not fatal.)
            if let Some(Ok(packets)) = a.hold_audio.as_deref().map(super::hold_audio_packets) {
                let clip: Vec<std::sync::Arc<[u8]>> =
                    packets.into_iter().map(std::sync::Arc::from).collect();
                roster
                    .hold_audio
                    .insert(slug.to_owned(), crate::media::HoldAudio(clip.into()));
            }
        }
        roster
    }

    /// True when pages of `origin` may use the sessions of the account `id` belongs to.
    pub fn origin_allowed_for(&self, id: &str, origin: &str) -> bool {
        self.origins
            .get(account_of(id))
            .is_some_and(|o| o.iter().any(|a| a == origin))
    }

    /// True when some account allows pages of `origin` (a CORS preflight, which carries no
    /// credentials, is answered for them).
    pub fn origin_allowed_anywhere(&self, origin: &str) -> bool {
        self.origins.values().flatten().any(|a| a == origin)
    }

    /// The away reasons of the account `id` belongs to.
    pub fn away_reasons_of(&self, id: &str) -> &[String] {
        self.away_reasons
            .get(account_of(id))
            .map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::tests::account;

    #[test]
    fn ids_name_their_account() {
        assert_eq!(account_of("alice"), "default");
        assert_eq!(account_of("alice@acme"), "acme");
        assert_eq!(qualify("default", "alice"), "alice");
        assert_eq!(qualify("acme", "support"), "support@acme");
        assert!(same_account("alice@acme", "support@acme"));
        assert!(!same_account("alice", "support@acme"));
        assert!(!same_account("alice@acme", "alice@acme-2"));
    }

    #[test]
    fn two_accounts_share_a_floor_without_meeting() {
        let main = account("default", &["100", "101"]);
        let acme = account("acme", &["200", "201"]);
        let roster = Roster::new(&[main, acme]);
        // The same queue names, kept apart.
        let ids: Vec<&str> = roster.queues.iter().map(|q| q.id.0.as_str()).collect();
        assert_eq!(ids, ["support", "sales", "support@acme", "sales@acme"]);
        assert_eq!(roster.default_queue, QueueId("support".into()));
        assert_eq!(roster.numbers["100"], QueueId("sales".into()));
        assert_eq!(roster.numbers["101"], QueueId("support".into()));
        assert_eq!(roster.numbers["200"], QueueId("sales@acme".into()));
        assert_eq!(roster.numbers["201"], QueueId("support@acme".into()));
        assert_eq!(roster.number_accounts["201"], "acme");
        // The fixture's supervisor is disabled: only each account's agent may sign in.
        let people: Vec<(&str, Vec<String>)> = roster
            .people
            .iter()
            .map(|p| (p.id.0.as_str(), p.queues.clone()))
            .collect();
        assert_eq!(
            people,
            [
                ("alice", vec!["support".into(), "sales".into()]),
                (
                    "alice@acme",
                    vec!["support@acme".into(), "sales@acme".into()]
                ),
            ]
        );
        assert_eq!(roster.away_reasons_of("alice@acme"), ["Lunch", "Training"]);
        assert!(roster.away_reasons_of("x@nobody").is_empty());
        assert_eq!(
            roster.times["acme"].ring_timeout,
            Duration::from_millis(15_000)
        );
    }
}
