use std::process::ExitCode;

use clap::FromArgMatches;
use wacampaign::cli::{Cli, EarlyOutput};
use wacampaign::exit_codes::Exit;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    keep_freed_memory_a_while();
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

/// mimalloc hands memory back to the OS once it has been free for a second. A send
/// frees and takes again its requests' buffers and futures all the time, so it kept
/// faulting fresh zeroed pages in: 0.13 page faults per message at 1,000/s and 300 ms
/// latency, about 5% of its CPU. Ten seconds keeps what a steady run reuses (0.02 per
/// message), and an idle `webhook serve` still returns its memory (BENCHMARKS.md).
fn keep_freed_memory_a_while() {
    // `mi_option_purge_delay` in mimalloc.h; libmimalloc-sys names only some options.
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets one of mimalloc's tunables; any value is valid for it.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 10_000) }
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

#[cfg(test)]
mod tests {
    #[test]
    fn freed_memory_is_kept_ten_seconds() {
        let get = || unsafe { libmimalloc_sys::mi_option_get(15) };
        // mimalloc's own default for the purge delay: proof that option 15 is it
        // (unless the environment set it).
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(get(), 1_000);
        }
        super::keep_freed_memory_a_while();
        assert_eq!(get(), 10_000);
    }
}
