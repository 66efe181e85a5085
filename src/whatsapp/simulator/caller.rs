//! Simulated WhatsApp callers: what Meta does when a user calls the business.
//!
//! A call: a Meta-shaped str0m peer makes its offer (reference §3.1's text with its own
//! credentials), the fake Graph API learns the call, and a signed `connect` webhook goes to
//! switchboard. The business's `pre_accept` (or `accept`) gives the caller the answer and its
//! peer connects (ICE + DTLS); `accept` makes the user "pick up": the caller plays its audio (the
//! built-in melody, another Ogg/Opus file, or with the `tones` feature a test tone) and starts
//! Meta's clock — no media from the business within 20 s of accept ends the call with a
//! `terminate` webhook, status FAILED, error 138021. The user hangs up after a while (a
//! `terminate` webhook, COMPLETED, with times and duration); a business `reject`/`terminate` is
//! answered with Meta's `terminate` webhook too; an offer never accepted ends after Meta's accept
//! window. What the caller heard stays measurable through its [`SimulatedCall`].
//!
//! One dispatcher task owns the map from call id to call task and routes the fake Graph API's
//! events to them; each call is its own task.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};
use tracing::{debug, info, info_span, warn, Instrument};

use super::graph::{FakeGraph, FakeGraphEvent};
use crate::config::Secret;
use crate::ids::WaCallId;
use crate::media::ogg::{self, OggError};
use crate::sim::audio::{self, MELODY};
use crate::sim::peer::{Outgoing, PeerError, PeerHandle, PendingPeer, Recording};
use crate::sim::relay::MetaRelay;
use crate::whatsapp::model::{
    Call, CallDirection, CallEventKind, Change, ChangeValue, Contact, Entry, ErrorData, Metadata,
    Profile, SdpType, Session, TerminateStatus, UnixTime, WebhookEnvelope, WebhookErrorObject,
    FIELD_CALLS, MESSAGING_PRODUCT, OBJECT_WABA,
};
use crate::whatsapp::webhook::{sign, SIGNATURE_HEADER};

/// Meta's error for a call whose client received no media (reference §6, §7.2).
pub const MEDIA_RECEIVE_TIMEOUT: i64 = 138021;

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The simulated caller's media peer could not start.
    #[error("caller media: {0}")]
    Peer(#[from] PeerError),
    /// The simulator has stopped.
    #[error("the simulator is not running")]
    Stopped,
    /// A tone was asked of a build that cannot make tones.
    #[error(
        "this build cannot play tones (built without the `tones` feature); play the built-in \
         melody or an Ogg/Opus file instead"
    )]
    NoTones,
}

/// How the simulator reaches switchboard and behaves like Meta.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    /// switchboard's webhook URL.
    pub webhook_url: String,
    /// Further nodes' webhook URLs: with any, deliveries go to `webhook_url` and these in
    /// turn, as a load balancer in front of several nodes sends them.
    pub more_webhook_urls: Vec<String>,
    /// The app secret webhooks are signed with.
    pub app_secret: Secret,
    /// The business phone number id in webhooks' metadata.
    pub phone_number_id: String,
    /// The business number as displayed.
    pub display_phone_number: String,
    /// The WABA id in webhooks' entries.
    pub waba_id: String,
    /// The address simulated callers' media binds to.
    pub media_ip: IpAddr,
    /// When set, every caller's media goes through this one relay socket, as Meta's relays
    /// carry many calls from one address (reference §9); otherwise each caller has its own
    /// port on `media_ip`.
    pub relay: Option<MetaRelay>,
    /// Meta's rule: no media from the business this long after accept ends the call.
    pub no_media_timeout: Duration,
    /// Meta's mid-call rule: once media flowed, this long without any ends the call.
    pub silence_timeout: Duration,
    /// How long Meta waits for accept before the user sees "Not Answered".
    pub accept_window: Duration,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            webhook_url: "http://127.0.0.1:8080/webhooks/whatsapp".into(),
            more_webhook_urls: Vec::new(),
            app_secret: Secret::new(""),
            phone_number_id: "100000000000001".into(),
            display_phone_number: "15550001111".into(),
            waba_id: "200000000000002".into(),
            media_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            relay: None,
            no_media_timeout: Duration::from_secs(20),
            silence_timeout: Duration::from_secs(30),
            accept_window: Duration::from_secs(60),
        }
    }
}

/// One simulated user's call.
#[derive(Debug, Clone)]
pub struct CallSpec {
    /// The caller's number.
    pub from: String,
    /// The caller's profile name.
    pub name: String,
    /// What the caller plays once accepted.
    pub audio: CallerAudio,
    /// The user hangs up this long after accept; `None`: never (the business must end it).
    pub hang_up_after: Option<Duration>,
    /// The business number called (its `phone_number_id` in every webhook of the call);
    /// `None`: the simulator's own. The fake Graph API must serve it.
    pub to: Option<String>,
}

impl Default for CallSpec {
    fn default() -> Self {
        CallSpec {
            from: "15557654321".into(),
            name: "Simulated Caller".into(),
            audio: CallerAudio::default(),
            hang_up_after: Some(Duration::from_secs(30)),
            to: None,
        }
    }
}

/// What a simulated caller says.
#[derive(Debug, Clone, PartialEq)]
pub enum CallerAudio {
    /// Opus packets, 20 ms each, played in a loop: by default the built-in melody
    /// ([`audio::MELODY`]), or any Ogg/Opus file through [`CallerAudio::from_ogg`].
    Clip(Arc<[Vec<u8>]>),
    /// A sine tone encoded with libopus: only in builds with the `tones` feature (placing such a
    /// call elsewhere fails with [`SimError::NoTones`]). Tests measure what is heard with it.
    Tone {
        /// Frequency in Hz.
        hz: f64,
    },
}

impl CallerAudio {
    /// The packets of an Ogg/Opus file (mono or stereo, 20 ms frames).
    pub fn from_ogg(bytes: &[u8]) -> Result<CallerAudio, OggError> {
        Ok(CallerAudio::Clip(ogg::read(bytes)?.packets.into()))
    }

    /// The built-in melody.
    pub fn melody() -> CallerAudio {
        static PACKETS: OnceLock<Arc<[Vec<u8>]>> = OnceLock::new();
        let packets = PACKETS.get_or_init(|| {
            let melody = ogg::read(MELODY);
            // The embedded file is read by a unit test of this module.
            melody
                .expect("the built-in melody is valid Ogg/Opus")
                .packets
                .into()
        });
        CallerAudio::Clip(packets.clone())
    }

    pub(super) fn outgoing(&self) -> Outgoing {
        match self {
            CallerAudio::Clip(packets) => Outgoing::Clip {
                packets: packets.clone(),
            },
            CallerAudio::Tone { hz } => Outgoing::Tone { hz: *hz },
        }
    }
}

impl Default for CallerAudio {
    /// The built-in melody.
    fn default() -> Self {
        CallerAudio::melody()
    }
}

/// Where a simulated call is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallPhase {
    /// The connect webhook is on its way or delivered; the user hears ringing.
    Ringing,
    /// The business pre-accepted; media is connecting.
    PreAccepted,
    /// The business accepted; the user is talking.
    Accepted,
    /// Over. Meta's terminate webhook was sent with this status and error code.
    Ended {
        /// COMPLETED or FAILED.
        status: String,
        /// The error code in the terminate webhook, if any.
        error: Option<i64>,
    },
}

/// A handle on a simulated call.
#[derive(Debug, Clone)]
pub struct SimulatedCall {
    /// Meta's call id.
    pub call_id: WaCallId,
    pub(super) phase: watch::Receiver<CallPhase>,
    pub(super) peer: watch::Receiver<Option<PeerHandle>>,
    pub(super) hang_up: mpsc::Sender<()>,
}

impl SimulatedCall {
    /// The current phase.
    pub fn phase(&self) -> CallPhase {
        self.phase.borrow().clone()
    }

    /// Waits until `f(phase)` holds or `limit` passes.
    pub async fn wait_for(
        &self,
        limit: Duration,
        f: impl FnMut(&CallPhase) -> bool,
    ) -> Option<CallPhase> {
        crate::sim::peer::wait_watch(&self.phase, limit, f).await
    }

    /// The caller's media peer, once the business has answered.
    pub fn peer(&self) -> Option<PeerHandle> {
        self.peer.borrow().clone()
    }

    /// What the caller has heard so far (`None` before media started).
    pub async fn recording(&self) -> Option<Recording> {
        self.peer()?.recording().await.ok()
    }

    /// The user hangs up now.
    pub async fn hang_up(&self) {
        let _ = self.hang_up.send(()).await;
    }
}

pub(super) enum Dispatch {
    Register(WaCallId, mpsc::Sender<FakeGraphEvent>),
    Forget(WaCallId),
}

/// The simulator: a fake Meta that places calls to switchboard. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Simulator {
    pub(super) cfg: SimulatorConfig,
    graph: FakeGraph,
    http: reqwest::Client,
    pub(super) dispatch: mpsc::Sender<Dispatch>,
    /// Deliveries so far (which node is next, with several).
    turn: Arc<std::sync::atomic::AtomicUsize>,
    /// Calls the business placed (Graph `connect`), for a simulated callee to take up
    /// ([`Simulator::next_outbound`]).
    pub(super) outbound: Arc<tokio::sync::Mutex<mpsc::Receiver<super::callee::Outbound>>>,
}

impl Simulator {
    /// Starts the simulator's dispatcher over `graph`'s event stream (from
    /// [`FakeGraph::take_events`]). The dispatcher ends when every handle is dropped.
    pub fn start(
        cfg: SimulatorConfig,
        graph: FakeGraph,
        events: mpsc::Receiver<FakeGraphEvent>,
    ) -> Simulator {
        let (dispatch, rx) = mpsc::channel(256);
        let (outbound_tx, outbound) = mpsc::channel(64);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        let turn: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let webhooks = Webhooks {
            cfg: cfg.clone(),
            http: http.clone(),
            turn: turn.clone(),
        };
        tokio::spawn(dispatcher(events, rx, outbound_tx, webhooks));
        Simulator {
            outbound: Arc::new(tokio::sync::Mutex::new(outbound)),
            cfg,
            graph,
            http,
            dispatch,
            turn,
        }
    }

    /// This simulator delivering every webhook to `url` only (one node of several), sharing
    /// its calls, dispatcher and fake Graph API.
    pub fn via(&self, url: impl Into<String>) -> Simulator {
        let mut sim = self.clone();
        sim.cfg.webhook_url = url.into();
        sim.cfg.more_webhook_urls.clear();
        sim
    }

    /// The fake Graph API behind this simulator.
    pub fn graph(&self) -> &FakeGraph {
        &self.graph
    }

    /// Places a call: a Meta-shaped offer, a signed `connect` webhook, and a task that plays
    /// WhatsApp's part until the call ends.
    pub async fn place_call(&self, spec: CallSpec) -> Result<SimulatedCall, SimError> {
        if matches!(spec.audio, CallerAudio::Tone { .. }) && !audio::TONES {
            return Err(SimError::NoTones);
        }
        let pending = match &self.cfg.relay {
            Some(relay) => PendingPeer::meta_via(relay)?,
            None => PendingPeer::meta(self.cfg.media_ip).await?,
        };
        let call_id = WaCallId(format!(
            "wacid.SIM{}",
            hex::encode(rand::random::<[u8; 12]>()).to_uppercase()
        ));
        self.graph
            .register_call(call_id.clone(), pending.offer().to_owned());
        let (tx, rx) = mpsc::channel(16);
        self.dispatch
            .send(Dispatch::Register(call_id.clone(), tx))
            .await
            .map_err(|_| SimError::Stopped)?;
        let (phase_tx, phase_rx) = watch::channel(CallPhase::Ringing);
        let (peer_tx, peer_rx) = watch::channel(None);
        let (hang_tx, hang_rx) = mpsc::channel(1);
        let task = CallTask {
            sim: self.clone(),
            call_id: call_id.clone(),
            spec,
            phase: phase_tx,
            peer_out: peer_tx,
        };
        let span = info_span!("simulated_call", call_id = %call_id);
        tokio::spawn(task.run(pending, rx, hang_rx).instrument(span));
        Ok(SimulatedCall {
            call_id,
            phase: phase_rx,
            peer: peer_rx,
            hang_up: hang_tx,
        })
    }

    /// Sends a signed webhook as Meta does, retrying a few times on failure (Meta retries
    /// undelivered webhooks); returns the last HTTP status.
    pub async fn deliver(&self, body: &[u8]) -> Option<u16> {
        Webhooks {
            cfg: self.cfg.clone(),
            http: self.http.clone(),
            turn: self.turn.clone(),
        }
        .deliver(body)
        .await
    }

    /// A webhook body of `call`, made to the business number `number` when given.
    pub(super) fn envelope(
        &self,
        number: Option<&str>,
        call: Call,
        contact: Option<Contact>,
        errors: Vec<WebhookErrorObject>,
    ) -> Vec<u8> {
        match number {
            Some(n) => envelope(
                &SimulatorConfig {
                    phone_number_id: n.to_owned(),
                    ..self.cfg.clone()
                },
                call,
                contact,
                errors,
            ),
            None => envelope(&self.cfg, call, contact, errors),
        }
    }
}

/// What delivering a webhook takes; the dispatcher has its own, to send users' permission
/// replies without holding a [`Simulator`] (which would keep its own control queue open).
struct Webhooks {
    cfg: SimulatorConfig,
    http: reqwest::Client,
    turn: Arc<std::sync::atomic::AtomicUsize>,
}

impl Webhooks {
    async fn deliver(&self, body: &[u8]) -> Option<u16> {
        let signature = sign(self.cfg.app_secret.expose(), body);
        let mut last = None;
        for attempt in 0..4u32 {
            // A retry goes on to the next node, as Meta's does through a load balancer.
            let turn = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                % (1 + self.cfg.more_webhook_urls.len());
            let url = match turn {
                0 => &self.cfg.webhook_url,
                n => &self.cfg.more_webhook_urls[n - 1],
            };
            let r = self
                .http
                .post(url)
                .header("content-type", "application/json")
                .header(SIGNATURE_HEADER, &signature)
                .body(body.to_vec())
                .send()
                .await;
            match r {
                Ok(resp) if resp.status().is_success() => return Some(resp.status().as_u16()),
                Ok(resp) => last = Some(resp.status().as_u16()),
                Err(e) => debug!(error = %e, "webhook delivery failed"),
            }
            tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
        }
        warn!(status = ?last, "webhook not delivered");
        last
    }
}

/// The body of Meta's user-initiated `connect` webhook for `call_id` from `from` (shown as
/// `name`) with `offer` (reference §3.1), unsigned.
pub fn connect_webhook(
    cfg: &SimulatorConfig,
    call_id: &WaCallId,
    from: &str,
    name: &str,
    offer: &str,
) -> Vec<u8> {
    let connect = Call {
        from: Some(from.to_owned()),
        to: Some(cfg.display_phone_number.clone()),
        timestamp: Some(UnixTime(unix_now())),
        direction: Some(CallDirection::UserInitiated),
        session: Some(Session::new(SdpType::Offer, offer)),
        ..Call::new(call_id.clone(), CallEventKind::Connect)
    };
    let contact = Contact {
        profile: Some(Profile {
            name: Some(name.to_owned()),
        }),
        wa_id: Some(from.to_owned()),
        user_id: None,
    };
    envelope(cfg, connect, Some(contact), vec![])
}

/// A `calls` webhook body around one call event.
fn envelope(
    cfg: &SimulatorConfig,
    call: Call,
    contact: Option<Contact>,
    errors: Vec<WebhookErrorObject>,
) -> Vec<u8> {
    {
        let value = ChangeValue {
            messaging_product: Some(MESSAGING_PRODUCT.into()),
            metadata: Some(Metadata {
                display_phone_number: Some(cfg.display_phone_number.clone()),
                phone_number_id: Some(cfg.phone_number_id.clone()),
            }),
            contacts: contact.into_iter().map(Into::into).collect(),
            calls: vec![call.into()],
            errors: errors.into_iter().map(Into::into).collect(),
            ..ChangeValue::default()
        };
        let env = WebhookEnvelope {
            object: OBJECT_WABA.into(),
            entry: vec![Entry {
                id: cfg.waba_id.clone(),
                changes: vec![Change {
                    value: value.into(),
                    field: FIELD_CALLS.into(),
                }
                .into()],
            }],
        };
        serde_json::to_vec(&env).expect("webhook types always serialize")
    }
}

async fn dispatcher(
    mut events: mpsc::Receiver<FakeGraphEvent>,
    mut control: mpsc::Receiver<Dispatch>,
    outbound: mpsc::Sender<super::callee::Outbound>,
    webhooks: Webhooks,
) {
    let mut calls: HashMap<WaCallId, mpsc::Sender<FakeGraphEvent>> = HashMap::new();
    let webhooks = Arc::new(webhooks);
    // Users' replies being delivered (each retries for a while): owned here, so they end with
    // the dispatcher.
    let mut replies = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            // A call is registered before its webhook is sent, so before any Graph event about
            // it exists; polling control first keeps an instant answer (a reject while the
            // webhook is still being handled) from overtaking its registration and being lost.
            biased;
            c = control.recv() => match c {
                Some(Dispatch::Register(id, tx)) => { calls.insert(id, tx); }
                Some(Dispatch::Forget(id)) => { calls.remove(&id); }
                None => return,
            },
            Some(_) = replies.join_next(), if !replies.is_empty() => {}
            Some(ev) = events.recv() => {
                if let FakeGraphEvent::PermissionRequested { phone_number_id, user, wamid, reply } = &ev {
                    let body = super::permission::reply_now(
                        &webhooks.cfg, phone_number_id, user, wamid, *reply,
                    );
                    if let Some(body) = body {
                        let webhooks = webhooks.clone();
                        replies.spawn(async move { webhooks.deliver(&body).await });
                    }
                    continue;
                }
                let Some(id) = ev.call_id() else { continue };
                if let Some(tx) = calls.get(id) {
                    // A call task that stopped listening has ended; nothing to deliver.
                    let _ = tx.try_send(ev);
                } else if let FakeGraphEvent::Connected { call_id, to, sdp } = ev {
                    // The business places a call: it waits for a simulated callee.
                    let _ = outbound.try_send(super::callee::Outbound {
                        call_id,
                        to,
                        offer: sdp,
                    });
                }
            }
        }
    }
}

struct CallTask {
    sim: Simulator,
    call_id: WaCallId,
    spec: CallSpec,
    phase: watch::Sender<CallPhase>,
    peer_out: watch::Sender<Option<PeerHandle>>,
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl CallTask {
    /// Applies the business's answer: the caller's media starts connecting (ICE + DTLS).
    fn start_media(&self, pending: PendingPeer, answer: &str) -> Option<crate::sim::peer::Peer> {
        match pending.connect(answer) {
            Ok(p) => {
                let _ = self.peer_out.send(Some(p.handle()));
                Some(p)
            }
            Err(e) => {
                warn!(error = %e, "caller could not use the answer");
                None
            }
        }
    }

    async fn run(
        self,
        pending: PendingPeer,
        mut graph_events: mpsc::Receiver<FakeGraphEvent>,
        mut hang_up: mpsc::Receiver<()>,
    ) {
        let offered_at = Instant::now();
        info!("calling switchboard");
        let cfg = SimulatorConfig {
            phone_number_id: self
                .spec
                .to
                .clone()
                .unwrap_or_else(|| self.sim.cfg.phone_number_id.clone()),
            ..self.sim.cfg.clone()
        };
        let body = connect_webhook(
            &cfg,
            &self.call_id,
            &self.spec.from,
            &self.spec.name,
            pending.offer(),
        );
        self.sim.deliver(&body).await;

        let mut pending = Some(pending);
        let mut peer: Option<crate::sim::peer::Peer> = None;
        let mut accepted: Option<(Instant, u64)> = None;
        let mut hang_up_open = true;
        let mut heard = 0u64;
        let mut last_media: Option<Instant> = None;
        let (status, error) = loop {
            let now = Instant::now();
            let heard_now = peer.as_ref().map_or(0, |p| p.status().packets_received);
            if heard_now > heard {
                heard = heard_now;
                last_media = Some(now);
            }
            let (deadline, why) = meta_clock(
                &self.sim.cfg,
                offered_at,
                accepted.map(|(at, _)| at),
                last_media,
                self.spec.hang_up_after,
            );
            let deadline = tokio::time::Instant::from_std(deadline);
            // Re-check the media rule often enough to notice the first packet.
            let wake = deadline.min(tokio::time::Instant::now() + Duration::from_millis(250));
            tokio::select! {
                ev = graph_events.recv() => match ev {
                    Some(FakeGraphEvent::PreAccepted { sdp, .. }) => {
                        if let Some(p) = pending.take() {
                            peer = self.start_media(p, &sdp);
                        }
                        self.phase.send_replace(CallPhase::PreAccepted);
                    }
                    Some(FakeGraphEvent::Accepted { sdp, .. }) => {
                        if let Some(p) = pending.take() {
                            peer = self.start_media(p, &sdp);
                        }
                        if let Some(p) = &peer {
                            let _ = p.send(self.spec.audio.outgoing()).await;
                        }
                        accepted = Some((Instant::now(), unix_now()));
                        self.phase.send_replace(CallPhase::Accepted);
                        info!("business accepted; the caller talks");
                    }
                    Some(FakeGraphEvent::Rejected { .. }) => break ("COMPLETED", None),
                    Some(FakeGraphEvent::Terminated { .. }) => break ("COMPLETED", None),
                    // Never routed to a call (the dispatcher takes them).
                    Some(FakeGraphEvent::Connected { .. } | FakeGraphEvent::PermissionRequested { .. }) => {}
                    None => break ("FAILED", None),
                },
                h = hang_up.recv(), if hang_up_open => match h {
                    Some(()) => break ("COMPLETED", None),
                    // Nobody holds the call's handle any more; the call goes on by itself.
                    None => hang_up_open = false,
                },
                _ = tokio::time::sleep_until(wake) => {
                    if tokio::time::Instant::now() >= deadline {
                        match why {
                            Deadline::NotAnswered => break ("FAILED", None),
                            Deadline::NoMedia => {
                                warn!(heard, "no media from the business; Meta ends the call");
                                break ("FAILED", Some(MEDIA_RECEIVE_TIMEOUT));
                            }
                            Deadline::HangUp => break ("COMPLETED", None),
                        }
                    }
                }
            }
        };
        if let Some(p) = &peer {
            let _ = p.close().await;
        }
        let end = unix_now();
        let mut call = Call {
            from: Some(self.spec.from.clone()),
            to: Some(self.sim.cfg.display_phone_number.clone()),
            timestamp: Some(UnixTime(end)),
            direction: Some(CallDirection::UserInitiated),
            status: Some(TerminateStatus::from(status)),
            ..Call::new(self.call_id.clone(), CallEventKind::Terminate)
        };
        if let Some((_, start)) = accepted {
            call.start_time = Some(UnixTime(start));
            call.end_time = Some(UnixTime(end));
            call.duration = Some(end.saturating_sub(start));
        }
        let errors = error
            .map(|code| WebhookErrorObject {
                code,
                message: Some("Media receive timeout".into()),
                title: None,
                href: None,
                error_data: Some(ErrorData {
                    messaging_product: None,
                    details: Some(
                        "The WhatsApp client received no media from the business.".into(),
                    ),
                }),
            })
            .into_iter()
            .collect();
        let body = self
            .sim
            .envelope(self.spec.to.as_deref(), call, None, errors);
        self.sim.deliver(&body).await;
        info!(status, ?error, "call ended");
        self.phase.send_replace(CallPhase::Ended {
            status: status.to_owned(),
            error,
        });
        let _ = self
            .sim
            .dispatch
            .send(Dispatch::Forget(self.call_id.clone()))
            .await;
        // Keep the peer alive until every handle on the call is gone, so its recording stays
        // readable after the end.
        self.phase.closed().await;
        drop(peer);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deadline {
    NotAnswered,
    NoMedia,
    HangUp,
}

/// Meta's clocks for one call: the accept window until accept; after it, the earliest of the
/// user's hang-up, the start-of-call media rule (nothing heard `no_media_timeout` after accept)
/// and the mid-call one (nothing heard for `silence_timeout`).
fn meta_clock(
    cfg: &SimulatorConfig,
    offered_at: Instant,
    accepted_at: Option<Instant>,
    last_media: Option<Instant>,
    hang_up_after: Option<Duration>,
) -> (Instant, Deadline) {
    let Some(at) = accepted_at else {
        return (offered_at + cfg.accept_window, Deadline::NotAnswered);
    };
    let media = match last_media {
        None => at + cfg.no_media_timeout,
        Some(t) => t.max(at) + cfg.silence_timeout,
    };
    match hang_up_after.map(|d| at + d) {
        Some(h) if h <= media => (h, Deadline::HangUp),
        _ => (media, Deadline::NoMedia),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_audio_is_the_built_in_melody() {
        let CallerAudio::Clip(packets) = CallSpec::default().audio else {
            panic!("the default is a clip");
        };
        assert_eq!(packets.len(), 201);
        assert_eq!(
            CallerAudio::from_ogg(MELODY).unwrap(),
            CallerAudio::melody()
        );
        assert!(matches!(
            CallerAudio::from_ogg(b"not ogg"),
            Err(OggError::NotOgg)
        ));
    }

    #[test]
    fn metas_clocks() {
        let cfg = SimulatorConfig::default();
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(
            meta_clock(&cfg, t0, None, None, Some(s(5))),
            (t0 + s(60), Deadline::NotAnswered)
        );
        let acc = t0 + s(3);
        assert_eq!(
            meta_clock(&cfg, t0, Some(acc), None, None),
            (acc + s(20), Deadline::NoMedia),
            "20 s rule at the start"
        );
        assert_eq!(
            meta_clock(&cfg, t0, Some(acc), None, Some(s(5))),
            (acc + s(5), Deadline::HangUp)
        );
        let heard = acc + s(40);
        assert_eq!(
            meta_clock(&cfg, t0, Some(acc), Some(heard), None),
            (heard + s(30), Deadline::NoMedia),
            "30 s rule mid-call"
        );
        assert_eq!(
            meta_clock(&cfg, t0, Some(acc), Some(heard), Some(s(60))),
            (acc + s(60), Deadline::HangUp)
        );
    }
}
