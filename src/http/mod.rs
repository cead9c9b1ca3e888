//! What the till's API ([`crate::api`]) and HQ's fleet page ([`crate::fleet`]) both serve
//! with: which `Host` names are answered ([`host`]), the bounded connection loop
//! ([`serve`]), CSV writing ([`csv`]), the pages' shared styles and headers, bearer tokens
//! and JSON refusals. It knows neither a till's ledger nor HQ's read model.

pub mod csv;
pub mod host;
pub mod serve;

use axum::Json;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The styles the manager, kiosk and fleet pages share.
pub const COMMON_CSS: &str = include_str!("common.css");

/// A refusal: `{"error": message}`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// Every refusal is JSON `{"error"}`, as the OpenAPI files say: the framework's own
/// plain-text refusals (a path that is not valid UTF-8 once decoded, say) are wrapped.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let plain = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/plain"));
    if !(res.status().is_client_error() && plain) {
        return res;
    }
    let status = res.status();
    let text = match axum::body::to_bytes(res.into_body(), 64 * 1024).await {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(_) => status.canonical_reason().unwrap_or("refused").to_string(),
    };
    error(status, text)
}

/// 421 for a request whose `Host` the policy does not answer (DNS rebinding); `who` names
/// the API in the message ("this till's API").
pub fn misdirected(hosts: &host::HostPolicy, req: &Request, who: &str) -> Option<Response> {
    let host = req
        .headers()
        .get(header::HOST)
        .map(|v| v.to_str().unwrap_or(""));
    (!hosts.allows(host)).then(|| {
        error(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "Host {:?} is not a name {who} serves: add it to [http] allowed_hosts",
                host.unwrap_or("")
            ),
        )
    })
}

/// Whether a request carries `token`: as `Authorization: Bearer`, or as `?token=` (a page's
/// EventSource cannot set headers). Compared in constant time.
pub fn has_token(req: &Request, token: &str) -> bool {
    let from_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let from_query = || {
        req.uri().query().and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.into_owned())
        })
    };
    from_header
        .or_else(from_query)
        .is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes()))
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A page: HTML that loads nothing from anywhere else and is never framed.
pub fn page(html: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
            ),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        html,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
