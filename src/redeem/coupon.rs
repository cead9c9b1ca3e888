//! One try at redeeming a merchant coupon (WeChat Pay v3 `coupons/use`).
//!
//! The use request is idempotent on `use_request_no`, which was fixed when the row was
//! created. So an attempt whose answer was lost is resolved by repeating it. A 200 then
//! means it is used (by us). A refusal after one of our own unanswered attempts is
//! ambiguous: we may have used the coupon ourselves. That goes to a person.

use crate::clock::Millis;
use crate::ledger::store::{CallRecord, Confirmation};
use crate::ledger::{LedgerError, Row};
use crate::redeem::Ctx;
use crate::redeem::attempt::{Effect, Trail, TryEnd, finish, logged};
use crate::redeem::state::{Settle, State};
use crate::wechat::pay::{PayAnswer, PayApi, UseRequest};
use std::time::Duration;

/// A clock further off than this is what a 401 SIGN_ERROR is about.
pub const MAX_CLOCK_SKEW_S: i64 = 60;
/// How long coupon dispatch pauses after WeChat Pay refused our signature.
pub const SIGN_ERROR_PAUSE: Duration = Duration::from_secs(60);

pub const RESOLVED_BY_REPEAT: &str =
    "confirmed by repeating use_request_no after an attempt whose answer was lost";

/// A `use_request_no` unique across the merchant's tills, at most 32 characters:
/// `RD` + 8 hex of the till's name + 11 hex of the scan's millisecond + 8 random hex.
pub fn new_use_request_no(till: &str, at: Millis) -> String {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let mut h: u32 = 0x811c_9dc5;
    for b in till.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!(
        "RD{h:08X}{:011X}{:08X}",
        at.max(0) & 0xFFF_FFFF_FFFF,
        fastrand::u32(..)
    )
}

fn record(a: &PayAnswer) -> CallRecord {
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
        PayAnswer::Retry { status, detail, .. } => CallRecord {
            http_status: *status,
            errcode: None,
            outcome: "retry".into(),
            detail: Some(detail.clone()),
        },
        PayAnswer::Unknown { status, detail } => CallRecord {
            http_status: *status,
            errcode: None,
            outcome: "unknown".into(),
            detail: Some(detail.clone()),
        },
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

pub async fn try_coupon(ctx: &Ctx, api: &PayApi, row: Row) -> Result<TryEnd, LedgerError> {
    let trail = &mut Trail::new(ctx, &row);
    if row.state == State::Cancelled {
        // Asking would mean repeating the use, which would redeem a cancelled row.
        let settle = Settle::NeedsReview {
            reason: "refused at the till while a use request was unanswered: check the coupon in the merchant platform".into(),
        };
        return finish(ctx, trail, settle, Confirmation::default(), false).await;
    }
    let (Some(use_request_no), Some(use_time)) = (row.use_request_no.clone(), row.use_time.clone())
    else {
        let settle = Settle::NeedsReview {
            reason: "the ledger row has no use_request_no".into(),
        };
        return finish(ctx, trail, settle, Confirmation::default(), false).await;
    };
    let prior_unknown = row.unconfirmed;
    let req = UseRequest {
        coupon_code: row.code.clone(),
        stock_id: row.stock_id.clone(),
        appid: api.appid().to_string(),
        use_time,
        use_request_no,
    };
    let Some(answer) = logged(
        ctx,
        trail,
        "coupons/use",
        Effect::Redeem {
            unconfirmed: prior_unknown,
        },
        record,
        || api.use_coupon(&req),
    )
    .await?
    else {
        return Ok(TryEnd::Dropped);
    };
    let healthy = answer.healthy();
    let (settle, info) = match answer {
        PayAnswer::Used { reply, .. } => (
            Settle::Redeemed {
                note: prior_unknown.then(|| RESOLVED_BY_REPEAT.to_string()),
            },
            Confirmation {
                openid: reply.openid,
                wechatpay_use_time: reply.wechatpay_use_time,
            },
        ),
        PayAnswer::Refused {
            status,
            code,
            message,
        } => {
            let reason = refusal_reason(status, &code, &message);
            let settle = if prior_unknown {
                Settle::NeedsReview {
                    reason: format!(
                        "{reason}, after an earlier attempt of ours went unanswered: it may have been used by this till"
                    ),
                }
            } else {
                Settle::Refused { reason }
            };
            (settle, Confirmation::default())
        }
        PayAnswer::SignRejected {
            message,
            server_date,
        } => {
            let now_s = ctx.clock.now_ms() / 1000;
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
            return Ok(TryEnd::Pause {
                retry_in: SIGN_ERROR_PAUSE,
                reason,
            });
        }
        PayAnswer::Retry {
            detail, throttled, ..
        } => (
            Settle::Retry {
                reason: detail,
                throttled,
            },
            Confirmation::default(),
        ),
        PayAnswer::Unknown { detail, .. } => {
            (Settle::Unknown { reason: detail }, Confirmation::default())
        }
    };
    finish(ctx, trail, settle, info, healthy).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_request_no_fits_and_differs() {
        let a = new_use_request_no("store12-till3", 1_763_800_000_000);
        let b = new_use_request_no("store12-till3", 1_763_800_000_000);
        let c = new_use_request_no("store12-till4", 1_763_800_000_000);
        assert!(a.len() <= 32, "{a}");
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(a, b);
        assert_ne!(a[..10], c[..10], "the till is part of it");
    }

    #[test]
    fn reasons() {
        assert!(refusal_reason(404, "RESOURCE_NOT_EXISTS", "").contains("not found"));
        assert!(refusal_reason(400, "INVALID_REQUEST", "券已核销").contains("券已核销"));
    }
}
