//! The call centre over real sockets: a running switchboard, agents signed in over HTTP and
//! `/ws` with real PeerConnections (str0m, browser-shaped), and simulated WhatsApp callers
//! (signed webhooks, a fake Graph API, Meta-shaped peers).

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{sign_in, LONG};
use switchboard::app::{self, Running};
use switchboard::config::{Config, Role, Settings};
use switchboard::routing::{NoAgentPolicy, QueueConfig};
use switchboard::signaling::protocol::{ClientMsg, ServerMsg};
use switchboard::sim::agent::SimAgent;
use switchboard::sim::peer::{Outgoing, Received};
use switchboard::whatsapp::simulator::{CallPhase, FakeGraph, SimulatedCall, Simulator};

struct World {
    running: Running,
    fake: FakeGraph,
    sim: Simulator,
}

/// switchboard in live mode against a fake Graph API, with `agent1..agentN`, a supervisor `sue`,
/// and whatever `tweak` changes in the configuration.
async fn world(n_agents: usize, tweak: impl FnOnce(&mut Config)) -> World {
    let (fake, events, mut config) = common::live_config(Settings {
        media_addr: Some("127.0.0.1".into()),
        media_ports: Some("ephemeral:8".into()),
        ..Settings::default()
    })
    .await;
    let mut people = common::agents(n_agents);
    people.push(common::person("sue", Role::Supervisor, &["support"]));
    config.auth.people = people;
    tweak(&mut config);
    let running = app::start(config).await.unwrap();
    let sim = common::simulator(&running, &fake, events, None);
    World { running, fake, sim }
}

async fn call(w: &World) -> SimulatedCall {
    common::held_call(&w.sim).await
}

fn graph_actions(w: &World, call: &SimulatedCall) -> Vec<String> {
    w.fake
        .requests()
        .iter()
        .filter(|r| r.call_id.as_ref() == Some(&call.call_id))
        .filter_map(|r| r.action.as_ref().map(|a| a.as_str().to_owned()))
        .collect()
}

fn melody() -> Vec<Vec<u8>> {
    switchboard::media::ogg::read(switchboard::media::ogg::MELODY)
        .unwrap()
        .packets
}

/// Waits until a peer's recording satisfies `f`.
async fn heard(
    peer: &switchboard::sim::peer::PeerHandle,
    what: &str,
    f: impl Fn(&[Received]) -> bool,
) -> Vec<Received> {
    common::eventually(
        &format!("never heard: {what}"),
        Duration::from_secs(10),
        || async {
            let r = peer.recording().await.unwrap();
            f(&r.packets).then_some(r.packets)
        },
    )
    .await
}

/// The call's record, once written: the store gets it right after the call's notices go out.
async fn record_of(w: &World, call: &SimulatedCall) -> switchboard::store::CallRecord {
    common::eventually(
        &format!("{} was never recorded", call.call_id),
        Duration::from_secs(5),
        || async {
            let page = w.running.store.list(Default::default()).await.unwrap();
            page.calls.into_iter().find(|r| r.call_id == call.call_id)
        },
    )
    .await
}

fn tagged(packets: &[Received], tag: u8) -> usize {
    packets
        .iter()
        .filter(|p| p.payload.len() == 24 && p.payload[1] == tag)
        .count()
}

fn gaps(packets: &[&Received]) -> usize {
    packets
        .windows(2)
        .filter(|w| w[1].seq != w[0].seq + 1)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_ring_the_longest_idle_agent_then_queue_with_hold_audio_and_an_answer_talks_both_ways(
) {
    let w = world(2, |_| {}).await;
    let mut a1 = sign_in(&w.running, "agent1").await;
    let mut a2 = sign_in(&w.running, "agent2").await;
    let c1 = call(&w).await;
    let id1 = a1.ringing(LONG).await.unwrap();
    assert_eq!(id1, c1.call_id.0, "agent1 idled longest");
    let c2 = call(&w).await;
    let id2 = a2.ringing(LONG).await.unwrap();
    assert_eq!(id2, c2.call_id.0);
    // Nobody is free for the third: accepted into the queue, with hold audio.
    let c3 = call(&w).await;
    c3.wait_for(LONG, |p| *p == CallPhase::Accepted)
        .await
        .expect("the queued call is accepted");
    let caller3 = c3.peer().unwrap();
    let hold = melody();
    let got = heard(&caller3, "hold audio", |p| p.len() >= 60).await;
    let audio: Vec<&Received> = got.iter().filter(|p| p.pt == 111).collect();
    // Hold audio is the hold file's packets, byte for byte, from wherever the loop stands.
    let start = hold
        .iter()
        .position(|h| h[..] == audio[0].payload[..])
        .expect("the first packet is one of the hold file's");
    for (i, p) in audio.iter().take(50).enumerate() {
        assert_eq!(
            &p.payload[..],
            &hold[(start + i) % hold.len()][..],
            "packet {i}"
        );
    }
    assert_eq!(gaps(&audio), 0, "no sequence gap at the caller");
    assert_eq!(graph_actions(&w, &c1), vec!["pre_accept"], "c1 only rings");

    // agent1 answers: accept, and audio both ways.
    a1.send(ClientMsg::Answer {
        call_id: id1.clone(),
    })
    .await
    .unwrap();
    a1.expect(LONG, "talking", |m| matches!(m, ServerMsg::Talking { .. }))
        .await
        .unwrap();
    assert_eq!(graph_actions(&w, &c1), vec!["pre_accept", "accept"]);
    a1.media().send(Outgoing::Tagged { tag: 7 }).await.unwrap();
    let caller1 = c1.peer().unwrap();
    heard(&caller1, "the agent", |p| tagged(p, 7) >= 10).await;
    // The agent hears the caller's melody, packet for packet.
    let at_agent = heard(&a1.media().handle(), "the caller", |p| {
        p.iter()
            .filter(|k| k.pt == 111 && k.payload.len() > 3)
            .count()
            >= 20
    })
    .await;
    let caller_sent = caller1.recording().await.unwrap().sent;
    let sent: HashSet<&[u8]> = caller_sent.iter().map(|p| &p[..]).collect();
    let relayed = at_agent
        .iter()
        .filter(|k| k.pt == 111 && k.payload.len() > 3)
        .all(|k| sent.contains(&k.payload[..]));
    assert!(
        relayed,
        "every packet the agent heard is one the caller sent, untouched"
    );

    // The agent hangs up: terminate at Meta, the caller's call ends, a record is written.
    a1.send(ClientMsg::HangUp {
        call_id: id1.clone(),
    })
    .await
    .unwrap();
    c1.wait_for(LONG, |p| matches!(p, CallPhase::Ended { .. }))
        .await
        .expect("Meta ends the call");
    assert_eq!(
        graph_actions(&w, &c1),
        vec!["pre_accept", "accept", "terminate"]
    );
    a1.expect(
        LONG,
        "wrap-up",
        |m| matches!(m, ServerMsg::Presence(p) if p.state == "wrap_up"),
    )
    .await
    .unwrap();
    // The caller hangs up on c2 while it rings: agent2 is told and is free again.
    c2.hang_up().await;
    a2.expect(LONG, "ring stopped", |m| {
        matches!(m, ServerMsg::RingStopped { .. })
    })
    .await
    .unwrap();
    let r1 = record_of(&w, &c1).await;
    assert_eq!(r1.agents, vec!["agent1".to_owned()]);
    // Each record names the node that handled it (SWITCHBOARD_NODE_ID, the host name unset).
    let node = Config::from_settings(Settings::default())
        .unwrap()
        .store
        .node_id;
    assert_eq!(r1.node.as_deref(), Some(node.as_str()));
    assert_eq!(r1.outcome, switchboard::store::Outcome::Answered);
    assert_eq!(r1.ended_by, switchboard::store::EndedBy::Agent);
    let r2 = record_of(&w, &c2).await;
    assert_eq!(r2.outcome, switchboard::store::Outcome::Abandoned, "{r2:?}");
    w.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_timeout_moves_the_call_on_and_sets_the_agent_away() {
    let w = world(2, |c| c.calls.ring_timeout = Duration::from_millis(800)).await;
    let mut a1 = sign_in(&w.running, "agent1").await;
    let mut a2 = sign_in(&w.running, "agent2").await;
    let c = call(&w).await;
    a1.ringing(LONG).await.unwrap();
    let id = a2.ringing(LONG).await.unwrap();
    assert_eq!(id, c.call_id.0, "the call moved on to agent2");
    a1.expect(LONG, "away", |m| {
        matches!(m, ServerMsg::Presence(p) if p.state == "away"
            && p.reason.as_deref() == Some("missed call"))
    })
    .await
    .unwrap();
    w.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_decline_policy_rejects_at_once_when_nobody_is_free() {
    let w = world(1, |c| {
        c.calls.queues = vec![QueueConfig {
            id: "support".into(),
            policy: NoAgentPolicy::Decline,
        }];
    })
    .await;
    // Nobody signed in: declined (nobody staffed).
    let c0 = call(&w).await;
    c0.wait_for(LONG, |p| matches!(p, CallPhase::Ended { .. }))
        .await
        .unwrap();
    assert_eq!(graph_actions(&w, &c0), vec!["reject"]);
    // Signed in but away: declined too, at once.
    let a1 = sign_in(&w.running, "agent1").await;
    a1.send(ClientMsg::SetPresence {
        available: false,
        reason: Some("lunch".into()),
    })
    .await
    .unwrap();
    let mut a1 = a1;
    a1.expect(
        LONG,
        "away",
        |m| matches!(m, ServerMsg::Presence(p) if p.state == "away"),
    )
    .await
    .unwrap();
    let c1 = call(&w).await;
    c1.wait_for(LONG, |p| matches!(p, CallPhase::Ended { .. }))
        .await
        .unwrap();
    assert_eq!(graph_actions(&w, &c1), vec!["reject"]);
    w.running.shutdown().await;
}

/// A call answered by agent1: (call, agent1).
async fn talking(w: &World) -> (SimulatedCall, SimAgent) {
    let mut a1 = sign_in(&w.running, "agent1").await;
    let c = call(w).await;
    let id = a1.ringing(LONG).await.unwrap();
    a1.send(ClientMsg::Answer { call_id: id }).await.unwrap();
    a1.expect(LONG, "talking", |m| matches!(m, ServerMsg::Talking { .. }))
        .await
        .unwrap();
    (c, a1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtmf_reaches_the_agent_once_per_key_and_mute_and_hold_change_what_the_caller_hears() {
    let w = world(1, |_| {}).await;
    let (c, mut a1) = talking(&w).await;
    let caller = c.peer().unwrap();
    for d in ['4', '2', '#'] {
        caller.dtmf(d, Duration::from_millis(120)).await.unwrap();
    }
    let mut digits = String::new();
    while digits.len() < 3 {
        if let ServerMsg::Dtmf { digit, .. } = a1
            .expect(LONG, "dtmf", |m| matches!(m, ServerMsg::Dtmf { .. }))
            .await
            .unwrap()
        {
            digits.push_str(&digit);
        }
    }
    assert_eq!(digits, "42#");
    // A marker after the keys: a ping answered means every DTMF notice before it has arrived.
    a1.send(ClientMsg::Ping {}).await.unwrap();
    a1.expect(LONG, "pong", |m| matches!(m, ServerMsg::Pong))
        .await
        .unwrap();
    let extra = a1
        .seen
        .iter()
        .filter(|m| matches!(m, ServerMsg::Dtmf { .. }))
        .count();
    assert_eq!(extra, 3, "once per key");

    // Hold: the caller hears the hold file.
    a1.media().send(Outgoing::Tagged { tag: 9 }).await.unwrap();
    heard(&caller, "the agent", |p| tagged(p, 9) >= 5).await;
    let id = c.call_id.0.clone();
    a1.send(ClientMsg::Hold {
        call_id: id.clone(),
        on: true,
    })
    .await
    .unwrap();
    a1.expect(LONG, "held", |m| {
        matches!(m, ServerMsg::CallState { held: true, .. })
    })
    .await
    .unwrap();
    let hold: HashSet<Vec<u8>> = melody().into_iter().collect();
    let before = caller.recording().await.unwrap().packets.len();
    let got = heard(&caller, "hold audio", |p| {
        p[before.min(p.len())..]
            .iter()
            .filter(|k| hold.contains(&k.payload[..]))
            .count()
            >= 20
    })
    .await;
    assert!(got.len() > before);
    // Mute (and unhold): silence frames, not the agent.
    a1.send(ClientMsg::Hold {
        call_id: id.clone(),
        on: false,
    })
    .await
    .unwrap();
    a1.send(ClientMsg::Mute {
        call_id: id.clone(),
        on: true,
    })
    .await
    .unwrap();
    a1.expect(LONG, "muted", |m| {
        matches!(
            m,
            ServerMsg::CallState {
                muted: true,
                held: false,
                ..
            }
        )
    })
    .await
    .unwrap();
    let before = caller.recording().await.unwrap().packets.len();
    let got = heard(&caller, "silence", |p| {
        p[before.min(p.len())..]
            .iter()
            .filter(|k| k.payload[..] == [0xF8, 0xFF, 0xFE])
            .count()
            >= 20
    })
    .await;
    let after_mute = &got[before..];
    let window: Vec<&Received> = after_mute.iter().skip(5).collect();
    assert!(
        window
            .iter()
            .all(|k| !(k.payload.len() == 24 && k.payload[1] == 9)),
        "nothing of the agent's reaches a muted call (past the first frames in flight)"
    );
    let audio: Vec<&Received> = got.iter().filter(|p| p.pt == 111).collect();
    assert_eq!(
        gaps(&audio),
        0,
        "one continuous stream through hold and mute"
    );
    w.running.shutdown().await;
}

/// The next `error` the agent gets has this code.
async fn expect_error(a: &mut SimAgent, code: &str) {
    let e = a
        .expect(LONG, "error", |m| matches!(m, ServerMsg::Error { .. }))
        .await
        .unwrap();
    assert!(
        matches!(&e, ServerMsg::Error { code: c, .. } if c == code),
        "expected {code}: {e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_and_bad_or_out_of_place_messages_get_an_error_and_change_nothing() {
    let w = world(1, |_| {}).await;
    // No token, a wrong token: no WebSocket.
    assert!(SimAgent::open(w.running.http_addr, "agent1", "not-a-token")
        .await
        .is_err());
    let mut a1 = sign_in(&w.running, "agent1").await;
    for (raw, code) in [
        ("{not json", "bad_message"),
        (r#"{"type":"fly"}"#, "bad_message"),
        (r#"{"type":"answer"}"#, "bad_message"),
    ] {
        a1.send_raw(tokio_tungstenite::tungstenite::Message::Text(raw.into()))
            .await
            .unwrap();
        expect_error(&mut a1, code).await;
    }
    let big = format!(r#"{{"type":"offer","sdp":"{}"}}"#, "a".repeat(40 * 1024));
    a1.send_raw(tokio_tungstenite::tungstenite::Message::Text(big.into()))
        .await
        .unwrap();
    expect_error(&mut a1, "too_large").await;
    // Answering with nothing ringing; monitoring as an agent.
    a1.send(ClientMsg::Answer {
        call_id: "wacid.nothing".into(),
    })
    .await
    .unwrap();
    expect_error(&mut a1, "not_ringing").await;
    a1.send(ClientMsg::Monitor {
        call_id: "wacid.nothing".into(),
    })
    .await
    .unwrap();
    expect_error(&mut a1, "forbidden").await;
    // Nothing changed: the session still works and a call still rings at agent1.
    let c = call(&w).await;
    assert_eq!(a1.ringing(LONG).await.unwrap(), c.call_id.0);
    w.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_reload_mid_call_resumes_it() {
    let w = world(1, |_| {}).await;
    let (c, a1) = talking(&w).await;
    let caller = c.peer().unwrap();
    drop(a1); // the page goes away: WebSocket and PeerConnection with it
              // The caller hears hold audio meanwhile; the call goes on at Meta.
    let hold: HashSet<Vec<u8>> = melody().into_iter().collect();
    let before = caller.recording().await.unwrap().packets.len();
    heard(&caller, "hold audio", |p| {
        p[before.min(p.len())..]
            .iter()
            .filter(|k| hold.contains(&k.payload[..]))
            .count()
            >= 10
    })
    .await;
    // The reloaded page signs in again: the call is back on its new PeerConnection.
    let mut again = sign_in(&w.running, "agent1").await;
    again
        .expect(
            LONG,
            "talking again",
            |m| matches!(m, ServerMsg::Talking { call_id, .. } if *call_id == c.call_id.0),
        )
        .await
        .unwrap();
    again
        .media()
        .send(Outgoing::Tagged { tag: 5 })
        .await
        .unwrap();
    heard(&caller, "the agent again", |p| tagged(p, 5) >= 10).await;
    assert_eq!(graph_actions(&w, &c), vec!["pre_accept", "accept"]);
    w.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_monitors_silently_and_whispers_to_the_agent_only() {
    let w = world(1, |_| {}).await;
    let (c, a1) = talking(&w).await;
    let caller = c.peer().unwrap();
    let mut sue = sign_in(&w.running, "sue").await;
    sue.send(ClientMsg::SetPresence {
        available: false,
        reason: Some("supervising".into()),
    })
    .await
    .unwrap();
    sue.media()
        .send(Outgoing::Tagged { tag: 42 })
        .await
        .unwrap();
    a1.media().send(Outgoing::Tagged { tag: 7 }).await.unwrap();
    sue.send(ClientMsg::Monitor {
        call_id: c.call_id.0.clone(),
    })
    .await
    .unwrap();
    sue.expect(LONG, "monitoring", |m| {
        matches!(
            m,
            ServerMsg::Monitoring {
                call_id: Some(_),
                whisper: false
            }
        )
    })
    .await
    .unwrap();
    // Sue hears both parties, on two streams.
    let got = heard(&sue.media().handle(), "both parties", |p| {
        tagged(p, 7) >= 10
            && p.iter()
                .filter(|k| k.payload.len() > 3 && k.payload.len() != 24)
                .count()
                >= 10
    })
    .await;
    let ssrcs: HashSet<u32> = got.iter().filter(|k| k.pt == 111).map(|k| k.ssrc).collect();
    assert_eq!(ssrcs.len(), 2, "caller and agent on two streams");
    // Whisper: the agent hears Sue; the caller never does.
    sue.send(ClientMsg::Whisper {
        call_id: c.call_id.0.clone(),
    })
    .await
    .unwrap();
    heard(&a1.media().handle(), "the whisper", |p| tagged(p, 42) >= 10).await;
    let at_caller = caller.recording().await.unwrap().packets;
    assert_eq!(
        tagged(&at_caller, 42),
        0,
        "nothing of the supervisor's reaches the caller"
    );
    assert!(
        tagged(&at_caller, 7) > 0,
        "the caller still hears the agent"
    );
    w.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_survive_a_restart_and_a_restart_ends_calls_a_dead_process_left_live() {
    let dir = std::env::temp_dir().join(format!("sb-centre-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("records.db");
    let _ = std::fs::remove_file(&db);
    // A process that died mid-call left this call marked live.
    {
        let (store, driver) = switchboard::store::StoreHandle::open(&db).await.unwrap();
        store
            .mark_live(switchboard::store::LiveCall {
                call_id: "wacid.LEFTOVER".into(),
                business_number: common::PHONE_ID.into(),
                started_at: 1_700_000_000_000,
                known: None,
            })
            .await
            .unwrap();
        drop(store);
        driver.join().await.unwrap();
    }
    let path = db.clone();
    let w = world(1, move |c| c.store.path = Some(path)).await;
    let terminated = w.fake.requests().iter().any(|r| {
        r.call_id.as_ref().is_some_and(|c| c.0 == "wacid.LEFTOVER")
            && r.action.as_ref().is_some_and(|a| a.as_str() == "terminate")
    });
    assert!(
        terminated,
        "the left-over call is terminated at Meta at start-up"
    );
    // A call in this run, answered and hung up.
    let (c, mut a1) = talking(&w).await;
    a1.send(ClientMsg::HangUp {
        call_id: c.call_id.0.clone(),
    })
    .await
    .unwrap();
    c.wait_for(LONG, |p| matches!(p, CallPhase::Ended { .. }))
        .await
        .unwrap();
    a1.expect(LONG, "call ended", |m| {
        matches!(m, ServerMsg::CallEnded { .. })
    })
    .await
    .unwrap();
    w.running.shutdown().await;
    // The next run finds both records, and no call left live.
    let path = db.clone();
    let w2 = world(1, move |c| c.store.path = Some(path)).await;
    let page = w2.running.store.list(Default::default()).await.unwrap();
    let ids: Vec<&str> = page.calls.iter().map(|r| r.call_id.0.as_str()).collect();
    assert!(ids.contains(&c.call_id.0.as_str()), "{ids:?}");
    assert!(ids.contains(&"wacid.LEFTOVER"), "{ids:?}");
    assert!(w2.running.store.live_calls().await.unwrap().is_empty());
    // Supervisors read them over HTTP; agents may not.
    let http = reqwest::Client::new();
    let sue = switchboard::sim::agent::sign_in(w2.running.http_addr, "sue", common::PASSWORD)
        .await
        .unwrap();
    let resp = http
        .get(format!("http://{}/api/calls", w2.running.http_addr))
        .bearer_auth(&sue)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let agent = switchboard::sim::agent::sign_in(w2.running.http_addr, "agent1", common::PASSWORD)
        .await
        .unwrap();
    let resp = http
        .get(format!("http://{}/api/calls", w2.running.http_addr))
        .bearer_auth(&agent)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = http
        .get(format!("http://{}/api/calls", w2.running.http_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    w2.running.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blind_transfer_keeps_the_callers_stream_continuous() {
    let w = world(2, |_| {}).await;
    let (c, a1) = talking(&w).await;
    let mut a2 = sign_in(&w.running, "agent2").await;
    let caller = c.peer().unwrap();
    a1.media().send(Outgoing::Tagged { tag: 1 }).await.unwrap();
    a2.media().send(Outgoing::Tagged { tag: 2 }).await.unwrap();
    heard(&caller, "agent1", |p| tagged(p, 1) >= 10).await;
    a1.send(ClientMsg::Transfer {
        call_id: c.call_id.0.clone(),
        to_agent: Some("agent2".into()),
        to_queue: None,
    })
    .await
    .unwrap();
    let id = a2.ringing(LONG).await.unwrap();
    a2.send(ClientMsg::Answer { call_id: id }).await.unwrap();
    a2.expect(LONG, "talking", |m| matches!(m, ServerMsg::Talking { .. }))
        .await
        .unwrap();
    let got = heard(&caller, "agent2", |p| tagged(p, 2) >= 10).await;
    let audio: Vec<&Received> = got.iter().filter(|p| p.pt == 111).collect();
    let ssrcs: HashSet<u32> = audio.iter().map(|p| p.ssrc).collect();
    assert_eq!(ssrcs.len(), 1, "one SSRC through the transfer");
    assert_eq!(gaps(&audio), 0, "no sequence gap through the transfer");
    assert_eq!(
        graph_actions(&w, &c),
        vec!["pre_accept", "accept"],
        "the WhatsApp leg never changed"
    );
    // The caller hangs up mid-call: the agent on it is told and goes to wrap-up; nothing more
    // is sent to Meta, which ended the call itself.
    c.hang_up().await;
    a2.expect(LONG, "call ended", |m| {
        matches!(m, ServerMsg::CallEnded { .. })
    })
    .await
    .unwrap();
    a2.expect(
        LONG,
        "wrap-up",
        |m| matches!(m, ServerMsg::Presence(p) if p.state == "wrap_up"),
    )
    .await
    .unwrap();
    assert_eq!(graph_actions(&w, &c), vec!["pre_accept", "accept"]);
    w.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_is_unready_at_once_declines_new_calls_and_lets_the_live_call_finish() {
    let w = world(1, |_| {}).await;
    let (c, a1) = talking(&w).await;
    let http = reqwest::Client::new();
    let ready = format!("http://{}/readyz", w.running.http_addr);
    assert_eq!(http.get(&ready).send().await.unwrap().status(), 200);
    let drained = {
        let running = &w.running;
        let drain = running.drain(Duration::from_secs(30));
        tokio::pin!(drain);
        // Not ready from the first moment of the drain.
        tokio::select! {
            _ = &mut drain => panic!("the drain cannot end while a call is live"),
            _ = common::eventually("/readyz never turned 503", Duration::from_secs(2), || async {
                (http.get(&ready).send().await.unwrap().status() == 503).then_some(())
            }) => {}
        }
        // A new call is declined the documented way.
        let late = call(&w).await;
        late.wait_for(LONG, |p| matches!(p, CallPhase::Ended { .. }))
            .await
            .unwrap();
        assert_eq!(graph_actions(&w, &late), vec!["reject"]);
        // The live call goes on, and ends when its agent hangs up: the drain is over.
        a1.send(ClientMsg::HangUp {
            call_id: c.call_id.0.clone(),
        })
        .await
        .unwrap();
        drain.await
    };
    assert!(drained, "the drain ended with no call left");
    c.wait_for(LONG, |p| matches!(p, CallPhase::Ended { .. }))
        .await
        .expect("Meta ends the live call after the agent's terminate");
    assert_eq!(
        graph_actions(&w, &c),
        vec!["pre_accept", "accept", "terminate"]
    );
    record_of(&w, &c).await;
    w.running.shutdown().await;
}
