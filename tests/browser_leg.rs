//! A real browser against a browser leg: headless Chromium (a WebRTC stack we did not write)
//! offers to the engine with a fake microphone playing 440 Hz, while a Meta-shaped peer on the
//! WhatsApp leg plays 1 kHz. Each side must hear the other's tone through the relay, and the
//! browser must encode with the Opus parameters our answer asked for (WhatsApp's shape).
//!
//! Needs Debian's `chromium` and `tests/browser/node_modules` (playwright-core); `scripts/deps`
//! installs both.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use axum::extract::State;
use axum::response::Html;
use axum::routing::{get, post};
use axum::Router;
use common::*;
use switchboard::media::EngineHandle;
use switchboard::sim::peer::{Outgoing, Peer, PendingPeer};
use tokio::sync::mpsc;

const PAGE: &str = r#"<!doctype html><html><body><audio id="a" autoplay muted></audio><script>
let pc, remote;
async function start() {
  const mic = await navigator.mediaDevices.getUserMedia({ audio: {
    echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
  pc = new RTCPeerConnection();
  pc.addTrack(mic.getAudioTracks()[0], mic);
  pc.ontrack = (e) => { remote = e.streams[0] || new MediaStream([e.track]);
                        document.getElementById('a').srcObject = remote; };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((r) => { if (pc.iceGatheringState === 'complete') r();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r();
    setTimeout(r, 3000); });
  const answer = await (await fetch('/offer', { method: 'POST', body: pc.localDescription.sdp })).text();
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  for (let i = 0; i < 150 && pc.connectionState !== 'connected'; i++) await new Promise((r) => setTimeout(r, 100));
  return pc.connectionState;
}
async function measure(ms) {
  const ctx = new AudioContext(); const an = ctx.createAnalyser(); an.fftSize = 8192;
  ctx.createMediaStreamSource(remote).connect(an);
  const f = new Float32Array(an.frequencyBinCount); const peaks = [];
  for (let t = 0; t < ms; t += 100) {
    await new Promise((r) => setTimeout(r, 100)); an.getFloatFrequencyData(f);
    let bi = 1; for (let i = 2; i < f.length; i++) if (f[i] > f[bi]) bi = i;
    peaks.push(bi * ctx.sampleRate / an.fftSize); }
  peaks.sort((a, b) => a - b); return peaks[peaks.length >> 1];
}
async function stats() {
  const o = { codecs: [] };
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'audio') o.inbound = { received: s.packetsReceived, lost: s.packetsLost };
    if (s.type === 'outbound-rtp' && s.kind === 'audio') o.outbound = { sent: s.packetsSent };
    if (s.type === 'codec') o.codecs.push(s.mimeType + ' ' + (s.sdpFmtpLine || ''));
  });
  return o;
}
</script></body></html>"#;

#[derive(Clone)]
struct Server {
    engine: EngineHandle,
    meta: mpsc::Sender<Peer>,
}

/// The page's offer: answer it with a browser leg, put a Meta-shaped peer playing 1 kHz on a
/// WhatsApp leg, and route each leg's audio to the other.
async fn offer(State(s): State<Server>, sdp: String) -> String {
    let browser = s.engine.answer_browser(sdp).await.expect("browser offer");
    let pending = PendingPeer::meta(LOOPBACK).await.unwrap();
    let wa = s.engine.answer_whatsapp(pending.offer()).await.unwrap();
    let meta = pending.connect(&wa.sdp).unwrap();
    connected(&meta).await;
    meta.send(Outgoing::Tone { hz: 1000.0 }).await.unwrap();
    s.engine
        .route(browser.streams[0], Some(wa.leg))
        .await
        .unwrap();
    s.engine
        .route(wa.streams[0], Some(browser.leg))
        .await
        .unwrap();
    s.engine.start_sending(wa.leg).await.unwrap();
    s.meta.send(meta).await.unwrap();
    browser.sdp
}

/// Runs `node leg.js` in its own process group, killed whole if it overruns `limit`.
fn run_node(url: &str, wav: &std::path::Path, limit: Duration) -> String {
    let dir = browser_dir();
    let mut child = Command::new("node")
        .arg("leg.js")
        .arg(url)
        .arg(wav)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .expect("node runs");
    // Waits for node to exit, on a thread of its own that reads what it prints until then, or
    // for `limit` to pass.
    let pid = child.id();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let mut out = String::new();
        use std::io::Read;
        let _ = child.stdout.take().unwrap().read_to_string(&mut out);
        let status = child.wait().unwrap();
        let _ = done_tx.send((status, out));
    });
    match done_rx.recv_timeout(limit) {
        Ok((status, out)) => {
            waiter.join().unwrap();
            assert!(status.success(), "node failed ({status}): {out}");
            out
        }
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
            let _ = waiter.join();
            panic!("the browser run exceeded {limit:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_and_a_meta_peer_hear_each_other_through_the_engine() {
    let e = engine();
    let (meta_tx, mut meta_rx) = mpsc::channel(1);
    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/offer", post(offer))
        .with_state(Server {
            engine: e.handle.clone(),
            meta: meta_tx,
        });
    let listener = tokio::net::TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = std::env::temp_dir().join(format!("sb-browser-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wav = dir.join("tone440.wav");
    write_tone(&wav, 440.0);
    let browser =
        tokio::task::spawn_blocking(move || run_node(&url, &wav, Duration::from_secs(120)));

    // Listen on the Meta side while the browser is still talking (it measures for 3 s).
    let meta = tokio::time::timeout(Duration::from_secs(60), meta_rx.recv())
        .await
        .expect("the browser made its offer")
        .expect("the Meta-side peer was set up");
    meta.wait_for(LONG, |s| s.packets_received > 75)
        .await
        .expect("the Meta side hears the browser");
    let meta_heard = meta.recording().await.unwrap().heard;

    let out = browser.await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no result from the browser: {out}"));
    let r: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(r["state"], "connected", "{r}");
    let hears = r["hears"].as_f64().unwrap_or(0.0);
    assert!(
        (hears - 1000.0).abs() < 15.0,
        "the browser heard {hears} Hz: {r}"
    );
    let codecs = r["stats"]["codecs"].to_string();
    assert!(
        codecs.contains("maxaveragebitrate=20000"),
        "the browser sends with WhatsApp's Opus parameters: {codecs}"
    );

    let (hz, _) = meta_heard.expect("the Meta side hears sound");
    assert!((hz - 440.0).abs() <= 20.0, "the Meta side heard {hz} Hz");
}
