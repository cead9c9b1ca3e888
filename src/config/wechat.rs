//! `[wechat]` (the card API's app) and `[wechat_pay]` (the merchant, its keys and WeChat
//! Pay's public key or certificates).

use super::{check_url, resolve};
use crate::duration;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_CARD_BASE_URL: &str = "https://api.weixin.qq.com";

pub const DEFAULT_PAY_BASE_URL: &str = "https://api.mch.weixin.qq.com";

pub const DEFAULT_PAY_BACKUP_URL: &str = "https://api2.mch.weixin.qq.com";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WechatConfig {
    pub appid: String,
    pub secret_file: PathBuf,
    #[serde(default = "default_card_base_url")]
    pub base_url: String,
    /// A central token service (GET, answering `{"access_token","expires_in"}`); without it
    /// the daemon uses `POST /cgi-bin/stable_token`, which never knocks out other tills' tokens.
    #[serde(default)]
    pub token_url: Option<String>,
    /// Upper bound for one HTTP exchange with WeChat.
    #[serde(default = "default_request_timeout", deserialize_with = "duration::de")]
    pub request_timeout: Duration,
}

/// WeChat Pay API v3, for merchant coupons (商家券).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WechatPayConfig {
    pub mchid: String,
    /// Bound to the mchid; sent with every use.
    pub appid: String,
    /// The merchant API certificate's serial number.
    pub serial_no: String,
    /// The merchant API private key (PKCS#8 PEM); must not be readable by group/others.
    pub private_key_file: PathBuf,
    /// The WeChat Pay public key's id (`PUB_KEY_ID_...`) and file (SPKI PEM).
    #[serde(default)]
    pub public_key_id: Option<String>,
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// Older merchants' platform certificates, picked by serial.
    #[serde(default)]
    pub platform_cert_files: Vec<PathBuf>,
    #[serde(default = "default_pay_base_url")]
    pub base_url: String,
    /// Used when the primary host is unreachable.
    #[serde(default = "default_pay_backup_url")]
    pub backup_url: String,
    #[serde(default = "default_request_timeout", deserialize_with = "duration::de")]
    pub request_timeout: Duration,
    /// Product coupons (商品券): who calls, as a brand (品牌直连, `brand_id`, the brand's
    /// key above) or as a service provider (服务商, the mchid above, `brand_id` in the body).
    #[serde(default)]
    pub mode: Option<PayMode>,
    #[serde(default)]
    pub brand_id: Option<String>,
    /// The store's id at WeChat Pay, sent with each product-coupon use, and checked against
    /// a coupon's stores.
    #[serde(default)]
    pub store_id: Option<String>,
}

/// `[wechat_pay] mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayMode {
    Brand,
    Partner,
}

pub(super) fn default_card_base_url() -> String {
    DEFAULT_CARD_BASE_URL.to_string()
}

pub(super) fn default_pay_base_url() -> String {
    DEFAULT_PAY_BASE_URL.to_string()
}

pub(super) fn default_pay_backup_url() -> String {
    DEFAULT_PAY_BACKUP_URL.to_string()
}

pub(super) fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}

/// `[wechat]`: the card API's appid, secret file and URLs.
pub(super) fn check_wechat(
    mut w: WechatConfig,
    base: &Path,
    problems: &mut Vec<String>,
) -> WechatConfig {
    if w.appid.trim().is_empty() {
        problems.push("wechat.appid: must not be empty".into());
    }
    w.secret_file = resolve(base, &w.secret_file);
    if let Err(p) = check_url(&w.base_url) {
        problems.push(format!("wechat.base_url: {p}"));
    }
    if let Some(t) = &w.token_url
        && let Err(p) = check_url(t)
    {
        problems.push(format!("wechat.token_url: {p}"));
    }
    w
}

pub(super) fn check_wechat_pay(p: &mut WechatPayConfig, base: &Path, problems: &mut Vec<String>) {
    if p.mchid.is_empty() || !p.mchid.bytes().all(|b| b.is_ascii_digit()) {
        problems.push("wechat_pay.mchid: must be the merchant number (digits)".into());
    }
    if p.appid.trim().is_empty() {
        problems.push("wechat_pay.appid: must not be empty".into());
    }
    if p.serial_no.is_empty() || !p.serial_no.bytes().all(|b| b.is_ascii_hexdigit()) {
        problems.push(
            "wechat_pay.serial_no: must be the merchant API certificate's serial (hex)".into(),
        );
    }
    p.private_key_file = resolve(base, &p.private_key_file);
    p.public_key_file = p.public_key_file.as_ref().map(|f| resolve(base, f));
    for f in &mut p.platform_cert_files {
        *f = resolve(base, f);
    }
    match (&p.public_key_id, &p.public_key_file) {
        (Some(id), Some(_)) if !id.starts_with("PUB_KEY_ID_") => problems.push(
            "wechat_pay.public_key_id: WeChat Pay public key ids start with PUB_KEY_ID_".into(),
        ),
        (Some(_), None) => problems.push(
            "wechat_pay.public_key_file: needed with public_key_id".into(),
        ),
        (None, Some(_)) => problems.push(
            "wechat_pay.public_key_id: needed with public_key_file".into(),
        ),
        (None, None) if p.platform_cert_files.is_empty() => problems.push(
            "wechat_pay.public_key_file: a WeChat Pay public key (or platform_cert_files) is needed to verify responses".into(),
        ),
        _ => {}
    }
    for (k, url) in [("base_url", &p.base_url), ("backup_url", &p.backup_url)] {
        if let Err(e) = check_url(url) {
            problems.push(format!("wechat_pay.{k}: {e}"));
        }
    }
    let digits = |s: &str| !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_digit());
    match (&p.mode, &p.brand_id) {
        (Some(_), Some(id)) if !digits(id) => {
            problems.push("wechat_pay.brand_id: must be the brand's id (digits)".into());
        }
        (Some(_), None) => problems.push("wechat_pay.brand_id: needed with mode".into()),
        (None, Some(_)) => {
            problems.push("wechat_pay.mode: needed with brand_id (\"brand\" or \"partner\")".into())
        }
        _ => {}
    }
    if p.mode == Some(PayMode::Brand) && p.public_key_id.is_none() {
        problems.push(
            "wechat_pay.public_key_id: needed with mode = \"brand\" (sent as Wechatpay-Serial with every product-coupon request)"
                .into(),
        );
    }
    if let Some(id) = &p.store_id
        && (id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_graphic()))
    {
        problems.push("wechat_pay.store_id: 1 to 32 visible ASCII characters".into());
    }
}
