//! What the daemon tells its supervisor: systemd's readiness, status and watchdog, and
//! WeChat's daily quotas for the gauges; and the signals that stop it.

use crate::ledger::{Ledger, queries};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::wechat::card::CardApi;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// Reads WeChat's daily quotas for the paths redeemd calls, for the gauges: at start, then
/// hourly (each read is itself a call, so no more often).
pub(super) async fn quota_loop(
    card: Arc<CardApi>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        for (path, q) in card.quotas().await {
            match q {
                Ok(q) => metrics.set_quota(path, q.daily_limit, q.used, q.remain),
                Err(e) => {
                    tracing::debug!(event = "quota_unread", path, error = %e, "WeChat's quota for a path could not be read")
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = stop.changed() => return,
        }
    }
}
/// `STATUS=` for systemd: the backlog, WeChat's reachability and the scanners.
pub(super) async fn status_line(ledger: &Ledger, metrics: &Metrics) -> String {
    let pending = ledger
        .call(|c| queries::pending_count(c))
        .await
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    let apis: Vec<String> = metrics
        .apis()
        .into_iter()
        .map(|(api, ok)| format!("{api} {}", if ok { "reachable" } else { "unreachable" }))
        .collect();
    let scanners: Vec<String> = metrics
        .scanners()
        .into_iter()
        .map(|(s, up)| format!("{s} {}", if up { "up" } else { "down" }))
        .collect();
    let quota = if metrics.quota_exhausted() {
        "WeChat daily API quota exhausted; "
    } else {
        ""
    };
    format!(
        "{quota}{pending} pending; WeChat: {}; scanners: {}",
        if apis.is_empty() {
            "not called yet".to_string()
        } else {
            apis.join(", ")
        },
        if scanners.is_empty() {
            "none open".to_string()
        } else {
            scanners.join(", ")
        }
    )
}
/// Proves health to systemd: pings the watchdog only after the ledger took a write probe
/// and the dispatcher is known to run, so a wedged daemon gets restarted.
pub(super) async fn health_loop(
    notifier: Arc<Notifier>,
    ledger: Ledger,
    metrics: Arc<Metrics>,
    dispatcher_alive: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) {
    let watchdog = notifier.watchdog_interval();
    let every = watchdog.unwrap_or(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let health = ledger.health().await;
        let writable = health.is_ok();
        let alive = dispatcher_alive.load(Ordering::SeqCst);
        let mut status = status_line(&ledger, &metrics).await;
        if let Err(why) = &health {
            status = format!("ledger {why}; {status}");
        }
        if writable && alive && watchdog.is_some() {
            notifier.send(&format!("WATCHDOG=1\nSTATUS={status}"));
        } else {
            if !(writable && alive) {
                tracing::error!(
                    event = "unhealthy",
                    ledger = health.as_ref().err().map(String::as_str),
                    ledger_writable = writable,
                    dispatcher_alive = alive,
                    "health check failed; not pinging the watchdog"
                );
            }
            notifier.send(&format!("STATUS={status}"));
        }
    }
}
/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called, not when
/// the future is first polled: a SIGTERM that arrives just after "ready" must still stop the
/// daemon gracefully rather than kill it. SIGHUP (which would otherwise kill it) reloads
/// nothing and says so: the AppSecret is re-read at every token fetch anyway, and the
/// config and keys take a restart.
pub fn termination_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    );
    async move {
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = handlers else {
            // Without signal handlers the default action (terminate) still applies.
            std::future::pending::<()>().await;
            return;
        };
        loop {
            tokio::select! {
                _ = term.recv() => return,
                _ = int.recv() => return,
                _ = hup.recv() => tracing::info!(
                    event = "sighup",
                    "SIGHUP: nothing is reloaded; the AppSecret file is re-read at every token fetch, and a changed config or key takes a restart (systemctl restart redeemd)"
                ),
            }
        }
    }
}
