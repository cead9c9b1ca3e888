//! The log: `GET /v1/redemptions` (filtered), one row with its timeline, the CSV export,
//! and a manager's resolution of a review item.

use super::*;

#[derive(Deserialize, Default)]
pub(super) struct ListQuery {
    state: Option<String>,
    since: Option<String>,
    until: Option<String>,
    q: Option<String>,
    limit: Option<usize>,
    order_id: Option<String>,
}

/// The most rows one `GET /v1/redemptions` answers.
pub(super) const MAX_LIMIT: usize = 1000;

/// The log filters from a query string; `Err` is the message for a 400.
pub(super) fn filter_from(q: &ListQuery, now: i64) -> Result<Filter, String> {
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
pub(super) fn filter_of(q: ListParams, now: i64) -> Result<Filter, String> {
    let Query(q) = q.map_err(|e| e.body_text())?;
    filter_from(&q, now)
}

pub(super) async fn redemptions(AxState(st): AxState<ApiState>, q: ListParams) -> Response {
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
pub(super) async fn redemption(AxState(st): AxState<ApiState>, Path(id): Path<String>) -> Response {
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

pub(super) async fn export(AxState(st): AxState<ApiState>, q: ListParams) -> Response {
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
pub(super) struct ResolveBody {
    note: String,
    /// "redeemed" or "rejected"; by default redeemed when WeChat confirmed a redemption.
    #[serde(default)]
    state: Option<String>,
    /// Who resolves it (shown in the log); default "api".
    #[serde(default)]
    by: Option<String>,
}

pub(super) async fn resolve(
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
