//! The redemption state machine. Pure: a row's state plus what just happened → its new state.
//!
//! ```text
//!            scan ─► queued ──WeChat ok──────────► redeemed
//!                      │ ├──WeChat refused──────► rejected   (review, if the till had
//!                      │ │                                    accepted it offline)
//!                      │ ├──till: refused_offline ► cancelled ──late success──► review
//!                      │ └──older than max_age──► review
//!                      └─ retry / unknown: stays queued, next_attempt_at moves
//! ```
//! `unconfirmed` is the "persist intent" flag: set in the same commit that records a consume
//! (or use) as started, before the request leaves; cleared only by an answer. While it is
//! set, the next try must first find out what happened (card: `code/get`; coupon: repeat with
//! the same `use_request_no`) instead of consuming again.

use std::fmt;

/// The longest note a manager's resolve may carry, in characters.
pub const MAX_NOTE: usize = 2000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Recorded, not yet confirmed by WeChat.
    Queued,
    /// WeChat confirmed the redemption.
    Redeemed,
    /// WeChat or the router said no; the reason is kept.
    Rejected,
    /// The till refused it while WeChat was unreachable: it must never be sent.
    Cancelled,
    /// Needs a person.
    Review,
    /// A redeemed merchant coupon given back to the customer (voided sale): WeChat Pay
    /// confirmed the return.
    Returned,
    /// A product coupon held for its sale: checked, claimed, not sent; it is used once the
    /// sale's WeChat Pay order is attached.
    Held,
}

impl State {
    pub const ALL: [State; 7] = [
        State::Queued,
        State::Redeemed,
        State::Rejected,
        State::Cancelled,
        State::Review,
        State::Returned,
        State::Held,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Redeemed => "redeemed",
            State::Rejected => "rejected",
            State::Cancelled => "cancelled",
            State::Review => "review",
            State::Returned => "returned",
            State::Held => "held",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// The states a manager may close a review item in.
    pub const RESOLUTIONS: [State; 2] = [State::Redeemed, State::Rejected];

    /// One of `allowed` by name, or the message that lists them: the one parser of a state
    /// the CLI and the local API share.
    pub fn parse_among(s: &str, allowed: &[State]) -> Result<State, String> {
        allowed
            .iter()
            .copied()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = allowed.iter().map(|x| x.as_str()).collect();
                format!("{s:?}: use {}", names.join(", "))
            })
    }
}

impl std::str::FromStr for State {
    type Err = String;

    fn from_str(s: &str) -> Result<State, String> {
        State::parse_among(s, &State::ALL)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer a scan gets at the till.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TillOutcome {
    Redeemed,
    Rejected,
    Duplicate,
    AcceptedOffline,
    RefusedOffline,
    /// A payment code, not a coupon: forwarded to the POS to charge (`[http]
    /// forward_payment_codes`).
    PaymentCode,
    /// A product coupon held for the sale: the POS applies the discount; the coupon is used
    /// once the sale's WeChat Pay order is attached.
    Held,
}

impl TillOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            TillOutcome::Redeemed => "redeemed",
            TillOutcome::Rejected => "rejected",
            TillOutcome::Duplicate => "duplicate",
            TillOutcome::AcceptedOffline => "accepted_offline",
            TillOutcome::RefusedOffline => "refused_offline",
            TillOutcome::PaymentCode => "payment_code",
            TillOutcome::Held => "held",
        }
    }

    pub fn parse(s: &str) -> Option<TillOutcome> {
        [
            TillOutcome::Redeemed,
            TillOutcome::Rejected,
            TillOutcome::Duplicate,
            TillOutcome::AcceptedOffline,
            TillOutcome::RefusedOffline,
            TillOutcome::PaymentCode,
            TillOutcome::Held,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

impl fmt::Display for TillOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the state machine needs to know about a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub state: State,
    /// A redeeming call was sent and its answer never arrived.
    pub unconfirmed: bool,
    /// The till told the cashier `accepted_offline`.
    pub accepted_offline: bool,
}

/// What one try at a row found out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    /// WeChat confirmed the code is redeemed by us: by the consume/use answer itself, or by a
    /// query after our own unconfirmed attempt (`note` says which).
    Redeemed { note: Option<String> },
    /// WeChat refused for good (used elsewhere, expired, unknown code, ...).
    Refused { reason: String },
    /// A query showed our unconfirmed attempt did not redeem the code.
    NotRedeemed,
    /// Nothing was redeemed and it is worth trying again (system busy, rate limit, a query
    /// that failed). The row's `unconfirmed` flag stays as it is.
    Retry { reason: String, throttled: bool },
    /// A redeeming call provably never left (connection refused, no token, no host
    /// reachable): the flag goes back to what the try read before it marked the row, since
    /// there is nothing to find out.
    NotSent {
        reason: String,
        unconfirmed_before: bool,
    },
    /// A redeeming call was sent and its answer lost: we do not know.
    Unknown { reason: String },
    /// Cannot be settled automatically (e.g. "already used" after our own unconfirmed attempt).
    NeedsReview { reason: String },
}

/// When the row should be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Not again: the row is settled.
    Never,
    /// Right away (the next try continues the work).
    Now,
    /// After the ordinary backoff.
    Backoff,
    /// After a longer backoff: WeChat asked us to slow down.
    Throttled,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub state: State,
    pub unconfirmed: bool,
    /// New reason, when it changes.
    pub reason: Option<String>,
    pub schedule: Schedule,
    /// Set `redeemed_at` now.
    pub redeemed: bool,
}

pub const REDEEMED_AFTER_REFUSAL: &str = "redeemed after the till refused it";

/// Applies what a try found out. Rows that are already settled (`redeemed`, `rejected`,
/// `review`) are never changed by an API answer: the first settled answer wins, and a person
/// owns `review`.
pub fn settle(s: Snapshot, r: &Settle) -> Change {
    let keep = |schedule| Change {
        state: s.state,
        unconfirmed: s.unconfirmed,
        reason: None,
        schedule,
        redeemed: false,
    };
    match s.state {
        // A held row is not sent (its order has not come): nothing can settle it.
        State::Redeemed | State::Rejected | State::Review | State::Returned | State::Held => {
            return keep(Schedule::Never);
        }
        State::Queued | State::Cancelled => {}
    }
    let cancelled = s.state == State::Cancelled;
    match r {
        Settle::Redeemed { .. } if cancelled => Change {
            state: State::Review,
            unconfirmed: false,
            reason: Some(REDEEMED_AFTER_REFUSAL.into()),
            schedule: Schedule::Never,
            redeemed: true,
        },
        Settle::Redeemed { .. } => Change {
            state: State::Redeemed,
            unconfirmed: false,
            reason: None,
            schedule: Schedule::Never,
            redeemed: true,
        },
        // The till refused it and WeChat did not redeem it: settled as cancelled.
        Settle::Refused { .. } | Settle::NotRedeemed if cancelled => Change {
            state: State::Cancelled,
            unconfirmed: false,
            reason: None,
            schedule: Schedule::Never,
            redeemed: false,
        },
        Settle::Refused { reason } if s.accepted_offline => Change {
            state: State::Review,
            unconfirmed: false,
            reason: Some(format!(
                "accepted offline, then refused by WeChat: {reason}"
            )),
            schedule: Schedule::Never,
            redeemed: false,
        },
        Settle::Refused { reason } => Change {
            state: State::Rejected,
            unconfirmed: false,
            reason: Some(reason.clone()),
            schedule: Schedule::Never,
            redeemed: false,
        },
        Settle::NotRedeemed => Change {
            state: State::Queued,
            unconfirmed: false,
            reason: None,
            schedule: Schedule::Now,
            redeemed: false,
        },
        // A cancelled row keeps the till's refusal as its reason: that is what a manager
        // needs to read, not the transport error of a call that was already in flight.
        Settle::Retry { reason, throttled } => Change {
            reason: (!cancelled).then(|| {
                let kind = if *throttled {
                    Transient::Throttled
                } else {
                    Transient::Retry
                };
                transient(kind, reason)
            }),
            ..keep(if *throttled {
                Schedule::Throttled
            } else {
                Schedule::Backoff
            })
        },
        // Nothing left: the row is as it was before the try marked it. A cancelled row that
        // had nothing unanswered before is settled; one that had still needs its query.
        Settle::NotSent {
            reason,
            unconfirmed_before,
        } => Change {
            state: s.state,
            unconfirmed: *unconfirmed_before,
            reason: (!cancelled).then(|| transient(Transient::NotSent, reason)),
            schedule: if cancelled && !unconfirmed_before {
                Schedule::Never
            } else {
                Schedule::Backoff
            },
            redeemed: false,
        },
        Settle::Unknown { reason } => Change {
            state: s.state,
            unconfirmed: true,
            reason: (!cancelled).then(|| transient(Transient::Lost, reason)),
            schedule: Schedule::Backoff,
            redeemed: false,
        },
        Settle::NeedsReview { reason } => Change {
            state: State::Review,
            unconfirmed: false,
            reason: Some(reason.clone()),
            schedule: Schedule::Never,
            redeemed: false,
        },
    }
}

/// Why a row waits for another try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transient {
    /// WeChat did not redeem it now and asked for nothing in particular.
    Retry,
    /// WeChat asked us to slow down.
    Throttled,
    /// The call never left (no connection, no token).
    NotSent,
    /// The call left and its answer was lost.
    Lost,
}

/// The prefixes a waiting row's reason gets, so that every one has a stable `reason_code`
/// (`model::reason`) whatever words the transport or WeChat put after it.
pub const WILL_RETRY: &str = "will retry";
pub const SLOWED_DOWN: &str = "WeChat asked us to slow down; will retry";
pub const NOT_REACHED: &str = "WeChat not reached; will retry";
pub const ANSWER_LOST: &str = "WeChat's answer was lost; will ask again";

/// A waiting row's reason: a reason that has a code of its own (the quota, a rate limit)
/// stays as it is; any other gets the prefix of its kind.
pub fn transient(kind: Transient, reason: &str) -> String {
    if crate::model::reason::code_of(reason) != crate::model::reason::OTHER {
        return reason.to_string();
    }
    let prefix = match kind {
        Transient::Retry => WILL_RETRY,
        Transient::Throttled => SLOWED_DOWN,
        Transient::NotSent => NOT_REACHED,
        Transient::Lost => ANSWER_LOST,
    };
    format!("{prefix}: {reason}")
}

/// Rows the dispatcher still works on: queued ones, and cancelled ones whose last attempt's
/// outcome is unknown (they are only ever *queried*, never redeemed).
pub fn needs_work(s: Snapshot) -> bool {
    s.state == State::Queued || (s.state == State::Cancelled && s.unconfirmed)
}

/// A row past `max_age` that is still not settled goes to a person.
pub fn expire(s: Snapshot) -> Option<Change> {
    let reason = match (s.state, s.unconfirmed) {
        (State::Queued, _) => "not confirmed by WeChat within offline.max_age",
        (State::Cancelled, true) => {
            "refused at the till, and whether WeChat redeemed it is unknown"
        }
        _ => return None,
    };
    Some(Change {
        state: State::Review,
        unconfirmed: s.unconfirmed,
        reason: Some(reason.into()),
        schedule: Schedule::Never,
        redeemed: false,
    })
}

/// How a settled row answers a till that is still waiting for it.
pub fn till_outcome_of(state: State) -> Option<TillOutcome> {
    match state {
        State::Queued => None,
        State::Held => Some(TillOutcome::Held),
        State::Redeemed => Some(TillOutcome::Redeemed),
        State::Rejected | State::Review | State::Returned => Some(TillOutcome::Rejected),
        State::Cancelled => Some(TillOutcome::RefusedOffline),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(state: State, unconfirmed: bool, accepted_offline: bool) -> Snapshot {
        Snapshot {
            state,
            unconfirmed,
            accepted_offline,
        }
    }

    #[test]
    fn queued_redeemed() {
        let c = settle(
            snap(State::Queued, true, false),
            &Settle::Redeemed { note: None },
        );
        assert_eq!(c.state, State::Redeemed);
        assert!(!c.unconfirmed && c.redeemed && c.schedule == Schedule::Never);
    }

    #[test]
    fn refusal_after_offline_acceptance_needs_review() {
        let r = Settle::Refused {
            reason: "code expired".into(),
        };
        let c = settle(snap(State::Queued, false, true), &r);
        assert_eq!(c.state, State::Review);
        assert!(c.reason.unwrap().contains("code expired"));
        let c = settle(snap(State::Queued, false, false), &r);
        assert_eq!(c.state, State::Rejected);
        assert_eq!(c.reason.as_deref(), Some("code expired"));
    }

    #[test]
    fn cancelled_rows_late_success_goes_to_review() {
        let c = settle(
            snap(State::Cancelled, true, false),
            &Settle::Redeemed { note: None },
        );
        assert_eq!(c.state, State::Review);
        assert_eq!(c.reason.as_deref(), Some(REDEEMED_AFTER_REFUSAL));
        assert!(c.redeemed);
        let c = settle(snap(State::Cancelled, true, false), &Settle::NotRedeemed);
        assert_eq!(
            (c.state, c.unconfirmed, c.schedule),
            (State::Cancelled, false, Schedule::Never)
        );
    }

    #[test]
    fn unknown_keeps_the_row_and_marks_it_unconfirmed() {
        let c = settle(
            snap(State::Queued, false, false),
            &Settle::Unknown {
                reason: "timeout".into(),
            },
        );
        assert_eq!(
            (c.state, c.unconfirmed, c.schedule),
            (State::Queued, true, Schedule::Backoff)
        );
        let c = settle(snap(State::Queued, true, false), &Settle::NotRedeemed);
        assert_eq!(
            (c.state, c.unconfirmed, c.schedule),
            (State::Queued, false, Schedule::Now)
        );
    }

    #[test]
    fn retry_keeps_unconfirmed_and_throttles() {
        let c = settle(
            snap(State::Queued, true, false),
            &Settle::Retry {
                reason: "busy".into(),
                throttled: true,
            },
        );
        assert_eq!(
            (c.state, c.unconfirmed, c.schedule),
            (State::Queued, true, Schedule::Throttled)
        );
    }

    #[test]
    fn a_cancelled_row_keeps_the_tills_reason() {
        for r in [
            Settle::Retry {
                reason: "cannot connect".into(),
                throttled: false,
            },
            Settle::Unknown {
                reason: "timed out".into(),
            },
        ] {
            let c = settle(snap(State::Cancelled, true, false), &r);
            assert_eq!(c.state, State::Cancelled);
            assert_eq!(c.reason, None, "{r:?}");
        }
    }

    #[test]
    fn settled_rows_never_change() {
        for st in [
            State::Redeemed,
            State::Rejected,
            State::Review,
            State::Returned,
        ] {
            for r in [
                Settle::Redeemed { note: None },
                Settle::Refused { reason: "x".into() },
                Settle::Unknown { reason: "x".into() },
                Settle::NotRedeemed,
            ] {
                let c = settle(snap(st, false, false), &r);
                assert_eq!(c.state, st);
                assert_eq!(c.schedule, Schedule::Never);
                assert!(!c.redeemed);
            }
        }
    }

    #[test]
    fn expiry() {
        assert_eq!(
            expire(snap(State::Queued, false, true)).unwrap().state,
            State::Review
        );
        assert_eq!(
            expire(snap(State::Cancelled, true, false)).unwrap().state,
            State::Review
        );
        assert!(expire(snap(State::Cancelled, false, false)).is_none());
        assert!(expire(snap(State::Redeemed, false, false)).is_none());
    }

    #[test]
    fn names_round_trip() {
        for s in State::ALL {
            assert_eq!(State::parse(s.as_str()), Some(s));
        }
        assert_eq!(
            TillOutcome::parse("accepted_offline"),
            Some(TillOutcome::AcceptedOffline)
        );
    }
}
