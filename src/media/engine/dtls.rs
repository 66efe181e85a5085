//! The DTLS every leg runs: dimpl, str0m's own DTLS, set up as str0m's aws-lc-rs provider sets it
//! up except in three ways — when an unanswered handshake flight is sent again, one dimpl
//! configuration for every leg, and an idle instance not asked for output on every packet.
//!
//! dimpl resends an unanswered flight after 1 s (RFC 6347's suggestion for the open internet).
//! A WhatsApp leg's first flight (our ClientHello: switchboard is the DTLS client, reference §5)
//! leaves the moment ICE connects, and in a burst of new calls it can be lost or reach a peer not
//! yet ready for it: every such call then waited a whole second (the p99 of a 300/s burst was
//! 1.1 s of set-up, docs/performance.md, issue 26). Browsers resend theirs far sooner (WebRTC
//! starts at 50 ms and scales with the ICE round trip); we start at [`FLIGHT_FIRST_RESEND`] and
//! keep doubling, with enough resends that a handshake is given up about as late as before.
//!
//! Everything else is str0m's provider's: certificates, SRTP, the hashes. The dimpl
//! configuration is built once and shared by every leg: str0m's provider builds one per leg,
//! and building one checks dimpl's whole crypto provider (a key exchange in each of three
//! groups and signature checks), the largest single cost of a new leg on the media thread
//! (`cargo bench --bench answer`: 1 ms an answer with one per leg, 76 µs shared). And an idle
//! instance's answer is remembered rather than asked for on every packet ([`Instance`]).
//!
//! *Owns*: the crypto provider the engine hands every leg. *Does not touch*: legs, sockets.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
};
use str0m::crypto::CryptoProvider;
use str0m_proto::crypto::CryptoError;

/// When a handshake flight with no answer is first sent again. A loopback or LAN round trip is
/// well under a millisecond and Meta's relays answer within tens of milliseconds; 200 ms leaves
/// room for a peer busy with its own handshakes without resending work it is still doing.
pub(super) const FLIGHT_FIRST_RESEND: Duration = Duration::from_millis(200);

/// Resends of a flight before the handshake is given up: doubling from 200 ms, 6 keep trying for
/// ~25 s, as dimpl's own 4 from 1 s do for ~31 s (the engine's connect timeout, 10 s unless
/// configured, usually ends a leg that has not connected first).
pub(super) const FLIGHT_RESENDS: usize = 6;

/// The crypto provider of every leg: str0m's, with [`Dtls`] for DTLS.
pub(super) fn provider() -> Arc<CryptoProvider> {
    with_dtls(&LEGS)
}

static LEGS: Dtls = Dtls {
    first_resend: FLIGHT_FIRST_RESEND,
    resends: FLIGHT_RESENDS,
};

/// The crypto provider of the simulator's peers (`sim::peer`: Meta-shaped callers, browsers),
/// which are not switchboard and keep dimpl's own timing (first resend 1 s, 4 resends). Only the
/// configuration is shared and idle instances remembered, so that a load generator's hundreds of
/// peers on the same cores do not each run dimpl's crypto check (docs/performance.md, issue 26).
pub(crate) fn peer_provider() -> Arc<CryptoProvider> {
    with_dtls(&PEERS)
}

static PEERS: Dtls = Dtls {
    first_resend: Duration::from_secs(1),
    resends: 4,
};

fn with_dtls(dtls: &'static Dtls) -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        dtls_provider: dtls,
        ..str0m::crypto::from_feature_flags()
    })
}

/// Makes dimpl instances with a flight timing.
#[derive(Debug)]
struct Dtls {
    first_resend: Duration,
    resends: usize,
}

impl Dtls {
    /// The dimpl configuration for `mtu`, built once. Building one runs dimpl's check of its
    /// crypto provider (a key exchange in every group, X25519, P-256 and P-384, and signature
    /// checks), and str0m's own provider builds one per leg, on the media thread; every leg
    /// asks with the same MTU, so the first one's is kept.
    fn config(&self, mtu: Option<usize>) -> Result<Arc<dimpl::Config>, CryptoError> {
        type Key = (Option<usize>, Duration, usize);
        // One entry per MTU and timing asked for (one or two in practice); the lock is taken
        // once per new leg, never per packet.
        static SHARED: Mutex<Vec<(Key, Arc<dimpl::Config>)>> = Mutex::new(Vec::new());
        let key = (mtu, self.first_resend, self.resends);
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, config)) = shared.iter().find(|(k, _)| *k == key) {
            return Ok(config.clone());
        }
        let config = self.build(mtu)?;
        shared.push((key, config.clone()));
        Ok(config)
    }

    fn build(&self, mtu: Option<usize>) -> Result<Arc<dimpl::Config>, CryptoError> {
        // As str0m's provider: ICE has checked the path both ways before DTLS starts, so a
        // server cookie adds a round trip and nothing else.
        let mut b = dimpl::Config::builder()
            .use_server_cookie(false)
            .flight_start_rto(self.first_resend)
            .flight_retries(self.resends);
        if let Some(mtu) = mtu {
            b = b.mtu(mtu);
        }
        b.build()
            .map(Arc::new)
            .map_err(|e| CryptoError::Other(format!("DTLS configuration: {e}")))
    }
}

impl DtlsProvider for Dtls {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let config = self.config(mtu)?;
        let cert = cert.clone();
        let dtls = match version {
            DtlsVersion::Dtls12 => dimpl::Dtls::new_12(config, cert, now),
            DtlsVersion::Dtls13 => dimpl::Dtls::new_13(config, cert, now),
            DtlsVersion::Auto => dimpl::Dtls::new_auto(config, cert, now),
            other => return Err(CryptoError::Other(format!("unsupported: {other}"))),
        };
        Ok(Box::new(Instance {
            dtls,
            idle_until: None,
        }))
    }
}

/// One leg's dimpl, passed through, except that an idle instance is not asked again.
///
/// str0m polls a leg's DTLS on every drain, so an established leg's dimpl was asked for its
/// output once per packet and answered "nothing until this deadline" each time (~1.3 % of the
/// media threads under load, and with many legs a walk through each one's DTLS state out of
/// cache: `cargo bench --bench forward`, 200 calls, 8.2 → 4.0 µs a packet). Its answer can only
/// change after an input, so it is remembered until the next one.
#[derive(Debug)]
struct Instance {
    dtls: dimpl::Dtls,
    /// The deadline dimpl last answered with, while no input has come since.
    idle_until: Option<Instant>,
}

impl DtlsInstance for Instance {
    fn set_active(&mut self, active: bool) {
        self.idle_until = None;
        self.dtls.set_active(active);
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.idle_until = None;
        self.dtls.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        if let Some(at) = self.idle_until {
            return DtlsOutput::Timeout(at);
        }
        let out = self.dtls.poll_output(buf);
        if let DtlsOutput::Timeout(at) = out {
            self.idle_until = Some(at);
        }
        out
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.idle_until = None;
        self.dtls.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.idle_until = None;
        self.dtls.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.dtls.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.dtls.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.dtls.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.dtls.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.idle_until = None;
        self.dtls.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drains `dtls` until it asks for a timeout: the datagrams it sent, and that timeout.
    fn drain(dtls: &mut dyn DtlsInstance) -> (usize, Instant) {
        let mut buf = vec![0u8; 2048];
        let mut sent = 0;
        loop {
            match dtls.poll_output(&mut buf) {
                DtlsOutput::Packet(_) => sent += 1,
                DtlsOutput::Timeout(t) => return (sent, t),
                other => panic!("unexpected before any answer: {other:?}"),
            }
        }
    }

    #[test]
    fn every_leg_shares_one_dtls_configuration() {
        let legs = &LEGS;
        let a = legs.config(Some(1150)).unwrap();
        let b = legs.config(Some(1150)).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "built once");
        assert_eq!(a.flight_start_rto(), FLIGHT_FIRST_RESEND);
        let other = legs.config(Some(1000)).unwrap();
        assert_eq!(other.mtu(), 1000, "each MTU asked for has its own");
        assert!(Arc::ptr_eq(&other, &legs.config(Some(1000)).unwrap()));
        let peers = &PEERS;
        let theirs = peers.config(Some(1150)).unwrap();
        assert_eq!(
            theirs.flight_start_rto(),
            Duration::from_secs(1),
            "their own timing"
        );
        assert!(Arc::ptr_eq(&theirs, &peers.config(Some(1150)).unwrap()));
    }

    #[test]
    fn an_unanswered_client_hello_is_sent_again_after_200_ms_then_later_each_time() {
        let p = provider();
        let cert = p.dtls_provider.generate_certificate().unwrap();
        let start = Instant::now();
        let mut dtls = p
            .dtls_provider
            .new_dtls(&cert, start, DtlsVersion::Dtls12, None)
            .unwrap();
        // The client (a WhatsApp leg's side) speaks first.
        dtls.set_active(true);
        dtls.handle_timeout(start).unwrap();
        let (sent, mut at) = drain(dtls.as_mut());
        assert!(sent >= 1, "the ClientHello leaves at once");

        let mut resends = vec![];
        let mut last = start;
        while resends.len() < 3 {
            dtls.handle_timeout(at).unwrap();
            let (sent, next) = drain(dtls.as_mut());
            if sent > 0 {
                resends.push(at - last);
                last = at;
            }
            at = next;
        }
        // dimpl adds up to ±25 % jitter to each wait; the first is 200 ms, not 1 s, and each
        // later one waits longer (doubling).
        assert!(resends[0] <= FLIGHT_FIRST_RESEND * 5 / 4, "{resends:?}");
        assert!(resends[0] >= FLIGHT_FIRST_RESEND * 3 / 4, "{resends:?}");
        assert!(
            resends[1] > resends[0] && resends[2] > resends[1],
            "{resends:?}"
        );
    }
}
