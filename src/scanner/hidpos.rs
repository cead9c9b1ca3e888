//! USB HID Point-of-Sale scanners (usage page 0x8C) through hidraw: 64-byte input reports →
//! codes. Pure.
//!
//! Report layout: byte 0 report id, byte 1 data length (≤ 56), bytes 2–4 the AIM symbology
//! id, bytes 5.. the data, byte 63 bit 0 set when the code continues in the next report.

use super::frame::{MAX_CODE_BYTES, classify_line};
use crate::model::frame::Frame;

pub const REPORT_SIZE: usize = 64;
pub const MAX_DATA: usize = 56;
pub const DEFAULT_REPORT_ID: u8 = 2;
const DATA_START: usize = 5;

/// Reassembles codes from reports.
#[derive(Debug)]
pub struct HidPosDecoder {
    report_id: u8,
    pending: Vec<u8>,
    code: Vec<u8>,
    aim: Option<String>,
    /// The code being reassembled has gone wrong (malformed or too long a report).
    broken: Option<String>,
}

impl HidPosDecoder {
    pub fn new(report_id: u8) -> Self {
        Self {
            report_id,
            pending: Vec::with_capacity(REPORT_SIZE),
            code: Vec::new(),
            aim: None,
            broken: None,
        }
    }

    /// Feeds bytes as they come (a FIFO may split or join reports); returns completed frames.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Frame> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let take = (REPORT_SIZE - self.pending.len()).min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() == REPORT_SIZE {
                let mut r = [0u8; REPORT_SIZE];
                r.copy_from_slice(&self.pending);
                self.pending.clear();
                if let Some(f) = self.report(&r) {
                    out.push(f);
                }
            }
        }
        out
    }

    /// One whole report (hidraw delivers them one per read).
    pub fn report(&mut self, r: &[u8; REPORT_SIZE]) -> Option<Frame> {
        if r[0] != self.report_id {
            return None; // another report of the device (status, config): not scan data
        }
        let len = usize::from(r[1]);
        let more = r[REPORT_SIZE - 1] & 1 == 1;
        if len > MAX_DATA {
            self.broken = Some(format!(
                "unreadable scan: malformed HID-POS report (length {len} > {MAX_DATA})"
            ));
        } else {
            if self.code.is_empty() && self.aim.is_none() {
                self.aim = aim_id(&r[2..DATA_START]);
            }
            if self.code.len() + len > MAX_CODE_BYTES {
                self.broken = Some(format!(
                    "unreadable scan: longer than {MAX_CODE_BYTES} bytes"
                ));
            } else {
                self.code
                    .extend_from_slice(&r[DATA_START..DATA_START + len]);
            }
        }
        if more {
            return None;
        }
        let frame = match self.broken.take() {
            Some(reason) => Frame::Unreadable {
                raw: std::mem::take(&mut self.code),
                reason,
            },
            None if self.code.is_empty() => {
                self.aim = None;
                return None;
            }
            None => match classify_line(&self.code, false) {
                Frame::Code { code, .. } => Frame::Code {
                    code,
                    aim_id: self.aim.clone(),
                },
                unreadable => unreadable,
            },
        };
        self.code.clear();
        self.aim = None;
        Some(frame)
    }

    /// Drops partial reports and codes (after a disconnect).
    pub fn reset(&mut self) {
        self.pending.clear();
        self.code.clear();
        self.aim = None;
        self.broken = None;
    }
}

/// The three symbology bytes as an AIM id (`]Q1`); `None` when blank.
fn aim_id(b: &[u8]) -> Option<String> {
    let t: Vec<u8> = b.iter().copied().filter(|c| *c != 0).collect();
    if t.is_empty() || !t.iter().all(u8::is_ascii_graphic) {
        return None;
    }
    let s = String::from_utf8_lossy(&t).to_string();
    Some(if s.starts_with(']') {
        s
    } else {
        format!("]{s}")
    })
}

/// Builds the reports a HID-POS scanner sends for `data`; for tests and tooling.
pub fn reports(report_id: u8, aim: &[u8; 3], data: &[u8]) -> Vec<[u8; REPORT_SIZE]> {
    let chunks: Vec<&[u8]> = if data.is_empty() {
        vec![&[]]
    } else {
        data.chunks(MAX_DATA).collect()
    };
    let n = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let mut r = [0u8; REPORT_SIZE];
            r[0] = report_id;
            r[1] = c.len() as u8;
            r[2..5].copy_from_slice(aim);
            r[DATA_START..DATA_START + c.len()].copy_from_slice(c);
            r[REPORT_SIZE - 1] = u8::from(i + 1 < n);
            r
        })
        .collect()
}

/// A readable name for an AIM symbology id, for the log.
pub fn symbology(aim: &str) -> &'static str {
    let b = aim.as_bytes();
    let (c, m) = (b.get(1).copied(), b.get(2).copied());
    match (c, m) {
        (Some(b'Q'), _) => "QR Code",
        (Some(b'E'), Some(b'4')) => "EAN-8",
        (Some(b'E'), _) => "EAN-13/UPC",
        (Some(b'C'), _) => "Code 128",
        (Some(b'd'), _) => "Data Matrix",
        (Some(b'A'), _) => "Code 39",
        (Some(b'I'), _) => "Interleaved 2 of 5",
        (Some(b'L'), _) => "PDF417",
        (Some(b'z'), _) => "Aztec",
        (Some(b'e'), _) => "GS1 DataBar",
        (Some(b'G'), _) => "Code 93",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn single_report() {
        let mut d = HidPosDecoder::new(2);
        let r = reports(2, b"]E0", b"4006381333931");
        assert_eq!(
            d.report(&r[0]),
            Some(Frame::Code {
                code: "4006381333931".into(),
                aim_id: Some("]E0".into())
            })
        );
        assert_eq!(symbology("]E0"), "EAN-13/UPC");
    }

    #[test]
    fn multi_report_qr_through_a_byte_stream() {
        let url = format!(
            "https://wx.example/c?code={}&x={}",
            "BF0123456789",
            "y".repeat(80)
        );
        let rs = reports(2, b"]Q1", url.as_bytes());
        assert_eq!(rs.len(), 3);
        let bytes: Vec<u8> = rs.iter().flatten().copied().collect();
        let mut d = HidPosDecoder::new(2);
        let mut frames = Vec::new();
        for chunk in bytes.chunks(10) {
            frames.extend(d.push(chunk));
        }
        assert_eq!(
            frames,
            vec![Frame::Code {
                code: url.into(),
                aim_id: Some("]Q1".into())
            }]
        );
    }

    #[test]
    fn other_report_ids_are_ignored() {
        let mut d = HidPosDecoder::new(2);
        assert_eq!(d.report(&reports(4, b"]E0", b"123")[0]), None);
        assert!(d.report(&reports(2, b"]E0", b"456")[0]).is_some());
    }

    #[test]
    fn malformed_length_is_unreadable_and_resets() {
        let mut d = HidPosDecoder::new(2);
        let mut r = reports(2, b"]C0", b"123")[0];
        r[1] = 60;
        assert!(
            matches!(d.report(&r), Some(Frame::Unreadable { reason, .. }) if reason.contains("malformed"))
        );
        assert!(
            matches!(d.report(&reports(2, b"]C0", b"789")[0]), Some(Frame::Code { code, .. }) if code == "789")
        );
    }

    #[test]
    fn truncated_stream_keeps_nothing_after_reset() {
        let mut d = HidPosDecoder::new(2);
        let r = reports(2, b"]C0", b"123")[0];
        assert!(
            d.push(&r[..40]).is_empty(),
            "a partial report is not a report"
        );
        d.reset(); // the device went away mid-report
        let next = d.push(&reports(2, b"]C0", b"55")[0]);
        assert!(
            matches!(&next[..], [Frame::Code { code, .. }] if code == "55"),
            "{next:?}"
        );
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..3000), id in 0u8..4) {
            let mut d = HidPosDecoder::new(id);
            for f in d.push(&data) {
                if let Frame::Code { code, .. } = f {
                    prop_assert!(!code.is_empty() && code.len() <= MAX_CODE_BYTES);
                }
            }
        }
    }
}
