//! What every API flow does around a call: record it as started (and, for a redeeming call,
//! mark the row unconfirmed in the same commit) before sending, record its end, and apply
//! the result through the state machine.

use crate::ledger::store::{self, CallRecord, Confirmation};
use crate::ledger::{LedgerError, Row};
use crate::redeem::Ctx;
use crate::redeem::state::Settle;
use std::time::Duration;

/// How a try ended.
#[derive(Debug)]
pub enum TryEnd {
    /// The result was written to the ledger.
    Applied {
        row: Box<Row>,
        /// The row's state changed.
        changed: bool,
        /// WeChat answered normally (not down, not throttling): the API is healthy.
        healthy: bool,
        /// WeChat pushed back (rate limit, busy) or the call timed out: send less at once.
        congested: bool,
    },
    /// The API cannot be used for a while (credentials misconfigured, clock off, token
    /// fetches throttled locally); the row is left as it was.
    Pause { retry_in: Duration, reason: String },
    /// The row may no longer be redeemed (the till refused it meanwhile); nothing was sent.
    Dropped,
}

/// Records the call as started (for a redeeming call: marks the row unconfirmed, in the same
/// commit, before anything is sent), makes it, and records its end. `None`: the row may no
/// longer be redeemed, and nothing was sent.
pub async fn logged<A, F, Fut>(
    ctx: &Ctx,
    row: &Row,
    call: &'static str,
    redeeming: bool,
    record: fn(&A) -> CallRecord,
    send: F,
) -> Result<Option<A>, LedgerError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = A>,
{
    let id = row.id;
    let at = ctx.clock.now_ms();
    let Some(attempt) = ctx
        .ledger
        .call(move |c| store::begin_call(c, id, call, redeeming, at))
        .await?
    else {
        return Ok(None);
    };
    let started = std::time::Instant::now();
    let answer = send().await;
    let rec = record(&answer);
    let api = if call.starts_with("code/") {
        "card"
    } else {
        "coupon"
    };
    ctx.metrics
        .observe_call(api, &rec.outcome, started.elapsed().as_secs_f64());
    let at = ctx.clock.now_ms();
    ctx.ledger
        .call(move |c| store::end_call(c, attempt, &rec, at))
        .await?;
    Ok(Some(answer))
}

/// Applies a try's result to the row and schedules the next try.
pub async fn finish(
    ctx: &Ctx,
    row: &Row,
    settle: Settle,
    info: Confirmation,
    healthy: bool,
) -> Result<TryEnd, LedgerError> {
    let id = row.id;
    let at = ctx.clock.now_ms();
    let retry = ctx.retry_draw();
    let congested = match &settle {
        // describe_transport's words for a call that got no answer in time.
        Settle::Retry { throttled, reason } => *throttled || reason.starts_with("timed out"),
        Settle::Unknown { reason } => reason.starts_with("timed out"),
        _ => false,
    };
    let (row, changed) = ctx
        .ledger
        .call(move |c| store::apply(c, id, &settle, &info, retry, at))
        .await?;
    Ok(TryEnd::Applied {
        row: Box::new(row),
        changed,
        healthy,
        congested,
    })
}
