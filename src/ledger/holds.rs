//! Product coupons held for their sale: a scan recorded as held (or refused before anything
//! is sent), the sale's WeChat Pay order attached (the row is then queued for its use, its
//! request number and use time fixed in that commit), and holds that ended without an order
//! cancelled (their claims then released, as for any row turned away unsent).

use super::scans::{ClaimTie, First, NewScan, Recorded, add_read, insert_first, tie};
use super::sql::{COLUMNS, Result, exec, get_in, immediate, one};
use crate::clock::Millis;
use crate::model::product_coupon::HOLD_EXPIRED;
use crate::model::row::{HeldCoupon, PayOrder, Row};
use crate::model::state::{State, TillOutcome};
use rusqlite::{Connection, params};

/// What the checks before anything is sent made of a product coupon's scan.
#[derive(Debug, Clone)]
pub enum Hold<'a> {
    /// Held: the registry's ids of the coupon, its holder, and what it is.
    Held {
        coupon: &'a HeldCoupon,
        openid: &'a str,
        stock_id: &'a str,
        title: Option<&'a str>,
        value: Option<i64>,
    },
    /// Refused, never sent (`model::product_coupon::NotHeld::reason`).
    Refused { reason: &'a str },
}

impl Hold<'_> {
    /// The row's state, reason and till answer.
    fn result(&self) -> (State, Option<&str>, TillOutcome) {
        match self {
            Hold::Held { .. } => (State::Held, None, TillOutcome::Held),
            Hold::Refused { reason } => (State::Rejected, Some(*reason), TillOutcome::Rejected),
        }
    }
}

/// Records a product coupon's scan: a new row held (or rejected), with its claim in the same
/// commit; a known code is one more read of its row (the intake answers it `duplicate`).
pub fn record_hold(
    conn: &mut Connection,
    s: &NewScan,
    hold: &Hold,
    claim: Option<&ClaimTie>,
) -> Result<Recorded> {
    let tx = immediate(conn)?;
    let (state, reason, outcome) = hold.result();
    let inserted = insert_first(
        &tx,
        s,
        &First {
            state,
            reason,
            till_outcome: Some(outcome),
            guard: claim.map(|c| c.guard),
        },
        claim,
    )?;
    let recorded = match inserted {
        Some(row) => {
            // A refused scan's row is as the insert left it.
            let row = if set_coupon(&tx, row.id, hold)? {
                get_in(&tx, row.id)?
            } else {
                row
            };
            Recorded {
                row,
                rescan: None,
                reopened: false,
            }
        }
        None => {
            let (row, scan_id) = add_read(&tx, s)?;
            if starts_over(&row) {
                Recorded {
                    row: hold_again(&tx, &row, s, hold)?,
                    rescan: Some(scan_id),
                    reopened: true,
                }
            } else {
                Recorded {
                    row,
                    rescan: Some(scan_id),
                    reopened: false,
                }
            }
        }
    };
    let recorded = match claim {
        Some(c) if recorded.rescan.is_some() => tie(&tx, c, recorded)?,
        _ => recorded,
    };
    tx.commit()?;
    Ok(recorded)
}

/// A product coupon's row a rescan starts over: turned away at this till (refused before
/// anything was sent, its hold expired, or its sale voided before the use), with no use
/// ever sent. A rescan of any other row is one more read of it.
fn starts_over(row: &Row) -> bool {
    row.api == Some(crate::model::api::Api::ProductCoupon.as_str())
        && matches!(row.state, State::Rejected | State::Cancelled)
        && !row.unconfirmed
        && row.attempts == 0
}

/// Starts a product coupon's row over for a rescan: held again (or refused) as the checks
/// now say, for the rescan's sale. A voided sale goes to the row's history first.
fn hold_again(tx: &Connection, row: &Row, s: &NewScan, hold: &Hold) -> Result<Row> {
    if let Some(void) = &row.void {
        let past = crate::model::void::past_sale(row, void);
        exec(
            tx,
            "INSERT INTO attempts (redemption_id, call, started_at, ended_at, outcome, detail) \
             VALUES (?1, 'new_sale', ?2, ?2, 'reopened', ?3)",
            params![row.id, s.at, past],
        )?;
        exec(
            tx,
            "UPDATE redemptions SET past_sales = CASE WHEN past_sales IS NULL THEN ?2 \
             ELSE past_sales || char(10) || ?2 END WHERE id = ?1",
            params![row.id, past],
        )?;
    }
    let (state, reason, outcome) = hold.result();
    exec(
        tx,
        "UPDATE redemptions SET state = ?2, reason = ?3, till_outcome = ?4, updated_at = ?5, \
         note = ?6, order_id = ?7, amount = ?8, cashier = ?9, next_attempt_at = NULL, \
         use_request_no = NULL, use_time = NULL, transaction_id = NULL, out_trade_no = NULL, \
         order_mchid = NULL, sub_mchid = NULL, \
         void_state = NULL, void_reason = NULL, voided_by = NULL, voided_at = NULL, \
         return_request_no = NULL, next_void_at = NULL, returned_at = NULL WHERE id = ?1",
        params![
            row.id,
            state.as_str(),
            reason,
            outcome.as_str(),
            s.at,
            super::scans::REOPENED_BY_RESCAN,
            s.sale.order_id,
            s.sale.amount,
            s.sale.cashier
        ],
    )?;
    set_coupon(tx, row.id, hold)?;
    get_in(tx, row.id)
}

/// Writes a held coupon's ids, holder and hold on row `id` (nothing for a refusal); whether
/// it wrote.
fn set_coupon(tx: &Connection, id: i64, hold: &Hold) -> Result<bool> {
    if let Hold::Held {
        coupon,
        openid,
        stock_id,
        title,
        value,
    } = hold
    {
        exec(
            tx,
            "UPDATE redemptions SET product_coupon_id = ?2, coupon_appid = ?3, \
             hold_until = ?4, openid = ?5, stock_id = ?6, \
             title = coalesce(?7, title), value = coalesce(?8, value) WHERE id = ?1",
            params![
                id,
                coupon.product_coupon_id,
                coupon.appid,
                coupon.hold_until,
                openid,
                stock_id,
                title,
                value
            ],
        )?;
        return Ok(true);
    }
    Ok(false)
}

/// Why an order cannot be attached to a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderRefused {
    NoSuchRow,
    /// Not a held product coupon, nor one queued or used with this very order.
    NotHeld(State),
    /// Used (or being used) with another order.
    OtherOrder,
    /// Neither a `transaction_id` nor an `out_trade_no` with its `mchid`.
    Incomplete,
}

/// Attaches the sale's WeChat Pay order to held row `id`: one commit makes it queued (due
/// now), with `use_request_no` and `use_time` fixed, so every try of the use is the same
/// request. The same order again is answered with the row as it is (a POS retrying).
pub fn attach_order(
    conn: &mut Connection,
    id: i64,
    order: &PayOrder,
    use_request_no: &str,
    use_time: &str,
    now: Millis,
) -> Result<std::result::Result<Row, OrderRefused>> {
    if !order.is_complete() {
        return Ok(Err(OrderRefused::Incomplete));
    }
    let tx = immediate(conn)?;
    let Some(row) = super::queries::get(&tx, id)? else {
        return Ok(Err(OrderRefused::NoSuchRow));
    };
    let answer = match (row.state, &row.pay_order) {
        (State::Held, _) => {
            let updated = tx
                .prepare_cached(&format!(
                    "UPDATE redemptions SET state = 'queued', next_attempt_at = ?2, \
                     updated_at = ?2, use_request_no = ?3, use_time = ?4, transaction_id = ?5, \
                     out_trade_no = ?6, order_mchid = ?7, sub_mchid = ?8, hold_until = NULL \
                     WHERE id = ?1 AND state = 'held' RETURNING {COLUMNS}"
                ))?
                .query_row(
                    params![
                        id,
                        now,
                        use_request_no,
                        use_time,
                        order.transaction_id,
                        order.out_trade_no,
                        order.mchid,
                        order.sub_mchid
                    ],
                    super::sql::read_row,
                )?;
            Ok(updated)
        }
        (_, Some(given)) if given == order => Ok(row),
        (_, Some(_)) => Err(OrderRefused::OtherOrder),
        (state, None) => Err(OrderRefused::NotHeld(state)),
    };
    tx.commit()?;
    Ok(answer)
}

/// When the next hold ends (`None`: nothing is held).
pub fn next_hold_end(conn: &Connection) -> Result<Option<Millis>> {
    one(
        conn,
        "SELECT min(hold_until) FROM redemptions WHERE state = 'held'",
        [],
    )
}

/// Cancels the holds that ended at `now` without an order, when one has (a read
/// otherwise); the rows cancelled, and when the next hold ends.
pub fn expire_due(conn: &mut Connection, now: Millis) -> Result<(Vec<Row>, Option<Millis>)> {
    let next = next_hold_end(conn)?;
    if next.is_none_or(|end| end > now) {
        return Ok((Vec::new(), next));
    }
    let cancelled = expire_holds(conn, now)?;
    Ok((cancelled, next_hold_end(conn)?))
}

/// Cancels the holds that ended at `now` without an order; the rows as they are now.
pub fn expire_holds(conn: &mut Connection, now: Millis) -> Result<Vec<Row>> {
    let tx = immediate(conn)?;
    let reason = format!("{HOLD_EXPIRED} in time; the coupon was not used");
    let rows = tx
        .prepare_cached(&format!(
            "UPDATE redemptions SET state = 'cancelled', reason = ?2, updated_at = ?1 \
             WHERE state = 'held' AND hold_until <= ?1 RETURNING {COLUMNS}"
        ))?
        .query_map(params![now, reason], super::sql::read_row)?
        .collect::<Result<Vec<Row>>>()?;
    tx.commit()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::schema::migrate_for_tests;
    use crate::model::api::Api;
    use crate::model::code::Code;
    use crate::model::reason::code_of;
    use crate::model::scan::Sale;
    use crate::route::Routed;

    fn ledger() -> Connection {
        let mut c = Connection::open_in_memory().expect("sqlite");
        migrate_for_tests(&mut c);
        c
    }

    fn scan<'a>(code: &'a Code, routed: &'a Routed, sale: &'a Sale, at: Millis) -> NewScan<'a> {
        NewScan {
            code,
            routed,
            scanner: "keyed",
            till: "t1",
            aim_id: None,
            at,
            use_request_no: None,
            use_time: None,
            sale,
            meta: None,
        }
    }

    fn coupon(hold_until: Millis) -> HeldCoupon {
        HeldCoupon {
            product_coupon_id: "1000000013".into(),
            appid: "wx_brand".into(),
            hold_until: Some(hold_until),
        }
    }

    fn paid() -> PayOrder {
        PayOrder {
            transaction_id: Some("4200000000123456789123456789".into()),
            ..PayOrder::default()
        }
    }

    /// Held, then a rescan (a duplicate's read), then the order: queued with its request
    /// number, and the same order again changes nothing; another order is refused.
    #[test]
    fn a_held_coupon_takes_its_order_once() {
        let mut c = ledger();
        let code = Code::new("PC0000000001");
        let routed = Routed {
            code: code.clone(),
            route: 0,
            api: Api::ProductCoupon,
            card_id: None,
            stock_id: None,
        };
        let sale = Sale::default();
        let held = coupon(1_000 + 1_800_000);
        let hold = Hold::Held {
            coupon: &held,
            openid: "oUser0001",
            stock_id: "1000000013001",
            title: Some("拿铁兑换券"),
            value: Some(3200),
        };
        let r = record_hold(&mut c, &scan(&code, &routed, &sale, 1_000), &hold, None).unwrap();
        assert_eq!(r.row.state, State::Held);
        assert_eq!(r.row.till_outcome, Some(TillOutcome::Held));
        assert_eq!(r.row.coupon.as_ref(), Some(&held));
        assert_eq!(r.row.openid.as_deref(), Some("oUser0001"));
        assert_eq!(r.row.stock_id.as_deref(), Some("1000000013001"));
        assert_eq!(
            (r.row.title.as_deref(), r.row.value),
            (Some("拿铁兑换券"), Some(3200))
        );
        assert_eq!(r.row.next_attempt_at, None, "a held row is not due");
        let again = record_hold(&mut c, &scan(&code, &routed, &sale, 2_000), &hold, None).unwrap();
        assert_eq!((again.row.id, again.row.scans), (r.row.id, 2));
        assert!(again.rescan.is_some());

        assert_eq!(
            attach_order(&mut c, r.row.id, &PayOrder::default(), "U1", "t", 3_000).unwrap(),
            Err(OrderRefused::Incomplete)
        );
        let queued = attach_order(
            &mut c,
            r.row.id,
            &paid(),
            "U1",
            "2026-12-05T12:00:00+08:00",
            3_000,
        )
        .unwrap()
        .expect("attached");
        assert_eq!(queued.state, State::Queued);
        assert_eq!(queued.next_attempt_at, Some(3_000));
        assert_eq!(queued.use_request_no.as_deref(), Some("U1"));
        assert_eq!(queued.pay_order, Some(paid()));
        // The POS retries: the row as it is, the request number unchanged.
        let retried = attach_order(&mut c, r.row.id, &paid(), "U2", "x", 4_000)
            .unwrap()
            .expect("the same order");
        assert_eq!(retried.use_request_no.as_deref(), Some("U1"));
        let other = PayOrder {
            out_trade_no: Some("POS-2".into()),
            mchid: Some("1900000109".into()),
            ..PayOrder::default()
        };
        assert_eq!(
            attach_order(&mut c, r.row.id, &other, "U3", "x", 5_000).unwrap(),
            Err(OrderRefused::OtherOrder)
        );
        assert_eq!(
            attach_order(&mut c, 999, &paid(), "U4", "x", 5_000).unwrap(),
            Err(OrderRefused::NoSuchRow)
        );
    }

    /// A refusal is a rejected row with its reason, never due; a hold that ends without an
    /// order is cancelled (`hold_expired`), and one not ended yet stays held.
    #[test]
    fn refusals_and_holds_that_end_without_an_order() {
        let mut c = ledger();
        let sale = Sale::default();
        let routed = |code: &Code| Routed {
            code: code.clone(),
            route: 0,
            api: Api::ProductCoupon,
            card_id: None,
            stock_id: None,
        };
        let refused = Code::new("PC0000000002");
        let why = crate::model::product_coupon::NotHeld::NotIssued.reason();
        let r = record_hold(
            &mut c,
            &scan(&refused, &routed(&refused), &sale, 1_000),
            &Hold::Refused { reason: &why },
            None,
        )
        .unwrap();
        assert_eq!(r.row.state, State::Rejected);
        assert_eq!(r.row.till_outcome, Some(TillOutcome::Rejected));
        assert_eq!(code_of(r.row.reason.as_deref().unwrap_or("")), "not_issued");
        assert_eq!(r.row.next_attempt_at, None);

        let (early, late) = (coupon(10_000), coupon(50_000));
        let mut ids = Vec::new();
        for (code, held) in [("PC0000000003", &early), ("PC0000000004", &late)] {
            let code = Code::new(code);
            let hold = Hold::Held {
                coupon: held,
                openid: "oUser",
                stock_id: "s",
                title: None,
                value: None,
            };
            let r = record_hold(
                &mut c,
                &scan(&code, &routed(&code), &sale, 1_000),
                &hold,
                None,
            )
            .unwrap();
            ids.push(r.row.id);
        }
        assert_eq!(
            expire_due(&mut c, 9_999).unwrap(),
            (Vec::new(), Some(10_000)),
            "nothing ended yet: the next end"
        );
        let (ended, next) = expire_due(&mut c, 10_000).unwrap();
        assert_eq!(next, Some(50_000));
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].id, ids[0]);
        assert_eq!(ended[0].state, State::Cancelled);
        assert_eq!(
            code_of(ended[0].reason.as_deref().unwrap_or("")),
            "hold_expired"
        );
        assert!(expire_holds(&mut c, 10_000).unwrap().is_empty(), "once");
        assert_eq!(
            expire_due(&mut c, 10_000).unwrap(),
            (Vec::new(), Some(50_000))
        );
        let still = crate::ledger::queries::get(&c, ids[1])
            .unwrap()
            .expect("row");
        assert_eq!(still.state, State::Held);
        // An ended hold takes no order.
        assert_eq!(
            attach_order(&mut c, ids[0], &paid(), "U9", "x", 11_000).unwrap(),
            Err(OrderRefused::NotHeld(State::Cancelled))
        );
    }
}
