//! Adaptive concurrency (AIMD, as TCP does): grow while calls go well, halve when WeChat says
//! "slow down" (45011, 429) or calls time out. The daemon is never told WeChat's
//! limit; it finds it. Pure: the caller passes the time.
//!
//! Refinements over the textbook rule, all for WeChat's limits being *quotas counted over a
//! time window* rather than a queue that fills and drains:
//! - Growth is one slot per window of good answers, but at most one slot per
//!   [`GROWTH_INTERVAL`]. With WeChat answering in 20 ms, "one per window" alone would add 50
//!   slots a second and overrun a quota long before the first refusal comes back.
//! - One cut per round of calls: refusals of calls that were sent before the last cut say
//!   nothing new (they were sent at the old rate), so they do not cut again. Without this, a
//!   burst of refusals halves the limit again and again, down to 1.
//! - A cut comes down to just below what the good answers of the last quota window
//!   sustained (Little's law), never further than half: a quota counted over time refuses
//!   only what is over it, so halving would give up far more than the overrun. Then the
//!   limit climbs back quickly towards that level (half the distance per interval, as
//!   BIC-TCP does), and past it probes one slot per quota window: a quota that counts
//!   refused calls too punishes every overrun for a whole window.
//! - It starts slowly only in name (TCP's slow start): until the first sign of congestion it
//!   grows by one slot per good answer, but at most by the factor [`SLOW_START_GROWTH`] per
//!   [`GROWTH_INTERVAL`]. A short backlog is drained before one-slot-per-interval growth
//!   would have found the limit.
//! - Slow start ends in a pause. A quota's window lets a burst through before the first
//!   refusal, so by then the limit is past what the quota sustains, and refusals go on until
//!   the window has room, whatever is sent. The limit drops to its minimum, stays there for
//!   the refusals of that window, and climbs back within one interval to just below what the
//!   quota sustained (good answers' concurrency over the window: Little's law).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The fastest the limit grows: one slot per this long.
pub const GROWTH_INTERVAL: Duration = Duration::from_millis(250);
/// What is kept of the limit on a cut: half.
pub const DECREASE: f64 = 0.5;
/// The window a quota is taken to be counted over. Refusals may go on that long after slow
/// start overran it, whatever is sent meanwhile; the good answers within it tell how much
/// concurrency the quota sustains.
pub const QUOTA_WINDOW: Duration = Duration::from_secs(1);
/// After slow start, the limit returns to this share of what the quota sustained.
pub const BELOW_SUSTAINED: f64 = 0.85;
/// After a cut past slow start, the limit comes down to this share of what the quota
/// sustained: the overrun was small (growth there is a slot per window), so less is given up.
pub const STEADY_BELOW_SUSTAINED: f64 = 0.92;
/// Good answers remembered at most (64 calls of 1 ms for a whole window fit).
const RECENT_MAX: usize = 65_536;
/// In slow start, the most the limit grows by per [`GROWTH_INTERVAL`]: this factor.
pub const SLOW_START_GROWTH: f64 = 1.35;

#[derive(Debug, Clone)]
pub struct Aimd {
    limit: f64,
    min: f64,
    max: f64,
    last_growth: Option<Instant>,
    last_cut: Option<Instant>,
    /// Where the quota ran out: the limit at the last cut, or what the quota sustained
    /// when slow start ended.
    cut_from: f64,
    /// Slow start has just ended: climbing back to what the quota sustained.
    restarting: bool,
    /// Good answers within the last [`QUOTA_WINDOW`]: when each came, and how long its call
    /// took.
    recent: VecDeque<(Instant, Duration)>,
    /// No congestion seen yet: grow exponentially. Since when the current interval runs,
    /// and the limit at its start (it may grow by at most [`SLOW_START_GROWTH`] within it).
    slow_start: Option<(Option<Instant>, f64)>,
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
            restarting: false,
            recent: VecDeque::new(),
            slow_start: Some((None, 0.0)),
        }
    }

    /// Still growing exponentially: no congestion seen yet.
    #[cfg(test)]
    pub fn in_slow_start(&self) -> bool {
        self.slow_start.is_some()
    }

    /// Calls that may be in flight now.
    pub fn limit(&self) -> usize {
        self.limit.floor() as usize
    }

    /// The concurrency the good answers of the last [`QUOTA_WINDOW`] sustained (Little's
    /// law: their summed durations over the window's length).
    fn sustained(&mut self, now: Instant) -> f64 {
        while self
            .recent
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= QUOTA_WINDOW)
        {
            self.recent.pop_front();
        }
        let busy: Duration = self.recent.iter().map(|(_, d)| *d).sum();
        // Over the whole window, or over the time since the first remembered call was sent
        // when that is shorter (a drain that began less than a window ago).
        let span = self
            .recent
            .iter()
            .map(|(t, d)| now.saturating_duration_since(*t) + *d)
            .max()
            .unwrap_or(QUOTA_WINDOW)
            .clamp(GROWTH_INTERVAL, QUOTA_WINDOW);
        busy.as_secs_f64() / span.as_secs_f64()
    }

    /// A call sent at `sent` went well. In slow start: one slot more, within the interval's
    /// growth. After it: `step` slots per window of `limit` successes, and at most `step`
    /// per [`GROWTH_INTERVAL`]; `step` is one, or half the way back to where the quota ran
    /// out (the whole way to just below it, right after slow start).
    pub fn on_success(&mut self, sent: Instant, now: Instant) {
        if self.recent.len() == RECENT_MAX {
            self.recent.pop_front();
        }
        self.recent
            .push_back((now, now.saturating_duration_since(sent)));
        if let Some((since, base)) = &mut self.slow_start {
            if since.is_none_or(|t| now.saturating_duration_since(t) >= GROWTH_INTERVAL) {
                *since = Some(now);
                *base = self.limit;
            }
            self.limit = (self.limit + 1.0)
                .min(*base * SLOW_START_GROWTH)
                .min(self.max);
            self.last_growth = Some(now);
            return;
        }
        let since = self
            .last_growth
            .map_or(GROWTH_INTERVAL, |t| now.saturating_duration_since(t));
        let budget = since.as_secs_f64() / GROWTH_INTERVAL.as_secs_f64();
        self.last_growth = Some(now);
        if self.restarting {
            // After slow start: back to just below what the quota sustained within one
            // interval (that much it took), then on as below.
            let target = self.cut_from * BELOW_SUSTAINED;
            let step = (target - self.min).max(1.0);
            self.limit = (self.limit + step * budget.min(1.0)).min(target.max(self.min));
            self.restarting = self.limit < target;
            return;
        }
        // Past where the quota ran out it probes: a slot per quota window, not per interval.
        let budget = if self.limit >= self.cut_from {
            since.as_secs_f64() / QUOTA_WINDOW.as_secs_f64()
        } else {
            budget
        };
        let step = ((self.cut_from - self.limit) / 2.0).max(1.0);
        self.limit = (self.limit + step * (1.0 / self.limit).min(budget)).min(self.max);
    }

    /// WeChat pushed back on a call sent at `sent`: halve, once per round.
    pub fn on_congestion(&mut self, sent: Instant, now: Instant) {
        if self.last_cut.is_some_and(|cut| sent <= cut) {
            return;
        }
        if let Some((_, base)) = self.slow_start.take() {
            // Slow start overran the quota by up to its last growth, and WeChat counts over
            // time: refusals go on until the quota's window has room, whatever is sent. So
            // send little until then, and aim for what the quota sustained (not the limit,
            // which grew past it before the first refusal came back).
            // What it sustained is measured over less than the quota's window when the
            // drain began recently; the limit before slow start's last growth is then the
            // better lower bound.
            let before_last_growth = base.min(self.limit);
            self.cut_from = self.sustained(now).max(before_last_growth).min(self.limit);
            self.limit = self.min;
            self.restarting = true;
        } else if self.restarting
            && self
                .last_cut
                .is_some_and(|cut| now.saturating_duration_since(cut) < QUOTA_WINDOW)
        {
            // Still that overrun: the same aim.
            self.limit = self.min;
        } else {
            // A quota counted over time refuses what is over it: what the good answers of
            // the last window sustained is where it ran out, and the limit comes down to
            // just below that (never further than half). Without answers to go by, it is
            // halved and the limit it had is where the quota ran out.
            let sustained = self.sustained(now);
            if self.recent.is_empty() {
                self.cut_from = self.limit;
            } else {
                self.cut_from = sustained.clamp(self.limit * DECREASE, self.limit);
            }
            self.limit = (self.limit * DECREASE)
                .max(sustained * STEADY_BELOW_SUSTAINED)
                .min(self.limit)
                .max(self.min);
            self.restarting = false;
        }
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

    impl Aimd {
        /// Past slow start, at `limit`.
        fn steady(limit: usize, min: usize, max: usize) -> Aimd {
            let mut a = Aimd::new(limit, min, max);
            a.slow_start = None;
            a
        }
    }

    /// A good answer at `at` to a call that took `ms`.
    fn ok(a: &mut Aimd, at: Instant, ms: u64) {
        a.on_success(at - Duration::from_millis(ms), at);
    }

    #[test]
    fn slow_start_grows_by_a_factor_per_interval_until_the_first_congestion() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut a = Aimd::new(4, 1, 64);
        assert!(a.in_slow_start());
        // A burst of good answers within one interval: one slot each, at most ×1.35.
        ok(&mut a, t0, 20);
        assert_eq!(a.limit(), 5);
        for i in 1..50 {
            ok(&mut a, t0 + Duration::from_millis(i), 20);
        }
        assert_eq!(a.limit(), 5, "5.4");
        let t1 = t0 + GROWTH_INTERVAL;
        for i in 0..50 {
            ok(&mut a, t1 + Duration::from_millis(i), 20);
        }
        assert_eq!(a.limit(), 7, "7.29");
        let mut b = Aimd::new(60, 1, 64);
        for i in 0..50 {
            ok(&mut b, t0 + GROWTH_INTERVAL * i, 20);
        }
        assert_eq!(b.limit(), 64, "never above max");
    }

    /// Slow start overran the quota: the limit drops to its minimum while the quota's
    /// window is still full (refusals go on whatever is sent), then climbs back within one
    /// interval to just below the level it had before its last growth (what the quota
    /// sustained is measured over less than a window here), then on as after any cut.
    #[test]
    fn slow_start_ends_with_a_pause_then_returns_below_where_it_overran() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut a = Aimd::new(4, 1, 64);
        for n in 0..3 {
            for i in 0..20 {
                ok(
                    &mut a,
                    t0 + GROWTH_INTERVAL * n + Duration::from_millis(i),
                    20,
                );
            }
        }
        assert_eq!(a.limit(), 9, "4 × 1.35³ = 9.8");
        let t = t0 + GROWTH_INTERVAL * 2 + Duration::from_millis(30);
        a.on_congestion(t, t);
        assert!(!a.in_slow_start());
        assert_eq!(a.limit(), 1);
        assert!((7.2..7.3).contains(&a.cut_from), "{}", a.cut_from);
        // More refusals within the window: still paused, same aim.
        let t = t + Duration::from_millis(30);
        a.on_congestion(t, t);
        assert_eq!(a.limit(), 1);
        // One interval of good answers: back to 85 % of 7.29.
        let mut t = t;
        for _ in 0..20 {
            t += GROWTH_INTERVAL / 20;
            ok(&mut a, t, 20);
        }
        assert_eq!(a.limit(), 6, "6.2");
        // Then as after any cut: towards 7.29, one slot per interval at most.
        for _ in 0..20 {
            t += GROWTH_INTERVAL / 20;
            ok(&mut a, t, 20);
        }
        assert_eq!(a.limit(), 7);
    }

    /// Where the quota's window was full of good answers, the aim after slow start is what
    /// they sustained (Little's law), never more than the limit was.
    #[test]
    fn what_the_quota_sustained_is_the_good_answers_concurrency() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut a = Aimd::steady(32, 1, 64);
        // 400 answers of 50 ms over the last second: 20 calls in flight on average.
        for i in 0..400 {
            ok(&mut a, t0 + Duration::from_micros(2500 * i), 50);
        }
        let now = t0 + Duration::from_secs(1);
        assert!(
            (19.5..20.5).contains(&a.sustained(now)),
            "{}",
            a.sustained(now)
        );
        // A second later, without answers, nothing is sustained.
        assert_eq!(
            a.sustained(now + QUOTA_WINDOW + Duration::from_millis(60)),
            0.0
        );
    }

    #[test]
    fn grows_one_slot_per_window_but_no_faster_than_the_interval() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut a = Aimd::steady(4, 1, 64);
        // A whole window of successes (a little more than `limit`, as the limit grows with
        // them), but within a few milliseconds.
        for i in 0..5 {
            ok(&mut a, t0 + Duration::from_millis(i), 1);
        }
        assert_eq!(a.limit(), 4, "no faster than one slot per GROWTH_INTERVAL");
        // The same window spread over two seconds: one slot.
        let mut b = Aimd::steady(4, 1, 64);
        for i in 0..5 {
            ok(&mut b, t0 + GROWTH_INTERVAL * (i + 1), 1);
        }
        assert_eq!(b.limit(), 5);
    }

    #[test]
    fn climbs_back_quickly_towards_where_it_was_cut() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut a = Aimd::steady(20, 1, 64);
        a.on_congestion(t0, t0);
        assert_eq!(a.limit(), 10);
        // One interval's worth of successes, spread over it: most of the way back (plain
        // additive increase would add one slot).
        let mut t = t0;
        for _ in 0..10 {
            t += GROWTH_INTERVAL / 10;
            ok(&mut a, t, 20);
        }
        assert!((12..=15).contains(&a.limit()), "{}", a.limit());
        // Near the old limit, growth is back to one slot per interval.
        for _ in 0..60 {
            t += GROWTH_INTERVAL / 10;
            ok(&mut a, t, 20);
        }
        assert!((19..=22).contains(&a.limit()), "{}", a.limit());
    }

    /// Past slow start, a refusal after a window of good answers brings the limit down to
    /// just below what those answers sustained (not to half), and where the quota ran out is
    /// that level: past it the limit probes a slot per quota window.
    #[test]
    fn a_cut_comes_down_to_what_the_quota_sustained_then_probes_slowly() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut a = Aimd::steady(10, 1, 64);
        // A second of answers taking 20 ms, 400 of them: 8 calls in flight on average.
        for i in 0..400 {
            a.recent.push_back((
                t0 + Duration::from_micros(2_500 * i),
                Duration::from_millis(20),
            ));
        }
        let now = t0 + Duration::from_millis(1_000);
        a.on_congestion(now, now);
        assert_eq!(a.limit(), 7, "8 × 0.92, not 10 / 2");
        assert!((a.cut_from - 8.0).abs() < 0.1, "{}", a.cut_from);
        // Back to 8 within an interval's answers, then a slot per second at most.
        let mut t = now;
        for _ in 0..20 {
            t += GROWTH_INTERVAL / 20;
            ok(&mut a, t, 20);
        }
        assert_eq!(a.limit(), 8);
        for _ in 0..20 {
            t += GROWTH_INTERVAL / 20;
            ok(&mut a, t, 20);
        }
        assert_eq!(
            a.limit(),
            8,
            "past where it ran out: no slot within one interval"
        );
        for _ in 0..60 {
            t += GROWTH_INTERVAL / 20;
            ok(&mut a, t, 20);
        }
        assert_eq!(a.limit(), 9, "a slot per quota window");
    }

    #[test]
    fn cuts_once_per_round_and_never_below_min() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut a = Aimd::steady(20, 1, 64);
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
        fn stays_within_bounds(ops in proptest::collection::vec((any::<bool>(), 0u64..2000, 0u64..100), 0..500), init in 0usize..100) {
            let mut a = Aimd::new(init, 1, 32);
            let mut now = Instant::now() + Duration::from_secs(1);
            for (up, gap_ms, took_ms) in ops {
                let sent = now;
                now += Duration::from_millis(gap_ms);
                if up {
                    a.on_success(sent - Duration::from_millis(took_ms), now);
                } else {
                    a.on_congestion(sent, now);
                }
                prop_assert!((1..=32).contains(&a.limit()));
            }
        }
    }
}
