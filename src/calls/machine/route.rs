//! The routing steps of a call: ringing the next free agent or queueing, answering, talking,
//! an agent lost, wrap-up, and serving waiting calls in order.
//!
//! *Does not touch*: how a call ends (`end`).

use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::*;

impl<R: Routing> Centre<R> {
    /// Pre-accepted (or back from a missed ring): ring the next agent, else apply the queue's
    /// policy.
    pub(super) fn route_call(&mut self, now: Instant, id: &WaCallId) {
        // The agent chosen for it across the nodes first, once (a later round is ordinary).
        let preferred = self.calls.get_mut(id).and_then(|c| c.preferred.take());
        let Some(call) = self.calls.get(id) else {
            return;
        };
        let queue = call.queue.clone();
        let preferred = preferred.filter(|p| !call.tried.contains(p) && self.free_for(p, &queue));
        // With the order shared, a free agent here may be due to an older call elsewhere.
        let next = (!self.queues_shared)
            .then(|| self.next_free(&queue, &call.tried))
            .flatten();
        if let Some(agent) = preferred.or(next) {
            self.ring(now, id, agent);
            return;
        }
        match self.policy(&queue) {
            NoAgentPolicy::Decline if !call.acceptance.committed() => {
                self.end_at_meta(id, false);
                self.end(
                    now,
                    id,
                    Outcome::Declined,
                    "no agent is free and the queue declines".into(),
                    EndedBy::System,
                );
            }
            policy => {
                let max_wait = match policy {
                    NoAgentPolicy::Queue { max_wait } => max_wait,
                    NoAgentPolicy::Decline => ACCEPTED_FALLBACK_WAIT,
                };
                self.enter_queue(now, id, max_wait, true);
            }
        }
    }

    /// The call waits in its queue: accepted (at once if its leg is connected) so the caller
    /// hears hold audio rather than ringing into Meta's window.
    pub(super) fn enter_queue(
        &mut self,
        now: Instant,
        id: &WaCallId,
        max_wait: Duration,
        back: bool,
    ) {
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        let since = *call.waiting_since.get_or_insert(now);
        call.tried.clear();
        set_phase(
            call,
            &mut self.actions,
            now,
            Phase::Queued {
                until: since + max_wait,
            },
        );
        if call.acceptance == Acceptance::Accepted {
            if let Some(wa) = &call.wa {
                Self::hold_caller(&mut self.actions, wa.stream);
            }
        }
        let queue = call.queue.clone();
        if back {
            self.routing.enqueue(&queue, id.clone(), since);
        } else {
            self.routing.requeue_front(&queue, id.clone(), since);
        }
        self.maybe_accept(now, id);
        self.actions.push_back(Action::FloorChanged);
    }

    pub(super) fn ring(&mut self, now: Instant, id: &WaCallId, agent: AgentId) {
        let rings_for = self.cfg.times(&agent.0).ring_timeout;
        let until = now + rings_for;
        if !self.calls.contains_key(id) {
            return;
        }
        // Calls come before call-backs.
        self.withdraw_task_offer(&agent, Some(TaskStop::Call));
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        self.routing.ring(&agent, id);
        set_phase(
            call,
            &mut self.actions,
            now,
            Phase::Ringing {
                agent: agent.clone(),
                until,
            },
        );
        let notice = Notice::Ringing {
            call: id.clone(),
            from: call.from.clone(),
            name: call.name.clone(),
            queue: call.queue.clone(),
            business_number: call.business_number.clone(),
            display_number: call.display_number.clone(),
            waited: now.saturating_duration_since(call.offered_at),
            rings_for,
        };
        let queue = call.queue.clone();
        self.routing.dequeue(&queue, id);
        info!(call_id = %id, %agent, "ringing");
        self.notify(agent.clone(), notice);
        self.notify_presence(&agent);
        self.actions.push_back(Action::FloorChanged);
    }

    /// The ringing agent did not take the call (timeout or decline): away for a missed call,
    /// and the call goes on to the next agent.
    pub(super) fn ring_missed(&mut self, now: Instant, id: &WaCallId, agent: &AgentId) {
        self.routing.missed(agent);
        self.notify(
            agent.clone(),
            Notice::RingStopped {
                call: id.clone(),
                reason: RingStop::Missed,
            },
        );
        self.notify_presence(agent);
        if let Some(call) = self.calls.get_mut(id) {
            call.tried.push(agent.clone());
            self.actions.push_back(Action::Metric(Metric::RingNoAnswer {
                queue: call.queue.clone(),
            }));
        }
        self.route_call(now, id);
    }

    /// An agent who was ringing is gone: the ring moves on, with no penalty.
    pub(super) fn ring_lost(&mut self, now: Instant, agent: &AgentId) {
        let ringing = self
            .calls
            .values()
            .find(|c| matches!(&c.phase, Phase::Ringing { agent: a, .. } if a == agent))
            .map(|c| c.id.clone());
        if let Some(id) = ringing {
            self.routing.unring(agent);
            if let Some(call) = self.calls.get_mut(&id) {
                call.tried.push(agent.clone());
            }
            self.route_call(now, &id);
        }
    }

    pub(super) fn answer(&mut self, now: Instant, agent: AgentId, id: WaCallId) {
        let ringing = self
            .calls
            .get(&id)
            .is_some_and(|c| matches!(&c.phase, Phase::Ringing { agent: a, .. } if *a == agent));
        if !ringing {
            let notice = Notice::Refused {
                code: Refusal::NotRinging,
                message: format!("{id} is not ringing at you"),
            };
            self.notify(agent, notice);
            return;
        }
        if !self
            .sessions
            .get(&agent)
            .is_some_and(|s| s.connected && s.leg.is_some())
        {
            let notice = Notice::Refused {
                code: Refusal::NoAudio,
                message: "your audio connection is not up; the call rings on".into(),
            };
            self.notify(agent, notice);
            return;
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        self.routing.talking(&agent, &id);
        if !call.agents.contains(&agent) {
            call.agents.push(agent.clone());
        }
        info!(call_id = %id, %agent, "agent answered");
        call.answer_waits_caller = Some(now);
        if !call.acceptance.committed() {
            call.answer_waits_accept = Some(now);
        }
        if call.acceptance == Acceptance::Accepted {
            self.start_talking(now, &id, &agent);
        } else {
            set_phase(
                call,
                &mut self.actions,
                now,
                Phase::Connecting {
                    agent: agent.clone(),
                },
            );
            self.connect_parties(&id, &agent);
            self.maybe_accept(now, &id);
        }
        self.notify_presence(&agent);
        self.actions.push_back(Action::FloorChanged);
    }

    /// Caller and agent talk: both routed, the agent told. An accepted call counts as answered
    /// from its first agent.
    pub(super) fn start_talking(&mut self, now: Instant, id: &WaCallId, agent: &AgentId) {
        if let Some(call) = self.calls.get_mut(id) {
            if call.acceptance == Acceptance::Accepted {
                mark_answered(call, now, self.cfg.service_level_target, &mut self.actions);
            }
            set_phase(call, &mut self.actions, now, Phase::talking(agent.clone()));
        }
        self.connect_parties(id, agent);
        self.notify_talking(id, agent);
        // The live mark learns who took it: a takeover records the agent and the answer.
        self.mark_live(now, id);
    }

    /// Marks `id` live in the records with what is known of it now.
    pub(super) fn mark_live(&mut self, now: Instant, id: &WaCallId) {
        let Some(call) = self.calls.get(id) else {
            return;
        };
        let mut if_lost = Ended::of(
            call.clone(),
            now,
            Outcome::Failed,
            "lost with the node that handled it".into(),
            EndedBy::System,
        );
        if_lost.transitions.push((Stage::Ended, now, None));
        self.actions.push_back(Action::MarkLive {
            call: id.clone(),
            business_number: call.business_number.clone(),
            if_lost: Box::new(if_lost),
        });
    }

    /// Sends `accept` once: when an agent answered or the call is queued, and the leg is
    /// connected.
    pub(super) fn maybe_accept(&mut self, now: Instant, id: &WaCallId) {
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        let wants = matches!(call.phase, Phase::Connecting { .. } | Phase::Queued { .. });
        if wants && call.connected && call.acceptance == Acceptance::Open {
            if let Some(wa) = &call.wa {
                call.acceptance = Acceptance::Sent;
                self.actions.push_back(Action::Graph {
                    call: id.clone(),
                    action: GraphAction::Accept,
                    sdp: Some(wa.sdp.clone()),
                });
                call.accept_waits_packet = Some(now);
                if let Some(t) = call.answer_waits_accept.take() {
                    self.actions.push_back(Action::Metric(Metric::Setup {
                        step: SetupStep::AnswerToAccept,
                        took: now.saturating_duration_since(t),
                    }));
                }
            }
        }
    }

    /// Caller ↔ agent, both ways; hold and mute off.
    pub(super) fn connect_parties(&mut self, id: &WaCallId, agent: &AgentId) {
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        let Some(wa) = call.wa.clone() else {
            return;
        };
        let Some(leg) = self.sessions.get(agent).and_then(|s| s.leg.clone()) else {
            return;
        };
        if let Phase::Talking { muted, held, .. } = &mut call.phase {
            *muted = false;
            *held = false;
        }
        self.actions.push_back(Action::Hold {
            stream: wa.stream,
            on: false,
        });
        self.actions.push_back(Action::Route {
            stream: wa.stream,
            source: Some(leg.leg),
        });
        if let Some(s) = leg.streams.first() {
            self.actions.push_back(Action::Route {
                stream: *s,
                source: Some(wa.leg),
            });
        }
    }

    pub(super) fn agent_lost(&mut self, now: Instant, agent: &AgentId) {
        self.ring_lost(now, agent);
        let on_call = self
            .calls
            .values()
            .find(|c| matches!(&c.phase, Phase::Talking { agent: a, .. } | Phase::Connecting { agent: a } if a == agent))
            .map(|c| c.id.clone());
        let Some(id) = on_call else {
            return;
        };
        let until = now + self.cfg.times(&agent.0).grace;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        warn!(call_id = %id, %agent, "agent lost mid-call; caller on hold for the grace period");
        if let Some(wa) = &call.wa {
            Self::hold_caller(&mut self.actions, wa.stream);
        }
        set_phase(
            call,
            &mut self.actions,
            now,
            Phase::AgentLost {
                agent: agent.clone(),
                until,
            },
        );
        self.actions.push_back(Action::FloorChanged);
    }

    pub(super) fn hang_up(&mut self, now: Instant, id: &WaCallId, by: EndedBy, reason: &str) {
        let Some(call) = self.calls.get(id) else {
            return;
        };
        let accepted = call.acceptance.committed();
        let outcome = if call.answered_at.is_some() {
            Outcome::Answered
        } else {
            Outcome::Failed
        };
        self.end_at_meta(id, accepted);
        self.end(now, id, outcome, reason.into(), by);
    }

    pub(super) fn start_wrap_up(&mut self, now: Instant, agent: &AgentId, id: &WaCallId) {
        let until = now + self.cfg.times(&agent.0).wrap_up;
        self.routing.wrap_up(now, agent, id, until);
        if let Some(s) = self.sessions.get_mut(agent) {
            s.wrap_until = (until > now).then_some(until);
        }
        self.notify_presence(agent);
    }

    /// True when `agent` is available, takes calls from `queue`, and can be rung (see
    /// [`Centre::audio_up`]).
    pub(super) fn free_for(&self, agent: &AgentId, queue: &QueueId) -> bool {
        self.audio_up(agent)
            && self
                .routing
                .agent(agent)
                .is_some_and(|a| a.presence == Presence::Available && a.queues.contains(queue))
    }

    /// Whether `agent`'s session is there with its audio connected. Presence alone can lag
    /// behind it: an agent whose page reloaded (or whose leg was replaced) while rung, on a
    /// call or wrapping up comes back to available with no connection yet, and a ring they
    /// cannot answer would only cost the caller the ring timeout and them a missed call.
    pub(super) fn audio_up(&self, agent: &AgentId) -> bool {
        self.sessions
            .get(agent)
            .is_some_and(|s| s.online && s.connected && s.leg.is_some())
    }

    /// The longest-idle free agent of `queue` (see [`Centre::free_for`]), skipping `tried`.
    pub(super) fn next_free(&self, queue: &QueueId, tried: &[AgentId]) -> Option<AgentId> {
        let mut skip = tried.to_vec();
        skip.extend(self.sessions.keys().filter(|a| !self.audio_up(a)).cloned());
        self.routing.next_agent(queue, &skip)
    }

    /// Whether a waiting call may ring an agent now. One Meta has not accepted rings only
    /// within Meta's window: past it, the window's deadline would take the ring straight back
    /// (at the same instant, again and again), and the queue is where its leg's connection
    /// accepts it at once.
    pub(super) fn may_ring(&self, c: &Call, now: Instant) -> bool {
        c.acceptance.committed() || now < c.offered_at + self.cfg.times(&c.queue.0).answer_deadline
    }

    /// Rings free agents for waiting calls, oldest first per queue (with the order shared by
    /// several nodes, `Input::Dispatch` does instead).
    pub(super) fn dispatch(&mut self, now: Instant) {
        if self.queues_shared {
            return;
        }
        for queue in self.routing.queue_ids() {
            for w in self.routing.waiting(&queue) {
                let ready = self.calls.get(&w.call).is_some_and(|c| {
                    matches!(c.phase, Phase::Queued { .. }) && self.may_ring(c, now)
                });
                if !ready {
                    continue;
                }
                // Only agents whose audio is up (see `Centre::audio_up`).
                let Some(agent) = self.next_free(&queue, &[]) else {
                    break;
                };
                self.ring(now, &w.call, agent);
            }
        }
    }
}
