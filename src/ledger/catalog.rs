//! The catalog of what codes are (card and stock metadata), kept in the ledger so a
//! till knows them through a restart offline.

use super::sql::{Result, exec, immediate};
use crate::clock::Millis;
use crate::model::catalog::Meta;
use rusqlite::{Connection, params};

/// A card's or a stock's metadata, as WeChat last gave it (`key`: `card:<card_id>` or
/// `stock:<stock_id>`).
pub fn catalog_put(conn: &mut Connection, key: &str, m: &Meta, at: Millis) -> Result<()> {
    let tx = immediate(conn)?;
    exec(
        &tx,
        "INSERT INTO catalog (key, kind, title, value, minimum, detail, valid_from, valid_until, \
         fetched_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (key) DO UPDATE SET \
         kind = ?2, title = ?3, value = ?4, minimum = ?5, detail = ?6, valid_from = ?7, \
         valid_until = ?8, fetched_at = ?9",
        params![
            key,
            m.kind,
            m.title,
            m.value,
            m.minimum,
            m.detail,
            m.valid_from,
            m.valid_until,
            at
        ],
    )?;
    tx.commit()
}

/// Every catalog entry with when it was fetched.
pub fn catalog_all(conn: &Connection) -> Result<Vec<(String, Meta, Millis)>> {
    let mut stmt = conn.prepare(
        "SELECT key, kind, title, value, minimum, detail, valid_from, valid_until, fetched_at \
         FROM catalog",
    )?;
    stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            Meta {
                kind: r.get(1)?,
                title: r.get(2)?,
                value: r.get(3)?,
                minimum: r.get(4)?,
                detail: r.get(5)?,
                valid_from: r.get(6)?,
                valid_until: r.get(7)?,
            },
            r.get(8)?,
        ))
    })?
    .collect()
}
