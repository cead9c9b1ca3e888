//! systemd's notification protocol (`sd_notify`): READY, WATCHDOG, STATUS, STOPPING over the
//! datagram socket named by `$NOTIFY_SOCKET`. Without that variable every call does nothing.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

pub struct Notifier {
    socket: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let path = path.to_string_lossy().to_string();
            let addr = if let Some(abs) = path.strip_prefix('@') {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(abs.as_bytes()).ok()?
            } else {
                SocketAddr::from_pathname(&path).ok()?
            };
            Some((UnixDatagram::unbound().ok()?, addr))
        });
        Notifier { socket }
    }

    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// Sends `KEY=value` lines; failures are logged, never fatal.
    pub fn send(&self, message: &str) {
        if let Some((sock, addr)) = &self.socket
            && let Err(e) = sock.send_to_addr(message.as_bytes(), addr)
        {
            tracing::warn!(event = "notify_failed", error = %e, "cannot notify systemd");
        }
    }

    /// How often to prove health to the watchdog: half of `$WATCHDOG_USEC`, when the
    /// watchdog is meant for this process.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.socket.as_ref()?;
        if let Ok(pid) = std::env::var("WATCHDOG_PID")
            && pid.trim() != std::process::id().to_string()
        {
            return None;
        }
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
        (usec > 0).then(|| Duration::from_micros(usec / 2))
    }
}
