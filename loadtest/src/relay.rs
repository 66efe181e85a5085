//! The bare relay: the baseline a forwarding server cannot beat. Plain UDP, no ICE, DTLS, SRTP
//! or RTP rewriting; otherwise shaped like one of switchboard's media threads (one `epoll` over
//! a pool of ports, reading each ready socket with switchboard's own batched reader —
//! `recvmmsg`, until a batch comes back short —, one `send_to` per datagram, demultiplexing by
//! (local socket, remote address) in a hash map), so that the two per-packet costs compare the
//! work switchboard adds, not a different I/O design.
//!
//! Each port serves one call: the first two addresses that send it a datagram are paired, and
//! from then on what one sends goes to the other.

use std::collections::HashMap;
use std::io::{self, BufRead, Write};
use std::net::SocketAddr;

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use switchboard::media::recv::{BatchRecv, UdpSocketState};

/// Datagrams read from one socket before the others get a turn (as switchboard's driver).
const RECV_BATCH: usize = 64;

/// Runs the relay with `ports` sockets on 127.0.0.1: prints their ports as one JSON line, and
/// runs until standard input says `stop` or closes.
pub fn run(ports: usize) -> anyhow::Result<()> {
    let mut poll = Poll::new()?;
    let mut sockets = Vec::with_capacity(ports);
    let mut states = Vec::with_capacity(ports);
    let mut numbers = Vec::with_capacity(ports);
    for i in 0..ports {
        let mut s = UdpSocket::bind("127.0.0.1:0".parse()?)?;
        numbers.push(s.local_addr()?.port());
        poll.registry()
            .register(&mut s, Token(i), Interest::READABLE)?;
        states.push(UdpSocketState::new((&s).into())?);
        sockets.push(s);
    }
    let Some(first) = states.first() else {
        anyhow::bail!("the bare relay needs a port");
    };
    let mut batch = BatchRecv::new(first);
    println!("{}", serde_json::json!({ "ports": numbers }));
    io::stdout().flush()?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // The parent says stop, or closes our stdin (or dies).
            for line in io::stdin().lock().lines() {
                if line.map_or(true, |l| l.trim() == "stop") {
                    break;
                }
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
    }
    let mut peers: Vec<Vec<SocketAddr>> = vec![vec![]; ports];
    let mut routes: HashMap<(usize, SocketAddr), SocketAddr> = HashMap::new();
    let mut events = Events::with_capacity(1024);
    let mut ready: std::collections::VecDeque<usize> = Default::default();
    let mut forwarded: u64 = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        // The stop flag is looked at ten times a second at least.
        let timeout = if ready.is_empty() {
            std::time::Duration::from_millis(100)
        } else {
            std::time::Duration::ZERO
        };
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e.into());
            }
        }
        for ev in events.iter() {
            let t = ev.token().0;
            if t < ports && !ready.contains(&t) {
                ready.push_back(t);
            }
        }
        for _ in 0..ready.len() {
            let Some(i) = ready.pop_front() else { break };
            let socket = &sockets[i];
            let drained = batch
                .drain(
                    &states[i],
                    socket,
                    RECV_BATCH,
                    |from, datagram| match routes.get(&(i, from)) {
                        Some(&to) => {
                            let _ = socket.send_to(datagram, to);
                            forwarded += 1;
                        }
                        None => {
                            let pair = &mut peers[i];
                            if pair.len() < 2 && !pair.contains(&from) {
                                pair.push(from);
                                if let [a, b] = pair[..] {
                                    routes.insert((i, a), b);
                                    routes.insert((i, b), a);
                                }
                            }
                        }
                    },
                    |_| {},
                )
                .emptied;
            if !drained {
                ready.push_back(i);
            }
        }
    }
    eprintln!("bare relay: {forwarded} datagrams forwarded");
    Ok(())
}
