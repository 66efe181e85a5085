//! Supervisors listening to and whispering into agents' calls.
//!
//! *Does not touch*: the call's own routing.

use tracing::info;

use super::*;

impl<R: Routing> Centre<R> {
    pub(super) fn monitor(&mut self, sup: AgentId, id: WaCallId, whisper: bool) {
        let refuse = |code, message: String| Notice::Refused { code, message };
        let Some(session) = self.sessions.get(&sup) else {
            return;
        };
        if session.role != Role::Supervisor {
            self.notify(
                sup,
                refuse(Refusal::Forbidden, "only supervisors monitor calls".into()),
            );
            return;
        }
        let Some(sup_leg) = session
            .leg
            .clone()
            .filter(|l| l.streams.len() >= 2 && session.connected)
        else {
            self.notify(
                sup,
                refuse(
                    Refusal::NoAudio,
                    "your audio connection is not up (or has one stream)".into(),
                ),
            );
            return;
        };
        // Another account's call is as unknown as one that does not exist.
        let Some(call) = self
            .calls
            .get(&id)
            .filter(|c| same_account(&sup.0, &c.queue.0))
        else {
            self.notify(
                sup,
                refuse(Refusal::NoSuchCall, format!("no live call {id}")),
            );
            return;
        };
        let (Some(wa), Phase::Talking { agent, .. }) = (call.wa.clone(), call.phase.clone()) else {
            self.notify(
                sup,
                refuse(Refusal::NotTalking, format!("{id} has no agent talking")),
            );
            return;
        };
        if agent == sup {
            self.notify(
                sup,
                refuse(Refusal::OwnCall, "that is your own call".into()),
            );
            return;
        }
        self.stop_monitoring(&sup);
        let agent_leg = self.sessions.get(&agent).and_then(|s| s.leg.clone());
        // The supervisor hears the caller on stream 0 and the agent on stream 1; nothing of the
        // supervisor's reaches the caller.
        self.actions.push_back(Action::Route {
            stream: sup_leg.streams[0],
            source: Some(wa.leg),
        });
        if let Some(a) = &agent_leg {
            self.actions.push_back(Action::Route {
                stream: sup_leg.streams[1],
                source: Some(a.leg),
            });
            if whisper {
                if let Some(s) = a.streams.get(1) {
                    self.actions.push_back(Action::Route {
                        stream: *s,
                        source: Some(sup_leg.leg),
                    });
                }
            }
        }
        if let Some(s) = self.sessions.get_mut(&sup) {
            s.monitoring = Some((id.clone(), whisper));
        }
        info!(call_id = %id, supervisor = %sup, whisper, "monitoring");
        if whisper {
            let notice = Notice::Whisper {
                call: id.clone(),
                on: true,
            };
            self.notify(agent, notice);
        }
        self.notify(
            sup,
            Notice::Monitoring {
                call: Some(id),
                whisper,
            },
        );
    }

    pub(super) fn stop_monitoring(&mut self, sup: &AgentId) {
        let Some(s) = self.sessions.get_mut(sup) else {
            return;
        };
        let Some((id, whisper)) = s.monitoring.take() else {
            return;
        };
        if let Some(l) = &s.leg {
            for st in l.streams.iter().take(2) {
                self.actions.push_back(Action::Route {
                    stream: *st,
                    source: None,
                });
            }
        }
        if whisper {
            let agent = self.calls.get(&id).and_then(|c| c.phase.agent().cloned());
            if let Some(a) = &agent {
                let notice = Notice::Whisper {
                    call: id.clone(),
                    on: false,
                };
                self.notify(a.clone(), notice);
            }
            if let Some(s) = agent
                .and_then(|a| self.sessions.get(&a))
                .and_then(|s| s.leg.as_ref())
                .and_then(|l| l.streams.get(1))
            {
                self.actions.push_back(Action::Route {
                    stream: *s,
                    source: None,
                });
            }
        }
    }
}
