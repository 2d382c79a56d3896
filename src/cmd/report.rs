//! `wacampaign report`: the campaign report a marketer opens, forwards and archives.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, bail};

use crate::campaign::Campaign;
use crate::cmd::Context;
use crate::db::Db;
use crate::exit_codes::Exit;
use crate::report::figures::{self, CampaignFigures};
use crate::report::{PrivateFile, html};
use crate::ui::json_line;

/// Report on a campaign: the funnel, failures with what to do, timing, breakdowns, cost.
///
/// `--html FILE` writes one self-contained HTML file (mode 0600): no network, no
/// scripts, readable offline and as an e-mail attachment. It shows the funnel
/// (contacts, excluded by reason, planned, deferred, sent, delivered, read, replied,
/// failed, opted out, in doubt); failures by error code with their meaning and what
/// to do; sends, deliveries and reads per hour and the time from send to read;
/// breakdowns by language, by market, and by any contact column kept with the plan
/// (`--by city`); the cost estimated from the rate card and what Meta's webhooks
/// marked billable; the messages held in doubt with what to do; and the template as
/// it was sent. Every chart has its table beside it.
///
/// `--all --since 30d` compares every campaign first sent in that period, side by
/// side: sent, delivery, read and reply rates, opt-out rate and, for the campaign
/// files given, cost per read. `--json` prints the same figures as JSON Lines.
/// Without `--html` or `--json`, prints the funnel.
///
/// Delivery, read and reply figures come from `wacampaign webhook serve`; read
/// figures leave out people who turned read receipts off. The excluded counts are
/// those of the latest plan `send` made.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  wacampaign report campaigns/demo.toml --html demo-report.html
  wacampaign report campaigns/promotion.toml --html promotion.html --by descuento
  wacampaign report campaigns/promotion.toml --json
  wacampaign report --all --since 30d --html last-30-days.html campaigns/*.toml")]
pub struct Args {
    /// The campaign file (TOML); with --all, any number of them, for their rate cards.
    #[arg(value_name = "CAMPAIGN.toml")]
    pub campaigns: Vec<PathBuf>,
    /// Write the report to this HTML file.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Also break the figures down by this kept contact column (repeatable).
    #[arg(long, value_name = "COLUMN")]
    pub by: Vec<String>,
    /// Compare every campaign first sent within --since.
    #[arg(long)]
    pub all: bool,
    /// With --all: how far back (30d, 12w, 36h).
    #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = crate::retention::parse_period, requires = "all")]
    pub since: chrono::Duration,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Exit> {
    if !args.all && args.campaigns.len() != 1 {
        bail!(
            "name one campaign file (`wacampaign report CAMPAIGN.toml --html FILE`), or compare \
             campaigns with --all --since 30d"
        );
    }
    let campaigns = args
        .campaigns
        .iter()
        .map(|path| Campaign::load(path))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(db) = Db::open_existing(&ctx.db)? else {
        bail!(
            "no database at {}: nothing was sent from here",
            ctx.db.display()
        );
    };
    if args.all {
        let since = (crate::clock::now() - args.since)
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let rows = figures::compare(&db.conn, &since, &campaigns)?;
        if ctx.ui.json {
            for row in &rows {
                json_line("comparison", row)?;
            }
        } else if args.html.is_none() {
            let mut out = std::io::stdout().lock();
            let pct =
                |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |r| format!("{:.1}%", r * 100.0));
            writeln!(
                out,
                "{:<28} {:>8} {:>9} {:>7} {:>8} {:>9} {:>14}",
                "campaign", "sent", "delivered", "read", "replied", "opted out", "cost per read"
            )?;
            for r in &rows {
                writeln!(
                    out,
                    "{:<28} {:>8} {:>9} {:>7} {:>8} {:>9} {:>14}",
                    r.campaign,
                    r.sent,
                    pct(r.delivery_rate),
                    pct(r.read_rate),
                    pct(r.reply_rate),
                    pct(r.opt_out_rate),
                    r.cost_per_read.as_deref().unwrap_or("-")
                )?;
            }
        }
        if let Some(path) = &args.html {
            let page = html::render(&[], Some((&since, &rows)))?;
            write_file(path, &page)?;
            ctx.ui.info(format!(
                "wrote {} ({} campaigns)",
                path.display(),
                rows.len()
            ));
        }
        return Ok(Exit::Success);
    }
    let campaign = &campaigns[0];
    check_kept(&db.conn, &campaign.id, &args.by)?;
    let report = figures::campaign_figures(&db.conn, campaign, &args.by)
        .with_context(|| format!("reporting on {}", campaign.file.display()))?;
    if ctx.ui.json {
        json_line("report", &report)?;
    } else if args.html.is_none() {
        print_funnel(&report)?;
    }
    if let Some(path) = &args.html {
        let page = html::render(std::slice::from_ref(&report), None)?;
        write_file(path, &page)?;
        ctx.ui.info(format!(
            "wrote {} ({} KB): open it in a browser; it needs no network",
            path.display(),
            page.len().div_ceil(1024)
        ));
    }
    Ok(Exit::Success)
}

/// `--by` names a column the plan kept; else the breakdown would be all "(not kept)".
fn check_kept(conn: &rusqlite::Connection, campaign_id: &str, by: &[String]) -> anyhow::Result<()> {
    if by.is_empty() {
        return Ok(());
    }
    let contact: Option<String> = conn
        .query_row(
            "SELECT contact FROM journal WHERE campaign_id = ?1 AND contact IS NOT NULL
             ORDER BY plan_run DESC LIMIT 1",
            rusqlite::params![campaign_id],
            |r| r.get(0),
        )
        .ok();
    let kept: Vec<String> = contact
        .and_then(|c| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&c).ok())
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    for column in by {
        if !kept.contains(column) {
            bail!(
                "--by {column}: the plan did not keep a column `{column}` (kept: {}). Add it to \
                 campaign.keep_columns (or remove keep_columns to keep every column); the next \
                 `send` keeps it for the people it plans",
                if kept.is_empty() {
                    "none".to_owned()
                } else {
                    kept.join(", ")
                }
            );
        }
    }
    Ok(())
}

fn write_file(path: &std::path::Path, page: &str) -> anyhow::Result<()> {
    let mut file =
        PrivateFile::create(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(page.as_bytes())
        .and_then(|()| file.commit())
        .with_context(|| format!("writing {}", path.display()))
}

fn print_funnel(report: &CampaignFigures) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "campaign {} (first sent {})",
        report.campaign, report.first_sent
    )?;
    for stage in &report.funnel {
        writeln!(
            out,
            "  {:<28} {:>9}  {}",
            stage.stage, stage.count, stage.note
        )?;
    }
    for f in &report.failures {
        writeln!(
            out,
            "failed {} ({}) {}: {}. {}",
            f.code, f.when, f.count, f.meaning, f.advice
        )?;
    }
    if let Some(cost) = &report.cost.estimated {
        writeln!(out, "estimated cost {}", cost.total_money())?;
    }
    writeln!(out, "write the full report with --html FILE")
}
