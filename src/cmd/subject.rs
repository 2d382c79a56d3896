//! `wacampaign subject export IDENTITY`: a data subject's access request.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Subcommand;

use crate::cmd::Context;
use crate::cmd::consent::RegionArg;
use crate::db::Db;
use crate::exit_codes::Exit;
use crate::report::PrivateFile;
use crate::subject;
use crate::suppression::Identity;
use crate::ui::json_line;

/// Answer a person's requests about their data.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  wacampaign subject export '+52 55 1234 5678'
  wacampaign subject export '+52 55 1234 5678' --output request-5120
  wacampaign --json subject export US.13491208655302741918")]
pub struct Args {
    #[command(subcommand)]
    pub command: SubjectCommand,
}

#[derive(Debug, Subcommand)]
pub enum SubjectCommand {
    Export(ExportArgs),
}

/// Everything held about a person, in JSON and in a readable form.
///
/// IDENTITY is a phone number (every WhatsApp spelling of it is one person) or a
/// business-scoped user ID; identities linked to it (number changes, BSUIDs) are
/// included. Lists their consent events with evidence and notices, every campaign
/// message with its rendered values, outcome and statuses, their replies, and the
/// links between their identities. With --output NAME, writes NAME.json and NAME.txt
/// (mode 0600); otherwise prints the readable form (or, with --json, the JSON).
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  wacampaign subject export '+52 55 1234 5678'
  wacampaign subject export '+52 55 1234 5678' --output request-5120")]
pub struct ExportArgs {
    pub identity: String,
    /// Write NAME.json and NAME.txt instead of printing.
    #[arg(long, short, value_name = "NAME")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub region: RegionArg,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Exit> {
    match &args.command {
        SubjectCommand::Export(a) => export(ctx, a),
    }
}

fn export(ctx: &Context, args: &ExportArgs) -> anyhow::Result<Exit> {
    let identity =
        Identity::parse(&args.identity, args.region.default_region).map_err(anyhow::Error::msg)?;
    let Some(db) = Db::open_existing(&ctx.db)? else {
        bail!(
            "no database at {}; nothing is held about anyone",
            ctx.db.display()
        );
    };
    let shown = match &identity {
        Identity::Phone(p) => p.to_string(),
        Identity::Bsuid(b) => b.clone(),
    };
    let record = subject::collect(&db.conn, &identity, &shown)
        .with_context(|| format!("reading {}", ctx.db.display()))?;
    if record.is_empty() {
        ctx.ui.warn(format!(
            "nothing is held about {shown} (never seen, or erased)"
        ));
    }
    match &args.output {
        Some(name) => {
            let json_path = name.with_extension("json");
            let text_path = name.with_extension("txt");
            let mut json = PrivateFile::create(&json_path)
                .with_context(|| format!("creating {}", json_path.display()))?;
            serde_json::to_writer_pretty(&mut json, &record)?;
            writeln!(json)?;
            json.commit()
                .with_context(|| format!("writing {}", json_path.display()))?;
            let mut text = PrivateFile::create(&text_path)
                .with_context(|| format!("creating {}", text_path.display()))?;
            text.write_all(record.render_text().as_bytes())?;
            text.commit()
                .with_context(|| format!("writing {}", text_path.display()))?;
            ctx.ui.info(format!(
                "wrote {} and {}",
                json_path.display(),
                text_path.display()
            ));
        }
        None if ctx.ui.json => json_line("subject", &record)?,
        None => std::io::stdout()
            .lock()
            .write_all(record.render_text().as_bytes())?,
    }
    Ok(Exit::Success)
}
