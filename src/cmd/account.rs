//! `wacampaign account`: the sending number's messaging limit, throughput, quality
//! rating and display-name status, read from the Cloud API and cached.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use serde::Serialize;

use crate::account::{self, DEPRECATED_LIMIT_FIELD, PhoneAccount};
use crate::campaign::ProviderConfig;
use crate::cmd::Context;
use crate::db::Db;
use crate::exit_codes::Exit;
use crate::messaging_limit::{self, Limit};
use crate::secret::Secret;
use crate::ui::json_line;

/// Show the sending number's messaging limit, throughput, quality rating and name
/// status, and how much of the limit campaigns used in the last 24 hours.
///
/// Asks the Cloud API (GET /{phone-number-id}) with the campaign's token and keeps
/// the answer in the database: `send` holds each run to that limit (the number of
/// unique people the business portfolio may reach outside a customer-service window
/// in a rolling 24 h), deferring whoever does not fit. Until this has run, or when
/// Meta's answer gives no limit, `send` holds to the lowest tier, 250, with a
/// warning. With --offline, shows what was last read without asking.
///
/// Twilio and the simulator have no such call: set sending.messaging_limit in the
/// campaign file (or WACAMPAIGN_MESSAGING_LIMIT).
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  wacampaign account campaigns/promotion.toml
  wacampaign account campaigns/promotion.toml --offline
  wacampaign account campaigns/promotion.toml --json

The limit is read from whatsapp_business_manager_messaging_limit; the deprecated
messaging_limit_tier is used only when that is missing, and said so.")]
pub struct Args {
    /// The campaign file whose provider names the number (TOML).
    #[arg(value_name = "CAMPAIGN.toml")]
    pub campaign: PathBuf,
    /// Show what was last read, without asking the Cloud API.
    #[arg(long)]
    pub offline: bool,
}

#[derive(Serialize)]
struct Shown<'a> {
    account: &'a PhoneAccount,
    /// People reached outside a window in the last 24 h (with sending.messaging_limit_other).
    used_last_24h: Option<u64>,
    remaining: Option<u64>,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Exit> {
    let campaign = crate::cmd::templates::for_provider(&args.campaign)?;
    let Some(key) = account::key_of(&campaign) else {
        bail!(
            "{}: a {} campaign has no phone-number account to read; set sending.messaging_limit \
             in the campaign file (or WACAMPAIGN_MESSAGING_LIMIT) to the portfolio's limit",
            args.campaign.display(),
            campaign.provider.kind()
        );
    };
    let db = Db::open(&ctx.db)?;
    let now = crate::clock::now_string();
    let shown = if args.offline {
        account::load(&db.conn, &key)?.with_context(|| {
            format!(
                "nothing read yet for {}; run `wacampaign account {}` without --offline",
                key,
                args.campaign.display()
            )
        })?
    } else {
        let ProviderConfig::CloudApi { token, .. } = &campaign.provider else {
            unreachable!("key_of answers only for cloud_api");
        };
        let secret = Secret::load(token)?;
        let (read, answer) = account::fetch(&campaign, &secret, &now)?;
        account::store(&db.conn, &key, &read, &answer).context("caching the account")?;
        read
    };
    if shown.limit_source.as_deref() == Some(DEPRECATED_LIMIT_FIELD) {
        ctx.ui.warn(format!(
            "the answer has no whatsapp_business_manager_messaging_limit: the limit shown is the \
             deprecated {DEPRECATED_LIMIT_FIELD}, which may not be the portfolio's"
        ));
    }
    if shown.messaging_limit.is_none() {
        ctx.ui.warn(format!(
            "the answer gives no messaging limit: `send` holds to Meta's lowest tier, {} people \
             per 24 h; set sending.messaging_limit if you know it",
            messaging_limit::LOWEST_TIER
        ));
    }
    let limit = shown
        .messaging_limit
        .unwrap_or(Limit::Users(messaging_limit::LOWEST_TIER));
    let usage = match limit {
        Limit::Users(n) => Some(messaging_limit::usage(
            &db.conn,
            n,
            campaign.sending.messaging_limit_other,
            crate::clock::now(),
        )?),
        Limit::Unlimited => None,
    };
    if ctx.ui.json {
        json_line(
            "account",
            &Shown {
                account: &shown,
                used_last_24h: usage.as_ref().map(|u| u.used),
                remaining: usage.as_ref().map(|u| u.remaining()),
            },
        )?;
        return Ok(Exit::Success);
    }
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{}",
        ctx.ui.bold(&format!(
            "{} {}",
            dash(&shown.display_phone),
            shown.verified_name.as_deref().unwrap_or("")
        ))
    )?;
    writeln!(
        out,
        "  messaging limit   {}",
        match (&shown.messaging_limit, &shown.limit_source) {
            (Some(l), Some(from)) => format!("{l} people per 24 h (from {from})"),
            _ => format!(
                "unknown (held to {} people per 24 h)",
                messaging_limit::LOWEST_TIER
            ),
        }
    )?;
    if let Some(usage) = &usage {
        writeln!(
            out,
            "  used, last 24 h   {} ({} remaining)",
            usage.used,
            usage.remaining()
        )?;
    }
    writeln!(out, "  throughput        {}", dash(&shown.throughput))?;
    writeln!(out, "  quality rating    {}", dash(&shown.quality_rating))?;
    writeln!(out, "  name status       {}", dash(&shown.name_status))?;
    writeln!(out, "  read at           {}", shown.fetched_at)?;
    Ok(Exit::Success)
}
