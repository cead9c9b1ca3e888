//! One try at redeeming a merchant coupon (WeChat Pay v3 `coupons/use`). What each answer
//! means is decided in `coupon_rules`.

use crate::ledger::LedgerError;
use crate::model::call::Confirmation;
use crate::model::catalog::{Admit, Meta, admit_coupon};
use crate::model::row::Row;
use crate::model::state::Settle;
use crate::redeem::Ctx;
use crate::redeem::attempt::{Effect, Trail, TryEnd, conclude, finish, logged};
use crate::redeem::catalog::stock_key;
use crate::redeem::coupon_rules::{self as rules, confirmation, record};
use crate::redeem::verdict::Health;
use crate::wechatpay::pay::{PayAnswer, PayApi, UseRequest};

pub async fn try_coupon(ctx: &Ctx, api: &PayApi, row: Row) -> Result<TryEnd, LedgerError> {
    let trail = &mut Trail::new(ctx, &row);
    let request = row.use_request_no.clone().zip(row.use_time.clone());
    let (use_request_no, use_time) = match rules::before_use(row.state, request) {
        Ok(r) => r,
        Err(settle) => return finish(ctx, trail, settle, Confirmation::default(), None).await,
    };
    let meta = match row.stock_id.clone() {
        // An unconfirmed row passed the rule before its first use.
        Some(stock) if !row.unconfirmed => describe(ctx, api, trail, &stock).await?,
        _ => None,
    };
    if let Admit::Refuse(r) = admit_coupon(meta.as_ref(), row.amount) {
        let info = Confirmation {
            meta,
            ..Confirmation::default()
        };
        let settle = Settle::Refused { reason: r.reason };
        return finish(ctx, trail, settle, info, Some(Health::Healthy)).await;
    }
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
    let info = Confirmation {
        meta,
        ..confirmation(&answer)
    };
    conclude(ctx, trail, verdict, info).await
}

/// What the stock is: the catalog's entry while fresh, else the stock query. A coupon
/// does not wait for it: if the query fails, the use goes ahead without (and the stock is
/// not asked about again for a while).
async fn describe(
    ctx: &Ctx,
    api: &PayApi,
    trail: &mut Trail,
    stock_id: &str,
) -> Result<Option<Meta>, LedgerError> {
    let key = stock_key(stock_id);
    let now = ctx.clock.now_ms();
    let cached = ctx.catalog.get(&key, now);
    if cached.as_ref().is_some_and(|e| e.fresh) || ctx.catalog.missed_recently(&key, now) {
        return Ok(cached.map(|e| e.meta));
    }
    let answer = logged(ctx, trail, "stocks/get", Effect::Query, record, || {
        api.stock(stock_id)
    })
    .await?;
    match answer {
        Some(PayAnswer::Used { reply, .. }) => {
            let meta = reply.meta();
            ctx.catalog.put(key, meta.clone(), ctx.clock.now_ms());
            Ok(Some(meta))
        }
        _ => {
            ctx.catalog.note_miss(&key, ctx.clock.now_ms());
            Ok(cached.map(|e| e.meta))
        }
    }
}
