//! The ledger against an in-memory model (vector's disk-buffer idea): random sequences of
//! operations, including closing and reopening the database, must leave the SQLite ledger
//! agreeing with a model written straight from the rules of the state machine.

use super::schema::open_rw;
use super::{queries, scans, tries};
use crate::ledger::scans::NewScan;
use crate::ledger::scans::Refusal;
use crate::model::api::Api;
use crate::model::call::Retry;
use crate::model::code::Code;
use crate::model::scan::Sale;
use crate::model::state::{Settle, State, TillOutcome};
use crate::route::Routed;
use proptest::prelude::*;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Redeemed,
    Refused,
    NotRedeemed,
    Retry,
    Unknown,
    Review,
    /// A redeeming call that never left; the flag the try read before it.
    NotSent(bool),
}

#[derive(Debug, Clone)]
enum Op {
    Scan(u8),
    Refuse,
    DecideOffline(u8, bool),
    /// A code, and the `unconfirmed` flag the try read (maybe outdated).
    BeginConsume(u8, bool),
    Settle(u8, Kind),
    ExpireAll,
    Reopen,
    /// The start-up sweep, with whether the route may go offline.
    RefuseUnanswered(bool),
}

fn op() -> impl Strategy<Value = Op> {
    let code = 0u8..5;
    let kind = prop_oneof![
        Just(Kind::Redeemed),
        Just(Kind::Refused),
        Just(Kind::NotRedeemed),
        Just(Kind::Retry),
        Just(Kind::Unknown),
        Just(Kind::Review),
        any::<bool>().prop_map(Kind::NotSent),
    ];
    prop_oneof![
        4 => code.clone().prop_map(Op::Scan),
        1 => Just(Op::Refuse),
        2 => (code.clone(), any::<bool>()).prop_map(|(c, a)| Op::DecideOffline(c, a)),
        3 => (code.clone(), any::<bool>()).prop_map(|(c, u)| Op::BeginConsume(c, u)),
        4 => (code, kind).prop_map(|(c, k)| Op::Settle(c, k)),
        1 => Just(Op::ExpireAll),
        1 => Just(Op::Reopen),
        1 => any::<bool>().prop_map(Op::RefuseUnanswered),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Model {
    state: State,
    unconfirmed: bool,
    accepted_offline: bool,
    /// The till was told something for the row's first read (or for the rescan that
    /// started it over).
    answered: bool,
    scans: i64,
    /// WeChat confirmed a redemption at some point (redeemed_at is set).
    redeemed: bool,
}

fn settle_for(k: Kind) -> Settle {
    match k {
        Kind::Redeemed => Settle::Redeemed { note: None },
        Kind::Refused => Settle::Refused {
            reason: "no".into(),
        },
        Kind::NotRedeemed => Settle::NotRedeemed,
        Kind::Retry => Settle::Retry {
            reason: "later".into(),
            throttled: false,
        },
        Kind::Unknown => Settle::Unknown {
            reason: "lost".into(),
        },
        Kind::Review => Settle::NeedsReview {
            reason: "person".into(),
        },
        Kind::NotSent(before) => Settle::NotSent {
            reason: "refused".into(),
            unconfirmed_before: before,
        },
    }
}

/// The rules, restated independently of `model::state`.
fn model_settle(m: &mut Model, k: Kind) {
    use State::*;
    if matches!(m.state, Redeemed | Rejected | Review) {
        return;
    }
    let cancelled = m.state == Cancelled;
    match k {
        Kind::Redeemed => {
            m.state = if cancelled { Review } else { Redeemed };
            m.unconfirmed = false;
            m.redeemed = true;
        }
        Kind::Refused => {
            m.state = if cancelled {
                Cancelled
            } else if m.accepted_offline {
                Review
            } else {
                Rejected
            };
            m.unconfirmed = false;
        }
        Kind::NotRedeemed => m.unconfirmed = false,
        Kind::Retry => {}
        Kind::Unknown => m.unconfirmed = true,
        Kind::Review => {
            m.state = Review;
            m.unconfirmed = false;
        }
        Kind::NotSent(before) => m.unconfirmed = before,
    }
}

fn code(i: u8) -> String {
    format!("88880000{i:04}")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    // `shared`: every operation runs inside an outer transaction, as in the ledger thread's
    // group commit, so each store function takes its savepoint path.
    fn ledger_agrees_with_the_model(ops in proptest::collection::vec(op(), 1..60), shared in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        let mut conn = open_rw(&path).unwrap();
        let mut model: BTreeMap<String, (i64, Model)> = BTreeMap::new();
        let mut refusals = 0i64;
        let routed = Routed { code: Code::default(), route: 0, api: Api::Card, card_id: None, stock_id: None };
        let retry = Retry { base: Duration::from_millis(10), max: Duration::from_millis(100), jitter: 0.5 };
        let mut at = 1_000_000i64;
        for op in ops {
            at += 1000;
            // The previous operation's shared transaction (some skip the comparison below).
            if !conn.is_autocommit() {
                conn.execute_batch("COMMIT").unwrap();
            }
            if shared && !matches!(op, Op::Reopen) {
                conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            }
            match op {
                Op::Scan(i) => {
                    let c = code(i);
                    let rec = scans::record_scan(&mut conn, &NewScan { code: &Code::new(c.as_str()), routed: &routed, scanner: "s", till: "t", aim_id: None, at, use_request_no: None, use_time: None, sale: &Default::default(), meta: None }).unwrap();
                    let stored = queries::get(&conn, rec.row.id).unwrap();
                    prop_assert_eq!(Some(&rec.row), stored.as_ref(), "the row handed back is the row stored");
                    match model.get_mut(&c) {
                        Some((id, m)) => {
                            prop_assert!(rec.rescan.is_some());
                            prop_assert_eq!(rec.row.id, *id);
                            m.scans += 1;
                            // A refused row starts over (its flag kept); an unanswered
                            // queued one is answered as a first read.
                            let starts_over = match m.state {
                                State::Cancelled => {
                                    m.state = State::Queued;
                                    m.answered = false;
                                    m.accepted_offline = false;
                                    true
                                }
                                State::Queued => !m.answered,
                                _ => false,
                            };
                            prop_assert_eq!(rec.reopened, starts_over, "reopened");
                        }
                        None => {
                            prop_assert!(rec.rescan.is_none());
                            model.insert(c, (rec.row.id, Model { state: State::Queued, unconfirmed: false, accepted_offline: false, answered: false, scans: 1, redeemed: false }));
                        }
                    }
                }
                Op::Refuse => {
                    scans::record_refusal(&mut conn, &Refusal { shown_code: "****1234", reason: "payment code, not a coupon", scanner: "s", till: "t", aim_id: None, at, sale: &Sale::default() }).unwrap();
                    refusals += 1;
                }
                Op::DecideOffline(i, allowed) => {
                    let Some((id, m)) = model.get_mut(&code(i)) else { continue };
                    let (outcome, _) = scans::decide_offline(&mut conn, *id, &crate::model::offline::Limits { allowed, max_pending: 10_000, ..Default::default() }, at).unwrap();
                    let first_answer = !m.answered;
                    m.answered = true;
                    let expected = match m.state {
                        State::Queued if allowed => { m.accepted_offline |= first_answer; TillOutcome::AcceptedOffline }
                        State::Queued => { m.state = State::Cancelled; TillOutcome::RefusedOffline }
                        State::Redeemed => TillOutcome::Redeemed,
                        State::Rejected | State::Review | State::Returned => TillOutcome::Rejected,
                        State::Cancelled => TillOutcome::RefusedOffline,
                        State::Held => TillOutcome::Held,
                    };
                    prop_assert_eq!(outcome, expected);
                }
                Op::BeginConsume(i, read) => {
                    let Some((id, m)) = model.get_mut(&code(i)) else { continue };
                    let got = tries::begin_call(&mut conn, *id, read, "code/consume", at, &[]).unwrap();
                    prop_assert_eq!(got.is_some(), m.state == State::Queued && m.unconfirmed == read, "only queued rows, as the try read them, may be redeemed");
                    if got.is_some() { m.unconfirmed = true; }
                }
                Op::Settle(i, k) => {
                    let Some((id, m)) = model.get_mut(&code(i)) else { continue };
                    let before = m.state;
                    tries::apply(&mut conn, *id, &settle_for(k), &crate::model::call::Confirmation::default(), retry, at, &[]).unwrap();
                    model_settle(m, k);
                    if before == State::Cancelled {
                        prop_assert!(m.state != State::Redeemed, "a cancelled row never counts as redeemed");
                    }
                }
                Op::ExpireAll => {
                    tries::expire(&mut conn, at + 1, 0).unwrap();
                    for (_, m) in model.values_mut() {
                        if m.state == State::Queued || (m.state == State::Cancelled && m.unconfirmed) {
                            m.state = State::Review;
                        }
                    }
                }
                Op::Reopen => {
                    drop(conn);
                    conn = open_rw(&path).unwrap();
                }
                Op::RefuseUnanswered(allowed) => {
                    scans::refuse_unanswered(&mut conn, &|_| allowed, at, at).unwrap();
                    for (_, m) in model.values_mut() {
                        if m.state == State::Queued && !m.answered && !allowed {
                            m.state = State::Cancelled;
                        }
                    }
                }
            }
            // Compare every row.
            for (c, (id, m)) in &model {
                let row = queries::get(&conn, *id).unwrap().unwrap();
                prop_assert_eq!(row.code.expose(), c.as_str());
                prop_assert_eq!(row.state, m.state, "state of {}", c);
                prop_assert_eq!(row.unconfirmed, m.unconfirmed, "unconfirmed of {}", c);
                prop_assert_eq!(row.scans, m.scans);
                let rescans: i64 = conn.query_row("SELECT count(*) FROM scans WHERE redemption_id = ?1", [*id], |r| r.get(0)).unwrap();
                prop_assert_eq!(rescans, m.scans - 1, "every read but the first has its scans entry");
                prop_assert_eq!(row.redeemed_at.is_some(), m.redeemed);
                prop_assert_eq!(row.till_outcome.is_some(), m.answered, "till answer of {}", c);
                prop_assert_eq!(row.snapshot().accepted_offline, m.accepted_offline, "accepted offline: {}", c);
            }
            let all = queries::list(&conn, &queries::Filter::default()).unwrap();
            prop_assert_eq!(all.len() as i64, model.len() as i64 + refusals);
            // Work queue: exactly the rows that need work, in scan order.
            let due = tries::due(&conn, i64::MAX, 100, &HashSet::new(), Api::Card).unwrap();
            let due_ids: Vec<i64> = due.iter().map(|r| r.id).collect();
            let mut want: Vec<i64> = model.values()
                .filter(|(_, m)| m.state == State::Queued || (m.state == State::Cancelled && m.unconfirmed))
                .map(|(id, _)| *id)
                .collect();
            want.sort();
            prop_assert_eq!(due_ids, want);
        }
    }
}

#[test]
fn due_is_in_scan_order_and_skips_rows_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = open_rw(&dir.path().join("l.db")).unwrap();
    let routed = Routed {
        code: Code::default(),
        route: 0,
        api: Api::Card,
        card_id: None,
        stock_id: None,
    };
    let coupon = Routed {
        api: Api::Coupon,
        ..routed.clone()
    };
    let mut ids = Vec::new();
    for i in 0..12u8 {
        let c = code(i);
        let r = scans::record_scan(
            &mut conn,
            &NewScan {
                code: &Code::new(c.as_str()),
                // Every other row is a coupon's: they must not take the card rows' places.
                routed: if i % 2 == 0 { &routed } else { &coupon },
                scanner: "s",
                till: "t",
                aim_id: None,
                at: 100 + i64::from(i),
                use_request_no: None,
                use_time: None,
                sale: &Default::default(),
                meta: None,
            },
        )
        .unwrap();
        if i % 2 == 0 {
            ids.push(r.row.id);
        }
    }
    let in_flight: HashSet<i64> = [ids[0], ids[2]].into();
    let due = tries::due(&conn, 1_000, 3, &in_flight, Api::Card).unwrap();
    let got: Vec<i64> = due.iter().map(|r| r.id).collect();
    assert_eq!(got, vec![ids[1], ids[3], ids[4]]);
    let coupons = tries::due(&conn, 1_000, 6, &HashSet::new(), Api::Coupon).unwrap();
    assert_eq!(coupons.len(), 6);
    assert!(coupons.iter().all(|r| r.api() == Some(Api::Coupon)));
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.db");
    let conn = open_rw(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let e = open_rw(&path).unwrap_err().to_string();
    assert!(e.contains("newer"), "{e}");
}

#[test]
fn wal_and_full_sync_are_on() {
    let dir = tempfile::tempdir().unwrap();
    let conn = open_rw(&dir.path().join("l.db")).unwrap();
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    let sync: i64 = conn
        .pragma_query_value(None, "synchronous", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(sync, 2, "FULL");
    let page: i64 = conn
        .pragma_query_value(None, "page_size", |r| r.get(0))
        .unwrap();
    assert_eq!(page, crate::ledger::schema::PAGE_SIZE);
}

#[test]
fn a_ledger_made_with_another_page_size_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("l.db");
    // A ledger of an older version, whose new ledgers had 4 KiB pages.
    let mut old = rusqlite::Connection::open(&db).unwrap();
    old.execute_batch("PRAGMA page_size = 4096; PRAGMA journal_mode = WAL;")
        .unwrap();
    crate::ledger::schema::migrate_for_tests(&mut old);
    drop(old);
    let conn = open_rw(&db).unwrap();
    let page: i64 = conn
        .pragma_query_value(None, "page_size", |r| r.get(0))
        .unwrap();
    assert_eq!(page, 4096);
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'redemptions'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 1, "and opens as any other");
}

/// Only a missing file becomes a new ledger: an empty file, or another program's SQLite
/// database, at the ledger's path is refused with what to do, and left as it was.
#[test]
fn an_empty_or_foreign_file_is_not_made_a_new_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let e = open_rw(&empty).unwrap_err().to_string();
    assert!(
        e.contains("is not a redeemd ledger (the file is empty)"),
        "{e}"
    );
    assert!(e.contains("mv "), "says what to do: {e}");
    assert_eq!(
        std::fs::metadata(&empty).unwrap().len(),
        0,
        "left as it was"
    );

    let foreign = dir.path().join("foreign.db");
    let other = rusqlite::Connection::open(&foreign).unwrap();
    other.execute_batch("CREATE TABLE invoices (n);").unwrap();
    drop(other);
    let e = open_rw(&foreign).unwrap_err().to_string();
    assert!(e.contains("an SQLite database of something else"), "{e}");
    let names: i64 = rusqlite::Connection::open(&foreign)
        .unwrap()
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .unwrap();
    assert_eq!(names, 1, "nothing was added to it");

    let missing = dir.path().join("new.db");
    assert!(open_rw(&missing).is_ok(), "a missing file becomes a ledger");
}

/// The ledger holds live codes: it, its WAL and its shared-memory file are 0600 whatever
/// the umask; an existing ledger readable by others is made so.
#[test]
fn the_ledger_files_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("l.db");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    // The test's own umask is usually 022: SQLite alone would make these 0644.
    let conn = open_rw(&db).unwrap();
    conn.execute(
        "INSERT INTO redemptions (code, api, state, scanner, till, scanned_at, updated_at) \
         VALUES ('100000000001', 'card', 'queued', 's', 't', 1, 1)",
        [],
    )
    .unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let p = std::path::PathBuf::from(format!("{}{suffix}", db.display()));
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    drop(conn);
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    drop(open_rw(&db).unwrap());
    assert_eq!(mode(&db), 0o600, "an existing ledger is made private");
}
