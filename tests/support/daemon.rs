//! A till (folder, config, scanner, simulated WeChat) and the real `redeemd run` binary
//! with its JSON log parsed into events.

use super::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

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
    /// `[http] language`: the tests read English reasons unless they say otherwise.
    pub language: &'static str,
    /// Raw TOML inside `[offline]` (value caps).
    pub offline_toml: String,
    /// Raw TOML inside the card route (`name`, `card_types`).
    pub card_route_toml: String,
    /// `till`.
    pub till_name: &'static str,
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
            offline_toml: String::new(),
            card_route_toml: String::new(),
            language: "en",
            till_name: "store1-till1",
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
till = "{till_name}"

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
{card_route_toml}

[retry]
base_delay = "{base}"
max_delay = "{max}"

[offline]
accept = {accept}
online_wait = "{wait}"
max_pending = {max_pending}
max_age = "{max_age}"
{offline_toml}

[http]
listen = "127.0.0.1:0"
language = "{language}"
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
            offline_toml = s.offline_toml,
            card_route_toml = s.card_route_toml,
            language = s.language,
            till_name = s.till_name,
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
        start_daemon(&self.config)
    }

    /// Runs `redeemd <args> --config <this till's config>`: its exit status, stdout, stderr.
    pub fn cli(&self, args: &[&str]) -> (ExitStatus, String, String) {
        let out = redeemd(args)
            .config(&self.config)
            .output()
            .expect("redeemd");
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `redeemd log --json`, parsed.
    pub fn log(&self) -> Vec<Value> {
        ledger_log(&self.config)
    }

    pub fn row_state(&self, code: &str) -> Option<String> {
        self.log()
            .into_iter()
            .find(|r| r["code"] == code)
            .and_then(|r| r["state"].as_str().map(String::from))
    }

    pub fn row(&self, code: &str) -> Value {
        ledger_row(&self.config, code)
    }

    /// Another till of the same store: its own folder, ledger, scanner and name, the same
    /// WeChat (this till's simulators) and the same secrets.
    pub fn sibling(&self, till_name: &str) -> OtherTill {
        let dir = tempfile::tempdir().expect("tempdir");
        let pty = Pty::new();
        for f in ["appsecret", "apiclient_key.pem", "pub_key.pem", "code.key"] {
            let from = self.dir.path().join(f);
            if from.exists() {
                let to = dir.path().join(f);
                std::fs::copy(&from, &to).expect("copy a secret");
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600))
                    .expect("chmod");
            }
        }
        let text = std::fs::read_to_string(&self.config)
            .expect("config")
            .replace(&self.pty.path, &pty.path)
            .replace(
                &format!("till = \"{}\"", self.setup.till_name),
                &format!("till = \"{till_name}\""),
            );
        let config = dir.path().join("redeemd.toml");
        std::fs::write(&config, text).expect("config");
        OtherTill { dir, pty, config }
    }
}

/// A till made by [`Till::sibling`].
pub struct OtherTill {
    pub dir: tempfile::TempDir,
    pub pty: Pty,
    pub config: PathBuf,
}

impl OtherTill {
    pub fn start(&self) -> Daemon {
        start_daemon(&self.config)
    }

    pub fn log(&self) -> Vec<Value> {
        ledger_log(&self.config)
    }

    pub fn row(&self, code: &str) -> Value {
        ledger_row(&self.config, code)
    }
}

/// Starts `redeemd run` and waits until its scanner is open.
pub fn start_daemon(config: &Path) -> Daemon {
    let d = Daemon::spawn(config);
    d.wait_event(|e| e["event"] == "scanner_connected");
    d
}

/// `redeemd log --json` of the till with this config, parsed.
pub fn ledger_log(config: &Path) -> Vec<Value> {
    let out = redeemd(["log", "--json"])
        .config(config)
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

pub fn ledger_row(config: &Path, code: &str) -> Value {
    ledger_log(config)
        .into_iter()
        .find(|r| r["code"] == code)
        .unwrap_or_else(|| panic!("no ledger row for {code}"))
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
        Self::spawn_cmd(
            redeemd(["--log-format", "json", "run"])
                .config(config)
                .into(),
        )
    }

    /// `redeemd` with these arguments (another subcommand: `fleet`).
    pub fn spawn_args(args: &[std::ffi::OsString]) -> Daemon {
        Self::spawn_cmd(redeemd(args).into())
    }

    /// [`Daemon::spawn`] with at most `nofile` open file descriptors (`ulimit -n`).
    pub fn spawn_limited(config: &Path, nofile: u32) -> Daemon {
        let mut cmd = Command::new("bash");
        cmd.args(["-c", &format!("ulimit -n {nofile} && exec \"$0\" \"$@\"")])
            .arg(bin())
            .args(["--log-format", "json", "run", "--config"])
            .arg(config);
        Self::spawn_cmd(cmd)
    }

    fn spawn_cmd(mut cmd: Command) -> Daemon {
        let mut child = cmd
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
        let Some(status) = exit_within(&mut self.child, WAIT) else {
            panic!(
                "redeemd did not exit within {WAIT:?} of SIGTERM; log:\n{}",
                self.stderr()
            );
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

/// How `child` exited, if it does within `within`.
pub fn exit_within(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
