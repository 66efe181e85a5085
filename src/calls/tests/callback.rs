//! Call-backs and call-back tasks on simulated time: the dial, Meta's statuses and answer in
//! every order, the no-answer timeout, cancelling, refusals, and tasks from lost callers.

use super::*;
use crate::store::PermissionState;

const TO: &str = "15557654321";

fn placed(w: &mut World, _id: &str) -> (u64, WaLeg) {
    let acts = w.command(
        "alice",
        Command::CallBack {
            to: "+1 (555) 765-4321".into(),
            task: None,
        },
    );
    let dial = acts
        .iter()
        .find_map(|a| match a {
            Action::Dial { dial, to, .. } => {
                assert_eq!(to, TO, "the number is dialled as digits");
                Some(*dial)
            }
            _ => None,
        })
        .expect("a dial");
    let l = w.new_leg();
    let wa = WaLeg {
        leg: l,
        stream: StreamId { leg: l, index: 0 },
        sdp: "offer".into(),
    };
    (dial, wa)
}

fn dialed(w: &mut World, dial: u64, id: &str, wa: &WaLeg) -> Vec<Action> {
    w.input(Input::Dialed {
        dial,
        result: Ok(Placed {
            call: call(id),
            wa: wa.clone(),
        }),
    })
}

fn statuses(acts: &[Action]) -> Vec<CallBackStatus> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Notify {
                notice: Notice::CallBack { status, .. },
                ..
            } => Some(*status),
            _ => None,
        })
        .collect()
}

fn starts_sending(acts: &[Action]) -> bool {
    acts.iter()
        .any(|a| matches!(a, Action::StartSending { .. }))
}

fn world() -> World {
    let mut w = World::new(NoAgentPolicy::Queue {
        max_wait: Duration::from_secs(120),
    });
    w.agent_online("alice", &["support"]);
    w
}

/// The whole call-back: dialled, ringing, answered by webhook, talking both ways; nothing sent
/// to the customer before their answer; the agent hangs up with `terminate`.
#[test]
fn a_call_back_rings_is_answered_and_talks() {
    let mut w = world();
    let (dial, wa) = placed(&mut w, "cb1");
    assert!(matches!(w.presence("alice"), Presence::OnCall { .. }));
    let acts = dialed(&mut w, dial, "cb1", &wa);
    assert_eq!(statuses(&acts), vec![CallBackStatus::Calling]);
    assert!(matches!(
        w.c.phase(&call("cb1")),
        Some(Phase::Calling { ringing: false, .. })
    ));
    assert_eq!(w.presence("alice"), Presence::OnCall { call: call("cb1") });
    // Media connects early (ICE and DTLS need no answer from the person): still nothing sent.
    let acts = w.input(Input::MediaConnected { leg: wa.leg });
    assert!(!starts_sending(&acts));
    let acts = w.input(Input::CalleeStatus {
        call: call("cb1"),
        status: CalleeStatus::Ringing,
    });
    assert_eq!(statuses(&acts), vec![CallBackStatus::Ringing]);
    let acts = w.input(Input::CalleeAnswered {
        call: call("cb1"),
        sdp: "answer".into(),
        received_at: w.now,
    });
    assert!(acts.iter().any(|a| matches!(a,
        Action::ApplyAnswer { call: c, leg, sdp } if *c == call("cb1") && *leg == wa.leg && sdp == "answer")));
    assert!(!starts_sending(&acts));
    // A repeated answer webhook applies nothing twice.
    let again = w.input(Input::CalleeAnswered {
        call: call("cb1"),
        sdp: "answer".into(),
        received_at: w.now,
    });
    assert!(!again
        .iter()
        .any(|a| matches!(a, Action::ApplyAnswer { .. })));
    let acts = w.input(Input::AnswerApplied {
        call: call("cb1"),
        result: Ok(()),
    });
    assert_eq!(statuses(&acts), vec![CallBackStatus::Connected]);
    assert!(starts_sending(&acts));
    assert!(acts.iter().any(|a| matches!(
        a,
        Action::Notify {
            notice: Notice::Talking { .. },
            ..
        }
    )));
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::Route { stream, source: Some(_) } if *stream == wa.stream)));
    assert_eq!(
        w.c.phase(&call("cb1")),
        Some(&Phase::talking(agent("alice")))
    );
    // ACCEPTED after media: for the record only.
    let acts = w.input(Input::CalleeStatus {
        call: call("cb1"),
        status: CalleeStatus::Accepted,
    });
    assert!(statuses(&acts).is_empty());
    let acts = w.command("alice", Command::HangUp { call: call("cb1") });
    assert_eq!(
        graph_actions(&acts),
        vec![("cb1".into(), GraphAction::Terminate)]
    );
    let rec = w.finished()[0].clone();
    assert_eq!(rec.outcome, Outcome::Answered);
    assert_eq!(
        rec.dialled,
        Some(Dialled {
            by: agent("alice"),
            task: None
        })
    );
    let stages: Vec<Stage> = rec.transitions.iter().map(|t| t.0).collect();
    for s in [
        Stage::Calling,
        Stage::CalleeRinging,
        Stage::MediaConnected,
        Stage::Talking,
        Stage::Accepted,
        Stage::Ended,
    ] {
        assert!(stages.contains(&s), "{s} missing from {stages:?}");
    }
}

#[test]
fn the_answer_before_media_starts_sending_when_the_leg_connects() {
    let mut w = world();
    let (dial, wa) = placed(&mut w, "cb1");
    dialed(&mut w, dial, "cb1", &wa);
    w.input(Input::CalleeAnswered {
        call: call("cb1"),
        sdp: "answer".into(),
        received_at: w.now,
    });
    let acts = w.input(Input::AnswerApplied {
        call: call("cb1"),
        result: Ok(()),
    });
    assert!(!starts_sending(&acts), "not before the leg is connected");
    let acts = w.input(Input::MediaConnected { leg: wa.leg });
    assert!(starts_sending(&acts));
}

#[test]
fn rejected_ends_the_call_back_as_declined_without_a_terminate() {
    let mut w = world();
    let (dial, wa) = placed(&mut w, "cb1");
    dialed(&mut w, dial, "cb1", &wa);
    let acts = w.input(Input::CalleeStatus {
        call: call("cb1"),
        status: CalleeStatus::Rejected,
    });
    assert_eq!(statuses(&acts), vec![CallBackStatus::Declined]);
    assert!(graph_actions(&acts).is_empty());
    assert_eq!(w.finished()[0].outcome, Outcome::Declined);
    assert_eq!(w.presence("alice"), Presence::Available, "no wrap-up");
    // Meta's terminate that follows changes nothing.
    let acts = w.input(Input::Terminated {
        call: call("cb1"),
        status: Some("COMPLETED".into()),
        errors: vec![],
    });
    assert!(acts.is_empty());
}

#[test]
fn a_terminate_while_ringing_is_no_answer() {
    let mut w = world();
    let (dial, wa) = placed(&mut w, "cb1");
    dialed(&mut w, dial, "cb1", &wa);
    w.input(Input::CalleeStatus {
        call: call("cb1"),
        status: CalleeStatus::Ringing,
    });
    let acts = w.input(Input::Terminated {
        call: call("cb1"),
        status: Some("COMPLETED".into()),
        errors: vec![],
    });
    assert_eq!(statuses(&acts), vec![CallBackStatus::NoAnswer]);
    assert!(graph_actions(&acts).is_empty());
    assert_eq!(w.finished()[0].ended_by, EndedBy::Caller);
}

#[test]
fn an_unanswered_call_back_is_terminated_at_the_timeout() {
    let mut w = world();
    let (dial, wa) = placed(&mut w, "cb1");
    dialed(&mut w, dial, "cb1", &wa);
    let acts = w.advance(DEFAULT_CALLBACK_NO_ANSWER - Duration::from_millis(1));
    assert!(acts.is_empty());
    let acts = w.advance(Duration::from_millis(1));
    assert_eq!(
        graph_actions(&acts),
        vec![("cb1".into(), GraphAction::Terminate)]
    );
    assert_eq!(statuses(&acts), vec![CallBackStatus::NoAnswer]);
    assert_eq!(w.finished()[0].outcome, Outcome::TimedOut);
    assert_eq!(w.presence("alice"), Presence::Available);
}

/// Meta's word can overtake Graph's answer to `connect`: kept, and applied once the id is known.
#[test]
fn statuses_and_the_answer_before_connect_returns_are_kept() {
    let mut w = world();
    let (dial, wa) = placed(&mut w, "cb1");
    w.input(Input::CalleeStatus {
        call: call("cb1"),
        status: CalleeStatus::Ringing,
    });
    w.input(Input::CalleeAnswered {
        call: call("cb1"),
        sdp: "answer".into(),
        received_at: w.now,
    });
    let acts = dialed(&mut w, dial, "cb1", &wa);
    assert_eq!(
        statuses(&acts),
        vec![CallBackStatus::Calling, CallBackStatus::Ringing]
    );
    assert!(acts.iter().any(|a| matches!(a, Action::ApplyAnswer { .. })));
}

#[test]
fn statuses_for_unknown_calls_change_nothing() {
    let mut w = world();
    let acts = w.input(Input::CalleeStatus {
        call: call("nobody"),
        status: CalleeStatus::Rejected,
    });
    assert!(
        matches!(
            &acts[..],
            [Action::Metric(Metric::CallBack {
                outcome: "unknown_status",
                ..
            })]
        ),
        "counted, nothing else: {acts:?}"
    );
    let acts = w.input(Input::CalleeAnswered {
        call: call("nobody"),
        sdp: "x".into(),
        received_at: w.now,
    });
    assert!(acts.is_empty());
    // A status of a call the customer placed is not a call-back's.
    let _wa = w.talking_call("in1", "alice");
    let acts = w.input(Input::CalleeStatus {
        call: call("in1"),
        status: CalleeStatus::Rejected,
    });
    assert!(acts.is_empty());
    assert!(w.c.phase(&call("in1")).is_some());
}

#[test]
fn cancelling_before_connect_returns_ends_the_call_at_meta_once_known() {
    let mut w = world();
    let (dial, wa) = placed(&mut w, "cb1");
    let acts = w.command("alice", Command::CancelCallBack);
    assert_eq!(statuses(&acts), vec![CallBackStatus::Cancelled]);
    assert_eq!(w.presence("alice"), Presence::Available);
    let acts = dialed(&mut w, dial, "cb1", &wa);
    assert_eq!(
        graph_actions(&acts),
        vec![("cb1".into(), GraphAction::Terminate)]
    );
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::CloseLeg { leg } if *leg == wa.leg)));
    assert!(statuses(&acts).is_empty(), "told once already");
    assert_eq!(w.finished()[0].ended_by, EndedBy::Agent);
    assert!(w.c.phase(&call("cb1")).is_none());
}

#[test]
fn hanging_up_while_it_rings_cancels() {
    let mut w = world();
    let (dial, wa) = placed(&mut w, "cb1");
    dialed(&mut w, dial, "cb1", &wa);
    let acts = w.command("alice", Command::HangUp { call: call("cb1") });
    assert_eq!(
        graph_actions(&acts),
        vec![("cb1".into(), GraphAction::Terminate)]
    );
    assert_eq!(statuses(&acts), vec![CallBackStatus::Cancelled]);
    assert_eq!(w.finished()[0].outcome, Outcome::Abandoned);
}

#[test]
fn a_refused_dial_tells_the_agent_why_and_is_recorded() {
    let mut w = world();
    for (refusal, code, can_ask) in [
        (
            DialRefusal::NoPermission { can_ask: true },
            Some(138006),
            true,
        ),
        (
            DialRefusal::Meta {
                code: Some(138013),
                message: "not available".into(),
            },
            Some(138013),
            false,
        ),
        (DialRefusal::Limit { until: None }, Some(138012), false),
    ] {
        let (dial, _) = placed(&mut w, "x");
        let acts = w.input(Input::Dialed {
            dial,
            result: Err(DialFailure {
                attempt: call(&format!("sb.{dial}")),
                refusal: refusal.clone(),
            }),
        });
        let told = acts.iter().find_map(|a| match a {
            Action::Notify {
                notice:
                    Notice::CallBack {
                        status: CallBackStatus::Failed,
                        code,
                        message,
                        can_ask_permission,
                        ..
                    },
                ..
            } => Some((*code, message.clone(), *can_ask_permission)),
            _ => None,
        });
        let (c, message, ask) = told.expect("the agent is told");
        assert_eq!((c, ask), (code, can_ask));
        assert_eq!(message, refusal.sentence());
        assert_eq!(w.presence("alice"), Presence::Available);
        let rec = w.finished().last().cloned().cloned().expect("recorded");
        assert_eq!(rec.outcome, Outcome::Failed);
        assert_eq!(rec.meta_errors, code.into_iter().collect::<Vec<_>>());
        assert_eq!(rec.from.as_deref(), Some(TO));
    }
    assert!(meta_sentence(138009).is_some() && meta_sentence(138017).is_some());
}

#[test]
fn a_busy_agent_or_a_bad_number_is_refused() {
    let mut w = world();
    let acts = w.command(
        "alice",
        Command::CallBack {
            to: "12ab".into(),
            task: None,
        },
    );
    assert!(acts.iter().any(|a| matches!(
        a,
        Action::Notify {
            notice: Notice::Refused {
                code: Refusal::BadNumber,
                ..
            },
            ..
        }
    )));
    w.ringing_call("in1");
    let acts = w.command(
        "alice",
        Command::CallBack {
            to: TO.into(),
            task: None,
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
    assert!(!acts.iter().any(|a| matches!(a, Action::Dial { .. })));
}

#[test]
fn an_agent_leaving_while_it_rings_ends_the_call_back() {
    let mut w = world();
    let (dial, wa) = placed(&mut w, "cb1");
    dialed(&mut w, dial, "cb1", &wa);
    let acts = w.input(Input::AgentLeft {
        agent: agent("alice"),
        signed_out: false,
    });
    assert_eq!(
        graph_actions(&acts),
        vec![("cb1".into(), GraphAction::Terminate)]
    );
    assert!(w.c.phase(&call("cb1")).is_none());
}

fn task_of(acts: &[Action]) -> Option<(AgentId, Task)> {
    acts.iter().find_map(|a| match a {
        Action::Notify {
            agent,
            notice: Notice::Task(t),
        } => Some((agent.clone(), (**t).clone())),
        _ => None,
    })
}

fn callbacks_on(w: &mut World) {
    w.c.handle(
        w.now,
        Input::Reconfigure(Box::new(Reconfigure {
            queues: vec![QueueConfig {
                id: "support".into(),
                policy: NoAgentPolicy::Queue {
                    max_wait: Duration::from_secs(120),
                },
            }],
            default_queue: "support".into(),
            numbers: Default::default(),
            times: Default::default(),
            agent_queues: Default::default(),
            hold_audio: Default::default(),
            callback_queues: ["support".into()].into_iter().collect(),
        })),
    );
    w.drain();
}

/// A caller who hangs up in the queue becomes one task, offered to the next free agent; the
/// call-back placed from it carries the task; calling in again removes a task.
#[test]
fn a_caller_lost_in_the_queue_comes_back_as_a_task() {
    let mut w = world();
    callbacks_on(&mut w);
    w.talking_call("busy", "alice");
    let (_, wa) = w.offer("lost");
    w.graph_ok("lost", GraphAction::PreAccept);
    w.input(Input::MediaConnected {
        leg: wa.expect("leg").leg,
    });
    assert!(matches!(
        w.c.phase(&call("lost")),
        Some(Phase::Queued { .. })
    ));
    w.input(Input::Terminated {
        call: call("lost"),
        status: Some("COMPLETED".into()),
        errors: vec![],
    });
    assert_eq!(w.c.tasks().len(), 1);
    let (task, offered) = w.c.tasks()[0].clone();
    assert_eq!(task.reason, TaskReason::Abandoned);
    assert_eq!(task.to, "15551234567");
    assert!(offered.is_none(), "alice is on a call");
    // Alice's call ends; after her wrap-up the task is offered to her.
    w.command("alice", Command::HangUp { call: call("busy") });
    let acts = w.command("alice", Command::EndWrapUp);
    let (who, offered) = task_of(&acts).expect("offered");
    assert_eq!((who, offered.id.clone()), (agent("alice"), task.id.clone()));
    // The page sends the task's id with some number: the task's customer is the one called.
    let acts = w.command(
        "alice",
        Command::CallBack {
            to: "15550000000".into(),
            task: Some(offered.id.clone()),
        },
    );
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::Dial { to, .. } if *to == offered.to)));
    assert!(w.c.tasks().is_empty());
    let dial = acts
        .iter()
        .find_map(|a| match a {
            Action::Dial { dial, .. } => Some(*dial),
            _ => None,
        })
        .expect("dial");
    w.input(Input::Dialed {
        dial,
        result: Err(DialFailure {
            attempt: call("sb.1"),
            refusal: DialRefusal::NoPermission { can_ask: false },
        }),
    });
    assert_eq!(
        w.finished().last().and_then(|e| e.dialled.clone()),
        Some(Dialled {
            by: agent("alice"),
            task: Some(task.id)
        })
    );
}

/// A task scheduled through the API for customer `to` in `support`, offered from `due`.
fn scheduled(id: &str, to: &str, due: Option<Instant>) -> Input {
    Input::TaskAdded {
        task: Box::new(Task {
            id: id.into(),
            to: to.into(),
            name: None,
            queue: "support".into(),
            reason: TaskReason::Scheduled,
            note: None,
            due_at: None,
            agent: None,
        }),
        due,
    }
}

#[test]
fn the_customer_calling_in_removes_their_task_and_a_ring_withdraws_an_offer() {
    let mut w = world();
    callbacks_on(&mut w);
    w.c.handle(w.now, scheduled("t1", "15551234567", None));
    let acts = w.drain();
    assert_eq!(task_of(&acts).map(|t| t.0), Some(agent("alice")));
    // A duplicate for the same customer is not taken up.
    w.c.handle(w.now, scheduled("t2", "15551234567", None));
    w.drain();
    assert_eq!(w.c.tasks().len(), 1);
    // The customer calls in: the call rings at alice, the task is withdrawn and dropped.
    let (acts, _) = w.offer("again");
    let stops: Vec<TaskStop> = acts
        .iter()
        .filter_map(|a| match a {
            Action::Notify {
                notice: Notice::TaskStopped { reason, .. },
                ..
            } => Some(*reason),
            _ => None,
        })
        .collect();
    assert_eq!(stops, vec![TaskStop::CalledIn]);
    assert!(w.c.tasks().is_empty());
}

/// What the machine asks to keep of its tasks, in order: `+id` kept, `-id` forgotten.
fn kept_tasks(acts: &[Action]) -> Vec<String> {
    acts.iter()
        .filter_map(|a| match a {
            Action::KeepTask(t) => Some(format!("+{}", t.id)),
            Action::ForgetTask { task } => Some(format!("-{task}")),
            _ => None,
        })
        .collect()
}

/// Every task taken up is kept (it survives a restart) and forgotten once done with: taken by
/// an agent, or withdrawn through the API, which tells the agent it was offered to.
#[test]
fn tasks_are_kept_until_taken_or_withdrawn() {
    let mut w = world();
    w.agent_online("bob", &["support"]);
    let task = |id: &str, to: &str| scheduled(id, to, None);
    w.c.handle(w.now, task("t1", TO));
    let acts = w.drain();
    assert_eq!(kept_tasks(&acts), ["+t1"]);
    let (first, _) = task_of(&acts).expect("offered");
    // A duplicate is neither taken up nor kept.
    w.c.handle(w.now, task("t9", TO));
    assert!(kept_tasks(&w.drain()).is_empty());
    w.c.handle(w.now, task("t2", "15559876543"));
    let acts = w.drain();
    assert_eq!(kept_tasks(&acts), ["+t2"]);
    let (second, _) = task_of(&acts).expect("offered to the other agent");
    assert_ne!(first, second);

    // Withdrawn: the agent it was offered to hears it, and it is forgotten; a second
    // withdrawal changes nothing.
    w.c.handle(w.now, Input::TaskCancelled { task: "t2".into() });
    let acts = w.drain();
    assert_eq!(kept_tasks(&acts), ["-t2"]);
    assert!(acts.iter().any(|a| matches!(
        a,
        Action::Notify {
            agent: who,
            notice: Notice::TaskStopped {
                reason: TaskStop::Cancelled,
                ..
            },
        } if *who == second
    )));
    w.c.handle(w.now, Input::TaskCancelled { task: "t2".into() });
    assert!(kept_tasks(&w.drain()).is_empty());

    // Taken: the agent calls the customer back; the task is forgotten as the dial starts.
    let acts = w.command(
        &first.0,
        Command::CallBack {
            to: TO.into(),
            task: Some("t1".into()),
        },
    );
    assert_eq!(kept_tasks(&acts), ["-t1"]);
    assert!(w.c.tasks().is_empty());
}

#[test]
fn a_skipped_task_goes_to_the_next_agent_and_a_due_one_waits() {
    let mut w = world();
    w.agent_online("bob", &["support"]);
    let due = w.now + Duration::from_secs(60);
    w.c.handle(w.now, scheduled("t1", TO, Some(due)));
    assert!(task_of(&w.drain()).is_none(), "not before it is due");
    let acts = w.advance(Duration::from_secs(60));
    let (first, _) = task_of(&acts).expect("offered when due");
    let other = if first == agent("alice") {
        "bob"
    } else {
        "alice"
    };
    let acts = w.command(&first.0, Command::SkipTask { task: "t1".into() });
    let (second, _) = task_of(&acts).expect("offered on");
    assert_eq!(second, agent(other));
    // Skipping a task not offered to you is refused.
    let acts = w.command(&first.0, Command::SkipTask { task: "t1".into() });
    assert!(acts.iter().any(|a| matches!(
        a,
        Action::Notify {
            notice: Notice::Refused {
                code: Refusal::NoSuchTask,
                ..
            },
            ..
        }
    )));
}

fn permission_notices(acts: &[Action]) -> Vec<(PermissionStep, String, bool)> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Notify {
                notice:
                    Notice::Permission {
                        step,
                        message,
                        permanent,
                        ..
                    },
                ..
            } => Some((*step, message.clone(), *permanent)),
            _ => None,
        })
        .collect()
}

fn kept(acts: &[Action]) -> Vec<PermissionState> {
    acts.iter()
        .filter_map(|a| match a {
            Action::KeepPermission { state, .. } => Some(*state),
            _ => None,
        })
        .collect()
}

fn asked(w: &mut World, result: Result<(), GraphFailure>) -> Vec<Action> {
    let acts = w.command("alice", Command::AskPermission { to: TO.into() });
    assert!(acts.iter().any(|a| matches!(a,
        Action::AskPermission { to, .. } if to == TO)));
    w.input(Input::PermissionAsked {
        agent: agent("alice"),
        to: TO.into(),
        result,
    })
}

/// A request sent, then the customer's reply; Meta's 138017 (permanent already) reads as
/// granted; 138009 (asked too often) in words; a reply that overtakes Graph's answer is told
/// once; a reply nobody here asked for is only counted.
#[test]
fn permission_requests_and_replies_reach_the_agent_who_asked() {
    let mut w = world();
    let acts = asked(&mut w, Ok(()));
    assert_eq!(permission_notices(&acts)[0].0, PermissionStep::Requested);
    assert_eq!(kept(&acts), vec![PermissionState::Requested]);
    let reply = |granted| Input::PermissionReply {
        business_number: None,
        user: TO.into(),
        granted,
        permanent: false,
        expires_at: Some(1_000),
        source: Some("user_action".into()),
    };
    let acts = w.input(reply(true));
    assert_eq!(
        permission_notices(&acts),
        vec![(
            PermissionStep::Granted,
            "The customer allowed calls. You can call now.".into(),
            false
        )]
    );
    let fail = |code| {
        Err(GraphFailure {
            code: Some(code),
            message: "refused".into(),
        })
    };
    let acts = asked(&mut w, fail(138017));
    assert_eq!(permission_notices(&acts)[0].0, PermissionStep::Granted);
    assert!(permission_notices(&acts)[0].2, "permanent");
    let acts = asked(&mut w, fail(138009));
    assert_eq!(
        permission_notices(&acts),
        vec![(
            PermissionStep::Failed,
            meta_sentence(138009).unwrap().into(),
            false
        )]
    );
    // The reply overtakes Graph's answer: the agent hears of the reply only.
    w.command("alice", Command::AskPermission { to: TO.into() });
    let acts = w.input(reply(false));
    assert_eq!(permission_notices(&acts)[0].0, PermissionStep::Rejected);
    assert_eq!(kept(&acts), vec![PermissionState::Rejected]);
    let acts = w.input(Input::PermissionAsked {
        agent: agent("alice"),
        to: TO.into(),
        result: Ok(()),
    });
    assert!(permission_notices(&acts).is_empty());
    assert!(
        kept(&acts).is_empty(),
        "the reply is not written over by \"requested\""
    );
    let acts = w.input(reply(true));
    assert!(permission_notices(&acts).is_empty(), "nobody asked");
    assert!(acts.iter().any(|a| matches!(
        a,
        Action::Metric(Metric::Permission {
            outcome: "accepted"
        })
    )));
}
