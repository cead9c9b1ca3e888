//! Every SQL statement of the crate: the ledger's operations as plain functions over a
//! connection. Each write is one `IMMEDIATE` transaction (a savepoint when the ledger thread
//! runs it inside a shared commit, see `immediate`), so it either happened entirely or not
//! at all when the process dies.

use crate::clock::Millis;
use crate::config::Api;
use crate::model::backoff;
use crate::model::catalog::Meta;
use crate::model::code::Code;
use crate::model::offline::{self, Backlog, Limits};
use crate::model::scan::Sale;
use crate::model::state::{self, Schedule, Settle, State, TillOutcome};
use crate::model::void::{
    ReturnStep, VOID_FAILED, VOIDED_BEFORE_REDEMPTION, VOIDED_CARD, VoidPlan, plan as void_plan,
};
use crate::route::Routed;
use rusqlite::{
    Connection, OptionalExtension, Savepoint, Transaction, TransactionBehavior, params,
};
use serde::Serialize;
use std::collections::HashSet;
use std::ops::Deref;
use std::time::Duration;

pub type Result<T> = rusqlite::Result<T>;

/// The rows the dispatcher still works on, in SQL: `model::state::needs_work`. It is also
/// the `WHERE` of the partial index `redemptions_pending` (schema migration 5), which the
/// queries that name the index must repeat to the letter.
macro_rules! needs_work {
    () => {
        "(state = 'queued' OR (state = 'cancelled' AND unconfirmed = 1))"
    };
}

pub use crate::model::row::{Guard, Row, Void, VoidState};

pub(super) const COLUMNS: &str = "id, code, api, route, card_id, aim_id, state, reason, till_outcome, \
    unconfirmed, scans, attempts, scanner, till, scanned_at, updated_at, redeemed_at, \
    next_attempt_at, openid, note, stock_id, use_request_no, use_time, wechatpay_use_time, \
    resolved_at, resolved_by, resolution, order_id, amount, cashier, title, kind, value, \
    void_state, void_reason, voided_by, voided_at, return_request_no, \
    next_void_at, returned_at, guard, past_sales";

fn bad_value(col: usize, what: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        col,
        rusqlite::types::Type::Text,
        format!("unknown {what} {value:?}").into(),
    )
}

pub(super) fn read_row(r: &rusqlite::Row) -> Result<Row> {
    read_row_at(r, 0)
}

/// [`read_row`] for a row whose columns start at `o`.
pub(super) fn read_row_at(r: &rusqlite::Row, o: usize) -> Result<Row> {
    let api: Option<String> = r.get(o + 2)?;
    let api = match api.as_deref() {
        None => None,
        Some(a) => Some(
            Api::parse(a)
                .ok_or_else(|| bad_value(o + 2, "api", a))?
                .as_str(),
        ),
    };
    let state: String = r.get(o + 6)?;
    let till: Option<String> = r.get(o + 8)?;
    Ok(Row {
        id: r.get(o)?,
        code: Code::new(r.get::<_, String>(o + 1)?),
        api,
        route: r.get(o + 3)?,
        card_id: r.get(o + 4)?,
        aim_id: r.get(o + 5)?,
        state: State::parse(&state).ok_or_else(|| bad_value(o + 6, "state", &state))?,
        reason: r.get(o + 7)?,
        till_outcome: match till {
            None => None,
            Some(t) => Some(TillOutcome::parse(&t).ok_or_else(|| bad_value(o + 8, "outcome", &t))?),
        },
        unconfirmed: r.get(o + 9)?,
        scans: r.get(o + 10)?,
        attempts: r.get(o + 11)?,
        scanner: r.get(o + 12)?,
        till: r.get(o + 13)?,
        scanned_at: r.get(o + 14)?,
        updated_at: r.get(o + 15)?,
        redeemed_at: r.get(o + 16)?,
        next_attempt_at: r.get(o + 17)?,
        openid: r.get(o + 18)?,
        note: r.get(o + 19)?,
        stock_id: r.get(o + 20)?,
        use_request_no: r.get(o + 21)?,
        use_time: r.get(o + 22)?,
        wechatpay_use_time: r.get(o + 23)?,
        resolved_at: r.get(o + 24)?,
        resolved_by: r.get(o + 25)?,
        resolution: r.get(o + 26)?,
        order_id: r.get(o + 27)?,
        amount: r.get(o + 28)?,
        cashier: r.get(o + 29)?,
        title: r.get(o + 30)?,
        kind: r.get(o + 31)?,
        value: r.get(o + 32)?,
        void: read_void(r, o)?,
        guard: match r.get::<_, Option<String>>(o + 40)? {
            None => None,
            Some(g) => Some(Guard::parse(&g).ok_or_else(|| bad_value(o + 40, "guard", &g))?),
        },
        past_sales: r
            .get::<_, Option<String>>(o + 41)?
            .map(|p| p.lines().map(str::to_string).collect())
            .unwrap_or_default(),
    })
}

/// The void columns (33..=39), when the row has been voided.
fn read_void(r: &rusqlite::Row, o: usize) -> Result<Option<Void>> {
    let Some(state) = r.get::<_, Option<String>>(o + 33)? else {
        return Ok(None);
    };
    Ok(Some(Void {
        state: VoidState::parse(&state).ok_or_else(|| bad_value(o + 33, "void state", &state))?,
        reason: r.get::<_, Option<String>>(o + 34)?.unwrap_or_default(),
        by: r.get(o + 35)?,
        at: r.get::<_, Option<Millis>>(o + 36)?.unwrap_or_default(),
        return_request_no: r.get(o + 37)?,
        next_at: r.get(o + 38)?,
        returned_at: r.get(o + 39)?,
    }))
}

/// One operation's writes, all or nothing. On its own: an `IMMEDIATE` transaction (another
/// process may write too: `redeemd resolve`). Inside the ledger thread's group commit: a
/// savepoint, so a failing operation undoes only its own writes.
pub(super) enum Write<'c> {
    Own(Transaction<'c>),
    Nested(Savepoint<'c>),
}

impl Deref for Write<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        match self {
            Write::Own(t) => t,
            Write::Nested(s) => s,
        }
    }
}

impl Write<'_> {
    pub(super) fn commit(self) -> Result<()> {
        match self {
            Write::Own(t) => t.commit(),
            Write::Nested(s) => s.commit(),
        }
    }

    fn rollback(self) -> Result<()> {
        match self {
            Write::Own(t) => t.rollback(),
            Write::Nested(mut s) => s.rollback(),
        }
    }
}

pub(super) fn immediate(conn: &mut Connection) -> Result<Write<'_>> {
    if conn.is_autocommit() {
        Ok(Write::Own(conn.transaction_with_behavior(
            TransactionBehavior::Immediate,
        )?))
    } else {
        Ok(Write::Nested(conn.savepoint()?))
    }
}

/// The one value of a one-row query, through the statement cache (see [`exec`]).
pub(super) fn one<T: rusqlite::types::FromSql>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<T> {
    conn.prepare_cached(sql)?.query_row(params, |r| r.get(0))
}

/// Runs a statement through the connection's statement cache: the hot writes are the same
/// few statements over and over, and compiling them each time costs more than running them.
pub(super) fn exec(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

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

/// [`get`] for a row that must exist (one this transaction has just written).
pub(super) fn get_in(conn: &Connection, id: i64) -> Result<Row> {
    get(conn, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)
}

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
    claim: Option<&super::claims::ClaimTie>,
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
        Some(row) => Recorded {
            row,
            rescan: None,
            reopened: false,
        },
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
        Some(c) => super::claims::tie(&tx, c, recorded)?,
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
    claim: Option<&super::claims::ClaimTie>,
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

/// How a settled row answers a till that is still waiting for it.
pub fn till_outcome_of(state: State) -> Option<TillOutcome> {
    match state {
        State::Queued => None,
        State::Redeemed => Some(TillOutcome::Redeemed),
        State::Rejected | State::Review | State::Returned => Some(TillOutcome::Rejected),
        State::Cancelled => Some(TillOutcome::RefusedOffline),
    }
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

/// What came back from one call, for the audit trail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallRecord {
    pub http_status: Option<u16>,
    pub errcode: Option<i64>,
    /// `ok`, `refused`, `retry`, `unknown`, ...
    pub outcome: String,
    pub detail: Option<String>,
}

/// A finished call whose record is not written yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallLog {
    /// The `attempts` row written when a redeeming call started; `None` for a call recorded
    /// only once it has ended (a `code/get`: it changes nothing at WeChat).
    pub attempt: Option<i64>,
    pub call: &'static str,
    pub started_at: Millis,
    pub ended_at: Millis,
    pub record: CallRecord,
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

/// The retry schedule's settings and the random draw for this change.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub base: Duration,
    pub max: Duration,
    /// In `[0, 1)`.
    pub jitter: f64,
}

/// What WeChat told us about a code: its holder, its use time, its card and what it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confirmation {
    pub openid: Option<String>,
    pub wechatpay_use_time: Option<String>,
    pub card_id: Option<String>,
    pub meta: Option<Meta>,
    /// The stock a used coupon belongs to (a route may name none; a return needs it).
    pub stock_id: Option<String>,
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

/// A card's or a stock's metadata, as WeChat last gave it (`key`: `card:<card_id>` or
/// `stock:<stock_id>`).
pub fn catalog_put(conn: &mut Connection, key: &str, m: &Meta, at: Millis) -> Result<()> {
    let tx = immediate(conn)?;
    exec(
        &tx,
        "INSERT INTO catalog (key, kind, title, value, minimum, detail, valid_from, valid_until, \
         fetched_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (key) DO UPDATE SET \
         kind = ?2, title = ?3, value = ?4, minimum = ?5, detail = ?6, valid_from = ?7, \
         valid_until = ?8, fetched_at = ?9",
        params![
            key,
            m.kind,
            m.title,
            m.value,
            m.minimum,
            m.detail,
            m.valid_from,
            m.valid_until,
            at
        ],
    )?;
    tx.commit()
}

/// Every catalog entry with when it was fetched.
pub fn catalog_all(conn: &Connection) -> Result<Vec<(String, Meta, Millis)>> {
    let mut stmt = conn.prepare(
        "SELECT key, kind, title, value, minimum, detail, valid_from, valid_until, fetched_at \
         FROM catalog",
    )?;
    stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            Meta {
                kind: r.get(1)?,
                title: r.get(2)?,
                value: r.get(3)?,
                minimum: r.get(4)?,
                detail: r.get(5)?,
                valid_from: r.get(6)?,
                valid_until: r.get(7)?,
            },
            r.get(8)?,
        ))
    })?
    .collect()
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

/// What a resolve request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    Done(Box<Row>),
    NotFound,
    /// Only `review` rows can be resolved.
    NotInReview(State),
}

/// A manager closes a review item, deciding it `redeemed` or `rejected` (by default: redeemed
/// when WeChat confirmed a redemption, rejected otherwise). The note and who/when are kept.
pub fn resolve(
    conn: &mut Connection,
    id: i64,
    decision: Option<State>,
    note: &str,
    by: &str,
    at: Millis,
) -> Result<Resolved> {
    let tx = immediate(conn)?;
    let Some(row) = get(&tx, id)? else {
        return Ok(Resolved::NotFound);
    };
    if row.state != State::Review {
        return Ok(Resolved::NotInReview(row.state));
    }
    let state = decision.unwrap_or(if row.redeemed_at.is_some() {
        State::Redeemed
    } else {
        State::Rejected
    });
    exec(
        &tx,
        "UPDATE redemptions SET state = ?2, unconfirmed = 0, next_attempt_at = NULL, \
         resolved_at = ?3, resolved_by = ?4, resolution = ?5, updated_at = ?3 WHERE id = ?1",
        params![id, state.as_str(), at, by, note],
    )?;
    let row = get_in(&tx, id)?;
    tx.commit()?;
    Ok(Resolved::Done(Box::new(row)))
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
    let Some(row) = get(&tx, id)? else {
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
    let Some(row) = get(&tx, id)? else {
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
pub fn begin_return(conn: &mut Connection, id: i64, at: Millis) -> Result<Option<i64>> {
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
        "INSERT INTO attempts (redemption_id, call, started_at) VALUES (?1, 'coupons/return', ?2)",
        params![id, at],
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
    write_calls(&tx, id, std::slice::from_ref(call))?;
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
                "SELECT count(*) FROM attempts WHERE redemption_id = ?1 AND call = 'coupons/return'",
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
