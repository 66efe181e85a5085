use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::*;
use crate::accounts::{Account, EndpointDef, SealKey};
use crate::config::Secret;

/// The Standard Webhooks specification's own example (its libraries test with it).
#[test]
fn the_signature_is_the_specifications() {
    let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    assert_eq!(
        sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#
        ),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
    // Any byte of the body changed, any other id or time: another signature.
    assert_ne!(
        sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232315}"#
        ),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
    assert_ne!(
        sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265331,
            r#"{"test": 2432232314}"#
        ),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
}

#[test]
fn secrets_are_whsec_and_32_random_bytes() {
    let a = new_secret();
    let b = new_secret();
    assert!(a.starts_with("whsec_"));
    assert_ne!(a, b);
    assert_eq!(secret_key(&a).unwrap().len(), 32);
    assert_eq!(secret_key("whsec_"), None);
    assert_eq!(secret_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), None);
    assert_eq!(secret_key("whsec_not base64!"), None);
}

#[test]
fn timestamps_are_iso_8601_utc_to_the_millisecond() {
    assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(iso8601(1_614_265_330_123), "2021-02-25T15:02:10.123Z");
    assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
    assert_eq!(iso8601(1_796_601_599_999), "2026-12-06T23:59:59.999Z");
    assert_eq!(iso8601(-1), "1969-12-31T23:59:59.999Z");
}

#[test]
fn a_payload_is_type_timestamp_and_data() {
    let body = payload(
        EventType::CallRinging,
        1_614_265_330_123,
        serde_json::json!({"call_id": "wacid.1"}),
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["type"], "call.ringing");
    assert_eq!(v["timestamp"], "2021-02-25T15:02:10.123Z");
    assert_eq!(v["data"]["call_id"], "wacid.1");
}

#[test]
fn every_type_parses_back_from_its_name() {
    for t in EventType::ALL {
        assert_eq!(EventType::parse(t.as_str()), Some(t));
    }
    assert_eq!(EventType::parse("call.exploded"), None);
}

#[test]
fn retries_back_off_sixfold_to_eight_hours_and_use_the_whole_window() {
    let p = RetryPolicy::default();
    assert_eq!(p.gap(1), Duration::from_secs(5));
    assert_eq!(p.gap(2), Duration::from_secs(30));
    assert_eq!(p.gap(3), Duration::from_secs(180));
    assert_eq!(p.gap(6), RetryPolicy::MAX_GAP);
    assert_eq!(p.gap(1000), RetryPolicy::MAX_GAP);
    // Walk a failing event through its window: every gap at least the one before, the last
    // attempt at the window's end, nothing after it.
    let (since, end) = (1_000_000i64, 1_000_000 + 24 * 3600 * 1000);
    let mut now = since;
    let mut attempts = vec![now];
    let mut failures = 0;
    while let Some(next) = p.next_attempt(failures + 1, since, now) {
        failures += 1;
        assert!(next > now);
        now = next;
        attempts.push(now);
    }
    assert_eq!(
        *attempts.last().unwrap(),
        end,
        "the last try is at the end of the window"
    );
    assert!(
        (7..=12).contains(&attempts.len()),
        "{} attempts",
        attempts.len()
    );
    let gaps: Vec<i64> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    for w in gaps.windows(2).take(gaps.len().saturating_sub(2)) {
        assert!(w[1] >= w[0], "gaps shrink: {gaps:?}");
    }
    // Redelivered by hand: a new window from then.
    assert!(p.next_attempt(50, end + 10, end + 10).is_some());
}

fn endpoint(id: &str, types: &[&str], enabled: bool, key: &SealKey, acme: &Account) -> EndpointDef {
    EndpointDef {
        id: id.into(),
        url: "https://hooks.example.com/switchboard".into(),
        description: String::new(),
        types: types.iter().map(|t| (*t).to_owned()).collect(),
        enabled,
        disabled_reason: None,
        secret: key.seal(&acme.slug, &Secret::new(new_secret())),
        created_at: 0,
        created_by: "test".into(),
    }
}

#[test]
fn an_event_goes_to_each_enabled_endpoint_of_its_account_that_takes_it() {
    let key = SealKey::from_base64(&base64::prelude::BASE64_STANDARD.encode([7u8; 32])).unwrap();
    let mut acme = crate::accounts::tests::account("acme", &["1"]);
    acme.endpoints = vec![
        endpoint("ep_0000000000000001", &[], true, &key, &acme),
        endpoint("ep_0000000000000002", &["call.ended"], true, &key, &acme),
        endpoint("ep_0000000000000003", &[], false, &key, &acme),
    ];
    let other = crate::accounts::tests::account("other", &["2"]);
    let targets = Targets::of(&[acme, other], Some(&key));
    let mut enabled: Vec<&str> = targets.enabled().collect();
    enabled.sort_unstable();
    assert_eq!(enabled, ["ep_0000000000000001", "ep_0000000000000002"]);
    let (_tx, rx) = watch::channel(Arc::new(targets));
    let emitter = Emitter::new(rx, Arc::new(Notify::new()));

    let mut made = false;
    let rows = emitter.rows(EventType::CallRinging, "acme", "wacid.1", 5, || {
        made = true;
        serde_json::json!({})
    });
    assert!(made);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].endpoint, "ep_0000000000000001");
    assert_eq!(rows[0].order_key, "wacid.1");
    assert_eq!(rows[0].kind, "call.ringing");

    let rows = emitter.rows(EventType::CallEnded, "acme", "wacid.1", 6, || {
        serde_json::json!({})
    });
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0].msg_id, rows[1].msg_id,
        "one message, one id, every endpoint"
    );
    assert_eq!(rows[0].payload, rows[1].payload);

    // No endpoint: nothing is made, not even the body.
    let rows = emitter.rows(EventType::CallEnded, "other", "wacid.2", 7, || {
        unreachable!("no body is made for an account with no endpoint")
    });
    assert!(rows.is_empty());

    // A secret that does not open (another key): the endpoint gets nothing.
    let mut acme = crate::accounts::tests::account("acme", &["1"]);
    acme.endpoints = vec![endpoint("ep_0000000000000001", &[], true, &key, &acme)];
    let wrong = SealKey::from_base64(&base64::prelude::BASE64_STANDARD.encode([8u8; 32])).unwrap();
    assert_eq!(
        Targets::of(&[acme.clone()], Some(&wrong)).enabled().count(),
        0
    );
    assert_eq!(Targets::of(&[acme], None).enabled().count(), 0);
}

// ---- the delivery task, on simulated time, over an outbox in memory ----

mod delivery {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;
    use crate::calls::Pending;
    use crate::events::deliver::{Answer, Deliverer, Transport};
    use crate::store::{DeliveryQuery, DeliveryStatus, StoreHandle};

    const EP: &str = "ep_00000000000000aa";

    /// An attempt as [`Receiver`] keeps it: when, the message, its type, whether it was taken,
    /// whether its signature was right.
    type Attempt = (Duration, String, String, bool, bool);

    /// A receiver that refuses everything until `up_at`, and keeps every attempt: when, which
    /// message, of which type, whether it was taken, and whether its signature was right.
    struct Receiver {
        up_at: Option<tokio::time::Instant>,
        t0: tokio::time::Instant,
        key: Vec<u8>,
        log: Mutex<Vec<Attempt>>,
        /// Told of every attempt (the test waits on it: a timer of the test's own would let
        /// the paused clock run ahead while the outbox's thread works).
        progress: Arc<Notify>,
    }

    impl Transport for Receiver {
        fn post(
            &self,
            _url: String,
            headers: Vec<(&'static str, String)>,
            body: String,
        ) -> Pending<Answer> {
            let h: HashMap<&str, String> = headers.into_iter().collect();
            let ts: i64 = h["webhook-timestamp"].parse().unwrap();
            let signed = sign(&self.key, &h["webhook-id"], ts, &body) == h["webhook-signature"];
            let kind = serde_json::from_str::<serde_json::Value>(&body).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned();
            let now = tokio::time::Instant::now();
            let up = self.up_at.is_some_and(|t| now >= t);
            self.log.lock().unwrap().push((
                now - self.t0,
                h["webhook-id"].clone(),
                kind,
                up,
                signed,
            ));
            self.progress.notify_one();
            Box::pin(async move {
                if up {
                    Ok(204)
                } else {
                    Err("could not connect: connection refused".to_owned())
                }
            })
        }
    }

    struct Rig {
        store: StoreHandle,
        emitter: Emitter,
        receiver: Arc<Receiver>,
        disabled: Arc<Mutex<Vec<(String, String, String)>>>,
        stop: tokio_util::sync::CancellationToken,
    }

    async fn rig(up_after: Option<Duration>, policy: RetryPolicy) -> Rig {
        let seal =
            SealKey::from_base64(&base64::prelude::BASE64_STANDARD.encode([7u8; 32])).unwrap();
        let mut acme = crate::accounts::tests::account("acme", &["1"]);
        let secret = new_secret();
        let mut e = endpoint(EP, &[], true, &seal, &acme);
        e.secret = seal.seal(&acme.slug, &Secret::new(secret.clone()));
        acme.endpoints = vec![e];
        let (_tx, targets) = watch::channel(Arc::new(Targets::of(&[acme], Some(&seal))));
        std::mem::forget(_tx);
        let wake = Arc::new(Notify::new());
        let (store, driver) = StoreHandle::open_in_memory().await.unwrap();
        std::mem::forget(driver);
        let t0 = tokio::time::Instant::now();
        let progress = Arc::new(Notify::new());
        let receiver = Arc::new(Receiver {
            up_at: up_after.map(|d| t0 + d),
            t0,
            key: secret_key(&secret).unwrap(),
            log: Mutex::default(),
            progress: progress.clone(),
        });
        let disabled = Arc::new(Mutex::new(vec![]));
        let said = disabled.clone();
        let told = progress.clone();
        let stop = tokio_util::sync::CancellationToken::new();
        let deliverer = Deliverer {
            store: store.clone(),
            transport: receiver.clone(),
            targets: targets.clone(),
            wake: wake.clone(),
            policy,
            timeout: Duration::from_secs(10),
            node: "n1".into(),
            disable: Arc::new(move |a, e, why| {
                said.lock().unwrap().push((a, e, why));
                told.notify_one();
                Box::pin(async { Ok(()) })
            }),
        };
        tokio::spawn(deliverer.run(stop.clone()));
        Rig {
            store,
            emitter: Emitter::new(targets, wake),
            receiver,
            disabled,
            stop,
        }
    }

    async fn log_of(rig: &Rig) -> Vec<crate::store::Delivery> {
        rig.store
            .deliveries(DeliveryQuery {
                account: "acme".into(),
                endpoint: EP.into(),
                status: None,
                before: None,
                limit: 100,
            })
            .await
            .unwrap()
    }

    const STEPS: [EventType; 4] = [
        EventType::CallOffered,
        EventType::CallRinging,
        EventType::CallAnswered,
        EventType::CallEnded,
    ];

    /// Each call's steps, written as the records line writes them.
    async fn calls(rig: &Rig, ids: &[&str]) -> HashMap<String, (String, String)> {
        let mut by_id = HashMap::new();
        let now = crate::events::deliver::UnixClock::start().now_ms();
        for (i, kind) in STEPS.iter().enumerate() {
            for call in ids {
                let rows = rig.emitter.rows(
                    *kind,
                    "acme",
                    call,
                    now + i as i64,
                    || serde_json::json!({ "call_id": call }),
                );
                assert_eq!(rows.len(), 1);
                by_id.insert(
                    rows[0].msg_id.clone(),
                    ((*call).to_owned(), kind.as_str().to_owned()),
                );
                rig.store.append_events(rows).await.unwrap();
                rig.emitter.written();
            }
        }
        by_id
    }

    /// Waits, on no timer of its own, until `done` after some attempt; a real-time watchdog
    /// ends the test binary should it never come (simulated time cannot bound it).
    async fn until(rig: &Rig, what: &'static str, mut done: impl FnMut() -> bool) {
        let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = finished.clone();
        std::thread::spawn(move || {
            for _ in 0..300 {
                std::thread::sleep(std::time::Duration::from_secs(1));
                if flag.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
            }
            eprintln!("never: {what}");
            std::process::exit(101);
        });
        while !done() {
            rig.receiver.progress.notified().await;
        }
        finished.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    #[tokio::test(start_paused = true)]
    async fn a_receiver_down_for_a_minute_then_up_gets_every_event_in_order_with_its_first_id() {
        let policy = RetryPolicy {
            first: Duration::from_secs(1),
            retry_for: Duration::from_secs(24 * 3600),
        };
        let rig = rig(Some(Duration::from_secs(60)), policy).await;
        let by_id = calls(&rig, &["c1", "c2", "c3"]).await;
        let taken = |r: &Receiver| r.log.lock().unwrap().iter().filter(|a| a.3).count();
        until(&rig, "every event taken", || {
            taken(&rig.receiver) == by_id.len()
        })
        .await;
        let log = rig.receiver.log.lock().unwrap().clone();
        assert!(log.iter().all(|a| a.4), "every attempt is signed right");
        // Down: only each call's first event was tried (the others wait behind it), again and
        // again with the same id.
        let down: Vec<_> = log.iter().filter(|a| !a.3).collect();
        assert!(
            down.len() >= 3 * 4,
            "{} attempts while down: {log:?}",
            down.len()
        );
        assert!(down.iter().all(|a| a.2 == "call.offered"), "{down:?}");
        assert!(down.iter().all(|a| a.0 < Duration::from_secs(60)));
        for a in &down {
            assert!(
                log.iter().any(|b| b.3 && b.1 == a.1),
                "{} was retried until taken",
                a.1
            );
        }
        // Up: each message taken once, each call's in the order they happened, and soon
        // after the receiver came back (within one back-off gap).
        let ok: Vec<_> = log.iter().filter(|a| a.3).collect();
        let ids: std::collections::HashSet<_> = ok.iter().map(|a| &a.1).collect();
        assert_eq!(ids.len(), by_id.len(), "none twice, none lost");
        for call in ["c1", "c2", "c3"] {
            let order: Vec<&str> = ok
                .iter()
                .filter(|a| by_id[&a.1].0 == call)
                .map(|a| a.2.as_str())
                .collect();
            assert_eq!(order, STEPS.map(|s| s.as_str()), "{call}");
        }
        let first_up = ok.first().unwrap().0;
        assert!(first_up >= Duration::from_secs(60));
        assert!(
            first_up <= Duration::from_secs(60) + policy.gap(5) + Duration::from_secs(60),
            "{first_up:?}"
        );
        // The log says so too, once the last answers are kept.
        let mut rows = vec![];
        for _ in 0..1000 {
            rows = log_of(&rig).await;
            if rows.iter().all(|r| r.status == DeliveryStatus::Delivered) {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(rows.len(), by_id.len());
        assert!(
            rows.iter().all(|r| r.status == DeliveryStatus::Delivered),
            "{rows:?}"
        );
        assert!(rows
            .iter()
            .any(|r| r.attempts > 3 && r.kind == "call.offered"));
        assert!(rig.disabled.lock().unwrap().is_empty());
        rig.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn an_endpoint_failing_for_the_whole_window_is_disabled_and_its_events_held() {
        let policy = RetryPolicy {
            first: Duration::from_secs(1),
            retry_for: Duration::from_secs(600),
        };
        let rig = rig(None, policy).await;
        calls(&rig, &["c1"]).await;
        until(&rig, "the endpoint disabled", || {
            !rig.disabled.lock().unwrap().is_empty()
        })
        .await;
        let (account, endpoint, why) = rig.disabled.lock().unwrap()[0].clone();
        assert_eq!((account.as_str(), endpoint.as_str()), ("acme", EP));
        assert!(why.contains("connection refused"), "{why}");
        let log = rig.receiver.log.lock().unwrap().clone();
        let last = log.last().unwrap().0;
        assert!(
            // The window runs from when the events happened, a moment after the log's start.
            last >= Duration::from_secs(599) && last < Duration::from_secs(700),
            "{last:?}"
        );
        let mut rows = vec![];
        for _ in 0..1000 {
            rows = log_of(&rig).await;
            if rows.iter().all(|r| r.status != DeliveryStatus::Pending) {
                break;
            }
            tokio::task::yield_now().await;
        }
        let status: Vec<_> = rows
            .iter()
            .rev()
            .map(|r| (r.kind.as_str(), r.status))
            .collect();
        assert_eq!(
            status,
            [
                ("call.offered", DeliveryStatus::Failed),
                ("call.ringing", DeliveryStatus::Paused),
                ("call.answered", DeliveryStatus::Paused),
                ("call.ended", DeliveryStatus::Paused),
            ]
        );
        rig.stop.cancel();
    }
}
