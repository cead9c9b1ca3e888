//! Code → the API that redeems it, or a local refusal. Pure.
//!
//! Payment codes are checked before any route: a customer who shows the wrong screen must
//! never have a live payment credential sent to a coupon API, whatever a route's pattern says.

use crate::config::route::RouteConfig;
use crate::model::api::Api;
use crate::model::code::Code;
use regex::Regex;
use std::sync::LazyLock;

/// WeChat Pay payment codes (付款码): 18 digits starting 10–15.
static WECHAT_PAYMENT_CODE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^1[0-5][0-9]{16}$").expect("static regex"));
/// Alipay payment codes: 16–24 digits starting 25–30.
static ALIPAY_PAYMENT_CODE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(2[5-9]|30)[0-9]{14,22}$").expect("static regex"));

pub const REFUSED_PAYMENT_CODE: &str = "payment code, not a coupon";
pub const REFUSED_NO_ROUTE: &str = "not a code this till accepts";
pub const REFUSED_EMPTY_CAPTURE: &str = "the route found no code inside the scan";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    /// The code to redeem: the scan itself, or the route pattern's first capture group
    /// (QR codes often carry a URL with the code inside).
    pub code: Code,
    /// Index of the matching `[[route]]`.
    pub route: usize,
    pub api: Api,
    pub card_id: Option<String>,
    pub stock_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Route(Routed),
    /// Refused locally; the code is stored masked and never sent anywhere.
    Refuse(&'static str),
}

pub fn is_payment_code(code: &str) -> bool {
    WECHAT_PAYMENT_CODE.is_match(code) || ALIPAY_PAYMENT_CODE.is_match(code)
}

pub fn route(scan: &str, routes: &[RouteConfig]) -> Decision {
    if is_payment_code(scan) {
        return Decision::Refuse(REFUSED_PAYMENT_CODE);
    }
    for (i, r) in routes.iter().enumerate() {
        let Some(caps) = r.regex.captures(scan) else {
            continue;
        };
        let code = caps.get(1).map_or(scan, |m| m.as_str());
        if code.is_empty() {
            return Decision::Refuse(REFUSED_EMPTY_CAPTURE);
        }
        // A payment code wrapped in something a route unwraps is still a payment code.
        if is_payment_code(code) {
            return Decision::Refuse(REFUSED_PAYMENT_CODE);
        }
        return Decision::Route(Routed {
            code: Code::new(code),
            route: i,
            api: r.api,
            card_id: r.card_id.clone(),
            stock_id: r.stock_id.clone(),
        });
    }
    Decision::Refuse(REFUSED_NO_ROUTE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(pattern: &str, card_id: Option<&str>) -> RouteConfig {
        RouteConfig {
            pattern: pattern.into(),
            regex: Regex::new(&format!("^(?:{pattern})$")).unwrap(),
            api: Api::Card,
            card_id: card_id.map(Into::into),
            stock_id: None,
            offline: true,
            name: None,
            card_types: crate::model::catalog::CardTypes::Coupons,
            hold_timeout: crate::config::route::DEFAULT_HOLD_TIMEOUT,
        }
    }

    #[test]
    fn payment_codes_refused_even_if_a_route_matches() {
        let routes = vec![r("[0-9]+", None)];
        for code in [
            "134567890123456789",
            "101234567890123456",
            "281234567890123456",
        ] {
            assert_eq!(
                route(code, &routes),
                Decision::Refuse(REFUSED_PAYMENT_CODE),
                "{code}"
            );
        }
        // 18 digits starting 16 is not a WeChat payment code.
        assert!(matches!(
            route("161234567890123456", &routes),
            Decision::Route(_)
        ));
    }

    #[test]
    fn a_capture_group_extracts_the_code() {
        let routes = vec![r(r"https://wx\.example/c\?code=([0-9]{12})(?:&.*)?", None)];
        match route("https://wx.example/c?code=123456789012&from=qr", &routes) {
            Decision::Route(x) => assert_eq!(x.code, "123456789012"),
            other => panic!("{other:?}"),
        }
        let wrapped = vec![r(r"PAY:([0-9]+)", None)];
        assert_eq!(
            route("PAY:134567890123456789", &wrapped),
            Decision::Refuse(REFUSED_PAYMENT_CODE)
        );
        let empty = vec![r(r"X([0-9]*)", None)];
        assert_eq!(route("X", &empty), Decision::Refuse(REFUSED_EMPTY_CAPTURE));
    }

    #[test]
    fn first_match_wins_and_no_match_refused() {
        let routes = vec![r("[0-9]{12}", Some("pA")), r("[0-9]{10,14}", Some("pB"))];
        match route("123456789012", &routes) {
            Decision::Route(x) => {
                assert_eq!(x.route, 0);
                assert_eq!(x.card_id.as_deref(), Some("pA"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            route("1234567890", &routes),
            Decision::Route(Routed { route: 1, .. })
        ));
        assert_eq!(route("ABC", &routes), Decision::Refuse(REFUSED_NO_ROUTE));
    }
}
