//! May a code WeChat has not answered for be accepted offline? Pure: the till's limits, the
//! code's value and what already awaits confirmation → accept, or the refusal's reason
//! (which names the limit hit).

use crate::model::catalog::yuan;

/// The `[offline]` limits that apply to one scan.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Limits {
    /// `[offline] accept` and the route's `offline`.
    pub allowed: bool,
    pub max_pending: u32,
    /// Fen.
    pub max_value: Option<i64>,
    /// Fen.
    pub max_pending_value: Option<i64>,
    pub accept_unknown_value: bool,
    /// `[offline] require_store_guard`, for a scan the store guard did not answer for.
    pub guard_missing: bool,
    /// The chain's record says this code was redeemed at another store (or till), or
    /// WeChat Pay reported it used outside the tills. Read from the store's mirror of HQ's
    /// `redeemd_redeemed`.
    pub redeemed_elsewhere: Option<Elsewhere>,
}

/// Where the chain's record says a code was redeemed, for the cashier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Elsewhere {
    /// At a till of the chain: "store X (till Y, time)".
    Till(String),
    /// Outside the tills (a mini-program, WeChat's own tools), as WeChat Pay reported it:
    /// when.
    Outside(String),
}

/// What already awaits WeChat's confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    /// Queued rows (this one not counted).
    pub pending: i64,
    /// The face value of the unconfirmed offline acceptances, fen (unknown values count 0).
    pub pending_value: i64,
}

const PREFIX: &str = "refused at the till: WeChat did not answer";

/// `Ok`: accept offline. `Err`: the refusal's reason.
pub fn decide(limits: &Limits, value: Option<i64>, backlog: Backlog) -> Result<(), String> {
    match &limits.redeemed_elsewhere {
        Some(Elsewhere::Till(at)) => {
            return Err(format!(
                "{PREFIX} and the chain records this code as already redeemed at {at}"
            ));
        }
        Some(Elsewhere::Outside(when)) => {
            return Err(format!(
                "{PREFIX} and WeChat Pay reported this code used outside the chain's tills ({when})"
            ));
        }
        None => {}
    }
    if limits.guard_missing {
        return Err(format!(
            "{PREFIX} and the store guard could not be asked whether another till has it (offline.require_store_guard)"
        ));
    }
    if !limits.allowed {
        return Err(format!(
            "{PREFIX} in time and this code may not be accepted offline"
        ));
    }
    if backlog.pending >= i64::from(limits.max_pending) {
        return Err(format!(
            "{PREFIX} and {} redemptions already await confirmation (offline.max_pending)",
            backlog.pending
        ));
    }
    let capped = limits.max_value.is_some() || limits.max_pending_value.is_some();
    let value = match value {
        Some(v) => v,
        None if capped && !limits.accept_unknown_value => {
            let limit = if limits.max_value.is_some() {
                "offline.max_value"
            } else {
                "offline.max_pending_value"
            };
            return Err(format!(
                "{PREFIX} and this code's value is not known ({limit}; offline.accept_unknown_value is off)"
            ));
        }
        None => 0,
    };
    if let Some(max) = limits.max_value.filter(|max| value > *max) {
        return Err(format!(
            "{PREFIX} and this code's value ¥{} is above offline.max_value (¥{})",
            yuan(value),
            yuan(max)
        ));
    }
    if let Some(max) = limits
        .max_pending_value
        .filter(|max| backlog.pending_value + value > *max)
    {
        return Err(format!(
            "{PREFIX} and ¥{} of offline acceptances already await confirmation; with this code's ¥{} that is above offline.max_pending_value (¥{})",
            yuan(backlog.pending_value),
            yuan(value),
            yuan(max)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offline_table() {
        let open = Limits {
            allowed: true,
            max_pending: 10,
            ..Limits::default()
        };
        let capped = Limits {
            max_value: Some(5000),
            max_pending_value: Some(8000),
            ..open.clone()
        };
        let lenient = Limits {
            accept_unknown_value: true,
            ..capped.clone()
        };
        let b = |pending, pending_value| Backlog {
            pending,
            pending_value,
        };
        #[rustfmt::skip]
        let table: &[(&Limits, Option<i64>, Backlog, Option<&str>)] = &[
            (&Limits::default(), Some(1), b(0, 0),  Some("may not be accepted offline")),
            (&open,    None,       b(9, 0),        None),
            (&open,    None,       b(10, 0),       Some("offline.max_pending")),
            (&open,    Some(1_000_000), b(0, 0),   None),
            (&capped,  Some(5000), b(0, 0),        None),
            (&capped,  Some(5001), b(0, 0),        Some("above offline.max_value")),
            (&capped,  None,       b(0, 0),        Some("value is not known (offline.max_value")),
            (&lenient, None,       b(0, 7999),     None),
            (&capped,  Some(3000), b(1, 5000),     None),
            (&capped,  Some(3001), b(1, 5000),     Some("above offline.max_pending_value")),
            (&capped,  Some(1),    b(10, 0),       Some("offline.max_pending")),
            (&Limits { max_value: None, ..capped.clone() }, None, b(0, 0), Some("not known (offline.max_pending_value")),
            (&Limits { guard_missing: true, ..open.clone() }, Some(1), b(0, 0), Some("store guard could not be asked whether another till has it (offline.require_store_guard)")),
            (&Limits { redeemed_elsewhere: Some(Elsewhere::Till("store A (till-1, 14:03)".into())), ..open.clone() }, Some(1), b(0, 0), Some("already redeemed at store A (till-1, 14:03)")),
            // The chain's record outweighs every limit, and the guard's silence too.
            (&Limits { redeemed_elsewhere: Some(Elsewhere::Till("store A".into())), guard_missing: true, ..lenient.clone() }, None, b(0, 0), Some("already redeemed at store A")),
            (&Limits { redeemed_elsewhere: Some(Elsewhere::Outside("2026-12-01 14:03".into())), ..lenient.clone() }, Some(1), b(0, 0), Some("used outside the chain's tills (2026-12-01 14:03)")),
        ];
        for (i, (limits, value, backlog, want)) in table.iter().enumerate() {
            let got = decide(limits, *value, *backlog);
            match want {
                None => assert_eq!(got, Ok(()), "row {i}"),
                Some(text) => {
                    let reason = got.expect_err(&format!("row {i} must be refused"));
                    assert!(reason.contains(text), "row {i}: {reason}");
                    assert!(reason.starts_with(PREFIX), "row {i}: {reason}");
                }
            }
        }
    }
}
