//! "Was this code redeemed at another store?" HQ keeps the KV bucket `redeemd_redeemed`
//! (claim key → store, till, time) and mirrors it into every store's JetStream domain; a
//! till reads its store's mirror, so the answer holds while the WAN is down (as of the
//! last moment the link was up).

use crate::clock::Millis;
use crate::guard::last_value::LastValue;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// The bucket HQ writes.
pub const BUCKET: &str = "redeemd_redeemed";

/// The bucket's stream (HQ's, and each store's mirror of it).
pub fn stream() -> String {
    format!("KV_{BUCKET}")
}

/// A bucket key's subject.
pub fn subject(key: &str) -> String {
    format!("$KV.{BUCKET}.{key}")
}

/// Where and when a code was redeemed, as HQ heard it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedeemedAt {
    /// Empty for a use outside the tills.
    pub store: String,
    pub till: String,
    pub at: Millis,
    /// WeChat Pay reported the use, and no till of the chain made it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub outside: bool,
}

/// Reads the store's mirror of the chain's redeemed codes.
#[derive(Clone)]
pub struct Lookup {
    values: Arc<LastValue>,
}

impl Lookup {
    pub fn new(client: async_nats::Client, timeout: Duration) -> Lookup {
        Lookup {
            values: Arc::new(LastValue::new(client, stream(), timeout)),
        }
    }

    /// Where the code with claim key `key` was redeemed, if the mirror knows; `Err` when
    /// the store's server did not answer within the timeout (the caller decides as if
    /// nothing were known, and says so).
    pub async fn find(&self, key: &str) -> Result<Option<RedeemedAt>, String> {
        match self.values.read(&subject(key)).await? {
            Some(m) if !m.is_kv_removal() => serde_json::from_slice(&m.data)
                .map(Some)
                .map_err(|e| format!("the chain's record of this code is unreadable: {e}")),
            _ => Ok(None),
        }
    }
}
