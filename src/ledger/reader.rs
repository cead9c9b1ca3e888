//! A read-only connection of its own, for questions that must not wait for the ledger's
//! writer thread (WAL readers never block on the writer).

use super::queries;
use super::schema::{OpenError, open_ro};
use rusqlite::Connection;
use std::path::Path;
use std::sync::Mutex;

pub struct Reader {
    conn: Mutex<Connection>,
}

impl Reader {
    pub fn open(database: &Path) -> Result<Reader, OpenError> {
        Ok(Reader {
            conn: Mutex::new(open_ro(database)?),
        })
    }

    /// Whether the ledger holds a row for the routed code `code`; when it cannot tell, yes.
    pub fn maybe_recorded(&self, code: &str) -> bool {
        let Ok(conn) = self.conn.lock() else {
            return true;
        };
        queries::is_recorded(&conn, code).unwrap_or(true)
    }
}
