//! The one way tests seed a till's ledger: rows written straight into it, as a day at a
//! till leaves them (states, times, titles, orders, a row's calls), for what reads the
//! ledger (the pages, `log`, `summary`) to be checked against known figures.

use std::path::Path;

/// A row to write. `Default` is a queued card code scanned at 0 by `front` on
/// `store1-till1`, with nothing else known.
pub struct SeedRow<'a> {
    pub code: &'a str,
    pub api: &'a str,
    pub route: Option<i64>,
    pub state: &'a str,
    pub reason: Option<&'a str>,
    pub till_outcome: Option<&'a str>,
    pub till: &'a str,
    pub scanned_at: i64,
    pub redeemed_at: Option<i64>,
    pub title: Option<&'a str>,
    pub kind: Option<&'a str>,
    pub value: Option<i64>,
    pub order_id: Option<&'a str>,
    pub amount: Option<i64>,
}

impl Default for SeedRow<'_> {
    fn default() -> Self {
        SeedRow {
            code: "",
            api: "card",
            route: None,
            state: "queued",
            reason: None,
            till_outcome: None,
            till: "store1-till1",
            scanned_at: 0,
            redeemed_at: None,
            title: None,
            kind: None,
            value: None,
            order_id: None,
            amount: None,
        }
    }
}

/// A till's ledger open for seeding (migrated to the current schema first).
pub struct Seed {
    conn: rusqlite::Connection,
}

impl Seed {
    pub fn open(db: &Path) -> Seed {
        Seed {
            conn: redeemd::ledger::schema::open_rw(db).expect("open the ledger to seed"),
        }
    }

    /// Writes a row; its id. A queued row is due at its scan.
    pub fn row(&self, r: &SeedRow) -> i64 {
        self.conn
            .execute(
                "INSERT INTO redemptions (code, api, route, state, reason, till_outcome, scanner, \
                 till, scanned_at, updated_at, redeemed_at, next_attempt_at, title, kind, value, \
                 order_id, amount) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'front', ?7, ?8, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                rusqlite::params![
                    r.code,
                    r.api,
                    r.route,
                    r.state,
                    r.reason,
                    r.till_outcome,
                    r.till,
                    r.scanned_at,
                    r.redeemed_at,
                    (r.state == "queued").then_some(r.scanned_at),
                    r.title,
                    r.kind,
                    r.value,
                    r.order_id,
                    r.amount
                ],
            )
            .expect("seed a row");
        self.conn.last_insert_rowid()
    }

    /// One finished call of row `id` in its audit trail, answered 200 / errcode 0.
    pub fn call(&self, id: i64, call: &str, started_at: i64, took_ms: i64, outcome: &str) {
        self.conn
            .execute(
                "INSERT INTO attempts (redemption_id, call, started_at, ended_at, http_status, \
                 errcode, outcome) VALUES (?1, ?2, ?3, ?4, 200, 0, ?5)",
                rusqlite::params![id, call, started_at, started_at + took_ms, outcome],
            )
            .expect("seed a call");
    }
}
