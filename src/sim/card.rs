//! A simulated Official Account card API: `cgi-bin/stable_token`, `cgi-bin/token`,
//! `card/code/get`, `card/code/consume`, `card/code/decrypt`, `card/get` and
//! `cgi-bin/openapi/quota/get`.
//!
//! It keeps a ledger of consumed codes — the ground truth the tests count — and counts every
//! call, so a test can prove a code was consumed exactly once and never consumed twice.

use super::http::{Handler, Reply, SimRequest, SimServer};
use hyper::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A card code the simulator knows.
#[derive(Debug, Clone)]
pub struct SimCode {
    pub card_id: String,
    /// `NORMAL`, `CONSUMED`, `EXPIRE`, `GIFTING`, `GIFT_TIMEOUT`, `DELETE`, `UNAVAILABLE`.
    pub status: String,
    /// Custom-code cards need `card_id` in every call.
    pub custom_code: bool,
    /// Valid time window, unix seconds.
    pub begin_time: i64,
    pub end_time: i64,
}

impl SimCode {
    pub fn normal(card_id: &str) -> Self {
        Self {
            card_id: card_id.into(),
            status: "NORMAL".into(),
            custom_code: false,
            begin_time: 0,
            end_time: i64::MAX / 2,
        }
    }

    pub fn with_status(card_id: &str, status: &str) -> Self {
        Self {
            status: status.into(),
            ..Self::normal(card_id)
        }
    }
}

/// One successful consume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumption {
    pub code: String,
    pub card_id: String,
}

/// How many calls each endpoint received (after the server was reached).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CardCalls {
    pub stable_token: u32,
    pub token: u32,
    pub get: u32,
    pub consume: u32,
    /// Consume calls for a code that was already consumed: a double redemption attempt.
    pub consume_of_consumed: u32,
    pub decrypt: u32,
    /// `card/get` calls.
    pub card_get: u32,
    /// Consume calls for a code of a MEMBER_CARD: what redeemd must never send.
    pub consume_of_member_card: u32,
    pub quota_get: u32,
    /// Calls refused with 45011 by `CardFaults::rate_limit`.
    pub rate_limited: u32,
}

/// Calls that named one code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CodeCalls {
    pub get: u32,
    pub consume: u32,
}

/// Faults to inject. Counters apply to the next N card calls (get/consume/decrypt).
#[derive(Debug, Clone, Default)]
pub struct CardFaults {
    /// Answer errcode -1 (system busy).
    pub busy: u32,
    /// Answer errcode 45009 (quota).
    pub quota: u32,
    /// Answer errcode 45011 (frequency).
    pub frequency: u32,
    /// Commit the next N consumes, then drop the connection without answering.
    pub drop_after_consume: u32,
    /// Every consume commits and then its answer is lost, until switched off.
    pub always_drop_after_consume: bool,
    /// Answer every card call this much later (after any state change).
    pub latency: Duration,
    /// Answer consumes this much later still (the consume has already committed).
    pub consume_latency: Duration,
    /// Hold consumes' answers (the consume has already committed) until this opens.
    pub consume_gate: Option<crate::sim::http::Gate>,
    /// Token endpoints answer 40164 (caller IP not whitelisted).
    pub ip_blocked: bool,
    /// Answer card calls with a body that is not JSON (a proxy's error page).
    pub garbage: u32,
    /// At most this many card calls (code/get, consume, card/get, decrypt) in any sliding
    /// second, refused calls counted; beyond it, errcode 45011 (the limit the daemon is
    /// never told).
    pub rate_limit: Option<u32>,
    /// The daily quota: after this many card calls (get/consume/card/get) every one answers
    /// 45009 until [`CardSim::reset_daily_quota`] (WeChat's midnight).
    pub daily_quota: Option<u32>,
    /// `card/get` answers -1 (system busy): the card's type cannot be learnt.
    pub card_get_down: bool,
}

#[derive(Debug)]
struct State {
    appid: String,
    secret: String,
    codes: HashMap<String, SimCode>,
    /// encrypt_code → code.
    encrypted: HashMap<String, String>,
    valid_tokens: HashSet<String>,
    stable: Option<String>,
    minted: u64,
    consumed: Vec<Consumption>,
    calls: CardCalls,
    per_code: HashMap<String, CodeCalls>,
    faults: CardFaults,
    /// When recent card calls were let through, for `rate_limit`.
    window: std::collections::VecDeque<std::time::Instant>,
    /// card_id → the `card` object `card/get` answers with.
    cards: HashMap<String, serde_json::Value>,
    /// Card calls counted against `daily_quota` since the last reset.
    used_today: u32,
}

pub struct CardSim {
    state: Mutex<State>,
}

#[derive(Deserialize)]
struct StableTokenBody {
    #[serde(default)]
    grant_type: String,
    #[serde(default)]
    appid: String,
    #[serde(default)]
    secret: String,
    #[serde(default)]
    force_refresh: bool,
}

#[derive(Deserialize)]
struct CodeBody {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    card_id: Option<String>,
    #[serde(default)]
    check_consume: Option<bool>,
    #[serde(default)]
    encrypt_code: Option<String>,
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl CardSim {
    pub fn new(appid: &str, secret: &str) -> Arc<CardSim> {
        Arc::new(CardSim {
            state: Mutex::new(State {
                appid: appid.into(),
                secret: secret.into(),
                codes: HashMap::new(),
                encrypted: HashMap::new(),
                valid_tokens: HashSet::new(),
                stable: None,
                minted: 0,
                consumed: Vec::new(),
                calls: CardCalls::default(),
                per_code: HashMap::new(),
                window: std::collections::VecDeque::new(),
                faults: CardFaults::default(),
                cards: HashMap::new(),
                used_today: 0,
            }),
        })
    }

    pub async fn start(self: &Arc<Self>) -> std::io::Result<SimServer> {
        SimServer::start(self.clone()).await
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn add_code(&self, code: &str, c: SimCode) {
        self.lock().codes.insert(code.into(), c);
    }

    /// Describes a card for `card/get`: `card_type` and the type's object (`base_info.title`,
    /// `reduce_cost`, ...), e.g. `SimCard::cash("满100减10", 1000, 10000)`. A card nobody
    /// described answers as a GENERAL_COUPON titled after its id.
    pub fn add_card(&self, card_id: &str, card: SimCard) {
        self.lock().cards.insert(card_id.into(), card.0);
    }

    /// WeChat's midnight: the daily quota starts over.
    pub fn reset_daily_quota(&self) {
        self.lock().used_today = 0;
    }

    /// The `encrypt_code` a card's outbound link would carry for `code`.
    pub fn encrypt(&self, code: &str) -> String {
        let enc: String = code.bytes().map(|b| format!("{b:02x}")).collect();
        let enc = format!("ENC{enc}");
        self.lock().encrypted.insert(enc.clone(), code.into());
        enc
    }

    pub fn status_of(&self, code: &str) -> Option<String> {
        self.lock().codes.get(code).map(|c| c.status.clone())
    }

    /// How many times `code` was successfully consumed.
    pub fn consumed_count(&self, code: &str) -> usize {
        self.lock()
            .consumed
            .iter()
            .filter(|c| c.code == code)
            .count()
    }

    pub fn consumed(&self) -> Vec<Consumption> {
        self.lock().consumed.clone()
    }

    pub fn calls(&self) -> CardCalls {
        self.lock().calls.clone()
    }

    /// The get and consume calls that reached the simulator for `code`.
    pub fn calls_for(&self, code: &str) -> CodeCalls {
        self.lock().per_code.get(code).copied().unwrap_or_default()
    }

    pub fn faults(&self) -> CardFaults {
        self.lock().faults.clone()
    }

    pub fn set_faults(&self, f: CardFaults) {
        self.lock().faults = f;
    }

    /// Changes the faults in place: `sim.update_faults(|f| f.busy = 3)`.
    pub fn update_faults(&self, f: impl FnOnce(&mut CardFaults)) {
        f(&mut self.lock().faults);
    }

    /// Invalidates every token issued so far (as a `force_refresh` elsewhere would).
    pub fn revoke_tokens(&self) {
        let mut st = self.lock();
        st.valid_tokens.clear();
        st.stable = None;
    }

    pub fn set_secret(&self, secret: &str) {
        self.lock().secret = secret.into();
    }

    fn mint(st: &mut State) -> String {
        st.minted += 1;
        let t = format!("SIM_ACCESS_TOKEN_{}_{:016x}", st.minted, fastrand::u64(..));
        st.valid_tokens.insert(t.clone());
        t
    }

    fn token_reply(st: &mut State, appid: &str, secret: &str) -> Result<(), (i64, &'static str)> {
        if st.faults.ip_blocked {
            return Err((40164, "invalid ip, not in whitelist"));
        }
        if appid != st.appid {
            return Err((40013, "invalid appid"));
        }
        if secret != st.secret {
            return Err((40125, "invalid appsecret"));
        }
        Ok(())
    }

    fn handle_stable_token(&self, req: &SimRequest) -> serde_json::Value {
        let mut st = self.lock();
        st.calls.stable_token += 1;
        let Ok(body) = serde_json::from_slice::<StableTokenBody>(&req.body) else {
            return err(47001, "data format error");
        };
        if body.grant_type != "client_credential" {
            return err(40002, "invalid grant_type");
        }
        if let Err((c, m)) = Self::token_reply(&mut st, &body.appid, &body.secret) {
            return err(c, m);
        }
        let token = match (&st.stable, body.force_refresh) {
            (Some(t), false) if st.valid_tokens.contains(t) => t.clone(),
            _ => {
                let t = Self::mint(&mut st);
                st.stable = Some(t.clone());
                t
            }
        };
        json!({"access_token": token, "expires_in": 7200})
    }

    fn handle_token(&self, req: &SimRequest) -> serde_json::Value {
        let mut st = self.lock();
        st.calls.token += 1;
        let appid = req.query_param("appid").unwrap_or_default();
        let secret = req.query_param("secret").unwrap_or_default();
        if let Err((c, m)) = Self::token_reply(&mut st, &appid, &secret) {
            return err(c, m);
        }
        let t = Self::mint(&mut st);
        json!({"access_token": t, "expires_in": 7200})
    }

    /// `card/get`: the card object for a card_id.
    fn handle_card_get(&self, req: &SimRequest) -> Reply {
        let mut st = self.lock();
        st.calls.card_get += 1;
        let delay = st.faults.latency;
        if let Some(refusal) = Self::gatekeep(&mut st, req) {
            return answer(refusal, delay);
        }
        if st.faults.card_get_down {
            return answer(err(-1, "system error"), delay);
        }
        #[derive(Deserialize)]
        struct Body {
            card_id: String,
        }
        let Ok(body) = serde_json::from_slice::<Body>(&req.body) else {
            return answer(err(47001, "data format error"), delay);
        };
        let known = st.codes.values().any(|c| c.card_id == body.card_id);
        let card = match st.cards.get(&body.card_id) {
            Some(c) => c.clone(),
            None if known => SimCard::general(&format!("优惠券 {}", body.card_id)).0,
            None => return answer(err(40056, "invalid card id"), delay),
        };
        answer(json!({"errcode": 0, "errmsg": "ok", "card": card}), delay)
    }

    /// `cgi-bin/openapi/quota/get`: a path's daily limit and use.
    fn handle_quota_get(&self, req: &SimRequest) -> Reply {
        let mut st = self.lock();
        st.calls.quota_get += 1;
        let token = req.query_param("access_token").unwrap_or_default();
        if !st.valid_tokens.contains(&token) {
            return answer(err(40001, "invalid credential"), Duration::ZERO);
        }
        #[derive(Deserialize)]
        struct Body {
            cgi_path: String,
        }
        let Ok(body) = serde_json::from_slice::<Body>(&req.body) else {
            return answer(err(47001, "data format error"), Duration::ZERO);
        };
        if !body.cgi_path.starts_with("/card/") {
            return answer(err(76021, "cgi_path not found"), Duration::ZERO);
        }
        let limit = st.faults.daily_quota.unwrap_or(1_000_000);
        let used = st.used_today.min(limit);
        answer(
            json!({"errcode": 0, "errmsg": "ok",
                   "quota": {"daily_limit": limit, "used": used, "remain": limit - used}}),
            Duration::ZERO,
        )
    }

    /// The checks every card call passes first: token, garbage, rate limit, injected
    /// errcodes and the daily quota. `Some`: the answer instead.
    fn gatekeep(st: &mut State, req: &SimRequest) -> Option<serde_json::Value> {
        let token = req.query_param("access_token").unwrap_or_default();
        if !st.valid_tokens.contains(&token) {
            return Some(err(
                40001,
                "invalid credential, access_token is invalid or not latest",
            ));
        }
        if let Some(limit) = st.faults.rate_limit {
            // A sliding one-second window over every card call (card/get too), refused ones
            // included: a client that keeps knocking above the limit stays refused. The
            // strictest reading of WeChat's frequency limit, and stricter than a window
            // that forgets refused calls.
            let now = std::time::Instant::now();
            while st
                .window
                .front()
                .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
            {
                st.window.pop_front();
            }
            st.window.push_back(now);
            if st.window.len() > limit as usize {
                st.calls.rate_limited += 1;
                return Some(err(45011, "api minute-quota reach limit"));
            }
        }
        if let Some(limit) = st.faults.daily_quota {
            if st.used_today >= limit {
                return Some(err(45009, "reach max api daily quota limit"));
            }
            st.used_today += 1;
        }
        None
    }

    fn handle_code(&self, verb: &str, req: &SimRequest) -> Reply {
        let mut st = self.lock();
        let delay = st.faults.latency
            + if verb == "consume" {
                st.faults.consume_latency
            } else {
                Duration::ZERO
            };
        match verb {
            "get" => st.calls.get += 1,
            "consume" => st.calls.consume += 1,
            _ => st.calls.decrypt += 1,
        }
        if let Some(refusal) = Self::gatekeep(&mut st, req) {
            return answer(refusal, delay);
        }
        if st.faults.garbage > 0 {
            st.faults.garbage -= 1;
            return Reply::bytes(
                StatusCode::BAD_GATEWAY,
                "<html><body>502 Bad Gateway</body></html>".into(),
                Vec::new(),
                delay,
            );
        }
        let faults = &mut st.faults;
        for (counter, code, msg) in [
            (&mut faults.busy, -1, "system error"),
            (&mut faults.quota, 45009, "reach max api daily quota limit"),
            (&mut faults.frequency, 45011, "api minute-quota reach limit"),
        ] {
            if *counter > 0 {
                *counter -= 1;
                return answer(err(code, msg), delay);
            }
        }
        let Ok(body) = serde_json::from_slice::<CodeBody>(&req.body) else {
            return answer(err(47001, "data format error"), delay);
        };
        if verb == "decrypt" {
            let enc = body.encrypt_code.unwrap_or_default();
            return answer(
                match st.encrypted.get(&enc) {
                    Some(code) => json!({"errcode": 0, "errmsg": "ok", "code": code}),
                    None => err(40075, "invalid encrypt code"),
                },
                delay,
            );
        }
        let code = body.code.unwrap_or_default();
        let per_code = st.per_code.entry(code.clone()).or_default();
        if verb == "get" {
            per_code.get += 1;
        } else {
            per_code.consume += 1;
        }
        let Some(card) = st.codes.get(&code).cloned() else {
            return answer(err(40056, "invalid serial code"), delay);
        };
        let card_id_ok = match &body.card_id {
            Some(id) => *id == card.card_id,
            None => !card.custom_code,
        };
        if !card_id_ok {
            return answer(err(40056, "invalid serial code"), delay);
        }
        if verb == "get" {
            let check = body.check_consume.unwrap_or(true);
            let usable = card.status == "NORMAL";
            if check && card.status == "CONSUMED" {
                return answer(err(40099, "invalid code, this code has consumed."), delay);
            }
            if check && !usable {
                return answer(err(40127, "invalid user-card status"), delay);
            }
            return answer(
                json!({
                    "errcode": 0, "errmsg": "ok", "openid": "o_sim_openid",
                    "card": {"card_id": card.card_id, "begin_time": card.begin_time, "end_time": card.end_time},
                    "can_consume": usable, "user_card_status": card.status,
                }),
                delay,
            );
        }
        // consume
        let member = st
            .cards
            .get(&card.card_id)
            .and_then(|c| c.get("card_type"))
            .and_then(serde_json::Value::as_str)
            == Some("MEMBER_CARD");
        if member {
            st.calls.consume_of_member_card += 1;
        }
        if card.status == "CONSUMED" {
            st.calls.consume_of_consumed += 1;
            return answer(err(40099, "invalid code, this code has consumed."), delay);
        }
        if card.status != "NORMAL" {
            return answer(err(40127, "invalid user-card status"), delay);
        }
        let now = now_s();
        if now < card.begin_time || now > card.end_time {
            return answer(err(40079, "invalid time"), delay);
        }
        if let Some(c) = st.codes.get_mut(&code) {
            c.status = "CONSUMED".into();
        }
        st.consumed.push(Consumption {
            code,
            card_id: card.card_id.clone(),
        });
        if st.faults.always_drop_after_consume {
            return Reply::Drop;
        }
        if st.faults.drop_after_consume > 0 {
            st.faults.drop_after_consume -= 1;
            return Reply::Drop;
        }
        answer(
            json!({"errcode": 0, "errmsg": "ok", "card": {"card_id": card.card_id}, "openid": "o_sim_openid"}),
            delay,
        )
    }
}

/// A card as `card/get` describes it.
#[derive(Debug, Clone)]
pub struct SimCard(serde_json::Value);

impl SimCard {
    fn of(kind: &str, title: &str, extra: serde_json::Value) -> SimCard {
        let mut body = json!({"base_info": {"title": title, "brand_name": "redeemd 模拟商户",
            "date_info": {"type": "DATE_TYPE_FIX_TIME_RANGE", "begin_timestamp": 0, "end_timestamp": 4_102_444_800_i64}}});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        SimCard(json!({"card_type": kind, kind.to_ascii_lowercase(): body}))
    }

    /// 代金券: `reduce_cost` off a sale of at least `least_cost` (fen).
    pub fn cash(title: &str, reduce_cost: i64, least_cost: i64) -> SimCard {
        Self::of(
            "CASH",
            title,
            json!({"reduce_cost": reduce_cost, "least_cost": least_cost}),
        )
    }

    pub fn groupon(title: &str, deal_detail: &str) -> SimCard {
        Self::of("GROUPON", title, json!({"deal_detail": deal_detail}))
    }

    pub fn discount(title: &str, percent_off: i64) -> SimCard {
        Self::of("DISCOUNT", title, json!({"discount": percent_off}))
    }

    pub fn general(title: &str) -> SimCard {
        Self::of(
            "GENERAL_COUPON",
            title,
            json!({"default_detail": "通用优惠"}),
        )
    }

    pub fn member(title: &str) -> SimCard {
        Self::of(
            "MEMBER_CARD",
            title,
            json!({"prerogative": "会员折扣", "supply_bonus": true}),
        )
    }
}

fn err(code: i64, msg: &str) -> serde_json::Value {
    // Live errmsg strings carry a hint and request id: clients must not match on text.
    json!({"errcode": code, "errmsg": format!("{msg} hint: [sim{:04}] rid: sim-{:08x}", fastrand::u16(..), fastrand::u32(..))})
}

fn answer(body: serde_json::Value, delay: Duration) -> Reply {
    Reply::json(StatusCode::OK, &body, delay)
}

impl Handler for CardSim {
    fn handle(&self, req: SimRequest) -> Reply {
        match (&req.method, req.path.as_str()) {
            (&Method::POST, "/cgi-bin/stable_token") => {
                answer(self.handle_stable_token(&req), Duration::ZERO)
            }
            (&Method::GET, "/cgi-bin/token") => answer(self.handle_token(&req), Duration::ZERO),
            (&Method::POST, "/card/code/get") => self.handle_code("get", &req),
            (&Method::POST, "/card/code/consume") => {
                let gate = self.lock().faults.consume_gate.clone();
                self.handle_code("consume", &req).gated(gate)
            }
            (&Method::POST, "/card/code/decrypt") => self.handle_code("decrypt", &req),
            (&Method::POST, "/card/get") => self.handle_card_get(&req),
            (&Method::POST, "/cgi-bin/openapi/quota/get") => self.handle_quota_get(&req),
            _ => Reply::json(
                StatusCode::NOT_FOUND,
                &json!({"errcode": 404, "errmsg": "not found"}),
                Duration::ZERO,
            ),
        }
    }
}
