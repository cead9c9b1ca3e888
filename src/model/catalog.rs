//! What a code is worth: a card's or a stock's metadata (WeChat's `card/get` and WeChat
//! Pay's stock query), and the pure rules that use it before anything irreversible is sent:
//! which card types a route takes, and a sale's minimum.

use serde::Serialize;

/// What WeChat says a card (by `card_id`) or a merchant-coupon stock (by `stock_id`) is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Meta {
    /// Card: `card_type` (GROUPON, CASH, DISCOUNT, GIFT, GENERAL_COUPON, MEMBER_CARD, ...).
    /// Stock: `stock_type` (NORMAL, DISCOUNT, EXCHANGE).
    pub kind: String,
    /// Card: `base_info.title`; stock: `stock_name`.
    pub title: String,
    /// Face value in fen where the type has one: a CASH card's `reduce_cost`, a NORMAL
    /// stock's `discount_amount`. `None` for percentages, gifts and the like.
    pub value: Option<i64>,
    /// The sale's minimum in fen for the code to apply: CASH `least_cost`, a stock's
    /// `transaction_minimum`. `None` or 0: no minimum.
    pub minimum: Option<i64>,
    /// What it gives when it is not an amount: `discount` (percent off, card) or
    /// `discount_percent` (percent paid, stock), `gift`, `deal_detail`, exchange price.
    pub detail: Option<String>,
    /// The validity window, as WeChat gave it (unix seconds or RFC 3339).
    pub valid_from: Option<String>,
    pub valid_until: Option<String>,
}

/// The card type no route takes unless it says so: a member card's code is the member's
/// identity, and consuming it would take the card away.
pub const MEMBER_CARD: &str = "MEMBER_CARD";

/// The card types a route accepts (`[[route]] card_types`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardTypes {
    /// Every type but MEMBER_CARD (the default).
    Coupons,
    /// Exactly these (upper case).
    Only(Vec<String>),
    /// `["any"]`: no check at all, and no `card/get` (an appid that may not call it).
    Any,
}

impl CardTypes {
    pub fn allows(&self, kind: &str) -> bool {
        match self {
            CardTypes::Coupons => kind != MEMBER_CARD,
            CardTypes::Only(kinds) => kinds.iter().any(|k| k == kind),
            CardTypes::Any => true,
        }
    }

    /// Whether a card's type must be known before a consume.
    pub fn checks(&self) -> bool {
        !matches!(self, CardTypes::Any)
    }
}

/// Why a code is refused before anything is sent. `reason_code` is stable; `reason` is
/// the English text the ledger keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason_code: &'static str,
    pub reason: String,
}

pub const MEMBER_CARD_REFUSED: &str = "member card, not a coupon";

/// What the metadata says about redeeming this code now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    Go,
    Refuse(Refusal),
    /// The card's type is not known yet (card/get unreachable): nothing may be consumed.
    NotKnown,
}

/// Yuan for people: 1000 fen → "10", 1050 → "10.50".
pub fn yuan(fen: i64) -> String {
    if fen % 100 == 0 {
        format!("{}", fen / 100)
    } else {
        format!("{}.{:02}", fen / 100, (fen % 100).abs())
    }
}

/// The card rule: type first (a member card is never consumed), then the sale's minimum
/// when the sale's amount is known.
pub fn admit_card(meta: Option<&Meta>, types: &CardTypes, amount: Option<i64>) -> Admit {
    if !types.checks() {
        return meta.map_or(Admit::Go, |m| below_minimum(m, amount));
    }
    let Some(m) = meta else {
        return Admit::NotKnown;
    };
    if !types.allows(&m.kind) {
        let reason = if m.kind == MEMBER_CARD {
            MEMBER_CARD_REFUSED.to_string()
        } else {
            format!("card type {} not accepted by this till", m.kind)
        };
        return Admit::Refuse(Refusal {
            reason_code: if m.kind == MEMBER_CARD {
                "member_card"
            } else {
                "card_type_not_accepted"
            },
            reason,
        });
    }
    below_minimum(m, amount)
}

/// The coupon rule: the sale's minimum, when both are known. A stock that could not be
/// read does not stop a `use` (WeChat Pay checks the coupon itself); with an amount given,
/// its minimum is simply not checked.
pub fn admit_coupon(meta: Option<&Meta>, amount: Option<i64>) -> Admit {
    meta.map_or(Admit::Go, |m| below_minimum(m, amount))
}

fn below_minimum(m: &Meta, amount: Option<i64>) -> Admit {
    match (m.minimum, amount) {
        (Some(min), Some(amount)) if min > 0 && amount < min => Admit::Refuse(Refusal {
            reason_code: "below_minimum",
            reason: format!("sale below the coupon's minimum of ¥{}", yuan(min)),
        }),
        _ => Admit::Go,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(kind: &str, minimum: Option<i64>) -> Meta {
        Meta {
            kind: kind.into(),
            title: "t".into(),
            value: Some(1000),
            minimum,
            detail: None,
            valid_from: None,
            valid_until: None,
        }
    }

    #[test]
    fn the_card_rule_table() {
        let only_cash = CardTypes::Only(vec!["CASH".into()]);
        let member = meta(MEMBER_CARD, None);
        let cash = meta("CASH", Some(5000));
        let gift = meta("GIFT", None);
        let code = |a: Admit| match a {
            Admit::Go => "go",
            Admit::NotKnown => "not_known",
            Admit::Refuse(r) => r.reason_code,
        };
        #[rustfmt::skip]
        let table: &[(Option<&Meta>, &CardTypes, Option<i64>, &str)] = &[
            (Some(&member), &CardTypes::Coupons, None,       "member_card"),
            (Some(&member), &CardTypes::Coupons, Some(9999), "member_card"),
            (Some(&member), &only_cash,          None,       "member_card"),
            (Some(&member), &CardTypes::Any,     None,       "go"),
            (Some(&gift),   &CardTypes::Coupons, None,       "go"),
            (Some(&gift),   &only_cash,          None,       "card_type_not_accepted"),
            (Some(&cash),   &only_cash,          None,       "go"),
            (Some(&cash),   &only_cash,          Some(4999), "below_minimum"),
            (Some(&cash),   &only_cash,          Some(5000), "go"),
            (Some(&cash),   &CardTypes::Any,     Some(100),  "below_minimum"),
            (None,          &CardTypes::Coupons, None,       "not_known"),
            (None,          &CardTypes::Coupons, Some(100),  "not_known"),
            (None,          &CardTypes::Any,     Some(100),  "go"),
        ];
        for (i, (m, types, amount, want)) in table.iter().enumerate() {
            assert_eq!(code(admit_card(*m, types, *amount)), *want, "row {i}");
        }
    }

    #[test]
    fn the_coupon_rule_and_its_wording() {
        let normal = meta("NORMAL", Some(10050));
        assert_eq!(admit_coupon(None, Some(1)), Admit::Go);
        assert_eq!(admit_coupon(Some(&normal), None), Admit::Go);
        assert_eq!(admit_coupon(Some(&normal), Some(10050)), Admit::Go);
        assert_eq!(
            admit_coupon(Some(&normal), Some(10049)),
            Admit::Refuse(Refusal {
                reason_code: "below_minimum",
                reason: "sale below the coupon's minimum of ¥100.50".into()
            })
        );
        assert_eq!(
            admit_coupon(Some(&meta("NORMAL", Some(0))), Some(0)),
            Admit::Go
        );
        assert_eq!(yuan(1000), "10");
        assert_eq!(yuan(5), "0.05");
    }
}
