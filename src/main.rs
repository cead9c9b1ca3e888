//! The `redeemd` command: parses the command line, loads the config, and hands over to the
//! library. Exit codes: 0 ok, 1 runtime failure, 78 (EX_CONFIG) configuration problem.

use clap::{Parser, Subcommand, ValueEnum};
use redeemd::check::Loaded;
use redeemd::config::{Config, DEFAULT_CONFIG_PATH};
use redeemd::daemon::{Daemon, DaemonError, termination_signal};
use redeemd::ledger::store::Filter;
use redeemd::model::state::State;
use redeemd::{ledger, report};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

const EX_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    name = "redeemd",
    version,
    about = "Redeems WeChat coupon codes read from barcode scanners, exactly once, through outages"
)]
struct Cli {
    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
struct ConfigArg {
    /// The config file.
    #[arg(long, env = "REDEEMD_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground.
    Run(ConfigArg),
    /// Validate the config, secrets, keys and ledger without starting (exit 78 on problems).
    Check(ConfigArg),
    /// Copy the ledger consistently while the daemon runs (SQLite backup API).
    Backup {
        #[command(flatten)]
        config: ConfigArg,
        /// Where to write the copy.
        dest: PathBuf,
    },
    /// Print the redemption log (works while the daemon runs).
    Log {
        #[command(flatten)]
        config: ConfigArg,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Only rows in this state: queued, redeemed, rejected, cancelled, review.
        #[arg(long)]
        state: Option<State>,
        /// Only rows scanned at or after: RFC 3339, a date, "today", or a duration ago ("2h").
        #[arg(long)]
        since: Option<String>,
        /// Only rows scanned before (same forms as --since).
        #[arg(long)]
        until: Option<String>,
        /// At most this many rows.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Try redeemd against a built-in simulated WeChat, typing codes as the scanner.
    Demo,
    /// List the redemptions waiting for a manager's review.
    Review {
        #[command(flatten)]
        config: ConfigArg,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Close a review item, with a note saying what was decided.
    Resolve {
        #[command(flatten)]
        config: ConfigArg,
        /// The redemption's id (from `redeemd review`).
        id: i64,
        #[arg(long)]
        note: String,
        /// redeemed or rejected (default: redeemed if WeChat confirmed a redemption).
        #[arg(long, value_parser = |s: &str| State::parse_among(s, &State::RESOLUTIONS))]
        state: Option<State>,
    },
    /// The redemption log as CSV, for reconciliation against WeChat's statements.
    Export {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
    },
    /// A day's counts by state and by route.
    Summary {
        #[command(flatten)]
        config: ConfigArg,
        /// The day (YYYY-MM-DD, local time); default today.
        #[arg(long)]
        day: Option<String>,
    },
    /// List candidate scanners (serial, keyboard-wedge, HID-POS) as ready-to-paste [[scanner]] blocks.
    Devices {
        /// Read sysfs from here instead of /sys (for tests).
        #[arg(long, hide = true, default_value = "/sys")]
        sys_root: PathBuf,
        /// Read device nodes from here instead of /dev (for tests).
        #[arg(long, hide = true, default_value = "/dev")]
        dev_root: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let demo = matches!(cli.command, Command::Demo);
    init_logging(cli.log_format, if demo { "warn" } else { "info" });
    match cli.command {
        Command::Run(c) => run(c.config),
        Command::Check(c) => check(c.config),
        Command::Backup { config, dest } => backup(config.config, dest),
        Command::Demo => block_on(async { redeemd::demo::run().await }),
        Command::Devices { sys_root, dev_root } => {
            let roots = redeemd::devices::Roots {
                sys: sys_root,
                dev: dev_root,
            };
            print!(
                "{}",
                redeemd::devices::render(&redeemd::devices::discover(&roots))
            );
            ExitCode::SUCCESS
        }
        Command::Log {
            config,
            json,
            state,
            since,
            until,
            limit,
        } => log(config.config, json, state, since, until, limit),
        Command::Review { config, json } => review(config.config, json),
        Command::Resolve {
            config,
            id,
            note,
            state,
        } => resolve(config.config, id, note, state),
        Command::Export {
            config,
            since,
            until,
        } => export(config.config, since, until),
        Command::Summary { config, day } => summary(config.config, day),
    }
}

fn init_logging(format: LogFormat, default_level: &str) {
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
fn load_all(path: &std::path::Path, quiet_ok: bool) -> Result<Loaded, ExitCode> {
    let config = load_config(path)?;
    let source = config.source.clone();
    match redeemd::check::load(config) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("redeemd: warning: {w}");
            }
            if !quiet_ok {
                println!("{}: OK", source.display());
            }
            Ok(loaded)
        }
        Err(f) => {
            for w in &f.warnings {
                eprintln!("redeemd: warning: {w}");
            }
            eprintln!("redeemd: config {}:", source.display());
            for p in &f.problems {
                eprintln!("  - {p}");
            }
            Err(ExitCode::from(EX_CONFIG))
        }
    }
}

fn check(path: PathBuf) -> ExitCode {
    match load_all(&path, false) {
        Ok(_) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

fn backup(path: PathBuf, dest: PathBuf) -> ExitCode {
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

fn load_config(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("redeemd: {e}");
        ExitCode::from(EX_CONFIG)
    })
}

fn block_on(fut: impl Future<Output = Result<(), DaemonError>>) -> ExitCode {
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

fn run(path: PathBuf) -> ExitCode {
    let loaded = match load_all(&path, true) {
        Ok(l) => l,
        Err(code) => return code,
    };
    block_on(async move {
        let daemon = Daemon::new(loaded)?;
        daemon.run(termination_signal()).await
    })
}

fn log(
    path: PathBuf,
    json: bool,
    state: Option<State>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
) -> ExitCode {
    let config = match load_config(&path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let usage = |msg: String| {
        eprintln!("redeemd log: {msg}");
        ExitCode::from(2)
    };
    let now = chrono::Utc::now().timestamp_millis();
    let mut filter = Filter {
        state,
        limit,
        ..Filter::default()
    };
    match time_range(since, until, now) {
        Ok((s, u)) => (filter.since, filter.until) = (s, u),
        Err(e) => return usage(e),
    }
    let conn = match open_ledger_ro(&config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let entries = match report::load(&conn, &filter) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("redeemd log: {e}");
            return ExitCode::FAILURE;
        }
    };
    finish_output("redeemd log", print_entries(&entries, json))
}

/// `--since`/`--until` as times, or the message saying which one is wrong.
fn time_range(
    since: Option<String>,
    until: Option<String>,
    now: i64,
) -> Result<(Option<i64>, Option<i64>), String> {
    let parse = |arg: Option<String>, name: &str| {
        arg.map(|t| report::parse_when(&t, now).map_err(|e| format!("{name}: {e}")))
            .transpose()
    };
    Ok((parse(since, "--since")?, parse(until, "--until")?))
}

/// Log rows as a table, or as JSON lines.
fn print_entries(entries: &[report::LogEntry], json: bool) -> std::io::Result<()> {
    let mut out = buffered_stdout();
    if json {
        report::write_json(&mut out, entries)?;
    } else {
        report::write_table(&mut out, entries)?;
    }
    out.flush()
}

/// Stdout for bulk output. Rust's stdout is line-buffered and looks for a newline in every
/// write; serde_json makes many small writes, so a log of 100,000 rows spent a third of
/// its time there.
fn buffered_stdout() -> std::io::BufWriter<std::io::StdoutLock<'static>> {
    std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock())
}

/// Loads the config and opens its ledger read-only, or says why not.
fn load_ledger_ro(path: &std::path::Path) -> Result<(Config, rusqlite::Connection), ExitCode> {
    let config = load_config(path)?;
    let conn = open_ledger_ro(&config)?;
    Ok((config, conn))
}

/// Opens the config's ledger read-only, or says why not.
fn open_ledger_ro(config: &Config) -> Result<rusqlite::Connection, ExitCode> {
    if !config.database.exists() {
        eprintln!(
            "redeemd: no ledger at {} yet (the daemon creates it on its first start)",
            config.database.display()
        );
        return Err(ExitCode::FAILURE);
    }
    ledger::open_ro(&config.database).map_err(|e| {
        eprintln!("redeemd: {e}");
        ExitCode::FAILURE
    })
}

/// The exit code once output is written; errors are reported as `{who}: {error}`.
fn finish_output(who: &str, r: std::io::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`redeemd log | head`) is not an error worth a message.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{who}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn review(path: PathBuf, json: bool) -> ExitCode {
    let (_, conn) = match load_ledger_ro(&path) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let filter = Filter {
        state: Some(State::Review),
        unresolved: true,
        ..Filter::default()
    };
    let entries = match report::load(&conn, &filter) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("redeemd review: {e}");
            return ExitCode::FAILURE;
        }
    };
    finish_output("redeemd", print_entries(&entries, json))
}

fn resolve(path: PathBuf, id: i64, note: String, decision: Option<State>) -> ExitCode {
    let config = match load_config(&path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if note.trim().is_empty() {
        eprintln!("redeemd resolve: --note must say what was decided");
        return ExitCode::from(2);
    }
    let mut conn = match ledger::open_rw(&config.database) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("redeemd resolve: {e}");
            return ExitCode::FAILURE;
        }
    };
    let by = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "cli".into());
    let now = chrono::Utc::now().timestamp_millis();
    match redeemd::ledger::store::resolve(&mut conn, id, decision, note.trim(), &by, now) {
        Ok(redeemd::ledger::store::Resolved::Done(row)) => {
            println!("#{} resolved as {} by {by}", row.id, row.state);
            ExitCode::SUCCESS
        }
        Ok(redeemd::ledger::store::Resolved::NotFound) => {
            eprintln!("redeemd resolve: no redemption {id}");
            ExitCode::FAILURE
        }
        Ok(redeemd::ledger::store::Resolved::NotInReview(s)) => {
            eprintln!("redeemd resolve: redemption {id} is {s}, not waiting for review");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("redeemd resolve: {e}");
            ExitCode::FAILURE
        }
    }
}

fn export(path: PathBuf, since: Option<String>, until: Option<String>) -> ExitCode {
    let (_, conn) = match load_ledger_ro(&path) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let now = chrono::Utc::now().timestamp_millis();
    let mut filter = Filter::default();
    match time_range(since, until, now) {
        Ok((s, u)) => (filter.since, filter.until) = (s, u),
        Err(e) => {
            eprintln!("redeemd export: {e}");
            return ExitCode::from(2);
        }
    }
    match report::load(&conn, &filter) {
        Ok(entries) => {
            let mut out = buffered_stdout();
            finish_output(
                "redeemd",
                report::write_csv(&mut out, &entries).and_then(|()| out.flush()),
            )
        }
        Err(e) => {
            eprintln!("redeemd export: {e}");
            ExitCode::FAILURE
        }
    }
}

fn summary(path: PathBuf, day: Option<String>) -> ExitCode {
    let (config, conn) = match load_ledger_ro(&path) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let now = chrono::Utc::now().timestamp_millis();
    let day = day.unwrap_or_else(|| "today".into());
    let (start, end) = match report::day_bounds(&day, now, &chrono::Local) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("redeemd summary: --day: {e}");
            return ExitCode::from(2);
        }
    };
    match report::summary(&conn, &config, start, end) {
        Ok(text) => finish_output(
            "redeemd",
            std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes()),
        ),
        Err(e) => {
            eprintln!("redeemd summary: {e}");
            ExitCode::FAILURE
        }
    }
}
