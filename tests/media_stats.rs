//! Legs report their statistics (RTT, loss, jitter, packets, bytes) as events.

mod common;

use std::time::Duration;

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
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let events = e.events_for(Duration::from_millis(1200)).await;
    let last = |leg| {
        events
            .iter()
            .rev()
            .find_map(|ev| match ev {
                MediaEvent::Stats { leg: l, stats } if *l == leg => Some(stats.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no stats for {leg}: {events:?}"))
    };
    let wa_stats = last(wa.leg);
    assert!(wa_stats.packets_rx > 40, "{wa_stats:?}");
    assert!(wa_stats.packets_tx > 40, "silence was sent: {wa_stats:?}");
    assert!(wa_stats.bytes_rx > 0 && wa_stats.bytes_tx > 0);
    assert!(
        wa_stats.rtt.is_some(),
        "the controlling leg measures RTT: {wa_stats:?}"
    );
    let a_stats = last(a.leg);
    assert!(
        a_stats.packets_tx > 40,
        "forwarded to the agent: {a_stats:?}"
    );
}
