//! `wacampaign preview`: the message exactly as customers will read it.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, bail};

use crate::campaign::Campaign;
use crate::cmd::Context;
use crate::exit_codes::Exit;
use crate::phone::E164;
use crate::plan::{PlanItem, Planner, Recipient};
use crate::provider;
use crate::ui::json_line;

/// Show the rendered message for the first eligible contacts, or for one contact.
///
/// `--payload` prints the exact JSON request body sent to the Cloud API for each
/// contact instead of the text.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  wacampaign preview campaigns/appointment-reminder.toml
  wacampaign preview campaigns/promotion.toml --limit 10
  wacampaign preview campaigns/promotion.toml --row 3
  wacampaign preview campaigns/promotion.toml --phone '+52 55 9876 5432' --payload
  wacampaign preview campaigns/spring-sale.toml --limit 4   # header, buttons, each contact's language")]
pub struct Args {
    /// The campaign file (TOML).
    #[arg(value_name = "CAMPAIGN.toml")]
    pub campaign: PathBuf,
    /// How many eligible contacts to show.
    #[arg(
        long,
        default_value_t = 3,
        value_name = "N",
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub limit: usize,
    /// Show the contact on this line of the contacts file (the header is line 1).
    #[arg(long, value_name = "N", conflicts_with = "phone")]
    pub row: Option<u64>,
    /// Show the contact with this phone number (any spelling).
    #[arg(long, value_name = "NUMBER")]
    pub phone: Option<String>,
    /// Print the JSON request body for the Cloud API instead of the text.
    #[arg(long)]
    pub payload: bool,
    #[command(flatten)]
    pub audience: crate::cmd::where_arg::WhereArg,
    #[command(flatten)]
    pub templates: crate::cmd::templates::PreflightArgs,
}

enum Selection {
    First(usize),
    Line(u64),
    Phone(E164),
}

impl Selection {
    fn matches(&self, line: u64, phone: Option<E164>) -> bool {
        match self {
            Selection::First(_) => true,
            Selection::Line(wanted) => line == *wanted,
            Selection::Phone(wanted) => {
                phone.is_some_and(|p| p.consent_key() == wanted.consent_key())
            }
        }
    }
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Exit> {
    let mut campaign = crate::cmd::templates::load_campaign(ctx, &args.campaign, &args.templates)?;
    args.audience.apply(&mut campaign)?;
    let cache = crate::cmd::templates::preflight(ctx, &campaign, &args.templates, false)?;
    let selection = match (&args.row, &args.phone) {
        (Some(line), _) => Selection::Line(*line),
        (None, Some(raw)) => Selection::Phone(
            E164::normalize(raw, campaign.contacts.default_region)
                .with_context(|| format!("--phone {raw}"))?,
        ),
        (None, None) => Selection::First(args.limit),
    };
    let gate = ctx.consent_gate(&campaign)?;
    let mut planner = Planner::new(&campaign, &gate)?;
    let mut shown = Vec::new();
    while let Some(item) = planner.next_item()? {
        match item {
            PlanItem::Eligible(recipient) if selection.matches(recipient.line, recipient.phone) => {
                shown.push(recipient);
                let enough = match selection {
                    Selection::First(limit) => shown.len() >= limit,
                    _ => true,
                };
                if enough {
                    break;
                }
            }
            PlanItem::Excluded(excluded) if !matches!(selection, Selection::First(_)) => {
                let phone =
                    E164::normalize(&excluded.phone_raw, campaign.contacts.default_region).ok();
                if selection.matches(excluded.line, phone) {
                    bail!(
                        "{} line {} is excluded from this campaign: {}",
                        planner.contacts_path(),
                        excluded.line,
                        excluded.reason
                    );
                }
            }
            _ => {}
        }
    }
    if shown.is_empty() {
        match selection {
            Selection::First(_) => ctx
                .ui
                .warn("no eligible contacts to preview; run `wacampaign check` to see why"),
            Selection::Line(line) => {
                bail!("{} has no contact on line {line}", planner.contacts_path())
            }
            Selection::Phone(phone) => bail!(
                "{} has no contact with number {phone}",
                planner.contacts_path()
            ),
        }
    }
    for recipient in &shown {
        show(ctx, &campaign, cache.as_ref(), recipient, args.payload)?;
    }
    Ok(Exit::Success)
}

fn show(
    ctx: &Context,
    campaign: &Campaign,
    cache: Option<&crate::templates::Cache>,
    recipient: &Recipient,
    payload: bool,
) -> anyhow::Result<()> {
    // The callback data names the journal row by person; a preview has no journal,
    // so a BSUID-only contact is shown under the BSUID's own key.
    let person = match (&recipient.phone, &recipient.bsuid) {
        (Some(p), _) => crate::row_key::person_of(*p),
        (None, Some(b)) => b.key(),
        (None, None) => 0,
    };
    let body = provider::To::of(recipient, person).map_or(serde_json::Value::Null, |to| {
        provider::request_body(campaign, &to, &recipient.values)
    });
    let mut out = std::io::stdout().lock();
    let language = campaign.template.language_of(&recipient.values);
    let synced = cache.and_then(|c| c.find(&campaign.template.name, language));
    // Campaigns with only a body and no synced template read as they always did.
    let drawn = synced.is_some()
        || !campaign.template.parts.is_empty()
        || campaign.template.language_column.is_some();
    let render = || {
        if drawn {
            crate::templates::view::message(campaign, synced, &recipient.values)
        } else {
            campaign.template.body.render(&recipient.values)
        }
    };
    if ctx.ui.json {
        let text = render();
        let data = serde_json::json!({
            "line": recipient.line,
            "to": recipient.address(),
            "text": text,
            "payload": body,
        });
        json_line("preview", &data)?;
    } else if payload {
        writeln!(out, "{}", serde_json::to_string_pretty(&body)?)?;
    } else {
        let text = render();
        let heading = if campaign.template.language_column.is_some() {
            format!(
                "── line {} · {} · {language} ──",
                recipient.line,
                recipient.address()
            )
        } else {
            format!("── line {} · {} ──", recipient.line, recipient.address())
        };
        writeln!(out, "{}", ctx.ui.bold(&heading))?;
        writeln!(out, "{text}\n")?;
    }
    Ok(())
}
