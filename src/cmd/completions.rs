//! `wacampaign completions SHELL`: the shell's completion script, from the same
//! clap definitions the binary parses with, so it never falls behind a new flag.

use std::io::Write;

use crate::cmd::Context;
use crate::exit_codes::Exit;

/// Print the completion script for a shell.
///
/// Completes commands, subcommands, flags and the values of flags that take one of a
/// fixed set (`--color`, `--in-doubt`, `--only`). Load it once per session, or install
/// it where the shell looks for completions.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  # bash, this session; or install for every session:
  source <(wacampaign completions bash)
  wacampaign completions bash > ~/.local/share/bash-completion/completions/wacampaign
  # zsh: a directory on $fpath, then restart the shell
  wacampaign completions zsh > ~/.zfunc/_wacampaign
  # fish
  wacampaign completions fish > ~/.config/fish/completions/wacampaign.fish
  # PowerShell, this session (add the line to $PROFILE to keep it)
  wacampaign completions powershell | Out-String | Invoke-Expression")]
pub struct Args {
    /// The shell to complete in.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// `command` is the whole command line, as the binary parses it.
pub fn run(_ctx: &Context, args: &Args, mut command: clap::Command) -> anyhow::Result<Exit> {
    // Into memory first: clap_complete panics when its writer fails (`| head`).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "wacampaign", &mut script);
    std::io::stdout().lock().write_all(&script)?;
    Ok(Exit::Success)
}
