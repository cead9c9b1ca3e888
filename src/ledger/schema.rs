//! Opening the ledger: pragmas and versioned migrations.

use super::checkpoint;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use std::path::Path;
use std::time::Duration;

/// Each entry moves the schema from version `i` to `i + 1` (`PRAGMA user_version`).
/// Append only: never edit a migration that has shipped.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE redemptions (
    id              INTEGER PRIMARY KEY,
    -- The full code for routed codes (it is what WeChat needs); masked for local refusals
    -- (payment codes, junk), which are never sent anywhere.
    code            TEXT NOT NULL,
    api             TEXT CHECK (api IN ('card', 'coupon')),
    route           INTEGER,
    card_id         TEXT,
    aim_id          TEXT,
    state           TEXT NOT NULL
                    CHECK (state IN ('queued', 'redeemed', 'rejected', 'cancelled', 'review')),
    reason          TEXT,
    -- The answer the till got for the first scan.
    till_outcome    TEXT,
    -- A redeeming call was sent and its answer has not arrived: ask before acting again.
    unconfirmed     INTEGER NOT NULL DEFAULT 0,
    scans           INTEGER NOT NULL DEFAULT 1,
    attempts        INTEGER NOT NULL DEFAULT 0,
    scanner         TEXT NOT NULL,
    till            TEXT NOT NULL,
    scanned_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    redeemed_at     INTEGER,
    next_attempt_at INTEGER,
    openid          TEXT,
    -- How an unknown outcome was resolved, or a manager's note.
    note            TEXT
);
-- One row per code: this index is what makes a second redemption of a code impossible.
CREATE UNIQUE INDEX redemptions_code ON redemptions(code) WHERE api IS NOT NULL;
CREATE INDEX redemptions_work ON redemptions(state, next_attempt_at);
CREATE INDEX redemptions_scanned ON redemptions(scanned_at);

-- Every read of every code.
CREATE TABLE scans (
    id              INTEGER PRIMARY KEY,
    redemption_id   INTEGER NOT NULL REFERENCES redemptions(id),
    scanner         TEXT NOT NULL,
    aim_id          TEXT,
    scanned_at      INTEGER NOT NULL,
    till_outcome    TEXT
);
CREATE INDEX scans_redemption ON scans(redemption_id);

-- Every API call: the audit trail. A row with started_at and no ended_at is a call whose
-- answer never came.
CREATE TABLE attempts (
    id              INTEGER PRIMARY KEY,
    redemption_id   INTEGER NOT NULL REFERENCES redemptions(id),
    call            TEXT NOT NULL,
    started_at      INTEGER NOT NULL,
    ended_at        INTEGER,
    http_status     INTEGER,
    errcode         INTEGER,
    outcome         TEXT,
    detail          TEXT
);
CREATE INDEX attempts_redemption ON attempts(redemption_id);
"#,
    // 2: WeChat Pay merchant coupons. `use_request_no` is fixed when the row is created, before any
    // attempt, and reused by every retry: WeChat Pay's idempotency key.
    r#"
ALTER TABLE redemptions ADD COLUMN stock_id TEXT;
ALTER TABLE redemptions ADD COLUMN use_request_no TEXT;
ALTER TABLE redemptions ADD COLUMN use_time TEXT;
ALTER TABLE redemptions ADD COLUMN wechatpay_use_time TEXT;
CREATE UNIQUE INDEX redemptions_use_request_no ON redemptions(use_request_no)
    WHERE use_request_no IS NOT NULL;
"#,
    // 3: a manager's resolution of a review item.
    r#"
ALTER TABLE redemptions ADD COLUMN resolved_at INTEGER;
ALTER TABLE redemptions ADD COLUMN resolved_by TEXT;
ALTER TABLE redemptions ADD COLUMN resolution TEXT;
"#,
    // 4: the dispatcher's work queue in scan order, without sorting the whole backlog on
    // every turn (the WHERE must stay word for word what `tries::due` asks).
    r#"
CREATE INDEX redemptions_pending ON redemptions(id)
    WHERE state = 'queued' OR (state = 'cancelled' AND unconfirmed = 1);
"#,
    // 5: no query looks scans up by redemption (the foreign key checks the parent through
    // its primary key), and every scan paid for keeping this index: one more page per commit.
    r#"
DROP INDEX scans_redemption;
"#,
    // 6: fewer pages per commit. A new code's first read lives in its row alone (`scans`
    // keeps the later reads: the row already holds scanner, aim_id, scanned_at and the
    // till's answer). The work queue's index also carries what the dispatcher's per-turn
    // questions read, so `redemptions_work` and `redemptions_scanned` go: every question
    // they answered is about unsettled rows, which this index holds (and no report could
    // use them: their filters are optional). A scan now writes three pages, not six.
    r#"
DELETE FROM scans WHERE id IN (SELECT min(id) FROM scans GROUP BY redemption_id);
DROP INDEX redemptions_work;
DROP INDEX redemptions_scanned;
DROP INDEX redemptions_pending;
CREATE INDEX redemptions_pending ON redemptions(id, state, unconfirmed, api, next_attempt_at, scanned_at)
    WHERE state = 'queued' OR (state = 'cancelled' AND unconfirmed = 1);
"#,
    // 7: inside the sale. The state `returned` (a voided merchant coupon given back) needs a
    // new CHECK, and SQLite changes a CHECK only by rebuilding the table (run with foreign
    // keys off, see `migrate`). New: the sale (order_id, amount, cashier), what the code is
    // (title, kind, value, from the catalog), and the void: its
    // request (reason, who, when), its progress (`void_state`: pending until WeChat Pay
    // answered the return) and the return's idempotency key, fixed in the commit that
    // records the void, before any return is sent.
    r#"
CREATE TABLE redemptions_new (
    id              INTEGER PRIMARY KEY,
    code            TEXT NOT NULL,
    api             TEXT CHECK (api IN ('card', 'coupon')),
    route           INTEGER,
    card_id         TEXT,
    aim_id          TEXT,
    state           TEXT NOT NULL
                    CHECK (state IN ('queued', 'redeemed', 'rejected', 'cancelled', 'review', 'returned')),
    reason          TEXT,
    till_outcome    TEXT,
    unconfirmed     INTEGER NOT NULL DEFAULT 0,
    scans           INTEGER NOT NULL DEFAULT 1,
    attempts        INTEGER NOT NULL DEFAULT 0,
    scanner         TEXT NOT NULL,
    till            TEXT NOT NULL,
    scanned_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    redeemed_at     INTEGER,
    next_attempt_at INTEGER,
    openid          TEXT,
    note            TEXT,
    stock_id        TEXT,
    use_request_no  TEXT,
    use_time        TEXT,
    wechatpay_use_time TEXT,
    resolved_at     INTEGER,
    resolved_by     TEXT,
    resolution      TEXT,
    order_id        TEXT,
    amount          INTEGER,
    cashier         TEXT,
    title           TEXT,
    kind            TEXT,
    value           INTEGER,
    void_state      TEXT CHECK (void_state IN ('pending', 'done', 'failed')),
    void_reason     TEXT,
    voided_by       TEXT,
    voided_at       INTEGER,
    return_request_no TEXT,
    next_void_at    INTEGER,
    returned_at     INTEGER
);
INSERT INTO redemptions_new (id, code, api, route, card_id, aim_id, state, reason, till_outcome,
    unconfirmed, scans, attempts, scanner, till, scanned_at, updated_at, redeemed_at,
    next_attempt_at, openid, note, stock_id, use_request_no, use_time, wechatpay_use_time,
    resolved_at, resolved_by, resolution)
SELECT id, code, api, route, card_id, aim_id, state, reason, till_outcome,
    unconfirmed, scans, attempts, scanner, till, scanned_at, updated_at, redeemed_at,
    next_attempt_at, openid, note, stock_id, use_request_no, use_time, wechatpay_use_time,
    resolved_at, resolved_by, resolution FROM redemptions;
DROP TABLE redemptions;
ALTER TABLE redemptions_new RENAME TO redemptions;
CREATE UNIQUE INDEX redemptions_code ON redemptions(code) WHERE api IS NOT NULL;
CREATE UNIQUE INDEX redemptions_use_request_no ON redemptions(use_request_no)
    WHERE use_request_no IS NOT NULL;
CREATE UNIQUE INDEX redemptions_return_request_no ON redemptions(return_request_no)
    WHERE return_request_no IS NOT NULL;
CREATE INDEX redemptions_pending ON redemptions(id, state, unconfirmed, api, next_attempt_at, scanned_at)
    WHERE state = 'queued' OR (state = 'cancelled' AND unconfirmed = 1);
CREATE INDEX redemptions_voids ON redemptions(next_void_at) WHERE void_state = 'pending';
CREATE INDEX redemptions_order ON redemptions(order_id) WHERE order_id IS NOT NULL;

-- What a card (key `card:<card_id>`) or a merchant-coupon stock (`stock:<stock_id>`) is,
-- as WeChat last said; read offline, refreshed at most daily.
CREATE TABLE catalog (
    key         TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    title       TEXT NOT NULL,
    value       INTEGER,
    minimum     INTEGER,
    detail      TEXT,
    valid_from  TEXT,
    valid_until TEXT,
    fetched_at  INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    // 8: the store guard. `guard` says how the store's claim went for the row,
    // and the claim's own columns follow it to the store (`claim_dirty`: the row changed
    // since the bucket was told). `claim_notes` holds the claims sent and not yet answered,
    // written before each is sent, so that a restart finds them.
    r#"
ALTER TABLE redemptions ADD COLUMN guard TEXT
    CHECK (guard IN ('claimed', 'unavailable', 'elsewhere', 'abandoned'));
ALTER TABLE redemptions ADD COLUMN claim_key TEXT;      -- HMAC-SHA256(code_key, code), hex
ALTER TABLE redemptions ADD COLUMN claim_scan TEXT;     -- the scan id the claim's value names
ALTER TABLE redemptions ADD COLUMN claim_revision INTEGER;  -- NULL: not known to hold it
ALTER TABLE redemptions ADD COLUMN claim_synced TEXT;   -- the claim state last written
ALTER TABLE redemptions ADD COLUMN claim_dirty INTEGER NOT NULL DEFAULT 0;
CREATE INDEX redemptions_claim_dirty ON redemptions(id) WHERE claim_dirty = 1;
CREATE TABLE claim_notes (
    id    INTEGER PRIMARY KEY,
    key   TEXT NOT NULL,
    scan  TEXT NOT NULL,
    at    INTEGER NOT NULL
);
-- The claim follows its row: every change of state is for the bucket to hear.
CREATE TRIGGER claims_follow AFTER UPDATE OF state ON redemptions
    WHEN OLD.state IS NOT NEW.state AND NEW.claim_key IS NOT NULL
        AND NEW.claim_synced IS NOT 'lost'
BEGIN
    UPDATE redemptions SET claim_dirty = 1 WHERE id = NEW.id;
END;
"#,
    // 9: the chain. Every change of a row HQ cares about gives the row a new
    // `version` and puts (row, version) in `event_outbox`, in the commit that changed it;
    // the publisher deletes an entry once the store's stream has acknowledged it (the
    // outbox is the publish cursor). A row has one entry at most, its latest version (an
    // event carries the whole row), so a till that never publishes keeps one per row, not
    // one per change. Rows from before are put in it, so HQ gets the whole log. Columns a
    // try writes on its way (attempts, next_attempt_at, unconfirmed, the claim's) are not
    // a version.
    r#"
ALTER TABLE redemptions ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
-- AUTOINCREMENT: a sequence number is never used twice, or a change made while the
-- publisher waits for its batch's ack could take the number of the entry it replaced and
-- be deleted with that batch.
CREATE TABLE event_outbox (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    row_id  INTEGER NOT NULL UNIQUE,
    version INTEGER NOT NULL
);
INSERT INTO event_outbox (row_id, version) SELECT id, 1 FROM redemptions ORDER BY id;
CREATE TRIGGER events_new AFTER INSERT ON redemptions
BEGIN
    DELETE FROM event_outbox WHERE row_id = NEW.id;
    INSERT INTO event_outbox (row_id, version) VALUES (NEW.id, NEW.version);
END;
CREATE TRIGGER events_change AFTER UPDATE OF state, reason, scans, redeemed_at, resolution,
    order_id, amount, title, value, void_state, guard ON redemptions
    WHEN OLD.state IS NOT NEW.state OR OLD.reason IS NOT NEW.reason
        OR OLD.scans IS NOT NEW.scans OR OLD.redeemed_at IS NOT NEW.redeemed_at
        OR OLD.resolution IS NOT NEW.resolution OR OLD.order_id IS NOT NEW.order_id
        OR OLD.amount IS NOT NEW.amount OR OLD.title IS NOT NEW.title
        OR OLD.value IS NOT NEW.value OR OLD.void_state IS NOT NEW.void_state
        OR OLD.guard IS NOT NEW.guard
BEGIN
    UPDATE redemptions SET version = OLD.version + 1 WHERE id = NEW.id;
    DELETE FROM event_outbox WHERE row_id = NEW.id;
    INSERT INTO event_outbox (row_id, version) VALUES (NEW.id, OLD.version + 1);
END;
"#,
    // 10: a code voided and scanned again starts a new sale on its row; the earlier sales
    // (their order and their void) are kept here, one line each, oldest first.
    r#"
ALTER TABLE redemptions ADD COLUMN past_sales TEXT;
"#,
    // 11: what a new row costs. A till that publishes to no chain pays nothing for the
    // outbox: `chain_state` says whether the daemon publishes (set at each start from
    // `[store]`), and the triggers fill the outbox only then; versions count every change
    // either way, so a till that joins a chain later sends each row once, at its latest
    // version (`events::set_publishing`). And the table is rebuilt (foreign keys off, see
    // `migrate`) with its CHECKs written as comparisons: SQLite checks `x IN (a, b, c)`
    // against a temporary b-tree it builds for every row written, three per insert here.
    r#"
CREATE TABLE chain_state (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    publishing  INTEGER NOT NULL
);
INSERT INTO chain_state (id, publishing) VALUES (1, 1);
CREATE TABLE redemptions_new (
    id              INTEGER PRIMARY KEY,
    code            TEXT NOT NULL,
    api             TEXT CHECK (api = 'card' OR api = 'coupon'),
    route           INTEGER,
    card_id         TEXT,
    aim_id          TEXT,
    state           TEXT NOT NULL
                    CHECK (state = 'queued' OR state = 'redeemed' OR state = 'rejected'
                           OR state = 'cancelled' OR state = 'review' OR state = 'returned'),
    reason          TEXT,
    till_outcome    TEXT,
    unconfirmed     INTEGER NOT NULL DEFAULT 0,
    scans           INTEGER NOT NULL DEFAULT 1,
    attempts        INTEGER NOT NULL DEFAULT 0,
    scanner         TEXT NOT NULL,
    till            TEXT NOT NULL,
    scanned_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    redeemed_at     INTEGER,
    next_attempt_at INTEGER,
    openid          TEXT,
    note            TEXT,
    stock_id        TEXT,
    use_request_no  TEXT,
    use_time        TEXT,
    wechatpay_use_time TEXT,
    resolved_at     INTEGER,
    resolved_by     TEXT,
    resolution      TEXT,
    order_id        TEXT,
    amount          INTEGER,
    cashier         TEXT,
    title           TEXT,
    kind            TEXT,
    value           INTEGER,
    void_state      TEXT CHECK (void_state = 'pending' OR void_state = 'done'
                                OR void_state = 'failed'),
    void_reason     TEXT,
    voided_by       TEXT,
    voided_at       INTEGER,
    return_request_no TEXT,
    next_void_at    INTEGER,
    returned_at     INTEGER,
    guard           TEXT CHECK (guard = 'claimed' OR guard = 'unavailable'
                                OR guard = 'elsewhere' OR guard = 'abandoned'),
    claim_key       TEXT,
    claim_scan      TEXT,
    claim_revision  INTEGER,
    claim_synced    TEXT,
    claim_dirty     INTEGER NOT NULL DEFAULT 0,
    version         INTEGER NOT NULL DEFAULT 1,
    past_sales      TEXT
);
INSERT INTO redemptions_new (id, code, api, route, card_id, aim_id, state, reason,
    till_outcome, unconfirmed, scans, attempts, scanner, till, scanned_at, updated_at,
    redeemed_at, next_attempt_at, openid, note, stock_id, use_request_no, use_time,
    wechatpay_use_time, resolved_at, resolved_by, resolution, order_id, amount, cashier,
    title, kind, value, void_state, void_reason, voided_by, voided_at, return_request_no,
    next_void_at, returned_at, guard, claim_key, claim_scan, claim_revision, claim_synced,
    claim_dirty, version, past_sales)
SELECT id, code, api, route, card_id, aim_id, state, reason,
    till_outcome, unconfirmed, scans, attempts, scanner, till, scanned_at, updated_at,
    redeemed_at, next_attempt_at, openid, note, stock_id, use_request_no, use_time,
    wechatpay_use_time, resolved_at, resolved_by, resolution, order_id, amount, cashier,
    title, kind, value, void_state, void_reason, voided_by, voided_at, return_request_no,
    next_void_at, returned_at, guard, claim_key, claim_scan, claim_revision, claim_synced,
    claim_dirty, version, past_sales FROM redemptions;
DROP TABLE redemptions;
ALTER TABLE redemptions_new RENAME TO redemptions;
CREATE UNIQUE INDEX redemptions_code ON redemptions(code) WHERE api IS NOT NULL;
CREATE UNIQUE INDEX redemptions_use_request_no ON redemptions(use_request_no)
    WHERE use_request_no IS NOT NULL;
CREATE UNIQUE INDEX redemptions_return_request_no ON redemptions(return_request_no)
    WHERE return_request_no IS NOT NULL;
CREATE INDEX redemptions_pending ON redemptions(id, state, unconfirmed, api, next_attempt_at, scanned_at)
    WHERE state = 'queued' OR (state = 'cancelled' AND unconfirmed = 1);
CREATE INDEX redemptions_voids ON redemptions(next_void_at) WHERE void_state = 'pending';
CREATE INDEX redemptions_order ON redemptions(order_id) WHERE order_id IS NOT NULL;
CREATE INDEX redemptions_claim_dirty ON redemptions(id) WHERE claim_dirty = 1;
CREATE TRIGGER claims_follow AFTER UPDATE OF state ON redemptions
    WHEN OLD.state IS NOT NEW.state AND NEW.claim_key IS NOT NULL
        AND NEW.claim_synced IS NOT 'lost'
BEGIN
    UPDATE redemptions SET claim_dirty = 1 WHERE id = NEW.id;
END;
CREATE TRIGGER events_new AFTER INSERT ON redemptions
    WHEN (SELECT publishing FROM chain_state WHERE id = 1)
BEGIN
    DELETE FROM event_outbox WHERE row_id = NEW.id;
    INSERT INTO event_outbox (row_id, version) VALUES (NEW.id, NEW.version);
END;
CREATE TRIGGER events_change AFTER UPDATE OF state, reason, scans, redeemed_at, resolution,
    order_id, amount, title, value, void_state, guard ON redemptions
    WHEN OLD.state IS NOT NEW.state OR OLD.reason IS NOT NEW.reason
        OR OLD.scans IS NOT NEW.scans OR OLD.redeemed_at IS NOT NEW.redeemed_at
        OR OLD.resolution IS NOT NEW.resolution OR OLD.order_id IS NOT NEW.order_id
        OR OLD.amount IS NOT NEW.amount OR OLD.title IS NOT NEW.title
        OR OLD.value IS NOT NEW.value OR OLD.void_state IS NOT NEW.void_state
        OR OLD.guard IS NOT NEW.guard
BEGIN
    UPDATE redemptions SET version = OLD.version + 1 WHERE id = NEW.id;
    DELETE FROM event_outbox WHERE row_id = NEW.id
        AND (SELECT publishing FROM chain_state WHERE id = 1);
    INSERT INTO event_outbox (row_id, version) SELECT NEW.id, OLD.version + 1
        WHERE (SELECT publishing FROM chain_state WHERE id = 1);
END;
"#,
    // 12: product coupons at the till: the api and the state `held` (a coupon held for its
    // sale until its WeChat Pay order comes, until `hold_until`), the coupon's ids at WeChat
    // Pay, and the sale's WeChat Pay order, which changes a row's version as the POS's order
    // does. Rebuilt as 11 was (only a rebuild changes a CHECK), its CHECKs as comparisons.
    r#"
CREATE TABLE redemptions_new (
    id              INTEGER PRIMARY KEY,
    code            TEXT NOT NULL,
    api             TEXT CHECK (api = 'card' OR api = 'coupon' OR api = 'product_coupon'),
    route           INTEGER,
    card_id         TEXT,
    aim_id          TEXT,
    state           TEXT NOT NULL
                    CHECK (state = 'queued' OR state = 'redeemed' OR state = 'rejected'
                           OR state = 'cancelled' OR state = 'review' OR state = 'returned'
                           OR state = 'held'),
    reason          TEXT,
    till_outcome    TEXT,
    unconfirmed     INTEGER NOT NULL DEFAULT 0,
    scans           INTEGER NOT NULL DEFAULT 1,
    attempts        INTEGER NOT NULL DEFAULT 0,
    scanner         TEXT NOT NULL,
    till            TEXT NOT NULL,
    scanned_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    redeemed_at     INTEGER,
    next_attempt_at INTEGER,
    openid          TEXT,
    note            TEXT,
    stock_id        TEXT,
    use_request_no  TEXT,
    use_time        TEXT,
    wechatpay_use_time TEXT,
    resolved_at     INTEGER,
    resolved_by     TEXT,
    resolution      TEXT,
    order_id        TEXT,
    amount          INTEGER,
    cashier         TEXT,
    title           TEXT,
    kind            TEXT,
    value           INTEGER,
    void_state      TEXT CHECK (void_state = 'pending' OR void_state = 'done'
                                OR void_state = 'failed'),
    void_reason     TEXT,
    voided_by       TEXT,
    voided_at       INTEGER,
    return_request_no TEXT,
    next_void_at    INTEGER,
    returned_at     INTEGER,
    guard           TEXT CHECK (guard = 'claimed' OR guard = 'unavailable'
                                OR guard = 'elsewhere' OR guard = 'abandoned'),
    claim_key       TEXT,
    claim_scan      TEXT,
    claim_revision  INTEGER,
    claim_synced    TEXT,
    claim_dirty     INTEGER NOT NULL DEFAULT 0,
    version         INTEGER NOT NULL DEFAULT 1,
    past_sales      TEXT,
    product_coupon_id TEXT,
    coupon_appid    TEXT,
    hold_until      INTEGER,
    transaction_id  TEXT,
    out_trade_no    TEXT,
    order_mchid     TEXT,
    sub_mchid       TEXT
);
INSERT INTO redemptions_new (id, code, api, route, card_id, aim_id, state, reason,
    till_outcome, unconfirmed, scans, attempts, scanner, till, scanned_at, updated_at,
    redeemed_at, next_attempt_at, openid, note, stock_id, use_request_no, use_time,
    wechatpay_use_time, resolved_at, resolved_by, resolution, order_id, amount, cashier,
    title, kind, value, void_state, void_reason, voided_by, voided_at, return_request_no,
    next_void_at, returned_at, guard, claim_key, claim_scan, claim_revision, claim_synced,
    claim_dirty, version, past_sales)
SELECT id, code, api, route, card_id, aim_id, state, reason,
    till_outcome, unconfirmed, scans, attempts, scanner, till, scanned_at, updated_at,
    redeemed_at, next_attempt_at, openid, note, stock_id, use_request_no, use_time,
    wechatpay_use_time, resolved_at, resolved_by, resolution, order_id, amount, cashier,
    title, kind, value, void_state, void_reason, voided_by, voided_at, return_request_no,
    next_void_at, returned_at, guard, claim_key, claim_scan, claim_revision, claim_synced,
    claim_dirty, version, past_sales FROM redemptions;
DROP TABLE redemptions;
ALTER TABLE redemptions_new RENAME TO redemptions;
CREATE UNIQUE INDEX redemptions_code ON redemptions(code) WHERE api IS NOT NULL;
CREATE UNIQUE INDEX redemptions_use_request_no ON redemptions(use_request_no)
    WHERE use_request_no IS NOT NULL;
CREATE UNIQUE INDEX redemptions_return_request_no ON redemptions(return_request_no)
    WHERE return_request_no IS NOT NULL;
CREATE INDEX redemptions_pending ON redemptions(id, state, unconfirmed, api, next_attempt_at, scanned_at)
    WHERE state = 'queued' OR (state = 'cancelled' AND unconfirmed = 1);
CREATE INDEX redemptions_voids ON redemptions(next_void_at) WHERE void_state = 'pending';
CREATE INDEX redemptions_order ON redemptions(order_id) WHERE order_id IS NOT NULL;
CREATE INDEX redemptions_claim_dirty ON redemptions(id) WHERE claim_dirty = 1;
CREATE INDEX redemptions_held ON redemptions(hold_until) WHERE state = 'held';
CREATE TRIGGER claims_follow AFTER UPDATE OF state ON redemptions
    WHEN OLD.state IS NOT NEW.state AND NEW.claim_key IS NOT NULL
        AND NEW.claim_synced IS NOT 'lost'
BEGIN
    UPDATE redemptions SET claim_dirty = 1 WHERE id = NEW.id;
END;
CREATE TRIGGER events_new AFTER INSERT ON redemptions
    WHEN (SELECT publishing FROM chain_state WHERE id = 1)
BEGIN
    DELETE FROM event_outbox WHERE row_id = NEW.id;
    INSERT INTO event_outbox (row_id, version) VALUES (NEW.id, NEW.version);
END;
CREATE TRIGGER events_change AFTER UPDATE OF state, reason, scans, redeemed_at, resolution,
    order_id, amount, title, value, void_state, guard, transaction_id, out_trade_no
    ON redemptions
    WHEN OLD.state IS NOT NEW.state OR OLD.reason IS NOT NEW.reason
        OR OLD.scans IS NOT NEW.scans OR OLD.redeemed_at IS NOT NEW.redeemed_at
        OR OLD.resolution IS NOT NEW.resolution OR OLD.order_id IS NOT NEW.order_id
        OR OLD.amount IS NOT NEW.amount OR OLD.title IS NOT NEW.title
        OR OLD.value IS NOT NEW.value OR OLD.void_state IS NOT NEW.void_state
        OR OLD.guard IS NOT NEW.guard OR OLD.transaction_id IS NOT NEW.transaction_id
        OR OLD.out_trade_no IS NOT NEW.out_trade_no
BEGIN
    UPDATE redemptions SET version = OLD.version + 1 WHERE id = NEW.id;
    DELETE FROM event_outbox WHERE row_id = NEW.id
        AND (SELECT publishing FROM chain_state WHERE id = 1);
    INSERT INTO event_outbox (row_id, version) SELECT NEW.id, OLD.version + 1
        WHERE (SELECT publishing FROM chain_state WHERE id = 1);
END;
"#,
    // 13: a new row's trigger exists only on a till that publishes: invoking a trigger costs
    // every insert, even one whose WHEN says no. `events::set_publishing` creates and drops it
    // from here on; this migration leaves it as `chain_state` says (`migrate`).
    r#"
DROP TRIGGER events_new;
"#,
];

pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the ledger {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot create or protect the ledger file {path} (mode 0600): {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the ledger's folder {path}: {source}")]
    Folder {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the ledger {path} has schema version {found}, newer than this redeemd understands ({SCHEMA_VERSION}); upgrade redeemd"
    )]
    TooNew { path: String, found: i64 },
    /// A file at the ledger's path that is not a ledger: only a missing file becomes a new
    /// one, so that history and duplicate detection are never silently started over.
    #[error(
        "{path} is not a redeemd ledger ({what}); redeemd will not start a new ledger over it. If it is the ledger, restore the newest backup (made by `redeemd backup --config FILE DEST`) to {path}; if the path is wrong, fix `database` in the config; to really start with an empty ledger, move the file away: mv {path} {path}.old"
    )]
    NotALedger { path: String, what: String },
    #[error(
        "the ledger {path} is damaged ({detail}); redeemd will not write to it. Keep it for inspection: mv {path} {path}.damaged; then restore the newest backup (made by `redeemd backup --config FILE DEST`) to {path}, or start with an empty ledger"
    )]
    Corrupt { path: String, detail: String },
}

/// `PRAGMA quick_check`: `Ok` when SQLite finds the file sound.
pub fn quick_check(conn: &Connection) -> Result<(), String> {
    let mut stmt = conn
        .prepare("PRAGMA quick_check")
        .map_err(|e| e.to_string())?;
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .map_err(|e| e.to_string())?
        .collect::<rusqlite::Result<_>>()
        .map_err(|e| e.to_string())?;
    if rows.len() == 1 && rows[0] == "ok" {
        Ok(())
    } else {
        Err(rows.join("; "))
    }
}

/// The page size of a new ledger. Half SQLite's default: every commit writes whole pages
/// to the WAL, and with the few pages a scan or a try touches, the fsync that follows
/// (what the cashier waits for) costs about as much per byte as per call on the disks
/// measured. 2 KiB still holds several rows a page. Ledgers created before keep theirs.
pub const PAGE_SIZE: i64 = 2048;

/// Opens (creating if needed) the ledger for writing, with the durability pragmas, and
/// brings its schema up to date.
pub fn open_rw(path: &Path) -> Result<Connection, OpenError> {
    let p = path.display().to_string();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| OpenError::Folder {
            path: dir.display().to_string(),
            source,
        })?;
    }
    let existed = path.exists();
    private_files(path, existed).map_err(|source| OpenError::File {
        path: p.clone(),
        source,
    })?;
    let opened = open_created(path, &p, existed);
    // A new file left empty by a failed start would be refused as "not a ledger" next time.
    if opened.is_err() && !existed && std::fs::metadata(path).is_ok_and(|m| m.len() == 0) {
        let _ = std::fs::remove_file(path);
    }
    opened
}

/// [`open_rw`] once the file exists (`existed`: it did before this start).
fn open_created(path: &Path, p: &str, existed: bool) -> Result<Connection, OpenError> {
    let wrap = |source| classify(p, source);
    let p = p.to_string();
    let mut conn = Connection::open(path).map_err(wrap)?;
    let corrupt = |detail: String| OpenError::Corrupt {
        path: p.clone(),
        detail,
    };
    if existed {
        if let Some(what) = not_a_ledger(path, &conn) {
            return Err(OpenError::NotALedger { path: p, what });
        }
        quick_check(&conn).map_err(corrupt)?;
    }
    if !existed {
        // Only a new file takes it: in WAL mode the page size of a database is fixed.
        conn.pragma_update(None, "page_size", PAGE_SIZE)
            .map_err(wrap)?;
    }
    configure(&conn).map_err(wrap)?;
    // WAL: readers (`redeemd log`, backups) never block the writer. FULL: a commit is on disk
    // before the till is told anything.
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(wrap)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(wrap)?;
    let page_size: i64 = conn
        .pragma_query_value(None, "page_size", |r| r.get(0))
        .map_err(wrap)?;
    if let Err(e) = checkpoint::make_room(path, page_size) {
        tracing::warn!(event = "ledger_wal_room_failed", error = %e, "could not make room for the ledger's WAL; it grows as commits need instead, each growing commit somewhat slower");
    }
    // Room for every statement the writer repeats (store.rs runs them through the cache).
    conn.set_prepared_statement_cache_capacity(64);
    migrate(&mut conn).map_err(|e| match e {
        MigrateError::Sqlite(source) => OpenError::Sqlite {
            path: p.clone(),
            source,
        },
        MigrateError::TooNew(found) => OpenError::TooNew {
            path: p.clone(),
            found,
        },
    })?;
    Ok(conn)
}

/// The ledger holds live codes: its file is 0600 whatever the umask (a new one is created
/// so before SQLite opens it, and SQLite gives the WAL and shared-memory files the
/// database's mode), and an existing one, or its WAL and shared-memory files, readable by
/// others is made so.
fn private_files(path: &Path, existed: bool) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if !existed {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        return Ok(());
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut f = path.as_os_str().to_owned();
        f.push(suffix);
        let f = std::path::PathBuf::from(f);
        if let Ok(meta) = std::fs::metadata(&f)
            && meta.permissions().mode() & 0o077 != 0
        {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

/// Why an existing file is not a ledger, if it is not: empty (0 bytes), or an SQLite
/// database this schema never touched (no `user_version`) that holds tables of its own.
pub fn not_a_ledger(path: &Path, conn: &Connection) -> Option<String> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() == 0) {
        return Some("the file is empty".into());
    }
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .ok()?;
    if version != 0 {
        return None;
    }
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .ok()?;
    (tables > 0).then(|| "an SQLite database of something else".into())
}

/// Opens the ledger read-only, for reports while the daemon runs.
pub fn open_ro(path: &Path) -> Result<Connection, OpenError> {
    let p = path.display().to_string();
    let wrap = |source| classify(&p, source);
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(wrap)?;
    configure(&conn).map_err(wrap)?;
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(wrap)?;
    if found > SCHEMA_VERSION {
        return Err(OpenError::TooNew { path: p, found });
    }
    Ok(conn)
}

/// A file that is not (or no longer) a sound SQLite database is "damaged", with the way out;
/// anything else is reported as SQLite said it.
fn classify(path: &str, source: rusqlite::Error) -> OpenError {
    use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
    match source.sqlite_error_code() {
        Some(NotADatabase | DatabaseCorrupt) => OpenError::Corrupt {
            path: path.to_string(),
            detail: source.to_string(),
        },
        _ => OpenError::Sqlite {
            path: path.to_string(),
            source,
        },
    }
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

enum MigrateError {
    Sqlite(rusqlite::Error),
    TooNew(i64),
}

/// [`migrate`], for tests that build a ledger as an older version left it.
#[cfg(test)]
pub(crate) fn migrate_for_tests(conn: &mut Connection) {
    if migrate(conn).is_err() {
        panic!("migrating a test ledger");
    }
}

fn migrate(conn: &mut Connection) -> Result<(), MigrateError> {
    // Rebuilding a table (migration 7) drops the one the other tables' foreign keys name;
    // SQLite's documented way is with the checks off, and a check of every key before the
    // commit. The pragma does nothing inside a transaction, so it is set around it.
    conn.pragma_update(None, "foreign_keys", "OFF")
        .map_err(MigrateError::Sqlite)?;
    let migrated = migrate_in_transaction(conn);
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(MigrateError::Sqlite)?;
    migrated
}

fn migrate_in_transaction(conn: &mut Connection) -> Result<(), MigrateError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(MigrateError::Sqlite)?;
    let found: i64 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(MigrateError::Sqlite)?;
    if found > SCHEMA_VERSION {
        return Err(MigrateError::TooNew(found));
    }
    for sql in &MIGRATIONS[found as usize..] {
        tx.execute_batch(sql).map_err(MigrateError::Sqlite)?;
    }
    if found < SCHEMA_VERSION {
        super::events::follow_inserts_as_set(&tx).map_err(MigrateError::Sqlite)?;
    }
    let broken: Option<String> = tx
        .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
        .optional()
        .map_err(MigrateError::Sqlite)?;
    if let Some(table) = broken {
        return Err(MigrateError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY),
            Some(format!("migration left a broken foreign key in {table}")),
        )));
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(MigrateError::Sqlite)?;
    tx.commit().map_err(MigrateError::Sqlite)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Migration 13 keeps a new row's trigger only on a ledger that publishes, and a row
    /// inserted after it reaches the outbox exactly then.
    #[test]
    fn migration_13_keeps_the_new_row_trigger_as_chain_state_says() {
        for publishing in [false, true] {
            let mut conn = Connection::open_in_memory().unwrap();
            for sql in &MIGRATIONS[..12] {
                conn.execute_batch(sql).unwrap();
            }
            conn.execute_batch("PRAGMA user_version = 12").unwrap();
            conn.execute("UPDATE chain_state SET publishing = ?1", [publishing])
                .unwrap();
            migrate(&mut conn).map_err(|_| "migrating").unwrap();
            assert_eq!(crate::ledger::events::follows_inserts(&conn), publishing);
            conn.execute(
                "INSERT INTO redemptions (code, api, state, scanner, till, scanned_at, updated_at) \
                 VALUES ('C1234567890', 'card', 'queued', 's', 't', 1, 1)",
                [],
            )
            .unwrap();
            let outbox: i64 = conn
                .query_row("SELECT count(*) FROM event_outbox", [], |r| r.get(0))
                .unwrap();
            assert_eq!(outbox, i64::from(publishing), "publishing: {publishing}");
        }
    }

    /// Migration 7 rebuilds the table (the `returned` state): every row, its scans and its
    /// attempts survive, with their ids, and the new state is accepted.
    #[test]
    fn migration_7_keeps_rows_and_their_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v6.db");
        let conn = Connection::open(&path).unwrap();
        for sql in &MIGRATIONS[..6] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "PRAGMA user_version = 6;
             INSERT INTO redemptions (id, code, api, state, scanner, till, scanned_at, updated_at, stock_id)
                 VALUES (7, 'BF0000000007', 'coupon', 'redeemed', 's', 't', 10, 10, '1212');
             INSERT INTO scans (redemption_id, scanner, scanned_at) VALUES (7, 's', 20);
             INSERT INTO attempts (redemption_id, call, started_at) VALUES (7, 'coupons/use', 10);",
        )
        .unwrap();
        drop(conn);
        let conn = open_rw(&path).unwrap();
        let (code, stock): (String, String) = conn
            .query_row(
                "SELECT code, stock_id FROM redemptions WHERE id = 7",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((code.as_str(), stock.as_str()), ("BF0000000007", "1212"));
        let history: i64 = conn
            .query_row(
                "SELECT (SELECT count(*) FROM scans WHERE redemption_id = 7) + \
                 (SELECT count(*) FROM attempts WHERE redemption_id = 7)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(history, 2);
        conn.execute("UPDATE redemptions SET state = 'returned' WHERE id = 7", [])
            .unwrap();
        let fk: bool = conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .unwrap();
        assert!(fk, "foreign keys are on again after the migration");
    }

    /// Migration 12 rebuilds the table for product coupons: rows keep their columns and
    /// version; a held product coupon and its order can be written; its order's arrival
    /// changes the row's version (the chain hears of it); unknown states are still refused.
    #[test]
    fn migration_12_keeps_rows_and_takes_held_product_coupons() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v11.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "foreign_keys", "OFF").unwrap();
        for sql in &MIGRATIONS[..11] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "PRAGMA user_version = 11;
             INSERT INTO redemptions (id, code, api, state, scanner, till, scanned_at, updated_at,
                 past_sales, claim_key, order_id)
                 VALUES (4, 'BF0000000004', 'coupon', 'redeemed', 's', 't', 10, 10,
                 'order O-0; voided', 'k4', 'O-1');",
        )
        .unwrap();
        drop(conn);
        let conn = open_rw(&path).unwrap();
        let kept: (String, String, String, i64) = conn
            .query_row(
                "SELECT state, past_sales, order_id, version FROM redemptions WHERE id = 4",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(
            kept,
            (
                "redeemed".into(),
                "order O-0; voided".into(),
                "O-1".into(),
                1
            )
        );
        conn.execute(
            "INSERT INTO redemptions (id, code, api, state, scanner, till, scanned_at, updated_at, \
             openid, stock_id, product_coupon_id, coupon_appid, hold_until) \
             VALUES (5, 'PC0000000005', 'product_coupon', 'held', 's', 't', 20, 20, \
             'oUser', '1000000013001', '1000000013', 'wx', 1800020)",
            [],
        )
        .unwrap();
        conn.execute(
            "UPDATE redemptions SET transaction_id = '4200000000123456789123456789' WHERE id = 5",
            [],
        )
        .unwrap();
        let version: i64 = conn
            .query_row("SELECT version FROM redemptions WHERE id = 5", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(
            version, 2,
            "the order's arrival is a change the chain hears of"
        );
        assert!(
            conn.execute(
                "INSERT INTO redemptions (code, api, state, scanner, till, scanned_at, updated_at) \
                 VALUES ('X', 'product_coupon', 'paused', 's', 't', 1, 1)",
                [],
            )
            .is_err(),
            "a state the ledger does not know is refused"
        );
    }

    /// Migration 11 rebuilds the table: every row keeps its columns, its history and its
    /// outbox entry; a bad state is still refused; and writing a row builds no temporary
    /// b-tree any more (the CHECKs' `IN` lists did, three per row).
    #[test]
    fn migration_11_keeps_rows_and_writes_a_row_without_temporary_tables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v10.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "foreign_keys", "OFF").unwrap();
        for sql in &MIGRATIONS[..10] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "PRAGMA user_version = 10;
             INSERT INTO redemptions (id, code, api, state, scanner, till, scanned_at, updated_at,
                 guard, void_state, past_sales, claim_key)
                 VALUES (3, 'BF0000000003', 'coupon', 'returned', 's', 't', 10, 10,
                 'claimed', 'done', 'order O-1; voided', 'k3');
             UPDATE redemptions SET reason = 'r' WHERE id = 3;
             INSERT INTO attempts (redemption_id, call, started_at) VALUES (3, 'coupons/use', 10);",
        )
        .unwrap();
        drop(conn);
        let conn = open_rw(&path).unwrap();
        let row: (String, String, String, String, i64, i64) = conn
            .query_row(
                "SELECT state, guard, void_state, past_sales, version, \
                 (SELECT count(*) FROM attempts WHERE redemption_id = 3) FROM redemptions WHERE id = 3",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
            )
            .unwrap();
        assert_eq!(
            row,
            (
                "returned".into(),
                "claimed".into(),
                "done".into(),
                "order O-1; voided".into(),
                2,
                1
            )
        );
        let outbox: i64 = conn
            .query_row(
                "SELECT version FROM event_outbox WHERE row_id = 3",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(outbox, 2);
        assert!(
            conn.execute(
                "INSERT INTO redemptions (code, api, state, scanner, till, scanned_at, updated_at) \
                 VALUES ('x', 'card', 'lost', 's', 't', 1, 1)",
                [],
            )
            .is_err(),
            "an unknown state is refused"
        );
        let insert = "INSERT INTO redemptions (code, api, state, scanner, till, scanned_at, \
             updated_at, guard, void_state) VALUES ('y', 'card', 'queued', 's', 't', 1, 1, \
             'claimed', 'pending')";
        let temporary: i64 = conn
            .prepare(&format!("EXPLAIN {insert}"))
            .unwrap()
            .query_map([], |r| r.get::<_, String>(1))
            .unwrap()
            .filter(|op| op.as_deref().is_ok_and(|o| o == "OpenEphemeral"))
            .count() as i64;
        assert_eq!(temporary, 0, "writing a row builds no temporary b-tree");
        conn.execute(insert, []).unwrap();
    }

    /// A ledger written by a version-5 redeemd keeps every later read and its answers.
    #[test]
    fn migration_6_keeps_later_reads_and_drops_first_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v5.db");
        let conn = Connection::open(&path).unwrap();
        for sql in &MIGRATIONS[..5] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "PRAGMA user_version = 5;
             INSERT INTO redemptions (id, code, api, state, scanner, till, scanned_at, updated_at)
                 VALUES (1, '100000000001', 'card', 'redeemed', 's', 't', 10, 10),
                        (2, '100000000002', 'card', 'queued', 's', 't', 20, 20);
             INSERT INTO scans (id, redemption_id, scanner, scanned_at, till_outcome)
                 VALUES (1, 1, 's', 10, 'redeemed'), (2, 2, 's', 20, 'accepted_offline'),
                        (3, 1, 's', 30, 'duplicate'), (4, 1, 's', 40, 'duplicate');",
        )
        .unwrap();
        drop(conn);
        let conn = open_rw(&path).unwrap();
        let left: Vec<(i64, i64, String)> = conn
            .prepare("SELECT id, redemption_id, till_outcome FROM scans ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            left,
            vec![(3, 1, "duplicate".into()), (4, 1, "duplicate".into())]
        );
        let indexes: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            indexes,
            [
                "attempts_redemption",
                "redemptions_claim_dirty",
                "redemptions_code",
                "redemptions_held",
                "redemptions_order",
                "redemptions_pending",
                "redemptions_return_request_no",
                "redemptions_use_request_no",
                "redemptions_voids"
            ]
        );
        let queued: i64 = conn
            .query_row(
                "SELECT count(*) FROM redemptions INDEXED BY redemptions_pending WHERE state = 'queued'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(queued, 1);
    }
}
