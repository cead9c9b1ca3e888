//! Real `nats-server` processes on loopback, for the demo's chain, the tests and the
//! benchmarks: the configs of a hub and its store leaf nodes, and a launcher that waits
//! until a server says it is ready, by reading its log (no fixed sleep). Debian's package,
//! or `$REDEEMD_NATS_SERVER`.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
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

/// The hub's JetStream domain (hq.toml's default).
pub const HUB_DOMAIN: &str = "hq";

/// The hub: clients on `port`, leaf nodes on `leaf_port`.
pub fn hub_config(port: u16, leaf_port: u16, store_dir: &Path) -> String {
    format!(
        "server_name: hub\nlisten: 127.0.0.1:{port}\n\
         jetstream {{ store_dir: \"{}\", domain: {HUB_DOMAIN} }}\n\
         leafnodes {{ listen: 127.0.0.1:{leaf_port} }}\n",
        store_dir.display()
    )
}

/// A store's server: its own JetStream domain `store`, a leaf node of the hub's `leaf_port`.
pub fn leaf_config(store: &str, port: u16, leaf_port: u16, store_dir: &Path) -> String {
    format!(
        "server_name: {store}\nlisten: 127.0.0.1:{port}\n\
         jetstream {{ store_dir: \"{}\", domain: {store} }}\n\
         leafnodes {{ reconnect: 1, remotes: [ {{ url: \"nats-leaf://127.0.0.1:{leaf_port}\" }} ] }}\n",
        store_dir.display()
    )
}
