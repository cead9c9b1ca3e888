//! The store guard's claims as this till's ledger keeps them (migration 8).
//!
//! A claim is noted before it is sent to the store, in the notes file (`note_file`) or
//! else in `claim_notes`; a restart moves the file's untied notes here, finds them and
//! cleans up. The row's own commit records how the claim went on the
//! row (`claim_key`, `claim_scan`, `claim_revision`) and drops the note; from then on every
//! change of the row's state marks it `claim_dirty` (trigger `claims_follow`) until the
//! bucket has been told. The claim lives on its row so that a scan writes few pages more
//! than without the guard (the WAL, each fsync and each checkpoint stay small).

use super::sql::{COLUMNS, Result, exec, immediate, one, read_row_at, revision_of};
use crate::clock::Millis;
use crate::model::row::Row;
use crate::model::state::State;
use rusqlite::{Connection, params};

/// Notes a claim about to be sent, before it is sent: the key and the scan id its value
/// names.
pub fn begin(conn: &mut Connection, key: &str, scan: &str, at: Millis) -> Result<()> {
    exec(
        conn,
        "INSERT INTO claim_notes (key, scan, at) VALUES (?1, ?2, ?3)",
        params![key, scan, at],
    )?;
    Ok(())
}

/// Moves the last run's notes (from the notes file) that no row took into `claim_notes`,
/// where the follower settles them. Returns how many.
pub fn import_notes(conn: &mut Connection, notes: &[super::note_file::Note]) -> Result<usize> {
    if notes.is_empty() {
        return Ok(0);
    }
    let tx = immediate(conn)?;
    let tied: std::collections::HashSet<String> = tx
        .prepare("SELECT claim_scan FROM redemptions WHERE claim_scan IS NOT NULL")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_>>()?;
    let mut moved = 0;
    for n in notes.iter().filter(|n| !tied.contains(&n.scan)) {
        exec(
            &tx,
            "INSERT INTO claim_notes (key, scan, at) VALUES (?1, ?2, ?3)",
            params![n.key, n.scan, n.at],
        )?;
        moved += 1;
    }
    tx.commit()?;
    Ok(moved)
}

/// A claim sent by an earlier run whose answer was never recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsettled {
    pub key: String,
    pub scan: String,
    /// The row this till has for the code, if any (a rescan's claim).
    pub row: Option<i64>,
}

/// Claims noted before `before` whose answer was never recorded (the process died). Only
/// those are left in `claim_notes`, so the lookup of each one's row may read the table.
pub fn unsettled(conn: &Connection, before: Millis) -> Result<Vec<Unsettled>> {
    conn.prepare_cached(
        "SELECT n.key, n.scan, (SELECT r.id FROM redemptions r WHERE r.claim_key = n.key) \
         FROM claim_notes n WHERE n.at < ?1 ORDER BY n.id",
    )?
    .query_map([before], |r| {
        Ok(Unsettled {
            key: r.get(0)?,
            scan: r.get(1)?,
            row: r.get(2)?,
        })
    })?
    .collect()
}

/// Closes an unsettled claim: its note goes; a row behind it takes the bucket's revision
/// (and this scan id), for the follower to bring the value up to date.
pub fn settle(conn: &mut Connection, u: &Unsettled, revision: Option<u64>) -> Result<()> {
    let tx = immediate(conn)?;
    exec(&tx, "DELETE FROM claim_notes WHERE scan = ?1", [&u.scan])?;
    if let (Some(id), Some(rev)) = (u.row, revision_of(revision)) {
        exec(
            &tx,
            "UPDATE redemptions SET claim_scan = ?2, claim_revision = ?3, claim_dirty = 1, \
             claim_synced = NULL WHERE id = ?1",
            params![id, u.scan, rev],
        )?;
    }
    tx.commit()
}

/// A row whose claim the bucket has not heard the latest of.
#[derive(Debug, Clone)]
pub struct Dirty {
    pub key: String,
    pub scan: String,
    pub revision: Option<u64>,
    pub synced: Option<String>,
    /// A redeeming call ever went out for the row.
    pub sent: bool,
    pub row: Row,
}

pub fn dirty(conn: &Connection, limit: usize) -> Result<Vec<Dirty>> {
    conn.prepare_cached(&format!(
        "SELECT claim_key, claim_scan, claim_revision, claim_synced, EXISTS(SELECT 1 FROM \
         attempts a WHERE a.redemption_id = redemptions.id AND a.call IN ('code/consume', \
         'coupons/use', 'product-coupon/use')), {COLUMNS} FROM redemptions WHERE claim_dirty = 1 ORDER BY id LIMIT ?1"
    ))?
    .query_map([limit as i64], |r| {
        Ok(Dirty {
            key: r.get(0)?,
            scan: r.get(1)?,
            revision: r
                .get::<_, Option<i64>>(2)?
                .and_then(|v| u64::try_from(v).ok()),
            synced: r.get(3)?,
            sent: r.get(4)?,
            row: read_row_at(r, 5)?,
        })
    })?
    .collect()
}

/// The bucket now holds `synced` for row `id`, at `revision`; clean unless the row has
/// moved on from `seen` meanwhile.
pub fn synced(
    conn: &Connection,
    id: i64,
    seen: State,
    revision: Option<u64>,
    synced: &str,
) -> Result<()> {
    exec(
        conn,
        "UPDATE redemptions SET claim_revision = ?2, claim_synced = ?3, \
         claim_dirty = (state IS NOT ?4) WHERE id = ?1",
        params![id, revision_of(revision), synced, seen.as_str()],
    )?;
    Ok(())
}

/// The bucket says another till holds a code this row's claim was for (taken while this
/// till could not reach the store, or after this till released it): the claim is no
/// longer followed, and the row says so for the manager. A row redeemed while this till
/// went on alone goes to review with `twice`: both tills took the code, and which one's
/// consume WeChat counted may not be knowable here (an unanswered consume resolved by a
/// query looks the same as the other till's).
pub fn lost(conn: &mut Connection, id: i64, note: &str, twice: &str, at: Millis) -> Result<()> {
    exec(
        conn,
        "UPDATE redemptions SET claim_dirty = 0, claim_synced = 'lost', \
         note = CASE WHEN note IS NULL THEN ?2 ELSE note || '; ' || ?2 END, updated_at = ?3, \
         reason = CASE WHEN state = 'redeemed' AND guard = 'unavailable' THEN ?4 ELSE reason END, \
         state = CASE WHEN state = 'redeemed' AND guard = 'unavailable' THEN 'review' ELSE state END \
         WHERE id = ?1",
        params![id, note, at, twice],
    )?;
    Ok(())
}

/// Forgets notes older than `before` that no row took (a scan whose row could not be
/// written): their claims are released by the next start's cleanup only if still noted,
/// so this keeps a day's worth.
pub fn prune(conn: &Connection, before: Millis) -> Result<usize> {
    exec(conn, "DELETE FROM claim_notes WHERE at < ?1", [before])
}

/// A review item for a claim of this till's that another till found abandoned: no code
/// (the till never recorded it), only its last 4 as the claim kept them. Once per claim.
pub fn record_abandoned_here(
    conn: &mut Connection,
    key: &str,
    shown_code: &str,
    reason: &str,
    till: &str,
    claimed_at: Millis,
    now: Millis,
) -> Result<Option<i64>> {
    let tx = immediate(conn)?;
    let note = format!("store claim {key}");
    let known: bool = one(
        &tx,
        "SELECT EXISTS(SELECT 1 FROM redemptions WHERE api IS NULL AND note = ?1)",
        [&note],
    )?;
    if known {
        tx.commit()?;
        return Ok(None);
    }
    exec(
        &tx,
        "INSERT INTO redemptions (code, state, reason, note, scanner, till, scanned_at, \
         updated_at, guard) VALUES (?1, 'review', ?2, ?3, 'store-guard', ?4, ?5, ?6, 'abandoned')",
        params![shown_code, reason, note, till, claimed_at, now],
    )?;
    let id = tx.last_insert_rowid();
    tx.commit()?;
    Ok(Some(id))
}

/// How many claims wait for the bucket: notes not yet answered, rows not yet told.
pub fn backlog(conn: &Connection) -> Result<i64> {
    one(
        conn,
        "SELECT (SELECT count(*) FROM claim_notes) + \
         (SELECT count(*) FROM redemptions WHERE claim_dirty = 1)",
        [],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::scans::{ClaimTie, NewScan, record_claimed, record_elsewhere};
    use crate::ledger::schema::open_rw;
    use crate::model::api::Api;
    use crate::model::code::Code;
    use crate::model::row::Guard;
    use crate::model::state::TillOutcome;
    use crate::route::Routed;

    static NO_SALE: crate::model::scan::Sale = crate::model::scan::Sale {
        order_id: None,
        amount: None,
        cashier: None,
    };

    fn scan<'a>(code: &'a Code, routed: &'a Routed) -> NewScan<'a> {
        NewScan {
            code,
            routed,
            scanner: "s",
            till: "t1",
            aim_id: None,
            at: 1_000,
            use_request_no: None,
            use_time: None,
            sale: &NO_SALE,
            meta: None,
        }
    }

    fn tie(key: &str, scan: &str, guard: Guard, revision: Option<u64>) -> ClaimTie {
        ClaimTie {
            key: key.into(),
            scan: scan.into(),
            guard,
            revision,
        }
    }

    fn keys(v: &[Dirty]) -> Vec<(&str, i64, Option<u64>)> {
        v.iter()
            .map(|d| (d.key.as_str(), d.row.id, d.revision))
            .collect()
    }

    /// A claim noted, tied to its row, followed through a change of state, and what a
    /// restart finds of a claim whose row was never recorded.
    #[test]
    fn a_claim_from_its_note_to_its_row_and_after() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open_rw(&dir.path().join("l.db")).unwrap();
        let code = Code::new("100000000001");
        let routed = Routed {
            code: code.clone(),
            route: 0,
            api: Api::Card,
            card_id: None,
            stock_id: None,
        };
        begin(&mut conn, "k1", "s1", 900).unwrap();
        assert_eq!(
            unsettled(&conn, 2_000).unwrap().len(),
            1,
            "noted before it is sent"
        );
        let rec = record_claimed(
            &mut conn,
            &scan(&code, &routed),
            &tie("k1", "s1", Guard::Claimed, Some(5)),
        )
        .unwrap();
        assert_eq!(rec.row.guard, Some(Guard::Claimed));
        assert!(
            unsettled(&conn, 2_000).unwrap().is_empty(),
            "tied in the row's commit"
        );
        let d = dirty(&conn, 10).unwrap();
        assert_eq!(
            keys(&d),
            [("k1", rec.row.id, Some(5))],
            "the value must learn its row"
        );
        assert!(!d[0].sent);
        synced(&conn, rec.row.id, State::Queued, Some(6), "claimed").unwrap();
        assert!(dirty(&conn, 10).unwrap().is_empty());
        // A change of state marks it again (trigger claims_follow).
        conn.execute(
            "UPDATE redemptions SET state = 'redeemed' WHERE id = ?1",
            [rec.row.id],
        )
        .unwrap();
        assert_eq!(
            keys(&dirty(&conn, 10).unwrap()),
            [("k1", rec.row.id, Some(6))]
        );
        // Synced from an older read: stays dirty.
        synced(&conn, rec.row.id, State::Queued, Some(7), "claimed").unwrap();
        assert_eq!(dirty(&conn, 10).unwrap().len(), 1);
        synced(&conn, rec.row.id, State::Redeemed, Some(8), "redeemed").unwrap();
        assert!(dirty(&conn, 10).unwrap().is_empty());

        // A rescan's claim noted, then the process died: adopted again with the revision.
        begin(&mut conn, "k1", "s2", 3_000).unwrap();
        let u = unsettled(&conn, 4_000).unwrap();
        assert_eq!(
            u,
            [Unsettled {
                key: "k1".into(),
                scan: "s2".into(),
                row: Some(rec.row.id)
            }]
        );
        settle(&mut conn, &u[0], Some(9)).unwrap();
        assert_eq!(
            keys(&dirty(&conn, 10).unwrap()),
            [("k1", rec.row.id, Some(9))]
        );

        // A claim with no row: gone once settled (released or never there).
        begin(&mut conn, "k2", "s3", 3_000).unwrap();
        let u = unsettled(&conn, 4_000).unwrap();
        assert_eq!(u.len(), 1);
        // Claims of this run are not the last run's.
        assert!(unsettled(&conn, 3_000).unwrap().is_empty());
        settle(&mut conn, &u[0], None).unwrap();
        assert!(unsettled(&conn, 4_000).unwrap().is_empty());
        let left: i64 = conn
            .query_row("SELECT count(*) FROM claim_notes", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0);

        // A note no row took (its row could not be written), a day old: forgotten.
        begin(&mut conn, "k3", "s4", 100).unwrap();
        assert_eq!(prune(&conn, 50).unwrap(), 0, "younger than the cut");
        assert_eq!(prune(&conn, 1_000).unwrap(), 1);
        assert_eq!(
            backlog(&conn).unwrap(),
            1,
            "the row still to tell the bucket"
        );
    }

    /// Another till's code: a rejected row answered duplicate (or review when abandoned),
    /// never queued; our note of the claim goes; a code we know already keeps its row.
    #[test]
    fn a_code_held_elsewhere_is_recorded_and_never_queued() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open_rw(&dir.path().join("l.db")).unwrap();
        let routed = |c: &Code| Routed {
            code: c.clone(),
            route: 0,
            api: Api::Coupon,
            card_id: None,
            stock_id: Some("1212".into()),
        };
        let table = [
            (Guard::Elsewhere, State::Rejected, TillOutcome::Duplicate),
            (Guard::Abandoned, State::Review, TillOutcome::Rejected),
        ];
        for (i, (guard, state, outcome)) in table.into_iter().enumerate() {
            let code = Code::new(format!("BF0000000{i}"));
            let r = routed(&code);
            begin(&mut conn, &format!("k{i}"), "s", 1).unwrap();
            let rec = record_elsewhere(&mut conn, &scan(&code, &r), "s", guard, "why").unwrap();
            assert_eq!(rec.row.state, state);
            assert_eq!(rec.row.guard, Some(guard));
            assert_eq!(rec.row.till_outcome, Some(outcome));
            assert_eq!(rec.row.reason.as_deref(), Some("why"));
            assert!(rec.row.next_attempt_at.is_none(), "never due");
            assert_eq!(backlog(&conn).unwrap(), 0, "no note of ours left");
            // Again: a rescan of that row, its row unchanged.
            let again = record_elsewhere(&mut conn, &scan(&code, &r), "s", guard, "why").unwrap();
            assert_eq!(again.row.id, rec.row.id);
            assert!(again.rescan.is_some());
            assert_eq!(again.row.state, state);
        }
    }

    /// A claim of ours another till found abandoned is one review item here, however often
    /// the restart that reports it runs.
    #[test]
    fn an_abandoned_claim_is_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open_rw(&dir.path().join("l.db")).unwrap();
        let first = record_abandoned_here(&mut conn, "k9", "****1234", "why", "t1", 5, 9).unwrap();
        let row = crate::ledger::queries::get(&conn, first.expect("recorded"))
            .unwrap()
            .expect("row");
        assert_eq!(
            (row.state, row.guard, row.api),
            (State::Review, Some(Guard::Abandoned), None)
        );
        assert_eq!(row.code.expose(), "****1234");
        assert_eq!(
            record_abandoned_here(&mut conn, "k9", "****1234", "why", "t1", 5, 9).unwrap(),
            None
        );
    }
}
