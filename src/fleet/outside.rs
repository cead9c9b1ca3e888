//! Redemptions made outside the tills: WeChat Pay's use and return notifications (a
//! product coupon's `PRODUCT_COUPON.USE` / `.RETURN`, a merchant coupon's `COUPON.USE`),
//! kept in `REDEEMD_NOTIFY`, go into the read model in batches, one commit each; a use no
//! till row accounts for then enters the chain's record of redeemed codes (so a till with
//! its WAN down refuses the code), and the batch is acknowledged last. A crash in between
//! redelivers the batch, which the read model's idempotent apply absorbs.

use super::consume::record_redeemed;
use super::pull::{Batches, fetch, keep_pulling};
use super::read_model::{self, OutsideEvent, OutsideKind, RedeemedChange};
use super::streams::{
    NOTIFY_STREAM, OUTSIDE_CONSUMER, delete_durable, ensure_notify_stream, ensure_outside_consumer,
    ensure_redeemed_bucket, pull_consumer,
};
use crate::clock::Millis;
use crate::model::claim_key::CodeKey;
use crate::model::code::Code;
use crate::wechatpay::notify::{ApiV3Key, resource_of};
use async_nats::jetstream::{self, consumer::PullConsumer};
use rusqlite::Connection;
use serde::Deserialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

const BATCH: usize = 500;
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What the writer needs.
pub struct Outside {
    pub client: async_nats::Client,
    pub apiv3: Arc<ApiV3Key>,
    pub code_key: CodeKey,
    pub writer: Arc<Mutex<Connection>>,
    /// `--rebuild`: the consumer is deleted first, once, so it reads the stream again.
    pub rebuild: AtomicBool,
}

/// The fields of a use or return notification's resource that redeemd reads.
#[derive(Debug, Deserialize)]
struct Resource {
    coupon_code: String,
    #[serde(default)]
    use_time: Option<String>,
    #[serde(default)]
    return_time: Option<String>,
}

/// Which event types are uses or returns, of which API.
fn kind_of(event_type: &str) -> Option<(&'static str, OutsideKind)> {
    match event_type {
        "PRODUCT_COUPON.USE" => Some(("product_coupon", OutsideKind::Use)),
        "PRODUCT_COUPON.RETURN" => Some(("product_coupon", OutsideKind::Return)),
        "COUPON.USE" => Some(("coupon", OutsideKind::Use)),
        _ => None,
    }
}

fn millis(rfc3339: &str) -> Option<Millis> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|d| d.timestamp_millis())
}

impl Outside {
    /// Records reported uses until `stop`.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        keep_pulling(&self, self.client.clone(), stop).await;
    }
}

impl Batches for Outside {
    const FAILED: (&'static str, &'static str) = (
        "outside_failed",
        "cannot record the uses WeChat Pay reported; retrying",
    );
    const MAX_BACKOFF: Duration = MAX_BACKOFF;

    async fn open(&self, js: &jetstream::Context) -> Result<PullConsumer, String> {
        ensure_notify_stream(&self.client).await?;
        ensure_redeemed_bucket(&self.client).await?;
        // `--rebuild`: the read model is new, so its consumer reads from the start.
        if self.rebuild.swap(false, Ordering::SeqCst) {
            delete_durable(&self.client, NOTIFY_STREAM, OUTSIDE_CONSUMER).await?;
        }
        ensure_outside_consumer(&self.client).await?;
        pull_consumer(js, NOTIFY_STREAM, OUTSIDE_CONSUMER).await
    }

    async fn batch(&self, js: &jetstream::Context, consumer: &PullConsumer) -> Result<(), String> {
        let batch = fetch(consumer, BATCH).await?;
        let Some(last) = batch.last() else {
            return Ok(());
        };
        let events: Vec<OutsideEvent> = batch.iter().filter_map(|m| self.event(m)).collect();
        if !events.is_empty() {
            let w = self.writer.clone();
            let now = chrono::Utc::now().timestamp_millis();
            let changes = tokio::task::spawn_blocking(move || {
                let conn = w
                    .lock()
                    .map_err(|_| "the read model's writer panicked".to_string())?;
                apply_all(&conn, &events, now).map_err(|e| format!("read model: {e}"))
            })
            .await
            .map_err(|e| e.to_string())??;
            let mut acks = Vec::new();
            for change in &changes {
                acks.push(record_redeemed(js, change).await?);
            }
            for ack in acks {
                ack.await.map_err(|e| format!("redeemd_redeemed: {e}"))?;
            }
        }
        last.ack().await.map_err(|e| e.to_string())
    }
}

impl Outside {
    /// A kept notification as a reported use or return; `None` for any other event, and
    /// for one that cannot be read (logged: it was verified when it came in, so only a
    /// changed APIv3 key or an unexpected resource gets here).
    fn event(&self, m: &jetstream::Message) -> Option<OutsideEvent> {
        let event_type = m.subject.as_str().strip_prefix("redeemd.notify.")?;
        let (api, kind) = kind_of(event_type)?;
        let read = resource_of(&self.apiv3, &m.payload)
            .map_err(|r| format!("cannot reopen: {}", r.reason()))
            .and_then(|n| {
                let r: Resource = serde_json::from_slice(&n.resource)
                    .map_err(|e| format!("not a coupon's use: {e}"))?;
                Ok((n, r))
            });
        let (n, r) = match read {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(event = "outside_skipped", event_type, error = %e, "a reported use that cannot be read");
                return None;
            }
        };
        let when = match kind {
            OutsideKind::Use => r.use_time.as_deref(),
            OutsideKind::Return => r.return_time.as_deref(),
        };
        let at = when
            .and_then(millis)
            .or_else(|| millis(&n.create_time))
            .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
        let code = Code::new(r.coupon_code);
        Some(OutsideEvent {
            notify_id: n.id,
            key: self.code_key.claim_key(&code),
            api,
            kind,
            code_last4: code.last4(),
            at,
        })
    }
}

/// Applies a batch in one transaction: the changes to the chain's record it makes.
fn apply_all(
    conn: &Connection,
    events: &[OutsideEvent],
    now: Millis,
) -> rusqlite::Result<Vec<RedeemedChange>> {
    let tx = conn.unchecked_transaction()?;
    let mut changes = Vec::new();
    for e in events {
        if let Some(c) = read_model::apply_outside(&tx, e, now)? {
            changes.push(c);
        }
    }
    tx.commit()?;
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uses_and_returns_are_told_apart_by_event_type() {
        let cases = [
            (
                "PRODUCT_COUPON.USE",
                Some(("product_coupon", OutsideKind::Use)),
            ),
            (
                "PRODUCT_COUPON.RETURN",
                Some(("product_coupon", OutsideKind::Return)),
            ),
            ("COUPON.USE", Some(("coupon", OutsideKind::Use))),
            ("PRODUCT_COUPON.SEND", None),
            ("TRANSACTION.SUCCESS", None),
        ];
        for (event_type, want) in cases {
            assert_eq!(kind_of(event_type), want, "{event_type}");
        }
    }
}
