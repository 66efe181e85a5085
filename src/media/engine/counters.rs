//! The engine's counters: plain integers, bumped on the per-packet path without a lock or an
//! allocation, read and merged across shards by whoever flushes metrics.
//!
//! *Owns*: [`Counters`] and [`ByLeg`], and adding one shard's counters to another's.
//!
//! *Does not touch*: the `metrics` crate (the driver flushes), legs, or what a count means to
//! the program.

use crate::media::leg::LegKind;

/// A count per kind of leg.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByLeg {
    /// On WhatsApp legs.
    pub whatsapp: u64,
    /// On browser legs.
    pub browser: u64,
    /// On internal legs to other nodes.
    pub trunk: u64,
}

impl ByLeg {
    pub(super) fn add(&mut self, kind: LegKind, n: u64) {
        match kind {
            LegKind::WhatsApp => self.whatsapp += n,
            LegKind::Browser => self.browser += n,
            LegKind::Trunk => self.trunk += n,
        }
    }

    fn merge(&mut self, o: &ByLeg) {
        self.whatsapp += o.whatsapp;
        self.browser += o.browser;
        self.trunk += o.trunk;
    }
}

/// Engine-wide counters, kept as plain integers and read by whoever flushes metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams handed to the engine.
    pub datagrams_in: u64,
    /// Datagrams no leg claimed (stale peers, scanners).
    pub datagrams_unmatched: u64,
    /// Datagrams that are not STUN, DTLS, RTP or RTCP.
    pub datagrams_malformed: u64,
    /// RTP packets written to an outgoing stream from another leg.
    pub rtp_forwarded: u64,
    /// Of those, by the kind of leg they were sent on.
    pub forwarded_packets: ByLeg,
    /// Their RTP payload bytes, by the kind of leg they were sent on.
    pub forwarded_bytes: ByLeg,
    /// Legs failed because ICE and DTLS did not complete in time, by kind.
    pub failed_connect_timeout: ByLeg,
    /// Legs failed because nothing authenticated arrived within the idle timeout, by kind.
    pub failed_silent: ByLeg,
    /// Legs failed because str0m failed or panicked on them, by kind.
    pub failed_internal: ByLeg,
    /// Silence packets written by the pacer.
    pub silence_sent: u64,
    /// Hold-audio packets written by the pacer.
    pub hold_sent: u64,
    /// Packets of a source dropped because its stream was on hold.
    pub dropped_on_hold: u64,
    /// DTMF reports written by the engine.
    pub dtmf_reports_sent: u64,
    /// Incoming RTP with a payload type we did not negotiate.
    pub dropped_unknown_pt: u64,
    /// Packets routed to a WhatsApp stream before it was started (Meta: no media before accept).
    pub dropped_not_started: u64,
    /// Packets older than their producer's switch-over.
    pub dropped_stale: u64,
    /// Packets of a source dropped while the engine sent its own DTMF on that stream.
    pub dropped_during_dtmf: u64,
    /// Packets from a leg that is no longer its stream's source (they crossed from another
    /// shard while the route changed).
    pub dropped_unrouted: u64,
    /// Packets handed to another shard, whose leg is the destination.
    pub crossed_out: u64,
    /// Packets taken from another shard and forwarded here.
    pub crossed_in: u64,
    /// Legs discarded because str0m failed or panicked on them.
    pub legs_discarded: u64,
    /// Times a leg's timer fired and str0m was given the time.
    pub leg_timeouts: u64,
    /// Statistics and DTMF events dropped because `max_pending_events` were already waiting.
    pub events_dropped: u64,
    /// WhatsApp offers refused because every socket already serves a leg with the same remote
    /// address.
    pub refused_no_port: u64,
    /// Offers refused because `max_legs` legs were alive.
    pub refused_too_many_legs: u64,
    /// Browser offers refused for carrying more than `max_browser_streams` m-lines.
    pub refused_too_many_streams: u64,
    /// DTMF send requests refused because the leg's queue was full.
    pub refused_dtmf_queue_full: u64,
    /// STUN messages on a known flow whose integrity did not check (spoofed or stale).
    pub stun_unauthenticated: u64,
}
impl Counters {
    /// Adds another shard's counters to these (the node's counters are the sum of its shards').
    pub fn merge(&mut self, o: &Counters) {
        self.datagrams_in += o.datagrams_in;
        self.datagrams_unmatched += o.datagrams_unmatched;
        self.datagrams_malformed += o.datagrams_malformed;
        self.rtp_forwarded += o.rtp_forwarded;
        self.forwarded_packets.merge(&o.forwarded_packets);
        self.forwarded_bytes.merge(&o.forwarded_bytes);
        self.failed_connect_timeout.merge(&o.failed_connect_timeout);
        self.failed_silent.merge(&o.failed_silent);
        self.failed_internal.merge(&o.failed_internal);
        self.silence_sent += o.silence_sent;
        self.hold_sent += o.hold_sent;
        self.dropped_on_hold += o.dropped_on_hold;
        self.dtmf_reports_sent += o.dtmf_reports_sent;
        self.dropped_unknown_pt += o.dropped_unknown_pt;
        self.dropped_not_started += o.dropped_not_started;
        self.dropped_stale += o.dropped_stale;
        self.dropped_during_dtmf += o.dropped_during_dtmf;
        self.dropped_unrouted += o.dropped_unrouted;
        self.crossed_out += o.crossed_out;
        self.crossed_in += o.crossed_in;
        self.legs_discarded += o.legs_discarded;
        self.leg_timeouts += o.leg_timeouts;
        self.events_dropped += o.events_dropped;
        self.refused_no_port += o.refused_no_port;
        self.refused_too_many_legs += o.refused_too_many_legs;
        self.refused_too_many_streams += o.refused_too_many_streams;
        self.refused_dtmf_queue_full += o.refused_dtmf_queue_full;
        self.stun_unauthenticated += o.stun_unauthenticated;
    }
}
