//! Benchmark 2p: product coupons at the till, in this process, against a local
//! `nats-server` holding the store's registry (the KV bucket the store's mirror is) and the
//! product-coupon simulator answering at once.

use super::{Online, ms, pipeline_with, store_config};
use redeemd::clock::SystemClock;
use redeemd::config::Config;
use redeemd::guard::bucket::ClaimBucket;
use redeemd::guard::product_coupons::subject;
use redeemd::ledger::note_file::NoteFile;
use redeemd::metrics::Metrics;
use redeemd::model::claim_key::CodeKey;
use redeemd::model::code::Code;
use redeemd::model::frame::Frame;
use redeemd::model::product_coupon::{CouponState, Details, Entry};
use redeemd::model::row::PayOrder;
use redeemd::model::scan::Scan;
use redeemd::redeem::product_coupon::ProductCouponApi;
use redeemd::redeem::store_guard::StoreGuard;
use redeemd::sim::pay::{generate_key, pem};
use redeemd::sim::product_coupon::{BrandIdentity, ProductCouponSim, SimProductCoupon, SimStock};
use redeemd::wechatpay::pay::{PayApi, PayApiParts};
use redeemd::wechatpay::pay_sign::{Caller, RequestAuth, Verifier};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

const BRAND_ID: &str = "120344";
const SERIAL: &str = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1";
const KEY_ID: &str = "PUB_KEY_ID_0000000000000000000000000000BNCH";
const APPID: &str = "wx_bench_brand";
const STOCK: &str = "1000000013001";
const CODE_KEY: &[u8] = b"bench-code-key-0123456789abcdef-0123";

fn config(dir: &Path, nats: &str) -> Config {
    let text = format!(
        r#"database = "pc.db"
till = "bench-pc"

[[scanner]]
name = "bench"
type = "stdin"

[wechat_pay]
mchid = "1900000109"
appid = "{APPID}"
serial_no = "{SERIAL}"
private_key_file = "brand_key.pem"
public_key_id = "{KEY_ID}"
public_key_file = "pub_key.pem"
mode = "brand"
brand_id = "{BRAND_ID}"
store_id = "S001"

[[route]]
pattern = "PC[0-9]{{10}}"
api = "product_coupon"

[store]
name = "bench"
nats_url = "{nats}"
code_key_file = "code.key"
"#
    );
    let path = dir.join("pc.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path).unwrap()
}

/// The registry's entry of a coupon issued and confirmed.
fn entry(code: &str) -> Entry {
    Entry {
        state: CouponState::Effective,
        state_at: "2026-01-01T00:00:01+08:00".into(),
        state_rank: 1,
        last4: code[code.len() - 4..].into(),
        openid: Some("oBench".into()),
        product_coupon_id: Some("1000000013".into()),
        stock_id: Some(STOCK.into()),
        valid_begin_time: Some("2026-01-01T00:00:00+08:00".into()),
        valid_end_time: Some("2099-12-31T23:59:59+08:00".into()),
        details: Details {
            appid: Some(APPID.into()),
            title: Some("拿铁兑换券".into()),
            value: Some(3200),
            usage_mode: Some("SINGLE".into()),
            store_scope: Some("ALL".into()),
            store_ids: None,
        },
    }
}

/// Per coupon, (total ms, ms in API calls) of scan → held and of order → redeemed; and the
/// registry lookup alone (ms).
pub async fn bench(dir: &Path, n: usize, nats: &str) -> (Online, Online, Vec<f64>) {
    let (brand, brand_der) = generate_key().unwrap();
    let (wechat, _) = generate_key().unwrap();
    let wechat_public = wechat.public_spki_der().unwrap();
    let sim = ProductCouponSim::new(
        BrandIdentity {
            brand_id: BRAND_ID.into(),
            brand_serial: SERIAL.into(),
            partner_mchid: "1900000109".into(),
            public_key_id: KEY_ID.into(),
        },
        brand.public_spki_der().unwrap(),
        wechat,
    );
    sim.set_stock(
        STOCK,
        SimStock {
            value: Some(3200),
            ..SimStock::default()
        },
    );
    let server = sim.start().await.unwrap();
    let cfg = config(dir, nats);
    let mut verifier = Verifier::default();
    verifier
        .add_public_key_pem(KEY_ID, pem("PUBLIC KEY", &wechat_public).as_bytes())
        .unwrap();
    let api = Arc::new(ProductCouponApi {
        pay: PayApi::new(PayApiParts {
            http: reqwest::Client::new(),
            appid: APPID.into(),
            auth: RequestAuth {
                caller: Caller::Brand(BRAND_ID.into()),
                serial_no: SERIAL.into(),
                signer: redeemd::wechatpay::pay_sign::Signer::from_pkcs8_der(&brand_der).unwrap(),
            },
            verifier,
            public_key_id: Some(KEY_ID.into()),
            primary: server.url(),
            backup: server.url(),
            clock: Arc::new(SystemClock),
        }),
        partner_brand: None,
        store_id: Some("S001".into()),
    });

    // The store's registry, with every coupon issued and confirmed.
    let key = CodeKey::from_bytes(CODE_KEY).unwrap();
    let client = async_nats::connect(nats).await.unwrap();
    redeemd::fleet::streams::ensure_product_coupon_bucket(&client)
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    let warm_up = n / 10;
    let codes: Vec<String> = (0..warm_up + n)
        .map(|i| format!("PC{:010}", 7_000_000 + i))
        .collect();
    for code in &codes {
        let e = entry(code);
        js.publish(
            subject(&key.claim_key(&Code::new(code.clone()))),
            serde_json::to_vec(&e).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
        sim.issue(
            code,
            SimProductCoupon {
                openid: "oBench".into(),
                product_coupon_id: "1000000013".into(),
                stock_id: STOCK.into(),
                appid: APPID.into(),
                state: "EFFECTIVE".into(),
                confirm_request_no: None,
                title: "拿铁兑换券".into(),
                usage_mode: "SINGLE".into(),
                valid_begin_time: "2026-01-01T00:00:00+08:00".into(),
                valid_end_time: "2099-12-31T23:59:59+08:00".into(),
            },
        );
    }

    let store = store_config(nats);
    let (notes, _) = NoteFile::open(&dir.join("pc.db")).unwrap();
    let guard = Arc::new(
        StoreGuard::new(
            ClaimBucket::connect(&store, "bench-pc").await.unwrap(),
            key,
            "bench-pc",
            cfg.offline.online_wait,
            false,
            Arc::new(Metrics::default()),
            Arc::new(SystemClock),
        )
        .with_notes(notes),
    );
    // The registry lookup alone, over the codes (each read once, as a scan reads it).
    let mut lookups = Vec::with_capacity(codes.len());
    for code in &codes {
        let t0 = Instant::now();
        let found = guard
            .product_coupon(&Code::new(code.clone()), std::time::Duration::ZERO)
            .await;
        lookups.push(ms(t0.elapsed()));
        assert!(matches!(found, Ok(Some(_))), "{found:?}");
    }
    let p = pipeline_with(&cfg, &dir.join("pc.db"), None, Some(guard), Some(api));
    let mut held = Online {
        measured: Vec::with_capacity(n),
        warm_up: Vec::with_capacity(warm_up),
    };
    let mut used = Online {
        measured: Vec::with_capacity(n),
        warm_up: Vec::with_capacity(warm_up),
    };
    for (i, code) in codes.iter().enumerate() {
        // `SCAN_GAP_MS`: a pause before each coupon (not measured), as a till's scans come.
        if let Some(gap) = std::env::var("SCAN_GAP_MS")
            .ok()
            .and_then(|g| g.parse().ok())
        {
            tokio::time::sleep(std::time::Duration::from_millis(gap)).await;
        }
        let t0 = Instant::now();
        let pending = p
            .intake
            .record(Scan {
                scanner: "bench".into(),
                frame: Frame::Code {
                    code: Code::new(code.clone()),
                    aim_id: None,
                },
                at: chrono::Utc::now().timestamp_millis(),
                sale: Default::default(),
            })
            .await;
        let o = p.intake.answer(pending).await;
        let scan_ms = ms(t0.elapsed());
        assert_eq!(o.outcome.as_str(), "held", "{:?}", o.reason);
        let id = o.id.unwrap();

        let before = p.metrics.call_seconds_total();
        let t0 = Instant::now();
        let order = PayOrder {
            transaction_id: Some(format!("4200000000{i:018}")),
            ..PayOrder::default()
        };
        let (_, outcome) = p.orders.attach_and_use(id, order).await.unwrap().unwrap();
        let order_ms = ms(t0.elapsed());
        assert_eq!(outcome.as_str(), "redeemed");
        let api_ms = (p.metrics.call_seconds_total() - before) * 1000.0;
        let (h, u) = if i >= warm_up {
            (&mut held.measured, &mut used.measured)
        } else {
            (&mut held.warm_up, &mut used.warm_up)
        };
        h.push((scan_ms, 0.0));
        u.push((order_ms, api_ms));
    }
    let _ = p.stop.send(true);
    drop(server);
    (held, used, lookups)
}
