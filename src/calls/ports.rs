//! The calls actor's ports: what it needs of the media engine ([`MediaPort`]), of Meta's Graph
//! API ([`GraphPort`]) and of the call records ([`RecordsPort`]), so that the actor runs on
//! simulated time against fakes in its tests. The program plugs in [`EngineHandle`],
//! [`GraphClients`] and [`StoreHandle`].
//!
//! *Owns*: nothing; each implementation's state is its own.
//!
//! Each method hands back a boxed future that owns what it needs (`'static`): the actor spawns
//! it and never awaits it in its loop. A box per command is not on the per-packet path.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use super::event::{DialRefusal, GraphAction, GraphFailure};
use crate::events::OutboxRow;
use crate::ids::{LegId, StreamId, WaCallId};
use crate::media::{Answer, EngineHandle, LegOp, MediaError};
use crate::store::{CallRecord, LiveCall, Recorded, StoreError, StoreHandle};
use crate::whatsapp::graph::{GraphClient, GraphError, PermissionTemplate};

/// A future a port hands back.
pub type Pending<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What the calls actor asks of the media engine.
pub trait MediaPort: Send + Sync + 'static {
    /// A new WhatsApp leg answering Meta's `offer`.
    fn answer_whatsapp(&self, offer: String) -> Pending<Result<Answer, MediaError>>;
    /// A new browser leg answering an agent's `offer`.
    fn answer_browser(&self, offer: String) -> Pending<Result<Answer, MediaError>>;
    /// A new internal leg toward another node; its offer.
    fn offer_trunk(&self) -> Pending<Result<Answer, MediaError>>;
    /// The other node's answer for an internal leg.
    fn trunk_answered(&self, leg: LegId, answer: String) -> Pending<Result<(), MediaError>>;
    /// What `stream` carries: `source`'s audio, or silence.
    fn route(&self, stream: StreamId, source: Option<LegId>) -> Pending<Result<(), MediaError>>;
    /// Hold audio on `stream`, or not.
    fn hold(&self, stream: StreamId, on: bool) -> Pending<Result<(), MediaError>>;
    /// Closes a leg.
    fn close(&self, leg: LegId) -> Pending<Result<(), MediaError>>;
    /// Queues `op` at once, in order with the ops posted before it; its result, to await later.
    /// Fails at once only when the engine is gone or the leg's shard does not exist.
    fn post(&self, op: LegOp) -> Result<Pending<Result<(), MediaError>>, MediaError>;
    /// A new WhatsApp leg offering to Meta (a call-back); its offer.
    fn offer_whatsapp(&self) -> Pending<Result<Answer, MediaError>>;
    /// Meta's answer for a call-back's leg.
    fn whatsapp_answered(&self, leg: LegId, answer: String) -> Pending<Result<(), MediaError>>;
}

impl MediaPort for EngineHandle {
    fn answer_whatsapp(&self, offer: String) -> Pending<Result<Answer, MediaError>> {
        let media = self.clone();
        Box::pin(async move { media.answer_whatsapp(offer).await })
    }

    fn answer_browser(&self, offer: String) -> Pending<Result<Answer, MediaError>> {
        let media = self.clone();
        Box::pin(async move { media.answer_browser(offer).await })
    }

    fn offer_trunk(&self) -> Pending<Result<Answer, MediaError>> {
        let media = self.clone();
        Box::pin(async move { media.offer_trunk().await })
    }

    fn trunk_answered(&self, leg: LegId, answer: String) -> Pending<Result<(), MediaError>> {
        let media = self.clone();
        Box::pin(async move { media.trunk_answered(leg, answer).await })
    }

    fn route(&self, stream: StreamId, source: Option<LegId>) -> Pending<Result<(), MediaError>> {
        let media = self.clone();
        Box::pin(async move { media.route(stream, source).await })
    }

    fn hold(&self, stream: StreamId, on: bool) -> Pending<Result<(), MediaError>> {
        let media = self.clone();
        Box::pin(async move { media.hold(stream, on).await })
    }

    fn close(&self, leg: LegId) -> Pending<Result<(), MediaError>> {
        let media = self.clone();
        Box::pin(async move { media.close(leg).await })
    }

    fn post(&self, op: LegOp) -> Result<Pending<Result<(), MediaError>>, MediaError> {
        let posted = EngineHandle::post(self, op)?;
        Ok(Box::pin(posted.result()))
    }

    fn offer_whatsapp(&self) -> Pending<Result<Answer, MediaError>> {
        let media = self.clone();
        Box::pin(async move { media.offer_whatsapp().await })
    }

    fn whatsapp_answered(&self, leg: LegId, answer: String) -> Pending<Result<(), MediaError>> {
        let media = self.clone();
        Box::pin(async move { media.whatsapp_answered(leg, answer).await })
    }
}

/// What the calls actor asks of Meta's Graph API.
pub trait GraphPort: Send + Sync + 'static {
    /// Whether calls to the business number `number` (a phone number id) are answered here.
    fn serves(&self, number: &str) -> bool;
    /// Carries out `action` on `call` through `number`'s client (`None`: the main number's),
    /// retrying as its policy says while `stop` stays false.
    fn act(
        &self,
        number: Option<&str>,
        call: WaCallId,
        action: GraphAction,
        sdp: Option<String>,
        stop: watch::Receiver<bool>,
    ) -> Pending<Result<(), GraphFailure>>;
    /// Whether `to` may be called now from `number` (`None`: the main number), as Meta's
    /// `call_permissions` says (reference §4.6), or why not.
    fn may_call(&self, number: Option<&str>, to: String) -> Pending<Result<(), DialRefusal>>;
    /// Sends `to` the call-permission request from `number` (reference §4.6).
    fn ask_permission(&self, number: Option<&str>, to: String)
        -> Pending<Result<(), GraphFailure>>;
    /// Graph `connect` with `offer` to `to` from `number`: Meta's call id.
    fn connect(
        &self,
        number: Option<&str>,
        to: String,
        offer: String,
    ) -> Pending<Result<WaCallId, GraphFailure>>;
}

/// A Graph error for a call-back or a permission request: with Meta's details when given
/// (138012 says there when the next call is allowed).
fn failure(e: &GraphError) -> GraphFailure {
    GraphFailure {
        code: e.code(),
        message: e.details().map_or_else(|| e.to_string(), str::to_owned),
    }
}

/// Meta's answer to `call_permissions` read as "may we call now".
pub(crate) fn gate(p: &crate::whatsapp::model::CallPermissions) -> Result<(), DialRefusal> {
    use crate::whatsapp::model::PermissionStatus;
    let can = |name: &str| p.action(name).map(|a| a.can_perform_action);
    let permitted = !matches!(p.permission.status, PermissionStatus::NoPermission);
    match can("start_call") {
        Some(true) => Ok(()),
        None if permitted => Ok(()),
        _ if !permitted => Err(DialRefusal::NoPermission {
            can_ask: can("send_call_permission_request").unwrap_or(true),
        }),
        // Permitted, but Meta's limits on calls are used up: allowed again when the last of
        // the full windows frees up.
        _ => Err(DialRefusal::Limit {
            until: p.action("start_call").and_then(|a| {
                a.limits
                    .iter()
                    .filter_map(crate::whatsapp::model::Lenient::valid)
                    .filter(|l| l.current_usage >= l.max_allowed)
                    .filter_map(|l| l.limit_expiration_time)
                    .map(|t| {
                        i64::try_from(t.0)
                            .unwrap_or(i64::MAX / 1000)
                            .saturating_mul(1000)
                    })
                    .max()
            }),
        }),
    }
}

/// The Graph API clients of the business numbers served: the main number's and the others'
/// (`[[numbers]]` and every account's), each sending a call's actions to its own number's
/// `/calls` with its own account's access token.
#[derive(Debug)]
pub struct GraphClients {
    /// The main business number's phone number id.
    pub main_number: String,
    /// The main business number's client.
    pub main: GraphClient,
    /// The other numbers' clients, by phone number id: replaced whole when accounts change
    /// ([`GraphClients::set_others`]); a call in progress keeps the client it started with.
    others: RwLock<Arc<HashMap<String, GraphClient>>>,
    /// The approved template permission requests are sent as, when set (else the interactive
    /// message, which works only inside the customer-service window).
    pub permission_template: Option<PermissionTemplate>,
}

/// The text of the interactive permission request.
const PERMISSION_REQUEST_TEXT: &str =
    "We would like to call you back on WhatsApp. May we call you?";

impl GraphClients {
    /// The clients of `main_number` and of `others`.
    pub fn new(
        main_number: String,
        main: GraphClient,
        others: HashMap<String, GraphClient>,
    ) -> GraphClients {
        GraphClients {
            main_number,
            main,
            others: RwLock::new(Arc::new(others)),
            permission_template: None,
        }
    }

    /// Serves these numbers from now on (an account's numbers or token changed).
    pub fn set_others(&self, others: HashMap<String, GraphClient>) {
        *self.others.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(others);
    }

    fn others(&self) -> Arc<HashMap<String, GraphClient>> {
        // Held to clone the `Arc` only; nothing panics under it.
        self.others
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl GraphClients {
    fn client(&self, number: Option<&str>) -> GraphClient {
        let others = self.others();
        number
            .and_then(|n| others.get(n))
            .unwrap_or(&self.main)
            .clone()
    }
}

impl GraphPort for GraphClients {
    fn serves(&self, number: &str) -> bool {
        number == self.main_number || self.others().contains_key(number)
    }

    fn may_call(&self, number: Option<&str>, to: String) -> Pending<Result<(), DialRefusal>> {
        let graph = self.client(number);
        Box::pin(async move {
            match graph.call_permissions(&to).await {
                Ok(p) => gate(&p),
                Err(e) => {
                    let f = failure(&e);
                    Err(DialRefusal::Meta {
                        code: f.code,
                        message: f.message,
                    })
                }
            }
        })
    }

    fn ask_permission(
        &self,
        number: Option<&str>,
        to: String,
    ) -> Pending<Result<(), GraphFailure>> {
        let graph = self.client(number);
        let template = self.permission_template.clone();
        Box::pin(async move {
            graph
                .request_call_permission(&to, PERMISSION_REQUEST_TEXT, template.as_ref())
                .await
                .map(|_| ())
                .map_err(|e| failure(&e))
        })
    }

    fn connect(
        &self,
        number: Option<&str>,
        to: String,
        offer: String,
    ) -> Pending<Result<WaCallId, GraphFailure>> {
        let graph = self.client(number);
        Box::pin(async move {
            graph
                .connect(&to, &offer, None)
                .await
                .map_err(|e| failure(&e))
        })
    }

    fn act(
        &self,
        number: Option<&str>,
        call: WaCallId,
        action: GraphAction,
        sdp: Option<String>,
        stop: watch::Receiver<bool>,
    ) -> Pending<Result<(), GraphFailure>> {
        let graph = self.client(number).until(stop);
        Box::pin(async move {
            let sdp = sdp.unwrap_or_default();
            let result = match action {
                GraphAction::PreAccept => graph.pre_accept(&call, &sdp).await,
                GraphAction::Accept => graph.accept(&call, &sdp, None).await,
                GraphAction::Reject => graph.reject(&call).await,
                GraphAction::Terminate => graph.terminate(&call).await,
            };
            result.map_err(|e| GraphFailure {
                code: e.code(),
                message: e.to_string(),
            })
        })
    }
}

/// What the calls actor asks of the call records.
pub trait RecordsPort: Send + Sync + 'static {
    /// See [`crate::store::CallStore::mark_live_with`]: the mark and the call events that go
    /// with it, in one transaction.
    fn mark_live(&self, call: LiveCall, events: Vec<OutboxRow>) -> Pending<Result<(), StoreError>>;
    /// See [`crate::store::CallStore::finish_with`].
    fn finish(
        &self,
        record: CallRecord,
        events: Vec<OutboxRow>,
    ) -> Pending<Result<Recorded, StoreError>>;
    /// See [`crate::store::EventStore::append_events`].
    fn append_events(&self, events: Vec<OutboxRow>) -> Pending<Result<(), StoreError>>;
    /// See [`crate::store::CallStore::clear_live`].
    fn clear_live(&self, call: WaCallId) -> Pending<Result<(), StoreError>>;
    /// Keeps a customer's call permission, without waiting (a refused write is logged).
    fn put_permission(&self, row: crate::store::PermissionRow);
    /// Keeps or forgets an open call-back task, without waiting (a refused write is logged).
    fn change_task(&self, change: crate::store::TaskChange);
    /// The open call-back tasks (every node's).
    fn tasks(&self) -> Pending<Result<Vec<crate::store::TaskRow>, StoreError>>;
}

impl RecordsPort for StoreHandle {
    fn mark_live(&self, call: LiveCall, events: Vec<OutboxRow>) -> Pending<Result<(), StoreError>> {
        let store = self.clone();
        Box::pin(async move { store.mark_live_with(call, events).await })
    }

    fn finish(
        &self,
        record: CallRecord,
        events: Vec<OutboxRow>,
    ) -> Pending<Result<Recorded, StoreError>> {
        let store = self.clone();
        Box::pin(async move { store.finish_with(record, events).await })
    }

    fn append_events(&self, events: Vec<OutboxRow>) -> Pending<Result<(), StoreError>> {
        let store = self.clone();
        Box::pin(async move { store.append_events(events).await })
    }

    fn clear_live(&self, call: WaCallId) -> Pending<Result<(), StoreError>> {
        let store = self.clone();
        Box::pin(async move { store.clear_live(call).await })
    }

    fn put_permission(&self, row: crate::store::PermissionRow) {
        if let Err(e) = self.try_put_permission(row) {
            tracing::warn!(error = %e, "a call permission was not kept: the records line is full");
        }
    }

    fn change_task(&self, change: crate::store::TaskChange) {
        if !self.try_task(change.clone()) {
            tracing::warn!(
                ?change,
                "a call-back task change was not kept: the records line is full"
            );
        }
    }

    fn tasks(&self) -> Pending<Result<Vec<crate::store::TaskRow>, StoreError>> {
        let store = self.clone();
        Box::pin(async move { store.tasks(None).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn permissions(
        status: &str,
        start: Option<bool>,
        ask: Option<bool>,
    ) -> Result<(), DialRefusal> {
        let mut actions = vec![];
        if let Some(can) = start {
            actions.push(
                serde_json::json!({"action_name": "start_call", "can_perform_action": can,
                "limits": [{"time_period": "PT24H", "max_allowed": 100, "current_usage": 100}]}),
            );
        }
        if let Some(can) = ask {
            actions.push(
                serde_json::json!({"action_name": "send_call_permission_request",
                "can_perform_action": can, "limits": []}),
            );
        }
        let p = serde_json::from_value(serde_json::json!({
            "permission": {"status": status}, "actions": actions
        }))
        .unwrap();
        gate(&p)
    }

    /// Meta's `call_permissions` as the dial reads it: its own `start_call` verdict first, the
    /// status when it gives none; an expired permission is `no_permission` at Meta.
    #[test]
    fn the_gate_follows_what_meta_reports() {
        assert_eq!(permissions("temporary", Some(true), None), Ok(()));
        assert_eq!(permissions("permanent", None, None), Ok(()));
        assert_eq!(
            permissions("no_permission", Some(false), Some(true)),
            Err(DialRefusal::NoPermission { can_ask: true })
        );
        assert_eq!(
            permissions("no_permission", None, Some(false)),
            Err(DialRefusal::NoPermission { can_ask: false })
        );
        assert_eq!(
            permissions("no_permission", None, None),
            Err(DialRefusal::NoPermission { can_ask: true }),
            "nothing said of requests: one may be tried"
        );
        assert_eq!(
            permissions("temporary", Some(false), Some(false)),
            Err(DialRefusal::Limit { until: None }),
            "permitted but the calls allowed are used up"
        );
        // Meta says when the full window frees up: the latest of the full ones.
        let p = serde_json::from_value(serde_json::json!({
            "permission": {"status": "temporary"},
            "actions": [{"action_name": "start_call", "can_perform_action": false, "limits": [
                {"time_period": "PT24H", "max_allowed": 5, "current_usage": 5,
                 "limit_expiration_time": 1_796_637_600u64},
                {"time_period": "P7D", "max_allowed": 20, "current_usage": 6,
                 "limit_expiration_time": 1_797_000_000u64}
            ]}]
        }))
        .unwrap();
        let refusal = gate(&p).unwrap_err();
        assert_eq!(
            refusal,
            DialRefusal::Limit {
                until: Some(1_796_637_600_000)
            }
        );
        assert_eq!(refusal.retry_at(), Some(1_796_637_600_000));
        assert!(
            refusal.sentence().contains("allowed again from 10:00 UTC"),
            "{}",
            refusal.sentence()
        );
    }
}
