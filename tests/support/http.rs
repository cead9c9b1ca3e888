//! Plain HTTP/1.1 over real sockets, and a server-sent-events reader, as a POS application
//! would speak to the daemon.

use super::*;
use serde_json::Value;
use std::io::Write;
use std::time::Instant;

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

/// `POST base+path` with a JSON body.
pub fn post_json(base: &str, path: &str, body: &Value) -> HttpResponse {
    http(
        "POST",
        &format!("{base}{path}"),
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
}

pub fn get(base: &str, path: &str) -> HttpResponse {
    http("GET", &format!("{base}{path}"), &[], b"")
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
    // A test may send a Host of its own (a forged one, say) instead of the address's.
    let own_host = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host"));
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !own_host {
        req.push_str(&format!("Host: {host}\r\n"));
    }
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
    rx: std::sync::mpsc::Receiver<Result<(String, Value), String>>,
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
            let mut stream = SseStream::default();
            let mut buf = [0u8; 4096];
            loop {
                let n = match std::io::Read::read(&mut s, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                for ev in stream.push(&buf[..n]) {
                    if tx.send(ev).is_err() {
                        return;
                    }
                }
            }
        });
        Sse {
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits for an event matching `pred`. An event that is not JSON fails the test at once.
    pub fn wait(&mut self, pred: impl Fn(&str, &Value) -> bool) -> Value {
        if let Some((_, v)) = self.seen.iter().find(|(n, v)| pred(n, v)) {
            return v.clone();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Ok((n, v))) => {
                    self.seen.push((n.clone(), v.clone()));
                    if pred(&n, &v) {
                        return v;
                    }
                }
                Ok(Err(bad)) => panic!("a broken SSE event: {bad}; seen: {:?}", self.seen),
                Err(_) => panic!("no matching SSE event; seen: {:?}", self.seen),
            }
        }
    }
}

/// The bytes of an HTTP response carrying `text/event-stream`, in whatever pieces the socket
/// hands them over, turned into events: the head is skipped, chunked transfer coding is
/// undone, and an event is complete at its blank line, however the reads split it.
#[derive(Default)]
pub struct SseStream {
    raw: Vec<u8>,
    /// `None` until the head is read; then whether the body is chunked.
    chunked: Option<bool>,
    body: Vec<u8>,
}

impl SseStream {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Result<(String, Value), String>> {
        self.raw.extend_from_slice(bytes);
        if self.chunked.is_none() {
            let Some(end) = find(&self.raw, b"\r\n\r\n") else {
                return Vec::new();
            };
            let head = String::from_utf8_lossy(&self.raw[..end]).to_ascii_lowercase();
            self.chunked = Some(head.contains("transfer-encoding: chunked"));
            self.raw.drain(..end + 4);
        }
        if self.chunked == Some(true) {
            while let Some(line) = find(&self.raw, b"\r\n") {
                let size = std::str::from_utf8(&self.raw[..line])
                    .ok()
                    .and_then(|l| usize::from_str_radix(l.split(';').next()?.trim(), 16).ok());
                let Some(size) = size else {
                    return vec![Err(format!(
                        "bad chunk size line {:?}",
                        String::from_utf8_lossy(&self.raw[..line])
                    ))];
                };
                if self.raw.len() < line + 2 + size + 2 {
                    break;
                }
                self.body
                    .extend_from_slice(&self.raw[line + 2..line + 2 + size]);
                self.raw.drain(..line + 2 + size + 2);
            }
        } else {
            self.body.append(&mut self.raw);
        }
        let mut out = Vec::new();
        while let Some(end) = find(&self.body, b"\n\n") {
            let block = String::from_utf8_lossy(&self.body[..end]).to_string();
            self.body.drain(..end + 2);
            let mut name = "message".to_string();
            let mut data: Vec<&str> = Vec::new();
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event:") {
                    name = n.trim().to_string();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push(d.strip_prefix(' ').unwrap_or(d));
                }
            }
            if data.is_empty() {
                continue; // a keep-alive comment
            }
            let data = data.join("\n");
            out.push(
                serde_json::from_str::<Value>(&data)
                    .map(|v| (name, v))
                    .map_err(|e| format!("{data:?} is not JSON: {e}")),
            );
        }
        out
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
