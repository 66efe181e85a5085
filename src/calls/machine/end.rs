//! How calls end: every end once, legs closed, agents told and wrapped up, Meta told with
//! the right final action, the record handed over; shutdown and aborts; helpers to notify.
//!
//! *Does not touch*: routing choices (`route`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tracing::info;

use super::*;

impl<R: Routing> Centre<R> {
    pub(super) fn on_shutdown(&mut self, now: Instant) {
        let ids: Vec<WaCallId> = self.calls.keys().cloned().collect();
        for id in ids {
            self.end_by_system(
                now,
                &id,
                "switchboard is shutting down",
                "switchboard shut down",
            );
        }
    }

    /// Ends `call` at Meta and here, as failed: the driver found the machine cannot carry it on
    /// (it panicked handling one of its inputs). Nothing when the call is not live.
    pub fn abort(&mut self, now: Instant, call: &WaCallId) {
        self.end_by_system(
            now,
            call,
            "the call failed in switchboard",
            "internal error in switchboard",
        );
    }

    pub(super) fn end_by_system(&mut self, now: Instant, id: &WaCallId, told: &str, reason: &str) {
        let Some(call) = self.calls.get(id) else {
            return;
        };
        let accepted = call.acceptance.committed();
        self.end_at_meta(id, accepted);
        if let Some(agent) = self.calls.get(id).and_then(|c| c.phase.agent().cloned()) {
            self.notify(
                agent,
                Notice::CallEnded {
                    call: id.clone(),
                    reason: told.into(),
                },
            );
        }
        self.end(now, id, Outcome::Failed, reason.into(), EndedBy::System);
    }

    /// The call an input concerns, when it names one (itself or by its Meta leg): what a
    /// failure handling the input is logged with.
    pub fn call_of(&self, input: &Input) -> Option<WaCallId> {
        match input {
            Input::Offered { call, .. }
            | Input::Terminated { call, .. }
            | Input::Answered { call, .. }
            | Input::GraphDone { call, .. }
            | Input::Dispatch { call, .. } => Some(call.clone()),
            Input::MediaConnected { leg }
            | Input::MediaGone { leg, .. }
            | Input::Dtmf { leg, .. }
            | Input::Stats { leg, .. } => self.wa_legs.get(leg).cloned(),
            Input::FirstPacket { stream } | Input::SourceFlowing { stream, .. } => {
                self.wa_legs.get(&stream.leg).cloned()
            }
            _ => None,
        }
    }

    /// Ends a live call: legs closed, agents told and wrapped up, record written.
    pub(super) fn end(
        &mut self,
        now: Instant,
        id: &WaCallId,
        outcome: Outcome,
        reason: String,
        by: EndedBy,
    ) {
        let Some(call) = self.calls.remove(id) else {
            return;
        };
        if let Some(wa) = &call.wa {
            self.wa_legs.remove(&wa.leg);
            self.actions.push_back(Action::CloseLeg { leg: wa.leg });
        }
        self.routing.dequeue(&call.queue, id);
        // Supervisors monitoring it stop.
        let watchers: Vec<AgentId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.monitoring.as_ref().is_some_and(|(c, _)| c == id))
            .map(|(a, _)| a.clone())
            .collect();
        for sup in watchers {
            self.stop_monitoring(&sup);
            self.notify(
                sup,
                Notice::Monitoring {
                    call: None,
                    whisper: false,
                },
            );
        }
        match call.phase.clone() {
            Phase::Ringing { agent, .. } => {
                self.routing.unring(&agent);
                let why = if by == EndedBy::Caller {
                    RingStop::CallerHungUp
                } else {
                    RingStop::CallEnded
                };
                self.notify(
                    agent.clone(),
                    Notice::RingStopped {
                        call: id.clone(),
                        reason: why,
                    },
                );
                self.notify_presence(&agent);
            }
            Phase::Connecting { agent } | Phase::Talking { agent, .. } => {
                if let Some(s) = self
                    .sessions
                    .get(&agent)
                    .and_then(|s| s.leg.as_ref())
                    .and_then(|l| l.streams.first())
                {
                    self.actions.push_back(Action::Route {
                        stream: *s,
                        source: None,
                    });
                }
                if by != EndedBy::Agent {
                    self.notify(
                        agent.clone(),
                        Notice::CallEnded {
                            call: id.clone(),
                            reason: reason.clone(),
                        },
                    );
                } else {
                    self.notify(
                        agent.clone(),
                        Notice::CallEnded {
                            call: id.clone(),
                            reason: "you hung up".into(),
                        },
                    );
                }
                self.start_wrap_up(now, &agent, id);
            }
            Phase::AgentLost { agent, .. } => {
                // Gone agent: straight back to their previous state if they return.
                self.routing.wrap_up(now, &agent, id, now);
            }
            Phase::Calling { agent, .. } => {
                self.call_back_ended(now, &call, &agent, outcome, by, &reason);
            }
            _ => {}
        }
        // A caller lost while waiting for an agent (hung up, or waited the longest allowed).
        let waiting = matches!(
            call.phase,
            Phase::Answering | Phase::PreAccepting | Phase::Ringing { .. } | Phase::Queued { .. }
        );
        if waiting && matches!(outcome, Outcome::Abandoned | Outcome::TimedOut) {
            self.task_for_lost_caller(&call, TaskReason::Abandoned);
        }
        self.finish(now, call, outcome, reason, by);
    }

    pub(super) fn finish(
        &mut self,
        now: Instant,
        mut call: Call,
        outcome: Outcome,
        reason: String,
        by: EndedBy,
    ) {
        call.transitions.push((Stage::Ended, now, None));
        self.counters.ended += 1;
        let level = self.service.entry(call.queue.clone()).or_default();
        level.ended += 1;
        if call.answered_within(self.cfg.service_level_target) {
            level.within_target += 1;
        }
        info!(call_id = %call.id, outcome = outcome.as_str(), ended_by = by.as_str(), %reason, "call ended");
        self.tombstone(call.id.clone());
        self.actions.push_back(Action::Finished(Box::new(Ended::of(
            call, now, outcome, reason, by,
        ))));
        self.actions.push_back(Action::FloorChanged);
    }

    /// The caller hears hold audio: the WhatsApp stream's source cut, hold on. (An associated
    /// function over the queue, as the callers hold a borrow of the call.)
    pub(super) fn hold_caller(actions: &mut VecDeque<Action>, stream: crate::ids::StreamId) {
        actions.push_back(Action::Route {
            stream,
            source: None,
        });
        actions.push_back(Action::Hold { stream, on: true });
    }

    /// Tells Meta the call is over: `terminate` once accepted (or accepting), else `reject`.
    pub(super) fn end_at_meta(&mut self, id: &WaCallId, accepted: bool) {
        let action = if accepted {
            GraphAction::Terminate
        } else {
            GraphAction::Reject
        };
        self.actions.push_back(Action::Graph {
            call: id.clone(),
            action,
            sdp: None,
        });
    }

    pub(super) fn tombstone(&mut self, id: WaCallId) {
        let (order, set) = &mut self.tombstones;
        if set.insert(id.clone()) {
            order.push_back(id);
            if order.len() > TOMBSTONES {
                if let Some(old) = order.pop_front() {
                    set.remove(&old);
                }
            }
        }
    }

    pub(super) fn policy(&self, queue: &QueueId) -> NoAgentPolicy {
        self.routing
            .queue(queue)
            .map_or(NoAgentPolicy::Decline, |q| q.policy)
    }

    pub(super) fn max_wait(&self, queue: &QueueId) -> Duration {
        match self.policy(queue) {
            NoAgentPolicy::Queue { max_wait } => max_wait,
            NoAgentPolicy::Decline => ACCEPTED_FALLBACK_WAIT,
        }
    }

    pub(super) fn notify(&mut self, agent: AgentId, notice: Notice) {
        self.actions.push_back(Action::Notify { agent, notice });
    }

    pub(super) fn notify_presence(&mut self, agent: &AgentId) {
        let presence = self
            .routing
            .agent(agent)
            .map_or(Presence::Offline, |a| a.presence.clone());
        let changed = match presence {
            Presence::Offline => self.told.remove(agent).is_some(),
            _ => self.told.insert(agent.clone(), presence.clone()).as_ref() != Some(&presence),
        };
        if changed {
            self.actions
                .push_back(Action::Event(Box::new(HostEvent::Agent {
                    agent: agent.clone(),
                    presence: presence.clone(),
                })));
        }
        self.notify(agent.clone(), Notice::Presence(presence));
    }

    pub(super) fn notify_talking(&mut self, id: &WaCallId, agent: &AgentId) {
        let Some(call) = self.calls.get(id) else {
            return;
        };
        let notice = Notice::Talking {
            call: id.clone(),
            from: call.from.clone(),
            name: call.name.clone(),
        };
        self.notify(agent.clone(), notice);
    }
}
