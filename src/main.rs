use std::process::ExitCode;

use clap::Parser;
use wacampaign::cli::Cli;
use wacampaign::exit_codes::Exit;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match wacampaign::run(cli) {
        Ok(exit) => exit.into(),
        Err(error) if wacampaign::is_broken_pipe(&error) => Exit::Success.into(),
        Err(error) => {
            eprintln!("error: {error:#}");
            wacampaign::exit_for(&error).into()
        }
    }
}
