//! What Meta and the media engine tell the machine about a call: an offer, the engine's answer,
//! Graph results, the caller hanging up, legs connecting or going, first packets, statistics,
//! and the call's own deadlines (Meta's accept window, queue waits, grace periods).
//!
//! *Does not touch*: the agents' own commands (`agents`), routing steps (`route`).

use std::time::Instant;

use tracing::{debug, info, warn};

use super::*;

impl<R: Routing> Centre<R> {
    pub(super) fn on_offered(
        &mut self,
        now: Instant,
        received_at: Instant,
        id: WaCallId,
        caller: Caller,
        unshared: bool,
        offer: String,
    ) {
        let Caller {
            from,
            name,
            business_number,
            display_number,
            preferred,
        } = caller;
        if self.calls.contains_key(&id) || self.tombstones.1.contains(&id) {
            debug!(call_id = %id, "duplicate or late connect; ignored");
            return;
        }
        let queue = crate::routing::queue_of(
            &self.cfg.number_queues,
            self.routing.default_queue(),
            business_number.as_deref(),
        );
        let mut call = Call::new(
            id.clone(),
            Caller {
                from,
                name,
                business_number: business_number.clone(),
                display_number,
                preferred,
            },
            queue.clone(),
            received_at,
            now,
            Stage::Offered,
        );
        call.offered_at = now;
        let on_number = self
            .calls
            .values()
            .filter(|c| c.business_number == business_number)
            .count();
        let setting_up = self
            .calls
            .values()
            .filter(|c| !c.connected && c.acceptance != Acceptance::Accepted)
            .count();
        self.counters.offered += 1;
        self.actions.push_back(Action::Metric(Metric::Offered {
            queue: queue.clone(),
        }));
        // Its account's backend hears of every call Meta offers, one declined at once too
        // (its `call.ended` follows).
        self.actions
            .push_back(call_event(&call, CallStep::Offered, None, None));
        let refusal = if self.draining {
            Some((RejectReason::Draining, "switchboard is draining"))
        } else if unshared {
            Some((
                RejectReason::SharedStateDown,
                "the nodes' shared state (Redis) is unreachable",
            ))
        } else if on_number >= self.cfg.max_calls_per_number {
            self.counters.rejected_at_capacity += 1;
            Some((
                RejectReason::AtCapacity,
                "over the business number's concurrent call cap",
            ))
        } else if setting_up >= self.cfg.max_setting_up {
            self.counters.rejected_setup_busy += 1;
            Some((
                RejectReason::SetupBusy,
                "as many calls as allowed are being set up",
            ))
        } else if !self.routing.staffed(&queue) {
            Some((RejectReason::Unstaffed, "nobody is signed in to the queue"))
        } else if self.policy(&queue) == NoAgentPolicy::Decline
            && self.next_free(&queue, &[]).is_none()
        {
            Some((
                RejectReason::NoFreeAgent,
                "no agent is free and the queue declines",
            ))
        } else {
            None
        };
        // They called in: whatever call-back waits for them is done with.
        if let Some(from) = call.from.as_deref().and_then(normalize_number) {
            self.drop_tasks_of(&queue, &from, TaskStop::CalledIn);
        }
        if let Some((why, reason)) = refusal {
            if why == RejectReason::Unstaffed {
                self.task_for_lost_caller(&call, TaskReason::Unstaffed);
            }
            self.counters.declined_at_once += 1;
            self.actions.push_back(Action::Metric(Metric::Rejected {
                queue: queue.clone(),
                reason: why,
            }));
            info!(call_id = %id, %queue, reason, "call declined at once");
            self.end_at_meta(&id, false);
            call.transitions.push((Stage::Declined, now, None));
            self.finish(now, call, Outcome::Declined, reason.into(), EndedBy::System);
            return;
        }
        info!(call_id = %id, %queue, "call offered");
        self.actions.push_back(Action::AnswerWhatsApp {
            call: id.clone(),
            offer,
        });
        self.calls.insert(id.clone(), call);
        self.mark_live(now, &id);
        self.actions.push_back(Action::FloorChanged);
    }

    /// What makes `leg` (a call's WhatsApp leg, or this node's end of a handed-over call) play
    /// the hold audio of the account of `queue`, when it has its own. (An associated function:
    /// callers hold a borrow of the call.)
    pub(super) fn hold_audio_of(cfg: &CentreConfig, leg: LegId, queue: &QueueId) -> Option<Action> {
        let account = crate::accounts::account_of(&queue.0);
        cfg.account_hold
            .get(account)
            .map(|audio| Action::HoldAudio {
                leg,
                audio: audio.clone(),
            })
    }

    pub(super) fn on_answered(
        &mut self,
        now: Instant,
        id: WaCallId,
        result: Result<WaLeg, LegFailure>,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            // The call ended while the engine answered: its leg must not linger.
            if let Ok(wa) = result {
                self.actions.push_back(Action::CloseLeg { leg: wa.leg });
            }
            return;
        };
        if call.phase != Phase::Answering {
            // Answered too late (Meta's window moved the call on meanwhile): a leg the call does
            // not use must not linger either.
            if let Ok(wa) = result {
                if call.wa.as_ref().is_none_or(|w| w.leg != wa.leg) {
                    self.actions.push_back(Action::CloseLeg { leg: wa.leg });
                }
            }
            return;
        }
        match result {
            Ok(wa) => {
                self.wa_legs.insert(wa.leg, id.clone());
                self.actions
                    .extend(Self::hold_audio_of(&self.cfg, wa.leg, &call.queue));
                self.actions.push_back(Action::Graph {
                    call: id.clone(),
                    action: GraphAction::PreAccept,
                    sdp: Some(wa.sdp.clone()),
                });
                self.actions.push_back(Action::Metric(Metric::Setup {
                    step: SetupStep::WebhookToPreAccept,
                    took: now.saturating_duration_since(call.received_at),
                }));
                call.wa = Some(wa);
                set_phase(call, &mut self.actions, now, Phase::PreAccepting);
            }
            Err(e) => {
                warn!(call_id = %id, error = %e, "offer unusable; rejecting");
                self.actions.push_back(Action::Metric(Metric::Rejected {
                    queue: call.queue.clone(),
                    reason: RejectReason::MediaRefused,
                }));
                self.end_at_meta(&id, false);
                self.end(
                    now,
                    &id,
                    Outcome::Failed,
                    format!("offer unusable: {e}"),
                    EndedBy::System,
                );
            }
        }
    }

    pub(super) fn on_graph_done(
        &mut self,
        now: Instant,
        id: WaCallId,
        action: GraphAction,
        result: Result<(), GraphFailure>,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if let Err(GraphFailure {
            code: Some(code), ..
        }) = &result
        {
            call.meta_errors.push(*code);
        }
        match (action, result) {
            (GraphAction::PreAccept, Ok(())) if call.phase == Phase::PreAccepting => {
                self.route_call(now, &id);
            }
            (GraphAction::PreAccept, Err(f)) => {
                // Meta's window may have queued the call meanwhile and its leg connected: then
                // `accept` went out behind this `pre_accept`, Meta may take it, and only a
                // `terminate` ends the call.
                let accepted = call.acceptance.committed();
                warn!(call_id = %id, error = %f.message, "pre_accept failed; ending the call");
                self.end_at_meta(&id, accepted);
                self.end(
                    now,
                    &id,
                    Outcome::Failed,
                    format!("pre_accept failed: {}", f.message),
                    EndedBy::System,
                );
            }
            (GraphAction::Accept, Ok(())) => {
                call.acceptance = Acceptance::Accepted;
                let wa = call.wa.clone();
                let phase = call.phase.clone();
                call.transitions
                    .push((Stage::Accepted, now, phase.agent().cloned()));
                if let Some(wa) = wa {
                    match &phase {
                        Phase::Connecting { agent } => {
                            let agent = agent.clone();
                            mark_answered(
                                call,
                                now,
                                self.cfg.service_level_target,
                                &mut self.actions,
                            );
                            set_phase(call, &mut self.actions, now, Phase::talking(agent.clone()));
                            self.actions.push_back(Action::StartSending { leg: wa.leg });
                            self.notify_talking(&id, &agent);
                        }
                        _ => {
                            // Accepted into a queue (or the agent left meanwhile): hold audio.
                            self.actions.push_back(Action::Hold {
                                stream: wa.stream,
                                on: true,
                            });
                            self.actions.push_back(Action::StartSending { leg: wa.leg });
                        }
                    }
                }
                self.actions.push_back(Action::FloorChanged);
            }
            (GraphAction::Accept, Err(f)) => {
                warn!(call_id = %id, error = %f.message, "accept failed; ending the call");
                if let Some(agent) = call.phase.agent().cloned() {
                    self.notify(
                        agent.clone(),
                        Notice::CallEnded {
                            call: id.clone(),
                            reason: format!("WhatsApp refused to connect the call: {}", f.message),
                        },
                    );
                }
                self.end_at_meta(&id, false);
                self.end(
                    now,
                    &id,
                    Outcome::Failed,
                    format!("accept failed: {}", f.message),
                    EndedBy::System,
                );
            }
            (a @ (GraphAction::Reject | GraphAction::Terminate), Err(f)) => {
                warn!(call_id = %id, action = a.name(), error = %f.message, "ending the call at Meta failed");
            }
            _ => {}
        }
    }

    pub(super) fn on_terminated(
        &mut self,
        now: Instant,
        id: WaCallId,
        status: Option<String>,
        errors: Vec<i64>,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            // A terminate before its connect (§9): remember it so the connect changes nothing.
            self.tombstone(id);
            return;
        };
        call.meta_errors.extend(errors);
        let talked = call.answered_at.is_some();
        let outcome = if talked {
            Outcome::Answered
        } else if status.as_deref() == Some("FAILED") {
            Outcome::Failed
        } else {
            Outcome::Abandoned
        };
        info!(call_id = %id, ?status, "the caller's side ended the call");
        self.end(
            now,
            &id,
            outcome,
            format!(
                "ended by WhatsApp ({})",
                status.as_deref().unwrap_or("no status")
            ),
            EndedBy::Caller,
        );
    }

    pub(super) fn on_media_connected(&mut self, now: Instant, leg: LegId) {
        if let Some(id) = self.wa_legs.get(&leg).cloned() {
            if let Some(call) = self.calls.get_mut(&id) {
                call.connected = true;
                call.transitions.push((Stage::MediaConnected, now, None));
            }
            self.maybe_accept(now, &id);
            self.start_sending(&id);
            return;
        }
        let Some(agent) = self.agent_legs.get(&leg).cloned() else {
            return;
        };
        if let Some(s) = self.sessions.get_mut(&agent) {
            s.connected = true;
        }
        let waiting_for_audio = self.routing.agent(&agent).is_some_and(|a| {
            matches!(
                &a.presence,
                Presence::Away {
                    reason: AwayReason::NoAudio
                }
            )
        });
        if waiting_for_audio {
            let _ = self.routing.set_presence(now, &agent, true, None);
            self.notify_presence(&agent);
            self.actions.push_back(Action::FloorChanged);
        }
        // An agent coming back during the grace period takes the call up again.
        let lost = self
            .calls
            .values()
            .find(|c| matches!(&c.phase, Phase::AgentLost { agent: a, .. } if *a == agent))
            .map(|c| c.id.clone());
        if let Some(id) = lost {
            info!(call_id = %id, %agent, "agent is back; resuming the call");
            self.start_talking(now, &id, &agent);
            self.actions.push_back(Action::FloorChanged);
        }
    }

    pub(super) fn on_media_gone(&mut self, now: Instant, leg: LegId, failed: bool) {
        if let Some(id) = self.wa_legs.remove(&leg) {
            let Some(call) = self.calls.get_mut(&id) else {
                return;
            };
            // Ours is gone already: nothing to close.
            call.wa = None;
            if !failed {
                // Meta closed the media (DTLS close_notify): the caller's side ended the call.
                // Meta knows; its terminate webhook, if it follows, finds the call ended.
                let outcome = if call.answered_at.is_some() {
                    Outcome::Answered
                } else {
                    Outcome::Abandoned
                };
                info!(call_id = %id, "WhatsApp closed the media: the caller's side ended the call");
                self.end(
                    now,
                    &id,
                    outcome,
                    "ended by WhatsApp (media closed)".into(),
                    EndedBy::Caller,
                );
                return;
            }
            let accepted = call.acceptance.committed();
            warn!(call_id = %id, failed, "the WhatsApp leg is gone; ending the call");
            self.end_at_meta(&id, accepted);
            if let Some(agent) = self.calls.get(&id).and_then(|c| c.phase.agent().cloned()) {
                self.notify(
                    agent,
                    Notice::CallEnded {
                        call: id.clone(),
                        reason: "the caller's audio connection failed".into(),
                    },
                );
            }
            self.end(
                now,
                &id,
                Outcome::Failed,
                "WhatsApp media failed".into(),
                EndedBy::System,
            );
            return;
        }
        if let Some(agent) = self.agent_legs.remove(&leg) {
            let Some(s) = self.sessions.get_mut(&agent) else {
                return;
            };
            if s.leg.as_ref().is_some_and(|l| l.leg == leg) {
                s.leg = None;
                s.connected = false;
                self.agent_lost(now, &agent);
                let idle = self
                    .routing
                    .agent(&agent)
                    .is_some_and(|a| matches!(a.presence, Presence::Available));
                if idle {
                    let _ =
                        self.routing
                            .set_presence(now, &agent, false, Some(AwayReason::NoAudio));
                    self.notify_presence(&agent);
                }
            }
        }
    }

    /// The first packet to Meta after `accept`.
    pub(super) fn on_first_packet(&mut self, now: Instant, stream: StreamId) {
        let Some(call) = self
            .wa_legs
            .get(&stream.leg)
            .and_then(|id| self.calls.get_mut(id))
        else {
            return;
        };
        if let Some(t) = call.accept_waits_packet.take() {
            self.actions.push_back(Action::Metric(Metric::Setup {
                step: SetupStep::AcceptToFirstPacket,
                took: now.saturating_duration_since(t),
            }));
        }
        if let Some(t) = call.answer_waits_packet.take() {
            self.actions.push_back(Action::Metric(Metric::Setup {
                step: SetupStep::CalleeAnswerToFirstPacket,
                took: now.saturating_duration_since(t),
            }));
        }
    }

    /// The caller's audio reached a stream; it counts when that is the answering agent's.
    pub(super) fn on_source_flowing(&mut self, now: Instant, stream: StreamId, source: LegId) {
        let Some(call) = self
            .wa_legs
            .get(&source)
            .and_then(|id| self.calls.get_mut(id))
        else {
            return;
        };
        let agent_leg = call
            .phase
            .agent()
            .and_then(|a| self.sessions.get(a))
            .and_then(|s| s.leg.as_ref());
        if agent_leg.is_none_or(|l| l.leg != stream.leg) {
            return;
        }
        if let Some(t) = call.answer_waits_caller.take() {
            self.actions.push_back(Action::Metric(Metric::Setup {
                step: SetupStep::AnswerToFirstCallerPacket,
                took: now.saturating_duration_since(t),
            }));
        }
    }

    pub(super) fn on_stats(&mut self, leg: LegId, stats: LegStats) {
        let (id, label) = if let Some(id) = self.wa_legs.get(&leg) {
            (id.clone(), LegOf::WhatsApp)
        } else if let Some(agent) = self.agent_legs.get(&leg) {
            let Some(c) = self.calls.values().find(|c| c.phase.agent() == Some(agent)) else {
                return;
            };
            (c.id.clone(), LegOf::Agent(agent.clone()))
        } else {
            return;
        };
        if let Some(call) = self.calls.get_mut(&id) {
            match call.stats.iter_mut().find(|(l, _)| *l == label) {
                Some((_, s)) => *s = stats,
                None => call.stats.push((label, stats)),
            }
        }
    }

    pub(super) fn on_call_deadline(&mut self, now: Instant, id: &WaCallId) {
        let Some(call) = self.calls.get(id) else {
            return;
        };
        let answer_by = call.offered_at + self.cfg.times(&call.queue.0).answer_deadline;
        if awaits_answer(call) && now >= answer_by {
            // Meta's accept window: answer (into the queue) or decline now, never let it ring
            // out at Meta.
            if let Phase::Ringing { agent, .. } = call.phase.clone() {
                self.routing.unring(&agent);
                self.notify(
                    agent.clone(),
                    Notice::RingStopped {
                        call: id.clone(),
                        reason: RingStop::NotAnsweredInTime,
                    },
                );
                self.notify_presence(&agent);
            }
            match self.policy(&self.calls[id].queue.clone()) {
                NoAgentPolicy::Queue { max_wait } => self.enter_queue(now, id, max_wait, false),
                NoAgentPolicy::Decline => {
                    self.end_at_meta(id, false);
                    self.end(
                        now,
                        id,
                        Outcome::Declined,
                        "not answered within Meta's window".into(),
                        EndedBy::System,
                    );
                }
            }
            return;
        }
        match call.phase.clone() {
            Phase::Calling { until, .. } if until <= now => self.call_back_unanswered(now, id),
            Phase::Ringing { agent, until } if until <= now => {
                info!(call_id = %id, %agent, "ring timeout; next agent");
                self.ring_missed(now, id, &agent);
            }
            Phase::Queued { until } if until <= now => {
                info!(call_id = %id, "longest queue wait reached; ending the call");
                let accepted = call.acceptance.committed();
                self.end_at_meta(id, accepted);
                self.end(
                    now,
                    id,
                    Outcome::TimedOut,
                    "waited the longest allowed in the queue".into(),
                    EndedBy::System,
                );
            }
            Phase::AgentLost { agent, until } if until <= now => {
                info!(call_id = %id, %agent, "agent did not come back; the call goes back to its queue");
                let queue = call.queue.clone();
                let since = call.waiting_since.unwrap_or(call.offered_at);
                if self.sessions.get(&agent).is_some_and(|s| s.online) {
                    // Back on the page but without audio: no longer on this call.
                    self.routing.wrap_up(now, &agent, id, now);
                    let _ =
                        self.routing
                            .set_presence(now, &agent, false, Some(AwayReason::NoAudio));
                    self.notify(agent.clone(), Notice::CallEnded { call: id.clone(), reason: "your audio did not come back in time; the call went back to the queue".into() });
                    self.notify_presence(&agent);
                } else {
                    self.sessions.remove(&agent);
                    self.routing.sign_out(&agent);
                }
                self.routing.requeue_front(&queue, id.clone(), since);
                let max_wait = self.max_wait(&queue);
                if let Some(call) = self.calls.get_mut(id) {
                    call.tried.clear();
                    call.waiting_since = Some(since);
                    set_phase(
                        call,
                        &mut self.actions,
                        now,
                        Phase::Queued {
                            until: now + max_wait,
                        },
                    );
                }
                self.actions.push_back(Action::FloorChanged);
            }
            _ => {}
        }
    }
}
