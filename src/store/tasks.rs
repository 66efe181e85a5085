//! Open call-back tasks (issue 25): a customer to call back, for a queue or one person, from
//! a caller the centre lost or from the API (`POST /api/v1/callbacks`). A task lives in the
//! calls machine of the node that holds it; this table is its copy that survives a restart:
//! written when the machine takes a task up, deleted when the task is done with (called,
//! cancelled, the customer called in). One row per task.
//!
//! *Owns*: the `call_tasks` table. *Does not touch*: what a task means (`crate::calls`).

use rusqlite::params;

use super::{PostgresStore, SqliteStore, StoreError};

/// The table (SQLite's migration 8).
pub(super) const SQLITE_SCHEMA: &str = "CREATE TABLE call_tasks (
        task_id    TEXT PRIMARY KEY NOT NULL,
        account    TEXT NOT NULL,
        customer   TEXT NOT NULL,
        name       TEXT,
        queue      TEXT NOT NULL,
        agent      TEXT,
        reason     TEXT NOT NULL,
        note       TEXT,
        due_at     INTEGER,
        created_at INTEGER NOT NULL,
        node       TEXT NOT NULL
    );
    CREATE INDEX call_tasks_by_account ON call_tasks (account, created_at);";

/// PostgreSQL's migration 8: the same.
pub(super) const POSTGRES_SCHEMA: &str = "CREATE TABLE call_tasks (
        task_id    TEXT PRIMARY KEY NOT NULL,
        account    TEXT NOT NULL,
        customer   TEXT NOT NULL,
        name       TEXT,
        queue      TEXT NOT NULL,
        agent      TEXT,
        reason     TEXT NOT NULL,
        note       TEXT,
        due_at     BIGINT,
        created_at BIGINT NOT NULL,
        node       TEXT NOT NULL
    );
    CREATE INDEX call_tasks_by_account ON call_tasks (account, created_at);";

/// One open call-back task. Times are unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskRow {
    /// Its id (`task-…`).
    pub task_id: String,
    /// The account (slug) whose customer it is.
    pub account: String,
    /// The customer's WhatsApp number, digits.
    pub customer: String,
    /// Their name, when known.
    pub name: Option<String>,
    /// The queue whose agents take it (`support@acme`).
    pub queue: String,
    /// The one person it is for, when it names one (`ann@acme`).
    pub agent: Option<String>,
    /// Why: `abandoned`, `unstaffed` or `scheduled`.
    pub reason: String,
    /// What whoever scheduled it wrote.
    pub note: Option<String>,
    /// Not offered before then.
    pub due_at: Option<i64>,
    /// When it was taken up.
    pub created_at: i64,
    /// The node whose calls machine holds it (`SWITCHBOARD_NODE_ID`).
    pub node: String,
}

/// The tasks' table.
pub trait TaskStore {
    /// Writes `row` (over the one of its id, if any).
    fn put_task(&mut self, row: &TaskRow) -> Result<(), StoreError>;
    /// Deletes task `id`; nothing happens when there is none.
    fn forget_task(&mut self, id: &str) -> Result<(), StoreError>;
    /// The open tasks, oldest first: of `account` only, when named.
    fn tasks(&mut self, account: Option<&str>) -> Result<Vec<TaskRow>, StoreError>;
}

const UPSERT: &str = "INSERT INTO call_tasks (task_id, account, customer, name, queue, agent, \
     reason, note, due_at, created_at, node) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
     ON CONFLICT (task_id) DO UPDATE SET account = excluded.account, \
     customer = excluded.customer, name = excluded.name, queue = excluded.queue, \
     agent = excluded.agent, reason = excluded.reason, note = excluded.note, \
     due_at = excluded.due_at, node = excluded.node";

const FORGET: &str = "DELETE FROM call_tasks WHERE task_id = $1";

const COLUMNS: &str = "SELECT task_id, account, customer, name, queue, agent, reason, note, \
     due_at, created_at, node FROM call_tasks";

fn refuse_empty(row: &TaskRow) -> Result<(), StoreError> {
    if row.task_id.is_empty() || row.customer.is_empty() || row.queue.is_empty() {
        return Err(StoreError::InvalidRecord {
            call_id: row.task_id.clone(),
            reason: "a call-back task needs an id, a customer and a queue",
        });
    }
    Ok(())
}

fn select(account: Option<&str>) -> String {
    match account {
        Some(_) => format!("{COLUMNS} WHERE account = $1 ORDER BY created_at, task_id"),
        None => format!("{COLUMNS} ORDER BY created_at, task_id"),
    }
}

impl TaskStore for SqliteStore {
    fn put_task(&mut self, row: &TaskRow) -> Result<(), StoreError> {
        refuse_empty(row)?;
        self.conn.prepare_cached(UPSERT)?.execute(params![
            row.task_id,
            row.account,
            row.customer,
            row.name,
            row.queue,
            row.agent,
            row.reason,
            row.note,
            row.due_at,
            row.created_at,
            row.node,
        ])?;
        Ok(())
    }

    fn forget_task(&mut self, id: &str) -> Result<(), StoreError> {
        self.conn.prepare_cached(FORGET)?.execute(params![id])?;
        Ok(())
    }

    fn tasks(&mut self, account: Option<&str>) -> Result<Vec<TaskRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&select(account))?;
        let read = |r: &rusqlite::Row<'_>| {
            Ok(TaskRow {
                task_id: r.get(0)?,
                account: r.get(1)?,
                customer: r.get(2)?,
                name: r.get(3)?,
                queue: r.get(4)?,
                agent: r.get(5)?,
                reason: r.get(6)?,
                note: r.get(7)?,
                due_at: r.get(8)?,
                created_at: r.get(9)?,
                node: r.get(10)?,
            })
        };
        let rows = match account {
            Some(a) => stmt
                .query_map(params![a], read)?
                .collect::<Result<_, _>>()?,
            None => stmt.query_map([], read)?.collect::<Result<_, _>>()?,
        };
        Ok(rows)
    }
}

impl TaskStore for PostgresStore {
    fn put_task(&mut self, row: &TaskRow) -> Result<(), StoreError> {
        refuse_empty(row)?;
        self.client()?.execute(
            UPSERT,
            &[
                &row.task_id,
                &row.account,
                &row.customer,
                &row.name,
                &row.queue,
                &row.agent,
                &row.reason,
                &row.note,
                &row.due_at,
                &row.created_at,
                &row.node,
            ],
        )?;
        Ok(())
    }

    fn forget_task(&mut self, id: &str) -> Result<(), StoreError> {
        self.client()?.execute(FORGET, &[&id])?;
        Ok(())
    }

    fn tasks(&mut self, account: Option<&str>) -> Result<Vec<TaskRow>, StoreError> {
        let sql = select(account);
        let rows = match account {
            Some(a) => self.client()?.query(sql.as_str(), &[&a])?,
            None => self.client()?.query(sql.as_str(), &[])?,
        };
        rows.iter()
            .map(|r| {
                Ok(TaskRow {
                    task_id: r.try_get(0)?,
                    account: r.try_get(1)?,
                    customer: r.try_get(2)?,
                    name: r.try_get(3)?,
                    queue: r.try_get(4)?,
                    agent: r.try_get(5)?,
                    reason: r.try_get(6)?,
                    note: r.try_get(7)?,
                    due_at: r.try_get(8)?,
                    created_at: r.try_get(9)?,
                    node: r.try_get(10)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, account: &str, at: i64) -> TaskRow {
        TaskRow {
            task_id: id.into(),
            account: account.into(),
            customer: "15551234567".into(),
            name: Some("Ada".into()),
            queue: format!("support@{account}"),
            agent: None,
            reason: "scheduled".into(),
            note: Some("promised a call at three".into()),
            due_at: Some(at + 60_000),
            created_at: at,
            node: "node-a".into(),
        }
    }

    #[test]
    fn sqlite_keeps_forgets_and_lists_by_account() {
        let mut s = SqliteStore::open_in_memory().unwrap();
        assert!(s.tasks(None).unwrap().is_empty());
        let a = row("task-1", "acme", 2_000);
        let b = row("task-2", "globex", 1_000);
        s.put_task(&a).unwrap();
        s.put_task(&b).unwrap();
        assert_eq!(s.tasks(None).unwrap(), vec![b.clone(), a.clone()]);
        assert_eq!(s.tasks(Some("acme")).unwrap(), vec![a.clone()]);
        // Written again (taken up again after a restart): one row, the latest.
        let moved = TaskRow {
            node: "node-b".into(),
            ..a.clone()
        };
        s.put_task(&moved).unwrap();
        assert_eq!(s.tasks(Some("acme")).unwrap(), vec![moved]);
        s.forget_task("task-1").unwrap();
        s.forget_task("task-1").unwrap();
        assert_eq!(s.tasks(None).unwrap(), vec![b]);
        let e = s
            .put_task(&TaskRow {
                customer: String::new(),
                ..row("task-3", "acme", 0)
            })
            .unwrap_err();
        assert!(matches!(e, StoreError::InvalidRecord { .. }), "{e}");
    }
}
