//! Publishes the outbox to the store's stream, paced, and beats every `status_interval`.
//!
//! It reads the ledger on a read-only connection of its own (WAL readers never wait for
//! the writer, and the writer never waits for them) and writes only the acknowledgements,
//! a batch at a time, in commits whose fsync may come later: a lost acknowledgement is a
//! republish, which changes nothing.

use crate::clock::SharedClock;
use crate::config::store::StoreConfig;
use crate::guard::bucket::replicas;
use crate::guard::nats::create_stream;
use crate::ledger::Ledger;
use crate::ledger::events::{self, Unpublished};
use crate::ledger::queries;
use crate::ledger::schema::open_ro;
use crate::metrics::Metrics;
use crate::model::claim_key::CodeKey;
use crate::model::event::{
    self, RowEvent, STORE_STREAM, StatusBeat, events_subject, row_msg_id, status_subject,
};
use async_nats::jetstream;
use rusqlite::Connection;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Row versions sent before their acknowledgements are awaited.
pub const BATCH: usize = 200;
/// The pause between full batches: a day's backlog drains at a few thousand events a
/// second without taking the ledger or the store's server from the cashier.
const PACE: Duration = Duration::from_millis(25);
/// How often an empty outbox is looked at again.
const IDLE: Duration = Duration::from_millis(250);
/// The longest wait for a batch's acknowledgements.
const ACK_WAIT: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Events are kept at the store for this long while HQ cannot take them.
pub const STORE_RETENTION: Duration = Duration::from_secs(30 * 86_400);

/// Who publishes: the till, its store, its ledger's file and the chain's code key.
pub struct TillParts<'a> {
    pub store: &'a StoreConfig,
    pub name: &'a str,
    pub code_key: CodeKey,
    pub database: &'a Path,
}

pub struct Publisher {
    js: jetstream::Context,
    client: async_nats::Client,
    store: StoreConfig,
    till: String,
    code_key: CodeKey,
    ledger: Ledger,
    reader: Arc<Mutex<Connection>>,
    metrics: Arc<Metrics>,
    clock: SharedClock,
}

/// The store's stream: every till's events and beats, kept while HQ is away.
pub fn stream_config(store: &StoreConfig) -> serde_json::Value {
    let name = &store.name;
    serde_json::json!({
        "name": STORE_STREAM,
        "subjects": [
            format!("{}.{name}.>", event::EVENTS_PREFIX),
            format!("{}.{name}.>", event::STATUS_PREFIX),
        ],
        "retention": "limits",
        "max_age": STORE_RETENTION.as_nanos() as u64,
        "storage": "file",
        "num_replicas": replicas(store),
        "discard": "old",
        "duplicate_window": 120_000_000_000_u64,
    })
}

impl Publisher {
    pub fn new(
        client: async_nats::Client,
        ledger: Ledger,
        till: TillParts<'_>,
        metrics: Arc<Metrics>,
        clock: SharedClock,
    ) -> Result<Publisher, String> {
        let reader = open_ro(till.database).map_err(|e| e.to_string())?;
        Ok(Publisher {
            js: jetstream::new(client.clone()),
            client,
            store: till.store.clone(),
            till: till.name.to_string(),
            code_key: till.code_key,
            ledger,
            reader: Arc::new(Mutex::new(reader)),
            metrics,
            clock,
        })
    }

    async fn read<T, F>(&self, f: F) -> Result<T, String>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader
                .lock()
                .map_err(|_| "the reader panicked".to_string())?;
            f(&conn).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Publishes until `stop`; every failure is retried, backing off to 30 s.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut beat = tokio::time::interval(self.store.status_interval);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stream_ready = false;
        let mut backoff = Duration::from_millis(500);
        let mut failing: Option<String> = None;
        loop {
            let sent = async {
                if !stream_ready {
                    create_stream(&self.client, "$JS.API", &stream_config(&self.store)).await?;
                    stream_ready = true;
                }
                self.publish_batch().await
            }
            .await;
            let pause = match sent {
                Ok(n) => {
                    if let Some(why) = failing.take() {
                        tracing::info!(event = "chain_resumed", after = %why, "publishing the till's events to the store again");
                    }
                    backoff = Duration::from_millis(500);
                    if n == BATCH { PACE } else { IDLE }
                }
                Err(e) => {
                    if failing.is_none() {
                        tracing::warn!(event = "chain_publish_failed", error = %e, "cannot publish the till's events to the store; they wait in the ledger");
                    }
                    failing = Some(e);
                    // The stream may have been lost with the server's storage.
                    stream_ready = false;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    backoff
                }
            };
            let beat_due = tokio::select! {
                _ = tokio::time::sleep(pause) => false,
                _ = beat.tick() => true,
                _ = stop.wait_for(|s| *s) => return,
            };
            if beat_due {
                self.beat().await;
            }
        }
    }

    /// Sends the oldest batch and forgets what the stream acknowledged: how many entries
    /// were taken from the outbox.
    async fn publish_batch(&self) -> Result<usize, String> {
        let entries = self.read(|c| events::unpublished(c, 0, BATCH)).await?;
        if entries.is_empty() {
            return Ok(0);
        }
        let mut acks = Vec::with_capacity(entries.len());
        for entry in &entries {
            acks.push((entry.seq, self.send(entry).await?));
        }
        let mut through = None;
        let mut failed = None;
        for (seq, ack) in acks {
            if let Some(ack) = ack {
                match tokio::time::timeout(ACK_WAIT, ack).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        failed = Some(e.to_string());
                        break;
                    }
                    Err(_) => {
                        failed = Some(format!(
                            "no acknowledgement within {} s",
                            ACK_WAIT.as_secs()
                        ));
                        break;
                    }
                }
            }
            through = Some(seq);
        }
        let mut taken = 0;
        if let Some(t) = through {
            taken = self
                .ledger
                .call_sync_later(move |c| events::acknowledged(c, t))
                .await
                .map_err(|e| e.to_string())?;
            self.metrics.count_events_published(taken as u64);
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(taken),
        }
    }

    /// Sends one entry; `None` for a row gone or not at the entry's version.
    async fn send(
        &self,
        entry: &Unpublished,
    ) -> Result<Option<jetstream::context::PublishAckFuture>, String> {
        let Some((row, version)) = entry.row.as_ref().filter(|_| entry.is_current()) else {
            return Ok(None);
        };
        let e = RowEvent::of(row, *version, &self.store.name, &self.till, &self.code_key);
        let body = serde_json::to_vec(&e).map_err(|e| e.to_string())?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            "Nats-Msg-Id",
            row_msg_id(&self.till, row.id, *version).as_str(),
        );
        self.js
            .publish_with_headers(
                events_subject(&self.store.name, &self.till),
                headers,
                body.into(),
            )
            .await
            .map(Some)
            .map_err(|e| e.to_string())
    }

    /// The till's beat: what it has left to do and how its parts are. Best effort: a
    /// beat that cannot go is the silence HQ shows as stale.
    async fn beat(&self) {
        let counts = self
            .read(|c| {
                Ok((
                    queries::pending_count(c)?,
                    events::review_count(c)?,
                    events::outbox_len(c)?,
                ))
            })
            .await;
        let Ok((backlog, review, outbox)) = counts else {
            return;
        };
        let at = self.clock.now_ms();
        let beat = StatusBeat {
            v: event::VERSION,
            store: self.store.name.clone(),
            till: self.till.clone(),
            at,
            backlog,
            review,
            outbox,
            scanners: self.metrics.scanners(),
            last_success: self.metrics.last_success(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let Ok(body) = serde_json::to_vec(&beat) else {
            return;
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("{}:status:{at}", self.till).as_str());
        let sent = self
            .js
            .publish_with_headers(
                status_subject(&self.store.name, &self.till),
                headers,
                body.into(),
            )
            .await;
        if let Ok(ack) = sent {
            let _ = tokio::time::timeout(ACK_WAIT, ack).await;
        }
    }
}
