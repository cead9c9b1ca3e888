//! The manager and kiosk pages: plain HTML, CSS and JavaScript embedded in the binary (no
//! CDN, no build step, works offline). They read the same API a POS application uses.

use super::ApiState;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

const MANAGER: &str = include_str!("pages/manager.html");
const KIOSK: &str = include_str!("pages/kiosk.html");
const COMMON_JS: &str = include_str!("pages/common.js");
/// The styles the manager page shares with HQ's fleet page.
pub(crate) const COMMON_CSS: &str = include_str!("pages/common.css");

fn page(template: &str, st: &ApiState) -> Response {
    let html = template
        .replace("__LANG__", st.language.tag())
        .replace("/*__COMMON_JS__*/", COMMON_JS)
        .replace("/*__COMMON_CSS__*/", COMMON_CSS);
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // The pages load nothing from anywhere else.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
            ),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        html,
    )
        .into_response()
}

pub async fn manager(State(st): State<ApiState>) -> Response {
    page(MANAGER, &st)
}

pub async fn kiosk(State(st): State<ApiState>) -> Response {
    page(KIOSK, &st)
}
