//! A simulated WeChat Pay product-coupon API (商品券): the confirm that makes an issued
//! coupon usable, on the brand path (`WECHATPAY-BRAND-SHA256-RSA2048`, the brand's key) and
//! the partner path (`WECHATPAY2-SHA256-RSA2048`, the provider's mchid, `brand_id` in the
//! body). Like the real one it verifies each request with real RSA, signs every reply with
//! its own key (the same key its notifier signs with), and is idempotent on
//! `out_request_no`. Faults: 5xx.

use super::http::{Handler, Reply, SimRequest, SimServer};
use super::pay::signed_reply_headers;
use crate::wechat::pay::{ConfirmRequest, CouponEntity, DisplayInfo, ProductCouponInfo};
use crate::wechat::pay_sign::{
    Caller, MAX_RESPONSE_SKEW_S, Signer, parse_any_authorization, request_message, verify_signature,
};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Who may call, and how the simulator signs.
#[derive(Debug, Clone)]
pub struct BrandIdentity {
    pub brand_id: String,
    /// The brand's API certificate serial its requests must name.
    pub brand_serial: String,
    /// Partner mode: the service provider's mchid.
    pub partner_mchid: String,
    /// The id of the simulator's "WeChat Pay public key" (`Wechatpay-Serial`).
    pub public_key_id: String,
}

/// A user's product coupon at the simulator.
#[derive(Debug, Clone)]
pub struct SimProductCoupon {
    pub openid: String,
    pub product_coupon_id: String,
    pub stock_id: String,
    pub appid: String,
    /// `CONFIRMING`, `EFFECTIVE`, `USED`, ...
    pub state: String,
    pub confirm_request_no: Option<String>,
    pub title: String,
    pub usage_mode: String,
    pub valid_begin_time: String,
    pub valid_end_time: String,
}

#[derive(Debug, Default)]
struct State {
    coupons: HashMap<String, SimProductCoupon>,
    /// Confirm requests that reached the ledger (signature and faults passed).
    confirm_calls: u32,
    /// Coupons that went from CONFIRMING to EFFECTIVE.
    confirmed: u32,
    sign_errors: u32,
    server_errors: u32,
}

pub struct ProductCouponSim {
    id: BrandIdentity,
    /// Verifies the brand's (or the provider's) requests.
    caller_public_der: Vec<u8>,
    /// Signs replies: WeChat Pay's key.
    wechat: Signer,
    state: Mutex<State>,
}

/// What the simulator counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProductCouponCalls {
    pub confirm_calls: u32,
    pub confirmed: u32,
    pub sign_errors: u32,
}

fn real_now_s() -> i64 {
    chrono::Utc::now().timestamp()
}

impl ProductCouponSim {
    /// `caller_public_der`: the SPKI of the key the brand (or provider) signs with;
    /// `wechat`: WeChat Pay's key, which signs the replies.
    pub fn new(id: BrandIdentity, caller_public_der: Vec<u8>, wechat: Signer) -> Arc<Self> {
        Arc::new(ProductCouponSim {
            id,
            caller_public_der,
            wechat,
            state: Mutex::new(State::default()),
        })
    }

    pub async fn start(self: &Arc<Self>) -> std::io::Result<SimServer> {
        SimServer::start(self.clone()).await
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Issues a coupon to a user: CONFIRMING until the brand confirms it.
    pub fn issue(&self, code: &str, coupon: SimProductCoupon) {
        self.lock().coupons.insert(code.to_string(), coupon);
    }

    pub fn coupon(&self, code: &str) -> Option<SimProductCoupon> {
        self.lock().coupons.get(code).cloned()
    }

    pub fn calls(&self) -> ProductCouponCalls {
        let st = self.lock();
        ProductCouponCalls {
            confirm_calls: st.confirm_calls,
            confirmed: st.confirmed,
            sign_errors: st.sign_errors,
        }
    }

    /// The next `n` confirms answer 500 SYSTEM_ERROR before anything changes.
    pub fn fail_next(&self, n: u32) {
        self.lock().server_errors = n;
    }

    fn respond(&self, status: StatusCode, body: String) -> Reply {
        let mut headers = signed_reply_headers(
            body.as_bytes(),
            real_now_s(),
            &self.id.public_key_id,
            |message| self.wechat.sign(message).unwrap_or_default(),
        );
        headers.push(("Content-Type".to_string(), "application/json".to_string()));
        Reply::bytes(status, Bytes::from(body), headers, Duration::ZERO)
    }

    fn error(&self, status: StatusCode, code: &str, message: &str) -> Reply {
        self.respond(
            status,
            json!({ "code": code, "message": message }).to_string(),
        )
    }

    /// The caller, if its request is signed as this brand (or provider) signs.
    fn caller(&self, req: &SimRequest) -> Result<Caller, &'static str> {
        let header = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or("Authorization header missing")?;
        let (caller, auth) =
            parse_any_authorization(header).map_err(|_| "Authorization header malformed")?;
        match &caller {
            Caller::Brand(b) if *b == self.id.brand_id => {}
            Caller::Merchant(m) if *m == self.id.partner_mchid => {}
            _ => return Err("caller unknown"),
        }
        if !auth.serial_no.eq_ignore_ascii_case(&self.id.brand_serial) {
            return Err("certificate serial_no does not match");
        }
        if (real_now_s() - auth.timestamp).abs() > MAX_RESPONSE_SKEW_S {
            return Err("timestamp is more than 5 minutes off");
        }
        let message = request_message(
            req.method.as_str(),
            &req.path,
            auth.timestamp,
            &auth.nonce_str,
            &req.body,
        );
        if verify_signature(&self.caller_public_der, &message, &auth.signature) {
            Ok(caller)
        } else {
            Err("signature does not verify")
        }
    }

    fn handle_confirm(&self, req: &SimRequest, partner: bool, openid: &str, code: &str) -> Reply {
        let caller = match self.caller(req) {
            Ok(c) => c,
            Err(why) => {
                self.lock().sign_errors += 1;
                return self.error(StatusCode::UNAUTHORIZED, "SIGN_ERROR", why);
            }
        };
        if partner != matches!(caller, Caller::Merchant(_)) {
            self.lock().sign_errors += 1;
            return self.error(
                StatusCode::UNAUTHORIZED,
                "SIGN_ERROR",
                "this path is signed by the other kind of caller",
            );
        }
        let Ok(body) = serde_json::from_slice::<ConfirmRequest>(&req.body) else {
            return self.error(StatusCode::BAD_REQUEST, "268435461", "参数非法");
        };
        if partner && body.brand_id.as_deref() != Some(self.id.brand_id.as_str()) {
            return self.error(StatusCode::BAD_REQUEST, "268435461", "brand_id 非法");
        }
        let mut st = self.lock();
        if st.server_errors > 0 {
            st.server_errors -= 1;
            return self.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "SYSTEM_ERROR",
                "系统错误",
            );
        }
        st.confirm_calls += 1;
        let Some(c) = st.coupons.get_mut(code) else {
            return self.error(StatusCode::NOT_FOUND, "268578851", "用户券不存在");
        };
        if c.openid != openid
            || c.product_coupon_id != body.product_coupon_id
            || c.stock_id != body.stock_id
            || c.appid != body.appid
        {
            return self.error(StatusCode::BAD_REQUEST, "268435461", "参数非法");
        }
        let fresh = match (c.state.as_str(), &c.confirm_request_no) {
            ("CONFIRMING", _) => true,
            // The same request again: answered as before.
            (_, Some(no)) if *no == body.out_request_no => false,
            _ => {
                return self.error(StatusCode::BAD_REQUEST, "268578367", "用户券状态非法");
            }
        };
        if fresh {
            c.state = "EFFECTIVE".into();
            c.confirm_request_no = Some(body.out_request_no.clone());
        }
        let entity = entity(code, c);
        if fresh {
            st.confirmed += 1;
        }
        drop(st);
        self.respond(
            StatusCode::OK,
            serde_json::to_string(&entity).unwrap_or_default(),
        )
    }
}

fn entity(code: &str, c: &SimProductCoupon) -> CouponEntity {
    CouponEntity {
        coupon_code: code.to_string(),
        coupon_state: c.state.clone(),
        valid_begin_time: Some(c.valid_begin_time.clone()),
        valid_end_time: Some(c.valid_end_time.clone()),
        product_coupon: Some(ProductCouponInfo {
            product_coupon_id: Some(c.product_coupon_id.clone()),
            r#type: Some("EXCHANGE".into()),
            usage_mode: Some(c.usage_mode.clone()),
            display_info: Some(DisplayInfo {
                name: Some(c.title.clone()),
            }),
        }),
    }
}

/// `(partner, openid, code, action)` of a product coupon path.
fn route(path: &str) -> Option<(bool, &str, &str, &str)> {
    let (partner, rest) =
        if let Some(r) = path.strip_prefix("/brand/marketing/product-coupon/users/") {
            (false, r)
        } else {
            (
                true,
                path.strip_prefix("/v3/marketing/partner/product-coupon/users/")?,
            )
        };
    let mut parts = rest.split('/');
    let openid = parts.next()?;
    (parts.next()? == "coupons").then_some(())?;
    let code = parts.next()?;
    let action = parts.next()?;
    parts
        .next()
        .is_none()
        .then_some((partner, openid, code, action))
}

impl Handler for ProductCouponSim {
    fn handle(&self, req: SimRequest) -> Reply {
        match (req.method.clone(), route(&req.path)) {
            (Method::POST, Some((partner, openid, code, "confirm"))) => {
                let (openid, code) = (openid.to_string(), code.to_string());
                self.handle_confirm(&req, partner, &openid, &code)
            }
            _ => self.error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such path"),
        }
    }
}
