//! The manager, kiosk and fleet pages in headless Chromium: they update live when a code is
//! scanned, and show a known day's counts and chart in zh-CN and en. Screenshots go to
//! `target/tmp/screenshots/`, and to `$REDEEMD_SCREENSHOTS` if set: the pictures in
//! `docs/screenshots/` are made with
//! `REDEEMD_SCREENSHOTS=$PWD/docs/screenshots cargo test --test browser`.

mod support;

#[path = "support/cdp.rs"]
mod cdp;

use std::time::Duration;
use support::*;

#[test]
fn manager_and_kiosk_pages_update_when_a_code_is_scanned() {
    let till = Till::new(Setup {
        // The pages' default language.
        language: "zh-CN",
        card_route_toml: "name = \"火锅套餐券\"".into(),
        ..Setup::default()
    });
    let c = codes(50, 2);
    till.sim.add_codes(&c[..1]);
    // A merchant coupon accepted offline yesterday and still waiting (this till has no
    // WeChat Pay credentials, so it stays queued): the page's "pending" card counts the whole backlog.
    Seed::open(&till.dir.path().join("ledger/redeemd.db")).row(&SeedRow {
        code: "BF0000000001",
        api: "coupon",
        till_outcome: Some("accepted_offline"),
        till: "till",
        scanned_at: chrono::Utc::now().timestamp_millis() - 86_400_000 - 3_600_000,
        ..SeedRow::default()
    });
    let d = till.start();
    let base = d.http_url();
    let mut b = cdp::Browser::launch();
    let manager = b.open(&format!("{base}/"));
    let kiosk = b.open(&format!("{base}/kiosk"));
    let live = Duration::from_secs(20);
    b.wait_for(
        &manager,
        "document.getElementById('conn').dataset.live === '1'",
        live,
    );
    b.wait_for(
        &kiosk,
        "document.getElementById('status').dataset.live === '1'",
        live,
    );
    b.wait_for(
        &kiosk,
        "document.getElementById('text').textContent === '请扫码'",
        live,
    );

    till.pty.scan(&c[0]);
    b.wait_for(
        &kiosk,
        "document.getElementById('screen').dataset.outcome === 'redeemed'",
        live,
    );
    assert_eq!(
        b.eval(&kiosk, "document.getElementById('text').textContent"),
        "核销成功"
    );
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    let extra = std::env::var("REDEEMD_SCREENSHOTS").ok();
    let shoot = |b: &mut cdp::Browser, page: &cdp::Page, name: &str| {
        b.screenshot(page, &dir.join(name));
        if let Some(extra) = &extra {
            b.screenshot(page, &std::path::Path::new(extra).join(name));
        }
    };
    shoot(&mut b, &kiosk, "kiosk.png");
    let shown = masked(&c[0]);
    b.wait_for(
        &manager,
        &format!("[...document.querySelectorAll('#log td.code')].some(td => td.textContent === '{shown}')"),
        live,
    );
    b.wait_for(
        &manager,
        "document.querySelector('.card[data-state=redeemed] b').textContent === '1'",
        live,
    );
    assert_eq!(
        b.eval(
            &manager,
            "document.querySelector('.card[data-state=queued] b').textContent"
        ),
        "1",
        "yesterday's pending coupon is counted"
    );
    // The manager page shows codes masked, except in the detail view.
    assert_eq!(
        b.eval(
            &manager,
            &format!("document.body.innerText.includes('{}')", c[0])
        ),
        false
    );
    b.eval(
        &manager,
        "document.querySelector('#log tr.row').click(), true",
    );
    b.wait_for(
        &manager,
        &format!(
            "document.getElementById('detail').textContent.includes('{}')",
            c[0]
        ),
        live,
    );
    // A page a manager reads without help: column headers, the coupon's title, the route's
    // name, a timeline of every call, and today's redemptions per hour.
    assert_eq!(
        b.eval(
            &manager,
            "[...document.querySelectorAll('#log th')].map(th => th.textContent).join('|')"
        ),
        "编号|时间|状态|券名|面值|订单|券码|扫码次数|原因"
    );
    b.wait_for(
        &manager,
        "!!document.querySelector('#timeline li[data-call=\"code/consume\"]')",
        live,
    );
    assert_eq!(
        b.eval(
            &manager,
            "document.querySelector('#fields dd[data-field=route]').textContent"
        ),
        "火锅套餐券"
    );
    assert_eq!(
        b.eval(
            &manager,
            "document.querySelector('#fields dd[data-field=title]').textContent"
        ),
        "优惠券 pTESTcardid",
        "the card's title from card/get"
    );
    assert_eq!(
        b.eval(&manager, "[...document.querySelectorAll('#chart rect')].reduce((n, r) => n + Number(r.dataset.count), 0)"),
        1
    );
    assert_eq!(
        b.eval(&manager, "document.body.innerText.includes('{')"),
        false,
        "no raw JSON on the page"
    );

    b.screenshot(&manager, &dir.join("manager-live.png"));

    // Void from the page: a redeemed card code cannot be returned, so it goes to review;
    // then the manager resolves it from the same panel.
    b.eval(&manager, "document.getElementById('d-note').value = '顾客退单', document.getElementById('d-void').click(), true");
    b.wait_for(
        &manager,
        "document.querySelector('#fields dd[data-field=state]').textContent === '待复核'",
        live,
    );
    b.wait_for(
        &manager,
        "!!document.querySelector('#review tr[data-id]')",
        live,
    );
    b.eval(&manager, "document.getElementById('d-note').value = '已补偿顾客', document.querySelector('[data-resolve=rejected]').click(), true");
    b.wait_for(
        &manager,
        "document.querySelector('#fields dd[data-field=state]').textContent === '无法核销'",
        live,
    );
    b.wait_for(
        &manager,
        "!document.querySelector('#review tr[data-id]')",
        live,
    );
    let row = till.row(&c[0]);
    assert_eq!(row["state"], "rejected", "{row}");
    assert_eq!(row["resolution"], "已补偿顾客", "{row}");
    assert_eq!(row["void"]["reason"], "顾客退单", "{row}");
    assert_eq!(till.sim.card.consumed_count(&c[0]), 1);
    assert!(std::fs::metadata(dir.join("kiosk.png")).unwrap().len() > 1000);

    // A rejected code turns the kiosk red, then it returns to "please scan".
    till.pty.scan(&c[1]);
    b.wait_for(
        &kiosk,
        "document.getElementById('screen').dataset.outcome === 'rejected'",
        live,
    );
    b.wait_for(
        &kiosk,
        "document.getElementById('text').textContent === '请扫码'",
        live,
    );
    d.kill9();
}

/// HQ's fleet page in headless Chromium (zh-CN, its default): a real till at a store that is
/// a leaf node of a real hub, and a till silent for 91 s shown stale, in red.
#[test]
fn fleet_page_shows_tills_stale_ones_and_where_a_code_was_used() {
    let chain = Chain::start(&["store7"], true);
    let setup = FleetSetup::new(&chain.hub.url(), &["store7"], "");
    let text = std::fs::read_to_string(&setup.config)
        .expect("hq.toml")
        .replace("language = \"en\"", "language = \"zh-CN\"");
    std::fs::write(&setup.config, text).expect("hq.toml");
    // A coupon WeChat Pay reported used outside the tills (as HQ's notify consumer records
    // it), already in the read model.
    {
        use redeemd::fleet::read_model::{self, OutsideEvent, OutsideKind};
        let model = read_model::open(&setup.dir.path().join("fleet/fleet.db")).expect("model");
        let at = chrono::Utc::now().timestamp_millis() - 60_000;
        let outside = OutsideEvent {
            notify_id: "EV-USE-OUTSIDE".into(),
            key: "ab".repeat(32),
            api: "product_coupon",
            kind: OutsideKind::Use,
            code_last4: "8001".into(),
            at,
        };
        read_model::apply_outside(&model, &outside, at).expect("recorded");
    }
    let fleet = setup.start(false);
    let base = fleet.http_url();
    let till = Till::in_named_store(
        "store7",
        &chain.leaf_url("store7"),
        "status_interval = \"1s\"",
        Setup {
            till_name: "front1",
            ..Setup::default()
        },
    );
    let c = codes(51, 1);
    till.sim.add_codes(&c);
    let d = till.start();
    till.pty.scan(&c[0]);
    d.settled(&c[0], "redeemed");
    // A till that stopped beating 91 s ago, as its store's stream holds it.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let client = async_nats::connect(chain.leaf_url("store7"))
            .await
            .expect("leaf");
        let js = async_nats::jetstream::new(client);
        let at = chrono::Utc::now().timestamp_millis() - 91_000;
        let beat = serde_json::json!({
            "v": 1, "store": "store7", "till": "back2", "at": at, "backlog": 3, "review": 1,
            "outbox": 0, "scanners": {}, "last_success": null, "version": "0.1.0"
        });
        js.publish("redeemd.status.store7.back2", beat.to_string().into())
            .await
            .expect("publish")
            .await
            .expect("stored");
    });

    let mut b = cdp::Browser::launch();
    let page = b.open(&format!("{base}/"));
    let live = Duration::from_secs(30);
    b.wait_for(&page, "document.title === 'redeemd 连锁总览'", live);
    b.wait_for(
        &page,
        "!!document.querySelector('tr[data-till=\"store7/front1\"]:not(.stale)') \
         && !!document.querySelector('tr.stale[data-till=\"store7/back2\"]')",
        live,
    );
    assert_eq!(
        b.eval(
            &page,
            "getComputedStyle(document.querySelector('tr.stale td')).color"
        ),
        "rgb(180, 35, 24)",
        "a stale till is red"
    );
    b.wait_for(
        &page,
        "document.getElementById('cards').textContent.includes('store7 · 今日核销') \
         && document.querySelector('#cards b').textContent === '1'",
        live,
    );
    b.wait_for(
        &page,
        "document.querySelector('#log td.st-redeemed')?.textContent === '已核销'",
        live,
    );
    // A use outside the tills: its own state, and WeChat Pay in place of a store.
    b.wait_for(
        &page,
        "[...document.querySelectorAll('#log tr')].some((r) => r.textContent.includes('微信支付（收银台外）') \
         && r.querySelector('td.st-redeemed_outside')?.textContent === '收银台外核销')",
        live,
    );
    // Headers and names, not raw JSON.
    assert_eq!(
        b.eval(&page, "document.body.innerText.includes('{')"),
        false
    );
    b.eval(
        &page,
        &format!(
            "document.getElementById('code').value = '{}', document.getElementById('b-lookup').click(), true",
            c[0]
        ),
    );
    b.wait_for(
        &page,
        "document.querySelector('#found li')?.textContent.includes('store7 / front1')",
        live,
    );
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    b.screenshot(&page, &dir.join("fleet.png"));
    if let Ok(extra) = std::env::var("REDEEMD_SCREENSHOTS") {
        b.screenshot(&page, &std::path::Path::new(&extra).join("fleet.png"));
    }
    drop((d, fleet));
}

/// Today's redemptions as the ledger holds them, at known hours (local time, as the page
/// and the daemon both read it): (state, hour, api).
const DAY: &[(&str, u32, &str)] = &[
    ("redeemed", 9, "card"),
    ("redeemed", 9, "card"),
    ("redeemed", 11, "card"),
    ("redeemed", 11, "card"),
    ("redeemed", 11, "card"),
    ("redeemed", 14, "card"),
    ("returned", 15, "coupon"),
    ("rejected", 10, "card"),
    ("rejected", 13, "card"),
    ("review", 12, "card"),
    ("queued", 16, "coupon"),
    ("held", 17, "product_coupon"),
];

/// Writes [`DAY`] (and a coupon still waiting since yesterday) into a till's ledger, with
/// titles, orders and one row's calls, as a day at a till leaves them.
fn seed_day(till: &Till) {
    use chrono::{Local, TimeZone};
    let seed = Seed::open(&till.dir.path().join("ledger/redeemd.db"));
    let today = Local::now().date_naive();
    let at = |hour: u32, minute: u32| {
        Local
            .from_local_datetime(&today.and_hms_opt(hour, minute, 0).unwrap())
            .earliest()
            .unwrap()
            .timestamp_millis()
    };
    for (i, (state, hour, api)) in DAY.iter().enumerate() {
        let code = match *api {
            "coupon" => format!("BF88{i:08}"),
            "product_coupon" => format!("PC88{i:08}"),
            _ => format!("8800{i:08}"),
        };
        let t = at(*hour, 5 + i as u32);
        let reason = match *state {
            "rejected" => Some("card expired"),
            "review" => {
                Some("accepted offline, then refused by WeChat: already redeemed elsewhere")
            }
            _ => None,
        };
        let till_outcome = match *state {
            "rejected" => "rejected",
            "queued" => "accepted_offline",
            "held" => "held",
            _ => "redeemed",
        };
        let order_id = format!("A-{:04}", 1000 + i);
        let id = seed.row(&SeedRow {
            code: &code,
            api,
            route: Some(0),
            state,
            reason,
            till_outcome: Some(till_outcome),
            scanned_at: t,
            redeemed_at: (*state == "redeemed" || *state == "returned").then_some(t + 800),
            title: Some(if *api == "product_coupon" {
                "拿铁兑换券"
            } else {
                "火锅套餐 满100减20"
            }),
            kind: Some("CASH"),
            value: Some(2000),
            order_id: Some(&order_id),
            amount: Some(12800),
            ..SeedRow::default()
        });
        if i == 0 {
            for (call, dt, outcome) in [("code/get", 0, "ok"), ("code/consume", 300, "ok")] {
                seed.call(id, call, t + dt, 180, outcome);
            }
        }
    }
    seed.row(&SeedRow {
        code: "BF8800000099",
        api: "coupon",
        route: Some(0),
        till_outcome: Some("accepted_offline"),
        scanned_at: at(12, 0) - 86_400_000,
        title: Some("饮品券 满30减5"),
        kind: Some("NORMAL"),
        value: Some(500),
        order_id: Some("A-0999"),
        ..SeedRow::default()
    });
}

/// The manager page's cards and chart for a known day, in zh-CN (the default) and in en:
/// today's counts by state (the whole backlog for "pending"), and one bar per hour with
/// that hour's redeemed and returned codes. Its zh-CN picture, with a row's detail and
/// timeline open, is `docs/screenshots/manager.png`.
#[test]
fn manager_page_counts_a_known_day_and_charts_it_in_both_languages() {
    let mut till = Till::new(Setup {
        language: "zh-CN",
        card_route_toml: "name = \"火锅套餐券\"".into(),
        ..Setup::default()
    });
    seed_day(&till);
    let count = |st: &str| DAY.iter().filter(|(s, _, _)| *s == st).count();
    let mut bars = [0usize; 24];
    for (st, hour, _) in DAY {
        if *st == "redeemed" || *st == "returned" {
            bars[*hour as usize] += 1;
        }
    }
    let extra = std::env::var("REDEEMD_SCREENSHOTS").ok();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    let live = Duration::from_secs(20);
    for (lang, labels) in [
        (
            "zh-CN",
            [
                "核销成功",
                "无法核销",
                "待复核",
                "待确认",
                "已保留，等待付款",
                "已退券",
            ],
        ),
        (
            "en",
            [
                "Redeemed",
                "Rejected",
                "Review",
                "Pending",
                "Held, waiting for payment",
                "Returned",
            ],
        ),
    ] {
        till.setup.language = lang;
        till.write_config();
        let d = till.start();
        let mut b = cdp::Browser::launch();
        let page = b.open(&format!("{}/", d.http_url()));
        b.wait_for(
            &page,
            "document.querySelectorAll('.card').length === 6 && document.querySelectorAll('#chart rect').length === 24",
            live,
        );
        for (i, st) in [
            "redeemed", "rejected", "review", "queued", "held", "returned",
        ]
        .iter()
        .enumerate()
        {
            let want = if *st == "queued" {
                count(st) + 1
            } else {
                count(st)
            };
            assert_eq!(
                b.eval(
                    &page,
                    &format!("document.querySelector('.card[data-state={st}] b').textContent")
                ),
                want.to_string(),
                "{lang}: today's {st}"
            );
            assert_eq!(
                b.eval(
                    &page,
                    &format!("document.querySelector('.card[data-state={st}]').textContent")
                ),
                format!("{want}{}", labels[i]),
                "{lang}: the {st} card's label"
            );
        }
        let shown = b.eval(
            &page,
            "[...document.querySelectorAll('#chart rect')].map(r => r.dataset.hour + ':' + r.dataset.count).join(',')",
        );
        let want = bars
            .iter()
            .enumerate()
            .map(|(h, n)| format!("{h}:{n}"))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(shown, serde_json::Value::String(want), "{lang}: the bars");
        let tallest = b.eval(
            &page,
            "Math.max(...[...document.querySelectorAll('#chart rect')].map(r => Number(r.getAttribute('height'))))",
        );
        assert_eq!(tallest, 80, "{lang}: the busiest hour is the tallest bar");
        if lang == "zh-CN" {
            b.eval(
                &page,
                "document.querySelector('#log tr.row:last-child').click(), true",
            );
            b.wait_for(
                &page,
                "!!document.querySelector('#timeline li[data-call=\"code/consume\"]')",
                live,
            );
            b.screenshot(&page, &dir.join("manager.png"));
            if let Some(extra) = &extra {
                b.screenshot(&page, &std::path::Path::new(extra).join("manager.png"));
            }
        }
        drop(b);
        d.kill9();
    }
}
