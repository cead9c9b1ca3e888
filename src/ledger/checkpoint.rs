//! The WAL's checkpoints, run by the writer once its callers were answered.
//!
//! SQLite checkpoints inside the commit that takes the WAL past `wal_autocheckpoint` pages:
//! that commit then waits while the pages are copied into the database file and the file is
//! fsynced, and on the ledger's writer that commit is a cashier's scan. Here the writer counts
//! the WAL's pages (SQLite's WAL hook) and, every [`EVERY_PAGES`], runs a PASSIVE checkpoint
//! itself after the commit, its callers answered: only work that arrives meanwhile waits,
//! about a millisecond, once in some 550 scans.
//!
//! Run between the writer's commits, a checkpoint meets none while it copies: it copies
//! everything no reader's snapshot still needs, and the WAL starts over at the next commit.
//! (One on a connection of its own would always leave behind the pages committed while it
//! ran, and its writes would slow the fsyncs of those commits.) When a reader held pages
//! back, the writer tries again [`RETRY_PAGES`] later: a WAL that does not start over grows,
//! and a commit that grows the file has its fsync also write the file's new size, which
//! about doubles it. Should checkpoints keep failing, the writer checkpoints inside the
//! commit at [`BACKSTOP_PAGES`].

use rusqlite::Connection;
use rusqlite::hooks::Wal;
use std::cell::Cell;
use std::os::raw::c_int;
use std::path::{Path, PathBuf};

/// A checkpoint runs every this many WAL pages: 4 MiB of the ledger's 2 KiB pages, as much
/// as SQLite's own default (1,000 pages) is with its default page size.
pub const EVERY_PAGES: i64 = 2000;

/// A checkpoint after which the WAL did not start over is tried again this many pages later.
pub const RETRY_PAGES: i64 = 256;

/// The writer checkpoints inside the commit past this many pages.
pub const BACKSTOP_PAGES: i64 = 4 * EVERY_PAGES;

/// Frames an empty WAL is given room for when the ledger opens: a checkpoint's worth, and
/// as many again as a retry waits for.
pub const ROOM_FRAMES: i64 = EVERY_PAGES + RETRY_PAGES;

/// A WAL frame's header, before its page; the WAL's own header is [`WAL_HEADER`] bytes.
const FRAME_HEADER: u64 = 24;
const WAL_HEADER: u64 = 32;

/// The WAL file of the database at `db`.
pub(super) fn wal_of(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

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
    let mut wal = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(wal_of(db))?;
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
        let _ = wal.checkpoint();
    }
    Ok(())
}

/// The WAL's length in pages after the latest commit on this thread.
fn wal_pages() -> i64 {
    WAL_PAGES.with(Cell::get)
}

/// The writer's count towards its next checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoints {
    /// The WAL's length at which the next checkpoint is due.
    due_at: i64,
    /// The WAL's length after the latest commit.
    last: i64,
}

impl Default for Checkpoints {
    fn default() -> Self {
        Checkpoints {
            due_at: EVERY_PAGES,
            last: 0,
        }
    }
}

impl Checkpoints {
    /// After a commit on the writer's connection `conn`, its callers answered: runs a
    /// checkpoint if one is due.
    pub fn after_commit(&mut self, conn: &Connection) {
        if self.committed(wal_pages()) {
            checkpoint(conn);
            self.checkpointed();
        }
    }

    /// A commit left the WAL `pages` long: whether a checkpoint is due. One is at
    /// [`EVERY_PAGES`] from the WAL's start, and again [`RETRY_PAGES`] after one after which
    /// the WAL did not start over.
    pub fn committed(&mut self, pages: i64) -> bool {
        if pages < self.last {
            // The WAL started over.
            self.due_at = EVERY_PAGES;
        }
        self.last = pages;
        pages >= self.due_at
    }

    /// A checkpoint ran: unless the WAL starts over at the next commit, the next one is due
    /// [`RETRY_PAGES`] later.
    pub fn checkpointed(&mut self) {
        self.due_at = self.last + RETRY_PAGES;
    }
}

/// One PASSIVE checkpoint. A failure is logged; the next checkpoint tries again.
fn checkpoint(conn: &Connection) {
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
        tracing::warn!(event = "ledger_checkpoint_failed", error = %e, "a checkpoint of the ledger's WAL failed; the next one tries again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_is_due_every_pages_from_the_wals_start_and_retried_until_it_starts_over() {
        const E: i64 = EVERY_PAGES;
        const R: i64 = RETRY_PAGES;
        // (WAL pages after a commit, a checkpoint is due); a due one runs.
        let cases: &[&[(i64, bool)]] = &[
            &[
                (3, false),
                (E - 1, false),
                (E, true),
                (4, false),
                (E - 1, false),
                (E + 2, true),
            ],
            // A commit of several pages crosses the mark.
            &[(E - 2, false), (E + 5, true), (6, false)],
            // The WAL did not start over (a reader held pages back): tried again R later.
            &[
                (E, true),
                (E + 3, false),
                (E + R - 1, false),
                (E + R, true),
                (2, false),
            ],
            &[
                (E, true),
                (E + R, true),
                (E + 2 * R, true),
                (3, false),
                (E + 3, true),
            ],
            // Started over after a retry: counted from its start again.
            &[
                (E, true),
                (E + R, true),
                (3, false),
                (R + 3, false),
                (E - 1, false),
                (E, true),
            ],
        ];
        for commits in cases {
            let mut c = Checkpoints::default();
            for &(pages, want) in *commits {
                assert_eq!(c.committed(pages), want, "{pages} pages in {commits:?}");
                if want {
                    c.checkpointed();
                }
            }
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
        std::fs::metadata(wal_of(db)).map(|m| m.len()).unwrap_or(0)
    }

    /// Commits one row at a time, each followed by the writer's checkpoint step, until the
    /// WAL starts over; answers the longest WAL meanwhile.
    fn commit_until_the_wal_starts_over(conn: &Connection, cp: &mut Checkpoints) -> i64 {
        let mut longest = 0;
        loop {
            let pages = insert_page(conn);
            cp.after_commit(conn);
            if pages < longest {
                return longest;
            }
            longest = pages;
            assert!(longest < BACKSTOP_PAGES, "the WAL never started over");
        }
    }

    #[test]
    fn the_writers_checkpoint_lets_the_wal_start_over_inside_its_room() {
        let (_dir, db, conn) = watched_ledger();
        let mut cp = Checkpoints::default();
        for _ in 0..3 {
            let longest = commit_until_the_wal_starts_over(&conn, &mut cp);
            // The commit that crossed the mark is the last before the WAL starts over.
            assert!(longest >= EVERY_PAGES, "{longest} pages");
            assert!(longest < EVERY_PAGES + 4, "{longest} pages");
        }
        assert_eq!(wal_len(&db), room(), "the WAL never outgrew its room");
        drop(conn);
        assert_eq!(wal_len(&db), 0, "the writer's close removed the WAL");
    }

    #[test]
    fn a_reader_that_holds_pages_back_is_waited_out_by_retries() {
        let (_dir, db, conn) = watched_ledger();
        let mut cp = Checkpoints::default();
        while insert_page(&conn) < EVERY_PAGES / 2 {
            cp.after_commit(&conn);
        }
        // A reader whose snapshot keeps the later pages from being copied.
        let reader = Connection::open(&db).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let _: i64 = reader
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        let mut pages = 0;
        while pages < EVERY_PAGES + 2 * RETRY_PAGES {
            pages = insert_page(&conn);
            cp.after_commit(&conn);
        }
        assert!(insert_page(&conn) > pages, "held back, the WAL went on");
        reader.execute_batch("COMMIT").unwrap();
        let longest = commit_until_the_wal_starts_over(&conn, &mut cp);
        assert!(
            longest <= pages + RETRY_PAGES + 4,
            "started over at the next retry ({longest} pages)"
        );
    }

    #[test]
    fn checkpoints_that_never_run_leave_the_writer_its_backstop() {
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
        let wal = std::fs::read(wal_of(&db)).unwrap();
        let end = crate::ledger::durability_tests::commit_ends(&wal)
            .last()
            .copied()
            .unwrap();
        let crashed = dir.path().join("crashed.db");
        std::fs::copy(&db, &crashed).unwrap();
        std::fs::write(wal_of(&crashed), &wal[..end]).unwrap();
        make_room(&crashed, crate::ledger::schema::PAGE_SIZE).unwrap();
        assert_eq!(wal_len(&crashed), end as u64, "left alone");
        let conn = crate::ledger::schema::open_rw(&crashed).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 20);
    }
}
