//! The dispatcher: picks due rows from the ledger, oldest first, and runs a bounded number
//! of tries at once. It keeps nothing that matters in memory: which rows are due, and when,
//! is in the ledger; after a restart it simply starts again from there.

use crate::clock::Millis;
use crate::ledger::LedgerError;
use crate::ledger::tries;
use crate::model::api::Api;
use crate::model::row::Row;
use crate::model::state::{self, State};
use crate::outcome::{Bus, log_settled};
use crate::redeem::aimd::Aimd;
use crate::redeem::attempt::TryEnd;
use crate::redeem::card::try_card;
use crate::redeem::coupon::try_coupon;
use crate::redeem::prefetch::{Prefetch, Prefetcher};
use crate::redeem::product_coupon::{ProductCouponApi, try_product_coupon};
use crate::redeem::verdict::Health;
use crate::redeem::{Ctx, NewRow, NewRowsRx};
use crate::wechat::card::CardApi;
use crate::wechatpay::pay::PayApi;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Tries in flight at once per API: where AIMD starts, and its bounds.
pub const INITIAL_CONCURRENCY: usize = 4;
pub const MAX_CONCURRENCY: usize = 64;
/// How long shutdown waits for calls in flight before abandoning them (their rows stay
/// unconfirmed and are resolved after the restart).
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
/// How long the dispatcher waits after the ledger failed its query (a full disk, say).
const LEDGER_RETRY: Duration = Duration::from_secs(1);
/// Sleep at most this long even with nothing due, as a backstop against a missed wake-up.
const MAX_IDLE: Duration = Duration::from_secs(60);

pub struct Dispatcher {
    pub ctx: Ctx,
    pub card: Option<Arc<CardApi>>,
    pub coupon: Option<Arc<PayApi>>,
    pub product_coupon: Option<Arc<ProductCouponApi>>,
    pub max_age: Duration,
    pub bus: Bus,
    /// Sends the card checks ahead for the intake; told here whether the card API answers.
    pub prefetch: Option<Prefetcher>,
    /// How long after WeChat answers again this till waits before draining its backlog
    /// (derived from the till's name, so a store's tills spread out).
    pub drain_jitter: Duration,
}

struct ApiHealth {
    /// Until when, and why, the API is paused.
    paused: Option<(Instant, String)>,
    /// The last try did not get a healthy answer.
    failing: bool,
    /// How many tries may be in flight, adapting to WeChat's pushback.
    aimd: Aimd,
}

/// The tries in flight: which row and API each task works on (so even a panicked task frees
/// its slot), and the newest row one was started for.
struct InFlight {
    tasks: JoinSet<Result<TryEnd, LedgerError>>,
    rows: HashMap<tokio::task::Id, (i64, Api, Instant)>,
    /// Rows reach the dispatcher in id order, from the ledger and from the intake alike, so
    /// a new row at or below this one has been seen already (and its try may have ended):
    /// only the ledger's answer may start it again.
    newest: i64,
}

impl InFlight {
    fn busy(&self, api: Api) -> usize {
        self.rows.values().filter(|(_, a, _)| *a == api).count()
    }

    /// How many more tries `api` may have in flight now.
    fn free(&self, api: Api, h: &ApiHealth) -> usize {
        h.aimd.limit().saturating_sub(self.busy(api))
    }

    fn ids(&self) -> HashSet<i64> {
        self.rows.values().map(|(id, _, _)| *id).collect()
    }
}

impl Dispatcher {
    fn apis(&self) -> Vec<Api> {
        let mut v = Vec::new();
        if self.card.is_some() {
            v.push(Api::Card);
        }
        if self.coupon.is_some() {
            v.push(Api::Coupon);
        }
        if self.product_coupon.is_some() {
            v.push(Api::ProductCoupon);
        }
        v
    }

    /// Runs until `shutdown` turns true, then lets tries in flight finish (bounded).
    /// `new_rows` brings the rows of new codes as the intake commits them.
    pub async fn run(
        self,
        mut new_rows: NewRowsRx,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), LedgerError> {
        let mut flight = InFlight {
            tasks: JoinSet::new(),
            rows: HashMap::new(),
            newest: 0,
        };
        let mut health: HashMap<Api, ApiHealth> = self
            .apis()
            .into_iter()
            .map(|a| {
                (
                    a,
                    ApiHealth {
                        paused: None,
                        failing: false,
                        aimd: Aimd::new(INITIAL_CONCURRENCY, 1, MAX_CONCURRENCY),
                    },
                )
            })
            .collect();
        let max_age_ms = self.max_age.as_millis() as i64;
        // Whether to ask the ledger what is due (a turn) before waiting again, and when to
        // ask at the latest.
        let mut turn_needed = true;
        let mut wake_at = Instant::now();
        // The last turn filled every free slot, so more rows may be due.
        let mut more_due = false;
        tracing::info!(event = "dispatcher_started", "dispatcher running");

        loop {
            if *shutdown.borrow() {
                break;
            }
            if turn_needed {
                match self.turn(&mut health, &mut flight, max_age_ms).await {
                    Ok((at, full)) => (wake_at, more_due) = (at, full),
                    Err(LedgerError::Stopped) => return Err(LedgerError::Stopped),
                    Err(e) => {
                        // A full disk or a failed commit (which may have been another
                        // operation's: commits are shared) is not the end: wait, then ask again.
                        tracing::error!(event = "dispatcher_ledger_error", error = %e, "the ledger failed the dispatcher's query; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(LEDGER_RETRY) => {}
                            // A new scan was recorded: the ledger writes again.
                            Some(_) = new_rows.recv() => {}
                            _ = shutdown.changed() => {}
                        }
                        continue;
                    }
                }
            }
            turn_needed = true;
            tokio::select! {
                Some(new) = new_rows.recv() => {
                    // Nothing else changed: when the row could start at once, there is
                    // nothing to ask the ledger.
                    turn_needed = !self.start_new(new, &health, &mut flight);
                }
                Some(joined) = flight.tasks.join_next_with_id() => {
                    let task = match &joined {
                        Ok((task, _)) => *task,
                        Err(e) => e.id(),
                    };
                    let Some((id, api, started)) = flight.rows.remove(&task) else { continue };
                    match joined {
                        Ok((_, Ok(end))) => {
                            // A row that needs no more work frees a slot; the ledger need
                            // not be asked unless the last turn left due rows behind.
                            let settled = matches!(&end, TryEnd::Applied { row, .. } if !state::needs_work(row.snapshot()));
                            match self.after_try(api, started, end, &mut health).await {
                                Ok(fast_forwarded) => {
                                    turn_needed = !settled || more_due || fast_forwarded;
                                }
                                Err(e) => {
                                    tracing::error!(event = "dispatcher_ledger_error", error = %e, "the ledger failed a write after a try");
                                }
                            }
                        }
                        Ok((_, Err(LedgerError::Stopped))) => return Err(LedgerError::Stopped),
                        Ok((_, Err(e))) => {
                            // Like a crash of that try: what it did not commit did not
                            // happen, and the row is tried again as the ledger has it.
                            tracing::error!(event = "dispatcher_ledger_error", id, error = %e, "a try could not write to the ledger; the row will be tried again");
                        }
                        Err(e) => {
                            // The row stays as the ledger has it and is tried again.
                            tracing::error!(event = "try_panicked", id, error = %e, "a redemption try failed");
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake_at) => {}
                _ = shutdown.changed() => {}
            }
        }

        tracing::info!(
            event = "dispatcher_draining",
            in_flight = flight.tasks.len(),
            "letting calls in flight finish"
        );
        let drain = async {
            while let Some(joined) = flight.tasks.join_next_with_id().await {
                if let Ok((task, Ok(end))) = joined
                    && let Some((_, api, started)) = flight.rows.remove(&task)
                {
                    let _ = self.after_try(api, started, end, &mut health).await;
                }
            }
        };
        if tokio::time::timeout(DRAIN_DEADLINE, drain).await.is_err() {
            tracing::warn!(
                event = "drain_timeout",
                "calls still in flight after the drain deadline; their outcome is resolved at the next start"
            );
            flight.tasks.abort_all();
        }
        Ok(())
    }

    /// Resumes APIs whose pause is over, then asks the ledger, in one trip (it sits on the
    /// path of every answer), which rows passed max_age and which are due, and starts the
    /// due ones in the free slots. Returns when to look again at the latest, and whether
    /// the due rows filled every free slot (so more may be due).
    async fn turn(
        &self,
        health: &mut HashMap<Api, ApiHealth>,
        flight: &mut InFlight,
        max_age_ms: i64,
    ) -> Result<(Instant, bool), LedgerError> {
        let now = self.ctx.clock.now_ms();
        let active: Vec<Api> = health
            .iter_mut()
            .filter_map(|(api, h)| {
                if h.paused
                    .as_ref()
                    .is_some_and(|(until, _)| Instant::now() >= *until)
                {
                    tracing::info!(
                        event = "api_resumed",
                        api = api.as_str(),
                        "resuming dispatch"
                    );
                    h.paused = None;
                    self.ctx.metrics.set_quota_exhausted(api.as_str(), false);
                }
                h.paused.is_none().then_some(*api)
            })
            .collect();
        let slots: Vec<(Api, usize)> = active
            .iter()
            .filter_map(|api| Some((*api, flight.free(*api, health.get(api)?))))
            .collect();
        let free: Vec<(Api, usize)> = slots.iter().copied().filter(|(_, n)| *n > 0).collect();
        let exclude = flight.ids();
        let apis = active.clone();
        let turn = self
            .ctx
            .ledger
            .call(move |c| {
                let expired = tries::expire(c, now, max_age_ms)?;
                let mut due = Vec::new();
                for (api, free) in free {
                    due.extend(tries::due(c, now, free, &exclude, api)?);
                }
                Ok(Turn {
                    expired,
                    due,
                    next_due: tries::next_due_after(c, &apis, now)?,
                    next_expiry: tries::next_expiry_at(c, max_age_ms)?,
                })
            })
            .await?;
        for row in turn.expired {
            self.publish(row);
        }
        // An API whose free slots the due rows filled (or that had none) may have more.
        let full = slots
            .iter()
            .any(|(api, n)| turn.due.iter().filter(|r| r.api() == Some(*api)).count() >= *n);
        for row in turn.due {
            self.start(row, None, flight);
        }
        Ok((
            next_wake(now, [turn.next_due, turn.next_expiry], health),
            full,
        ))
    }

    /// A row the intake just committed: starts its try at once when its API is running and
    /// has a free slot (the cashier is waiting; older due rows were given the free slots at
    /// the last turn). Returns whether it started; if not, a turn finds it in the ledger (and
    /// its check, dropped, is recorded on its own).
    fn start_new(
        &self,
        new: NewRow,
        health: &HashMap<Api, ApiHealth>,
        flight: &mut InFlight,
    ) -> bool {
        let NewRow { row, check, again } = new;
        let Some(api) = row.api() else { return false };
        let free = health
            .get(&api)
            .is_some_and(|h| h.paused.is_none() && flight.free(api, h) > 0);
        // A row due again is started unless a try of it is in flight (a try that ended
        // meanwhile finds it no longer queued, and sends nothing).
        let seen = if again {
            flight.ids().contains(&row.id)
        } else {
            row.id <= flight.newest
        };
        if !free || seen || row.state != State::Queued {
            return false;
        }
        self.start(row, check, flight);
        true
    }

    /// Starts a try for `row` as a task of its own (with the check sent ahead, if any).
    fn start(&self, row: Row, check: Option<Prefetch>, flight: &mut InFlight) {
        let Some(api) = row.api() else { return };
        let id = row.id;
        let ctx = self.ctx.clone();
        let card = self.card.clone();
        let coupon = self.coupon.clone();
        let product_coupon = self.product_coupon.clone();
        let bus = self.bus.clone();
        let handle = flight.tasks.spawn(async move {
            let end = match api {
                Api::Card => match card {
                    Some(card) => try_card(&ctx, &card, row, check).await,
                    None => Ok(TryEnd::Dropped),
                },
                Api::Coupon => match coupon {
                    Some(pay) => try_coupon(&ctx, &pay, row).await,
                    None => Ok(TryEnd::Dropped),
                },
                Api::ProductCoupon => match product_coupon {
                    Some(pc) => try_product_coupon(&ctx, &pc, row).await,
                    None => Ok(TryEnd::Dropped),
                },
            };
            // Answer a waiting till now, not after the dispatcher's next turn.
            if let Ok(TryEnd::Applied {
                row, changed: true, ..
            }) = &end
            {
                publish(&bus, row);
            }
            end
        });
        flight.rows.insert(handle.id(), (id, api, Instant::now()));
        flight.newest = flight.newest.max(id);
    }

    /// Feeds a try's end to the API's health and AIMD. Returns whether it made the backlog
    /// due (WeChat answers again), which the dispatcher must then ask the ledger about.
    async fn after_try(
        &self,
        api: Api,
        started: Instant,
        end: TryEnd,
        health: &mut HashMap<Api, ApiHealth>,
    ) -> Result<bool, LedgerError> {
        let Some(h) = health.get_mut(&api) else {
            return Ok(false);
        };
        let mut fast_forwarded = false;
        match end {
            // The task published the row itself, if it changed.
            // A try that made no call says nothing about the API.
            TryEnd::Applied { health: None, .. } => {}
            TryEnd::Applied {
                health: Some(health),
                ..
            } => {
                // tokio's Instant: the same clock as std's, and paused time in tests.
                let now = Instant::now().into_std();
                match health {
                    Health::Congested => h.aimd.on_congestion(started.into_std(), now),
                    Health::Healthy => h.aimd.on_success(started.into_std(), now),
                    Health::Down => {}
                }
                let healthy = health == Health::Healthy;
                self.ctx
                    .metrics
                    .set_concurrency(api.as_str(), h.aimd.limit());
                if healthy && h.failing {
                    let at = self.ctx.clock.now_ms() + self.drain_jitter.as_millis() as i64;
                    let n = self
                        .ctx
                        .ledger
                        .call(move |c| tries::fast_forward(c, api, at))
                        .await?;
                    fast_forwarded = true;
                    tracing::info!(
                        event = "api_reachable",
                        api = api.as_str(),
                        backlog = n,
                        "WeChat answers again; draining the backlog"
                    );
                }
                h.failing = !healthy;
                self.ctx.metrics.set_api_healthy(api.as_str(), healthy);
                self.card_answering(api, healthy);
            }
            TryEnd::Pause {
                retry_in,
                reason,
                quota,
            } => {
                if quota {
                    self.ctx.metrics.set_quota_exhausted(api.as_str(), true);
                }
                if h.paused.is_none() {
                    tracing::error!(event = "api_paused", api = api.as_str(), retry_in_s = retry_in.as_secs(), reason = %reason, "dispatch paused; scans stay queued");
                }
                h.paused = Some((Instant::now() + retry_in, reason));
                self.card_answering(api, false);
            }
            TryEnd::Dropped => {}
        }
        Ok(fast_forwarded)
    }

    /// Tells the intake's card checks whether the card API answers (nothing for coupons).
    fn card_answering(&self, api: Api, yes: bool) {
        if let (Api::Card, Some(p)) = (api, &self.prefetch) {
            p.set_answering(yes);
        }
    }

    fn publish(&self, row: Row) {
        publish(&self.bus, &row);
    }
}

/// What one turn of the dispatcher learns from the ledger.
struct Turn {
    /// Rows that just passed max_age (moved to review).
    expired: Vec<Row>,
    /// Rows to try now.
    due: Vec<Row>,
    next_due: Option<Millis>,
    next_expiry: Option<Millis>,
}

/// The earliest of: a row coming due, a row passing max_age, a pause ending.
fn next_wake(now: Millis, times: [Option<Millis>; 2], health: &HashMap<Api, ApiHealth>) -> Instant {
    let base = Instant::now();
    let mut at = base + MAX_IDLE;
    for t in times.into_iter().flatten() {
        at = at.min(base + Duration::from_millis((t - now).max(0) as u64));
    }
    for h in health.values() {
        if let Some((until, _)) = &h.paused {
            at = at.min(*until);
        }
    }
    at
}

fn publish(bus: &Bus, row: &Row) {
    log_settled(row);
    let _ = bus.settled.send(row.clone());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::ledger::Ledger;
    use crate::ledger::queries;
    use crate::ledger::scans::{self, NewScan};
    use crate::redeem::NewRows;
    use crate::route::Routed;
    use crate::sim::card::CardSim;
    use crate::sim::card::SimCode;
    use crate::sim::http::SimServer;
    use crate::wechat::token::{TokenManager, TokenSource};
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use tokio::sync::broadcast;
    use tokio::task::JoinHandle;

    /// Records a first scan of `code` (a card code), as the intake does.
    async fn record(ledger: &Ledger, code: &'static str) -> Row {
        ledger
            .call(move |c| {
                let routed = Routed {
                    code: code.into(),
                    route: 0,
                    api: Api::Card,
                    card_id: None,
                    stock_id: None,
                };
                scans::record_scan(
                    c,
                    &NewScan {
                        code: &code.into(),
                        routed: &routed,
                        scanner: "s",
                        till: "t",
                        aim_id: None,
                        at: chrono::Utc::now().timestamp_millis(),
                        use_request_no: None,
                        use_time: None,
                        sale: &Default::default(),
                        meta: None,
                    },
                )
            })
            .await
            .unwrap()
            .row
    }

    /// A card API at `url` with the secret `s3cret`, written to `dir`.
    fn card_api(dir: &Path, url: &str) -> Arc<CardApi> {
        let secret = dir.join("secret");
        std::fs::write(&secret, "s3cret").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let http = reqwest::Client::new();
        let tokens = Arc::new(TokenManager::new(
            http.clone(),
            TokenSource::Stable {
                url: format!("{url}/cgi-bin/stable_token"),
            },
            "wx_test".into(),
            secret,
        ));
        Arc::new(CardApi::new(http, url, tokens))
    }

    /// A simulator that knows `code`, and a directory for the test's files.
    async fn sim_knowing(code: &str) -> (tempfile::TempDir, Arc<CardSim>, SimServer) {
        let dir = tempfile::tempdir().unwrap();
        let sim = CardSim::new("wx_test", "s3cret");
        let server = sim.start().await.unwrap();
        sim.add_code(code, SimCode::normal("pCARD"));
        (dir, sim, server)
    }

    /// A dispatcher for the card API alone, running on a task of its own as the daemon
    /// runs it (without checks ahead).
    struct Running {
        new_rows: NewRows,
        settled: broadcast::Receiver<Row>,
        stop: watch::Sender<bool>,
        task: JoinHandle<Result<(), LedgerError>>,
    }

    /// The real clock, shifted: a test can stand just before or after midnight in China.
    struct Shifted(i64);

    impl crate::clock::Clock for Shifted {
        fn now_ms(&self) -> Millis {
            chrono::Utc::now().timestamp_millis() + self.0
        }
    }

    /// A shift that puts the clock `ms` after the last midnight in China (UTC+8).
    fn after_midnight_in_china(ms: i64) -> Shifted {
        let now = chrono::Utc::now().timestamp_millis();
        let into_day = (now + 8 * 3_600_000).rem_euclid(86_400_000);
        Shifted(ms - into_day)
    }

    impl Running {
        fn start(ledger: &Ledger, card: Arc<CardApi>) -> Running {
            Self::start_with(ledger, card, Arc::new(SystemClock), Default::default())
        }

        fn start_with(
            ledger: &Ledger,
            card: Arc<CardApi>,
            clock: crate::clock::SharedClock,
            metrics: Arc<crate::metrics::Metrics>,
        ) -> Running {
            let bus = Bus::new();
            let settled = bus.settled.subscribe();
            let d = Dispatcher {
                ctx: Ctx {
                    ledger: ledger.clone(),
                    clock,
                    retry: Default::default(),
                    metrics,
                    catalog: Arc::new(crate::redeem::catalog::Catalog::in_memory()),
                    routes: Default::default(),
                },
                card: Some(card),
                coupon: None,
                product_coupon: None,
                // Longer than any clock shift of these tests: rows are recorded in real time.
                max_age: Duration::from_secs(3 * 86_400),
                bus,
                drain_jitter: Duration::ZERO,
                prefetch: None,
            };
            let (new_rows, new_rows_rx) = crate::redeem::new_rows();
            let (stop, stop_rx) = watch::channel(false);
            let task = tokio::spawn(d.run(new_rows_rx, stop_rx));
            Running {
                new_rows,
                settled,
                stop,
                task,
            }
        }

        /// Hands `row` over as the intake does for a new code.
        fn hand_over(&self, row: Row) {
            self.new_rows
                .send(NewRow {
                    row,
                    check: None,
                    again: false,
                })
                .unwrap();
        }

        async fn next_settled(&mut self) -> Row {
            self.settled.recv().await.unwrap()
        }

        async fn stop(self) {
            self.stop.send(true).unwrap();
            self.task.await.unwrap().unwrap();
        }
    }

    /// A row handed over by the intake starts at once; handed over again (a late or repeated
    /// message), it is not started a second time, in flight or after its try ended.
    #[tokio::test]
    async fn a_row_handed_over_twice_is_tried_once() {
        let code = "100000000017";
        let (dir, sim, server) = sim_knowing(code).await;
        let ledger = Ledger::open(&dir.path().join("l.db")).unwrap();
        let mut d = Running::start(&ledger, card_api(dir.path(), &server.url()));

        let row = record(&ledger, code).await;
        // Twice while the first try may be in flight, once after it ended.
        d.hand_over(row.clone());
        d.hand_over(row.clone());
        assert_eq!(d.next_settled().await.state, State::Redeemed);
        d.hand_over(row);
        // The dispatcher handles its inbox in order: once this later row has been tried,
        // the repeats before it have been dealt with.
        let marker = "100000000025";
        sim.add_code(marker, SimCode::normal("pCARD"));
        d.hand_over(record(&ledger, marker).await);
        assert_eq!(d.next_settled().await.code, marker);

        let calls = sim.calls_for(code);
        assert_eq!((calls.get, calls.consume), (1, 1), "one try: {calls:?}");
        d.stop().await;
    }

    /// A try's result is committed without fsync (the fsync follows). A power cut before it
    /// loses that last commit: what the disk keeps is the row with its consume sent and
    /// no answer. The next start resolves that from WeChat's side, without a second consume.
    #[tokio::test]
    async fn a_result_lost_to_a_power_cut_is_resolved_without_a_second_consume() {
        let code = "100000000033";
        let (dir, sim, server) = sim_knowing(code).await;
        let card = card_api(dir.path(), &server.url());

        let db = dir.path().join("l.db");
        let ledger = Ledger::open(&db).unwrap();
        let mut d = Running::start(&ledger, card.clone());
        let row = record(&ledger, code).await;
        let id = row.id;
        d.hand_over(row);
        assert_eq!(d.next_settled().await.state, State::Redeemed);
        d.stop().await;

        // The disk after the cut: the database file and the WAL without its last commit
        // (copied while the ledger is open: closing it would checkpoint the WAL away).
        let wal = std::fs::read(dir.path().join("l.db-wal")).unwrap();
        let ends = crate::ledger::durability_tests::commit_ends(&wal);
        assert!(ends.len() >= 2, "{ends:?}");
        let cut = dir.path().join("cut");
        std::fs::create_dir(&cut).unwrap();
        std::fs::copy(&db, cut.join("l.db")).unwrap();
        std::fs::write(cut.join("l.db-wal"), &wal[..ends[ends.len() - 2]]).unwrap();
        drop(ledger);

        let ledger = Ledger::open(&cut.join("l.db")).unwrap();
        let left = ledger
            .call(move |c| queries::get(c, id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (left.state, left.unconfirmed),
            (State::Queued, true),
            "the cut lost the result, and kept the consume's intent"
        );
        let mut d = Running::start(&ledger, card);
        let after = d.next_settled().await;
        assert_eq!((after.code.expose(), after.state), (code, State::Redeemed));
        let calls = sim.calls_for(code);
        assert_eq!(calls.consume, 1, "never consumed again: {calls:?}");
        assert_eq!(calls.get, 2, "the restart asked WeChat instead: {calls:?}");
        d.stop().await;
    }

    /// 45009 (the daily quota) pauses card calls until WeChat's daily reset, midnight in
    /// China: half a second before it, the row is redeemed once the reset has passed; just
    /// after one, nothing is sent for the day (and the gauge says so), though the row waits.
    #[tokio::test]
    async fn the_daily_quota_pauses_card_calls_until_the_reset() {
        use crate::sim::card::CardFaults;
        let code = "100000000041";
        let (dir, sim, server) = sim_knowing(code).await;
        let card = card_api(dir.path(), &server.url());
        let ledger = Ledger::open(&dir.path().join("l.db")).unwrap();

        sim.set_faults(CardFaults {
            quota: 1,
            ..CardFaults::default()
        });
        let metrics: Arc<crate::metrics::Metrics> = Default::default();
        let clock = Arc::new(after_midnight_in_china(86_400_000 - 500));
        let mut d = Running::start_with(&ledger, card.clone(), clock, metrics.clone());
        d.hand_over(record(&ledger, code).await);
        assert_eq!(d.next_settled().await.state, State::Redeemed);
        assert!(!metrics.quota_exhausted(), "resumed after the reset");
        // The refused check, then after the reset the check and the consume.
        let calls = sim.calls();
        assert_eq!((calls.get, calls.consume), (2, 1), "{calls:?}");
        d.stop().await;

        let late = "100000000058";
        sim.add_code(late, SimCode::normal("pCARD"));
        sim.set_faults(CardFaults {
            quota: 1,
            ..CardFaults::default()
        });
        let metrics: Arc<crate::metrics::Metrics> = Default::default();
        let clock = Arc::new(after_midnight_in_china(1000));
        let mut d = Running::start_with(&ledger, card, clock, metrics.clone());
        let before = sim.calls();
        d.hand_over(record(&ledger, late).await);
        let waited = tokio::time::timeout(Duration::from_secs(2), d.next_settled()).await;
        assert!(waited.is_err(), "a card call got through: {waited:?}");
        assert!(metrics.quota_exhausted());
        let after = sim.calls();
        assert_eq!(
            (after.get - before.get, after.consume - before.consume),
            (1, 0),
            "the refused check, and nothing more"
        );
        d.stop().await;
    }
}
