//! Holds that end without their sale's order: a held product coupon whose `hold_timeout`
//! passed is cancelled (`hold_expired`), which releases its claim, so the customer can use
//! it at another till, or later.

use crate::clock::SharedClock;
use crate::ledger::{Ledger, holds};
use crate::outcome::{Bus, log_settled};
use crate::redeem::store_guard::StoreGuard;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the ledger is asked for holds that ended: a hold ends at most this much late.
const EVERY: Duration = Duration::from_secs(1);

pub struct HoldExpiry {
    pub ledger: Ledger,
    pub clock: SharedClock,
    pub bus: Bus,
    /// Told when a claim is to be released.
    pub guard: Option<Arc<StoreGuard>>,
}

impl HoldExpiry {
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            let now = self.clock.now_ms();
            match self.ledger.call(move |c| holds::expire_holds(c, now)).await {
                Ok(rows) if !rows.is_empty() => {
                    for row in rows {
                        log_settled(&row);
                        let _ = self.bus.settled.send(row);
                    }
                    if let Some(g) = &self.guard {
                        g.tied();
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(event = "holds_unreadable", error = %e, "cannot end the holds that are over; trying again")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(EVERY) => {}
                _ = stop.changed() => return,
            }
        }
    }
}
