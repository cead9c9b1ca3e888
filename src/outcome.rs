//! What the till is told about each scan, and the internal channels that carry it.

use crate::clock::{self, Millis};
use crate::model::code::Code;
use crate::model::reason::{self, Language};
use crate::model::row::Row;
use crate::model::state::{State, TillOutcome};
use serde::Serialize;
use tokio::sync::broadcast;

/// The answer to one scan.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The ledger row; `None` only when the scan could not be recorded at all.
    pub id: Option<i64>,
    /// The full code for routed codes; masked for local refusals (payment codes, junk).
    pub code: Code,
    pub outcome: TillOutcome,
    pub state: Option<State>,
    pub reason: Option<String>,
    /// `reason`'s stable name (`model::reason`).
    pub reason_code: Option<&'static str>,
    /// The reason as stored (with WeChat's own words), when `reason` is a translation.
    pub detail: Option<String>,
    pub api: Option<&'static str>,
    pub scanner: String,
    pub scanned_at: String,
    /// Milliseconds from the scan to this answer.
    pub latency_ms: i64,
    /// Index of the `[[route]]` that matched, if one did.
    pub route: Option<i64>,
    /// What the code is (the coupon's title, WeChat's type, its face value in fen), when
    /// known.
    pub title: Option<String>,
    pub kind: Option<String>,
    pub value: Option<i64>,
    /// The sale it belongs to, as the POS named it.
    pub order_id: Option<String>,
    pub amount: Option<i64>,
    pub cashier: Option<String>,
    /// How the store guard's claim went (`LogEntry::guard`).
    pub guard: Option<&'static str>,
    /// The full payment code, for the POS to charge (outcome `payment_code` only). Never
    /// serialized with the rest: the API adds it to the scan's own answer and to an
    /// authenticated event stream, and nothing else ever sees it.
    #[serde(skip)]
    pub payment_code: Option<Code>,
    /// A held product coupon: when its hold ends without the sale's WeChat Pay order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold_until: Option<String>,
}

impl Outcome {
    pub fn from_row(
        row: &Row,
        outcome: TillOutcome,
        scanner: &str,
        scanned_at: Millis,
        now: Millis,
    ) -> Self {
        Self {
            id: Some(row.id),
            code: row.code.clone(),
            outcome,
            state: Some(row.state),
            reason: row.reason.clone(),
            reason_code: row.reason.as_deref().map(reason::code_of),
            detail: None,
            api: row.api,
            scanner: scanner.to_string(),
            scanned_at: clock::rfc3339(scanned_at),
            latency_ms: now - scanned_at,
            route: row.route,
            title: row.title.clone(),
            kind: row.kind.clone(),
            value: row.value,
            order_id: row.order_id.clone(),
            amount: row.amount,
            cashier: row.cashier.clone(),
            guard: row.guard.map(|g| g.as_str()),
            payment_code: None,
            hold_until: row.holds_until().map(clock::rfc3339),
        }
    }

    /// The answer to a scan the ledger holds no row for (it could not be recorded).
    pub fn without_row(
        code: Code,
        outcome: TillOutcome,
        state: Option<State>,
        reason: String,
        scanner: &str,
        scanned_at: Millis,
        now: Millis,
    ) -> Self {
        Self {
            id: None,
            code,
            outcome,
            state,
            reason_code: Some(reason::code_of(&reason)),
            reason: Some(reason),
            detail: None,
            api: None,
            scanner: scanner.to_string(),
            scanned_at: clock::rfc3339(scanned_at),
            latency_ms: now - scanned_at,
            route: None,
            title: None,
            kind: None,
            value: None,
            order_id: None,
            amount: None,
            cashier: None,
            guard: None,
            payment_code: None,
            hold_until: None,
        }
    }

    /// The outcome as a reader of `lang` gets it (the log keeps the English).
    pub fn in_language(&self, lang: Language) -> Outcome {
        let mut o = self.clone();
        if let Some(r) = &self.reason {
            (o.reason, o.detail) = {
                let (text, detail) = reason::localized(r, lang);
                (Some(text), detail)
            };
        }
        o
    }

    /// Writes the one log line every outcome gets. Codes are masked here, always.
    pub fn log(&self, till: &str) {
        tracing::info!(
            event = "outcome",
            id = self.id,
            code = %self.code,
            outcome = %self.outcome,
            state = self.state.map(State::as_str),
            reason = self.reason.as_deref(),
            api = self.api,
            route = self.route,
            scanner = %self.scanner,
            till,
            latency_ms = self.latency_ms,
            "scan answered"
        );
    }
}

/// The first change of row `id` on `settled` that `done` accepts, within `within`; `None`
/// when none came in time (or the channel closed). Subscribe before the change is made.
pub async fn settled_within(
    settled: &mut broadcast::Receiver<Row>,
    id: i64,
    within: std::time::Duration,
    done: impl Fn(&Row) -> bool,
) -> Option<Row> {
    let wait = async {
        loop {
            match settled.recv().await {
                Ok(r) if r.id == id && done(&r) => return Some(r),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    };
    tokio::time::timeout(within, wait).await.ok().flatten()
}

/// Logs a row's state change made after the till was answered (a backlog item redeemed,
/// an offline acceptance refused by WeChat, ...).
pub fn log_settled(row: &Row) {
    tracing::info!(
        event = "settled",
        id = row.id,
        code = %row.code,
        state = %row.state,
        reason = row.reason.as_deref(),
        reason_code = row.reason.as_deref().map(reason::code_of),
        api = row.api,
        attempts = row.attempts,
        till = %row.till,
        "redemption settled"
    );
}

/// A scanner's device was opened or lost.
#[derive(Debug, Clone, Serialize)]
pub struct ScannerStatus {
    pub scanner: String,
    pub connected: bool,
    /// The device node when connected; why it went, when not.
    pub detail: String,
}

/// The daemon's internal broadcast channels.
#[derive(Clone)]
pub struct Bus {
    /// Every answer given to a scan.
    pub outcomes: broadcast::Sender<Outcome>,
    /// Every row whose state the dispatcher changed.
    pub settled: broadcast::Sender<Row>,
    /// Scanners connecting and disconnecting.
    pub scanners: broadcast::Sender<ScannerStatus>,
}

impl Bus {
    pub fn new() -> Self {
        Self {
            outcomes: broadcast::channel(1024).0,
            settled: broadcast::channel(1024).0,
            scanners: broadcast::channel(64).0,
        }
    }
}

impl Default for Bus {
    fn default() -> Self {
        Self::new()
    }
}
