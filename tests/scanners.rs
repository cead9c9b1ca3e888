//! Every scanner type end to end through the real binary: keyboard-wedge `input_event`
//! streams and HID-POS reports fed through FIFOs, serial feedback bytes and hot-plug through
//! pseudo-terminals.

mod support;

use redeemd::scanner::hidpos::reports;
use redeemd::scanner::keyboard::{
    EV_KEY, EV_SYN, InputEvent, KEY_CAPSLOCK, KEY_KPENTER, KEY_LEFTSHIFT, KEY_TAB, SYN_DROPPED,
    us_keystrokes,
};
use serde_json::Value;
use std::time::Duration;
use support::*;

fn outcome_of(e: &Value) -> String {
    e["outcome"].as_str().unwrap_or("").to_string()
}

fn bytes(events: &[InputEvent]) -> Vec<u8> {
    events.iter().flat_map(|e| e.to_bytes()).collect()
}

fn key(code: u16, value: i32) -> InputEvent {
    InputEvent {
        kind: EV_KEY,
        code,
        value,
    }
}

fn scanner_block(name: &str, kind: &str, path: &std::path::Path, extra: &str) -> String {
    format!(
        "[[scanner]]\nname = \"{name}\"\ntype = \"{kind}\"\npath = \"{}\"\n{extra}\n",
        path.display()
    )
}

#[test]
fn keyboard_wedge_streams_through_a_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let us = Fifo::new(dir.path(), "kbd-us");
    let de = Fifo::new(dir.path(), "kbd-de");
    let setup = Setup {
        extra_toml: scanner_block(
            "wedge",
            "keyboard",
            &us.path,
            "layout = \"us\"\ngrab = true",
        ) + &scanner_block("wedge-de", "keyboard", &de.path, "layout = \"de\"")
            + "[[route]]\npattern = \"Z[0-9]{11}\"\napi = \"card\"\n",
        ..Setup::default()
    };
    let till = Till::new(setup);
    let plain = codes(30, 4);
    let z = "Z12345678930";
    till.sim.add_codes(&plain);
    till.sim.add_codes(&[z]);
    let d = till.start();
    d.wait_events(3, |e| e["event"] == "scanner_connected");

    // 1: plain US keystrokes, Enter.
    us.write(&bytes(&us_keystrokes(&plain[0])));
    // 2: Caps Lock on and off again, keypad digits, autorepeat noise, Tab as the terminator.
    let mut ev = vec![
        key(KEY_CAPSLOCK, 1),
        key(KEY_CAPSLOCK, 0),
        key(KEY_CAPSLOCK, 1),
    ];
    for ch in plain[1].chars() {
        let kp = match ch {
            '0' => 82,
            '1' => 79,
            '2' => 80,
            '3' => 81,
            '4' => 75,
            '5' => 76,
            '6' => 77,
            '7' => 71,
            '8' => 72,
            _ => 73,
        };
        ev.extend([key(kp, 1), key(kp, 2), key(kp, 0)]);
    }
    ev.push(key(KEY_TAB, 1));
    us.write(&bytes(&ev));
    // 3: a partial code lost to SYN_DROPPED, then a whole one ended by keypad Enter.
    let mut ev = vec![key(KEY_LEFTSHIFT, 1), key(2, 1), key(3, 1)];
    ev.push(InputEvent {
        kind: EV_SYN,
        code: SYN_DROPPED,
        value: 0,
    });
    let mut tail = us_keystrokes(&plain[2]);
    tail.truncate(tail.len() - 2);
    ev.extend(tail);
    ev.push(key(KEY_KPENTER, 1));
    us.write(&bytes(&ev));
    // 4: a German-layout scanner: the key US calls Y types Z there (Shift for capital).
    let mut ev = vec![
        key(KEY_LEFTSHIFT, 1),
        key(21, 1),
        key(21, 0),
        key(KEY_LEFTSHIFT, 0),
    ];
    let mut digits = us_keystrokes(&z[1..]);
    ev.append(&mut digits);
    de.write(&bytes(&ev));

    for c in &plain[..3] {
        assert_eq!(outcome_of(&d.outcome(c)), "redeemed", "{c}");
    }
    assert_eq!(outcome_of(&d.outcome(z)), "redeemed");
    let log = till.log();
    assert_eq!(
        log.len(),
        4,
        "the SYN_DROPPED fragment must not become a scan: {log:?}"
    );
    assert_eq!(till.row(&plain[0])["scanner"], "wedge");
    assert_eq!(till.row(z)["scanner"], "wedge-de");

    // Unplugged and back: the source reopens, and nothing spun meanwhile.
    us.unplug();
    d.wait_event(|e| e["event"] == "scanner_disconnected" && e["scanner"] == "wedge");
    d.wait_events(4, |e| e["event"] == "scanner_connected");
    us.write(&bytes(&us_keystrokes(&plain[3])));
    assert_eq!(outcome_of(&d.outcome(&plain[3])), "redeemed");
    d.kill9();
}

#[test]
fn hid_pos_reports_through_a_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let hid = Fifo::new(dir.path(), "hidraw");
    // QR codes carry a URL; the route's capture group is the code.
    let setup = Setup {
        extra_toml: scanner_block("kiosk", "hidpos", &hid.path, "report_id = 2")
            + "[[route]]\npattern = 'https://wx\\.example/c\\?code=([0-9]{12})(?:&.*)?'\napi = \"card\"\n",
        ..Setup::default()
    };
    let till = Till::new(setup);
    let c = codes(31, 4);
    till.sim.add_codes(&c);
    let d = till.start();
    d.wait_events(2, |e| e["event"] == "scanner_connected");

    let mut stream = Vec::new();
    stream.extend(reports(2, b"]E0", c[0].as_bytes()).concat());
    stream.extend(reports(4, b"]E0", b"999999999999").concat()); // another report id: ignored
    let url = format!("https://wx.example/c?code={}&utm={}", c[1], "q".repeat(90));
    let qr = reports(2, b"]Q1", url.as_bytes());
    assert!(qr.len() >= 2, "multi-report");
    stream.extend(qr.concat());
    hid.write(&stream);
    assert_eq!(outcome_of(&d.outcome(&c[0])), "redeemed");
    assert_eq!(outcome_of(&d.outcome(&c[1])), "redeemed");
    assert_eq!(till.row(&c[0])["aim_id"], "]E0");
    let qr_row = till.row(&c[1]);
    assert_eq!(qr_row["aim_id"], "]Q1");
    assert_eq!(qr_row["symbology"], "QR Code");

    // A report cut off mid-way, then the device goes: nothing half-read survives the reopen.
    let r = reports(2, b"]C0", c[2].as_bytes()).concat();
    hid.write(&r[..30]);
    hid.unplug();
    d.wait_event(|e| e["event"] == "scanner_disconnected" && e["scanner"] == "kiosk");
    d.wait_events(3, |e| e["event"] == "scanner_connected");
    hid.write(&reports(2, b"]C0", c[3].as_bytes()).concat());
    assert_eq!(outcome_of(&d.outcome(&c[3])), "redeemed");
    assert!(
        till.log().iter().all(|r| r["code"] != c[2].as_str()),
        "a truncated report became a scan"
    );
    assert_eq!(till.log().len(), 3);
    d.kill9();
}

#[test]
fn serial_scanner_gets_good_and_bad_read_bytes() {
    let till = Till::new(Setup::default());
    let text = std::fs::read_to_string(&till.config).unwrap().replace(
        "baud = 9600\n",
        "baud = 9600\ngood_read = \"\\u0007\"\nbad_read = \"\\u0015\\u0015\"\n",
    );
    std::fs::write(&till.config, text).unwrap();
    let c = codes(32, 1);
    till.sim.add_codes(&c);
    let d = till.start();
    till.pty.scan(&c[0]);
    assert_eq!(outcome_of(&d.outcome(&c[0])), "redeemed");
    assert_eq!(till.pty.read_back(1, WAIT), vec![0x07]);
    till.pty.scan("not-a-code");
    assert_eq!(till.pty.read_back(2, WAIT), vec![0x15, 0x15]);
    d.kill9();
}

#[test]
fn an_unplugged_serial_scanner_costs_no_cpu() {
    let mut till = Till::new(Setup::default());
    let d = till.start();
    let old = std::mem::replace(&mut till.pty, Pty::new());
    drop(old);
    d.wait_event(|e| e["event"] == "scanner_disconnected");
    let before = d.cpu_ticks();
    // A measurement window (there is no event to await: the point is that nothing happens).
    std::thread::sleep(Duration::from_secs(2));
    let used = d.cpu_ticks() - before;
    println!("CPU ticks used while unplugged for 2 s: {used}");
    assert!(
        used <= 10,
        "{used} ticks (≥ 100 ms of CPU) in 2 s while unplugged"
    );
    d.kill9();
}

#[test]
fn a_regular_file_of_events_is_replayed_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("recorded-events");
    let c = codes(33, 2);
    let mut data = bytes(&us_keystrokes(&c[0]));
    data.extend(bytes(&us_keystrokes(&c[1])));
    std::fs::write(&file, data).unwrap();
    let setup = Setup {
        extra_toml: scanner_block("replay", "keyboard", &file, ""),
        ..Setup::default()
    };
    let till = Till::new(setup);
    till.sim.add_codes(&c);
    let d = till.start();
    for code in &c {
        assert_eq!(outcome_of(&d.outcome(code)), "redeemed");
    }
    d.wait_event(|e| e["event"] == "scanner_ended" && e["scanner"] == "replay");
    assert_eq!(till.log().len(), 2);
    d.kill9();
}
