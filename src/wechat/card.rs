//! The Official Account card-code API (卡券): `code/get`, `code/consume`, `code/decrypt`.
//!
//! Transport only: it sends, reads, and refreshes the token once on 40001/40014/42001. What
//! an answer means for a redemption is decided in `redeem::card`.

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
}

#[derive(Debug, Clone, Deserialize)]
pub struct ConsumeReply {
    #[serde(default)]
    pub openid: Option<String>,
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

    async fn call<T: DeserializeOwned>(&self, verb: &str, body: &serde_json::Value) -> Answer<T> {
        let mut refreshed = false;
        loop {
            let token = match self.tokens.get().await {
                Ok(t) => t,
                Err(e) => return Answer::NoToken(e),
            };
            let answer = self.send::<T>(verb, &token, body).await;
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
        verb: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> Answer<T> {
        let url = format!("{}/card/code/{verb}", self.base_url);
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
