use std::process::ExitCode;

use clap::FromArgMatches;
use wacampaign::cli::{Cli, EarlyOutput};
use wacampaign::exit_codes::Exit;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let early = EarlyOutput::scan(&args, |name| std::env::var(name).ok());
    let parsed = early
        .command()
        .try_get_matches_from(&args)
        .and_then(|matches| Cli::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error, early),
    };
    match wacampaign::run(cli) {
        Ok(exit) => exit.into(),
        Err(error) if wacampaign::is_broken_pipe(&error) => Exit::Success.into(),
        Err(error) => {
            let exit = wacampaign::exit_for(&error);
            let message = format!("{error:#}");
            eprintln!("error: {message}");
            if early.json {
                wacampaign::ui::json_error(exit, &message);
            }
            exit.into()
        }
    }
}

/// Help and version go to stdout with success; a usage error says what was wrong,
/// and with `--json` also as a JSON object on stdout, so a script never reads nothing.
fn usage_error(error: &clap::Error, early: EarlyOutput) -> ExitCode {
    use clap::error::ErrorKind;
    let _ = error.print();
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => Exit::Success.into(),
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand if !early.json => Exit::Invalid.into(),
        _ => {
            if early.json {
                let message = error.render().to_string();
                let message = message.trim().trim_start_matches("error: ");
                wacampaign::ui::json_error(Exit::Invalid, message);
            }
            Exit::Invalid.into()
        }
    }
}
