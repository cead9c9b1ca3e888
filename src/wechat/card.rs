//! The Official Account card-code API (卡券): `code/get`, `code/consume`, `code/decrypt`, and
//! `card/get` (what a card is: its type, title and value).
//!
//! Transport only: it sends, reads, and refreshes the token once on 40001/40014/42001. What
//! an answer means for a redemption is decided in `redeem::card`.

use crate::model::catalog::Meta;
use crate::model::code::Code;
use crate::wechat::errors::{CardClass, classify_card};
use crate::wechat::token::{TokenError, TokenManager, describe_transport};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// One call's result, as far as transport goes.
#[derive(Debug)]
pub enum Answer<T> {
    /// errcode 0 and the reply parsed.
    Ok { status: u16, reply: T },
    /// WeChat answered with an error code.
    Errcode {
        status: u16,
        errcode: i64,
        errmsg: String,
    },
    /// The request certainly did not reach WeChat (no connection, no token).
    NotSent(String),
    /// The request may have reached WeChat but no usable answer came back. `timed_out`:
    /// the answer did not come in time (WeChat may be overloaded), as opposed to one that
    /// came broken or cut off.
    Lost {
        status: Option<u16>,
        detail: String,
        timed_out: bool,
    },
    /// No token could be had; see the error for whether to pause.
    NoToken(TokenError),
}

#[derive(Debug, Clone, Deserialize)]
pub struct GetReply {
    #[serde(default)]
    pub openid: Option<String>,
    #[serde(default)]
    pub can_consume: Option<bool>,
    #[serde(default)]
    pub user_card_status: Option<String>,
    #[serde(default)]
    pub card: Option<CardRef>,
}

/// `cgi-bin/openapi/quota/get`: a path's daily call quota.
#[derive(Debug, Clone, Deserialize)]
pub struct QuotaReply {
    pub quota: Quota,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Quota {
    pub daily_limit: i64,
    pub used: i64,
    pub remain: i64,
}

/// The paths redeemd calls, whose quotas `redeemd check --quota` and the gauges read.
pub const QUOTA_PATHS: [&str; 4] = [
    "/card/code/get",
    "/card/code/consume",
    "/card/get",
    "/card/code/decrypt",
];

/// The card a code belongs to, as `code/get` names it.
#[derive(Debug, Clone, Deserialize)]
pub struct CardRef {
    pub card_id: String,
}

/// `card/get`: `{"card": {"card_type": "CASH", "cash": {"base_info": {...}, ...}}}`. The
/// type's own object is named after the type, in lower case.
#[derive(Debug, Clone, Deserialize)]
pub struct CardInfoReply {
    pub card: serde_json::Map<String, serde_json::Value>,
}

impl CardInfoReply {
    /// The card as the catalog keeps it; `None` when the reply lacks a type or a title.
    pub fn meta(&self) -> Option<Meta> {
        let kind = self.card.get("card_type")?.as_str()?.to_ascii_uppercase();
        let body = self.card.get(&kind.to_ascii_lowercase())?;
        let base = body.get("base_info")?;
        let title = base.get("title")?.as_str()?.to_string();
        let int = |v: &serde_json::Value, k: &str| v.get(k).and_then(serde_json::Value::as_i64);
        let text = |k: &str| {
            body.get(k)
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
        };
        let (value, minimum, detail) = match kind.as_str() {
            "CASH" => (int(body, "reduce_cost"), int(body, "least_cost"), None),
            // `discount`: percent off (30 = 30 % off).
            "DISCOUNT" => (
                None,
                None,
                int(body, "discount").map(|d| format!("{d}% off")),
            ),
            "GIFT" => (None, None, text("gift")),
            "GROUPON" => (None, None, text("deal_detail")),
            "GENERAL_COUPON" => (None, None, text("default_detail")),
            _ => (None, None, None),
        };
        let date = base.get("date_info");
        let stamp = |k: &str| date.and_then(|d| int(d, k)).map(|t| t.to_string());
        Some(Meta {
            kind,
            title,
            value,
            minimum,
            detail,
            valid_from: stamp("begin_timestamp"),
            valid_until: stamp("end_timestamp"),
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ConsumeReply {
    #[serde(default)]
    pub openid: Option<String>,
    #[serde(default)]
    pub card: Option<CardRef>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DecryptReply {
    pub code: Code,
}

pub struct CardApi {
    http: reqwest::Client,
    base_url: String,
    tokens: Arc<TokenManager>,
}

impl CardApi {
    pub fn new(http: reqwest::Client, base_url: &str, tokens: Arc<TokenManager>) -> Self {
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            tokens,
        }
    }

    pub fn tokens(&self) -> &TokenManager {
        &self.tokens
    }

    /// `code/get`. With `check_consume` an unusable code answers with an errcode (40099,
    /// 40127); without it, errcode 0 and its `user_card_status`.
    pub async fn get(
        &self,
        code: &str,
        card_id: Option<&str>,
        check_consume: bool,
    ) -> Answer<GetReply> {
        let mut body = serde_json::json!({ "code": code, "check_consume": check_consume });
        if let Some(c) = card_id {
            body["card_id"] = c.into();
        }
        self.call("get", &body).await
    }

    /// `code/consume`: irreversible and not idempotent (a repeat answers 40099).
    pub async fn consume(&self, code: &str, card_id: Option<&str>) -> Answer<ConsumeReply> {
        let mut body = serde_json::json!({ "code": code });
        if let Some(c) = card_id {
            body["card_id"] = c.into();
        }
        self.call("consume", &body).await
    }

    /// `code/decrypt`: the plain code behind an `encrypt_code` from a card's outbound link.
    pub async fn decrypt(&self, encrypt_code: &str) -> Answer<DecryptReply> {
        self.call(
            "decrypt",
            &serde_json::json!({ "encrypt_code": encrypt_code }),
        )
        .await
    }

    /// `openapi/quota/get` for one path (e.g. `/card/code/consume`).
    pub async fn quota(&self, cgi_path: &str) -> Answer<QuotaReply> {
        self.call_at(
            "/cgi-bin/openapi/quota/get",
            &serde_json::json!({ "cgi_path": cgi_path }),
        )
        .await
    }

    /// Every path's quota, or why it could not be read.
    pub async fn quotas(&self) -> Vec<(&'static str, Result<Quota, String>)> {
        let mut out = Vec::new();
        for path in QUOTA_PATHS {
            let q = match self.quota(path).await {
                Answer::Ok { reply, .. } => Ok(reply.quota),
                Answer::Errcode {
                    errcode, errmsg, ..
                } => Err(format!(
                    "errcode {errcode}: {}",
                    errmsg.split(" rid:").next().unwrap_or("")
                )),
                Answer::NotSent(d) | Answer::Lost { detail: d, .. } => Err(d),
                Answer::NoToken(e) => Err(e.to_string()),
            };
            out.push((path, q));
        }
        out
    }

    /// `card/get`: the card's type, title and value.
    pub async fn card_info(&self, card_id: &str) -> Answer<CardInfoReply> {
        self.call_at("/card/get", &serde_json::json!({ "card_id": card_id }))
            .await
    }

    async fn call<T: DeserializeOwned>(&self, verb: &str, body: &serde_json::Value) -> Answer<T> {
        self.call_at(&format!("/card/code/{verb}"), body).await
    }

    async fn call_at<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Answer<T> {
        let mut refreshed = false;
        loop {
            let token = match self.tokens.get().await {
                Ok(t) => t,
                Err(e) => return Answer::NoToken(e),
            };
            let answer = self.send::<T>(path, &token, body).await;
            match answer {
                Answer::Errcode { errcode, .. }
                    if classify_card(errcode) == CardClass::RefreshToken && !refreshed =>
                {
                    tracing::warn!(
                        event = "token_rejected",
                        errcode,
                        "WeChat rejected the access token; refreshing once"
                    );
                    self.tokens.invalidate(&token).await;
                    refreshed = true;
                }
                other => return other,
            }
        }
    }

    async fn send<T: DeserializeOwned>(
        &self,
        path: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> Answer<T> {
        let url = format!("{}{path}", self.base_url);
        let resp = match self
            .http
            .post(&url)
            .query(&[("access_token", token)])
            .json(body)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) if e.is_connect() => return Answer::NotSent(describe_transport(&e)),
            Err(e) => {
                return Answer::Lost {
                    status: None,
                    detail: describe_transport(&e),
                    timed_out: e.is_timeout(),
                };
            }
        };
        let status = resp.status().as_u16();
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Answer::Lost {
                    status: Some(status),
                    detail: describe_transport(&e),
                    timed_out: e.is_timeout(),
                };
            }
        };
        parse_reply(status, &bytes)
    }
}

/// Reads a card-API reply. Anything but a JSON object with an `errcode` is not an answer.
pub fn parse_reply<T: DeserializeOwned>(status: u16, bytes: &[u8]) -> Answer<T> {
    let lost = |detail: String| Answer::Lost {
        status: Some(status),
        detail,
        timed_out: false,
    };
    let value: serde_json::Value = match serde_json::from_slice(bytes) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        Ok(_) => return lost(format!("HTTP {status}: reply is not a JSON object")),
        Err(e) => return lost(format!("HTTP {status}: reply is not WeChat JSON: {e}")),
    };
    match value.get("errcode").map(serde_json::Value::as_i64) {
        None | Some(None) => lost(format!("HTTP {status}: reply has no numeric errcode")),
        Some(Some(0)) => match serde_json::from_value(value) {
            Ok(reply) => Answer::Ok { status, reply },
            Err(e) => lost(format!("HTTP {status}: unexpected reply fields: {e}")),
        },
        Some(Some(errcode)) => Answer::Errcode {
            status,
            errcode,
            errmsg: value
                .get("errmsg")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_get_replies_become_catalog_entries() {
        let reply = |body: &str| -> CardInfoReply {
            match parse_reply::<CardInfoReply>(200, body.as_bytes()) {
                Answer::Ok { reply, .. } => reply,
                other => panic!("{other:?}"),
            }
        };
        let cash = reply(
            r#"{"errcode":0,"errmsg":"ok","card":{"card_type":"CASH","cash":{"base_info":{"title":"满100减10","date_info":{"type":"DATE_TYPE_FIX_TIME_RANGE","begin_timestamp":1,"end_timestamp":2}},"least_cost":10000,"reduce_cost":1000}}}"#,
        )
        .meta()
        .expect("meta");
        assert_eq!(
            (cash.kind.as_str(), cash.title.as_str()),
            ("CASH", "满100减10")
        );
        assert_eq!((cash.value, cash.minimum), (Some(1000), Some(10000)));
        assert_eq!(cash.valid_until.as_deref(), Some("2"));
        let member = reply(
            r#"{"errcode":0,"card":{"card_type":"MEMBER_CARD","member_card":{"base_info":{"title":"会员卡"},"prerogative":"x"}}}"#,
        )
        .meta()
        .expect("meta");
        assert_eq!(member.kind, "MEMBER_CARD");
        assert_eq!(member.value, None);
        let discount = reply(
            r#"{"errcode":0,"card":{"card_type":"DISCOUNT","discount":{"base_info":{"title":"八折"},"discount":20}}}"#,
        )
        .meta()
        .expect("meta");
        assert_eq!(discount.detail.as_deref(), Some("20% off"));
        // A type without its object, or without a title, is not a description.
        assert!(
            reply(r#"{"errcode":0,"card":{"card_type":"CASH"}}"#)
                .meta()
                .is_none()
        );
        assert!(
            reply(r#"{"errcode":0,"card":{"card_type":"GIFT","gift":{"base_info":{}}}}"#)
                .meta()
                .is_none()
        );
    }

    #[test]
    fn parses_ok_error_and_junk() {
        let ok: Answer<GetReply> = parse_reply(
            200,
            br#"{"errcode":0,"errmsg":"ok","openid":"o1","card":{"card_id":"p1"},"can_consume":true,"user_card_status":"NORMAL"}"#,
        );
        assert!(matches!(
            ok,
            Answer::Ok {
                reply: GetReply {
                    can_consume: Some(true),
                    ..
                },
                ..
            }
        ));
        let err: Answer<GetReply> = parse_reply(
            200,
            br#"{"errcode":40099,"errmsg":"invalid code, this code has consumed. hint: [x] rid: y"}"#,
        );
        assert!(matches!(err, Answer::Errcode { errcode: 40099, .. }));
        for junk in [
            &b"<html>502</html>"[..],
            b"",
            b"{}",
            b"[1]",
            b"{\"errcode\":\"x\"}",
        ] {
            let a: Answer<GetReply> = parse_reply(502, junk);
            assert!(
                matches!(a, Answer::Lost { .. }),
                "{:?}",
                String::from_utf8_lossy(junk)
            );
        }
    }
}
