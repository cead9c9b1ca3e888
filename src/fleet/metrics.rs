//! What `redeemd fleet` counts in memory; the per-till series come from the read model at
//! scrape time (see `http::metrics`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct FleetMetrics {
    applied: AtomicU64,
    unchanged: AtomicU64,
    /// Skipped messages by why (`unknown_version`, `malformed`).
    skipped: Mutex<BTreeMap<&'static str, u64>>,
    /// Messages the consumer has not delivered yet (from the last delivery's metadata);
    /// -1 before the first.
    pending: AtomicI64,
    /// store → its mirror of `redeemd_redeemed` exists.
    mirrors: Mutex<BTreeMap<String, bool>>,
}

impl FleetMetrics {
    pub fn count_applied(&self, changed: bool) {
        let c = if changed {
            &self.applied
        } else {
            &self.unchanged
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_skipped(&self, why: &'static str) {
        if let Ok(mut s) = self.skipped.lock() {
            *s.entry(why).or_default() += 1;
        }
    }

    pub fn skipped(&self, why: &str) -> u64 {
        self.skipped
            .lock()
            .map(|s| s.get(why).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    pub fn set_pending(&self, n: u64) {
        self.pending
            .store(i64::try_from(n).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    pub fn pending(&self) -> Option<u64> {
        u64::try_from(self.pending.load(Ordering::Relaxed)).ok()
    }

    pub fn set_mirror(&self, store: &str, there: bool) {
        if let Ok(mut m) = self.mirrors.lock() {
            m.insert(store.to_string(), there);
        }
    }

    pub fn render(&self, out: &mut String) {
        use crate::metrics::header;
        use std::fmt::Write;
        header(
            out,
            "redeemd_fleet_events_applied_total",
            "counter",
            "Row events that changed the read model since start.",
        );
        let _ = writeln!(
            out,
            "redeemd_fleet_events_applied_total {}",
            self.applied.load(Ordering::Relaxed)
        );
        header(
            out,
            "redeemd_fleet_events_repeated_total",
            "counter",
            "Row events already applied (a republish, a replay) that changed nothing.",
        );
        let _ = writeln!(
            out,
            "redeemd_fleet_events_repeated_total {}",
            self.unchanged.load(Ordering::Relaxed)
        );
        header(
            out,
            "redeemd_fleet_events_skipped_total",
            "counter",
            "Messages skipped since start, by reason (unknown_version, malformed).",
        );
        for why in ["unknown_version", "malformed"] {
            let _ = writeln!(
                out,
                "redeemd_fleet_events_skipped_total{{reason=\"{why}\"}} {}",
                self.skipped(why)
            );
        }
        if let Some(p) = self.pending() {
            header(
                out,
                "redeemd_fleet_events_pending",
                "gauge",
                "Messages in REDEEMD_CHAIN the read model has not taken yet.",
            );
            let _ = writeln!(out, "redeemd_fleet_events_pending {p}");
        }
        if let Ok(m) = self.mirrors.lock() {
            header(
                out,
                "redeemd_fleet_store_mirror",
                "gauge",
                "1 when the store's domain has its mirror of redeemd_redeemed (the chain-wide offline check).",
            );
            for (store, there) in m.iter() {
                let _ = writeln!(
                    out,
                    "redeemd_fleet_store_mirror{{store=\"{}\"}} {}",
                    crate::metrics::escape_label(store),
                    u8::from(*there)
                );
            }
        }
    }
}
