//! Call-backs (business-initiated calls, reference §1.3, §3.3, §3.4): an agent dials, Meta
//! rings the customer, the customer's answer arrives by webhook, and the call goes on as any
//! other; and the call-back tasks that bring lost callers back to an agent.
//!
//! A call-back's life:
//!
//! ```text
//! dial (agent on call, no call id) ─▶ Calling ─▶ Calling(ringing) ─▶ answer applied ─▶ Talking
//!      │ refused: the agent is told why          │ REJECTED / terminate / no answer: ended
//! ```
//!
//! Meta's `accept` has no part here: the call counts as accepted from `connect` (only a
//! `terminate` ends it), and media starts once the customer's answer is applied and the leg
//! connects.
//!
//! *Does not touch*: how calls end (`end`), routing steps (`route`).

use std::time::Instant;

use tracing::{debug, info, warn};

use super::*;
use crate::calls::event::meta_sentence;
use crate::store::PermissionState;

/// The most early statuses and answers kept for call ids `connect` has not returned yet.
const EARLY: usize = 64;
/// The most customers whose asker is remembered until they reply.
const ASKED: usize = 10_000;
/// What an agent reads for a number that is not one.
const BAD_NUMBER: &str = "that is not a WhatsApp number: 6 to 15 digits, with its country code";

/// A call-back whose `connect` is on its way.
#[derive(Debug, Clone)]
pub(super) struct Dial {
    agent: AgentId,
    to: String,
    name: Option<String>,
    task: Option<String>,
    queue: QueueId,
    business_number: Option<String>,
    since: Instant,
    /// The agent stopped it: whatever `connect` gives is ended at once.
    cancelled: bool,
}

/// A call-back task and whom it is offered to.
#[derive(Debug, Clone)]
pub(super) struct TaskState {
    pub(super) task: Task,
    /// Not offered before then.
    pub(super) due: Option<Instant>,
    pub(super) offered: Option<AgentId>,
    skipped: Vec<AgentId>,
}

impl<R: Routing> Centre<R> {
    /// What an agent's call-back dials: the placeholder its presence names until Meta's call
    /// id is known.
    fn dial_placeholder(dial: u64) -> WaCallId {
        WaCallId(format!("callback-{dial}"))
    }

    pub(super) fn call_back(
        &mut self,
        now: Instant,
        agent: AgentId,
        to: String,
        task: Option<String>,
    ) {
        let refuse = |code: Refusal, message: &str| Notice::Refused {
            code,
            message: message.into(),
        };
        let Some(to) = normalize_number(&to) else {
            self.notify(agent, refuse(Refusal::BadNumber, BAD_NUMBER));
            return;
        };
        // A dial on its way already has the agent on a call (under its placeholder).
        let free = self
            .routing
            .agent(&agent)
            .is_some_and(|a| matches!(a.presence, Presence::Available | Presence::Away { .. }));
        if !free {
            self.notify(
                agent,
                refuse(
                    Refusal::Busy,
                    "you can call back only when you are not on a call, ringing or wrapping up",
                ),
            );
            return;
        }
        if !self.audio_up(&agent) {
            self.notify(
                agent,
                refuse(Refusal::NoAudio, "your audio connection is not up"),
            );
            return;
        }
        let taken = match &task {
            Some(id) => match self.tasks.get(id) {
                Some(t) if t.offered.as_ref() == Some(&agent) => {
                    self.actions
                        .push_back(Action::ForgetTask { task: id.clone() });
                    self.tasks.remove(id)
                }
                _ => {
                    self.notify(
                        agent,
                        refuse(
                            Refusal::NoSuchTask,
                            "that call-back task is not offered to you",
                        ),
                    );
                    return;
                }
            },
            None => None,
        };
        // A task's customer is the one called, whatever number came with it.
        let (queue, to) = match &taken {
            Some(t) => (t.task.queue.clone(), t.task.to.clone()),
            None => (self.home_queue(&agent), to),
        };
        if let Some(t) = &taken {
            self.notify(
                agent.clone(),
                Notice::TaskStopped {
                    task: t.task.id.clone(),
                    reason: TaskStop::Taken,
                },
            );
        }
        // A task for the same customer is done with too: they are being called now.
        let name = taken.as_ref().and_then(|t| t.task.name.clone());
        self.drop_tasks_of(&queue, &to, TaskStop::Cancelled);
        let business_number = self.number_of(&queue);
        let dial = self.next_dial;
        self.next_dial += 1;
        self.routing.talking(&agent, &Self::dial_placeholder(dial));
        info!(%agent, dial, %queue, "call-back dialled");
        self.dials.insert(
            dial,
            Dial {
                agent: agent.clone(),
                to: to.clone(),
                name,
                task,
                queue,
                business_number: business_number.clone(),
                since: now,
                cancelled: false,
            },
        );
        self.actions.push_back(Action::Dial {
            dial,
            agent: agent.clone(),
            to: to.clone(),
            business_number,
        });
        self.tell_call_back(&agent, &to, None, CallBackStatus::Calling, None);
        self.notify_presence(&agent);
        self.actions.push_back(Action::FloorChanged);
    }

    /// The queue an agent's own call-backs and permission requests belong to: their first.
    fn home_queue(&self, agent: &AgentId) -> QueueId {
        self.routing
            .agent(agent)
            .and_then(|a| a.queues.first().cloned())
            .unwrap_or_else(|| self.routing.default_queue().clone())
    }

    /// The agent's call-back that Meta has placed and the customer not answered.
    fn calling_of(&self, agent: &AgentId) -> Option<WaCallId> {
        self.calls
            .values()
            .find(|c| matches!(&c.phase, Phase::Calling { agent: a, .. } if a == agent))
            .map(|c| c.id.clone())
    }

    /// The agent of a call-back that ended unanswered (or was never placed) is free again,
    /// with no wrap-up: nobody talked.
    fn free_agent(&mut self, now: Instant, agent: &AgentId) {
        self.routing.end_wrap_up(now, agent);
        self.notify_presence(agent);
    }

    /// Ends a placed call-back at Meta (only `terminate` ends one) and here.
    fn end_call_back(
        &mut self,
        now: Instant,
        id: &WaCallId,
        outcome: Outcome,
        reason: &str,
        by: EndedBy,
    ) {
        self.end_at_meta(id, true);
        self.end(now, id, outcome, reason.into(), by);
    }

    /// The business number a call-back from `queue` is placed from: one whose calls go to
    /// that queue, else any of the queue's account, else the main one (`None`).
    fn number_of(&self, queue: &QueueId) -> Option<String> {
        let mut numbers: Vec<(&String, &QueueId)> = self.cfg.number_queues.iter().collect();
        numbers.sort();
        numbers
            .iter()
            .find(|(_, q)| *q == queue)
            .or_else(|| numbers.iter().find(|(_, q)| same_account(&q.0, &queue.0)))
            .map(|(n, _)| (*n).clone())
    }

    /// The agent stops their call-back before the customer answered.
    pub(super) fn cancel_call_back(&mut self, now: Instant, agent: AgentId) {
        let dial = self
            .dials
            .iter_mut()
            .find(|(_, d)| d.agent == agent && !d.cancelled);
        if let Some((_, d)) = dial {
            d.cancelled = true;
            let to = d.to.clone();
            info!(%agent, "call-back cancelled before Meta answered connect");
            self.tell_call_back(&agent, &to, None, CallBackStatus::Cancelled, None);
            self.free_agent(now, &agent);
            self.actions.push_back(Action::FloorChanged);
            return;
        }
        match self.calling_of(&agent) {
            Some(id) => self.end_call_back(
                now,
                &id,
                Outcome::Abandoned,
                "cancelled by the agent before the customer answered",
                EndedBy::Agent,
            ),
            None => self.notify(
                agent,
                Notice::Refused {
                    code: Refusal::NotYourCall,
                    message: "you have no call-back ringing".into(),
                },
            ),
        }
    }

    pub(super) fn on_dialed(
        &mut self,
        now: Instant,
        dial: u64,
        result: Result<Placed, DialFailure>,
    ) {
        let Some(d) = self.dials.remove(&dial) else {
            warn!(dial, "a call-back's result for no dial");
            if let Ok(p) = result {
                self.end_at_meta(&p.call, true);
                self.actions.push_back(Action::CloseLeg { leg: p.wa.leg });
            }
            return;
        };
        let early = match &result {
            Ok(p) => self.early.remove(&p.call).unwrap_or_default(),
            Err(_) => vec![],
        };
        if self.dials.is_empty() {
            self.early.clear();
        }
        let mut call = Call::new(
            WaCallId(String::new()),
            Caller {
                from: Some(d.to.clone()),
                name: d.name.clone(),
                business_number: d.business_number.clone(),
                display_number: None,
                preferred: None,
            },
            d.queue.clone(),
            d.since,
            d.since,
            Stage::Calling,
        );
        call.transitions = vec![(Stage::Calling, d.since, Some(d.agent.clone()))];
        call.agents.push(d.agent.clone());
        call.dialled = Some(Dialled {
            by: d.agent.clone(),
            task: d.task.clone(),
        });
        // Only a `terminate` ends a placed call-back: Meta has no `reject` for it.
        call.acceptance = Acceptance::Accepted;
        let placed = match result {
            Ok(p) => p,
            Err(f) => {
                let code = f.refusal.code();
                let message = f.refusal.sentence();
                info!(agent = %d.agent, call_id = %f.attempt, ?code, "call-back not placed: {message}");
                call.id = f.attempt;
                call.meta_errors.extend(code);
                self.actions.push_back(Action::Metric(Metric::CallBack {
                    outcome: "refused",
                    code,
                }));
                if !d.cancelled {
                    self.notify(
                        d.agent.clone(),
                        Notice::CallBack {
                            to: d.to.clone(),
                            call: None,
                            status: CallBackStatus::Failed,
                            code,
                            message: message.clone(),
                            can_ask_permission: f.refusal.can_ask(),
                            retry_at: f.refusal.retry_at(),
                        },
                    );
                    self.free_agent(now, &d.agent);
                }
                self.finish(now, call, Outcome::Failed, message, EndedBy::System);
                return;
            }
        };
        let id = placed.call.clone();
        call.id = id.clone();
        call.wa = Some(placed.wa.clone());
        self.actions.push_back(Action::Metric(Metric::CallBack {
            outcome: "placed",
            code: None,
        }));
        if d.cancelled || self.tombstones.1.contains(&id) || self.calls.contains_key(&id) {
            // Stopped by the agent (already told), or ended by Meta before `connect` even
            // answered: Meta has the call, so it is ended there and recorded.
            let by = if d.cancelled {
                EndedBy::Agent
            } else {
                EndedBy::Caller
            };
            self.actions
                .push_back(Action::CloseLeg { leg: placed.wa.leg });
            if d.cancelled {
                self.end_at_meta(&id, true);
            } else {
                self.tell_call_back(&d.agent, &d.to, Some(&id), CallBackStatus::NoAnswer, None);
                self.free_agent(now, &d.agent);
            }
            if !self.calls.contains_key(&id) {
                self.finish(
                    now,
                    call,
                    Outcome::Abandoned,
                    "ended before the customer answered".into(),
                    by,
                );
            }
            return;
        }
        let until = now + self.cfg.callback_no_answer;
        call.phase = Phase::Calling {
            agent: d.agent.clone(),
            until,
            ringing: false,
            answering: false,
        };
        self.wa_legs.insert(placed.wa.leg, id.clone());
        self.actions
            .extend(Self::hold_audio_of(&self.cfg, placed.wa.leg, &d.queue));
        self.routing.talking(&d.agent, &id);
        info!(call_id = %id, agent = %d.agent, "call-back placed; waiting for the customer");
        self.calls.insert(id.clone(), call);
        self.mark_live(now, &id);
        self.tell_call_back(&d.agent, &d.to, Some(&id), CallBackStatus::Calling, None);
        self.notify_presence(&d.agent);
        self.actions.push_back(Action::FloorChanged);
        // What Meta said before `connect` answered, in order.
        for (at, input) in early {
            match input {
                Input::CalleeStatus { call, status } => self.on_callee_status(at, call, status),
                Input::CalleeAnswered {
                    call,
                    sdp,
                    received_at,
                } => self.on_callee_answered(now, call, sdp, received_at),
                _ => {}
            }
        }
    }

    /// Keeps Meta's word on a call id not known yet while a `connect` is on its way; true when
    /// kept.
    fn keep_early(&mut self, now: Instant, call: &WaCallId, input: Input) -> bool {
        if self.dials.is_empty()
            || self.calls.contains_key(call)
            || self.tombstones.1.contains(call)
        {
            return false;
        }
        if !self.early.contains_key(call) && self.early.len() >= EARLY {
            return false;
        }
        self.early
            .entry(call.clone())
            .or_default()
            .push((now, input));
        true
    }

    pub(super) fn on_callee_status(&mut self, now: Instant, id: WaCallId, status: CalleeStatus) {
        let Some(call) = self.calls.get_mut(&id) else {
            let input = Input::CalleeStatus {
                call: id.clone(),
                status,
            };
            if !self.keep_early(now, &id, input) {
                debug!(call_id = %id, ?status, "status for a call not placed here; ignored");
                self.actions.push_back(Action::Metric(Metric::CallBack {
                    outcome: "unknown_status",
                    code: None,
                }));
            }
            return;
        };
        if call.dialled.is_none() {
            debug!(call_id = %id, ?status, "a call status for a call the customer placed; ignored");
            return;
        }
        match (status, call.phase.clone()) {
            (
                CalleeStatus::Ringing,
                Phase::Calling {
                    agent,
                    until,
                    ringing: false,
                    answering,
                },
            ) => {
                set_phase(
                    call,
                    &mut self.actions,
                    now,
                    Phase::Calling {
                        agent: agent.clone(),
                        until,
                        ringing: true,
                        answering,
                    },
                );
                let to = call.from.clone().unwrap_or_default();
                self.tell_call_back(&agent, &to, Some(&id), CallBackStatus::Ringing, None);
                self.actions.push_back(Action::FloorChanged);
            }
            (CalleeStatus::Accepted, _) => {
                // For the audit: media may already flow (reference §1.3).
                let agent = call.phase.agent().cloned();
                call.transitions.push((Stage::Accepted, now, agent));
            }
            (CalleeStatus::Rejected, Phase::Calling { .. }) => {
                info!(call_id = %id, "the customer declined the call-back");
                // Meta's `terminate` follows; nothing to end at Meta.
                self.end(
                    now,
                    &id,
                    Outcome::Declined,
                    "declined by the customer".into(),
                    EndedBy::Caller,
                );
            }
            _ => debug!(call_id = %id, ?status, "call status out of place; ignored"),
        }
    }

    pub(super) fn on_callee_answered(
        &mut self,
        now: Instant,
        id: WaCallId,
        sdp: String,
        received_at: Instant,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            let input = Input::CalleeAnswered {
                call: id.clone(),
                sdp,
                received_at,
            };
            if !self.keep_early(now, &id, input) {
                debug!(call_id = %id, "answer for a call not placed here; ignored");
            }
            return;
        };
        let Phase::Calling {
            agent,
            until,
            ringing,
            answering: false,
        } = call.phase.clone()
        else {
            debug!(call_id = %id, "a second answer, or one out of place; ignored");
            return;
        };
        let Some(wa) = call.wa.clone() else {
            return;
        };
        call.phase = Phase::Calling {
            agent,
            until,
            ringing,
            answering: true,
        };
        call.answer_waits_packet = Some(received_at.min(now));
        self.actions.push_back(Action::ApplyAnswer {
            call: id,
            leg: wa.leg,
            sdp,
        });
    }

    pub(super) fn on_answer_applied(
        &mut self,
        now: Instant,
        id: WaCallId,
        result: Result<(), LegFailure>,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Phase::Calling { agent, .. } = call.phase.clone() else {
            return;
        };
        match result {
            Ok(()) => {
                info!(call_id = %id, %agent, "the customer answered the call-back");
                let to = call.from.clone().unwrap_or_default();
                self.actions.push_back(Action::Metric(Metric::CallBack {
                    outcome: "connected",
                    code: None,
                }));
                self.tell_call_back(&agent, &to, Some(&id), CallBackStatus::Connected, None);
                self.start_talking(now, &id, &agent);
                self.start_sending(&id);
                self.actions.push_back(Action::FloorChanged);
            }
            Err(e) => {
                warn!(call_id = %id, error = %e, "the customer's answer is unusable; ending the call-back");
                call.meta_errors.push(100);
                self.end_call_back(
                    now,
                    &id,
                    Outcome::Failed,
                    &format!("the customer's answer is unusable: {e}"),
                    EndedBy::System,
                );
            }
        }
    }

    /// A call-back's leg starts its 20 ms packets once the customer answered and the leg
    /// connected, whichever comes last: nothing reaches the customer before their answer.
    /// Each of the two happens once (the answer leaves `Calling`; a leg connects once), so
    /// this asks once.
    pub(super) fn start_sending(&mut self, id: &WaCallId) {
        let Some(call) = self.calls.get(id) else {
            return;
        };
        let answered = !matches!(call.phase, Phase::Calling { .. });
        if call.dialled.is_none() || !answered || !call.connected {
            return;
        }
        if let Some(wa) = &call.wa {
            self.actions.push_back(Action::StartSending { leg: wa.leg });
        }
    }

    /// A call-back's agent is told of its step.
    pub(super) fn tell_call_back(
        &mut self,
        agent: &AgentId,
        to: &str,
        call: Option<&WaCallId>,
        status: CallBackStatus,
        message: Option<String>,
    ) {
        self.notify(
            agent.clone(),
            Notice::CallBack {
                to: to.to_owned(),
                call: call.cloned(),
                status,
                code: None,
                message: message.unwrap_or_else(|| status.sentence().to_owned()),
                can_ask_permission: false,
                retry_at: None,
            },
        );
    }

    /// A call-back ends before the customer answered: its agent is told how, and is free again.
    pub(super) fn call_back_ended(
        &mut self,
        now: Instant,
        call: &Call,
        agent: &AgentId,
        outcome: Outcome,
        by: EndedBy,
        reason: &str,
    ) {
        let (status, metric) = match (by, outcome) {
            (EndedBy::Agent, _) => (CallBackStatus::Cancelled, "cancelled"),
            (_, Outcome::Declined) => (CallBackStatus::Declined, "declined"),
            (_, Outcome::TimedOut) | (EndedBy::Caller, _) => {
                (CallBackStatus::NoAnswer, "no_answer")
            }
            _ => (CallBackStatus::Failed, "failed"),
        };
        self.actions.push_back(Action::Metric(Metric::CallBack {
            outcome: metric,
            code: None,
        }));
        let message =
            (status == CallBackStatus::Failed).then(|| format!("The call failed: {reason}."));
        let to = call.from.clone().unwrap_or_default();
        self.tell_call_back(agent, &to, Some(&call.id), status, message);
        self.free_agent(now, agent);
    }

    /// A call-back nobody answered in time.
    pub(super) fn call_back_unanswered(&mut self, now: Instant, id: &WaCallId) {
        info!(call_id = %id, "call-back not answered; ending it");
        self.end_call_back(now, id, Outcome::TimedOut, "no answer", EndedBy::System);
    }

    /// An agent's session ends: their call-back stops (there is nobody to talk to).
    pub(super) fn stop_dialing(&mut self, now: Instant, agent: &AgentId) {
        for d in self.dials.values_mut().filter(|d| d.agent == *agent) {
            d.cancelled = true;
        }
        if let Some(id) = self.calling_of(agent) {
            self.end_call_back(
                now,
                &id,
                Outcome::Abandoned,
                "the agent left before the customer answered",
                EndedBy::Agent,
            );
        }
        self.withdraw_task_offer(agent, None);
    }

    // ------------------------------------------------------------------ permission

    pub(super) fn ask_permission(&mut self, agent: AgentId, to: String) {
        let Some(to) = normalize_number(&to) else {
            self.notify(
                agent,
                Notice::Refused {
                    code: Refusal::BadNumber,
                    message: BAD_NUMBER.into(),
                },
            );
            return;
        };
        let queue = self.home_queue(&agent);
        if self.asked.len() >= ASKED {
            self.asked.clear();
        }
        let business_number = self.number_of(&queue);
        self.asked
            .insert(to.clone(), (agent.clone(), business_number.clone()));
        self.actions.push_back(Action::AskPermission {
            agent,
            to,
            business_number,
        });
    }

    pub(super) fn on_permission_asked(
        &mut self,
        agent: AgentId,
        to: String,
        result: Result<(), GraphFailure>,
    ) {
        let (step, message, permanent) = match result {
            // The customer's reply overtook Graph's answer: they were told of it already.
            Ok(()) if !self.asked.contains_key(&to) => return,
            Ok(()) => {
                let business_number = self.asked.get(&to).and_then(|(_, n)| n.clone());
                self.actions.push_back(Action::KeepPermission {
                    business_number,
                    user: to.clone(),
                    state: PermissionState::Requested,
                    permanent: false,
                    expires_at: None,
                    source: None,
                    requested_by: Some(agent.clone()),
                });
                (
                    PermissionStep::Requested,
                    "Permission asked. You will see here when the customer answers.".to_owned(),
                    false,
                )
            }
            // A permanent permission exists: nothing to ask (reference §7.2).
            Err(GraphFailure {
                code: Some(138017), ..
            }) => (
                PermissionStep::Granted,
                "This customer has already allowed calls for good. You can call now.".to_owned(),
                true,
            ),
            Err(f) => {
                let message = match f.code.and_then(meta_sentence) {
                    Some(s) => s.to_owned(),
                    None => format!("WhatsApp did not send the request: {}", f.message),
                };
                (PermissionStep::Failed, message, false)
            }
        };
        if step != PermissionStep::Requested {
            self.asked.remove(&to);
        }
        self.actions.push_back(Action::Metric(Metric::Permission {
            outcome: step.as_str(),
        }));
        self.notify(
            agent,
            Notice::Permission {
                to,
                step,
                message,
                expires_at: None,
                permanent,
            },
        );
    }

    pub(super) fn on_permission_reply(
        &mut self,
        business_number: Option<String>,
        user: String,
        granted: bool,
        permanent: bool,
        expires_at: Option<i64>,
        source: Option<String>,
    ) {
        let (step, state) = if granted {
            (PermissionStep::Granted, PermissionState::Granted)
        } else {
            (PermissionStep::Rejected, PermissionState::Rejected)
        };
        self.actions.push_back(Action::KeepPermission {
            business_number,
            user: user.clone(),
            state,
            permanent,
            expires_at,
            source,
            requested_by: None,
        });
        self.actions.push_back(Action::Metric(Metric::Permission {
            outcome: if granted { "accepted" } else { "rejected" },
        }));
        let Some((agent, _)) = self.asked.remove(&user) else {
            return;
        };
        let message = if granted {
            "The customer allowed calls. You can call now."
        } else {
            "The customer did not allow calls."
        };
        self.notify(
            agent,
            Notice::Permission {
                to: user,
                step,
                message: message.into(),
                expires_at,
                permanent,
            },
        );
    }

    // ------------------------------------------------------------------ tasks

    /// Takes up `task`, offered from `due` (`None`: now). A task of the same customer in the
    /// same account stays as it is.
    pub(super) fn add_task_due(&mut self, task: Task, due: Option<Instant>) {
        if self.open_task_like(&task).is_some() {
            debug!(task = %task.id, "a call-back task for this customer exists already");
            return;
        }
        info!(task = %task.id, queue = %task.queue, reason = task.reason.as_str(), "call-back task");
        self.actions
            .push_back(Action::KeepTask(Box::new(task.clone())));
        self.tasks.insert(
            task.id.clone(),
            TaskState {
                task,
                due,
                offered: None,
                skipped: vec![],
            },
        );
        self.actions.push_back(Action::FloorChanged);
    }

    /// A caller the centre lost becomes a call-back task, when their queue says so.
    pub(super) fn task_for_lost_caller(&mut self, call: &Call, reason: TaskReason) {
        if call.dialled.is_some() || !self.cfg.callback_queues.contains(&call.queue) {
            return;
        }
        let Some(to) = call.from.as_deref().and_then(normalize_number) else {
            return;
        };
        self.add_task_due(
            Task {
                id: format!("task-{}", call.id),
                to,
                name: call.name.clone(),
                queue: call.queue.clone(),
                reason,
                note: None,
                due_at: None,
                agent: None,
            },
            None,
        );
    }

    /// Drops the tasks of customer `to` in `queue`'s account (they called in, or are being
    /// called).
    pub(super) fn drop_tasks_of(&mut self, queue: &QueueId, to: &str, why: TaskStop) {
        let ids: Vec<String> = self
            .tasks
            .values()
            .filter(|t| t.task.to == to && same_account(&t.task.queue.0, &queue.0))
            .map(|t| t.task.id.clone())
            .collect();
        for id in ids {
            self.drop_task(&id, why);
        }
    }

    /// Drops task `id`, telling the agent it was offered to why.
    pub(super) fn drop_task(&mut self, id: &str, why: TaskStop) {
        let Some(t) = self.tasks.remove(id) else {
            return;
        };
        info!(task = %id, reason = why.as_str(), "call-back task dropped");
        self.actions.push_back(Action::ForgetTask {
            task: id.to_owned(),
        });
        if let Some(agent) = t.offered {
            self.notify(
                agent,
                Notice::TaskStopped {
                    task: id.to_owned(),
                    reason: why,
                },
            );
        }
        self.actions.push_back(Action::FloorChanged);
    }

    pub(super) fn skip_task(&mut self, agent: AgentId, id: String) {
        let Some(t) = self
            .tasks
            .get_mut(&id)
            .filter(|t| t.offered.as_ref() == Some(&agent))
        else {
            self.notify(
                agent,
                Notice::Refused {
                    code: Refusal::NoSuchTask,
                    message: "that call-back task is not offered to you".into(),
                },
            );
            return;
        };
        t.offered = None;
        t.skipped.push(agent.clone());
        self.notify(
            agent,
            Notice::TaskStopped {
                task: id,
                reason: TaskStop::Skipped,
            },
        );
    }

    /// Withdraws the task offered to `agent` (a call rings at them, or they left).
    pub(super) fn withdraw_task_offer(&mut self, agent: &AgentId, why: Option<TaskStop>) {
        let offered = self
            .tasks
            .values_mut()
            .find(|t| t.offered.as_ref() == Some(agent));
        if let Some(t) = offered {
            t.offered = None;
            let id = t.task.id.clone();
            if let Some(reason) = why {
                self.notify(agent.clone(), Notice::TaskStopped { task: id, reason });
            }
        }
    }

    /// Offers due tasks to free agents: the one a task names, else the longest-idle free agent
    /// of its queue who has not skipped it and has no other task offered. Calls come first:
    /// this runs after they were dispatched, and a ring withdraws an offer.
    pub(super) fn offer_tasks(&mut self, now: Instant) {
        if self.tasks.is_empty() {
            return;
        }
        let mut busy: Vec<AgentId> = self
            .tasks
            .values()
            .filter_map(|t| t.offered.clone())
            .collect();
        let ids: Vec<String> = self
            .tasks
            .values()
            .filter(|t| t.offered.is_none() && t.due.is_none_or(|d| d <= now))
            .map(|t| t.task.id.clone())
            .collect();
        for id in ids {
            let Some(t) = self.tasks.get(&id) else {
                continue;
            };
            let agent = match &t.task.agent {
                Some(a) => (!busy.contains(a)
                    && self.audio_up(a)
                    && self
                        .routing
                        .agent(a)
                        .is_some_and(|x| x.presence == Presence::Available))
                .then(|| a.clone()),
                None => {
                    let mut skip = t.skipped.clone();
                    skip.extend(busy.iter().cloned());
                    self.next_free(&t.task.queue, &skip)
                }
            };
            let Some(agent) = agent else {
                continue;
            };
            busy.push(agent.clone());
            if let Some(t) = self.tasks.get_mut(&id) {
                t.offered = Some(agent.clone());
                t.due = None;
                let task = Box::new(t.task.clone());
                info!(task = %id, %agent, "call-back task offered");
                self.notify(agent, Notice::Task(task));
            }
        }
    }

    /// The id of the open task that `task` would repeat: its own id, or the same customer in
    /// the same account. Such a task is not taken up.
    pub fn open_task_like(&self, task: &Task) -> Option<String> {
        if self.tasks.contains_key(&task.id) {
            return Some(task.id.clone());
        }
        self.tasks
            .values()
            .find(|t| t.task.to == task.to && same_account(&t.task.queue.0, &task.queue.0))
            .map(|t| t.task.id.clone())
    }

    /// The open call-back tasks, by id, with whom each is offered to.
    pub fn tasks(&self) -> Vec<(Task, Option<AgentId>)> {
        self.tasks
            .values()
            .map(|t| (t.task.clone(), t.offered.clone()))
            .collect()
    }
}
