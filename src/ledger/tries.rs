//! The dispatcher's work: which rows are due, a try's start (its `attempts` row, written
//! before the first byte is sent), its end (what WeChat answered, through the pure state
//! machine, and the next try's time), and the rows that expire unsettled.

use super::sql::{COLUMNS, Result, exec, get_in, immediate, needs_work, one, read_row};
use crate::clock::Millis;
use crate::model::api::Api;
use crate::model::backoff;
use crate::model::call::{CallLog, Confirmation, Retry};
use crate::model::row::Row;
use crate::model::state::{self, Schedule, Settle};
use rusqlite::{Connection, params};
use std::collections::HashSet;

/// Rows of `api` due for work, oldest scan first: queued ones, and cancelled ones whose
/// outcome is unknown (to be queried, never redeemed). Rows in `exclude` (in flight) are
/// skipped, and do not count against `limit`.
pub fn due(
    conn: &Connection,
    now: Millis,
    limit: usize,
    exclude: &HashSet<i64>,
    api: Api,
) -> Result<Vec<Row>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    // The partial index walks pending rows in scan order and stops after LIMIT; without it
    // SQLite sorts the whole backlog on every dispatcher turn. The API is part of the query:
    // filtered afterwards, another API's rows in between would take the LIMIT's places.
    let mut stmt = conn.prepare_cached(&format!(
        concat!(
            "SELECT {COLUMNS} FROM redemptions INDEXED BY redemptions_pending WHERE ",
            needs_work!(),
            " AND api = ?3 AND next_attempt_at <= ?1 ORDER BY id LIMIT ?2"
        ),
        COLUMNS = COLUMNS
    ))?;
    // Over-fetch by the excluded count so rows already in flight do not starve the rest.
    let fetch = (limit + exclude.len()) as i64;
    let rows = stmt.query_map(params![now, fetch, api.as_str()], read_row)?;
    let mut out = Vec::new();
    for r in rows {
        let r = r?;
        if exclude.contains(&r.id) {
            continue;
        }
        out.push(r);
        if out.len() == limit {
            break;
        }
    }
    Ok(out)
}

/// The earliest `next_attempt_at` later than `now` among rows that still need work. Rows
/// due already are either being worked on or waiting for a free slot; both end in a wake-up.
pub fn next_due_after(conn: &Connection, apis: &[Api], now: Millis) -> Result<Option<Millis>> {
    let mut best: Option<Millis> = None;
    for api in apis {
        let t: Option<Millis> = one(
            conn,
            concat!(
                "SELECT min(next_attempt_at) FROM redemptions WHERE ",
                needs_work!(),
                " AND api = ?1 AND next_attempt_at > ?2"
            ),
            params![api.as_str(), now],
        )?;
        best = match (best, t) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(best)
}

/// Records that a redeeming call (`consume`, `use`) is about to be sent: the row must still
/// be `queued` with the `unconfirmed` flag the try read, and is marked `unconfirmed` in the
/// same commit. This is the intent that survives a crash. `earlier` are this try's calls made
/// so far (a `code/get`), written in the same commit. Returns `None` when the row may no
/// longer be redeemed (the till refused it meanwhile, or another try has sent a redeeming
/// call since the row was read); the earlier calls are written all the same.
pub fn begin_call(
    conn: &mut Connection,
    id: i64,
    unconfirmed: bool,
    call: &str,
    at: Millis,
    earlier: &[CallLog],
) -> Result<Option<i64>> {
    let tx = immediate(conn)?;
    write_calls(&tx, id, earlier)?;
    let n = exec(
        &tx,
        "UPDATE redemptions SET unconfirmed = 1, updated_at = ?2 \
         WHERE id = ?1 AND state = 'queued' AND unconfirmed = ?3",
        params![id, at, unconfirmed],
    )?;
    if n == 0 {
        tx.commit()?;
        return Ok(None);
    }
    exec(
        &tx,
        "INSERT INTO attempts (redemption_id, call, started_at) VALUES (?1, ?2, ?3)",
        params![id, call, at],
    )?;
    let attempt = tx.last_insert_rowid();
    tx.commit()?;
    Ok(Some(attempt))
}

/// Writes finished calls of a row to the audit trail.
pub fn write_calls(conn: &Connection, id: i64, calls: &[CallLog]) -> Result<()> {
    for c in calls {
        let r = &c.record;
        match c.attempt {
            Some(attempt) => exec(
                conn,
                "UPDATE attempts SET ended_at = ?2, http_status = ?3, errcode = ?4, outcome = ?5, \
                 detail = ?6 WHERE id = ?1",
                params![
                    attempt,
                    c.ended_at,
                    r.http_status,
                    r.errcode,
                    r.outcome,
                    r.detail
                ],
            )?,
            None => exec(
                conn,
                "INSERT INTO attempts (redemption_id, call, started_at, ended_at, http_status, \
                 errcode, outcome, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    id,
                    c.call,
                    c.started_at,
                    c.ended_at,
                    r.http_status,
                    r.errcode,
                    r.outcome,
                    r.detail
                ],
            )?,
        };
    }
    Ok(())
}

/// [`write_calls`] as a transaction of its own (calls left over when a try ends without a
/// result to write).
pub fn record_calls(conn: &mut Connection, id: i64, calls: &[CallLog]) -> Result<()> {
    let tx = immediate(conn)?;
    write_calls(&tx, id, calls)?;
    tx.commit()
}

/// Applies what a try found out (through the pure state machine) and schedules the next,
/// writing the try's calls in the same commit.
pub fn apply(
    conn: &mut Connection,
    id: i64,
    settle: &Settle,
    info: &Confirmation,
    retry: Retry,
    at: Millis,
    calls: &[CallLog],
) -> Result<(Row, bool)> {
    let tx = immediate(conn)?;
    write_calls(&tx, id, calls)?;
    let row = get_in(&tx, id)?;
    let change = state::settle(row.snapshot(), settle);
    let tried = !matches!(settle, Settle::NotRedeemed);
    let attempts = row.attempts + i64::from(tried);
    let next = match change.schedule {
        Schedule::Never => None,
        Schedule::Now => Some(at),
        Schedule::Backoff | Schedule::Throttled => {
            let d = backoff::delay(
                u32::try_from(attempts).unwrap_or(u32::MAX),
                retry.base,
                retry.max,
                change.schedule == Schedule::Throttled,
                retry.jitter,
            );
            Some(at + d.as_millis() as i64)
        }
    };
    let note = match settle {
        Settle::Redeemed { note: Some(n) } => Some(n.as_str()),
        _ => None,
    };
    let changed = change.state != row.state;
    exec(
        &tx,
        "UPDATE redemptions SET state = ?2, unconfirmed = ?3, reason = coalesce(?4, reason), \
         attempts = ?5, next_attempt_at = ?6, updated_at = ?7, \
         redeemed_at = CASE WHEN ?8 THEN ?7 ELSE redeemed_at END, \
         openid = coalesce(?9, openid), note = coalesce(?10, note), \
         wechatpay_use_time = coalesce(?11, wechatpay_use_time), \
         card_id = coalesce(?12, card_id), title = coalesce(?13, title), \
         kind = coalesce(?14, kind), value = coalesce(?15, value), \
         stock_id = coalesce(stock_id, ?16) WHERE id = ?1",
        params![
            id,
            change.state.as_str(),
            change.unconfirmed,
            change.reason,
            attempts,
            next,
            at,
            change.redeemed,
            info.openid,
            note,
            info.wechatpay_use_time,
            info.card_id,
            info.meta.as_ref().map(|m| &m.title),
            info.meta.as_ref().map(|m| &m.kind),
            info.meta.as_ref().and_then(|m| m.value),
            info.stock_id
        ],
    )?;
    let row = get_in(&tx, id)?;
    tx.commit()?;
    Ok((row, changed))
}

/// Moves rows unsettled for longer than `max_age` to review. Returns the rows moved.
pub fn expire(conn: &mut Connection, now: Millis, max_age_ms: i64) -> Result<Vec<Row>> {
    let cutoff = now - max_age_ms;
    // The dispatcher asks on every turn: answer the common "nothing is that old" with a read,
    // not a write transaction (each commit is an fsync).
    let any: bool = one(
        conn,
        concat!(
            "SELECT EXISTS(SELECT 1 FROM redemptions WHERE ",
            needs_work!(),
            " AND scanned_at < ?1)"
        ),
        [cutoff],
    )?;
    if !any {
        return Ok(Vec::new());
    }
    let tx = immediate(conn)?;
    let old: Vec<Row> = {
        let mut stmt = tx.prepare(&format!(
            concat!(
                "SELECT {COLUMNS} FROM redemptions WHERE ",
                needs_work!(),
                " AND scanned_at < ?1 ORDER BY id"
            ),
            COLUMNS = COLUMNS
        ))?;
        stmt.query_map([cutoff], read_row)?
            .collect::<Result<Vec<_>>>()?
    };
    let mut moved = Vec::new();
    for row in old {
        if let Some(change) = state::expire(row.snapshot()) {
            exec(
                &tx,
                "UPDATE redemptions SET state = ?2, reason = ?3, next_attempt_at = NULL, updated_at = ?4 \
                 WHERE id = ?1",
                params![row.id, change.state.as_str(), change.reason, now],
            )?;
            moved.push(get_in(&tx, row.id)?);
        }
    }
    tx.commit()?;
    Ok(moved)
}

/// When the oldest unsettled row will pass `max_age`.
pub fn next_expiry_at(conn: &Connection, max_age_ms: i64) -> Result<Option<Millis>> {
    let oldest: Option<Millis> = one(
        conn,
        concat!(
            "SELECT min(scanned_at) FROM redemptions WHERE ",
            needs_work!()
        ),
        [],
    )?;
    Ok(oldest.map(|t| t + max_age_ms))
}

/// WeChat answered again after failures: make every waiting row of that API due now, so
/// the backlog drains at once and in scan order instead of each waiting out its backoff.
pub fn fast_forward(conn: &mut Connection, api: Api, now: Millis) -> Result<usize> {
    conn.execute(
        concat!(
            "UPDATE redemptions SET next_attempt_at = ?1 WHERE ",
            needs_work!(),
            " AND api = ?2 AND next_attempt_at > ?1"
        ),
        params![now, api.as_str()],
    )
}
