//! `[notify]` in hq.toml: where `redeemd fleet` listens for WeChat Pay's notifications, and
//! the brand's (or service provider's) keys that verify, decrypt and confirm them.

use super::http::{Listen, parse_listen};
use super::wechat::DEFAULT_PAY_BASE_URL;
use super::{check_url, resolve};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Who calls WeChat Pay, which decides the paths and how requests are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyMode {
    /// 品牌直连: `/brand/marketing/product-coupon/…`, signed with the brand's id.
    Brand,
    /// 服务商: `/v3/marketing/partner/product-coupon/…`, signed with the provider's mchid.
    Partner,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    listen: String,
    mode: String,
    #[serde(default)]
    brand_id: Option<String>,
    #[serde(default)]
    mchid: Option<String>,
    appid: String,
    serial_no: String,
    private_key_file: PathBuf,
    public_key_id: String,
    public_key_file: PathBuf,
    apiv3_key_file: PathBuf,
    #[serde(default = "default_base_url")]
    base_url: String,
}

fn default_base_url() -> String {
    DEFAULT_PAY_BASE_URL.into()
}

#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// Its own listener, which store IT puts behind HTTPS; the fleet page stays inside.
    pub listen: Listen,
    pub mode: NotifyMode,
    pub brand_id: String,
    /// Partner mode: the service provider's mchid.
    pub mchid: Option<String>,
    pub appid: String,
    /// The API certificate serial of `private_key_file`.
    pub serial_no: String,
    /// Signs the confirm calls.
    pub private_key_file: PathBuf,
    /// Verifies notifications and replies.
    pub public_key_id: String,
    pub public_key_file: PathBuf,
    /// Decrypts notification resources (32 bytes).
    pub apiv3_key_file: PathBuf,
    pub base_url: String,
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_digit())
}

pub(super) fn check_notify(
    raw: RawNotify,
    base: &Path,
    problems: &mut Vec<String>,
) -> Option<NotifyConfig> {
    let before = problems.len();
    let listen = parse_listen("notify.listen", &raw.listen, base, problems);
    let mode = match raw.mode.as_str() {
        "brand" => NotifyMode::Brand,
        "partner" => NotifyMode::Partner,
        other => {
            problems.push(format!(
                "notify.mode: {other:?} is neither \"brand\" nor \"partner\""
            ));
            NotifyMode::Brand
        }
    };
    let brand_id = raw.brand_id.unwrap_or_default();
    if !digits(&brand_id) {
        problems.push("notify.brand_id: required, digits (the brand's id at WeChat Pay)".into());
    }
    match (&raw.mchid, mode) {
        (Some(m), _) if !digits(m) => problems.push("notify.mchid: digits".into()),
        (None, NotifyMode::Partner) => {
            problems.push("notify.mchid: required in partner mode (the provider's mchid)".into())
        }
        _ => {}
    }
    for (key, value) in [
        ("appid", &raw.appid),
        ("serial_no", &raw.serial_no),
        ("public_key_id", &raw.public_key_id),
    ] {
        if value.is_empty()
            || !value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            problems.push(format!("notify.{key}: required, letters, digits or '_'"));
        }
    }
    if let Err(e) = check_url(&raw.base_url) {
        problems.push(format!("notify.base_url: {e}"));
    }
    if problems.len() > before {
        return None;
    }
    Some(NotifyConfig {
        listen,
        mode,
        brand_id,
        mchid: raw.mchid,
        appid: raw.appid,
        serial_no: raw.serial_no,
        private_key_file: resolve(base, &raw.private_key_file),
        public_key_id: raw.public_key_id,
        public_key_file: resolve(base, &raw.public_key_file),
        apiv3_key_file: resolve(base, &raw.apiv3_key_file),
        base_url: raw.base_url,
    })
}
