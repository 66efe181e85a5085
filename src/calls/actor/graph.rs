//! Each call's line of Graph actions: one at a time, in the order the machine decided them,
//! nothing after the call's final action.

use super::*;

/// One Graph action of a call, with the port it goes through.
pub(crate) struct GraphJob {
    /// The call.
    pub(crate) call: WaCallId,
    /// What to do.
    pub(crate) action: GraphAction,
    /// The answer SDP (pre_accept, accept).
    pub(crate) sdp: Option<String>,
    /// The call's business number, when not the main one.
    pub(crate) number: Option<String>,
    /// Meta's Graph API.
    pub(crate) graph: Arc<dyn GraphPort>,
}

/// A Graph action about to be sent: run it, and hand its result to [`GraphLines::finished`].
pub(crate) struct GraphRequest {
    job: GraphJob,
    stop: watch::Receiver<bool>,
}

impl GraphRequest {
    /// Sends the action (retrying while its line allows) and reports how it went.
    pub(super) async fn run(self) -> Done {
        let GraphJob {
            call,
            action,
            sdp,
            number,
            graph,
        } = self.job;
        let result = graph
            .act(number.as_deref(), call.clone(), action, sdp, self.stop)
            .await;
        let input = Input::GraphDone {
            call: call.clone(),
            action,
            result,
        };
        Done::Graph { call, input }
    }
}

/// One call's line: the action in flight, those waiting, and whether its final action (reject,
/// terminate) has been queued.
struct GraphLine {
    busy: bool,
    waiting: VecDeque<GraphJob>,
    closing: bool,
    /// Tells the request in flight to retry no more once the final action is queued.
    stop: watch::Sender<bool>,
}

/// Calls whose final action was sent, remembered so that nothing of theirs follows it.
const CLOSED_LINES: usize = 10_000;

/// Every call's Graph actions, each call's in order and one at a time, so Meta sees them in the
/// order the call machine decided them: a slow `pre_accept` (retrying, say) is never overtaken
/// by the call's `reject`. Once a final action is queued, the call's waiting actions are
/// dropped, the one in flight makes no more retries, and anything asked later is dropped:
/// nothing reaches Meta after a call's reject or terminate. Calls are independent: one call's
/// slow action holds up no other call.
#[derive(Default)]
pub(crate) struct GraphLines {
    lines: HashMap<WaCallId, GraphLine>,
    closed: HashSet<WaCallId>,
    closed_order: VecDeque<WaCallId>,
}

impl GraphLines {
    /// Queues `job` behind its call's earlier actions; returns the request to start now when
    /// the call has none in flight.
    pub(crate) fn submit(&mut self, job: GraphJob) -> Option<GraphRequest> {
        if self.closed.contains(&job.call) {
            debug!(call_id = %job.call, action = job.action.name(), "graph action after the call's final one; dropped");
            return None;
        }
        let line = self
            .lines
            .entry(job.call.clone())
            .or_insert_with(|| GraphLine {
                busy: false,
                waiting: VecDeque::new(),
                closing: false,
                stop: watch::Sender::new(false),
            });
        if line.closing {
            debug!(call_id = %job.call, action = job.action.name(), "graph action after the call's final one; dropped");
            return None;
        }
        if is_final(job.action) {
            line.closing = true;
            line.stop.send_replace(true);
            for dropped in line.waiting.drain(..) {
                debug!(call_id = %dropped.call, action = dropped.action.name(), "graph action overtaken by the call's final one; dropped");
            }
        }
        line.waiting.push_back(job);
        Self::next(line)
    }

    /// The request in flight for `call` is done; returns its next one, if any.
    pub(crate) fn finished(&mut self, call: &WaCallId) -> Option<GraphRequest> {
        let line = self.lines.get_mut(call)?;
        line.busy = false;
        if let Some(next) = Self::next(line) {
            return Some(next);
        }
        let closing = line.closing;
        self.lines.remove(call);
        if closing {
            self.closed.insert(call.clone());
            self.closed_order.push_back(call.clone());
            while self.closed_order.len() > CLOSED_LINES {
                if let Some(old) = self.closed_order.pop_front() {
                    self.closed.remove(&old);
                }
            }
        }
        None
    }

    fn next(line: &mut GraphLine) -> Option<GraphRequest> {
        if line.busy {
            return None;
        }
        let job = line.waiting.pop_front()?;
        line.busy = true;
        // The final action itself keeps its retries (Meta must hear that the call ended): its
        // receiver's sender is gone, so it never says stop.
        let stop = if is_final(job.action) {
            watch::channel(false).1
        } else {
            line.stop.subscribe()
        };
        Some(GraphRequest { job, stop })
    }

    /// Calls with an action in flight or waiting.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lines.len()
    }
}

/// After a reject or a terminate, Meta takes nothing more about the call.
fn is_final(action: GraphAction) -> bool {
    matches!(action, GraphAction::Reject | GraphAction::Terminate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::GraphClients;
    use crate::config::Secret;
    use crate::whatsapp::graph::{GraphOptions, RetryPolicy};
    use crate::whatsapp::model::CallAction;
    use crate::whatsapp::sdp::{SAMPLE_ANSWER, SAMPLE_META_OFFER};
    use crate::whatsapp::simulator::FakeGraph;

    fn actions_of(fake: &FakeGraph, call: &WaCallId) -> Vec<CallAction> {
        fake.requests()
            .into_iter()
            .filter(|r| r.call_id.as_ref() == Some(call))
            .filter_map(|r| r.action)
            .collect()
    }

    #[tokio::test]
    async fn a_slow_pre_accept_is_not_overtaken_by_its_reject_nor_retried_after_it() {
        let fake = FakeGraph::new("token", "123");
        let (call, other) = (WaCallId::from("wacid.SLOW"), WaCallId::from("wacid.OTHER"));
        fake.register_call(call.clone(), SAMPLE_META_OFFER);
        fake.register_call(other.clone(), SAMPLE_META_OFFER);
        // Slower than the client waits: every attempt times out and would be retried.
        fake.set_delay(Duration::from_secs(5));
        let (addr, _server) = fake
            .clone()
            .serve("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let options = GraphOptions {
            request_timeout: Duration::from_millis(200),
            retry: RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(5),
            },
            ..GraphOptions::default()
        };
        let graph = GraphClient::with_options(
            &format!("http://{addr}"),
            "v23.0",
            "123",
            Secret::new("token"),
            options,
        )
        .unwrap();
        let graph: Arc<dyn GraphPort> =
            Arc::new(GraphClients::new("123".into(), graph, HashMap::new()));
        let job = |call: &WaCallId, action, sdp: Option<&str>| GraphJob {
            call: call.clone(),
            action,
            sdp: sdp.map(str::to_owned),
            number: None,
            graph: graph.clone(),
        };
        let mut lines = GraphLines::default();

        let pre_accept = lines
            .submit(job(&call, GraphAction::PreAccept, Some(SAMPLE_ANSWER)))
            .expect("an idle line sends at once");
        let in_flight = tokio::spawn(pre_accept.run());
        // Another call's line is independent, and keeps its retries.
        let others = lines
            .submit(job(&other, GraphAction::PreAccept, Some(SAMPLE_ANSWER)))
            .expect("another call's line is idle");
        let others = tokio::spawn(others.run());
        fake.wait_for_requests(2).await;

        // The call is declined while its pre_accept is in flight: the reject waits, and an
        // action asked after it is dropped.
        assert!(lines
            .submit(job(&call, GraphAction::Reject, None))
            .is_none());
        assert!(lines
            .submit(job(&call, GraphAction::Accept, Some(SAMPLE_ANSWER)))
            .is_none());
        let Done::Graph { call: done, .. } = in_flight.await.unwrap() else {
            panic!("a graph action reports as one");
        };
        assert_eq!(done, call);
        let reject = lines.finished(&call).expect("the reject goes next");
        let Done::Graph { .. } = reject.run().await else {
            panic!("a graph action reports as one");
        };
        assert!(lines.finished(&call).is_none());
        assert!(
            lines
                .submit(job(&call, GraphAction::Terminate, None))
                .is_none(),
            "nothing after the call's final action"
        );
        let _ = others.await.unwrap();
        assert!(lines.finished(&other).is_none());
        assert_eq!(lines.len(), 0, "idle lines are forgotten");

        // What Graph saw of the call: one pre_accept (its retries cancelled), then the reject
        // (which keeps its own retries), and nothing after.
        let seen = actions_of(&fake, &call);
        assert_eq!(seen[0], CallAction::PreAccept, "{seen:?}");
        assert!(
            seen.len() >= 2 && seen[1..].iter().all(|a| *a == CallAction::Reject),
            "{seen:?}"
        );
        // The other call's pre_accept, with no final action queued, was retried as usual.
        assert_eq!(actions_of(&fake, &other), vec![CallAction::PreAccept; 3]);
    }
}
