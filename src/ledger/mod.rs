//! The ledger: the durable truth about every scan and redemption.
//!
//! One thread owns the SQLite connection (rusqlite's `Connection` is not `Sync`, and one
//! writer means no lock contention); async code talks to it through [`Ledger`], which ships
//! closures over a channel and awaits their results; the same thread checkpoints the WAL
//! after answering (`checkpoint`). The SQL is in one file per aggregate:
//! [`scans`], [`tries`], [`voids`], [`catalog`], [`queries`], [`review`], [`claims`] and
//! [`events`], over the helpers of `sql`.

pub mod catalog;
mod checkpoint;
pub mod claims;
pub mod events;
pub mod holds;
pub mod lock;
pub mod note_file;
pub mod queries;
pub mod reader;
pub mod review;
pub mod scans;
pub mod schema;
mod sql;
mod sync;
pub mod tries;
pub mod voids;

use checkpoint::Checkpoints;
use rusqlite::Connection;
use schema::{OpenError, open_ro, open_rw};
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sync::{Committed, Durability, Fsync};
use tokio::sync::oneshot;

/// An online, consistent copy of the ledger (SQLite's backup API) while the daemon writes.
/// Written to `dest.partial` first and renamed, so `dest` is never half a database.
pub fn backup(src: &Path, dest: &Path) -> Result<u64, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let from = open_ro(src).map_err(|e| e.to_string())?;
    let partial = {
        let mut p = dest.as_os_str().to_owned();
        p.push(".partial");
        std::path::PathBuf::from(p)
    };
    let _ = std::fs::remove_file(&partial);
    // Created private: the ledger holds live coupon codes.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .map_err(|e| format!("{}: {e}", partial.display()))?;
    let mut to = Connection::open(&partial).map_err(|e| e.to_string())?;
    {
        let b = rusqlite::backup::Backup::new(&from, &mut to).map_err(|e| e.to_string())?;
        b.run_to_completion(256, std::time::Duration::from_millis(5), None)
            .map_err(|e| e.to_string())?;
    }
    schema::quick_check(&to).map_err(|e| format!("the copy fails quick_check: {e}"))?;
    let rows: u64 = to
        .query_row("SELECT count(*) FROM redemptions", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    drop(to);
    std::fs::rename(&partial, dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    Ok(rows)
}

/// A ledger operation, run on the ledger thread. `run` returns whether the operation
/// succeeded, and how to answer its caller once the commit it is part of is known: `None`
/// when that commit succeeded, or why it failed.
struct Job {
    run: Box<dyn FnOnce(&mut Connection) -> Ran + Send>,
    /// Somebody awaits this operation (it is not a [`Ledger::submit`]).
    awaited: bool,
    /// When its commit must be on disk (see [`sync`]).
    fsync: Fsync,
}
type Reply = Box<dyn FnOnce(Option<&str>) + Send>;
/// Whether a job's operation succeeded, and how to answer its caller.
type Ran = (bool, Reply);
type Answer<T> = oneshot::Receiver<Result<T, LedgerError>>;

/// How long [`Ledger::submit_retrying`] keeps trying a write.
pub const RETRY_FOR: Duration = Duration::from_secs(600);

/// At most this many operations share one commit, so that no caller waits behind an
/// unbounded batch.
const MAX_BATCH: usize = 256;

/// How long writes nobody awaits (audit records) wait for an awaited operation to share
/// its commit, before they are committed on their own. Saves an fsync per answer at a busy
/// till, and keeps that fsync from delaying the next scan.
const SUBMIT_WAIT: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The operation succeeded, but the commit it shared with others did not.
    #[error("ledger: the commit failed: {0}")]
    Commit(String),
    #[error("ledger: the ledger thread has stopped")]
    Stopped,
}

/// What the ledger thread is sent: an operation, or the word to stop.
enum Msg {
    Job(Job),
    /// Commit what is queued, fsync, close the connection, then answer.
    Close(oneshot::Sender<()>),
}

/// A handle to the ledger thread; cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    jobs: mpsc::Sender<Msg>,
    /// Why the last write that tried to reach the disk failed (a full disk, an I/O error),
    /// until a later write succeeds: what `/healthz` and the watchdog report.
    trouble: Arc<Mutex<Option<String>>>,
}

impl Ledger {
    /// Opens the ledger (schema migrated) and starts its thread.
    pub fn open(path: &Path) -> Result<Ledger, OpenError> {
        let conn = open_rw(path)?;
        Ok(Self::start(conn))
    }

    pub fn start(conn: Connection) -> Ledger {
        Self::start_with(conn, SUBMIT_WAIT)
    }

    /// [`Ledger::start`], with how long submitted writes wait for company.
    fn start_with(conn: Connection, submit_wait: Duration) -> Ledger {
        Self::start_waiting(conn, submit_wait, sync::SHARE_WAIT)
    }

    /// [`Ledger::start_with`], with how long a new row waits to share an fsync.
    fn start_waiting(conn: Connection, submit_wait: Duration, share_wait: Duration) -> Ledger {
        Self::start_syncing(conn, submit_wait, share_wait, std::fs::File::sync_data)
    }

    /// [`Ledger::start_waiting`], syncing the WAL with `sync_data` (a failing one in tests).
    fn start_syncing(
        mut conn: Connection,
        submit_wait: Duration,
        share_wait: Duration,
        sync_data: sync::SyncFn,
    ) -> Ledger {
        let (tx, rx) = mpsc::channel::<Msg>();
        let trouble: Arc<Mutex<Option<String>>> = Arc::default();
        let failure = trouble.clone();
        std::thread::Builder::new()
            .name("ledger".into())
            .spawn(move || {
                let mut durability = Durability::with_sync(share_wait, sync_data);
                checkpoint::watch(&conn);
                let mut checkpoints = Checkpoints::default();
                // Who asked the thread to stop, once somebody has.
                let mut closing: Option<oneshot::Sender<()>> = None;
                // Ends when told to close, when every handle is dropped, or after a failed
                // fsync: then nothing can be acknowledged any more, and the daemon stops and
                // is restarted with a fresh view of the disk.
                while closing.is_none() && durability.failed().is_none() {
                    let first = match durability.wait_left() {
                        None => match rx.recv() {
                            Ok(msg) => msg,
                            Err(_) => break,
                        },
                        Some(left) => match rx.recv_timeout(left) {
                            Ok(msg) => msg,
                            Err(RecvTimeoutError::Timeout) => {
                                durability.sync_if_due(&conn);
                                continue;
                            }
                            Err(RecvTimeoutError::Disconnected) => break,
                        },
                    };
                    let first = match first {
                        Msg::Job(job) => job,
                        Msg::Close(tx) => {
                            closing = Some(tx);
                            break;
                        }
                    };
                    let mut batch = vec![first];
                    take_queued(&rx, &mut batch, &mut closing);
                    while closing.is_none()
                        && !batch.iter().any(|j| j.awaited)
                        && batch.len() < MAX_BATCH
                    {
                        match rx.recv_timeout(submit_wait) {
                            Ok(Msg::Job(job)) => {
                                batch.push(job);
                                take_queued(&rx, &mut batch, &mut closing);
                            }
                            Ok(Msg::Close(tx)) => closing = Some(tx),
                            // Time is up, or every handle is gone: commit what there is.
                            Err(_) => break,
                        }
                    }
                    run_synced(&mut conn, &mut durability, batch);
                    checkpoints.after_commit(&conn);
                    // Even while work keeps coming, a deferred fsync waits no longer.
                    durability.sync_if_due(&conn);
                }
                let _ = durability.sync(&conn);
                if let (Some(why), Ok(mut t)) = (durability.failed(), failure.lock()) {
                    *t = Some(why.to_string());
                }
                drop(conn);
                if let Some(tx) = closing {
                    let _ = tx.send(());
                }
            })
            .expect("spawning the ledger thread");
        Ledger { jobs: tx, trouble }
    }

    /// Runs `f` on the ledger thread; answers once its writes are committed.
    pub async fn call<T, F>(&self, f: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.run(f, Fsync::BeforeAnswer).await
    }

    /// [`Ledger::call`] for a new code's row: answers once its writes are committed, which
    /// killing the process cannot undo, and tells [`Durable`] once they are on disk. That
    /// fsync is the next synced commit's, normally the consume intent of the row's own try,
    /// or comes within [`sync::SHARE_WAIT`]: online, the two share one.
    pub async fn call_sync_with_next<T, F>(&self, f: F) -> Result<(T, Durable), LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let result = self.run(f, Fsync::WithNext(Some(tx))).await?;
        Ok((result, Durable(rx)))
    }

    /// [`Ledger::call`] for a try's result: answers once its writes are committed, which
    /// killing the process cannot undo, but before they are fsynced. The fsync follows
    /// with the next commit or within [`sync::SYNC_WAIT`]; a power cut before it leaves the
    /// row as it was before the result, which the next try resolves (see [`sync`]).
    pub async fn call_sync_later<T, F>(&self, f: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.run(f, Fsync::Soon).await
    }

    /// Runs `f` on the ledger thread; answers once its writes are committed (and on disk,
    /// as `fsync` says).
    async fn run<T, F>(&self, f: F, fsync: Fsync) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.enqueue(f, fsync)?
            .await
            .map_err(|_| LedgerError::Stopped)?
    }

    /// Queues `f` now; the receiver gets its result once its writes are committed (and on
    /// disk, as `fsync` says).
    fn enqueue<T, F>(&self, f: F, fsync: Fsync) -> Result<Answer<T>, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job = job(f, true, fsync, &self.trouble, move |result| {
            let _ = tx.send(result);
        });
        self.jobs
            .send(Msg::Job(job))
            .map_err(|_| LedgerError::Stopped)?;
        Ok(rx)
    }

    /// Queues a write nobody waits for (an audit record): it shares the commit of the next
    /// operation somebody awaits, or is committed on its own after [`SUBMIT_WAIT`]; a
    /// failure is logged. Later operations still see it, since the thread runs them in order.
    /// A crash in that window loses it, as it could lose any write not yet committed.
    pub fn submit<F>(&self, what: &'static str, f: F)
    where
        F: FnOnce(&mut Connection) -> rusqlite::Result<()> + Send + 'static,
    {
        let logged = move |result: Result<(), LedgerError>| {
            if let Err(e) = result {
                tracing::error!(event = "ledger_write_failed", what, error = %e, "a ledger write failed");
            }
        };
        // Its fsync may wait too: it could be lost before its commit as well.
        let job = job(f, false, Fsync::Soon, &self.trouble, logged);
        if self.jobs.send(Msg::Job(job)).is_err() {
            logged(Err(LedgerError::Stopped));
        }
    }

    /// [`Ledger::submit`] for a record that must not be lost to a passing failure (what the
    /// till was told, written just before the disk filled): a failed write is submitted
    /// again a second later, for up to [`RETRY_FOR`] (then it is logged as lost).
    pub fn submit_retrying<F>(&self, what: &'static str, f: F)
    where
        F: Fn(&mut Connection) -> rusqlite::Result<()> + Clone + Send + 'static,
    {
        self.submit_attempt(what, f, RETRY_FOR.as_secs());
    }

    fn submit_attempt<F>(&self, what: &'static str, f: F, retries_left: u64)
    where
        F: Fn(&mut Connection) -> rusqlite::Result<()> + Clone + Send + 'static,
    {
        let ledger = self.clone();
        let again = f.clone();
        // Taken here: the answer comes on the ledger thread, which has no runtime.
        let runtime = tokio::runtime::Handle::try_current().ok();
        let done = move |result: Result<(), LedgerError>| {
            let Err(e) = result else { return };
            match (runtime, &e) {
                (Some(rt), LedgerError::Sqlite(_) | LedgerError::Commit(_)) if retries_left > 0 => {
                    tracing::warn!(event = "ledger_write_retried", what, error = %e, "a ledger write failed; trying again in a second");
                    rt.spawn(async move {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        ledger.submit_attempt(what, again, retries_left - 1);
                    });
                }
                _ => {
                    tracing::error!(event = "ledger_write_failed", what, error = %e, "a ledger write failed and is lost")
                }
            }
        };
        let job = job(f, false, Fsync::Soon, &self.trouble, done);
        if self.jobs.send(Msg::Job(job)).is_err() {
            tracing::error!(
                event = "ledger_write_failed",
                what,
                "the ledger thread has stopped; a write is lost"
            );
        }
    }

    /// Commits the writes submitted so far now, instead of after [`SUBMIT_WAIT`], and syncs
    /// any commit whose fsync was deferred: for shutdown, so that nothing is left behind
    /// when the process exits.
    pub async fn flush(&self) -> Result<(), LedgerError> {
        self.run(|_| Ok(()), Fsync::All).await
    }

    /// Stops the ledger thread: what is queued is committed and fsynced, the connection is
    /// closed (the WAL checkpointed), and then this answers. Other handles get
    /// [`LedgerError::Stopped`] from then on.
    pub async fn close(self) -> Result<(), LedgerError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Msg::Close(tx))
            .map_err(|_| LedgerError::Stopped)?;
        rx.await.map_err(|_| LedgerError::Stopped)
    }

    /// [`Ledger::close`] for code outside a runtime: blocks until the thread has stopped.
    pub fn close_blocking(self) -> Result<(), LedgerError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Msg::Close(tx))
            .map_err(|_| LedgerError::Stopped)?;
        rx.blocking_recv().map_err(|_| LedgerError::Stopped)
    }

    /// Whether the ledger takes writes: no write has failed to reach the disk since the
    /// last one that did, and a write transaction can be begun now. `Err` says why not.
    ///
    /// Only a real write that was committed clears a failure: a probe that rewrites a page
    /// in place succeeds on a disk too full for a new scan's row.
    pub async fn health(&self) -> Result<(), String> {
        let trouble = self.trouble.lock().ok().and_then(|t| t.clone());
        if let Some(why) = trouble {
            return Err(format!("cannot write: {why}"));
        }
        self.call(queries::probe_writable)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The errors that say the disk, not the operation, is the trouble.
fn disk_trouble(e: &rusqlite::Error) -> Option<String> {
    use rusqlite::ErrorCode::*;
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                DiskFull | SystemIoFailure | ReadOnly | CannotOpen | DatabaseCorrupt | NotADatabase
            ) =>
        {
            Some(e.to_string())
        }
        _ => None,
    }
}

/// Wraps `f` as a job for the ledger thread: `answer` gets its result once the commit that
/// holds its writes is known (an operation that succeeded in a failed commit failed too).
/// On the way it notes in `trouble` a write the disk refused, or clears it after a write
/// that was committed.
fn job<T, F, A>(
    f: F,
    awaited: bool,
    fsync: Fsync,
    trouble: &Arc<Mutex<Option<String>>>,
    answer: A,
) -> Job
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    A: FnOnce(Result<T, LedgerError>) + Send + 'static,
{
    let trouble = trouble.clone();
    Job {
        run: Box::new(move |conn| {
            let before = conn.total_changes();
            let result = f(conn);
            let wrote = conn.total_changes() > before;
            let ok = result.is_ok();
            let reply: Reply = Box::new(move |commit_failed: Option<&str>| {
                let noted = match (&result, commit_failed) {
                    (Ok(_), Some(why)) => Some(Some(why.to_string())),
                    (Ok(_), None) if wrote => Some(None),
                    (Err(e), _) => disk_trouble(e).map(Some),
                    _ => None,
                };
                if let (Some(now), Ok(mut t)) = (noted, trouble.lock()) {
                    *t = now;
                }
                answer(match (result, commit_failed) {
                    (Ok(_), Some(why)) => Err(LedgerError::Commit(why.to_string())),
                    (r, _) => r.map_err(LedgerError::from),
                })
            });
            (ok, reply)
        }),
        awaited,
        fsync,
    }
}

/// Told once a commit answered before its fsync is on disk ([`Ledger::call_sync_with_next`]).
pub struct Durable(oneshot::Receiver<Result<(), String>>);

impl Durable {
    pub async fn wait(self) -> Result<(), LedgerError> {
        match self.0.await {
            Ok(synced) => synced.map_err(LedgerError::Commit),
            Err(_) => Err(LedgerError::Stopped),
        }
    }
}

/// Runs a batch with the fsync its operations need: without one when each may wait for it
/// and somebody awaits the batch (a batch of submitted writes alone has waited already, and
/// gains nothing from deferring).
fn run_synced(conn: &mut Connection, durability: &mut Durability, mut batch: Vec<Job>) {
    let defer = batch.iter().any(|j| j.awaited) && batch.iter().all(|j| j.fsync.may_defer());
    let soon_only = batch.iter().all(|j| matches!(j.fsync, Fsync::Soon));
    let everything = batch.iter().any(|j| matches!(j.fsync, Fsync::All));
    // Whoever waits for the fsync is told by the thread's Durability from here on.
    let durable: Vec<sync::Waiter> = batch
        .iter_mut()
        .filter_map(|j| match &mut j.fsync {
            Fsync::WithNext(tx) => tx.take(),
            _ => None,
        })
        .collect();
    let sqlite_syncs = durability.prepare(conn, defer);
    let before = conn.total_changes();
    let ok = run_batch(conn, batch, |c| {
        // Nobody is told a write is on disk that an fsync failed to put there.
        let mut failed = None;
        if !sqlite_syncs {
            failed = durability.sync_wal(c).err();
        }
        if everything {
            // This commit was synced; the ones before it may not have been.
            failed = failed.or(durability.sync(c).err());
        }
        failed
    });
    let committed = Committed {
        wrote: conn.total_changes() > before,
        ok: ok && sqlite_syncs,
        soon_only,
        durable,
    };
    durability.committed(conn, committed);
}

/// Moves the jobs already queued into `batch`, up to [`MAX_BATCH`].
/// Stops at a word to close, which it keeps in `closing`.
fn take_queued(
    rx: &mpsc::Receiver<Msg>,
    batch: &mut Vec<Job>,
    closing: &mut Option<oneshot::Sender<()>>,
) {
    while batch.len() < MAX_BATCH && closing.is_none() {
        match rx.try_recv() {
            Ok(Msg::Job(job)) => batch.push(job),
            Ok(Msg::Close(tx)) => *closing = Some(tx),
            Err(_) => break,
        }
    }
}

/// Group commit: the operations that queued up while the previous commit was being written
/// run in one transaction (each in a savepoint of its own, see `sql::immediate`) and share
/// one fsync. A backlog of concurrent redemptions then costs one fsync per batch instead of
/// one per operation; a lone operation runs in its own transaction as before. Nobody is
/// answered before the commit that holds their writes, and `before_answers` has run.
/// Returns whether every operation succeeded and was committed.
fn run_batch(
    conn: &mut Connection,
    batch: Vec<Job>,
    before_answers: impl FnOnce(&Connection) -> Option<String>,
) -> bool {
    if batch.len() == 1 || conn.execute_batch("BEGIN IMMEDIATE").is_err() {
        let mut all_ok = true;
        let mut replies = Vec::with_capacity(batch.len());
        for job in batch {
            let (ok, reply) = (job.run)(conn);
            all_ok &= ok;
            replies.push(reply);
        }
        let failed = before_answers(conn);
        for reply in replies {
            reply(failed.as_deref());
        }
        return all_ok && failed.is_none();
    }
    let mut done: Vec<Reply> = Vec::with_capacity(batch.len());
    let mut jobs = batch.into_iter();
    while let Some(job) = jobs.next() {
        let (_, reply) = (job.run)(conn);
        if conn.is_autocommit() {
            // Some errors (disk full, I/O) make SQLite roll the whole transaction back: every
            // write of this batch so far is gone. Say so, and run the rest one by one.
            let why = "SQLite rolled the shared transaction back after an error";
            let rest: Vec<Reply> = jobs.map(|job| (job.run)(conn).1).collect();
            let failed = before_answers(conn);
            for r in done.drain(..) {
                r(Some(why));
            }
            reply(Some(why));
            for r in rest {
                r(failed.as_deref());
            }
            return false;
        }
        done.push(reply);
    }
    let mut failed = conn.execute_batch("COMMIT").err().map(|e| e.to_string());
    if failed.is_some() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    failed = failed.or(before_answers(conn));
    for r in done {
        r(failed.as_deref());
    }
    failed.is_none()
}

#[cfg(test)]
mod model_tests;

#[cfg(test)]
pub(crate) mod durability_tests;

#[cfg(test)]
mod group_commit_tests {
    use super::*;

    fn insert(c: &Connection, code: &str) -> rusqlite::Result<()> {
        c.execute(
            "INSERT INTO redemptions (code, api, state, scanner, till, scanned_at, updated_at) \
             VALUES (?1, 'card', 'queued', 's', 't', 0, 0)",
            [code],
        )?;
        Ok(())
    }

    /// Inserts a row in a savepoint; answers whether it ran inside a shared transaction.
    fn insert_alone(code: &'static str) -> impl FnOnce(&mut Connection) -> rusqlite::Result<bool> {
        move |c| {
            let shared = !c.is_autocommit();
            let tx = c.savepoint()?;
            insert(&tx, code)?;
            tx.commit()?;
            Ok(shared)
        }
    }

    #[tokio::test]
    async fn queued_operations_share_a_commit_and_a_failure_undoes_only_its_own_writes() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("l.db");
        let ledger = Ledger::open(&db).unwrap();
        // Hold the ledger thread inside one operation, so the next ones queue up behind it.
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (entered_tx, entered) = std::sync::mpsc::channel::<()>();
        let held = ledger
            .enqueue(
                move |_| {
                    let _ = entered_tx.send(());
                    let _ = wait.recv();
                    Ok(())
                },
                Fsync::BeforeAnswer,
            )
            .unwrap();
        entered.recv().unwrap();

        let a = ledger
            .enqueue(insert_alone("111111111111"), Fsync::BeforeAnswer)
            .unwrap();
        // A second row, then the first code again: the unique index refuses it.
        let bad = ledger
            .enqueue(
                |c| {
                    let tx = c.savepoint()?;
                    insert(&tx, "222222222222")?;
                    insert(&tx, "111111111111")?;
                    tx.commit()?;
                    Ok(())
                },
                Fsync::BeforeAnswer,
            )
            .unwrap();
        let b = ledger
            .enqueue(insert_alone("333333333333"), Fsync::BeforeAnswer)
            .unwrap();
        release.send(()).unwrap();

        held.await.unwrap().unwrap();
        assert!(
            a.await.unwrap().unwrap(),
            "ran inside the shared transaction"
        );
        assert!(
            b.await.unwrap().unwrap(),
            "ran inside the shared transaction"
        );
        assert!(bad.await.unwrap().is_err(), "the failing operation is told");
        drop(ledger);

        assert_eq!(
            codes_in(&db),
            ["111111111111", "333333333333"],
            "the failed operation left nothing; the others are committed"
        );
    }

    fn codes_in(db: &Path) -> Vec<String> {
        open_ro(db)
            .unwrap()
            .prepare("SELECT code FROM redemptions ORDER BY code")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[tokio::test]
    async fn a_submitted_write_waits_for_the_next_awaited_operation_and_shares_its_commit() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("l.db");
        // Far longer than the test: the submitted write can only be committed with the call.
        let ledger = Ledger::start_with(open_rw(&db).unwrap(), Duration::from_secs(600));
        ledger.submit("test", |c| insert(c, "111111111111"));
        let shared = ledger.call(|c| Ok(!c.is_autocommit())).await.unwrap();
        assert!(
            shared,
            "the call ran in the transaction the submitted write opened"
        );
        assert_eq!(codes_in(&db), ["111111111111"], "and that commit holds it");
    }

    #[test]
    fn a_submitted_write_alone_is_committed_after_the_wait_or_when_the_ledger_closes() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("l.db");
        let ledger = Ledger::start_with(open_rw(&db).unwrap(), Duration::from_millis(1));
        ledger.submit("test", |c| insert(c, "111111111111"));
        let closing = Ledger::start_with(open_rw(&db).unwrap(), Duration::from_secs(600));
        closing.submit("test", |c| insert(c, "222222222222"));
        let other = closing.clone();
        closing.close_blocking().unwrap();
        assert!(
            codes_in(&db).contains(&"222222222222".to_string()),
            "closing commits what was submitted"
        );
        assert!(matches!(
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(other.call(|_| Ok(()))),
            Err(LedgerError::Stopped)
        ));
        // The other ledger commits its write on its own after its wait; closing it waits
        // for its thread.
        ledger.close_blocking().unwrap();
        assert_eq!(codes_in(&db), ["111111111111", "222222222222"]);
    }

    /// A failed fsync is never reported as durable: whoever waits for it is told it failed
    /// ("cannot record" at the till), and the ledger stops acknowledging anything (the daemon
    /// stops and is restarted: after an fsync error the page cache cannot be trusted), with
    /// the reason for `/healthz` and the watchdog.
    #[tokio::test]
    async fn a_failed_fsync_fails_its_waiters_and_stops_the_ledger() {
        fn failing(_: &std::fs::File) -> std::io::Result<()> {
            Err(std::io::Error::from_raw_os_error(5))
        }
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::start_syncing(
            open_rw(&dir.path().join("l.db")).unwrap(),
            Duration::from_millis(1),
            Duration::from_millis(5),
            failing,
        );
        let (_, on_disk) = ledger
            .call_sync_with_next(|c| insert(c, "111111111111"))
            .await
            .unwrap();
        let e = on_disk.wait().await.unwrap_err().to_string();
        assert!(e.contains("could not be synced"), "{e}");
        assert!(matches!(
            ledger.call(|c| insert(c, "222222222222")).await,
            Err(LedgerError::Stopped)
        ));
        let health = ledger.health().await.unwrap_err();
        assert!(health.contains("must restart"), "{health}");
    }

    /// What the till was told is not lost to a passing failure: a submitted record whose
    /// write failed is written again a second later.
    #[tokio::test]
    async fn a_failed_submitted_record_is_written_again() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("l.db");
        let ledger = Ledger::start_with(open_rw(&db).unwrap(), Duration::from_millis(1));
        let tries = Arc::new(AtomicU32::new(0));
        let t = tries.clone();
        ledger.submit_retrying("test", move |c| {
            if t.fetch_add(1, Ordering::SeqCst) == 0 {
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                    Some("database or disk is full".into()),
                ));
            }
            insert(c, "111111111111")
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while codes_in(&db).is_empty() {
            assert!(std::time::Instant::now() < deadline, "never written again");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(tries.load(Ordering::SeqCst), 2);
        assert_eq!(codes_in(&db), ["111111111111"]);
    }

    #[tokio::test]
    async fn only_a_result_commits_without_fsync_and_never_in_company_that_needs_one() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&dir.path().join("l.db")).unwrap();
        let level =
            |c: &mut Connection| c.pragma_query_value(None, "synchronous", |r| r.get::<_, i64>(0));
        assert_eq!(ledger.call_sync_later(level).await.unwrap(), 1, "NORMAL");
        assert_eq!(ledger.call(level).await.unwrap(), 2, "FULL");

        // Queued behind a held operation, a deferred and a synced one share a batch: FULL.
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let held = ledger
            .enqueue(
                move |_| {
                    let _ = wait.recv();
                    Ok(())
                },
                Fsync::BeforeAnswer,
            )
            .unwrap();
        let deferred = ledger.enqueue(level, Fsync::Soon).unwrap();
        let synced = ledger.enqueue(level, Fsync::BeforeAnswer).unwrap();
        release.send(()).unwrap();
        held.await.unwrap().unwrap();
        assert_eq!(
            deferred.await.unwrap().unwrap(),
            2,
            "with company that needs an fsync"
        );
        assert_eq!(synced.await.unwrap().unwrap(), 2);
    }

    #[tokio::test]
    async fn a_new_row_is_on_disk_with_the_next_synced_commit_or_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("l.db");
        let never = Duration::from_secs(600);
        let ledger = Ledger::start_waiting(open_rw(&db).unwrap(), never, never);
        let ((), mut durable) = ledger
            .call_sync_with_next(|c| insert(c, "111111111111"))
            .await
            .unwrap();
        assert_eq!(codes_in(&db), ["111111111111"], "committed: others see it");
        ledger.call(|_| Ok(())).await.unwrap();
        assert!(durable.0.try_recv().is_err(), "a read syncs nothing");
        ledger.call(|c| insert(c, "222222222222")).await.unwrap();
        durable.wait().await.unwrap();

        let ((), durable) = ledger
            .call_sync_with_next(|c| insert(c, "333333333333"))
            .await
            .unwrap();
        ledger.flush().await.unwrap();
        durable.wait().await.unwrap();
    }
}
