//! HQ's ingest, on real `nats-server`s: a hub and store leaf nodes on loopback.
//!
//!   cargo bench --bench chain            100 tills × 1,000 events, and 1,000,000 rows
//!   cargo bench --bench chain -- --quick small sizes (also what `cargo test --all-targets` runs)
//!
//! 5a. catch-up: every store's stream holds its tills' events from an outage of all stores
//!     (the hub down: the events wait at the leaf nodes); the hub and `redeemd fleet` start,
//!     and the clock runs until the read model holds every row: seconds, and events/s.
//! 5b. memory: `redeemd fleet` over a read model of 1,000,000 rows, after answering its
//!     page's questions: RSS and peak RSS.
//! 5d. notifications: WeChat Pay's notifications (signed and encrypted beforehand) posted
//!     to `redeemd fleet`'s notify listener from 32 connections: kept per second, and the
//!     time from request to 2xx.
//! 5e. the product-coupon registry's size per million coupons (entries as HQ writes them).
//! 5c. what stores know (after 5a): every store's mirror of the chain's redeemed codes
//!     complete after the read model; a code redeemed at one store known in another's
//!     mirror, in steady state and after a hub outage.
//!
//! Skipped when there is no `nats-server` (scripts/test.sh installs it).

use redeemd::fleet::read_model;
use redeemd::model::event::{RowEvent, events_subject, row_msg_id};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CODE_KEY: &str = "bench-chain-code-key-0123456789abcdef";

struct Sizes {
    stores: usize,
    tills_per_store: usize,
    events_per_till: usize,
    model_rows: usize,
    notifications: usize,
    registry_entries: usize,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Starts `nats-server -c config` and waits until it says it is ready.
fn start_server(config: &Path) -> Option<Child> {
    redeemd::sim::nats_servers::start(["-c".as_ref(), config.as_os_str()]).map(|s| s.child)
}

struct Servers {
    hub_config: PathBuf,
    hub_url: String,
    hub: Option<Child>,
    leaves: Vec<(String, String, Child)>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for c in self
            .hub
            .iter_mut()
            .chain(self.leaves.iter_mut().map(|l| &mut l.2))
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The stores' leaf nodes, up; the hub configured and down.
fn servers(dir: &Path, stores: usize) -> Option<Servers> {
    let (hub_port, leaf_port) = (free_port(), free_port());
    let hub_config = dir.join("hub.conf");
    std::fs::write(
        &hub_config,
        redeemd::sim::nats_servers::hub_config(hub_port, leaf_port, &dir.join("hub")),
    )
    .ok()?;
    let mut leaves = Vec::new();
    for i in 0..stores {
        let name = format!("store{i}");
        let port = free_port();
        let config = dir.join(format!("{name}.conf"));
        std::fs::write(
            &config,
            redeemd::sim::nats_servers::leaf_config(&name, port, leaf_port, &dir.join(&name)),
        )
        .ok()?;
        let child = start_server(&config)?;
        leaves.push((name, format!("nats://127.0.0.1:{port}"), child));
    }
    Some(Servers {
        hub_config,
        hub_url: format!("nats://127.0.0.1:{hub_port}"),
        hub: None,
        leaves,
    })
}

fn event(store: &str, till: &str, id: i64, key: &str) -> RowEvent {
    let at = 1_764_000_000_000 + id * 1000;
    RowEvent {
        v: 1,
        store: store.into(),
        till: till.into(),
        id,
        version: 2,
        state: "redeemed".into(),
        reason: None,
        reason_code: None,
        api: Some("card".into()),
        code_last4: format!("{:04}", id % 10_000),
        key: Some(key.into()),
        title: Some("满100减20".into()),
        value: Some(2000),
        order_id: Some(format!("POS-{id}")),
        amount: Some(12_800),
        scans: 1,
        scanned_at: at,
        updated_at: at + 300,
        redeemed_at: Some(at + 300),
        resolution: None,
        resolved_at: None,
        void_state: None,
        guard: Some("claimed".into()),
        transaction_id: None,
        out_trade_no: None,
    }
}

/// Publishes every till's events to its store's stream (as the tills' publishers do, with
/// their message ids), while the hub is down.
async fn fill_stores(s: &Servers, sizes: &Sizes) -> usize {
    let mut total = 0;
    for (store, url, _) in &s.leaves {
        let client = async_nats::connect(url.as_str()).await.expect("leaf");
        let cfg = store_config(store, url);
        redeemd::guard::nats::create_stream(
            &client,
            "$JS.API",
            &redeemd::chain::publisher::stream_config(&cfg),
        )
        .await
        .expect("store stream");
        let js = async_nats::jetstream::new(client);
        let mut acks = Vec::new();
        for t in 0..sizes.tills_per_store {
            // Till names are unique in the merchant.
            let till = format!("{store}-t{t}");
            for id in 1..=sizes.events_per_till as i64 {
                let key = format!("{:064x}", (total as u128) << 8 | 1);
                let body = serde_json::to_vec(&event(store, &till, id, &key)).expect("json");
                let mut h = async_nats::HeaderMap::new();
                h.insert("Nats-Msg-Id", row_msg_id(&till, id, 2).as_str());
                acks.push(
                    js.publish_with_headers(events_subject(store, &till), h, body.into())
                        .await
                        .expect("publish"),
                );
                total += 1;
                if acks.len() >= 2_000 {
                    for a in acks.drain(..) {
                        a.await.expect("stored");
                    }
                }
            }
        }
        for a in acks {
            a.await.expect("stored");
        }
    }
    total
}

fn store_config(name: &str, url: &str) -> redeemd::config::store::StoreConfig {
    redeemd::config::store::StoreConfig {
        name: name.into(),
        nats_urls: vec![url.into()],
        creds_file: None,
        user_file: None,
        nkey_file: None,
        tls_ca_file: None,
        code_key_file: "code.key".into(),
        claim_timeout: Duration::from_millis(300),
        claims_bucket: "redeemd_claims".into(),
        claim_ttl: Duration::from_secs(86_400),
        status_interval: Duration::from_secs(30),
    }
}

/// `redeemd fleet` on hq.toml in `dir`: the child and its page's address.
fn start_fleet(dir: &Path, hub_url: &str, stores: &[String]) -> (Child, String) {
    let key = dir.join("code.key");
    std::fs::write(&key, CODE_KEY).expect("key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let stores: String = stores
        .iter()
        .map(|s| format!("[[store]]\nname = \"{s}\"\n"))
        .collect();
    let config = dir.join("hq.toml");
    std::fs::write(
        &config,
        format!(
            "database = \"fleet.db\"\ncode_key_file = \"code.key\"\n[hub]\nnats_url = \"{hub_url}\"\n{stores}[http]\nlisten = \"127.0.0.1:0\"\n"
        ),
    )
    .expect("hq.toml");
    spawn_fleet(&config, None)
}

/// `redeemd fleet --config config`, and the address its listener `server` (its page when
/// `None`: the first) says it listens on.
fn spawn_fleet(config: &Path, server: Option<&str>) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_redeemd"))
        .args(["--log-format", "json", "fleet", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("redeemd fleet");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut address = None;
    for line in lines.by_ref().map_while(Result::ok) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
            && v["event"] == "http_listening"
            && server.is_none_or(|s| v["server"] == s)
        {
            address = v["address"].as_str().map(String::from);
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (child, address.expect("the fleet listens"))
}

fn get(url: &str) -> String {
    let (host, path) = url
        .trim_start_matches("http://")
        .split_once('/')
        .map(|(h, p)| (h.to_string(), format!("/{p}")))
        .expect("url");
    let mut s = std::net::TcpStream::connect(&host).expect("connect");
    use std::io::{Read, Write};
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

fn rows_in_model(base: &str) -> u64 {
    get(&format!("{base}/metrics"))
        .lines()
        .find(|l| l.starts_with("redeemd_fleet_rows "))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn catch_up(sizes: &Sizes) {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(mut s) = servers(dir.path(), sizes.stores) else {
        println!("5a. skipped: no nats-server (scripts/test.sh installs it)");
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let total = rt.block_on(fill_stores(&s, sizes));
    s.hub = start_server(&s.hub_config);
    let stores: Vec<String> = s.leaves.iter().map(|l| l.0.clone()).collect();
    let t0 = Instant::now();
    let (mut fleet, base) = start_fleet(dir.path(), &s.hub_url, &stores);
    let mut first = None;
    loop {
        let n = rows_in_model(&base);
        if n > 0 && first.is_none() {
            first = Some(t0.elapsed());
        }
        if n as usize >= total {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "caught up {n} of {total}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = t0.elapsed();
    let rss = kb(fleet.id(), "VmHWM:");
    // Every code is redeemed once: each store's mirror is complete at `total` keys.
    let mirrors_done = loop {
        let counts: Vec<u64> = s
            .leaves
            .iter()
            .map(|l| rt.block_on(mirror_count(&l.1)))
            .collect();
        if counts.iter().all(|c| *c as usize >= total) {
            break t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(900),
            "mirrors at {counts:?} of {total}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let freshness = freshness(&rt, &mut s);
    let _ = fleet.kill();
    let _ = fleet.wait();
    println!(
        "5a. catch-up after an outage of all stores ({} stores × {} tills × {} events = {total} buffered at the leaf nodes): {:.1} s from the fleet's start to the last row, {:.0} events/s overall; the first row after {:.1} s (links and sources coming up), then {:.0} events/s; peak RSS {:.1} MB",
        sizes.stores,
        sizes.tills_per_store,
        sizes.events_per_till,
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64(),
        first.unwrap_or_default().as_secs_f64(),
        total as f64 / (took - first.unwrap_or_default()).as_secs_f64().max(0.001),
        rss as f64 / 1024.0
    );
    println!(
        "5c. what stores know: every store's mirror of redeemd_redeemed complete {:.1} s after the read model; a code redeemed at store0 in store1's mirror after {:.0} ms in steady state, and {:.1} s after the hub's return from an outage (the hub's start included)",
        mirrors_done.saturating_sub(took).as_secs_f64(),
        freshness.0.as_secs_f64() * 1000.0,
        freshness.1.as_secs_f64(),
    );
}

/// Messages in a store's mirror of `redeemd_redeemed` (0 while it is not there).
async fn mirror_count(url: &str) -> u64 {
    let Ok(c) = async_nats::connect(url).await else {
        return 0;
    };
    let Ok(r) = c
        .request("$JS.API.STREAM.INFO.KV_redeemd_redeemed", "".into())
        .await
    else {
        return 0;
    };
    serde_json::from_slice::<serde_json::Value>(&r.payload)
        .ok()
        .and_then(|v| v["state"]["messages"].as_u64())
        .unwrap_or(0)
}

/// How long ago a store's mirror last heard from the hub.
async fn mirror_silent_for(url: &str) -> Duration {
    let c = async_nats::connect(url).await.expect("leaf");
    let r = c
        .request("$JS.API.STREAM.INFO.KV_redeemd_redeemed", "".into())
        .await
        .expect("stream info");
    let v: serde_json::Value = serde_json::from_slice(&r.payload).expect("json");
    Duration::from_nanos(v["mirror"]["active"].as_u64().unwrap_or(0))
}

/// A till of store0 redeems one more code (its event published to store0's stream, where
/// it waits if the hub is away); how long until store1's mirror holds it.
async fn redeemed_at_store0_known_at_store1(s: &Servers, id: i64) -> Duration {
    let t = Instant::now();
    let (store0, store1) = (&s.leaves[0], &s.leaves[1]);
    let key = format!("{:064x}", u128::MAX - id as u128);
    let js = async_nats::jetstream::new(async_nats::connect(&store0.1).await.expect("leaf"));
    let till = format!("{}-fresh", store0.0);
    let body = serde_json::to_vec(&event(&store0.0, &till, id, &key)).expect("json");
    let mut h = async_nats::HeaderMap::new();
    h.insert("Nats-Msg-Id", row_msg_id(&till, id, 2).as_str());
    js.publish_with_headers(events_subject(&store0.0, &till), h, body.into())
        .await
        .expect("publish")
        .await
        .expect("stored at the store");
    let c = async_nats::connect(&store1.1).await.expect("leaf");
    let lookup = redeemd::guard::redeemed::Lookup::new(c, Duration::from_secs(1));
    while !matches!(lookup.find(&key).await, Ok(Some(_))) {
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "never known at store1"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    t.elapsed()
}

/// Store1's knowledge of a code store0 redeemed: in steady state, then after a hub outage
/// long enough for the mirrors to lose their source (timed from the hub's restart).
fn freshness(rt: &tokio::runtime::Runtime, s: &mut Servers) -> (Duration, Duration) {
    let steady = rt.block_on(redeemed_at_store0_known_at_store1(s, 1_000_001));
    if let Some(mut hub) = s.hub.take() {
        let _ = hub.kill();
        let _ = hub.wait();
    }
    let t = Instant::now();
    while rt.block_on(mirror_silent_for(&s.leaves[1].1)) < Duration::from_secs(4) {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the outage unnoticed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let back = Instant::now();
    s.hub = start_server(&s.hub_config);
    rt.block_on(redeemed_at_store0_known_at_store1(s, 1_000_002));
    (steady, back.elapsed())
}

fn memory(sizes: &Sizes) {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(mut s) = servers(dir.path(), 1) else {
        println!("5b. skipped: no nats-server");
        return;
    };
    {
        let conn = read_model::open(&dir.path().join("fleet.db")).expect("model");
        let tx = conn.unchecked_transaction().expect("tx");
        for i in 0..sizes.model_rows as i64 {
            let till = format!("store0-t{}", i % 100);
            let e = event("store0", &till, i / 100 + 1, &format!("{i:064x}"));
            read_model::apply_row(&tx, &e, e.updated_at).expect("apply");
        }
        tx.commit().expect("commit");
    }
    s.hub = start_server(&s.hub_config);
    let (mut fleet, base) = start_fleet(dir.path(), &s.hub_url, &["store0".to_string()]);
    let t = Instant::now();
    for path in [
        "/v1/fleet/tills",
        "/v1/fleet/redemptions?limit=100",
        "/v1/fleet/redemptions?state=redeemed&since=2025-01-01&limit=100",
        "/metrics",
    ] {
        get(&format!("{base}{path}"));
    }
    let answered = t.elapsed();
    let pid = fleet.id();
    let (rss, peak) = (kb(pid, "VmRSS:"), kb(pid, "VmHWM:"));
    let _ = fleet.kill();
    let _ = fleet.wait();
    println!(
        "5b. redeemd fleet over a read model of {} rows: RSS {:.1} MB, peak {:.1} MB; the page's four questions answered in {:.2} s",
        sizes.model_rows,
        rss as f64 / 1024.0,
        peak as f64 / 1024.0,
        answered.as_secs_f64()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--quick");
    let sizes = if full {
        Sizes {
            stores: 4,
            tills_per_store: 25,
            events_per_till: 1_000,
            model_rows: 1_000_000,
            notifications: 20_000,
            registry_entries: 100_000,
        }
    } else {
        Sizes {
            stores: 2,
            tills_per_store: 2,
            events_per_till: 50,
            model_rows: 2_000,
            notifications: 300,
            registry_entries: 2_000,
        }
    };
    println!("redeemd chain benchmarks ({})", run_kind(full));
    catch_up(&sizes);
    memory(&sizes);
    notifications(&sizes);
    registry_size(&sizes);
}

/// What kind of run prints these figures: only a full run of an optimised build measures;
/// the test suite's quick debug run is a smoke test whose figures are not comparable.
fn run_kind(full: bool) -> &'static str {
    match (full, cfg!(debug_assertions)) {
        (true, false) => "full run",
        (false, false) => "quick run: small sizes",
        (_, true) => "debug build, a smoke test: the figures are not comparable to the targets",
    }
}

/// WeChat Pay's key id in the notify benchmark.
const PAY_KEY_ID: &str = "PUB_KEY_ID_0114232134912410000000000000";
const APIV3: &[u8] = b"0123456789abcdef0123456789ABCDEF";

fn private(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("key");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// `redeemd fleet` with `[notify]`; the child and the notify URL.
fn start_fleet_notify(dir: &Path, hub_url: &str, wechatpay_spki: &[u8]) -> (Child, String) {
    use redeemd::sim::pay::{generate_key, pem};
    let (_, brand) = generate_key().expect("brand key");
    std::fs::write(dir.join("pub_key.pem"), pem("PUBLIC KEY", wechatpay_spki)).expect("pub key");
    private(
        &dir.join("brand_key.pem"),
        pem("PRIVATE KEY", &brand).as_bytes(),
    );
    private(&dir.join("apiv3.key"), APIV3);
    private(&dir.join("code.key"), CODE_KEY.as_bytes());
    let config = dir.join("hq.toml");
    std::fs::write(
        &config,
        format!(
            "database = \"fleet.db\"\ncode_key_file = \"code.key\"\n[hub]\nnats_url = \"{hub_url}\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\n[notify]\nlisten = \"127.0.0.1:0\"\nmode = \"brand\"\n\
             brand_id = \"120344\"\nappid = \"wx_bench\"\nserial_no = \"5157F09EFDC096DE\"\n\
             private_key_file = \"brand_key.pem\"\npublic_key_id = \"{PAY_KEY_ID}\"\n\
             public_key_file = \"pub_key.pem\"\napiv3_key_file = \"apiv3.key\"\n\
             base_url = \"http://127.0.0.1:9\"\n"
        ),
    )
    .expect("hq.toml");
    let (child, address) = spawn_fleet(&config, Some("WeChat Pay notifications"));
    (child, format!("{address}/v1/wechatpay/notify"))
}

fn notifications(sizes: &Sizes) {
    use redeemd::sim::notifier::{Notice, Notifier};
    use redeemd::sim::pay::generate_key;
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(mut s) = servers(dir.path(), 0) else {
        println!("5d. skipped: no nats-server");
        return;
    };
    s.hub = start_server(&s.hub_config);
    let (signer, der) = generate_key().expect("WeChat Pay's key");
    let spki = redeemd::wechatpay::pay_sign::Signer::from_pkcs8_der(&der)
        .and_then(|k| k.public_spki_der())
        .expect("spki");
    let (mut fleet, url) = start_fleet_notify(dir.path(), &s.hub_url, &spki);
    let notifier = Notifier::new(signer, PAY_KEY_ID, APIV3, &url).expect("notifier");
    // Built and signed beforehand: WeChat Pay's work is not HQ's.
    let now = chrono::Utc::now().timestamp();
    let notices: Vec<Notice> = (0..sizes.notifications)
        .map(|i| {
            let resource = serde_json::json!({
                "coupon_code": format!("PC{i:010}"),
                "product_coupon_id": "1000000013",
                "stock_id": "1000000013001",
                "openid": "oBenchUser",
                "use_time": "2026-12-05T12:00:00+08:00",
            });
            let body = notifier
                .body(&format!("EV-BENCH-{i}"), "PRODUCT_COUPON.USE", &resource)
                .expect("body");
            notifier.sign(body, now).expect("signed")
        })
        .collect();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let notifier = std::sync::Arc::new(notifier);
    let queue = std::sync::Arc::new(std::sync::Mutex::new(notices));
    let t0 = Instant::now();
    let mut latencies: Vec<Duration> = rt.block_on(async {
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let (n, q) = (notifier.clone(), queue.clone());
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    loop {
                        let next = q.lock().ok().and_then(|mut q| q.pop());
                        let Some(notice) = next else { break };
                        let t = Instant::now();
                        let status = n.post(&notice).await;
                        assert!(
                            status.is_some_and(|s| (200..300).contains(&s)),
                            "answered {status:?}"
                        );
                        mine.push(t.elapsed());
                    }
                    mine
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("poster"));
        }
        all
    });
    let took = t0.elapsed();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1000.0
    };
    let _ = fleet.kill();
    let _ = fleet.wait();
    println!(
        "5d. notifications: {} kept in {:.1} s, {:.0}/s from 32 connections; request to 2xx p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        took.as_secs_f64(),
        latencies.len() as f64 / took.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
    );
}

fn registry_size(sizes: &Sizes) {
    use redeemd::model::product_coupon::{CouponState, Details, Entry};
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(mut s) = servers(dir.path(), 0) else {
        println!("5e. skipped: no nats-server");
        return;
    };
    s.hub = start_server(&s.hub_config);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let bytes = rt.block_on(async {
        let client = async_nats::connect(s.hub_url.as_str()).await.expect("hub");
        redeemd::fleet::streams::ensure_product_coupon_bucket(&client)
            .await
            .expect("bucket");
        let js = async_nats::jetstream::new(client.clone());
        let mut acks = Vec::new();
        for i in 0..sizes.registry_entries {
            let e = Entry {
                state: CouponState::Effective,
                state_at: "2026-12-04T10:00:01+08:00".into(),
                state_rank: 1,
                last4: format!("{:04}", i % 10_000),
                openid: Some(format!("oUser{i:024}")),
                product_coupon_id: Some("1000000013".into()),
                stock_id: Some("1000000013001".into()),
                valid_begin_time: Some("2026-12-04T00:00:00+08:00".into()),
                valid_end_time: Some("2026-12-31T23:59:59+08:00".into()),
                details: Details {
                    appid: Some("wx0123456789abcdef".into()),
                    title: Some("拿铁兑换券".into()),
                    value: Some(3200),
                    usage_mode: Some("SINGLE".into()),
                    store_scope: Some("ALL".into()),
                    store_ids: None,
                },
            };
            let key = format!("{:064x}", i as u128 * 0x9e37_79b9_7f4a_7c15);
            acks.push(
                js.publish(
                    redeemd::guard::product_coupons::subject(&key),
                    serde_json::to_vec(&e).expect("json").into(),
                )
                .await
                .expect("publish"),
            );
            if acks.len() >= 2_000 {
                for a in acks.drain(..) {
                    a.await.expect("stored");
                }
            }
        }
        for a in acks {
            a.await.expect("stored");
        }
        let r = client
            .request(
                format!(
                    "$JS.API.STREAM.INFO.{}",
                    redeemd::guard::product_coupons::stream()
                ),
                "".into(),
            )
            .await
            .expect("info");
        let v: serde_json::Value = serde_json::from_slice(&r.payload).expect("json");
        v["state"]["bytes"].as_u64().unwrap_or(0)
    });
    let per_entry = bytes as f64 / sizes.registry_entries as f64;
    println!(
        "5e. the product-coupon registry: {} entries take {:.1} MB on the hub ({per_entry:.0} B each): {:.0} MB per million coupons, and as much in each store's mirror",
        sizes.registry_entries,
        bytes as f64 / 1e6,
        per_entry * 1e6 / 1e6,
    );
}
