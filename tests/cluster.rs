//! A node configured for several (`SWITCHBOARD_REDIS_URL`) against a real `redis-server`:
//! ready while Redis answers; Redis killed mid-call: `/readyz` 503 at once, a new call is
//! declined, and the call in progress carries on to its end and its record; Redis back: ready
//! again. A Redis that is not
//! there at start stops start-up with the setting named, never its password.

mod common;

use std::time::Duration;

use switchboard::app;
use switchboard::config::{Config, Secret, Settings};
use switchboard::store::Outcome;

const LONG: Duration = Duration::from_secs(10);

async fn readyz(running: &app::Running) -> (u16, String) {
    let r = reqwest::Client::new()
        .get(format!("http://{}/readyz", running.http_addr))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Polls `/readyz` (each answer is fresh: there is no event for it) until its status is `want`.
async fn readyz_becomes(running: &app::Running, want: u16) -> String {
    common::eventually(&format!("/readyz {want}"), LONG, || async {
        let (status, body) = readyz(running).await;
        (status == want).then_some(body)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_lost_mid_call_unreadies_the_node_and_the_call_carries_on() {
    let mut redis = common::Redis::start();
    let config = Config::from_settings(common::loopback(Settings {
        redis_url: Some(Secret::new(redis.url())),
        node_id: Some("node-a".into()),
        ..Settings::default()
    }))
    .unwrap();
    let running = app::start(config).await.unwrap();
    assert_eq!(readyz(&running).await.0, 200);
    let sim = running.simulator.clone().unwrap();
    let mut agent = common::sign_in(&running, "agent1").await;
    let call = common::held_call(&sim).await;
    let id = agent.ringing(LONG).await.expect("the call rings");
    assert_eq!(id, call.call_id.0);
    agent.answer(&id, LONG).await.unwrap();

    redis.stop();
    let body = readyz_becomes(&running, 503).await;
    assert!(body.contains("Redis"), "{body}");
    // A new call is declined the documented way: Graph `reject` at once (Meta shows the
    // caller the business is unavailable), recorded as declined with the reason.
    let new = common::held_call(&sim).await;
    let declined = common::record_of(&running.store, &new.call_id, LONG).await;
    assert_eq!(declined.outcome, Outcome::Declined);
    assert!(
        declined.end_reason.contains("Redis"),
        "{}",
        declined.end_reason
    );
    // The reject is sent concurrently with the record: wait for it (each request is a fresh
    // look at the fake Graph API's log; there is no event for it here).
    common::eventually("no reject for the new call", LONG, || async {
        sim.graph()
            .requests()
            .iter()
            .any(|r| {
                r.call_id.as_ref() == Some(&new.call_id)
                    && r.action.as_ref().is_some_and(|a| a.as_str() == "reject")
            })
            .then_some(())
    })
    .await;
    // The call in progress is untouched: the caller still hears the agent after the loss.
    let peer = call.peer().expect("the caller's media");
    let heard = peer.status().packets_received;
    peer.wait_for(LONG, |s| s.packets_received > heard + 25)
        .await
        .expect("audio keeps flowing without Redis");
    call.hang_up().await;
    let ended = common::record_of(&running.store, &call.call_id, LONG).await;
    assert_eq!(ended.outcome, Outcome::Answered);

    // Redis back on the same address: the node reconnects by itself and is ready again.
    let _redis = redis.restart();
    readyz_becomes(&running, 200).await;
    running.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_redis_stops_start_up_without_showing_its_password() {
    let config = Config::from_settings(common::loopback(Settings {
        redis_url: Some(Secret::new("redis://:pw-XYZZY@127.0.0.1:1/0")),
        ..Settings::default()
    }))
    .unwrap();
    let err = app::start(config).await.err().expect("start-up fails");
    let text = err.to_string();
    assert!(text.contains("SWITCHBOARD_REDIS_URL"), "{text}");
    assert!(!text.contains("XYZZY"), "{text}");
}

/// A node that dies (here: node-a, which marked a call live in the shared records and renewed
/// its lease once, then went silent, as a SIGKILLed process does) has its call ended at Meta by
/// node-b within the lease, and the record says which node stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_calls_are_ended_at_meta_by_another_and_recorded() {
    use switchboard::store::{CallStore, LiveCall, PostgresStore};

    let redis = common::Redis::start();
    let pg = common::Postgres::start();
    let url = pg.database("takeover");
    // node-a: one live call, one lease renewal, then nothing.
    let dead_call = LiveCall {
        call_id: switchboard::ids::WaCallId("wacid.ORPHAN".into()),
        business_number: "115017831530658".into(),
        started_at: 1_700_000_000_000,
        known: None,
    };
    // Marked when offered, then again when agent7 answered: what node-a knew by then.
    let mut known = common::call_record(1, Outcome::Answered, "support", &["agent7"]);
    known.call_id = dead_call.call_id.clone();
    known.started_at = dead_call.started_at;
    known.answered_at = Some(dead_call.started_at + 4_000);
    known.transitions = vec![
        ("offered", 0, None),
        ("ringing", 1_000, Some("agent7")),
        ("talking", 4_000, Some("agent7")),
        ("ended", 9_000, None),
    ]
    .into_iter()
    .map(|(state, after, agent)| switchboard::store::Transition {
        state: state.into(),
        at: dead_call.started_at + after,
        agent: agent.map(Into::into),
    })
    .collect();
    let answered = LiveCall {
        known: Some(Box::new(known.clone())),
        ..dead_call.clone()
    };
    {
        let (url, call) = (url.clone(), dead_call.clone());
        std::thread::spawn(move || {
            let mut store = PostgresStore::connect(&url, "node-a").unwrap();
            store.mark_live(&call).unwrap();
            store.mark_live(&answered).unwrap();
        })
        .join()
        .unwrap();
    }
    let node_a = switchboard::cluster::Cluster::connect(&redis.url(), "node-a")
        .await
        .unwrap();
    node_a.renew_lease(Duration::from_secs(1)).await.unwrap();
    drop(node_a);

    let config = Config::from_settings(common::loopback(Settings {
        redis_url: Some(Secret::new(redis.url())),
        database_url: Some(Secret::new(url)),
        node_id: Some("node-b".into()),
        node_lease: Some(1.0),
        ..Settings::default()
    }))
    .unwrap();
    let running = app::start(config).await.unwrap();
    // node-b's own start-up ends none of node-a's calls: they are node-a's until its lease ends.
    let sim = running.simulator.clone().unwrap();
    let record = common::record_of(&running.store, &dead_call.call_id, LONG).await;
    assert_eq!(record.outcome, Outcome::Failed);
    assert!(
        record.end_reason.contains("node-a"),
        "{}",
        record.end_reason
    );
    // The record keeps what node-a knew, names it, and ends now rather than at the mark.
    assert_eq!(record.node.as_deref(), Some("node-a"));
    assert_eq!(record.caller_number, known.caller_number);
    assert_eq!(record.queue.as_deref(), Some("support"));
    assert_eq!(record.agents, vec!["agent7".to_owned()]);
    assert_eq!(record.answered_at, known.answered_at);
    let states: Vec<&str> = record
        .transitions
        .iter()
        .map(|t| t.state.as_str())
        .collect();
    assert_eq!(states, ["offered", "ringing", "talking", "ended"]);
    assert!(record.ended_at > known.transitions[3].at, "{record:?}");
    // Meta was told: the fake Graph API saw a terminate for exactly that call.
    let terminated = sim.graph().requests().iter().any(|r| {
        r.call_id.as_ref() == Some(&dead_call.call_id)
            && r.action.as_ref().is_some_and(|a| a.as_str() == "terminate")
    });
    assert!(terminated, "{:?}", sim.graph().requests());
    assert!(running
        .store
        .live_calls_of("node-a")
        .await
        .unwrap()
        .is_empty());
    running.shutdown().await;
}

/// The queue order in Redis, through `Cluster` directly: a waiting call gets an agent only when
/// it is the oldest waiting (calls that began in the same millisecond are ordered by id, and
/// the one refused is told which call goes first and whose it is); a new call gets none while
/// any call waits; a dead node's waiting call drops out of the order; an agent claimed and
/// given back is next in line again.
#[tokio::test]
async fn the_shared_queue_serves_the_oldest_call_first() {
    use switchboard::cluster::{Claim, Cluster, Idle};
    use switchboard::ids::WaCallId;

    let redis = common::Redis::start();
    let a = Cluster::connect(&redis.url(), "node-a").await.unwrap();
    let b = Cluster::connect(&redis.url(), "node-b").await.unwrap();
    for n in [&a, &b] {
        n.renew_lease(Duration::from_secs(30)).await.unwrap();
    }
    let idle = |agent: &str, since_ms| Idle {
        agent: agent.into(),
        since_ms,
        queues: vec!["support".into()],
    };
    b.offer_agent(&idle("bob", 1_000), true).await.unwrap();
    b.offer_agent(&idle("bea", 2_000), true).await.unwrap();
    let (x, y) = (WaCallId("wacid.X".into()), WaCallId("wacid.Y".into()));
    // Same millisecond: X before Y by id.
    a.offer_waiting("support", &y, 5_000).await.unwrap();
    a.offer_waiting("support", &x, 5_000).await.unwrap();
    assert_eq!(
        a.claim_agent_for("support", &y).await.unwrap(),
        Claim::Older {
            call: x.clone(),
            node: "node-a".into()
        }
    );
    assert!(
        b.claim_agent("support").await.unwrap().is_none(),
        "calls wait"
    );
    let Claim::Agent(first) = a.claim_agent_for("support", &x).await.unwrap() else {
        panic!("X is the oldest");
    };
    assert_eq!(
        (first.agent.as_str(), first.node.as_str()),
        ("bob", "node-b")
    );
    // Given back (X did not take bob after all): bob, idle longest, is next again.
    a.give_back("bob").await.unwrap();
    let Claim::Agent(second) = a.claim_agent_for("support", &y).await.unwrap() else {
        panic!("Y is the oldest now");
    };
    assert_eq!(second.agent, "bob");
    // Nobody waits: a new call takes the next agent.
    assert_eq!(
        b.claim_agent("support").await.unwrap().unwrap().agent,
        "bea"
    );

    // A waiting call of a node whose lease ran out does not hold up the queue.
    let c = Cluster::connect(&redis.url(), "node-c").await.unwrap();
    c.renew_lease(Duration::from_millis(50)).await.unwrap();
    c.offer_waiting("support", &WaCallId("wacid.OLD".into()), 1)
        .await
        .unwrap();
    b.offer_agent(&idle("bob", 3_000), true).await.unwrap();
    a.offer_waiting("support", &x, 6_000).await.unwrap();
    assert!(matches!(
        a.claim_agent_for("support", &x).await.unwrap(),
        Claim::Older { .. }
    ));
    // Once node-c's lease has run out in Redis, its call no longer holds up the queue.
    common::eventually("the dead node's waiting call drops out", LONG, || async {
        matches!(
            a.claim_agent_for("support", &x).await.unwrap(),
            Claim::Agent(_)
        )
        .then_some(())
    })
    .await;
}
