//! The ledger: the durable truth about every scan and redemption.
//!
//! One thread owns the SQLite connection (rusqlite's `Connection` is not `Sync`, and one
//! writer means no lock contention); async code talks to it through [`Ledger`], which ships
//! closures over a channel and awaits their results. All SQL lives in [`store`].

pub mod schema;
pub mod store;

use rusqlite::Connection;
use std::path::Path;
use std::sync::mpsc;
use tokio::sync::oneshot;

pub use schema::{OpenError, open_ro, open_rw};

/// An online, consistent copy of the ledger (SQLite's backup API) while the daemon writes.
/// Written to `dest.partial` first and renamed, so `dest` is never half a database.
pub fn backup(src: &Path, dest: &Path) -> Result<u64, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let from = open_ro(src).map_err(|e| e.to_string())?;
    let partial = dest.with_extension("partial");
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
pub use store::Row;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("ledger: the ledger thread has stopped")]
    Stopped,
}

/// A handle to the ledger thread; cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    jobs: mpsc::Sender<Job>,
}

impl Ledger {
    /// Opens the ledger (schema migrated) and starts its thread.
    pub fn open(path: &Path) -> Result<Ledger, OpenError> {
        let conn = open_rw(path)?;
        Ok(Self::start(conn))
    }

    pub fn start(mut conn: Connection) -> Ledger {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("ledger".into())
            .spawn(move || {
                // Ends when every handle is dropped; the connection closes with it.
                for job in rx {
                    job(&mut conn);
                }
            })
            .expect("spawning the ledger thread");
        Ledger { jobs: tx }
    }

    /// Runs `f` on the ledger thread.
    pub async fn call<T, F>(&self, f: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Box::new(move |conn| {
                let _ = tx.send(f(conn));
            }))
            .map_err(|_| LedgerError::Stopped)?;
        rx.await
            .map_err(|_| LedgerError::Stopped)?
            .map_err(Into::into)
    }
}

#[cfg(test)]
mod model_tests;
