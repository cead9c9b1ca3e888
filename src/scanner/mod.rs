//! Scanner sources: each reads bytes from one device and sends complete frames to the intake.
//! A source never gives up: a device that disappears is reopened with backoff, and one
//! failing source never stops the others.

pub mod frame;
pub mod serial;
pub mod stdin;

use crate::clock::SharedClock;
use crate::config::{ScannerConfig, ScannerKind};
use crate::redeem::intake::Scan;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// What sources tell the daemon.
#[derive(Debug, Clone)]
pub enum SourceEvent {
    Scan(Scan),
    Connected {
        scanner: Arc<str>,
        device: String,
    },
    Disconnected {
        scanner: Arc<str>,
        reason: String,
    },
    /// The source has ended for good (standard input closed).
    Ended {
        scanner: Arc<str>,
    },
}

/// Reopen backoff after a device disappears: 0.5 s doubling to 5 s.
pub const REOPEN_MIN: Duration = Duration::from_millis(500);
pub const REOPEN_MAX: Duration = Duration::from_secs(5);

pub fn spawn_all(
    scanners: &[ScannerConfig],
    events: mpsc::Sender<SourceEvent>,
    clock: SharedClock,
    shutdown: watch::Receiver<bool>,
) -> JoinSet<()> {
    let mut set = JoinSet::new();
    for s in scanners {
        let cfg = s.clone();
        let events = events.clone();
        let clock = clock.clone();
        let shutdown = shutdown.clone();
        match s.kind {
            ScannerKind::Serial => {
                set.spawn(serial::run(cfg, events, clock, shutdown));
            }
            ScannerKind::Stdin => {
                set.spawn(stdin::run(cfg, events, clock, shutdown));
            }
        }
    }
    set
}

/// Waits `delay` unless shutdown comes first; true when shutting down.
pub(crate) async fn pause_or_shutdown(
    delay: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(delay) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}
