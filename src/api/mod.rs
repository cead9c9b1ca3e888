//! The local HTTP surface: keyed entry, live outcomes (SSE), the log, export, review,
//! health, metrics, and the manager and kiosk pages.
//!
//! It is meant for the trusted POS application on the till. Writes refuse a browser request
//! from another origin (a web page open on the till must not be able to redeem codes), and
//! off loopback every request needs the bearer token.

mod events;
mod health;
pub(crate) mod pages;
mod records;
mod sale;
mod scans;

use crate::clock::SharedClock;
use crate::config::http::HttpConfig;
use crate::http::{error, host, serve};
use crate::ledger::queries::Filter;
use crate::ledger::review::Resolved;
use crate::ledger::{Ledger, LedgerError};
use crate::ledger::{queries, review};
use crate::metrics::{self, Metrics};
use crate::model::reason::Language;
use crate::model::scan::{Sale, Scan};
use crate::model::state::State;
use crate::outcome::{Bus, Outcome};
use crate::report::{self, LogEntry};
use crate::scanner::frame::classify_line;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State as AxState};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

/// The longest name accepted as who resolved a review item.
pub const MAX_BY: usize = 100;

/// Request bodies are small JSON objects; anything bigger is refused (413).
pub const MAX_BODY: usize = 16 * 1024;

/// A code typed in at the till, on its way to the intake.
pub type KeyedScan = (Scan, oneshot::Sender<Outcome>);

#[derive(Clone)]
pub struct ApiState {
    pub ledger: Ledger,
    pub clock: SharedClock,
    pub bus: Bus,
    pub metrics: Arc<Metrics>,
    /// Keyed entries go through the daemon's intake, in order with scanner reads.
    pub keyed: mpsc::Sender<KeyedScan>,
    pub token: Option<Arc<str>>,
    pub language: Language,
    pub online_wait: Duration,
    /// False once the dispatcher has stopped.
    pub dispatcher_alive: Arc<AtomicBool>,
    /// Token refreshes so far (from the card API's token manager).
    pub token_refreshes: Arc<dyn Fn() -> u64 + Send + Sync>,
    /// The `Host` names answered (DNS rebinding).
    pub hosts: Arc<host::HostPolicy>,
    /// The card API, to decrypt `encrypt_code`s (none without `[wechat]`).
    pub card: Option<Arc<crate::wechat::card::CardApi>>,
    /// This till's name (in the return's idempotency key).
    pub till: String,
    /// Each `[[route]]`'s `name`, by index.
    pub route_names: Arc<Vec<Option<String>>>,
    /// Wakes the void worker when a coupon's return is due.
    pub voids: Arc<tokio::sync::Notify>,
    /// Held product coupons meet their sale's WeChat Pay order.
    pub orders: crate::redeem::orders::Orders,
}

impl ApiState {
    /// A row as this till's readers get it (`[http] language`).
    fn entry(&self, row: &crate::model::row::Row) -> LogEntry {
        self.present(LogEntry::from(row))
    }

    /// An entry as this till's readers get it: route named, reason in their language.
    fn present(&self, e: LogEntry) -> LogEntry {
        e.with_route_name(&self.route_names)
            .in_language(self.language)
    }
}

fn ledger_error(e: LedgerError) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

pub fn router(state: ApiState) -> Router {
    let api = Router::new()
        .route("/v1/scans", post(scans::post_scan))
        .route("/v1/events", get(events::events))
        .route("/v1/redemptions", get(records::redemptions))
        .route("/v1/redemptions/{id}", get(records::redemption))
        .route("/v1/redemptions/{id}/resolve", post(records::resolve))
        .route("/v1/redemptions/{id}/order", post(sale::order))
        .route("/v1/redemptions/{id}/void", post(sale::void))
        .route("/v1/export.csv", get(records::export))
        .route("/metrics", get(health::metrics))
        .layer(middleware::from_fn_with_state(state.clone(), guard));
    Router::new()
        .route("/", get(pages::manager))
        .route("/kiosk", get(pages::kiosk))
        .route("/healthz", get(health::healthz))
        .merge(api)
        .layer(middleware::from_fn_with_state(state.clone(), host_guard))
        .layer(middleware::from_fn(crate::http::json_errors))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Every path, pages included: only the names this daemon serves (see [`host`]).
async fn host_guard(AxState(st): AxState<ApiState>, req: Request, next: Next) -> Response {
    match crate::http::misdirected(&st.hosts, &req, "this till's API") {
        Some(refused) => refused,
        None => next.run(req).await,
    }
}

/// Bearer token (when configured) and same-origin writes.
async fn guard(AxState(st): AxState<ApiState>, req: Request, next: Next) -> Response {
    if let Some(token) = &st.token
        && !crate::http::has_token(&req, token)
    {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    }
    if req.method() != Method::GET && !same_origin(req.headers()) {
        return error(
            StatusCode::FORBIDDEN,
            "cross-origin write refused: only the till's own pages and applications may write",
        );
    }
    next.run(req).await
}

/// A request without `Origin` comes from an application (curl, the POS); one with it must
/// come from a page this daemon served.
fn same_origin(h: &HeaderMap) -> bool {
    let Some(origin) = h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return h
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_none_or(|s| s != "cross-site");
    };
    let host = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin == format!("http://{host}") || origin == format!("https://{host}")
}

/// Binds the listener and serves until `stop` turns true.
pub async fn serve(
    http: &HttpConfig,
    state: ApiState,
    stop: watch::Receiver<bool>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let limits = serve::Limits {
        max_connections: http.max_connections,
        idle_timeout: http.idle_timeout,
        // A scan waits up to online_wait for WeChat before it is answered; its body is
        // small and sent at once.
        request_timeout: state.online_wait + 2 * http.idle_timeout,
    };
    let app = router(state);
    // Whatever the umask (the unit's is 0077): the POS user in the service's group must be
    // able to connect to a unix socket.
    serve::bind(
        &http.listen,
        Some(http.socket_mode),
        app,
        limits,
        stop,
        "HTTP API",
    )
    .await
}
