//! redeemd: reads coupon codes from barcode scanners and redeems them with WeChat exactly
//! once, through outages. README.md is the user's guide; docs/ is the manual, and
//! docs/design.md the layout of the source.
//!
//! The modules in the order data flows through them:
//!
//! - [`scanner`]: serial, keyboard (evdev), HID-POS and stdin sources; bytes → frames, pure.
//! - [`route`]: a frame's code → the API that redeems it, or a local refusal (payment codes
//!   first).
//! - [`redeem::intake`]: records the scan in the ledger (nothing is acknowledged before that
//!   commit) and answers the till within `online_wait`.
//! - [`ledger`]: the SQLite ledger, the truth: one writer thread, group commit, shared
//!   fsyncs; every SQL statement is in `ledger::store`.
//! - [`redeem::dispatcher`]: due rows, oldest first, with adaptive concurrency
//!   ([`redeem::aimd`]); one try per row ([`redeem::card`], [`redeem::coupon`]) whose answers
//!   the pure decision tables ([`redeem::card_rules`], [`redeem::coupon_rules`]) turn into
//!   verdicts.
//! - [`wechat`]: the card API, WeChat Pay v3 (signing, verification, failover) and tokens.
//! - [`outcome`]: what the till is told, on channels the [`api`] (SSE, pages, metrics) and
//!   the scanners' beeps read.
//! - [`model`]: the domain under all of them: states and their rules, codes (masked in
//!   `Debug`), frames, scans, rows.
//!
//! - [`http`]: what the till's [`api`] and HQ's [`fleet`] page both serve with (host policy,
//!   bounded connections, CSV, page headers, tokens).
//!
//! [`daemon`] wires them and starts what sends last; [`config`] is read once, below every
//! part; [`sim`] is the simulated WeChat for the demo and the tests.

pub(crate) mod api;
pub mod chain;

pub mod clock;
pub mod config;
pub mod daemon;
pub(crate) mod duration;
pub mod fleet;
pub mod fuzzing;
pub mod guard;
pub(crate) mod http;
pub mod ledger;
pub(crate) mod mask;
pub mod metrics;
pub mod model;
pub(crate) mod notify;
pub mod outcome;
pub mod redeem;
pub mod report;
pub mod route;
pub mod scanner;
pub(crate) mod secrets;
pub mod sim;
pub mod wechat;
