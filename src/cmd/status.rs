//! `wacampaign status`: where a campaign stands, from its journal.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use serde::Serialize;

use crate::campaign::Campaign;
use crate::cmd::Context;
use crate::db::Db;
use crate::exit_codes::Exit;
use crate::followup::{self, Only};
use crate::journal::{self, Counts, JournalRow};
use crate::pricing::Pricing;
use crate::pricing::billed::{self, Billed};
use crate::report::spreadsheet_safe;
use crate::ui::json_line;
use crate::webhook::history::{self, DeliveryCounts};
use crate::webhook::possible::{self, Pending};
use crate::webhook::silence::{self, Silence};

/// Show where a campaign stands: counts by state and error code, and the messages
/// held in doubt.
///
/// `--csv FILE` writes one row per recipient (number, state, message id, error code
/// and detail, timestamps, latest delivery status), safe to open in a spreadsheet.
///
/// Delivery figures (delivered, read, failed after acceptance, replies) come from
/// `wacampaign webhook serve` running alongside. Replies that read like an opt-out
/// without being a keyword ("please stop") are listed as "possible opt-out, needs a
/// person", each with the `wacampaign consent opt-out ...` command that records it.
/// When messages were sent in the last 24 h but no webhook was recorded in that
/// time, a warning says opt-outs and statuses may be missing.
///
/// Billing: the messages Meta's status webhooks marked billable (their `pricing`
/// object), by category, with free ones (free_customer_service, free_entry_point)
/// apart; with a rate card, their cost as billable count × card rate, an estimate.
///
/// Lists for a follow-up campaign: `--csv FILE --only LIST` writes the people on
/// LIST with the columns of their contact row as the plan kept them (all, or
/// `campaign.keep_columns`), then `outcome`, `outcome_note` and `error_code`: the
/// file is the contacts file of the next campaign. `not-read` includes people who
/// turned read receipts off (they may have read it). People who opted out, by the
/// provider's answer or since the campaign began, are never listed.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  wacampaign status campaigns/promotion.toml
  wacampaign status campaigns/promotion.toml --csv promotion-status.csv
  wacampaign status campaigns/promotion.toml --json
  wacampaign status campaigns/demo.toml --only not-read --csv campaigns/demo-not-read.csv
  wacampaign status campaigns/demo.toml --only failed --csv failed.csv")]
pub struct Args {
    /// The campaign file (TOML).
    #[arg(value_name = "CAMPAIGN.toml")]
    pub campaign: PathBuf,
    /// Write one row per recipient to this CSV file (with --only, the follow-up list).
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Write only these people, with their contact columns and outcome, for a
    /// follow-up campaign. not-read includes people who turned read receipts off.
    #[arg(long, value_enum, value_name = "LIST", requires = "csv")]
    pub only: Option<Only>,
}

#[derive(Debug, Serialize)]
struct Status {
    campaign: String,
    first_sent: String,
    halted: Option<Halt>,
    counts: Counts,
    failures_by_code: std::collections::BTreeMap<String, u64>,
    in_doubt: Vec<JournalRow>,
    /// Accepted, but held by Meta while it assesses the template's quality.
    held_for_quality_assessment: u64,
    deliveries: DeliveryCounts,
    /// Replies that read like an opt-out without being a keyword: a person decides.
    possible_opt_outs: Vec<Pending>,
    /// Set when messages went out in the last 24 h and no webhook arrived.
    webhooks_silent: Option<Silence>,
    /// What Meta's status webhooks said about billing, and its estimated cost.
    billing: Billed,
    /// The follow-up list written (`--only`).
    #[serde(skip_serializing_if = "Option::is_none")]
    follow_up: Option<FollowUp>,
    /// Test sends (`send --to`), apart: never in the counts above.
    test_sends: u64,
}

#[derive(Debug, Serialize)]
struct FollowUp {
    list: &'static str,
    file: String,
    #[serde(flatten)]
    written: followup::Written,
}

#[derive(Debug, Serialize)]
struct Halt {
    at: String,
    reason: String,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Exit> {
    let campaign = Campaign::load(&args.campaign)?;
    let Some(db) = Db::open_existing(&ctx.db)? else {
        bail!(
            "no database at {}: campaign `{}` was never sent from here",
            ctx.db.display(),
            campaign.id
        );
    };
    let Some((record, halted)) = journal::campaign_record(&db.conn, &campaign.id)? else {
        bail!(
            "campaign `{}` was never sent with the database {}",
            campaign.id,
            ctx.db.display()
        );
    };
    let counts = journal::counts(&db.conn, &campaign.id, Some(record.plan_run))?;
    let failures_by_code = journal::failures_by_code(&db.conn, &campaign.id, record.plan_run)?;
    let mut in_doubt = Vec::new();
    journal::rows(
        &db.conn,
        &campaign.id,
        record.plan_run,
        Some(journal::State::InDoubt),
        |row| {
            in_doubt.push(row);
            Ok(())
        },
    )?;
    let mut follow_up = None;
    match (&args.csv, args.only) {
        (Some(path), Some(only)) => {
            let written = followup::write(
                &db.conn,
                &campaign.id,
                record.plan_run,
                &record.created_at,
                &campaign.contacts.phone_column,
                only,
                path,
            )
            .with_context(|| format!("writing {}", path.display()))?;
            ctx.ui.info(format!(
                "wrote {} {} to {}{}",
                written.listed,
                only.as_str(),
                path.display(),
                if only == Only::NotRead {
                    " (not-read includes people who turned read receipts off)"
                } else {
                    ""
                }
            ));
            if written.without_columns > 0 {
                ctx.ui.warn(format!(
                    "{} of them were planned before contact columns were kept: only their number is in the file",
                    written.without_columns
                ));
            }
            follow_up = Some(FollowUp {
                list: only.as_str(),
                file: path.display().to_string(),
                written,
            });
        }
        (Some(path), None) => write_csv(&db, &campaign.id, record.plan_run, path)
            .with_context(|| format!("writing {}", path.display()))?,
        _ => {}
    }
    let deliveries = history::delivery_counts(&db.conn, &campaign.id, &record.created_at)?;
    let possible_opt_outs = possible::pending(&db.conn, &campaign.id, &record.created_at)?;
    let webhooks_silent = silence::check(&db.conn, crate::clock::now())?;
    let pricing = Pricing::of(&campaign)?;
    let billing = billed::billed(&db.conn, &campaign.id, pricing.as_ref())?;
    if let Some(silent) = &webhooks_silent {
        ctx.ui.warn(silent.warning(&ctx.db));
    }
    let status = Status {
        campaign: campaign.id.clone(),
        first_sent: record.created_at,
        halted: halted.map(|(at, reason)| Halt { at, reason }),
        counts,
        failures_by_code,
        in_doubt,
        held_for_quality_assessment: journal::held_for_quality(&db.conn, &campaign.id)?,
        deliveries,
        possible_opt_outs,
        webhooks_silent,
        billing,
        follow_up,
        test_sends: journal::test_sends(&db.conn, &campaign.id)?.total(),
    };
    if ctx.ui.json {
        json_line("status", &status)?;
        return Ok(Exit::Success);
    }
    let c = &status.counts;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} {} (first sent {})",
        ctx.ui.bold("campaign"),
        status.campaign,
        status.first_sent
    )?;
    if let Some(halt) = &status.halted {
        writeln!(
            out,
            "{}",
            ctx.ui
                .red(&format!("halted on {}: {}", halt.at, halt.reason))
        )?;
    }
    for state in crate::journal::State::REPORT_ORDER {
        let n = c.get(state);
        if state == crate::journal::State::Expired && n == 0 {
            // Only recurring campaigns with send-by times have any.
            continue;
        }
        writeln!(out, "  {:<10} {n}", state.label())?;
    }
    writeln!(out, "  {:<10} {}", "total", c.total())?;
    if status.test_sends > 0 {
        writeln!(
            out,
            "  {} test sends (`send --to`), not counted above",
            status.test_sends
        )?;
    }
    if status.held_for_quality_assessment > 0 {
        writeln!(
            out,
            "{}",
            ctx.ui.yellow(&format!(
                "  {} accepted messages are held for quality assessment by Meta \
                 (message_status held_for_quality_assessment): they may arrive late or not at all",
                status.held_for_quality_assessment
            ))
        )?;
    }
    write_deliveries(&mut out, &status.deliveries, &status.first_sent)?;
    if !status.failures_by_code.is_empty() {
        writeln!(out, "by error code:")?;
        for (code, n) in &status.failures_by_code {
            writeln!(out, "  {code:<10} {n}")?;
        }
    }
    if !status.in_doubt.is_empty() {
        writeln!(
            out,
            "in doubt (may have been sent; resend with `send --in-doubt resend`):"
        )?;
        for row in &status.in_doubt {
            writeln!(
                out,
                "  {} line {}: {}",
                row.phone,
                row.line,
                row.error_detail.as_deref().unwrap_or("no answer recorded")
            )?;
        }
    }
    write_billing(&mut out, &status.billing)?;
    write_possible_opt_outs(&mut out, &status.possible_opt_outs)?;
    Ok(Exit::Success)
}

/// The messages Meta marked billable or free, and their estimated cost.
fn write_billing(out: &mut impl Write, billing: &Billed) -> std::io::Result<()> {
    if billing.is_empty() {
        return Ok(());
    }
    writeln!(out, "billing (pricing in Meta's status webhooks):")?;
    for (category, n) in &billing.billable {
        writeln!(out, "  billable   {n} {category}")?;
    }
    for (kind, n) in &billing.free {
        writeln!(out, "  free       {n} {kind}")?;
    }
    if let Some(cost) = &billing.estimated_cost {
        write!(
            out,
            "{}",
            cost.render("  estimated cost (billable × card rate; the webhooks carry no amount):")
        )?;
    }
    Ok(())
}

/// What `send` says before sending that `status` would show in full: webhooks
/// silent for a day, and replies that may be opt-outs waiting for a person.
pub fn warn_before_send(ctx: &Context, campaign: &Campaign) -> anyhow::Result<()> {
    let Some(db) = Db::open_existing(&ctx.db)? else {
        return Ok(());
    };
    if let Some(silent) = silence::check(&db.conn, crate::clock::now())? {
        ctx.ui.warn(silent.warning(&ctx.db));
    }
    if let Some((record, _)) = journal::campaign_record(&db.conn, &campaign.id)? {
        let pending = possible::pending(&db.conn, &campaign.id, &record.created_at)?;
        if !pending.is_empty() {
            ctx.ui.warn(format!(
                "{} replies to this campaign may be opt-outs and need a person (possible opt-out): \
                 `wacampaign status {}` lists them with the command that records each",
                pending.len(),
                campaign.file.display()
            ));
        }
    }
    Ok(())
}

/// Replies that may be opt-outs, each with the command that records it.
fn write_possible_opt_outs(out: &mut impl Write, pending: &[Pending]) -> std::io::Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "possible opt-out, needs a person ({}): not acted on; if it is one, record it with the command shown",
        pending.len()
    )?;
    for p in pending {
        writeln!(
            out,
            "  {} at {}: {:?} ({})\n    {}",
            p.phone, p.occurred_at, p.text, p.reason, p.record_with
        )?;
    }
    Ok(())
}

/// Delivery figures from the webhook server, as shares of the accepted messages.
fn write_deliveries(out: &mut impl Write, d: &DeliveryCounts, since: &str) -> std::io::Result<()> {
    if d.accepted == 0 && d.replies == 0 {
        return Ok(());
    }
    if d.no_status == d.accepted && d.replies == 0 {
        return writeln!(
            out,
            "delivery: no statuses received yet (they come from `wacampaign webhook serve`)"
        );
    }
    let share =
        |rate: Option<f64>| rate.map_or_else(String::new, |r| format!(" ({:.1}%)", r * 100.0));
    writeln!(out, "delivery (webhooks; shares of accepted):")?;
    writeln!(
        out,
        "  {:<10} {}{}",
        "delivered",
        d.delivered,
        share(d.delivered_rate)
    )?;
    writeln!(out, "  {:<10} {}{}", "read", d.read, share(d.read_rate))?;
    writeln!(
        out,
        "  {:<10} {}{} after acceptance",
        "failed",
        d.failed_after_accept,
        share(d.failed_rate)
    )?;
    writeln!(out, "  {:<10} {}", "no status", d.no_status)?;
    writeln!(
        out,
        "  {:<10} {} from {} recipients since {since}",
        "replies", d.replies, d.replied
    )?;
    Ok(())
}

fn write_csv(
    db: &Db,
    campaign_id: &str,
    plan_run: i64,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    let file = crate::report::PrivateFile::create(path)
        .with_context(|| format!("creating {}", path.display()))?;
    let mut csv = csv::Writer::from_writer(std::io::BufWriter::new(file));
    csv.write_record([
        "phone",
        "line",
        "state",
        "attempts",
        "message_id",
        "error_code",
        "error_detail",
        "intent_at",
        "outcome_at",
        "updated_at",
        "delivery_status",
    ])?;
    journal::rows(&db.conn, campaign_id, plan_run, None, |row| {
        let delivery_status = match &row.message_id {
            Some(id) => history::latest_status(&db.conn, id)?.map(|s| s.status),
            None => None,
        };
        let cells = [
            row.phone,
            row.line.to_string(),
            row.state.to_string(),
            row.attempts.to_string(),
            row.message_id.unwrap_or_default(),
            row.error_code.map(|c| c.to_string()).unwrap_or_default(),
            row.error_detail.unwrap_or_default(),
            row.intent_at.unwrap_or_default(),
            row.outcome_at.unwrap_or_default(),
            row.updated_at,
            delivery_status.unwrap_or_default(),
        ];
        csv.write_record(cells.iter().map(|c| spreadsheet_safe(c).into_owned()))?;
        Ok(())
    })?;
    crate::report::finish_csv(csv).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
