//! Quiet hours: the hours of the day (and the days of the week) when a contact is
//! not messaged, in the contact's own time zone.
//!
//! `sending.quiet_hours = "21:00-09:00"` and `sending.days = ["mon", …, "fri"]`. A
//! contact with several possible zones (a number whose prefix spans them) is in
//! quiet hours when any of them is: it is never 3 a.m. for the person.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Tz;

/// When contacts may not be messaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuietHours {
    /// Minutes after midnight: from `start` (inclusive) to `end` (exclusive),
    /// across midnight when `start > end`. `None`: any hour of an allowed day.
    window: Option<(u32, u32)>,
    /// Allowed days, Monday first.
    days: [bool; 7],
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl QuietHours {
    /// `window` as `HH:MM-HH:MM`, `days` as names (`mon`, `monday`); `Err` says
    /// what is wrong and what to write.
    pub fn parse(window: Option<&str>, days: Option<&[String]>) -> Result<QuietHours, String> {
        let window = window.map(parse_window).transpose()?;
        let days = match days {
            None => [true; 7],
            Some([]) => {
                return Err(
                    "sending.days is empty, so nobody could ever be messaged; list the days \
                     messages may go out, e.g. [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"]"
                        .into(),
                );
            }
            Some(names) => {
                let mut days = [false; 7];
                for name in names {
                    let lower = name.trim().to_ascii_lowercase();
                    let at = DAY_NAMES
                        .iter()
                        .position(|d| lower.len() >= 3 && lower.starts_with(d))
                        .filter(|_| lower.len() == 3 || lower.parse::<Weekday>().is_ok())
                        .ok_or_else(|| {
                            format!(
                                "sending.days: `{name}` is not a day; use mon, tue, wed, thu, \
                                 fri, sat, sun"
                            )
                        })?;
                    days[at] = true;
                }
                days
            }
        };
        Ok(QuietHours { window, days })
    }

    fn open_at(&self, local: NaiveDateTime) -> bool {
        let day = local.weekday().num_days_from_monday() as usize;
        if !self.days[day] {
            return false;
        }
        let minute = local.hour() * 60 + local.minute();
        match self.window {
            None => true,
            Some((start, end)) if start < end => !(start <= minute && minute < end),
            Some((start, end)) => !(minute >= start || minute < end),
        }
    }

    /// When a zone next opens, if it is closed at `now`.
    fn opens(&self, zone: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = now.with_timezone(&zone).naive_local();
        if self.open_at(local) {
            return None;
        }
        let end = self.window.map_or(0, |(_, end)| end);
        // The zone opens at midnight of an allowed day or at the window's end; a
        // week and a day covers every allowed day.
        for d in 0..=8 {
            let date: NaiveDate = local.date() + chrono::Duration::days(d);
            for minute in [0, end] {
                let candidate = date.and_hms_opt(minute / 60, minute % 60, 0)?;
                if candidate > local && self.open_at(candidate) {
                    return Some(instant(zone, candidate));
                }
            }
        }
        None
    }

    /// Whether a contact with these zones is in quiet hours at `now`, and until
    /// when: the latest of its zones' openings (checked again then).
    pub fn closed(&self, zones: &[Tz], now: DateTime<Utc>) -> Option<(DateTime<Utc>, Tz)> {
        zones
            .iter()
            .filter_map(|zone| self.opens(*zone, now).map(|t| (t, *zone)))
            .max_by_key(|(t, _)| *t)
    }
}

/// The instant a local time names; in a DST gap (02:30 on a spring-forward
/// night), the first instant after it.
fn instant(zone: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    let mut probe = local;
    for _ in 0..4 {
        if let Some(t) = zone.from_local_datetime(&probe).earliest() {
            return t.with_timezone(&Utc);
        }
        probe += chrono::Duration::minutes(30);
    }
    zone.from_utc_datetime(&local).with_timezone(&Utc)
}

/// How a hold reads in the journal: "quiet hours until 09:00 America/Monterrey"
/// (the next 09:00), with the day when it is further than a day away.
pub fn describe(until: DateTime<Utc>, zone: Tz, now: DateTime<Utc>) -> String {
    let local = until.with_timezone(&zone);
    if until - now < chrono::Duration::hours(24) {
        format!(
            "quiet hours until {} {}",
            local.format("%H:%M"),
            zone.name()
        )
    } else {
        format!(
            "quiet hours until {} {}",
            local.format("%a %Y-%m-%d %H:%M"),
            zone.name()
        )
    }
}

fn parse_window(text: &str) -> Result<(u32, u32), String> {
    let bad = |why: &str| {
        format!(
            "sending.quiet_hours: `{text}` {why}; write the hours when nobody is messaged as \
             \"HH:MM-HH:MM\" in 24-hour time, e.g. \"21:00-09:00\""
        )
    };
    let (start, end) = text.split_once('-').ok_or_else(|| bad("is not a window"))?;
    let minute = |part: &str| -> Result<u32, String> {
        let (h, m) = part
            .trim()
            .split_once(':')
            .ok_or_else(|| bad("is not a window"))?;
        let (h, m): (u32, u32) = (
            h.parse().map_err(|_| bad("is not a window"))?,
            m.parse().map_err(|_| bad("is not a window"))?,
        );
        if h > 23 || m > 59 || m.to_string().len() > 2 {
            return Err(bad(&format!("has no time {}", part.trim())));
        }
        Ok(h * 60 + m)
    };
    let (start, end) = (minute(start)?, minute(end)?);
    if start == end {
        return Err(bad("is empty (it starts when it ends)"));
    }
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America;

    fn at(t: &str) -> DateTime<Utc> {
        crate::clock::parse(t).unwrap()
    }

    fn night() -> QuietHours {
        QuietHours::parse(Some("21:00-09:00"), None).unwrap()
    }

    #[test]
    fn a_night_window_opens_at_its_end_in_the_contacts_zone() {
        // 04:00 UTC on 28 Nov is 22:00 in Monterrey (UTC-6): closed until 09:00.
        let (until, zone) = night()
            .closed(&[America::Monterrey], at("2026-11-28T04:00:00Z"))
            .unwrap();
        assert_eq!(crate::clock::format(until), "2026-11-28T15:00:00Z");
        assert_eq!(
            describe(until, zone, at("2026-11-28T04:00:00Z")),
            "quiet hours until 09:00 America/Monterrey"
        );
        // 16:00 UTC is 10:00 there: open.
        assert!(
            night()
                .closed(&[America::Monterrey], at("2026-11-28T16:00:00Z"))
                .is_none()
        );
    }

    #[test]
    fn several_zones_wait_for_the_last_to_open() {
        // 15:30 UTC: 09:30 in Mexico City (open), 07:30 in Tijuana (closed).
        let (until, zone) = night()
            .closed(
                &[America::Mexico_City, America::Tijuana],
                at("2026-11-28T15:30:00Z"),
            )
            .unwrap();
        assert_eq!(zone, America::Tijuana);
        assert_eq!(crate::clock::format(until), "2026-11-28T17:00:00Z");
    }

    #[test]
    fn dst_moves_the_opening_in_utc() {
        // New York: 09:00 is 14:00 UTC in winter and 13:00 UTC in summer; the
        // change on Sunday 8 March 2026 happens at 02:00 local, inside the window.
        let q = night();
        let (until, _) = q
            .closed(&[America::New_York], at("2026-03-08T05:00:00Z"))
            .unwrap();
        assert_eq!(crate::clock::format(until), "2026-03-08T13:00:00Z");
        let (until, _) = q
            .closed(&[America::New_York], at("2026-03-07T05:00:00Z"))
            .unwrap();
        assert_eq!(crate::clock::format(until), "2026-03-07T14:00:00Z");
    }

    #[test]
    fn days_of_the_week() {
        let q = QuietHours::parse(
            Some("21:00-09:00"),
            Some(&["mon".into(), "Tuesday".into(), "fri".into()]),
        )
        .unwrap();
        // Saturday 28 Nov 2026, noon in Monterrey: closed until Monday 09:00.
        let now = at("2026-11-28T18:00:00Z");
        let (until, zone) = q.closed(&[America::Monterrey], now).unwrap();
        assert_eq!(crate::clock::format(until), "2026-11-30T15:00:00Z");
        assert_eq!(
            describe(until, zone, now),
            "quiet hours until Mon 2026-11-30 09:00 America/Monterrey"
        );
    }

    #[test]
    fn bad_windows_and_days_say_what_to_write() {
        for (window, why) in [
            ("25:00-09:00", "has no time 25:00"),
            ("21:00-21:00", "is empty"),
            ("9pm-9am", "is not a window"),
            ("21:00", "is not a window"),
        ] {
            let e = QuietHours::parse(Some(window), None).unwrap_err();
            assert!(
                e.contains(why) && e.contains("21:00-09:00"),
                "{window}: {e}"
            );
        }
        assert!(
            QuietHours::parse(None, Some(&["someday".into()]))
                .unwrap_err()
                .contains("`someday` is not a day")
        );
        assert!(
            QuietHours::parse(None, Some(&[]))
                .unwrap_err()
                .contains("empty")
        );
    }
}
