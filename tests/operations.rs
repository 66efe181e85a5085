//! Operations over real HTTP: `/healthz` and `/readyz`, and a Prometheus scrape after a call
//! that finds the documented series with the values that call implies. One test in this file:
//! the process's metrics recorder is shared by everything in it.

mod common;

use common::LONG;
use switchboard::config::Settings;
use switchboard::signaling::protocol::ClientMsg;
use switchboard::whatsapp::simulator::CallPhase;

const QUALITY: &str = r#"switchboard_meta_quality_events_total{event="account_restriction",type="restricted_user_initiated_calling_call_button_hidden"}"#;

/// `promtool check metrics` (Debian's prometheus package; scripts/deps installs it) finds
/// nothing wrong with a real scrape: names, units, types, help.
fn promtool_checks(scrape: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs (Debian's prometheus package: scripts/deps installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool check metrics: {said}");
    assert!(said.trim().is_empty(), "promtool check metrics: {said}");
}

/// Every metric a Grafana panel (deploy/grafana) queries is in a real scrape.
fn dashboard_metrics_are_scraped(scrape: &str) {
    fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                        _ => exprs(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
            _ => {}
        }
    }
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/grafana/dashboards/switchboard.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("the dashboard")).unwrap();
    let mut all = vec![];
    exprs(&dashboard, &mut all);
    assert!(all.len() >= 10, "the dashboard's panels query: {all:?}");
    let mut names = std::collections::BTreeSet::new();
    for e in &all {
        for (i, _) in e.match_indices("switchboard_") {
            let name: String = e[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            names.insert(name);
        }
    }
    for name in &names {
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        assert!(
            scrape.contains(&format!("# TYPE {base} ")),
            "the dashboard queries {name}, which a scrape does not have"
        );
    }
}

use common::metric_value as value;

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
    let call = common::held_call(&sim).await;
    let id = agent.ringing(LONG).await.unwrap();
    agent.answer(&id, LONG).await.unwrap();
    agent
        .media()
        .wait_for(LONG, |s| s.packets_received > 50)
        .await
        .expect("the agent hears the caller");
    agent.send(ClientMsg::HangUp { call_id: id }).await.unwrap();
    call.wait_for(LONG, |p| matches!(p, CallPhase::Ended { .. }))
        .await
        .unwrap();

    // Meta's calling-quality notice (§9) and a forged webhook.
    let hidden = r#"{"object":"whatsapp_business_account","entry":[{"id":"0","time":1641848059,
        "changes":[{"field":"account_update","value":{"phone_number":"16505552771",
        "event":"ACCOUNT_RESTRICTION","restriction_info":[{"restriction_type":
        "RESTRICTED_USER_INITIATED_CALLING_CALL_BUTTON_HIDDEN"}]}}]}]}"#;
    let post = |body: &'static str, signature: String| {
        http.post(format!("http://{}/webhooks/whatsapp", running.http_addr))
            .header("x-hub-signature-256", signature)
            .body(body)
            .send()
    };
    let signed = switchboard::whatsapp::webhook::sign(common::APP_SECRET, hidden.as_bytes());
    assert_eq!(post(hidden, signed).await.unwrap().status(), 200);
    let forged = switchboard::whatsapp::webhook::sign("not-the-secret", hidden.as_bytes());
    assert_eq!(post(hidden, forged).await.unwrap().status(), 401);

    // The flush runs once a second: wait for it to have seen the end and the notice.
    let scrape = common::eventually_showing(
        "the flush saw the end and the notice",
        std::time::Duration::from_secs(10),
        || async {
            let scrape = get("/metrics", true).await.unwrap().text().await.unwrap();
            if value(&scrape, "switchboard_calls_active") == Some(0.0)
                && value(&scrape, r#"switchboard_agents{state="wrap_up"}"#) == Some(1.0)
                && value(&scrape, QUALITY).is_some()
            {
                Ok(scrape)
            } else {
                Err(scrape)
            }
        },
    )
    .await;
    let expect = |series: &str, want: f64| {
        assert_eq!(value(&scrape, series), Some(want), "{series} in\n{scrape}");
    };
    let at_least = |series: &str, want: f64| {
        let v = value(&scrape, series).unwrap_or(f64::NAN);
        assert!(
            v >= want,
            "{series} = {v}, want at least {want}, in\n{scrape}"
        );
    };
    // The call: one offered, answered within the service-level target, ended answered.
    expect(r#"switchboard_calls_offered_total{queue="support"}"#, 1.0);
    expect(r#"switchboard_calls_answered_total{queue="support"}"#, 1.0);
    expect(
        r#"switchboard_calls_answered_within_target_total{queue="support"}"#,
        1.0,
    );
    expect(
        r#"switchboard_calls_ended_total{queue="support",outcome="answered"}"#,
        1.0,
    );
    expect(
        r#"switchboard_calls_ended_total{queue="support",outcome="failed"}"#,
        0.0,
    );
    expect(
        r#"switchboard_queue_service_level_ratio{queue="support"}"#,
        1.0,
    );
    expect("switchboard_service_level_target_seconds", 20.0);
    expect(r#"switchboard_ring_no_answer_total{queue="support"}"#, 0.0);
    expect("switchboard_calls_active", 0.0);
    expect("switchboard_calls_per_number_cap", 1000.0);
    expect(r#"switchboard_agents{state="wrap_up"}"#, 1.0);
    expect("switchboard_draining", 0.0);
    // Its set-up: one sample of each step.
    for step in [
        "webhook_to_pre_accept",
        "answer_to_accept",
        "accept_to_first_packet",
        "answer_to_first_caller_packet",
    ] {
        expect(&format!("switchboard_setup_{step}_seconds_count"), 1.0);
        let sum = value(&scrape, &format!("switchboard_setup_{step}_seconds_sum")).unwrap();
        assert!((0.0..10.0).contains(&sum), "{step} took {sum} s");
    }
    // Its Graph calls: pre_accept, accept and terminate, each once and fine.
    for action in ["pre_accept", "accept", "terminate"] {
        expect(
            &format!(r#"switchboard_graph_requests_total{{action="{action}",outcome="ok"}}"#),
            1.0,
        );
        expect(
            &format!(r#"switchboard_graph_request_duration_seconds_count{{action="{action}"}}"#),
            1.0,
        );
    }
    expect(
        r#"switchboard_graph_requests_total{action="reject",outcome="ok"}"#,
        0.0,
    );
    // Its media: the caller's audio forwarded to the agent; the simulated agent is silent, so
    // Meta got the engine's silence.
    at_least(
        r#"switchboard_media_forwarded_packets_total{leg="browser"}"#,
        50.0,
    );
    at_least(
        r#"switchboard_media_forwarded_bytes_total{leg="browser"}"#,
        50.0 * 10.0,
    );
    expect(
        r#"switchboard_media_forwarded_packets_total{leg="whatsapp"}"#,
        0.0,
    );
    at_least(
        r#"switchboard_media_generated_packets_total{kind="silence"}"#,
        1.0,
    );
    at_least(
        r#"switchboard_media_datagrams_total{outcome="received"}"#,
        50.0,
    );
    expect(
        r#"switchboard_media_legs_failed_total{leg="whatsapp",reason="connect_timeout"}"#,
        0.0,
    );
    let busy = value(&scrape, "switchboard_media_engine_busy_ratio").unwrap();
    assert!((0.0..=1.0).contains(&busy), "busy ratio {busy}");
    // The webhooks: the call's connect and terminate (and the notice) in, the forgery out.
    at_least(r#"switchboard_webhooks_total{outcome="accepted"}"#, 2.0);
    expect(
        r#"switchboard_webhooks_total{outcome="bad_signature"}"#,
        1.0,
    );
    at_least(
        r#"switchboard_webhook_events_total{outcome="forwarded"}"#,
        1.0,
    );
    expect(QUALITY, 1.0);

    assert!(scrape.contains("# HELP switchboard_calls_ended_total"));
    assert!(scrape.contains("# TYPE switchboard_setup_webhook_to_pre_accept_seconds histogram"));
    for line in scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(line.starts_with("switchboard_"), "namespaced: {line}");
        assert!(!line.contains("wacid"), "no call id as a label: {line}");
        assert!(
            !line.contains("1650555"),
            "no phone number as a label: {line}"
        );
    }
    promtool_checks(&scrape);
    dashboard_metrics_are_scraped(&scrape);
    running.shutdown().await;
}
