//! What agents' sessions tell the machine: joining, their media leg, leaving, and their
//! commands (presence, answer, hang up, mute, hold, transfer, monitor).
//!
//! *Does not touch*: Meta's events (`meta`); the steps it takes live in `route`, `transfer`
//! and `supervise`.

use std::time::Instant;

use tracing::info;

use super::*;

impl<R: Routing> Centre<R> {
    pub(super) fn on_agent_joined(
        &mut self,
        now: Instant,
        agent: AgentId,
        role: Role,
        queues: Vec<QueueId>,
    ) {
        let resumed = self.sessions.contains_key(&agent);
        let s = self.sessions.entry(agent.clone()).or_insert(Session {
            role,
            online: true,
            leg: None,
            connected: false,
            wrap_until: None,
            monitoring: None,
        });
        s.role = role;
        s.online = true;
        // A new page (a reload, or a second session replacing the first) brings a
        // PeerConnection of its own: the audio is up again only once that one connects.
        s.connected = false;
        if resumed {
            let available = self
                .routing
                .agent(&agent)
                .is_some_and(|a| matches!(a.presence, Presence::Available));
            if available {
                let _ = self
                    .routing
                    .set_presence(now, &agent, false, Some(AwayReason::NoAudio));
            }
        }
        if !resumed || self.routing.agent(&agent).is_none() {
            self.routing.sign_in(now, agent.clone(), queues);
            // Nobody is rung before their audio is up; the leg's connection makes them
            // available.
            let _ = self
                .routing
                .set_presence(now, &agent, false, Some(AwayReason::NoAudio));
        }
        info!(%agent, resumed, "agent signed in");
        self.notify_presence(&agent);
        self.actions.push_back(Action::FloorChanged);
    }

    pub(super) fn on_agent_leg(&mut self, agent: AgentId, leg: AgentLeg) {
        let Some(s) = self.sessions.get_mut(&agent) else {
            self.actions.push_back(Action::CloseLeg { leg: leg.leg });
            return;
        };
        if let Some(old) = s.leg.replace(leg.clone()) {
            self.agent_legs.remove(&old.leg);
            self.actions.push_back(Action::CloseLeg { leg: old.leg });
        }
        s.connected = false;
        self.agent_legs.insert(leg.leg, agent);
    }

    pub(super) fn on_agent_left(&mut self, now: Instant, agent: AgentId, signed_out: bool) {
        let Some(s) = self.sessions.get_mut(&agent) else {
            return;
        };
        s.online = false;
        s.connected = false;
        let leg = s.leg.take();
        // Nobody is left to talk to the customer being called.
        self.stop_dialing(now, &agent);
        if let Some(l) = &leg {
            self.agent_legs.remove(&l.leg);
            self.actions.push_back(Action::CloseLeg { leg: l.leg });
        }
        self.stop_monitoring(&agent);
        let on_call = self
            .calls
            .values()
            .any(|c| c.phase.agent() == Some(&agent) && !matches!(c.phase, Phase::Ringing { .. }));
        if on_call && !signed_out {
            self.agent_lost(now, &agent);
            return;
        }
        if on_call {
            // Signing out mid-call hangs the call up, as the agent's own choice.
            let id = self
                .calls
                .values()
                .find(|c| c.phase.agent() == Some(&agent))
                .map(|c| c.id.clone());
            if let Some(id) = id {
                self.hang_up(now, &id, EndedBy::Agent, "agent signed out");
            }
        }
        self.ring_lost(now, &agent);
        self.sessions.remove(&agent);
        self.routing.sign_out(&agent);
        info!(%agent, "agent signed out");
        self.actions.push_back(Action::FloorChanged);
    }

    /// See [`Input::AgentRevoked`]: never hang up on a caller because an admin changed the
    /// agent's account.
    pub(super) fn on_agent_revoked(&mut self, now: Instant, agent: AgentId) {
        let on_call = self
            .calls
            .values()
            .find(|c| {
                matches!(&c.phase, Phase::Talking { agent: a, .. } | Phase::Connecting { agent: a } if *a == agent)
            })
            .map(|c| (c.id.clone(), c.queue.clone()));
        if let Some((id, queue)) = on_call {
            info!(call_id = %id, %agent, "the agent's sign-in was withdrawn; the call goes back to its queue");
            self.let_go(
                &agent,
                &id,
                "your sign-in was withdrawn; the call went back to its queue",
            );
            if let Some(call) = self.calls.get_mut(&id) {
                // A fresh wait: the time it waited before it was answered is over.
                call.waiting_since = Some(now);
            }
            // (Hold audio for an accepted call: `enter_queue`.)
            let max_wait = self.max_wait(&queue);
            self.enter_queue(now, &id, max_wait, false);
            if let Some(call) = self.calls.get_mut(&id) {
                // Not back to them: their sign-in is gone.
                call.tried = vec![agent.clone()];
            }
        }
        self.on_agent_left(now, agent, true);
    }

    pub(super) fn on_command(&mut self, now: Instant, agent: AgentId, command: Command) {
        let refuse = |code: Refusal, message: String| Notice::Refused { code, message };
        if !self.sessions.get(&agent).is_some_and(|s| s.online) {
            return;
        }
        match command {
            Command::SetPresence { available, reason } => {
                let audio_up = self.sessions.get(&agent).is_some_and(|s| s.connected);
                if available && !audio_up {
                    // Never rung without audio: away with the system's reason, which the leg's
                    // connection turns into available (`on_media_connected`).
                    match self
                        .routing
                        .set_presence(now, &agent, false, Some(AwayReason::NoAudio))
                    {
                        Ok(()) => {
                            self.notify_presence(&agent);
                            self.actions.push_back(Action::FloorChanged);
                            self.notify(
                                agent,
                                refuse(
                                    Refusal::NoAudio,
                                    "your audio connection is not up; you become available \
                                     as soon as it is"
                                        .into(),
                                ),
                            );
                        }
                        Err(e) => self.notify(agent, refuse(Refusal::Busy, e.to_string())),
                    }
                    return;
                }
                match self.routing.set_presence(
                    now,
                    &agent,
                    available,
                    reason.map(AwayReason::Chosen),
                ) {
                    Ok(()) => {
                        self.notify_presence(&agent);
                        self.actions.push_back(Action::FloorChanged);
                    }
                    Err(e) => self.notify(agent, refuse(Refusal::Busy, e.to_string())),
                }
            }
            Command::Answer { call } => self.answer(now, agent, call),
            Command::Decline { call } => {
                let ringing = self.calls.get(&call).is_some_and(
                    |c| matches!(&c.phase, Phase::Ringing { agent: a, .. } if *a == agent),
                );
                if !ringing {
                    self.notify(
                        agent,
                        refuse(Refusal::NotRinging, format!("{call} is not ringing at you")),
                    );
                    return;
                }
                self.ring_missed(now, &call, &agent);
            }
            Command::HangUp { call } => {
                let mine = self.calls.get(&call).is_some_and(|c| {
                    c.phase.agent() == Some(&agent) && !matches!(c.phase, Phase::Ringing { .. })
                });
                if !mine {
                    self.notify(
                        agent,
                        refuse(Refusal::NotYourCall, format!("you are not on {call}")),
                    );
                    return;
                }
                if matches!(self.calls[&call].phase, Phase::Calling { .. }) {
                    self.cancel_call_back(now, agent);
                    return;
                }
                self.hang_up(now, &call, EndedBy::Agent, "agent hung up");
            }
            Command::Mute { call, on } => self.mute_or_hold(now, agent, call, Some(on), None),
            Command::Hold { call, on } => self.mute_or_hold(now, agent, call, None, Some(on)),
            Command::Transfer { call, to } => self.transfer(now, agent, call, to),
            Command::Monitor { call } => self.monitor(agent, call, false),
            Command::Whisper { call } => self.monitor(agent, call, true),
            Command::EndWrapUp => {
                let wrapping = self
                    .sessions
                    .get_mut(&agent)
                    .and_then(|s| s.wrap_until.take())
                    .is_some();
                if wrapping {
                    self.routing.end_wrap_up(now, &agent);
                    self.notify_presence(&agent);
                    self.actions.push_back(Action::FloorChanged);
                }
            }
            Command::CallBack { to, task } => self.call_back(now, agent, to, task),
            Command::CancelCallBack => self.cancel_call_back(now, agent),
            Command::SkipTask { task } => self.skip_task(agent, task),
            Command::AskPermission { to } => self.ask_permission(agent, to),
            Command::StopMonitor => {
                self.stop_monitoring(&agent);
                self.notify(
                    agent,
                    Notice::Monitoring {
                        call: None,
                        whisper: false,
                    },
                );
            }
        }
    }
}
