//! The forwarding table and the relay: which leg's audio feeds which outgoing stream, and writing
//! a source's packet to each stream it feeds, rewritten for that stream. Routes whose ends live on
//! two shards go through [`Crossing`]s.
//!
//! *Owns*: [`Engine::route`], subscriptions (each leg's list of streams it feeds), crossings in
//! and out, and the per-packet path from a received RTP packet to `write_rtp` on every
//! destination.
//!
//! *Does not touch*: what the engine sends of its own (`pace`), the payload bytes (never
//! changed), the leg table's lifecycle (`lifecycle`).

use std::sync::Arc;
use std::time::Instant;

use str0m::rtp::{RtpPacket, RtpWrite};
use tracing::{debug, info};

use super::{Engine, MediaEvent};
use crate::ids::{LegId, StreamId};
use crate::media::dtmf::Report;
use crate::media::rewrite::Producer;
use crate::media::MediaError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PacketKind {
    Opus,
    Tele,
}

/// What one shard's engine hands another: a packet for a stream whose leg lives there, or a
/// change to a route whose two ends live on different shards. Produced by
/// [`Engine::poll_crossing`], delivered (in order, per pair of shards) to
/// [`Engine::handle_crossing`] of the shard [`Crossing::shard`] names.
#[derive(Debug)]
pub enum Crossing {
    /// A source's packet for a stream on another shard, already read and decrypted.
    Packet(Relayed),
    /// Start sending `src`'s incoming audio to `stream` (the route's destination side is set).
    Subscribe {
        /// The source leg, on the receiving shard.
        src: LegId,
        /// The stream it feeds.
        stream: StreamId,
    },
    /// Stop sending `src`'s audio to `stream`.
    Unsubscribe {
        /// The source leg, on the receiving shard.
        src: LegId,
        /// The stream it fed.
        stream: StreamId,
    },
    /// `src` is gone (or never existed): `stream`, on the receiving shard, has no source now.
    SourceGone {
        /// The stream, on the receiving shard.
        stream: StreamId,
        /// The source that is gone.
        src: LegId,
    },
}

impl Crossing {
    /// The shard the crossing is for.
    pub fn shard(&self) -> usize {
        match self {
            Crossing::Packet(p) => p.dst.leg.shard(),
            Crossing::Subscribe { src, .. } | Crossing::Unsubscribe { src, .. } => src.shard(),
            Crossing::SourceGone { stream, .. } => stream.leg.shard(),
        }
    }
}

/// A packet on its way from one shard to another: what forwarding needs of it, and the payload
/// str0m shares by reference count (crossing copies no audio and allocates nothing).
#[derive(Debug)]
pub struct Relayed {
    dst: StreamId,
    producer: Producer,
    kind: PacketKind,
    seq: u64,
    ts: u32,
    marker: bool,
    payload: Arc<[u8]>,
}

/// A packet being forwarded to one stream.
struct Frame {
    seq: u64,
    ts: u32,
    marker: bool,
    payload: Arc<[u8]>,
}

impl Engine {
    /// Points an outgoing stream at a source leg's incoming audio (`None`: nothing, which on a
    /// WhatsApp stream means silence). Takes effect with the next packet; the receiver sees one
    /// continuous stream across any number of changes.
    ///
    /// The stream's leg must be this shard's. A source on another shard is subscribed to through
    /// a [`Crossing`]; if it turns out to be gone, a [`Crossing::SourceGone`] comes back and
    /// the stream falls back to silence, as when a same-shard source closes.
    pub fn route(&mut self, stream: StreamId, source: Option<LegId>) -> Result<(), MediaError> {
        if let Some(src) = source {
            if src == stream.leg {
                return Err(MediaError::RouteToSelf { leg: src });
            }
            if self.legs.is_local(src) && self.legs.get(src).is_none() {
                return Err(MediaError::UnknownLeg { leg: src });
            }
        }
        let out = self
            .legs
            .get_mut(stream.leg)
            .ok_or(MediaError::UnknownLeg { leg: stream.leg })?
            .outs
            .get_mut(stream.index as usize)
            .ok_or(MediaError::UnknownStream { stream })?;
        let old = std::mem::replace(&mut out.source, source);
        if old != source {
            out.announce_source = source.is_some();
        }
        if source.is_none() {
            // Silence takes over at the next tick rather than after the source-gap grace.
            out.last_source_at = None;
        }
        if old == source {
            return Ok(());
        }
        if let Some(old) = old {
            self.unsubscribe(old, stream);
        }
        if let Some(new) = source {
            self.subscribe(new, stream);
        }
        debug!(%stream, ?source, "route changed");
        Ok(())
    }

    /// Makes `src` send its incoming audio to `stream`: directly when `src` is this shard's,
    /// else through a crossing to its shard.
    fn subscribe(&mut self, src: LegId, stream: StreamId) {
        if !self.legs.is_local(src) {
            self.crossings
                .push_back(Crossing::Subscribe { src, stream });
            return;
        }
        match self.legs.get_mut(src) {
            Some(leg) => {
                if !leg.subscribers.contains(&stream) {
                    leg.subscribers.push(stream);
                }
            }
            None => self.source_gone(stream, src),
        }
    }

    pub(super) fn unsubscribe(&mut self, src: LegId, stream: StreamId) {
        if !self.legs.is_local(src) {
            self.crossings
                .push_back(Crossing::Unsubscribe { src, stream });
        } else if let Some(leg) = self.legs.get_mut(src) {
            leg.subscribers.retain(|s| *s != stream);
        }
    }

    /// `src` no longer feeds `stream` (it closed, or never existed on its shard).
    pub(super) fn source_gone(&mut self, stream: StreamId, src: LegId) {
        if !self.legs.is_local(stream.leg) {
            self.crossings
                .push_back(Crossing::SourceGone { stream, src });
            return;
        }
        if let Some(out) = self
            .legs
            .get_mut(stream.leg)
            .and_then(|l| l.outs.get_mut(stream.index as usize))
        {
            if out.source == Some(src) {
                out.source = None;
                out.last_source_at = None;
            }
        }
    }

    /// Takes what another shard's [`Engine::poll_crossing`] produced for this one.
    pub fn handle_crossing(&mut self, now: Instant, crossing: Crossing) {
        match crossing {
            Crossing::Packet(p) => {
                let Relayed {
                    dst,
                    producer,
                    kind,
                    seq,
                    ts,
                    marker,
                    payload,
                } = p;
                let pkt = Frame {
                    seq,
                    ts,
                    marker,
                    payload,
                };
                self.counters.crossed_in += 1;
                self.forward_one(now, producer, kind, pkt, dst);
            }
            Crossing::Subscribe { src, stream } => self.subscribe(src, stream),
            Crossing::Unsubscribe { src, stream } => self.unsubscribe(src, stream),
            Crossing::SourceGone { stream, src } => self.source_gone(stream, src),
        }
    }

    /// The next crossing for another shard (see [`Crossing::shard`]).
    pub fn poll_crossing(&mut self) -> Option<Crossing> {
        self.crossings.pop_front()
    }

    pub(super) fn on_rtp(&mut self, now: Instant, src: LegId, pkt: RtpPacket) {
        let Some(leg) = self.legs.get_mut(src) else {
            return;
        };
        let pt = pkt.header.payload_type;
        let kind = if pt == leg.opus_pt {
            PacketKind::Opus
        } else if Some(pt) == leg.tele_pt {
            PacketKind::Tele
        } else {
            self.counters.dropped_unknown_pt += 1;
            return;
        };
        if kind == PacketKind::Tele {
            if let Some(report) = Report::parse(&pkt.payload) {
                let mut found = [None, None];
                let mut n = 0;
                leg.dtmf_rx.handle(pkt.header.timestamp, report, |d| {
                    if let Some(slot) = found.get_mut(n) {
                        *slot = Some(d);
                        n += 1;
                    }
                });
                for d in found.into_iter().flatten() {
                    info!(leg = %src, digit = %d.digit, "dtmf received");
                    self.emit(MediaEvent::Dtmf {
                        leg: src,
                        digit: d.digit,
                        duration: d.duration,
                    });
                }
            }
        }
        let producer = Producer::Leg {
            leg: src,
            ssrc: *pkt.header.ssrc,
        };
        // Index loop: forwarding borrows other legs mutably, so no borrow of `leg` may live.
        let mut i = 0;
        while let Some(dst) = self
            .legs
            .get(src)
            .and_then(|l| l.subscribers.get(i).copied())
        {
            i += 1;
            if !self.legs.is_local(dst.leg) {
                self.counters.crossed_out += 1;
                self.crossings.push_back(Crossing::Packet(Relayed {
                    dst,
                    producer,
                    kind,
                    seq: *pkt.seq_no,
                    ts: pkt.header.timestamp,
                    marker: pkt.header.marker,
                    payload: pkt.payload.clone(),
                }));
                continue;
            }
            let frame = Frame {
                seq: *pkt.seq_no,
                ts: pkt.header.timestamp,
                marker: pkt.header.marker,
                payload: pkt.payload.clone(),
            };
            self.forward_one(now, producer, kind, frame, dst);
        }
    }

    fn forward_one(
        &mut self,
        now: Instant,
        producer: Producer,
        kind: PacketKind,
        pkt: Frame,
        dst: StreamId,
    ) {
        let Some(leg) = self.legs.get_mut(dst.leg) else {
            return;
        };
        let has_hold_audio = leg
            .hold_audio
            .as_ref()
            .map_or(!self.cfg.hold_audio.is_empty(), |h| !h.0.is_empty());
        let Some(out) = leg.outs.get_mut(dst.index as usize) else {
            return;
        };
        // A packet that crossed from another shard may have been in flight while the route
        // changed: only the stream's current source is heard.
        if let Producer::Leg { leg: from, .. } = producer {
            if out.source != Some(from) {
                self.counters.dropped_unrouted += 1;
                return;
            }
        }
        if out.paced && !out.started {
            self.counters.dropped_not_started += 1;
            return;
        }
        if out.hold.is_some() && has_hold_audio {
            self.counters.dropped_on_hold += 1;
            return;
        }
        if out.dtmf.is_some() {
            out.rewriter.skip(producer);
            self.counters.dropped_during_dtmf += 1;
            return;
        }
        let pt = match kind {
            PacketKind::Opus => leg.opus_pt,
            PacketKind::Tele => match leg.tele_pt {
                Some(pt) => pt,
                None => {
                    out.rewriter.skip(producer);
                    return;
                }
            },
        };
        let Some((seq, ts)) = out.rewriter.forward(now, producer, pkt.seq, pkt.ts) else {
            self.counters.dropped_stale += 1;
            return;
        };
        if kind == PacketKind::Opus {
            out.last_source_at = Some(now);
        }
        let ssrc = out.ssrc;
        let first = std::mem::take(&mut out.announce_start);
        let from_source = std::mem::take(&mut out.announce_source);
        let kind_out = leg.kind;
        let mut api = leg.rtc.direct_api();
        let Some(tx) = api.stream_tx(&ssrc) else {
            return;
        };
        let bytes = pkt.payload.len() as u64;
        tx.write_rtp(RtpWrite::new(pt, seq.into(), ts, now, pkt.payload).marker(pkt.marker));
        leg.rtc.send_written();
        self.counters.rtp_forwarded += 1;
        self.counters.forwarded_packets.add(kind_out, 1);
        self.counters.forwarded_bytes.add(kind_out, bytes);
        if first {
            self.emit(MediaEvent::FirstPacket { stream: dst });
        }
        if from_source {
            if let Producer::Leg { leg: source, .. } = producer {
                self.emit(MediaEvent::SourceFlowing {
                    stream: dst,
                    source,
                });
            }
        }
        self.drain(now, dst.leg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::engine::fixtures::*;
    use crate::media::engine::OPUS_SILENCE;

    fn shard(index: u8, port: u16) -> Engine {
        let mut cfg = engine(vec![port]).cfg;
        cfg.shards = 2;
        Engine::shard(cfg, index).unwrap()
    }

    /// Hands every crossing `from` produced to `to`, returning how many there were.
    fn deliver(now: Instant, from: &mut Engine, to: &mut Engine) -> usize {
        let mut n = 0;
        while let Some(c) = from.poll_crossing() {
            assert_eq!(c.shard(), to.legs.shard as usize, "{c:?}");
            to.handle_crossing(now, c);
            n += 1;
        }
        n
    }

    fn subscribers(e: &Engine, leg: LegId) -> Vec<StreamId> {
        e.legs.get(leg).unwrap().subscribers.clone()
    }

    fn source(e: &Engine, stream: StreamId) -> Option<LegId> {
        e.legs.get(stream.leg).unwrap().outs[stream.index as usize].source
    }

    /// Routes between shards: the destination side is set at once, the source side through a
    /// crossing; a source that closes (or never existed) clears the stream on its shard; a
    /// packet still in flight from a replaced source is dropped and counted, never heard.
    #[test]
    fn routes_between_shards_follow_their_sources_life() {
        let now = Instant::now();
        let mut a = shard(0, 7000);
        let mut b = shard(1, 7001);
        let wa = a.answer_whatsapp(now, META_OFFER).unwrap();
        let agent = b.answer_whatsapp(now, META_OFFER).unwrap();
        assert_eq!((wa.leg.shard(), agent.leg.shard()), (0, 1));
        // Another shard's leg is not this shard's, whatever its slot.
        assert!(a.legs.get(agent.leg).is_none());
        assert!(matches!(
            a.route(agent.streams[0], Some(wa.leg)),
            Err(MediaError::UnknownLeg { .. })
        ));

        let stream = wa.streams[0];
        a.route(stream, Some(agent.leg)).unwrap();
        assert_eq!(source(&a, stream), Some(agent.leg));
        assert_eq!(deliver(now, &mut a, &mut b), 1);
        assert_eq!(subscribers(&b, agent.leg), vec![stream]);

        // Routed away and back: one subscription, in the order the routes were made.
        a.route(stream, None).unwrap();
        a.route(stream, Some(agent.leg)).unwrap();
        assert_eq!(deliver(now, &mut a, &mut b), 2);
        assert_eq!(subscribers(&b, agent.leg), vec![stream]);

        // A packet from a source the stream no longer has is dropped on arrival.
        let stale = Crossing::Packet(Relayed {
            dst: stream,
            producer: Producer::Leg {
                leg: LegId {
                    shard: 1,
                    slot: 99,
                    generation: 0,
                },
                ssrc: 1,
            },
            kind: PacketKind::Opus,
            seq: 1,
            ts: 960,
            marker: false,
            payload: Arc::from(&OPUS_SILENCE[..]),
        });
        a.handle_crossing(now, stale);
        assert_eq!(a.counters().dropped_unrouted, 1);

        // The source closes on its shard: the stream on the other falls back to silence.
        b.remove(agent.leg);
        assert_eq!(deliver(now, &mut b, &mut a), 1);
        assert_eq!(source(&a, stream), None);

        // A route to another shard's leg that does not exist comes back cleared.
        a.route(stream, Some(agent.leg)).unwrap();
        assert_eq!(deliver(now, &mut a, &mut b), 1);
        assert_eq!(deliver(now, &mut b, &mut a), 1);
        assert_eq!(source(&a, stream), None);

        // The destination closes: its source's shard forgets the subscription.
        let agent2 = b
            .answer_whatsapp(now, &offer_from("57.144.125.36"))
            .unwrap();
        a.route(stream, Some(agent2.leg)).unwrap();
        deliver(now, &mut a, &mut b);
        assert_eq!(subscribers(&b, agent2.leg), vec![stream]);
        a.remove(wa.leg);
        assert_eq!(deliver(now, &mut a, &mut b), 1);
        assert!(subscribers(&b, agent2.leg).is_empty());
    }
}
