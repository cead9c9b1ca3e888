//! All of `redeemd fleet`'s `/metrics`: what it counts in memory, and the per-till series
//! read from the read model at scrape time.

use super::read_model::TillView;
use crate::clock::Millis;
use crate::metrics::{escape_label, header as help};
use std::collections::BTreeMap;
use std::fmt::Write as _;
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
    /// WeChat Pay notifications made durable, by event type.
    notified: Mutex<BTreeMap<String, u64>>,
    /// Notifications refused or not made durable, by reason.
    notify_refused: Mutex<BTreeMap<&'static str, u64>>,
    /// Product-coupon confirms and registry skips, by outcome.
    confirms: Mutex<BTreeMap<&'static str, u64>>,
    /// Coupons in the registry plus one, as the hub last said (0: not known, no registry).
    registered: AtomicU64,
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

    pub fn set_registered(&self, n: u64) {
        self.registered
            .store(n.saturating_add(1), Ordering::Relaxed);
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

    /// A notification made durable (published and acknowledged).
    pub fn count_notify(&self, event_type: &str) {
        if let Ok(mut m) = self.notified.lock() {
            *m.entry(event_type.to_string()).or_default() += 1;
        }
    }

    /// A notification refused (`reason`: `wechatpay::notify::Refused::reason`, or
    /// `not_recorded` when the hub did not acknowledge it in time).
    pub fn count_notify_refused(&self, reason: &'static str) {
        if let Ok(mut m) = self.notify_refused.lock() {
            *m.entry(reason).or_default() += 1;
        }
    }

    pub fn registered(&self) -> Option<u64> {
        self.registered.load(Ordering::Relaxed).checked_sub(1)
    }

    /// A confirm's outcome (`confirmed`, `refused`, `retry`), or `unregistrable` for a
    /// notification the registry can never take.
    pub fn count_confirm(&self, outcome: &'static str) {
        if let Ok(mut m) = self.confirms.lock() {
            *m.entry(outcome).or_default() += 1;
        }
    }

    pub fn notify_refused(&self, reason: &str) -> u64 {
        self.notify_refused
            .lock()
            .map(|m| m.get(reason).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// All of the fleet's `/metrics`: the read model's figures (its rows, each till's
    /// gauges as its last beat and events left them), then the in-memory series.
    pub fn render_all(&self, tills: &[TillView], rows: i64, outside: i64, now: Millis) -> String {
        let mut out = String::new();
        help(
            &mut out,
            "redeemd_fleet_rows",
            "gauge",
            "Rows in the read model.",
        );
        let _ = writeln!(out, "redeemd_fleet_rows {rows}");
        help(
            &mut out,
            "redeemd_fleet_redeemed_outside",
            "gauge",
            "Codes WeChat Pay reported used outside the chain's tills (no till row accounts for the use) and not given back.",
        );
        let _ = writeln!(out, "redeemd_fleet_redeemed_outside {outside}");
        let series: [Series; 7] = [
            (
                "redeemd_fleet_till_backlog",
                "Rows waiting for WeChat at the till, as its last beat said.",
                |t, _| t.backlog.map(|v| v as f64),
            ),
            (
                "redeemd_fleet_till_review",
                "Rows waiting for a person at the till, as its last beat said.",
                |t, _| t.review.map(|v| v as f64),
            ),
            (
                "redeemd_fleet_till_outbox",
                "Row versions the till has not yet published to its store, as its last beat said.",
                |t, _| t.outbox.map(|v| v as f64),
            ),
            (
                "redeemd_fleet_till_stale",
                "1 when the till's last beat is older than stale_after (or it never beat).",
                |t, _| Some(f64::from(u8::from(t.stale))),
            ),
            (
                "redeemd_fleet_till_beat_age_seconds",
                "Seconds since the till's last beat (by the till's clock).",
                |t, now| t.last_beat_ms.map(|b| (now - b).max(0) as f64 / 1000.0),
            ),
            (
                "redeemd_fleet_events_lag_seconds",
                "How late the till's newest row event reached HQ.",
                |t, _| t.events_lag_seconds,
            ),
            (
                "redeemd_fleet_till_name_clash",
                "1 when another store has a till of this name (names must be unique in the merchant).",
                |t, _| Some(f64::from(u8::from(t.name_clash))),
            ),
        ];
        for (name, text, pick) in series {
            help(&mut out, name, "gauge", text);
            for t in tills {
                if let Some(v) = pick(t, now) {
                    let _ = writeln!(
                        out,
                        "{name}{{store=\"{}\",till=\"{}\"}} {v}",
                        escape_label(&t.store),
                        escape_label(&t.till)
                    );
                }
            }
        }
        help(
            &mut out,
            "redeemd_fleet_redeemed_today",
            "gauge",
            "Rows redeemed today (HQ's local day), by store and till.",
        );
        for t in tills {
            let _ = writeln!(
                out,
                "redeemd_fleet_redeemed_today{{store=\"{}\",till=\"{}\"}} {}",
                escape_label(&t.store),
                escape_label(&t.till),
                t.redeemed_today
            );
        }
        self.render(&mut out);
        out
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
        if let Ok(m) = self.notified.lock() {
            header(
                out,
                "redeemd_notify_total",
                "counter",
                "WeChat Pay notifications made durable since start, by event type.",
            );
            for (event_type, n) in m.iter() {
                let _ = writeln!(
                    out,
                    "redeemd_notify_total{{event_type=\"{}\"}} {n}",
                    crate::metrics::escape_label(event_type)
                );
            }
        }
        header(
            out,
            "redeemd_notify_refused_total",
            "counter",
            "WeChat Pay notifications refused since start, by reason (too_large, missing_header, unknown_serial, stale, signtest, bad_signature, malformed, undecryptable, not_recorded).",
        );
        for reason in crate::wechatpay::notify::Refused::ALL
            .iter()
            .map(|r| r.reason())
            .chain([NOT_RECORDED])
        {
            let _ = writeln!(
                out,
                "redeemd_notify_refused_total{{reason=\"{reason}\"}} {}",
                self.notify_refused(reason)
            );
        }
        if let Some(n) = self.registered() {
            header(
                out,
                "redeemd_product_coupons_registered",
                "gauge",
                "Product coupons in the registry (redeemd_product_coupons), as the hub last said.",
            );
            let _ = writeln!(out, "redeemd_product_coupons_registered {n}");
        }
        if let Ok(m) = self.confirms.lock() {
            header(
                out,
                "redeemd_product_coupon_confirms_total",
                "counter",
                "Product-coupon confirms since start, by outcome (confirmed, refused, retry), and notifications the registry can never take (unregistrable).",
            );
            for outcome in CONFIRM_OUTCOMES {
                let _ = writeln!(
                    out,
                    "redeemd_product_coupon_confirms_total{{outcome=\"{outcome}\"}} {}",
                    m.get(outcome).copied().unwrap_or(0)
                );
            }
        }
    }
}

/// The outcomes `redeemd_product_coupon_confirms_total` is counted by.
const CONFIRM_OUTCOMES: [&str; 4] = ["confirmed", "refused", "retry", "unregistrable"];

/// A trusted notification the hub did not acknowledge in time: not refused, but not kept
/// either, so WeChat Pay is asked to send it again.
pub const NOT_RECORDED: &str = "not_recorded";

/// A per-till gauge: its name, its help, and its value.
type Series = (
    &'static str,
    &'static str,
    fn(&TillView, Millis) -> Option<f64>,
);
