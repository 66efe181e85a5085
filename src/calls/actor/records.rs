//! The call records' line (live marks and records, written in order off the actor's loop) and
//! the calls a dead process left live at Meta.

use super::*;
use crate::events::Emitter;

/// Ends the calls a process that died left live at Meta (recorded by `MarkLive`, never
/// finished): `terminate` each, and record it.
pub async fn end_leftovers(
    store: &StoreHandle,
    graph: &GraphClient,
    node: &str,
    events: Option<&Emitter>,
) {
    let live = match store.live_calls().await {
        Ok(l) => l,
        Err(e) => {
            warn!(error = %e, "cannot read the calls left live by the last run");
            return;
        }
    };
    end_live(
        store,
        graph,
        live,
        node,
        "ended at start-up: the process that handled it stopped",
        events,
    )
    .await;
}

/// Ends at Meta, and records, the calls another node left live: it stopped renewing its lease
/// (it died), and this node took the job over (see `crate::cluster`). Returns how many, or
/// `None` when they could not be read (the job is then left for a later round).
pub async fn take_over(
    store: &StoreHandle,
    graph: &GraphClient,
    node: &str,
    events: Option<&Emitter>,
) -> Option<usize> {
    let live = match store.live_calls_of(node).await {
        Ok(l) => l,
        Err(e) => {
            warn!(node, error = %e, "cannot read the calls a lost node left live");
            return None;
        }
    };
    let n = live.len();
    let reason = format!("ended by another node: {node}, which handled it, stopped");
    end_live(store, graph, live, node, &reason, events).await;
    Some(n)
}

/// `node` handled the calls; each is recorded with what its live mark knew of it, ended now.
async fn end_live(
    store: &StoreHandle,
    graph: &GraphClient,
    live: Vec<LiveCall>,
    node: &str,
    reason: &str,
    events: Option<&Emitter>,
) {
    for call in live {
        info!(call_id = %call.call_id, reason, "ending a call left live");
        let result = graph.terminate(&call.call_id).await;
        let now = store::unix_ms(SystemTime::now());
        let mut codes = vec![];
        if let Err(GraphError::Api { code, .. }) = &result {
            codes.push(*code);
        }
        let ended_at = now.max(call.started_at);
        let mut record = match call.known {
            Some(known) => *known,
            // Marked by a version that kept nothing else.
            None => CallRecord {
                call_id: call.call_id.clone(),
                caller_number: String::new(),
                caller_name: None,
                business_number: call.business_number.clone(),
                queue: None,
                agents: vec![],
                started_at: call.started_at,
                answered_at: None,
                ended_at,
                transitions: vec![],
                outcome: store::Outcome::Failed,
                end_reason: String::new(),
                ended_by: store::EndedBy::System,
                meta_error_codes: vec![],
                legs: vec![],
                node: None,
                direction: store::Direction::Inbound,
                dialled_by: None,
                task_id: None,
            },
        };
        // The mark's own "ended" stood for a loss then; the call ends now.
        record.transitions.retain(|t| t.state != "ended");
        record.transitions.push(Transition {
            state: "ended".into(),
            at: ended_at,
            agent: None,
        });
        record.ended_at = ended_at;
        record.outcome = store::Outcome::Failed;
        record.end_reason = reason.into();
        record.ended_by = store::EndedBy::System;
        record.meta_error_codes.extend(codes);
        record.node = Some(node.to_owned());
        // Its account's backend heard it offered (and maybe answered): it hears it end too.
        let rows = events.map_or_else(Vec::new, |em| ended_rows(em, &record));
        let n = rows.len();
        match store.finish_with(record, rows).await {
            Ok(_) if n > 0 => {
                crate::ops::record_events_written(n, true);
                events.inspect(|e| e.written());
            }
            Ok(_) => {}
            Err(e) => {
                warn!(call_id = %call.call_id, error = %e, "recording a left-over call failed")
            }
        }
    }
}

/// `call.ended`, with the call's record as `GET /api/calls` answers it: for a call that ended
/// here, and for a left-over one ended from its record alone.
pub(super) fn ended_rows(events: &Emitter, record: &CallRecord) -> Vec<crate::events::OutboxRow> {
    let queue = record.queue.clone().unwrap_or_default();
    let account = crate::accounts::account_of(&queue);
    events.rows(
        crate::events::EventType::CallEnded,
        account,
        &record.call_id.0,
        record.ended_at,
        || {
            serde_json::json!({
                "call_id": record.call_id.0,
                "account": account,
                "queue": record.queue,
                "from": Some(&record.caller_number).filter(|n| !n.is_empty()),
                "name": record.caller_name,
                "business_number": Some(&record.business_number).filter(|n| !n.is_empty()),
                "agent": record.agents.last(),
                "outcome": record.outcome,
                "record": record,
            })
        },
    )
}

/// A record write, carried out in order by the records line, with the call events that go
/// with it (same transaction).
pub(super) enum Write {
    MarkLive(LiveCall, Vec<OutboxRow>),
    Finish(Box<CallRecord>, Vec<OutboxRow>),
    /// Call events of a step that wrote nothing else.
    Events(Vec<OutboxRow>),
}

/// The call records' writes, queued in the order the machine made them and carried out by one
/// task off the actor's loop: a call's live mark reaches the store before its record, its
/// events reach the outbox in the order they happened, and no step of a call waits for the
/// database.
pub(super) struct Records {
    tx: Option<mpsc::UnboundedSender<Write>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Records {
    pub(super) fn spawn(store: Arc<dyn RecordsPort>, events: Option<Emitter>) -> Records {
        let (tx, rx) = mpsc::unbounded_channel();
        Records {
            tx: Some(tx),
            task: Some(tokio::spawn(write_records(store, events, rx))),
        }
    }

    pub(super) fn write(&self, w: Write) {
        let sent = self.tx.as_ref().map(|tx| tx.send(w));
        if !matches!(sent, Some(Ok(()))) {
            warn!("the records line is closed; a record write is lost");
        }
    }

    /// Waits until everything queued is written.
    pub(super) async fn close(&mut self) {
        self.tx = None;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

async fn write_records(
    store: Arc<dyn RecordsPort>,
    events: Option<Emitter>,
    mut rx: mpsc::UnboundedReceiver<Write>,
) {
    while let Some(w) = rx.recv().await {
        let n = match &w {
            Write::MarkLive(_, e) | Write::Finish(_, e) | Write::Events(e) => e.len(),
        };
        let ok = match w {
            Write::MarkLive(live, rows) => {
                let call = live.call_id.clone();
                let r = store.mark_live(live, rows).await;
                if let Err(e) = &r {
                    warn!(call_id = %call, error = %e, "marking the call live failed");
                }
                r.is_ok()
            }
            Write::Finish(record, rows) => {
                let call = record.call_id.clone();
                let r = store.finish(*record, rows).await;
                if let Err(e) = &r {
                    warn!(call_id = %call, error = %e, "writing the call record failed");
                }
                r.is_ok()
            }
            Write::Events(rows) => {
                let r = store.append_events(rows).await;
                if let Err(e) = &r {
                    warn!(error = %e, events = n, "writing call events to the outbox failed; they are lost");
                }
                r.is_ok()
            }
        };
        if n > 0 {
            crate::ops::record_events_written(n, ok);
            if ok {
                if let Some(e) = &events {
                    e.written();
                }
            }
        }
    }
}
