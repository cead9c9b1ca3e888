//! What a till tells headquarters: a row's version as an event, and a status
//! beat. Both are small JSON objects with `"v": 1`; HQ counts and skips any other version
//! and anything it cannot read, and never stops for one.
//!
//! Codes travel only as the claim key (HMAC-SHA256 with the chain's code key) and their
//! last 4 characters.

use crate::clock::Millis;
use crate::model::claim_key::CodeKey;
use crate::model::reason;
use crate::model::row::Row;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The version this build writes and reads.
pub const VERSION: u64 = 1;

/// The stream at each store, and its subjects.
pub const STORE_STREAM: &str = "REDEEMD_EVENTS";
pub const EVENTS_PREFIX: &str = "redeemd.events";
pub const STATUS_PREFIX: &str = "redeemd.status";

/// `redeemd.events.<store>.<till>`
pub fn events_subject(store: &str, till: &str) -> String {
    format!("{EVENTS_PREFIX}.{store}.{till}")
}

/// `redeemd.status.<store>.<till>`
pub fn status_subject(store: &str, till: &str) -> String {
    format!("{STATUS_PREFIX}.{store}.{till}")
}

/// The stream's de-duplication key of a row version: `<till>:<row id>:<row version>`.
pub fn row_msg_id(till: &str, id: i64, version: i64) -> String {
    format!("{till}:{id}:{version}")
}

/// One version of one ledger row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowEvent {
    pub v: u64,
    pub store: String,
    pub till: String,
    pub id: i64,
    /// Grows by one with every change of the row HQ cares about.
    pub version: i64,
    pub state: String,
    pub reason: Option<String>,
    /// `reason`'s stable name (`model::reason::code_of`).
    pub reason_code: Option<String>,
    pub api: Option<String>,
    pub code_last4: String,
    /// The claim key; `None` for a local refusal (whose code is never kept in full).
    pub key: Option<String>,
    pub title: Option<String>,
    pub value: Option<i64>,
    pub order_id: Option<String>,
    pub amount: Option<i64>,
    pub scans: i64,
    pub scanned_at: Millis,
    pub updated_at: Millis,
    pub redeemed_at: Option<Millis>,
    pub resolution: Option<String>,
    pub resolved_at: Option<Millis>,
    pub void_state: Option<String>,
    pub guard: Option<String>,
    /// The WeChat Pay order a product coupon is used with (absent from older tills).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_trade_no: Option<String>,
}

impl RowEvent {
    /// The event of `row` at `version`, as till `till` of `store` says it (the till's
    /// name now: a row from before a rename is still this till's).
    pub fn of(row: &Row, version: i64, store: &str, till: &str, code_key: &CodeKey) -> RowEvent {
        RowEvent {
            v: VERSION,
            store: store.to_string(),
            till: till.to_string(),
            id: row.id,
            version,
            state: row.state.as_str().to_string(),
            reason: row.reason.clone(),
            reason_code: row
                .reason
                .as_deref()
                .map(|r| reason::code_of(r).to_string()),
            api: row.api.map(String::from),
            code_last4: row.code.last4(),
            // A local refusal's code is kept masked: there is nothing to key.
            key: row.api.map(|_| code_key.claim_key(&row.code)),
            title: row.title.clone(),
            value: row.value,
            order_id: row.order_id.clone(),
            amount: row.amount,
            scans: row.scans,
            scanned_at: row.scanned_at,
            updated_at: row.updated_at,
            redeemed_at: row.redeemed_at,
            resolution: row.resolution.clone(),
            resolved_at: row.resolved_at,
            void_state: row.void.as_ref().map(|v| v.state.as_str().to_string()),
            guard: row.guard.map(|g| g.as_str().to_string()),
            transaction_id: row
                .pay_order
                .as_ref()
                .and_then(|o| o.transaction_id.clone()),
            out_trade_no: row.pay_order.as_ref().and_then(|o| o.out_trade_no.clone()),
        }
    }
}

/// A till's beat, every `status_interval`: what it has not done yet and how it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusBeat {
    pub v: u64,
    pub store: String,
    pub till: String,
    pub at: Millis,
    /// Rows waiting for WeChat.
    pub backlog: i64,
    /// Rows waiting for a person.
    pub review: i64,
    /// Row versions not yet acknowledged by the store's stream.
    pub outbox: i64,
    /// Scanner → connected.
    pub scanners: BTreeMap<String, bool>,
    /// The last answer WeChat gave (any answer: it was reachable).
    pub last_success: Option<Millis>,
    /// The redeemd version the till runs.
    pub version: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Row(Box<RowEvent>),
    Status(StatusBeat),
}

/// Why a message was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// A version this build does not read (a newer till): counted, never guessed at.
    UnknownVersion(u64),
    /// Not JSON, a field missing or of the wrong type, or a subject that is neither kind.
    Malformed(String),
}

impl Skip {
    /// The metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Skip::UnknownVersion(_) => "unknown_version",
            Skip::Malformed(_) => "malformed",
        }
    }
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::UnknownVersion(v) => write!(f, "event version {v} is not known to this build"),
            Skip::Malformed(why) => write!(f, "malformed event: {why}"),
        }
    }
}

#[derive(Deserialize)]
struct Versioned {
    v: u64,
}

/// Reads one message of the chain stream. The subject says the kind; the body's `v` is
/// checked before anything else is read, and its `store`/`till` must be the subject's (a
/// till cannot speak for another).
pub fn decode(subject: &str, body: &[u8]) -> Result<Event, Skip> {
    let parts: Vec<&str> = subject.split('.').collect();
    let (kind, store, till) = match parts.as_slice() {
        ["redeemd", kind, store, till] => (*kind, *store, *till),
        _ => return Err(Skip::Malformed(format!("unexpected subject {subject:?}"))),
    };
    let versioned: Versioned = serde_json::from_slice(body)
        .map_err(|e| Skip::Malformed(format!("no version (\"v\"): {e}")))?;
    if versioned.v != VERSION {
        return Err(Skip::UnknownVersion(versioned.v));
    }
    let (event, named) = match kind {
        "events" => {
            let e: RowEvent = serde_json::from_slice(body)
                .map_err(|e| Skip::Malformed(format!("row event: {e}")))?;
            let named = (e.store.clone(), e.till.clone());
            (Event::Row(Box::new(e)), named)
        }
        "status" => {
            let s: StatusBeat = serde_json::from_slice(body)
                .map_err(|e| Skip::Malformed(format!("status beat: {e}")))?;
            let named = (s.store.clone(), s.till.clone());
            (Event::Status(s), named)
        }
        other => return Err(Skip::Malformed(format!("unknown kind {other:?}"))),
    };
    if named.0 != store || named.1 != till {
        return Err(Skip::Malformed(format!(
            "the body names {}/{} but came on {subject:?}",
            named.0, named.1
        )));
    }
    Ok(event)
}

/// What the read model does with a row event, given the version it holds of that row
/// (`None`: none yet). A repeat or an older version changes nothing: events arrive more
/// than once (republished after a crash) and out of order (a till offline for a day).
pub fn applies(held: Option<i64>, incoming: i64) -> bool {
    held.is_none_or(|h| incoming > h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> RowEvent {
        RowEvent {
            v: 1,
            store: "store12".into(),
            till: "till-1".into(),
            id: 7,
            version: 2,
            state: "redeemed".into(),
            reason: None,
            reason_code: None,
            api: Some("card".into()),
            code_last4: "9012".into(),
            key: Some("ab".repeat(32)),
            title: None,
            value: Some(500),
            order_id: None,
            amount: None,
            scans: 1,
            scanned_at: 1,
            updated_at: 2,
            redeemed_at: Some(2),
            resolution: None,
            resolved_at: None,
            void_state: None,
            guard: Some("claimed".into()),
            transaction_id: None,
            out_trade_no: None,
        }
    }

    #[test]
    fn decoding_a_table_of_messages() {
        let good = serde_json::to_vec(&row()).unwrap();
        let mut v2 = serde_json::to_value(row()).unwrap();
        v2["v"] = 2.into();
        let v2 = serde_json::to_vec(&v2).unwrap();
        let mut no_state = serde_json::to_value(row()).unwrap();
        no_state.as_object_mut().unwrap().remove("state");
        let no_state = serde_json::to_vec(&no_state).unwrap();
        let cases: &[(&str, &[u8], Result<(), Skip>)] = &[
            ("redeemd.events.store12.till-1", &good, Ok(())),
            (
                "redeemd.events.store12.till-1",
                &v2,
                Err(Skip::UnknownVersion(2)),
            ),
            (
                "redeemd.events.store12.till-1",
                b"{not json",
                Err(Skip::Malformed(String::new())),
            ),
            (
                "redeemd.events.store12.till-1",
                &no_state,
                Err(Skip::Malformed(String::new())),
            ),
            // Another till's name in the body.
            (
                "redeemd.events.store12.till-2",
                &good,
                Err(Skip::Malformed(String::new())),
            ),
            (
                "redeemd.other.store12.till-1",
                &good,
                Err(Skip::Malformed(String::new())),
            ),
            (
                "redeemd.events.store12",
                &good,
                Err(Skip::Malformed(String::new())),
            ),
            // A row event on the status subject is not a beat.
            (
                "redeemd.status.store12.till-1",
                &good,
                Err(Skip::Malformed(String::new())),
            ),
        ];
        for (subject, body, want) in cases {
            let got = decode(subject, body).map(|_| ());
            match (&got, want) {
                (Ok(()), Ok(())) => {}
                (Err(Skip::UnknownVersion(a)), Err(Skip::UnknownVersion(b))) => assert_eq!(a, b),
                (Err(Skip::Malformed(_)), Err(Skip::Malformed(_))) => {}
                _ => panic!("{subject}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn a_beat_round_trips() {
        let beat = StatusBeat {
            v: 1,
            store: "s".into(),
            till: "t".into(),
            at: 5,
            backlog: 1,
            review: 2,
            outbox: 3,
            scanners: BTreeMap::from([("serial".into(), true)]),
            last_success: None,
            version: "0.1.0".into(),
        };
        let body = serde_json::to_vec(&beat).unwrap();
        assert_eq!(decode("redeemd.status.s.t", &body), Ok(Event::Status(beat)));
    }

    #[test]
    fn only_newer_versions_apply() {
        let cases = [
            (None, 1, true),
            (Some(1), 2, true),
            (Some(2), 2, false),
            (Some(3), 2, false),
            (Some(1), 5, true),
        ];
        for (held, incoming, want) in cases {
            assert_eq!(applies(held, incoming), want, "{held:?} {incoming}");
        }
    }
}
