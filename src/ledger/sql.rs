//! What every ledger operation shares: the row's columns and how a row is read, one
//! operation's transaction (`immediate`), and the statement-cache helpers. Each write is one
//! `IMMEDIATE` transaction (a savepoint when the ledger thread runs it inside a shared
//! commit), so it either happened entirely or not at all when the process dies.

use crate::clock::Millis;
use crate::model::api::Api;
use crate::model::code::Code;
use crate::model::row::{Guard, HeldCoupon, PayOrder, Row, Void, VoidState};
use crate::model::state::{State, TillOutcome};
use rusqlite::{Connection, Savepoint, Transaction, TransactionBehavior};
use std::ops::Deref;

pub type Result<T> = rusqlite::Result<T>;

/// The rows the dispatcher still works on, in SQL: `model::state::needs_work`. It is also
/// the `WHERE` of the partial index `redemptions_pending` (schema migration 5), which the
/// queries that name the index must repeat to the letter.
macro_rules! needs_work {
    () => {
        "(state = 'queued' OR (state = 'cancelled' AND unconfirmed = 1))"
    };
}
pub(super) use needs_work;

pub(super) const COLUMNS: &str = "id, code, api, route, card_id, aim_id, state, reason, till_outcome, \
    unconfirmed, scans, attempts, scanner, till, scanned_at, updated_at, redeemed_at, \
    next_attempt_at, openid, note, stock_id, use_request_no, use_time, wechatpay_use_time, \
    resolved_at, resolved_by, resolution, order_id, amount, cashier, title, kind, value, \
    void_state, void_reason, voided_by, voided_at, return_request_no, \
    next_void_at, returned_at, guard, past_sales, product_coupon_id, coupon_appid, hold_until, \
    transaction_id, out_trade_no, order_mchid, sub_mchid";

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
        coupon: read_coupon(r, o)?,
        pay_order: read_pay_order(r, o)?,
    })
}

/// A product coupon's ids (42..=44), on a product-coupon row.
fn read_coupon(r: &rusqlite::Row, o: usize) -> Result<Option<HeldCoupon>> {
    let Some(product_coupon_id) = r.get::<_, Option<String>>(o + 42)? else {
        return Ok(None);
    };
    Ok(Some(HeldCoupon {
        product_coupon_id,
        appid: r.get::<_, Option<String>>(o + 43)?.unwrap_or_default(),
        hold_until: r.get(o + 44)?,
    }))
}

/// The sale's WeChat Pay order (45..=48), once given.
fn read_pay_order(r: &rusqlite::Row, o: usize) -> Result<Option<PayOrder>> {
    let order = PayOrder {
        transaction_id: r.get(o + 45)?,
        out_trade_no: r.get(o + 46)?,
        mchid: r.get(o + 47)?,
        sub_mchid: r.get(o + 48)?,
    };
    Ok((order != PayOrder::default()).then_some(order))
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

    pub(super) fn rollback(self) -> Result<()> {
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

/// A row that must exist (one this transaction has just written).
pub(super) fn get_in(conn: &Connection, id: i64) -> Result<Row> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM redemptions WHERE id = ?1"))?
        .query_row([id], read_row)
}

/// A bucket revision as SQLite stores it (`None` past `i64::MAX`, which no bucket reaches).
pub(super) fn revision_of(r: Option<u64>) -> Option<i64> {
    r.and_then(|r| i64::try_from(r).ok())
}
