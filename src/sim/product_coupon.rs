//! A simulated WeChat Pay product-coupon API (商品券): confirm (an issued coupon becomes
//! usable), use with the sale's order, return, and query, on the brand path
//! (`WECHATPAY-BRAND-SHA256-RSA2048`, the brand's key) and the partner path
//! (`WECHATPAY2-SHA256-RSA2048`, the provider's mchid, `brand_id` in the body or query).
//! Like the real one it verifies each request with real RSA, signs every reply with its
//! own key (the same key its notifier signs with), is idempotent on `out_request_no`, and
//! names a refusal by the error code at the end of its `Request-ID` header. Faults: 5xx,
//! a use committed and its answer lost, latency.

use super::http::{Handler, Reply, SimRequest, SimServer};
use super::pay::signed_reply_headers;
use crate::wechatpay::pay::{
    AssociatedOrder, AssociatedStore, AssociatedStores, ConfirmRequest, CouponEntity, DisplayInfo,
    NormalCouponRule, ProductCouponInfo, ProductCouponReturnRequest, ProductCouponUseRequest,
    SingleUsageRule, StockInfo, UsageDetail,
};
use crate::wechatpay::pay_sign::{
    Caller, MAX_RESPONSE_SKEW_S, Signer, parse_any_authorization, request_message, verify_signature,
};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// A stock's rules at the simulator: where its coupons may be used, and their value.
#[derive(Debug, Clone)]
pub struct SimStock {
    /// `ALL`, `SPECIFIC` or `NONE`.
    pub store_scope: String,
    /// With `SPECIFIC`: the stock's associated stores.
    pub stores: Vec<String>,
    /// A fixed-amount coupon's value, fen.
    pub value: Option<i64>,
}

impl Default for SimStock {
    fn default() -> SimStock {
        SimStock {
            store_scope: "ALL".into(),
            stores: Vec::new(),
            value: None,
        }
    }
}

/// A committed use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimUse {
    pub coupon_code: String,
    pub out_request_no: String,
    pub use_time: String,
    pub order: Option<AssociatedOrder>,
    pub store_id: Option<String>,
}

/// A committed return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimReturn {
    pub coupon_code: String,
    pub out_request_no: String,
}

/// Faults the simulator injects, as the other simulated APIs do.
#[derive(Debug, Clone, Default)]
pub struct ProductCouponFaults {
    /// Answer the next N writes (confirm, use, return) 500 SYSTEM_ERROR, nothing changed.
    pub server_error: u32,
    /// Commit the next N uses, then drop the connection without answering.
    pub drop_after_commit: u32,
    /// Answer every request this much later (after any commit).
    pub latency: Duration,
}

#[derive(Debug, Default)]
struct State {
    coupons: HashMap<String, Coupon>,
    stocks: HashMap<String, SimStock>,
    uses: Vec<SimUse>,
    returns: Vec<SimReturn>,
    calls: ProductCouponCalls,
    faults: ProductCouponFaults,
}

/// A coupon and what was done to it.
#[derive(Debug, Clone)]
struct Coupon {
    c: SimProductCoupon,
    usage: Option<UsageDetail>,
    store_id: Option<String>,
}

pub struct ProductCouponSim {
    id: BrandIdentity,
    /// Verifies the brand's (or the provider's) requests.
    caller_public_der: Vec<u8>,
    /// Signs replies: WeChat Pay's key.
    wechat: Signer,
    state: Mutex<State>,
    /// `faults.latency`, readable while the state is locked (answers are made under it).
    latency_us: AtomicU64,
}

/// What the simulator counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProductCouponCalls {
    pub confirm_calls: u32,
    pub confirmed: u32,
    pub sign_errors: u32,
    /// Use requests that passed the signature and faults.
    pub use_calls: u32,
    /// Repeats of a committed use's `out_request_no`, answered as the first.
    pub use_replays: u32,
    /// Uses of a used coupon under a new `out_request_no`: double redemption attempts.
    pub use_of_used: u32,
    pub return_calls: u32,
    pub return_replays: u32,
    pub queries: u32,
}

/// A refusal: HTTP status, the v3 `code`, the error code of its `Request-ID`, the message.
type Refusal = (StatusCode, &'static str, u64, &'static str);

const NOT_FOUND: Refusal = (
    StatusCode::NOT_FOUND,
    "RESOURCE_NOT_EXISTS",
    268578851,
    "用户券不存在",
);
const BAD_PARAM: Refusal = (
    StatusCode::BAD_REQUEST,
    "PARAM_ERROR",
    268435461,
    "参数非法",
);
const BAD_STATE: Refusal = (
    StatusCode::BAD_REQUEST,
    "INVALID_REQUEST",
    268578367,
    "用户券状态非法",
);
const USED_BY_OTHER: Refusal = (
    StatusCode::BAD_REQUEST,
    "INVALID_REQUEST",
    272756745,
    "券已被其他订单核销",
);
const EXPIRED: Refusal = (
    StatusCode::BAD_REQUEST,
    "INVALID_REQUEST",
    268578776,
    "用户券已过期",
);
const DELETED: Refusal = (
    StatusCode::BAD_REQUEST,
    "INVALID_REQUEST",
    272756769,
    "券已被删除",
);
const OUT_OF_PERIOD: Refusal = (
    StatusCode::BAD_REQUEST,
    "INVALID_REQUEST",
    272755715,
    "券不在使用有效期（绝对批次有效期）",
);

fn real_now_s() -> i64 {
    chrono::Utc::now().timestamp()
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Whether RFC 3339 `t` is within `[begin, end]` (an unreadable bound does not limit).
fn within(t: &str, begin: &str, end: &str) -> bool {
    let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
    let Some(t) = at(t) else {
        return false;
    };
    at(begin).is_none_or(|b| t >= b) && at(end).is_none_or(|e| t <= e)
}

/// The refusal a coupon in `state` gives a use or a return it cannot take.
fn refusal_for(state: &str) -> Refusal {
    match state {
        "USED" => USED_BY_OTHER,
        "EXPIRED" => EXPIRED,
        "DELETED" => DELETED,
        _ => BAD_STATE,
    }
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
            latency_us: AtomicU64::new(0),
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
        self.lock().coupons.insert(
            code.to_string(),
            Coupon {
                c: coupon,
                usage: None,
                store_id: None,
            },
        );
    }

    /// Sets a stock's rules (a stock not set is usable at every store, of no known value).
    pub fn set_stock(&self, stock_id: &str, stock: SimStock) {
        self.lock().stocks.insert(stock_id.to_string(), stock);
    }

    pub fn coupon(&self, code: &str) -> Option<SimProductCoupon> {
        self.lock().coupons.get(code).map(|c| c.c.clone())
    }

    /// Marks a coupon used outside the tills (a mini-program, WeChat's own tools).
    pub fn use_elsewhere(&self, code: &str, out_request_no: &str) {
        if let Some(c) = self.lock().coupons.get_mut(code) {
            c.c.state = "USED".into();
            c.usage = Some(UsageDetail {
                use_request_no: Some(out_request_no.to_string()),
                use_time: Some(now_rfc3339()),
                ..UsageDetail::default()
            });
        }
    }

    pub fn calls(&self) -> ProductCouponCalls {
        self.lock().calls
    }

    /// Every committed use, in order.
    pub fn uses(&self) -> Vec<SimUse> {
        self.lock().uses.clone()
    }

    /// Committed uses of `code` (a single-use coupon: at most one, however often asked).
    pub fn used_count(&self, code: &str) -> usize {
        self.lock()
            .uses
            .iter()
            .filter(|u| u.coupon_code == code)
            .count()
    }

    pub fn returns(&self) -> Vec<SimReturn> {
        self.lock().returns.clone()
    }

    /// The next `n` writes answer 500 SYSTEM_ERROR before anything changes.
    pub fn fail_next(&self, n: u32) {
        self.lock().faults.server_error = n;
    }

    pub fn update_faults(&self, f: impl FnOnce(&mut ProductCouponFaults)) {
        let mut st = self.lock();
        f(&mut st.faults);
        let us = u64::try_from(st.faults.latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_us.store(us, Ordering::Relaxed);
    }

    fn respond(&self, status: StatusCode, body: String, errcode: Option<u64>) -> Reply {
        let mut headers = signed_reply_headers(
            body.as_bytes(),
            real_now_s(),
            &self.id.public_key_id,
            |message| self.wechat.sign(message).unwrap_or_default(),
        );
        headers.push(("Content-Type".to_string(), "application/json".to_string()));
        let request_id = format!("{:032X}", fastrand::u128(..));
        headers.push((
            "Request-ID".to_string(),
            match errcode {
                Some(code) => format!("{request_id}-{code}"),
                None => request_id,
            },
        ));
        let latency = Duration::from_micros(self.latency_us.load(Ordering::Relaxed));
        Reply::bytes(status, Bytes::from(body), headers, latency)
    }

    fn refuse(&self, (status, code, errcode, message): Refusal) -> Reply {
        self.respond(
            status,
            json!({ "code": code, "message": message }).to_string(),
            Some(errcode),
        )
    }

    fn ok(&self, entity: &CouponEntity) -> Reply {
        self.respond(
            StatusCode::OK,
            serde_json::to_string(entity).unwrap_or_default(),
            None,
        )
    }

    /// The caller, if its request is signed as this brand (or provider) signs, on the
    /// path kind (brand or partner) it signs for.
    fn caller(&self, req: &SimRequest, partner: bool) -> Result<Caller, &'static str> {
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
        if partner != matches!(caller, Caller::Merchant(_)) {
            return Err("this path is signed by the other kind of caller");
        }
        if !auth.serial_no.eq_ignore_ascii_case(&self.id.brand_serial) {
            return Err("certificate serial_no does not match");
        }
        if (real_now_s() - auth.timestamp).abs() > MAX_RESPONSE_SKEW_S {
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
        if verify_signature(&self.caller_public_der, &message, &auth.signature) {
            Ok(caller)
        } else {
            Err("signature does not verify")
        }
    }

    /// The checks every request passes first: the signature, the brand a partner names,
    /// and the 5xx fault. `Some`: the answer that stops it.
    fn stopped(&self, req: &SimRequest, partner: bool, brand_id: Option<&str>) -> Option<Reply> {
        if let Err(why) = self.caller(req, partner) {
            self.lock().calls.sign_errors += 1;
            return Some(self.respond(
                StatusCode::UNAUTHORIZED,
                json!({ "code": "SIGN_ERROR", "message": why }).to_string(),
                None,
            ));
        }
        if partner && brand_id != Some(self.id.brand_id.as_str()) {
            return Some(self.refuse(BAD_PARAM));
        }
        let mut st = self.lock();
        if st.faults.server_error > 0 {
            st.faults.server_error -= 1;
            drop(st);
            return Some(self.respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({ "code": "SYSTEM_ERROR", "message": "系统错误" }).to_string(),
                None,
            ));
        }
        None
    }

    fn handle_confirm(&self, req: &SimRequest, partner: bool, openid: &str, code: &str) -> Reply {
        let Ok(body) = serde_json::from_slice::<ConfirmRequest>(&req.body) else {
            return self.refuse(BAD_PARAM);
        };
        if let Some(r) = self.stopped(req, partner, body.brand_id.as_deref()) {
            return r;
        }
        let mut guard = self.lock();
        let st = &mut *guard;
        st.calls.confirm_calls += 1;
        let Some(c) = st.coupons.get_mut(code) else {
            return self.refuse(NOT_FOUND);
        };
        if !c.is(openid, &body.product_coupon_id, &body.stock_id, &body.appid) {
            return self.refuse(BAD_PARAM);
        }
        let fresh = match (c.c.state.as_str(), &c.c.confirm_request_no) {
            ("CONFIRMING", _) => true,
            // The same request again: answered as before.
            (_, Some(no)) if *no == body.out_request_no => false,
            _ => return self.refuse(BAD_STATE),
        };
        if fresh {
            c.c.state = "EFFECTIVE".into();
            c.c.confirm_request_no = Some(body.out_request_no.clone());
        }
        let entity = c.entity(code, &st.stocks);
        if fresh {
            st.calls.confirmed += 1;
        }
        drop(guard);
        self.ok(&entity)
    }

    fn handle_use(&self, req: &SimRequest, partner: bool, openid: &str, code: &str) -> Reply {
        let Ok(body) = serde_json::from_slice::<ProductCouponUseRequest>(&req.body) else {
            return self.refuse(BAD_PARAM);
        };
        if let Some(r) = self.stopped(req, partner, body.brand_id.as_deref()) {
            return r;
        }
        let order_ok = body.associated_order_info.as_ref().is_some_and(|o| {
            o.transaction_id.is_some() || (o.out_trade_no.is_some() && o.mchid.is_some())
        });
        if !order_ok && (partner || body.associated_order_info.is_some()) {
            return self.refuse(BAD_PARAM);
        }
        let mut guard = self.lock();
        let st = &mut *guard;
        st.calls.use_calls += 1;
        let Some(c) = st.coupons.get_mut(code) else {
            return self.refuse(NOT_FOUND);
        };
        if !c.is(openid, &body.product_coupon_id, &body.stock_id, &body.appid) {
            return self.refuse(BAD_PARAM);
        }
        let same = c.usage.as_ref().and_then(|u| u.use_request_no.as_deref())
            == Some(body.out_request_no.as_str());
        match c.c.state.as_str() {
            "USED" if same => {
                let entity = c.entity(code, &st.stocks);
                st.calls.use_replays += 1;
                drop(guard);
                return self.ok(&entity);
            }
            "USED" => {
                st.calls.use_of_used += 1;
                return self.refuse(USED_BY_OTHER);
            }
            "EFFECTIVE" => {}
            other => return self.refuse(refusal_for(other)),
        }
        if !within(&body.use_time, &c.c.valid_begin_time, &c.c.valid_end_time) {
            return self.refuse(OUT_OF_PERIOD);
        }
        c.c.state = "USED".into();
        c.usage = Some(UsageDetail {
            use_request_no: Some(body.out_request_no.clone()),
            use_time: Some(body.use_time.clone()),
            return_request_no: None,
            return_time: None,
            associated_order_info: body.associated_order_info.clone(),
        });
        c.store_id.clone_from(&body.store_id);
        let entity = c.entity(code, &st.stocks);
        st.uses.push(SimUse {
            coupon_code: code.to_string(),
            out_request_no: body.out_request_no,
            use_time: body.use_time,
            order: body.associated_order_info,
            store_id: body.store_id,
        });
        if st.faults.drop_after_commit > 0 {
            st.faults.drop_after_commit -= 1;
            return Reply::Drop;
        }
        drop(guard);
        self.ok(&entity)
    }

    fn handle_return(&self, req: &SimRequest, partner: bool, openid: &str, code: &str) -> Reply {
        let Ok(body) = serde_json::from_slice::<ProductCouponReturnRequest>(&req.body) else {
            return self.refuse(BAD_PARAM);
        };
        if let Some(r) = self.stopped(req, partner, body.brand_id.as_deref()) {
            return r;
        }
        let mut guard = self.lock();
        let st = &mut *guard;
        st.calls.return_calls += 1;
        let Some(c) = st.coupons.get_mut(code) else {
            return self.refuse(NOT_FOUND);
        };
        if !c.is(openid, &body.product_coupon_id, &body.stock_id, &body.appid) {
            return self.refuse(BAD_PARAM);
        }
        let usage = c.usage.get_or_insert_with(UsageDetail::default);
        if usage.return_request_no.as_deref() == Some(body.out_request_no.as_str()) {
            let entity = c.entity(code, &st.stocks);
            st.calls.return_replays += 1;
            drop(guard);
            return self.ok(&entity);
        }
        if c.c.state != "USED" {
            return self.refuse(BAD_STATE);
        }
        usage.return_request_no = Some(body.out_request_no.clone());
        usage.return_time = Some(now_rfc3339());
        c.c.state = "EFFECTIVE".into();
        let entity = c.entity(code, &st.stocks);
        st.returns.push(SimReturn {
            coupon_code: code.to_string(),
            out_request_no: body.out_request_no,
        });
        drop(guard);
        self.ok(&entity)
    }

    fn handle_query(&self, req: &SimRequest, partner: bool, openid: &str, code: &str) -> Reply {
        let brand = req.query_param("brand_id");
        if let Some(r) = self.stopped(req, partner, brand.as_deref()) {
            return r;
        }
        let mut guard = self.lock();
        let st = &mut *guard;
        st.calls.queries += 1;
        let Some(c) = st.coupons.get(code) else {
            return self.refuse(NOT_FOUND);
        };
        let param = |n: &str| req.query_param(n).unwrap_or_default();
        if !c.is(
            openid,
            &param("product_coupon_id"),
            &param("stock_id"),
            &param("appid"),
        ) {
            return self.refuse(BAD_PARAM);
        }
        let entity = c.entity(code, &st.stocks);
        drop(guard);
        self.ok(&entity)
    }
}

impl ProductCouponSim {
    fn handle_stores(&self, req: &SimRequest, partner: bool, stock_id: &str) -> Reply {
        let brand = req.query_param("brand_id");
        if let Some(r) = self.stopped(req, partner, brand.as_deref()) {
            return r;
        }
        let st = self.lock();
        let stores = st
            .stocks
            .get(stock_id)
            .map(|s| s.stores.clone())
            .unwrap_or_default();
        drop(st);
        let size = req
            .query_param("page_size")
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(10)
            .clamp(1, 50);
        let from = req
            .query_param("page_token")
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(0);
        let page: Vec<AssociatedStore> = stores
            .iter()
            .skip(from)
            .take(size)
            .map(|s| AssociatedStore {
                store_id: s.clone(),
            })
            .collect();
        let next = (from + size < stores.len()).then(|| (from + size).to_string());
        let body = AssociatedStores {
            store_list: page,
            next_page_token: next,
        };
        self.respond(
            StatusCode::OK,
            serde_json::to_string(&body).unwrap_or_default(),
            None,
        )
    }
}

/// `(partner, stock_id)` of a stock's associated-stores path.
fn stores_route(path: &str) -> Option<(bool, &str)> {
    let (partner, rest) =
        if let Some(r) = path.strip_prefix("/brand/marketing/product-coupon/product-coupons/") {
            (false, r)
        } else {
            (
                true,
                path.strip_prefix("/v3/marketing/partner/product-coupon/product-coupons/")?,
            )
        };
    let mut parts = rest.split('/');
    let _product_coupon_id = parts.next()?;
    (parts.next()? == "stocks").then_some(())?;
    let stock_id = parts.next()?;
    (parts.next()? == "associated-stores" && parts.next().is_none()).then_some((partner, stock_id))
}

impl Coupon {
    fn is(&self, openid: &str, product_coupon_id: &str, stock_id: &str, appid: &str) -> bool {
        self.c.openid == openid
            && self.c.product_coupon_id == product_coupon_id
            && self.c.stock_id == stock_id
            && self.c.appid == appid
    }

    fn entity(&self, code: &str, stocks: &HashMap<String, SimStock>) -> CouponEntity {
        let c = &self.c;
        let stock = stocks.get(&c.stock_id).cloned().unwrap_or_default();
        CouponEntity {
            stock: Some(StockInfo {
                store_scope: Some(stock.store_scope),
                single_usage_rule: Some(SingleUsageRule {
                    normal_coupon: stock.value.map(|v| NormalCouponRule {
                        threshold: Some(0),
                        discount_amount: Some(v),
                    }),
                }),
            }),
            coupon_code: code.to_string(),
            coupon_state: c.state.clone(),
            valid_begin_time: Some(c.valid_begin_time.clone()),
            valid_end_time: Some(c.valid_end_time.clone()),
            single_usage_detail: self.usage.clone(),
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
}

/// `(partner, openid, code, action)` of a product coupon path; the action is empty for the
/// coupon itself (a query).
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
    let action = parts.next().unwrap_or("");
    parts
        .next()
        .is_none()
        .then_some((partner, openid, code, action))
}

impl Handler for ProductCouponSim {
    fn handle(&self, req: SimRequest) -> Reply {
        let path = req.path.clone();
        if req.method == Method::GET
            && let Some((partner, stock_id)) = stores_route(&path)
        {
            return self.handle_stores(&req, partner, stock_id);
        }
        match (req.method.clone(), route(&path)) {
            (Method::POST, Some((partner, openid, code, "confirm"))) => {
                self.handle_confirm(&req, partner, openid, code)
            }
            (Method::POST, Some((partner, openid, code, "use"))) => {
                self.handle_use(&req, partner, openid, code)
            }
            (Method::POST, Some((partner, openid, code, "return"))) => {
                self.handle_return(&req, partner, openid, code)
            }
            (Method::GET, Some((partner, openid, code, ""))) => {
                self.handle_query(&req, partner, openid, code)
            }
            _ => self.respond(
                StatusCode::NOT_FOUND,
                json!({ "code": "NOT_FOUND", "message": "no such path" }).to_string(),
                None,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::pay::generate_key;
    use crate::wechatpay::pay::{PayAnswer, PayApi, PayApiParts, ProductCouponPath};
    use crate::wechatpay::pay_sign::{RequestAuth, Verifier};

    const KEY_ID: &str = "PUB_KEY_ID_0114232134912410000000000000";

    fn coupon() -> SimProductCoupon {
        SimProductCoupon {
            openid: "oUser0001".into(),
            product_coupon_id: "1000000013".into(),
            stock_id: "1000000013001".into(),
            appid: "wx_appid".into(),
            state: "CONFIRMING".into(),
            confirm_request_no: None,
            title: "拿铁兑换券".into(),
            usage_mode: "SINGLE".into(),
            valid_begin_time: "2020-01-01T00:00:00+08:00".into(),
            valid_end_time: "2099-12-31T23:59:59+08:00".into(),
        }
    }

    /// The whole life of a coupon through the daemon's own client, brand mode: each
    /// answer as WeChat Pay documents it, refusals named by their `Request-ID` code.
    #[tokio::test]
    async fn a_coupon_confirmed_used_replayed_refused_returned_and_queried() {
        let (_, brand_der) = generate_key().expect("brand key");
        let (wechat, wechat_der) = generate_key().expect("WeChat Pay's key");
        let sim = ProductCouponSim::new(
            BrandIdentity {
                brand_id: "120344".into(),
                brand_serial: "5157F09EFDC096DE".into(),
                partner_mchid: "1900000109".into(),
                public_key_id: KEY_ID.into(),
            },
            Signer::from_pkcs8_der(&brand_der)
                .and_then(|s| s.public_spki_der())
                .expect("spki"),
            wechat,
        );
        let server = sim.start().await.expect("sim");
        let mut verifier = Verifier::default();
        verifier.add(
            KEY_ID,
            Signer::from_pkcs8_der(&wechat_der)
                .and_then(|s| s.public_spki_der())
                .expect("spki"),
        );
        let api = PayApi::new(PayApiParts {
            http: reqwest::Client::new(),
            appid: "wx_appid".into(),
            auth: RequestAuth {
                caller: Caller::Brand("120344".into()),
                serial_no: "5157F09EFDC096DE".into(),
                signer: Signer::from_pkcs8_der(&brand_der).expect("signer"),
            },
            verifier,
            public_key_id: Some(KEY_ID.into()),
            primary: server.url(),
            backup: server.url(),
            clock: Arc::new(crate::clock::SystemClock),
        });
        sim.issue("PC01", coupon());
        let path = ProductCouponPath {
            partner: false,
            openid: "oUser0001".into(),
            coupon_code: "PC01".into(),
        };
        let use_req = |no: &str| ProductCouponUseRequest {
            brand_id: None,
            product_coupon_id: "1000000013".into(),
            stock_id: "1000000013001".into(),
            appid: "wx_appid".into(),
            use_time: now_rfc3339(),
            out_request_no: no.into(),
            store_id: Some("S001".into()),
            associated_order_info: Some(AssociatedOrder {
                transaction_id: Some("4200000000123456789123456789".into()),
                ..AssociatedOrder::default()
            }),
        };
        let refused = |a: PayAnswer<CouponEntity>| match a {
            PayAnswer::Refused { errcode, .. } => errcode,
            other => panic!("not refused: {other:?}"),
        };
        let state = |a: PayAnswer<CouponEntity>| match a {
            PayAnswer::Used { reply, .. } => reply.coupon_state,
            other => panic!("not answered: {other:?}"),
        };

        // Not confirmed yet: not usable.
        assert_eq!(
            refused(api.use_product_coupon(&path, &use_req("U1")).await),
            Some(268578367)
        );
        let confirm = ConfirmRequest {
            brand_id: None,
            product_coupon_id: "1000000013".into(),
            stock_id: "1000000013001".into(),
            appid: "wx_appid".into(),
            out_request_no: "CF01".into(),
        };
        assert_eq!(
            state(api.confirm_product_coupon(&path, &confirm).await),
            "EFFECTIVE"
        );
        // A 5xx changes nothing; the same request then uses it, once, however often.
        sim.fail_next(1);
        assert!(matches!(
            api.use_product_coupon(&path, &use_req("U1")).await,
            PayAnswer::Retry { status: 500, .. }
        ));
        assert_eq!(sim.used_count("PC01"), 0);
        for _ in 0..3 {
            assert_eq!(
                state(api.use_product_coupon(&path, &use_req("U1")).await),
                "USED"
            );
        }
        assert_eq!(sim.used_count("PC01"), 1);
        let used = &sim.uses()[0];
        assert_eq!(used.store_id.as_deref(), Some("S001"));
        assert!(
            used.order
                .as_ref()
                .is_some_and(|o| o.transaction_id.is_some())
        );
        // Another request number on a used coupon: used by another order.
        assert_eq!(
            refused(api.use_product_coupon(&path, &use_req("U2")).await),
            Some(272756745)
        );
        assert_eq!(sim.calls().use_of_used, 1);
        // Given back once, however often asked; then usable again.
        let ret = ProductCouponReturnRequest {
            brand_id: None,
            product_coupon_id: "1000000013".into(),
            stock_id: "1000000013001".into(),
            appid: "wx_appid".into(),
            out_request_no: "RT01".into(),
        };
        for _ in 0..2 {
            assert_eq!(
                state(api.return_product_coupon(&path, &ret).await),
                "EFFECTIVE"
            );
        }
        assert_eq!(sim.returns().len(), 1);
        let queried = api
            .query_product_coupon(&path, "1000000013", "1000000013001", None)
            .await;
        assert_eq!(state(queried), "EFFECTIVE");
        // A use whose answer is lost is committed: its retry is the same use.
        sim.update_faults(|f| f.drop_after_commit = 1);
        assert!(matches!(
            api.use_product_coupon(&path, &use_req("U3")).await,
            PayAnswer::Unknown { .. }
        ));
        assert_eq!(
            state(api.use_product_coupon(&path, &use_req("U3")).await),
            "USED"
        );
        assert_eq!(sim.used_count("PC01"), 2, "the first use and this one");
        // Unknown coupons and foreign codes.
        let other = ProductCouponPath {
            coupon_code: "NOPE".into(),
            ..path.clone()
        };
        assert_eq!(
            refused(api.use_product_coupon(&other, &use_req("U4")).await),
            Some(268578851)
        );
    }
}
