//! Where human-facing output goes: stderr for messages and progress, stdout for
//! data. Color follows `--color`, `NO_COLOR` and whether the stream is a terminal.

use std::io::{IsTerminal, Write};

use clap::ValueEnum;
use indicatif::ProgressBar;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ColorChoice {
    #[default]
    Auto,
    Always,
    Never,
}

/// Output settings shared by every command.
#[derive(Debug, Clone)]
pub struct Ui {
    pub json: bool,
    pub quiet: bool,
    pub verbose: u8,
    color: bool,
    progress: Option<ProgressBar>,
}

impl Ui {
    pub fn new(json: bool, quiet: bool, verbose: u8, color: ColorChoice) -> Ui {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let color = match color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => !no_color && std::io::stderr().is_terminal(),
        };
        Ui {
            json,
            quiet,
            verbose,
            color,
            progress: None,
        }
    }

    /// A plain UI for tests and examples: no color, no progress.
    pub fn plain() -> Ui {
        Ui::new(false, false, 0, ColorChoice::Never)
    }

    pub fn color(&self) -> bool {
        self.color
    }

    /// Whether a live progress bar may be drawn.
    pub fn interactive(&self) -> bool {
        !self.quiet && !self.json && std::io::stderr().is_terminal()
    }

    /// Routes messages through `bar` while it is live so they do not tear it.
    pub fn attach_progress(&mut self, bar: ProgressBar) {
        self.progress = Some(bar);
    }

    pub fn detach_progress(&mut self) {
        self.progress = None;
    }

    fn emit(&self, line: &str) {
        match &self.progress {
            Some(bar) if !bar.is_hidden() => bar.suspend(|| eprintln!("{line}")),
            _ => {
                let _ = writeln!(std::io::stderr(), "{line}");
            }
        }
    }

    /// A message for a person, silenced by `--quiet`.
    pub fn info(&self, line: impl AsRef<str>) {
        if !self.quiet {
            self.emit(line.as_ref());
        }
    }

    /// Something the operator should know even under `--quiet`.
    pub fn warn(&self, line: impl AsRef<str>) {
        let prefix = self.paint("warning:", "33;1");
        self.emit(&format!("{prefix} {}", line.as_ref()));
    }

    /// Detail shown with `-v`.
    pub fn debug(&self, line: impl AsRef<str>) {
        if self.verbose > 0 {
            self.emit(line.as_ref());
        }
    }

    pub fn bold(&self, text: &str) -> String {
        self.paint(text, "1")
    }

    pub fn red(&self, text: &str) -> String {
        self.paint(text, "31")
    }

    pub fn green(&self, text: &str) -> String {
        self.paint(text, "32")
    }

    pub fn yellow(&self, text: &str) -> String {
        self.paint(text, "33")
    }

    fn paint(&self, text: &str, sgr: &str) -> String {
        if self.color {
            format!("\x1b[{sgr}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

/// One JSON Lines record on stdout: `{"type": ..., "data": ...}`.
pub fn json_line(kind: &str, data: &impl serde::Serialize) -> std::io::Result<()> {
    let line = serde_json::json!({ "type": kind, "data": data });
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &line)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// The error that ended a command, as one JSON object on stdout (`--json`):
/// `{"type": "error", "exit_code": N, "message": ...}`. Best effort: stdout may be
/// the very thing that failed.
pub fn json_error(exit: crate::exit_codes::Exit, message: &str) {
    let line = serde_json::json!({
        "type": "error",
        "exit_code": exit.code(),
        "message": message,
    });
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, &line);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// `42s`, `3m 20s`, `2h 05m`.
pub fn human_duration(seconds: u64) -> String {
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m {:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h {:02}m", seconds / 3600, (seconds % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(75), "1m 15s");
        assert_eq!(human_duration(7300), "2h 01m");
    }
}
