//! The manager and kiosk pages: plain HTML, CSS and JavaScript embedded in the binary (no
//! CDN, no build step, works offline). They read the same API a POS application uses.

use super::ApiState;
use axum::extract::State;
use axum::response::Response;

const MANAGER: &str = include_str!("pages/manager.html");
const KIOSK: &str = include_str!("pages/kiosk.html");
const COMMON_JS: &str = include_str!("pages/common.js");

fn page(template: &str, st: &ApiState) -> Response {
    crate::http::page(
        template
            .replace("__LANG__", st.language.tag())
            .replace("/*__COMMON_JS__*/", COMMON_JS)
            .replace("/*__COMMON_CSS__*/", crate::http::COMMON_CSS),
    )
}

pub async fn manager(State(st): State<ApiState>) -> Response {
    page(MANAGER, &st)
}

pub async fn kiosk(State(st): State<ApiState>) -> Response {
    page(KIOSK, &st)
}
