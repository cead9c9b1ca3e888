//! A simulated WeChat Pay API v3 for merchant coupons: `POST /v3/marketing/busifavor/coupons/use`,
//! `POST .../coupons/return` (idempotent on `return_request_no`) and `GET .../stocks/{stock_id}`.
//!
//! Like the real one it verifies each request's signature with the merchant's public key
//! (401 SIGN_ERROR otherwise, including a timestamp more than 5 minutes off its clock), signs
//! every response with its own key, keeps a ledger of used coupons, and is idempotent on
//! `use_request_no`. Faults: 5xx, 429, a response lost after the use committed, forged or
//! probe response signatures, and a skewed server clock. Run two servers on one `PaySim` for
//! a primary and a backup host.

mod returns;

use super::http::{Handler, Reply, SimRequest, SimServer};
use crate::wechatpay::pay::{RETURN_PATH, STOCKS_PATH, USE_PATH};
use crate::wechatpay::pay_sign::{
    self, MAX_RESPONSE_SKEW_S, Signer, parse_authorization, request_message, response_message,
    verify_signature,
};
use base64::Engine;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Makes a fresh 2048-bit RSA key: the signer and its PKCS#8 DER.
pub fn generate_key() -> Result<(Signer, Vec<u8>), String> {
    use aws_lc_rs::encoding::AsDer;
    let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
        .map_err(|_| "RSA key generation failed".to_string())?;
    let der = kp
        .as_der()
        .map_err(|_| "cannot encode the key".to_string())?
        .as_ref()
        .to_vec();
    Ok((Signer::from_pkcs8_der(&der)?, der))
}

/// PEM-armours DER (`label` like "PRIVATE KEY", "PUBLIC KEY").
pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The headers WeChat Pay signs a reply with: `Wechatpay-Timestamp`, `-Nonce`,
/// `-Signature` (what `sign` makes of `TIMESTAMP\nNONCE\nBODY\n`), `-Serial` and
/// `-Signature-Type`.
pub(super) fn signed_reply_headers(
    body: &[u8],
    now_s: i64,
    public_key_id: &str,
    sign: impl FnOnce(&[u8]) -> String,
) -> Vec<(String, String)> {
    let ts = now_s.to_string();
    let nonce = format!("{:032X}", fastrand::u128(..));
    let signature = sign(&response_message(&ts, &nonce, body));
    vec![
        ("Wechatpay-Timestamp".to_string(), ts),
        ("Wechatpay-Nonce".to_string(), nonce),
        ("Wechatpay-Signature".to_string(), signature),
        ("Wechatpay-Serial".to_string(), public_key_id.to_string()),
        (
            "Wechatpay-Signature-Type".to_string(),
            pay_sign::SCHEMA.to_string(),
        ),
    ]
}

/// Who the simulator expects to talk to.
#[derive(Debug, Clone)]
pub struct PayIdentity {
    pub mchid: String,
    pub appid: String,
    /// The merchant API certificate serial our requests must name.
    pub merchant_serial: String,
    /// The id of the simulator's "WeChat Pay public key".
    pub public_key_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CouponState {
    Sended,
    Used,
    Expired,
    Deactivated,
}

#[derive(Debug, Clone)]
struct Coupon {
    stock_id: String,
    state: CouponState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Use {
    pub coupon_code: String,
    pub use_request_no: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PayCalls {
    /// Use requests that reached the simulator.
    pub use_calls: u32,
    /// Requests refused with 401 SIGN_ERROR.
    pub sign_errors: u32,
    /// Repeats of a committed `use_request_no`, answered with the original 200.
    pub replays: u32,
    /// Uses of an already-used coupon under a new `use_request_no`: double redemption attempts.
    pub use_of_used: u32,
    /// Return requests that reached the simulator (signature checked).
    pub return_calls: u32,
    /// Repeats of a committed `return_request_no`, answered with the original 200.
    pub return_replays: u32,
    /// Stock queries.
    pub stock_calls: u32,
}

/// One committed return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Return {
    pub coupon_code: String,
    pub return_request_no: String,
}

#[derive(Debug, Clone, Default)]
pub struct PayFaults {
    /// Answer the next N uses 500 SYSTEM_ERROR (nothing committed).
    pub server_error: u32,
    /// Answer the next N uses 429 FREQUENCY_LIMITED (nothing committed).
    pub rate_limited: u32,
    /// Commit the next N uses, then drop the connection without answering.
    pub drop_after_commit: u32,
    /// Sign every response with a key that is not WeChat Pay's.
    pub forge_signatures: bool,
    /// Send `WECHATPAY/SIGNTEST/` probe signatures.
    pub probe_signatures: bool,
    /// The server's clock is this many seconds off the real one.
    pub clock_offset_s: i64,
    /// Answer every request this much later (after any commit).
    pub latency: Duration,
    /// Forget committed `use_request_no`s: a repeat is then treated as a new use (the
    /// undocumented case the daemon must not guess about).
    pub no_idempotency: bool,
    /// Answer the next N returns 500 (nothing committed).
    pub return_server_error: u32,
    /// Commit the next N returns, then drop the connection without answering.
    pub drop_after_return: u32,
}

struct State {
    coupons: HashMap<String, Coupon>,
    /// stock_id → the stock query's answer body.
    stocks: HashMap<String, serde_json::Value>,
    returns: Vec<Return>,
    /// return_request_no → (coupon, the 200 body).
    by_return_no: HashMap<String, (String, String)>,
    uses: Vec<Use>,
    /// use_request_no → (coupon, the 200 body), for idempotent replays.
    by_request_no: HashMap<String, (String, String)>,
    calls: PayCalls,
    faults: PayFaults,
}

pub struct PaySim {
    id: PayIdentity,
    merchant_key_der: Vec<u8>,
    wechat: Signer,
    wechat_public_der: Vec<u8>,
    forger: Signer,
    state: Mutex<State>,
}

#[derive(Deserialize)]
struct UseBody {
    #[serde(default)]
    coupon_code: Option<String>,
    #[serde(default)]
    stock_id: Option<String>,
    #[serde(default)]
    appid: Option<String>,
    #[serde(default)]
    use_time: Option<String>,
    #[serde(default)]
    use_request_no: Option<String>,
}

fn real_now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl PaySim {
    /// `merchant_public_der`: the merchant key's public half (SPKI DER), to check requests.
    pub fn new(id: PayIdentity, merchant_public_der: Vec<u8>) -> Result<Arc<PaySim>, String> {
        let (wechat, _) = generate_key()?;
        Self::with_wechat_key(id, merchant_public_der, wechat)
    }

    /// [`PaySim::new`], signing as WeChat Pay with `wechat` (shared with another simulator
    /// of the same host, such as the product-coupon one).
    pub fn with_wechat_key(
        id: PayIdentity,
        merchant_public_der: Vec<u8>,
        wechat: Signer,
    ) -> Result<Arc<PaySim>, String> {
        let (forger, _) = generate_key()?;
        let wechat_public_der = wechat.public_spki_der()?;
        Ok(Arc::new(PaySim {
            id,
            merchant_key_der: merchant_public_der,
            wechat,
            wechat_public_der,
            forger,
            state: Mutex::new(State {
                coupons: HashMap::new(),
                stocks: HashMap::new(),
                returns: Vec::new(),
                by_return_no: HashMap::new(),
                uses: Vec::new(),
                by_request_no: HashMap::new(),
                calls: PayCalls::default(),
                faults: PayFaults::default(),
            }),
        }))
    }

    pub async fn start(self: &Arc<Self>) -> std::io::Result<SimServer> {
        SimServer::start(self.clone()).await
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The "WeChat Pay public key" a merchant downloads (SPKI PEM).
    pub fn public_key_pem(&self) -> String {
        pem("PUBLIC KEY", &self.wechat_public_der)
    }

    pub fn identity(&self) -> &PayIdentity {
        &self.id
    }

    pub fn add_coupon(&self, code: &str, stock_id: &str) {
        self.add_coupon_in(code, stock_id, CouponState::Sended);
    }

    pub fn add_coupon_in(&self, code: &str, stock_id: &str, state: CouponState) {
        self.lock().coupons.insert(
            code.into(),
            Coupon {
                stock_id: stock_id.into(),
                state,
            },
        );
    }

    /// Describes a stock for the stock query: a fixed discount of `discount_amount` fen off a
    /// sale of at least `transaction_minimum` fen. A stock nobody described answers 404.
    pub fn add_stock(
        &self,
        stock_id: &str,
        name: &str,
        discount_amount: i64,
        transaction_minimum: i64,
    ) {
        let body = json!({
            "stock_id": stock_id, "stock_name": name, "belong_merchant": self.id.mchid,
            "goods_name": "全场通用", "stock_type": "NORMAL", "stock_state": "RUNNING",
            "coupon_code_mode": "MERCHANT_API",
            "coupon_use_rule": {
                "coupon_available_time": {"available_begin_time": "2026-01-01T00:00:00+08:00",
                                          "available_end_time": "2099-12-31T23:59:59+08:00"},
                "fixed_normal_coupon": {"discount_amount": discount_amount,
                                        "transaction_minimum": transaction_minimum},
                "use_method": "OFF_LINE"
            },
            "stock_send_rule": {"max_amount": 100_000_000, "max_coupons_per_user": 10}
        });
        self.lock().stocks.insert(stock_id.into(), body);
    }

    /// How many times `code` was returned (committed), replays not counted.
    pub fn returned_count(&self, code: &str) -> usize {
        self.lock()
            .returns
            .iter()
            .filter(|r| r.coupon_code == code)
            .count()
    }

    pub fn returns(&self) -> Vec<Return> {
        self.lock().returns.clone()
    }

    /// How many times `code` was used (committed), replays not counted.
    pub fn used_count(&self, code: &str) -> usize {
        self.lock()
            .uses
            .iter()
            .filter(|u| u.coupon_code == code)
            .count()
    }

    pub fn uses(&self) -> Vec<Use> {
        self.lock().uses.clone()
    }

    pub fn calls(&self) -> PayCalls {
        self.lock().calls.clone()
    }

    pub fn faults(&self) -> PayFaults {
        self.lock().faults.clone()
    }

    pub fn set_faults(&self, f: PayFaults) {
        self.lock().faults = f;
    }

    pub fn update_faults(&self, f: impl FnOnce(&mut PayFaults)) {
        f(&mut self.lock().faults);
    }

    fn respond(&self, status: StatusCode, body: String, st: &State, now_s: i64) -> Reply {
        let mut headers =
            signed_reply_headers(body.as_bytes(), now_s, &self.id.public_key_id, |message| {
                if st.faults.probe_signatures {
                    format!(
                        "WECHATPAY/SIGNTEST/{}",
                        base64::engine::general_purpose::STANDARD
                            .encode(fastrand::u64(..).to_be_bytes())
                    )
                } else if st.faults.forge_signatures {
                    self.forger.sign(message).unwrap_or_default()
                } else {
                    self.wechat.sign(message).unwrap_or_default()
                }
            });
        let date = chrono::DateTime::from_timestamp(now_s, 0)
            .map(|d| d.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
            .unwrap_or_default();
        headers.push(("Date".to_string(), date));
        headers.push((
            "Request-ID".to_string(),
            format!("sim-{:016x}", fastrand::u64(..)),
        ));
        Reply::bytes(status, Bytes::from(body), headers, st.faults.latency)
    }

    fn error(
        &self,
        status: StatusCode,
        code: &str,
        message: &str,
        st: &State,
        now_s: i64,
    ) -> Reply {
        let body = json!({"code": code, "message": message}).to_string();
        self.respond(status, body, st, now_s)
    }

    /// Checks the request's Authorization; `Err` is the 401 message.
    fn check_signature(&self, req: &SimRequest, now_s: i64) -> Result<(), &'static str> {
        let header = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or("Authorization header missing")?;
        let auth = parse_authorization(header).map_err(|_| "Authorization header malformed")?;
        if auth.mchid != self.id.mchid {
            return Err("mchid does not match");
        }
        if !auth
            .serial_no
            .eq_ignore_ascii_case(&self.id.merchant_serial)
        {
            return Err("certificate serial_no does not match");
        }
        if (now_s - auth.timestamp).abs() > MAX_RESPONSE_SKEW_S {
            return Err("timestamp is more than 5 minutes off");
        }
        let url = if req.query.is_empty() {
            req.path.clone()
        } else {
            format!("{}?{}", req.path, req.query)
        };
        let message = request_message(
            req.method.as_str(),
            &url,
            auth.timestamp,
            &auth.nonce_str,
            &req.body,
        );
        if verify_signature(&self.merchant_key_der, &message, &auth.signature) {
            Ok(())
        } else {
            Err("signature does not verify")
        }
    }

    fn handle_use(&self, req: &SimRequest) -> Reply {
        let mut st = self.lock();
        let now_s = real_now_s() + st.faults.clock_offset_s;
        st.calls.use_calls += 1;
        if let Err(why) = self.check_signature(req, now_s) {
            st.calls.sign_errors += 1;
            return self.error(StatusCode::UNAUTHORIZED, "SIGN_ERROR", why, &st, now_s);
        }
        if st.faults.rate_limited > 0 {
            st.faults.rate_limited -= 1;
            return self.error(
                StatusCode::TOO_MANY_REQUESTS,
                "FREQUENCY_LIMITED",
                "请求过于频繁",
                &st,
                now_s,
            );
        }
        if st.faults.server_error > 0 {
            st.faults.server_error -= 1;
            return self.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "SYSTEM_ERROR",
                "系统错误",
                &st,
                now_s,
            );
        }
        let Ok(body) = serde_json::from_slice::<UseBody>(&req.body) else {
            return self.error(
                StatusCode::BAD_REQUEST,
                "PARAM_ERROR",
                "body is not JSON",
                &st,
                now_s,
            );
        };
        let (Some(code), Some(appid), Some(use_time), Some(no)) = (
            body.coupon_code,
            body.appid,
            body.use_time,
            body.use_request_no,
        ) else {
            return self.error(
                StatusCode::BAD_REQUEST,
                "PARAM_ERROR",
                "a required field is missing",
                &st,
                now_s,
            );
        };
        if no.is_empty() || no.len() > 32 || code.is_empty() || code.len() > 32 {
            return self.error(
                StatusCode::BAD_REQUEST,
                "PARAM_ERROR",
                "field length out of range",
                &st,
                now_s,
            );
        }
        if chrono::DateTime::parse_from_rfc3339(&use_time).is_err() {
            return self.error(
                StatusCode::BAD_REQUEST,
                "PARAM_ERROR",
                "use_time is not RFC 3339",
                &st,
                now_s,
            );
        }
        if appid != self.id.appid {
            return self.error(
                StatusCode::FORBIDDEN,
                "NO_AUTH",
                "appid 与商户号未绑定 (appid not bound to mchid)",
                &st,
                now_s,
            );
        }
        let remembered = if st.faults.no_idempotency {
            None
        } else {
            st.by_request_no.get(&no).cloned()
        };
        if let Some((prev_code, reply)) = remembered {
            if prev_code == code {
                st.calls.replays += 1;
                return self.respond(StatusCode::OK, reply, &st, now_s);
            }
            return self.error(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                "use_request_no 已被使用 (reused for another coupon)",
                &st,
                now_s,
            );
        }
        let Some(coupon) = st.coupons.get(&code).cloned() else {
            return self.error(
                StatusCode::NOT_FOUND,
                "RESOURCE_NOT_EXISTS",
                "券不存在 (no such coupon)",
                &st,
                now_s,
            );
        };
        if body
            .stock_id
            .as_ref()
            .is_some_and(|s| *s != coupon.stock_id)
        {
            return self.error(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                "批次号不匹配 (stock_id does not match)",
                &st,
                now_s,
            );
        }
        match coupon.state {
            CouponState::Sended => {}
            CouponState::Used => {
                st.calls.use_of_used += 1;
                return self.error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_REQUEST",
                    "券已核销 (coupon already used)",
                    &st,
                    now_s,
                );
            }
            CouponState::Expired => {
                return self.error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_REQUEST",
                    "券已过期 (coupon expired)",
                    &st,
                    now_s,
                );
            }
            CouponState::Deactivated => {
                return self.error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_REQUEST",
                    "券已失效 (coupon deactivated)",
                    &st,
                    now_s,
                );
            }
        }
        // Commit.
        if let Some(c) = st.coupons.get_mut(&code) {
            c.state = CouponState::Used;
        }
        let wechatpay_use_time = chrono::FixedOffset::east_opt(8 * 3600)
            .zip(chrono::DateTime::from_timestamp(now_s, 0))
            .map(|(beijing, d)| d.with_timezone(&beijing).to_rfc3339())
            .unwrap_or_default();
        let reply = json!({
            "stock_id": coupon.stock_id,
            "openid": "o_sim_pay_openid",
            "wechatpay_use_time": wechatpay_use_time,
        })
        .to_string();
        st.uses.push(Use {
            coupon_code: code.clone(),
            use_request_no: no.clone(),
        });
        st.by_request_no.insert(no, (code, reply.clone()));
        if st.faults.drop_after_commit > 0 {
            st.faults.drop_after_commit -= 1;
            return Reply::Drop;
        }
        self.respond(StatusCode::OK, reply, &st, now_s)
    }
}

impl PaySim {
    /// `GET .../stocks/{stock_id}`.
    fn handle_stock(&self, req: &SimRequest, stock_id: &str) -> Reply {
        let mut st = self.lock();
        let now_s = real_now_s() + st.faults.clock_offset_s;
        if let Err(why) = self.check_signature(req, now_s) {
            st.calls.sign_errors += 1;
            return self.error(StatusCode::UNAUTHORIZED, "SIGN_ERROR", why, &st, now_s);
        }
        st.calls.stock_calls += 1;
        match st.stocks.get(stock_id) {
            Some(body) => {
                let body = body.to_string();
                self.respond(StatusCode::OK, body, &st, now_s)
            }
            None => self.error(
                StatusCode::NOT_FOUND,
                "RESOURCE_NOT_EXISTS",
                "批次不存在",
                &st,
                now_s,
            ),
        }
    }
}

impl Handler for PaySim {
    fn handle(&self, req: SimRequest) -> Reply {
        if req.method == Method::POST && req.path == USE_PATH {
            return self.handle_use(&req);
        }
        if req.method == Method::POST && req.path == RETURN_PATH {
            return self.handle_return(&req);
        }
        if req.method == Method::GET
            && let Some(stock) = req
                .path
                .strip_prefix(STOCKS_PATH)
                .and_then(|p| p.strip_prefix('/'))
            && !stock.is_empty()
            && !stock.contains('/')
        {
            let stock = stock.to_string();
            return self.handle_stock(&req, &stock);
        }
        Reply::json(
            StatusCode::NOT_FOUND,
            &json!({"code": "NOT_FOUND", "message": "no such path in the simulator"}),
            Duration::ZERO,
        )
    }
}
