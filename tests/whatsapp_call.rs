//! A running switchboard, Meta simulated around it: its webhook edge over real HTTP, and full
//! user-initiated calls from the simulator to pre_accept and connected media.

mod common;

use std::time::Duration;

use common::LONG;
use switchboard::app::{self, CallStats, Running};
use switchboard::config::Settings;
use switchboard::whatsapp::simulator::{
    CallPhase, CallSpec, FakeGraph, RecordedRequest, SimulatedCall, Simulator,
};
use switchboard::whatsapp::webhook::{sign, SIGNATURE_HEADER};

use common::{APP_SECRET, PHONE_ID, VERIFY_TOKEN};

struct World {
    running: Running,
    fake: FakeGraph,
    sim: Simulator,
    http: reqwest::Client,
    /// Signed-in agents whose browser legs count among the engine's legs.
    agents: Vec<switchboard::sim::agent::SimAgent>,
}

/// Agents signed in to every world: more than any test's concurrent calls.
const AGENTS: usize = 5;

/// switchboard with live-style credentials whose Graph URL is a fake Graph API on loopback.
async fn world() -> World {
    world_with(Settings::default()).await
}

/// [`world`], with other settings from `extra`.
async fn world_with(extra: Settings) -> World {
    let (fake, events, config) = common::live_config(extra).await;
    let mut config = config;
    config.auth.people = common::agents(AGENTS);
    let running = app::start(config).await.unwrap();
    // Agents signed in with their audio up: each call rings at one of them (none answers), so
    // every call is pre-accepted and nothing more happens at Meta.
    let mut agents = vec![];
    for i in 1..=AGENTS {
        agents.push(common::sign_in(&running, &format!("agent{i}")).await);
    }
    let sim = common::simulator(&running, &fake, events, None);
    World {
        running,
        fake,
        sim,
        agents,
        http: reqwest::Client::new(),
    }
}

fn actions(reqs: &[RecordedRequest], call_id: &str) -> Vec<(String, u16)> {
    reqs.iter()
        .filter(|r| r.call_id.as_ref().is_some_and(|c| c.0 == call_id))
        .map(|r| {
            (
                r.action
                    .as_ref()
                    .map(|a| a.as_str().to_owned())
                    .unwrap_or_default(),
                r.status,
            )
        })
        .collect()
}

/// A simulated call that never hangs up by itself, once switchboard has pre-accepted it with an
/// answer the fake Graph API takes.
async fn pre_accepted_call(w: &World) -> SimulatedCall {
    let call = common::held_call(&w.sim).await;
    call.wait_for(LONG, |p| *p == CallPhase::PreAccepted)
        .await
        .expect("switchboard pre-accepts with an answer the fake Graph API takes");
    call
}

/// Asserts that `call` is the only call switchboard took up: the one call in progress, the one
/// leg, the only call in the Graph requests.
///
/// Meant for after a marker call placed behind webhooks that must start nothing: the calls loop
/// counts a call in progress as it takes up its connect, in order, and a call stops counting
/// only after its Graph requests are made; so reading the count first, then the requests,
/// misses nothing.
async fn assert_only_call(w: &World, call: &SimulatedCall) {
    assert_eq!(
        w.running.call_stats().in_progress,
        1,
        "only the marker call"
    );
    let reqs = w.fake.requests();
    assert!(
        reqs.iter()
            .all(|r| r.call_id.as_ref() == Some(&call.call_id)),
        "Graph requests only for the marker: {reqs:?}"
    );
    assert_eq!(call_legs(w).await, 1);
}

/// The engine's legs less the signed-in agents' browser legs: the calls' WhatsApp legs.
async fn call_legs(w: &World) -> u64 {
    w.running.media.counters().await.unwrap().legs - w.agents.len() as u64
}

async fn wait_for_legs(w: &World, n: u64) {
    common::eventually(
        &format!("media legs never became {n}"),
        Duration::from_secs(5),
        || async { (call_legs(w).await == n).then_some(()) },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_handshake_on_a_running_switchboard() {
    let w = world().await;
    let url = format!("http://{}/webhooks/whatsapp", w.running.http_addr);
    let ok = w
        .http
        .get(&url)
        .query(&[
            ("hub.mode", "subscribe"),
            ("hub.verify_token", VERIFY_TOKEN),
            ("hub.challenge", "1158201444"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    let wrong = w
        .http
        .get(&url)
        .query(&[
            ("hub.mode", "subscribe"),
            ("hub.verify_token", "nope"),
            ("hub.challenge", "1158201444"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    w.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_altered_or_foreign_connects_start_nothing() {
    let w = world().await;
    let url = format!("http://{}/webhooks/whatsapp", w.running.http_addr);
    let offer = switchboard::whatsapp::sdp::SAMPLE_META_OFFER;
    let body = serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "calls", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "1555", "phone_number_id": PHONE_ID},
            "calls": [{"id": "wacid.UNSIGNED", "from": "1", "to": "2", "event": "connect",
                       "timestamp": unix_now().to_string(), "direction": "USER_INITIATED",
                       "session": {"sdp_type": "offer", "sdp": offer}}]}}]}]
    })
    .to_string();
    let good_sig = sign(APP_SECRET, body.as_bytes());
    let altered = body.replace("wacid.UNSIGNED", "wacid.UNSIGNEX");
    for (sig, b) in [
        (None, body.clone()),
        (Some("sha256=zz".to_owned()), body.clone()),
        (Some(sign("other-secret", body.as_bytes())), body.clone()),
        (Some(good_sig.clone()), altered),
    ] {
        let mut r = w.http.post(&url).body(b);
        if let Some(s) = sig {
            r = r.header(SIGNATURE_HEADER, s);
        }
        assert_eq!(r.send().await.unwrap().status(), 401);
    }
    assert_eq!(w.running.webhook_stats().refused, 4);
    // Correctly signed, but for another number of the same account: not ours to answer.
    let other = body.replace(PHONE_ID, "999999");
    let r = w
        .http
        .post(&url)
        .header(SIGNATURE_HEADER, sign(APP_SECRET, other.as_bytes()))
        .body(other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Nothing was answered: no leg, no Graph request. The marker is a signed call for our
    // number placed after them (webhooks are handled in order): once it is pre-accepted, the
    // others would have been taken up too.
    let marker = pre_accepted_call(&w).await;
    assert_only_call(&w, &marker).await;
    w.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_initiated_call_is_pre_accepted_and_its_media_connects() {
    let w = world().await;
    let call = pre_accepted_call(&w).await;
    let peer = call.peer().expect("the caller has the answer");
    peer.wait_for(LONG, |s| s.connected)
        .await
        .expect("ICE and DTLS complete between the caller and switchboard");
    assert_eq!(
        actions(&w.fake.requests(), &call.call_id.0),
        vec![("pre_accept".to_owned(), 200)]
    );
    assert_eq!(call_legs(&w).await, 1);

    // The user hangs up: Meta's terminate webhook makes switchboard close the leg.
    call.hang_up().await;
    call.wait_for(LONG, |p| matches!(p, CallPhase::Ended { .. }))
        .await
        .unwrap();
    wait_for_legs(&w, 0).await;
    w.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_400_is_not_retried_and_ends_the_call() {
    let w = world().await;
    w.fake.fail_next(1, 400, 100);
    let call = w.sim.place_call(CallSpec::default()).await.unwrap();
    // switchboard gives up on the call: it rejects it and closes its leg.
    let seen = common::eventually(
        "two Graph requests for the call",
        Duration::from_secs(5),
        || {
            let seen = actions(&w.fake.requests(), &call.call_id.0);
            std::future::ready((seen.len() >= 2).then_some(seen))
        },
    )
    .await;
    assert_eq!(seen[0], ("pre_accept".to_owned(), 400));
    assert_eq!(seen[1].0, "reject", "never accepted, so declined: {seen:?}");
    assert_eq!(
        seen.iter().filter(|(a, _)| a == "pre_accept").count(),
        1,
        "a 4xx is never retried: {seen:?}"
    );
    wait_for_legs(&w, 0).await;
    w.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_503_is_retried_and_the_call_goes_on() {
    let w = world().await;
    w.fake.fail_next(2, 503, 2);
    let call = pre_accepted_call(&w).await;
    assert_eq!(
        actions(&w.fake.requests(), &call.call_id.0),
        vec![
            ("pre_accept".to_owned(), 503),
            ("pre_accept".to_owned(), 503),
            ("pre_accept".to_owned(), 200)
        ]
    );
    call.peer()
        .unwrap()
        .wait_for(LONG, |s| s.connected)
        .await
        .expect("media connects");
    w.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reject_waits_for_the_slow_pre_accept_in_flight_which_is_then_not_retried() {
    let w = world().await;
    // A slow Graph whose first answer (the pre_accept's) will be a retryable 503.
    w.fake.set_delay(Duration::from_secs(2));
    w.fake.fail_next(1, 503, 2);
    let call = common::held_call(&w.sim).await;
    tokio::time::timeout(LONG, w.fake.wait_for_requests(1))
        .await
        .expect("the pre_accept reaches Graph");
    // Shutting down while the pre_accept is in flight ends the call: Graph reject. It goes out
    // after the pre_accept's answer, and the pre_accept is not retried after it.
    w.running.shutdown().await;
    assert_eq!(
        actions(&w.fake.requests(), &call.call_id.0),
        vec![("pre_accept".to_owned(), 503), ("reject".to_owned(), 200)]
    );
}

/// A signed webhook carrying `calls` (each `(call id, event, offer)`) in one change.
fn calls_webhook(calls: &[(String, &str, Option<String>)]) -> String {
    let calls: Vec<serde_json::Value> = calls
        .iter()
        .map(|(id, event, offer)| {
            let mut c = serde_json::json!({
                "id": id, "from": "15550002222", "to": "15550001111", "event": event,
                "timestamp": unix_now().to_string(), "direction": "USER_INITIATED"
            });
            if let Some(sdp) = offer {
                c["session"] = serde_json::json!({"sdp_type": "offer", "sdp": sdp});
            } else {
                c["status"] = serde_json::json!("Completed");
            }
            c
        })
        .collect();
    serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "calls", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": PHONE_ID},
            "contacts": [{"profile": {"name": "A"}, "wa_id": "15550002222"}],
            "calls": calls}}]}]
    })
    .to_string()
}

async fn post_signed(w: &World, body: String) {
    let r = w
        .http
        .post(format!("http://{}/webhooks/whatsapp", w.running.http_addr))
        .header(SIGNATURE_HEADER, sign(APP_SECRET, body.as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_duplicates_and_late_connects_on_a_running_switchboard() {
    use switchboard::sim::peer::PendingPeer;
    let w = world().await;
    let mut offers = vec![];
    for i in 0..4 {
        let p = PendingPeer::meta(common::LOOPBACK).await.unwrap();
        let id = format!("wacid.BATCH{i}");
        w.fake
            .register_call(switchboard::ids::WaCallId(id.clone()), p.offer().to_owned());
        offers.push((id, p.offer().to_owned()));
    }
    // Three calls in one webhook: all three are answered.
    let batch: Vec<_> = offers[..3]
        .iter()
        .map(|(id, o)| (id.clone(), "connect", Some(o.clone())))
        .collect();
    post_signed(&w, calls_webhook(&batch)).await;
    // Meta retries: the same connect again is processed once.
    post_signed(&w, calls_webhook(&batch[..1])).await;
    // A terminate before its connect: the late connect does not start a call.
    let (late_id, late_offer) = offers[3].clone();
    post_signed(&w, calls_webhook(&[(late_id.clone(), "terminate", None)])).await;
    post_signed(
        &w,
        calls_webhook(&[(late_id.clone(), "connect", Some(late_offer))]),
    )
    .await;

    wait_for_legs(&w, 3).await;
    for (id, _) in &offers[..3] {
        let seen = common::eventually(
            &format!("no Graph request for {id}"),
            Duration::from_secs(5),
            || {
                let seen = actions(&w.fake.requests(), id);
                std::future::ready((!seen.is_empty()).then_some(seen))
            },
        )
        .await;
        assert_eq!(seen, vec![("pre_accept".to_owned(), 200)], "{id}");
    }
    // The marker: a signed call placed after the late connect (webhooks are handled in order).
    // Once it is pre-accepted, a call the late connect had started would count, or would have
    // made its Graph requests already (see `assert_only_call`).
    let marker = pre_accepted_call(&w).await;
    assert_eq!(
        w.running.call_stats().in_progress,
        4,
        "the batch and the marker"
    );
    let reqs = w.fake.requests();
    assert!(actions(&reqs, &late_id).is_empty(), "{reqs:?}");
    for (id, _) in &offers[..3] {
        assert_eq!(
            actions(&reqs, id),
            vec![("pre_accept".to_owned(), 200)],
            "answered once: {id}"
        );
    }
    assert_eq!(
        actions(&reqs, &marker.call_id.0),
        vec![("pre_accept".to_owned(), 200)]
    );
    assert_eq!(call_legs(&w).await, 4);
    w.running.shutdown().await;
}

fn ended(p: &CallPhase) -> bool {
    matches!(p, CallPhase::Ended { .. })
}

async fn wait_for_calls_in_progress(w: &World, n: u64) {
    common::eventually(
        &format!("calls in progress never became {n}"),
        Duration::from_secs(5),
        || async { (w.running.call_stats().in_progress == n).then_some(()) },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_over_the_numbers_cap_is_rejected_at_once() {
    let w = world_with(Settings {
        max_calls_per_number: Some(2),
        ..Settings::default()
    })
    .await;
    let first = pre_accepted_call(&w).await;
    let _second = pre_accepted_call(&w).await;
    let third = common::held_call(&w.sim).await;
    // Meta ends a rejected call at once; its end is the marker that switchboard has decided.
    if third.wait_for(LONG, ended).await.is_none() {
        panic!(
            "the call over the cap is rejected, not left ringing: phase {:?}, {:?}, Graph {:?}",
            third.phase(),
            w.running.call_stats(),
            w.fake.requests()
        );
    }
    assert_eq!(
        actions(&w.fake.requests(), &third.call_id.0),
        vec![("reject".to_owned(), 200)],
        "rejected once, never pre-accepted"
    );
    assert_eq!(
        w.running.call_stats(),
        CallStats {
            in_progress: 2,
            rejected_at_capacity: 1
        }
    );
    assert_eq!(call_legs(&w).await, 2);

    // One call ends: the number has room again.
    first.hang_up().await;
    first.wait_for(LONG, ended).await.unwrap();
    wait_for_calls_in_progress(&w, 1).await;
    let fourth = pre_accepted_call(&w).await;
    assert_eq!(
        actions(&w.fake.requests(), &fourth.call_id.0),
        vec![("pre_accept".to_owned(), 200)]
    );
    // The rejected call's connect came before the fourth's, so had switchboard answered it
    // after all, that would show by now.
    assert_eq!(
        actions(&w.fake.requests(), &third.call_id.0),
        vec![("reject".to_owned(), 200)]
    );
    assert_eq!(
        w.running.call_stats(),
        CallStats {
            in_progress: 2,
            rejected_at_capacity: 1
        }
    );
    w.running.shutdown().await;
}

/// Now, in UNIX seconds: the `timestamp` of a webhook Meta sends now (an older connect is
/// refused as stale).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
