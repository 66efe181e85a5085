//! Meta's SDP rules (reference §5) as a checker: [`check_answer`] for our answer to Meta's offer,
//! [`check_offer`] for Meta-style offers. Used by the fake Graph API and by other modules' tests.
//!
//! The two agree: an offer [`check_offer`] takes is one the media engine answers in a way
//! [`check_answer`] takes (a property test in `tests/media_answer_rules.rs` holds them to it).
//! In particular an offer must be two-way (Meta's are `sendrecv`; a one-way offer would need a
//! one-way answer, which Meta's rules refuse) and its `a=rtpmap`/`a=fmtp` lines must agree
//! with its `m=` line.
//!
//! The lines come from [`crate::sdp`] (forgiving: CRLF or LF, blank lines ignored; each malformed
//! line is one [`SdpViolation::Malformed`]); nothing here panics on any input. It understands
//! only what the rules need.

use std::collections::BTreeSet;
use std::fmt;

use crate::sdp::{one_way_or_inconsistent, Attribute, FormatProblem, Sdp, Section};

/// One broken rule. `Display` gives a sentence suitable for Graph's `error_data.details`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpViolation {
    /// A line is not of the form `x=value`.
    #[error("line {line_no} is not an SDP line: {line:?}")]
    Malformed {
        /// 1-based line number.
        line_no: usize,
        /// The line (truncated to 80 chars).
        line: String,
    },
    /// The answer declares `a=ice-lite`; we must be a full ICE agent.
    #[error("answer declares a=ice-lite; the business side must be a full ICE agent")]
    IceLite,
    /// The offer lacks `a=ice-lite` (Meta's offers are always ice-lite).
    #[error("offer does not declare a=ice-lite")]
    NotIceLite,
    /// `a=ice-ufrag` missing.
    #[error("a=ice-ufrag is missing")]
    MissingIceUfrag,
    /// `a=ice-pwd` missing.
    #[error("a=ice-pwd is missing")]
    MissingIcePwd,
    /// Not exactly one `a=fingerprint`.
    #[error("expected exactly one a=fingerprint, found {count}")]
    FingerprintCount {
        /// How many were found.
        count: usize,
    },
    /// The fingerprint is not sha-256.
    #[error("fingerprint hash must be sha-256, found {algorithm:?}")]
    FingerprintAlgorithm {
        /// The hash function named.
        algorithm: String,
    },
    /// The sha-256 fingerprint is not 32 colon-separated hex bytes.
    #[error("fingerprint {value:?} is not 32 colon-separated hex bytes")]
    FingerprintMalformed {
        /// The fingerprint value.
        value: String,
    },
    /// `a=setup` is not what the rules require.
    #[error("a=setup must be {expected}, found {found:?}")]
    Setup {
        /// What is required.
        expected: &'static str,
        /// What was found (`None`: absent).
        found: Option<String>,
    },
    /// Not exactly one m-line.
    #[error("expected exactly one m= line, found {count}")]
    MediaCount {
        /// How many were found.
        count: usize,
    },
    /// The m-line is not audio.
    #[error("m= line must be audio, found {media:?}")]
    NotAudio {
        /// The media type.
        media: String,
    },
    /// The m-line protocol is not UDP/TLS/RTP/SAVPF.
    #[error("m= line protocol must be UDP/TLS/RTP/SAVPF, found {proto:?}")]
    Protocol {
        /// The protocol found.
        proto: String,
    },
    /// `a=mid` missing or not the offer's.
    #[error("a=mid must be {expected:?} (the offer's), found {found:?}")]
    MidMismatch {
        /// The offer's mid.
        expected: String,
        /// The answer's mid.
        found: Option<String>,
    },
    /// `a=group:BUNDLE` missing or not naming the mid.
    #[error("a=group:BUNDLE must name mid {mid:?}")]
    BundleMissingMid {
        /// The mid that must be bundled.
        mid: String,
    },
    /// A payload type in the answer's m-line was not offered.
    #[error("payload type {pt} was not in the offer")]
    PayloadNotOffered {
        /// The payload type.
        pt: String,
    },
    /// Opus is missing or on a payload type the offer did not give it.
    #[error("opus/48000/2 must be answered on the offer's payload type {pt}")]
    OpusMissing {
        /// The offer's Opus payload type (`?` if the offer had none).
        pt: String,
    },
    /// telephone-event/8000 was offered but not answered on the same payload type.
    #[error("telephone-event/8000 must be answered on the offer's payload type {pt}")]
    TelephoneEventMissing {
        /// The offer's telephone-event payload type.
        pt: String,
    },
    /// `a=ptime` is not 20.
    #[error("a=ptime must be 20, found {found:?}")]
    Ptime {
        /// What was found (`None`: absent).
        found: Option<String>,
    },
    /// `a=rtcp-mux` missing.
    #[error("a=rtcp-mux is missing")]
    RtcpMuxMissing,
    /// Direction is not sendrecv.
    #[error("direction must be sendrecv, found {found}")]
    Direction {
        /// The direction attribute found.
        found: String,
    },
    /// Not exactly one distinct SSRC.
    #[error("expected exactly one distinct SSRC in a=ssrc lines, found {count}")]
    SsrcCount {
        /// How many distinct SSRCs.
        count: usize,
    },
    /// No UDP candidate.
    #[error("no a=candidate with transport UDP")]
    NoUdpCandidate,
    /// The offer is one-way, or its `a=rtpmap`/`a=fmtp` lines disagree with its `m=` line, so
    /// no answer could keep the rules above (the media engine refuses the same offers).
    #[error("{0}")]
    Formats(FormatProblem),
}

/// What a Meta-style offer carries that an answerer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferSummary {
    /// The audio m-line's mid.
    pub mid: String,
    /// Opus payload type.
    pub opus_pt: u8,
    /// telephone-event/8000 payload type, if offered.
    pub telephone_event_pt: Option<u8>,
    /// Every payload type of the m-line.
    pub payload_types: Vec<String>,
    /// The offerer's ICE username fragment.
    pub ice_ufrag: String,
    /// The offerer's sha-256 fingerprint value.
    pub fingerprint: String,
}

/// What the checks ask of a media section beyond [`crate::sdp::Section`]'s own lookups.
trait MediaExt<'a> {
    /// `a=rtpmap` entries as (payload type, lower-cased encoding).
    fn rtpmaps(&self) -> Vec<(&'a str, String)>;
    /// The payload type of the first encoding starting with `encoding_prefix`.
    fn pt_of(&self, encoding_prefix: &str) -> Option<&'a str>;
}

impl<'a> MediaExt<'a> for Section<'_, 'a> {
    fn rtpmaps(&self) -> Vec<(&'a str, String)> {
        self.attrs("rtpmap")
            .filter_map(|a| {
                let (pt, enc) = a.value?.split_once(' ')?;
                Some((pt.trim(), enc.trim().to_ascii_lowercase()))
            })
            .collect()
    }

    fn pt_of(&self, encoding_prefix: &str) -> Option<&'a str> {
        self.rtpmaps()
            .into_iter()
            .find(|(_, enc)| enc.starts_with(encoding_prefix))
            .map(|(pt, _)| pt)
    }
}

/// Parses `text`, reporting each malformed line as a violation.
fn parse(text: &str) -> (Sdp<'_>, Vec<SdpViolation>) {
    let sdp = Sdp::parse(text);
    let bad = sdp
        .malformed()
        .map(|l| SdpViolation::Malformed {
            line_no: l.number,
            line: l.text.chars().take(80).collect(),
        })
        .collect();
    (sdp, bad)
}

/// A media-level attribute, else the session-level one.
fn media_or_session<'a>(sdp: &Sdp<'a>, m: &Section<'_, 'a>, name: &str) -> Option<Attribute<'a>> {
    m.attr(name).or_else(|| {
        sdp.session()
            .iter()
            .filter_map(|l| l.attribute())
            .find(|a| a.name == name)
    })
}

fn check_fingerprint(sdp: &Sdp, out: &mut Vec<SdpViolation>) -> Option<String> {
    let fps: Vec<Attribute> = sdp.all_attrs("fingerprint").collect();
    if fps.len() != 1 {
        out.push(SdpViolation::FingerprintCount { count: fps.len() });
        return None;
    }
    let v = fps[0].value.unwrap_or_default().trim();
    let (alg, hash) = v.split_once(' ').unwrap_or((v, ""));
    if !alg.eq_ignore_ascii_case("sha-256") {
        out.push(SdpViolation::FingerprintAlgorithm {
            algorithm: alg.to_owned(),
        });
        return None;
    }
    let hash = hash.trim();
    let bytes: Vec<&str> = hash.split(':').collect();
    let ok = bytes.len() == 32
        && bytes
            .iter()
            .all(|b| b.len() == 2 && b.bytes().all(|c| c.is_ascii_hexdigit()));
    if !ok {
        out.push(SdpViolation::FingerprintMalformed {
            value: hash.chars().take(120).collect(),
        });
        return None;
    }
    Some(hash.to_owned())
}

fn check_ice_creds(sdp: &Sdp, m: &Section, out: &mut Vec<SdpViolation>) -> Option<String> {
    let ufrag = media_or_session(sdp, m, "ice-ufrag").and_then(|a| a.value);
    if ufrag.is_none_or(str::is_empty) {
        out.push(SdpViolation::MissingIceUfrag);
    }
    let pwd = media_or_session(sdp, m, "ice-pwd").and_then(|a| a.value);
    if pwd.is_none_or(str::is_empty) {
        out.push(SdpViolation::MissingIcePwd);
    }
    ufrag.map(str::to_owned)
}

fn check_single_audio<'s, 'a>(
    sdp: &'s Sdp<'a>,
    out: &mut Vec<SdpViolation>,
) -> Option<Section<'s, 'a>> {
    let count = sdp.media().len();
    if count != 1 {
        out.push(SdpViolation::MediaCount { count });
    }
    let m = sdp.media().next()?;
    if m.media.kind != "audio" {
        out.push(SdpViolation::NotAudio {
            media: m.media.kind.to_owned(),
        });
    }
    if m.media.proto != "UDP/TLS/RTP/SAVPF" {
        out.push(SdpViolation::Protocol {
            proto: m.media.proto.to_owned(),
        });
    }
    Some(m)
}

fn bundle_names(sdp: &Sdp, mid: &str) -> bool {
    sdp.session_attrs("group").any(|a| {
        let mut parts = a.value.unwrap_or_default().split_whitespace();
        parts.next() == Some("BUNDLE") && parts.any(|p| p == mid)
    })
}

/// Checks a Meta-style offer: one audio m-line, sha-256 fingerprint, ice-lite, `actpass`, Opus,
/// a mid. Returns what an answerer needs.
pub fn check_offer(offer: &str) -> Result<OfferSummary, Vec<SdpViolation>> {
    let (sdp, mut out) = parse(offer);
    if sdp.all_attrs("ice-lite").next().is_none() {
        out.push(SdpViolation::NotIceLite);
    }
    let fingerprint = check_fingerprint(&sdp, &mut out);
    let Some(m) = check_single_audio(&sdp, &mut out) else {
        return Err(out);
    };
    let ufrag = check_ice_creds(&sdp, &m, &mut out);
    if let Some(problem) = one_way_or_inconsistent(&sdp, &m) {
        out.push(SdpViolation::Formats(problem));
    }
    let setup = media_or_session(&sdp, &m, "setup").and_then(|a| a.value);
    if setup != Some("actpass") {
        out.push(SdpViolation::Setup {
            expected: "actpass",
            found: setup.map(str::to_owned),
        });
    }
    let opus_pt = m
        .pt_of("opus/48000/2")
        .filter(|pt| m.media.formats.contains(pt))
        .and_then(|pt| pt.parse::<u8>().ok());
    if opus_pt.is_none() {
        out.push(SdpViolation::OpusMissing { pt: "?".into() });
    }
    let telephone_event_pt = m
        .pt_of("telephone-event/8000")
        .and_then(|pt| pt.parse::<u8>().ok());
    let mid = m.value("mid").map(str::to_owned);
    if mid.is_none() {
        out.push(SdpViolation::MidMismatch {
            expected: "<any>".into(),
            found: None,
        });
    }
    match (out.is_empty(), mid, opus_pt, ufrag, fingerprint) {
        (true, Some(mid), Some(opus_pt), Some(ice_ufrag), Some(fingerprint)) => Ok(OfferSummary {
            mid,
            opus_pt,
            telephone_event_pt,
            payload_types: m.media.formats.iter().map(|f| (*f).to_owned()).collect(),
            ice_ufrag,
            fingerprint,
        }),
        _ => Err(out),
    }
}

/// Checks our answer to Meta's `offer` against Meta's rules (reference §5). Returns every
/// violation found, not just the first.
pub fn check_answer(offer: &str, answer: &str) -> Result<(), Vec<SdpViolation>> {
    let off = Sdp::parse(offer);
    let (ans, mut out) = parse(answer);
    let off_m = off.media().find(|m| m.media.kind == "audio");

    if ans.all_attrs("ice-lite").next().is_some() {
        out.push(SdpViolation::IceLite);
    }
    check_fingerprint(&ans, &mut out);
    let Some(m) = check_single_audio(&ans, &mut out) else {
        return Err(out);
    };
    check_ice_creds(&ans, &m, &mut out);

    let setup = media_or_session(&ans, &m, "setup").and_then(|a| a.value);
    if setup != Some("active") {
        out.push(SdpViolation::Setup {
            expected: "active",
            found: setup.map(str::to_owned),
        });
    }

    let offer_mid = off_m.and_then(|om| om.value("mid")).unwrap_or("");
    let mid = m.value("mid");
    if mid != Some(offer_mid) {
        out.push(SdpViolation::MidMismatch {
            expected: offer_mid.to_owned(),
            found: mid.map(str::to_owned),
        });
    }
    if !bundle_names(&ans, offer_mid) {
        out.push(SdpViolation::BundleMissingMid {
            mid: offer_mid.to_owned(),
        });
    }

    let offered: &[&str] = off_m.map(|om| om.media.formats.as_slice()).unwrap_or(&[]);
    for pt in &m.media.formats {
        if !offered.contains(pt) {
            out.push(SdpViolation::PayloadNotOffered {
                pt: (*pt).to_owned(),
            });
        }
    }
    let maps = m.rtpmaps();
    let answered = |pt: &str, enc: &str| {
        m.media.formats.contains(&pt) && maps.iter().any(|(p, e)| *p == pt && e == enc)
    };
    // The offer's formats of an encoding: an offer may carry Opus (or telephone-event) on more
    // than one payload type, and the answerer may keep any of them (RFC 3264 §6.1).
    let offered_as = |enc: &str| -> Vec<&str> {
        off_m
            .map(|om| {
                om.rtpmaps()
                    .into_iter()
                    .filter(|(pt, e)| e == enc && om.media.formats.contains(pt))
                    .map(|(pt, _)| pt)
                    .collect()
            })
            .unwrap_or_default()
    };
    let opus = offered_as("opus/48000/2");
    if !opus.iter().any(|pt| answered(pt, "opus/48000/2")) {
        out.push(SdpViolation::OpusMissing {
            pt: opus.first().copied().unwrap_or("?").to_owned(),
        });
    }
    let events = offered_as("telephone-event/8000");
    if let Some(pt) = events.first() {
        if !events.iter().any(|pt| answered(pt, "telephone-event/8000")) {
            out.push(SdpViolation::TelephoneEventMissing {
                pt: (*pt).to_owned(),
            });
        }
    }

    let ptime = m.value("ptime").map(str::trim);
    if ptime != Some("20") {
        out.push(SdpViolation::Ptime {
            found: ptime.map(str::to_owned),
        });
    }
    if media_or_session(&ans, &m, "rtcp-mux").is_none() {
        out.push(SdpViolation::RtcpMuxMissing);
    }
    // Absent direction means sendrecv (RFC 8866 §6.7).
    let directions = ["sendrecv", "sendonly", "recvonly", "inactive"];
    let dir = directions.iter().find(|d| m.attr(d).is_some()).or_else(|| {
        directions
            .iter()
            .find(|d| ans.session_attrs(d).next().is_some())
    });
    if let Some(d) = dir.filter(|d| **d != "sendrecv") {
        out.push(SdpViolation::Direction {
            found: (*d).to_owned(),
        });
    }
    let ssrcs: BTreeSet<&str> = m
        .attrs("ssrc")
        .filter_map(|a| a.value?.split_whitespace().next())
        .collect();
    if ssrcs.len() != 1 {
        out.push(SdpViolation::SsrcCount { count: ssrcs.len() });
    }
    let has_udp = m.attrs("candidate").any(|a| {
        a.value
            .and_then(|v| v.split_whitespace().nth(2))
            .is_some_and(|t| t.eq_ignore_ascii_case("udp"))
    });
    if !has_udp {
        out.push(SdpViolation::NoUdpCandidate);
    }

    if out.is_empty() {
        Ok(())
    } else {
        Err(out)
    }
}

/// Joins violations into one line, as Graph's `error_data.details` would carry them.
pub fn describe(violations: &[SdpViolation]) -> String {
    Violations(violations).to_string()
}

struct Violations<'a>(&'a [SdpViolation]);

impl fmt::Display for Violations<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{v}")?;
        }
        Ok(())
    }
}

/// Meta's real offer from reference §3.1, for tests here and elsewhere. Its one copy is
/// `tests/fixtures/meta_offer.sdp`; the simulated Meta peer builds its offers from it too.
pub const SAMPLE_META_OFFER: &str = include_str!("../../tests/fixtures/meta_offer.sdp");

/// A hand-written answer to [`SAMPLE_META_OFFER`] that passes [`check_answer`].
pub const SAMPLE_ANSWER: &str = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE audio\r\na=msid-semantic: WMS sb\r\nm=audio 50000 UDP/TLS/RTP/SAVPF 111 126\r\nc=IN IP4 127.0.0.1\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\na=ice-ufrag:sbUf\r\na=ice-pwd:sbPasswordPasswordPassw0\r\na=fingerprint:sha-256 0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9:0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9\r\na=setup:active\r\na=mid:audio\r\na=sendrecv\r\na=msid:sb sb-audio\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=20;useinbandfec=1\r\na=rtpmap:126 telephone-event/8000\r\na=ptime:20\r\na=ssrc:1111 cname:sb\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn with(replace: &str, by: &str) -> String {
        assert!(SAMPLE_ANSWER.contains(replace), "{replace}");
        SAMPLE_ANSWER.replacen(replace, by, 1)
    }

    fn only(answer: &str) -> SdpViolation {
        let mut v = check_answer(SAMPLE_META_OFFER, answer).unwrap_err();
        assert_eq!(v.len(), 1, "{v:?}");
        v.remove(0)
    }

    #[test]
    fn real_offer_summarises() {
        let s = check_offer(SAMPLE_META_OFFER).unwrap();
        assert_eq!(s.mid, "audio");
        assert_eq!(s.opus_pt, 111);
        assert_eq!(s.telephone_event_pt, Some(126));
        assert_eq!(s.payload_types, ["111", "126"]);
        assert_eq!(s.ice_ufrag, "MkBWnyZXw+wMTKqA");
    }

    #[test]
    fn offer_without_ice_lite_or_actpass_is_flagged() {
        let o = SAMPLE_META_OFFER
            .replace("a=ice-lite\r\n", "")
            .replace("actpass", "active");
        let v = check_offer(&o).unwrap_err();
        assert!(v.contains(&SdpViolation::NotIceLite), "{v:?}");
        assert!(v.iter().any(|x| matches!(x, SdpViolation::Setup { .. })));
    }

    #[test]
    fn good_answer_passes_with_crlf_and_lf() {
        check_answer(SAMPLE_META_OFFER, SAMPLE_ANSWER).unwrap();
        check_answer(
            &SAMPLE_META_OFFER.replace("\r\n", "\n"),
            &SAMPLE_ANSWER.replace("\r\n", "\n"),
        )
        .unwrap();
    }

    #[test]
    fn answer_without_direction_means_sendrecv() {
        check_answer(SAMPLE_META_OFFER, &with("a=sendrecv\r\n", "")).unwrap();
    }

    #[test]
    fn ice_lite() {
        assert_eq!(
            only(&with("a=msid-semantic", "a=ice-lite\r\na=msid-semantic")),
            SdpViolation::IceLite
        );
    }

    #[test]
    fn missing_ufrag_and_pwd() {
        assert_eq!(
            only(&with("a=ice-ufrag:sbUf\r\n", "")),
            SdpViolation::MissingIceUfrag
        );
        assert_eq!(
            only(&with("a=ice-pwd:sbPasswordPasswordPassw0\r\n", "")),
            SdpViolation::MissingIcePwd
        );
    }

    #[test]
    fn two_fingerprints() {
        let a = with(
            "a=setup:active",
            "a=fingerprint:sha-1 00:11\r\na=setup:active",
        );
        assert_eq!(only(&a), SdpViolation::FingerprintCount { count: 2 });
    }

    #[test]
    fn fingerprint_not_sha256() {
        let a = with("a=fingerprint:sha-256", "a=fingerprint:sha-1");
        assert!(matches!(
            only(&a),
            SdpViolation::FingerprintAlgorithm { algorithm } if algorithm == "sha-1"
        ));
    }

    #[test]
    fn fingerprint_short() {
        let a = with(":C6:D7:E8:F9\r\na=setup", "\r\na=setup");
        assert!(matches!(
            only(&a),
            SdpViolation::FingerprintMalformed { .. }
        ));
    }

    #[test]
    fn setup_passive_or_actpass() {
        for s in ["passive", "actpass"] {
            let v = only(&with("a=setup:active", &format!("a=setup:{s}")));
            assert_eq!(
                v,
                SdpViolation::Setup {
                    expected: "active",
                    found: Some(s.into())
                }
            );
        }
    }

    #[test]
    fn two_m_lines() {
        let a = format!("{SAMPLE_ANSWER}m=video 9 UDP/TLS/RTP/SAVPF 96\r\n");
        assert_eq!(only(&a), SdpViolation::MediaCount { count: 2 });
    }

    #[test]
    fn video_m_line() {
        let a = with("m=audio", "m=video");
        assert!(matches!(only(&a), SdpViolation::NotAudio { media } if media == "video"));
    }

    #[test]
    fn wrong_protocol() {
        let a = with("UDP/TLS/RTP/SAVPF", "RTP/AVP");
        assert!(matches!(only(&a), SdpViolation::Protocol { .. }));
    }

    #[test]
    fn wrong_mid_and_bundle() {
        let v = check_answer(
            SAMPLE_META_OFFER,
            &with("a=mid:audio", "a=mid:0").replace("BUNDLE audio", "BUNDLE 0"),
        )
        .unwrap_err();
        assert_eq!(
            v,
            vec![
                SdpViolation::MidMismatch {
                    expected: "audio".into(),
                    found: Some("0".into())
                },
                SdpViolation::BundleMissingMid {
                    mid: "audio".into()
                }
            ]
        );
        let a = with("a=group:BUNDLE audio\r\n", "");
        assert_eq!(
            only(&a),
            SdpViolation::BundleMissingMid {
                mid: "audio".into()
            }
        );
    }

    #[test]
    fn payload_not_offered() {
        let a = with("SAVPF 111 126", "SAVPF 111 126 0");
        assert_eq!(only(&a), SdpViolation::PayloadNotOffered { pt: "0".into() });
    }

    #[test]
    fn opus_missing_or_wrong_channels() {
        let a = with("111 opus/48000/2", "111 opus/48000/1");
        assert_eq!(only(&a), SdpViolation::OpusMissing { pt: "111".into() });
        let a = with("SAVPF 111 126", "SAVPF 126");
        assert_eq!(only(&a), SdpViolation::OpusMissing { pt: "111".into() });
    }

    #[test]
    fn telephone_event_missing() {
        let a = with("SAVPF 111 126", "SAVPF 111");
        assert_eq!(
            only(&a),
            SdpViolation::TelephoneEventMissing { pt: "126".into() }
        );
    }

    #[test]
    fn ptime_wrong_or_missing() {
        let a = with("a=ptime:20", "a=ptime:40");
        assert_eq!(
            only(&a),
            SdpViolation::Ptime {
                found: Some("40".into())
            }
        );
        let a = with("a=ptime:20\r\n", "");
        assert_eq!(only(&a), SdpViolation::Ptime { found: None });
    }

    #[test]
    fn rtcp_mux_missing() {
        assert_eq!(
            only(&with("a=rtcp-mux\r\n", "")),
            SdpViolation::RtcpMuxMissing
        );
    }

    #[test]
    fn recvonly() {
        assert_eq!(
            only(&with("a=sendrecv", "a=recvonly")),
            SdpViolation::Direction {
                found: "recvonly".into()
            }
        );
    }

    #[test]
    fn ssrc_count() {
        let a = with(
            "a=ssrc:1111 cname:sb\r\n",
            "a=ssrc:1111 cname:sb\r\na=ssrc:2222 cname:sb\r\n",
        );
        assert_eq!(only(&a), SdpViolation::SsrcCount { count: 2 });
        let a = with("a=ssrc:1111 cname:sb\r\n", "");
        assert_eq!(only(&a), SdpViolation::SsrcCount { count: 0 });
    }

    #[test]
    fn no_udp_candidate() {
        let a = with(" udp 2130706431", " tcp 2130706431");
        assert_eq!(only(&a), SdpViolation::NoUdpCandidate);
    }

    #[test]
    fn malformed_line_and_garbage_never_panic() {
        let a = with("s=-\r\n", "s=-\r\nnonsense\r\n");
        assert!(matches!(
            only(&a),
            SdpViolation::Malformed { line_no: 4, .. }
        ));
        for junk in [
            "",
            "=",
            "m=",
            "a=fingerprint:",
            "m=audio\na=rtpmap:",
            "\u{0}\r\r\n",
        ] {
            assert!(check_answer(junk, junk).is_err());
            assert!(check_offer(junk).is_err());
        }
    }

    #[test]
    fn describe_joins_readably() {
        let v = check_answer(SAMPLE_META_OFFER, &with("a=rtcp-mux\r\n", "")).unwrap_err();
        assert_eq!(describe(&v), "a=rtcp-mux is missing");
    }
}
