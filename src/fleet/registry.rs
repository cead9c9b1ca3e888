//! The product-coupon registry's writer: each kept `PRODUCT_COUPON.*` notification, in
//! stream order, becomes its registry entry (`model::product_coupon::apply`), and an issued
//! coupon is confirmed at WeChat Pay, then written again as usable. A notification is
//! acknowledged only once its entry is written; a confirm that cannot be made now (WeChat
//! Pay down, 5xx, no trustworthy answer) leaves it unacknowledged, to come back after a
//! backoff with the same `out_request_no`, so a confirm is made once however often it is
//! tried.

use super::metrics::FleetMetrics;
use super::pull::{Batches, FETCH_WAIT, keep_pulling};
use super::streams::{
    NOTIFY_STREAM, REGISTRY_CONSUMER, ensure_notify_stream, ensure_product_coupon_bucket,
    ensure_registry_consumer, pull_consumer,
};
use crate::guard::nats::{last_of_subject, request};
use crate::guard::product_coupons;
use crate::model::backoff;
use crate::model::claim_key::CodeKey;
use crate::model::code::Code;
use crate::model::product_coupon::{Change, Details, Entry, Event, EventKind, apply};
use crate::wechatpay::notify::{ApiV3Key, resource_of};
use crate::wechatpay::pay::{ConfirmRequest, CouponEntity, PayAnswer, PayApi, ProductCouponPath};
use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use futures_util::StreamExt;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long a stock's list of stores is kept before it is read again.
const STORE_LIST_KEPT: Duration = Duration::from_secs(300);
/// The most stores read for one stock (a bound on a misbehaving paging).
const MAX_STORES: usize = 100_000;
/// WeChat Pay's "用户券状态非法": the coupon is not in a state the call needs.
const ILLEGAL_STATE: u64 = 268578367;

/// What the writer needs: the key to reopen kept notifications, the chain's code key, and
/// the client that confirms.
pub struct Registry {
    pub client: async_nats::Client,
    pub apiv3: Arc<ApiV3Key>,
    pub code_key: CodeKey,
    pub pay: Arc<PayApi>,
    /// Partner mode: the confirm goes to the partner path, naming the brand.
    pub partner_brand: Option<String>,
    pub appid: String,
    pub metrics: Arc<FleetMetrics>,
    pub store_lists: StoreLists,
}

/// (product coupon, stock) → when its stores were read, and the stores.
pub type StoreLists = Mutex<HashMap<(String, String), (Instant, Vec<String>)>>;

/// A product-coupon notification's resource (the fields redeemd reads).
#[derive(Debug, Deserialize)]
struct Resource {
    coupon_code: String,
    #[serde(default)]
    product_coupon_id: Option<String>,
    #[serde(default)]
    stock_id: Option<String>,
    #[serde(default)]
    openid: Option<String>,
    #[serde(default)]
    receive_time: Option<String>,
    #[serde(default)]
    use_time: Option<String>,
    #[serde(default)]
    return_time: Option<String>,
    #[serde(default)]
    valid_begin_time: Option<String>,
    #[serde(default)]
    valid_end_time: Option<String>,
}

/// Why a notification is not done with yet.
enum NotYet {
    /// Try again later (WeChat Pay or the hub could not do it now).
    Later(String),
    /// It can never be done (not a product coupon's resource): acknowledged and counted.
    Never(String),
}

impl Registry {
    /// Writes the registry until `stop`.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        keep_pulling(&self, self.client.clone(), stop).await;
    }
}

impl Batches for Registry {
    const FAILED: (&'static str, &'static str) = (
        "registry_failed",
        "the product-coupon registry could not read its notifications; retrying",
    );
    const MAX_BACKOFF: Duration = MAX_BACKOFF;

    async fn open(&self, js: &jetstream::Context) -> Result<PullConsumer, String> {
        ensure_notify_stream(&self.client).await?;
        ensure_product_coupon_bucket(&self.client).await?;
        ensure_registry_consumer(&self.client).await?;
        pull_consumer(js, NOTIFY_STREAM, REGISTRY_CONSUMER).await
    }

    async fn batch(&self, js: &jetstream::Context, consumer: &PullConsumer) -> Result<(), String> {
        let mut messages = consumer
            .fetch()
            .max_messages(50)
            .expires(FETCH_WAIT)
            .messages()
            .await
            .map_err(|e| e.to_string())?;
        let mut took = 0;
        while let Some(m) = messages.next().await {
            took += 1;
            let m = m.map_err(|e| e.to_string())?;
            let delivered = m.info().map(|i| i.delivered).unwrap_or(1);
            match self.one(js, &m.payload).await {
                Ok(()) => m.ack().await.map_err(|e| e.to_string())?,
                Err(NotYet::Never(why)) => {
                    tracing::warn!(event = "registry_skipped", error = %why, "a product-coupon notification that can never be registered");
                    self.metrics.count_confirm("unregistrable");
                    m.ack().await.map_err(|e| e.to_string())?;
                }
                Err(NotYet::Later(why)) => {
                    // The retry schedule every try follows, without its jitter: each
                    // notification waits on its own delivery count.
                    let delay = backoff::delay(
                        u32::try_from(delivered).unwrap_or(u32::MAX),
                        Duration::from_millis(500),
                        MAX_BACKOFF,
                        false,
                        1.0,
                    );
                    tracing::warn!(event = "registry_retry", error = %why, retry_in_ms = delay.as_millis() as u64, "a product coupon is not registered yet; trying again");
                    m.ack_with(AckKind::Nak(Some(delay)))
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        if took > 0 || self.metrics.registered().is_none() {
            self.count_registered().await;
        }
        Ok(())
    }
}

impl Registry {
    /// `redeemd_product_coupons_registered`: one key per coupon, one message per key.
    async fn count_registered(&self) {
        let stream = product_coupons::stream();
        if let Ok(info) = request(
            &self.client,
            format!("$JS.API.STREAM.INFO.{stream}"),
            &serde_json::json!({}),
        )
        .await
            && let Some(n) = info["state"]["messages"].as_u64()
        {
            self.metrics.set_registered(n);
        }
    }

    /// One kept notification into the registry (confirming an issued coupon first).
    async fn one(&self, js: &jetstream::Context, body: &[u8]) -> Result<(), NotYet> {
        let n = resource_of(&self.apiv3, body)
            .map_err(|r| NotYet::Never(format!("cannot reopen: {}", r.reason())))?;
        let r: Resource = serde_json::from_slice(&n.resource)
            .map_err(|e| NotYet::Never(format!("not a product coupon's resource: {e}")))?;
        let kind = match n.event_type.as_str() {
            "PRODUCT_COUPON.SEND" => EventKind::Send,
            "PRODUCT_COUPON.USE" => EventKind::Use,
            "PRODUCT_COUPON.RETURN" => EventKind::Return,
            other => return Err(NotYet::Never(format!("event type {other} is not handled"))),
        };
        let at = match kind {
            EventKind::Send => r.receive_time.clone(),
            EventKind::Use => r.use_time.clone(),
            EventKind::Return => r.return_time.clone(),
            EventKind::Confirmed => None,
        }
        .unwrap_or_else(|| n.create_time.clone());
        let code = Code::new(r.coupon_code.clone());
        let key = self.code_key.claim_key(&code);
        let event = Event {
            kind,
            at,
            coupon_code_last4: code.last4(),
            openid: r.openid.clone(),
            product_coupon_id: r.product_coupon_id.clone(),
            stock_id: r.stock_id.clone(),
            valid_begin_time: r.valid_begin_time.clone(),
            valid_end_time: r.valid_end_time.clone(),
            details: Details::default(),
        };
        let mut entry = self.entry(&key).await?;
        if let Change::Write(new) = apply(entry.as_ref(), &event) {
            self.put(js, &key, &new).await?;
            entry = Some(*new);
        }
        let Some(e) = entry else {
            return Ok(());
        };
        if kind == EventKind::Send
            && e.state == crate::model::product_coupon::CouponState::Confirming
        {
            let confirmed = self.confirm(&r, &code, &key, &n.create_time).await?;
            if let Change::Write(new) = apply(Some(&e), &confirmed) {
                self.put(js, &key, &new).await?;
            }
        }
        Ok(())
    }

    /// Confirms an issued coupon; the event that records it.
    async fn confirm(
        &self,
        r: &Resource,
        code: &Code,
        key: &str,
        at: &str,
    ) -> Result<Event, NotYet> {
        let (Some(openid), Some(product_coupon_id), Some(stock_id)) =
            (&r.openid, &r.product_coupon_id, &r.stock_id)
        else {
            return Err(NotYet::Never(
                "an issue without openid, product or stock".into(),
            ));
        };
        let path = ProductCouponPath {
            partner: self.partner_brand.is_some(),
            openid: openid.clone(),
            coupon_code: r.coupon_code.clone(),
        };
        // Fixed by the code: every try of this confirm is the same request.
        let out_request_no = format!("CF{}", &key[..key.len().min(30)]);
        let req = ConfirmRequest {
            brand_id: self.partner_brand.clone(),
            product_coupon_id: product_coupon_id.clone(),
            stock_id: stock_id.clone(),
            appid: self.appid.clone(),
            out_request_no,
        };
        match self.pay.confirm_product_coupon(&path, &req).await {
            PayAnswer::Used { reply, .. } => {
                self.metrics.count_confirm("confirmed");
                self.confirmed_event(reply, (product_coupon_id, stock_id), code, at)
                    .await
            }
            // Not waiting for a confirm any more: confirmed already (under another request
            // number, by another tool of the brand's), which WeChat Pay's own record says.
            PayAnswer::Refused {
                errcode: Some(ILLEGAL_STATE),
                ..
            } => {
                self.confirmed_before(&path, product_coupon_id, stock_id, code, at)
                    .await
            }
            PayAnswer::Refused {
                status,
                code,
                message,
                errcode,
            } => {
                self.metrics.count_confirm("refused");
                Err(NotYet::Never(format!(
                    "WeChat Pay refused the confirm: {status} {code} {} {message}",
                    errcode.map(|c| c.to_string()).unwrap_or_default()
                )))
            }
            PayAnswer::SignRejected { message, .. } => Err(NotYet::Later(format!(
                "confirm signature rejected: {message}"
            ))),
            PayAnswer::NotSent { detail }
            | PayAnswer::Retry { detail, .. }
            | PayAnswer::Unknown { detail, .. } => {
                self.metrics.count_confirm("retry");
                Err(NotYet::Later(format!("confirm not done: {detail}")))
            }
        }
    }

    /// A confirm refused because the coupon is not waiting for one: asks WeChat Pay what
    /// it is. Usable → as if this confirm had made it so; anything else is final.
    async fn confirmed_before(
        &self,
        path: &ProductCouponPath,
        product_coupon_id: &str,
        stock_id: &str,
        code: &Code,
        at: &str,
    ) -> Result<Event, NotYet> {
        let brand = self.partner_brand.as_deref();
        match self
            .pay
            .query_product_coupon(path, product_coupon_id, stock_id, brand)
            .await
        {
            PayAnswer::Used { reply, .. } if reply.coupon_state == "EFFECTIVE" => {
                self.metrics.count_confirm("confirmed");
                self.confirmed_event(reply, (product_coupon_id, stock_id), code, at)
                    .await
            }
            PayAnswer::Used { reply, .. } => {
                self.metrics.count_confirm("refused");
                Err(NotYet::Never(format!(
                    "the coupon is {} at WeChat Pay, not waiting for a confirm",
                    reply.coupon_state
                )))
            }
            PayAnswer::Refused {
                status,
                code,
                message,
                ..
            } => {
                self.metrics.count_confirm("refused");
                Err(NotYet::Never(format!(
                    "WeChat Pay refused the query after a refused confirm: {status} {code} {message}"
                )))
            }
            PayAnswer::SignRejected { message, .. } => Err(NotYet::Later(format!(
                "query signature rejected: {message}"
            ))),
            PayAnswer::NotSent { detail }
            | PayAnswer::Retry { detail, .. }
            | PayAnswer::Unknown { detail, .. } => {
                self.metrics.count_confirm("retry");
                Err(NotYet::Later(format!("query not done: {detail}")))
            }
        }
    }

    /// The event that records a usable coupon, with what WeChat Pay's entity says it is
    /// (and, for a stock of `SPECIFIC` stores, which stores).
    async fn confirmed_event(
        &self,
        reply: CouponEntity,
        stock: (&str, &str),
        code: &Code,
        at: &str,
    ) -> Result<Event, NotYet> {
        let value = reply.value();
        let store_scope = reply.store_scope().map(str::to_string);
        let store_ids = match store_scope.as_deref() {
            Some("SPECIFIC") => Some(self.stores_of(stock.0, stock.1).await?),
            _ => None,
        };
        let info = reply.product_coupon.unwrap_or_default();
        Ok(Event {
            kind: EventKind::Confirmed,
            // Just after the issue it follows, whatever the clocks say.
            at: at.to_string(),
            coupon_code_last4: code.last4(),
            openid: None,
            product_coupon_id: None,
            stock_id: None,
            valid_begin_time: reply.valid_begin_time,
            valid_end_time: reply.valid_end_time,
            details: Details {
                appid: Some(self.appid.clone()),
                title: info.display_info.and_then(|d| d.name),
                value,
                usage_mode: info.usage_mode,
                store_scope,
                store_ids,
            },
        })
    }

    /// The stores a `SPECIFIC` stock may be used at, every page of them; kept a few
    /// minutes, as the coupons of a stock are issued in bursts.
    async fn stores_of(
        &self,
        product_coupon_id: &str,
        stock_id: &str,
    ) -> Result<Vec<String>, NotYet> {
        let id = (product_coupon_id.to_string(), stock_id.to_string());
        if let Ok(cache) = self.store_lists.lock()
            && let Some((at, stores)) = cache.get(&id)
            && at.elapsed() < STORE_LIST_KEPT
        {
            return Ok(stores.clone());
        }
        let brand = self.partner_brand.as_deref();
        let mut stores = Vec::new();
        let mut token: Option<String> = None;
        loop {
            match self
                .pay
                .associated_stores(brand, product_coupon_id, stock_id, token.as_deref())
                .await
            {
                PayAnswer::Used { reply, .. } => {
                    stores.extend(reply.store_list.into_iter().map(|s| s.store_id));
                    match reply.next_page_token.filter(|t| !t.is_empty()) {
                        Some(next) if stores.len() < MAX_STORES => token = Some(next),
                        _ => break,
                    }
                }
                PayAnswer::Refused {
                    status,
                    code,
                    message,
                    ..
                } => {
                    return Err(NotYet::Later(format!(
                        "the stock's stores were refused: {status} {code} {message}"
                    )));
                }
                PayAnswer::SignRejected { message, .. } => {
                    return Err(NotYet::Later(format!(
                        "stores query signature rejected: {message}"
                    )));
                }
                PayAnswer::NotSent { detail }
                | PayAnswer::Retry { detail, .. }
                | PayAnswer::Unknown { detail, .. } => {
                    return Err(NotYet::Later(format!(
                        "the stock's stores not read: {detail}"
                    )));
                }
            }
        }
        if let Ok(mut cache) = self.store_lists.lock() {
            cache.insert(id, (Instant::now(), stores.clone()));
        }
        Ok(stores)
    }

    async fn entry(&self, key: &str) -> Result<Option<Entry>, NotYet> {
        let stored = last_of_subject(
            &self.client,
            "$JS.API",
            &product_coupons::stream(),
            &product_coupons::subject(key),
        )
        .await
        .map_err(NotYet::Later)?;
        Ok(stored.and_then(|m| serde_json::from_slice(&m.data).ok()))
    }

    async fn put(&self, js: &jetstream::Context, key: &str, e: &Entry) -> Result<(), NotYet> {
        let value = serde_json::to_vec(e).map_err(|e| NotYet::Never(e.to_string()))?;
        js.publish(product_coupons::subject(key), value.into())
            .await
            .map_err(|e| NotYet::Later(e.to_string()))?
            .await
            .map_err(|e| NotYet::Later(e.to_string()))?;
        Ok(())
    }
}
