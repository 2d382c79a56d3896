//! The campaign file: one TOML file describes one campaign.
//!
//! Parsing happens in two steps, as ripgrep and just do: serde reads the file into
//! raw sections (which catches unknown keys, wrong types and missing keys with their
//! line and column), then [`Campaign::load`] turns them into a validated [`Campaign`]
//! whose every remaining problem is reported before anything is read or sent.

pub mod components;
mod error;
mod provider;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

pub use self::error::CampaignError;
use self::error::Locate;
pub use self::provider::{
    DEFAULT_API_VERSION, DEFAULT_GRAPH_URL, DEFAULT_TWILIO_URL, ProviderConfig, SecretRef,
    SimulatorConfig, TwilioConfig, TwilioSender,
};
use self::provider::{RawProvider, build_provider, sid};
pub use crate::category::Category;
use crate::consent::Purpose;
pub use crate::contacts::{ContactsSource, Encoding};
use crate::phone::DefaultRegion;
use crate::template::{PlaceholderKey, Template};

/// Meta's default throughput for a business phone number.
pub const DEFAULT_RATE_PER_SECOND: u32 = 80;
/// Meta's highest throughput tier for one number; a higher rate is a typo.
pub const MAX_RATE_PER_SECOND: u32 = 1000;

/// The campaign file's `[pricing]` section, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricingConfig {
    /// The rate card (CSV), relative paths resolved against the campaign file.
    pub rate_card: PathBuf,
    /// A country-to-market map replacing the built-in one.
    pub markets: Option<PathBuf>,
    /// Where the business is (ISO 3166-1 alpha-2): authentication messages to
    /// another country are priced at its authentication-international rate, where
    /// the card has one.
    pub business_country: Option<String>,
}

/// The one spelling of a language code for comparisons: `es-MX`, `es_mx` and
/// `ES_MX` are the same language.
pub fn normalize_language(code: &str) -> String {
    code.trim().replace('-', "_").to_ascii_lowercase()
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
    /// Twilio: the Content SID of each other language (`template.content_sids`).
    pub content_sids: Vec<(String, String)>,
    /// The header's and buttons' values, after the body's in a recipient's values.
    pub parts: Vec<components::PartSpec>,
    /// Every translation the campaign sends, `language` first.
    pub languages: Vec<String>,
    /// Each contact's language, from this column: then a recipient's last value is
    /// the language it is sent in (one of `languages`).
    pub language_column: Option<String>,
    /// For a contact whose language is not among `languages`: the first of these;
    /// empty, and the contact is left out.
    pub language_fallback: Vec<String>,
}

impl TemplateSpec {
    /// Twilio: the Content SID for a language (`content_sids`, else `content_sid`).
    pub fn content_sid_for(&self, language: &str) -> Option<&str> {
        let wanted = normalize_language(language);
        self.content_sids
            .iter()
            .find(|(l, _)| normalize_language(l) == wanted)
            .map(|(_, sid)| sid.as_str())
            .or(self.content_sid.as_deref())
    }

    /// The quick-reply payloads declared `opt_out = true`.
    pub fn opt_out_payloads(&self) -> Vec<String> {
        self.parts
            .iter()
            .filter_map(|p| match (&p.part, &p.source) {
                (
                    components::Part::ButtonQuickReply { opt_out: true, .. },
                    ValueSource::Fixed(payload),
                ) => Some(payload.trim().to_owned()),
                _ => None,
            })
            .collect()
    }

    /// The language a recipient's message is sent in.
    pub fn language_of<'a>(&'a self, values: &'a [String]) -> &'a str {
        match (&self.language_column, values.last()) {
            (Some(_), Some(language)) => language,
            _ => &self.language,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sending {
    pub rate_per_second: u32,
    /// A fixed in-flight window; `None` sizes it from the rate and the latency
    /// observed, up to [`Sending::in_flight_cap`].
    pub concurrency: Option<usize>,
    /// Send marketing templates to US numbers too. Meta currently delivers none
    /// there, so they are left out unless this says Meta lifted that.
    pub us_marketing: bool,
    /// The portfolio's messaging limit (unique people per 24 h outside a
    /// customer-service window), when the file sets it; else the account's.
    pub messaging_limit: Option<crate::messaging_limit::Limit>,
    /// People other systems reach from the same portfolio in a day, counted against
    /// the limit before this tool's own.
    pub messaging_limit_other: u64,
}

/// Without a fixed `concurrency`, the in-flight window may grow to hold the rate
/// with answers this slow, and no further: it is also the most a crash can leave in
/// doubt.
pub const AUTO_WINDOW_LATENCY: std::time::Duration = std::time::Duration::from_millis(1250);

impl Sending {
    /// The slowest answers at which the rate still holds (Little's law: the most in
    /// flight over the rate).
    pub fn rate_holds_below(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(
            self.in_flight_cap() as f64 / f64::from(self.rate_per_second.max(1)),
        )
    }

    /// The most requests on the wire at once, so the most a crash can leave in doubt.
    pub fn in_flight_cap(&self) -> usize {
        self.concurrency.unwrap_or_else(|| {
            ((f64::from(self.rate_per_second) * AUTO_WINDOW_LATENCY.as_secs_f64()).ceil() as usize)
                .max(16)
        })
    }
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
    /// `[pricing]`: the rate card the cost estimate is made from.
    pub pricing: Option<PricingConfig>,
    /// `campaign.occurrence`: what tells one message to a person from the next in a
    /// recurring campaign; `None` for one message per person.
    pub occurrence: Option<crate::occurrence::ColumnTemplate>,
    /// `campaign.send_by`: past this instant an occurrence expires unsent.
    pub send_by: Option<crate::occurrence::SendBySpec>,
    /// `campaign.timezone`: today's date for the audience, and the zone of contacts
    /// whose number gives none (UTC when left out).
    pub timezone: chrono_tz::Tz,
    /// `campaign.timezone_column`: each contact's own zone (an IANA name).
    pub timezone_column: Option<String>,
    /// `[audience]`: which rows the campaign is for; `None`, every row.
    pub audience: Option<crate::audience::AudienceSpec>,
    /// `sending.quiet_hours` and `sending.days`, in each contact's zone.
    pub quiet_hours: Option<crate::quiet_hours::QuietHours>,
    /// `sending.frequency_cap`, every category's (a campaign applies its own and `all`).
    pub frequency_caps: Vec<crate::frequency_cap::Cap>,
    /// `campaign.keep_columns`: the contact columns kept with each planned message;
    /// `None` keeps them all.
    pub keep_columns: Option<Vec<String>>,
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
    pricing: Option<RawPricing>,
    audience: Option<RawAudience>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudience {
    #[serde(rename = "where")]
    expression: Spanned<String>,
    #[serde(default)]
    columns: BTreeMap<String, Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPricing {
    rate_card: Spanned<String>,
    markets: Option<Spanned<String>>,
    business_country: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCampaign {
    id: Option<Spanned<String>>,
    description: Option<String>,
    category: Category,
    contacts: Spanned<String>,
    phone_column: Spanned<String>,
    bsuid_column: Option<Spanned<String>>,
    default_region: Option<Spanned<String>>,
    delimiter: Option<Spanned<String>>,
    #[serde(default)]
    encoding: Encoding,
    #[serde(default)]
    kind: MessageKind,
    occurrence: Option<Spanned<RawOccurrence>>,
    send_by: Option<Spanned<String>>,
    send_by_format: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
    timezone_column: Option<Spanned<String>>,
    keep_columns: Option<Vec<String>>,
}

/// `campaign.occurrence`: a column, a template over columns, or a list of columns.
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "campaign.occurrence: a column name, a template over columns \
                 (\"{{appointment_id}}\") or a list of column names"
)]
enum RawOccurrence {
    One(String),
    Columns(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplate {
    name: Option<Spanned<String>>,
    language: Option<Spanned<String>>,
    body: Option<Spanned<String>>,
    content_sid: Option<Spanned<String>>,
    #[serde(default)]
    content_sids: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    variables: BTreeMap<Spanned<String>, Spanned<RawVariable>>,
    header: Option<components::RawHeader>,
    #[serde(default)]
    buttons: Vec<components::RawButton>,
    languages: Option<Spanned<Vec<String>>>,
    language_column: Option<Spanned<String>>,
    language_fallback: Option<Spanned<Vec<String>>>,
}

impl RawTemplate {
    /// Where errors about the template point: its body, else its name.
    fn span(&self) -> std::ops::Range<usize> {
        self.body
            .as_ref()
            .map(Spanned::span)
            .or_else(|| self.name.as_ref().map(Spanned::span))
            .unwrap_or(0..0)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariable {
    column: Option<String>,
    value: Option<String>,
    default: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSending {
    rate_per_second: Option<Spanned<u32>>,
    concurrency: Option<Spanned<usize>>,
    us_marketing: Option<bool>,
    quiet_hours: Option<Spanned<String>>,
    days: Option<Spanned<Vec<String>>>,
    frequency_cap: Option<Spanned<BTreeMap<String, String>>>,
    messaging_limit: Option<Spanned<RawLimit>>,
    messaging_limit_other: Option<u64>,
}

/// `messaging_limit = 2000` or `messaging_limit = "unlimited"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawLimit {
    Number(u64),
    Text(String),
}

impl Campaign {
    /// Whether Meta refuses this campaign's template to a person known only by a
    /// BSUID (error 131062): an authentication template, whose one-time password
    /// goes on a one-tap, zero-tap or copy-code button (the only kinds Meta
    /// approves for authentication).
    pub fn forbidden_for_bsuids(&self) -> bool {
        self.category == Category::Authentication
    }

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
        Self::parse_with_body(text, path, None)
    }

    /// Reads and validates a campaign file whose `template.body` may be left out:
    /// `synced_body` (the approved text of its first language) stands in for it.
    pub fn load_with_body(
        path: &Path,
        synced_body: Option<&str>,
    ) -> Result<Campaign, CampaignError> {
        let text = std::fs::read_to_string(path).map_err(|source| CampaignError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse_with_body(&text, path, synced_body)
    }

    /// [`Campaign::parse`], with the approved body for a file that leaves it out.
    pub fn parse_with_body(
        text: &str,
        path: &Path,
        synced_body: Option<&str>,
    ) -> Result<Campaign, CampaignError> {
        let shown = path.display().to_string();
        let raw: RawFile = toml::from_str(text).map_err(|e| CampaignError::Syntax {
            path: shown.clone(),
            message: without_secrets(e.to_string().trim_end()),
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
        let bsuid_column = match &raw.campaign.bsuid_column {
            Some(c) if c.get_ref().trim().is_empty() => {
                return Err(at(
                    c.span(),
                    "campaign.bsuid_column is empty; name the CSV column that holds business-scoped user IDs, or leave the setting out"
                        .to_owned(),
                ));
            }
            Some(c) => Some(c.get_ref().trim().to_owned()),
            None => None,
        };
        let contacts = ContactsSource {
            path: base_dir.join(raw.campaign.contacts.get_ref()),
            phone_column,
            bsuid_column,
            delimiter,
            encoding: raw.campaign.encoding,
            default_region,
        };

        let kind = raw.campaign.kind;
        let template = build_template(&raw.template, kind, synced_body, &shown, base_dir, &at)?;
        let provider = build_provider(&raw.provider, base_dir, &at)?;
        if kind == MessageKind::Template
            && matches!(provider, ProviderConfig::Twilio(_))
            && template.content_sid.is_none()
        {
            return Err(at(
                raw.template.span(),
                "twilio sends approved templates by their Content SID: add template.content_sid \
                 = \"HX...\" (Twilio Console > Content Template Builder)"
                    .into(),
            ));
        }
        if matches!(provider, ProviderConfig::Twilio(_)) && kind == MessageKind::Template {
            // Twilio fills a Content template by its variables' names: each header or
            // button value names the one it fills.
            if let Some(part) = template.parts.iter().find(|p| {
                p.twilio_variable.is_none()
                    || p.upload.is_some()
                    || matches!(p.part, components::Part::HeaderLocation(_))
            }) {
                return Err(at(
                    raw.template.span(),
                    if part.upload.is_some() {
                        "twilio: template.header.file is uploaded through the Cloud API only; \
                         give the file's https `link` instead"
                            .to_owned()
                    } else if matches!(part.part, components::Part::HeaderLocation(_)) {
                        "twilio: a location header is part of the Content template itself; \
                         remove [template.header]"
                            .to_owned()
                    } else {
                        format!(
                            "twilio: {} fills a variable of the Content template: add \
                             twilio_variable = \"N\" to its section (the variable's number in \
                             the Content Template Builder)",
                            part.key
                        )
                    },
                ));
            }
            // Twilio has one Content SID per language.
            if let Some(missing) = template.languages.iter().skip(1).find(|l| {
                !template
                    .content_sids
                    .iter()
                    .any(|(language, _)| normalize_language(language) == normalize_language(l))
            }) {
                return Err(at(
                    raw.template.span(),
                    format!(
                        "twilio has one Content SID per language: add `{missing} = \"HX...\"` to \
                         [template.content_sids]"
                    ),
                ));
            }
        }
        let sending = build_sending(&raw.sending, &at)?;
        let (occurrence, send_by) = build_schedule(&raw.campaign, &at)?;
        let pricing = raw
            .pricing
            .as_ref()
            .map(|p| build_pricing(p, base_dir, &at))
            .transpose()?;
        let timezone = match &raw.campaign.timezone {
            Some(z) => crate::timezone::parse(z.get_ref())
                .map_err(|m| at(z.span(), format!("campaign.timezone: {m}")))?,
            None => chrono_tz::UTC,
        };
        let timezone_column = raw
            .campaign
            .timezone_column
            .as_ref()
            .map(|c| c.get_ref().trim().to_owned());
        let audience = raw
            .audience
            .as_ref()
            .map(|a| build_audience(a, text, &shown, &at))
            .transpose()?;
        let (quiet_hours, frequency_caps) = build_holds(&raw.sending, &at)?;

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
            pricing,
            occurrence,
            send_by,
            timezone,
            timezone_column,
            audience,
            quiet_hours,
            frequency_caps,
            keep_columns: raw.campaign.keep_columns,
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
        // Only when set, so campaigns from before per-contact languages keep theirs.
        if let Some(column) = &self.template.language_column {
            field("language_column");
            field(column);
            for l in self
                .template
                .languages
                .iter()
                .chain(&self.template.language_fallback)
            {
                field(l);
            }
        }
        // Another provider, or another Twilio Content SID, sends another message.
        field(self.provider.kind());
        if let Some(sid) = &self.template.content_sid {
            field(sid);
        }
        for (language, sid) in &self.template.content_sids {
            field(language);
            field(sid);
        }
        for part in &self.template.parts {
            if let Some(variable) = &part.twilio_variable {
                field(variable);
            }
        }
        // Other occurrences are other messages: a changed rule would message everyone
        // served under the old one again. Only when set, as for languages.
        if let Some(occurrence) = &self.occurrence {
            field("occurrence");
            field(&occurrence.text());
        }
        let uploaded: Vec<ValueSource> = self
            .template
            .parts
            .iter()
            .map(|p| match &p.upload {
                // Each run uploads again and gets a new id: the file is what counts.
                Some(file) => ValueSource::Fixed(format!("file:{}", file.display())),
                None => p.source.clone(),
            })
            .collect();
        let part_sources = self
            .template
            .parts
            .iter()
            .zip(&uploaded)
            .map(|(p, source)| {
                // The part's kind and key decide where the value goes.
                (format!("{:?}", p.part), source)
            });
        let body_sources = self.template.sources.iter().map(|s| (String::new(), s));
        for (part, source) in body_sources.chain(part_sources) {
            if !part.is_empty() {
                field(&part);
            }
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

fn build_template(
    raw: &RawTemplate,
    kind: MessageKind,
    synced_body: Option<&str>,
    path: &str,
    base_dir: &Path,
    at: &Locate<'_>,
) -> Result<TemplateSpec, CampaignError> {
    let (name, language) = match (kind, &raw.name, &raw.language) {
        (MessageKind::Template, Some(name), Some(language)) => (name, language),
        (MessageKind::Template, _, _) => {
            return Err(at(
                raw.span(),
                "template.name and template.language are required: the approved template's \
                 name and language code as WhatsApp Manager shows them"
                    .into(),
            ));
        }
        (MessageKind::Session, _, _) => {
            let text = raw.body.as_ref().ok_or_else(|| {
                at(
                    raw.span(),
                    "template.body is required: a session message is the text itself".into(),
                )
            })?;
            let body = Template::parse(text.get_ref())
                .map_err(|e| at(raw.span(), format!("template.body: {e}")))?;
            let sources = value_sources(raw, &body, at)?;
            if raw.header.is_some() || !raw.buttons.is_empty() {
                return Err(at(
                    raw.span(),
                    "a session message is plain text: [template.header] and [[template.buttons]] \
                     belong to template campaigns"
                        .into(),
                ));
            }
            return Ok(TemplateSpec {
                name: String::new(),
                language: String::new(),
                body,
                sources,
                content_sid: None,
                content_sids: Vec::new(),
                parts: Vec::new(),
                languages: Vec::new(),
                language_column: None,
                language_fallback: Vec::new(),
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
    if !valid_language(language) {
        return Err(at(
            language_span,
            format!(
                "template.language `{language}`: use the template's language code, e.g. \"es_MX\", \"en_US\" or \"pt_BR\""
            ),
        ));
    }
    let body_text = match (&raw.body, synced_body) {
        (Some(body), _) => body.get_ref().as_str(),
        (None, Some(synced)) => synced,
        (None, None) => {
            return Err(CampaignError::BodyNotSynced {
                path: path.to_owned(),
                name: name.to_owned(),
                language: language.to_owned(),
            });
        }
    };
    let body = Template::parse(body_text).map_err(|e| {
        let whose = if raw.body.is_some() {
            "template.body"
        } else {
            "the synced body"
        };
        at(raw.span(), format!("{whose}: {e}"))
    })?;

    let sources = value_sources(raw, &body, at)?;
    let content_sid = raw
        .content_sid
        .as_ref()
        .map(|c| sid(c, "HX", "template.content_sid", at))
        .transpose()?;
    let content_sids = raw
        .content_sids
        .iter()
        .map(|(language, s)| {
            sid(s, "HX", &format!("template.content_sids.{language}"), at)
                .map(|sid| (language.clone(), sid))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let parts = components::build(raw.header.as_ref(), &raw.buttons, base_dir, at)?;
    let (languages, language_column, language_fallback) = build_languages(raw, language, at)?;
    Ok(TemplateSpec {
        name: name.to_owned(),
        language: language.to_owned(),
        body,
        sources,
        content_sid,
        content_sids,
        parts,
        languages,
        language_column,
        language_fallback,
    })
}

fn valid_language(language: &str) -> bool {
    matches!(language.len(), 2 | 3 | 5 | 6)
        && language
            .split('_')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphabetic()))
}

type Languages = (Vec<String>, Option<String>, Vec<String>);

/// `languages`, `language_column` and `language_fallback`: the translations sent,
/// `language` first, each once whatever its spelling.
fn build_languages(
    raw: &RawTemplate,
    language: &str,
    at: &Locate<'_>,
) -> Result<Languages, CampaignError> {
    let same = normalize_language;
    let mut languages = vec![language.to_owned()];
    if let Some(list) = &raw.languages {
        for code in list.get_ref() {
            let code = code.trim();
            if !valid_language(code) {
                return Err(at(
                    list.span(),
                    format!(
                        "template.languages: `{code}` is not a language code such as \"en_US\""
                    ),
                ));
            }
            if !languages.iter().any(|l| same(l) == same(code)) {
                languages.push(code.to_owned());
            }
        }
    }
    let column = match &raw.language_column {
        Some(c) if c.get_ref().trim().is_empty() => {
            return Err(at(c.span(), "template.language_column is empty".into()));
        }
        Some(c) => Some(c.get_ref().trim().to_owned()),
        None => None,
    };
    let mut fallback = Vec::new();
    if let Some(list) = &raw.language_fallback {
        if column.is_none() {
            return Err(at(
                list.span(),
                "template.language_fallback needs template.language_column".into(),
            ));
        }
        for code in list.get_ref() {
            match languages.iter().find(|l| same(l) == same(code)) {
                Some(l) => fallback.push(l.clone()),
                None => {
                    return Err(at(
                        list.span(),
                        format!(
                            "template.language_fallback: `{code}` is not among the campaign's \
                             languages ({}); add it to template.languages",
                            languages.join(", ")
                        ),
                    ));
                }
            }
        }
    }
    if languages.len() > 1 && column.is_none() {
        return Err(at(
            raw.span(),
            "template.languages lists several translations: set template.language_column to \
             the column with each contact's language"
                .into(),
        ));
    }
    Ok((languages, column, fallback))
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
                raw.span(),
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

fn build_pricing(
    raw: &RawPricing,
    base_dir: &Path,
    at: &Locate<'_>,
) -> Result<PricingConfig, CampaignError> {
    let path = |value: &Spanned<String>, key: &str| {
        let text = value.get_ref().trim();
        if text.is_empty() {
            Err(at(
                value.span(),
                format!("pricing.{key} is empty; give the path of the CSV file"),
            ))
        } else {
            Ok(base_dir.join(text))
        }
    };
    let business_country = raw
        .business_country
        .as_ref()
        .map(|c| {
            c.get_ref()
                .parse::<DefaultRegion>()
                .map(|r| r.to_string())
                .map_err(|m| at(c.span(), format!("pricing.business_country: {m}")))
        })
        .transpose()?;
    Ok(PricingConfig {
        rate_card: path(&raw.rate_card, "rate_card")?,
        markets: raw
            .markets
            .as_ref()
            .map(|m| path(m, "markets"))
            .transpose()?,
        business_country,
    })
}

/// `campaign.occurrence`, `campaign.send_by` (with `send_by_format` and `timezone`).
fn build_schedule(
    raw: &RawCampaign,
    at: &Locate<'_>,
) -> Result<
    (
        Option<crate::occurrence::ColumnTemplate>,
        Option<crate::occurrence::SendBySpec>,
    ),
    CampaignError,
> {
    use crate::occurrence::{self, ColumnTemplate, SendBySpec};
    let occurrence = raw
        .occurrence
        .as_ref()
        .map(|o| {
            match o.get_ref() {
                RawOccurrence::One(text) => ColumnTemplate::parse(text, "campaign.occurrence"),
                RawOccurrence::Columns(columns) => {
                    ColumnTemplate::of_columns(columns, "campaign.occurrence")
                }
            }
            .map_err(|m| at(o.span(), m))
        })
        .transpose()?;
    let zone = raw
        .timezone
        .as_ref()
        .map(|z| {
            occurrence::zone(z.get_ref())
                .map(|zone| (zone, z.get_ref().trim().to_owned()))
                .map_err(|m| at(z.span(), m))
        })
        .transpose()?;
    if let Some(format) = &raw.send_by_format {
        occurrence::check_format(format.get_ref()).map_err(|m| at(format.span(), m))?;
        if raw.send_by.is_none() {
            return Err(at(
                format.span(),
                "campaign.send_by_format reads campaign.send_by, which is not set".into(),
            ));
        }
    }
    let send_by = match &raw.send_by {
        None => None,
        Some(text) => {
            let template = ColumnTemplate::parse(text.get_ref(), "campaign.send_by")
                .map_err(|m| at(text.span(), m))?;
            let Some((zone, zone_name)) = zone else {
                return Err(at(
                    text.span(),
                    "campaign.send_by is a local time: set campaign.timezone to the zone it is \
                     written in (an IANA name such as \"America/Mexico_City\")"
                        .into(),
                ));
            };
            Some(SendBySpec {
                template,
                format: raw.send_by_format.as_ref().map(|f| f.get_ref().clone()),
                zone,
                zone_name,
            })
        }
    };
    Ok((occurrence, send_by))
}

fn build_sending(raw: &RawSending, at: &Locate<'_>) -> Result<Sending, CampaignError> {
    let rate_per_second = match &raw.rate_per_second {
        Some(r) => Sending::check_rate(*r.get_ref()).map_err(|e| at(r.span(), e))?,
        None => DEFAULT_RATE_PER_SECOND,
    };
    let concurrency = match &raw.concurrency {
        Some(c) => Some(Sending::check_concurrency(*c.get_ref()).map_err(|e| at(c.span(), e))?),
        None => None,
    };
    let messaging_limit = raw
        .messaging_limit
        .as_ref()
        .map(|l| {
            let text = match l.get_ref() {
                RawLimit::Number(n) => n.to_string(),
                RawLimit::Text(t) => t.clone(),
            };
            crate::messaging_limit::Limit::parse(&text)
                .map_err(|e| at(l.span(), format!("sending.{e}")))
        })
        .transpose()?;
    Ok(Sending {
        rate_per_second,
        concurrency,
        us_marketing: raw.us_marketing.unwrap_or(false),
        messaging_limit,
        messaging_limit_other: raw.messaging_limit_other.unwrap_or(0),
    })
}

fn build_audience(
    raw: &RawAudience,
    text: &str,
    shown: &str,
    at: &Locate<'_>,
) -> Result<crate::audience::AudienceSpec, CampaignError> {
    let mut columns = BTreeMap::new();
    for (name, kind) in &raw.columns {
        let kind = crate::audience::ColumnType::parse(kind.get_ref())
            .map_err(|m| at(kind.span(), format!("audience.columns.{name}: {m}")))?;
        columns.insert(name.trim().to_owned(), kind);
    }
    let (line, column) = line_column(text, raw.expression.span().start);
    crate::audience::AudienceSpec::new(
        raw.expression.get_ref(),
        format!("{shown}:{line}:{column}: audience.where"),
        columns,
    )
    .map_err(|m| at(raw.expression.span(), format!("audience.where: {m}")))
}

/// Quiet hours and frequency caps: the rules that hold a contact for later.
fn build_holds(
    raw: &RawSending,
    at: &Locate<'_>,
) -> Result<
    (
        Option<crate::quiet_hours::QuietHours>,
        Vec<crate::frequency_cap::Cap>,
    ),
    CampaignError,
> {
    let quiet_hours = if raw.quiet_hours.is_some() || raw.days.is_some() {
        let span = raw
            .quiet_hours
            .as_ref()
            .map(Spanned::span)
            .or_else(|| raw.days.as_ref().map(Spanned::span))
            .unwrap_or(0..0);
        let quiet = crate::quiet_hours::QuietHours::parse(
            raw.quiet_hours.as_ref().map(|q| q.get_ref().as_str()),
            raw.days.as_ref().map(|d| d.get_ref().as_slice()),
        );
        Some(quiet.map_err(|m| {
            // A bad day points at the days, anything else at the window.
            let span = if m.starts_with("sending.days") {
                raw.days.as_ref().map_or(span.clone(), Spanned::span)
            } else {
                span
            };
            at(span, m)
        })?)
    } else {
        None
    };
    let mut caps = Vec::new();
    if let Some(table) = &raw.frequency_cap {
        for (key, text) in table.get_ref() {
            caps.push(
                crate::frequency_cap::Cap::parse(key, text).map_err(|m| at(table.span(), m))?,
            );
        }
    }
    Ok((quiet_hours, caps))
}

/// The largest fixed in-flight window an operator may choose.
pub const MAX_CONCURRENCY: usize = 4096;

impl Sending {
    /// A rate, as the campaign file or `--rate` gives it.
    pub fn check_rate(rate: u32) -> Result<u32, String> {
        if (1..=MAX_RATE_PER_SECOND).contains(&rate) {
            Ok(rate)
        } else {
            Err(format!(
                "sending.rate_per_second (--rate) must be between 1 and {MAX_RATE_PER_SECOND} \
                 (Meta's highest tier per number)"
            ))
        }
    }

    /// A fixed in-flight window, as the campaign file or `--concurrency` gives it.
    pub fn check_concurrency(concurrency: usize) -> Result<usize, String> {
        if (1..=MAX_CONCURRENCY).contains(&concurrency) {
            Ok(concurrency)
        } else {
            Err(format!(
                "sending.concurrency (--concurrency) must be between 1 and {MAX_CONCURRENCY}, \
                 or left out to size the window from the rate and the answers' latency"
            ))
        }
    }
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

/// A TOML error's message with the values of its quoted source line hidden where
/// they may be secrets: a key named like one (`token = "EAAG…"` is an unknown key,
/// and the parser quotes the line) or a value shaped like one (a long unbroken run
/// of letters and digits). The key, line and column still say where to look.
fn without_secrets(message: &str) -> String {
    static PAIR: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r#"([A-Za-z0-9_.-]+)(\s*=\s*)("[^"]*"?|'[^']*'?|[^\s,}\]]+)"#)
            .expect("a valid pattern")
    });
    static SOURCE_LINE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"^(\s*\d+ \| )(.*)$").expect("a valid pattern")
    });
    let secret_like_key = |key: &str| {
        let key = key.to_ascii_lowercase();
        [
            "token",
            "secret",
            "password",
            "passwd",
            "auth",
            "api_key",
            "apikey",
            "credential",
        ]
        .iter()
        .any(|word| key.contains(word))
            && !key.ends_with("_env")
            && !key.ends_with("_file")
    };
    let secret_like_value = |value: &str| {
        let bare = value.trim_matches(|c| c == '"' || c == '\'');
        bare.len() >= 24
            && bare.chars().any(|c| c.is_ascii_digit())
            && bare.chars().any(|c| c.is_ascii_alphabetic())
            && bare
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.+/=".contains(c))
    };
    message
        .lines()
        .map(|line| match SOURCE_LINE.captures(line) {
            Some(quoted) => {
                let source = PAIR.replace_all(&quoted[2], |pair: &regex::Captures<'_>| {
                    if secret_like_key(&pair[1]) || secret_like_value(&pair[3]) {
                        format!("{}{}\"(hidden)\"", &pair[1], &pair[2])
                    } else {
                        pair[0].to_owned()
                    }
                });
                format!("{}{source}", &quoted[1])
            }
            None => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
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

    #[test]
    fn a_syntax_errors_quoted_line_hides_what_may_be_a_secret() {
        let error = |text: &str| match Campaign::parse(text, Path::new("c.toml")) {
            Err(CampaignError::Syntax { message, .. }) => message,
            other => panic!("{other:?}"),
        };
        for (line, hidden) in [
            ("token = \"EAAGsecret123\"", "token = \"(hidden)\""),
            ("whatsapp_token = 'abc'", "whatsapp_token = \"(hidden)\""),
            ("token = EAAGsecret123", "token = \"(hidden)\""),
            (
                "note = \"EAAGx9Qm2ZZ7hPq0rT5uV8wY1\"",
                "note = \"(hidden)\"",
            ),
        ] {
            let text = GOOD.replacen("[campaign]\n", &format!("[campaign]\n{line}\n"), 1);
            let message = error(&text);
            assert!(message.contains(hidden), "{line}: {message}");
            assert!(
                !message.contains("EAAG") && !message.contains("abc"),
                "{message}"
            );
            assert!(message.contains("TOML parse error at line 3"), "{message}");
        }
        // Ordinary values stay, so a typo can be seen.
        let text = GOOD.replacen("[campaign]\n", "[campaign]\ncolour = \"red\"\n", 1);
        assert!(error(&text).contains("colour = \"red\""));
    }

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
    fn pricing_paths_resolve_beside_the_file_and_a_bad_country_is_located() {
        let text =
            format!("{GOOD}\n[pricing]\nrate_card = \"rates.csv\"\nbusiness_country = \"us\"\n");
        let c = parse(&text).unwrap();
        let pricing = c.pricing.unwrap();
        assert_eq!(pricing.rate_card, Path::new("dir/rates.csv"));
        assert_eq!(pricing.markets, None);
        assert_eq!(pricing.business_country.as_deref(), Some("US"));
        assert_eq!(parse(GOOD).unwrap().pricing, None);
        let err = parse(&text.replace("\"us\"", "\"USA\""))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("dir/reminder-nov.toml:24:20:"), "{err}");
        assert!(err.contains("pricing.business_country"), "{err}");
        let assumed_fingerprint = parse(GOOD).unwrap().content_fingerprint();
        assert_eq!(
            parse(&text).unwrap().content_fingerprint(),
            assumed_fingerprint,
            "pricing does not change what recipients receive"
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
