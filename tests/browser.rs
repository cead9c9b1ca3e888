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
