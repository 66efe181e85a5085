//! RFC 4733 telephone-events: the 4-byte report, the receiver that turns a stream of reports into
//! one event per digit, and the sender's schedule.
//!
//! Written here rather than taken from str0m because str0m marks its parser as an unversioned API
//! and its frame-mode sender refuses an 8 kHz event next to 48 kHz Opus, which is exactly Meta's
//! combination (reference §6, str0m notes §4).

use std::time::Duration;

/// The telephone-event clock rate Meta supports (reference §5 rule 12).
pub const CLOCK_RATE: u32 = 8000;

/// One 4-byte event report (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Event code: 0-9 digits, 10 `*`, 11 `#`, 12-15 `A`-`D`.
    pub event: u8,
    /// Set on the last reports of an event.
    pub end: bool,
    /// Tone power in -dBm0.
    pub volume: u8,
    /// Duration so far, in units of the 8 kHz clock.
    pub duration: u16,
}

impl Report {
    /// Reads the first report of a payload; `None` if shorter than four bytes.
    pub fn parse(payload: &[u8]) -> Option<Report> {
        let [event, flags, d0, d1, ..] = *payload else {
            return None;
        };
        Some(Report {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3f,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }

    /// The four wire bytes.
    pub fn to_bytes(self) -> [u8; 4] {
        let [d0, d1] = self.duration.to_be_bytes();
        [
            self.event,
            if self.end { 0x80 } else { 0 } | (self.volume & 0x3f),
            d0,
            d1,
        ]
    }
}

/// The character for an event code, if it is a DTMF digit.
pub fn digit_char(event: u8) -> Option<char> {
    Some(match event {
        0..=9 => (b'0' + event) as char,
        10 => '*',
        11 => '#',
        12..=15 => (b'A' + event - 12) as char,
        _ => return None,
    })
}

/// The event code for a DTMF character (case-insensitive letters).
pub fn digit_code(c: char) -> Option<u8> {
    Some(match c {
        '0'..='9' => c as u8 - b'0',
        '*' => 10,
        '#' => 11,
        'A'..='D' => c as u8 - b'A' + 12,
        'a'..='d' => c as u8 - b'a' + 12,
        _ => return None,
    })
}

/// Converts a duration in 8 kHz units.
pub fn units_to_duration(units: u16) -> Duration {
    Duration::from_micros(u64::from(units) * 1_000_000 / u64::from(CLOCK_RATE))
}

/// A digit seen on the wire, reported once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detected {
    /// The digit.
    pub digit: char,
    /// How long the sender says it lasted.
    pub duration: Duration,
}

/// Turns the redundant reports of RFC 4733 (updates, then usually three `end` copies) into one
/// detection per digit. Events are told apart by their RTP timestamp, which all reports of one
/// event share. If every `end` report of an event is lost, the event is still reported when the
/// next one begins.
#[derive(Debug, Default)]
pub struct Detector {
    current: Option<Current>,
}

#[derive(Debug)]
struct Current {
    ts: u32,
    event: u8,
    duration: u16,
    reported: bool,
}

impl Detector {
    /// Feeds one report with its packet's RTP timestamp; returns at most two detections (an
    /// unfinished previous event and this one) through `out`.
    pub fn handle(&mut self, ts: u32, report: Report, mut out: impl FnMut(Detected)) {
        match &mut self.current {
            Some(cur) if cur.ts == ts => {
                cur.duration = cur.duration.max(report.duration);
                if report.end && !cur.reported {
                    cur.reported = true;
                    if let Some(d) = detected(cur.event, cur.duration) {
                        out(d);
                    }
                }
            }
            prev => {
                if let Some(p) = prev.take().filter(|p| !p.reported) {
                    if let Some(d) = detected(p.event, p.duration) {
                        out(d);
                    }
                }
                let reported = report.end;
                if reported {
                    if let Some(d) = detected(report.event, report.duration) {
                        out(d);
                    }
                }
                *prev = Some(Current {
                    ts,
                    event: report.event,
                    duration: report.duration,
                    reported,
                });
            }
        }
    }
}

fn detected(event: u8, duration: u16) -> Option<Detected> {
    Some(Detected {
        digit: digit_char(event)?,
        duration: units_to_duration(duration),
    })
}

/// How many redundant `end` reports a sender transmits (RFC 4733 §2.5.1.4 recommends three).
pub const END_REPEATS: u8 = 3;

/// The sending side of one digit, advanced once per 20 ms media tick.
#[derive(Debug, Clone)]
pub struct Sender {
    event: u8,
    total: u16,
    elapsed: u16,
    ends_sent: u8,
    /// RTP timestamp shared by every report of this event.
    pub ts: u32,
}

/// Units of the 8 kHz clock per 20 ms tick.
const UNITS_PER_TICK: u16 = 160;

impl Sender {
    /// A digit lasting `duration` (clamped to 40 ms ..= 5 s) starting at RTP timestamp `ts`.
    pub fn new(event: u8, duration: Duration, ts: u32) -> Sender {
        let ms = duration.as_millis().clamp(40, 5000) as u32;
        Sender {
            event,
            total: (ms * CLOCK_RATE / 1000) as u16,
            elapsed: 0,
            ends_sent: 0,
            ts,
        }
    }

    /// The next report to send and whether it is the first (RTP marker), or `None` when done.
    pub fn next_report(&mut self) -> Option<(Report, bool)> {
        if self.ends_sent >= END_REPEATS {
            return None;
        }
        let first = self.elapsed == 0;
        self.elapsed = self.elapsed.saturating_add(UNITS_PER_TICK).min(self.total);
        let end = self.elapsed >= self.total;
        if end {
            self.ends_sent += 1;
        }
        Some((
            Report {
                event: self.event,
                end,
                volume: 10,
                duration: self.elapsed,
            },
            first,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_round_trips() {
        let r = Report {
            event: 11,
            end: true,
            volume: 10,
            duration: 800,
        };
        assert_eq!(Report::parse(&r.to_bytes()), Some(r));
        assert_eq!(Report::parse(&[1, 2, 3]), None);
    }

    #[test]
    fn digits_map_both_ways() {
        for c in "0123456789*#ABCD".chars() {
            assert_eq!(digit_char(digit_code(c).unwrap()), Some(c));
        }
        assert_eq!(digit_code('x'), None);
        assert_eq!(digit_char(16), None);
    }

    #[test]
    fn sender_then_detector_give_one_digit() {
        let mut s = Sender::new(5, Duration::from_millis(100), 4242);
        let mut reports = vec![];
        while let Some((r, first)) = s.next_report() {
            reports.push((r, first));
        }
        // 100 ms = 5 ticks, the last of which is the first end; two more ends follow.
        assert_eq!(reports.len(), 7);
        assert!(reports[0].1 && !reports[1].1);
        assert_eq!(reports.iter().filter(|(r, _)| r.end).count(), 3);
        let mut d = Detector::default();
        let mut seen = vec![];
        for (r, _) in &reports {
            d.handle(s.ts, *r, |x| seen.push(x));
        }
        assert_eq!(
            seen,
            vec![Detected {
                digit: '5',
                duration: Duration::from_millis(100)
            }]
        );
    }

    #[test]
    fn lost_ends_are_reported_when_the_next_digit_starts() {
        let mut d = Detector::default();
        let mut seen = vec![];
        let upd = |event, duration| Report {
            event,
            end: false,
            volume: 10,
            duration,
        };
        d.handle(100, upd(1, 160), |x| seen.push(x.digit));
        d.handle(100, upd(1, 320), |x| seen.push(x.digit));
        d.handle(900, upd(2, 160), |x| seen.push(x.digit));
        d.handle(
            900,
            Report {
                end: true,
                ..upd(2, 480)
            },
            |x| seen.push(x.digit),
        );
        d.handle(
            900,
            Report {
                end: true,
                ..upd(2, 480)
            },
            |x| seen.push(x.digit),
        );
        assert_eq!(seen, vec!['1', '2']);
    }
}
