//! Which WeChat API redeems a code.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    Card,
    /// A WeChat Pay merchant coupon (商家券).
    Coupon,
    /// A WeChat Pay product coupon (商品券): held for its sale, used with its order.
    ProductCoupon,
}

impl Api {
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Card => "card",
            Api::Coupon => "coupon",
            Api::ProductCoupon => "product_coupon",
        }
    }
    pub fn parse(s: &str) -> Option<Api> {
        match s {
            "card" => Some(Api::Card),
            "coupon" => Some(Api::Coupon),
            "product_coupon" => Some(Api::ProductCoupon),
            _ => None,
        }
    }
}
