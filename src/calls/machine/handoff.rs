//! A waiting call moving between two nodes' centres (several nodes): the node it waits on
//! releases it when another node has the agent to take it, and that node adopts it. Its Meta
//! leg stays where Meta's offer was answered; the adopting node's "WhatsApp leg" for it is the
//! internal leg bridged to it (`media::Engine::offer_trunk`), so everything after — ringing,
//! answering, hold, transfer, records, Graph `terminate` — is the adopting node's, as for a call
//! of its own.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::info;

use super::{Acceptance, Call, Caller, Centre, Phase, Stage};
use crate::calls::event::{Action, WaLeg};
use crate::ids::{AgentId, QueueId, WaCallId};
use crate::routing::Routing;

/// What travels with a waiting call to the node that takes it over. Times are durations (the
/// nodes share no monotonic clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandedCall {
    /// Meta's call id.
    pub call: WaCallId,
    /// The caller's number.
    pub from: Option<String>,
    /// The caller's profile name.
    pub name: Option<String>,
    /// The business number's id.
    pub business_number: Option<String>,
    /// The business number as people know it.
    #[serde(default)]
    pub display_number: Option<String>,
    /// Its queue.
    pub queue: QueueId,
    /// How long ago Meta's offer arrived, in milliseconds.
    pub offered_ms_ago: u64,
    /// How long it has waited so far, in milliseconds.
    pub waited_ms: u64,
    /// How much longer it may wait, in milliseconds.
    pub wait_left_ms: u64,
    /// The node it comes from.
    pub from_node: String,
    /// The agent chosen for it (on the adopting node), rung first if still free there.
    #[serde(default)]
    pub agent: Option<AgentId>,
}

impl<R: Routing> Centre<R> {
    /// Lets a waiting call go to another node: it leaves this centre without a word to Meta
    /// and without a record (the adopting node writes it); its Meta leg is returned, and stays
    /// open: the caller goes on hearing hold audio until the bridge carries the other node's.
    /// `None` when the call is not (or no longer) waiting, accepted, in a queue.
    pub fn release(
        &mut self,
        now: Instant,
        id: &WaCallId,
        node: &str,
    ) -> Option<(HandedCall, WaLeg)> {
        let call = self.calls.get(id)?;
        let (Phase::Queued { until }, true, Some(wa)) = (
            &call.phase,
            call.acceptance == Acceptance::Accepted,
            &call.wa,
        ) else {
            return None;
        };
        let (until, wa) = (*until, wa.clone());
        let call = self.calls.remove(id)?;
        self.wa_legs.remove(&wa.leg);
        self.routing.dequeue(&call.queue, id);
        self.tombstone(id.clone());
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let handed = HandedCall {
            call: call.id.clone(),
            from: call.from.clone(),
            name: call.name.clone(),
            business_number: call.business_number.clone(),
            display_number: call.display_number.clone(),
            queue: call.queue.clone(),
            offered_ms_ago: ms(now.saturating_duration_since(call.received_at)),
            waited_ms: ms(now.saturating_duration_since(call.waiting_since.unwrap_or(now))),
            wait_left_ms: ms(until.saturating_duration_since(now)),
            from_node: node.to_owned(),
            agent: None,
        };
        info!(call_id = %id, "waiting call released to another node");
        self.actions.push_back(Action::FloorChanged);
        Some((handed, wa))
    }

    /// Takes up a call another node released; `wa` is this node's end of the bridge to its
    /// Meta leg. It goes to the front of its queue (it has waited already) and rings the next
    /// free agent at once. False (and the leg closed) when draining or when the call is here
    /// already: the other node keeps it.
    pub fn adopt(&mut self, now: Instant, handed: HandedCall, wa: WaLeg) -> bool {
        let id = handed.call.clone();
        if self.calls.contains_key(&id) || self.draining {
            self.actions.push_back(Action::CloseLeg { leg: wa.leg });
            return false;
        }
        let back = |ms: u64| now.checked_sub(Duration::from_millis(ms)).unwrap_or(now);
        let received_at = back(handed.offered_ms_ago);
        let waiting_since = back(handed.waited_ms);
        let queue = if self.routing.queue(&handed.queue).is_some() {
            handed.queue.clone()
        } else {
            self.routing.default_queue().clone()
        };
        let mut call = Call::new(
            id.clone(),
            Caller {
                from: handed.from,
                name: handed.name,
                business_number: handed.business_number.clone(),
                display_number: handed.display_number,
                preferred: None,
            },
            queue.clone(),
            received_at,
            now,
            Stage::HandedOver,
        );
        call.wa = Some(wa.clone());
        call.acceptance = Acceptance::Accepted;
        call.waiting_since = Some(waiting_since);
        info!(call_id = %id, from_node = %handed.from_node, "waiting call taken over from another node");
        self.wa_legs.insert(wa.leg, id.clone());
        self.calls.insert(id.clone(), call);
        self.mark_live(now, &id);
        // This end plays the hold audio now: the call's account's own, when it has one.
        self.actions
            .extend(Self::hold_audio_of(&self.cfg, wa.leg, &queue));
        // Accepted long ago at Meta: this end sends (hold audio, then the agent) from now on.
        self.actions.push_back(Action::StartSending { leg: wa.leg });
        let wait = (now + Duration::from_millis(handed.wait_left_ms))
            .saturating_duration_since(waiting_since);
        self.enter_queue(now, &id, wait, false);
        // The agent taken for it in the shared order first, so that agent is the one rung.
        if let Some(agent) = handed.agent.filter(|a| self.free_for(a, &queue)) {
            self.ring(now, &id, agent);
        }
        self.dispatch(now);
        true
    }
}
