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
use crate::model::state::State;

pub const VOIDED_BEFORE_REDEMPTION: &str = "voided before WeChat confirmed it (never redeemed)";
pub const VOIDED_CARD: &str =
    "voided after redemption: card codes cannot be returned; compensate the customer";
pub const VOID_FAILED: &str = "voided, but WeChat Pay refused to return the coupon";

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

pub fn plan(state: State, api: Option<Api>) -> VoidPlan {
    match (state, api) {
        (State::Queued, _) => VoidPlan::Cancel,
        (State::Redeemed, Some(Api::Coupon)) => VoidPlan::Return,
        (State::Redeemed, _) => VoidPlan::Review,
        (State::Rejected | State::Cancelled | State::Returned, _) => VoidPlan::Nothing,
        (State::Review, _) => VoidPlan::ResolveFirst,
    }
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
        }
    }
}
