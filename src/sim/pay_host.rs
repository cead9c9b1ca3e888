//! One host for both WeChat Pay simulators, as `api.mch.weixin.qq.com` serves both APIs:
//! product-coupon paths go to the product-coupon simulator, the rest to the merchant one.
//! They must sign with the same WeChat Pay key (`PaySim::with_wechat_key`).

use crate::sim::http::{Handler, Reply, SimRequest, SimServer};
use crate::sim::pay::PaySim;
use crate::sim::product_coupon::ProductCouponSim;
use std::sync::Arc;

pub struct PayHost {
    pub merchant: Arc<PaySim>,
    pub product_coupons: Arc<ProductCouponSim>,
}

impl PayHost {
    pub async fn start(self) -> std::io::Result<SimServer> {
        SimServer::start(Arc::new(self)).await
    }
}

impl Handler for PayHost {
    fn handle(&self, req: SimRequest) -> Reply {
        if req.path.contains("/product-coupon/") {
            self.product_coupons.handle(req)
        } else {
            self.merchant.handle(req)
        }
    }
}
