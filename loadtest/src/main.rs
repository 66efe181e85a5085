//! `loadtest`: how many calls one switchboard carries, at what added delay, and how far that is
//! from a bare UDP relay on the same machine in the same run.
//!
//! It starts switchboard (the binary next to this one, or `--switchboard PATH`) in live mode
//! against its own fake Graph API, signs in N agents over HTTP and WebSocket (each with one
//! PeerConnection), then rings N calls in at `--rate` through signed `connect` webhooks with
//! Meta-shaped offers, every caller behind one relay address. The agents answer when rung; both
//! sides send tagged Opus frames every 20 ms; once all calls are up it measures for `--hold`
//! seconds, then hangs every call up and stops switchboard. Then it runs the same traffic
//! through a bare relay (`loadtest bare-relay`) and reports both, as a table and as JSON.
//!
//! Everything stays on 127.0.0.1.

mod events;
mod media;
mod proc;
mod relay;
mod report;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::{Parser, Subcommand};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use media::{Cmd, Generator, MediaThread, Note};
use report::{Report, RunReport};
use switchboard::config::Secret;
use switchboard::ids::WaCallId;
use switchboard::signaling::protocol::{ClientMsg, ServerMsg};
use switchboard::sim::agent::{sign_in, SimAgent};
use switchboard::sim::peer::Offered;
use switchboard::whatsapp::simulator::{
    connect_webhook, FakeGraph, FakeGraphEvent, SimulatorConfig,
};

const TOKEN: &str = "loadtest-access-token";
const APP_SECRET: &str = "loadtest-app-secret";
const PHONE_ID: &str = "100000000000001";
const PASSWORD: &str = "loadtest";
/// Meta allows this many calls in progress per business number (reference §7).
const META_PER_NUMBER: u32 = 1000;

/// The business number of call `i` when each number takes `per` calls.
fn number_of(i: u32, per: u32) -> String {
    match i / per {
        0 => PHONE_ID.to_owned(),
        k => format!("100000000000{:03}", 100 + k),
    }
}
/// How long a call may take from its webhook to audio both ways before it counts as failed.
const SETUP_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, Parser)]
#[command(
    name = "loadtest",
    about = "Load test for switchboard, with a bare-relay baseline."
)]
struct Args {
    #[command(subcommand)]
    command: Option<Sub>,
    /// Concurrent calls (and as many agents).
    #[arg(long, default_value_t = 100)]
    calls: u32,
    /// New calls per second while ramping up.
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Seconds every call is held once all are up: the measurement window.
    #[arg(long, default_value_t = 20.0)]
    hold: f64,
    /// The switchboard binary (default: `switchboard` next to this program).
    #[arg(long)]
    switchboard: Option<PathBuf>,
    /// Only switchboard, no baseline.
    #[arg(long)]
    no_baseline: bool,
    /// Calls per business number (at most Meta's 1 000 in progress per number): calls beyond
    /// it go to further numbers of the same account (`[[numbers]]`), as a business with that
    /// much traffic has.
    #[arg(long, default_value_t = META_PER_NUMBER)]
    calls_per_number: u32,
    /// switchboard's media engine threads (`SWITCHBOARD_MEDIA_SHARDS`); default: its own
    /// default, one per core.
    #[arg(long)]
    shards: Option<usize>,
    /// The generator's media threads (each plays its share of callers and agents).
    #[arg(long, default_value_t = 1)]
    generator_threads: usize,
    /// Write the report as JSON to this file too.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Exit 1 unless every call was set up and carried audio with no loss and no continuity
    /// violation (the small run in the test suite).
    #[arg(long)]
    check: bool,
    /// switchboard nodes sharing a `redis-server` the load test starts (from the PATH): agents
    /// sign in to them in turn and webhooks go to them in turn, as behind a load balancer.
    /// Their CPU and memory are added up.
    #[arg(long, default_value_t = 1)]
    nodes: u32,
    /// Every call crosses between two nodes (needs `--nodes 2`): the webhooks go to node 0,
    /// where the calls wait (one agent is signed in there, away), and the agents sign in to
    /// node 1 once every call is placed; node 0 hands each waiting call to node 1 and bridges
    /// its Meta leg to node 1's engine over an internal leg. The delay and CPU are then those
    /// of the node-to-node media path.
    #[arg(long)]
    cross_node: bool,
    /// Register a call events endpoint (a receiver the load test serves on loopback, standing
    /// for a host's backend) and report each event's lag: from the state change to its
    /// arrival. Compare set-up figures with a run without it.
    #[arg(long)]
    events: bool,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Run the bare relay (the baseline) with this many ports; the load test starts it.
    BareRelay {
        /// Ports, one per call.
        #[arg(long)]
        ports: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Sub::BareRelay { ports }) = args.command {
        return relay::run(ports);
    }
    if !(1..=8).contains(&args.nodes) {
        bail!("--nodes is 1 to 8");
    }
    if args.cross_node && args.nodes != 2 {
        bail!("--cross-node needs --nodes 2");
    }
    if args.calls == 0 || args.rate <= 0.0 || args.hold <= 0.0 {
        bail!("--calls, --rate and --hold must be above zero");
    }
    if !(1..=META_PER_NUMBER).contains(&args.calls_per_number) {
        bail!("--calls-per-number is 1 to {META_PER_NUMBER} (Meta's cap per number)");
    }
    if args.calls > 100 * args.calls_per_number {
        bail!("--calls is at most 100 numbers' worth");
    }
    // Two sockets and a WebSocket per call, and HTTP: far past the usual soft limit of 1024.
    if let Ok((soft, hard)) = rlimit::Resource::NOFILE.get() {
        if soft < hard {
            let _ = rlimit::Resource::NOFILE.set(hard, hard);
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = rt.block_on(async {
        let sb = run_switchboard(&args).await?;
        let bare = if args.no_baseline {
            None
        } else {
            Some(run_bare(&args).await?)
        };
        anyhow::Ok(Report::new(&args_summary(&args), sb, bare))
    })?;
    println!("{}", report.table());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.check {
        let problems = report.check_problems();
        if !problems.is_empty() {
            eprintln!("loadtest --check failed: {}", problems.join("; "));
            std::process::exit(1);
        }
    }
    Ok(())
}

fn args_summary(args: &Args) -> report::Setup {
    report::Setup {
        calls: args.calls,
        rate: args.rate,
        hold_secs: args.hold,
        shards: args.shards,
        machine: report::machine(),
    }
}

/// Samples of a process at the two ends of the window.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    cpu: f64,
    rss: u64,
    gen_cpu: f64,
    at: Option<Instant>,
}

/// The relay's and the generator's CPU between two samples, and the time between them.
fn window_of(w0: Sample, w1: Sample) -> report::Window {
    report::Window {
        cpu_secs: w1.cpu - w0.cpu,
        gen_cpu_secs: w1.gen_cpu - w0.gen_cpu,
        secs: w1
            .at
            .zip(w0.at)
            .map_or(0.0, |(b, a)| b.duration_since(a).as_secs_f64()),
    }
}

/// The nodes' CPU and memory, added up.
fn sample(pids: &[u32]) -> Sample {
    Sample {
        cpu: cpu_of(pids),
        rss: rss_of(pids),
        gen_cpu: proc::cpu_secs(std::process::id()).unwrap_or(0.0),
        at: Some(Instant::now()),
    }
}

fn cpu_of(pids: &[u32]) -> f64 {
    pids.iter().map(|&p| proc::cpu_secs(p).unwrap_or(0.0)).sum()
}

fn rss_of(pids: &[u32]) -> u64 {
    pids.iter().map(|&p| proc::rss_bytes(p).unwrap_or(0)).sum()
}

/// A `redis-server` of the run's own on a free loopback port, for several nodes.
async fn start_redis() -> anyhow::Result<(Child, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = tokio::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("--nodes above 1 needs redis-server on the PATH")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            bail!("redis-server did not listen within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((Child(child), format!("redis://127.0.0.1:{port}/0")))
}

/// One switchboard process of the run.
struct Node {
    child: Child,
    pid: u32,
    http: SocketAddr,
    metrics: SocketAddr,
}

/// What the agents' sessions and the fake Graph API tell the run.
enum Ctl {
    Ringing { call: u32, at: Instant },
    Talking { call: u32, agent: u32 },
    Failed { what: String },
}

/// A child process killed when dropped (a run that fails half-way leaves nothing behind).
struct Child(tokio::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

async fn run_switchboard(args: &Args) -> anyhow::Result<RunReport> {
    let n = args.calls;
    let (notes_tx, mut notes) = mpsc::unbounded_channel();
    let media = Arc::new(Generator::start(args.generator_threads, notes_tx)?);

    // Meta's side: the fake Graph API.
    let per = args.calls_per_number;
    let extra: Vec<String> = (1..n.div_ceil(per))
        .map(|k| number_of(k * per, per))
        .collect();
    let fake = FakeGraph::serving(TOKEN, PHONE_ID, extra.clone());
    let mut graph_events = fake.take_events().ok_or_else(|| anyhow!("graph events"))?;
    let (graph_addr, _graph_server) = fake.clone().serve("127.0.0.1:0".parse()?).await?;

    // switchboard, with N agents.
    let dir = std::env::temp_dir().join(format!("loadtest-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("switchboard.toml");
    // With --cross-node, one more person: node 0's away agent, so that its queue is staffed
    // and calls wait there.
    let mut toml = people_toml(n + u32::from(args.cross_node))?;
    for number in &extra {
        toml.push_str(&format!(
            "[[numbers]]\nphone_number_id = \"{number}\"\nqueue = \"support\"\n\n"
        ));
    }
    std::fs::write(&config, toml)?;
    let binary = match &args.switchboard {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .ok_or_else(|| anyhow!("no directory"))?
            .join("switchboard"),
    };
    let redis = if args.nodes > 1 {
        Some(start_redis().await?)
    } else {
        None
    };
    let mut nodes: Vec<Node> = vec![];
    for k in 0..args.nodes {
        nodes.push(
            start_node(
                args,
                &binary,
                &config,
                graph_addr,
                k,
                redis.as_ref().map(|r| r.1.as_str()),
            )
            .await?,
        );
    }
    let pids: Vec<u32> = nodes.iter().map(|n| n.pid).collect();
    let https: Vec<SocketAddr> = nodes.iter().map(|n| n.http).collect();
    let cross = args.cross_node;
    // Agents: in turn over the nodes, or all on node 1 when every call must cross.
    let agent_http = |k: u32| {
        if cross {
            https[1]
        } else {
            https[(k % args.nodes) as usize]
        }
    };
    // Webhooks: in turn, or all to node 0.
    let http_of = |k: u32| {
        if cross {
            https[0]
        } else {
            https[(k % args.nodes) as usize]
        }
    };
    let metrics = nodes[0].metrics;
    let receiver = if args.events {
        let r = events::Receiver::start().await?;
        r.register(&reqwest::Client::new(), https[0]).await?;
        eprintln!("[switchboard] call events go to {}", r.addr);
        Some(r)
    } else {
        None
    };
    let idle_rss = rss_of(&pids);

    // The agents: signed in, each with its PeerConnection up, then answering whatever rings.
    let calls: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let (ctl_tx, mut ctl) = mpsc::unbounded_channel::<Ctl>();
    let mut hang_up: Vec<mpsc::UnboundedSender<String>> = vec![];
    let mut hang_up_rx = vec![];
    for _ in 0..n {
        let (tx, rx) = mpsc::unbounded_channel();
        hang_up.push(tx);
        hang_up_rx.push(rx);
    }
    let signing = Instant::now();
    let limit = Arc::new(tokio::sync::Semaphore::new(16));
    let mut joins = tokio::task::JoinSet::new();
    let mut spawn_agents = |joins: &mut tokio::task::JoinSet<()>| {
        for (a, rx) in (0..n).zip(hang_up_rx.drain(..)) {
            let (media, calls, ctl_tx, limit) =
                (media.clone(), calls.clone(), ctl_tx.clone(), limit.clone());
            let http = agent_http(a);
            joins.spawn(async move {
                let permit = limit.acquire_owned().await;
                let agent = match start_agent(http, a, media.of(a)).await {
                    Ok(agent) => agent,
                    Err(e) => {
                        let _ = ctl_tx.send(Ctl::Failed {
                            what: format!("agent {a}: {e}"),
                        });
                        return;
                    }
                };
                drop(permit);
                agent_loop(agent, a, calls, ctl_tx, rx).await;
            });
        }
    };
    // Node 0's one agent, signed in and away: its queue is staffed, nobody there is free.
    let _anchor = if cross {
        let id = format!("a{n}");
        let token = sign_in(https[0], &id, PASSWORD).await?;
        let anchor = SimAgent::open(https[0], &id, &token).await?;
        anchor
            .send(ClientMsg::SetPresence {
                available: false,
                reason: Some("anchor".into()),
            })
            .await?;
        Some(anchor)
    } else {
        spawn_agents(&mut joins);
        None
    };
    let mut agents_up = std::collections::HashSet::new();
    while !cross && agents_up.len() < n as usize {
        match tokio::time::timeout(Duration::from_secs(60), notes.recv()).await {
            Ok(Some(Note::Connected {
                caller: false,
                index,
            })) => {
                agents_up.insert(index);
            }
            Ok(Some(Note::Failed { why, index, .. })) => bail!("agent {index}: {why}"),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => bail!("{} of {n} agents connected within 60 s", agents_up.len()),
        }
        if let Ok(Ctl::Failed { what }) = ctl.try_recv() {
            bail!("{what}");
        }
    }
    // Connected here is not yet available there: give the last presence a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    if !cross {
        eprintln!(
            "[switchboard] {n} agents signed in with audio in {:.1} s",
            signing.elapsed().as_secs_f64()
        );
    }
    let mut agents_spawned = !cross;
    let before_calls = sample(&pids);

    // The calls: a signed connect webhook each, at `rate`, every caller on the one relay socket.
    let sim = SimulatorConfig {
        webhook_url: String::new(),
        app_secret: Secret::new(APP_SECRET),
        phone_number_id: PHONE_ID.into(),
        ..SimulatorConfig::default()
    };
    let web = reqwest::Client::new();
    let mut sent_at: HashMap<u32, Instant> = HashMap::new();
    let mut pre_accept_ms: Vec<f64> = vec![];
    let mut setup_ms: Vec<f64> = vec![];
    let mut ringing_ms: Vec<f64> = vec![];
    let mut steps = report::Steps::default();
    let mut talking: HashMap<u32, u32> = HashMap::new();
    let mut ended = 0u32;
    let mut failures: Vec<String> = vec![];
    let mut heard = 0u32;
    let mut heard_by: HashMap<u32, [bool; 2]> = HashMap::new();
    let ramp = Instant::now();
    let mut next_call = 0u32;
    let mut window: Option<Sample> = None;
    let mut end: Option<Sample> = None;
    let mut last_progress = Instant::now();
    let mut packets_seen = 0u64;
    let hold = Duration::from_secs_f64(args.hold);
    let mut phase_deadline =
        Instant::now() + Duration::from_secs_f64(n as f64 / args.rate) + SETUP_LIMIT;
    loop {
        // Place the calls that are due.
        while next_call < n && ramp.elapsed().as_secs_f64() >= f64::from(next_call) / args.rate {
            let i = next_call;
            next_call += 1;
            let call_id = format!("wacid.LT{i:08}");
            let offered = Offered::meta(media.of(i).relay_addr, str0m::IceCreds::new())
                .map_err(|e| anyhow!("caller {i}: {e}"))?;
            let offer = offered.offer.clone();
            fake.register_call(WaCallId(call_id.clone()), offer.clone());
            calls
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(call_id.clone(), i);
            media.of(i).send(Cmd::Caller {
                call: i,
                offered: Box::new(offered),
            });
            let sim_for = SimulatorConfig {
                phone_number_id: number_of(i, per),
                ..sim.clone()
            };
            let body = connect_webhook(
                &sim_for,
                &WaCallId(call_id),
                &format!("1555{i:07}"),
                "Load",
                &offer,
            );
            let signature = switchboard::whatsapp::webhook::sign(APP_SECRET, &body);
            sent_at.insert(i, Instant::now());
            let (web, url) = (
                web.clone(),
                format!("http://{}/webhooks/whatsapp", http_of(i)),
            );
            let ctl_tx = ctl_tx.clone();
            tokio::spawn(async move {
                let r = web
                    .post(url)
                    .header("content-type", "application/json")
                    .header("x-hub-signature-256", signature)
                    .body(body)
                    .send()
                    .await;
                if !r.is_ok_and(|r| r.status().is_success()) {
                    let _ = ctl_tx.send(Ctl::Failed {
                        what: format!("webhook of call {i} refused"),
                    });
                }
            });
        }
        if !agents_spawned && next_call >= n {
            // --cross-node: every call is placed (and waits on node 0); the agents come now.
            agents_spawned = true;
            eprintln!("[switchboard] {n} calls placed on node 0: the agents sign in to node 1");
            spawn_agents(&mut joins);
        }
        let next_due = if next_call < n {
            ramp + Duration::from_secs_f64(f64::from(next_call) / args.rate)
        } else {
            Instant::now() + Duration::from_millis(100)
        };
        tokio::select! {
            Some(ev) = graph_events.recv() => match ev {
                FakeGraphEvent::PreAccepted { call_id, sdp } => {
                    let call = calls.lock().unwrap_or_else(|p| p.into_inner()).get(&call_id.0).copied();
                    if let Some(call) = call {
                        if let Some(t) = sent_at.get(&call) {
                            pre_accept_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                        }
                        media.of(call).send(Cmd::CallerAnswer { call, answer: sdp });
                    }
                }
                FakeGraphEvent::Rejected { call_id } => failures.push(format!("{} rejected", call_id.0)),
                FakeGraphEvent::Terminated { .. } => ended += 1,
                _ => {}
            },
            Some(c) = ctl.recv() => match c {
                Ctl::Ringing { call, at } => {
                    if let Some(t) = sent_at.get(&call) {
                        ringing_ms.push(at.saturating_duration_since(*t).as_secs_f64() * 1000.0);
                    }
                }
                Ctl::Talking { call, agent } => {
                    if let Some(t) = sent_at.get(&call) {
                        steps.talking_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    talking.insert(call, agent);
                    media.of(call).send(Cmd::Talk { call, agent });
                    if !std::ptr::eq(media.of(call), media.of(agent)) {
                        media.of(agent).send(Cmd::Talk { call, agent });
                    }
                }
                Ctl::Failed { what } => failures.push(what),
            },
            Some(note) = notes.recv() => match note {
                Note::Heard { call, caller, at } => {
                    let h = heard_by.entry(call).or_insert([false; 2]);
                    h[usize::from(caller)] = true;
                    if let Some(t) = sent_at.get(&call) {
                        let ms = at.saturating_duration_since(*t).as_secs_f64() * 1000.0;
                        if caller {
                            steps.caller_heard_ms.push(ms);
                        } else {
                            steps.agent_heard_ms.push(ms);
                        }
                    }
                    if h[0] && h[1] {
                        heard += 1;
                        if let Some(t) = sent_at.get(&call) {
                            setup_ms.push(at.saturating_duration_since(*t).as_secs_f64() * 1000.0);
                        }
                    }
                }
                Note::Failed { caller, index, why } => failures.push(format!(
                    "{} {index}: {why}",
                    if caller { "caller" } else { "agent" }
                )),
                Note::Connected { caller: true, index } => {
                    if let Some(t) = sent_at.get(&index) {
                        steps.caller_connected_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                }
                Note::Connected { .. } => {}
            },
            _ = tokio::time::sleep_until(next_due.into()) => {}
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            let scrape = scrape_all(&web, &nodes).await;
            let packets = report::metric_sum(&scrape, "switchboard_media_forwarded_packets_total");
            eprintln!(
                "[switchboard] {}/{n} placed, {} talking, {heard} heard both ways, {} pkt/s forwarded, cpu {:.0} %",
                next_call,
                talking.len(),
                (packets - packets_seen as f64).max(0.0) as u64,
                cpu_of(&pids) * 100.0 / (ramp.elapsed().as_secs_f64().max(1.0)),
            );
            packets_seen = packets as u64;
        }
        match (window, end) {
            (None, _) if heard >= n || (next_call >= n && Instant::now() > phase_deadline) => {
                media.all(|| Cmd::Window(true));
                window = Some(sample(&pids));
                phase_deadline = Instant::now() + hold;
                eprintln!(
                    "[switchboard] {heard} of {n} calls up: measuring for {:.0} s",
                    args.hold
                );
            }
            (Some(_), None) if Instant::now() >= phase_deadline => {
                media.all(|| Cmd::Window(false));
                end = Some(sample(&pids));
                break;
            }
            _ => {}
        }
    }
    let rss_window = rss_of(&pids);
    let scrape_end = scrape_all(&web, &nodes).await;
    // Set-up latency from node 0's own histogram (the nodes' buckets are not added up).
    let scrape_first = scrape(&web, metrics).await.unwrap_or_default();

    // Hang up: both sides quiet first, so the last packets in flight arrive; then the agents.
    for &call in talking.keys() {
        media.all(|| Cmd::Quiet { call });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let by_call: HashMap<u32, String> = calls
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(id, c)| (*c, id.clone()))
        .collect();
    for (&call, &agent) in &talking {
        if let (Some(id), Some(tx)) = (by_call.get(&call), hang_up.get(agent as usize)) {
            let _ = tx.send(id.clone());
        }
    }
    let until = Instant::now() + Duration::from_secs(20);
    while (ended as usize) < talking.len() && Instant::now() < until {
        if let Ok(Some(FakeGraphEvent::Terminated { .. })) =
            tokio::time::timeout(Duration::from_millis(200), graph_events.recv()).await
        {
            ended += 1;
        }
    }
    // The last events (the calls' ends) are on their way: wait for them.
    let events_figures = match &receiver {
        Some(r) => {
            r.quiet(Duration::from_secs(10)).await;
            let got = r.got.lock().unwrap_or_else(|p| p.into_inner());
            eprintln!("[switchboard] call events received: {:?}", got.by_type);
            Some(events::summary(&got)?)
        }
        None => None,
    };
    let scrape_events = scrape(&web, metrics).await.unwrap_or_default();
    let failed_at_switchboard = report::metric_sum(
        &scrape_end,
        "switchboard_calls_ended_total{queue=\"support\",outcome=\"failed\"}",
    );
    // Stop switchboard the way an orchestrator does; it has no calls left to drain.
    let mut exit_ok = true;
    for node in &mut nodes {
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &node.pid.to_string()])
            .status()
            .await;
        let exit = tokio::time::timeout(Duration::from_secs(30), node.child.0.wait()).await;
        exit_ok &= matches!(exit, Ok(Ok(s)) if s.success());
    }
    drop(redis);
    joins.abort_all();
    while !joins.is_empty() {
        let _ = joins.join_next().await;
    }
    let media = Arc::try_unwrap(media).map_err(|_| anyhow!("media threads still shared"));
    let figures = media?.stop();
    let _ = std::fs::remove_dir_all(&dir);
    let (Some(w0), Some(w1)) = (window, end) else {
        bail!("the run never reached its measurement window");
    };
    // What the generator received in the window, as for the bare relay: one count for both.
    let forwarded = figures.packets_in_window;
    Ok(RunReport::new(report::Measured {
        target: "switchboard",
        calls: n,
        set_up: heard,
        failures,
        pre_accept_ms,
        setup_ms,
        ringing_ms,
        steps,
        figures,
        window: window_of(w0, w1),
        rss_idle: idle_rss,
        rss_before: before_calls.rss,
        rss_window,
        forwarded_in_window: forwarded,
        failed_calls_at_switchboard: failed_at_switchboard as u64,
        own_pre_accept_ms: {
            let q = |q| {
                report::histogram_quantile(
                    &scrape_first,
                    "switchboard_setup_webhook_to_pre_accept_seconds",
                    q,
                )
                .map(|s| s * 1000.0)
            };
            q(0.5).zip(q(0.99))
        },
        exit_ok,
        event_lags_ms: events_figures.as_ref().map(|e| e.0.clone()),
        events_received: events_figures.map_or(0, |e| e.1),
        own_event_lag_ms: receiver.as_ref().and_then(|_| {
            let q = |q| {
                report::histogram_quantile(
                    &scrape_events,
                    "switchboard_event_delivery_lag_seconds",
                    q,
                )
                .map(|s| s * 1000.0)
            };
            q(0.5).zip(q(0.99))
        }),
    }))
}

async fn scrape(web: &reqwest::Client, metrics: SocketAddr) -> Option<String> {
    web.get(format!("http://{metrics}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// A config file with `n` agents, all with the password [`PASSWORD`] under a cheap argon2id
/// hash (a load test signs in hundreds of agents; the cost parameters are the hash's own).
fn people_toml(n: u32) -> anyhow::Result<String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(8, 1, 1, None).map_err(|e| anyhow!("{e}"))?;
    let hasher = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"loadtest-salt-16").map_err(|e| anyhow!("{e}"))?;
    let hash = hasher
        .hash_password(PASSWORD.as_bytes(), &salt)
        .map_err(|e| anyhow!("{e}"))?
        .to_string();
    let mut out = String::new();
    for a in 0..n {
        out.push_str(&format!(
            "[[people]]\nid = \"a{a}\"\nname = \"Agent {a}\"\nrole = \"agent\"\npassword_hash = \"{hash}\"\nqueues = [\"support\"]\n\n"
        ));
    }
    Ok(out)
}

/// Signs agent `a` in, opens its session and its PeerConnection (handed to the media thread).
async fn start_agent(http: SocketAddr, a: u32, media: &MediaThread) -> anyhow::Result<SimAgent> {
    let id = format!("a{a}");
    let token = sign_in(http, &id, PASSWORD).await?;
    let mut agent = SimAgent::open(http, &id, &token).await?;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let offered = Offered::browser(socket.local_addr()?, 1).map_err(|e| anyhow!("{e}"))?;
    agent
        .send(ClientMsg::Offer {
            sdp: offered.offer.clone(),
        })
        .await?;
    let answer = agent
        .expect(Duration::from_secs(20), "answer", |m| {
            matches!(m, ServerMsg::Answer { .. } | ServerMsg::Error { .. })
        })
        .await?;
    let ServerMsg::Answer { sdp } = answer else {
        bail!("offer refused: {answer:?}");
    };
    media.send(Cmd::Agent {
        agent: a,
        offered: Box::new(offered),
        socket,
        answer: sdp,
    });
    Ok(agent)
}

/// An agent's session: answers what rings, reports talking, hangs up when told.
async fn agent_loop(
    mut agent: SimAgent,
    a: u32,
    calls: Arc<Mutex<HashMap<String, u32>>>,
    ctl: mpsc::UnboundedSender<Ctl>,
    mut hang_up: mpsc::UnboundedReceiver<String>,
) {
    loop {
        // Only the session's own messages matter; keep its history short.
        agent.seen.clear();
        let next = tokio::select! {
            m = agent.expect(Duration::from_secs(24 * 3600), "a message", |_| true) => Ok(m),
            h = hang_up.recv() => Err(h),
        };
        let call_of = |id: &str| {
            calls
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(id)
                .copied()
        };
        match next {
            Ok(Ok(ServerMsg::Ringing { call_id, .. })) => {
                if let Some(call) = call_of(&call_id) {
                    let _ = ctl.send(Ctl::Ringing {
                        call,
                        at: Instant::now(),
                    });
                }
                let _ = agent.send(ClientMsg::Answer { call_id }).await;
            }
            Ok(Ok(ServerMsg::Talking { call_id, .. })) => {
                if let Some(call) = call_of(&call_id) {
                    let _ = ctl.send(Ctl::Talking { call, agent: a });
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return,
            Err(Some(call_id)) => {
                let _ = agent.send(ClientMsg::HangUp { call_id }).await;
            }
            Err(None) => return,
        }
    }
}

/// The same traffic through the bare relay.
/// Every node's scrape, one after the other (sums over series add the nodes up).
async fn scrape_all(web: &reqwest::Client, nodes: &[Node]) -> String {
    let mut all = String::new();
    for n in nodes {
        all.push_str(&scrape(web, n.metrics).await.unwrap_or_default());
    }
    all
}

/// Starts node `k` and waits for its "switchboard started" line.
async fn start_node(
    args: &Args,
    binary: &std::path::Path,
    config: &std::path::Path,
    graph_addr: SocketAddr,
    k: u32,
    redis: Option<&str>,
) -> anyhow::Result<Node> {
    let (n, per) = (args.calls, args.calls_per_number);
    let mut command = tokio::process::Command::new(binary);
    command.env_clear();
    command.env("SWITCHBOARD_NODE_ID", format!("loadtest-{k}"));
    if let Some(url) = redis {
        command.env("SWITCHBOARD_REDIS_URL", url);
    }
    if let Some(n) = args.shards {
        command.env("SWITCHBOARD_MEDIA_SHARDS", n.to_string());
    }
    let mut child = Child(
        command
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SWITCHBOARD_CONFIG", config)
            .env("SWITCHBOARD_HTTP_ADDR", "127.0.0.1:0")
            .env("SWITCHBOARD_METRICS_ADDR", "127.0.0.1:0")
            .env("SWITCHBOARD_MEDIA_ADDR", "127.0.0.1")
            .env(
                "SWITCHBOARD_MEDIA_PORTS",
                format!("ephemeral:{}", (n + 8).min(4096)),
            )
            .env("SWITCHBOARD_GRAPH_URL", format!("http://{graph_addr}"))
            .env("SWITCHBOARD_PHONE_NUMBER_ID", PHONE_ID)
            .env("SWITCHBOARD_ACCESS_TOKEN", TOKEN)
            .env("SWITCHBOARD_APP_SECRET", APP_SECRET)
            .env("SWITCHBOARD_VERIFY_TOKEN", "loadtest")
            .env("SWITCHBOARD_DB", ":memory:")
            .env("SWITCHBOARD_WRAP_UP", "0")
            .env("SWITCHBOARD_RING_TIMEOUT", "30")
            .env("SWITCHBOARD_MAX_CALLS_PER_NUMBER", per.min(n).to_string())
            .env("SWITCHBOARD_LOG_FORMAT", "json")
            .env("SWITCHBOARD_OPERATOR_KEY", events::OPERATOR_KEY)
            .env("SWITCHBOARD_SECRETS_KEY", events::SECRETS_KEY)
            .env("SWITCHBOARD_EVENTS_PRIVATE_TARGETS", "true")
            .env(
                "RUST_LOG",
                "warn,switchboard::app=info,switchboard::media::driver=info",
            )
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?,
    );
    let pid = child
        .0
        .id()
        .ok_or_else(|| anyhow!("switchboard has no pid"))?;
    let mut lines = BufReader::new(child.0.stdout.take().ok_or_else(|| anyhow!("stdout"))?).lines();
    let (http, metrics) = loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .context("switchboard did not start within 30 s")??
            .ok_or_else(|| anyhow!("switchboard exited at start-up"))?;
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["fields"]["message"] == "switchboard started" {
            let addr = |k: &str| -> anyhow::Result<SocketAddr> {
                Ok(v["fields"][k].as_str().unwrap_or_default().parse()?)
            };
            break (addr("http")?, addr("metrics")?);
        }
    };
    // Keep reading its log so the pipe never fills.
    // Its warnings, and each media thread's closing tally (datagrams, system calls, busy time),
    // go to our stderr; the rest is dropped.
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("\"WARN\"")
                || line.contains("\"ERROR\"")
                || line.contains("media engine stopping")
            {
                eprintln!("[switchboard] {line}");
            }
        }
    });
    Ok(Node {
        child,
        pid,
        http,
        metrics,
    })
}

async fn run_bare(args: &Args) -> anyhow::Result<RunReport> {
    let n = args.calls;
    let (notes_tx, mut notes) = mpsc::unbounded_channel();
    let media = Generator::start(args.generator_threads, notes_tx)?;
    let mut child = Child(
        tokio::process::Command::new(std::env::current_exe()?)
            .args(["bare-relay", "--ports", &n.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?,
    );
    let pid = child.0.id().ok_or_else(|| anyhow!("no pid"))?;
    let mut lines = BufReader::new(child.0.stdout.take().ok_or_else(|| anyhow!("stdout"))?).lines();
    let first = lines
        .next_line()
        .await?
        .ok_or_else(|| anyhow!("the bare relay said nothing"))?;
    let ports: Vec<u16> = serde_json::from_value(
        serde_json::from_str::<serde_json::Value>(&first)?["ports"].clone(),
    )?;
    let idle_rss = proc::rss_bytes(pid).unwrap_or(0);
    let before = sample(&[pid]);
    let ramp = Instant::now();
    for i in 0..n {
        let due = ramp + Duration::from_secs_f64(f64::from(i) / args.rate);
        tokio::time::sleep_until(due.into()).await;
        let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let relay: SocketAddr = format!("127.0.0.1:{}", ports[i as usize]).parse()?;
        media.of(i).send(Cmd::Plain {
            call: i,
            agent: i,
            socket,
            relay,
        });
    }
    // The hellos have paired every port: start talking.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..n {
        media.of(i).send(Cmd::Talk { call: i, agent: i });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    media.all(|| Cmd::Window(true));
    let w0 = sample(&[pid]);
    eprintln!(
        "[bare relay] {n} calls up: measuring for {:.0} s",
        args.hold
    );
    tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    media.all(|| Cmd::Window(false));
    let w1 = sample(&[pid]);
    let rss_window = proc::rss_bytes(pid).unwrap_or(0);
    for i in 0..n {
        media.of(i).send(Cmd::Quiet { call: i });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let figures = media.stop();
    let mut failures = vec![];
    while let Ok(n) = notes.try_recv() {
        if let Note::Failed { why, .. } = n {
            failures.push(why);
        }
    }
    if let Some(mut stdin) = child.0.stdin.take() {
        use tokio::io::AsyncWriteExt;
        let _ = stdin.write_all(b"stop\n").await;
        let _ = stdin.flush().await;
    }
    let exit = tokio::time::timeout(Duration::from_secs(10), child.0.wait()).await;
    if !matches!(exit, Ok(Ok(s)) if s.success()) {
        eprintln!("[bare relay] exit: {exit:?}");
    }
    let in_window = figures.packets_in_window;
    Ok(RunReport::new(report::Measured {
        target: "bare relay",
        calls: n,
        set_up: n,
        failures,
        pre_accept_ms: vec![],
        setup_ms: vec![],
        ringing_ms: vec![],
        steps: report::Steps::default(),
        figures,
        window: window_of(w0, w1),
        rss_idle: idle_rss,
        rss_before: before.rss,
        rss_window,
        forwarded_in_window: in_window,
        failed_calls_at_switchboard: 0,
        own_pre_accept_ms: None,
        exit_ok: matches!(exit, Ok(Ok(s)) if s.success()),
        event_lags_ms: None,
        events_received: 0,
        own_event_lag_ms: None,
    }))
}
