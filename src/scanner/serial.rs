//! RS-232 / USB-CDC scanners: a tty read through tokio-serial (no libudev).

use super::frame::Framer;
use super::{REOPEN_MAX, REOPEN_MIN, SourceEvent, pause_or_shutdown};
use crate::clock::SharedClock;
use crate::config::{FlowControl, Parity, ScannerConfig};
use crate::redeem::intake::Scan;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};
use tokio_serial::{DataBits, SerialPortBuilderExt, SerialStream, StopBits};

pub async fn run(
    cfg: ScannerConfig,
    events: mpsc::Sender<SourceEvent>,
    clock: SharedClock,
    mut shutdown: watch::Receiver<bool>,
) {
    let name: Arc<str> = cfg.name.as_str().into();
    let Some(path) = cfg.path.clone() else {
        return;
    };
    let mut framer = Framer::new(cfg.aim_ids);
    let mut delay = REOPEN_MIN;
    let mut last_error = String::new();
    loop {
        if *shutdown.borrow() {
            return;
        }
        match open(&path, &cfg) {
            Ok((mut port, device)) => {
                delay = REOPEN_MIN;
                last_error.clear();
                tracing::info!(event = "scanner_connected", scanner = %name, device = %device, "scanner connected");
                let _ = events
                    .send(SourceEvent::Connected {
                        scanner: name.clone(),
                        device,
                    })
                    .await;
                let reason = read_until_gone(
                    &mut port,
                    &mut framer,
                    &name,
                    &events,
                    &clock,
                    &mut shutdown,
                )
                .await;
                drop(port);
                framer.reset();
                let Some(reason) = reason else { return };
                tracing::warn!(event = "scanner_disconnected", scanner = %name, reason = %reason, "scanner disconnected");
                let _ = events
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
        if pause_or_shutdown(delay, &mut shutdown).await {
            return;
        }
        delay = (delay * 2).min(REOPEN_MAX);
    }
}

/// Reads frames until the device goes away (returns why) or shutdown (returns `None`).
async fn read_until_gone(
    port: &mut SerialStream,
    framer: &mut Framer,
    name: &Arc<str>,
    events: &mpsc::Sender<SourceEvent>,
    clock: &SharedClock,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<String> {
    let mut buf = [0u8; 512];
    loop {
        let n = tokio::select! {
            r = port.read(&mut buf) => r,
            _ = shutdown.changed() => return None,
        };
        match n {
            Ok(0) => return Some("end of file".into()),
            Ok(n) => {
                let at = clock.now_ms();
                for frame in framer.push(&buf[..n]) {
                    let scan = Scan {
                        scanner: name.clone(),
                        frame,
                        at,
                    };
                    if events.send(SourceEvent::Scan(scan)).await.is_err() {
                        return None;
                    }
                }
            }
            Err(e) => return Some(format!("read error: {e}")),
        }
    }
}

/// Opens the port, re-resolving the configured path (a by-id symlink may now point at a
/// different device node).
fn open(path: &Path, cfg: &ScannerConfig) -> Result<(SerialStream, String), String> {
    let device: PathBuf =
        std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let device_s = device.display().to_string();
    let builder = tokio_serial::new(device_s.clone(), cfg.baud)
        .data_bits(match cfg.data_bits {
            5 => DataBits::Five,
            6 => DataBits::Six,
            7 => DataBits::Seven,
            _ => DataBits::Eight,
        })
        .parity(match cfg.parity {
            Parity::None => tokio_serial::Parity::None,
            Parity::Odd => tokio_serial::Parity::Odd,
            Parity::Even => tokio_serial::Parity::Even,
        })
        .stop_bits(if cfg.stop_bits == 2 {
            StopBits::Two
        } else {
            StopBits::One
        })
        .flow_control(match cfg.flow_control {
            FlowControl::None => tokio_serial::FlowControl::None,
            FlowControl::Software => tokio_serial::FlowControl::Software,
            FlowControl::Hardware => tokio_serial::FlowControl::Hardware,
        });
    let port = builder
        .open_native_async()
        .map_err(|e| format!("{device_s}: {e}"))?;
    Ok((port, device_s))
}
