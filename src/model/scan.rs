//! One complete read from a scanner, as the intake receives it.

use crate::clock::Millis;
use crate::model::frame::Frame;
use crate::model::text;
use std::sync::Arc;

/// One complete read from a scanner.
#[derive(Debug, Clone)]
pub struct Scan {
    pub scanner: Arc<str>,
    pub frame: Frame,
    /// When the read completed.
    pub at: Millis,
    /// The sale the POS named with the scan (keyed scans through the API).
    pub sale: Sale,
}

/// Which sale a code belongs to: the POS's order, the sale's total before the coupon (fen),
/// and who sold it. All optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sale {
    pub order_id: Option<String>,
    pub amount: Option<i64>,
    pub cashier: Option<String>,
}

/// The longest `order_id` and `cashier` accepted.
pub const MAX_ORDER_ID: usize = 64;
pub const MAX_CASHIER: usize = 32;
/// The largest `amount` accepted, in fen: ¥100,000,000.00, far above any till's sale and
/// well inside what every JSON reader holds exactly (2^53).
pub const MAX_AMOUNT: i64 = 10_000_000_000;

impl Sale {
    pub fn is_empty(&self) -> bool {
        *self == Sale::default()
    }

    /// The sale as given, or what is wrong with it (for a 400).
    pub fn checked(
        order_id: Option<String>,
        amount: Option<i64>,
        cashier: Option<String>,
    ) -> Result<Sale, String> {
        if amount.is_some_and(|a| !(0..=MAX_AMOUNT).contains(&a)) {
            return Err(format!(
                "amount: the sale's total in fen, 0 to {MAX_AMOUNT}"
            ));
        }
        Ok(Sale {
            order_id: text::optional(order_id.as_deref(), "order_id", MAX_ORDER_ID)?,
            amount,
            cashier: text::optional(cashier.as_deref(), "cashier", MAX_CASHIER)?,
        })
    }
}
