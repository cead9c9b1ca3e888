//! One try at redeeming a card code: what to ask WeChat, in which order. The order is the
//! documented one — `code/get` (check), then `code/consume` — plus the resolution step: a
//! row whose last consume went unanswered is *asked about* (`code/get` without
//! `check_consume`) before anything else is sent. What each answer means is decided in
//! `card_rules`.

use crate::ledger::{LedgerError, Row};
use crate::model::state::{Settle, State};
use crate::redeem::Ctx;
use crate::redeem::attempt::{Effect, Trail, TryEnd, conclude, logged};
use crate::redeem::card_rules::{self as rules, Check, confirmation, record};
use crate::redeem::prefetch::Prefetch;
use crate::redeem::verdict::Step;
use crate::wechat::card::CardApi;

/// One try. `check` is the `code/get` the intake sent while it recorded the scan, if any.
pub async fn try_card(
    ctx: &Ctx,
    api: &CardApi,
    row: Row,
    check: Option<Prefetch>,
) -> Result<TryEnd, LedgerError> {
    let trail = &mut Trail::new(ctx, &row);
    if row.unconfirmed || row.state == State::Cancelled {
        // A fresh row's check is no use here; dropped, it is recorded all the same.
        return resolve(ctx, api, trail, row).await;
    }
    let checked = match check {
        Some(c) => c.answer().await,
        None => None,
    };
    let answer = match checked {
        Some(c) => {
            trail.keep(c.log);
            Some(c.answer)
        }
        None => {
            logged(ctx, trail, "code/get", Effect::Query, record, || {
                api.get(row.code.expose(), row.card_id.as_deref(), true)
            })
            .await?
        }
    };
    let Some(answer) = answer else {
        return Ok(TryEnd::Dropped);
    };
    match rules::after_check(&answer) {
        Check::Usable => consume(ctx, api, trail, row).await,
        Check::Done(verdict) => conclude(ctx, trail, verdict, confirmation(&answer)).await,
    }
}

/// The last consume's answer was lost (or the till refused the row while one was in flight):
/// ask WeChat what became of the code. Never consumes a cancelled row.
async fn resolve(
    ctx: &Ctx,
    api: &CardApi,
    trail: &mut Trail,
    row: Row,
) -> Result<TryEnd, LedgerError> {
    let answer = logged(ctx, trail, "code/get", Effect::Query, record, || {
        api.get(row.code.expose(), row.card_id.as_deref(), false)
    })
    .await?;
    let Some(answer) = answer else {
        return Ok(TryEnd::Dropped);
    };
    let verdict = rules::after_query(row.unconfirmed, &answer);
    let proceed = verdict.step == Step::Settle(Settle::NotRedeemed);
    let end = conclude(ctx, trail, verdict, confirmation(&answer)).await?;
    match end {
        TryEnd::Applied { row, .. } if proceed && row.state == State::Queued => {
            consume(ctx, api, trail, *row).await
        }
        other => Ok(other),
    }
}

async fn consume(
    ctx: &Ctx,
    api: &CardApi,
    trail: &mut Trail,
    row: Row,
) -> Result<TryEnd, LedgerError> {
    let unconfirmed = row.unconfirmed;
    let answer = logged(
        ctx,
        trail,
        "code/consume",
        Effect::Redeem { unconfirmed },
        record,
        || api.consume(row.code.expose(), row.card_id.as_deref()),
    )
    .await?;
    let Some(answer) = answer else {
        return Ok(TryEnd::Dropped);
    };
    let verdict = rules::after_consume(unconfirmed, &answer);
    conclude(ctx, trail, verdict, confirmation(&answer)).await
}
