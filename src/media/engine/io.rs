//! The engine's inputs and outputs (sans-IO: no socket, no clock): a datagram in, found its leg
//! without a scan; time in, every due leg and the pacer advanced; transmits, events and the next
//! deadline out; and the drain loop that empties an `Rtc` after every input.
//!
//! *Owns*: [`Engine::handle_datagram`], [`Engine::handle_timeout`], the `poll_*` outputs,
//! demultiplexing, the timer heap, translating str0m's events, and the bound on pending events.
//!
//! *Does not touch*: what a packet is forwarded to (`forward`), what a leg's end does to the
//! tables (`lifecycle`).

use std::cmp::Reverse;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use str0m::net::{DatagramRecv, Protocol, Receive};
use str0m::{Event, IceConnectionState, Input, Output};
use tracing::{debug, info, trace, warn};

use super::{Engine, FailReason, MediaEvent, Transmit};
use crate::ids::LegId;

impl Engine {
    /// The local address a datagram from `source` arrived at, as str0m's candidates name it.
    fn local_addr_for(&self, socket: usize, source: SocketAddr) -> SocketAddr {
        let port = self.cfg.ports[socket];
        match (source, self.cfg.public_ip6) {
            (SocketAddr::V6(_), Some(ip6)) => SocketAddr::new(ip6, port),
            _ => SocketAddr::new(self.cfg.public_ip, port),
        }
    }

    // ------------------------------------------------------------------ inputs

    /// Handles one datagram received from `source` on local socket `socket` (an index into
    /// [`EngineConfig::ports`](super::EngineConfig::ports)).
    pub fn handle_datagram(&mut self, now: Instant, socket: usize, source: SocketAddr, buf: &[u8]) {
        self.counters.datagrams_in += 1;
        if socket >= self.cfg.ports.len() {
            self.counters.datagrams_unmatched += 1;
            return;
        }
        let Ok(contents) = DatagramRecv::try_from(buf) else {
            self.counters.datagrams_malformed += 1;
            trace!(%source, len = buf.len(), "datagram of no known protocol");
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.local_addr_for(socket, source),
                contents,
            },
        );
        let Some((id, known_addr)) = self.demux(&input, socket, source, buf) else {
            self.counters.datagrams_unmatched += 1;
            trace!(%source, "datagram for no leg");
            return;
        };
        let Some(leg) = self.legs.get_mut(id) else {
            return;
        };
        // The idle timer counts only what str0m authenticates: a STUN message whose integrity
        // checks here, or SRTP that str0m decrypts (see `on_event`). Junk from a leg's address
        // must not keep a dead leg alive.
        if is_stun(buf) {
            if leg.stun_keys.verify(buf) {
                leg.last_rx = now;
            } else {
                self.counters.stun_unauthenticated += 1;
            }
        }
        if !known_addr && !leg.addrs.contains(&source) {
            leg.addrs.push(source);
            self.by_addr.insert((socket, source), id);
        }
        let ok = catch_unwind(AssertUnwindSafe(|| leg.rtc.handle_input(input)));
        match ok {
            Ok(Ok(())) => self.drain(now, id),
            Ok(Err(e)) => {
                // A bad packet (SRTP auth failure, DTLS alert…) is the peer's problem, not
                // a reason to drop the leg: str0m has already discarded it.
                debug!(leg = %id, error = %e, "input refused");
                self.drain(now, id);
            }
            Err(_) => self.discard(id, "handle_input panicked"),
        }
    }

    /// Which leg a datagram belongs to: the address map first (established flows), then the STUN
    /// username (a new flow's ICE checks name our ufrag), then — for STUN responses, which carry
    /// no username — the leg that was offered this address as a candidate on this socket. Never
    /// a scan of all legs. With it, whether the address map named it (then the leg already
    /// knows the address: nothing to add on the per-packet path).
    fn demux(
        &self,
        input: &Input,
        socket: usize,
        source: SocketAddr,
        buf: &[u8],
    ) -> Option<(LegId, bool)> {
        if let Some(id) = self.by_addr.get(&(socket, source)) {
            if let Some(leg) = self.legs.get(*id) {
                if leg.rtc.accepts(input) {
                    return Some((*id, true));
                }
            }
        }
        if !is_stun(buf) {
            return None;
        }
        let msg = str0m::ice::StunMessage::parse(buf).ok()?;
        let id = match msg.split_username() {
            Some((ours, _theirs)) => *self.by_ufrag.get(ours)?,
            None => *self.by_candidate.get(&(socket, source))?,
        };
        self.legs
            .get(id)
            .filter(|l| l.socket == socket && l.rtc.accepts(input))
            .map(|_| (id, false))
    }

    /// Advances time: the 20 ms pacer, and every leg whose deadline has come.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_tick.is_some_and(|t| t <= now) {
            self.tick(now);
        }
        while let Some(Reverse((at, id))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let (connect_timeout, idle_timeout) = (self.cfg.connect_timeout, self.cfg.idle_timeout);
            let Some(leg) = self.legs.get_mut(id) else {
                continue;
            };
            if leg.scheduled != Some(at) {
                continue; // superseded entry
            }
            leg.scheduled = None;
            if leg.closing.is_some_and(|until| now >= until) {
                // The peer never acknowledged our goodbye; stop waiting for it.
                leg.rtc.disconnect();
                self.remove_closed(id, false);
                continue;
            }
            if !leg.connected && !leg.awaiting_answer && now >= leg.created_at + connect_timeout {
                self.fail(id, FailReason::ConnectTimeout);
                continue;
            }
            if leg.connected && now >= leg.last_rx + idle_timeout {
                self.fail(id, FailReason::Silent);
                continue;
            }
            if now >= leg.rtc_timeout {
                self.counters.leg_timeouts += 1;
                let ok = catch_unwind(AssertUnwindSafe(|| {
                    leg.rtc.handle_input(Input::Timeout(now))
                }));
                match ok {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => debug!(leg = %id, error = %e, "timeout input refused"),
                    Err(_) => {
                        self.discard(id, "timeout panicked");
                        continue;
                    }
                }
            }
            self.drain(now, id);
        }
    }

    // ------------------------------------------------------------------ outputs

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the rest of the program.
    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }

    /// When [`Engine::handle_timeout`] must be called next; `None` when nothing is pending.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        // Superseded heap entries pile up with every drain; rebuild when they dominate.
        if self.timers.len() > 1024 + 4 * self.legs.live {
            self.timers = self
                .legs
                .slots
                .iter()
                .filter_map(|s| s.leg.as_ref())
                .filter_map(|l| l.scheduled.map(|at| Reverse((at, l.id))))
                .collect();
        }
        let legs = self.timers.peek().map(|Reverse((at, _))| *at);
        match (legs, self.next_tick) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ------------------------------------------------------------------ internals

    pub(super) fn drain(&mut self, now: Instant, id: LegId) {
        loop {
            let Some(leg) = self.legs.get_mut(id) else {
                return;
            };
            let out = catch_unwind(AssertUnwindSafe(|| leg.rtc.poll_output()));
            match out {
                Ok(Ok(Output::Timeout(at))) => {
                    leg.rtc_timeout = at;
                    if !leg.rtc.is_alive() {
                        let by_remote = leg.remote_closed;
                        self.remove_closed(id, by_remote);
                        return;
                    }
                    let deadline = leg.deadline(self.cfg.connect_timeout, self.cfg.idle_timeout);
                    if leg.scheduled != Some(deadline) {
                        leg.scheduled = Some(deadline);
                        self.timers.push(Reverse((deadline, id)));
                    }
                    return;
                }
                Ok(Ok(Output::Transmit(t))) => self.transmits.push_back(Transmit {
                    socket: leg.socket,
                    destination: t.destination,
                    contents: t.contents.into(),
                }),
                Ok(Ok(Output::Event(e))) => self.on_event(now, id, e),
                Ok(Err(e)) => {
                    warn!(leg = %id, error = %e, "poll_output failed; discarding leg");
                    self.discard(id, "poll_output failed");
                    return;
                }
                Err(_) => {
                    self.discard(id, "poll_output panicked");
                    return;
                }
            }
        }
    }

    fn on_event(&mut self, now: Instant, id: LegId, event: Event) {
        let Some(leg) = self.legs.get_mut(id) else {
            return;
        };
        match event {
            Event::Connected => {
                leg.connected = true;
                leg.last_rx = now;
                info!(leg = %id, kind = leg.kind.name(), "leg connected");
                self.events.push_back(MediaEvent::Connected { leg: id });
            }
            Event::IceConnectionStateChange(state) => {
                debug!(leg = %id, ?state, "ice state");
                if state == IceConnectionState::Disconnected {
                    // str0m never gives up on ICE; the idle timeout decides (str0m notes §6).
                    debug!(leg = %id, "ice disconnected; waiting for the idle timeout");
                }
            }
            Event::RtpPacket(pkt) => {
                // str0m decrypted and authenticated it: the peer is alive.
                leg.last_rx = now;
                self.on_rtp(now, id, pkt)
            }
            Event::PeerStats(s) => {
                leg.stats.bytes_rx = s.peer_bytes_rx;
                leg.stats.bytes_tx = s.peer_bytes_tx;
                leg.stats.rtt = s
                    .selected_candidate_pair
                    .and_then(|p| p.current_round_trip_time)
                    .or(s.rtt)
                    .or(leg.stats.rtt);
                let stats = leg.stats.clone();
                let kind = leg.kind;
                self.emit(MediaEvent::Stats {
                    leg: id,
                    kind,
                    stats,
                });
            }
            Event::MediaIngressStats(s) => {
                leg.stats.packets_rx = s.packets;
                leg.stats.loss_rx = s.loss.or(leg.stats.loss_rx);
                // RFC 3550 jitter is in RTP clock units; audio here runs at 48 kHz.
                leg.stats.jitter = Some(Duration::from_micros(u64::from(s.jitter) * 1000 / 48));
            }
            Event::MediaEgressStats(s) => {
                leg.stats.packets_tx = s.packets;
                leg.stats.loss_tx = s.loss.or(leg.stats.loss_tx);
                if leg.stats.rtt.is_none() {
                    leg.stats.rtt = s.rtt;
                }
            }
            Event::Closed => {
                leg.remote_closed = true;
                debug!(leg = %id, "peer closed");
            }
            other => trace!(leg = %id, event = ?other, "ignored event"),
        }
    }

    /// Queues an event for the program. Statistics and DTMF past `max_pending_events` are dropped
    /// and counted (a peer flooding key presses must not grow memory); lifecycle events are
    /// always kept, being at most three per leg.
    pub(super) fn emit(&mut self, event: MediaEvent) {
        if event.is_droppable() && self.events.len() >= self.cfg.limits.max_pending_events {
            self.counters.events_dropped += 1;
            return;
        }
        self.events.push_back(event);
    }
}

/// STUN: first two bits zero and the magic cookie at bytes 4..8 (RFC 5389 §6).
fn is_stun(buf: &[u8]) -> bool {
    buf.len() >= 20 && buf[0] < 2 && buf[4..8] == [0x21, 0x12, 0xA4, 0x42]
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::engine::fixtures::*;

    #[test]
    fn a_datagram_on_another_socket_does_not_reach_a_leg() {
        let now = Instant::now();
        let mut e = engine(vec![7000, 7001]);
        e.answer_whatsapp(now, META_OFFER).unwrap();
        let before = e.counters().datagrams_unmatched;
        // A STUN response from Meta's address but on the socket that leg does not use.
        let meta: SocketAddr = "57.144.125.35:3484".parse().unwrap();
        let mut junk = vec![0u8; 256];
        let n = str0m::ice::StunMessage::binding_reply(str0m::ice::TransId::new(), meta)
            .to_bytes(Some(b"pwd"), &mut junk, crate::media::leg::hmac_sha1)
            .unwrap();
        junk.truncate(n);
        e.handle_datagram(now, 1, meta, &junk);
        e.handle_datagram(now, 9, meta, &junk);
        assert_eq!(e.counters().datagrams_unmatched, before + 2);
    }
}
