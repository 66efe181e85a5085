//! SDP text as lines: the one reader behind every textual SDP step in switchboard (the media
//! engine's offer screening and answer edits, Meta's SDP rules, the simulated Meta peer).
//!
//! It splits a description into its session part and its media sections (each `m=` line and
//! the lines after it) and types each line: `m=`, `a=name[:value]`, another `x=value`, or
//! malformed. It understands no semantics beyond that; str0m parses SDP for real.
//!
//! *Invariants*: line endings may be CRLF or LF; whitespace-only lines are skipped; a line is
//! `x=value` with `x` one ASCII letter, anything else is kept as [`Kind::Malformed`] (with its
//! 1-based number) so callers decide; every line borrows the input; nothing panics on any input.
//! A leaf module: it uses nothing else in the crate.
//!
//! One rule lives here because two checkers must share it: [`one_way_or_inconsistent`], what
//! makes an audio offer unanswerable as it stands (direction, payload types and their
//! `rtpmap`/`fmtp` lines).

use std::net::SocketAddr;

/// A parsed description: every line in order, and where each media section starts.
#[derive(Debug, Clone, Default)]
pub struct Sdp<'a> {
    lines: Vec<Line<'a>>,
    /// Per media section: the index of its `m=` line in `lines` and its parsed value.
    sections: Vec<(usize, Media<'a>)>,
}

/// One non-blank line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// 1-based line number in the text (blank lines count).
    pub number: usize,
    /// The whole line, without its line ending.
    pub text: &'a str,
    /// What follows `x=` (the whole line when malformed).
    pub value: &'a str,
    /// What kind of line it is.
    pub kind: Kind<'a>,
}

/// The kinds of line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind<'a> {
    /// `m=…`: starts a media section; its fields are in [`Section::media`].
    Media,
    /// `a=name` or `a=name:value`.
    Attribute(Attribute<'a>),
    /// Any other `x=value` line (`v`, `o`, `s`, `c`, `t`…).
    Other {
        /// The line's type letter.
        key: char,
    },
    /// Not of the form `x=value`.
    Malformed,
}

/// An `a=` line split at its first colon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribute<'a> {
    /// The attribute's name (`fingerprint` in `a=fingerprint:sha-256 …`).
    pub name: &'a str,
    /// What follows the colon, if there is one.
    pub value: Option<&'a str>,
}

/// The fields of an `m=` line: `media port proto format…`. Missing fields are empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Media<'a> {
    /// `audio`, `video`…
    pub kind: &'a str,
    /// The port (text as written).
    pub port: &'a str,
    /// `UDP/TLS/RTP/SAVPF`…
    pub proto: &'a str,
    /// The formats (RTP payload types), in order.
    pub formats: Vec<&'a str>,
}

/// A media section: its `m=` line and the lines up to the next one.
#[derive(Debug, Clone, Copy)]
pub struct Section<'s, 'a> {
    /// The parsed `m=` line.
    pub media: &'s Media<'a>,
    /// The `m=` line itself.
    pub m_line: &'s Line<'a>,
    /// The section's lines after the `m=` line.
    pub lines: &'s [Line<'a>],
}

impl<'a> Sdp<'a> {
    /// Splits `text` into typed lines. Never fails: malformed lines are kept as such.
    pub fn parse(text: &'a str) -> Sdp<'a> {
        let mut sdp = Sdp::default();
        for (i, raw) in text.split('\n').enumerate() {
            let line = raw.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            let number = i + 1;
            let bytes = line.as_bytes();
            // An ASCII first byte is a whole character, so slicing after `x=` is on a boundary.
            if bytes.len() < 2 || !bytes[0].is_ascii_alphabetic() || bytes[1] != b'=' {
                sdp.lines.push(Line {
                    number,
                    text: line,
                    value: line,
                    kind: Kind::Malformed,
                });
                continue;
            }
            let value = &line[2..];
            let kind = match bytes[0] {
                b'm' => {
                    let mut parts = value.split_whitespace();
                    let media = Media {
                        kind: parts.next().unwrap_or_default(),
                        port: parts.next().unwrap_or_default(),
                        proto: parts.next().unwrap_or_default(),
                        formats: parts.collect(),
                    };
                    sdp.sections.push((sdp.lines.len(), media));
                    Kind::Media
                }
                b'a' => Kind::Attribute(match value.split_once(':') {
                    Some((name, v)) => Attribute {
                        name,
                        value: Some(v),
                    },
                    None => Attribute {
                        name: value,
                        value: None,
                    },
                }),
                key => Kind::Other {
                    key: char::from(key),
                },
            };
            sdp.lines.push(Line {
                number,
                text: line,
                value,
                kind,
            });
        }
        sdp
    }

    /// Every line, in order (malformed ones included).
    pub fn lines(&self) -> &[Line<'a>] {
        &self.lines
    }

    /// The session part: the lines before the first `m=` line.
    pub fn session(&self) -> &[Line<'a>] {
        let end = self.sections.first().map_or(self.lines.len(), |s| s.0);
        &self.lines[..end]
    }

    /// The media sections, in order.
    pub fn media(&self) -> impl ExactSizeIterator<Item = Section<'_, 'a>> + '_ {
        self.sections
            .iter()
            .enumerate()
            .map(move |(n, (at, media))| {
                let end = self.sections.get(n + 1).map_or(self.lines.len(), |s| s.0);
                Section {
                    media,
                    m_line: &self.lines[*at],
                    lines: &self.lines[at + 1..end],
                }
            })
    }

    /// The malformed lines, in order.
    pub fn malformed(&self) -> impl Iterator<Item = &Line<'a>> + '_ {
        self.lines.iter().filter(|l| l.kind == Kind::Malformed)
    }

    /// Session-level attributes named `name`.
    pub fn session_attrs<'s>(&'s self, name: &'s str) -> impl Iterator<Item = Attribute<'a>> + 's {
        named(self.session(), name)
    }

    /// Attributes named `name` at session level and in every media section, in order.
    pub fn all_attrs<'s>(&'s self, name: &'s str) -> impl Iterator<Item = Attribute<'a>> + 's {
        named(&self.lines, name)
    }
}

impl<'a> Section<'_, 'a> {
    /// This section's attributes named `name`.
    pub fn attrs<'s>(&'s self, name: &'s str) -> impl Iterator<Item = Attribute<'a>> + 's {
        named(self.lines, name)
    }

    /// This section's first attribute named `name`.
    pub fn attr(&self, name: &str) -> Option<Attribute<'a>> {
        named(self.lines, name).next()
    }

    /// The value of this section's first attribute named `name`.
    pub fn value(&self, name: &str) -> Option<&'a str> {
        self.attr(name).and_then(|a| a.value)
    }
}

impl<'a> Line<'a> {
    /// The attribute, for an `a=` line.
    pub fn attribute(&self) -> Option<Attribute<'a>> {
        match self.kind {
            Kind::Attribute(a) => Some(a),
            _ => None,
        }
    }

    /// Whether this is `a=name…`.
    pub fn is_attr(&self, name: &str) -> bool {
        self.attribute().is_some_and(|a| a.name == name)
    }
}

fn named<'s, 'a: 's>(
    lines: &'s [Line<'a>],
    name: &'s str,
) -> impl Iterator<Item = Attribute<'a>> + 's {
    lines
        .iter()
        .filter_map(Line::attribute)
        .filter(move |a| a.name == name)
}

/// The media directions (RFC 8866 §6.7).
pub const DIRECTIONS: [&str; 4] = ["sendrecv", "sendonly", "recvonly", "inactive"];

impl<'a> Sdp<'a> {
    /// The direction of media section `m`: its own attribute, else the session's, else
    /// `sendrecv` (RFC 8866 §6.7).
    pub fn direction(&self, m: &Section<'_, 'a>) -> &'static str {
        let of = |lines: &[Line<'a>]| {
            DIRECTIONS
                .iter()
                .find(|d| lines.iter().any(|l| l.is_attr(d)))
                .copied()
        };
        of(m.lines)
            .or_else(|| of(self.session()))
            .unwrap_or("sendrecv")
    }
}

/// Why an audio offer's formats or direction cannot be answered as they stand
/// ([`one_way_or_inconsistent`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatProblem {
    /// The offer is not `sendrecv`.
    #[error("direction is {found}; only a two-way (sendrecv) audio offer can carry a call")]
    Direction {
        /// The direction found.
        found: &'static str,
    },
    /// A line other than `a=` after the media section's first `a=` line (RFC 8866 §5 orders
    /// `c=`, `b=`, `k=` before the attributes; str0m stops reading the section there).
    #[error("{line:?} comes after the media section's attributes; i=, c=, b=, k= go before them")]
    LineOrder {
        /// The line (cut to 40 characters).
        line: String,
    },
    /// More than one direction attribute in one place (the session, or the media section).
    #[error("more than one of a=sendrecv, a=sendonly, a=recvonly, a=inactive in one place")]
    Directions,
    /// A format of the `m=` line is not an RTP payload type (0–127), or is listed twice.
    #[error("m= line format {format:?} is not a payload type listed once")]
    BadFormat {
        /// The format (cut to 16 characters).
        format: String,
    },
    /// An `a=rtpmap` or `a=fmtp` names a payload type its `m=` line does not list.
    #[error("a={attr}:{pt} names a payload type the m= line does not list")]
    Unlisted {
        /// `rtpmap` or `fmtp`.
        attr: &'static str,
        /// The payload type (cut to 16 characters).
        pt: String,
    },
    /// An `a=rtpmap` is not `<payload type> <encoding>/<clock rate>[/<channels>]`.
    #[error("a=rtpmap:{value:?} is not <payload type> <encoding>/<clock rate>[/<channels>]")]
    BadRtpmap {
        /// The value (cut to 40 characters).
        value: String,
    },
    /// A payload type without a static meaning (35 and up, RFC 3551 §6) listed with no
    /// `a=rtpmap` to say what it is.
    #[error("payload type {pt} is listed without an a=rtpmap")]
    NoRtpmap {
        /// The payload type.
        pt: u8,
    },
    /// Two `a=rtpmap` (or two `a=fmtp`) lines for one payload type.
    #[error("payload type {pt} has more than one a=rtpmap or a=fmtp")]
    DuplicateRtpmap {
        /// The payload type.
        pt: u8,
    },
    /// A telephone-event format's `a=fmtp` is not an event range `0-N` (RFC 4733 §2.4.1).
    #[error("a=fmtp:{pt} {params:?} is not a telephone-event range such as 0-15 (RFC 4733)")]
    BadEventList {
        /// The payload type.
        pt: u8,
        /// The parameters (cut to 40 characters).
        params: String,
    },
}

/// An `a=rtpmap` value: `<payload type> <encoding>/<clock rate>[/<channels>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpMap<'a> {
    /// The payload type (0–127).
    pub pt: u8,
    /// The encoding name as written (`opus`, `telephone-event`).
    pub encoding: &'a str,
    /// The clock rate.
    pub clock_rate: u32,
    /// The channels, if given.
    pub channels: Option<u8>,
}

/// Parses an `a=rtpmap` value; `None` when it is not of the form RFC 8866 §6.6 gives.
pub fn rtpmap(value: &str) -> Option<RtpMap<'_>> {
    let (pt, rest) = value.split_once(' ')?;
    let pt = payload_type(pt)?;
    let mut parts = rest.trim().split('/');
    let encoding = parts.next().filter(|e| {
        !e.is_empty()
            && e.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    })?;
    let clock_rate = parts.next().and_then(|c| digits(c)?.parse().ok())?;
    let channels = match parts.next() {
        Some(c) => Some(digits(c)?.parse().ok()?),
        None => None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(RtpMap {
        pt,
        encoding,
        clock_rate,
        channels,
    })
}

fn digits(s: &str) -> Option<&str> {
    (!s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit())).then_some(s)
}

fn payload_type(s: &str) -> Option<u8> {
    digits(s)?.parse().ok().filter(|pt| *pt < 128)
}

/// Whether `params` is a telephone-event list of the one form str0m answers: `0-N`, events 0
/// to N (`0-15`: the DTMF digits; RFC 4733 §2.4.1 allows longer lists, which str0m would
/// decline, silently dropping DTMF from the answer).
pub fn is_event_range(params: &str) -> bool {
    params
        .trim()
        .strip_prefix("0-")
        .and_then(digits)
        .is_some_and(|n| n.parse::<u8>().is_ok())
}

fn cut(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// The first reason an audio offer's section `m` cannot be answered consistently, if any: a
/// line out of order (str0m would stop reading there); not two-way (or more than one
/// direction); an `m=` format that is no payload type, is listed twice, or (35 and up) has no
/// `a=rtpmap`; an `a=rtpmap`/`a=fmtp` for a payload type the `m=` line does not list (an answerer
/// could pick it, and the answer would then list what was never offered); a garbled or
/// duplicated `a=rtpmap` or `a=fmtp`; a telephone-event `a=fmtp` other than `0-N` (str0m
/// declines it, dropping DTMF from the answer). Both the engine's screening of Meta's offers and Meta's offer rules ask this
/// one question, so they cannot disagree.
pub fn one_way_or_inconsistent(sdp: &Sdp<'_>, m: &Section<'_, '_>) -> Option<FormatProblem> {
    let first_attr = m.lines.iter().position(|l| l.attribute().is_some());
    if let Some(late) =
        first_attr.and_then(|at| m.lines[at..].iter().find(|l| l.attribute().is_none()))
    {
        return Some(FormatProblem::LineOrder {
            line: cut(late.text, 40),
        });
    }
    let count = |lines: &[Line<'_>]| {
        lines
            .iter()
            .filter(|l| DIRECTIONS.iter().any(|d| l.is_attr(d)))
            .count()
    };
    if count(m.lines) > 1 || count(sdp.session()) > 1 {
        return Some(FormatProblem::Directions);
    }
    let direction = sdp.direction(m);
    if direction != "sendrecv" {
        return Some(FormatProblem::Direction { found: direction });
    }
    for (n, f) in m.media.formats.iter().enumerate() {
        if payload_type(f).is_none() || m.media.formats[..n].contains(f) {
            return Some(FormatProblem::BadFormat { format: cut(f, 16) });
        }
    }
    let listed = |pt: &str| m.media.formats.contains(&pt);
    let mut mapped: Vec<RtpMap> = vec![];
    for a in m.attrs("rtpmap") {
        let value = a.value.unwrap_or_default();
        let pt = value.split(' ').next().unwrap_or_default();
        if !listed(pt) {
            return Some(FormatProblem::Unlisted {
                attr: "rtpmap",
                pt: cut(pt, 16),
            });
        }
        let Some(map) = rtpmap(value) else {
            return Some(FormatProblem::BadRtpmap {
                value: cut(value, 40),
            });
        };
        if mapped.iter().any(|other| other.pt == map.pt) {
            return Some(FormatProblem::DuplicateRtpmap { pt: map.pt });
        }
        mapped.push(map);
    }
    let unmapped = m
        .media
        .formats
        .iter()
        .filter_map(|f| payload_type(f))
        .find(|pt| *pt >= 35 && !mapped.iter().any(|r| r.pt == *pt));
    if let Some(pt) = unmapped {
        return Some(FormatProblem::NoRtpmap { pt });
    }
    let mut with_fmtp: Vec<&str> = vec![];
    for a in m.attrs("fmtp") {
        let value = a.value.unwrap_or_default();
        let (pt, params) = value.split_once(' ').unwrap_or((value, ""));
        if with_fmtp.contains(&pt) {
            return Some(FormatProblem::DuplicateRtpmap {
                pt: payload_type(pt).unwrap_or_default(),
            });
        }
        with_fmtp.push(pt);
        if !listed(pt) {
            return Some(FormatProblem::Unlisted {
                attr: "fmtp",
                pt: cut(pt, 16),
            });
        }
        let event = mapped
            .iter()
            .find(|r| r.pt.to_string() == pt)
            .filter(|r| r.encoding.eq_ignore_ascii_case("telephone-event"));
        if let Some(r) = event {
            if !is_event_range(params) {
                return Some(FormatProblem::BadEventList {
                    pt: r.pt,
                    params: cut(params, 40),
                });
            }
        }
    }
    None
}

/// `foundation component transport priority address port typ …` → the address, for UDP.
pub fn candidate_addr(c: &str) -> Option<SocketAddr> {
    let mut f = c.split_whitespace();
    let (_foundation, _component) = (f.next()?, f.next()?);
    if !f.next()?.eq_ignore_ascii_case("udp") {
        return None;
    }
    let _priority = f.next()?;
    let ip = f.next()?.parse().ok()?;
    let port = f.next()?.parse().ok()?;
    Some(SocketAddr::new(ip, port))
}

/// Every UDP candidate address of a description, in order (the answer's addresses, for a peer
/// or a test).
pub fn candidate_addrs(text: &str) -> Vec<SocketAddr> {
    Sdp::parse(text)
        .all_attrs("candidate")
        .filter_map(|a| a.value.and_then(candidate_addr))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const META_OFFER: &str = include_str!("../tests/fixtures/meta_offer.sdp");

    #[test]
    fn metas_offer_splits_into_session_and_one_audio_section() {
        let sdp = Sdp::parse(META_OFFER);
        assert_eq!(sdp.malformed().count(), 0);
        assert_eq!(sdp.lines().len(), 27);
        assert_eq!(sdp.session().len(), 7);
        assert_eq!(
            sdp.session()[0].kind,
            Kind::Other { key: 'v' },
            "{:?}",
            sdp.session()[0]
        );
        assert_eq!(sdp.session_attrs("ice-lite").count(), 1);
        let group = sdp.session_attrs("group").next().unwrap();
        assert_eq!(group.value, Some("BUNDLE audio"));
        let sections: Vec<_> = sdp.media().collect();
        assert_eq!(sections.len(), 1);
        let audio = sections[0];
        assert_eq!(
            *audio.media,
            Media {
                kind: "audio",
                port: "3484",
                proto: "UDP/TLS/RTP/SAVPF",
                formats: vec!["111", "126"],
            }
        );
        assert_eq!(audio.m_line.number, 8);
        assert_eq!(audio.lines.len(), 19);
        assert_eq!(audio.value("mid"), Some("audio"));
        assert_eq!(audio.attrs("candidate").count(), 2);
        assert_eq!(audio.attr("rtcp-mux").unwrap().value, None);
        assert_eq!(sdp.all_attrs("fingerprint").count(), 1);
        let msid = sdp.session_attrs("msid-semantic").next().unwrap();
        assert_eq!(
            msid.value,
            Some(" WMS 7dc1f8d4-d804-48bf-af97-8c6fe9973828")
        );
        let cand = audio.lines.iter().find(|l| l.is_attr("candidate")).unwrap();
        assert!(cand.value.starts_with("candidate:2776204705 1 udp"));
        assert!(cand.text.starts_with("a=candidate:"));
    }

    #[test]
    fn line_endings_blank_lines_and_numbers() {
        let sdp = Sdp::parse("v=0\n\n  \r\na=x\r\r\nm=audio\nnot a line\n=\né=1\n1=2\na=");
        let kinds: Vec<_> = sdp.lines().iter().map(|l| (l.number, l.kind)).collect();
        let attr = |name| Kind::Attribute(Attribute { name, value: None });
        assert_eq!(
            kinds,
            vec![
                (1, Kind::Other { key: 'v' }),
                (4, attr("x")),
                (5, Kind::Media),
                (6, Kind::Malformed),
                (7, Kind::Malformed),
                (8, Kind::Malformed),
                (9, Kind::Malformed),
                (10, attr("")),
            ]
        );
        let m: Vec<_> = sdp.media().collect();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].media.kind, "audio");
        assert_eq!(m[0].media.proto, "");
        assert_eq!(m[0].lines.len(), 5);
        assert_eq!(sdp.session().len(), 2);
    }

    #[test]
    fn what_makes_an_audio_offer_unanswerable_as_it_stands() {
        let problem = |from: &str, to: &str| {
            assert!(META_OFFER.contains(from), "{from}");
            let text = META_OFFER.replace(from, to);
            let sdp = Sdp::parse(&text);
            let m = sdp.media().next().unwrap();
            one_way_or_inconsistent(&sdp, &m)
        };
        assert_eq!(problem("a=mid:audio", "a=mid:audio"), None);
        let rtcp_mux = "a=rtcp-mux\r\n";
        for (from, to, expected) in [
            (
                "a=sendrecv",
                "a=recvonly",
                FormatProblem::Direction { found: "recvonly" },
            ),
            (
                "a=sendrecv",
                "a=sendrecv\r\na=inactive",
                FormatProblem::Directions,
            ),
            (
                rtcp_mux,
                "a=rtcp-mux\r\nb=AS:64\r\n",
                FormatProblem::LineOrder {
                    line: "b=AS:64".into(),
                },
            ),
            (
                "111 126",
                "111 126 111",
                FormatProblem::BadFormat {
                    format: "111".into(),
                },
            ),
            (
                "111 126",
                "111 126 x",
                FormatProblem::BadFormat { format: "x".into() },
            ),
            ("111 126", "111 126 96", FormatProblem::NoRtpmap { pt: 96 }),
            (
                rtcp_mux,
                "a=rtcp-mux\r\na=rtpmap:110 opus/48000/2\r\n",
                FormatProblem::Unlisted {
                    attr: "rtpmap",
                    pt: "110".into(),
                },
            ),
            (
                "telephone-event/8000",
                "telephone-event",
                FormatProblem::BadRtpmap {
                    value: "126 telephone-event".into(),
                },
            ),
            (
                rtcp_mux,
                "a=rtcp-mux\r\na=rtpmap:111 PCMU/8000\r\n",
                FormatProblem::DuplicateRtpmap { pt: 111 },
            ),
            (
                rtcp_mux,
                "a=rtcp-mux\r\na=fmtp:126 0z16\r\n",
                FormatProblem::BadEventList {
                    pt: 126,
                    params: "0z16".into(),
                },
            ),
        ] {
            assert_eq!(problem(from, to), Some(expected), "{to}");
        }
        assert_eq!(problem(rtcp_mux, "a=rtcp-mux\r\na=fmtp:126 0-15\r\n"), None);
        // No direction at all is sendrecv.
        assert_eq!(problem("a=sendrecv\r\n", ""), None);
        assert!(is_event_range("0-16") && !is_event_range("0-15,66") && !is_event_range("0-256"));
    }

    #[test]
    fn junk_never_panics() {
        for junk in [
            "",
            "=",
            "m=",
            "a=:",
            "\u{0}\r\r\n",
            "é",
            "aé",
            "a=é:é",
            "m=\u{0} é",
        ] {
            let sdp = Sdp::parse(junk);
            let _ = (
                sdp.session().len(),
                sdp.media().count(),
                sdp.malformed().count(),
            );
        }
        let mut bytes = META_OFFER.as_bytes().to_vec();
        for i in 0..bytes.len() {
            bytes[i] = bytes[i].wrapping_mul(31).wrapping_add(i as u8);
            let text = String::from_utf8_lossy(&bytes[..i]);
            let sdp = Sdp::parse(&text);
            let _ = sdp.media().map(|s| s.lines.len()).sum::<usize>();
        }
    }
}
