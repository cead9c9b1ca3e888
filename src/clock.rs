//! Wall-clock time, injected so that tests can control it.
//!
//! Timestamps in the ledger are milliseconds since the Unix epoch (UTC): they sort, compare
//! and subtract without parsing. They are rendered as RFC 3339 with the till's local offset
//! only at the edges (log output, API replies).

use chrono::{DateTime, Local, SecondsFormat, TimeZone};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> Millis;
}

/// The system's real-time clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        chrono::Utc::now().timestamp_millis()
    }
}

/// A clock that only moves when told to; for unit tests.
#[derive(Debug, Default, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(start: Millis) -> Self {
        Self(Arc::new(AtomicI64::new(start)))
    }
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

pub type SharedClock = Arc<dyn Clock>;

/// RFC 3339 in the till's local offset, millisecond precision: `2026-11-22T14:03:05.120+08:00`.
pub fn rfc3339(ms: Millis) -> String {
    local(ms).to_rfc3339_opts(SecondsFormat::Millis, false)
}

/// RFC 3339 in local offset, whole seconds, as WeChat Pay's `use_time` wants it.
pub fn rfc3339_seconds(ms: Millis) -> String {
    local(ms).to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// `HH:MM` in the till's local time, for a cashier.
pub fn hh_mm(ms: Millis) -> String {
    local(ms).format("%H:%M").to_string()
}

fn local(ms: Millis) -> DateTime<Local> {
    Local
        .timestamp_millis_opt(ms)
        .single()
        .unwrap_or_else(|| DateTime::<Local>::from(DateTime::UNIX_EPOCH))
}
