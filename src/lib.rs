//! redeemd: reads coupon codes from barcode scanners and redeems them with WeChat exactly
//! once, through outages. See README.md for the whole picture.

pub mod api;
pub mod check;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod devices;
pub mod duration;
pub mod fuzzing;
pub mod ledger;
pub mod mask;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod outcome;
pub mod redeem;
pub mod report;
pub mod route;
pub mod scanner;
pub mod sim;
pub mod wechat;
