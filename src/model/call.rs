//! What one call to WeChat came to, as the decision tables hand it to the ledger: the audit
//! trail's record, what WeChat confirmed about a code, and the retry schedule's settings.

use crate::clock::Millis;
use crate::model::catalog::Meta;
use std::time::Duration;

/// What came back from one call, for the audit trail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallRecord {
    pub http_status: Option<u16>,
    pub errcode: Option<i64>,
    /// `ok`, `refused`, `retry`, `unknown`, ...
    pub outcome: String,
    pub detail: Option<String>,
}

/// A finished call whose record is not written yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallLog {
    /// The `attempts` row written when a redeeming call started; `None` for a call recorded
    /// only once it has ended (a `code/get`: it changes nothing at WeChat).
    pub attempt: Option<i64>,
    pub call: &'static str,
    pub started_at: Millis,
    pub ended_at: Millis,
    pub record: CallRecord,
}

/// The retry schedule's settings and the random draw for this change.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub base: Duration,
    pub max: Duration,
    /// In `[0, 1)`.
    pub jitter: f64,
}

/// What WeChat told us about a code: its holder, its use time, its card and what it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confirmation {
    pub openid: Option<String>,
    pub wechatpay_use_time: Option<String>,
    pub card_id: Option<String>,
    pub meta: Option<Meta>,
    /// The stock a used coupon belongs to (a route may name none; a return needs it).
    pub stock_id: Option<String>,
}
