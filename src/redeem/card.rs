//! One try at redeeming a card code: what to ask WeChat, in which order. The order is the
//! documented one — `code/get` (check), then `code/consume` — plus the resolution step: a
//! row whose last consume went unanswered is *asked about* (`code/get` without
//! `check_consume`) before anything else is sent. Before any consume, the card's type must
//! be known (the catalog, or `card/get`) and allowed by the route: a member card is never
//! consumed. What each answer means is decided in `card_rules` and `model::catalog`.

use crate::ledger::LedgerError;
use crate::model::call::Confirmation;
use crate::model::catalog::{Admit, Meta, admit_card};
use crate::model::row::Row;
use crate::model::state::{Settle, State};
use crate::redeem::Ctx;
use crate::redeem::attempt::{Effect, Trail, TryEnd, conclude, finish, logged};
use crate::redeem::card_rules::{self as rules, Check, confirmation, record};
use crate::redeem::catalog::card_key;
use crate::redeem::prefetch::Prefetch;
use crate::redeem::verdict::{Health, Step, Verdict};
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
        Check::Usable => admit_then_consume(ctx, api, trail, row, confirmation(&answer)).await,
        Check::Done(verdict) => conclude(ctx, trail, verdict, confirmation(&answer)).await,
    }
}

/// The consume, once the card is known to be one this route takes (and the sale meets its
/// minimum). `seen`: what the code/get said (the card's id).
async fn admit_then_consume(
    ctx: &Ctx,
    api: &CardApi,
    trail: &mut Trail,
    row: Row,
    seen: Confirmation,
) -> Result<TryEnd, LedgerError> {
    let types = ctx.card_types(&row);
    let card_id = seen.card_id.clone().or_else(|| row.card_id.clone());
    let described = match (types.checks(), card_id.as_deref()) {
        // No check: what the catalog happens to know, and no card/get.
        (false, id) => Described::Known(
            id.and_then(|id| ctx.catalog.get(&card_key(id), ctx.clock.now_ms()))
                .map(|e| e.meta),
        ),
        (true, None) => Described::Unknown(Verdict::settle(
            Settle::Retry {
                reason: rules::NO_CARD_ID.into(),
                throttled: false,
            },
            Health::Healthy,
        )),
        (true, Some(id)) => describe(ctx, api, trail, id).await?,
    };
    let meta = match described {
        Described::Known(meta) => meta,
        Described::Unknown(verdict) => return conclude(ctx, trail, verdict, seen).await,
    };
    let info = Confirmation {
        meta: meta.clone(),
        ..seen
    };
    match admit_card(meta.as_ref(), &types, row.amount) {
        Admit::Go => consume(ctx, api, trail, row, info).await,
        Admit::Refuse(r) => {
            let settle = Settle::Refused { reason: r.reason };
            finish(ctx, trail, settle, info, Some(Health::Healthy)).await
        }
        Admit::NotKnown => {
            let verdict = Verdict::settle(
                Settle::Retry {
                    reason: rules::TYPE_NOT_KNOWN.into(),
                    throttled: false,
                },
                Health::Healthy,
            );
            conclude(ctx, trail, verdict, info).await
        }
    }
}

enum Described {
    Known(Option<Meta>),
    /// Not known, and the try ends with this verdict (card/get failed).
    Unknown(Verdict),
}

/// What the card is: the catalog's entry while fresh, else `card/get` (a stale entry
/// stands in while card/get fails).
async fn describe(
    ctx: &Ctx,
    api: &CardApi,
    trail: &mut Trail,
    card_id: &str,
) -> Result<Described, LedgerError> {
    let key = card_key(card_id);
    let cached = ctx.catalog.get(&key, ctx.clock.now_ms());
    if let Some(e) = cached.as_ref().filter(|e| e.fresh) {
        return Ok(Described::Known(Some(e.meta.clone())));
    }
    let answer = logged(ctx, trail, "card/get", Effect::Query, record, || {
        api.card_info(card_id)
    })
    .await?;
    // A query is always sent (only a redeeming call can be withheld).
    let Some(answer) = answer else {
        return Ok(Described::Known(cached.map(|e| e.meta)));
    };
    match rules::after_card_info(&answer) {
        Ok(meta) => {
            ctx.catalog.put(key, meta.clone(), ctx.clock.now_ms());
            Ok(Described::Known(Some(meta)))
        }
        Err(_) if cached.is_some() => Ok(Described::Known(cached.map(|e| e.meta))),
        Err(verdict) => Ok(Described::Unknown(verdict)),
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
            admit_then_consume(ctx, api, trail, *row, confirmation(&answer)).await
        }
        other => Ok(other),
    }
}

async fn consume(
    ctx: &Ctx,
    api: &CardApi,
    trail: &mut Trail,
    row: Row,
    info: Confirmation,
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
    let said = confirmation(&answer);
    let info = Confirmation {
        openid: said.openid.or(info.openid),
        card_id: said.card_id.or(info.card_id),
        ..info
    };
    conclude(ctx, trail, verdict, info).await
}
