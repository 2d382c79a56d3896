//! `wacampaign erase IDENTITY --reason TEXT`: a person's right to erasure.

use std::io::Write;
use std::time::Duration;

use anyhow::Context as _;

use crate::cmd::Context;
use crate::cmd::consent::RegionArg;
use crate::consent;
use crate::db::Db;
use crate::erasure;
use crate::exit_codes::Exit;
use crate::suppression::{Identity, SuppressionKey};
use crate::ui::json_line;

/// Erase a person: remove their personal data from every table, keep the proof.
///
/// IDENTITY is a phone number (any spelling: every WhatsApp variant of it is the same
/// person) or a business-scoped user ID (`CC.opaque`); every identity linked to it
/// (numbers it changed from or to, BSUIDs seen with it) is erased too. Removed: the
/// personal fields of their consent events, journal rows with rendered values,
/// delivery statuses, inbound messages, links between identities, and raw webhook
/// bodies that mention them. Kept: each consent event's commitment and hash (so
/// `consent verify` still passes), an erasure event with no personal data, and a
/// keyed hash of each identity in the suppression list, which leaves the person out
/// of every later campaign (reason `erased`) and refuses imports and opt-ins for them
/// until `consent opt-in --after-erasure` records a new, evidenced consent.
///
/// The suppression key comes from WACAMPAIGN_SUPPRESSION_KEY or the 0600 file named
/// by --suppression-key-file (WACAMPAIGN_SUPPRESSION_KEY_FILE); keep it outside the
/// database and its backups, and never change it. A person never seen is suppressed
/// all the same, and told so. A message to them that is in flight is waited for
/// (--wait), then its row removed; all of it happens in one transaction, so a crash
/// leaves the person erased or untouched, never half.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  export WACAMPAIGN_SUPPRESSION_KEY_FILE=~/.wacampaign-suppression.key
  wacampaign erase '+52 1 55 1234 5678' --reason 'request 2026-11-27 ticket 5120'
  wacampaign erase US.13491208655302741918 --reason 'request via email, ref 88'
  wacampaign --json erase +5491123456789 --reason 'ticket 77'")]
pub struct Args {
    /// The phone number (with country code) or business-scoped user ID to erase.
    pub identity: String,
    /// Why: the request's reference. Kept in the erasure event; write no personal
    /// data here.
    #[arg(long)]
    pub reason: String,
    /// How long to wait for a message to this person that is in flight.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub wait: u64,
    /// Do not rebuild the file afterwards. The rebuild (VACUUM) writes the whole
    /// database again and needs as much free disk; without it, pages freed before
    /// this version zeroed freed space may still hold old bytes of the person.
    #[arg(long)]
    pub no_vacuum: bool,
    /// Who records this; defaults to WACAMPAIGN_ACTOR or the login name.
    #[arg(long)]
    pub actor: Option<String>,
    #[command(flatten)]
    pub region: RegionArg,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Exit> {
    let identity =
        Identity::parse(&args.identity, args.region.default_region).map_err(anyhow::Error::msg)?;
    // The key first: without it nothing may be erased, since nothing would then
    // keep the person out of the next campaign.
    let key = SuppressionKey::load(ctx.suppression_key_file.as_deref())?;
    let db = Db::open(&ctx.db)?;
    let actor = args.actor.clone().unwrap_or_else(consent::default_actor);
    let report = erasure::erase(
        &db.conn,
        &key,
        &identity,
        &args.reason,
        &actor,
        Duration::from_secs(args.wait),
        !args.no_vacuum,
    )
    .with_context(|| format!("erasing from {}", ctx.db.display()))?;
    if ctx.ui.json {
        json_line("erased", &report)?;
        return Ok(Exit::Success);
    }
    let mut out = std::io::stdout().lock();
    if report.seen {
        writeln!(
            out,
            "erased {} phone number(s) and {} business-scoped ID(s); erasure recorded as ledger event #{}",
            report.phones, report.bsuids, report.erasure_event
        )?;
    } else {
        writeln!(
            out,
            "nothing was held about this {}; recorded as a suppression all the same (ledger event #{}), \
             so later campaigns, imports and opt-ins leave them out",
            identity.kind(),
            report.erasure_event
        )?;
    }
    for (label, n) in [
        ("consent events blanked", report.ledger_events_erased),
        ("journal rows", report.journal_rows),
        ("statuses", report.statuses),
        ("inbound messages", report.inbound_messages),
        ("number links", report.number_links),
        ("identity links", report.identity_links),
        ("raw webhook bodies", report.raw_bodies_cleared),
    ] {
        writeln!(out, "  {label:<24}{n}")?;
    }
    if !report.vacuumed && !args.no_vacuum {
        ctx.ui.warn(format!(
            "{} could not be rebuilt (another process kept writing), so free pages may still hold \
             old bytes; run `sqlite3 {} VACUUM` when it is idle",
            ctx.db.display(),
            ctx.db.display()
        ));
    }
    if !report.wal_truncated {
        ctx.ui.warn(format!(
            "another process kept reading {}, so its write-ahead log still holds pages from before \
             the erasure; they go at the next checkpoint (or run `wacampaign erase` again when it is idle)",
            ctx.db.display()
        ));
    }
    Ok(Exit::Success)
}
