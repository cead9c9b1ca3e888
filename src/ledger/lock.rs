//! One daemon per ledger: an exclusive lock on a file beside it, held for the process's life
//! and released by the kernel when the process dies (however it dies). A second `run` on the
//! same ledger would dispatch the same rows (a second consume for a card code whose answer
//! was lost), and unlink the first one's socket; it stops before anything else instead.
//! Readers (`log`, `export`, `backup`, `review`) take no lock.

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Held while it lives.
#[derive(Debug)]
pub struct LedgerLock {
    _file: Flock<File>,
}

/// The lock's file for the ledger at `database`: `DATABASE.lock`.
pub fn lock_path(database: &Path) -> PathBuf {
    let mut p = database.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

impl LedgerLock {
    /// Takes the lock, or says which process holds it. Writes this process's id into the
    /// file, for the next one's message.
    pub fn take(database: &Path) -> Result<LedgerLock, String> {
        let path = lock_path(database);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("{}: cannot create its folder: {e}", path.display()))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("{}: cannot open the ledger's lock: {e}", path.display()))?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let by = if holder.is_empty() {
                    "another process".to_string()
                } else {
                    format!("pid {holder}")
                };
                return Err(format!(
                    "ledger {} is in use by {by} (another `redeemd run`): stop it first; \
                     `redeemd log`, `export` and `backup` can read it meanwhile",
                    database.display()
                ));
            }
            Err((_, e)) => {
                return Err(format!("{}: cannot lock: {e}", path.display()));
            }
        };
        let pid = std::process::id().to_string();
        let written = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(pid.as_bytes()));
        if let Err(e) = written {
            return Err(format!("{}: cannot write: {e}", path.display()));
        }
        Ok(LedgerLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("redeemd.db");
        let first = LedgerLock::take(&db).unwrap();
        let e = LedgerLock::take(&db).unwrap_err();
        assert!(
            e.contains(&format!("in use by pid {}", std::process::id())),
            "{e}"
        );
        drop(first);
        assert!(LedgerLock::take(&db).is_ok());
    }
}
