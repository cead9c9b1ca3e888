//! HQ's registry of product coupons (商品券): the KV bucket `redeemd_product_coupons`, keyed
//! by the chain's claim key of each code, holding what a till needs to hold and use the
//! coupon (`model::product_coupon::Entry`). HQ writes it from WeChat Pay's notifications.

/// The bucket's name.
pub const BUCKET: &str = "redeemd_product_coupons";

/// The stream behind the bucket.
pub fn stream() -> String {
    format!("KV_{BUCKET}")
}

/// A bucket key's subject.
pub fn subject(key: &str) -> String {
    format!("$KV.{BUCKET}.{key}")
}
