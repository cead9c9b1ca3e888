//! Bytes from a line-oriented scanner → codes. Pure: no I/O, no clock.
//!
//! Scanners end a code with CR, LF or CR LF depending on how they were programmed; all three
//! are accepted and a CR LF pair never yields an empty code. Anything that cannot be a code
//! (too long, control bytes, not UTF-8) becomes [`Frame::Unreadable`] so that it is recorded
//! and answered, never silently dropped and never sent to WeChat.

use crate::model::code::Code;
use crate::model::frame::Frame;

/// The longest line accepted as a code. WeChat codes are at most 32 characters; the margin
/// leaves room for QR payloads that routes extract a code from.
pub const MAX_CODE_BYTES: usize = 256;

/// Why a line is not a code. Every reason starts with "unreadable scan" so cashiers and
/// managers see one consistent word for it.
pub fn classify_line(line: &[u8], aim_ids: bool) -> Frame {
    if line.len() > MAX_CODE_BYTES {
        return unreadable(
            &line[..MAX_CODE_BYTES],
            format!("unreadable scan: longer than {MAX_CODE_BYTES} bytes"),
        );
    }
    if line.iter().any(|b| b.is_ascii_control()) {
        return unreadable(line, "unreadable scan: control characters".into());
    }
    let Ok(text) = std::str::from_utf8(line) else {
        return unreadable(line, "unreadable scan: not valid UTF-8 text".into());
    };
    if text.chars().any(char::is_control) {
        return unreadable(line, "unreadable scan: control characters".into());
    }
    let (aim_id, code) = if aim_ids {
        split_aim(text)
    } else {
        (None, text)
    };
    if code.is_empty() {
        let why = if aim_id.is_some() {
            "unreadable scan: no data after the symbology id"
        } else {
            "unreadable scan: empty"
        };
        return unreadable(line, why.into());
    }
    Frame::Code {
        code: Code::new(code),
        aim_id,
    }
}

fn unreadable(raw: &[u8], reason: String) -> Frame {
    Frame::Unreadable {
        raw: raw.to_vec(),
        reason,
    }
}

/// An AIM identifier is `]` + a symbology letter + a modifier character.
fn split_aim(text: &str) -> (Option<String>, &str) {
    let b = text.as_bytes();
    if b.len() >= 3 && b[0] == b']' && b[1].is_ascii_alphabetic() && b[2].is_ascii_alphanumeric() {
        (Some(text[..3].to_string()), &text[3..])
    } else {
        (None, text)
    }
}

/// Accumulates bytes into lines for one scanner.
#[derive(Debug, Default)]
pub struct Framer {
    aim_ids: bool,
    line: Vec<u8>,
    /// Bytes of the current line beyond what is kept (the line is over-long).
    overflow: usize,
    /// The previous byte was CR: an LF right after it ends nothing.
    after_cr: bool,
}

impl Framer {
    pub fn new(aim_ids: bool) -> Self {
        Self {
            aim_ids,
            ..Self::default()
        }
    }

    /// Feeds bytes; returns every frame they complete, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Frame> {
        let mut out = Vec::new();
        for &b in bytes {
            let after_cr = std::mem::replace(&mut self.after_cr, b == b'\r');
            match b {
                b'\n' if after_cr => {}
                b'\r' | b'\n' => {
                    if let Some(f) = self.finish_line() {
                        out.push(f);
                    }
                }
                _ if self.line.len() <= MAX_CODE_BYTES => self.line.push(b),
                _ => self.overflow += 1,
            }
        }
        out
    }

    fn finish_line(&mut self) -> Option<Frame> {
        if self.line.is_empty() {
            return None;
        }
        let frame = classify_line(&self.line, self.aim_ids);
        self.line.clear();
        self.overflow = 0;
        Some(frame)
    }

    /// Drops a partial line: after a disconnect its first half may never be completed, and
    /// gluing it to the next scan would make a wrong code.
    pub fn reset(&mut self) {
        self.line.clear();
        self.overflow = 0;
        self.after_cr = false;
    }

    /// Bytes of an unterminated line waiting for its end.
    pub fn pending(&self) -> usize {
        self.line.len() + self.overflow
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn code(s: &str) -> Frame {
        Frame::Code {
            code: s.into(),
            aim_id: None,
        }
    }

    #[test]
    fn every_terminator() {
        let mut f = Framer::new(false);
        assert_eq!(
            f.push(b"111\r222\n333\r\n444\n\r555"),
            vec![code("111"), code("222"), code("333"), code("444")]
        );
        assert_eq!(f.pending(), 3);
        assert_eq!(f.push(b"\r\n"), vec![code("555")]);
    }

    #[test]
    fn crlf_split_across_reads_is_one_terminator() {
        let mut f = Framer::new(false);
        assert_eq!(f.push(b"123\r"), vec![code("123")]);
        assert_eq!(f.push(b"\n"), vec![]);
        assert_eq!(f.push(b"\n\n\r\r"), vec![], "blank lines are not codes");
    }

    #[test]
    fn overlong_line_is_one_unreadable_frame() {
        let mut f = Framer::new(false);
        let mut input = vec![b'7'; 1000];
        input.extend_from_slice(b"\n42\n");
        let frames = f.push(&input);
        assert_eq!(frames.len(), 2);
        match &frames[0] {
            Frame::Unreadable { raw, reason } => {
                assert_eq!(raw.len(), MAX_CODE_BYTES);
                assert!(reason.starts_with("unreadable scan"));
                assert!(reason.contains("256"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(frames[1], code("42"));
    }

    #[test]
    fn exactly_max_is_accepted() {
        let mut f = Framer::new(false);
        let mut input = vec![b'A'; MAX_CODE_BYTES];
        input.push(b'\n');
        assert!(
            matches!(&f.push(&input)[0], Frame::Code { code, .. } if code.len() == MAX_CODE_BYTES)
        );
    }

    #[test]
    fn control_bytes_and_bad_utf8() {
        let mut f = Framer::new(false);
        let frames = f.push(b"12\x0734\n\xff\xfe\n\xc2\x85x\n");
        assert!(
            matches!(&frames[0], Frame::Unreadable { reason, .. } if reason.contains("control"))
        );
        assert!(matches!(&frames[1], Frame::Unreadable { reason, .. } if reason.contains("UTF-8")));
        assert!(
            matches!(&frames[2], Frame::Unreadable { reason, .. } if reason.contains("control")),
            "C1 control NEL"
        );
    }

    #[test]
    fn aim_ids_stripped_only_when_configured() {
        let mut f = Framer::new(true);
        assert_eq!(
            f.push(b"]Q1https://x/123\n]E0\n4006381333931\n"),
            vec![
                Frame::Code {
                    code: "https://x/123".into(),
                    aim_id: Some("]Q1".into())
                },
                Frame::Unreadable {
                    raw: b"]E0".to_vec(),
                    reason: "unreadable scan: no data after the symbology id".into()
                },
                code("4006381333931"),
            ]
        );
        let mut g = Framer::new(false);
        assert_eq!(g.push(b"]Q1abc\n"), vec![code("]Q1abc")]);
    }

    #[test]
    fn reset_drops_partial() {
        let mut f = Framer::new(false);
        f.push(b"1234");
        f.reset();
        assert_eq!(f.push(b"56\n"), vec![code("56")]);
    }

    proptest! {
        #[test]
        fn never_panics_and_never_emits_empty_or_long_codes(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8)) {
            let mut f = Framer::new(true);
            for c in &chunks {
                for frame in f.push(c) {
                    match frame {
                        Frame::Code { code, .. } => {
                            prop_assert!(!code.is_empty());
                            prop_assert!(code.len() <= MAX_CODE_BYTES);
                            prop_assert!(!code.expose().contains(['\r', '\n']));
                        }
                        Frame::Unreadable { raw, .. } => prop_assert!(raw.len() <= MAX_CODE_BYTES),
                    }
                }
            }
        }

        #[test]
        fn chunking_does_not_change_frames(data in proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), b'0'..=b'9'], 0..200), cut in 0usize..200) {
            let cut = cut.min(data.len());
            let mut whole = Framer::new(false);
            let a = whole.push(&data);
            let mut split = Framer::new(false);
            let mut b = split.push(&data[..cut]);
            b.extend(split.push(&data[cut..]));
            prop_assert_eq!(a, b);
        }
    }
}
