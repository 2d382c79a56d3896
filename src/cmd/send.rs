//! `wacampaign send`: plan, confirm, send, and report.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::ValueEnum;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::campaign::{Campaign, Sending};
use crate::cmd::Context;
use crate::db::Db;
use crate::exit_codes::Exit;
use crate::journal::{Counts, Journal, JournalError};
use crate::lock::CampaignLock;
use crate::plan::{ConsentGate as _, PlanItem, PlanStats, Planner};
use crate::provider;
use crate::report::CheckReport;
use crate::send::progress::{Display, Progress, TallySnapshot};
use crate::send::window::Sizing;
use crate::send::{self, RunEnd};
use crate::ui::{human_duration, json_line};

/// Rows written to the journal per transaction while planning.
const PLAN_BATCH: usize = 10_000;

/// Send a campaign: plan it as `check` does, confirm, then send.
///
/// Every recipient is journaled in the database: the intent to send is on disk before
/// the request is made, so a crash, a kill or a re-run never messages anyone twice.
/// Running the same campaign again resumes it; once finished, it sends nothing. With
/// `campaign.occurrence`, a run every day on a new export sends exactly the
/// occurrences not yet served, and those past their `campaign.send_by` expire unsent.
/// Messages whose outcome is unknown after a crash or timeout are held "in doubt"
/// and listed by `status`; `--in-doubt resend` sends them again. A run killed
/// before some claimed messages left (the departure log beside the database,
/// `<db>.<campaign>.departures`, says which) has those sent by the next run instead.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  wacampaign send campaigns/demo.toml --yes
  wacampaign send campaigns/promotion.toml --dry-run
  wacampaign send campaigns/promotion.toml --limit 20          # a test batch first
  WACAMPAIGN_RATE=40 wacampaign send campaigns/promotion.toml --yes --json
  wacampaign send campaigns/promotion.toml --yes --resume-halted
  wacampaign send campaigns/promotion.toml --yes --max-cost 25USD
  wacampaign send campaigns/spring-sale.toml --yes --accept-template-change
  wacampaign send campaigns/promotion.toml --to '+52 55 1234 5678' --yes   # a test send
  wacampaign send campaigns/promotion.toml --to +525512345678,+525587654321 --row 7 --yes
  wacampaign --db /srv/clinic/wacampaign.db send reminders.toml --yes --json --wait 30m
  wacampaign send campaigns/promotion.toml --yes --where 'codigo.startsWith(\"BF-\")'
  wacampaign send campaigns/promotion.toml --yes --messaging-limit 2000

In cron (no terminal), --yes is required; exit codes tell how the run ended (2: nothing
was sent: a bad campaign, or a database that is missing or holds no consent; 3: halted,
or locked by another run). A command that sends never creates the database: it refuses
one that does not exist or whose consent ledger is empty, naming the path it opened
(--db, else WACAMPAIGN_DB, else ./wacampaign.db).
With --json, a progress object goes to stderr every 5 s:
  {\"type\":\"progress\",\"data\":{\"sent\":120,\"failed\":1,\"remaining\":880,\"rate\":39.8,\"elapsed\":5.0,...}}
Two runs sending from one business number take turns: the second waits (up to --wait)
for the first to finish, so the number's rate is never doubled.
Each run holds to the portfolio's messaging limit (see `wacampaign account`): people
beyond it are deferred, with when they can go, for a later run.
WACAMPAIGN_NOW (RFC 3339) sets the instant the run starts at, for rehearsals and tests.")]
pub struct Args {
    /// The campaign file (TOML).
    #[arg(value_name = "CAMPAIGN.toml")]
    pub campaign: PathBuf,
    /// Do everything but send: render and validate every message, and report what
    /// this run would send and what it would cost (the journal's progress and --limit
    /// counted, --max-cost checked); write nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Send to at most N new recipients in this run: a test batch.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Send without asking. Required when stdin is not a terminal.
    #[arg(short, long)]
    pub yes: bool,
    /// Messages per second, 1 to 1000 (default: the campaign's
    /// sending.rate_per_second). No one-second window at the provider ever holds more
    /// than N requests. A higher rate also widens the automatic in-flight window (rate
    /// × the answers' latency), and with it what a crash can leave in doubt.
    #[arg(long, env = "WACAMPAIGN_RATE", value_name = "N")]
    pub rate: Option<u32>,
    /// A fixed in-flight window: at most N requests on the wire at once (default:
    /// the campaign's sending.concurrency, else sized from the rate and the answers'
    /// latency, up to rate × 1.25 s). It is the most a crash can leave in doubt, and
    /// with answers taking L seconds it caps the rate at N / L.
    #[arg(long, env = "WACAMPAIGN_CONCURRENCY", value_name = "N")]
    pub concurrency: Option<usize>,
    /// What to do with messages held in doubt by an earlier run.
    #[arg(long, value_enum, default_value_t = InDoubt::Hold, value_name = "POLICY")]
    pub in_doubt: InDoubt,
    /// Continue a campaign that halted, once its cause is fixed.
    #[arg(long)]
    pub resume_halted: bool,
    /// Refuse the run, sending nothing, when its estimated cost is above AMOUNT, given
    /// in the rate card's currency (`25USD`, "25 USD"). Needs `[pricing] rate_card`
    /// in the campaign file; messages the card has no rate for also refuse it.
    #[arg(long, env = "WACAMPAIGN_MAX_COST", value_name = "AMOUNT")]
    pub max_cost: Option<crate::pricing::Money>,
    /// Do not fetch the header's media links before sending (links behind a login,
    /// or offline rehearsals); WhatsApp still fetches them for each message.
    #[arg(long)]
    pub no_media_check: bool,
    /// Go on with the text Meta approved since the campaign's last run (shown), and
    /// record that in the journal; the campaign keeps its id and history.
    #[arg(long)]
    pub accept_template_change: bool,
    /// A test send: the campaign's message, rendered for the first eligible contact
    /// (or --row), to these numbers only. They need a recorded opt-in like anyone
    /// (`wacampaign consent opt-in NUMBER --purpose ...`). Journaled as a test: the
    /// contact is not marked served and the campaign's totals do not count it.
    #[arg(long, value_name = "NUMBER[,NUMBER]", value_delimiter = ',', conflicts_with_all = ["dry_run", "limit", "in_doubt", "resume_halted"])]
    pub to: Vec<String>,
    /// With --to: render the message for the contact on this line of the contacts
    /// file (the header is line 1, as in `preview --row`) instead of the first
    /// eligible one.
    #[arg(long, value_name = "LINE", requires = "to")]
    pub row: Option<u64>,
    /// How long to wait for another run sending from the same business number
    /// (phone_number_id, Twilio sender, or the simulator) to finish before giving up
    /// with exit 3: 0, 90s, 30m, 2h.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_wait, env = "WACAMPAIGN_WAIT")]
    pub wait: std::time::Duration,
    #[command(flatten)]
    pub audience: crate::cmd::where_arg::WhereArg,
    /// The portfolio's messaging limit: unique people reached outside a
    /// customer-service window per rolling 24 h (250, 2000, 10000, 100000 or
    /// `unlimited`). Default: the campaign's sending.messaging_limit, else what
    /// `wacampaign account` last read, else 250 with a warning.
    #[arg(long, env = "WACAMPAIGN_MESSAGING_LIMIT", value_name = "N", value_parser = crate::messaging_limit::Limit::parse)]
    pub messaging_limit: Option<crate::messaging_limit::Limit>,
    #[command(flatten)]
    pub templates: crate::cmd::templates::PreflightArgs,
}

/// A wait as `--wait` takes it: seconds, minutes or hours.
fn parse_wait(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration; write 0, 90s, 30m or 2h"))?;
    let seconds = match unit {
        "" if n == 0 => 0,
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => {
            return Err(format!(
                "`{text}`: the unit must be s, m or h (90s, 30m, 2h)"
            ));
        }
    };
    Ok(std::time::Duration::from_secs(seconds))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InDoubt {
    /// Keep them out of this run and list them (a recipient may already have it).
    Hold,
    /// Send them again (a recipient may get the message twice).
    Resend,
}

/// The report printed before and after sending.
#[derive(Debug, Serialize)]
pub struct SendSummary {
    #[serde(flatten)]
    pub plan: CheckReport,
    pub dry_run: bool,
    /// Rows by state in the journal for this plan (in a dry run, as the run would
    /// find them before sending: nothing is written).
    pub journal: Option<Counts>,
    pub to_send: u64,
    /// Held in doubt from an earlier run and not resent.
    pub in_doubt_held: u64,
    pub recovered_in_doubt: u64,
    /// Rows the last run left in flight whose request its departure log proves
    /// never left: due again in this run.
    pub recovered_never_left: u64,
    /// Rows the last run left in flight whose acceptance its departure log kept:
    /// recorded as accepted, with their message ids.
    pub recovered_accepted: u64,
    pub this_run: Option<TallySnapshot>,
    pub end: Option<RunEnd>,
    pub failures_by_code: BTreeMap<String, u64>,
    /// Occurrences in the file that earlier runs already sent or settled.
    pub already_served: u64,
    /// Waiting occurrences whose send-by time had passed when this run started:
    /// expired, never sent.
    pub expired_now: u64,
    /// Every contact was left out for lack of consent: the ledger lets no one
    /// through for this campaign's purpose.
    pub no_consent: bool,
}

/// A send made ready: every check that can stop it is done and the plan is in the
/// journal; nothing has been sent and no operator decision applied yet. The
/// command only prints it, confirms, and runs it.
struct Prepared {
    campaign: Campaign,
    provider: Arc<dyn crate::provider::Provider>,
    journal: Journal,
    summary: SendSummary,
    /// Rows held in doubt that `--in-doubt resend` puts back.
    resend: u64,
    _lock: CampaignLock,
}

/// The campaign file with the command line's overrides, each checked once by the
/// same rule as the file's own value.
fn load_campaign(ctx: &Context, args: &Args) -> anyhow::Result<Campaign> {
    let mut campaign = crate::cmd::templates::load_campaign(ctx, &args.campaign, &args.templates)?;
    args.audience.apply(&mut campaign)?;
    if let Some(rate) = args.rate {
        campaign.sending.rate_per_second = Sending::check_rate(rate).map_err(anyhow::Error::msg)?;
    }
    if let Some(concurrency) = args.concurrency {
        campaign.sending.concurrency =
            Some(Sending::check_concurrency(concurrency).map_err(anyhow::Error::msg)?);
    }
    Ok(campaign)
}

/// What a run that sends needs before its first message: the provider (its secrets
/// read), the database with the campaign's opt-out buttons declared, the campaign's
/// lock, and the consent gate with the erased people.
struct Opened {
    provider: Arc<dyn crate::provider::Provider>,
    db: Db,
    lock: CampaignLock,
    gate: crate::gate::Gate,
}

fn open(ctx: &Context, campaign: &Campaign) -> anyhow::Result<Opened> {
    let provider = provider::build(campaign)?;
    let db = Db::open(&ctx.db)?;
    // Before the first message: a tap on its opt-out button must count at once.
    crate::webhook::optout::declare(
        &db.conn,
        &campaign.id,
        &campaign.template.opt_out_payloads(),
        &crate::clock::now_string(),
    )
    .context("recording the campaign's opt-out buttons")?;
    let lock = CampaignLock::acquire(&ctx.db, &campaign.id)?;
    let mut gate =
        crate::gate::Gate::load(Some(&db.conn), campaign).context("loading the consent ledger")?;
    gate.erased = ctx.suppressions(&db.conn)?;
    Ok(Opened {
        provider,
        db,
        lock,
        gate,
    })
}

/// Everything before the confirmation. `Ok(None)`: the campaign is halted (said).
fn prepare(ctx: &Context, args: &Args, campaign: Campaign) -> anyhow::Result<Option<Prepared>> {
    // Everything that can stop the run is checked before anyone is messaged.
    let Opened {
        provider,
        db,
        lock,
        gate,
    } = open(ctx, &campaign)?;
    let planner = Planner::new(&campaign, &gate)?;
    if planner.has_caps() {
        // A send writes anyway: the caps' indexes first, so that the plan's read of
        // each cap's window is an index scan, not the whole journal.
        crate::journal::hold::ensure_cap_indexes(&db.conn)
            .context("building the frequency caps' indexes")?;
    }
    let planner = planner
        .with_caps(&db.conn)
        .context("reading earlier messages for the frequency caps")?;
    let contacts_file = planner.contacts_path().to_owned();
    let (mut journal, recovered) = match Journal::begin(
        db.conn,
        &campaign,
        gate.clone(),
        args.resume_halted,
        Some(&crate::departure_log::path(&ctx.db, &campaign.id)),
    ) {
        Ok(begun) => begun,
        Err(e @ JournalError::Halted { .. }) => {
            ctx.ui.warn(e.to_string());
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let stats = write_plan(planner, &mut journal)?;
    let already_served = journal.already_served()?;
    // Only campaigns with send-by times have rows to expire: no scan for the others.
    let expired_now = if campaign.send_by.is_some() {
        journal.expire_past_send_by()?
    } else {
        0
    };
    if expired_now > 0 {
        ctx.ui.warn(format!(
            "{expired_now} messages passed their send-by time before they could be sent: expired, \
             never sent"
        ));
    }
    let no_consent = all_without_consent(&stats);
    if no_consent {
        ctx.ui.warn(format!(
            "every contact of {} was left out for lack of consent ({}): the ledger at {} has no \
             opt-in for {} for any of them. Is --db (or WACAMPAIGN_DB) the right ledger?",
            contacts_file,
            stats.contacts_read,
            crate::fail_closed::shown(&ctx.db),
            campaign.purpose()
        ));
    }
    let settled = journal.settle_in_doubt_from_statuses()?;
    if settled > 0 {
        ctx.ui.info(format!(
            "{settled} messages held in doubt were reported delivered by webhooks: settled as accepted"
        ));
    }
    let counts = journal.counts()?;
    let resend = if args.in_doubt == InDoubt::Resend {
        counts.in_doubt
    } else {
        0
    };
    let to_send = to_send(&counts, args.limit, resend);
    let mut summary = SendSummary {
        plan: CheckReport::new(&campaign, &contacts_file, stats),
        dry_run: false,
        journal: Some(counts.clone()),
        to_send,
        in_doubt_held: counts.in_doubt,
        recovered_in_doubt: recovered.in_doubt,
        recovered_never_left: recovered.never_left,
        recovered_accepted: recovered.accepted,
        this_run: None,
        end: None,
        failures_by_code: BTreeMap::new(),
        already_served,
        expired_now,
        no_consent,
    };
    summary.plan.estimated_seconds = to_send.div_ceil(u64::from(campaign.sending.rate_per_second));
    if recovered.never_left > 0 {
        ctx.ui.info(format!(
            "{} messages were claimed when the last run stopped but their requests had not left \
             (its departure log says so); they are sent in this run",
            recovered.never_left
        ));
    }
    if recovered.accepted > 0 {
        ctx.ui.info(format!(
            "{} messages were accepted by the provider just before the last run stopped, \
             before the journal recorded it (its departure log kept the answers); they are \
             recorded as accepted and not sent again",
            recovered.accepted
        ));
    }
    if recovered.in_doubt > 0 {
        ctx.ui.warn(format!(
            "{} messages were in flight when the last run stopped; they are held in doubt \
             (see `wacampaign status`), never resent unless you pass --in-doubt resend",
            recovered.in_doubt
        ));
    }
    Ok(Some(Prepared {
        campaign,
        provider,
        journal,
        summary,
        resend,
        _lock: lock,
    }))
}

/// The messages a run sends: the planned ones and those held in doubt it resends
/// (`resend`), up to `--limit`, and every deferred one due again. A run and a dry
/// run count alike.
fn to_send(counts: &Counts, limit: Option<u64>, resend: u64) -> u64 {
    let fresh = counts.planned + resend;
    limit.map_or(fresh, |l| l.min(fresh)) + counts.deferred
}

/// Whether every row read was left out for lack of consent.
fn all_without_consent(stats: &PlanStats) -> bool {
    use crate::exclusion::ExclusionKind;
    let no_opt_in = stats
        .excluded_by_reason
        .get(&ExclusionKind::NoOptIn)
        .copied()
        .unwrap_or(0);
    stats.eligible == 0 && no_opt_in > 0 && no_opt_in == stats.excluded
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Exit> {
    let campaign = load_campaign(ctx, args)?;
    if !args.dry_run {
        // Before anything opens (and so creates) the database.
        crate::fail_closed::require_existing(&ctx.db)?;
        let db = Db::open(&ctx.db)?;
        crate::fail_closed::require_consent(&db.conn, &ctx.db)?;
    }
    // Before anything is sent, or even journaled: the approved template must be the
    // one this campaign describes.
    let cache =
        crate::cmd::templates::preflight(ctx, &campaign, &args.templates, args.resume_halted)?;
    if args.dry_run {
        return dry_run(ctx, args, &campaign);
    }
    if let Some(cache) = &cache {
        template_changes(ctx, args, &campaign, cache)?;
    }
    let mut campaign = campaign;
    upload_media(ctx, &mut campaign)?;
    // The simulator fetches nothing, so neither does a rehearsal with it.
    if !args.no_media_check
        && !matches!(
            campaign.provider,
            crate::campaign::ProviderConfig::Simulator(_)
        )
    {
        check_media(ctx, &campaign)?;
    }
    if !args.to.is_empty() {
        return test_send(ctx, args, campaign);
    }
    let Some(prepared) = prepare(ctx, args, campaign)? else {
        return Ok(Exit::Halted);
    };
    let Prepared {
        campaign,
        provider,
        mut journal,
        mut summary,
        resend,
        _lock,
    } = prepared;
    crate::cmd::status::warn_before_send(ctx, &campaign)?;
    hold_to_messaging_limit(ctx, args, &campaign, &mut journal, summary.to_send)?;
    summary.plan.cost = cost_of_run(
        &ctx.db,
        &campaign,
        args.limit,
        args.max_cost.as_ref(),
        resend > 0,
    )?;
    if !ctx.ui.json && !ctx.ui.quiet {
        eprint!("{}", render_before(ctx, &summary));
    }
    let to_send = summary.to_send;
    if to_send == 0 {
        ctx.ui.info("nothing to send");
        return finish(ctx, &campaign, summary, &journal).or_else(|e| after_sending(ctx, e));
    }
    if !confirm(args.yes, to_send)? {
        ctx.ui.info("nothing sent");
        return Ok(Exit::Success);
    }
    // Only now, with the run confirmed, do the operator's decisions change the journal.
    if args.resume_halted {
        journal.resume()?;
    }
    if resend > 0 {
        let released = journal.release_in_doubt()?;
        ctx.ui.warn(format!(
            "resending {released} messages held in doubt: these recipients may get the message twice"
        ));
    }

    let _number = take_number(ctx, args, &campaign)?;
    start_departure_log(ctx, &mut journal);
    let (sent, progress) = pipeline(
        ctx,
        &campaign,
        provider,
        journal,
        to_send,
        summary.plan.stats.excluded,
        args.limit,
    )?;
    // Sending has started: whatever went wrong, what was recorded stands and the run
    // can be resumed, so this is not "invalid input, nothing sent" (exit 2).
    let (end, journal) = match sent {
        Ok(sent) => sent,
        Err(e) => return after_sending(ctx, e),
    };
    summary.this_run = Some(progress.tally.snapshot());
    summary.end = Some(end);
    finish(ctx, &campaign, summary, &journal).or_else(|e| after_sending(ctx, e))
}

/// The business number's lock: one run at a time sends from a number, so two
/// overlapping runs never double its rate. Waits up to `--wait`, saying for whom.
fn take_number(
    ctx: &Context,
    args: &Args,
    campaign: &Campaign,
) -> anyhow::Result<crate::lock::NumberLock> {
    let number = crate::lock::number_of(&campaign.provider);
    let wait = args.wait;
    Ok(crate::lock::NumberLock::acquire(
        &ctx.db,
        &number,
        wait,
        |holder| {
            ctx.ui.warn(format!(
                "business number {number} is sending for another run ({holder}); waiting up to \
                 {} for its turn (--wait)",
                human_duration(wait.as_secs())
            ));
        },
    )?)
}

/// Creates the run's departure log once nothing but sending is left to do: a run
/// that ends before its first message (nothing to send, `--max-cost`, a question
/// answered no, the number's lock not had) leaves no log beside the database.
fn start_departure_log(ctx: &Context, journal: &mut Journal) {
    journal.start_departures();
    if let Some(problem) = journal.departure_log_problem() {
        ctx.ui.warn(format!(
            "no departure log for this run ({problem}): if it is killed, every message then \
             in flight is held in doubt, including those whose requests had not left"
        ));
    }
}

type Sent = anyhow::Result<(RunEnd, Journal)>;

/// Runs the send pipeline over the journal's plan, showing progress as the output
/// mode asks (a bar, log lines, JSON objects on stderr, or nothing).
fn pipeline(
    ctx: &Context,
    campaign: &Campaign,
    provider: Arc<dyn crate::provider::Provider>,
    journal: Journal,
    to_send: u64,
    excluded: u64,
    limit: Option<u64>,
) -> anyhow::Result<(Sent, Progress)> {
    let display = if ctx.ui.quiet {
        Display::Hidden
    } else if ctx.ui.json {
        Display::Json
    } else if ctx.ui.interactive() {
        Display::Bar
    } else {
        Display::Log
    };
    let progress = Progress::new(display, to_send, excluded);
    let options = send::Options {
        limit,
        rate: Some(campaign.sending.rate_per_second),
        window: Sizing::of(&campaign.sending),
    };
    let runtime = send::runtime()?;
    let sent = runtime.block_on(async {
        let interrupt = CancellationToken::new();
        watch_signals(interrupt.clone());
        send::run(journal, provider, &options, progress.clone(), interrupt).await
    });
    Ok((sent, progress))
}

/// What `send --to` reports.
#[derive(Debug, Serialize)]
struct TestSendSummary {
    campaign: String,
    /// The contacts file's line the message was rendered for.
    rendered_for_line: u64,
    to: Vec<String>,
    this_run: TallySnapshot,
    end: RunEnd,
    /// Test sends never count in the campaign's totals.
    counted_in_totals: bool,
}

/// `send --to`: the message rendered for one contact, to the operator's numbers.
fn test_send(ctx: &Context, args: &Args, campaign: Campaign) -> anyhow::Result<Exit> {
    let Opened {
        provider,
        db,
        lock: _lock,
        gate,
    } = open(ctx, &campaign)?;
    let numbers = crate::test_send::numbers(&args.to, &campaign, &gate)?;
    if numbers.is_empty() {
        bail!("--to names no number; give one or more, separated by commas");
    }
    let sample = crate::test_send::sample(&campaign, &gate, args.row)?;
    let log = crate::departure_log::path(&ctx.db, &campaign.id);
    let mut journal = match Journal::begin_test(db.conn, &campaign, gate, Some(&log)) {
        Ok((journal, _)) => journal,
        Err(e @ JournalError::Halted { .. }) => {
            ctx.ui.warn(e.to_string());
            return Ok(Exit::Halted);
        }
        Err(e) => return Err(e.into()),
    };
    let batch = crate::test_send::recipients(&sample, &numbers, crate::clock::now());
    journal
        .plan(&batch)
        .context("writing the test send to the journal")?;
    let shown: Vec<String> = numbers.iter().map(ToString::to_string).collect();
    ctx.ui.info(format!(
        "test send of campaign {}: the message of line {} to {}",
        campaign.id,
        sample.line,
        shown.join(", ")
    ));
    if !confirm(args.yes, numbers.len() as u64)? {
        ctx.ui.info("nothing sent");
        return Ok(Exit::Success);
    }
    let _number = take_number(ctx, args, &campaign)?;
    start_departure_log(ctx, &mut journal);
    let (sent, progress) = pipeline(
        ctx,
        &campaign,
        provider,
        journal,
        numbers.len() as u64,
        0,
        None,
    )?;
    let (end, _journal) = match sent {
        Ok(sent) => sent,
        Err(e) => return after_sending(ctx, e),
    };
    let run = progress.tally.snapshot();
    let exit = match &end {
        RunEnd::Halted(_) => Exit::Halted,
        RunEnd::Interrupted => Exit::Interrupted,
        RunEnd::Finished if run.accepted as usize == numbers.len() => Exit::Success,
        RunEnd::Finished => Exit::Partial,
    };
    if ctx.ui.json {
        json_line(
            "test_send",
            &TestSendSummary {
                campaign: campaign.id.clone(),
                rendered_for_line: sample.line,
                to: shown,
                this_run: run,
                end,
                counted_in_totals: false,
            },
        )?;
        return Ok(exit);
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "test send of campaign {} (rendered for line {}): {} accepted, {} failed, {} in doubt \
         of {}; recorded as test sends, not counted in the campaign's totals",
        campaign.id,
        sample.line,
        run.accepted,
        run.failed,
        run.in_doubt,
        numbers.len()
    )?;
    Ok(exit)
}

/// Holds the approved texts against those of the campaign's earlier runs: a text
/// Meta approved since is shown, old and new, and the run goes on only with
/// `--accept-template-change`, which the journal records.
fn template_changes(
    ctx: &Context,
    args: &Args,
    campaign: &Campaign,
    cache: &crate::templates::Cache,
) -> anyhow::Result<()> {
    use crate::journal::template_text;
    let texts: Vec<(String, String)> = campaign
        .template
        .languages
        .iter()
        .filter_map(|language| {
            cache
                .find(&campaign.template.name, language)
                .and_then(crate::templates::SyncedTemplate::body_text)
                .map(|text| (language.clone(), text.to_owned()))
        })
        .collect();
    let mut db = Db::open(&ctx.db)?;
    let now = crate::clock::now_string();
    let changed = template_text::changes(&db.conn, &campaign.id, &texts, &now)
        .context("reading the campaign's approved texts from the journal")?;
    if changed.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = changed
        .iter()
        .map(|c| {
            format!(
                "  {}:
    was: {:?}
    now: {:?}",
                c.language, c.old, c.new
            )
        })
        .collect();
    if !args.accept_template_change {
        bail!(
            "Meta approved a new text for template `{}` since campaign {} last ran; recipients \
             from now on get the new one:\n{}\nRun again with --accept-template-change to go on \
             under the same campaign id (recorded in the journal). Nothing was sent.",
            campaign.template.name,
            campaign.id,
            shown.join("\n")
        );
    }
    template_text::accept(
        &mut db.conn,
        &campaign.id,
        &changed,
        &campaign.content_fingerprint(),
        &now,
    )
    .context("recording the accepted template change")?;
    ctx.ui.warn(format!(
        "going on with the new approved text of `{}` (--accept-template-change, recorded):\n{}",
        campaign.template.name,
        shown.join("\n")
    ));
    Ok(())
}

/// Uploads a header file sent to everyone once, before the first message, and
/// sends it by the media id the upload answers (the simulator takes none).
fn upload_media(ctx: &Context, campaign: &mut Campaign) -> anyhow::Result<()> {
    let crate::campaign::ProviderConfig::CloudApi { token, .. } = &campaign.provider else {
        return Ok(());
    };
    let Some(index) = campaign
        .template
        .parts
        .iter()
        .position(|p| p.upload.is_some())
    else {
        return Ok(());
    };
    let secret = crate::secret::Secret::load(token)?;
    let Some(path) = campaign.template.parts[index].upload.clone() else {
        return Ok(());
    };
    let id = crate::provider::cloud_api::upload_media(campaign, &secret, &path)?;
    ctx.ui
        .info(format!("uploaded {} once: media id {id}", path.display()));
    campaign.template.parts[index].source = crate::campaign::ValueSource::Fixed(id);
    Ok(())
}

/// Fetches the header's media links (HEAD, or a ranged GET) before the first
/// message: unreachable, of a type or a size WhatsApp does not take, is an error.
fn check_media(ctx: &Context, campaign: &Campaign) -> anyhow::Result<()> {
    use crate::media;
    let Some((kind, links)) = media::links_of(campaign)? else {
        return Ok(());
    };
    ctx.ui.debug(format!(
        "checking {} {} link(s)",
        links.len(),
        kind.as_str()
    ));
    let problems = media::check_links(&links, kind, std::time::Duration::from_secs(10));
    if problems.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = problems
        .iter()
        .take(5)
        .map(|p| format!("  - {p}"))
        .collect();
    bail!(
        "{}: {} of {} header {} link(s) would fail (template.header.link); nothing was sent:\n{}{}\n\
         Fix the links, or pass --no-media-check to send anyway",
        campaign.file.display(),
        problems.len(),
        links.len(),
        kind.as_str(),
        shown.join("\n"),
        if problems.len() > 5 { "\n  ..." } else { "" }
    )
}

/// An error once messages may have gone out: what was recorded stands and a run can
/// be resumed, so the exit says "halted", never "invalid input, nothing sent".
fn after_sending(ctx: &Context, error: anyhow::Error) -> anyhow::Result<Exit> {
    if crate::is_broken_pipe(&error) {
        // `send ... | head`: the reader went away, which is not a failure.
        return Err(error);
    }
    ctx.ui.warn(format!(
        "the run stopped: {error:#}. What was recorded stands; fix the cause and run again to resume"
    ));
    Ok(Exit::Halted)
}

/// `send --dry-run`: plans and renders every message as a run would, and reports
/// what the same command without `--dry-run` would send in this run, and its cost:
/// the journal is read (rows already sent or settled are not sent again, `--limit`
/// caps the new ones), never written, and no departure log is created.
fn dry_run(ctx: &Context, args: &Args, campaign: &Campaign) -> anyhow::Result<Exit> {
    use crate::journal::projection::{Fate, Projection};
    let gate = ctx.consent_gate(campaign)?;
    let mut planner = crate::cmd::where_arg::with_caps(ctx, Planner::new(campaign, &gate)?)?;
    let contacts_file = planner.contacts_path().to_owned();
    // Opened as `check` opens it; the projection only reads.
    let db = Db::open_existing(&ctx.db)?;
    let log = crate::departure_log::path(&ctx.db, &campaign.id);
    let mut projection = match Projection::new(
        db.as_ref().map(|db| &db.conn),
        campaign,
        args.resume_halted,
        Some(&log),
    ) {
        Ok(projection) => projection,
        // As a run: a halted campaign sends nothing until it is resumed.
        Err(e @ JournalError::Halted { .. }) => {
            ctx.ui.warn(e.to_string());
            return Ok(Exit::Halted);
        }
        Err(e) => return Err(e.into()),
    };
    let pricing = crate::pricing::Pricing::of(campaign)?;
    let mut pricer = pricing
        .as_ref()
        .map(|p| crate::pricing::estimate::RunPricer::new(p, args.limit));
    let resend_phones = if args.in_doubt == InDoubt::Resend {
        projection
            .in_doubt()
            .context("reading the messages held in doubt")?
    } else {
        Vec::new()
    };
    // Priced first, as a run prices them: resent rows share `--limit` with the
    // planned ones.
    if let Some(pricer) = pricer.as_mut() {
        for phone in &resend_phones {
            pricer.fresh(*phone);
        }
    }
    let mut rendered = 0u64;
    while let Some(item) = planner.next_item()? {
        let PlanItem::Eligible(recipient) = item else {
            continue;
        };
        // Render every message, sent in this run or not, so a dry run validates the
        // whole file as a run's plan does.
        let person = gate.person(recipient.phone, recipient.bsuid.as_ref());
        let to = provider::To::of(&recipient, person);
        let body = to.map_or(serde_json::Value::Null, |to| {
            provider::request_body(campaign, &to, &recipient.values)
        });
        rendered += u64::from(serde_json::to_vec(&body).is_ok());
        let fate = projection
            .item(&recipient, person)
            .context("reading the journal")?;
        if let Some(pricer) = pricer.as_mut() {
            match fate {
                Fate::Planned => pricer.fresh(recipient.phone),
                Fate::Deferred => pricer.deferred(recipient.phone),
                Fate::Served | Fate::InDoubt | Fate::Expired => {}
            }
        }
    }
    let stats = planner.stats().clone();
    let projected = projection.finish().context("reading the journal")?;
    let counts = projected.counts;
    let resend = if args.in_doubt == InDoubt::Resend {
        counts.in_doubt
    } else {
        0
    };
    let to_send = to_send(&counts, args.limit, resend);
    let no_consent = all_without_consent(&stats);
    let mut summary = SendSummary {
        plan: CheckReport::new(campaign, &contacts_file, stats),
        dry_run: true,
        to_send,
        in_doubt_held: counts.in_doubt,
        journal: Some(counts),
        recovered_in_doubt: projected.recovered_in_doubt,
        recovered_never_left: projected.recovered_never_left,
        recovered_accepted: projected.recovered_accepted,
        this_run: None,
        end: None,
        failures_by_code: BTreeMap::new(),
        already_served: projected.already_served,
        expired_now: projected.expired_now,
        no_consent,
    };
    summary.plan.estimated_seconds = to_send.div_ceil(u64::from(campaign.sending.rate_per_second));
    summary.plan.cost = pricer.map(crate::pricing::estimate::RunPricer::finish);
    if let Some(max) = &args.max_cost {
        crate::pricing::estimate::check_max_cost(summary.plan.cost.as_ref(), max)?;
    }
    if ctx.ui.json {
        json_line("send_summary", &summary)?;
    } else {
        let mut out = std::io::stdout().lock();
        out.write_all(render_before(ctx, &summary).as_bytes())?;
        writeln!(
            out,
            "dry run: {to_send} messages would be sent in this run ({rendered} rendered and \
             validated); nothing sent, nothing written"
        )?;
    }
    Ok(Exit::Success)
}

fn write_plan(mut planner: Planner<'_>, journal: &mut Journal) -> anyhow::Result<PlanStats> {
    let mut batch = Vec::with_capacity(PLAN_BATCH);
    let mut seq = 0u64;
    while let Some(item) = planner.next_item()? {
        if let PlanItem::Eligible(recipient) = item {
            seq += 1;
            batch.push((seq, recipient));
            if batch.len() == PLAN_BATCH {
                journal
                    .plan(&batch)
                    .context("writing the plan to the journal")?;
                batch.clear();
            }
        }
    }
    journal
        .plan(&batch)
        .context("writing the plan to the journal")?;
    journal
        .record_plan_stats(planner.stats())
        .context("recording the plan's figures")?;
    Ok(planner.stats().clone())
}

fn render_before(ctx: &Context, summary: &SendSummary) -> String {
    let mut out = summary.plan.render(&ctx.ui);
    if let Some(counts) = &summary.journal {
        if summary.already_served > 0 {
            out.push_str(&format!(
                "{} {} occurrences in the file were sent or settled by earlier runs\n",
                ctx.ui.bold("already served"),
                summary.already_served
            ));
        }
        let done = counts.accepted + counts.failed + counts.opted_out;
        if done > 0 || counts.in_doubt > 0 {
            out.push_str(&format!(
                "{} {} already sent or settled by earlier runs, {} held in doubt\n",
                ctx.ui.bold("journal "),
                done,
                counts.in_doubt
            ));
        }
        // Deferred rows count in the run, but go only once due: quiet hours may hold
        // every one of them for hours, so "now" would say what will not happen.
        let deferred = counts.deferred.min(summary.to_send);
        if deferred == 0 {
            out.push_str(&format!(
                "{} {} messages now, about {}\n",
                ctx.ui.bold("to send "),
                summary.to_send,
                human_duration(summary.plan.estimated_seconds)
            ));
        } else {
            out.push_str(&format!(
                "{} {} messages: {} now, {} deferred (quiet hours, a cap, a retry), each \
                 sent when due: by this run within 10 minutes, else by a later run\n",
                ctx.ui.bold("to send "),
                summary.to_send,
                summary.to_send - deferred,
                deferred
            ));
        }
    }
    out
}

/// Asks on the terminal; without one, only `--yes` sends.
fn confirm(yes: bool, to_send: u64) -> anyhow::Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "stdin is not a terminal, so there is no one to confirm: pass --yes to send {to_send} messages"
        );
    }
    eprint!("Send {to_send} messages now? [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// Tells what remains of the portfolio's messaging limit and has the run's claims
/// hold to it: whoever does not fit is deferred until the limit frees up.
fn hold_to_messaging_limit(
    ctx: &Context,
    args: &Args,
    campaign: &Campaign,
    journal: &mut Journal,
    to_send: u64,
) -> anyhow::Result<()> {
    use crate::messaging_limit::{self, Guard, Limit, Source};
    let Some((limit, source)) =
        crate::account::limit_for_run(journal.conn(), campaign, args.messaging_limit)
            .context("reading the messaging limit")?
    else {
        return Ok(());
    };
    let Limit::Users(n) = limit else {
        return Ok(());
    };
    if source == Source::Unknown {
        ctx.ui.warn(format!(
            "the messaging limit of this number is unknown: holding to Meta's lowest tier, {n} people per 24 h. Run `wacampaign account {}` to read it, or set sending.messaging_limit",
            campaign.file.display()
        ));
    }
    let other = campaign.sending.messaging_limit_other;
    let usage = messaging_limit::usage(journal.conn(), n, other, crate::clock::now())
        .context("reading the messaging limit's use")?;
    if to_send > usage.remaining() {
        ctx.ui.warn(format!(
            "{}: this run reaches at most {} more people outside a customer-service window; the others are deferred, not sent",
            usage.deferral(),
            usage.remaining()
        ));
    }
    journal.hold_to_messaging_limit(Guard::new(n, other, &campaign.id));
    Ok(())
}

fn watch_signals(interrupt: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    interrupt.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        eprintln!(
            "stopping: waiting for the messages in flight, then recording them (the run can be resumed)"
        );
        interrupt.cancel();
    });
}

fn finish(
    ctx: &Context,
    campaign: &Campaign,
    mut summary: SendSummary,
    journal: &Journal,
) -> anyhow::Result<Exit> {
    // The journal's own connection: opening the database again could fail (or wait)
    // after messages went out.
    let counts = journal.counts()?;
    summary.failures_by_code = journal.failures_by_code()?;
    summary.in_doubt_held = counts.in_doubt;
    summary.journal = Some(counts.clone());
    let exit = match &summary.end {
        Some(RunEnd::Halted(_)) => Exit::Halted,
        Some(RunEnd::Interrupted) => Exit::Interrupted,
        _ if counts.failed > 0 || counts.in_doubt > 0 => Exit::Partial,
        _ => Exit::Success,
    };
    if ctx.ui.json {
        json_line("send_summary", &summary)?;
        return Ok(exit);
    }
    let mut out = std::io::stdout().lock();
    let heading = match &summary.end {
        Some(RunEnd::Halted(reason)) => ctx.ui.red(&format!("halted: {reason}")),
        Some(RunEnd::Interrupted) => ctx
            .ui
            .yellow("interrupted: run the same command again to resume"),
        _ if counts.remaining() > 0 => {
            format!("{} recipients left for a later run", counts.remaining())
        }
        _ => ctx.ui.green("finished"),
    };
    writeln!(out, "campaign {}: {heading}", campaign.id)?;
    if let Some(run) = &summary.this_run {
        writeln!(
            out,
            "this run   {} accepted, {} failed, {} opted out, {} in doubt, {} retried ({} requests)",
            run.accepted, run.failed, run.opted_out, run.in_doubt, run.retried, run.requests
        )?;
    }
    writeln!(
        out,
        "in total   {} accepted, {} failed, {} opted out, {} in doubt, {} not yet sent, {} excluded{}",
        counts.accepted,
        counts.failed,
        counts.opted_out,
        counts.in_doubt,
        counts.remaining(),
        summary.plan.stats.excluded,
        if counts.expired > 0 {
            format!(", {} expired (past their send-by time)", counts.expired)
        } else {
            String::new()
        }
    )?;
    for (code, n) in &summary.failures_by_code {
        writeln!(out, "  error {code:<8} {n}")?;
    }
    if counts.in_doubt > 0 {
        writeln!(
            out,
            "{} messages are in doubt: `wacampaign status {}` lists them",
            counts.in_doubt,
            campaign.file.display()
        )?;
    }
    Ok(exit)
}

/// The estimate of a `send` run, checked against `--max-cost` (an error sends
/// nothing); `None` when the campaign has no rate card and no `--max-cost`.
fn cost_of_run(
    db: &std::path::Path,
    campaign: &crate::campaign::Campaign,
    limit: Option<u64>,
    max_cost: Option<&crate::pricing::Money>,
    resend_in_doubt: bool,
) -> anyhow::Result<Option<crate::pricing::estimate::Estimate>> {
    let estimate = match crate::pricing::Pricing::of(campaign)? {
        Some(pricing) => {
            let db = Db::open(db)?;
            Some(crate::pricing::estimate::of_journal(
                &db.conn,
                &pricing,
                &campaign.id,
                limit,
                resend_in_doubt,
            )?)
        }
        None => None,
    };
    if let Some(max) = max_cost {
        crate::pricing::estimate::check_max_cost(estimate.as_ref(), max)?;
    }
    Ok(estimate)
}
