//! The local HTTP API end to end: every endpoint, its filters and its errors, over real
//! sockets against the real binary.

mod support;

use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use support::*;

#[test]
fn keyed_entry_and_scanner_reads_reach_the_event_stream() {
    let till = Till::new(Setup::default());
    let c = codes(40, 2);
    till.sim.add_codes(&c);
    let d = till.start();
    let base = d.http_url();
    let mut sse = Sse::connect(&base, "");
    // The stream starts with the scanners' current state.
    let s = sse.wait(|n, v| n == "scanner" && v["scanner"] == "front");
    assert_eq!(s["connected"], true);

    let r = post_json(&base, "/v1/scans", &json!({"code": c[0]}));
    assert_eq!(r.status, 200, "{}", r.body);
    let o = r.json();
    for f in [
        "id",
        "code",
        "outcome",
        "state",
        "reason",
        "api",
        "scanned_at",
    ] {
        assert!(o.get(f).is_some(), "missing {f}: {o}");
    }
    assert_eq!(o["outcome"], "redeemed");
    assert_eq!(o["code"], c[0].as_str());
    assert_eq!(o["api"], "card");
    till.pty.scan(&c[1]);
    let keyed = sse.wait(|n, v| n == "message" && v["code"] == c[0].as_str());
    assert_eq!(keyed["scanner"], "keyed");
    assert_eq!(keyed["outcome"], "redeemed");
    let scanned = sse.wait(|n, v| n == "message" && v["code"] == c[1].as_str());
    assert_eq!(scanned["scanner"], "front");
    assert_eq!(till.row(&c[0])["scanner"], "keyed");

    // Keyed payment codes are refused and come back masked.
    let r = post_json(&base, "/v1/scans", &json!({"code": "134567890123456789"})).json();
    assert_eq!(r["outcome"], "rejected");
    assert_eq!(r["code"], "**************6789");
    // A rescan through the API is a duplicate, like any other.
    let r = post_json(&base, "/v1/scans", &json!({"code": c[1]})).json();
    assert_eq!(r["outcome"], "duplicate");
    d.kill9();
}

#[test]
fn bad_requests_get_specific_errors() {
    let till = Till::new(Setup::default());
    let d = till.start();
    let base = d.http_url();
    let ct = [("Content-Type", "application/json")];
    let r = http("POST", &format!("{base}/v1/scans"), &ct, b"{\"code\":");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.json()["error"].as_str().unwrap().len() > 5);
    let r = http(
        "POST",
        &format!("{base}/v1/scans"),
        &ct,
        b"{\"kode\":\"1\"}",
    );
    assert_eq!(r.status, 422, "{}", r.body);
    for empty in [&b"{\"code\":\"\"}"[..], b"{\"code\":\"   \"}"] {
        let r = http("POST", &format!("{base}/v1/scans"), &ct, empty);
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(r.body.contains("code: must not be empty"), "{}", r.body);
    }
    let big = format!("{{\"code\":\"{}\"}}", "1".repeat(40_000));
    let r = http("POST", &format!("{base}/v1/scans"), &ct, big.as_bytes());
    assert_eq!(r.status, 413, "{}", r.body);
    let r = http(
        "POST",
        &format!("{base}/v1/scans"),
        &[
            ("Content-Type", "application/json"),
            ("Origin", "http://evil.example"),
        ],
        b"{\"code\":\"123456789012\"}",
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        till.log().is_empty(),
        "a cross-origin write reached the ledger"
    );
    let own = format!("http://{}", base.trim_start_matches("http://"));
    let r = http(
        "POST",
        &format!("{base}/v1/scans"),
        &[("Content-Type", "application/json"), ("Origin", &own)],
        b"{\"code\":\"not-a-code\"}",
    );
    assert_eq!(r.status, 200, "same origin is fine: {}", r.body);
    let r = post_json(&base, "/v1/redemptions/999/resolve", &json!({"note": "x"}));
    assert_eq!(r.status, 404);
    let r = post_json(&base, "/v1/redemptions/1/resolve", &json!({"note": "x"}));
    assert_eq!(r.status, 409, "{}", r.body);
    let r = post_json(&base, "/v1/redemptions/1/resolve", &json!({"note": " "}));
    assert_eq!(r.status, 400);
    assert_eq!(get(&base, "/v1/redemptions?state=done").status, 400);
    assert_eq!(get(&base, "/v1/redemptions?since=whenever").status, 400);
    assert_eq!(get(&base, "/v1/redemptions?limit=x").status, 400);
    assert_eq!(get(&base, "/nope").status, 404);
    d.kill9();
}

#[test]
fn log_filters_export_health_metrics_and_pages() {
    let till = Till::new(Setup {
        // The pages' default language.
        language: "zh-CN",
        ..Setup::default()
    });
    let c = codes(41, 3);
    till.sim.add_codes(&c[..2]);
    let d = till.start();
    let base = d.http_url();
    for code in &c {
        till.pty.scan(code);
        d.outcome(code);
    }
    let all = get(&base, "/v1/redemptions").json();
    assert_eq!(all.as_array().unwrap().len(), 3);
    assert_eq!(all[0]["code"], c[2].as_str(), "newest first");
    let redeemed = get(&base, "/v1/redemptions?state=redeemed").json();
    assert_eq!(redeemed.as_array().unwrap().len(), 2);
    let last4 = &c[1][c[1].len() - 4..];
    let q = get(&base, &format!("/v1/redemptions?q={last4}")).json();
    assert_eq!(q.as_array().unwrap().len(), 1);
    assert_eq!(q[0]["code"], c[1].as_str());
    assert_eq!(
        get(&base, "/v1/redemptions?limit=1")
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        get(&base, "/v1/redemptions?since=1h")
            .json()
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        get(&base, "/v1/redemptions?until=1h")
            .json()
            .as_array()
            .unwrap()
            .len(),
        0
    );

    let csv = get(&base, "/v1/export.csv?since=today");
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    let lines: Vec<&str> = csv.body.lines().collect();
    assert!(
        lines[0].starts_with("id,code,api,state,reason,"),
        "{}",
        lines[0]
    );
    assert_eq!(lines.len(), 4);
    assert!(lines[1].contains(&c[0]));

    let h = get(&base, "/healthz");
    assert_eq!(h.status, 200, "{}", h.body);
    assert_eq!(h.json()["dispatcher"], "running");

    let m = get(&base, "/metrics").body;
    for series in [
        "redeemd_redemptions_total{api=\"card\",state=\"redeemed\"} 2",
        "redeemd_redemptions_total{api=\"card\",state=\"rejected\"} 1",
        "redeemd_pending 0",
        "redeemd_oldest_pending_age_seconds",
        "redeemd_api_call_duration_seconds_bucket{api=\"card\",outcome=\"ok\"",
        "redeemd_token_refreshes_total 1",
        "redeemd_scanner_connected{scanner=\"front\"} 1",
    ] {
        assert!(m.contains(series), "metrics lack {series}:\n{m}");
    }

    for (path, needle) in [("/", "redeemd"), ("/kiosk", "redeemd kiosk")] {
        let p = get(&base, path);
        assert_eq!(p.status, 200);
        assert!(p.body.contains("<html lang=\"zh-CN\">"), "{path}");
        assert!(p.body.contains(needle));
        assert!(
            !p.body.contains("https://") && !p.body.contains("http://"),
            "{path} loads something from elsewhere"
        );
        assert!(
            p.header("content-security-policy")
                .unwrap()
                .contains("default-src 'self'")
        );
    }

    // The CLI's views of the same ledger.
    let cli = |args: &[&str]| {
        let out = redeemd(args).config(&till.config).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let export = cli(&["export", "--since", "today"]);
    assert_eq!(export.lines().count(), 4);
    let summary = cli(&["summary"]);
    assert!(summary.contains("redeemed   2"), "{summary}");
    assert!(
        summary.contains("route 0 (card, [0-9]{12}): redeemed 2, rejected 1"),
        "{summary}"
    );
    d.kill9();
}

#[test]
fn review_items_are_resolved_through_the_api_and_the_cli() {
    let till = Till::new(Setup {
        max_age: "1s",
        ..Setup::default()
    });
    let c = codes(42, 2);
    till.sim.set_down(true);
    let d = till.start();
    let base = d.http_url();
    for code in &c {
        till.pty.scan(code);
        d.settled(code, "review");
    }
    let cli = |args: &[&str]| redeemd(args).config(&till.config).output().unwrap();
    let listed = String::from_utf8_lossy(&cli(&["review"]).stdout).to_string();
    assert!(listed.contains(&c[0]) && listed.contains(&c[1]), "{listed}");

    let id0 = till.row(&c[0])["id"].as_i64().unwrap();
    let long = "x".repeat(15_000);
    let r = post_json(
        &base,
        &format!("/v1/redemptions/{id0}/resolve"),
        &json!({"note": "checked", "by": long}),
    );
    assert_eq!(
        r.status, 400,
        "who resolved it is a name, not a page: {r:?}"
    );
    assert!(r.body.contains("by:"), "{r:?}");
    let r = post_json(
        &base,
        &format!("/v1/redemptions/{id0}/resolve"),
        &json!({"note": "customer showed the coupon as unused in WeChat; not redeemed", "by": "manager Li"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let row = r.json();
    assert_eq!(row["state"], "rejected");
    assert_eq!(row["resolved_by"], "manager Li");
    assert!(row["resolved_at"].as_str().is_some());

    let id1 = till.row(&c[1])["id"].as_i64().unwrap();
    let out = cli(&[
        "resolve",
        &id1.to_string(),
        "--note",
        "checked the merchant platform",
        "--state",
        "redeemed",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(till.row(&c[1])["state"], "redeemed");
    assert_eq!(
        till.row(&c[1])["resolution"],
        "checked the merchant platform"
    );
    let listed = String::from_utf8_lossy(&cli(&["review"]).stdout).to_string();
    assert!(listed.contains("0 rows"), "{listed}");
    // Resolving twice is refused.
    assert_eq!(
        post_json(
            &base,
            &format!("/v1/redemptions/{id0}/resolve"),
            &json!({"note": "again"})
        )
        .status,
        409
    );
    d.kill9();
}

#[test]
fn off_loopback_needs_a_token_and_every_request_carries_it() {
    let till = Till::new(Setup::default());
    let token_file = till.dir.path().join("api-token");
    std::fs::write(&token_file, "s3cret-api-token\n").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = std::fs::read_to_string(&till.config).unwrap();

    // Not on loopback without a token: refused at start.
    std::fs::write(
        &till.config,
        text.replace("listen = \"127.0.0.1:0\"", "listen = \"0.0.0.0:0\""),
    )
    .unwrap();
    let out = redeemd(["run"]).config(&till.config).output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("http.token_file"));

    std::fs::write(
        &till.config,
        text.replace(
            "listen = \"127.0.0.1:0\"",
            "listen = \"127.0.0.1:0\"\ntoken_file = \"api-token\"",
        ),
    )
    .unwrap();
    let c = codes(43, 1);
    till.sim.add_codes(&c);
    let d = till.start();
    let base = d.http_url();
    assert_eq!(get(&base, "/v1/redemptions").status, 401);
    assert_eq!(
        http(
            "GET",
            &format!("{base}/v1/redemptions"),
            &[("Authorization", "Bearer wrong")],
            b""
        )
        .status,
        401
    );
    let auth = [("Authorization", "Bearer s3cret-api-token")];
    assert_eq!(
        http("GET", &format!("{base}/v1/redemptions"), &auth, b"").status,
        200
    );
    assert_eq!(get(&base, "/metrics").status, 401);
    assert_eq!(get(&base, "/healthz").status, 200, "health carries no data");
    let mut sse = Sse::connect(&base, "?token=s3cret-api-token");
    let r = http(
        "POST",
        &format!("{base}/v1/scans"),
        &[
            ("Authorization", "Bearer s3cret-api-token"),
            ("Content-Type", "application/json"),
        ],
        json!({"code": c[0]}).to_string().as_bytes(),
    );
    assert_eq!(r.json()["outcome"], "redeemed");
    sse.wait(|n, v| n == "message" && v["code"] == c[0].as_str());
    assert!(get(&base, "/").body.contains("<html lang=\"en\">"));
    assert!(!d.stderr().contains("s3cret-api-token"));
    d.kill9();
}

#[test]
fn listens_on_a_unix_socket() {
    use std::io::{Read, Write};
    let till = Till::new(Setup::default());
    let sock = till.dir.path().join("run/api.sock");
    let text = std::fs::read_to_string(&till.config)
        .unwrap()
        .replace("listen = \"127.0.0.1:0\"", "listen = \"unix:run/api.sock\"");
    std::fs::write(&till.config, text).unwrap();
    let d = till.start();
    d.wait_event(|e| e["event"] == "http_listening");
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let r = parse_response(&raw);
    assert_eq!(r.status, 200, "{}", r.body);
    d.kill9();
}

#[test]
fn sigterm_stops_even_with_an_event_stream_open() {
    let till = Till::new(Setup::default());
    let d = till.start();
    let base = d.http_url();
    let mut sse = Sse::connect(&base, "");
    sse.wait(|n, _| n == "scanner");
    let (status, log) = d.terminate();
    assert!(status.success(), "{status:?}\n{log}");
    assert!(log.contains("\"event\":\"stopped\""));
}

/// The test harness's event-stream reader: an event split across reads (inside a chunk,
/// across chunks, inside the chunk-size line) is put back together; one that is not JSON
/// is reported, not dropped.
#[test]
fn the_harness_reads_events_however_the_socket_splits_them() {
    let head =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
    let events = b": keep-alive\n\nevent: scanner\ndata: {\"scanner\":\"front\",\n\ndata: {\"outcome\":\"redeemed\",\"code\":\"123456789001\"}\n\n";
    // The events in two chunks, the second starting inside the first event's data line.
    let cut = 40;
    let mut wire = head.to_vec();
    for part in [&events[..cut], &events[cut..]] {
        wire.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        wire.extend_from_slice(part);
        wire.extend_from_slice(b"\r\n");
    }
    for split in 1..wire.len() {
        let mut s = SseStream::default();
        let mut got = s.push(&wire[..split]);
        got.extend(s.push(&wire[split..]));
        assert_eq!(got.len(), 2, "split at {split}: {got:?}");
        assert!(
            got[0].as_ref().is_err_and(|e| e.contains("not JSON")),
            "{got:?}"
        );
        let (name, v) = got[1].as_ref().expect("the second is JSON");
        assert_eq!(
            (name.as_str(), &v["outcome"]),
            ("message", &json!("redeemed"))
        );
    }
}

/// DNS rebinding: a page served from a name the attacker controls, resolved to 127.0.0.1,
/// sends that name as Host and as Origin. Every path (pages too) refuses a Host the daemon
/// does not serve; its own address, loopback names and `allowed_hosts` are answered.
#[test]
fn a_rebinding_host_is_refused_on_every_path() {
    let till = Till::new(Setup {
        extra_toml: "allowed_hosts = [\"pos.store12.lan\"]".into(),
        ..Setup::default()
    });
    let c = codes(47, 1);
    till.sim.add_codes(&c);
    let d = till.start();
    let base = d.http_url();
    let port = base.rsplit(':').next().unwrap().to_string();
    let body = json!({"code": c[0]}).to_string();
    for evil in [
        format!("evil.example:{port}"),
        "evil.example".to_string(),
        format!("10.9.8.7:{port}"),
    ] {
        let origin = format!("http://{evil}");
        let forged = [
            ("Host", evil.as_str()),
            ("Origin", origin.as_str()),
            ("Content-Type", "application/json"),
        ];
        for (method, path, b) in [
            ("POST", "/v1/scans", body.as_bytes()),
            ("GET", "/v1/export.csv", &b""[..]),
            ("GET", "/v1/redemptions", &b""[..]),
            ("GET", "/", &b""[..]),
            ("GET", "/kiosk", &b""[..]),
            ("GET", "/metrics", &b""[..]),
        ] {
            let r = http(method, &format!("{base}{path}"), &forged, b);
            assert_eq!(r.status, 421, "{method} {path} with Host {evil}: {r:?}");
            assert!(!r.body.contains(&c[0]));
        }
    }
    assert_eq!(
        till.sim.card.calls_for(&c[0]).consume,
        0,
        "nothing was redeemed"
    );
    for name in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("pos.store12.lan:{port}"),
    ] {
        let r = http(
            "GET",
            &format!("{base}/v1/redemptions"),
            &[("Host", name.as_str())],
            b"",
        );
        assert_eq!(r.status, 200, "Host {name}: {r:?}");
    }
    let origin = format!("http://pos.store12.lan:{port}");
    let r = http(
        "POST",
        &format!("{base}/v1/scans"),
        &[
            ("Host", &format!("pos.store12.lan:{port}")),
            ("Origin", &origin),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    );
    assert_eq!(r.json()["outcome"], "redeemed", "{r:?}");
    d.kill9();
}

/// Connections that send nothing, half a request's head, or half its body are closed:
/// none holds a descriptor for ever.
#[test]
fn idle_and_half_sent_connections_are_closed() {
    use std::io::{Read, Write};
    let till = Till::new(Setup {
        online_wait: "200ms",
        extra_toml: "idle_timeout = \"300ms\"".into(),
        ..Setup::default()
    });
    let d = till.start();
    let base = d.http_url();
    let host = base.strip_prefix("http://").unwrap().to_string();
    let closed = |mut s: std::net::TcpStream, what: &str| {
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut got = Vec::new();
        let r = s.read_to_end(&mut got);
        assert!(r.is_ok(), "{what}: still open after {WAIT:?}: {r:?}");
        got
    };
    let silent = std::net::TcpStream::connect(&host).unwrap();
    assert!(closed(silent, "nothing sent").is_empty());
    let mut half_head = std::net::TcpStream::connect(&host).unwrap();
    half_head
        .write_all(format!("GET /v1/redemptions HTTP/1.1\r\nHost: {host}\r\n").as_bytes())
        .unwrap();
    closed(half_head, "half a request head");
    let mut half_body = std::net::TcpStream::connect(&host).unwrap();
    half_body
        .write_all(
            format!(
                "POST /v1/scans HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"code\":"
            )
            .as_bytes(),
        )
        .unwrap();
    let answer = String::from_utf8_lossy(&closed(half_body, "half a body")).to_string();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // And the API still answers.
    assert_eq!(
        http("GET", &format!("{base}/healthz"), &[], b"").status,
        200
    );
    d.kill9();
}

/// 150 connections that send nothing, against a daemon with 128 file descriptors: they
/// cannot starve it. Those beyond `max_connections` are answered 503 at once and closed,
/// the scanner's scans are still redeemed (the token fetch and WeChat calls have their
/// descriptors), and the API answers again once the idle ones are gone.
#[test]
fn idle_connections_cannot_starve_the_till() {
    let till = Till::new(Setup {
        extra_toml: "max_connections = 16\nidle_timeout = \"30s\"".into(),
        ..Setup::default()
    });
    let c = codes(49, 1);
    till.sim.add_codes(&c);
    let d = Daemon::spawn_limited(&till.config, 128);
    d.wait_event(|e| e["event"] == "scanner_connected");
    let base = d.http_url();
    let host = base.strip_prefix("http://").unwrap().to_string();
    let idle: Vec<std::net::TcpStream> = (0..150)
        .filter_map(|_| std::net::TcpStream::connect(&host).ok())
        .collect();
    assert!(idle.len() >= 100, "{} connections", idle.len());
    let busy = http("GET", &format!("{base}/healthz"), &[], b"");
    assert_eq!(busy.status, 503, "{busy:?}");
    assert!(busy.body.contains("too many connections"), "{busy:?}");
    till.pty.scan(&c[0]);
    let o = d.outcome(&c[0]);
    assert_eq!(o["outcome"], "redeemed", "the till still works: {o}");
    drop(idle);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if http("GET", &format!("{base}/healthz"), &[], b"").status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the API never answered again"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        d.events().iter().all(|e| !e["message"]
            .as_str()
            .unwrap_or("")
            .contains("Too many open files")),
        "no descriptor ran out"
    );
    d.kill9();
}

/// A kiosk or mini program hands over a card's `encrypt_code`: it is decrypted with
/// `card/code/decrypt` and then handled as a scan of the plain code; a decryption that is
/// not a code this till accepts is refused (never sent), and one WeChat cannot decrypt is
/// answered 422 without a row.
#[test]
fn an_encrypt_code_is_decrypted_then_routed_like_a_scan() {
    let till = Till::new(Setup::default());
    let c = codes(51, 1);
    till.sim.add_codes(&c);
    let enc = till.sim.card.encrypt(&c[0]);
    let garbage = till.sim.card.encrypt("hello-world");
    let d = till.start();
    let base = d.http_url();
    let r = post_json(&base, "/v1/scans", &json!({ "encrypt_code": enc })).json();
    assert_eq!(
        (r["outcome"].as_str(), r["code"].as_str()),
        (Some("redeemed"), Some(c[0].as_str())),
        "{r}"
    );
    assert_eq!(till.sim.card.consumed_count(&c[0]), 1);

    let r = post_json(&base, "/v1/scans", &json!({ "encrypt_code": garbage })).json();
    assert_eq!(r["outcome"], "rejected", "{r}");
    assert_eq!(
        till.sim.card.calls_for("hello-world").consume,
        0,
        "never sent"
    );

    let r = post_json(&base, "/v1/scans", &json!({ "encrypt_code": "ENC00" }));
    assert_eq!(r.status, 422, "{r:?}");
    assert!(r.body.contains("40075"), "{r:?}");
    let r = post_json(
        &base,
        "/v1/scans",
        &json!({ "code": c[0], "encrypt_code": enc }),
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(till.log().len(), 2, "the undecryptable one left no row");
    d.kill9();
}
