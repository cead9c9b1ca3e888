//! The claim, on a store's NATS JetStream (`async-nats`). Every call is bounded by
//! `claim_timeout`: no answer is not "no claim" but `Unavailable`, and the till goes on
//! alone, saying so.

use crate::config::store::StoreConfig;
use crate::guard::nats::{Access, create_stream};
use crate::model::claim::{ClaimValue, Found, UNREADABLE, found};
use async_nats::jetstream::{self, kv};
use std::time::Duration;

/// Creates the claims bucket with JetStream's own API. `async-nats` 0.45's
/// `create_key_value` cannot read Debian's nats-server 2.9 answer to it (the stream is not
/// even created), so the bucket's stream is made here, exactly as a KV bucket's is: one
/// subject space `$KV.<bucket>.>`, a history per key, roll-ups allowed, deletes denied,
/// direct gets. Reading and writing it then go through `kv::Store` as usual.
async fn create_bucket(client: &async_nats::Client, cfg: &StoreConfig) -> Result<(), String> {
    let bucket = &cfg.claims_bucket;
    let max_age = u64::try_from(cfg.claim_ttl.as_nanos()).unwrap_or(u64::MAX);
    let config = serde_json::json!({
        "name": format!("KV_{bucket}"),
        "subjects": [format!("$KV.{bucket}.>")],
        "retention": "limits",
        "max_msgs_per_subject": 5,
        "max_age": max_age,
        "storage": "file",
        "num_replicas": replicas(cfg),
        "discard": "new",
        "duplicate_window": 120_000_000_000_u64.min(max_age),
        "allow_rollup_hdrs": true,
        "deny_delete": true,
        "allow_direct": true,
    });
    create_stream(client, "$JS.API", &config)
        .await
        .map_err(|e| format!("store.claims_bucket {bucket}: {e}"))
}

/// Replicas of the store's streams: one per server named, at most 3.
pub fn replicas(cfg: &StoreConfig) -> usize {
    cfg.nats_urls.len().clamp(1, 3)
}

/// How to reach the store's servers.
pub fn access(cfg: &StoreConfig) -> Access {
    Access {
        section: "store",
        urls: cfg.nats_urls.clone(),
        creds_file: cfg.creds_file.clone(),
        user_file: cfg.user_file.clone(),
        nkey_file: cfg.nkey_file.clone(),
        tls_ca_file: cfg.tls_ca_file.clone(),
    }
}

/// What a claim came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Created (or a released one taken over): this till holds it, at this revision.
    Taken { revision: u64 },
    /// This till held it already (a restart or a rescan).
    Ours { revision: u64 },
    /// Another till holds it.
    Theirs(ClaimValue),
    /// The store did not answer in time, or answered with an error.
    Unavailable(String),
}

pub struct ClaimBucket {
    js: jetstream::Context,
    client: async_nats::Client,
    cfg: StoreConfig,
    /// The claims bucket, opened (or created) by the first claim that reaches the store: a
    /// till starts whether its store answers or not.
    kv: tokio::sync::OnceCell<kv::Store>,
    till: String,
    timeout: Duration,
}

impl ClaimBucket {
    /// Connects, retrying in the background while no server answers. The claims bucket is
    /// opened, or created (replicas: one per server named, at most 3), by the first claim.
    pub async fn connect(cfg: &StoreConfig, till: &str) -> Result<ClaimBucket, String> {
        let client = access(cfg).connect(cfg.claim_timeout).await?;
        Ok(ClaimBucket {
            js: jetstream::new(client.clone()),
            client,
            cfg: cfg.clone(),
            kv: tokio::sync::OnceCell::new(),
            till: till.to_string(),
            timeout: cfg.claim_timeout,
        })
    }

    /// How long the store is waited for.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The store's name.
    pub fn store(&self) -> &str {
        &self.cfg.name
    }

    /// The connection, for what else the till says to its store (the chain's events).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    async fn bucket(&self) -> Result<&kv::Store, String> {
        self.kv
            .get_or_try_init(|| async {
                let name = &self.cfg.claims_bucket;
                match self.js.get_key_value(name).await {
                    Ok(kv) => Ok(kv),
                    Err(_) => {
                        create_bucket(&self.client, &self.cfg).await?;
                        self.js
                            .get_key_value(name)
                            .await
                            .map_err(|e| format!("store.claims_bucket {name}: {e}"))
                    }
                }
            })
            .await
    }

    /// Whether the store answers: the claims bucket opens (or is created), within `within`.
    pub async fn probe(&self, within: Duration) -> Result<(), String> {
        match tokio::time::timeout(within, self.bucket()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!(
                "no answer from {} within {} s",
                self.cfg.nats_urls.join(", "),
                within.as_secs()
            )),
        }
    }

    /// Claims `key` with `value`, within the claim timeout.
    pub async fn claim(&self, key: &str, value: &ClaimValue) -> Claim {
        match tokio::time::timeout(self.timeout, self.try_claim(key, value)).await {
            Ok(c) => c,
            Err(_) => Claim::Unavailable(format!(
                "the store did not answer within {} ms",
                self.timeout.as_millis()
            )),
        }
    }

    async fn try_claim(&self, key: &str, value: &ClaimValue) -> Claim {
        let kv = match self.bucket().await {
            Ok(kv) => kv,
            Err(e) => return Claim::Unavailable(e),
        };
        let bytes = match serde_json::to_vec(value) {
            Ok(b) => bytes::Bytes::from(b),
            Err(e) => return Claim::Unavailable(format!("cannot encode the claim: {e}")),
        };
        match kv.create(key, bytes.clone()).await {
            Ok(revision) => return Claim::Taken { revision },
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Err(e) => return Claim::Unavailable(e.to_string()),
        }
        let entry = match kv.entry(key).await {
            Ok(Some(entry)) => entry,
            // Deleted or purged meanwhile: not ours to take blind; the next scan asks again.
            Ok(None) => return Claim::Unavailable("the claim vanished while it was read".into()),
            Err(e) => return Claim::Unavailable(e.to_string()),
        };
        match found(&entry.value, &self.till) {
            // Ours from before (a restart, a rescan): it now names this scan, so a restart's
            // cleanup of the earlier scan's claim (by revision) cannot release it.
            Found::Ours => match kv.update(key, bytes, entry.revision).await {
                Ok(revision) => Claim::Ours { revision },
                Err(e) => Claim::Unavailable(format!("the claim changed while it was read: {e}")),
            },
            Found::Free => match kv.update(key, bytes, entry.revision).await {
                Ok(revision) => Claim::Taken { revision },
                // Another till took it first.
                Err(_) => match kv.entry(key).await {
                    Ok(Some(e)) => match found(&e.value, &self.till) {
                        Found::Theirs(v) => Claim::Theirs(v),
                        _ => Claim::Unavailable("the claim changed while it was taken".into()),
                    },
                    _ => Claim::Unavailable("the claim changed while it was taken".into()),
                },
            },
            Found::Theirs(v) => Claim::Theirs(v),
            Found::Unreadable => Claim::Theirs(ClaimValue {
                till: "?".into(),
                row: None,
                scan: String::new(),
                at: 0,
                api: String::new(),
                state: UNREADABLE.into(),
                ..ClaimValue::default()
            }),
        }
    }

    /// Moves a claim this till holds on (`redeemed`, `rejected`, `released`, ...), with the
    /// revision it read: never a blind put. The new revision, or why not.
    pub async fn update(
        &self,
        key: &str,
        value: &ClaimValue,
        revision: u64,
    ) -> Result<u64, String> {
        let bytes = serde_json::to_vec(value).map_err(|e| e.to_string())?;
        let update = async {
            let kv = self.bucket().await?;
            kv.update(key, bytes.into(), revision)
                .await
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(self.timeout, update).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "the store did not answer within {} ms",
                self.timeout.as_millis()
            )),
        }
    }

    /// The claim's value (`None`: unreadable) and revision, if the key is in the bucket.
    pub async fn entry(&self, key: &str) -> Result<Option<(Option<ClaimValue>, u64)>, String> {
        let read = async {
            let kv = self.bucket().await?;
            kv.entry(key).await.map_err(|e| e.to_string())
        };
        match tokio::time::timeout(self.timeout, read).await {
            Ok(Ok(Some(e))) if e.operation == kv::Operation::Put => {
                Ok(Some((serde_json::from_slice(&e.value).ok(), e.revision)))
            }
            Ok(Ok(_)) => Ok(None),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!(
                "the store did not answer within {} ms",
                self.timeout.as_millis()
            )),
        }
    }

    /// Marks another till's abandoned claim as found by this till: the holder stays the
    /// holder (nothing is taken over), and its next start tells its manager.
    pub async fn flag_abandoned(&self, key: &str) -> Result<(), String> {
        let flag = async {
            let kv = self.bucket().await?;
            let entry = kv
                .entry(key)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("the claim is gone")?;
            let mut v: ClaimValue =
                serde_json::from_slice(&entry.value).map_err(|e| e.to_string())?;
            if v.abandoned_by.is_some() || v.row.is_some() {
                return Ok(());
            }
            v.abandoned_by = Some(self.till.clone());
            let bytes = serde_json::to_vec(&v).map_err(|e| e.to_string())?;
            kv.update(key, bytes.into(), entry.revision)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(self.timeout, flag).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "the store did not answer within {} ms",
                self.timeout.as_millis()
            )),
        }
    }
}
