//! Giving voided coupons back (merchant and product coupons): the return worker. A void is recorded first (its
//! `return_request_no` fixed in that commit); each try is recorded as started before it is
//! sent and reuses that number, so through lost answers, 5xx and restarts a coupon is
//! returned at most once (WeChat Pay is idempotent on it).

use crate::ledger::voids;
use crate::model::api::Api;
use crate::model::row::Row;
use crate::model::void::ReturnStep;
use crate::outcome::Bus;
use crate::redeem::Ctx;
use crate::redeem::attempt::timed;
use crate::redeem::coupon_rules::{record, refusal_reason};
use crate::redeem::product_coupon::ProductCouponApi;
use crate::redeem::product_coupon_rules;
use crate::wechatpay::pay::{
    PayAnswer, PayApi, ProductCouponPath, ProductCouponReturnRequest, ReturnRequest,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// How often the worker looks for returns without being woken: a void written by
/// `redeemd void` (another process) is found within this.
const POLL: Duration = Duration::from_secs(1);

/// What a return's answer means. Pure.
pub fn after_return<T>(answer: &PayAnswer<T>) -> ReturnStep {
    match answer {
        PayAnswer::Used { .. } => ReturnStep::Returned,
        PayAnswer::Refused {
            status,
            code,
            message,
            ..
        } => ReturnStep::Refused {
            reason: refusal_reason(*status, code, message),
        },
        PayAnswer::Retry {
            detail, throttled, ..
        } => ReturnStep::Again {
            reason: detail.clone(),
            throttled: *throttled,
        },
        PayAnswer::SignRejected { message, .. } => ReturnStep::Again {
            reason: format!("WeChat Pay rejected the signature: {message}"),
            throttled: false,
        },
        PayAnswer::NotSent { detail } | PayAnswer::Unknown { detail, .. } => ReturnStep::Again {
            reason: detail.clone(),
            throttled: false,
        },
    }
}

pub struct VoidWorker {
    pub ctx: Ctx,
    pub pay: Option<Arc<PayApi>>,
    pub product_coupon: Option<Arc<ProductCouponApi>>,
    pub bus: Bus,
    pub wake: Arc<Notify>,
}

impl VoidWorker {
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            let now = self.ctx.clock.now_ms();
            let due = self
                .ctx
                .ledger
                .call(move |c| voids::due_returns(c, now, 16))
                .await
                .unwrap_or_else(|e| {
                    tracing::error!(event = "returns_unreadable", error = %e, "cannot read the pending coupon returns");
                    Vec::new()
                });
            for row in due {
                self.try_return(row).await;
            }
            let next = self
                .ctx
                .ledger
                .call(|c| voids::next_return_at(c))
                .await
                .ok()
                .flatten();
            let now = self.ctx.clock.now_ms();
            let wait = next.map_or(POLL, |t| {
                Duration::from_millis(u64::try_from(t - now).unwrap_or(0)).min(POLL)
            });
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
        }
    }

    async fn try_return(&self, row: Row) {
        let id = row.id;
        let Some(request) = self.return_request(&row) else {
            tracing::error!(
                event = "return_impossible",
                id,
                "a pending return without its coupon's ids, its return_request_no or its API"
            );
            return;
        };
        let call = match &request {
            Request::Coupon(..) => "coupons/return",
            Request::ProductCoupon(..) => "product-coupon/return",
        };
        let at = self.ctx.clock.now_ms();
        let begun = self
            .ctx
            .ledger
            .call(move |c| voids::begin_return(c, id, call, at))
            .await;
        let Ok(Some(attempt)) = begun else { return };
        let (step, log) = match request {
            Request::Coupon(pay, req) => {
                let (answer, log) = timed(
                    &self.ctx.clock,
                    &self.ctx.metrics,
                    call,
                    Some(attempt),
                    record,
                    pay.return_coupon(&req),
                )
                .await;
                (after_return(&answer), log)
            }
            Request::ProductCoupon(api, path, req) => {
                let (answer, log) = timed(
                    &self.ctx.clock,
                    &self.ctx.metrics,
                    call,
                    Some(attempt),
                    product_coupon_rules::record,
                    api.pay.return_product_coupon(&path, &req),
                )
                .await;
                (after_return(&answer), log)
            }
        };
        let (retry, at) = (self.ctx.retry_draw(), self.ctx.clock.now_ms());
        match self
            .ctx
            .ledger
            .call(move |c| voids::finish_return(c, id, &step, retry, at, &log))
            .await
        {
            Ok(row) => {
                tracing::info!(event = "return", id, code = %row.code, state = %row.state, reason = row.reason.as_deref(), "coupon return tried");
                let _ = self.bus.settled.send(row);
            }
            Err(e) => {
                tracing::error!(event = "return_unrecorded", id, error = %e, "a return's answer could not be recorded; it is asked again with the same return_request_no")
            }
        }
    }

    /// The return a voided row needs, with the API it goes to; `None` when the row lacks
    /// what it needs or the till has no such API.
    fn return_request(&self, row: &Row) -> Option<Request> {
        let rrn = row.void.as_ref()?.return_request_no.clone()?;
        let stock_id = row.stock_id.clone()?;
        if row.api == Some(Api::ProductCoupon.as_str()) {
            let api = self.product_coupon.clone()?;
            let coupon = row.coupon.as_ref()?;
            let path = api.path(row)?;
            let req = ProductCouponReturnRequest {
                brand_id: api.partner_brand.clone(),
                product_coupon_id: coupon.product_coupon_id.clone(),
                stock_id,
                appid: coupon.appid.clone(),
                out_request_no: rrn,
            };
            return Some(Request::ProductCoupon(api, path, req));
        }
        let req = ReturnRequest {
            coupon_code: row.code.clone(),
            stock_id,
            return_request_no: rrn,
        };
        Some(Request::Coupon(self.pay.clone()?, req))
    }
}

/// A return, with the API it goes to.
enum Request {
    Coupon(Arc<PayApi>, ReturnRequest),
    ProductCoupon(
        Arc<ProductCouponApi>,
        ProductCouponPath,
        ProductCouponReturnRequest,
    ),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechatpay::pay::ReturnReply;

    #[test]
    fn the_return_table() {
        let used: PayAnswer<ReturnReply> = PayAnswer::Used {
            status: 200,
            reply: ReturnReply::default(),
            host: "h".into(),
        };
        assert_eq!(after_return(&used), ReturnStep::Returned);
        let refused: PayAnswer<ReturnReply> = PayAnswer::Refused {
            status: 400,
            code: "INVALID_REQUEST".into(),
            message: "券未核销".into(),
            errcode: None,
        };
        assert!(matches!(after_return(&refused), ReturnStep::Refused { .. }));
        for again in [
            PayAnswer::<ReturnReply>::NotSent { detail: "d".into() },
            PayAnswer::Unknown {
                status: None,
                detail: "d".into(),
                timed_out: true,
            },
            PayAnswer::Retry {
                status: 500,
                detail: "d".into(),
                throttled: false,
            },
            PayAnswer::SignRejected {
                message: "m".into(),
                server_date: None,
            },
        ] {
            assert!(matches!(after_return(&again), ReturnStep::Again { .. }));
        }
    }
}
