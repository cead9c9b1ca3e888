//! Counters the daemon keeps in memory for `/metrics` (Prometheus text format). Counts of
//! redemptions come from the ledger itself at scrape time; only what the ledger does not
//! record lives here.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Upper bounds (seconds) of the API call latency histogram.
pub const BUCKETS: [f64; 9] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Debug, Default)]
pub struct Metrics {
    /// (api, outcome) → latency histogram.
    calls: Mutex<BTreeMap<(String, String), Histogram>>,
    /// scanner → connected.
    scanners: Mutex<BTreeMap<String, bool>>,
    /// api → the last try got a healthy answer.
    apis: Mutex<BTreeMap<String, bool>>,
    /// api → calls allowed in flight now (AIMD).
    concurrency: Mutex<BTreeMap<String, usize>>,
    /// APIs paused until WeChat's daily reset (45009: the daily quota is used up).
    quota_exhausted: Mutex<BTreeMap<String, bool>>,
    /// path → (daily_limit, used, remain), from `openapi/quota/get`.
    quotas: Mutex<BTreeMap<String, (i64, i64, i64)>>,
    /// Void requests by what they did (`model::void::VoidPlan`, `already`, `refused`).
    voids: Mutex<BTreeMap<String, u64>>,
    /// Store-guard claims by result (`taken`, `ours`, `elsewhere`, `abandoned`,
    /// `unavailable`); `None` without `[store]`.
    claims: Mutex<Option<BTreeMap<String, u64>>>,
    /// Row versions the store's stream acknowledged (`None`: no `[store]`).
    events_published: Mutex<Option<u64>>,
    /// When WeChat last gave a healthy answer (Unix ms; 0: not since the start).
    last_success: std::sync::atomic::AtomicI64,
}

impl Metrics {
    pub fn observe_call(&self, api: &str, outcome: &str, seconds: f64) {
        let Ok(mut calls) = self.calls.lock() else {
            return;
        };
        let h = calls.entry((api.into(), outcome.into())).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.buckets[i] += 1;
            }
        }
        h.sum += seconds;
        h.count += 1;
    }

    pub fn set_scanner(&self, scanner: &str, connected: bool) {
        if let Ok(mut s) = self.scanners.lock() {
            s.insert(scanner.into(), connected);
        }
    }

    pub fn set_api_healthy(&self, api: &str, healthy: bool) {
        if healthy {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            self.last_success
                .store(now, std::sync::atomic::Ordering::Relaxed);
        }
        if let Ok(mut s) = self.apis.lock() {
            s.insert(api.into(), healthy);
        }
    }

    /// The chain's publisher runs: its counter is shown from now on.
    pub fn enable_events(&self) {
        if let Ok(mut e) = self.events_published.lock() {
            e.get_or_insert(0);
        }
    }

    pub fn events_enabled(&self) -> bool {
        self.events_published.lock().is_ok_and(|e| e.is_some())
    }

    pub fn count_events_published(&self, n: u64) {
        if let Ok(mut e) = self.events_published.lock() {
            *e.get_or_insert(0) += n;
        }
    }

    /// When WeChat last gave a healthy answer (Unix ms), since this start.
    pub fn last_success(&self) -> Option<i64> {
        let at = self.last_success.load(std::sync::atomic::Ordering::Relaxed);
        (at > 0).then_some(at)
    }

    pub fn set_quota_exhausted(&self, api: &str, exhausted: bool) {
        if let Ok(mut s) = self.quota_exhausted.lock() {
            s.insert(api.into(), exhausted);
        }
    }

    /// Whether some API's daily quota is used up.
    pub fn quota_exhausted(&self) -> bool {
        self.quota_exhausted
            .lock()
            .map(|s| s.values().any(|x| *x))
            .unwrap_or(false)
    }

    pub fn set_quota(&self, path: &str, limit: i64, used: i64, remain: i64) {
        if let Ok(mut q) = self.quotas.lock() {
            q.insert(path.into(), (limit, used, remain));
        }
    }

    pub fn count_void(&self, result: &str) {
        if let Ok(mut v) = self.voids.lock() {
            *v.entry(result.into()).or_default() += 1;
        }
    }

    /// Turns the store-guard series on (a till with `[store]`).
    pub fn enable_store_guard(&self) {
        if let Ok(mut c) = self.claims.lock() {
            c.get_or_insert_with(BTreeMap::new);
        }
    }

    pub fn count_claim(&self, result: &str) {
        if let Ok(mut c) = self.claims.lock() {
            *c.get_or_insert_with(BTreeMap::new)
                .entry(result.into())
                .or_default() += 1;
        }
    }

    pub fn set_concurrency(&self, api: &str, limit: usize) {
        if let Ok(mut s) = self.concurrency.lock() {
            s.insert(api.into(), limit);
        }
    }

    pub fn concurrency(&self, api: &str) -> Option<usize> {
        self.concurrency.lock().ok()?.get(api).copied()
    }

    /// Seconds spent in API calls so far, all APIs and outcomes.
    pub fn call_seconds_total(&self) -> f64 {
        self.calls
            .lock()
            .map(|c| c.values().map(|h| h.sum).sum())
            .unwrap_or(0.0)
    }

    pub fn apis(&self) -> BTreeMap<String, bool> {
        self.apis.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn scanners(&self) -> BTreeMap<String, bool> {
        self.scanners.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// All of `/metrics`: what the ledger says, then the in-memory series.
    pub fn render_all(&self, ledger: &LedgerFigures, token_refreshes: u64) -> String {
        let mut out = String::new();
        render_ledger(&mut out, ledger);
        self.render(&mut out, token_refreshes);
        out
    }

    /// Writes the in-memory series.
    pub fn render(&self, out: &mut String, token_refreshes: u64) {
        if let Ok(q) = self.quotas.lock()
            && !q.is_empty()
        {
            for (name, help, pick) in [
                (
                    "redeemd_wechat_quota_daily_limit",
                    "WeChat's daily call quota per path (openapi/quota/get, read hourly).",
                    0,
                ),
                (
                    "redeemd_wechat_quota_used",
                    "Calls used today per path, as WeChat counts them.",
                    1,
                ),
                (
                    "redeemd_wechat_quota_remaining",
                    "Calls left today per path, as WeChat counts them.",
                    2,
                ),
            ] {
                header(out, name, "gauge", help);
                for (path, v) in q.iter() {
                    let n = [v.0, v.1, v.2][pick];
                    let _ = writeln!(out, "{name}{{path=\"{}\"}} {n}", escape_label(path));
                }
            }
        }
        header(
            out,
            "redeemd_voids_total",
            "counter",
            &format!(
                "Void requests since start, by what they did ({}).",
                crate::model::void::RESULTS.join(", ")
            ),
        );
        if let Ok(v) = self.voids.lock() {
            for (result, n) in v.iter() {
                let _ = writeln!(out, "redeemd_voids_total{{result=\"{result}\"}} {n}");
            }
        }
        if let Ok(c) = self.claims.lock()
            && let Some(c) = c.as_ref()
        {
            header(
                out,
                "redeemd_claims_total",
                "counter",
                "Store-guard claims since start, by result (taken, ours, elsewhere, abandoned, unavailable).",
            );
            for (result, n) in c.iter() {
                let _ = writeln!(out, "redeemd_claims_total{{result=\"{result}\"}} {n}");
            }
            header(
                out,
                "redeemd_guard_unavailable_total",
                "counter",
                "Scans the store guard did not answer for within claim_timeout (the till went on alone).",
            );
            let n = c.get("unavailable").copied().unwrap_or(0);
            let _ = writeln!(out, "redeemd_guard_unavailable_total {n}");
        }
        if let Ok(e) = self.events_published.lock()
            && let Some(n) = *e
        {
            header(
                out,
                "redeemd_events_published_total",
                "counter",
                "Row versions the store's stream acknowledged since start (the chain's outbox).",
            );
            let _ = writeln!(out, "redeemd_events_published_total {n}");
        }
        header(
            out,
            "redeemd_api_call_duration_seconds",
            "histogram",
            "WeChat API call latency by api and outcome.",
        );
        if let Ok(calls) = self.calls.lock() {
            for ((api, outcome), h) in calls.iter() {
                let labels = format!("api=\"{api}\",outcome=\"{outcome}\"");
                for (i, bound) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "redeemd_api_call_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {}",
                        h.buckets[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "redeemd_api_call_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(
                    out,
                    "redeemd_api_call_duration_seconds_sum{{{labels}}} {}",
                    h.sum
                );
                let _ = writeln!(
                    out,
                    "redeemd_api_call_duration_seconds_count{{{labels}}} {}",
                    h.count
                );
            }
        }
        header(
            out,
            "redeemd_token_refreshes_total",
            "counter",
            "Access tokens fetched.",
        );
        let _ = writeln!(out, "redeemd_token_refreshes_total {token_refreshes}");
        header(
            out,
            "redeemd_concurrency",
            "gauge",
            "Calls allowed in flight now, per API (adaptive).",
        );
        for (api, n) in self
            .concurrency
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
        {
            let _ = writeln!(out, "redeemd_concurrency{{api=\"{api}\"}} {n}");
        }
        header(
            out,
            "redeemd_wechat_quota_exhausted",
            "gauge",
            "1 while WeChat's daily API quota is used up (45009) and calls wait for its reset.",
        );
        let _ = writeln!(
            out,
            "redeemd_wechat_quota_exhausted {}",
            u8::from(self.quota_exhausted())
        );
        header(
            out,
            "redeemd_scanner_connected",
            "gauge",
            "1 while the scanner's device is open.",
        );
        for (name, up) in self.scanners() {
            let _ = writeln!(
                out,
                "redeemd_scanner_connected{{scanner=\"{}\"}} {}",
                escape_label(&name),
                u8::from(up)
            );
        }
    }
}

/// What the ledger says, for `/metrics`: read from the ledger by the API, rendered here
/// with everything else.
pub struct LedgerFigures {
    /// Rows by api (`None`: refused at the till) and state.
    pub counts: Vec<(Option<String>, String, i64)>,
    pub pending: i64,
    /// The scan time of the oldest row waiting for WeChat.
    pub oldest_pending: Option<i64>,
    pub now: i64,
    /// The chain's outbox, on a till that publishes to one.
    pub outbox: Option<i64>,
}

fn render_ledger(out: &mut String, f: &LedgerFigures) {
    use std::fmt::Write;
    header(
        out,
        "redeemd_redemptions_total",
        "gauge",
        "Ledger rows by api and state.",
    );
    let mut by: std::collections::BTreeMap<(String, String), i64> = Default::default();
    for (api, state, n) in &f.counts {
        *by.entry((api.clone().unwrap_or_else(|| "none".into()), state.clone()))
            .or_default() += *n;
    }
    for ((api, state), n) in by {
        let _ = writeln!(
            out,
            "redeemd_redemptions_total{{api=\"{api}\",state=\"{state}\"}} {n}"
        );
    }
    header(
        out,
        "redeemd_pending",
        "gauge",
        "Redemptions waiting for WeChat.",
    );
    let _ = writeln!(out, "redeemd_pending {}", f.pending);
    header(
        out,
        "redeemd_oldest_pending_age_seconds",
        "gauge",
        "Age of the oldest redemption waiting for WeChat.",
    );
    let age = f
        .oldest_pending
        .map(|t| (f.now - t).max(0) as f64 / 1000.0)
        .unwrap_or(0.0);
    let _ = writeln!(out, "redeemd_oldest_pending_age_seconds {age}");
    if let Some(outbox) = f.outbox {
        header(
            out,
            "redeemd_events_outbox",
            "gauge",
            "Rows whose latest version the store's stream has not acknowledged (the chain's outbox).",
        );
        let _ = writeln!(out, "redeemd_events_outbox {outbox}");
    }
}

/// Escapes a Prometheus label value.
pub fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The `# HELP` and `# TYPE` lines that open a series in the Prometheus text format.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        m.observe_call("card", "ok", 0.03);
        m.observe_call("card", "ok", 3.0);
        m.set_scanner("front", true);
        let mut s = String::new();
        m.render(&mut s, 2);
        assert!(s.contains(
            "redeemd_api_call_duration_seconds_bucket{api=\"card\",outcome=\"ok\",le=\"0.05\"} 1"
        ));
        assert!(s.contains(
            "redeemd_api_call_duration_seconds_bucket{api=\"card\",outcome=\"ok\",le=\"5\"} 2"
        ));
        assert!(
            s.contains("redeemd_api_call_duration_seconds_count{api=\"card\",outcome=\"ok\"} 2")
        );
        assert!(s.contains("redeemd_token_refreshes_total 2"));
        assert!(s.contains("redeemd_scanner_connected{scanner=\"front\"} 1"));
        assert!(s.contains("redeemd_wechat_quota_exhausted 0"));
        m.set_quota_exhausted("card", true);
        let mut s = String::new();
        m.render(&mut s, 2);
        assert!(s.contains("redeemd_wechat_quota_exhausted 1"));
    }

    #[test]
    fn all_of_metrics_is_rendered_in_one_place() {
        let m = Metrics::default();
        let figures = LedgerFigures {
            counts: vec![
                (Some("card".into()), "redeemed".into(), 3),
                (Some("card".into()), "redeemed".into(), 2),
                (None, "cancelled".into(), 1),
            ],
            pending: 4,
            oldest_pending: Some(1_000),
            now: 3_500,
            outbox: None,
        };
        let s = m.render_all(&figures, 0);
        assert!(s.contains("redeemd_redemptions_total{api=\"card\",state=\"redeemed\"} 5"));
        assert!(s.contains("redeemd_redemptions_total{api=\"none\",state=\"cancelled\"} 1"));
        assert!(s.contains("redeemd_pending 4"));
        assert!(s.contains("redeemd_oldest_pending_age_seconds 2.5"));
        assert!(
            !s.contains("redeemd_events_outbox"),
            "no outbox without [store]"
        );
        assert!(s.contains("redeemd_token_refreshes_total 0"));
        let s = m.render_all(
            &LedgerFigures {
                outbox: Some(7),
                ..figures
            },
            0,
        );
        assert!(s.contains("redeemd_events_outbox 7"));
    }
}
