//! WeChat Pay's side of HQ's tests: the brand's and WeChat Pay's keys, `redeemd fleet` with
//! `[notify]`, WeChat Pay's notifier, and the registry of product coupons as the hub and a
//! store's server hold it.

use super::*;
use redeemd::sim::notifier::Notifier;
use redeemd::sim::pay::{generate_key, pem};
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

pub const APIV3_KEY: &[u8] = b"0123456789abcdef0123456789ABCDEF";
pub const WECHATPAY_KEY_ID: &str = "PUB_KEY_ID_0114232134912410000000000000";

pub fn private(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("write a key");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// WeChat Pay's key and the brand's (PKCS#8).
pub struct Keys {
    pub wechatpay: Vec<u8>,
    pub brand: Vec<u8>,
}

/// Where HQ's confirms go when a test does not look at them.
pub const NOWHERE: &str = "https://api.mch.weixin.qq.com";
pub const BRAND: &str = "mode = \"brand\"";

impl Keys {
    pub fn new() -> Keys {
        Keys {
            wechatpay: generate_key().expect("WeChat Pay's key").1,
            brand: generate_key().expect("the brand's key").1,
        }
    }

    /// The product-coupon simulator of the tests' brand: it checks the brand's signature
    /// (or the service provider's, same key) and signs as WeChat Pay.
    pub fn product_coupon_sim(
        &self,
    ) -> std::sync::Arc<redeemd::sim::product_coupon::ProductCouponSim> {
        redeemd::sim::product_coupon::ProductCouponSim::new(
            redeemd::sim::product_coupon::BrandIdentity {
                brand_id: "120344".into(),
                brand_serial: MERCHANT_SERIAL.into(),
                partner_mchid: MCHID.into(),
                public_key_id: WECHATPAY_KEY_ID.into(),
            },
            Self::public(&self.brand),
            redeemd::wechatpay::pay_sign::Signer::from_pkcs8_der(&self.wechatpay).expect("signer"),
        )
    }

    pub fn public(der: &[u8]) -> Vec<u8> {
        redeemd::wechatpay::pay_sign::Signer::from_pkcs8_der(der)
            .and_then(|s| s.public_spki_der())
            .expect("a public key")
    }

    /// `redeemd fleet` for the hub at `hub` and `stores`, with `[notify]` listening on
    /// `listen`, confirming at `base_url`, in `mode` (`mode = "brand"`, or the partner's
    /// lines); its key files written beside its config.
    pub fn fleet(
        &self,
        hub: &str,
        stores: &[&str],
        listen: &str,
        base_url: &str,
        mode: &str,
    ) -> FleetSetup {
        let section = format!(
            "[notify]\nlisten = \"{listen}\"\n{mode}\nbrand_id = \"120344\"\n\
             appid = \"wx_test_pay_appid\"\nserial_no = \"{MERCHANT_SERIAL}\"\n\
             private_key_file = \"brand_key.pem\"\npublic_key_id = \"{WECHATPAY_KEY_ID}\"\n\
             public_key_file = \"pub_key.pem\"\napiv3_key_file = \"apiv3.key\"\n\
             base_url = \"{base_url}\"\n"
        );
        let setup = FleetSetup::new(hub, stores, &section);
        let dir = setup.dir.path();
        std::fs::write(
            dir.join("pub_key.pem"),
            pem("PUBLIC KEY", &Self::public(&self.wechatpay)),
        )
        .expect("public key");
        private(
            &dir.join("brand_key.pem"),
            pem("PRIVATE KEY", &self.brand).as_bytes(),
        );
        private(&dir.join("apiv3.key"), APIV3_KEY);
        setup
    }
}

/// WeChat Pay's notifier, signing with `key` (PKCS#8).
pub fn wechatpay_notifier(key: &[u8], apiv3: &[u8], url: &str) -> Notifier {
    let signer = redeemd::wechatpay::pay_sign::Signer::from_pkcs8_der(key).expect("signer");
    Notifier::new(signer, WECHATPAY_KEY_ID, apiv3, url).expect("notifier")
}

pub fn notify_url(fleet: &Daemon) -> String {
    let listening = fleet.wait_event(|e| {
        e["event"] == "http_listening" && e["server"] == "WeChat Pay notifications"
    });
    format!(
        "{}/v1/wechatpay/notify",
        listening["address"].as_str().expect("address")
    )
}

pub fn metric(base: &str, line: &str) -> u64 {
    let text = get(base, "/metrics").body;
    text.lines()
        .find_map(|l| l.strip_prefix(line).map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0)
}

pub fn send_resource(code: &str) -> Value {
    json!({
        "coupon_code": code,
        "product_coupon_id": "1000000013",
        "stock_id": "1000000013001",
        "openid": "oUser0001",
        "unionid": "uUnion0001",
        "send_channel": "BRAND_MANAGE",
        "send_request_no": "SEND_20261204_000001",
        "receive_time": "2026-12-04T10:00:00+08:00",
        "valid_begin_time": "2026-12-04T00:00:00+08:00",
        "valid_end_time": "2026-12-31T23:59:59+08:00",
    })
}

/// The claim key of `code`, as the tests' chain makes it.
pub fn claim_key(code: &str) -> String {
    redeemd::model::claim_key::CodeKey::from_bytes(CODE_KEY.as_bytes())
        .expect("code key")
        .claim_key(&redeemd::model::code::Code::new(code.to_string()))
}

/// The value of `code` in KV bucket `bucket` of the server at `url` (its last one).
pub fn kv_value(
    rt: &tokio::runtime::Runtime,
    url: &str,
    bucket: &str,
    code: &str,
) -> Option<Value> {
    use base64::Engine as _;
    let key = claim_key(code);
    rt.block_on(async {
        let server = async_nats::connect(url).await.expect("connect");
        let r = server
            .request(
                format!("$JS.API.STREAM.MSG.GET.KV_{bucket}"),
                json!({ "last_by_subj": format!("$KV.{bucket}.{key}") })
                    .to_string()
                    .into(),
            )
            .await
            .expect("msg get");
        let answer: Value = serde_json::from_slice(&r.payload).expect("json");
        let data = answer["message"]["data"].as_str()?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("base64");
        serde_json::from_slice(&bytes).ok()
    })
}

pub fn registered(rt: &tokio::runtime::Runtime, url: &str, code: &str) -> Option<Value> {
    kv_value(rt, url, "redeemd_product_coupons", code)
}

pub fn wait_registered(rt: &tokio::runtime::Runtime, hub: &str, code: &str, state: &str) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(e) = registered(rt, hub, code)
            && e["state"] == state
        {
            return e;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{code} never registered as {state}: {:?}",
            registered(rt, hub, code)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every row the fleet lists in `state`.
pub fn fleet_rows_in(base: &str, state: &str) -> Vec<Value> {
    get(base, &format!("/v1/fleet/redemptions?state={state}"))
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

pub fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !ok() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
