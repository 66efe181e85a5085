//! The calls actor on simulated time (`start_paused`), against fake ports for media, Graph and
//! records: what it carries out, in which order, and at which instant — no socket, no thread,
//! no wall clock. Every instant asserted is exact, because nothing but the tests' fakes and the
//! actor's own timers moves the clock.

use std::sync::atomic::AtomicU32;
use std::sync::Mutex;

use super::*;
use crate::calls::event::{GraphFailure, RingStop, Stage};
use crate::ids::StreamId;
use crate::media::Answer;
use crate::routing::{NoAgentPolicy, Presence, QueueConfig};
use crate::store::{Outcome, Recorded, StoreError};

/// What a fake port was asked to do, and when (since the rig started).
#[derive(Debug, Clone, PartialEq)]
enum Did {
    AnswerWhatsApp(LegId),
    AnswerBrowser(LegId),
    Post(LegOp),
    /// A Graph action was sent…
    GraphSent(WaCallId, GraphAction),
    /// …and Meta answered.
    Graph(WaCallId, GraphAction),
    MarkLive(WaCallId),
    Finish(WaCallId, Outcome),
}

/// Every port's log, in the order things were done.
struct Log {
    t0: tokio::time::Instant,
    did: Mutex<Vec<(Duration, Did)>>,
}

impl Log {
    fn push(&self, did: Did) {
        let at = self.t0.elapsed();
        self.did.lock().unwrap().push((at, did));
    }

    fn all(&self) -> Vec<(Duration, Did)> {
        self.did.lock().unwrap().clone()
    }

    /// Where `did` first is in the log.
    fn position(&self, did: &Did) -> Option<usize> {
        self.all().iter().position(|(_, d)| d == did)
    }

    /// When `did` was first done.
    fn when(&self, did: &Did) -> Option<Duration> {
        self.all().iter().find(|(_, d)| d == did).map(|(t, _)| *t)
    }
}

struct FakeMedia {
    log: Arc<Log>,
    next: AtomicU32,
    /// How long each WhatsApp answer takes, in order (then none).
    whatsapp_delays: Mutex<VecDeque<Duration>>,
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

fn done<T: Send + 'static>(value: T) -> Pending<T> {
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
}

struct FakeGraph {
    log: Arc<Log>,
    /// How long each kind of action takes at Meta.
    delays: Mutex<HashMap<GraphAction, Duration>>,
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
}

struct FakeRecords(Arc<Log>);

impl RecordsPort for FakeRecords {
    fn mark_live(&self, call: LiveCall) -> Pending<Result<(), StoreError>> {
        self.0.push(Did::MarkLive(call.call_id));
        done(Ok(()))
    }

    fn finish(&self, record: CallRecord) -> Pending<Result<Recorded, StoreError>> {
        self.0.push(Did::Finish(record.call_id, record.outcome));
        done(Ok(Recorded::New))
    }

    fn clear_live(&self, _: WaCallId) -> Pending<Result<(), StoreError>> {
        done(Ok(()))
    }
}

/// The actor, its inputs, and the fakes' log.
struct Rig {
    calls: CallsHandle,
    webhooks: mpsc::Sender<WaEvent>,
    media_events: mpsc::Sender<MediaEvent>,
    log: Arc<Log>,
    media: Arc<FakeMedia>,
    graph: Arc<FakeGraph>,
}

const RING: Duration = Duration::from_secs(15);
const ANSWER_DEADLINE: Duration = Duration::from_secs(25);

fn rig() -> Rig {
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

fn offered(call: &str) -> WaEvent {
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

fn terminated(call: &str) -> WaEvent {
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
async fn notice<T>(rx: &mut mpsc::Receiver<Notice>, wanted: impl Fn(&Notice) -> Option<T>) -> T {
    loop {
        let n = rx.recv().await.expect("the session is open");
        if let Some(t) = wanted(&n) {
            return t;
        }
    }
}

/// Lets every task run until nothing is left to do now (the clock does not move: each wait is
/// for a millisecond nobody's timer falls in).
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

impl Rig {
    /// `who` signed in to support, their browser's audio connected: available.
    async fn agent(&self, who: &str) -> mpsc::Receiver<Notice> {
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
    fn wa_leg(&self, n: usize) -> LegId {
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

    fn elapsed(&self) -> Duration {
        self.log.t0.elapsed()
    }
}

fn ringing(call: &str) -> impl Fn(&Notice) -> Option<()> + '_ {
    move |n| matches!(n, Notice::Ringing { call: c, .. } if c.0 == call).then_some(())
}

#[tokio::test(start_paused = true)]
async fn a_call_rings_is_answered_and_ends_with_each_step_in_order() {
    let r = rig();
    let mut alice = r.agent("alice").await;
    r.webhooks.send(offered("wacid.1")).await.unwrap();
    notice(&mut alice, ringing("wacid.1")).await;
    // Nothing here takes time: the call rings at the instant its webhook came.
    assert_eq!(r.elapsed(), Duration::ZERO);
    let call = WaCallId::from("wacid.1");
    let wa = r.wa_leg(0);
    let pre_accept = r
        .log
        .position(&Did::Graph(call.clone(), GraphAction::PreAccept))
        .expect("pre_accept sent");
    assert!(r.log.position(&Did::AnswerWhatsApp(wa)).unwrap() < pre_accept);

    r.media_events
        .send(MediaEvent::Connected { leg: wa })
        .await
        .unwrap();
    r.calls
        .command("alice".into(), Command::Answer { call: call.clone() })
        .await
        .unwrap();
    notice(&mut alice, |n| {
        matches!(n, Notice::Talking { .. }).then_some(())
    })
    .await;
    let accept = r
        .log
        .position(&Did::Graph(call.clone(), GraphAction::Accept))
        .expect("accept sent");
    // Media to the caller starts only once Meta took `accept` (reference §9).
    let sending = r
        .log
        .position(&Did::Post(LegOp::StartSending(wa)))
        .expect("sending started");
    assert!(pre_accept < accept && accept < sending, "{:?}", r.log.all());

    r.webhooks.send(terminated("wacid.1")).await.unwrap();
    notice(&mut alice, |n| {
        matches!(n, Notice::CallEnded { .. }).then_some(())
    })
    .await;
    settle().await;
    let live = r
        .log
        .position(&Did::MarkLive(call.clone()))
        .expect("marked live");
    let finished = r
        .log
        .position(&Did::Finish(call.clone(), Outcome::Answered))
        .expect("recorded as answered");
    assert!(live < finished);
    // The caller's side ended it: nothing more goes to Meta, and its leg is closed.
    let graph: Vec<GraphAction> = r
        .log
        .all()
        .into_iter()
        .filter_map(|(_, d)| match d {
            Did::Graph(c, a) if c == call => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(graph, vec![GraphAction::PreAccept, GraphAction::Accept]);
    assert!(r.log.position(&Did::Post(LegOp::Close(wa))).is_some());
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_ring_stops_at_the_ring_timeout_and_the_call_waits_in_its_queue() {
    let r = rig();
    let mut alice = r.agent("alice").await;
    r.webhooks.send(offered("wacid.2")).await.unwrap();
    notice(&mut alice, ringing("wacid.2")).await;
    let rang_at = r.elapsed();
    r.media_events
        .send(MediaEvent::Connected { leg: r.wa_leg(0) })
        .await
        .unwrap();
    let reason = notice(&mut alice, |n| match n {
        Notice::RingStopped { reason, .. } => Some(*reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, RingStop::Missed);
    // Exactly the ring timeout later, on the actor's own timer.
    assert_eq!(r.elapsed() - rang_at, RING);
    // Nobody else is free: the call is accepted into its queue at once (hold audio), well
    // within Meta's window.
    let call = WaCallId::from("wacid.2");
    settle().await;
    assert_eq!(
        r.log.when(&Did::Graph(call.clone(), GraphAction::Accept)),
        Some(RING)
    );
    assert!(RING < ANSWER_DEADLINE);
    let wa = r.wa_leg(0);
    let hold = StreamId { leg: wa, index: 0 };
    assert!(r
        .log
        .position(&Did::Post(LegOp::Hold(hold, true)))
        .is_some());
    let view = r.calls.floor().borrow().clone();
    assert_eq!(view.calls[0].state, Stage::Queued);
}

#[tokio::test(start_paused = true)]
async fn a_slow_answer_from_the_engine_holds_up_no_other_call() {
    let r = rig();
    // The engine takes 5 s to answer the first call's offer, nothing for the second.
    r.media
        .whatsapp_delays
        .lock()
        .unwrap()
        .extend([Duration::from_secs(5)]);
    let mut alice = r.agent("alice").await;
    let mut bob = r.agent("bob").await;
    r.webhooks.send(offered("wacid.slow")).await.unwrap();
    r.webhooks.send(offered("wacid.fast")).await.unwrap();
    // The second rings at once, while the first is still being answered.
    let first = tokio::select! {
        () = notice(&mut alice, ringing("wacid.fast")) => "alice",
        () = notice(&mut bob, ringing("wacid.fast")) => "bob",
    };
    assert_eq!(r.elapsed(), Duration::ZERO);
    let other = if first == "alice" {
        &mut bob
    } else {
        &mut alice
    };
    notice(other, ringing("wacid.slow")).await;
    assert_eq!(r.elapsed(), Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn a_slow_graph_action_holds_up_neither_other_calls_nor_the_floor() {
    let r = rig();
    r.graph
        .delays
        .lock()
        .unwrap()
        .insert(GraphAction::PreAccept, Duration::from_secs(3));
    let mut alice = r.agent("alice").await;
    r.webhooks.send(offered("wacid.a")).await.unwrap();
    r.webhooks.send(offered("wacid.b")).await.unwrap();
    settle().await;
    // Both pre_accepts are on their way at once, neither waiting for the other.
    for call in ["wacid.a", "wacid.b"] {
        let sent = Did::GraphSent(call.into(), GraphAction::PreAccept);
        assert_eq!(r.log.when(&sent), Some(Duration::ZERO));
    }
    // Both answers came back together, 3 s later; one of them rings.
    let rung = notice(&mut alice, |n| match n {
        Notice::Ringing { call, .. } => Some(call.clone()),
        _ => None,
    })
    .await;
    assert_eq!(r.elapsed(), Duration::from_secs(3));
    let both = [WaCallId::from("wacid.a"), WaCallId::from("wacid.b")];
    assert!(both.contains(&rung));
    for call in &both {
        assert_eq!(
            r.log
                .when(&Did::Graph(call.clone(), GraphAction::PreAccept)),
            Some(Duration::from_secs(3))
        );
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_ends_each_call_at_meta_and_records_it_after_its_live_mark() {
    let r = rig();
    let mut alice = r.agent("alice").await;
    r.webhooks.send(offered("wacid.3")).await.unwrap();
    notice(&mut alice, ringing("wacid.3")).await;
    r.media_events
        .send(MediaEvent::Connected { leg: r.wa_leg(0) })
        .await
        .unwrap();
    let call = WaCallId::from("wacid.3");
    r.calls
        .command("alice".into(), Command::Answer { call: call.clone() })
        .await
        .unwrap();
    notice(&mut alice, |n| {
        matches!(n, Notice::Talking { .. }).then_some(())
    })
    .await;
    r.calls.shutdown().await;
    let terminate = r
        .log
        .position(&Did::Graph(call.clone(), GraphAction::Terminate))
        .expect("terminated at Meta");
    let live = r.log.position(&Did::MarkLive(call.clone())).unwrap();
    let finished = r
        .log
        .all()
        .iter()
        .position(|(_, d)| matches!(d, Did::Finish(c, _) if *c == call))
        .expect("recorded");
    assert!(live < finished && terminate > live, "{:?}", r.log.all());
}

#[test]
fn the_machine_is_distrusted_after_three_panics_within_a_minute_not_three_in_a_day() {
    let t0 = Instant::now();
    let mut panics = Panics::default();
    assert!(!panics.record(t0));
    assert!(!panics.record(t0 + Duration::from_secs(30)));
    // Three, but spread over more than a minute: a rare bug, not a broken machine.
    assert!(!panics.record(t0 + Duration::from_secs(90)));
    assert!(!panics.record(t0 + Duration::from_secs(3600)));
    assert!(!panics.record(t0 + Duration::from_secs(3610)));
    // The third within a minute of the first of them.
    assert!(panics.record(t0 + Duration::from_secs(3620)));
}
