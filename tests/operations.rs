//! Running it like production: the systemd unit, sd_notify, `check`, a full disk, a damaged
//! ledger, online backups, and logs that never show a full code.

mod support;

use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use support::*;

fn systemd_analyze() -> &'static str {
    let p = "/usr/bin/systemd-analyze";
    assert!(
        std::path::Path::new(p).exists(),
        "systemd-analyze is needed: scripts/test.sh installs Debian's `systemd`"
    );
    p
}

/// Verifies the unit (`unit` names a file in `systemd/`, its ExecStart pointed at the binary
/// just built, which verify checks exists) and gives its text and its exposure figure.
fn verify_unit(unit: &str) -> (String, f64) {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("systemd")
            .join(unit),
    )
    .unwrap();
    let path = dir.path().join(unit);
    std::fs::write(&path, text.replace("/usr/bin/redeemd", bin())).unwrap();
    let out = Command::new(systemd_analyze())
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify {unit}: {err}");
    assert!(!err.contains("Unknown key"), "{unit}: {err}");
    let out = Command::new(systemd_analyze())
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&path)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let figure: f64 = report
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure figure for {unit}: {report}"));
    println!("systemd-analyze security exposure of {unit}: {figure}");
    (text, figure)
}

#[test]
fn the_unit_file_verifies_and_its_exposure_is_at_most_1_5() {
    let (unit, figure) = verify_unit("redeemd.service");
    assert!(figure <= 1.5, "exposure {figure}");
    for needed in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "StateDirectory=redeemd",
        "ConfigurationDirectory=redeemd",
        "LoadCredential=",
        "DeviceAllow=char-ttyACM rw",
        "DeviceAllow=char-ttyUSB rw",
        "DeviceAllow=char-input r",
        "DeviceAllow=char-hidraw r",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
    ] {
        assert!(unit.contains(needed), "unit lacks {needed}");
    }
}

#[test]
fn notifies_ready_watchdog_and_stopping_in_order() {
    let till = Till::new(Setup::default());
    let sock_path = till.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let mut child = redeemd(["run"])
        .config(&till.config)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 4096];
    let mut recv = || {
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    let first = recv();
    assert!(first.starts_with("READY=1\n"), "{first}");
    assert!(first.contains("STATUS=0 pending"), "{first}");
    let second = recv();
    assert!(second.starts_with("WATCHDOG=1\n"), "{second}");
    assert!(second.contains("scanners: front up"), "{second}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let mut rest = Vec::new();
    loop {
        let m = recv();
        let stop = m.starts_with("STOPPING=1");
        rest.push(m);
        if stop {
            break;
        }
    }
    assert!(rest.iter().all(|m| !m.starts_with("READY")), "{rest:?}");
    assert!(child.wait().unwrap().success());
}

fn check(config: &std::path::Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = redeemd(["check"])
        .config(config)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn check_accepts_a_good_setup_and_lists_every_problem_of_a_bad_one() {
    let till = Till::with_coupons(Setup::default());
    let (code, out) = check(&till.config, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("OK"));

    // Syntax: file, line and key.
    let good = std::fs::read_to_string(&till.config).unwrap();
    std::fs::write(
        &till.config,
        good.replace("max_pending = 500", "max_pending = \"many\""),
    )
    .unwrap();
    let (code, out) = check(&till.config, &[]);
    assert_eq!(code, Some(78));
    assert!(
        out.contains("redeemd.toml") && out.contains("line") && out.contains("max_pending"),
        "{out}"
    );

    // Several problems at once, each named.
    std::fs::write(&till.config, &good).unwrap();
    let secret = till.dir.path().join("appsecret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(till.dir.path().join("pub_key.pem"), "not a key").unwrap();
    let (code, out) = check(&till.config, &[]);
    assert_eq!(code, Some(78), "{out}");
    assert!(
        out.contains("wechat.secret_file") && out.contains("0644"),
        "{out}"
    );
    assert!(out.contains("wechat_pay.public_key_file"), "{out}");
    assert!(!out.contains(SECRET));
    let (code, _) = check(&till.config, &[]);
    let run = redeemd(["run"]).config(&till.config).output().unwrap();
    assert_eq!(
        run.status.code(),
        code,
        "run performs the same checks first"
    );
}

#[test]
fn secrets_can_come_from_the_credentials_directory() {
    let till = Till::new(Setup::default());
    let creds = till.dir.path().join("credentials");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("appsecret"), SECRET).unwrap();
    // systemd gives credentials 0440 to the service; that is fine there.
    std::fs::set_permissions(
        creds.join("appsecret"),
        std::fs::Permissions::from_mode(0o440),
    )
    .unwrap();
    let text = std::fs::read_to_string(&till.config).unwrap().replace(
        "secret_file = \"appsecret\"",
        "secret_file = \"${CREDENTIALS_DIRECTORY}/appsecret\"",
    );
    std::fs::write(&till.config, text).unwrap();
    let (code, out) = check(
        &till.config,
        &[("CREDENTIALS_DIRECTORY", creds.to_str().unwrap())],
    );
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = check(&till.config, &[]);
    assert_eq!(code, Some(78));
    assert!(
        out.contains("CREDENTIALS_DIRECTORY") && out.contains("line"),
        "{out}"
    );
}

#[test]
fn a_damaged_ledger_is_refused_with_the_way_out() {
    let till = Till::new(Setup::default());
    let db = till.dir.path().join("ledger/redeemd.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    std::fs::write(&db, vec![0x42u8; 8192]).unwrap();
    let (code, out) = check(&till.config, &[]);
    assert_eq!(code, Some(78), "{out}");
    let run = redeemd(["run"]).config(&till.config).output().unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        err.contains("redeemd.db") && err.contains("redeemd backup"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&db).unwrap(),
        vec![0x42u8; 8192],
        "the damaged file is left alone"
    );
}

#[test]
fn backup_while_scans_flow_is_consistent() {
    let till = Till::new(Setup::default());
    let c = codes(60, 30);
    till.sim.add_codes(&c);
    let d = till.start();
    for code in &c[..10] {
        till.pty.scan(code);
    }
    // Each of the first ten is redeemed before the copy; they run side by side, so one
    // outcome says nothing of the others.
    for code in &c[..10] {
        if d.outcome(code)["outcome"] != "redeemed" {
            d.settled(code, "redeemed");
        }
    }
    // More scans are in flight while the copy is taken.
    for code in &c[10..] {
        till.pty.scan(code);
    }
    let dest = till.dir.path().join("backup.db");
    let out = redeemd(["backup"])
        .config(&till.config)
        .arg(&dest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copy = rusqlite::Connection::open(&dest).unwrap();
    let ok: String = copy
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let rows: i64 = copy
        .query_row("SELECT count(*) FROM redemptions", [], |r| r.get(0))
        .unwrap();
    assert!((10..=30).contains(&rows), "{rows}");
    let redeemed_in_copy: i64 = copy
        .query_row(
            "SELECT count(*) FROM redemptions WHERE state = 'redeemed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(redeemed_in_copy >= 10, "{redeemed_in_copy}");
    assert_eq!(
        std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
        0o600
    );
    for code in &c {
        d.outcome(code);
    }
    d.kill9();
}

#[test]
fn a_full_disk_refuses_new_scans_then_recovers() {
    let till = Till::new(Setup::default());
    let ledger_dir = till.dir.path().join("ledger");
    std::fs::create_dir_all(&ledger_dir).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&ledger_dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        mounted,
        "this test mounts a 2 MiB tmpfs for the ledger (needs root, as CI has)"
    );
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(ledger_dir.clone());
    let c = codes(61, 3);
    till.sim.add_codes(&c);
    let d = till.start();
    till.pty.scan(&c[0]);
    assert_eq!(d.outcome(&c[0])["outcome"], "redeemed");

    // Fill the disk.
    let filler = ledger_dir.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 64 * 1024];
    while std::io::Write::write_all(&mut f, &block).is_ok() {}
    drop(f);
    till.pty.scan(&c[1]);
    let o = d.outcome(&c[1]);
    assert_eq!(o["outcome"], "refused_offline", "{o}");
    assert!(
        o["reason"].as_str().unwrap().contains("cannot record"),
        "{o}"
    );
    assert_eq!(till.sim.card.calls_for(&c[1]).consume, 0);
    // Health says so: the last write could not reach the disk.
    let base = d.http_url();
    let h = http("GET", &format!("{base}/healthz"), &[], b"");
    assert_eq!(h.status, 503, "{h:?}");
    assert!(
        h.json()["ledger"]
            .as_str()
            .unwrap_or("")
            .contains("cannot write"),
        "{h:?}"
    );

    // Space returns: the daemon is still there and records again.
    std::fs::remove_file(&filler).unwrap();
    till.pty.scan(&c[2]);
    assert_eq!(d.outcome(&c[2])["outcome"], "redeemed");
    let h = http("GET", &format!("{base}/healthz"), &[], b"");
    assert_eq!(
        h.status, 200,
        "healthy again after a write reached the disk: {h:?}"
    );
    // What the till was told for the scan just before the disk filled is in the ledger
    // (its record may have failed while the disk was full: it is written again).
    let deadline = std::time::Instant::now() + WAIT;
    while till.row(&c[0])["till_outcome"] != "redeemed" {
        assert!(std::time::Instant::now() < deadline, "{}", till.row(&c[0]));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let log = till.log();
    assert_eq!(
        log.len(),
        2,
        "the refused scan left no row, the others are there"
    );
    // A failed shared commit may have been the dispatcher's too: it waits and carries on.
    assert!(
        d.events().iter().all(|e| e["event"] != "dispatcher_failed"),
        "the dispatcher survived the full disk"
    );
    d.kill9();
}

#[test]
fn logs_never_show_a_full_code() {
    let till = Till::with_coupons(Setup::default());
    let card = "120000000099";
    let coupon = "BF77X12345678";
    let payment = "134567890123456789";
    till.sim.add_codes(&[card]);
    till.sim.pay().add_coupon(coupon, STOCK_ID);
    let d = till.start();
    for c in [card, coupon, payment] {
        till.pty.scan(c);
    }
    for c in [card, coupon] {
        d.outcome(c);
    }
    d.outcome(payment);
    let base = d.http_url();
    let r = http(
        "POST",
        &format!("{base}/v1/scans"),
        &[("Content-Type", "application/json")],
        json!({"code": "120000000077"}).to_string().as_bytes(),
    );
    assert_eq!(r.status, 200);
    d.outcome("120000000077");
    let log = d.kill9();
    for c in [card, coupon, payment, "120000000077"] {
        assert!(!log.contains(c), "the log shows {c} in full");
        assert!(log.contains(&masked(c)), "no masked {c} in the log");
    }
    assert!(log.contains("\"route\":0"), "outcome lines carry the route");
}

#[test]
fn the_package_metadata_and_example_config_are_sound() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(root.join("Cargo.toml")).unwrap()).unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    let assets = deb["assets"].as_array().unwrap();
    let targets: Vec<&str> = assets.iter().map(|a| a[1].as_str().unwrap()).collect();
    for needed in [
        "usr/bin/",
        "lib/systemd/system/redeemd.service",
        "lib/udev/rules.d/99-redeemd.rules",
        "etc/redeemd/redeemd.toml",
    ] {
        assert!(targets.contains(&needed), "the package lacks {needed}");
    }
    for a in assets {
        let src = a[0].as_str().unwrap();
        if src.starts_with("target/") {
            continue;
        }
        // A glob (`docs/*.md`) must match at least one file, as cargo-deb requires.
        match src.rsplit_once("/*") {
            Some((dir, suffix)) => {
                let matched = std::fs::read_dir(root.join(dir))
                    .map(|entries| {
                        entries
                            .filter_map(|e| e.ok())
                            .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
                            .count()
                    })
                    .unwrap_or(0);
                assert!(matched > 0, "asset {src} matches no file");
            }
            None => assert!(root.join(src).exists(), "asset {src} is missing"),
        }
    }
    let scripts = root.join(deb["maintainer-scripts"].as_str().unwrap());
    let postinst = std::fs::read_to_string(scripts.join("postinst")).unwrap();
    assert!(
        postinst.contains("adduser --system"),
        "postinst creates the service user"
    );

    // The example config is valid apart from the secret only systemd provides.
    let creds = tempfile::tempdir().unwrap();
    let out = redeemd(["check"])
        .config(root.join("packaging/redeemd.toml"))
        .env("CREDENTIALS_DIRECTORY", creds.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    let problems: Vec<&str> = text.lines().filter(|l| l.starts_with("  - ")).collect();
    assert_eq!(problems.len(), 1, "{text}");
    assert!(problems[0].contains("wechat.secret_file"), "{text}");
}

/// Two daemons on one ledger would both dispatch (a second consume for a card code whose
/// answer was lost) and the second would unlink the first's socket. The second stops at
/// once, naming the first's pid; readers keep working meanwhile.
#[test]
fn a_second_daemon_on_the_same_ledger_is_refused_and_readers_still_work() {
    // Also: the socket's mode is http.socket_mode (default 0660).
    let till = Till::new(Setup {
        extra_toml: String::new(),
        ..Setup::default()
    });
    let text = std::fs::read_to_string(&till.config).unwrap();
    let socket = till.dir.path().join("api.sock");
    std::fs::write(
        &till.config,
        text.replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"unix:{}\"", socket.display()),
        ),
    )
    .unwrap();
    let code = "460000000017";
    till.sim.add_codes(&[code]);
    let d = till.start();
    d.wait_event(|e| e["event"] == "ready");
    assert!(socket.exists());
    assert_eq!(
        std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777,
        0o660,
        "the service's group (the POS user) may connect, whatever the umask"
    );

    let second = redeemd(["run"]).config(&till.config).output().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("is in use by pid {}", d.pid())),
        "{stderr}"
    );
    assert!(socket.exists(), "the first daemon's socket is untouched");

    till.pty.scan(code);
    assert_eq!(d.outcome(code)["outcome"], "redeemed");
    assert_eq!(
        till.row(code)["state"],
        "redeemed",
        "log reads while it runs"
    );
    let backup = till.dir.path().join("copy.db");
    let out = redeemd(["backup"])
        .config(&till.config)
        .arg(&backup)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.kill9();
    // The kernel let go of the lock with the process.
    let d = till.start();
    d.kill9();
}

/// SIGHUP (a closed terminal, a `kill -HUP` by habit) neither kills the daemon nor goes
/// unnoticed: it says what it reloads (nothing) and goes on; SIGTERM still stops it cleanly.
#[test]
fn sighup_is_answered_in_the_log_and_the_daemon_goes_on() {
    let till = Till::new(Setup::default());
    let c = codes(48, 1);
    till.sim.add_codes(&c);
    let d = till.start();
    d.wait_event(|e| e["event"] == "ready");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid()),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let said = d.wait_event(|e| e["event"] == "sighup");
    assert!(
        said["message"].as_str().unwrap_or("").contains("restart"),
        "{said}"
    );
    till.pty.scan(&c[0]);
    assert_eq!(d.outcome(&c[0])["outcome"], "redeemed", "still working");
    let (status, log) = d.terminate();
    assert!(status.success(), "{log}");
}

/// The backup is written as `DEST.partial` (as the README says), and renamed only when whole:
/// where that name cannot be written, the backup fails naming it, and DEST never appears.
#[test]
fn a_backup_is_written_as_dest_partial_first() {
    let till = Till::new(Setup::default());
    let d = till.start();
    d.wait_event(|e| e["event"] == "ready");
    let dest = till.dir.path().join("bk2.db");
    std::fs::create_dir(till.dir.path().join("bk2.db.partial")).unwrap();
    let out = redeemd(["backup"])
        .config(&till.config)
        .arg(&dest)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("bk2.db.partial"), "{stderr}");
    assert!(!dest.exists());
    std::fs::remove_dir(till.dir.path().join("bk2.db.partial")).unwrap();
    let out = redeemd(["backup"])
        .config(&till.config)
        .arg(&dest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dest.exists() && !till.dir.path().join("bk2.db.partial").exists());
    d.kill9();
}

/// SIGTERM stops a daemon whose standard input (a stdin scanner) stays open and silent: it
/// does not wait for one more line (the demo's Ctrl-C used to need an extra Enter).
#[test]
fn sigterm_stops_the_daemon_while_a_stdin_scanner_waits_for_input() {
    let till = Till::new(Setup {
        extra_toml: "\n[[scanner]]\nname = \"typed\"\ntype = \"stdin\"\n".into(),
        ..Setup::default()
    });
    let mut child = redeemd(["--log-format", "json", "run"])
        .config(&till.config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Held open, never written to.
    let _stdin = child.stdin.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let ready = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("\"event\":\"ready\""));
    assert!(ready, "the daemon never said ready");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let Some(status) = exit_within(&mut child, WAIT) else {
        panic!("still running {WAIT:?} after SIGTERM, waiting for standard input");
    };
    assert!(status.success(), "{status:?}");
}

/// HQ's unit: it verifies, and is sandboxed at least as tightly as the till's.
#[test]
fn the_fleet_unit_verifies_and_its_exposure_is_at_most_1_5() {
    let (unit, figure) = verify_unit("redeemd-fleet.service");
    assert!(figure <= 1.5, "exposure {figure}");
    for needed in [
        "ExecStart=/usr/bin/redeemd fleet --config /etc/redeemd/hq.toml",
        // A reload re-reads the stores of hq.toml (SIGHUP).
        "ExecReload=/bin/kill -HUP $MAINPID",
        "StateDirectory=redeemd",
        "PrivateDevices=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
    ] {
        assert!(unit.contains(needed), "the fleet unit lacks {needed}");
    }
}
