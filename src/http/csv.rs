//! CSV as managers open it: one line per record, formula-safe, no control character raw.

use std::io::Write;

/// One field: control characters an older ledger may hold are shown, never written raw (a
/// terminal that prints the file would obey an ESC); quoted when it needs it; spreadsheet
/// formulas (=, +, -, @ at the start) neutralised.
pub fn field(out: &mut impl Write, v: &str) -> std::io::Result<()> {
    let v = &*crate::model::text::printable(v);
    let risky = v.starts_with(['=', '+', '-', '@']);
    if v.contains([',', '"', '\n', '\r']) || risky {
        let body = v.replace('"', "\"\"");
        write!(out, "\"{}{body}\"", if risky { "'" } else { "" })
    } else {
        out.write_all(v.as_bytes())
    }
}

/// One record: its fields, comma-separated, and a newline.
pub fn record<S: AsRef<str>>(out: &mut impl Write, fields: &[S]) -> std::io::Result<()> {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        field(out, f.as_ref())?;
    }
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_records() {
        #[rustfmt::skip]
        let table = [
            ("plain", "plain"),
            ("a,b", "\"a,b\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            ("=1+1", "\"'=1+1\""),
            ("-3", "\"'-3\""),
            ("esc\u{1b}[2J", "esc\\u{1b}[2J"),
            ("two\nlines", "two\\nlines"),
        ];
        for (input, want) in table {
            let mut out = Vec::new();
            field(&mut out, input).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), want, "{input:?}");
        }
        let mut out = Vec::new();
        record(&mut out, &["a", "b,c", ""]).unwrap();
        assert_eq!(out, b"a,\"b,c\",\n");
    }
}
