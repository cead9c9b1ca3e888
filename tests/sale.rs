//! Inside the sale, end to end against the real binary: what a code is (card/get, the stock
//! query), member cards never consumed, the sale's order and minimum, offline value caps,
//! and voids (a coupon returned at most once through lost answers, 5xx and `kill -9`; a card
//! code sent to review and never consumed again).

mod support;

use redeemd::sim::card::SimCard;
use redeemd::sim::card::SimCode;
use serde_json::{Value, json};
use std::time::Instant;
use support::*;

const MEMBER_CARD_ID: &str = "pMEMBERcard";

fn scan(base: &str, body: Value) -> Value {
    let r = post_json(base, "/v1/scans", &body);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

/// Waits until `redeemd log` shows `code` in `state`.
fn wait_state(till: &Till, code: &str, state: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(r) = till
            .log()
            .into_iter()
            .find(|r| r["code"] == code && r["state"] == state)
        {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{code} never became {state}: {:?}",
            till.row_state(code)
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A member card's code is the member's identity: it is refused before any consume, online
/// and offline (accepted offline while its type is unknown, then refused once card/get
/// answers, so a review item, never a consume). A cash coupon's title, type and value reach
/// the till's answer and the log, with the card's id.
#[test]
fn a_member_card_is_never_consumed_online_or_offline() {
    let till = Till::new(Setup::default());
    let card = &till.sim.card;
    card.add_card(MEMBER_CARD_ID, SimCard::member("会员卡"));
    card.add_card(CARD_ID, SimCard::cash("满100减10元", 1000, 10000));
    let (member_online, member_offline, cash) = ("777700000001", "777700000002", "777700000003");
    for m in [member_online, member_offline] {
        card.add_code(m, SimCode::normal(MEMBER_CARD_ID));
    }
    till.sim.add_codes(&[cash]);
    let d = till.start();
    let base = d.http_url();

    let refused = scan(&base, json!({ "code": member_online }));
    assert_eq!(refused["outcome"], "rejected", "{refused}");
    assert_eq!(refused["reason"], "member card, not a coupon", "{refused}");
    assert_eq!(refused["kind"], "MEMBER_CARD", "{refused}");

    let ok = scan(&base, json!({ "code": cash }));
    assert_eq!(ok["outcome"], "redeemed", "{ok}");
    assert_eq!(ok["title"], "满100减10元", "{ok}");
    assert_eq!(ok["kind"], "CASH", "{ok}");
    assert_eq!(ok["value"], 1000, "{ok}");
    let row = till.row(cash);
    assert_eq!(row["card_id"], CARD_ID, "code/get's card_id is kept: {row}");
    assert_eq!(row["title"], "满100减10元", "{row}");

    till.sim.set_down(true);
    let offline = scan(&base, json!({ "code": member_offline }));
    assert_eq!(offline["outcome"], "accepted_offline", "{offline}");
    till.sim.set_down(false);
    let row = wait_state(&till, member_offline, "review");
    assert!(
        row["reason"].as_str().unwrap_or("").contains("member card"),
        "{row}"
    );
    for m in [member_online, member_offline] {
        assert_eq!(card.calls_for(m).consume, 0, "a consume was sent for {m}");
    }
    assert_eq!(card.calls().consume_of_member_card, 0);
    assert_eq!(
        card.calls().card_get,
        2,
        "card/get once per card: the catalog answers the rest"
    );
    d.kill9();
}

/// While card/get cannot answer, a card's type is not known: nothing is consumed, the row
/// waits, and it is redeemed once card/get answers. `card_types = ["any"]` needs no card/get.
#[test]
fn an_unknown_card_type_waits_and_any_turns_the_check_off() {
    let till = Till::new(Setup {
        accept_offline: false,
        ..Setup::default()
    });
    let code = "777700000010";
    till.sim.add_codes(&[code]);
    till.sim.card.update_faults(|f| f.card_get_down = true);
    let d = till.start();
    let first = scan(&d.http_url(), json!({ "code": code }));
    assert_eq!(first["outcome"], "refused_offline", "{first}");
    assert_eq!(till.sim.card.calls_for(code).consume, 0);
    d.kill9();

    let any = Till::new(Setup {
        card_route_toml: "card_types = [\"any\"]".into(),
        ..Setup::default()
    });
    any.sim.add_codes(&[code]);
    any.sim.card.update_faults(|f| f.card_get_down = true);
    let d = any.start();
    let ok = scan(&d.http_url(), json!({ "code": code }));
    assert_eq!(ok["outcome"], "redeemed", "{ok}");
    assert_eq!(any.sim.card.calls().card_get, 0);
    d.kill9();
}

/// The sale: order, amount and cashier with the scan; a sale below the coupon's minimum is
/// refused before anything is sent; a scanner's read is tied to its order afterwards (once);
/// `?order_id=` finds the sale's codes.
#[test]
fn a_code_belongs_to_its_sale() {
    let till = Till::new(Setup::default());
    till.sim
        .card
        .add_card(CARD_ID, SimCard::cash("满100减10元", 1000, 10000));
    let (small, big, scanned) = ("777700000020", "777700000021", "777700000022");
    till.sim.add_codes(&[small, big, scanned]);
    let d = till.start();
    let base = d.http_url();

    let low = scan(
        &base,
        json!({ "code": small, "order_id": "A-1", "amount": 9999, "cashier": "王芳" }),
    );
    assert_eq!(low["outcome"], "rejected", "{low}");
    assert_eq!(
        low["reason"], "sale below the coupon's minimum of ¥100",
        "{low}"
    );
    assert_eq!(till.sim.card.calls_for(small).consume, 0);

    let ok = scan(
        &base,
        json!({ "code": big, "order_id": "A-2", "amount": 10000, "cashier": "王芳" }),
    );
    assert_eq!(ok["outcome"], "redeemed", "{ok}");
    assert_eq!(ok["order_id"], "A-2");

    till.pty.scan(scanned);
    let read = d.settled(scanned, "redeemed");
    let id = read["id"].as_i64().expect("row id");
    let tie = |order: &str| {
        post_json(
            &base,
            &format!("/v1/redemptions/{id}/order"),
            &json!({ "order_id": order, "amount": 12000, "cashier": "李雷" }),
        )
    };
    let tied = tie("A-2");
    assert_eq!(tied.status, 200, "{}", tied.body);
    assert_eq!(tied.json()["amount"], 12000);
    assert_eq!(tie("A-2").status, 200, "the same order again is harmless");
    assert_eq!(tie("B-9").status, 409, "a second order is refused");

    let found = get(&base, "/v1/redemptions?order_id=A-2").json();
    let codes: Vec<&str> = found
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|r| r["code"].as_str())
        .collect();
    assert_eq!(codes.len(), 2, "{found}");
    assert!(codes.contains(&big) && codes.contains(&scanned), "{found}");
    let bad = post_json(&base, "/v1/scans", &json!({ "code": big, "amount": -1 }));
    assert_eq!(bad.status, 400, "{}", bad.body);
    d.kill9();
}

/// Offline acceptance by value: a coupon's value is known from its stock (queried once
/// online); above `max_value`, or past `max_pending_value` with what already waits, the
/// till refuses, saying which limit; a refused row is never sent; an unknown value counts
/// as above `max_value`.
#[test]
fn offline_value_caps_refuse_above_the_limit_and_never_send() {
    let till = Till::with_coupons(Setup {
        offline_toml: "max_value = 1000\nmax_pending_value = 1500".into(),
        online_wait: "600ms",
        ..Setup::default()
    });
    let pay = till.sim.pay();
    pay.add_stock(STOCK_ID, "满100减10元", 1000, 0);
    let codes = ["BFVALUE00001", "BFVALUE00002", "BFVALUE00003"];
    for c in codes {
        pay.add_coupon(c, STOCK_ID);
    }
    let unknown = "777700000030";
    till.sim.add_codes(&[unknown]);
    let d = till.start();
    let base = d.http_url();
    assert_eq!(
        scan(&base, json!({ "code": codes[0] }))["outcome"],
        "redeemed"
    );

    till.sim.set_pay_down(true, true);
    till.sim.set_pay_down(false, true);
    till.sim.set_down(true);
    let first = scan(&base, json!({ "code": codes[1] }));
    assert_eq!(first["outcome"], "accepted_offline", "{first}");
    assert_eq!(first["value"], 1000, "{first}");
    let second = scan(&base, json!({ "code": codes[2] }));
    assert_eq!(second["outcome"], "refused_offline", "{second}");
    assert!(
        second["reason"]
            .as_str()
            .unwrap_or("")
            .contains("offline.max_pending_value"),
        "{second}"
    );
    let card = scan(&base, json!({ "code": unknown }));
    assert_eq!(card["outcome"], "refused_offline", "{card}");
    assert!(
        card["reason"].as_str().unwrap_or("").contains("not known"),
        "{card}"
    );

    till.sim.set_pay_down(true, false);
    till.sim.set_pay_down(false, false);
    till.sim.set_down(false);
    d.settled(codes[1], "redeemed");
    assert_eq!(pay.used_count(codes[2]), 0, "a refused coupon was sent");
    assert_eq!(till.sim.card.calls_for(unknown).consume, 0);
    assert_eq!(till.row_state(codes[2]).as_deref(), Some("cancelled"));
    d.kill9();
}

/// A voided coupon is given back exactly once: its return's answer is lost once, it gets a
/// 500 once, and the daemon is killed (-9) with a return on the wire; every try carries the
/// return_request_no fixed with the void, and WeChat Pay's ledger shows one return.
#[test]
fn a_voided_coupon_is_returned_at_most_once() {
    let till = Till::with_coupons(Setup::default());
    let pay = till.sim.pay();
    pay.add_stock(STOCK_ID, "满100减10元", 1000, 0);
    let code = "BFVOID000001";
    pay.add_coupon(code, STOCK_ID);
    let d = till.start();
    let used = scan(&d.http_url(), json!({ "code": code, "order_id": "V-1" }));
    assert_eq!(used["outcome"], "redeemed", "{used}");
    let id = used["id"].as_i64().expect("id");
    d.kill9();

    // Voided from the command line while the daemon is down: recorded, pending.
    let (status, _, stderr) = till.cli(&["void", &id.to_string(), "--reason", "顾客退货"]);
    assert!(status.success(), "{stderr}");
    let row = till.row(code);
    assert_eq!(row["void"]["state"], "pending", "{row}");
    let rrn = row["void"]["return_request_no"]
        .as_str()
        .expect("fixed with the void")
        .to_string();

    pay.update_faults(|f| f.drop_after_return = 1);
    let d = till.start();
    let deadline = Instant::now() + WAIT;
    while pay.calls().return_calls == 0 {
        assert!(Instant::now() < deadline, "no return was tried");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    d.kill9();
    assert_eq!(
        pay.returned_count(code),
        1,
        "the lost answer's return committed"
    );

    pay.update_faults(|f| f.return_server_error = 1);
    let d = till.start();
    d.wait_event(|e| e["event"] == "return" && e["state"] == "returned");
    let row = till.row(code);
    assert_eq!(row["state"], "returned", "{row}");
    assert_eq!(row["void"]["state"], "done", "{row}");
    assert_eq!(row["void"]["reason"], "顾客退货");
    assert_eq!(pay.returned_count(code), 1, "returned at most once");
    assert!(pay.calls().return_replays >= 1, "the retry was a replay");
    assert!(
        pay.returns().iter().all(|r| r.return_request_no == rrn),
        "every try carries the return_request_no fixed with the void"
    );
    let metrics = get(&d.http_url(), "/metrics").body;
    assert!(metrics.contains("state=\"returned\""), "{metrics}");
    d.kill9();
}

/// A redeemed card code cannot be returned: the void puts it in review and answers 409 with
/// the reason; a rescan is a duplicate, never consumed again. A code accepted offline and
/// voided before WeChat confirmed it is cancelled and never sent.
#[test]
fn a_voided_card_code_goes_to_review_and_is_never_consumed_again() {
    let till = Till::new(Setup::default());
    let (redeemed, offline) = ("777700000040", "777700000041");
    till.sim.add_codes(&[redeemed, offline]);
    let d = till.start();
    let base = d.http_url();
    let ok = scan(&base, json!({ "code": redeemed }));
    assert_eq!(ok["outcome"], "redeemed");
    let id = ok["id"].as_i64().expect("id");
    let voided = post_json(
        &base,
        &format!("/v1/redemptions/{id}/void"),
        &json!({ "reason": "整单取消", "by": "店长" }),
    );
    assert_eq!(voided.status, 409, "{}", voided.body);
    assert!(
        voided.body.contains("compensate the customer"),
        "{}",
        voided.body
    );
    let again = scan(&base, json!({ "code": redeemed }));
    assert_eq!(again["outcome"], "duplicate", "{again}");
    assert_eq!(till.row_state(redeemed).as_deref(), Some("review"));
    assert_eq!(till.sim.card.consumed_count(redeemed), 1);

    till.sim.set_down(true);
    let accepted = scan(&base, json!({ "code": offline }));
    assert_eq!(accepted["outcome"], "accepted_offline", "{accepted}");
    let id = accepted["id"].as_i64().expect("id");
    let voided = post_json(
        &base,
        &format!("/v1/redemptions/{id}/void"),
        &json!({ "reason": "顾客取消" }),
    );
    assert_eq!(voided.status, 200, "{}", voided.body);
    assert_eq!(voided.json()["state"], "cancelled");
    till.sim.set_down(false);
    // Another code drains through the same dispatcher: the voided one is never sent.
    let later = "777700000042";
    till.sim.add_codes(&[later]);
    assert_eq!(scan(&base, json!({ "code": later }))["outcome"], "redeemed");
    assert_eq!(till.sim.card.calls_for(offline).consume, 0);
    let metrics = get(&base, "/metrics").body;
    assert!(
        metrics.contains("redeemd_voids_total{result=\"card_in_review\"} 1"),
        "{metrics}"
    );
    d.kill9();
}

/// With `forward_payment_codes`, a payment code scanned by mistake is answered
/// `payment_code` with the full code: in the answer to the POS's own scan and on the
/// authenticated event stream. The ledger, the log, the metrics and the daemon's own log
/// only ever hold it masked.
#[test]
fn a_forwarded_payment_code_reaches_only_the_pos() {
    use std::os::unix::fs::PermissionsExt;
    let token = "pos-token-0123456789abcdef";
    let till = Till::new(Setup {
        extra_toml: "forward_payment_codes = true\ntoken_file = \"api.token\"".into(),
        ..Setup::default()
    });
    let token_file = till.dir.path().join("api.token");
    std::fs::write(&token_file, token).expect("token");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (keyed, scanned) = ("134567890123456789", "101234567890123456");
    let d = till.start();
    let base = d.http_url();
    let auth = format!("Bearer {token}");
    let mut events = Sse::connect(&base, &format!("?token={token}"));
    events.wait(|name, _| name == "scanner");

    let r = http(
        "POST",
        &format!("{base}/v1/scans"),
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &auth),
        ],
        json!({ "code": keyed }).to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let answer = r.json();
    assert_eq!(answer["outcome"], "payment_code", "{answer}");
    assert_eq!(answer["payment_code"], keyed, "{answer}");
    assert_eq!(answer["code"], masked(keyed), "{answer}");

    till.pty.scan(scanned);
    let event = events.wait(|_, v| v["outcome"] == "payment_code" && v["code"] == masked(scanned));
    assert_eq!(event["payment_code"], scanned, "{event}");

    let metrics = http(
        "GET",
        &format!("{base}/metrics"),
        &[("Authorization", &auth)],
        b"",
    )
    .body;
    let log = serde_json::to_string(&till.log()).expect("log");
    let mut ledger = Vec::new();
    for f in ["redeemd.db", "redeemd.db-wal"] {
        if let Ok(bytes) = std::fs::read(till.dir.path().join("ledger").join(f)) {
            ledger.extend(bytes);
        }
    }
    let ledger = String::from_utf8_lossy(&ledger);
    let stderr = d.kill9();
    for full in [keyed, scanned] {
        assert!(!log.contains(full), "redeemd log holds {full}");
        assert!(!metrics.contains(full), "/metrics holds {full}");
        assert!(!ledger.contains(full), "the ledger file holds {full}");
        assert!(!stderr.contains(full), "the daemon's log holds {full}");
        assert!(log.contains(&masked(full)), "the read is recorded, masked");
    }
}

/// `redeemd check --quota` reads WeChat's daily quota of every path redeemd calls, and the
/// running daemon exports the same as gauges.
#[test]
fn quotas_are_read_by_check_and_exported() {
    let till = Till::new(Setup::default());
    till.sim.card.update_faults(|f| f.daily_quota = Some(5000));
    let (status, stdout, stderr) = till.cli(&["check", "--quota"]);
    assert!(status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("/card/code/consume"), "{stdout}");
    assert!(stdout.contains("5000"), "{stdout}");

    let d = till.start();
    let deadline = Instant::now() + WAIT;
    let metrics = loop {
        let m = get(&d.http_url(), "/metrics").body;
        if m.contains("redeemd_wechat_quota_remaining{path=\"/card/code/consume\"}") {
            break m;
        }
        assert!(Instant::now() < deadline, "no quota gauge: {m}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(
        metrics.contains("redeemd_wechat_quota_daily_limit{path=\"/card/get\"} 5000"),
        "{metrics}"
    );
    assert_eq!(
        get(&d.http_url(), "/healthz").json()["wechat_quota_exhausted"],
        false
    );

    // The quota used up: the card API pauses until the reset, and /healthz (which the pages
    // read for their banner) says so; the till itself is healthy.
    till.sim.card.update_faults(|f| f.daily_quota = Some(0));
    let code = "777700000060";
    till.sim.add_codes(&[code]);
    let answer = scan(&d.http_url(), json!({ "code": code }));
    assert_eq!(answer["outcome"], "accepted_offline", "{answer}");
    let health = get(&d.http_url(), "/healthz");
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(
        health.json()["wechat_quota_exhausted"],
        true,
        "{}",
        health.body
    );
    assert_eq!(till.row_state(code).as_deref(), Some("queued"));
    d.kill9();
}

/// Reasons in the reader's language: with the default `[http] language` (zh-CN) the answer's
/// reason is Chinese, its `reason_code` stable, and the stored English kept as `detail`; the
/// log reads the same with `--lang`.
#[test]
fn reasons_come_in_the_readers_language_with_a_stable_code() {
    let till = Till::new(Setup {
        language: "zh-CN",
        ..Setup::default()
    });
    till.sim
        .card
        .add_card(MEMBER_CARD_ID, SimCard::member("会员卡"));
    let code = "777700000050";
    till.sim
        .card
        .add_code(code, SimCode::normal(MEMBER_CARD_ID));
    let d = till.start();
    let answer = scan(&d.http_url(), json!({ "code": code }));
    assert_eq!(answer["reason_code"], "member_card", "{answer}");
    assert_eq!(answer["reason"], "会员卡，不是优惠券，不予核销", "{answer}");
    assert_eq!(answer["detail"], "member card, not a coupon", "{answer}");
    let listed = get(&d.http_url(), "/v1/redemptions").json();
    assert_eq!(
        listed[0]["reason"], "会员卡，不是优惠券，不予核销",
        "{listed}"
    );
    let (_, text, _) = till.cli(&["log", "--json", "--lang", "en"]);
    assert!(
        text.contains("\"reason\":\"member card, not a coupon\""),
        "{text}"
    );
    assert!(text.contains("\"reason_code\":\"member_card\""), "{text}");
    d.kill9();
}

fn void(base: &str, id: i64, reason: &str) -> HttpResponse {
    post_json(
        base,
        &format!("/v1/redemptions/{id}/void"),
        &json!({ "reason": reason, "by": "店长" }),
    )
}

/// A card code voided before WeChat confirmed it and scanned again starts a new sale: the
/// voided sale (its order and its void) stays in the row's history (timeline, log, CSV),
/// and the new sale is voided like any other: cancelled while offline; once redeemed, to
/// review with 409, the same 409 for every retry of that void, through the API and
/// `redeemd void`. WeChat consumes it once.
#[test]
fn a_card_code_voided_and_scanned_again_is_a_new_sale_that_voids_again() {
    let till = Till::new(Setup::default());
    let code = "777700000050";
    till.sim.add_codes(&[code]);
    till.sim.set_down(true);
    let d = till.start();
    let base = d.http_url();
    let first = scan(
        &base,
        json!({ "code": code, "order_id": "O-OLD", "amount": 5000 }),
    );
    assert_eq!(first["outcome"], "accepted_offline", "{first}");
    assert_ne!(first["reason_code"], "other", "{first}");
    let id = first["id"].as_i64().expect("id");
    let r = void(&base, id, "cancel sale");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["state"], "cancelled");

    let again = scan(
        &base,
        json!({ "code": code, "order_id": "O-NEW", "cashier": "c2" }),
    );
    assert_eq!(again["outcome"], "accepted_offline", "{again}");
    assert_eq!(again["order_id"], "O-NEW", "{again}");
    let r = void(&base, id, "cancel new sale");
    assert_eq!(r.status, 200, "{}", r.body);
    let row = r.json();
    assert_eq!(row["state"], "cancelled", "{row}");
    assert_eq!(
        row["void"]["reason"], "cancel new sale",
        "the new void, not the old: {row}"
    );
    assert_eq!(row["order_id"], "O-NEW", "{row}");
    let past = row["past_sales"].as_array().expect("past_sales");
    assert_eq!(past.len(), 1, "{row}");
    let past = past[0].as_str().unwrap_or_default();
    assert!(
        past.contains("O-OLD") && past.contains("cancel sale"),
        "{past}"
    );

    // A third sale, online this time: redeemed, then voided → review, and again → the same.
    till.sim.set_down(false);
    let third = scan(&base, json!({ "code": code, "order_id": "O-3" }));
    assert_eq!(third["outcome"], "redeemed", "{third}");
    let r = void(&base, id, "customer returned the goods");
    assert_eq!(r.status, 409, "{}", r.body);
    let retried = void(&base, id, "customer returned the goods");
    assert_eq!(
        retried.status, 409,
        "a retried void is not told it worked: {}",
        retried.body
    );
    assert_eq!(retried.body, r.body, "the same answer every time");
    let (status, _, stderr) = till.cli(&["void", &id.to_string(), "--reason", "again"]);
    assert!(
        !status.success(),
        "redeemd void of a row in review fails: {stderr}"
    );
    assert!(stderr.contains("review"), "{stderr}");
    assert_eq!(till.sim.card.consumed_count(code), 1, "consumed once");

    let detail = get(&base, &format!("/v1/redemptions/{id}")).json();
    let calls: Vec<&str> = detail["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .filter_map(|c| c["call"].as_str())
        .collect();
    assert_eq!(
        calls.iter().filter(|c| **c == "void").count(),
        3,
        "{calls:?}"
    );
    assert_eq!(
        calls.iter().filter(|c| **c == "new_sale").count(),
        2,
        "{calls:?}"
    );
    assert_eq!(
        detail["past_sales"].as_array().map(Vec::len),
        Some(2),
        "{detail}"
    );
    let csv = get(&base, "/v1/export.csv").body;
    let header = csv.lines().next().unwrap_or_default();
    assert!(header.contains(",guard,past_sales,"), "{header}");
    let line = csv
        .lines()
        .find(|l| l.contains(code))
        .expect("the row in the CSV");
    assert!(
        line.contains("O-OLD") && line.contains("O-NEW") && line.contains("O-3"),
        "{line}"
    );
    d.kill9();
}

/// A merchant coupon voided before it was used, then scanned for a new sale and used, is
/// given back by a later void: `coupons/return` goes out once, from `redeemd void`.
#[test]
fn a_coupon_voided_and_scanned_again_is_returned_by_the_next_void() {
    let till = Till::with_coupons(Setup::default());
    let pay = till.sim.pay();
    pay.add_stock(STOCK_ID, "满100减10元", 1000, 0);
    let code = "BFVOID000002";
    pay.add_coupon(code, STOCK_ID);
    till.sim.set_pay_down(true, true);
    till.sim.set_pay_down(false, true);
    let d = till.start();
    let base = d.http_url();
    let first = scan(&base, json!({ "code": code, "order_id": "O-OLD" }));
    assert_eq!(first["outcome"], "accepted_offline", "{first}");
    let id = first["id"].as_i64().expect("id");
    assert_eq!(void(&base, id, "cancel sale").status, 200);
    till.sim.set_pay_down(true, false);
    till.sim.set_pay_down(false, false);
    let used = scan(&base, json!({ "code": code, "order_id": "O-NEW" }));
    assert_eq!(used["outcome"], "redeemed", "{used}");
    assert_eq!(pay.used_count(code), 1);

    let (status, stdout, stderr) = till.cli(&["void", &id.to_string(), "--reason", "顾客退货"]);
    assert!(status.success(), "{stdout}{stderr}");
    assert!(
        !stdout.contains("voided before"),
        "the new sale's void is a void: {stdout}"
    );
    let row = wait_state(&till, code, "returned");
    assert_eq!(row["order_id"], "O-NEW", "{row}");
    assert_eq!(row["void"]["reason"], "顾客退货", "{row}");
    assert_eq!(pay.returned_count(code), 1, "returned once");
    let again = void(&base, id, "顾客退货");
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(pay.calls().return_calls, 1, "a repeated void sends nothing");
    d.kill9();
}

/// Free text a person types refuses control characters (an ESC would reach a manager's
/// terminal through an export); text an older ledger holds is escaped in every output.
#[test]
fn control_characters_are_refused_and_never_printed_raw() {
    let till = Till::new(Setup::default());
    let code = "777700000060";
    till.sim.set_down(true);
    let d = till.start();
    let base = d.http_url();
    let id = scan(&base, json!({ "code": code }))["id"]
        .as_i64()
        .expect("id");
    for body in [
        json!({ "reason": "cancel\u{1b}[2J" }),
        json!({ "reason": "nul\u{0}" }),
        json!({ "reason": "ok", "by": "me\r" }),
    ] {
        let r = post_json(&base, &format!("/v1/redemptions/{id}/void"), &body);
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(r.body.contains("control characters"), "{}", r.body);
    }
    let r = post_json(
        &base,
        &format!("/v1/redemptions/{id}/resolve"),
        &json!({ "note": "a\u{1b}b" }),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let (status, _, stderr) = till.cli(&["void", &id.to_string(), "--reason", "x\u{1b}[31m"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    d.kill9();

    // What an older redeemd may have stored.
    let db = till.dir.path().join("ledger/redeemd.db");
    let conn = rusqlite::Connection::open(&db).expect("ledger");
    conn.execute(
        "UPDATE redemptions SET void_state = 'done', void_reason = ?2, voided_at = 1, \
         state = 'review', reason = ?3 WHERE code = ?1",
        [code, "evil\x1b]0;pwned\x07\0", "r\x1b[2J"],
    )
    .expect("an old row");
    drop(conn);
    for args in [&["export"][..], &["log"][..], &["review"][..]] {
        let (status, stdout, stderr) = till.cli(args);
        assert!(status.success(), "{args:?}: {stderr}");
        assert!(
            !stdout.contains(['\x1b', '\0', '\x07']),
            "{args:?} printed a control character: {stdout:?}"
        );
    }
    let (_, csv, _) = till.cli(&["export"]);
    assert!(csv.contains("evil\\u{1b}]0;pwned\\u{7}\\u{0}"), "{csv}");
    let d = till.start();
    let csv = get(&d.http_url(), "/v1/export.csv").body;
    assert!(!csv.contains(['\x1b', '\0']), "{csv:?}");
    d.kill9();
}

/// A scan refused at the till keeps the sale it came with, so the sale finds it; an amount
/// above the documented bound is refused; the void counter's help names every result.
#[test]
fn a_local_refusal_keeps_its_sale() {
    let till = Till::new(Setup::default());
    let d = till.start();
    let base = d.http_url();
    let sale = json!({ "order_id": "O-77", "amount": 1234, "cashier": "c7" });
    for code in ["134567890123456789", "no-such-route"] {
        let mut body = sale.clone();
        body["code"] = json!(code);
        let r = scan(&base, body);
        assert_eq!(r["outcome"], "rejected", "{r}");
        assert_eq!(
            (&r["order_id"], &r["amount"], &r["cashier"]),
            (&sale["order_id"], &sale["amount"], &sale["cashier"]),
            "{r}"
        );
    }
    let listed = get(&base, "/v1/redemptions?order_id=O-77").json();
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    let too_much = post_json(
        &base,
        "/v1/scans",
        &json!({ "code": "777700000070", "amount": 10_000_000_001_i64 }),
    );
    assert_eq!(too_much.status, 400, "{}", too_much.body);
    let most = post_json(
        &base,
        "/v1/scans",
        &json!({ "code": "777700000071", "amount": 10_000_000_000_i64 }),
    );
    assert_eq!(most.status, 200, "{}", most.body);
    let metrics = get(&base, "/metrics").body;
    let help = metrics
        .lines()
        .find(|l| l.starts_with("# HELP redeemd_voids_total"))
        .expect("help");
    for result in [
        "refused",
        "already",
        "cancelled",
        "return_pending",
        "card_in_review",
    ] {
        assert!(help.contains(result), "{help}");
    }
    d.kill9();
}
