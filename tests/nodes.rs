//! Two switchboard nodes sharing a real `redis-server`, behind one fake Meta (one fake Graph
//! API, one app secret, webhooks sent to either node): a call reaching one node is answered by
//! an agent signed in on the other, longest-idle holds across the nodes, two calls at once never
//! ring one agent, every event of a call reaches the node that owns it, and a session or a
//! password guesser is the same person on both.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use common::{Redis, LONG, LOOPBACK, PASSWORD};
use switchboard::app::{self, Running};
use switchboard::config::{Secret, Settings};
use switchboard::sim::agent::SimAgent;
use switchboard::sim::peer::Outgoing;
use switchboard::whatsapp::simulator::{
    CallPhase, CallSpec, CallerAudio, FakeGraph, SimulatedCall, Simulator, SimulatorConfig,
};

struct Nodes {
    a: Running,
    b: Running,
    fake: FakeGraph,
    /// Sends every webhook to node A, B, A, … in turn.
    sim: Simulator,
    _redis: Redis,
}

fn webhook(r: &Running) -> String {
    format!("http://{}/webhooks/whatsapp", r.http_addr)
}

/// Nodes A and B with `agent1..agentN` configured on both (one directory, as a deployment has).
async fn nodes(agents: usize) -> Nodes {
    nodes_with(agents, |_| {}).await
}

/// As [`nodes`], with `tweak` applied to both nodes' configuration.
async fn nodes_with(agents: usize, tweak: impl Fn(&mut switchboard::config::Config)) -> Nodes {
    let redis = Redis::start();
    let (fake, events, mut config) = common::live_config(Settings {
        media_addr: Some("127.0.0.1".into()),
        media_ports: Some("ephemeral:8".into()),
        redis_url: Some(Secret::new(redis.url())),
        node_id: Some("node-a".into()),
        ..Settings::default()
    })
    .await;
    config.auth.people = common::agents(agents);
    tweak(&mut config);
    let mut config_b = config.clone();
    config_b.store.node_id = "node-b".into();
    let a = app::start(config).await.unwrap();
    let b = app::start(config_b).await.unwrap();
    let sim = Simulator::start(
        SimulatorConfig {
            webhook_url: webhook(&a),
            more_webhook_urls: vec![webhook(&b)],
            app_secret: Secret::new(common::APP_SECRET),
            phone_number_id: common::PHONE_ID.into(),
            ..SimulatorConfig::default()
        },
        fake.clone(),
        events,
    );
    Nodes {
        a,
        b,
        fake,
        sim,
        _redis: redis,
    }
}

async fn agent_on(node: &Running, id: &str) -> SimAgent {
    SimAgent::start(node.http_addr, id, PASSWORD, LOOPBACK, 2)
        .await
        .expect("the agent signs in and connects its audio")
}

/// Waits until `n` agents are published as available in the support queue: each node mirrors
/// its floor into Redis as it changes, so this is the marker that both nodes see them.
async fn published(redis_url: &str, n: usize) {
    let client = redis::Client::open(redis_url).unwrap();
    let conn = client.get_multiplexed_async_connection().await.unwrap();
    common::eventually_showing(&format!("{n} agents published"), LONG, || {
        let mut conn = conn.clone();
        async move {
            let count: usize = redis::cmd("ZCARD")
                .arg("switchboard:idle:support")
                .query_async(&mut conn)
                .await
                .unwrap();
            if count == n {
                Ok(())
            } else {
                Err(format!("{count} agents published"))
            }
        }
    })
    .await
}

fn actions(fake: &FakeGraph, call: &switchboard::ids::WaCallId) -> Vec<String> {
    fake.requests()
        .iter()
        .filter(|r| r.call_id.as_ref() == Some(call))
        .filter_map(|r| r.action.as_ref().map(|a| a.as_str().to_owned()))
        .collect()
}

/// agent1 on node A and agent2 on node B, each on a call: every agent busy.
async fn both_busy(n: &Nodes) -> (SimAgent, SimAgent, SimulatedCall, SimulatedCall) {
    let mut a1 = agent_on(&n.a, "agent1").await;
    published(&n._redis.url(), 1).await;
    let mut a2 = agent_on(&n.b, "agent2").await;
    published(&n._redis.url(), 2).await;
    let c1 = n
        .sim
        .via(webhook(&n.b))
        .place_call(tone_call(500.0))
        .await
        .unwrap();
    takes(&mut a1, &c1, "agent1").await;
    let c2 = n
        .sim
        .via(webhook(&n.a))
        .place_call(tone_call(500.0))
        .await
        .unwrap();
    takes(&mut a2, &c2, "agent2").await;
    published(&n._redis.url(), 0).await;
    (a1, a2, c1, c2)
}

/// Waits until `call` waits in one of `node`'s queues (its floor; polled).
async fn waits_on(node: &Running, call: &switchboard::ids::WaCallId, what: &str) {
    let floor = node.calls.floor();
    common::eventually(&format!("{what} never waited"), LONG, || async {
        floor
            .borrow()
            .queues
            .iter()
            .any(|(_, w)| w.iter().any(|w| w.call == *call))
            .then_some(())
    })
    .await
}

/// `call`'s caller (playing `caller_hz`) and `agent` hear each other: the agent plays 440 Hz,
/// each end hears the other's dominant frequency, and the caller's packets form one stream
/// with no sequence gap from its first (silence or hold) packet on.
async fn hear_each_other(call: &SimulatedCall, agent: &SimAgent, caller_hz: f64) {
    agent
        .media()
        .send(Outgoing::Tone { hz: 440.0 })
        .await
        .unwrap();
    let caller = call.peer().expect("the caller's media");
    let heard = caller.status().packets_received;
    caller
        .wait_for(LONG, |s| s.packets_received > heard + 100)
        .await
        .expect("the caller hears the agent");
    let theirs = agent.media().status().packets_received;
    agent
        .media()
        .wait_for(LONG, |s| s.packets_received > theirs + 75)
        .await
        .expect("the agent hears the caller");
    let at_caller = caller.recording().await.unwrap();
    let (hz, _) = at_caller.heard.expect("the caller hears a tone");
    assert!((hz - 440.0).abs() < 15.0, "the caller heard {hz} Hz");
    let at_agent = agent.media().recording().await.unwrap();
    let (hz, _) = at_agent.heard.expect("the agent hears a tone");
    assert!((hz - caller_hz).abs() < 15.0, "the agent heard {hz} Hz");
    let seqs: Vec<u64> = at_caller.packets.iter().map(|p| p.seq).collect();
    let gaps = seqs.windows(2).filter(|w| w[1] != w[0] + 1).count();
    assert_eq!(gaps, 0, "sequence gaps at the caller");
}

/// Waits for `agent` to be told its call ended.
async fn call_ended(agent: &mut SimAgent, who: &str) {
    agent
        .expect(LONG, "call_ended", |m| {
            matches!(
                m,
                switchboard::signaling::protocol::ServerMsg::CallEnded { .. }
            )
        })
        .await
        .unwrap_or_else(|e| panic!("the call never ended at {who}: {e}"));
}

/// Waits until `agent` rings for `call`, and answers it.
async fn takes(
    agent: &mut SimAgent,
    call: &switchboard::whatsapp::simulator::SimulatedCall,
    who: &str,
) {
    let id = agent
        .ringing(LONG)
        .await
        .unwrap_or_else(|e| panic!("{who} never rang: {e}"));
    assert_eq!(id, call.call_id.0, "{who} rang for another call");
    agent.answer(&id, LONG).await.unwrap();
}

fn tone_call(hz: f64) -> CallSpec {
    CallSpec {
        audio: CallerAudio::Tone { hz },
        hang_up_after: None,
        ..CallSpec::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_reaching_node_a_is_answered_by_an_agent_signed_in_on_node_b() {
    let n = nodes(1).await;
    let mut agent = agent_on(&n.b, "agent1").await;
    published(&n._redis.url(), 1).await;
    // Meta's webhook reaches node A only.
    let call = n
        .sim
        .via(webhook(&n.a))
        .place_call(tone_call(1000.0))
        .await
        .unwrap();
    takes(&mut agent, &call, "the agent on B").await;
    call.wait_for(LONG, |p| *p == CallPhase::Accepted)
        .await
        .expect("accepted");
    hear_each_other(&call, &agent, 1000.0).await;
    // Node B answered Meta (pre_accept, accept), once.
    let acts = actions(&n.fake, &call.call_id);
    assert_eq!(
        acts.iter().filter(|a| *a == "pre_accept").count(),
        1,
        "{acts:?}"
    );
    assert_eq!(
        acts.iter().filter(|a| *a == "accept").count(),
        1,
        "{acts:?}"
    );

    // The caller's terminate reaches node A (or B): either way node B, the owner, ends the call.
    call.hang_up().await;
    call_ended(&mut agent, "the agent on B").await;
    n.a.shutdown().await;
    n.b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longest_idle_holds_across_nodes_and_two_calls_at_once_ring_two_agents() {
    let n = nodes(4).await;
    // Idle order: agent1 (A), agent2 (B), agent3 (A), agent4 (B).
    let mut a1 = agent_on(&n.a, "agent1").await;
    published(&n._redis.url(), 1).await;
    let mut a2 = agent_on(&n.b, "agent2").await;
    published(&n._redis.url(), 2).await;
    let mut a3 = agent_on(&n.a, "agent3").await;
    published(&n._redis.url(), 3).await;
    let mut a4 = agent_on(&n.b, "agent4").await;
    published(&n._redis.url(), 4).await;

    // One call at a time, each through the node the agent is *not* on.
    let c1 = n.sim.via(webhook(&n.b)).place_call(tone_call(500.0)).await;
    let r1 = a1.ringing(LONG).await.expect("agent1, idle longest, rings");
    assert_eq!(r1, c1.unwrap().call_id.0);
    a1.answer(&r1, LONG).await.unwrap();
    let c2 = n.sim.via(webhook(&n.a)).place_call(tone_call(500.0)).await;
    let r2 = a2.ringing(LONG).await.expect("agent2 rings next");
    assert_eq!(r2, c2.unwrap().call_id.0);
    a2.answer(&r2, LONG).await.unwrap();
    published(&n._redis.url(), 2).await;

    // Two calls at the same instant, one through each node: agent3 and agent4 ring, once each.
    let (via_a, via_b) = (n.sim.via(webhook(&n.a)), n.sim.via(webhook(&n.b)));
    let (c3, c4) = tokio::join!(
        via_a.place_call(tone_call(500.0)),
        via_b.place_call(tone_call(500.0)),
    );
    let placed: HashSet<String> = [c3.unwrap().call_id.0, c4.unwrap().call_id.0].into();
    let r3 = a3.ringing(LONG).await.expect("agent3 rings");
    let r4 = a4.ringing(LONG).await.expect("agent4 rings");
    assert_ne!(r3, r4, "one agent per call");
    assert_eq!(HashSet::from([r3.clone(), r4.clone()]), placed);
    a3.answer(&r3, LONG).await.unwrap();
    a4.answer(&r4, LONG).await.unwrap();
    // Each of the four calls was pre-accepted exactly once across both nodes.
    for id in [&r1, &r2, &r3, &r4] {
        let acts = actions(&n.fake, &switchboard::ids::WaCallId(id.clone()));
        assert_eq!(
            acts.iter().filter(|a| *a == "pre_accept").count(),
            1,
            "{id}: {acts:?}"
        );
    }
    n.a.shutdown().await;
    n.b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_alternating_between_nodes_handle_every_call_once() {
    let n = nodes(2).await;
    let mut a1 = agent_on(&n.a, "agent1").await;
    let mut a2 = agent_on(&n.b, "agent2").await;
    published(&n._redis.url(), 2).await;
    // Webhooks go A, B, A, B… whatever the call: connects and terminates land on either node.
    for round in 0..3 {
        let c1 = n.sim.place_call(tone_call(700.0)).await.unwrap();
        let c2 = n.sim.place_call(tone_call(700.0)).await.unwrap();
        let rang: HashSet<String> = [
            a1.ringing(LONG).await.expect("agent1 rings"),
            a2.ringing(LONG).await.expect("agent2 rings"),
        ]
        .into();
        assert_eq!(
            rang,
            HashSet::from([c1.call_id.0.clone(), c2.call_id.0.clone()]),
            "round {round}"
        );
        c1.hang_up().await;
        c2.hang_up().await;
        for call in [&c1, &c2] {
            call.wait_for(LONG, |p| matches!(p, CallPhase::Ended { .. }))
                .await
                .expect("the call ends");
        }
        // The owner heard each terminate, wherever it landed: the call ended at both agents,
        // who are free again (published as available) before the next round.
        published(&n._redis.url(), 2).await;
        for id in [&c1.call_id, &c2.call_id] {
            let acts = actions(&n.fake, id);
            assert_eq!(
                acts.iter().filter(|a| *a == "pre_accept").count(),
                1,
                "{id}: {acts:?}"
            );
        }
    }
    // A duplicate connect delivered to both nodes starts one call.
    let pending = switchboard::sim::peer::PendingPeer::meta(LOOPBACK)
        .await
        .unwrap();
    let id = switchboard::ids::WaCallId("wacid.TWICE".into());
    n.fake.register_call(id.clone(), pending.offer().to_owned());
    let cfg = SimulatorConfig {
        app_secret: Secret::new(common::APP_SECRET),
        phone_number_id: common::PHONE_ID.into(),
        ..SimulatorConfig::default()
    };
    let body = switchboard::whatsapp::simulator::connect_webhook(
        &cfg,
        &id,
        "15550009999",
        "Twice",
        pending.offer(),
    );
    let (via_a, via_b) = (n.sim.via(webhook(&n.a)), n.sim.via(webhook(&n.b)));
    let (ra, rb) = tokio::join!(via_a.deliver(&body), via_b.deliver(&body));
    assert_eq!((ra, rb), (Some(200), Some(200)));
    let first = tokio::select! {
        r = a1.ringing(LONG) => r,
        r = a2.ringing(LONG) => r,
    };
    assert_eq!(first.expect("one agent rings"), id.0);
    // Marker: a call placed after it rings the other agent, and only one pre_accept was sent.
    let next = n.sim.place_call(tone_call(700.0)).await.unwrap();
    let second = tokio::select! {
        r = a1.ringing(LONG) => r,
        r = a2.ringing(LONG) => r,
    };
    assert_eq!(second.expect("the other agent rings"), next.call_id.0);
    assert_eq!(
        actions(&n.fake, &id)
            .iter()
            .filter(|a| *a == "pre_accept")
            .count(),
        1
    );
    n.a.shutdown().await;
    n.b.shutdown().await;
}

async fn status_of(http: SocketAddr, path: &str, token: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("http://{http}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn login(http: SocketAddr, id: &str, password: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("http://{http}/api/login"))
        .json(&serde_json::json!({ "id": id, "password": password }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_works_on_every_node_and_guesses_on_both_count_together() {
    let n = nodes(2).await;
    let token = switchboard::sim::agent::sign_in(n.a.http_addr, "agent1", PASSWORD)
        .await
        .unwrap();
    assert_eq!(status_of(n.b.http_addr, "/api/me", &token).await, 200);
    // The browser reconnects its WebSocket to node B with the same token.
    let mut on_b = SimAgent::open(n.b.http_addr, "agent1", &token)
        .await
        .expect("node B takes node A's session");
    on_b.connect_media(LOOPBACK, 2).await.unwrap();
    // Signing out on A ends it on B too.
    let out = reqwest::Client::new()
        .post(format!("http://{}/api/logout", n.a.http_addr))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(out.status().is_success());
    assert_eq!(status_of(n.b.http_addr, "/api/me", &token).await, 401);
    assert_eq!(status_of(n.a.http_addr, "/api/me", &token).await, 401);

    // Wrong passwords for agent2, alternating between the nodes: five per node never blocks
    // on either alone, but the shared tally blocks after six in all.
    let mut statuses = Vec::new();
    for i in 0..12 {
        let node = if i % 2 == 0 { &n.a } else { &n.b };
        let s = login(node.http_addr, "agent2", "wrong password").await;
        statuses.push(s);
        if s == 429 {
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert!(
        statuses.len() <= 8,
        "blocked only after {} tries",
        statuses.len()
    );
    n.a.shutdown().await;
    n.b.shutdown().await;
}

/// Node A is a real `switchboard` process (this test's binary), node B runs in this process;
/// both share Redis and PostgreSQL. A's agent is on a call when A is killed with SIGKILL: B
/// ends the call at Meta (the fake Graph API sees `terminate`) once A's lease runs out, the
/// shared records say which node stopped, and A's agent reconnects to B with the session it
/// had and takes B's next call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_calls_end_at_meta_and_its_agent_carries_on_at_another() {
    use switchboard::store::Outcome;

    let redis = Redis::start();
    let pg = common::Postgres::start();
    let db = pg.database("killed");
    let (fake, events, mut config) = common::live_config(Settings {
        media_addr: Some("127.0.0.1".into()),
        media_ports: Some("ephemeral:8".into()),
        redis_url: Some(Secret::new(redis.url())),
        database_url: Some(Secret::new(db.clone())),
        node_id: Some("node-b".into()),
        node_lease: Some(2.0),
        ..Settings::default()
    })
    .await;
    config.auth.people = common::agents(1);
    let graph_url = config.whatsapp.graph_url.clone();

    // Node A: the real binary, configured through its environment and a people file.
    let dir = tempfile_dir("sb-killed");
    let people = dir.join("people.toml");
    let hash = switchboard::signaling::auth::hash_password(PASSWORD).unwrap();
    std::fs::write(
        &people,
        format!(
            "[[people]]\nid = \"agent1\"\nname = \"Agent One\"\nrole = \"agent\"\n\
             password_hash = \"{hash}\"\nqueues = [\"support\"]\n"
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let a_addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut node_a = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SWITCHBOARD_CONFIG", &people)
        .env("SWITCHBOARD_HTTP_ADDR", a_addr.to_string())
        .env("SWITCHBOARD_METRICS_ADDR", "127.0.0.1:0")
        .env("SWITCHBOARD_MEDIA_ADDR", "127.0.0.1")
        .env("SWITCHBOARD_MEDIA_PORTS", "ephemeral:8")
        .env("SWITCHBOARD_GRAPH_URL", &graph_url)
        .env("SWITCHBOARD_PHONE_NUMBER_ID", common::PHONE_ID)
        .env("SWITCHBOARD_ACCESS_TOKEN", common::TOKEN)
        .env("SWITCHBOARD_APP_SECRET", common::APP_SECRET)
        .env("SWITCHBOARD_VERIFY_TOKEN", common::VERIFY_TOKEN)
        .env("SWITCHBOARD_DATABASE_URL", &db)
        .env("SWITCHBOARD_REDIS_URL", redis.url())
        .env("SWITCHBOARD_NODE_ID", "node-a")
        .env("SWITCHBOARD_NODE_LEASE", "2")
        .env("SWITCHBOARD_COOKIE_SECURE", "false")
        .stdout(std::fs::File::create(dir.join("node-a.log")).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("node A starts");
    let b = app::start(config).await.unwrap();
    common::eventually_showing(
        "node A never became ready",
        Duration::from_secs(30),
        || async {
            let r = reqwest::get(format!("http://{a_addr}/readyz")).await;
            if r.is_ok_and(|r| r.status().is_success()) {
                Ok(())
            } else {
                let log = std::fs::read_to_string(dir.join("node-a.log")).unwrap_or_default();
                Err(format!("its log:\n{log}"))
            }
        },
    )
    .await;

    let sim = Simulator::start(
        SimulatorConfig {
            webhook_url: format!("http://{a_addr}/webhooks/whatsapp"),
            app_secret: Secret::new(common::APP_SECRET),
            phone_number_id: common::PHONE_ID.into(),
            ..SimulatorConfig::default()
        },
        fake.clone(),
        events,
    );
    let mut agent = SimAgent::start(a_addr, "agent1", PASSWORD, LOOPBACK, 2)
        .await
        .expect("agent1 signs in on node A");
    published(&redis.url(), 1).await;
    let call = sim.place_call(tone_call(800.0)).await.unwrap();
    takes(&mut agent, &call, "agent1 on node A").await;
    // The call is live in the shared records, under node A.
    common::eventually("node A never marked its call live", LONG, || async {
        (!b.store.live_calls_of("node-a").await.unwrap().is_empty()).then_some(())
    })
    .await;

    node_a.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
    node_a.wait().unwrap();

    // Node B ends it at Meta and records it, naming node A.
    let record = common::record_of(&b.store, &call.call_id, Duration::from_secs(20)).await;
    assert_eq!(record.outcome, Outcome::Failed);
    assert!(
        record.end_reason.contains("node-a"),
        "{}",
        record.end_reason
    );
    assert!(
        actions(&fake, &call.call_id).contains(&"terminate".to_owned()),
        "{:?}",
        actions(&fake, &call.call_id)
    );

    // The agent's browser reconnects to node B with the session it had, and takes B's next
    // call (Meta's webhooks now reach B: A is out of the load balancer).
    let mut agent = SimAgent::open(b.http_addr, "agent1", &agent.token)
        .await
        .expect("node B takes the session made on node A");
    agent.connect_media(LOOPBACK, 2).await.unwrap();
    let next = sim
        .via(webhook(&b))
        .place_call(tone_call(800.0))
        .await
        .unwrap();
    takes(&mut agent, &next, "agent1 on node B").await;
    next.wait_for(LONG, |p| *p == CallPhase::Accepted)
        .await
        .expect("the next call is answered on node B");
    b.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir(prefix: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A draining node withdraws its agents from the cluster and takes no new call: a webhook that
/// still reaches it (the load balancer has not noticed yet) is handed to the other node, whose
/// agent takes the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_takes_no_new_calls_and_hands_its_webhooks_on() {
    let n = nodes(2).await;
    let _a1 = agent_on(&n.a, "agent1").await;
    published(&n._redis.url(), 1).await;
    let mut a2 = agent_on(&n.b, "agent2").await;
    published(&n._redis.url(), 2).await;
    assert!(n.a.drain(Duration::ZERO).await, "no call to wait for");
    // agent1, idle longest but on the draining node, is withdrawn: the call below rings
    // agent2 although agent1 has waited longer.
    published(&n._redis.url(), 1).await;
    let call = n
        .sim
        .via(webhook(&n.a))
        .place_call(tone_call(600.0))
        .await
        .unwrap();
    takes(&mut a2, &call, "agent2 on node B").await;
    call.wait_for(LONG, |p| *p == CallPhase::Accepted)
        .await
        .expect("answered on node B");
    n.a.shutdown().await;
    n.b.shutdown().await;
}

/// A call waiting on node A (every agent busy) is taken by the first agent freed anywhere:
/// here on node B. Node A hands the call over and bridges its Meta leg to node B's engine; the
/// caller and the agent hear each other through both engines, and the caller's stream stays
/// one continuous stream from the first hold packet to the agent's voice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_waiting_on_one_node_is_taken_by_an_agent_freed_on_the_other() {
    let n = nodes_with(2, |c| c.calls.wrap_up = Duration::ZERO).await;
    let (_a1, mut a2, _c1, c2) = both_busy(&n).await;

    // The third call waits on node A, accepted, hearing hold audio (here: silence).
    let c3 = n
        .sim
        .via(webhook(&n.a))
        .place_call(tone_call(1000.0))
        .await
        .unwrap();
    c3.wait_for(LONG, |p| *p == CallPhase::Accepted)
        .await
        .expect("the waiting call is accepted");
    waits_on(&n.a, &c3.call_id, "call 3 on node A").await;

    // agent2's call ends: agent2, on node B, is free first.
    c2.hang_up().await;
    takes(&mut a2, &c3, "agent2, for the waiting call").await;
    hear_each_other(&c3, &a2, 1000.0).await;
    assert!(
        !n.a.calls
            .floor()
            .borrow()
            .calls
            .iter()
            .any(|c| c.call == c3.call_id),
        "node A still lists the call it handed over"
    );
    assert!(
        n.b.calls
            .floor()
            .borrow()
            .calls
            .iter()
            .any(|c| c.call == c3.call_id),
        "node B does not list the call it took over"
    );
    // Both directions were counted, once each (metrics are flushed on scrape). The two nodes of
    // this test share one process, and so one metrics recorder: the scrape of either shows
    // both counts, and which node did what is shown by the floors above.
    let scrape = reqwest::get(format!("http://{}/metrics", n.a.metrics_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        r#"switchboard_calls_handed_over_total{direction="out",result="ok"}"#,
        r#"switchboard_calls_handed_over_total{direction="in",result="ok"}"#,
    ] {
        assert_eq!(common::metric_value(&scrape, series), Some(1.0), "{series}");
    }

    // The caller hangs up: node B, the owner now, ends the call and writes its record.
    c3.hang_up().await;
    call_ended(&mut a2, "the agent on node B").await;
    n.a.shutdown().await;
    n.b.shutdown().await;
}

/// Waiting calls are served first come, first served across the nodes: with every agent busy,
/// call 3 waits on node A and the younger call 4 on node B; the agent freed first, on node B,
/// takes call 3 (handed over from A), not B's own call 4; the next agent freed, on node A,
/// takes call 4 (handed over from B).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_calls_are_served_oldest_first_across_the_nodes() {
    let n = nodes_with(2, |c| c.calls.wrap_up = Duration::ZERO).await;
    let (mut a1, mut a2, c1, c2) = both_busy(&n).await;
    let c3 = n
        .sim
        .via(webhook(&n.a))
        .place_call(tone_call(700.0))
        .await
        .unwrap();
    waits_on(&n.a, &c3.call_id, "call 3 on node A").await;
    let c4 = n
        .sim
        .via(webhook(&n.b))
        .place_call(tone_call(700.0))
        .await
        .unwrap();
    waits_on(&n.b, &c4.call_id, "call 4 on node B").await;

    // agent2 (node B) is freed first: the oldest waiting call, on node A, is theirs.
    c2.hang_up().await;
    takes(&mut a2, &c3, "agent2 for the older call 3").await;
    // Then agent1 (node A): call 4, which waited on node B.
    c1.hang_up().await;
    takes(&mut a1, &c4, "agent1 for call 4").await;
    for call in [&c3, &c4] {
        call.wait_for(LONG, |p| *p == CallPhase::Accepted)
            .await
            .expect("answered");
    }
    n.a.shutdown().await;
    n.b.shutdown().await;
}
