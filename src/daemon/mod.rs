//! Wiring: the ledger, the dispatcher, the scanner sources and the intake, started together
//! and stopped in order.

mod clients;
mod health;
pub mod load;
mod running;
mod start;

pub use clients::build_card;
use clients::{build_pay, build_product_coupon};
pub use health::termination_signal;

use crate::api::KeyedScan;
use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::daemon::load::Loaded;
use crate::ledger::lock::LedgerLock;
use crate::ledger::schema::OpenError;
use crate::ledger::{Ledger, LedgerError};
use crate::metrics::Metrics;
use crate::model::api::Api;
use crate::model::claim_key::CodeKey;
use crate::notify::Notifier;
use crate::outcome::Bus;
use crate::redeem::intake::Intake;
use crate::redeem::product_coupon::ProductCouponApi;
use crate::scanner::SourceEvent;
use crate::wechat::card::CardApi;
use crate::wechatpay::pay::PayApi;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

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

pub struct Daemon {
    config: Arc<Config>,
    ledger: Ledger,
    clock: SharedClock,
    bus: Bus,
    card: Option<Arc<CardApi>>,
    coupon: Option<Arc<PayApi>>,
    product_coupon: Option<Arc<ProductCouponApi>>,
    /// The HTTP API's bearer token, when one is configured.
    api_token: Option<Arc<str>>,
    /// Stop once every scanner source has ended (the demo's standard input closing).
    pub exit_when_sources_end: bool,
    /// The chain's claim secret, with `[store]`.
    code_key: Option<CodeKey>,
    /// This daemon alone runs on the ledger, while it lives.
    _lock: LedgerLock,
}

/// A started daemon: what its loop reads, and every part's handle, for the stop in order.
struct Running {
    config: Arc<Config>,
    ledger: Ledger,
    bus: Bus,
    metrics: Arc<Metrics>,
    intake: Intake,
    ev_rx: mpsc::Receiver<SourceEvent>,
    /// Held so that, when every scanner source has ended (standard input closed), the
    /// daemon still serves keyed entry and drains the backlog.
    _ev_tx: mpsc::Sender<SourceEvent>,
    keyed_rx: mpsc::Receiver<KeyedScan>,
    live_sources: usize,
    exit_when_sources_end: bool,
    answers: JoinSet<()>,
    sources: JoinSet<()>,
    stop_sources_tx: watch::Sender<bool>,
    stop_tx: watch::Sender<bool>,
    dispatcher: JoinHandle<Result<(), LedgerError>>,
    http: JoinHandle<()>,
    health: Option<JoinHandle<()>>,
    returns: JoinHandle<()>,
    holds: Option<JoinHandle<()>>,
    quotas: Option<JoinHandle<()>>,
    follower: Option<JoinHandle<()>>,
    events: Option<JoinHandle<()>>,
    notifier: Arc<Notifier>,
    _lock: LedgerLock,
}

/// A store's tills spread the drain of their backlogs over this much time after an outage.
pub const DRAIN_JITTER_SPREAD_MS: u64 = 3000;

impl Daemon {
    /// Builds the clients from what [`load::load`] read, and opens the ledger.
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
        let holds_product_coupons = config.routes.iter().any(|r| r.api == Api::ProductCoupon);
        let product_coupon = match (&config.wechat_pay, &pay_keys) {
            (Some(p), Some(keys)) if holds_product_coupons => {
                build_product_coupon(p, keys.verifier.clone(), clock.clone())?
            }
            _ => None,
        };
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
            product_coupon,
            exit_when_sources_end: false,
            code_key,
            _lock: lock,
        })
    }

    pub fn bus(&self) -> Bus {
        self.bus.clone()
    }

    /// Starts every part, serves until `shutdown` (or the dispatcher fails, or the last
    /// scanner source ends when asked to stop then), and stops them in order.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
        let mut running = self.start().await?;
        let ended = running.serve(shutdown).await;
        running.stop(ended).await
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
