//! [`SqliteStore`]: the call records in one SQLite file (WAL mode), schema under versioned
//! migrations.
//!
//! Layout: `calls` holds one row per call, with the lists (agents in order, transitions, Meta's
//! error codes, leg quality) as JSON text columns; `call_agents` repeats each (call, agent) pair
//! so the agent filter uses an index; `live_calls` holds the calls in progress; `accounts` and
//! its `account_queues`, `account_numbers` and `account_people` the accounts
//! (`store::accounts`).

use std::path::Path;

use rusqlite::types::Value;
use rusqlite::{params, Connection, Row};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{CallPage, CallQuery, CallRecord, CallStore, Cursor, LiveCall, Recorded, StoreError};
use crate::events::OutboxRow;
use crate::ids::WaCallId;

/// The schema, one step per version: step `i` takes the database from `user_version` `i` to
/// `i + 1`, in one transaction. Never edit a step that has shipped; add one.
const MIGRATIONS: &[&str] = &[
    // 1: calls, the agent index, live calls.
    "CREATE TABLE calls (
        call_id          TEXT PRIMARY KEY NOT NULL,
        started_at       INTEGER NOT NULL,
        answered_at      INTEGER,
        ended_at         INTEGER NOT NULL,
        caller_number    TEXT NOT NULL,
        caller_name      TEXT,
        business_number  TEXT NOT NULL,
        queue            TEXT,
        outcome          TEXT NOT NULL,
        end_reason       TEXT NOT NULL,
        ended_by         TEXT NOT NULL,
        agents           TEXT NOT NULL,
        transitions      TEXT NOT NULL,
        meta_error_codes TEXT NOT NULL,
        legs             TEXT NOT NULL
    );
    CREATE INDEX calls_by_start ON calls (started_at, call_id);
    CREATE INDEX calls_by_queue ON calls (queue, started_at, call_id);
    CREATE INDEX calls_by_outcome ON calls (outcome, started_at, call_id);
    CREATE TABLE call_agents (
        call_id    TEXT NOT NULL REFERENCES calls (call_id) ON DELETE CASCADE,
        agent_id   TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        PRIMARY KEY (call_id, agent_id)
    ) WITHOUT ROWID;
    CREATE INDEX call_agents_by_agent ON call_agents (agent_id, started_at, call_id);
    CREATE TABLE live_calls (
        call_id         TEXT PRIMARY KEY NOT NULL,
        business_number TEXT NOT NULL,
        started_at      INTEGER NOT NULL
    );",
    // 2: the node of each record; what was known of each live call.
    "ALTER TABLE calls ADD COLUMN node TEXT;
    ALTER TABLE live_calls ADD COLUMN known TEXT;",
    // 3: accounts, their queues, numbers and people (issue 23).
    super::accounts::SQLITE_SCHEMA,
    // 4: each account's version (a change is written only over the one it was made from).
    super::accounts::SQLITE_VERSION,
    // 5: the accounts' event endpoints and the outbox of call events (issue 24).
    super::events::SQLITE_SCHEMA,
    // 6: users' call permissions (issue 25).
    super::permissions::SQLITE_SCHEMA,
    // 7: who placed each call: the customer, or an agent calling back from a task (issue 25).
    "ALTER TABLE calls ADD COLUMN direction TEXT NOT NULL DEFAULT 'inbound';
    ALTER TABLE calls ADD COLUMN dialled_by TEXT;
    ALTER TABLE calls ADD COLUMN task_id TEXT;
    CREATE INDEX calls_by_direction ON calls (direction, started_at, call_id);",
    // 8: open call-back tasks, kept over a restart (issue 25).
    super::tasks::SQLITE_SCHEMA,
];

/// The newest schema version this build knows.
const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long a write waits for a lock held by another connection (a backup, an operator's
/// `sqlite3` shell) before failing.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

const RECORD_COLUMNS: &str = "c.call_id, c.started_at, c.answered_at, c.ended_at, \
    c.caller_number, c.caller_name, c.business_number, c.queue, c.outcome, c.end_reason, \
    c.ended_by, c.agents, c.transitions, c.meta_error_codes, c.legs, c.node, c.direction, \
    c.dialled_by, c.task_id";

/// Call records in SQLite. Blocking: use it on the store's thread (see
/// [`StoreHandle`](super::StoreHandle)), never on the async runtime.
#[derive(Debug)]
pub struct SqliteStore {
    pub(super) conn: Connection,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file, switches it to WAL and brings its schema
    /// up to date.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        // WAL: readers (the API) never wait for the writer; NORMAL sync is durable against a
        // crash of the process (not of the machine) and keeps a write to one fsync per
        // checkpoint.
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(%mode, path = %path.display(), "call database is not in WAL mode");
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        Self::set_up(conn).map_err(|e| match e {
            StoreError::Sqlite(source) => open_err(source),
            e => e,
        })
    }

    /// A database in memory, empty, for tests and demos: it is gone when the store is dropped.
    pub fn open_in_memory() -> Result<SqliteStore, StoreError> {
        Self::set_up(Connection::open_in_memory()?)
    }

    /// Wraps a connection someone else opened, migrating its schema.
    pub fn from_connection(conn: Connection) -> Result<SqliteStore, StoreError> {
        Self::set_up(conn)
    }

    fn set_up(mut conn: Connection) -> Result<SqliteStore, StoreError> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "foreign_keys", true)?;
        migrate(&mut conn)?;
        Ok(SqliteStore { conn })
    }

    /// The database's schema version (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }
}

/// Applies every step the database has not had, each in its own transaction.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    // A negative version (set by hand) runs every step; the first fails on existing tables.
    let done = usize::try_from(found).unwrap_or(0);
    for (i, step) in MIGRATIONS.iter().enumerate().skip(done) {
        let version = i as i64 + 1;
        let failed = |source| StoreError::Migration { version, source };
        let tx = conn.transaction().map_err(failed)?;
        tx.execute_batch(step).map_err(failed)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(failed)?;
        tx.commit().map_err(failed)?;
        tracing::info!(version, "call database migrated");
    }
    Ok(())
}

impl CallStore for SqliteStore {
    fn mark_live_with(&mut self, call: &LiveCall, events: &[OutboxRow]) -> Result<(), StoreError> {
        if call.call_id.0.is_empty() {
            return Err(StoreError::InvalidRecord {
                call_id: String::new(),
                reason: "the call id is empty",
            });
        }
        let tx = self.conn.transaction()?;
        // A later mark of the same call says what is known now; its start stays the first.
        tx.execute(
            "INSERT INTO live_calls (call_id, business_number, started_at, known)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (call_id) DO UPDATE SET known = excluded.known",
            params![
                call.call_id.0,
                call.business_number,
                call.started_at,
                call.known.as_ref().map(to_json)
            ],
        )?;
        super::events::insert_sqlite(&tx, events)?;
        tx.commit()?;
        Ok(())
    }

    fn finish_with(
        &mut self,
        r: &CallRecord,
        events: &[OutboxRow],
    ) -> Result<Recorded, StoreError> {
        if r.call_id.0.is_empty() {
            return Err(StoreError::InvalidRecord {
                call_id: String::new(),
                reason: "the call id is empty",
            });
        }
        let tx = self.conn.transaction()?;
        let inserted = tx.execute(
            "INSERT INTO calls (call_id, started_at, answered_at, ended_at, caller_number,
                 caller_name, business_number, queue, outcome, end_reason, ended_by, agents,
                 transitions, meta_error_codes, legs, node, direction, dialled_by, task_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                 ?18, ?19)
             ON CONFLICT (call_id) DO NOTHING",
            params![
                r.call_id.0,
                r.started_at,
                r.answered_at,
                r.ended_at,
                r.caller_number,
                r.caller_name,
                r.business_number,
                r.queue,
                r.outcome.as_str(),
                r.end_reason,
                r.ended_by.as_str(),
                to_json(&r.agents),
                to_json(&r.transitions),
                to_json(&r.meta_error_codes),
                to_json(&r.legs),
                r.node,
                r.direction.as_str(),
                r.dialled_by,
                r.task_id,
            ],
        )?;
        if inserted == 1 {
            let mut add = tx.prepare_cached(
                "INSERT INTO call_agents (call_id, agent_id, started_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
            )?;
            for agent in &r.agents {
                add.execute(params![r.call_id.0, agent, r.started_at])?;
            }
        }
        tx.execute(
            "DELETE FROM live_calls WHERE call_id = ?1",
            params![r.call_id.0],
        )?;
        super::events::insert_sqlite(&tx, events)?;
        tx.commit()?;
        Ok(if inserted == 1 {
            Recorded::New
        } else {
            Recorded::Duplicate
        })
    }

    fn check_writable(&mut self) -> Result<(), StoreError> {
        // Takes the write lock and writes a live mark, then undoes it: a read-only file, a
        // full disk or another writer holding the lock fails here as a record would.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT OR REPLACE INTO live_calls (call_id, business_number, started_at)
             VALUES ('', '', 0)",
            [],
        )?;
        tx.rollback()?;
        Ok(())
    }

    fn live_calls(&mut self) -> Result<Vec<LiveCall>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT call_id, business_number, started_at, known FROM live_calls
             ORDER BY started_at, call_id",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok(LiveCall {
                call_id: WaCallId(row.get(0)?),
                business_number: row.get(1)?,
                started_at: row.get(2)?,
                known: known_of(row.get(3)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn clear_live(&mut self, call_id: &WaCallId) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM live_calls WHERE call_id = ?1",
            params![call_id.0],
        )?;
        Ok(())
    }

    fn list(&mut self, q: &CallQuery) -> Result<CallPage, StoreError> {
        let limit = q.checked_limit()?;
        let (sql, args) = list_sql(q, limit);
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
        let mut calls = Vec::with_capacity(limit as usize);
        let mut more = false;
        while let Some(row) = rows.next()? {
            if calls.len() == limit as usize {
                more = true;
                break;
            }
            calls.push(record_from_row(row)?);
        }
        let next = if more {
            calls.last().map(Cursor::after)
        } else {
            None
        };
        Ok(CallPage { calls, next })
    }
}

/// The listing's SQL (with `?` placeholders, in order) and its arguments: `limit + 1` rows,
/// newest first, after the cursor. PostgreSQL's store uses it too, numbering the placeholders.
pub(super) fn list_sql(q: &CallQuery, limit: u32) -> (String, Vec<Value>) {
    let mut sql = format!("SELECT {RECORD_COLUMNS} FROM calls c");
    let mut args: Vec<Value> = Vec::new();
    let mut conds: Vec<&str> = Vec::new();
    // The sort key, (started_at, call_id), is read from the table whose index drives the
    // query: `call_agents` (which repeats both) when filtering by agent, else `calls`.
    let (by_start, after_cursor, order) = if let Some(agent) = &q.agent {
        sql.push_str(" JOIN call_agents a ON a.call_id = c.call_id AND a.agent_id = ?");
        args.push(Value::Text(agent.clone()));
        (
            ["a.started_at >= ?", "a.started_at < ?"],
            "(a.started_at, a.call_id) < (?, ?)",
            " ORDER BY a.started_at DESC, a.call_id DESC LIMIT ?",
        )
    } else {
        (
            ["c.started_at >= ?", "c.started_at < ?"],
            "(c.started_at, c.call_id) < (?, ?)",
            " ORDER BY c.started_at DESC, c.call_id DESC LIMIT ?",
        )
    };
    if let Some(from) = q.from {
        conds.push(by_start[0]);
        args.push(Value::Integer(from));
    }
    if let Some(to) = q.to {
        conds.push(by_start[1]);
        args.push(Value::Integer(to));
    }
    if let Some(queue) = &q.queue {
        conds.push("c.queue = ?");
        args.push(Value::Text(queue.clone()));
    }
    if let Some(account) = &q.account {
        // The queue names its account (`support@acme`; the default account's have no `@`).
        // Slugs are a-z 0-9 -: nothing in one is a LIKE wildcard.
        if account == crate::accounts::DEFAULT_ACCOUNT {
            conds.push("(c.queue IS NULL OR c.queue NOT LIKE '%@%')");
        } else {
            conds.push("c.queue LIKE ?");
            args.push(Value::Text(format!("%@{account}")));
        }
    }
    if let Some(outcome) = q.outcome {
        conds.push("c.outcome = ?");
        args.push(Value::Text(outcome.as_str().to_owned()));
    }
    if let Some(direction) = q.direction {
        conds.push("c.direction = ?");
        args.push(Value::Text(direction.as_str().to_owned()));
    }
    if let Some(cursor) = &q.cursor {
        // Keyset paging: strictly after the last record of the previous page.
        conds.push(after_cursor);
        args.push(Value::Integer(cursor.started_at));
        args.push(Value::Text(cursor.call_id.0.clone()));
    }
    if !conds.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conds.join(" AND "));
    }
    // One more than a page: whether it comes back says if there is a next page.
    sql.push_str(order);
    args.push(Value::Integer(i64::from(limit) + 1));
    (sql, args)
}

/// A database row holding [`RECORD_COLUMNS`], whichever database it came from.
pub(super) trait Columns {
    fn text(&self, i: usize) -> Result<String, StoreError>;
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError>;
    fn int(&self, i: usize) -> Result<i64, StoreError>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError>;
}

impl Columns for Row<'_> {
    fn text(&self, i: usize) -> Result<String, StoreError> {
        Ok(self.get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        Ok(self.get(i)?)
    }
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        Ok(self.get(i)?)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.get(i)?)
    }
}

/// Reads one row of [`RECORD_COLUMNS`] (SQLite's or PostgreSQL's).
pub(super) fn record_from_row(row: &impl Columns) -> Result<CallRecord, StoreError> {
    let call_id = row.text(0)?;
    let corrupt = |column: &'static str, reason: String| StoreError::Corrupt {
        call_id: call_id.clone(),
        column,
        reason,
    };
    let outcome = row.text(8)?;
    let ended_by = row.text(10)?;
    let direction = row.text(16)?;
    Ok(CallRecord {
        started_at: row.int(1)?,
        answered_at: row.opt_int(2)?,
        ended_at: row.int(3)?,
        caller_number: row.text(4)?,
        caller_name: row.opt_text(5)?,
        business_number: row.text(6)?,
        queue: row.opt_text(7)?,
        outcome: outcome
            .parse()
            .map_err(|_| corrupt("outcome", format!("unknown outcome {outcome:?}")))?,
        end_reason: row.text(9)?,
        ended_by: ended_by
            .parse()
            .map_err(|_| corrupt("ended_by", format!("unknown party {ended_by:?}")))?,
        agents: from_json(&row.text(11)?, "agents", &corrupt)?,
        transitions: from_json(&row.text(12)?, "transitions", &corrupt)?,
        meta_error_codes: from_json(&row.text(13)?, "meta_error_codes", &corrupt)?,
        legs: from_json(&row.text(14)?, "legs", &corrupt)?,
        node: row.opt_text(15)?,
        direction: direction
            .parse()
            .map_err(|_| corrupt("direction", format!("unknown direction {direction:?}")))?,
        dialled_by: row.opt_text(17)?,
        task_id: row.opt_text(18)?,
        call_id: WaCallId(call_id.clone()),
    })
}

/// A live call's `known` column. Unreadable (written by another version), it is left out:
/// the call is still ended at Meta, recorded with less.
pub(super) fn known_of(text: Option<String>) -> Option<Box<CallRecord>> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

fn from_json<T: DeserializeOwned>(
    text: &str,
    column: &'static str,
    corrupt: &dyn Fn(&'static str, String) -> StoreError,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(column, e.to_string()))
}

/// A list column's JSON text.
pub(super) fn to_json<T: Serialize>(value: &T) -> String {
    // Vectors of plain structs, strings and numbers: serializing them cannot fail (no maps with
    // non-string keys, no hand-written `Serialize` that errs).
    serde_json::to_string(value).expect("record lists serialize to JSON")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::{EndedBy, LegQuality, LegRole, Outcome, Transition};

    /// A record with every field set; `at` is its `started_at`.
    pub(crate) fn record(
        id: &str,
        at: i64,
        outcome: Outcome,
        queue: &str,
        agents: &[&str],
    ) -> CallRecord {
        CallRecord {
            call_id: WaCallId(format!("wacid.{id}")),
            caller_number: "15550001111".into(),
            caller_name: Some("Ada".into()),
            business_number: "115017831530658".into(),
            queue: Some(queue.into()),
            agents: agents.iter().map(|a| a.to_string()).collect(),
            started_at: at,
            answered_at: (outcome == Outcome::Answered).then_some(at + 5_000),
            ended_at: at + 60_000,
            transitions: vec![
                Transition {
                    state: "offered".into(),
                    at,
                    agent: None,
                },
                Transition {
                    state: "ringing".into(),
                    at: at + 1_000,
                    agent: agents.first().map(|a| a.to_string()),
                },
                Transition {
                    state: "ended".into(),
                    at: at + 60_000,
                    agent: None,
                },
            ],
            outcome,
            end_reason: "caller_hung_up".into(),
            ended_by: EndedBy::Caller,
            meta_error_codes: vec![138_006],
            legs: vec![LegQuality {
                role: LegRole::Whatsapp,
                agent: None,
                packets_rx: 3000,
                packets_tx: 2999,
                loss_rx: Some(0.01),
                loss_tx: None,
                jitter_ms: Some(4.5),
                rtt_ms: Some(80.0),
            }],
            node: None,
            direction: crate::store::Direction::Inbound,
            dialled_by: None,
            task_id: None,
        }
    }

    fn live(id: &str, at: i64) -> LiveCall {
        LiveCall {
            call_id: WaCallId(format!("wacid.{id}")),
            business_number: "115017831530658".into(),
            started_at: at,
            known: None,
        }
    }

    fn ids(page: &CallPage) -> Vec<&str> {
        page.calls.iter().map(|c| c.call_id.0.as_str()).collect()
    }

    #[test]
    fn fresh_database_is_at_the_newest_version() {
        let store = SqliteStore::open_in_memory().unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn writability_is_checked_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("calls.db");
        let mut store = SqliteStore::open(&path).unwrap();
        store.check_writable().unwrap();
        assert!(
            store.live_calls().unwrap().is_empty(),
            "the probe left nothing"
        );
        // Another writer holds the lock (an operator's shell, a backup): not writable now.
        store.conn.busy_timeout(std::time::Duration::ZERO).unwrap();
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN EXCLUSIVE").unwrap();
        assert!(store.check_writable().is_err());
        other.execute_batch("ROLLBACK").unwrap();
        store.check_writable().unwrap();
    }

    #[test]
    fn reopening_keeps_the_data_and_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("calls.db");
        let r = record("1", 1_000, Outcome::Answered, "sales", &["a1"]);
        {
            let mut store = SqliteStore::open(&path).unwrap();
            store.finish(&r).unwrap();
            store.mark_live(&live("2", 2_000)).unwrap();
        }
        let mut store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let mode: String = store
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(store.list(&CallQuery::default()).unwrap().calls, vec![r]);
        assert_eq!(store.live_calls().unwrap(), vec![live("2", 2_000)]);
    }

    #[test]
    fn a_newer_schema_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("calls.db");
        drop(SqliteStore::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        let e = SqliteStore::open(&path).unwrap_err();
        assert!(
            matches!(e, StoreError::TooNew { found, known } if found == SCHEMA_VERSION + 1 && known == SCHEMA_VERSION),
            "{e}"
        );
        assert!(e.to_string().contains("newer"), "{e}");
        let conn = Connection::open(&path).unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION + 1);
    }

    #[test]
    fn a_failed_migration_leaves_the_version_before_it() {
        let conn = Connection::open_in_memory().unwrap();
        // A table in the way of step 1.
        conn.execute_batch("CREATE TABLE live_calls (x)").unwrap();
        let mut conn = conn;
        let e = migrate(&mut conn).unwrap_err();
        assert!(matches!(e, StoreError::Migration { version: 1, .. }), "{e}");
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, 0);
        let calls: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'calls'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(calls, 0, "step 1 was rolled back");
    }

    #[test]
    fn a_later_live_mark_says_what_is_known_and_records_name_their_node() {
        let mut store = SqliteStore::open_in_memory().unwrap();
        store.mark_live(&live("1", 1_000)).unwrap();
        let mut known = record("1", 1_000, Outcome::Failed, "sales", &["a1"]);
        known.node = Some("node-a".into());
        let answered = LiveCall {
            // A later mark's start is not taken: the first one's stays.
            started_at: 5_000,
            known: Some(Box::new(known.clone())),
            ..live("1", 1_000)
        };
        store.mark_live(&answered).unwrap();
        assert_eq!(
            store.live_calls().unwrap(),
            vec![LiveCall {
                started_at: 1_000,
                ..answered
            }]
        );
        store.finish(&known).unwrap();
        let page = store.list(&CallQuery::default()).unwrap();
        assert_eq!(page.calls[0].node.as_deref(), Some("node-a"));
    }

    #[test]
    fn finish_is_idempotent_and_clears_the_live_mark() {
        let mut store = SqliteStore::open_in_memory().unwrap();
        let first = record("1", 1_000, Outcome::Answered, "sales", &["a1", "a2", "a1"]);
        store.mark_live(&live("1", 1_000)).unwrap();
        assert_eq!(store.finish(&first).unwrap(), Recorded::New);
        assert_eq!(store.live_calls().unwrap(), vec![]);
        let mut second = first.clone();
        second.end_reason = "again".into();
        store.mark_live(&live("1", 1_000)).unwrap();
        assert_eq!(store.finish(&second).unwrap(), Recorded::Duplicate);
        assert_eq!(
            store.live_calls().unwrap(),
            vec![],
            "a duplicate still clears the mark"
        );
        let page = store.list(&CallQuery::default()).unwrap();
        assert_eq!(
            page.calls,
            vec![first],
            "the first record is kept, agents in order"
        );
        let by_agent = store
            .list(&CallQuery {
                agent: Some("a1".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            by_agent.calls.len(),
            1,
            "an agent who came back is one match"
        );
    }

    #[test]
    fn empty_call_ids_are_refused() {
        let mut store = SqliteStore::open_in_memory().unwrap();
        let mut r = record("1", 1, Outcome::Failed, "q", &[]);
        r.call_id = WaCallId(String::new());
        assert!(matches!(
            store.finish(&r),
            Err(StoreError::InvalidRecord { .. })
        ));
        assert!(matches!(
            store.mark_live(&LiveCall {
                call_id: WaCallId(String::new()),
                business_number: "1".into(),
                started_at: 1,
                known: None,
            }),
            Err(StoreError::InvalidRecord { .. })
        ));
    }

    #[test]
    fn live_marks() {
        let mut store = SqliteStore::open_in_memory().unwrap();
        store.mark_live(&live("b", 2_000)).unwrap();
        store.mark_live(&live("a", 1_000)).unwrap();
        store.mark_live(&live("c", 3_000)).unwrap();
        // Marking again keeps the first mark.
        store.mark_live(&live("a", 9_000)).unwrap();
        assert_eq!(
            store.live_calls().unwrap(),
            vec![live("a", 1_000), live("b", 2_000), live("c", 3_000)]
        );
        store.clear_live(&WaCallId("wacid.b".into())).unwrap();
        store.clear_live(&WaCallId("wacid.unknown".into())).unwrap();
        store
            .finish(&record("c", 3_000, Outcome::Abandoned, "q", &[]))
            .unwrap();
        assert_eq!(store.live_calls().unwrap(), vec![live("a", 1_000)]);
    }

    #[test]
    fn pages_walk_every_record_once_newest_first() {
        let mut store = SqliteStore::open_in_memory().unwrap();
        // 23 records, several sharing a start time, written out of order.
        let mut expected = Vec::new();
        for i in (0..23).rev() {
            let at = 1_000 + (i / 3) * 10;
            let id = format!("{i:02}");
            store
                .finish(&record(&id, at, Outcome::Answered, "q", &["a"]))
                .unwrap();
            expected.push((at, format!("wacid.{id}")));
        }
        expected.sort_by(|a, b| b.cmp(a));
        let mut seen = Vec::new();
        let mut cursor = None;
        for _ in 0..10 {
            let page = store
                .list(&CallQuery {
                    limit: Some(5),
                    cursor: cursor.take(),
                    ..Default::default()
                })
                .unwrap();
            assert!(page.calls.len() <= 5);
            seen.extend(
                page.calls
                    .iter()
                    .map(|c| (c.started_at, c.call_id.0.clone())),
            );
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, expected);
        // An exact multiple of the page size has no empty last page.
        let page = store
            .list(&CallQuery {
                limit: Some(23),
                ..Default::default()
            })
            .unwrap();
        assert_eq!((page.calls.len(), page.next), (23, None));
        assert!(store
            .list(&CallQuery {
                limit: Some(501),
                ..Default::default()
            })
            .is_err());
    }

    #[test]
    fn every_filter_narrows() {
        let mut store = SqliteStore::open_in_memory().unwrap();
        store
            .finish(&record("1", 1_000, Outcome::Answered, "sales", &["ann"]))
            .unwrap();
        store
            .finish(&record("2", 2_000, Outcome::Abandoned, "sales", &[]))
            .unwrap();
        store
            .finish(&record(
                "3",
                3_000,
                Outcome::Answered,
                "support",
                &["bob", "ann"],
            ))
            .unwrap();
        store
            .finish(&record("4", 4_000, Outcome::TimedOut, "support", &[]))
            .unwrap();
        let mut no_queue = record("5", 5_000, Outcome::Declined, "-", &[]);
        no_queue.queue = None;
        store.finish(&no_queue).unwrap();
        // A call-back bob placed from a task.
        let mut dialled = record("6", 6_000, Outcome::Failed, "sales", &["bob"]);
        dialled.direction = crate::store::Direction::Outbound;
        dialled.dialled_by = Some("bob".into());
        dialled.task_id = Some("task-1".into());
        store.finish(&dialled).unwrap();
        assert_eq!(
            store.list(&CallQuery::default()).unwrap().calls[0],
            dialled,
            "a call-back reads back as written"
        );

        let list = |q: CallQuery| {
            let page = store.list(&q).unwrap();
            ids(&page)
                .into_iter()
                .map(|s| s.trim_start_matches("wacid.").to_owned())
                .collect::<Vec<_>>()
        };
        let mut list = list;
        let all = CallQuery::default();
        assert_eq!(list(all.clone()), ["6", "5", "4", "3", "2", "1"]);
        assert_eq!(
            list(CallQuery {
                from: Some(2_000),
                ..all.clone()
            }),
            ["6", "5", "4", "3", "2"]
        );
        assert_eq!(
            list(CallQuery {
                to: Some(3_000),
                ..all.clone()
            }),
            ["2", "1"]
        );
        assert_eq!(
            list(CallQuery {
                from: Some(2_000),
                to: Some(4_001),
                ..all.clone()
            }),
            ["4", "3", "2"]
        );
        assert_eq!(
            list(CallQuery {
                agent: Some("ann".into()),
                ..all.clone()
            }),
            ["3", "1"]
        );
        assert_eq!(
            list(CallQuery {
                agent: Some("bob".into()),
                ..all.clone()
            }),
            ["6", "3"]
        );
        assert_eq!(
            list(CallQuery {
                agent: Some("nobody".into()),
                ..all.clone()
            }),
            Vec::<String>::new()
        );
        assert_eq!(
            list(CallQuery {
                queue: Some("sales".into()),
                ..all.clone()
            }),
            ["6", "2", "1"]
        );
        assert_eq!(
            list(CallQuery {
                outcome: Some(Outcome::Answered),
                ..all.clone()
            }),
            ["3", "1"]
        );
        assert_eq!(
            list(CallQuery {
                outcome: Some(Outcome::Declined),
                ..all.clone()
            }),
            ["5"]
        );
        assert_eq!(
            list(CallQuery {
                direction: Some(crate::store::Direction::Outbound),
                ..all.clone()
            }),
            ["6"]
        );
        assert_eq!(
            list(CallQuery {
                direction: Some(crate::store::Direction::Inbound),
                ..all.clone()
            }),
            ["5", "4", "3", "2", "1"]
        );
        assert_eq!(
            list(CallQuery {
                agent: Some("bob".into()),
                queue: Some("support".into()),
                outcome: Some(Outcome::Answered),
                from: Some(1),
                to: Some(10_000),
                ..all.clone()
            }),
            ["3"]
        );
        // Filters and the cursor together.
        let first = CallQuery {
            queue: Some("sales".into()),
            limit: Some(2),
            ..all
        };
        assert_eq!(list(first.clone()), ["6", "2"]);
        let next = store.list(&first).unwrap().next;
        let rest = store
            .list(&CallQuery {
                cursor: next,
                ..first
            })
            .unwrap();
        assert_eq!((ids(&rest), &rest.next), (vec!["wacid.1"], &None));

        // Another account's call: its queue names it.
        store
            .finish(&record(
                "7",
                7_000,
                Outcome::Answered,
                "sales@acme",
                &["ann@acme"],
            ))
            .unwrap();
        let mut list = |q: CallQuery| {
            let page = store.list(&q).unwrap();
            ids(&page)
                .into_iter()
                .map(|s| s.trim_start_matches("wacid.").to_owned())
                .collect::<Vec<_>>()
        };
        let of = |account: &str| CallQuery {
            account: Some(account.into()),
            ..CallQuery::default()
        };
        assert_eq!(list(of("acme")), ["7"]);
        assert_eq!(list(of("default")), ["6", "5", "4", "3", "2", "1"]);
        assert!(list(of("acm")).is_empty());
        // A filter naming another account's ids finds nothing.
        assert!(list(CallQuery {
            queue: Some("sales@acme".into()),
            ..of("default")
        })
        .is_empty());
    }

    #[test]
    fn every_filter_is_served_by_an_index() {
        let store = SqliteStore::open_in_memory().unwrap();
        let cursor = Some(Cursor {
            started_at: 5,
            call_id: WaCallId("wacid.1".into()),
        });
        let base = CallQuery {
            from: Some(1),
            to: Some(9),
            cursor,
            ..Default::default()
        };
        for q in [
            CallQuery::default(),
            base.clone(),
            CallQuery {
                agent: Some("a".into()),
                ..base.clone()
            },
            CallQuery {
                queue: Some("q".into()),
                ..base.clone()
            },
            CallQuery {
                outcome: Some(crate::store::Outcome::Failed),
                ..base.clone()
            },
            CallQuery {
                account: Some("acme".into()),
                ..base.clone()
            },
            CallQuery {
                direction: Some(crate::store::Direction::Outbound),
                ..base.clone()
            },
        ] {
            let (sql, args) = list_sql(&q, 50);
            let mut stmt = store
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap();
            let plan: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(args), |r| r.get(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let plan = plan.join("; ");
            assert!(!plan.contains("TEMP B-TREE"), "{q:?}: sorts: {plan}");
            assert!(
                plan.contains("USING COVERING INDEX") || plan.contains("USING INDEX"),
                "{q:?}: {plan}"
            );
            assert!(
                plan.starts_with("SEARCH") || q == CallQuery::default(),
                "{q:?}: scans: {plan}"
            );
        }
    }

    #[test]
    fn an_unreadable_row_is_reported_as_corrupt() {
        let mut store = SqliteStore::open_in_memory().unwrap();
        store
            .finish(&record("1", 1, Outcome::Answered, "q", &[]))
            .unwrap();
        store
            .conn
            .execute("UPDATE calls SET legs = 'nope'", [])
            .unwrap();
        let e = store.list(&CallQuery::default()).unwrap_err();
        assert!(
            matches!(e, StoreError::Corrupt { column: "legs", .. }),
            "{e}"
        );
    }
}
