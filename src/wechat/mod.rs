//! The Official Account's card API: transport, tokens and the one place errcodes are
//! classified. WeChat Pay's API is [`crate::wechatpay`].

pub mod card;
pub mod errors;
pub mod token;
