//! The redemption log for people: `log`, `review`, `resolve`, `export` and `summary`, read
//! from the ledger while the daemon runs (WAL).

use super::load_config;
use redeemd::config::Config;
use redeemd::ledger::queries::Filter;
use redeemd::ledger::voids;
use redeemd::model::state::State;
use redeemd::{ledger, report};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

pub(crate) fn log(
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
        Ok(e) => in_language(e, &config),
        Err(e) => {
            eprintln!("redeemd log: {e}");
            return ExitCode::FAILURE;
        }
    };
    finish_output("redeemd log", print_entries(&entries, json))
}

/// `--since`/`--until` as times, or the message saying which one is wrong.
/// The entries' reasons in `--lang` (or the config's language), their routes named.
fn in_language(entries: Vec<report::LogEntry>, config: &Config) -> Vec<report::LogEntry> {
    let lang = super::lang(config);
    let names: Vec<Option<String>> = config.routes.iter().map(|r| r.name.clone()).collect();
    entries
        .into_iter()
        .map(|e| e.with_route_name(&names).in_language(lang))
        .collect()
}

pub(crate) fn time_range(
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
pub(crate) fn print_entries(entries: &[report::LogEntry], json: bool) -> std::io::Result<()> {
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
pub(crate) fn buffered_stdout() -> std::io::BufWriter<std::io::StdoutLock<'static>> {
    std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock())
}

/// Loads the config and opens its ledger read-only, or says why not.
pub(crate) fn load_ledger_ro(
    path: &std::path::Path,
) -> Result<(Config, rusqlite::Connection), ExitCode> {
    let config = load_config(path)?;
    let conn = open_ledger_ro(&config)?;
    Ok((config, conn))
}

/// Opens the config's ledger read-only, or says why not.
pub(crate) fn open_ledger_ro(config: &Config) -> Result<rusqlite::Connection, ExitCode> {
    if !config.database.exists() {
        eprintln!(
            "redeemd: no ledger at {} yet (the daemon creates it on its first start)",
            config.database.display()
        );
        return Err(ExitCode::FAILURE);
    }
    ledger::schema::open_ro(&config.database).map_err(|e| {
        eprintln!("redeemd: {e}");
        ExitCode::FAILURE
    })
}

/// The exit code once output is written; errors are reported as `{who}: {error}`.
pub(crate) fn finish_output(who: &str, r: std::io::Result<()>) -> ExitCode {
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

pub(crate) fn review(path: PathBuf, json: bool) -> ExitCode {
    let (config, conn) = match load_ledger_ro(&path) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let filter = Filter {
        state: Some(State::Review),
        unresolved: true,
        ..Filter::default()
    };
    let entries = match report::load(&conn, &filter) {
        Ok(e) => in_language(e, &config),
        Err(e) => {
            eprintln!("redeemd review: {e}");
            return ExitCode::FAILURE;
        }
    };
    finish_output("redeemd", print_entries(&entries, json))
}

pub(crate) fn resolve(path: PathBuf, id: i64, note: String, decision: Option<State>) -> ExitCode {
    let config = match load_config(&path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let note = match text_arg(
        "redeemd resolve",
        &note,
        "--note",
        "say what was decided",
        redeemd::model::state::MAX_NOTE,
    ) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let mut conn = match ledger::schema::open_rw(&config.database) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("redeemd resolve: {e}");
            return ExitCode::FAILURE;
        }
    };
    let by = operator();
    let now = chrono::Utc::now().timestamp_millis();
    match redeemd::ledger::review::resolve(&mut conn, id, decision, &note, &by, now) {
        Ok(redeemd::ledger::review::Resolved::Done(row)) => {
            println!("#{} resolved as {} by {by}", row.id, row.state);
            ExitCode::SUCCESS
        }
        Ok(redeemd::ledger::review::Resolved::NotFound) => {
            eprintln!("redeemd resolve: no redemption {id}");
            ExitCode::FAILURE
        }
        Ok(redeemd::ledger::review::Resolved::NotInReview(s)) => {
            eprintln!("redeemd resolve: redemption {id} is {s}, not waiting for review");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("redeemd resolve: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `redeemd void`: the void is written here, in one commit; a coupon's return is then
/// carried out by the running daemon, which this waits a little for.
pub(crate) fn void(path: PathBuf, id: i64, reason: String) -> ExitCode {
    use redeemd::ledger::voids::VoidRequest;
    use redeemd::ledger::voids::Voided;
    use redeemd::model::void::{VOIDED_CARD, VoidPlan};
    let config = match load_config(&path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let reason = match text_arg(
        "redeemd void",
        &reason,
        "--reason",
        "why the sale is voided",
        redeemd::model::void::MAX_REASON,
    ) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let mut conn = match ledger::schema::open_rw(&config.database) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("redeemd void: {e}");
            return ExitCode::FAILURE;
        }
    };
    let by = operator();
    let now = chrono::Utc::now().timestamp_millis();
    let rrn = redeemd::model::request_no::new_return_request_no(&config.till, now);
    let request = VoidRequest {
        reason: &reason,
        by: Some(&by),
        at: now,
        return_request_no: &rrn,
    };
    match voids::void(&mut conn, id, &request) {
        Ok(Voided::Done(plan, row)) => match plan {
            VoidPlan::Cancel => {
                println!("#{id} voided: cancelled, it will never be redeemed");
                ExitCode::SUCCESS
            }
            VoidPlan::Nothing => {
                println!("#{id} voided: it is {}, nothing to undo", row.state);
                ExitCode::SUCCESS
            }
            VoidPlan::Review => {
                eprintln!("#{id} is in review: {VOIDED_CARD}");
                ExitCode::FAILURE
            }
            VoidPlan::ResolveFirst => {
                eprintln!("redeemd void: #{id} waits for a manager's review: resolve it first");
                ExitCode::FAILURE
            }
            VoidPlan::Return => await_return(&conn, id, &rrn),
        },
        Ok(Voided::Already(row)) if row.state == redeemd::model::state::State::Review => {
            eprintln!(
                "#{id} was voided before and is in review: {}",
                row.reason.as_deref().unwrap_or(VOIDED_CARD)
            );
            ExitCode::FAILURE
        }
        Ok(Voided::Already(row)) => {
            println!("#{id} was voided before; it is {}", row.state);
            ExitCode::SUCCESS
        }
        Ok(Voided::NotFound) => {
            eprintln!("redeemd void: no redemption {id}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("redeemd void: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Waits (10 s at most) for the running daemon to give the coupon back.
fn await_return(conn: &rusqlite::Connection, id: i64, rrn: &str) -> ExitCode {
    use redeemd::model::row::VoidState;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let Ok(Some(row)) = redeemd::ledger::queries::get(conn, id) else {
            break;
        };
        match row.void.as_ref().map(|v| v.state) {
            Some(VoidState::Done) => {
                println!("#{id} voided: the coupon was given back (return_request_no {rrn})");
                return ExitCode::SUCCESS;
            }
            Some(VoidState::Failed) => {
                eprintln!("#{id}: {}", row.reason.unwrap_or_default());
                return ExitCode::FAILURE;
            }
            _ => std::thread::sleep(std::time::Duration::from_millis(200)),
        }
    }
    println!(
        "#{id} voided: the coupon's return is recorded (return_request_no {rrn}) and pending; the running redeemd gives it back, retrying until WeChat Pay answers"
    );
    ExitCode::SUCCESS
}

/// Who runs the command, for the record.
/// Free text a person typed, checked as the API checks it (`model::text::checked`), or exit
/// code 2 with what is wrong.
fn text_arg(
    who: &str,
    value: &str,
    name: &str,
    what: &str,
    max: usize,
) -> Result<String, ExitCode> {
    redeemd::model::text::checked(value, name, what, max).map_err(|e| {
        eprintln!("{who}: {e}");
        ExitCode::from(2)
    })
}

fn operator() -> String {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "cli".into())
}

pub(crate) fn export(path: PathBuf, since: Option<String>, until: Option<String>) -> ExitCode {
    let (config, conn) = match load_ledger_ro(&path) {
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
            let entries = in_language(entries, &config);
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

pub(crate) fn summary(path: PathBuf, day: Option<String>) -> ExitCode {
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
