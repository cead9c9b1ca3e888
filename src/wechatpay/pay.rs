//! WeChat Pay API v3 merchant coupons (商家券): `POST /v3/marketing/busifavor/coupons/use`,
//! the stock query `GET /v3/marketing/busifavor/stocks/{stock_id}` and the return of a used
//! coupon `POST /v3/marketing/busifavor/coupons/return`.
//!
//! Transport only: sign, send (failing over to the backup host when the primary cannot be
//! reached), verify, and say what came back. What it means for a redemption is decided in
//! `redeem::coupon`.

use super::pay_sign::{RequestAuth, SignedHeaders, Verifier};
use crate::clock::SharedClock;
use crate::model::catalog::{Meta, yuan};
use crate::model::code::Code;
use crate::wechat::token::describe_transport;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

pub const USE_PATH: &str = "/v3/marketing/busifavor/coupons/use";
pub const RETURN_PATH: &str = "/v3/marketing/busifavor/coupons/return";
pub const STOCKS_PATH: &str = "/v3/marketing/busifavor/stocks";
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

/// `coupons/return`: idempotent on `return_request_no`, like `use` on `use_request_no`.
#[derive(Debug, Clone, Serialize)]
pub struct ReturnRequest {
    pub coupon_code: Code,
    pub stock_id: String,
    pub return_request_no: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ReturnReply {
    #[serde(default)]
    pub wechatpay_return_time: Option<String>,
}

/// The parts of a stock (`GET .../stocks/{stock_id}`) redeemd uses.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StockReply {
    pub stock_name: String,
    #[serde(default)]
    pub stock_type: Option<String>,
    #[serde(default)]
    pub coupon_use_rule: Option<UseRule>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct UseRule {
    #[serde(default)]
    pub coupon_available_time: Option<AvailableTime>,
    #[serde(default)]
    pub fixed_normal_coupon: Option<FixedNormal>,
    #[serde(default)]
    pub discount_coupon: Option<DiscountRule>,
    #[serde(default)]
    pub exchange_coupon: Option<ExchangeRule>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct AvailableTime {
    #[serde(default)]
    pub available_begin_time: Option<String>,
    #[serde(default)]
    pub available_end_time: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct FixedNormal {
    pub discount_amount: i64,
    #[serde(default)]
    pub transaction_minimum: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct DiscountRule {
    pub discount_percent: i64,
    #[serde(default)]
    pub transaction_minimum: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ExchangeRule {
    pub exchange_price: i64,
    #[serde(default)]
    pub transaction_minimum: Option<i64>,
}

impl StockReply {
    /// The stock as the catalog keeps it.
    pub fn meta(&self) -> Meta {
        let rule = self.coupon_use_rule.clone().unwrap_or_default();
        let (value, minimum, detail) = if let Some(f) = &rule.fixed_normal_coupon {
            (Some(f.discount_amount), f.transaction_minimum, None)
        } else if let Some(d) = &rule.discount_coupon {
            (
                None,
                d.transaction_minimum,
                Some(format!("pay {}%", d.discount_percent)),
            )
        } else if let Some(e) = &rule.exchange_coupon {
            (
                None,
                e.transaction_minimum,
                Some(format!("exchange for ¥{}", yuan(e.exchange_price))),
            )
        } else {
            (None, None, None)
        };
        let time = rule.coupon_available_time.unwrap_or_default();
        Meta {
            kind: self.stock_type.clone().unwrap_or_else(|| "NORMAL".into()),
            title: self.stock_name.clone(),
            value,
            minimum,
            detail,
            valid_from: time.available_begin_time,
            valid_until: time.available_end_time,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// Where a user's product coupon lives at WeChat Pay: brand or partner paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductCouponPath {
    pub partner: bool,
    pub openid: String,
    pub coupon_code: String,
}

/// Path segments are sent percent-escaped (an openid or a code is letters and digits, but
/// nothing else may break the path).
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl ProductCouponPath {
    /// `…/users/{openid}/coupons/{coupon_code}`.
    pub fn coupon(&self) -> String {
        let base = if self.partner {
            "/v3/marketing/partner/product-coupon"
        } else {
            "/brand/marketing/product-coupon"
        };
        format!(
            "{base}/users/{}/coupons/{}",
            segment(&self.openid),
            segment(&self.coupon_code)
        )
    }

    /// `…/users/{openid}/coupons/{coupon_code}/{action}`.
    pub fn action(&self, action: &str) -> String {
        format!("{}/{action}", self.coupon())
    }
}

/// The confirm's body (`openid` and the code are in the path). Partner mode names the
/// brand in the body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConfirmRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brand_id: Option<String>,
    pub product_coupon_id: String,
    pub stock_id: String,
    pub appid: String,
    pub out_request_no: String,
}

/// The sale's WeChat Pay order a product coupon is used with: its `transaction_id`, or its
/// `out_trade_no` with the `mchid` (and `sub_mchid`) it was paid to.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AssociatedOrder {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_trade_no: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mchid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_mchid: Option<String>,
}

/// A product coupon's use (核销): `openid` and the code are in the path. Idempotent on
/// `out_request_no`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProductCouponUseRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand_id: Option<String>,
    pub product_coupon_id: String,
    pub stock_id: String,
    pub appid: String,
    /// RFC 3339.
    pub use_time: String,
    pub out_request_no: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub associated_order_info: Option<AssociatedOrder>,
}

/// A used product coupon given back (退券). Idempotent on `out_request_no`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProductCouponReturnRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand_id: Option<String>,
    pub product_coupon_id: String,
    pub stock_id: String,
    pub appid: String,
    pub out_request_no: String,
}

/// The user coupon entity WeChat Pay answers with (the fields redeemd reads).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CouponEntity {
    #[serde(default)]
    pub coupon_code: String,
    #[serde(default)]
    pub coupon_state: String,
    #[serde(default)]
    pub valid_begin_time: Option<String>,
    #[serde(default)]
    pub valid_end_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub single_usage_detail: Option<UsageDetail>,
    #[serde(default)]
    pub product_coupon: Option<ProductCouponInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stock: Option<StockInfo>,
}

/// The coupon's stock (批次): where it may be used, and its use rule.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct StockInfo {
    /// `ALL`, `SPECIFIC` (the stock's associated stores) or `NONE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub single_usage_rule: Option<SingleUsageRule>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SingleUsageRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normal_coupon: Option<NormalCouponRule>,
}

/// A fixed-amount coupon: `discount_amount` fen off above `threshold`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NormalCouponRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount_amount: Option<i64>,
}

impl CouponEntity {
    /// The face value, fen, when the stock says it (a fixed-amount coupon).
    pub fn value(&self) -> Option<i64> {
        self.stock
            .as_ref()?
            .single_usage_rule
            .as_ref()?
            .normal_coupon
            .as_ref()?
            .discount_amount
    }

    pub fn store_scope(&self) -> Option<&str> {
        self.stock.as_ref()?.store_scope.as_deref()
    }
}

/// One page of a stock's associated stores.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AssociatedStores {
    #[serde(default)]
    pub store_list: Vec<AssociatedStore>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AssociatedStore {
    pub store_id: String,
}

/// How a single-use coupon was used (and given back).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct UsageDetail {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_request_no: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_request_no: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub associated_order_info: Option<AssociatedOrder>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProductCouponInfo {
    #[serde(default)]
    pub product_coupon_id: Option<String>,
    #[serde(default)]
    pub r#type: Option<String>,
    #[serde(default)]
    pub usage_mode: Option<String>,
    #[serde(default)]
    pub display_info: Option<DisplayInfo>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DisplayInfo {
    #[serde(default)]
    pub name: Option<String>,
}

/// What one request came to (a use, a return, a stock query: `T` is its reply).
#[derive(Debug, Clone)]
pub enum PayAnswer<T = UseReply> {
    /// 2xx, signature verified, the reply read.
    Used { status: u16, reply: T, host: String },
    /// 400/403/404: WeChat Pay refused this coupon.
    Refused {
        status: u16,
        code: String,
        message: String,
        /// The numeric error code WeChat Pay puts at the end of its `Request-ID` header
        /// (`…-268578367`), which names the case more exactly than `code`.
        errcode: Option<u64>,
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
    auth: RequestAuth,
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
    pub auth: RequestAuth,
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
        self.post(USE_PATH, req).await
    }

    /// Gives a used coupon back (the sale was voided). Idempotent on `return_request_no`.
    pub async fn return_coupon(&self, req: &ReturnRequest) -> PayAnswer<ReturnReply> {
        self.post(RETURN_PATH, req).await
    }

    /// Reads a stock: its name and use rule.
    pub async fn stock(&self, stock_id: &str) -> PayAnswer<StockReply> {
        if stock_id.is_empty() || !stock_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return PayAnswer::NotSent {
                detail: format!("{stock_id:?} is not a stock id"),
            };
        }
        self.send("GET", &format!("{STOCKS_PATH}/{stock_id}"), Vec::new())
            .await
    }

    /// Confirms an issued product coupon (brand or partner path): it becomes usable.
    /// Idempotent on `out_request_no`.
    pub async fn confirm_product_coupon(
        &self,
        path: &ProductCouponPath,
        req: &ConfirmRequest,
    ) -> PayAnswer<CouponEntity> {
        self.post(&path.action("confirm"), req).await
    }

    /// Uses a product coupon with its sale's order. Idempotent on `out_request_no`.
    pub async fn use_product_coupon(
        &self,
        path: &ProductCouponPath,
        req: &ProductCouponUseRequest,
    ) -> PayAnswer<CouponEntity> {
        self.post(&path.action("use"), req).await
    }

    /// Gives a used product coupon back. Idempotent on `out_request_no`.
    pub async fn return_product_coupon(
        &self,
        path: &ProductCouponPath,
        req: &ProductCouponReturnRequest,
    ) -> PayAnswer<CouponEntity> {
        self.post(&path.action("return"), req).await
    }

    /// One page of the stores a product-coupon stock may be used at (`SPECIFIC` scope).
    pub async fn associated_stores(
        &self,
        partner_brand: Option<&str>,
        product_coupon_id: &str,
        stock_id: &str,
        page_token: Option<&str>,
    ) -> PayAnswer<AssociatedStores> {
        let base = if partner_brand.is_some() {
            "/v3/marketing/partner/product-coupon"
        } else {
            "/brand/marketing/product-coupon"
        };
        let query = {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            q.append_pair("page_size", "50");
            if let Some(t) = page_token {
                q.append_pair("page_token", t);
            }
            if let Some(b) = partner_brand {
                q.append_pair("brand_id", b);
            }
            q.finish()
        };
        let url = format!(
            "{base}/product-coupons/{}/stocks/{}/associated-stores?{query}",
            segment(product_coupon_id),
            segment(stock_id)
        );
        self.send("GET", &url, Vec::new()).await
    }

    /// Reads a user's product coupon (partner mode: `brand_id` names the brand).
    pub async fn query_product_coupon(
        &self,
        path: &ProductCouponPath,
        product_coupon_id: &str,
        stock_id: &str,
        brand_id: Option<&str>,
    ) -> PayAnswer<CouponEntity> {
        let query = {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            q.append_pair("product_coupon_id", product_coupon_id)
                .append_pair("stock_id", stock_id)
                .append_pair("appid", &self.appid);
            if let Some(b) = brand_id {
                q.append_pair("brand_id", b);
            }
            q.finish()
        };
        let url = format!("{}?{query}", path.coupon());
        self.send("GET", &url, Vec::new()).await
    }

    async fn post<T: DeserializeOwned, R: Serialize>(&self, path: &str, req: &R) -> PayAnswer<T> {
        match serde_json::to_vec(req) {
            Ok(body) => self.send("POST", path, body).await,
            Err(e) => PayAnswer::NotSent {
                detail: format!("cannot encode the request: {e}"),
            },
        }
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        body: Vec<u8>,
    ) -> PayAnswer<T> {
        let body = &body;
        let [first, second] = self.hosts();
        match self.send_once(method, path, first, body).await {
            Sent::NotSent(detail) if first != second => {
                if first == self.primary
                    && let Ok(mut g) = self.prefer_backup_until.lock()
                {
                    *g = Some(Instant::now() + PREFER_BACKUP_FOR);
                }
                tracing::warn!(event = "pay_failover", unreachable = %first, to = %second, error = %detail, "WeChat Pay host unreachable; trying the other");
                match self.send_once(method, path, second, body).await {
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

    async fn send_once<T: DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        base: &str,
        body: &[u8],
    ) -> Sent<T> {
        let timestamp = self.clock.now_ms() / 1000;
        let nonce = format!("{:016X}{:016X}", fastrand::u64(..), fastrand::u64(..));
        let authorization = match self
            .auth
            .authorization(method, path, body, timestamp, &nonce)
        {
            Ok(a) => a,
            Err(e) => return Sent::NotSent(e),
        };
        let url = format!("{base}{path}");
        let mut request = if method == "GET" {
            self.http.get(url)
        } else {
            self.http
                .post(url)
                .header("Content-Type", "application/json")
                .body(body.to_vec())
        }
        .header("Authorization", authorization)
        .header("Accept", "application/json");
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

    fn classify<T: DeserializeOwned>(
        &self,
        base: &str,
        status: u16,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
    ) -> PayAnswer<T> {
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
                // A 204 (no body) reads as an empty object.
                let body = if body.is_empty() { b"{}" } else { body };
                match serde_json::from_slice::<T>(body) {
                    Ok(reply) => PayAnswer::Used {
                        status,
                        reply,
                        host: base.to_string(),
                    },
                    Err(e) => PayAnswer::Unknown {
                        status: Some(status),
                        detail: format!("verified response is not the expected reply: {e}"),
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
                    errcode: header("Request-ID").and_then(errcode_of_request_id),
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

/// The error code at the end of a `Request-ID` (`{request}-{errcode}`), if it has one.
pub fn errcode_of_request_id(id: &str) -> Option<u64> {
    let (_, tail) = id.rsplit_once('-')?;
    (!tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit()))
        .then(|| tail.parse().ok())
        .flatten()
}

enum Sent<T> {
    /// The request certainly did not reach the host.
    NotSent(String),
    Answer(PayAnswer<T>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_code_is_the_request_ids_last_part() {
        let cases = [
            (
                "08E68E97CC0610DF0618AC86BCA80120082880CF05-268578704",
                Some(268578704),
            ),
            ("sim-0123abcd", None),
            ("08E68E97CC0610DF", None),
            ("x-", None),
            ("x-12a", None),
        ];
        for (id, want) in cases {
            assert_eq!(errcode_of_request_id(id), want, "{id}");
        }
    }

    #[test]
    fn stock_replies_become_catalog_entries() {
        let stock: StockReply = serde_json::from_str(
            r#"{"stock_name":"满100减10","stock_type":"NORMAL","belong_merchant":"1","goods_name":"x",
                "coupon_use_rule":{"coupon_available_time":{"available_begin_time":"2026-01-01T00:00:00+08:00","available_end_time":"2026-12-31T23:59:59+08:00"},
                "fixed_normal_coupon":{"discount_amount":1000,"transaction_minimum":10000},"use_method":"OFF_LINE"}}"#,
        )
        .expect("stock");
        let m = stock.meta();
        assert_eq!((m.kind.as_str(), m.title.as_str()), ("NORMAL", "满100减10"));
        assert_eq!((m.value, m.minimum), (Some(1000), Some(10000)));
        assert_eq!(m.valid_until.as_deref(), Some("2026-12-31T23:59:59+08:00"));
        let discount: StockReply = serde_json::from_str(
            r#"{"stock_name":"88折","stock_type":"DISCOUNT","coupon_use_rule":{"discount_coupon":{"discount_percent":88,"transaction_minimum":0}}}"#,
        )
        .expect("stock");
        let m = discount.meta();
        assert_eq!((m.value, m.detail.as_deref()), (None, Some("pay 88%")));
    }
}
