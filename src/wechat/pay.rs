//! WeChat Pay API v3 merchant coupons (商家券): `POST /v3/marketing/busifavor/coupons/use`.
//!
//! Transport only: sign, send (failing over to the backup host when the primary cannot be
//! reached), verify, and say what came back. What it means for a redemption is decided in
//! `redeem::coupon`.

use crate::clock::SharedClock;
use crate::model::code::Code;
use crate::wechat::pay_sign::{MerchantAuth, SignedHeaders, Verifier};
use crate::wechat::token::describe_transport;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

pub const USE_PATH: &str = "/v3/marketing/busifavor/coupons/use";
/// After the primary host could not be reached, go to the backup first for this long.
const PREFER_BACKUP_FOR: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Serialize)]
pub struct UseRequest {
    pub coupon_code: Code,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stock_id: Option<String>,
    pub appid: String,
    pub use_time: String,
    pub use_request_no: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct UseReply {
    #[serde(default)]
    pub stock_id: Option<String>,
    #[serde(default)]
    pub openid: Option<String>,
    #[serde(default)]
    pub wechatpay_use_time: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// What one use request came to.
#[derive(Debug, Clone)]
pub enum PayAnswer {
    /// 200, signature verified.
    Used {
        status: u16,
        reply: UseReply,
        host: String,
    },
    /// 400/403/404: WeChat Pay refused this coupon.
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// 401: WeChat Pay did not accept our signature (often: the till's clock is off).
    SignRejected {
        message: String,
        /// The server's `Date`, unix seconds, to measure our clock against.
        server_date: Option<i64>,
    },
    /// The request certainly reached no host (no connection to either, or it could not be
    /// built): nothing can have been used.
    NotSent { detail: String },
    /// WeChat Pay answered that it could not do it now (429, 5xx): retry with the same
    /// use_request_no. Whether a 5xx used the coupon is not documented, so it is not taken
    /// as "not used".
    Retry {
        status: u16,
        detail: String,
        throttled: bool,
    },
    /// Sent, and no trustworthy answer came back (timeout, cut off, unverified signature).
    /// `timed_out`: no answer in time, as opposed to a broken one.
    Unknown {
        status: Option<u16>,
        detail: String,
        timed_out: bool,
    },
}

pub struct PayApi {
    http: reqwest::Client,
    appid: String,
    auth: MerchantAuth,
    verifier: Verifier,
    /// Sent as `Wechatpay-Serial` when verifying with the WeChat Pay public key.
    public_key_id: Option<String>,
    primary: String,
    backup: String,
    clock: SharedClock,
    prefer_backup_until: Mutex<Option<Instant>>,
}

pub struct PayApiParts {
    pub http: reqwest::Client,
    pub appid: String,
    pub auth: MerchantAuth,
    pub verifier: Verifier,
    pub public_key_id: Option<String>,
    pub primary: String,
    pub backup: String,
    pub clock: SharedClock,
}

impl PayApi {
    pub fn new(p: PayApiParts) -> Self {
        Self {
            http: p.http,
            appid: p.appid,
            auth: p.auth,
            verifier: p.verifier,
            public_key_id: p.public_key_id,
            primary: p.primary.trim_end_matches('/').to_string(),
            backup: p.backup.trim_end_matches('/').to_string(),
            clock: p.clock,
            prefer_backup_until: Mutex::new(None),
        }
    }

    pub fn appid(&self) -> &str {
        &self.appid
    }

    fn hosts(&self) -> [&str; 2] {
        let prefer_backup = self
            .prefer_backup_until
            .lock()
            .map(|g| g.is_some_and(|t| Instant::now() < t))
            .unwrap_or(false);
        if prefer_backup {
            [&self.backup, &self.primary]
        } else {
            [&self.primary, &self.backup]
        }
    }

    /// Uses a coupon. A host that cannot be reached is skipped for the other; the request is
    /// idempotent on `use_request_no`, so the same body may go to either.
    pub async fn use_coupon(&self, req: &UseRequest) -> PayAnswer {
        let body = match serde_json::to_vec(req) {
            Ok(b) => b,
            Err(e) => {
                return PayAnswer::NotSent {
                    detail: format!("cannot encode the request: {e}"),
                };
            }
        };
        let [first, second] = self.hosts();
        match self.send_once(first, &body).await {
            Sent::NotSent(detail) if first != second => {
                if first == self.primary
                    && let Ok(mut g) = self.prefer_backup_until.lock()
                {
                    *g = Some(Instant::now() + PREFER_BACKUP_FOR);
                }
                tracing::warn!(event = "pay_failover", unreachable = %first, to = %second, error = %detail, "WeChat Pay host unreachable; trying the other");
                match self.send_once(second, &body).await {
                    Sent::NotSent(detail2) => PayAnswer::NotSent {
                        detail: format!("{first}: {detail}; {second}: {detail2}"),
                    },
                    Sent::Answer(a) => a,
                }
            }
            Sent::NotSent(detail) => PayAnswer::NotSent { detail },
            Sent::Answer(a) => a,
        }
    }

    async fn send_once(&self, base: &str, body: &[u8]) -> Sent {
        let timestamp = self.clock.now_ms() / 1000;
        let nonce = format!("{:016X}{:016X}", fastrand::u64(..), fastrand::u64(..));
        let authorization = match self
            .auth
            .authorization("POST", USE_PATH, body, timestamp, &nonce)
        {
            Ok(a) => a,
            Err(e) => return Sent::NotSent(e),
        };
        let mut request = self
            .http
            .post(format!("{base}{USE_PATH}"))
            .header("Authorization", authorization)
            .header("Accept", "application/json")
            .header("Content-Type", "application/json")
            .body(body.to_vec());
        if let Some(id) = &self.public_key_id {
            request = request.header("Wechatpay-Serial", id);
        }
        let resp = match request.send().await {
            Ok(r) => r,
            Err(e) if e.is_connect() => return Sent::NotSent(describe_transport(&e)),
            Err(e) => {
                return Sent::Answer(PayAnswer::Unknown {
                    status: None,
                    detail: describe_transport(&e),
                    timed_out: e.is_timeout(),
                });
            }
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Sent::Answer(PayAnswer::Unknown {
                    status: Some(status),
                    detail: describe_transport(&e),
                    timed_out: e.is_timeout(),
                });
            }
        };
        Sent::Answer(self.classify(base, status, &headers, &bytes))
    }

    fn classify(
        &self,
        base: &str,
        status: u16,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
    ) -> PayAnswer {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let signed = SignedHeaders {
            timestamp: header("Wechatpay-Timestamp"),
            nonce: header("Wechatpay-Nonce"),
            signature: header("Wechatpay-Signature"),
            serial: header("Wechatpay-Serial"),
        };
        let now_s = self.clock.now_ms() / 1000;
        let error_body = || serde_json::from_slice::<ErrorBody>(body).unwrap_or_default();
        match status {
            200..=299 => {
                if let Err(e) = self.verifier.verify(&signed, body, now_s) {
                    tracing::warn!(event = "pay_unverified", status, error = %e, "WeChat Pay response failed verification; outcome unknown");
                    return PayAnswer::Unknown {
                        status: Some(status),
                        detail: format!("unverified response: {e}"),
                        timed_out: false,
                    };
                }
                match serde_json::from_slice::<UseReply>(body) {
                    Ok(reply) => PayAnswer::Used {
                        status,
                        reply,
                        host: base.to_string(),
                    },
                    Err(e) => PayAnswer::Unknown {
                        status: Some(status),
                        detail: format!("verified response is not the use reply: {e}"),
                        timed_out: false,
                    },
                }
            }
            401 => {
                let e = error_body();
                PayAnswer::SignRejected {
                    message: format!(
                        "{}: {}",
                        e.code.as_deref().unwrap_or("SIGN_ERROR"),
                        e.message.as_deref().unwrap_or("")
                    ),
                    server_date: header("Date")
                        .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok())
                        .map(|d| d.timestamp()),
                }
            }
            400 | 403 | 404 => {
                // A refusal is final for the coupon, so a signed one must verify; an
                // unsigned one (a gateway) is taken as it is.
                if signed.signature.is_some()
                    && let Err(e) = self.verifier.verify(&signed, body, now_s)
                {
                    return PayAnswer::Unknown {
                        status: Some(status),
                        detail: format!("unverified refusal: {e}"),
                        timed_out: false,
                    };
                }
                let e = error_body();
                PayAnswer::Refused {
                    status,
                    code: e.code.unwrap_or_else(|| format!("HTTP_{status}")),
                    message: e.message.unwrap_or_default(),
                }
            }
            429 => PayAnswer::Retry {
                status,
                detail: format!("rate limited ({})", error_body().code.unwrap_or_default()),
                throttled: true,
            },
            _ => PayAnswer::Retry {
                status,
                detail: format!("HTTP {status} {}", error_body().code.unwrap_or_default()),
                throttled: false,
            },
        }
    }
}

enum Sent {
    /// The request certainly did not reach the host.
    NotSent(String),
    Answer(PayAnswer),
}
