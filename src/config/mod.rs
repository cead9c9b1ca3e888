//! The TOML configuration: parsed once into typed, validated values.
//!
//! Unknown keys are errors (a misspelt `ofline = false` must not silently leave offline
//! acceptance on). Every problem found is reported at once, each naming its key, so an
//! installer fixes a file in one pass.

use http::{HttpConfig, RawHttp, check_http};
use offline::{OfflineConfig, RetryConfig, check_retry_and_offline};
use route::{RawRoute, RouteConfig, check_routes};
use scanner::{ScannerConfig, check_scanners};
use store::StoreConfig;
use wechat::{WechatConfig, WechatPayConfig, check_wechat, check_wechat_pay};

pub mod fleet;
pub mod http;
pub mod notify;
pub mod offline;
pub mod route;
pub mod scanner;
pub mod store;
pub mod wechat;

use crate::model::offline::Limits;

use regex::Regex;

use serde::Deserialize;

use std::fmt;

use std::path::{Path, PathBuf};

/// Where `--config` falls back to when neither the flag nor `$REDEEMD_CONFIG` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/redeemd/redeemd.toml";

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from; relative paths inside it were resolved against its folder.
    pub source: PathBuf,
    pub database: PathBuf,
    pub till: String,
    pub scanners: Vec<ScannerConfig>,
    pub wechat: Option<WechatConfig>,
    pub wechat_pay: Option<WechatPayConfig>,
    pub routes: Vec<RouteConfig>,
    pub retry: RetryConfig,
    pub offline: OfflineConfig,
    pub http: HttpConfig,
    /// `[store]`: the store-wide claim on every code (NATS JetStream).
    pub store: Option<StoreConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    database: PathBuf,
    till: String,
    #[serde(default)]
    scanner: Vec<ScannerConfig>,
    #[serde(default)]
    wechat: Option<WechatConfig>,
    #[serde(default)]
    wechat_pay: Option<WechatPayConfig>,
    #[serde(default)]
    route: Vec<RawRoute>,
    #[serde(default)]
    retry: RetryConfig,
    #[serde(default)]
    offline: OfflineConfig,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    store: Option<store::RawStore>,
}

pub(super) fn yes() -> bool {
    true
}

/// Everything wrong with a config file, each line naming its key.
#[derive(Debug)]
pub struct ConfigError {
    pub path: PathBuf,
    pub problems: Vec<String>,
    /// The config as far as it could be built (when the TOML itself was readable), so that
    /// the start-up checks can add their findings: every problem is listed at once.
    pub partial: Option<Box<Config>>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config {}:", self.path.display())?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Whether scans of the `[[route]]` at this index may be accepted offline: `[offline]
    /// accept` and the route's own `offline`. An unknown route may not.
    pub fn offline_allowed(&self, route: usize) -> bool {
        self.offline.accept && self.routes.get(route).is_some_and(|r| r.offline)
    }

    /// Every `[offline]` limit that applies to a scan on the `[[route]]` at this index.
    pub fn offline_limits(&self, route: usize) -> Limits {
        Limits {
            allowed: self.offline_allowed(route),
            max_pending: self.offline.max_pending,
            max_value: self.offline.max_value,
            max_pending_value: self.offline.max_pending_value,
            accept_unknown_value: self.offline.accept_unknown_value,
            guard_missing: false,
            redeemed_elsewhere: None,
        }
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_path_buf(),
            problems: vec![format!("cannot read the file: {e}")],
            partial: None,
        })?;
        Self::parse(&text, path)
    }

    /// Parses `text` as if read from `path` (relative paths resolve against its folder).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let err = |problems| ConfigError {
            path: path.to_path_buf(),
            problems,
            partial: None,
        };
        let text = expand_env(text).map_err(|p| err(vec![p]))?;
        let raw: RawConfig = toml::from_str(&text).map_err(|e| err(vec![toml_error(&e)]))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut problems = Vec::new();

        if raw.till.trim().is_empty() {
            problems.push("till: must name this till (e.g. \"store12-till3\")".into());
        }
        if raw.scanner.is_empty() {
            problems.push("scanner: at least one [[scanner]] is needed".into());
        }
        let scanners = check_scanners(raw.scanner, base, &mut problems);
        let wechat = raw.wechat.map(|w| check_wechat(w, base, &mut problems));
        let mut wechat_pay = raw.wechat_pay;
        if let Some(p) = wechat_pay.as_mut() {
            check_wechat_pay(p, base, &mut problems);
        }
        let store = raw
            .store
            .map(|s| store::check_store(s, base, raw.offline.online_wait, &mut problems));
        let have = route::Available {
            card: wechat.is_some(),
            coupon: wechat_pay.is_some(),
            product_coupon: wechat_pay
                .as_ref()
                .is_some_and(|p| p.mode.is_some() && p.brand_id.is_some()),
            store: store.is_some(),
        };
        let routes = check_routes(raw.route, &have, &mut problems);
        if routes.is_empty() && problems.is_empty() {
            problems
                .push("route: at least one [[route]] is needed, or every code is refused".into());
        }
        check_retry_and_offline(&raw.retry, &raw.offline, &mut problems);
        let http = check_http(raw.http, base, &mut problems);
        if store.is_some() && !raw.till.trim().is_empty() && !store::is_token(&raw.till) {
            problems.push(
                "till: with [store], letters, digits, '-' or '_' only (it is a NATS subject token of the till's events)"
                    .into(),
            );
        }
        if raw.offline.require_store_guard && store.is_none() {
            problems.push("offline.require_store_guard: needs a [store] section".into());
        }

        let config = Config {
            http,
            source: path.to_path_buf(),
            database: resolve(base, &raw.database),
            till: raw.till,
            scanners,
            wechat,
            wechat_pay,
            routes,
            retry: raw.retry,
            offline: raw.offline,
            store,
        };
        if !problems.is_empty() {
            return Err(ConfigError {
                partial: Some(Box::new(config)),
                ..err(problems)
            });
        }
        Ok(config)
    }
}

/// Replaces `${NAME}` with the environment variable `NAME` (upper case, digits, `_`), so
/// that secrets can live in systemd's `${CREDENTIALS_DIRECTORY}` rather than in the config.
pub fn expand_env(text: &str) -> Result<String, String> {
    static VAR: std::sync::LazyLock<Regex> =
        std::sync::LazyLock::new(|| Regex::new(r"\$\{([A-Z_][A-Z0-9_]*)\}").expect("static regex"));
    let mut missing = None;
    let out = VAR.replace_all(text, |c: &regex::Captures| match std::env::var(&c[1]) {
        Ok(v) => v,
        Err(_) => {
            let line = text[..c.get(0).map_or(0, |m| m.start())].lines().count().max(1);
            missing.get_or_insert(format!(
                "line {line}: ${{{}}} is not set (under systemd, LoadCredential= sets CREDENTIALS_DIRECTORY)",
                &c[1]
            ));
            c[0].to_string()
        }
    });
    match missing {
        Some(m) => Err(m),
        None => Ok(out.into_owned()),
    }
}

/// toml's messages already name the key and quote the line; keep the line number up front.
pub(super) fn toml_error(e: &toml::de::Error) -> String {
    e.to_string().trim_end().to_string()
}

pub(super) fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// `https://` anywhere; `http://` only to this machine (a simulator, or a local relay).
pub fn check_url(url: &str) -> Result<(), String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match u.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match u.host() {
                Some(url::Host::Domain(d)) => d == "localhost",
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if loopback {
                Ok(())
            } else {
                Err(format!(
                    "{url:?}: http:// is only accepted for loopback hosts; use https://"
                ))
            }
        }
        other => Err(format!("{url:?}: scheme {other:?} is not supported")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::catalog::CardTypes;
    use std::time::Duration;

    const GOOD: &str = r#"
database = "redeemd.db"
till = "store12-till3"

[[scanner]]
name = "front"
type = "serial"
path = "/dev/ttyACM0"

[wechat]
appid = "wx123"
secret_file = "appsecret"

[[route]]
pattern = "[0-9]{12}"
api = "card"
"#;

    #[test]
    fn parses_and_resolves_relative_paths() {
        let c = Config::parse(GOOD, Path::new("/etc/redeemd/redeemd.toml")).unwrap();
        assert_eq!(c.database, PathBuf::from("/etc/redeemd/redeemd.db"));
        assert_eq!(
            c.wechat.as_ref().unwrap().secret_file,
            PathBuf::from("/etc/redeemd/appsecret")
        );
        assert_eq!(c.scanners[0].baud, 9600);
        assert!(c.routes[0].regex.is_match("123456789012"));
        assert!(!c.routes[0].regex.is_match("1234567890123"), "anchored");
        assert!(!c.offline.accept);
        assert_eq!(c.offline.online_wait, Duration::from_millis(1500));
    }

    #[test]
    fn unknown_key_is_named() {
        let text = GOOD.replace("[offline]", "") + "\n[offline]\nofline = true\n";
        let e = Config::parse(&text, Path::new("x.toml")).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("ofline"), "{msg}");
        assert!(msg.contains("line"), "{msg}");
    }

    #[test]
    fn collects_every_problem() {
        let text = GOOD
            .replace("[0-9]{12}", "[0-9")
            .replace("store12-till3", "")
            .replace(
                "appid = \"wx123\"",
                "appid = \"wx\"\nbase_url = \"http://api.example.com\"",
            );
        let e = Config::parse(&text, Path::new("x.toml")).unwrap_err();
        let all = e.problems.join("\n");
        assert!(all.contains("route[0].pattern"), "{all}");
        assert!(all.contains("till:"), "{all}");
        assert!(all.contains("wechat.base_url"), "{all}");
    }

    /// `[wechat_pay] mode`, `brand_id`, `store_id` and a route's `hold_timeout`: what is
    /// accepted, and what each mistake is called.
    #[test]
    fn product_coupon_keys_and_their_mistakes() {
        let pay = |extra: &str| {
            format!(
                "{GOOD}\n[wechat_pay]\nmchid = \"1900000109\"\nappid = \"wxpay\"\nserial_no = \"5157F09E\"\n\
                 private_key_file = \"k.pem\"\npublic_key_id = \"PUB_KEY_ID_01\"\npublic_key_file = \"p.pem\"\n{extra}"
            )
        };
        let ok = Config::parse(
            &pay("mode = \"brand\"\nbrand_id = \"120344\"\nstore_id = \"S001\"\n"),
            Path::new("x.toml"),
        )
        .expect("accepted");
        let p = ok.wechat_pay.expect("[wechat_pay]");
        assert_eq!(p.mode, Some(wechat::PayMode::Brand));
        assert_eq!(p.store_id.as_deref(), Some("S001"));
        assert_eq!(ok.routes[0].hold_timeout, route::DEFAULT_HOLD_TIMEOUT);
        let cases = [
            (
                "mode = \"brand\"\n",
                "wechat_pay.brand_id: needed with mode",
            ),
            (
                "brand_id = \"120344\"\n",
                "wechat_pay.mode: needed with brand_id",
            ),
            (
                "mode = \"partner\"\nbrand_id = \"b-1\"\n",
                "wechat_pay.brand_id: must be",
            ),
            ("store_id = \"\"\n", "wechat_pay.store_id: 1 to 32"),
        ];
        for (extra, want) in cases {
            let e = Config::parse(&pay(extra), Path::new("x.toml")).unwrap_err();
            let all = e.problems.join("\n");
            assert!(all.contains(want), "{extra}: {all}");
        }
        let bad_mode = Config::parse(&pay("mode = \"merchant\"\n"), Path::new("x.toml"));
        assert!(bad_mode.is_err());
        let on_card = GOOD.replace("api = \"card\"", "api = \"card\"\nhold_timeout = \"10m\"");
        let e = Config::parse(&on_card, Path::new("x.toml")).unwrap_err();
        assert!(
            e.problems
                .join("\n")
                .contains("route[0].hold_timeout: only for api = \"product_coupon\""),
            "{e}"
        );
    }

    /// A product-coupon route needs WeChat Pay with a mode and the store's registry mirror;
    /// each missing part is named.
    #[test]
    fn a_product_coupon_route_needs_its_mode_and_its_store() {
        let text = GOOD.replace("api = \"card\"", "api = \"product_coupon\"");
        let e = Config::parse(&text, Path::new("x.toml")).unwrap_err();
        let all = e.problems.join("\n");
        assert!(
            all.contains("route[0].api: \"product_coupon\" needs [wechat_pay] with mode"),
            "{all}"
        );
        assert!(
            all.contains("route[0].api: \"product_coupon\" needs a [store] section"),
            "{all}"
        );
        let full = format!(
            "{text}\n[wechat_pay]\nmchid = \"1900000109\"\nappid = \"wxpay\"\nserial_no = \"5157F09E\"\n\
             private_key_file = \"k.pem\"\npublic_key_id = \"PUB_KEY_ID_01\"\npublic_key_file = \"p.pem\"\n\
             mode = \"brand\"\nbrand_id = \"120344\"\n\n[store]\nname = \"s1\"\nnats_url = \"nats://127.0.0.1:4222\"\ncode_key_file = \"k\"\n"
        );
        let ok = Config::parse(&full, Path::new("x.toml")).expect("accepted");
        assert_eq!(ok.routes[0].api, crate::model::api::Api::ProductCoupon);
        assert_eq!(ok.routes[0].hold_timeout, route::DEFAULT_HOLD_TIMEOUT);
    }

    /// `card_types`, `name` and the offline value caps: what is accepted and what each
    /// mistake is called.
    #[test]
    fn route_card_types_names_and_value_caps() {
        let with = |route_extra: &str, tail: &str| {
            let text =
                GOOD.replace("api = \"card\"", &format!("api = \"card\"\n{route_extra}")) + tail;
            Config::parse(&text, Path::new("x.toml"))
        };
        let c = with("", "").unwrap();
        assert_eq!(c.routes[0].card_types, CardTypes::Coupons);
        let c = with(
            "name = \"火锅套餐券\"\ncard_types = [\"cash\", \"GROUPON\"]",
            "",
        )
        .unwrap();
        assert_eq!(c.routes[0].name.as_deref(), Some("火锅套餐券"));
        assert_eq!(
            c.routes[0].card_types,
            CardTypes::Only(vec!["CASH".into(), "GROUPON".into()])
        );
        assert_eq!(
            with("card_types = [\"any\"]", "").unwrap().routes[0].card_types,
            CardTypes::Any
        );
        let c = with(
            "",
            "\n[offline]\nmax_value = 5000\nmax_pending_value = 20000\naccept_unknown_value = true\n",
        )
        .unwrap();
        assert_eq!(
            (
                c.offline.max_value,
                c.offline.max_pending_value,
                c.offline.accept_unknown_value
            ),
            (Some(5000), Some(20000), true)
        );
        for (route_extra, tail, key) in [
            (
                "card_types = [\"COUPONS\"]",
                "",
                "route[0].card_types: \"COUPONS\" is not a WeChat card type",
            ),
            (
                "card_types = [\"any\", \"CASH\"]",
                "",
                "route[0].card_types: \"any\" stands alone",
            ),
            ("card_types = []", "", "route[0].card_types: empty"),
            ("name = \"  \"", "", "route[0].name"),
            ("", "\n[offline]\nmax_value = -1\n", "offline.max_value"),
        ] {
            let all = with(route_extra, tail).unwrap_err().problems.join("\n");
            assert!(all.contains(key), "{route_extra} {tail}: {all}");
        }
    }

    /// `[store]`: defaults, several servers, and each mistake named.
    #[test]
    fn store_section() {
        let store = |body: &str| {
            let text = format!("{GOOD}\n[store]\n{body}\n");
            Config::parse(&text, Path::new("/etc/redeemd/redeemd.toml"))
        };
        let c = store("name = \"store12\"\nnats_url = \"nats://10.0.0.5:4222, nats://10.0.0.6:4222\"\ncode_key_file = \"code.key\"")
            .unwrap();
        let s = c.store.expect("a store");
        assert_eq!(
            s.nats_urls,
            ["nats://10.0.0.5:4222", "nats://10.0.0.6:4222"]
        );
        assert_eq!(s.code_key_file, PathBuf::from("/etc/redeemd/code.key"));
        assert_eq!(s.claim_timeout, Duration::from_millis(300));
        assert_eq!(s.claims_bucket, "redeemd_claims");
        assert_eq!(s.claim_ttl, Duration::from_secs(30 * 86_400));
        assert_eq!(s.status_interval, Duration::from_secs(30));
        assert!(!c.offline.require_store_guard);
        // The till's name is a subject token of its events.
        let text = format!(
            "{GOOD}\n[store]\nname = \"s\"\nnats_url = \"nats://a:4222\"\ncode_key_file = \"k\"\n"
        )
        .replace("till = \"store12-till3\"", "till = \"till 3\"");
        let all = Config::parse(&text, Path::new("x.toml"))
            .unwrap_err()
            .problems
            .join("\n");
        assert!(all.contains("till: with [store]"), "{all}");
        for (body, key) in [
            (
                "name = \"store 12\"\nnats_url = \"nats://a:4222\"\ncode_key_file = \"k\"",
                "store.name",
            ),
            (
                "name = \"s\"\nnats_url = \"http://a:4222\"\ncode_key_file = \"k\"",
                "store.nats_url",
            ),
            (
                "name = \"s\"\nnats_url = \"nats://a:4222\"\ncode_key_file = \"k\"\nclaim_timeout = \"5s\"",
                "store.claim_timeout",
            ),
            (
                "name = \"s\"\nnats_url = \"nats://a:4222\"\ncode_key_file = \"k\"\ncreds_file = \"c\"\nnkey_file = \"n\"",
                "one of creds_file",
            ),
            (
                "name = \"s\"\nnats_url = \"nats://a:4222\"\ncode_key_file = \"k\"\nclaims_bucket = \"a.b\"",
                "store.claims_bucket",
            ),
            (
                "name = \"s\"\nnats_url = \"nats://a:4222\"\ncode_key_file = \"k\"\nstatus_interval = \"5m\"",
                "store.status_interval",
            ),
        ] {
            let all = store(body).unwrap_err().problems.join("\n");
            assert!(all.contains(key), "{body}: {all}");
        }
        let text = format!("{GOOD}\n[offline]\nrequire_store_guard = true\n");
        let all = Config::parse(&text, Path::new("x.toml"))
            .unwrap_err()
            .problems
            .join("\n");
        assert!(
            all.contains("offline.require_store_guard: needs a [store] section"),
            "{all}"
        );
    }

    #[test]
    fn bad_duration_names_key() {
        let text = GOOD.to_string() + "\n[retry]\nbase_delay = \"soon\"\n";
        let msg = Config::parse(&text, Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("base_delay") || msg.contains("retry"), "{msg}");
        assert!(msg.contains("soon"), "{msg}");
    }

    #[test]
    fn inter_key_timeout_is_for_keyboards_only() {
        let text = GOOD.replace(
            "type = \"serial\"",
            "type = \"serial\"\ninter_key_timeout = \"50ms\"",
        );
        let msg = Config::parse(&text, Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("scanner[0].inter_key_timeout: only for type = \"keyboard\""),
            "{msg}"
        );
    }

    /// Bounds a careless value would break: a cashier waiting ten years for every scan, a
    /// Host name that is a URL.
    #[test]
    fn online_wait_and_allowed_hosts_are_bounded() {
        for (extra, key) in [
            (
                "\n[offline]\nonline_wait = \"3650d\"\n",
                "offline.online_wait: at most 60 s",
            ),
            (
                "\n[http]\nallowed_hosts = [\"http://pos.lan\"]\n",
                "http.allowed_hosts[0]",
            ),
            (
                "\n[http]\nallowed_hosts = [\"pos.lan:8737\"]\n",
                "http.allowed_hosts[0]",
            ),
        ] {
            let text = GOOD.to_string() + extra;
            let msg = Config::parse(&text, Path::new("x.toml"))
                .unwrap_err()
                .to_string();
            assert!(msg.contains(key), "{extra}: {msg}");
        }
        let text = GOOD.to_string() + "\n[http]\nallowed_hosts = [\"POS.Store12.lan\"]\n";
        let c = Config::parse(&text, Path::new("x.toml")).unwrap();
        assert_eq!(c.http.allowed_hosts, ["pos.store12.lan"]);
    }

    #[test]
    fn http_only_for_loopback() {
        assert!(check_url("http://127.0.0.1:9000").is_ok());
        assert!(check_url("http://localhost:9000").is_ok());
        assert!(check_url("http://[::1]:9000").is_ok());
        assert!(check_url("https://api.weixin.qq.com").is_ok());
        assert!(check_url("http://10.0.0.1").is_err());
        assert!(check_url("ftp://127.0.0.1").is_err());
    }
}
