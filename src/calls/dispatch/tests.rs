//! The routing drivers on simulated time (`start_paused`), against an in-memory authority that
//! keeps the same shared order Redis keeps: what reaches the call machines, what is handed to
//! which node, in which order, and that a change elsewhere is acted on without waiting for
//! the resync.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::{watch, Notify};

use super::*;
use crate::calls::fakes::{offered, terminated};
use crate::routing::{AuthorityError, Waiting};

const HERE: &str = "node-a";
const THERE: &str = "node-b";

/// The nodes' shared order in memory: idle agents per queue (longest idle first), waiting calls
/// per queue (oldest first, with their node), owners, and what was handed where.
#[derive(Default)]
struct Shared {
    idle: BTreeMap<String, Vec<(AgentId, String)>>,
    waiting: BTreeMap<String, Vec<(WaCallId, String)>>,
    owners: HashMap<WaCallId, String>,
    handed: Vec<(String, WaEvent)>,
    given_back: Vec<AgentId>,
    /// Hand-overs to these nodes fail.
    unreachable: Vec<String>,
    /// Every call fails (Redis down).
    down: bool,
    /// Placing a call of this id takes this long (a slow round trip).
    slow: HashMap<WaCallId, Duration>,
    most_staffed: Option<String>,
}

#[derive(Clone)]
struct Fake {
    node: &'static str,
    shared: Arc<Mutex<Shared>>,
    changes: Arc<Notify>,
}

impl Fake {
    fn new(node: &'static str) -> Fake {
        Fake {
            node,
            shared: Arc::default(),
            changes: Arc::new(Notify::new()),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Shared) -> T) -> T {
        f(&mut self.shared.lock().expect("no test panics holding it"))
    }

    fn check(&self) -> Result<(), AuthorityError> {
        if self.with(|s| s.down) {
            Err(AuthorityError::Unavailable("down".into()))
        } else {
            Ok(())
        }
    }

    /// An agent of `node` becomes available, announced as Redis would.
    fn free(&self, queue: &str, agent: &str, node: &str) {
        self.with(|s| {
            s.idle
                .entry(queue.into())
                .or_default()
                .push((AgentId(agent.into()), node.into()))
        });
        self.changes.notify_one();
    }

    fn wait(&self, queue: &str, call: &str, node: &str) {
        self.with(|s| {
            s.waiting
                .entry(queue.into())
                .or_default()
                .push((WaCallId(call.into()), node.into()))
        });
    }
}

impl Authority for Fake {
    fn node(&self) -> &str {
        self.node
    }

    async fn place(&self, queue: &QueueId) -> Result<Placement, AuthorityError> {
        self.check()?;
        let claimed = self.with(|s| {
            let nobody_waits = s.waiting.get(&queue.0).is_none_or(Vec::is_empty);
            let idle = s.idle.entry(queue.0.clone()).or_default();
            (nobody_waits && !idle.is_empty()).then(|| idle.remove(0))
        });
        Ok(match claimed {
            Some((agent, node)) if node == self.node => Placement::Here { agent: Some(agent) },
            Some((agent, node)) => Placement::Elsewhere {
                node: addr(&node),
                agent: Some(agent),
            },
            None => match self.with(|s| s.most_staffed.clone()) {
                Some(node) if node != self.node => Placement::Elsewhere {
                    node: addr(&node),
                    agent: None,
                },
                _ => Placement::Here { agent: None },
            },
        })
    }

    async fn owner(&self, call: &WaCallId) -> Result<Option<NodeAddr>, AuthorityError> {
        self.check()?;
        Ok(self
            .with(|s| s.owners.get(call).cloned())
            .filter(|n| n != self.node)
            .map(|n| addr(&n)))
    }

    async fn own(&self, call: &WaCallId) -> Result<(), AuthorityError> {
        self.check()?;
        self.with(|s| s.owners.insert(call.clone(), self.node.into()));
        Ok(())
    }

    async fn hand_event<E: serde::Serialize + Sync>(
        &self,
        node: &NodeAddr,
        event: &E,
    ) -> Result<(), AuthorityError> {
        // What goes over the wire, read back as the receiving node would.
        let event: WaEvent = serde_json::to_value(event)
            .and_then(serde_json::from_value)
            .map_err(|e| AuthorityError::NodeRefused {
                node: node.name.clone(),
                reason: e.to_string(),
            })?;
        let slow = self.with(|s| s.slow.get(event.call_id()).copied());
        if let Some(d) = slow {
            tokio::time::sleep(d).await;
        }
        self.with(|s| {
            if s.unreachable.contains(&node.name) {
                return Err(AuthorityError::NodeRefused {
                    node: node.name.clone(),
                    reason: "unreachable".into(),
                });
            }
            s.handed.push((node.name.clone(), event));
            Ok(())
        })
    }

    async fn turn(&self, queue: &QueueId, call: &WaCallId) -> Result<Turn, AuthorityError> {
        self.check()?;
        Ok(self.with(|s| {
            let waiting = s.waiting.entry(queue.0.clone()).or_default();
            if let Some((oldest, node)) = waiting.first() {
                if oldest != call {
                    return Turn::Older {
                        call: oldest.clone(),
                        node: node.clone(),
                    };
                }
            }
            let idle = s.idle.entry(queue.0.clone()).or_default();
            if idle.is_empty() {
                return Turn::NoAgent;
            }
            let (agent, node) = idle.remove(0);
            let waiting = s.waiting.entry(queue.0.clone()).or_default();
            waiting.retain(|(c, _)| c != call);
            Turn::Agent { agent, node }
        }))
    }

    async fn withdraw_waiting(
        &self,
        queue: &QueueId,
        call: &WaCallId,
    ) -> Result<(), AuthorityError> {
        self.check()?;
        self.with(|s| {
            if let Some(w) = s.waiting.get_mut(&queue.0) {
                w.retain(|(c, _)| c != call);
            }
        });
        Ok(())
    }

    async fn give_back(&self, agent: &AgentId) -> Result<(), AuthorityError> {
        self.with(|s| s.given_back.push(agent.clone()));
        Ok(())
    }

    async fn address(&self, node: &str) -> Result<Option<NodeAddr>, AuthorityError> {
        self.check()?;
        Ok(Some(addr(node)))
    }

    async fn healthy(&self) -> bool {
        self.check().is_ok()
    }

    async fn changed(&self) {
        self.changes.notified().await;
    }
}

fn addr(node: &str) -> NodeAddr {
    NodeAddr {
        name: node.into(),
        url: format!("http://{node}"),
    }
}

fn rule() -> watch::Receiver<Arc<QueueRule>> {
    watch::channel(Arc::new(QueueRule {
        numbers: HashMap::new(),
        default: QueueId("support".into()),
        ours: "100".into(),
    }))
    .1
}

/// Runs placement with `fake`; the channels to feed it and what reaches the call machines.
fn placing(
    fake: &Fake,
) -> (
    mpsc::Sender<WaEvent>,
    mpsc::Sender<Handed>,
    mpsc::Receiver<WaEvent>,
    tokio::task::JoinHandle<()>,
) {
    let (meta_tx, meta_rx) = mpsc::channel(16);
    let (handed_tx, handed_rx) = mpsc::channel(16);
    let (calls_tx, calls_rx) = mpsc::channel(16);
    let task = tokio::spawn(place_events(
        fake.clone(),
        rule(),
        meta_rx,
        handed_rx,
        calls_tx,
        Duration::from_secs(3600),
    ));
    (meta_tx, handed_tx, calls_rx, task)
}

fn agent_of(event: &WaEvent) -> Option<String> {
    match event {
        WaEvent::CallOffered { agent, .. } => agent.clone(),
        _ => None,
    }
}

#[tokio::test(start_paused = true)]
async fn a_new_call_goes_to_the_node_of_the_agent_claimed_for_it() {
    let fake = Fake::new(HERE);
    fake.free("support", "bob", THERE);
    fake.free("support", "ann", HERE);
    let (meta, _handed, mut calls, task) = placing(&fake);
    meta.send(offered("c1")).await.expect("placement runs");
    meta.send(offered("c2")).await.expect("placement runs");
    drop(meta);
    drop(_handed);
    // c1 took the longest-idle agent (bob, on the other node); c2 the next (ann, here).
    let here = calls.recv().await.expect("c2 stays here");
    assert_eq!(here.call_id().0, "c2");
    assert_eq!(agent_of(&here).as_deref(), Some("ann"));
    task.await.expect("placement ends when its inputs close");
    assert!(calls.recv().await.is_none(), "nothing else stays here");
    let handed = fake.with(|s| s.handed.clone());
    assert_eq!(handed.len(), 1);
    assert_eq!(handed[0].0, THERE);
    assert_eq!(agent_of(&handed[0].1).as_deref(), Some("bob"));
    // The call handled here is recorded as this node's; the one handed over is not.
    assert_eq!(
        fake.with(|s| s.owners.get(&WaCallId("c2".into())).cloned()),
        Some(HERE.into())
    );
    assert!(fake.with(|s| !s.owners.contains_key(&WaCallId("c1".into()))));
}

#[tokio::test(start_paused = true)]
async fn a_hand_over_that_fails_leaves_the_call_here_and_gives_the_agent_back() {
    let fake = Fake::new(HERE);
    fake.free("support", "bob", THERE);
    fake.with(|s| s.unreachable.push(THERE.into()));
    let (meta, _handed, mut calls, _task) = placing(&fake);
    meta.send(offered("c1")).await.expect("placement runs");
    let here = calls.recv().await.expect("c1 stays here");
    assert_eq!(here.call_id().0, "c1");
    // Not rung here: bob is another node's agent, next in line again.
    assert_eq!(agent_of(&here), None);
    assert_eq!(
        fake.with(|s| s.given_back.clone()),
        vec![AgentId("bob".into())]
    );
}

#[tokio::test(start_paused = true)]
async fn with_the_shared_state_down_every_event_is_handled_here() {
    let fake = Fake::new(HERE);
    fake.free("support", "bob", THERE);
    fake.with(|s| s.down = true);
    let (meta, _handed, mut calls, _task) = placing(&fake);
    meta.send(offered("c1")).await.expect("placement runs");
    meta.send(terminated("c0")).await.expect("placement runs");
    let mut got = [
        calls.recv().await.expect("one"),
        calls.recv().await.expect("two"),
    ];
    got.sort_by(|a, b| a.call_id().0.cmp(&b.call_id().0));
    assert_eq!(got[0].call_id().0, "c0");
    assert_eq!(got[1].call_id().0, "c1");
    assert!(fake.with(|s| s.handed.is_empty()));
}

#[tokio::test(start_paused = true)]
async fn events_of_one_call_keep_their_order_while_other_calls_pass() {
    let fake = Fake::new(HERE);
    // c1's connect goes to the other node, slowly; its terminate follows it there, after it.
    fake.free("support", "bob", THERE);
    fake.with(|s| {
        s.slow
            .insert(WaCallId("c1".into()), Duration::from_millis(500))
    });
    let (meta, _handed, mut calls, _task) = placing(&fake);
    meta.send(offered("c1")).await.expect("placement runs");
    meta.send(terminated("c1")).await.expect("placement runs");
    meta.send(offered("c2")).await.expect("placement runs");
    let started = tokio::time::Instant::now();
    // c2 (nobody free: here) is not held up behind c1's slow hand-over.
    let first = calls.recv().await.expect("c2 here");
    assert_eq!(first.call_id().0, "c2");
    assert!(started.elapsed() < Duration::from_millis(500));
    // c1's terminate goes where its connect went: its owner is the other node now.
    fake.with(|s| s.owners.insert(WaCallId("c1".into()), THERE.into()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let handed: Vec<(String, String, bool)> = fake.with(|s| {
        s.handed
            .iter()
            .map(|(n, e)| {
                (
                    n.clone(),
                    e.call_id().0.clone(),
                    matches!(e, WaEvent::CallOffered { .. }),
                )
            })
            .collect()
    });
    assert_eq!(
        handed,
        vec![
            (THERE.into(), "c1".into(), true),
            (THERE.into(), "c1".into(), false)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_handed_over_event_stays_here_once_and_its_call_is_owned_here() {
    let fake = Fake::new(HERE);
    // Even with an agent free elsewhere, another node's decision stands.
    fake.free("support", "bob", THERE);
    let (_meta, handed, mut calls, _task) = placing(&fake);
    let at = Instant::now();
    let mut event = offered("c1");
    if let WaEvent::CallOffered { agent, .. } = &mut event {
        *agent = Some("ann".into());
    }
    handed
        .send(Handed(Box::new(event.clone()), at))
        .await
        .expect("placement runs");
    handed
        .send(Handed(Box::new(event), at))
        .await
        .expect("placement runs");
    handed
        .send(Handed(Box::new(terminated("c1")), at))
        .await
        .expect("placement runs");
    let first = calls.recv().await.expect("the connect");
    assert_eq!(agent_of(&first).as_deref(), Some("ann"));
    let WaEvent::CallOffered { received_at, .. } = first else {
        panic!("a connect first");
    };
    assert!(
        received_at.is_some(),
        "set-up latency runs from the hand-over"
    );
    // The same hand-over twice is dropped: the next is the terminate.
    let second = calls.recv().await.expect("the terminate");
    assert!(matches!(second, WaEvent::CallTerminated { .. }));
    assert!(fake.with(|s| s.handed.is_empty()));
    assert_eq!(
        fake.with(|s| s.owners.get(&WaCallId("c1".into())).cloned()),
        Some(HERE.into())
    );
}

/// What the fake calls actor was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Asked {
    Dispatch(String, String),
    HandOff(String, String, String),
    Share(bool),
}

#[derive(Clone)]
struct FakeCalls(mpsc::UnboundedSender<Asked>);

impl WaitingCalls for FakeCalls {
    async fn dispatch(&self, call: WaCallId, agent: AgentId) -> bool {
        let _ = self.0.send(Asked::Dispatch(call.0, agent.0));
        true
    }

    async fn hand_off(&self, call: WaCallId, agent: AgentId, node: NodeAddr) -> bool {
        let _ = self.0.send(Asked::HandOff(call.0, agent.0, node.name));
        true
    }

    async fn share_queues(&self, on: bool) {
        let _ = self.0.send(Asked::Share(on));
    }
}

fn view(waiting: &[&str]) -> Arc<FloorView> {
    let since = Instant::now();
    Arc::new(FloorView {
        queues: vec![(
            QueueId("support".into()),
            waiting
                .iter()
                .map(|c| Waiting {
                    call: WaCallId((*c).into()),
                    since,
                })
                .collect(),
        )],
        ..FloorView::default()
    })
}

/// The resync is an hour: anything that happens sooner was woken by a change.
const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(start_paused = true)]
async fn an_agent_freed_on_another_node_takes_a_waiting_call_without_waiting_for_a_poll() {
    let fake = Fake::new(HERE);
    fake.wait("support", "c1", HERE);
    let (floor_tx, floor_rx) = watch::channel(view(&["c1"]));
    let (tx, mut asked) = mpsc::unbounded_channel();
    let _task = tokio::spawn(serve_waiting(fake.clone(), FakeCalls(tx), floor_rx, HOUR));
    // The first round finds nobody free, and says the order is shared.
    assert_eq!(asked.recv().await, Some(Asked::Share(true)));
    let started = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    fake.free("support", "bob", THERE);
    assert_eq!(
        asked.recv().await,
        Some(Asked::HandOff("c1".into(), "bob".into(), THERE.into()))
    );
    assert!(
        started.elapsed() < HOUR,
        "served at the announcement, not at the resync"
    );
    drop(floor_tx);
}

#[tokio::test(start_paused = true)]
async fn an_older_call_on_another_node_goes_first_then_ours_at_the_next_change() {
    let fake = Fake::new(HERE);
    fake.wait("support", "older", THERE);
    fake.wait("support", "c1", HERE);
    fake.free("support", "ann", HERE);
    let (floor_tx, floor_rx) = watch::channel(view(&["c1"]));
    let (tx, mut asked) = mpsc::unbounded_channel();
    let _task = tokio::spawn(serve_waiting(fake.clone(), FakeCalls(tx), floor_rx, HOUR));
    assert_eq!(asked.recv().await, Some(Asked::Share(true)));
    // The other node serves its older call with ann, then another agent comes free here.
    fake.with(|s| {
        s.waiting.get_mut("support").expect("queue").remove(0);
        s.idle.get_mut("support").expect("queue").clear();
    });
    fake.free("support", "carl", HERE);
    assert_eq!(
        asked.recv().await,
        Some(Asked::Dispatch("c1".into(), "carl".into()))
    );
    drop(floor_tx);
}

#[tokio::test(start_paused = true)]
async fn while_the_shared_state_is_down_the_call_machines_serve_their_own_calls() {
    let fake = Fake::new(HERE);
    fake.wait("support", "c1", HERE);
    let (floor_tx, floor_rx) = watch::channel(view(&["c1"]));
    let (tx, mut asked) = mpsc::unbounded_channel();
    let _task = tokio::spawn(serve_waiting(
        fake.clone(),
        FakeCalls(tx),
        floor_rx,
        Duration::from_secs(1),
    ));
    assert_eq!(asked.recv().await, Some(Asked::Share(true)));
    fake.with(|s| s.down = true);
    // Noticed at the next round (here the resync; any floor change would do).
    assert_eq!(asked.recv().await, Some(Asked::Share(false)));
    fake.with(|s| s.down = false);
    fake.free("support", "ann", HERE);
    let mut next = [
        asked.recv().await.expect("one"),
        asked.recv().await.expect("two"),
    ];
    next.sort_by_key(|a| format!("{a:?}"));
    assert_eq!(
        next,
        [
            Asked::Dispatch("c1".into(), "ann".into()),
            Asked::Share(true)
        ]
    );
    drop(floor_tx);
}
