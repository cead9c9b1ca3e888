//! `[[scanner]]`: each scanner's kind (serial, keyboard, HID-POS, stdin) and its settings.

use super::{resolve, yes};
use crate::duration;
use crate::model::layout::Layout;
use serde::Deserialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScannerKind {
    /// RS-232 or USB-CDC: a tty device.
    Serial,
    /// A keyboard-wedge scanner: `/dev/input/eventN` (or a FIFO/file of `input_event`s).
    Keyboard,
    /// A USB HID Point-of-Sale scanner: `/dev/hidrawN` (or a FIFO/file of 64-byte reports).
    Hidpos,
    /// Lines on the process's standard input: `redeemd demo`, and piping codes in by hand.
    Stdin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    None,
    Odd,
    Even,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowControl {
    None,
    Software,
    Hardware,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScannerConfig {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ScannerKind,
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default = "default_baud")]
    pub baud: u32,
    #[serde(default = "default_parity")]
    pub parity: Parity,
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
    #[serde(default = "default_flow")]
    pub flow_control: FlowControl,
    /// Strip a leading AIM symbology identifier (`]Q1`, `]E0`, ...) and record it.
    #[serde(default)]
    pub aim_ids: bool,
    /// Keyboard: the layout the scanner types in.
    #[serde(default)]
    pub layout: Option<String>,
    /// Keyboard: take the device exclusively (EVIOCGRAB), so scans do not also reach the
    /// till's desktop or console.
    #[serde(default = "yes")]
    pub grab: bool,
    /// Keyboard: a partial code is dropped (recorded as unreadable) when its next key comes
    /// later than this (default 100 ms).
    #[serde(default, deserialize_with = "duration::de_opt")]
    pub inter_key_timeout: Option<Duration>,
    /// HID-POS: the input report id carrying scan data.
    #[serde(default)]
    pub report_id: Option<u8>,
    /// Serial: bytes written back to the scanner on a good outcome (a beep/LED command).
    #[serde(default)]
    pub good_read: Option<String>,
    /// Serial: bytes written back on a rejected or refused outcome.
    #[serde(default)]
    pub bad_read: Option<String>,
}

impl ScannerConfig {
    pub fn layout(&self) -> Layout {
        self.layout
            .as_deref()
            .and_then(Layout::parse)
            .unwrap_or(Layout::Us)
    }
}

pub(super) fn default_baud() -> u32 {
    9600
}

pub(super) fn default_parity() -> Parity {
    Parity::None
}

pub(super) fn default_data_bits() -> u8 {
    8
}

pub(super) fn default_stop_bits() -> u8 {
    1
}

pub(super) fn default_flow() -> FlowControl {
    FlowControl::None
}

/// `[[scanner]]`: names unique, paths where the type needs them, fields only for their type.
pub(super) fn check_scanners(
    mut scanners: Vec<ScannerConfig>,
    base: &Path,
    problems: &mut Vec<String>,
) -> Vec<ScannerConfig> {
    let mut names = HashSet::new();
    for (i, s) in scanners.iter_mut().enumerate() {
        let key = format!("scanner[{i}]");
        if s.name.trim().is_empty() {
            problems.push(format!("{key}.name: must not be empty"));
        } else if s.name == "keyed" {
            problems.push(format!(
                "{key}.name: \"keyed\" is reserved for codes typed in by hand"
            ));
        } else if !names.insert(s.name.clone()) {
            problems.push(format!("{key}.name: {:?} is used twice", s.name));
        }
        match (&s.kind, &s.path) {
            (ScannerKind::Stdin, Some(_)) => {
                problems.push(format!("{key}.path: a stdin scanner has no path"))
            }
            (ScannerKind::Stdin, None) => {}
            (_, None) => problems.push(format!("{key}.path: this scanner type needs a path")),
            (_, Some(p)) => s.path = Some(resolve(base, p)),
        }
        let only = |field: &str, set: bool, kind: ScannerKind, problems: &mut Vec<String>| {
            if set && s.kind != kind {
                problems.push(format!(
                    "{key}.{field}: only for type = \"{}\"",
                    format!("{kind:?}").to_lowercase()
                ));
            }
        };
        only(
            "layout",
            s.layout.is_some(),
            ScannerKind::Keyboard,
            problems,
        );
        only(
            "inter_key_timeout",
            s.inter_key_timeout.is_some(),
            ScannerKind::Keyboard,
            problems,
        );
        only(
            "report_id",
            s.report_id.is_some(),
            ScannerKind::Hidpos,
            problems,
        );
        only(
            "good_read",
            s.good_read.is_some(),
            ScannerKind::Serial,
            problems,
        );
        only(
            "bad_read",
            s.bad_read.is_some(),
            ScannerKind::Serial,
            problems,
        );
        if let Some(l) = &s.layout
            && Layout::parse(l).is_none()
        {
            problems.push(format!(
                "{key}.layout: {l:?} is not a known layout ({})",
                Layout::NAMES
            ));
        }
        if !(5..=8).contains(&s.data_bits) {
            problems.push(format!("{key}.data_bits: must be 5, 6, 7 or 8"));
        }
        if !(1..=2).contains(&s.stop_bits) {
            problems.push(format!("{key}.stop_bits: must be 1 or 2"));
        }
        if s.baud == 0 {
            problems.push(format!("{key}.baud: must be a positive rate such as 9600"));
        }
    }

    scanners
}
