//! What a scanner source makes of the bytes it read: a code, or an unreadable read.

use crate::model::code::Code;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Code {
        code: Code,
        /// The AIM symbology identifier (`]Q1`, `]E0`, ...) when the scanner sends them and
        /// the scanner is configured with `aim_ids = true`.
        aim_id: Option<String>,
    },
    Unreadable {
        /// The first bytes of what was read (at most the framer's limit), for the record; it
        /// is masked before it is stored or shown.
        raw: Vec<u8>,
        reason: String,
    },
}
