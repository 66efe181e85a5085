//! The thin I/O driver around [`Engine`]: one or more threads ("shards"), each owning its share
//! of the pool of UDP sockets and an engine of its own, and waiting (one `epoll` through `mio`)
//! on exactly three things — its sockets, its waker (commands, and packets from other shards)
//! and its engine's next deadline. The rest of the program holds a cloneable [`EngineHandle`],
//! which sends each command to the shard that owns the leg, and reads [`MediaEvent`]s from one
//! channel that every shard feeds.
//!
//! A leg lives and dies on one shard: the shard that owns the socket it was placed on. A call
//! whose WhatsApp leg and agent leg sit on different shards (the agent's leg exists before the
//! call, so placement cannot avoid it) is forwarded through the destination shard's inbox: a
//! bounded lock-free queue of packets plus an unbounded one of route changes, and a wake-up
//! only when that shard is asleep in `epoll`.
//!
//! Why `mio` rather than a tokio runtime: the pool can hold a thousand sockets, and one `epoll`
//! over all of them is what a `select!` cannot express. The threads run no async code at all.
//!
//! If logic worth testing grows here, it belongs in the engine instead.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_queue::{ArrayQueue, SegQueue};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::engine::{Answer, Counters, Crossing, Engine, EngineConfig, MediaEvent};
use super::leg::LegKind;
use super::recv::{BatchRecv, UdpSocketState};
use super::MediaError;
use crate::ids::{LegId, StreamId};

/// Events queued to the program before the driver keeps them in its own buffer.
const EVENT_QUEUE: usize = 4096;
/// Datagrams read from one socket per turn before the other sockets, timers and commands get
/// theirs (two `recvmmsg` batches).
const RECV_BATCH: usize = 64;
/// The waker's token; sockets use `2 * index` (IPv4) and `2 * index + 1` (IPv6).
const WAKER: Token = Token(usize::MAX);
/// How often the driver retries handing events over while the program is not reading them.
const EVENT_RETRY: Duration = Duration::from_millis(5);
/// File descriptors kept free for everything else (HTTP connections, the database, logs).
const FD_HEADROOM: u64 = 1024;
/// Receive and send buffer asked for each media socket.
const SOCKET_BUFFER: usize = 1 << 20;
/// Packets from other shards one shard's inbox holds before more are dropped (and counted):
/// at 50 packets a second per call, far more than a busy shard's turn ever leaves waiting.
const INBOX_PACKETS: usize = 8192;

type Reply<T> = oneshot::Sender<Result<T, MediaError>>;

enum Command {
    /// A new leg: answering `offer`, or (`None`) offering one ourselves.
    Answer {
        kind: LegKind,
        offer: Option<String>,
        last_resort: bool,
        reply: Reply<Answer>,
    },
    Route(StreamId, Option<LegId>, Reply<()>),
    Hold(StreamId, bool, Reply<()>),
    HoldAudio(LegId, super::HoldAudio, Reply<()>),
    StartSending(LegId, Reply<()>),
    TrunkAnswered(LegId, String, Reply<()>),
    WhatsAppAnswered(LegId, String, Reply<()>),
    SendDtmf(LegId, String, Duration, Reply<()>),
    Close(LegId, Reply<()>),
    Counters(oneshot::Sender<DriverCounters>),
}

/// Which local UDP ports the engine binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ports {
    /// Every port from `first` to `last`, inclusive (`first == last`: a single port, which
    /// serves one call per remote address at a time).
    Range {
        /// The lowest port.
        first: u16,
        /// The highest port.
        last: u16,
    },
    /// This many ports chosen by the operating system: for tests and experiments on one
    /// machine, since no firewall rule can name them in advance.
    Ephemeral(u16),
}

impl Ports {
    /// How many sockets (per address family) this binds.
    pub fn count(&self) -> usize {
        match *self {
            Ports::Range { first, last } => usize::from(last.saturating_sub(first)) + 1,
            Ports::Ephemeral(n) => usize::from(n),
        }
    }
}

/// Where the engine binds its sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// The IPv4 (or only) address to bind, e.g. `0.0.0.0`.
    pub ip: IpAddr,
    /// The IPv6 address to bind as well, e.g. `::`, when an IPv6 candidate is offered; each
    /// port is then bound on both, the IPv6 socket IPv6-only.
    pub ip6: Option<IpAddr>,
    /// The ports.
    pub ports: Ports,
}

/// Engine counters plus the driver's own, summed over the shards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverCounters {
    /// The engines' counters.
    pub engine: Counters,
    /// Legs alive.
    pub legs: u64,
    /// Datagrams the socket refused to send (buffer full, unreachable).
    pub send_errors: u64,
    /// Statistics and DTMF events dropped because the program did not read events fast enough.
    pub events_dropped: u64,
    /// Packets for another shard dropped because its inbox was full (it had fallen behind).
    pub crossings_dropped: u64,
    /// `recvmmsg` calls made (each reads up to a batch of datagrams from one socket).
    pub recv_calls: u64,
    /// `send_to` calls made, one per datagram.
    pub send_calls: u64,
    /// Time the engine threads spent working (everything but waiting for sockets and timers),
    /// added up over the shards: divided by the wall time and [`DriverCounters::shards`], how
    /// close the media loop is to falling behind.
    pub busy: Duration,
    /// Engine threads.
    pub shards: usize,
}

/// Wakes a shard's thread when the last handle is gone, so it notices and stops at once.
#[derive(Debug)]
struct WakeOnDrop(Arc<Waker>);

impl Drop for WakeOnDrop {
    fn drop(&mut self) {
        let _ = self.0.wake();
    }
}

/// One shard's command channel.
#[derive(Debug)]
struct ShardHandle {
    // Declared before `wake`: the last handle's sender is gone by the time its waker fires.
    // Unbounded so that a command is queued the moment it is made, without awaiting: commands
    // to one shard are then carried out in the order their callers made them, whichever task
    // made them. What bounds it is upstream: the call machines' limit on calls setting up and
    // the few commands each call's step makes.
    tx: mpsc::UnboundedSender<Command>,
    wake: WakeOnDrop,
}

/// A cheap, cloneable handle to the engine threads.
#[derive(Clone, Debug)]
pub struct EngineHandle {
    shards: Arc<[ShardHandle]>,
    /// Where the next new leg's placement starts (round robin over the shards).
    next: Arc<AtomicUsize>,
    /// The node's leg limit, which the shards share out.
    max_legs: usize,
    /// The node's ports, for the error that says none is free.
    ports: usize,
}

/// What other shards leave for one shard, and how to wake it.
struct Inbox {
    /// Forwarded packets: bounded, so a shard that falls behind drops (and counts) rather than
    /// letting memory grow.
    packets: ArrayQueue<Crossing>,
    /// Route changes: a few per call, never dropped.
    notices: SegQueue<Crossing>,
    waker: Arc<Waker>,
    /// True while the shard's thread is in (or about to enter) `epoll`: a sender that finds it
    /// set wakes the thread; otherwise the thread finds the crossing on its next turn, and no
    /// system call is made per packet.
    parked: AtomicBool,
}

/// The engine threads; dropping every [`EngineHandle`] stops them (legs are closed gracefully).
#[derive(Debug)]
pub struct MediaDriver {
    ports: Vec<u16>,
    local_addr: SocketAddr,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// One port of the pool: its IPv4 socket and, when IPv6 is offered, its IPv6 socket.
struct PoolSocket {
    v4: UdpSocket,
    v6: Option<UdpSocket>,
    /// What `recvmmsg` needs to know of each (see [`super::recv`]).
    v4_state: UdpSocketState,
    v6_state: Option<UdpSocketState>,
}

impl PoolSocket {
    fn new(v4: UdpSocket, v6: Option<UdpSocket>) -> io::Result<PoolSocket> {
        let v4_state = UdpSocketState::new((&v4).into())?;
        let v6_state = match &v6 {
            Some(s) => Some(UdpSocketState::new(s.into())?),
            None => None,
        };
        Ok(PoolSocket {
            v4,
            v6,
            v4_state,
            v6_state,
        })
    }
}

/// What one shard's thread owns.
struct Shard {
    index: usize,
    engine: Engine,
    poll: Poll,
    sockets: Vec<PoolSocket>,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::Sender<MediaEvent>,
    inboxes: Arc<[Inbox]>,
}

impl MediaDriver {
    /// Binds the pool and starts the engine threads: `cfg.shards` of them (at most one per
    /// port and 64), the ports dealt out among them in turn. `cfg.ports` is replaced by the
    /// ports bound; the leg and pending-event limits are shared out evenly.
    pub fn spawn(
        bind: Bind,
        cfg: EngineConfig,
    ) -> Result<(MediaDriver, EngineHandle, mpsc::Receiver<MediaEvent>), MediaError> {
        let count = bind.ports.count();
        if count == 0 {
            return Err(MediaError::InvalidConfig {
                reason: "the media port range is empty".into(),
            });
        }
        raise_fd_limit(count * if bind.ip6.is_some() { 2 } else { 1 })?;
        let sockets = bind_pool(&bind)?;
        let ports: Vec<u16> = sockets
            .iter()
            .map(|s| s.v4.local_addr().map(|a| a.port()))
            .collect::<Result<_, _>>()?;
        let local_addr = sockets[0].v4.local_addr()?;
        let n = cfg.shards.clamp(1, sockets.len().min(64));
        let total_ports = ports.len();
        let max_legs = cfg.limits.max_legs;

        // Deal the sockets out: shard k gets sockets k, k + n, k + 2n, …
        let mut dealt: Vec<Vec<PoolSocket>> = (0..n).map(|_| Vec::new()).collect();
        for (i, s) in sockets.into_iter().enumerate() {
            dealt[i % n].push(s);
        }
        let mut polls = Vec::with_capacity(n);
        let mut wakers = Vec::with_capacity(n);
        let mut engines = Vec::with_capacity(n);
        for (k, sockets) in dealt.iter_mut().enumerate() {
            let mut cfg = cfg.clone();
            cfg.ports = sockets
                .iter()
                .map(|s| s.v4.local_addr().map(|a| a.port()))
                .collect::<Result<_, _>>()?;
            cfg.limits.max_legs = cfg.limits.max_legs.div_ceil(n);
            cfg.limits.max_pending_events = cfg.limits.max_pending_events.div_ceil(n);
            engines.push(Engine::shard(cfg, k as u8)?);
            let poll = Poll::new()?;
            wakers.push(Arc::new(Waker::new(poll.registry(), WAKER)?));
            for (i, s) in sockets.iter_mut().enumerate() {
                poll.registry()
                    .register(&mut s.v4, Token(2 * i), Interest::READABLE)?;
                if let Some(v6) = s.v6.as_mut() {
                    poll.registry()
                        .register(v6, Token(2 * i + 1), Interest::READABLE)?;
                }
            }
            polls.push(poll);
        }
        let inboxes: Arc<[Inbox]> = wakers
            .iter()
            .map(|w| Inbox {
                packets: ArrayQueue::new(INBOX_PACKETS),
                notices: SegQueue::new(),
                waker: w.clone(),
                parked: AtomicBool::new(false),
            })
            .collect();
        let (ev_tx, ev_rx) = mpsc::channel(EVENT_QUEUE);
        let mut threads = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        for (index, ((engine, poll), sockets)) in
            engines.into_iter().zip(polls).zip(dealt).enumerate()
        {
            let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
            let shard = Shard {
                index,
                engine,
                poll,
                sockets,
                commands: cmd_rx,
                events: ev_tx.clone(),
                inboxes: inboxes.clone(),
            };
            threads.push(
                std::thread::Builder::new()
                    .name(format!("media-engine-{index}"))
                    .spawn(move || run(shard))?,
            );
            handles.push(ShardHandle {
                tx: cmd_tx,
                wake: WakeOnDrop(wakers[index].clone()),
            });
        }
        info!(
            %local_addr,
            ports = ports.len(),
            first = ports[0],
            last = ports[ports.len() - 1],
            ipv6 = bind.ip6.is_some(),
            shards = n,
            "media engine listening"
        );
        Ok((
            MediaDriver {
                ports,
                local_addr,
                threads,
            },
            EngineHandle {
                shards: handles.into(),
                next: Arc::new(AtomicUsize::new(0)),
                max_legs,
                ports: total_ports,
            },
            ev_rx,
        ))
    }

    /// The address of the first socket of the pool.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Every port of the pool, in socket order.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// Waits for the engine threads to finish (after every handle is dropped).
    pub fn join(mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Makes sure the process may open the pool's sockets: raises the soft `RLIMIT_NOFILE` toward
/// the hard one when the pool needs it, and says which limit is short when it cannot.
fn raise_fd_limit(sockets: usize) -> Result<(), MediaError> {
    let needed = sockets as u64 + FD_HEADROOM;
    let Ok((soft, hard)) = rlimit::getrlimit(rlimit::Resource::NOFILE) else {
        return Ok(()); // not a limit this platform reports; binding will say if it is short
    };
    if soft >= needed {
        return Ok(());
    }
    let got = rlimit::increase_nofile_limit(needed).unwrap_or(soft);
    if got < needed {
        return Err(MediaError::InvalidConfig {
            reason: format!(
                "{sockets} media sockets need about {needed} open files, but the limit is {got} \
                 (hard limit {hard}): raise `ulimit -n` / LimitNOFILE, or narrow \
                 SWITCHBOARD_MEDIA_PORTS"
            ),
        });
    }
    debug!(
        from = soft,
        to = got,
        "raised the open-file limit for the media ports"
    );
    Ok(())
}

fn bind_pool(bind: &Bind) -> Result<Vec<PoolSocket>, MediaError> {
    let mut out = Vec::with_capacity(bind.ports.count());
    match bind.ports {
        Ports::Range { first, last } => {
            for port in first..=last {
                let v4 =
                    bind_udp(SocketAddr::new(bind.ip, port)).map_err(|e| port_error(port, e))?;
                let v6 = match bind.ip6 {
                    Some(ip6) => Some(
                        bind_udp(SocketAddr::new(ip6, port)).map_err(|e| port_error(port, e))?,
                    ),
                    None => None,
                };
                out.push(PoolSocket::new(v4, v6)?);
            }
        }
        Ports::Ephemeral(n) => {
            for _ in 0..n {
                out.push(bind_ephemeral(bind)?);
            }
        }
    }
    Ok(out)
}

/// One OS-chosen port, on IPv4 and (when asked) on IPv6 with the same number.
fn bind_ephemeral(bind: &Bind) -> Result<PoolSocket, MediaError> {
    let mut last_err = None;
    // The IPv6 side of a port the OS gave us on IPv4 may be taken; try a few ports.
    for _ in 0..16 {
        let v4 = bind_udp(SocketAddr::new(bind.ip, 0))?;
        let Some(ip6) = bind.ip6 else {
            return Ok(PoolSocket::new(v4, None)?);
        };
        let port = v4.local_addr()?.port();
        match bind_udp(SocketAddr::new(ip6, port)) {
            Ok(v6) => return Ok(PoolSocket::new(v4, Some(v6))?),
            Err(e) => last_err = Some(e),
        }
    }
    Err(MediaError::Io(last_err.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::AddrInUse,
            "no port free on both IPv4 and IPv6",
        )
    })))
}

fn port_error(port: u16, e: io::Error) -> MediaError {
    MediaError::Io(io::Error::new(
        e.kind(),
        format!("media port {port}: {e} (SWITCHBOARD_MEDIA_PORTS)"),
    ))
}

/// A non-blocking UDP socket; an IPv6 one is IPv6-only, so the same port can be bound on IPv4.
fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    // Room for a burst (a thread busy with a DTLS handshake while its calls keep sending);
    // the kernel caps these at net.core.rmem_max / wmem_max, which docs/operations.md says to
    // raise on a busy node.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into())?;
    Ok(UdpSocket::from_std(socket.into()))
}

impl ShardHandle {
    /// Queues a command now; its result comes on the receiver.
    fn post<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<oneshot::Receiver<Result<T, MediaError>>, MediaError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).map_err(|_| MediaError::EngineGone)?;
        self.wake.0.wake().map_err(|_| MediaError::EngineGone)?;
        Ok(rx)
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, MediaError> {
        self.post(make)?.await.map_err(|_| MediaError::EngineGone)?
    }

    async fn counters(&self) -> Result<DriverCounters, MediaError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Counters(tx))
            .map_err(|_| MediaError::EngineGone)?;
        self.wake.0.wake().map_err(|_| MediaError::EngineGone)?;
        rx.await.map_err(|_| MediaError::EngineGone)
    }
}

/// A command that changes a leg or a stream, queued without waiting for its result (see
/// [`EngineHandle::post`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegOp {
    /// See [`Engine::route`].
    Route(StreamId, Option<LegId>),
    /// See [`Engine::hold`].
    Hold(StreamId, bool),
    /// See [`Engine::set_hold_audio`].
    HoldAudio(LegId, super::HoldAudio),
    /// See [`Engine::start_sending`].
    StartSending(LegId),
    /// See [`Engine::close`].
    Close(LegId),
}

/// The result of a posted [`LegOp`], to await later (or never).
#[derive(Debug)]
pub struct Posted(oneshot::Receiver<Result<(), MediaError>>);

impl Posted {
    /// How the command went.
    pub async fn result(self) -> Result<(), MediaError> {
        self.0.await.map_err(|_| MediaError::EngineGone)?
    }
}

impl EngineHandle {
    /// The shard that owns `leg`.
    fn owner(&self, leg: LegId) -> Result<&ShardHandle, MediaError> {
        self.shards
            .get(leg.shard())
            .ok_or(MediaError::UnknownLeg { leg })
    }

    /// Engine threads.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// A new leg on the next shard in turn; when that shard has no port free for the offer's
    /// remote address (or no leg slot left), the next one, and so on: the node refuses only
    /// when every shard would.
    /// A new leg on the first shard with room: answering `offer`, or offering one (`None`).
    async fn answer(&self, kind: LegKind, offer: Option<String>) -> Result<Answer, MediaError> {
        let n = self.shards.len();
        let first = self.next.fetch_add(1, Ordering::Relaxed) % n;
        for k in 0..n {
            let last_resort = k + 1 == n;
            let offer = offer.clone();
            let shard = &self.shards[(first + k) % n];
            let result = shard
                .call(|reply| Command::Answer {
                    kind,
                    offer,
                    last_resort,
                    reply,
                })
                .await;
            match result {
                Err(MediaError::NoFreePort { .. } | MediaError::TooManyLegs { .. })
                    if !last_resort => {}
                Err(MediaError::TooManyLegs { .. }) => {
                    return Err(MediaError::TooManyLegs {
                        limit: self.max_legs,
                    })
                }
                Err(MediaError::NoFreePort { remote, .. }) => {
                    return Err(MediaError::NoFreePort {
                        remote,
                        ports: self.ports,
                    })
                }
                other => return other,
            }
        }
        Err(MediaError::EngineGone)
    }

    /// See [`Engine::answer_whatsapp`].
    pub async fn answer_whatsapp(&self, offer: impl Into<String>) -> Result<Answer, MediaError> {
        self.answer(LegKind::WhatsApp, Some(offer.into())).await
    }

    /// See [`Engine::offer_whatsapp`]: the leg, and the offer (in [`Answer::sdp`]) for Graph
    /// `connect`.
    pub async fn offer_whatsapp(&self) -> Result<Answer, MediaError> {
        self.answer(LegKind::WhatsApp, None).await
    }

    /// See [`Engine::whatsapp_answered`].
    pub async fn whatsapp_answered(
        &self,
        leg: LegId,
        answer: impl Into<String>,
    ) -> Result<(), MediaError> {
        let answer = answer.into();
        self.owner(leg)?
            .call(|r| Command::WhatsAppAnswered(leg, answer, r))
            .await
    }

    /// See [`Engine::answer_browser`].
    pub async fn answer_browser(&self, offer: impl Into<String>) -> Result<Answer, MediaError> {
        self.answer(LegKind::Browser, Some(offer.into())).await
    }

    /// See [`Engine::offer_trunk`]: the leg, and the offer (in [`Answer::sdp`]) for the other
    /// node.
    pub async fn offer_trunk(&self) -> Result<Answer, MediaError> {
        self.answer(LegKind::Trunk, None).await
    }

    /// See [`Engine::trunk_answered`].
    pub async fn trunk_answered(
        &self,
        leg: LegId,
        answer: impl Into<String>,
    ) -> Result<(), MediaError> {
        let answer = answer.into();
        self.owner(leg)?
            .call(|r| Command::TrunkAnswered(leg, answer, r))
            .await
    }

    /// Queues `op` on its shard at once, without waiting for it to be carried out: the ops one
    /// caller posts are carried out in the order posted (and before any command the caller
    /// makes after). Fails only when the engine is gone or the leg's shard does not exist.
    pub fn post(&self, op: LegOp) -> Result<Posted, MediaError> {
        let rx = match op {
            LegOp::Route(stream, source) => self
                .owner(stream.leg)?
                .post(|r| Command::Route(stream, source, r))?,
            LegOp::Hold(stream, on) => self
                .owner(stream.leg)?
                .post(|r| Command::Hold(stream, on, r))?,
            LegOp::HoldAudio(leg, audio) => self
                .owner(leg)?
                .post(|r| Command::HoldAudio(leg, audio, r))?,
            LegOp::StartSending(leg) => self.owner(leg)?.post(|r| Command::StartSending(leg, r))?,
            LegOp::Close(leg) => self.owner(leg)?.post(|r| Command::Close(leg, r))?,
        };
        Ok(Posted(rx))
    }

    /// See [`Engine::route`]; the stream's shard takes it, and tells the source's shard.
    pub async fn route(&self, stream: StreamId, source: Option<LegId>) -> Result<(), MediaError> {
        self.owner(stream.leg)?
            .call(|r| Command::Route(stream, source, r))
            .await
    }

    /// See [`Engine::hold`].
    pub async fn hold(&self, stream: StreamId, on: bool) -> Result<(), MediaError> {
        self.owner(stream.leg)?
            .call(|r| Command::Hold(stream, on, r))
            .await
    }

    /// See [`Engine::start_sending`].
    pub async fn start_sending(&self, leg: LegId) -> Result<(), MediaError> {
        self.owner(leg)?
            .call(|r| Command::StartSending(leg, r))
            .await
    }

    /// See [`Engine::send_dtmf`].
    pub async fn send_dtmf(
        &self,
        leg: LegId,
        digits: impl Into<String>,
        duration: Duration,
    ) -> Result<(), MediaError> {
        let digits = digits.into();
        self.owner(leg)?
            .call(|r| Command::SendDtmf(leg, digits, duration, r))
            .await
    }

    /// See [`Engine::close`].
    pub async fn close(&self, leg: LegId) -> Result<(), MediaError> {
        self.owner(leg)?.call(|r| Command::Close(leg, r)).await
    }

    /// A snapshot of the counters, summed over the shards.
    pub async fn counters(&self) -> Result<DriverCounters, MediaError> {
        let mut sum = DriverCounters {
            shards: self.shards.len(),
            ..DriverCounters::default()
        };
        for shard in self.shards.iter() {
            let c = shard.counters().await?;
            sum.engine.merge(&c.engine);
            sum.legs += c.legs;
            sum.send_errors += c.send_errors;
            sum.events_dropped += c.events_dropped;
            sum.crossings_dropped += c.crossings_dropped;
            sum.recv_calls += c.recv_calls;
            sum.send_calls += c.send_calls;
            sum.busy += c.busy;
        }
        Ok(sum)
    }
}

fn run(shard: Shard) {
    let Shard {
        index,
        mut engine,
        mut poll,
        sockets,
        mut commands,
        events,
        inboxes,
    } = shard;
    let inbox = &inboxes[index];
    let Some(first) = sockets.first() else {
        return;
    };
    let mut batch = BatchRecv::new(&first.v4_state);
    let mut ready_events = Events::with_capacity(1024);
    // Sockets that may still hold datagrams (mio is edge-triggered: a socket is reported once
    // and must be read until it would block).
    let mut readable: VecDeque<Token> = VecDeque::new();
    let mut pending: VecDeque<MediaEvent> = VecDeque::new();
    let mut counters = DriverCounters::default();
    let max_pending = engine.limits().max_pending_events;
    let mut out = Out {
        sockets: &sockets,
        inboxes: &inboxes,
    };
    loop {
        let now = Instant::now();
        let mut timeout = engine.poll_timeout().map_or(Duration::from_secs(1), |at| {
            at.saturating_duration_since(now)
        });
        if !readable.is_empty() {
            timeout = Duration::ZERO;
        }
        if !pending.is_empty() {
            timeout = timeout.min(EVENT_RETRY);
        }
        // Parked before the last look at the inbox: a sender either sees the flag (and wakes
        // us) or its crossing is already there to see (the fences order the two sides).
        inbox.parked.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if !inbox.packets.is_empty() || !inbox.notices.is_empty() {
            timeout = Duration::ZERO;
        }
        if let Err(e) = poll.poll(&mut ready_events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                warn!(error = %e, "media poll failed");
            }
        }
        inbox.parked.store(false, Ordering::SeqCst);
        let woke = Instant::now();
        for ev in ready_events.iter() {
            if ev.token() != WAKER && !readable.contains(&ev.token()) {
                readable.push_back(ev.token());
            }
        }

        let mut stop = false;
        loop {
            match commands.try_recv() {
                Ok(cmd) => execute(&mut engine, cmd, &counters),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    stop = true;
                    break;
                }
            }
        }
        out.flush(&mut engine, &mut counters);

        // What other shards left: route changes first, then (at most one inbox's worth of)
        // packets, so a flood from them cannot starve this shard's own sockets.
        let now = Instant::now();
        while let Some(c) = inbox.notices.pop() {
            engine.handle_crossing(now, c);
        }
        for _ in 0..INBOX_PACKETS {
            let Some(c) = inbox.packets.pop() else {
                break;
            };
            engine.handle_crossing(now, c);
        }
        out.flush(&mut engine, &mut counters);

        for _ in 0..readable.len() {
            let Some(token) = readable.pop_front() else {
                break;
            };
            let index = token.0 / 2;
            let Some(pool) = sockets.get(index) else {
                continue;
            };
            let (socket, state) = if token.0 % 2 == 0 {
                (&pool.v4, &pool.v4_state)
            } else {
                match (&pool.v6, &pool.v6_state) {
                    (Some(s), Some(state)) => (s, state),
                    _ => continue,
                }
            };
            let read = batch.drain(
                state,
                socket,
                RECV_BATCH,
                |source, datagram| {
                    engine.handle_datagram(Instant::now(), index, source, datagram);
                    out.flush(&mut engine, &mut counters);
                },
                |e| debug!(error = %e, "recv"),
            );
            counters.recv_calls += read.calls;
            if !read.emptied {
                readable.push_back(token);
            }
        }

        let now = Instant::now();
        if engine.poll_timeout().is_some_and(|at| at <= now) {
            engine.handle_timeout(now);
        }
        out.flush(&mut engine, &mut counters);
        hand_over(
            &mut engine,
            &events,
            &mut pending,
            max_pending,
            &mut counters,
        );
        counters.busy += woke.elapsed();
        if stop {
            break;
        }
    }
    // Every handle is gone: close the legs so peers hear a BYE rather than time out.
    info!(
        shard = index,
        legs = engine.leg_count(),
        datagrams = engine.counters().datagrams_in,
        recv_calls = counters.recv_calls,
        send_calls = counters.send_calls,
        crossed_in = engine.counters().crossed_in,
        busy_ms = counters.busy.as_millis() as u64,
        "media engine stopping"
    );
    engine.close_all(Instant::now());
    out.flush(&mut engine, &mut counters);
}

/// Where a shard's output goes: datagrams to its sockets, crossings to other shards' inboxes.
struct Out<'a> {
    sockets: &'a [PoolSocket],
    inboxes: &'a [Inbox],
}

impl Out<'_> {
    fn flush(&mut self, engine: &mut Engine, counters: &mut DriverCounters) {
        while let Some(t) = engine.poll_transmit() {
            let Some(pool) = self.sockets.get(t.socket) else {
                counters.send_errors += 1;
                continue;
            };
            let socket = match (t.destination, &pool.v6) {
                (SocketAddr::V6(_), Some(v6)) => v6,
                _ => &pool.v4,
            };
            counters.send_calls += 1;
            if let Err(e) = socket.send_to(&t.contents, t.destination) {
                // UDP: a full buffer or an unreachable peer loses this datagram, as the network
                // could.
                counters.send_errors += 1;
                debug!(error = %e, destination = %t.destination, "send");
            }
        }
        while let Some(c) = engine.poll_crossing() {
            let Some(inbox) = self.inboxes.get(c.shard()) else {
                counters.crossings_dropped += 1;
                continue;
            };
            match c {
                Crossing::Packet(_) => {
                    if inbox.packets.push(c).is_err() {
                        counters.crossings_dropped += 1;
                        continue;
                    }
                }
                notice => inbox.notices.push(notice),
            }
            fence(Ordering::SeqCst);
            // A load first: while the other thread is busy (the common case under load) this
            // reads a shared line instead of writing it on every packet.
            if inbox.parked.load(Ordering::SeqCst) && inbox.parked.swap(false, Ordering::SeqCst) {
                let _ = inbox.waker.wake();
            }
        }
    }
}

/// Moves the engine's events to the program's channel. While the program is not reading, they
/// wait here; past `max_pending`, statistics and DTMF are dropped and counted, lifecycle events
/// are kept (three per leg at most).
fn hand_over(
    engine: &mut Engine,
    events: &mpsc::Sender<MediaEvent>,
    pending: &mut VecDeque<MediaEvent>,
    max_pending: usize,
    counters: &mut DriverCounters,
) {
    while let Some(ev) = engine.poll_event() {
        if ev.is_droppable() && pending.len() >= max_pending {
            counters.events_dropped += 1;
            continue;
        }
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
}

fn execute(engine: &mut Engine, cmd: Command, counters: &DriverCounters) {
    let now = Instant::now();
    // A caller that stopped waiting is fine: the command was still carried out.
    match cmd {
        Command::Answer {
            kind,
            offer,
            last_resort,
            reply,
        } => {
            let _ = reply.send(match (kind, offer) {
                (LegKind::Trunk, _) => engine.offer_trunk(now, last_resort),
                (LegKind::WhatsApp, None) => engine.offer_whatsapp(now, last_resort),
                (_, Some(offer)) => engine.answer(now, &offer, kind, last_resort),
                (LegKind::Browser, None) => Err(MediaError::InvalidOffer {
                    reason: "a browser leg is answered, never offered".into(),
                }),
            });
        }
        Command::Route(stream, source, r) => {
            let _ = r.send(engine.route(stream, source));
        }
        Command::Hold(stream, on, r) => {
            let _ = r.send(engine.hold(stream, on));
        }
        Command::HoldAudio(leg, audio, r) => {
            let _ = r.send(engine.set_hold_audio(leg, audio));
        }
        Command::StartSending(leg, r) => {
            let _ = r.send(engine.start_sending(now, leg));
        }
        Command::TrunkAnswered(leg, sdp, r) => {
            let _ = r.send(engine.trunk_answered(now, leg, &sdp));
        }
        Command::WhatsAppAnswered(leg, sdp, r) => {
            let _ = r.send(engine.whatsapp_answered(now, leg, &sdp));
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
