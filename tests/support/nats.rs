//! Real `nats-server` processes (Debian's package, or `$REDEEMD_NATS_SERVER`) with JetStream in
//! a temporary folder, on a port the OS picks, for the store guard's tests.

use super::Rng;
use redeemd::sim::nats_servers::{self, hub_config as hub_config_text, leaf_config};
use std::collections::HashSet;
use std::process::Child;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct NatsServer {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts one server and returns once it says it is ready (JetStream on), reading its
    /// log: no fixed sleep.
    pub fn start() -> NatsServer {
        Self::start_with(&[])
    }

    /// [`NatsServer::start`] with more flags (`--user`, `--pass`).
    pub fn start_with(extra: &[&str]) -> NatsServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port().to_string();
        let mut args: Vec<&std::ffi::OsStr> = extra.iter().map(std::ffi::OsStr::new).collect();
        for a in [
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            &port,
            "--server_name",
            "n1",
            "-sd",
        ] {
            args.push(std::ffi::OsStr::new(a));
        }
        args.push(dir.path().as_os_str());
        let started = nats_servers::start(args)
            .expect("nats-server became ready (scripts/test.sh installs it)");
        let child = started.child;
        let port = started.port.expect("nats-server named its client port");
        NatsServer {
            child,
            port,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// `kill -9`, and waits until it is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free loopback port for a cluster node, below the kernel's ephemeral range (32768 up):
/// a port the OS hands out for `:0` (a simulator's) is never one a killed node will want
/// back, and a node's never lands on a simulator that is down.
pub fn free_port() -> u16 {
    let mut rng = Rng::new(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ u64::from(std::process::id()),
    );
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    loop {
        let port = 20_000 + rng.below(12_000) as u16;
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = given.get_or_insert_with(HashSet::new).insert(port);
        if fresh && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// One node of a [`NatsCluster`]: its ports and folder stay across a kill and a restart, so
/// it rejoins with its JetStream data, as a till's server does after a power cut.
pub struct Node {
    child: Option<Child>,
    pub port: u16,
    config: std::path::PathBuf,
}

impl Node {
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn start(&mut self) {
        let started = nats_servers::start([std::ffi::OsStr::new("-c"), self.config.as_os_str()])
            .expect("nats-server node became ready (scripts/test.sh installs it)");
        self.child = Some(started.child);
    }

    /// `kill -9`, and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes the server (`SIGSTOP`): its connections stay open, nothing is answered.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    /// Lets a frozen server go on (`SIGCONT`).
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        if let Some(c) = &self.child {
            let done = std::process::Command::new("kill")
                .args(["-s", name, &c.id().to_string()])
                .status()
                .expect("kill");
            assert!(done.success(), "kill -s {name}");
        }
    }
}

/// Three (or N) `nats-server`s clustered on loopback, JetStream on each: the store's
/// servers on three tills.
pub struct NatsCluster {
    pub nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    pub fn start(n: usize) -> NatsCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let mut nodes = Vec::new();
        for (i, (port, cport)) in ports.iter().enumerate() {
            let routes: Vec<String> = ports
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, (_, c))| format!("nats-route://127.0.0.1:{c}"))
                .collect();
            let store = dir.path().join(format!("n{i}"));
            let config = dir.path().join(format!("n{i}.conf"));
            std::fs::write(
                &config,
                format!(
                    "server_name: n{i}\nlisten: 127.0.0.1:{port}\n\
                     jetstream {{ store_dir: \"{}\" }}\n\
                     cluster {{ name: store1, listen: 127.0.0.1:{cport}, routes: [{}] }}\n",
                    store.display(),
                    routes.join(", ")
                ),
            )
            .expect("node config");
            nodes.push(Node {
                child: None,
                port: *port,
                config,
            });
        }
        for node in &mut nodes {
            node.start();
        }
        NatsCluster { nodes, _dir: dir }
    }

    /// Every node's URL, comma-separated, as `[store] nats_url` takes them.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(Node::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    pub fn restart(&mut self, i: usize) {
        self.nodes[i].start();
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
    }
}

/// The chain's claim secret in the store tests.
pub const CODE_KEY: &str = "store-guard-test-key-0123456789abcdef";

impl super::Till {
    /// A coupon-and-card till of the store whose NATS is at `urls` (`[store]`, a 300 ms
    /// claim timeout), its code key beside the config; [`super::Till::sibling`] makes the
    /// store's other tills.
    pub fn in_store(urls: &str, setup: super::Setup) -> super::Till {
        Self::in_named_store("store1", urls, "", setup)
    }

    /// [`super::Till::in_store`] of the store `store`, with more `[store]` keys.
    pub fn in_named_store(
        store: &str,
        urls: &str,
        store_toml: &str,
        setup: super::Setup,
    ) -> super::Till {
        use std::os::unix::fs::PermissionsExt;
        // 300 ms unless `store_toml` says otherwise.
        let timeout = if store_toml.contains("claim_timeout") {
            ""
        } else {
            "claim_timeout = \"300ms\"\n"
        };
        let till = super::Till::with_coupons(super::Setup {
            extra_toml: format!(
                "[store]\nname = \"{store}\"\nnats_url = \"{urls}\"\ncode_key_file = \"code.key\"\n{timeout}{store_toml}\n"
            ),
            ..setup
        });
        let key = till.dir.path().join("code.key");
        std::fs::write(&key, CODE_KEY).expect("code key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        till
    }
}

/// HQ's hub and each store's server as its leaf node, with its own JetStream domain (the
/// store's name), as in production: the leaf dials out to the hub. The hub can be stopped
/// (every store's WAN cut at once) and started again on the same port and data.
pub struct Chain {
    pub hub: Node,
    pub leaves: Vec<(String, Node)>,
    _dir: tempfile::TempDir,
}

impl Chain {
    /// Starts a leaf per store; the hub too when `hub_up`.
    pub fn start(stores: &[&str], hub_up: bool) -> Chain {
        let dir = tempfile::tempdir().expect("tempdir");
        let (hub_port, leaf_port) = (free_port(), free_port());
        let hub_config = dir.path().join("hub.conf");
        std::fs::write(
            &hub_config,
            hub_config_text(hub_port, leaf_port, &dir.path().join("hub")),
        )
        .expect("hub config");
        let mut hub = Node {
            child: None,
            port: hub_port,
            config: hub_config,
        };
        if hub_up {
            hub.start();
        }
        let mut leaves = Vec::new();
        for store in stores {
            let port = free_port();
            let config = dir.path().join(format!("{store}.conf"));
            std::fs::write(
                &config,
                leaf_config(store, port, leaf_port, &dir.path().join(store)),
            )
            .expect("leaf config");
            let mut node = Node {
                child: None,
                port,
                config,
            };
            node.start();
            leaves.push((store.to_string(), node));
        }
        Chain {
            hub,
            leaves,
            _dir: dir,
        }
    }

    pub fn leaf(&mut self, store: &str) -> &mut Node {
        &mut self
            .leaves
            .iter_mut()
            .find(|(s, _)| s == store)
            .expect("a store of the chain")
            .1
    }

    pub fn leaf_url(&self, store: &str) -> String {
        self.leaves
            .iter()
            .find(|(s, _)| s == store)
            .expect("a store of the chain")
            .1
            .url()
    }

    /// Starts a node that was killed (or never started).
    pub fn start_node(node: &mut Node) {
        node.start();
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        self.hub.kill();
        for (_, n) in &mut self.leaves {
            n.kill();
        }
    }
}

/// `redeemd fleet` on a config of its own: the hub, the stores, a read model in a
/// temporary folder, the tests' code key.
pub struct FleetSetup {
    pub dir: tempfile::TempDir,
    pub config: std::path::PathBuf,
}

impl FleetSetup {
    pub fn new(hub_url: &str, stores: &[&str], extra: &str) -> FleetSetup {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("code.key");
        std::fs::write(&key, CODE_KEY).expect("code key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let stores: String = stores
            .iter()
            .map(|s| format!("[[store]]\nname = \"{s}\"\n"))
            .collect();
        let config = dir.path().join("hq.toml");
        std::fs::write(
            &config,
            format!(
                "database = \"fleet/fleet.db\"\ncode_key_file = \"code.key\"\n{extra}\n\
                 [hub]\nnats_url = \"{hub_url}\"\n{stores}\n[http]\nlisten = \"127.0.0.1:0\"\nlanguage = \"en\"\n"
            ),
        )
        .expect("hq.toml");
        FleetSetup { dir, config }
    }

    /// `redeemd fleet`, once its page listens.
    pub fn start(&self, rebuild: bool) -> super::Daemon {
        let mut args: Vec<std::ffi::OsString> = vec![
            "--log-format".into(),
            "json".into(),
            "fleet".into(),
            "--config".into(),
            self.config.clone().into(),
        ];
        if rebuild {
            args.push("--rebuild".into());
        }
        let d = super::Daemon::spawn_args(&args);
        d.wait_event(|e| e["event"] == "http_listening");
        d
    }
}
