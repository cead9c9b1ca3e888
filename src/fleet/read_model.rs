//! HQ's read model: every till's rows (their latest version) and beats, in SQLite. It is
//! derived: `redeemd fleet --rebuild` deletes it and reads the chain's stream again.
//!
//! Applying is idempotent by (store, till, row, version) (`model::event::applies`): a
//! repeat or an older version changes nothing, so a replay (after a crash before the ack,
//! or a rebuild) leaves the model as it was.

use crate::clock::Millis;
use crate::model::event::{RowEvent, StatusBeat, applies};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

pub type Result<T> = rusqlite::Result<T>;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS rows (
    store       TEXT NOT NULL,
    till        TEXT NOT NULL,
    id          INTEGER NOT NULL,
    version     INTEGER NOT NULL,
    key         TEXT,
    code_last4  TEXT NOT NULL,
    api         TEXT,
    state       TEXT NOT NULL,
    reason      TEXT,
    reason_code TEXT,
    title       TEXT,
    value       INTEGER,
    order_id    TEXT,
    amount      INTEGER,
    scans       INTEGER NOT NULL,
    scanned_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    redeemed_at INTEGER,
    resolution  TEXT,
    resolved_at INTEGER,
    void_state  TEXT,
    guard       TEXT,
    -- The WeChat Pay order a product coupon is used with.
    transaction_id TEXT,
    out_trade_no   TEXT,
    PRIMARY KEY (store, till, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rows_key ON rows(key) WHERE key IS NOT NULL;
CREATE INDEX IF NOT EXISTS rows_scanned ON rows(scanned_at);
CREATE TABLE IF NOT EXISTS tills (
    store        TEXT NOT NULL,
    till         TEXT NOT NULL,
    beat_at      INTEGER,
    backlog      INTEGER,
    review       INTEGER,
    outbox       INTEGER,
    scanners     TEXT,
    last_success INTEGER,
    version      TEXT,
    -- The newest row event applied: when the till changed the row, and HQ's delay.
    event_at     INTEGER,
    lag_ms       INTEGER,
    PRIMARY KEY (store, till)
) WITHOUT ROWID;
-- Uses and returns WeChat Pay reported (its notifications), one per notification and
-- one per (code, kind, time): WeChat repeats a notification, sometimes under a new id.
CREATE TABLE IF NOT EXISTS outside (
    notify_id   TEXT PRIMARY KEY,
    key         TEXT NOT NULL,
    api         TEXT NOT NULL,
    kind        TEXT NOT NULL,
    code_last4  TEXT NOT NULL,
    at          INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    UNIQUE (key, kind, at)
);
-- The rows of the chain: every till's, and each use outside the tills that no till row
-- accounts for (a till row accounts for a use unless it was refused, cancelled or given
-- back), shown as redeemed_outside, or returned when WeChat Pay reported it given back.
DROP VIEW IF EXISTS chain_rows;
CREATE VIEW chain_rows AS
    SELECT store, till, id, version, key, code_last4, api, state, reason, reason_code,
           title, value, order_id, amount, scans, scanned_at, updated_at, redeemed_at,
           resolution, void_state, guard, transaction_id, out_trade_no
    FROM rows
    UNION ALL
    SELECT '', '', o.id, 1, o.key, o.code_last4, o.api,
           CASE WHEN o.returned IS NULL THEN 'redeemed_outside' ELSE 'returned' END,
           CASE WHEN o.returned IS NULL
                THEN 'used outside the chain''s tills, as WeChat Pay reported'
                ELSE 'used outside the chain''s tills, then given back, as WeChat Pay reported'
           END,
           'redeemed_outside', NULL, NULL, NULL, NULL, 0, o.at,
           max(o.received_at, coalesce(o.returned, 0)), o.at, NULL, NULL, NULL, NULL, NULL
    FROM (SELECT u.rowid AS id, u.key, u.code_last4, u.api, u.at, u.received_at,
                 (SELECT max(r.received_at) FROM outside r
                  WHERE r.key = u.key AND r.kind = 'return' AND r.at >= u.at) AS returned
          FROM outside u WHERE u.kind = 'use') o
    WHERE NOT EXISTS (SELECT 1 FROM rows t WHERE t.key = o.key
                      AND t.state NOT IN ('rejected', 'cancelled', 'returned'));
"#;

/// Opens (or creates) the read model.
pub fn open(path: &Path) -> std::result::Result<Connection, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let conn = Connection::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let setup = || -> Result<()> {
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // Derived data: a power cut may lose the last batches, which the stream redelivers
        // (they were not acknowledged before their commit).
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        add_order_columns(&conn)?;
        conn.execute_batch(SCHEMA)
    };
    setup().map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(conn)
}

/// A read model made before rows kept their WeChat Pay order gets the columns (empty for
/// the rows it holds until their next event).
fn add_order_columns(conn: &Connection) -> Result<()> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'rows')",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(());
    }
    let has: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM pragma_table_info('rows') WHERE name = 'transaction_id')",
        [],
        |r| r.get(0),
    )?;
    if !has {
        conn.execute_batch(
            "DROP VIEW IF EXISTS chain_rows; \
             ALTER TABLE rows ADD COLUMN transaction_id TEXT; \
             ALTER TABLE rows ADD COLUMN out_trade_no TEXT;",
        )?;
    }
    Ok(())
}

/// What applying one event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// A new row, or a newer version of one.
    Row {
        /// The row is redeemed now (`Some(key)`), or was and is not any more.
        redeemed: Option<RedeemedChange>,
    },
    /// A repeat or an older version: nothing changed.
    Unchanged,
    Beat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedeemedChange {
    Now {
        key: String,
        store: String,
        till: String,
        at: Millis,
    },
    /// Used outside the tills, as WeChat Pay reported.
    Outside {
        key: String,
        at: Millis,
    },
    NoLonger {
        key: String,
    },
}

/// The state the fleet shows for a use outside the tills that no till row accounts for.
pub const REDEEMED_OUTSIDE: &str = "redeemed_outside";

/// A use or a return WeChat Pay reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutsideEvent {
    /// The notification's `id`.
    pub notify_id: String,
    pub key: String,
    /// `product_coupon`, or `coupon` (a merchant coupon, as the tills name it).
    pub api: &'static str,
    pub kind: OutsideKind,
    pub code_last4: String,
    /// When it happened at WeChat Pay.
    pub at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutsideKind {
    Use,
    Return,
}

impl OutsideKind {
    fn as_str(self) -> &'static str {
        match self {
            OutsideKind::Use => "use",
            OutsideKind::Return => "return",
        }
    }
}

/// What the chain's record of redeemed codes becomes after the newest reported event of
/// a code (`latest`, with its time), given whether a till row accounts for the code (a
/// till's own use is the till's to record, once). Pure.
pub fn outside_change(
    key: &str,
    latest: Option<(OutsideKind, Millis)>,
    till_accounts: bool,
) -> Option<RedeemedChange> {
    match (latest, till_accounts) {
        (_, true) | (None, _) => None,
        (Some((OutsideKind::Use, at)), false) => Some(RedeemedChange::Outside {
            key: key.to_string(),
            at,
        }),
        (Some((OutsideKind::Return, _)), false) => Some(RedeemedChange::NoLonger {
            key: key.to_string(),
        }),
    }
}

/// Records a reported use or return (`now`: HQ's clock). A repeat (same notification, or
/// the same code, kind and time) changes nothing and returns `None`.
pub fn apply_outside(
    conn: &Connection,
    e: &OutsideEvent,
    now: Millis,
) -> Result<Option<RedeemedChange>> {
    let added = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO outside (notify_id, key, api, kind, code_last4, at, received_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            e.notify_id,
            e.key,
            e.api,
            e.kind.as_str(),
            e.code_last4,
            e.at,
            now
        ])?;
    if added == 0 {
        return Ok(None);
    }
    // The newest event wins; at the same instant a return follows the use it gives back.
    let latest: Option<(String, Millis)> = conn
        .prepare_cached(
            "SELECT kind, at FROM outside WHERE key = ?1 \
             ORDER BY at DESC, kind = 'return' DESC LIMIT 1",
        )?
        .query_row([&e.key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let latest = latest.map(|(kind, at)| {
        let kind = if kind == "return" {
            OutsideKind::Return
        } else {
            OutsideKind::Use
        };
        (kind, at)
    });
    let till_accounts: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM rows WHERE key = ?1 \
             AND state NOT IN ('rejected', 'cancelled', 'returned'))",
        )?
        .query_row([&e.key], |r| r.get(0))?;
    Ok(outside_change(&e.key, latest, till_accounts))
}

/// Codes used outside the tills that no till row accounts for, and not given back.
pub fn redeemed_outside_count(conn: &Connection) -> Result<i64> {
    conn.prepare_cached("SELECT count(*) FROM chain_rows WHERE state = 'redeemed_outside'")?
        .query_row([], |r| r.get(0))
}

/// Applies a row event (`now`: HQ's clock, for the lag).
pub fn apply_row(conn: &Connection, e: &RowEvent, now: Millis) -> Result<Applied> {
    let held: Option<(i64, String)> = conn
        .prepare_cached(
            "SELECT version, state FROM rows WHERE store = ?1 AND till = ?2 AND id = ?3",
        )?
        .query_row(params![e.store, e.till, e.id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    if !applies(held.as_ref().map(|h| h.0), e.version) {
        return Ok(Applied::Unchanged);
    }
    conn.prepare_cached(
        "INSERT INTO rows (store, till, id, version, key, code_last4, api, state, reason, \
         reason_code, title, value, order_id, amount, scans, scanned_at, updated_at, \
         redeemed_at, resolution, resolved_at, void_state, guard, transaction_id, out_trade_no) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, \
         ?18, ?19, ?20, ?21, ?22, ?23, ?24) \
         ON CONFLICT (store, till, id) DO UPDATE SET version = excluded.version, \
         key = excluded.key, code_last4 = excluded.code_last4, api = excluded.api, \
         state = excluded.state, reason = excluded.reason, reason_code = excluded.reason_code, \
         title = excluded.title, value = excluded.value, order_id = excluded.order_id, \
         amount = excluded.amount, scans = excluded.scans, scanned_at = excluded.scanned_at, \
         updated_at = excluded.updated_at, redeemed_at = excluded.redeemed_at, \
         resolution = excluded.resolution, resolved_at = excluded.resolved_at, \
         void_state = excluded.void_state, guard = excluded.guard, \
         transaction_id = excluded.transaction_id, out_trade_no = excluded.out_trade_no",
    )?
    .execute(params![
        e.store,
        e.till,
        e.id,
        e.version,
        e.key,
        e.code_last4,
        e.api,
        e.state,
        e.reason,
        e.reason_code,
        e.title,
        e.value,
        e.order_id,
        e.amount,
        e.scans,
        e.scanned_at,
        e.updated_at,
        e.redeemed_at,
        e.resolution,
        e.resolved_at,
        e.void_state,
        e.guard,
        e.transaction_id,
        e.out_trade_no,
    ])?;
    conn.prepare_cached(
        "INSERT INTO tills (store, till, event_at, lag_ms) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (store, till) DO UPDATE SET event_at = excluded.event_at, \
         lag_ms = excluded.lag_ms WHERE tills.event_at IS NULL OR excluded.event_at >= tills.event_at",
    )?
    .execute(params![e.store, e.till, e.updated_at, (now - e.updated_at).max(0)])?;
    let was_redeemed = held.is_some_and(|h| h.1 == "redeemed");
    let redeemed = match (&e.key, e.state == "redeemed", was_redeemed) {
        (Some(key), true, _) => Some(RedeemedChange::Now {
            key: key.clone(),
            store: e.store.clone(),
            till: e.till.clone(),
            at: e.redeemed_at.unwrap_or(e.updated_at),
        }),
        (Some(key), false, true) => Some(RedeemedChange::NoLonger { key: key.clone() }),
        _ => None,
    };
    Ok(Applied::Row { redeemed })
}

/// Applies a beat: the newest of a till's beats wins.
pub fn apply_beat(conn: &Connection, b: &StatusBeat) -> Result<Applied> {
    let scanners = serde_json::to_string(&b.scanners).unwrap_or_else(|_| "{}".into());
    conn.prepare_cached(
        "INSERT INTO tills (store, till, beat_at, backlog, review, outbox, scanners, \
         last_success, version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
         ON CONFLICT (store, till) DO UPDATE SET beat_at = excluded.beat_at, \
         backlog = excluded.backlog, review = excluded.review, outbox = excluded.outbox, \
         scanners = excluded.scanners, last_success = excluded.last_success, \
         version = excluded.version \
         WHERE tills.beat_at IS NULL OR excluded.beat_at > tills.beat_at",
    )?
    .execute(params![
        b.store,
        b.till,
        b.at,
        b.backlog,
        b.review,
        b.outbox,
        scanners,
        b.last_success,
        b.version
    ])?;
    Ok(Applied::Beat)
}

/// A till as HQ sees it.
#[derive(Debug, Clone, Serialize)]
pub struct TillView {
    pub store: String,
    pub till: String,
    /// The till's last beat (its clock), RFC 3339; `None`: never heard.
    pub last_beat: Option<String>,
    pub last_beat_ms: Option<Millis>,
    pub backlog: Option<i64>,
    pub review: Option<i64>,
    pub outbox: Option<i64>,
    /// No beat for longer than `stale_after` (or never).
    pub stale: bool,
    pub scanners: BTreeMap<String, bool>,
    pub last_success: Option<String>,
    pub version: Option<String>,
    /// How late the till's newest row event reached HQ, seconds.
    pub events_lag_seconds: Option<f64>,
    /// Rows redeemed today (HQ's local day).
    pub redeemed_today: i64,
    /// Another store has a till of this name: names must be unique in the merchant (the
    /// streams de-duplicate by `<till>:<row>:<version>`, so one's events could be dropped).
    pub name_clash: bool,
}

/// Whether a till is stale: its last beat is older than `stale_after` at `now`.
pub fn is_stale(last_beat: Option<Millis>, now: Millis, stale_after: Duration) -> bool {
    last_beat.is_none_or(|at| now - at > stale_after.as_millis() as i64)
}

/// Every till heard of, by store and name (`store` and `day_start` filter and count).
pub fn tills(
    conn: &Connection,
    now: Millis,
    stale_after: Duration,
    day_start: Millis,
) -> Result<Vec<TillView>> {
    let mut stmt = conn.prepare_cached(
        "SELECT t.store, t.till, t.beat_at, t.backlog, t.review, t.outbox, t.scanners, \
         t.last_success, t.version, t.lag_ms, \
         (SELECT count(*) FROM rows r WHERE r.store = t.store AND r.till = t.till \
            AND r.state = 'redeemed' AND r.redeemed_at >= ?1), \
         EXISTS (SELECT 1 FROM tills u WHERE u.till = t.till AND u.store != t.store) \
         FROM tills t ORDER BY t.store, t.till",
    )?;
    stmt.query_map([day_start], |r| {
        let beat: Option<Millis> = r.get(2)?;
        let scanners: Option<String> = r.get(6)?;
        let last_success: Option<Millis> = r.get(7)?;
        let lag: Option<i64> = r.get(9)?;
        Ok(TillView {
            store: r.get(0)?,
            till: r.get(1)?,
            last_beat: beat.map(crate::clock::rfc3339),
            last_beat_ms: beat,
            backlog: r.get(3)?,
            review: r.get(4)?,
            outbox: r.get(5)?,
            stale: is_stale(beat, now, stale_after),
            scanners: scanners
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or_default(),
            last_success: last_success.map(crate::clock::rfc3339),
            version: r.get(8)?,
            events_lag_seconds: lag.map(|l| l as f64 / 1000.0),
            redeemed_today: r.get(10)?,
            name_clash: r.get(11)?,
        })
    })?
    .collect()
}

/// A row as the fleet API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RowView {
    pub store: String,
    pub till: String,
    pub id: i64,
    pub version: i64,
    pub code_last4: String,
    pub api: Option<String>,
    pub state: String,
    pub reason: Option<String>,
    pub reason_code: Option<String>,
    pub title: Option<String>,
    pub value: Option<i64>,
    pub order_id: Option<String>,
    pub amount: Option<i64>,
    pub scans: i64,
    pub scanned_at: String,
    pub updated_at: String,
    pub redeemed_at: Option<String>,
    pub resolution: Option<String>,
    pub void_state: Option<String>,
    pub guard: Option<String>,
    /// The WeChat Pay order a product coupon is used with.
    pub transaction_id: Option<String>,
    pub out_trade_no: Option<String>,
}

const ROW_COLUMNS: &str = "store, till, id, version, code_last4, api, state, reason, \
    reason_code, title, value, order_id, amount, scans, scanned_at, updated_at, redeemed_at, \
    resolution, void_state, guard, transaction_id, out_trade_no";

fn row_view(r: &rusqlite::Row) -> Result<RowView> {
    Ok(RowView {
        store: r.get(0)?,
        till: r.get(1)?,
        id: r.get(2)?,
        version: r.get(3)?,
        code_last4: r.get(4)?,
        api: r.get(5)?,
        state: r.get(6)?,
        reason: r.get(7)?,
        reason_code: r.get(8)?,
        title: r.get(9)?,
        value: r.get(10)?,
        order_id: r.get(11)?,
        amount: r.get(12)?,
        scans: r.get(13)?,
        scanned_at: crate::clock::rfc3339(r.get(14)?),
        updated_at: crate::clock::rfc3339(r.get(15)?),
        redeemed_at: r.get::<_, Option<Millis>>(16)?.map(crate::clock::rfc3339),
        resolution: r.get(17)?,
        void_state: r.get(18)?,
        guard: r.get(19)?,
        transaction_id: r.get(20)?,
        out_trade_no: r.get(21)?,
    })
}

/// The rows a list or export asks for.
#[derive(Debug, Clone, Default)]
pub struct RowFilter {
    pub store: Option<String>,
    pub till: Option<String>,
    pub state: Option<String>,
    pub since: Option<Millis>,
    pub until: Option<Millis>,
    pub limit: Option<usize>,
}

/// Rows, newest scan first, with the uses outside the tills no till row accounts for.
pub fn rows(conn: &Connection, f: &RowFilter) -> Result<Vec<RowView>> {
    let limit = f.limit.map_or(-1, |l| l as i64);
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS} FROM chain_rows \
         WHERE (?1 IS NULL OR store = ?1) AND (?2 IS NULL OR till = ?2) \
         AND (?3 IS NULL OR state = ?3) AND (?4 IS NULL OR scanned_at >= ?4) \
         AND (?5 IS NULL OR scanned_at < ?5) \
         ORDER BY scanned_at DESC, store, till, id DESC LIMIT ?6"
    ))?;
    stmt.query_map(
        params![f.store, f.till, f.state, f.since, f.until, limit],
        row_view,
    )?
    .collect()
}

/// Every row of the code with claim key `key`, across the chain (uses outside the tills
/// too), oldest scan first.
pub fn rows_of_key(conn: &Connection, key: &str) -> Result<Vec<RowView>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS} FROM chain_rows WHERE key = ?1 ORDER BY scanned_at, store, till"
    ))?;
    stmt.query_map([key], row_view)?.collect()
}

/// Rows in the model, for `/metrics`.
pub fn row_count(conn: &Connection) -> Result<i64> {
    conn.prepare_cached("SELECT count(*) FROM rows")?
        .query_row([], |r| r.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(till: &str, id: i64, version: i64, state: &str) -> RowEvent {
        RowEvent {
            v: 1,
            store: "s1".into(),
            till: till.into(),
            id,
            version,
            state: state.into(),
            reason: None,
            reason_code: None,
            api: Some("card".into()),
            code_last4: "1234".into(),
            key: Some(format!("k{till}{id}")),
            title: None,
            value: None,
            order_id: None,
            amount: None,
            scans: 1,
            scanned_at: 1_000,
            updated_at: 1_000 + version,
            redeemed_at: (state == "redeemed").then_some(2_000),
            resolution: None,
            resolved_at: None,
            void_state: None,
            guard: None,
            transaction_id: None,
            out_trade_no: None,
        }
    }

    fn model() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(SCHEMA).unwrap();
        c
    }

    #[test]
    fn repeats_and_old_versions_change_nothing() {
        let c = model();
        let now = 10_000;
        assert!(matches!(
            apply_row(&c, &event("t1", 1, 1, "queued"), now).unwrap(),
            Applied::Row { redeemed: None }
        ));
        let got = apply_row(&c, &event("t1", 1, 2, "redeemed"), now).unwrap();
        assert_eq!(
            got,
            Applied::Row {
                redeemed: Some(RedeemedChange::Now {
                    key: "kt11".into(),
                    store: "s1".into(),
                    till: "t1".into(),
                    at: 2_000
                })
            }
        );
        // Replays, in any order.
        assert_eq!(
            apply_row(&c, &event("t1", 1, 2, "redeemed"), now).unwrap(),
            Applied::Unchanged
        );
        assert_eq!(
            apply_row(&c, &event("t1", 1, 1, "queued"), now).unwrap(),
            Applied::Unchanged
        );
        // The same row id at another till is another row.
        apply_row(&c, &event("t2", 1, 1, "queued"), now).unwrap();
        let all = rows(&c, &RowFilter::default()).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(
            all.iter().find(|r| r.till == "t1").unwrap().state,
            "redeemed"
        );
        // Returned: no longer redeemed.
        let got = apply_row(&c, &event("t1", 1, 3, "returned"), now).unwrap();
        assert_eq!(
            got,
            Applied::Row {
                redeemed: Some(RedeemedChange::NoLonger { key: "kt11".into() })
            }
        );
        assert_eq!(rows_of_key(&c, "kt11").unwrap().len(), 1);
    }

    fn outside(id: &str, key: &str, kind: OutsideKind, at: Millis) -> OutsideEvent {
        OutsideEvent {
            notify_id: id.into(),
            key: key.into(),
            api: "product_coupon",
            kind,
            code_last4: "0042".into(),
            at,
        }
    }

    #[test]
    fn what_a_reported_event_makes_of_the_chains_record() {
        use OutsideKind::{Return, Use};
        let now = |key: &str| {
            Some(RedeemedChange::Outside {
                key: key.into(),
                at: 5,
            })
        };
        let gone = |key: &str| Some(RedeemedChange::NoLonger { key: key.into() });
        let cases = [
            (Some((Use, 5)), false, now("k")),
            (Some((Use, 5)), true, None),
            (Some((Return, 6)), false, gone("k")),
            (Some((Return, 6)), true, None),
            (None, false, None),
        ];
        for (latest, till, want) in cases {
            assert_eq!(outside_change("k", latest, till), want, "{latest:?} {till}");
        }
    }

    #[test]
    fn a_use_outside_the_tills_shows_once_and_a_tills_own_use_is_not_counted_twice() {
        let c = model();
        let states = |c: &Connection, key: &str| -> Vec<(String, String)> {
            rows_of_key(c, key)
                .unwrap()
                .into_iter()
                .map(|r| (r.store, r.state))
                .collect()
        };
        // Used outside: recorded, in the chain's record, counted.
        let got = apply_outside(&c, &outside("n1", "ko", OutsideKind::Use, 5), 9).unwrap();
        assert_eq!(
            got,
            Some(RedeemedChange::Outside {
                key: "ko".into(),
                at: 5
            })
        );
        assert_eq!(states(&c, "ko"), [("".into(), "redeemed_outside".into())]);
        assert_eq!(redeemed_outside_count(&c).unwrap(), 1);
        // Repeats: by id, and by code, kind and time under a new id.
        assert_eq!(
            apply_outside(&c, &outside("n1", "ko", OutsideKind::Use, 5), 9).unwrap(),
            None
        );
        assert_eq!(
            apply_outside(&c, &outside("n1b", "ko", OutsideKind::Use, 5), 9).unwrap(),
            None
        );
        assert_eq!(redeemed_outside_count(&c).unwrap(), 1);
        // Given back: no longer redeemed, shown as returned.
        assert_eq!(
            apply_outside(&c, &outside("n2", "ko", OutsideKind::Return, 7), 10).unwrap(),
            Some(RedeemedChange::NoLonger { key: "ko".into() })
        );
        assert_eq!(states(&c, "ko"), [("".into(), "returned".into())]);
        assert_eq!(redeemed_outside_count(&c).unwrap(), 0);

        // A till's own use, reported by WeChat Pay after the till's row: matched to it.
        let mut mine = event("t1", 7, 2, "redeemed");
        mine.key = Some("kt".into());
        apply_row(&c, &mine, 9).unwrap();
        assert_eq!(
            apply_outside(&c, &outside("n3", "kt", OutsideKind::Use, 2_000), 9).unwrap(),
            None
        );
        assert_eq!(states(&c, "kt"), [("s1".into(), "redeemed".into())]);
        // Reported before the till's row arrives: shown until the row accounts for it.
        apply_outside(&c, &outside("n4", "kl", OutsideKind::Use, 2_000), 9).unwrap();
        assert_eq!(redeemed_outside_count(&c).unwrap(), 1);
        let mut late = event("t2", 8, 1, "queued");
        late.key = Some("kl".into());
        apply_row(&c, &late, 9).unwrap();
        assert_eq!(states(&c, "kl"), [("s1".into(), "queued".into())]);
        assert_eq!(redeemed_outside_count(&c).unwrap(), 0);
        // The list has the till rows and the returned outside use.
        let all = rows(&c, &RowFilter::default()).unwrap();
        assert_eq!(all.len(), 3, "{all:?}");
        let only = rows(
            &c,
            &RowFilter {
                state: Some("returned".into()),
                ..RowFilter::default()
            },
        )
        .unwrap();
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].reason_code.as_deref(), Some("redeemed_outside"));
    }

    #[test]
    fn staleness() {
        let after = Duration::from_secs(90);
        let cases = [
            (None, 0, true),
            (Some(0), 90_000, false),
            (Some(0), 90_001, true),
            (Some(100_000), 50_000, false),
        ];
        for (beat, now, want) in cases {
            assert_eq!(is_stale(beat, now, after), want, "{beat:?} {now}");
        }
    }

    #[test]
    fn the_newest_beat_wins() {
        let c = model();
        let beat = |at, backlog| StatusBeat {
            v: 1,
            store: "s1".into(),
            till: "t1".into(),
            at,
            backlog,
            review: 0,
            outbox: 0,
            scanners: BTreeMap::new(),
            last_success: None,
            version: "x".into(),
        };
        apply_beat(&c, &beat(2_000, 5)).unwrap();
        apply_beat(&c, &beat(1_000, 9)).unwrap();
        let t = tills(&c, 2_500, Duration::from_secs(90), 0).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!((t[0].backlog, t[0].stale), (Some(5), false));
        assert!(!t[0].name_clash);
        // The same till name at another store: both are flagged.
        let mut other = beat(2_000, 1);
        other.store = "s2".into();
        apply_beat(&c, &other).unwrap();
        let t = tills(&c, 2_500, Duration::from_secs(90), 0).unwrap();
        assert!(t.iter().all(|t| t.name_clash), "{t:?}");
    }
}
