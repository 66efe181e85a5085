//! The generator's media: one thread that plays every caller and every agent, so its own cost
//! is one core at most and can be read off its thread.
//!
//! Callers are Meta-shaped str0m peers that all share **one relay socket**, as Meta's relays
//! carry many calls from one address; the thread tells them apart by switchboard's address
//! (each caller's answer names its own switchboard port). Agents are browser-shaped peers with
//! a socket each. In the baseline run the same thread sends the same packets in plain RTP
//! (no ICE, DTLS or SRTP) through a bare relay instead.
//!
//! Every audio packet is a real Opus frame (the built-in melody, read once) whose last
//! [`TRAILER`] bytes carry a tag: the call and the send time on this thread's clock. The
//! receiving side reads the tag back, so forwarding delay needs no clock sync and loss counts
//! only packets sent inside the measurement window. Nothing here decodes audio.
//!
//! *Owns*: the sockets and peers. *Does not touch*: HTTP, WebSockets (the control tasks in
//! `main.rs` do that and send [`Cmd`]s).

use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use str0m::media::Pt;
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, Ssrc};
use str0m::{Event, Input, Output, Rtc};
use switchboard::sim::peer::{Accepted, Offered, META_OPUS_PT};

/// The tag at the end of every generated payload: magic, call, send time in µs.
pub const TRAILER: usize = 16;
const MAGIC: &[u8; 4] = b"LT01";
/// RTP timestamp ticks per 20 ms frame at 48 kHz.
const TICKS: u32 = 960;
/// SRTP's authentication tag: plain packets carry as many bytes, so sizes match.
const AUTH_TAG: usize = 10;
const RELAY: Token = Token(0);
const WAKER: Token = Token(1);
/// Agent sockets' tokens start here.
const AGENTS: usize = 2;

/// What the control tasks ask of the media thread.
pub enum Cmd {
    /// A caller with its offer made (switchboard runs).
    Caller {
        /// Call index.
        call: u32,
        /// The peer.
        offered: Box<Offered>,
    },
    /// Meta's answer reached the caller (from the fake Graph API's pre_accept).
    CallerAnswer {
        /// Call index.
        call: u32,
        /// switchboard's answer.
        answer: String,
    },
    /// An agent's PeerConnection (switchboard runs), its socket, and switchboard's answer.
    Agent {
        /// Agent index.
        agent: u32,
        /// The peer.
        offered: Box<Offered>,
        /// Its socket (the one its offer names).
        socket: std::net::UdpSocket,
        /// switchboard's answer.
        answer: String,
    },
    /// A baseline call: the caller on the relay socket and the agent on its own socket, both
    /// talking plain RTP to `relay` (the bare relay's port for this call).
    Plain {
        /// Call index.
        call: u32,
        /// Agent index.
        agent: u32,
        /// The agent's socket.
        socket: std::net::UdpSocket,
        /// The bare relay's port for this call.
        relay: SocketAddr,
    },
    /// The call is up: caller and agent send tagged audio every 20 ms.
    Talk {
        /// Call index.
        call: u32,
        /// Agent index.
        agent: u32,
    },
    /// Both sides of the call stop sending.
    Quiet {
        /// Call index.
        call: u32,
    },
    /// Opens (true) or closes the measurement window.
    Window(bool),
    /// Ends the thread; it returns its [`Figures`].
    Stop,
}

/// What the media thread reports as it happens.
#[derive(Debug)]
pub enum Note {
    /// A peer's ICE and DTLS are up.
    Connected {
        /// Caller (true) or agent.
        caller: bool,
        /// Its call or agent index.
        index: u32,
    },
    /// The call's first tagged packet reached one side (the caller, or the agent).
    Heard {
        /// Call index.
        call: u32,
        /// At the caller (true) or at the agent.
        caller: bool,
        /// When.
        at: Instant,
    },
    /// A peer failed (str0m error).
    Failed {
        /// Caller (true) or agent.
        caller: bool,
        /// Its call or agent index.
        index: u32,
        /// Why.
        why: String,
    },
}

/// One direction's measurements.
#[derive(Debug, Default, Clone)]
pub struct Direction {
    /// Tagged packets sent inside the window.
    pub sent: u64,
    /// Of those, received.
    pub received: u64,
    /// Forwarding delay of each, µs (send to receive, one clock).
    pub delays_us: Vec<u32>,
}

/// Everything the media thread measured.
#[derive(Debug, Default, Clone)]
pub struct Figures {
    /// Caller → agent.
    pub to_agent: Direction,
    /// Agent → caller.
    pub to_caller: Direction,
    /// Packets (of any kind) received by all peers inside the window: what the relay under
    /// test sent.
    pub packets_in_window: u64,
    /// Sequence or timestamp continuity broken (duplicate, backwards, time compressed).
    pub continuity_violations: u64,
    /// Callers that went 20 s or more without a packet once media flowed (Meta's rule would
    /// have ended their calls).
    pub silent_20s: u64,
    /// Datagrams no peer claimed.
    pub unrouted: u64,
    /// Longest the thread fell behind its 1 ms send grid, µs.
    pub max_lag_us: u64,
    /// CPU time of the media thread inside the window, seconds (from /proc/thread-self).
    pub thread_cpu_secs: f64,
    /// The window's length, seconds.
    pub window_secs: f64,
}

impl Figures {
    /// Adds another thread's figures to these.
    pub fn merge(&mut self, o: Figures) {
        for (a, b) in [
            (&mut self.to_agent, o.to_agent),
            (&mut self.to_caller, o.to_caller),
        ] {
            a.sent += b.sent;
            a.received += b.received;
            a.delays_us.extend(b.delays_us);
        }
        self.packets_in_window += o.packets_in_window;
        self.continuity_violations += o.continuity_violations;
        self.silent_20s += o.silent_20s;
        self.unrouted += o.unrouted;
        self.max_lag_us = self.max_lag_us.max(o.max_lag_us);
        self.thread_cpu_secs = self.thread_cpu_secs.max(o.thread_cpu_secs);
        self.window_secs = self.window_secs.max(o.window_secs);
    }
}

/// The generator's media threads: callers and agents spread over them by index.
pub struct Generator {
    threads: Vec<MediaThread>,
}

impl Generator {
    /// Starts `n` threads (at least one).
    pub fn start(
        n: usize,
        notes: tokio::sync::mpsc::UnboundedSender<Note>,
    ) -> io::Result<Generator> {
        let epoch = Instant::now();
        let threads = (0..n.max(1))
            .map(|_| MediaThread::start(notes.clone(), epoch))
            .collect::<io::Result<_>>()?;
        Ok(Generator { threads })
    }

    /// The thread of call (or agent) `i`.
    pub fn of(&self, i: u32) -> &MediaThread {
        &self.threads[i as usize % self.threads.len()]
    }

    /// Sends a command to every thread.
    pub fn all(&self, cmd: impl Fn() -> Cmd) {
        for t in &self.threads {
            t.send(cmd());
        }
    }

    /// Stops every thread; their figures, together (the busiest thread's CPU).
    pub fn stop(self) -> Figures {
        let mut out = Figures::default();
        for t in self.threads {
            out.merge(t.stop());
        }
        out
    }
}

/// The media thread's handle.
pub struct MediaThread {
    tx: mpsc::Sender<Cmd>,
    waker: Arc<Waker>,
    join: std::thread::JoinHandle<Figures>,
    /// The relay socket's address (every caller's candidate).
    pub relay_addr: SocketAddr,
}

impl MediaThread {
    /// Starts a thread with a relay socket on 127.0.0.1; notes go to `notes`. Send times are
    /// counted from `epoch`, the same for every thread of a run.
    pub fn start(
        notes: tokio::sync::mpsc::UnboundedSender<Note>,
        epoch: Instant,
    ) -> io::Result<MediaThread> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let std_relay = std::net::UdpSocket::bind("127.0.0.1:0")?;
        std_relay.set_nonblocking(true)?;
        let relay_addr = std_relay.local_addr()?;
        let mut relay = UdpSocket::from_std(std_relay);
        poll.registry()
            .register(&mut relay, RELAY, Interest::READABLE)?;
        let (tx, rx) = mpsc::channel();
        let frames = frames();
        let join = std::thread::Builder::new()
            .name("loadtest-media".into())
            .spawn(move || {
                let mut m = Media {
                    poll,
                    relay,
                    relay_addr,
                    sockets: vec![],
                    sock_peer: vec![],
                    peers: vec![],
                    callers: HashMap::new(),
                    agents: HashMap::new(),
                    by_remote: HashMap::new(),
                    timers: BinaryHeap::new(),
                    wheel: vec![vec![]; 20],
                    tick: Instant::now(),
                    slot: 0,
                    start: epoch,
                    frames,
                    notes,
                    window: None,
                    figures: Figures::default(),
                    heard: std::collections::HashSet::new(),
                    buf: vec![0; 2048],
                };
                m.run(rx)
            })?;
        Ok(MediaThread {
            tx,
            waker,
            join,
            relay_addr,
        })
    }

    /// Sends a command.
    pub fn send(&self, cmd: Cmd) {
        let _ = self.tx.send(cmd);
        let _ = self.waker.wake();
    }

    /// Stops the thread; its figures.
    pub fn stop(self) -> Figures {
        self.send(Cmd::Stop);
        self.join.join().unwrap_or_default()
    }
}

/// The melody's Opus frames long enough to carry the tag, read once.
fn frames() -> Vec<Vec<u8>> {
    let ogg = switchboard::media::ogg::read(switchboard::media::ogg::MELODY)
        .expect("the built-in melody reads");
    let frames: Vec<Vec<u8>> = ogg
        .packets
        .into_iter()
        .filter(|p| p.len() >= TRAILER + 8)
        .collect();
    assert!(!frames.is_empty(), "the melody has frames to tag");
    frames
}

enum Wire {
    /// A str0m peer, before (`Offered`) or after its answer.
    Rtc {
        offered: Option<Box<Offered>>,
        rtc: Option<Box<Rtc>>,
        ssrc: Ssrc,
    },
    /// Plain RTP to the bare relay.
    Plain { relay: SocketAddr, ssrc: u32 },
}

/// Where a peer's datagrams go out from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sock {
    Relay,
    Own(usize),
}

struct Peer {
    caller: bool,
    index: u32,
    wire: Wire,
    sock: Sock,
    local: SocketAddr,
    /// The call whose audio it sends now, and since which sequence number.
    talking: Option<u32>,
    seq: u64,
    ts: u32,
    frame: usize,
    /// The last received (extended sequence, timestamp).
    last_rx: Option<(u64, u32)>,
    /// Plain RTP's 16-bit sequence numbers, extended.
    rx_ext: u64,
    /// When a packet last arrived, and the longest gap since the first.
    last_at: Option<Instant>,
    silent_20s: bool,
    /// The deadline this peer is filed under in the timer heap.
    due: Option<Instant>,
    failed: bool,
}

struct Media {
    poll: Poll,
    relay: UdpSocket,
    relay_addr: SocketAddr,
    sockets: Vec<UdpSocket>,
    /// The peer of each own socket.
    sock_peer: Vec<usize>,
    peers: Vec<Peer>,
    callers: HashMap<u32, usize>,
    agents: HashMap<u32, usize>,
    /// Callers by the far address of their datagrams on the relay socket.
    by_remote: HashMap<SocketAddr, usize>,
    /// (deadline, peer) — a min-heap through `Reverse`; stale entries are skipped.
    timers: BinaryHeap<std::cmp::Reverse<(Instant, usize)>>,
    /// Talking peers by the millisecond of the 20 ms grid they send at: (call, peer).
    wheel: Vec<Vec<(u32, usize)>>,
    tick: Instant,
    slot: usize,
    start: Instant,
    frames: Vec<Vec<u8>>,
    notes: tokio::sync::mpsc::UnboundedSender<Note>,
    window: Option<(u64, Option<u64>)>,
    figures: Figures,
    /// (call, at the caller) already reported heard.
    heard: std::collections::HashSet<(u32, bool)>,
    buf: Vec<u8>,
}

impl Media {
    fn run(&mut self, rx: mpsc::Receiver<Cmd>) -> Figures {
        let mut events = Events::with_capacity(1024);
        let mut window_opened: Option<(Instant, f64)> = None;
        self.tick = Instant::now();
        loop {
            let now = Instant::now();
            let mut timeout = self.tick.saturating_duration_since(now);
            if let Some(std::cmp::Reverse((t, _))) = self.timers.peek() {
                timeout = timeout.min(t.saturating_duration_since(now));
            }
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    eprintln!("loadtest: media poll: {e}");
                }
            }
            let mut ready = vec![];
            for ev in events.iter() {
                ready.push(ev.token());
            }
            loop {
                match rx.try_recv() {
                    Ok(Cmd::Stop) | Err(mpsc::TryRecvError::Disconnected) => {
                        if let (Some((at, cpu)), Some((_, None))) = (window_opened, self.window) {
                            self.figures.window_secs = at.elapsed().as_secs_f64();
                            self.figures.thread_cpu_secs = thread_cpu_secs() - cpu;
                        }
                        return std::mem::take(&mut self.figures);
                    }
                    Ok(Cmd::Window(open)) => {
                        let us = self.start.elapsed().as_micros() as u64;
                        if open {
                            self.window = Some((us, None));
                            window_opened = Some((Instant::now(), thread_cpu_secs()));
                        } else if let Some((from, None)) = self.window {
                            self.window = Some((from, Some(us)));
                            if let Some((at, cpu)) = window_opened {
                                self.figures.window_secs = at.elapsed().as_secs_f64();
                                self.figures.thread_cpu_secs = thread_cpu_secs() - cpu;
                            }
                        }
                    }
                    Ok(cmd) => self.command(cmd),
                    Err(mpsc::TryRecvError::Empty) => break,
                }
            }
            for token in ready {
                match token {
                    RELAY => self.read_relay(),
                    WAKER => {}
                    Token(t) => self.read_own(t - AGENTS),
                }
            }
            let now = Instant::now();
            while let Some(std::cmp::Reverse((t, idx))) = self.timers.peek().copied() {
                if t > now {
                    break;
                }
                self.timers.pop();
                if self.peers[idx].due == Some(t) {
                    self.peers[idx].due = None;
                    self.timeout(idx, now);
                }
            }
            // The 1 ms send grid: each talking call sends at its own millisecond of 20.
            let mut caught_up = 0;
            while self.tick <= Instant::now() && caught_up < 20 {
                if matches!(self.window, Some((_, None))) {
                    let lag = Instant::now().saturating_duration_since(self.tick);
                    self.figures.max_lag_us = self.figures.max_lag_us.max(lag.as_micros() as u64);
                }
                let slot = std::mem::take(&mut self.wheel[self.slot]);
                for &(_, peer) in &slot {
                    self.send_audio(peer);
                }
                self.wheel[self.slot] = slot;
                self.slot = (self.slot + 1) % 20;
                self.tick += Duration::from_millis(1);
                caught_up += 1;
            }
            if self.tick + Duration::from_millis(20) < Instant::now() {
                // Far behind (the machine is overloaded): skip rather than burst.
                self.tick = Instant::now();
            }
        }
    }

    fn command(&mut self, cmd: Cmd) {
        let now = Instant::now();
        match cmd {
            Cmd::Caller { call, offered } => {
                let idx = self.add_peer(
                    true,
                    call,
                    Wire::Rtc {
                        offered: Some(offered),
                        rtc: None,
                        ssrc: Ssrc::from(0),
                    },
                    Sock::Relay,
                    self.relay_addr,
                );
                self.callers.insert(call, idx);
            }
            Cmd::CallerAnswer { call, answer } => {
                let Some(&idx) = self.callers.get(&call) else {
                    return;
                };
                match self.accept(idx, &answer) {
                    Ok(remote) => {
                        for r in remote {
                            self.by_remote.insert(r, idx);
                        }
                        self.timeout(idx, now);
                    }
                    Err(why) => self.fail(idx, why),
                }
            }
            Cmd::Agent {
                agent,
                offered,
                socket,
                answer,
            } => {
                let Some((sock, local)) = self.own_socket(socket) else {
                    let _ = self.notes.send(Note::Failed {
                        caller: false,
                        index: agent,
                        why: "socket".into(),
                    });
                    return;
                };
                let idx = self.add_peer(
                    false,
                    agent,
                    Wire::Rtc {
                        offered: Some(offered),
                        rtc: None,
                        ssrc: Ssrc::from(0),
                    },
                    sock,
                    local,
                );
                self.agents.insert(agent, idx);
                match self.accept(idx, &answer) {
                    Ok(_) => self.timeout(idx, now),
                    Err(why) => self.fail(idx, why),
                }
            }
            Cmd::Plain {
                call,
                agent,
                socket,
                relay,
            } => {
                let Some((sock, local)) = self.own_socket(socket) else {
                    return;
                };
                let ssrc = rand::random();
                let c = self.add_peer(
                    true,
                    call,
                    Wire::Plain { relay, ssrc },
                    Sock::Relay,
                    self.relay_addr,
                );
                let a = self.add_peer(
                    false,
                    agent,
                    Wire::Plain {
                        relay,
                        ssrc: rand::random(),
                    },
                    sock,
                    local,
                );
                self.callers.insert(call, c);
                self.agents.insert(agent, a);
                self.by_remote.insert(relay, c);
                // Each side says hello so the relay learns its address.
                let _ = self.relay.send_to(b"HELO", relay);
                if let Sock::Own(i) = sock {
                    let _ = self.sockets[i].send_to(b"HELO", relay);
                }
            }
            Cmd::Talk { call, agent } => {
                // The caller and the agent may live on different threads: each takes its own.
                let peers = [self.callers.get(&call), self.agents.get(&agent)];
                for &p in peers.into_iter().flatten() {
                    self.peers[p].talking = Some(call);
                    self.wheel[(call % 20) as usize].push((call, p));
                }
            }
            Cmd::Quiet { call } => {
                let slot = &mut self.wheel[(call % 20) as usize];
                slot.retain(|&(c, p)| {
                    let keep = c != call;
                    if !keep {
                        self.peers[p].talking = None;
                    }
                    keep
                });
            }
            Cmd::Window(_) | Cmd::Stop => {}
        }
    }

    fn own_socket(&mut self, socket: std::net::UdpSocket) -> Option<(Sock, SocketAddr)> {
        socket.set_nonblocking(true).ok()?;
        let local = socket.local_addr().ok()?;
        let mut s = UdpSocket::from_std(socket);
        let i = self.sockets.len();
        self.poll
            .registry()
            .register(&mut s, Token(AGENTS + i), Interest::READABLE)
            .ok()?;
        self.sockets.push(s);
        // Filled in by add_peer, which comes next.
        self.sock_peer.push(usize::MAX);
        Some((Sock::Own(i), local))
    }

    fn add_peer(
        &mut self,
        caller: bool,
        index: u32,
        wire: Wire,
        sock: Sock,
        local: SocketAddr,
    ) -> usize {
        self.peers.push(Peer {
            caller,
            index,
            wire,
            sock,
            local,
            talking: None,
            seq: u64::from(rand::random::<u16>()),
            ts: rand::random(),
            frame: index as usize,
            last_rx: None,
            rx_ext: 0,
            last_at: None,
            silent_20s: false,
            due: None,
            failed: false,
        });
        let idx = self.peers.len() - 1;
        if let Sock::Own(i) = sock {
            self.sock_peer[i] = idx;
        }
        idx
    }

    fn accept(&mut self, idx: usize, answer: &str) -> Result<Vec<SocketAddr>, String> {
        let Wire::Rtc { offered, rtc, ssrc } = &mut self.peers[idx].wire else {
            return Err("not a str0m peer".into());
        };
        let o = offered.take().ok_or("answered twice")?;
        let Accepted {
            rtc: r,
            tx_ssrc,
            remote,
        } = o.accept(answer).map_err(|e| e.to_string())?;
        *rtc = Some(Box::new(r));
        *ssrc = tx_ssrc;
        Ok(remote)
    }

    fn fail(&mut self, idx: usize, why: String) {
        let p = &mut self.peers[idx];
        if !p.failed {
            p.failed = true;
            let _ = self.notes.send(Note::Failed {
                caller: p.caller,
                index: p.index,
                why,
            });
        }
    }

    fn read_relay(&mut self) {
        loop {
            let (n, source) = match self.relay.recv_from(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => continue,
            };
            match self.by_remote.get(&source).copied() {
                Some(idx) => self.datagram(idx, source, n),
                None => self.figures.unrouted += 1,
            }
        }
    }

    fn read_own(&mut self, i: usize) {
        let Some(&idx) = self.sock_peer.get(i).filter(|&&p| p != usize::MAX) else {
            return;
        };
        loop {
            let Some(s) = self.sockets.get(i) else { return };
            let (n, source) = match s.recv_from(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => continue,
            };
            self.datagram(idx, source, n);
        }
    }

    fn datagram(&mut self, idx: usize, source: SocketAddr, n: usize) {
        let now = Instant::now();
        let local = self.peers[idx].local;
        match &mut self.peers[idx].wire {
            Wire::Rtc { rtc: Some(rtc), .. } => {
                let Ok(recv) = Receive::new(Protocol::Udp, source, local, &self.buf[..n]) else {
                    return;
                };
                let input = Input::Receive(now, recv);
                if rtc.accepts(&input) && rtc.handle_input(input).is_ok() {
                    self.drive(idx, now);
                }
            }
            Wire::Rtc { rtc: None, .. } => {}
            Wire::Plain { .. } => {
                if n < 12 + AUTH_TAG {
                    return;
                }
                let b = &self.buf[..n];
                let seq16 = u16::from_be_bytes([b[2], b[3]]);
                let ts = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
                let payload: Vec<u8> = b[12..n - AUTH_TAG].to_vec();
                let p = &mut self.peers[idx];
                // Extend the 16-bit sequence number around the last one.
                let ext = if p.last_rx.is_none() {
                    u64::from(seq16) + (1 << 16)
                } else {
                    let last = p.rx_ext;
                    let cand = (last & !0xFFFF) | u64::from(seq16);
                    [cand.wrapping_sub(1 << 16), cand, cand + (1 << 16)]
                        .into_iter()
                        .min_by_key(|c| c.abs_diff(last))
                        .unwrap_or(cand)
                };
                p.rx_ext = p.rx_ext.max(ext);
                self.packet(idx, now, ext, ts, &payload);
            }
        }
    }

    fn timeout(&mut self, idx: usize, now: Instant) {
        if let Wire::Rtc { rtc: Some(rtc), .. } = &mut self.peers[idx].wire {
            if rtc.handle_input(Input::Timeout(now)).is_err() {
                self.fail(idx, "str0m timeout input failed".into());
                return;
            }
            self.drive(idx, now);
        }
    }

    /// Runs a peer's str0m until it waits: datagrams out, events in, its next deadline filed.
    fn drive(&mut self, idx: usize, now: Instant) {
        loop {
            let out = match &mut self.peers[idx].wire {
                Wire::Rtc { rtc: Some(rtc), .. } => rtc.poll_output(),
                _ => return,
            };
            match out {
                Ok(Output::Timeout(t)) => {
                    let p = &mut self.peers[idx];
                    if p.due != Some(t) {
                        p.due = Some(t);
                        self.timers.push(std::cmp::Reverse((t, idx)));
                    }
                    return;
                }
                Ok(Output::Transmit(t)) => {
                    let sock = self.peers[idx].sock;
                    self.send(sock, &t.contents, t.destination);
                }
                Ok(Output::Event(e)) => match e {
                    Event::Connected => {
                        let p = &self.peers[idx];
                        let _ = self.notes.send(Note::Connected {
                            caller: p.caller,
                            index: p.index,
                        });
                    }
                    Event::RtpPacket(pkt) => {
                        let seq = *pkt.seq_no;
                        let ts = pkt.header.timestamp;
                        self.packet(idx, now, seq, ts, &pkt.payload);
                    }
                    _ => {}
                },
                Err(e) => {
                    self.fail(idx, e.to_string());
                    return;
                }
            }
        }
    }

    fn send(&self, sock: Sock, bytes: &[u8], to: SocketAddr) {
        let r = match sock {
            Sock::Relay => self.relay.send_to(bytes, to),
            Sock::Own(i) => match self.sockets.get(i) {
                Some(s) => s.send_to(bytes, to),
                None => return,
            },
        };
        // Loopback drops only when a buffer is full: that is loss, and it shows as such.
        let _ = r;
    }

    /// One tagged 20 ms frame from a talking peer.
    fn send_audio(&mut self, idx: usize) {
        let now = Instant::now();
        let sent_us = self.start.elapsed().as_micros() as u64;
        let in_window = matches!(self.window, Some((_, None)));
        let p = &mut self.peers[idx];
        let Some(call) = p.talking else { return };
        if p.failed {
            return;
        }
        let frame = &self.frames[p.frame % self.frames.len()];
        p.frame += 1;
        let mut payload = frame.clone();
        let at = payload.len() - TRAILER;
        payload[at..at + 4].copy_from_slice(MAGIC);
        payload[at + 4..at + 8].copy_from_slice(&call.to_be_bytes());
        payload[at + 8..].copy_from_slice(&sent_us.to_be_bytes());
        let seq = p.seq;
        let ts = p.ts;
        p.seq += 1;
        p.ts = p.ts.wrapping_add(TICKS);
        let caller = p.caller;
        match &mut p.wire {
            Wire::Rtc {
                rtc: Some(rtc),
                ssrc,
                ..
            } => {
                let pt = Pt::from(META_OPUS_PT);
                if let Some(tx) = rtc.direct_api().stream_tx(ssrc) {
                    tx.write_rtp(RtpWrite::new(pt, seq.into(), ts, now, payload));
                }
                self.drive(idx, now);
            }
            Wire::Rtc { rtc: None, .. } => return,
            Wire::Plain { relay, ssrc } => {
                let mut d = Vec::with_capacity(12 + payload.len() + AUTH_TAG);
                d.extend_from_slice(&[0x80, META_OPUS_PT]);
                d.extend_from_slice(&(seq as u16).to_be_bytes());
                d.extend_from_slice(&ts.to_be_bytes());
                d.extend_from_slice(&ssrc.to_be_bytes());
                d.extend_from_slice(&payload);
                d.extend_from_slice(&[0; AUTH_TAG]);
                let (sock, to) = (p.sock, *relay);
                self.send(sock, &d, to);
            }
        }
        if in_window {
            let dir = if caller {
                &mut self.figures.to_agent
            } else {
                &mut self.figures.to_caller
            };
            dir.sent += 1;
        }
    }

    /// A received RTP packet: continuity, the tag, set-up and window counts.
    fn packet(&mut self, idx: usize, now: Instant, seq: u64, ts: u32, payload: &[u8]) {
        let window = self.window;
        let start = self.start;
        let p = &mut self.peers[idx];
        if let Some((last_seq, last_ts)) = p.last_rx {
            let ds = seq as i64 - last_seq as i64;
            let dt = ts.wrapping_sub(last_ts) as i32 as i64;
            // A duplicate or a step back; time going backwards or faster than the frames.
            if ds <= 0 || dt < ds * i64::from(TICKS) || dt % i64::from(TICKS) != 0 {
                self.figures.continuity_violations += 1;
            }
        }
        if p.last_rx.is_none_or(|(s, _)| seq > s) {
            p.last_rx = Some((seq, ts));
        }
        if let Some(last) = p.last_at {
            if now.saturating_duration_since(last) >= Duration::from_secs(20) && !p.silent_20s {
                p.silent_20s = true;
                self.figures.silent_20s += 1;
            }
        }
        p.last_at = Some(now);
        let caller = p.caller;
        let in_window_now = matches!(window, Some((_, None)));
        if in_window_now {
            self.figures.packets_in_window += 1;
        }
        let n = payload.len();
        if n < TRAILER || &payload[n - TRAILER..n - TRAILER + 4] != MAGIC {
            return; // switchboard's own silence or hold audio
        }
        let t = &payload[n - TRAILER + 4..];
        let call = u32::from_be_bytes([t[0], t[1], t[2], t[3]]);
        let sent_us = u64::from_be_bytes([t[4], t[5], t[6], t[7], t[8], t[9], t[10], t[11]]);
        let now_us = now.saturating_duration_since(start).as_micros() as u64;
        if let Some((from, to)) = window {
            if sent_us >= from && to.is_none_or(|to| sent_us <= to) {
                let dir = if caller {
                    &mut self.figures.to_caller
                } else {
                    &mut self.figures.to_agent
                };
                dir.received += 1;
                dir.delays_us
                    .push(now_us.saturating_sub(sent_us).min(u64::from(u32::MAX)) as u32);
            }
        }
        if self.heard.insert((call, caller)) {
            let _ = self.notes.send(Note::Heard {
                call,
                caller,
                at: now,
            });
        }
    }
}

/// CPU seconds (user + system) of the calling thread.
pub fn thread_cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/thread-self/stat")
        .ok()
        .and_then(|s| crate::proc::cpu_ticks(&s))
        .map_or(0.0, crate::proc::ticks_to_secs)
}
