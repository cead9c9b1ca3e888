//! redeemd: reads coupon codes from barcode scanners and redeems them with WeChat exactly
//! once, through outages. README.md is the user's guide; docs/ is the manual, and
//! docs/design.md the layout of the source with where each kind of change goes.
//!
//! The till's modules, in the order data flows through them:
//!
//! - [`scanner`]: serial, keyboard (evdev), HID-POS and stdin sources; bytes → frames, pure.
//! - [`route`]: a frame's code → the API that redeems it, or a local refusal (payment codes
//!   first).
//! - [`redeem::intake`]: the whole scan → answer trip: records the scan in the ledger
//!   (nothing is acknowledged before that commit), claims it store-wide
//!   ([`redeem::store_guard`] over [`guard`]) and answers the till within `online_wait`.
//! - [`ledger`]: the SQLite ledger, the truth: one writer thread, group commit, shared
//!   fsyncs; its SQL is one file per aggregate (`ledger::scans`, `ledger::tries`,
//!   `ledger::voids`, `ledger::queries`, ...).
//! - [`redeem::dispatcher`]: due rows, oldest first, with adaptive concurrency
//!   ([`redeem::aimd`]); one try per row ([`redeem::card`], [`redeem::coupon`]) whose answers
//!   the pure decision tables ([`redeem::card_rules`], [`redeem::coupon_rules`]) turn into
//!   verdicts.
//! - [`wechat`]: the card API and its tokens; [`wechatpay`]: WeChat Pay v3 (signing,
//!   verification, failover, notifications).
//! - [`outcome`]: what the till is told, on channels the till's HTTP API (SSE, pages) and the
//!   scanners' beeps read; [`metrics`] renders all of `/metrics`.
//! - [`chain`]: the till's row versions and status, published for headquarters.
//! - [`model`]: the domain under all of them: states and their rules, codes (masked in
//!   `Debug`), frames, scans, rows, claims, request numbers.
//!
//! Around them: [`daemon`] starts them in order (what sends to WeChat last) and stops them
//! in order; the binary's `src/cli/` is one file per command; [`config`] is read once, one file per section,
//! below every part. Headquarters' [`fleet`] reads the chain's streams and listens to WeChat
//! Pay ([`wechatpay`]); it shares only [`http`] (host policy, bounded connections, CSV, page
//! headers, tokens) with the till's API. [`sim`] is the simulated WeChat for the demo and the tests.

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
pub mod wechatpay;
