//! [`PostgresStore`]: the call records in a PostgreSQL database that several switchboard nodes
//! share (`SWITCHBOARD_DATABASE_URL`), so `GET /api/calls` on any node lists every node's calls.
//!
//! The layout is SQLite's ([`super::SqliteStore`]) with one addition: each row of `calls` and
//! `live_calls` names the node that handled the call. A node's live marks are its own: at
//! start-up it ends at Meta only the calls *it* left live, never another running node's.
//!
//! The schema is versioned in `switchboard_schema`; nodes that start at once migrate one at a
//! time (a transaction-scoped advisory lock), and a database migrated by a newer switchboard is
//! refused, never modified. A connection that breaks (the server restarted) is opened again on
//! the next command; until then commands fail and readiness says so.

use postgres::types::ToSql;
use postgres::{Client, NoTls, Row};
use rusqlite::types::Value;

use super::sqlite::{known_of, list_sql, record_from_row, to_json, Columns};
use super::{CallPage, CallQuery, CallRecord, CallStore, Cursor, LiveCall, Recorded, StoreError};
use crate::events::OutboxRow;
use crate::ids::WaCallId;

/// The schema, one step per version (see [`super::sqlite`]'s list: never edit a shipped step).
const MIGRATIONS: &[&str] = &[
    // 1: calls, the agent index, live calls; each with the node that handled it.
    "CREATE TABLE calls (
        call_id          TEXT PRIMARY KEY NOT NULL,
        started_at       BIGINT NOT NULL,
        answered_at      BIGINT,
        ended_at         BIGINT NOT NULL,
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
        legs             TEXT NOT NULL,
        node             TEXT NOT NULL
    );
    CREATE INDEX calls_by_start ON calls (started_at, call_id);
    CREATE INDEX calls_by_queue ON calls (queue, started_at, call_id);
    CREATE INDEX calls_by_outcome ON calls (outcome, started_at, call_id);
    CREATE TABLE call_agents (
        call_id    TEXT NOT NULL REFERENCES calls (call_id) ON DELETE CASCADE,
        agent_id   TEXT NOT NULL,
        started_at BIGINT NOT NULL,
        PRIMARY KEY (call_id, agent_id)
    );
    CREATE INDEX call_agents_by_agent ON call_agents (agent_id, started_at, call_id);
    CREATE TABLE live_calls (
        call_id         TEXT PRIMARY KEY NOT NULL,
        business_number TEXT NOT NULL,
        started_at      BIGINT NOT NULL,
        node            TEXT NOT NULL
    );
    CREATE INDEX live_calls_by_node ON live_calls (node, started_at, call_id);",
    // 2: what was known of each live call.
    "ALTER TABLE live_calls ADD COLUMN known TEXT;",
    // 3: accounts, their queues, numbers and people (issue 23).
    super::accounts::POSTGRES_SCHEMA,
    // 4: each account's version (a change is written only over the one it was made from).
    super::accounts::POSTGRES_VERSION,
    // 5: the accounts' event endpoints and the outbox of call events (issue 24).
    super::events::POSTGRES_SCHEMA,
    // 6: users' call permissions (issue 25).
    super::permissions::POSTGRES_SCHEMA,
    // 7: who placed each call (issue 25).
    "ALTER TABLE calls ADD COLUMN direction TEXT NOT NULL DEFAULT 'inbound';
    ALTER TABLE calls ADD COLUMN dialled_by TEXT;
    ALTER TABLE calls ADD COLUMN task_id TEXT;
    CREATE INDEX calls_by_direction ON calls (direction, started_at, call_id);",
    // 8: open call-back tasks, kept over a restart (issue 25).
    super::tasks::POSTGRES_SCHEMA,
];

/// The newest schema version this build knows.
const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The advisory lock nodes take while migrating (any fixed number; this one spells "swbd").
const MIGRATION_LOCK: i64 = 0x7377_6264;

/// Call records in PostgreSQL, for the node `node`. Blocking: use it on the store's thread.
pub struct PostgresStore {
    url: String,
    pub(super) node: String,
    client: Client,
}

impl std::fmt::Debug for PostgresStore {
    // The URL may carry a password: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to `url` (a libpq-style URL or key-value string) as node `node`, and brings the
    /// schema up to date.
    pub fn connect(url: &str, node: &str) -> Result<PostgresStore, StoreError> {
        let mut client = connect(url)?;
        migrate(&mut client)?;
        Ok(PostgresStore {
            url: url.to_owned(),
            node: node.to_owned(),
            client,
        })
    }

    /// The database's schema version.
    pub fn schema_version(&mut self) -> Result<i64, StoreError> {
        let row = self
            .client()?
            .query_one("SELECT version FROM switchboard_schema", &[])?;
        Ok(i64::from(row.try_get::<_, i32>(0)?))
    }

    /// The connection, opened again first if the server dropped it.
    pub(super) fn client(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.is_closed() {
            tracing::warn!(node = %self.node, "call database connection lost; reconnecting");
            self.client = connect(&self.url)?;
        }
        Ok(&mut self.client)
    }
}

/// How long opening a connection may take when the URL does not say (`connect_timeout=`): an
/// unreachable server must not hold the store thread for the system's TCP timeout.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn connect(url: &str) -> Result<Client, StoreError> {
    let mut config: postgres::Config = url
        .parse()
        .map_err(|source| StoreError::Connect { source })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    // No TLS here: the database is expected on a private network (or a local proxy such as
    // pgbouncer or a sidecar terminating TLS); docs/operations.md says so.
    config
        .connect(NoTls)
        .map_err(|source| StoreError::Connect { source })
}

/// Applies the steps the database has not had, all in one transaction under the migration
/// lock, so two nodes starting together never both run a step.
fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let failed = |version: i64| move |source| StoreError::SharedMigration { version, source };
    let mut tx = client.transaction().map_err(failed(0))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(failed(0))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS switchboard_schema (version INTEGER NOT NULL);
         INSERT INTO switchboard_schema (version)
             SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM switchboard_schema);",
    )
    .map_err(failed(0))?;
    let found = i64::from(
        tx.query_one("SELECT version FROM switchboard_schema", &[])
            .and_then(|r| r.try_get::<_, i32>(0))
            .map_err(failed(0))?,
    );
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    let done = usize::try_from(found).unwrap_or(0);
    for (i, step) in MIGRATIONS.iter().enumerate().skip(done) {
        let version = i as i64 + 1;
        tx.batch_execute(step).map_err(failed(version))?;
        tx.execute(
            "UPDATE switchboard_schema SET version = $1",
            &[&(version as i32)],
        )
        .map_err(failed(version))?;
        tracing::info!(version, "shared call database migrated");
    }
    tx.commit().map_err(failed(SCHEMA_VERSION))?;
    Ok(())
}

fn empty_id(call_id: &WaCallId) -> Result<(), StoreError> {
    if call_id.0.is_empty() {
        return Err(StoreError::InvalidRecord {
            call_id: String::new(),
            reason: "the call id is empty",
        });
    }
    Ok(())
}

impl CallStore for PostgresStore {
    fn mark_live_with(&mut self, call: &LiveCall, events: &[OutboxRow]) -> Result<(), StoreError> {
        empty_id(&call.call_id)?;
        let node = self.node.clone();
        let mut tx = self.client()?.transaction()?;
        tx.execute(
            "INSERT INTO live_calls (call_id, business_number, started_at, node, known)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (call_id) DO UPDATE SET known = excluded.known",
            &[
                &call.call_id.0,
                &call.business_number,
                &call.started_at,
                &node,
                &call.known.as_ref().map(to_json),
            ],
        )?;
        super::events::insert_postgres(&mut tx, &node, events)?;
        tx.commit()?;
        Ok(())
    }

    fn finish_with(
        &mut self,
        r: &CallRecord,
        events: &[OutboxRow],
    ) -> Result<Recorded, StoreError> {
        empty_id(&r.call_id)?;
        // A taken-over call names the node that handled it, not the one that wrote it.
        let node = r.node.clone().unwrap_or_else(|| self.node.clone());
        let writer = self.node.clone();
        let mut tx = self.client()?.transaction()?;
        let inserted = tx.execute(
            "INSERT INTO calls (call_id, started_at, answered_at, ended_at, caller_number,
                 caller_name, business_number, queue, outcome, end_reason, ended_by, agents,
                 transitions, meta_error_codes, legs, node, direction, dialled_by, task_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                 $18, $19)
             ON CONFLICT (call_id) DO NOTHING",
            &[
                &r.call_id.0,
                &r.started_at,
                &r.answered_at,
                &r.ended_at,
                &r.caller_number,
                &r.caller_name,
                &r.business_number,
                &r.queue,
                &r.outcome.as_str(),
                &r.end_reason,
                &r.ended_by.as_str(),
                &to_json(&r.agents),
                &to_json(&r.transitions),
                &to_json(&r.meta_error_codes),
                &to_json(&r.legs),
                &node,
                &r.direction.as_str(),
                &r.dialled_by,
                &r.task_id,
            ],
        )?;
        if inserted == 1 {
            let add = tx.prepare(
                "INSERT INTO call_agents (call_id, agent_id, started_at) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
            )?;
            for agent in &r.agents {
                tx.execute(&add, &[&r.call_id.0, agent, &r.started_at])?;
            }
        }
        tx.execute("DELETE FROM live_calls WHERE call_id = $1", &[&r.call_id.0])?;
        super::events::insert_postgres(&mut tx, &writer, events)?;
        tx.commit()?;
        Ok(if inserted == 1 {
            Recorded::New
        } else {
            Recorded::Duplicate
        })
    }

    fn live_calls(&mut self) -> Result<Vec<LiveCall>, StoreError> {
        let node = self.node.clone();
        self.live_calls_of(&node)
    }

    fn live_calls_of(&mut self, node: &str) -> Result<Vec<LiveCall>, StoreError> {
        let rows = self.client()?.query(
            "SELECT call_id, business_number, started_at, known FROM live_calls WHERE node = $1
             ORDER BY started_at, call_id",
            &[&node],
        )?;
        rows.iter()
            .map(|row| {
                Ok(LiveCall {
                    call_id: WaCallId(row.try_get(0)?),
                    business_number: row.try_get(1)?,
                    started_at: row.try_get(2)?,
                    known: known_of(row.try_get(3)?),
                })
            })
            .collect()
    }

    fn clear_live(&mut self, call_id: &WaCallId) -> Result<(), StoreError> {
        self.client()?
            .execute("DELETE FROM live_calls WHERE call_id = $1", &[&call_id.0])?;
        Ok(())
    }

    fn list(&mut self, q: &CallQuery) -> Result<CallPage, StoreError> {
        let limit = q.checked_limit()?;
        let (sql, args) = list_sql(q, limit);
        let sql = number_placeholders(&sql);
        let args: Vec<Box<dyn ToSql + Sync>> = args
            .into_iter()
            .map(|v| -> Box<dyn ToSql + Sync> {
                match v {
                    Value::Integer(i) => Box::new(i),
                    Value::Text(t) => Box::new(t),
                    // list_sql binds integers and text only.
                    _ => Box::new(Option::<String>::None),
                }
            })
            .collect();
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a.as_ref()).collect();
        let rows = self.client()?.query(&sql, &params)?;
        let mut calls = Vec::with_capacity(limit as usize);
        let more = rows.len() > limit as usize;
        for row in rows.iter().take(limit as usize) {
            calls.push(record_from_row(row)?);
        }
        let next = if more {
            calls.last().map(Cursor::after)
        } else {
            None
        };
        Ok(CallPage { calls, next })
    }

    fn check_writable(&mut self) -> Result<(), StoreError> {
        // Writes a live mark and undoes it: a read-only server (a replica after fail-over), a
        // full disk or a lost connection fails here as a record would.
        let node = self.node.clone();
        let mut tx = self.client()?.transaction()?;
        tx.execute(
            "INSERT INTO live_calls (call_id, business_number, started_at, node)
             VALUES ('', '', 0, $1) ON CONFLICT (call_id) DO UPDATE SET node = EXCLUDED.node",
            &[&node],
        )?;
        tx.rollback()?;
        Ok(())
    }
}

/// SQLite's `?` placeholders as PostgreSQL's `$1, $2, …` (the listing's SQL has no `?` in any
/// literal).
pub(super) fn number_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

impl Columns for Row {
    fn text(&self, i: usize) -> Result<String, StoreError> {
        Ok(self.try_get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(i)?)
    }
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        Ok(self.try_get(i)?)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(i)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_order() {
        assert_eq!(
            number_placeholders("a = ? AND (b, c) < (?, ?) LIMIT ?"),
            "a = $1 AND (b, c) < ($2, $3) LIMIT $4"
        );
    }
}
