//! Simulated WhatsApp users called *by* the business (business-initiated calls, reference §1.3,
//! §3.3, §3.4): what Meta does after a Graph `connect`.
//!
//! The fake Graph API takes the business's `connect` (with its offer) and gives the call an id;
//! the call then waits for a callee ([`Simulator::next_outbound`]), which the test or the
//! sandbox takes up with a [`CalleeSpec`] ([`Simulator::answer_outbound`]): Meta sends the
//! `RINGING` status; after `ring_for` the user answers — a Meta-shaped peer
//! (`crate::sim::peer::PendingPeer::meta_callee`: ICE-lite, `a=setup:active`) and Meta's
//! `connect` webhook carrying its answer, then, once media is up, the `ACCEPTED` status (after
//! media, as Meta sends it) — or declines (`REJECTED`, then `terminate`), or never answers
//! (the business ends it). Either side hangs up with `terminate` as for an inbound call.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{info, info_span, warn, Instrument};

use super::caller::{
    unix_now, CallPhase, CallerAudio, Dispatch, SimError, SimulatedCall, Simulator,
};
use super::graph::FakeGraphEvent;
use crate::ids::WaCallId;
use crate::sim::peer::PendingPeer;
use crate::whatsapp::model::{
    Call, CallDirection, CallEventKind, CallStatusKind, Change, ChangeValue, Entry, Metadata,
    SdpType, Session, Status, TerminateStatus, UnixTime, WebhookEnvelope, FIELD_CALLS,
    MESSAGING_PRODUCT, OBJECT_WABA,
};

/// A call the business placed (its Graph `connect`), waiting for a simulated callee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    /// The id the fake Graph API gave it.
    pub call_id: WaCallId,
    /// Who the business calls.
    pub to: String,
    /// The business's offer.
    pub offer: String,
}

/// What the called user does when it rings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pickup {
    /// Answers.
    Answer,
    /// Declines.
    Reject,
    /// Lets it ring until the business gives up.
    NoAnswer,
}

/// How a simulated callee behaves.
#[derive(Debug, Clone)]
pub struct CalleeSpec {
    /// How long the phone rings before the user acts.
    pub ring_for: Duration,
    /// What the user does then.
    pub pickup: Pickup,
    /// What the user says once connected.
    pub audio: CallerAudio,
    /// The user hangs up this long after answering; `None`: never (the business ends it).
    pub hang_up_after: Option<Duration>,
}

impl Default for CalleeSpec {
    fn default() -> Self {
        CalleeSpec {
            ring_for: Duration::from_millis(500),
            pickup: Pickup::Answer,
            audio: CallerAudio::default(),
            hang_up_after: None,
        }
    }
}

impl Simulator {
    /// The next call the business placed and no callee took up yet, waiting at most `limit`.
    pub async fn next_outbound(&self, limit: Duration) -> Option<Outbound> {
        let mut rx = self.outbound.lock().await;
        tokio::time::timeout(limit, rx.recv()).await.ok().flatten()
    }

    /// Plays the called user of `call` as `spec` says, until the call ends.
    pub async fn answer_outbound(
        &self,
        call: Outbound,
        spec: CalleeSpec,
    ) -> Result<SimulatedCall, SimError> {
        let (tx, rx) = mpsc::channel(16);
        self.dispatch
            .send(Dispatch::Register(call.call_id.clone(), tx))
            .await
            .map_err(|_| SimError::Stopped)?;
        let (phase_tx, phase_rx) = watch::channel(CallPhase::Ringing);
        let (peer_tx, peer_rx) = watch::channel(None);
        let (hang_tx, hang_rx) = mpsc::channel(1);
        let span = info_span!("simulated_callee", call_id = %call.call_id);
        let call_id = call.call_id.clone();
        let task = CalleeTask {
            sim: self.clone(),
            call,
            spec,
            phase: phase_tx,
            peer_out: peer_tx,
        };
        tokio::spawn(task.run(rx, hang_rx).instrument(span));
        Ok(SimulatedCall {
            call_id,
            phase: phase_rx,
            peer: peer_rx,
            hang_up: hang_tx,
        })
    }

    /// A `statuses` webhook of a business-initiated call (reference §3.4).
    fn status_webhook(&self, call: &Outbound, status: CallStatusKind) -> Vec<u8> {
        let value = ChangeValue {
            messaging_product: Some(MESSAGING_PRODUCT.into()),
            metadata: Some(Metadata {
                display_phone_number: Some(self.cfg.display_phone_number.clone()),
                phone_number_id: Some(self.cfg.phone_number_id.clone()),
            }),
            statuses: vec![Status {
                id: call.call_id.clone(),
                kind: Some("call".into()),
                status,
                timestamp: Some(UnixTime(unix_now())),
                recipient_id: Some(call.to.clone()),
                recipient_user_id: None,
                biz_opaque_callback_data: None,
                errors: None,
            }
            .into()],
            ..ChangeValue::default()
        };
        let env = WebhookEnvelope {
            object: OBJECT_WABA.into(),
            entry: vec![Entry {
                id: self.cfg.waba_id.clone(),
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

struct CalleeTask {
    sim: Simulator,
    call: Outbound,
    spec: CalleeSpec,
    phase: watch::Sender<CallPhase>,
    peer_out: watch::Sender<Option<crate::sim::peer::PeerHandle>>,
}

impl CalleeTask {
    fn business_initiated(&self, event: CallEventKind) -> Call {
        Call {
            from: Some(self.sim.cfg.display_phone_number.clone()),
            to: Some(self.call.to.clone()),
            timestamp: Some(UnixTime(unix_now())),
            direction: Some(CallDirection::BusinessInitiated),
            ..Call::new(self.call.call_id.clone(), event)
        }
    }

    async fn run(self, mut graph: mpsc::Receiver<FakeGraphEvent>, mut hang_up: mpsc::Receiver<()>) {
        info!(to = %self.call.to, "the business calls; the phone rings");
        let ringing = self.sim.status_webhook(&self.call, CallStatusKind::Ringing);
        self.sim.deliver(&ringing).await;
        let pickup = tokio::time::sleep(self.spec.ring_for);
        tokio::pin!(pickup);
        let mut picked = false;
        let mut peer = None;
        let mut answered_at: Option<u64> = None;
        let mut hang_up_open = true;
        // Reset once the user answered and means to hang up; a year is "never" here.
        let hang_up_at = tokio::time::sleep(Duration::from_secs(365 * 24 * 3600));
        tokio::pin!(hang_up_at);
        loop {
            tokio::select! {
                () = &mut pickup, if !picked => {
                    picked = true;
                    match self.spec.pickup {
                        Pickup::NoAnswer => {}
                        Pickup::Reject => {
                            info!("the user declines");
                            let rejected = self.sim.status_webhook(&self.call, CallStatusKind::Rejected);
                            self.sim.deliver(&rejected).await;
                            break;
                        }
                        Pickup::Answer => {
                            match PendingPeer::meta_callee(self.sim.cfg.media_ip, &self.call.offer).await {
                                Ok((p, answer)) => {
                                    let _ = self.peer_out.send(Some(p.handle()));
                                    let mut connect = self.business_initiated(CallEventKind::Connect);
                                    connect.session = Some(Session::new(SdpType::Answer, &answer));
                                    let body = self.sim.envelope(None, connect, None, vec![]);
                                    self.sim.deliver(&body).await;
                                    // The business may end the call before the media is up.
                                    let up = tokio::select! {
                                        c = p.wait_for(Duration::from_secs(10), |s| s.connected) => c.is_some(),
                                        () = ended_by_business(&mut graph) => {
                                            info!("the business ended the call before its media was up");
                                            peer = Some(p);
                                            break;
                                        }
                                    };
                                    if !up {
                                        warn!("the callee's media never connected");
                                        peer = Some(p);
                                        break;
                                    }
                                    let _ = p.send(self.spec.audio.outgoing()).await;
                                    // Meta says ACCEPTED once the call is up, often after media.
                                    let accepted = self.sim.status_webhook(&self.call, CallStatusKind::Accepted);
                                    self.sim.deliver(&accepted).await;
                                    answered_at = Some(unix_now());
                                    self.phase.send_replace(CallPhase::Accepted);
                                    if let Some(after) = self.spec.hang_up_after {
                                        hang_up_at.as_mut().reset(tokio::time::Instant::now() + after);
                                    }
                                    peer = Some(p);
                                    info!("the user answered");
                                }
                                Err(e) => {
                                    warn!(error = %e, "the callee could not use the offer");
                                    break;
                                }
                            }
                        }
                    }
                }
                // The business ended it (or gave up ringing).
                () = ended_by_business(&mut graph) => break,
                h = hang_up.recv(), if hang_up_open => match h {
                    Some(()) => break,
                    None => hang_up_open = false,
                },
                () = &mut hang_up_at => break,
            }
        }
        if let Some(p) = &peer {
            let _ = p.close().await;
        }
        let end = unix_now();
        let mut terminate = self.business_initiated(CallEventKind::Terminate);
        terminate.status = Some(TerminateStatus::Completed);
        if let Some(start) = answered_at {
            terminate.start_time = Some(UnixTime(start));
            terminate.end_time = Some(UnixTime(end));
            terminate.duration = Some(end.saturating_sub(start));
        }
        let body = self.sim.envelope(None, terminate, None, vec![]);
        self.sim.deliver(&body).await;
        info!(
            answered = answered_at.is_some(),
            "the business-initiated call ended"
        );
        self.phase.send_replace(CallPhase::Ended {
            status: "COMPLETED".into(),
            error: None,
        });
        let _ = self
            .sim
            .dispatch
            .send(Dispatch::Forget(self.call.call_id.clone()))
            .await;
        self.phase.closed().await;
        drop(peer);
    }
}

/// Until the business ends the call (Graph `terminate`, or `reject`), or the fake is gone.
async fn ended_by_business(graph: &mut mpsc::Receiver<FakeGraphEvent>) {
    loop {
        match graph.recv().await {
            Some(FakeGraphEvent::Terminated { .. } | FakeGraphEvent::Rejected { .. }) | None => {
                return
            }
            Some(_) => {}
        }
    }
}
