//! From a scanner's frame to the till's answer.
//!
//! Two steps, so that scan order is kept while answers overlap: [`Intake::record`] commits the
//! scan (called in arrival order; nothing is acknowledged before this commit), and
//! [`Intake::answer`] waits up to `online_wait` for WeChat, then decides the offline answer.

use crate::clock::SharedClock;
use crate::config::Config;
use crate::config::route::DEFAULT_HOLD_TIMEOUT;
use crate::ledger::holds::{self, Hold};
use crate::ledger::scans::ClaimTie;
use crate::ledger::scans::NewScan;
use crate::ledger::scans::Refusal;
use crate::ledger::{Durable, Ledger, LedgerError};
use crate::ledger::{queries, scans};
use crate::mask::mask_raw;
use crate::model::api::Api;
use crate::model::code::Code;
use crate::model::frame::Frame;
use crate::model::offline::Limits;
use crate::model::product_coupon::{Entry, NotHeld, REGISTRY_UNAVAILABLE, hold_check};
use crate::model::request_no::new_use_request_no;
use crate::model::row::Guard;
use crate::model::row::HeldCoupon;
use crate::model::row::Row;
use crate::model::scan::Scan;
use crate::model::state::{State, TillOutcome};
use crate::outcome::{Bus, Outcome};
use crate::redeem::catalog::{Catalog, card_key, stock_key};
use crate::redeem::prefetch::Prefetcher;
use crate::redeem::store_guard::{Claimed, StoreGuard};
use crate::redeem::{NewRow, NewRows};
use crate::route::{self, Decision};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::Instant;

pub const CANNOT_RECORD: &str = "cannot record";

#[derive(Clone)]
pub struct Intake {
    pub ledger: Ledger,
    pub clock: SharedClock,
    pub config: Arc<Config>,
    /// The dispatcher's inbox for new codes, once committed.
    pub new_rows: NewRows,
    /// Sends card checks ahead (None without a card API).
    pub prefetch: Option<Prefetcher>,
    pub bus: Bus,
    /// What the route's card or stock is, for the row and the offline answer.
    pub catalog: Arc<Catalog>,
    /// The store-wide claim on every code (`[store]`), if the till has one.
    pub guard: Option<Arc<StoreGuard>>,
    /// Rows whose first read is waiting for its answer in this process. A rescan of an
    /// unanswered row is a duplicate while its first read still waits, and is answered
    /// anew once nobody waits for it (the process that recorded it died).
    waiting: Arc<Mutex<HashSet<i64>>>,
}

/// A recorded scan whose answer may still depend on WeChat.
pub enum Pending {
    Answered(Outcome),
    Waiting {
        row: Box<Row>,
        scan: Scan,
        /// The `scans` entry of a rescan answered anew, to note its answer on.
        rescan: Option<i64>,
        limits: Limits,
        settled: broadcast::Receiver<Row>,
        started: Instant,
        _waiter: Waiter,
    },
}

/// Marks a row as waited for, while it lives.
pub struct Waiter {
    id: i64,
    waiting: Arc<Mutex<HashSet<i64>>>,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if let Ok(mut w) = self.waiting.lock() {
            w.remove(&self.id);
        }
    }
}

impl Intake {
    pub fn new(
        ledger: Ledger,
        clock: SharedClock,
        config: Arc<Config>,
        new_rows: NewRows,
        prefetch: Option<Prefetcher>,
        bus: Bus,
        catalog: Arc<Catalog>,
    ) -> Intake {
        Intake {
            ledger,
            clock,
            config,
            new_rows,
            prefetch,
            bus,
            catalog,
            guard: None,
            waiting: Arc::default(),
        }
    }

    /// The intake with the store guard: every new code is claimed store-wide first.
    pub fn with_guard(mut self, guard: Option<Arc<StoreGuard>>) -> Intake {
        self.guard = guard;
        self
    }

    /// Registers a waiter for `id`; `None` if one waits already.
    fn wait_for(&self, id: i64) -> Option<Waiter> {
        let mut w = self.waiting.lock().ok()?;
        w.insert(id).then(|| Waiter {
            id,
            waiting: self.waiting.clone(),
        })
    }

    /// Commits the scan to the ledger. Call in arrival order.
    pub async fn record(&self, scan: Scan) -> Pending {
        let code = match &scan.frame {
            Frame::Unreadable { raw, reason } => {
                return self
                    .refuse(&scan, mask_raw(raw), reason.clone(), None)
                    .await;
            }
            Frame::Code { code, .. } => code.clone(),
        };
        let aim_id = match &scan.frame {
            Frame::Code { aim_id, .. } => aim_id.clone(),
            Frame::Unreadable { .. } => None,
        };
        let routed = match route::route(code.expose(), &self.config.routes) {
            Decision::Refuse(reason)
                if reason == route::REFUSED_PAYMENT_CODE
                    && self.config.http.forward_payment_codes =>
            {
                let mut answered = self
                    .refuse(&scan, code.masked(), reason.into(), aim_id)
                    .await;
                if let Pending::Answered(o) = &mut answered {
                    o.outcome = TillOutcome::PaymentCode;
                    o.payment_code = Some(code);
                }
                return answered;
            }
            Decision::Refuse(reason) if reason == route::REFUSED_PAYMENT_CODE => {
                return self
                    .refuse(&scan, code.masked(), reason.into(), aim_id)
                    .await;
            }
            // A code the chain's registry knows is a product coupon, whatever its pattern.
            Decision::Refuse(reason) => match self.registry_route(&code).await {
                Some(r) => r,
                None => {
                    return self
                        .refuse(&scan, code.masked(), reason.into(), aim_id)
                        .await;
                }
            },
            Decision::Route(r) if r.api == Api::ProductCoupon => r,
            Decision::Route(r) => self.registry_route(&r.code).await.unwrap_or(r),
        };
        // The answer's budget starts before the store is asked: claim + answer ≤ online_wait.
        let started = Instant::now();
        // Asked before anything goes to WeChat (the card check too) and before any answer.
        // A product coupon's registry entry is read while the claim is taken: both are a
        // trip to the store's server, and neither changes anything at WeChat.
        let claim = async {
            match &self.guard {
                None => None,
                Some(g) => Some(
                    g.claim(&self.ledger, &routed.code, routed.api, scan.at)
                        .await,
                ),
            }
        };
        let registry = async {
            match (&self.guard, routed.api) {
                (Some(g), Api::ProductCoupon) => Some(
                    g.product_coupon(&routed.code, self.config.offline.online_wait)
                        .await,
                ),
                _ => None,
            }
        };
        let (claimed, found) = tokio::join!(claim, registry);
        let tie = match claimed {
            None => None,
            Some(Err(e)) => return Pending::Answered(self.unrecorded(&scan, &e.to_string())),
            Some(Ok(Claimed::Go(tie))) => Some(tie),
            Some(Ok(Claimed::Held {
                scan: scan_id,
                guard,
                reason,
            })) => {
                return self
                    .held_elsewhere(&scan, &routed, aim_id, scan_id, guard, reason)
                    .await;
            }
        };
        if routed.api == Api::ProductCoupon {
            let found = found.unwrap_or_else(|| Err("the till has no [store] section".to_string()));
            return self.hold(&scan, &routed, aim_id, tie, found).await;
        }
        let guard_missing = tie.as_ref().is_some_and(|t| t.guard == Guard::Unavailable)
            && self.guard.as_ref().is_some_and(|g| g.require);
        let code = routed.code.clone();
        // Subscribe before the row exists, so its settlement cannot slip past us.
        let settled = self.bus.settled.subscribe();
        let till = self.config.till.clone();
        let scanner = scan.scanner.to_string();
        let at = scan.at;
        let r = routed.clone();
        let (use_request_no, use_time) = match routed.api {
            Api::Coupon => (
                Some(new_use_request_no(&till, at)),
                Some(crate::clock::rfc3339_seconds(at)),
            ),
            Api::Card | Api::ProductCoupon => (None, None),
        };
        // The card check changes nothing at WeChat: it goes out while the row is committed.
        let mut check = match (&self.prefetch, routed.api) {
            (Some(p), Api::Card) => p.start(routed.code.expose(), routed.card_id.as_deref()),
            _ => None,
        };
        // A stock is the route's own; a card is the route's when it names one (else the
        // code's card is known only once code/get answers).
        let key = match routed.api {
            Api::Coupon => routed.stock_id.as_deref().map(stock_key),
            Api::Card => routed.card_id.as_deref().map(card_key),
            Api::ProductCoupon => None,
        };
        let meta = key.and_then(|k| self.catalog.get(&k, at)).map(|e| e.meta);
        let sale = scan.sale.clone();
        let claim = tie.clone();
        let record = move |c: &mut rusqlite::Connection| {
            let s = NewScan {
                code: &code,
                routed: &r,
                scanner: &scanner,
                till: &till,
                aim_id: aim_id.as_deref(),
                at,
                use_request_no: use_request_no.as_deref(),
                use_time: use_time.as_deref(),
                sale: &sale,
                meta: meta.as_ref(),
            };
            match &claim {
                Some(tie) => scans::record_claimed(c, &s, tie),
                None => scans::record_scan(c, &s),
            }
        };
        // With a check out, the row's try follows at once: its consume intent's fsync can
        // cover the row too, and nobody is answered before that (see ledger::sync).
        let recorded = if check.is_some() {
            self.ledger
                .call_sync_with_next(record)
                .await
                .map(|(r, durable)| (r, Some(durable)))
        } else {
            self.ledger.call(record).await.map(|r| (r, None))
        };
        let (recorded, durable) = match recorded {
            Ok(r) => r,
            Err(e) => return Pending::Answered(self.unrecorded(&scan, &e.to_string())),
        };
        if let Some(g) = &self.guard {
            g.tied();
        }
        // From here on the check is recorded against the row, whoever ends up with it.
        if let Some(c) = check.as_mut() {
            c.belongs_to(recorded.row.id);
        }
        // A known code is a duplicate, unless its row starts over (refused before, or never
        // answered and nobody waits for it any more).
        let starts_over = recorded.rescan.is_none() || recorded.reopened;
        let mut waiter = if starts_over {
            self.wait_for(recorded.row.id)
        } else {
            None
        };
        // A queued row nobody waited for when the rescan read it may have been answered in
        // the meantime, by this process: its first read's answer let go of the row after
        // the rescan's read. That answer was noted on the row before it let go, so a fresh
        // read shows it: the rescan is then a duplicate of it. (A row the dispatcher settled
        // with nobody answered still starts over, and gets its answer.)
        let mut recorded = recorded;
        if recorded.rescan.is_some() && recorded.row.state == State::Queued && waiter.is_some() {
            let id = recorded.row.id;
            if let Ok(Some(now)) = self.ledger.call(move |c| queries::get(c, id)).await
                && now.till_outcome.is_some()
            {
                waiter = None;
                recorded.row = now;
            }
        }
        if let (Some(scan_id), None) = (recorded.rescan, &waiter) {
            if let Err(e) = Self::on_disk(durable).await {
                return Pending::Answered(self.unrecorded(&scan, &e.to_string()));
            }
            let row = recorded.row;
            self.note_rescan(scan_id, TillOutcome::Duplicate);
            let mut out = self.outcome(&row, TillOutcome::Duplicate, &scan);
            out.reason = Some(duplicate_reason(&row));
            return Pending::Answered(out);
        }
        // The dispatcher may be gone (shutting down): the row waits in the ledger then.
        let _ = self.new_rows.send(NewRow {
            row: recorded.row.clone(),
            check,
            again: false,
        });
        if let Err(e) = Self::on_disk(durable).await {
            return Pending::Answered(self.unrecorded(&scan, &e.to_string()));
        }
        let Some(waiter) = waiter else {
            // Cannot happen for a new row (its id is new); answer as the ledger has it.
            return Pending::Answered(self.outcome(&recorded.row, TillOutcome::Duplicate, &scan));
        };
        Pending::Waiting {
            row: Box::new(recorded.row),
            rescan: recorded.rescan,
            limits: Limits {
                guard_missing,
                ..self.config.offline_limits(routed.route)
            },
            scan,
            settled,
            started,
            _waiter: waiter,
        }
    }

    /// The first product-coupon route, for a code the chain's registry knows (asked once,
    /// without waiting: a till with no product-coupon route never asks).
    async fn registry_route(&self, code: &Code) -> Option<route::Routed> {
        let route = self
            .config
            .routes
            .iter()
            .position(|r| r.api == Api::ProductCoupon)?;
        let guard = self.guard.as_ref()?;
        match guard.product_coupon(code, Duration::ZERO).await {
            Ok(Some(_)) => Some(route::Routed {
                code: code.clone(),
                route,
                api: Api::ProductCoupon,
                card_id: None,
                stock_id: None,
            }),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(event = "registry_lookup_failed", code = %code.masked(), error = %e, "cannot ask the store's copy of the product-coupon registry; routing by pattern");
                None
            }
        }
    }

    /// A product coupon's scan, claimed for this till, with what the store's copy of HQ's
    /// registry says of it (`found`: it waited up to `online_wait` for a code it did not
    /// know yet): recorded held for the sale, or refused; nothing is sent to WeChat Pay
    /// before its order is attached.
    async fn hold(
        &self,
        scan: &Scan,
        routed: &route::Routed,
        aim_id: Option<String>,
        tie: Option<ClaimTie>,
        found: Result<Option<Entry>, String>,
    ) -> Pending {
        let now = self.clock.now_ms();
        let store_id = self
            .config
            .wechat_pay
            .as_ref()
            .and_then(|p| p.store_id.as_deref());
        let hold_timeout = self
            .config
            .routes
            .get(routed.route)
            .map_or(DEFAULT_HOLD_TIMEOUT, |r| r.hold_timeout);
        let hold_until = now + i64::try_from(hold_timeout.as_millis()).unwrap_or(i64::MAX / 2);
        let checked = match found {
            Err(e) => Err(format!("{REGISTRY_UNAVAILABLE}: {e}")),
            Ok(entry) => match hold_check(entry.as_ref(), now, store_id) {
                Err(not) => Err(not.reason()),
                Ok(()) => entry
                    .and_then(|e| held(e, hold_until))
                    .ok_or_else(|| NotHeld::NotEffective(INCOMPLETE_ENTRY.into()).reason()),
            },
        };
        let unsent = self.unsent(scan, routed, aim_id);
        let recorded = self
            .ledger
            .call(move |c| {
                let hold = match &checked {
                    Ok(h) => Hold::Held {
                        coupon: &h.coupon,
                        openid: &h.openid,
                        stock_id: &h.stock_id,
                        title: h.title.as_deref(),
                        value: h.value,
                    },
                    Err(reason) => Hold::Refused { reason },
                };
                holds::record_hold(c, &unsent.new_scan(), &hold, tie.as_ref())
            })
            .await;
        let recorded = match recorded {
            Ok(r) => r,
            Err(e) => return Pending::Answered(self.unrecorded(scan, &e.to_string())),
        };
        if let Some(g) = &self.guard {
            g.tied();
        }
        let row = recorded.row;
        let outcome = match (recorded.rescan, recorded.reopened) {
            (Some(_), false) => TillOutcome::Duplicate,
            _ => row.till_outcome.unwrap_or(TillOutcome::Rejected),
        };
        if let Some(scan_id) = recorded.rescan {
            self.note_rescan(scan_id, outcome);
        }
        let mut out = self.outcome(&row, outcome, scan);
        if outcome == TillOutcome::Duplicate {
            out.reason = Some(duplicate_reason(&row));
        }
        Pending::Answered(out)
    }

    /// Records a code another till of the store holds, and answers: `duplicate`, or
    /// `rejected` for a manager to look at (an abandoned claim). It is never sent.
    async fn held_elsewhere(
        &self,
        scan: &Scan,
        routed: &route::Routed,
        aim_id: Option<String>,
        scan_id: String,
        guard: Guard,
        reason: String,
    ) -> Pending {
        let unsent = self.unsent(scan, routed, aim_id);
        let why = reason.clone();
        let recorded = self
            .ledger
            .call(move |c| scans::record_elsewhere(c, &unsent.new_scan(), &scan_id, guard, &why))
            .await;
        let recorded = match recorded {
            Ok(r) => r,
            Err(e) => return Pending::Answered(self.unrecorded(scan, &e.to_string())),
        };
        let outcome = match guard {
            Guard::Abandoned if recorded.rescan.is_none() => TillOutcome::Rejected,
            _ => TillOutcome::Duplicate,
        };
        let mut out = self.outcome(&recorded.row, outcome, scan);
        out.reason_code = Some(crate::model::reason::code_of(&reason));
        out.reason = Some(reason);
        Pending::Answered(out)
    }

    /// What the ledger records of a scan that is not sent (held, or another till's).
    fn unsent(&self, scan: &Scan, routed: &route::Routed, aim_id: Option<String>) -> Unsent {
        Unsent {
            routed: routed.clone(),
            till: self.config.till.clone(),
            scanner: scan.scanner.to_string(),
            aim_id,
            at: scan.at,
            sale: scan.sale.clone(),
        }
    }

    /// Waits until a row committed before its fsync is on disk (no `Durable`: the commit
    /// itself was synced).
    async fn on_disk(durable: Option<Durable>) -> Result<(), LedgerError> {
        match durable {
            Some(d) => d.wait().await,
            None => Ok(()),
        }
    }

    /// The scan → answer trip's end: waits for the answer, logs it, hands it to whoever
    /// asked (the HTTP caller of a keyed scan) and to everyone listening (beeps, the event
    /// stream, the kiosk).
    pub async fn answer_and_tell(
        &self,
        pending: Pending,
        reply: Option<tokio::sync::oneshot::Sender<Outcome>>,
    ) {
        let outcome = self.answer(pending).await;
        outcome.log(&self.config.till);
        if let Some(r) = reply {
            let _ = r.send(outcome.clone());
        }
        let _ = self.bus.outcomes.send(outcome);
    }

    /// Waits for WeChat up to `online_wait`, then answers.
    pub async fn answer(&self, pending: Pending) -> Outcome {
        let (row, scan, rescan, limits, mut settled, started, _waiter) = match pending {
            Pending::Answered(o) => return o,
            Pending::Waiting {
                row,
                scan,
                rescan,
                limits,
                settled,
                started,
                _waiter,
            } => (row, scan, rescan, limits, settled, started, _waiter),
        };
        let id = row.id;
        let deadline = started + self.config.offline.online_wait;
        let early = loop {
            tokio::select! {
                got = settled.recv() => match got {
                    Ok(r) if r.id == id && r.state != State::Queued => break Some(r),
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        if let Ok(Some(r)) = self.ledger.call(move |c| queries::get(c, id)).await
                            && r.state != State::Queued
                        {
                            break Some(r);
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => break None,
                },
                _ = tokio::time::sleep_until(deadline) => break None,
            }
        };
        if let Some(r) = early
            && let Some(outcome) = crate::model::state::till_outcome_of(r.state)
        {
            self.note_answer(id, rescan, outcome);
            return self.outcome(&r, outcome, &scan);
        }
        // Before any offline answer: was the code redeemed at another store already?
        let limits = match &self.guard {
            Some(g) if limits.allowed => Limits {
                redeemed_elsewhere: g.redeemed_elsewhere(&row.code).await,
                ..limits
            },
            _ => limits,
        };
        let at = self.clock.now_ms();
        match self
            .ledger
            .call(move |c| scans::decide_offline(c, id, &limits, at))
            .await
        {
            Ok((outcome, row)) => {
                if let Some(scan_id) = rescan {
                    self.note_rescan(scan_id, outcome);
                }
                self.outcome(&row, outcome, &scan)
            }
            Err(e) => self.unrecorded(&scan, &e.to_string()),
        }
    }

    /// Notes what the till was told for a code's first read (and for the rescan that
    /// started its row over). The cashier is not kept waiting for this commit: the row's
    /// state already holds the truth, and this is the record of the answer shown.
    fn note_answer(&self, id: i64, rescan: Option<i64>, outcome: TillOutcome) {
        self.ledger.submit_retrying("till answer", move |c| {
            scans::note_till_outcome(c, id, outcome)
        });
        if let Some(scan_id) = rescan {
            self.note_rescan(scan_id, outcome);
        }
    }

    fn note_rescan(&self, scan_id: i64, outcome: TillOutcome) {
        self.ledger.submit_retrying("till answer", move |c| {
            scans::note_rescan_outcome(c, scan_id, outcome)
        });
    }

    /// Records a local refusal (the code is already masked) and answers `rejected`.
    async fn refuse(
        &self,
        scan: &Scan,
        shown_code: String,
        reason: String,
        aim_id: Option<String>,
    ) -> Pending {
        let till = self.config.till.clone();
        let scanner = scan.scanner.to_string();
        let at = scan.at;
        let shown = shown_code.clone();
        let why = reason.clone();
        let sale = scan.sale.clone();
        let res = self
            .ledger
            .call(move |c| {
                scans::record_refusal(
                    c,
                    &Refusal {
                        shown_code: &shown,
                        reason: &why,
                        scanner: &scanner,
                        till: &till,
                        aim_id: aim_id.as_deref(),
                        at,
                        sale: &sale,
                    },
                )
            })
            .await;
        Pending::Answered(match res {
            Ok(row) => self.outcome(&row, TillOutcome::Rejected, scan),
            // Nothing to lose here: it was going to be refused anyway; the answer says so.
            Err(e) => Outcome::without_row(
                Code::new(shown_code),
                TillOutcome::Rejected,
                Some(State::Rejected),
                format!("{reason} ({CANNOT_RECORD}: {e})"),
                &scan.scanner,
                scan.at,
                self.clock.now_ms(),
            ),
        })
    }

    /// The ledger could not record the scan: never accept what is not recorded.
    fn unrecorded(&self, scan: &Scan, error: &str) -> Outcome {
        tracing::error!(event = "cannot_record", scanner = %scan.scanner, error, "the ledger refused a write; the scan is refused");
        let code = match &scan.frame {
            Frame::Code { code, .. } => code.masked(),
            Frame::Unreadable { raw, .. } => mask_raw(raw),
        };
        Outcome::without_row(
            Code::new(code),
            TillOutcome::RefusedOffline,
            None,
            format!("{CANNOT_RECORD}: {error}"),
            &scan.scanner,
            scan.at,
            self.clock.now_ms(),
        )
    }

    fn outcome(&self, row: &Row, outcome: TillOutcome, scan: &Scan) -> Outcome {
        Outcome::from_row(row, outcome, &scan.scanner, scan.at, self.clock.now_ms())
    }
}

/// A scan that is recorded without a request to WeChat being fixed for it, owned so that it
/// can go to the ledger's thread.
struct Unsent {
    routed: route::Routed,
    till: String,
    scanner: String,
    aim_id: Option<String>,
    at: i64,
    sale: crate::model::scan::Sale,
}

impl Unsent {
    fn new_scan(&self) -> NewScan<'_> {
        NewScan {
            code: &self.routed.code,
            routed: &self.routed,
            scanner: &self.scanner,
            till: &self.till,
            aim_id: self.aim_id.as_deref(),
            at: self.at,
            use_request_no: None,
            use_time: None,
            sale: &self.sale,
            meta: None,
        }
    }
}

/// The registry's entry lacks what a use needs.
const INCOMPLETE_ENTRY: &str = "the chain's registry lacks its holder or its ids";

/// What a product coupon is held with.
struct Held {
    coupon: HeldCoupon,
    openid: String,
    stock_id: String,
    title: Option<String>,
    value: Option<i64>,
}

/// The hold of a registry entry that passed the checks; `None` when it lacks what the use
/// will need.
fn held(e: Entry, hold_until: i64) -> Option<Held> {
    Some(Held {
        coupon: HeldCoupon {
            product_coupon_id: e.product_coupon_id?,
            appid: e.details.appid?,
            hold_until: Some(hold_until),
        },
        openid: e.openid?,
        stock_id: e.stock_id?,
        title: e.details.title,
        value: e.details.value,
    })
}

/// What a cashier is told about a code that was scanned before.
pub fn duplicate_reason(row: &Row) -> String {
    let when = crate::clock::rfc3339(row.scanned_at);
    match row.state {
        State::Redeemed => format!("already redeemed here (first scanned {when})"),
        State::Queued => format!("already accepted here, awaiting WeChat (first scanned {when})"),
        State::Rejected => format!(
            "already scanned here and rejected: {}",
            row.reason.as_deref().unwrap_or("no reason recorded")
        ),
        State::Cancelled => format!("already scanned here and refused (first scanned {when})"),
        State::Review => {
            format!("already scanned here; waiting for a manager's review (first scanned {when})")
        }
        State::Returned => format!(
            "already redeemed here and given back when its sale was voided (first scanned {when})"
        ),
        State::Held => format!("already held here for a sale (first scanned {when})"),
    }
}
