//! The calls actor with fake ports (media, Graph, records) that log what they are asked, and
//! when on tokio's clock: for tests on simulated time of the actor and of what drives it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::actor::{spawn, CallsHandle, Deps};
use super::event::{Command, GraphAction, GraphFailure, Notice, Role};
use super::machine::CentreConfig;
use super::ports::{GraphPort, MediaPort, Pending, RecordsPort};
use crate::events::OutboxRow;
use crate::ids::{LegId, StreamId, WaCallId};
use crate::media::{Answer, LegOp, MediaError, MediaEvent};
use crate::routing::{Floor, NoAgentPolicy, Presence, QueueConfig};
use crate::store::{CallRecord, LiveCall, Outcome, Recorded, StoreError};
use crate::whatsapp::webhook::WaEvent;

/// What a fake port was asked to do, and when (since the rig started).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Did {
    AnswerWhatsApp(LegId),
    AnswerBrowser(LegId),
    Post(LegOp),
    /// A Graph action was sent…
    GraphSent(WaCallId, GraphAction),
    /// …and Meta answered.
    Graph(WaCallId, GraphAction),
    MarkLive(WaCallId),
    Finish(WaCallId, Outcome),
    /// A call event written to the outbox: its type and what it is ordered by.
    Event(String, String),
}

/// Every port's log, in the order things were done.
pub(crate) struct Log {
    pub(crate) t0: tokio::time::Instant,
    pub(crate) did: Mutex<Vec<(Duration, Did)>>,
}

impl Log {
    pub(crate) fn push(&self, did: Did) {
        let at = self.t0.elapsed();
        self.did.lock().unwrap().push((at, did));
    }

    pub(crate) fn all(&self) -> Vec<(Duration, Did)> {
        self.did.lock().unwrap().clone()
    }

    /// Where `did` first is in the log.
    pub(crate) fn position(&self, did: &Did) -> Option<usize> {
        self.all().iter().position(|(_, d)| d == did)
    }

    /// When `did` was first done.
    pub(crate) fn when(&self, did: &Did) -> Option<Duration> {
        self.all().iter().find(|(_, d)| d == did).map(|(t, _)| *t)
    }
}

pub(crate) struct FakeMedia {
    pub(crate) log: Arc<Log>,
    next: AtomicU32,
    /// How long each WhatsApp answer takes, in order (then none).
    pub(crate) whatsapp_delays: Mutex<VecDeque<Duration>>,
}

impl FakeMedia {
    fn answer(&self, streams: u8) -> Answer {
        let leg = LegId {
            shard: 0,
            slot: self.next.fetch_add(1, Ordering::Relaxed),
            generation: 1,
        };
        Answer {
            leg,
            sdp: format!("v=0 answer {}", leg.slot),
            streams: (0..streams).map(|index| StreamId { leg, index }).collect(),
        }
    }
}

pub(crate) fn done<T: Send + 'static>(value: T) -> Pending<T> {
    Box::pin(std::future::ready(value))
}

impl MediaPort for FakeMedia {
    fn answer_whatsapp(&self, _offer: String) -> Pending<Result<Answer, MediaError>> {
        let delay = self
            .whatsapp_delays
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_default();
        let answer = self.answer(1);
        let log = self.log.clone();
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            log.push(Did::AnswerWhatsApp(answer.leg));
            Ok(answer)
        })
    }

    fn answer_browser(&self, _offer: String) -> Pending<Result<Answer, MediaError>> {
        let answer = self.answer(2);
        self.log.push(Did::AnswerBrowser(answer.leg));
        done(Ok(answer))
    }

    fn offer_trunk(&self) -> Pending<Result<Answer, MediaError>> {
        done(Err(MediaError::EngineGone))
    }

    fn trunk_answered(&self, _: LegId, _: String) -> Pending<Result<(), MediaError>> {
        done(Err(MediaError::EngineGone))
    }

    fn route(&self, stream: StreamId, source: Option<LegId>) -> Pending<Result<(), MediaError>> {
        self.log.push(Did::Post(LegOp::Route(stream, source)));
        done(Ok(()))
    }

    fn hold(&self, stream: StreamId, on: bool) -> Pending<Result<(), MediaError>> {
        self.log.push(Did::Post(LegOp::Hold(stream, on)));
        done(Ok(()))
    }

    fn close(&self, leg: LegId) -> Pending<Result<(), MediaError>> {
        self.log.push(Did::Post(LegOp::Close(leg)));
        done(Ok(()))
    }

    fn post(&self, op: LegOp) -> Result<Pending<Result<(), MediaError>>, MediaError> {
        self.log.push(Did::Post(op));
        Ok(done(Ok(())))
    }

    fn offer_whatsapp(&self) -> Pending<Result<Answer, MediaError>> {
        done(Ok(self.answer(1)))
    }

    fn whatsapp_answered(&self, _: LegId, _: String) -> Pending<Result<(), MediaError>> {
        done(Ok(()))
    }
}

pub(crate) struct FakeGraph {
    log: Arc<Log>,
    /// How long each kind of action takes at Meta.
    pub(crate) delays: Mutex<HashMap<GraphAction, Duration>>,
}

impl GraphPort for FakeGraph {
    fn serves(&self, number: &str) -> bool {
        number == "100"
    }

    fn act(
        &self,
        _number: Option<&str>,
        call: WaCallId,
        action: GraphAction,
        _sdp: Option<String>,
        _stop: watch::Receiver<bool>,
    ) -> Pending<Result<(), GraphFailure>> {
        let delay = self
            .delays
            .lock()
            .unwrap()
            .get(&action)
            .copied()
            .unwrap_or_default();
        let log = self.log.clone();
        log.push(Did::GraphSent(call.clone(), action));
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            log.push(Did::Graph(call, action));
            Ok(())
        })
    }

    fn may_call(
        &self,
        _: Option<&str>,
        _: String,
    ) -> Pending<Result<(), crate::calls::DialRefusal>> {
        done(Ok(()))
    }

    fn ask_permission(&self, _: Option<&str>, _: String) -> Pending<Result<(), GraphFailure>> {
        done(Ok(()))
    }

    fn connect(
        &self,
        _: Option<&str>,
        to: String,
        _: String,
    ) -> Pending<Result<WaCallId, GraphFailure>> {
        done(Ok(WaCallId(format!("wacid.to-{to}"))))
    }
}

pub(crate) struct FakeRecords(pub(crate) Arc<Log>);

impl FakeRecords {
    fn events(&self, events: Vec<OutboxRow>) {
        for e in events {
            self.0.push(Did::Event(e.kind, e.order_key));
        }
    }
}

impl RecordsPort for FakeRecords {
    fn mark_live(&self, call: LiveCall, events: Vec<OutboxRow>) -> Pending<Result<(), StoreError>> {
        self.0.push(Did::MarkLive(call.call_id));
        self.events(events);
        done(Ok(()))
    }

    fn finish(
        &self,
        record: CallRecord,
        events: Vec<OutboxRow>,
    ) -> Pending<Result<Recorded, StoreError>> {
        self.0.push(Did::Finish(record.call_id, record.outcome));
        self.events(events);
        done(Ok(Recorded::New))
    }

    fn append_events(&self, events: Vec<OutboxRow>) -> Pending<Result<(), StoreError>> {
        self.events(events);
        done(Ok(()))
    }

    fn clear_live(&self, _: WaCallId) -> Pending<Result<(), StoreError>> {
        done(Ok(()))
    }

    fn put_permission(&self, _: crate::store::PermissionRow) {}
    fn change_task(&self, _: crate::store::TaskChange) {}
    fn tasks(&self) -> Pending<Result<Vec<crate::store::TaskRow>, StoreError>> {
        Box::pin(async { Ok(vec![]) })
    }
}

/// The actor, its inputs, and the fakes' log.
pub(crate) struct Rig {
    pub(crate) calls: CallsHandle,
    pub(crate) webhooks: mpsc::Sender<WaEvent>,
    pub(crate) media_events: mpsc::Sender<MediaEvent>,
    pub(crate) log: Arc<Log>,
    pub(crate) media: Arc<FakeMedia>,
    pub(crate) graph: Arc<FakeGraph>,
}

pub(crate) const RING: Duration = Duration::from_secs(15);
pub(crate) const ANSWER_DEADLINE: Duration = Duration::from_secs(25);

pub(crate) fn rig() -> Rig {
    let log = Arc::new(Log {
        t0: tokio::time::Instant::now(),
        did: Mutex::new(vec![]),
    });
    let media = Arc::new(FakeMedia {
        log: log.clone(),
        next: AtomicU32::new(1),
        whatsapp_delays: Mutex::new(VecDeque::new()),
    });
    let graph = Arc::new(FakeGraph {
        log: log.clone(),
        delays: Mutex::new(HashMap::new()),
    });
    let floor = Floor::new(
        vec![QueueConfig {
            id: "support".into(),
            policy: NoAgentPolicy::Queue {
                max_wait: Duration::from_secs(120),
            },
        }],
        "support".into(),
    );
    let cfg = CentreConfig {
        ring_timeout: RING,
        answer_deadline: ANSWER_DEADLINE,
        ..CentreConfig::default()
    };
    let deps = Deps {
        media: media.clone(),
        graph: graph.clone(),
        store: Arc::new(FakeRecords(log.clone())),
        phone_number_id: "100".into(),
        link: None,
        node: "node-test".into(),
        events: None,
    };
    let (webhooks, webhooks_rx) = mpsc::channel(64);
    let (media_events, media_rx) = mpsc::channel(64);
    let (calls, _task) = spawn(cfg, floor, deps, webhooks_rx, media_rx);
    Rig {
        calls,
        webhooks,
        media_events,
        log,
        media,
        graph,
    }
}

pub(crate) fn offered(call: &str) -> WaEvent {
    WaEvent::CallOffered {
        call_id: call.into(),
        phone_number_id: Some("100".into()),
        display_phone_number: Some("15550100".into()),
        from: Some("15551234567".into()),
        to: Some("15550100".into()),
        caller_name: Some("Caller".into()),
        offer_sdp: "v=0 meta offer".into(),
        timestamp: None,
        deeplink_payload: None,
        cta_payload: None,
        received_at: None,
        agent: None,
        unshared: false,
    }
}

pub(crate) fn terminated(call: &str) -> WaEvent {
    WaEvent::CallTerminated {
        call_id: call.into(),
        status: None,
        duration: None,
        start_time: None,
        end_time: None,
        errors: vec![],
        biz_opaque_callback_data: None,
    }
}

/// The next notice that `wanted` picks, skipping the others.
pub(crate) async fn notice<T>(
    rx: &mut mpsc::Receiver<Notice>,
    wanted: impl Fn(&Notice) -> Option<T>,
) -> T {
    loop {
        let n = rx.recv().await.expect("the session is open");
        if let Some(t) = wanted(&n) {
            return t;
        }
    }
}

/// Lets every task run until nothing is left to do now (the clock does not move: each wait is
/// for a millisecond nobody's timer falls in).
pub(crate) async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

impl Rig {
    /// `who` signed in to support, their browser's audio connected: available.
    pub(crate) async fn agent(&self, who: &str) -> mpsc::Receiver<Notice> {
        let (_, mut rx) = self
            .calls
            .join(who.into(), Role::Agent, vec!["support".into()])
            .await
            .unwrap();
        self.calls
            .offer(who.into(), "v=0 browser offer".into())
            .await
            .unwrap();
        let leg = self
            .log
            .all()
            .iter()
            .rev()
            .find_map(|(_, d)| match d {
                Did::AnswerBrowser(l) => Some(*l),
                _ => None,
            })
            .unwrap();
        self.media_events
            .send(MediaEvent::Connected { leg })
            .await
            .unwrap();
        self.calls
            .command(
                who.into(),
                Command::SetPresence {
                    available: true,
                    reason: None,
                },
            )
            .await
            .unwrap();
        notice(&mut rx, |n| {
            matches!(n, Notice::Presence(Presence::Available)).then_some(())
        })
        .await;
        rx
    }

    /// The WhatsApp leg the engine answered for the `n`th call offered (0-based).
    pub(crate) fn wa_leg(&self, n: usize) -> LegId {
        self.log
            .all()
            .iter()
            .filter_map(|(_, d)| match d {
                Did::AnswerWhatsApp(l) => Some(*l),
                _ => None,
            })
            .nth(n)
            .expect("answered")
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.log.t0.elapsed()
    }
}
