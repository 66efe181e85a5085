//! Answering offers: a new leg per WhatsApp or browser offer, its codecs and header extensions,
//! the edits that shape our SDP answer, and placing the leg on a socket.
//!
//! *Owns*: [`Engine::answer`] and its two shorthands, the codec and extension set every leg is
//! built with, placement (which socket a new leg gets, so no two legs with one remote address
//! share a socket) and our local candidate addresses.
//!
//! *Does not touch*: a leg once it is filed (the other submodules'), routes, pacing, and the
//! offer's screening and answer editing themselves (`media::sdp`).

use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::format::{Codec, FormatParams};
use str0m::media::{Frequency, Mid};
use str0m::rtp::{Extension, ExtensionMap, StreamTx};
use str0m::{Candidate, Rtc, RtcConfig};

use super::{Answer, Engine, OPUS_PT, TELE_PT};
use crate::ids::StreamId;
use crate::media::leg::{Leg, LegKind, OutStream, StunKeys};
use crate::media::sdp::{self, AnswerEdits, OfferShape};
use crate::media::MediaError;

/// Opus with Meta's minimum packet time; telephone-event at 8 kHz only (Meta supports no other
/// rate, and a browser offered only 8 kHz sends its DTMF at 8 kHz too).
fn add_codecs(cfg: &mut RtcConfig) {
    cfg.codec_config().add_config(
        OPUS_PT.into(),
        None,
        Codec::Opus,
        Frequency::FORTY_EIGHT_KHZ,
        Some(2),
        FormatParams {
            min_p_time: Some(20),
            use_inband_fec: Some(true),
            ..Default::default()
        },
    );
    cfg.codec_config().add_config(
        TELE_PT.into(),
        None,
        Codec::Tele,
        Frequency::EIGHT_KHZ,
        None,
        FormatParams::default(),
    );
}

/// When a full-ICE leg resends a connectivity check nobody answered. str0m's default, 250 ms,
/// is what a caller waited for audio when the first check was lost: the peer had not yet
/// learnt our answer (Meta's relay hears of `pre_accept` through Graph, after our first
/// check leaves), so it dropped the check, and the call's media came up 250 ms later. One
/// check every 50 ms while unanswered is a few dozen bytes; see docs/performance.md.
pub(super) const STUN_FIRST_RETRY: std::time::Duration = std::time::Duration::from_millis(50);
/// Retransmits before a check fails: with [`STUN_FIRST_RETRY`] doubling up to str0m's 3 s,
/// 11 give up after ~18 s, as str0m's 9 from 250 ms do (switchboard's own idle timeout decides
/// a leg's fate either way).
pub(super) const STUN_RETRANSMITS: usize = 11;

/// Every send stream of a leg: nothing switchboard writes is ever sent again (audio is not
/// NACKed, every packet is written not nackable), so str0m keeps no resend cache and none of the
/// per-packet byte history it keeps to cap the resend ratio (a queue push on every packet).
pub(super) fn never_resends(tx: &mut StreamTx) {
    tx.set_rtx_cache(0, Duration::ZERO, None);
}

/// Opus fmtp parameters we ask browsers to send with, WhatsApp's own (reference §3.1, §5
/// rule 14), so their packets can be relayed to Meta without transcoding.
const BROWSER_OPUS_FMTP: &str = "maxaveragebitrate=20000;maxplaybackrate=16000;stereo=0";

impl Engine {
    /// What every leg's `Rtc` is built with, answered or offered: RTP mode, our codecs, the
    /// engine's certificate and crypto ([`super::dtls`]), the ICE timing of
    /// [`STUN_FIRST_RETRY`] and the stats interval.
    pub(super) fn rtc_config(&self) -> RtcConfig {
        let mut cfg = RtcConfig::new()
            .clear_codecs()
            .set_rtp_mode(true)
            .set_dtls_cert(self.cert.clone())
            .set_crypto_provider(self.crypto.clone())
            .set_stats_interval(Some(self.cfg.stats_interval));
        add_codecs(&mut cfg);
        cfg.set_initial_stun_rto(STUN_FIRST_RETRY);
        cfg.set_max_stun_retransmits(STUN_RETRANSMITS);
        cfg
    }

    /// Answers Meta's offer (a user-initiated call's `connect` webhook) with a new WhatsApp leg:
    /// full ICE and controlling, DTLS client (`a=setup:active`), one sha-256 fingerprint, Meta's
    /// mid and payload types, `a=ptime:20`, one SSRC and our candidate inline.
    pub fn answer_whatsapp(&mut self, now: Instant, offer: &str) -> Result<Answer, MediaError> {
        self.answer(now, offer, LegKind::WhatsApp, true)
    }

    /// Answers a browser's offer with a new ICE-lite browser leg. Every m-line must be audio; each
    /// one the browser receives on becomes one of the leg's outgoing streams.
    pub fn answer_browser(&mut self, now: Instant, offer: &str) -> Result<Answer, MediaError> {
        self.answer(now, offer, LegKind::Browser, true)
    }

    /// Answers an offer as [`Engine::answer_whatsapp`] or [`Engine::answer_browser`] do. With
    /// `last_resort` false, a refusal for want of a port or a leg slot is not counted: the
    /// sharded driver then tries the next shard, and only the last one's refusal is the node's.
    pub fn answer(
        &mut self,
        now: Instant,
        offer: &str,
        kind: LegKind,
        last_resort: bool,
    ) -> Result<Answer, MediaError> {
        if self.legs.live >= self.cfg.limits.max_legs {
            self.counters.refused_too_many_legs += u64::from(last_resort);
            return Err(MediaError::TooManyLegs {
                limit: self.cfg.limits.max_legs,
            });
        }
        let shape = match kind {
            LegKind::WhatsApp => OfferShape::WhatsApp,
            LegKind::Browser => OfferShape::Browser {
                max_m_lines: self.cfg.limits.max_browser_streams,
            },
            // Offered by this engine (`offer_trunk`), never answered.
            LegKind::Trunk => {
                return Err(MediaError::InvalidOffer {
                    reason: "an internal leg is offered, not answered".into(),
                })
            }
        };
        let screened = match sdp::screen_offer(offer, shape) {
            Err(e @ MediaError::TooManyStreams { .. }) => {
                self.counters.refused_too_many_streams += 1;
                return Err(e);
            }
            other => other?,
        };
        // Full-ICE legs (WhatsApp) learn their remote's address from the offer, so they can be
        // kept off any socket already talking to that address; browsers are ICE-lite toward us
        // and come from their own NAT address, so any socket will do.
        // Only candidates of a family we have sockets for can ever carry this leg.
        let ip6 = self.cfg.public_ip6.is_some();
        let remote: Vec<SocketAddr> = if kind == LegKind::WhatsApp {
            screened
                .candidates
                .iter()
                .copied()
                .filter(|c| c.is_ipv4() || ip6)
                .collect()
        } else {
            Vec::new()
        };
        let socket = match self.place(&remote) {
            Some(s) => s,
            None => {
                self.counters.refused_no_port += u64::from(last_resort);
                return Err(MediaError::NoFreePort {
                    remote: remote
                        .first()
                        .copied()
                        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
                    ports: self.cfg.ports.len(),
                });
            }
        };
        let parsed =
            SdpOffer::from_sdp_string(&screened.text).map_err(|e| MediaError::InvalidOffer {
                reason: e.to_string(),
            })?;

        let mut rtc = self
            .rtc_config()
            .set_extension_map(audio_extensions())
            .set_ice_lite(kind == LegKind::Browser)
            .build(now);
        for addr in self.local_addrs(socket) {
            let candidate = Candidate::host(addr, "udp").map_err(|e| MediaError::InvalidOffer {
                reason: format!("local candidate: {e}"),
            })?;
            rtc.add_local_candidate(candidate);
        }
        // The offer came from the network: a str0m bug on odd SDP must cost this offer only.
        let answer = catch_unwind(AssertUnwindSafe(|| rtc.sdp_api().accept_offer(parsed)))
            .map_err(|_| MediaError::InvalidOffer {
                reason: "the WebRTC engine could not process this offer".into(),
            })??;
        let answer_text = answer.to_sdp_string();

        let mids = sdp::mids(&answer_text);
        let (opus_pt, tele_pt) = negotiated(&rtc, &mids).ok_or(MediaError::NoOpus)?;
        let mut outs = Vec::new();
        for mid in &mids {
            let mid = Mid::from(mid.as_str());
            if let Some(tx) = rtc.direct_api().stream_tx_by_mid(mid, None) {
                never_resends(tx);
                outs.push(OutStream::new(tx.ssrc(), kind == LegKind::WhatsApp));
            }
        }
        if kind == LegKind::WhatsApp && outs.len() != 1 {
            return Err(MediaError::InvalidOffer {
                reason: "the offer does not let us send audio (a WhatsApp offer is sendrecv)"
                    .into(),
            });
        }
        // Screening capped the m-lines at 255 or fewer, so every index fits.
        let Ok(stream_count) = u8::try_from(outs.len()) else {
            return Err(MediaError::TooManyStreams {
                offered: outs.len(),
                limit: self.cfg.limits.max_browser_streams,
            });
        };
        let edits = match kind {
            // Meta's answer keeps the shape it is known to take.
            LegKind::WhatsApp => AnswerEdits {
                ptime: true,
                drop_trickle: true,
                opus_fmtp_extra: None,
                complete_candidates: false,
            },
            LegKind::Browser | LegKind::Trunk => AnswerEdits {
                ptime: true,
                drop_trickle: false,
                opus_fmtp_extra: Some(BROWSER_OPUS_FMTP),
                complete_candidates: matches!(kind, LegKind::Browser),
            },
        };
        let sdp_text = sdp::edit_answer(&answer_text, *opus_pt, edits);
        let local_creds = rtc.direct_api().local_ice_credentials();

        let id = self.legs.alloc();
        let streams = (0..stream_count)
            .map(|index| StreamId { leg: id, index })
            .collect();
        let candidates = remote;
        for c in &candidates {
            self.by_candidate.insert((socket, *c), id);
        }
        self.by_ufrag.insert(local_creds.ufrag.clone(), id);
        let mut leg = Leg::new(
            id,
            kind,
            rtc,
            socket,
            now,
            local_creds.ufrag,
            StunKeys {
                local: local_creds.pass,
                remote: screened.ice_pwd,
            },
        );
        leg.opus_pt = opus_pt;
        leg.tele_pt = tele_pt;
        leg.outs = outs;
        leg.candidates = candidates;
        self.install(now, leg);
        Ok(Answer {
            leg: id,
            sdp: sdp_text,
            streams,
        })
    }

    /// The socket for a new leg whose remote side will send from `remote`: the next one, round
    /// robin, on which no live leg talks to any of those addresses. Two legs with one remote
    /// address on one local socket share a 5-tuple, and neither end could tell their STUN, DTLS
    /// and SRTP apart (Meta's relays send many calls from one address: reference §9).
    pub(super) fn place(&mut self, remote: &[SocketAddr]) -> Option<usize> {
        let n = self.cfg.ports.len();
        for k in 0..n {
            let s = (self.next_socket + k) % n;
            let taken = remote.iter().any(|r| {
                self.by_candidate.contains_key(&(s, *r)) || self.by_addr.contains_key(&(s, *r))
            });
            if !taken {
                self.next_socket = (s + 1) % n;
                return Some(s);
            }
        }
        None
    }

    /// Our candidate addresses on `socket`: the IPv4 one and, when configured, the IPv6 one.
    pub(super) fn local_addrs(&self, socket: usize) -> impl Iterator<Item = SocketAddr> + '_ {
        let port = self.cfg.ports[socket];
        std::iter::once(SocketAddr::new(self.cfg.public_ip, port))
            .chain(self.cfg.public_ip6.map(|ip| SocketAddr::new(ip, port)))
    }
}

/// The RTP header extensions a leg answers with: the audio level and the MID (which keeps a
/// browser's streams apart). Not transport-wide congestion control: Meta's offer negotiates no
/// extension at all, and on browser legs its feedback (every 50 ms per leg) cost the engine a
/// str0m visit per five forwarded packets for bandwidth estimation that fixed-rate Opus audio
/// does not need. Nor abs-send-time (the same purpose) or the video ones.
fn audio_extensions() -> ExtensionMap {
    let mut exts = ExtensionMap::empty();
    exts.set(1, Extension::AudioLevel);
    exts.set(4, Extension::RtpMid);
    exts
}

/// Opus and telephone-event/8000 payload types negotiated on the audio m-lines.
fn negotiated(rtc: &Rtc, mids: &[String]) -> Option<(str0m::media::Pt, Option<str0m::media::Pt>)> {
    let mut remote = Vec::new();
    for mid in mids {
        if let Some(m) = rtc.media(Mid::from(mid.as_str())) {
            remote.extend_from_slice(m.remote_pts());
        }
    }
    let params = rtc.codec_config().params();
    let find = |codec: Codec, rate: u32| {
        params
            .iter()
            .find(|p| {
                p.spec().codec == codec
                    && p.spec().clock_rate.get() == rate
                    && remote.contains(&p.pt())
            })
            .map(|p| p.pt())
    };
    Some((find(Codec::Opus, 48_000)?, find(Codec::Tele, 8_000)))
}
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::media::engine::fixtures::*;

    #[test]
    fn calls_from_one_relay_address_never_share_a_socket() {
        let now = Instant::now();
        let mut e = engine(vec![7000, 7001, 7002]);
        let ports: Vec<u16> = (0..3)
            .map(|_| port_of(&e.answer_whatsapp(now, META_OFFER).unwrap()))
            .collect();
        assert_eq!(ports, vec![7000, 7001, 7002]);
        let err = e.answer_whatsapp(now, META_OFFER).unwrap_err();
        assert!(
            matches!(err, MediaError::NoFreePort { ports: 3, .. }),
            "{err}"
        );
        assert_eq!(e.counters().refused_no_port, 1);
        assert_eq!(e.leg_count(), 3);
        // Another relay address fits on any socket, and so does a browser.
        e.answer_whatsapp(now, &offer_from("57.144.125.36"))
            .unwrap();
        assert_eq!(e.leg_count(), 4);
    }

    #[test]
    fn a_socket_is_free_again_once_its_call_is_gone() {
        let now = Instant::now();
        let mut e = engine(vec![7000]);
        let a = e.answer_whatsapp(now, META_OFFER).unwrap();
        assert!(e.answer_whatsapp(now, META_OFFER).is_err());
        e.close(now, a.leg).unwrap();
        assert_eq!(e.leg_count(), 0);
        let b = e.answer_whatsapp(now, META_OFFER).unwrap();
        assert_eq!(port_of(&b), 7000);
    }

    /// A connectivity check Meta's relay did not answer (it had not yet heard our answer
    /// through Graph) is sent again after [`STUN_FIRST_RETRY`], not str0m's 250 ms: the
    /// caller's audio waits one short retry, not a quarter of a second.
    #[test]
    fn an_unanswered_connectivity_check_is_sent_again_within_50_ms() {
        let t0 = Instant::now();
        let mut e = engine(vec![7000]);
        e.answer_whatsapp(t0, META_OFFER).unwrap();
        let mut checks: Vec<(Duration, SocketAddr)> = vec![];
        let mut now = t0;
        while now < t0 + Duration::from_millis(400) {
            while let Some(t) = e.poll_transmit() {
                // A STUN binding request: type 0x0001.
                if t.contents.get(..2) == Some(&[0x00, 0x01][..]) {
                    checks.push((now - t0, t.destination));
                }
            }
            let Some(next) = e.poll_timeout() else { break };
            now = next.max(now + Duration::from_millis(1));
            e.handle_timeout(now);
        }
        let (first, to) = *checks.first().expect("a check is sent at once");
        assert!(first < Duration::from_millis(10), "{checks:?}");
        let again = checks
            .iter()
            .skip(1)
            .find(|(_, d)| *d == to)
            .expect("the unanswered check is sent again");
        assert!(
            again.0 - first <= STUN_FIRST_RETRY + Duration::from_millis(10),
            "resent after {:?}: {checks:?}",
            again.0 - first
        );
        // And it backs off: no more than a handful in the first 400 ms.
        let to_meta = checks.iter().filter(|(_, d)| *d == to).count();
        assert!((3..=6).contains(&to_meta), "{checks:?}");
    }

    #[test]
    fn the_dtls_certificate_is_ecdsa_p256() {
        let e = engine(vec![7000]);
        let der = &e.cert.certificate;
        let has = |oid: &[u8]| der.windows(oid.len()).any(|w| w == oid);
        // ecdsa-with-SHA256 (1.2.840.10045.4.3.2), id-ecPublicKey (1.2.840.10045.2.1) and
        // prime256v1 (1.2.840.10045.3.1.7): what Meta recommends (reference §9).
        assert!(has(&[
            0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02
        ]));
        assert!(has(&[0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01]));
        assert!(has(&[
            0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07
        ]));
        assert!(
            !has(&[0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01]),
            "not RSA"
        );
    }
}
