//! The redemption log as people and programs read it: `redeemd log`.

use crate::clock::{self, Millis};
use crate::ledger::queries;
use crate::ledger::queries::Filter;
use crate::model::code::Code;
use crate::model::reason::{self, Language};
use crate::model::row::Row;
use chrono::{Local, NaiveDate, TimeZone};
use serde::Serialize;
use std::io::Write;

/// One row of `redeemd log --json` (and, later, of the HTTP API).
#[derive(Debug, Clone, Serialize)]
pub struct LogEntry {
    pub id: i64,
    pub code: Code,
    pub api: Option<&'static str>,
    pub state: &'static str,
    pub reason: Option<String>,
    /// `reason`'s stable name (`model::reason`).
    pub reason_code: Option<&'static str>,
    /// The reason as stored (with WeChat's own words), when `reason` is a translation.
    pub detail: Option<String>,
    pub attempts: i64,
    pub scans: i64,
    pub scanner: String,
    pub till: String,
    pub scanned_at: String,
    pub updated_at: String,
    pub redeemed_at: Option<String>,
    pub till_outcome: Option<&'static str>,
    pub card_id: Option<String>,
    pub aim_id: Option<String>,
    /// The barcode type, from the AIM id (QR Code, EAN-13/UPC, Code 128, ...).
    pub symbology: Option<&'static str>,
    /// A redeeming call is out whose answer has not come back.
    pub unconfirmed: bool,
    pub note: Option<String>,
    pub stock_id: Option<String>,
    pub use_request_no: Option<String>,
    pub wechatpay_use_time: Option<String>,
    /// Index of the `[[route]]` that matched.
    pub route: Option<i64>,
    /// That route's `name`, when it has one (filled in by whoever knows the config).
    pub route_name: Option<String>,
    pub resolved_at: Option<String>,
    pub resolved_by: Option<String>,
    pub resolution: Option<String>,
    /// What the code is, when known: title, WeChat's type, face value in fen.
    pub title: Option<String>,
    pub kind: Option<String>,
    pub value: Option<i64>,
    /// The sale: the POS's order, its total before the coupon (fen), the cashier.
    pub order_id: Option<String>,
    pub amount: Option<i64>,
    pub cashier: Option<String>,
    /// The void of the sale, if there was one.
    pub void: Option<VoidEntry>,
    /// How the store guard's claim went: `claimed`, `unavailable` (the till went on
    /// alone), `elsewhere` (another till has the code), `abandoned`; none without `[store]`.
    pub guard: Option<&'static str>,
    /// Earlier sales of the code, voided before it was scanned again for this one: each its
    /// order and its void, oldest first.
    pub past_sales: Vec<String>,
    /// A product coupon's id at WeChat Pay, and while it is held, when its hold ends.
    pub product_coupon_id: Option<String>,
    pub hold_until: Option<String>,
    /// The sale's WeChat Pay order a product coupon is used with.
    pub transaction_id: Option<String>,
    pub out_trade_no: Option<String>,
    pub mchid: Option<String>,
    pub sub_mchid: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VoidEntry {
    /// `pending` (a coupon's return waits for WeChat Pay), `done` or `failed`.
    pub state: &'static str,
    pub reason: String,
    pub by: Option<String>,
    pub at: String,
    pub return_request_no: Option<String>,
    pub returned_at: Option<String>,
}

/// One field of the row's WeChat Pay order.
fn order(r: &Row, field: fn(&crate::model::row::PayOrder) -> &Option<String>) -> Option<String> {
    r.pay_order.as_ref().and_then(|o| field(o).clone())
}

impl From<&Row> for LogEntry {
    fn from(r: &Row) -> Self {
        LogEntry {
            id: r.id,
            code: r.code.clone(),
            api: r.api,
            state: r.state.as_str(),
            reason: r.reason.clone(),
            reason_code: r.reason.as_deref().map(reason::code_of),
            detail: None,
            attempts: r.attempts,
            scans: r.scans,
            scanner: r.scanner.clone(),
            till: r.till.clone(),
            scanned_at: clock::rfc3339(r.scanned_at),
            updated_at: clock::rfc3339(r.updated_at),
            redeemed_at: r.redeemed_at.map(clock::rfc3339),
            till_outcome: r.till_outcome.map(|o| o.as_str()),
            card_id: r.card_id.clone(),
            aim_id: r.aim_id.clone(),
            symbology: r.aim_id.as_deref().map(crate::scanner::hidpos::symbology),
            unconfirmed: r.unconfirmed,
            note: r.note.clone(),
            stock_id: r.stock_id.clone(),
            use_request_no: r.use_request_no.clone(),
            wechatpay_use_time: r.wechatpay_use_time.clone(),
            route: r.route,
            route_name: None,
            resolved_at: r.resolved_at.map(clock::rfc3339),
            resolved_by: r.resolved_by.clone(),
            resolution: r.resolution.clone(),
            title: r.title.clone(),
            kind: r.kind.clone(),
            value: r.value,
            order_id: r.order_id.clone(),
            amount: r.amount,
            cashier: r.cashier.clone(),
            void: r.void.as_ref().map(|v| VoidEntry {
                state: v.state.as_str(),
                reason: v.reason.clone(),
                by: v.by.clone(),
                at: clock::rfc3339(v.at),
                return_request_no: v.return_request_no.clone(),
                returned_at: v.returned_at.map(clock::rfc3339),
            }),
            guard: r.guard.map(|g| g.as_str()),
            past_sales: r.past_sales.clone(),
            product_coupon_id: r.coupon.as_ref().map(|c| c.product_coupon_id.clone()),
            hold_until: r.holds_until().map(clock::rfc3339),
            transaction_id: order(r, |o| &o.transaction_id),
            out_trade_no: order(r, |o| &o.out_trade_no),
            mchid: order(r, |o| &o.mchid),
            sub_mchid: order(r, |o| &o.sub_mchid),
        }
    }
}

impl LogEntry {
    /// The entry as a reader of `lang` gets it: the reason translated, the stored one kept
    /// as `detail`.
    /// Names the entry's route from the config's `[[route]]` names.
    pub fn with_route_name(mut self, names: &[Option<String>]) -> LogEntry {
        self.route_name = self
            .route
            .and_then(|r| usize::try_from(r).ok())
            .and_then(|r| names.get(r).cloned().flatten());
        self
    }

    pub fn in_language(mut self, lang: Language) -> LogEntry {
        if let Some(r) = self.reason.take() {
            let (text, detail) = reason::localized(&r, lang);
            self.reason = Some(text);
            self.detail = detail;
        }
        self
    }
}

/// A point in time for `--since`/`--until`: RFC 3339, a local date (`2026-11-22`), `today`,
/// or a duration ago (`90m`, `2h`, `7d`).
pub fn parse_when(text: &str, now: Millis) -> Result<Millis, String> {
    let t = text.trim();
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(dt.timestamp_millis());
    }
    if let Some(d) = parse_day(t, now, &Local) {
        return start_of_day(d, &Local);
    }
    match crate::duration::parse(t) {
        Ok(d) => Ok(now - d.as_millis() as i64),
        Err(_) => Err(format!(
            "{t:?} is not a time: use RFC 3339 (2026-11-22T09:00:00+08:00), a date (2026-11-22), \"today\", or a duration ago (2h)"
        )),
    }
}

/// A day as a person names it: "today" (in `tz`, at `now`) or exactly `YYYY-MM-DD`.
fn parse_day<Tz: TimeZone>(text: &str, now: Millis, tz: &Tz) -> Option<NaiveDate> {
    if text == "today" {
        return tz
            .timestamp_millis_opt(now)
            .single()
            .map(|t| t.date_naive());
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .filter(|d| d.format("%Y-%m-%d").to_string() == text)
}

/// The first instant of `day` in `tz`: midnight, or the first hour after it where a
/// daylight-saving change skips midnight.
fn start_of_day<Tz: TimeZone>(day: NaiveDate, tz: &Tz) -> Result<Millis, String> {
    (0..3)
        .find_map(|h| {
            let t = day.and_hms_opt(h, 0, 0)?;
            tz.from_local_datetime(&t).earliest()
        })
        .map(|dt| dt.timestamp_millis())
        .ok_or_else(|| format!("{day} has no start in the local time zone"))
}

/// The local day `text` names ("today" at `now`, or `YYYY-MM-DD`) as `[start, end)` in
/// milliseconds, from its midnight to the next day's: a daylight-saving day has 23 or 25
/// hours.
pub fn day_bounds<Tz: TimeZone>(
    text: &str,
    now: Millis,
    tz: &Tz,
) -> Result<(Millis, Millis), String> {
    let day = parse_day(text.trim(), now, tz)
        .ok_or_else(|| format!("{text:?} is not a day: use YYYY-MM-DD or \"today\""))?;
    let next = day.succ_opt().ok_or("the day after that does not exist")?;
    Ok((start_of_day(day, tz)?, start_of_day(next, tz)?))
}

pub fn load(conn: &rusqlite::Connection, filter: &Filter) -> rusqlite::Result<Vec<LogEntry>> {
    Ok(queries::list(conn, filter)?
        .iter()
        .map(LogEntry::from)
        .collect())
}

pub fn write_json(out: &mut impl Write, entries: &[LogEntry]) -> std::io::Result<()> {
    for e in entries {
        serde_json::to_writer(&mut *out, e)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// The columns of the CSV export, for reconciliation against WeChat's statements.
pub const CSV_HEADER: &str = "id,code,api,state,reason,scanned_at,redeemed_at,attempts,scans,scanner,till,card_id,stock_id,use_request_no,wechatpay_use_time,till_outcome,resolved_at,resolved_by,resolution,title,kind,value,order_id,amount,cashier,void_reason,voided_by,voided_at,returned_at,reason_code,detail,guard,past_sales,product_coupon_id,transaction_id,out_trade_no,mchid,sub_mchid";

pub fn write_csv(out: &mut impl Write, entries: &[LogEntry]) -> std::io::Result<()> {
    writeln!(out, "{CSV_HEADER}")?;
    for e in entries {
        let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
        let void = e.void.as_ref();
        let fields: [String; 38] = [
            e.id.to_string(),
            e.code.expose().to_string(),
            e.api.unwrap_or("").into(),
            e.state.into(),
            e.reason.clone().unwrap_or_default(),
            e.scanned_at.clone(),
            e.redeemed_at.clone().unwrap_or_default(),
            e.attempts.to_string(),
            e.scans.to_string(),
            e.scanner.clone(),
            e.till.clone(),
            e.card_id.clone().unwrap_or_default(),
            e.stock_id.clone().unwrap_or_default(),
            e.use_request_no.clone().unwrap_or_default(),
            e.wechatpay_use_time.clone().unwrap_or_default(),
            e.till_outcome.unwrap_or("").into(),
            e.resolved_at.clone().unwrap_or_default(),
            e.resolved_by.clone().unwrap_or_default(),
            e.resolution.clone().unwrap_or_default(),
            e.title.clone().unwrap_or_default(),
            e.kind.clone().unwrap_or_default(),
            opt(e.value),
            e.order_id.clone().unwrap_or_default(),
            opt(e.amount),
            e.cashier.clone().unwrap_or_default(),
            void.map(|v| v.reason.clone()).unwrap_or_default(),
            void.and_then(|v| v.by.clone()).unwrap_or_default(),
            void.map(|v| v.at.clone()).unwrap_or_default(),
            void.and_then(|v| v.returned_at.clone()).unwrap_or_default(),
            e.reason_code.unwrap_or_default().into(),
            e.detail.clone().unwrap_or_default(),
            e.guard.unwrap_or_default().into(),
            e.past_sales.join(" | "),
            e.product_coupon_id.clone().unwrap_or_default(),
            e.transaction_id.clone().unwrap_or_default(),
            e.out_trade_no.clone().unwrap_or_default(),
            e.mchid.clone().unwrap_or_default(),
            e.sub_mchid.clone().unwrap_or_default(),
        ];
        crate::http::csv::record(out, &fields)?;
    }
    Ok(())
}

pub fn write_table(out: &mut impl Write, entries: &[LogEntry]) -> std::io::Result<()> {
    use crate::model::text::printable;
    writeln!(
        out,
        "{:>6}  {:<29}  {:<9}  {:<6}  {:<32}  {:>5}  {:>5}  REASON",
        "ID", "SCANNED", "STATE", "API", "CODE", "SCANS", "TRIES"
    )?;
    for e in entries {
        writeln!(
            out,
            "{:>6}  {:<29}  {:<9}  {:<6}  {:<32}  {:>5}  {:>5}  {}",
            e.id,
            e.scanned_at,
            e.state,
            e.api.unwrap_or("-"),
            printable(e.code.expose()),
            e.scans,
            e.attempts,
            printable(e.reason.as_deref().unwrap_or(""))
        )?;
    }
    writeln!(out, "{} rows", entries.len())
}

/// A day's counts by state, and by route and state, as text.
pub fn summary(
    conn: &rusqlite::Connection,
    config: &crate::config::Config,
    start: Millis,
    end: Millis,
) -> rusqlite::Result<String> {
    use std::collections::BTreeMap;
    use std::fmt::Write as _;
    let counts = queries::counts(conn, Some(start), Some(end))?;
    let mut by_state: BTreeMap<String, i64> = BTreeMap::new();
    let mut by_route: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for (api, route, state, n) in counts {
        *by_state.entry(state.clone()).or_default() += n;
        let label = match (api, route) {
            (Some(api), Some(r)) => {
                let pattern = config
                    .routes
                    .get(r as usize)
                    .map(|c| c.pattern.as_str())
                    .unwrap_or("?");
                format!("route {r} ({api}, {pattern})")
            }
            _ => "refused at the till".to_string(),
        };
        *by_route.entry(label).or_default().entry(state).or_default() += n;
    }
    let pending = queries::pending_count(conn)?;
    let mut out = String::new();
    let _ = writeln!(out, "{} .. {}", clock::rfc3339(start), clock::rfc3339(end));
    for st in [
        "redeemed",
        "rejected",
        "review",
        "queued",
        "cancelled",
        "returned",
    ] {
        let _ = writeln!(out, "  {st:<10} {}", by_state.get(st).copied().unwrap_or(0));
    }
    let _ = writeln!(out, "pending now (all days): {pending}");
    for (route, states) in by_route {
        let parts: Vec<String> = states.iter().map(|(s, n)| format!("{s} {n}")).collect();
        let _ = writeln!(out, "{route}: {}", parts.join(", "));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_is_exactly_a_date_or_today_on_the_given_clock() {
        let tz = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
        // 2026-11-30T20:00:00Z is already 1 December in Shanghai.
        let now = 1_796_068_800_000;
        let (start, end) = day_bounds("today", now, &tz).unwrap();
        assert_eq!(start, 1_796_054_400_000, "1 December 00:00 +08:00");
        assert_eq!(end - start, 86_400_000);
        assert_eq!(day_bounds("2026-12-01", 0, &tz).unwrap(), (start, end));
        for bad in [
            "123456789s",
            "2026-1-05",
            "2026-13-01",
            "2026-12-1 ",
            "yesterday",
            "2026/12/01",
            "",
        ] {
            assert!(day_bounds(bad, now, &tz).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn when_formats() {
        let now = 1_000_000_000_000;
        assert_eq!(parse_when("2h", now).unwrap(), now - 7_200_000);
        assert_eq!(
            parse_when("2026-11-22T09:00:00+08:00", now).unwrap(),
            chrono::DateTime::parse_from_rfc3339("2026-11-22T01:00:00Z")
                .unwrap()
                .timestamp_millis()
        );
        assert!(parse_when("2026-11-22", now).is_ok());
        assert!(parse_when("today", now).is_ok());
        assert!(
            parse_when("yesterday-ish", now)
                .unwrap_err()
                .contains("RFC 3339")
        );
    }
}
