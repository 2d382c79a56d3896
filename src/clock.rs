//! Time, one convention throughout: UTC, RFC 3339, to the second (`2026-11-21T05:30:00Z`).
//! Strings in that form sort in time order, so SQL can compare them directly.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};

pub fn now() -> DateTime<Utc> {
    Utc::now()
}

pub fn format(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn now_string() -> String {
    format(now())
}

/// Reads a date as people and exports write them: RFC 3339 (any offset),
/// `YYYY-MM-DD HH:MM[:SS]` or `YYYY-MM-DD`, the last two taken as UTC.
pub fn parse(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    for pattern in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, pattern) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    Err(format!(
        "`{text}` is not a date; use RFC 3339 (2026-11-21T09:30:00Z or with an offset, \
         2026-11-21T03:30:00-06:00), `2026-11-21 09:30:00` (UTC) or `2026-11-21`"
    ))
}

/// The date part, for reports (`opted out on 2026-11-21 via whatsapp_reply`).
pub fn date_part(rfc3339: &str) -> &str {
    rfc3339.get(..10).unwrap_or(rfc3339)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_spellings_parse_to_utc() {
        assert_eq!(
            format(parse("2026-11-21T03:30:00-06:00").unwrap()),
            "2026-11-21T09:30:00Z"
        );
        assert_eq!(
            format(parse("2026-11-21 09:30:00").unwrap()),
            "2026-11-21T09:30:00Z"
        );
        assert_eq!(format(parse("2026-11-21").unwrap()), "2026-11-21T00:00:00Z");
        assert!(parse("21/11/2026").unwrap_err().contains("is not a date"));
    }
}
