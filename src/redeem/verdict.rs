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
        retry_in: PauseFor,
        reason: String,
        settle: Option<Settle>,
    },
}

/// How long an API is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseFor {
    This(Duration),
    /// Until WeChat's next daily reset (00:00 Asia/Shanghai): a daily quota is used up.
    DailyReset,
}

/// WeChat's daily quotas reset at midnight in China (UTC+8, no daylight saving).
const RESET_OFFSET_MS: i64 = 8 * 3_600_000;
const DAY_MS: i64 = 86_400_000;

impl PauseFor {
    /// The pause, from `now_ms` (unix milliseconds).
    pub fn from(self, now_ms: i64) -> Duration {
        match self {
            PauseFor::This(d) => d,
            PauseFor::DailyReset => {
                let into_day = (now_ms + RESET_OFFSET_MS).rem_euclid(DAY_MS);
                Duration::from_millis((DAY_MS - into_day) as u64)
            }
        }
    }
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

#[cfg(test)]
mod pause_tests {
    use super::*;

    #[test]
    fn the_daily_reset_is_midnight_in_china() {
        // 2026-12-01T15:59:59Z is 23:59:59 in Shanghai: one second to go.
        let almost = 1_796_140_799_000;
        assert_eq!(PauseFor::DailyReset.from(almost), Duration::from_secs(1));
        // 16:00:00Z is midnight there: a whole day to the next one.
        assert_eq!(
            PauseFor::DailyReset.from(almost + 1000),
            Duration::from_secs(86_400)
        );
        assert_eq!(
            PauseFor::This(Duration::from_secs(5)).from(almost),
            Duration::from_secs(5)
        );
    }
}
