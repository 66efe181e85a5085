//! Answering Meta's offer, the work a new call puts on a media thread (issue 26, "the ramp off
//! the media threads"): `Engine::answer_whatsapp` — screening the offer, placing the leg on a
//! socket, building its `Rtc` (ICE agent, DTLS instance, session), accepting the offer and
//! writing the answer. Each offer comes from another relay address, as a burst of calls does;
//! the engine is replaced (untimed) every 500 answers so its tables stay a burst's size.
//!
//! At R new calls a second, one engine thread spends R × this figure answering; the DTLS
//! handshake that follows (ECDHE and ECDSA) is not included.
//!
//! Run: `cargo bench --bench answer`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use switchboard::media::{Engine, EngineConfig, Limits};

const META_OFFER: &str = include_str!("../tests/fixtures/meta_offer.sdp");
const PER_ENGINE: u64 = 500;

fn engine() -> Engine {
    Engine::new(EngineConfig {
        public_ip: [10, 0, 0, 1].into(),
        public_ip6: None,
        ports: (20_000..20_000 + PER_ENGINE as u16).collect(),
        shards: 1,
        connect_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
        stats_interval: Duration::from_secs(5),
        limits: Limits::default(),
        hold_audio: Arc::from(Vec::new()),
    })
    .expect("an engine")
}

fn answer(c: &mut Criterion) {
    let offers: Vec<String> = (0..PER_ENGINE)
        .map(|i| {
            META_OFFER.replace(
                "57.144.125.35",
                &format!("10.9.{}.{}", i / 250, i % 250 + 1),
            )
        })
        .collect();
    c.bench_function("answer_whatsapp_offer", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            let mut e = engine();
            for i in 0..iters {
                if i > 0 && i % PER_ENGINE == 0 {
                    e = engine();
                }
                let offer = &offers[(i % PER_ENGINE) as usize];
                let now = Instant::now();
                let answered = e.answer_whatsapp(now, offer);
                spent += now.elapsed();
                assert!(answered.is_ok(), "{answered:?}");
            }
            spent
        })
    });
}

criterion_group!(benches, answer);
criterion_main!(benches);
