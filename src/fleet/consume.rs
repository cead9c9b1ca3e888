//! The consumer: batches from `REDEEMD_CHAIN` into the read model, one commit each, then
//! the chain's record of redeemed codes, then the acknowledgement. A crash anywhere in
//! between redelivers the batch, which the read model's idempotent apply absorbs.

use super::metrics::FleetMetrics;
use super::pull::fetch;
use super::read_model::{self, Applied, RedeemedChange};
use super::streams::{
    Feed, delete_consumer, ensure_consumer, ensure_mirror, ensure_redeemed_bucket, pull_consumer,
};
use crate::guard::redeemed::{self, RedeemedAt};
use crate::model::event::{Event, Skip, decode};
use async_nats::jetstream::{self, consumer::PullConsumer};
use rusqlite::Connection;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Messages taken per commit.
pub const BATCH: usize = 1000;
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const MIRROR_EVERY: Duration = Duration::from_secs(30);
/// How often a missing mirror is tried again.
const MIRROR_RETRY: Duration = Duration::from_secs(2);
/// The longest one try at a store's mirrors waits for answers. A request sent while the
/// store's link is coming up can go unanswered; the client's own timeout (10 s) would put
/// the next try that far off.
const MIRROR_ANSWER_WAIT: Duration = Duration::from_secs(2);
/// Skipped messages logged one by one per batch; the rest in one line.
const LOGGED_SKIPS: usize = 5;

/// Consumes `feed` until `stop`. With `rebuild`, its consumer is deleted first, so the
/// new one reads the stream from its start.
pub async fn run(
    feed: Feed,
    client: async_nats::Client,
    writer: Arc<Mutex<Connection>>,
    metrics: Arc<FleetMetrics>,
    mut stores: watch::Receiver<Vec<String>>,
    rebuild: bool,
    mut stop: watch::Receiver<bool>,
) {
    let js = jetstream::new(client.clone());
    let mut consumer: Option<PullConsumer> = None;
    let mut to_delete = rebuild;
    let mut backoff = Duration::from_millis(250);
    let mut failing = false;
    loop {
        let changed = stores.has_changed().unwrap_or(false);
        if changed {
            consumer = None;
        }
        let list = stores.borrow_and_update().clone();
        let step = async {
            let c = match &consumer {
                Some(c) => c.clone(),
                None => {
                    feed.ensure(&client, &list).await?;
                    ensure_redeemed_bucket(&client).await?;
                    if to_delete {
                        delete_consumer(&client, feed).await?;
                        to_delete = false;
                    }
                    ensure_consumer(&client, feed).await?;
                    let c = pull_consumer(&js, feed.stream(), feed.consumer()).await?;
                    consumer = Some(c.clone());
                    c
                }
            };
            batch(feed, &js, &c, &writer, &metrics).await
        };
        let result = tokio::select! {
            r = step => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        match result {
            Ok(_) => {
                if failing {
                    tracing::info!(
                        event = "fleet_consuming",
                        "reading the chain's stream again"
                    );
                    failing = false;
                }
                backoff = Duration::from_millis(250);
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(event = "fleet_consume_failed", error = %e, "cannot read the chain's stream; retrying");
                    failing = true;
                }
                consumer = None;
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// One batch: how many messages it took.
async fn batch(
    feed: Feed,
    js: &jetstream::Context,
    consumer: &PullConsumer,
    writer: &Arc<Mutex<Connection>>,
    metrics: &Arc<FleetMetrics>,
) -> Result<usize, String> {
    let batch = fetch(consumer, BATCH).await?;
    let Some(last) = batch.last() else {
        return Ok(0);
    };
    let decoded: Vec<(String, Result<Event, Skip>)> = batch
        .iter()
        .map(|m| {
            let seq = m.info().map(|i| i.stream_sequence).unwrap_or(0);
            (
                format!("{} (stream sequence {seq})", m.subject),
                decode(m.subject.as_str(), &m.payload),
            )
        })
        .collect();
    let now = chrono::Utc::now().timestamp_millis();
    let w = writer.clone();
    let (outcomes, skipped) = tokio::task::spawn_blocking(move || {
        let conn = w
            .lock()
            .map_err(|_| "the read model's writer panicked".to_string())?;
        apply_all(&conn, decoded, now).map_err(|e| format!("read model: {e}"))
    })
    .await
    .map_err(|e| e.to_string())??;
    for (i, (what, skip)) in skipped.iter().enumerate() {
        metrics.count_skipped(skip.label());
        // A flood of bad messages is counted in full but logged a few lines a batch.
        if i < LOGGED_SKIPS {
            tracing::warn!(event = "fleet_event_skipped", message = %what, reason = skip.label(), error = %skip, "skipped a message of the chain's stream");
        }
    }
    if skipped.len() > LOGGED_SKIPS {
        tracing::warn!(
            event = "fleet_event_skipped",
            more = skipped.len() - LOGGED_SKIPS,
            "more messages of this batch skipped (see redeemd_fleet_events_skipped_total)"
        );
    }
    let mut acks = Vec::new();
    for o in &outcomes {
        match o {
            Applied::Row { redeemed } => {
                metrics.count_applied(true);
                if let Some(change) = redeemed {
                    acks.push(record_redeemed(js, change).await?);
                }
            }
            Applied::Unchanged => metrics.count_applied(false),
            Applied::Beat => {}
        }
    }
    for ack in acks {
        ack.await.map_err(|e| format!("redeemd_redeemed: {e}"))?;
    }
    if let Ok(info) = last.info()
        && feed == Feed::Events
    {
        metrics.set_pending(info.pending);
    }
    last.ack().await.map_err(|e| e.to_string())?;
    Ok(batch.len())
}

type Skipped = Vec<(String, Skip)>;

/// Applies a batch in one transaction.
fn apply_all(
    conn: &Connection,
    decoded: Vec<(String, Result<Event, Skip>)>,
    now: i64,
) -> rusqlite::Result<(Vec<Applied>, Skipped)> {
    let tx = conn.unchecked_transaction()?;
    let mut outcomes = Vec::with_capacity(decoded.len());
    let mut skipped = Vec::new();
    for (what, d) in decoded {
        match d {
            Ok(Event::Row(e)) => outcomes.push(read_model::apply_row(&tx, &e, now)?),
            Ok(Event::Status(b)) => outcomes.push(read_model::apply_beat(&tx, &b)?),
            Err(skip) => skipped.push((what, skip)),
        }
    }
    tx.commit()?;
    Ok((outcomes, skipped))
}

/// Writes a change of the chain's record of redeemed codes; the acknowledgement is awaited
/// by the caller, before the batch is acknowledged.
pub(super) async fn record_redeemed(
    js: &jetstream::Context,
    change: &RedeemedChange,
) -> Result<jetstream::context::PublishAckFuture, String> {
    match change {
        RedeemedChange::Now {
            key,
            store,
            till,
            at,
        } => {
            js.publish(
                redeemed::subject(key),
                redeemed_value(store, till, *at, false).into(),
            )
            .await
        }
        RedeemedChange::Outside { key, at } => {
            js.publish(
                redeemed::subject(key),
                redeemed_value("", "", *at, true).into(),
            )
            .await
        }
        RedeemedChange::NoLonger { key } => {
            let mut h = async_nats::HeaderMap::new();
            h.insert("KV-Operation", "DEL");
            js.publish_with_headers(redeemed::subject(key), h, Vec::new().into())
                .await
        }
    }
    .map_err(|e| format!("redeemd_redeemed: {e}"))
}

/// Keeps every listed store's mirrors of HQ's buckets in place. Each needs its store's
/// link up: a store whose mirrors are there is checked again every 30 s; one whose link is
/// down is tried again every 2 s (a request that fails at once while the link is down), so
/// a mirror is made within seconds of the link coming back (a store's first link, or a new
/// store's).
pub async fn keep_mirrors(
    client: async_nats::Client,
    hub_domain: String,
    buckets: Vec<Mirrored>,
    mut stores: watch::Receiver<Vec<String>>,
    metrics: Arc<FleetMetrics>,
    mut stop: watch::Receiver<bool>,
) {
    let mut state: BTreeMap<String, MirrorCheck> = BTreeMap::new();
    loop {
        let list = stores.borrow_and_update().clone();
        state.retain(|store, _| list.contains(store));
        let now = Instant::now();
        for store in &list {
            // A store new to the list is checked now.
            let check = state
                .entry(store.clone())
                .or_insert_with(|| MirrorCheck::due_at(now));
            if check.due > now {
                continue;
            }
            let tried = tokio::time::timeout(MIRROR_ANSWER_WAIT, async {
                let mut mirrored = Ok(());
                for bucket in &buckets {
                    // The hub's bucket first: a mirror made before its source waits for the
                    // server's own retry to find it.
                    let made = match bucket.ensure_at_hub(&client).await {
                        Ok(()) => {
                            ensure_mirror(&client, store, &hub_domain, &bucket.stream()).await
                        }
                        Err(e) => Err(e),
                    };
                    mirrored = mirrored.and(made);
                }
                mirrored
            })
            .await;
            let mirrored = tried.unwrap_or_else(|_| {
                Err(format!(
                    "store {store}: no answer within {MIRROR_ANSWER_WAIT:?}"
                ))
            });
            match mirrored {
                Ok(()) => {
                    if check.missing.is_some() {
                        tracing::info!(event = "fleet_mirror_ready", store = %store, "the store has its copy of HQ's buckets");
                    }
                    *check = MirrorCheck::there(Instant::now());
                    metrics.set_mirror(store, true);
                }
                Err(e) => {
                    // Said again only when the reason changes.
                    if check.missing.as_deref() != Some(e.as_str()) {
                        tracing::warn!(event = "fleet_mirror_missing", store = %store, error = %e, "the store has no copy of HQ's buckets yet (its link to HQ is down?); trying again");
                    }
                    check.missed(Instant::now(), e);
                    metrics.set_mirror(store, false);
                }
            }
        }
        let next = state
            .values()
            .map(|c| c.due)
            .min()
            .unwrap_or_else(|| Instant::now() + MIRROR_EVERY);
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {}
            _ = stores.changed() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// A hub bucket every store keeps a mirror of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mirrored {
    /// `redeemd_redeemed`: the chain's redeemed codes.
    Redeemed,
    /// `redeemd_product_coupons`: the registry (with `[notify]`).
    ProductCoupons,
}

impl Mirrored {
    fn stream(self) -> String {
        match self {
            Mirrored::Redeemed => redeemed::stream(),
            Mirrored::ProductCoupons => crate::guard::product_coupons::stream(),
        }
    }

    async fn ensure_at_hub(self, client: &async_nats::Client) -> Result<(), String> {
        match self {
            Mirrored::Redeemed => ensure_redeemed_bucket(client).await,
            Mirrored::ProductCoupons => super::streams::ensure_product_coupon_bucket(client).await,
        }
    }
}

/// When a store's mirrors are next checked.
#[derive(Debug, Clone)]
struct MirrorCheck {
    due: Instant,
    /// Why the last try failed, while the mirrors are missing.
    missing: Option<String>,
}

impl MirrorCheck {
    fn due_at(due: Instant) -> MirrorCheck {
        MirrorCheck { due, missing: None }
    }

    fn there(now: Instant) -> MirrorCheck {
        MirrorCheck {
            due: now + MIRROR_EVERY,
            missing: None,
        }
    }

    fn missed(&mut self, now: Instant, why: String) {
        self.due = now + MIRROR_RETRY;
        self.missing = Some(why);
    }
}

/// The value HQ writes for a redeemed code (`outside`: WeChat Pay reported the use, no
/// till made it).
pub fn redeemed_value(store: &str, till: &str, at: i64, outside: bool) -> Vec<u8> {
    serde_json::to_vec(&RedeemedAt {
        store: store.to_string(),
        till: till.to_string(),
        at,
        outside,
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_mirror_is_tried_again_every_two_seconds_one_there_every_thirty() {
        let t0 = Instant::now();
        let mut c = MirrorCheck::due_at(t0);
        for _ in 0..5 {
            c.missed(t0, "no responders".into());
            assert_eq!((c.due - t0).as_secs(), 2);
        }
        assert_eq!(c.missing.as_deref(), Some("no responders"));
        let c = MirrorCheck::there(t0);
        assert_eq!(((c.due - t0).as_secs(), c.missing), (30, None));
    }
}
