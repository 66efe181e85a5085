//! Internal legs between two nodes' engines. With several nodes a call's Meta leg stays on the
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
use str0m::{Candidate, RtcConfig};

use super::answer::add_codecs;
use super::{Answer, Engine, OPUS_PT, TELE_PT};
use crate::ids::{LegId, StreamId};
use crate::media::leg::{Leg, LegKind, OutStream, StunKeys};
use crate::media::MediaError;

/// The one media section's id on a trunk.
const TRUNK_MID: &str = "audio";

impl Engine {
    /// Offers a new trunk leg (this node owns the call): the leg and the SDP offer to hand to
    /// the other node, which answers it with [`Engine::answer_whatsapp`]. The answer comes
    /// back through [`Engine::trunk_answered`].
    pub fn offer_trunk(&mut self, now: Instant, last_resort: bool) -> Result<Answer, MediaError> {
        if self.legs.live >= self.cfg.limits.max_legs {
            self.counters.refused_too_many_legs += u64::from(last_resort);
            return Err(MediaError::TooManyLegs {
                limit: self.cfg.limits.max_legs,
            });
        }
        let Some(socket) = self.place(&[]) else {
            self.counters.refused_no_port += u64::from(last_resort);
            return Err(MediaError::NoFreePort {
                remote: SocketAddr::from(([0, 0, 0, 0], 0)),
                ports: self.cfg.ports.len(),
            });
        };
        let creds = str0m::IceCreds::new();
        let mut cfg = RtcConfig::new()
            .clear_codecs()
            .clear_extension_map()
            .set_rtp_mode(true)
            .set_ice_lite(true)
            .set_local_ice_credentials(creds.clone())
            .set_dtls_cert(self.cert.clone())
            .set_stats_interval(Some(self.cfg.stats_interval));
        add_codecs(&mut cfg);
        let mut rtc = cfg.build(now);
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
            api.declare_stream_tx(ssrc.into(), None, mid, None);
        }
        let offer = trunk_offer(&addrs, &creds, &fingerprint, ssrc);

        let id = self.legs.alloc();
        self.by_ufrag.insert(creds.ufrag.clone(), id);
        let mut leg = Leg::new(
            id,
            LegKind::Trunk,
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
        leg.outs = vec![OutStream::new(ssrc.into(), false)];
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
        let l = self
            .legs
            .get_mut(leg)
            .ok_or(MediaError::UnknownLeg { leg })?;
        if l.kind != LegKind::Trunk {
            return Err(MediaError::WrongLegKind {
                leg,
                expected: "trunk",
            });
        }
        let invalid = |reason: &str| MediaError::InvalidOffer {
            reason: format!("trunk answer: {reason}"),
        };
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
        let mut candidates = Vec::new();
        for line in sdp.lines().iter().filter(|l| l.is_attr("candidate")) {
            if let Ok(c) = Candidate::from_sdp_string(line.value) {
                candidates.push(c);
            }
        }
        if candidates.is_empty() {
            return Err(invalid("no usable a=candidate"));
        }
        let mid = Mid::from(TRUNK_MID);
        let mut api = l.rtc.direct_api();
        api.set_remote_ice_credentials(str0m::IceCreds {
            ufrag,
            pass: pwd.clone(),
        });
        api.set_remote_fingerprint(fingerprint);
        api.set_ice_controlling(false);
        if let Some(ssrc) = remote_ssrc {
            api.expect_stream_rx(ssrc.into(), None, mid, None);
        }
        api.start_dtls(active)
            .map_err(|e| invalid(&e.to_string()))?;
        for c in candidates {
            l.rtc.add_remote_candidate(c);
        }
        l.stun_keys.remote = Some(pwd);
        self.drain(now, leg);
        Ok(())
    }
}

/// A Meta-shaped offer for a trunk: one bundled audio section, ICE-lite, actpass.
fn trunk_offer(
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
    let _ = write!(
        s,
        "v=0\r\no=- {session} 2 IN {} {}\r\ns=-\r\nt=0 0\r\na=group:BUNDLE {TRUNK_MID}\r\n\
         a=msid-semantic: WMS switchboard\r\na=ice-lite\r\n\
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
         a=mid:{TRUNK_MID}\r\na=sendrecv\r\na=msid:switchboard trunk\r\na=rtcp-mux\r\n\
         a=rtpmap:{OPUS_PT} opus/48000/2\r\n\
         a=fmtp:{OPUS_PT} minptime=20;useinbandfec=1\r\n\
         a=rtpmap:{TELE_PT} telephone-event/8000\r\na=maxptime:20\r\na=ptime:20\r\n\
         a=ssrc:{ssrc} cname:switchboard\r\n",
        creds.ufrag, creds.pass,
    );
    s
}
