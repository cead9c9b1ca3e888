//! `[[route]]`: which API redeems a code, by pattern, with its card or stock.

use super::yes;
use crate::model::api::Api;
use crate::model::catalog::CardTypes;
use regex::Regex;
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pattern: String,
    api: Api,
    #[serde(default)]
    card_id: Option<String>,
    #[serde(default)]
    stock_id: Option<String>,
    #[serde(default = "yes")]
    offline: bool,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    card_types: Option<Vec<String>>,
    #[serde(default, deserialize_with = "crate::duration::de_opt")]
    hold_timeout: Option<Duration>,
}

/// How long a product coupon stays held for a sale that has not brought its order.
pub const DEFAULT_HOLD_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// The shortest `hold_timeout` accepted (and the longest the hold expiry may sleep).
pub const MIN_HOLD_TIMEOUT: Duration = Duration::from_secs(5);

/// WeChat's card types (`card_type`), for checking `card_types`.
pub const CARD_TYPES: &[&str] = &[
    "GROUPON",
    "CASH",
    "DISCOUNT",
    "GIFT",
    "GENERAL_COUPON",
    "MEMBER_CARD",
    "SCENIC_TICKET",
    "MOVIE_TICKET",
    "BOARDING_PASS",
    "MEETING_TICKET",
    "BUS_TICKET",
];

#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// The pattern as written, for messages.
    pub pattern: String,
    /// The pattern anchored to the whole code.
    pub regex: Regex,
    pub api: Api,
    pub card_id: Option<String>,
    /// Sent as `stock_id` with a merchant coupon's use request.
    pub stock_id: Option<String>,
    /// May scans on this route be accepted while WeChat is unreachable (and `[offline]
    /// accept` allows it)?
    pub offline: bool,
    /// What people call the route ("火锅套餐券"); pages show it instead of "card #0".
    pub name: Option<String>,
    /// The card types this route consumes (card routes).
    pub card_types: CardTypes,
    /// Product coupons: how long one stays held without its sale's order.
    pub hold_timeout: Duration,
}

/// What the routes may use: which API sections the config has.
pub(super) struct Available {
    pub card: bool,
    pub coupon: bool,
    /// `[wechat_pay]` with `mode` and `brand_id`.
    pub product_coupon: bool,
    /// `[store]`: the store's mirror of HQ's product-coupon registry.
    pub store: bool,
}

/// `[[route]]`: each API's section present, fields only for their API, patterns that compile.
pub(super) fn check_routes(
    raw: Vec<RawRoute>,
    have: &Available,
    problems: &mut Vec<String>,
) -> Vec<RouteConfig> {
    let mut routes = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let key = format!("route[{i}]");
        match r.api {
            Api::Card if !have.card => problems.push(format!(
                "{key}.api: \"card\" needs a [wechat] section with appid and secret_file"
            )),
            Api::Coupon if !have.coupon => problems.push(format!(
                "{key}.api: \"coupon\" needs a [wechat_pay] section (mchid, keys, ...)"
            )),
            Api::ProductCoupon => {
                if !have.product_coupon {
                    problems.push(format!(
                        "{key}.api: \"product_coupon\" needs [wechat_pay] with mode and brand_id (who uses the coupons at WeChat Pay)"
                    ));
                }
                if !have.store {
                    problems.push(format!(
                        "{key}.api: \"product_coupon\" needs a [store] section (coupons are held from the store's copy of HQ's registry)"
                    ));
                }
            }
            _ => {}
        }
        if r.api == Api::Card && r.stock_id.is_some() {
            problems.push(format!("{key}.stock_id: only for api = \"coupon\""));
        }
        if r.api == Api::Coupon && r.card_id.is_some() {
            problems.push(format!("{key}.card_id: only for api = \"card\""));
        }
        if r.stock_id
            .as_ref()
            .is_some_and(|s| s.is_empty() || s.len() > 20)
        {
            problems.push(format!("{key}.stock_id: must be 1 to 20 characters"));
        }
        if r.api != Api::ProductCoupon && r.hold_timeout.is_some() {
            problems.push(format!(
                "{key}.hold_timeout: only for api = \"product_coupon\""
            ));
        }
        if r.hold_timeout
            .is_some_and(|t| t < MIN_HOLD_TIMEOUT || t > Duration::from_secs(24 * 3600))
        {
            problems.push(format!("{key}.hold_timeout: from 5 seconds to 24 hours"));
        }
        if r.api == Api::Coupon && r.card_types.is_some() {
            problems.push(format!("{key}.card_types: only for api = \"card\""));
        }
        if r.name
            .as_ref()
            .is_some_and(|n| n.trim().is_empty() || n.chars().count() > 40)
        {
            problems.push(format!("{key}.name: must be 1 to 40 characters"));
        }
        let card_types = match card_types(r.card_types.as_deref()) {
            Ok(t) => t,
            Err(p) => {
                problems.push(format!("{key}.card_types: {p}"));
                CardTypes::Coupons
            }
        };
        match Regex::new(&format!("^(?:{})$", r.pattern)) {
            Ok(regex) => routes.push(RouteConfig {
                pattern: r.pattern,
                regex,
                api: r.api,
                card_id: r.card_id,
                stock_id: r.stock_id,
                offline: r.offline,
                name: r.name.map(|n| n.trim().to_string()),
                card_types,
                hold_timeout: r.hold_timeout.unwrap_or(DEFAULT_HOLD_TIMEOUT),
            }),
            Err(e) => problems.push(format!("{key}.pattern: not a valid regex: {e}")),
        }
    }
    routes
}

/// `card_types`: absent → every coupon type; `["any"]` → no check; else known types.
pub(super) fn card_types(raw: Option<&[String]>) -> Result<CardTypes, String> {
    let Some(raw) = raw else {
        return Ok(CardTypes::Coupons);
    };
    if raw.iter().any(|t| t.eq_ignore_ascii_case("any")) {
        return if raw.len() == 1 {
            Ok(CardTypes::Any)
        } else {
            Err("\"any\" stands alone".into())
        };
    }
    if raw.is_empty() {
        return Err("empty: no card could be redeemed (leave the key out for every coupon type, or [\"any\"])".into());
    }
    let mut kinds = Vec::new();
    for t in raw {
        let upper = t.to_ascii_uppercase();
        if !CARD_TYPES.contains(&upper.as_str()) {
            return Err(format!(
                "{t:?} is not a WeChat card type (one of {})",
                CARD_TYPES.join(", ")
            ));
        }
        kinds.push(upper);
    }
    Ok(CardTypes::Only(kinds))
}
