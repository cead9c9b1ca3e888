//! Test doubles and harness: the simulated WeChat (the crate's own `redeemd::sim`, run on a
//! runtime of its own so tests stay plain synchronous code), pseudo-terminal scanners, and
//! the real `redeemd` binary with its JSON log parsed into events.
#![allow(dead_code)]

mod cli;
mod daemon;
mod devices;
mod http;
mod nats;
mod openapi;
mod seed;
mod sims;
mod wechatpay;

#[allow(unused_imports)]
pub use cli::*;
#[allow(unused_imports)]
pub use daemon::*;
#[allow(unused_imports)]
pub use devices::*;
#[allow(unused_imports)]
pub use http::*;
#[allow(unused_imports)]
pub use nats::*;
#[allow(unused_imports)]
pub use openapi::*;
#[allow(unused_imports)]
pub use seed::*;
#[allow(unused_imports)]
pub use sims::*;
use std::time::Duration;
#[allow(unused_imports)]
pub use wechatpay::*;

pub const APPID: &str = "wx_test_appid";
pub const SECRET: &str = "test-app-secret-0123456789";
pub const CARD_ID: &str = "pTESTcardid";
pub const MCHID: &str = "1900000109";
pub const PAY_APPID: &str = "wx_test_pay_appid";
pub const MERCHANT_SERIAL: &str = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1";
pub const PUB_KEY_ID: &str = "PUB_KEY_ID_0114232134912410000000000000";
pub const STOCK_ID: &str = "1212";

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_redeemd")
}

/// The last four characters, as the daemon's logs show a code.
pub fn masked(code: &str) -> String {
    let n = code.chars().count();
    "*".repeat(n - 4) + &code[code.len() - 4..]
}

/// A small deterministic PRNG for the chaos tests (seed printed, so a failure replays).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Distinct 12-digit codes whose last four digits differ across prefixes (< 100) and
/// indexes (< 100): the daemon's logs show only the last four.
pub fn codes(prefix: u32, n: usize) -> Vec<String> {
    assert!(prefix < 100 && n <= 100);
    (0..n)
        .map(|i| format!("{prefix:04}{:04}{:04}", 7000 + i, prefix * 100 + i as u32))
        .collect()
}
