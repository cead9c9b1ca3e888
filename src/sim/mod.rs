//! Simulated WeChat servers over real HTTP on loopback, for `redeemd demo` and the tests,
//! and the real `nats-server`s of a simulated chain (a hub and its stores).
//!
//! They behave like the documented APIs (tokens, errcodes, a ledger of consumed codes) and
//! inject the faults a till meets in the field. Nothing in a normal configuration can reach
//! them: they exist only inside a process that started one.

pub mod card;
pub mod http;
pub mod nats_servers;
pub mod notifier;
pub mod pay;
pub mod pay_host;
pub mod product_coupon;
