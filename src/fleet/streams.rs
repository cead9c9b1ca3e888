//! HQ's JetStream set-up, by JetStream's own API (Debian's nats-server 2.9 answers it):
//!
//! - `REDEEMD_CHAIN` on the hub sources the row events (`redeemd.events.>`) of every
//!   listed store's `REDEEMD_EVENTS` through `$JS.<store>.API` over the leaf-node link; the
//!   server resumes each source where it stopped, and de-duplicates by `Nats-Msg-Id`. It
//!   keeps events for [`CHAIN_MAX_AGE_DAYS`] days: the read model holds them for good; the stream is
//!   what a `--rebuild` reads.
//! - `REDEEMD_BEATS` on the hub sources the status beats (`redeemd.status.>`) of the same
//!   stores and keeps the latest beat of each till only, so beats never grow the hub.
//! - `KV_redeemd_redeemed` on the hub (claim key → store, till, time), and a mirror of it
//!   in each store's domain, pulled by the store's server through `$JS.<hub>.API`.
//! - The durable consumers `redeemd_fleet` (events) and `redeemd_fleet_beats` (beats),
//!   each acknowledged after its batch's commit.

use crate::guard::nats::{create_or_update_stream, create_stream, request};
use crate::guard::{product_coupons, redeemed};
use crate::model::event::STORE_STREAM;

pub const CHAIN_STREAM: &str = "REDEEMD_CHAIN";
pub const CONSUMER: &str = "redeemd_fleet";
pub const BEATS_STREAM: &str = "REDEEMD_BEATS";
pub const BEATS_CONSUMER: &str = "redeemd_fleet_beats";
/// How long the hub keeps row events: 400 days, a year's reconciliation and more.
pub const CHAIN_MAX_AGE_DAYS: u64 = 400;
const NS_PER_DAY: u64 = 86_400 * 1_000_000_000;

/// What the fleet reads from the hub: the row events, or the tills' beats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    Events,
    Beats,
}

impl Feed {
    pub fn stream(self) -> &'static str {
        match self {
            Feed::Events => CHAIN_STREAM,
            Feed::Beats => BEATS_STREAM,
        }
    }

    pub fn consumer(self) -> &'static str {
        match self {
            Feed::Events => CONSUMER,
            Feed::Beats => BEATS_CONSUMER,
        }
    }

    /// The subjects of a store's stream this feed sources.
    fn filter(self) -> &'static str {
        match self {
            Feed::Events => "redeemd.events.>",
            Feed::Beats => "redeemd.status.>",
        }
    }

    /// The hub stream's config, with exactly the stores listed as sources.
    pub fn config(self, stores: &[String]) -> serde_json::Value {
        let sources: Vec<serde_json::Value> = stores
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": STORE_STREAM,
                    "filter_subject": self.filter(),
                    "external": { "api": format!("$JS.{s}.API"), "deliver": "" },
                })
            })
            .collect();
        let mut config = serde_json::json!({
            "name": self.stream(),
            "subjects": [],
            "retention": "limits",
            "storage": "file",
            "num_replicas": 1,
            "discard": "old",
            // Sourced messages keep their `Nats-Msg-Id` (`<till>:<row>:<version>`), so a
            // repeat is dropped here too: till names are unique in the merchant, and the
            // read model flags a name heard from two stores (`name_clash`).
            "duplicate_window": 120_000_000_000_u64,
            "sources": sources,
        });
        match self {
            Feed::Events => config["max_age"] = (CHAIN_MAX_AGE_DAYS * NS_PER_DAY).into(),
            // A beat's subject names its store and till: one message each is the latest.
            Feed::Beats => config["max_msgs_per_subject"] = 1.into(),
        }
        config
    }

    /// The hub stream, with exactly the stores listed as sources.
    pub async fn ensure(
        self,
        client: &async_nats::Client,
        stores: &[String],
    ) -> Result<(), String> {
        create_or_update_stream(client, "$JS.API", &self.config(stores)).await
    }
}

/// WeChat Pay's notifications, as received (their resources still encrypted), one subject
/// per event type: `redeemd.notify.PRODUCT_COUPON.SEND`.
pub const NOTIFY_STREAM: &str = "REDEEMD_NOTIFY";

pub fn notify_subject(event_type: &str) -> String {
    format!("redeemd.notify.{event_type}")
}

/// WeChat Pay retries a notification for about a day: a repeat within this window is
/// dropped by its `Nats-Msg-Id` (the notification's `id`).
pub const NOTIFY_DUPLICATE_WINDOW_NS: u64 = 26 * 3600 * 1_000_000_000;

pub fn notify_stream_config() -> serde_json::Value {
    serde_json::json!({
        "name": NOTIFY_STREAM,
        "subjects": ["redeemd.notify.>"],
        "retention": "limits",
        "storage": "file",
        "num_replicas": 1,
        "discard": "old",
        "duplicate_window": NOTIFY_DUPLICATE_WINDOW_NS,
        "max_age": CHAIN_MAX_AGE_DAYS * NS_PER_DAY,
    })
}

/// HQ's stream of notifications, on the hub.
pub async fn ensure_notify_stream(client: &async_nats::Client) -> Result<(), String> {
    create_or_update_stream(client, "$JS.API", &notify_stream_config()).await
}

/// One of HQ's KV buckets (`bucket`, its stream `KV_<bucket>`): one value per key, deletes
/// kept as markers (so that the stores' mirrors see them).
async fn ensure_bucket(client: &async_nats::Client, bucket: &str) -> Result<(), String> {
    let config = serde_json::json!({
        "name": format!("KV_{bucket}"),
        "subjects": [format!("$KV.{bucket}.>")],
        "retention": "limits",
        "max_msgs_per_subject": 1,
        "storage": "file",
        "num_replicas": 1,
        "discard": "new",
        "duplicate_window": 120_000_000_000_u64,
        "allow_rollup_hdrs": true,
        "deny_delete": true,
        "allow_direct": true,
    });
    create_stream(client, "$JS.API", &config).await
}

/// HQ's bucket of redeemed codes.
pub async fn ensure_redeemed_bucket(client: &async_nats::Client) -> Result<(), String> {
    ensure_bucket(client, redeemed::BUCKET).await
}

/// HQ's registry of product coupons: one value per key (the claim key of a code).
pub async fn ensure_product_coupon_bucket(client: &async_nats::Client) -> Result<(), String> {
    ensure_bucket(client, product_coupons::BUCKET).await
}

/// The registry's durable consumer of product-coupon notifications: each acknowledged on
/// its own once it is in the registry (and confirmed, for an issue).
pub const REGISTRY_CONSUMER: &str = "redeemd_registry";

pub async fn ensure_registry_consumer(client: &async_nats::Client) -> Result<(), String> {
    let config = serde_json::json!({
        "durable_name": REGISTRY_CONSUMER,
        "deliver_policy": "all",
        "ack_policy": "explicit",
        "ack_wait": 30_000_000_000_u64,
        "max_ack_pending": 1_000,
        "filter_subject": "redeemd.notify.PRODUCT_COUPON.>",
        "replay_policy": "instant",
    });
    create_durable(client, NOTIFY_STREAM, REGISTRY_CONSUMER, config).await
}

/// The consumer that records uses and returns WeChat Pay reports into the read model. It
/// reads every notification (one filter for several event types needs a newer server)
/// and passes over the others.
pub const OUTSIDE_CONSUMER: &str = "redeemd_fleet_outside";

pub async fn ensure_outside_consumer(client: &async_nats::Client) -> Result<(), String> {
    let config = serde_json::json!({
        "durable_name": OUTSIDE_CONSUMER,
        "deliver_policy": "all",
        "ack_policy": "all",
        "ack_wait": 30_000_000_000_u64,
        "max_ack_pending": 10_000,
        "filter_subject": "redeemd.notify.>",
        "replay_policy": "instant",
    });
    create_durable(client, NOTIFY_STREAM, OUTSIDE_CONSUMER, config).await
}

/// Creates durable consumer `consumer` of `stream` with `config` (or leaves it as it is).
async fn create_durable(
    client: &async_nats::Client,
    stream: &str,
    consumer: &str,
    config: serde_json::Value,
) -> Result<(), String> {
    let body = serde_json::json!({ "stream_name": stream, "config": config });
    match request(
        client,
        format!("$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{consumer}"),
        &body,
    )
    .await
    {
        Ok(_) => Ok(()),
        Err((_, e)) => Err(format!("JetStream refused the consumer {consumer}: {e}")),
    }
}

/// The durable pull consumer `consumer` of `stream`, as the client reads it.
pub async fn pull_consumer(
    js: &async_nats::jetstream::Context,
    stream: &str,
    consumer: &str,
) -> Result<async_nats::jetstream::consumer::PullConsumer, String> {
    js.get_stream(stream)
        .await
        .map_err(|e| e.to_string())?
        .get_consumer(consumer)
        .await
        .map_err(|e| e.to_string())
}

/// The store's mirror of one of HQ's buckets (its stream `stream`, e.g.
/// `KV_redeemd_redeemed`), in the store's domain. It needs the store's link up; the caller
/// retries until it is there.
pub async fn ensure_mirror(
    client: &async_nats::Client,
    store: &str,
    hub_domain: &str,
    stream: &str,
) -> Result<(), String> {
    let config = serde_json::json!({
        "name": stream,
        "retention": "limits",
        "max_msgs_per_subject": 1,
        "storage": "file",
        "num_replicas": 1,
        "discard": "old",
        "allow_direct": true,
        "mirror_direct": true,
        "mirror": {
            "name": stream,
            "external": { "api": format!("$JS.{hub_domain}.API"), "deliver": "" },
        },
    });
    create_stream(client, &format!("$JS.{store}.API"), &config)
        .await
        .map_err(|e| format!("store {store}: {e}"))
}

/// A durable pull consumer the read model is fed by: everything, in stream order,
/// acknowledged up to a message (`ack_policy: all`) once its batch is committed.
pub async fn ensure_consumer(client: &async_nats::Client, feed: Feed) -> Result<(), String> {
    let config = serde_json::json!({
        "durable_name": feed.consumer(),
        "deliver_policy": "all",
        "ack_policy": "all",
        "ack_wait": 60_000_000_000_u64,
        "max_ack_pending": 20_000,
        "replay_policy": "instant",
    });
    create_durable(client, feed.stream(), feed.consumer(), config).await
}

/// Forgets a consumer, so that the next one reads its stream from the start.
pub async fn delete_consumer(client: &async_nats::Client, feed: Feed) -> Result<(), String> {
    delete_durable(client, feed.stream(), feed.consumer()).await
}

/// Deletes durable consumer `consumer` of `stream`, if it is there.
pub async fn delete_durable(
    client: &async_nats::Client,
    stream: &str,
    consumer: &str,
) -> Result<(), String> {
    match request(
        client,
        format!("$JS.API.CONSUMER.DELETE.{stream}.{consumer}"),
        &serde_json::json!({}),
    )
    .await
    {
        // 10014: no such consumer (a first rebuild); 10059: no stream yet.
        Ok(_) | Err((Some(10014 | 10059), _)) => Ok(()),
        Err((_, e)) => Err(format!("cannot delete the consumer {consumer}: {e}")),
    }
}
