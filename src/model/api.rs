//! Which WeChat API redeems a code.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    Card,
    Coupon,
}

impl Api {
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Card => "card",
            Api::Coupon => "coupon",
        }
    }
    pub fn parse(s: &str) -> Option<Api> {
        match s {
            "card" => Some(Api::Card),
            "coupon" => Some(Api::Coupon),
            _ => None,
        }
    }
}
