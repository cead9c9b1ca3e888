//! One try at redeeming a card code: what to ask WeChat, in which order, and what each
//! answer means. The order is the documented one — `code/get` (check), then `code/consume`
//! — plus the resolution step: a row whose last consume went unanswered is *asked about*
//! (`code/get` without `check_consume`) before anything else is sent.

use crate::ledger::store::{CallRecord, Confirmation};
use crate::ledger::{LedgerError, Row};
use crate::redeem::Ctx;
use crate::redeem::attempt::{Effect, Trail, TryEnd, finish, logged};
use crate::redeem::prefetch::Prefetch;
use crate::redeem::state::{Settle, State};
use crate::wechat::card::{Answer, CardApi};
use crate::wechat::errors::{
    ALREADY_REDEEMED_ELSEWHERE, CardClass, card_status_reason, classify_card,
};
use crate::wechat::token::TokenError;
use std::time::Duration;

pub const RESOLVED_BY_GET: &str = "confirmed by code/get after a consume whose answer was lost";

/// What a failed answer means.
enum Failure {
    Settle(Settle),
    Pause(Duration, String),
}

fn failure<T>(answer: Answer<T>, redeeming: bool) -> Failure {
    let retry = |reason: String, throttled| Failure::Settle(Settle::Retry { reason, throttled });
    match answer {
        Answer::Ok { .. } => retry("unexpected success".into(), false),
        Answer::Errcode {
            errcode, errmsg, ..
        } => match classify_card(errcode) {
            CardClass::Ok => retry("unexpected errcode 0".into(), false),
            CardClass::Consumed => Failure::Settle(Settle::Refused {
                reason: ALREADY_REDEEMED_ELSEWHERE.into(),
            }),
            CardClass::Refused(reason) => Failure::Settle(Settle::Refused {
                reason: reason.into(),
            }),
            CardClass::RefreshToken => retry(
                format!("WeChat rejected a freshly refreshed access token ({errcode})"),
                false,
            ),
            CardClass::Throttled => retry(format!("WeChat rate limit ({errcode})"), true),
            CardClass::Busy => retry("WeChat system busy (-1)".into(), true),
            CardClass::Unrecognised => {
                tracing::warn!(event = "unrecognised_errcode", errcode, errmsg = %errmsg, "WeChat answered an errcode this version does not know; will retry");
                retry(
                    format!("unexpected WeChat errcode {errcode}: {errmsg}"),
                    true,
                )
            }
        },
        Answer::NotSent(detail) => retry(detail, false),
        Answer::Lost { detail, .. } if redeeming => {
            Failure::Settle(Settle::Unknown { reason: detail })
        }
        Answer::Lost { detail, .. } => retry(detail, false),
        Answer::NoToken(TokenError::Misconfigured { reason, retry_in }) => {
            Failure::Pause(retry_in, reason)
        }
        Answer::NoToken(e @ TokenError::Throttled { retry_in }) => {
            Failure::Pause(retry_in, e.to_string())
        }
        Answer::NoToken(TokenError::Unavailable(detail)) => retry(detail, false),
    }
}

/// Is this answer WeChat working normally?
fn healthy<T>(answer: &Answer<T>) -> bool {
    match answer {
        Answer::Ok { .. } => true,
        Answer::Errcode { errcode, .. } => !matches!(
            classify_card(*errcode),
            CardClass::Throttled | CardClass::Busy | CardClass::Unrecognised
        ),
        _ => false,
    }
}

pub(crate) fn record<T>(answer: &Answer<T>) -> CallRecord {
    match answer {
        Answer::Ok { status, .. } => CallRecord {
            http_status: Some(*status),
            errcode: Some(0),
            outcome: "ok".into(),
            detail: None,
        },
        Answer::Errcode {
            status,
            errcode,
            errmsg,
        } => CallRecord {
            http_status: Some(*status),
            errcode: Some(*errcode),
            outcome: "errcode".into(),
            detail: Some(errmsg.clone()),
        },
        Answer::NotSent(d) => CallRecord {
            outcome: "not_sent".into(),
            detail: Some(d.clone()),
            ..CallRecord::default()
        },
        Answer::Lost { status, detail } => CallRecord {
            http_status: *status,
            outcome: "unknown".into(),
            detail: Some(detail.clone()),
            ..CallRecord::default()
        },
        Answer::NoToken(e) => CallRecord {
            outcome: "not_sent".into(),
            detail: Some(e.to_string()),
            ..CallRecord::default()
        },
    }
}

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
                api.get(&row.code, row.card_id.as_deref(), true)
            })
            .await?
        }
    };
    let Some(answer) = answer else {
        return Ok(TryEnd::Dropped);
    };
    let is_healthy = healthy(&answer);
    match answer {
        Answer::Ok { reply, .. } => {
            let status = reply.user_card_status.as_deref().unwrap_or("NORMAL");
            if reply.can_consume.unwrap_or(status == "NORMAL") {
                consume(ctx, api, trail, row).await
            } else {
                let settle = Settle::Refused {
                    reason: card_status_reason(status).into(),
                };
                finish(ctx, trail, settle, openid(reply.openid), true).await
            }
        }
        other => match failure(other, false) {
            Failure::Settle(s) => finish(ctx, trail, s, Confirmation::default(), is_healthy).await,
            Failure::Pause(retry_in, reason) => Ok(TryEnd::Pause { retry_in, reason }),
        },
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
        api.get(&row.code, row.card_id.as_deref(), false)
    })
    .await?;
    let Some(answer) = answer else {
        return Ok(TryEnd::Dropped);
    };
    let is_healthy = healthy(&answer);
    let (settle, reply_openid) = match answer {
        Answer::Ok { reply, .. } => {
            let settle = match reply.user_card_status.as_deref() {
                Some("CONSUMED") if row.unconfirmed => Settle::Redeemed {
                    note: Some(RESOLVED_BY_GET.into()),
                },
                Some("NORMAL") | None => Settle::NotRedeemed,
                Some(other) => Settle::Refused {
                    reason: card_status_reason(other).into(),
                },
            };
            (settle, reply.openid)
        }
        // Some deployments answer 40099 even without check_consume.
        Answer::Errcode { errcode: 40099, .. } if row.unconfirmed => (
            Settle::Redeemed {
                note: Some(RESOLVED_BY_GET.into()),
            },
            None,
        ),
        other => match failure(other, false) {
            Failure::Settle(s) => (s, None),
            Failure::Pause(retry_in, reason) => return Ok(TryEnd::Pause { retry_in, reason }),
        },
    };
    let proceed = settle == Settle::NotRedeemed;
    let end = finish(ctx, trail, settle, openid(reply_openid), is_healthy).await?;
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
    let answer = logged(
        ctx,
        trail,
        "code/consume",
        Effect::Redeem {
            unconfirmed: row.unconfirmed,
        },
        record,
        || api.consume(&row.code, row.card_id.as_deref()),
    )
    .await?;
    let Some(answer) = answer else {
        return Ok(TryEnd::Dropped);
    };
    let is_healthy = healthy(&answer);
    match answer {
        Answer::Ok { reply, .. } => {
            finish(
                ctx,
                trail,
                Settle::Redeemed { note: None },
                openid(reply.openid),
                true,
            )
            .await
        }
        other => match failure(other, true) {
            Failure::Settle(s) => finish(ctx, trail, s, Confirmation::default(), is_healthy).await,
            Failure::Pause(retry_in, reason) => Ok(TryEnd::Pause { retry_in, reason }),
        },
    }
}

fn openid(openid: Option<String>) -> Confirmation {
    Confirmation {
        openid,
        wechatpay_use_time: None,
    }
}
