//! Keyboard-wedge scanners: the Linux evdev `struct input_event` stream → codes. Pure.
//!
//! A wedge scanner "types" each code as key presses, in whatever keyboard layout it was
//! programmed for; the decoder must use the same layout (`layout = "us"`, `"uk"`, `"de"`,
//! `"fr"`). Only presses (value 1) type; releases (0) only update Shift; autorepeat (2) is
//! ignored; `SYN_DROPPED` means the kernel lost events, so the partial code is discarded.

use super::frame::{MAX_CODE_BYTES, classify_line};
use crate::model::frame::Frame;
use crate::model::layout::Layout;

/// `struct input_event` on 64-bit Linux: `struct timeval` (2 × 8 bytes), type u16, code u16,
/// value i32.
pub const EVENT_SIZE: usize = 24;

pub const EV_SYN: u16 = 0;
pub const EV_KEY: u16 = 1;
pub const SYN_DROPPED: u16 = 3;

pub const KEY_TAB: u16 = 15;
pub const KEY_ENTER: u16 = 28;
pub const KEY_LEFTSHIFT: u16 = 42;
pub const KEY_RIGHTSHIFT: u16 = 54;
pub const KEY_CAPSLOCK: u16 = 58;
pub const KEY_KPENTER: u16 = 96;
pub const KEY_RIGHTALT: u16 = 100;

/// What one key types: (plain, with Shift, with AltGr).
type Keys = (char, char, Option<char>);

/// The US layout, by Linux key code. Other layouts override entries.
fn us(code: u16) -> Option<Keys> {
    let k = |a, b| Some((a, b, None));
    match code {
        2 => k('1', '!'),
        3 => k('2', '@'),
        4 => k('3', '#'),
        5 => k('4', '$'),
        6 => k('5', '%'),
        7 => k('6', '^'),
        8 => k('7', '&'),
        9 => k('8', '*'),
        10 => k('9', '('),
        11 => k('0', ')'),
        12 => k('-', '_'),
        13 => k('=', '+'),
        16 => k('q', 'Q'),
        17 => k('w', 'W'),
        18 => k('e', 'E'),
        19 => k('r', 'R'),
        20 => k('t', 'T'),
        21 => k('y', 'Y'),
        22 => k('u', 'U'),
        23 => k('i', 'I'),
        24 => k('o', 'O'),
        25 => k('p', 'P'),
        26 => k('[', '{'),
        27 => k(']', '}'),
        30 => k('a', 'A'),
        31 => k('s', 'S'),
        32 => k('d', 'D'),
        33 => k('f', 'F'),
        34 => k('g', 'G'),
        35 => k('h', 'H'),
        36 => k('j', 'J'),
        37 => k('k', 'K'),
        38 => k('l', 'L'),
        39 => k(';', ':'),
        40 => k('\'', '"'),
        41 => k('`', '~'),
        43 => k('\\', '|'),
        44 => k('z', 'Z'),
        45 => k('x', 'X'),
        46 => k('c', 'C'),
        47 => k('v', 'V'),
        48 => k('b', 'B'),
        49 => k('n', 'N'),
        50 => k('m', 'M'),
        51 => k(',', '<'),
        52 => k('.', '>'),
        53 => k('/', '?'),
        57 => k(' ', ' '),
        86 => k('\\', '|'),
        // Keypad: the same with or without Shift (scanners send NumLock-on digits).
        55 => k('*', '*'),
        71 => k('7', '7'),
        72 => k('8', '8'),
        73 => k('9', '9'),
        74 => k('-', '-'),
        75 => k('4', '4'),
        76 => k('5', '5'),
        77 => k('6', '6'),
        78 => k('+', '+'),
        79 => k('1', '1'),
        80 => k('2', '2'),
        81 => k('3', '3'),
        82 => k('0', '0'),
        83 => k('.', '.'),
        98 => k('/', '/'),
        _ => None,
    }
}

fn uk(code: u16) -> Option<Keys> {
    let k = |a, b| Some((a, b, None));
    match code {
        3 => k('2', '"'),
        4 => k('3', '£'),
        40 => k('\'', '@'),
        41 => k('`', '¬'),
        43 => k('#', '~'),
        86 => k('\\', '|'),
        _ => us(code),
    }
}

fn de(code: u16) -> Option<Keys> {
    let k = |a, b| Some((a, b, None));
    let g = |a, b, c| Some((a, b, Some(c)));
    match code {
        2 => k('1', '!'),
        3 => g('2', '"', '²'),
        4 => g('3', '§', '³'),
        5 => k('4', '$'),
        6 => k('5', '%'),
        7 => k('6', '&'),
        8 => g('7', '/', '{'),
        9 => g('8', '(', '['),
        10 => g('9', ')', ']'),
        11 => g('0', '=', '}'),
        12 => g('ß', '?', '\\'),
        13 => k('´', '`'),
        16 => g('q', 'Q', '@'),
        18 => g('e', 'E', '€'),
        21 => k('z', 'Z'),
        26 => k('ü', 'Ü'),
        27 => g('+', '*', '~'),
        39 => k('ö', 'Ö'),
        40 => k('ä', 'Ä'),
        41 => k('^', '°'),
        43 => k('#', '\''),
        44 => k('y', 'Y'),
        51 => k(',', ';'),
        52 => k('.', ':'),
        53 => k('-', '_'),
        86 => g('<', '>', '|'),
        _ => us(code),
    }
}

fn fr(code: u16) -> Option<Keys> {
    let k = |a, b| Some((a, b, None));
    let g = |a, b, c| Some((a, b, Some(c)));
    match code {
        // AZERTY: digits need Shift.
        2 => k('&', '1'),
        3 => g('é', '2', '~'),
        4 => g('"', '3', '#'),
        5 => g('\'', '4', '{'),
        6 => g('(', '5', '['),
        7 => g('-', '6', '|'),
        8 => g('è', '7', '`'),
        9 => g('_', '8', '\\'),
        10 => g('ç', '9', '^'),
        11 => g('à', '0', '@'),
        12 => g(')', '°', ']'),
        13 => g('=', '+', '}'),
        16 => k('a', 'A'),
        17 => k('z', 'Z'),
        26 => k('^', '¨'),
        27 => k('$', '£'),
        30 => k('q', 'Q'),
        39 => k('m', 'M'),
        40 => k('ù', '%'),
        41 => k('²', '²'),
        43 => k('*', 'µ'),
        44 => k('w', 'W'),
        50 => k(',', '?'),
        51 => k(';', '.'),
        52 => k(':', '/'),
        53 => k('!', '§'),
        86 => k('<', '>'),
        _ => us(code),
    }
}

/// What a key means in a layout.
fn keys(layout: Layout, code: u16) -> Option<Keys> {
    match layout {
        Layout::Us => us(code),
        Layout::Uk => uk(code),
        Layout::De => de(code),
        Layout::Fr => fr(code),
    }
}

/// One decoded `input_event` (the timestamp is not needed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputEvent {
    pub kind: u16,
    pub code: u16,
    pub value: i32,
}

/// An event's kernel timestamp (`struct timeval`: seconds and microseconds, 64-bit), in
/// microseconds.
fn time_us(b: &[u8; EVENT_SIZE]) -> i64 {
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[at..at + 8]);
        i64::from_ne_bytes(w)
    };
    word(0).saturating_mul(1_000_000).saturating_add(word(8))
}

impl InputEvent {
    pub fn parse(b: &[u8; EVENT_SIZE]) -> InputEvent {
        InputEvent {
            kind: u16::from_ne_bytes([b[16], b[17]]),
            code: u16::from_ne_bytes([b[18], b[19]]),
            value: i32::from_ne_bytes([b[20], b[21], b[22], b[23]]),
        }
    }

    /// The 24 bytes the kernel would deliver (zero timestamp); for tests and tools.
    pub fn to_bytes(self) -> [u8; EVENT_SIZE] {
        let mut b = [0u8; EVENT_SIZE];
        b[16..18].copy_from_slice(&self.kind.to_ne_bytes());
        b[18..20].copy_from_slice(&self.code.to_ne_bytes());
        b[20..24].copy_from_slice(&self.value.to_ne_bytes());
        b
    }
}

/// Bytes of `input_event`s → frames.
#[derive(Debug)]
pub struct KeyboardDecoder {
    layout: Layout,
    pending: Vec<u8>,
    line: String,
    /// Characters typed beyond the longest code: the line is unreadable.
    overflow: bool,
    /// A key this layout does not map was pressed inside the code.
    unknown_key: bool,
    left_shift: bool,
    right_shift: bool,
    altgr: bool,
    caps: bool,
    /// A partial code whose next key comes later than this is dropped (recorded as
    /// unreadable): scanners type a code in a few milliseconds, people far slower, so a
    /// code without Enter is never joined to the next scan.
    gap_us: i64,
    /// When the last key was pressed (the kernel's timestamp), in microseconds.
    last_key_us: Option<i64>,
}

/// The default for `inter_key_timeout`.
pub const DEFAULT_GAP: std::time::Duration = std::time::Duration::from_millis(100);

impl KeyboardDecoder {
    pub fn new(layout: Layout) -> Self {
        Self::with_gap(layout, DEFAULT_GAP)
    }

    /// A decoder that drops a partial code after `gap` without a key.
    pub fn with_gap(layout: Layout, gap: std::time::Duration) -> Self {
        Self {
            gap_us: i64::try_from(gap.as_micros()).unwrap_or(i64::MAX),
            last_key_us: None,
            layout,
            pending: Vec::with_capacity(EVENT_SIZE),
            line: String::new(),
            overflow: false,
            unknown_key: false,
            left_shift: false,
            right_shift: false,
            altgr: false,
            caps: false,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) -> Vec<Frame> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let take = (EVENT_SIZE - self.pending.len()).min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() == EVENT_SIZE {
                let mut raw = [0u8; EVENT_SIZE];
                raw.copy_from_slice(&self.pending);
                self.pending.clear();
                let e = InputEvent::parse(&raw);
                if let Some(f) = self.gap(&e, time_us(&raw)) {
                    out.push(f);
                }
                if let Some(f) = self.event(e) {
                    out.push(f);
                }
            }
        }
        out
    }

    /// A key pressed `at` (kernel time, µs) after more than the gap since the last one, with
    /// a partial code pending: that code is dropped, as an unreadable read.
    fn gap(&mut self, e: &InputEvent, at: i64) -> Option<Frame> {
        if e.kind != EV_KEY || e.value != 1 {
            return None;
        }
        let last = self.last_key_us.replace(at);
        let late = last.is_some_and(|l| at.saturating_sub(l) > self.gap_us);
        if !late || (self.line.is_empty() && !self.overflow) {
            return None;
        }
        let frame = Frame::Unreadable {
            raw: self.line.as_bytes().to_vec(),
            reason: format!(
                "unreadable scan: a partial code without Enter, then no key for over {} ms (scanner.inter_key_timeout)",
                self.gap_us / 1000
            ),
        };
        self.discard();
        Some(frame)
    }

    pub fn event(&mut self, e: InputEvent) -> Option<Frame> {
        match e.kind {
            EV_SYN if e.code == SYN_DROPPED => {
                // Lost events: the partial code and the modifier state can't be trusted.
                self.discard();
                self.left_shift = false;
                self.right_shift = false;
                self.altgr = false;
                None
            }
            EV_KEY => self.key(e.code, e.value),
            _ => None,
        }
    }

    fn key(&mut self, code: u16, value: i32) -> Option<Frame> {
        let down = match value {
            1 => true,
            0 => false,
            _ => return None, // autorepeat
        };
        match code {
            KEY_LEFTSHIFT => self.left_shift = down,
            KEY_RIGHTSHIFT => self.right_shift = down,
            KEY_RIGHTALT => self.altgr = down,
            KEY_CAPSLOCK if down => self.caps = !self.caps,
            KEY_ENTER | KEY_KPENTER | KEY_TAB if down => return self.finish(),
            _ if down => self.type_key(code),
            _ => {}
        }
        None
    }

    fn type_key(&mut self, code: u16) {
        let Some((plain, shifted, altgr)) = keys(self.layout, code) else {
            // Ctrl, Alt, F-keys: not part of a code, but a code containing them is not a
            // clean read either.
            if !self.line.is_empty() && !is_modifier(code) {
                self.unknown_key = true;
            }
            return;
        };
        let shift = self.left_shift || self.right_shift;
        let c = if self.altgr {
            match altgr {
                Some(c) => c,
                None => {
                    self.unknown_key = true;
                    return;
                }
            }
        } else if plain.is_alphabetic() && plain.to_uppercase().ne(plain.to_lowercase()) {
            // Caps Lock inverts Shift for letters only.
            if shift != self.caps { shifted } else { plain }
        } else if shift {
            shifted
        } else {
            plain
        };
        if self.line.len() + c.len_utf8() > MAX_CODE_BYTES {
            self.overflow = true;
        } else {
            self.line.push(c);
        }
    }

    fn finish(&mut self) -> Option<Frame> {
        if self.line.is_empty() && !self.overflow {
            self.unknown_key = false;
            return None;
        }
        let frame = if self.overflow {
            Frame::Unreadable {
                raw: self.line.as_bytes().to_vec(),
                reason: format!("unreadable scan: longer than {MAX_CODE_BYTES} bytes"),
            }
        } else if self.unknown_key {
            Frame::Unreadable {
                raw: self.line.as_bytes().to_vec(),
                reason: format!(
                    "unreadable scan: keys the \"{}\" layout does not map (check the scanner's keyboard layout)",
                    self.layout.name()
                ),
            }
        } else {
            classify_line(self.line.as_bytes(), false)
        };
        self.discard();
        Some(frame)
    }

    fn discard(&mut self) {
        self.line.clear();
        self.overflow = false;
        self.unknown_key = false;
    }

    /// Drops any partial event and code (after a disconnect).
    pub fn reset(&mut self) {
        self.pending.clear();
        self.discard();
        self.left_shift = false;
        self.right_shift = false;
        self.altgr = false;
    }
}

fn is_modifier(code: u16) -> bool {
    matches!(code, 29 | 56 | 97 | 125 | 126)
}

/// The key presses (and releases) a US-programmed scanner sends for `text`, ending with
/// Enter; for tests and `redeemd` tooling. Characters the US layout cannot type are skipped.
pub fn us_keystrokes(text: &str) -> Vec<InputEvent> {
    let mut out = Vec::new();
    let key = |code, value| InputEvent {
        kind: EV_KEY,
        code,
        value,
    };
    for ch in text.chars() {
        let found = (1..=127u16).find_map(|code| {
            let (p, s, _) = us(code)?;
            if p == ch && !(71..=83).contains(&code) && code != 55 && code != 98 {
                Some((code, false))
            } else if s == ch && p != ch {
                Some((code, true))
            } else {
                None
            }
        });
        if let Some((code, shift)) = found {
            if shift {
                out.push(key(KEY_LEFTSHIFT, 1));
            }
            out.push(key(code, 1));
            out.push(key(code, 0));
            if shift {
                out.push(key(KEY_LEFTSHIFT, 0));
            }
        }
    }
    out.push(key(KEY_ENTER, 1));
    out.push(key(KEY_ENTER, 0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn key(code: u16, value: i32) -> InputEvent {
        InputEvent {
            kind: EV_KEY,
            code,
            value,
        }
    }

    fn bytes(events: &[InputEvent]) -> Vec<u8> {
        events.iter().flat_map(|e| e.to_bytes()).collect()
    }

    fn code(s: &str) -> Frame {
        Frame::Code {
            code: s.into(),
            aim_id: None,
        }
    }

    /// Events as the kernel sends them, `step_us` apart from `start_us` on.
    fn timed(events: &[InputEvent], start_us: i64, step_us: i64) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let mut b = e.to_bytes();
            let t = start_us + step_us * i as i64;
            b[0..8].copy_from_slice(&(t / 1_000_000).to_ne_bytes());
            b[8..16].copy_from_slice(&(t % 1_000_000).to_ne_bytes());
            out.extend_from_slice(&b);
        }
        out
    }

    /// "1234" typed without Enter, then a real scan two seconds later: the partial code is
    /// dropped as an unreadable read, and the scan is read whole (not "1234" joined to it).
    #[test]
    fn a_partial_code_is_dropped_after_the_gap() {
        let mut d = KeyboardDecoder::with_gap(Layout::Us, Duration::from_millis(100));
        // us_keystrokes ends every code with Enter: without it, "1234" alone.
        let partial = us_keystrokes("1234");
        let partial = &partial[..partial.len() - 2];
        let mut frames = d.push(&timed(partial, 0, 40_000));
        frames.extend(d.push(&timed(&us_keystrokes("123456789012"), 2_000_000, 2_000)));
        assert_eq!(frames.len(), 2, "{frames:?}");
        assert!(
            matches!(&frames[0], Frame::Unreadable { raw, reason } if raw == b"1234" && reason.contains("inter_key_timeout")),
            "{frames:?}"
        );
        assert_eq!(frames[1], code("123456789012"));
        // A scanner's keys, milliseconds apart: one code, as ever.
        let mut d = KeyboardDecoder::with_gap(Layout::Us, Duration::from_millis(100));
        assert_eq!(
            d.push(&timed(&us_keystrokes("999988887777"), 5_000_000, 3_000)),
            vec![code("999988887777")]
        );
    }

    #[test]
    fn us_round_trip_with_shift() {
        let mut d = KeyboardDecoder::new(Layout::Us);
        let ev = us_keystrokes("BF12ab-XZ_9");
        assert_eq!(d.push(&bytes(&ev)), vec![code("BF12ab-XZ_9")]);
    }

    #[test]
    fn split_anywhere_in_an_event() {
        let mut d = KeyboardDecoder::new(Layout::Us);
        let all = bytes(&us_keystrokes("123456789012"));
        let mut frames = Vec::new();
        for chunk in all.chunks(7) {
            frames.extend(d.push(chunk));
        }
        assert_eq!(frames, vec![code("123456789012")]);
    }

    #[test]
    fn caps_lock_keypad_autorepeat_and_terminators() {
        let mut d = KeyboardDecoder::new(Layout::Us);
        let ev = [
            key(KEY_CAPSLOCK, 1),
            key(KEY_CAPSLOCK, 0),
            key(48, 1), // b → B under Caps Lock
            key(48, 2), // autorepeat: ignored
            key(48, 0),
            key(KEY_LEFTSHIFT, 1),
            key(33, 1), // Shift+f under Caps Lock → f
            key(33, 0),
            key(KEY_LEFTSHIFT, 0),
            key(79, 1), // keypad 1
            key(82, 1), // keypad 0
            key(KEY_TAB, 1),
            key(KEY_CAPSLOCK, 1),
            key(2, 1),
            key(KEY_KPENTER, 1),
        ];
        assert_eq!(d.push(&bytes(&ev)), vec![code("Bf10"), code("1")]);
    }

    #[test]
    fn syn_dropped_discards_the_partial_code() {
        let mut d = KeyboardDecoder::new(Layout::Us);
        let mut ev = vec![key(KEY_LEFTSHIFT, 1), key(2, 1), key(3, 1)];
        ev.push(InputEvent {
            kind: EV_SYN,
            code: SYN_DROPPED,
            value: 0,
        });
        ev.extend(us_keystrokes("42"));
        assert_eq!(d.push(&bytes(&ev)), vec![code("42")], "shift was reset too");
    }

    #[test]
    fn german_and_french_layouts() {
        let mut de = KeyboardDecoder::new(Layout::De);
        // On a German scanner the key labelled Z sits where US has Y (code 21).
        let ev = [
            key(21, 1),
            key(44, 1),
            key(KEY_RIGHTALT, 1),
            key(16, 1),
            key(KEY_RIGHTALT, 0),
            key(KEY_ENTER, 1),
        ];
        assert_eq!(de.push(&bytes(&ev)), vec![code("zy@")]);
        let mut fr = KeyboardDecoder::new(Layout::Fr);
        // AZERTY digits need Shift; unshifted they are symbols.
        let ev = [
            key(KEY_LEFTSHIFT, 1),
            key(2, 1),
            key(3, 1),
            key(KEY_LEFTSHIFT, 0),
            key(16, 1), // a
            key(KEY_ENTER, 1),
        ];
        assert_eq!(fr.push(&bytes(&ev)), vec![code("12a")]);
        assert_eq!(Layout::parse("de"), Some(Layout::De));
        assert_eq!(Layout::parse("xx"), None);
    }

    #[test]
    fn control_keys_inside_a_code_make_it_unreadable() {
        let mut d = KeyboardDecoder::new(Layout::Us);
        let ev = [key(2, 1), key(59, 1), key(3, 1), key(KEY_ENTER, 1)]; // F1 inside
        assert!(
            matches!(&d.push(&bytes(&ev))[0], Frame::Unreadable { reason, .. } if reason.starts_with("unreadable scan"))
        );
    }

    #[test]
    fn overlong_is_unreadable() {
        let mut d = KeyboardDecoder::new(Layout::Us);
        let ev = us_keystrokes(&"7".repeat(300));
        assert!(
            matches!(&d.push(&bytes(&ev))[0], Frame::Unreadable { reason, .. } if reason.contains("256"))
        );
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..2000), layout in 0usize..4) {
            let l = [Layout::Us, Layout::Uk, Layout::De, Layout::Fr][layout];
            let mut d = KeyboardDecoder::new(l);
            for f in d.push(&data) {
                if let Frame::Code { code, .. } = f {
                    prop_assert!(!code.is_empty() && code.len() <= MAX_CODE_BYTES);
                }
            }
        }

        /// Any stream of well-formed events (keys, releases, autorepeat, SYN_DROPPED, other
        /// event types): a frame ends only at a press of Enter, keypad Enter or Tab; a code is
        /// never empty, never over the limit and never holds a control character; and what
        /// was typed before a SYN_DROPPED never reaches the next frame.
        #[test]
        fn frames_end_only_at_a_terminator_and_hold_clean_codes(events in proptest::collection::vec((0u16..3, 0u16..130, -1i32..4), 0..300), layout in 0usize..4) {
            let l = [Layout::Us, Layout::Uk, Layout::De, Layout::Fr][layout];
            let mut d = KeyboardDecoder::new(l);
            // Presses since the last frame or SYN_DROPPED: an upper bound on a frame's length.
            let mut presses = 0usize;
            for (kind, code, value) in events {
                let e = InputEvent { kind, code, value };
                let frame = d.event(e);
                let terminator = kind == EV_KEY && value == 1 && matches!(code, KEY_ENTER | KEY_KPENTER | KEY_TAB);
                if kind == EV_SYN && code == SYN_DROPPED {
                    presses = 0;
                }
                match frame {
                    None => {
                        if kind == EV_KEY && value == 1 && !terminator {
                            presses += 1;
                        }
                    }
                    Some(f) => {
                        prop_assert!(terminator, "a frame at {e:?}");
                        if let Frame::Code { code, .. } = &f {
                            let c = code.expose();
                            prop_assert!(!c.is_empty() && c.len() <= MAX_CODE_BYTES);
                            prop_assert!(!c.chars().any(char::is_control), "{c:?}");
                            prop_assert!(c.chars().count() <= presses, "{c:?} from {presses} presses");
                        }
                        presses = 0;
                    }
                }
            }
        }
    }
}
