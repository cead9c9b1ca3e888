//! `GET /healthz` and `GET /metrics`.

use super::*;

pub(super) async fn healthz(AxState(st): AxState<ApiState>) -> Response {
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

pub(super) async fn metrics(AxState(st): AxState<ApiState>) -> Response {
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
    let figures = metrics::LedgerFigures {
        counts: counts
            .into_iter()
            .map(|(api, _, state, n)| (api, state, n))
            .collect(),
        pending,
        oldest_pending: oldest,
        now,
        outbox,
    };
    let out = st.metrics.render_all(&figures, (st.token_refreshes)());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
