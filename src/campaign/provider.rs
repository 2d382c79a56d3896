//! The `[provider]` section: which API sends the messages and how to reach it.
//!
//! Kept apart from the rest of the campaign file because it is most of the file's
//! rules (one set per provider) and the only part that names credentials.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::error::{CampaignError, Locate};

pub const DEFAULT_API_VERSION: &str = "v23.0";
pub const DEFAULT_GRAPH_URL: &str = "https://graph.facebook.com";
pub const DEFAULT_TWILIO_URL: &str = "https://api.twilio.com";
pub const DEFAULT_TWILIO_CONTENT_URL: &str = "https://content.twilio.com";

/// Credentials: never a literal, always where to find one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// The environment variable holding the secret.
    pub env: String,
    /// A file holding the secret, readable by its owner only; used when set.
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub enum ProviderConfig {
    CloudApi {
        phone_number_id: String,
        api_version: String,
        base_url: String,
        token: SecretRef,
        /// How long one request may take before its outcome is in doubt.
        timeout: std::time::Duration,
        /// The WhatsApp Business Account whose templates `templates sync` reads and
        /// pre-flight holds the campaign against.
        waba_id: Option<String>,
    },
    Twilio(TwilioConfig),
    Simulator(SimulatorConfig),
}

impl ProviderConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderConfig::CloudApi { .. } => "cloud_api",
            ProviderConfig::Twilio(_) => "twilio",
            ProviderConfig::Simulator(_) => "simulator",
        }
    }
}

/// Twilio's Messages API for WhatsApp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioConfig {
    /// The account SID (`AC...`) when the file gives it; it is an identifier, not a secret.
    pub account_sid: Option<String>,
    /// The environment variable with the account SID otherwise.
    pub account_sid_env: String,
    pub auth_token_env: String,
    pub api_key_sid_env: String,
    pub api_key_secret_env: String,
    pub sender: TwilioSender,
    pub base_url: String,
    /// Twilio's Content API, where `templates sync` reads the account's templates.
    pub content_base_url: String,
    pub timeout: std::time::Duration,
    pub status_callback: Option<String>,
}

/// Who the messages come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TwilioSender {
    /// The WhatsApp sender's number.
    From(crate::phone::E164),
    /// A Messaging Service (`MG...`) that picks the sender.
    MessagingService(String),
}

/// The built-in simulator's behaviour: seeded, so a run is repeatable.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulatorConfig {
    pub seed: u64,
    /// Typical answer time; each reply varies around it.
    pub latency_ms: u64,
    /// Share of recipients whose number is not on WhatsApp (131026).
    pub undeliverable_rate: f64,
    /// Share of recipients who stopped marketing messages (131050).
    pub opt_out_rate: f64,
    /// Answer 429 to this many requests in a row once, to show throttling.
    pub throttle_burst: u32,
    /// A saved `message_templates` answer: the templates the simulator's account
    /// holds, which `templates sync` reads as it would read Meta's.
    pub templates: Option<PathBuf>,
}

// ---- the section as serde reads it ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvider {
    kind: Spanned<String>,
    phone_number_id: Option<Spanned<String>>,
    waba_id: Option<Spanned<String>>,
    api_version: Option<String>,
    base_url: Option<Spanned<String>>,
    token_env: Option<String>,
    token_file: Option<String>,
    timeout_ms: Option<Spanned<u64>>,
    // twilio
    account_sid: Option<Spanned<String>>,
    account_sid_env: Option<String>,
    auth_token_env: Option<String>,
    api_key_sid_env: Option<String>,
    api_key_secret_env: Option<String>,
    from: Option<Spanned<String>>,
    messaging_service_sid: Option<Spanned<String>>,
    status_callback: Option<Spanned<String>>,
    content_base_url: Option<Spanned<String>>,
    // Declared only so a secret pasted into the file gets a tailored error.
    token: Option<Spanned<toml::Value>>,
    access_token: Option<Spanned<toml::Value>>,
    auth_token: Option<Spanned<toml::Value>>,
    api_key_secret: Option<Spanned<toml::Value>>,
    // simulator
    seed: Option<u64>,
    latency_ms: Option<u64>,
    undeliverable_rate: Option<Spanned<f64>>,
    opt_out_rate: Option<Spanned<f64>>,
    throttle_burst: Option<u32>,
    templates: Option<String>,
}

/// Validates the `[provider]` section; a token file is found relative to `base_dir`,
/// the campaign file's directory.
pub(super) fn build_provider(
    raw: &RawProvider,
    base_dir: &Path,
    at: &Locate<'_>,
) -> Result<ProviderConfig, CampaignError> {
    if let Some(secret) = raw.auth_token.as_ref().or(raw.api_key_secret.as_ref()) {
        return Err(at(
            secret.span(),
            "Twilio credentials do not belong in the campaign file; put them in the environment \
             variables TWILIO_AUTH_TOKEN (with TWILIO_ACCOUNT_SID) or TWILIO_API_KEY_SID and \
             TWILIO_API_KEY_SECRET, or name others with provider.auth_token_env, \
             provider.api_key_sid_env and provider.api_key_secret_env"
                .into(),
        ));
    }
    if let Some(secret) = raw.token.as_ref().or(raw.access_token.as_ref()) {
        return Err(at(
            secret.span(),
            "a token does not belong in the campaign file (it would end up in version control \
             and backups); put it in the environment variable named by provider.token_env \
             (default WHATSAPP_TOKEN) or in a file readable only by you, named by provider.token_file"
                .into(),
        ));
    }
    let secret = |default_env: &str| SecretRef {
        env: raw
            .token_env
            .clone()
            .unwrap_or_else(|| default_env.to_owned()),
        file: raw.token_file.as_ref().map(|f| base_dir.join(f)),
    };
    match raw.kind.get_ref().as_str() {
        "cloud_api" => {
            let phone_number_id = raw.phone_number_id.as_ref().ok_or_else(|| {
                at(
                    raw.kind.span(),
                    "provider.phone_number_id is required for cloud_api: the ID of your business \
                     phone number in WhatsApp Manager (not the phone number itself)"
                        .into(),
                )
            })?;
            let id = phone_number_id.get_ref().trim();
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(at(
                    phone_number_id.span(),
                    format!(
                        "provider.phone_number_id `{id}`: expected the numeric phone number ID from WhatsApp Manager"
                    ),
                ));
            }
            let base_url = match &raw.base_url {
                Some(url) => validate_url(url, at)?,
                None => DEFAULT_GRAPH_URL.to_owned(),
            };
            let waba_id = raw
                .waba_id
                .as_ref()
                .map(|w| {
                    let id = w.get_ref().trim();
                    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
                        Err(at(
                            w.span(),
                            format!(
                                "provider.waba_id `{id}`: expected the numeric WhatsApp Business \
                                 Account ID (WhatsApp Manager > Account tools > Phone numbers)"
                            ),
                        ))
                    } else {
                        Ok(id.to_owned())
                    }
                })
                .transpose()?;
            Ok(ProviderConfig::CloudApi {
                waba_id,
                timeout: timeout(raw, at)?,
                phone_number_id: id.to_owned(),
                api_version: raw
                    .api_version
                    .clone()
                    .unwrap_or_else(|| DEFAULT_API_VERSION.to_owned()),
                base_url,
                token: secret("WHATSAPP_TOKEN"),
            })
        }
        "twilio" => build_twilio(raw, at),
        "simulator" => {
            let rate = |r: &Option<Spanned<f64>>, name: &str, default: f64| match r {
                Some(r) if !(0.0..=1.0).contains(r.get_ref()) => Err(at(
                    r.span(),
                    format!("provider.{name} must be a share between 0.0 and 1.0"),
                )),
                Some(r) => Ok(*r.get_ref()),
                None => Ok(default),
            };
            Ok(ProviderConfig::Simulator(SimulatorConfig {
                seed: raw.seed.unwrap_or(42),
                latency_ms: raw.latency_ms.unwrap_or(120),
                undeliverable_rate: rate(&raw.undeliverable_rate, "undeliverable_rate", 0.02)?,
                opt_out_rate: rate(&raw.opt_out_rate, "opt_out_rate", 0.01)?,
                throttle_burst: raw.throttle_burst.unwrap_or(0),
                templates: raw.templates.as_ref().map(|t| base_dir.join(t)),
            }))
        }
        other => Err(at(
            raw.kind.span(),
            format!("provider.kind `{other}`: expected \"cloud_api\", \"twilio\" or \"simulator\""),
        )),
    }
}

/// A Twilio identifier: two letters naming its kind, then 32 hexadecimal digits.
pub(super) fn sid(
    value: &Spanned<String>,
    prefix: &str,
    key: &str,
    at: &Locate<'_>,
) -> Result<String, CampaignError> {
    let text = value.get_ref().trim();
    let valid = text.len() == 34
        && text.starts_with(prefix)
        && text[2..].bytes().all(|b| b.is_ascii_hexdigit());
    if valid {
        Ok(text.to_owned())
    } else {
        Err(at(
            value.span(),
            format!(
                "{key} `{text}`: expected {prefix} followed by 32 hexadecimal digits, as the Twilio Console shows it"
            ),
        ))
    }
}

fn build_twilio(raw: &RawProvider, at: &Locate<'_>) -> Result<ProviderConfig, CampaignError> {
    let account_sid = raw
        .account_sid
        .as_ref()
        .map(|s| sid(s, "AC", "provider.account_sid", at))
        .transpose()?;
    let sender = match (&raw.from, &raw.messaging_service_sid) {
        (Some(from), None) => {
            let text = from.get_ref().trim();
            let number = text.strip_prefix("whatsapp:").unwrap_or(text);
            let phone = crate::phone::E164::normalize(number, None).map_err(|e| {
                at(
                    from.span(),
                    format!("provider.from: {e}; write the WhatsApp sender in E.164, e.g. \"+14155238886\""),
                )
            })?;
            TwilioSender::From(phone)
        }
        (None, Some(service)) => TwilioSender::MessagingService(sid(
            service,
            "MG",
            "provider.messaging_service_sid",
            at,
        )?),
        _ => {
            return Err(at(
                raw.kind.span(),
                "twilio needs exactly one sender: provider.from (the WhatsApp sender's number) or \
                 provider.messaging_service_sid (MG...)"
                    .into(),
            ));
        }
    };
    let base_url = match &raw.base_url {
        Some(url) => validate_url(url, at)?,
        None => DEFAULT_TWILIO_URL.to_owned(),
    };
    let status_callback = match &raw.status_callback {
        Some(url) => Some(validate_url(url, at)?),
        None => None,
    };
    Ok(ProviderConfig::Twilio(TwilioConfig {
        account_sid,
        account_sid_env: raw
            .account_sid_env
            .clone()
            .unwrap_or_else(|| "TWILIO_ACCOUNT_SID".to_owned()),
        auth_token_env: raw
            .auth_token_env
            .clone()
            .unwrap_or_else(|| "TWILIO_AUTH_TOKEN".to_owned()),
        api_key_sid_env: raw
            .api_key_sid_env
            .clone()
            .unwrap_or_else(|| "TWILIO_API_KEY_SID".to_owned()),
        api_key_secret_env: raw
            .api_key_secret_env
            .clone()
            .unwrap_or_else(|| "TWILIO_API_KEY_SECRET".to_owned()),
        sender,
        base_url,
        content_base_url: match &raw.content_base_url {
            Some(url) => validate_url(url, at)?,
            None => DEFAULT_TWILIO_CONTENT_URL.to_owned(),
        },
        timeout: timeout(raw, at)?,
        status_callback,
    }))
}

fn timeout(raw: &RawProvider, at: &Locate<'_>) -> Result<std::time::Duration, CampaignError> {
    match &raw.timeout_ms {
        Some(t) if !(100..=300_000).contains(t.get_ref()) => Err(at(
            t.span(),
            "provider.timeout_ms must be between 100 and 300000".into(),
        )),
        Some(t) => Ok(std::time::Duration::from_millis(*t.get_ref())),
        None => Ok(std::time::Duration::from_secs(30)),
    }
}

fn validate_url(url: &Spanned<String>, at: &Locate<'_>) -> Result<String, CampaignError> {
    let value = url.get_ref().trim().trim_end_matches('/');
    let parsed = reqwest::Url::parse(value).map_err(|e| {
        at(
            url.span(),
            format!("provider.base_url `{value}` is not a URL: {e}"),
        )
    })?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(at(
            url.span(),
            format!("provider.base_url `{value}`: use an https:// URL"),
        ));
    }
    // Credentials in the URL would be sent in place of the token and printed with
    // every error that names the URL; the URL is not shown here for the same reason.
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(at(
            url.span(),
            "this URL holds a user name or password (`user:pass@`): remove them; a proxy's \
             credentials go in HTTPS_PROXY, the token in its environment variable"
                .to_owned(),
        ));
    }
    Ok(value.to_owned())
}
