//! Lines typed on standard input as a scanner: `redeemd demo`, and piping codes in by hand.
//!
//! Standard input is read on a plain thread of its own, not through `tokio::io::stdin`:
//! tokio reads it on its blocking pool, and a runtime waits for that read to end before it
//! shuts down, so SIGTERM or Ctrl-C waited for one more line. A plain thread blocked in
//! `read` does not hold the process when `main` returns.

use super::SourceEvent;
use super::frame::Framer;
use crate::clock::SharedClock;
use crate::config::scanner::ScannerConfig;
use crate::model::scan::Scan;
use std::io::Read;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

pub async fn run(
    cfg: ScannerConfig,
    events: mpsc::Sender<SourceEvent>,
    clock: SharedClock,
    mut shutdown: watch::Receiver<bool>,
) {
    let name: Arc<str> = cfg.name.as_str().into();
    let mut framer = Framer::new(cfg.aim_ids);
    let mut reads = read_stdin();
    let _ = events
        .send(SourceEvent::Connected {
            scanner: name.clone(),
            device: "standard input".into(),
        })
        .await;
    loop {
        let chunk = tokio::select! {
            r = reads.recv() => r,
            _ = shutdown.changed() => return,
        };
        match chunk {
            None => {
                // A last line without a newline still counts.
                let at = clock.now_ms();
                for frame in framer.push(b"\n") {
                    let _ = events
                        .send(SourceEvent::Scan(Scan {
                            scanner: name.clone(),
                            frame,
                            at,
                            sale: Default::default(),
                        }))
                        .await;
                }
                let _ = events.send(SourceEvent::Ended { scanner: name }).await;
                return;
            }
            Some(bytes) => {
                let at = clock.now_ms();
                for frame in framer.push(&bytes) {
                    if events
                        .send(SourceEvent::Scan(Scan {
                            scanner: name.clone(),
                            frame,
                            at,
                            sale: Default::default(),
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

/// What standard input brings, read by a thread of its own; the channel closes at its end
/// (or on a read error).
fn read_stdin() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(16);
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = [0u8; 512];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if tx.blocking_send(buf[..n].to_vec()).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(event = "stdin_unreadable", error = %e, "cannot read standard input");
    }
    rx
}
