//! Holds that end without their sale's order: a held product coupon whose `hold_timeout`
//! passed is cancelled (`hold_expired`), which releases its claim, so the customer can use
//! it at another till, or later.

use crate::clock::SharedClock;
use crate::config::route::MIN_HOLD_TIMEOUT;
use crate::ledger::{Ledger, holds};
use crate::outcome::{Bus, log_settled};
use crate::redeem::store_guard::StoreGuard;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub struct HoldExpiry {
    pub ledger: Ledger,
    pub clock: SharedClock,
    pub bus: Bus,
    /// Told when a claim is to be released.
    pub guard: Option<Arc<StoreGuard>>,
}

impl HoldExpiry {
    /// Wakes when the next hold ends. A hold made meanwhile ends `MIN_HOLD_TIMEOUT` after
    /// it was made at the soonest, so the sleep is never longer than that.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            let now = self.clock.now_ms();
            let next = match self.ledger.call(move |c| holds::expire_due(c, now)).await {
                Ok((cancelled, next)) => {
                    for row in &cancelled {
                        log_settled(row);
                        let _ = self.bus.settled.send(row.clone());
                    }
                    if !cancelled.is_empty()
                        && let Some(g) = &self.guard
                    {
                        g.tied();
                    }
                    next
                }
                Err(e) => {
                    tracing::error!(event = "holds_unreadable", error = %e, "cannot end the holds that are over; trying again");
                    None
                }
            };
            let until_next = next.map_or(MIN_HOLD_TIMEOUT, |end| {
                Duration::from_millis(u64::try_from(end - self.clock.now_ms()).unwrap_or(0))
            });
            tokio::select! {
                _ = tokio::time::sleep(until_next.min(MIN_HOLD_TIMEOUT)) => {}
                _ = stop.changed() => return,
            }
        }
    }
}
