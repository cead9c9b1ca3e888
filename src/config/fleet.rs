//! `hq.toml`: the configuration of `redeemd fleet`, HQ's view of the chain.

use super::http::{HttpConfig, RawHttp, check_http};
use super::notify::{NotifyConfig, RawNotify, check_notify};
use super::store::{is_token, nats_urls};
use super::{ConfigError, expand_env, resolve, toml_error};
use crate::duration;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The fleet page and API listen here unless `[http] listen` says otherwise.
pub const DEFAULT_FLEET_LISTEN: &str = "127.0.0.1:8738";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    database: PathBuf,
    code_key_file: PathBuf,
    hub: RawHub,
    #[serde(default)]
    store: Vec<RawStoreName>,
    #[serde(default)]
    http: Option<toml::Table>,
    #[serde(default = "default_stale_after", deserialize_with = "duration::de")]
    stale_after: Duration,
    #[serde(default)]
    notify: Option<RawNotify>,
}

fn default_stale_after() -> Duration {
    Duration::from_secs(90)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHub {
    nats_url: String,
    #[serde(default = "default_hub_domain")]
    domain: String,
    #[serde(default)]
    creds_file: Option<PathBuf>,
    #[serde(default)]
    user_file: Option<PathBuf>,
    #[serde(default)]
    nkey_file: Option<PathBuf>,
    #[serde(default)]
    tls_ca_file: Option<PathBuf>,
}

fn default_hub_domain() -> String {
    "hq".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStoreName {
    name: String,
}

/// HQ's NATS server.
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub nats_urls: Vec<String>,
    /// The hub's JetStream domain: stores mirror HQ's `redeemd_redeemed` through
    /// `$JS.<domain>.API`.
    pub domain: String,
    pub creds_file: Option<PathBuf>,
    pub user_file: Option<PathBuf>,
    pub nkey_file: Option<PathBuf>,
    pub tls_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The read model (SQLite), rebuildable from the chain's stream.
    pub database: PathBuf,
    pub code_key_file: PathBuf,
    pub hub: HubConfig,
    /// The stores' names: each is its leaf node's JetStream domain.
    pub stores: Vec<String>,
    pub http: HttpConfig,
    /// A till whose last beat is older than this shows as stale.
    pub stale_after: Duration,
    /// `[notify]`: WeChat Pay's notifications, when HQ listens for them.
    pub notify: Option<NotifyConfig>,
    /// The file it was read from (re-read on SIGHUP).
    pub source: PathBuf,
}

impl FleetConfig {
    pub fn load(path: &Path) -> Result<FleetConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_path_buf(),
            problems: vec![format!("cannot read the file: {e}")],
            partial: None,
        })?;
        FleetConfig::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<FleetConfig, ConfigError> {
        let err = |problems| ConfigError {
            path: path.to_path_buf(),
            problems,
            partial: None,
        };
        let text = expand_env(text).map_err(|p| err(vec![p]))?;
        let raw: RawFleet = toml::from_str(&text).map_err(|e| err(vec![toml_error(&e)]))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut problems = Vec::new();

        let mut http_table = raw.http.unwrap_or_default();
        http_table
            .entry("listen")
            .or_insert_with(|| DEFAULT_FLEET_LISTEN.into());
        let http: RawHttp = match toml::Value::Table(http_table).try_into() {
            Ok(h) => h,
            Err(e) => {
                problems.push(format!("http: {}", toml_error(&e)));
                RawHttp::default()
            }
        };
        let http = check_http(http, base, &mut problems);

        let nats_urls = nats_urls("hub", &raw.hub.nats_url, &mut problems);
        if !is_token(&raw.hub.domain) {
            problems.push(
                "hub.domain: letters, digits, '-' or '_' (the hub's JetStream domain)".into(),
            );
        }
        let auth = [&raw.hub.creds_file, &raw.hub.user_file, &raw.hub.nkey_file]
            .iter()
            .filter(|f| f.is_some())
            .count();
        if auth > 1 {
            problems.push("hub: give one of creds_file, user_file, nkey_file".into());
        }
        let mut stores: Vec<String> = Vec::new();
        for s in raw.store {
            if !is_token(&s.name) || s.name.len() > 64 {
                problems.push(format!(
                    "store.name {:?}: 1 to 64 letters, digits, '-' or '_' (the store's JetStream domain)",
                    s.name
                ));
            } else if s.name == raw.hub.domain {
                problems.push(format!(
                    "store.name {:?}: the hub's own domain (hub.domain) cannot be a store's",
                    s.name
                ));
            } else if stores.contains(&s.name) {
                problems.push(format!("store.name {:?}: listed twice", s.name));
            } else {
                stores.push(s.name);
            }
        }
        if raw.stale_after < Duration::from_secs(1) {
            problems.push("stale_after: at least 1s".into());
        }
        let notify = raw
            .notify
            .and_then(|n| check_notify(n, base, &mut problems));
        if !problems.is_empty() {
            return Err(err(problems));
        }
        let source = path.to_path_buf();
        let path = |p: Option<PathBuf>| p.map(|p| resolve(base, &p));
        Ok(FleetConfig {
            database: resolve(base, &raw.database),
            code_key_file: resolve(base, &raw.code_key_file),
            hub: HubConfig {
                nats_urls,
                domain: raw.hub.domain,
                creds_file: path(raw.hub.creds_file),
                user_file: path(raw.hub.user_file),
                nkey_file: path(raw.hub.nkey_file),
                tls_ca_file: path(raw.hub.tls_ca_file),
            },
            stores,
            http,
            stale_after: raw.stale_after,
            notify,
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::http::Listen;

    const GOOD: &str = r#"
database = "fleet.db"
code_key_file = "/etc/redeemd/code.key"
[hub]
nats_url = "nats://127.0.0.1:4222"
[[store]]
name = "store12"
[[store]]
name = "store13"
"#;

    fn parse(text: &str) -> Result<FleetConfig, Vec<String>> {
        FleetConfig::parse(text, Path::new("/etc/redeemd/hq.toml")).map_err(|e| e.problems)
    }

    #[test]
    fn the_issue_example_parses_with_defaults() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.database, Path::new("/etc/redeemd/fleet.db"));
        assert_eq!(c.stores, vec!["store12", "store13"]);
        assert_eq!(c.hub.domain, "hq");
        assert_eq!(c.stale_after, Duration::from_secs(90));
        assert!(matches!(c.http.listen, Listen::Tcp(a) if a.port() == 8738));
    }

    #[test]
    fn every_problem_is_named() {
        let cases: &[(&str, &str)] = &[
            ("name = \"store12\"", "name = \"store 12\""),
            ("name = \"store13\"", "name = \"store12\""),
            ("nats://127.0.0.1:4222", "http://hq"),
            ("[hub]", "[http]\nlisten = \"0.0.0.0:8738\"\n[hub]"),
            ("[hub]", "stale_after = \"0s\"\n[hub]"),
        ];
        let wants = [
            "store.name \"store 12\"",
            "listed twice",
            "hub.nats_url",
            "http.token_file: required",
            "stale_after",
        ];
        for ((from, to), want) in cases.iter().zip(wants) {
            let problems = parse(&GOOD.replace(from, to)).expect_err(want);
            assert!(
                problems.iter().any(|p| p.contains(want)),
                "{want}: {problems:?}"
            );
        }
        let unknown = parse(&format!("{GOOD}\n[hub2]\nx = 1")).expect_err("unknown key");
        assert!(unknown[0].contains("hub2"), "{unknown:?}");
    }

    const NOTIFY: &str = r#"
[notify]
listen = "127.0.0.1:8790"
mode = "brand"
brand_id = "120344"
appid = "wx0123456789abcdef"
serial_no = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
private_key_file = "keys/brand_key.pem"
public_key_id = "PUB_KEY_ID_0114232134912410000000000000"
public_key_file = "keys/pub_key.pem"
apiv3_key_file = "keys/apiv3.key"
"#;

    #[test]
    fn notify_is_read_with_its_keys_next_to_the_file() {
        let c = parse(&format!("{GOOD}{NOTIFY}")).unwrap();
        let n = c.notify.expect("[notify]");
        assert_eq!(n.mode, crate::config::notify::NotifyMode::Brand);
        assert_eq!(n.brand_id, "120344");
        assert_eq!(n.apiv3_key_file, Path::new("/etc/redeemd/keys/apiv3.key"));
        assert_eq!(n.base_url, "https://api.mch.weixin.qq.com");
        assert!(matches!(n.listen, Listen::Tcp(a) if a.port() == 8790));
        assert!(parse(GOOD).unwrap().notify.is_none());
    }

    #[test]
    fn every_notify_problem_is_named() {
        let cases = [
            ("mode = \"brand\"", "mode = \"brands\"", "notify.mode"),
            (
                "mode = \"brand\"",
                "mode = \"partner\"",
                "notify.mchid: required",
            ),
            (
                "brand_id = \"120344\"",
                "brand_id = \"12a\"",
                "notify.brand_id",
            ),
            (
                "listen = \"127.0.0.1:8790\"",
                "listen = \"8790\"",
                "notify.listen",
            ),
            (
                "appid = \"wx0123456789abcdef\"",
                "appid = \"\"",
                "notify.appid",
            ),
            (
                "[notify]",
                "[notify]\nbase_url = \"ftp://x\"",
                "notify.base_url",
            ),
            ("[notify]", "[notify]\napiv3_key = \"x\"", "apiv3_key"),
        ];
        for (from, to, want) in cases {
            let problems = parse(&format!("{GOOD}{}", NOTIFY.replace(from, to))).expect_err(want);
            assert!(
                problems.iter().any(|p| p.contains(want)),
                "{want}: {problems:?}"
            );
        }
    }
}
