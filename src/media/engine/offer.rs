//! Legs this engine offers rather than answers: the WhatsApp legs of business-initiated calls
//! (issue 25), and internal legs between two nodes' engines.
//!
//! **Business-initiated calls** (reference §1.3, §3.3): switchboard offers the WhatsApp leg in
//! Graph `connect` — Meta-shaped (one sendrecv audio section, Opus/48000/2 with Meta's fmtp,
//! telephone-event/8000 on 126, `a=setup:actpass`, host candidates inline) but full ICE, since
//! we are the one that checks — and Meta's answer comes later in a `connect` webhook with
//! `a=ice-lite` and `a=setup:active`: so here switchboard is **ICE controlling and the DTLS
//! server**. Until the answer the leg waits without a connect timeout (the call's ring timeout
//! ends it); its socket is one no other leg bound to a remote address uses where possible, so
//! that Meta's relay address, unknown until the answer, meets no other leg of ours on it.
//!
//! **Trunks.** With several nodes a call's Meta leg stays on the
//! node that answered Meta's offer; when another node takes the call over (its agent is free),
//! the two engines are joined by one of these: the owner's engine **offers** it, shaped like
//! Meta's own offer (ICE-lite, `a=setup:actpass`, one sendrecv Opus stream with
//! telephone-event, host candidates inline, no header extension), and the other node answers it
//! with [`Engine::answer_whatsapp`] — so on that node it *is* the call's WhatsApp leg, with its
//! pacing, silence, hold audio, DTMF and sequence rewriting, and on the owner's node it is
//! forwarded to and from the Meta leg like any leg. DTLS-SRTP authenticates and encrypts it;
//! the fingerprints travel in the nodes' signed hand-over. Nothing is transcoded: Opus payloads
//! cross as they came, each end rewriting sequence numbers and timestamps into its own
//! continuous stream.

use std::net::SocketAddr;
use std::time::Instant;

use str0m::media::{MediaKind, Mid};
use str0m::Candidate;

use super::answer::never_resends;
use super::{Answer, Engine, OPUS_PT, TELE_PT};
use crate::ids::{LegId, StreamId};
use crate::media::leg::{Leg, LegKind, OutStream, StunKeys};
use crate::media::MediaError;

/// The one media section's id on a trunk and on an offered WhatsApp leg (Meta's own).
const TRUNK_MID: &str = "audio";
/// The Opus parameters Meta offers (reference §3.1), ours when we offer to Meta.
const META_OPUS_FMTP: &str =
    "maxaveragebitrate=20000;maxplaybackrate=16000;minptime=20;sprop-maxcapturerate=16000;useinbandfec=1";

impl Engine {
    /// Offers a new trunk leg (this node owns the call): the leg and the SDP offer to hand to
    /// the other node, which answers it with [`Engine::answer_whatsapp`]. The answer comes
    /// back through [`Engine::trunk_answered`].
    pub fn offer_trunk(&mut self, now: Instant, last_resort: bool) -> Result<Answer, MediaError> {
        self.offer_leg(now, LegKind::Trunk, last_resort)
    }

    /// Offers a new WhatsApp leg for a business-initiated call: the leg, and the offer to send
    /// in Graph `connect`. Meta's answer comes back through [`Engine::whatsapp_answered`];
    /// nothing is sent on the leg before [`Engine::start_sending`] (after the answer).
    pub fn offer_whatsapp(
        &mut self,
        now: Instant,
        last_resort: bool,
    ) -> Result<Answer, MediaError> {
        self.offer_leg(now, LegKind::WhatsApp, last_resort)
    }

    fn offer_leg(
        &mut self,
        now: Instant,
        kind: LegKind,
        last_resort: bool,
    ) -> Result<Answer, MediaError> {
        if self.legs.live >= self.cfg.limits.max_legs {
            self.counters.refused_too_many_legs += u64::from(last_resort);
            return Err(MediaError::TooManyLegs {
                limit: self.cfg.limits.max_legs,
            });
        }
        let placed = match kind {
            LegKind::WhatsApp => self.place_unbound(),
            _ => self.place(&[]),
        };
        let Some(socket) = placed else {
            self.counters.refused_no_port += u64::from(last_resort);
            return Err(MediaError::NoFreePort {
                remote: SocketAddr::from(([0, 0, 0, 0], 0)),
                ports: self.cfg.ports.len(),
            });
        };
        let creds = str0m::IceCreds::new();
        let mut rtc = self
            .rtc_config()
            .clear_extension_map()
            .set_ice_lite(kind == LegKind::Trunk)
            .set_local_ice_credentials(creds.clone())
            .build(now);
        let addrs: Vec<SocketAddr> = self.local_addrs(socket).collect();
        for addr in &addrs {
            let candidate =
                Candidate::host(*addr, "udp").map_err(|e| MediaError::InvalidOffer {
                    reason: format!("local candidate: {e}"),
                })?;
            rtc.add_local_candidate(candidate);
        }
        let fingerprint = rtc.direct_api().local_dtls_fingerprint().to_string();
        let ssrc: u32 = rand::random();
        let mid = Mid::from(TRUNK_MID);
        {
            let mut api = rtc.direct_api();
            api.declare_media(mid, MediaKind::Audio);
            never_resends(api.declare_stream_tx(ssrc.into(), None, mid, None));
        }
        let offer = offer_text(kind, &addrs, &creds, &fingerprint, ssrc);

        let id = self.legs.alloc();
        self.by_ufrag.insert(creds.ufrag.clone(), id);
        let mut leg = Leg::new(
            id,
            kind,
            rtc,
            socket,
            now,
            creds.ufrag,
            StunKeys {
                local: creds.pass,
                remote: None,
            },
        );
        leg.opus_pt = OPUS_PT.into();
        leg.tele_pt = Some(TELE_PT.into());
        // A WhatsApp leg's stream is paced (silence first, hold audio) as an answered one's is.
        leg.outs = vec![OutStream::new(ssrc.into(), kind == LegKind::WhatsApp)];
        leg.awaiting_answer = kind == LegKind::WhatsApp;
        self.install(now, leg);
        Ok(Answer {
            leg: id,
            sdp: offer,
            streams: vec![StreamId { leg: id, index: 0 }],
        })
    }

    /// Applies the other node's answer to a trunk this engine offered: ICE (it checks, we
    /// answer as ICE-lite) and DTLS (it is the client, as toward Meta) start with its first
    /// datagrams.
    pub fn trunk_answered(
        &mut self,
        now: Instant,
        leg: LegId,
        answer: &str,
    ) -> Result<(), MediaError> {
        self.offer_answered(now, leg, answer, LegKind::Trunk)
    }

    /// Applies Meta's answer (a business-initiated call's `connect` webhook, reference §3.3) to a
    /// WhatsApp leg this engine offered: we check (ICE controlling; Meta is ICE-lite) and, as
    /// Meta answers `a=setup:active`, we are the DTLS server. Refused, leaving the leg as it was,
    /// when the answer is unusable or its address meets another leg of ours on this leg's socket.
    pub fn whatsapp_answered(
        &mut self,
        now: Instant,
        leg: LegId,
        answer: &str,
    ) -> Result<(), MediaError> {
        self.offer_answered(now, leg, answer, LegKind::WhatsApp)
    }

    fn offer_answered(
        &mut self,
        now: Instant,
        leg: LegId,
        answer: &str,
        kind: LegKind,
    ) -> Result<(), MediaError> {
        let expected = match kind {
            LegKind::Trunk => "trunk",
            _ => "offered WhatsApp",
        };
        let l = self.legs.get(leg).ok_or(MediaError::UnknownLeg { leg })?;
        let offered_whatsapp = l.kind == LegKind::WhatsApp && l.awaiting_answer;
        if l.kind != kind || (kind == LegKind::WhatsApp && !offered_whatsapp) {
            return Err(MediaError::WrongLegKind { leg, expected });
        }
        let socket = l.socket;
        let invalid = |reason: &str| MediaError::InvalidOffer {
            reason: format!("{expected} answer: {reason}"),
        };
        if answer.len() > crate::media::sdp::MAX_SDP {
            return Err(invalid("too long"));
        }
        let sdp = crate::sdp::Sdp::parse(answer);
        let last = |name: &str| {
            sdp.all_attrs(name)
                .filter_map(|a| a.value)
                .last()
                .map(str::to_owned)
        };
        let ufrag = last("ice-ufrag").ok_or_else(|| invalid("no a=ice-ufrag"))?;
        let pwd = last("ice-pwd").ok_or_else(|| invalid("no a=ice-pwd"))?;
        let fingerprint = last("fingerprint")
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| invalid("no usable a=fingerprint"))?;
        let active = match last("setup").as_deref() {
            Some("active") => false,
            Some("passive") => true,
            _ => return Err(invalid("a=setup is neither active nor passive")),
        };
        let remote_ssrc: Option<u32> = sdp
            .all_attrs("ssrc")
            .filter_map(|a| a.value?.split_whitespace().next()?.parse().ok())
            .last();
        let ip6 = self.cfg.public_ip6.is_some();
        let mut candidates = Vec::new();
        for line in sdp.lines().iter().filter(|l| l.is_attr("candidate")) {
            if let Ok(c) = Candidate::from_sdp_string(line.value) {
                // Only an address of a family we have sockets for can carry the leg.
                if c.addr().is_ipv4() || ip6 {
                    candidates.push(c);
                }
            }
            if candidates.len() >= 16 {
                break;
            }
        }
        if candidates.is_empty() {
            return Err(invalid("no usable a=candidate"));
        }
        let remote: Vec<SocketAddr> = candidates.iter().map(|c| c.addr()).collect();
        if kind == LegKind::WhatsApp {
            // Two legs with one remote address on one socket could not be told apart.
            if let Some(r) = remote.iter().find(|r| {
                self.by_candidate
                    .get(&(socket, **r))
                    .is_some_and(|other| *other != leg)
                    || self.by_addr.contains_key(&(socket, **r))
            }) {
                self.counters.refused_no_port += 1;
                return Err(MediaError::NoFreePort {
                    remote: *r,
                    ports: self.cfg.ports.len(),
                });
            }
        }
        let Some(l) = self.legs.get_mut(leg) else {
            return Err(MediaError::UnknownLeg { leg });
        };
        let mid = Mid::from(TRUNK_MID);
        let mut api = l.rtc.direct_api();
        api.set_remote_ice_credentials(str0m::IceCreds {
            ufrag,
            pass: pwd.clone(),
        });
        api.set_remote_fingerprint(fingerprint);
        // A trunk's other end checks (we are ICE-lite there); toward Meta we do.
        api.set_ice_controlling(kind == LegKind::WhatsApp);
        if let Some(ssrc) = remote_ssrc {
            api.expect_stream_rx(ssrc.into(), None, mid, None);
        }
        api.start_dtls(active)
            .map_err(|e| invalid(&e.to_string()))?;
        for c in candidates {
            l.rtc.add_remote_candidate(c);
        }
        l.stun_keys.remote = Some(pwd);
        if kind == LegKind::WhatsApp {
            // ICE and DTLS start now: so does the connect timeout.
            l.awaiting_answer = false;
            l.created_at = now;
            l.candidates = remote.clone();
            for r in remote {
                self.by_candidate.insert((socket, r), leg);
            }
        }
        self.drain(now, leg);
        Ok(())
    }

    /// The socket for an offered WhatsApp leg, whose remote address is not known until the
    /// answer: one that no leg bound to a remote address uses, else the one fewest use.
    fn place_unbound(&mut self) -> Option<usize> {
        let n = self.cfg.ports.len();
        let mut bound = vec![0u32; n];
        for (socket, _) in self.by_candidate.keys() {
            if let Some(b) = bound.get_mut(*socket) {
                *b += 1;
            }
        }
        for l in self.legs.iter() {
            if l.awaiting_answer {
                if let Some(b) = bound.get_mut(l.socket) {
                    *b += 1;
                }
            }
        }
        let start = self.next_socket;
        let s = (0..n).map(|k| (start + k) % n).min_by_key(|s| bound[*s])?;
        self.next_socket = (s + 1) % n;
        Some(s)
    }
}

/// A Meta-shaped offer: one bundled audio section, actpass; ICE-lite for a trunk (the other
/// node checks), full ICE toward Meta (Meta is ICE-lite), with Meta's own Opus parameters.
fn offer_text(
    kind: LegKind,
    addrs: &[SocketAddr],
    creds: &str0m::IceCreds,
    fingerprint: &str,
    ssrc: u32,
) -> String {
    use std::fmt::Write;
    let first = addrs[0];
    let family = |a: &SocketAddr| if a.is_ipv4() { "IP4" } else { "IP6" };
    let mut s = String::with_capacity(1024);
    let session: u64 = rand::random::<u64>() >> 2;
    let (ice_lite, fmtp, track) = match kind {
        LegKind::WhatsApp => ("", META_OPUS_FMTP, "whatsapp"),
        _ => ("a=ice-lite\r\n", "minptime=20;useinbandfec=1", "trunk"),
    };
    let _ = write!(
        s,
        "v=0\r\no=- {session} 2 IN {} {}\r\ns=-\r\nt=0 0\r\na=group:BUNDLE {TRUNK_MID}\r\n\
         a=msid-semantic: WMS switchboard\r\n{ice_lite}\
         m=audio {} UDP/TLS/RTP/SAVPF {OPUS_PT} {TELE_PT}\r\nc=IN {} {}\r\n\
         a=rtcp:9 IN IP4 0.0.0.0\r\n",
        family(&first),
        first.ip(),
        first.port(),
        family(&first),
        first.ip(),
    );
    for (i, a) in addrs.iter().enumerate() {
        let _ = write!(
            s,
            "a=candidate:{} 1 udp {} {} {} typ host generation 0\r\n",
            i + 1,
            2_122_260_223u32 - i as u32 * 256,
            a.ip(),
            a.port()
        );
    }
    let _ = write!(
        s,
        "a=ice-ufrag:{}\r\na=ice-pwd:{}\r\na=fingerprint:{fingerprint}\r\na=setup:actpass\r\n\
         a=mid:{TRUNK_MID}\r\na=sendrecv\r\na=msid:switchboard {track}\r\na=rtcp-mux\r\n\
         a=rtpmap:{OPUS_PT} opus/48000/2\r\n\
         a=fmtp:{OPUS_PT} {fmtp}\r\n\
         a=rtpmap:{TELE_PT} telephone-event/8000\r\na=maxptime:20\r\na=ptime:20\r\n\
         a=ssrc:{ssrc} cname:switchboard\r\n",
        creds.ufrag, creds.pass,
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::engine::fixtures::*;

    /// Meta's answer to our offer, from the relay address of its real offer (§3.1): its own
    /// shape, the DTLS client's role.
    fn meta_answer() -> String {
        META_OFFER.replace("a=setup:actpass", "a=setup:active")
    }

    #[test]
    fn an_offered_leg_takes_a_socket_no_relay_uses_and_refuses_an_answer_that_would_share_one() {
        let now = Instant::now();
        let mut e = engine(vec![7000, 7001]);
        // An inbound call from Meta's relay on 7000.
        let inbound = e.answer_whatsapp(now, META_OFFER).unwrap();
        assert_eq!(port_of(&inbound), 7000);
        // The offered leg goes where no leg talks to any remote yet.
        let out = e.offer_whatsapp(now, true).unwrap();
        assert!(out.sdp.contains(" 7001 typ host"), "{}", out.sdp);
        // Its answer from the same relay address is fine there…
        e.whatsapp_answered(now, out.leg, &meta_answer()).unwrap();
        // …but a third leg can only share a socket with one of them: the next offer waits on
        // 7000 or 7001, and the same relay's answer to it is refused (and counted).
        let third = e.offer_whatsapp(now, true).unwrap();
        let err = e
            .whatsapp_answered(now, third.leg, &meta_answer())
            .unwrap_err();
        assert!(matches!(err, MediaError::NoFreePort { .. }), "{err}");
        assert_eq!(e.counters().refused_no_port, 1);
        // Another relay's answer is fine.
        e.whatsapp_answered(
            now,
            third.leg,
            &offer_from("57.144.125.36").replace("a=setup:actpass", "a=setup:active"),
        )
        .unwrap();
        // An answered leg is not answered again; an inbound leg is not offered.
        assert!(matches!(
            e.whatsapp_answered(now, third.leg, &meta_answer()),
            Err(MediaError::WrongLegKind { .. })
        ));
        assert!(matches!(
            e.whatsapp_answered(now, inbound.leg, &meta_answer()),
            Err(MediaError::WrongLegKind { .. })
        ));
    }
}
