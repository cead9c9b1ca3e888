//! WeChat Pay's API v3: its transport with failover (merchant and product coupons), signing
//! as a merchant or a brand and verifying WeChat Pay's answers, and opening its
//! notifications. The till's pipeline uses it, and so does headquarters, which listens to
//! WeChat Pay and confirms product coupons there.

pub mod notify;
pub mod pay;
pub mod pay_sign;

/// The `User-Agent` every WeChat client sends (the card API's too).
pub const USER_AGENT: &str = concat!("redeemd/", env!("CARGO_PKG_VERSION"));
