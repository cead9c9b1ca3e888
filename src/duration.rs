//! Human durations in the config file: `"200ms"`, `"2s"`, `"5m"`, `"72h"`, `"1d"`.
//!
//! Hand-written rather than a crate: the grammar is five suffixes, and a config error has to
//! say exactly what was wrong with the value.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("duration {text:?} has no unit (use ms, s, m, h or d)"))?;
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("duration {text:?} must start with a whole number"));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("duration {text:?} is too large"))?;
    let ms_per = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => {
            return Err(format!(
                "duration {text:?} has unknown unit {other:?} (use ms, s, m, h or d)"
            ));
        }
    };
    n.checked_mul(ms_per)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("duration {text:?} is too large"))
}

/// Serde adapter: `#[serde(deserialize_with = "duration::de")]`.
pub fn de<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse(&s).map_err(serde::de::Error::custom)
}

/// Serde adapter for an optional duration: `#[serde(default, deserialize_with = "duration::de_opt")]`.
pub fn de_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    de(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        assert_eq!(parse("200ms").unwrap(), Duration::from_millis(200));
        assert_eq!(parse("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("72h").unwrap(), Duration::from_secs(72 * 3600));
        assert_eq!(parse("1d").unwrap(), Duration::from_secs(86400));
        assert_eq!(parse("1500ms").unwrap(), Duration::from_millis(1500));
    }

    #[test]
    fn rejects_with_a_reason() {
        assert!(parse("5").unwrap_err().contains("no unit"));
        assert!(parse("s").unwrap_err().contains("whole number"));
        assert!(parse("3 weeks").unwrap_err().contains("unknown unit"));
        assert!(parse("-1s").unwrap_err().contains("whole number"));
        assert!(
            parse("99999999999999999999s")
                .unwrap_err()
                .contains("too large")
        );
    }
}
