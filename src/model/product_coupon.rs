//! A product coupon (商品券) as HQ's registry keeps it, and what each WeChat Pay
//! notification makes of it. Pure.
//!
//! Notifications come more than once and out of order (a use can arrive before the issue
//! it follows). So an entry remembers the time of the event that set its state: an event
//! older than that only fills in what the entry lacks (the holder, the validity window),
//! and the same event twice changes nothing.

use serde::{Deserialize, Serialize};

/// The coupon's state at WeChat Pay (`coupon_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CouponState {
    /// Issued, waiting for the brand's confirm: not usable yet.
    Confirming,
    Effective,
    Used,
    Expired,
    Deleted,
    Deactivated,
    Pending,
}

/// What a notification says happened to a coupon, with the fields its resource carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// When it happened at WeChat Pay (RFC 3339): the issue's `receive_time`, a use's or a
    /// return's time, else the notification's `create_time`.
    pub at: String,
    pub coupon_code_last4: String,
    pub openid: Option<String>,
    pub product_coupon_id: Option<String>,
    pub stock_id: Option<String>,
    pub valid_begin_time: Option<String>,
    pub valid_end_time: Option<String>,
    /// What the coupon is, from the confirm's reply (the coupon entity).
    pub details: Details,
}

/// What a coupon is: the brand's appid it is used under, its product coupon's name, value
/// (fen) and usage mode (`SINGLE`, `PROGRESSIVE_BUNDLE`), and where it may be used: its
/// stock's `store_scope` (`ALL`, `SPECIFIC`, `NONE`) and, when `SPECIFIC`, the stores
/// (WeChat Pay's store ids).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Details {
    pub appid: Option<String>,
    pub title: Option<String>,
    pub value: Option<i64>,
    pub usage_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_ids: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `PRODUCT_COUPON.SEND`: issued; the brand must confirm it.
    Send,
    /// The brand's confirm went through.
    Confirmed,
    /// `PRODUCT_COUPON.USE`.
    Use,
    /// `PRODUCT_COUPON.RETURN`: a used coupon given back, usable again.
    Return,
}

impl EventKind {
    /// The state the event leaves the coupon in.
    fn state(self) -> CouponState {
        match self {
            EventKind::Send => CouponState::Confirming,
            EventKind::Confirmed | EventKind::Return => CouponState::Effective,
            EventKind::Use => CouponState::Used,
        }
    }

    /// Which of two events at the same instant comes later in a coupon's life.
    fn rank(self) -> u8 {
        match self {
            EventKind::Send => 0,
            EventKind::Confirmed => 1,
            EventKind::Use => 2,
            EventKind::Return => 3,
        }
    }
}

/// A registry entry: what a till needs to hold and use the coupon with its WAN down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub state: CouponState,
    /// The time of the event that set `state` (RFC 3339), and that event's rank.
    pub state_at: String,
    pub state_rank: u8,
    pub last4: String,
    pub openid: Option<String>,
    pub product_coupon_id: Option<String>,
    pub stock_id: Option<String>,
    pub valid_begin_time: Option<String>,
    pub valid_end_time: Option<String>,
    #[serde(flatten)]
    pub details: Details,
}

/// What an event does to an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Write this entry (new, or changed).
    Write(Box<Entry>),
    /// Nothing to write: a repeat, or an older event with nothing new in it.
    Unchanged,
}

fn fill(into: &mut Option<String>, from: &Option<String>) -> bool {
    if into.is_none() && from.is_some() {
        into.clone_from(from);
        true
    } else {
        false
    }
}

/// RFC 3339 times compared as instants; an unreadable one sorts first.
fn instant(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|d| d.timestamp_millis())
        .unwrap_or(i64::MIN)
}

/// The entry after `event`. A newer event (by its time, then its place in a coupon's life)
/// sets the state; any event fills in the fields the entry lacks.
pub fn apply(entry: Option<&Entry>, event: &Event) -> Change {
    let Some(old) = entry else {
        return Change::Write(Box::new(Entry {
            state: event.kind.state(),
            state_at: event.at.clone(),
            state_rank: event.kind.rank(),
            last4: event.coupon_code_last4.clone(),
            openid: event.openid.clone(),
            product_coupon_id: event.product_coupon_id.clone(),
            stock_id: event.stock_id.clone(),
            valid_begin_time: event.valid_begin_time.clone(),
            valid_end_time: event.valid_end_time.clone(),
            details: event.details.clone(),
        }));
    };
    let mut new = old.clone();
    let mut changed = false;
    let newer = (instant(&event.at), event.kind.rank()) > (instant(&old.state_at), old.state_rank);
    if newer {
        new.state = event.kind.state();
        new.state_at = event.at.clone();
        new.state_rank = event.kind.rank();
        changed = true;
    }
    changed |= fill(&mut new.openid, &event.openid);
    changed |= fill(&mut new.product_coupon_id, &event.product_coupon_id);
    changed |= fill(&mut new.stock_id, &event.stock_id);
    changed |= fill(&mut new.valid_begin_time, &event.valid_begin_time);
    changed |= fill(&mut new.valid_end_time, &event.valid_end_time);
    changed |= fill(&mut new.details.appid, &event.details.appid);
    changed |= fill(&mut new.details.title, &event.details.title);
    changed |= fill(&mut new.details.usage_mode, &event.details.usage_mode);
    changed |= fill(&mut new.details.store_scope, &event.details.store_scope);
    if new.details.value.is_none() && event.details.value.is_some() {
        new.details.value = event.details.value;
        changed = true;
    }
    if new.details.store_ids.is_none() && event.details.store_ids.is_some() {
        new.details.store_ids.clone_from(&event.details.store_ids);
        changed = true;
    }
    if changed && new != *old {
        Change::Write(Box::new(new))
    } else {
        Change::Unchanged
    }
}

/// Why a scanned product coupon is not held for the sale (it is never sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotHeld {
    /// The registry does not know the code: not a coupon the brand issued (or not yet
    /// registered when the till asked).
    NotIssued,
    /// Not usable yet, or any more: issued and not confirmed, deactivated, deleted, or
    /// before its validity window. The state (or why) is given.
    NotEffective(String),
    /// Past its validity window, or expired at WeChat Pay.
    Expired(String),
    /// Its stock may not be used at this store.
    NotForThisStore,
    AlreadyUsed,
    /// A multi-use coupon (`PROGRESSIVE_BUNDLE`): not redeemed at the till.
    BundleNotSupported,
}

/// The start of each refusal's sentence (the reason table recognises them by it).
pub const NOT_ISSUED: &str = "product coupon not issued";
pub const NOT_EFFECTIVE: &str = "product coupon not usable now";
pub const EXPIRED: &str = "product coupon expired";
pub const NOT_FOR_THIS_STORE: &str = "product coupon not valid at this store";
pub const ALREADY_USED: &str = "product coupon already used";
pub const BUNDLE_NOT_SUPPORTED: &str = "multi-use product coupon";
/// The store's copy of the registry could not be asked: the coupon cannot be checked.
pub const REGISTRY_UNAVAILABLE: &str = "product coupon cannot be checked now";
/// A row lacks what a use needs (an older or hand-edited ledger): a person looks.
pub const INCOMPLETE_ROW: &str =
    "the ledger row lacks the product coupon's ids or its sale's order: nothing was sent";
/// A held coupon whose sale never brought its order.
pub const HOLD_EXPIRED: &str = "held for a sale that never brought its order";
/// WeChat Pay refused to use a coupon the till held for a sale that was then paid (used
/// elsewhere meanwhile, say): the customer had the discount, so a person looks at it.
pub const USE_REFUSED: &str = "WeChat Pay refused the use of a product coupon held for a paid sale";
/// WeChat Pay answered a use with another request's use of the coupon.
pub const USED_BY_ANOTHER_REQUEST: &str =
    "WeChat Pay shows this product coupon used by another request";

impl NotHeld {
    /// The sentence the ledger keeps.
    pub fn reason(&self) -> String {
        match self {
            NotHeld::NotIssued => {
                format!("{NOT_ISSUED}: the chain's registry does not know this code (never sent)")
            }
            NotHeld::NotEffective(why) => format!("{NOT_EFFECTIVE}: {why}"),
            NotHeld::Expired(why) => format!("{EXPIRED}: {why}"),
            NotHeld::NotForThisStore => {
                format!("{NOT_FOR_THIS_STORE}: its stock does not list this store")
            }
            NotHeld::AlreadyUsed => format!("{ALREADY_USED} (the chain's registry)"),
            NotHeld::BundleNotSupported => format!(
                "{BUNDLE_NOT_SUPPORTED} (PROGRESSIVE_BUNDLE): not redeemed at the till (never sent)"
            ),
        }
    }
}

/// May a till hold this coupon for its sale? Checked before anything is sent: the entry
/// (`None`: the registry does not know the code), the time, and the till's store at
/// WeChat Pay (`[wechat_pay] store_id`).
pub fn hold_check(
    entry: Option<&Entry>,
    now_ms: i64,
    store_id: Option<&str>,
) -> Result<(), NotHeld> {
    let Some(e) = entry else {
        return Err(NotHeld::NotIssued);
    };
    if e.details.usage_mode.as_deref() == Some("PROGRESSIVE_BUNDLE") {
        return Err(NotHeld::BundleNotSupported);
    }
    match e.state {
        CouponState::Effective => {}
        CouponState::Used => return Err(NotHeld::AlreadyUsed),
        CouponState::Expired => return Err(NotHeld::Expired("WeChat Pay says so".into())),
        other => {
            let name = serde_json::to_value(other)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            return Err(NotHeld::NotEffective(name));
        }
    }
    let at = |t: &Option<String>| t.as_deref().map(instant).filter(|i| *i != i64::MIN);
    if let Some(end) = at(&e.valid_end_time)
        && now_ms > end
    {
        let until = e.valid_end_time.clone().unwrap_or_default();
        return Err(NotHeld::Expired(format!("valid until {until}")));
    }
    if let Some(begin) = at(&e.valid_begin_time)
        && now_ms < begin
    {
        let from = e.valid_begin_time.clone().unwrap_or_default();
        return Err(NotHeld::NotEffective(format!("valid from {from}")));
    }
    match e.details.store_scope.as_deref() {
        Some("NONE") => Err(NotHeld::NotForThisStore),
        Some("SPECIFIC") => {
            let listed = e.details.store_ids.as_deref().unwrap_or_default();
            match store_id {
                Some(id) if listed.iter().any(|s| s == id) => Ok(()),
                _ => Err(NotHeld::NotForThisStore),
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind, at: &str) -> Event {
        Event {
            kind,
            at: at.into(),
            coupon_code_last4: "0001".into(),
            openid: None,
            product_coupon_id: Some("1000000013".into()),
            stock_id: Some("1000000013001".into()),
            valid_begin_time: None,
            valid_end_time: None,
            details: Details::default(),
        }
    }

    fn send() -> Event {
        Event {
            openid: Some("oUser0001".into()),
            valid_begin_time: Some("2026-12-04T00:00:00+08:00".into()),
            valid_end_time: Some("2026-12-31T23:59:59+08:00".into()),
            ..ev(EventKind::Send, "2026-12-04T10:00:00+08:00")
        }
    }

    /// Folds events in the given order into one entry, counting the writes.
    fn fold(events: &[Event]) -> (Option<Entry>, usize) {
        let mut entry = None;
        let mut writes = 0;
        for e in events {
            if let Change::Write(n) = apply(entry.as_ref(), e) {
                entry = Some(*n);
                writes += 1;
            }
        }
        (entry, writes)
    }

    #[test]
    fn a_coupon_issued_confirmed_used_and_returned() {
        let confirmed = ev(EventKind::Confirmed, "2026-12-04T10:00:01+08:00");
        let used = ev(EventKind::Use, "2026-12-05T12:00:00+08:00");
        let returned = ev(EventKind::Return, "2026-12-05T12:30:00+08:00");
        let cases: &[(&[Event], CouponState)] = &[
            (&[send()], CouponState::Confirming),
            (&[send(), confirmed.clone()], CouponState::Effective),
            (
                &[send(), confirmed.clone(), used.clone()],
                CouponState::Used,
            ),
            (
                &[send(), confirmed.clone(), used.clone(), returned.clone()],
                CouponState::Effective,
            ),
        ];
        for (events, want) in cases {
            let (e, _) = fold(events);
            assert_eq!(e.expect("an entry").state, *want, "{events:?}");
        }
    }

    /// The same notification five times, and the use before the issue: one entry in the
    /// right state, with the holder the issue carried.
    #[test]
    fn repeats_and_disorder_end_in_the_same_entry() {
        let used = ev(EventKind::Use, "2026-12-05T12:00:00+08:00");
        let in_order = fold(&[send(), used.clone()]).0.expect("entry");
        let (out_of_order, writes) = fold(&[used.clone(), send(), used.clone(), send(), send()]);
        let out_of_order = out_of_order.expect("entry");
        assert_eq!(out_of_order, in_order);
        assert_eq!(out_of_order.state, CouponState::Used);
        assert_eq!(out_of_order.openid.as_deref(), Some("oUser0001"));
        assert_eq!(
            writes, 2,
            "the use, then what the issue added; repeats write nothing"
        );
        let (_, writes) = fold(&[send(), send(), send(), send(), send()]);
        assert_eq!(writes, 1);
    }

    #[test]
    fn at_the_same_instant_the_later_step_of_a_coupons_life_wins() {
        let at = "2026-12-05T12:00:00+08:00";
        let (e, _) = fold(&[ev(EventKind::Return, at), ev(EventKind::Use, at)]);
        assert_eq!(e.expect("entry").state, CouponState::Effective);
        // Offsets are instants: 04:00Z is after 11:00+08:00 (03:00Z).
        let (e, _) = fold(&[
            ev(EventKind::Use, "2026-12-05T04:00:00Z"),
            ev(EventKind::Return, "2026-12-05T11:00:00+08:00"),
        ]);
        assert_eq!(e.expect("entry").state, CouponState::Used);
    }

    #[test]
    fn the_confirm_adds_what_the_coupon_is_and_the_entry_carries_every_field() {
        let confirmed = Event {
            details: Details {
                appid: Some("wx0123456789abcdef".into()),
                title: Some("拿铁兑换券".into()),
                value: Some(3200),
                usage_mode: Some("SINGLE".into()),
                store_scope: Some("SPECIFIC".into()),
                store_ids: Some(vec!["S001".into(), "S002".into()]),
            },
            ..ev(EventKind::Confirmed, "2026-12-04T10:00:01+08:00")
        };
        let (e, _) = fold(&[send(), confirmed]);
        let json = serde_json::to_value(e.expect("entry")).expect("json");
        for field in [
            "openid",
            "appid",
            "product_coupon_id",
            "stock_id",
            "state",
            "usage_mode",
            "valid_begin_time",
            "valid_end_time",
            "title",
            "value",
            "last4",
            "store_scope",
            "store_ids",
        ] {
            assert!(!json[field].is_null(), "{field}: {json}");
        }
        assert_eq!(json["state"], "EFFECTIVE");
        assert_eq!(json["value"], 3200);
    }

    #[test]
    fn what_a_till_may_hold() {
        let base = Entry {
            state: CouponState::Effective,
            state_at: "2026-12-04T10:00:01+08:00".into(),
            state_rank: 1,
            last4: "0001".into(),
            openid: Some("oUser0001".into()),
            product_coupon_id: Some("1000000013".into()),
            stock_id: Some("1000000013001".into()),
            valid_begin_time: Some("2026-12-04T00:00:00+08:00".into()),
            valid_end_time: Some("2026-12-31T23:59:59+08:00".into()),
            details: Details {
                usage_mode: Some("SINGLE".into()),
                store_scope: Some("ALL".into()),
                ..Details::default()
            },
        };
        let with = |f: &dyn Fn(&mut Entry)| {
            let mut e = base.clone();
            f(&mut e);
            e
        };
        let specific = with(&|e| {
            e.details.store_scope = Some("SPECIFIC".into());
            e.details.store_ids = Some(vec!["S001".into(), "S002".into()]);
        });
        // 2026-12-05 12:00 +08:00, inside the window.
        let now = instant("2026-12-05T12:00:00+08:00");
        let before = instant("2026-12-03T23:59:59+08:00");
        let after = instant("2027-01-01T00:00:00+08:00");
        type Case<'a> = (Option<Entry>, i64, Option<&'a str>, Result<(), NotHeld>);
        let cases: Vec<Case> = vec![
            (Some(base.clone()), now, Some("S001"), Ok(())),
            (Some(base.clone()), now, None, Ok(())),
            (None, now, Some("S001"), Err(NotHeld::NotIssued)),
            (
                Some(with(&|e| e.state = CouponState::Used)),
                now,
                None,
                Err(NotHeld::AlreadyUsed),
            ),
            (
                Some(with(&|e| e.state = CouponState::Confirming)),
                now,
                None,
                Err(NotHeld::NotEffective("CONFIRMING".into())),
            ),
            (
                Some(with(&|e| e.state = CouponState::Deactivated)),
                now,
                None,
                Err(NotHeld::NotEffective("DEACTIVATED".into())),
            ),
            (
                Some(with(&|e| e.state = CouponState::Expired)),
                now,
                None,
                Err(NotHeld::Expired("WeChat Pay says so".into())),
            ),
            (
                Some(base.clone()),
                after,
                None,
                Err(NotHeld::Expired(
                    "valid until 2026-12-31T23:59:59+08:00".into(),
                )),
            ),
            (
                Some(base.clone()),
                before,
                None,
                Err(NotHeld::NotEffective(
                    "valid from 2026-12-04T00:00:00+08:00".into(),
                )),
            ),
            (Some(specific.clone()), now, Some("S002"), Ok(())),
            (
                Some(specific.clone()),
                now,
                Some("S009"),
                Err(NotHeld::NotForThisStore),
            ),
            (
                Some(specific.clone()),
                now,
                None,
                Err(NotHeld::NotForThisStore),
            ),
            (
                Some(with(&|e| e.details.store_scope = Some("NONE".into()))),
                now,
                Some("S001"),
                Err(NotHeld::NotForThisStore),
            ),
            // A multi-use coupon is refused before anything else is looked at.
            (
                Some(with(&|e| {
                    e.details.usage_mode = Some("PROGRESSIVE_BUNDLE".into());
                    e.state = CouponState::Used;
                })),
                now,
                None,
                Err(NotHeld::BundleNotSupported),
            ),
        ];
        for (i, (entry, at, store, want)) in cases.into_iter().enumerate() {
            assert_eq!(hold_check(entry.as_ref(), at, store), want, "case {i}");
        }
    }

    #[test]
    fn every_refusal_has_its_reason_code() {
        let cases = [
            (NotHeld::NotIssued, "not_issued"),
            (NotHeld::NotEffective("CONFIRMING".into()), "not_effective"),
            (NotHeld::Expired("valid until x".into()), "expired"),
            (NotHeld::NotForThisStore, "not_for_this_store"),
            (NotHeld::AlreadyUsed, "already_used"),
            (NotHeld::BundleNotSupported, "bundle_not_supported"),
        ];
        for (n, code) in cases {
            assert_eq!(crate::model::reason::code_of(&n.reason()), code, "{n:?}");
        }
        assert_eq!(
            crate::model::reason::code_of(&format!("{HOLD_EXPIRED} within hold_timeout (30 min)")),
            "hold_expired"
        );
    }

    #[test]
    fn the_state_is_written_as_wechat_pay_names_it() {
        let v = serde_json::to_value(CouponState::Effective).expect("json");
        assert_eq!(v, "EFFECTIVE");
        let s: CouponState = serde_json::from_value("DEACTIVATED".into()).expect("state");
        assert_eq!(s, CouponState::Deactivated);
    }
}
