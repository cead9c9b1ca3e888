//! WeChat Pay API v3 signatures: signing our requests with the merchant key, verifying
//! WeChat's responses with the WeChat Pay public key or a platform certificate, and the key
//! files behind both. RSA PKCS#1 v1.5 over SHA-256, from aws-lc-rs.

use crate::secrets::read_private_file;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, KeyPair, RsaKeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};
use std::collections::HashMap;
use std::path::Path;
use x509_cert::der::{Decode, Encode};

pub const SCHEMA: &str = "WECHATPAY2-SHA256-RSA2048";
/// A brand's requests (product coupons, 品牌直连): the same signature, the brand's id.
pub const BRAND_SCHEMA: &str = "WECHATPAY-BRAND-SHA256-RSA2048";
/// Responses whose timestamp is this far from our clock are refused (all official SDKs).
pub const MAX_RESPONSE_SKEW_S: i64 = 300;

/// `METHOD\nPATH?QUERY\nTIMESTAMP\nNONCE\nBODY\n`: what a request signature covers. `url` is
/// the path and query without the host; `body` is exactly the bytes sent (empty for GET).
pub fn request_message(
    method: &str,
    url: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut m = format!("{method}\n{url}\n{timestamp}\n{nonce}\n").into_bytes();
    m.extend_from_slice(body);
    m.push(b'\n');
    m
}

/// `TIMESTAMP\nNONCE\nBODY\n`: what a response signature covers.
pub fn response_message(timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut m = format!("{timestamp}\n{nonce}\n").into_bytes();
    m.extend_from_slice(body);
    m.push(b'\n');
    m
}

/// An RSA key that signs (the merchant's API key; the simulator's platform key).
pub struct Signer {
    key: RsaKeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for Signer {
    /// Never prints key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer(RSA-{})", self.key.public_modulus_len() * 8)
    }
}

impl Signer {
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Signer, String> {
        let key = RsaKeyPair::from_pkcs8(der).map_err(|e| match e.description_() {
            "TooSmall" => "an RSA key under 2048 bits; WeChat Pay needs 2048 to 4096".to_string(),
            "TooLarge" => "an RSA key over 8192 bits; WeChat Pay needs 2048 to 4096".to_string(),
            other => format!("not an RSA PKCS#8 key: {other}"),
        })?;
        let bits = key.public_modulus_len() * 8;
        if !(2048..=4096).contains(&bits) {
            return Err(format!(
                "an RSA key of {bits} bits; WeChat Pay needs 2048 to 4096"
            ));
        }
        Ok(Signer {
            key,
            rng: SystemRandom::new(),
        })
    }

    pub fn from_pem(pem: &[u8]) -> Result<Signer, String> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem)
            .map_err(|e| format!("not a PKCS#8 PEM private key (BEGIN PRIVATE KEY): {e:?}"))?;
        Self::from_pkcs8_der(der.secret_pkcs8_der())
    }

    /// Reads the merchant's private key, refusing a file others can read.
    pub fn from_file(path: &Path) -> Result<Signer, String> {
        let pem = read_private_file(path)?;
        Self::from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Standard base64 of the PKCS#1 v1.5 SHA-256 signature over `message`.
    pub fn sign(&self, message: &[u8]) -> Result<String, String> {
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(&signature::RSA_PKCS1_SHA256, &self.rng, message, &mut sig)
            .map_err(|_| "RSA signing failed".to_string())?;
        Ok(B64.encode(sig))
    }

    /// The public half as SubjectPublicKeyInfo DER.
    pub fn public_spki_der(&self) -> Result<Vec<u8>, String> {
        use aws_lc_rs::encoding::AsDer;
        self.key
            .public_key()
            .as_der()
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| "cannot encode the public key".to_string())
    }
}

/// How our requests are signed: by a merchant or service provider (`WECHATPAY2-SHA256-RSA2048
/// mchid="…",…`), or by a brand (`WECHATPAY-BRAND-SHA256-RSA2048 brand_id="…",…`, product
/// coupons). The message signed is the same; brand requests also carry `Wechatpay-Serial`,
/// the id of the WeChat Pay public key the brand verifies replies with.
pub struct RequestAuth {
    pub caller: Caller,
    /// The API certificate serial of `signer`'s key.
    pub serial_no: String,
    pub signer: Signer,
}

impl RequestAuth {
    /// Our `Authorization` header for one request.
    pub fn authorization(
        &self,
        method: &str,
        url: &str,
        body: &[u8],
        timestamp: i64,
        nonce: &str,
    ) -> Result<String, String> {
        let (schema, field, who) = match &self.caller {
            Caller::Merchant(mchid) => (SCHEMA, "mchid", mchid),
            Caller::Brand(brand_id) => (BRAND_SCHEMA, "brand_id", brand_id),
        };
        let sig = self
            .signer
            .sign(&request_message(method, url, timestamp, nonce, body))?;
        Ok(format!(
            "{schema} {field}=\"{who}\",nonce_str=\"{nonce}\",timestamp=\"{timestamp}\",serial_no=\"{}\",signature=\"{sig}\"",
            self.serial_no
        ))
    }
}

/// Who signed a request: a merchant (its mchid) or a brand (its brand id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Merchant(String),
    Brand(String),
}

/// Parses either schema's `Authorization` header (field order free), as WeChat Pay does.
pub fn parse_any_authorization(header: &str) -> Result<(Caller, Authorization), String> {
    if header.starts_with(BRAND_SCHEMA) {
        let mut a = parse_with(header, BRAND_SCHEMA, "brand_id")?;
        let brand = std::mem::take(&mut a.mchid);
        return Ok((Caller::Brand(brand), a));
    }
    let a = parse_authorization(header)?;
    Ok((Caller::Merchant(a.mchid.clone()), a))
}

/// The fields of an `Authorization` header (`WECHATPAY2-SHA256-RSA2048 k="v",...`; for a
/// brand's, `mchid` holds its `brand_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub mchid: String,
    pub nonce_str: String,
    pub timestamp: i64,
    pub serial_no: String,
    pub signature: String,
}

/// Parses an Authorization header (field order free), as WeChat — and our simulator — does.
pub fn parse_authorization(header: &str) -> Result<Authorization, String> {
    parse_with(header, SCHEMA, "mchid")
}

/// The header's fields under `schema`; `who` names the caller's field (put in `mchid`).
fn parse_with(header: &str, schema: &str, who: &str) -> Result<Authorization, String> {
    let rest = header
        .strip_prefix(schema)
        .ok_or_else(|| format!("schema is not {schema}"))?;
    if !rest.starts_with(' ') {
        return Err("no space after the schema".into());
    }
    let mut fields: HashMap<&str, &str> = HashMap::new();
    for part in rest.trim().split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| format!("field {part:?} has no '='"))?;
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .ok_or_else(|| format!("field {k} is not quoted"))?;
        if fields.insert(k, v).is_some() {
            return Err(format!("field {k} appears twice"));
        }
    }
    let get = |k: &str| {
        fields
            .get(k)
            .map(|v| v.to_string())
            .ok_or_else(|| format!("field {k} is missing"))
    };
    let ts = get("timestamp")?;
    // Unix seconds, 10 digits until 2286. A leading zero would read as a time before 2001
    // (found by the pay_headers fuzz target); no signer writes one.
    if ts.len() != 10 || !ts.bytes().all(|b| b.is_ascii_digit()) || ts.starts_with('0') {
        return Err("timestamp is not 10 digits of Unix time".into());
    }
    Ok(Authorization {
        mchid: get(who)?,
        nonce_str: get("nonce_str")?,
        timestamp: ts.parse().map_err(|_| "timestamp is not a number")?,
        serial_no: get("serial_no")?,
        signature: get("signature")?,
    })
}

/// Checks an RSA PKCS#1 v1.5 SHA-256 signature (standard base64) with a public key (SPKI or
/// PKCS#1 DER). Anything malformed — including WeChat's `WECHATPAY/SIGNTEST/` probes — is
/// simply "does not verify".
pub fn verify_signature(public_key_der: &[u8], message: &[u8], signature_b64: &str) -> bool {
    let Ok(sig) = B64.decode(signature_b64.trim()) else {
        return false;
    };
    UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, public_key_der)
        .verify(message, &sig)
        .is_ok()
}

/// Why a response is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("response header {0} is missing")]
    MissingHeader(&'static str),
    #[error("response signed with unknown key {0:?}")]
    UnknownSerial(String),
    #[error("response timestamp is {0} s away from this till's clock")]
    Stale(i64),
    #[error("response timestamp is not a number")]
    BadTimestamp,
    #[error("response signature does not verify")]
    BadSignature,
}

/// The response headers that verification needs.
#[derive(Debug, Clone, Default)]
pub struct SignedHeaders<'a> {
    pub timestamp: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub serial: Option<&'a str>,
}

/// The keys WeChat Pay signs responses with: the WeChat Pay public key (by its
/// `PUB_KEY_ID_...`) and/or older merchants' platform certificates (by hex serial).
#[derive(Debug, Clone, Default)]
pub struct Verifier {
    keys: HashMap<String, Vec<u8>>,
}

impl Verifier {
    /// Adds a key under its id (public key id, or certificate serial in hex).
    pub fn add(&mut self, id: &str, spki_der: Vec<u8>) {
        self.keys.insert(id.to_ascii_uppercase(), spki_der);
    }

    pub fn add_public_key_pem(&mut self, id: &str, pem: &[u8]) -> Result<(), String> {
        let der = SubjectPublicKeyInfoDer::from_pem_slice(pem)
            .map_err(|e| format!("not a PEM public key (BEGIN PUBLIC KEY): {e:?}"))?;
        check_rsa_public_key(der.as_ref())?;
        self.add(id, der.as_ref().to_vec());
        Ok(())
    }

    /// Adds a platform certificate; returns its serial (hex, upper case).
    pub fn add_certificate_pem(&mut self, pem: &[u8]) -> Result<String, String> {
        let der = CertificateDer::from_pem_slice(pem)
            .map_err(|e| format!("not a PEM certificate (BEGIN CERTIFICATE): {e:?}"))?;
        let cert = x509_cert::Certificate::from_der(der.as_ref())
            .map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let serial: String = cert
            .tbs_certificate
            .serial_number
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        let serial = serial.trim_start_matches("00").to_string();
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| format!("certificate's public key: {e}"))?;
        check_rsa_public_key(&spki)?;
        self.add(&serial, spki);
        Ok(serial)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies a response: the key `Wechatpay-Serial` names, the signature over
    /// `TIMESTAMP\nNONCE\nBODY\n`, and the timestamp within 300 s of `now_s`.
    pub fn verify(&self, h: &SignedHeaders, body: &[u8], now_s: i64) -> Result<(), VerifyError> {
        let ts = h
            .timestamp
            .ok_or(VerifyError::MissingHeader("Wechatpay-Timestamp"))?;
        let nonce = h
            .nonce
            .ok_or(VerifyError::MissingHeader("Wechatpay-Nonce"))?;
        let sig = h
            .signature
            .ok_or(VerifyError::MissingHeader("Wechatpay-Signature"))?;
        let serial = h
            .serial
            .ok_or(VerifyError::MissingHeader("Wechatpay-Serial"))?;
        let key = self
            .keys
            .get(&serial.to_ascii_uppercase())
            .ok_or_else(|| VerifyError::UnknownSerial(serial.to_string()))?;
        let t: i64 = ts.trim().parse().map_err(|_| VerifyError::BadTimestamp)?;
        let skew = now_s - t;
        if skew.abs() >= MAX_RESPONSE_SKEW_S {
            return Err(VerifyError::Stale(skew));
        }
        if verify_signature(key, &response_message(ts, nonce, body), sig) {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
        }
    }
}

fn check_rsa_public_key(spki_der: &[u8]) -> Result<(), String> {
    // A signature check against an empty message tells us nothing about validity, so parse it
    // as aws-lc-rs would at verification time.
    aws_lc_rs::rsa::PublicEncryptingKey::from_der(spki_der)
        .map(|_| ())
        .map_err(|_| "not an RSA public key".to_string())
}

/// Reads a public key or certificate file (no secrecy needed).
pub fn read_public_file(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_KEY: &[u8] = include_bytes!("../../tests/data/wechat-test-key.pem");
    const CERT: &[u8] = include_bytes!("../../tests/data/platform_cert.pem");
    const CERT_KEY: &[u8] = include_bytes!("../../tests/data/platform_key.pem");
    /// wechatpay-go, core/auth/signers/sha256withrsa_signer_test.go.
    const VECTOR: &str = "BKyAfU4iMCuvXMXS0Wzam3V/cnxZ+JaqigPM5OhljS2iOT95OO6Fsuml2JkFANJU9K6q9bLlDhPXuoVz+pp4hAm6pHU4ld815U4jsKu1RkyaII+1CYBUYC8TK0XtJ8FwUXXz8vZHh58rrAVN1XwNyvD1vfpxrMT4SL536GLwvpUHlCqIMzoZUguLli/K8V29QiOhuH6IEqLNJn8e9b3nwNcQ7be3CzYGpDAKBfDGPCqCv8Rw5zndhlffk2FEA70G4hvMwe51qMN/RAJbknXG23bSlObuTCN7Ndj1aJGH6/L+hdwfLpUtJm4QYVazzW7DFD27EpSQEqA8bX9+8m1rLg==";

    #[test]
    fn published_signing_vector() {
        let s = Signer::from_pem(TEST_KEY).unwrap();
        assert_eq!(s.sign(b"source").unwrap(), VECTOR);
    }

    #[test]
    fn messages() {
        assert_eq!(
            request_message(
                "GET",
                "/v3/certificates?a=1&b=2",
                1554208460,
                "593BEC0C930BF1AFEB40B4A08C8FB242",
                b""
            ),
            b"GET\n/v3/certificates?a=1&b=2\n1554208460\n593BEC0C930BF1AFEB40B4A08C8FB242\n\n"
        );
        assert_eq!(
            request_message(
                "POST",
                "/v3/marketing/busifavor/coupons/use",
                1,
                "n",
                br#"{"a":1}"#
            ),
            b"POST\n/v3/marketing/busifavor/coupons/use\n1\nn\n{\"a\":1}\n"
        );
        assert_eq!(response_message("1", "n", b"{}"), b"1\nn\n{}\n");
    }

    #[test]
    fn authorization_round_trip_and_parse_errors() {
        let auth = RequestAuth {
            caller: Caller::Merchant("1900000109".into()),
            serial_no: "5157F09EFDC096DE15EBE81A47057A7232F1B8E1".into(),
            signer: Signer::from_pem(TEST_KEY).unwrap(),
        };
        let h = auth
            .authorization("POST", "/v3/x", b"{}", 1554208460, "NONCE")
            .unwrap();
        let a = parse_authorization(&h).unwrap();
        assert_eq!(a.mchid, "1900000109");
        assert_eq!(a.timestamp, 1554208460);
        let spki = auth.signer.public_spki_der().unwrap();
        assert!(verify_signature(
            &spki,
            &request_message("POST", "/v3/x", 1554208460, "NONCE", b"{}"),
            &a.signature
        ));
        assert!(!verify_signature(
            &spki,
            &request_message("POST", "/v3/x", 1554208460, "NONCE", b"{ }"),
            &a.signature
        ));
        // Field order is free.
        let reordered = format!(
            "{SCHEMA} signature=\"{}\",serial_no=\"S\",timestamp=\"1554208460\",nonce_str=\"N\",mchid=\"M\"",
            a.signature
        );
        assert_eq!(parse_authorization(&reordered).unwrap().serial_no, "S");
        for bad in [
            "Bearer x",
            "WECHATPAY2-SHA256-RSA2048mchid=\"1\"",
            "WECHATPAY2-SHA256-RSA2048 mchid=1",
            "WECHATPAY2-SHA256-RSA2048 mchid=\"1\",nonce_str=\"n\",timestamp=\"123\",serial_no=\"s\",signature=\"x\"",
            "WECHATPAY2-SHA256-RSA2048 mchid=\"1\",mchid=\"2\"",
            // Ten digits, but a leading zero (found by fuzzing).
            "WECHATPAY2-SHA256-RSA2048 mchid=\"1\",nonce_str=\"n\",timestamp=\"0345977646\",serial_no=\"s\",signature=\"x\"",
        ] {
            assert!(parse_authorization(bad).is_err(), "{bad}");
        }
    }

    fn hdr<'a>(serial: &'a str, sig: &'a str, ts: &'a str) -> SignedHeaders<'a> {
        SignedHeaders {
            timestamp: Some(ts),
            nonce: Some("NONCE"),
            signature: Some(sig),
            serial: Some(serial),
        }
    }

    fn signed(signer: &Signer, ts: i64, body: &[u8]) -> (String, String) {
        let ts = ts.to_string();
        let sig = signer.sign(&response_message(&ts, "NONCE", body)).unwrap();
        (ts, sig)
    }

    #[test]
    fn verify_with_public_key_stale_unknown_probe_tampered() {
        let wechat = Signer::from_pem(TEST_KEY).unwrap();
        let mut v = Verifier::default();
        v.add("PUB_KEY_ID_0114", wechat.public_spki_der().unwrap());
        let body = br#"{"stock_id":"1212"}"#;
        let now = 1_700_000_000;
        let (ts, sig) = signed(&wechat, now, body);
        let h = hdr;
        assert_eq!(
            v.verify(&h("PUB_KEY_ID_0114", &sig, &ts), body, now + 10),
            Ok(())
        );
        assert_eq!(
            v.verify(
                &h("PUB_KEY_ID_0114", &sig, &ts),
                br#"{"stock_id":"1213"}"#,
                now
            ),
            Err(VerifyError::BadSignature),
            "tampered body"
        );
        assert_eq!(
            v.verify(&h("PUB_KEY_ID_0114", &sig, &ts), body, now + 300),
            Err(VerifyError::Stale(300))
        );
        assert_eq!(
            v.verify(&h("PUB_KEY_ID_9999", &sig, &ts), body, now),
            Err(VerifyError::UnknownSerial("PUB_KEY_ID_9999".into()))
        );
        for probe in [
            "WECHATPAY/SIGNTEST/BKyAfU4iMCuvXMXS0Wzam3V/cnxZ",
            "WECHATPAY/SIGNTEST/",
            "",
            "%%%",
        ] {
            assert_eq!(
                v.verify(&h("PUB_KEY_ID_0114", probe, &ts), body, now),
                Err(VerifyError::BadSignature),
                "{probe}"
            );
        }
        let missing = SignedHeaders {
            signature: None,
            ..h("PUB_KEY_ID_0114", &sig, &ts)
        };
        assert_eq!(
            v.verify(&missing, body, now),
            Err(VerifyError::MissingHeader("Wechatpay-Signature"))
        );
    }

    #[test]
    fn verify_with_a_platform_certificate() {
        let mut v = Verifier::default();
        let serial = v.add_certificate_pem(CERT).unwrap();
        assert_eq!(serial, "5157F09EFDC096DE15EBE81A47057A7232F1B8E1");
        let platform = Signer::from_pem(CERT_KEY).unwrap();
        let now = 1_700_000_000;
        let (ts, sig) = signed(&platform, now, b"{}");
        let h = SignedHeaders {
            timestamp: Some(&ts),
            nonce: Some("NONCE"),
            signature: Some(&sig),
            serial: Some("5157f09efdc096de15ebe81a47057a7232f1b8e1"),
        };
        assert_eq!(v.verify(&h, b"{}", now), Ok(()));
        // The vector key did not sign it.
        let other = Signer::from_pem(TEST_KEY).unwrap();
        let (_, forged) = signed(&other, now, b"{}");
        let f = SignedHeaders {
            signature: Some(&forged),
            ..h
        };
        assert_eq!(v.verify(&f, b"{}", now), Err(VerifyError::BadSignature));
    }

    #[test]
    fn key_files_are_checked() {
        assert!(
            Signer::from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .is_err()
        );
        assert!(Signer::from_pem(CERT).unwrap_err().contains("PKCS#8"));
        let mut v = Verifier::default();
        assert!(v.add_public_key_pem("X", CERT).is_err());
        assert!(v.add_certificate_pem(TEST_KEY).is_err());
    }

    #[test]
    fn a_brand_signs_with_its_own_schema_and_either_parses() {
        let auth = RequestAuth {
            caller: Caller::Brand("120344".into()),
            serial_no: "5157F09EFDC096DE15EBE81A47057A7232F1B8E1".into(),
            signer: Signer::from_pem(TEST_KEY).unwrap(),
        };
        let url = "/brand/marketing/product-coupon/users/oUser/coupons/PC0001/confirm";
        let h = auth
            .authorization("POST", url, b"{}", 1_796_000_000, "n0nce")
            .unwrap();
        assert!(
            h.starts_with("WECHATPAY-BRAND-SHA256-RSA2048 brand_id=\"120344\","),
            "{h}"
        );
        let (caller, a) = parse_any_authorization(&h).unwrap();
        assert_eq!(caller, Caller::Brand("120344".into()));
        let public = Signer::from_pem(TEST_KEY)
            .unwrap()
            .public_spki_der()
            .unwrap();
        let message = request_message("POST", url, a.timestamp, &a.nonce_str, b"{}");
        assert!(verify_signature(&public, &message, &a.signature));
        // A brand header is no merchant's, and a merchant's parses as one.
        assert!(parse_authorization(&h).is_err());
        let m = RequestAuth {
            caller: Caller::Merchant("1900000109".into()),
            serial_no: "S".into(),
            signer: Signer::from_pem(TEST_KEY).unwrap(),
        }
        .authorization("POST", url, b"{}", 1_796_000_000, "n")
        .unwrap();
        assert_eq!(
            parse_any_authorization(&m).unwrap().0,
            Caller::Merchant("1900000109".into())
        );
        assert!(parse_any_authorization(&h.replace("brand_id", "mchid")).is_err());
    }
}
