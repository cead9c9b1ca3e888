//! `POST /v1/wechatpay/notify`: WeChat Pay's notifications, on a listener of their own
//! (store IT puts it behind HTTPS; the fleet page stays inside).
//!
//! A notification is trusted (`wechatpay::notify::open`: signature, age, resource) and then made
//! durable before WeChat Pay hears 2xx: published to the hub's `REDEEMD_NOTIFY` with
//! `Nats-Msg-Id` = its `id`, and acknowledged. A repeat within the stream's duplicate window
//! is acknowledged as a duplicate and changes nothing. The message is the body as received,
//! so the coupon code in its resource stays encrypted at rest. When the hub does not
//! acknowledge within [`ACK_WITHIN`], the answer is 500 and WeChat Pay sends it again.
//! Every refusal gets the same answer; only the log and the metric say why.

use super::metrics::{FleetMetrics, NOT_RECORDED};
use super::streams::notify_subject;
use crate::config::notify::NotifyConfig;
use crate::http::serve::{Limits, bind};
use crate::wechatpay::notify::{ApiV3Key, MAX_NOTIFY_BODY, Notification, Refused, open};
use crate::wechatpay::pay_sign::{SignedHeaders, Verifier};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// WeChat Pay waits 5 s for an answer; the hub's acknowledgement must come well within it.
pub const ACK_WITHIN: Duration = Duration::from_secs(4);

/// What the notify listener needs: the keys that trust a notification, and the hub.
#[derive(Clone)]
pub struct NotifyState {
    pub verifier: Arc<Verifier>,
    pub key: Arc<ApiV3Key>,
    pub jetstream: async_nats::jetstream::Context,
    pub metrics: Arc<FleetMetrics>,
}

pub fn router(state: NotifyState) -> Router {
    Router::new()
        .route("/v1/wechatpay/notify", post(notify))
        // The handler reads the body itself, up to the limit, to count a refusal.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// Binds `[notify] listen` and serves until `stop`.
pub async fn serve(
    config: &NotifyConfig,
    state: NotifyState,
    stop: watch::Receiver<bool>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let limits = Limits {
        max_connections: 256,
        idle_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(10),
    };
    bind(
        &config.listen,
        None,
        router(state),
        limits,
        stop,
        "WeChat Pay notifications",
    )
    .await
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Counts and logs a refusal, and gives the one answer every refusal gets: the sender
/// learns nothing about which check failed.
fn refuse(st: &NotifyState, r: Refused) -> Response {
    st.metrics.count_notify_refused(r.reason());
    tracing::warn!(
        event = "notify_refused",
        reason = r.reason(),
        "a WeChat Pay notification was refused"
    );
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "code": "FAIL", "message": "refused" })),
    )
        .into_response()
}

async fn notify(State(st): State<NotifyState>, headers: HeaderMap, body: Body) -> Response {
    // Past the limit, reading stops: the body is too large before anything else is asked.
    let Ok(body) = axum::body::to_bytes(body, MAX_NOTIFY_BODY).await else {
        return refuse(&st, Refused::TooLarge);
    };
    let signed = SignedHeaders {
        timestamp: header(&headers, "wechatpay-timestamp"),
        nonce: header(&headers, "wechatpay-nonce"),
        signature: header(&headers, "wechatpay-signature"),
        serial: header(&headers, "wechatpay-serial"),
    };
    let now_s = chrono::Utc::now().timestamp();
    let n = match open(&st.verifier, &st.key, &signed, &body, now_s) {
        Ok(n) => n,
        Err(r) => return refuse(&st, r),
    };
    match keep(&st, &n, body).await {
        Ok(duplicate) => {
            if !duplicate {
                st.metrics.count_notify(&n.event_type);
            }
            tracing::info!(event = "notified", id = %n.id, event_type = %n.event_type, duplicate, "a WeChat Pay notification is kept");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => {
            st.metrics.count_notify_refused(NOT_RECORDED);
            tracing::warn!(event = "notify_not_recorded", id = %n.id, event_type = %n.event_type, error = %e, "the hub did not keep a WeChat Pay notification: it will be sent again");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({ "code": "FAIL", "message": "not recorded; send it again" })),
            )
                .into_response()
        }
    }
}

/// Publishes the notification as received and waits for the hub's acknowledgement;
/// `Ok(true)` when the hub already had it.
async fn keep(st: &NotifyState, n: &Notification, body: Bytes) -> Result<bool, String> {
    let mut h = async_nats::HeaderMap::new();
    h.insert("Nats-Msg-Id", n.id.as_str());
    let publish = async {
        let ack = st
            .jetstream
            .publish_with_headers(notify_subject(&n.event_type), h, body)
            .await
            .map_err(|e| e.to_string())?;
        ack.await.map_err(|e| e.to_string())
    };
    match tokio::time::timeout(ACK_WITHIN, publish).await {
        Ok(Ok(ack)) => Ok(ack.duplicate),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("no acknowledgement within {ACK_WITHIN:?}")),
    }
}
