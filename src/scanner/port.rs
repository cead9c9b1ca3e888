//! Opening scanner devices. Serial ports go through tokio-serial (baud, parity, raw mode);
//! input and hidraw devices — and FIFOs standing in for them — are read non-blocking through
//! the reactor, so a quiet or unplugged scanner costs no CPU and shutdown never waits on a
//! blocked read. A regular file is read once to its end (a recorded session to replay).

use crate::config::scanner::{FlowControl, Parity, ScannerConfig};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_serial::{DataBits, SerialPortBuilderExt, SerialStream, StopBits};

pub enum Port {
    Serial(SerialStream),
    /// A character device or FIFO, through epoll.
    Polled {
        fd: AsyncFd<File>,
        char_device: bool,
    },
    /// A regular file: read to its end, once.
    Plain(File),
}

impl Port {
    pub async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Port::Serial(s) => AsyncReadExt::read(s, buf).await,
            Port::Polled { fd, .. } => loop {
                let mut guard = fd.readable().await?;
                match guard.try_io(|inner| inner.get_ref().read(buf)) {
                    Ok(result) => return result,
                    Err(_would_block) => continue,
                }
            },
            Port::Plain(f) => f.read(buf),
        }
    }

    /// Writes to the scanner (serial only: beep/LED commands).
    pub async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Port::Serial(s) => AsyncWriteExt::write_all(s, bytes).await,
            _ => Ok(()),
        }
    }

    pub fn is_plain_file(&self) -> bool {
        matches!(self, Port::Plain(_))
    }

    /// Each read returns one whole report (hidraw), rather than a byte stream (FIFO).
    pub fn reads_are_reports(&self) -> bool {
        matches!(
            self,
            Port::Polled {
                char_device: true,
                ..
            }
        )
    }
}

/// Opens a serial port, re-resolving the configured path (a by-id symlink may now point at
/// a different device node).
pub fn open_serial(path: &Path, cfg: &ScannerConfig) -> Result<(Port, String), String> {
    let device = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
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
    Ok((Port::Serial(port), device_s))
}

/// Opens an input or hidraw device (or a FIFO or file carrying the same bytes).
pub fn open_device(path: &Path, grab: bool) -> Result<(Port, String), String> {
    let device = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let device_s = device.display().to_string();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(&device)
        .map_err(|e| format!("{device_s}: {e}"))?;
    let kind = file
        .metadata()
        .map_err(|e| format!("{device_s}: {e}"))?
        .file_type();
    if kind.is_file() {
        return Ok((Port::Plain(file), device_s));
    }
    if grab && kind.is_char_device() {
        grab_input(&file, &device_s);
    }
    // SAFETY: the `File` owns its descriptor and keeps it open, unchanged, until it is
    // dropped, and the `AsyncFd` owns the `File` for its whole life.
    let fd = unsafe { AsyncFd::register_with_interest(file, Interest::READABLE) }
        .map_err(|e| format!("{device_s}: cannot poll: {e}"))?;
    Ok((
        Port::Polled {
            fd,
            char_device: kind.is_char_device(),
        },
        device_s,
    ))
}

nix::ioctl_write_int!(eviocgrab, b'E', 0x90);

/// EVIOCGRAB: keep the scanner's keystrokes away from the desktop and console. Best effort:
/// a device that refuses (or is not an input device) still works, only not exclusively.
fn grab_input(file: &File, device: &str) {
    use std::os::fd::AsRawFd;
    // SAFETY: EVIOCGRAB takes an int by value and reads no memory of ours; the descriptor is
    // open for the duration of the call (borrowed from `file`).
    let result = unsafe { eviocgrab(file.as_raw_fd(), 1) };
    if let Err(e) = result {
        tracing::warn!(event = "grab_failed", device, error = %e, "cannot take the keyboard exclusively; scans may also reach the desktop");
    }
}
