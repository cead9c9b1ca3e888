//! The card flow's decision table: what each answer of `code/get` and `code/consume` means
//! for the row and for the API. Pure; `redeem::card` only carries the verdicts out.

use crate::model::call::CallRecord;

use crate::model::call::Confirmation;
use crate::model::catalog::Meta;
use crate::model::state::Settle;
use crate::redeem::verdict::{Health, PauseFor, Step, Verdict};
use crate::wechat::card::{Answer, CardInfoReply, ConsumeReply, GetReply};
use crate::wechat::errors::{
    ALREADY_REDEEMED_ELSEWHERE, CardClass, card_status_reason, classify_card,
};
use crate::wechat::token::TokenError;

pub const RESOLVED_BY_GET: &str = "confirmed by code/get after a consume whose answer was lost";
pub const QUOTA_EXHAUSTED: &str = "WeChat daily API quota exhausted (45009): card calls resume after WeChat's daily reset (00:00 Asia/Shanghai)";

pub const TYPE_NOT_KNOWN: &str =
    "card type not yet known: nothing is consumed before card/get says what the card is";
pub const NO_CARD_ID: &str = "card type not yet known: code/get named no card_id (set card_id on the route, or card_types = [\"any\"])";

/// What `card/get` said the card is, or the verdict for a try that cannot go on without it.
/// However card/get failed, the row only waits (a card whose type is not known is neither
/// consumed nor refused), except that a used-up quota or a token that cannot be had pauses
/// the card API as for any call.
pub fn after_card_info(answer: &Answer<CardInfoReply>) -> Result<Meta, Verdict> {
    let wait = |detail: String, health| {
        Verdict::settle(
            Settle::Retry {
                reason: format!("{TYPE_NOT_KNOWN} ({detail})"),
                throttled: false,
            },
            health,
        )
    };
    match answer {
        Answer::Ok { reply, .. } => reply.meta().ok_or_else(|| {
            wait(
                "card/get: no card_type or title in the reply".into(),
                Health::Healthy,
            )
        }),
        other => {
            let verdict = failure(other, None);
            match verdict.step {
                Step::Pause { .. } => Err(verdict),
                Step::Settle(
                    Settle::Retry { reason, .. }
                    | Settle::Refused { reason }
                    | Settle::NotSent { reason, .. },
                ) => Err(wait(format!("card/get: {reason}"), verdict.health)),
                Step::Settle(_) => Err(wait("card/get failed".into(), verdict.health)),
            }
        }
    }
}

/// What the check (`code/get` with `check_consume`) of a row with nothing unanswered found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The code can be consumed: send the consume.
    Usable,
    /// Nothing to send: settle or pause.
    Done(Verdict),
}

pub fn after_check(answer: &Answer<GetReply>) -> Check {
    match answer {
        Answer::Ok { reply, .. } => {
            let status = reply.user_card_status.as_deref().unwrap_or("NORMAL");
            if reply.can_consume.unwrap_or(status == "NORMAL") {
                Check::Usable
            } else {
                Check::Done(Verdict::settle(
                    Settle::Refused {
                        reason: card_status_reason(status).into(),
                    },
                    Health::Healthy,
                ))
            }
        }
        other => Check::Done(failure(other, None)),
    }
}

/// What the query (`code/get` without `check_consume`) of a row whose consume went
/// unanswered (`unconfirmed`), or that the till refused meanwhile, found.
pub fn after_query(unconfirmed: bool, answer: &Answer<GetReply>) -> Verdict {
    let ours = || Settle::Redeemed {
        note: Some(RESOLVED_BY_GET.into()),
    };
    let settle = match answer {
        Answer::Ok { reply, .. } => match reply.user_card_status.as_deref() {
            Some("CONSUMED") if unconfirmed => ours(),
            Some("NORMAL") | None => Settle::NotRedeemed,
            Some(other) => Settle::Refused {
                reason: card_status_reason(other).into(),
            },
        },
        // Some deployments answer 40099 even without check_consume.
        Answer::Errcode { errcode: 40099, .. } if unconfirmed => ours(),
        other => return failure(other, None),
    };
    Verdict::settle(settle, Health::Healthy)
}

/// What a consume's answer means. `unconfirmed_before`: the row's flag as the try read it,
/// before the consume's intent marked it.
pub fn after_consume(unconfirmed_before: bool, answer: &Answer<ConsumeReply>) -> Verdict {
    match answer {
        Answer::Ok { .. } => Verdict::settle(Settle::Redeemed { note: None }, Health::Healthy),
        other => failure(other, Some(unconfirmed_before)),
    }
}

/// A failed answer. `redeeming`: the call was a consume, with the row's flag before it.
fn failure<T>(answer: &Answer<T>, redeeming: Option<bool>) -> Verdict {
    let health = health(answer);
    let retry =
        |reason: String, throttled| Verdict::settle(Settle::Retry { reason, throttled }, health);
    // A call that never left: for a consume, the row's flag goes back.
    let not_sent = |reason: String| match redeeming {
        Some(unconfirmed_before) => Settle::NotSent {
            reason,
            unconfirmed_before,
        },
        None => Settle::Retry {
            reason,
            throttled: false,
        },
    };
    let pause = |retry_in, reason: String| Verdict {
        step: Step::Pause {
            retry_in: PauseFor::This(retry_in),
            settle: redeeming.map(|_| not_sent(reason.clone())),
            reason,
        },
        health,
    };
    match answer {
        Answer::Ok { .. } => retry("unexpected success".into(), false),
        Answer::Errcode {
            errcode, errmsg, ..
        } => match classify_card(*errcode) {
            CardClass::Ok => retry("unexpected errcode 0".into(), false),
            CardClass::Consumed => Verdict::settle(
                Settle::Refused {
                    reason: ALREADY_REDEEMED_ELSEWHERE.into(),
                },
                health,
            ),
            CardClass::Refused(reason) => Verdict::settle(
                Settle::Refused {
                    reason: reason.into(),
                },
                health,
            ),
            CardClass::RefreshToken => retry(
                format!("WeChat rejected a freshly refreshed access token ({errcode})"),
                false,
            ),
            CardClass::Throttled => retry(format!("WeChat rate limit ({errcode})"), true),
            // Nothing gets through before the reset: pause the card API; rows stay queued
            // (a consume refused for the quota did nothing, but its flag is kept all the
            // same: the next try asks first).
            CardClass::QuotaExhausted => Verdict {
                step: Step::Pause {
                    retry_in: PauseFor::DailyReset,
                    settle: redeeming.map(|_| Settle::Retry {
                        reason: QUOTA_EXHAUSTED.into(),
                        throttled: true,
                    }),
                    reason: QUOTA_EXHAUSTED.into(),
                },
                health,
            },
            CardClass::Busy => retry("WeChat system busy (-1)".into(), true),
            CardClass::Unrecognised => {
                tracing::warn!(event = "unrecognised_errcode", errcode, errmsg = %errmsg, "WeChat answered an errcode this version does not know; will retry");
                retry(
                    format!("unexpected WeChat errcode {errcode}: {errmsg}"),
                    true,
                )
            }
        },
        Answer::NotSent(detail) => Verdict::settle(not_sent(detail.clone()), health),
        Answer::Lost { detail, .. } if redeeming.is_some() => Verdict::settle(
            Settle::Unknown {
                reason: detail.clone(),
            },
            health,
        ),
        Answer::Lost { detail, .. } => retry(detail.clone(), false),
        Answer::NoToken(TokenError::Misconfigured { reason, retry_in }) => {
            pause(*retry_in, reason.clone())
        }
        Answer::NoToken(e @ TokenError::Throttled { retry_in }) => pause(*retry_in, e.to_string()),
        Answer::NoToken(TokenError::Unavailable(detail)) => {
            Verdict::settle(not_sent(detail.clone()), health)
        }
    }
}

/// How the card API behaved on this call.
pub fn health<T>(answer: &Answer<T>) -> Health {
    match answer {
        Answer::Ok { .. } => Health::Healthy,
        Answer::Errcode { errcode, .. } => match classify_card(*errcode) {
            CardClass::Throttled | CardClass::Busy | CardClass::Unrecognised => Health::Congested,
            // A used-up quota is not congestion: sending less would not help.
            CardClass::QuotaExhausted => Health::Down,
            _ => Health::Healthy,
        },
        Answer::Lost {
            timed_out: true, ..
        } => Health::Congested,
        Answer::Lost { .. } | Answer::NotSent(_) | Answer::NoToken(_) => Health::Down,
    }
}

/// A reply that may name the user whose card it is, and the card.
pub trait Openid {
    fn openid(&self) -> Option<&str>;
    fn card_id(&self) -> Option<&str>;
}

impl Openid for GetReply {
    fn openid(&self) -> Option<&str> {
        self.openid.as_deref()
    }
    fn card_id(&self) -> Option<&str> {
        self.card.as_ref().map(|c| c.card_id.as_str())
    }
}

impl Openid for ConsumeReply {
    fn openid(&self) -> Option<&str> {
        self.openid.as_deref()
    }
    fn card_id(&self) -> Option<&str> {
        self.card.as_ref().map(|c| c.card_id.as_str())
    }
}

/// What an answer tells about the card's holder and the card, for the row.
pub fn confirmation<T: Openid>(answer: &Answer<T>) -> Confirmation {
    match answer {
        Answer::Ok { reply, .. } => Confirmation {
            openid: reply.openid().map(str::to_string),
            card_id: reply.card_id().map(str::to_string),
            ..Confirmation::default()
        },
        _ => Confirmation::default(),
    }
}

/// A call's record for the audit trail.
pub fn record<T>(answer: &Answer<T>) -> CallRecord {
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
        Answer::Lost { status, detail, .. } => CallRecord {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::state::{Schedule, State};
    use crate::redeem::verdict::table::{Outcome, out, run, snap};
    use std::time::Duration;

    use Health::{Congested, Down, Healthy};
    use Schedule::{Backoff, Never, Now, Throttled};
    use State::{Cancelled, Queued, Redeemed, Rejected, Review};

    fn errcode<T>(errcode: i64) -> Answer<T> {
        Answer::Errcode {
            status: 200,
            errcode,
            errmsg: format!("errmsg {errcode} hint: [x]"),
        }
    }

    fn lost<T>(timed_out: bool) -> Answer<T> {
        Answer::Lost {
            status: None,
            detail: "no answer".into(),
            timed_out,
        }
    }

    fn misconfigured<T>() -> Answer<T> {
        Answer::NoToken(TokenError::Misconfigured {
            reason: "wrong secret".into(),
            retry_in: Duration::from_secs(60),
        })
    }

    fn token_throttled<T>() -> Answer<T> {
        Answer::NoToken(TokenError::Throttled {
            retry_in: Duration::from_secs(10),
        })
    }

    fn token_unavailable<T>() -> Answer<T> {
        Answer::NoToken(TokenError::Unavailable("cannot connect".into()))
    }

    fn get(status: Option<&str>, can_consume: Option<bool>) -> Answer<GetReply> {
        Answer::Ok {
            status: 200,
            reply: GetReply {
                openid: Some("o1".into()),
                can_consume,
                user_card_status: status.map(str::to_string),
                card: None,
            },
        }
    }

    /// The consume's answer, applied to the row as the ledger has it then: its intent has
    /// marked it unconfirmed, and the till may have refused it (cancelled) or accepted it
    /// offline meanwhile. The try read it with nothing unanswered (`unconfirmed_before`).
    #[test]
    fn consume_table() {
        let queued = snap(Queued, true, false);
        let offline = snap(Queued, true, true);
        let cancelled = snap(Cancelled, true, false);
        let ok = || -> Answer<ConsumeReply> {
            Answer::Ok {
                status: 200,
                reply: ConsumeReply {
                    openid: Some("o1".into()),
                    card: None,
                },
            }
        };
        let not_sent = || -> Answer<ConsumeReply> { Answer::NotSent("cannot connect".into()) };
        #[rustfmt::skip]
        let table: Vec<(&str, Answer<ConsumeReply>, [Outcome; 3])> = vec![
            ("ok", ok(), [
                out(Redeemed, false, Never, Healthy, false),
                out(Redeemed, false, Never, Healthy, false),
                out(Review, false, Never, Healthy, false)]),
            ("40099", errcode(40099), [
                out(Rejected, false, Never, Healthy, false),
                out(Review, false, Never, Healthy, false),
                out(Cancelled, false, Never, Healthy, false)]),
            ("40056", errcode(40056), [
                out(Rejected, false, Never, Healthy, false),
                out(Review, false, Never, Healthy, false),
                out(Cancelled, false, Never, Healthy, false)]),
            ("40127", errcode(40127), [
                out(Rejected, false, Never, Healthy, false),
                out(Review, false, Never, Healthy, false),
                out(Cancelled, false, Never, Healthy, false)]),
            ("40078", errcode(40078), [
                out(Rejected, false, Never, Healthy, false),
                out(Review, false, Never, Healthy, false),
                out(Cancelled, false, Never, Healthy, false)]),
            ("40079", errcode(40079), [
                out(Rejected, false, Never, Healthy, false),
                out(Review, false, Never, Healthy, false),
                out(Cancelled, false, Never, Healthy, false)]),
            // A token refused again after its refresh: the consume may not be taken as
            // not sent (it reached WeChat), so the flag stays and the next try asks first.
            ("40001", errcode(40001), [
                out(Queued, true, Backoff, Healthy, false),
                out(Queued, true, Backoff, Healthy, false),
                out(Cancelled, true, Backoff, Healthy, false)]),
            // The daily quota: the card API pauses until WeChat's reset; the row stays.
            ("45009", errcode(45009), [
                out(Queued, true, Throttled, Down, true),
                out(Queued, true, Throttled, Down, true),
                out(Cancelled, true, Throttled, Down, true)]),
            ("45011", errcode(45011), [
                out(Queued, true, Throttled, Congested, false),
                out(Queued, true, Throttled, Congested, false),
                out(Cancelled, true, Throttled, Congested, false)]),
            ("-1", errcode(-1), [
                out(Queued, true, Throttled, Congested, false),
                out(Queued, true, Throttled, Congested, false),
                out(Cancelled, true, Throttled, Congested, false)]),
            ("unknown errcode", errcode(48001), [
                out(Queued, true, Throttled, Congested, false),
                out(Queued, true, Throttled, Congested, false),
                out(Cancelled, true, Throttled, Congested, false)]),
            // Never left: the flag goes back, and a cancelled row is settled for good.
            ("connection refused", not_sent(), [
                out(Queued, false, Backoff, Down, false),
                out(Queued, false, Backoff, Down, false),
                out(Cancelled, false, Never, Down, false)]),
            ("no token: unavailable", token_unavailable(), [
                out(Queued, false, Backoff, Down, false),
                out(Queued, false, Backoff, Down, false),
                out(Cancelled, false, Never, Down, false)]),
            ("no token: misconfigured", misconfigured(), [
                out(Queued, false, Backoff, Down, true),
                out(Queued, false, Backoff, Down, true),
                out(Cancelled, false, Never, Down, true)]),
            ("no token: throttled locally", token_throttled(), [
                out(Queued, false, Backoff, Down, true),
                out(Queued, false, Backoff, Down, true),
                out(Cancelled, false, Never, Down, true)]),
            // Sent, answer lost: unknown, never guessed.
            ("timed out", lost(true), [
                out(Queued, true, Backoff, Congested, false),
                out(Queued, true, Backoff, Congested, false),
                out(Cancelled, true, Backoff, Congested, false)]),
            ("reply broken", lost(false), [
                out(Queued, true, Backoff, Down, false),
                out(Queued, true, Backoff, Down, false),
                out(Cancelled, true, Backoff, Down, false)]),
        ];
        for (name, answer, expected) in table {
            for (row, want) in [queued, offline, cancelled].into_iter().zip(expected) {
                let got = run(row, after_consume(false, &answer));
                assert_eq!(got, want, "{name} on {row:?}");
            }
        }
    }

    /// 45009 pauses the card API until WeChat's daily reset (midnight in China), whichever
    /// call it answers.
    #[test]
    fn the_daily_quota_pauses_until_the_reset() {
        for v in [
            after_consume(false, &errcode(45009)),
            after_query(true, &errcode(45009)),
        ] {
            assert!(
                matches!(&v.step, Step::Pause { retry_in: PauseFor::DailyReset, reason, .. } if reason.contains("daily API quota exhausted")),
                "{v:?}"
            );
            assert_eq!(v.health, Health::Down, "not congestion");
        }
        let Check::Done(v) = after_check(&errcode(45009)) else {
            panic!("usable");
        };
        assert!(matches!(
            v.step,
            Step::Pause {
                retry_in: PauseFor::DailyReset,
                settle: None,
                ..
            }
        ));
    }

    /// A consume that never left, on a row whose earlier consume is still unanswered: the
    /// flag stays set, so the next try asks before it consumes.
    #[test]
    fn a_consume_not_sent_keeps_an_earlier_unanswered_one() {
        let v = after_consume(true, &Answer::NotSent("cannot connect".into()));
        assert_eq!(
            run(snap(Queued, true, false), v.clone()),
            out(Queued, true, Backoff, Down, false)
        );
        assert_eq!(
            run(snap(Cancelled, true, false), v),
            out(Cancelled, true, Backoff, Down, false)
        );
    }

    /// The check of a fresh row (nothing unanswered).
    #[test]
    fn check_table() {
        let fresh = snap(Queued, false, false);
        let offline = snap(Queued, false, true);
        let usable = [
            get(Some("NORMAL"), Some(true)),
            get(None, None),
            get(Some("NORMAL"), None),
        ];
        for a in &usable {
            assert_eq!(after_check(a), Check::Usable, "{a:?}");
        }
        #[rustfmt::skip]
        let table: Vec<(&str, Answer<GetReply>, [Outcome; 2])> = vec![
            ("can_consume false", get(Some("NORMAL"), Some(false)),
                [out(Rejected, false, Never, Healthy, false), out(Review, false, Never, Healthy, false)]),
            ("CONSUMED", get(Some("CONSUMED"), None),
                [out(Rejected, false, Never, Healthy, false), out(Review, false, Never, Healthy, false)]),
            ("EXPIRE", get(Some("EXPIRE"), Some(false)),
                [out(Rejected, false, Never, Healthy, false), out(Review, false, Never, Healthy, false)]),
            ("GIFTING", get(Some("GIFTING"), Some(false)),
                [out(Rejected, false, Never, Healthy, false), out(Review, false, Never, Healthy, false)]),
            ("DELETE", get(Some("DELETE"), Some(false)),
                [out(Rejected, false, Never, Healthy, false), out(Review, false, Never, Healthy, false)]),
            ("UNAVAILABLE", get(Some("UNAVAILABLE"), Some(false)),
                [out(Rejected, false, Never, Healthy, false), out(Review, false, Never, Healthy, false)]),
            ("40099", errcode(40099),
                [out(Rejected, false, Never, Healthy, false), out(Review, false, Never, Healthy, false)]),
            ("40127", errcode(40127),
                [out(Rejected, false, Never, Healthy, false), out(Review, false, Never, Healthy, false)]),
            ("40056", errcode(40056),
                [out(Rejected, false, Never, Healthy, false), out(Review, false, Never, Healthy, false)]),
            ("45009", errcode(45009),
                [out(Queued, false, Never, Down, true), out(Queued, false, Never, Down, true)]),
            ("45011", errcode(45011),
                [out(Queued, false, Throttled, Congested, false), out(Queued, false, Throttled, Congested, false)]),
            ("-1", errcode(-1),
                [out(Queued, false, Throttled, Congested, false), out(Queued, false, Throttled, Congested, false)]),
            ("40001", errcode(40001),
                [out(Queued, false, Backoff, Healthy, false), out(Queued, false, Backoff, Healthy, false)]),
            ("connection refused", Answer::NotSent("cannot connect".into()),
                [out(Queued, false, Backoff, Down, false), out(Queued, false, Backoff, Down, false)]),
            ("timed out", lost(true),
                [out(Queued, false, Backoff, Congested, false), out(Queued, false, Backoff, Congested, false)]),
            ("reply broken", lost(false),
                [out(Queued, false, Backoff, Down, false), out(Queued, false, Backoff, Down, false)]),
            ("no token: misconfigured", misconfigured(),
                [out(Queued, false, Never, Down, true), out(Queued, false, Never, Down, true)]),
            ("no token: throttled", token_throttled(),
                [out(Queued, false, Never, Down, true), out(Queued, false, Never, Down, true)]),
            ("no token: unavailable", token_unavailable(),
                [out(Queued, false, Backoff, Down, false), out(Queued, false, Backoff, Down, false)]),
        ];
        for (name, answer, expected) in table {
            let Check::Done(v) = after_check(&answer) else {
                panic!("{name}: usable");
            };
            for (row, want) in [fresh, offline].into_iter().zip(expected) {
                assert_eq!(run(row, v.clone()), want, "{name} on {row:?}");
            }
        }
    }

    /// The query of a row whose consume went unanswered (queued or cancelled since), and of
    /// a cancelled row with nothing unanswered.
    #[test]
    fn query_table() {
        let unanswered = snap(Queued, true, false);
        let offline = snap(Queued, true, true);
        let cancelled = snap(Cancelled, true, false);
        #[rustfmt::skip]
        let table: Vec<(&str, Answer<GetReply>, [Outcome; 3])> = vec![
            // Our consume took effect.
            ("CONSUMED", get(Some("CONSUMED"), Some(false)), [
                out(Redeemed, false, Never, Healthy, false),
                out(Redeemed, false, Never, Healthy, false),
                out(Review, false, Never, Healthy, false)]),
            ("40099", errcode(40099), [
                out(Redeemed, false, Never, Healthy, false),
                out(Redeemed, false, Never, Healthy, false),
                out(Review, false, Never, Healthy, false)]),
            // It did not: consume now (queued), or settle the refusal (cancelled).
            ("NORMAL", get(Some("NORMAL"), Some(true)), [
                out(Queued, false, Now, Healthy, false),
                out(Queued, false, Now, Healthy, false),
                out(Cancelled, false, Never, Healthy, false)]),
            ("EXPIRE", get(Some("EXPIRE"), Some(false)), [
                out(Rejected, false, Never, Healthy, false),
                out(Review, false, Never, Healthy, false),
                out(Cancelled, false, Never, Healthy, false)]),
            ("40056", errcode(40056), [
                out(Rejected, false, Never, Healthy, false),
                out(Review, false, Never, Healthy, false),
                out(Cancelled, false, Never, Healthy, false)]),
            // Not known yet: ask again later, the flag stays.
            ("connection refused", Answer::NotSent("cannot connect".into()), [
                out(Queued, true, Backoff, Down, false),
                out(Queued, true, Backoff, Down, false),
                out(Cancelled, true, Backoff, Down, false)]),
            ("timed out", lost(true), [
                out(Queued, true, Backoff, Congested, false),
                out(Queued, true, Backoff, Congested, false),
                out(Cancelled, true, Backoff, Congested, false)]),
            ("-1", errcode(-1), [
                out(Queued, true, Throttled, Congested, false),
                out(Queued, true, Throttled, Congested, false),
                out(Cancelled, true, Throttled, Congested, false)]),
            ("no token: misconfigured", misconfigured(), [
                out(Queued, true, Never, Down, true),
                out(Queued, true, Never, Down, true),
                out(Cancelled, true, Never, Down, true)]),
        ];
        for (name, answer, expected) in table {
            for (row, want) in [unanswered, offline, cancelled].into_iter().zip(expected) {
                let got = run(row, after_query(row.unconfirmed, &answer));
                assert_eq!(got, want, "{name} on {row:?}");
            }
        }
        // CONSUMED without an unanswered consume of ours is someone else's.
        let v = after_query(false, &get(Some("CONSUMED"), Some(false)));
        assert_eq!(
            run(snap(Cancelled, false, false), v),
            out(Cancelled, false, Never, Healthy, false)
        );
    }
}
