//! Product coupons (商品券) at the till, with real processes: HQ's hub and the store's leaf
//! `nats-server`, `redeemd fleet` registering coupons from WeChat Pay's notifications, two
//! tills of the store, and the product-coupon simulator (signed both ways, keeping a ledger
//! of uses and returns). A coupon is held at exactly one till, used once with its sale's
//! WeChat Pay order and never before it, through lost answers, 5xx, outages and `kill -9`.

mod support;

use redeemd::sim::http::SimServer;
use redeemd::sim::product_coupon::{ProductCouponSim, SimProductCoupon, SimStock};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use support::*;

const STOCK: &str = "1000000013001";

/// The chain, HQ, the simulator, and the brand's and WeChat Pay's keys.
struct World {
    chain: Chain,
    rt: tokio::runtime::Runtime,
    keys: Keys,
    sim: Arc<ProductCouponSim>,
    server: SimServer,
    fleet: Daemon,
    notifier: redeemd::sim::notifier::Notifier,
}

impl World {
    fn start() -> World {
        let chain = Chain::start(&["storeA"], true);
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let keys = Keys::new();
        let sim = keys.product_coupon_sim();
        sim.set_stock(
            STOCK,
            SimStock {
                value: Some(3200),
                ..SimStock::default()
            },
        );
        let server = rt.block_on(sim.start()).expect("the simulator");
        let fleet = keys
            .fleet(
                &chain.hub.url(),
                &["storeA"],
                "127.0.0.1:0",
                &server.url(),
                BRAND,
            )
            .start(false);
        let notifier = wechatpay_notifier(&keys.wechatpay, APIV3_KEY, &notify_url(&fleet));
        World {
            chain,
            rt,
            keys,
            sim,
            server,
            fleet,
            notifier,
        }
    }

    /// Issues `codes` through WeChat Pay's notifications and waits until the store's copy
    /// of the registry holds each as usable.
    fn issue(&self, codes: &[String]) {
        for code in codes {
            self.sim.issue(
                code,
                SimProductCoupon {
                    openid: "oUser0001".into(),
                    product_coupon_id: "1000000013".into(),
                    stock_id: STOCK.into(),
                    appid: PAY_APPID.into(),
                    state: "CONFIRMING".into(),
                    confirm_request_no: None,
                    title: "拿铁兑换券".into(),
                    usage_mode: "SINGLE".into(),
                    valid_begin_time: "2026-01-01T00:00:00+08:00".into(),
                    valid_end_time: "2099-12-31T23:59:59+08:00".into(),
                },
            );
            let mut resource = send_resource(code);
            resource["valid_begin_time"] = json!("2026-01-01T00:00:00+08:00");
            resource["valid_end_time"] = json!("2099-12-31T23:59:59+08:00");
            let body = self
                .notifier
                .body(&format!("EV-SEND-{code}"), "PRODUCT_COUPON.SEND", &resource)
                .expect("body");
            assert!(
                self.rt
                    .block_on(self.notifier.deliver(body, &[]))
                    .delivered()
            );
        }
        let leaf = self.chain.leaf_url("storeA");
        for code in codes {
            wait_for(&format!("{code} usable in the store's mirror"), || {
                registered(&self.rt, &leaf, code).is_some_and(|e| e["state"] == "EFFECTIVE")
            });
        }
    }

    /// A till of storeA that holds product coupons (`PC` and 8 digits) with the brand's key,
    /// signing as the brand (`mode = "brand"`).
    fn till(&self, name: &'static str, route_toml: &str) -> Till {
        self.till_as(name, "brand", route_toml)
    }

    /// [`World::till`] in `mode` (`"brand"`, or `"partner"`: the service provider's paths,
    /// signed as its mchid, the brand named in each body).
    fn till_as(&self, name: &'static str, mode: &str, route_toml: &str) -> Till {
        let url = self.server.url();
        let leaf = self.chain.leaf_url("storeA");
        let till = Till::new(Setup {
            till_name: name,
            extra_toml: format!(
                "[store]\nname = \"storeA\"\nnats_url = \"{leaf}\"\ncode_key_file = \"code.key\"\n\
                 claim_timeout = \"300ms\"\n\n[wechat_pay]\nmchid = \"{MCHID}\"\nappid = \"{PAY_APPID}\"\n\
                 serial_no = \"{MERCHANT_SERIAL}\"\nprivate_key_file = \"brand_key.pem\"\n\
                 public_key_id = \"{WECHATPAY_KEY_ID}\"\npublic_key_file = \"pub_key.pem\"\n\
                 base_url = \"{url}\"\nbackup_url = \"{url}\"\nrequest_timeout = \"2s\"\n\
                 mode = \"{mode}\"\nbrand_id = \"120344\"\nstore_id = \"S001\"\n\n\
                 [[route]]\npattern = \"PC[0-9]{{8}}\"\napi = \"product_coupon\"\n{route_toml}\n"
            ),
            ..Setup::default()
        });
        let dir = till.dir.path();
        private(&dir.join("code.key"), CODE_KEY.as_bytes());
        private(
            &dir.join("brand_key.pem"),
            redeemd::sim::pay::pem("PRIVATE KEY", &self.keys.brand).as_bytes(),
        );
        std::fs::write(
            dir.join("pub_key.pem"),
            redeemd::sim::pay::pem("PUBLIC KEY", &Keys::public(&self.keys.wechatpay)),
        )
        .expect("WeChat Pay's public key");
        till
    }

    fn set_wechat_down(&self, down: bool) {
        self.rt
            .block_on(self.server.set_down(down))
            .expect("simulator up or down");
    }
}

fn pc_codes(first: u32, n: u32) -> Vec<String> {
    (first..first + n).map(|i| format!("PC{i:08}")).collect()
}

fn scan(till: &Daemon, code: &str) -> Value {
    post_json(&till.http_url(), "/v1/scans", &json!({ "code": code })).json()
}

fn order(till: &Daemon, id: &Value, body: &Value) -> HttpResponse {
    post_json(
        &till.http_url(),
        &format!("/v1/redemptions/{id}/order"),
        body,
    )
}

fn paid(i: usize) -> Value {
    if i % 2 == 0 {
        json!({ "transaction_id": format!("42000000002026120500{i:08}") })
    } else {
        json!({ "out_trade_no": format!("SALE-{i:06}"), "mchid": MCHID, "order_id": format!("POS-{i}") })
    }
}

/// 100 coupons scanned at two tills at once (one signing as the brand, the other as its
/// service provider): each held at exactly one (the other answers duplicate), nothing sent
/// before its order; with their orders each used exactly once, with that order and the
/// store; a void after the use gives it back once.
#[test]
fn each_coupon_is_held_at_one_till_and_used_once_with_its_order() {
    let w = World::start();
    let codes = pc_codes(1, 100);
    w.issue(&codes);
    let (a1, a2) = (w.till("a1", ""), w.till_as("a2", "partner", ""));
    let (d1, d2) = (a1.start(), a2.start());
    let (o1, o2) = std::thread::scope(|s| {
        let one = s.spawn(|| codes.iter().map(|c| scan(&d1, c)).collect::<Vec<_>>());
        let two = s.spawn(|| codes.iter().rev().map(|c| scan(&d2, c)).collect::<Vec<_>>());
        (
            one.join().expect("till a1"),
            two.join()
                .expect("till a2")
                .into_iter()
                .rev()
                .collect::<Vec<_>>(),
        )
    });
    let mut holder: HashMap<&str, (&Daemon, Value)> = HashMap::new();
    for (i, code) in codes.iter().enumerate() {
        let (x, y) = (&o1[i], &o2[i]);
        let outcomes = [x["outcome"].as_str(), y["outcome"].as_str()];
        let held = outcomes.iter().filter(|o| **o == Some("held")).count();
        assert_eq!(held, 1, "{code}: held at exactly one till: {x} / {y}");
        assert!(outcomes.contains(&Some("duplicate")), "{x} / {y}");
        let (till, answer) = if x["outcome"] == "held" {
            (&d1, x)
        } else {
            (&d2, y)
        };
        assert_eq!(answer["title"], "拿铁兑换券", "{answer}");
        assert_eq!(answer["value"], 3200, "{answer}");
        assert_eq!(answer["api"], "product_coupon", "{answer}");
        holder.insert(code, (till, answer["id"].clone()));
    }
    let at_partner = o2.iter().filter(|o| o["outcome"] == "held").count();
    assert!(
        (1..100).contains(&at_partner),
        "both tills hold some: {at_partner} at the service provider's"
    );
    assert_eq!(
        w.sim.calls().use_calls,
        0,
        "nothing is sent before its order"
    );
    let hq = w.fleet.http_url();
    wait_for("HQ shows the 100 held coupons", || {
        fleet_rows_in(&hq, "held").len() == 100
    });

    for (i, code) in codes.iter().enumerate() {
        let (till, id) = &holder[code.as_str()];
        let r = order(till, id, &paid(i));
        assert_eq!(r.status, 200, "{}", r.body);
        let body = r.json();
        assert_eq!(body["outcome"], "redeemed", "{body}");
        assert_eq!(body["state"], "redeemed", "{body}");
        // The POS retrying the same order changes nothing.
        if i < 3 {
            let again = order(till, id, &paid(i));
            assert_eq!(again.json()["state"], "redeemed", "{}", again.body);
            let other = order(till, id, &paid(i + 1));
            assert_eq!(other.status, 409, "another order: {}", other.body);
        }
    }
    let uses = w.sim.uses();
    assert_eq!(uses.len(), 100, "one use each");
    for (i, code) in codes.iter().enumerate() {
        assert_eq!(w.sim.used_count(code), 1, "{code}");
        let u = uses
            .iter()
            .find(|u| &u.coupon_code == code)
            .expect("its use");
        assert_eq!(u.store_id.as_deref(), Some("S001"));
        let o = u.order.as_ref().expect("its order");
        match i % 2 {
            0 => assert_eq!(
                o.transaction_id,
                paid(i)["transaction_id"].as_str().map(String::from)
            ),
            _ => {
                assert_eq!(
                    o.out_trade_no,
                    paid(i)["out_trade_no"].as_str().map(String::from)
                );
                assert_eq!(o.mchid.as_deref(), Some(MCHID));
            }
        }
    }
    assert_eq!(w.sim.calls().use_of_used, 0);
    wait_for("HQ shows them used with their orders", || {
        let rows = fleet_rows_in(&hq, "redeemed");
        rows.len() == 100
            && rows.iter().all(|r| r["api"] == "product_coupon")
            && rows
                .iter()
                .any(|r| r["transaction_id"] == paid(0)["transaction_id"])
            && rows
                .iter()
                .any(|r| r["out_trade_no"] == paid(1)["out_trade_no"])
    });

    // A void after the use gives the coupon back, once, however often it is asked.
    let (till, id) = &holder[codes[0].as_str()];
    for _ in 0..2 {
        let v = post_json(
            &till.http_url(),
            &format!("/v1/redemptions/{id}/void"),
            &json!({ "reason": "refund" }),
        );
        assert_eq!(v.json()["state"], "returned", "{}", v.body);
    }
    assert_eq!(w.sim.returns().len(), 1);
    assert_eq!(w.sim.coupon(&codes[0]).expect("coupon").state, "EFFECTIVE");
    drop((d1, d2));
}

/// The store's WAN down: held from the store's copy of the registry, the order taken and
/// the use sent once WeChat Pay answers; a coupon used elsewhere meanwhile goes to review
/// with WeChat Pay's reason, never redeemed. A till killed between held and order, and
/// between the use's commit and its answer (and after 5xx), uses each coupon once with one
/// request number. An abandoned sale's hold ends, and another till can then hold it.
#[test]
fn outages_kills_and_abandoned_sales_leave_each_coupon_used_at_most_once() {
    let mut w = World::start();
    let codes = pc_codes(201, 6);
    w.issue(&codes);
    // A coupon whose code looks like a card code: the registry says what it is.
    let card_like = "990000000001".to_string();
    w.issue(std::slice::from_ref(&card_like));
    let a1 = w.till("a1", "hold_timeout = \"5s\"\n");
    let a2 = w.till("a2", "hold_timeout = \"5s\"\n");
    let d1 = a1.start();
    let h = scan(&d1, &card_like);
    assert_eq!(h["outcome"], "held", "{h}");
    assert_eq!(h["api"], "product_coupon", "{h}");
    // A code the registry does not know is refused after online_wait, never sent.
    let unknown = scan(&d1, "PC99999999");
    assert_eq!(unknown["outcome"], "rejected", "{unknown}");
    assert_eq!(unknown["reason_code"], "not_issued", "{unknown}");

    // WAN and WeChat Pay down: held from the mirror, the orders queued.
    w.chain.hub.kill();
    w.set_wechat_down(true);
    let held: Vec<Value> = codes[..2].iter().map(|c| scan(&d1, c)).collect();
    for h in &held {
        assert_eq!(h["outcome"], "held", "{h}");
    }
    for (i, h) in held.iter().enumerate() {
        let r = order(&d1, &h["id"], &paid(i));
        assert_eq!(r.status, 202, "{}", r.body);
        assert_eq!(r.json()["outcome"], "accepted_offline", "{}", r.body);
    }
    // The second coupon is used elsewhere meanwhile.
    w.sim.use_elsewhere(&codes[1], "ELSEWHERE-1");
    w.set_wechat_down(false);
    let redeemed = d1.settled(&codes[0], "redeemed");
    assert_eq!(redeemed["api"], "product_coupon", "{redeemed}");
    let review = d1.settled(&codes[1], "review");
    assert_eq!(
        review["reason_code"], "use_refused_after_payment",
        "{review}"
    );
    assert_eq!(w.sim.used_count(&codes[0]), 1);
    assert_eq!(
        w.sim.calls().use_calls,
        2,
        "only the two uses with their orders were sent"
    );

    // Killed between held and order: still held after the restart, then used once.
    let h = scan(&d1, &codes[2]);
    assert_eq!(h["outcome"], "held", "{h}");
    d1.kill9();
    let d1 = a1.start();
    let r = order(&d1, &h["id"], &paid(2));
    assert_eq!(r.json()["outcome"], "redeemed", "{}", r.body);

    // 5xx twice, then the answer lost after WeChat Pay committed the use, then killed
    // while it is retried: one use, under the number fixed with the order.
    let h = scan(&d1, &codes[3]);
    assert_eq!(h["outcome"], "held", "{h}");
    w.sim.update_faults(|f| {
        f.server_error = 2;
        f.drop_after_commit = 1;
    });
    let r = order(&d1, &h["id"], &paid(3));
    assert!(matches!(r.status, 200 | 202), "{}", r.body);
    d1.kill9();
    let d1 = a1.start();
    wait_for("the coupon used after the restart", || {
        a1.row_state(&codes[3]).as_deref() == Some("redeemed")
    });
    let row = a1.row(&codes[3]);
    let uses: Vec<_> = w
        .sim
        .uses()
        .into_iter()
        .filter(|u| u.coupon_code == codes[3])
        .collect();
    assert_eq!(uses.len(), 1, "{uses:?}");
    assert!(
        row["attempts"].as_i64() >= Some(3),
        "two 5xx and a lost answer before the use was confirmed: {row}"
    );
    assert_eq!(
        Some(uses[0].out_request_no.as_str()),
        row["use_request_no"].as_str(),
        "{row}"
    );

    // An abandoned sale: its hold ends, its claim is released, another till holds it.
    let h = scan(&d1, &codes[4]);
    assert_eq!(h["outcome"], "held", "{h}");
    let expired = d1.settled(&codes[4], "cancelled");
    assert_eq!(expired["reason_code"], "hold_expired", "{expired}");
    let r = order(&d1, &h["id"], &paid(4));
    assert_eq!(r.status, 409, "{}", r.body);
    let leaf = w.chain.leaf_url("storeA");
    wait_for("the abandoned hold's claim released", || {
        kv_value(&w.rt, &leaf, "redeemd_claims", &codes[4])
            .is_some_and(|v| v["state"] == "released")
    });
    let d2 = a2.start();
    let again = scan(&d2, &codes[4]);
    assert_eq!(again["outcome"], "held", "{again}");
    assert_eq!(w.sim.used_count(&codes[4]), 0, "never used");
    drop((d1, d2));
}
