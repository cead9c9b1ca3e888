//! Masking of coupon and payment codes for logs and refusal records.
//!
//! A full code is a bearer credential (a payment code can move money), so anything that
//! leaves the ledger's own `code` column goes through here first.

/// How many trailing characters stay readable: enough for a cashier or manager to match a
/// slip, too few to redeem or charge anything.
pub const VISIBLE_TAIL: usize = 4;

/// Replaces all but the last [`VISIBLE_TAIL`] characters with `*`. Codes of four characters
/// or fewer are masked entirely (showing them would show all of them).
pub fn mask(code: &str) -> String {
    let chars: Vec<char> = code.chars().collect();
    if chars.len() <= VISIBLE_TAIL {
        return "*".repeat(chars.len());
    }
    let hidden = chars.len() - VISIBLE_TAIL;
    let mut out = "*".repeat(hidden);
    out.extend(&chars[hidden..]);
    out
}

/// Renders raw scanner bytes printable (control bytes and invalid UTF-8 as `\xNN`), then
/// masks the result, so an unreadable scan can be stored and shown without leaking it.
pub fn mask_raw(bytes: &[u8]) -> String {
    mask(&escape(bytes))
}

/// Escapes control bytes and bytes that are not valid UTF-8 as `\xNN`.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                for b in c.to_string().bytes() {
                    out.push_str(&format!("\\x{b:02X}"));
                }
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_last_four() {
        assert_eq!(mask("123456789012"), "********9012");
        assert_eq!(mask("12345"), "*2345");
        assert_eq!(mask("1234"), "****");
        assert_eq!(mask(""), "");
    }

    #[test]
    fn escapes_control_and_invalid_bytes() {
        assert_eq!(escape(b"ab\x07c"), "ab\\x07c");
        assert_eq!(escape(b"a\xffb"), "a\\xFFb");
        assert_eq!(mask_raw(b"123456\x1b"), "******\\x1B");
    }
}
