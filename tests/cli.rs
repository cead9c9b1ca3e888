//! The command line: config errors, exit codes, and `redeemd log` filters.

mod support;

use std::os::unix::fs::PermissionsExt;
use support::*;

fn run_with(config: &std::path::Path) -> std::process::Output {
    redeemd(["run"])
        .config(config)
        .output()
        .expect("run redeemd")
}

#[test]
fn unknown_keys_and_bad_values_exit_78_naming_the_key() {
    let till = Till::new(Setup::default());
    let good = std::fs::read_to_string(&till.config).unwrap();
    let cases = [
        (good.replace("max_pending", "max_pendign"), "max_pendign"),
        (
            good.replace("base_delay = \"50ms\"", "base_delay = \"soon\""),
            "soon",
        ),
        (
            good.replace("pattern = \"[0-9]{12}\"", "pattern = \"[0-9\""),
            "route[0].pattern",
        ),
        (good.replace("type = \"serial\"", "type = \"usb\""), "usb"),
        (
            good.replace(&till.sim.url(), "http://192.0.2.1"),
            "wechat.base_url",
        ),
    ];
    for (text, needle) in cases {
        std::fs::write(&till.config, &text).unwrap();
        let out = run_with(&till.config);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{needle}: {err}");
        assert!(err.contains(needle), "error does not name {needle}: {err}");
    }
}

#[test]
fn a_secret_file_others_can_read_is_refused() {
    let till = Till::new(Setup::default());
    let secret = till.dir.path().join("appsecret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run_with(&till.config);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("secret_file") && err.contains("chmod 600"),
        "{err}"
    );
    assert!(!err.contains(SECRET));
}

#[test]
fn config_falls_back_to_the_environment() {
    let till = Till::new(Setup::default());
    std::fs::write(&till.config, "database = 1\n").unwrap();
    let out = redeemd(["run"])
        .env("REDEEMD_CONFIG", &till.config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&*till.config.to_string_lossy()));
}

#[test]
fn log_filters_and_table() {
    let till = Till::new(Setup::default());
    let codes = codes(20, 2);
    till.sim.add_codes(&codes[..1]);
    let d = till.start();
    till.pty.scan(&codes[0]);
    till.pty.scan(&codes[1]);
    d.outcome(&codes[0]);
    d.outcome(&codes[1]);

    let json = |args: &[&str]| -> Vec<serde_json::Value> {
        let out = redeemd(["log", "--json"])
            .config(&till.config)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    // Read while the daemon runs.
    assert_eq!(json(&[]).len(), 2);
    let redeemed = json(&["--state", "redeemed"]);
    assert_eq!(redeemed.len(), 1);
    assert_eq!(redeemed[0]["code"], codes[0].as_str());
    let rejected = json(&["--state", "rejected"]);
    assert_eq!(rejected[0]["code"], codes[1].as_str());
    assert_eq!(json(&["--since", "1h"]).len(), 2);
    assert_eq!(json(&["--until", "1h"]).len(), 0);
    assert_eq!(json(&["--limit", "1"]).len(), 1);

    let table = redeemd(["log"]).config(&till.config).output().unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("    ID  SCANNED"), "{text}");
    assert!(text.contains("2 rows"));

    let bad = redeemd(["log", "--state", "done"])
        .config(&till.config)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("queued, redeemed"));
    d.kill9();
}

#[test]
fn demo_redeems_codes_typed_on_stdin() {
    use std::io::{BufRead, Write};
    let mut child = redeemd(["demo"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"123456789001\n123456789001\n123456789010\n123456789020\nBF0000000001\n")
        .unwrap();
    // Standard input stays open until the product-coupon walk-through has ended: the demo
    // stops when it closes.
    let stdout = child.stdout.take().unwrap();
    let (walked, walked_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains("Try it:") {
                let _ = walked.send(());
            }
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let _ = walked_rx.recv_timeout(std::time::Duration::from_secs(60));
    drop(stdin);
    let status = child.wait().unwrap();
    let text = reader.join().unwrap();
    let mut stderr = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr);
    assert!(status.success(), "{text}\n{stderr}");
    assert!(text.contains("SIMULATED"));
    // The row ids: what the product-coupon walk-through scans may come first.
    let id_of = |what: &str, code: &str| {
        text.lines()
            .find(|l| l.contains(&format!("{what}: #")) && l.contains(code))
            .and_then(|l| l.split('#').nth(1))
            .and_then(|l| l.split(' ').next())
            .map(String::from)
            .unwrap_or_else(|| panic!("{what}: {code}: {text}"))
    };
    let card = id_of("redeemed", "123456789001");
    assert!(
        text.contains(&format!(
            "redeemed: #{card} 123456789001 [满100减10元代金券, ¥10]"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("duplicate: #{card} 123456789001")),
        "{text}"
    );
    assert!(text.contains("already redeemed elsewhere"), "{text}");
    assert!(text.contains("123456789020 [会员卡] "), "{text}");
    assert!(text.contains("member card, not a coupon"), "{text}");
    assert!(
        text.contains("BF0000000001 [满50减5元商家券, ¥5]"),
        "{text}"
    );
    assert!(text.contains("redeemd void --config"), "{text}");
    // The chain: WeChat Pay issues a product coupon, HQ confirms and registers it, and the
    // demo's store holds a copy.
    assert!(
        text.contains("Product coupon (商品券) PC0000008001: issued by WeChat Pay to oDemoCustomer01 → confirmed by HQ → registered; the store's copy says EFFECTIVE (拿铁兑换券)."),
        "{text}"
    );
    // At the till: one held, then used with its sale's WeChat Pay order; one held, voided.
    let held_id = |code: &str| id_of("held for the sale (used once it is paid)", code);
    let (first, second) = (held_id("PC0000008001"), held_id("PC0000008002"));
    assert!(
        text.contains(&format!("#{first} PC0000008001 [拿铁兑换券, ¥32]")),
        "{text}"
    );
    assert!(
        text.contains(&format!("/v1/redemptions/{first}/order -H 'Content-Type: application/json' -d '{{\"transaction_id\":\"4200000000202612050000000001\"}}'")),
        "{text}"
    );
    assert!(
        text.contains(&format!("→ #{first} redeemed: used at WeChat Pay with transaction_id 4200000000202612050000000001")),
        "{text}"
    );
    assert!(
        text.contains(&format!("→ #{second} cancelled: voided before payment")),
        "{text}"
    );
}

#[test]
fn devices_lists_ready_to_paste_scanner_blocks() {
    use std::os::unix::fs::symlink;
    let t = tempfile::tempdir().unwrap();
    let sys = t.path().join("sys");
    let dev = t.path().join("dev");
    let mk = |p: &std::path::Path| std::fs::create_dir_all(p).unwrap();
    let write = |p: std::path::PathBuf, s: &[u8]| std::fs::write(p, s).unwrap();

    // A USB-CDC scanner: /sys/devices/.../usb1/1-1 (ids) /1-1:1.0/tty/ttyACM0.
    let usb = sys.join("devices/pci0000:00/usb1/1-1");
    let tty_dev = usb.join("1-1:1.0");
    mk(&tty_dev);
    write(usb.join("idVendor"), b"0c2e\n");
    write(usb.join("idProduct"), b"0b61\n");
    write(usb.join("manufacturer"), b"Honeywell\n");
    write(usb.join("product"), b"Voyager 1450g\n");
    write(usb.join("serial"), b"17151B5E44\n");
    mk(&sys.join("class/tty/ttyACM0"));
    symlink(&tty_dev, sys.join("class/tty/ttyACM0/device")).unwrap();
    mk(&sys.join("class/tty/tty1")); // a virtual console: not listed
    mk(&dev.join("serial/by-id"));
    symlink(
        "../../ttyACM0",
        dev.join("serial/by-id/usb-Honeywell_Voyager_1450g_17151B5E44-if00"),
    )
    .unwrap();

    // A keyboard-wedge scanner.
    mk(&dev.join("input/by-id"));
    symlink(
        "../event5",
        dev.join("input/by-id/usb-Datalogic_Scanner-event-kbd"),
    )
    .unwrap();
    mk(&sys.join("class/input/event5/device"));
    write(
        sys.join("class/input/event5/device/name"),
        b"Datalogic Scanner\n",
    );

    // Two hidraw nodes: a HID-POS scanner and a mouse.
    for (n, hid, desc) in [
        (
            "hidraw0",
            "0003:05E0:1200.0001",
            &[0x06u8, 0x8C, 0x00, 0x09, 0x02][..],
        ),
        (
            "hidraw1",
            "0003:046D:C077.0002",
            &[0x05u8, 0x01, 0x09, 0x02][..],
        ),
    ] {
        let hid_dir = sys.join("devices/pci0000:00/usb1/1-2").join(hid);
        mk(&hid_dir);
        write(hid_dir.join("report_descriptor"), desc);
        mk(&sys.join("class/hidraw").join(n));
        symlink(&hid_dir, sys.join("class/hidraw").join(n).join("device")).unwrap();
    }

    let out = redeemd(["devices", "--sys-root"])
        .arg(&sys)
        .arg("--dev-root")
        .arg(&dev)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("USB 0c2e:0b61, Honeywell, Voyager 1450g, serial 17151B5E44"),
        "{text}"
    );
    assert!(
        text.contains("usb-Honeywell_Voyager_1450g_17151B5E44-if00\""),
        "{text}"
    );
    assert!(text.contains("type = \"keyboard\""), "{text}");
    assert!(text.contains("\"Datalogic Scanner\""), "{text}");
    assert!(text.contains("type = \"hidpos\""), "{text}");
    assert!(text.contains("USB 05e0:1200"), "{text}");
    assert!(
        text.contains("hidraw1: USB 046d:c077 — hidraw, but"),
        "{text}"
    );
    assert!(!text.contains("tty1"), "{text}");
    assert_eq!(text.matches("[[scanner]]").count(), 3, "{text}");
    // Every block parses as a scanner in a config.
    let cfg = format!(
        "database = \"x.db\"\ntill = \"t\"\n{text}\n[wechat]\nappid = \"wx\"\nsecret_file = \"s\"\n[[route]]\npattern = \"1\"\napi = \"card\"\n"
    );
    redeemd::config::Config::parse(&cfg, std::path::Path::new("/x/redeemd.toml")).unwrap();
}

#[test]
fn the_daemon_keeps_running_when_its_only_scanner_input_ends() {
    let till = Till::new(Setup::default());
    let text = std::fs::read_to_string(&till.config).unwrap();
    let start = text.find("[[scanner]]").unwrap();
    let end = text.find("[wechat]").unwrap();
    let text = format!(
        "{}[[scanner]]\nname = \"pipe\"\ntype = \"stdin\"\n\n{}",
        &text[..start],
        &text[end..]
    );
    std::fs::write(&till.config, text).unwrap();
    let c = codes(21, 1);
    till.sim.add_codes(&c);
    let d = Daemon::spawn(&till.config); // standard input is /dev/null: ends at once
    d.wait_event(|e| e["event"] == "scanner_ended");
    let base = d.http_url();
    let r = http(
        "POST",
        &format!("{base}/v1/scans"),
        &[("Content-Type", "application/json")],
        format!("{{\"code\":\"{}\"}}", c[0]).as_bytes(),
    );
    assert_eq!(r.json()["outcome"], "redeemed", "{}", r.body);
    assert!(d.events().iter().all(|e| e["event"] != "stopped"));
    d.kill9();
}

/// `summary --day` takes exactly a date (or "today"), and a day is from its midnight to the
/// next: 29 March 2026 in Berlin has 23 hours, so a scan at 00:30 on the 30th is not in it.
#[test]
fn summary_days_follow_the_local_calendar() {
    let till = Till::new(Setup::default());
    let db = till.dir.path().join("ledger");
    std::fs::create_dir_all(&db).unwrap();
    let seed = Seed::open(&db.join("redeemd.db"));
    let at = |rfc: &str| {
        chrono::DateTime::parse_from_rfc3339(rfc)
            .unwrap()
            .timestamp_millis()
    };
    for (i, when) in [
        "2026-03-29T00:10:00+01:00",
        "2026-03-29T23:50:00+02:00",
        "2026-03-30T00:30:00+02:00",
    ]
    .into_iter()
    .enumerate()
    {
        seed.row(&SeedRow {
            code: &format!("45000000001{i}"),
            route: Some(0),
            scanned_at: at(when),
            ..SeedRow::default()
        });
    }
    drop(seed);
    let summary = |day: &str| {
        redeemd(["summary", "--day", day])
            .config(&till.config)
            .env("TZ", "Europe/Berlin")
            .output()
            .unwrap()
    };
    let out = summary("2026-03-29");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.lines().any(|l| l.trim() == "queued     2"),
        "two scans that day, not three: {text}"
    );
    assert!(text.contains(".. 2026-03-30T00:00:00.000+02:00"), "{text}");
    for bad in ["123456789s", "2026-3-29", "2026-02-30"] {
        let out = summary(bad);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("YYYY-MM-DD"),
            "{bad}"
        );
    }
}

/// A 0-byte file at the ledger's path (a botched restore, say) is not started over as a new
/// ledger: `check` names it under `database` (exit 78), and `run` refuses to start.
#[test]
fn an_empty_file_at_the_ledger_path_is_refused_by_check_and_run() {
    let till = Till::new(Setup::default());
    let db = till.dir.path().join("ledger");
    std::fs::create_dir_all(&db).unwrap();
    std::fs::write(db.join("redeemd.db"), b"").unwrap();
    let check = redeemd(["check"]).config(&till.config).output().unwrap();
    let text = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(78), "{text}");
    assert!(
        text.contains("database:") && text.contains("not a redeemd ledger"),
        "{text}"
    );
    let run = redeemd(["run"]).config(&till.config).output().unwrap();
    assert_ne!(run.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&run.stderr).contains("not a redeemd ledger"));
    assert_eq!(std::fs::metadata(db.join("redeemd.db")).unwrap().len(), 0);
}

/// A database path `run` cannot create (under a regular file, here) is a problem `check`
/// finds and names under `database` (exit 78), as `run` then does, instead of failing later
/// with a message that does not name the key.
#[test]
fn check_tries_the_database_location_run_will_use() {
    let till = Till::new(Setup::default());
    std::fs::write(till.dir.path().join("blocker"), b"not a folder").unwrap();
    let text = std::fs::read_to_string(&till.config).unwrap();
    std::fs::write(
        &till.config,
        text.replace(
            "database = \"ledger/redeemd.db\"",
            "database = \"blocker/redeemd.db\"",
        ),
    )
    .unwrap();
    for cmd in ["check", "run"] {
        let out = redeemd([cmd]).config(&till.config).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{cmd}: {stderr}");
        assert!(
            stderr.contains("database: cannot create")
                && stderr.contains("is a file, not a folder"),
            "{cmd}: {stderr}"
        );
    }
}

/// Several kinds of problem at once (a bad pattern, a missing secret, a broken key): `check`
/// lists every one of them, not only the config's own, so one round of fixes is enough.
#[test]
fn check_lists_every_kind_of_problem_at_once() {
    let till = Till::with_coupons(Setup::default());
    let text = std::fs::read_to_string(&till.config).unwrap();
    std::fs::write(
        &till.config,
        text.replace("pattern = \"[0-9]{12}\"", "pattern = \"[0-9\""),
    )
    .unwrap();
    std::fs::remove_file(till.dir.path().join("appsecret")).unwrap();
    std::fs::write(till.dir.path().join("apiclient_key.pem"), "not a key").unwrap();
    let out = redeemd(["check"]).config(&till.config).output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{text}");
    for key in [
        "route[0].pattern",
        "wechat.secret_file",
        "wechat_pay.private_key_file",
    ] {
        assert!(text.contains(key), "{key} missing from:\n{text}");
    }
}

/// `[store]`'s code key is a secret shared by the chain's tills: `check` refuses one others
/// may read, or one too short to be a key, naming `store.code_key_file`; a good one passes.
#[test]
fn check_refuses_a_loose_or_short_code_key() {
    use std::os::unix::fs::PermissionsExt;
    let till = Till::new(Setup::default());
    let text = std::fs::read_to_string(&till.config).unwrap();
    std::fs::write(
        &till.config,
        text + "\n[store]\nname = \"store1\"\nnats_url = \"nats://127.0.0.1:4222\"\ncode_key_file = \"code.key\"\n",
    )
    .unwrap();
    let key = till.dir.path().join("code.key");
    let check = || {
        let out = redeemd(["check"]).config(&till.config).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let secret = "0123456789abcdef0123456789abcdef-chain-secret";
    std::fs::write(&key, secret).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, stderr) = check();
    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.contains("store.code_key_file") && stderr.contains("chmod 600"),
        "{stderr}"
    );
    assert!(!stderr.contains(secret), "the secret is never printed");
    std::fs::write(&key, "short\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, stderr) = check();
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("at least 32"), "{stderr}");
    std::fs::write(&key, secret).unwrap();
    let (code, stderr) = check();
    assert_eq!(code, Some(0), "{stderr}");
}

/// `check --fleet`: HQ's config and its files, every problem named at once.
#[test]
fn check_fleet_validates_hq_toml_and_its_files() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("code.key");
    std::fs::write(&key, "fleet-check-test-key-0123456789abcdef").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = dir.path().join("hq.toml");
    let good = "database = \"fleet.db\"\ncode_key_file = \"code.key\"\n[hub]\nnats_url = \"nats://127.0.0.1:4222\"\n[[store]]\nname = \"store12\"\n";
    std::fs::write(&config, good).unwrap();
    let check = || {
        redeemd(["check", "--fleet"])
            .config(&config)
            .output()
            .unwrap()
    };
    let out = check();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));

    // A key others may read, and a store name that is not a NATS token.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = check();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("code_key_file"));
    std::fs::write(&config, good.replace("store12", "store 12")).unwrap();
    let out = check();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("store.name \"store 12\""), "{err}");
}
