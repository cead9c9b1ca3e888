//! The retry schedule. Pure: the caller supplies the attempt count and the random draw, and
//! stores the result as `next_attempt_at` in the ledger, so the schedule survives `kill -9`.

use std::time::Duration;

/// How much harder to back off when WeChat said "slow down" (45011/429) or "busy" (-1):
/// four times the ordinary delay for the same attempt, still capped by `max`.
const THROTTLE_FACTOR: u32 = 4;

/// Delay before try `attempt + 1`, for `attempt` ≥ 1 tries so far.
///
/// Exponential (`base · 2^(attempt-1)`) capped at `max`, with "equal jitter": half the delay
/// is fixed, half is random (`jitter` in `[0, 1)`), so that many rows — and many tills —
/// that failed together do not all retry in the same instant, yet none retries too early.
pub fn delay(
    attempt: u32,
    base: Duration,
    max: Duration,
    throttled: bool,
    jitter: f64,
) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let mut d = base.saturating_mul(1u32 << exp);
    if throttled {
        d = d.saturating_mul(THROTTLE_FACTOR);
    }
    let d = d.min(max).max(base);
    let half = d / 2;
    let jitter = jitter.clamp(0.0, 1.0);
    half + half.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const B: Duration = Duration::from_secs(1);
    const M: Duration = Duration::from_secs(60);

    #[test]
    fn doubles_then_caps() {
        let full = |a| delay(a, B, M, false, 1.0);
        assert_eq!(full(1), Duration::from_secs(1));
        assert_eq!(full(2), Duration::from_secs(2));
        assert_eq!(full(3), Duration::from_secs(4));
        assert_eq!(full(7), Duration::from_secs(60));
        assert_eq!(full(1000), Duration::from_secs(60));
        assert_eq!(delay(3, B, M, false, 0.0), Duration::from_secs(2));
    }

    #[test]
    fn throttled_backs_off_harder() {
        assert_eq!(delay(1, B, M, true, 1.0), Duration::from_secs(4));
        assert!(delay(2, B, M, true, 0.0) > delay(2, B, M, false, 1.0));
        assert_eq!(delay(10, B, M, true, 1.0), M);
    }

    proptest! {
        #[test]
        fn always_between_half_base_and_max(a in 0u32..100_000, j in 0.0f64..1.0, t: bool,
                                              base_ms in 1u64..10_000, extra in 0u64..1_000_000) {
            let base = Duration::from_millis(base_ms);
            let max = base + Duration::from_millis(extra);
            let d = delay(a, base, max, t, j);
            prop_assert!(d >= base / 2);
            prop_assert!(d <= max);
        }
    }
}
