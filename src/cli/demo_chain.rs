//! The chain part of `redeemd demo`: HQ's hub and the demo's store on real `nats-server`s,
//! `redeemd fleet` listening to a simulated WeChat Pay, and product coupons (商品券) that
//! WeChat Pay issues through its notifier, HQ confirms and registers, and the store keeps a
//! copy of. It needs `nats-server` (scripts/test.sh installs it); without one the demo runs
//! without a chain, and says so.

use redeemd::guard::nats::last_of_subject;
use redeemd::guard::product_coupons;
use redeemd::model::claim_key::CodeKey;
use redeemd::model::code::Code;
use redeemd::sim::http::SimServer;
use redeemd::sim::nats_servers::{self, hub_config, leaf_config};
use redeemd::sim::notifier::Notifier;
use redeemd::sim::pay::pem;
use redeemd::sim::product_coupon::{BrandIdentity, ProductCouponSim, SimProductCoupon, SimStock};
use redeemd::wechatpay::pay_sign::Signer;
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The demo store's name, and the brand's ids at the simulated WeChat Pay.
pub const STORE: &str = "demo-store";
pub const BRAND_ID: &str = "120344";
pub const PAY_KEY_ID: &str = "PUB_KEY_ID_0000000000000000000000000000DEMO";
const APPID: &str = "wx_simulated_demo";
const APIV3: &[u8] = b"demo-apiv3-key-0123456789abcdef!";
const STOCK_ID: &str = "1000000013001";
/// The chain's claim secret; the demo's till keeps it too (`[store] code_key_file`).
pub const CODE_KEY: &str = "demo-chain-code-key-0123456789abcdef";

/// The keys the chain shares with the demo's till: WeChat Pay's (it signs replies and
/// notifications) and the brand's (PKCS#8 DER), with the brand key's certificate serial.
pub struct DemoKeys<'a> {
    pub wechat_der: &'a [u8],
    pub brand_der: &'a [u8],
    pub brand_serial: &'a str,
}

/// A product coupon the demo issues.
pub struct DemoCoupon {
    pub code: &'static str,
    pub openid: &'static str,
    pub title: &'static str,
}

/// The running chain: stopped when dropped.
pub struct DemoChain {
    servers: Vec<Child>,
    stop_fleet: Option<oneshot::Sender<()>>,
    pub sim: Arc<ProductCouponSim>,
    _sim_server: SimServer,
    notifier: Notifier,
    /// The store's `nats-server`, for the till's `[store] nats_url`.
    pub store_url: String,
    code_key: CodeKey,
}

impl Drop for DemoChain {
    fn drop(&mut self) {
        if let Some(stop) = self.stop_fleet.take() {
            let _ = stop.send(());
        }
        for c in &mut self.servers {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes)
        .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn spki(der: &[u8]) -> Result<Vec<u8>, String> {
    Signer::from_pkcs8_der(der).and_then(|s| s.public_spki_der())
}

impl DemoChain {
    /// Starts the hub, the store, the simulated WeChat Pay and `redeemd fleet` in `dir`;
    /// `Ok(None)` when there is no `nats-server` to run them on.
    pub async fn start(dir: &Path, keys: &DemoKeys<'_>) -> Result<Option<DemoChain>, String> {
        let dir = dir.join("chain");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let (hub_port, leaf_port, store_port) = (free_port()?, free_port()?, free_port()?);
        let write = |name: &str, text: String| -> Result<PathBuf, String> {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
            Ok(p)
        };
        let hub_conf = write(
            "hub.conf",
            hub_config(hub_port, leaf_port, &dir.join("hub")),
        )?;
        let store_conf = write(
            "store.conf",
            leaf_config(STORE, store_port, leaf_port, &dir.join("store")),
        )?;
        let mut servers = Vec::new();
        for conf in [&hub_conf, &store_conf] {
            match nats_servers::start([std::ffi::OsStr::new("-c"), conf.as_os_str()]) {
                Some(s) => servers.push(s.child),
                None => {
                    for mut c in servers {
                        let _ = c.kill();
                        let _ = c.wait();
                    }
                    return Ok(None);
                }
            }
        }
        // Stopped with the chain from here on, however the rest goes.
        let mut chain_servers = ChainServers(servers);

        // WeChat Pay's key signs its replies and notifications; the brand's signs confirms
        // and uses.
        let (wechat_der, brand_der) = (keys.wechat_der, keys.brand_der);
        let sim = ProductCouponSim::new(
            BrandIdentity {
                brand_id: BRAND_ID.into(),
                brand_serial: keys.brand_serial.into(),
                partner_mchid: "1900000109".into(),
                public_key_id: PAY_KEY_ID.into(),
            },
            spki(brand_der)?,
            Signer::from_pkcs8_der(wechat_der)?,
        );
        sim.set_stock(
            STOCK_ID,
            SimStock {
                value: Some(3200),
                ..SimStock::default()
            },
        );
        let sim_server = sim.start().await.map_err(|e| e.to_string())?;
        std::fs::write(
            dir.join("wechatpay_pub_key.pem"),
            pem("PUBLIC KEY", &spki(wechat_der)?),
        )
        .map_err(|e| e.to_string())?;
        private(
            &dir.join("brand_key.pem"),
            pem("PRIVATE KEY", brand_der).as_bytes(),
        )?;
        private(&dir.join("apiv3.key"), APIV3)?;
        private(&dir.join("code.key"), CODE_KEY.as_bytes())?;
        let notify_port = free_port()?;
        let hq = write(
            "hq.toml",
            format!(
                r#"# Generated by `redeemd demo`: HQ of a SIMULATED chain on this machine.
database = "fleet.db"
code_key_file = "code.key"

[hub]
nats_url = "nats://127.0.0.1:{hub_port}"

[[store]]
name = "{STORE}"

[http]
listen = "127.0.0.1:0"

[notify]
listen = "127.0.0.1:{notify_port}"
mode = "brand"
brand_id = "{BRAND_ID}"
appid = "{APPID}"
serial_no = "{serial}"
private_key_file = "brand_key.pem"
public_key_id = "{PAY_KEY_ID}"
public_key_file = "wechatpay_pub_key.pem"
apiv3_key_file = "apiv3.key"
base_url = "{pay}"
"#,
                pay = sim_server.url(),
                serial = keys.brand_serial,
            ),
        )?;
        let config = redeemd::config::fleet::FleetConfig::load(&hq).map_err(|e| e.to_string())?;
        let loaded = redeemd::fleet::load(config).map_err(|p| p.join("; "))?;
        let (stop_fleet, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = redeemd::fleet::run(loaded, false, shutdown).await {
                tracing::error!(event = "demo_fleet_failed", error = %e, "the demo's HQ stopped");
            }
        });
        let signer = Signer::from_pkcs8_der(wechat_der)?;
        let notifier = Notifier::new(
            signer,
            PAY_KEY_ID,
            APIV3,
            &format!("http://127.0.0.1:{notify_port}/v1/wechatpay/notify"),
        )?;
        Ok(Some(DemoChain {
            servers: std::mem::take(&mut chain_servers.0),
            stop_fleet: Some(stop_fleet),
            sim,
            _sim_server: sim_server,
            notifier,
            store_url: format!("nats://127.0.0.1:{store_port}"),
            code_key: CodeKey::from_bytes(CODE_KEY.as_bytes())?,
        }))
    }

    /// WeChat Pay issues `c` to its customer and tells HQ (`PRODUCT_COUPON.SEND`, retried
    /// as WeChat Pay retries); then waits until the store's copy of the registry has it
    /// usable, and returns that entry.
    pub async fn issue(&self, c: &DemoCoupon) -> Result<Value, String> {
        let today = chrono::Local::now();
        let begin = today.format("%Y-%m-%dT00:00:00+08:00").to_string();
        let end = (today + chrono::Duration::days(30))
            .format("%Y-%m-%dT23:59:59+08:00")
            .to_string();
        self.sim.issue(
            c.code,
            SimProductCoupon {
                openid: c.openid.into(),
                product_coupon_id: "1000000013".into(),
                stock_id: STOCK_ID.into(),
                appid: APPID.into(),
                state: "CONFIRMING".into(),
                confirm_request_no: None,
                title: c.title.into(),
                usage_mode: "SINGLE".into(),
                valid_begin_time: begin.clone(),
                valid_end_time: end.clone(),
            },
        );
        let resource = json!({
            "coupon_code": c.code,
            "product_coupon_id": "1000000013",
            "stock_id": STOCK_ID,
            "openid": c.openid,
            "send_channel": "BRAND_MANAGE",
            "send_request_no": format!("SEND{}", c.code),
            "receive_time": chrono::Local::now().to_rfc3339(),
            "valid_begin_time": begin,
            "valid_end_time": end,
        });
        let body = self.notifier.body(
            &format!("EV-DEMO-{}", c.code),
            "PRODUCT_COUPON.SEND",
            &resource,
        )?;
        // HQ may still be starting: WeChat Pay tries again, as it does.
        let delivery = self
            .notifier
            .deliver(body, &[Duration::from_millis(250); 80])
            .await;
        if !delivery.delivered() {
            return Err("HQ never took the notification".into());
        }
        self.at_store(c.code, "EFFECTIVE").await
    }

    /// The store's copy of the registry entry of `code`, once it is in `state`.
    async fn at_store(&self, code: &str, state: &str) -> Result<Value, String> {
        let client = async_nats::connect(self.store_url.as_str())
            .await
            .map_err(|e| e.to_string())?;
        let key = self.code_key.claim_key(&Code::new(code.to_string()));
        let (stream, subject) = (product_coupons::stream(), product_coupons::subject(&key));
        let started = Instant::now();
        loop {
            if let Ok(Some(m)) = last_of_subject(&client, "$JS.API", &stream, &subject).await
                && let Ok(v) = serde_json::from_slice::<Value>(&m.data)
                && v["state"] == state
            {
                return Ok(v);
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(format!("the store's copy never said {state}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The chain's servers until [`DemoChain`] owns them: killed if its start fails.
struct ChainServers(Vec<Child>);

impl Drop for ChainServers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
