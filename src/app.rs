//! Builds every component, wires them together, and owns start-up and shutdown.
//!
//! *Owns*: the tasks it spawns (media engine thread, webhook processor, HTTP server, the call
//! tasks, and in the sandbox the fake Graph API and the simulator) and their shutdown order.
//!
//! *Does not touch*: packets, Meta's JSON, SDP text. It moves typed events between owners.
//!
//! For now each WhatsApp call gets a small task here that answers the offer, pre-accepts it and
//! tears the call down when either side ends it. The call state machine, routing and agents
//! replace that task in the next issues; its shape (one task per call, fed typed events) is
//! already theirs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::{info, info_span, warn, Instrument};

use crate::config::{Config, Secret};
use crate::http;
use crate::ids::{LegId, WaCallId};
use crate::media::{Bind, EngineConfig, EngineHandle, MediaDriver, MediaError, MediaEvent};
use crate::signaling::auth::{self, AuthHandle, DemoSignIn};
use crate::whatsapp::graph::{GraphClient, GraphError};
use crate::whatsapp::simulator::{FakeGraph, Simulator, SimulatorConfig};
use crate::whatsapp::webhook::{WaEvent, WebhookOptions, WebhookState, WebhookStats};

/// The business number id the sandbox's simulated Meta uses.
const SANDBOX_PHONE_NUMBER_ID: &str = "100000000000001";

/// Why switchboard could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The media engine could not start (UDP bind).
    #[error("media engine: {0}")]
    Media(#[from] MediaError),
    /// The HTTP listener could not be bound.
    #[error("HTTP listener on {addr}: {source}")]
    Http {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The Graph API client could not be built.
    #[error("graph client: {0}")]
    Graph(#[from] GraphError),
    /// The sandbox's fake Graph API could not start.
    #[error("sandbox: {0}")]
    Sandbox(std::io::Error),
}

/// A running switchboard.
pub struct Running {
    /// Where the HTTP server listens.
    pub http_addr: SocketAddr,
    /// Where the media engine listens: the first socket of its pool.
    pub media_addr: SocketAddr,
    /// Every local UDP port of the media engine's pool.
    pub media_ports: Vec<u16>,
    /// The simulator, in the sandbox.
    pub simulator: Option<Simulator>,
    /// The media engine (for tests and, later, operations).
    pub media: EngineHandle,
    /// People, sessions and sign-in.
    pub auth: AuthHandle,
    /// In the sandbox without `[[people]]`: the demo people's sign-ins for this run.
    pub sandbox_sign_ins: Vec<DemoSignIn>,
    webhook: WebhookState,
    sandbox: Option<http::Sandbox>,
    calls: Arc<CallCounters>,
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

/// Counters of the calls loop, read with [`Running::call_stats`]; the metrics issue exports
/// them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallStats {
    /// Calls in progress: from their offer to their end.
    pub in_progress: u64,
    /// Offers rejected at once because the business number had `max_calls_per_number` calls
    /// in progress.
    pub rejected_at_capacity: u64,
}

/// The loop owns its counts; these atomics are copies it publishes for readers elsewhere.
#[derive(Debug, Default)]
struct CallCounters {
    in_progress: AtomicU64,
    rejected_at_capacity: AtomicU64,
}

impl Running {
    /// The calls loop's counters so far.
    pub fn call_stats(&self) -> CallStats {
        CallStats {
            in_progress: self.calls.in_progress.load(Ordering::Relaxed),
            rejected_at_capacity: self.calls.rejected_at_capacity.load(Ordering::Relaxed),
        }
    }

    /// The webhook edge's counters so far.
    pub fn webhook_stats(&self) -> WebhookStats {
        self.webhook.stats()
    }

    /// The sandbox's counters so far (`None` with live credentials).
    pub fn sandbox_stats(&self) -> Option<http::SandboxStats> {
        self.sandbox.as_ref().map(http::Sandbox::stats)
    }

    /// Stops everything and waits until it has stopped.
    pub async fn shutdown(self) {
        let Running {
            stop, done, media, ..
        } = self;
        // The engine stops when its last handle is gone; this one must not keep it alive.
        drop(media);
        let _ = stop.send(());
        let _ = done.await;
    }
}

/// Starts switchboard: binds its sockets, spawns its tasks and returns once it is serving.
pub async fn start(config: Config) -> Result<Running, AppError> {
    let (media_driver, media, media_events) =
        MediaDriver::spawn(media_bind(&config.media), engine_config(&config.media))?;
    let media_addr = media_driver.local_addr();
    let media_ports = media_driver.ports().to_vec();
    if config.media.public_ip_detected {
        warn!(
            advertised = %config.media.public_ip,
            "SWITCHBOARD_PUBLIC_IP is not set: advertising the default route's interface to \
             Meta. Behind NAT (most cloud hosts) that is the wrong address and calls will \
             connect without audio: set SWITCHBOARD_PUBLIC_IP."
        );
    }

    let listener = TcpListener::bind(config.http_addr)
        .await
        .map_err(|source| AppError::Http {
            addr: config.http_addr,
            source,
        })?;
    let http_addr = listener.local_addr().map_err(|source| AppError::Http {
        addr: config.http_addr,
        source,
    })?;

    let mut sandbox_server = None;
    let mut people = config.auth.people.clone();
    let mut sandbox_sign_ins = Vec::new();
    let (graph, app_secret, verify_token, simulator) = match &config.whatsapp.credentials {
        Some(c) => (
            GraphClient::new(
                &config.whatsapp.graph_url,
                &config.whatsapp.graph_version,
                &c.phone_number_id,
                c.access_token.clone(),
            )?,
            c.app_secret.clone(),
            c.verify_token.clone(),
            None,
        ),
        None => {
            // The sandbox: a fake Graph API on loopback and a simulator that calls us, with
            // secrets made up for this run.
            let token = Secret::new(random_token());
            let app_secret = Secret::new(random_token());
            let verify_token = Secret::new(random_token());
            let phone_number_id = SANDBOX_PHONE_NUMBER_ID.to_owned();
            let fake = FakeGraph::new(token.expose(), phone_number_id.clone());
            let events = fake.take_events().expect("a new fake's events are untaken");
            let (graph_addr, server) = fake
                .clone()
                .serve((std::net::Ipv4Addr::LOCALHOST, 0).into())
                .await
                .map_err(AppError::Sandbox)?;
            sandbox_server = Some(server);
            let graph_url = format!("http://{graph_addr}");
            let sim = Simulator::start(
                SimulatorConfig {
                    webhook_url: format!(
                        "http://{}{}",
                        loopback_of(http_addr),
                        crate::whatsapp::webhook::WEBHOOK_PATH
                    ),
                    app_secret: app_secret.clone(),
                    phone_number_id: phone_number_id.clone(),
                    media_ip: loopback_of(http_addr).ip(),
                    ..SimulatorConfig::default()
                },
                fake,
                events,
            );
            warn!(
                graph = %graph_url,
                "SANDBOX: no WhatsApp credentials configured; Meta is simulated on this machine. \
                 Place a test call with `switchboard simulate-call` or POST /sandbox/calls."
            );
            if people.is_empty() {
                (people, sandbox_sign_ins) = auth::demo_people().await;
                let list: Vec<String> = sandbox_sign_ins.iter().map(|d| d.to_string()).collect();
                warn!(
                    "SANDBOX: no [[people]] configured; demo sign-ins for this run only \
                     (POST /api/login {{\"id\", \"password\"}}): {}",
                    list.join(", ")
                );
            }
            (
                GraphClient::new(
                    &graph_url,
                    &config.whatsapp.graph_version,
                    &phone_number_id,
                    token,
                )?,
                app_secret,
                verify_token,
                Some(sim),
            )
        }
    };

    let our_phone_number_id = match &config.whatsapp.credentials {
        Some(c) => c.phone_number_id.clone(),
        None => SANDBOX_PHONE_NUMBER_ID.to_owned(),
    };
    let (wa_tx, wa_rx) = mpsc::channel(1024);
    let (webhook_state, webhook_processor) =
        WebhookState::spawn(app_secret, verify_token, wa_tx, WebhookOptions::default());
    let sandbox = simulator
        .clone()
        .map(|sim| http::Sandbox::new(sim, config.limits.sandbox_max_calls));
    if people.is_empty() {
        warn!("no [[people]] configured: nobody can sign in (see deploy/switchboard.example.toml)");
    }
    let auth = AuthHandle::new(&config.auth, people);
    let router = http::router(webhook_state.clone(), auth.clone(), sandbox.clone())
        .into_make_service_with_connect_info::<SocketAddr>();

    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (http_stop_tx, http_stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let r = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = http_stop_rx.await;
            })
            .await;
        if let Err(e) = r {
            warn!(error = %e, "HTTP server stopped");
        }
    });
    let call_counters = Arc::new(CallCounters::default());
    let calls = tokio::spawn(calls_loop(
        wa_rx,
        media_events,
        media.clone(),
        graph,
        BusinessNumber {
            id: our_phone_number_id,
            max_calls: config.limits.max_calls_per_number.get(),
        },
        call_counters.clone(),
    ));

    info!(http = %http_addr, media = %media_addr, sandbox = config.is_sandbox(), "switchboard started");
    let done = tokio::spawn(async move {
        let _ = stop_rx.await;
        info!("switchboard stopping");
        let _ = http_stop_tx.send(());
        let _ = server.await;
        webhook_processor.shutdown().await;
        calls.abort();
        let _ = calls.await;
        if let Some(s) = sandbox_server {
            s.shutdown().await;
        }
        let _ = tokio::task::spawn_blocking(move || media_driver.join()).await;
        info!("switchboard stopped");
    });
    Ok(Running {
        http_addr,
        media_addr,
        media_ports,
        simulator,
        media,
        auth,
        sandbox_sign_ins,
        webhook: webhook_state,
        sandbox,
        calls: call_counters,
        stop: stop_tx,
        done,
    })
}

/// Runs until Ctrl-C or SIGTERM.
pub async fn run(config: Config) -> Result<(), AppError> {
    let running = start(config).await?;
    shutdown_signal().await;
    running.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

fn media_bind(c: &crate::config::MediaConfig) -> Bind {
    Bind {
        ip: c.bind_ip,
        // IPv6 is bound on every interface unless the advertised address is loopback (tests).
        ip6: c.public_ip6.map(|ip| {
            if ip.is_loopback() {
                ip
            } else {
                std::net::Ipv6Addr::UNSPECIFIED.into()
            }
        }),
        ports: c.ports,
    }
}

fn engine_config(c: &crate::config::MediaConfig) -> EngineConfig {
    EngineConfig {
        public_ip: c.public_ip,
        public_ip6: c.public_ip6,
        // Filled by the driver with the ports it bound.
        ports: Vec::new(),
        limits: c.limits.clone(),
        hold_audio: hold_audio(),
        connect_timeout: c.connect_timeout,
        idle_timeout: c.idle_timeout,
        stats_interval: c.stats_interval,
    }
}

/// The built-in hold audio: the melody shipped in the binary, read once into packets.
fn hold_audio() -> std::sync::Arc<[std::sync::Arc<[u8]>]> {
    match crate::media::ogg::read(crate::media::ogg::MELODY) {
        Ok(f) => f.packets.into_iter().map(std::sync::Arc::from).collect(),
        Err(e) => {
            // A bug in what we ship, not an operator's mistake: silence stands in.
            warn!(error = %e, "the built-in hold audio is unreadable; holding with silence");
            std::sync::Arc::from(Vec::new())
        }
    }
}

fn random_token() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// The address to reach a listener from this machine (0.0.0.0 → 127.0.0.1).
pub fn loopback_of(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    }
}

/// What a call task hears.
enum CallInput {
    WhatsApp(WaEvent),
    Media(MediaEvent),
}

/// What a call task tells the loop.
enum CallReport {
    Leg(WaCallId, LegId),
    Done(WaCallId),
}

/// The business number this switchboard answers, and how many calls it may have at once.
struct BusinessNumber {
    id: String,
    max_calls: usize,
}

/// Routes events to one task per call; the tasks report their legs and their end.
///
/// Every call in `calls` is on our one business number (offers for other numbers are ignored),
/// so its size is that number's calls in progress. An offer beyond `max_calls` is rejected at
/// once: Meta caps a number's concurrent calls anyway, and a call left ringing past what we
/// can carry costs the business its call button (see DESIGN.md, "A call, end to end").
async fn calls_loop(
    mut wa: mpsc::Receiver<WaEvent>,
    mut media_events: mpsc::Receiver<MediaEvent>,
    media: EngineHandle,
    graph: GraphClient,
    number: BusinessNumber,
    counters: Arc<CallCounters>,
) {
    let mut calls: HashMap<WaCallId, mpsc::Sender<CallInput>> = HashMap::new();
    let mut legs: HashMap<LegId, WaCallId> = HashMap::new();
    let (report_tx, mut reports) = mpsc::channel::<CallReport>(256);
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            Some(ev) = wa.recv() => {
                let id = ev.call_id().clone();
                if let Some(tx) = calls.get(&id) {
                    deliver(tx, &id, CallInput::WhatsApp(ev));
                } else if matches!(
                    &ev,
                    WaEvent::CallOffered { phone_number_id: Some(n), .. } if *n != number.id
                ) {
                    // Another number of the same WhatsApp Business Account: not ours to answer.
                    warn!(call_id = %id, "call for another business number; ignored");
                } else if matches!(ev, WaEvent::CallOffered { .. })
                    && calls.len() >= number.max_calls
                {
                    counters.rejected_at_capacity.fetch_add(1, Ordering::Relaxed);
                    info!(
                        call_id = %id,
                        max_calls = number.max_calls,
                        "the number has its most calls in progress; rejecting the call"
                    );
                    // Off this loop: a Graph request (with its retries) must not hold up calls
                    // in progress. The call never enters `calls`, so its terminate is ignored.
                    let graph = graph.clone();
                    let span = info_span!("call", call_id = %id);
                    tasks.spawn(
                        async move {
                            if let Err(e) = graph.reject(&id).await {
                                warn!(error = %e, "reject of a call over the cap failed");
                            }
                        }
                        .instrument(span),
                    );
                } else if let WaEvent::CallOffered { offer_sdp, from, .. } = ev {
                    let (tx, rx) = mpsc::channel(64);
                    calls.insert(id.clone(), tx);
                    counters.in_progress.store(calls.len() as u64, Ordering::Relaxed);
                    let span = info_span!("call", call_id = %id);
                    tasks.spawn(
                        call_task(id, offer_sdp, from, rx, media.clone(), graph.clone(), report_tx.clone())
                            .instrument(span),
                    );
                } else {
                    info!(call_id = %id, "event for a call not handled here; ignored");
                }
            }
            Some(ev) = media_events.recv() => {
                let leg = match &ev {
                    MediaEvent::Connected { leg }
                    | MediaEvent::Failed { leg, .. }
                    | MediaEvent::Closed { leg, .. }
                    | MediaEvent::Dtmf { leg, .. }
                    | MediaEvent::Stats { leg, .. } => *leg,
                };
                if let Some((id, tx)) = legs.get(&leg).and_then(|id| Some((id, calls.get(id)?))) {
                    deliver(tx, id, CallInput::Media(ev));
                }
            }
            Some(report) = reports.recv() => match report {
                CallReport::Leg(id, leg) => { legs.insert(leg, id); }
                CallReport::Done(id) => {
                    calls.remove(&id);
                    counters.in_progress.store(calls.len() as u64, Ordering::Relaxed);
                    legs.retain(|_, c| *c != id);
                }
            },
            Some(_) = tasks.join_next() => {}
            else => break,
        }
    }
}

/// Hands an event to a call's task without waiting: this loop serves every call, so one call
/// that stopped reading must not hold up the others. Its inbox is deep enough for any burst a
/// live call sees; an overflow is a bug in that call's task, logged with the call id.
fn deliver(tx: &mpsc::Sender<CallInput>, id: &WaCallId, input: CallInput) {
    match tx.try_send(input) {
        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            warn!(call_id = %id, "call task is not keeping up; event dropped")
        }
    }
}

/// One call, from offer to end: answer with a WhatsApp leg, pre-accept, close when it ends.
async fn call_task(
    id: WaCallId,
    offer: String,
    from: Option<String>,
    mut inbox: mpsc::Receiver<CallInput>,
    media: EngineHandle,
    graph: GraphClient,
    report: mpsc::Sender<CallReport>,
) {
    info!(
        from = from.as_deref().map(mask).unwrap_or_default(),
        "call offered"
    );
    let answer = match media.answer_whatsapp(offer).await {
        Ok(a) => a,
        Err(e) => {
            warn!(error = %e, "offer unusable; rejecting the call");
            let _ = graph.reject(&id).await;
            let _ = report.send(CallReport::Done(id)).await;
            return;
        }
    };
    let _ = report.send(CallReport::Leg(id.clone(), answer.leg)).await;
    if let Err(e) = graph.pre_accept(&id, &answer.sdp).await {
        // Not accepted yet, so the call is declined rather than terminated (reference §1.2).
        warn!(error = %e, "pre_accept failed; rejecting the call");
        let _ = media.close(answer.leg).await;
        let _ = graph.reject(&id).await;
        let _ = report.send(CallReport::Done(id)).await;
        return;
    }
    info!(leg = %answer.leg, "pre-accepted");
    while let Some(input) = inbox.recv().await {
        match input {
            CallInput::WhatsApp(WaEvent::CallTerminated { status, errors, .. }) => {
                info!(?status, errors = ?errors.iter().map(|e| e.code).collect::<Vec<_>>(), "caller's side ended the call");
                let _ = media.close(answer.leg).await;
                break;
            }
            CallInput::WhatsApp(other) => info!(event = ?other.dedup_key(), "ignored"),
            CallInput::Media(MediaEvent::Connected { .. }) => info!("media connected to WhatsApp"),
            CallInput::Media(MediaEvent::Failed { reason, .. }) => {
                warn!(?reason, "WhatsApp leg failed; rejecting the call");
                let _ = graph.reject(&id).await;
                break;
            }
            CallInput::Media(MediaEvent::Closed { .. }) => break,
            CallInput::Media(MediaEvent::Dtmf { digit, .. }) => info!(%digit, "dtmf"),
            CallInput::Media(MediaEvent::Stats { .. }) => {}
        }
    }
    let _ = report.send(CallReport::Done(id)).await;
}

/// A phone number for a log line: only its last four digits.
fn mask(number: &str) -> String {
    let digits: Vec<char> = number.chars().collect();
    let keep = digits.len().min(4);
    let hidden = digits.len() - keep;
    "*".repeat(hidden) + &digits[hidden..].iter().collect::<String>()
}
