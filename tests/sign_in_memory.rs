//! The real binary's memory through a burst of sign-ins: 800 attempts with made-up ids, each
//! from its own address (`X-Forwarded-For`, trusted), every one of them checked by argon2.
//! Resident memory must stay within [`BOUND_MIB`] of what it was before, at the peak and after:
//! each password worker reuses one argon2 block instead of allocating ~19 MiB per check (which
//! glibc's per-thread arenas kept: 19 → ~800 MiB for the same burst before).
//!
//! The figures are printed (`cargo test --test sign_in_memory -- --nocapture`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

/// How far above its resting size the process may grow, in MiB (documented in
/// docs/operations.md): the password workers' argon2 blocks (≤ 4 × 19 MiB) and some slack.
const BOUND_MIB: u64 = 100;

/// Sign-in attempts in the burst.
const ATTEMPTS: usize = 800;

/// Attempts in flight at once: below the password queue (64), so every attempt is checked
/// rather than answered 503, which is the heavier case for memory.
const IN_FLIGHT: usize = 48;

/// Resident memory of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

struct Switchboard(Child);

impl Drop for Switchboard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary (sandbox, demo people) on a free port and waits for its start-up line.
fn start() -> (Switchboard, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SWITCHBOARD_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("SWITCHBOARD_MEDIA_ADDR", "127.0.0.1:0")
        .env("SWITCHBOARD_METRICS_ADDR", "127.0.0.1:0")
        .env("SWITCHBOARD_TRUST_FORWARDED_FOR", "true")
        .env("SWITCHBOARD_PASSWORD_WORKERS", "2")
        .env("RUST_LOG", "warn,switchboard::app=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary runs");
    let out = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let sb = Switchboard(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("switchboard starts within 60 s");
        if line.contains("switchboard started") {
            break;
        }
    }
    (sb, format!("http://127.0.0.1:{port}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_sign_ins_stays_within_the_memory_bound() {
    let (sb, base) = start();
    let pid = sb.0.id();
    let http = reqwest::Client::new();
    // One sign-in first, so that what a worker keeps after its first check is in "before".
    let warm = http
        .post(format!("{base}/api/login"))
        .header("x-forwarded-for", "198.51.100.1")
        .json(&json!({"id": "nobody", "password": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(warm.status(), StatusCode::UNAUTHORIZED);
    let before = rss_kib(pid);

    // The peak, sampled while the burst runs.
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = std::thread::spawn({
        let (peak, done) = (peak.clone(), done.clone());
        move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    });

    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..ATTEMPTS {
        let permit = slots.clone().acquire_owned().await.unwrap();
        let (http, base) = (http.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let addr = format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256);
            http.post(format!("{base}/api/login"))
                .header("x-forwarded-for", addr)
                .json(&json!({"id": format!("made-up-{i}"), "password": "guess"}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut statuses = std::collections::BTreeMap::new();
    for t in tasks {
        *statuses.entry(t.await.unwrap().as_u16()).or_insert(0) += 1;
    }
    let took = started.elapsed();
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let after = rss_kib(pid);
    let peak = peak.load(Ordering::Relaxed).max(after);

    eprintln!(
        "sign-in burst: {ATTEMPTS} attempts ({IN_FLIGHT} in flight) in {:.1} s, answers {statuses:?}; \
         RSS before {} MiB, peak {} MiB, after {} MiB",
        took.as_secs_f64(),
        before / 1024,
        peak / 1024,
        after / 1024
    );
    // Every attempt was checked and refused as a wrong id; none throttled or turned away.
    assert_eq!(statuses.get(&401), Some(&ATTEMPTS), "{statuses:?}");
    assert!(
        peak - before < BOUND_MIB * 1024,
        "RSS grew from {} to {} MiB",
        before / 1024,
        peak / 1024
    );
    assert!(after.saturating_sub(before) < BOUND_MIB * 1024);
}
