//! The thin I/O driver around [`Engine`]: a dedicated thread with its own single-threaded tokio
//! runtime that owns the UDP socket and the engine, and waits on exactly three things — the
//! socket, the command channel and the engine's next deadline. The rest of the program holds a
//! cloneable [`EngineHandle`] and reads [`MediaEvent`]s from a channel.
//!
//! If logic worth testing grows here, it belongs in the engine instead.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::engine::{Answer, Counters, Engine, EngineConfig, MediaEvent};
use super::MediaError;
use crate::ids::{LegId, StreamId};

/// Commands queued to the engine thread before callers wait (back-pressure beyond that).
const COMMAND_QUEUE: usize = 1024;
/// Events queued to the program before the engine keeps them in its own overflow buffer.
const EVENT_QUEUE: usize = 4096;
/// Overflow past which statistics events (and only those) are dropped and counted.
const EVENT_OVERFLOW: usize = 16_384;
/// Datagrams read per wake-up before timers and commands get a turn.
const RECV_BATCH: usize = 64;

type Reply<T> = oneshot::Sender<Result<T, MediaError>>;

enum Command {
    AnswerWhatsApp(String, Reply<Answer>),
    AnswerBrowser(String, Reply<Answer>),
    Route(StreamId, Option<LegId>, Reply<()>),
    StartSending(LegId, Reply<()>),
    SendDtmf(LegId, String, Duration, Reply<()>),
    Close(LegId, Reply<()>),
    Counters(oneshot::Sender<DriverCounters>),
}

/// Engine counters plus the driver's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverCounters {
    /// The engine's counters.
    pub engine: Counters,
    /// Legs alive.
    pub legs: u64,
    /// Datagrams the socket refused to send (buffer full, unreachable).
    pub send_errors: u64,
    /// Statistics events dropped because the program did not read events fast enough.
    pub events_dropped: u64,
}

/// A cheap, cloneable handle to the engine thread.
#[derive(Clone, Debug)]
pub struct EngineHandle {
    tx: mpsc::Sender<Command>,
}

/// The engine thread; dropping every [`EngineHandle`] stops it (legs are closed gracefully).
#[derive(Debug)]
pub struct MediaDriver {
    local_addr: SocketAddr,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MediaDriver {
    /// Binds `bind` and starts the engine thread.
    pub fn spawn(
        bind: SocketAddr,
        cfg: EngineConfig,
    ) -> Result<(MediaDriver, EngineHandle, mpsc::Receiver<MediaEvent>), MediaError> {
        let socket = std::net::UdpSocket::bind(bind)?;
        socket.set_nonblocking(true)?;
        let local_addr = socket.local_addr()?;
        let mut cfg = cfg;
        // Port 0 means "pick one": candidates must then carry the port we got.
        if cfg.public_addr.port() == 0 {
            cfg.public_addr.set_port(local_addr.port());
        }
        let engine = Engine::new(cfg)?;
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
        let (ev_tx, ev_rx) = mpsc::channel(EVENT_QUEUE);
        let thread = std::thread::Builder::new()
            .name("media-engine".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        warn!(error = %e, "media engine runtime failed to start");
                        return;
                    }
                };
                rt.block_on(async move {
                    match UdpSocket::from_std(socket) {
                        Ok(socket) => run(engine, socket, cmd_rx, ev_tx).await,
                        Err(e) => warn!(error = %e, "media socket unusable"),
                    }
                });
            })?;
        info!(%local_addr, "media engine listening");
        Ok((
            MediaDriver {
                local_addr,
                thread: Some(thread),
            },
            EngineHandle { tx: cmd_tx },
            ev_rx,
        ))
    }

    /// The UDP address the engine is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits for the engine thread to finish (after every handle is dropped).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl EngineHandle {
    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, MediaError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| MediaError::EngineGone)?;
        rx.await.map_err(|_| MediaError::EngineGone)?
    }

    /// See [`Engine::answer_whatsapp`].
    pub async fn answer_whatsapp(&self, offer: impl Into<String>) -> Result<Answer, MediaError> {
        let offer = offer.into();
        self.call(|r| Command::AnswerWhatsApp(offer, r)).await
    }

    /// See [`Engine::answer_browser`].
    pub async fn answer_browser(&self, offer: impl Into<String>) -> Result<Answer, MediaError> {
        let offer = offer.into();
        self.call(|r| Command::AnswerBrowser(offer, r)).await
    }

    /// See [`Engine::route`].
    pub async fn route(&self, stream: StreamId, source: Option<LegId>) -> Result<(), MediaError> {
        self.call(|r| Command::Route(stream, source, r)).await
    }

    /// See [`Engine::start_sending`].
    pub async fn start_sending(&self, leg: LegId) -> Result<(), MediaError> {
        self.call(|r| Command::StartSending(leg, r)).await
    }

    /// See [`Engine::send_dtmf`].
    pub async fn send_dtmf(
        &self,
        leg: LegId,
        digits: impl Into<String>,
        duration: Duration,
    ) -> Result<(), MediaError> {
        let digits = digits.into();
        self.call(|r| Command::SendDtmf(leg, digits, duration, r))
            .await
    }

    /// See [`Engine::close`].
    pub async fn close(&self, leg: LegId) -> Result<(), MediaError> {
        self.call(|r| Command::Close(leg, r)).await
    }

    /// A snapshot of the counters.
    pub async fn counters(&self) -> Result<DriverCounters, MediaError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Counters(tx))
            .await
            .map_err(|_| MediaError::EngineGone)?;
        rx.await.map_err(|_| MediaError::EngineGone)
    }
}

async fn run(
    mut engine: Engine,
    socket: UdpSocket,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<MediaEvent>,
) {
    let mut buf = vec![0u8; 2048];
    let mut pending: VecDeque<MediaEvent> = VecDeque::new();
    let mut counters = DriverCounters::default();
    loop {
        let deadline = engine
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        tokio::select! {
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { break };
                execute(&mut engine, cmd, &counters);
            }
            ready = socket.readable() => {
                if let Err(e) = ready {
                    warn!(error = %e, "media socket not readable");
                    continue;
                }
                for _ in 0..RECV_BATCH {
                    match socket.try_recv_from(&mut buf) {
                        Ok((n, source)) => {
                            engine.handle_datagram(Instant::now(), source, &buf[..n]);
                            flush(&mut engine, &socket, &mut counters);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        // ICMP errors surface here on Linux; they concern one peer only.
                        Err(e) => debug!(error = %e, "recv"),
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                engine.handle_timeout(Instant::now());
            }
            permit = events.reserve(), if !pending.is_empty() => {
                if let (Ok(permit), Some(ev)) = (permit, pending.pop_front()) {
                    permit.send(ev);
                }
            }
        }
        flush(&mut engine, &socket, &mut counters);
        while let Some(ev) = engine.poll_event() {
            pending.push_back(ev);
        }
        while let Some(ev) = pending.pop_front() {
            match events.try_send(ev) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(ev)) => {
                    pending.push_front(ev);
                    break;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    pending.clear();
                    break;
                }
            }
        }
        if pending.len() > EVENT_OVERFLOW {
            let before = pending.len();
            pending.retain(|e| !matches!(e, MediaEvent::Stats { .. }));
            counters.events_dropped += (before - pending.len()) as u64;
        }
    }
    // Every handle is gone: close the legs so peers hear a BYE rather than time out.
    info!(legs = engine.leg_count(), "media engine stopping");
    engine.close_all(Instant::now());
    flush(&mut engine, &socket, &mut counters);
}

fn execute(engine: &mut Engine, cmd: Command, counters: &DriverCounters) {
    let now = Instant::now();
    // A caller that stopped waiting is fine: the command was still carried out.
    match cmd {
        Command::AnswerWhatsApp(offer, r) => {
            let _ = r.send(engine.answer_whatsapp(now, &offer));
        }
        Command::AnswerBrowser(offer, r) => {
            let _ = r.send(engine.answer_browser(now, &offer));
        }
        Command::Route(stream, source, r) => {
            let _ = r.send(engine.route(stream, source));
        }
        Command::StartSending(leg, r) => {
            let _ = r.send(engine.start_sending(now, leg));
        }
        Command::SendDtmf(leg, digits, duration, r) => {
            let _ = r.send(engine.send_dtmf(leg, &digits, duration));
        }
        Command::Close(leg, r) => {
            let _ = r.send(engine.close(now, leg));
        }
        Command::Counters(r) => {
            let _ = r.send(DriverCounters {
                engine: engine.counters().clone(),
                legs: engine.leg_count() as u64,
                ..counters.clone()
            });
        }
    }
}

fn flush(engine: &mut Engine, socket: &UdpSocket, counters: &mut DriverCounters) {
    while let Some(t) = engine.poll_transmit() {
        if let Err(e) = socket.try_send_to(&t.contents, t.destination) {
            // UDP: a full buffer or an unreachable peer loses this datagram, as the network could.
            counters.send_errors += 1;
            debug!(error = %e, destination = %t.destination, "send");
        }
    }
}
