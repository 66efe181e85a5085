//! A node configured for several (`SWITCHBOARD_REDIS_URL`) against a real `redis-server`:
//! ready while Redis answers; Redis killed mid-call: `/readyz` 503 at once, and the call in
//! progress carries on to its end and its record; Redis back: ready again. A Redis that is not
//! there at start stops start-up with the setting named, never its password.

mod common;

use std::time::Duration;

use switchboard::app;
use switchboard::config::{Config, Secret, Settings};
use switchboard::store::{CallQuery, Outcome};

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
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let (status, body) = readyz(running).await;
        if status == want {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz stayed {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_lost_mid_call_unreadies_the_node_and_the_call_carries_on() {
    let mut redis = common::Redis::start();
    let port = redis.port;
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
    // The call in progress is untouched: the caller still hears the agent after the loss.
    let peer = call.peer().expect("the caller's media");
    let heard = peer.status().packets_received;
    peer.wait_for(LONG, |s| s.packets_received > heard + 25)
        .await
        .expect("audio keeps flowing without Redis");
    call.hang_up().await;
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let page = running.store.list(CallQuery::default()).await.unwrap();
        if let Some(r) = page.calls.iter().find(|r| r.call_id.0 == id) {
            assert_eq!(r.outcome, Outcome::Answered);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no record of {id}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // Redis back on the same address: the node reconnects by itself and is ready again.
    let _redis = common::Redis::start_on(port);
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
