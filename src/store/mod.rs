//! Call records: every call, answered or not, written once when it ends, and the list of calls
//! that are live right now, so that a process that died leaves nothing dangling at Meta. The
//! same database keeps the accounts ([`AccountStore`], issue 23): what they are is
//! [`crate::accounts`]' to say, where they are kept is the store's; and users' call permissions
//! ([`PermissionStore`], issue 25).
//!
//! *Owns*: the database ([`SqliteStore`] on one node; [`PostgresStore`], shared by several
//! nodes, when `SWITCHBOARD_DATABASE_URL` is set) and the one thread that touches it. The
//! rest of the program holds a [`StoreHandle`]: commands go to that thread over a bounded
//! channel, replies come back on a oneshot. Supervisors read the records through
//! [`http::router`] (`GET /api/calls`).
//!
//! *Does not touch*: calls, media or Meta. The store is told what happened (by `calls`, which
//! builds the [`CallRecord`]) and never decides anything; it does not end the calls that
//! [`CallStore::live_calls`] reports, the start-up code does.
//!
//! *Invariants*:
//! - Nothing here blocks the async runtime: every SQLite call runs on the store's own thread.
//! - One record per call id. [`CallStore::finish`] writes the record and clears the live mark in
//!   one transaction; a second `finish` for the same call keeps the first record and reports
//!   [`Recorded::Duplicate`].
//! - A call is *live* from [`CallStore::mark_live`] until its `finish` (or [`CallStore::clear_live`]).
//!   Whatever is still live when the program starts was left by a process that died: start-up
//!   ends those calls at Meta and records them.
//! - Times are unix milliseconds (`i64`, UTC), in the records, in the API and in the database;
//!   [`unix_ms`] converts a `SystemTime`. The store itself never reads the clock.
//! - The schema is versioned (`PRAGMA user_version`); a database written by a newer switchboard
//!   is refused with [`StoreError::TooNew`], never modified.
//!
//! [`CallStore`] is deliberately small and synchronous (it runs on its own thread), so that a
//! server database implements it without any caller changing: [`StoreHandle::spawn`] runs any
//! implementation. On PostgreSQL the live marks are per node (`SWITCHBOARD_NODE_ID`): a node
//! that starts ends only the calls it left live itself.

mod accounts;
mod events;
mod handle;
pub mod http;
mod permissions;
mod postgres;
mod record;
mod sqlite;
mod tasks;

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::ids::WaCallId;

pub use handle::{
    StoreDriver, StoreHandle, TaskChange, TryFinishError, TryPutError, QUEUE_CAPACITY,
};

pub use events::{Attempted, Delivery, DeliveryQuery, DeliveryStatus, Due, EventStore};
pub use permissions::{PermissionRow, PermissionState, PermissionStore};
pub use postgres::PostgresStore;
pub use record::{
    CallPage, CallQuery, CallRecord, Cursor, Direction, EndedBy, LegQuality, LegRole, LiveCall,
    Outcome, Recorded, Transition, DEFAULT_LIMIT, MAX_LIMIT,
};
pub use sqlite::SqliteStore;
pub use tasks::{TaskRow, TaskStore};

/// The store's interface: what the rest of switchboard needs from a database of call records.
///
/// Implementations are used from one thread at a time (the store thread), so methods take
/// `&mut self` and may block.
pub trait CallStore {
    /// Notes that a call is in progress (call it when the call is offered). Marking a call that
    /// is already live keeps the first mark.
    fn mark_live(&mut self, call: &LiveCall) -> Result<(), StoreError> {
        self.mark_live_with(call, &[])
    }

    /// [`CallStore::mark_live`], with the call events that go with the mark written to the
    /// outbox in the same transaction.
    fn mark_live_with(
        &mut self,
        call: &LiveCall,
        events: &[crate::events::OutboxRow],
    ) -> Result<(), StoreError>;

    /// Writes the record of a call that has ended and clears its live mark, in one transaction.
    /// Idempotent on the call id: if a record exists already it is kept, the live mark is still
    /// cleared, and [`Recorded::Duplicate`] is returned.
    fn finish(&mut self, record: &CallRecord) -> Result<Recorded, StoreError> {
        self.finish_with(record, &[])
    }

    /// [`CallStore::finish`], with the events that go with the record (`call.ended`) written to
    /// the outbox in the same transaction (even when the record is a duplicate: it is the
    /// event's to say, and its `webhook-id` is its own).
    fn finish_with(
        &mut self,
        record: &CallRecord,
        events: &[crate::events::OutboxRow],
    ) -> Result<Recorded, StoreError>;

    /// Every call marked live and not finished, oldest first.
    fn live_calls(&mut self) -> Result<Vec<LiveCall>, StoreError>;

    /// The calls another node marked live and never finished (it died), oldest first. Only a
    /// database shared by several nodes has any.
    fn live_calls_of(&mut self, node: &str) -> Result<Vec<LiveCall>, StoreError> {
        let _ = node;
        Ok(Vec::new())
    }

    /// Forgets a live mark without writing a record (a call that never really began). Clearing
    /// a call that is not live does nothing.
    fn clear_live(&mut self, call_id: &WaCallId) -> Result<(), StoreError>;

    /// One page of records, newest first (by `started_at`, then call id), filtered by `query`.
    fn list(&mut self, query: &CallQuery) -> Result<CallPage, StoreError>;

    /// Whether a record could be written now (readiness: a full disk, a file made read-only or
    /// a lock held elsewhere fail it), without writing one.
    fn check_writable(&mut self) -> Result<(), StoreError>;
}

/// The accounts (issue 23), kept in the same database as the call records.
pub trait AccountStore {
    /// Every account, by slug, each with its numbers, queues and people.
    fn accounts(&mut self) -> Result<Vec<crate::accounts::Account>, StoreError>;

    /// Stores a new account with its numbers, queues and people in one transaction: nothing of
    /// it is written when any part is refused (it breaks a rule, its slug is taken, or one of
    /// its numbers belongs to another account).
    fn create_account(&mut self, account: &crate::accounts::Account) -> Result<(), StoreError>;

    /// Writes `account` over the stored one of its slug, in one transaction, if that is still
    /// at `account.version` (nobody changed it since it was read); returns the new version.
    /// [`StoreError::Stale`] when it changed meanwhile, [`StoreError::NoAccount`] when it is
    /// gone; a broken rule or a number another account has is refused as on creation, and
    /// nothing is written.
    /// The change is recorded in the account's audit log as `audit`, in the same transaction.
    fn replace_account(
        &mut self,
        account: &crate::accounts::Account,
        audit: &crate::accounts::AuditEntry,
    ) -> Result<u64, StoreError>;

    /// Adds `entry` to the audit log of account `slug`.
    fn append_audit(
        &mut self,
        slug: &str,
        entry: &crate::accounts::AuditEntry,
    ) -> Result<(), StoreError>;

    /// Account `slug`'s audit log, newest first: at most `limit` entries, older than the entry
    /// `before` when given.
    fn audit_log(
        &mut self,
        slug: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<crate::accounts::AuditEntry>, StoreError>;
}

/// What can go wrong in the store, grouped by who is at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    // The caller's fault.
    /// A query parameter is out of range (HTTP: 400).
    #[error("invalid query: {field}: {reason}")]
    InvalidQuery {
        /// The parameter, as named in `GET /api/calls`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An account that breaks a rule (HTTP: 422, naming the field).
    #[error("invalid account: {0}")]
    InvalidAccount(#[from] crate::accounts::AccountError),
    /// An account with this slug exists already (HTTP: 409).
    #[error("account {0} exists already")]
    AccountExists(String),
    /// No account has this slug.
    #[error("no account {0}")]
    NoAccount(String),
    /// The account changed since the version a change was made from (HTTP: 412, or retried).
    #[error("account {0} changed meanwhile")]
    Stale(String),
    /// A business number belongs to another account already (HTTP: 409).
    #[error("number {number} belongs to account {account} already")]
    NumberTaken {
        /// The number's `phone_number_id`.
        number: String,
        /// The account that has it.
        account: String,
    },
    /// A record that cannot be stored (a bug in whoever built it).
    #[error("invalid call record {call_id:?}: {reason}")]
    InvalidRecord {
        /// The record's call id (possibly empty: that may be the fault).
        call_id: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    // The database's or the operator's.
    /// The database file could not be opened or set up.
    #[error("cannot open call database {path}: {source}")]
    Open {
        /// The file (`SWITCHBOARD_DB`).
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The database was written by a newer switchboard; it is left untouched.
    #[error(
        "call database schema version {found} is newer than this switchboard knows ({known}): \
         run the newer version, or point SWITCHBOARD_DB (SWITCHBOARD_DATABASE_URL) elsewhere"
    )]
    TooNew {
        /// The database's `user_version`.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// A migration step failed; the database stays at the version before it.
    #[error("call database migration to version {version} failed: {source}")]
    Migration {
        /// The version the failed step leads to.
        version: i64,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// A query or a write failed.
    #[error("call database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The shared database (`SWITCHBOARD_DATABASE_URL`) could not be reached or refused us.
    #[error("cannot connect to the shared call database (SWITCHBOARD_DATABASE_URL): {source}")]
    Connect {
        /// What PostgreSQL (or the network) said.
        source: ::postgres::Error,
    },
    /// A migration step of the shared database failed; it stays at the version before it.
    #[error("shared call database migration to version {version} failed: {source}")]
    SharedMigration {
        /// The version the failed step leads to (0: taking the lock or reading the version).
        version: i64,
        /// What PostgreSQL said.
        source: ::postgres::Error,
    },
    /// A query or a write on the shared database failed.
    #[error("shared call database: {0}")]
    Postgres(#[from] ::postgres::Error),
    /// A stored value cannot be read back (the file was edited, or a bug wrote it).
    #[error("call record {call_id:?} is unreadable in column {column}: {reason}")]
    Corrupt {
        /// The record.
        call_id: String,
        /// The column at fault.
        column: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    // Ours.
    /// The store thread could not be started.
    #[error("cannot start the call store thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// The store thread has stopped (it panicked, or the program is shutting down).
    #[error("the call store has stopped")]
    Stopped,
    /// The store thread panicked.
    #[error("the call store thread panicked")]
    Panicked,
}

/// A `SystemTime` as unix milliseconds, the store's unit of time. Times before 1970 are
/// negative.
pub fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn unix_ms_both_sides_of_the_epoch() {
        assert_eq!(unix_ms(UNIX_EPOCH), 0);
        assert_eq!(
            unix_ms(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
            1_700_000_000_123
        );
        assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_millis(5)), -5);
    }
}
