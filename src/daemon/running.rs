//! The running daemon: the scan loop (scans recorded in arrival order, answered
//! concurrently, by the intake), and the stop in order (scanners first, answers given,
//! then the dispatcher drains, and the ledger closes last).

use super::{DaemonError, Running, dispatcher_result};
use crate::outcome::ScannerStatus;
use crate::scanner::SourceEvent;
use std::future::Future;
use std::time::Duration;

impl Running {
    /// Serves until `shutdown`, the dispatcher's own end, or (when asked) the last scanner
    /// source's end. `Some`: the dispatcher ended before it was told to (a failure).
    pub(super) async fn serve(
        &mut self,
        shutdown: impl Future<Output = ()>,
    ) -> Option<Result<(), DaemonError>> {
        tokio::pin!(shutdown);
        // Set when the dispatcher ended before it was told to: the daemon stops and fails.
        let mut dispatcher_ended: Option<Result<(), DaemonError>> = None;
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                joined = &mut self.dispatcher => {
                    dispatcher_ended = Some(dispatcher_result(joined).and_then(|()| {
                        Err(DaemonError::Dispatcher("the dispatcher stopped on its own".into()))
                    }));
                    break;
                }
                ev = self.ev_rx.recv() => match ev {
                    Some(SourceEvent::Scan(scan)) => {
                        // Recorded here, in arrival order; answered concurrently.
                        let pending = self.intake.record(scan).await;
                        let intake = self.intake.clone();
                        self.answers.spawn(async move { intake.answer_and_tell(pending, None).await });
                    }
                    Some(SourceEvent::Ended { scanner }) => {
                        tracing::info!(event = "scanner_ended", scanner = %scanner, "scanner input ended");
                        self.live_sources = self.live_sources.saturating_sub(1);
                        if self.exit_when_sources_end && self.live_sources == 0 {
                            break;
                        }
                    }
                    Some(SourceEvent::Connected { scanner, device }) => {
                        self.metrics.set_scanner(&scanner, true);
                        let _ = self.bus.scanners.send(ScannerStatus { scanner: scanner.to_string(), connected: true, detail: device });
                    }
                    Some(SourceEvent::Disconnected { scanner, reason }) => {
                        self.metrics.set_scanner(&scanner, false);
                        let _ = self.bus.scanners.send(ScannerStatus { scanner: scanner.to_string(), connected: false, detail: reason });
                    }
                    None => break,
                },
                Some((scan, reply)) = self.keyed_rx.recv() => {
                    let pending = self.intake.record(scan).await;
                    let intake = self.intake.clone();
                    self.answers.spawn(async move { intake.answer_and_tell(pending, Some(reply)).await });
                }
                Some(_) = self.answers.join_next(), if !self.answers.is_empty() => {}
            }
        }
        dispatcher_ended
    }

    /// Stops every part in order; `dispatcher_ended` is what [`Running::serve`] returned.
    pub(super) async fn stop(
        self,
        dispatcher_ended: Option<Result<(), DaemonError>>,
    ) -> Result<(), DaemonError> {
        let Running {
            config,
            ledger,
            notifier,
            stop_sources_tx,
            mut sources,
            mut answers,
            stop_tx,
            http,
            health,
            returns,
            holds,
            quotas,
            follower,
            events,
            dispatcher,
            ..
        } = self;
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
        if let Some(h) = holds {
            let _ = h.await;
        }
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
        if let Err(e) = ledger.close().await {
            tracing::error!(event = "ledger_write_failed", error = %e, "the last audit records could not be written");
        }
        tracing::info!(event = "stopped", "redeemd stopped");
        result
    }
}
