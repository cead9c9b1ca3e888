//! What every API flow does around a call: for a redeeming call, record it as started and
//! mark the row unconfirmed in one commit before sending; keep every call's record; apply the
//! result through the state machine, with the records, in one commit.

use crate::clock::SharedClock;
use crate::ledger::tries;
use crate::ledger::{Ledger, LedgerError};
use crate::metrics::Metrics;
use crate::model::call::CallLog;
use crate::model::call::CallRecord;
use crate::model::call::Confirmation;
use crate::model::row::Row;
use crate::model::state::Settle;
use crate::redeem::Ctx;
use crate::redeem::verdict::{Health, PauseFor, Step, Verdict};
use std::time::Duration;

/// How a try ended.
#[derive(Debug)]
pub enum TryEnd {
    /// The result was written to the ledger.
    Applied {
        row: Box<Row>,
        /// The row's state changed.
        changed: bool,
        /// How the API behaved on the try's last call; `None` when the try made none.
        health: Option<Health>,
    },
    /// The API cannot be used for a while (credentials misconfigured, clock off, token
    /// fetches throttled locally); the row is left as it was.
    Pause {
        retry_in: Duration,
        reason: String,
        /// A daily quota is used up: the pause lasts until WeChat's reset.
        quota: bool,
    },
    /// The row may no longer be redeemed (the till refused it meanwhile); nothing was sent.
    Dropped,
}

/// The calls of one try whose records are not written yet. A `code/get` changes nothing at
/// WeChat, so it needs no commit of its own: its record goes into the ledger with the try's
/// next write (the consume's intent, or the result). A redeeming call's start is its own
/// commit, before it is sent; its end goes with the result. Whatever a try leaves behind
/// (it paused, or the ledger failed) is written when the trail is dropped.
pub struct Trail {
    ledger: Ledger,
    id: i64,
    calls: Vec<CallLog>,
}

impl Trail {
    pub fn new(ctx: &Ctx, row: &Row) -> Trail {
        Trail {
            ledger: ctx.ledger.clone(),
            id: row.id,
            calls: Vec::new(),
        }
    }

    /// Keeps the record of a call made for this try elsewhere (a check sent ahead).
    pub fn keep(&mut self, log: CallLog) {
        self.calls.push(log);
    }

    fn take(&mut self) -> Vec<CallLog> {
        std::mem::take(&mut self.calls)
    }
}

impl Drop for Trail {
    fn drop(&mut self) {
        let calls = self.take();
        if !calls.is_empty() {
            let id = self.id;
            self.ledger
                .submit("call records", move |c| tries::record_calls(c, id, &calls));
        }
    }
}

/// What a call does at WeChat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Nothing (a query): recorded once it has ended, with the try's next write.
    Query,
    /// Redeems. `unconfirmed` is what the try read in the row; the call is sent only if the
    /// row is still queued and still so, so a try working from an outdated copy of the row
    /// (another try has sent a redeeming call since) sends nothing.
    Redeem { unconfirmed: bool },
}

/// Makes a call and keeps its record in the trail. A redeeming call is first recorded as
/// started, with the row marked unconfirmed, in one commit before anything is sent. `None`:
/// the row may no longer be redeemed, and nothing was sent.
pub async fn logged<A, F, Fut>(
    ctx: &Ctx,
    trail: &mut Trail,
    call: &'static str,
    effect: Effect,
    record: fn(&A) -> CallRecord,
    send: F,
) -> Result<Option<A>, LedgerError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = A>,
{
    let id = trail.id;
    let attempt = if let Effect::Redeem { unconfirmed } = effect {
        let earlier = trail.take();
        let at = ctx.clock.now_ms();
        let begun = ctx
            .ledger
            .call(move |c| tries::begin_call(c, id, unconfirmed, call, at, &earlier))
            .await?;
        let Some(attempt) = begun else {
            return Ok(None);
        };
        Some(attempt)
    } else {
        None
    };
    let (answer, log) = timed(&ctx.clock, &ctx.metrics, call, attempt, record, send()).await;
    trail.calls.push(log);
    Ok(Some(answer))
}

/// Sends one call, times it for the metrics, and returns its answer with its record.
/// `attempt` is the `attempts` row a redeeming call's start was written to (its started_at
/// stays as written there).
pub async fn timed<A, Fut>(
    clock: &SharedClock,
    metrics: &Metrics,
    call: &'static str,
    attempt: Option<i64>,
    record: fn(&A) -> CallRecord,
    send: Fut,
) -> (A, CallLog)
where
    Fut: Future<Output = A>,
{
    let started_at = clock.now_ms();
    let started = std::time::Instant::now();
    let answer = send.await;
    let rec = record(&answer);
    let api = if call.starts_with("code/") || call.starts_with("card/") {
        "card"
    } else if call.starts_with("product-coupon/") {
        "product_coupon"
    } else {
        "coupon"
    };
    metrics.observe_call(api, &rec.outcome, started.elapsed().as_secs_f64());
    let log = CallLog {
        attempt,
        call,
        started_at,
        ended_at: clock.now_ms(),
        record: rec,
    };
    (answer, log)
}

/// Carries out a verdict: applies its settlement, or pauses the API (after restoring the
/// row when the paused call was a redeeming one that never took effect).
pub async fn conclude(
    ctx: &Ctx,
    trail: &mut Trail,
    verdict: Verdict,
    info: Confirmation,
) -> Result<TryEnd, LedgerError> {
    let health = Some(verdict.health);
    match verdict.step {
        Step::Settle(settle) => finish(ctx, trail, settle, info, health).await,
        Step::Pause {
            retry_in,
            reason,
            settle,
        } => {
            if let Some(settle) = settle {
                finish(ctx, trail, settle, info, health).await?;
            }
            Ok(TryEnd::Pause {
                retry_in: retry_in.from(ctx.clock.now_ms()),
                quota: retry_in == PauseFor::DailyReset,
                reason,
            })
        }
    }
}

/// Applies a try's result to the row, with the try's call records, and schedules the next.
pub async fn finish(
    ctx: &Ctx,
    trail: &mut Trail,
    settle: Settle,
    info: Confirmation,
    health: Option<Health>,
) -> Result<TryEnd, LedgerError> {
    let id = trail.id;
    let at = ctx.clock.now_ms();
    let retry = ctx.retry_draw();
    let calls = trail.take();
    // Committed before anybody hears of it, fsynced a moment later: a power cut in between
    // leaves the row as it was before this result (after a consume: sent, answer unknown),
    // which the next try resolves without sending it again (see ledger::sync).
    let (row, changed) = ctx
        .ledger
        .call_sync_later(move |c| tries::apply(c, id, &settle, &info, retry, at, &calls))
        .await?;
    Ok(TryEnd::Applied {
        row: Box::new(row),
        changed,
        health,
    })
}
