//! Starting one real `nats-server` (Debian's package, or `$REDEEMD_NATS_SERVER`) and waiting
//! until it says it is ready, by reading its log: no fixed sleep. The one launcher of the
//! tests (`tests/support/nats.rs`) and the benchmarks (`benches/`), which include this file
//! alone: it uses nothing else of the support code.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The `nats-server` binary: `$REDEEMD_NATS_SERVER`, else the one on `PATH`.
pub fn binary() -> String {
    std::env::var("REDEEMD_NATS_SERVER").unwrap_or_else(|_| "nats-server".into())
}

/// A started server and the client port its log named (`None` when it named none, e.g.
/// a config without a client listener).
pub struct Started {
    pub child: Child,
    pub port: Option<u16>,
}

/// Starts `nats-server` with `args` and returns once its log says it is ready; `None` when
/// there is no `nats-server` or it does not become ready within 20 s (it is then killed).
/// The log keeps being read, so the server never blocks on a full pipe.
pub fn start<I, S>(args: I) -> Option<Started>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut child = Command::new(binary())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let Some(stderr) = child.stderr.take() else {
        let _ = child.kill();
        return None;
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut port = None;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(p) = line
                .split("Listening for client connections on ")
                .nth(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.trim().parse::<u16>().ok())
            {
                port = Some(p);
            }
            if line.contains("Server is ready") {
                let _ = tx.send(port);
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(port) => Some(Started { child, port }),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    }
}
