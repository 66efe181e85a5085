//! Legs report their statistics (RTT, loss, jitter, packets, bytes) as events.

mod common;

use common::*;
use switchboard::media::MediaEvent;
use switchboard::sim::peer::Outgoing;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_legs_report_stats_with_traffic_and_rtt() {
    let mut e = engine(); // stats every 500 ms
    let (meta, wa) = meta_leg(&e).await;
    let (agent, a) = browser_leg(&e, 1).await;
    connected(&meta).await;
    connected(&agent).await;
    meta.send(Outgoing::Tagged { tag: 1 }).await.unwrap();
    e.handle.route(a.streams[0], Some(wa.leg)).await.unwrap();
    e.handle.start_sending(wa.leg).await.unwrap();
    // Waits for the reports it needs (every 500 ms): the WhatsApp leg's first with 40 packets
    // each way, the agent leg's first with 40 packets sent to it. A report that never shows
    // the traffic fails the test at the deadline, with the last reports seen.
    let (mut wa_stats, mut a_stats) = (None, None);
    let (mut last_wa, mut last_a) = (None, None);
    let deadline = tokio::time::Instant::now() + LONG;
    while wa_stats.is_none() || a_stats.is_none() {
        let ev = match tokio::time::timeout_at(deadline, e.events.recv()).await {
            Ok(Some(ev)) => ev,
            Ok(None) => panic!("engine event channel closed"),
            Err(_) => panic!("no stats with the traffic: caller {last_wa:?}, agent {last_a:?}"),
        };
        match ev {
            MediaEvent::Stats { leg, stats, .. } if leg == wa.leg => {
                if stats.packets_rx > 40 && stats.packets_tx > 40 && wa_stats.is_none() {
                    wa_stats = Some(stats.clone());
                }
                last_wa = Some(stats);
            }
            MediaEvent::Stats { leg, stats, .. } if leg == a.leg => {
                if stats.packets_tx > 40 && a_stats.is_none() {
                    a_stats = Some(stats.clone());
                }
                last_a = Some(stats);
            }
            _ => {}
        }
    }
    let wa_stats = wa_stats.unwrap();
    assert!(
        wa_stats.bytes_rx > 0 && wa_stats.bytes_tx > 0,
        "{wa_stats:?}"
    );
    assert!(
        wa_stats.rtt.is_some(),
        "the controlling leg measures RTT: {wa_stats:?}"
    );
    // The agent leg counts what was forwarded to it (the caller's packets).
    let a_stats = a_stats.unwrap();
    assert!(a_stats.bytes_tx > 0, "{a_stats:?}");
}

/// The RTCP peers rely on still flows without transport-wide congestion control, which the
/// engine no longer negotiates (Meta's offer has no header extension; fixed-rate Opus needs no
/// bandwidth estimation): the caller gets receiver reports on its audio, the agent sender
/// reports on the audio it hears. In simulated time, on the in-memory network.
#[test]
fn peers_get_receiver_and_sender_reports_without_transport_cc() {
    use switchboard::sim::memory::MemoryNet;
    let mut net = MemoryNet::new(2);
    assert!(
        !net.negotiated_twcc(),
        "no answer negotiates transport-wide-cc"
    );
    // 12 s of two calls' callers talking (RTCP for audio comes every ~5 s).
    for n in 0..1200 {
        net.step();
        if n % 20 == 0 {
            net.pump(true);
        }
    }
    assert!(net.received_by_agents() > 1000, "the audio flowed");
    for call in 0..2 {
        let (receiver_reports, sender_reports) = net.rtcp_seen(call);
        assert!(
            receiver_reports,
            "call {call}: the caller got receiver reports"
        );
        assert!(sender_reports, "call {call}: the agent got sender reports");
    }
}
