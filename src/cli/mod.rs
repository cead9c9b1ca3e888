//! The subcommands behind `main`: each loads what it needs once, does its work, and maps
//! errors to exit codes (0, 1, 2 for bad usage, 78 `EX_CONFIG`).

pub(crate) mod check;
pub(crate) mod daemon;
pub(crate) mod demo;
pub(crate) mod demo_chain;
pub(crate) mod devices;
pub(crate) mod fleet;
pub(crate) mod records;

use redeemd::config::Config;
use std::process::ExitCode;

/// `--lang`, for the commands that print reasons (set once, from the command line).
static LANG: std::sync::OnceLock<redeemd::model::reason::Language> = std::sync::OnceLock::new();

pub(crate) fn set_lang(lang: Option<redeemd::model::reason::Language>) {
    if let Some(l) = lang {
        let _ = LANG.set(l);
    }
}

/// The language reasons are printed in: `--lang`, else the config's `[http] language`.
pub(crate) fn lang(config: &Config) -> redeemd::model::reason::Language {
    LANG.get().copied().unwrap_or(config.http.language)
}

/// A configuration problem (`EX_CONFIG`).
pub(crate) const EX_CONFIG: u8 = 78;

pub(crate) fn load_config(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("redeemd: {e}");
        ExitCode::from(EX_CONFIG)
    })
}
