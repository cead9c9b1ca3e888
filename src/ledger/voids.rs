//! Voids and returns: a sale's void request, decided by the pure void plan, and the
//! return of a used merchant coupon, its request number fixed with the void.

use super::sql::{COLUMNS, Result, exec, get_in, immediate, one, read_row};
use crate::clock::Millis;
use crate::model::backoff;
use crate::model::call::{CallLog, Retry};
use crate::model::row::{Row, VoidState};
use crate::model::state::State;
use crate::model::void::{
    ReturnStep, VOID_FAILED, VOIDED_BEFORE_REDEMPTION, VOIDED_CARD, VoidPlan, plan as void_plan,
};
use rusqlite::{Connection, params};

/// A void of a sale, as asked for.
#[derive(Debug, Clone)]
pub struct VoidRequest<'a> {
    pub reason: &'a str,
    pub by: Option<&'a str>,
    pub at: Millis,
    /// The return's idempotency key if a coupon must be given back: fixed by this commit.
    pub return_request_no: &'a str,
}

/// What a void came to (see `model::void::plan`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Voided {
    /// Done with the row as it is now: cancelled, returned, in review or nothing to undo.
    Done(VoidPlan, Box<Row>),
    NotFound,
    /// The row was voided before: the first void stands.
    Already(Box<Row>),
}

/// Voids the sale a row belongs to, deciding by `model::void::plan`. The void is recorded
/// (and audited in `attempts`) in one commit; a coupon's return is then pending with its
/// `return_request_no` fixed here, and carried out by the void worker.
pub fn void(conn: &mut Connection, id: i64, v: &VoidRequest) -> Result<Voided> {
    let tx = immediate(conn)?;
    let Some(row) = super::queries::get(&tx, id)? else {
        return Ok(Voided::NotFound);
    };
    if row.void.is_some() {
        return Ok(Voided::Already(Box::new(row)));
    }
    let plan = void_plan(row.state, row.api());
    // In review: a manager decides first; nothing is written.
    if plan == VoidPlan::ResolveFirst {
        return Ok(Voided::Done(plan, Box::new(row)));
    }
    let (state, reason, void_state, rrn, next) = match plan {
        VoidPlan::Cancel => (
            State::Cancelled,
            Some(format!("{VOIDED_BEFORE_REDEMPTION}: {}", v.reason)),
            VoidState::Done,
            None,
            None,
        ),
        VoidPlan::Return => (
            row.state,
            None,
            VoidState::Pending,
            Some(v.return_request_no),
            Some(v.at),
        ),
        VoidPlan::Review => (
            State::Review,
            Some(VOIDED_CARD.to_string()),
            VoidState::Done,
            None,
            None,
        ),
        VoidPlan::Nothing | VoidPlan::ResolveFirst => {
            (row.state, None, VoidState::Done, None, None)
        }
    };
    exec(
        &tx,
        "UPDATE redemptions SET state = ?2, reason = coalesce(?3, reason), void_state = ?4, \
         void_reason = ?5, voided_by = ?6, voided_at = ?7, return_request_no = ?8, \
         next_void_at = ?9, updated_at = ?7, \
         next_attempt_at = CASE WHEN ?2 = 'cancelled' AND unconfirmed = 1 THEN ?7 \
                                WHEN ?2 IN ('cancelled', 'review') THEN NULL \
                                ELSE next_attempt_at END WHERE id = ?1",
        params![
            id,
            state.as_str(),
            reason,
            void_state.as_str(),
            v.reason,
            v.by,
            v.at,
            rrn,
            next
        ],
    )?;
    exec(
        &tx,
        "INSERT INTO attempts (redemption_id, call, started_at, ended_at, outcome, detail) \
         VALUES (?1, 'void', ?2, ?2, ?3, ?4)",
        params![id, v.at, plan.as_str(), v.reason],
    )?;
    let row = get_in(&tx, id)?;
    tx.commit()?;
    Ok(Voided::Done(plan, Box::new(row)))
}

/// Rows whose coupon return is due, oldest void first.
pub fn due_returns(conn: &Connection, now: Millis, limit: usize) -> Result<Vec<Row>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM redemptions INDEXED BY redemptions_voids \
         WHERE void_state = 'pending' AND next_void_at <= ?1 ORDER BY next_void_at LIMIT ?2"
    ))?;
    stmt.query_map(params![now, limit as i64], read_row)?
        .collect()
}

/// When the next pending return is due.
pub fn next_return_at(conn: &Connection) -> Result<Option<Millis>> {
    one(
        conn,
        "SELECT min(next_void_at) FROM redemptions WHERE void_state = 'pending'",
        [],
    )
}

/// Records a return as started, before it is sent (its `return_request_no` is already
/// fixed). Returns the `attempts` row, or `None` if the return is no longer pending.
/// `call` names the return's API call (`coupons/return`, `product-coupon/return`).
pub fn begin_return(conn: &mut Connection, id: i64, call: &str, at: Millis) -> Result<Option<i64>> {
    let tx = immediate(conn)?;
    let pending: bool = one(
        &tx,
        "SELECT void_state = 'pending' FROM redemptions WHERE id = ?1",
        [id],
    )?;
    if !pending {
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

/// Applies a return's answer, with its call record, in one commit.
pub fn finish_return(
    conn: &mut Connection,
    id: i64,
    step: &ReturnStep,
    retry: Retry,
    at: Millis,
    call: &CallLog,
) -> Result<Row> {
    let tx = immediate(conn)?;
    super::tries::write_calls(&tx, id, std::slice::from_ref(call))?;
    match step {
        ReturnStep::Returned => exec(
            &tx,
            "UPDATE redemptions SET state = 'returned', void_state = 'done', returned_at = ?2, \
             next_void_at = NULL, updated_at = ?2 WHERE id = ?1 AND void_state = 'pending'",
            params![id, at],
        )?,
        ReturnStep::Refused { reason } => exec(
            &tx,
            "UPDATE redemptions SET state = 'review', void_state = 'failed', reason = ?3, \
             next_void_at = NULL, updated_at = ?2 WHERE id = ?1 AND void_state = 'pending'",
            params![id, at, format!("{VOID_FAILED}: {reason}")],
        )?,
        ReturnStep::Again { throttled, .. } => {
            let tries: i64 = one(
                &tx,
                "SELECT count(*) FROM attempts WHERE redemption_id = ?1 \
                 AND call IN ('coupons/return', 'product-coupon/return')",
                [id],
            )?;
            let d = backoff::delay(
                u32::try_from(tries).unwrap_or(u32::MAX),
                retry.base,
                retry.max,
                *throttled,
                retry.jitter,
            );
            exec(
                &tx,
                "UPDATE redemptions SET next_void_at = ?2, updated_at = ?3 \
                 WHERE id = ?1 AND void_state = 'pending'",
                params![id, at + d.as_millis() as i64, at],
            )?
        }
    };
    let row = get_in(&tx, id)?;
    tx.commit()?;
    Ok(row)
}
