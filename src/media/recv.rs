//! Batched receive: up to a batch of datagrams from one UDP socket in one `recvmmsg`, through
//! `quinn-udp` (which also takes GRO's coalesced buffers apart, where the kernel makes them).
//!
//! Owns the receive buffers of one thread. Used by the media driver and by the load test's bare
//! relay, so the baseline reads its sockets exactly as switchboard does.
//!
//! A media socket rarely holds more than one datagram when `epoll` reports it (a port per call,
//! 50 packets a second from each peer): the load test measured 1.0 datagram per read. What a
//! batch saves is the second call: with edge-triggered `epoll` a socket must be read until it
//! is empty, and one `recv_from` per datagram needs a last call that finds nothing, while a
//! batch that comes back short already says the socket is empty. So a batch is small
//! ([`SLICES`]): each slot asked for costs set-up in every call, and the kernel fills a slot's
//! control messages per datagram. Measured, the halved system calls and the heavier call come
//! out even on this load (`docs/performance.md`); a socket that does fill up (a thread busy
//! with a handshake while its calls keep sending) is read a batch at a time.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsFd;

pub use quinn_udp::UdpSocketState;
use quinn_udp::{RecvMeta, BATCH_SIZE};

const _: () = assert!(SLICES <= BATCH_SIZE);

/// Datagrams asked for per call (at most `quinn_udp::BATCH_SIZE`).
pub const SLICES: usize = 4;

/// Room for one datagram: more than any MTU a peer of ours uses.
const DATAGRAM: usize = 2048;

/// What one read of a socket found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    /// Datagrams handed on.
    pub datagrams: usize,
    /// True when the socket is known to be empty: ask again only after `epoll` says so.
    pub drained: bool,
}

/// A thread's receive buffers: a batch of slots, each big enough for a GRO buffer when the
/// socket's state says the kernel may coalesce.
pub struct BatchRecv {
    storage: Vec<u8>,
    slot: usize,
    metas: [RecvMeta; SLICES],
}

impl BatchRecv {
    /// Buffers for sockets whose states are like `state` (the same kernel: the same GRO).
    pub fn new(state: &UdpSocketState) -> BatchRecv {
        let slot = DATAGRAM.max(1500 * state.gro_segments());
        BatchRecv {
            storage: vec![0; slot * SLICES],
            slot,
            metas: [RecvMeta::default(); SLICES],
        }
    }

    /// One `recvmmsg` on `socket`: `f(source, datagram)` for each datagram it returned, in
    /// order. An error other than "nothing there" concerns one datagram (an ICMP error from a
    /// peer surfaces here on Linux); the socket may hold more.
    pub fn read<S: AsFd>(
        &mut self,
        state: &UdpSocketState,
        socket: &S,
        mut f: impl FnMut(SocketAddr, &[u8]),
    ) -> io::Result<Read> {
        let mut chunks = self.storage.chunks_mut(self.slot);
        let mut slices: [IoSliceMut<'_>; SLICES] =
            std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()));
        let n = match state.recv(socket.into(), &mut slices, &mut self.metas) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Ok(Read {
                    datagrams: 0,
                    drained: true,
                })
            }
            Err(e) => return Err(e),
        };
        let mut datagrams = 0;
        for (meta, slice) in self.metas.iter().zip(slices.iter()).take(n) {
            let Some(bytes) = slice.get(..meta.len) else {
                continue;
            };
            // A GRO buffer holds several datagrams of `stride` bytes (the last may be shorter).
            for datagram in bytes.chunks(meta.stride.max(1)) {
                f(meta.addr, datagram);
                datagrams += 1;
            }
        }
        Ok(Read {
            datagrams,
            drained: n < SLICES,
        })
    }

    /// Reads `socket` in batches until it is empty or `budget` datagrams have been handed to
    /// `f` (then the socket's turn ends and it is read again later, so one busy socket cannot
    /// starve the others). Returns whether it was emptied and how many calls were made. An error
    /// other than "nothing there" counts as one datagram of the budget and is passed to
    /// `on_error` (an ICMP error from one peer surfaces here on Linux).
    pub fn drain<S: AsFd>(
        &mut self,
        state: &UdpSocketState,
        socket: &S,
        budget: usize,
        mut f: impl FnMut(SocketAddr, &[u8]),
        mut on_error: impl FnMut(io::Error),
    ) -> Drained {
        let mut out = Drained::default();
        let mut read = 0;
        while read < budget {
            out.calls += 1;
            match self.read(state, socket, &mut f) {
                Ok(r) => {
                    read += r.datagrams.max(1);
                    if r.drained {
                        out.emptied = true;
                        break;
                    }
                }
                Err(e) => {
                    read += 1;
                    on_error(e);
                }
            }
        }
        out
    }
}

/// What [`BatchRecv::drain`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    /// The socket is known to be empty.
    pub emptied: bool,
    /// `recvmmsg` calls made.
    pub calls: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::{Duration, Instant};

    /// Every datagram comes out once, whole and in order; a short batch says the socket is
    /// empty, a full one that more may wait; an empty socket reads as drained.
    #[test]
    fn batches_hand_on_every_datagram_in_order_and_say_when_the_socket_is_empty() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let state = UdpSocketState::new((&rx).into()).unwrap();
        let mut batch = BatchRecv::new(&state);
        let empty = batch
            .read(&state, &rx, |_, _| panic!("nothing was sent"))
            .unwrap();
        assert_eq!(
            empty,
            Read {
                datagrams: 0,
                drained: true
            }
        );

        let sent: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 100 + usize::from(i)]).collect();
        for d in &sent {
            tx.send_to(d, rx.local_addr().unwrap()).unwrap();
        }
        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut full_batches = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < sent.len() {
            assert!(
                Instant::now() < deadline,
                "only {} of 10 arrived",
                got.len()
            );
            let r = batch
                .read(&state, &rx, |from, d| {
                    assert_eq!(from, tx.local_addr().unwrap());
                    got.push(d.to_vec());
                })
                .unwrap();
            assert_eq!(r.drained, r.datagrams < SLICES, "{r:?}");
            full_batches += usize::from(r.datagrams == SLICES);
            if r.datagrams == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        assert_eq!(got, sent);
        assert!(
            full_batches >= 1,
            "ten queued datagrams fill a batch of {SLICES}"
        );
    }
}
