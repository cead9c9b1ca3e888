//! Adaptive concurrency (AIMD, as TCP does): grow while calls go well, halve when WeChat says
//! "slow down" (45009, 45011, 429) or calls time out. The daemon is never told WeChat's
//! limit; it finds it. Pure: the caller passes the time.
//!
//! Two refinements over the textbook rule, both for WeChat's limits being *quotas counted
//! over a time window* rather than a queue that fills and drains:
//! - Growth is one slot per window of good answers, but at most one slot per
//!   [`GROWTH_INTERVAL`]. With WeChat answering in 20 ms, "one per window" alone would add 50
//!   slots a second and overrun a quota long before the first refusal comes back.
//! - One cut per round of calls: refusals of calls that were sent before the last cut say
//!   nothing new (they were sent at the old rate), so they do not cut again. Without this, a
//!   burst of refusals halves the limit again and again, down to 1.
//! - After a cut, the limit climbs back quickly towards where it was cut (half the distance
//!   per interval, as BIC-TCP does), then slowly past it. Halving, then creeping back one
//!   slot at a time, would leave much of the quota unused after every cut.

use std::time::{Duration, Instant};

/// The fastest the limit grows: one slot per this long.
pub const GROWTH_INTERVAL: Duration = Duration::from_millis(250);
/// What is kept of the limit on a cut: half.
pub const DECREASE: f64 = 0.5;

#[derive(Debug, Clone)]
pub struct Aimd {
    limit: f64,
    min: f64,
    max: f64,
    last_growth: Option<Instant>,
    last_cut: Option<Instant>,
    /// The limit when it was last cut: where the quota ran out.
    cut_from: f64,
}

impl Aimd {
    pub fn new(initial: usize, min: usize, max: usize) -> Self {
        let (min, max) = (min.max(1) as f64, max.max(1) as f64);
        Self {
            limit: (initial as f64).clamp(min, max),
            min,
            max,
            last_growth: None,
            last_cut: None,
            cut_from: 0.0,
        }
    }

    /// Calls that may be in flight now.
    pub fn limit(&self) -> usize {
        self.limit.floor() as usize
    }

    /// A call went well: grow by `step` slots per window of `limit` successes, and at most
    /// `step` per [`GROWTH_INTERVAL`]. `step` is one, or half the way back to where the
    /// limit was last cut.
    pub fn on_success(&mut self, now: Instant) {
        let since = self
            .last_growth
            .map_or(GROWTH_INTERVAL, |t| now.saturating_duration_since(t));
        let budget = since.as_secs_f64() / GROWTH_INTERVAL.as_secs_f64();
        let step = ((self.cut_from - self.limit) / 2.0).max(1.0);
        self.limit = (self.limit + step * (1.0 / self.limit).min(budget)).min(self.max);
        self.last_growth = Some(now);
    }

    /// WeChat pushed back on a call sent at `sent`: halve, once per round.
    pub fn on_congestion(&mut self, sent: Instant, now: Instant) {
        if self.last_cut.is_some_and(|cut| sent <= cut) {
            return;
        }
        self.cut_from = self.limit;
        self.limit = (self.limit * DECREASE).max(self.min);
        self.last_cut = Some(now);
    }
}

/// A per-till delay before draining a backlog when WeChat comes back, derived from the till's
/// name so that a store's tills (whose outage ended at the same second) spread out.
pub fn reconnect_jitter(till: &str, spread_ms: u64) -> std::time::Duration {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in till.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    std::time::Duration::from_millis(h % spread_ms.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn grows_one_slot_per_window_but_no_faster_than_the_interval() {
        let t0 = Instant::now();
        let mut a = Aimd::new(4, 1, 64);
        // A whole window of successes (a little more than `limit`, as the limit grows with
        // them), but within a few milliseconds.
        for i in 0..5 {
            a.on_success(t0 + Duration::from_millis(i));
        }
        assert_eq!(a.limit(), 4, "no faster than one slot per GROWTH_INTERVAL");
        // The same window spread over two seconds: one slot.
        let mut b = Aimd::new(4, 1, 64);
        for i in 0..5 {
            b.on_success(t0 + GROWTH_INTERVAL * (i + 1));
        }
        assert_eq!(b.limit(), 5);
    }

    #[test]
    fn climbs_back_quickly_towards_where_it_was_cut() {
        let t0 = Instant::now();
        let mut a = Aimd::new(20, 1, 64);
        a.on_congestion(t0, t0);
        assert_eq!(a.limit(), 10);
        // One interval's worth of successes, spread over it: most of the way back (plain
        // additive increase would add one slot).
        let mut t = t0;
        for _ in 0..10 {
            t += GROWTH_INTERVAL / 10;
            a.on_success(t);
        }
        assert!((12..=15).contains(&a.limit()), "{}", a.limit());
        // Near the old limit, growth is back to one slot per interval.
        for _ in 0..60 {
            t += GROWTH_INTERVAL / 10;
            a.on_success(t);
        }
        assert!((19..=22).contains(&a.limit()), "{}", a.limit());
    }

    #[test]
    fn cuts_once_per_round_and_never_below_min() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut a = Aimd::new(20, 1, 64);
        a.on_congestion(ms(0), ms(10));
        assert_eq!(a.limit(), 10);
        // Refusals of calls sent before that cut: the same congestion, no second cut.
        a.on_congestion(ms(5), ms(12));
        a.on_congestion(ms(10), ms(15));
        assert_eq!(a.limit(), 10);
        // A call sent after the cut was refused too: cut again.
        a.on_congestion(ms(11), ms(30));
        assert_eq!(a.limit(), 5);
        for i in 0..20 {
            a.on_congestion(ms(100 + 2 * i), ms(101 + 2 * i));
        }
        assert_eq!(a.limit(), 1, "never below min");
    }

    #[test]
    fn jitter_is_stable_per_till_and_differs_between_tills() {
        let a = reconnect_jitter("store12-till1", 3000);
        assert_eq!(a, reconnect_jitter("store12-till1", 3000));
        let spread: std::collections::HashSet<_> = (1..=8)
            .map(|i| reconnect_jitter(&format!("store12-till{i}"), 3000))
            .collect();
        assert!(spread.len() >= 6, "{spread:?}");
        assert!(spread.iter().all(|d| d.as_millis() < 3000));
    }

    proptest! {
        #[test]
        fn stays_within_bounds(ops in proptest::collection::vec((any::<bool>(), 0u64..2000), 0..500), init in 0usize..100) {
            let mut a = Aimd::new(init, 1, 32);
            let mut now = Instant::now();
            for (up, gap_ms) in ops {
                let sent = now;
                now += Duration::from_millis(gap_ms);
                if up { a.on_success(now) } else { a.on_congestion(sent, now) }
                prop_assert!((1..=32).contains(&a.limit()));
            }
        }
    }
}
