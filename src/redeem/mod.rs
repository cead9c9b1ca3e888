//! Turning recorded scans into redemptions: the pure state machine and backoff, the
//! per-API flows, the scan intake and the dispatcher that drives them.

pub mod aimd;
pub mod attempt;
pub mod backoff;
pub mod card;
pub mod coupon;
pub mod dispatcher;
pub mod intake;
pub mod state;

use crate::clock::SharedClock;
use crate::config::RetryConfig;
use crate::ledger::Ledger;
use crate::ledger::store::Retry;

/// What every try needs.
#[derive(Clone)]
pub struct Ctx {
    pub ledger: Ledger,
    pub clock: SharedClock,
    pub retry: RetryConfig,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
}

impl Ctx {
    /// The retry settings with a fresh random draw for the jitter.
    pub fn retry_draw(&self) -> Retry {
        Retry {
            base: self.retry.base_delay,
            max: self.retry.max_delay,
            jitter: fastrand::f64(),
        }
    }
}
