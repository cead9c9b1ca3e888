//! The command line: config errors, exit codes, and `redeemd log` filters.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use support::*;

fn run_with(config: &std::path::Path) -> std::process::Output {
    Command::new(bin())
        .args(["run", "--config"])
        .arg(config)
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
    let out = Command::new(bin())
        .arg("run")
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
        let out = Command::new(bin())
            .args(["log", "--json", "--config"])
            .arg(&till.config)
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

    let table = Command::new(bin())
        .args(["log", "--config"])
        .arg(&till.config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("    ID  SCANNED"), "{text}");
    assert!(text.contains("2 rows"));

    let bad = Command::new(bin())
        .args(["log", "--state", "done", "--config"])
        .arg(&till.config)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("queued, redeemed"));
    d.kill9();
}

#[test]
fn demo_redeems_codes_typed_on_stdin() {
    use std::io::Write;
    let mut child = Command::new(bin())
        .arg("demo")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"123456789001\n123456789001\n123456789010\nBF0000000001\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("SIMULATED"));
    assert!(text.contains("redeemed: 123456789001"), "{text}");
    assert!(text.contains("duplicate: 123456789001"), "{text}");
    assert!(text.contains("already redeemed elsewhere"), "{text}");
    assert!(text.contains("redeemed: BF0000000001"), "{text}");
}
