//! The few textual SDP steps around str0m's SDP API: screening offers before str0m sees them,
//! and the edits str0m cannot make itself on the answers we send.
//!
//! Editing our own answer text is safe because str0m never re-reads it; it only changes what the
//! peer learns. We never edit `a=setup`, ICE credentials, fingerprints, payload types, SSRCs or
//! mids (str0m notes §1).

use std::net::SocketAddr;

use super::MediaError;
use crate::sdp::{candidate_addr, one_way_or_inconsistent, Attribute, Sdp};

/// What a leg's offer must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OfferShape {
    /// Meta's: exactly one m-line, audio.
    WhatsApp,
    /// A browser's: one or more m-lines, all audio, at most this many.
    Browser {
        /// The most m-lines accepted.
        max_m_lines: usize,
    },
}

/// An offer that passed screening, rewritten for str0m.
#[derive(Debug)]
pub(crate) struct Screened {
    /// The text to hand to `SdpOffer::from_sdp_string`.
    pub text: String,
    /// Remote host candidates (UDP) found in the offer.
    pub candidates: Vec<SocketAddr>,
    /// The offer's `a=ice-pwd` (keys the integrity of the remote's STUN responses).
    pub ice_pwd: Option<String>,
}

/// The longest SDP taken from the network (an offer, or an answer to ours).
pub(crate) const MAX_SDP: usize = 64 * 1024;

/// Checks the rules str0m does not enforce and rewrites what must be rewritten:
/// - at least one m-line; all audio; exactly one for WhatsApp;
/// - a sha-256 fingerprint (other hash functions are removed; none left is an error);
/// - for WhatsApp, a two-way offer whose `a=rtpmap`/`a=fmtp` lines agree with its `m=` line
///   ([`crate::sdp::one_way_or_inconsistent`], the rule Meta's offer check applies too):
///   otherwise str0m would answer a payload type never offered, or drop DTMF, or answer
///   one-way, and Meta would refuse the answer after we had rung an agent;
/// - for WhatsApp, `a=setup:actpass` becomes `passive`, which makes str0m take the DTLS client
///   role and answer `a=setup:active` as Meta requires (str0m notes §1, option A).
pub(crate) fn screen_offer(offer: &str, shape: OfferShape) -> Result<Screened, MediaError> {
    let invalid = |reason: &str| MediaError::InvalidOffer {
        reason: reason.to_owned(),
    };
    if let OfferShape::Browser { max_m_lines } = shape {
        // Counted first: a browser offer with hundreds of m-lines is refused for what it is.
        let offered = offer.lines().filter(|l| l.starts_with("m=")).count();
        if offered > max_m_lines {
            return Err(MediaError::TooManyStreams {
                offered,
                limit: max_m_lines,
            });
        }
    }
    if offer.len() > MAX_SDP {
        return Err(invalid("longer than 64 KiB"));
    }
    if !offer.trim_start().starts_with("v=0") {
        return Err(invalid("does not start with v=0"));
    }
    let sdp = Sdp::parse(offer);
    if let Some(line) = sdp.malformed().next() {
        return Err(invalid(&format!(
            "line {:?} is not of the form x=…",
            truncate(line.text)
        )));
    }
    let m_lines = sdp.media().len();
    if m_lines == 0 {
        return Err(invalid("no m-line"));
    }
    if sdp.media().any(|m| m.media.kind != "audio") {
        return Err(invalid("has a non-audio m-line; only audio is relayed"));
    }
    if shape == OfferShape::WhatsApp && m_lines > 1 {
        return Err(invalid(&format!(
            "has {m_lines} m-lines; a WhatsApp offer has exactly one audio m-line"
        )));
    }
    if shape == OfferShape::WhatsApp {
        let problem = sdp
            .media()
            .next()
            .and_then(|m| one_way_or_inconsistent(&sdp, &m));
        if let Some(p) = problem {
            return Err(invalid(&p.to_string()));
        }
    }
    let mut out = String::with_capacity(offer.len() + 16);
    let mut fingerprints: Vec<&str> = vec![];
    let mut candidates = vec![];
    let mut ice_pwd = None;
    for line in sdp.lines() {
        match line.attribute() {
            Some(Attribute {
                name: "ice-pwd",
                value: Some(pwd),
            }) => ice_pwd = Some(pwd.trim().to_owned()),
            Some(Attribute {
                name: "fingerprint",
                value,
            }) => {
                let hash = value.unwrap_or("").split_whitespace().next().unwrap_or("");
                if !hash.eq_ignore_ascii_case("sha-256") {
                    fingerprints.push(hash);
                    continue;
                }
                fingerprints.push("sha-256");
            }
            Some(Attribute {
                name: "candidate",
                value: Some(c),
            }) => candidates.extend(candidate_addr(c)),
            Some(Attribute {
                name: "setup",
                value: Some(role),
            }) if shape == OfferShape::WhatsApp && role.eq_ignore_ascii_case("actpass") => {
                out.push_str("a=setup:passive\r\n");
                continue;
            }
            _ => {}
        }
        out.push_str(line.text);
        out.push_str("\r\n");
    }
    // No direction in the section means sendrecv (RFC 8866 §6.7; a one-way WhatsApp offer was
    // refused above), but str0m wants it written there: say it, at the section's end.
    let directionless = sdp
        .media()
        .next()
        .is_some_and(|m| !crate::sdp::DIRECTIONS.iter().any(|d| m.attr(d).is_some()));
    if shape == OfferShape::WhatsApp && directionless {
        out.push_str("a=sendrecv\r\n");
    }
    if !fingerprints.contains(&"sha-256") {
        let found = if fingerprints.is_empty() {
            "none".to_owned()
        } else {
            fingerprints.join(", ")
        };
        return Err(MediaError::NoSha256Fingerprint { found });
    }
    Ok(Screened {
        text: out,
        candidates,
        ice_pwd,
    })
}

fn truncate(s: &str) -> &str {
    let mut end = s.len().min(40);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Edits to an answer str0m produced.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AnswerEdits {
    /// Insert `a=ptime:20` and `a=maxptime:20` into every audio section.
    pub ptime: bool,
    /// Remove `a=ice-options:trickle`: Meta's API has no way to trickle, every candidate is inline.
    pub drop_trickle: bool,
    /// Extra Opus fmtp parameters for what we want to receive (browser legs: WhatsApp's shape,
    /// so the browser's packets can go to Meta untouched).
    pub opus_fmtp_extra: Option<&'static str>,
    /// Close each candidate list with `a=end-of-candidates`, and without BUNDLE copy the
    /// candidates into every m-section (str0m writes them in the first only): stacks other than
    /// browsers wait for the end of gathering, or look for candidates per section.
    pub complete_candidates: bool,
}

/// The answer's m-sections that must carry candidates, and the first one's candidate lines.
fn candidate_plan<'a>(sdp: &Sdp<'a>) -> (bool, Vec<&'a str>) {
    let bundled = sdp
        .lines()
        .iter()
        .any(|l| l.text.starts_with("a=group:BUNDLE"));
    let first = sdp
        .lines()
        .iter()
        .skip_while(|l| !l.text.starts_with("m="))
        .skip(1)
        .take_while(|l| !l.text.starts_with("m="))
        .filter(|l| l.is_attr("candidate"))
        .map(|l| l.text)
        .collect();
    (bundled, first)
}

/// Applies [`AnswerEdits`], keeping CRLF line endings.
pub(crate) fn edit_answer(answer: &str, opus_pt: u8, edits: AnswerEdits) -> String {
    let opus_pt = opus_pt.to_string();
    let mut out = String::with_capacity(answer.len() + 64);
    let parsed = Sdp::parse(answer);
    let (bundled, first_candidates) = candidate_plan(&parsed);
    // Per m-section: its index, and whether it has candidates and their end written.
    let mut section: Option<usize> = None;
    let (mut has_candidates, mut has_end) = (false, false);
    let close_section = |out: &mut String, section: Option<usize>, has: bool, end: bool| {
        let Some(i) = section else { return };
        if !edits.complete_candidates || (bundled && i > 0) {
            return;
        }
        if !has {
            for c in &first_candidates {
                out.push_str(c);
                out.push_str("\r\n");
            }
        }
        if !end && (has || !first_candidates.is_empty()) {
            out.push_str("a=end-of-candidates\r\n");
        }
    };
    for line in parsed.lines() {
        if line.text.starts_with("m=") {
            close_section(&mut out, section, has_candidates, has_end);
            section = Some(section.map_or(0, |i| i + 1));
            (has_candidates, has_end) = (false, false);
        }
        has_candidates |= line.is_attr("candidate");
        has_end |= line.is_attr("end-of-candidates");
        if edits.drop_trickle && line.text == "a=ice-options:trickle" {
            continue;
        }
        if edits.ptime && (line.is_attr("ptime") || line.is_attr("maxptime")) {
            continue;
        }
        let opus_fmtp = match line.attribute() {
            Some(Attribute {
                name: "fmtp",
                value: Some(v),
            }) => v.split_once(' ').filter(|(pt, _)| *pt == opus_pt),
            _ => None,
        };
        match (opus_fmtp, edits.opus_fmtp_extra) {
            (Some((pt, params)), Some(extra)) => {
                out.push_str("a=fmtp:");
                out.push_str(pt);
                out.push(' ');
                out.push_str(params);
                out.push(';');
                out.push_str(extra);
            }
            _ => out.push_str(line.text),
        }
        out.push_str("\r\n");
        if edits.ptime && line.text == "a=rtcp-mux" {
            out.push_str("a=ptime:20\r\na=maxptime:20\r\n");
        }
    }
    close_section(&mut out, section, has_candidates, has_end);
    out
}

/// The mids of the answer's m-lines, in order.
pub(crate) fn mids(sdp: &str) -> Vec<String> {
    Sdp::parse(sdp)
        .all_attrs("mid")
        .filter_map(|a| a.value)
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const META_OFFER: &str = include_str!("../../tests/fixtures/meta_offer.sdp");

    #[test]
    fn browser_answers_close_their_candidates_and_repeat_them_without_bundle() {
        let edits = AnswerEdits {
            ptime: false,
            drop_trickle: false,
            opus_fmtp_extra: None,
            complete_candidates: true,
        };
        let answer = |bundle: &str| {
            format!(
                "v=0\r\n{bundle}m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
                 a=candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host\r\n\
                 m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\n"
            )
        };
        let candidate = "a=candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host";
        // Bundled: the first section alone carries them, now closed.
        let bundled = edit_answer(&answer("a=group:BUNDLE 0 1\r\n"), 111, edits);
        let (first, second) = bundled.split_once("a=mid:1").unwrap();
        assert!(
            first.ends_with(&format!(
                "{candidate}\r\na=end-of-candidates\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
            )),
            "{bundled}"
        );
        assert!(!second.contains("candidate"), "{bundled}");
        // Not bundled: every section has them.
        let unbundled = edit_answer(&answer(""), 111, edits);
        assert_eq!(unbundled.matches(candidate).count(), 2, "{unbundled}");
        assert_eq!(
            unbundled.matches("a=end-of-candidates").count(),
            2,
            "{unbundled}"
        );
        assert!(
            unbundled.ends_with("a=end-of-candidates\r\n"),
            "{unbundled}"
        );
        // Meta's answers are left as they are.
        let meta = edit_answer(
            &answer(""),
            111,
            AnswerEdits {
                complete_candidates: false,
                ..edits
            },
        );
        assert!(!meta.contains("end-of-candidates"), "{meta}");
    }

    #[test]
    fn meta_offer_is_screened_and_made_passive() {
        let s = screen_offer(META_OFFER, OfferShape::WhatsApp).unwrap();
        assert!(s.text.contains("a=setup:passive\r\n"));
        assert!(!s.text.contains("actpass"));
        assert_eq!(
            s.candidates,
            vec![
                "57.144.125.35:3484".parse().unwrap(),
                "[2a03:2880:f33e:120:face:b00c:0:699c]:3484"
                    .parse()
                    .unwrap()
            ]
        );
    }

    #[test]
    fn bad_offers_are_refused() {
        let no_fp = META_OFFER
            .lines()
            .filter(|l| !l.starts_with("a=fingerprint"))
            .collect::<Vec<_>>()
            .join("\r\n");
        assert!(matches!(
            screen_offer(&no_fp, OfferShape::WhatsApp),
            Err(MediaError::NoSha256Fingerprint { found }) if found == "none"
        ));
        let sha1 = META_OFFER.replace("a=fingerprint:sha-256", "a=fingerprint:sha-1");
        assert!(matches!(
            screen_offer(&sha1, OfferShape::WhatsApp),
            Err(MediaError::NoSha256Fingerprint { found }) if found == "sha-1"
        ));
        let video = META_OFFER.replace("m=audio", "m=video");
        assert!(screen_offer(&video, OfferShape::WhatsApp).is_err());
        let two = format!("{META_OFFER}m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:b\r\n");
        assert!(screen_offer(&two, OfferShape::WhatsApp).is_err());
        let browser = OfferShape::Browser { max_m_lines: 4 };
        assert!(screen_offer(&two, browser).is_ok());
        let many = format!(
            "{META_OFFER}{}",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n".repeat(299)
        );
        assert!(matches!(
            screen_offer(&many, browser),
            Err(MediaError::TooManyStreams {
                offered: 300,
                limit: 4
            })
        ));
        assert!(screen_offer("garbage", OfferShape::WhatsApp).is_err());
        assert!(screen_offer("v=0\r\nnonsense\r\n", OfferShape::WhatsApp).is_err());
        assert!(screen_offer("v=0\r\né\r\n", OfferShape::WhatsApp).is_err());
    }

    #[test]
    fn answer_edits_add_ptime_and_fmtp() {
        let a = "v=0\r\na=ice-options:trickle\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtcp-mux\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n";
        let e = edit_answer(
            a,
            111,
            AnswerEdits {
                ptime: true,
                drop_trickle: true,
                opus_fmtp_extra: Some("maxaveragebitrate=20000"),
                complete_candidates: true,
            },
        );
        assert_eq!(
            e,
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtcp-mux\r\na=ptime:20\r\na=maxptime:20\r\na=fmtp:111 minptime=10;useinbandfec=1;maxaveragebitrate=20000\r\n"
        );
    }
}
