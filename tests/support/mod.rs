//! Test doubles and harness: the simulated WeChat (the crate's own `redeemd::sim`, run on a
//! runtime of its own so tests stay plain synchronous code), pseudo-terminal scanners, and
//! the real `redeemd` binary with its JSON log parsed into events.
#![allow(dead_code)]

use nix::fcntl::OFlag;
use nix::pty::{PtyMaster, grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::termios;
use redeemd::sim::pay::{generate_key, pem};
use redeemd::sim::{CardSim, PayIdentity, PaySim, SimCode, SimServer};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub const APPID: &str = "wx_test_appid";
pub const SECRET: &str = "test-app-secret-0123456789";
pub const CARD_ID: &str = "pTESTcardid";
pub const MCHID: &str = "1900000109";
pub const PAY_APPID: &str = "wx_test_pay_appid";
pub const MERCHANT_SERIAL: &str = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1";
pub const PUB_KEY_ID: &str = "PUB_KEY_ID_0114232134912410000000000000";
pub const STOCK_ID: &str = "1212";

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// The simulated WeChat Pay API: one simulator behind a primary and a backup host.
pub struct PayParts {
    pub sim: Arc<PaySim>,
    pub primary: SimServer,
    pub backup: SimServer,
}

/// The simulated card API (and, for coupon tests, WeChat Pay) on its own runtime.
pub struct Sim {
    pub card: Arc<CardSim>,
    server: SimServer,
    pub pay: Option<PayParts>,
    rt: tokio::runtime::Runtime,
}

impl Sim {
    pub fn start() -> Sim {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let card = CardSim::new(APPID, SECRET);
        let server = rt.block_on(card.start()).expect("start sim");
        Sim {
            card,
            server,
            pay: None,
            rt,
        }
    }

    /// Adds a WeChat Pay simulator; writes the merchant key (0600) and the WeChat Pay
    /// public key into `dir`.
    pub fn start_pay(&mut self, dir: &Path) {
        let (merchant, der) = generate_key().expect("merchant key");
        let key = dir.join("apiclient_key.pem");
        std::fs::write(&key, pem("PRIVATE KEY", &der)).expect("key file");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let sim = PaySim::new(
            PayIdentity {
                mchid: MCHID.into(),
                appid: PAY_APPID.into(),
                merchant_serial: MERCHANT_SERIAL.into(),
                public_key_id: PUB_KEY_ID.into(),
            },
            merchant.public_spki_der().expect("spki"),
        )
        .expect("pay sim");
        std::fs::write(dir.join("pub_key.pem"), sim.public_key_pem()).expect("pub key");
        let primary = self.rt.block_on(sim.start()).expect("primary");
        let backup = self.rt.block_on(sim.start()).expect("backup");
        self.pay = Some(PayParts {
            sim,
            primary,
            backup,
        });
    }

    pub fn pay(&self) -> &Arc<PaySim> {
        &self.pay.as_ref().expect("a coupon till").sim
    }

    pub fn set_pay_down(&self, primary: bool, down: bool) {
        let p = self.pay.as_ref().expect("a coupon till");
        let server = if primary { &p.primary } else { &p.backup };
        self.rt
            .block_on(server.set_down(down))
            .expect("pay up/down");
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn set_down(&self, down: bool) {
        self.rt
            .block_on(self.server.set_down(down))
            .expect("sim up/down");
    }

    /// Registers codes as valid, unused cards.
    pub fn add_codes<S: AsRef<str>>(&self, codes: &[S]) {
        for c in codes {
            self.card.add_code(c.as_ref(), SimCode::normal(CARD_ID));
        }
    }
}

/// A pseudo-terminal standing in for a serial scanner. The daemon opens the slave side by
/// path; the test writes what the scanner would send into the master side.
///
/// Both ends are close-on-exec: a daemon spawned by a test must not inherit a master, or
/// closing the test's end would never look like an unplugged scanner.
pub struct Pty {
    master: Mutex<PtyMaster>,
    /// Held open so the pty lives while the daemon reopens it.
    _slave: std::fs::File,
    pub path: String,
}

impl Pty {
    pub fn new() -> Pty {
        let flags = OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
        let master = posix_openpt(flags).expect("posix_openpt");
        grantpt(&master).expect("grantpt");
        unlockpt(&master).expect("unlockpt");
        let path = ptsname_r(&master).expect("ptsname");
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc_flags(OFlag::O_NOCTTY | OFlag::O_CLOEXEC))
            .open(&path)
            .expect("open pty slave");
        let mut t = termios::tcgetattr(&slave).expect("tcgetattr");
        termios::cfmakeraw(&mut t);
        termios::tcsetattr(&slave, termios::SetArg::TCSANOW, &t).expect("tcsetattr");
        Pty {
            master: Mutex::new(master),
            _slave: slave,
            path,
        }
    }

    /// Sends a code as a scanner configured with a CR LF suffix would.
    pub fn scan(&self, code: &str) {
        self.write_raw(format!("{code}\r\n").as_bytes());
    }

    pub fn write_raw(&self, bytes: &[u8]) {
        let mut m = self.master.lock().unwrap();
        m.write_all(bytes).expect("write to pty");
        m.flush().expect("flush pty");
    }

    /// Reads what the daemon wrote back to the scanner, waiting up to `within` for `n` bytes.
    pub fn read_back(&self, n: usize, within: Duration) -> Vec<u8> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::io::Read;
        use std::os::fd::AsFd;
        let deadline = Instant::now() + within;
        let mut m = self.master.lock().unwrap();
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let ready = {
                let mut fds = [PollFd::new(m.as_fd(), PollFlags::POLLIN)];
                let ms = PollTimeout::try_from(left.as_millis().min(10_000) as i32)
                    .unwrap_or(PollTimeout::NONE);
                poll(&mut fds, ms).unwrap_or(0)
            };
            if ready > 0 {
                let mut buf = [0u8; 64];
                let k = m.read(&mut buf).unwrap_or(0);
                out.extend_from_slice(&buf[..k]);
            }
        }
        out
    }
}

/// A FIFO standing in for an input or hidraw device: the daemon opens it to read; the test
/// opens the write end once the daemon has connected. Closing the writer looks like an
/// unplugged device.
pub struct Fifo {
    pub path: PathBuf,
    writer: Mutex<Option<std::fs::File>>,
}

impl Fifo {
    pub fn new(dir: &Path, name: &str) -> Fifo {
        let path = dir.join(name);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        Fifo {
            path,
            writer: Mutex::new(None),
        }
    }

    /// Writes bytes, opening the write end first if needed (the daemon must be reading).
    pub fn write(&self, bytes: &[u8]) {
        let mut w = self.writer.lock().unwrap();
        if w.is_none() {
            *w = Some(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&self.path)
                    .expect("open FIFO for writing"),
            );
        }
        let f = w.as_mut().unwrap();
        f.write_all(bytes).expect("write FIFO");
        f.flush().expect("flush FIFO");
    }

    /// Closes the write end: the reader sees end-of-file, like an unplugged device.
    pub fn unplug(&self) {
        self.writer.lock().unwrap().take();
    }
}

fn libc_flags(f: OFlag) -> i32 {
    f.bits()
}

/// Settings a test varies; `render` makes the TOML.
#[derive(Clone)]
pub struct Setup {
    pub accept_offline: bool,
    pub route_offline: bool,
    pub online_wait: &'static str,
    pub max_pending: u32,
    pub max_age: &'static str,
    pub base_delay: &'static str,
    pub max_delay: &'static str,
    pub request_timeout: &'static str,
    /// Raw TOML appended to the config (more scanners, more routes).
    pub extra_toml: String,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            accept_offline: true,
            route_offline: true,
            online_wait: "1500ms",
            max_pending: 500,
            max_age: "72h",
            base_delay: "50ms",
            max_delay: "300ms",
            request_timeout: "2s",
            extra_toml: String::new(),
        }
    }
}

/// A till: its folder, config, scanner and simulated WeChat.
pub struct Till {
    pub dir: tempfile::TempDir,
    pub sim: Sim,
    pub pty: Pty,
    pub config: PathBuf,
    pub setup: Setup,
}

impl Till {
    pub fn new(setup: Setup) -> Till {
        Self::build(setup, false)
    }

    /// A till that also redeems merchant coupons (`BF...` codes, stock 1212).
    pub fn with_coupons(setup: Setup) -> Till {
        Self::build(setup, true)
    }

    fn build(setup: Setup, coupons: bool) -> Till {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sim = Sim::start();
        if coupons {
            sim.start_pay(dir.path());
        }
        let pty = Pty::new();
        let secret = dir.path().join("appsecret");
        std::fs::write(&secret, SECRET).expect("secret");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let config = dir.path().join("redeemd.toml");
        let till = Till {
            dir,
            sim,
            pty,
            config,
            setup,
        };
        till.write_config();
        till
    }

    pub fn write_config(&self) {
        let s = &self.setup;
        let text = format!(
            r#"database = "ledger/redeemd.db"
till = "store1-till1"

[[scanner]]
name = "front"
type = "serial"
path = "{pty}"
baud = 9600

[wechat]
appid = "{APPID}"
secret_file = "appsecret"
base_url = "{url}"
request_timeout = "{timeout}"

[[route]]
pattern = "[0-9]{{12}}"
api = "card"
offline = {route_offline}

[retry]
base_delay = "{base}"
max_delay = "{max}"

[offline]
accept = {accept}
online_wait = "{wait}"
max_pending = {max_pending}
max_age = "{max_age}"

[http]
listen = "127.0.0.1:0"
"#,
            pty = self.pty.path,
            url = self.sim.url(),
            timeout = s.request_timeout,
            route_offline = s.route_offline,
            base = s.base_delay,
            max = s.max_delay,
            accept = s.accept_offline,
            wait = s.online_wait,
            max_pending = s.max_pending,
            max_age = s.max_age,
        );
        let text = text + "\n" + &s.extra_toml + "\n";
        let text = match &self.sim.pay {
            None => text,
            Some(p) => {
                text + &format!(
                    r#"
[wechat_pay]
mchid = "{MCHID}"
appid = "{PAY_APPID}"
serial_no = "{MERCHANT_SERIAL}"
private_key_file = "apiclient_key.pem"
public_key_id = "{PUB_KEY_ID}"
public_key_file = "pub_key.pem"
base_url = "{primary}"
backup_url = "{backup}"
request_timeout = "{timeout}"

[[route]]
pattern = "BF[0-9A-Z]{{8,30}}"
api = "coupon"
stock_id = "{STOCK_ID}"
offline = {route_offline}
"#,
                    primary = p.primary.url(),
                    backup = p.backup.url(),
                    timeout = s.request_timeout,
                    route_offline = s.route_offline,
                )
            }
        };
        std::fs::write(&self.config, text).expect("config");
    }

    /// Starts the daemon and waits until its scanner is open.
    pub fn start(&self) -> Daemon {
        let d = Daemon::spawn(&self.config);
        d.wait_event(|e| e["event"] == "scanner_connected");
        d
    }

    /// `redeemd log --json`, parsed.
    pub fn log(&self) -> Vec<Value> {
        let out = Command::new(bin())
            .args(["log", "--json", "--config"])
            .arg(&self.config)
            .output()
            .expect("redeemd log");
        assert!(
            out.status.success(),
            "redeemd log failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("log line is JSON"))
            .collect()
    }

    pub fn row_state(&self, code: &str) -> Option<String> {
        self.log()
            .into_iter()
            .find(|r| r["code"] == code)
            .and_then(|r| r["state"].as_str().map(String::from))
    }

    pub fn row(&self, code: &str) -> Value {
        self.log()
            .into_iter()
            .find(|r| r["code"] == code)
            .unwrap_or_else(|| panic!("no ledger row for {code}"))
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_redeemd")
}

/// The last four characters, as the daemon's logs show a code.
pub fn masked(code: &str) -> String {
    let n = code.chars().count();
    "*".repeat(n - 4) + &code[code.len() - 4..]
}

struct Events {
    lines: Mutex<(Vec<Value>, Vec<String>, bool)>,
    changed: Condvar,
}

/// The real `redeemd run` binary, with its JSON log on stderr parsed into events.
pub struct Daemon {
    child: Child,
    events: Arc<Events>,
}

impl Daemon {
    pub fn spawn(config: &Path) -> Daemon {
        let mut child = Command::new(bin())
            .args(["--log-format", "json", "run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn redeemd");
        let stderr = child.stderr.take().expect("stderr");
        let events = Arc::new(Events {
            lines: Mutex::new((Vec::new(), Vec::new(), false)),
            changed: Condvar::new(),
        });
        let ev = events.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut g = ev.lines.lock().unwrap();
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    g.0.push(v);
                }
                g.1.push(line);
                ev.changed.notify_all();
            }
            ev.lines.lock().unwrap().2 = true;
            ev.changed.notify_all();
        });
        Daemon { child, events }
    }

    /// Waits for the first event matching `pred` (searching everything logged so far).
    pub fn wait_event(&self, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_events(1, pred).remove(0)
    }

    /// Waits until `n` events match `pred`; returns them.
    pub fn wait_events(&self, n: usize, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.try_wait_events(n, WAIT, pred).unwrap_or_else(|| {
            panic!(
                "timed out waiting for {n} matching events; log:\n{}",
                self.stderr()
            )
        })
    }

    pub fn try_wait_events(
        &self,
        n: usize,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<Vec<Value>> {
        let deadline = Instant::now() + within;
        let mut g = self.events.lines.lock().unwrap();
        loop {
            let found: Vec<Value> = g.0.iter().filter(|e| pred(e)).cloned().collect();
            if found.len() >= n {
                return Some(found);
            }
            let now = Instant::now();
            if now >= deadline || g.2 {
                return None;
            }
            g = self
                .events
                .changed
                .wait_timeout(g, deadline - now)
                .unwrap()
                .0;
        }
    }

    /// The HTTP API's base URL (`http://127.0.0.1:PORT`).
    pub fn http_url(&self) -> String {
        self.wait_event(|e| e["event"] == "http_listening")["address"]
            .as_str()
            .expect("address")
            .to_string()
    }

    /// Waits for the till's answer to a scan of `code`.
    pub fn outcome(&self, code: &str) -> Value {
        let m = masked(code);
        self.wait_event(|e| e["event"] == "outcome" && e["code"] == m.as_str())
    }

    /// Waits until the row of `code` settles in `state` (after the till was answered).
    pub fn settled(&self, code: &str, state: &str) -> Value {
        let m = masked(code);
        self.wait_event(|e| {
            e["event"] == "settled" && e["code"] == m.as_str() && e["state"] == state
        })
    }

    /// User + system CPU time the daemon has used, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("stat");
        // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
        let rest = &stat[stat.rfind(')').expect("comm") + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }

    pub fn events(&self) -> Vec<Value> {
        self.events.lines.lock().unwrap().0.clone()
    }

    pub fn stderr(&self) -> String {
        self.events.lines.lock().unwrap().1.join("\n")
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// `kill -9`: no chance to clean up.
    pub fn kill9(mut self) -> String {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait");
        self.wait_closed();
        self.stderr()
    }

    /// SIGTERM, then wait for the exit.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("SIGTERM");
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "redeemd did not exit within {WAIT:?} of SIGTERM; log:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        self.wait_closed();
        (status, self.stderr())
    }

    fn wait_closed(&self) {
        let mut g = self.events.lines.lock().unwrap();
        let deadline = Instant::now() + WAIT;
        while !g.2 && Instant::now() < deadline {
            g = self
                .events
                .changed
                .wait_timeout(g, Duration::from_millis(200))
                .unwrap()
                .0;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small deterministic PRNG for the chaos tests (seed printed, so a failure replays).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Distinct 12-digit codes whose last four digits differ across prefixes (< 100) and
/// indexes (< 100): the daemon's logs show only the last four.
pub fn codes(prefix: u32, n: usize) -> Vec<String> {
    assert!(prefix < 100 && n <= 100);
    (0..n)
        .map(|i| format!("{prefix:04}{:04}{:04}", 7000 + i, prefix * 100 + i as u32))
        .collect()
}

/// A response from [`http`].
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A plain HTTP/1.1 exchange over a real socket (`Connection: close`), so the tests see
/// exactly what a POS application would.
pub fn http(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
    use std::io::Read;
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut s = std::net::TcpStream::connect(host).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> HttpResponse {
    let text = String::from_utf8_lossy(raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A server-sent-events subscription: parsed `data:` objects (with their `event:` name) as
/// they arrive.
pub struct Sse {
    rx: std::sync::mpsc::Receiver<(String, Value)>,
    pub seen: Vec<(String, Value)>,
}

impl Sse {
    pub fn connect(base: &str, query: &str) -> Sse {
        let host = base.strip_prefix("http://").unwrap().to_string();
        let mut s = std::net::TcpStream::connect(&host).expect("connect");
        let req = format!(
            "GET /v1/events{query} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n"
        );
        s.write_all(req.as_bytes()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut event = String::from("message");
            for line in BufReader::new(s).lines() {
                let Ok(line) = line else { break };
                // Chunk-size lines and blanks carry no data; "event:" names the next data.
                if let Some(name) = line.strip_prefix("event:") {
                    event = name.trim().to_string();
                } else if let Some(data) = line.strip_prefix("data:") {
                    if let Ok(v) = serde_json::from_str::<Value>(data.trim()) {
                        if tx.send((event.clone(), v)).is_err() {
                            break;
                        }
                    }
                    event = "message".into();
                }
            }
        });
        Sse {
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits for an event matching `pred`.
    pub fn wait(&mut self, pred: impl Fn(&str, &Value) -> bool) -> Value {
        if let Some((_, v)) = self.seen.iter().find(|(n, v)| pred(n, v)) {
            return v.clone();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok((n, v)) => {
                    self.seen.push((n.clone(), v.clone()));
                    if pred(&n, &v) {
                        return v;
                    }
                }
                Err(_) => panic!("no matching SSE event; seen: {:?}", self.seen),
            }
        }
    }
}
