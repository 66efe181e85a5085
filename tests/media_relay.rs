//! A Meta-shaped peer and two browser-shaped peers around one engine, over real UDP on
//! 127.0.0.1: packets cross untouched, the WhatsApp side hears one continuous stream across
//! silence → agent A → agent B → silence, and sending starts at once.

mod common;

use std::time::{Duration, Instant};

use common::*;
use switchboard::media::{DriverCounters, MediaEvent};
use switchboard::sim::memory::MemoryNet;
use switchboard::sim::peer::{Outgoing, Received};

const META_TAG: u8 = 1;
const A_TAG: u8 = 2;
const B_TAG: u8 = 3;

/// Polls the engine's counters until `f` holds (there is no event for them); panics after
/// [`LONG`].
async fn wait_counter(e: &TestEngine, what: &str, f: impl Fn(&DriverCounters) -> bool) {
    eventually_showing(&format!("never {what}"), LONG, || async {
        let c = e.handle.counters().await.unwrap();
        if f(&c) {
            Ok(())
        } else {
            Err(format!("{c:?}"))
        }
    })
    .await
}

fn assert_continuous(who: &str, packets: &[Received]) {
    assert!(
        packets.len() > 10,
        "{who} heard only {} packets",
        packets.len()
    );
    let ssrc = packets[0].ssrc;
    for w in packets.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        assert_eq!(b.ssrc, ssrc, "{who}: a second SSRC appeared");
        assert_eq!(
            b.seq,
            a.seq + 1,
            "{who}: sequence gap {} -> {}",
            a.seq,
            b.seq
        );
    }
    // Timestamps: audio packets (DTMF reports share their event's timestamp by design).
    let audio: Vec<&Received> = packets.iter().filter(|p| p.pt == 111).collect();
    for w in audio.windows(2) {
        let (a, b) = (w[0], w[1]);
        let ticks = b.ts.wrapping_sub(a.ts);
        assert!(
            ticks > 0 && ticks % 960 == 0,
            "{who}: timestamp step {ticks} is not whole 20 ms frames"
        );
        // A jump would be far off the time that actually passed between the two packets.
        let gap_ms = b.at.saturating_duration_since(a.at).as_secs_f64() * 1000.0;
        let ts_ms = f64::from(ticks) / 48.0;
        assert!(
            (ts_ms - gap_ms).abs() < 250.0,
            "{who}: timestamp advanced {ts_ms} ms while {gap_ms} ms passed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_and_browsers_relay_untouched_and_continuous() {
    let e = relay_untouched_and_continuous(engine()).await;
    let c = e.handle.counters().await.unwrap();
    assert_eq!(c.shards, 1);
    assert_eq!(c.engine.crossed_in, 0, "{c:?}");
}

/// The same call with its three legs on three engine threads: every packet and every route
/// change crosses between them, and what each peer hears is just as exact and continuous.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legs_on_three_engine_threads_relay_untouched_and_continuous() {
    let e = relay_untouched_and_continuous(engine_sharded(3)).await;
    // The peers have stopped: every packet that left a thread arrives at its destination (the
    // threads' counters are read one after another, so only a quiet engine can agree).
    wait_counter(&e, "every crossing arrived", |c| {
        c.engine.crossed_out > 0 && c.engine.crossed_in == c.engine.crossed_out
    })
    .await;
    let c = e.handle.counters().await.unwrap();
    assert_eq!(c.shards, 3);
    // Every packet crossed (none was forwarded on its source's thread), and every one that
    // crossed was forwarded or held back for a counted reason (both counted by the thread
    // that took it, so this holds at any moment).
    assert_eq!(
        c.engine.crossed_in,
        c.engine.rtp_forwarded + c.engine.dropped_not_started + c.engine.dropped_unrouted,
        "{c:?}"
    );
    assert_eq!(c.crossings_dropped, 0);
}

/// Runs the call and returns its engine once the peers are gone (they send nothing more).
async fn relay_untouched_and_continuous(mut e: TestEngine) -> TestEngine {
    let (meta, wa) = meta_leg(&e).await;
    let (agent_a, a) = browser_leg(&e, 1).await;
    let (agent_b, b) = browser_leg(&e, 1).await;
    if e.handle.shards() == 3 {
        let mut shards = vec![wa.leg.shard(), a.leg.shard(), b.leg.shard()];
        shards.sort();
        assert_eq!(shards, vec![0, 1, 2], "one leg per thread");
    }
    for p in [&meta, &agent_a, &agent_b] {
        connected(p).await;
    }
    let mut connected_legs = vec![];
    while connected_legs.len() < 3 {
        if let MediaEvent::Connected { leg } = e
            .expect_event(LONG, |ev| matches!(ev, MediaEvent::Connected { .. }))
            .await
        {
            connected_legs.push(leg);
        }
    }
    connected_legs.sort();
    let mut expected = vec![wa.leg, a.leg, b.leg];
    expected.sort();
    assert_eq!(connected_legs, expected);

    meta.send(Outgoing::Tagged { tag: META_TAG }).await.unwrap();
    agent_a.send(Outgoing::Tagged { tag: A_TAG }).await.unwrap();
    agent_b.send(Outgoing::Tagged { tag: B_TAG }).await.unwrap();
    // Both agents hear the caller.
    e.handle.route(a.streams[0], Some(wa.leg)).await.unwrap();
    e.handle.route(b.streams[0], Some(wa.leg)).await.unwrap();

    // Nothing reaches Meta before "start sending", even though agent A is already routed: the
    // engine holds back A's packets (counted), and the first packet Meta ever hears is the
    // silence sent after the start. The engine sends to Meta in order over one 5-tuple, so a
    // packet leaked before the start would have arrived before that marker.
    e.handle.route(wa.streams[0], Some(a.leg)).await.unwrap();
    wait_counter(&e, "A's packets held back", |c| {
        c.engine.dropped_not_started >= 10
    })
    .await;
    assert_eq!(meta.status().packets_received, 0, "media before accept");
    e.handle.route(wa.streams[0], None).await.unwrap();

    let started = Instant::now();
    e.handle.start_sending(wa.leg).await.unwrap();
    meta.wait_for(LONG, |s| s.packets_received >= 1)
        .await
        .expect("meta hears the first packet");
    let first = meta.recording().await.unwrap().packets[0].clone();
    assert!(first.at >= started, "media before accept");
    // That it goes out at once, not a tick later, is shown on simulated time below.
    assert_eq!(
        origin(&first.payload),
        Some(0),
        "silence when nothing is routed (nothing of agent A's came before it)"
    );

    // silence → A → B → silence, each for a number of packets heard by Meta.
    let phases = [(None, 15), (Some(a.leg), 20), (Some(b.leg), 20), (None, 15)];
    for (source, packets) in phases {
        e.handle.route(wa.streams[0], source).await.unwrap();
        let before = meta.status().packets_received;
        meta.wait_for(LONG, |s| s.packets_received >= before + packets)
            .await
            .expect("meta keeps hearing packets");
    }

    let heard = meta.recording().await.unwrap();
    assert_continuous("meta", &heard.packets);
    let origins: Vec<u8> = heard
        .packets
        .iter()
        .map(|p| origin(&p.payload).expect("every payload is silence or an agent's, byte for byte"))
        .collect();
    // The order of producers is exactly the order of routes.
    let mut runs: Vec<u8> = origins.clone();
    runs.dedup();
    assert_eq!(runs.first(), Some(&0), "starts with silence: {runs:?}");
    assert_eq!(runs.last(), Some(&0), "ends with silence: {runs:?}");
    // A source late by more than the grace period may be bridged by a silence frame; the
    // sources themselves come in exactly the order they were routed.
    let mut sources: Vec<u8> = runs.iter().copied().filter(|o| *o != 0).collect();
    sources.dedup();
    assert_eq!(sources, vec![A_TAG, B_TAG], "producers in order: {runs:?}");
    for tag in [A_TAG, B_TAG] {
        let n = origins.iter().filter(|o| **o == tag).count();
        assert!(n >= 10, "only {n} packets of agent {tag}");
    }
    assert!(
        heard.packets.iter().all(|p| p.pt == 111),
        "Opus on Meta's pt 111"
    );

    // Each agent heard the caller, byte for byte, as one continuous stream.
    for (who, peer) in [("agent a", &agent_a), ("agent b", &agent_b)] {
        let rec = peer.recording().await.unwrap();
        assert_continuous(who, &rec.packets);
        assert!(rec
            .packets
            .iter()
            .all(|p| origin(&p.payload) == Some(META_TAG)));
        assert!(
            rec.packets.len() > 50,
            "{who} heard {} packets",
            rec.packets.len()
        );
    }
    let c = e.handle.counters().await.unwrap();
    assert_eq!(c.engine.dropped_unknown_pt, 0);
    assert!(c.engine.rtp_forwarded > 100, "{c:?}");
    assert!(
        c.engine.dropped_not_started > 0,
        "the pre-accept packets were held back"
    );
    drop((meta, agent_a, agent_b));
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtmf_from_meta_comes_out_once_per_digit_and_reaches_the_agent() {
    let mut e = engine();
    let (meta, wa) = meta_leg(&e).await;
    let (agent, a) = browser_leg(&e, 1).await;
    connected(&meta).await;
    connected(&agent).await;
    e.handle.route(a.streams[0], Some(wa.leg)).await.unwrap();
    meta.send(Outgoing::Tagged { tag: META_TAG }).await.unwrap();
    // '0' is the marker: the peer sends it only after the redundant end packets of 'A', and
    // the engine reads Meta's packets in order, so a duplicate of any digit would come first.
    for d in ['1', '#', '9', 'A', '0'] {
        meta.dtmf(d, Duration::from_millis(120)).await.unwrap();
    }
    let mut digits = String::new();
    let deadline = Instant::now() + LONG;
    while digits.len() < 5 && Instant::now() < deadline {
        if let MediaEvent::Dtmf {
            leg,
            digit,
            duration,
        } = e
            .expect_event(LONG, |ev| matches!(ev, MediaEvent::Dtmf { .. }))
            .await
        {
            assert_eq!(leg, wa.leg);
            assert_eq!(duration, Duration::from_millis(120));
            digits.push(digit);
        }
    }
    // Once per digit: no duplicate came between the digits or before the marker.
    assert_eq!(digits, "1#9A0");
    // Forwarded too: the agent's side decodes the same digits, each once.
    let s = agent
        .wait_for(LONG, |s| s.digits.len() >= 5)
        .await
        .expect("agent hears the digits");
    assert_eq!(s.digits, "1#9A0");
    assert_continuous("agent", &agent.recording().await.unwrap().packets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtmf_toward_meta_is_heard_once_and_the_stream_stays_continuous() {
    let e = engine();
    let (meta, wa) = meta_leg(&e).await;
    connected(&meta).await;
    e.handle.start_sending(wa.leg).await.unwrap();
    e.handle
        .send_dtmf(wa.leg, "5*0", Duration::from_millis(100))
        .await
        .unwrap();
    let s = meta
        .wait_for(LONG, |s| s.digits.len() >= 3)
        .await
        .expect("meta hears the digits");
    assert_eq!(s.digits, "5*0");
    // The marker: audio again after the last event packet. Events and audio share one
    // sequence, so every redundant end packet of the last digit has arrived before it.
    let rec = wait_recording(&meta, "audio after the last digit", |r| {
        let last_event = r.packets.iter().rposition(|p| p.pt == 126);
        last_event.is_some_and(|i| r.packets[i..].iter().any(|p| p.pt == 111))
    })
    .await;
    let tele: Vec<&Received> = rec.packets.iter().filter(|p| p.pt == 126).collect();
    assert!(
        tele.len() >= 3 * 5,
        "{} telephone-event packets",
        tele.len()
    );
    assert!(
        tele.iter().filter(|p| p.marker).count() == 3,
        "one marker per digit"
    );
    // Audio and events share one sequence space with no gap.
    for w in rec.packets.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1);
    }
    assert!(e
        .handle
        .send_dtmf(wa.leg, "5x", Duration::from_millis(100))
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_leg_receives_caller_and_agent_on_two_streams() {
    supervisor_hears_both(engine()).await;
}

/// The supervisor's two streams fed from two other engine threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_leg_hears_caller_and_agent_from_two_other_threads() {
    let e = supervisor_hears_both(engine_sharded(3)).await;
    let c = e.handle.counters().await.unwrap();
    assert!(c.engine.crossed_in >= 60, "{c:?}");
}

async fn supervisor_hears_both(e: TestEngine) -> TestEngine {
    let (meta, wa) = meta_leg(&e).await;
    let (agent, a) = browser_leg(&e, 1).await;
    let (sup, s) = browser_leg(&e, 2).await;
    for p in [&meta, &agent, &sup] {
        connected(p).await;
    }
    assert_eq!(s.streams.len(), 2);
    meta.send(Outgoing::Tagged { tag: META_TAG }).await.unwrap();
    agent.send(Outgoing::Tagged { tag: A_TAG }).await.unwrap();
    e.handle.route(s.streams[0], Some(wa.leg)).await.unwrap();
    e.handle.route(s.streams[1], Some(a.leg)).await.unwrap();
    sup.wait_for(LONG, |st| st.packets_received >= 60)
        .await
        .expect("supervisor hears both");
    let rec = sup.recording().await.unwrap();
    let mut by_ssrc = std::collections::BTreeMap::<u32, Vec<u8>>::new();
    for p in &rec.packets {
        by_ssrc
            .entry(p.ssrc)
            .or_default()
            .push(origin(&p.payload).unwrap());
    }
    let mut sources: Vec<Vec<u8>> = by_ssrc
        .into_values()
        .map(|mut v| {
            v.dedup();
            v
        })
        .collect();
    sources.sort();
    assert_eq!(sources, vec![vec![META_TAG], vec![A_TAG]]);
    e
}

/// On simulated time: Meta's first packet leaves at the instant of "start sending", not at the
/// next 20 ms tick (Meta counts from its `accept`, and the caller hears nothing until then).
#[test]
fn the_first_packet_to_meta_leaves_at_the_start_not_a_tick_later() {
    let mut net = MemoryNet::new(1);
    let (wa, _) = net.call_legs(0);
    while net.engine.poll_transmit().is_some() {}
    while net.engine.poll_event().is_some() {}
    let now = net.now();
    net.engine.start_sending(now, wa).unwrap();
    let first = std::iter::from_fn(|| net.engine.poll_event())
        .find(|e| matches!(e, MediaEvent::FirstPacket { .. }));
    assert!(first.is_some(), "no first packet at the start's instant");
    assert!(
        net.engine.poll_transmit().is_some(),
        "nothing to send at the start's instant"
    );
}

/// One engine visit per forwarded packet (issue 26, vendor/str0m/PATCH.md): the packet written
/// toward the agent leaves in the same drain as the caller's packet arrived, without waiting for
/// the agent leg's next timeout. Before the patch every forwarded packet cost one leg timeout
/// more (1 377 738 packets, 1 377 739 timeouts in the forwarding bench); now only the legs'
/// own timers (RTCP, ICE consent, stats) remain.
#[test]
fn a_forwarded_packet_leaves_without_waiting_for_a_timeout() {
    let mut net = MemoryNet::new(20);
    for _ in 0..20_000 {
        net.step();
    }
    let c = net.engine.counters();
    assert!(c.rtp_forwarded >= 19_000, "{c:?}");
    assert!(
        c.leg_timeouts * 20 < c.rtp_forwarded,
        "{} leg timeouts for {} packets forwarded",
        c.leg_timeouts,
        c.rtp_forwarded
    );
    assert!(
        net.received_by_agents() * 10 >= c.rtp_forwarded * 9,
        "the agents received what was forwarded"
    );
}
