//! Chaos: the real binary against both simulated WeChat APIs while it is killed with SIGKILL
//! at random moments, responses are dropped after commit, 5xx / -1 / 429 / latency spikes
//! and outages come and go, and a cashier rescans whatever got no answer. A checker in the
//! style of Jepsen's total-queue then compares every acknowledged scan with the simulators'
//! ledgers.
//!
//! `REDEEMD_CHAOS_ROUNDS=N` runs N rounds (default 5, a short run for CI);
//! `REDEEMD_CHAOS_SEED=S` replays a run (the seed is printed).

mod support;

use redeemd::sim::card::CardFaults;
use redeemd::sim::pay::PayFaults;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use support::*;

/// What the cashier was told about a code, in order.
type Acks = BTreeMap<String, Vec<String>>;

/// `REDEEMD_CHAOS_ROUNDS` (else `default_rounds`) and `REDEEMD_CHAOS_SEED` (else the clock).
fn rounds_and_seed(default_rounds: u32) -> (u32, u64) {
    let rounds = std::env::var("REDEEMD_CHAOS_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_rounds);
    let seed = std::env::var("REDEEMD_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    (rounds, seed)
}

#[test]
fn chaos_every_acknowledged_code_is_redeemed_exactly_once() {
    let (rounds, seed) = rounds_and_seed(5);
    println!("chaos: seed = {seed}, rounds = {rounds} (replay with REDEEMD_CHAOS_SEED={seed})");
    let mut rng = Rng::new(seed);
    let till = Till::with_coupons(Setup {
        online_wait: "250ms",
        // A small backlog cap, so that some scans are refused offline.
        max_pending: 12,
        ..Setup::default()
    });
    let per_round = 8usize;
    let total = per_round * rounds as usize;
    let mut all: Vec<String> = Vec::new();
    for i in 0..total {
        // Alternate card codes and merchant coupons; unique last four characters.
        let code = if i % 2 == 0 {
            format!("{:08}{:04}", 90_000_000 + i, 1000 + i)
        } else {
            format!("BFCH{:06}{:04}", seed % 1_000_000, 5000 + i)
        };
        if i % 2 == 0 {
            till.sim.add_codes(&[&code]);
        } else {
            till.sim.pay().add_coupon(&code, STOCK_ID);
        }
        all.push(code);
    }
    let mut acks: Acks = BTreeMap::new();
    let started = Instant::now();

    for round in 0..rounds as usize {
        till.sim.card.set_faults(CardFaults {
            busy: rng.below(3) as u32,
            quota: rng.below(2) as u32,
            drop_after_consume: rng.below(3) as u32,
            latency: Duration::from_millis(rng.below(150)),
            ..CardFaults::default()
        });
        till.sim.pay().set_faults(PayFaults {
            server_error: rng.below(3) as u32,
            rate_limited: rng.below(2) as u32,
            drop_after_commit: rng.below(3) as u32,
            forge_signatures: rng.below(6) == 0,
            latency: Duration::from_millis(rng.below(150)),
            ..PayFaults::default()
        });
        let card_down = rng.below(4) == 0;
        let pay_down = rng.below(4) == 0;
        till.sim.set_down(card_down);
        till.sim.set_pay_down(true, pay_down);
        println!(
            "round {round}: card down {card_down}, pay primary down {pay_down}, faults {:?} / {:?}",
            till.sim.card.faults(),
            till.sim.pay().faults()
        );
        let d = till.start();
        let unanswered: Vec<String> = all[..round * per_round]
            .iter()
            .filter(|c| !acks.contains_key(*c))
            .cloned()
            .collect();
        for c in unanswered
            .iter()
            .chain(&all[round * per_round..(round + 1) * per_round])
        {
            till.pty.scan(c);
        }
        // Kill at a random moment, sometimes before anything was answered.
        std::thread::sleep(Duration::from_millis(rng.below(900)));
        let events = d.events();
        let log = d.kill9();
        assert!(!log.contains("panicked"), "round {round}: {log}");
        record_acks(&events, &all, &mut acks);
        // An outage may end while the daemon is down.
        if rng.below(2) == 0 {
            till.sim.set_down(false);
            till.sim.set_pay_down(true, false);
        }
    }

    // Calm: everything back up, no faults; the cashier rescans what never got an answer.
    till.sim.card.set_faults(CardFaults::default());
    till.sim.pay().set_faults(PayFaults::default());
    till.sim.set_down(false);
    till.sim.set_pay_down(true, false);
    let d = till.start();
    // And every other customer the till refused offline comes back: with WeChat up, the
    // rescan gets a real answer (redeemed), unless a call was in flight (review: duplicate).
    let refused: Vec<&String> = all
        .iter()
        .filter(|c| {
            acks.get(*c)
                .is_some_and(|t| t.iter().all(|o| o == "refused_offline"))
        })
        .step_by(2)
        .collect();
    let rescanned: Vec<&String> = all
        .iter()
        .filter(|c| !acks.contains_key(*c))
        .chain(refused.iter().copied())
        .collect();
    for c in &rescanned {
        till.pty.scan(c);
    }
    for c in &rescanned {
        let e = d.outcome(c);
        acks.entry((*c).clone())
            .or_default()
            .push(e["outcome"].as_str().unwrap_or("").to_string());
    }
    println!("chaos: {} refused codes rescanned", refused.len());
    // Wait until nothing is queued any more (rows refused offline stay cancelled).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = till.log();
        if log
            .iter()
            .all(|r| r["state"] != "queued" && r["unconfirmed"] == false)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the backlog never drained (seed {seed}): {log:?}"
        );
        d.try_wait_events(usize::MAX, Duration::from_millis(200), |_| false);
    }
    check(&till, &all, &acks, seed);
    d.kill9();
    println!(
        "chaos: {} codes, {rounds} rounds, {:.1} s",
        all.len(),
        started.elapsed().as_secs_f64()
    );
}

fn record_acks(events: &[serde_json::Value], all: &[String], acks: &mut Acks) {
    for e in events.iter().filter(|e| e["event"] == "outcome") {
        if let Some(c) = all.iter().find(|c| e["code"] == masked(c).as_str()) {
            acks.entry(c.clone())
                .or_default()
                .push(e["outcome"].as_str().unwrap_or("").to_string());
        }
    }
}

/// The checker: compares what the cashier was told with what WeChat's ledgers say.
fn check(till: &Till, all: &[String], acks: &Acks, seed: u64) {
    let rows: BTreeMap<String, serde_json::Value> = till
        .log()
        .into_iter()
        .map(|r| (r["code"].as_str().unwrap_or("").to_string(), r))
        .collect();
    let scanned: BTreeSet<&String> = all.iter().collect();
    let redeemed_at_wechat = |c: &str| {
        if c.starts_with("BF") {
            till.sim.pay().used_count(c)
        } else {
            till.sim.card.consumed_count(c)
        }
    };
    let mut failures = Vec::new();
    for c in all {
        let n = redeemed_at_wechat(c);
        let told = acks.get(c).cloned().unwrap_or_default();
        let row = rows.get(c);
        let state = row.and_then(|r| r["state"].as_str()).unwrap_or("none");
        // 1. Never redeemed twice.
        if n > 1 {
            failures.push(format!("{c}: redeemed {n} times"));
        }
        // 2. Every scan the cashier was told was accepted is redeemed, exactly once.
        let accepted = told
            .iter()
            .any(|o| o == "redeemed" || o == "accepted_offline");
        if accepted && n != 1 && state != "review" {
            failures.push(format!(
                "{c}: told {told:?}, WeChat redeemed it {n} times, ledger says {state}"
            ));
        }
        // 3. A code the till refused offline is never redeemed later, unless a call was
        //    already in flight — and then a person is told (review).
        let only_refused = !told.is_empty() && told.iter().all(|o| o == "refused_offline");
        if only_refused && n > 0 && state != "review" {
            failures.push(format!(
                "{c}: refused offline, yet redeemed ({state}, told {told:?})"
            ));
        }
        // 4. The ledger agrees with WeChat.
        if n == 1 && !(state == "redeemed" || state == "review") {
            failures.push(format!("{c}: WeChat redeemed it, ledger says {state}"));
        }
        if state == "redeemed" && n != 1 {
            failures.push(format!("{c}: ledger says redeemed, WeChat count {n}"));
        }
    }
    // 5. Nothing redeemed that was not scanned.
    for c in till.sim.card.consumed() {
        if !scanned.contains(&c.code) {
            failures.push(format!("{}: consumed but never scanned", c.code));
        }
    }
    for u in till.sim.pay().uses() {
        if !scanned.contains(&u.coupon_code) {
            failures.push(format!("{}: used but never scanned", u.coupon_code));
        }
    }
    // 6. No redeeming call was ever sent for a code already redeemed.
    if till.sim.card.calls().consume_of_consumed != 0 {
        failures.push(format!(
            "{} consume calls for consumed codes",
            till.sim.card.calls().consume_of_consumed
        ));
    }
    if till.sim.pay().calls().use_of_used != 0 {
        failures.push(format!(
            "{} use calls for used coupons",
            till.sim.pay().calls().use_of_used
        ));
    }
    let told: BTreeMap<&str, usize> = acks.values().flatten().fold(BTreeMap::new(), |mut m, o| {
        *m.entry(o.as_str()).or_default() += 1;
        m
    });
    println!("chaos: answers given {told:?}");
    assert!(failures.is_empty(), "seed {seed}:\n{}", failures.join("\n"));
}

/// What each till told about each code, by till.
type StoreAcks = [Acks; 2];

/// The two-till mode: one store, tills A and B on a 3-node NATS cluster, both scanning the
/// same codes while they are killed at random, NATS nodes are killed and restarted, and
/// WeChat's faults come and go as above. Besides every check of one till, the store guard's:
/// a code accepted at both tills had a till that could not ask the store (`guard =
/// "unavailable"`), and a code sent to WeChat by both tills likewise.
///
/// `REDEEMD_CHAOS_ROUNDS` / `REDEEMD_CHAOS_SEED` as above.
#[test]
fn chaos_two_tills_with_nats_node_kills() {
    let (rounds, seed) = rounds_and_seed(4);
    println!(
        "chaos (two tills): seed = {seed}, rounds = {rounds} (replay with REDEEMD_CHAOS_SEED={seed})"
    );
    let mut rng = Rng::new(seed);
    let mut cluster = NatsCluster::start(3);
    let a = Till::in_store(
        &cluster.urls(),
        Setup {
            online_wait: "400ms",
            max_pending: 12,
            ..Setup::default()
        },
    );
    let b = a.sibling("store1-till2");
    let per_round = 8usize;
    let mut all: Vec<String> = Vec::new();
    for i in 0..per_round * rounds as usize {
        let code = if i % 2 == 0 {
            format!("{:08}{:04}", 70_000_000 + i, 3000 + i)
        } else {
            format!("BFST{:06}{:04}", seed % 1_000_000, 7000 + i)
        };
        if i % 2 == 0 {
            a.sim.add_codes(&[&code]);
        } else {
            a.sim.pay().add_coupon(&code, STOCK_ID);
        }
        all.push(code);
    }
    let mut acks: StoreAcks = [BTreeMap::new(), BTreeMap::new()];
    let started = Instant::now();
    for round in 0..rounds as usize {
        a.sim.card.set_faults(CardFaults {
            busy: rng.below(3) as u32,
            drop_after_consume: rng.below(3) as u32,
            latency: Duration::from_millis(rng.below(100)),
            ..CardFaults::default()
        });
        a.sim.pay().set_faults(PayFaults {
            server_error: rng.below(3) as u32,
            drop_after_commit: rng.below(3) as u32,
            latency: Duration::from_millis(rng.below(100)),
            ..PayFaults::default()
        });
        let wechat_down = rng.below(3) == 0;
        a.sim.set_down(wechat_down);
        a.sim.set_pay_down(true, wechat_down);
        a.sim.set_pay_down(false, wechat_down);
        let up: Vec<bool> = cluster.nodes.iter().map(|n| n.is_running()).collect();
        println!("round {round}: WeChat down {wechat_down}, NATS nodes up {up:?} at the start");
        let da = a.start();
        let db = b.start();
        let mine = &all[round * per_round..(round + 1) * per_round];
        let unanswered = |acks: &Acks| -> Vec<String> {
            all[..round * per_round]
                .iter()
                .filter(|c| !acks.contains_key(*c))
                .cloned()
                .collect()
        };
        for c in unanswered(&acks[0]).iter().chain(mine) {
            a.pty.scan(c);
        }
        for c in unanswered(&acks[1]).iter().chain(mine) {
            b.pty.scan(c);
        }
        // While the scans are answered: a node killed, or one brought back (at most two
        // down), sometimes.
        std::thread::sleep(Duration::from_millis(rng.below(500)));
        let n = rng.below(3) as usize;
        let down = cluster.nodes.iter().filter(|x| !x.is_running()).count();
        match (cluster.nodes[n].is_running(), rng.below(3)) {
            (true, 0) if down < 2 => {
                cluster.kill(n);
                println!("round {round}: NATS node {n} killed");
            }
            (false, 0 | 1) => {
                cluster.restart(n);
                println!("round {round}: NATS node {n} back");
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(rng.below(900)));
        let events = da.events();
        let log = da.kill9();
        assert!(!log.contains("panicked"), "round {round}: {log}");
        record_acks(&events, &all, &mut acks[0]);
        std::thread::sleep(Duration::from_millis(rng.below(300)));
        let events = db.events();
        let log = db.kill9();
        assert!(!log.contains("panicked"), "round {round}: {log}");
        record_acks(&events, &all, &mut acks[1]);
    }

    // Calm: every node and WeChat up, no faults; each code nobody answered is rescanned at
    // one of the tills.
    for n in 0..3 {
        if !cluster.nodes[n].is_running() {
            cluster.restart(n);
        }
    }
    a.sim.card.set_faults(CardFaults::default());
    a.sim.pay().set_faults(PayFaults::default());
    a.sim.set_down(false);
    a.sim.set_pay_down(true, false);
    a.sim.set_pay_down(false, false);
    let da = a.start();
    let db = b.start();
    for c in &all {
        if !acks[0].contains_key(c) && !acks[1].contains_key(c) {
            let (till, d, i) = if rng.below(2) == 0 {
                (&a.pty, &da, 0)
            } else {
                (&b.pty, &db, 1)
            };
            till.scan(c);
            let e = d.outcome(c);
            acks[i]
                .entry(c.clone())
                .or_default()
                .push(e["outcome"].as_str().unwrap_or("").to_string());
        }
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let rows: Vec<serde_json::Value> = a.log().into_iter().chain(b.log()).collect();
        // And every claim told to the store (a late claim may send a row to review).
        if rows
            .iter()
            .all(|r| r["state"] != "queued" && r["unconfirmed"] == false)
            && claim_backlog(&a.config) == 0
            && claim_backlog(&b.config) == 0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the backlog never drained (seed {seed})"
        );
        da.try_wait_events(usize::MAX, Duration::from_millis(200), |_| false);
    }
    check_store(&a, [&a.log(), &b.log()], &all, &acks, seed);
    drop((da, db));
    println!(
        "chaos (two tills): {} codes, {rounds} rounds, {:.1} s",
        all.len(),
        started.elapsed().as_secs_f64()
    );
}

/// Claims a till has not told the store yet: notes not answered, rows not synced (its own
/// ledger, read beside the running daemon).
fn claim_backlog(config: &std::path::Path) -> i64 {
    let db = config.with_file_name("ledger").join("redeemd.db");
    rusqlite::Connection::open(db)
        .and_then(|c| {
            c.query_row(
                "SELECT (SELECT count(*) FROM claim_notes) + \
                 (SELECT count(*) FROM redemptions WHERE claim_dirty = 1)",
                [],
                |r| r.get(0),
            )
        })
        .unwrap_or(i64::MAX)
}

/// The store-wide checker: one till's promises over both ledgers, and the guard's.
fn check_store(
    till: &Till,
    logs: [&Vec<serde_json::Value>; 2],
    all: &[String],
    acks: &StoreAcks,
    seed: u64,
) {
    let row_of = |i: usize, c: &str| logs[i].iter().find(|r| r["code"] == c).cloned();
    let mut failures = Vec::new();
    let accepted = |t: &[String]| t.iter().any(|o| o == "redeemed" || o == "accepted_offline");
    for c in all {
        let n = if c.starts_with("BF") {
            till.sim.pay().used_count(c)
        } else {
            till.sim.card.consumed_count(c)
        };
        let told: [Vec<String>; 2] = [0, 1].map(|i| acks[i].get(c).cloned().unwrap_or_default());
        let rows = [row_of(0, c), row_of(1, c)];
        let state = |i: usize| {
            rows[i]
                .as_ref()
                .and_then(|r| r["state"].as_str().map(String::from))
                .unwrap_or_else(|| "none".into())
        };
        let alone = |i: usize| {
            rows[i]
                .as_ref()
                .is_some_and(|r| r["guard"] == "unavailable")
        };
        let review = state(0) == "review" || state(1) == "review";
        if n > 1 {
            failures.push(format!("{c}: redeemed {n} times"));
        }
        if (accepted(&told[0]) || accepted(&told[1])) && n != 1 && !review {
            failures.push(format!(
                "{c}: told {told:?}, WeChat count {n}, ledgers {} / {}",
                state(0),
                state(1)
            ));
        }
        // The guard: both tills accepting a code needs one of them to have gone on alone.
        if accepted(&told[0]) && accepted(&told[1]) && !alone(0) && !alone(1) {
            failures.push(format!(
                "{c}: accepted at both tills with the store guard answering: {told:?}"
            ));
        }
        let redeemed_rows = (0..2).filter(|i| state(*i) == "redeemed").count();
        if redeemed_rows > 1 || (redeemed_rows == 1 && n != 1) {
            failures.push(format!(
                "{c}: {redeemed_rows} redeemed rows, WeChat count {n}"
            ));
        }
        if n == 1 && redeemed_rows == 0 && !review {
            failures.push(format!(
                "{c}: WeChat redeemed it, ledgers say {} / {}",
                state(0),
                state(1)
            ));
        }
        let sent = if c.starts_with("BF") {
            0
        } else {
            till.sim.card.calls_for(c).consume
        };
        if sent > 1 && !alone(0) && !alone(1) {
            failures.push(format!(
                "{c}: {sent} consumes with the store guard answering"
            ));
        }
    }
    let both_alone = all
        .iter()
        .filter(|c| (0..2).all(|i| row_of(i, c).is_some_and(|r| r["guard"] == "unavailable")))
        .count();
    let told: BTreeMap<&str, usize> =
        acks.iter()
            .flat_map(|a| a.values().flatten())
            .fold(BTreeMap::new(), |mut m, o| {
                *m.entry(o.as_str()).or_default() += 1;
                m
            });
    println!(
        "chaos (two tills): answers given {told:?}; codes both tills took alone: {both_alone}"
    );
    assert!(failures.is_empty(), "seed {seed}:\n{}", failures.join("\n"));
}
