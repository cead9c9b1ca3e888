//! The reopen-with-backoff loop every device source shares, and the scanner-specific
//! decoders plugged into it.

use super::frame::Framer;
use super::hidpos::HidPosDecoder;
use super::keyboard::KeyboardDecoder;
use super::port::Port;
use super::{REOPEN_MAX, REOPEN_MIN, SourceEvent, pause_or_shutdown};
use crate::clock::SharedClock;
use crate::config::scanner::ScannerConfig;
use crate::model::frame::Frame;
use crate::model::scan::Scan;
use crate::model::state::TillOutcome;
use crate::outcome::Outcome;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, watch};

/// Bytes from one kind of scanner → frames.
pub trait Decoder: Send {
    fn push(&mut self, bytes: &[u8]) -> Vec<Frame>;
    /// Forget anything partial (the device went away).
    fn reset(&mut self);
    /// Told after each open: does every read return exactly one report?
    fn set_reads_are_reports(&mut self, _yes: bool) {}
}

impl Decoder for Framer {
    fn push(&mut self, bytes: &[u8]) -> Vec<Frame> {
        Framer::push(self, bytes)
    }
    fn reset(&mut self) {
        Framer::reset(self)
    }
}

impl Decoder for KeyboardDecoder {
    fn push(&mut self, bytes: &[u8]) -> Vec<Frame> {
        KeyboardDecoder::push(self, bytes)
    }
    fn reset(&mut self) {
        KeyboardDecoder::reset(self)
    }
}

/// hidraw returns one report per read; a FIFO is a byte stream to cut into reports.
pub struct HidPosSource {
    pub decoder: HidPosDecoder,
    pub per_read: bool,
}

impl Decoder for HidPosSource {
    fn push(&mut self, bytes: &[u8]) -> Vec<Frame> {
        if !self.per_read {
            return self.decoder.push(bytes);
        }
        let mut r = [0u8; super::hidpos::REPORT_SIZE];
        let n = bytes.len().min(r.len());
        r[..n].copy_from_slice(&bytes[..n]);
        self.decoder.report(&r).into_iter().collect()
    }
    fn reset(&mut self) {
        self.decoder.reset()
    }
    fn set_reads_are_reports(&mut self, yes: bool) {
        self.per_read = yes;
    }
}

pub type Opener = fn(&Path, &ScannerConfig) -> Result<(Port, String), String>;

/// Everything a source needs besides its config.
pub struct SourceIo {
    pub events: mpsc::Sender<SourceEvent>,
    pub clock: SharedClock,
    pub shutdown: watch::Receiver<bool>,
    /// Outcomes, for the serial scanner's good/bad-read feedback.
    pub outcomes: broadcast::Receiver<Outcome>,
}

/// Opens the device, reads frames until it goes away, reopens with backoff (0.5 s → 5 s).
/// A regular file is read once; standard input has its own loop.
pub async fn run(
    cfg: ScannerConfig,
    mut decoder: Box<dyn Decoder>,
    open: Opener,
    mut io: SourceIo,
) {
    let name: Arc<str> = cfg.name.as_str().into();
    let Some(path) = cfg.path.clone() else {
        return;
    };
    let feedback = Feedback::from(&cfg);
    let mut delay = REOPEN_MIN;
    let mut last_error = String::new();
    loop {
        if *io.shutdown.borrow() {
            return;
        }
        match open(&path, &cfg) {
            Ok((mut port, device)) => {
                delay = REOPEN_MIN;
                last_error.clear();
                decoder.set_reads_are_reports(port.reads_are_reports());
                tracing::info!(event = "scanner_connected", scanner = %name, device = %device, "scanner connected");
                let _ = io
                    .events
                    .send(SourceEvent::Connected {
                        scanner: name.clone(),
                        device,
                    })
                    .await;
                let gone =
                    read_until_gone(&mut port, decoder.as_mut(), &name, &feedback, &mut io).await;
                decoder.reset();
                let plain = port.is_plain_file();
                drop(port);
                let Some(reason) = gone else { return };
                if plain {
                    tracing::info!(event = "scanner_ended", scanner = %name, "file read to its end");
                    let _ = io.events.send(SourceEvent::Ended { scanner: name }).await;
                    return;
                }
                tracing::warn!(event = "scanner_disconnected", scanner = %name, reason = %reason, "scanner disconnected");
                let _ = io
                    .events
                    .send(SourceEvent::Disconnected {
                        scanner: name.clone(),
                        reason,
                    })
                    .await;
            }
            Err(e) => {
                // Log once per distinct error, not once per retry.
                if e != last_error {
                    tracing::warn!(event = "scanner_unavailable", scanner = %name, path = %path.display(), error = %e, "cannot open scanner; retrying");
                    last_error = e;
                }
            }
        }
        if pause_or_shutdown(delay, &mut io.shutdown).await {
            return;
        }
        delay = (delay * 2).min(REOPEN_MAX);
    }
}

/// Reads frames until the device goes away (returns why) or shutdown (returns `None`).
async fn read_until_gone(
    port: &mut Port,
    decoder: &mut dyn Decoder,
    name: &Arc<str>,
    feedback: &Feedback,
    io: &mut SourceIo,
) -> Option<String> {
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::select! {
            r = port.read(&mut buf) => r,
            _ = io.shutdown.changed() => return None,
            o = io.outcomes.recv(), if feedback.any() => {
                if let Ok(o) = o
                    && *o.scanner == **name
                    && let Some(bytes) = feedback.for_outcome(o.outcome)
                    && let Err(e) = port.write_all(bytes).await
                {
                    return Some(format!("write error: {e}"));
                }
                continue;
            }
        };
        match n {
            Ok(0) => return Some("end of file".into()),
            Ok(n) => {
                let at = io.clock.now_ms();
                for frame in decoder.push(&buf[..n]) {
                    let scan = Scan {
                        scanner: name.clone(),
                        frame,
                        at,
                        sale: Default::default(),
                    };
                    if io.events.send(SourceEvent::Scan(scan)).await.is_err() {
                        return None;
                    }
                }
            }
            Err(e) => return Some(format!("read error: {e}")),
        }
    }
}

/// The bytes a serial scanner is sent after each outcome (beep, LED).
struct Feedback {
    good: Option<Vec<u8>>,
    bad: Option<Vec<u8>>,
}

impl Feedback {
    fn from(cfg: &ScannerConfig) -> Self {
        let bytes = |s: &Option<String>| {
            s.as_ref()
                .filter(|s| !s.is_empty())
                .map(|s| s.as_bytes().to_vec())
        };
        Self {
            good: bytes(&cfg.good_read),
            bad: bytes(&cfg.bad_read),
        }
    }

    fn any(&self) -> bool {
        self.good.is_some() || self.bad.is_some()
    }

    fn for_outcome(&self, o: TillOutcome) -> Option<&[u8]> {
        match o {
            // Held: the POS applies the discount now.
            TillOutcome::Redeemed | TillOutcome::AcceptedOffline | TillOutcome::Held => {
                self.good.as_deref()
            }
            // Not a coupon: the cashier hears the refusal beep; the POS charges it.
            TillOutcome::Rejected
            | TillOutcome::RefusedOffline
            | TillOutcome::Duplicate
            | TillOutcome::PaymentCode => self.bad.as_deref(),
        }
    }
}
