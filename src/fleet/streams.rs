//! HQ's JetStream set-up, by JetStream's own API (Debian's nats-server 2.9 answers it):
//!
//! - `REDEEMD_CHAIN` on the hub sources every listed store's `REDEEMD_EVENTS` through
//!   `$JS.<store>.API` over the leaf-node link; the server resumes each source where it
//!   stopped, and de-duplicates by `Nats-Msg-Id`.
//! - `KV_redeemd_redeemed` on the hub (claim key → store, till, time), and a mirror of it
//!   in each store's domain, pulled by the store's server through `$JS.<hub>.API`.
//! - The durable consumer `redeemd_fleet` on `REDEEMD_CHAIN`, acknowledged after each
//!   batch's commit.

use crate::model::event::STORE_STREAM;
use crate::store::nats::{create_or_update_stream, create_stream, request};
use crate::store::redeemed;

pub const CHAIN_STREAM: &str = "REDEEMD_CHAIN";
pub const CONSUMER: &str = "redeemd_fleet";

pub fn chain_config(stores: &[String]) -> serde_json::Value {
    let sources: Vec<serde_json::Value> = stores
        .iter()
        .map(|s| {
            serde_json::json!({
                "name": STORE_STREAM,
                "external": { "api": format!("$JS.{s}.API"), "deliver": "" },
            })
        })
        .collect();
    serde_json::json!({
        "name": CHAIN_STREAM,
        "subjects": [],
        "retention": "limits",
        "storage": "file",
        "num_replicas": 1,
        "discard": "old",
        // Sourced messages keep their `Nats-Msg-Id` (`<till>:<row>:<version>`), so a
        // repeat is dropped here too: till names are unique in the merchant (README), and
        // the read model flags a name heard from two stores (`name_clash`).
        "duplicate_window": 120_000_000_000_u64,
        "sources": sources,
    })
}

/// The chain stream, with exactly the stores listed as sources.
pub async fn ensure_chain(client: &async_nats::Client, stores: &[String]) -> Result<(), String> {
    create_or_update_stream(client, "$JS.API", &chain_config(stores)).await
}

/// HQ's bucket of redeemed codes: one value per key, deletes kept as markers (so that the
/// stores' mirrors see them).
pub async fn ensure_redeemed_bucket(client: &async_nats::Client) -> Result<(), String> {
    let b = redeemed::BUCKET;
    let config = serde_json::json!({
        "name": redeemed::stream(),
        "subjects": [format!("$KV.{b}.>")],
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

/// The store's mirror of HQ's bucket, in the store's domain. It needs the store's link
/// up; the caller retries until it is there.
pub async fn ensure_mirror(
    client: &async_nats::Client,
    store: &str,
    hub_domain: &str,
) -> Result<(), String> {
    let config = serde_json::json!({
        "name": redeemed::stream(),
        "retention": "limits",
        "max_msgs_per_subject": 1,
        "storage": "file",
        "num_replicas": 1,
        "discard": "old",
        "allow_direct": true,
        "mirror_direct": true,
        "mirror": {
            "name": redeemed::stream(),
            "external": { "api": format!("$JS.{hub_domain}.API"), "deliver": "" },
        },
    });
    create_stream(client, &format!("$JS.{store}.API"), &config)
        .await
        .map_err(|e| format!("store {store}: {e}"))
}

/// The durable pull consumer the read model is fed by: everything, in stream order,
/// acknowledged up to a message (`ack_policy: all`) once its batch is committed.
pub async fn ensure_consumer(client: &async_nats::Client) -> Result<(), String> {
    let body = serde_json::json!({
        "stream_name": CHAIN_STREAM,
        "config": {
            "durable_name": CONSUMER,
            "deliver_policy": "all",
            "ack_policy": "all",
            "ack_wait": 60_000_000_000_u64,
            "max_ack_pending": 20_000,
            "replay_policy": "instant",
        },
    });
    match request(
        client,
        format!("$JS.API.CONSUMER.DURABLE.CREATE.{CHAIN_STREAM}.{CONSUMER}"),
        &body,
    )
    .await
    {
        Ok(_) => Ok(()),
        Err((_, e)) => Err(format!("JetStream refused the consumer {CONSUMER}: {e}")),
    }
}

/// Forgets the consumer, so that the next one reads the stream from its start.
pub async fn delete_consumer(client: &async_nats::Client) -> Result<(), String> {
    match request(
        client,
        format!("$JS.API.CONSUMER.DELETE.{CHAIN_STREAM}.{CONSUMER}"),
        &serde_json::json!({}),
    )
    .await
    {
        // 10014: no such consumer (a first rebuild); 10059: no stream yet.
        Ok(_) | Err((Some(10014 | 10059), _)) => Ok(()),
        Err((_, e)) => Err(format!("cannot delete the consumer {CONSUMER}: {e}")),
    }
}
