//! Lines typed on standard input as a scanner: `redeemd demo`, and piping codes in by hand.

use super::SourceEvent;
use super::frame::Framer;
use crate::clock::SharedClock;
use crate::config::ScannerConfig;
use crate::model::scan::Scan;
use std::sync::Arc;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};

pub async fn run(
    cfg: ScannerConfig,
    events: mpsc::Sender<SourceEvent>,
    clock: SharedClock,
    mut shutdown: watch::Receiver<bool>,
) {
    let name: Arc<str> = cfg.name.as_str().into();
    let mut framer = Framer::new(cfg.aim_ids);
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 512];
    let _ = events
        .send(SourceEvent::Connected {
            scanner: name.clone(),
            device: "standard input".into(),
        })
        .await;
    loop {
        let n = tokio::select! {
            r = stdin.read(&mut buf) => r,
            _ = shutdown.changed() => return,
        };
        match n {
            Ok(0) | Err(_) => {
                // A last line without a newline still counts.
                let at = clock.now_ms();
                for frame in framer.push(b"\n") {
                    let _ = events
                        .send(SourceEvent::Scan(Scan {
                            scanner: name.clone(),
                            frame,
                            at,
                        }))
                        .await;
                }
                let _ = events.send(SourceEvent::Ended { scanner: name }).await;
                return;
            }
            Ok(n) => {
                let at = clock.now_ms();
                for frame in framer.push(&buf[..n]) {
                    if events
                        .send(SourceEvent::Scan(Scan {
                            scanner: name.clone(),
                            frame,
                            at,
                        }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    }
}
