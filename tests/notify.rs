//! HQ listens to WeChat Pay: `redeemd fleet` with `[notify]` on a real `nats-server` hub,
//! and the simulated notifier signing and encrypting as WeChat Pay does. A trusted
//! notification is kept on the hub before it is answered 2xx, once however often it comes;
//! every forged, stale, probing, undecryptable or oversized one is refused, counted by its
//! reason, and changes nothing.

mod support;

use redeemd::sim::notifier::Notifier;
use redeemd::sim::pay::generate_key;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use support::*;

/// `redeemd fleet` whose notify listener has a port fixed before it starts (so WeChat Pay
/// can try it while it is down): its setup, WeChat Pay's key, and the notify URL.
fn fleet_on_a_known_port(chain: &Chain) -> (FleetSetup, Vec<u8>, String) {
    let port = free_port();
    let keys = Keys::new();
    let listen = format!("127.0.0.1:{port}");
    let setup = keys.fleet(&chain.hub.url(), &[], &listen, NOWHERE, BRAND);
    let url = format!("http://{listen}/v1/wechatpay/notify");
    (setup, keys.wechatpay, url)
}

/// The hub's `REDEEMD_NOTIFY`: how many notifications it keeps.
fn kept(rt: &tokio::runtime::Runtime, hub_url: &str) -> u64 {
    rt.block_on(async {
        let hub = async_nats::connect(hub_url)
            .await
            .expect("connect to the hub");
        let r = hub
            .request("$JS.API.STREAM.INFO.REDEEMD_NOTIFY", "".into())
            .await
            .expect("stream info");
        let info: Value = serde_json::from_slice(&r.payload).expect("json");
        info["state"]["messages"].as_u64().expect("a message count")
    })
}

/// One POST of a notification, as WeChat Pay sends it, through the tests' plain HTTP client.
fn post_notice(url: &str, n: &redeemd::sim::notifier::Notice) -> HttpResponse {
    http(
        "POST",
        url,
        &[
            ("Content-Type", "application/json"),
            ("Wechatpay-Timestamp", &n.timestamp),
            ("Wechatpay-Nonce", &n.nonce),
            ("Wechatpay-Signature", &n.signature),
            ("Wechatpay-Serial", &n.serial),
        ],
        &n.body,
    )
}

#[test]
fn a_notification_is_kept_once_and_every_bad_one_is_refused_by_its_reason() {
    let chain = Chain::start(&[], true);
    let keys = Keys::new();
    let setup = keys.fleet(&chain.hub.url(), &[], "127.0.0.1:0", NOWHERE, BRAND);
    let wechatpay = keys.wechatpay.clone();
    let fleet = setup.start(false);
    let page = fleet.http_url();
    let url = notify_url(&fleet);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let notifier = wechatpay_notifier(&wechatpay, APIV3_KEY, &url);
    let body = notifier
        .body(
            "EV-SEND-1",
            "PRODUCT_COUPON.SEND",
            &send_resource("PC00000001"),
        )
        .expect("a notification");

    // Kept, then the same notification four times more (WeChat Pay repeats itself): one.
    // Every answer is one docs/fleet-openapi.yaml describes.
    let mut spec = Spec::load("docs/fleet-openapi.yaml");
    for i in 0..5 {
        let n = notifier
            .sign(body.clone(), chrono::Utc::now().timestamp())
            .expect("signed");
        let r = post_notice(&url, &n);
        assert_eq!(r.status, 204, "try {i}: {}", r.body);
        spec.check("POST", "/v1/wechatpay/notify", &r);
    }
    let d = rt.block_on(notifier.deliver(body.clone(), &[]));
    assert_eq!(d.statuses, vec![Some(204)], "the notifier's own delivery");
    assert_eq!(kept(&rt, &chain.hub.url()), 1);
    assert_eq!(
        metric(
            &page,
            "redeemd_notify_total{event_type=\"PRODUCT_COUPON.SEND\"}"
        ),
        1
    );

    // Each forgery or mishap: refused with one and the same answer, counted by its reason.
    let now = chrono::Utc::now().timestamp();
    let forger = wechatpay_notifier(&generate_key().expect("another key").1, APIV3_KEY, &url);
    let other_key = wechatpay_notifier(&wechatpay, b"ffffffffffffffffffffffffffffffff", &url);
    let fresh = |id: &str| {
        notifier
            .body(id, "PRODUCT_COUPON.USE", &send_resource("PC00000002"))
            .expect("body")
    };
    let signed = |n: &Notifier, body: Vec<u8>, at: i64| n.sign(body, at).expect("signed");
    let mut cases: Vec<(&str, redeemd::sim::notifier::Notice)> = vec![
        ("bad_signature", signed(&forger, fresh("EV-F1"), now)),
        ("stale", signed(&notifier, fresh("EV-F2"), now - 301)),
        ("stale", signed(&notifier, fresh("EV-F3"), now + 301)),
        ("too_large", signed(&notifier, vec![b' '; 70_000], now)),
        ("malformed", signed(&notifier, b"{\"id\":1}".to_vec(), now)),
    ];
    let mut wrong_serial = signed(&notifier, fresh("EV-F4"), now);
    wrong_serial.serial = "PUB_KEY_ID_9999".into();
    cases.push(("unknown_serial", wrong_serial));
    let mut probe = signed(&notifier, fresh("EV-F5"), now);
    probe.signature = format!("WECHATPAY/SIGNTEST/{}", probe.signature);
    cases.push(("signtest", probe));
    // Signed by WeChat Pay's key, but its resource sealed with another APIv3 key.
    let sealed_elsewhere = other_key
        .body("EV-F6", "PRODUCT_COUPON.USE", &send_resource("PC00000003"))
        .expect("body");
    cases.push(("undecryptable", signed(&notifier, sealed_elsewhere, now)));
    let mut missing = signed(&notifier, fresh("EV-F7"), now);
    missing.nonce.clear();
    cases.push(("bad_signature", missing));
    let mut answers = std::collections::HashSet::new();
    for (reason, n) in &cases {
        let before = metric(
            &page,
            &format!("redeemd_notify_refused_total{{reason=\"{reason}\"}}"),
        );
        let r = post_notice(&url, n);
        assert_eq!(r.status, 400, "{reason}: {}", r.body);
        spec.check("POST", "/v1/wechatpay/notify", &r);
        let status = Some(r.body.clone());
        let after = metric(
            &page,
            &format!("redeemd_notify_refused_total{{reason=\"{reason}\"}}"),
        );
        assert_eq!(after, before + 1, "{reason} is counted");
        answers.insert(status);
    }
    assert_eq!(answers.len(), 1, "one answer for every refusal");
    assert_eq!(kept(&rt, &chain.hub.url()), 1, "nothing refused was kept");
    let log = fleet.kill9();
    assert!(!log.contains("PC0000000"), "no code in HQ's log");
}

/// HQ killed with `kill -9`, then back: WeChat Pay's retries land the notification, once,
/// and one whose answer was lost (kept, but WeChat Pay heard nothing) is not kept twice.
#[test]
fn a_notification_sent_while_hq_is_down_lands_once_when_it_is_back() {
    let chain = Chain::start(&[], true);
    let (setup, wechatpay, url) = fleet_on_a_known_port(&chain);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let body = wechatpay_notifier(&wechatpay, APIV3_KEY, &url)
        .body(
            "EV-SEND-9",
            "PRODUCT_COUPON.SEND",
            &send_resource("PC00000009"),
        )
        .expect("body");

    let fleet = setup.start(false);
    let _ = notify_url(&fleet);
    fleet.kill9();
    // WeChat Pay tries while HQ is down, and goes on trying; HQ comes back meanwhile.
    let delivery = rt.spawn({
        let (body, n) = (
            body.clone(),
            wechatpay_notifier(&wechatpay, APIV3_KEY, &url),
        );
        async move { n.deliver(body, &[Duration::from_millis(300); 60]).await }
    });
    let fleet = setup.start(false);
    let d = rt.block_on(delivery).expect("delivery");
    assert!(d.delivered(), "{:?}", d.statuses);
    assert_eq!(d.statuses[0], None, "the first try found HQ down");
    assert_eq!(kept(&rt, &chain.hub.url()), 1);

    // Kept, but its answer lost: WeChat Pay sends it again, and it stays one.
    let again = rt.block_on(wechatpay_notifier(&wechatpay, APIV3_KEY, &url).deliver(body, &[]));
    assert_eq!(again.statuses, vec![Some(204)]);
    assert_eq!(kept(&rt, &chain.hub.url()), 1);
    fleet.kill9();
}

/// HQ killed with `kill -9` while a notification is in flight: the hub (frozen) has the
/// publish but has not acknowledged it, so WeChat Pay got no answer; its next try, once HQ
/// is back, lands the notification exactly once.
#[test]
fn hq_killed_mid_notification_lands_it_exactly_once_on_wechat_pays_retry() {
    let chain = Chain::start(&[], true);
    let (setup, wechatpay, url) = fleet_on_a_known_port(&chain);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let notifier = wechatpay_notifier(&wechatpay, APIV3_KEY, &url);
    let mut used = send_resource("PC00000031");
    used["use_time"] = json!("2026-12-05T12:00:00+08:00");
    let body = notifier
        .body("EV-USE-31", "PRODUCT_COUPON.USE", &used)
        .expect("body");
    let fleet = setup.start(false);
    let _ = notify_url(&fleet);

    chain.hub.freeze();
    let delivery = rt.spawn({
        let n = wechatpay_notifier(&wechatpay, APIV3_KEY, &url);
        async move { n.deliver(body, &[Duration::from_millis(300); 60]).await }
    });
    // The hub has 4 s to acknowledge: one second in, HQ is waiting for it.
    std::thread::sleep(Duration::from_secs(1));
    fleet.kill9();
    chain.hub.thaw();
    let fleet = setup.start(false);
    let d = rt.block_on(delivery).expect("delivery");
    assert!(d.delivered(), "{:?}", d.statuses);
    assert_eq!(
        d.statuses[0], None,
        "the first try got no answer: HQ died with it"
    );
    assert_eq!(kept(&rt, &chain.hub.url()), 1, "kept once");
    let entry = wait_registered(&rt, &chain.hub.url(), "PC00000031", "USED");
    assert_eq!(entry["last4"], "0031");
    fleet.kill9();
}

/// The server block store IT puts in front of the notify listener is one nginx accepts
/// (`nginx -t`, with a throwaway certificate). Skipped without Debian's nginx and openssl.
#[test]
fn the_nginx_block_in_packaging_is_one_nginx_accepts() {
    let have = |bin: &str| {
        std::process::Command::new("sh")
            .args(["-c", &format!("command -v {bin}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !(have("nginx") && have("openssl")) {
        eprintln!("skipped: no nginx or openssl");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=pay-notify.example.com",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let block = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/nginx/redeemd-notify.conf"),
    )
    .expect("the server block")
    .replace(
        "/etc/ssl/certs/pay-notify.example.com.pem",
        &cert.to_string_lossy(),
    )
    .replace(
        "/etc/ssl/private/pay-notify.example.com.key",
        &key.to_string_lossy(),
    );
    std::fs::write(dir.path().join("block.conf"), block).expect("block");
    let conf = dir.path().join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  include {d}/block.conf;\n}}\n",
            d = dir.path().display()
        ),
    )
    .expect("nginx.conf");
    let t = std::process::Command::new("nginx")
        .args(["-t", "-p"])
        .arg(dir.path())
        .arg("-c")
        .arg(&conf)
        .output()
        .expect("nginx -t");
    assert!(
        t.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&t.stderr)
    );
}

/// An issued product coupon: its SEND confirmed once at WeChat Pay (through 5xx, with the
/// same request number) and registered as usable; the same SEND again changes nothing; a
/// use that arrives before its issue ends as the issue then the use would, unconfirmed;
/// and the store's mirror of the registry holds the entry with HQ's hub down.
#[test]
fn an_issued_product_coupon_is_confirmed_once_and_registered() {
    confirmed_once_and_registered(BRAND);
}

/// The same as a service provider (服务商): the partner path, signed with the provider's
/// mchid, the brand named in the body.
#[test]
fn a_service_provider_confirms_and_registers_the_same_way() {
    confirmed_once_and_registered(&format!("mode = \"partner\"\nmchid = \"{MCHID}\""));
}

fn confirmed_once_and_registered(mode: &str) {
    use redeemd::sim::product_coupon::{SimProductCoupon, SimStock};
    let mut chain = Chain::start(&["storeA"], true);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let keys = Keys::new();
    let sim = keys.product_coupon_sim();
    let server = rt
        .block_on(sim.start())
        .expect("the product-coupon simulator");
    let wechatpay = keys.wechatpay.clone();
    let setup = keys.fleet(
        &chain.hub.url(),
        &["storeA"],
        "127.0.0.1:0",
        &server.url(),
        mode,
    );
    let fleet = setup.start(false);
    let url = notify_url(&fleet);
    let notifier = wechatpay_notifier(&wechatpay, APIV3_KEY, &url);
    let coupon = |state: &str| SimProductCoupon {
        openid: "oUser0001".into(),
        product_coupon_id: "1000000013".into(),
        stock_id: "1000000013001".into(),
        appid: "wx_test_pay_appid".into(),
        state: state.into(),
        confirm_request_no: None,
        title: "拿铁兑换券".into(),
        usage_mode: "SINGLE".into(),
        valid_begin_time: "2026-12-04T00:00:00+08:00".into(),
        valid_end_time: "2026-12-31T23:59:59+08:00".into(),
    };
    let hub = chain.hub.url();

    // The stock may be used at 60 stores (two pages of them), for ¥32.
    let stores: Vec<String> = (1..=60).map(|i| format!("S{i:03}")).collect();
    sim.set_stock(
        "1000000013001",
        SimStock {
            store_scope: "SPECIFIC".into(),
            stores: stores.clone(),
            value: Some(3200),
        },
    );
    // Issued; WeChat Pay fails the first two confirms; the third lands, once.
    sim.issue("PC00000011", coupon("CONFIRMING"));
    sim.fail_next(2);
    let send = notifier
        .body(
            "EV-SEND-11",
            "PRODUCT_COUPON.SEND",
            &send_resource("PC00000011"),
        )
        .expect("body");
    assert!(rt.block_on(notifier.deliver(send.clone(), &[])).delivered());
    let entry = wait_registered(&rt, &hub, "PC00000011", "EFFECTIVE");
    assert_eq!(entry["openid"], "oUser0001");
    assert_eq!(entry["title"], "拿铁兑换券");
    assert_eq!(entry["usage_mode"], "SINGLE");
    assert_eq!(entry["last4"], "0011");
    assert_eq!(entry["appid"], "wx_test_pay_appid");
    assert_eq!(entry["value"], 3200);
    assert_eq!(entry["store_scope"], "SPECIFIC");
    assert_eq!(
        entry["store_ids"],
        json!(stores),
        "every page of the stock's stores"
    );
    assert_eq!(sim.coupon("PC00000011").expect("coupon").state, "EFFECTIVE");
    assert_eq!(sim.calls().confirmed, 1);
    let no = sim.coupon("PC00000011").expect("c").confirm_request_no;

    // The same issue four times more, under other notification ids: nothing changes.
    for i in 0..4 {
        let again = notifier
            .body(
                &format!("EV-SEND-11-{i}"),
                "PRODUCT_COUPON.SEND",
                &send_resource("PC00000011"),
            )
            .expect("body");
        assert!(rt.block_on(notifier.deliver(again, &[])).delivered());
    }
    // A later issue's registration proves the repeats were all taken in order before it.
    sim.issue("PC00000012", coupon("CONFIRMING"));
    let marker = notifier
        .body(
            "EV-SEND-12",
            "PRODUCT_COUPON.SEND",
            &send_resource("PC00000012"),
        )
        .expect("body");
    assert!(rt.block_on(notifier.deliver(marker, &[])).delivered());
    wait_registered(&rt, &hub, "PC00000012", "EFFECTIVE");
    assert_eq!(sim.calls().confirmed, 2, "one confirm per coupon");
    assert_eq!(sim.coupon("PC00000011").expect("c").confirm_request_no, no);

    // A use that arrives before its issue: the entry is used, holds the issue's holder, and
    // nothing is confirmed for it.
    let mut used = send_resource("PC00000013");
    used["use_time"] = json!("2026-12-05T12:00:00+08:00");
    let use_first = notifier
        .body("EV-USE-13", "PRODUCT_COUPON.USE", &used)
        .expect("body");
    assert!(rt.block_on(notifier.deliver(use_first, &[])).delivered());
    let send13 = notifier
        .body(
            "EV-SEND-13",
            "PRODUCT_COUPON.SEND",
            &send_resource("PC00000013"),
        )
        .expect("body");
    assert!(rt.block_on(notifier.deliver(send13, &[])).delivered());
    sim.issue("PC00000014", coupon("CONFIRMING"));
    let marker = notifier
        .body(
            "EV-SEND-14",
            "PRODUCT_COUPON.SEND",
            &send_resource("PC00000014"),
        )
        .expect("body");
    assert!(rt.block_on(notifier.deliver(marker, &[])).delivered());
    wait_registered(&rt, &hub, "PC00000014", "EFFECTIVE");
    let e13 = registered(&rt, &hub, "PC00000013").expect("PC00000013 registered");
    assert_eq!(e13["state"], "USED");
    assert_eq!(e13["openid"], "oUser0001");
    assert_eq!(
        sim.calls().confirmed,
        3,
        "no confirm for a coupon already used"
    );
    // Confirmed before, by another of the brand's tools under its own request number:
    // WeChat Pay refuses this confirm (not waiting for one), HQ asks, and registers it.
    let mut confirmed_elsewhere = coupon("EFFECTIVE");
    confirmed_elsewhere.confirm_request_no = Some("BRAND-TOOL-15".into());
    sim.issue("PC00000015", confirmed_elsewhere);
    let send15 = notifier
        .body(
            "EV-SEND-15",
            "PRODUCT_COUPON.SEND",
            &send_resource("PC00000015"),
        )
        .expect("body");
    assert!(rt.block_on(notifier.deliver(send15, &[])).delivered());
    let e15 = wait_registered(&rt, &hub, "PC00000015", "EFFECTIVE");
    assert_eq!(e15["title"], "拿铁兑换券");
    assert_eq!(sim.calls().queries, 1);
    assert_eq!(
        sim.calls().confirmed,
        3,
        "confirmed once, by the other tool"
    );
    let metrics = get(&fleet.http_url(), "/metrics").body;
    assert!(
        metrics.contains("redeemd_product_coupon_confirms_total{outcome=\"confirmed\"} 4"),
        "{metrics}"
    );

    let deadline = std::time::Instant::now() + WAIT;
    while metric(&fleet.http_url(), "redeemd_product_coupons_registered") != 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "the registry's gauge never said 5"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The store's copy of the registry holds it, and still does with HQ's hub gone.
    let leaf = chain.leaf_url("storeA");
    let deadline = std::time::Instant::now() + WAIT;
    while registered(&rt, &leaf, "PC00000011").is_none_or(|e| e["state"] != "EFFECTIVE") {
        assert!(
            std::time::Instant::now() < deadline,
            "the store's mirror never caught up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    fleet.kill9();
    chain.hub.kill();
    let at_store = registered(&rt, &leaf, "PC00000011").expect("in the store's mirror");
    assert_eq!(at_store["state"], "EFFECTIVE");
    assert_eq!(at_store["openid"], "oUser0001");
}

/// Uses WeChat Pay reports and no till made (a product coupon's, a merchant coupon's) are
/// shown as `redeemed_outside` (API, CSV, metric), enter the chain's record of redeemed
/// codes, and a till of the store refuses such a code with its WAN and WeChat down; a use
/// a till made is matched to its row, not counted twice.
#[test]
fn a_use_outside_the_tills_is_shown_and_refused_offline_and_a_tills_own_is_not_counted_twice() {
    let mut chain = Chain::start(&["storeA"], true);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let keys = Keys::new();
    let setup = keys.fleet(&chain.hub.url(), &["storeA"], "127.0.0.1:0", NOWHERE, BRAND);
    let fleet = setup.start(false);
    let base = fleet.http_url();
    let notifier = wechatpay_notifier(&keys.wechatpay, APIV3_KEY, &notify_url(&fleet));
    let till = Till::in_named_store(
        "storeA",
        &chain.leaf_url("storeA"),
        "status_interval = \"1s\"\n",
        Setup {
            till_name: "a1",
            ..Setup::default()
        },
    );
    let [product, merchant, mine, fresh] = <[String; 4]>::try_from(codes(81, 4)).expect("4");
    till.sim.add_codes(&[&product, &merchant, &mine, &fresh]);
    let daemon = till.start();
    let tell = |id: &str, event_type: &str, code: &str, at: &str| {
        let resource = json!({
            "coupon_code": code,
            "stock_id": "1000000013001",
            "product_coupon_id": "1000000013",
            "openid": "oUser0001",
            "use_time": at,
        });
        let body = notifier.body(id, event_type, &resource).expect("body");
        assert!(rt.block_on(notifier.deliver(body, &[])).delivered(), "{id}");
    };

    // A till's own redemption reaches HQ first; WeChat Pay then reports that use.
    let x = post_json(&daemon.http_url(), "/v1/scans", &json!({ "code": mine })).json();
    assert_eq!(x["outcome"], "redeemed", "{x}");
    wait_for("the till's row at HQ", || {
        fleet_rows_in(&base, "redeemed").len() == 1
    });
    tell(
        "EV-USE-MINE",
        "COUPON.USE",
        &mine,
        "2026-12-05T10:00:00+08:00",
    );
    // Uses outside the tills, each reported twice (once under another id).
    for (id, event_type, code) in [
        ("EV-USE-P", "PRODUCT_COUPON.USE", &product),
        ("EV-USE-M", "COUPON.USE", &merchant),
    ] {
        tell(id, event_type, code, "2026-12-05T11:00:00+08:00");
        tell(
            &format!("{id}-again"),
            event_type,
            code,
            "2026-12-05T11:00:00+08:00",
        );
    }
    wait_for("two uses outside the tills at HQ", || {
        fleet_rows_in(&base, "redeemed_outside").len() == 2
    });
    let outside = fleet_rows_in(&base, "redeemed_outside");
    let mut apis: Vec<&str> = outside.iter().filter_map(|r| r["api"].as_str()).collect();
    apis.sort_unstable();
    assert_eq!(apis, ["coupon", "product_coupon"], "{outside:?}");
    for r in &outside {
        assert_eq!(r["store"], "", "{r}");
        assert_eq!(r["reason_code"], "redeemed_outside", "{r}");
    }
    // The till's own use: its row only.
    let found = post_json(&base, "/v1/fleet/codes", &json!({ "code": mine })).json();
    assert_eq!(found.as_array().map(Vec::len), Some(1), "{found}");
    assert_eq!(found[0]["store"], "storeA", "{found}");
    assert_eq!(
        metric(&base, "redeemd_fleet_redeemed_outside"),
        2,
        "the metric counts the two outside uses"
    );
    let csv = get(&base, "/v1/fleet/export.csv").body;
    let outside_lines = csv
        .lines()
        .filter(|l| l.starts_with(",,") && l.contains(",redeemed_outside,"))
        .count();
    assert_eq!(outside_lines, 2, "{csv}");
    assert!(!csv.contains(&merchant), "codes never in full: {csv}");
    // HQ's record of redeemed codes says outside; the store's mirror catches up.
    let leaf = chain.leaf_url("storeA");
    wait_for("the store's mirror of the outside use", || {
        kv_value(&rt, &leaf, "redeemd_redeemed", &merchant).is_some_and(|v| v["outside"] == true)
    });
    assert_eq!(
        kv_value(&rt, &leaf, "redeemd_redeemed", &mine).expect("the till's own")["till"],
        "a1"
    );

    // The store's WAN and WeChat go down: the code used outside is refused; another is
    // accepted offline as before.
    chain.hub.kill();
    till.sim.set_down(true);
    let y = post_json(
        &daemon.http_url(),
        "/v1/scans",
        &json!({ "code": merchant }),
    )
    .json();
    assert_eq!(y["outcome"], "refused_offline", "{y}");
    assert_eq!(y["reason_code"], "redeemed_outside", "{y}");
    let z = post_json(&daemon.http_url(), "/v1/scans", &json!({ "code": fresh })).json();
    assert_eq!(z["outcome"], "accepted_offline", "{z}");
    assert_eq!(till.sim.card.consumed_count(&merchant), 0);
    drop((daemon, fleet));
}
