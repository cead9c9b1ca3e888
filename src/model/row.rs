//! One redemption as the ledger keeps it: a code and everything known about it.

use crate::clock::Millis;
use crate::model::api::Api;
use crate::model::code::Code;
use crate::model::state::{Snapshot, State, TillOutcome};
use serde::Serialize;

/// One redemption: a code and everything known about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    pub id: i64,
    pub code: Code,
    pub api: Option<&'static str>,
    pub route: Option<i64>,
    pub card_id: Option<String>,
    pub aim_id: Option<String>,
    pub state: State,
    pub reason: Option<String>,
    pub till_outcome: Option<TillOutcome>,
    pub unconfirmed: bool,
    pub scans: i64,
    pub attempts: i64,
    pub scanner: String,
    pub till: String,
    pub scanned_at: Millis,
    pub updated_at: Millis,
    pub redeemed_at: Option<Millis>,
    pub next_attempt_at: Option<Millis>,
    pub openid: Option<String>,
    pub note: Option<String>,
    pub stock_id: Option<String>,
    pub use_request_no: Option<String>,
    /// The scan's moment, RFC 3339 with offset, as sent to WeChat Pay.
    pub use_time: Option<String>,
    pub wechatpay_use_time: Option<String>,
    /// A manager closed this review item: when, who, and their note.
    pub resolved_at: Option<Millis>,
    pub resolved_by: Option<String>,
    pub resolution: Option<String>,
    /// The sale the code was used in, its total before the coupon (fen), and who sold it.
    pub order_id: Option<String>,
    pub amount: Option<i64>,
    pub cashier: Option<String>,
    /// What the code is, from the catalog (card/get, the stock query), once known.
    pub title: Option<String>,
    pub kind: Option<String>,
    /// Face value in fen, when the type has one.
    pub value: Option<i64>,
    pub void: Option<Void>,
    /// How the store guard's claim went (`None`: no `[store]`, or a row from before it).
    pub guard: Option<Guard>,
    /// Earlier sales of this code, voided before it was scanned again for a new one (see
    /// `model::void::past_sale`), oldest first.
    pub past_sales: Vec<String>,
    /// A product coupon: its ids at WeChat Pay (the customer's `openid` and the `stock_id`
    /// are the columns above), and until when it is held for its sale.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coupon: Option<HeldCoupon>,
    /// The sale's WeChat Pay order a product coupon is used with, once the POS gave it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pay_order: Option<PayOrder>,
}

impl Row {
    /// While the row is a held product coupon: when its hold ends without an order.
    pub fn holds_until(&self) -> Option<Millis> {
        self.coupon
            .as_ref()
            .and_then(|c| c.hold_until)
            .filter(|_| self.state == State::Held)
    }
}

/// What a product coupon's use needs besides the holder and the stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeldCoupon {
    pub product_coupon_id: String,
    /// The appid the coupon was issued under.
    pub appid: String,
    /// While held: when the hold ends without an order.
    pub hold_until: Option<Millis>,
}

/// A WeChat Pay order's fields as a POS sends them (beside `order_id`, `amount`,
/// `cashier` in a request's body), before they are checked.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct PayOrderFields {
    #[serde(default)]
    pub transaction_id: Option<String>,
    #[serde(default)]
    pub out_trade_no: Option<String>,
    #[serde(default)]
    pub mchid: Option<String>,
    #[serde(default)]
    pub sub_mchid: Option<String>,
}

impl PayOrderFields {
    /// [`PayOrder::checked`].
    pub fn checked(self) -> Result<Option<PayOrder>, String> {
        PayOrder::checked(
            self.transaction_id,
            self.out_trade_no,
            self.mchid,
            self.sub_mchid,
        )
    }
}

/// A WeChat Pay order: its `transaction_id`, or its `out_trade_no` with the `mchid` (and
/// `sub_mchid`) it was paid to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PayOrder {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_trade_no: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mchid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_mchid: Option<String>,
}

impl PayOrder {
    /// Whether it names an order: a `transaction_id`, or an `out_trade_no` with its `mchid`.
    pub fn is_complete(&self) -> bool {
        self.transaction_id.is_some() || (self.out_trade_no.is_some() && self.mchid.is_some())
    }

    /// The order as a POS gave it (`None`: no field given), or what is wrong with it (for
    /// a 400). Each field is checked against WeChat Pay's format for it.
    pub fn checked(
        transaction_id: Option<String>,
        out_trade_no: Option<String>,
        mchid: Option<String>,
        sub_mchid: Option<String>,
    ) -> Result<Option<PayOrder>, String> {
        fn field(
            v: Option<String>,
            name: &str,
            what: &str,
            len: std::ops::RangeInclusive<usize>,
            ok: fn(u8) -> bool,
        ) -> Result<Option<String>, String> {
            match v {
                None => Ok(None),
                Some(v) if len.contains(&v.len()) && v.bytes().all(ok) => Ok(Some(v)),
                Some(_) => Err(format!(
                    "{name}: {what}, {} to {} characters",
                    len.start(),
                    len.end()
                )),
            }
        }
        let alnum = |b: u8| b.is_ascii_alphanumeric();
        let order = PayOrder {
            transaction_id: field(
                transaction_id,
                "transaction_id",
                "WeChat Pay's order number (letters and digits)",
                1..=32,
                alnum,
            )?,
            out_trade_no: field(
                out_trade_no,
                "out_trade_no",
                "the merchant's order number (letters, digits, _ - | *)",
                6..=32,
                |b| b.is_ascii_alphanumeric() || b"_-|*".contains(&b),
            )?,
            mchid: field(
                mchid,
                "mchid",
                "the merchant number (digits)",
                1..=32,
                |b| b.is_ascii_digit(),
            )?,
            sub_mchid: field(
                sub_mchid,
                "sub_mchid",
                "the sub-merchant number (digits)",
                1..=32,
                |b| b.is_ascii_digit(),
            )?,
        };
        if order == PayOrder::default() {
            return Ok(None);
        }
        if !order.is_complete() {
            return Err(
                "a WeChat Pay order needs transaction_id, or out_trade_no with mchid".into(),
            );
        }
        if order.sub_mchid.is_some() && order.mchid.is_none() {
            return Err("sub_mchid: only with mchid".into());
        }
        Ok(Some(order))
    }
}

#[cfg(test)]
mod pay_order_tests {
    use super::PayOrder;

    #[test]
    fn a_pay_order_is_checked_field_by_field() {
        let s = |v: &str| Some(v.to_string());
        let ok = |t, o, m, sm| PayOrder::checked(t, o, m, sm);
        assert_eq!(ok(None, None, None, None), Ok(None));
        assert!(ok(s("4200000000202612051234567890"), None, None, None).is_ok_and(|o| o.is_some()));
        assert!(
            ok(None, s("SALE-0001"), s("1900000109"), s("1900000110")).is_ok_and(|o| o.is_some())
        );
        let cases = [
            (ok(s("42-00"), None, None, None), "transaction_id:"),
            (ok(None, s("S1"), s("1900000109"), None), "out_trade_no:"),
            (ok(None, s("SALE-0001"), s("19x"), None), "mchid:"),
            (ok(None, s("SALE-0001"), None, None), "needs transaction_id"),
            (
                ok(s("4200"), None, None, s("1900000110")),
                "sub_mchid: only with mchid",
            ),
            (
                ok(None, None, None, s("1900000110")),
                "needs transaction_id",
            ),
        ];
        for (got, want) in cases {
            let e = got.expect_err(want);
            assert!(e.starts_with(want) || e.contains(want), "{e} / {want}");
        }
    }
}

/// How the store's claim on a code went for its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Guard {
    /// This till holds the code's claim.
    Claimed,
    /// The store did not answer within `claim_timeout`: the till went on alone.
    Unavailable,
    /// Another till holds the claim: this till never sent the code.
    Elsewhere,
    /// Another till claimed the code long ago and recorded nothing: a person decides.
    Abandoned,
}

impl Guard {
    pub fn as_str(self) -> &'static str {
        match self {
            Guard::Claimed => "claimed",
            Guard::Unavailable => "unavailable",
            Guard::Elsewhere => "elsewhere",
            Guard::Abandoned => "abandoned",
        }
    }

    pub fn parse(s: &str) -> Option<Guard> {
        [
            Guard::Claimed,
            Guard::Unavailable,
            Guard::Elsewhere,
            Guard::Abandoned,
        ]
        .into_iter()
        .find(|g| g.as_str() == s)
    }
}

/// A void of the sale the code was used in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Void {
    pub state: VoidState,
    pub reason: String,
    pub by: Option<String>,
    pub at: Millis,
    /// WeChat Pay's idempotency key for the coupon's return, fixed with the void.
    pub return_request_no: Option<String>,
    /// When the next try at the return is due (pending only).
    pub next_at: Option<Millis>,
    pub returned_at: Option<Millis>,
}

/// A void's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VoidState {
    /// A coupon's return waits for WeChat Pay's answer.
    Pending,
    /// Done: the row was cancelled, returned, or sent to review.
    Done,
    /// WeChat Pay refused the return: the row is in review.
    Failed,
}

impl VoidState {
    pub fn as_str(self) -> &'static str {
        match self {
            VoidState::Pending => "pending",
            VoidState::Done => "done",
            VoidState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<VoidState> {
        [VoidState::Pending, VoidState::Done, VoidState::Failed]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

impl Row {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            state: self.state,
            unconfirmed: self.unconfirmed,
            accepted_offline: self.till_outcome == Some(TillOutcome::AcceptedOffline),
        }
    }

    pub fn api(&self) -> Option<Api> {
        self.api.and_then(Api::parse)
    }
}

impl Serialize for State {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Serialize for TillOutcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
