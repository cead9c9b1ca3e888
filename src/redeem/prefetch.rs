//! The card flow's check (`code/get`), sent while the scan's commit is being written.
//!
//! A `code/get` changes nothing at WeChat, so it need not wait for the scan's row: sent
//! alongside the commit, its answer is usually back by the time the row is, and the online
//! answer comes that much sooner. The consume still waits for its own intent, written after
//! the row, as always.
//!
//! A code the ledger already holds gets no check: a duplicate never reaches the API. The
//! question goes to a read connection of its own, which never waits for the writer (WAL).
//!
//! Every check sent is recorded. The try that uses it writes it with its next write, as any
//! `code/get`. When no try uses it (the row waits for a free slot, or the code turned out to
//! be recorded a moment ago), it is recorded against the row once answered. A scan whose
//! commit failed has no row; its check is logged instead.

use crate::clock::SharedClock;
use crate::ledger::Ledger;
use crate::ledger::reader::Reader;
use crate::ledger::schema::OpenError;
use crate::ledger::tries;
use crate::mask::mask;
use crate::metrics::Metrics;
use crate::model::call::CallLog;
use crate::redeem::attempt::timed;
use crate::redeem::card_rules::record;
use crate::wechat::card::{Answer, CardApi, GetReply};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::task::JoinHandle;

/// A check's answer and its record for the audit trail.
pub struct Checked {
    pub answer: Answer<GetReply>,
    pub log: CallLog,
}

/// Starts checks. Cheap to clone.
#[derive(Clone)]
pub struct Prefetcher {
    api: Arc<CardApi>,
    ledger: Ledger,
    /// Asks whether a code is recorded already.
    reader: Arc<Reader>,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    /// Whether the card API answered the last try normally and is not paused (the
    /// dispatcher keeps it). While it does not, checks wait for the try as before: each would
    /// only add a call that fails, or one more to a rate limit.
    answering: Arc<AtomicBool>,
}

impl Prefetcher {
    /// `database` is the ledger's file, read through a connection of its own.
    pub fn new(
        api: Arc<CardApi>,
        ledger: Ledger,
        database: &Path,
        clock: SharedClock,
        metrics: Arc<Metrics>,
    ) -> Result<Self, OpenError> {
        Ok(Prefetcher {
            api,
            ledger,
            reader: Arc::new(Reader::open(database)?),
            clock,
            metrics,
            answering: Arc::new(AtomicBool::new(true)),
        })
    }

    pub fn set_answering(&self, yes: bool) {
        self.answering.store(yes, Ordering::Relaxed);
    }

    /// Sends `code/get` (with `check_consume`) for a code about to be recorded, unless the
    /// card API is not answering or the code is recorded already.
    pub fn start(&self, code: &str, card_id: Option<&str>) -> Option<Prefetch> {
        if !self.answering.load(Ordering::Relaxed) || self.reader.maybe_recorded(code) {
            return None;
        }
        let shown = mask(code);
        let (api, clock, metrics) = (self.api.clone(), self.clock.clone(), self.metrics.clone());
        let (code, card_id) = (code.to_string(), card_id.map(str::to_string));
        let handle = tokio::spawn(async move {
            let send = api.get(&code, card_id.as_deref(), true);
            let (answer, log) = timed(&clock, &metrics, "code/get", None, record, send).await;
            Checked { answer, log }
        });
        Some(Prefetch {
            handle: Some(handle),
            row: None,
            shown,
            ledger: self.ledger.clone(),
        })
    }
}

/// A check under way. Whoever holds it either takes its answer ([`Prefetch::answer`]) or
/// lets it go, and then it is recorded when it ends (see `Drop`).
pub struct Prefetch {
    handle: Option<JoinHandle<Checked>>,
    /// The row of the scanned code, once it is recorded.
    row: Option<i64>,
    /// The code, masked, for the log.
    shown: String,
    ledger: Ledger,
}

impl Prefetch {
    /// The row the check belongs to, once the scan is recorded.
    pub fn belongs_to(&mut self, id: i64) {
        self.row = Some(id);
    }

    /// Waits for the answer; the caller records it. `None` if the check's task failed
    /// (then nothing is known of the call, and the caller checks again).
    pub async fn answer(mut self) -> Option<Checked> {
        let handle = self.handle.take()?;
        handle.await.ok()
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        let Some(handle) = self.handle.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (row, shown, ledger) = (
            self.row,
            std::mem::take(&mut self.shown),
            self.ledger.clone(),
        );
        runtime.spawn(async move {
            let Ok(checked) = handle.await else { return };
            match row {
                Some(id) => ledger.submit("call records", move |c| {
                    tries::record_calls(c, id, &[checked.log])
                }),
                None => tracing::warn!(
                    event = "check_unrecorded",
                    code = %shown,
                    outcome = %checked.log.record.outcome,
                    "a code/get was sent for a scan the ledger could not record"
                ),
            }
        });
    }
}
