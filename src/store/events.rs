//! The outbox of call events ([`EventStore`], issue 24) on SQLite and PostgreSQL: one row per
//! event and endpoint, written by the calls' records line (with the call's live mark or record
//! when it goes with one, in the same transaction) and worked through by the delivery task
//! (`crate::events::deliver`).
//!
//! A row is `pending` (to be tried at `next_at`), `paused` (its endpoint is disabled: kept, and
//! tried again when it is enabled), `delivered` or `failed` (retried for the whole window and
//! never taken). Only the oldest pending row of an endpoint and a call (its `order_key`) is ever
//! due: a call's events reach an endpoint in the order they happened. On PostgreSQL each node
//! delivers the rows it wrote (`node`); a node that takes a dead node's calls over takes its rows
//! too ([`EventStore::adopt_events`]).

use rusqlite::params;

use super::{PostgresStore, SqliteStore, StoreError};
use crate::events::OutboxRow;

/// The outbox's table and the accounts' endpoints (SQLite's migration 5).
pub(super) const SQLITE_SCHEMA: &str =
    "ALTER TABLE accounts ADD COLUMN endpoints TEXT NOT NULL DEFAULT '[]';
    CREATE TABLE event_outbox (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        msg_id       TEXT NOT NULL,
        account      TEXT NOT NULL,
        endpoint     TEXT NOT NULL,
        order_key    TEXT NOT NULL,
        kind         TEXT NOT NULL,
        payload      TEXT NOT NULL,
        created_at   INTEGER NOT NULL,
        node         TEXT NOT NULL,
        status       TEXT NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        next_at      INTEGER NOT NULL,
        retry_from   INTEGER NOT NULL,
        last_at      INTEGER,
        last_status  INTEGER,
        last_error   TEXT,
        delivered_at INTEGER
    );
    CREATE UNIQUE INDEX event_outbox_msg ON event_outbox (endpoint, msg_id);
    CREATE INDEX event_outbox_order ON event_outbox (endpoint, order_key, status, seq);
    CREATE INDEX event_outbox_due ON event_outbox (status, next_at);
    CREATE INDEX event_outbox_age ON event_outbox (created_at);";

/// PostgreSQL's migration 5: the same.
pub(super) const POSTGRES_SCHEMA: &str =
    "ALTER TABLE accounts ADD COLUMN endpoints TEXT NOT NULL DEFAULT '[]';
    CREATE TABLE event_outbox (
        seq          BIGSERIAL PRIMARY KEY,
        msg_id       TEXT NOT NULL,
        account      TEXT NOT NULL,
        endpoint     TEXT NOT NULL,
        order_key    TEXT NOT NULL,
        kind         TEXT NOT NULL,
        payload      TEXT NOT NULL,
        created_at   BIGINT NOT NULL,
        node         TEXT NOT NULL,
        status       TEXT NOT NULL,
        attempts     BIGINT NOT NULL DEFAULT 0,
        next_at      BIGINT NOT NULL,
        retry_from   BIGINT NOT NULL,
        last_at      BIGINT,
        last_status  BIGINT,
        last_error   TEXT,
        delivered_at BIGINT
    );
    CREATE UNIQUE INDEX event_outbox_msg ON event_outbox (endpoint, msg_id);
    CREATE INDEX event_outbox_order ON event_outbox (endpoint, order_key, status, seq);
    CREATE INDEX event_outbox_due ON event_outbox (status, next_at);
    CREATE INDEX event_outbox_age ON event_outbox (created_at);";

/// A row the delivery task is to try now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// Its place in the outbox.
    pub seq: i64,
    /// The event as written.
    pub row: OutboxRow,
    /// Attempts so far.
    pub attempts: u32,
    /// Retried since (unix ms): when it happened, or when it was redelivered by hand.
    pub retry_from: i64,
}

/// Where a row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// To be tried (again) at `next_at`.
    Pending,
    /// Its endpoint is disabled: tried again once it is enabled.
    Paused,
    /// The endpoint took it (a 2xx answer).
    Delivered,
    /// Retried for the whole window and never taken.
    Failed,
}

impl DeliveryStatus {
    /// Its name in the database and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Paused => "paused",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    /// The status named `s`.
    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Paused,
            DeliveryStatus::Delivered,
            DeliveryStatus::Failed,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
    }
}

/// How an attempt went, as the row keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempted {
    /// The row.
    pub seq: i64,
    /// Attempts so far, this one included.
    pub attempts: u32,
    /// When it was made (unix ms).
    pub at: i64,
    /// The endpoint's HTTP status, when it answered.
    pub status: Option<u16>,
    /// What went wrong, when something did.
    pub error: Option<String>,
    /// What the row is now: delivered, failed, or pending again at `next_at`.
    pub outcome: DeliveryStatus,
    /// When to try again (pending).
    pub next_at: Option<i64>,
}

/// One row of an endpoint's delivery log.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Delivery {
    /// Its place in the log (page with `before`).
    pub seq: i64,
    /// The `webhook-id`.
    pub msg_id: String,
    /// The event's type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The call's id (or the agent's, for `agent.state`).
    pub order_key: String,
    /// When it happened, unix ms.
    pub created_at: i64,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts so far.
    pub attempts: u32,
    /// The next attempt (pending), unix ms.
    pub next_at: Option<i64>,
    /// The last attempt, unix ms.
    pub last_at: Option<i64>,
    /// The endpoint's status at the last attempt.
    pub last_status: Option<u16>,
    /// What went wrong at the last attempt.
    pub last_error: Option<String>,
    /// When the endpoint took it, unix ms.
    pub delivered_at: Option<i64>,
    /// The body as sent.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

/// What the outbox answers for a page of an endpoint's log.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryQuery {
    /// The account.
    pub account: String,
    /// The endpoint.
    pub endpoint: String,
    /// Only rows with this status.
    pub status: Option<DeliveryStatus>,
    /// Only rows older than this `seq`.
    pub before: Option<i64>,
    /// At most this many (newest first).
    pub limit: u32,
}

/// The outbox.
pub trait EventStore {
    /// Writes `rows`, pending from when each happened.
    fn append_events(&mut self, rows: &[OutboxRow]) -> Result<(), StoreError>;

    /// Up to `limit` rows due at `now`, each the oldest pending one of its endpoint and call,
    /// oldest first; each is not due again before `lease_until` (the attempt's time to answer),
    /// so that it is never tried twice at once. `node`: whose rows (PostgreSQL).
    fn claim_due(
        &mut self,
        node: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<Due>, StoreError>;

    /// How many rows are pending, and when the earliest one that could be tried is due.
    fn outbox_state(&mut self, node: &str) -> Result<(u64, Option<i64>), StoreError>;

    /// Keeps how attempts went, in one transaction (a burst of answers is one write).
    fn attempted(&mut self, done: &[Attempted]) -> Result<(), StoreError>;

    /// Holds the pending rows of `endpoint` (disabled); returns how many.
    fn pause_endpoint(&mut self, endpoint: &str) -> Result<u64, StoreError>;

    /// Makes the held rows of `endpoint` pending again, due at `now`; returns how many.
    fn resume_endpoint(&mut self, endpoint: &str, now: i64) -> Result<u64, StoreError>;

    /// Deletes every row of `endpoint` (it was removed).
    fn forget_endpoint(&mut self, endpoint: &str) -> Result<u64, StoreError>;

    /// Makes message `msg_id` to `endpoint` pending again at `now`, retried for a new window;
    /// false when the endpoint has no such message.
    fn redeliver(&mut self, endpoint: &str, msg_id: &str, now: i64) -> Result<bool, StoreError>;

    /// A page of an endpoint's log, newest first.
    fn deliveries(&mut self, q: &DeliveryQuery) -> Result<Vec<Delivery>, StoreError>;

    /// The undelivered rows `from` wrote become `to`'s (it took `from`'s calls over).
    fn adopt_events(&mut self, from: &str, to: &str) -> Result<u64, StoreError>;

    /// Deletes the delivered and failed rows that happened before `before`.
    fn purge_events(&mut self, before: i64) -> Result<u64, StoreError>;
}

const DUE_COLUMNS: &str = "o.seq, o.msg_id, o.account, o.endpoint, o.order_key, o.kind, \
    o.payload, o.created_at, o.attempts, o.retry_from";

/// The oldest pending row of its endpoint and call.
const HEAD: &str = "NOT EXISTS (SELECT 1 FROM event_outbox p WHERE p.endpoint = o.endpoint \
    AND p.order_key = o.order_key AND p.status = 'pending' AND p.seq < o.seq)";

const LOG_COLUMNS: &str = "seq, msg_id, kind, order_key, created_at, status, attempts, next_at, \
    last_at, last_status, last_error, delivered_at, payload";

fn due_sql(by_node: bool) -> String {
    let node = if by_node { " AND o.node = ?" } else { "" };
    format!(
        "SELECT {DUE_COLUMNS} FROM event_outbox o WHERE o.status = 'pending' AND o.next_at <= ?{node} \
         AND {HEAD} ORDER BY o.next_at, o.seq LIMIT ?"
    )
}

fn log_sql(q: &DeliveryQuery) -> String {
    let mut sql =
        format!("SELECT {LOG_COLUMNS} FROM event_outbox WHERE account = ? AND endpoint = ?");
    if q.status.is_some() {
        sql.push_str(" AND status = ?");
    }
    if q.before.is_some() {
        sql.push_str(" AND seq < ?");
    }
    sql.push_str(" ORDER BY seq DESC LIMIT ?");
    sql
}

fn text_error(e: &Option<String>) -> Option<String> {
    // What an endpoint answered is not ours to keep whole.
    e.as_ref().map(|s| s.chars().take(300).collect())
}

#[allow(clippy::too_many_arguments)]
fn delivery(
    seq: i64,
    msg_id: String,
    kind: String,
    order_key: String,
    created_at: i64,
    status: String,
    attempts: i64,
    next_at: i64,
    last_at: Option<i64>,
    last_status: Option<i64>,
    last_error: Option<String>,
    delivered_at: Option<i64>,
    payload: String,
) -> Result<Delivery, StoreError> {
    let status = DeliveryStatus::parse(&status).ok_or_else(|| StoreError::Corrupt {
        call_id: msg_id.clone(),
        column: "status",
        reason: format!("unknown delivery status {status:?}"),
    })?;
    Ok(Delivery {
        seq,
        msg_id,
        kind,
        order_key,
        created_at,
        status,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        next_at: (status == DeliveryStatus::Pending).then_some(next_at),
        last_at,
        last_status: last_status.and_then(|s| u16::try_from(s).ok()),
        last_error,
        delivered_at,
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::String(payload)),
    })
}

/// Inserts `rows` within the SQLite transaction (or connection) `conn`.
pub(super) fn insert_sqlite(
    conn: &rusqlite::Connection,
    rows: &[OutboxRow],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut add = conn.prepare_cached(
        "INSERT INTO event_outbox (msg_id, account, endpoint, order_key, kind, payload,
             created_at, node, status, next_at, retry_from)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, '', 'pending', ?7, ?7)
         ON CONFLICT (endpoint, msg_id) DO NOTHING",
    )?;
    for r in rows {
        add.execute(params![
            r.msg_id,
            r.account,
            r.endpoint,
            r.order_key,
            r.kind,
            r.payload,
            r.created_at
        ])?;
    }
    Ok(())
}

/// Inserts `rows` within the PostgreSQL transaction `tx`, as `node`'s.
pub(super) fn insert_postgres(
    tx: &mut postgres::Transaction<'_>,
    node: &str,
    rows: &[OutboxRow],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let add = tx.prepare(
        "INSERT INTO event_outbox (msg_id, account, endpoint, order_key, kind, payload,
             created_at, node, status, next_at, retry_from)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $7, $7)
         ON CONFLICT (endpoint, msg_id) DO NOTHING",
    )?;
    for r in rows {
        tx.execute(
            &add,
            &[
                &r.msg_id,
                &r.account,
                &r.endpoint,
                &r.order_key,
                &r.kind,
                &r.payload,
                &r.created_at,
                &node,
            ],
        )?;
    }
    Ok(())
}

fn due_of(seq: i64, row: OutboxRow, attempts: i64, retry_from: i64) -> Due {
    Due {
        seq,
        row,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        retry_from,
    }
}

impl EventStore for SqliteStore {
    fn append_events(&mut self, rows: &[OutboxRow]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        insert_sqlite(&tx, rows)?;
        tx.commit()?;
        Ok(())
    }

    fn claim_due(
        &mut self,
        _node: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<Due>, StoreError> {
        let tx = self.conn.transaction()?;
        let due = {
            let mut q = tx.prepare_cached(&due_sql(false))?;
            let rows = q.query_map(params![now, limit], |r| {
                Ok(due_of(
                    r.get(0)?,
                    OutboxRow {
                        msg_id: r.get(1)?,
                        account: r.get(2)?,
                        endpoint: r.get(3)?,
                        order_key: r.get(4)?,
                        kind: r.get(5)?,
                        payload: r.get(6)?,
                        created_at: r.get(7)?,
                    },
                    r.get(8)?,
                    r.get(9)?,
                ))
            })?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        {
            let mut lease =
                tx.prepare_cached("UPDATE event_outbox SET next_at = ?1 WHERE seq = ?2")?;
            for d in &due {
                lease.execute(params![lease_until, d.seq])?;
            }
        }
        tx.commit()?;
        Ok(due)
    }

    fn outbox_state(&mut self, _node: &str) -> Result<(u64, Option<i64>), StoreError> {
        let pending: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM event_outbox WHERE status = 'pending'",
            [],
            |r| r.get(0),
        )?;
        let next: Option<i64> = self.conn.query_row(
            &format!(
                "SELECT MIN(o.next_at) FROM event_outbox o WHERE o.status = 'pending' AND {HEAD}"
            ),
            [],
            |r| r.get(0),
        )?;
        Ok((u64::try_from(pending).unwrap_or(0), next))
    }

    fn attempted(&mut self, done: &[Attempted]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut update = tx.prepare_cached(
                "UPDATE event_outbox SET status = ?2, attempts = ?3, next_at = COALESCE(?4, next_at),
                     last_at = ?5, last_status = ?6, last_error = ?7, delivered_at = ?8
                 WHERE seq = ?1",
            )?;
            for a in done {
                let delivered_at = (a.outcome == DeliveryStatus::Delivered).then_some(a.at);
                update.execute(params![
                    a.seq,
                    a.outcome.as_str(),
                    a.attempts,
                    a.next_at,
                    a.at,
                    a.status,
                    text_error(&a.error),
                    delivered_at
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn pause_endpoint(&mut self, endpoint: &str) -> Result<u64, StoreError> {
        let n = self.conn.execute(
            "UPDATE event_outbox SET status = 'paused' WHERE endpoint = ?1 AND status = 'pending'",
            params![endpoint],
        )?;
        Ok(n as u64)
    }

    fn resume_endpoint(&mut self, endpoint: &str, now: i64) -> Result<u64, StoreError> {
        let n = self.conn.execute(
            "UPDATE event_outbox SET status = 'pending', next_at = ?2
             WHERE endpoint = ?1 AND status = 'paused'",
            params![endpoint, now],
        )?;
        Ok(n as u64)
    }

    fn forget_endpoint(&mut self, endpoint: &str) -> Result<u64, StoreError> {
        let n = self.conn.execute(
            "DELETE FROM event_outbox WHERE endpoint = ?1",
            params![endpoint],
        )?;
        Ok(n as u64)
    }

    fn redeliver(&mut self, endpoint: &str, msg_id: &str, now: i64) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "UPDATE event_outbox SET status = 'pending', next_at = ?3, retry_from = ?3
             WHERE endpoint = ?1 AND msg_id = ?2",
            params![endpoint, msg_id, now],
        )?;
        Ok(n == 1)
    }

    fn deliveries(&mut self, q: &DeliveryQuery) -> Result<Vec<Delivery>, StoreError> {
        let mut values: Vec<rusqlite::types::Value> =
            vec![q.account.clone().into(), q.endpoint.clone().into()];
        if let Some(s) = q.status {
            values.push(s.as_str().to_owned().into());
        }
        if let Some(b) = q.before {
            values.push(b.into());
        }
        values.push(i64::from(q.limit).into());
        let mut stmt = self.conn.prepare_cached(&log_sql(q))?;
        let rows = stmt.query_map(rusqlite::params_from_iter(values), |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
                r.get(11)?,
                r.get(12)?,
            ))
        })?;
        let mut out = vec![];
        for row in rows {
            let (a, b, c, d, e, f, g, h, i, j, k, l, m) = row?;
            out.push(delivery(a, b, c, d, e, f, g, h, i, j, k, l, m)?);
        }
        Ok(out)
    }

    fn adopt_events(&mut self, _from: &str, _to: &str) -> Result<u64, StoreError> {
        // One node: every row is this node's already.
        Ok(0)
    }

    fn purge_events(&mut self, before: i64) -> Result<u64, StoreError> {
        let n = self.conn.execute(
            "DELETE FROM event_outbox WHERE created_at < ?1 AND status IN ('delivered', 'failed')",
            params![before],
        )?;
        Ok(n as u64)
    }
}

impl EventStore for PostgresStore {
    fn append_events(&mut self, rows: &[OutboxRow]) -> Result<(), StoreError> {
        let node = self.node.clone();
        let mut tx = self.client()?.transaction()?;
        insert_postgres(&mut tx, &node, rows)?;
        tx.commit()?;
        Ok(())
    }

    fn claim_due(
        &mut self,
        node: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<Due>, StoreError> {
        let mut tx = self.client()?.transaction()?;
        let sql = super::postgres::number_placeholders(&due_sql(true));
        let rows = tx.query(&sql, &[&now, &node, &i64::from(limit)])?;
        let due: Vec<Due> = rows
            .iter()
            .map(|r| {
                due_of(
                    r.get(0),
                    OutboxRow {
                        msg_id: r.get(1),
                        account: r.get(2),
                        endpoint: r.get(3),
                        order_key: r.get(4),
                        kind: r.get(5),
                        payload: r.get(6),
                        created_at: r.get(7),
                    },
                    r.get(8),
                    r.get(9),
                )
            })
            .collect();
        let lease = tx.prepare("UPDATE event_outbox SET next_at = $1 WHERE seq = $2")?;
        for d in &due {
            tx.execute(&lease, &[&lease_until, &d.seq])?;
        }
        tx.commit()?;
        Ok(due)
    }

    fn outbox_state(&mut self, node: &str) -> Result<(u64, Option<i64>), StoreError> {
        let c = self.client()?;
        let pending: i64 = c
            .query_one(
                "SELECT COUNT(*) FROM event_outbox WHERE status = 'pending' AND node = $1",
                &[&node],
            )?
            .get(0);
        let next: Option<i64> = c
            .query_one(
                &format!(
                    "SELECT MIN(o.next_at) FROM event_outbox o WHERE o.status = 'pending' \
                     AND o.node = $1 AND {HEAD}"
                ),
                &[&node],
            )?
            .get(0);
        Ok((u64::try_from(pending).unwrap_or(0), next))
    }

    fn attempted(&mut self, done: &[Attempted]) -> Result<(), StoreError> {
        let mut tx = self.client()?.transaction()?;
        let update = tx.prepare(
            "UPDATE event_outbox SET status = $2, attempts = $3, next_at = COALESCE($4, next_at),
                 last_at = $5, last_status = $6, last_error = $7, delivered_at = $8
             WHERE seq = $1",
        )?;
        for a in done {
            let delivered_at = (a.outcome == DeliveryStatus::Delivered).then_some(a.at);
            tx.execute(
                &update,
                &[
                    &a.seq,
                    &a.outcome.as_str(),
                    &i64::from(a.attempts),
                    &a.next_at,
                    &a.at,
                    &a.status.map(i64::from),
                    &text_error(&a.error),
                    &delivered_at,
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn pause_endpoint(&mut self, endpoint: &str) -> Result<u64, StoreError> {
        Ok(self.client()?.execute(
            "UPDATE event_outbox SET status = 'paused' WHERE endpoint = $1 AND status = 'pending'",
            &[&endpoint],
        )?)
    }

    fn resume_endpoint(&mut self, endpoint: &str, now: i64) -> Result<u64, StoreError> {
        Ok(self.client()?.execute(
            "UPDATE event_outbox SET status = 'pending', next_at = $2
             WHERE endpoint = $1 AND status = 'paused'",
            &[&endpoint, &now],
        )?)
    }

    fn forget_endpoint(&mut self, endpoint: &str) -> Result<u64, StoreError> {
        Ok(self
            .client()?
            .execute("DELETE FROM event_outbox WHERE endpoint = $1", &[&endpoint])?)
    }

    fn redeliver(&mut self, endpoint: &str, msg_id: &str, now: i64) -> Result<bool, StoreError> {
        let n = self.client()?.execute(
            "UPDATE event_outbox SET status = 'pending', next_at = $3, retry_from = $3
             WHERE endpoint = $1 AND msg_id = $2",
            &[&endpoint, &msg_id, &now],
        )?;
        Ok(n == 1)
    }

    fn deliveries(&mut self, q: &DeliveryQuery) -> Result<Vec<Delivery>, StoreError> {
        let status = q.status.map(|s| s.as_str().to_owned());
        let limit = i64::from(q.limit);
        let mut values: Vec<&(dyn postgres::types::ToSql + Sync)> = vec![&q.account, &q.endpoint];
        if let Some(s) = &status {
            values.push(s);
        }
        if let Some(b) = &q.before {
            values.push(b);
        }
        values.push(&limit);
        let sql = super::postgres::number_placeholders(&log_sql(q));
        let rows = self.client()?.query(&sql, &values)?;
        rows.iter()
            .map(|r| {
                delivery(
                    r.get(0),
                    r.get(1),
                    r.get(2),
                    r.get(3),
                    r.get(4),
                    r.get(5),
                    r.get(6),
                    r.get(7),
                    r.get(8),
                    r.get(9),
                    r.get(10),
                    r.get(11),
                    r.get(12),
                )
            })
            .collect()
    }

    fn adopt_events(&mut self, from: &str, to: &str) -> Result<u64, StoreError> {
        Ok(self.client()?.execute(
            "UPDATE event_outbox SET node = $2 WHERE node = $1 AND status IN ('pending', 'paused')",
            &[&from, &to],
        )?)
    }

    fn purge_events(&mut self, before: i64) -> Result<u64, StoreError> {
        Ok(self.client()?.execute(
            "DELETE FROM event_outbox WHERE created_at < $1 AND status IN ('delivered', 'failed')",
            &[&before],
        )?)
    }
}
