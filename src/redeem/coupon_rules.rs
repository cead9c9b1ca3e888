//! The merchant-coupon flow's decision table: what each answer of `coupons/use` means for
//! the row and for WeChat Pay. Pure; `redeem::coupon` only carries the verdicts out.
//!
//! The use request is idempotent on `use_request_no`, fixed when the row was created, so an
//! attempt whose answer was lost is resolved by repeating it: a 200 then means it is used
//! (by us). A refusal after one of our own unanswered attempts is ambiguous (we may have
//! used the coupon ourselves): that goes to a person.

use crate::model::call::CallRecord;

use crate::model::call::Confirmation;
use crate::model::state::{Settle, State};
use crate::redeem::verdict::{Health, PauseFor, Step, Verdict};
use crate::wechatpay::pay::PayAnswer;
use std::time::Duration;

/// A clock further off than this is what a 401 SIGN_ERROR is about.
pub const MAX_CLOCK_SKEW_S: i64 = 60;
/// How long coupon dispatch pauses after WeChat Pay refused our signature.
pub const SIGN_ERROR_PAUSE: Duration = Duration::from_secs(60);

pub const RESOLVED_BY_REPEAT: &str =
    "confirmed by repeating use_request_no after an attempt whose answer was lost";
pub const REFUSED_WHILE_UNANSWERED: &str = "refused at the till while a use request was unanswered: check the coupon in the merchant platform";
pub const NO_USE_REQUEST_NO: &str = "the ledger row has no use_request_no";

/// Whether a use may be sent for a row in `state` with the `use_request_no` and
/// `use_time` fixed at its scan: `Ok` with them, or what to settle instead. A cancelled row
/// is never asked about: asking would mean repeating the use, which would redeem it.
pub fn before_use(
    state: State,
    request: Option<(String, String)>,
) -> Result<(String, String), Settle> {
    let review = |reason: &str| {
        Err(Settle::NeedsReview {
            reason: reason.into(),
        })
    };
    match request {
        _ if state == State::Cancelled => review(REFUSED_WHILE_UNANSWERED),
        None => review(NO_USE_REQUEST_NO),
        Some(r) => Ok(r),
    }
}

/// What a use's answer means. `unconfirmed_before`: the row's flag as the try read it,
/// before the use's intent marked it. `now_s`: the till's clock, to tell a clock that is
/// off from a wrong key on a 401.
pub fn after_use<T>(unconfirmed_before: bool, answer: &PayAnswer<T>, now_s: i64) -> Verdict {
    let health = health(answer);
    let settle = match answer {
        PayAnswer::Used { .. } => Settle::Redeemed {
            note: unconfirmed_before.then(|| RESOLVED_BY_REPEAT.to_string()),
        },
        PayAnswer::Refused {
            status,
            code,
            message,
            ..
        } => {
            let reason = refusal_reason(*status, code, message);
            if unconfirmed_before {
                Settle::NeedsReview {
                    reason: format!(
                        "{reason}, after an earlier attempt of ours went unanswered: it may have been used by this till"
                    ),
                }
            } else {
                Settle::Refused { reason }
            }
        }
        // WeChat Pay did not accept who we are, so it did nothing: the row is as before.
        PayAnswer::SignRejected {
            message,
            server_date,
        } => {
            let reason = match server_date.map(|d| now_s - d) {
                Some(skew) if skew.abs() > MAX_CLOCK_SKEW_S => format!(
                    "this till's clock is {} s {} WeChat Pay's (401 {message}): fix the time (NTP)",
                    skew.abs(),
                    if skew > 0 { "ahead of" } else { "behind" }
                ),
                _ => format!(
                    "WeChat Pay rejected our request signature (401 {message}): check wechat_pay.serial_no and private_key_file"
                ),
            };
            return Verdict {
                step: Step::Pause {
                    retry_in: PauseFor::This(SIGN_ERROR_PAUSE),
                    settle: Some(Settle::NotSent {
                        reason: reason.clone(),
                        unconfirmed_before,
                    }),
                    reason,
                },
                health,
            };
        }
        PayAnswer::NotSent { detail } => Settle::NotSent {
            reason: detail.clone(),
            unconfirmed_before,
        },
        PayAnswer::Retry {
            detail, throttled, ..
        } => Settle::Retry {
            reason: detail.clone(),
            throttled: *throttled,
        },
        PayAnswer::Unknown { detail, .. } => Settle::Unknown {
            reason: detail.clone(),
        },
    };
    Verdict::settle(settle, health)
}

/// How WeChat Pay behaved on this call.
pub fn health<T>(answer: &PayAnswer<T>) -> Health {
    match answer {
        PayAnswer::Used { .. } | PayAnswer::Refused { .. } => Health::Healthy,
        PayAnswer::Retry {
            throttled: true, ..
        }
        | PayAnswer::Unknown {
            timed_out: true, ..
        } => Health::Congested,
        PayAnswer::Retry { .. }
        | PayAnswer::Unknown { .. }
        | PayAnswer::NotSent { .. }
        | PayAnswer::SignRejected { .. } => Health::Down,
    }
}

/// What a verified use reply tells, for the row.
pub fn confirmation(answer: &PayAnswer) -> Confirmation {
    match answer {
        PayAnswer::Used { reply, .. } => Confirmation {
            openid: reply.openid.clone(),
            wechatpay_use_time: reply.wechatpay_use_time.clone(),
            stock_id: reply.stock_id.clone(),
            ..Confirmation::default()
        },
        _ => Confirmation::default(),
    }
}

/// The cashier's reason for a refusal.
pub fn refusal_reason(status: u16, code: &str, message: &str) -> String {
    let what = match status {
        403 => "not allowed (appid not bound to the merchant, or not this merchant's coupon)",
        404 => "coupon not found",
        _ => "refused by WeChat Pay",
    };
    if message.is_empty() {
        format!("{what} ({code})")
    } else {
        format!("{what}: {message} ({code})")
    }
}

/// A call's record for the audit trail.
pub fn record<T>(a: &PayAnswer<T>) -> CallRecord {
    match a {
        PayAnswer::Used { status, host, .. } => CallRecord {
            http_status: Some(*status),
            errcode: None,
            outcome: "ok".into(),
            detail: Some(format!("verified; via {host}")),
        },
        PayAnswer::Refused {
            status,
            code,
            message,
            ..
        } => CallRecord {
            http_status: Some(*status),
            errcode: None,
            outcome: "refused".into(),
            detail: Some(format!("{code}: {message}")),
        },
        PayAnswer::SignRejected { message, .. } => CallRecord {
            http_status: Some(401),
            errcode: None,
            outcome: "sign_error".into(),
            detail: Some(message.clone()),
        },
        PayAnswer::NotSent { detail } => CallRecord {
            http_status: None,
            errcode: None,
            outcome: "not_sent".into(),
            detail: Some(detail.clone()),
        },
        PayAnswer::Retry { status, detail, .. } => CallRecord {
            http_status: Some(*status),
            errcode: None,
            outcome: "retry".into(),
            detail: Some(detail.clone()),
        },
        PayAnswer::Unknown { status, detail, .. } => CallRecord {
            http_status: *status,
            errcode: None,
            outcome: "unknown".into(),
            detail: Some(detail.clone()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::state::Schedule::{Backoff, Never, Throttled};
    use crate::redeem::verdict::table::{Outcome, out, run, snap};
    use crate::wechatpay::pay::UseReply;
    use Health::{Congested, Down, Healthy};
    use State::{Cancelled, Queued, Redeemed, Rejected, Review};

    const NOW: i64 = 1_764_000_000;

    fn refused(status: u16, code: &str) -> PayAnswer {
        PayAnswer::Refused {
            status,
            code: code.into(),
            message: "msg".into(),
            errcode: None,
        }
    }

    fn retry(status: u16, throttled: bool) -> PayAnswer {
        PayAnswer::Retry {
            status,
            detail: format!("HTTP {status}"),
            throttled,
        }
    }

    fn unknown(timed_out: bool) -> PayAnswer {
        PayAnswer::Unknown {
            status: None,
            detail: "no answer".into(),
            timed_out,
        }
    }

    /// Each answer to a use, on the row as the ledger has it then (its intent marked it
    /// unconfirmed): sent fresh; repeated after an unanswered attempt; fresh and accepted
    /// offline meanwhile; fresh and refused at the till meanwhile.
    #[test]
    fn use_table() {
        let used = PayAnswer::Used {
            status: 200,
            reply: UseReply::default(),
            host: "h".into(),
        };
        let sign = |server_date| PayAnswer::SignRejected {
            message: "SIGN_ERROR: x".into(),
            server_date,
        };
        #[rustfmt::skip]
        let table: Vec<(&str, PayAnswer, [Outcome; 4])> = vec![
            ("200", used, [
                out(Redeemed, false, Never, Healthy, false),
                out(Redeemed, false, Never, Healthy, false),
                out(Redeemed, false, Never, Healthy, false),
                out(Review, false, Never, Healthy, false)]),
            ("400 INVALID_REQUEST", refused(400, "INVALID_REQUEST"), [
                out(Rejected, false, Never, Healthy, false),
                out(Review, false, Never, Healthy, false),
                out(Review, false, Never, Healthy, false),
                out(Cancelled, false, Never, Healthy, false)]),
            ("400 PARAM_ERROR", refused(400, "PARAM_ERROR"), [
                out(Rejected, false, Never, Healthy, false),
                out(Review, false, Never, Healthy, false),
                out(Review, false, Never, Healthy, false),
                out(Cancelled, false, Never, Healthy, false)]),
            ("403 NO_AUTH", refused(403, "NO_AUTH"), [
                out(Rejected, false, Never, Healthy, false),
                out(Review, false, Never, Healthy, false),
                out(Review, false, Never, Healthy, false),
                out(Cancelled, false, Never, Healthy, false)]),
            ("404 RESOURCE_NOT_EXISTS", refused(404, "RESOURCE_NOT_EXISTS"), [
                out(Rejected, false, Never, Healthy, false),
                out(Review, false, Never, Healthy, false),
                out(Review, false, Never, Healthy, false),
                out(Cancelled, false, Never, Healthy, false)]),
            // WeChat Pay did nothing: the flag goes back to what the try read.
            ("401 SIGN_ERROR", sign(Some(NOW)), [
                out(Queued, false, Backoff, Down, true),
                out(Queued, true, Backoff, Down, true),
                out(Queued, false, Backoff, Down, true),
                out(Cancelled, false, Never, Down, true)]),
            ("429", retry(429, true), [
                out(Queued, true, Throttled, Congested, false),
                out(Queued, true, Throttled, Congested, false),
                out(Queued, true, Throttled, Congested, false),
                out(Cancelled, true, Throttled, Congested, false)]),
            // Whether a 5xx used the coupon is not documented: unanswered, as before.
            ("500", retry(500, false), [
                out(Queued, true, Backoff, Down, false),
                out(Queued, true, Backoff, Down, false),
                out(Queued, true, Backoff, Down, false),
                out(Cancelled, true, Backoff, Down, false)]),
            ("503", retry(503, false), [
                out(Queued, true, Backoff, Down, false),
                out(Queued, true, Backoff, Down, false),
                out(Queued, true, Backoff, Down, false),
                out(Cancelled, true, Backoff, Down, false)]),
            ("no host reachable", PayAnswer::NotSent { detail: "cannot connect".into() }, [
                out(Queued, false, Backoff, Down, false),
                out(Queued, true, Backoff, Down, false),
                out(Queued, false, Backoff, Down, false),
                out(Cancelled, false, Never, Down, false)]),
            ("timed out", unknown(true), [
                out(Queued, true, Backoff, Congested, false),
                out(Queued, true, Backoff, Congested, false),
                out(Queued, true, Backoff, Congested, false),
                out(Cancelled, true, Backoff, Congested, false)]),
            ("unverified", unknown(false), [
                out(Queued, true, Backoff, Down, false),
                out(Queued, true, Backoff, Down, false),
                out(Queued, true, Backoff, Down, false),
                out(Cancelled, true, Backoff, Down, false)]),
        ];
        let rows = [
            (snap(Queued, true, false), false),
            (snap(Queued, true, false), true),
            (snap(Queued, true, true), false),
            (snap(Cancelled, true, false), false),
        ];
        for (name, answer, expected) in table {
            for ((row, before), want) in rows.into_iter().zip(expected) {
                let got = run(row, after_use(before, &answer, NOW));
                assert_eq!(got, want, "{name} on {row:?}, unconfirmed before: {before}");
            }
        }
    }

    #[test]
    fn reasons() {
        assert!(refusal_reason(404, "RESOURCE_NOT_EXISTS", "").contains("not found"));
        assert!(refusal_reason(400, "INVALID_REQUEST", "券已核销").contains("券已核销"));
    }

    #[test]
    fn a_sign_error_names_the_clock_when_it_is_off() {
        let answer = |d| PayAnswer::<UseReply>::SignRejected {
            message: "SIGN_ERROR: x".into(),
            server_date: Some(d),
        };
        let reason = |v: Verdict| match v.step {
            Step::Pause { reason, .. } => reason,
            other => panic!("{other:?}"),
        };
        assert!(reason(after_use(false, &answer(NOW - 600), NOW)).contains("600 s ahead of"));
        assert!(reason(after_use(false, &answer(NOW + 90), NOW)).contains("90 s behind"));
        assert!(reason(after_use(false, &answer(NOW), NOW)).contains("serial_no"));
    }

    #[test]
    fn no_use_is_sent_for_a_cancelled_row_or_one_without_its_request_no() {
        let req = || Some(("RD1".to_string(), "2026-12-01T10:00:00+08:00".to_string()));
        assert!(before_use(Queued, req()).is_ok());
        assert!(matches!(
            before_use(Cancelled, req()),
            Err(Settle::NeedsReview { .. })
        ));
        assert!(matches!(
            before_use(Queued, None),
            Err(Settle::NeedsReview { .. })
        ));
    }
}
