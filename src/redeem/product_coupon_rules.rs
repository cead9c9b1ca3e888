//! The product-coupon use's decision table: what each answer of `…/coupons/{code}/use`
//! means for the row. Pure; `redeem::product_coupon` only carries the verdicts out.
//!
//! A product coupon is used only once its sale is paid: the customer has had the discount.
//! So WeChat Pay refusing the use (the coupon used elsewhere meanwhile, expired, deleted) is
//! never the cashier's "rejected": the row goes to a person with WeChat Pay's reason. The
//! rest is the merchant coupon's table: the use is idempotent on `out_request_no`, fixed
//! when the order was attached, so an unanswered use is resolved by repeating it.

use crate::model::call::{CallRecord, Confirmation};
use crate::model::product_coupon::{USE_REFUSED, USED_BY_ANOTHER_REQUEST};
use crate::model::state::Settle;
use crate::redeem::coupon_rules::{self, refusal_reason};
use crate::redeem::verdict::{Health, Verdict};
use crate::wechatpay::pay::{CouponEntity, PayAnswer};

/// What a use's answer means. `unconfirmed_before`: the row's flag as the try read it;
/// `out_request_no`: the use's request number (a reply showing another one is not ours);
/// `now_s`: the till's clock, to tell a clock that is off from a wrong key on a 401.
pub fn after_use(
    unconfirmed_before: bool,
    out_request_no: &str,
    answer: &PayAnswer<CouponEntity>,
    now_s: i64,
) -> Verdict {
    match answer {
        PayAnswer::Used { reply, .. } => {
            let theirs = reply
                .single_usage_detail
                .as_ref()
                .and_then(|u| u.use_request_no.as_deref());
            match theirs {
                Some(other) if other != out_request_no => Verdict::settle(
                    Settle::NeedsReview {
                        reason: format!(
                            "{USED_BY_ANOTHER_REQUEST} ({other}, ours {out_request_no}): check the coupon in the merchant platform"
                        ),
                    },
                    Health::Healthy,
                ),
                _ => coupon_rules::after_use(unconfirmed_before, answer, now_s),
            }
        }
        PayAnswer::Refused {
            status,
            code,
            message,
            errcode,
        } => {
            let mut reason = format!("{USE_REFUSED}: {}", refusal_reason(*status, code, message));
            if let Some(e) = errcode {
                reason.push_str(&format!(" [error {e}]"));
            }
            if unconfirmed_before {
                reason.push_str(
                    ", after an earlier attempt of ours went unanswered: it may have been used by this till",
                );
            }
            Verdict::settle(Settle::NeedsReview { reason }, Health::Healthy)
        }
        _ => coupon_rules::after_use(unconfirmed_before, answer, now_s),
    }
}

/// What a verified use reply tells, for the row.
pub fn confirmation(answer: &PayAnswer<CouponEntity>) -> Confirmation {
    match answer {
        PayAnswer::Used { reply, .. } => Confirmation {
            wechatpay_use_time: reply
                .single_usage_detail
                .as_ref()
                .and_then(|u| u.use_time.clone()),
            ..Confirmation::default()
        },
        _ => Confirmation::default(),
    }
}

/// A call's record for the audit trail, with the refusal's error code.
pub fn record(a: &PayAnswer<CouponEntity>) -> CallRecord {
    let mut r = coupon_rules::record(a);
    if let PayAnswer::Refused {
        errcode: Some(e), ..
    } = a
    {
        r.errcode = i64::try_from(*e).ok();
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::state::Schedule::{Backoff, Never, Throttled};
    use crate::model::state::State::{Cancelled, Queued, Redeemed, Review};
    use crate::redeem::verdict::table::{Outcome, out, run, snap};
    use crate::wechatpay::pay::UsageDetail;
    use Health::{Congested, Down, Healthy};

    const NOW: i64 = 1_764_000_000;
    const OURS: &str = "RDT1-1";

    fn used(request_no: Option<&str>) -> PayAnswer<CouponEntity> {
        PayAnswer::Used {
            status: 200,
            reply: CouponEntity {
                coupon_state: "USED".into(),
                single_usage_detail: Some(UsageDetail {
                    use_request_no: request_no.map(String::from),
                    use_time: Some("2026-12-05T10:00:00+08:00".into()),
                    ..UsageDetail::default()
                }),
                ..CouponEntity::default()
            },
            host: "h".into(),
        }
    }

    fn refused(status: u16, code: &str, errcode: Option<u64>) -> PayAnswer<CouponEntity> {
        PayAnswer::Refused {
            status,
            code: code.into(),
            message: "券已被其他订单核销".into(),
            errcode,
        }
    }

    fn retry(status: u16, throttled: bool) -> PayAnswer<CouponEntity> {
        PayAnswer::Retry {
            status,
            detail: format!("HTTP {status}"),
            throttled,
        }
    }

    /// Each answer to a use, on the row as the ledger has it then (its intent marked it
    /// unconfirmed): sent fresh; repeated after an unanswered attempt; voided meanwhile.
    #[test]
    fn use_table() {
        #[rustfmt::skip]
        let table: Vec<(&str, PayAnswer<CouponEntity>, [Outcome; 3])> = vec![
            ("200 ours", used(Some(OURS)), [
                out(Redeemed, false, Never, Healthy, false),
                out(Redeemed, false, Never, Healthy, false),
                out(Review, false, Never, Healthy, false)]),
            ("200 without usage detail", used(None), [
                out(Redeemed, false, Never, Healthy, false),
                out(Redeemed, false, Never, Healthy, false),
                out(Review, false, Never, Healthy, false)]),
            ("200 another request's use", used(Some("RDX-9")), [
                out(Review, false, Never, Healthy, false),
                out(Review, false, Never, Healthy, false),
                out(Review, false, Never, Healthy, false)]),
            // The sale is paid: a refusal is a person's, never the cashier's "rejected".
            ("400 used by another order", refused(400, "INVALID_REQUEST", Some(272756745)), [
                out(Review, false, Never, Healthy, false),
                out(Review, false, Never, Healthy, false),
                out(Review, false, Never, Healthy, false)]),
            ("404 not found", refused(404, "RESOURCE_NOT_EXISTS", Some(268578851)), [
                out(Review, false, Never, Healthy, false),
                out(Review, false, Never, Healthy, false),
                out(Review, false, Never, Healthy, false)]),
            ("403 without errcode", refused(403, "NO_AUTH", None), [
                out(Review, false, Never, Healthy, false),
                out(Review, false, Never, Healthy, false),
                out(Review, false, Never, Healthy, false)]),
            ("429", retry(429, true), [
                out(Queued, true, Throttled, Congested, false),
                out(Queued, true, Throttled, Congested, false),
                out(Cancelled, true, Throttled, Congested, false)]),
            ("500", retry(500, false), [
                out(Queued, true, Backoff, Down, false),
                out(Queued, true, Backoff, Down, false),
                out(Cancelled, true, Backoff, Down, false)]),
            ("connection refused", PayAnswer::NotSent { detail: "refused".into() }, [
                out(Queued, false, Backoff, Down, false),
                out(Queued, true, Backoff, Down, false),
                out(Cancelled, false, Never, Down, false)]),
            ("timed out", PayAnswer::Unknown { status: None, detail: "t".into(), timed_out: true }, [
                out(Queued, true, Backoff, Congested, false),
                out(Queued, true, Backoff, Congested, false),
                out(Cancelled, true, Backoff, Congested, false)]),
            ("401", PayAnswer::SignRejected { message: "SIGN_ERROR".into(), server_date: Some(NOW) }, [
                out(Queued, false, Backoff, Down, true),
                out(Queued, true, Backoff, Down, true),
                out(Cancelled, false, Never, Down, true)]),
        ];
        let rows = [
            (snap(Queued, true, false), false),
            (snap(Queued, true, false), true),
            (snap(Cancelled, true, false), false),
        ];
        for (name, answer, expected) in table {
            for ((row, before), want) in rows.into_iter().zip(expected) {
                let got = run(row, after_use(before, OURS, &answer, NOW));
                assert_eq!(got, want, "{name} on {row:?}, unconfirmed before: {before}");
            }
        }
    }

    #[test]
    fn a_refusal_after_payment_says_why_with_its_error_code() {
        let reason = |v: Verdict| match v.step {
            crate::redeem::verdict::Step::Settle(Settle::NeedsReview { reason }) => reason,
            other => panic!("{other:?}"),
        };
        let r = reason(after_use(
            false,
            OURS,
            &refused(400, "INVALID_REQUEST", Some(272756745)),
            NOW,
        ));
        assert!(r.starts_with(USE_REFUSED), "{r}");
        assert!(
            r.contains("272756745") && r.contains("券已被其他订单核销"),
            "{r}"
        );
        assert_eq!(
            crate::model::reason::code_of(&r),
            "use_refused_after_payment"
        );
        let r = reason(after_use(true, OURS, &refused(400, "X", None), NOW));
        assert!(r.contains("may have been used by this till"), "{r}");
        let r = reason(after_use(false, OURS, &used(Some("RDX-9")), NOW));
        assert_eq!(crate::model::reason::code_of(&r), "used_by_another_request");
    }
}
