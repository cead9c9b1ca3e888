//! `POST /v1/scans`: a code typed in (or decrypted from `encrypt_code`), recorded and
//! answered through the intake like a scanner read.

use super::*;
use crate::model::state::TillOutcome;

#[derive(Deserialize)]
pub(super) struct ScanBody {
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
    /// The sale's WeChat Pay order, for a product coupon: held, then used with it at once.
    #[serde(flatten)]
    pay_order: crate::model::row::PayOrderFields,
}

/// The longest `encrypt_code` accepted.
pub(super) const MAX_ENCRYPT_CODE: usize = 512;

/// The plain code behind an `encrypt_code`, or the answer that says why there is none.
pub(super) async fn decrypted(st: &ApiState, encrypt_code: &str) -> Result<String, Response> {
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

pub(super) async fn post_scan(
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
    let pay_order = match body.pay_order.checked() {
        Ok(o) => o,
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
    let scanned_at = st.clock.now_ms();
    let scan = Scan {
        scanner: "keyed".into(),
        frame: classify_line(text.trim().as_bytes(), false),
        at: scanned_at,
        sale,
    };
    let (tx, rx) = oneshot::channel();
    if st.keyed.send((scan, tx)).await.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "redeemd is shutting down");
    }
    match tokio::time::timeout(st.online_wait + Duration::from_secs(10), rx).await {
        Ok(Ok(o)) => {
            // A held product coupon with its sale's WeChat Pay order: used at once.
            let o = match (pay_order, o.id, o.outcome) {
                (Some(order), Some(id), TillOutcome::Held) => {
                    match sale::attach_and_use(&st, id, order).await {
                        Ok((row, outcome)) => Outcome::from_row(
                            &row,
                            outcome,
                            &o.scanner,
                            scanned_at,
                            st.clock.now_ms(),
                        ),
                        Err(answer) => return *answer,
                    }
                }
                _ => o,
            };
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
                "hold_until": o.hold_until,
                "reason_code": o.reason_code,
                "detail": o.detail,
            }))
            .into_response()
        }
        _ => error(StatusCode::SERVICE_UNAVAILABLE, "no answer from the intake"),
    }
}
