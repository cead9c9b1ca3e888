//! The fleet's page, JSON API, CSV export and metrics. Read-only: HQ looks, the stores act.

use super::metrics::FleetMetrics;
use super::read_model::{self, RowFilter, RowView};
use crate::config::fleet::FleetConfig;
use crate::http::host::HostPolicy;
use crate::http::serve as listen;
use crate::http::{csv, error};
use crate::model::claim_key::CodeKey;
use crate::model::code::Code;
use crate::model::reason::Language;
use crate::report::parse_when;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rusqlite::Connection;
use serde::Deserialize;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

const PAGE: &str = include_str!("fleet.html");

#[derive(Clone)]
pub struct FleetState {
    pub db: Arc<Mutex<Connection>>,
    pub metrics: Arc<FleetMetrics>,
    pub code_key: CodeKey,
    pub token: Option<Arc<str>>,
    pub stale_after: Duration,
    pub language: Language,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl FleetState {
    /// Runs a read-model query off the async threads.
    async fn read<T, F>(&self, f: F) -> Result<T, Response>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let db = self.db.clone();
        let done = tokio::task::spawn_blocking(move || {
            let conn = db
                .lock()
                .map_err(|_| "the read model's reader panicked".to_string())?;
            f(&conn).map_err(|e| e.to_string())
        })
        .await;
        match done {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("read model: {e}"),
            )),
            Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        }
    }
}

pub fn router(state: FleetState, hosts: Arc<HostPolicy>) -> Router {
    let api = Router::new()
        .route("/v1/fleet/tills", get(tills))
        .route("/v1/fleet/redemptions", get(redemptions))
        .route("/v1/fleet/codes", post(code))
        .route("/v1/fleet/export.csv", get(export))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(state.clone(), bearer));
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(|| async { Json(json!({ "ok": true })) }))
        .merge(api)
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            let hosts = hosts.clone();
            async move {
                match crate::http::misdirected(&hosts, &req, "this API") {
                    Some(refused) => refused,
                    None => next.run(req).await,
                }
            }
        }))
        .layer(middleware::from_fn(crate::http::json_errors))
        .with_state(state)
}

/// The bearer token, when `http.token_file` is set (the page passes it as `?token=`).
async fn bearer(State(st): State<FleetState>, req: Request, next: Next) -> Response {
    if let Some(token) = &st.token
        && !crate::http::has_token(&req, token)
    {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    }
    next.run(req).await
}

async fn page(State(st): State<FleetState>) -> Response {
    crate::http::page(
        PAGE.replace("__LANG__", st.language.tag())
            .replace("/*__COMMON_CSS__*/", crate::http::COMMON_CSS),
    )
}

async fn tills(State(st): State<FleetState>) -> Response {
    let now = now_ms();
    let day = parse_when("today", now).unwrap_or(now - 86_400_000);
    let stale = st.stale_after;
    match st
        .read(move |c| read_model::tills(c, now, stale, day))
        .await
    {
        Ok(t) => Json(t).into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize, Default)]
struct ListQuery {
    store: Option<String>,
    till: Option<String>,
    state: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
}

type ListParams = Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>;

/// The filters of a list or export; `Err` is the message for a 400. `max`: the most rows.
fn filter_of(q: ListParams, default_limit: usize, max: usize) -> Result<RowFilter, String> {
    let Query(q) = q.map_err(|e| e.body_text())?;
    let now = now_ms();
    let when = |v: &Option<String>, name: &str| -> Result<Option<i64>, String> {
        match v.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(t) => parse_when(t, now)
                .map(Some)
                .map_err(|e| format!("{name}: {e}")),
        }
    };
    let text = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
    };
    let state = text(&q.state);
    if let Some(s) = &state
        && s != read_model::REDEEMED_OUTSIDE
        && crate::model::state::State::parse_among(s, &crate::model::state::State::ALL).is_err()
    {
        return Err(format!("state: {s:?} is not a state"));
    }
    Ok(RowFilter {
        store: text(&q.store),
        till: text(&q.till),
        state,
        since: when(&q.since, "since")?,
        until: when(&q.until, "until")?,
        limit: match q.limit {
            Some(l) if l > max => return Err(format!("limit: 0 to {max}")),
            l => Some(l.unwrap_or(default_limit)),
        },
    })
}

async fn redemptions(State(st): State<FleetState>, q: ListParams) -> Response {
    let f = match filter_of(q, 100, 10_000) {
        Ok(f) => f,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    match st.read(move |c| read_model::rows(c, &f)).await {
        Ok(rows) => Json(rows).into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct CodeBody {
    code: String,
}

/// Every row of a code across the chain: the code is keyed here and never stored. It comes
/// in the body, never in a URL, so no proxy's access log holds it.
async fn code(
    State(st): State<FleetState>,
    body: Result<Json<CodeBody>, JsonRejection>,
) -> Response {
    let Json(CodeBody { code }) = match body {
        Ok(b) => b,
        Err(JsonRejection::MissingJsonContentType(e)) => {
            return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, e.body_text());
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let code = code.trim();
    if code.is_empty() || code.len() > 128 {
        return error(StatusCode::BAD_REQUEST, "code: 1 to 128 characters");
    }
    let key = st.code_key.claim_key(&Code::new(code));
    match st.read(move |c| read_model::rows_of_key(c, &key)).await {
        Ok(rows) => Json(rows).into_response(),
        Err(r) => r,
    }
}

pub const CSV_HEADER: &str = "store,till,id,code_last4,api,state,reason,reason_code,title,value,order_id,amount,scans,scanned_at,updated_at,redeemed_at,resolution,void_state,guard,transaction_id,out_trade_no";

fn write_csv(rows: &[RowView]) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(rows.len() * 160);
    let _ = std::io::Write::write_all(&mut out, CSV_HEADER.as_bytes());
    out.push(b'\n');
    for r in rows {
        let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
        let s = |v: &Option<String>| v.clone().unwrap_or_default();
        let fields = [
            r.store.clone(),
            r.till.clone(),
            r.id.to_string(),
            r.code_last4.clone(),
            s(&r.api),
            r.state.clone(),
            s(&r.reason),
            s(&r.reason_code),
            s(&r.title),
            opt(r.value),
            s(&r.order_id),
            opt(r.amount),
            r.scans.to_string(),
            r.scanned_at.clone(),
            r.updated_at.clone(),
            s(&r.redeemed_at),
            s(&r.resolution),
            s(&r.void_state),
            s(&r.guard),
            s(&r.transaction_id),
            s(&r.out_trade_no),
        ];
        let _ = csv::record(&mut out, &fields);
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn export(State(st): State<FleetState>, q: ListParams) -> Response {
    let f = match filter_of(q, usize::MAX, usize::MAX) {
        Ok(f) => f,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    match st.read(move |c| read_model::rows(c, &f)).await {
        Ok(rows) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"redeemd-chain.csv\"",
                ),
            ],
            write_csv(&rows),
        )
            .into_response(),
        Err(r) => r,
    }
}

async fn metrics(State(st): State<FleetState>) -> Response {
    let now = now_ms();
    let day = parse_when("today", now).unwrap_or(now - 86_400_000);
    let stale = st.stale_after;
    let read = st
        .read(move |c| {
            Ok((
                read_model::tills(c, now, stale, day)?,
                read_model::row_count(c)?,
                read_model::redeemed_outside_count(c)?,
            ))
        })
        .await;
    let (tills, rows, outside) = match read {
        Ok(v) => v,
        Err(r) => return r,
    };
    let out = st.metrics.render_all(&tills, rows, outside, now);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// Binds `[http] listen` and serves until `stop`.
pub async fn serve(
    cfg: &FleetConfig,
    state: FleetState,
    stop: watch::Receiver<bool>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let limits = listen::Limits {
        max_connections: cfg.http.max_connections,
        idle_timeout: cfg.http.idle_timeout,
        request_timeout: Duration::from_secs(60),
    };
    let hosts = Arc::new(HostPolicy {
        listen: cfg.http.listen.clone(),
        allowed: cfg.http.allowed_hosts.clone(),
    });
    let app = router(state, hosts);
    listen::bind(
        &cfg.http.listen,
        None,
        app,
        limits,
        stop,
        "fleet page and API",
    )
    .await
}
