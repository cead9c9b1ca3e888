//! The chain, on real `nats-server`s: a hub with JetStream domain `hq`, and each
//! store's server a leaf node of it with its own domain; real `redeemd run` tills and a real
//! `redeemd fleet` at HQ.
//!
//! - 2 stores × 2 tills scan 1,000 codes while the hub is stopped (one store's own server
//!   down for part of it, so its tills keep their events in their outboxes); a till is
//!   killed with SIGKILL in the middle of republishing; the hub starts. The fleet ends with
//!   exactly one record per ledger row, in the tills' states, and again after `--rebuild`.
//! - A store added to hq.toml and a SIGHUP is sourced and gets its mirror of the chain's
//!   redeemed codes; a code redeemed at store A is refused offline at store B once B's WAN
//!   is cut; a till whose last beat is over 90 s old shows as stale; messages of an unknown
//!   version or malformed are counted and skipped, and the consumer goes on.

mod support;

use redeemd::guard::redeemed::Lookup;
use redeemd::model::claim_key::CodeKey;
use redeemd::model::code::Code;
use redeemd::model::event::{RowEvent, StatusBeat};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use support::*;

const STORES: [&str; 2] = ["storeA", "storeB"];

fn scan(base: &str, code: &str) -> Value {
    post_json(base, "/v1/scans", &json!({ "code": code })).json()
}

fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// [`wait_until`], printing these processes' logs when it times out.
fn wait_logged(logs: &[&Daemon], what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        if Instant::now() >= deadline {
            for d in logs {
                eprintln!("----\n{}", d.stderr());
            }
            panic!("timed out waiting: {what}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

type Rows = BTreeMap<(String, String, i64), String>;

/// (store, till, row id) → state, as the fleet has them.
fn fleet_rows(base: &str) -> Rows {
    let v = get(base, "/v1/fleet/redemptions?limit=10000").json();
    v.as_array()
        .expect("a list")
        .iter()
        .map(|r| {
            (
                (
                    r["store"].as_str().unwrap_or_default().to_string(),
                    r["till"].as_str().unwrap_or_default().to_string(),
                    r["id"].as_i64().unwrap_or_default(),
                ),
                r["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The same from every till's ledger (`redeemd log --json`).
fn ledger_rows(tills: &[(&str, &str, &Path)]) -> Rows {
    let mut all = Rows::new();
    for (store, till, config) in tills {
        for r in ledger_log(config) {
            all.insert(
                (
                    store.to_string(),
                    till.to_string(),
                    r["id"].as_i64().expect("id"),
                ),
                r["state"].as_str().expect("state").to_string(),
            );
        }
    }
    all
}

fn metric(base: &str, line_start: &str) -> Option<f64> {
    let text = get(base, "/metrics").body;
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn store_till(chain: &Chain, store: &str, till_name: &'static str) -> Till {
    store_till_with(chain, store, till_name, "")
}

/// A till whose scans, one after the other, each wait out `claim_timeout` while its
/// store's server is down: 100 ms keeps 250 of them short.
fn quick_store_till(chain: &Chain, store: &str, till_name: &'static str) -> Till {
    store_till_with(chain, store, till_name, "claim_timeout = \"100ms\"")
}

fn store_till_with(chain: &Chain, store: &str, till_name: &'static str, more: &str) -> Till {
    Till::in_named_store(
        store,
        &chain.leaf_url(store),
        &format!("status_interval = \"1s\"\n{more}"),
        Setup {
            till_name,
            ..Setup::default()
        },
    )
}

/// Scans `codes` at the till at `base` from 5 POS connections at once (the till takes
/// them in order); every answer must be `redeemed`.
fn scan_all(base: &str, codes: &[String]) -> Vec<std::thread::JoinHandle<()>> {
    (0..5)
        .map(|t| {
            let base = base.to_string();
            let mine: Vec<String> = codes.iter().skip(t).step_by(5).cloned().collect();
            std::thread::spawn(move || {
                for c in &mine {
                    let a = scan(&base, c);
                    assert_eq!(a["outcome"], "redeemed", "{a}");
                }
            })
        })
        .collect()
}

#[test]
fn every_scan_reaches_hq_once_through_a_hub_outage_a_store_outage_and_a_kill() {
    let mut chain = Chain::start(&STORES, false);
    let a1 = store_till(&chain, "storeA", "a1");
    let a2 = a1.sibling("a2");
    let b1 = quick_store_till(&chain, "storeB", "b1");
    let b2 = b1.sibling("b2");
    let per_till = 250;
    let batches: Vec<Vec<String>> = (0..4)
        .map(|t| {
            (0..per_till)
                .map(|i| format!("{:04}{i:08}", 9100 + t))
                .collect()
        })
        .collect();
    a1.sim
        .add_codes(&[batches[0].clone(), batches[1].clone()].concat());
    b1.sim
        .add_codes(&[batches[2].clone(), batches[3].clone()].concat());
    let (da1, da2) = (a1.start(), a2.start());
    let (db1, db2) = (b1.start(), b2.start());

    // Store A scans with its server up (the hub is down: everything waits at the leaf).
    let a = [
        scan_all(&da1.http_url(), &batches[0]),
        scan_all(&da2.http_url(), &batches[1]),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>();
    // Store B's own server is down while it scans: its events wait in the tills' outboxes.
    chain.leaf("storeB").kill();
    let b = [
        scan_all(&db1.http_url(), &batches[2]),
        scan_all(&db2.http_url(), &batches[3]),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>();
    for h in a.into_iter().chain(b) {
        h.join().expect("scanning");
    }
    db1.wait_event(|e| e["event"] == "chain_publish_failed");
    Chain::start_node(chain.leaf("storeB"));
    // Killed in the middle of republishing: after its first acknowledged batch.
    db1.wait_event(|e| e["event"] == "chain_resumed");
    let log = db1.kill9();
    assert!(log.contains("chain_resumed"), "{log}");
    let db1 = b1.start();

    // The hub comes up; HQ catches up.
    Chain::start_node(&mut chain.hub);
    let setup = FleetSetup::new(&chain.hub.url(), &STORES, "");
    let fleet = setup.start(false);
    let base = fleet.http_url();
    let tills: Vec<(&str, &str, &Path)> = vec![
        ("storeA", "a1", a1.config.as_path()),
        ("storeA", "a2", a2.config.as_path()),
        ("storeB", "b1", b1.config.as_path()),
        ("storeB", "b2", b2.config.as_path()),
    ];
    let want = ledger_rows(&tills);
    assert_eq!(want.len(), 4 * per_till, "one ledger row per code");
    assert!(want.values().all(|s| s == "redeemed"), "{want:?}");
    let mut got = Rows::new();
    wait_until(
        "the fleet holds every till's rows",
        Duration::from_secs(90),
        || {
            got = fleet_rows(&base);
            got == want
        },
    );
    // Every till beats, and none stays stale: the beats come through their own source, which
    // may catch up with the hub a little after the rows do.
    let fresh = |t: &Value| -> Vec<String> {
        t.as_array()
            .expect("tills")
            .iter()
            .filter(|t| t["stale"] == false)
            .map(|t| {
                format!(
                    "{}/{}",
                    t["store"].as_str().unwrap_or(""),
                    t["till"].as_str().unwrap_or("")
                )
            })
            .collect()
    };
    wait_until("every till's beat is in", Duration::from_secs(30), || {
        let names = fresh(&get(&base, "/v1/fleet/tills").json());
        ["storeA/a1", "storeA/a2", "storeB/b1", "storeB/b2"]
            .iter()
            .all(|till| names.iter().any(|n| n == till))
    });
    assert_eq!(metric(&base, "redeemd_fleet_rows "), Some(1000.0));

    // Three hours of beats from six tills (one every 30 s) land in the hub's beat stream,
    // which keeps the latest of each till; the chain's stream holds events only.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let beat_tills = [
        ("storeA", ["a1", "a2", "a9"]),
        ("storeB", ["b1", "b2", "b9"]),
    ];
    let started = now_ms() - 3 * 3_600_000;
    rt.block_on(async {
        for (store, tills) in beat_tills {
            let js = async_nats::jetstream::new(
                async_nats::connect(chain.leaf_url(store))
                    .await
                    .expect("connect to the store"),
            );
            for i in 0..360 {
                for till in tills {
                    let mut b = beat(till, started + i * 30_000);
                    b.store = store.into();
                    js.publish(
                        format!("redeemd.status.{store}.{till}"),
                        serde_json::to_vec(&b).expect("json").into(),
                    )
                    .await
                    .expect("publish")
                    .await
                    .expect("the store's stream took it");
                }
            }
        }
    });
    let hub = rt
        .block_on(async_nats::connect(chain.hub.url()))
        .expect("connect to the hub");
    let info = |stream: &str| -> Value {
        rt.block_on(async {
            let r = hub
                .request(
                    format!("$JS.API.STREAM.INFO.{stream}"),
                    serde_json::to_vec(&json!({ "subjects_filter": "redeemd.status.>" }))
                        .expect("json")
                        .into(),
                )
                .await
                .expect("stream info");
            serde_json::from_slice(&r.payload).expect("json")
        })
    };
    wait_until(
        "the last of the beats reached the hub",
        Duration::from_secs(60),
        || {
            let beats = info("REDEEMD_BEATS");
            let subjects = beats["state"]["subjects"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            subjects.len() == 6
                && subjects.values().all(|n| n == 1)
                && beats["state"]["messages"] == 6
        },
    );
    let events = info("REDEEMD_CHAIN");
    assert!(
        events["state"]["num_subjects"].as_u64().unwrap_or(0) > 0,
        "{events}"
    );
    assert!(
        events["state"]["subjects"]
            .as_object()
            .is_none_or(|s| s.is_empty()),
        "the chain's stream holds no beats: {events}"
    );
    assert!(
        events["config"]["max_age"].as_u64().unwrap_or(0) > 0,
        "{events}"
    );
    wait_until("HQ heard the beats", Duration::from_secs(30), || {
        let t = get(&base, "/v1/fleet/tills").json().to_string();
        t.contains("\"a9\"") && t.contains("\"b9\"")
    });

    // Rebuilt from the stream: the same, nothing twice.
    fleet.terminate();
    let fleet = setup.start(true);
    let base = fleet.http_url();
    wait_until(
        "the rebuilt fleet holds every till's rows",
        Duration::from_secs(60),
        || fleet_rows(&base) == want,
    );
    assert_eq!(metric(&base, "redeemd_fleet_rows "), Some(1000.0));
    wait_until(
        "the rebuilt fleet heard the beats",
        Duration::from_secs(30),
        || {
            let t = get(&base, "/v1/fleet/tills").json().to_string();
            t.contains("\"a9\"") && t.contains("\"b2\"")
        },
    );
    drop((da1, da2, db1, db2));
}

fn key_of(code: &str) -> String {
    CodeKey::from_bytes(CODE_KEY.as_bytes())
        .expect("key")
        .claim_key(&Code::new(code))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

fn beat(till: &str, at: i64) -> StatusBeat {
    StatusBeat {
        v: 1,
        store: "storeA".into(),
        till: till.into(),
        at,
        backlog: 0,
        review: 0,
        outbox: 0,
        scanners: BTreeMap::new(),
        last_success: None,
        version: "test".into(),
    }
}

#[test]
fn hq_refuses_offline_what_another_store_redeemed_shows_silence_and_skips_bad_events() {
    let mut chain = Chain::start(&STORES, true);
    // HQ starts with store A only; store B is added by a config line and a reload.
    let setup = FleetSetup::new(&chain.hub.url(), &STORES[..1], "");
    let fleet = setup.start(false);
    let base = fleet.http_url();
    let a1 = store_till(&chain, "storeA", "a1");
    let b1 = store_till(&chain, "storeB", "b1");
    let used = codes(73, 1).remove(0);
    let fresh = codes(74, 1).remove(0);
    a1.sim.add_codes(std::slice::from_ref(&used));
    b1.sim.add_codes(&[used.clone(), fresh.clone()]);
    let (da1, db1) = (a1.start(), b1.start());

    let x = scan(&da1.http_url(), &used);
    assert_eq!(x["outcome"], "redeemed", "{x}");
    wait_logged(
        &[&fleet, &da1],
        "HQ knows where the code was redeemed",
        Duration::from_secs(30),
        || {
            let rows = post_json(&base, "/v1/fleet/codes", &json!({ "code": used })).json();
            rows.as_array().is_some_and(|r| {
                r.len() == 1 && r[0]["store"] == "storeA" && r[0]["state"] == "redeemed"
            })
        },
    );

    // The till's own metrics show its outbox emptied.
    wait_until("a1's outbox is empty", Duration::from_secs(10), || {
        metric(&da1.http_url(), "redeemd_events_outbox ") == Some(0.0)
    });
    // At least the row's latest version went (its first one too, if the publisher read
    // the outbox before WeChat answered).
    assert!(metric(&da1.http_url(), "redeemd_events_published_total ").is_some_and(|n| n >= 1.0));
    let text = std::fs::read_to_string(&setup.config).expect("hq.toml");
    std::fs::write(
        &setup.config,
        text.replace("[[store]]", "[[store]]\nname = \"storeB\"\n[[store]]"),
    )
    .expect("hq.toml");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(fleet.pid()),
        nix::sys::signal::Signal::SIGHUP,
    )
    .expect("SIGHUP");
    fleet.wait_event(|e| e["event"] == "fleet_reloaded" && e["stores"] == "storeB,storeA");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let leaf_b = rt
        .block_on(async_nats::connect(chain.leaf_url("storeB")))
        .expect("connect to store B");
    let lookup = Lookup::new(leaf_b, Duration::from_secs(2));
    wait_logged(
        &[&fleet],
        "store B's mirror has the code",
        Duration::from_secs(60),
        || {
            rt.block_on(lookup.find(&key_of(&used)))
                .ok()
                .flatten()
                .is_some_and(|at| at.store == "storeA" && at.till == "a1")
        },
    );

    // Bad input at store A: counted, skipped, and what follows is applied.
    let leaf_a = rt
        .block_on(async_nats::connect(chain.leaf_url("storeA")))
        .expect("connect to store A");
    let js = {
        let _in = rt.enter();
        async_nats::jetstream::new(leaf_a)
    };
    let ghost = RowEvent {
        v: 1,
        store: "storeA".into(),
        till: "ghost".into(),
        id: 1,
        version: 1,
        state: "redeemed".into(),
        reason: None,
        reason_code: None,
        api: Some("card".into()),
        code_last4: "0001".into(),
        key: Some("00".repeat(32)),
        title: None,
        value: None,
        order_id: None,
        amount: None,
        scans: 1,
        scanned_at: now_ms(),
        updated_at: now_ms(),
        redeemed_at: Some(now_ms()),
        resolution: None,
        resolved_at: None,
        void_state: None,
        guard: None,
        transaction_id: None,
        out_trade_no: None,
    };
    let mut newer = serde_json::to_value(&ghost).expect("json");
    newer["v"] = 2.into();
    let messages: Vec<(&str, Vec<u8>)> = vec![
        (
            "redeemd.events.storeA.ghost",
            serde_json::to_vec(&newer).expect("json"),
        ),
        (
            "redeemd.events.storeA.ghost",
            b"{\"v\": 1, \"id\": \"not a row\"}".to_vec(),
        ),
        ("redeemd.events.storeA.ghost", b"not json at all".to_vec()),
        (
            "redeemd.events.storeA.ghost",
            serde_json::to_vec(&ghost).expect("json"),
        ),
        // A till silent for 91 s, and one that beat just now.
        (
            "redeemd.status.storeA.ghost",
            serde_json::to_vec(&beat("ghost", now_ms() - 91_000)).expect("json"),
        ),
        (
            "redeemd.status.storeA.fresh",
            serde_json::to_vec(&beat("fresh", now_ms())).expect("json"),
        ),
    ];
    rt.block_on(async {
        for (subject, body) in messages {
            js.publish(subject, body.into())
                .await
                .expect("publish")
                .await
                .expect("store A's stream took it");
        }
    });
    wait_until(
        "the row after the bad messages is applied",
        Duration::from_secs(30),
        || {
            let rows = get(&base, "/v1/fleet/redemptions?till=ghost").json();
            rows.as_array().is_some_and(|r| r.len() == 1)
        },
    );
    assert_eq!(
        metric(
            &base,
            "redeemd_fleet_events_skipped_total{reason=\"unknown_version\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &base,
            "redeemd_fleet_events_skipped_total{reason=\"malformed\"}"
        ),
        Some(2.0)
    );
    let stale: BTreeMap<String, bool> = {
        let mut s = BTreeMap::new();
        wait_until("every till's beat is in", Duration::from_secs(30), || {
            let t = get(&base, "/v1/fleet/tills").json();
            s = t
                .as_array()
                .expect("tills")
                .iter()
                .filter(|t| t["last_beat"].is_string())
                .map(|t| {
                    (
                        t["till"].as_str().unwrap_or("").to_string(),
                        t["stale"] == true,
                    )
                })
                .collect();
            ["ghost", "fresh", "a1", "b1"]
                .iter()
                .all(|t| s.contains_key(*t))
        });
        s
    };
    assert!(stale["ghost"], "{stale:?}");
    assert!(!stale["fresh"], "{stale:?}");
    assert!(!stale["a1"], "{stale:?}");
    assert!(!stale["b1"], "{stale:?}");
    assert!(
        metric(
            &base,
            "redeemd_fleet_till_stale{store=\"storeA\",till=\"ghost\"}"
        ) == Some(1.0)
    );

    // docs/fleet-openapi.yaml describes every answer the fleet gives.
    let mut spec = Spec::load("docs/fleet-openapi.yaml");
    for (template, path, status) in [
        ("/", "/".to_string(), 200),
        ("/healthz", "/healthz".to_string(), 200),
        ("/metrics", "/metrics".to_string(), 200),
        ("/v1/fleet/tills", "/v1/fleet/tills".to_string(), 200),
        (
            "/v1/fleet/redemptions",
            "/v1/fleet/redemptions?store=storeA&state=redeemed&since=today&limit=5".to_string(),
            200,
        ),
        (
            "/v1/fleet/redemptions",
            "/v1/fleet/redemptions?state=lost".to_string(),
            400,
        ),
        (
            "/v1/fleet/redemptions",
            "/v1/fleet/redemptions?since=yesterday-ish".to_string(),
            400,
        ),
        (
            "/v1/fleet/export.csv",
            "/v1/fleet/export.csv?since=2026-01-01".to_string(),
            200,
        ),
    ] {
        let r = get(&base, &path);
        assert_eq!(r.status, status, "{path}: {}", r.body);
        spec.check("GET", template, &r);
    }
    // A code is looked up with it in the body; the URL form is gone.
    for (body, status) in [
        (json!({ "code": used }), 200),
        (json!({ "code": "NEVER-SCANNED" }), 200),
        (json!({ "code": "" }), 400),
        (json!({ "code": "x".repeat(129) }), 400),
        (json!({ "no_code": 1 }), 400),
    ] {
        let r = post_json(&base, "/v1/fleet/codes", &body);
        assert_eq!(r.status, status, "{body}: {}", r.body);
        spec.check("POST", "/v1/fleet/codes", &r);
    }
    let found = post_json(&base, "/v1/fleet/codes", &json!({ "code": used })).json();
    assert_eq!(found.as_array().map(Vec::len), Some(1), "{found}");
    let bare = http(
        "POST",
        &format!("{base}/v1/fleet/codes"),
        &[],
        format!("{{\"code\":\"{used}\"}}").as_bytes(),
    );
    assert_eq!(bare.status, 415, "{}", bare.body);
    spec.check("POST", "/v1/fleet/codes", &bare);
    assert_eq!(get(&base, &format!("/v1/fleet/codes/{used}")).status, 404);
    // The notify listener's path is reached by tests/notify.rs, which checks it too.
    spec.every_operation_reached_but(&["POST /v1/wechatpay/notify"]);
    let csv = get(&base, "/v1/fleet/export.csv").body;
    assert!(csv.starts_with("store,till,id,code_last4,"), "{csv}");
    assert!(
        csv.lines()
            .any(|l| l.starts_with("storeA,a1,") && l.contains(",redeemed,")),
        "{csv}"
    );
    assert!(
        !csv.contains(&used),
        "a code never leaves the till in full: {csv}"
    );

    // The Grafana dashboard in packaging/ is built on series the fleet serves.
    let dashboard = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/grafana/redeemd-fleet.json"),
    )
    .expect("dashboard");
    let served = get(&base, "/metrics").body;
    let series = regex::Regex::new(r"redeemd_fleet_[a-z_]+").expect("regex");
    let mut named = 0;
    for m in series.find_iter(&dashboard) {
        named += 1;
        assert!(
            served.contains(&format!("# TYPE {} ", m.as_str())),
            "{} is on the dashboard but not in /metrics",
            m.as_str()
        );
    }
    assert!(named >= 8, "the dashboard names the fleet's series");

    // Store B's WAN is cut (the hub is gone) and WeChat does not answer it.
    chain.hub.kill();
    b1.sim.set_down(true);
    let y = scan(&db1.http_url(), &used);
    assert_eq!(y["outcome"], "refused_offline", "{y}");
    assert_eq!(y["reason_code"], "redeemed_at_other_store", "{y}");
    assert!(
        y["reason"]
            .as_str()
            .unwrap_or("")
            .contains("store storeA (till a1"),
        "{y}"
    );
    let z = scan(&db1.http_url(), &fresh);
    assert_eq!(z["outcome"], "accepted_offline", "{z}");
    assert_eq!(
        b1.sim.card.consumed_count(&used),
        0,
        "store B never consumed it"
    );
    drop((da1, db1, fleet));
}

/// How long the store's mirror of `redeemd_redeemed` takes to hold a key written on the
/// hub at `hub` now (the key is written as soon as the hub takes it).
fn mirror_lag(
    rt: &tokio::runtime::Runtime,
    hub: &str,
    leaf: &str,
    key: &str,
    hq_log: impl Fn() -> String,
) -> Duration {
    let started = Instant::now();
    rt.block_on(async {
        let value = json!({ "store": "storeB", "till": "b1", "at": now_ms() }).to_string();
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "the hub never took {key}");
            if let Ok(c) = async_nats::connect(hub).await {
                let js = async_nats::jetstream::new(c);
                let put = js
                    .publish(format!("$KV.redeemd_redeemed.{key}"), value.clone().into())
                    .await;
                if let Ok(ack) = put
                    && ack.await.is_ok()
                {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let store = async_nats::connect(leaf).await.expect("the store's server");
        let lookup = Lookup::new(store, Duration::from_secs(1));
        while !matches!(lookup.find(key).await, Ok(Some(_))) {
            assert!(
                Instant::now() < deadline,
                "the store's mirror never held {key}; HQ's log:\n{}",
                hq_log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    started.elapsed()
}

/// How long ago the store's mirror last heard from the hub, as the store's server says.
fn mirror_silent_for(rt: &tokio::runtime::Runtime, leaf: &str) -> Duration {
    rt.block_on(async {
        let store = async_nats::connect(leaf).await.expect("the store's server");
        let r = store
            .request("$JS.API.STREAM.INFO.KV_redeemd_redeemed", "".into())
            .await
            .expect("stream info");
        let info: Value = serde_json::from_slice(&r.payload).expect("json");
        Duration::from_nanos(info["mirror"]["active"].as_u64().unwrap_or(0))
    })
}

/// A store's mirror is current within seconds of its link to HQ coming up: the first time
/// (HQ and the hub starting while the store is already there), in steady state, and after a
/// hub outage long enough for the mirror to have lost its source. The promise is 5 s from
/// the link's return; the bound here is twice that, for a loaded machine (the benchmark
/// prints the figures).
#[test]
fn a_stores_mirror_is_current_within_seconds_of_its_link_returning() {
    let mut chain = Chain::start(&["storeA"], false);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (hub, leaf) = (chain.hub.url(), chain.leaf_url("storeA"));
    let bound = Duration::from_secs(10);

    Chain::start_node(&mut chain.hub);
    let setup = FleetSetup::new(&hub, &["storeA"], "");
    let fleet = setup.start(false);
    let log = || fleet.stderr();
    let first = mirror_lag(&rt, &hub, &leaf, "k1", log);
    let steady = mirror_lag(&rt, &hub, &leaf, "k2", log);

    chain.hub.kill();
    let deadline = Instant::now() + WAIT;
    while mirror_silent_for(&rt, &leaf) < Duration::from_secs(4) {
        assert!(
            Instant::now() < deadline,
            "the mirror never noticed the outage"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    Chain::start_node(&mut chain.hub);
    let after = mirror_lag(&rt, &hub, &leaf, "k3", log);
    eprintln!(
        "store mirror lag: first link {first:?}, steady {steady:?}, after a hub outage {after:?}"
    );
    for (what, lag) in [("first link", first), ("after the outage", after)] {
        assert!(
            lag < bound,
            "{what}: the mirror took {lag:?}\n{}",
            fleet.stderr()
        );
    }
    assert!(steady < bound, "steady: {steady:?}");
}
