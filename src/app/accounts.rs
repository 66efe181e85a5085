//! The stored accounts, applied to the running call centre: at start, and again whenever they
//! change — through the admin API on this node, on another node (announced through Redis), or
//! found at the periodic resync (a node that missed an announcement catches up from the
//! database).
//!
//! *Owns*: reading the accounts (with the configuration's `default` account when none is
//! stored, and the sandbox's demo people), and sending each owner its share: people to
//! sign-in, queues, numbers and timings to the call machines, access tokens to the Graph
//! clients, the queue rule to placement, the roster to `/ws`.
//!
//! *Does not touch*: what makes an account valid (`accounts`), how each owner applies its
//! share.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tracing::{info, warn};

use crate::accounts::{Account, PersonDef, Roster, SealKey, DEFAULT_ACCOUNT};
use crate::calls::actor::CallsHandle;
use crate::calls::{GraphClients, Reconfigure};
use crate::config::Secret;
use crate::ids::{AgentId, QueueId};
use crate::routing::QueueRule;
use crate::signaling::auth::AuthHandle;
use crate::store::{StoreError, StoreHandle};
use crate::whatsapp::graph::GraphClient;

/// How often the accounts are read again without being told of a change: the bound on how
/// long a node that missed an announcement (Redis down at that moment) stays behind.
const RESYNC: Duration = Duration::from_secs(30);

/// Where the Graph API is, and the main number and token the configuration gives.
pub(super) struct GraphSetup {
    /// Graph's base URL.
    pub url: String,
    /// Its version (`v23.0`).
    pub version: String,
    /// The configured business number (it has a client of its own).
    pub main_number: String,
    /// The configuration's (or the sandbox's) access token: the `default` account's.
    pub token: Option<Secret>,
}

/// Where the accounts come from.
pub(super) struct Source {
    /// The database.
    pub store: StoreHandle,
    /// The `default` account as the configuration describes it: served when the database has
    /// none (a file the accounts' rules refuse is still served, as before accounts).
    pub fallback: Account,
    /// The sandbox's demo people of this run, added to the `default` account (never stored).
    pub demo: Vec<PersonDef>,
    /// Opens the accounts' access tokens.
    pub seal: Option<SealKey>,
    /// Where their Graph clients point.
    pub graph: GraphSetup,
}

impl Source {
    /// Every account now.
    pub(super) async fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        let mut accounts = self.store.accounts().await?;
        let i = match accounts
            .iter()
            .position(|a| a.slug.as_str() == DEFAULT_ACCOUNT)
        {
            Some(i) => i,
            None => {
                accounts.insert(0, self.fallback.clone());
                0
            }
        };
        accounts[i].people.extend(self.demo.iter().cloned());
        Ok(accounts)
    }

    /// A Graph client for each business number of `accounts` but the main one (which has its
    /// own), with its account's access token. A number whose account has no token it can use
    /// gets none: its calls are not answered (and said so).
    pub(super) fn graph_clients(&self, accounts: &[Account]) -> HashMap<String, GraphClient> {
        let mut clients = HashMap::new();
        for a in accounts {
            let token = if a.slug.as_str() == DEFAULT_ACCOUNT {
                self.graph.token.clone()
            } else {
                match (&a.access_token, &self.seal) {
                    (Some(sealed), Some(key)) => match key.open(&a.slug, sealed) {
                        Ok(t) => Some(t),
                        Err(e) => {
                            warn!(account = %a.slug, error = %e, "the account's access token does not open with SWITCHBOARD_SECRETS_KEY; its calls are not answered");
                            None
                        }
                    },
                    _ => None,
                }
            };
            let numbers = a
                .numbers
                .iter()
                .filter(|n| n.phone_number_id != self.graph.main_number);
            let Some(token) = token else {
                if !a.numbers.is_empty() && a.slug.as_str() != DEFAULT_ACCOUNT {
                    warn!(account = %a.slug, "the account has no access token; calls to its numbers are not answered");
                }
                continue;
            };
            for n in numbers {
                match GraphClient::new(
                    &self.graph.url,
                    &self.graph.version,
                    &n.phone_number_id,
                    token.clone(),
                ) {
                    Ok(c) => {
                        clients.insert(n.phone_number_id.clone(), c);
                    }
                    Err(e) => {
                        warn!(account = %a.slug, number = %n.phone_number_id, error = %e, "no Graph client for the number");
                    }
                }
            }
        }
        clients
    }
}

/// What the call machines are told of a roster.
pub(super) fn reconfigure(roster: &Roster) -> Reconfigure {
    Reconfigure {
        queues: roster.queues.clone(),
        default_queue: roster.default_queue.clone(),
        numbers: roster.numbers.clone(),
        times: roster.times.clone(),
        agent_queues: roster
            .people
            .iter()
            .map(|p| {
                let queues = p.queues.iter().map(|q| QueueId(q.clone())).collect();
                (AgentId(p.id.0.clone()), queues)
            })
            .collect(),
        hold_audio: roster.hold_audio.clone(),
        callback_queues: roster.callback_queues.clone(),
    }
}

/// The owners a change of accounts reaches.
pub(super) struct Live {
    /// Where the accounts come from.
    pub source: Source,
    /// Sign-in.
    pub auth: AuthHandle,
    /// The call machines.
    pub calls: CallsHandle,
    /// The Graph clients of every number.
    pub graph: Arc<GraphClients>,
    /// What `/ws` reads.
    pub roster: watch::Sender<Arc<Roster>>,
    /// What placement (several nodes) reads.
    pub rule: watch::Sender<Arc<QueueRule>>,
    /// The accounts last applied.
    pub applied: Vec<Account>,
    /// How many changes were announced here ([`crate::http::admin::AccountsChanged`]).
    pub changes: crate::http::admin::AccountsChanged,
    /// How many of them are applied.
    pub done: watch::Sender<u64>,
    /// Where call events go.
    pub targets: watch::Sender<Arc<crate::events::Targets>>,
}

impl Live {
    /// Sends every owner its share of `accounts`, unless nothing changed since the last time.
    async fn apply(&mut self, accounts: Vec<Account>) {
        if accounts == self.applied {
            return;
        }
        let roster = Roster::new(&accounts);
        self.graph.set_others(self.source.graph_clients(&accounts));
        self.rule.send_replace(Arc::new(QueueRule {
            numbers: roster.numbers.clone(),
            default: roster.default_queue.clone(),
            ours: self.source.graph.main_number.clone(),
        }));
        self.calls.reconfigure(reconfigure(&roster)).await;
        let ended = self.auth.set_people(roster.people.clone()).await;
        info!(
            accounts = accounts.len(),
            people = roster.people.len(),
            signed_out = ended.len(),
            "accounts applied"
        );
        self.roster.send_replace(Arc::new(roster));
        self.targets
            .send_replace(Arc::new(crate::events::Targets::of(
                &accounts,
                self.source.seal.as_ref(),
            )));
        self.applied = accounts;
    }
}

/// Applies the accounts each time `changes` is notified, and every [`RESYNC`], until the task
/// is cancelled.
pub(super) async fn follow(mut live: Live, changes: Arc<Notify>) {
    let mut resync = tokio::time::interval(RESYNC);
    resync.reset();
    loop {
        tokio::select! {
            _ = changes.notified() => {}
            _ = resync.tick() => {}
        }
        // Every change announced before this read is in what it reads.
        let asked = live.changes.asked();
        match live.source.accounts().await {
            Ok(accounts) => {
                live.apply(accounts).await;
                live.done.send_replace(asked);
            }
            Err(e) => {
                warn!(error = %e, "reading the accounts failed; the last ones read stay applied")
            }
        }
    }
}

/// Disables event endpoint `endpoint` of account `slug`, saying `reason` (it failed for the
/// whole retry window), audited as switchboard's own change; made again on the newer account
/// when another change got in first. The caller tells the nodes.
pub(super) async fn disable_endpoint(
    store: &StoreHandle,
    slug: &str,
    endpoint: &str,
    reason: &str,
) -> Result<(), StoreError> {
    for _ in 0..5 {
        let Some(mut account) = store
            .accounts()
            .await?
            .into_iter()
            .find(|a| a.slug.as_str() == slug)
        else {
            return Err(StoreError::NoAccount(slug.to_owned()));
        };
        let Some(e) = account.endpoints.iter_mut().find(|e| e.id == endpoint) else {
            // Removed meanwhile: nothing to disable.
            return Ok(());
        };
        if !e.enabled {
            return Ok(());
        }
        e.enabled = false;
        e.disabled_reason = Some(reason.to_owned());
        let entry = crate::accounts::AuditEntry {
            id: 0,
            at: crate::store::unix_ms(std::time::SystemTime::now()),
            actor: "switchboard".into(),
            action: "endpoint.disable".into(),
            target: endpoint.to_owned(),
            before: Some(serde_json::json!({ "enabled": true })),
            after: Some(serde_json::json!({ "enabled": false, "disabled_reason": reason })),
        };
        match store.replace_account(account, entry).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Stale(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Stale(slug.to_owned()))
}
