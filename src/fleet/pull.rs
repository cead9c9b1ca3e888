//! Keeping a durable pull consumer of a hub stream going: opened (stream, bucket and
//! consumer made sure of first), a batch at a time, opened again after a failure once a
//! backoff (doubling from 250 ms) has passed, until `stop`. The notification consumers
//! (the registry, the uses outside the tills) share it.

use async_nats::jetstream::{self, Message, consumer::PullConsumer};
use futures_util::StreamExt;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;

const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// How long a fetch waits for messages before it ends with what it has.
pub(super) const FETCH_WAIT: Duration = Duration::from_millis(500);

/// One batch of up to `max` messages, all of them taken before any is handled (a
/// consumer that writes a batch in one commit).
pub(super) async fn fetch(consumer: &PullConsumer, max: usize) -> Result<Vec<Message>, String> {
    let mut messages = consumer
        .fetch()
        .max_messages(max)
        .expires(FETCH_WAIT)
        .messages()
        .await
        .map_err(|e| e.to_string())?;
    let mut batch = Vec::new();
    while let Some(m) = messages.next().await {
        batch.push(m.map_err(|e| e.to_string())?);
    }
    Ok(batch)
}

/// One consumer's work.
pub(super) trait Batches {
    /// The log's `event` when a batch fails, and what the line says.
    const FAILED: (&'static str, &'static str);
    /// The longest wait between two failed tries.
    const MAX_BACKOFF: Duration;

    /// Makes sure what the consumer reads is there, and opens it.
    fn open(
        &self,
        js: &jetstream::Context,
    ) -> impl Future<Output = Result<PullConsumer, String>> + Send;

    /// Takes and handles one batch.
    fn batch(
        &self,
        js: &jetstream::Context,
        consumer: &PullConsumer,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// Runs `work` until `stop`.
pub(super) async fn keep_pulling<B: Batches + Sync>(
    work: &B,
    client: async_nats::Client,
    mut stop: watch::Receiver<bool>,
) {
    let js = jetstream::new(client);
    let mut consumer: Option<PullConsumer> = None;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let step = async {
            let c = match &consumer {
                Some(c) => c.clone(),
                None => {
                    let c = work.open(&js).await?;
                    consumer = Some(c.clone());
                    c
                }
            };
            work.batch(&js, &c).await
        };
        let result = tokio::select! {
            r = step => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        match result {
            Ok(()) => backoff = FIRST_BACKOFF,
            Err(e) => {
                let (event, message) = B::FAILED;
                tracing::warn!(event, error = %e, "{message}");
                consumer = None;
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                backoff = (backoff * 2).min(B::MAX_BACKOFF);
            }
        }
    }
}
