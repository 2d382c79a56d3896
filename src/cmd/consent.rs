//! `wacampaign consent ...`: record, inspect, export and verify the consent ledger.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Subcommand, ValueEnum};
use serde::Serialize;

use crate::clock;
use crate::cmd::Context;
use crate::consent::{
    self, Action, Appended, ImportOptions, Ledger, NewEvent, Purpose, RecordedVia,
};
use crate::contacts::Encoding;
use crate::db::Db;
use crate::exit_codes::Exit;
use crate::phone::{DefaultRegion, E164, PhoneError};
use crate::report::spreadsheet_safe;
use crate::suppression::Identity;
use crate::ui::json_line;

/// Record, inspect, export and verify the consent ledger.
///
/// The ledger is append-only: every opt-in and opt-out is kept with when and how the
/// person acted, the source and evidence, and who recorded it, chained by hashes so
/// `consent verify` proves nothing was altered. A contact may receive a campaign of a
/// purpose when it has an opt-in for that purpose and no later opt-out for it or for
/// `all`; an import never lifts an opt-out.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  wacampaign consent import optins.csv --purpose marketing --method web_form \\
      --occurred-column signed_up_at --evidence-column form_id --notice-file notice.txt
  wacampaign consent opt-out '+52 55 1234 5678' --source 'call 2026-11-20 ticket 4411'
  wacampaign consent show '+52 1 55 1234 5678'
  wacampaign consent export --format csv > ledger.csv
  wacampaign consent verify")]
pub struct Args {
    #[command(subcommand)]
    pub command: ConsentCommand,
}

#[derive(Debug, Subcommand)]
pub enum ConsentCommand {
    Import(ImportArgs),
    OptIn(OptInArgs),
    OptOut(OptOutArgs),
    Show(ShowArgs),
    Export(ExportArgs),
    Stats(StatsArgs),
    Verify(VerifyArgs),
}

/// Where numbers written without a country code are from.
#[derive(Debug, clap::Args)]
pub struct RegionArg {
    /// ISO country for numbers written without `+`, e.g. MX.
    #[arg(long, env = "WACAMPAIGN_DEFAULT_REGION", value_name = "CC")]
    pub default_region: Option<DefaultRegion>,
}

/// Record one event per row of a CSV file, in one transaction.
///
/// Rows with a number or date that cannot be read (or a date in the future) are
/// listed with their line and skipped; the others are recorded. A file that cannot
/// be read as a whole (a quote never closed, not text) records nothing. Importing the same file again records nothing new. Prints counts:
/// recorded, already present, blocked by a later opt-out, invalid.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  wacampaign consent import optins.csv --purpose marketing --method web_form
  wacampaign consent import paper-forms.csv --purpose utility --method paper \\
      --phone-column telefono --default-region MX --occurred-column fecha
  wacampaign consent import unsubscribed.csv --purpose all --action opt-out --method import")]
pub struct ImportArgs {
    /// The CSV file (header row required; `,` `;` or tab).
    pub file: PathBuf,
    /// What the consent is for; `all` only with `--action opt-out`.
    #[arg(long, value_enum)]
    pub purpose: Purpose,
    /// How the people consented: web_form, paper, api, operator, ...
    #[arg(long)]
    pub method: String,
    #[arg(long, value_enum, default_value_t = Action::OptIn)]
    pub action: Action,
    /// The column holding phone numbers.
    #[arg(long, default_value = "phone", value_name = "C")]
    pub phone_column: String,
    /// The column with when each person acted; without it, the time of the import.
    #[arg(long, value_name = "C")]
    pub occurred_column: Option<String>,
    /// The column with each row's evidence (form id, signature reference, ...).
    #[arg(long, value_name = "C")]
    pub evidence_column: Option<String>,
    /// A file with the text people were shown when they consented.
    #[arg(long, value_name = "F")]
    pub notice_file: Option<PathBuf>,
    #[command(flatten)]
    pub region: RegionArg,
    /// Who records this; defaults to WACAMPAIGN_ACTOR, else the login name (USER,
    /// LOGNAME), else `unknown`.
    #[arg(long)]
    pub actor: Option<String>,
    /// The file's text encoding.
    #[arg(long, value_parser = parse_encoding, default_value = "utf-8")]
    pub encoding: Encoding,
}

/// An opt-in's purpose: `all` is offered only where an opt-out may use it.
fn one_purpose() -> impl clap::builder::TypedValueParser<Value = Purpose> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(["marketing", "utility"]).map(|p| {
        if p == "marketing" {
            Purpose::Marketing
        } else {
            Purpose::Utility
        }
    })
}

/// Record that a person opted in. Printed only once it is on disk.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  wacampaign consent opt-in '+52 55 1234 5678' --purpose marketing --method web_form \\
      --source 'signup form v3, submission 88213' --notice-file notice.txt
  wacampaign consent opt-in US.13491208655302741918 --purpose utility --method web_form \\
      --source 'signup form v3, submission 88214' --evidence 'checkbox ticked'")]
pub struct OptInArgs {
    /// A phone number, or a business-scoped user ID (CC.opaque) for a person whose
    /// number you do not have; it counts for every identity linked to it.
    #[arg(value_name = "NUMBER|BSUID")]
    pub number: String,
    /// What the consent is for: one purpose (an opt-out may be for `all`).
    #[arg(long, value_parser = one_purpose())]
    pub purpose: Purpose,
    /// How the person consented: web_form, paper, whatsapp_reply, api, operator, ...
    #[arg(long)]
    pub method: String,
    /// Where the proof is: a form id and version, a message id, a ticket.
    #[arg(long)]
    pub source: String,
    /// The person was erased (`wacampaign erase`) and has since given new consent:
    /// record it, with --evidence or --notice-file, dated after the erasure, and lift
    /// their suppression. Without it, an opt-in for an erased person is refused.
    #[arg(long)]
    pub after_erasure: bool,
    #[command(flatten)]
    pub event: EventArgs,
}

/// Record that a person opted out. Printed only once it is on disk.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  wacampaign consent opt-out '+52 55 1234 5678' --source 'phone call, ticket 4411'
  wacampaign consent opt-out US.13491208655302741918 --source 'email, ticket 4412'")]
pub struct OptOutArgs {
    /// A phone number, or a business-scoped user ID (CC.opaque); an opt-out of either
    /// blocks every identity linked to it.
    #[arg(value_name = "NUMBER|BSUID")]
    pub number: String,
    /// What the person opted out of; `all` blocks every purpose.
    #[arg(long, value_enum, default_value_t = Purpose::All)]
    pub purpose: Purpose,
    /// How the person opted out.
    #[arg(long, default_value = "operator")]
    pub method: String,
    /// Where the proof is: a message id, a ticket, an email.
    #[arg(long)]
    pub source: String,
    #[command(flatten)]
    pub event: EventArgs,
}

#[derive(Debug, clap::Args)]
pub struct EventArgs {
    /// When the person acted (RFC 3339, or `YYYY-MM-DD HH:MM:SS` in UTC); default now.
    #[arg(long, value_name = "TIME")]
    pub occurred_at: Option<String>,
    /// Evidence text kept with the event.
    #[arg(long)]
    pub evidence: Option<String>,
    /// A file with the text the person was shown.
    #[arg(long, value_name = "F")]
    pub notice_file: Option<PathBuf>,
    /// Who records this; defaults to WACAMPAIGN_ACTOR, else the login name (USER,
    /// LOGNAME), else `unknown`.
    #[arg(long)]
    pub actor: Option<String>,
    #[command(flatten)]
    pub region: RegionArg,
}

/// A number's or a business-scoped user ID's whole history and current standing,
/// with every identity linked to it (the number's WhatsApp variants, the BSUIDs
/// learned with it): an opt-out of any of them blocks them all.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  wacampaign consent show '+52 1 55 1234 5678'\n  wacampaign consent show US.13491208655302741918"
)]
pub struct ShowArgs {
    /// A phone number, or a business-scoped user ID (CC.opaque).
    #[arg(value_name = "NUMBER|BSUID")]
    pub number: String,
    #[command(flatten)]
    pub region: RegionArg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// For spreadsheets: cells that could be read as formulas are escaped with `'`.
    Csv,
    /// JSON Lines, exact: every event's hash can be recomputed from it.
    Json,
}

/// Every event and notice, for an auditor or a data subject request.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  wacampaign consent export --format csv --output ledger.csv
  wacampaign consent export --format json --subject '+52 55 1234 5678'
  wacampaign consent export --format json --subject US.13491208655302741918")]
pub struct ExportArgs {
    #[arg(long, value_enum, default_value = "csv")]
    pub format: ExportFormat,
    /// Only this number's events (with its WhatsApp variants), or this business-scoped
    /// user ID's.
    #[arg(long, value_name = "NUMBER|BSUID")]
    pub subject: Option<String>,
    /// Write to this file instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub region: RegionArg,
}

/// Counts by purpose and standing, opt-ins without evidence, and stale opt-ins.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  wacampaign consent stats --older-than 730")]
pub struct StatsArgs {
    /// Count standing opt-ins older than this many days.
    #[arg(long, default_value_t = 365, value_name = "DAYS")]
    pub older_than: u32,
}

/// Check the hash chain, the notices' hashes and the append-only triggers.
///
/// Exits 0 when the ledger is intact, and 1 naming the first broken event (and any
/// edited or missing notice) otherwise.
/// Note the printed head hash elsewhere: a later `verify --expect-head` then also
/// proves no event was cut from the end.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  wacampaign consent verify --expect-head 3f1c...")]
pub struct VerifyArgs {
    /// Also require the chain to contain this head hash (noted from an earlier verify).
    #[arg(long, value_name = "HASH")]
    pub expect_head: Option<String>,
}

fn parse_encoding(text: &str) -> Result<Encoding, String> {
    match text.to_ascii_lowercase().as_str() {
        "utf-8" | "utf8" => Ok(Encoding::Utf8),
        "windows-1252" | "cp1252" | "latin1" => Ok(Encoding::Windows1252),
        other => Err(format!(
            "unknown encoding `{other}`; use utf-8 or windows-1252"
        )),
    }
}

/// Reads a number or a business-scoped user ID typed on the command line.
fn identity(raw: &str, region: &RegionArg) -> anyhow::Result<Identity> {
    if crate::identity::is_bsuid(raw.trim()) {
        return Ok(Identity::Bsuid(raw.trim().to_owned()));
    }
    number(raw, region).map(Identity::Phone)
}

/// Reads a number typed on the command line. The error already quotes the number,
/// so it is not repeated; the hint about the country code is added only where it
/// can be the fix (not for letters or an empty argument).
fn number(raw: &str, region: &RegionArg) -> anyhow::Result<E164> {
    E164::normalize(raw, region.default_region).map_err(|e| {
        let no_country_code = region.default_region.is_none()
            && !raw.trim_start().starts_with('+')
            && !matches!(
                e,
                PhoneError::Letters(_) | PhoneError::Empty | PhoneError::NoCountryCode(_)
            );
        if no_country_code {
            anyhow::anyhow!(
                "{e}; write the number with its country code (+52...) or pass --default-region"
            )
        } else {
            e.into()
        }
    })
}

fn read_notice(path: Option<&PathBuf>) -> anyhow::Result<Option<String>> {
    path.map(|p| {
        std::fs::read_to_string(p).with_context(|| format!("reading notice file {}", p.display()))
    })
    .transpose()
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Exit> {
    match &args.command {
        ConsentCommand::Import(a) => import(ctx, a),
        ConsentCommand::OptIn(a) => record(
            ctx,
            &a.number,
            a.purpose,
            Action::OptIn,
            &a.method,
            &a.source,
            &a.event,
            a.after_erasure,
        ),
        ConsentCommand::OptOut(a) => record(
            ctx,
            &a.number,
            a.purpose,
            Action::OptOut,
            &a.method,
            &a.source,
            &a.event,
            false,
        ),
        ConsentCommand::Show(a) => show(ctx, a),
        ConsentCommand::Export(a) => export(ctx, a),
        ConsentCommand::Stats(a) => stats(ctx, a),
        ConsentCommand::Verify(a) => verify(ctx, a),
    }
}

fn import(ctx: &Context, args: &ImportArgs) -> anyhow::Result<Exit> {
    let db = Db::open(&ctx.db)?;
    let suppressions = ctx.suppressions(&db.conn)?;
    let options = ImportOptions {
        file: args.file.clone(),
        purpose: args.purpose,
        action: args.action,
        method: args.method.clone(),
        phone_column: args.phone_column.clone(),
        default_region: args.region.default_region,
        occurred_column: args.occurred_column.clone(),
        evidence_column: args.evidence_column.clone(),
        notice: read_notice(args.notice_file.as_ref())?,
        actor: args.actor.clone().unwrap_or_else(consent::default_actor),
        delimiter: None,
        encoding: args.encoding,
        suppressions,
    };
    let summary = consent::import_file(&db.conn, &options)?;
    if ctx.ui.json {
        json_line("consent_import", &summary)?;
        return Ok(Exit::Success);
    }
    for rejected in &summary.rejected {
        ctx.ui.warn(format!(
            "{} line {}: {}; skipped",
            summary.file, rejected.line, rejected.reason
        ));
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "imported {} (sha256 {})", summary.file, summary.sha256)?;
    writeln!(out, "  recorded              {}", summary.recorded)?;
    writeln!(out, "  already present       {}", summary.already_present)?;
    if args.action == Action::OptIn {
        writeln!(
            out,
            "  blocked by opt-out    {}",
            summary.blocked_by_opt_out
        )?;
    }
    writeln!(out, "  invalid               {}", summary.invalid)?;
    if summary.erased > 0 {
        writeln!(out, "  refused (erased)      {}", summary.erased)?;
    }
    Ok(Exit::Success)
}

#[derive(Serialize)]
struct Recorded {
    id: i64,
    subject: String,
    purpose: String,
    action: String,
    already_present: bool,
    standing: Option<consent::Standing>,
}

#[allow(clippy::too_many_arguments)]
fn record(
    ctx: &Context,
    raw: &str,
    purpose: Purpose,
    action: Action,
    method: &str,
    source: &str,
    event: &EventArgs,
    after_erasure: bool,
) -> anyhow::Result<Exit> {
    if action == Action::OptIn && purpose == Purpose::All {
        bail!("an opt-in is for one purpose: use --purpose marketing or --purpose utility");
    }
    if source.trim().is_empty() {
        bail!("--source is empty; say where the proof is (a form id, a message id, a ticket)");
    }
    let subject = identity(raw, &event.region)?;
    let occurred_at = match &event.occurred_at {
        Some(text) => consent::occurred_at(text, clock::now())
            .map_err(anyhow::Error::msg)
            .context("--occurred-at")?,
        None => clock::now_string(),
    };
    let new = NewEvent {
        subject: subject.clone(),
        purpose,
        action,
        occurred_at,
        method: method.to_owned(),
        recorded_via: RecordedVia::Command,
        source: source.to_owned(),
        evidence: event.evidence.clone(),
        notice: read_notice(event.notice_file.as_ref())?,
        actor: event.actor.clone().unwrap_or_else(consent::default_actor),
        dedupe_key: None,
    };
    let db = Db::open(&ctx.db)?;
    let ledger = Ledger::new(&db.conn);
    let suppressions = ctx.suppressions(&db.conn)?;
    let identity = subject.clone();
    let erased = suppressions.as_ref().and_then(|s| s.lookup(&identity));
    let appended = match (erased, action) {
        (None, _) => ledger.append(&new)?,
        (Some(erased), Action::OptOut) => {
            ctx.ui.warn(format!(
                "{subject} was erased on {} and is left out of every campaign already; an opt-out \
                 would store their number again, so nothing was recorded",
                clock::date_part(&erased.erased_at)
            ));
            return Ok(Exit::Success);
        }
        (Some(erased), Action::OptIn) => {
            let date = clock::date_part(&erased.erased_at).to_owned();
            if !after_erasure {
                bail!(
                    "refused: {subject} was erased on {date} at their request. If they gave new \
                     consent after that, record it with --after-erasure and its evidence \
                     (--evidence or --notice-file); nothing was recorded"
                );
            }
            let evidenced = new
                .evidence
                .as_deref()
                .is_some_and(|e| !e.trim().is_empty())
                || new.notice.is_some();
            if !evidenced {
                bail!(
                    "refused: consent after an erasure needs its own evidence; pass --evidence \
                     or --notice-file; nothing was recorded"
                );
            }
            if new.occurred_at <= erased.erased_at {
                bail!(
                    "refused: this consent is dated {}, not after the erasure on {}; only \
                     consent given after it can be recorded; nothing was recorded",
                    new.occurred_at,
                    erased.erased_at
                );
            }
            let key = suppressions.as_ref().map(|s| s.key().clone());
            let tx = rusqlite::Transaction::new_unchecked(
                &db.conn,
                rusqlite::TransactionBehavior::Immediate,
            )?;
            let appended = consent::append_in(&tx, &new)?;
            if let (Appended::Recorded(id), Some(key)) = (appended, key) {
                crate::suppression::lift_in(&tx, &key, &identity, id, &new.occurred_at)?;
            }
            tx.commit()?;
            appended
        }
    };
    let (id, already_present) = match appended {
        Appended::Recorded(id) => (id, false),
        Appended::AlreadyPresent(id) => (id, true),
    };
    // Only now, with the event committed under synchronous=FULL, is success reported.
    let standing = match purpose {
        Purpose::All => None,
        p => Some(ledger.standing(subject.clone(), p)?),
    };
    if ctx.ui.json {
        json_line(
            "consent_recorded",
            &Recorded {
                id,
                subject: subject.to_string(),
                purpose: purpose.to_string(),
                action: action.as_str().to_owned(),
                already_present,
                standing: standing.clone(),
            },
        )?;
    } else {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "recorded {} #{id}: {subject} {purpose}",
            action.as_str()
        )?;
        if let Some(standing) = &standing {
            writeln!(out, "{subject} {}", standing.describe(purpose))?;
        }
    }
    if action == Action::OptIn && standing.as_ref().is_some_and(|s| !s.allows()) {
        ctx.ui.warn(format!(
            "{subject} is still blocked for {purpose}: an opt-out is lifted only by a later opt-in \
             (by when the person acted) with its own evidence, and never by an import"
        ));
    }
    Ok(Exit::Success)
}

fn show(ctx: &Context, args: &ShowArgs) -> anyhow::Result<Exit> {
    let subject = identity(&args.number, &args.region)?;
    let Some(db) = Db::open_existing(&ctx.db)? else {
        bail!(
            "no consent ledger at {}; record events with `wacampaign consent import` or `opt-in`",
            ctx.db.display()
        );
    };
    let ledger = Ledger::new(&db.conn);
    // The person's linked identities (a number and its BSUIDs) are one person: an
    // opt-out of any of them blocks them all.
    let keys = crate::identity::linked_keys(&db.conn, &subject)?;
    let history = ledger.history_of_keys(&keys)?;
    let standings: Vec<(Purpose, consent::Standing)> = [Purpose::Marketing, Purpose::Utility]
        .into_iter()
        .map(|p| {
            let per_identity = keys.iter().map(|k| {
                let own: Vec<consent::Event> = history
                    .iter()
                    .filter(|e| Identity::from_stored(&e.subject).is_some_and(|i| i.key() == *k))
                    .cloned()
                    .collect();
                consent::standing_of(&own, p)
            });
            (p, consent::combine(per_identity))
        })
        .collect();
    if ctx.ui.json {
        let data = serde_json::json!({
            "subject": subject.to_string(),
            "events": history,
            "standing": standings.iter().map(|(p, s)| (p.as_str(), s)).collect::<std::collections::BTreeMap<_, _>>(),
        });
        json_line("consent_show", &data)?;
        return Ok(Exit::Success);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", ctx.ui.bold(&subject.to_string()))?;
    for (purpose, standing) in &standings {
        writeln!(out, "  {}", standing.describe(*purpose))?;
    }
    if history.is_empty() {
        writeln!(out, "no events recorded")?;
    }
    for e in &history {
        writeln!(
            out,
            "#{:<6} {}  {:<8} {:<9} {}  {}",
            e.id,
            e.occurred_at,
            e.action,
            e.purpose,
            e.subject,
            e.provenance()
        )?;
    }
    Ok(Exit::Success)
}

fn export(ctx: &Context, args: &ExportArgs) -> anyhow::Result<Exit> {
    let subject = args
        .subject
        .as_deref()
        .map(|s| identity(s, &args.region))
        .transpose()?;
    let Some(db) = Db::open_existing(&ctx.db)? else {
        bail!("no consent ledger at {}", ctx.db.display());
    };
    let ledger = Ledger::new(&db.conn);
    match &args.output {
        // Like the database, the export holds customers' phone numbers: it is written
        // to a file readable by its owner only, put in place once complete.
        Some(path) => {
            let mut sink = std::io::BufWriter::new(
                crate::report::PrivateFile::create(path)
                    .with_context(|| format!("creating {}", path.display()))?,
            );
            write_export(&ledger, subject.clone(), args.format, &mut sink)?;
            sink.into_inner()
                .map_err(std::io::IntoInnerError::into_error)
                .and_then(crate::report::PrivateFile::commit)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        None => {
            let mut sink = std::io::BufWriter::new(std::io::stdout().lock());
            write_export(&ledger, subject, args.format, &mut sink)?;
            sink.flush()?;
        }
    }
    Ok(Exit::Success)
}

fn write_export(
    ledger: &Ledger,
    subject: Option<Identity>,
    format: ExportFormat,
    mut sink: &mut dyn Write,
) -> anyhow::Result<()> {
    let notices = ledger.notices(subject.clone())?;
    match format {
        ExportFormat::Json => {
            // A re-anchored chain starts from its anchor, not from 64 zeros.
            if let Some(anchor) = ledger.anchor()? {
                serde_json::to_writer(
                    &mut sink,
                    &serde_json::json!({"type": "anchor", "data": anchor}),
                )?;
                sink.write_all(b"\n")?;
            }
            ledger.for_each_event(subject.clone(), |event| {
                serde_json::to_writer(
                    &mut sink,
                    &serde_json::json!({"type": "event", "data": event}),
                )?;
                sink.write_all(b"\n")?;
                Ok(())
            })?;
            for (hash, text, recorded_at) in notices {
                let notice = serde_json::json!({"type": "notice", "data": {"hash": hash, "text": text, "recorded_at": recorded_at}});
                serde_json::to_writer(&mut sink, &notice)?;
                sink.write_all(b"\n")?;
            }
            sink.flush()?;
        }
        ExportFormat::Csv => {
            let texts: std::collections::HashMap<String, String> =
                notices.into_iter().map(|(h, t, _)| (h, t)).collect();
            let mut csv = csv::Writer::from_writer(sink);
            csv.write_record([
                "id",
                "subject",
                "purpose",
                "action",
                "occurred_at",
                "recorded_at",
                "method",
                "recorded_via",
                "source",
                "evidence",
                "notice_hash",
                "notice_text",
                "actor",
                "dedupe_key",
                "prev_hash",
                "hash",
            ])?;
            ledger.for_each_event(subject, |e| {
                let notice_text = e
                    .notice_hash
                    .as_ref()
                    .and_then(|h| texts.get(h))
                    .cloned()
                    .unwrap_or_default();
                let id = e.id.to_string();
                let cells = [
                    id.as_str(),
                    &e.subject,
                    &e.purpose,
                    &e.action,
                    &e.occurred_at,
                    &e.recorded_at,
                    &e.method,
                    &e.recorded_via,
                    &e.source,
                    e.evidence.as_deref().unwrap_or(""),
                    e.notice_hash.as_deref().unwrap_or(""),
                    &notice_text,
                    &e.actor,
                    e.dedupe_key.as_deref().unwrap_or(""),
                    &e.prev_hash,
                    &e.hash,
                ];
                csv.write_record(cells.iter().map(|c| spreadsheet_safe(c).into_owned()))?;
                Ok(())
            })?;
            csv.flush()?;
        }
    }
    Ok(())
}

fn stats(ctx: &Context, args: &StatsArgs) -> anyhow::Result<Exit> {
    let Some(db) = Db::open_existing(&ctx.db)? else {
        bail!("no consent ledger at {}", ctx.db.display());
    };
    let stats = Ledger::new(&db.conn).stats(args.older_than)?;
    if ctx.ui.json {
        json_line("consent_stats", &stats)?;
        return Ok(Exit::Success);
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} events about {} numbers",
        stats.events, stats.subjects
    )?;
    writeln!(
        out,
        "{:<10} {:>10} {:>10} {:>10}",
        "purpose", "opted in", "opted out", "no opt-in"
    )?;
    for (name, c) in [("marketing", &stats.marketing), ("utility", &stats.utility)] {
        writeln!(
            out,
            "{name:<10} {:>10} {:>10} {:>10}",
            c.opted_in, c.opted_out, c.no_opt_in
        )?;
    }
    writeln!(
        out,
        "opt-in events without evidence or notice: {}",
        stats.opt_ins_without_evidence
    )?;
    writeln!(
        out,
        "standing opt-ins older than {} days: {}",
        stats.older_than_days, stats.opt_ins_older_than
    )?;
    Ok(Exit::Success)
}

fn verify(ctx: &Context, args: &VerifyArgs) -> anyhow::Result<Exit> {
    let Some(db) = Db::open_existing(&ctx.db)? else {
        bail!("no consent ledger at {}", ctx.db.display());
    };
    let ledger = Ledger::new(&db.conn);
    let report = ledger.verify()?;
    let head_found = match &args.expect_head {
        None => true,
        Some(expected) => {
            expected == &report.head
                // A head noted before the ledger was re-anchored (migration 0007).
                || report.anchor.as_ref().is_some_and(|a| &a.legacy_head == expected)
                || ledger.contains_hash(expected).with_context(|| {
                    format!("looking up the expected head in {}", ctx.db.display())
                })?
        }
    };
    let intact = report.intact() && head_found;
    if ctx.ui.json {
        let data = serde_json::json!({"intact": intact, "expected_head_found": head_found, "report": report});
        json_line("consent_verify", &data)?;
    } else {
        let mut out = std::io::stdout().lock();
        for trigger in &report.missing_triggers {
            writeln!(
                out,
                "trigger {trigger} is missing or altered: events could be changed in place"
            )?;
        }
        if let Some(broken) = &report.first_broken {
            writeln!(
                out,
                "ledger BROKEN at event #{}: {}",
                broken.id, broken.problem
            )?;
        }
        for notice in &report.broken_notices {
            writeln!(out, "notice {}: {}", notice.hash, notice.problem)?;
        }
        if !head_found {
            writeln!(
                out,
                "the expected head is not in the chain: events were cut from the end or the chain was rebuilt"
            )?;
        }
        if let Some(anchor) = &report.anchor {
            writeln!(
                out,
                "re-anchored on {}: the {} events before erasable events ended at head {}; \
                 the chain continues from SHA-256(\"wacampaign re-anchor\\n\" + that head + \"\\n{}\") = {}",
                anchor.recorded_at,
                anchor.legacy_events,
                anchor.legacy_head,
                anchor.legacy_events,
                anchor.anchor
            )?;
        }
        if report.erased > 0 {
            writeln!(
                out,
                "{} events erased: their personal fields are gone, their commitments and hashes kept",
                report.erased
            )?;
        }
        if intact {
            writeln!(
                out,
                "ledger intact: {} events, head {}",
                report.events, report.head
            )?;
        }
    }
    Ok(if intact { Exit::Success } else { Exit::Partial })
}
