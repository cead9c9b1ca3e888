//! Reading the ledger: one row, a filtered list, counts by state, the audit trail of a
//! row, and the health probe.

use super::sql::{COLUMNS, Result, exec, immediate, one, read_row};
use crate::clock::Millis;
use crate::model::row::Row;
use crate::model::state::State;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// Whether the ledger holds a row for the routed code `code`.
pub fn is_recorded(conn: &Connection, code: &str) -> Result<bool> {
    one(
        conn,
        "SELECT EXISTS(SELECT 1 FROM redemptions WHERE code = ?1 AND api IS NOT NULL)",
        [code],
    )
}

pub fn get(conn: &Connection, id: i64) -> Result<Option<Row>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM redemptions WHERE id = ?1"))?
        .query_row([id], read_row)
        .optional()
}

pub fn pending_count(conn: &Connection) -> Result<i64> {
    one(
        conn,
        "SELECT count(*) FROM redemptions WHERE state = 'queued'",
        [],
    )
}

/// Filters for the redemption log.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub state: Option<State>,
    pub since: Option<Millis>,
    pub until: Option<Millis>,
    /// Matches the end of the code.
    pub code_suffix: Option<String>,
    pub limit: Option<usize>,
    /// Newest first (the API) rather than oldest first (the CLI log, exports).
    pub newest_first: bool,
    /// Only review items no manager has resolved yet.
    pub unresolved: bool,
    /// Only the rows of this sale.
    pub order_id: Option<String>,
}

pub fn list(conn: &Connection, f: &Filter) -> Result<Vec<Row>> {
    let order = if f.newest_first { "DESC" } else { "ASC" };
    let unresolved = if f.unresolved {
        "AND resolved_at IS NULL"
    } else {
        ""
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM redemptions \
         WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR scanned_at >= ?2) \
         AND (?3 IS NULL OR scanned_at < ?3) \
         AND (?4 IS NULL OR substr(code, -length(?4)) = ?4) {unresolved} \
         AND (?6 IS NULL OR order_id = ?6) \
         ORDER BY id {order} LIMIT ?5"
    ))?;
    let limit = f.limit.map(|l| l as i64).unwrap_or(-1);
    stmt.query_map(
        params![
            f.state.map(State::as_str),
            f.since,
            f.until,
            f.code_suffix,
            limit,
            f.order_id
        ],
        read_row,
    )?
    .collect()
}

/// One group of [`counts`]: api, route index, state, rows.
pub type Count = (Option<String>, Option<i64>, String, i64);

/// Rows by api, route and state, for metrics and summaries.
pub fn counts(
    conn: &Connection,
    since: Option<Millis>,
    until: Option<Millis>,
) -> Result<Vec<Count>> {
    let mut stmt = conn.prepare_cached(
        "SELECT api, route, state, count(*) FROM redemptions \
         WHERE (?1 IS NULL OR scanned_at >= ?1) AND (?2 IS NULL OR scanned_at < ?2) \
         GROUP BY api, route, state ORDER BY api, route, state",
    )?;
    stmt.query_map(params![since, until], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })?
    .collect()
}

/// The scan time of the oldest row still waiting for WeChat.
pub fn oldest_pending(conn: &Connection) -> Result<Option<Millis>> {
    one(
        conn,
        "SELECT min(scanned_at) FROM redemptions WHERE state = 'queued'",
        [],
    )
}

/// Proves the ledger takes writes (for health checks): an immediate transaction, rolled back.
pub fn probe_writable(conn: &mut Connection) -> Result<()> {
    let tx = immediate(conn)?;
    exec(&tx, "UPDATE redemptions SET id = id WHERE 0", [])?;
    tx.rollback()
}

/// One API call of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    pub call: String,
    pub started_at: Millis,
    pub ended_at: Option<Millis>,
    pub http_status: Option<i64>,
    pub errcode: Option<i64>,
    pub outcome: Option<String>,
    pub detail: Option<String>,
}

pub fn attempts_of(conn: &Connection, id: i64) -> Result<Vec<Attempt>> {
    let mut stmt = conn.prepare(
        "SELECT call, started_at, ended_at, http_status, errcode, outcome, detail \
         FROM attempts WHERE redemption_id = ?1 ORDER BY id",
    )?;
    stmt.query_map([id], |r| {
        Ok(Attempt {
            call: r.get(0)?,
            started_at: r.get(1)?,
            ended_at: r.get(2)?,
            http_status: r.get(3)?,
            errcode: r.get(4)?,
            outcome: r.get(5)?,
            detail: r.get(6)?,
        })
    })?
    .collect()
}
