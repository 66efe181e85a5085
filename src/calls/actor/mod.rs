//! The driver of the call machines: one task owns the [`Centre`], feeds it what happens (Meta's
//! webhooks, media events, agents' sessions, the results of earlier actions, the time) and
//! carries out its [`Action`]s: media commands in order, offers concurrently, Graph calls
//! concurrently across calls but one at a time and in order within a call ([`GraphLines`]), their
//! results coming back as inputs; notices to sessions, records to the store.
//!
//! Nothing here decides anything; if logic worth testing grows here, it belongs in the centre.
//!
//! Where each part lives: this file holds the handle, the actor's loop and how it carries out
//! actions; `graph` each call's line of Graph actions; `records` the ordered line of record
//! writes and the calls a dead process left live; `handoff` the bridge that hands a waiting call
//! to another node.

use crate::clock::now;
use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn, Instrument};

use super::dispatch::{AdoptError, AdoptRequest, HandOver};
use super::event::{
    Action, AgentLeg, CallStep, CalleeStatus, Command, DialFailure, DialRefusal, Ended,
    GraphAction, HostEvent, Input, LegFailure, LegOf, Notice, Placed, Role, SetupStep, Task,
    TaskReason, TransferTarget, WaLeg,
};
use super::machine::{CallView, Centre, CentreConfig};
use super::ports::{GraphPort, MediaPort, Pending, RecordsPort};
use super::HandedCall;
use crate::events::{EventType, OutboxRow};
use crate::ids::{AgentId, LegId, QueueId, WaCallId};
#[cfg(doc)]
use crate::media::EngineHandle;
use crate::media::{LegOp, MediaError, MediaEvent};
use crate::routing::{Agent, Floor, Presence, Routing, Waiting};
use crate::store::{
    self, CallRecord, LegQuality, LegRole, LiveCall, PermissionRow, StoreHandle, Transition,
};
use crate::whatsapp::graph::{GraphClient, GraphError};
use crate::whatsapp::webhook::WaEvent;

mod graph;
mod handoff;
mod records;

use graph::{GraphJob, GraphLines};
use handoff::{bridge, handed_over, HandOffError};
pub use records::{end_leftovers, take_over};
use records::{Records, Write};

/// Messages queued to the actor before senders wait.
const INBOX: usize = 1024;
/// Notices queued to one session before it is considered stuck and notices are dropped.
const SESSION_QUEUE: usize = 256;
/// How often the floor is republished when only leg statistics changed.
const FLOOR_QUALITY_EVERY: Duration = Duration::from_secs(2);
/// How long shutdown waits for Meta to hear that every call ended.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A snapshot of the floor for supervisors.
#[derive(Debug, Clone, Default)]
pub struct FloorView {
    /// When it was taken.
    pub at: Option<Instant>,
    /// Live calls.
    pub calls: Vec<CallView>,
    /// Signed-in agents.
    pub agents: Vec<Agent>,
    /// Queues and their waiting calls.
    pub queues: Vec<(QueueId, Vec<Waiting>)>,
    /// The machines' counters.
    pub counters: super::CentreCounters,
    /// Each queue's service level so far.
    pub service: Vec<(QueueId, super::ServiceLevel)>,
}

/// Where a call can be transferred: the agents available now and the queues. Published apart
/// from the floor, and only when it changes, because every agent's session follows it (the
/// floor changes several times per call; the directory far less).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    /// Agents available now.
    pub available: Vec<AgentId>,
    /// Every queue.
    pub queues: Vec<QueueId>,
}

/// Why a call-back task was not taken up.
#[derive(Debug, thiserror::Error)]
pub enum TaskRefused {
    /// The actor has stopped.
    #[error("the call centre is not running")]
    Stopped,
    /// The customer has an open task in the account already: its id.
    #[error("this customer has an open call-back task already: {0}")]
    Duplicate(String),
}

/// Why a request to the calls actor failed.
#[derive(Debug, thiserror::Error)]
pub enum CallsError {
    /// The actor has stopped.
    #[error("the call centre is not running")]
    Stopped,
    /// The media engine refused the browser's offer.
    #[error("offer refused: {0}")]
    Offer(#[from] LegFailure),
    /// Draining: no call is taken over from another node.
    #[error("draining: no new calls")]
    Draining,
}

enum Msg {
    Input(Input),
    Join {
        agent: AgentId,
        role: Role,
        queues: Vec<QueueId>,
        session: u64,
        notices: mpsc::Sender<Notice>,
    },
    Offer {
        agent: AgentId,
        sdp: String,
        reply: oneshot::Sender<Result<String, CallsError>>,
    },
    Leave {
        agent: AgentId,
        session: u64,
        signed_out: bool,
    },
    /// Hand a waiting call to `node` (at `url`), which has a free agent for it; the reply
    /// says whether the call was waiting here and is on its way.
    HandOff {
        call: WaCallId,
        agent: AgentId,
        node: String,
        url: String,
        reply: oneshot::Sender<bool>,
    },
    /// Ring a free agent of this node for a waiting call (the shared order chose them); the
    /// reply says whether it rings.
    Dispatch {
        call: WaCallId,
        agent: AgentId,
        reply: oneshot::Sender<bool>,
    },
    /// Take up a waiting call another node hands over, answering its internal leg's offer.
    Adopt {
        call: Box<HandedCall>,
        offer: String,
        reply: oneshot::Sender<Result<String, CallsError>>,
    },
    /// Take up a call-back task the API scheduled, due at `due_at` (unix ms); the reply is
    /// the id of the customer's open task when they have one already.
    AddTask {
        task: Box<Task>,
        due_at: Option<i64>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Withdraw task `id`; the reply says whether it was open here.
    CancelTask {
        id: String,
        reply: oneshot::Sender<bool>,
    },
    Shutdown(oneshot::Sender<()>),
}

/// A cheap handle to the calls actor, for agents' sessions and the program.
#[derive(Clone, Debug)]
pub struct CallsHandle {
    tx: mpsc::Sender<Msg>,
    floor: watch::Receiver<Arc<FloorView>>,
    directory: watch::Receiver<Arc<Directory>>,
    health: watch::Receiver<bool>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

impl CallsHandle {
    /// A session opened: its id, and its notices on the returned receiver. A second session of
    /// the same person replaces the first (whose receiver closes).
    pub async fn join(
        &self,
        agent: AgentId,
        role: Role,
        queues: Vec<QueueId>,
    ) -> Result<(u64, mpsc::Receiver<Notice>), CallsError> {
        static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);
        let session = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        self.tx
            .send(Msg::Join {
                agent,
                role,
                queues,
                session,
                notices: tx,
            })
            .await
            .map_err(|_| CallsError::Stopped)?;
        Ok((session, rx))
    }

    /// The session's PeerConnection offer; returns the answer.
    pub async fn offer(&self, agent: AgentId, sdp: String) -> Result<String, CallsError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Offer { agent, sdp, reply })
            .await
            .map_err(|_| CallsError::Stopped)?;
        rx.await.map_err(|_| CallsError::Stopped)?
    }

    /// An agent asks for something.
    pub async fn command(&self, agent: AgentId, command: Command) -> Result<(), CallsError> {
        self.input(Input::AgentCommand { agent, command }).await
    }

    /// Session `session` of `agent` closed (`signed_out`: deliberately, no grace period).
    pub async fn leave(
        &self,
        agent: AgentId,
        session: u64,
        signed_out: bool,
    ) -> Result<(), CallsError> {
        self.tx
            .send(Msg::Leave {
                agent,
                session,
                signed_out,
            })
            .await
            .map_err(|_| CallsError::Stopped)
    }

    /// The floor, as it changes.
    pub fn floor(&self) -> watch::Receiver<Arc<FloorView>> {
        self.floor.clone()
    }

    /// The transfer directory, as it changes.
    pub fn directory(&self) -> watch::Receiver<Arc<Directory>> {
        self.directory.clone()
    }

    async fn input(&self, input: Input) -> Result<(), CallsError> {
        self.tx
            .send(Msg::Input(input))
            .await
            .map_err(|_| CallsError::Stopped)
    }

    /// Declines new calls from now on; calls in progress go on.
    pub async fn drain(&self) {
        let _ = self.input(Input::Drain).await;
    }

    /// Hands the waiting call `call` to `node` (reached at `url`), whose free `agent` was
    /// chosen for it; false when the call is not waiting here (any more). If the hand-over
    /// itself fails, the call goes on waiting here.
    pub async fn hand_off(
        &self,
        call: WaCallId,
        agent: AgentId,
        node: String,
        url: String,
    ) -> bool {
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .send(Msg::HandOff {
                call,
                agent,
                node,
                url,
                reply,
            })
            .await
            .is_err()
        {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// Rings `agent` (free here, chosen in the order the nodes share) for the waiting `call`;
    /// false when either is no longer free.
    pub async fn dispatch(&self, call: WaCallId, agent: AgentId) -> bool {
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .send(Msg::Dispatch { call, agent, reply })
            .await
            .is_err()
        {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// `agent`'s sign-in was withdrawn: see [`Input::AgentRevoked`].
    pub async fn revoke(&self, agent: AgentId) {
        let _ = self.input(Input::AgentRevoked { agent }).await;
    }

    /// The accounts changed: see [`Input::Reconfigure`].
    pub async fn reconfigure(&self, r: super::Reconfigure) {
        let _ = self.input(Input::Reconfigure(Box::new(r))).await;
    }

    /// Says whether Redis serves the queues' shared order (see [`Input::QueuesShared`]).
    pub async fn share_queues(&self, on: bool) {
        let _ = self.input(Input::QueuesShared { on }).await;
    }

    /// Takes up a waiting call another node hands over with `offer` (its internal leg to the
    /// call's Meta leg); the answer to send back.
    pub async fn adopt(&self, call: HandedCall, offer: String) -> Result<String, CallsError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Adopt {
                call: Box::new(call),
                offer,
                reply,
            })
            .await
            .map_err(|_| CallsError::Stopped)?;
        rx.await.map_err(|_| CallsError::Stopped)?
    }

    /// Takes up `task` (scheduled through the API), not offered before `due_at` (unix ms):
    /// `Err` with the id of the customer's open task in the same account, when there is one.
    pub async fn add_task(&self, task: Task, due_at: Option<i64>) -> Result<(), TaskRefused> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::AddTask {
                task: Box::new(task),
                due_at,
                reply,
            })
            .await
            .map_err(|_| TaskRefused::Stopped)?;
        rx.await
            .map_err(|_| TaskRefused::Stopped)?
            .map_err(TaskRefused::Duplicate)
    }

    /// Withdraws the open task `id`; false when this node holds no such task.
    pub async fn cancel_task(&self, id: String) -> Result<bool, CallsError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::CancelTask { id, reply })
            .await
            .map_err(|_| CallsError::Stopped)?;
        rx.await.map_err(|_| CallsError::Stopped)
    }

    /// Whether the call machines run and can go on: false once the actor stopped (its task
    /// ended, or panicked outside the machine) or found the machine too broken to trust
    /// (readiness then fails, so the load balancer sends new calls to another node).
    pub fn is_running(&self) -> bool {
        self.health.has_changed().is_ok() && *self.health.borrow()
    }

    /// Ends every call cleanly at Meta and stops the actor.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// What the actor needs.
pub struct Deps {
    /// The media engine ([`EngineHandle`]).
    pub media: Arc<dyn MediaPort>,
    /// Meta's Graph API for every business number served ([`super::GraphClients`]): a call's
    /// actions go to its own number's `/calls`.
    pub graph: Arc<dyn GraphPort>,
    /// Call records ([`StoreHandle`]).
    pub store: Arc<dyn RecordsPort>,
    /// The main business number (calls for numbers not served are ignored).
    pub phone_number_id: String,
    /// With several nodes: how this node hands waiting calls to the others.
    pub link: Option<Arc<dyn HandOver>>,
    /// This node's name (`SWITCHBOARD_NODE_ID`), written in its records.
    pub node: String,
    /// Call events to the accounts' backends; `None`: none are made.
    pub events: Option<crate::events::Emitter>,
}

/// Starts the actor: it reads `webhooks` (Meta's events) and `media_events`.
pub fn spawn(
    cfg: CentreConfig,
    floor: Floor,
    deps: Deps,
    webhooks: mpsc::Receiver<WaEvent>,
    media_events: mpsc::Receiver<MediaEvent>,
) -> (CallsHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(INBOX);
    let (floor_tx, floor_rx) = watch::channel(Arc::new(FloorView::default()));
    let (directory_tx, directory_rx) = watch::channel(Arc::new(Directory::default()));
    let (health_tx, health_rx) = watch::channel(true);
    let actor = Actor {
        centre: Centre::new(cfg, floor),
        records: Records::spawn(deps.store.clone(), deps.events.clone()),
        health: health_tx,
        panics: Panics::default(),
        deps,
        sessions: HashMap::new(),
        wall: (now(), SystemTime::now()),
        floor: floor_tx,
        directory: directory_tx,
        numbers: HashMap::new(),
        stats_dirty: false,
        tasks: JoinSet::new(),
        graph_lines: GraphLines::default(),
        bridges: HashMap::new(),
    };
    let task = tokio::spawn(actor.run(rx, webhooks, media_events));
    (
        CallsHandle {
            tx,
            floor: floor_rx,
            directory: directory_rx,
            health: health_rx,
        },
        task,
    )
}

/// Panics of the machine within [`PANIC_WINDOW`] after which this node says it is not ready.
const PANICS_TOLERATED: usize = 3;
/// See [`PANICS_TOLERATED`].
const PANIC_WINDOW: Duration = Duration::from_secs(60);

/// The machine's latest panics: too many too close together and it is not trusted any more.
#[derive(Debug, Default)]
struct Panics(VecDeque<Instant>);

impl Panics {
    /// Counts a panic at `now`; true when it is the [`PANICS_TOLERATED`]th within
    /// [`PANIC_WINDOW`].
    fn record(&mut self, now: Instant) -> bool {
        self.0.push_back(now);
        while self.0.len() > PANICS_TOLERATED {
            self.0.pop_front();
        }
        self.0.len() == PANICS_TOLERATED
            && self
                .0
                .front()
                .is_some_and(|first| now.saturating_duration_since(*first) < PANIC_WINDOW)
    }
}

struct Actor {
    centre: Centre<Floor>,
    deps: Deps,
    records: Records,
    /// True while the call machines can go on (read by readiness through [`CallsHandle`]).
    health: watch::Sender<bool>,
    /// When the machine last panicked.
    panics: Panics,
    sessions: HashMap<AgentId, (u64, mpsc::Sender<Notice>)>,
    /// An instant and the wall-clock time at it, to turn the centre's instants into record times.
    wall: (Instant, SystemTime),
    floor: watch::Sender<Arc<FloorView>>,
    directory: watch::Sender<Arc<Directory>>,
    /// Leg statistics arrived since the floor was last published.
    stats_dirty: bool,
    /// Each live call's business number, when it is not the main one.
    numbers: HashMap<WaCallId, String>,
    /// Graph calls and offers in flight; their results come back as inputs.
    tasks: JoinSet<Done>,
    /// Each call's Graph actions, queued one at a time.
    graph_lines: GraphLines,
    /// Calls handed to another node: each Meta leg and its internal leg, both ways. When one
    /// ends the other is closed; the centre knows neither any more.
    bridges: HashMap<LegId, LegId>,
}

enum Done {
    Input(Input),
    /// A call-back's dial finished; `number`: the business number it was placed from, when not
    /// the main one.
    Dialed {
        number: Option<String>,
        dial: u64,
        result: Result<Placed, DialFailure>,
    },
    /// A Graph action of `call` finished: its line may send the next.
    Graph {
        call: WaCallId,
        input: Input,
    },
    Offer {
        agent: AgentId,
        /// The leg and its answer.
        result: Result<(AgentLeg, String), LegFailure>,
        reply: oneshot::Sender<Result<String, CallsError>>,
    },
    HandedOff {
        call: Box<HandedCall>,
        wa: WaLeg,
        result: Result<LegId, (HandOffError, Option<LegId>)>,
    },
    Adopted {
        call: Box<HandedCall>,
        wa: WaLeg,
        reply: oneshot::Sender<Result<String, CallsError>>,
    },
    /// The open tasks kept when this node last ran.
    Tasks(Vec<store::TaskRow>),
    /// Media commands of one step that failed.
    MediaFailed(Vec<(LegOp, crate::media::MediaError)>),
    Nothing,
}

/// A media command that failed: the leg or stream was gone already (a call ending while its
/// last commands were in flight), or the engine stopped.
fn media_failed(op: &LegOp, e: &crate::media::MediaError) {
    match op {
        LegOp::StartSending(leg) => warn!(%leg, error = %e, "start sending"),
        op => debug!(?op, error = %e, "media command"),
    }
}

impl Actor {
    async fn run(
        mut self,
        mut inbox: mpsc::Receiver<Msg>,
        mut webhooks: mpsc::Receiver<WaEvent>,
        mut media_events: mpsc::Receiver<MediaEvent>,
    ) {
        // Quality figures reach supervisors at this pace, not once per statistics event.
        let mut quality = tokio::time::interval(FLOOR_QUALITY_EVERY);
        let store = self.deps.store.clone();
        self.tasks.spawn(async move {
            match store.tasks().await {
                Ok(rows) => Done::Tasks(rows),
                Err(e) => {
                    warn!(error = %e, "the call-back tasks kept by the last run cannot be read");
                    Done::Nothing
                }
            }
        });
        loop {
            let deadline = self
                .centre
                .poll_timeout()
                .unwrap_or_else(|| now() + Duration::from_secs(3600));
            tokio::select! {
                msg = inbox.recv() => match msg {
                    Some(Msg::Shutdown(done)) => {
                        self.shutdown().await;
                        let _ = done.send(());
                        return;
                    }
                    Some(msg) => self.on_msg(msg),
                    None => return,
                },
                Some(ev) = webhooks.recv() => self.on_webhook(ev),
                Some(ev) = media_events.recv() => self.on_media(ev),
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    match done {
                        Ok(Done::Input(input)) => self.feed(now(), input),
                        Ok(Done::Dialed { number, dial, result }) => {
                            // The call's later Graph actions go through the number it was
                            // placed from.
                            if let (Some(n), Ok(p)) = (number, &result) {
                                self.numbers.insert(p.call.clone(), n);
                            }
                            self.feed(now(), Input::Dialed { dial, result });
                        }
                        Ok(Done::Graph { call, input }) => self.graph_done(call, input),
                        Ok(Done::Offer { agent, result, reply }) => match result {
                            Ok((leg, sdp)) => {
                                self.feed(now(), Input::AgentLegReady { agent, leg });
                                let _ = reply.send(Ok(sdp));
                            }
                            Err(e) => {
                                let _ = reply.send(Err(CallsError::Offer(e)));
                            }
                        },
                        Ok(Done::HandedOff { call, wa, result }) => self.handed_off(*call, wa, result),
                        Ok(Done::Adopted { call, wa, reply }) => {
                            let id = call.call.clone();
                            if let Some(n) = call.business_number.clone().filter(|n| *n != self.deps.phone_number_id) {
                                self.numbers.insert(id.clone(), n);
                            }
                            let answer = wa.sdp.clone();
                            if self.centre.adopt(now(), *call, wa) {
                                handed_over("in", "ok");
                                let _ = reply.send(Ok(answer));
                            } else {
                                handed_over("in", "failed");
                                self.numbers.remove(&id);
                                let _ = reply.send(Err(CallsError::Draining));
                            }
                        }
                        Ok(Done::MediaFailed(failed)) => {
                            for (op, e) in &failed {
                                media_failed(op, e);
                            }
                        }
                        Ok(Done::Tasks(rows)) => self.resume_tasks(rows),
                        Ok(Done::Nothing) => {}
                        Err(e) => warn!(error = %e, "a call task failed"),
                    }
                }
                _ = quality.tick() => {
                    if std::mem::take(&mut self.stats_dirty) {
                        self.publish_floor();
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => {
                    self.tick(now());
                }
            }
            self.execute();
        }
    }

    fn on_msg(&mut self, msg: Msg) {
        let now = now();
        match msg {
            Msg::Input(input) => self.feed(now, input),
            Msg::Join {
                agent,
                role,
                queues,
                session,
                notices,
            } => {
                // A newer session of the same person takes over; the older one's notices end.
                self.sessions.insert(agent.clone(), (session, notices));
                self.feed(
                    now,
                    Input::AgentJoined {
                        agent,
                        role,
                        queues,
                    },
                );
            }
            Msg::Offer { agent, sdp, reply } => {
                let media = self.deps.media.clone();
                self.tasks.spawn(async move {
                    let result = media.answer_browser(sdp).await.map(|a| {
                        let leg = AgentLeg {
                            leg: a.leg,
                            streams: a.streams,
                        };
                        (leg, a.sdp)
                    });
                    Done::Offer {
                        agent,
                        result: result.map_err(|e| LegFailure::from(&e)),
                        reply,
                    }
                });
            }
            Msg::Leave {
                agent,
                session,
                signed_out,
            } => {
                // Only the current session's end counts; a replaced one's does not.
                let current = self.sessions.get(&agent).is_some_and(|s| s.0 == session);
                if current {
                    self.sessions.remove(&agent);
                    self.centre
                        .handle(now, Input::AgentLeft { agent, signed_out });
                }
            }
            Msg::HandOff {
                call,
                agent,
                node,
                url,
                reply,
            } => {
                let _ = reply.send(self.hand_off(now, call, agent, node, url));
            }
            Msg::Dispatch { call, agent, reply } => {
                self.feed(
                    now,
                    Input::Dispatch {
                        call: call.clone(),
                        agent: agent.clone(),
                    },
                );
                let rings = matches!(
                    self.centre.phase(&call),
                    Some(super::Phase::Ringing { agent: a, .. }) if *a == agent
                );
                let _ = reply.send(rings);
            }
            Msg::Adopt { call, offer, reply } => {
                let media = self.deps.media.clone();
                self.tasks.spawn(async move {
                    match media.answer_whatsapp(offer).await {
                        Ok(a) => match a.streams.first() {
                            Some(s) => Done::Adopted {
                                call,
                                wa: WaLeg {
                                    leg: a.leg,
                                    stream: *s,
                                    sdp: a.sdp,
                                },
                                reply,
                            },
                            None => {
                                let _ = media.close(a.leg).await;
                                let _ = reply.send(Err(CallsError::Offer(LegFailure::NoStream)));
                                Done::Nothing
                            }
                        },
                        Err(e) => {
                            let _ = reply.send(Err(CallsError::Offer(LegFailure::from(&e))));
                            Done::Nothing
                        }
                    }
                });
            }
            Msg::AddTask {
                task,
                due_at,
                reply,
            } => {
                let _ = reply.send(match self.centre.open_task_like(&task) {
                    Some(id) => Err(id),
                    None => {
                        let due = due_at.map(|at| self.instant(at));
                        self.feed(now, Input::TaskAdded { task, due });
                        Ok(())
                    }
                });
            }
            Msg::CancelTask { id, reply } => {
                let open = self.centre.tasks().iter().any(|(t, _)| t.id == id);
                if open {
                    self.feed(now, Input::TaskCancelled { task: id });
                }
                let _ = reply.send(open);
            }
            Msg::Shutdown(_) => {}
        }
    }

    /// The open tasks this node held when it stopped, taken up again (each with its due time).
    fn resume_tasks(&mut self, rows: Vec<store::TaskRow>) {
        let now = now();
        let node = self.deps.node.clone();
        for row in rows.into_iter().filter(|r| r.node == node) {
            let Some(reason) = TaskReason::parse(&row.reason) else {
                warn!(task = %row.task_id, reason = %row.reason, "a kept task has an unknown reason; dropped");
                self.deps
                    .store
                    .change_task(store::TaskChange::Forget(row.task_id));
                continue;
            };
            let due = row.due_at.map(|at| self.instant(at));
            let task = Task {
                id: row.task_id,
                to: row.customer,
                name: row.name,
                queue: QueueId(row.queue),
                reason,
                note: row.note,
                due_at: row.due_at,
                agent: row.agent.map(AgentId),
            };
            self.feed(
                now,
                Input::TaskAdded {
                    task: Box::new(task),
                    due,
                },
            );
        }
    }

    /// Releases a waiting call and bridges its Meta leg to `node`, which takes it over; false
    /// when the call is not waiting here.
    fn hand_off(
        &mut self,
        now: Instant,
        call: WaCallId,
        agent: AgentId,
        node: String,
        url: String,
    ) -> bool {
        let Some(link) = self.deps.link.clone() else {
            return false;
        };
        let Some((mut handed, wa)) = self.centre.release(now, &call, link.node()) else {
            return false;
        };
        handed.agent = Some(agent);
        let (media, store) = (self.deps.media.clone(), self.deps.store.clone());
        let span = tracing::info_span!("handoff", call_id = %call, to = %node);
        self.tasks.spawn(
            async move {
                // The adopting node marks it live under its own name, and the first mark
                // stands: this node's goes first.
                let _ = store.clear_live(handed.call.clone()).await;
                let result = bridge(&*media, &*link, url, &handed, &wa).await;
                Done::HandedOff {
                    call: Box::new(handed),
                    wa,
                    result,
                }
            }
            .instrument(span),
        );
        true
    }

    fn handed_off(
        &mut self,
        call: HandedCall,
        wa: WaLeg,
        result: Result<LegId, (HandOffError, Option<LegId>)>,
    ) {
        match result {
            Ok(trunk) => {
                handed_over("out", "ok");
                info!(call_id = %call.call, leg = %wa.leg, %trunk, "waiting call bridged to another node");
                self.numbers.remove(&call.call);
                self.bridges.insert(wa.leg, trunk);
                self.bridges.insert(trunk, wa.leg);
            }
            Err((why, trunk)) => {
                handed_over("out", "failed");
                warn!(call_id = %call.call, error = %why, "hand-over failed; the call waits here");
                if let Some(trunk) = trunk {
                    let media = self.deps.media.clone();
                    self.tasks.spawn(async move {
                        let _ = media.close(trunk).await;
                        Done::Nothing
                    });
                }
                // Taken back: hold audio again, at the front of its queue.
                self.centre.adopt(now(), call, wa);
            }
        }
    }

    fn on_webhook(&mut self, ev: WaEvent) {
        let now = now();
        match ev {
            WaEvent::CallOffered {
                call_id,
                phone_number_id,
                display_phone_number,
                from,
                caller_name,
                offer_sdp,
                received_at,
                unshared,
                agent,
                ..
            } => {
                let served = |n: &String| self.deps.graph.serves(n);
                if phone_number_id.as_ref().is_some_and(|n| !served(n)) {
                    // Another number of the same WhatsApp Business Account: not ours to answer.
                    warn!(%call_id, "call for another business number; ignored");
                    return;
                }
                if let Some(n) = phone_number_id
                    .as_ref()
                    .filter(|n| **n != self.deps.phone_number_id)
                {
                    self.numbers.insert(call_id.clone(), n.clone());
                }
                self.feed(
                    now,
                    Input::Offered {
                        call: call_id,
                        from,
                        name: caller_name,
                        business_number: phone_number_id
                            .or(Some(self.deps.phone_number_id.clone())),
                        display_number: display_phone_number,
                        offer: offer_sdp,
                        received_at: received_at.unwrap_or(now),
                        unshared,
                        agent: agent.map(AgentId),
                    },
                );
            }
            WaEvent::CallTerminated {
                call_id,
                status,
                errors,
                ..
            } => self.feed(
                now,
                Input::Terminated {
                    call: call_id,
                    status: status.map(|s| s.as_str().to_owned()),
                    errors: errors.iter().map(|e| e.code).collect(),
                },
            ),
            WaEvent::CallAnswered {
                call_id,
                answer_sdp,
            } => self.feed(
                now,
                Input::CalleeAnswered {
                    call: call_id,
                    sdp: answer_sdp,
                    received_at: now,
                },
            ),
            WaEvent::PermissionReply {
                phone_number_id,
                user,
                response,
                permanent,
                expires_at,
                source,
                ..
            } => self.feed(
                now,
                Input::PermissionReply {
                    business_number: phone_number_id,
                    user,
                    granted: response == crate::whatsapp::model::PermissionResponse::Accept,
                    permanent,
                    expires_at: expires_at
                        .and_then(|t| i64::try_from(t.0).ok())
                        .map(|s| s.saturating_mul(1000)),
                    source,
                },
            ),
            WaEvent::CallStatusChanged {
                call_id, status, ..
            } => {
                use crate::whatsapp::model::CallStatusKind as K;
                let status = match status {
                    K::Ringing => CalleeStatus::Ringing,
                    K::Accepted => CalleeStatus::Accepted,
                    K::Rejected => CalleeStatus::Rejected,
                    K::Other(s) => {
                        debug!(%call_id, status = %s, "call status not known; ignored");
                        return;
                    }
                };
                self.feed(
                    now,
                    Input::CalleeStatus {
                        call: call_id,
                        status,
                    },
                );
            }
        }
    }

    fn on_media(&mut self, ev: MediaEvent) {
        if let MediaEvent::Failed { leg, .. } | MediaEvent::Closed { leg, .. } = &ev {
            if let Some(other) = self.bridges.remove(leg) {
                // One side of a handed-over call ended: so does the other.
                self.bridges.remove(&other);
                info!(%leg, %other, "bridge to another node ended");
                let media = self.deps.media.clone();
                self.tasks.spawn(async move {
                    let _ = media.close(other).await;
                    Done::Nothing
                });
                return;
            }
        }
        let input = match ev {
            MediaEvent::Connected { leg } => Input::MediaConnected { leg },
            MediaEvent::Failed { leg, .. } => Input::MediaGone { leg, failed: true },
            MediaEvent::Closed { leg, .. } => Input::MediaGone { leg, failed: false },
            MediaEvent::Dtmf { leg, digit, .. } => Input::Dtmf { leg, digit },
            MediaEvent::Stats { leg, kind, stats } => {
                self.stats_dirty = true;
                crate::ops::observe_leg_stats(kind, &stats);
                Input::Stats { leg, stats }
            }
            MediaEvent::FirstPacket { stream } => Input::FirstPacket { stream },
            MediaEvent::SourceFlowing { stream, source } => Input::SourceFlowing { stream, source },
        };
        self.feed(now(), input);
    }

    /// Carries out every pending action. Media commands run in order (a route before the
    /// first packet); Graph calls and offers run concurrently and report back.
    /// Carries out what the machine asked, without awaiting anything: media commands are
    /// queued on their shards, Graph actions and offers become tasks, record writes go to the
    /// records line, notices to the sessions' queues.
    fn execute(&mut self) {
        let mut posted: Vec<(LegOp, Pending<Result<(), MediaError>>)> = vec![];
        let mut actions = vec![];
        while let Some(action) = self.centre.poll_action() {
            actions.push(action);
        }
        // The floor is published before anything is carried out, so whoever sees an effect
        // (a Graph call, a notice) finds the floor already saying why.
        if actions.iter().any(|a| matches!(a, Action::FloorChanged)) {
            self.publish_floor();
        }
        // Call events of this step: written with the step's live mark or record when it has
        // one (one transaction), else on their own, in the order they happened.
        let mut events = vec![];
        for action in actions {
            match action {
                Action::AnswerWhatsApp { call, offer } => {
                    let media = self.deps.media.clone();
                    self.tasks.spawn(async move {
                        let result = media
                            .answer_whatsapp(offer)
                            .await
                            .map_err(|e| LegFailure::from(&e))
                            .and_then(|a| match a.streams.first() {
                                Some(s) => Ok(WaLeg {
                                    leg: a.leg,
                                    stream: *s,
                                    sdp: a.sdp,
                                }),
                                None => Err(LegFailure::NoStream),
                            });
                        Done::Input(Input::Answered { call, result })
                    });
                }
                Action::Graph { call, action, sdp } => {
                    let job = GraphJob {
                        number: self.numbers.get(&call).cloned(),
                        call,
                        action,
                        sdp,
                        graph: self.deps.graph.clone(),
                    };
                    if let Some(request) = self.graph_lines.submit(job) {
                        self.tasks.spawn(request.run());
                    }
                }
                Action::Route { stream, source } => {
                    self.post(LegOp::Route(stream, source), &mut posted);
                }
                Action::Hold { stream, on } => self.post(LegOp::Hold(stream, on), &mut posted),
                Action::HoldAudio { leg, audio } => {
                    self.post(LegOp::HoldAudio(leg, audio), &mut posted);
                }
                Action::StartSending { leg } => {
                    self.post(LegOp::StartSending(leg), &mut posted);
                }
                Action::CloseLeg { leg } => self.post(LegOp::Close(leg), &mut posted),
                Action::Notify { agent, notice } => {
                    if let Some((_, s)) = self.sessions.get(&agent) {
                        if s.try_send(notice).is_err() {
                            warn!(%agent, "session is not reading its notices; one dropped");
                        }
                    }
                }
                Action::FloorChanged => {}
                Action::MarkLive {
                    call,
                    business_number,
                    if_lost,
                } => {
                    let live = LiveCall {
                        call_id: call.clone(),
                        business_number: business_number.unwrap_or_default(),
                        started_at: store::unix_ms(SystemTime::now()),
                        known: Some(Box::new(self.record(&if_lost))),
                    };
                    self.records
                        .write(Write::MarkLive(live, std::mem::take(&mut events)));
                }
                Action::Metric(m) => crate::ops::record(m),
                Action::Finished(ended) => {
                    crate::ops::record_ended(&ended);
                    // Its last Graph action is already on its way with the right client.
                    self.numbers.remove(&ended.call);
                    let record = self.record(&ended);
                    if let Some(emitter) = &self.deps.events {
                        events.extend(records::ended_rows(emitter, &record));
                    }
                    self.records
                        .write(Write::Finish(Box::new(record), std::mem::take(&mut events)));
                }
                Action::Event(e) => self.event(&e, &mut events),
                Action::Dial {
                    dial,
                    agent,
                    to,
                    business_number,
                } => self.dial(dial, agent, to, business_number),
                Action::AskPermission {
                    agent,
                    to,
                    business_number,
                } => {
                    let graph = self.deps.graph.clone();
                    let number = business_number.filter(|n| *n != self.deps.phone_number_id);
                    self.tasks.spawn(async move {
                        let result = graph.ask_permission(number.as_deref(), to.clone()).await;
                        Done::Input(Input::PermissionAsked { agent, to, result })
                    });
                }
                Action::KeepPermission {
                    business_number,
                    user,
                    state,
                    permanent,
                    expires_at,
                    source,
                    requested_by,
                } => {
                    self.deps.store.put_permission(PermissionRow {
                        business_number: business_number
                            .unwrap_or_else(|| self.deps.phone_number_id.clone()),
                        user_number: user,
                        status: state,
                        permanent,
                        expires_at,
                        source,
                        requested_by: requested_by.map(|a| a.0),
                        updated_at: store::unix_ms(SystemTime::now()),
                    });
                }
                Action::KeepTask(task) => {
                    let account = crate::accounts::account_of(&task.queue.0).to_owned();
                    self.deps
                        .store
                        .change_task(store::TaskChange::Put(Box::new(store::TaskRow {
                            task_id: task.id,
                            account,
                            customer: task.to,
                            name: task.name,
                            queue: task.queue.0,
                            agent: task.agent.map(|a| a.0),
                            reason: task.reason.as_str().to_owned(),
                            note: task.note,
                            due_at: task.due_at,
                            created_at: store::unix_ms(SystemTime::now()),
                            node: self.deps.node.clone(),
                        })));
                }
                Action::ForgetTask { task } => {
                    self.deps.store.change_task(store::TaskChange::Forget(task));
                }
                Action::ApplyAnswer { call, leg, sdp } => {
                    let media = self.deps.media.clone();
                    self.tasks.spawn(async move {
                        let result = media
                            .whatsapp_answered(leg, sdp)
                            .await
                            .map_err(|e| LegFailure::from(&e));
                        Done::Input(Input::AnswerApplied { call, result })
                    });
                }
            }
        }
        if !events.is_empty() {
            self.records.write(Write::Events(events));
        }
        if !posted.is_empty() {
            // One step's media commands are queued on their shards already; their results
            // come back as one event, not awaited here.
            self.tasks.spawn(async move {
                let mut failed = vec![];
                for (op, p) in posted {
                    if let Err(e) = p.await {
                        failed.push((op, e));
                    }
                }
                Done::MediaFailed(failed)
            });
        }
    }

    /// Places a call-back (see [`place`]); the result comes back as [`Input::Dialed`].
    fn dial(&mut self, dial: u64, agent: AgentId, to: String, number: Option<String>) {
        let (media, graph) = (self.deps.media.clone(), self.deps.graph.clone());
        let number = number.filter(|n| *n != self.deps.phone_number_id);
        let span = tracing::info_span!("call_back", %agent, dial);
        self.tasks.spawn(
            async move {
                let result = place(&*media, &*graph, number.as_deref(), to)
                    .await
                    .map_err(|refusal| DialFailure {
                        attempt: WaCallId(format!("sb.callback.{:032x}", rand::random::<u128>())),
                        refusal,
                    });
                Done::Dialed {
                    number,
                    dial,
                    result,
                }
            }
            .instrument(span),
        );
    }

    /// Feeds the machine one input. A panic inside it is caught: logged with the call the input
    /// concerns, that call ended (at Meta too), the others carried on.
    fn feed(&mut self, now: Instant, input: Input) {
        let call = self.centre.call_of(&input);
        let centre = &mut self.centre;
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| centre.handle(now, input)));
        if let Err(panic) = result {
            self.panicked(now, call, &*panic);
        }
    }

    /// Advances the machine's time, guarded like [`Actor::feed`].
    fn tick(&mut self, now: Instant) {
        let centre = &mut self.centre;
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| centre.handle_timeout(now)));
        if let Err(panic) = result {
            self.panicked(now, None, &*panic);
        }
    }

    /// After a panic in the machine: its call is ended; a machine that panics again and again
    /// (or cannot even end the call) is reported broken, and readiness fails.
    fn panicked(
        &mut self,
        now: Instant,
        call: Option<WaCallId>,
        panic: &(dyn std::any::Any + Send),
    ) {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        tracing::error!(call_id = ?call.as_ref().map(|c| c.0.as_str()), panic = %what, "the call machines panicked; the call it concerned is ended");
        metrics::counter!(crate::ops::names::CALLS_MACHINE_PANICS).increment(1);
        let mut broken = self.panics.record(now);
        if let Some(call) = call {
            let centre = &mut self.centre;
            if std::panic::catch_unwind(AssertUnwindSafe(|| centre.abort(now, &call))).is_err() {
                broken = true;
            }
        }
        if broken && *self.health.borrow() {
            tracing::error!("the call machines keep failing: this node reports itself not ready");
            self.health.send_replace(false);
        }
    }

    /// Queues `op` on its media shard now.
    fn post(&self, op: LegOp, posted: &mut Vec<(LegOp, Pending<Result<(), MediaError>>)>) {
        // (A copy for the log of its failure: only the hold audio's op holds an `Arc`.)
        match self.deps.media.post(op.clone()) {
            Ok(p) => posted.push((op, p)),
            Err(e) => media_failed(&op, &e),
        }
    }

    /// A call's Graph action finished: the centre hears how, and the call's next one goes.
    fn graph_done(&mut self, call: WaCallId, input: Input) {
        self.feed(now(), input);
        if let Some(next) = self.graph_lines.finished(&call) {
            self.tasks.spawn(next.run());
        }
    }

    fn publish_floor(&mut self) {
        {
            let r = self.centre.routing();
            let view = FloorView {
                at: Some(now()),
                calls: self.centre.calls(),
                agents: r.agents(),
                queues: r
                    .queue_ids()
                    .into_iter()
                    .map(|q| {
                        let w = r.waiting(&q);
                        (q, w)
                    })
                    .collect(),
                counters: self.centre.counters(),
                service: self.centre.service_levels(),
            };
            let directory = Directory {
                available: view
                    .agents
                    .iter()
                    .filter(|a| a.presence == crate::routing::Presence::Available)
                    .map(|a| a.id.clone())
                    .collect(),
                queues: view.queues.iter().map(|(q, _)| q.clone()).collect(),
            };
            self.floor.send_replace(Arc::new(view));
            self.directory.send_if_modified(|d| {
                let changed = **d != directory;
                if changed {
                    *d = Arc::new(directory);
                }
                changed
            });
        }
    }

    async fn shutdown(&mut self) {
        info!("ending every call before stopping");
        self.feed(now(), Input::Shutdown);
        self.execute();
        // Meta must hear of every end: wait for the Graph calls in flight, for a while.
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while let Some(done) = self.tasks.join_next().await {
                match done {
                    Ok(Done::Input(input)) => self.feed(now(), input),
                    // A final action may wait behind this one.
                    Ok(Done::Graph { call, input }) => self.graph_done(call, input),
                    _ => {}
                }
            }
        })
        .await;
        self.execute();
        // Every record is written before the actor says it stopped.
        self.records.close().await;
    }

    /// The instant of unix time `at` (ms) on the centre's clock; a time past is now.
    fn instant(&self, at: i64) -> Instant {
        let (i0, w0) = self.wall;
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(at).unwrap_or(0));
        let now = now();
        match at.duration_since(w0) {
            Ok(ahead) => (i0 + ahead).max(now),
            Err(_) => now,
        }
    }

    fn unix(&self, t: Instant) -> i64 {
        let (i0, w0) = self.wall;
        let wall = if t >= i0 {
            w0 + (t - i0)
        } else {
            w0 - (i0 - t)
        };
        store::unix_ms(wall)
    }

    /// The outbox rows of `e`, one per endpoint of its account that takes it (none when the
    /// program runs without events, or the account has no endpoint).
    fn event(&self, e: &HostEvent, out: &mut Vec<OutboxRow>) {
        let Some(emitter) = &self.deps.events else {
            return;
        };
        let at = store::unix_ms(SystemTime::now());
        match e {
            HostEvent::Call {
                kind,
                call,
                queue,
                from,
                name,
                business_number,
                agent,
                to,
            } => {
                let account = crate::accounts::account_of(&queue.0);
                let kind = match kind {
                    CallStep::Offered => EventType::CallOffered,
                    CallStep::Ringing => EventType::CallRinging,
                    CallStep::Queued => EventType::CallQueued,
                    CallStep::Answered => EventType::CallAnswered,
                    CallStep::Held => EventType::CallHeld,
                    CallStep::Resumed => EventType::CallResumed,
                    CallStep::Transferred => EventType::CallTransferred,
                };
                out.extend(emitter.rows(kind, account, &call.0, at, || {
                    let mut data = serde_json::json!({
                        "call_id": call.0,
                        "account": account,
                        "queue": queue.0,
                        "from": from,
                        "name": name,
                        "business_number": business_number,
                        "agent": agent.as_ref().map(|a| &a.0),
                    });
                    if let Some(to) = to {
                        data["to"] = match to {
                            TransferTarget::Agent(a) => serde_json::json!({ "agent": a.0 }),
                            TransferTarget::Queue(q) => serde_json::json!({ "queue": q.0 }),
                        };
                    }
                    data
                }));
            }
            HostEvent::Agent { agent, presence } => {
                let account = crate::accounts::account_of(&agent.0);
                out.extend(
                    emitter.rows(EventType::AgentState, account, &agent.0, at, || {
                        let (reason, call) = match presence {
                            Presence::Away { reason } => (Some(reason.text()), None),
                            Presence::Ringing { call }
                            | Presence::OnCall { call }
                            | Presence::WrapUp { call, .. } => (None, Some(&call.0)),
                            Presence::Offline | Presence::Available => (None, None),
                        };
                        serde_json::json!({
                            "agent": agent.0,
                            "account": account,
                            "state": presence.name(),
                            "reason": reason,
                            "call_id": call,
                        })
                    }),
                );
            }
        }
    }

    fn record(&self, e: &Ended) -> CallRecord {
        CallRecord {
            call_id: e.call.clone(),
            caller_number: e.from.clone().unwrap_or_default(),
            caller_name: e.name.clone(),
            business_number: e.business_number.clone().unwrap_or_default(),
            queue: Some(e.queue.0.clone()),
            agents: e.agents.iter().map(|a| a.0.clone()).collect(),
            started_at: self.unix(e.offered_at),
            answered_at: e.answered_at.map(|t| self.unix(t)),
            ended_at: self.unix(e.ended_at),
            transitions: e
                .transitions
                .iter()
                .map(|(state, at, agent)| Transition {
                    state: state.as_str().to_owned(),
                    at: self.unix(*at),
                    agent: agent.as_ref().map(|a| a.0.clone()),
                })
                .collect(),
            outcome: e.outcome,
            end_reason: e.reason.clone(),
            ended_by: e.ended_by,
            meta_error_codes: e.meta_errors.clone(),
            legs: e
                .legs
                .iter()
                .map(|(of, s)| LegQuality {
                    role: match of {
                        LegOf::WhatsApp => LegRole::Whatsapp,
                        LegOf::Agent(_) => LegRole::Agent,
                    },
                    agent: match of {
                        LegOf::WhatsApp => None,
                        LegOf::Agent(a) => Some(a.0.clone()),
                    },
                    packets_rx: s.packets_rx,
                    packets_tx: s.packets_tx,
                    loss_rx: s.loss_rx,
                    loss_tx: s.loss_tx,
                    jitter_ms: s.jitter.map(|d| d.as_secs_f64() * 1000.0),
                    rtt_ms: s.rtt.map(|d| d.as_secs_f64() * 1000.0),
                })
                .collect(),
            node: Some(self.deps.node.clone()),
            direction: if e.dialled.is_some() {
                store::Direction::Outbound
            } else {
                store::Direction::Inbound
            },
            dialled_by: e.dialled.as_ref().map(|d| d.by.0.clone()),
            task_id: e.dialled.as_ref().and_then(|d| d.task.clone()),
        }
    }
}

/// A call-back's placing: Meta's permission first (no offer is made for a call Meta would
/// refuse), then the leg's offer, then Graph `connect` with it. A leg whose call was not placed
/// is closed.
async fn place(
    media: &dyn MediaPort,
    graph: &dyn GraphPort,
    number: Option<&str>,
    to: String,
) -> Result<Placed, DialRefusal> {
    let pressed = now();
    graph.may_call(number, to.clone()).await?;
    let offer = media
        .offer_whatsapp()
        .await
        .map_err(|e| DialRefusal::Media(e.to_string()))?;
    let Some(stream) = offer.streams.first().copied() else {
        let _ = media.close(offer.leg).await;
        return Err(DialRefusal::Media("the offer has no stream".into()));
    };
    crate::ops::record(super::Metric::Setup {
        step: SetupStep::CallBackToConnect,
        took: now().saturating_duration_since(pressed),
    });
    match graph.connect(number, to, offer.sdp.clone()).await {
        Ok(call) => Ok(Placed {
            call,
            wa: WaLeg {
                leg: offer.leg,
                stream,
                sdp: offer.sdp,
            },
        }),
        Err(f) => {
            let _ = media.close(offer.leg).await;
            Err(DialRefusal::Meta {
                code: f.code,
                message: f.message,
            })
        }
    }
}

#[cfg(test)]
mod tests;
