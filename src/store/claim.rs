//! What a claim holds and what finding one means. Pure.

use crate::clock::Millis;
use serde::{Deserialize, Serialize};

/// A claim's value in the bucket: who holds the code, and how far it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

pub const RELEASED: &str = "released";

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

#[cfg(test)]
mod tests {
    use super::*;

    fn value(till: &str, state: &str) -> Vec<u8> {
        serde_json::to_vec(&ClaimValue {
            till: till.into(),
            row: Some(1),
            scan: "s1".into(),
            at: 1,
            api: "card".into(),
            state: state.into(),
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
