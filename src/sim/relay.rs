//! A simulated Meta media relay: one UDP socket that carries many Meta-shaped peers at once,
//! as Meta's relays do from their few fixed ports (reference §9: 3478, 3480, 3482, 3484, 40012).
//!
//! The relay can tell its calls apart only by the address on switchboard's side of each
//! datagram: it files every peer under the addresses of switchboard's candidates in that peer's
//! answer (and, like any ICE agent, under the address of a STUN check naming the peer's ufrag),
//! and hands each datagram to the peer filed under its source. Two calls answered from one
//! switchboard address would be indistinguishable here — exactly as at Meta — and the relay
//! counts such a collision instead of hiding it.
//!
//! *Owns*: its socket and the table from switchboard address to peer inbox.
//! *Does not touch*: the peers' `Rtc`s; each peer task still owns its own.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Datagrams queued for one peer before the relay drops them (as a congested relay would).
const INBOX: usize = 1024;

/// A datagram delivered to a peer: its source (a switchboard address) and its bytes.
pub(crate) type Datagram = (SocketAddr, Vec<u8>);

/// Counters of a relay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayCounters {
    /// Datagrams received from switchboard.
    pub received: u64,
    /// Datagrams from an address no live peer is filed under.
    pub unrouted: u64,
    /// Times a peer was filed under a switchboard address that a live peer already had: two
    /// calls on one 5-tuple, which no relay can demultiplex.
    pub collisions: u64,
    /// Datagrams dropped because a peer's inbox was full.
    pub dropped: u64,
}

#[derive(Debug, Default)]
struct Stats {
    received: AtomicU64,
    unrouted: AtomicU64,
    collisions: AtomicU64,
    dropped: AtomicU64,
}

/// A shared relay socket; cloning gives another handle to the same relay. The receiving task
/// stops when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct MetaRelay {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    socket: Arc<UdpSocket>,
    addr: SocketAddr,
    // A std mutex: held for one map operation, never across an await (mini-redis `db.rs`).
    routes: Arc<Mutex<Routes>>,
    stats: Arc<Stats>,
    task: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MetaRelay {
    /// Binds a relay socket on `addr` (port 0: any) and starts receiving.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<MetaRelay> {
        let socket = Arc::new(UdpSocket::bind(addr).await?);
        let addr = socket.local_addr()?;
        let routes: Arc<Mutex<Routes>> = Arc::default();
        let stats = Arc::new(Stats::default());
        let task = tokio::spawn(receive(socket.clone(), routes.clone(), stats.clone()));
        Ok(MetaRelay {
            inner: Arc::new(Inner {
                socket,
                addr,
                routes,
                stats,
                task,
            }),
        })
    }

    /// The relay's address: every peer on it offers this as its candidate.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The counters so far.
    pub fn counters(&self) -> RelayCounters {
        let s = &self.inner.stats;
        RelayCounters {
            received: s.received.load(Ordering::Relaxed),
            unrouted: s.unrouted.load(Ordering::Relaxed),
            collisions: s.collisions.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn socket(&self) -> Arc<UdpSocket> {
        self.inner.socket.clone()
    }

    /// A new peer with ICE ufrag `ufrag`: its inbox, already reachable by STUN checks that
    /// name it.
    pub(crate) fn register(
        &self,
        ufrag: &str,
    ) -> (mpsc::Sender<Datagram>, mpsc::Receiver<Datagram>) {
        let (tx, rx) = mpsc::channel(INBOX);
        self.routes().by_ufrag.insert(ufrag.to_owned(), tx.clone());
        (tx, rx)
    }

    /// Files a peer under the switchboard addresses of its answer.
    pub(crate) fn file(&self, remote: &[SocketAddr], inbox: &mpsc::Sender<Datagram>) {
        let mut routes = self.routes();
        for addr in remote {
            routes.file(*addr, inbox, &self.inner.stats);
        }
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.inner
            .routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where the relay sends what arrives: by switchboard address, else by the ufrag a STUN check
/// names.
#[derive(Debug, Default)]
struct Routes {
    by_addr: HashMap<SocketAddr, mpsc::Sender<Datagram>>,
    by_ufrag: HashMap<String, mpsc::Sender<Datagram>>,
}

impl Routes {
    fn file(&mut self, addr: SocketAddr, inbox: &mpsc::Sender<Datagram>, stats: &Stats) {
        match self.by_addr.insert(addr, inbox.clone()) {
            Some(old) if !old.is_closed() && !old.same_channel(inbox) => {
                stats.collisions.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    fn route(
        &mut self,
        source: SocketAddr,
        datagram: &[u8],
        stats: &Stats,
    ) -> Option<mpsc::Sender<Datagram>> {
        if let Some(tx) = self.by_addr.get(&source) {
            if !tx.is_closed() {
                return Some(tx.clone());
            }
            self.by_addr.remove(&source);
        }
        // A check from an address not filed yet names the peer: USERNAME is "theirs:ours".
        let msg = str0m::ice::StunMessage::parse(datagram).ok()?;
        let (ours, _) = msg.split_username()?;
        let tx = self.by_ufrag.get(ours)?.clone();
        if tx.is_closed() {
            self.by_ufrag.remove(ours);
            return None;
        }
        self.file(source, &tx, stats);
        Some(tx)
    }
}

async fn receive(socket: Arc<UdpSocket>, routes: Arc<Mutex<Routes>>, stats: Arc<Stats>) {
    let mut buf = vec![0u8; 2048];
    loop {
        let Ok((n, source)) = socket.recv_from(&mut buf).await else {
            continue; // ICMP errors concern one destination only
        };
        stats.received.fetch_add(1, Ordering::Relaxed);
        let target =
            routes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .route(source, &buf[..n], &stats);
        let Some(tx) = target else {
            stats.unrouted.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if tx.try_send((source, buf[..n].to_vec())).is_err() {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
