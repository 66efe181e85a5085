//! The call centre's set-up times and memory, measured over real sockets on loopback (not a
//! test: it prints figures). For each of `CALLS` calls, one after another:
//! - webhook → agent rung: from the signed `connect` webhook's delivery to the agent's
//!   `ringing` message on `/ws`;
//! - answer → first caller packet at the agent: from the agent's `answer` message to the first
//!   packet of the caller's audio at the agent's PeerConnection (the WhatsApp leg connected
//!   during pre_accept, so `accept` only starts the flow).
//!
//! Then it holds `HELD` calls live at once and reports the process's resident memory per call.
//!
//! Run: `cargo bench --bench call_setup`.

use std::time::{Duration, Instant};

use switchboard::app;
use switchboard::config::{Config, Role, Secret, Settings};
use switchboard::signaling::protocol::{ClientMsg, ServerMsg};
use switchboard::sim::agent::SimAgent;
use switchboard::whatsapp::simulator::{
    CallPhase, CallSpec, FakeGraph, Simulator, SimulatorConfig,
};

const CALLS: usize = 30;
const HELD: usize = 100;
const PASSWORD: &str = "bench-password";

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: then a quick run.
    let quick = !std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(run(quick));
}

async fn run(quick: bool) {
    let (calls, held) = if quick { (2, 4) } else { (CALLS, HELD) };
    let fake = FakeGraph::new("bench-token", "123456789012345");
    let events = fake.take_events().expect("untaken");
    let (graph_addr, _server) = fake
        .clone()
        .serve((std::net::Ipv4Addr::LOCALHOST, 0).into())
        .await
        .expect("fake graph");
    let mut config = Config::from_settings(Settings {
        http_addr: Some("127.0.0.1:0".into()),
        metrics_addr: Some("127.0.0.1:0".into()),
        media_addr: Some("127.0.0.1".into()),
        media_ports: Some("ephemeral:4".into()),
        graph_url: Some(format!("http://{graph_addr}")),
        phone_number_id: Some("123456789012345".into()),
        access_token: Some(Secret::new("bench-token")),
        app_secret: Some(Secret::new("bench-secret")),
        verify_token: Some(Secret::new("bench-verify")),
        db: Some(":memory:".into()),
        wrap_up: Some(0.0),
        ..Settings::default()
    })
    .expect("config");
    let hash = switchboard::signaling::auth::hash_password(PASSWORD).expect("hash");
    config.auth.people = vec![switchboard::config::Person {
        id: "agent1".into(),
        name: "Agent".into(),
        role: Role::Agent,
        password_hash: switchboard::config::PasswordHash::parse(&hash).expect("phc"),
        queues: vec!["support".into()],
    }];
    let running = app::start(config).await.expect("switchboard starts");
    let sim = Simulator::start(
        SimulatorConfig {
            webhook_url: format!("http://{}/webhooks/whatsapp", running.http_addr),
            app_secret: Secret::new("bench-secret"),
            phone_number_id: "123456789012345".into(),
            ..SimulatorConfig::default()
        },
        fake,
        events,
    );
    let ip = std::net::Ipv4Addr::LOCALHOST.into();
    let mut agent = SimAgent::start(running.http_addr, "agent1", PASSWORD, ip, 2)
        .await
        .expect("agent");
    let limit = Duration::from_secs(10);
    let mut rung = vec![];
    let mut flowing = vec![];
    for _ in 0..calls {
        let t0 = Instant::now();
        let call = sim
            .place_call(CallSpec {
                hang_up_after: None,
                ..CallSpec::default()
            })
            .await
            .expect("call");
        let id = agent.ringing(limit).await.expect("rung");
        rung.push(t0.elapsed());
        // The caller's media connects during pre_accept; answer once it has.
        call.wait_for(limit, |p| *p == CallPhase::PreAccepted)
            .await
            .expect("pre-accepted");
        let caller = call.peer().expect("the caller has the answer");
        caller
            .wait_for(limit, |s| s.connected)
            .await
            .expect("caller connected");
        let media = agent.media().handle();
        let before = media.status().packets_received;
        let t1 = Instant::now();
        agent
            .send(ClientMsg::Answer {
                call_id: id.clone(),
            })
            .await
            .expect("send");
        media
            .wait_for(limit, |s| s.packets_received > before)
            .await
            .expect("first caller packet");
        flowing.push(t1.elapsed());
        agent
            .send(ClientMsg::HangUp { call_id: id })
            .await
            .expect("send");
        call.wait_for(limit, |p| matches!(p, CallPhase::Ended { .. }))
            .await
            .expect("ended");
        agent
            .expect(
                limit,
                "available",
                |m| matches!(m, ServerMsg::Presence(p) if p.state == "available"),
            )
            .await
            .expect("available again");
    }
    let median = |v: &mut Vec<Duration>| percentile(v, 0.5);
    let p95 = |v: &mut Vec<Duration>| percentile(v, 0.95);
    println!(
        "webhook -> agent rung: median {:?}, p95 {:?} ({} calls)",
        median(&mut rung),
        p95(&mut rung),
        rung.len()
    );
    println!(
        "agent answers -> first caller packet at the agent: median {:?}, p95 {:?}",
        median(&mut flowing),
        p95(&mut flowing)
    );

    // Memory: calls held live at once (queued with hold audio: the agent takes none).
    agent
        .send(ClientMsg::SetPresence {
            available: false,
            reason: Some("bench".into()),
        })
        .await
        .expect("send");
    let base = rss_kib();
    let mut live = vec![];
    for _ in 0..held {
        live.push(
            sim.place_call(CallSpec {
                hang_up_after: None,
                ..CallSpec::default()
            })
            .await
            .expect("call"),
        );
    }
    for c in &live {
        c.wait_for(limit, |p| *p == CallPhase::Accepted)
            .await
            .expect("queued calls are accepted");
    }
    let loaded = rss_kib();
    if let (Some(a), Some(b)) = (base, loaded) {
        println!(
            "memory: {} KiB more resident for {held} live calls = {} KiB per call (this \
             process also holds the simulated callers' str0m peers, so it is an upper bound)",
            b.saturating_sub(a),
            b.saturating_sub(a) / held as u64
        );
    }
    running.shutdown().await;
}
