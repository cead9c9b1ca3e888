//! One try at redeeming a merchant coupon (WeChat Pay v3 `coupons/use`). What each answer
//! means is decided in `coupon_rules`.

use crate::clock::Millis;
use crate::ledger::store::Confirmation;
use crate::ledger::{LedgerError, Row};
use crate::redeem::Ctx;
use crate::redeem::attempt::{Effect, Trail, TryEnd, conclude, finish, logged};
use crate::redeem::coupon_rules::{self as rules, confirmation, record};
use crate::wechat::pay::{PayApi, UseRequest};

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

pub async fn try_coupon(ctx: &Ctx, api: &PayApi, row: Row) -> Result<TryEnd, LedgerError> {
    let trail = &mut Trail::new(ctx, &row);
    let request = row.use_request_no.clone().zip(row.use_time.clone());
    let (use_request_no, use_time) = match rules::before_use(row.state, request) {
        Ok(r) => r,
        Err(settle) => return finish(ctx, trail, settle, Confirmation::default(), None).await,
    };
    let unconfirmed = row.unconfirmed;
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
        Effect::Redeem { unconfirmed },
        record,
        || api.use_coupon(&req),
    )
    .await?
    else {
        return Ok(TryEnd::Dropped);
    };
    let verdict = rules::after_use(unconfirmed, &answer, ctx.clock.now_ms() / 1000);
    conclude(ctx, trail, verdict, confirmation(&answer)).await
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
}
