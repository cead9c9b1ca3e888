//! The store guard in the pipeline: the intake's claim before a code is sent or accepted,
//! and the follower that keeps each claim's value in step with its row (and cleans up after
//! a crash). The claim itself is `guard::bucket`; the ledger's side is `ledger::claims`.

use crate::clock::{SharedClock, hh_mm};
use crate::guard::bucket::{Claim, ClaimBucket};
use crate::guard::redeemed::Lookup;
use crate::ledger::claims::{self, Dirty, Unsettled};
use crate::ledger::note_file::{Note, NoteFile};
use crate::ledger::scans::ClaimTie;
use crate::ledger::{Ledger, LedgerError};
use crate::metrics::Metrics;
use crate::model::api::Api;
use crate::model::claim::{
    CLAIMED, ClaimValue, Foreign, RELEASED, abandoned_here_reason, follows, foreign,
    taken_twice_reason,
};
use crate::model::claim_key::CodeKey;
use crate::model::code::Code;
use crate::model::offline::Elsewhere;
use crate::model::product_coupon::Entry as ProductCouponEntry;
use crate::model::row::Guard;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

const HOUR_MS: i64 = 3_600_000;
/// How long a note no row took is kept (a day: it only matters until the next start).
const NOTES_KEPT_MS: i64 = 24 * HOUR_MS;

/// What telling the bucket a row's claim came to.
enum Written {
    /// Written (at this revision; `None`: nothing needed writing).
    At(Option<u64>),
    /// Another till holds the code (`None`: under a value redeemd cannot read).
    Held(Option<ClaimValue>),
    /// The store did not answer: the rest waits.
    NoAnswer,
}

/// How long the follower lets ties gather before it tells the store.
const FOLLOW_BATCH: Duration = Duration::from_millis(200);

/// What the intake does with a new code after asking the store.
#[derive(Debug)]
pub enum Claimed {
    /// Go on as a till alone would: this till holds the claim, or the store did not answer.
    Go(ClaimTie),
    /// Another till holds the code: never send it (`Elsewhere`: a duplicate; `Abandoned`:
    /// a person decides).
    Held {
        scan: String,
        guard: Guard,
        reason: String,
    },
}

pub struct StoreGuard {
    guard: ClaimBucket,
    key: CodeKey,
    till: String,
    online_wait_ms: i64,
    /// `[offline] require_store_guard`.
    pub require: bool,
    metrics: Arc<Metrics>,
    clock: SharedClock,
    /// Wakes the follower: a claim was tied to a new row.
    wake: Notify,
    /// Where claims are noted before they are sent (else: in the ledger).
    notes: Option<NoteFile>,
    /// The chain's record of redeemed codes, in the store's mirror of it.
    redeemed: Lookup,
    /// HQ's registry of product coupons, in the store's mirror of it.
    product_coupons: crate::guard::product_coupons::Lookup,
}

impl StoreGuard {
    pub fn new(
        guard: ClaimBucket,
        key: CodeKey,
        till: &str,
        online_wait: Duration,
        require: bool,
        metrics: Arc<Metrics>,
        clock: SharedClock,
    ) -> StoreGuard {
        metrics.enable_store_guard();
        let redeemed = Lookup::new(guard.client().clone(), guard.timeout());
        let product_coupons =
            crate::guard::product_coupons::Lookup::new(guard.client().clone(), guard.timeout());
        StoreGuard {
            redeemed,
            product_coupons,
            guard,
            key,
            till: till.to_string(),
            online_wait_ms: i64::try_from(online_wait.as_millis()).unwrap_or(i64::MAX),
            require,
            metrics,
            clock,
            wake: Notify::new(),
            notes: None,
        }
    }

    /// The store's NATS connection, for the chain's publisher.
    pub fn nats(&self) -> async_nats::Client {
        self.guard.client().clone()
    }

    /// Where the chain says `code` was redeemed, when it was at another store or till, or
    /// outside the tills, for an offline refusal. Unknown (the store did not answer within
    /// `claim_timeout`, or its mirror is not there) is `None`, logged.
    pub async fn redeemed_elsewhere(&self, code: &Code) -> Option<Elsewhere> {
        let key = self.key.claim_key(code);
        match self.redeemed.find(&key).await {
            Ok(Some(at)) if at.outside => {
                Some(Elsewhere::Outside(crate::clock::rfc3339_seconds(at.at)))
            }
            Ok(Some(at)) if at.store != self.guard.store() || at.till != self.till => {
                Some(Elsewhere::Till(format!(
                    "store {} (till {}, {})",
                    at.store,
                    at.till,
                    crate::clock::rfc3339_seconds(at.at)
                )))
            }
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(event = "chain_lookup_failed", code = %code.masked(), error = %e, "cannot ask the store's copy of the chain's redeemed codes; deciding without it");
                None
            }
        }
    }

    /// The registry's entry for `code` in the store's mirror, waiting up to `within` for it
    /// to arrive (an issue reaches the mirror moments after the customer can show the code).
    /// `Err`: the store did not answer, or the entry is unreadable.
    pub async fn product_coupon(
        &self,
        code: &Code,
        within: Duration,
    ) -> Result<Option<ProductCouponEntry>, String> {
        let key = self.key.claim_key(code);
        self.product_coupons.wait_for(&key, within).await
    }

    /// Notes claims in `notes` (a `write()`) rather than in the ledger (a commit).
    pub fn with_notes(mut self, notes: NoteFile) -> StoreGuard {
        self.notes = Some(notes);
        self
    }

    /// Claims `code` for this till: noted in the ledger first (committed, so a crash right
    /// after the claim leaves this till a trace of it), then sent, within `claim_timeout`.
    pub async fn claim(
        &self,
        ledger: &Ledger,
        code: &Code,
        api: Api,
        at: i64,
    ) -> Result<Claimed, LedgerError> {
        let key = self.key.claim_key(code);
        let scan = format!("{}-{at}-{:08x}", self.till, fastrand::u32(..));
        let note = Note {
            key: key.clone(),
            scan: scan.clone(),
            at,
        };
        let noted = match &self.notes {
            Some(f) => f
                .append(&note)
                .inspect_err(|e| tracing::warn!(event = "claim_note_failed", error = %e, "cannot write the claims file; the claim is noted in the ledger"))
                .is_ok(),
            None => false,
        };
        if !noted {
            ledger
                .call_sync_later(move |c| claims::begin(c, &note.key, &note.scan, note.at))
                .await?;
        }
        let value = ClaimValue {
            till: self.till.clone(),
            row: None,
            scan: scan.clone(),
            at,
            api: api.as_str().into(),
            state: CLAIMED.into(),
            last4: Some(last4(code)),
            abandoned_by: None,
        };
        let tie = |guard, revision| {
            Claimed::Go(ClaimTie {
                key: key.clone(),
                scan: scan.clone(),
                guard,
                revision,
            })
        };
        Ok(match self.guard.claim(&key, &value).await {
            Claim::Taken { revision } => {
                self.metrics.count_claim("taken");
                tie(Guard::Claimed, Some(revision))
            }
            Claim::Ours { revision } => {
                self.metrics.count_claim("ours");
                tie(Guard::Claimed, Some(revision))
            }
            Claim::Unavailable(error) => {
                self.metrics.count_claim("unavailable");
                tracing::warn!(event = "guard_unavailable", code = %code, error, "the store guard did not answer: this till goes on alone");
                tie(Guard::Unavailable, None)
            }
            Claim::Theirs(v) => {
                let (guard, reason) = match foreign(&v, self.clock.now_ms(), self.online_wait_ms) {
                    Foreign::Duplicate(r) => (Guard::Elsewhere, r),
                    Foreign::Abandoned(r) => {
                        // Rare; worth one more round trip before the answer.
                        if let Err(error) = self.guard.flag_abandoned(&key).await {
                            tracing::warn!(
                                event = "claim_not_flagged",
                                error,
                                "cannot tell the store that a claim looks abandoned"
                            );
                        }
                        (Guard::Abandoned, r)
                    }
                };
                self.metrics.count_claim(guard.as_str());
                tracing::info!(event = "claimed_elsewhere", code = %code, till = %v.till, "another till of the store holds this code");
                Claimed::Held {
                    scan,
                    guard,
                    reason,
                }
            }
        })
    }

    /// Tells the follower a claim was tied to a row.
    pub fn tied(&self) {
        self.wake.notify_one();
    }

    /// Cleans up after the last run, then keeps every claim's value in step with its row,
    /// until the process ends. `started`: claims noted before it are the last run's. Its
    /// writes do not wait for their fsync (off the cashier's path, and a write lost to a
    /// power cut is only done again: the bucket's revision tells).
    pub async fn follow(self: Arc<Self>, ledger: Ledger, started: i64) {
        let mut unsettled = match ledger.call(move |c| claims::unsettled(c, started)).await {
            Ok(u) => u,
            Err(e) => {
                tracing::error!(event = "guard_follow_failed", error = %e, "cannot read the claims left by the last run");
                Vec::new()
            }
        };
        let mut pruned_at = i64::MIN;
        loop {
            let now = self.clock.now_ms();
            if now.saturating_sub(pruned_at) > HOUR_MS {
                pruned_at = now;
                self.forget_notes_before(&ledger, now.saturating_sub(NOTES_KEPT_MS))
                    .await;
            }
            let mut reachable = true;
            if !unsettled.is_empty() {
                unsettled = self.recover(&ledger, unsettled).await;
                reachable = unsettled.is_empty();
            }
            if reachable {
                reachable = self.sync_dirty(&ledger).await;
            }
            // A store that does not answer is asked again soon; otherwise the next tie
            // wakes us, and a slow poll catches changes made outside the pipeline.
            let wait = if reachable {
                Duration::from_secs(5)
            } else {
                Duration::from_secs(1)
            };
            tokio::select! {
                // A moment's delay gathers the rows of a burst into one batch.
                _ = self.wake.notified() => tokio::time::sleep(FOLLOW_BATCH).await,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Forgets notes of claims older than `before` that no row took (a row that could not be
    /// written): by then the scan is long answered. Off the async threads: a file rewrite.
    async fn forget_notes_before(self: &Arc<Self>, ledger: &Ledger, before: i64) {
        if self.notes.is_some() {
            let me = self.clone();
            let compacted =
                tokio::task::spawn_blocking(move || me.notes.as_ref().map(|f| f.compact(before)))
                    .await;
            if let Ok(Some(Err(e))) = compacted {
                tracing::warn!(event = "guard_follow_failed", error = %e, "cannot compact the claims file");
            }
        }
        if let Err(e) = ledger
            .call_sync_later(move |c| claims::prune(c, before))
            .await
        {
            tracing::warn!(event = "guard_follow_failed", error = %e, "cannot forget old claim notes");
        }
    }

    /// Settles the claims the last run sent without recording their answer. Returns those
    /// still to do (the store did not answer).
    async fn recover(&self, ledger: &Ledger, left: Vec<Unsettled>) -> Vec<Unsettled> {
        let mut todo = Vec::new();
        for u in left {
            let revision = match self.guard.entry(&u.key).await {
                Err(_) => {
                    todo.push(u);
                    continue;
                }
                Ok(Some((Some(v), rev))) if v.till == self.till && v.scan == u.scan => {
                    if u.row.is_some() {
                        Some(rev)
                    } else {
                        // Ours, with no row behind it: nobody was answered for this scan.
                        // If another till found it meanwhile, its customer was turned
                        // away there: this till's manager hears of it too.
                        if let Some(finder) = &v.abandoned_by
                            && !self.report_abandoned(ledger, &u, &v, finder).await
                        {
                            todo.push(u);
                            continue;
                        }
                        let released = ClaimValue {
                            state: RELEASED.into(),
                            ..v
                        };
                        if self.guard.update(&u.key, &released, rev).await.is_err() {
                            todo.push(u);
                            continue;
                        }
                        tracing::info!(event = "claim_released", scan = %u.scan, "released a claim the last run made and never recorded");
                        None
                    }
                }
                // Not in the bucket, or not this scan's: nothing of ours to undo.
                Ok(_) => None,
            };
            let done = u.clone();
            if let Err(e) = ledger
                .call_sync_later(move |c| claims::settle(c, &done, revision))
                .await
            {
                tracing::error!(event = "guard_follow_failed", error = %e, "cannot record a settled claim");
                todo.push(u);
            }
        }
        todo
    }

    /// Records a review item for a claim of this till's that another till found abandoned.
    /// `false`: it could not be recorded (tried again).
    async fn report_abandoned(
        &self,
        ledger: &Ledger,
        u: &Unsettled,
        v: &ClaimValue,
        finder: &str,
    ) -> bool {
        let reason = abandoned_here_reason(v.at, finder);
        let shown = format!("****{}", v.last4.clone().unwrap_or_default());
        let (till, key, at, now) = (self.till.clone(), u.key.clone(), v.at, self.clock.now_ms());
        match ledger
            .call(move |c| claims::record_abandoned_here(c, &key, &shown, &reason, &till, at, now))
            .await
        {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(event = "guard_follow_failed", error = %e, "cannot record an abandoned claim");
                false
            }
        }
    }

    /// Brings the bucket up to date with every row that changed. `false`: the store did
    /// not answer; the rest waits.
    async fn sync_dirty(&self, ledger: &Ledger) -> bool {
        loop {
            let batch = match ledger.call_sync_later(|c| claims::dirty(c, 64)).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(event = "guard_follow_failed", error = %e, "cannot read the claims to follow");
                    return false;
                }
            };
            if batch.is_empty() {
                return true;
            }
            for d in batch {
                if !self.sync_one(ledger, d).await {
                    return false;
                }
            }
        }
    }

    /// Tells the bucket `value` for the row `d`, by compare-and-set.
    async fn write_claim(&self, d: &Dirty, value: &ClaimValue, want: &str) -> Written {
        let Some(rev) = d.revision else {
            // Never known to be ours, and to be released: nothing to tell the store.
            if want == RELEASED {
                return Written::At(None);
            }
            // Not known to hold it (the store did not answer at the scan): claim it now.
            return self.claim_anew(&d.key, value).await;
        };
        if let Ok(r) = self.guard.update(&d.key, value, rev).await {
            return Written::At(Some(r));
        }
        match self.guard.entry(&d.key).await {
            Err(_) => Written::NoAnswer,
            // Ours at another revision (a rescan wrote it): again with that one.
            Ok(Some((Some(v), rev))) if v.till == self.till => {
                match self.guard.update(&d.key, value, rev).await {
                    Ok(r) => Written::At(Some(r)),
                    Err(_) => Written::NoAnswer,
                }
            }
            Ok(Some((v, _))) => Written::Held(v),
            // Gone (older than claim_ttl): claimed anew.
            Ok(None) => self.claim_anew(&d.key, value).await,
        }
    }

    async fn claim_anew(&self, key: &str, value: &ClaimValue) -> Written {
        match self.guard.claim(key, value).await {
            Claim::Taken { revision } | Claim::Ours { revision } => Written::At(Some(revision)),
            Claim::Theirs(v) => Written::Held(Some(v)),
            Claim::Unavailable(_) => Written::NoAnswer,
        }
    }

    async fn sync_one(&self, ledger: &Ledger, d: Dirty) -> bool {
        let want = follows(d.row.state, d.sent);
        let value = ClaimValue {
            till: self.till.clone(),
            row: Some(d.row.id),
            scan: d.scan.clone(),
            at: d.row.scanned_at,
            api: d.row.api.unwrap_or_default().into(),
            state: want.into(),
            last4: Some(last4(&d.row.code)),
            abandoned_by: None,
        };
        let written = match self.write_claim(&d, &value, want).await {
            Written::NoAnswer => return false,
            Written::At(revision) => Ok(revision),
            Written::Held(v) => Err(v),
        };
        let id = d.row.id;
        let seen = d.row.state;
        let result = match written {
            Ok(revision) => {
                ledger
                    .call_sync_later(move |c| claims::synced(c, id, seen, revision, want))
                    .await
            }
            Err(holder) => {
                let note = match &holder {
                    Some(v) => format!(
                        "the store guard says till {} holds this code (since {}): both tills took it, one of them while it could not reach the store",
                        v.till,
                        hh_mm(v.at)
                    ),
                    None => "the store guard holds this code under a value redeemd cannot read"
                        .to_string(),
                };
                tracing::warn!(
                    event = "claim_lost",
                    id,
                    note,
                    "another till holds a code this till took"
                );
                let at = self.clock.now_ms();
                let twice = match &holder {
                    Some(v) => taken_twice_reason(&v.till, v.at),
                    None => taken_twice_reason("?", 0),
                };
                ledger
                    .call(move |c| claims::lost(c, id, &note, &twice, at))
                    .await
            }
        };
        if let Err(e) = result {
            tracing::error!(event = "guard_follow_failed", error = %e, "cannot record a claim's progress");
            return false;
        }
        true
    }
}

/// A code's last 4 characters, the part that may leave the till.
fn last4(code: &Code) -> String {
    let c = code.expose();
    let start = c.char_indices().rev().nth(3).map_or(0, |(i, _)| i);
    c[start..].to_string()
}
