//! `wacampaign backup FILE`: a consistent, checked copy of the database.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, bail};

use crate::backup;
use crate::cmd::Context;
use crate::db::Db;
use crate::exit_codes::Exit;
use crate::ui::json_line;

/// Write a consistent copy of the database, then check it.
///
/// Safe while campaigns send and the webhook server records: the copy is one snapshot
/// (SQLite's VACUUM INTO), compacted, created readable by its owner only (0600), and
/// put in place only after SQLite's integrity_check and the same checks as `consent
/// verify` pass on it. Exits 0 when the copy is sound, 1 when it was written but a
/// check failed (the source has the same problem: run `consent verify`), 2 when no
/// copy could be written (a full disk, a missing directory); the source is never
/// changed. To restore, stop every wacampaign process, move the database and its
/// -wal and -shm files aside, and copy the backup in its place with mode 0600.
///
/// The suppression key is not in the database: keep it backed up apart.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  wacampaign backup /var/backups/wacampaign/wacampaign-$(date +%F).db
  wacampaign --db ops.db backup ops-before-upgrade.db
  wacampaign backup nightly.db --overwrite --json")]
pub struct Args {
    /// Where to write the copy (refused if it exists, unless --overwrite).
    pub file: PathBuf,
    /// Replace FILE if it exists (atomically: the old copy stays until the new one
    /// has passed its checks).
    #[arg(long)]
    pub overwrite: bool,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Exit> {
    let Some(db) = Db::open_existing(&ctx.db)? else {
        bail!("no database at {}; nothing to back up", ctx.db.display());
    };
    let report = backup::backup(&db.conn, &args.file, args.overwrite)
        .with_context(|| format!("backing up {}", ctx.db.display()))?;
    let intact = report.intact();
    if ctx.ui.json {
        json_line(
            "backup",
            &serde_json::json!({"intact": intact, "report": report}),
        )?;
    } else {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "wrote {} ({} bytes)",
            report.path.display(),
            report.bytes
        )?;
        if report.integrity == ["ok"] {
            writeln!(out, "  integrity_check       ok")?;
        } else {
            for problem in &report.integrity {
                writeln!(out, "  integrity_check       {problem}")?;
            }
        }
        match &report.ledger.first_broken {
            None if report.ledger.intact() => writeln!(
                out,
                "  consent ledger        intact: {} events, head {}",
                report.ledger.events, report.ledger.head
            )?,
            Some(broken) => writeln!(
                out,
                "  consent ledger        BROKEN at event #{}: {}",
                broken.id, broken.problem
            )?,
            None => writeln!(
                out,
                "  consent ledger        a trigger or notice is missing or altered; run `consent verify`"
            )?,
        }
    }
    Ok(if intact { Exit::Success } else { Exit::Partial })
}
