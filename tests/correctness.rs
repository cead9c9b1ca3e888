//! The corners a real store hits: outages where every connection is refused, a process that
//! dies while the cashier waits, a customer who comes back once WeChat answers again, a
//! start that fails. Each test names the promise it would catch breaking.

mod support;

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::*;

fn scan_keyed(base: &str, code: &str) -> Value {
    http(
        "POST",
        &format!("{base}/v1/scans"),
        &[("Content-Type", "application/json")],
        json!({ "code": code }).to_string().as_bytes(),
    )
    .json()
}

/// Waits until the ledger holds a row for `code` (read with `redeemd log`, as a manager
/// would), and returns it.
fn wait_for_row(till: &Till, code: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(r) = till.log().into_iter().find(|r| r["code"] == code) {
            return r;
        }
        assert!(Instant::now() < deadline, "no row for {code}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// WeChat Pay unreachable (both hosts refuse connections), a coupon route that may not be
/// accepted offline: the till refuses the scan, and since no use request ever left, the row
/// is simply cancelled, not a review item (every WAN outage would fill the managers' queue).
/// Once WeChat Pay is back, the customer's rescan is redeemed, not turned away as a
/// duplicate.
#[test]
fn a_use_that_never_left_leaves_a_plain_refusal_and_a_rescan_redeems() {
    let till = Till::with_coupons(Setup {
        route_offline: false,
        online_wait: "400ms",
        // One try within online_wait: the row is read while no retry is in flight.
        base_delay: "30s",
        max_delay: "30s",
        ..Setup::default()
    });
    let code = "BFCORRECT0001";
    till.sim.pay().add_coupon(code, STOCK_ID);
    till.sim.set_pay_down(true, true);
    till.sim.set_pay_down(false, true);
    let d = till.start();
    let base = d.http_url();

    let first = scan_keyed(&base, code);
    assert_eq!(first["outcome"], "refused_offline", "{first}");
    let row = till.row(code);
    assert_eq!(row["state"], "cancelled", "{row}");
    assert_eq!(
        row["unconfirmed"], false,
        "no use request left the till, so nothing is unanswered: {row}"
    );
    assert!(
        row["reason"]
            .as_str()
            .unwrap_or("")
            .contains("may not be accepted offline"),
        "{row}"
    );

    till.sim.set_pay_down(true, false);
    till.sim.set_pay_down(false, false);
    let again = scan_keyed(&base, code);
    assert_eq!(again["outcome"], "redeemed", "{again}");
    assert_eq!(till.sim.pay().used_count(code), 1);
    let row = till.row(code);
    assert_eq!(row["state"], "redeemed", "{row}");
    assert_eq!(row["scans"], 2, "{row}");
    d.kill9();
}

/// The card API down: refused at the till (the route may not be accepted offline). When it
/// is back, the rescan gets a real answer and the code is consumed once; a third scan is a
/// duplicate.
#[test]
fn a_card_code_refused_while_wechat_was_down_redeems_on_a_rescan() {
    let till = Till::new(Setup {
        route_offline: false,
        online_wait: "300ms",
        ..Setup::default()
    });
    let code = "410000000017";
    till.sim.add_codes(&[code]);
    till.sim.set_down(true);
    let d = till.start();
    let base = d.http_url();
    assert_eq!(scan_keyed(&base, code)["outcome"], "refused_offline");
    till.sim.set_down(false);
    let again = scan_keyed(&base, code);
    assert_eq!(again["outcome"], "redeemed", "{again}");
    let third = scan_keyed(&base, code);
    assert_eq!(third["outcome"], "duplicate", "{third}");
    assert_eq!(till.sim.card.consumed_count(code), 1);
    assert_eq!(till.sim.card.calls().consume_of_consumed, 0);
    d.kill9();
}

/// The process dies while the cashier waits (inside online_wait) on a route that may not be
/// accepted offline. The cashier was told nothing and the customer may be gone: at the next
/// start the row is refused, never sent. The customer's rescan then gets a real answer.
#[test]
fn a_scan_nobody_was_answered_for_is_refused_at_start_when_it_may_not_go_offline() {
    let till = Till::new(Setup {
        route_offline: false,
        online_wait: "60s",
        ..Setup::default()
    });
    let code = "420000000017";
    till.sim.add_codes(&[code]);
    till.sim.set_down(true);
    let d = till.start();
    till.pty.scan(code);
    let row = wait_for_row(&till, code);
    assert_eq!(row["state"], "queued");
    d.kill9();

    till.sim.set_down(false);
    let d = till.start();
    let refused = d.settled(code, "cancelled");
    assert!(
        refused["reason"]
            .as_str()
            .unwrap_or("")
            .contains("stopped before the till was answered"),
        "{refused}"
    );
    let row = till.row(code);
    assert_eq!(row["state"], "cancelled", "{row}");
    assert_eq!(till.sim.card.calls_for(code).consume, 0, "never sent");

    let again = scan_keyed(&d.http_url(), code);
    assert_eq!(again["outcome"], "redeemed", "{again}");
    assert_eq!(till.sim.card.consumed_count(code), 1);
    d.kill9();
}

/// The same death on a route that may be accepted offline: the row was recorded, so it is
/// redeemed when WeChat answers, as before. A rescan of it while it is still queued and
/// nobody waits for it is answered as a first scan would be, not as a duplicate.
#[test]
fn an_unanswered_scan_on_an_offline_route_is_redeemed_and_a_rescan_gets_its_answer() {
    let till = Till::new(Setup {
        online_wait: "60s",
        ..Setup::default()
    });
    let code = "430000000017";
    till.sim.add_codes(&[code]);
    till.sim.set_down(true);
    let d = till.start();
    till.pty.scan(code);
    wait_for_row(&till, code);
    d.kill9();

    // Restarted with WeChat still down, then the customer scans again.
    let d = till.start();
    assert_eq!(till.row(code)["state"], "queued");
    let base = d.http_url();
    till.sim.set_down(false);
    let again = scan_keyed(&base, code);
    assert_eq!(again["outcome"], "redeemed", "{again}");
    assert_eq!(till.sim.card.consumed_count(code), 1);
    d.kill9();
}

/// A start that fails (the API's port is taken) must not have sent anything: the
/// dispatcher starts only once everything else has started.
#[test]
fn a_start_that_fails_sends_nothing() {
    let till = Till::new(Setup::default());
    let code = "440000000017";
    till.sim.add_codes(&[code]);
    till.sim.set_down(true);
    let d = till.start();
    till.pty.scan(code);
    assert_eq!(d.outcome(code)["outcome"], "accepted_offline");
    d.kill9();

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = taken.local_addr().expect("addr").port();
    let text = std::fs::read_to_string(&till.config).expect("config");
    std::fs::write(
        &till.config,
        text.replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        ),
    )
    .expect("config");
    till.sim.set_down(false);
    let out = redeemd(["--log-format", "json", "run"])
        .config(&till.config)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("http.listen: cannot listen"), "{stderr}");
    assert!(
        !stderr.contains("HTTP client"),
        "named as what it is: {stderr}"
    );
    assert!(!stderr.contains("dispatcher_started"), "{stderr}");
    let calls = till.sim.card.calls_for(code);
    assert_eq!((calls.get, calls.consume), (0, 0), "{calls:?}");
    assert_eq!(till.row(code)["state"], "queued");
}
