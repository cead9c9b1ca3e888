//! The TOML configuration: parsed once into typed, validated values.
//!
//! Unknown keys are errors (a misspelt `ofline = false` must not silently leave offline
//! acceptance on). Every problem found is reported at once, each naming its key, so an
//! installer fixes a file in one pass.

use crate::duration;
use crate::model::api::Api;
use crate::model::layout::Layout;
use crate::model::reason::Language;
use store::StoreConfig;
pub mod fleet;
pub mod store;
use crate::model::catalog::CardTypes;
use crate::model::offline::Limits;
use regex::Regex;
use serde::Deserialize;
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where `--config` falls back to when neither the flag nor `$REDEEMD_CONFIG` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/redeemd/redeemd.toml";

pub const DEFAULT_CARD_BASE_URL: &str = "https://api.weixin.qq.com";
pub const DEFAULT_PAY_BASE_URL: &str = "https://api.mch.weixin.qq.com";
pub const DEFAULT_PAY_BACKUP_URL: &str = "https://api2.mch.weixin.qq.com";

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

/// Where the local HTTP API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Tcp(std::net::SocketAddr),
    Unix(PathBuf),
}

impl Listen {
    /// Loopback and unix sockets are reachable from this machine only.
    pub fn is_local(&self) -> bool {
        match self {
            Listen::Tcp(a) => a.ip().is_loopback(),
            Listen::Unix(_) => true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default = "default_listen")]
    listen: String,
    #[serde(default)]
    token_file: Option<PathBuf>,
    #[serde(default = "default_language")]
    language: Language,
    #[serde(default)]
    allowed_hosts: Vec<String>,
    #[serde(default)]
    socket_mode: Option<String>,
    #[serde(default = "default_max_connections")]
    max_connections: usize,
    #[serde(default = "default_idle_timeout", deserialize_with = "duration::de")]
    idle_timeout: Duration,
    #[serde(default)]
    forward_payment_codes: bool,
}

fn default_max_connections() -> usize {
    64
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(5)
}

impl Default for RawHttp {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            token_file: None,
            language: default_language(),
            allowed_hosts: Vec::new(),
            socket_mode: None,
            max_connections: default_max_connections(),
            idle_timeout: default_idle_timeout(),
            forward_payment_codes: false,
        }
    }
}

/// The local HTTP API (till, kiosk and manager pages).
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: Listen,
    /// Every request then needs `Authorization: Bearer <token>`; required off loopback.
    pub token_file: Option<PathBuf>,
    pub language: Language,
    /// Host names the API answers to besides its own address (and loopback names on a
    /// loopback listener), lowercase.
    pub allowed_hosts: Vec<String>,
    /// The unix socket's mode (default 0660: the service's group, e.g. the POS user in
    /// group `redeemd`, may connect), whatever the umask.
    pub socket_mode: u32,
    /// Connections served at once; beyond it, 503 at once (well below the descriptor limit).
    pub max_connections: usize,
    /// A connection that sends nothing, or not its whole request head, for this long is
    /// closed.
    pub idle_timeout: Duration,
    /// A payment code scanned by mistake is answered `payment_code` with the full code, in
    /// the answer to the POS's own scan and on the event stream when a token guards it, so
    /// the POS can charge it. Never stored or logged in full.
    pub forward_payment_codes: bool,
}

pub const DEFAULT_SOCKET_MODE: u32 = 0o660;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8737";

/// The longest a scan may wait for WeChat before the till gets an offline answer.
pub const MAX_ONLINE_WAIT: Duration = Duration::from_secs(60);

fn default_listen() -> String {
    DEFAULT_LISTEN.into()
}
fn default_language() -> Language {
    Language::ZhCn
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScannerKind {
    /// RS-232 or USB-CDC: a tty device.
    Serial,
    /// A keyboard-wedge scanner: `/dev/input/eventN` (or a FIFO/file of `input_event`s).
    Keyboard,
    /// A USB HID Point-of-Sale scanner: `/dev/hidrawN` (or a FIFO/file of 64-byte reports).
    Hidpos,
    /// Lines on the process's standard input: `redeemd demo`, and piping codes in by hand.
    Stdin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    None,
    Odd,
    Even,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowControl {
    None,
    Software,
    Hardware,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScannerConfig {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ScannerKind,
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default = "default_baud")]
    pub baud: u32,
    #[serde(default = "default_parity")]
    pub parity: Parity,
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
    #[serde(default = "default_flow")]
    pub flow_control: FlowControl,
    /// Strip a leading AIM symbology identifier (`]Q1`, `]E0`, ...) and record it.
    #[serde(default)]
    pub aim_ids: bool,
    /// Keyboard: the layout the scanner types in.
    #[serde(default)]
    pub layout: Option<String>,
    /// Keyboard: take the device exclusively (EVIOCGRAB), so scans do not also reach the
    /// till's desktop or console.
    #[serde(default = "yes")]
    pub grab: bool,
    /// Keyboard: a partial code is dropped (recorded as unreadable) when its next key comes
    /// later than this (default 100 ms).
    #[serde(default, deserialize_with = "duration::de_opt")]
    pub inter_key_timeout: Option<Duration>,
    /// HID-POS: the input report id carrying scan data.
    #[serde(default)]
    pub report_id: Option<u8>,
    /// Serial: bytes written back to the scanner on a good outcome (a beep/LED command).
    #[serde(default)]
    pub good_read: Option<String>,
    /// Serial: bytes written back on a rejected or refused outcome.
    #[serde(default)]
    pub bad_read: Option<String>,
}

impl ScannerConfig {
    pub fn layout(&self) -> Layout {
        self.layout
            .as_deref()
            .and_then(Layout::parse)
            .unwrap_or(Layout::Us)
    }
}

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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    pattern: String,
    api: Api,
    #[serde(default)]
    card_id: Option<String>,
    #[serde(default)]
    stock_id: Option<String>,
    #[serde(default = "yes")]
    offline: bool,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    card_types: Option<Vec<String>>,
}

/// WeChat's card types (`card_type`), for checking `card_types`.
pub const CARD_TYPES: &[&str] = &[
    "GROUPON",
    "CASH",
    "DISCOUNT",
    "GIFT",
    "GENERAL_COUPON",
    "MEMBER_CARD",
    "SCENIC_TICKET",
    "MOVIE_TICKET",
    "BOARDING_PASS",
    "MEETING_TICKET",
    "BUS_TICKET",
];

#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// The pattern as written, for messages.
    pub pattern: String,
    /// The pattern anchored to the whole code.
    pub regex: Regex,
    pub api: Api,
    pub card_id: Option<String>,
    /// Sent as `stock_id` with a merchant coupon's use request.
    pub stock_id: Option<String>,
    /// May scans on this route be accepted while WeChat is unreachable (and `[offline]
    /// accept` allows it)?
    pub offline: bool,
    /// What people call the route ("火锅套餐券"); pages show it instead of "card #0".
    pub name: Option<String>,
    /// The card types this route consumes (card routes).
    pub card_types: CardTypes,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    #[serde(default = "default_base_delay", deserialize_with = "duration::de")]
    pub base_delay: Duration,
    #[serde(default = "default_max_delay", deserialize_with = "duration::de")]
    pub max_delay: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            base_delay: default_base_delay(),
            max_delay: default_max_delay(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfflineConfig {
    /// Off unless the merchant opts in: an offline acceptance is a risk the merchant takes.
    #[serde(default)]
    pub accept: bool,
    #[serde(default = "default_online_wait", deserialize_with = "duration::de")]
    pub online_wait: Duration,
    #[serde(default = "default_max_pending")]
    pub max_pending: u32,
    #[serde(default = "default_max_age", deserialize_with = "duration::de")]
    pub max_age: Duration,
    /// Fen: no single offline acceptance worth more (none: no limit).
    #[serde(default)]
    pub max_value: Option<i64>,
    /// Fen: the face value of all unconfirmed offline acceptances together (none: no limit).
    #[serde(default)]
    pub max_pending_value: Option<i64>,
    /// A code whose value is not known counts as above `max_value` unless this is true.
    #[serde(default)]
    pub accept_unknown_value: bool,
    /// No offline acceptance while the store guard cannot answer (needs `[store]`).
    #[serde(default)]
    pub require_store_guard: bool,
}

impl Default for OfflineConfig {
    fn default() -> Self {
        Self {
            accept: false,
            online_wait: default_online_wait(),
            max_pending: default_max_pending(),
            max_age: default_max_age(),
            max_value: None,
            max_pending_value: None,
            accept_unknown_value: false,
            require_store_guard: false,
        }
    }
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

fn yes() -> bool {
    true
}
fn default_baud() -> u32 {
    9600
}
fn default_parity() -> Parity {
    Parity::None
}
fn default_data_bits() -> u8 {
    8
}
fn default_stop_bits() -> u8 {
    1
}
fn default_flow() -> FlowControl {
    FlowControl::None
}
fn default_card_base_url() -> String {
    DEFAULT_CARD_BASE_URL.to_string()
}
fn default_pay_base_url() -> String {
    DEFAULT_PAY_BASE_URL.to_string()
}
fn default_pay_backup_url() -> String {
    DEFAULT_PAY_BACKUP_URL.to_string()
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_base_delay() -> Duration {
    Duration::from_secs(1)
}
fn default_max_delay() -> Duration {
    Duration::from_secs(60)
}
fn default_online_wait() -> Duration {
    Duration::from_millis(1500)
}
fn default_max_pending() -> u32 {
    500
}
fn default_max_age() -> Duration {
    Duration::from_secs(72 * 3600)
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
        let routes = check_routes(
            raw.route,
            wechat.is_some(),
            wechat_pay.is_some(),
            &mut problems,
        );
        if routes.is_empty() && problems.is_empty() {
            problems
                .push("route: at least one [[route]] is needed, or every code is refused".into());
        }
        check_retry_and_offline(&raw.retry, &raw.offline, &mut problems);
        let http = check_http(raw.http, base, &mut problems);
        let store = raw
            .store
            .map(|s| store::check_store(s, base, raw.offline.online_wait, &mut problems));
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

/// `[[scanner]]`: names unique, paths where the type needs them, fields only for their type.
fn check_scanners(
    mut scanners: Vec<ScannerConfig>,
    base: &Path,
    problems: &mut Vec<String>,
) -> Vec<ScannerConfig> {
    let mut names = HashSet::new();
    for (i, s) in scanners.iter_mut().enumerate() {
        let key = format!("scanner[{i}]");
        if s.name.trim().is_empty() {
            problems.push(format!("{key}.name: must not be empty"));
        } else if s.name == "keyed" {
            problems.push(format!(
                "{key}.name: \"keyed\" is reserved for codes typed in by hand"
            ));
        } else if !names.insert(s.name.clone()) {
            problems.push(format!("{key}.name: {:?} is used twice", s.name));
        }
        match (&s.kind, &s.path) {
            (ScannerKind::Stdin, Some(_)) => {
                problems.push(format!("{key}.path: a stdin scanner has no path"))
            }
            (ScannerKind::Stdin, None) => {}
            (_, None) => problems.push(format!("{key}.path: this scanner type needs a path")),
            (_, Some(p)) => s.path = Some(resolve(base, p)),
        }
        let only = |field: &str, set: bool, kind: ScannerKind, problems: &mut Vec<String>| {
            if set && s.kind != kind {
                problems.push(format!(
                    "{key}.{field}: only for type = \"{}\"",
                    format!("{kind:?}").to_lowercase()
                ));
            }
        };
        only(
            "layout",
            s.layout.is_some(),
            ScannerKind::Keyboard,
            problems,
        );
        only(
            "inter_key_timeout",
            s.inter_key_timeout.is_some(),
            ScannerKind::Keyboard,
            problems,
        );
        only(
            "report_id",
            s.report_id.is_some(),
            ScannerKind::Hidpos,
            problems,
        );
        only(
            "good_read",
            s.good_read.is_some(),
            ScannerKind::Serial,
            problems,
        );
        only(
            "bad_read",
            s.bad_read.is_some(),
            ScannerKind::Serial,
            problems,
        );
        if let Some(l) = &s.layout
            && Layout::parse(l).is_none()
        {
            problems.push(format!(
                "{key}.layout: {l:?} is not a known layout ({})",
                Layout::NAMES
            ));
        }
        if !(5..=8).contains(&s.data_bits) {
            problems.push(format!("{key}.data_bits: must be 5, 6, 7 or 8"));
        }
        if !(1..=2).contains(&s.stop_bits) {
            problems.push(format!("{key}.stop_bits: must be 1 or 2"));
        }
        if s.baud == 0 {
            problems.push(format!("{key}.baud: must be a positive rate such as 9600"));
        }
    }

    scanners
}

/// `[wechat]`: the card API's appid, secret file and URLs.
fn check_wechat(mut w: WechatConfig, base: &Path, problems: &mut Vec<String>) -> WechatConfig {
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

/// `[[route]]`: each API's section present, fields only for their API, patterns that compile.
fn check_routes(
    raw: Vec<RawRoute>,
    card: bool,
    coupon: bool,
    problems: &mut Vec<String>,
) -> Vec<RouteConfig> {
    let mut routes = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let key = format!("route[{i}]");
        match r.api {
            Api::Card if !card => problems.push(format!(
                "{key}.api: \"card\" needs a [wechat] section with appid and secret_file"
            )),
            Api::Coupon if !coupon => problems.push(format!(
                "{key}.api: \"coupon\" needs a [wechat_pay] section (mchid, keys, ...)"
            )),
            _ => {}
        }
        if r.api == Api::Card && r.stock_id.is_some() {
            problems.push(format!("{key}.stock_id: only for api = \"coupon\""));
        }
        if r.api == Api::Coupon && r.card_id.is_some() {
            problems.push(format!("{key}.card_id: only for api = \"card\""));
        }
        if r.stock_id
            .as_ref()
            .is_some_and(|s| s.is_empty() || s.len() > 20)
        {
            problems.push(format!("{key}.stock_id: must be 1 to 20 characters"));
        }
        if r.api == Api::Coupon && r.card_types.is_some() {
            problems.push(format!("{key}.card_types: only for api = \"card\""));
        }
        if r.name
            .as_ref()
            .is_some_and(|n| n.trim().is_empty() || n.chars().count() > 40)
        {
            problems.push(format!("{key}.name: must be 1 to 40 characters"));
        }
        let card_types = match card_types(r.card_types.as_deref()) {
            Ok(t) => t,
            Err(p) => {
                problems.push(format!("{key}.card_types: {p}"));
                CardTypes::Coupons
            }
        };
        match Regex::new(&format!("^(?:{})$", r.pattern)) {
            Ok(regex) => routes.push(RouteConfig {
                pattern: r.pattern,
                regex,
                api: r.api,
                card_id: r.card_id,
                stock_id: r.stock_id,
                offline: r.offline,
                name: r.name.map(|n| n.trim().to_string()),
                card_types,
            }),
            Err(e) => problems.push(format!("{key}.pattern: not a valid regex: {e}")),
        }
    }
    routes
}

/// `card_types`: absent → every coupon type; `["any"]` → no check; else known types.
fn card_types(raw: Option<&[String]>) -> Result<CardTypes, String> {
    let Some(raw) = raw else {
        return Ok(CardTypes::Coupons);
    };
    if raw.iter().any(|t| t.eq_ignore_ascii_case("any")) {
        return if raw.len() == 1 {
            Ok(CardTypes::Any)
        } else {
            Err("\"any\" stands alone".into())
        };
    }
    if raw.is_empty() {
        return Err("empty: no card could be redeemed (leave the key out for every coupon type, or [\"any\"])".into());
    }
    let mut kinds = Vec::new();
    for t in raw {
        let upper = t.to_ascii_uppercase();
        if !CARD_TYPES.contains(&upper.as_str()) {
            return Err(format!(
                "{t:?} is not a WeChat card type (one of {})",
                CARD_TYPES.join(", ")
            ));
        }
        kinds.push(upper);
    }
    Ok(CardTypes::Only(kinds))
}

/// `[retry]` and `[offline]`: durations that make sense together.
fn check_retry_and_offline(
    retry: &RetryConfig,
    offline: &OfflineConfig,
    problems: &mut Vec<String>,
) {
    if retry.base_delay.is_zero() {
        problems.push("retry.base_delay: must be more than 0".into());
    }
    if retry.max_delay < retry.base_delay {
        problems.push("retry.max_delay: must not be less than retry.base_delay".into());
    }
    if offline.online_wait.is_zero() {
        problems.push("offline.online_wait: must be more than 0".into());
    } else if offline.online_wait > MAX_ONLINE_WAIT {
        problems.push(format!(
            "offline.online_wait: at most {} s (a cashier waits that long for every scan)",
            MAX_ONLINE_WAIT.as_secs()
        ));
    }
    for (key, v) in [
        ("max_value", offline.max_value),
        ("max_pending_value", offline.max_pending_value),
    ] {
        if v.is_some_and(|v| v < 0) {
            problems.push(format!("offline.{key}: fen, 0 or more"));
        }
    }
}

fn check_http(raw: RawHttp, base: &Path, problems: &mut Vec<String>) -> HttpConfig {
    let listen = match raw.listen.strip_prefix("unix:") {
        Some(p) if !p.is_empty() => Listen::Unix(resolve(base, Path::new(p))),
        Some(_) => {
            problems.push("http.listen: \"unix:\" needs a socket path".into());
            Listen::Unix(PathBuf::new())
        }
        None => match raw.listen.parse::<std::net::SocketAddr>() {
            Ok(a) => Listen::Tcp(a),
            Err(_) => {
                problems.push(format!(
                    "http.listen: {:?} is neither IP:PORT nor unix:/path",
                    raw.listen
                ));
                Listen::Tcp(std::net::SocketAddr::from(([127, 0, 0, 1], 8737)))
            }
        },
    };
    let token_file = raw.token_file.map(|t| resolve(base, &t));
    if !listen.is_local() && token_file.is_none() {
        problems.push(
            "http.token_file: required when http.listen is not a loopback address or a unix socket"
                .into(),
        );
    }
    let mut allowed_hosts = Vec::new();
    for (i, h) in raw.allowed_hosts.iter().enumerate() {
        let name = h.trim().to_ascii_lowercase();
        let valid = !name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        if valid {
            allowed_hosts.push(name);
        } else {
            problems.push(format!(
                "http.allowed_hosts[{i}]: {h:?} is not a host name (no scheme, port or path: \"pos.store12.lan\")"
            ));
        }
    }
    let socket_mode = match raw.socket_mode.as_deref() {
        None => DEFAULT_SOCKET_MODE,
        Some(m) => match u32::from_str_radix(m.trim_start_matches("0o"), 8) {
            Ok(mode) if mode <= 0o777 && matches!(listen, Listen::Unix(_)) => mode,
            Ok(mode) if mode <= 0o777 => {
                problems.push("http.socket_mode: only for listen = \"unix:/path\"".into());
                mode
            }
            _ => {
                problems.push(format!(
                    "http.socket_mode: {m:?} is not a file mode (octal, such as \"0660\")"
                ));
                DEFAULT_SOCKET_MODE
            }
        },
    };
    if !(1..=1024).contains(&raw.max_connections) {
        problems.push("http.max_connections: must be 1 to 1024".into());
    }
    if raw.idle_timeout.is_zero() || raw.idle_timeout > Duration::from_secs(300) {
        problems.push("http.idle_timeout: must be more than 0 and at most 5m".into());
    }
    HttpConfig {
        listen,
        token_file,
        language: raw.language,
        allowed_hosts,
        socket_mode,
        max_connections: raw.max_connections,
        idle_timeout: raw.idle_timeout,
        forward_payment_codes: raw.forward_payment_codes,
    }
}

fn check_wechat_pay(p: &mut WechatPayConfig, base: &Path, problems: &mut Vec<String>) {
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
fn toml_error(e: &toml::de::Error) -> String {
    e.to_string().trim_end().to_string()
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
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
