//! `POST .../coupons/return`: a used coupon goes back to the customer, idempotent on
//! `return_request_no`.

use super::*;

impl PaySim {
    /// `coupons/return`: a used coupon goes back to the customer (SENDED again).
    pub(super) fn handle_return(&self, req: &SimRequest) -> Reply {
        let mut st = self.lock();
        let now_s = real_now_s() + st.faults.clock_offset_s;
        if let Err(why) = self.check_signature(req, now_s) {
            st.calls.sign_errors += 1;
            return self.error(StatusCode::UNAUTHORIZED, "SIGN_ERROR", why, &st, now_s);
        }
        st.calls.return_calls += 1;
        if st.faults.return_server_error > 0 {
            st.faults.return_server_error -= 1;
            return self.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "SYSTEM_ERROR",
                "系统错误",
                &st,
                now_s,
            );
        }
        #[derive(Deserialize)]
        struct Body {
            coupon_code: String,
            stock_id: String,
            return_request_no: String,
        }
        let Ok(body) = serde_json::from_slice::<Body>(&req.body) else {
            return self.error(
                StatusCode::BAD_REQUEST,
                "PARAM_ERROR",
                "a required field is missing",
                &st,
                now_s,
            );
        };
        if let Some((code, reply)) = st.by_return_no.get(&body.return_request_no).cloned() {
            if code == body.coupon_code {
                st.calls.return_replays += 1;
                return self.respond(StatusCode::OK, reply, &st, now_s);
            }
            return self.error(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                "return_request_no 已被使用",
                &st,
                now_s,
            );
        }
        let Some(coupon) = st.coupons.get(&body.coupon_code).cloned() else {
            return self.error(
                StatusCode::NOT_FOUND,
                "RESOURCE_NOT_EXISTS",
                "券不存在 (no such coupon)",
                &st,
                now_s,
            );
        };
        if coupon.stock_id != body.stock_id {
            return self.error(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                "批次号不匹配 (stock_id does not match)",
                &st,
                now_s,
            );
        }
        if coupon.state != CouponState::Used {
            return self.error(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                "券未核销，不能退券 (coupon not used)",
                &st,
                now_s,
            );
        }
        if let Some(c) = st.coupons.get_mut(&body.coupon_code) {
            c.state = CouponState::Sended;
        }
        let at = chrono::FixedOffset::east_opt(8 * 3600)
            .zip(chrono::DateTime::from_timestamp(now_s, 0))
            .map(|(beijing, d)| d.with_timezone(&beijing).to_rfc3339())
            .unwrap_or_default();
        let reply = json!({"wechatpay_return_time": at}).to_string();
        st.returns.push(Return {
            coupon_code: body.coupon_code.clone(),
            return_request_no: body.return_request_no.clone(),
        });
        st.by_return_no
            .insert(body.return_request_no, (body.coupon_code, reply.clone()));
        if st.faults.drop_after_return > 0 {
            st.faults.drop_after_return -= 1;
            return Reply::Drop;
        }
        self.respond(StatusCode::OK, reply, &st, now_s)
    }
}
