//! Recording scans: a new code's row, one more read of a known one, a rescan that reopens
//! a refused row or starts a new sale, a local refusal, a claim of the store guard tied to
//! its row, and the till's answer when WeChat did not settle a code in time.

use super::sql::{
    COLUMNS, Result, exec, get_in, immediate, needs_work, one, read_row, revision_of,
};
use crate::clock::Millis;
use crate::model::catalog::Meta;
use crate::model::code::Code;
use crate::model::offline::{self, Backlog, Limits};
use crate::model::row::{Guard, Row, Void};
use crate::model::scan::Sale;
use crate::model::state::{State, TillOutcome, till_outcome_of};
use crate::route::Routed;
use rusqlite::{Connection, params};

/// A scan that routed to an API.
#[derive(Debug, Clone)]
pub struct NewScan<'a> {
    pub code: &'a Code,
    pub routed: &'a Routed,
    pub scanner: &'a str,
    pub till: &'a str,
    pub aim_id: Option<&'a str>,
    pub at: Millis,
    /// For merchant coupons: the idempotency key and use time, fixed now.
    pub use_request_no: Option<&'a str>,
    pub use_time: Option<&'a str>,
    /// The sale the POS named with the scan.
    pub sale: &'a Sale,
    /// What the route's card or stock is, when the catalog knows it already.
    pub meta: Option<&'a Meta>,
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub row: Row,
    /// The code was already in the ledger: this read's entry in `scans`. `None` for a new
    /// code, whose first read is the row itself.
    pub rescan: Option<i64>,
    /// This read of a known code is answered as a first read would be, not as a duplicate:
    /// the row was refused at the till (cancelled) and is queued again by this commit, or it
    /// is queued and its first read never got an answer.
    pub reopened: bool,
}

impl Recorded {
    /// A new code's row: its first read.
    fn first(row: Row) -> Recorded {
        Recorded {
            row,
            rescan: None,
            reopened: false,
        }
    }
}

/// Why a rescan put a refused row back in the queue, for its `note`.
pub const REOPENED_BY_RESCAN: &str = "scanned again after the till had refused it";

/// Records a scan of a routed code: a new row, or one more read of a known one.
pub fn record_scan(conn: &mut Connection, s: &NewScan) -> Result<Recorded> {
    record_scan_with(conn, s, None)
}

/// [`record_scan`], with the store guard's claim tied to the row in the same commit.
pub(super) fn record_scan_with(
    conn: &mut Connection,
    s: &NewScan,
    claim: Option<&ClaimTie>,
) -> Result<Recorded> {
    let tx = immediate(conn)?;
    // The common case, a new code, in one statement; a known code falls through to the
    // UPDATE. Both hand back the row (RETURNING), so nothing is read twice.
    let inserted = insert_first(
        &tx,
        s,
        &First {
            state: State::Queued,
            reason: None,
            till_outcome: None,
            guard: claim.map(|c| c.guard),
        },
        claim,
    )?;
    let recorded = match inserted {
        // The row holds the first read (scanner, aim_id, scanned_at, till_outcome): a
        // `scans` entry would repeat it and cost the commit one more page.
        Some(row) => Recorded::first(row),
        None => {
            let (mut row, scan_id) = add_read(&tx, s)?;
            let reopened = match row.state {
                // Refused at the till, so the customer was turned away: this read starts
                // over. The unconfirmed flag stays, so a call that may have gone out is
                // resolved before anything is sent again.
                State::Cancelled => {
                    row = match &row.void {
                        Some(void) => new_sale(&tx, &row, void, s.at, s.sale)?,
                        None => reopen(&tx, row.id, s.at, s.sale)?,
                    };
                    true
                }
                State::Queued => row.till_outcome.is_none(),
                _ => false,
            };
            Recorded {
                row,
                rescan: Some(scan_id),
                reopened,
            }
        }
    };
    let recorded = match claim {
        Some(c) => tie(&tx, c, recorded)?,
        None => recorded,
    };
    tx.commit()?;
    Ok(recorded)
}

/// How a new code's row starts.
pub(super) struct First<'a> {
    pub state: State,
    pub reason: Option<&'a str>,
    pub till_outcome: Option<TillOutcome>,
    pub guard: Option<crate::model::row::Guard>,
}

/// A new code's row, in one statement with its claim (if any); `None`: the code has a row
/// already. A queued row is due at once; others are never due.
pub(super) fn insert_first(
    conn: &Connection,
    s: &NewScan,
    first: &First,
    claim: Option<&ClaimTie>,
) -> Result<Option<Row>> {
    let due = (first.state == State::Queued).then_some(s.at);
    // The new row is read back by rowid, with the statement every read of a row uses.
    let inserted = conn
        .prepare_cached(
            "INSERT INTO redemptions (code, api, route, card_id, aim_id, state, reason, \
         till_outcome, scanner, till, scanned_at, updated_at, next_attempt_at, stock_id, \
         use_request_no, use_time, order_id, amount, cashier, title, kind, value, guard, \
         claim_key, claim_scan, claim_revision, claim_dirty) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12, ?13, ?14, ?15, ?16, \
         ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26) \
         ON CONFLICT (code) WHERE api IS NOT NULL DO NOTHING",
        )?
        .execute(params![
            s.code.expose(),
            s.routed.api.as_str(),
            s.routed.route as i64,
            s.routed.card_id,
            s.aim_id,
            first.state.as_str(),
            first.reason,
            first.till_outcome.map(|o| o.as_str()),
            s.scanner,
            s.till,
            s.at,
            due,
            s.routed.stock_id,
            s.use_request_no,
            s.use_time,
            s.sale.order_id,
            s.sale.amount,
            s.sale.cashier,
            s.meta.map(|m| &m.title),
            s.meta.map(|m| &m.kind),
            s.meta.and_then(|m| m.value),
            first.guard.map(|g| g.as_str()),
            claim.map(|c| &c.key),
            claim.map(|c| &c.scan),
            claim
                .and_then(|c| c.revision)
                .and_then(|r| i64::try_from(r).ok()),
            claim.is_some()
        ])?;
    if inserted == 0 {
        return Ok(None);
    }
    get_in(conn, conn.last_insert_rowid()).map(Some)
}

/// Queues a cancelled row again, due now, with no till answer yet: the next answer given
/// for it is its first again (so a later refusal by WeChat after an offline acceptance
/// goes to review, as for any offline acceptance).
/// The rescan's sale, when it names one, replaces the refused one's.
fn reopen(conn: &Connection, id: i64, at: Millis, sale: &Sale) -> Result<Row> {
    let new_sale = !sale.is_empty();
    conn.prepare_cached(&format!(
        "UPDATE redemptions SET state = 'queued', till_outcome = NULL, reason = NULL, \
         next_attempt_at = ?2, updated_at = ?2, note = ?3, \
         order_id = CASE WHEN ?4 THEN ?5 ELSE order_id END, \
         amount = CASE WHEN ?4 THEN ?6 ELSE amount END, \
         cashier = CASE WHEN ?4 THEN ?7 ELSE cashier END WHERE id = ?1 RETURNING {COLUMNS}"
    ))?
    .query_row(
        params![
            id,
            at,
            REOPENED_BY_RESCAN,
            new_sale,
            sale.order_id,
            sale.amount,
            sale.cashier
        ],
        read_row,
    )
}

/// Queues a void-cancelled row again for a new sale: as [`reopen`], but the voided sale
/// (its order and its void) goes to the row's history (`past_sales`, and a `new_sale`
/// entry in `attempts`), and the row carries only the new sale, which can be voided in its
/// turn.
fn new_sale(conn: &Connection, row: &Row, void: &Void, at: Millis, sale: &Sale) -> Result<Row> {
    let past = crate::model::void::past_sale(row, void);
    exec(
        conn,
        "INSERT INTO attempts (redemption_id, call, started_at, ended_at, outcome, detail) \
         VALUES (?1, 'new_sale', ?2, ?2, 'reopened', ?3)",
        params![row.id, at, past],
    )?;
    conn.prepare_cached(&format!(
        "UPDATE redemptions SET state = 'queued', till_outcome = NULL, reason = NULL, \
         next_attempt_at = ?2, updated_at = ?2, note = ?3, \
         order_id = ?4, amount = ?5, cashier = ?6, \
         void_state = NULL, void_reason = NULL, voided_by = NULL, voided_at = NULL, \
         return_request_no = NULL, next_void_at = NULL, returned_at = NULL, \
         past_sales = CASE WHEN past_sales IS NULL THEN ?7 ELSE past_sales || char(10) || ?7 END \
         WHERE id = ?1 RETURNING {COLUMNS}"
    ))?
    .query_row(
        params![
            row.id,
            at,
            REOPENED_BY_RESCAN,
            sale.order_id,
            sale.amount,
            sale.cashier,
            past
        ],
        read_row,
    )
}

/// At start: rows whose first read never got an answer (the process died while the
/// cashier waited) and that may not be accepted offline are refused, as the till would have
/// refused them: nobody was told they were accepted, and the customer may be gone.
/// `offline_allowed` says it per route index. The unconfirmed flag stays, so a call that may
/// have gone out is only asked about. Returns the rows refused.
pub fn refuse_unanswered(
    conn: &mut Connection,
    offline_allowed: &dyn Fn(Option<i64>) -> bool,
    before: Millis,
    at: Millis,
) -> Result<Vec<Row>> {
    let tx = immediate(conn)?;
    let unanswered: Vec<Row> = {
        // The work queue's partial index holds these rows; naming it means repeating its
        // WHERE (needs_work), before narrowing to the queued ones.
        let mut stmt = tx.prepare(&format!(
            concat!(
                "SELECT {COLUMNS} FROM redemptions INDEXED BY redemptions_pending WHERE ",
                needs_work!(),
                " AND state = 'queued' AND till_outcome IS NULL AND scanned_at < ?1 ORDER BY id"
            ),
            COLUMNS = COLUMNS
        ))?;
        stmt.query_map([before], read_row)?
            .collect::<Result<Vec<_>>>()?
    };
    let mut refused = Vec::new();
    for row in unanswered {
        if offline_allowed(row.route) {
            continue;
        }
        exec(
            &tx,
            "UPDATE redemptions SET state = 'cancelled', reason = ?2, updated_at = ?3 WHERE id = ?1",
            params![row.id, REFUSED_UNANSWERED, at],
        )?;
        refused.push(get_in(&tx, row.id)?);
    }
    tx.commit()?;
    Ok(refused)
}

pub const REFUSED_UNANSWERED: &str = "refused at start: redeemd stopped before the till was answered, and this code may not be accepted offline";

/// One more read of a code the ledger knows: counted on its row and entered in `scans`.
pub(super) fn add_read(conn: &Connection, s: &NewScan) -> Result<(Row, i64)> {
    let row = conn
        .prepare_cached(&format!(
            "UPDATE redemptions SET scans = scans + 1 \
             WHERE code = ?1 AND api IS NOT NULL RETURNING {COLUMNS}"
        ))?
        .query_row([s.code.expose()], read_row)?;
    let scan_id = insert_rescan(conn, row.id, s.scanner, s.aim_id, s.at)?;
    Ok((row, scan_id))
}

fn insert_rescan(
    conn: &Connection,
    id: i64,
    scanner: &str,
    aim_id: Option<&str>,
    at: Millis,
) -> Result<i64> {
    exec(
        conn,
        "INSERT INTO scans (redemption_id, scanner, aim_id, scanned_at) VALUES (?1, ?2, ?3, ?4)",
        params![id, scanner, aim_id, at],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Records a scan refused locally (payment code, junk, no route). `shown_code` must
/// already be masked: these codes are never stored in full.
pub struct Refusal<'a> {
    pub shown_code: &'a str,
    pub reason: &'a str,
    pub scanner: &'a str,
    pub till: &'a str,
    pub aim_id: Option<&'a str>,
    pub at: Millis,
    /// The sale the POS named with the scan: kept, so the sale finds its refused scans.
    pub sale: &'a Sale,
}

pub fn record_refusal(conn: &mut Connection, r: &Refusal) -> Result<Row> {
    let tx = immediate(conn)?;
    exec(
        &tx,
        "INSERT INTO redemptions (code, api, aim_id, state, reason, till_outcome, scanner, till, \
         scanned_at, updated_at, order_id, amount, cashier) \
         VALUES (?1, NULL, ?2, 'rejected', ?3, 'rejected', ?4, ?5, ?6, ?6, ?7, ?8, ?9)",
        params![
            r.shown_code,
            r.aim_id,
            r.reason,
            r.scanner,
            r.till,
            r.at,
            r.sale.order_id,
            r.sale.amount,
            r.sale.cashier
        ],
    )?;
    let id = tx.last_insert_rowid();
    let row = get_in(&tx, id)?;
    tx.commit()?;
    Ok(row)
}

/// Notes the answer a code's first read got, on its row (once: the first answer stays).
pub fn note_till_outcome(conn: &Connection, id: i64, outcome: TillOutcome) -> Result<()> {
    exec(
        conn,
        "UPDATE redemptions SET till_outcome = ?2 WHERE id = ?1 AND till_outcome IS NULL",
        params![id, outcome.as_str()],
    )?;
    Ok(())
}

/// Notes the answer a later read of a known code got, on its `scans` entry.
pub fn note_rescan_outcome(conn: &Connection, scan_id: i64, outcome: TillOutcome) -> Result<()> {
    exec(
        conn,
        "UPDATE scans SET till_outcome = ?2 WHERE id = ?1",
        params![scan_id, outcome.as_str()],
    )?;
    Ok(())
}

/// The till's answer for a new code that WeChat did not settle within `online_wait`,
/// decided atomically against the dispatcher: if the row settled meanwhile, that answer wins.
pub fn decide_offline(
    conn: &mut Connection,
    id: i64,
    limits: &Limits,
    at: Millis,
) -> Result<(TillOutcome, Row)> {
    let tx = immediate(conn)?;
    let row = get_in(&tx, id)?;
    let outcome = match till_outcome_of(row.state) {
        Some(settled) => settled,
        None => {
            let pending: i64 = one(
                &tx,
                "SELECT count(*) FROM redemptions WHERE state = 'queued' AND id != ?1",
                [id],
            )?;
            // Summed only when a limit needs it: it reads every queued row.
            let pending_value: i64 = if limits.max_pending_value.is_some() {
                one(
                    &tx,
                    "SELECT coalesce(sum(value), 0) FROM redemptions WHERE state = 'queued' \
                     AND till_outcome = 'accepted_offline' AND id != ?1",
                    [id],
                )?
            } else {
                0
            };
            let backlog = Backlog {
                pending,
                pending_value,
            };
            match offline::decide(limits, row.value, backlog) {
                Ok(()) => TillOutcome::AcceptedOffline,
                Err(reason) => {
                    exec(
                        &tx,
                        "UPDATE redemptions SET state = 'cancelled', reason = ?2, updated_at = ?3 WHERE id = ?1",
                        params![id, reason, at],
                    )?;
                    TillOutcome::RefusedOffline
                }
            }
        }
    };
    note_till_outcome(&tx, id, outcome)?;
    let row = get_in(&tx, id)?;
    tx.commit()?;
    Ok((outcome, row))
}

/// What tying a row to a sale came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tied {
    Done(Box<Row>),
    NotFound,
    /// The row belongs to another order already (the one named).
    OtherOrder(String),
}

/// Ties a scanned code to its sale, once: a row with no order takes this one; a row with
/// the same order takes what it lacks (amount, cashier); another order is refused.
pub fn tie_to_sale(conn: &mut Connection, id: i64, sale: &Sale, at: Millis) -> Result<Tied> {
    let tx = immediate(conn)?;
    let Some(row) = super::queries::get(&tx, id)? else {
        return Ok(Tied::NotFound);
    };
    if let Some(existing) = row.order_id.as_ref()
        && sale.order_id.as_ref() != Some(existing)
    {
        return Ok(Tied::OtherOrder(existing.clone()));
    }
    exec(
        &tx,
        "UPDATE redemptions SET order_id = coalesce(order_id, ?2), \
         amount = coalesce(amount, ?3), cashier = coalesce(cashier, ?4), updated_at = ?5 \
         WHERE id = ?1",
        params![id, sale.order_id, sale.amount, sale.cashier, at],
    )?;
    let row = get_in(&tx, id)?;
    tx.commit()?;
    Ok(Tied::Done(Box::new(row)))
}

/// How the claim went, for the row's commit.
#[derive(Debug, Clone)]
pub struct ClaimTie {
    pub key: String,
    pub scan: String,
    pub guard: Guard,
    /// The bucket's revision of this till's value; `None` when the store did not answer
    /// (the claim may or may not have reached it: the follower asks again).
    pub revision: Option<u64>,
}

/// Records the claim on a known code's row, in the row's transaction, and drops its note
/// (a new row has its claim from its INSERT). A reopened row takes the guard's new word; a
/// plain rescan keeps its first.
pub(super) fn tie(conn: &Connection, c: &ClaimTie, recorded: Recorded) -> Result<Recorded> {
    exec(conn, "DELETE FROM claim_notes WHERE scan = ?1", [&c.scan])?;
    if recorded.rescan.is_none() {
        return Ok(recorded);
    }
    let fresh = recorded.reopened;
    exec(
        conn,
        "UPDATE redemptions SET claim_key = ?2, claim_scan = ?3, claim_revision = ?4, \
         claim_dirty = 1, claim_synced = NULL, guard = CASE WHEN ?5 THEN ?6 ELSE guard END \
         WHERE id = ?1",
        params![
            recorded.row.id,
            c.key,
            c.scan,
            revision_of(c.revision),
            fresh,
            c.guard.as_str()
        ],
    )?;
    if !fresh {
        return Ok(recorded);
    }
    Ok(Recorded {
        row: get_in(conn, recorded.row.id)?,
        ..recorded
    })
}

/// Records a scan with its claim.
pub fn record_claimed(conn: &mut Connection, s: &NewScan, tie: &ClaimTie) -> Result<Recorded> {
    record_scan_with(conn, s, Some(tie))
}

/// Records a scan of a code another till holds: `guard` `elsewhere` (rejected, answered
/// `duplicate`) or `abandoned` (review). The code is never sent. A code this till knows
/// already (its own claim was released, then another till took it) keeps its row; this read
/// goes in `scans`. The claim's note goes.
pub fn record_elsewhere(
    conn: &mut Connection,
    s: &NewScan,
    scan: &str,
    guard: Guard,
    reason: &str,
) -> Result<Recorded> {
    let tx = immediate(conn)?;
    exec(&tx, "DELETE FROM claim_notes WHERE scan = ?1", [scan])?;
    let (state, outcome) = match guard {
        Guard::Abandoned => (State::Review, TillOutcome::Rejected),
        _ => (State::Rejected, TillOutcome::Duplicate),
    };
    let inserted = insert_first(
        &tx,
        s,
        &First {
            state,
            reason: Some(reason),
            till_outcome: Some(outcome),
            guard: Some(guard),
        },
        None,
    )?;
    let recorded = match inserted {
        Some(row) => Recorded::first(row),
        None => {
            let (row, scan_id) = add_read(&tx, s)?;
            note_rescan_outcome(&tx, scan_id, outcome)?;
            Recorded {
                row,
                rescan: Some(scan_id),
                reopened: false,
            }
        }
    };
    tx.commit()?;
    Ok(recorded)
}
