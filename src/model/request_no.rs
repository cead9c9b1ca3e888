//! The request numbers WeChat Pay deduplicates by: a coupon's use (`use_request_no`) and
//! its return (`return_request_no`). Each is fixed in a commit before its first call, and
//! every retry sends the same one.

use crate::clock::Millis;

/// A `use_request_no` unique across the merchant's tills, at most 32 characters:
/// `RD` + 8 hex of the till's name + 11 hex of the scan's millisecond + 8 random hex.
pub fn new_use_request_no(till: &str, at: Millis) -> String {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let mut h: u32 = 0x811c_9dc5;
    for b in till.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!(
        "RD{h:08X}{:011X}{:08X}",
        at.max(0) & 0xFFF_FFFF_FFFF,
        fastrand::u32(..)
    )
}

/// A `return_request_no` unique across the merchant's tills, ≤ 32 characters.
pub fn new_return_request_no(till: &str, at: Millis) -> String {
    format!("RT{}", &new_use_request_no(till, at)[2..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_request_no_fits_and_differs() {
        let a = new_use_request_no("store12-till3", 1_763_800_000_000);
        let b = new_use_request_no("store12-till3", 1_763_800_000_000);
        let c = new_use_request_no("store12-till4", 1_763_800_000_000);
        assert!(a.len() <= 32, "{a}");
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(a, b);
        assert_ne!(a[..10], c[..10], "the till is part of it");
    }

    #[test]
    fn return_request_no_is_a_use_request_no_with_its_own_prefix() {
        let r = new_return_request_no("store12-till3", 1_763_800_000_000);
        assert!(r.starts_with("RT") && r.len() <= 32, "{r}");
    }
}
