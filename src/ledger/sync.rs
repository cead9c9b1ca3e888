//! When the ledger's commits reach the disk.
//!
//! Most commits are fsynced before anybody hears of them (SQLite's `synchronous = FULL`): a
//! scan the till was told is recorded, an intent written before its call is sent. A try's
//! result is different: it is committed before the cashier hears it, so killing the process
//! cannot undo it, but its fsync may follow a little later (`synchronous = NORMAL` for that
//! commit). Only a power cut in that window can undo it, and what it then leaves is a row
//! whose call was sent and whose answer is unknown: the state a response lost on the way
//! back leaves, which the next try resolves the same way (a query, or the same
//! `use_request_no`). That saves the third fsync of every online redemption.
//!
//! The deferred fsync comes with the next commit written with one (SQLite syncs the whole
//! WAL, and WAL frames are checksummed in a chain, so a later durable commit makes every
//! earlier one durable), or, when none comes, from [`Durability::sync_if_due`] at most
//! [`SYNC_WAIT`] later.

use rusqlite::Connection;
use std::time::{Duration, Instant};

/// The longest a deferred commit waits for its fsync.
pub const SYNC_WAIT: Duration = Duration::from_millis(20);

/// What the ledger thread knows about its connection's syncing.
#[derive(Debug, Default)]
pub struct Durability {
    /// The connection commits without fsync (`NORMAL`) rather than with (`FULL`).
    deferring: bool,
    /// The first commit since the last fsync that was written without one.
    unsynced_since: Option<Instant>,
}

impl Durability {
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

    /// Notes a batch's commit: `wrote` is whether it changed anything, `ok` whether every
    /// write of it was committed.
    pub fn committed(&mut self, wrote: bool, ok: bool) {
        if !wrote {
            return;
        }
        if self.deferring {
            self.unsynced_since.get_or_insert_with(Instant::now);
        } else if ok {
            // SQLite synced the WAL, and with it every earlier frame.
            self.unsynced_since = None;
        }
    }

    /// How long the thread may wait for work before a deferred fsync is due (`None`:
    /// nothing waits for one).
    pub fn wait_left(&self) -> Option<Duration> {
        self.unsynced_since
            .map(|since| (since + SYNC_WAIT).saturating_duration_since(Instant::now()))
    }

    /// Syncs the WAL if a deferred commit has waited [`SYNC_WAIT`] for it.
    pub fn sync_if_due(&mut self, conn: &Connection) {
        if self.wait_left() == Some(Duration::ZERO) {
            self.sync(conn);
        }
    }

    /// Syncs the WAL now if a commit waits for it (when the ledger closes, say).
    pub fn sync(&mut self, conn: &Connection) {
        if self.unsynced_since.take().is_some() {
            sync_wal(conn);
        }
    }
}

/// fdatasync on the connection's WAL: what a `FULL` commit would have done. A failure is
/// logged; retrying would not help (the kernel may have dropped the pages already).
pub fn sync_wal(conn: &Connection) {
    let Some(db) = conn.path().filter(|p| !p.is_empty()) else {
        return; // in memory: nothing on disk
    };
    let wal = format!("{db}-wal");
    let synced = match std::fs::File::open(&wal) {
        Ok(f) => f.sync_data(),
        // A checkpoint that truncated the WAL synced the database file itself.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    if let Err(e) = synced {
        tracing::error!(event = "ledger_sync_failed", error = %e, "could not sync the ledger's write-ahead log; the latest results may not survive a power cut");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::ledger::open_rw(&dir.path().join("l.db")).unwrap();
        (dir, conn)
    }

    fn level(conn: &Connection) -> i64 {
        conn.pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_deferred_commit_waits_for_an_fsync_that_a_synced_commit_or_the_wait_brings() {
        let (_dir, conn) = conn();
        let mut d = Durability::default();
        assert!(d.prepare(&conn, true));
        assert_eq!(level(&conn), 1, "NORMAL: no fsync at commit");
        d.committed(false, true);
        assert_eq!(d.wait_left(), None, "nothing written, nothing to sync");
        d.committed(true, true);
        let left = d
            .wait_left()
            .expect("a deferred commit waits for its fsync");
        assert!(left <= SYNC_WAIT);

        assert!(d.prepare(&conn, false));
        assert_eq!(level(&conn), 2, "FULL again for the next commit");
        d.committed(true, false);
        assert!(
            d.wait_left().is_some(),
            "a synced batch that failed may not have synced anything"
        );
        d.committed(true, true);
        assert_eq!(
            d.wait_left(),
            None,
            "SQLite synced the WAL, earlier frames too"
        );

        assert!(d.prepare(&conn, true));
        d.committed(true, true);
        d.sync(&conn);
        assert_eq!(d.wait_left(), None, "synced when the ledger closes");
    }

    #[test]
    fn an_fsync_is_due_once_the_wait_is_over() {
        let (_dir, conn) = conn();
        let mut d = Durability::default();
        d.prepare(&conn, true);
        d.committed(true, true);
        d.sync_if_due(&conn);
        assert!(d.wait_left().is_some(), "not yet due");
        std::thread::sleep(SYNC_WAIT);
        assert_eq!(d.wait_left(), Some(Duration::ZERO));
        d.sync_if_due(&conn);
        assert_eq!(d.wait_left(), None);
    }
}
