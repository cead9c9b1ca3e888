//! Every reason redeemd can write on a row or in an answer has a stable `reason_code`: the
//! decision tables are walked over every answer they can be given (every errcode, every
//! WeChat Pay status, every transport failure), their verdicts settled through the state
//! machine for a row queued, accepted offline and refused, and the reasons written
//! elsewhere (routing, admission, offline limits, duplicates, voids, the store guard) are
//! added; none may come out as `other`.

use crate::model::catalog::{self, Admit, CardTypes, Meta};
use crate::model::offline::{self, Backlog, Elsewhere, Limits};
use crate::model::reason::{OTHER, code_of};
use crate::model::state::{self, Settle, Snapshot, State};
use crate::redeem::card_rules::{self, Check};
use crate::redeem::coupon_rules;
use crate::redeem::verdict::{Step, Verdict};
use crate::wechat::card::{Answer, ConsumeReply, GetReply};
use crate::wechat::token::TokenError;
use crate::wechatpay::pay::{PayAnswer, UseReply};
use std::time::Duration;

/// The reasons a verdict writes on a row, settled from each starting point.
fn written(v: &Verdict, out: &mut Vec<String>) {
    let settles: Vec<&Settle> = match &v.step {
        Step::Settle(s) => vec![s],
        Step::Pause { settle, reason, .. } => {
            out.push(state::transient(state::Transient::NotSent, reason));
            settle.iter().collect()
        }
    };
    let starts = [
        (State::Queued, false, false),
        (State::Queued, true, true),
        (State::Queued, false, true),
        (State::Cancelled, true, false),
    ];
    for s in settles {
        for (st, unconfirmed, offline) in starts {
            let change = state::settle(
                Snapshot {
                    state: st,
                    unconfirmed,
                    accepted_offline: offline,
                },
                s,
            );
            out.extend(change.reason);
        }
    }
}

fn card_answers<T>(ok: impl Fn() -> T) -> Vec<Answer<T>> {
    let mut all: Vec<Answer<T>> = (-1..=100_000)
        .map(|errcode| Answer::Errcode {
            status: 200,
            errcode,
            errmsg: "errmsg hint: [x]".into(),
        })
        .collect();
    all.extend([
        Answer::Ok {
            status: 200,
            reply: ok(),
        },
        Answer::NotSent("error sending request: connection refused".into()),
        Answer::Lost {
            status: None,
            detail: "operation timed out".into(),
            timed_out: true,
        },
        Answer::Lost {
            status: Some(502),
            detail: "HTTP 502: reply is not WeChat JSON".into(),
            timed_out: false,
        },
        Answer::NoToken(TokenError::Misconfigured {
            reason: "wechat.secret_file: invalid appsecret (40125)".into(),
            retry_in: Duration::from_secs(60),
        }),
        Answer::NoToken(TokenError::Throttled {
            retry_in: Duration::from_secs(1),
        }),
        Answer::NoToken(TokenError::Unavailable("HTTP 500".into())),
    ]);
    all
}

fn pay_answers() -> Vec<PayAnswer> {
    let mut all = vec![
        PayAnswer::Used {
            status: 200,
            reply: UseReply::default(),
            host: "h".into(),
        },
        PayAnswer::SignRejected {
            message: "签名错误".into(),
            server_date: None,
        },
        PayAnswer::SignRejected {
            message: "签名错误".into(),
            server_date: Some(0),
        },
        PayAnswer::NotSent {
            detail: "connection refused".into(),
        },
        PayAnswer::Unknown {
            status: None,
            detail: "timed out".into(),
            timed_out: true,
        },
    ];
    for status in [400, 403, 404, 409, 422] {
        for (code, message) in [("RESOURCE_ALREADY_EXISTS", "券已核销"), ("PARAM_ERROR", "")] {
            all.push(PayAnswer::Refused {
                status,
                code: code.into(),
                message: message.into(),
                errcode: None,
            });
        }
    }
    for (status, throttled) in [(429, true), (500, false), (503, false)] {
        all.push(PayAnswer::Retry {
            status,
            detail: format!("HTTP {status} SYSTEM_ERROR"),
            throttled,
        });
    }
    all
}

fn get_reply(status: &str, can: Option<bool>) -> GetReply {
    serde_json::from_value(serde_json::json!({
        "openid": "o", "can_consume": can, "user_card_status": status,
        "card": { "card_id": "pCARD" }
    }))
    .expect("a GetReply")
}

fn consume_reply() -> ConsumeReply {
    serde_json::from_value(serde_json::json!({ "openid": "o" })).expect("a ConsumeReply")
}

#[test]
fn every_reason_redeemd_can_write_has_a_stable_code() {
    let mut reasons = Vec::new();
    for before in [false, true] {
        for a in card_answers(consume_reply) {
            written(&card_rules::after_consume(before, &a), &mut reasons);
        }
        for a in card_answers(|| get_reply("NORMAL", Some(true))) {
            written(&card_rules::after_query(before, &a), &mut reasons);
        }
        for a in pay_answers() {
            written(
                &coupon_rules::after_use(before, &a, 1_000_000),
                &mut reasons,
            );
        }
    }
    let statuses = [
        "NORMAL",
        "CONSUMED",
        "EXPIRE",
        "GIFTING",
        "GIFT_TIMEOUT",
        "DELETE",
        "UNAVAILABLE",
        "X",
    ];
    for status in statuses {
        for can in [None, Some(false), Some(true)] {
            if let Check::Done(v) = card_rules::after_check(&Answer::Ok {
                status: 200,
                reply: get_reply(status, can),
            }) {
                written(&v, &mut reasons);
            }
        }
    }
    for a in card_answers(|| get_reply("NORMAL", Some(true))) {
        if let Check::Done(v) = card_rules::after_check(&a) {
            written(&v, &mut reasons);
        }
    }
    for st in [State::Queued, State::Cancelled] {
        for unconfirmed in [false, true] {
            let snap = Snapshot {
                state: st,
                unconfirmed,
                accepted_offline: false,
            };
            reasons.extend(state::expire(snap).and_then(|c| c.reason));
        }
    }
    // Admission: member cards, types, minimums.
    let meta = |kind: &str, minimum| Meta {
        kind: kind.into(),
        title: "t".into(),
        value: Some(1_000),
        minimum,
        detail: None,
        valid_from: None,
        valid_until: None,
    };
    let (member, gift) = (meta(catalog::MEMBER_CARD, None), meta("GIFT", Some(10_000)));
    for types in [CardTypes::Coupons, CardTypes::Only(vec!["CASH".into()])] {
        for meta in [None, Some(&member), Some(&gift)] {
            for amount in [None, Some(1)] {
                for admit in [
                    catalog::admit_card(meta, &types, amount),
                    catalog::admit_coupon(meta, amount),
                ] {
                    if let Admit::Refuse(r) = admit {
                        assert_eq!(code_of(&r.reason), r.reason_code, "{}", r.reason);
                        reasons.push(r.reason);
                    }
                }
            }
        }
    }
    // Offline limits, each alone.
    let base = Limits {
        allowed: true,
        max_pending: 10,
        ..Limits::default()
    };
    let busy = Backlog {
        pending: 10,
        pending_value: 5_000,
    };
    for (limits, value, backlog) in [
        (
            Limits {
                allowed: false,
                ..base.clone()
            },
            Some(1),
            Backlog::default(),
        ),
        (base.clone(), Some(1), busy),
        (
            Limits {
                max_value: Some(100),
                ..base.clone()
            },
            None,
            Backlog::default(),
        ),
        (
            Limits {
                max_value: Some(100),
                ..base.clone()
            },
            Some(200),
            Backlog::default(),
        ),
        (
            Limits {
                max_pending_value: Some(5_000),
                max_pending: 99,
                ..base.clone()
            },
            Some(1),
            busy,
        ),
        (
            Limits {
                guard_missing: true,
                ..base.clone()
            },
            Some(1),
            Backlog::default(),
        ),
        (
            Limits {
                redeemed_elsewhere: Some(Elsewhere::Till("store12 (till-1)".into())),
                ..base.clone()
            },
            Some(1),
            Backlog::default(),
        ),
        (
            Limits {
                redeemed_elsewhere: Some(Elsewhere::Outside("2026-12-01 14:03".into())),
                ..base.clone()
            },
            Some(1),
            Backlog::default(),
        ),
    ] {
        reasons.push(offline::decide(&limits, value, backlog).expect_err("a refusal"));
    }
    // Written by the intake, the ledger, voids and the store guard.
    reasons.extend(
        [
            crate::route::REFUSED_PAYMENT_CODE,
            crate::route::REFUSED_NO_ROUTE,
            crate::route::REFUSED_EMPTY_CAPTURE,
            crate::ledger::scans::REFUSED_UNANSWERED,
            crate::model::void::VOIDED_BEFORE_REDEMPTION,
            crate::model::void::VOIDED_CARD,
            crate::model::void::VOID_FAILED,
            crate::redeem::intake::CANNOT_RECORD,
            coupon_rules::REFUSED_WHILE_UNANSWERED,
            state::REDEEMED_AFTER_REFUSAL,
            "unreadable scan: inter_key_timeout",
            "already redeemed here (first scanned 2026-12-01T10:00:00+08:00)",
            "already redeemed here and given back when its sale was voided (first scanned x)",
            "already accepted here, awaiting WeChat (first scanned x)",
            "already scanned here and rejected: card expired",
            "already scanned here and refused (first scanned x)",
            "already scanned here; waiting for a manager's review (first scanned x)",
        ]
        .map(String::from),
    );
    // A product coupon the till does not hold.
    {
        use crate::model::product_coupon::NotHeld;
        for n in [
            NotHeld::NotIssued,
            NotHeld::NotEffective("CONFIRMING".into()),
            NotHeld::Expired("valid until x".into()),
            NotHeld::NotForThisStore,
            NotHeld::AlreadyUsed,
            NotHeld::BundleNotSupported,
        ] {
            reasons.push(n.reason());
        }
        reasons.push(format!(
            "{}: the store did not answer within 300 ms",
            crate::model::product_coupon::REGISTRY_UNAVAILABLE
        ));
        reasons.push(format!(
            "{} in time; the coupon was not used",
            crate::model::product_coupon::HOLD_EXPIRED
        ));
        reasons.push(crate::model::product_coupon::INCOMPLETE_ROW.into());
    }
    // A product coupon's use, sent once its sale was paid: every answer, fresh and repeated.
    {
        use crate::wechatpay::pay::{CouponEntity, UsageDetail};
        let answers: Vec<PayAnswer<CouponEntity>> = vec![
            PayAnswer::Used {
                status: 200,
                reply: CouponEntity {
                    single_usage_detail: Some(UsageDetail {
                        use_request_no: Some("other".into()),
                        ..UsageDetail::default()
                    }),
                    ..CouponEntity::default()
                },
                host: "h".into(),
            },
            PayAnswer::Refused {
                status: 400,
                code: "INVALID_REQUEST".into(),
                message: "券已被其他订单核销".into(),
                errcode: Some(272756745),
            },
            PayAnswer::Refused {
                status: 404,
                code: "RESOURCE_NOT_EXISTS".into(),
                message: String::new(),
                errcode: None,
            },
        ];
        for a in &answers {
            for before in [false, true] {
                let v = crate::redeem::product_coupon_rules::after_use(before, "ours", a, 0);
                written(&v, &mut reasons);
            }
        }
    }
    reasons.push(crate::model::claim::abandoned_here_reason(0, "till-2"));
    reasons.push(crate::model::claim::taken_twice_reason("till-2", 0));
    reasons.sort();
    reasons.dedup();
    let unknown: Vec<&String> = reasons.iter().filter(|r| code_of(r) == OTHER).collect();
    assert!(unknown.is_empty(), "reasons without a code: {unknown:#?}");
    assert!(reasons.len() > 40, "walked {} reasons", reasons.len());
}
