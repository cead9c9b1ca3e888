//! The WAL's checkpoints, on a thread of their own.
//!
//! SQLite checkpoints on the connection whose commit takes the WAL past
//! `wal_autocheckpoint` pages: that commit then waits while about a thousand pages are
//! copied into the database file and the file is fsynced. On the ledger's writer that
//! commit is a cashier's scan. Here the writer only counts the WAL's pages (SQLite's WAL
//! hook) and, every [`EVERY_PAGES`], nudges a checkpointer with a connection of its own;
//! its PASSIVE checkpoints copy what no reader still needs without blocking the writer,
//! and the writer starts the WAL over at its next commit once everything was copied.
//! Should the checkpointer not catch up (a writer that never pauses), the writer
//! checkpoints itself at [`BACKSTOP_PAGES`]: then only the pages not copied yet.

use rusqlite::hooks::Wal;
use rusqlite::{Connection, OpenFlags};
use std::cell::Cell;
use std::os::raw::c_int;
use std::path::Path;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::thread::JoinHandle;

/// A checkpoint is asked for every this many WAL pages (SQLite's own default threshold).
pub const EVERY_PAGES: i64 = 1000;

/// The writer checkpoints itself past this many pages.
pub const BACKSTOP_PAGES: i64 = 4 * EVERY_PAGES;

/// The most checkpoints one nudge runs while the writer keeps adding pages.
const CATCH_UP_ROUNDS: usize = 8;

thread_local! {
    /// The WAL's length in pages after the latest commit of the writer on this thread.
    static WAL_PAGES: Cell<i64> = const { Cell::new(0) };
}

/// Counts the WAL pages after each commit of `conn` (which must stay on this thread), in
/// place of SQLite's automatic checkpoint.
pub fn watch(conn: &Connection) {
    conn.wal_hook(Some(after_commit));
}

/// The WAL hook. It always answers Ok: an error here would make a commit that happened
/// report a failure.
fn after_commit(wal: &Wal, pages: c_int) -> rusqlite::Result<()> {
    let pages = i64::from(pages);
    WAL_PAGES.with(|p| p.set(pages));
    if pages >= BACKSTOP_PAGES {
        // Busy while the checkpointer runs: then it is doing this already.
        let _ = wal.checkpoint();
    }
    Ok(())
}

/// The WAL's length in pages after the latest commit on this thread.
fn wal_pages() -> i64 {
    WAL_PAGES.with(Cell::get)
}

/// Whether a WAL of `pages` calls for a checkpoint, the last one having been asked at
/// `asked` pages: one per [`EVERY_PAGES`] written, counted afresh once the WAL has started
/// over (shorter than when last asked).
pub fn due(pages: i64, asked: i64) -> bool {
    let since = if pages < asked { pages } else { pages - asked };
    since >= EVERY_PAGES
}

/// The checkpointer thread, and the writer's side of it.
pub struct Checkpointer {
    nudge: Option<SyncSender<()>>,
    asked: i64,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts a checkpointer for the database at `path`; `None` for one in memory or one it
    /// cannot open (the writer's backstop still bounds the WAL then).
    pub fn start(path: &str) -> Option<Checkpointer> {
        if path.is_empty() {
            return None;
        }
        let conn = match Connection::open_with_flags(
            Path::new(path),
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        ) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(event = "ledger_checkpointer_failed", error = %e, "could not open the ledger for checkpoints; the writer checkpoints itself");
                return None;
            }
        };
        let (nudge, nudged) = mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("checkpoint".into())
            .spawn(move || {
                for () in nudged {
                    catch_up(&conn);
                }
            })
            .ok()?;
        Some(Checkpointer {
            nudge: Some(nudge),
            asked: 0,
            thread: Some(thread),
        })
    }

    /// After a commit on the writer's thread: asks for a checkpoint if one is due. Never
    /// waits: one already asked for and not yet run will copy these pages too.
    pub fn after_commit(&mut self) {
        let pages = wal_pages();
        if pages < self.asked {
            // The WAL started over.
            self.asked = 0;
        }
        if !due(pages, self.asked) {
            return;
        }
        self.asked = pages;
        if let Some(nudge) = &self.nudge {
            match nudge.try_send(()) {
                Ok(()) | Err(TrySendError::Full(())) => {}
                Err(TrySendError::Disconnected(())) => self.nudge = None,
            }
        }
    }
}

/// Checkpoints until everything in the WAL is copied (the writer then starts it over), the
/// writer's own checkpoint is running, or [`CATCH_UP_ROUNDS`] are done.
fn catch_up(conn: &Connection) {
    for _ in 0..CATCH_UP_ROUNDS {
        let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            let busy: i64 = r.get(0)?;
            let (log, copied): (i64, i64) = (r.get(1)?, r.get(2)?);
            Ok(busy != 0 || copied >= log)
        });
        match done {
            Ok(false) => {}
            Ok(true) => return,
            Err(e) => {
                tracing::warn!(event = "ledger_checkpoint_failed", error = %e, "a checkpoint of the ledger's WAL failed; the next one tries again");
                return;
            }
        }
    }
}

impl Drop for Checkpointer {
    /// Stops the thread and closes its connection, so that the writer's close is the last
    /// and removes the WAL.
    fn drop(&mut self) {
        self.nudge = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_is_asked_for_once_per_thousand_pages_and_afresh_after_the_wal_restarts() {
        let cases = [
            // (pages now, asked at, due)
            (0, 0, false),
            (999, 0, false),
            (1000, 0, true),
            (1500, 1000, false),
            (1999, 1000, false),
            (2000, 1000, true),
            // The WAL started over: counted from its start.
            (12, 2000, false),
            (1000, 2000, true),
            (999, 1200, false),
        ];
        for (pages, asked, want) in cases {
            assert_eq!(due(pages, asked), want, "{pages} pages, asked at {asked}");
        }
    }

    /// A ledger file whose writer's WAL is watched, with a table to fill.
    fn watched_ledger() -> (tempfile::TempDir, std::path::PathBuf, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("l.db");
        let conn = crate::ledger::schema::open_rw(&db).unwrap();
        conn.execute_batch("PRAGMA synchronous = OFF; CREATE TABLE t(x BLOB)")
            .unwrap();
        watch(&conn);
        (dir, db, conn)
    }

    /// Commits a row of about a page; answers the WAL's length after it.
    fn insert_page(conn: &Connection) -> i64 {
        conn.execute("INSERT INTO t VALUES (zeroblob(3000))", [])
            .unwrap();
        wal_pages()
    }

    fn wal_len(db: &Path) -> u64 {
        std::fs::metadata(format!("{}-wal", db.display()))
            .map(|m| m.len())
            .unwrap_or(0)
    }

    #[test]
    fn the_checkpointer_lets_the_wal_start_over_before_the_writer_would() {
        let (_dir, db, conn) = watched_ledger();
        let mut cp = Checkpointer::start(conn.path().unwrap()).unwrap();
        let insert = || insert_page(&conn);
        let mut longest = 0;
        while longest < EVERY_PAGES {
            longest = longest.max(insert());
            cp.after_commit();
        }
        // The writer pauses between scans; the WAL starts over at a commit after the
        // checkpointer has copied it all.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let pages = insert();
            cp.after_commit();
            if pages < longest {
                break;
            }
            longest = pages;
            assert!(
                std::time::Instant::now() < deadline,
                "the WAL never started over ({pages} pages)"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(longest < BACKSTOP_PAGES, "{longest} pages");
        drop(cp);
        assert!(wal_len(&db) > 0);
        drop(conn);
        assert_eq!(wal_len(&db), 0, "the writer's close removed the WAL");
    }

    #[test]
    fn without_a_checkpointer_the_writer_checkpoints_at_the_backstop() {
        let (_dir, _db, conn) = watched_ledger();
        let mut longest = 0;
        let mut restarted = false;
        for _ in 0..3000 {
            let pages = insert_page(&conn);
            restarted |= pages < longest;
            longest = longest.max(pages);
        }
        assert!(restarted, "the WAL started over (longest {longest} pages)");
        assert!(longest <= BACKSTOP_PAGES + 2, "{longest} pages");
        assert!(longest >= BACKSTOP_PAGES, "{longest} pages");
    }
}
