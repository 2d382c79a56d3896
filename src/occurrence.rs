//! Occurrences of a recurring campaign and their send-by times.
//!
//! A reminder campaign run every day on an export of tomorrow's appointments sends
//! one message per appointment, not one per person: `campaign.occurrence` names the
//! columns (or a template over them, `"{{appointment_id}}"`, `"{{date}} {{time}}"`)
//! that tell one occurrence from another, and the journal keys each message by
//! (campaign, person, occurrence). `campaign.send_by` builds from the row the instant
//! past which the message is useless (the appointment itself); it is read in the
//! campaign's `timezone`, DST included, and stored in UTC.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use thiserror::Error;

use crate::contacts::{ContactReader, ContactsError, Row};
use crate::template::{PlaceholderKey, Template};

/// Occurrences a test send is recorded under start with this, so they never count
/// in a campaign's totals; an occurrence of the plan may not.
pub const TEST_PREFIX: &str = "test:";

/// A row's occurrence or send-by could not be built: the row is left out.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum OccurrenceError {
    #[error("column `{0}` is empty, so the row names no occurrence")]
    Empty(String),
    #[error("`{0}` starts with `test:`, which names test sends")]
    Reserved(String),
    #[error("column `{column}` is empty, so the row has no send-by time")]
    EmptySendBy { column: String },
    #[error("send-by `{value}` {why}")]
    SendBy { value: String, why: String },
}

/// Text built from a row's cells: a template whose placeholders are columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnTemplate {
    body: Template,
    /// The column of each placeholder, in the template's value order.
    columns: Vec<String>,
}

impl ColumnTemplate {
    /// `{{column}}` placeholders over literal text, or a bare column name; `key` is
    /// the campaign key errors name.
    pub fn parse(text: &str, key: &str) -> Result<ColumnTemplate, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err(format!(
                "{key} is empty; name a column (\"appointment_id\") or a template over columns \
                 (\"{{{{appointment_id}}}}\", \"{{{{date}}}} {{{{time}}}}\")"
            ));
        }
        if !text.contains("{{") && !text.contains("<<") {
            return Ok(ColumnTemplate {
                body: Template::parse("{{1}}").map_err(|e| e.to_string())?,
                columns: vec![text.to_owned()],
            });
        }
        let body = Template::parse(text).map_err(|e| format!("{key}: {e}"))?;
        let mut columns = Vec::with_capacity(body.placeholders().len());
        for placeholder in body.placeholders() {
            match placeholder {
                PlaceholderKey::Named(name) => columns.push(name.clone()),
                PlaceholderKey::Positional(_) => {
                    return Err(format!(
                        "{key}: `{placeholder}` names no column; write the column's name, \
                         as in \"{{{{appointment_id}}}}\""
                    ));
                }
            }
        }
        Ok(ColumnTemplate { body, columns })
    }

    /// Of a list of columns: their values joined by `:`.
    pub fn of_columns(columns: &[String], key: &str) -> Result<ColumnTemplate, String> {
        let columns: Vec<String> = columns.iter().map(|c| c.trim().to_owned()).collect();
        if columns.is_empty() || columns.iter().any(String::is_empty) {
            return Err(format!("{key}: name one or more columns, none empty"));
        }
        let text = (1..=columns.len())
            .map(|n| format!("{{{{{n}}}}}"))
            .collect::<Vec<_>>()
            .join(":");
        Ok(ColumnTemplate {
            body: Template::parse(&text).map_err(|e| e.to_string())?,
            columns,
        })
    }

    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The rule as one text, `{{column}}` for each column: what a campaign's
    /// fingerprint holds, so another rule (`{{a}}-{{b}}` for `{{a}}:{{b}}`) is
    /// another campaign.
    pub fn text(&self) -> String {
        let names: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("{{{{{c}}}}}"))
            .collect();
        self.body.render(&names)
    }
}

/// How the send-by text of a row is read.
#[derive(Debug, Clone)]
pub struct SendBySpec {
    pub template: ColumnTemplate,
    /// A strftime pattern (`%d/%m/%Y %H:%M`); else the usual spellings.
    pub format: Option<String>,
    pub zone: chrono_tz::Tz,
    pub zone_name: String,
}

/// A [`ColumnTemplate`] bound to a contacts file's header.
#[derive(Debug, Clone)]
pub struct Bound {
    body: Template,
    columns: Vec<(String, usize)>,
}

impl Bound {
    pub fn new(
        template: &ColumnTemplate,
        reader: &ContactReader,
        role: &str,
    ) -> Result<Bound, ContactsError> {
        let columns = template
            .columns
            .iter()
            .map(|c| reader.column_index(c, role).map(|i| (c.clone(), i)))
            .collect::<Result<_, _>>()?;
        Ok(Bound {
            body: template.body.clone(),
            columns,
        })
    }

    /// The row's text; `Err` names the first empty column.
    pub fn render<'a>(&'a self, row: &Row) -> Result<String, &'a str> {
        let mut values = Vec::with_capacity(self.columns.len());
        for (name, index) in &self.columns {
            let cell = row.get(*index).unwrap_or("").trim();
            if cell.is_empty() {
                return Err(name);
            }
            values.push(cell);
        }
        Ok(self.body.render(&values))
    }
}

/// A row's occurrence: `Ok("")` for a campaign without occurrences.
pub fn occurrence_of(rule: Option<&Bound>, row: &Row) -> Result<String, OccurrenceError> {
    let Some(rule) = rule else {
        return Ok(String::new());
    };
    let text = rule
        .render(row)
        .map_err(|column| OccurrenceError::Empty(column.to_owned()))?;
    if text.starts_with(TEST_PREFIX) {
        return Err(OccurrenceError::Reserved(text));
    }
    Ok(text)
}

/// A row's send-by instant, RFC 3339 UTC as the journal stores it.
pub fn send_by_of(spec: &SendBySpec, bound: &Bound, row: &Row) -> Result<String, OccurrenceError> {
    let text = bound
        .render(row)
        .map_err(|column| OccurrenceError::EmptySendBy {
            column: column.to_owned(),
        })?;
    parse_send_by(&text, spec.format.as_deref(), &spec.zone)
        .map(crate::clock::format)
        .map_err(|why| OccurrenceError::SendBy {
            value: text,
            why: format!("{why} (in {})", spec.zone_name),
        })
}

/// Reads a local date and time in `zone` (or an RFC 3339 instant, whose offset wins).
pub fn parse_send_by(
    text: &str,
    format: Option<&str>,
    zone: &chrono_tz::Tz,
) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    let local = match format {
        Some(format) => NaiveDateTime::parse_from_str(text, format)
            .ok()
            .or_else(|| {
                NaiveDate::parse_from_str(text, format)
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
            })
            .ok_or_else(|| format!("does not match campaign.send_by_format `{format}`"))?,
        None => {
            if let Ok(t) = DateTime::parse_from_rfc3339(text) {
                return Ok(t.with_timezone(&Utc));
            }
            [
                "%Y-%m-%d %H:%M:%S",
                "%Y-%m-%d %H:%M",
                "%Y-%m-%dT%H:%M:%S",
                "%Y-%m-%dT%H:%M",
            ]
            .iter()
            .find_map(|p| NaiveDateTime::parse_from_str(text, p).ok())
            .or_else(|| {
                NaiveDate::parse_from_str(text, "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
            })
            .ok_or_else(|| {
                "is not a date and time; write `2026-12-01 10:30` or set \
                 campaign.send_by_format (e.g. \"%d/%m/%Y %H:%M\")"
                    .to_owned()
            })?
        }
    };
    to_utc(local, zone)
}

/// A wall-clock time in `zone` as an instant. A time skipped by a DST change is read
/// with the offset in force before the change (so 02:30 on a spring-forward night is
/// 03:30), an ambiguous one as the first: the "compatible" rule of RFC 5545 and
/// Temporal.
fn to_utc(local: NaiveDateTime, zone: &chrono_tz::Tz) -> Result<DateTime<Utc>, String> {
    use chrono::{LocalResult, Offset, TimeZone};
    match zone.from_local_datetime(&local) {
        LocalResult::Single(t) => Ok(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, _) => Ok(first.with_timezone(&Utc)),
        LocalResult::None => {
            let before = local
                .checked_sub_signed(chrono::Duration::days(1))
                .ok_or_else(|| "is out of range".to_owned())?;
            let offset = zone.offset_from_utc_datetime(&before).fix();
            let utc = local
                .checked_sub_signed(chrono::Duration::seconds(i64::from(
                    offset.local_minus_utc(),
                )))
                .ok_or_else(|| "is out of range".to_owned())?;
            Ok(utc.and_utc())
        }
    }
}

/// Checks a strftime pattern once, when the campaign is loaded.
pub fn check_format(format: &str) -> Result<(), String> {
    use chrono::format::{Item, StrftimeItems};
    if StrftimeItems::new(format).any(|item| matches!(item, Item::Error)) {
        return Err(format!(
            "campaign.send_by_format `{format}` is not a strftime pattern; use for example \
             \"%d/%m/%Y %H:%M\" (see chrono's strftime table)"
        ));
    }
    Ok(())
}

/// The campaign's time zone, by its IANA name.
pub fn zone(name: &str) -> Result<chrono_tz::Tz, String> {
    crate::timezone::parse(name).map_err(|m| format!("campaign.timezone: {m}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str, format: Option<&str>, zone_name: &str) -> String {
        crate::clock::format(parse_send_by(text, format, &zone(zone_name).unwrap()).unwrap())
    }

    #[test]
    fn send_by_is_read_in_the_campaign_zone_across_dst() {
        // Madrid: UTC+1 in winter, UTC+2 from the last Sunday of March.
        assert_eq!(
            utc("2026-03-28 10:00", None, "Europe/Madrid"),
            "2026-03-28T09:00:00Z"
        );
        assert_eq!(
            utc("2026-03-30 10:00", None, "Europe/Madrid"),
            "2026-03-30T08:00:00Z"
        );
        // 02:30 does not exist on 2026-03-29 in Madrid: read as 03:30 CEST.
        assert_eq!(
            utc("2026-03-29 02:30", None, "Europe/Madrid"),
            "2026-03-29T01:30:00Z"
        );
        assert_eq!(
            utc(
                "01/12/2026 10:30",
                Some("%d/%m/%Y %H:%M"),
                "America/Mexico_City"
            ),
            "2026-12-01T16:30:00Z"
        );
        assert_eq!(
            utc("2026-12-01T10:30:00-05:00", None, "America/Mexico_City"),
            "2026-12-01T15:30:00Z",
            "an explicit offset wins"
        );
    }

    #[test]
    fn bad_send_by_text_formats_and_zones_are_refused() {
        let z = zone("UTC").unwrap();
        assert!(
            parse_send_by("mañana", None, &z)
                .unwrap_err()
                .contains("send_by_format")
        );
        assert!(
            parse_send_by("2026-02-30 10:00", None, &z).is_err(),
            "no 30 February"
        );
        assert!(zone("America/Monterey").unwrap_err().contains("IANA"));
        assert!(check_format("%d/%m/%Y %H:%M").is_ok());
        assert!(check_format("%Q").is_err());
    }

    #[test]
    fn templates_name_columns() {
        let t =
            ColumnTemplate::parse("{{appointment_id}}:{{date}}", "campaign.occurrence").unwrap();
        assert_eq!(t.columns(), ["appointment_id", "date"]);
        let bare = ColumnTemplate::parse("Appointment ID", "campaign.occurrence").unwrap();
        assert_eq!(bare.columns(), ["Appointment ID"]);
        assert!(
            ColumnTemplate::parse("{{1}}", "campaign.occurrence")
                .unwrap_err()
                .contains("names no column")
        );
        assert!(ColumnTemplate::parse("  ", "campaign.occurrence").is_err());
        let many =
            ColumnTemplate::of_columns(&["date".into(), "time".into()], "campaign.occurrence")
                .unwrap();
        assert_eq!(many.columns(), ["date", "time"]);
        assert_eq!(many.text(), "{{date}}:{{time}}");
        assert_eq!(bare.text(), "{{Appointment ID}}");
    }
}
