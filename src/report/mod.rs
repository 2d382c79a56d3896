//! Reports: what `check` (and the summary before `send`) tells the operator, as
//! text for a person and as JSON for a script, and spreadsheet-safe CSV output; the
//! campaign report (`wacampaign report`) in its submodules.

pub mod chart;
pub mod figures;
pub mod html;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::campaign::Campaign;
use crate::plan::{Excluded, PlanStats};
use crate::pricing::Estimate;
use crate::ui::{Ui, human_duration};

/// The plan's totals with the campaign facts an operator checks before sending.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub campaign: String,
    /// `template` or `session`.
    pub kind: String,
    pub category: String,
    pub consent_purpose: String,
    pub template: String,
    pub language: String,
    pub provider: String,
    pub contacts_file: String,
    #[serde(flatten)]
    pub stats: PlanStats,
    pub rate_per_second: u32,
    pub estimated_seconds: u64,
    pub in_flight: InFlight,
    /// The cost estimate, when the campaign has a rate card (`[pricing]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<Estimate>,
}

/// How many requests may be on the wire at once: the most a crash can leave in
/// doubt, and what it does to the rate.
#[derive(Debug, Clone, Serialize)]
pub struct InFlight {
    /// The most at once.
    pub max: usize,
    /// Fixed by `sending.concurrency` (or `--concurrency`), rather than sized from
    /// the rate and the answers' latency.
    pub fixed: bool,
    /// The rate holds while answers take less than this (Little's law: in flight /
    /// rate).
    pub rate_holds_below_ms: u64,
}

impl CheckReport {
    pub fn new(campaign: &Campaign, contacts_file: &str, stats: PlanStats) -> Self {
        let rate = campaign.sending.rate_per_second;
        CheckReport {
            campaign: campaign.id.clone(),
            kind: campaign.kind.as_str().to_owned(),
            category: campaign.category.to_string(),
            consent_purpose: campaign.purpose().to_string(),
            template: campaign.template.name.clone(),
            language: campaign.template.language.clone(),
            provider: campaign.provider.kind().to_owned(),
            contacts_file: contacts_file.to_owned(),
            estimated_seconds: stats.eligible.div_ceil(u64::from(rate.max(1))),
            stats,
            rate_per_second: rate,
            in_flight: InFlight {
                max: campaign.sending.in_flight_cap(),
                fixed: campaign.sending.concurrency.is_some(),
                rate_holds_below_ms: u64::try_from(campaign.sending.rate_holds_below().as_millis())
                    .unwrap_or(u64::MAX),
            },
            cost: None,
        }
    }

    /// The report as a person reads it.
    pub fn render(&self, ui: &Ui) -> String {
        let mut out = String::new();
        let s = &self.stats;
        let message = if self.kind == "session" {
            "free-form session message".to_owned()
        } else {
            format!("template {} {}", self.template, self.language)
        };
        out.push_str(&format!(
            "{} {} ({}, {message})\n",
            ui.bold("campaign"),
            self.campaign,
            self.category,
        ));
        out.push_str(&format!(
            "{} {}: {} read\n",
            ui.bold("contacts"),
            self.contacts_file,
            plural(s.contacts_read, "row", "rows")
        ));
        out.push_str(&format!(
            "{} {}\n",
            ui.bold("eligible"),
            ui.green(&s.eligible.to_string())
        ));
        let excluded = s.excluded.to_string();
        out.push_str(&format!(
            "{} {}\n",
            ui.bold("excluded"),
            if s.excluded > 0 {
                ui.yellow(&excluded)
            } else {
                excluded
            }
        ));
        for (kind, count) in &s.excluded_by_reason {
            out.push_str(&format!("  {:<18} {count}\n", kind.label()));
        }
        if let Some(outside) = s.outside_audience {
            out.push_str(&format!(
                "{} {outside} (not in the audience; not excluded)\n",
                ui.bold("outside the audience")
            ));
        }
        if s.quiet_hours + s.frequency_capped > 0 {
            out.push_str(&format!(
                "{} {} of the eligible, until they may be messaged\n",
                ui.bold("deferred"),
                s.quiet_hours + s.frequency_capped
            ));
            for (label, count) in [
                ("quiet hours", s.quiet_hours),
                ("frequency cap", s.frequency_capped),
            ] {
                if count > 0 {
                    out.push_str(&format!("  {label:<18} {count}\n"));
                }
            }
        }
        if !s.by_language.is_empty() {
            let languages: Vec<String> = s
                .by_language
                .iter()
                .map(|(language, n)| format!("{language} {n}"))
                .collect();
            out.push_str(&format!(
                "{} {}\n",
                ui.bold("language"),
                languages.join(", ")
            ));
        }
        if s.blank_rows > 0 {
            out.push_str(&format!(
                "  ({} skipped)\n",
                plural(s.blank_rows, "blank row", "blank rows")
            ));
        }
        out.push_str(&format!(
            "{} {} at {} messages/s, about {}\n",
            ui.bold("sending "),
            self.provider,
            self.rate_per_second,
            human_duration(self.estimated_seconds)
        ));
        let f = &self.in_flight;
        out.push_str(&format!(
            "{} up to {} at once{}, the most a crash can leave in doubt; the rate holds with answers under {}\n",
            ui.bold("in flight"),
            f.max,
            if f.fixed { " (sending.concurrency)" } else { "" },
            human_millis(f.rate_holds_below_ms)
        ));
        if let Some(cost) = &self.cost {
            out.push_str(&cost.render(&ui.bold("cost     ")));
        }
        out
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `250 ms`, `1.25 s`.
fn human_millis(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.2} s", ms as f64 / 1000.0)
    }
}

/// Makes a cell safe to open in a spreadsheet: one that starts with `=`, `+`, `-`,
/// `@`, tab or CR would be read as a formula (CSV injection), so it gets a leading
/// apostrophe, which spreadsheets show as text and do not display.
pub fn spreadsheet_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

/// A report file being written: a temporary file in the target's directory, readable
/// by its owner only (like the database, reports hold customers' phone numbers), that
/// [`PrivateFile::commit`] renames over the target. Opening the target itself would
/// keep an existing file's mode (a 0644 report stays world-readable) and would leave
/// it half written if the run failed; dropped uncommitted, the temporary file is
/// removed and the old report is left as it was.
pub struct PrivateFile {
    temp: tempfile::NamedTempFile,
    target: PathBuf,
}

impl PrivateFile {
    pub fn create(path: &Path) -> std::io::Result<PrivateFile> {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        // tempfile creates with mode 0600 on Unix; set it anyway, since that is the point.
        let temp = tempfile::Builder::new()
            .prefix(".wacampaign-report-")
            .suffix(".tmp")
            .permissions(std::fs::Permissions::from_mode(0o600))
            .tempfile_in(dir)
            .map_err(|e| {
                // Callers name the report asked for; the temporary file is nobody's
                // business (tempfile ends its error with `at path "…"`, that one's).
                let text = e.to_string();
                let cause = text.split(" at path ").next().unwrap_or(&text).to_owned();
                std::io::Error::new(e.kind(), cause)
            })?;
        Ok(PrivateFile {
            temp,
            target: path.to_owned(),
        })
    }

    /// Where the file is being written, before [`PrivateFile::commit`] moves it.
    pub fn temp_path(&self) -> &Path {
        self.temp.path()
    }

    /// Flushes the report to disk and renames it over the target.
    pub fn commit(self) -> std::io::Result<()> {
        self.temp.as_file().sync_all()?;
        self.temp
            .persist(&self.target)
            .map(drop)
            .map_err(|e| e.error)
    }
}

impl Write for PrivateFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.temp.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.temp.flush()
    }
}

/// Writes excluded rows as CSV: `line,phone,reason_code,reason`.
pub struct ExcludedWriter {
    writer: csv::Writer<std::io::BufWriter<PrivateFile>>,
}

impl ExcludedWriter {
    pub fn create(path: &Path) -> std::io::Result<ExcludedWriter> {
        let file = PrivateFile::create(path)?;
        let mut writer = csv::Writer::from_writer(std::io::BufWriter::new(file));
        writer.write_record(["line", "phone", "reason_code", "reason"])?;
        Ok(ExcludedWriter { writer })
    }

    pub fn write(&mut self, excluded: &Excluded) -> std::io::Result<()> {
        let line = excluded.line.to_string();
        let reason = excluded.reason.to_string();
        self.writer.write_record([
            line.as_str(),
            &spreadsheet_safe(&excluded.phone_raw),
            excluded.reason.kind().as_str(),
            &spreadsheet_safe(&reason),
        ])?;
        Ok(())
    }

    /// Writes out what is buffered and puts the file in place.
    pub fn finish(self) -> std::io::Result<()> {
        finish_csv(self.writer)
    }
}

/// Flushes a CSV report and renames it over its target.
pub fn finish_csv(writer: csv::Writer<std::io::BufWriter<PrivateFile>>) -> std::io::Result<()> {
    writer
        .into_inner()
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .into_inner()
        .map_err(std::io::IntoInnerError::into_error)?
        .commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_defused() {
        assert_eq!(spreadsheet_safe("+5215512345678"), "'+5215512345678");
        assert_eq!(spreadsheet_safe("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(spreadsheet_safe("-1"), "'-1");
        assert_eq!(spreadsheet_safe("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(spreadsheet_safe("\tx"), "'\tx");
        assert_eq!(spreadsheet_safe("Ana"), "Ana");
        assert_eq!(spreadsheet_safe(""), "");
    }
}
