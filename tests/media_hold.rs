//! Hold audio on a WhatsApp stream: the caller receives the hold file's packets byte for byte,
//! in the same stream (SSRC, sequence, timestamps continuing), and nothing before start_sending.

mod common;

use common::{connected, engine, melody_packets, meta_leg, LONG};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_hears_the_hold_file_byte_for_byte_with_no_sequence_gap() {
    let e = engine();
    let (caller, wa) = meta_leg(&e).await;
    connected(&caller).await;
    // Hold set before accept sends nothing: Meta counts the first packet as answering.
    e.handle.hold(wa.streams[0], true).await.unwrap();
    let c = e.handle.counters().await.unwrap();
    assert_eq!(c.engine.hold_sent, 0);
    e.handle.start_sending(wa.leg).await.unwrap();
    let melody = melody_packets();
    caller
        .wait_for(LONG, |s| s.packets_received >= 60)
        .await
        .expect("hold audio flows");
    e.handle.hold(wa.streams[0], false).await.unwrap();
    let after = caller.status().packets_received + 10;
    caller
        .wait_for(LONG, |s| s.packets_received >= after)
        .await
        .expect("silence follows");
    let rec = caller.recording().await.unwrap();
    let audio: Vec<_> = rec.packets.iter().filter(|p| p.pt == 111).collect();
    // The first packets are the melody's first packets, in order, byte for byte.
    for (i, p) in audio.iter().take(60).enumerate() {
        assert_eq!(
            &p.payload[..],
            &melody[i][..],
            "packet {i} is the hold file's"
        );
    }
    // Then silence, on the same stream.
    assert_eq!(&audio.last().unwrap().payload[..], &[0xF8, 0xFF, 0xFE]);
    let ssrcs: std::collections::HashSet<u32> = audio.iter().map(|p| p.ssrc).collect();
    assert_eq!(ssrcs.len(), 1, "one SSRC");
    let gaps = audio
        .windows(2)
        .filter(|w| w[1].seq != w[0].seq + 1)
        .count();
    assert_eq!(gaps, 0, "no sequence gap across hold on and off");
    let ts_ok = audio
        .windows(2)
        .all(|w| w[1].ts.wrapping_sub(w[0].ts) % 960 == 0 && w[1].ts != w[0].ts);
    assert!(ts_ok, "timestamps advance in whole 20 ms frames");
    let c = e.handle.counters().await.unwrap();
    assert!(c.engine.hold_sent >= 60);
}

/// A leg with hold audio of its own (its account's) plays that, not the engine's, byte for byte
/// and in the same stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leg_with_hold_audio_of_its_own_plays_it() {
    let e = engine();
    let (caller, wa) = meta_leg(&e).await;
    connected(&caller).await;
    // The melody backwards: packets no engine default holds.
    let own: Vec<std::sync::Arc<[u8]>> = melody_packets().iter().rev().cloned().collect();
    let clip = switchboard::media::HoldAudio(own.clone().into());
    e.handle
        .post(switchboard::media::LegOp::HoldAudio(wa.leg, clip))
        .unwrap()
        .result()
        .await
        .unwrap();
    e.handle.start_sending(wa.leg).await.unwrap();
    e.handle.hold(wa.streams[0], true).await.unwrap();
    caller
        .wait_for(LONG, |s| s.packets_received >= 40)
        .await
        .expect("hold audio flows");
    let rec = caller.recording().await.unwrap();
    let audio: Vec<_> = rec
        .packets
        .iter()
        .filter(|p| p.pt == 111)
        .map(|p| p.payload.to_vec())
        .collect();
    // After the silence sent before hold, the leg's own clip from its first packet.
    let start = audio
        .iter()
        .position(|p| p[..] == own[0][..])
        .expect("the leg's own clip is heard");
    for (i, p) in audio[start..].iter().take(30).enumerate() {
        assert_eq!(p[..], own[i][..], "packet {i} is the leg's own clip's");
    }
    assert!(!audio
        .iter()
        .any(|p| p[..] == melody_packets()[0][..] && p[..] != own[0][..]));
}
