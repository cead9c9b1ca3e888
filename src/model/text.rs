//! Free text people type (a void's reason, a resolve's note, who did it): what is accepted
//! in, and how stored text is shown out. Pure.
//!
//! Control characters are refused on the way in: an ESC or NUL in a note would reach a
//! manager's terminal through `redeemd export` or a CSV. On the way out, every text output
//! (CSV, the CLI's tables) shows what an older ledger may still hold as visible escapes.

use std::borrow::Cow;

/// The text trimmed, or what is wrong with it (for a 400 or an exit code 2): empty, longer
/// than `max` characters, or holding a control character.
pub fn checked(value: &str, name: &str, what: &str, max: usize) -> Result<String, String> {
    let t = value.trim();
    // Checked before trimming: a CR or NUL at the end is refused, not quietly dropped.
    if t.is_empty() || t.chars().count() > max || value.chars().any(char::is_control) {
        return Err(format!(
            "{name}: {what} (1 to {max} characters, no control characters)"
        ));
    }
    Ok(t.to_string())
}

/// Text that may be left out (an order, a cashier): blank is `None`; otherwise at most
/// `max` characters and no control character, or what is wrong with it.
pub fn optional(value: Option<&str>, name: &str, max: usize) -> Result<Option<String>, String> {
    match value.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) if t.chars().count() > max || t.chars().any(char::is_control) => Err(format!(
            "{name}: at most {max} characters, no control characters"
        )),
        Some(t) => Ok(Some(t.to_string())),
    }
}

/// `s` with every control character shown as `\u{…}` (tab, CR and LF as `\t`, `\r`, `\n`),
/// so that no stored text can move a terminal's cursor, change its colours or cut a line.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_in() {
        let ok = |v: &str| checked(v, "reason", "why", 5);
        #[rustfmt::skip]
        let table: &[(&str, Option<&str>)] = &[
            ("  退货 ", Some("退货")),
            ("abcde", Some("abcde")),
            ("abcdef", None),
            ("   ", None),
            ("a\u{1b}[2J", None),
            ("a\0b", None),
            ("a\rb", None),
            ("a\nb", None),
            ("a\u{9b}b", None),
            ("a\u{7f}", None),
            ("me\r", None),
            ("\tindented", None),
        ];
        for (input, want) in table {
            assert_eq!(ok(input).ok().as_deref(), *want, "{input:?}");
        }
        assert_eq!(
            ok("").unwrap_err(),
            "reason: why (1 to 5 characters, no control characters)"
        );
    }

    #[test]
    fn optional_text_in() {
        let ok = |v: Option<&str>| optional(v, "order_id", 3);
        #[rustfmt::skip]
        let table: &[(Option<&str>, Option<Option<&str>>)] = &[
            (None, Some(None)),
            (Some("  "), Some(None)),
            (Some(" O-1 "), Some(Some("O-1"))),
            (Some("O-12"), None),
            (Some("O\u{1b}"), None),
        ];
        for (input, want) in table {
            let got = ok(*input);
            assert_eq!(got.as_ref().ok().map(|o| o.as_deref()), *want, "{input:?}");
        }
        assert_eq!(
            ok(Some("O-12")).unwrap_err(),
            "order_id: at most 3 characters, no control characters"
        );
    }

    #[test]
    fn text_out() {
        #[rustfmt::skip]
        let table = [
            ("plain 退货", "plain 退货"),
            ("a\u{1b}[31mred", "a\\u{1b}[31mred"),
            ("nul\0", "nul\\u{0}"),
            ("two\r\nlines\ttab", "two\\r\\nlines\\ttab"),
            ("c1\u{9b}", "c1\\u{9b}"),
        ];
        for (input, want) in table {
            assert_eq!(printable(input), want, "{input:?}");
            assert!(!printable(input).chars().any(char::is_control));
        }
        assert!(matches!(printable("clean"), Cow::Borrowed(_)));
    }
}
