//! `redeemd fleet`: headquarters' view of every store. It keeps the hub's
//! stream `REDEEMD_CHAIN` sourcing each listed store's events, consumes it into a read
//! model (SQLite), writes the chain's record of redeemed codes (KV `redeemd_redeemed`,
//! mirrored into each store), and serves a page, a JSON API and metrics.
//!
//! What it promises: nothing lost (the stores' streams buffer while the WAN is down and
//! the sources resume where they stopped; the consumer is acknowledged only after each
//! batch's commit), nothing counted twice (`Nats-Msg-Id` in the streams, and an
//! idempotent apply by row version), and the lag shown.

mod consume;
mod http;
mod metrics;
pub mod notify;
pub mod outside;
mod pull;
pub mod read_model;
mod registry;
pub mod streams;

use crate::config::fleet::FleetConfig;
use crate::config::notify::{NotifyConfig, NotifyMode};
use crate::guard::nats::Access;
use crate::model::claim_key::CodeKey;
use crate::secrets::read_private_file;
use crate::wechatpay::notify::ApiV3Key;
use crate::wechatpay::pay::{PayApi, PayApiParts};
use crate::wechatpay::pay_sign::{Caller, RequestAuth, Signer, Verifier, read_public_file};
use metrics::FleetMetrics;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How to reach the hub.
pub fn hub_access(cfg: &FleetConfig) -> Access {
    Access {
        section: "hub",
        urls: cfg.hub.nats_urls.clone(),
        creds_file: cfg.hub.creds_file.clone(),
        user_file: cfg.hub.user_file.clone(),
        nkey_file: cfg.hub.nkey_file.clone(),
        tls_ca_file: cfg.hub.tls_ca_file.clone(),
    }
}

/// Everything `fleet` reads from disk before it starts: `check --fleet` reads the same.
pub struct FleetLoaded {
    pub config: FleetConfig,
    pub code_key: CodeKey,
    pub token: Option<Arc<str>>,
    /// With `[notify]`: the keys that trust WeChat Pay's notifications and sign confirms.
    pub notify: Option<NotifyKeys>,
}

/// `[notify]`'s keys, read once at the start.
pub struct NotifyKeys {
    pub verifier: Verifier,
    pub apiv3: ApiV3Key,
    pub signer: Signer,
}

/// Reads `[notify]`'s key files: the private ones must be private (0600).
fn notify_keys(n: &NotifyConfig, problems: &mut Vec<String>) -> Option<NotifyKeys> {
    let mut verifier = Verifier::default();
    let public = read_public_file(&n.public_key_file)
        .and_then(|pem| verifier.add_public_key_pem(&n.public_key_id, &pem))
        .map_err(|e| problems.push(format!("notify.public_key_file: {e}")));
    let apiv3 = read_private_file(&n.apiv3_key_file)
        .and_then(|b| ApiV3Key::from_bytes(&b))
        .map_err(|e| problems.push(format!("notify.apiv3_key_file: {e}")));
    let signer = Signer::from_file(&n.private_key_file)
        .map_err(|e| problems.push(format!("notify.private_key_file: {e}")));
    match (public, apiv3, signer) {
        (Ok(()), Ok(apiv3), Ok(signer)) => Some(NotifyKeys {
            verifier,
            apiv3,
            signer,
        }),
        _ => None,
    }
}

pub fn load(config: FleetConfig) -> Result<FleetLoaded, Vec<String>> {
    let mut problems = Vec::new();
    let code_key = read_private_file(&config.code_key_file)
        .and_then(|b| CodeKey::from_bytes(&b))
        .map_err(|e| problems.push(format!("code_key_file: {e}")))
        .ok();
    for (key, file) in [
        ("creds_file", &config.hub.creds_file),
        ("user_file", &config.hub.user_file),
        ("nkey_file", &config.hub.nkey_file),
    ] {
        if let Some(path) = file
            && let Err(e) = read_private_file(path)
        {
            problems.push(format!("hub.{key}: {e}"));
        }
    }
    let token = match &config.http.token_file {
        None => None,
        Some(t) => match crate::secrets::read_secret_file(t) {
            Ok(t) => Some(Arc::from(t)),
            Err(e) => {
                problems.push(format!("http.token_file: {e}"));
                None
            }
        },
    };
    if let Err(e) = read_model::open(&config.database) {
        problems.push(format!("database: {e}"));
    }
    let notify = config
        .notify
        .as_ref()
        .and_then(|n| notify_keys(n, &mut problems));
    match code_key {
        Some(code_key) if problems.is_empty() => Ok(FleetLoaded {
            config,
            code_key,
            token,
            notify,
        }),
        _ => Err(problems),
    }
}

/// Deletes the read model's files: `--rebuild` reads it all again from the stream.
/// The WeChat Pay client HQ confirms product coupons with: signed as the brand, or as the
/// service provider in partner mode.
fn product_coupon_api(
    cfg: &NotifyConfig,
    signer: Signer,
    verifier: Verifier,
) -> Result<PayApi, String> {
    let caller = match (&cfg.mode, &cfg.mchid) {
        (NotifyMode::Partner, Some(mchid)) => Caller::Merchant(mchid.clone()),
        _ => Caller::Brand(cfg.brand_id.clone()),
    };
    let auth = RequestAuth {
        caller,
        serial_no: cfg.serial_no.clone(),
        signer,
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .user_agent(crate::wechatpay::USER_AGENT)
        .build()
        .map_err(|e| format!("cannot start the HTTP client: {e}"))?;
    Ok(PayApi::new(PayApiParts {
        http,
        appid: cfg.appid.clone(),
        auth,
        verifier,
        public_key_id: Some(cfg.public_key_id.clone()),
        primary: cfg.base_url.clone(),
        backup: cfg.base_url.clone(),
        clock: Arc::new(crate::clock::SystemClock),
    }))
}

pub fn remove_read_model(cfg: &FleetConfig) -> Result<(), String> {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = cfg.database.clone().into_os_string();
        p.push(suffix);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", p.to_string_lossy())),
        }
    }
    Ok(())
}

/// Runs until `shutdown`. SIGHUP re-reads the config's stores (a store added is a line
/// and a reload).
pub async fn run(
    loaded: FleetLoaded,
    rebuild: bool,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    let FleetLoaded {
        config,
        code_key,
        token,
        notify,
    } = loaded;
    if rebuild {
        remove_read_model(&config)?;
        tracing::info!(event = "fleet_rebuild", database = %config.database.display(), "read model deleted; reading the chain's stream from its start");
    }
    let writer = read_model::open(&config.database)?;
    let reader = Arc::new(Mutex::new(read_model::open(&config.database)?));
    let client = hub_access(&config).connect(Duration::from_secs(5)).await?;
    let metrics = Arc::new(FleetMetrics::default());
    let (stores_tx, stores_rx) = watch::channel(config.stores.clone());
    let (stop_tx, stop_rx) = watch::channel(false);

    let web = http::serve(
        &config,
        http::FleetState {
            db: reader,
            metrics: metrics.clone(),
            code_key: code_key.clone(),
            token,
            stale_after: config.stale_after,
            language: config.http.language,
        },
        stop_rx.clone(),
    )
    .await
    .map_err(|e| format!("http.listen: {e}"))?;
    let writer = Arc::new(Mutex::new(writer));
    let consumers: Vec<_> = [streams::Feed::Events, streams::Feed::Beats]
        .into_iter()
        .map(|feed| {
            tokio::spawn(consume::run(
                feed,
                client.clone(),
                writer.clone(),
                metrics.clone(),
                stores_rx.clone(),
                rebuild,
                stop_rx.clone(),
            ))
        })
        .collect();
    // Every store keeps a copy of the chain's redeemed codes, and with [notify] of the
    // product-coupon registry, to read with its link to HQ down.
    let mut buckets = vec![consume::Mirrored::Redeemed];
    if config.notify.is_some() {
        buckets.push(consume::Mirrored::ProductCoupons);
    }
    let mirrors = tokio::spawn(consume::keep_mirrors(
        client.clone(),
        config.hub.domain.clone(),
        buckets,
        stores_rx,
        metrics.clone(),
        stop_rx.clone(),
    ));
    // After the page's listener, so that its address is the first one logged.
    let (notifications, registry, outside) = match (&config.notify, notify) {
        (Some(cfg), Some(keys)) => {
            streams::ensure_notify_stream(&client).await?;
            let apiv3 = Arc::new(keys.apiv3);
            let registry = registry::Registry {
                client: client.clone(),
                apiv3: apiv3.clone(),
                code_key: code_key.clone(),
                pay: Arc::new(product_coupon_api(cfg, keys.signer, keys.verifier.clone())?),
                partner_brand: (cfg.mode == NotifyMode::Partner).then(|| cfg.brand_id.clone()),
                appid: cfg.appid.clone(),
                metrics: metrics.clone(),
                store_lists: Default::default(),
            };
            let state = notify::NotifyState {
                verifier: Arc::new(keys.verifier),
                key: apiv3.clone(),
                jetstream: async_nats::jetstream::new(client.clone()),
                metrics: metrics.clone(),
            };
            let outside = outside::Outside {
                client: client.clone(),
                apiv3: apiv3.clone(),
                code_key: code_key.clone(),
                writer: writer.clone(),
                rebuild: rebuild.into(),
            };
            let listener = notify::serve(cfg, state, stop_rx.clone())
                .await
                .map_err(|e| format!("notify.listen: {e}"))?;
            (
                Some(listener),
                Some(tokio::spawn(registry.run(stop_rx.clone()))),
                Some(tokio::spawn(outside.run(stop_rx.clone()))),
            )
        }
        _ => (None, None, None),
    };
    tracing::info!(event = "fleet_started", stores = %config.stores.join(","), hub = %config.hub.nats_urls.join(","), "redeemd fleet started");

    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| format!("cannot handle SIGHUP: {e}"))?;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(()) = hup.recv() => {
                match FleetConfig::load(&config.source) {
                    Ok(new) => {
                        tracing::info!(event = "fleet_reloaded", stores = %new.stores.join(","), "stores re-read from the config");
                        let _ = stores_tx.send(new.stores);
                    }
                    Err(e) => tracing::error!(event = "fleet_reload_failed", error = %e, "config not reloaded; the stores stay as they were"),
                }
            }
        }
    }
    let _ = stop_tx.send(true);
    for consumer in consumers.into_iter().chain(outside) {
        let _ = consumer.await;
    }
    mirrors.abort();
    let _ = tokio::time::timeout(Duration::from_secs(1), web).await;
    if let Some(n) = notifications {
        let _ = tokio::time::timeout(Duration::from_secs(1), n).await;
    }
    // A notification in the middle of its confirm is not acknowledged: it comes back.
    if let Some(r) = registry {
        r.abort();
    }
    tracing::info!(event = "fleet_stopped", "redeemd fleet stopped");
    Ok(())
}
