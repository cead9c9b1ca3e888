//! What a claim holds, what finding one means, and what a row's state makes of its claim.
//! Pure.

use crate::clock::{Millis, hh_mm};
use crate::model::state::State;
use serde::{Deserialize, Serialize};

/// A claim's value in the bucket: who holds the code, and how far it got.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClaimValue {
    pub till: String,
    /// The ledger row, once recorded.
    #[serde(default)]
    pub row: Option<i64>,
    /// An id the till wrote before claiming, to know its own claim after a crash.
    pub scan: String,
    pub at: Millis,
    pub api: String,
    /// `claimed`, `redeemed`, `rejected`, `review` or `released`.
    pub state: String,
    /// The code's last 4 characters, for people (the key is all NATS has of the code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last4: Option<String>,
    /// The till that found this claim abandoned (no row behind it, old): it did not take
    /// the claim over, and the holder's next start reports it to its manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abandoned_by: Option<String>,
}

pub const RELEASED: &str = "released";
/// A claim taken, whose row has not settled.
pub const CLAIMED: &str = "claimed";
/// What a value no version of redeemd wrote is shown as.
pub const UNREADABLE: &str = "unreadable";

/// What finding a key already in the bucket means for a till that wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// This till's own claim (a restart, a rescan): go on with it.
    Ours,
    /// Released by whoever held it: take it over with `update(revision)`.
    Free,
    /// Another till holds it.
    Theirs(ClaimValue),
    /// A value no version of redeemd wrote: treated as held, never overwritten.
    Unreadable,
}

pub fn found(existing: &[u8], till: &str) -> Found {
    match serde_json::from_slice::<ClaimValue>(existing) {
        Ok(v) if v.state == RELEASED => Found::Free,
        Ok(v) if v.till == till => Found::Ours,
        Ok(v) => Found::Theirs(v),
        Err(_) => Found::Unreadable,
    }
}

/// What another till's claim means for this scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Foreign {
    /// The code is that till's: answer `duplicate`, never send it.
    Duplicate(String),
    /// Claimed long ago with nothing recorded behind it (that till died between its claim
    /// and its row, and has not come back to release it), or unreadable: never taken over
    /// automatically, a person decides.
    Abandoned(String),
}

/// `online_wait_ms`: a claim younger than this may still be on its way to its row.
pub fn foreign(v: &ClaimValue, now: Millis, online_wait_ms: i64) -> Foreign {
    if v.state == UNREADABLE {
        return Foreign::Abandoned(
            "claimed in the store guard with a value redeemd cannot read: a manager decides".into(),
        );
    }
    if v.row.is_none() && v.state == CLAIMED && now - v.at > online_wait_ms {
        return Foreign::Abandoned(format!(
            "claimed at till {} at {} and never recorded there: check till {} before giving the discount",
            v.till,
            hh_mm(v.at),
            v.till
        ));
    }
    Foreign::Duplicate(format!(
        "already scanned at till {} at {}",
        v.till,
        hh_mm(v.at)
    ))
}

/// Why a till records a review item for its own claim that another till found abandoned:
/// the scan was claimed here, this till stopped before recording it, and the customer was
/// turned away at `finder`.
pub fn abandoned_here_reason(at: Millis, finder: &str) -> String {
    format!(
        "claimed here at {} and never recorded (this till stopped first); till {finder} found the claim and turned the code away: ask till {finder} what the customer was told",
        hh_mm(at)
    )
}

/// Why a row this till redeemed alone goes to review once the store answers and another
/// till turns out to hold the code.
pub fn taken_twice_reason(holder: &str, at: Millis) -> String {
    format!(
        "taken at two tills: redeemed here while the store guard could not be asked, and till {holder} claimed the code at {}; check which till gave the discount",
        hh_mm(at)
    )
}

/// The claim's state for a row in `state`; `sent`: a redeeming call ever went out for it.
/// A code this till turned away without sending it is released, so another till may take
/// it; so is a coupon given back (the customer has it again). The rest is kept.
pub fn follows(state: State, sent: bool) -> &'static str {
    match state {
        // Held for its sale: this till keeps the code until the order comes, or the hold
        // ends.
        State::Queued | State::Held => CLAIMED,
        State::Redeemed => "redeemed",
        State::Rejected if sent => "rejected",
        State::Cancelled if sent => "cancelled",
        State::Rejected | State::Cancelled | State::Returned => RELEASED,
        State::Review => "review",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(till: &str, row: Option<i64>, at: Millis, state: &str) -> ClaimValue {
        ClaimValue {
            till: till.into(),
            row,
            scan: "s1".into(),
            at,
            api: "coupon".into(),
            state: state.into(),
            ..ClaimValue::default()
        }
    }

    #[test]
    fn the_foreign_table() {
        let wait = 5_000;
        let now = 1_000_000;
        let cases = [
            // (value, duplicate?)
            (held("t1", Some(3), now - 100, CLAIMED), true),
            (held("t1", Some(3), now - 10 * wait, CLAIMED), true),
            (held("t1", Some(3), now - 10 * wait, "redeemed"), true),
            (held("t1", None, now - 100, CLAIMED), true),
            (held("t1", None, now - wait, CLAIMED), true),
            (held("t1", None, now - wait - 1, CLAIMED), false),
            (held("t1", None, now - 10 * wait, "review"), true),
            (held("?", None, 0, UNREADABLE), false),
        ];
        for (v, duplicate) in cases {
            let got = foreign(&v, now, wait);
            assert_eq!(
                matches!(got, Foreign::Duplicate(_)),
                duplicate,
                "{v:?}: {got:?}"
            );
        }
        let Foreign::Duplicate(r) = foreign(&held("till-2", Some(1), now, CLAIMED), now, wait)
        else {
            panic!("a fresh claim is a duplicate");
        };
        assert!(r.starts_with("already scanned at till till-2 at "), "{r}");
        assert_eq!(
            r.len(),
            "already scanned at till till-2 at HH:MM".len(),
            "{r}"
        );
    }

    #[test]
    fn the_follows_table() {
        let cases = [
            (State::Queued, false, CLAIMED),
            (State::Queued, true, CLAIMED),
            (State::Redeemed, true, "redeemed"),
            (State::Rejected, false, RELEASED),
            (State::Rejected, true, "rejected"),
            (State::Cancelled, false, RELEASED),
            (State::Cancelled, true, "cancelled"),
            (State::Review, false, "review"),
            (State::Review, true, "review"),
            (State::Returned, true, RELEASED),
        ];
        for (state, sent, want) in cases {
            assert_eq!(follows(state, sent), want, "{state:?} sent={sent}");
        }
    }

    fn value(till: &str, state: &str) -> Vec<u8> {
        serde_json::to_vec(&ClaimValue {
            till: till.into(),
            row: Some(1),
            scan: "s1".into(),
            at: 1,
            api: "card".into(),
            state: state.into(),
            ..ClaimValue::default()
        })
        .unwrap()
    }

    #[test]
    fn the_found_table() {
        assert_eq!(found(&value("t1", "claimed"), "t1"), Found::Ours);
        assert_eq!(found(&value("t1", "redeemed"), "t1"), Found::Ours);
        assert_eq!(found(&value("t1", RELEASED), "t2"), Found::Free);
        assert_eq!(found(&value("t1", RELEASED), "t1"), Found::Free);
        assert!(matches!(found(&value("t1", "claimed"), "t2"), Found::Theirs(v) if v.till == "t1"));
        assert_eq!(found(b"{not json", "t1"), Found::Unreadable);
        assert_eq!(found(b"", "t1"), Found::Unreadable);
    }
}
