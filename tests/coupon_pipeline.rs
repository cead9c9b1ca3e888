//! Merchant coupons end to end: the real binary, a pseudo-terminal scanner, and a simulated
//! WeChat Pay v3 that checks our RSA signatures, signs its answers, and counts every use.

mod support;

use redeemd::sim::pay::{CouponState, PayFaults};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use support::*;

fn outcome_of(e: &Value) -> String {
    e["outcome"].as_str().unwrap_or("").to_string()
}

fn coupons(prefix: u32, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("BF{prefix:02}X{:04}{:02}{:02}", 5000 + i, prefix, i))
        .collect()
}

fn wait_state(till: &Till, d: &Daemon, code: &str, state: &str) {
    if till.row_state(code).as_deref() != Some(state) {
        d.settled(code, state);
    }
}

#[test]
fn coupons_and_card_codes_mixed() {
    let till = Till::with_coupons(Setup::default());
    let card = "120000000017";
    let [good, used, expired, unknown]: [String; 4] = coupons(1, 4).try_into().unwrap();
    till.sim.add_codes(&[card]);
    let pay = till.sim.pay();
    pay.add_coupon(&good, STOCK_ID);
    pay.add_coupon_in(&used, STOCK_ID, CouponState::Used);
    pay.add_coupon_in(&expired, STOCK_ID, CouponState::Expired);
    let d = till.start();
    for c in [card, &good, &used, &expired, &unknown] {
        till.pty.scan(c);
    }
    assert_eq!(outcome_of(&d.outcome(card)), "redeemed");
    assert_eq!(outcome_of(&d.outcome(&good)), "redeemed");
    for (c, why) in [
        (&used, "already used"),
        (&expired, "expired"),
        (&unknown, "not found"),
    ] {
        let o = d.outcome(c);
        assert_eq!(outcome_of(&o), "rejected", "{o}");
        assert!(o["reason"].as_str().unwrap().contains(why), "{o}");
    }
    assert_eq!(pay.used_count(&good), 1);
    assert_eq!(
        pay.calls().sign_errors,
        0,
        "every request signature verified"
    );
    assert_eq!(till.sim.card.consumed_count(card), 1);

    let row = till.row(&good);
    assert_eq!(row["api"], "coupon");
    assert_eq!(row["stock_id"], STOCK_ID);
    let no = row["use_request_no"].as_str().unwrap();
    assert!(!no.is_empty() && no.len() <= 32);
    assert_eq!(pay.uses()[0].use_request_no, no);
    assert!(
        row["wechatpay_use_time"]
            .as_str()
            .unwrap()
            .contains("+08:00")
    );
    d.kill9();
}

#[test]
fn forged_and_probe_signatures_never_redeem_and_the_coupon_is_used_once() {
    let till = Till::with_coupons(Setup::default());
    let code = coupons(2, 1).remove(0);
    let pay = till.sim.pay();
    pay.add_coupon(&code, STOCK_ID);
    pay.update_faults(|f| f.forge_signatures = true);
    let d = till.start();
    till.pty.scan(&code);
    let o = d.outcome(&code);
    assert_eq!(
        outcome_of(&o),
        "accepted_offline",
        "a forged 200 is not a redemption: {o}"
    );
    d.wait_events(2, |e| e["event"] == "pay_unverified");
    pay.set_faults(PayFaults {
        probe_signatures: true,
        ..PayFaults::default()
    });
    d.wait_events(4, |e| e["event"] == "pay_unverified");
    assert_eq!(
        till.row(&code)["state"],
        "queued",
        "never redeemed on an unverified answer"
    );

    pay.set_faults(PayFaults::default());
    let s = d.settled(&code, "redeemed");
    assert_eq!(s["state"], "redeemed");
    assert_eq!(pay.used_count(&code), 1);
    assert!(
        pay.calls().replays >= 3,
        "retries reused the same use_request_no"
    );
    assert_eq!(pay.calls().use_of_used, 0);
    let row = till.row(&code);
    assert!(
        row["note"]
            .as_str()
            .unwrap_or("")
            .contains("use_request_no"),
        "{row}"
    );
    d.kill9();
}

#[test]
fn responses_lost_after_commit_and_sigkill_use_each_coupon_exactly_once() {
    let till = Till::with_coupons(Setup::default());
    let codes = coupons(3, 8);
    let pay = till.sim.pay();
    for c in &codes {
        pay.add_coupon(c, STOCK_ID);
    }
    pay.update_faults(|f| f.drop_after_commit = 5);
    let d = till.start();
    for c in &codes[..4] {
        till.pty.scan(c);
    }
    for c in &codes[..4] {
        d.outcome(c);
    }
    d.kill9();
    let d = till.start();
    for c in &codes[4..] {
        till.pty.scan(c);
    }
    // Kill again while the second half is (probably) in flight.
    d.outcome(&codes[4]);
    d.kill9();
    let d = till.start();
    for c in &codes {
        if till.row(c)["till_outcome"].is_null() {
            till.pty.scan(c); // the cashier rescans what got no answer
        }
    }
    for c in &codes {
        wait_state(&till, &d, c, "redeemed");
        assert_eq!(pay.used_count(c), 1, "{c}");
    }
    assert_eq!(pay.calls().use_of_used, 0);
    assert_eq!(
        pay.faults().drop_after_commit,
        0,
        "every drop was exercised"
    );
    d.kill9();
}

#[test]
fn fails_over_to_the_backup_host() {
    let till = Till::with_coupons(Setup::default());
    let codes = coupons(4, 2);
    let pay = till.sim.pay();
    for c in &codes {
        pay.add_coupon(c, STOCK_ID);
    }
    till.sim.set_pay_down(true, true);
    let d = till.start();
    till.pty.scan(&codes[0]);
    assert_eq!(outcome_of(&d.outcome(&codes[0])), "redeemed");
    d.wait_event(|e| e["event"] == "pay_failover");
    till.pty.scan(&codes[1]);
    assert_eq!(outcome_of(&d.outcome(&codes[1])), "redeemed");
    assert_eq!(pay.used_count(&codes[0]), 1);
    assert_eq!(pay.used_count(&codes[1]), 1);
    d.kill9();
}

#[test]
fn server_errors_and_rate_limits_are_retried_with_the_same_use_request_no() {
    let till = Till::with_coupons(Setup::default());
    let code = coupons(5, 1).remove(0);
    let pay = till.sim.pay();
    pay.add_coupon(&code, STOCK_ID);
    pay.set_faults(PayFaults {
        server_error: 2,
        rate_limited: 2,
        ..PayFaults::default()
    });
    let d = till.start();
    till.pty.scan(&code);
    wait_state(&till, &d, &code, "redeemed");
    assert_eq!(pay.used_count(&code), 1);
    assert!(pay.calls().use_calls >= 5);
    let row = till.row(&code);
    assert!(row["attempts"].as_i64().unwrap() >= 5, "{row}");
    d.kill9();
}

#[test]
fn already_used_after_our_own_lost_attempt_goes_to_review() {
    let till = Till::with_coupons(Setup::default());
    let code = coupons(6, 1).remove(0);
    let pay = till.sim.pay();
    pay.add_coupon(&code, STOCK_ID);
    // The first use commits and its answer is lost; the server then does not recognise the
    // repeated use_request_no (undocumented behaviour) and says the coupon is used.
    pay.set_faults(PayFaults {
        drop_after_commit: 1,
        no_idempotency: true,
        ..PayFaults::default()
    });
    let d = till.start();
    till.pty.scan(&code);
    let s = d.settled(&code, "review");
    assert!(
        s["reason"]
            .as_str()
            .unwrap()
            .contains("may have been used by this till"),
        "{s}"
    );
    assert_eq!(pay.used_count(&code), 1);
    d.kill9();
}

#[test]
fn a_till_clock_far_off_pauses_coupon_dispatch_with_the_skew() {
    let till = Till::with_coupons(Setup::default());
    let code = coupons(7, 1).remove(0);
    let card = "130000000019";
    till.sim.add_codes(&[card]);
    let pay = till.sim.pay();
    pay.add_coupon(&code, STOCK_ID);
    pay.update_faults(|f| f.clock_offset_s = 900);
    let d = till.start();
    till.pty.scan(&code);
    assert_eq!(outcome_of(&d.outcome(&code)), "accepted_offline");
    let paused = d.wait_event(|e| e["event"] == "api_paused");
    let reason = paused["reason"].as_str().unwrap();
    assert!(
        reason.contains("clock") && reason.contains("900 s behind"),
        "{reason}"
    );
    assert_eq!(paused["api"], "coupon");
    // Card codes are unaffected; the coupon stays queued.
    till.pty.scan(card);
    assert_eq!(outcome_of(&d.outcome(card)), "redeemed");
    assert_eq!(till.row(&code)["state"], "queued");
    assert_eq!(pay.used_count(&code), 0);
    d.kill9();
}

#[test]
fn bad_merchant_keys_stop_the_start_naming_the_file() {
    let till = Till::with_coupons(Setup::default());
    let key = till.dir.path().join("apiclient_key.pem");
    let run = || {
        let out = redeemd(["run"]).config(&till.config).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let (code, err) = run();
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("private_key_file") && err.contains("chmod 600"),
        "{err}"
    );

    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, err) = run();
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("apiclient_key.pem"), "{err}");

    std::fs::write(&key, include_bytes!("data/rsa1024_key.pem")).unwrap();
    let (code, err) = run();
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("under 2048 bits") && err.contains("2048 to 4096"),
        "{err}"
    );

    std::fs::write(till.dir.path().join("pub_key.pem"), "garbage").unwrap();
    std::fs::write(&key, include_bytes!("data/wechat-test-key.pem")).unwrap();
    let (code, err) = run();
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("public_key_file"), "{err}");
}

#[test]
fn a_wrong_merchant_serial_is_refused_by_the_server_and_pauses_coupons() {
    let till = Till::with_coupons(Setup::default());
    let text = std::fs::read_to_string(&till.config)
        .unwrap()
        .replace(MERCHANT_SERIAL, "0123456789ABCDEF");
    std::fs::write(&till.config, text).unwrap();
    let code = coupons(8, 1).remove(0);
    let pay = till.sim.pay();
    pay.add_coupon(&code, STOCK_ID);
    let d = till.start();
    till.pty.scan(&code);
    assert_eq!(outcome_of(&d.outcome(&code)), "accepted_offline");
    let paused = d.wait_event(|e| e["event"] == "api_paused");
    assert!(
        paused["reason"]
            .as_str()
            .unwrap()
            .contains("wechat_pay.serial_no"),
        "{paused}"
    );
    assert!(pay.calls().sign_errors >= 1);
    assert_eq!(pay.used_count(&code), 0);
    d.kill9();
}
