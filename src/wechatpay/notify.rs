//! WeChat Pay's notifications (回调): what makes one trusted, and its resource opened.
//!
//! A notification is signed as a reply is (`TIMESTAMP\nNONCE\nBODY\n`, the WeChat Pay public
//! key named by `Wechatpay-Serial`, at most 5 minutes off) and carries its event encrypted
//! with AEAD_AES_256_GCM under the APIv3 key: the resource's `nonce` (12 bytes), its
//! `associated_data`, and base64 ciphertext with the 16-byte tag at its end. Signature
//! probes (`WECHATPAY/SIGNTEST/…`) must fail, and do.

use super::pay_sign::{SignedHeaders, Verifier, VerifyError};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;

/// The largest notification body accepted. WeChat Pay's are about 1 KiB; this leaves room
/// for any event it adds without letting a stranger make HQ buffer much.
pub const MAX_NOTIFY_BODY: usize = 64 * 1024;

/// The APIv3 key (brand mode: the brand's API key): 32 bytes. `Debug` never shows it.
pub struct ApiV3Key(LessSafeKey);

impl std::fmt::Debug for ApiV3Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiV3Key(…)")
    }
}

impl ApiV3Key {
    /// From the key file's bytes: exactly 32, after trailing whitespace (an editor's
    /// newline) is dropped.
    pub fn from_bytes(bytes: &[u8]) -> Result<ApiV3Key, String> {
        let key = bytes.trim_ascii_end();
        if key.len() != 32 {
            return Err(format!(
                "an APIv3 key is 32 bytes; this file holds {}",
                key.len()
            ));
        }
        UnboundKey::new(&AES_256_GCM, key)
            .map(|k| ApiV3Key(LessSafeKey::new(k)))
            .map_err(|_| "not an AES-256 key".to_string())
    }

    /// Encrypts a resource as WeChat Pay does: base64 of ciphertext and tag. The
    /// simulated notifier's side; `nonce` must be 12 bytes.
    pub fn seal(&self, plaintext: &[u8], nonce: &str, aad: &str) -> Result<String, String> {
        let nonce = nonce_of(nonce).ok_or("a resource nonce is 12 bytes")?;
        let mut data = plaintext.to_vec();
        self.0
            .seal_in_place_append_tag(nonce, Aad::from(aad.as_bytes()), &mut data)
            .map_err(|_| "cannot encrypt".to_string())?;
        Ok(B64.encode(data))
    }

    fn open(&self, ciphertext_b64: &str, nonce: &str, aad: &str) -> Option<Vec<u8>> {
        let nonce = nonce_of(nonce)?;
        let mut data = B64.decode(ciphertext_b64).ok()?;
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut data)
            .ok()?;
        Some(plain.to_vec())
    }
}

fn nonce_of(nonce: &str) -> Option<Nonce> {
    let bytes: [u8; NONCE_LEN] = nonce.as_bytes().try_into().ok()?;
    Some(Nonce::assume_unique_for_key(bytes))
}

/// Why a notification was refused: the label of `redeemd_notify_refused_total{reason}`.
/// The sender is never told which (the answer is the same for all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    TooLarge,
    MissingHeader,
    UnknownSerial,
    Stale,
    SignTest,
    BadSignature,
    Malformed,
    Undecryptable,
}

impl Refused {
    pub const ALL: [Refused; 8] = [
        Refused::TooLarge,
        Refused::MissingHeader,
        Refused::UnknownSerial,
        Refused::Stale,
        Refused::SignTest,
        Refused::BadSignature,
        Refused::Malformed,
        Refused::Undecryptable,
    ];

    pub fn reason(self) -> &'static str {
        match self {
            Refused::TooLarge => "too_large",
            Refused::MissingHeader => "missing_header",
            Refused::UnknownSerial => "unknown_serial",
            Refused::Stale => "stale",
            Refused::SignTest => "signtest",
            Refused::BadSignature => "bad_signature",
            Refused::Malformed => "malformed",
            Refused::Undecryptable => "undecryptable",
        }
    }
}

/// A trusted notification: its envelope, and its resource decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub id: String,
    pub event_type: String,
    pub create_time: String,
    /// The decrypted resource (JSON). It holds a full coupon code: never logged.
    pub resource: Vec<u8>,
}

#[derive(Deserialize)]
struct Envelope {
    id: String,
    #[serde(default)]
    create_time: String,
    event_type: String,
    resource: Resource,
}

#[derive(Deserialize)]
struct Resource {
    algorithm: String,
    ciphertext: String,
    nonce: String,
    #[serde(default)]
    associated_data: String,
}

/// The event types a notification may name: upper-case words joined by dots
/// (`PRODUCT_COUPON.SEND`), which also makes them safe in a NATS subject.
fn event_type_ok(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 64
        && t.split('.').all(|w| {
            !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'_' || b.is_ascii_digit())
        })
}

/// Opens a notification: its size, its signature, its envelope and its resource, in that
/// order (nothing is parsed before the signature holds). Pure but for the clock it is given.
pub fn open(
    verifier: &Verifier,
    key: &ApiV3Key,
    headers: &SignedHeaders,
    body: &[u8],
    now_s: i64,
) -> Result<Notification, Refused> {
    if body.len() > MAX_NOTIFY_BODY {
        return Err(Refused::TooLarge);
    }
    if headers
        .signature
        .is_some_and(|s| s.starts_with("WECHATPAY/SIGNTEST/"))
    {
        return Err(Refused::SignTest);
    }
    verifier.verify(headers, body, now_s).map_err(|e| match e {
        VerifyError::MissingHeader(_) => Refused::MissingHeader,
        VerifyError::UnknownSerial(_) => Refused::UnknownSerial,
        VerifyError::Stale(_) | VerifyError::BadTimestamp => Refused::Stale,
        VerifyError::BadSignature => Refused::BadSignature,
    })?;
    resource_of(key, body)
}

/// A kept notification's envelope and resource, decrypted again (its signature was checked
/// when it was received, and the stream keeps the body as it came).
pub fn resource_of(key: &ApiV3Key, body: &[u8]) -> Result<Notification, Refused> {
    let envelope: Envelope = serde_json::from_slice(body).map_err(|_| Refused::Malformed)?;
    if envelope.id.is_empty()
        || envelope.id.len() > 64
        || !envelope.id.bytes().all(|b| b.is_ascii_graphic())
        || !event_type_ok(&envelope.event_type)
        || envelope.resource.algorithm != "AEAD_AES_256_GCM"
    {
        return Err(Refused::Malformed);
    }
    let r = &envelope.resource;
    let resource = key
        .open(&r.ciphertext, &r.nonce, &r.associated_data)
        .ok_or(Refused::Undecryptable)?;
    if serde_json::from_slice::<serde_json::Value>(&resource).is_err() {
        return Err(Refused::Malformed);
    }
    Ok(Notification {
        id: envelope.id,
        event_type: envelope.event_type,
        create_time: envelope.create_time,
        resource,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechatpay::pay_sign::{Signer, response_message};

    const KEY: &[u8] = b"0123456789abcdef0123456789ABCDEF";
    const TEST_KEY: &[u8] = include_bytes!("../../tests/data/wechat-test-key.pem");
    const NOW: i64 = 1_796_000_000;

    struct Sent {
        body: Vec<u8>,
        timestamp: String,
        nonce: String,
        signature: String,
        serial: String,
    }

    fn verifier(signer: &Signer) -> Verifier {
        let mut v = Verifier::default();
        v.add("PUB_KEY_ID_0001", signer.public_spki_der().unwrap());
        v
    }

    fn send(signer: &Signer, key: &ApiV3Key, event_type: &str, resource: &str) -> Sent {
        let ciphertext = key
            .seal(resource.as_bytes(), "abcdefghijkl", "product_coupon")
            .unwrap();
        let body = serde_json::json!({
            "id": "EV-0001",
            "create_time": "2026-12-04T10:00:00+08:00",
            "event_type": event_type,
            "resource_type": "encrypt-resource",
            "summary": "发券",
            "resource": {
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": ciphertext,
                "nonce": "abcdefghijkl",
                "associated_data": "product_coupon",
                "original_type": "product_coupon",
            }
        })
        .to_string()
        .into_bytes();
        let timestamp = NOW.to_string();
        let nonce = "n0nce".to_string();
        let signature = signer
            .sign(&response_message(&timestamp, &nonce, &body))
            .unwrap();
        Sent {
            body,
            timestamp,
            nonce,
            signature,
            serial: "PUB_KEY_ID_0001".into(),
        }
    }

    fn headers(s: &Sent) -> SignedHeaders<'_> {
        SignedHeaders {
            timestamp: Some(&s.timestamp),
            nonce: Some(&s.nonce),
            signature: Some(&s.signature),
            serial: Some(&s.serial),
        }
    }

    #[test]
    fn a_signed_notification_opens_to_its_resource() {
        let signer = Signer::from_pem(TEST_KEY).unwrap();
        let key = ApiV3Key::from_bytes(KEY).unwrap();
        let s = send(
            &signer,
            &key,
            "PRODUCT_COUPON.SEND",
            r#"{"coupon_code":"PC0001"}"#,
        );
        let n = open(&verifier(&signer), &key, &headers(&s), &s.body, NOW).unwrap();
        assert_eq!(n.id, "EV-0001");
        assert_eq!(n.event_type, "PRODUCT_COUPON.SEND");
        assert_eq!(n.resource, br#"{"coupon_code":"PC0001"}"#);
    }

    /// Every way a notification is refused, each by its own reason.
    #[test]
    fn every_refusal_has_its_reason() {
        let signer = Signer::from_pem(TEST_KEY).unwrap();
        let key = ApiV3Key::from_bytes(KEY).unwrap();
        let other = ApiV3Key::from_bytes(b"ffffffffffffffffffffffffffffffff").unwrap();
        let v = verifier(&signer);
        let good = || send(&signer, &key, "PRODUCT_COUPON.USE", "{}");
        type Case = (&'static str, Box<dyn Fn(&mut Sent)>, i64, Refused);
        let cases: Vec<Case> = vec![
            (
                "oversized",
                Box::new(|s| s.body = vec![b' '; MAX_NOTIFY_BODY + 1]),
                NOW,
                Refused::TooLarge,
            ),
            (
                "probe",
                Box::new(|s| s.signature = "WECHATPAY/SIGNTEST/abc".into()),
                NOW,
                Refused::SignTest,
            ),
            (
                "no nonce",
                Box::new(|s| s.nonce.clear()),
                NOW,
                Refused::BadSignature,
            ),
            (
                "unknown serial",
                Box::new(|s| s.serial = "PUB_KEY_ID_9999".into()),
                NOW,
                Refused::UnknownSerial,
            ),
            (
                "five minutes late",
                Box::new(|_| {}),
                NOW + 300,
                Refused::Stale,
            ),
            (
                "five minutes early",
                Box::new(|_| {}),
                NOW - 300,
                Refused::Stale,
            ),
            (
                "a body changed",
                Box::new(|s| s.body[10] ^= 1),
                NOW,
                Refused::BadSignature,
            ),
        ];
        for (what, change, now, want) in cases {
            let mut s = good();
            change(&mut s);
            assert_eq!(
                open(&v, &key, &headers(&s), &s.body, now),
                Err(want),
                "{what}"
            );
        }
        let s = good();
        let missing = SignedHeaders {
            signature: None,
            ..headers(&s)
        };
        assert_eq!(
            open(&v, &key, &missing, &s.body, NOW),
            Err(Refused::MissingHeader)
        );
        assert_eq!(
            open(&v, &other, &headers(&s), &s.body, NOW),
            Err(Refused::Undecryptable)
        );
        let bad_type = send(&signer, &key, "product_coupon.send", "{}");
        assert_eq!(
            open(&v, &key, &headers(&bad_type), &bad_type.body, NOW),
            Err(Refused::Malformed)
        );
        let not_json = send(&signer, &key, "PRODUCT_COUPON.SEND", "not json");
        assert_eq!(
            open(&v, &key, &headers(&not_json), &not_json.body, NOW),
            Err(Refused::Malformed)
        );
        let reasons: std::collections::HashSet<_> =
            Refused::ALL.iter().map(|r| r.reason()).collect();
        assert_eq!(reasons.len(), Refused::ALL.len());
    }

    #[test]
    fn the_key_is_32_bytes_and_never_shown() {
        assert!(ApiV3Key::from_bytes(b"0123456789abcdef0123456789ABCDEF\n").is_ok());
        assert!(
            ApiV3Key::from_bytes(b"short")
                .unwrap_err()
                .contains("32 bytes")
        );
        let k = ApiV3Key::from_bytes(KEY).unwrap();
        assert!(!format!("{k:?}").contains("0123"));
    }
}
