//! What an API answer means, as data: the decision tables (`card_rules`, `coupon_rules`)
//! turn an answer into a [`Verdict`], and the I/O code only carries it out. The
//! dispatcher's concurrency limit reads [`Health`], never the text of a reason.

use crate::model::state::Settle;
use std::time::Duration;

/// How the API behaved on one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// It answered normally (a refusal of this code is a normal answer).
    Healthy,
    /// It pushed back or answered too slowly: rate limit, quota, busy, a timeout. Send less
    /// at once.
    Congested,
    /// It could not be reached or failed (connection refused, 5xx, a broken reply). Not a
    /// reason to send less, but not a sign that it answers again either.
    Down,
}

/// What a call's answer means for the row and for the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub step: Step,
    pub health: Health,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Apply this to the row through the state machine.
    Settle(Settle),
    /// Stop using the API for `retry_in` (credentials wrong, clock off, token fetches
    /// throttled locally). `settle` is applied first, when the call was a redeeming one
    /// that never took effect: the row's flag goes back to what it was.
    Pause {
        retry_in: Duration,
        reason: String,
        settle: Option<Settle>,
    },
}

impl Verdict {
    pub fn settle(settle: Settle, health: Health) -> Verdict {
        Verdict {
            step: Step::Settle(settle),
            health,
        }
    }
}

/// Helpers for the decision tables' tests: what a row becomes after a verdict.
#[cfg(test)]
pub(crate) mod table {
    use super::*;
    use crate::model::state::{Schedule, Snapshot, State, settle};

    /// What the row becomes, and what the API is told, after a verdict: `paused` when the
    /// verdict pauses the API (its settlement, if any, is applied first).
    #[derive(Debug, PartialEq, Eq)]
    pub(crate) struct Outcome {
        pub(crate) state: State,
        pub(crate) unconfirmed: bool,
        pub(crate) schedule: Schedule,
        pub(crate) health: Health,
        pub(crate) paused: bool,
    }

    pub(crate) fn run(row: Snapshot, v: Verdict) -> Outcome {
        let (settled, paused) = match v.step {
            Step::Settle(s) => (Some(s), false),
            Step::Pause { settle, .. } => (settle, true),
        };
        let change = settled.map(|s| settle(row, &s));
        Outcome {
            state: change.as_ref().map_or(row.state, |c| c.state),
            unconfirmed: change.as_ref().map_or(row.unconfirmed, |c| c.unconfirmed),
            schedule: change.as_ref().map_or(Schedule::Never, |c| c.schedule),
            health: v.health,
            paused,
        }
    }

    pub(crate) fn out(
        state: State,
        unconfirmed: bool,
        schedule: Schedule,
        health: Health,
        paused: bool,
    ) -> Outcome {
        Outcome {
            state,
            unconfirmed,
            schedule,
            health,
            paused,
        }
    }

    pub(crate) fn snap(state: State, unconfirmed: bool, accepted_offline: bool) -> Snapshot {
        Snapshot {
            state,
            unconfirmed,
            accepted_offline,
        }
    }
}
