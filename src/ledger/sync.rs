//! When the ledger's commits reach the disk.
//!
//! Most commits are fsynced before anybody hears of them (SQLite's `synchronous = FULL`):
//! an intent written before its call is sent, a refusal, a rescan. Two are answered at
//! commit, which killing the process cannot undo, and fsynced a little later
//! (`synchronous = NORMAL` for their commit):
//!
//! - A try's result. Only a power cut before its fsync can undo it, and what that leaves is
//!   a row whose call was sent and whose answer is unknown: the state a response lost on
//!   the way back leaves, which the next try resolves the same way (a query, or the same
//!   `use_request_no`). Its fsync comes within [`SYNC_WAIT`].
//! - A new code's row while its check is out ([`Fsync::WithNext`]). Its caller is told
//!   when an fsync covers it, and the till hears nothing before that; online, that is the
//!   fsync of the consume intent its try writes next, so the two share one. A power cut
//!   before it loses a scan nobody was answered for (the cashier scans again), and no call
//!   that changes anything is sent before the intent is on disk. It waits at most
//!   [`SHARE_WAIT`], and no longer than the end of a try that writes no intent.
//! - A held product coupon's WeChat Pay order ([`Fsync::WithNext`]): the POS is answered
//!   once the use has ended, after the use's intent (the next synced commit) covered it.
//!
//! That takes two of the three fsyncs of an online redemption off the cashier's wait. A
//! later fsync covers the commits before it: SQLite syncs the whole WAL, and WAL frames are
//! checksummed in a chain, so recovery after a power cut keeps a prefix of the commits.

use rusqlite::Connection;
use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The longest a try's result waits for its fsync.
pub const SYNC_WAIT: Duration = Duration::from_millis(20);

/// The longest a new code's row waits for the consume intent of its try to share its fsync.
/// Longer than a `code/get` usually takes, so that online the two share one.
pub const SHARE_WAIT: Duration = Duration::from_millis(250);

/// When an operation's commit must reach the disk.
#[derive(Debug)]
pub enum Fsync {
    /// Before its caller is answered (SQLite's `synchronous = FULL`).
    BeforeAnswer,
    /// Soon after its caller is answered: with the next synced commit or within
    /// [`SYNC_WAIT`] (a try's result, an audit record).
    Soon,
    /// Its caller is answered at commit, and told on `durable` once an fsync covers it: the
    /// next synced commit's (online, the consume intent of the row's try) or within
    /// [`SHARE_WAIT`].
    WithNext(Option<Waiter>),
    /// Before its caller is answered, with everything committed before it (shutdown).
    All,
}

impl Fsync {
    /// Whether the commit holding this operation may be written without fsync.
    pub fn may_defer(&self) -> bool {
        matches!(self, Fsync::Soon | Fsync::WithNext(_))
    }
}

/// A committed batch, as far as syncing goes.
pub struct Committed {
    /// It changed anything.
    pub wrote: bool,
    /// Every write of it was committed.
    pub ok: bool,
    /// It held only operations that sync [`Fsync::Soon`]: tries' results. Rows waiting to
    /// share an fsync are synced then rather than left to their wait: the try one waits
    /// for may just have ended without writing an intent.
    pub soon_only: bool,
    /// Who waits to be told that it is on disk.
    pub durable: Vec<Waiter>,
}

/// Told whether a commit reached the disk: `Err` says why not.
pub type Waiter = oneshot::Sender<Result<(), String>>;

/// Syncs a file's data to the disk (`File::sync_data`; a failing one in tests).
pub type SyncFn = fn(&File) -> std::io::Result<()>;

/// What the ledger thread knows about its connection's syncing.
#[derive(Debug)]
pub struct Durability {
    /// The connection commits without fsync (`NORMAL`) rather than with (`FULL`).
    deferring: bool,
    /// The latest moment the commits written without fsync so far may wait for one.
    sync_by: Option<Instant>,
    /// Told once everything committed so far is on disk.
    waiting: Vec<Waiter>,
    /// [`SHARE_WAIT`], or another for tests.
    share_wait: Duration,
    /// The WAL, open for as long as the connection: fsyncing a descriptor opened afresh
    /// would not report a write-back error the kernel saw before it was opened.
    wal: Option<File>,
    sync_data: SyncFn,
    /// An fsync failed: after that the page cache cannot be trusted (what it says is on
    /// disk may not be), so nothing is acknowledged any more; the ledger must be reopened
    /// (the daemon restarted), as PostgreSQL does.
    failed: Option<String>,
}

impl Durability {
    #[cfg(test)]
    pub fn new(share_wait: Duration) -> Durability {
        Self::with_sync(share_wait, File::sync_data)
    }

    /// [`Durability::new`], syncing with `sync_data`.
    pub fn with_sync(share_wait: Duration, sync_data: SyncFn) -> Durability {
        Durability {
            deferring: false,
            sync_by: None,
            waiting: Vec::new(),
            share_wait,
            wal: None,
            sync_data,
            failed: None,
        }
    }

    /// Why an fsync failed, once one has: the ledger acknowledges nothing from then on.
    pub fn failed(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// fdatasync on the connection's WAL: what a `FULL` commit would have done. A failure
    /// is final (see `failed`): retrying would not help, the kernel may have dropped the
    /// pages already.
    pub fn sync_wal(&mut self, conn: &Connection) -> Result<(), String> {
        if let Some(why) = &self.failed {
            return Err(why.clone());
        }
        let Some(db) = conn.path().filter(|p| !p.is_empty()) else {
            return Ok(()); // in memory: nothing on disk
        };
        if self.wal.is_none() {
            match File::open(super::checkpoint::wal_of(Path::new(db))) {
                Ok(f) => self.wal = Some(f),
                // No WAL yet, or a checkpoint removed it and synced the database file.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(self.fail(&e)),
            }
        }
        let synced = match &self.wal {
            Some(f) => (self.sync_data)(f),
            None => Ok(()),
        };
        synced.map_err(|e| self.fail(&e))
    }

    fn fail(&mut self, e: &std::io::Error) -> String {
        let why =
            format!("the ledger's WAL could not be synced to disk ({e}); redeemd must restart");
        tracing::error!(event = "ledger_sync_failed", error = %e, "could not sync the ledger's write-ahead log: nothing more is acknowledged until redeemd restarts");
        self.failed = Some(why.clone());
        why
    }

    /// Sets how the next batch commits: `defer` writes it without fsync. Answers whether
    /// SQLite will sync the commit if it must; if not (the setting failed, which SQLite
    /// only does inside a transaction), the caller syncs the WAL before answering anybody.
    pub fn prepare(&mut self, conn: &Connection, defer: bool) -> bool {
        if self.deferring != defer {
            let level = if defer { "NORMAL" } else { "FULL" };
            match conn.pragma_update(None, "synchronous", level) {
                Ok(()) => self.deferring = defer,
                // The setting stays as it was.
                Err(e) => {
                    tracing::error!(event = "ledger_sync_mode_failed", level, error = %e, "could not set the ledger's sync mode")
                }
            }
        }
        defer || !self.deferring
    }

    /// Notes a batch's commit, and tells whoever it made durable.
    pub fn committed(&mut self, conn: &Connection, batch: Committed) {
        let shares = !batch.durable.is_empty();
        self.waiting.extend(batch.durable);
        if batch.wrote && !self.deferring && batch.ok {
            // SQLite synced the WAL, and with it every earlier frame.
            self.release();
            return;
        }
        if batch.wrote && self.deferring && batch.soon_only && !self.waiting.is_empty() {
            // A try ended without an intent (or after it): nothing more is coming to share.
            let _ = self.sync(conn);
            return;
        }
        if batch.wrote || !self.waiting.is_empty() {
            let wait = if shares { self.share_wait } else { SYNC_WAIT };
            let by = Instant::now() + wait;
            self.sync_by = Some(self.sync_by.map_or(by, |b| b.min(by)));
        }
    }

    /// How long the thread may wait for work before an fsync is due (`None`: nothing waits
    /// for one).
    pub fn wait_left(&self) -> Option<Duration> {
        self.sync_by
            .map(|by| by.saturating_duration_since(Instant::now()))
    }

    /// Syncs the WAL if a commit has waited as long as it may.
    pub fn sync_if_due(&mut self, conn: &Connection) {
        if self.wait_left() == Some(Duration::ZERO) {
            let _ = self.sync(conn);
        }
    }

    /// Syncs the WAL now if a commit waits for it (for a flush, or when the ledger closes).
    /// Whoever waits is told whether it worked.
    pub fn sync(&mut self, conn: &Connection) -> Result<(), String> {
        let synced = if self.sync_by.is_some() || !self.waiting.is_empty() {
            self.sync_wal(conn)
        } else {
            Ok(())
        };
        self.release_with(synced.clone());
        synced
    }

    /// Everything committed so far is on disk.
    fn release(&mut self) {
        self.release_with(Ok(()));
    }

    fn release_with(&mut self, synced: Result<(), String>) {
        self.sync_by = None;
        for durable in self.waiting.drain(..) {
            let _ = durable.send(synced.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::ledger::schema::open_rw(&dir.path().join("l.db")).unwrap();
        (dir, conn)
    }

    fn level(conn: &Connection) -> i64 {
        conn.pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap()
    }

    fn batch(wrote: bool, ok: bool, soon_only: bool) -> Committed {
        Committed {
            wrote,
            ok,
            soon_only,
            durable: Vec::new(),
        }
    }

    #[test]
    fn a_deferred_commit_waits_for_an_fsync_that_a_synced_commit_or_the_wait_brings() {
        let (_dir, conn) = conn();
        let mut d = Durability::new(SHARE_WAIT);
        assert!(d.prepare(&conn, true));
        assert_eq!(level(&conn), 1, "NORMAL: no fsync at commit");
        d.committed(&conn, batch(false, true, true));
        assert_eq!(d.wait_left(), None, "nothing written, nothing to sync");
        d.committed(&conn, batch(true, true, true));
        let left = d
            .wait_left()
            .expect("a deferred commit waits for its fsync");
        assert!(left <= SYNC_WAIT);

        assert!(d.prepare(&conn, false));
        assert_eq!(level(&conn), 2, "FULL again for the next commit");
        d.committed(&conn, batch(true, false, false));
        assert!(
            d.wait_left().is_some(),
            "a synced batch that failed may not have synced anything"
        );
        d.committed(&conn, batch(true, true, false));
        assert_eq!(
            d.wait_left(),
            None,
            "SQLite synced the WAL, earlier frames too"
        );

        assert!(d.prepare(&conn, true));
        d.committed(&conn, batch(true, true, true));
        d.sync(&conn).unwrap();
        assert_eq!(d.wait_left(), None, "synced when the ledger closes");
    }

    #[test]
    fn an_fsync_is_due_once_the_wait_is_over() {
        let (_dir, conn) = conn();
        let mut d = Durability::new(SHARE_WAIT);
        d.prepare(&conn, true);
        d.committed(&conn, batch(true, true, true));
        d.sync_if_due(&conn);
        assert!(d.wait_left().is_some(), "not yet due");
        std::thread::sleep(SYNC_WAIT);
        assert_eq!(d.wait_left(), Some(Duration::ZERO));
        d.sync_if_due(&conn);
        assert_eq!(d.wait_left(), None);
    }

    #[test]
    fn a_row_waiting_to_share_is_told_by_the_next_synced_commit_or_the_end_of_a_try() {
        let (_dir, conn) = conn();
        let mut d = Durability::new(Duration::from_secs(600));
        let shared = |d: &mut Durability| {
            let (tx, rx) = oneshot::channel();
            d.prepare(&conn, true);
            d.committed(
                &conn,
                Committed {
                    wrote: true,
                    ok: true,
                    soon_only: false,
                    durable: vec![tx],
                },
            );
            rx
        };

        let mut row = shared(&mut d);
        assert!(row.try_recv().is_err(), "not on disk yet");
        assert!(d.wait_left().unwrap() > SYNC_WAIT, "it waits for company");
        d.prepare(&conn, false);
        d.committed(&conn, batch(false, true, false));
        assert!(row.try_recv().is_err(), "a read syncs nothing");
        d.committed(&conn, batch(true, true, false));
        assert!(row.try_recv().is_ok(), "the intent's fsync covered it");
        assert_eq!(d.wait_left(), None);

        let mut row = shared(&mut d);
        d.committed(&conn, batch(true, true, true));
        assert!(
            row.try_recv().is_ok(),
            "a result without an intent ends the wait"
        );
        assert_eq!(d.wait_left(), None);
    }
}
