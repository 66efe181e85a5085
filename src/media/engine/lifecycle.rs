//! A leg's life once answered: filing it in the table, closing it gracefully, failing or
//! discarding it, and removing it with every trace (maps, routes from and to it, pacing).
//!
//! *Owns*: [`Engine::close`], [`Engine::close_all`], the close grace, and the `Failed` and
//! `Closed` events.
//!
//! *Does not touch*: when a leg fails (the timers in `io` decide), or how it was answered.

use std::time::{Duration, Instant};

use tracing::{debug, error, info, warn};

use super::{Engine, FailReason, MediaEvent};
use crate::ids::{LegId, StreamId};
use crate::media::leg::Leg;
use crate::media::MediaError;

/// How long a closing leg may take to flush its goodbye (RTCP BYE, DTLS close_notify).
const CLOSE_GRACE: Duration = Duration::from_secs(2);

impl Engine {
    /// Files a new leg and lets str0m produce what it has to send.
    pub(super) fn install(&mut self, now: Instant, leg: Leg) {
        let (id, kind, socket) = (leg.id, leg.kind, leg.socket);
        self.legs.slots[id.slot as usize].leg = Some(leg);
        self.legs.live += 1;
        info!(leg = %id, kind = kind.name(), port = self.cfg.ports[socket], "leg created");
        self.drain(now, id);
    }

    /// Closes a leg gracefully (RTCP BYE, DTLS close_notify). `Closed` follows once it is gone.
    pub fn close(&mut self, now: Instant, leg: LegId) -> Result<(), MediaError> {
        let l = self
            .legs
            .get_mut(leg)
            .ok_or(MediaError::UnknownLeg { leg })?;
        if !l.connected {
            // Nothing to say goodbye on: no DTLS session, so no close_notify to wait for.
            l.rtc.disconnect();
            self.remove_closed(leg, false);
            return Ok(());
        }
        l.closing = Some(now + CLOSE_GRACE);
        if let Err(e) = l.rtc.close() {
            debug!(%leg, error = %e, "close");
        }
        self.drain(now, leg);
        Ok(())
    }

    /// Closes every leg (shutdown).
    pub fn close_all(&mut self, now: Instant) {
        let ids: Vec<LegId> = self
            .legs
            .slots
            .iter()
            .filter_map(|s| s.leg.as_ref().map(|l| l.id))
            .collect();
        for id in ids {
            let _ = self.close(now, id);
        }
    }

    pub(super) fn fail(&mut self, id: LegId, reason: FailReason) {
        if let Some(leg) = self.legs.get_mut(id) {
            leg.rtc.disconnect();
            warn!(leg = %id, kind = leg.kind.name(), ?reason, "leg failed");
            let by_kind = match reason {
                FailReason::ConnectTimeout => &mut self.counters.failed_connect_timeout,
                FailReason::Silent => &mut self.counters.failed_silent,
                FailReason::Internal => &mut self.counters.failed_internal,
            };
            by_kind.add(leg.kind, 1);
        }
        self.remove(id);
        self.events
            .push_back(MediaEvent::Failed { leg: id, reason });
    }

    pub(super) fn discard(&mut self, id: LegId, why: &'static str) {
        error!(leg = %id, why, "discarding leg after an engine fault");
        self.counters.legs_discarded += 1;
        self.fail(id, FailReason::Internal);
    }

    pub(super) fn remove_closed(&mut self, id: LegId, by_remote: bool) {
        self.remove(id);
        self.events
            .push_back(MediaEvent::Closed { leg: id, by_remote });
        info!(leg = %id, by_remote, "leg closed");
    }

    /// Removes a leg and every trace of it: maps, routes from and to it, pacing.
    pub(super) fn remove(&mut self, id: LegId) {
        let Some(leg) = self.legs.take(id) else {
            return;
        };
        for a in &leg.addrs {
            let key = (leg.socket, *a);
            if self.by_addr.get(&key) == Some(&id) {
                self.by_addr.remove(&key);
            }
        }
        if self.by_ufrag.get(&leg.ufrag) == Some(&id) {
            self.by_ufrag.remove(&leg.ufrag);
        }
        for c in &leg.candidates {
            let key = (leg.socket, *c);
            if self.by_candidate.get(&key) == Some(&id) {
                self.by_candidate.remove(&key);
            }
        }
        for s in &leg.subscribers {
            self.source_gone(*s, id);
        }
        for (i, out) in leg.outs.iter().enumerate() {
            if let Some(src) = out.source {
                let me = StreamId {
                    leg: id,
                    index: i as u8,
                };
                self.unsubscribe(src, me);
            }
        }
        self.paced.retain(|s| s.leg != id);
    }
}
