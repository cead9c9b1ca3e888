//! Which `Host` names the local API answers to. A page served from a name the attacker
//! controls can be made to resolve to 127.0.0.1 (DNS rebinding); the browser then sends that
//! name as `Host`, and as `Origin`, so the same-origin check alone would let it redeem and
//! read full codes. Only the names this daemon serves are answered: loopback names and
//! addresses for a loopback or unix listener, the configured address, and
//! `[http] allowed_hosts` (a name the POS uses). An IP address is never a rebinding name.

use crate::config::http::Listen;
use std::net::IpAddr;

#[derive(Debug, Clone)]
pub struct HostPolicy {
    pub listen: Listen,
    /// Extra names, lowercase, without a port.
    pub allowed: Vec<String>,
}

impl HostPolicy {
    /// Whether a request with this `Host` header may be answered. No header at all is not a
    /// browser (HTTP/1.1 browsers always send one).
    pub fn allows(&self, host: Option<&str>) -> bool {
        let Some(host) = host else {
            return true;
        };
        let Some(name) = name_of(host) else {
            return false;
        };
        if self.allowed.contains(&name) {
            return true;
        }
        let local = self.listen.is_local();
        match name.parse::<IpAddr>() {
            Ok(ip) => match &self.listen {
                Listen::Tcp(addr) if addr.ip().is_unspecified() => true,
                Listen::Tcp(addr) if addr.ip() == ip => true,
                _ => local && ip.is_loopback(),
            },
            Err(_) => local && (name == "localhost" || name.ends_with(".localhost")),
        }
    }
}

/// The name in a `Host` header, lowercase, without its port (`[::1]:8737` → `::1`); `None`
/// when it is not a host name at all.
fn name_of(host: &str) -> Option<String> {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.starts_with(':')) {
            return None;
        }
        ip
    } else {
        match host.rsplit_once(':') {
            Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) => n,
            Some(_) => return None,
            None => host,
        }
    };
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
    ok.then(|| name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn policy(listen: &str, allowed: &[&str]) -> HostPolicy {
        HostPolicy {
            listen: match listen.strip_prefix("unix:") {
                Some(p) => Listen::Unix(PathBuf::from(p)),
                None => Listen::Tcp(listen.parse().unwrap()),
            },
            allowed: allowed.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn host_table() {
        let table: &[(&str, &[&str], Option<&str>, bool)] = &[
            ("127.0.0.1:8737", &[], Some("127.0.0.1:8737"), true),
            ("127.0.0.1:8737", &[], Some("localhost:8737"), true),
            ("127.0.0.1:8737", &[], Some("LOCALHOST"), true),
            ("127.0.0.1:8737", &[], Some("[::1]:8737"), true),
            ("127.0.0.1:8737", &[], Some("127.0.0.2"), true),
            ("127.0.0.1:8737", &[], None, true),
            // DNS rebinding: a name the attacker controls, resolving to the till.
            ("127.0.0.1:8737", &[], Some("evil.example:8737"), false),
            ("127.0.0.1:8737", &[], Some("evil.example"), false),
            ("127.0.0.1:8737", &[], Some("10.0.0.5:8737"), false),
            ("127.0.0.1:8737", &[], Some("evil.example:8737@x"), false),
            ("127.0.0.1:8737", &[], Some(""), false),
            (
                "127.0.0.1:8737",
                &["pos.store12.lan"],
                Some("pos.store12.lan:8737"),
                true,
            ),
            (
                "127.0.0.1:8737",
                &["pos.store12.lan"],
                Some("pos.store12.lan.evil.example"),
                false,
            ),
            // Off loopback: the configured address and the allowed names, not localhost.
            ("10.0.0.5:8737", &[], Some("10.0.0.5:8737"), true),
            ("10.0.0.5:8737", &[], Some("localhost:8737"), false),
            ("10.0.0.5:8737", &[], Some("127.0.0.1:8737"), false),
            ("10.0.0.5:8737", &["till3"], Some("till3:8737"), true),
            ("0.0.0.0:8737", &[], Some("192.168.1.20:8737"), true),
            ("0.0.0.0:8737", &[], Some("evil.example:8737"), false),
            ("unix:/run/redeemd/api.sock", &[], Some("localhost"), true),
            (
                "unix:/run/redeemd/api.sock",
                &[],
                Some("evil.example"),
                false,
            ),
        ];
        for (listen, allowed, host, want) in table {
            assert_eq!(
                policy(listen, allowed).allows(*host),
                *want,
                "listen {listen}, allowed {allowed:?}, Host {host:?}"
            );
        }
    }
}
