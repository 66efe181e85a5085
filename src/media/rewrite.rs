//! Sequence-number and timestamp continuity for one outgoing stream.
//!
//! An outgoing stream owns its SSRC (str0m's tx stream), its sequence numbers and its RTP
//! timestamps. Whatever produces its packets — silence, the caller, agent A, agent B, DTMF — the
//! receiver must see one stream with no jump. On every change of producer the stream re-bases:
//! the new producer's next packet continues at the stream's next sequence number, and at the
//! stream's last timestamp plus the wall-clock time since then (in 20 ms frames), so a pause is a
//! pause and not a jump. Within one producer, input gaps are kept, so real loss stays visible to
//! the receiver's jitter buffer and RTCP.

use std::time::{Duration, Instant};

use crate::ids::LegId;

/// RTP timestamp units per 20 ms frame at Opus's 48 kHz clock.
pub const TICKS_PER_FRAME: u32 = 960;
/// One audio frame.
pub const FRAME: Duration = Duration::from_millis(20);

/// A jump in a producer's own sequence numbers larger than this is treated as a new producer
/// (a restarted sender), not as loss.
const MAX_SEQ_JUMP: u64 = 3000;

/// Who produced a packet of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Producer {
    /// Nothing yet.
    Nobody,
    /// The engine's own silence frames.
    Silence,
    /// The engine's own DTMF reports.
    Dtmf,
    /// The engine's hold audio.
    Hold,
    /// A leg's incoming RTP stream, identified by its SSRC (a peer may change SSRC).
    Leg {
        /// The source leg.
        leg: LegId,
        /// The SSRC the source sent with.
        ssrc: u32,
    },
}

/// The rewriting state of one outgoing stream.
#[derive(Debug, Clone)]
pub struct Rewriter {
    next_seq: u64,
    last_ts: u32,
    last_sent_at: Option<Instant>,
    producer: Producer,
    seq_off: u64,
    ts_off: u32,
    base_seq: u64,
}

impl Rewriter {
    /// Starts at the given (random) sequence number and timestamp, as RFC 3550 asks.
    pub fn new(initial_seq: u16, initial_ts: u32) -> Rewriter {
        Rewriter {
            next_seq: u64::from(initial_seq),
            last_ts: initial_ts,
            last_sent_at: None,
            producer: Producer::Nobody,
            seq_off: 0,
            ts_off: 0,
            base_seq: 0,
        }
    }

    /// The timestamp the next own packet would carry if sent at `now`.
    fn next_own_ts(&self, now: Instant) -> u32 {
        self.last_ts
            .wrapping_add(TICKS_PER_FRAME.wrapping_mul(self.frames_since(now)))
    }

    /// Maps a forwarded packet's (extended) sequence number and timestamp into this stream.
    /// Returns `None` for a packet older than the producer's first one here (it belonged to
    /// before the switch and would arrive as a duplicate or a reordering artefact).
    pub fn forward(
        &mut self,
        now: Instant,
        from: Producer,
        in_seq: u64,
        in_ts: u32,
    ) -> Option<(u64, u32)> {
        let mut out_seq = in_seq.wrapping_add(self.seq_off);
        let restarted = from == self.producer
            && (out_seq > self.next_seq.saturating_add(MAX_SEQ_JUMP)
                || out_seq.saturating_add(MAX_SEQ_JUMP) < self.base_seq);
        if from != self.producer || restarted {
            let ts = self.next_own_ts(now);
            self.seq_off = self.next_seq.wrapping_sub(in_seq);
            self.ts_off = ts.wrapping_sub(in_ts);
            self.base_seq = self.next_seq;
            self.producer = from;
            out_seq = self.next_seq;
        }
        if out_seq < self.base_seq {
            return None;
        }
        let out_ts = in_ts.wrapping_add(self.ts_off);
        if out_seq >= self.next_seq {
            self.next_seq = out_seq + 1;
            self.last_ts = out_ts;
            self.last_sent_at = Some(now);
        }
        Some((out_seq, out_ts))
    }

    /// A packet of the current producer was consumed (not sent): close the gap it would leave.
    pub fn skip(&mut self, from: Producer) {
        if from == self.producer {
            self.seq_off = self.seq_off.wrapping_sub(1);
        }
    }

    /// Sequence number and timestamp for a packet the engine makes itself (silence).
    pub fn own(&mut self, now: Instant, producer: Producer) -> (u64, u32) {
        let ts = self.next_own_ts(now);
        self.producer = producer;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.base_seq = self.next_seq;
        self.last_ts = ts;
        self.last_sent_at = Some(now);
        (seq, ts)
    }

    /// Starts a DTMF event: its reports share one timestamp, fixed here.
    pub fn begin_event(&mut self, now: Instant) -> u32 {
        let ts = self.next_own_ts(now);
        self.producer = Producer::Dtmf;
        self.last_ts = ts;
        self.last_sent_at = Some(now);
        ts
    }

    /// Sequence number for one report of the current DTMF event. The event's timestamp and start
    /// time are left alone so that audio after it resumes at start + elapsed time.
    pub fn event_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.base_seq = self.next_seq;
        seq
    }

    fn frames_since(&self, now: Instant) -> u32 {
        let Some(last) = self.last_sent_at else {
            return 1;
        };
        let elapsed = now.saturating_duration_since(last);
        // Round to the nearest frame, at least one: a new packet is always a later frame.
        let frames = (elapsed.as_micros() + FRAME.as_micros() / 2) / FRAME.as_micros();
        frames.clamp(1, u128::from(u32::MAX / TICKS_PER_FRAME)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leg(slot: u32) -> LegId {
        LegId {
            shard: 0,
            slot,
            generation: 0,
        }
    }

    /// Drives a stream through silence → A → B → silence and checks what a receiver would see.
    #[test]
    fn switches_are_seamless_and_wraps_are_harmless() {
        let t0 = Instant::now();
        let mut rw = Rewriter::new(65530, u32::MAX - 5000);
        let mut out: Vec<(u64, u32, Instant)> = vec![];
        let mut t = t0;
        for _ in 0..10 {
            out.push({
                let (s, ts) = rw.own(t, Producer::Silence);
                (s, ts, t)
            });
            t += FRAME;
        }
        let a = Producer::Leg {
            leg: leg(1),
            ssrc: 1,
        };
        let b = Producer::Leg {
            leg: leg(2),
            ssrc: 2,
        };
        // A starts near a u16 wrap in its own numbering: extended numbers keep increasing.
        for i in 0..20u64 {
            let (s, ts) = rw
                .forward(t, a, 65530 + i, 1_000_000 + i as u32 * 960)
                .unwrap();
            out.push((s, ts, t));
            t += FRAME;
        }
        for i in 0..20u64 {
            let (s, ts) = rw
                .forward(
                    t,
                    b,
                    7 + i,
                    (u32::MAX - 960 * 3).wrapping_add(i as u32 * 960),
                )
                .unwrap();
            out.push((s, ts, t));
            t += FRAME;
        }
        t += FRAME * 5; // a real pause before silence takes over
        for _ in 0..5 {
            let (s, ts) = rw.own(t, Producer::Silence);
            out.push((s, ts, t));
            t += FRAME;
        }
        for w in out.windows(2) {
            assert_eq!(w[1].0, w[0].0 + 1, "sequence gap in {w:?}");
            let frames = w[1].2.duration_since(w[0].2).as_millis() as u32 / 20;
            assert_eq!(
                w[1].1.wrapping_sub(w[0].1),
                frames * TICKS_PER_FRAME,
                "timestamp jump in {w:?}"
            );
        }
        assert!(
            out.last().unwrap().0 > 65535,
            "the u16 wrap happened mid-stream"
        );
    }

    #[test]
    fn loss_is_kept_and_stale_packets_are_dropped() {
        let t = Instant::now();
        let mut rw = Rewriter::new(100, 0);
        let a = Producer::Leg {
            leg: leg(1),
            ssrc: 9,
        };
        let (s0, _) = rw.forward(t, a, 50, 0).unwrap();
        let (s1, ts1) = rw.forward(t + FRAME * 3, a, 53, 2880).unwrap();
        assert_eq!(s1 - s0, 3, "a loss of two packets stays a gap of two");
        let (s_late, ts_late) = rw.forward(t + FRAME * 3, a, 52, 1920).unwrap();
        assert_eq!(
            (s1 - s_late, ts1 - ts_late),
            (1, 960),
            "reordered packet keeps its place"
        );
        let b = Producer::Leg {
            leg: leg(2),
            ssrc: 1,
        };
        rw.forward(t + FRAME * 4, b, 10, 0).unwrap();
        assert_eq!(
            rw.forward(t + FRAME * 4, b, 9, 0),
            None,
            "older than the switch"
        );
    }

    #[test]
    fn skipped_packets_leave_no_gap_and_restarts_rebase() {
        let t = Instant::now();
        let mut rw = Rewriter::new(0, 0);
        let a = Producer::Leg {
            leg: leg(1),
            ssrc: 9,
        };
        let (s0, _) = rw.forward(t, a, 10, 0).unwrap();
        rw.skip(a);
        let (s1, ts1) = rw.forward(t + FRAME, a, 12, 960).unwrap();
        assert_eq!(s1, s0 + 1);
        let (s2, ts2) = rw.forward(t + FRAME * 2, a, 50_000, 5).unwrap();
        assert_eq!(s2, s1 + 1, "a huge jump is a restarted sender, not loss");
        assert_eq!(ts2.wrapping_sub(ts1), 960);
    }

    #[test]
    fn dtmf_reports_share_a_timestamp_and_audio_resumes_after_them() {
        let t = Instant::now();
        let mut rw = Rewriter::new(0, 0);
        let (s0, ts0) = rw.own(t, Producer::Silence);
        let ev_ts = rw.begin_event(t + FRAME);
        assert_eq!(ev_ts, ts0 + 960);
        let seqs: Vec<u64> = (0..4).map(|_| rw.event_seq()).collect();
        assert_eq!(seqs, vec![s0 + 1, s0 + 2, s0 + 3, s0 + 4]);
        let (s, ts) = rw.own(t + FRAME * 5, Producer::Silence);
        assert_eq!((s, ts), (s0 + 5, ev_ts + 4 * 960));
    }
}
