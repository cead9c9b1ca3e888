//! The dispatcher: picks due rows from the ledger, oldest first, and runs a bounded number
//! of tries at once. It keeps nothing that matters in memory: which rows are due, and when,
//! is in the ledger; after a restart it simply starts again from there.

use crate::clock::Millis;
use crate::config::Api;
use crate::ledger::store;
use crate::ledger::{LedgerError, Row};
use crate::outcome::{Bus, log_settled};
use crate::redeem::Ctx;
use crate::redeem::aimd::Aimd;
use crate::redeem::attempt::TryEnd;
use crate::redeem::card::try_card;
use crate::redeem::coupon::try_coupon;
use crate::wechat::card::CardApi;
use crate::wechat::pay::PayApi;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
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
    pub max_age: Duration,
    /// Poked on every new scan.
    pub wake: Arc<Notify>,
    pub bus: Bus,
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

impl Dispatcher {
    fn apis(&self) -> Vec<Api> {
        let mut v = Vec::new();
        if self.card.is_some() {
            v.push(Api::Card);
        }
        if self.coupon.is_some() {
            v.push(Api::Coupon);
        }
        v
    }

    /// Runs until `shutdown` turns true, then lets tries in flight finish (bounded).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), LedgerError> {
        let mut tasks: JoinSet<Result<TryEnd, LedgerError>> = JoinSet::new();
        // Which row and API each task works on, so even a panicked task frees its slot.
        let mut task_rows: HashMap<tokio::task::Id, (i64, Api, Instant)> = HashMap::new();
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
        tracing::info!(event = "dispatcher_started", "dispatcher running");

        loop {
            if *shutdown.borrow() {
                break;
            }
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
                    }
                    h.paused.is_none().then_some(*api)
                })
                .collect();
            // What is in flight, per row and per API, is what `task_rows` holds.
            let free: Vec<(Api, usize)> = active
                .iter()
                .filter_map(|api| {
                    let h = health.get(api)?;
                    let busy = task_rows.values().filter(|(_, a, _)| a == api).count();
                    let free = h.aimd.limit().saturating_sub(busy);
                    (free > 0).then_some((*api, free))
                })
                .collect();
            let exclude: HashSet<i64> = task_rows.values().map(|(id, _, _)| *id).collect();
            let apis = active.clone();
            // One trip to the ledger thread per turn: it sits on the path of every answer.
            let turn = match self
                .ctx
                .ledger
                .call(move |c| {
                    let expired = store::expire(c, now, max_age_ms)?;
                    let mut due = Vec::new();
                    for (api, free) in free {
                        due.extend(store::due(c, now, free, &exclude, &[api])?);
                    }
                    Ok(Turn {
                        expired,
                        due,
                        next_due: store::next_due_after(c, &apis, now)?,
                        next_expiry: store::next_expiry_at(c, max_age_ms)?,
                    })
                })
                .await
            {
                Ok(turn) => turn,
                Err(LedgerError::Stopped) => return Err(LedgerError::Stopped),
                Err(e) => {
                    // A full disk or a failed commit (which may have been another
                    // operation's: commits are shared) is not the end: wait, then ask again.
                    tracing::error!(event = "dispatcher_ledger_error", error = %e, "the ledger failed the dispatcher's query; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(LEDGER_RETRY) => {}
                        // A new scan was recorded: the ledger writes again.
                        _ = self.wake.notified() => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
            };
            for row in turn.expired {
                self.publish(row);
            }
            for row in turn.due {
                let Some(api) = row.api() else { continue };
                let id = row.id;
                let ctx = self.ctx.clone();
                let card = self.card.clone();
                let coupon = self.coupon.clone();
                let bus = self.bus.clone();
                let handle = tasks.spawn(async move {
                    let end = match (api, card, coupon) {
                        (Api::Card, Some(card), _) => try_card(&ctx, &card, row).await,
                        (Api::Coupon, _, Some(pay)) => try_coupon(&ctx, &pay, row).await,
                        _ => Ok(TryEnd::Dropped),
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
                task_rows.insert(handle.id(), (id, api, Instant::now()));
            }

            let wake_at = next_wake(now, [turn.next_due, turn.next_expiry], &health);
            tokio::select! {
                _ = self.wake.notified() => {}
                Some(joined) = tasks.join_next_with_id() => {
                    let task = match &joined {
                        Ok((task, _)) => *task,
                        Err(e) => e.id(),
                    };
                    let Some((id, api, started)) = task_rows.remove(&task) else { continue };
                    match joined {
                        Ok((_, Ok(end))) => {
                            if let Err(e) = self.after_try(api, started, end, &mut health).await {
                                tracing::error!(event = "dispatcher_ledger_error", error = %e, "the ledger failed a write after a try");
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
            in_flight = tasks.len(),
            "letting calls in flight finish"
        );
        let drain = async {
            while let Some(joined) = tasks.join_next_with_id().await {
                if let Ok((task, Ok(end))) = joined
                    && let Some((_, api, started)) = task_rows.remove(&task)
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
            tasks.abort_all();
        }
        Ok(())
    }

    async fn after_try(
        &self,
        api: Api,
        started: Instant,
        end: TryEnd,
        health: &mut HashMap<Api, ApiHealth>,
    ) -> Result<(), LedgerError> {
        let Some(h) = health.get_mut(&api) else {
            return Ok(());
        };
        match end {
            // The task published the row itself, if it changed.
            TryEnd::Applied {
                healthy, congested, ..
            } => {
                // tokio's Instant: the same clock as std's, and paused time in tests.
                let now = Instant::now().into_std();
                if congested {
                    h.aimd.on_congestion(started.into_std(), now);
                } else if healthy {
                    h.aimd.on_success(now);
                }
                self.ctx
                    .metrics
                    .set_concurrency(api.as_str(), h.aimd.limit());
                if healthy && h.failing {
                    let at = self.ctx.clock.now_ms() + self.drain_jitter.as_millis() as i64;
                    let n = self
                        .ctx
                        .ledger
                        .call(move |c| store::fast_forward(c, api, at))
                        .await?;
                    tracing::info!(
                        event = "api_reachable",
                        api = api.as_str(),
                        backlog = n,
                        "WeChat answers again; draining the backlog"
                    );
                }
                h.failing = !healthy;
                self.ctx.metrics.set_api_healthy(api.as_str(), healthy);
            }
            TryEnd::Pause { retry_in, reason } => {
                if h.paused.is_none() {
                    tracing::error!(event = "api_paused", api = api.as_str(), retry_in_s = retry_in.as_secs(), reason = %reason, "dispatch paused; scans stay queued");
                }
                h.paused = Some((Instant::now() + retry_in, reason));
            }
            TryEnd::Dropped => {}
        }
        Ok(())
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
