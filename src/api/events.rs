//! `GET /v1/events`: live outcomes, settlements and scanner changes, as server-sent events.

use super::*;

pub(super) async fn events(
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
pub(super) fn outcome_event(o: &Outcome, with_payment_code: bool) -> serde_json::Value {
    let mut v = serde_json::to_value(o).unwrap_or_default();
    if let (true, Some(code), Some(map)) = (with_payment_code, &o.payment_code, v.as_object_mut()) {
        map.insert("payment_code".into(), code.expose().into());
    }
    v
}
