//! Scanner sources: each reads bytes from one device and sends complete frames to the intake.
//! A source never gives up: a device that disappears is reopened with backoff, and one
//! failing source never stops the others.

pub mod frame;
pub mod hidpos;
pub mod keyboard;
pub mod port;
pub mod source;
pub mod stdin;

use crate::clock::SharedClock;
use crate::config::scanner::{ScannerConfig, ScannerKind};
use crate::model::scan::Scan;
use crate::outcome::Outcome;
use frame::Framer;
use hidpos::HidPosDecoder;
use keyboard::KeyboardDecoder;
use source::{HidPosSource, SourceIo};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};
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
    outcomes: &broadcast::Sender<Outcome>,
) -> JoinSet<()> {
    let mut set = JoinSet::new();
    for s in scanners {
        let cfg = s.clone();
        let io = SourceIo {
            events: events.clone(),
            clock: clock.clone(),
            shutdown: shutdown.clone(),
            outcomes: outcomes.subscribe(),
        };
        match s.kind {
            ScannerKind::Serial => {
                let framer = Box::new(Framer::new(s.aim_ids));
                set.spawn(source::run(cfg, framer, port::open_serial, io));
            }
            ScannerKind::Keyboard => {
                let decoder = Box::new(KeyboardDecoder::with_gap(
                    s.layout(),
                    s.inter_key_timeout.unwrap_or(keyboard::DEFAULT_GAP),
                ));
                set.spawn(source::run(
                    cfg,
                    decoder,
                    |p, c| port::open_device(p, c.grab),
                    io,
                ));
            }
            ScannerKind::Hidpos => {
                let decoder = Box::new(HidPosSource {
                    decoder: HidPosDecoder::new(s.report_id.unwrap_or(hidpos::DEFAULT_REPORT_ID)),
                    per_read: false,
                });
                set.spawn(source::run(
                    cfg,
                    decoder,
                    |p, _| port::open_device(p, false),
                    io,
                ));
            }
            ScannerKind::Stdin => {
                set.spawn(stdin::run(cfg, io.events, io.clock, io.shutdown));
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
