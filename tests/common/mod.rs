//! Shared harness for the integration tests: an engine on loopback and the peers around it.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use switchboard::media::{
    Bind, EngineConfig, EngineHandle, Limits, MediaDriver, MediaEvent, Ports,
};
use switchboard::sim::peer::{Peer, PendingPeer};
use tokio::sync::mpsc;

pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A media engine on 127.0.0.1 with a fresh port.
pub struct TestEngine {
    pub driver: MediaDriver,
    pub handle: EngineHandle,
    pub events: mpsc::Receiver<MediaEvent>,
}

pub fn engine_with(connect_timeout: Duration, idle_timeout: Duration) -> TestEngine {
    engine_on(Ports::Ephemeral(1), connect_timeout, idle_timeout)
}

/// An engine on 127.0.0.1 with the given pool of ports.
pub fn engine_on(ports: Ports, connect_timeout: Duration, idle_timeout: Duration) -> TestEngine {
    engine_sharded_on(ports, 1, connect_timeout, idle_timeout)
}

/// An engine of `shards` threads on 127.0.0.1, one port each: new legs go to the shards in
/// turn, so the first `shards` legs all land on different threads.
pub fn engine_sharded(shards: usize) -> TestEngine {
    engine_sharded_on(
        Ports::Ephemeral(shards as u16),
        shards,
        Duration::from_secs(10),
        Duration::from_secs(10),
    )
}

pub fn engine_sharded_on(
    ports: Ports,
    shards: usize,
    connect_timeout: Duration,
    idle_timeout: Duration,
) -> TestEngine {
    let cfg = EngineConfig {
        public_ip: LOOPBACK,
        public_ip6: None,
        ports: vec![],
        shards,
        connect_timeout,
        idle_timeout,
        stats_interval: Duration::from_millis(500),
        limits: Limits::default(),
        hold_audio: melody_packets(),
    };
    let bind = Bind {
        ip: LOOPBACK,
        ip6: None,
        ports,
    };
    let (driver, handle, events) = MediaDriver::spawn(bind, cfg).expect("engine starts");
    TestEngine {
        driver,
        handle,
        events,
    }
}

/// The built-in melody as Opus packets: the hold audio of every test engine.
pub fn melody_packets() -> std::sync::Arc<[std::sync::Arc<[u8]>]> {
    switchboard::media::ogg::read(switchboard::media::ogg::MELODY)
        .expect("the built-in melody reads")
        .packets
        .into_iter()
        .map(std::sync::Arc::from)
        .collect()
}

pub fn engine() -> TestEngine {
    engine_with(Duration::from_secs(10), Duration::from_secs(10))
}

impl TestEngine {
    /// The next event that satisfies `f`, skipping others (stats); panics after `limit`.
    pub async fn expect_event(
        &mut self,
        limit: Duration,
        mut f: impl FnMut(&MediaEvent) -> bool,
    ) -> MediaEvent {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(e)) if f(&e) => return e,
                Ok(Some(_)) => continue,
                Ok(None) => panic!("engine event channel closed"),
                Err(_) => panic!("no matching media event within {limit:?}"),
            }
        }
    }
}

/// A Meta-shaped peer connected to a new WhatsApp leg.
pub async fn meta_leg(e: &TestEngine) -> (Peer, switchboard::media::Answer) {
    let pending = PendingPeer::meta(LOOPBACK).await.unwrap();
    let answer = e.handle.answer_whatsapp(pending.offer()).await.unwrap();
    let peer = pending.connect(&answer.sdp).unwrap();
    (peer, answer)
}

/// A browser-shaped peer with `streams` audio m-lines connected to a new browser leg.
pub async fn browser_leg(e: &TestEngine, streams: usize) -> (Peer, switchboard::media::Answer) {
    let pending = PendingPeer::browser(LOOPBACK, streams).await.unwrap();
    let answer = e.handle.answer_browser(pending.offer()).await.unwrap();
    let peer = pending.connect(&answer.sdp).unwrap();
    (peer, answer)
}

pub const LONG: Duration = Duration::from_secs(10);

pub async fn connected(p: &Peer) {
    p.wait_for(LONG, |s| s.connected)
        .await
        .expect("peer connects");
}

/// The password of every person the tests configure.
pub const PASSWORD: &str = "correct horse battery staple";

/// A configured person with [`PASSWORD`] (hashed once per test process: argon2 is slow on
/// purpose).
pub fn person(
    id: &str,
    role: switchboard::config::Role,
    queues: &[&str],
) -> switchboard::config::Person {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let hash = HASH.get_or_init(|| {
        switchboard::signaling::auth::hash_password(PASSWORD).expect("hashing works")
    });
    switchboard::config::Person {
        id: switchboard::ids::AgentId(id.to_owned()),
        name: id.to_uppercase(),
        role,
        password_hash: switchboard::config::PasswordHash::parse(hash).expect("a valid PHC"),
        queues: queues.iter().map(|q| (*q).to_owned()).collect(),
    }
}

/// `n` agents of the support queue, `agent1` … `agentN`.
pub fn agents(n: usize) -> Vec<switchboard::config::Person> {
    (1..=n)
        .map(|i| {
            person(
                &format!("agent{i}"),
                switchboard::config::Role::Agent,
                &["support"],
            )
        })
        .collect()
}

/// A configured person signed in over HTTP and `/ws`, with a connected two-stream
/// PeerConnection.
pub async fn sign_in(
    running: &switchboard::app::Running,
    id: &str,
) -> switchboard::sim::agent::SimAgent {
    let password = running
        .sandbox_sign_ins
        .iter()
        .find(|d| d.id.0 == id)
        .map_or(PASSWORD.to_owned(), |d| d.password.clone());
    switchboard::sim::agent::SimAgent::start(running.http_addr, id, &password, LOOPBACK, 2)
        .await
        .expect("the agent signs in and connects its audio")
}

/// The fake Meta around a live-mode switchboard: credentials, the fake Graph API they point to,
/// and the simulator that calls with signed webhooks.
pub const APP_SECRET: &str = "test-app-secret";
/// The fake Graph API's access token.
pub const TOKEN: &str = "test-access-token";
/// The business number id.
pub const PHONE_ID: &str = "123456789012345";
/// The webhook verification token.
pub const VERIFY_TOKEN: &str = "test-verify-token";

/// A fake Graph API serving on loopback for the whole test process, and a live-mode
/// configuration pointing at it (records in memory), with `extra` settings on top.
pub async fn live_config(
    extra: switchboard::config::Settings,
) -> (
    switchboard::whatsapp::simulator::FakeGraph,
    mpsc::Receiver<switchboard::whatsapp::simulator::FakeGraphEvent>,
    switchboard::config::Config,
) {
    use switchboard::config::{Config, Secret, Settings};
    let fake = switchboard::whatsapp::simulator::FakeGraph::new(TOKEN, PHONE_ID);
    let events = fake.take_events().expect("a new fake's events");
    let (graph_addr, server) = fake
        .clone()
        .serve((Ipv4Addr::LOCALHOST, 0).into())
        .await
        .expect("the fake Graph API serves");
    std::mem::forget(server); // lives for the test process
    let config = Config::from_settings(loopback(Settings {
        graph_url: Some(format!("http://{graph_addr}")),
        phone_number_id: Some(PHONE_ID.into()),
        access_token: Some(Secret::new(TOKEN)),
        app_secret: Some(Secret::new(APP_SECRET)),
        verify_token: Some(Secret::new(VERIFY_TOKEN)),
        db: extra.db.clone().or(Some(":memory:".into())),
        ..extra
    }))
    .expect("a valid configuration");
    (fake, events, config)
}

/// The simulated Meta calling `running` (through `relay` when given).
pub fn simulator(
    running: &switchboard::app::Running,
    fake: &switchboard::whatsapp::simulator::FakeGraph,
    events: mpsc::Receiver<switchboard::whatsapp::simulator::FakeGraphEvent>,
    relay: Option<switchboard::sim::relay::MetaRelay>,
) -> switchboard::whatsapp::simulator::Simulator {
    use switchboard::whatsapp::simulator::{Simulator, SimulatorConfig};
    Simulator::start(
        SimulatorConfig {
            webhook_url: format!("http://{}/webhooks/whatsapp", running.http_addr),
            app_secret: switchboard::config::Secret::new(APP_SECRET),
            phone_number_id: PHONE_ID.into(),
            relay,
            ..SimulatorConfig::default()
        },
        fake.clone(),
        events,
    )
}

/// A 10 s mono 48 kHz WAV file of a sine tone: a fake microphone for Chromium.
pub fn write_tone(path: &std::path::Path, hz: f64) {
    let rate = 48_000u32;
    let samples: Vec<i16> = (0..rate * 10)
        .map(|i| {
            ((2.0 * std::f64::consts::PI * hz * f64::from(i) / f64::from(rate)).sin() * 16000.0)
                as i16
        })
        .collect();
    let data_len = (samples.len() * 2) as u32;
    let mut w = Vec::with_capacity(44 + data_len as usize);
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data_len).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes()); // PCM
    w.extend_from_slice(&1u16.to_le_bytes()); // mono
    w.extend_from_slice(&rate.to_le_bytes());
    w.extend_from_slice(&(rate * 2).to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        w.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, w).unwrap();
}

/// `tests/browser`, after checking that Chromium and the npm packages are there.
pub fn browser_dir() -> &'static str {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
    assert!(
        std::path::Path::new(dir)
            .join("node_modules/playwright-core")
            .exists()
            && std::path::Path::new("/usr/bin/chromium").exists(),
        "browser tests need chromium and tests/browser/node_modules: run scripts/deps"
    );
    dir
}

/// A headless Chromium driven line by line (`tests/browser/driver.js`), its fake microphone
/// playing a `hz` tone. Killed with its whole process group when dropped.
pub struct Browser {
    stdin: std::process::ChildStdin,
    lines: mpsc::UnboundedReceiver<String>,
    pgid: u32,
    /// Set once the driver has exited.
    exited: std::sync::Arc<std::sync::atomic::AtomicBool>,
    _tone: std::path::PathBuf,
    /// Chromium's profile: removed with the browser (a killed driver cannot remove it).
    profile: std::path::PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        use std::io::Write;
        // Asked to quit first: Playwright's Chromium runs in a process group of its own and,
        // left to notice the driver gone, would write its profile again after it is removed.
        let _ = writeln!(self.stdin, "quit").and_then(|()| self.stdin.flush());
        for _ in 0..250 {
            if self.exited.load(std::sync::atomic::Ordering::Acquire) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.pgid)])
            .status();
        let _ = std::fs::remove_file(&self._tone);
        // Chromium's processes may still be writing there for a moment after the signal.
        for _ in 0..50 {
            if std::fs::remove_dir_all(&self.profile).is_ok() || !self.profile.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Browser {
    /// Starts Chromium; panics (with what to install) when the browser tests cannot run here.
    pub fn start(hz: f64) -> Browser {
        use std::io::BufRead;
        use std::os::unix::process::CommandExt;
        let dir = browser_dir();
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tone = std::env::temp_dir().join(format!("sb-tone-{}-{n}.wav", std::process::id()));
        write_tone(&tone, hz);
        let profile = tempfile::Builder::new()
            .prefix("sb-page-")
            .tempdir()
            .expect("a temporary directory")
            .keep();
        let mut child = std::process::Command::new("node")
            .arg("driver.js")
            .arg(&tone)
            .env("SB_PROFILE_DIR", &profile)
            .current_dir(dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .process_group(0)
            .spawn()
            .expect("node runs");
        let stdout = child.stdout.take().expect("piped");
        let stdin = child.stdin.take().expect("piped");
        let pgid = child.id();
        let (tx, lines) = mpsc::unbounded_channel();
        let exited = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = exited.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    return;
                }
            }
            let _ = child.wait();
            done.store(true, std::sync::atomic::Ordering::Release);
        });
        Browser {
            stdin,
            lines,
            pgid,
            exited,
            _tone: tone,
            profile,
        }
    }

    /// Sends one command and returns its result; panics on `ERR` or after 60 s.
    pub async fn run(&mut self, command: &str) -> String {
        use std::io::Write;
        writeln!(self.stdin, "{command}").expect("the browser reads commands");
        self.stdin.flush().expect("the browser reads commands");
        loop {
            let line = tokio::time::timeout(Duration::from_secs(60), self.lines.recv())
                .await
                .unwrap_or_else(|_| panic!("the browser did not finish {command:?} in 60 s"))
                .unwrap_or_else(|| panic!("the browser ended during {command:?}"));
            if let Some(out) = line.strip_prefix("OK") {
                return out.trim().to_owned();
            }
            if let Some(e) = line.strip_prefix("ERR") {
                panic!("{command:?} failed in the browser: {}", e.trim());
            }
        }
    }

    /// Opens `url` and signs in through the page's own form.
    pub async fn sign_in(&mut self, url: &str, name: &str, password: &str) {
        self.run(&format!("goto {url}")).await;
        self.run(&format!("fill Name {name}")).await;
        self.run(&format!("fill Password {password}")).await;
        self.run("click Sign in").await;
    }

    /// axe-core finds no serious or critical accessibility violation on the page as it is now.
    pub async fn assert_accessible(&mut self, what: &str) {
        let found = self.run("axe").await;
        assert_eq!(found, "[]", "accessibility violations on {what}: {found}");
    }

    /// The dominant frequency an audio element plays, over `ms`.
    pub async fn hears(&mut self, audio: &str, ms: u32) -> f64 {
        self.run(&format!("measure {audio} {ms}"))
            .await
            .parse()
            .expect("a frequency")
    }
}

/// Log lines captured in memory.
#[derive(Clone, Default)]
pub struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogBuffer {
    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// A process-wide subscriber capturing lines up to `level` (a thread-local one races with
/// callsite-interest caching while other tests run in parallel); a test tells its own lines
/// apart by their content. The first caller's level holds for the test binary.
pub fn global_logs(level: tracing::Level) -> &'static LogBuffer {
    static LOGS: std::sync::OnceLock<LogBuffer> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = LogBuffer::default();
        tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_max_level(level)
            .with_ansi(false)
            .init();
        logs
    })
}

/// `extra`, with every listener switchboard opens on loopback and a port the OS picks, where
/// `extra` names none: tests run side by side.
pub fn loopback(extra: switchboard::config::Settings) -> switchboard::config::Settings {
    let any = || Some("127.0.0.1:0".to_owned());
    switchboard::config::Settings {
        http_addr: extra.http_addr.clone().or_else(any),
        metrics_addr: extra.metrics_addr.clone().or_else(any),
        media_addr: extra.media_addr.clone().or_else(any),
        ..extra
    }
}

/// Asks `check` every 20 ms until it gives a value, for at most `bound`; panics naming `what`
/// otherwise. For states nothing announces (a lease running out in Redis, a fresh `/readyz`):
/// where an event marks the change, wait for the event instead.
pub async fn eventually<T, F, Fut>(what: &str, bound: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`eventually`] for a check that can say what it saw instead (`Err(seen)`: not yet); the
/// panic shows the last thing seen.
pub async fn eventually_showing<T, S, F, Fut>(what: &str, bound: Duration, mut check: F) -> T
where
    S: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, S>>,
{
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        let seen = match check().await {
            Ok(v) => return v,
            Err(seen) => seen,
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {bound:?}; last seen: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The blocking twin of [`eventually`], for code outside a runtime.
pub fn eventually_blocking<T>(
    what: &str,
    bound: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + bound;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {bound:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The value of one series in a Prometheus text scrape (`name{labels}` exactly as written).
pub fn metric_value(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Every setting's environment variable: `--help` and the example configuration each name all
/// of them (add a new setting here).
pub const SETTING_VARS: &[&str] = &[
    "SWITCHBOARD_CONFIG",
    "SWITCHBOARD_OPERATOR_KEY",
    "SWITCHBOARD_SECRETS_KEY",
    "SWITCHBOARD_HTTP_ADDR",
    "SWITCHBOARD_MEDIA_ADDR",
    "SWITCHBOARD_MEDIA_PORTS",
    "SWITCHBOARD_RING_TIMEOUT",
    "SWITCHBOARD_METRICS_ADDR",
    "SWITCHBOARD_DRAIN_SECS",
    "SWITCHBOARD_HOLD_AUDIO",
    "SWITCHBOARD_WRAP_UP",
    "SWITCHBOARD_AGENT_GRACE",
    "SWITCHBOARD_PUBLIC_IP",
    "SWITCHBOARD_PUBLIC_IP6",
    "SWITCHBOARD_MEDIA_MAX_LEGS",
    "SWITCHBOARD_MEDIA_MAX_BROWSER_STREAMS",
    "SWITCHBOARD_MEDIA_MAX_PENDING_EVENTS",
    "SWITCHBOARD_MEDIA_MAX_DTMF_QUEUE",
    "SWITCHBOARD_MEDIA_SHARDS",
    "SWITCHBOARD_MEDIA_CONNECT_TIMEOUT",
    "SWITCHBOARD_MEDIA_IDLE_TIMEOUT",
    "SWITCHBOARD_MEDIA_STATS_INTERVAL",
    "SWITCHBOARD_GRAPH_URL",
    "SWITCHBOARD_GRAPH_VERSION",
    "SWITCHBOARD_PHONE_NUMBER_ID",
    "SWITCHBOARD_ACCESS_TOKEN",
    "SWITCHBOARD_APP_SECRET",
    "SWITCHBOARD_VERIFY_TOKEN",
    "SWITCHBOARD_MAX_CALLS_PER_NUMBER",
    "SWITCHBOARD_SANDBOX_MAX_CALLS",
    "SWITCHBOARD_DB",
    "SWITCHBOARD_DATABASE_URL",
    "SWITCHBOARD_NODE_ID",
    "SWITCHBOARD_REDIS_URL",
    "SWITCHBOARD_NODE_LEASE",
    "SWITCHBOARD_NODE_URL",
    "SWITCHBOARD_SESSION_HOURS",
    "SWITCHBOARD_COOKIE_SECURE",
    "SWITCHBOARD_TRUST_FORWARDED_FOR",
    "SWITCHBOARD_HTTP_HEADER_TIMEOUT",
    "SWITCHBOARD_HTTP_REQUEST_TIMEOUT",
    "SWITCHBOARD_HTTP_MAX_CONNECTIONS",
    "SWITCHBOARD_HTTP_MAX_CONNECTIONS_PER_CLIENT",
    "SWITCHBOARD_PASSWORD_WORKERS",
    "SWITCHBOARD_PASSWORD_QUEUE",
    "SWITCHBOARD_ALLOWED_ORIGINS",
    "SWITCHBOARD_EVENTS_RETRY_FIRST",
    "SWITCHBOARD_EVENTS_RETRY_HOURS",
    "SWITCHBOARD_EVENTS_TIMEOUT",
    "SWITCHBOARD_EVENTS_PRIVATE_TARGETS",
    "SWITCHBOARD_LOG_FORMAT",
];

/// A simulated call whose caller never hangs up by itself.
pub async fn held_call(
    sim: &switchboard::whatsapp::simulator::Simulator,
) -> switchboard::whatsapp::simulator::SimulatedCall {
    sim.place_call(switchboard::whatsapp::simulator::CallSpec {
        hang_up_after: None,
        ..Default::default()
    })
    .await
    .unwrap()
}

/// A PostgreSQL server of its own, in a temporary directory, on a free loopback port: Debian's
/// `initdb` and `pg_ctl` (kept off the PATH in `/usr/lib/postgresql/<version>/bin`), run as the
/// `postgres` user when the tests run as root (PostgreSQL refuses to run as root). Stopped when
/// dropped. `scripts/deps` installs the server.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    as_postgres: bool,
    pub port: u16,
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = postgres_bin().expect(
            "PostgreSQL's server (initdb, pg_ctl) is needed: scripts/deps installs Debian's \
             postgresql package",
        );
        let dir = tempfile::tempdir().unwrap();
        let as_postgres = std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        if as_postgres {
            let ok = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(ok.success(), "chown to postgres");
        }
        // A free port: bound, read and let go (the server binds it a moment later).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = Postgres {
            dir,
            bin,
            as_postgres,
            port,
        };
        let data = pg.dir.path().join("data");
        pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            pg.dir.path().display()
        );
        let log = pg.dir.path().join("log");
        pg.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
        pg
    }

    /// A new, empty database on this server; its URL.
    pub fn database(&self, name: &str) -> String {
        // On a thread of its own: the blocking client runs a runtime of its own, which must not
        // start inside a test's.
        let admin = self.url("postgres");
        let create = format!("CREATE DATABASE {name}");
        std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&admin, postgres::NoTls)
                .expect("the test server takes connections");
            client.batch_execute(&create).unwrap();
        })
        .join()
        .unwrap();
        self.url(name)
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// One of the server's tools, run as `postgres` when we are root.
    fn tool(&self, tool: &str, args: &[&str]) -> std::process::Command {
        let exe = self.bin.join(tool);
        let mut c = if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            std::process::Command::new(exe)
        };
        c.args(args);
        c
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self
            .tool(tool, args)
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let args = ["-D", data.to_str().unwrap_or(""), "-m", "immediate", "stop"];
        let _ = self.tool("pg_ctl", &args).output();
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` with `initdb`, else `initdb`'s directory on
/// the PATH.
fn postgres_bin() -> Option<std::path::PathBuf> {
    let mut found: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|p| p.join("initdb").exists() && p.join("pg_ctl").exists())
    })
}

/// A `redis-server` of its own on a Unix socket in a directory of its own (no TCP port, so
/// none is reserved and let go for it), persisting nothing; killed when dropped (or by
/// [`Redis::stop`]). `scripts/deps` installs Debian's redis-server.
pub struct Redis {
    child: Option<std::process::Child>,
    /// Where its socket is: [`Redis::restart`] brings a stopped one back at the same address.
    dir: std::sync::Arc<tempfile::TempDir>,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_in(std::sync::Arc::new(tempfile::tempdir().unwrap()))
    }

    /// A new server at the same address as this one (after [`Redis::stop`]: a restart).
    pub fn restart(&self) -> Redis {
        Redis::start_in(self.dir.clone())
    }

    fn start_in(dir: std::sync::Arc<tempfile::TempDir>) -> Redis {
        let socket = dir.path().join("redis.sock");
        let child = std::process::Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args([
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is needed: scripts/deps installs Debian's redis-server");
        // Ready once it takes a connection and answers PING.
        eventually_blocking(
            "redis-server never answered",
            Duration::from_secs(10),
            || redis_answers(&socket).then_some(()),
        );
        Redis {
            child: Some(child),
            dir,
        }
    }

    pub fn url(&self) -> String {
        format!("unix://{}", self.dir.path().join("redis.sock").display())
    }

    /// Kills the server (as a crash would) and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn redis_answers(socket: &std::path::Path) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(1)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// A call record with every list filled; `n` orders them (`started_at` grows with it) and
/// names them (`wacid.HBgL000n=`).
pub fn call_record(
    n: u32,
    outcome: switchboard::store::Outcome,
    queue: &str,
    agents: &[&str],
) -> switchboard::store::CallRecord {
    use switchboard::ids::WaCallId;
    use switchboard::store::{CallRecord, EndedBy, LegQuality, LegRole, Outcome, Transition};
    let at = 1_700_000_000_000 + i64::from(n) * 1_000;
    CallRecord {
        call_id: WaCallId(format!("wacid.HBgL{n:04}=")),
        caller_number: "15550001111".into(),
        caller_name: None,
        business_number: "115017831530658".into(),
        queue: Some(queue.into()),
        agents: agents.iter().map(|a| a.to_string()).collect(),
        started_at: at,
        answered_at: (outcome == Outcome::Answered).then_some(at + 3_000),
        ended_at: at + 30_000,
        transitions: vec![
            Transition {
                state: "offered".into(),
                at,
                agent: None,
            },
            Transition {
                state: "ended".into(),
                at: at + 30_000,
                agent: None,
            },
        ],
        outcome,
        end_reason: "caller_hung_up".into(),
        ended_by: EndedBy::Caller,
        meta_error_codes: vec![],
        legs: vec![LegQuality {
            role: LegRole::Whatsapp,
            agent: None,
            packets_rx: 1500,
            packets_tx: 1500,
            loss_rx: Some(0.0),
            loss_tx: Some(0.02),
            jitter_ms: Some(3.0),
            rtt_ms: Some(120.0),
        }],
        node: None,
        direction: switchboard::store::Direction::Inbound,
        dialled_by: None,
        task_id: None,
    }
}

/// Which sender a payload came from, checking every byte against what that sender made.
pub fn origin(p: &[u8]) -> Option<u8> {
    if p == switchboard::media::OPUS_SILENCE {
        return Some(0);
    }
    let tag = *p.get(1)?;
    let n = u32::from_be_bytes(p.get(2..6)?.try_into().ok()?);
    (switchboard::sim::peer::tagged_payload(tag, n) == p).then_some(tag)
}

/// The peer's recording once `f` holds, checked each time the peer hears a packet; panics
/// after [`LONG`].
pub async fn wait_recording(
    p: &Peer,
    what: &str,
    mut f: impl FnMut(&switchboard::sim::peer::Recording) -> bool,
) -> switchboard::sim::peer::Recording {
    let deadline = std::time::Instant::now() + LONG;
    loop {
        let heard = p.status().packets_received;
        let rec = p.recording().await.unwrap();
        if f(&rec) {
            return rec;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        p.wait_for(left, |s| s.packets_received > heard)
            .await
            .unwrap_or_else(|| panic!("never {what}"));
    }
}

/// The record of `call` in `store`, once it is written (polled: records have no event here);
/// panics after `limit`.
pub async fn record_of(
    store: &switchboard::store::StoreHandle,
    call: &switchboard::ids::WaCallId,
    limit: Duration,
) -> switchboard::store::CallRecord {
    eventually(&format!("no record of {call}"), limit, || async {
        let page = store
            .list(switchboard::store::CallQuery::default())
            .await
            .unwrap();
        page.calls.into_iter().find(|r| r.call_id == *call)
    })
    .await
}

/// `method path` on switchboard at `http` with `token` as `Authorization: Bearer` and `body`
/// as JSON: the status, and the JSON answered (`null` when there is none).
pub async fn api(
    http: &reqwest::Client,
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
    let mut req = http
        .request(method, format!("http://{addr}{path}"))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("switchboard answers");
    (
        r.status().as_u16(),
        r.json().await.unwrap_or(serde_json::Value::Null),
    )
}

/// The dominant frequency a simulated caller heard over its last ~`packets` packets (`None`
/// when it heard nothing in time).
pub async fn caller_hears(
    call: &switchboard::whatsapp::simulator::SimulatedCall,
    packets: u64,
) -> Option<f64> {
    let caller = call.peer()?;
    let until = caller.status().packets_received + packets;
    caller
        .wait_for(LONG, |s| s.packets_received > until)
        .await?;
    caller.recording().await.ok()?.heard.map(|(hz, _)| hz)
}

/// A measured frequency is the tone `target` (within 30 Hz).
pub fn near(hz: f64, target: f64) -> bool {
    (hz - target).abs() < 30.0
}

/// A request an [`EventsReceiver`] got: its `webhook-id`, whether it was taken (204, not
/// 503), the event's type, its call (or agent, for `agent.state`), the event itself, and
/// whether it was signed with the secret set.
#[derive(Debug, Clone)]
pub struct Got {
    pub id: String,
    pub taken: bool,
    pub kind: String,
    pub about: String,
    pub event: serde_json::Value,
    pub signed: bool,
}

/// A host's backend receiving call events (issue 24), on loopback: refuses (503) while
/// `down`, keeps every request, and checks each signature with an HMAC of its own (not
/// switchboard's code) under the secret set.
#[derive(Clone, Default)]
pub struct EventsReceiver {
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    key: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    pub got: std::sync::Arc<std::sync::Mutex<Vec<Got>>>,
    progress: std::sync::Arc<tokio::sync::Notify>,
}

impl EventsReceiver {
    pub async fn serve(self) -> std::net::SocketAddr {
        let app = axum::Router::new()
            .route(
                "/events",
                axum::routing::post(
                    |axum::extract::State(r): axum::extract::State<EventsReceiver>,
                     headers: axum::http::HeaderMap,
                     body: String| async move {
                        let h = |n: &str| {
                            headers
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_owned()
                        };
                        let (id, ts, sig) = (
                            h("webhook-id"),
                            h("webhook-timestamp"),
                            h("webhook-signature"),
                        );
                        let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(
                            &r.key.lock().unwrap(),
                        )
                        .unwrap();
                        hmac::Mac::update(&mut mac, format!("{id}.{ts}.{body}").as_bytes());
                        let expected = format!(
                            "v1,{}",
                            base64::Engine::encode(
                                &base64::prelude::BASE64_STANDARD,
                                hmac::Mac::finalize(mac).into_bytes()
                            )
                        );
                        let signed = sig.split(' ').any(|s| s == expected);
                        let taken = !r.down.load(std::sync::atomic::Ordering::SeqCst);
                        let event: serde_json::Value =
                            serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
                        let kind = event["type"].as_str().unwrap_or("").to_owned();
                        let about = if kind.starts_with("agent.") {
                            &event["data"]["agent"]
                        } else {
                            &event["data"]["call_id"]
                        };
                        let about = about.as_str().unwrap_or("").to_owned();
                        r.got.lock().unwrap().push(Got {
                            id,
                            taken,
                            kind,
                            about,
                            event: event.clone(),
                            signed,
                        });
                        r.progress.notify_waiters();
                        if taken {
                            axum::http::StatusCode::NO_CONTENT
                        } else {
                            axum::http::StatusCode::SERVICE_UNAVAILABLE
                        }
                    },
                ),
            )
            .with_state(self);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    /// Checks signatures with `secret` (`whsec_…`) from now on.
    pub fn set_secret(&self, secret: &str) {
        *self.key.lock().unwrap() = base64::Engine::decode(
            &base64::prelude::BASE64_STANDARD,
            secret.strip_prefix("whsec_").expect("a whsec_ secret"),
        )
        .expect("the secret's key in base64");
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// Waits until `done` holds of what it got.
    pub async fn until(&self, what: &str, done: impl Fn(&[Got]) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let wait = self.progress.notified();
            if done(&self.got.lock().unwrap()) {
                return;
            }
            assert!(
                tokio::time::timeout_at(deadline, wait).await.is_ok(),
                "never: {what}: {:#?}",
                self.got.lock().unwrap()
            );
        }
    }
}

/// Meta's `call_permissions` for a customer who allowed calls (a temporary permission, calls
/// left in the day).
pub fn granted() -> switchboard::whatsapp::model::CallPermissions {
    serde_json::from_value(serde_json::json!({
        "messaging_product": "whatsapp",
        "permission": {"status": "temporary", "expiration_time": 4102444800u64},
        "actions": [
            {"action_name": "send_call_permission_request", "can_perform_action": false, "limits": []},
            {"action_name": "start_call", "can_perform_action": true,
             "limits": [{"time_period": "PT24H", "max_allowed": 100, "current_usage": 1}]}
        ]
    }))
    .unwrap()
}

/// The agent's next `call_back` message with `status`; panics after [`LONG`].
pub async fn call_back_status(
    a: &mut switchboard::sim::agent::SimAgent,
    want: &'static str,
) -> switchboard::signaling::protocol::ServerMsg {
    use switchboard::signaling::protocol::ServerMsg;
    a.expect(
        LONG,
        want,
        |m| matches!(m, ServerMsg::CallBack { status, .. } if status == want),
    )
    .await
    .unwrap_or_else(|e| panic!("no call_back {want}: {e:?}"))
}

/// A call-back's record went through Meta's steps in order: placed, ringing at the customer,
/// talking.
pub fn assert_call_back_steps(record: &switchboard::store::CallRecord) {
    let states: Vec<&str> = record
        .transitions
        .iter()
        .map(|t| t.state.as_str())
        .collect();
    let at = |s: &str| states.iter().position(|x| *x == s);
    assert!(at("calling") < at("callee_ringing"), "{states:?}");
    assert!(at("callee_ringing") < at("talking"), "{states:?}");
}
