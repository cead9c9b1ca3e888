//! The WAL's checkpoints, on a thread of their own.
//!
//! SQLite checkpoints on the connection whose commit takes the WAL past
//! `wal_autocheckpoint` pages: that commit then waits while about a thousand pages are
//! copied into the database file and the file is fsynced. On the ledger's writer that
//! commit is a cashier's scan. Here the writer only counts the WAL's pages (SQLite's WAL
//! hook) and, every [`EVERY_PAGES`], nudges a checkpointer with a connection of its own;
//! its PASSIVE checkpoints copy what no reader still needs without blocking the writer.
//!
//! The WAL starts over at the writer's next commit once everything in it was copied. A
//! writer that keeps committing while the checkpointer copies always leaves a few pages
//! behind, so the writer copies those itself (at most [`FINISH_PAGES`], after its callers
//! were answered): otherwise the WAL file would grow on, and while it grows every commit's
//! fsync also has to write the file's new size to the disk, which about doubles its time.
//! Should the checkpointer not catch up at all, the writer checkpoints itself at
//! [`BACKSTOP_PAGES`]: then only the pages not copied yet.

use rusqlite::hooks::Wal;
use rusqlite::{Connection, OpenFlags};
use std::cell::Cell;
use std::os::raw::c_int;
use std::path::Path;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A checkpoint is asked for every this many WAL pages: 4 MiB of the ledger's 2 KiB pages,
/// as much as SQLite's own default (1,000 pages) is with its default page size.
pub const EVERY_PAGES: i64 = 2000;

/// The writer checkpoints itself past this many pages.
pub const BACKSTOP_PAGES: i64 = 4 * EVERY_PAGES;

/// The most checkpoints one nudge runs while the writer keeps adding pages.
const CATCH_UP_ROUNDS: usize = 8;

/// The most pages the writer copies itself after a checkpointer's round, to let the WAL
/// start over.
pub const FINISH_PAGES: i64 = 256;

/// Frames an empty WAL is given room for when the ledger opens: a checkpoint's worth and the
/// few the writer adds before the WAL starts over.
pub const ROOM_FRAMES: i64 = EVERY_PAGES + FINISH_PAGES;

/// A WAL frame's header, before its page; the WAL's own header is [`WAL_HEADER`] bytes.
const FRAME_HEADER: u64 = 24;
const WAL_HEADER: u64 = 32;

/// Gives the empty WAL of the database at `db` room for [`ROOM_FRAMES`] pages of
/// `page_size`: zeros, written and synced, so that the commits after a start write inside
/// the file instead of growing it (each growing commit's fsync also writes the file's new
/// size). SQLite reads zeros as no WAL at all, and stops reading frames at the first one
/// that is not of the WAL's current generation, so the room holds nothing it would read. A
/// WAL that holds anything (frames a crash left behind: they are the ledger's) is left
/// alone. Without the space (a full disk) the WAL is left empty, to grow as commits need.
pub fn make_room(db: &Path, page_size: i64) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut path = db.as_os_str().to_owned();
    path.push("-wal");
    let mut wal = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    if wal.metadata()?.len() > 0 {
        return Ok(());
    }
    let frames = u64::try_from(ROOM_FRAMES).unwrap_or(0);
    let page = u64::try_from(page_size).unwrap_or(0);
    let mut left = WAL_HEADER + frames * (FRAME_HEADER + page);
    let zeros = [0u8; 64 * 1024];
    let mut fill = || {
        while left > 0 {
            let n = left.min(zeros.len() as u64);
            wal.write_all(&zeros[..n as usize])?;
            left -= n;
        }
        wal.sync_all()
    };
    fill().inspect_err(|_| {
        let _ = wal.set_len(0);
    })
}

/// A checkpoint the checkpointer ran: the WAL's length then, and how much of it is copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    pub log: i64,
    pub copied: i64,
}

/// Whether the writer, its WAL now `pages` long, copies the rest itself after the
/// checkpointer's `round`: when the WAL has not started over since, and a little is left.
/// Nothing left: the WAL starts over at the next commit by itself.
pub fn finish(pages: i64, round: Round) -> bool {
    let left = pages - round.copied;
    pages >= round.log && round.copied > 0 && left > 0 && left <= FINISH_PAGES
}

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
    /// The checkpointer's latest round, until the writer has looked at it.
    latest: Arc<Mutex<Option<Round>>>,
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
        let latest = Arc::new(Mutex::new(None));
        let rounds = latest.clone();
        let thread = std::thread::Builder::new()
            .name("checkpoint".into())
            .spawn(move || {
                for () in nudged {
                    catch_up(&conn, &rounds);
                }
            })
            .ok()?;
        Some(Checkpointer {
            nudge: Some(nudge),
            asked: 0,
            latest,
            thread: Some(thread),
        })
    }

    /// After a commit on the writer's connection `conn`: copies the little the
    /// checkpointer's latest round left, or asks for a checkpoint if one is due. Never waits
    /// for the checkpointer: one already asked for and not yet run will copy these pages too.
    pub fn after_commit(&mut self, conn: &Connection) {
        let pages = wal_pages();
        let round = self.latest.lock().ok().and_then(|mut r| r.take());
        if round.is_some_and(|r| finish(pages, r)) {
            // Busy while the checkpointer runs another round: it copies these pages then.
            checkpoint(conn);
            return;
        }
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

/// One PASSIVE checkpoint; `None` when another checkpoint was running, or this one failed
/// (logged; the next one tries again).
fn checkpoint(conn: &Connection) -> Option<Round> {
    let ran = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        let busy: i64 = r.get(0)?;
        let (log, copied) = (r.get(1)?, r.get(2)?);
        Ok((busy == 0).then_some(Round { log, copied }))
    });
    ran.unwrap_or_else(|e| {
        tracing::warn!(event = "ledger_checkpoint_failed", error = %e, "a checkpoint of the ledger's WAL failed; the next one tries again");
        None
    })
}

/// Checkpoints until everything in the WAL is copied (the writer then starts it over), the
/// writer's own checkpoint is running, or [`CATCH_UP_ROUNDS`] are done; each round is told
/// to the writer in `latest`.
fn catch_up(conn: &Connection, latest: &Mutex<Option<Round>>) {
    for _ in 0..CATCH_UP_ROUNDS {
        let Some(round) = checkpoint(conn) else {
            return;
        };
        if let Ok(mut l) = latest.lock() {
            *l = Some(round);
        }
        if round.copied >= round.log {
            return;
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
    fn a_checkpoint_is_asked_for_once_per_every_pages_and_afresh_after_the_wal_restarts() {
        const E: i64 = EVERY_PAGES;
        let cases = [
            // (pages now, asked at, due)
            (0, 0, false),
            (E - 1, 0, false),
            (E, 0, true),
            (E + E / 2, E, false),
            (2 * E - 1, E, false),
            (2 * E, E, true),
            // The WAL started over: counted from its start.
            (12, 2 * E, false),
            (E, 2 * E, true),
            (E - 1, E + 200, false),
        ];
        for (pages, asked, want) in cases {
            assert_eq!(due(pages, asked), want, "{pages} pages, asked at {asked}");
        }
    }

    #[test]
    fn the_writer_copies_what_a_round_left_only_when_it_is_little_and_the_wal_did_not_start_over() {
        const E: i64 = EVERY_PAGES;
        const F: i64 = FINISH_PAGES;
        let round = |log, copied| Round { log, copied };
        let cases = [
            // (pages now, the round, the writer copies the rest)
            // The writer added pages while the round ran.
            (E + 10, round(E, E), true),
            (E + F, round(E, E), true),
            (E + F + 1, round(E, E), false),
            // A reader kept the round from copying everything: what is left counts.
            (E + 10, round(E, E - 100), true),
            (E + 10, round(E, E - F), false),
            // Nothing added: the WAL starts over at the next commit by itself.
            (E, round(E, E), false),
            // The WAL started over since the round.
            (30, round(E, E), false),
            // A round that copied nothing (a reader held every frame).
            (E + 10, round(E, 0), false),
        ];
        for (pages, r, want) in cases {
            assert_eq!(finish(pages, r), want, "{pages} pages after {r:?}");
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
            cp.after_commit(&conn);
        }
        // The writer pauses between scans; the WAL starts over at a commit after the
        // checkpointer has copied it all.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let pages = insert();
            cp.after_commit(&conn);
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

    /// A checkpointer that never runs: its rounds are run by the test.
    fn idle_checkpointer() -> Checkpointer {
        Checkpointer {
            nudge: None,
            asked: 0,
            latest: Arc::default(),
            thread: None,
        }
    }

    #[test]
    fn a_writer_that_keeps_committing_through_a_round_copies_the_rest_and_the_wal_starts_over() {
        let (_dir, db, conn) = watched_ledger();
        let mut cp = idle_checkpointer();
        while insert_page(&conn) < EVERY_PAGES {}
        // The checkpointer's round, on a connection of its own, while the writer goes on: a
        // reader's snapshot stands for the commits the round does not see.
        let reader = Connection::open(&db).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let _: i64 = reader
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        for _ in 0..10 {
            insert_page(&conn);
        }
        let other = Connection::open(&db).unwrap();
        let round = checkpoint(&other).unwrap();
        reader.execute_batch("COMMIT").unwrap();
        assert!(round.copied < round.log, "{round:?}");
        // Left alone, the WAL grows on: not everything in it was copied.
        let pages = insert_page(&conn);
        assert!(pages > round.log, "{pages} pages after {round:?}");
        *cp.latest.lock().unwrap() = Some(round);
        cp.after_commit(&conn);
        assert!(cp.latest.lock().unwrap().is_none(), "the round was taken");
        assert!(
            insert_page(&conn) < 10,
            "the WAL started over at the commit after the writer copied the rest"
        );
    }

    #[test]
    fn without_a_checkpointer_the_writer_checkpoints_at_the_backstop() {
        let (_dir, _db, conn) = watched_ledger();
        let mut longest = 0;
        let mut restarted = false;
        for _ in 0..BACKSTOP_PAGES {
            let pages = insert_page(&conn);
            restarted |= pages < longest;
            longest = longest.max(pages);
        }
        assert!(restarted, "the WAL started over (longest {longest} pages)");
        // Past it by no more than the commit that crossed it (a row of three pages).
        assert!(longest < BACKSTOP_PAGES + 4, "{longest} pages");
        assert!(longest >= BACKSTOP_PAGES, "{longest} pages");
    }

    /// The WAL's room in bytes, for the ledger's page size.
    fn room() -> u64 {
        WAL_HEADER + ROOM_FRAMES as u64 * (FRAME_HEADER + crate::ledger::schema::PAGE_SIZE as u64)
    }

    #[test]
    fn a_new_ledgers_wal_has_room_and_commits_until_it_starts_over_do_not_grow_it() {
        let (_dir, db, conn) = watched_ledger();
        assert_eq!(wal_len(&db), room());
        let mut rows = 0;
        while insert_page(&conn) < EVERY_PAGES {
            rows += 1;
        }
        assert_eq!(wal_len(&db), room(), "{rows} commits wrote inside the room");
        drop(conn);
        // The room was never read as frames: the rows are all there, and only they.
        let conn = crate::ledger::schema::open_rw(&db).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, rows + 1);
    }

    #[test]
    fn a_wal_a_crash_left_is_left_alone_and_its_commits_are_kept() {
        let (dir, db, conn) = watched_ledger();
        for _ in 0..20 {
            insert_page(&conn);
        }
        // What the disk holds after a crash: the database file and the WAL's commits, which
        // a close would have copied away.
        let wal = std::fs::read(format!("{}-wal", db.display())).unwrap();
        let end = crate::ledger::durability_tests::commit_ends(&wal)
            .last()
            .copied()
            .unwrap();
        let crashed = dir.path().join("crashed.db");
        std::fs::copy(&db, &crashed).unwrap();
        std::fs::write(format!("{}-wal", crashed.display()), &wal[..end]).unwrap();
        make_room(&crashed, crate::ledger::schema::PAGE_SIZE).unwrap();
        assert_eq!(wal_len(&crashed), end as u64, "left alone");
        let conn = crate::ledger::schema::open_rw(&crashed).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 20);
    }
}
