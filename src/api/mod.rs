//! The local HTTP surface: keyed entry, live outcomes (SSE), the log, export, review,
//! health, metrics, and the manager and kiosk pages.
//!
//! It is meant for the trusted POS application on the till. Writes refuse a browser request
//! from another origin (a web page open on the till must not be able to redeem codes), and
//! off loopback every request needs the bearer token.

pub(crate) mod pages;
mod sale;

use crate::clock::SharedClock;
use crate::config::HttpConfig;
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
        .route("/v1/scans", post(post_scan))
        .route("/v1/events", get(events))
        .route("/v1/redemptions", get(redemptions))
        .route("/v1/redemptions/{id}", get(redemption))
        .route("/v1/redemptions/{id}/resolve", post(resolve))
        .route("/v1/redemptions/{id}/order", post(sale::order))
        .route("/v1/redemptions/{id}/void", post(sale::void))
        .route("/v1/export.csv", get(export))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(state.clone(), guard));
    Router::new()
        .route("/", get(pages::manager))
        .route("/kiosk", get(pages::kiosk))
        .route("/healthz", get(healthz))
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

#[derive(Deserialize)]
struct ScanBody {
    #[serde(default)]
    code: Option<String>,
    /// From a card's outbound link (a kiosk, a mini program): decrypted with
    /// `card/code/decrypt`, then handled as if scanned.
    #[serde(default)]
    encrypt_code: Option<String>,
    /// The sale the code is used in (all optional).
    #[serde(default)]
    order_id: Option<String>,
    #[serde(default)]
    amount: Option<i64>,
    #[serde(default)]
    cashier: Option<String>,
}

/// The longest `encrypt_code` accepted.
const MAX_ENCRYPT_CODE: usize = 512;

/// The plain code behind an `encrypt_code`, or the answer that says why there is none.
async fn decrypted(st: &ApiState, encrypt_code: &str) -> Result<String, Response> {
    use crate::wechat::card::Answer;
    let Some(card) = &st.card else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "encrypt_code: this till has no [wechat] card API to decrypt it with",
        ));
    };
    let enc = encrypt_code.trim();
    if enc.is_empty() || enc.len() > MAX_ENCRYPT_CODE {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("encrypt_code: 1 to {MAX_ENCRYPT_CODE} characters"),
        ));
    }
    match card.decrypt(enc).await {
        Answer::Ok { reply, .. } => Ok(reply.code.expose().to_string()),
        Answer::Errcode {
            errcode, errmsg, ..
        } => Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "encrypt_code: WeChat could not decrypt it ({errcode}: {})",
                errmsg.split(" rid:").next().unwrap_or("")
            ),
        )),
        Answer::NotSent(detail) | Answer::Lost { detail, .. } => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("encrypt_code: cannot be decrypted now, WeChat does not answer ({detail})"),
        )),
        Answer::NoToken(e) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("encrypt_code: cannot be decrypted now ({e})"),
        )),
    }
}

async fn post_scan(
    AxState(st): AxState<ApiState>,
    body: Result<Json<ScanBody>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return error(e.status(), e.body_text()),
    };
    let sale = match Sale::checked(body.order_id, body.amount, body.cashier) {
        Ok(s) => s,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    let text = match (body.code, body.encrypt_code) {
        (Some(code), None) => code,
        // The decrypted value goes through the routes like any scan: garbage is refused.
        (None, Some(enc)) => match decrypted(&st, &enc).await {
            Ok(code) => code,
            Err(answer) => return answer,
        },
        (Some(_), Some(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "give code or encrypt_code, not both",
            );
        }
        (None, None) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "code (or encrypt_code): missing",
            );
        }
    };
    if text.trim().is_empty() {
        // Nothing was typed: nothing to record.
        return error(StatusCode::BAD_REQUEST, "code: must not be empty");
    }
    let scan = Scan {
        scanner: "keyed".into(),
        frame: classify_line(text.trim().as_bytes(), false),
        at: st.clock.now_ms(),
        sale,
    };
    let (tx, rx) = oneshot::channel();
    if st.keyed.send((scan, tx)).await.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "redeemd is shutting down");
    }
    match tokio::time::timeout(st.online_wait + Duration::from_secs(10), rx).await {
        Ok(Ok(o)) => {
            let o = o.in_language(st.language);
            Json(json!({
                // Only here, to the POS that scanned it, and never stored (outcome payment_code).
                "payment_code": o.payment_code.as_ref().map(|c| c.expose()),
                "id": o.id,
                "code": o.code,
                "outcome": o.outcome,
                "state": o.state,
                "reason": o.reason,
                "api": o.api,
                "scanned_at": o.scanned_at,
                "title": o.title,
                "kind": o.kind,
                "value": o.value,
                "order_id": o.order_id,
                "amount": o.amount,
                "cashier": o.cashier,
                "guard": o.guard,
                "reason_code": o.reason_code,
                "detail": o.detail,
            }))
            .into_response()
        }
        _ => error(StatusCode::SERVICE_UNAVAILABLE, "no answer from the intake"),
    }
}

async fn events(
    AxState(st): AxState<ApiState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // A payment code goes out in full only where a token keeps strangers out.
    let authenticated = st.token.is_some();
    let lang = st.language;
    let names = st.route_names.clone();
    let outcomes = BroadcastStream::new(st.bus.outcomes.subscribe())
        .filter_map(|o| o.ok())
        .map(move |o| {
            Event::default().json_data(outcome_event(&o.in_language(lang), authenticated))
        });
    let scanners = BroadcastStream::new(st.bus.scanners.subscribe())
        .filter_map(|s| s.ok())
        .map(|s| Event::default().event("scanner").json_data(s));
    let settled = BroadcastStream::new(st.bus.settled.subscribe())
        .filter_map(|r| r.ok())
        .map(move |r| {
            Event::default()
                .event("settled")
                .json_data(LogEntry::from(&r).with_route_name(&names).in_language(lang))
        });
    // The current scanner states first, so a page opened later knows them too.
    let now: Vec<_> = st
        .metrics
        .scanners()
        .into_iter()
        .map(|(scanner, connected)| {
            Event::default().event("scanner").json_data(json!({
                "scanner": scanner, "connected": connected, "detail": ""
            }))
        })
        .collect();
    let stream = tokio_stream::iter(now)
        .chain(outcomes.merge(scanners).merge(settled))
        .map(|e| Ok(e.unwrap_or_else(|_| Event::default().comment("unencodable event"))));
    Sse::new(stream).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(15))
            .text("keep-alive"),
    )
}

/// An outcome as the event stream carries it.
fn outcome_event(o: &Outcome, with_payment_code: bool) -> serde_json::Value {
    let mut v = serde_json::to_value(o).unwrap_or_default();
    if let (true, Some(code), Some(map)) = (with_payment_code, &o.payment_code, v.as_object_mut()) {
        map.insert("payment_code".into(), code.expose().into());
    }
    v
}

#[derive(Deserialize, Default)]
struct ListQuery {
    state: Option<String>,
    since: Option<String>,
    until: Option<String>,
    q: Option<String>,
    limit: Option<usize>,
    order_id: Option<String>,
}

/// The most rows one `GET /v1/redemptions` answers.
const MAX_LIMIT: usize = 1000;

/// The log filters from a query string; `Err` is the message for a 400.
fn filter_from(q: &ListQuery, now: i64) -> Result<Filter, String> {
    let state = match q.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(State::parse_among(s, &State::ALL).map_err(|e| format!("state {e}"))?),
    };
    let when = |v: &Option<String>, name: &str| -> Result<Option<i64>, String> {
        match v.as_deref().filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(t) => report::parse_when(t, now)
                .map(Some)
                .map_err(|e| format!("{name}: {e}")),
        }
    };
    let code_suffix = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    if code_suffix.is_some_and(|s| s.chars().count() > 64) {
        return Err("q: at most 64 characters".into());
    }
    let order_id = crate::model::text::optional(
        q.order_id.as_deref(),
        "order_id",
        crate::model::scan::MAX_ORDER_ID,
    )?;
    if q.limit.is_some_and(|l| l > MAX_LIMIT) {
        return Err(format!("limit: 0 to {MAX_LIMIT}"));
    }
    Ok(Filter {
        state,
        since: when(&q.since, "since")?,
        until: when(&q.until, "until")?,
        code_suffix: code_suffix.map(String::from),
        limit: Some(q.limit.unwrap_or(100)),
        newest_first: true,
        unresolved: false,
        order_id,
    })
}

type ListParams = Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>;

/// The filters of a list or export request; `Err` is the message for a 400.
fn filter_of(q: ListParams, now: i64) -> Result<Filter, String> {
    let Query(q) = q.map_err(|e| e.body_text())?;
    filter_from(&q, now)
}

async fn redemptions(AxState(st): AxState<ApiState>, q: ListParams) -> Response {
    let filter = match filter_of(q, st.clock.now_ms()) {
        Ok(f) => f,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    match st.ledger.call(move |c| report::load(c, &filter)).await {
        Ok(rows) => {
            let rows: Vec<LogEntry> = rows.into_iter().map(|e| st.present(e)).collect();
            Json(rows).into_response()
        }
        Err(e) => ledger_error(e),
    }
}

/// One redemption with its timeline: every call from the audit trail.
async fn redemption(AxState(st): AxState<ApiState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return error(StatusCode::NOT_FOUND, format!("no redemption {id:?}"));
    };
    let found = st
        .ledger
        .call(move |c| Ok((queries::get(c, id)?, queries::attempts_of(c, id)?)))
        .await;
    match found {
        Ok((Some(row), attempts)) => {
            let attempts: Vec<_> = attempts
                .iter()
                .map(|a| {
                    json!({
                        "call": a.call,
                        "started_at": crate::clock::rfc3339(a.started_at),
                        "ended_at": a.ended_at.map(crate::clock::rfc3339),
                        "http_status": a.http_status,
                        "errcode": a.errcode,
                        "outcome": a.outcome,
                        "detail": a.detail,
                    })
                })
                .collect();
            let mut v = serde_json::to_value(st.entry(&row)).unwrap_or_default();
            if let Some(m) = v.as_object_mut() {
                m.insert("calls".into(), attempts.into());
            }
            Json(v).into_response()
        }
        Ok((None, _)) => error(StatusCode::NOT_FOUND, format!("no redemption {id}")),
        Err(e) => ledger_error(e),
    }
}

async fn export(AxState(st): AxState<ApiState>, q: ListParams) -> Response {
    let mut filter = match filter_of(q, st.clock.now_ms()) {
        Ok(f) => f,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    filter.limit = None;
    filter.newest_first = false;
    match st.ledger.call(move |c| report::load(c, &filter)).await {
        Ok(rows) => {
            let rows: Vec<LogEntry> = rows.into_iter().map(|e| st.present(e)).collect();
            let mut out = Vec::new();
            if let Err(e) = report::write_csv(&mut out, &rows) {
                return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
            }
            (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"redemptions.csv\"",
                    ),
                ],
                out,
            )
                .into_response()
        }
        Err(e) => ledger_error(e),
    }
}

#[derive(Deserialize)]
struct ResolveBody {
    note: String,
    /// "redeemed" or "rejected"; by default redeemed when WeChat confirmed a redemption.
    #[serde(default)]
    state: Option<String>,
    /// Who resolves it (shown in the log); default "api".
    #[serde(default)]
    by: Option<String>,
}

async fn resolve(
    AxState(st): AxState<ApiState>,
    Path(id): Path<String>,
    body: Result<Json<ResolveBody>, JsonRejection>,
) -> Response {
    let (id, body) = match sale::id_and_body(&id, body) {
        Ok(x) => x,
        Err(answer) => return *answer,
    };
    let note = match crate::model::text::checked(
        &body.note,
        "note",
        "say what was decided",
        crate::model::state::MAX_NOTE,
    ) {
        Ok(n) => n,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let decision = match body.state.as_deref() {
        None => None,
        Some(s) => match State::parse_among(s, &State::RESOLUTIONS) {
            Ok(d) => Some(d),
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("state {e}")),
        },
    };
    let by = match crate::model::text::checked(
        body.by.as_deref().unwrap_or("api"),
        "by",
        "who resolved it",
        MAX_BY,
    ) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let at = st.clock.now_ms();
    match st
        .ledger
        .call(move |c| review::resolve(c, id, decision, &note, &by, at))
        .await
    {
        Ok(Resolved::Done(row)) => {
            let _ = st.bus.settled.send((*row).clone());
            Json(st.entry(&row)).into_response()
        }
        Ok(Resolved::NotFound) => error(StatusCode::NOT_FOUND, format!("no redemption {id}")),
        Ok(Resolved::NotInReview(s)) => error(
            StatusCode::CONFLICT,
            format!("redemption {id} is {s}, not waiting for review"),
        ),
        Err(e) => ledger_error(e),
    }
}

async fn healthz(AxState(st): AxState<ApiState>) -> Response {
    let ledger = st.ledger.health().await;
    let dispatcher = st.dispatcher_alive.load(Ordering::SeqCst);
    let body = json!({
        "ledger": ledger.as_ref().map(|_| "writable".to_string()).unwrap_or_else(|e| e.clone()),
        "dispatcher": if dispatcher { "running" } else { "stopped" },
        // Not a failure of the till (200 all the same): the pages show it.
        "wechat_quota_exhausted": st.metrics.quota_exhausted(),
    });
    if ledger.is_ok() && dispatcher {
        (StatusCode::OK, Json(body)).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

async fn metrics(AxState(st): AxState<ApiState>) -> Response {
    let now = st.clock.now_ms();
    // Without [store] nothing drains the outbox: counting it would scan a row per row.
    let events = st.metrics.events_enabled();
    let counts = st
        .ledger
        .call(move |c| {
            let outbox = if events {
                Some(crate::ledger::events::outbox_len(c)?)
            } else {
                None
            };
            Ok((
                queries::counts(c, None, None)?,
                queries::pending_count(c)?,
                queries::oldest_pending(c)?,
                outbox,
            ))
        })
        .await;
    let (counts, pending, oldest, outbox) = match counts {
        Ok(x) => x,
        Err(e) => return ledger_error(e),
    };
    let mut out = String::new();
    use std::fmt::Write;
    metrics::header(
        &mut out,
        "redeemd_redemptions_total",
        "gauge",
        "Ledger rows by api and state.",
    );
    let mut by: std::collections::BTreeMap<(String, String), i64> = Default::default();
    for (api, _, state, n) in counts {
        *by.entry((api.unwrap_or_else(|| "none".into()), state))
            .or_default() += n;
    }
    for ((api, state), n) in by {
        let _ = writeln!(
            out,
            "redeemd_redemptions_total{{api=\"{api}\",state=\"{state}\"}} {n}"
        );
    }
    metrics::header(
        &mut out,
        "redeemd_pending",
        "gauge",
        "Redemptions waiting for WeChat.",
    );
    let _ = writeln!(out, "redeemd_pending {pending}");
    metrics::header(
        &mut out,
        "redeemd_oldest_pending_age_seconds",
        "gauge",
        "Age of the oldest redemption waiting for WeChat.",
    );
    let age = oldest
        .map(|t| (now - t).max(0) as f64 / 1000.0)
        .unwrap_or(0.0);
    let _ = writeln!(out, "redeemd_oldest_pending_age_seconds {age}");
    if let Some(outbox) = outbox {
        metrics::header(
            &mut out,
            "redeemd_events_outbox",
            "gauge",
            "Rows whose latest version the store's stream has not acknowledged (the chain's outbox).",
        );
        let _ = writeln!(out, "redeemd_events_outbox {outbox}");
    }
    st.metrics.render(&mut out, (st.token_refreshes)());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
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
