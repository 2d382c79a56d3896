//! Time, one clock and one convention throughout: UTC, RFC 3339, to the second
//! (`2026-11-21T05:30:00Z`). Strings in that form sort in time order, so SQL can
//! compare them directly.
//!
//! Everything that asks "what time is it" (retries, deferrals, windows, quiet hours,
//! caps, the ledger's timestamps) asks [`now`]. `WACAMPAIGN_NOW` (RFC 3339) sets the
//! instant a process starts at; time then advances from it at the pace of the
//! machine's monotonic clock, so a test can play a week of daily runs in seconds and a
//! long run still moves forward.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use thiserror::Error;

/// The variable that sets the instant a process starts at.
pub const NOW_VARIABLE: &str = "WACAMPAIGN_NOW";

#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClockError {
    #[error(
        "{NOW_VARIABLE}=`{0}` is not an RFC 3339 instant; use for example \
         2026-11-21T09:30:00Z or 2026-11-21T03:30:00-06:00, or unset it to use the system clock"
    )]
    Invalid(String),
}

/// Where the clock started: the wall-clock instant and the monotonic instant it
/// corresponds to.
#[derive(Debug, Clone, Copy)]
struct Origin {
    wall: DateTime<Utc>,
    mono: Instant,
}

static ORIGIN: OnceLock<Option<Origin>> = OnceLock::new();

/// Reads `WACAMPAIGN_NOW` once. Call it before anything reads the clock, so a
/// malformed value is an error rather than silently the system time; [`now`] reads
/// the variable on first use if this was never called (tests, examples).
pub fn init() -> Result<(), ClockError> {
    let origin = origin_from_env()?;
    // A second call (tests calling `run` twice) keeps the first origin.
    let _ = ORIGIN.set(origin);
    Ok(())
}

fn origin_from_env() -> Result<Option<Origin>, ClockError> {
    match std::env::var(NOW_VARIABLE) {
        Ok(text) if !text.trim().is_empty() => DateTime::parse_from_rfc3339(text.trim())
            .map(|t| {
                Some(Origin {
                    wall: t.with_timezone(&Utc),
                    mono: Instant::now(),
                })
            })
            .map_err(|_| ClockError::Invalid(text)),
        _ => Ok(None),
    }
}

/// The current instant, from the one clock.
pub fn now() -> DateTime<Utc> {
    let origin = ORIGIN.get_or_init(|| origin_from_env().ok().flatten());
    match origin {
        Some(origin) => {
            origin.wall
                + chrono::Duration::from_std(origin.mono.elapsed()).unwrap_or(chrono::Duration::MAX)
        }
        None => Utc::now(),
    }
}

/// How long from now until `t` (zero if it is past), for sleeping on the monotonic
/// clock until an instant of the one clock.
pub fn until(t: DateTime<Utc>) -> Duration {
    (t - now()).to_std().unwrap_or_default()
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

    #[test]
    fn an_origin_advances_with_the_monotonic_clock() {
        let origin = Origin {
            wall: parse("2026-03-01T08:00:00Z").unwrap(),
            mono: Instant::now() - Duration::from_secs(90),
        };
        let t = origin.wall + chrono::Duration::from_std(origin.mono.elapsed()).unwrap();
        assert!(format(t).starts_with("2026-03-01T08:01:3"), "{}", format(t));
    }
}
