//! The WeChat clients the daemon redeems with, built from the config and the keys
//! `load` read.

use super::DaemonError;
use crate::clock::SharedClock;
use crate::config::wechat::PayMode;
use crate::config::wechat::{WechatConfig, WechatPayConfig};
use crate::daemon::load::PayKeys;
use crate::redeem::product_coupon::ProductCouponApi;
use crate::wechat::card::CardApi;
use crate::wechat::token::{TokenManager, TokenSource};
use crate::wechatpay::USER_AGENT;
use crate::wechatpay::pay::{PayApi, PayApiParts};
use crate::wechatpay::pay_sign::{Caller, RequestAuth, Signer, Verifier};
use std::sync::Arc;
use std::time::Duration;

pub(super) fn http_client(timeout: Duration) -> Result<reqwest::Client, DaemonError> {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(Duration::from_secs(3).min(timeout))
        .timeout(timeout)
        .build()
        .map_err(|e| DaemonError::Http(e.to_string()))
}

/// The card API. Its secret file was checked by `load::load`, and is re-read at every
/// token fetch, so a fix needs no restart.
pub fn build_card(w: &WechatConfig) -> Result<Arc<CardApi>, DaemonError> {
    let http = http_client(w.request_timeout)?;
    let base = w.base_url.trim_end_matches('/');
    let source = match &w.token_url {
        Some(url) => TokenSource::Central { url: url.clone() },
        None => TokenSource::Stable {
            url: format!("{base}/cgi-bin/stable_token"),
        },
    };
    let tokens = Arc::new(TokenManager::new(
        http.clone(),
        source,
        w.appid.clone(),
        w.secret_file.clone(),
    ));
    Ok(Arc::new(CardApi::new(http, base, tokens)))
}

/// WeChat Pay, with the keys `load::load` read.
pub(super) fn build_pay(
    p: &WechatPayConfig,
    keys: PayKeys,
    clock: SharedClock,
) -> Result<Arc<PayApi>, DaemonError> {
    let PayKeys { signer, verifier } = keys;
    let caller = Caller::Merchant(p.mchid.clone());
    Ok(Arc::new(pay_api(p, caller, signer, verifier, clock)?))
}

/// A WeChat Pay client of `[wechat_pay]`, signing as `caller`.
fn pay_api(
    p: &WechatPayConfig,
    caller: Caller,
    signer: Signer,
    verifier: Verifier,
    clock: SharedClock,
) -> Result<PayApi, DaemonError> {
    Ok(PayApi::new(PayApiParts {
        http: http_client(p.request_timeout)?,
        appid: p.appid.clone(),
        auth: RequestAuth {
            caller,
            serial_no: p.serial_no.clone(),
            signer,
        },
        verifier,
        public_key_id: p.public_key_id.clone(),
        primary: p.base_url.clone(),
        backup: p.backup_url.clone(),
        clock,
    }))
}

/// WeChat Pay as the till uses product coupons: signed as the brand (`mode = "brand"`), or
/// as the service provider (`"partner"`, the brand named in each body). The key is the one
/// `load::load` checked, read again for this client of its own.
pub(super) fn build_product_coupon(
    p: &WechatPayConfig,
    verifier: Verifier,
    clock: SharedClock,
) -> Result<Option<Arc<ProductCouponApi>>, DaemonError> {
    let (Some(mode), Some(brand_id)) = (p.mode, &p.brand_id) else {
        return Ok(None);
    };
    let signer = Signer::from_file(&p.private_key_file)
        .map_err(|e| DaemonError::Config(format!("wechat_pay.private_key_file: {e}")))?;
    let (caller, partner_brand) = match mode {
        PayMode::Brand => (Caller::Brand(brand_id.clone()), None),
        PayMode::Partner => (Caller::Merchant(p.mchid.clone()), Some(brand_id.clone())),
    };
    Ok(Some(Arc::new(ProductCouponApi {
        pay: pay_api(p, caller, signer, verifier, clock)?,
        partner_brand,
        store_id: p.store_id.clone(),
    })))
}
