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
