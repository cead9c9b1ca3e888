//! redeemd's performance figures against the targets in the README.
//!
//!   cargo bench --bench figures            full run (release build), writes docs/drain.svg
//!   cargo bench --bench figures -- --quick  small sizes
//!   cargo bench --bench figures -- drain    only the named ones (record, online, drain, footprint)
//!
//! Under `cargo test --all-targets` it runs the quick sizes as a smoke test (debug build:
//! the figures then only show that each benchmark works).
//!
//! 1. scan → durable record, against a bare SQLite insert+commit with the same pragmas;
//! 2. scan → outcome online with a simulator answering at once: overhead above the API calls;
//! 3. backlog drain against a rate limit the daemon is not told (20 ms latency, 400 calls/s),
//!    1,000 and 10,000 codes (`DRAIN_TRACE=1` prints codes/s, the limit and refusals every
//!    250 ms);
//! 4. footprint: the daemon's memory (peak, anonymous and file pages) through the start on a
//!    large ledger and the drain of a 1,000-code backlog, the binary's size, idle CPU after,
//!    and `redeemd log` over the ledger.
//!
//! `online_guard` (2g) is benchmark 2 with the store guard on a local `nats-server` (started
//! here; skipped when there is none), and the chain's publisher sending the outbox to it:
//! the overhead including the claim, and the claim's own time.
//!
//! `product_coupons` (2p) is benchmark 2 for product coupons, on such a server holding the
//! store's registry: scan → held (the claim, the registry lookup, the checks, the commit),
//! then order → redeemed (the use at the simulated WeChat Pay answering at once), each
//! step's overhead above its API calls; back to back, or `SCAN_GAP_MS` apart.

#[path = "figures/product_coupons.rs"]
mod product_coupons;

use redeemd::clock::{SharedClock, SystemClock};
use redeemd::config::Config;
use redeemd::config::store::StoreConfig;
use redeemd::guard::bucket::{Claim, ClaimBucket};
use redeemd::ledger::Ledger;
use redeemd::ledger::note_file::NoteFile;
use redeemd::metrics::Metrics;
use redeemd::model::claim::ClaimValue;
use redeemd::model::claim_key::CodeKey;
use redeemd::model::scan::Scan;
use redeemd::outcome::Bus;
use redeemd::redeem::Ctx;
use redeemd::redeem::dispatcher::Dispatcher;
use redeemd::redeem::intake::Intake;
use redeemd::redeem::orders::Orders;
use redeemd::redeem::prefetch::Prefetcher;
use redeemd::redeem::product_coupon::ProductCouponApi;
use redeemd::redeem::store_guard::StoreGuard;
use redeemd::scanner::frame::Framer;
use redeemd::sim::card::CardFaults;
use redeemd::sim::card::CardSim;
use redeemd::sim::card::SimCode;
use redeemd::sim::http::SimServer;
use redeemd::wechat::card::CardApi;
use redeemd::wechat::token::{TokenManager, TokenSource};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

const APPID: &str = "wx_bench";
const SECRET: &str = "bench-secret";

struct Sizes {
    record: usize,
    online: usize,
    drain: &'static [usize],
    footprint_rows: usize,
    footprint_drain: usize,
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    if s.is_empty() {
        return 0.0;
    }
    s[((s.len() - 1) as f64 * p).round() as usize]
}

fn config(dir: &Path, sim_url: &str) -> Config {
    let secret = dir.join("appsecret");
    std::fs::write(&secret, SECRET).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = format!(
        r#"database = "bench.db"
till = "bench-till"
[[scanner]]
name = "bench"
type = "stdin"
[wechat]
appid = "{APPID}"
secret_file = "appsecret"
base_url = "{sim_url}"
[[route]]
pattern = "[0-9]{{12}}"
api = "card"
[retry]
base_delay = "20ms"
max_delay = "500ms"
[offline]
accept = true
online_wait = "2s"
max_pending = 1000000
[http]
listen = "127.0.0.1:0"
"#
    );
    let path = dir.join("redeemd.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path).unwrap()
}

struct Pipeline {
    intake: Intake,
    metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    /// Held product coupons meet their orders, as the API's order call does it.
    orders: Orders,
}

/// The daemon's pieces, in this process: ledger, intake, and (with a simulator) the
/// dispatcher with the card API.
fn pipeline(cfg: &Config, db: &Path, sim_url: Option<&str>) -> Pipeline {
    pipeline_with(cfg, db, sim_url, None, None)
}

/// [`pipeline`], with the store guard, and with product coupons used through `product_coupon`.
fn pipeline_with(
    cfg: &Config,
    db: &Path,
    sim_url: Option<&str>,
    guard: Option<Arc<StoreGuard>>,
    product_coupon: Option<Arc<ProductCouponApi>>,
) -> Pipeline {
    let clock: SharedClock = Arc::new(SystemClock);
    // As the daemon does at its start: only a till with [store] fills the chain's outbox.
    let mut conn = redeemd::ledger::schema::open_rw(db).unwrap();
    redeemd::ledger::events::set_publishing(&mut conn, guard.is_some()).unwrap();
    drop(conn);
    let ledger = Ledger::open(db).unwrap();
    let bus = Bus::new();
    let (new_rows, new_rows_rx) = redeemd::redeem::new_rows();
    let metrics = Arc::new(Metrics::default());
    let (stop, stop_rx) = watch::channel(false);
    let mut prefetch = None;
    let catalog = Arc::new(redeemd::redeem::catalog::Catalog::in_memory());
    let orders = Orders {
        ledger: ledger.clone(),
        clock: clock.clone(),
        bus: bus.clone(),
        new_rows: new_rows.clone(),
        till: cfg.till.clone(),
        online_wait: cfg.offline.online_wait,
    };
    let ctx = Ctx {
        ledger: ledger.clone(),
        clock: clock.clone(),
        retry: cfg.retry.clone(),
        metrics: metrics.clone(),
        catalog: catalog.clone(),
        routes: Arc::new(cfg.routes.clone()),
    };
    if product_coupon.is_some() {
        let d = Dispatcher {
            ctx: ctx.clone(),
            card: None,
            coupon: None,
            product_coupon,
            max_age: cfg.offline.max_age,
            bus: bus.clone(),
            drain_jitter: Duration::ZERO,
            prefetch: None,
        };
        tokio::spawn(d.run(new_rows_rx, stop_rx));
    } else if let Some(url) = sim_url {
        let http = reqwest::Client::new();
        let tokens = Arc::new(TokenManager::new(
            http.clone(),
            TokenSource::Stable {
                url: format!("{url}/cgi-bin/stable_token"),
            },
            APPID.into(),
            cfg.wechat.as_ref().unwrap().secret_file.clone(),
        ));
        let card = Arc::new(CardApi::new(http, url, tokens));
        prefetch = Some(
            Prefetcher::new(
                card.clone(),
                ledger.clone(),
                db,
                clock.clone(),
                metrics.clone(),
            )
            .unwrap(),
        );
        let d = Dispatcher {
            ctx,
            card: Some(card),
            coupon: None,
            product_coupon: None,
            max_age: cfg.offline.max_age,
            bus: bus.clone(),
            drain_jitter: Duration::ZERO,
            prefetch: prefetch.clone(),
        };
        tokio::spawn(d.run(new_rows_rx, stop_rx));
    }
    if let Some(g) = &guard {
        tokio::spawn(g.clone().follow(ledger.clone(), 0));
        // The chain's publisher, as a till with [store] runs it: the outbox goes to the
        // store's stream while the scans are measured.
        let store = store_config("nats://127.0.0.1:4222");
        let till = redeemd::chain::publisher::TillParts {
            store: &store,
            name: "bench-till",
            code_key: CodeKey::from_bytes(b"bench-code-key-0123456789abcdef-0123").unwrap(),
            database: db,
        };
        let publisher = redeemd::chain::publisher::Publisher::new(
            g.nats(),
            ledger.clone(),
            till,
            metrics.clone(),
            clock.clone(),
        )
        .unwrap();
        tokio::spawn(publisher.run(stop.subscribe()));
    }
    Pipeline {
        intake: Intake::new(
            ledger,
            clock,
            Arc::new(cfg.clone()),
            new_rows,
            prefetch,
            bus,
            catalog,
        )
        .with_guard(guard),
        metrics,
        stop,
        orders,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Ours and the bare insert take turns, scan by scan, so that both meet the same state of
/// the disk and the machine. The first tenth is not measured: both sides then meet the
/// start's noise (a cold page cache, threads still starting), which made p99 a draw.
async fn bench_record(dir: &Path, cfg: &Config, n: usize) -> (f64, f64, f64, f64) {
    let warm_up = n / 10;
    let p = pipeline(cfg, &dir.join("b1.db"), None);
    let mut framer = Framer::new(false);
    let mut conn = rusqlite::Connection::open(dir.join("bare.db")).unwrap();
    conn.pragma_update(None, "page_size", redeemd::ledger::schema::PAGE_SIZE)
        .unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, code TEXT NOT NULL UNIQUE, state TEXT, scanned_at INTEGER)",
    )
    .unwrap();
    let mut ours = Vec::with_capacity(n);
    let mut bare = Vec::with_capacity(n);
    for i in 0..warm_up + n {
        let line = format!("{:012}\r\n", 100_000_000 + i);
        let t0 = Instant::now();
        for frame in framer.push(line.as_bytes()) {
            let scan = Scan {
                scanner: "bench".into(),
                frame,
                at: chrono::Utc::now().timestamp_millis(),
                sale: Default::default(),
            };
            let _pending = p.intake.record(scan).await;
        }
        let our_ms = ms(t0.elapsed());

        let t0 = Instant::now();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .unwrap();
        tx.prepare_cached("INSERT INTO t (code, state, scanned_at) VALUES (?1, 'queued', ?2)")
            .unwrap()
            .execute(rusqlite::params![format!("{:012}", i), i as i64])
            .unwrap();
        tx.commit().unwrap();
        if i >= warm_up {
            ours.push(our_ms);
            bare.push(ms(t0.elapsed()));
        }
    }
    (
        percentile(&ours, 0.5),
        percentile(&ours, 0.99),
        percentile(&bare, 0.5),
        percentile(&bare, 0.99),
    )
}

async fn bench_online(dir: &Path, cfg: &Config, sim: &CardSim, url: &str, n: usize) -> Online {
    bench_online_with(dir, cfg, sim, url, n, None, "b2.db").await
}

async fn bench_online_with(
    dir: &Path,
    cfg: &Config,
    sim: &CardSim,
    url: &str,
    n: usize,
    guard: Option<Arc<StoreGuard>>,
    db: &str,
) -> Online {
    let offset = if guard.is_some() {
        500_000_000
    } else {
        200_000_000
    };
    let p = pipeline_with(cfg, &dir.join(db), Some(url), guard, None);
    // Not measured: the first scans after a start also pay for one-time work (the token,
    // the HTTP connection, compiling the ledger's statements, a cold page cache).
    let warm_up = n / 10;
    let mut out = Online {
        measured: Vec::with_capacity(n),
        warm_up: Vec::with_capacity(warm_up),
    };
    for i in 0..warm_up + n {
        let code = format!("{:012}", offset + i);
        sim.add_code(&code, SimCode::normal("pBENCH"));
        let before = p.metrics.call_seconds_total();
        let t0 = Instant::now();
        let pending = p
            .intake
            .record(Scan {
                scanner: "bench".into(),
                frame: redeemd::model::frame::Frame::Code {
                    code: code.into(),
                    aim_id: None,
                },
                at: chrono::Utc::now().timestamp_millis(),
                sale: Default::default(),
            })
            .await;
        let o = p.intake.answer(pending).await;
        let total = ms(t0.elapsed());
        assert_eq!(o.outcome.as_str(), "redeemed");
        let api = (p.metrics.call_seconds_total() - before) * 1000.0;
        if i >= warm_up {
            out.measured.push((total, api));
        } else {
            out.warm_up.push((total, api));
        }
    }
    let _ = p.stop.send(true);
    out
}

/// Per scan online, (total ms, ms spent in API calls): the measured scans, and the first
/// ones after the start, which are not.
struct Online {
    measured: Vec<(f64, f64)>,
    warm_up: Vec<(f64, f64)>,
}

/// The overhead of each scan: its time outside the API calls.
fn overheads(scans: &[(f64, f64)]) -> Vec<f64> {
    scans.iter().map(|o| (o.0 - o.1).max(0.0)).collect()
}

struct Drain {
    seconds: f64,
    codes_per_s: f64,
    calls_per_s: f64,
    limited_pct: f64,
    samples: Vec<(f64, f64, usize)>,
}

async fn bench_drain(dir: &Path, cfg: &Config, sim: &CardSim, url: &str, n: usize) -> Drain {
    let db = dir.join(format!("b3-{n}.db"));
    {
        // The backlog: n queued rows, written directly (a fixture, not the code under test).
        let mut conn = redeemd::ledger::schema::open_rw(&db).unwrap();
        let tx = conn.transaction().unwrap();
        let now = chrono::Utc::now().timestamp_millis();
        for i in 0..n {
            let code = format!("{:012}", 300_000_000_000 + n * 100_000 + i);
            sim.add_code(&code, SimCode::normal("pBENCH"));
            tx.execute(
                "INSERT INTO redemptions (code, api, route, state, scanner, till, scanned_at, updated_at, next_attempt_at) \
                 VALUES (?1, 'card', 0, 'queued', 'bench', 'bench-till', ?2, ?2, ?2)",
                rusqlite::params![code, now + i as i64],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    sim.set_faults(CardFaults {
        latency: Duration::from_millis(20),
        rate_limit: Some(400),
        ..CardFaults::default()
    });
    let calls0 = sim.calls();
    let consumed0 = sim.consumed().len();
    let t0 = Instant::now();
    let p = pipeline(cfg, &db, Some(url));
    let mut samples = Vec::new();
    let mut last = (0.0, 0usize);
    let deadline = t0 + Duration::from_secs(30 + (n as u64) / 100);
    // The end is found within 10 ms (a short drain lasts a few seconds); the plot samples
    // every 250 ms.
    let mut seconds;
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let done = sim.consumed().len() - consumed0;
        seconds = t0.elapsed().as_secs_f64();
        if seconds - last.0 >= 0.25 || done >= n {
            let rate = (done - last.1) as f64 / (seconds - last.0);
            samples.push((seconds, rate, p.metrics.concurrency("card").unwrap_or(0)));
            if std::env::var_os("DRAIN_TRACE").is_some() {
                eprintln!(
                    "  t {seconds:.2}: limited so far {}",
                    sim.calls().rate_limited - calls0.rate_limited
                );
            }
            last = (seconds, done);
        }
        if done >= n || Instant::now() > deadline {
            break;
        }
    }
    let _ = p.stop.send(true);
    if std::env::var_os("DRAIN_TRACE").is_some() {
        for (t, r, c) in &samples {
            eprintln!("  t {t:.2} s: {r:.0} codes/s, limit {c}");
        }
    }
    let c = sim.calls();
    let calls = (c.get + c.consume) - (calls0.get + calls0.consume);
    let limited = c.rate_limited - calls0.rate_limited;
    sim.set_faults(CardFaults::default());
    Drain {
        seconds,
        codes_per_s: (sim.consumed().len() - consumed0) as f64 / seconds,
        calls_per_s: (calls - limited) as f64 / seconds,
        limited_pct: 100.0 * limited as f64 / calls.max(1) as f64,
        samples,
    }
}

fn svg(d: &Drain, limit: f64) -> String {
    let (w, h, pad) = (720.0, 330.0, 50.0);
    let tmax = d.samples.last().map(|s| s.0).unwrap_or(1.0).max(1.0);
    let cmax = d.samples.iter().map(|s| s.2).max().unwrap_or(1).max(1) as f64 * 1.2;
    let ymax = limit / 2.0 * 1.3;
    let x = |t: f64| pad + (w - 2.0 * pad) * t / tmax;
    let y = |v: f64, max: f64| h - pad - (h - 2.0 * pad) * (v / max).min(1.0);
    let rate: Vec<String> = d
        .samples
        .iter()
        .map(|s| format!("{:.1},{:.1}", x(s.0), y(s.1, ymax)))
        .collect();
    let conc: Vec<String> = d
        .samples
        .iter()
        .map(|s| format!("{:.1},{:.1}", x(s.0), y(s.2 as f64, cmax)))
        .collect();
    let ideal = y(limit / 2.0, ymax);
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#fff"/>
<text x="{pad}" y="18">Backlog drain: codes/s (blue, left scale) and adaptive concurrency (orange, right scale)</text>
<text x="{pad}" y="34" fill="#555">dashed: the limit, 200 codes/s (400 calls/s, 2 calls a code), which the daemon is not told</text>
<line x1="{pad}" y1="{ideal:.1}" x2="{x2:.1}" y2="{ideal:.1}" stroke="#999" stroke-dasharray="4 4"/>
<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="{rate}"/>
<polyline fill="none" stroke="#d97706" stroke-width="2" points="{conc}"/>
<line x1="{pad}" y1="{yb:.1}" x2="{x2:.1}" y2="{yb:.1}" stroke="#333"/>
<text x="{pad}" y="{yl:.1}">0 s</text><text x="{x2:.1}" y="{yl:.1}" text-anchor="end">{tmax:.0} s</text>
<text x="5" y="{yt:.1}" fill="#1f6feb">{ymax:.0}/s</text><text x="{x2r:.1}" y="{yt:.1}" fill="#d97706" text-anchor="end">{cmax:.0}</text>
</svg>
"##,
        x2 = w - pad,
        yb = h - pad,
        yl = h - pad + 16.0,
        yt = pad,
        x2r = w - 5.0,
        rate = rate.join(" "),
        conc = conc.join(" "),
    )
}

/// What benchmark 4 measures of the daemon's memory, in KiB (`/proc/<pid>/status`).
struct Memory {
    /// At the end of the drain.
    rss: u64,
    anon: u64,
    file: u64,
    /// The peak over the start and the drain (VmHWM).
    peak: u64,
}

fn status_kb(pid: u32) -> impl Fn(&str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    move |key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// The daemon on a ledger of `rows` redeemed rows and `drain` queued ones the simulator
/// knows: its memory once the backlog is drained (and at its peak), its CPU while idle
/// after, and `redeemd log --json` over the ledger.
fn bench_footprint(
    dir: &Path,
    cfg: &Config,
    sim: &CardSim,
    rows: usize,
    drain: usize,
) -> (Memory, u64, f64) {
    let db = dir.join("bench.db");
    let _ = std::fs::remove_file(&db);
    {
        let mut conn = redeemd::ledger::schema::open_rw(&db).unwrap();
        let tx = conn.transaction().unwrap();
        for i in 0..rows {
            tx.execute(
                "INSERT INTO redemptions (code, api, route, state, reason, attempts, scanner, till, scanned_at, updated_at, redeemed_at) \
                 VALUES (?1, 'card', 0, 'redeemed', NULL, 1, 'front', 'bench-till', ?2, ?2, ?2)",
                rusqlite::params![format!("{:012}", 400_000_000 + i), 1_700_000_000_000i64 + i as i64],
            )
            .unwrap();
        }
        let now = chrono::Utc::now().timestamp_millis();
        for i in 0..drain {
            let code = format!("{:012}", 600_000_000 + i);
            sim.add_code(&code, SimCode::normal("pBENCH"));
            tx.execute(
                "INSERT INTO redemptions (code, api, route, state, till_outcome, scanner, till, scanned_at, updated_at, next_attempt_at) \
                 VALUES (?1, 'card', 0, 'queued', 'accepted_offline', 'front', 'bench-till', ?2, ?2, ?2)",
                rusqlite::params![code, now],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    let bin = env!("CARGO_BIN_EXE_redeemd");
    let mut child = Command::new(bin)
        .args(["--log-format", "json", "run", "--config"])
        .arg(&cfg.source)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("\"event\":\"ready\"") => break,
            Some(Ok(line)) => seen.push(line),
            _ => panic!("the daemon did not start:\n{}", seen.join("\n")),
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let pid = child.id();
    let reader = redeemd::ledger::schema::open_ro(&db).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let queued: i64 = reader
            .query_row(
                "SELECT count(*) FROM redemptions WHERE state = 'queued'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        if queued == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(reader);
    std::thread::sleep(Duration::from_secs(1));
    let kb = status_kb(pid);
    let memory = Memory {
        rss: kb("VmRSS:"),
        anon: kb("RssAnon:"),
        file: kb("RssFile:"),
        peak: kb("VmHWM:"),
    };
    let ticks = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    };
    let t0 = ticks();
    std::thread::sleep(Duration::from_secs(3));
    let idle = ticks() - t0;
    let _ = child.kill();
    let _ = child.wait();
    let t = Instant::now();
    let out = Command::new(bin)
        .args(["log", "--json", "--config"])
        .arg(&cfg.source)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(out.success());
    (memory, idle, t.elapsed().as_secs_f64())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--quick");
    // Names select benchmarks (`-- record drain`); none: all of them.
    let named: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    let run = |name: &str| named.is_empty() || named.contains(&name);
    let sizes = if full {
        Sizes {
            record: 5000,
            online: 1000,
            drain: &[1_000, 10_000],
            footprint_rows: 100_000,
            footprint_drain: 1_000,
        }
    } else {
        Sizes {
            record: 100,
            online: 50,
            drain: &[300],
            footprint_rows: 10_000,
            footprint_drain: 100,
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sim = CardSim::new(APPID, SECRET);
    let server: SimServer = rt.block_on(sim.start()).unwrap();
    let cfg = config(dir.path(), &server.url());
    println!("redeemd benchmarks ({})", run_kind(full));

    let (dir, url) = (dir.path(), server.url());
    if run("record") {
        report_record(
            rt.block_on(bench_record(dir, &cfg, sizes.record)),
            sizes.record,
        );
    }
    if run("online") {
        let online = rt.block_on(bench_online(dir, &cfg, &sim, &url, sizes.online));
        report_online(&online);
    }
    if run("online_guard") {
        match start_nats(dir) {
            None => println!("2g. skipped: no nats-server (scripts/test.sh installs it)"),
            Some((mut nats, nats_url)) => {
                let (online, claims) = rt.block_on(bench_online_guard(
                    dir,
                    &cfg,
                    &sim,
                    &url,
                    sizes.online,
                    &nats_url,
                ));
                report_online_as(
                    "2g. scan → outcome online, store guard on a local NATS",
                    &online,
                );
                println!(
                    "2g. the claim alone ({} claims, loopback, 1 server): p50 {:.3} ms, p99 {:.3} ms",
                    claims.len(),
                    percentile(&claims, 0.5),
                    percentile(&claims, 0.99)
                );
                let _ = nats.kill();
                let _ = nats.wait();
            }
        }
    }
    if run("product_coupons") {
        match start_nats(dir) {
            None => println!("2p. skipped: no nats-server (scripts/test.sh installs it)"),
            Some((mut nats, nats_url)) => {
                let (held, used, lookups) =
                    rt.block_on(product_coupons::bench(dir, sizes.online, &nats_url));
                report_online_as("2p. product coupon: scan → held", &held);
                report_online_as("2p. product coupon: order → redeemed", &used);
                println!(
                    "2p. the registry lookup alone ({} codes, loopback, 1 server): p50 {:.3} ms, p99 {:.3} ms",
                    lookups.len(),
                    percentile(&lookups, 0.5),
                    percentile(&lookups, 0.99)
                );
                let _ = nats.kill();
                let _ = nats.wait();
            }
        }
    }
    if run("drain") {
        for &n in sizes.drain {
            // The simulator's rate window (1 s) forgets the previous drain first.
            std::thread::sleep(Duration::from_millis(1100));
            let d = rt.block_on(bench_drain(dir, &cfg, &sim, &url, n));
            let plot = if full && n == 10_000 {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/drain.svg")
            } else {
                dir.join(format!("drain-{n}.svg"))
            };
            report_drain(&d, n, &plot);
        }
    }
    if run("footprint") {
        footprint(dir, &cfg, &sim, sizes.footprint_rows, sizes.footprint_drain);
    }
}

fn report_record((p50, p99, b50, b99): (f64, f64, f64, f64), n: usize) {
    println!(
        "1. scan → durable record ({n} scans after {} not counted): p50 {p50:.3} ms, p99 {p99:.3} ms; bare SQLite insert+commit p50 {b50:.3} ms, p99 {b99:.3} ms; ratio p50 {:.2}, p99 {:.2} (target ≤ 1.15)",
        n / 10,
        p50 / b50,
        p99 / b99
    );
}

fn report_online(o: &Online) {
    report_online_as("2. scan → outcome online", o);
}

fn report_online_as(what: &str, o: &Online) {
    let online = &o.measured;
    let totals: Vec<f64> = online.iter().map(|o| o.0).collect();
    let apis: Vec<f64> = online.iter().map(|o| o.1).collect();
    let overhead = overheads(online);
    println!(
        "{what} ({} scans after {} not counted, simulator answers at once): total p50 {:.3} ms, p99 {:.3} ms; in API calls p50 {:.3} ms; overhead p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms (target p99 ≤ 2 ms); the first {} scans: overhead p50 {:.3} ms, max {:.3} ms",
        online.len(),
        o.warm_up.len(),
        percentile(&totals, 0.5),
        percentile(&totals, 0.99),
        percentile(&apis, 0.5),
        percentile(&overhead, 0.5),
        percentile(&overhead, 0.99),
        percentile(&overhead, 0.999),
        o.warm_up.len(),
        percentile(&overheads(&o.warm_up), 0.5),
        percentile(&overheads(&o.warm_up), 1.0),
    );
}

/// A `nats-server` with JetStream in `dir`, on a port the OS picks; `None` without one.
fn start_nats(dir: &Path) -> Option<(std::process::Child, String)> {
    let store = dir.join("nats");
    let started = redeemd::sim::nats_servers::start([
        "-js".as_ref(),
        "-a".as_ref(),
        "127.0.0.1".as_ref(),
        "-p".as_ref(),
        "-1".as_ref(),
        "-sd".as_ref(),
        store.as_os_str(),
    ])?;
    Some((started.child, format!("nats://127.0.0.1:{}", started.port?)))
}

fn store_config(url: &str) -> StoreConfig {
    StoreConfig {
        name: "bench".into(),
        nats_urls: vec![url.into()],
        creds_file: None,
        user_file: None,
        nkey_file: None,
        tls_ca_file: None,
        code_key_file: "unused".into(),
        claim_timeout: Duration::from_millis(300),
        claims_bucket: "redeemd_claims".into(),
        claim_ttl: Duration::from_secs(86_400),
        status_interval: Duration::from_secs(30),
    }
}

/// Benchmark 2 with the store guard; and the claim alone (`ClaimBucket::claim`, new keys).
async fn bench_online_guard(
    dir: &Path,
    cfg: &Config,
    sim: &CardSim,
    url: &str,
    n: usize,
    nats: &str,
) -> (Online, Vec<f64>) {
    let store = store_config(nats);
    let guard = ClaimBucket::connect(&store, "bench-till").await.unwrap();
    guard.probe(Duration::from_secs(10)).await.unwrap();
    let mut claims = Vec::with_capacity(n);
    for i in 0..n {
        let value = ClaimValue {
            till: "bench-till".into(),
            row: None,
            scan: format!("s{i}"),
            at: 0,
            api: "card".into(),
            state: "claimed".into(),
            ..ClaimValue::default()
        };
        let t0 = Instant::now();
        let c = guard.claim(&format!("{i:064x}"), &value).await;
        claims.push(ms(t0.elapsed()));
        assert!(matches!(c, Claim::Taken { .. }), "{c:?}");
    }
    let key = CodeKey::from_bytes(b"bench-code-key-0123456789abcdef-0123").unwrap();
    let (notes, _) = NoteFile::open(&dir.join("b2g.db")).unwrap();
    let store_guard = Arc::new(
        StoreGuard::new(
            ClaimBucket::connect(&store, "bench-till").await.unwrap(),
            key,
            "bench-till",
            cfg.offline.online_wait,
            false,
            Arc::new(Metrics::default()),
            Arc::new(SystemClock),
        )
        .with_notes(notes),
    );
    let online = bench_online_with(dir, cfg, sim, url, n, Some(store_guard), "b2g.db").await;
    (online, claims)
}

fn report_drain(d: &Drain, n: usize, plot: &Path) {
    println!(
        "3. backlog drain ({n} codes, 20 ms latency, 400 calls/s limit not told): {:.1} s, {:.0} codes/s, {:.0} successful calls/s = {:.0}% of the limit (target ≥ 90%), {:.2}% of calls rate-limited (target < 2%)",
        d.seconds,
        d.codes_per_s,
        d.calls_per_s,
        100.0 * d.calls_per_s / 400.0,
        d.limited_pct
    );
    std::fs::write(plot, svg(d, 400.0)).unwrap();
    println!("   plot: {}", plot.display());
}

fn footprint(dir: &Path, cfg: &Config, sim: &CardSim, rows: usize, drain: usize) {
    let (m, idle_ticks, log_s) = bench_footprint(dir, cfg, sim, rows, drain);
    let mb = |kb: u64| kb as f64 / 1024.0;
    let binary = std::fs::metadata(env!("CARGO_BIN_EXE_redeemd")).map_or(0, |m| m.len());
    println!(
        "4. footprint ({rows} rows, then {drain} queued codes drained): peak RSS {:.1} MB (target ≤ 20 MB); after the drain RSS {:.1} MB = {:.1} MB anonymous + {:.1} MB file pages; binary {:.1} MB; CPU while idle {idle_ticks} ticks in 3 s; `redeemd log --json` {log_s:.2} s (target < 1 s)",
        mb(m.peak),
        mb(m.rss),
        mb(m.anon),
        mb(m.file),
        binary as f64 / 1_048_576.0,
    );
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
