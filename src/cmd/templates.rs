//! `wacampaign templates`: sync, list, show and import the account's approved
//! templates; and the pre-flight that `check`, `preview` and `send` run with them.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Serialize;

use crate::campaign::{Campaign, MessageKind, ProviderConfig};
use crate::cmd::Context;
use crate::db::Db;
use crate::exit_codes::Exit;
use crate::secret::Secret;
use crate::templates::account::valid_waba_id;
use crate::templates::sync::Source;
use crate::templates::{Account, Cache, SyncedTemplate, preflight, store, view};
use crate::ui::json_line;

/// Sync, list, show or import the account's message templates.
///
/// `sync` reads every template of the WhatsApp Business Account (provider.waba_id in
/// the campaign file, or --waba-id) and stores it with the time of the sync; a sync
/// that fails halfway keeps the previous one. `check`, `preview` and `send` hold the
/// campaign against it before anything is sent.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  wacampaign templates sync campaigns/appointment-reminder.toml --waba-id 102290129340398
  wacampaign templates sync campaigns/spring-sale.toml
  wacampaign templates list
  wacampaign templates list --campaign campaigns/spring-sale.toml --json
  wacampaign templates show spring_sale --language en_US --campaign campaigns/spring-sale.toml
  wacampaign templates import saved-templates.json --waba-id 102290129340398")]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    Sync(SyncArgs),
    List(ListArgs),
    Show(ShowArgs),
    Import(ImportArgs),
}

/// Read every template of the campaign's account and store it.
///
/// The Cloud API is read page by page (`GET /<version>/<WABA-ID>/message_templates`),
/// with the token the campaign file names; the simulator's account is the saved
/// answer named by provider.templates. A 429 is retried after its Retry-After.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  wacampaign templates sync campaigns/spring-sale.toml
  WHATSAPP_TOKEN=... wacampaign templates sync campaigns/promotion.toml --waba-id 102290129340398")]
pub struct SyncArgs {
    /// The campaign file whose provider (and token) reaches the account.
    #[arg(value_name = "CAMPAIGN.toml")]
    pub campaign: PathBuf,
    /// The WhatsApp Business Account ID, instead of the file's provider.waba_id.
    #[arg(long, value_name = "ID")]
    pub waba_id: Option<String>,
}

/// Which account's cache to read: a campaign's, or a WhatsApp Business Account's.
#[derive(Debug, clap::Args)]
pub struct Which {
    /// The campaign whose account to read (provider.waba_id, or the simulator's file).
    #[arg(long, value_name = "CAMPAIGN.toml", conflicts_with = "waba_id")]
    pub campaign: Option<PathBuf>,
    /// The WhatsApp Business Account ID.
    #[arg(long, value_name = "ID")]
    pub waba_id: Option<String>,
}

/// List the synced templates: name, language, category, status, quality, parameter
/// format, header and buttons.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  wacampaign templates list
  wacampaign templates list --campaign campaigns/spring-sale.toml
  wacampaign templates list --waba-id 102290129340398 --json")]
pub struct ListArgs {
    #[command(flatten)]
    pub which: Which,
}

/// Show a template as a customer sees it, with its parameters.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  wacampaign templates show spring_sale --campaign campaigns/spring-sale.toml
  wacampaign templates show spring_sale --language en-US --waba-id 102290129340398")]
pub struct ShowArgs {
    /// The template's name.
    pub name: String,
    /// Only this language (es_MX, es-MX and ES_mx are the same).
    #[arg(long, value_name = "CODE")]
    pub language: Option<String>,
    #[command(flatten)]
    pub which: Which,
}

/// Load a saved `message_templates` answer (JSON) as the account's templates.
///
/// For offline work and tests: the file replaces the account's cache as a sync
/// would, with the time of the import.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  wacampaign templates import saved-templates.json --waba-id 102290129340398
  wacampaign templates import campaigns/spring-sale.templates.json --campaign campaigns/spring-sale.toml")]
pub struct ImportArgs {
    /// A saved answer of `GET /<version>/<WABA-ID>/message_templates`.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub which: Which,
}

/// The options `check`, `preview` and `send` share for pre-flight.
#[derive(Debug, Clone, clap::Args)]
pub struct PreflightArgs {
    /// Use the synced templates as they are, however old; do not refresh them.
    #[arg(long)]
    pub offline: bool,
    /// Refresh the synced templates when older than this many hours (with a token).
    #[arg(
        long,
        default_value_t = 24,
        value_name = "HOURS",
        env = "WACAMPAIGN_TEMPLATE_MAX_AGE"
    )]
    pub template_max_age: u64,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Exit> {
    match &args.command {
        Command::Sync(a) => sync(ctx, a),
        Command::List(a) => list(ctx, a),
        Command::Show(a) => show(ctx, a),
        Command::Import(a) => import(ctx, a),
    }
}

fn waba(id: &str) -> anyhow::Result<Account> {
    if !valid_waba_id(id) {
        bail!(
            "--waba-id `{id}`: expected the numeric WhatsApp Business Account ID \
             (WhatsApp Manager > Account tools > Phone numbers)"
        );
    }
    Ok(Account::Waba(id.to_owned()))
}

fn campaign_account(campaign: &Campaign, waba_id: Option<&str>) -> anyhow::Result<Account> {
    if let Some(id) = waba_id {
        return waba(id);
    }
    Account::of(campaign, None).with_context(|| match &campaign.provider {
        ProviderConfig::Twilio(_) => format!(
            "{}: no account to sync: add provider.account_sid (AC..., the Twilio account whose \
             Content API holds the templates)",
            campaign.file.display()
        ),
        ProviderConfig::Simulator(_) => format!(
            "{}: the simulator serves no templates for this campaign; name a saved \
             `message_templates` answer with provider.templates = \"FILE.json\"",
            campaign.file.display()
        ),
        ProviderConfig::CloudApi { .. } => format!(
            "{}: no account to sync: add provider.waba_id (the WhatsApp Business Account ID) \
             or pass --waba-id",
            campaign.file.display()
        ),
    })
}

/// Where the account's templates are read from, with the campaign's credentials.
/// `Err` when no token is available.
fn source(campaign: &Campaign, account: &Account) -> anyhow::Result<Source> {
    match (account, &campaign.provider) {
        (Account::Simulator(file), _) => Ok(Source::File(file.clone())),
        (
            Account::Waba(waba_id),
            ProviderConfig::CloudApi {
                base_url,
                api_version,
                token,
                timeout,
                ..
            },
        ) => {
            let secret = Secret::load(token)?;
            Ok(Source::Graph {
                base_url: base_url.clone(),
                api_version: api_version.clone(),
                waba_id: waba_id.clone(),
                token: secret,
                token_origin: token
                    .file
                    .as_ref()
                    .map_or_else(|| format!("${}", token.env), |f| f.display().to_string()),
                timeout: *timeout,
            })
        }
        (Account::Twilio(_), ProviderConfig::Twilio(config)) => {
            let credentials = crate::provider::twilio::Credentials::load(config)?;
            Ok(Source::TwilioContent {
                base_url: config.content_base_url.clone(),
                username: credentials.username,
                password: credentials.password,
                timeout: config.timeout,
            })
        }
        (Account::Twilio(_), other) => bail!(
            "{}: provider.kind is {}; a Twilio account's templates are synced through Twilio",
            campaign.file.display(),
            other.kind()
        ),
        (Account::Waba(_), other) => bail!(
            "{}: provider.kind is {}; templates are synced through the Cloud API \
             (provider.kind = \"cloud_api\")",
            campaign.file.display(),
            other.kind()
        ),
    }
}

fn sync(ctx: &Context, args: &SyncArgs) -> anyhow::Result<Exit> {
    let campaign = for_provider(&args.campaign)?;
    let account = campaign_account(&campaign, args.waba_id.as_deref())?;
    let source = source(&campaign, &account)?;
    let templates = source.fetch_all()?;
    let mut db = Db::open(&ctx.db)?;
    store::replace(
        &mut db.conn,
        &account.key(),
        &source.origin(),
        crate::clock::now(),
        &templates,
    )
    .with_context(|| format!("storing the templates in {}", ctx.db.display()))?;
    report_stored(ctx, &account, &templates)
}

fn import(ctx: &Context, args: &ImportArgs) -> anyhow::Result<Exit> {
    let account = which(&args.which)?.with_context(|| {
        "templates import: say whose templates these are with --waba-id ID or --campaign \
         CAMPAIGN.toml"
    })?;
    let source = Source::File(args.file.clone());
    let templates = source.fetch_all()?;
    let mut db = Db::open(&ctx.db)?;
    store::replace(
        &mut db.conn,
        &account.key(),
        &format!("import: {}", args.file.display()),
        crate::clock::now(),
        &templates,
    )
    .with_context(|| format!("storing the templates in {}", ctx.db.display()))?;
    report_stored(ctx, &account, &templates)
}

fn report_stored(
    ctx: &Context,
    account: &Account,
    templates: &[SyncedTemplate],
) -> anyhow::Result<Exit> {
    if templates.is_empty() {
        ctx.ui.warn(format!(
            "{account} has no templates; every campaign against it will be refused"
        ));
    }
    let approved = templates.iter().filter(|t| t.status == "APPROVED").count();
    if ctx.ui.json {
        json_line(
            "templates_synced",
            &serde_json::json!({
                "account": account.key(),
                "templates": templates.len(),
                "approved": approved,
            }),
        )?;
    } else {
        ctx.ui.info(format!(
            "stored {} templates ({approved} approved) of {account}",
            templates.len()
        ));
    }
    Ok(Exit::Success)
}

/// The account `--campaign` or `--waba-id` names; `None` when neither is given.
fn which(which: &Which) -> anyhow::Result<Option<Account>> {
    match (&which.campaign, &which.waba_id) {
        (_, Some(id)) => waba(id).map(Some),
        (Some(path), None) => {
            let campaign = for_provider(path)?;
            campaign_account(&campaign, None).map(Some)
        }
        (None, None) => Ok(None),
    }
}

/// The caches `which` selects: one account's, or every account's.
fn caches(ctx: &Context, selection: &Which) -> anyhow::Result<Vec<Cache>> {
    let account = which(selection)?;
    let Some(db) = Db::open_existing(&ctx.db)? else {
        bail!(
            "no database at {}: run `wacampaign templates sync CAMPAIGN.toml` or \
             `wacampaign templates import FILE` first",
            ctx.db.display()
        );
    };
    let keys = match &account {
        Some(a) => vec![a.key()],
        None => store::accounts(&db.conn)?,
    };
    let mut caches = Vec::new();
    for key in keys {
        if let Some(cache) = store::load(&db.conn, &key)? {
            caches.push(cache);
        }
    }
    if caches.is_empty() {
        match account {
            Some(a) => bail!(
                "no templates were synced for {a}: run `wacampaign templates sync` or \
                 `wacampaign templates import` first"
            ),
            None => bail!(
                "no templates were synced into {}: run `wacampaign templates sync` or \
                 `wacampaign templates import` first",
                ctx.db.display()
            ),
        }
    }
    Ok(caches)
}

#[derive(Serialize)]
struct Listed<'a> {
    account: &'a str,
    synced_at: String,
    name: &'a str,
    language: &'a str,
    category: &'a str,
    status: &'a str,
    quality: Option<&'a str>,
    parameter_format: &'a str,
    header: String,
    buttons: String,
    parameters: Vec<String>,
}

fn list(ctx: &Context, args: &ListArgs) -> anyhow::Result<Exit> {
    let caches = caches(ctx, &args.which)?;
    let mut out = std::io::stdout().lock();
    for cache in &caches {
        if !ctx.ui.json {
            writeln!(
                out,
                "{} · synced {} ago ({}) · {} templates",
                cache.account,
                cache.age(),
                crate::clock::format(cache.synced_at),
                cache.templates.len()
            )?;
            writeln!(
                out,
                "{:<32} {:<8} {:<14} {:<9} {:<8} {:<10} {:<9} BUTTONS",
                "NAME", "LANGUAGE", "CATEGORY", "STATUS", "QUALITY", "PARAMS", "HEADER"
            )?;
        }
        for t in &cache.templates {
            if ctx.ui.json {
                json_line(
                    "template",
                    &Listed {
                        account: &cache.account,
                        synced_at: crate::clock::format(cache.synced_at),
                        name: &t.name,
                        language: &t.language,
                        category: &t.category,
                        status: &t.status,
                        quality: t.quality.as_deref(),
                        parameter_format: t.parameter_format(),
                        header: view::header_glance(t),
                        buttons: view::buttons_glance(t),
                        parameters: view::parameters(t),
                    },
                )?;
            } else {
                writeln!(
                    out,
                    "{:<32} {:<8} {:<14} {:<9} {:<8} {:<10} {:<9} {}",
                    t.name,
                    t.language,
                    t.category,
                    t.status,
                    t.quality.as_deref().unwrap_or("-"),
                    t.parameter_format(),
                    view::header_glance(t),
                    view::buttons_glance(t)
                )?;
            }
        }
    }
    Ok(Exit::Success)
}

fn show(ctx: &Context, args: &ShowArgs) -> anyhow::Result<Exit> {
    let caches = caches(ctx, &args.which)?;
    let found: Vec<(&Cache, &SyncedTemplate)> = caches
        .iter()
        .flat_map(|c| c.named(&args.name).map(move |t| (c, t)))
        .filter(|(_, t)| {
            args.language
                .as_deref()
                .is_none_or(|l| preflight::same_language(l, &t.language))
        })
        .collect();
    if found.is_empty() {
        let all: Vec<&SyncedTemplate> = caches.iter().flat_map(|c| &c.templates).collect();
        if let Some(language) = &args.language
            && all.iter().any(|t| t.name == args.name)
        {
            let languages: Vec<&str> = all
                .iter()
                .filter(|t| t.name == args.name)
                .map(|t| t.language.as_str())
                .collect();
            bail!(
                "template `{}` has no `{language}` translation; it has {}",
                args.name,
                languages.join(", ")
            );
        }
        let suggestions =
            crate::templates::closest(&args.name, all.iter().map(|t| t.name.as_str()));
        let hint = if suggestions.is_empty() {
            "run `wacampaign templates list` to see them".to_owned()
        } else {
            format!("did you mean {}?", suggestions.join(", "))
        };
        bail!("no synced template is named `{}`; {hint}", args.name);
    }
    let mut out = std::io::stdout().lock();
    for (cache, template) in found {
        if ctx.ui.json {
            json_line(
                "template",
                &serde_json::json!({
                    "account": cache.account,
                    "template": template,
                    "parameters": view::parameters(template),
                }),
            )?;
        } else {
            writeln!(out, "{}", view::render(template))?;
        }
    }
    Ok(Exit::Success)
}

/// The account's template cache, refreshed as `preflight` says; `None` when the
/// campaign names no account (or is a session).
fn cache_for(
    ctx: &Context,
    campaign: &Campaign,
    args: &PreflightArgs,
    resuming: bool,
) -> anyhow::Result<Option<(Account, Option<Cache>)>> {
    if campaign.kind == MessageKind::Session {
        return Ok(None);
    }
    let Some(account) = Account::of(campaign, None) else {
        ctx.ui.debug(format!(
            "{}: no provider.waba_id (or simulator provider.templates): the campaign is not \
             checked against a synced template",
            campaign.file.display()
        ));
        return Ok(None);
    };
    let mut db = Db::open_existing(&ctx.db)?;
    let mut cache = match &db {
        Some(db) => store::load(&db.conn, &account.key())
            .with_context(|| format!("reading the template cache in {}", ctx.db.display()))?,
        None => None,
    };
    let halt = match (&db, resuming) {
        (Some(db), true) => template_halt(&db.conn, &campaign.id)?,
        _ => None,
    };
    // To the second: a sync in the second of the halt may have read the template before it.
    let before_halt = |c: &Cache| halt.as_ref().is_some_and(|(at, _)| c.synced_at <= *at);
    let max_age = Duration::from_secs(args.template_max_age.saturating_mul(3600));
    // Resuming a template halt on a cache that still shows the template unfit (a
    // pause Meta may have lifted since) asks WhatsApp again, however new the cache.
    let unfit_for_resume = |c: &Cache| halt.is_some() && !preflight::check(campaign, c).is_empty();
    let stale = cache.as_ref().is_none_or(|c| {
        before_halt(c)
            || unfit_for_resume(c)
            || (crate::clock::now() - c.synced_at)
                .to_std()
                .unwrap_or_default()
                > max_age
    });
    if args.offline {
        if let Some(c) = &cache {
            ctx.ui.info(format!(
                "--offline: using the templates of {account} synced {} ago",
                c.age()
            ));
        }
    } else if stale
        // A first sync from an account's API is the operator's `templates sync`: until
        // then the campaign runs unchecked, as before template sync existed. The
        // simulator's file is local, and resuming a template halt needs a sync anyway.
        && (cache.is_some() || matches!(account, Account::Simulator(_)) || halt.is_some())
    {
        match source(campaign, &account) {
            Ok(source) => match source.fetch_all() {
                Ok(templates) => {
                    let now = crate::clock::now();
                    if let Some(db) = db.as_mut() {
                        store::replace(
                            &mut db.conn,
                            &account.key(),
                            &source.origin(),
                            now,
                            &templates,
                        )
                        .with_context(|| {
                            format!("storing the templates in {}", ctx.db.display())
                        })?;
                    }
                    ctx.ui.debug(format!(
                        "refreshed {} templates of {account}",
                        templates.len()
                    ));
                    cache = Some(Cache {
                        account: account.key(),
                        origin: source.origin(),
                        synced_at: now,
                        templates,
                    });
                }
                Err(e) => match &cache {
                    Some(c) => ctx.ui.warn(format!(
                        "could not refresh the templates: {e}; using those synced {} ago",
                        c.age()
                    )),
                    None => {
                        return Err(anyhow::Error::new(e).context(format!(
                            "syncing the templates of {account} for pre-flight (pass --offline \
                             to go on without them)"
                        )));
                    }
                },
            },
            Err(e) => {
                if let Some(c) = &cache {
                    ctx.ui.warn(format!(
                        "the templates of {account} were synced {} ago and cannot be refreshed \
                         ({e:#}); checking against them",
                        c.age()
                    ));
                }
            }
        }
    }
    if let (Some((at, reason)), Some(c)) = (&halt, &cache)
        && before_halt(c)
    {
        bail!(
            "campaign {} halted at {} ({reason}); --resume-halted needs a template sync made \
             since then that shows `{}` APPROVED as {}: run `wacampaign templates sync {}`",
            campaign.id,
            crate::clock::format(*at),
            campaign.template.name,
            campaign.category.as_str().to_ascii_uppercase(),
            campaign.file.display()
        );
    }
    if let (Some((at, reason)), None) = (&halt, &cache) {
        bail!(
            "campaign {} halted at {} ({reason}); --resume-halted needs a template sync that \
             shows `{}` APPROVED: run `wacampaign templates sync {}`",
            campaign.id,
            crate::clock::format(*at),
            campaign.template.name,
            campaign.file.display()
        );
    }
    Ok(Some((account, cache)))
}

/// Holds `campaign` against its account's synced template before anything is sent:
/// refreshes a cache older than `--template-max-age` when a token is available, and
/// returns every mismatch as one error. Without any sync for the account it warns
/// and lets the campaign through, as before template sync existed.
///
/// `resuming` (send's `--resume-halted`): a campaign that halted for its template
/// resumes only on a sync made since the halt, which must show the template
/// APPROVED in the campaign's category; a cache older than the halt, or one that
/// still shows the template unfit, is refreshed, and without a way to refresh it
/// the resume is refused.
pub fn preflight(
    ctx: &Context,
    campaign: &Campaign,
    args: &PreflightArgs,
    resuming: bool,
) -> anyhow::Result<Option<Cache>> {
    let Some((account, cache)) = cache_for(ctx, campaign, args, resuming)? else {
        return Ok(None);
    };
    let Some(cache) = cache else {
        ctx.ui.warn(format!(
            "no templates were ever synced for {account}: the campaign is not checked against \
             the approved template; run `wacampaign templates sync {}`",
            campaign.file.display()
        ));
        return Ok(None);
    };
    let problems = preflight::check(campaign, &cache);
    if problems.is_empty() {
        return Ok(Some(cache));
    }
    Err(preflight::PreflightError {
        file: campaign.file.display().to_string(),
        account: account.to_string(),
        age: cache.age(),
        problems,
    }
    .into())
}

/// When and why the campaign halted, if it halted for its template (an error code
/// or a webhook about the template), from the journal.
fn template_halt(
    conn: &rusqlite::Connection,
    campaign_id: &str,
) -> anyhow::Result<Option<(chrono::DateTime<chrono::Utc>, String)>> {
    let Some((_, Some((at, reason)))) = crate::journal::query::campaign_record(conn, campaign_id)?
    else {
        return Ok(None);
    };
    // The pipeline's reason names the provider's error (`error 132015: ... Template is
    // paused`), a webhook's names the template.
    let lower = reason.to_ascii_lowercase();
    if !lower.contains("template")
        && !["132000", "132001", "132012", "132015", "132016"]
            .iter()
            .any(|code| lower.contains(code))
    {
        return Ok(None);
    }
    let at = crate::clock::parse(&at).map_err(anyhow::Error::msg)?;
    Ok(Some((at, reason)))
}

/// Loads a campaign file. One that leaves `template.body` out takes the approved
/// body of its first language from the synced templates, refreshed first as
/// pre-flight would (so pre-flight, right after, holds it against the same sync).
pub fn load_campaign(
    ctx: &Context,
    path: &std::path::Path,
    args: &PreflightArgs,
) -> anyhow::Result<Campaign> {
    let error = match Campaign::load(path) {
        Ok(campaign) => return Ok(campaign),
        Err(e @ crate::campaign::CampaignError::BodyNotSynced { .. }) => e,
        Err(e) => return Err(e.into()),
    };
    let crate::campaign::CampaignError::BodyNotSynced { name, language, .. } = &error else {
        return Err(error.into());
    };
    let stand_in = for_provider(path)?;
    let Some((_, Some(cache))) = cache_for(ctx, &stand_in, args, false)? else {
        return Err(error.into());
    };
    let Some(body) = cache
        .find(name, language)
        .and_then(SyncedTemplate::body_text)
    else {
        return Err(error.into());
    };
    Ok(Campaign::load_with_body(path, Some(body))?)
}

/// A campaign file read for its provider and account only (`templates sync`,
/// `list`, `show`, `import`): one that leaves `template.body` out, waiting for the
/// sync, stands in a body made of its variables, which nothing sends or checks.
pub(crate) fn for_provider(path: &std::path::Path) -> anyhow::Result<Campaign> {
    match Campaign::load(path) {
        Err(error @ crate::campaign::CampaignError::BodyNotSynced { .. }) => {
            let table: Option<toml::Table> = std::fs::read_to_string(path)
                .ok()
                .and_then(|t| t.parse().ok());
            let mut keys: Vec<String> = table
                .as_ref()
                .and_then(|t| t.get("template")?.get("variables")?.as_table().cloned())
                .map(|v| v.keys().cloned().collect())
                .unwrap_or_default();
            keys.sort_by_key(|k| (k.parse::<u32>().unwrap_or(u32::MAX), k.clone()));
            let stand_in = if keys.is_empty() {
                "-".to_owned()
            } else {
                keys.iter()
                    .map(|k| format!("{{{{{k}}}}}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            Campaign::load_with_body(path, Some(&stand_in)).map_err(|_| error.into())
        }
        other => Ok(other?),
    }
}
