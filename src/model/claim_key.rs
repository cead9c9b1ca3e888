//! The store-wide claim on a code: its key. Codes never sit in NATS (or reach HQ) in clear:
//! a claim's key is HMAC-SHA256(code_key, code) in hex, with a secret the chain's tills share.

use crate::model::code::Code;
use std::fmt;

/// The chain's claim secret (`[store] code_key_file`). `Debug` never shows it.
#[derive(Clone)]
pub struct CodeKey(aws_lc_rs::hmac::Key);

/// The shortest secret accepted, in bytes.
pub const MIN_CODE_KEY: usize = 32;

impl CodeKey {
    /// From the file's bytes (trailing whitespace ignored, so an editor's newline does not
    /// make one till's keys differ from another's).
    pub fn from_bytes(bytes: &[u8]) -> Result<CodeKey, String> {
        let end = bytes
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(0, |i| i + 1);
        let secret = &bytes[..end];
        if secret.len() < MIN_CODE_KEY {
            return Err(format!(
                "the code key has {} bytes; at least {MIN_CODE_KEY} are needed (e.g. head -c 48 /dev/urandom | base64 > code.key)",
                secret.len()
            ));
        }
        Ok(CodeKey(aws_lc_rs::hmac::Key::new(
            aws_lc_rs::hmac::HMAC_SHA256,
            secret,
        )))
    }

    /// The claim key of a code: 64 lower-case hex digits.
    pub fn claim_key(&self, code: &Code) -> String {
        let tag = aws_lc_rs::hmac::sign(&self.0, code.expose().as_bytes());
        tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for CodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeKey(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_keys_are_hmac_sha256_in_hex() {
        // As `printf %s 123456789012 | openssl dgst -sha256 -hmac 0123456789abcdef0123456789abcdef`.
        let key = CodeKey::from_bytes(b"0123456789abcdef0123456789abcdef\n").unwrap();
        let k = key.claim_key(&Code::new("123456789012"));
        assert_eq!(
            k,
            "feb309bf672447eac32a5799c8a34c6b2001bcaeb001b9ee32184e1b6b9649ee"
        );
        assert!(
            k.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(k, key.claim_key(&Code::new("123456789012")), "stable");
        assert_ne!(k, key.claim_key(&Code::new("123456789013")));
        let other = CodeKey::from_bytes(b"another-chain-secret-0123456789abcdef").unwrap();
        assert_ne!(k, other.claim_key(&Code::new("123456789012")), "keyed");
        assert!(!k.contains("123456789012"));
        assert!(
            CodeKey::from_bytes(b"short\n")
                .unwrap_err()
                .contains("at least 32")
        );
        assert_eq!(format!("{key:?}"), "CodeKey(…)");
    }
}
