//! Wiring: the ledger, the dispatcher, the scanner sources and the intake, started together
//! and stopped in order.

use crate::api::{self, ApiState, KeyedScan};
use crate::chain::publisher::{Publisher, TillParts};
use crate::check::{Loaded, PayKeys};
use crate::clock::{SharedClock, SystemClock};
use crate::config::{Config, WechatConfig, WechatPayConfig};
use crate::guard::bucket::ClaimBucket;
use crate::ledger::claims;
use crate::ledger::lock::LedgerLock;
use crate::ledger::note_file::NoteFile;
use crate::ledger::schema::OpenError;
use crate::ledger::{Ledger, LedgerError};
use crate::ledger::{queries, scans};
use crate::metrics::Metrics;
use crate::model::claim_key::CodeKey;
use crate::notify::Notifier;
use crate::outcome::{Bus, ScannerStatus};
use crate::redeem::aimd::reconnect_jitter;
use crate::redeem::catalog::Catalog;
use crate::redeem::dispatcher::Dispatcher;
use crate::redeem::intake::{Intake, Pending};
use crate::redeem::prefetch::Prefetcher;
use crate::redeem::store_guard::StoreGuard;
use crate::redeem::voids::VoidWorker;
use crate::redeem::{self, Ctx};
use crate::scanner::{self, SourceEvent};
use crate::wechat::card::CardApi;
use crate::wechat::pay::{PayApi, PayApiParts};
use crate::wechat::pay_sign::MerchantAuth;
use crate::wechat::token::{TokenManager, TokenSource};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration cannot work (exit code 78, EX_CONFIG).
    #[error("{0}")]
    Config(String),
    #[error("database: {0}")]
    Open(#[from] OpenError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("cannot start the HTTP client: {0}")]
    Http(String),
    /// The local API cannot listen where the config says.
    #[error("{0}")]
    Listen(String),
    /// Another daemon runs on this ledger.
    #[error("{0}")]
    InUse(String),
    /// The dispatcher panicked or stopped before it was told to: exit non-zero, so that
    /// systemd restarts the daemon.
    #[error("dispatcher failed: {0}")]
    Dispatcher(String),
}

/// The dispatcher task's end as the daemon's result: a panic is a failure, never a clean
/// stop.
fn dispatcher_result(
    joined: Result<Result<(), LedgerError>, tokio::task::JoinError>,
) -> Result<(), DaemonError> {
    match joined {
        Ok(r) => r.map_err(DaemonError::from),
        Err(e) => {
            tracing::error!(event = "dispatcher_failed", error = %e, "dispatcher task failed");
            Err(DaemonError::Dispatcher(e.to_string()))
        }
    }
}

/// Refuses, at start, the rows whose first read was never answered and that may not be
/// accepted offline (see `scans::refuse_unanswered`).
async fn refuse_unanswered(
    ledger: &Ledger,
    config: Arc<Config>,
    now: crate::clock::Millis,
    bus: &Bus,
) -> Result<(), DaemonError> {
    let refused = ledger
        .call(move |c| {
            let offline_allowed = |route: Option<i64>| {
                route
                    .and_then(|r| usize::try_from(r).ok())
                    .is_some_and(|r| config.offline_allowed(r))
            };
            scans::refuse_unanswered(c, &offline_allowed, now, now)
        })
        .await?;
    for row in refused {
        crate::outcome::log_settled(&row);
        let _ = bus.settled.send(row);
    }
    Ok(())
}

pub struct Daemon {
    config: Arc<Config>,
    ledger: Ledger,
    clock: SharedClock,
    bus: Bus,
    card: Option<Arc<CardApi>>,
    coupon: Option<Arc<PayApi>>,
    /// The HTTP API's bearer token, when one is configured.
    api_token: Option<Arc<str>>,
    /// Stop once every scanner source has ended (the demo's standard input closing).
    pub exit_when_sources_end: bool,
    /// The chain's claim secret, with `[store]`.
    code_key: Option<CodeKey>,
    /// This daemon alone runs on the ledger, while it lives.
    _lock: LedgerLock,
}

/// A store's tills spread the drain of their backlogs over this much time after an outage.
pub const DRAIN_JITTER_SPREAD_MS: u64 = 3000;

pub const USER_AGENT: &str = concat!("redeemd/", env!("CARGO_PKG_VERSION"));

impl Daemon {
    /// Builds the clients from what [`check::load`] read, and opens the ledger.
    pub fn new(loaded: Loaded) -> Result<Daemon, DaemonError> {
        let Loaded {
            config,
            pay_keys,
            api_token,
            code_key,
            ..
        } = loaded;
        // Before anything else: a second daemon must not touch the first one's socket.
        let lock = LedgerLock::take(&config.database).map_err(DaemonError::InUse)?;
        let clock: SharedClock = Arc::new(SystemClock);
        let card = config.wechat.as_ref().map(build_card).transpose()?;
        let coupon = match (&config.wechat_pay, pay_keys) {
            (Some(p), Some(keys)) => Some(build_pay(p, keys, clock.clone())?),
            (Some(_), None) => {
                return Err(DaemonError::Config(
                    "wechat_pay: its keys were not loaded".into(),
                ));
            }
            (None, _) => None,
        };
        let ledger = Ledger::open(&config.database)?;
        Ok(Daemon {
            api_token,
            config: Arc::new(config),
            ledger,
            clock,
            bus: Bus::new(),
            card,
            coupon,
            exit_when_sources_end: false,
            code_key,
            _lock: lock,
        })
    }

    /// The store guard, with `[store]`: connected in the background (a till starts with
    /// its store down).
    async fn store_guard(
        &self,
        metrics: &Arc<Metrics>,
    ) -> Result<Option<Arc<StoreGuard>>, DaemonError> {
        let (Some(store), Some(key)) = (&self.config.store, &self.code_key) else {
            return Ok(None);
        };
        let guard = ClaimBucket::connect(store, &self.config.till)
            .await
            .map_err(DaemonError::Config)?;
        tracing::info!(event = "store_guard", store = %store.name, servers = %store.nats_urls.join(","), "claiming every code in the store's NATS");
        let mut sg = StoreGuard::new(
            guard,
            key.clone(),
            &self.config.till,
            self.config.offline.online_wait,
            self.config.offline.require_store_guard,
            metrics.clone(),
            self.clock.clone(),
        );
        // The last run's notes that no row took go to the ledger, for the follower.
        match NoteFile::open(&self.config.database) {
            Ok((notes, left)) => {
                let now = self.clock.now_ms();
                let moved = self
                    .ledger
                    .call(move |c| claims::import_notes(c, &left))
                    .await?;
                if moved > 0 {
                    tracing::info!(
                        event = "claim_notes",
                        moved,
                        "claims the last run sent and never recorded: to settle"
                    );
                }
                match notes.compact(now) {
                    Ok(_) => sg = sg.with_notes(notes),
                    Err(e) => {
                        tracing::warn!(event = "claim_note_failed", error = %e, "cannot rewrite the claims file; claims are noted in the ledger")
                    }
                }
            }
            Err(e) => {
                tracing::warn!(event = "claim_note_failed", error = %e, "cannot open the claims file; claims are noted in the ledger")
            }
        }
        Ok(Some(Arc::new(sg)))
    }

    pub fn bus(&self) -> Bus {
        self.bus.clone()
    }

    /// Runs until `shutdown` resolves (or, with `exit_when_sources_end`, the sources end).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
        let config = self.config.clone();
        let (new_rows, new_rows_rx) = redeem::new_rows();
        // Two stop signals, so scanners stop first and the dispatcher keeps answering the
        // scans already read before it drains.
        let (stop_tx, stop_rx) = watch::channel(false);
        let (stop_sources_tx, stop_sources_rx) = watch::channel(false);
        let metrics = Arc::new(Metrics::default());
        let catalog = Arc::new(Catalog::load(&self.ledger).await?);
        let ctx = Ctx {
            ledger: self.ledger.clone(),
            clock: self.clock.clone(),
            retry: config.retry.clone(),
            metrics: metrics.clone(),
            catalog: catalog.clone(),
            routes: Arc::new(config.routes.clone()),
        };
        // Without its read connection the daemon works as well, only without checks ahead.
        let prefetch = self.card.as_ref().and_then(|card| {
            Prefetcher::new(
                card.clone(),
                self.ledger.clone(),
                &config.database,
                self.clock.clone(),
                metrics.clone(),
            )
            .inspect_err(|e| tracing::warn!(event = "no_checks_ahead", error = %e, "card checks will not be sent ahead"))
            .ok()
        });
        let voids_wake = Arc::new(tokio::sync::Notify::new());
        let void_worker = VoidWorker {
            ctx: ctx.clone(),
            pay: self.coupon.clone(),
            bus: self.bus.clone(),
            wake: voids_wake.clone(),
        };
        let dispatcher = Dispatcher {
            ctx,
            card: self.card.clone(),
            coupon: self.coupon.clone(),
            max_age: config.offline.max_age,
            bus: self.bus.clone(),
            drain_jitter: reconnect_jitter(&config.till, DRAIN_JITTER_SPREAD_MS),
            prefetch: prefetch.clone(),
        };
        let dispatcher_alive = Arc::new(AtomicBool::new(true));
        let dispatcher_alive_probe = dispatcher_alive.clone();
        let (keyed_tx, mut keyed_rx) = mpsc::channel::<KeyedScan>(64);
        let card = self.card.clone();
        let api_state = ApiState {
            ledger: self.ledger.clone(),
            clock: self.clock.clone(),
            bus: self.bus.clone(),
            metrics: metrics.clone(),
            keyed: keyed_tx,
            token: self.api_token.clone(),
            language: config.http.language,
            online_wait: config.offline.online_wait,
            dispatcher_alive: dispatcher_alive.clone(),
            card: self.card.clone(),
            till: config.till.clone(),
            route_names: Arc::new(config.routes.iter().map(|r| r.name.clone()).collect()),
            voids: voids_wake.clone(),
            hosts: Arc::new(crate::http::host::HostPolicy {
                listen: config.http.listen.clone(),
                allowed: config.http.allowed_hosts.clone(),
            }),
            token_refreshes: Arc::new(move || card.as_ref().map_or(0, |c| c.tokens().refreshes())),
        };
        let http = api::serve(&config.http, api_state, stop_rx.clone())
            .await
            .map_err(|e| DaemonError::Listen(format!("http.listen: cannot listen: {e}")))?;

        // `_ev_tx` stays here: when every scanner source has ended (standard input closed),
        // the daemon still serves keyed entry and drains the backlog.
        let (_ev_tx, mut ev_rx) = mpsc::channel(256);
        // Rows whose cashier died with the last process are settled before anything sends.
        refuse_unanswered(&self.ledger, config.clone(), self.clock.now_ms(), &self.bus).await?;
        // Row changes fill the chain's outbox only on a till that publishes to one.
        let publishing = self.config.store.is_some();
        self.ledger
            .call(move |c| crate::ledger::events::set_publishing(c, publishing))
            .await?;
        let mut sources = scanner::spawn_all(
            &config.scanners,
            _ev_tx.clone(),
            self.clock.clone(),
            stop_sources_rx,
            &self.bus.outcomes,
        );
        let guard = self.store_guard(&metrics).await?;
        let follower = guard
            .clone()
            .map(|g| tokio::spawn(g.follow(self.ledger.clone(), self.clock.now_ms())));
        let events = match (&guard, &self.config.store, &self.code_key) {
            (Some(g), Some(store), Some(key)) => {
                let till = TillParts {
                    store,
                    name: &self.config.till,
                    code_key: key.clone(),
                    database: &self.config.database,
                };
                let publisher = Publisher::new(
                    g.nats(),
                    self.ledger.clone(),
                    till,
                    metrics.clone(),
                    self.clock.clone(),
                )
                .map_err(DaemonError::Config)?;
                metrics.enable_events();
                Some(tokio::spawn(publisher.run(stop_rx.clone())))
            }
            _ => None,
        };
        let intake = Intake::new(
            self.ledger.clone(),
            self.clock.clone(),
            config.clone(),
            new_rows,
            prefetch,
            self.bus.clone(),
            catalog,
        )
        .with_guard(guard);
        // What sends to WeChat starts last, once nothing else can fail to start.
        let alive = dispatcher_alive.clone();
        let stop = stop_rx.clone();
        let mut dispatcher = tokio::spawn(async move {
            let result = dispatcher.run(new_rows_rx, stop).await;
            alive.store(false, Ordering::SeqCst);
            if let Err(e) = &result {
                tracing::error!(event = "dispatcher_failed", error = %e, "the dispatcher stopped");
            }
            result
        });
        let returns = tokio::spawn(void_worker.run(stop_rx.clone()));
        let quotas = self
            .card
            .clone()
            .map(|card| tokio::spawn(quota_loop(card, metrics.clone(), stop_rx.clone())));
        let mut answers = JoinSet::new();
        let mut live_sources = config.scanners.len();
        let notifier = Arc::new(Notifier::from_env());
        let health = notifier.enabled().then(|| {
            tokio::spawn(health_loop(
                notifier.clone(),
                self.ledger.clone(),
                metrics.clone(),
                dispatcher_alive_probe.clone(),
                stop_rx.clone(),
            ))
        });
        notifier.send(&format!(
            "READY=1\nSTATUS={}",
            status_line(&self.ledger, &metrics).await
        ));
        tracing::info!(
            event = "ready",
            till = %config.till,
            database = %config.database.display(),
            scanners = config.scanners.len(),
            "redeemd ready"
        );

        tokio::pin!(shutdown);
        // Set when the dispatcher ended before it was told to: the daemon stops and fails.
        let mut dispatcher_ended: Option<Result<(), DaemonError>> = None;
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                joined = &mut dispatcher => {
                    dispatcher_ended = Some(dispatcher_result(joined).and_then(|()| {
                        Err(DaemonError::Dispatcher("the dispatcher stopped on its own".into()))
                    }));
                    break;
                }
                ev = ev_rx.recv() => match ev {
                    Some(SourceEvent::Scan(scan)) => {
                        // Recorded here, in arrival order; answered concurrently.
                        let pending = intake.record(scan).await;
                        answers.spawn(answer(intake.clone(), pending, self.bus.clone(), None));
                    }
                    Some(SourceEvent::Ended { scanner }) => {
                        tracing::info!(event = "scanner_ended", scanner = %scanner, "scanner input ended");
                        live_sources = live_sources.saturating_sub(1);
                        if self.exit_when_sources_end && live_sources == 0 {
                            break;
                        }
                    }
                    Some(SourceEvent::Connected { scanner, device }) => {
                        metrics.set_scanner(&scanner, true);
                        let _ = self.bus.scanners.send(ScannerStatus { scanner: scanner.to_string(), connected: true, detail: device });
                    }
                    Some(SourceEvent::Disconnected { scanner, reason }) => {
                        metrics.set_scanner(&scanner, false);
                        let _ = self.bus.scanners.send(ScannerStatus { scanner: scanner.to_string(), connected: false, detail: reason });
                    }
                    None => break,
                },
                Some((scan, reply)) = keyed_rx.recv() => {
                    let pending = intake.record(scan).await;
                    answers.spawn(answer(intake.clone(), pending, self.bus.clone(), Some(reply)));
                }
                Some(_) = answers.join_next(), if !answers.is_empty() => {}
            }
        }

        notifier.send("STOPPING=1\nSTATUS=stopping: finishing calls in flight");
        tracing::info!(
            event = "stopping",
            "stopping: scanners closed, finishing calls in flight"
        );
        let _ = stop_sources_tx.send(true);
        sources.abort_all();
        // Scans already read get their answer (each waits at most online_wait), then the
        // dispatcher stops and drains.
        let wait_answers = async { while answers.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(
            config.offline.online_wait + Duration::from_secs(1),
            wait_answers,
        )
        .await;
        let _ = stop_tx.send(true);
        // Graceful shutdown waits for open connections, and an event stream never closes on
        // its own: give requests in flight a moment, then stop waiting.
        let _ = tokio::time::timeout(Duration::from_secs(1), http).await;
        if let Some(h) = health {
            let _ = h.await;
        }
        // A return in flight is recorded as started: stopping mid-call loses nothing.
        let _ = returns.await;
        if let Some(q) = quotas {
            q.abort();
        }
        // Each of its steps is one commit after one store call: stopping mid-way loses
        // nothing (the next start follows on).
        if let Some(f) = follower {
            f.abort();
        }
        // What it has not published waits in the outbox for the next start.
        if let Some(e) = events {
            e.abort();
        }
        let result = match dispatcher_ended {
            Some(ended) => ended,
            None => dispatcher_result(dispatcher.await),
        };
        // Commits what is left (the last audit records), fsyncs and closes the ledger.
        if let Err(e) = self.ledger.close().await {
            tracing::error!(event = "ledger_write_failed", error = %e, "the last audit records could not be written");
        }
        tracing::info!(event = "stopped", "redeemd stopped");
        result
    }
}

/// Reads WeChat's daily quotas for the paths redeemd calls, for the gauges: at start, then
/// hourly (each read is itself a call, so no more often).
async fn quota_loop(card: Arc<CardApi>, metrics: Arc<Metrics>, mut stop: watch::Receiver<bool>) {
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

fn http_client(timeout: Duration) -> Result<reqwest::Client, DaemonError> {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(Duration::from_secs(3).min(timeout))
        .timeout(timeout)
        .build()
        .map_err(|e| DaemonError::Http(e.to_string()))
}

/// The card API. Its secret file was checked by `check::load`, and is re-read at every
/// token fetch, so a fix needs no restart.
pub fn build_card(w: &WechatConfig) -> Result<Arc<CardApi>, DaemonError> {
    let http = http_client(w.request_timeout)?;
    let base = w.base_url.trim_end_matches('/');
    let source = match &w.token_url {
        Some(url) => TokenSource::Central { url: url.clone() },
        None => TokenSource::Stable {
            url: format!("{base}/cgi-bin/stable_token"),
        },
    };
    let tokens = Arc::new(TokenManager::new(
        http.clone(),
        source,
        w.appid.clone(),
        w.secret_file.clone(),
    ));
    Ok(Arc::new(CardApi::new(http, base, tokens)))
}

/// WeChat Pay, with the keys `check::load` read.
pub fn build_pay(
    p: &WechatPayConfig,
    keys: PayKeys,
    clock: SharedClock,
) -> Result<Arc<PayApi>, DaemonError> {
    let PayKeys { signer, verifier } = keys;
    Ok(Arc::new(PayApi::new(PayApiParts {
        http: http_client(p.request_timeout)?,
        appid: p.appid.clone(),
        auth: MerchantAuth {
            mchid: p.mchid.clone(),
            serial_no: p.serial_no.clone(),
            signer,
        },
        verifier,
        public_key_id: p.public_key_id.clone(),
        primary: p.base_url.clone(),
        backup: p.backup_url.clone(),
        clock,
    })))
}

/// Waits for a recorded scan's answer, logs it, and publishes it (and, for keyed entry,
/// hands it back to the HTTP request waiting for it).
async fn answer(
    intake: Intake,
    pending: Pending,
    bus: Bus,
    reply: Option<tokio::sync::oneshot::Sender<crate::outcome::Outcome>>,
) {
    let outcome = intake.answer(pending).await;
    outcome.log(&intake.config.till);
    if let Some(r) = reply {
        let _ = r.send(outcome.clone());
    }
    let _ = bus.outcomes.send(outcome);
}

/// `STATUS=` for systemd: the backlog, WeChat's reachability and the scanners.
async fn status_line(ledger: &Ledger, metrics: &Metrics) -> String {
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
async fn health_loop(
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A panicked dispatcher is a failure (exit 1, systemd restarts), never a clean stop.
    #[tokio::test]
    async fn a_panicked_dispatcher_is_a_failure() {
        let joined = tokio::spawn(async {
            if std::hint::black_box(true) {
                panic!("dispatcher bug");
            }
            Ok::<(), LedgerError>(())
        })
        .await;
        assert!(matches!(
            dispatcher_result(joined),
            Err(DaemonError::Dispatcher(_))
        ));
        assert!(dispatcher_result(Ok(Ok(()))).is_ok());
    }
}
