//! The subcommands behind `main`: each loads what it needs once, does its work, and maps
//! errors to exit codes (0, 1, 2 for bad usage, 78 `EX_CONFIG`).

pub(crate) mod daemon;
pub(crate) mod records;

use redeemd::config::Config;
use std::process::ExitCode;

/// A configuration problem (`EX_CONFIG`).
pub(crate) const EX_CONFIG: u8 = 78;

pub(crate) fn load_config(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("redeemd: {e}");
        ExitCode::from(EX_CONFIG)
    })
}
