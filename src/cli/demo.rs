//! `redeemd demo`: the real daemon against a built-in *simulated* WeChat, with codes typed on
//! standard input as the scanner. Nothing here can reach the real WeChat: the simulator is
//! started in this process on a loopback port, and the config pointing at it is generated.

use super::demo_chain::{BRAND_ID, DemoChain, DemoCoupon, DemoKeys, STORE};
use redeemd::config::Config;
use redeemd::daemon::{Daemon, DaemonError, termination_signal};
use redeemd::model::state::TillOutcome;
use redeemd::outcome::Outcome;
use redeemd::sim::card::CardSim;
use redeemd::sim::card::SimCard;
use redeemd::sim::card::SimCode;
use redeemd::sim::pay::PayIdentity;
use redeemd::sim::pay::PaySim;
use redeemd::sim::pay::{CouponState, generate_key, pem};
use redeemd::sim::pay_host::PayHost;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

const APPID: &str = "wx_simulated_demo";
const SECRET: &str = "simulated-demo-secret";

/// Sample codes the simulator knows, with what WeChat will say about them.
pub const SAMPLES: &[(&str, &str, &str)] = &[
    ("123456789001", "NORMAL", "redeems"),
    ("123456789002", "NORMAL", "redeems"),
    ("123456789003", "NORMAL", "redeems"),
    ("123456789010", "CONSUMED", "already redeemed elsewhere"),
    ("123456789011", "EXPIRE", "expired"),
];

/// A member card's code: never consumed, whatever is scanned.
pub const MEMBER_SAMPLE: &str = "123456789020";

/// Sample merchant coupons (WeChat Pay), with what WeChat Pay will say about them.
pub const COUPON_SAMPLES: &[(&str, CouponState, &str)] = &[
    (
        "BF0000000001",
        CouponState::Sended,
        "redeems (merchant coupon)",
    ),
    (
        "BF0000000002",
        CouponState::Sended,
        "redeems (merchant coupon)",
    ),
    ("BF0000000009", CouponState::Used, "already used"),
];
const STOCK_ID: &str = "1212";

/// Product coupons WeChat Pay issues in the demo (with `nats-server` there): the first is
/// held and used with its sale's order, the second held and voided, the third is the
/// reader's to try.
const PRODUCT_COUPONS: &[DemoCoupon] = &[
    DemoCoupon {
        code: "PC0000008001",
        openid: "oDemoCustomer01",
        title: "拿铁兑换券",
    },
    DemoCoupon {
        code: "PC0000008002",
        openid: "oDemoCustomer02",
        title: "拿铁兑换券",
    },
    DemoCoupon {
        code: "PC0000008003",
        openid: "oDemoCustomer03",
        title: "拿铁兑换券",
    },
];
const PUB_KEY_ID: &str = "PUB_KEY_ID_0000000000000000000000000000DEMO";
const MERCHANT_SERIAL: &str = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1";

pub async fn run() -> Result<(), DaemonError> {
    let sim = CardSim::new(APPID, SECRET);
    for (code, status, _) in SAMPLES {
        sim.add_code(code, SimCode::with_status("pDEMO_card_id", status));
    }
    sim.add_card(
        "pDEMO_card_id",
        SimCard::cash("满100减10元代金券", 1000, 10000),
    );
    sim.add_card("pDEMO_member", SimCard::member("会员卡"));
    sim.add_code(MEMBER_SAMPLE, SimCode::normal("pDEMO_member"));
    let sim_err = |e: String| DaemonError::Config(format!("cannot start the simulator: {e}"));
    let server = sim.start().await.map_err(|e| sim_err(e.to_string()))?;

    let dir = fresh_folder().map_err(|e| DaemonError::Config(format!("demo folder: {e}")))?;
    let setup =
        |e: std::io::Error| DaemonError::Config(format!("demo folder {}: {e}", dir.display()));
    let private = |path: &std::path::Path, text: &str| -> Result<(), DaemonError> {
        std::fs::write(path, text).map_err(setup)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(setup)
    };
    private(&dir.join("appsecret"), SECRET)?;

    // WeChat Pay: a fresh merchant key (the brand's too, for product coupons), and a
    // simulator behind a primary and a backup port.
    let (wechat, wechat_der) = generate_key().map_err(sim_err)?;
    let (merchant, merchant_der) = generate_key().map_err(sim_err)?;
    private(
        &dir.join("apiclient_key.pem"),
        &pem("PRIVATE KEY", &merchant_der),
    )?;
    let pay = PaySim::with_wechat_key(
        PayIdentity {
            mchid: "1900000109".into(),
            appid: APPID.into(),
            merchant_serial: MERCHANT_SERIAL.into(),
            public_key_id: PUB_KEY_ID.into(),
        },
        merchant.public_spki_der().map_err(sim_err)?,
        wechat,
    )
    .map_err(sim_err)?;
    std::fs::write(dir.join("pub_key.pem"), pay.public_key_pem()).map_err(setup)?;
    for (code, state, _) in COUPON_SAMPLES {
        pay.add_coupon_in(code, STOCK_ID, *state);
    }
    pay.add_stock(STOCK_ID, "满50减5元商家券", 500, 5000);
    // The chain: HQ listening to WeChat Pay, which issues product coupons; the till then
    // uses them at the same simulated WeChat Pay as merchant coupons.
    let keys = DemoKeys {
        wechat_der: &wechat_der,
        brand_der: &merchant_der,
        brand_serial: MERCHANT_SERIAL,
    };
    let chain = DemoChain::start(&dir, &keys).await;
    let pay_server = || async {
        match &chain {
            Ok(Some(c)) => {
                PayHost {
                    merchant: pay.clone(),
                    product_coupons: c.sim.clone(),
                }
                .start()
                .await
            }
            _ => pay.start().await,
        }
    };
    let pay_primary = pay_server().await.map_err(|e| sim_err(e.to_string()))?;
    let pay_backup = pay_server().await.map_err(|e| sim_err(e.to_string()))?;
    let chain_toml = match &chain {
        Ok(Some(c)) => format!(
            r#"mode = "brand"
brand_id = "{BRAND_ID}"
store_id = "DEMO-S1"

[[route]]
name = "商品券"
pattern = "PC[0-9]{{10}}"
api = "product_coupon"

[store]
name = "{STORE}"
nats_url = "{url}"
code_key_file = "chain/code.key"
"#,
            url = c.store_url
        ),
        _ => String::new(),
    };
    // The pages on the usual port when it is free, else on any free port.
    let http_listen = std::net::TcpListener::bind(redeemd::config::http::DEFAULT_LISTEN)
        .or_else(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .and_then(|l| l.local_addr())
        .map(|a| a.to_string())
        .map_err(setup)?;
    let config_path: PathBuf = dir.join("redeemd.toml");
    let text = format!(
        r#"# Generated by `redeemd demo`: points at a SIMULATED WeChat on this machine.
database = "redeemd.db"
till = "demo-till"

[[scanner]]
name = "keyboard"
type = "stdin"

[wechat]
appid = "{APPID}"
secret_file = "appsecret"
base_url = "{url}"

[[route]]
name = "代金券"
pattern = "[0-9]{{12}}"
api = "card"

[wechat_pay]
mchid = "1900000109"
appid = "{APPID}"
serial_no = "{MERCHANT_SERIAL}"
private_key_file = "apiclient_key.pem"
public_key_id = "{PUB_KEY_ID}"
public_key_file = "pub_key.pem"
base_url = "{pay_primary}"
backup_url = "{pay_backup}"
{chain_toml}
[[route]]
name = "商家券"
pattern = "BF[0-9A-Z]{{8,30}}"
api = "coupon"
stock_id = "{STOCK_ID}"

[offline]
accept = true
online_wait = "1500ms"

[http]
listen = "{listen}"
language = "en"
"#,
        url = server.url(),
        listen = http_listen,
        pay_primary = pay_primary.url(),
        pay_backup = pay_backup.url(),
    );
    std::fs::write(&config_path, &text).map_err(setup)?;
    let config = Config::load(&config_path).map_err(|e| DaemonError::Config(e.to_string()))?;

    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "redeemd demo — against a SIMULATED WeChat at {} (no real coupons are touched)\n",
        server.url()
    );
    let _ = writeln!(
        out,
        "Type a code and press Enter, as a scanner would. Codes the simulator knows:"
    );
    for (code, _, what) in SAMPLES {
        let _ = writeln!(out, "  {code}   {what}");
    }
    let _ = writeln!(
        out,
        "  {MEMBER_SAMPLE}   a member card: refused, never consumed"
    );
    for (code, _, what) in COUPON_SAMPLES {
        let _ = writeln!(out, "  {code}   {what}");
    }
    let _ = writeln!(
        out,
        "Any other 12-digit code is unknown to WeChat; an 18-digit code starting 10-15 is a payment code.\n\
         Scan a code twice to see a duplicate. Ctrl-D or Ctrl-C ends the demo.\n\
         Ledger: {}   (afterwards: redeemd log --config {})\n\
         Manager page: http://{http_listen}/   kiosk page: http://{http_listen}/kiosk\n\
         Void a sale: click a redemption on the manager page, give a reason, press \"Void sale\"\n\
         (a merchant coupon is given back, a card code goes to review), or in another terminal:\n  \
         redeemd void --config {} ID --reason \"customer returned the goods\"\n",
        config.database.display(),
        config_path.display(),
        config_path.display()
    );
    let _ = out.flush();

    let chain = match chain {
        Ok(Some(chain)) => {
            for c in PRODUCT_COUPONS {
                match chain.issue(c).await {
                    Ok(entry) => {
                        let _ = writeln!(
                            out,
                            "Product coupon (商品券) {}: issued by WeChat Pay to {} → confirmed by HQ → registered; the store's copy says {} ({}).",
                            c.code,
                            c.openid,
                            entry["state"].as_str().unwrap_or("?"),
                            entry["title"].as_str().unwrap_or("?"),
                        );
                    }
                    Err(e) => {
                        let _ = writeln!(out, "Product coupon {}: not registered: {e}", c.code);
                    }
                }
            }
            let _ = writeln!(out);
            Some(chain)
        }
        Ok(None) => {
            let _ = writeln!(
                out,
                "(No nats-server here: the demo runs without HQ and product coupons; scripts/test.sh installs it.)\n"
            );
            None
        }
        Err(e) => {
            let _ = writeln!(out, "(The demo's HQ did not start: {e})\n");
            None
        }
    };
    let _ = out.flush();

    let loaded = redeemd::daemon::load::load(config)
        .map_err(|f| DaemonError::Config(f.problems.join("; ")))?;
    let mut daemon = Daemon::new(loaded)?;
    daemon.exit_when_sources_end = true;
    let bus = daemon.bus();
    let mut outcomes = bus.outcomes.subscribe();
    let mut settled = bus.settled.subscribe();
    let printer = tokio::spawn(async move {
        loop {
            tokio::select! {
                Ok(o) = outcomes.recv() => print_outcome(&o),
                Ok(r) = settled.recv() => {
                    // Only later changes: the answer itself is printed above.
                    if r.till_outcome == Some(TillOutcome::AcceptedOffline) || r.void.is_some() {
                        let why = r.reason.as_deref().map(|w| format!(" — {w}")).unwrap_or_default();
                        println!("  later: #{} {} is now {}{why}", r.id, r.code.expose(), r.state);
                    }
                }
                else => break,
            }
        }
    });
    let walk = chain
        .is_some()
        .then(|| tokio::spawn(product_coupon_walk(format!("http://{http_listen}"))));
    let result = daemon.run(termination_signal()).await;
    printer.abort();
    if let Some(w) = walk {
        w.abort();
    }
    drop((server, pay_primary, pay_backup, chain));
    result
}

/// Product coupons at the till, shown through the till's own HTTP API as a POS would use
/// it: one held and then used with its sale's WeChat Pay order, one held and voided.
async fn product_coupon_walk(base: String) {
    let http = reqwest::Client::new();
    let post = |path: String, body: serde_json::Value| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move {
            let r = http.post(url).json(&body).send().await.ok()?;
            r.json::<serde_json::Value>().await.ok()
        }
    };
    for _ in 0..100 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    println!("\nProduct coupons at the till, as a POS uses them (POST {base}/v1/scans ...):");
    let scan = |code: &str, sale: &str| {
        post(
            "/v1/scans".into(),
            serde_json::json!({ "code": code, "order_id": sale, "amount": 3800 }),
        )
    };
    let Some(held) = scan("PC0000008001", "DEMO-SALE-1").await else {
        println!("  (the till did not answer)");
        return;
    };
    let id = held["id"].clone();
    // The held answer is printed by the outcome printer: let it come first.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let order = r#"{"transaction_id":"4200000000202612050000000001"}"#;
    println!(
        "  The customer pays; the POS attaches the sale's WeChat Pay order:\n    curl -s -X POST {base}/v1/redemptions/{id}/order -H 'Content-Type: application/json' -d '{order}'"
    );
    let body = serde_json::from_str(order).unwrap_or_default();
    if let Some(used) = post(format!("/v1/redemptions/{id}/order"), body).await {
        println!(
            "  → #{id} {}: used at WeChat Pay with transaction_id {} (request {})",
            used["outcome"].as_str().unwrap_or("?"),
            used["transaction_id"].as_str().unwrap_or("?"),
            used["use_request_no"].as_str().unwrap_or("?"),
        );
    }
    if let Some(held) = scan("PC0000008002", "DEMO-SALE-2").await {
        let id = held["id"].clone();
        let body = serde_json::json!({ "reason": "the customer changed their mind", "by": "demo" });
        if let Some(v) = post(format!("/v1/redemptions/{id}/void"), body).await {
            println!(
                "  → #{id} {}: voided before payment; nothing was used at WeChat Pay",
                v["state"].as_str().unwrap_or("?")
            );
        }
    }
    println!(
        "  Try it: type PC0000008003 (held), then attach an order with the curl line above, with its number.\n"
    );
}

fn print_outcome(o: &Outcome) {
    let mark = match o.outcome {
        TillOutcome::Redeemed => "✔ redeemed",
        TillOutcome::Rejected => "✘ rejected",
        TillOutcome::Duplicate => "↺ duplicate",
        TillOutcome::AcceptedOffline => "… accepted offline",
        TillOutcome::RefusedOffline => "✘ refused offline",
        TillOutcome::PaymentCode => "¥ payment code (for the POS to charge)",
        TillOutcome::Held => "⏸ held for the sale (used once it is paid)",
    };
    let reason = o
        .reason
        .as_deref()
        .map(|r| format!(" — {r}"))
        .unwrap_or_default();
    let what = match (&o.title, o.value) {
        (Some(title), Some(fen)) => format!(" [{title}, ¥{}]", redeemd::model::catalog::yuan(fen)),
        (Some(title), None) => format!(" [{title}]"),
        _ => String::new(),
    };
    let id = o.id.map(|i| format!("#{i} ")).unwrap_or_default();
    println!(
        "{mark}: {id}{}{what} ({} ms){reason}",
        o.code.expose(),
        o.latency_ms
    );
}

/// A folder of the demo's own, new: a demo never starts on an earlier one's ledger (a
/// process id is used again once its process is gone, and its folder may still be there).
fn fresh_folder() -> std::io::Result<std::path::PathBuf> {
    let base = std::env::temp_dir();
    let pid = std::process::id();
    let mut n = 0;
    loop {
        let dir = match n {
            0 => base.join(format!("redeemd-demo-{pid}")),
            _ => base.join(format!("redeemd-demo-{pid}-{n}")),
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_demo_never_starts_in_an_earlier_ones_folder() {
        let first = fresh_folder().expect("a folder");
        let second = fresh_folder().expect("another folder");
        assert_ne!(
            first, second,
            "the first is still there: the second is a new one"
        );
        for d in [first, second] {
            assert_eq!(std::fs::read_dir(&d).expect("the folder").count(), 0);
            std::fs::remove_dir(d).expect("cleaned up");
        }
    }
}
