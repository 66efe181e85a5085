//! The engine's pool of ports against Meta's relays: many calls from one relay address (one UDP
//! socket carrying every Meta-shaped peer, told apart only by switchboard's address), the single
//! port's documented limit, IPv6 candidates, and the limits on browser offers and legs.

mod common;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use common::{browser_leg, connected, engine_on, engine_sharded_on, TestEngine, LONG, LOOPBACK};
use switchboard::media::{Bind, EngineConfig, Limits, MediaDriver, MediaError, MediaEvent, Ports};
use switchboard::sdp::candidate_addrs;
use switchboard::sim::peer::{Outgoing, Peer, PendingPeer};
use switchboard::sim::relay::MetaRelay;

/// A Meta-shaped caller on `relay`, answered by a new WhatsApp leg.
async fn relay_call(e: &TestEngine, relay: &MetaRelay) -> (Peer, switchboard::media::Answer) {
    let pending = PendingPeer::meta_via(relay).unwrap();
    let answer = e.handle.answer_whatsapp(pending.offer()).await.unwrap();
    let peer = pending.connect(&answer.sdp).unwrap();
    (peer, answer)
}

/// `n` calls from one relay socket, each with its own agent, all talking at once: every caller
/// hears its own agent and every agent its own caller, byte for byte.
async fn calls_from_one_relay(n: usize) {
    let e = engine_on(
        Ports::Ephemeral(n as u16),
        Duration::from_secs(10),
        Duration::from_secs(10),
    );
    let relay = MetaRelay::bind((LOOPBACK, 0).into()).await.unwrap();
    let mut calls = vec![];
    for _ in 0..n {
        let (caller, wa) = relay_call(&e, &relay).await;
        let (agent, br) = browser_leg(&e, 1).await;
        calls.push((caller, wa, agent, br));
    }
    let ports: HashSet<SocketAddr> = calls
        .iter()
        .flat_map(|(_, wa, _, _)| candidate_addrs(&wa.sdp))
        .collect();
    assert_eq!(
        ports.len(),
        n,
        "each call from the relay has a business address of its own"
    );
    for (caller, wa, agent, br) in &calls {
        connected(caller).await;
        connected(agent).await;
        e.handle.route(wa.streams[0], Some(br.leg)).await.unwrap();
        e.handle.route(br.streams[0], Some(wa.leg)).await.unwrap();
        e.handle.start_sending(wa.leg).await.unwrap();
    }
    for (i, (caller, _, agent, _)) in calls.iter().enumerate() {
        caller
            .send(Outgoing::Tagged { tag: i as u8 })
            .await
            .unwrap();
        agent
            .send(Outgoing::Tagged { tag: 100 + i as u8 })
            .await
            .unwrap();
    }
    for (i, (caller, _, agent, _)) in calls.iter().enumerate() {
        // Whether the first ten tagged packets `p` hears all carry `tag`.
        let heard_agent = |p: &Peer, tag: u8, what: String| {
            let p = p.handle();
            async move {
                let heard = common::eventually(&what, Duration::from_secs(10), || async {
                    let r = p.recording().await.unwrap();
                    let tagged: Vec<_> =
                        r.packets.iter().filter(|k| k.payload.len() == 24).collect();
                    (tagged.len() >= 10).then(|| tagged.iter().all(|k| k.payload[1] == tag))
                })
                .await;
                assert!(heard, "{what}");
            }
        };
        heard_agent(
            caller,
            100 + i as u8,
            format!("caller {i} hears its own agent, and only its own agent"),
        )
        .await;
        heard_agent(
            agent,
            i as u8,
            format!("agent {i} hears its own caller, and only its own caller"),
        )
        .await;
    }
    let r = relay.counters();
    assert_eq!(r.collisions, 0, "no two calls on one 5-tuple: {r:?}");
    assert_eq!(r.unrouted, 0, "the relay could place every datagram: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_calls_from_one_relay_address_both_talk() {
    calls_from_one_relay(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_calls_from_one_relay_address_all_talk() {
    calls_from_one_relay(20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_port_refuses_a_second_call_from_the_same_relay_and_makes_nothing_of_it() {
    let mut e = engine_on(
        Ports::Ephemeral(1),
        Duration::from_secs(10),
        Duration::from_secs(10),
    );
    let relay = MetaRelay::bind((LOOPBACK, 0).into()).await.unwrap();
    let (first, wa) = relay_call(&e, &relay).await;
    let second = PendingPeer::meta_via(&relay).unwrap();
    let err = e.handle.answer_whatsapp(second.offer()).await.unwrap_err();
    assert!(
        matches!(err, MediaError::NoFreePort { remote, ports: 1 } if remote == relay.local_addr()),
        "{err}"
    );
    let c = e.handle.counters().await.unwrap();
    assert_eq!(c.legs, 1, "the refused call left no leg");
    assert_eq!(c.engine.refused_no_port, 1);
    // The first call is untouched; a browser (another address) still gets the port.
    connected(&first).await;
    let (agent, _) = browser_leg(&e, 1).await;
    connected(&agent).await;
    // Once the first call ends, the relay's next call gets the port.
    e.handle.close(wa.leg).await.unwrap();
    e.expect_event(
        LONG,
        |ev| matches!(ev, MediaEvent::Closed { leg, .. } if *leg == wa.leg),
    )
    .await;
    let (third, _) = relay_call(&e, &relay).await;
    connected(&third).await;
    assert_eq!(relay.counters().collisions, 0);
}

/// Two engine threads over three ports (thread 0 has two, thread 1 one): a call from a relay
/// address whose turn falls on a thread with no port free for it goes to the other thread; the
/// node refuses only when no thread has one, and counts that refusal once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_no_port_of_one_thread_can_take_goes_to_the_next_and_the_node_refuses_once() {
    let e = engine_sharded_on(
        Ports::Ephemeral(3),
        2,
        Duration::from_secs(10),
        Duration::from_secs(10),
    );
    let relay = MetaRelay::bind((LOOPBACK, 0).into()).await.unwrap();
    let (first, a) = relay_call(&e, &relay).await; // thread 0's turn
    let (second, b) = relay_call(&e, &relay).await; // thread 1's turn: its only port
    let (agent, _) = browser_leg(&e, 1).await; // thread 0's turn
                                               // Thread 1's turn, but its port already talks to this relay: thread 0 takes it.
    let (third, c) = relay_call(&e, &relay).await;
    assert_eq!(
        (a.leg.shard(), b.leg.shard(), c.leg.shard()),
        (0, 1, 0),
        "the third call fell through to thread 0"
    );
    let ports: HashSet<u16> = [&a, &b, &c]
        .iter()
        .map(|x| candidate_addrs(&x.sdp)[0].port())
        .collect();
    assert_eq!(ports.len(), 3, "three calls from one relay, three ports");
    let fourth = PendingPeer::meta_via(&relay).unwrap();
    let err = e.handle.answer_whatsapp(fourth.offer()).await.unwrap_err();
    assert!(
        matches!(err, MediaError::NoFreePort { ports: 3, .. }),
        "{err}"
    );
    let counters = e.handle.counters().await.unwrap();
    assert_eq!(
        counters.engine.refused_no_port, 1,
        "refused once by the node"
    );
    assert_eq!(counters.legs, 4);
    for p in [&first, &second, &third, &agent] {
        connected(p).await;
    }
    assert_eq!(relay.counters().collisions, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_candidate_is_offered_and_connects_over_ipv6() {
    let six = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let cfg = EngineConfig {
        public_ip: LOOPBACK,
        public_ip6: Some(six),
        ports: vec![],
        shards: 1,
        connect_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(10),
        stats_interval: Duration::from_millis(500),
        limits: Limits::default(),
        hold_audio: std::sync::Arc::from(Vec::new()),
    };
    let bind = Bind {
        ip: LOOPBACK,
        ip6: Some(six),
        ports: Ports::Ephemeral(2),
    };
    let (_driver, handle, _events) = MediaDriver::spawn(bind, cfg).unwrap();
    // Meta's offer carries an IPv6 host candidate; this caller has only that one.
    let pending = PendingPeer::meta(six).await.unwrap();
    let answer = handle.answer_whatsapp(pending.offer()).await.unwrap();
    let addrs = candidate_addrs(&answer.sdp);
    assert_eq!(addrs.len(), 2, "{}", answer.sdp);
    assert!(addrs[0].is_ipv4() && addrs[1].is_ipv6(), "{addrs:?}");
    assert_eq!(addrs[0].port(), addrs[1].port(), "one port, both families");
    let caller = pending.connect(&answer.sdp).unwrap();
    connected(&caller).await;
    handle.start_sending(answer.leg).await.unwrap();
    caller
        .wait_for(LONG, |s| s.packets_received >= 5)
        .await
        .expect("silence reaches the caller over IPv6");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_offer_with_300_m_lines_is_refused_and_leaves_no_leg() {
    let e = engine_on(
        Ports::Ephemeral(1),
        Duration::from_secs(10),
        Duration::from_secs(10),
    );
    let pending = PendingPeer::browser(LOOPBACK, 300).await.unwrap();
    let err = e.handle.answer_browser(pending.offer()).await.unwrap_err();
    assert!(
        matches!(
            err,
            MediaError::TooManyStreams {
                offered: 300,
                limit: 4
            }
        ),
        "{err}"
    );
    let c = e.handle.counters().await.unwrap();
    assert_eq!(c.legs, 0);
    assert_eq!(c.engine.refused_too_many_streams, 1);
    // Two m-lines (a supervisor's page) are fine.
    let (sup, answer) = browser_leg(&e, 2).await;
    assert_eq!(answer.streams.len(), 2);
    connected(&sup).await;
}
