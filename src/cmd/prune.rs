//! `wacampaign prune --older-than DURATION`: retention.

use std::io::Write;

use anyhow::{Context as _, bail};

use crate::cmd::Context;
use crate::db::Db;
use crate::exit_codes::Exit;
use crate::retention;
use crate::ui::json_line;

/// Remove journal rows, statuses, replies and raw webhook bodies older than a period.
///
/// Each campaign's figures are kept: what is removed is first folded into
/// per-campaign counts, so `status` shows the same numbers after as before. Consent
/// ledger events are never pruned (only `wacampaign erase` touches them). Runs in
/// small transactions, so sends and the webhook server keep working meanwhile. A
/// campaign that started before the cutoff and still has messages to send makes it
/// refuse, removing nothing. The period is a number and a unit (h, d, w), at least a
/// day; WACAMPAIGN_RETENTION sets it (e.g. in a systemd timer's environment).
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  wacampaign prune --older-than 90d
  WACAMPAIGN_RETENTION=26w wacampaign prune --json")]
pub struct Args {
    /// How old a row must be to go: 90d, 12w, 36h.
    #[arg(long, env = "WACAMPAIGN_RETENTION", value_name = "DURATION", value_parser = retention::parse_period)]
    pub older_than: chrono::Duration,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Exit> {
    let Some(db) = Db::open_existing(&ctx.db)? else {
        bail!("no database at {}; nothing to prune", ctx.db.display());
    };
    let report = retention::prune(&db.conn, args.older_than, crate::clock::now())
        .with_context(|| format!("pruning {}", ctx.db.display()))?;
    if ctx.ui.json {
        json_line("pruned", &report)?;
        return Ok(Exit::Success);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "removed what was older than {}:", report.cutoff)?;
    writeln!(out, "  journal rows          {}", report.journal_rows)?;
    for (campaign, n) in &report.by_campaign {
        writeln!(out, "    {campaign:<20}{n}")?;
    }
    writeln!(out, "  statuses              {}", report.statuses)?;
    writeln!(out, "  replies               {}", report.replies)?;
    writeln!(out, "  raw webhook bodies    {}", report.raw_bodies)?;
    Ok(Exit::Success)
}
