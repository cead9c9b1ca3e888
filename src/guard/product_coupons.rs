//! HQ's registry of product coupons (商品券): the KV bucket `redeemd_product_coupons`, keyed
//! by the chain's claim key of each code, holding what a till needs to hold and use the
//! coupon (`model::product_coupon::Entry`). HQ writes it from WeChat Pay's notifications;
//! a till reads its store's mirror of it.

use crate::guard::last_value::LastValue;
use crate::model::product_coupon::Entry;
use std::sync::Arc;
use std::time::Duration;

/// The bucket's name.
pub const BUCKET: &str = "redeemd_product_coupons";

/// The stream behind the bucket.
pub fn stream() -> String {
    format!("KV_{BUCKET}")
}

/// A bucket key's subject.
pub fn subject(key: &str) -> String {
    format!("$KV.{BUCKET}.{key}")
}

/// Reads the store's mirror of the registry (the till's side).
#[derive(Clone)]
pub struct Lookup {
    values: Arc<LastValue>,
}

/// How often a code the mirror does not know yet is asked again while a scan waits.
const ASK_AGAIN: Duration = Duration::from_millis(100);

impl Lookup {
    pub fn new(client: async_nats::Client, timeout: Duration) -> Lookup {
        Lookup {
            values: Arc::new(LastValue::new(client, stream(), timeout)),
        }
    }

    /// The entry of the code with claim key `key`, if the mirror has it; `Err` when the
    /// store's server did not answer within the timeout, or the entry cannot be read.
    pub async fn find(&self, key: &str) -> Result<Option<Entry>, String> {
        match self.values.read(&subject(key)).await? {
            Some(m) if !m.is_kv_removal() => serde_json::from_slice(&m.data)
                .map(Some)
                .map_err(|e| format!("the registry's entry for this code is unreadable: {e}")),
            _ => Ok(None),
        }
    }

    /// [`Lookup::find`], asking again until the entry is there or `within` has passed (an
    /// issue may reach the store's mirror moments after the customer shows the code).
    pub async fn wait_for(&self, key: &str, within: Duration) -> Result<Option<Entry>, String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match self.find(key).await? {
                Some(e) => return Ok(Some(e)),
                None if tokio::time::Instant::now() + ASK_AGAIN >= deadline => return Ok(None),
                None => tokio::time::sleep(ASK_AGAIN).await,
            }
        }
    }
}
