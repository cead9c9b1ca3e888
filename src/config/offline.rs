//! `[retry]` and `[offline]`: the retry schedule, and when a till may accept a code
//! with WeChat unreachable.

use crate::duration;
use serde::Deserialize;
use std::time::Duration;

/// The longest a scan may wait for WeChat before the till gets an offline answer.
pub const MAX_ONLINE_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    #[serde(default = "default_base_delay", deserialize_with = "duration::de")]
    pub base_delay: Duration,
    #[serde(default = "default_max_delay", deserialize_with = "duration::de")]
    pub max_delay: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            base_delay: default_base_delay(),
            max_delay: default_max_delay(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfflineConfig {
    /// Off unless the merchant opts in: an offline acceptance is a risk the merchant takes.
    #[serde(default)]
    pub accept: bool,
    #[serde(default = "default_online_wait", deserialize_with = "duration::de")]
    pub online_wait: Duration,
    #[serde(default = "default_max_pending")]
    pub max_pending: u32,
    #[serde(default = "default_max_age", deserialize_with = "duration::de")]
    pub max_age: Duration,
    /// Fen: no single offline acceptance worth more (none: no limit).
    #[serde(default)]
    pub max_value: Option<i64>,
    /// Fen: the face value of all unconfirmed offline acceptances together (none: no limit).
    #[serde(default)]
    pub max_pending_value: Option<i64>,
    /// A code whose value is not known counts as above `max_value` unless this is true.
    #[serde(default)]
    pub accept_unknown_value: bool,
    /// No offline acceptance while the store guard cannot answer (needs `[store]`).
    #[serde(default)]
    pub require_store_guard: bool,
}

impl Default for OfflineConfig {
    fn default() -> Self {
        Self {
            accept: false,
            online_wait: default_online_wait(),
            max_pending: default_max_pending(),
            max_age: default_max_age(),
            max_value: None,
            max_pending_value: None,
            accept_unknown_value: false,
            require_store_guard: false,
        }
    }
}

pub(super) fn default_base_delay() -> Duration {
    Duration::from_secs(1)
}

pub(super) fn default_max_delay() -> Duration {
    Duration::from_secs(60)
}

pub(super) fn default_online_wait() -> Duration {
    Duration::from_millis(1500)
}

pub(super) fn default_max_pending() -> u32 {
    500
}

pub(super) fn default_max_age() -> Duration {
    Duration::from_secs(72 * 3600)
}

/// `[retry]` and `[offline]`: durations that make sense together.
pub(super) fn check_retry_and_offline(
    retry: &RetryConfig,
    offline: &OfflineConfig,
    problems: &mut Vec<String>,
) {
    if retry.base_delay.is_zero() {
        problems.push("retry.base_delay: must be more than 0".into());
    }
    if retry.max_delay < retry.base_delay {
        problems.push("retry.max_delay: must not be less than retry.base_delay".into());
    }
    if offline.online_wait.is_zero() {
        problems.push("offline.online_wait: must be more than 0".into());
    } else if offline.online_wait > MAX_ONLINE_WAIT {
        problems.push(format!(
            "offline.online_wait: at most {} s (a cashier waits that long for every scan)",
            MAX_ONLINE_WAIT.as_secs()
        ));
    }
    for (key, v) in [
        ("max_value", offline.max_value),
        ("max_pending_value", offline.max_pending_value),
    ] {
        if v.is_some_and(|v| v < 0) {
            problems.push(format!("offline.{key}: fen, 0 or more"));
        }
    }
}
