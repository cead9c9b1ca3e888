//! The ledger's durability path against a model, through [`Ledger`] itself: its thread,
//! group commit, deferred fsyncs and shared-fsync waits, with card and coupon rows, and power
//! cuts. A power cut keeps the database file and a prefix of the WAL's commits (frames are
//! checksummed in a chain, so recovery stops at the first one that did not reach the disk),
//! and at least everything an fsync covered.
//!
//! The invariant: after a cut, every row is in a state it had at or after its last write
//! that was known to be on disk. So no scan the till was answered for is lost, and no
//! redeeming call's intent is undone: a consume sent before the cut is never sent again
//! without its resolution.

use super::{queries, scans, tries};
use crate::model::call::Confirmation;

use crate::ledger::scans::NewScan;

use super::checkpoint::wal_of;
use super::{Ledger, open_rw};
use crate::model::api::Api;
use crate::model::call::Retry;
use crate::model::code::Code;
use crate::model::state::{Settle, State};
use crate::route::Routed;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where each commit in a WAL file ends (byte offsets), in order.
pub(crate) fn commit_ends(wal: &[u8]) -> Vec<usize> {
    let be = |at: usize| u32::from_be_bytes([wal[at], wal[at + 1], wal[at + 2], wal[at + 3]]);
    if wal.len() < 32 {
        return Vec::new();
    }
    let page = be(8) as usize;
    let salts = &wal[16..24];
    let mut ends = Vec::new();
    let mut at = 32;
    while at + 24 + page <= wal.len() && &wal[at + 8..at + 16] == salts {
        at += 24 + page;
        if be(at - page - 24 + 4) != 0 {
            ends.push(at);
        }
    }
    ends
}

#[derive(Debug, Clone)]
enum Op {
    /// A scan of code `i` (a coupon's when odd); `answered`: the till waited for it to be on
    /// disk, as it does before it answers.
    Scan(u8, bool),
    /// A redeeming call about to be sent for code `i`, with the flag as the ledger has it.
    Begin(u8),
    /// A try's result for code `i`.
    Result(u8, u8),
    /// Shutdown's flush: everything on disk.
    Flush,
    /// Time for deferred fsyncs to happen (or not: nothing is assumed of them).
    Idle,
    /// The power fails; the machine comes back with what the disk kept, at commit `k` of
    /// those not known to be on disk.
    Cut(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..6, any::<bool>()).prop_map(|(i, a)| Op::Scan(i, a)),
        4 => (0u8..6).prop_map(Op::Begin),
        5 => (0u8..6, 0u8..7).prop_map(|(i, k)| Op::Result(i, k)),
        1 => Just(Op::Flush),
        1 => Just(Op::Idle),
        2 => any::<u8>().prop_map(Op::Cut),
    ]
}

fn result_kind(k: u8, unconfirmed_before: bool) -> Settle {
    match k {
        0 => Settle::Redeemed { note: None },
        1 => Settle::Refused {
            reason: "no".into(),
        },
        2 => Settle::NotRedeemed,
        3 => Settle::Retry {
            reason: "later".into(),
            throttled: false,
        },
        4 => Settle::Unknown {
            reason: "lost".into(),
        },
        5 => Settle::NeedsReview {
            reason: "person".into(),
        },
        _ => Settle::NotSent {
            reason: "refused".into(),
            unconfirmed_before,
        },
    }
}

fn code(i: u8) -> Code {
    if i % 2 == 0 {
        Code::new(format!("77770000{i:04}"))
    } else {
        Code::new(format!("BF7777{i:04}"))
    }
}

/// What a row was, and when: `seq` counts operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Snap {
    state: State,
    unconfirmed: bool,
}

#[derive(Debug, Default)]
struct Row {
    id: i64,
    /// Its states, each with the operation that made it.
    history: Vec<(u64, Snap)>,
    /// The flag the last Begin read, for a NotSent result.
    unconfirmed_before: bool,
}

impl Row {
    fn now(&self) -> Snap {
        self.history[self.history.len() - 1].1
    }

    /// The states the row may be found in after a power cut, when everything up to
    /// operation `durable` is known to be on disk: the last one by then, and every later one.
    fn allowed(&self, durable: u64) -> Vec<Snap> {
        let first = self
            .history
            .iter()
            .rposition(|(seq, _)| *seq <= durable)
            .unwrap_or(0);
        self.history[first..].iter().map(|(_, s)| *s).collect()
    }

    fn created(&self) -> u64 {
        self.history[0].0
    }
}

struct Till {
    dir: tempfile::TempDir,
    path: PathBuf,
    ledger: Ledger,
    generation: u32,
}

impl Till {
    fn start(dir: tempfile::TempDir, path: PathBuf) -> Till {
        let ledger = start(&path);
        Till {
            dir,
            path,
            ledger,
            generation: 0,
        }
    }

    /// Where the WAL's last commit ends: the file is longer, its room past that is zeros.
    fn wal_len(&self) -> usize {
        let wal = std::fs::read(wal_of(&self.path)).unwrap_or_default();
        commit_ends(&wal).last().copied().unwrap_or(0)
    }
}

/// A ledger whose waits are short, so that a case runs in milliseconds.
fn start(path: &Path) -> Ledger {
    let conn = open_rw(path).expect("open");
    Ledger::start_waiting(conn, Duration::from_millis(2), Duration::from_millis(5))
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("l0.db");
    let mut till = Till::start(dir, path);
    let mut rows: BTreeMap<u8, Row> = BTreeMap::new();
    let retry = Retry {
        base: Duration::from_millis(10),
        max: Duration::from_millis(100),
        jitter: 0.5,
    };
    // Operations known to be on disk: up to `durable`, whose WAL then ended at `durable_len`.
    let (mut seq, mut durable, mut durable_len) = (0u64, 0u64, 0usize);
    let mut at = 1_000_000i64;
    for op in ops {
        seq += 1;
        at += 1000;
        match op {
            Op::Scan(i, answered) => {
                let c = code(i);
                let routed = Routed {
                    code: c.clone(),
                    route: 0,
                    api: if i % 2 == 0 { Api::Card } else { Api::Coupon },
                    card_id: None,
                    stock_id: None,
                };
                // As the intake does: a request number of its own for every scan.
                let request_no = (i % 2 == 1).then(|| format!("RD{seq:06}"));
                let (rec, on_disk) = till
                    .ledger
                    .call_sync_with_next(move |conn| {
                        scans::record_scan(
                            conn,
                            &NewScan {
                                code: &c,
                                routed: &routed,
                                scanner: "s",
                                till: "t",
                                aim_id: None,
                                at,
                                use_request_no: request_no.as_deref(),
                                use_time: request_no.as_ref().map(|_| "2026-12-01T10:00:00+08:00"),
                                sale: &Default::default(),
                                meta: None,
                            },
                        )
                    })
                    .await
                    .expect("scan");
                let snap = Snap {
                    state: rec.row.state,
                    unconfirmed: rec.row.unconfirmed,
                };
                let row = rows.entry(i).or_insert_with(|| Row {
                    id: rec.row.id,
                    ..Row::default()
                });
                prop_assert_eq!(row.id, rec.row.id);
                row.history.push((seq, snap));
                if answered {
                    on_disk.wait().await.expect("durable");
                    (durable, durable_len) = (seq, till.wal_len());
                }
            }
            Op::Begin(i) => {
                let Some(row) = rows.get_mut(&i) else {
                    continue;
                };
                let (id, read) = (row.id, row.now().unconfirmed);
                let begun = till
                    .ledger
                    .call(move |c| tries::begin_call(c, id, read, "code/consume", at, &[]))
                    .await
                    .expect("begin");
                prop_assert_eq!(begun.is_some(), row.now().state == State::Queued);
                if begun.is_some() {
                    row.unconfirmed_before = read;
                    row.history.push((
                        seq,
                        Snap {
                            state: State::Queued,
                            unconfirmed: true,
                        },
                    ));
                }
                // Its intent was fsynced before it answered, with all before it.
                (durable, durable_len) = (seq, till.wal_len());
            }
            Op::Result(i, k) => {
                let Some(row) = rows.get_mut(&i) else {
                    continue;
                };
                let (id, settle) = (row.id, result_kind(k, row.unconfirmed_before));
                let (after, _) = till
                    .ledger
                    .call_sync_later(move |c| {
                        tries::apply(c, id, &settle, &Confirmation::default(), retry, at, &[])
                    })
                    .await
                    .expect("apply");
                row.history.push((
                    seq,
                    Snap {
                        state: after.state,
                        unconfirmed: after.unconfirmed,
                    },
                ));
            }
            Op::Flush => {
                till.ledger.flush().await.expect("flush");
                (durable, durable_len) = (seq, till.wal_len());
            }
            Op::Idle => tokio::time::sleep(Duration::from_millis(25)).await,
            Op::Cut(k) => {
                // What the disk holds: the database file and the WAL up to a commit boundary
                // at or after the last fsync (copied while the ledger is open: closing it
                // would checkpoint the WAL away).
                let wal = std::fs::read(wal_of(&till.path)).unwrap_or_default();
                let ends: Vec<usize> = commit_ends(&wal)
                    .into_iter()
                    .filter(|e| *e >= durable_len)
                    .collect();
                let keep = match ends.len() {
                    0 => wal.len().min(durable_len),
                    n => ends[usize::from(k) % n],
                };
                till.generation += 1;
                let cut = till.dir.path().join(format!("l{}.db", till.generation));
                std::fs::copy(&till.path, &cut).expect("copy");
                std::fs::write(wal_of(&cut), &wal[..keep.min(wal.len())]).expect("wal");
                till.ledger = start(&cut);
                till.path = cut;
                // What survived, row by row.
                let ids: Vec<(u8, i64)> = rows.iter().map(|(i, r)| (*i, r.id)).collect();
                let found = till
                    .ledger
                    .call(move |c| {
                        ids.into_iter()
                            .map(|(i, id)| Ok((i, queries::get(c, id)?)))
                            .collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .await
                    .expect("read back");
                for (i, got) in found {
                    let row = rows.get_mut(&i).expect("modelled");
                    match got {
                        None => {
                            prop_assert!(
                                row.created() > durable,
                                "code {i}: a scan on disk was lost"
                            );
                            rows.remove(&i);
                        }
                        Some(r) => {
                            let snap = Snap {
                                state: r.state,
                                unconfirmed: r.unconfirmed,
                            };
                            let allowed = row.allowed(durable);
                            prop_assert!(
                                allowed.contains(&snap),
                                "code {}: {:?} after the cut, allowed {:?} (history {:?}, on disk up to op {})",
                                i,
                                snap,
                                allowed,
                                row.history,
                                durable
                            );
                            row.history = vec![(seq, snap)];
                        }
                    }
                }
                // The read above was a synced commit of the new ledger: all of it on disk.
                (durable, durable_len) = (seq, till.wal_len());
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn power_cuts_keep_every_answered_scan_and_every_intent(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(run(ops))?;
    }
}

/// The WAL reader finds commit boundaries in a real ledger's WAL.
#[test]
fn commit_ends_are_found_in_a_real_wal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("l.db");
    let conn = open_rw(&path).expect("open");
    for i in 0..3 {
        conn.execute(
            "INSERT INTO redemptions (code, api, state, scanner, till, scanned_at, updated_at) \
             VALUES (?1, 'card', 'queued', 's', 't', 1, 1)",
            [format!("1000000000{i:02}")],
        )
        .expect("insert");
    }
    let wal = std::fs::read(wal_of(&path)).expect("wal");
    let ends = commit_ends(&wal);
    assert!(ends.len() >= 3, "{ends:?}");
    let end = ends.last().copied().expect("a commit");
    assert!(end < wal.len(), "the WAL has room past its commits");
    assert!(wal[end..].iter().all(|b| *b == 0), "the room is zeros");
}
