//! A simulated WeChat Pay notifier: builds notifications as WeChat Pay does (the resource
//! encrypted with AEAD_AES_256_GCM under the APIv3 key, the body signed with WeChat Pay's
//! key, `Wechatpay-Serial` naming it) and POSTs them to the merchant's URL, sending the same
//! notification again on anything but 2xx, or silence, as WeChat Pay does (on a schedule
//! the caller gives: WeChat Pay's own runs over a day).

use crate::wechatpay::notify::ApiV3Key;
use crate::wechatpay::pay_sign::{Signer, response_message};
use serde_json::json;
use std::time::Duration;

/// WeChat Pay waits this long for an answer before it counts the try as failed.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(5);

pub struct Notifier {
    signer: Signer,
    /// The id HQ knows the signing key by (`PUB_KEY_ID_…`).
    key_id: String,
    apiv3: ApiV3Key,
    url: String,
    http: reqwest::Client,
}

/// A notification ready to send: its body, and the values its headers are made of.
#[derive(Debug, Clone)]
pub struct Notice {
    pub body: Vec<u8>,
    pub timestamp: String,
    pub nonce: String,
    pub signature: String,
    pub serial: String,
}

/// How a delivery went: the status of each try (`None`: no answer in time, or no
/// connection).
#[derive(Debug, Clone, Default)]
pub struct Delivery {
    pub statuses: Vec<Option<u16>>,
}

impl Delivery {
    pub fn delivered(&self) -> bool {
        self.statuses
            .last()
            .is_some_and(|s| s.is_some_and(|s| (200..300).contains(&s)))
    }
}

fn random_token(n: usize) -> String {
    (0..n).map(|_| fastrand::alphanumeric()).collect()
}

impl Notifier {
    pub fn new(
        signer: Signer,
        key_id: &str,
        apiv3_key: &[u8],
        url: &str,
    ) -> Result<Notifier, String> {
        Ok(Notifier {
            signer,
            key_id: key_id.into(),
            apiv3: ApiV3Key::from_bytes(apiv3_key)?,
            url: url.into(),
            http: reqwest::Client::builder()
                .timeout(ANSWER_WITHIN)
                .build()
                .map_err(|e| e.to_string())?,
        })
    }

    /// The body of notification `id`: its envelope, and `resource` encrypted.
    pub fn body(
        &self,
        id: &str,
        event_type: &str,
        resource: &serde_json::Value,
    ) -> Result<Vec<u8>, String> {
        let nonce = random_token(12);
        let aad = if event_type.starts_with("PRODUCT_COUPON.") {
            "product_coupon"
        } else {
            "coupon"
        };
        let ciphertext = self
            .apiv3
            .seal(resource.to_string().as_bytes(), &nonce, aad)?;
        Ok(json!({
            "id": id,
            "create_time": chrono::Utc::now().to_rfc3339(),
            "event_type": event_type,
            "resource_type": "encrypt-resource",
            "summary": "redeemd simulator",
            "resource": {
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": ciphertext,
                "nonce": nonce,
                "associated_data": aad,
                "original_type": aad,
            }
        })
        .to_string()
        .into_bytes())
    }

    /// `body` signed now (each try is signed anew, as WeChat Pay does).
    pub fn sign(&self, body: Vec<u8>, now_s: i64) -> Result<Notice, String> {
        let timestamp = now_s.to_string();
        let nonce = random_token(32);
        let signature = self
            .signer
            .sign(&response_message(&timestamp, &nonce, &body))?;
        Ok(Notice {
            body,
            timestamp,
            nonce,
            signature,
            serial: self.key_id.clone(),
        })
    }

    /// One POST of `n`; its status, or `None` without an answer in time.
    pub async fn post(&self, n: &Notice) -> Option<u16> {
        self.http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("wechatpay-timestamp", &n.timestamp)
            .header("wechatpay-nonce", &n.nonce)
            .header("wechatpay-signature", &n.signature)
            .header("wechatpay-serial", &n.serial)
            .body(n.body.clone())
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    /// Sends `body` until it is answered 2xx, waiting `retries[i]` before try `i + 2`.
    pub async fn deliver(&self, body: Vec<u8>, retries: &[Duration]) -> Delivery {
        let mut d = Delivery::default();
        let mut waits = retries.iter();
        loop {
            let status = match self.sign(body.clone(), chrono::Utc::now().timestamp()) {
                Ok(n) => self.post(&n).await,
                Err(_) => None,
            };
            d.statuses.push(status);
            if d.delivered() {
                return d;
            }
            match waits.next() {
                Some(w) => tokio::time::sleep(*w).await,
                None => return d,
            }
        }
    }
}
