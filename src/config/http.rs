//! `[http]`: where the local API listens (TCP or a unix socket), who may reach it, and
//! how many connections it serves at once.

use super::resolve;
use crate::duration;
use crate::model::reason::Language;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
pub(super) struct RawHttp {
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

pub(super) fn default_max_connections() -> usize {
    64
}

pub(super) fn default_idle_timeout() -> Duration {
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

pub(super) fn default_listen() -> String {
    DEFAULT_LISTEN.into()
}

pub(super) fn default_language() -> Language {
    Language::ZhCn
}

/// `IP:PORT` or `unix:/path` (relative to the config's folder), for the key `key`.
pub(super) fn parse_listen(
    key: &str,
    raw: &str,
    base: &Path,
    problems: &mut Vec<String>,
) -> Listen {
    match raw.strip_prefix("unix:") {
        Some(p) if !p.is_empty() => Listen::Unix(resolve(base, Path::new(p))),
        Some(_) => {
            problems.push(format!("{key}: \"unix:\" needs a socket path"));
            Listen::Unix(PathBuf::new())
        }
        None => match raw.parse::<std::net::SocketAddr>() {
            Ok(a) => Listen::Tcp(a),
            Err(_) => {
                problems.push(format!("{key}: {raw:?} is neither IP:PORT nor unix:/path"));
                Listen::Tcp(std::net::SocketAddr::from(([127, 0, 0, 1], 8737)))
            }
        },
    }
}

pub(super) fn check_http(raw: RawHttp, base: &Path, problems: &mut Vec<String>) -> HttpConfig {
    let listen = parse_listen("http.listen", &raw.listen, base, problems);
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
