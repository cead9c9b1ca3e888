//! The daemon's start: every part built and spawned in order, what sends to WeChat last,
//! once nothing else can fail to start.

use super::health::{health_loop, quota_loop, status_line};
use super::{DRAIN_JITTER_SPREAD_MS, Daemon, DaemonError, Running};
use crate::api::{self, ApiState, KeyedScan};
use crate::chain::publisher::{Publisher, TillParts};
use crate::config::Config;
use crate::guard::bucket::ClaimBucket;
use crate::ledger::Ledger;
use crate::ledger::claims;
use crate::ledger::note_file::NoteFile;
use crate::ledger::scans;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::outcome::Bus;
use crate::redeem::aimd::reconnect_jitter;
use crate::redeem::catalog::Catalog;
use crate::redeem::dispatcher::Dispatcher;
use crate::redeem::hold_expiry::HoldExpiry;
use crate::redeem::intake::Intake;
use crate::redeem::orders::Orders;
use crate::redeem::prefetch::Prefetcher;
use crate::redeem::store_guard::StoreGuard;
use crate::redeem::voids::VoidWorker;
use crate::redeem::{self, Ctx};
use crate::scanner;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

impl Daemon {
    /// Builds and spawns every part; the till is ready when this returns.
    pub(super) async fn start(self) -> Result<Running, DaemonError> {
        let config = self.config.clone();
        let (new_rows, new_rows_rx) = redeem::new_rows();
        // Two stop signals, so scanners stop first and the dispatcher keeps answering the
        // scans already read before it drains.
        let (stop_tx, stop_rx) = watch::channel(false);
        let (stop_sources_tx, stop_sources_rx) = watch::channel(false);
        let metrics = Arc::new(Metrics::default());
        // Row changes fill the chain's outbox only on a till that publishes to one; set
        // before anything can write a row.
        let publishing = self.config.store.is_some();
        self.ledger
            .call(move |c| crate::ledger::events::set_publishing(c, publishing))
            .await?;
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
            product_coupon: self.product_coupon.clone(),
            bus: self.bus.clone(),
            wake: voids_wake.clone(),
        };
        let dispatcher = Dispatcher {
            ctx,
            card: self.card.clone(),
            coupon: self.coupon.clone(),
            product_coupon: self.product_coupon.clone(),
            max_age: config.offline.max_age,
            bus: self.bus.clone(),
            drain_jitter: reconnect_jitter(&config.till, DRAIN_JITTER_SPREAD_MS),
            prefetch: prefetch.clone(),
        };
        let dispatcher_alive = Arc::new(AtomicBool::new(true));
        let dispatcher_alive_probe = dispatcher_alive.clone();
        let (keyed_tx, keyed_rx) = mpsc::channel::<KeyedScan>(64);
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
            orders: Orders {
                ledger: self.ledger.clone(),
                clock: self.clock.clone(),
                bus: self.bus.clone(),
                new_rows: new_rows.clone(),
                till: config.till.clone(),
                online_wait: config.offline.online_wait,
            },
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
        let (_ev_tx, ev_rx) = mpsc::channel(256);
        // Rows whose cashier died with the last process are settled before anything sends.
        refuse_unanswered(&self.ledger, config.clone(), self.clock.now_ms(), &self.bus).await?;
        let sources = scanner::spawn_all(
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
        .with_guard(guard.clone());
        // What sends to WeChat starts last, once nothing else can fail to start.
        let alive = dispatcher_alive.clone();
        let stop = stop_rx.clone();
        let dispatcher = tokio::spawn(async move {
            let result = dispatcher.run(new_rows_rx, stop).await;
            alive.store(false, Ordering::SeqCst);
            if let Err(e) = &result {
                tracing::error!(event = "dispatcher_failed", error = %e, "the dispatcher stopped");
            }
            result
        });
        let returns = tokio::spawn(void_worker.run(stop_rx.clone()));
        let holds = self.product_coupon.is_some().then(|| {
            let expiry = HoldExpiry {
                ledger: self.ledger.clone(),
                clock: self.clock.clone(),
                bus: self.bus.clone(),
                guard: guard.clone(),
            };
            tokio::spawn(expiry.run(stop_rx.clone()))
        });
        let quotas = self
            .card
            .clone()
            .map(|card| tokio::spawn(quota_loop(card, metrics.clone(), stop_rx.clone())));
        let answers = JoinSet::new();
        let live_sources = config.scanners.len();
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
        Ok(Running {
            config,
            ledger: self.ledger,
            bus: self.bus,
            metrics,
            intake,
            ev_rx,
            _ev_tx,
            keyed_rx,
            live_sources,
            exit_when_sources_end: self.exit_when_sources_end,
            answers,
            sources,
            stop_sources_tx,
            stop_tx,
            dispatcher,
            http,
            health,
            returns,
            holds,
            quotas,
            follower,
            events,
            notifier,
            _lock: self._lock,
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
