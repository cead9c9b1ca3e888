//! One try at using a product coupon (商品券) with its sale's WeChat Pay order. The row
//! reached the dispatcher only once its order was attached, which fixed `out_request_no`
//! and `use_time`; every try sends that same request. What each answer means is decided in
//! `product_coupon_rules`.

use crate::ledger::LedgerError;
use crate::model::product_coupon::INCOMPLETE_ROW;
use crate::model::row::Row;
use crate::model::state::Settle;
use crate::redeem::Ctx;
use crate::redeem::attempt::{Effect, Trail, TryEnd, conclude, finish, logged};
use crate::redeem::coupon_rules::before_use;
use crate::redeem::product_coupon_rules::{self as rules, confirmation, record};
use crate::wechatpay::pay::{AssociatedOrder, PayApi, ProductCouponPath, ProductCouponUseRequest};

/// WeChat Pay as the till uses product coupons: signed as the brand, or as the service
/// provider naming the brand in each body.
pub struct ProductCouponApi {
    pub pay: PayApi,
    /// Partner mode (服务商): the brand's id, sent in each body.
    pub partner_brand: Option<String>,
    /// The store's id at WeChat Pay, sent with each use.
    pub store_id: Option<String>,
}

impl ProductCouponApi {
    /// Where row's coupon lives at WeChat Pay: its holder's and its code's path, on the
    /// brand's or the service provider's side. `None` without its holder.
    pub fn path(&self, row: &Row) -> Option<ProductCouponPath> {
        Some(ProductCouponPath {
            partner: self.partner_brand.is_some(),
            openid: row.openid.clone()?,
            coupon_code: row.code.expose().to_string(),
        })
    }
}

pub async fn try_product_coupon(
    ctx: &Ctx,
    api: &ProductCouponApi,
    row: Row,
) -> Result<TryEnd, LedgerError> {
    let trail = &mut Trail::new(ctx, &row);
    let request = row.use_request_no.clone().zip(row.use_time.clone());
    let (out_request_no, use_time) = match before_use(row.state, request) {
        Ok(r) => r,
        Err(settle) => return finish(ctx, trail, settle, Default::default(), None).await,
    };
    let Some((path, req)) = use_request(&row, api, out_request_no, use_time) else {
        let settle = Settle::NeedsReview {
            reason: INCOMPLETE_ROW.into(),
        };
        return finish(ctx, trail, settle, Default::default(), None).await;
    };
    let unconfirmed = row.unconfirmed;
    let Some(answer) = logged(
        ctx,
        trail,
        "product-coupon/use",
        Effect::Redeem { unconfirmed },
        record,
        || api.pay.use_product_coupon(&path, &req),
    )
    .await?
    else {
        return Ok(TryEnd::Dropped);
    };
    let verdict = rules::after_use(
        unconfirmed,
        &req.out_request_no,
        &answer,
        ctx.clock.now_ms() / 1000,
    );
    conclude(ctx, trail, verdict, confirmation(&answer)).await
}

/// The use's path and body from the row: the coupon's holder and ids (from the registry,
/// kept when it was held) and the sale's order.
pub fn use_request(
    row: &Row,
    api: &ProductCouponApi,
    out_request_no: String,
    use_time: String,
) -> Option<(ProductCouponPath, ProductCouponUseRequest)> {
    let coupon = row.coupon.as_ref()?;
    let order = row.pay_order.as_ref().filter(|o| o.is_complete())?;
    let path = api.path(row)?;
    let req = ProductCouponUseRequest {
        brand_id: api.partner_brand.clone(),
        product_coupon_id: coupon.product_coupon_id.clone(),
        stock_id: row.stock_id.clone()?,
        appid: coupon.appid.clone(),
        use_time,
        out_request_no,
        store_id: api.store_id.clone(),
        associated_order_info: Some(AssociatedOrder {
            transaction_id: order.transaction_id.clone(),
            out_trade_no: order.out_trade_no.clone(),
            mchid: order.mchid.clone(),
            sub_mchid: order.sub_mchid.clone(),
        }),
    };
    Some((path, req))
}
