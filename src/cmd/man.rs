//! `wacampaign man`: the manual pages, in roff, from the same clap definitions as
//! `--help`.

use std::io::Write;
use std::path::PathBuf;

use crate::cmd::Context;
use crate::exit_codes::Exit;
use anyhow::Context as _;

/// Print the manual page, or write one page per command into a directory.
///
/// Without `--dir`, prints `wacampaign(1)` on stdout: read it with `man -l -`. With
/// `--dir DIR`, writes `wacampaign.1` and one page per subcommand
/// (`wacampaign-send.1`, `wacampaign-consent-import.1`, ...) into DIR, for a `man1`
/// directory on MANPATH.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  wacampaign man | man -l -
  wacampaign man --dir ~/.local/share/man/man1 && man wacampaign-send
  sudo wacampaign man --dir /usr/local/share/man/man1")]
pub struct Args {
    /// Write every page (the main one and one per subcommand) into this directory.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// `command` is the whole command line, as the binary parses it.
pub fn run(ctx: &Context, args: &Args, command: clap::Command) -> anyhow::Result<Exit> {
    match &args.dir {
        None => {
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(command)
                .render(&mut out)
                .context("writing the manual page")?;
            out.flush()?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(command, dir)
                .with_context(|| format!("writing the manual pages into {}", dir.display()))?;
            ctx.ui
                .info(format!("wrote the manual pages into {}", dir.display()));
        }
    }
    Ok(Exit::Success)
}
