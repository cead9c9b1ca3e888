//! The chain's outbox (migration 9): the rows whose latest version the store's stream has
//! not yet acknowledged, oldest change first, one entry a row. Triggers fill it in the
//! commit that changes a row; the publisher reads it on a connection of its own and deletes
//! what was acknowledged.

use crate::ledger::sql::COLUMNS;

use crate::ledger::sql::Result;

use crate::ledger::sql::read_row_at;
use crate::model::row::Row;
use rusqlite::{Connection, params};

/// One outbox entry, with its row as the ledger has it now.
#[derive(Debug, Clone)]
pub struct Unpublished {
    pub seq: i64,
    /// The version the entry names.
    pub version: i64,
    /// The row now (`None`: gone) and its current version.
    pub row: Option<(Row, i64)>,
}

impl Unpublished {
    /// Whether this entry is the row's latest. The triggers keep it so (a change replaces
    /// the row's entry in the same statement); a row gone, or a ledger changed by hand, is
    /// not sent.
    pub fn is_current(&self) -> bool {
        self.row.as_ref().is_some_and(|(_, v)| *v == self.version)
    }
}

/// Up to `limit` entries after `after` (a sequence number), oldest first.
pub fn unpublished(conn: &Connection, after: i64, limit: usize) -> Result<Vec<Unpublished>> {
    let cols = COLUMNS
        .split(", ")
        .map(|c| format!("r.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT o.seq, o.version, r.version, {cols} FROM event_outbox o \
         LEFT JOIN redemptions r ON r.id = o.row_id \
         WHERE o.seq > ?1 ORDER BY o.seq LIMIT ?2"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    stmt.query_map(params![after, limit as i64], |r| {
        let current: Option<i64> = r.get(2)?;
        let row = match current {
            Some(v) => Some((read_row_at(r, 3)?, v)),
            None => None,
        };
        Ok(Unpublished {
            seq: r.get(0)?,
            version: r.get(1)?,
            row,
        })
    })?
    .collect()
}

/// Forgets the entries up to and including `seq`: the stream has them.
pub fn acknowledged(conn: &Connection, through: i64) -> Result<usize> {
    conn.prepare_cached("DELETE FROM event_outbox WHERE seq <= ?1")?
        .execute([through])
}

/// How many row versions wait to be published.
pub fn outbox_len(conn: &Connection) -> Result<i64> {
    conn.prepare_cached("SELECT count(*) FROM event_outbox")?
        .query_row([], |r| r.get(0))
}

/// Whether this till publishes to a chain: when it does, every row change fills the
/// outbox. Turned on, every row goes in the outbox at its latest version (a till that joins
/// a chain sends its history once); turned off, the outbox is emptied (nothing drains it),
/// and a new row costs nothing for the chain.
pub fn set_publishing(conn: &mut Connection, on: bool) -> Result<()> {
    let tx = super::sql::immediate(conn)?;
    let was: bool = tx.query_row("SELECT publishing FROM chain_state WHERE id = 1", [], |r| {
        r.get(0)
    })?;
    if on && !was {
        tx.execute(
            "INSERT INTO event_outbox (row_id, version) SELECT id, version FROM redemptions \
             WHERE id NOT IN (SELECT row_id FROM event_outbox) ORDER BY id",
            [],
        )?;
    } else if !on && was {
        tx.execute("DELETE FROM event_outbox", [])?;
    }
    tx.execute("UPDATE chain_state SET publishing = ?1 WHERE id = 1", [on])?;
    follow_inserts(&tx, on)?;
    tx.commit()
}

/// Puts a new row in the outbox, by a trigger that exists only while the till publishes (a
/// change of a row is put there by `events_change`, whose WHEN asks `chain_state`).
fn follow_inserts(conn: &Connection, on: bool) -> Result<()> {
    if on {
        conn.execute_batch(
            "CREATE TRIGGER IF NOT EXISTS events_new AFTER INSERT ON redemptions
             BEGIN
                 DELETE FROM event_outbox WHERE row_id = NEW.id;
                 INSERT INTO event_outbox (row_id, version) VALUES (NEW.id, NEW.version);
             END;",
        )
    } else {
        conn.execute_batch("DROP TRIGGER IF EXISTS events_new")
    }
}

/// [`follow_inserts`] as `chain_state` says, after the schema's migrations.
pub(super) fn follow_inserts_as_set(conn: &Connection) -> Result<()> {
    let on: bool = conn.query_row("SELECT publishing FROM chain_state WHERE id = 1", [], |r| {
        r.get(0)
    })?;
    follow_inserts(conn, on)
}

/// Whether a new row's trigger is there.
#[cfg(test)]
pub(super) fn follows_inserts(conn: &Connection) -> bool {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name = 'events_new'",
        [],
        |r| r.get(0),
    )
    .expect("reading sqlite_master")
}

/// How many rows wait for a person.
pub fn review_count(conn: &Connection) -> Result<i64> {
    conn.prepare_cached(
        "SELECT count(*) FROM redemptions WHERE state = 'review' AND resolved_at IS NULL",
    )?
    .query_row([], |r| r.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::schema::migrate_for_tests;

    fn ledger() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        migrate_for_tests(&mut c);
        c
    }

    fn insert(c: &Connection, code: &str) -> i64 {
        c.execute(
            "INSERT INTO redemptions (code, api, state, scanner, till, scanned_at, updated_at) \
             VALUES (?1, 'card', 'queued', 's', 't', 1, 1)",
            [code],
        )
        .unwrap();
        c.last_insert_rowid()
    }

    fn entries(c: &Connection) -> Vec<(i64, i64, bool)> {
        unpublished(c, 0, 100)
            .unwrap()
            .iter()
            .map(|u| {
                (
                    u.row.as_ref().map_or(0, |r| r.0.id),
                    u.version,
                    u.is_current(),
                )
            })
            .collect()
    }

    #[test]
    fn every_change_that_matters_is_a_version() {
        let c = ledger();
        let a = insert(&c, "A1234567890");
        let b = insert(&c, "B1234567890");
        // A try on its way is not a version.
        c.execute(
            "UPDATE redemptions SET attempts = 1, unconfirmed = 1, next_attempt_at = 5 WHERE id = ?1",
            [a],
        )
        .unwrap();
        c.execute(
            "UPDATE redemptions SET state = 'redeemed', redeemed_at = 9 WHERE id = ?1",
            [a],
        )
        .unwrap();
        // The same state written again is not either.
        c.execute(
            "UPDATE redemptions SET state = 'redeemed' WHERE id = ?1",
            [a],
        )
        .unwrap();
        c.execute("UPDATE redemptions SET scans = 2 WHERE id = ?1", [b])
            .unwrap();
        // One entry a row, its latest version, in the order of the rows' last change.
        assert_eq!(entries(&c), vec![(a, 2, true), (b, 2, true)]);
        let version: i64 = c
            .query_row("SELECT version FROM redemptions WHERE id = ?1", [a], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(version, 2);
        assert_eq!(outbox_len(&c).unwrap(), 2);
        // A change after the publisher read a batch is a new entry the acknowledgement of
        // that batch does not take.
        let read = unpublished(&c, 0, 10).unwrap();
        c.execute("UPDATE redemptions SET reason = 'x' WHERE id = ?1", [a])
            .unwrap();
        let through = read.last().unwrap().seq;
        assert_eq!(acknowledged(&c, through).unwrap(), 1);
        assert_eq!(entries(&c), vec![(a, 3, true)]);
        assert!(unpublished(&c, i64::MAX - 1, 10).unwrap().is_empty());
        // The same with the changed row's entry the only one: its new entry does not take
        // the number of the one it replaced.
        let read = unpublished(&c, 0, 10).unwrap();
        assert_eq!(read.len(), 1);
        c.execute("UPDATE redemptions SET reason = 'y' WHERE id = ?1", [a])
            .unwrap();
        assert_eq!(acknowledged(&c, read[0].seq).unwrap(), 0);
        assert_eq!(entries(&c), vec![(a, 4, true)]);
        c.execute("UPDATE redemptions SET reason = NULL WHERE id = ?1", [a])
            .unwrap();
        acknowledged(&c, i64::MAX).unwrap();
        // The row comes with every column in place (read at an offset).
        c.execute(
            "UPDATE redemptions SET guard = 'claimed', void_state = 'pending', \
             void_reason = 'sale voided', voided_at = 5, title = 'Coffee' WHERE id = ?1",
            [b],
        )
        .unwrap();
        let last = unpublished(&c, 0, 10).unwrap().pop().unwrap();
        let (row, version) = last.row.unwrap();
        assert_eq!(version, 3);
        assert_eq!(row.guard.map(|g| g.as_str()), Some("claimed"));
        assert_eq!(row.title.as_deref(), Some("Coffee"));
        let void = row.void.unwrap();
        assert_eq!((void.reason.as_str(), void.at), ("sale voided", 5));
    }

    /// A till that publishes nowhere writes nothing to the outbox, but its rows still count
    /// versions; joining a chain puts every row in at its latest version, once.
    #[test]
    fn a_till_outside_a_chain_keeps_no_outbox_and_sends_its_history_on_joining() {
        let mut c = ledger();
        let a = insert(&c, "A1234567890");
        set_publishing(&mut c, false).unwrap();
        assert_eq!(outbox_len(&c).unwrap(), 0, "leaving empties the outbox");
        let b = insert(&c, "B1234567890");
        c.execute(
            "UPDATE redemptions SET state = 'redeemed' WHERE id = ?1",
            [a],
        )
        .unwrap();
        assert_eq!(
            outbox_len(&c).unwrap(),
            0,
            "nothing is written while outside"
        );
        set_publishing(&mut c, false).unwrap();
        set_publishing(&mut c, true).unwrap();
        assert_eq!(entries(&c), vec![(a, 2, true), (b, 1, true)]);
        set_publishing(&mut c, true).unwrap();
        assert_eq!(
            outbox_len(&c).unwrap(),
            2,
            "joining twice sends nothing twice"
        );
        c.execute("UPDATE redemptions SET scans = 2 WHERE id = ?1", [b])
            .unwrap();
        assert_eq!(entries(&c), vec![(a, 2, true), (b, 2, true)]);
        let d = insert(&c, "D1234567890");
        assert_eq!(entries(&c), vec![(a, 2, true), (b, 2, true), (d, 1, true)]);
    }

    /// Outside a chain a new row invokes no trigger at all; inside, the trigger is there.
    #[test]
    fn the_new_row_trigger_exists_only_while_the_till_publishes() {
        let mut c = ledger();
        assert!(
            follows_inserts(&c),
            "a new ledger publishes until told otherwise"
        );
        set_publishing(&mut c, false).unwrap();
        assert!(!follows_inserts(&c));
        set_publishing(&mut c, false).unwrap();
        assert!(!follows_inserts(&c));
        set_publishing(&mut c, true).unwrap();
        assert!(follows_inserts(&c));
        set_publishing(&mut c, true).unwrap();
        assert!(follows_inserts(&c));
    }
}
