//! A coupon (or payment) code as read: a bearer credential. Its `Debug` and `Display` show
//! only the last four characters, so a `{:?}` in a log line cannot leak it; the full value
//! is had only through [`Code::expose`] (to send it to WeChat or store it in the ledger) and
//! through serialization (the local API and `redeemd log --json`, which carry full codes).

use crate::mask::mask;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Code(String);

impl Code {
    pub fn new(code: impl Into<String>) -> Code {
        Code(code.into())
    }

    /// The full code. Call it only where the full value must go: WeChat, the ledger's
    /// `code` column, the local API's answer.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// All but the last four characters hidden.
    pub fn masked(&self) -> String {
        mask(&self.0)
    }

    /// The last four characters (all of a shorter code): what leaves the till besides the
    /// code's keyed hash.
    pub fn last4(&self) -> String {
        let tail: Vec<char> = self.0.chars().rev().take(4).collect();
        tail.into_iter().rev().collect()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Code({})", self.masked())
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl PartialEq<str> for Code {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl From<&str> for Code {
    fn from(s: &str) -> Code {
        Code::new(s)
    }
}

impl From<String> for Code {
    fn from(s: String) -> Code {
        Code(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_mask_all_but_the_last_four() {
        let c = Code::new("123456789012");
        assert_eq!(format!("{c:?}"), "Code(********9012)");
        assert_eq!(format!("{c}"), "********9012");
        assert_eq!(c.expose(), "123456789012");
        // Inside a derived Debug of a containing type, too.
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Holder {
            code: Code,
        }
        let h = format!("{:?}", Holder { code: c.clone() });
        assert!(!h.contains("12345678"), "{h}");
        assert_eq!(serde_json::to_string(&c).unwrap(), "\"123456789012\"");
    }

    #[test]
    fn last4_is_the_tail_in_characters() {
        assert_eq!(Code::new("100000000002").last4(), "0002");
        assert_eq!(Code::new("券码1234").last4(), "1234");
        assert_eq!(Code::new("码一二三四").last4(), "一二三四");
        assert_eq!(Code::new("12").last4(), "12");
    }
}
