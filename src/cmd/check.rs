//! `wacampaign check`: validate a campaign and print its plan.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;

use crate::cmd::Context;
use crate::exit_codes::Exit;
use crate::plan::{PlanItem, Planner};
use crate::pricing::Pricing;
use crate::report::{CheckReport, ExcludedWriter};
use crate::ui::json_line;

/// Validate a campaign and print who will receive it and who is left out.
///
/// Reads the campaign file and every row of its contacts file, and reports how many
/// contacts are eligible and how many are excluded, by reason. Nothing is sent and
/// the journal is not touched. Exits 0 when the campaign is valid, even with excluded
/// rows, and 2 when it is not.
///
/// With a rate card (`[pricing] rate_card` in the campaign file) it estimates the
/// cost by market and category in the card's currency; messages to a market the
/// card has no rate for are reported with their count, never priced at zero.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  wacampaign check campaigns/appointment-reminder.toml
  wacampaign check campaigns/promotion.toml --excluded excluded.csv
  wacampaign check campaigns/promotion.toml --json | jq .data.eligible
  wacampaign check campaigns/promotion.toml --json | jq .data.cost.total
  wacampaign check campaigns/spring-sale.toml --offline     # the synced templates as they are
  wacampaign check campaigns/promotion.toml --where 'descuento == \"20%\"'

A campaign whose account was synced (`wacampaign templates sync`) is held against its
approved template first: every mismatch is an error, before anything else.")]
pub struct Args {
    /// The campaign file (TOML).
    #[arg(value_name = "CAMPAIGN.toml")]
    pub campaign: PathBuf,
    /// Write every excluded row, with its line and reason, to this CSV file.
    #[arg(long, value_name = "FILE")]
    pub excluded: Option<PathBuf>,
    #[command(flatten)]
    pub audience: crate::cmd::where_arg::WhereArg,
    #[command(flatten)]
    pub templates: crate::cmd::templates::PreflightArgs,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Exit> {
    let mut campaign = crate::cmd::templates::load_campaign(ctx, &args.campaign, &args.templates)?;
    args.audience.apply(&mut campaign)?;
    crate::cmd::templates::preflight(ctx, &campaign, &args.templates, false)?;
    let gate = ctx.consent_gate(&campaign)?;
    let planner = crate::cmd::where_arg::with_caps(ctx, Planner::new(&campaign, &gate)?)?;
    let pricing = Pricing::of(&campaign)?;
    let mut estimator = pricing.as_ref().map(Pricing::estimator);
    let contacts_file = planner.contacts_path().to_owned();
    let mut excluded_out = args
        .excluded
        .as_deref()
        .map(|path| {
            ExcludedWriter::create(path).with_context(|| format!("creating {}", path.display()))
        })
        .transpose()?;
    let mut write_error = None;
    let stats = planner.run(|item| {
        if let (PlanItem::Eligible(recipient), Some(estimator)) = (&item, estimator.as_mut()) {
            estimator.add_contact(recipient.phone);
        }
        if let (PlanItem::Excluded(excluded), Some(out)) = (&item, excluded_out.as_mut())
            && let Err(e) = out.write(excluded)
        {
            write_error.get_or_insert(e);
        }
    })?;
    if let Some(path) = &args.excluded {
        let finished = match (write_error, excluded_out) {
            (Some(e), _) => Err(e),
            (None, Some(out)) => out.finish(),
            (None, None) => Ok(()),
        };
        finished.with_context(|| format!("writing {}", path.display()))?;
    }
    let mut report = CheckReport::new(&campaign, &contacts_file, stats);
    report.cost = estimator.map(crate::pricing::Estimator::finish);
    if ctx.ui.json {
        json_line("check", &report)?;
    } else {
        std::io::stdout()
            .lock()
            .write_all(report.render(&ctx.ui).as_bytes())?;
    }
    Ok(Exit::Success)
}
