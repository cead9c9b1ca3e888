//! The manager and kiosk pages in headless Chromium: both update live when a code is
//! scanned. Screenshots go to `target/tmp/screenshots/` (and `$REDEEMD_SCREENSHOTS` if set).

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
    {
        let conn = redeemd::ledger::open_rw(&till.dir.path().join("ledger/redeemd.db")).unwrap();
        let yesterday = chrono::Utc::now().timestamp_millis() - 86_400_000 - 3_600_000;
        conn.execute(
            "INSERT INTO redemptions (code, api, state, till_outcome, scanner, till, scanned_at, updated_at, next_attempt_at) \
             VALUES ('BF0000000001', 'coupon', 'queued', 'accepted_offline', 'front', 'till', ?1, ?1, ?1)",
            [yesterday],
        )
        .unwrap();
    }
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

    shoot(&mut b, &manager, "manager.png");

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
