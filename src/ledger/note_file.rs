//! The claim notes' fast path: a file beside the ledger (`<database>.claims`) that each
//! claim is appended to, with one `write()`, before it is sent to the store.
//!
//! It is as durable as the ledger note it replaces (committed, not yet fsynced): a write
//! that returned survives `kill -9`, a power cut may take it. It costs the cashier a system
//! call instead of a round trip to the ledger thread. At start the last run's notes that no
//! row took are moved into the ledger (`claim_notes`), where the follower settles them.

use crate::clock::Millis;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One claim about to be sent: its key and the scan id its value names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub key: String,
    pub scan: String,
    pub at: Millis,
}

pub struct NoteFile {
    path: PathBuf,
    file: Mutex<File>,
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// `key \t at \t scan`: the scan id last, so that it may hold any character but a newline.
fn line(n: &Note) -> String {
    format!("{}\t{}\t{}\n", n.key, n.at, n.scan)
}

/// The notes in `text`; a line a crash cut short is skipped.
fn parse(text: &str) -> Vec<Note> {
    text.split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n'))
        .filter_map(|l| {
            let mut parts = l.splitn(3, '\t');
            let key = parts.next()?;
            let at = parts.next()?.parse().ok()?;
            let scan = parts.next()?;
            // A claim key is 64 hex digits; a line cut short before its end is not one
            // (cut in its scan id, it names a scan no claim has: harmless).
            let is_key = key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit());
            (is_key && !scan.is_empty()).then(|| Note {
                key: key.to_string(),
                scan: scan.to_string(),
                at,
            })
        })
        .collect()
}

impl NoteFile {
    /// The notes file of the ledger at `database`, and what the last run left in it.
    pub fn open(database: &Path) -> io::Result<(NoteFile, Vec<Note>)> {
        let mut name = database.as_os_str().to_owned();
        name.push(".claims");
        let path = PathBuf::from(name);
        let mut text = String::new();
        match File::open(&path) {
            Ok(mut f) => {
                f.read_to_string(&mut text)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut file = open_append(&path)?;
        // A line a crash cut short is ended, so the next note starts a line of its own.
        if !text.is_empty() && !text.ends_with('\n') {
            file.write_all(b"\n")?;
        }
        Ok((
            NoteFile {
                path,
                file: Mutex::new(file),
            },
            parse(&text),
        ))
    }

    pub fn append(&self, n: &Note) -> io::Result<()> {
        let mut f = self
            .file
            .lock()
            .map_err(|_| io::Error::other("the notes file's lock is poisoned"))?;
        f.write_all(line(n).as_bytes())
    }

    /// Keeps only the notes from `keep_after` on, rewritten beside the file and renamed over
    /// it (a crash leaves the old file or the new one, never half of one). Called once the
    /// last run's notes are in the ledger, and now and then, so the file stays small.
    pub fn compact(&self, keep_after: Millis) -> io::Result<usize> {
        let mut f = self
            .file
            .lock()
            .map_err(|_| io::Error::other("the notes file's lock is poisoned"))?;
        let text = std::fs::read_to_string(&self.path)?;
        let kept: Vec<Note> = parse(&text)
            .into_iter()
            .filter(|n| n.at >= keep_after)
            .collect();
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".new");
        let tmp = PathBuf::from(tmp);
        let mut out = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        for n in &kept {
            out.write_all(line(n).as_bytes())?;
        }
        std::fs::rename(&tmp, &self.path)?;
        *f = open_append(&self.path)?;
        Ok(kept.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(i: i64) -> Note {
        Note {
            key: format!("{i:064x}"),
            scan: format!("till 1-{i}-abc"),
            at: i,
        }
    }

    #[test]
    fn notes_survive_a_restart_a_torn_line_is_skipped_and_compaction_keeps_the_young() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("redeemd.db");
        let (f, left) = NoteFile::open(&db).unwrap();
        assert!(left.is_empty());
        for i in 1..=3 {
            f.append(&note(i)).unwrap();
        }
        drop(f);
        // A kill in the middle of a write.
        let path = dir.path().join("redeemd.db.claims");
        let mut raw = OpenOptions::new().append(true).open(&path).unwrap();
        raw.write_all(b"deadbeef\t4\ttill").unwrap();
        let (f, left) = NoteFile::open(&db).unwrap();
        assert_eq!(left, [note(1), note(2), note(3)]);
        f.append(&note(4)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "only the service reads its notes");
        assert_eq!(f.compact(2).unwrap(), 3);
        f.append(&note(5)).unwrap();
        drop(f);
        let (_, left) = NoteFile::open(&db).unwrap();
        assert_eq!(left, [note(2), note(3), note(4), note(5)]);
    }
}
