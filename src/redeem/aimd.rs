//! Adaptive concurrency (AIMD, as TCP does): grow by about one slot per window of calls that
//! went well, halve when WeChat says "slow down" (45009, 45011, 429) or calls time out. The
//! daemon is never told WeChat's limit; it finds it. Pure.

#[derive(Debug, Clone)]
pub struct Aimd {
    limit: f64,
    min: f64,
    max: f64,
}

impl Aimd {
    pub fn new(initial: usize, min: usize, max: usize) -> Self {
        let (min, max) = (min.max(1) as f64, max.max(1) as f64);
        Self {
            limit: (initial as f64).clamp(min, max),
            min,
            max,
        }
    }

    /// Calls that may be in flight now.
    pub fn limit(&self) -> usize {
        self.limit.floor() as usize
    }

    /// A call went well: additive increase (+1 per `limit` successes).
    pub fn on_success(&mut self) {
        self.limit = (self.limit + 1.0 / self.limit).min(self.max);
    }

    /// WeChat pushed back: multiplicative decrease.
    pub fn on_congestion(&mut self) {
        self.limit = (self.limit / 2.0).max(self.min);
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
    fn grows_additively_and_halves() {
        let mut a = Aimd::new(4, 1, 64);
        for _ in 0..4 {
            a.on_success();
        }
        assert_eq!(a.limit(), 4, "not yet a whole window");
        for _ in 0..8 {
            a.on_success();
        }
        assert!(a.limit() >= 6);
        a.on_congestion();
        assert_eq!(a.limit(), 3);
        for _ in 0..10 {
            a.on_congestion();
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
        fn stays_within_bounds(ops in proptest::collection::vec(any::<bool>(), 0..500), init in 0usize..100) {
            let mut a = Aimd::new(init, 1, 32);
            for up in ops {
                if up { a.on_success() } else { a.on_congestion() }
                prop_assert!((1..=32).contains(&a.limit()));
            }
        }
    }
}
