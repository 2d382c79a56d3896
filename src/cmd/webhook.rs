//! `wacampaign webhook serve`: receive Meta's and Twilio's webhooks.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use serde::Serialize;

use crate::cmd::Context;
use crate::db::Db;
use crate::exit_codes::Exit;
use crate::secret::Secret;
use crate::ui::json_line;
use crate::webhook::server::{Limits, MetaConfig, TwilioConfig};
use crate::webhook::{self, HEALTH_PATH, META_PATH, OptOutRules, ServerConfig, TWILIO_PATH};

/// Receive delivery statuses, replies and opt-outs from Meta and Twilio.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  WHATSAPP_APP_SECRET=... WHATSAPP_VERIFY_TOKEN=... wacampaign webhook serve
  wacampaign --db /var/lib/wacampaign/wacampaign.db webhook serve --listen 127.0.0.1:8088")]
pub struct Args {
    #[command(subcommand)]
    pub command: WebhookCommand,
}

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    Serve(ServeArgs),
}

/// Serve webhooks over plain HTTP, behind a TLS-terminating proxy.
///
/// Paths: `GET /webhook/meta` answers Meta's verification handshake; `POST
/// /webhook/meta` takes Meta's signed events; `POST /webhook/twilio` takes Twilio's
/// signed status callbacks and incoming messages; `GET /healthz` answers `ok`.
///
/// Meta is enabled when the app secret is in the environment, Twilio when its auth
/// token is and --public-url is given. Requests with a bad or missing signature are
/// refused (401) and record nothing. Every signed body is recorded once in the
/// database (--db) before it is answered; delivery statuses resolve messages held in
/// doubt, replies such as STOP record opt-outs in the consent ledger, and every
/// message a person sends opens their 24-hour customer-service window.
///
/// Opt-out keywords are recognised without configuration in English (every TCPA
/// revocation word, REVOKE included), Spanish, Portuguese, Hindi (Latin and
/// Devanagari), Indonesian, Arabic, Turkish, German, French, Italian and Russian,
/// after NFKC and case folding, Latin accents ignored (the README lists them). A
/// reply that only reads like one ("please stop") is kept as a possible opt-out that
/// `wacampaign status` lists for a person to decide.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  WHATSAPP_APP_SECRET=... WHATSAPP_VERIFY_TOKEN=... wacampaign webhook serve
  wacampaign webhook serve --listen 127.0.0.1:8088 --opt-out-keyword basta
  TWILIO_AUTH_TOKEN=... wacampaign webhook serve --public-url https://hooks.example.com/webhook/twilio

Limits: at most --max-connections connections are open at once (more wait to be
accepted); a request's headers must arrive within --header-timeout and its body
within --body-timeout, or the connection is closed. The defaults fit systemd's
default limit of 1,024 open files.

Stops on Ctrl-C or SIGTERM: stops accepting, closes idle connections, answers 503
to requests whose body is still arriving, waits up to --shutdown-grace for
deliveries being recorded, and answers 503 to any still waiting, so the provider
sends them again. Nothing is answered 200 before it is in the database.")]
pub struct ServeArgs {
    /// Address to listen on (plain HTTP; put a TLS-terminating proxy in front).
    #[arg(
        long,
        default_value = "127.0.0.1:8088",
        env = "WACAMPAIGN_WEBHOOK_LISTEN",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,
    /// Environment variable holding Meta's app secret, which signs every POST.
    #[arg(long, default_value = "WHATSAPP_APP_SECRET", value_name = "NAME")]
    pub app_secret_env: String,
    /// Environment variable holding the verify token given to Meta for the handshake.
    #[arg(long, default_value = "WHATSAPP_VERIFY_TOKEN", value_name = "NAME")]
    pub verify_token_env: String,
    /// Environment variable holding Twilio's auth token, which signs every request.
    #[arg(long, default_value = "TWILIO_AUTH_TOKEN", value_name = "NAME")]
    pub twilio_token_env: String,
    /// The Twilio webhook's public URL exactly as configured in Twilio (Twilio signs
    /// it); a bare origin such as https://hooks.example.com means
    /// https://hooks.example.com/webhook/twilio.
    #[arg(long, env = "WACAMPAIGN_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// A reply that opts out of all messages, besides the built-in keywords (STOP,
    /// REVOKE, BAJA, SAIR, BAND KARO, बंद, BERHENTI, توقف, İPTAL, STOPP, ARRÊT,
    /// DISISCRIVIMI, СТОП...); repeat, or give a comma list.
    #[arg(
        long = "opt-out-keyword",
        env = "WACAMPAIGN_OPT_OUT_KEYWORDS",
        value_delimiter = ',',
        value_name = "WORD"
    )]
    pub opt_out_keywords: Vec<String>,
    /// A quick-reply button payload that opts out, besides STOP; repeat for more.
    #[arg(long = "opt-out-payload", value_name = "PAYLOAD")]
    pub opt_out_payloads: Vec<String>,
    /// Days to keep raw webhook bodies (they hold people's messages); their hashes
    /// stay so late retries are still recognised. 0 keeps them.
    #[arg(long, default_value_t = 30, value_name = "DAYS")]
    pub keep_bodies_days: u32,
    /// Connections open at once; beyond it, new connections wait in the kernel's
    /// backlog until one closes. Keep it well under the open-file limit (ulimit -n,
    /// systemd's LimitNOFILE).
    #[arg(
        long,
        default_value_t = Limits::DEFAULT_MAX_CONNECTIONS,
        env = "WACAMPAIGN_WEBHOOK_MAX_CONNECTIONS",
        value_parser = clap::value_parser!(u32).range(1..),
        value_name = "N"
    )]
    pub max_connections: u32,
    /// Seconds a request's headers may take to arrive, and an idle keep-alive
    /// connection may wait for its next request, before the connection is closed.
    #[arg(
        long,
        default_value = "10",
        env = "WACAMPAIGN_WEBHOOK_HEADER_TIMEOUT",
        value_parser = seconds,
        value_name = "SECONDS"
    )]
    pub header_timeout: Duration,
    /// Seconds a request's whole body may take to arrive after its headers; a
    /// slower one is answered 408 and its connection closed.
    #[arg(
        long,
        default_value = "30",
        env = "WACAMPAIGN_WEBHOOK_BODY_TIMEOUT",
        value_parser = seconds,
        value_name = "SECONDS"
    )]
    pub body_timeout: Duration,
    /// On Ctrl-C or SIGTERM, seconds to wait for deliveries being recorded before
    /// answering them 503 and exiting. Keep it under systemd's TimeoutStopSec.
    #[arg(
        long,
        default_value = "10",
        env = "WACAMPAIGN_WEBHOOK_SHUTDOWN_GRACE",
        value_parser = seconds,
        value_name = "SECONDS"
    )]
    pub shutdown_grace: Duration,
}

/// A positive number of seconds, fractions allowed (`0.5`).
fn seconds(value: &str) -> Result<Duration, String> {
    let parsed: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("`{value}` is not a number of seconds; give e.g. 10 or 0.5"))?;
    if !(parsed > 0.0 && parsed <= 86_400.0) {
        return Err(format!(
            "`{value}` is out of range; give a number of seconds above 0 and at most 86400"
        ));
    }
    Ok(Duration::from_secs_f64(parsed))
}

#[derive(Debug, Serialize)]
struct Listening<'a> {
    address: String,
    meta: Option<&'a str>,
    twilio: Option<&'a str>,
    twilio_signed_url: Option<&'a str>,
    database: String,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<Exit> {
    match &args.command {
        WebhookCommand::Serve(serve) => run_serve(ctx, serve),
    }
}

/// The server's configuration from the arguments and the environment; refuses a
/// server that could accept nothing.
pub fn config(args: &ServeArgs, ui: &crate::ui::Ui) -> anyhow::Result<ServerConfig> {
    let env_secret = |name: &str| -> anyhow::Result<Option<Secret>> {
        match std::env::var(name) {
            Ok(value) if !value.trim().is_empty() => Ok(Some(Secret::new(
                value.trim(),
                &format!("environment variable {name}"),
            )?)),
            _ => Ok(None),
        }
    };
    let meta = match env_secret(&args.app_secret_env)? {
        Some(app_secret) => {
            let verify_token = env_secret(&args.verify_token_env)?;
            if verify_token.is_none() {
                ui.warn(format!(
                    "{} is not set: Meta's verification handshake (GET {META_PATH}) will be refused",
                    args.verify_token_env
                ));
            }
            Some(MetaConfig {
                app_secret,
                verify_token,
            })
        }
        None => None,
    };
    let twilio = match (env_secret(&args.twilio_token_env)?, &args.public_url) {
        (Some(auth_token), Some(url)) => Some(TwilioConfig {
            auth_token,
            public_url: twilio_url(url)?,
        }),
        (Some(_), None) => bail!(
            "{} is set but --public-url is not: Twilio signs the URL it calls, which this \
             server cannot see behind a proxy; pass the URL configured in Twilio, e.g. \
             --public-url https://hooks.example.com{TWILIO_PATH}",
            args.twilio_token_env
        ),
        (None, Some(_)) => bail!(
            "--public-url is for Twilio, but {} is not set: export the account's auth token there",
            args.twilio_token_env
        ),
        (None, None) => None,
    };
    if meta.is_none() && twilio.is_none() {
        bail!(
            "nothing to serve: export Meta's app secret in {} (and the verify token in {}), \
             or Twilio's auth token in {} and pass --public-url",
            args.app_secret_env,
            args.verify_token_env,
            args.twilio_token_env
        );
    }
    Ok(ServerConfig {
        meta,
        twilio,
        rules: OptOutRules::new(&args.opt_out_keywords, &args.opt_out_payloads),
        keep_bodies: (args.keep_bodies_days > 0)
            .then(|| chrono::Duration::days(i64::from(args.keep_bodies_days))),
        limits: Limits {
            max_connections: args.max_connections,
            header_timeout: args.header_timeout,
            body_timeout: args.body_timeout,
            shutdown_grace: args.shutdown_grace,
        },
    })
}

/// The URL Twilio signs: as given, or with the default path when only an origin is.
fn twilio_url(url: &str) -> anyhow::Result<String> {
    let url = url.trim();
    let Some((scheme, rest)) = url.split_once("://") else {
        bail!("--public-url `{url}` is not a URL; give it as https://host/path");
    };
    if !matches!(scheme, "http" | "https") || rest.is_empty() {
        bail!("--public-url `{url}` must start with https:// (or http://)");
    }
    if url.contains('?') {
        bail!("--public-url `{url}` must not have a query; the query of each request is added");
    }
    Ok(match rest.find('/') {
        None => format!("{url}{TWILIO_PATH}"),
        Some(i) if rest[i..] == *"/" => format!("{}{TWILIO_PATH}", url.trim_end_matches('/')),
        Some(_) => url.to_owned(),
    })
}

fn run_serve(ctx: &Context, args: &ServeArgs) -> anyhow::Result<Exit> {
    let config = config(args, &ctx.ui)?;
    let db = Db::open(&ctx.db)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let tally = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let address = listener.local_addr()?;
        let listening = Listening {
            address: address.to_string(),
            meta: config.meta.as_ref().map(|_| META_PATH),
            twilio: config.twilio.as_ref().map(|_| TWILIO_PATH),
            twilio_signed_url: config.twilio.as_ref().map(|t| t.public_url.as_str()),
            database: ctx.db.display().to_string(),
        };
        if ctx.ui.json {
            json_line("listening", &listening)?;
        } else {
            let mut paths = Vec::new();
            if config.meta.is_some() {
                paths.push(format!("Meta at {META_PATH}"));
            }
            if let Some(twilio) = &config.twilio {
                paths.push(format!(
                    "Twilio at {TWILIO_PATH} (signed for {})",
                    twilio.public_url
                ));
            }
            ctx.ui.info(format!(
                "listening on http://{address}: {}; health at {HEALTH_PATH}; recording into {}",
                paths.join(", "),
                ctx.db.display()
            ));
        }
        webhook::serve(listener, config, db, ctx.ui.clone(), shutdown_signal()).await
    })?;
    if ctx.ui.json {
        json_line("webhook_summary", &tally)?;
    } else {
        ctx.ui.info(format!(
            "stopped: {} deliveries recorded ({} events), {} duplicates ignored, {} refused, \
             {} unreadable kept, {} failed (sent again by the provider), {} in-doubt rows resolved",
            tally.recorded,
            tally.events,
            tally.duplicates,
            tally.rejected,
            tally.unreadable,
            tally.failed,
            tally.resolved_in_doubt
        ));
    }
    Ok(Exit::Success)
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_origin_means_the_default_twilio_path() {
        assert_eq!(
            twilio_url("https://hooks.example.com").unwrap(),
            "https://hooks.example.com/webhook/twilio"
        );
        assert_eq!(
            twilio_url("https://hooks.example.com/").unwrap(),
            "https://hooks.example.com/webhook/twilio"
        );
        assert_eq!(
            twilio_url("https://example.com/wa/twilio").unwrap(),
            "https://example.com/wa/twilio"
        );
        assert!(twilio_url("hooks.example.com").is_err());
        assert!(twilio_url("https://example.com/t?x=1").is_err());
    }

    #[test]
    fn timeouts_are_positive_seconds() {
        assert_eq!(seconds("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(seconds("10"), Ok(Duration::from_secs(10)));
        for bad in ["0", "-1", "NaN", "inf", "1e9", "ten"] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
    }
}
