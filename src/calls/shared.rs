//! Publishes this node's floor to the other nodes (with several, through `crate::cluster`):
//! which of its agents are available and since when, how many are signed in to each queue, and
//! which calls wait in its queues and since when.
//! The call machines stay the single owner of their agents' presence; this task only mirrors
//! what they publish, so that another node's webhook can choose the longest-idle agent across
//! the cluster and hand the call to this node.
//!
//! *Does not touch*: calls, media, sessions. A draining node withdraws every agent: it takes
//! no new calls.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tracing::{debug, warn};

use super::actor::FloorView;
use crate::cluster::{Cluster, ClusterError, Idle};
use crate::ids::{AgentId, QueueId, WaCallId};
use crate::routing::Presence;

/// Mirrors `floor` into the cluster until the floor's sender is gone. Every `every` it
/// re-publishes all available agents (one not taken for a call in time comes back; one lost
/// to a Redis outage too).
pub async fn share_floor(
    cluster: Cluster,
    mut floor: watch::Receiver<Arc<FloorView>>,
    draining: Arc<AtomicBool>,
    every: Duration,
) {
    let mut published: HashMap<AgentId, (Instant, Vec<QueueId>)> = HashMap::new();
    let mut staffed: HashMap<QueueId, usize> = HashMap::new();
    let mut waiting: HashMap<WaCallId, (QueueId, Instant)> = HashMap::new();
    let mut resync = tokio::time::interval(every);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        let full = tokio::select! {
            changed = floor.changed() => {
                if changed.is_err() {
                    break;
                }
                false
            }
            _ = resync.tick() => true,
        };
        let view = floor.borrow_and_update().clone();
        let (want, counts) = wanted(&view, draining.load(Ordering::Relaxed));
        let result = publish(&cluster, &mut published, &want, full).await;
        let result = match result {
            Ok(()) => publish_staffed(&cluster, &mut staffed, counts).await,
            e => e,
        };
        let result = match result {
            Ok(()) => publish_waiting(&cluster, &mut waiting, &view, full).await,
            e => e,
        };
        match result {
            Ok(()) if failing => {
                failing = false;
                debug!("agents' availability shared again");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                warn!(error = %e, "agents' availability not shared with the other nodes");
            }
            Err(_) => {}
        }
    }
}

type Wanted = (
    HashMap<AgentId, (Instant, Vec<QueueId>)>,
    HashMap<QueueId, usize>,
);

/// The agents to publish as available, and the count signed in per queue.
fn wanted(view: &FloorView, draining: bool) -> Wanted {
    let mut want = HashMap::new();
    let mut counts: HashMap<QueueId, usize> = HashMap::new();
    if draining {
        return (want, counts);
    }
    for a in &view.agents {
        if a.presence == Presence::Offline {
            continue;
        }
        for q in &a.queues {
            *counts.entry(q.clone()).or_default() += 1;
        }
        if a.presence == Presence::Available {
            want.insert(a.id.clone(), (a.idle_since, a.queues.clone()));
        }
    }
    (want, counts)
}

async fn publish(
    cluster: &Cluster,
    published: &mut HashMap<AgentId, (Instant, Vec<QueueId>)>,
    want: &HashMap<AgentId, (Instant, Vec<QueueId>)>,
    full: bool,
) -> Result<(), ClusterError> {
    let gone: Vec<AgentId> = published
        .keys()
        .filter(|id| !want.contains_key(*id))
        .cloned()
        .collect();
    for id in gone {
        cluster.withdraw_agent(&id.0).await?;
        published.remove(&id);
    }
    for (id, entry) in want {
        let fresh = published.get(id) != Some(entry);
        if !fresh && !full {
            continue;
        }
        let idle = Idle {
            agent: id.0.clone(),
            since_ms: wall_ms(entry.0),
            queues: entry.1.iter().map(|q| q.0.clone()).collect(),
        };
        cluster.offer_agent(&idle, fresh).await?;
        published.insert(id.clone(), entry.clone());
    }
    Ok(())
}

/// Mirrors the calls waiting here (a draining node's too: they still need an agent).
async fn publish_waiting(
    cluster: &Cluster,
    published: &mut HashMap<WaCallId, (QueueId, Instant)>,
    view: &FloorView,
    full: bool,
) -> Result<(), ClusterError> {
    let want: HashMap<WaCallId, (QueueId, Instant)> = view
        .queues
        .iter()
        .flat_map(|(q, ws)| {
            ws.iter()
                .map(move |w| (w.call.clone(), (q.clone(), w.since)))
        })
        .collect();
    let gone: Vec<(WaCallId, QueueId)> = published
        .iter()
        .filter(|(call, _)| !want.contains_key(*call))
        .map(|(call, (q, _))| (call.clone(), q.clone()))
        .collect();
    for (call, queue) in gone {
        cluster.withdraw_waiting(&queue.0, &call).await?;
        published.remove(&call);
    }
    for (call, entry) in &want {
        if published.get(call) == Some(entry) && !full {
            continue;
        }
        cluster
            .offer_waiting(&entry.0 .0, call, wall_ms(entry.1))
            .await?;
        published.insert(call.clone(), entry.clone());
    }
    Ok(())
}

async fn publish_staffed(
    cluster: &Cluster,
    staffed: &mut HashMap<QueueId, usize>,
    counts: HashMap<QueueId, usize>,
) -> Result<(), ClusterError> {
    let queues: Vec<QueueId> = staffed.keys().chain(counts.keys()).cloned().collect();
    for q in queues {
        let n = counts.get(&q).copied().unwrap_or(0);
        if staffed.get(&q).copied().unwrap_or(0) != n {
            cluster.set_staffed(&q.0, n).await?;
            if n == 0 {
                staffed.remove(&q);
            } else {
                staffed.insert(q, n);
            }
        }
    }
    Ok(())
}

/// `at` on the wall clock, in UNIX milliseconds: nodes share no monotonic clock.
fn wall_ms(at: Instant) -> u64 {
    let ago = Instant::now().saturating_duration_since(at);
    SystemTime::now()
        .checked_sub(ago)
        .unwrap_or(UNIX_EPOCH)
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::Agent;

    fn agent(id: &str, presence: Presence, idle_since: Instant) -> Agent {
        Agent {
            id: AgentId(id.into()),
            queues: vec![QueueId("support".into())],
            presence,
            idle_since,
            resume: Presence::Available,
        }
    }

    #[test]
    fn only_available_agents_are_offered_and_a_draining_node_offers_none() {
        let now = Instant::now();
        let view = FloorView {
            agents: vec![
                agent("a", Presence::Available, now),
                agent(
                    "b",
                    Presence::Away {
                        reason: crate::routing::AwayReason::Chosen("lunch".into()),
                    },
                    now,
                ),
                agent("c", Presence::Offline, now),
            ],
            ..FloorView::default()
        };
        let (want, counts) = wanted(&view, false);
        assert_eq!(want.keys().collect::<Vec<_>>(), vec![&AgentId("a".into())]);
        assert_eq!(counts.get(&QueueId("support".into())), Some(&2));
        let (want, counts) = wanted(&view, true);
        assert!(want.is_empty() && counts.is_empty());
    }

    #[test]
    fn idle_since_becomes_wall_clock_milliseconds_in_order() {
        let now = Instant::now();
        let earlier = wall_ms(now - Duration::from_secs(5));
        let later = wall_ms(now);
        assert!(earlier + 4_000 < later && later <= earlier + 6_000);
    }
}
