//! The sale around a code: tie a scanned code to its order afterwards, and void it.

use super::{ApiState, MAX_BY, error, ledger_error};
use crate::ledger::holds::OrderRefused;
use crate::ledger::scans::Tied;
use crate::ledger::voids::VoidRequest;
use crate::ledger::voids::Voided;
use crate::ledger::{scans, voids};
use crate::model::request_no::new_return_request_no;
use crate::model::row::{PayOrder, PayOrderFields};
use crate::model::row::{Row, VoidState};
use crate::model::scan::Sale;
use crate::model::state::State;
use crate::model::state::TillOutcome;
use crate::model::text;
use crate::model::void::MAX_REASON;
use crate::model::void::VoidPlan;
use crate::outcome::settled_within;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast;

/// A row action's id and JSON body, or the answer that says what is wrong with them.
pub(super) fn id_and_body<T>(
    id: &str,
    body: Result<Json<T>, JsonRejection>,
) -> Result<(i64, T), Box<Response>> {
    let Ok(id) = id.parse::<i64>() else {
        return Err(Box::new(error(
            StatusCode::NOT_FOUND,
            format!("no redemption {id:?}"),
        )));
    };
    match body {
        Ok(Json(b)) => Ok((id, b)),
        Err(e) => Err(Box::new(error(e.status(), e.body_text()))),
    }
}

#[derive(Deserialize)]
pub(super) struct OrderBody {
    #[serde(default)]
    order_id: Option<String>,
    #[serde(default)]
    amount: Option<i64>,
    #[serde(default)]
    cashier: Option<String>,
    /// The sale's WeChat Pay order, for a held product coupon.
    #[serde(flatten)]
    pay_order: PayOrderFields,
}

/// `POST /v1/redemptions/{id}/order`: ties the row to its sale (once per row; the same
/// order again is harmless) and, for a held product coupon, to the sale's WeChat Pay
/// order, which sends its use.
pub(super) async fn order(
    AxState(st): AxState<ApiState>,
    Path(id): Path<String>,
    body: Result<Json<OrderBody>, JsonRejection>,
) -> Response {
    let (id, body) = match id_and_body(&id, body) {
        Ok(x) => x,
        Err(answer) => return *answer,
    };
    let pay_order = match body.pay_order.checked() {
        Ok(o) => o,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    let sale = match Sale::checked(body.order_id, body.amount, body.cashier) {
        Ok(s) if s.order_id.is_some() => Some(s),
        Ok(s) if s.is_empty() && pay_order.is_some() => None,
        Ok(_) => return error(StatusCode::BAD_REQUEST, "order_id: missing"),
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    let tied = match sale {
        None => None,
        Some(sale) => {
            let at = st.clock.now_ms();
            match st
                .ledger
                .call(move |c| scans::tie_to_sale(c, id, &sale, at))
                .await
            {
                Ok(Tied::Done(row)) => {
                    let _ = st.bus.settled.send((*row).clone());
                    Some(row)
                }
                Ok(Tied::NotFound) => {
                    return error(StatusCode::NOT_FOUND, format!("no redemption {id}"));
                }
                Ok(Tied::OtherOrder(o)) => {
                    return error(
                        StatusCode::CONFLICT,
                        format!("redemption {id} belongs to order {o:?} already"),
                    );
                }
                Err(e) => return ledger_error(e),
            }
        }
    };
    match (pay_order, tied) {
        (Some(order), _) => use_with_order(&st, id, order).await,
        (None, Some(row)) => Json(st.entry(&row)).into_response(),
        (None, None) => error(StatusCode::BAD_REQUEST, "order_id: missing"),
    }
}

/// Attaches the sale's WeChat Pay order to held product coupon `id`, and answers with the
/// row as the use left it (see [`attach_and_use`]): 200 `redeemed`; 202 `accepted_offline`
/// while WeChat Pay does not answer; 409 when WeChat Pay refused it (a manager's review) or
/// the row is not a held coupon.
pub(super) async fn use_with_order(st: &ApiState, id: i64, order: PayOrder) -> Response {
    let (row, outcome) = match attach_and_use(st, id, order).await {
        Ok(x) => x,
        Err(answer) => return *answer,
    };
    let status = match row.state {
        State::Review => return in_review(st, &row),
        State::Redeemed => StatusCode::OK,
        State::Queued => StatusCode::ACCEPTED,
        _ => StatusCode::CONFLICT,
    };
    let mut body = serde_json::to_value(st.entry(&row)).unwrap_or_default();
    if let Some(o) = body.as_object_mut() {
        o.insert("outcome".into(), json!(outcome.as_str()));
    }
    (status, Json(body)).into_response()
}

/// [`Orders::attach_and_use`], each refusal as its HTTP answer.
pub(super) async fn attach_and_use(
    st: &ApiState,
    id: i64,
    order: PayOrder,
) -> Result<(Row, TillOutcome), Box<Response>> {
    let refused = |status, m: String| Err(Box::new(error(status, m)));
    match st.orders.attach_and_use(id, order).await {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(OrderRefused::NoSuchRow)) => {
            refused(StatusCode::NOT_FOUND, format!("no redemption {id}"))
        }
        Ok(Err(OrderRefused::NotHeld(state))) => refused(
            StatusCode::CONFLICT,
            format!(
                "redemption {id} is {state}: only a held product coupon takes a WeChat Pay order (scan it again if its hold ended)"
            ),
        ),
        Ok(Err(OrderRefused::OtherOrder)) => refused(
            StatusCode::CONFLICT,
            format!("redemption {id} is used with another WeChat Pay order"),
        ),
        Ok(Err(OrderRefused::Incomplete)) => refused(
            StatusCode::BAD_REQUEST,
            "a WeChat Pay order needs transaction_id, or out_trade_no with mchid".into(),
        ),
        Err(e) => Err(Box::new(ledger_error(e))),
    }
}

#[derive(Deserialize)]
pub(super) struct VoidBody {
    reason: String,
    #[serde(default)]
    by: Option<String>,
}

/// `POST /v1/redemptions/{id}/void`. A coupon's return is waited for up to `online_wait`;
/// after that the answer is 202 and the return goes on in the background.
pub(super) async fn void(
    AxState(st): AxState<ApiState>,
    Path(id): Path<String>,
    body: Result<Json<VoidBody>, JsonRejection>,
) -> Response {
    let (id, body) = match id_and_body(&id, body) {
        Ok(x) => x,
        Err(answer) => return *answer,
    };
    let reason = match text::checked(&body.reason, "reason", "why the sale is voided", MAX_REASON) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let by = match body
        .by
        .as_deref()
        .map(|b| text::checked(b, "by", "who voided it", MAX_BY))
    {
        None => None,
        Some(Ok(b)) => Some(b),
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, e),
    };
    let at = st.clock.now_ms();
    let rrn = new_return_request_no(&st.till, at);
    // Subscribed before the void is written, so the return's end cannot slip past.
    let settled = st.bus.settled.subscribe();
    let voided = st
        .ledger
        .call(move |c| {
            voids::void(
                c,
                id,
                &VoidRequest {
                    reason: &reason,
                    by: by.as_deref(),
                    at,
                    return_request_no: &rrn,
                },
            )
        })
        .await;
    st.metrics.count_void(match &voided {
        Ok(Voided::Done(plan, _)) => plan.as_str(),
        Ok(Voided::Already(_)) => "already",
        _ => "refused",
    });
    match voided {
        Ok(Voided::Done(plan, row)) => {
            let _ = st.bus.settled.send((*row).clone());
            answer(&st, plan, *row, settled).await
        }
        Ok(Voided::Already(row)) => already(&st, *row),
        Ok(Voided::NotFound) => error(StatusCode::NOT_FOUND, format!("no redemption {id}")),
        Err(e) => ledger_error(e),
    }
}

/// A void of a sale voided before (a POS retrying a lost answer) is answered as the first
/// void ended: in review → 409 with the same body each time, a return still on its way →
/// 202, anything else → 200.
fn already(st: &ApiState, row: Row) -> Response {
    if row.state == State::Review {
        in_review(st, &row)
    } else if returning(&row) {
        (StatusCode::ACCEPTED, Json(st.entry(&row))).into_response()
    } else {
        Json(st.entry(&row)).into_response()
    }
}

/// 409: the void left the row for a manager (a card code cannot be given back, or WeChat
/// Pay refused the return), with the row's reason.
fn in_review(st: &ApiState, row: &Row) -> Response {
    (
        StatusCode::CONFLICT,
        Json(json!({
            "error": row.reason.clone().unwrap_or_default(),
            "redemption": st.entry(row),
        })),
    )
        .into_response()
}

async fn answer(
    st: &ApiState,
    plan: VoidPlan,
    row: Row,
    mut settled: broadcast::Receiver<Row>,
) -> Response {
    match plan {
        VoidPlan::Review => in_review(st, &row),
        VoidPlan::ResolveFirst => error(
            StatusCode::CONFLICT,
            format!(
                "redemption {} waits for a manager's review: resolve it first",
                row.id
            ),
        ),
        VoidPlan::Return => {
            st.voids.notify_one();
            let id = row.id;
            match settled_within(&mut settled, id, st.online_wait, |r| !returning(r)).await {
                Some(r) if r.state == State::Returned => Json(st.entry(&r)).into_response(),
                Some(r) => in_review(st, &r),
                None => (StatusCode::ACCEPTED, Json(st.entry(&row))).into_response(),
            }
        }
        VoidPlan::Cancel | VoidPlan::Nothing => Json(st.entry(&row)).into_response(),
    }
}

fn returning(r: &Row) -> bool {
    r.void
        .as_ref()
        .is_some_and(|v| v.state == VoidState::Pending)
}
