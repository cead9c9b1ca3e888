//! A held product coupon meets its sale's WeChat Pay order: attached in one commit that
//! fixes the use's request number and time, then the use is sent by the dispatcher and
//! waited for up to `online_wait` (the POS is told how it ended, or that it goes out when
//! WeChat Pay answers).

use crate::clock::SharedClock;
use crate::ledger::holds::{self, OrderRefused};
use crate::ledger::{Ledger, LedgerError};
use crate::model::request_no::new_use_request_no;
use crate::model::row::{PayOrder, Row};
use crate::model::state::{State, TillOutcome};
use crate::outcome::{Bus, Outcome, settled_within};
use crate::redeem::{NewRow, NewRows};
use std::time::Duration;

#[derive(Clone)]
pub struct Orders {
    pub ledger: Ledger,
    pub clock: SharedClock,
    pub bus: Bus,
    /// The dispatcher's inbox: the use is due once the order is attached.
    pub new_rows: NewRows,
    /// This till's name (in the use's request number).
    pub till: String,
    pub online_wait: Duration,
}

impl Orders {
    /// Attaches `order` to held row `id` and waits up to `online_wait` for its use: the row
    /// then, and what the POS is told (`redeemed`; `accepted_offline` while the use waits
    /// for WeChat Pay; `rejected` when WeChat Pay refused it, the row then in review, or
    /// the row is no longer held). A row used with this order already is answered as it is.
    pub async fn attach_and_use(
        &self,
        id: i64,
        order: PayOrder,
    ) -> Result<Result<(Row, TillOutcome), OrderRefused>, LedgerError> {
        let at = self.clock.now_ms();
        let request_no = new_use_request_no(&self.till, at);
        let use_time = crate::clock::rfc3339_seconds(at);
        // Subscribed before the order is written, so the use's end cannot slip past.
        let mut settled = self.bus.settled.subscribe();
        // Its fsync is the use's intent's, written next by the try: the two share one. The
        // POS hears nothing before it (see ledger::sync).
        let (attached, durable) = self
            .ledger
            .call_sync_with_next(move |c| {
                holds::attach_order(c, id, &order, &request_no, &use_time, at)
            })
            .await?;
        let row = match attached {
            Ok(row) => row,
            Err(refused) => return Ok(Err(refused)),
        };
        if row.state != State::Queued {
            // Used with this order already (a POS asking again): answered as it is.
            let outcome = told(&row);
            return Ok(Ok((row, outcome)));
        }
        let _ = self.bus.settled.send(row.clone());
        let _ = self.new_rows.send(NewRow {
            row: row.clone(),
            check: None,
            again: true,
        });
        let ended = settled_within(&mut settled, id, self.online_wait, |r| {
            r.state != State::Queued
        });
        let row = ended.await.unwrap_or(row);
        durable.wait().await?;
        let outcome = told(&row);
        // The till's screens (the kiosk, the POS's event stream) hear how the sale's coupon
        // ended, as for a scan.
        let now = self.clock.now_ms();
        let o = Outcome::from_row(&row, outcome, &row.scanner, row.scanned_at, now);
        o.log(&self.till);
        let _ = self.bus.outcomes.send(o);
        Ok(Ok((row, outcome)))
    }
}

/// What the POS is told of a held coupon's row after its order.
fn told(row: &Row) -> TillOutcome {
    match row.state {
        State::Redeemed => TillOutcome::Redeemed,
        State::Queued => TillOutcome::AcceptedOffline,
        _ => TillOutcome::Rejected,
    }
}
