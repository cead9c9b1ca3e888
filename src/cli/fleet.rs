//! `fleet` and `check --fleet`: HQ's view of the chain.

use super::EX_CONFIG;
use redeemd::config::fleet::FleetConfig;
use redeemd::daemon::{DaemonError, termination_signal};
use redeemd::fleet::FleetLoaded;
use std::path::Path;
use std::process::ExitCode;

/// Reads and checks `hq.toml` and the files it names, printing every problem.
fn load(path: &Path, quiet_ok: bool) -> Result<FleetLoaded, ExitCode> {
    let config = FleetConfig::load(path).map_err(|e| {
        eprintln!("redeemd: {e}");
        ExitCode::from(EX_CONFIG)
    })?;
    match redeemd::fleet::load(config) {
        Ok(l) => {
            if !quiet_ok {
                println!("{}: OK", path.display());
            }
            Ok(l)
        }
        Err(problems) => {
            eprintln!("redeemd: config {}:", path.display());
            for p in problems {
                eprintln!("  - {p}");
            }
            Err(ExitCode::from(EX_CONFIG))
        }
    }
}

pub(crate) fn check(path: &Path) -> ExitCode {
    match load(path, false) {
        Ok(_) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

pub(crate) fn run(path: &Path, rebuild: bool) -> ExitCode {
    let loaded = match load(path, true) {
        Ok(l) => l,
        Err(code) => return code,
    };
    super::daemon::block_on(async move {
        redeemd::fleet::run(loaded, rebuild, termination_signal())
            .await
            .map_err(DaemonError::Http)
    })
}
