//! What the engine sends of its own on a WhatsApp stream: from `start_sending` on, a packet every
//! 20 ms whatever the source does — its own DTMF first, then hold audio or silence wherever the
//! source has gone quiet (Meta ends calls that receive no media: reference §6).
//!
//! *Owns*: [`Engine::start_sending`], [`Engine::hold`], [`Engine::send_dtmf`] and the 20 ms
//! pacer over the started streams.
//!
//! *Does not touch*: routes and forwarded packets (`forward`); the per-stream choice of what to
//! send next is the stream's own (`media::leg`).

use std::time::{Duration, Instant};

use tracing::debug;

use super::{Engine, MediaEvent};
use crate::ids::{LegId, StreamId};
use crate::media::dtmf;
use crate::media::leg::{LegKind, Paced};
use crate::media::rewrite::FRAME;
use crate::media::{HoldAudio, MediaError};

impl Engine {
    /// Plays hold audio on a WhatsApp stream in place of its source (or stops). Before
    /// [`Engine::start_sending`] nothing is sent either way (Meta: no media before accept).
    pub fn hold(&mut self, stream: StreamId, on: bool) -> Result<(), MediaError> {
        let leg = self
            .legs
            .get_mut(stream.leg)
            .ok_or(MediaError::UnknownLeg { leg: stream.leg })?;
        if leg.kind != LegKind::WhatsApp {
            return Err(MediaError::WrongLegKind {
                leg: stream.leg,
                expected: "whatsapp",
            });
        }
        let out = leg
            .outs
            .get_mut(stream.index as usize)
            .ok_or(MediaError::UnknownStream { stream })?;
        match (on, out.hold) {
            (true, None) => out.hold = Some(0),
            (false, Some(_)) => {
                out.hold = None;
                // The source (or silence) takes over at the next packet.
                out.last_source_at = None;
            }
            _ => {}
        }
        debug!(%stream, on, "hold");
        Ok(())
    }

    /// The hold audio `leg` plays from now on, in place of the engine's (an account's own).
    pub fn set_hold_audio(&mut self, leg: LegId, audio: HoldAudio) -> Result<(), MediaError> {
        let l = self
            .legs
            .get_mut(leg)
            .ok_or(MediaError::UnknownLeg { leg })?;
        if l.kind != LegKind::WhatsApp {
            return Err(MediaError::WrongLegKind {
                leg,
                expected: "whatsapp",
            });
        }
        debug!(%leg, packets = audio.0.len(), "hold audio of its own");
        l.hold_audio = Some(audio);
        Ok(())
    }

    /// Starts the WhatsApp leg's outgoing stream: from now on it sends a packet every 20 ms for
    /// the life of the leg. Call it when `accept` has been answered 200 OK (reference §6).
    pub fn start_sending(&mut self, now: Instant, leg: LegId) -> Result<(), MediaError> {
        let l = self
            .legs
            .get_mut(leg)
            .ok_or(MediaError::UnknownLeg { leg })?;
        if l.kind != LegKind::WhatsApp {
            return Err(MediaError::WrongLegKind {
                leg,
                expected: "whatsapp",
            });
        }
        for (i, out) in l.outs.iter_mut().enumerate() {
            if !out.started {
                out.started = true;
                out.announce_start = true;
                self.paced.push(StreamId {
                    leg,
                    index: i as u8,
                });
            }
        }
        // The first packet goes out now, not a tick later.
        self.next_tick = Some(self.next_tick.map_or(now, |t| t.min(now)));
        self.handle_timeout(now);
        Ok(())
    }

    /// Queues DTMF digits to send on the leg's first outgoing stream, on its negotiated
    /// telephone-event/8000 payload type, each lasting `duration`.
    pub fn send_dtmf(
        &mut self,
        leg: LegId,
        digits: &str,
        duration: Duration,
    ) -> Result<(), MediaError> {
        let codes = digits
            .chars()
            .map(|c| dtmf::digit_code(c).ok_or(MediaError::InvalidDigit { digit: c }))
            .collect::<Result<Vec<u8>, _>>()?;
        let l = self
            .legs
            .get_mut(leg)
            .ok_or(MediaError::UnknownLeg { leg })?;
        if l.tele_pt.is_none() {
            return Err(MediaError::NoTelephoneEvent { leg });
        }
        if l.kind != LegKind::WhatsApp {
            return Err(MediaError::WrongLegKind {
                leg,
                expected: "whatsapp",
            });
        }
        let out = l
            .outs
            .first_mut()
            .ok_or(MediaError::NoTelephoneEvent { leg })?;
        if out.dtmf_queue.len() + codes.len() > self.cfg.limits.max_dtmf_queue {
            self.counters.refused_dtmf_queue_full += 1;
            return Err(MediaError::DtmfQueueFull {
                leg,
                limit: self.cfg.limits.max_dtmf_queue,
            });
        }
        out.dtmf_queue
            .extend(codes.into_iter().map(|c| (c, duration)));
        Ok(())
    }

    /// The 20 ms pacer of started WhatsApp streams: own DTMF first, then silence wherever the
    /// source has gone quiet (or there is none).
    pub(super) fn tick(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.paced.len() {
            let sid = self.paced[i];
            let Some(leg) = self.legs.get_mut(sid.leg) else {
                self.paced.swap_remove(i);
                continue;
            };
            i += 1;
            if !leg.connected {
                continue;
            }
            let (opus_pt, tele_pt) = (leg.opus_pt, leg.tele_pt);
            let hold = leg
                .hold_audio
                .as_ref()
                .map_or(&self.cfg.hold_audio, |h| &h.0);
            let Some(out) = leg.outs.get_mut(sid.index as usize) else {
                continue;
            };
            let packet = out.pace(now, opus_pt, tele_pt, &self.silence, hold);
            match &packet {
                Some((_, Paced::Dtmf)) => self.counters.dtmf_reports_sent += 1,
                Some((_, Paced::Silence)) => self.counters.silence_sent += 1,
                Some((_, Paced::Hold)) => self.counters.hold_sent += 1,
                None => {}
            }
            let ssrc = out.ssrc;
            if let Some((packet, _)) = packet {
                let first = std::mem::take(&mut out.announce_start);
                if let Some(tx) = leg.rtc.direct_api().stream_tx(&ssrc) {
                    tx.write_rtp(packet);
                    leg.rtc.send_written();
                }
                if first {
                    self.emit(MediaEvent::FirstPacket { stream: sid });
                }
                self.drain(now, sid.leg);
            }
        }
        self.next_tick = if self.paced.is_empty() {
            None
        } else {
            let next = self.next_tick.unwrap_or(now) + FRAME;
            // After a stall, resume the grid from now rather than bursting to catch up.
            Some(if next <= now { now + FRAME } else { next })
        };
    }
}
