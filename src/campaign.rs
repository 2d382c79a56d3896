//! The campaign file: one TOML file describes one campaign.
//!
//! Parsing happens in two steps, as ripgrep and just do: serde reads the file into
//! raw sections (which catches unknown keys, wrong types and missing keys with their
//! line and column), then [`Campaign::load`] turns them into a validated [`Campaign`]
//! whose every remaining problem is reported before anything is read or sent.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use thiserror::Error;
use toml::Spanned;

use crate::consent::Purpose;
pub use crate::contacts::{ContactsSource, Encoding};
use crate::phone::DefaultRegion;
use crate::template::{PlaceholderKey, Template};

pub const DEFAULT_API_VERSION: &str = "v23.0";
pub const DEFAULT_GRAPH_URL: &str = "https://graph.facebook.com";
pub const DEFAULT_TWILIO_URL: &str = "https://api.twilio.com";
/// Meta's default throughput for a business phone number.
pub const DEFAULT_RATE_PER_SECOND: u32 = 80;
pub const DEFAULT_CONCURRENCY: usize = 32;
/// Meta's highest throughput tier for one number; a higher rate is a typo.
pub const MAX_RATE_PER_SECOND: u32 = 1000;

/// A problem in the campaign file, located where the file allows it.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CampaignError {
    #[error("cannot read campaign file {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// Malformed TOML, an unknown key, a wrong type or a missing key; toml's message
    /// already names the line, the column and what was expected.
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
}

/// What the messages are for; it is also the consent purpose they need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Marketing,
    Utility,
    Authentication,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Marketing => "marketing",
            Category::Utility => "utility",
            Category::Authentication => "authentication",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of message a campaign sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// An approved template: allowed whenever the contact opted in.
    #[default]
    Template,
    /// Free-form text: only inside the 24-hour customer-service window that the
    /// contact's own last message opened.
    Session,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Template => "template",
            MessageKind::Session => "session",
        }
    }

    /// The longest rendered body the platform accepts.
    pub fn max_body_chars(self) -> usize {
        match self {
            MessageKind::Template => crate::template::MAX_BODY_CHARS,
            MessageKind::Session => crate::template::MAX_TEXT_CHARS,
        }
    }
}

/// Where a placeholder's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueSource {
    /// A CSV column, with an optional default for empty cells.
    Column {
        column: String,
        default: Option<String>,
    },
    /// The same value for every contact.
    Fixed(String),
}

/// The approved template and how each placeholder is filled.
#[derive(Debug, Clone)]
pub struct TemplateSpec {
    pub name: String,
    pub language: String,
    pub body: Template,
    /// One source per placeholder, in [`Template::placeholders`] order.
    pub sources: Vec<ValueSource>,
    /// Twilio's Content Template SID (`HX...`) for the approved template.
    pub content_sid: Option<String>,
}

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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sending {
    pub rate_per_second: u32,
    pub concurrency: usize,
}

/// A validated campaign.
#[derive(Debug, Clone)]
pub struct Campaign {
    pub file: PathBuf,
    pub id: String,
    pub kind: MessageKind,
    pub description: Option<String>,
    pub category: Category,
    pub contacts: ContactsSource,
    pub template: TemplateSpec,
    pub provider: ProviderConfig,
    pub sending: Sending,
}

// ---- the file as serde reads it ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    campaign: RawCampaign,
    template: RawTemplate,
    provider: RawProvider,
    #[serde(default)]
    sending: RawSending,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCampaign {
    id: Option<Spanned<String>>,
    description: Option<String>,
    category: Category,
    contacts: Spanned<String>,
    phone_column: Spanned<String>,
    default_region: Option<Spanned<String>>,
    delimiter: Option<Spanned<String>>,
    #[serde(default)]
    encoding: Encoding,
    #[serde(default)]
    kind: MessageKind,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplate {
    name: Option<Spanned<String>>,
    language: Option<Spanned<String>>,
    body: Spanned<String>,
    content_sid: Option<Spanned<String>>,
    #[serde(default)]
    variables: BTreeMap<Spanned<String>, Spanned<RawVariable>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariable {
    column: Option<String>,
    value: Option<String>,
    default: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    kind: Spanned<String>,
    phone_number_id: Option<Spanned<String>>,
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
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSending {
    rate_per_second: Option<Spanned<u32>>,
    concurrency: Option<Spanned<usize>>,
}

impl Campaign {
    /// Reads and validates a campaign file. Relative paths inside it are resolved
    /// against the file's own directory.
    pub fn load(path: &Path) -> Result<Campaign, CampaignError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CampaignError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Validates campaign text as if it were read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Campaign, CampaignError> {
        let shown = path.display().to_string();
        let raw: RawFile = toml::from_str(text).map_err(|e| CampaignError::Syntax {
            path: shown.clone(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let at = |span: std::ops::Range<usize>, message: String| {
            let (line, column) = line_column(text, span.start);
            CampaignError::Invalid {
                path: shown.clone(),
                line,
                column,
                message,
            }
        };
        let base_dir = path.parent().unwrap_or_else(|| Path::new(""));

        let id = match &raw.campaign.id {
            Some(id) => {
                validate_id(id.get_ref())
                    .map_err(|m| at(id.span(), format!("campaign.id: {m}")))?;
                id.get_ref().clone()
            }
            None => {
                let stem = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                validate_id(&stem).map_err(|m| {
                    at(
                        0..0,
                        format!(
                            "the file name gives the campaign id `{stem}`, but {m}; set campaign.id"
                        ),
                    )
                })?;
                stem
            }
        };

        let default_region = raw
            .campaign
            .default_region
            .as_ref()
            .map(|r| {
                r.get_ref()
                    .parse::<DefaultRegion>()
                    .map_err(|m| at(r.span(), format!("campaign.default_region: {m}")))
            })
            .transpose()?;
        let delimiter = raw
            .campaign
            .delimiter
            .as_ref()
            .map(|d| {
                parse_delimiter(d.get_ref()).ok_or_else(|| {
                    at(
                        d.span(),
                        format!(
                            "campaign.delimiter: `{}` is not a delimiter; use \",\", \";\", \"\\t\" or \"|\"",
                            d.get_ref()
                        ),
                    )
                })
            })
            .transpose()?;
        let phone_column = raw.campaign.phone_column.get_ref().trim().to_owned();
        if phone_column.is_empty() {
            return Err(at(
                raw.campaign.phone_column.span(),
                "campaign.phone_column is empty; name the CSV column that holds phone numbers"
                    .into(),
            ));
        }
        let contacts = ContactsSource {
            path: base_dir.join(raw.campaign.contacts.get_ref()),
            phone_column,
            delimiter,
            encoding: raw.campaign.encoding,
            default_region,
        };

        let kind = raw.campaign.kind;
        let template = build_template(&raw.template, kind, &at)?;
        let provider = build_provider(&raw.provider, base_dir, &at)?;
        if kind == MessageKind::Template
            && matches!(provider, ProviderConfig::Twilio(_))
            && template.content_sid.is_none()
        {
            return Err(at(
                raw.template.body.span(),
                "twilio sends approved templates by their Content SID: add template.content_sid \
                 = \"HX...\" (Twilio Console > Content Template Builder)"
                    .into(),
            ));
        }
        let sending = build_sending(&raw.sending, &at)?;

        Ok(Campaign {
            file: path.to_path_buf(),
            id,
            kind,
            description: raw.campaign.description,
            category: raw.campaign.category,
            contacts,
            template,
            provider,
            sending,
        })
    }

    /// The consent purpose this campaign needs: authentication messages count as utility.
    pub fn purpose(&self) -> Purpose {
        match self.category {
            Category::Marketing => Purpose::Marketing,
            Category::Utility | Category::Authentication => Purpose::Utility,
        }
    }

    /// A digest of everything that decides what a recipient receives. The journal
    /// refuses to continue a campaign id whose content changed, since recipients
    /// already served got the old message.
    pub fn content_fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        let mut field = |s: &str| {
            hasher.update((s.len() as u64).to_le_bytes());
            hasher.update(s.as_bytes());
        };
        field(&self.template.name);
        field(&self.template.language);
        field(
            &self.template.body.render(
                &self
                    .template
                    .body
                    .placeholders()
                    .iter()
                    .map(PlaceholderKey::to_string)
                    .collect::<Vec<_>>(),
            ),
        );
        field(self.category.as_str());
        field(self.kind.as_str());
        // Another provider, or another Twilio Content SID, sends another message.
        field(self.provider.kind());
        if let Some(sid) = &self.template.content_sid {
            field(sid);
        }
        for source in &self.template.sources {
            match source {
                ValueSource::Column { column, default } => {
                    field("column");
                    field(column);
                    field(default.as_deref().unwrap_or("\u{0}none"));
                }
                ValueSource::Fixed(value) => {
                    field("value");
                    field(value);
                }
            }
        }
        hex::encode(hasher.finalize())
    }
}

type Locate<'a> = dyn Fn(std::ops::Range<usize>, String) -> CampaignError + 'a;

fn build_template(
    raw: &RawTemplate,
    kind: MessageKind,
    at: &Locate<'_>,
) -> Result<TemplateSpec, CampaignError> {
    let (name, language) = match (kind, &raw.name, &raw.language) {
        (MessageKind::Template, Some(name), Some(language)) => (name, language),
        (MessageKind::Template, _, _) => {
            return Err(at(
                raw.body.span(),
                "template.name and template.language are required: the approved template's \
                 name and language code as WhatsApp Manager shows them"
                    .into(),
            ));
        }
        (MessageKind::Session, _, _) => {
            let body = Template::parse(raw.body.get_ref())
                .map_err(|e| at(raw.body.span(), format!("template.body: {e}")))?;
            let sources = value_sources(raw, &body, at)?;
            return Ok(TemplateSpec {
                name: String::new(),
                language: String::new(),
                body,
                sources,
                content_sid: None,
            });
        }
    };
    let name_span = name.span();
    let language_span = language.span();
    let name = name.get_ref().trim();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(at(
            name_span,
            format!(
                "template.name `{name}`: approved template names use lowercase letters, digits and underscores"
            ),
        ));
    }
    let language = language.get_ref().trim();
    let valid_language = matches!(language.len(), 2 | 3 | 5 | 6)
        && language
            .split('_')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphabetic()));
    if !valid_language {
        return Err(at(
            language_span,
            format!(
                "template.language `{language}`: use the template's language code, e.g. \"es_MX\", \"en_US\" or \"pt_BR\""
            ),
        ));
    }
    let body = Template::parse(raw.body.get_ref())
        .map_err(|e| at(raw.body.span(), format!("template.body: {e}")))?;

    let sources = value_sources(raw, &body, at)?;
    let content_sid = raw
        .content_sid
        .as_ref()
        .map(|c| sid(c, "HX", "template.content_sid", at))
        .transpose()?;
    Ok(TemplateSpec {
        name: name.to_owned(),
        language: language.to_owned(),
        body,
        sources,
        content_sid,
    })
}

fn value_sources(
    raw: &RawTemplate,
    body: &Template,
    at: &Locate<'_>,
) -> Result<Vec<ValueSource>, CampaignError> {
    let mut sources = Vec::with_capacity(body.placeholders().len());
    for key in body.placeholders() {
        let wanted = key.as_variable_name();
        let Some((_, variable)) = raw.variables.iter().find(|(k, _)| *k.get_ref() == wanted) else {
            return Err(at(
                raw.body.span(),
                format!(
                    "template.body uses {key} but [template.variables] has no `{wanted}`; add \
                     `\"{wanted}\" = {{ column = \"...\" }}` or `{{ value = \"...\" }}`"
                ),
            ));
        };
        let v = variable.get_ref();
        let source = match (&v.column, &v.value, &v.default) {
            (Some(column), None, default) if !column.trim().is_empty() => ValueSource::Column {
                column: column.trim().to_owned(),
                default: default.clone(),
            },
            (None, Some(value), None) => ValueSource::Fixed(value.clone()),
            _ => {
                return Err(at(
                    variable.span(),
                    format!(
                        "template.variables.{wanted}: give either `column` (with an optional \
                         `default` for empty cells) or `value`"
                    ),
                ));
            }
        };
        sources.push(source);
    }
    if let Some((unused, _)) = raw.variables.iter().find(|(k, _)| {
        !body
            .placeholders()
            .iter()
            .any(|p| p.as_variable_name() == *k.get_ref())
    }) {
        return Err(at(
            unused.span(),
            format!(
                "template.variables.{}: the body has no placeholder {{{{{}}}}}; remove it or use it in the body",
                unused.get_ref(),
                unused.get_ref()
            ),
        ));
    }
    Ok(sources)
}

fn build_provider(
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
            Ok(ProviderConfig::CloudApi {
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
            }))
        }
        other => Err(at(
            raw.kind.span(),
            format!("provider.kind `{other}`: expected \"cloud_api\", \"twilio\" or \"simulator\""),
        )),
    }
}

fn sid(
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

fn build_sending(raw: &RawSending, at: &Locate<'_>) -> Result<Sending, CampaignError> {
    let rate_per_second = match &raw.rate_per_second {
        Some(r) if !(1..=MAX_RATE_PER_SECOND).contains(r.get_ref()) => {
            return Err(at(
                r.span(),
                format!(
                    "sending.rate_per_second must be between 1 and {MAX_RATE_PER_SECOND} (Meta's highest tier per number)"
                ),
            ));
        }
        Some(r) => *r.get_ref(),
        None => DEFAULT_RATE_PER_SECOND,
    };
    let concurrency = match &raw.concurrency {
        Some(c) if !(1..=1024).contains(c.get_ref()) => {
            return Err(at(
                c.span(),
                "sending.concurrency must be between 1 and 1024".into(),
            ));
        }
        Some(c) => *c.get_ref(),
        None => DEFAULT_CONCURRENCY,
    };
    Ok(Sending {
        rate_per_second,
        concurrency,
    })
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
    Ok(value.to_owned())
}

fn validate_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 100 {
        return Err("a campaign id is 1 to 100 characters".into());
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(format!(
            "`{id}` may use only letters, digits, `-`, `_` and `.`"
        ));
    }
    Ok(())
}

fn parse_delimiter(text: &str) -> Option<u8> {
    match text {
        "," => Some(b','),
        ";" => Some(b';'),
        "\t" | "\\t" | "tab" => Some(b'\t'),
        "|" => Some(b'|'),
        _ => None,
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[campaign]
description = "Reminders"
category = "utility"
contacts = "contacts.csv"
phone_column = "phone"
default_region = "MX"

[template]
name = "appointment_reminder"
language = "es_MX"
body = "Hola {{1}}, tu cita es el {{2}}."

[template.variables]
"1" = { column = "name", default = "cliente" }
"2" = { column = "date" }

[provider]
kind = "cloud_api"
phone_number_id = "106540352242922"
"#;

    fn parse(text: &str) -> Result<Campaign, CampaignError> {
        Campaign::parse(text, Path::new("dir/reminder-nov.toml"))
    }

    #[test]
    fn defaults_fill_what_the_file_leaves_out() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.id, "reminder-nov");
        assert_eq!(c.contacts.path, Path::new("dir/contacts.csv"));
        assert_eq!(c.sending.rate_per_second, 80);
        assert_eq!(c.purpose(), Purpose::Utility);
        let ProviderConfig::CloudApi {
            api_version,
            base_url,
            token,
            ..
        } = &c.provider
        else {
            panic!("cloud_api expected")
        };
        assert_eq!(api_version, "v23.0");
        assert_eq!(base_url, DEFAULT_GRAPH_URL);
        assert_eq!(token.env, "WHATSAPP_TOKEN");
        assert_eq!(
            c.template.sources[0],
            ValueSource::Column {
                column: "name".into(),
                default: Some("cliente".into())
            }
        );
    }

    #[test]
    fn unknown_keys_are_located() {
        let text = GOOD.replace("category =", "colour = \"red\"\ncategory =");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("line 4, column 1"), "{err}");
        assert!(err.contains("unknown field `colour`"), "{err}");
    }

    #[test]
    fn a_literal_token_is_refused_with_where_it_goes() {
        let text = format!("{GOOD}token = \"EAAG-secret-value\"\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("dir/reminder-nov.toml:21:9:"), "{err}");
        assert!(err.contains("WHATSAPP_TOKEN"), "{err}");
        assert!(
            !err.contains("EAAG-secret-value"),
            "the secret must not be echoed"
        );
    }

    #[test]
    fn a_placeholder_without_a_source_is_an_error() {
        let text = GOOD.replace("\"2\" = { column = \"date\" }", "");
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains("uses {{2}} but [template.variables] has no `2`"),
            "{err}"
        );
    }

    #[test]
    fn a_changed_mapping_changes_the_fingerprint() {
        let a = parse(GOOD).unwrap().content_fingerprint();
        let b = parse(&GOOD.replace("default = \"cliente\"", "default = \"amigo\""))
            .unwrap()
            .content_fingerprint();
        assert_ne!(a, b);
        assert_eq!(a, parse(GOOD).unwrap().content_fingerprint());
    }
}
