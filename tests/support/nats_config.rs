//! The nats-server configs of a hub and its store leaf nodes on loopback, shared by the
//! chain's tests (`tests/support/nats.rs`) and its benchmark (`benches/chain.rs`). Plain
//! functions with no other support code, so the benchmark can include this file alone.

use std::path::Path;

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
