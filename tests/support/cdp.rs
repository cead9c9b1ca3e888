//! Just enough of the Chrome DevTools protocol to open pages in headless Chromium, read
//! their DOM and take screenshots.

use base64::Engine;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket, stream::MaybeTlsStream};

pub struct Browser {
    child: Child,
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

pub struct Page {
    session: String,
}

/// Debian's Chromium (installed by scripts/test.sh), or `$REDEEMD_CHROMIUM`.
pub fn chromium() -> Option<String> {
    if let Ok(p) = std::env::var("REDEEMD_CHROMIUM") {
        return Some(p);
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .map(String::from)
}

impl Browser {
    pub fn launch() -> Browser {
        let bin = chromium().expect(
            "headless Chromium is needed for the browser test: scripts/test.sh installs Debian's `chromium`",
        );
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
                "--window-size=1280,860",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("chromium exited before DevTools listened")
                .unwrap();
            if let Some(u) = line.strip_prefix("DevTools listening on ") {
                break u.trim().to_string();
            }
        };
        // Keep draining stderr so Chromium never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let (ws, _) = tungstenite::connect(url).expect("connect to DevTools");
        Browser {
            child,
            ws,
            next_id: 0,
            _profile: profile,
        }
    }

    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = s.into();
        }
        self.ws.send(Message::text(msg.to_string())).unwrap();
        loop {
            let m = self.ws.read().expect("DevTools connection");
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["id"] == id {
                if let Some(e) = v.get("error") {
                    panic!("{method}: {e}");
                }
                return v["result"].clone();
            }
        }
    }

    pub fn open(&mut self, url: &str) -> Page {
        let target = self.call(None, "Target.createTarget", json!({"url": url}));
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        Page {
            session: attached["sessionId"].as_str().unwrap().to_string(),
        }
    }

    pub fn eval(&mut self, page: &Page, expr: &str) -> Value {
        let r = self.call(
            Some(&page.session),
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }

    /// Re-evaluates `expr` until it is true (or panics after `within`).
    pub fn wait_for(&mut self, page: &Page, expr: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if self.eval(page, expr) == Value::Bool(true) {
                return;
            }
            assert!(Instant::now() < deadline, "page never satisfied: {expr}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The whole page as PNG, below the window's fold too.
    pub fn screenshot(&mut self, page: &Page, path: &Path) {
        let size = self.eval(
            page,
            "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]",
        );
        let (width, height) = (
            size[0].as_f64().unwrap_or(1280.0),
            size[1].as_f64().unwrap_or(800.0),
        );
        let r = self.call(
            Some(&page.session),
            "Page.captureScreenshot",
            json!({
                "format": "png",
                "captureBeyondViewport": true,
                "clip": { "x": 0, "y": 0, "width": width, "height": height, "scale": 1 },
            }),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
