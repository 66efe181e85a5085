//! Mute, hold and blind transfers of a talking call.
//!
//! *Does not touch*: supervisors (`supervise`).

use std::time::Instant;

use tracing::info;

use super::*;

impl<R: Routing> Centre<R> {
    pub(super) fn mute_or_hold(
        &mut self,
        now: Instant,
        agent: AgentId,
        id: WaCallId,
        mute: Option<bool>,
        hold: Option<bool>,
    ) {
        // A call that does not exist is answered as one that is not yours: the answer tells
        // nobody which call ids are live.
        let Some(call) = self
            .calls
            .get_mut(&id)
            .filter(|c| matches!(&c.phase, Phase::Talking { agent: a, .. } if *a == agent))
        else {
            let notice = Notice::Refused {
                code: Refusal::NotTalking,
                message: format!("you are not talking on {id}"),
            };
            self.notify(agent, notice);
            return;
        };
        let Some(wa) = call.wa.clone() else {
            return;
        };
        let leg = self.sessions.get(&agent).and_then(|s| s.leg.clone());
        let Phase::Talking { muted, held, .. } = &mut call.phase else {
            return;
        };
        let was_held = *held;
        if let Some(m) = mute {
            *muted = m;
        }
        if let Some(h) = hold {
            *held = h;
        }
        let (muted, held) = (*muted, *held);
        // What the caller hears: hold audio, silence (muted), or the agent.
        self.actions.push_back(Action::Hold {
            stream: wa.stream,
            on: held,
        });
        let agent_voice = leg.as_ref().map(|l| l.leg).filter(|_| !muted && !held);
        self.actions.push_back(Action::Route {
            stream: wa.stream,
            source: agent_voice,
        });
        // What the agent hears: the caller, except on hold.
        if let Some(s) = leg.as_ref().and_then(|l| l.streams.first()) {
            self.actions.push_back(Action::Route {
                stream: *s,
                source: (!held).then_some(wa.leg),
            });
        }
        let state = if held {
            Stage::OnHold
        } else if muted {
            Stage::Muted
        } else {
            Stage::Talking
        };
        call.transitions.push((state, now, Some(agent.clone())));
        if held != was_held {
            let step = if held {
                CallStep::Held
            } else {
                CallStep::Resumed
            };
            self.actions
                .push_back(call_event(call, step, Some(agent.clone()), None));
        }
        self.notify(
            agent,
            Notice::CallState {
                call: id,
                muted,
                held,
            },
        );
    }

    /// `agent` is done with the call `id` while it goes on without them: nothing they say
    /// reaches it any more, and they are told why.
    pub(super) fn let_go(&mut self, agent: &AgentId, id: &WaCallId, reason: &str) {
        if let Some(leg) = self.sessions.get(agent).and_then(|s| s.leg.clone()) {
            if let Some(s) = leg.streams.first() {
                self.actions.push_back(Action::Route {
                    stream: *s,
                    source: None,
                });
            }
        }
        self.notify(
            agent.clone(),
            Notice::CallEnded {
                call: id.clone(),
                reason: reason.into(),
            },
        );
    }

    pub(super) fn transfer(
        &mut self,
        now: Instant,
        agent: AgentId,
        id: WaCallId,
        to: TransferTarget,
    ) {
        let talking = self.calls.get(&id).is_some_and(|c| {
            matches!(&c.phase, Phase::Talking { agent: a, .. } if *a == agent)
                && c.acceptance == Acceptance::Accepted
        });
        if !talking {
            let notice = Notice::Refused {
                code: Refusal::NotTalking,
                message: format!("you are not talking on {id}"),
            };
            self.notify(agent, notice);
            return;
        }
        let target_agent = match &to {
            TransferTarget::Agent(b) => {
                // As for a ring: available, and their session there with its audio up (an
                // agent whose page just closed can still read available during their grace).
                let free = self
                    .routing
                    .agent(b)
                    .is_some_and(|a| a.presence == Presence::Available)
                    && self.audio_up(b);
                if !free || *b == agent || !same_account(&agent.0, &b.0) {
                    let notice = Notice::Refused {
                        code: Refusal::AgentUnavailable,
                        message: format!("{b} cannot take a call now"),
                    };
                    self.notify(agent, notice);
                    return;
                }
                Some(b.clone())
            }
            TransferTarget::Queue(q) => {
                if self.routing.queue(q).is_none() || !same_account(&agent.0, &q.0) {
                    let notice = Notice::Refused {
                        code: Refusal::UnknownQueue,
                        message: format!("no queue {q}"),
                    };
                    self.notify(agent, notice);
                    return;
                }
                None
            }
        };
        info!(call_id = %id, from = %agent, ?to, "blind transfer");
        if let Some(call) = self.calls.get(&id) {
            let event = call_event(
                call,
                CallStep::Transferred,
                Some(agent.clone()),
                Some(to.clone()),
            );
            self.actions.push_back(event);
        }
        // The first agent is done with it: unroute them and start their wrap-up.
        self.let_go(&agent, &id, "transferred");
        self.start_wrap_up(now, &agent, &id);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        // The caller hears hold audio on the same stream meanwhile: SSRC, sequence numbers and
        // timestamps carry on (the WhatsApp leg never changes).
        if let Some(wa) = &call.wa {
            Self::hold_caller(&mut self.actions, wa.stream);
        }
        call.tried = vec![agent.clone()];
        if let TransferTarget::Queue(q) = &to {
            call.queue = q.clone();
            call.waiting_since = Some(now);
        }
        let queue = call.queue.clone();
        match target_agent {
            Some(b) => self.ring(now, &id, b),
            None => {
                let max_wait = self.max_wait(&queue);
                self.enter_queue(now, &id, max_wait, true);
            }
        }
    }
}
