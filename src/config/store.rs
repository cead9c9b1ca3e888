//! `[store]`: the store-wide guard on NATS JetStream. Parsed and checked here;
//! nothing connects yet.

use super::resolve;
use crate::duration;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    name: String,
    nats_url: String,
    #[serde(default)]
    creds_file: Option<PathBuf>,
    #[serde(default)]
    user_file: Option<PathBuf>,
    #[serde(default)]
    nkey_file: Option<PathBuf>,
    #[serde(default)]
    tls_ca_file: Option<PathBuf>,
    code_key_file: PathBuf,
    #[serde(default = "default_claim_timeout", deserialize_with = "duration::de")]
    claim_timeout: Duration,
    #[serde(default = "default_claims_bucket")]
    claims_bucket: String,
    #[serde(default = "default_claim_ttl", deserialize_with = "duration::de")]
    claim_ttl: Duration,
    #[serde(default = "default_status_interval", deserialize_with = "duration::de")]
    status_interval: Duration,
}

fn default_claim_timeout() -> Duration {
    Duration::from_millis(300)
}
fn default_claims_bucket() -> String {
    "redeemd_claims".into()
}
fn default_status_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_claim_ttl() -> Duration {
    Duration::from_secs(30 * 86_400)
}

/// The store this till belongs to, and how to reach its NATS servers.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Unique in the chain; a NATS subject token and JetStream domain.
    pub name: String,
    /// The store's NATS servers (`nats_url`, comma-separated).
    pub nats_urls: Vec<String>,
    pub creds_file: Option<PathBuf>,
    pub user_file: Option<PathBuf>,
    pub nkey_file: Option<PathBuf>,
    pub tls_ca_file: Option<PathBuf>,
    /// The chain's secret for claim keys (HMAC-SHA256(code_key, code)).
    pub code_key_file: PathBuf,
    pub claim_timeout: Duration,
    pub claims_bucket: String,
    pub claim_ttl: Duration,
    /// How often the till tells HQ how it is (`redeemd.status.<store>.<till>`).
    pub status_interval: Duration,
}

/// A NATS subject token, a JetStream domain or bucket name: letters, digits, `-`, `_`.
pub(super) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `nats_url`: comma-separated `nats://` or `tls://` addresses, each checked.
pub(super) fn nats_urls(section: &str, text: &str, problems: &mut Vec<String>) -> Vec<String> {
    let urls: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(String::from)
        .collect();
    if urls.is_empty() {
        problems.push(format!("{section}.nats_url: at least one nats://host:port"));
    }
    for u in &urls {
        let ok = url::Url::parse(u)
            .is_ok_and(|p| ["nats", "tls"].contains(&p.scheme()) && p.host_str().is_some());
        if !ok {
            problems.push(format!(
                "{section}.nats_url: {u:?} is not nats://host:port or tls://host:port"
            ));
        }
    }
    urls
}

pub(super) fn check_store(
    raw: RawStore,
    base: &Path,
    online_wait: Duration,
    problems: &mut Vec<String>,
) -> StoreConfig {
    if !is_token(&raw.name) || raw.name.len() > 64 {
        problems.push(
            "store.name: 1 to 64 letters, digits, '-' or '_' (it is a NATS subject token and JetStream domain)"
                .into(),
        );
    }
    let nats_urls = nats_urls("store", &raw.nats_url, problems);
    let auth = [&raw.creds_file, &raw.user_file, &raw.nkey_file]
        .iter()
        .filter(|f| f.is_some())
        .count();
    if auth > 1 {
        problems.push("store: give one of creds_file, user_file, nkey_file".into());
    }
    if raw.claim_timeout.is_zero() {
        problems.push("store.claim_timeout: must be more than 0".into());
    } else if raw.claim_timeout >= online_wait {
        problems.push(format!(
            "store.claim_timeout: must be shorter than offline.online_wait ({} ms): the claim is part of the till's answer",
            online_wait.as_millis()
        ));
    }
    if !is_token(&raw.claims_bucket) {
        problems.push("store.claims_bucket: letters, digits, '-' or '_'".into());
    }
    if raw.claim_ttl < Duration::from_secs(86_400) {
        problems.push("store.claim_ttl: at least 1d (a redeemed claim is kept that long)".into());
    }
    if raw.status_interval < Duration::from_secs(1) || raw.status_interval > Duration::from_secs(60)
    {
        problems.push(
            "store.status_interval: 1s to 60s (HQ shows a till silent for 90 s as stale)".into(),
        );
    }
    let path = |p: Option<PathBuf>| p.map(|p| resolve(base, &p));
    StoreConfig {
        name: raw.name,
        nats_urls,
        creds_file: path(raw.creds_file),
        user_file: path(raw.user_file),
        nkey_file: path(raw.nkey_file),
        tls_ca_file: path(raw.tls_ca_file),
        code_key_file: resolve(base, &raw.code_key_file),
        claim_timeout: raw.claim_timeout,
        claims_bucket: raw.claims_bucket,
        claim_ttl: raw.claim_ttl,
        status_interval: raw.status_interval,
    }
}
