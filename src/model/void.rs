//! Voiding the sale a code was used in. Pure: what a void does to a row, by its state and
//! its API, and the steps of a merchant coupon's return.
//!
//! ```text
//!  queued (never confirmed) ──void──► cancelled   (an unconfirmed call is only asked about;
//!                                                  a late success goes to review)
//!  redeemed coupon ──void──► return pending ──WeChat Pay returned──► returned
//!                                          └─refused─────────────► review
//!  redeemed card   ──void──► review  (WeChat cannot undo a consume: compensate the customer)
//! ```

use crate::model::api::Api;
use crate::model::row::{Row, Void};
use crate::model::state::State;

pub const VOIDED_BEFORE_REDEMPTION: &str = "voided before WeChat confirmed it (never redeemed)";
pub const VOIDED_CARD: &str =
    "voided after redemption: card codes cannot be returned; compensate the customer";
pub const VOID_FAILED: &str = "voided, but WeChat Pay refused to return the coupon";

/// The longest reason a void may give, in characters.
pub const MAX_REASON: usize = 500;

/// What a void does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoidPlan {
    /// Not redeemed yet: the row is cancelled and never sent again.
    Cancel,
    /// A redeemed merchant coupon: give it back with `coupons/return`.
    Return,
    /// A redeemed card code: nothing can undo it; a person compensates the customer.
    Review,
    /// Nothing was redeemed (rejected, cancelled) or it is given back already: recorded only.
    Nothing,
    /// In review: a manager decides first.
    ResolveFirst,
}

impl VoidPlan {
    pub fn as_str(self) -> &'static str {
        match self {
            VoidPlan::Cancel => "cancelled",
            VoidPlan::Return => "return_pending",
            VoidPlan::Review => "card_in_review",
            VoidPlan::Nothing => "nothing_to_undo",
            VoidPlan::ResolveFirst => "in_review",
        }
    }
}

/// Every result a void request is counted under (`redeemd_voids_total{result}`): a plan,
/// `already` (voided before), or `refused` (no such redemption, or the ledger failed).
pub const RESULTS: [&str; 7] = [
    "cancelled",
    "return_pending",
    "card_in_review",
    "nothing_to_undo",
    "in_review",
    "already",
    "refused",
];

pub fn plan(state: State, api: Option<Api>) -> VoidPlan {
    match (state, api) {
        // Not sent yet (a held product coupon: its order never came): nothing to undo.
        (State::Queued | State::Held, _) => VoidPlan::Cancel,
        (State::Redeemed, Some(Api::Coupon | Api::ProductCoupon)) => VoidPlan::Return,
        (State::Redeemed, _) => VoidPlan::Review,
        (State::Rejected | State::Cancelled | State::Returned, _) => VoidPlan::Nothing,
        (State::Review, _) => VoidPlan::ResolveFirst,
    }
}

/// One line of a row's history for a sale that was voided before the code was scanned
/// again for a new one: its order and its void, as `past_sales` keeps them.
pub fn past_sale(row: &Row, void: &Void) -> String {
    let mut line = format!("order {}", row.order_id.as_deref().unwrap_or("-"));
    if let Some(amount) = row.amount {
        line.push_str(&format!(", amount {amount}"));
    }
    if let Some(cashier) = &row.cashier {
        line.push_str(&format!(", cashier {cashier}"));
    }
    line.push_str(&format!("; voided {}", crate::clock::rfc3339(void.at)));
    if let Some(by) = &void.by {
        line.push_str(&format!(" by {by}"));
    }
    line.push_str(&format!(": {}", void.reason));
    // One line per sale, whatever an older ledger holds.
    line.replace(['\n', '\r'], " ")
}

/// What a return's answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReturnStep {
    /// WeChat Pay gave the coupon back.
    Returned,
    /// WeChat Pay will not: a person decides.
    Refused { reason: String },
    /// Try again later with the same `return_request_no` (not sent, 5xx, 429, lost answer).
    Again { reason: String, throttled: bool },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_void_table() {
        use Api::{Card, Coupon};
        #[rustfmt::skip]
        let table = [
            (State::Queued,    Some(Card),   VoidPlan::Cancel),
            (State::Queued,    Some(Coupon), VoidPlan::Cancel),
            (State::Redeemed,  Some(Coupon), VoidPlan::Return),
            (State::Redeemed,  Some(Card),   VoidPlan::Review),
            (State::Rejected,  Some(Card),   VoidPlan::Nothing),
            (State::Cancelled, Some(Coupon), VoidPlan::Nothing),
            (State::Returned,  Some(Coupon), VoidPlan::Nothing),
            (State::Review,    Some(Card),   VoidPlan::ResolveFirst),
            (State::Rejected,  None,         VoidPlan::Nothing),
        ];
        for (state, api, want) in table {
            assert_eq!(plan(state, api), want, "{state} {api:?}");
            assert!(RESULTS.contains(&want.as_str()), "{want:?} is counted");
        }
    }
}
