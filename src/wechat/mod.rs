//! Clients for the WeChat APIs: transport, tokens and the one place errcodes are classified.

pub mod card;
pub mod errors;
pub mod notify;
pub mod pay;
pub mod pay_sign;
pub mod token;

/// The `User-Agent` every WeChat client sends.
pub const USER_AGENT: &str = concat!("redeemd/", env!("CARGO_PKG_VERSION"));
