//! What each card and stock is, kept in memory for the hot path and in the ledger across
//! restarts (and for offline answers). An entry is refreshed at most daily: a card's type and
//! value do not change under a running promotion, and every fetch is a call against WeChat's
//! daily quota.

use crate::clock::Millis;
use crate::ledger::catalog;
use crate::ledger::{Ledger, LedgerError};
use crate::model::catalog::Meta;
use std::collections::HashMap;
use std::sync::RwLock;

/// How long an entry is used without asking again.
pub const REFRESH_AFTER_MS: Millis = 24 * 3_600_000;

pub fn card_key(card_id: &str) -> String {
    format!("card:{card_id}")
}

pub fn stock_key(stock_id: &str) -> String {
    format!("stock:{stock_id}")
}

/// An entry and whether it is due for a refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub meta: Meta,
    pub fresh: bool,
}

/// After a fetch failed, how long a lookup that may go without (a stock's) does not ask
/// again: a stock query this merchant may not make must not double every coupon's calls.
pub const RETRY_MISS_AFTER_MS: Millis = 10 * 60_000;

pub struct Catalog {
    entries: RwLock<HashMap<String, (Meta, Millis)>>,
    /// Keys whose last fetch failed, and when.
    misses: RwLock<HashMap<String, Millis>>,
    ledger: Option<Ledger>,
}

impl Catalog {
    /// Reads every entry the ledger keeps.
    pub async fn load(ledger: &Ledger) -> Result<Catalog, LedgerError> {
        let all = ledger.call(|c| catalog::catalog_all(c)).await?;
        Ok(Catalog {
            entries: RwLock::new(all.into_iter().map(|(k, m, at)| (k, (m, at))).collect()),
            misses: RwLock::default(),
            ledger: Some(ledger.clone()),
        })
    }

    /// A catalog that keeps nothing across restarts (tests, benchmarks).
    pub fn in_memory() -> Catalog {
        Catalog {
            entries: RwLock::default(),
            misses: RwLock::default(),
            ledger: None,
        }
    }

    pub fn get(&self, key: &str, now: Millis) -> Option<Entry> {
        let entries = self.entries.read().ok()?;
        let (meta, at) = entries.get(key)?;
        Some(Entry {
            meta: meta.clone(),
            fresh: now - at < REFRESH_AFTER_MS,
        })
    }

    /// Keeps what WeChat just said, in memory at once and in the ledger with its next commit
    /// (losing it to a crash costs one more fetch, nothing else).
    pub fn put(&self, key: String, meta: Meta, now: Millis) {
        if let Some(ledger) = &self.ledger {
            let (k, m) = (key.clone(), meta.clone());
            ledger.submit("catalog entry", move |c| {
                catalog::catalog_put(c, &k, &m, now)
            });
        }
        if let Ok(mut misses) = self.misses.write() {
            misses.remove(&key);
        }
        if let Ok(mut entries) = self.entries.write() {
            entries.insert(key, (meta, now));
        }
    }

    pub fn note_miss(&self, key: &str, now: Millis) {
        if let Ok(mut misses) = self.misses.write() {
            misses.insert(key.to_string(), now);
        }
    }

    /// Whether the last fetch of `key` failed less than [`RETRY_MISS_AFTER_MS`] ago.
    pub fn missed_recently(&self, key: &str, now: Millis) -> bool {
        self.misses
            .read()
            .is_ok_and(|m| m.get(key).is_some_and(|at| now - at < RETRY_MISS_AFTER_MS))
    }
}
