//! Operations over real HTTP: `/healthz` and `/readyz`, and a Prometheus scrape after a call
//! that finds the documented series with the values that call implies. One test in this file:
//! the process's metrics recorder is shared by everything in it.

mod common;

use common::LONG;
use switchboard::config::Settings;
use switchboard::signaling::protocol::{ClientMsg, ServerMsg};
use switchboard::whatsapp::simulator::{CallPhase, CallSpec};

/// The value of one series in a Prometheus text scrape (`name{labels}` exactly as written).
fn value(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_a_scrape_after_one_answered_call() {
    let (fake, events, mut config) = common::live_config(Settings::default()).await;
    config.auth.people = common::agents(1);
    let running = switchboard::app::start(config).await.unwrap();
    let sim = common::simulator(&running, &fake, events, None);
    let http = reqwest::Client::new();
    let get = |path: &str, on_metrics: bool| {
        let addr = if on_metrics {
            running.metrics_addr
        } else {
            running.http_addr
        };
        http.get(format!("http://{addr}{path}")).send()
    };
    assert_eq!(get("/healthz", false).await.unwrap().status(), 200);
    assert_eq!(get("/readyz", false).await.unwrap().status(), 200);
    assert_eq!(
        get("/metrics", false).await.unwrap().status(),
        404,
        "metrics are not on the public listener"
    );

    // One call, answered, talked, hung up by the agent.
    let mut agent = common::sign_in(&running, "agent1").await;
    let call = sim
        .place_call(CallSpec {
            hang_up_after: None,
            ..CallSpec::default()
        })
        .await
        .unwrap();
    let id = agent.ringing(LONG).await.unwrap();
    agent
        .send(ClientMsg::Answer {
            call_id: id.clone(),
        })
        .await
        .unwrap();
    agent
        .expect(LONG, "talking", |m| matches!(m, ServerMsg::Talking { .. }))
        .await
        .unwrap();
    agent
        .media()
        .wait_for(LONG, |s| s.packets_received > 50)
        .await
        .expect("the agent hears the caller");
    agent.send(ClientMsg::HangUp { call_id: id }).await.unwrap();
    call.wait_for(LONG, |p| matches!(p, CallPhase::Ended { .. }))
        .await
        .unwrap();

    // The flush runs once a second: wait for it to have seen the end.
    let mut scrape = String::new();
    for _ in 0..100 {
        scrape = get("/metrics", true).await.unwrap().text().await.unwrap();
        if value(&scrape, "switchboard_calls_active") == Some(0.0)
            && value(&scrape, "switchboard_calls_offered_total") == Some(1.0)
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        value(
            &scrape,
            r#"switchboard_calls_ended_total{queue="support",outcome="answered"}"#
        ),
        Some(1.0),
        "{scrape}"
    );
    assert_eq!(value(&scrape, "switchboard_calls_offered_total"), Some(1.0));
    assert_eq!(value(&scrape, "switchboard_calls_active"), Some(0.0));
    assert_eq!(
        value(&scrape, "switchboard_calls_per_number_cap"),
        Some(1000.0)
    );
    assert!(
        value(&scrape, "switchboard_media_rtp_forwarded_packets_total").unwrap_or(0.0) > 50.0,
        "packets were forwarded"
    );
    assert_eq!(
        value(&scrape, r#"switchboard_agents{state="wrap_up"}"#),
        Some(1.0),
        "the agent is in wrap-up"
    );
    assert!(scrape.contains("# HELP switchboard_calls_ended_total"));
    for line in scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(line.starts_with("switchboard_"), "namespaced: {line}");
        assert!(!line.contains("wacid"), "no call id as a label: {line}");
    }
    running.shutdown().await;
}
