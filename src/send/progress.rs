//! What a running campaign shows: a live bar on a terminal, a line every few seconds
//! otherwise (cron logs), a JSON object on stderr every few seconds under `--json`
//! (so a cron log tells a slow run from a hung one), nothing under `--quiet`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// How often a line is logged when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// The pace in force, as the pipeline last set it: the rate, the in-flight bound
/// (the most a crash can leave in doubt), and whether that bound holds the rate back.
#[derive(Debug, Default)]
pub struct Pace {
    rate_millis: AtomicU64,
    window: AtomicU64,
    limited: AtomicBool,
    /// The journal writer is waiting out another process's write lock.
    locked_out: AtomicBool,
}

impl Pace {
    pub fn set(&self, rate: f64, window: usize, limited: bool) {
        self.rate_millis
            .store((rate * 1000.0) as u64, Ordering::Relaxed);
        self.window.store(window as u64, Ordering::Relaxed);
        self.limited.store(limited, Ordering::Relaxed);
    }

    fn describe(&self) -> String {
        let rate = self.rate_millis.load(Ordering::Relaxed) as f64 / 1000.0;
        let window = self.window.load(Ordering::Relaxed);
        let mut text = String::new();
        if rate > 0.0 {
            text.push_str(&format!(" · limit {rate:.0}/s"));
        }
        if window > 0 {
            text.push_str(&format!(" · in flight ≤ {window}"));
        }
        if self.limited.load(Ordering::Relaxed) {
            text.push_str(" (holding the rate back: answers are slow for this many)");
        }
        if self.locked_out.load(Ordering::Relaxed) {
            text.push_str(" · paused: another process holds the database's write lock");
        }
        text
    }
}

/// Outcomes of this run, counted as they happen.
#[derive(Debug, Default)]
pub struct Tally {
    pub accepted: AtomicU64,
    pub failed: AtomicU64,
    pub in_doubt: AtomicU64,
    pub opted_out: AtomicU64,
    pub expired: AtomicU64,
    pub retried: AtomicU64,
    pub requests: AtomicU64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TallySnapshot {
    pub accepted: u64,
    pub failed: u64,
    pub in_doubt: u64,
    pub opted_out: u64,
    pub expired: u64,
    pub retried: u64,
    pub requests: u64,
}

impl Tally {
    pub fn snapshot(&self) -> TallySnapshot {
        TallySnapshot {
            accepted: self.accepted.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            in_doubt: self.in_doubt.load(Ordering::Relaxed),
            opted_out: self.opted_out.load(Ordering::Relaxed),
            expired: self.expired.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    Bar,
    Log,
    /// `{"type":"progress","data":{...}}` lines on stderr.
    Json,
    Hidden,
}

/// The periodic progress object of `--json` runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProgressLine {
    pub sent: u64,
    pub failed: u64,
    pub in_doubt: u64,
    pub opted_out: u64,
    pub expired: u64,
    /// Recipients of this run not yet settled.
    pub remaining: u64,
    /// Messages settled per second since the run started.
    pub rate: f64,
    /// Seconds since the run started.
    pub elapsed: f64,
}

/// The progress of one run.
#[derive(Debug, Clone)]
pub struct Progress {
    pub tally: Arc<Tally>,
    pub pace: Arc<Pace>,
    bar: ProgressBar,
    display: Display,
    total: u64,
    excluded: u64,
    started: Instant,
}

impl Progress {
    pub fn new(display: Display, total: u64, excluded: u64) -> Progress {
        let bar = match display {
            Display::Bar => {
                ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
            }
            _ => ProgressBar::hidden(),
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        if display == Display::Bar {
            bar.enable_steady_tick(Duration::from_millis(200));
        }
        Progress {
            tally: Arc::new(Tally::default()),
            pace: Arc::new(Pace::default()),
            bar,
            display,
            total,
            excluded,
            started: Instant::now(),
        }
    }

    pub fn bar(&self) -> &ProgressBar {
        &self.bar
    }

    /// One recipient reached a final state.
    pub fn advance(&self) {
        self.bar.inc(1);
        if self.display == Display::Bar {
            self.bar.set_message(self.message());
        }
    }

    fn message(&self) -> String {
        let t = self.tally.snapshot();
        let rate = self.pace.describe();
        format!(
            "sent {} · failed {} · in doubt {} · opted out {} · excluded {}{rate}",
            t.accepted, t.failed, t.in_doubt, t.opted_out, self.excluded
        )
    }

    /// The periodic line for logs.
    pub fn log_line(&self) -> String {
        if self.display == Display::Json {
            return self.json_line();
        }
        let done = self.bar.position();
        let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
        let speed = done as f64 / elapsed;
        let eta = if speed > 0.0 {
            crate::ui::human_duration(((self.total.saturating_sub(done)) as f64 / speed) as u64)
        } else {
            "?".to_owned()
        };
        format!(
            "progress: {done}/{} ({:.0}%), {}, {speed:.1} msg/s, ETA {eta}",
            self.total,
            if self.total == 0 {
                100.0
            } else {
                done as f64 * 100.0 / self.total as f64
            },
            self.message()
        )
    }

    fn json_line(&self) -> String {
        let done = self.bar.position();
        let elapsed = self.started.elapsed().as_secs_f64();
        let t = self.tally.snapshot();
        let line = ProgressLine {
            sent: t.accepted,
            failed: t.failed,
            in_doubt: t.in_doubt,
            opted_out: t.opted_out,
            expired: t.expired,
            remaining: self.total.saturating_sub(done),
            rate: (done as f64 / elapsed.max(0.001) * 10.0).round() / 10.0,
            elapsed: (elapsed * 10.0).round() / 10.0,
        };
        serde_json::json!({ "type": "progress", "data": line }).to_string()
    }

    /// Whether the journal writer is waiting for another process's write lock.
    pub fn waiting_for_lock(&self, waiting: bool) {
        self.pace.locked_out.store(waiting, Ordering::Relaxed);
        if self.display == Display::Bar {
            self.bar.set_message(self.message());
        }
    }

    /// A line the operator must see whatever the display (even `--quiet`): above
    /// the bar on a terminal, a `{"type":"warning"}` object under `--json`.
    pub fn note(&self, line: &str) {
        let text = if self.display == Display::Json {
            serde_json::json!({ "type": "warning", "data": { "message": line } }).to_string()
        } else {
            line.to_owned()
        };
        self.bar.suspend(|| eprintln!("{text}"));
    }

    pub fn logs(&self) -> bool {
        matches!(self.display, Display::Log | Display::Json)
    }

    pub fn log_interval() -> Duration {
        LOG_EVERY
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_progress_line_says_how_far_the_run_is() {
        let progress = Progress::new(Display::Json, 10, 0);
        progress.tally.accepted.fetch_add(3, Ordering::Relaxed);
        progress.tally.failed.fetch_add(1, Ordering::Relaxed);
        for _ in 0..4 {
            progress.advance();
        }
        let line: serde_json::Value = serde_json::from_str(&progress.log_line()).unwrap();
        assert_eq!(line["type"], "progress");
        let data = &line["data"];
        assert_eq!(
            (data["sent"].as_u64(), data["failed"].as_u64()),
            (Some(3), Some(1))
        );
        assert_eq!(data["remaining"], 6);
        assert!(data["rate"].as_f64().is_some() && data["elapsed"].as_f64().is_some());
        assert!(progress.logs(), "a JSON run logs progress");
    }
}
