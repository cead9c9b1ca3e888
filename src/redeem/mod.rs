//! Turning recorded scans into redemptions: the pure state machine and backoff, the
//! per-API flows, the scan intake and the dispatcher that drives them.

pub(crate) mod aimd;
pub(crate) mod attempt;
pub(crate) mod card;
pub(crate) mod card_rules;
pub mod catalog;
pub(crate) mod coupon;
pub(crate) mod coupon_rules;
pub mod dispatcher;
pub mod hold_expiry;
pub mod intake;
pub mod orders;
pub mod prefetch;
pub mod product_coupon;
pub(crate) mod product_coupon_rules;
pub mod store_guard;
pub(crate) mod verdict;
pub mod voids;

use crate::clock::SharedClock;
use crate::config::offline::RetryConfig;
use crate::config::route::RouteConfig;
use crate::ledger::Ledger;
use crate::model::call::Retry;
use crate::model::catalog::CardTypes;
use crate::model::row::Row;
use std::sync::Arc;
use tokio::sync::mpsc;

/// A row the intake has just committed for a new code, on its way to the dispatcher: it
/// wakes it, and lets it start a try without asking the ledger first.
pub struct NewRow {
    pub row: Row,
    /// The card check sent while the row was being committed, if any.
    pub check: Option<prefetch::Prefetch>,
    /// An older row due again (a held product coupon given its order), not a new code's.
    pub again: bool,
}

pub type NewRows = mpsc::UnboundedSender<NewRow>;
pub type NewRowsRx = mpsc::UnboundedReceiver<NewRow>;

pub fn new_rows() -> (NewRows, NewRowsRx) {
    mpsc::unbounded_channel()
}

/// What every try needs.
#[derive(Clone)]
pub struct Ctx {
    pub ledger: Ledger,
    pub clock: SharedClock,
    pub retry: RetryConfig,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// What each card and stock is.
    pub catalog: Arc<catalog::Catalog>,
    /// The `[[route]]`s, by index (`Row::route`): a card route's accepted card types.
    pub routes: Arc<Vec<RouteConfig>>,
}

impl Ctx {
    /// The card types the row's route accepts (every coupon type for an unknown route).
    pub fn card_types(&self, row: &Row) -> CardTypes {
        row.route
            .and_then(|r| usize::try_from(r).ok())
            .and_then(|r| self.routes.get(r))
            .map_or(CardTypes::Coupons, |r| r.card_types.clone())
    }

    /// The retry settings with a fresh random draw for the jitter.
    pub fn retry_draw(&self) -> Retry {
        Retry {
            base: self.retry.base_delay,
            max: self.retry.max_delay,
            jitter: fastrand::f64(),
        }
    }
}

#[cfg(test)]
mod reasons_tests;
