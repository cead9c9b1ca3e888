//! `run` and `backup`: the daemon's start (one load of everything it needs, shared with
//! `check`), and the logging it writes.

use super::{EX_CONFIG, load_config};
use crate::LogFormat;
use redeemd::config::Config;
use redeemd::daemon::load::Findings;
use redeemd::daemon::load::Loaded;
use redeemd::daemon::{Daemon, DaemonError, termination_signal};
use std::path::PathBuf;
use std::process::ExitCode;

pub(crate) fn init_logging(format: LogFormat, default_level: &str) {
    use tracing_subscriber::prelude::*;
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level))
    };
    // Under systemd (stderr goes to the journal), log to journald natively: fields stay
    // fields, levels become priorities.
    if matches!(format, LogFormat::Text)
        && std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(journald) = tracing_journald::layer()
    {
        tracing_subscriber::registry()
            .with(filter())
            .with(journald.with_syslog_identifier("redeemd".into()))
            .init();
        return;
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// The start-up load `check` and `run` share: reads and checks everything `run` needs,
/// prints what it finds; `Err` is the exit code.
pub(crate) fn load_all(path: &std::path::Path, quiet_ok: bool) -> Result<Loaded, ExitCode> {
    let (source, found) = match Config::load(path) {
        Ok(config) => {
            let source = config.source.clone();
            match redeemd::daemon::load::load(config) {
                Ok(loaded) => {
                    for w in &loaded.warnings {
                        eprintln!("redeemd: warning: {w}");
                    }
                    if !quiet_ok {
                        println!("{}: OK", source.display());
                    }
                    return Ok(loaded);
                }
                Err(f) => (source, f),
            }
        }
        // What the config's own checks found, and what the start-up checks find in the
        // config as far as it could be built: every problem at once.
        Err(e) => {
            let mut found = match e.partial {
                Some(partial) => redeemd::daemon::load::load(*partial)
                    .err()
                    .unwrap_or_default(),
                None => Findings::default(),
            };
            let mut problems = e.problems;
            problems.append(&mut found.problems);
            found.problems = problems;
            (e.path, found)
        }
    };
    for w in &found.warnings {
        eprintln!("redeemd: warning: {w}");
    }
    eprintln!("redeemd: config {}:", source.display());
    for p in &found.problems {
        eprintln!("  - {p}");
    }
    Err(ExitCode::from(EX_CONFIG))
}

pub(crate) fn run(path: PathBuf) -> ExitCode {
    let loaded = match load_all(&path, true) {
        Ok(l) => l,
        Err(code) => return code,
    };
    block_on(async move {
        let daemon = Daemon::new(loaded)?;
        daemon.run(termination_signal()).await
    })
}

pub(crate) fn block_on(fut: impl Future<Output = Result<(), DaemonError>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("redeemd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(DaemonError::Config(e)) => {
            eprintln!("redeemd: {e}");
            ExitCode::from(EX_CONFIG)
        }
        Err(e) => {
            eprintln!("redeemd: {e}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn backup(path: PathBuf, dest: PathBuf) -> ExitCode {
    let config = match load_config(&path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match redeemd::ledger::backup(&config.database, &dest) {
        Ok(rows) => {
            println!("{} rows copied to {}", rows, dest.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("redeemd backup: {e}");
            ExitCode::FAILURE
        }
    }
}
