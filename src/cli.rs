//! The command line: global options and the subcommands. Parsing does no I/O; each
//! command turns its arguments into a validated plan before it acts.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::cmd;
use crate::exit_codes;
use crate::ui::ColorChoice;

const ABOUT: &str = "Consent-first WhatsApp bulk campaigns";

const LONG_ABOUT: &str = "\
Consent-first WhatsApp bulk campaigns.

Sends approved template messages, filled with per-contact values, to the contacts of a
CSV file who opted in, through Meta's Cloud API, Twilio or the built-in simulator. Contacts
without an opt-in, with an opt-out, with an invalid number or a missing value are left
out with a reason. Sends are rate-limited and journaled, so a crash, a kill or a re-run
never messages anyone twice.";

const EXAMPLES: &str = "\
Examples:
  wacampaign check campaigns/appointment-reminder.toml
  wacampaign preview campaigns/promotion.toml --limit 5
  wacampaign --db ops.db consent import optins.csv --purpose marketing --method web_form
  wacampaign send campaigns/demo.toml --yes
  wacampaign status campaigns/demo.toml --csv status.csv
  wacampaign report campaigns/demo.toml --html demo-report.html
  wacampaign webhook serve --listen 127.0.0.1:8088
  wacampaign erase '+52 55 1234 5678' --reason 'request 2026-11-27 ticket 5120'
  wacampaign backup /var/backups/wacampaign-$(date +%F).db
  wacampaign prune --older-than 90d
  wacampaign templates sync campaigns/spring-sale.toml
  wacampaign completions bash > ~/.local/share/bash-completion/completions/wacampaign
  wacampaign man | man -l -

";

#[derive(Debug, Parser)]
#[command(
    name = "wacampaign",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = format!("{EXAMPLES}{}", exit_codes::HELP),
    propagate_version = true,
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// SQLite database holding the consent ledger and the send journal.
    #[arg(
        long,
        global = true,
        env = "WACAMPAIGN_DB",
        default_value = "wacampaign.db",
        value_name = "PATH"
    )]
    pub db: PathBuf,
    /// Print machine-readable JSON Lines on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print only errors and warnings.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Print more detail; repeat for more.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// When to use color; NO_COLOR in the environment turns `auto` off.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, env = "WACAMPAIGN_COLOR", value_name = "WHEN")]
    pub color: ColorChoice,
    /// A file (mode 0600) holding the key the suppression list of erased people is
    /// hashed with; else the key is read from WACAMPAIGN_SUPPRESSION_KEY.
    #[arg(
        long,
        global = true,
        env = "WACAMPAIGN_SUPPRESSION_KEY_FILE",
        value_name = "FILE"
    )]
    pub suppression_key_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Check(cmd::check::Args),
    Preview(cmd::preview::Args),
    Consent(cmd::consent::Args),
    Send(cmd::send::Args),
    Status(cmd::status::Args),
    Report(cmd::report::Args),
    Webhook(cmd::webhook::Args),
    Erase(cmd::erase::Args),
    Backup(cmd::backup::Args),
    Subject(cmd::subject::Args),
    Prune(cmd::prune::Args),
    Templates(cmd::templates::Args),
    Account(cmd::account::Args),
    Completions(cmd::completions::Args),
    Man(cmd::man::Args),
}

/// What the command line asks of the output before it is parsed: clap writes its help
/// and usage errors before the parsed options exist, so `--color` and `--json` are
/// looked for in the raw arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EarlyOutput {
    pub json: bool,
    pub color: ColorChoice,
}

impl EarlyOutput {
    /// `--json` and `--color WHEN` (or `--color=WHEN`) up to a `--`; else
    /// `WACAMPAIGN_COLOR`; `NO_COLOR` turns `auto` off, as it does for [`crate::ui::Ui`].
    pub fn scan(args: &[std::ffi::OsString], env: impl Fn(&str) -> Option<String>) -> Self {
        let mut json = false;
        let mut color = None;
        let mut args = args.iter().skip(1).map(|a| a.to_string_lossy());
        while let Some(arg) = args.next() {
            match arg.as_ref() {
                "--" => break,
                "--json" => json = true,
                "--color" => color = args.next().map(|v| v.into_owned()),
                other => {
                    if let Some(value) = other.strip_prefix("--color=") {
                        color = Some(value.to_owned());
                    }
                }
            }
        }
        let parse = |v: &str| <ColorChoice as clap::ValueEnum>::from_str(v, true).ok();
        let mut color = color
            .as_deref()
            .and_then(parse)
            .or_else(|| env("WACAMPAIGN_COLOR").as_deref().and_then(parse))
            .unwrap_or_default();
        if color == ColorChoice::Auto && env("NO_COLOR").is_some_and(|v| !v.is_empty()) {
            color = ColorChoice::Never;
        }
        EarlyOutput { json, color }
    }

    /// The clap command, coloured as asked.
    pub fn command(&self) -> clap::Command {
        use clap::CommandFactory;
        Cli::command().color(match self.color {
            ColorChoice::Auto => clap::ColorChoice::Auto,
            ColorChoice::Always => clap::ColorChoice::Always,
            ColorChoice::Never => clap::ColorChoice::Never,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn scan(args: &[&str], env: &[(&str, &str)]) -> EarlyOutput {
        let args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
        EarlyOutput::scan(&args, |k| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn output_settings_are_found_before_parsing() {
        let never = ColorChoice::Never;
        assert_eq!(scan(&["w", "--color", "never", "send"], &[]).color, never);
        assert_eq!(scan(&["w", "send", "--color=never"], &[]).color, never);
        assert_eq!(scan(&["w"], &[("WACAMPAIGN_COLOR", "never")]).color, never);
        assert_eq!(scan(&["w"], &[("NO_COLOR", "1")]).color, never);
        assert_eq!(scan(&["w"], &[("NO_COLOR", "")]).color, ColorChoice::Auto);
        // The flag wins over the environment.
        let always = scan(&["w", "--color", "always"], &[("NO_COLOR", "1")]);
        assert_eq!(always.color, ColorChoice::Always);
        assert!(scan(&["w", "status", "x.toml", "--json"], &[]).json);
        // After `--` it is a value, not a flag.
        assert!(!scan(&["w", "--", "--json"], &[]).json);
    }

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
