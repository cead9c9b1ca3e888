//! The `redeemd` command: parses the command line, loads the config, and hands over to the
//! library. Exit codes: 0 ok, 1 runtime failure, 78 (EX_CONFIG) configuration problem.

mod cli;

use clap::{Parser, Subcommand, ValueEnum};
use cli::check::check;
use cli::daemon::{backup, block_on, init_logging, run};
use cli::records::{export, log, resolve, review, summary, void};
use redeemd::config::DEFAULT_CONFIG_PATH;
use redeemd::model::state::State;
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// The language of the reasons `log`, `review` and `export` print: zh-CN or en
    /// (default: the config's [http] language).
    #[arg(long, global = true, value_parser = |s: &str| redeemd::model::reason::Language::parse(s).ok_or("use zh-CN or en"))]
    lang: Option<redeemd::model::reason::Language>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
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
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Also read WeChat's daily call quotas for the paths redeemd uses
        /// (openapi/quota/get).
        #[arg(long)]
        quota: bool,
        /// Also check that the store's NATS answers and its claims bucket opens ([store]).
        #[arg(long)]
        connect: bool,
        /// The config is HQ's (`redeemd fleet`'s hq.toml), not a till's.
        #[arg(long, conflicts_with_all = ["quota", "connect"])]
        fleet: bool,
    },
    /// HQ's view of every store: consumes the chain's stream into a read model and serves
    /// the fleet page, its JSON API and metrics.
    Fleet {
        /// HQ's config (hq.toml).
        #[arg(
            long,
            env = "REDEEMD_FLEET_CONFIG",
            default_value = "/etc/redeemd/hq.toml"
        )]
        config: PathBuf,
        /// Delete the read model and read the chain's stream again from its start.
        #[arg(long)]
        rebuild: bool,
    },
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
    /// Void the sale a redemption belongs to: a code not yet confirmed is cancelled, a
    /// redeemed merchant coupon is given back (by the running daemon), a redeemed card code
    /// goes to review (WeChat cannot undo a consume).
    Void {
        #[command(flatten)]
        config: ConfigArg,
        /// The redemption's id.
        id: i64,
        /// Why the sale is voided.
        #[arg(long)]
        reason: String,
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
    cli::set_lang(cli.lang);
    let demo = matches!(cli.command, Command::Demo);
    init_logging(cli.log_format, if demo { "warn" } else { "info" });
    match cli.command {
        Command::Run(c) => run(c.config),
        Command::Check {
            config,
            fleet: true,
            ..
        } => cli::fleet::check(&config.config),
        Command::Check {
            config,
            quota,
            connect,
            fleet: false,
        } => check(config.config, quota, connect),
        Command::Fleet { config, rebuild } => cli::fleet::run(&config, rebuild),
        Command::Backup { config, dest } => backup(config.config, dest),
        Command::Demo => block_on(async { cli::demo::run().await }),
        Command::Devices { sys_root, dev_root } => {
            let roots = cli::devices::Roots {
                sys: sys_root,
                dev: dev_root,
            };
            print!("{}", cli::devices::render(&cli::devices::discover(&roots)));
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
        Command::Void { config, id, reason } => void(config.config, id, reason),
        Command::Export {
            config,
            since,
            until,
        } => export(config.config, since, until),
        Command::Summary { config, day } => summary(config.config, day),
    }
}
