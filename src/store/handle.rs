//! [`StoreHandle`]: the async side of the store. A [`CallStore`] lives on its own std thread;
//! handles send it commands over one bounded channel and await replies on oneshots.
//!
//! **When the queue is full** (the database is slower than the calls ending), the async methods
//! wait for room: back-pressure on whoever writes, never a dropped record and never an unbounded
//! queue. [`StoreHandle::try_finish`] does not wait: it is for code that cannot `.await` (a drop
//! guard writing the record of a call whose task died) and hands the record back when the queue
//! is full, for the caller to count and log.
//!
//! **Reads on their own connection**: a store opened with a reader ([`StoreHandle::open`] on a
//! file, [`StoreHandle::spawn_with_reader`]) serves `GET /api/calls` ([`StoreHandle::list`]) on
//! a second thread with its own connection, so a supervisor's slow search never delays the
//! records and live marks of calls, and a burst of writes never delays the search.
//!
//! **Stopping**: when the last handle is dropped the thread writes everything still queued, closes
//! the database and ends; [`StoreDriver::join`] waits for that. A command whose caller stopped
//! waiting (its future was dropped) is still carried out if it was queued.

use std::path::PathBuf;
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use super::{
    AccountStore, Attempted, CallPage, CallQuery, CallRecord, CallStore, Delivery, DeliveryQuery,
    Due, EventStore, LiveCall, PermissionRow, PermissionStore, Recorded, SqliteStore, StoreError,
    TaskRow, TaskStore,
};
use crate::accounts::{Account, AuditEntry};
use crate::events::OutboxRow;
use crate::ids::WaCallId;

/// Commands queued for the store thread at most; past this, senders wait.
pub const QUEUE_CAPACITY: usize = 256;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// Work on the outbox, run on the store thread; it sends its own reply.
type OutboxWork = Box<dyn FnOnce(&mut dyn EventStore) + Send>;

enum Command {
    MarkLive(Box<LiveCall>, Vec<OutboxRow>, Reply<()>),
    /// No reply channel: [`StoreHandle::try_finish`], whose failures the thread logs.
    Finish(Box<CallRecord>, Vec<OutboxRow>, Option<Reply<Recorded>>),
    /// Anything of the outbox ([`EventStore`]): the closure replies itself.
    Events(OutboxWork),
    LiveCalls(Reply<Vec<LiveCall>>),
    LiveCallsOf(String, Reply<Vec<LiveCall>>),
    CheckWritable(Reply<()>),
    ClearLive(WaCallId, Reply<()>),
    List(Box<CallQuery>, Reply<CallPage>),
    Accounts(Reply<Vec<Account>>),
    CreateAccount(Box<Account>, Reply<()>),
    ReplaceAccount(Box<(Account, AuditEntry)>, Reply<u64>),
    AppendAudit(String, Box<AuditEntry>, Reply<()>),
    AuditLog(String, Option<i64>, u32, Reply<Vec<AuditEntry>>),
    /// No reply channel: [`StoreHandle::try_put_permission`], whose failures the thread logs.
    PutPermission(Box<PermissionRow>, Option<Reply<()>>),
    Permission(String, String, Reply<Option<PermissionRow>>),
    /// No reply: [`StoreHandle::try_task`], whose failures the thread logs.
    Task(TaskChange),
    Tasks(Option<String>, Reply<Vec<TaskRow>>),
}

/// A change to the open call-back tasks ([`TaskStore`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskChange {
    /// Keep this task.
    Put(Box<TaskRow>),
    /// Forget the task of this id.
    Forget(String),
}

/// A cheap, cloneable handle to the store thread.
#[derive(Clone, Debug)]
pub struct StoreHandle {
    tx: mpsc::Sender<Command>,
    /// The reader thread's queue; `None`: reads share the writer's.
    reads: Option<mpsc::Sender<Command>>,
}

/// The store thread; it ends once every [`StoreHandle`] is dropped and the queue is written.
#[derive(Debug)]
pub struct StoreDriver {
    thread: JoinHandle<()>,
    done: oneshot::Receiver<()>,
    reader: Option<JoinHandle<()>>,
}

/// Why [`StoreHandle::try_put_permission`] did not queue a row; each gives the row back.
#[derive(Debug, thiserror::Error)]
pub enum TryPutError {
    /// The queue is full (the database is behind).
    #[error("call store queue is full; a call permission was not queued")]
    Full(Box<PermissionRow>),
    /// The store thread has stopped.
    #[error("call store has stopped; a call permission was not queued")]
    Stopped(Box<PermissionRow>),
}

/// Why [`StoreHandle::try_finish`] did not queue a record; each gives the record back.
#[derive(Debug, thiserror::Error)]
pub enum TryFinishError {
    /// The queue is full (the database is behind).
    #[error("call store queue is full; record of {} not queued", .0.call_id)]
    Full(Box<CallRecord>),
    /// The store thread has stopped.
    #[error("call store has stopped; record of {} not queued", .0.call_id)]
    Stopped(Box<CallRecord>),
}

impl StoreHandle {
    /// Opens (or creates) the SQLite database at `path` on a new store thread, with a second
    /// connection for reads (WAL: readers never wait for the writer).
    pub async fn open(path: impl Into<PathBuf>) -> Result<(StoreHandle, StoreDriver), StoreError> {
        let path = path.into();
        let reader_path = path.clone();
        Self::spawn_with_reader(
            move || SqliteStore::open(&path),
            move || SqliteStore::open(&reader_path),
        )
        .await
    }

    /// An empty SQLite database in memory, on a new store thread; gone when the thread ends.
    pub async fn open_in_memory() -> Result<(StoreHandle, StoreDriver), StoreError> {
        Self::spawn(SqliteStore::open_in_memory).await
    }

    /// Starts a store thread that runs `open` and then serves the store it returns: any
    /// [`CallStore`], SQLite or another database. Returns `open`'s error if it fails.
    pub async fn spawn<S, F>(open: F) -> Result<(StoreHandle, StoreDriver), StoreError>
    where
        S: CallStore + AccountStore + EventStore + PermissionStore + TaskStore + 'static,
        F: FnOnce() -> Result<S, StoreError> + Send + 'static,
    {
        let (tx, thread, done) = Self::thread("call-store", open).await?;
        let driver = StoreDriver {
            thread,
            done,
            reader: None,
        };
        Ok((StoreHandle { tx, reads: None }, driver))
    }

    /// Like [`StoreHandle::spawn`], with a second thread that serves [`StoreHandle::list`] on
    /// the store `open_reader` opens (a second connection to the same database), once `open`
    /// has brought the schema up to date.
    pub async fn spawn_with_reader<S, F, R, G>(
        open: F,
        open_reader: G,
    ) -> Result<(StoreHandle, StoreDriver), StoreError>
    where
        S: CallStore + AccountStore + EventStore + PermissionStore + TaskStore + 'static,
        F: FnOnce() -> Result<S, StoreError> + Send + 'static,
        R: CallStore + AccountStore + EventStore + PermissionStore + TaskStore + 'static,
        G: FnOnce() -> Result<R, StoreError> + Send + 'static,
    {
        let (tx, thread, done) = Self::thread("call-store", open).await?;
        // Should the reader fail to open, the writer's thread ends with its handle.
        let (reads, reader, _) = Self::thread("call-store-reads", open_reader).await?;
        let driver = StoreDriver {
            thread,
            done,
            reader: Some(reader),
        };
        Ok((
            StoreHandle {
                tx,
                reads: Some(reads),
            },
            driver,
        ))
    }

    /// A thread that opens a store and serves its queue; its queue once `open` succeeded.
    async fn thread<S, F>(
        name: &str,
        open: F,
    ) -> Result<(mpsc::Sender<Command>, JoinHandle<()>, oneshot::Receiver<()>), StoreError>
    where
        S: CallStore + AccountStore + EventStore + PermissionStore + TaskStore + 'static,
        F: FnOnce() -> Result<S, StoreError> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let (opened_tx, opened_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let store = match open() {
                    Ok(store) => store,
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                let _ = opened_tx.send(Ok(()));
                run(store, rx);
                let _ = done_tx.send(());
            })
            .map_err(StoreError::Spawn)?;
        match opened_rx.await {
            Ok(Ok(())) => Ok((tx, thread, done_rx)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(StoreError::Panicked),
        }
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, StoreError> {
        Self::call_on(&self.tx, make).await
    }

    async fn call_on<T>(
        queue: &mpsc::Sender<Command>,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        queue
            .send(make(tx))
            .await
            .map_err(|_| StoreError::Stopped)?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// See [`CallStore::mark_live`].
    pub async fn mark_live(&self, call: LiveCall) -> Result<(), StoreError> {
        self.mark_live_with(call, vec![]).await
    }

    /// See [`CallStore::mark_live_with`].
    pub async fn mark_live_with(
        &self,
        call: LiveCall,
        events: Vec<OutboxRow>,
    ) -> Result<(), StoreError> {
        self.call(|r| Command::MarkLive(Box::new(call), events, r))
            .await
    }

    /// See [`CallStore::finish`]. Waits for room in the queue, then for the write.
    pub async fn finish(&self, record: CallRecord) -> Result<Recorded, StoreError> {
        self.finish_with(record, vec![]).await
    }

    /// See [`CallStore::finish_with`].
    pub async fn finish_with(
        &self,
        record: CallRecord,
        events: Vec<OutboxRow>,
    ) -> Result<Recorded, StoreError> {
        self.call(|r| Command::Finish(Box::new(record), events, Some(r)))
            .await
    }

    /// Runs `f` on the store thread with the outbox, and answers what it returns.
    async fn events<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn EventStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.call(|reply| {
            Command::Events(Box::new(move |store| {
                let _ = reply.send(f(store));
            }))
        })
        .await
    }

    /// See [`EventStore::append_events`].
    pub async fn append_events(&self, rows: Vec<OutboxRow>) -> Result<(), StoreError> {
        self.events(move |s| s.append_events(&rows)).await
    }

    /// See [`EventStore::claim_due`].
    pub async fn claim_due(
        &self,
        node: String,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<Due>, StoreError> {
        self.events(move |s| s.claim_due(&node, now, lease_until, limit))
            .await
    }

    /// See [`EventStore::outbox_state`].
    pub async fn outbox_state(&self, node: String) -> Result<(u64, Option<i64>), StoreError> {
        self.events(move |s| s.outbox_state(&node)).await
    }

    /// See [`EventStore::attempted`].
    pub async fn attempted(&self, done: Vec<Attempted>) -> Result<(), StoreError> {
        self.events(move |s| s.attempted(&done)).await
    }

    /// See [`EventStore::pause_endpoint`].
    pub async fn pause_endpoint(&self, endpoint: String) -> Result<u64, StoreError> {
        self.events(move |s| s.pause_endpoint(&endpoint)).await
    }

    /// See [`EventStore::resume_endpoint`].
    pub async fn resume_endpoint(&self, endpoint: String, now: i64) -> Result<u64, StoreError> {
        self.events(move |s| s.resume_endpoint(&endpoint, now))
            .await
    }

    /// See [`EventStore::forget_endpoint`].
    pub async fn forget_endpoint(&self, endpoint: String) -> Result<u64, StoreError> {
        self.events(move |s| s.forget_endpoint(&endpoint)).await
    }

    /// See [`EventStore::redeliver`].
    pub async fn redeliver(
        &self,
        endpoint: String,
        msg_id: String,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.events(move |s| s.redeliver(&endpoint, &msg_id, now))
            .await
    }

    /// See [`EventStore::deliveries`].
    pub async fn deliveries(&self, q: DeliveryQuery) -> Result<Vec<Delivery>, StoreError> {
        self.events(move |s| s.deliveries(&q)).await
    }

    /// See [`EventStore::adopt_events`].
    pub async fn adopt_events(&self, from: String, to: String) -> Result<u64, StoreError> {
        self.events(move |s| s.adopt_events(&from, &to)).await
    }

    /// See [`EventStore::purge_events`].
    pub async fn purge_events(&self, before: i64) -> Result<u64, StoreError> {
        self.events(move |s| s.purge_events(before)).await
    }

    /// Queues `record` for [`CallStore::finish`] without waiting, for code that cannot await.
    /// The write's own failure is logged by the store thread, not returned.
    pub fn try_finish(&self, record: CallRecord) -> Result<(), TryFinishError> {
        self.tx
            .try_send(Command::Finish(Box::new(record), vec![], None))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(Command::Finish(r, ..)) => TryFinishError::Full(r),
                mpsc::error::TrySendError::Closed(Command::Finish(r, ..)) => {
                    TryFinishError::Stopped(r)
                }
                // try_send hands back the command it was given, a Finish.
                _ => unreachable!("try_send returned another command"),
            })
    }

    /// See [`PermissionStore::put_permission`]. Waits for room in the queue, then for the
    /// write.
    pub async fn put_permission(&self, row: PermissionRow) -> Result<(), StoreError> {
        self.call(|r| Command::PutPermission(Box::new(row), Some(r)))
            .await
    }

    /// Queues `row` for [`PermissionStore::put_permission`] without waiting, for the call
    /// actor, which must not stall its calls on the database: a full queue hands the row back
    /// for the caller to count and log; the write's own failure is logged by the store thread.
    pub fn try_put_permission(&self, row: PermissionRow) -> Result<(), TryPutError> {
        self.tx
            .try_send(Command::PutPermission(Box::new(row), None))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(Command::PutPermission(r, _)) => {
                    TryPutError::Full(r)
                }
                mpsc::error::TrySendError::Closed(Command::PutPermission(r, _)) => {
                    TryPutError::Stopped(r)
                }
                // try_send hands back the command it was given, a PutPermission.
                _ => unreachable!("try_send returned another command"),
            })
    }

    /// See [`PermissionStore::permission`]. On the writer's connection: a row written just
    /// before is read back.
    pub async fn permission(
        &self,
        business_number: String,
        user: String,
    ) -> Result<Option<PermissionRow>, StoreError> {
        self.call(|r| Command::Permission(business_number, user, r))
            .await
    }

    /// Queues a change to the open call-back tasks without waiting, for the call actor (see
    /// [`StoreHandle::try_put_permission`]); false when the queue is full or the thread
    /// stopped (the change is lost: the caller logs it).
    pub fn try_task(&self, change: TaskChange) -> bool {
        self.tx.try_send(Command::Task(change)).is_ok()
    }

    /// See [`TaskStore::tasks`]. On the writer's connection: a change just queued is seen.
    pub async fn tasks(&self, account: Option<String>) -> Result<Vec<TaskRow>, StoreError> {
        self.call(|r| Command::Tasks(account, r)).await
    }

    /// See [`CallStore::live_calls`].
    pub async fn live_calls(&self) -> Result<Vec<LiveCall>, StoreError> {
        self.call(Command::LiveCalls).await
    }

    /// See [`CallStore::live_calls_of`].
    pub async fn live_calls_of(&self, node: &str) -> Result<Vec<LiveCall>, StoreError> {
        let node = node.to_owned();
        self.call(|r| Command::LiveCallsOf(node, r)).await
    }

    /// See [`CallStore::check_writable`].
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        self.call(Command::CheckWritable).await
    }

    /// See [`CallStore::clear_live`].
    pub async fn clear_live(&self, call_id: WaCallId) -> Result<(), StoreError> {
        self.call(|r| Command::ClearLive(call_id, r)).await
    }

    /// See [`AccountStore::accounts`].
    pub async fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.call(Command::Accounts).await
    }

    /// See [`AccountStore::create_account`].
    pub async fn create_account(&self, account: Account) -> Result<(), StoreError> {
        self.call(|r| Command::CreateAccount(Box::new(account), r))
            .await
    }

    /// See [`AccountStore::replace_account`].
    pub async fn replace_account(
        &self,
        account: Account,
        audit: AuditEntry,
    ) -> Result<u64, StoreError> {
        self.call(|r| Command::ReplaceAccount(Box::new((account, audit)), r))
            .await
    }

    /// See [`AccountStore::append_audit`].
    pub async fn append_audit(&self, slug: String, entry: AuditEntry) -> Result<(), StoreError> {
        self.call(|r| Command::AppendAudit(slug, Box::new(entry), r))
            .await
    }

    /// See [`AccountStore::audit_log`].
    pub async fn audit_log(
        &self,
        slug: String,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.call(|r| Command::AuditLog(slug, before, limit, r))
            .await
    }

    /// See [`CallStore::list`]. On the reader's connection when the store has one.
    pub async fn list(&self, query: CallQuery) -> Result<CallPage, StoreError> {
        let queue = self.reads.as_ref().unwrap_or(&self.tx);
        Self::call_on(queue, |r| Command::List(Box::new(query), r)).await
    }
}

impl StoreDriver {
    /// Waits until the thread has written everything queued and ended (after every handle is
    /// dropped). [`StoreError::Panicked`] if it died instead.
    pub async fn join(self) -> Result<(), StoreError> {
        let finished = self.done.await.is_ok();
        // The thread has sent `done` (or unwound past it): joining is at most a moment, but
        // it is a blocking call, so it goes to the blocking pool. The reader's queue closed
        // with the same handles; it ends after the read in hand, if any.
        let (thread, reader) = (self.thread, self.reader);
        let joined = tokio::task::spawn_blocking(move || {
            let reader_ok = reader.is_none_or(|r| r.join().is_ok());
            thread.join().is_ok() && reader_ok
        })
        .await;
        match (finished, joined) {
            (true, Ok(true)) => Ok(()),
            _ => Err(StoreError::Panicked),
        }
    }
}

/// The store thread: serves commands until every sender is gone and the queue is empty.
fn run<S: CallStore + AccountStore + EventStore + PermissionStore + TaskStore>(
    mut store: S,
    mut rx: mpsc::Receiver<Command>,
) {
    while let Some(cmd) = rx.blocking_recv() {
        // A reply nobody awaits any more is dropped; the work was done all the same.
        match cmd {
            Command::MarkLive(call, events, reply) => {
                let _ = reply.send(store.mark_live_with(&call, &events));
            }
            Command::Finish(record, events, Some(reply)) => {
                let _ = reply.send(store.finish_with(&record, &events));
            }
            Command::Events(f) => f(&mut store),
            Command::Finish(record, events, None) => {
                if let Err(error) = store.finish_with(&record, &events) {
                    tracing::error!(call_id = %record.call_id, %error, "call record not written");
                }
            }
            Command::LiveCalls(reply) => {
                let _ = reply.send(store.live_calls());
            }
            Command::LiveCallsOf(node, reply) => {
                let _ = reply.send(store.live_calls_of(&node));
            }
            Command::CheckWritable(reply) => {
                let _ = reply.send(store.check_writable());
            }
            Command::ClearLive(call_id, reply) => {
                let _ = reply.send(store.clear_live(&call_id));
            }
            Command::List(query, reply) => {
                let _ = reply.send(store.list(&query));
            }
            Command::Accounts(reply) => {
                let _ = reply.send(store.accounts());
            }
            Command::CreateAccount(account, reply) => {
                let _ = reply.send(store.create_account(&account));
            }
            Command::ReplaceAccount(change, reply) => {
                let _ = reply.send(store.replace_account(&change.0, &change.1));
            }
            Command::AppendAudit(slug, entry, reply) => {
                let _ = reply.send(store.append_audit(&slug, &entry));
            }
            Command::AuditLog(slug, before, limit, reply) => {
                let _ = reply.send(store.audit_log(&slug, before, limit));
            }
            Command::PutPermission(row, Some(reply)) => {
                let _ = reply.send(store.put_permission(&row));
            }
            Command::PutPermission(row, None) => {
                if let Err(error) = store.put_permission(&row) {
                    tracing::error!(%error, "call permission not written");
                }
            }
            Command::Permission(business_number, user, reply) => {
                let _ = reply.send(store.permission(&business_number, &user));
            }
            Command::Task(change) => {
                let done = match &change {
                    TaskChange::Put(row) => store.put_task(row),
                    TaskChange::Forget(id) => store.forget_task(id),
                };
                if let Err(error) = done {
                    tracing::error!(%error, ?change, "call-back task change not written");
                }
            }
            Command::Tasks(account, reply) => {
                let _ = reply.send(store.tasks(account.as_deref()));
            }
        }
    }
    tracing::debug!("call store stopped");
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc as std_mpsc;
    use std::time::Duration;

    use super::*;
    use crate::store::sqlite::tests::record;
    use crate::store::Outcome;

    const WAIT: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn every_command_round_trips() {
        let (store, driver) = StoreHandle::open_in_memory().await.unwrap();
        let live = LiveCall {
            call_id: WaCallId("wacid.1".into()),
            business_number: "1".into(),
            started_at: 5,
            known: None,
        };
        store.mark_live(live.clone()).await.unwrap();
        store
            .mark_live(LiveCall {
                call_id: WaCallId("wacid.2".into()),
                ..live.clone()
            })
            .await
            .unwrap();
        assert_eq!(store.live_calls().await.unwrap().len(), 2);
        store.clear_live(WaCallId("wacid.2".into())).await.unwrap();
        let r = record("1", 5, Outcome::Answered, "q", &["a"]);
        assert_eq!(store.finish(r.clone()).await.unwrap(), Recorded::New);
        assert_eq!(store.finish(r.clone()).await.unwrap(), Recorded::Duplicate);
        assert_eq!(store.live_calls().await.unwrap(), vec![]);
        assert_eq!(
            store.list(CallQuery::default()).await.unwrap().calls,
            vec![r]
        );
        let e = store
            .list(CallQuery {
                limit: Some(0),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(
            matches!(e, StoreError::InvalidQuery { field: "limit", .. }),
            "{e}"
        );
        drop(store);
        driver.join().await.unwrap();
    }

    #[tokio::test]
    async fn dropping_the_handles_writes_what_was_queued() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("calls.db");
        let (store, driver) = StoreHandle::open(&path).await.unwrap();
        let other = store.clone();
        for i in 0..100 {
            other
                .try_finish(record(&i.to_string(), i, Outcome::Abandoned, "q", &[]))
                .unwrap();
        }
        drop(other);
        drop(store);
        driver.join().await.unwrap();
        let mut reopened = SqliteStore::open(&path).unwrap();
        let page = reopened
            .list(&CallQuery {
                limit: Some(500),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(page.calls.len(), 100);
    }

    #[tokio::test]
    async fn an_open_failure_is_returned() {
        let e = StoreHandle::spawn(|| {
            SqliteStore::open(std::path::Path::new("/nonexistent-dir/x/calls.db"))
        })
        .await
        .unwrap_err();
        assert!(matches!(e, StoreError::Open { .. }), "{e}");
    }

    /// A store whose `finish` waits for the test's go-ahead, and whose `list` panics.
    struct Gate {
        entered: std_mpsc::Sender<()>,
        go: std_mpsc::Receiver<()>,
        finished: usize,
    }

    impl CallStore for Gate {
        fn mark_live_with(&mut self, _: &LiveCall, _: &[OutboxRow]) -> Result<(), StoreError> {
            Ok(())
        }
        fn finish_with(&mut self, _: &CallRecord, _: &[OutboxRow]) -> Result<Recorded, StoreError> {
            let _ = self.entered.send(());
            self.go
                .recv_timeout(WAIT)
                .expect("the test lets finish go on");
            self.finished += 1;
            Ok(Recorded::New)
        }
        fn live_calls(&mut self) -> Result<Vec<LiveCall>, StoreError> {
            Ok(vec![])
        }
        fn clear_live(&mut self, _: &WaCallId) -> Result<(), StoreError> {
            Ok(())
        }
        fn list(&mut self, _: &CallQuery) -> Result<CallPage, StoreError> {
            panic!("list panics (test)");
        }
        fn check_writable(&mut self) -> Result<(), StoreError> {
            Ok(())
        }
    }

    /// A store that only lists, and says how many lists it served.
    struct Lister(usize);

    /// The outbox of a test store that has none.
    macro_rules! no_outbox {
        ($t:ty) => {
            impl EventStore for $t {
                fn append_events(&mut self, _: &[OutboxRow]) -> Result<(), StoreError> {
                    unreachable!("no outbox here")
                }
                fn claim_due(
                    &mut self,
                    _: &str,
                    _: i64,
                    _: i64,
                    _: u32,
                ) -> Result<Vec<Due>, StoreError> {
                    unreachable!("no outbox here")
                }
                fn outbox_state(&mut self, _: &str) -> Result<(u64, Option<i64>), StoreError> {
                    unreachable!("no outbox here")
                }
                fn attempted(&mut self, _: &[Attempted]) -> Result<(), StoreError> {
                    unreachable!("no outbox here")
                }
                fn pause_endpoint(&mut self, _: &str) -> Result<u64, StoreError> {
                    unreachable!("no outbox here")
                }
                fn resume_endpoint(&mut self, _: &str, _: i64) -> Result<u64, StoreError> {
                    unreachable!("no outbox here")
                }
                fn forget_endpoint(&mut self, _: &str) -> Result<u64, StoreError> {
                    unreachable!("no outbox here")
                }
                fn redeliver(&mut self, _: &str, _: &str, _: i64) -> Result<bool, StoreError> {
                    unreachable!("no outbox here")
                }
                fn deliveries(&mut self, _: &DeliveryQuery) -> Result<Vec<Delivery>, StoreError> {
                    unreachable!("no outbox here")
                }
                fn adopt_events(&mut self, _: &str, _: &str) -> Result<u64, StoreError> {
                    unreachable!("no outbox here")
                }
                fn purge_events(&mut self, _: i64) -> Result<u64, StoreError> {
                    unreachable!("no outbox here")
                }
            }
            impl PermissionStore for $t {
                fn put_permission(&mut self, _: &PermissionRow) -> Result<(), StoreError> {
                    unreachable!("no permissions here")
                }
                fn permission(
                    &mut self,
                    _: &str,
                    _: &str,
                ) -> Result<Option<PermissionRow>, StoreError> {
                    unreachable!("no permissions here")
                }
            }
            impl TaskStore for $t {
                fn put_task(&mut self, _: &TaskRow) -> Result<(), StoreError> {
                    unreachable!("no tasks here")
                }
                fn forget_task(&mut self, _: &str) -> Result<(), StoreError> {
                    unreachable!("no tasks here")
                }
                fn tasks(&mut self, _: Option<&str>) -> Result<Vec<TaskRow>, StoreError> {
                    unreachable!("no tasks here")
                }
            }
        };
    }
    no_outbox!(Gate);
    no_outbox!(Lister);

    impl AccountStore for Gate {
        fn accounts(&mut self) -> Result<Vec<Account>, StoreError> {
            Ok(vec![])
        }
        fn create_account(&mut self, _: &Account) -> Result<(), StoreError> {
            Ok(())
        }
        fn replace_account(&mut self, _: &Account, _: &AuditEntry) -> Result<u64, StoreError> {
            Ok(2)
        }
        fn append_audit(&mut self, _: &str, _: &AuditEntry) -> Result<(), StoreError> {
            Ok(())
        }
        fn audit_log(
            &mut self,
            _: &str,
            _: Option<i64>,
            _: u32,
        ) -> Result<Vec<AuditEntry>, StoreError> {
            Ok(vec![])
        }
    }

    impl AccountStore for Lister {
        fn accounts(&mut self) -> Result<Vec<Account>, StoreError> {
            unreachable!("the reader only lists")
        }
        fn create_account(&mut self, _: &Account) -> Result<(), StoreError> {
            unreachable!("the reader only lists")
        }
        fn replace_account(&mut self, _: &Account, _: &AuditEntry) -> Result<u64, StoreError> {
            unreachable!("the reader only lists")
        }
        fn append_audit(&mut self, _: &str, _: &AuditEntry) -> Result<(), StoreError> {
            unreachable!("the reader only lists")
        }
        fn audit_log(
            &mut self,
            _: &str,
            _: Option<i64>,
            _: u32,
        ) -> Result<Vec<AuditEntry>, StoreError> {
            unreachable!("the reader only lists")
        }
    }

    impl CallStore for Lister {
        fn mark_live_with(&mut self, _: &LiveCall, _: &[OutboxRow]) -> Result<(), StoreError> {
            unreachable!("the reader only lists")
        }
        fn finish_with(&mut self, _: &CallRecord, _: &[OutboxRow]) -> Result<Recorded, StoreError> {
            unreachable!("the reader only lists")
        }
        fn live_calls(&mut self) -> Result<Vec<LiveCall>, StoreError> {
            unreachable!("the reader only lists")
        }
        fn clear_live(&mut self, _: &WaCallId) -> Result<(), StoreError> {
            unreachable!("the reader only lists")
        }
        fn list(&mut self, _: &CallQuery) -> Result<CallPage, StoreError> {
            self.0 += 1;
            Ok(CallPage {
                calls: vec![record(&self.0.to_string(), 1, Outcome::Answered, "q", &[])],
                next: None,
            })
        }
        fn check_writable(&mut self) -> Result<(), StoreError> {
            unreachable!("the reader only lists")
        }
    }

    #[tokio::test]
    async fn reads_are_served_while_the_writer_is_busy() {
        let (entered_tx, entered) = std_mpsc::channel();
        let (go, go_rx) = std_mpsc::channel();
        let (store, driver) = StoreHandle::spawn_with_reader(
            move || {
                Ok(Gate {
                    entered: entered_tx,
                    go: go_rx,
                    finished: 0,
                })
            },
            || Ok(Lister(0)),
        )
        .await
        .unwrap();
        // The writer takes a record and blocks in it, with more queued behind.
        let r = record("1", 1, Outcome::Answered, "q", &[]);
        store.try_finish(r.clone()).unwrap();
        entered.recv_timeout(WAIT).unwrap();
        store.try_finish(r).unwrap();
        // Lists are answered meanwhile, by the reader (the writer's own `list` panics).
        for n in 1..=3 {
            let page = tokio::time::timeout(WAIT, store.list(CallQuery::default()))
                .await
                .expect("a list is not held up by the writer")
                .unwrap();
            assert_eq!(page.calls[0].call_id.0, format!("wacid.{n}"));
        }
        go.send(()).unwrap();
        go.send(()).unwrap();
        drop(store);
        driver.join().await.unwrap();
    }

    #[tokio::test]
    async fn a_file_store_lists_what_it_wrote_through_its_reader() {
        let dir = tempfile::tempdir().unwrap();
        let (store, driver) = StoreHandle::open(dir.path().join("calls.db"))
            .await
            .unwrap();
        assert!(
            store.reads.is_some(),
            "a file store reads on its own connection"
        );
        store
            .finish(record("1", 1, Outcome::Answered, "q", &[]))
            .await
            .unwrap();
        let page = store.list(CallQuery::default()).await.unwrap();
        assert_eq!(page.calls.len(), 1);
        drop(store);
        driver.join().await.unwrap();
    }

    #[tokio::test]
    async fn a_full_queue_pushes_back_and_try_finish_hands_the_record_back() {
        let (entered_tx, entered) = std_mpsc::channel();
        let (go, go_rx) = std_mpsc::channel();
        let (store, driver) = StoreHandle::spawn(move || {
            Ok(Gate {
                entered: entered_tx,
                go: go_rx,
                finished: 0,
            })
        })
        .await
        .unwrap();
        let r = record("1", 1, Outcome::Answered, "q", &[]);
        // The thread takes the first and blocks in it; then the queue fills.
        store.try_finish(r.clone()).unwrap();
        entered.recv_timeout(WAIT).unwrap();
        for _ in 0..QUEUE_CAPACITY {
            store.try_finish(r.clone()).unwrap();
        }
        match store.try_finish(r.clone()) {
            Err(TryFinishError::Full(back)) => assert_eq!(*back, r),
            other => panic!("expected Full, got {other:?}"),
        }
        // An awaited finish waits for room rather than failing.
        let waiting = tokio::spawn({
            let store = store.clone();
            let r = r.clone();
            async move { store.finish(r).await }
        });
        for _ in 0..QUEUE_CAPACITY + 2 {
            go.send(()).unwrap();
        }
        assert_eq!(
            tokio::time::timeout(WAIT, waiting)
                .await
                .unwrap()
                .unwrap()
                .unwrap(),
            Recorded::New
        );
        // A panic in the store stops the thread; handles then say so.
        assert!(matches!(
            store.list(CallQuery::default()).await,
            Err(StoreError::Stopped)
        ));
        assert!(matches!(store.live_calls().await, Err(StoreError::Stopped)));
        assert!(matches!(
            store.try_finish(r),
            Err(TryFinishError::Stopped(_))
        ));
        drop(store);
        assert!(matches!(driver.join().await, Err(StoreError::Panicked)));
    }
}
