//! The call machines with simulated time: every transition, timers, policies and odd events.

use std::time::{Duration, Instant};

use super::*;
use crate::ids::{AgentId, LegId, QueueId, StreamId, WaCallId};
use crate::routing::{AwayReason, Floor, NoAgentPolicy, Presence, QueueConfig, Routing};

struct World {
    c: Centre<Floor>,
    now: Instant,
    next_leg: u32,
    /// Every action so far, in order.
    log: Vec<Action>,
}

fn leg(slot: u32) -> LegId {
    LegId {
        shard: 0,
        slot,
        generation: 0,
    }
}

fn call(s: &str) -> WaCallId {
    s.into()
}

fn agent(s: &str) -> AgentId {
    s.into()
}

impl World {
    fn new(policy: NoAgentPolicy) -> World {
        World::with(policy, CentreConfig::default())
    }

    fn with(policy: NoAgentPolicy, cfg: CentreConfig) -> World {
        let floor = Floor::new(
            vec![
                QueueConfig {
                    id: "support".into(),
                    policy,
                },
                QueueConfig {
                    id: "sales".into(),
                    policy: NoAgentPolicy::Queue {
                        max_wait: Duration::from_secs(120),
                    },
                },
            ],
            "support".into(),
        );
        World {
            c: Centre::new(cfg, floor),
            now: Instant::now(),
            next_leg: 1,
            log: vec![],
        }
    }

    fn input(&mut self, input: Input) -> Vec<Action> {
        self.c.handle(self.now, input);
        self.drain()
    }

    fn drain(&mut self) -> Vec<Action> {
        let mut out = vec![];
        while let Some(a) = self.c.poll_action() {
            out.push(a);
        }
        self.log.extend(out.iter().cloned());
        out
    }

    /// Advances to `d` later, firing whatever timers fall due on the way (as the driver does).
    fn advance(&mut self, d: Duration) -> Vec<Action> {
        let end = self.now + d;
        let mut out = vec![];
        while let Some(t) = self.c.poll_timeout().filter(|t| *t <= end) {
            self.now = t.max(self.now);
            self.c.handle_timeout(self.now);
            out.extend(self.drain());
        }
        self.now = end;
        out
    }

    /// A new browser leg of `streams` streams answered for `who` (it connects next).
    fn leg_ready(&mut self, who: &str, streams: u8) -> AgentLeg {
        let l = self.new_leg();
        let al = AgentLeg {
            leg: l,
            streams: (0..streams)
                .map(|index| StreamId { leg: l, index })
                .collect(),
        };
        self.input(Input::AgentLegReady {
            agent: agent(who),
            leg: al.clone(),
        });
        al
    }

    fn new_leg(&mut self) -> LegId {
        self.next_leg += 1;
        leg(self.next_leg)
    }

    /// An agent signed in with a connected two-stream browser leg.
    fn agent_online(&mut self, id: &str, queues: &[&str]) -> AgentLeg {
        self.agent_with_role(id, queues, Role::Agent)
    }

    fn agent_with_role(&mut self, id: &str, queues: &[&str], role: Role) -> AgentLeg {
        self.input(Input::AgentJoined {
            agent: agent(id),
            role,
            queues: queues.iter().map(|q| QueueId::from(*q)).collect(),
        });
        let al = self.leg_ready(id, 2);
        let l = al.leg;
        self.input(Input::MediaConnected { leg: l });
        al
    }

    /// Meta offers `id`; the engine answers; returns the WhatsApp leg.
    fn offer(&mut self, id: &str) -> (Vec<Action>, Option<WaLeg>) {
        self.offer_to(id, "100")
    }

    /// Meta offers `id` on the business number `number`; the engine answers.
    fn offer_to(&mut self, id: &str, number: &str) -> (Vec<Action>, Option<WaLeg>) {
        let mut acts = self.input(Input::Offered {
            call: call(id),
            from: Some("15551234567".into()),
            name: Some("Caller".into()),
            business_number: Some(number.into()),
            display_number: Some("15550100".into()),
            offer: "v=0 offer".into(),
            // The webhook arrived 3 ms before the machines heard of it.
            received_at: self.now - Duration::from_millis(3),
            unshared: false,
            agent: None,
        });
        if !acts
            .iter()
            .any(|a| matches!(a, Action::AnswerWhatsApp { .. }))
        {
            return (acts, None);
        }
        let l = self.new_leg();
        let wa = WaLeg {
            leg: l,
            stream: StreamId { leg: l, index: 0 },
            sdp: format!("answer for {id}"),
        };
        acts.extend(self.input(Input::Answered {
            call: call(id),
            result: Ok(wa.clone()),
        }));
        (acts, Some(wa))
    }

    fn graph_ok(&mut self, id: &str, action: GraphAction) -> Vec<Action> {
        self.input(Input::GraphDone {
            call: call(id),
            action,
            result: Ok(()),
        })
    }

    fn graph_err(&mut self, id: &str, action: GraphAction, code: i64) -> Vec<Action> {
        self.input(Input::GraphDone {
            call: call(id),
            action,
            result: Err(GraphFailure {
                code: Some(code),
                message: "refused".into(),
            }),
        })
    }

    fn command(&mut self, who: &str, command: Command) -> Vec<Action> {
        self.input(Input::AgentCommand {
            agent: agent(who),
            command,
        })
    }

    /// A call offered, pre-accepted and ringing at whoever is next; its leg connected.
    fn ringing_call(&mut self, id: &str) -> WaLeg {
        let (_, wa) = self.offer(id);
        let wa = wa.expect("answered");
        self.graph_ok(id, GraphAction::PreAccept);
        self.input(Input::MediaConnected { leg: wa.leg });
        wa
    }

    /// A call talking with `who`.
    fn talking_call(&mut self, id: &str, who: &str) -> WaLeg {
        let wa = self.ringing_call(id);
        self.command(who, Command::Answer { call: call(id) });
        self.graph_ok(id, GraphAction::Accept);
        assert_eq!(self.c.phase(&call(id)), Some(&Phase::talking(agent(who))));
        wa
    }

    fn presence(&self, who: &str) -> Presence {
        self.c
            .routing()
            .agent(&agent(who))
            .map_or(Presence::Offline, |a| a.presence.clone())
    }

    fn finished(&self) -> Vec<&Ended> {
        self.log
            .iter()
            .filter_map(|a| match a {
                Action::Finished(e) => Some(&**e),
                _ => None,
            })
            .collect()
    }
}

fn graph_actions(acts: &[Action]) -> Vec<(String, GraphAction)> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Graph { call, action, .. } => Some((call.0.clone(), *action)),
            _ => None,
        })
        .collect()
}

fn has_graph(acts: &[Action], id: &str, action: GraphAction) -> bool {
    graph_actions(acts).contains(&(id.to_owned(), action))
}

fn rang(acts: &[Action]) -> Vec<(String, String)> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Notify {
                agent,
                notice: Notice::Ringing { call, .. },
            } => Some((agent.0.clone(), call.0.clone())),
            _ => None,
        })
        .collect()
}

fn routes(acts: &[Action]) -> Vec<(StreamId, Option<LegId>)> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Route { stream, source } => Some((*stream, *source)),
            _ => None,
        })
        .collect()
}

fn queue_policy() -> NoAgentPolicy {
    NoAgentPolicy::Queue {
        max_wait: Duration::from_secs(120),
    }
}

#[test]
fn happy_path_answer_routes_then_accepts_then_sends() {
    let mut w = World::new(queue_policy());
    let alice = w.agent_online("alice", &["support"]);
    let (acts, wa) = w.offer("c1");
    let wa = wa.unwrap();
    assert!(matches!(
        acts.iter()
            .find(|a| !matches!(a, Action::Metric(_) | Action::Event(_))),
        Some(Action::AnswerWhatsApp { .. })
    ));
    assert!(acts.iter().any(|a| matches!(a, Action::MarkLive { .. })));
    assert!(has_graph(&acts, "c1", GraphAction::PreAccept));
    // Pre-accepted: it rings at Alice; nothing is accepted or sent yet.
    let acts = w.graph_ok("c1", GraphAction::PreAccept);
    assert_eq!(rang(&acts), vec![("alice".into(), "c1".into())]);
    assert!(!has_graph(&acts, "c1", GraphAction::Accept));
    assert_eq!(w.presence("alice"), Presence::Ringing { call: call("c1") });
    // Alice answers before the leg connected: routed both ways, accept waits for media.
    let acts = w.command("alice", Command::Answer { call: call("c1") });
    let r = routes(&acts);
    assert!(r.contains(&(wa.stream, Some(alice.leg))));
    assert!(r.contains(&(alice.streams[0], Some(wa.leg))));
    assert!(!has_graph(&acts, "c1", GraphAction::Accept));
    assert!(!acts
        .iter()
        .any(|a| matches!(a, Action::StartSending { .. })));
    // The leg connects: accept, with the same SDP as pre_accept.
    let acts = w.input(Input::MediaConnected { leg: wa.leg });
    assert!(acts.iter().any(|a| matches!(a,
        Action::Graph { action: GraphAction::Accept, sdp: Some(s), .. } if *s == wa.sdp)));
    // Accept succeeded: media starts and Alice is talking.
    let acts = w.graph_ok("c1", GraphAction::Accept);
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::StartSending { leg } if *leg == wa.leg)));
    assert!(acts.iter().any(|a| matches!(
        a,
        Action::Notify {
            notice: Notice::Talking { .. },
            ..
        }
    )));
    assert_eq!(w.presence("alice"), Presence::OnCall { call: call("c1") });
    // Alice hangs up: terminate, leg closed, wrap-up, then back to available.
    let acts = w.command("alice", Command::HangUp { call: call("c1") });
    assert!(has_graph(&acts, "c1", GraphAction::Terminate));
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::CloseLeg { leg } if *leg == wa.leg)));
    assert!(matches!(w.presence("alice"), Presence::WrapUp { .. }));
    w.advance(Duration::from_secs(10));
    assert_eq!(w.presence("alice"), Presence::Available);
    let f = w.finished();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].outcome, Outcome::Answered);
    assert_eq!(f[0].ended_by, EndedBy::Agent);
    assert_eq!(f[0].agents, vec![agent("alice")]);
    let states: Vec<&str> = f[0].transitions.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(
        states,
        vec![
            "offered",
            "pre_accepted",
            "ringing",
            "connecting",
            "media_connected",
            "accepted",
            "talking",
            "ended"
        ]
    );
}

#[test]
fn two_agents_are_rung_in_longest_idle_order() {
    let mut w = World::new(queue_policy());
    w.agent_online("bob", &["support"]);
    w.advance(Duration::from_secs(5));
    w.agent_online("alice", &["support"]);
    w.ringing_call("c1");
    w.ringing_call("c2");
    w.ringing_call("c3");
    let rung = rang(&w.log);
    assert_eq!(
        rung,
        vec![("bob".into(), "c1".into()), ("alice".into(), "c2".into())]
    );
    // The third waits in the queue, accepted, with hold audio.
    assert!(matches!(w.c.phase(&call("c3")), Some(Phase::Queued { .. })));
    assert!(has_graph(&w.log, "c3", GraphAction::Accept));
    let acts = w.graph_ok("c3", GraphAction::Accept);
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::Hold { on: true, .. })));
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::StartSending { .. })));
    // Bob takes c1, hangs up; after wrap-up he gets c3.
    w.command("bob", Command::Answer { call: call("c1") });
    w.graph_ok("c1", GraphAction::Accept);
    w.command("bob", Command::HangUp { call: call("c1") });
    let acts = w.advance(Duration::from_secs(10));
    assert_eq!(rang(&acts), vec![("bob".into(), "c3".into())]);
    // Answering an already-accepted call needs no second accept.
    let acts = w.command("bob", Command::Answer { call: call("c3") });
    assert!(!has_graph(&acts, "c3", GraphAction::Accept));
    assert_eq!(w.c.phase(&call("c3")), Some(&Phase::talking(agent("bob"))));
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::Hold { on: false, .. })));
}

#[test]
fn ring_timeout_moves_the_call_on_and_sets_the_agent_away() {
    let mut w = World::new(queue_policy());
    w.agent_online("bob", &["support"]);
    w.advance(Duration::from_secs(1));
    w.agent_online("alice", &["support"]);
    w.ringing_call("c1");
    assert_eq!(rang(&w.log), vec![("bob".into(), "c1".into())]);
    let acts = w.advance(Duration::from_secs(15));
    assert_eq!(rang(&acts), vec![("alice".into(), "c1".into())]);
    assert_eq!(
        w.presence("bob"),
        Presence::Away {
            reason: AwayReason::MissedCall
        }
    );
    assert!(acts.iter().any(|a| matches!(a,
        Action::Notify { agent: a, notice: Notice::RingStopped { reason: RingStop::Missed, .. } } if a.0 == "bob")));
    // Alice declines: no agent left, the queue policy takes it (accepted into the queue).
    let acts = w.command("alice", Command::Decline { call: call("c1") });
    assert!(matches!(w.c.phase(&call("c1")), Some(Phase::Queued { .. })));
    assert!(has_graph(&acts, "c1", GraphAction::Accept));
}

#[test]
fn the_decline_policy_rejects_at_once_and_an_unstaffed_queue_declines_whatever_its_policy() {
    let mut w = World::new(NoAgentPolicy::Decline);
    // Nobody signed in at all.
    let (acts, wa) = w.offer("c1");
    assert!(wa.is_none(), "no media leg for a call nobody can take");
    assert_eq!(
        graph_actions(&acts),
        vec![("c1".into(), GraphAction::Reject)]
    );
    assert_eq!(w.finished()[0].outcome, Outcome::Declined);
    // Staffed but busy, policy decline: rejected at once too.
    w.agent_online("bob", &["support"]);
    w.ringing_call("c2");
    let (acts, wa) = w.offer("c3");
    assert!(wa.is_none());
    assert!(has_graph(&acts, "c3", GraphAction::Reject));
    // A queue-policy queue nobody serves also declines: calls to "sales" go nowhere.
    let mut w = World::with(
        queue_policy(),
        CentreConfig {
            number_queues: [("100".to_owned(), QueueId::from("sales"))].into(),
            ..CentreConfig::default()
        },
    );
    w.agent_online("bob", &["support"]);
    let (acts, _) = w.offer("c4");
    assert!(has_graph(&acts, "c4", GraphAction::Reject));
}

#[test]
fn the_queue_policy_ends_a_call_after_the_longest_wait() {
    let mut w = World::new(NoAgentPolicy::Queue {
        max_wait: Duration::from_secs(60),
    });
    w.agent_online("bob", &["support"]);
    w.command(
        "bob",
        Command::SetPresence {
            available: false,
            reason: Some("lunch".into()),
        },
    );
    w.ringing_call("c1");
    assert!(matches!(w.c.phase(&call("c1")), Some(Phase::Queued { .. })));
    w.graph_ok("c1", GraphAction::Accept);
    let acts = w.advance(Duration::from_secs(61));
    assert!(has_graph(&acts, "c1", GraphAction::Terminate));
    assert_eq!(w.finished()[0].outcome, Outcome::TimedOut);
}

#[test]
fn a_call_never_rings_into_metas_accept_window() {
    let mut w = World::with(
        NoAgentPolicy::Decline,
        CentreConfig {
            ring_timeout: Duration::from_secs(15),
            answer_deadline: Duration::from_secs(25),
            ..CentreConfig::default()
        },
    );
    for a in ["a1", "a2", "a3"] {
        w.agent_online(a, &["support"]);
        w.advance(Duration::from_millis(10));
    }
    w.ringing_call("c1");
    // 15 s at a1, then a2... at 25 s since the offer it is declined, not rung on.
    let acts = w.advance(Duration::from_secs(26));
    assert!(has_graph(&acts, "c1", GraphAction::Reject));
    assert_eq!(w.finished()[0].outcome, Outcome::Declined);
    assert!(!rang(&w.log).iter().any(|(a, _)| a == "a3"));
    // With the queue policy the same call is accepted into the queue instead.
    let mut w = World::new(queue_policy());
    w.agent_online("a1", &["support"]);
    w.advance(Duration::from_millis(10));
    w.agent_online("a2", &["support"]);
    w.ringing_call("c2");
    let acts = w.advance(Duration::from_secs(26));
    assert!(has_graph(&acts, "c2", GraphAction::Accept));
    // Accepted with hold audio, it rings on at the free agent (its ring was cut short by the
    // window, not by the agent).
    assert!(matches!(
        w.c.phase(&call("c2")),
        Some(Phase::Ringing { agent: a, .. }) if a.0 == "a2"
    ));
    assert!(w.finished().is_empty());
}

#[test]
fn hang_up_from_the_caller_side_tells_the_agent_and_wraps_up() {
    let mut w = World::new(queue_policy());
    w.agent_online("alice", &["support"]);
    let wa = w.talking_call("c1", "alice");
    let acts = w.input(Input::Terminated {
        call: call("c1"),
        status: Some("COMPLETED".into()),
        errors: vec![],
    });
    assert!(graph_actions(&acts).is_empty(), "nothing to tell Meta");
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::CloseLeg { leg } if *leg == wa.leg)));
    assert!(acts.iter().any(|a| matches!(
        a,
        Action::Notify {
            notice: Notice::CallEnded { .. },
            ..
        }
    )));
    assert!(matches!(w.presence("alice"), Presence::WrapUp { .. }));
    let f = w.finished();
    assert_eq!(
        (f[0].outcome, f[0].ended_by),
        (Outcome::Answered, EndedBy::Caller)
    );
    // A caller who hangs up while ringing: abandoned, the agent is freed without penalty.
    w.advance(Duration::from_secs(10));
    w.ringing_call("c2");
    w.input(Input::Terminated {
        call: call("c2"),
        status: Some("COMPLETED".into()),
        errors: vec![],
    });
    assert_eq!(w.presence("alice"), Presence::Available);
    assert_eq!(w.finished()[1].outcome, Outcome::Abandoned);
}

#[test]
fn wrap_up_returns_the_agent_to_the_state_they_had_before_the_call() {
    let mut w = World::new(queue_policy());
    w.agent_online("alice", &["support"]);
    w.talking_call("c1", "alice");
    // During the call Alice chooses a break: that is where she goes after wrap-up.
    let acts = w.command(
        "alice",
        Command::SetPresence {
            available: false,
            reason: Some("break".into()),
        },
    );
    assert!(acts.iter().any(|a| matches!(
        a,
        Action::Notify {
            notice: Notice::Refused {
                code: Refusal::Busy,
                ..
            },
            ..
        }
    )));
    w.command("alice", Command::HangUp { call: call("c1") });
    w.command(
        "alice",
        Command::SetPresence {
            available: false,
            reason: Some("break".into()),
        },
    );
    w.advance(Duration::from_secs(10));
    assert_eq!(
        w.presence("alice"),
        Presence::Away {
            reason: AwayReason::Chosen("break".into())
        }
    );
}

#[test]
fn an_agent_lost_mid_call_has_a_grace_period_then_the_call_goes_back_to_the_front() {
    let mut w = World::new(queue_policy());
    w.agent_online("alice", &["support"]);
    let wa = w.talking_call("c1", "alice");
    // Alice's page reloads: her session and leg go; the caller hears hold audio.
    let acts = w.input(Input::AgentLeft {
        agent: agent("alice"),
        signed_out: false,
    });
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::Hold { stream, on: true } if *stream == wa.stream)));
    assert!(matches!(
        w.c.phase(&call("c1")),
        Some(Phase::AgentLost { .. })
    ));
    assert!(graph_actions(&acts).is_empty(), "the call goes on at Meta");
    // She is back within the grace period with a new leg: the call resumes on it.
    w.advance(Duration::from_secs(5));
    let new_leg = w.agent_online("alice", &["support"]);
    assert_eq!(
        w.c.phase(&call("c1")),
        Some(&Phase::talking(agent("alice")))
    );
    let r = routes(&w.log);
    assert!(r.contains(&(wa.stream, Some(new_leg.leg))));
    assert!(r.contains(&(new_leg.streams[0], Some(wa.leg))));

    // Lost again, and not back in time: the call goes to the front of the queue and rings
    // the next agent.
    w.agent_online("bob", &["support"]);
    w.input(Input::MediaGone {
        leg: new_leg.leg,
        failed: true,
    });
    let acts = w.advance(Duration::from_secs(31));
    assert_eq!(rang(&acts), vec![("bob".into(), "c1".into())]);
    assert!(w.finished().is_empty(), "the call lives on");
}

#[test]
fn blind_transfer_to_an_agent_and_to_a_queue() {
    let mut w = World::new(queue_policy());
    w.agent_online("alice", &["support"]);
    w.advance(Duration::from_secs(1));
    let bob = w.agent_online("bob", &["sales"]);
    let wa = w.talking_call("c1", "alice");
    let acts = w.command(
        "alice",
        Command::Transfer {
            call: call("c1"),
            to: TransferTarget::Agent(agent("bob")),
        },
    );
    assert_eq!(rang(&acts), vec![("bob".into(), "c1".into())]);
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::Hold { on: true, .. })));
    assert!(matches!(w.presence("alice"), Presence::WrapUp { .. }));
    let acts = w.command("bob", Command::Answer { call: call("c1") });
    assert!(
        graph_actions(&acts).is_empty(),
        "the WhatsApp leg never changes"
    );
    assert!(routes(&acts).contains(&(wa.stream, Some(bob.leg))));
    // Bob sends it on to the support queue; Alice is back from wrap-up and takes it.
    w.advance(Duration::from_secs(10));
    let acts = w.command(
        "bob",
        Command::Transfer {
            call: call("c1"),
            to: TransferTarget::Queue("support".into()),
        },
    );
    assert_eq!(rang(&acts), vec![("alice".into(), "c1".into())]);
    // A transfer to someone busy or unknown is refused and changes nothing.
    w.command("alice", Command::Answer { call: call("c1") });
    let acts = w.command(
        "alice",
        Command::Transfer {
            call: call("c1"),
            to: TransferTarget::Agent(agent("nobody")),
        },
    );
    assert!(acts.iter().any(|a| matches!(
        a,
        Action::Notify {
            notice: Notice::Refused {
                code: Refusal::AgentUnavailable,
                ..
            },
            ..
        }
    )));
    assert_eq!(
        w.c.phase(&call("c1")),
        Some(&Phase::talking(agent("alice")))
    );
    let f = w.finished();
    assert!(f.is_empty());
}

/// Found by the property test: an agent whose page closed mid-call keeps an offline session
/// through their grace; a leg that connects late (an offer answered after the page left) sets
/// them available, but no session is there to take a transfer.
#[test]
fn a_transfer_to_an_agent_whose_page_is_gone_is_refused() {
    let mut w = World::new(queue_policy());
    w.agent_online("alice", &["support"]);
    w.advance(Duration::from_secs(1));
    w.agent_online("bob", &["support"]);
    w.talking_call("c1", "alice");
    w.talking_call("c2", "bob");
    w.input(Input::AgentLeft {
        agent: agent("bob"),
        signed_out: false,
    });
    // A late leg of his old page connects while his session is gone (c2 resumes on it); the
    // caller hangs up and his wrap-up ends: he reads available with no session.
    let late = w.leg_ready("bob", 2);
    w.input(Input::MediaConnected { leg: late.leg });
    w.input(Input::Terminated {
        call: call("c2"),
        status: None,
        errors: vec![],
    });
    w.advance(Duration::from_secs(11));
    assert_eq!(w.presence("bob"), Presence::Available);
    let acts = w.command(
        "alice",
        Command::Transfer {
            call: call("c1"),
            to: TransferTarget::Agent(agent("bob")),
        },
    );
    assert!(rang(&acts).is_empty(), "{acts:?}");
    assert!(acts.iter().any(|a| matches!(
        a,
        Action::Notify {
            notice: Notice::Refused {
                code: Refusal::AgentUnavailable,
                ..
            },
            ..
        }
    )));
    assert_eq!(
        w.c.phase(&call("c1")),
        Some(&Phase::talking(agent("alice")))
    );
}

#[test]
fn mute_and_hold_change_what_the_caller_hears() {
    let mut w = World::new(queue_policy());
    let alice = w.agent_online("alice", &["support"]);
    let wa = w.talking_call("c1", "alice");
    let acts = w.command(
        "alice",
        Command::Mute {
            call: call("c1"),
            on: true,
        },
    );
    assert!(routes(&acts).contains(&(wa.stream, None)), "silence");
    let acts = w.command(
        "alice",
        Command::Hold {
            call: call("c1"),
            on: true,
        },
    );
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::Hold { stream, on: true } if *stream == wa.stream)));
    assert!(routes(&acts).contains(&(alice.streams[0], None)));
    let acts = w.command(
        "alice",
        Command::Hold {
            call: call("c1"),
            on: false,
        },
    );
    // Still muted: silence rather than Alice.
    assert!(routes(&acts).contains(&(wa.stream, None)));
    let acts = w.command(
        "alice",
        Command::Mute {
            call: call("c1"),
            on: false,
        },
    );
    assert!(routes(&acts).contains(&(wa.stream, Some(alice.leg))));
}

#[test]
fn mute_and_hold_on_a_call_that_does_not_exist_answer_as_on_one_not_yours() {
    let mut w = World::new(queue_policy());
    w.agent_online("alice", &["support"]);
    w.agent_online("bob", &["support"]);
    w.talking_call("c1", "alice");
    // The refusal each gets, with the call id taken out of its message.
    let mut refusal = |id: &str, command: Command| {
        let refused: Vec<_> = w
            .command("bob", command)
            .into_iter()
            .filter_map(|a| match a {
                Action::Notify {
                    notice: Notice::Refused { code, message },
                    ..
                } => Some((code, message.replace(id, "ID"))),
                _ => None,
            })
            .collect();
        assert_eq!(refused.len(), 1, "{id}: {refused:?}");
        refused.into_iter().next().unwrap()
    };
    let commands: [fn(WaCallId, bool) -> Command; 2] = [
        |call, on| Command::Mute { call, on },
        |call, on| Command::Hold { call, on },
    ];
    for (make, on) in commands.into_iter().flat_map(|m| [(m, true), (m, false)]) {
        let alices = refusal("c1", make(call("c1"), on));
        let nobodys = refusal("c9", make(call("c9"), on));
        assert_eq!(alices, nobodys);
        assert_eq!(alices.0, Refusal::NotTalking);
    }
}

#[test]
fn supervisors_monitor_and_whisper_agents_cannot() {
    let mut w = World::new(queue_policy());
    let alice = w.agent_online("alice", &["support"]);
    let sup = w.agent_with_role("sue", &["support"], Role::Supervisor);
    w.command(
        "sue",
        Command::SetPresence {
            available: false,
            reason: Some("supervising".into()),
        },
    );
    let wa = w.talking_call("c1", "alice");
    let acts = w.command("sue", Command::Monitor { call: call("c1") });
    let r = routes(&acts);
    assert!(r.contains(&(sup.streams[0], Some(wa.leg))));
    assert!(r.contains(&(sup.streams[1], Some(alice.leg))));
    assert!(
        !r.iter().any(|(_, s)| *s == Some(sup.leg)),
        "nothing of the supervisor's reaches anyone"
    );
    let acts = w.command("sue", Command::Whisper { call: call("c1") });
    let r = routes(&acts);
    assert!(
        r.contains(&(alice.streams[1], Some(sup.leg))),
        "the agent hears the whisper"
    );
    assert!(
        !r.contains(&(wa.stream, Some(sup.leg))),
        "the caller does not"
    );
    let acts = w.command("sue", Command::StopMonitor);
    assert!(routes(&acts).contains(&(alice.streams[1], None)));
    // An agent may not monitor.
    w.agent_online("bob", &["support"]);
    let acts = w.command("bob", Command::Monitor { call: call("c1") });
    assert!(acts.iter().any(|a| matches!(
        a,
        Action::Notify {
            notice: Notice::Refused {
                code: Refusal::Forbidden,
                ..
            },
            ..
        }
    )));
}

#[test]
fn duplicate_late_and_out_of_place_events_change_nothing() {
    let mut w = World::new(queue_policy());
    w.agent_online("alice", &["support"]);
    // A terminate before its connect: the connect that follows starts nothing.
    let acts = w.input(Input::Terminated {
        call: call("c0"),
        status: None,
        errors: vec![],
    });
    assert!(acts.is_empty());
    let (acts, wa) = w.offer("c0");
    assert!(acts.is_empty() && wa.is_none());
    // A duplicate connect is handled once.
    w.ringing_call("c1");
    let (acts, wa) = w.offer("c1");
    assert!(acts.is_empty() && wa.is_none());
    // Answering a call that is not ringing at you, hanging up someone else's call.
    let acts = w.command("alice", Command::HangUp { call: call("c1") });
    assert!(acts.iter().any(|a| matches!(
        a,
        Action::Notify {
            notice: Notice::Refused {
                code: Refusal::NotYourCall,
                ..
            },
            ..
        }
    )));
    w.agent_online("bob", &["support"]);
    let acts = w.command("bob", Command::Answer { call: call("c1") });
    assert!(acts.iter().any(|a| matches!(
        a,
        Action::Notify {
            notice: Notice::Refused {
                code: Refusal::NotRinging,
                ..
            },
            ..
        }
    )));
    // Events for ended calls.
    w.command("alice", Command::Answer { call: call("c1") });
    w.graph_ok("c1", GraphAction::Accept);
    w.command("alice", Command::HangUp { call: call("c1") });
    let n = w.finished().len();
    for input in [
        Input::Terminated {
            call: call("c1"),
            status: None,
            errors: vec![],
        },
        Input::GraphDone {
            call: call("c1"),
            action: GraphAction::Accept,
            result: Ok(()),
        },
        Input::AgentCommand {
            agent: agent("alice"),
            command: Command::HangUp { call: call("c1") },
        },
    ] {
        let acts = w.input(input);
        assert!(
            !acts
                .iter()
                .any(|a| matches!(a, Action::Graph { .. } | Action::Finished(_))),
            "{acts:?}"
        );
    }
    assert_eq!(w.finished().len(), n, "one record per call");
}

#[test]
fn graph_and_media_failures_end_calls_cleanly() {
    let mut w = World::new(queue_policy());
    w.agent_online("alice", &["support"]);
    // pre_accept refused: reject, leg closed.
    let (_, wa) = w.offer("c1");
    let acts = w.graph_err("c1", GraphAction::PreAccept, 138_006);
    assert!(has_graph(&acts, "c1", GraphAction::Reject));
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::CloseLeg { leg } if *leg == wa.as_ref().unwrap().leg)));
    assert_eq!(w.finished()[0].meta_errors, vec![138_006]);
    // accept refused: the agent is told, the call rejected, the agent back (no wrap-up talk).
    w.ringing_call("c2");
    w.command("alice", Command::Answer { call: call("c2") });
    let acts = w.graph_err("c2", GraphAction::Accept, 138_000);
    assert!(acts.iter().any(|a| matches!(
        a,
        Action::Notify {
            notice: Notice::CallEnded { .. },
            ..
        }
    )));
    assert!(has_graph(&acts, "c2", GraphAction::Reject));
    assert_eq!(w.finished()[1].outcome, Outcome::Failed);
    // The WhatsApp leg fails mid-call: terminate.
    w.advance(Duration::from_secs(10));
    let wa = w.talking_call("c3", "alice");
    let acts = w.input(Input::MediaGone {
        leg: wa.leg,
        failed: true,
    });
    assert!(has_graph(&acts, "c3", GraphAction::Terminate));
    assert_eq!(w.finished()[2].outcome, Outcome::Failed);
}

#[test]
fn shutdown_ends_every_call_at_meta() {
    let mut w = World::new(queue_policy());
    w.agent_online("alice", &["support"]);
    w.talking_call("c1", "alice");
    w.ringing_call("c2");
    let acts = w.input(Input::Shutdown);
    assert!(has_graph(&acts, "c1", GraphAction::Terminate));
    // c2 waits in the queue, accepted: terminated too. A call never accepted gets a reject.
    assert!(has_graph(&acts, "c2", GraphAction::Terminate));
    assert_eq!(w.finished().len(), 2);
    assert!(w.c.calls().is_empty());
    let mut w = World::new(queue_policy());
    w.agent_online("alice", &["support"]);
    w.ringing_call("c3");
    let acts = w.input(Input::Shutdown);
    assert_eq!(
        graph_actions(&acts),
        vec![("c3".into(), GraphAction::Reject)]
    );
}

#[test]
fn an_aborted_call_ends_alone_at_meta_and_here_and_the_centre_goes_on() {
    let mut w = World::new(queue_policy());
    w.agent_online("alice", &["support"]);
    w.agent_online("bob", &["support"]);
    let wa = w.talking_call("c1", "alice");
    w.talking_call("c2", "bob");
    // What the driver does once handling one of c1's inputs panicked: it names c1 ...
    assert_eq!(
        w.c.call_of(&Input::MediaConnected { leg: wa.leg }),
        Some(call("c1"))
    );
    w.c.abort(w.now, &call("c1"));
    let acts = w.drain();
    // ... which ends at Meta, is recorded as failed, and its agent is told and wraps up.
    assert_eq!(
        graph_actions(&acts),
        vec![("c1".into(), GraphAction::Terminate)]
    );
    let ended = w.finished();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].call, call("c1"));
    assert_eq!(ended[0].outcome, Outcome::Failed);
    assert!(acts.iter().any(|a| matches!(
        a,
        Action::Notify { agent: who, notice: Notice::CallEnded { .. } } if *who == agent("alice")
    )));
    assert!(matches!(w.presence("alice"), Presence::WrapUp { .. }));
    // The other call goes on; aborting an ended call changes nothing.
    assert_eq!(w.c.phase(&call("c2")), Some(&Phase::talking(agent("bob"))));
    w.c.abort(w.now, &call("c1"));
    assert!(w.drain().is_empty());
}

#[test]
fn a_chosen_away_reason_that_reads_like_the_systems_is_not_taken_for_it() {
    let mut w = World::new(queue_policy());
    w.agent_online("alice", &["support"]);
    // A configured reason with the very words of the system's own.
    w.command(
        "alice",
        Command::SetPresence {
            available: false,
            reason: Some(crate::routing::NO_AUDIO.into()),
        },
    );
    let chosen = Presence::Away {
        reason: AwayReason::Chosen(crate::routing::NO_AUDIO.into()),
    };
    assert_eq!(w.presence("alice"), chosen);
    // Her audio reconnecting (a new leg) does not make her available: she chose to be away.
    let l = w.leg_ready("alice", 2).leg;
    w.input(Input::MediaConnected { leg: l });
    assert_eq!(w.presence("alice"), chosen);
    let (_, wa) = w.offer("c1");
    let mut acts = w.graph_ok("c1", GraphAction::PreAccept);
    acts.extend(w.input(Input::MediaConnected {
        leg: wa.expect("answered").leg,
    }));
    assert!(rang(&acts).is_empty(), "nobody rung: {acts:?}");
    // Once she chooses to be available, the waiting call rings her.
    let acts = w.command(
        "alice",
        Command::SetPresence {
            available: true,
            reason: None,
        },
    );
    assert_eq!(rang(&acts), vec![("alice".to_owned(), "c1".to_owned())]);
}

#[test]
fn nobody_is_rung_before_their_audio_is_up() {
    let mut w = World::new(queue_policy());
    w.input(Input::AgentJoined {
        agent: agent("alice"),
        role: Role::Agent,
        queues: vec!["support".into()],
    });
    assert_eq!(
        w.presence("alice"),
        Presence::Away {
            reason: AwayReason::NoAudio
        }
    );
    w.ringing_call("c1");
    assert!(rang(&w.log).is_empty());
    assert!(matches!(w.c.phase(&call("c1")), Some(Phase::Queued { .. })));
    let l = w.leg_ready("alice", 1).leg;
    let acts = w.input(Input::MediaConnected { leg: l });
    assert_eq!(rang(&acts), vec![("alice".into(), "c1".into())]);
}

#[test]
fn asking_to_be_available_without_audio_keeps_the_agent_away_and_unrung() {
    let mut w = World::new(queue_policy());
    w.input(Input::AgentJoined {
        agent: agent("alice"),
        role: Role::Agent,
        queues: vec!["support".into()],
    });
    w.agent_online("bob", &["support"]);
    let acts = w.command(
        "alice",
        Command::SetPresence {
            available: true,
            reason: None,
        },
    );
    assert!(acts.iter().any(|a| matches!(a,
        Action::Notify { agent: a, notice: Notice::Refused { code: Refusal::NoAudio, .. } } if a.0 == "alice")));
    assert_eq!(
        w.presence("alice"),
        Presence::Away {
            reason: AwayReason::NoAudio
        }
    );
    // Alice has waited longer, but only Bob can hear the caller.
    w.ringing_call("c1");
    assert_eq!(rang(&w.log), vec![("bob".into(), "c1".into())]);
}

#[test]
fn the_ring_names_the_business_number_as_meta_displays_it_and_its_id() {
    let mut w = World::new(queue_policy());
    w.agent_online("alice", &["support"]);
    w.ringing_call("c1");
    let ring = w.log.iter().find_map(|a| match a {
        Action::Notify {
            notice:
                Notice::Ringing {
                    business_number,
                    display_number,
                    ..
                },
            ..
        } => Some((business_number.clone(), display_number.clone())),
        _ => None,
    });
    assert_eq!(ring, Some((Some("100".into()), Some("15550100".into()))));
}

#[test]
fn a_session_replacing_another_is_not_rung_before_its_own_audio_is_up() {
    let mut w = World::new(queue_policy());
    w.agent_online("alice", &["support"]);
    w.agent_online("bob", &["support"]);
    assert_eq!(w.presence("alice"), Presence::Available);
    // A second page of Alice's takes over; its PeerConnection is not up yet.
    w.input(Input::AgentJoined {
        agent: agent("alice"),
        role: Role::Agent,
        queues: vec!["support".into()],
    });
    assert_eq!(
        w.presence("alice"),
        Presence::Away {
            reason: AwayReason::NoAudio
        }
    );
    w.ringing_call("c1");
    assert_eq!(rang(&w.log), vec![("bob".into(), "c1".into())]);
    // Its audio comes up: available again, and rung for the next call.
    let l = w.leg_ready("alice", 2).leg;
    w.input(Input::MediaConnected { leg: l });
    assert_eq!(w.presence("alice"), Presence::Available);
    w.ringing_call("c2");
    assert_eq!(rang(&w.log)[1], ("alice".into(), "c2".into()));
}

#[test]
fn the_business_numbers_cap_rejects_at_once() {
    let mut w = World::with(
        queue_policy(),
        CentreConfig {
            max_calls_per_number: 1,
            ..CentreConfig::default()
        },
    );
    w.agent_online("alice", &["support"]);
    w.ringing_call("c1");
    let (acts, wa) = w.offer("c2");
    assert!(wa.is_none());
    assert!(has_graph(&acts, "c2", GraphAction::Reject));
}

#[test]
fn whatsapp_closing_the_media_ends_the_call_as_the_callers_with_nothing_sent_to_meta() {
    let mut w = World::new(queue_policy());
    w.agent_online("alice", &["support"]);
    let wa = w.talking_call("c1", "alice");
    let acts = w.input(Input::MediaGone {
        leg: wa.leg,
        failed: false,
    });
    assert!(graph_actions(&acts).is_empty(), "Meta already knows");
    let f = w.finished();
    assert_eq!(
        (f[0].outcome, f[0].ended_by),
        (Outcome::Answered, EndedBy::Caller)
    );
    // Meta's terminate webhook that follows changes nothing.
    let acts = w.input(Input::Terminated {
        call: call("c1"),
        status: Some("COMPLETED".into()),
        errors: vec![],
    });
    assert!(acts.is_empty());
    assert_eq!(w.finished().len(), 1);
}

#[test]
fn done_ends_wrap_up_early_and_only_during_wrap_up() {
    let mut w = World::new(queue_policy());
    w.agent_online("alice", &["support"]);
    // Not in wrap-up: nothing happens.
    let acts = w.command("alice", Command::EndWrapUp);
    assert!(acts.is_empty());
    w.talking_call("c1", "alice");
    w.command("alice", Command::HangUp { call: call("c1") });
    assert!(matches!(w.presence("alice"), Presence::WrapUp { .. }));
    w.command("alice", Command::EndWrapUp);
    assert_eq!(w.presence("alice"), Presence::Available);
    // The wrap-up timer that was due no longer fires anything.
    let acts = w.advance(Duration::from_secs(20));
    assert!(acts.is_empty(), "{acts:?}");
}

#[test]
fn draining_declines_new_calls_and_lets_live_ones_finish() {
    let mut w = World::new(queue_policy());
    w.agent_online("alice", &["support"]);
    w.agent_online("bob", &["support"]);
    w.talking_call("c1", "alice");
    w.input(Input::Drain);
    let (acts, wa) = w.offer("c2");
    assert!(wa.is_none(), "no media for a call declined while draining");
    assert_eq!(
        graph_actions(&acts),
        vec![("c2".into(), GraphAction::Reject)]
    );
    assert_eq!(
        w.c.phase(&call("c1")),
        Some(&Phase::talking(agent("alice")))
    );
    let acts = w.command("alice", Command::HangUp { call: call("c1") });
    assert!(has_graph(&acts, "c1", GraphAction::Terminate));
    assert!(w.c.calls().is_empty());
}

fn metrics_of(acts: &[Action]) -> Vec<Metric> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Metric(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

fn setup_samples(acts: &[Action]) -> Vec<(SetupStep, Duration)> {
    metrics_of(acts)
        .into_iter()
        .filter_map(|m| match m {
            Metric::Setup { step, took } => Some((step, took)),
            _ => None,
        })
        .collect()
}

#[test]
fn set_up_latencies_are_measured_step_by_step_in_simulated_time() {
    let mut w = World::new(queue_policy());
    let al = w.agent_online("ann", &["support"]);
    let ms = Duration::from_millis;

    // Offer → engine answer 7 ms later → pre_accept: 3 ms before the input plus 7 ms.
    w.input(Input::Offered {
        call: call("c1"),
        from: None,
        name: None,
        business_number: Some("100".into()),
        display_number: None,
        offer: "v=0".into(),
        received_at: w.now - ms(3),
        unshared: false,
        agent: None,
    });
    w.advance(ms(7));
    let l = w.new_leg();
    let wa = WaLeg {
        leg: l,
        stream: StreamId { leg: l, index: 0 },
        sdp: "answer".into(),
    };
    let acts = w.input(Input::Answered {
        call: call("c1"),
        result: Ok(wa.clone()),
    });
    assert_eq!(
        setup_samples(&acts),
        vec![(SetupStep::WebhookToPreAccept, ms(10))]
    );
    w.graph_ok("c1", GraphAction::PreAccept);
    w.input(Input::MediaConnected { leg: wa.leg });

    // Ann answers; accept goes out at once (the leg is connected): 0 ms.
    w.advance(ms(500));
    let acts = w.command("ann", Command::Answer { call: call("c1") });
    assert!(has_graph(&acts, "c1", GraphAction::Accept));
    assert_eq!(
        setup_samples(&acts),
        vec![(SetupStep::AnswerToAccept, ms(0))]
    );

    // The caller's first packet reaches Ann's stream 40 ms after she answered; a monitoring
    // supervisor's stream or another leg's packet does not count.
    w.advance(ms(25));
    let acts = w.input(Input::SourceFlowing {
        stream: StreamId {
            leg: leg(999),
            index: 0,
        },
        source: wa.leg,
    });
    assert!(setup_samples(&acts).is_empty());
    w.advance(ms(15));
    let acts = w.input(Input::SourceFlowing {
        stream: al.streams[0],
        source: wa.leg,
    });
    assert_eq!(
        setup_samples(&acts),
        vec![(SetupStep::AnswerToFirstCallerPacket, ms(40))]
    );

    // accept answered 60 ms after it was sent; the first packet to Meta 2 ms later; only once.
    w.advance(ms(20));
    let acts = w.graph_ok("c1", GraphAction::Accept);
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::StartSending { leg } if *leg == wa.leg)));
    assert_eq!(
        metrics_of(&acts),
        vec![Metric::Answered {
            queue: "support".into(),
            within_target: true
        }]
    );
    w.advance(ms(2));
    let acts = w.input(Input::FirstPacket { stream: wa.stream });
    assert_eq!(
        setup_samples(&acts),
        vec![(SetupStep::AcceptToFirstPacket, ms(62))]
    );
    assert!(setup_samples(&w.input(Input::FirstPacket { stream: wa.stream })).is_empty());
    assert!(setup_samples(&w.input(Input::SourceFlowing {
        stream: al.streams[0],
        source: wa.leg,
    }))
    .is_empty());
}

#[test]
fn offered_answered_rejected_and_ring_no_answer_are_reported_per_queue() {
    let mut w = World::new(queue_policy());
    // Unstaffed: offered, then rejected at once.
    let (acts, _) = w.offer("c0");
    assert_eq!(
        metrics_of(&acts),
        vec![
            Metric::Offered {
                queue: "support".into()
            },
            Metric::Rejected {
                queue: "support".into(),
                reason: RejectReason::Unstaffed
            }
        ]
    );

    // Ann lets it ring out, Bob answers after 20 s + : not within the 20 s target.
    w.agent_online("ann", &["support"]);
    w.advance(Duration::from_secs(1));
    w.agent_online("bob", &["support"]);
    w.ringing_call("c1");
    let rung_first = w.c.calls()[0].agent.clone().expect("ringing");
    let acts = w.advance(CentreConfig::default().ring_timeout);
    assert!(metrics_of(&acts).contains(&Metric::RingNoAnswer {
        queue: "support".into()
    }));
    let other = if rung_first == agent("ann") {
        "bob"
    } else {
        "ann"
    };
    w.advance(Duration::from_secs(6));
    w.command(other, Command::Answer { call: call("c1") });
    let acts = w.graph_ok("c1", GraphAction::Accept);
    assert!(metrics_of(&acts).contains(&Metric::Answered {
        queue: "support".into(),
        within_target: false
    }));

    // The service level counts ended calls: c0 (declined) and c1 (answered late) → 0 of 2.
    w.command(other, Command::HangUp { call: call("c1") });
    assert_eq!(
        w.c.service_levels(),
        vec![(
            QueueId::from("support"),
            ServiceLevel {
                ended: 2,
                within_target: 0
            }
        )]
    );

    // A call answered quickly raises it to 1 of 3.
    w.advance(Duration::from_secs(30));
    w.command(other, Command::EndWrapUp);
    w.command(
        &rung_first.0,
        Command::SetPresence {
            available: true,
            reason: None,
        },
    );
    w.talking_call("c2", other);
    w.command(other, Command::HangUp { call: call("c2") });
    let levels = w.c.service_levels();
    assert_eq!(levels[0].1.within_target, 1, "{levels:?}");
    assert_eq!(levels[0].1.ended, 3);
    assert!((levels[0].1.ratio() - 1.0 / 3.0).abs() < 1e-9);
}

/// A waiting call released to another node leaves without a word to Meta and without a
/// record; the other node's centre adopts it at the front of its queue, with the time it has
/// waited, and rings its free agent at once; a call not waiting is not released.
#[test]
fn a_waiting_call_is_released_to_another_node_and_adopted_there() {
    let mut a = World::new(queue_policy());
    a.agent_online("bob", &["support"]);
    a.talking_call("c1", "bob");
    let wa = a.ringing_call("c2");
    a.graph_ok("c2", GraphAction::Accept);
    assert!(matches!(a.c.phase(&call("c2")), Some(Phase::Queued { .. })));
    assert!(
        a.c.release(a.now, &call("c1"), "node-a").is_none(),
        "a talking call stays"
    );
    a.advance(Duration::from_secs(7));
    let (handed, released) = a.c.release(a.now, &call("c2"), "node-a").expect("released");
    assert_eq!(released.leg, wa.leg);
    assert_eq!(handed.waited_ms, 7_000);
    assert_eq!(handed.wait_left_ms, 113_000);
    assert_eq!(a.c.phase(&call("c2")), None);
    let acts = a.drain();
    assert!(
        acts.iter().all(|x| matches!(x, Action::FloorChanged)),
        "{acts:?}"
    );
    assert!(a.c.routing().waiting(&"support".into()).is_empty());
    // A late terminate for it here changes nothing (it is another node's now).
    let acts = a.input(Input::Terminated {
        call: call("c2"),
        status: None,
        errors: vec![],
    });
    assert!(!acts.iter().any(|x| matches!(x, Action::Finished(_))));

    let mut b = World::new(queue_policy());
    b.agent_online("carol", &["support"]);
    let trunk = WaLeg {
        leg: leg(900),
        stream: StreamId {
            leg: leg(900),
            index: 0,
        },
        sdp: "answer".into(),
    };
    assert!(b.c.adopt(b.now, handed.clone(), trunk.clone()));
    let acts = b.drain();
    assert!(acts.iter().any(|x| matches!(x, Action::MarkLive { .. })));
    assert!(acts
        .iter()
        .any(|x| matches!(x, Action::StartSending { leg } if *leg == trunk.leg)));
    assert_eq!(rang(&acts), vec![("carol".into(), "c2".into())]);
    // No Graph action: Meta accepted it long ago, on the other node.
    assert!(!acts.iter().any(|x| matches!(x, Action::Graph { .. })));
    // The default account has no hold audio of its own: none given.
    assert!(!acts.iter().any(|x| matches!(x, Action::HoldAudio { .. })));
    // acme's call taken over by a node that knows acme's hold audio: this end plays it.
    let mut e = World::new(queue_policy());
    with_acme(&mut e, queue_policy());
    let acme_call = crate::calls::HandedCall {
        call: call("c9"),
        queue: "support@acme".into(),
        ..handed.clone()
    };
    assert!(e.c.adopt(e.now, acme_call, trunk.clone()));
    assert!(e.drain().iter().any(
        |x| matches!(x, Action::HoldAudio { leg, audio } if *leg == trunk.leg && *audio == acme_hold())
    ));
    // Adopted twice, or while draining: refused, the extra leg closed.
    assert!(!b.c.adopt(b.now, handed.clone(), trunk.clone()));
    let mut d = World::new(queue_policy());
    d.input(Input::Drain);
    assert!(!d.c.adopt(d.now, handed, trunk.clone()));
    assert!(d
        .drain()
        .iter()
        .any(|x| matches!(x, Action::CloseLeg { leg } if *leg == trunk.leg)));
}

/// With several nodes, the agent chosen for a call across the cluster (the longest idle of
/// all nodes, taken out of the shared order) is the one rung, even if another agent of this
/// node has waited longer here; if that agent is no longer free, the usual order applies.
#[test]
fn the_agent_chosen_across_the_nodes_is_rung_first() {
    let mut w = World::new(queue_policy());
    w.agent_online("bob", &["support"]);
    w.advance(Duration::from_secs(5));
    w.agent_online("alice", &["support"]);
    let offer = |w: &mut World, id: &str, chosen: &str| {
        w.input(Input::Offered {
            call: call(id),
            from: None,
            name: None,
            business_number: None,
            display_number: None,
            offer: "v=0".into(),
            received_at: w.now,
            unshared: false,
            agent: Some(agent(chosen)),
        });
        let l = w.new_leg();
        w.input(Input::Answered {
            call: call(id),
            result: Ok(WaLeg {
                leg: l,
                stream: StreamId { leg: l, index: 0 },
                sdp: "answer".into(),
            }),
        });
        w.graph_ok(id, GraphAction::PreAccept)
    };
    let acts = offer(&mut w, "c1", "alice");
    assert_eq!(rang(&acts), vec![("alice".into(), "c1".into())]);
    // alice is ringing now: the next call chosen for her rings bob, the next free one.
    let acts = offer(&mut w, "c2", "alice");
    assert_eq!(rang(&acts), vec![("bob".into(), "c2".into())]);
}

/// With the queues' order shared by several nodes, a freed agent here is not rung for a call
/// waiting here by the centre itself (an older call may wait on another node); the shared
/// order's `Dispatch` rings them, and only while both are free. Without Redis the centre
/// serves its own queue again.
#[test]
fn with_the_order_shared_waiting_calls_are_rung_only_when_dispatched() {
    let mut w = World::new(queue_policy());
    w.agent_online("bob", &["support"]);
    w.talking_call("c1", "bob");
    w.input(Input::QueuesShared { on: true });
    w.ringing_call("c2");
    w.graph_ok("c2", GraphAction::Accept);
    assert!(matches!(w.c.phase(&call("c2")), Some(Phase::Queued { .. })));
    // bob hangs up and finishes wrap-up: free, and not rung for c2 by the centre.
    w.command("bob", Command::HangUp { call: call("c1") });
    w.advance(Duration::from_secs(60));
    assert_eq!(w.presence("bob"), Presence::Available);
    assert!(matches!(w.c.phase(&call("c2")), Some(Phase::Queued { .. })));
    // The shared order picks c2 for bob.
    let acts = w.input(Input::Dispatch {
        call: call("c2"),
        agent: agent("bob"),
    });
    assert_eq!(rang(&acts), vec![("bob".into(), "c2".into())]);
    // A dispatch for an agent no longer free does nothing.
    w.ringing_call("c3");
    w.graph_ok("c3", GraphAction::Accept);
    let acts = w.input(Input::Dispatch {
        call: call("c3"),
        agent: agent("bob"),
    });
    assert!(rang(&acts).is_empty());
    // carol signs in: not rung for c3 by the centre while the order is shared...
    w.agent_online("carol", &["support"]);
    assert!(matches!(w.c.phase(&call("c3")), Some(Phase::Queued { .. })));
    // ...and at once when Redis is lost: the centre serves its own queue again.
    let acts = w.input(Input::QueuesShared { on: false });
    assert_eq!(rang(&acts), vec![("carol".into(), "c3".into())]);
}

#[test]
fn a_burst_beyond_the_set_up_bound_is_rejected_at_once_and_the_rest_set_up() {
    let mut w = World::with(
        queue_policy(),
        CentreConfig {
            max_setting_up: 3,
            ..CentreConfig::default()
        },
    );
    w.agent_online("bob", &["support"]);
    // A burst of 10 connects before any leg has connected: 3 are answered, 7 declined at once.
    let mut answered = vec![];
    for i in 0..10 {
        let id = format!("b{i}");
        let (acts, wa) = w.offer(&id);
        match wa {
            Some(wa) => answered.push((id, wa)),
            None => assert!(has_graph(&acts, &id, GraphAction::Reject), "{id}: {acts:?}"),
        }
    }
    assert_eq!(answered.len(), 3);
    assert_eq!(w.c.counters().rejected_setup_busy, 7);
    let rejected = w
        .log
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::Metric(Metric::Rejected {
                    reason: RejectReason::SetupBusy,
                    ..
                })
            )
        })
        .count();
    assert_eq!(rejected, 7);
    // One leg connects: its set-up is over, so one more call can be set up, and no more.
    let (first, wa) = &answered[0];
    w.graph_ok(first, GraphAction::PreAccept);
    w.input(Input::MediaConnected { leg: wa.leg });
    assert!(w.offer("late1").1.is_some());
    assert!(w.offer("late2").1.is_none());
    assert_eq!(w.c.counters().rejected_setup_busy, 8);
}

#[test]
fn a_call_past_metas_window_and_not_yet_accepted_waits_in_its_queue_rather_than_ringing() {
    // Found by the property test: `pre_accept` still in flight (so the leg cannot connect)
    // when Meta's window ran out, and an agent free. The window queued the call, the queue
    // rang the agent, the window (still over) took the ring back, and so on at the same
    // instant without end: `poll_timeout` stayed in the past.
    let mut w = World::new(queue_policy());
    w.agent_online("alice", &["support"]);
    let (_, wa) = w.offer("c1");
    let wa = wa.expect("answered");
    let window = w.c.poll_timeout().expect("Meta's window");
    w.now = window;
    w.c.handle_timeout(w.now);
    let acts = w.drain();
    assert!(rang(&acts).is_empty(), "{acts:?}");
    assert!(matches!(w.c.phase(&call("c1")), Some(Phase::Queued { .. })));
    assert!(
        w.c.poll_timeout().is_some_and(|t| t > w.now),
        "nothing falls due again at once"
    );
    // Once the leg connects, the queue accepts the call; being accepted, it rings alice.
    w.graph_ok("c1", GraphAction::PreAccept);
    let acts = w.input(Input::MediaConnected { leg: wa.leg });
    assert!(has_graph(&acts, "c1", GraphAction::Accept));
    assert_eq!(rang(&acts), vec![("alice".into(), "c1".into())]);
}

#[test]
fn an_answer_from_the_engine_after_metas_window_moved_the_call_on_closes_its_leg() {
    // Found by the property test: the engine answered after the window had queued the call
    // (still answering); the call no longer took the answer, and its leg was never closed.
    let mut w = World::new(queue_policy());
    w.agent_online("alice", &["support"]);
    let acts = w.input(Input::Offered {
        call: call("c1"),
        from: None,
        name: None,
        business_number: None,
        display_number: None,
        offer: "v=0 offer".into(),
        received_at: w.now,
        unshared: false,
        agent: None,
    });
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::AnswerWhatsApp { .. })));
    w.advance(Duration::from_secs(25));
    assert!(matches!(w.c.phase(&call("c1")), Some(Phase::Queued { .. })));
    let l = w.new_leg();
    let acts = w.input(Input::Answered {
        call: call("c1"),
        result: Ok(WaLeg {
            leg: l,
            stream: StreamId { leg: l, index: 0 },
            sdp: "answer".into(),
        }),
    });
    assert!(acts.contains(&Action::CloseLeg { leg: l }), "{acts:?}");
}

#[test]
fn a_pre_accept_failing_after_the_window_sent_accept_terminates_the_call() {
    // Found by the property test: `pre_accept` slow, Meta's window queued the call, its leg
    // connected and `accept` went out behind `pre_accept` (the driver sends it as soon as
    // `pre_accept` is done); then `pre_accept` failed and the call was *rejected*, though Meta
    // may take the `accept`: an accepted call is ended with `terminate`.
    let mut w = World::new(queue_policy());
    w.agent_online("alice", &["support"]);
    w.command(
        "alice",
        Command::SetPresence {
            available: false,
            reason: Some("lunch".into()),
        },
    );
    let (_, wa) = w.offer("c1");
    let wa = wa.expect("answered");
    w.advance(Duration::from_secs(25));
    let acts = w.input(Input::MediaConnected { leg: wa.leg });
    assert!(has_graph(&acts, "c1", GraphAction::Accept));
    let acts = w.graph_err("c1", GraphAction::PreAccept, 131_000);
    assert!(has_graph(&acts, "c1", GraphAction::Terminate), "{acts:?}");
    assert!(!has_graph(&acts, "c1", GraphAction::Reject));
    assert_eq!(w.finished()[0].outcome, Outcome::Failed);
}

#[test]
fn a_new_leg_replacing_a_connected_one_is_not_rung_before_it_connects() {
    // Found by the property test: a second offer on one session replaced a connected leg; the
    // agent stayed available and was rung with no audio (and could not answer).
    let mut w = World::new(queue_policy());
    w.agent_online("alice", &["support"]);
    let l = w.leg_ready("alice", 1).leg;
    w.ringing_call("c1");
    assert!(rang(&w.log).is_empty());
    assert!(matches!(w.c.phase(&call("c1")), Some(Phase::Queued { .. })));
    // Its connection lets the waiting call ring her.
    let acts = w.input(Input::MediaConnected { leg: l });
    assert_eq!(rang(&acts), vec![("alice".into(), "c1".into())]);
}

#[test]
fn an_agent_whose_page_reloaded_while_rung_is_not_rung_again_before_their_audio_is_up() {
    // Found by the property test: alice's page reloaded while a call rang her (her presence,
    // ringing, was left as it was); Meta's window took the ring back to the queue, which made
    // her available again, and the queue rang her at once, with no audio.
    let mut w = World::with(
        queue_policy(),
        CentreConfig {
            ring_timeout: Duration::from_secs(30),
            answer_deadline: Duration::from_secs(25),
            ..CentreConfig::default()
        },
    );
    w.agent_online("alice", &["support"]);
    w.ringing_call("c1");
    assert_eq!(rang(&w.log), vec![("alice".into(), "c1".into())]);
    w.input(Input::AgentJoined {
        agent: agent("alice"),
        role: Role::Agent,
        queues: vec!["support".into()],
    });
    let acts = w.advance(Duration::from_secs(25));
    assert!(rang(&acts).is_empty(), "{acts:?}");
    assert!(matches!(w.c.phase(&call("c1")), Some(Phase::Queued { .. })));
    // Her new page's leg connects: now she is rung.
    let l = w.leg_ready("alice", 1).leg;
    let acts = w.input(Input::MediaConnected { leg: l });
    assert_eq!(rang(&acts), vec![("alice".into(), "c1".into())]);
}

fn refused(acts: &[Action], who: &str) -> Vec<Refusal> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Notify {
                agent,
                notice: Notice::Refused { code, .. },
            } if agent.0 == who => Some(*code),
            _ => None,
        })
        .collect()
}

/// A second account, `acme`, on the same centre: its number 200 leads to its own queue, with
/// its own ring timeout.
fn with_acme(w: &mut World, support: NoAgentPolicy) {
    let times = crate::accounts::CallTimes {
        ring_timeout: Duration::from_secs(5),
        wrap_up: Duration::ZERO,
        grace: Duration::from_secs(30),
        answer_deadline: Duration::from_secs(25),
    };
    w.input(Input::Reconfigure(Box::new(Reconfigure {
        queues: vec![
            QueueConfig {
                id: "support".into(),
                policy: support,
            },
            QueueConfig {
                id: "sales".into(),
                policy: queue_policy(),
            },
            QueueConfig {
                id: "support@acme".into(),
                policy: queue_policy(),
            },
        ],
        default_queue: "support".into(),
        numbers: [("200".to_owned(), QueueId::from("support@acme"))].into(),
        times: [("acme".to_owned(), times)].into(),
        agent_queues: Default::default(),
        hold_audio: [("acme".to_owned(), acme_hold())].into(),
        callback_queues: Default::default(),
    })));
}

/// acme's own hold audio (one clip for the whole test run: equal by identity).
fn acme_hold() -> crate::media::HoldAudio {
    static CLIP: std::sync::OnceLock<crate::media::HoldAudio> = std::sync::OnceLock::new();
    CLIP.get_or_init(|| {
        let packet: std::sync::Arc<[u8]> = std::sync::Arc::from(&[0xF8u8, 1, 2][..]);
        crate::media::HoldAudio(vec![packet].into())
    })
    .clone()
}

#[test]
fn two_accounts_share_the_centre_without_meeting() {
    let mut w = World::new(queue_policy());
    with_acme(&mut w, queue_policy());
    w.agent_online("alice", &["support"]);
    w.agent_online("ann@acme", &["support@acme"]);
    let sam = w.agent_with_role("sam@acme", &["support@acme"], Role::Supervisor);
    w.command(
        "sam@acme",
        Command::SetPresence {
            available: false,
            reason: None,
        },
    );
    // Each account's call rings its own agent, with its own account's ring timeout; acme's
    // WhatsApp leg plays acme's hold audio, the default account's the deployment's.
    let hold_audio = |acts: &[Action]| {
        acts.iter()
            .filter_map(|a| match a {
                Action::HoldAudio { leg, audio } => Some((*leg, audio.clone())),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let (acts, wa) = w.offer("c1");
    assert!(hold_audio(&acts).is_empty());
    w.graph_ok("c1", GraphAction::PreAccept);
    w.input(Input::MediaConnected {
        leg: wa.unwrap().leg,
    });
    assert_eq!(w.presence("alice"), Presence::Ringing { call: call("c1") });
    let (acts, wa) = w.offer_to("c2", "200");
    assert_eq!(hold_audio(&acts), [(wa.as_ref().unwrap().leg, acme_hold())]);
    let acts = w.graph_ok("c2", GraphAction::PreAccept);
    w.input(Input::MediaConnected {
        leg: wa.unwrap().leg,
    });
    let rings_for = acts.iter().find_map(|a| match a {
        Action::Notify {
            agent,
            notice: Notice::Ringing { rings_for, .. },
        } if agent.0 == "ann@acme" => Some(*rings_for),
        _ => None,
    });
    assert_eq!(rings_for, Some(Duration::from_secs(5)));
    let queue_of = |w: &World, id: &str| {
        w.c.calls()
            .into_iter()
            .find(|c| c.call == call(id))
            .map(|c| c.queue)
    };
    assert_eq!(queue_of(&w, "c2"), Some("support@acme".into()));
    w.command("alice", Command::Answer { call: call("c1") });
    w.graph_ok("c1", GraphAction::Accept);
    w.command("ann@acme", Command::Answer { call: call("c2") });
    w.graph_ok("c2", GraphAction::Accept);
    // acme's supervisor cannot listen to the default account's call (as if it did not
    // exist), and can to acme's.
    let acts = w.command("sam@acme", Command::Monitor { call: call("c1") });
    assert_eq!(refused(&acts, "sam@acme"), [Refusal::NoSuchCall]);
    assert!(routes(&acts).is_empty());
    let acts = w.command("sam@acme", Command::Monitor { call: call("c2") });
    assert!(refused(&acts, "sam@acme").is_empty());
    assert!(routes(&acts).iter().any(|(s, _)| *s == sam.streams[0]));
    // No transfer crosses accounts: not to another account's agent, nor to its queue.
    w.agent_online("bob", &["support"]);
    let acts = w.command(
        "ann@acme",
        Command::Transfer {
            call: call("c2"),
            to: TransferTarget::Agent(agent("bob")),
        },
    );
    assert_eq!(refused(&acts, "ann@acme"), [Refusal::AgentUnavailable]);
    let acts = w.command(
        "ann@acme",
        Command::Transfer {
            call: call("c2"),
            to: TransferTarget::Queue("sales".into()),
        },
    );
    assert_eq!(refused(&acts, "ann@acme"), [Refusal::UnknownQueue]);
    assert_eq!(
        w.c.phase(&call("c2")),
        Some(&Phase::talking(agent("ann@acme")))
    );
}

#[test]
fn a_queue_switched_to_decline_declines_the_next_call() {
    let mut w = World::new(queue_policy());
    w.agent_online("alice", &["support"]);
    w.talking_call("c1", "alice");
    // Nobody free: the next call waits in the queue.
    let (acts, wa) = w.offer("c2");
    assert!(has_graph(&acts, "c2", GraphAction::PreAccept));
    w.graph_ok("c2", GraphAction::PreAccept);
    w.input(Input::MediaConnected {
        leg: wa.unwrap().leg,
    });
    // The policy changes: the call waiting stays; the next is declined.
    with_acme(&mut w, NoAgentPolicy::Decline);
    let (acts, _) = w.offer("c3");
    assert!(has_graph(&acts, "c3", GraphAction::Reject));
    assert!(!has_graph(&acts, "c2", GraphAction::Reject));
    // An agent moved into a queue takes its waiting call at once.
    w.agent_online("bob", &["sales"]);
    let acts = w.input(Input::Reconfigure(Box::new(Reconfigure {
        queues: w
            .c
            .routing()
            .queue_ids()
            .into_iter()
            .map(|id| QueueConfig {
                policy: w.c.routing().queue(&id).unwrap().policy,
                id,
            })
            .collect(),
        default_queue: "support".into(),
        numbers: Default::default(),
        times: Default::default(),
        agent_queues: [(agent("bob"), vec![QueueId::from("support")])].into(),
        hold_audio: Default::default(),
        callback_queues: Default::default(),
    })));
    assert_eq!(rang(&acts), [("bob".to_owned(), "c2".to_owned())]);
}

#[test]
fn an_agent_whose_sign_in_is_withdrawn_hands_the_call_back_to_its_queue() {
    let mut w = World::new(queue_policy());
    let alice = w.agent_online("alice", &["support"]);
    let wa = w.talking_call("c1", "alice");
    w.agent_online("bob", &["support"]);
    // Bob is busy elsewhere first: the call waits for him at the front of the queue.
    w.talking_call("c2", "bob");
    let acts = w.input(Input::AgentRevoked {
        agent: agent("alice"),
    });
    // Alice is unrouted and told; the caller hears hold audio; nothing ends at Meta.
    assert!(routes(&acts).contains(&(alice.streams[0], None)));
    assert!(acts.iter().any(|a| matches!(
        a,
        Action::Notify { agent: who, notice: Notice::CallEnded { .. } } if who.0 == "alice"
    )));
    assert!(graph_actions(&acts).is_empty());
    assert!(!w.finished().iter().any(|e| e.call == call("c1")));
    assert!(matches!(w.c.phase(&call("c1")), Some(Phase::Queued { .. })));
    assert!(routes(&acts).iter().any(|(s, _)| *s == wa.stream));
    assert_eq!(w.presence("alice"), Presence::Offline);
    // Her page's own sign-out that follows changes nothing more.
    let acts = w.input(Input::AgentLeft {
        agent: agent("alice"),
        signed_out: true,
    });
    assert!(graph_actions(&acts).is_empty());
    // Bob, free again, takes it.
    w.command("bob", Command::HangUp { call: call("c2") });
    w.command("bob", Command::EndWrapUp);
    w.advance(Duration::from_secs(60));
    assert!(rang(&w.log).contains(&("bob".to_owned(), "c1".to_owned())));
}

/// The call steps its account's backend hears of, in order, from the log: (step, agent).
fn call_events(log: &[Action], id: &str) -> Vec<(CallStep, Option<String>)> {
    log.iter()
        .filter_map(|a| match a {
            Action::Event(e) => match &**e {
                HostEvent::Call {
                    kind, call, agent, ..
                } if call.0 == id => Some((*kind, agent.as_ref().map(|a| a.0.clone()))),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[test]
fn the_backend_hears_each_step_of_a_call_once_and_in_order() {
    let mut w = World::new(queue_policy());
    w.agent_online("alice", &["support"]);
    w.advance(Duration::from_secs(1));
    w.agent_online("bob", &["sales"]);
    w.talking_call("c1", "alice");
    // Mute is no step the backend hears of; hold and its end are.
    for command in [
        Command::Mute {
            call: call("c1"),
            on: true,
        },
        Command::Hold {
            call: call("c1"),
            on: true,
        },
        Command::Hold {
            call: call("c1"),
            on: true,
        },
        Command::Hold {
            call: call("c1"),
            on: false,
        },
        Command::Mute {
            call: call("c1"),
            on: false,
        },
    ] {
        w.command("alice", command);
    }
    w.command(
        "alice",
        Command::Transfer {
            call: call("c1"),
            to: TransferTarget::Agent(agent("bob")),
        },
    );
    w.command("bob", Command::Answer { call: call("c1") });
    // Bob's page reloads mid-call: his return is no new answer.
    w.input(Input::AgentLeft {
        agent: agent("bob"),
        signed_out: false,
    });
    w.advance(Duration::from_secs(5));
    w.agent_online("bob", &["sales"]);
    assert_eq!(w.c.phase(&call("c1")), Some(&Phase::talking(agent("bob"))));
    w.input(Input::Terminated {
        call: call("c1"),
        status: Some("COMPLETED".into()),
        errors: vec![],
    });
    let (a, b) = (Some("alice".to_owned()), Some("bob".to_owned()));
    assert_eq!(
        call_events(&w.log, "c1"),
        vec![
            (CallStep::Offered, None),
            (CallStep::Ringing, a.clone()),
            (CallStep::Answered, a.clone()),
            (CallStep::Held, a.clone()),
            (CallStep::Resumed, a.clone()),
            (CallStep::Transferred, a.clone()),
            (CallStep::Ringing, b.clone()),
            (CallStep::Answered, b.clone()),
        ]
    );
    // The transfer says where it went.
    assert!(w.log.iter().any(|x| matches!(x, Action::Event(e) if matches!(&**e,
        HostEvent::Call { kind: CallStep::Transferred, to: Some(TransferTarget::Agent(to)), .. } if to.0 == "bob"))));
    // A call declined at once is offered, then ends (its record says how).
    let mut w = World::new(NoAgentPolicy::Decline);
    w.offer("c2");
    assert_eq!(call_events(&w.log, "c2"), vec![(CallStep::Offered, None)]);
    assert_eq!(w.finished().len(), 1);
}

#[test]
fn the_backend_hears_an_agents_presence_when_it_changes_only() {
    let mut w = World::new(queue_policy());
    w.agent_online("alice", &["support"]);
    w.talking_call("c1", "alice");
    let states: Vec<String> = w
        .log
        .iter()
        .filter_map(|a| match a {
            Action::Event(e) => match &**e {
                HostEvent::Agent { agent, presence } if agent.0 == "alice" => {
                    Some(presence.name().to_owned())
                }
                _ => None,
            },
            _ => None,
        })
        .collect();
    // Each state once, however often her page was told it.
    let mut deduped = states.clone();
    deduped.dedup();
    assert_eq!(states, deduped, "{states:?}");
    assert_eq!(
        states.last().map(String::as_str),
        Some("on_call"),
        "{states:?}"
    );
    assert!(states.contains(&"ringing".to_owned()), "{states:?}");
}

mod callback;
