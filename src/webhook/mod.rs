//! Webhooks: what Meta and Twilio tell us after a message is sent, and what people
//! send back.
//!
//! `wacampaign webhook serve` answers Meta's verification handshake, accepts only
//! signed requests, and records each signed body once (providers retry for days and
//! send duplicates) into the same database as the journal and the ledger:
//!
//! - delivery statuses, kept as a history per message ([`history`]); a status for a
//!   message held in doubt resolves it (it was sent);
//! - a failure whose code the provider table ([`crate::provider::classify`]) classes
//!   as an opt-out (131050, Twilio's 21610 and 63014) and a reply that is an opt-out
//!   keyword, as opt-outs in the consent ledger;
//! - Meta's `user_preferences` (stop / resume marketing messages);
//! - every message a person sends, which opens WhatsApp's 24-hour customer-service
//!   window ([`window`]);
//! - a person's change of number, linking both and carrying an opt-out over.
//!
//! Parsing ([`meta`], [`twilio`]) turns a verified body into provider-neutral
//! [`Event`]s; [`store`] records them; [`server`] wires the HTTP side to one writer
//! thread that owns the database connection.

pub mod history;
pub mod meta;
pub mod optout;
pub mod possible;
pub mod server;
pub mod silence;
pub mod store;
pub mod twilio;

use std::fmt;

use sha2::{Digest, Sha256};

use crate::phone::E164;
use crate::provider::Family;

pub use optout::OptOutRules;
pub use server::{ServerConfig, serve};

/// The paths the server answers on.
pub const META_PATH: &str = "/webhook/meta";
pub const TWILIO_PATH: &str = "/webhook/twilio";
pub const HEALTH_PATH: &str = "/healthz";

/// Request bodies larger than this are refused with 413 (Meta batches at most a few
/// hundred kilobytes).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Who sent a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Meta,
    Twilio,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Meta => "meta",
            Source::Twilio => "twilio",
        }
    }

    /// Whose error codes its statuses carry: the table that classifies a send's
    /// answer classifies them too.
    pub fn family(self) -> Family {
        match self {
            Source::Meta => Family::Meta,
            Source::Twilio => Family::Twilio,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One signed request body and what it says.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub source: Source,
    /// Hex SHA-256 of the raw body: the same body delivered again is recorded once.
    pub body_sha256: String,
    pub body: Vec<u8>,
    pub events: Vec<Event>,
    /// Set when the body was signed but could not be read; it is kept, not retried.
    pub unreadable: Option<String>,
}

impl Delivery {
    pub fn new(source: Source, body: Vec<u8>) -> Delivery {
        Delivery {
            source,
            body_sha256: hex::encode(Sha256::digest(&body)),
            body,
            events: Vec::new(),
            unreadable: None,
        }
    }
}

/// What a webhook tells us, whoever sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Status(StatusEvent),
    Inbound(InboundEvent),
    Preference(PreferenceEvent),
    NumberChanged(NumberChange),
    Template(TemplateEvent),
    /// A BSUID seen with a number, alone, or as a user's new BSUID.
    Link(IdentityLink),
    /// An opt-out reply from a user known by a BSUID alone.
    BsuidOptOut(BsuidOptOut),
}

/// An opt-out keyword (or button) from a user whose number Meta does not share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BsuidOptOut {
    pub bsuid: crate::identity::Bsuid,
    pub message_id: String,
    pub occurred_at: String,
    pub request: OptOutRequest,
}

/// What a webhook taught about who a user is: a BSUID beside a number
/// (`contacts[].user_id`, `recipient_user_id`), or a user's BSUID changing
/// (`user_changed_user_id`, `user_id_update`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityLink {
    pub bsuid: crate::identity::Bsuid,
    pub phone: Option<E164>,
    /// The BSUID it replaces, for a change.
    pub previous: Option<crate::identity::Bsuid>,
}

/// Meta changed one of the account's templates: its status
/// (`message_template_status_update`), quality (`message_template_quality_update`)
/// or category (`template_category_update`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateEvent {
    pub template_id: Option<String>,
    pub name: String,
    pub language: Option<String>,
    pub change: TemplateChange,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateChange {
    /// APPROVED, PAUSED, DISABLED, REJECTED, ... as Meta's `event`.
    Status(String),
    /// GREEN, YELLOW, RED, UNKNOWN.
    Quality(String),
    /// MARKETING, UTILITY, AUTHENTICATION.
    Category(String),
}

/// A message we sent moved on: sent, delivered, read, failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEvent {
    pub source: Source,
    /// The wamid, or the Twilio message SID.
    pub message_id: String,
    pub status: String,
    /// The provider's Unix timestamp; 0 when it sends none (Twilio).
    pub timestamp: i64,
    /// RFC 3339 UTC: the provider's time, else when it was received.
    pub occurred_at: String,
    /// The recipient as the provider names it (a wa_id, or `whatsapp:+1...`).
    pub recipient: Option<String>,
    /// Meta's `biz_opaque_callback_data` (or Twilio's `cb` query parameter): names
    /// the journal row even before the message id is known.
    pub callback: Option<String>,
    pub error_code: Option<i64>,
    pub error_detail: Option<String>,
    /// Meta's `pricing` object: how the message is billed.
    pub pricing: Option<Billing>,
}

/// What a status says about billing (Meta's `pricing`: `billable`, `category`,
/// `type`); it carries no amount.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Billing {
    pub billable: Option<bool>,
    pub category: Option<String>,
    /// `regular`, `free_customer_service`, `free_entry_point`.
    pub kind: Option<String>,
}

/// A message a person sent us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundEvent {
    pub source: Source,
    pub message_id: String,
    pub from: E164,
    /// text, button, interactive, image, ... as the provider names it.
    pub kind: String,
    /// The message it replies to.
    pub context_id: Option<String>,
    pub occurred_at: String,
    /// Set when the message asks to stop all messages.
    pub opt_out: Option<OptOutRequest>,
    /// A quick-reply button's payload, when the message is a tap on one.
    pub button_payload: Option<String>,
    /// Set when a text reads like an opt-out without being a bare keyword ("please
    /// stop"): kept for a person to decide, never acted on automatically.
    pub possible_opt_out: Option<PossibleOptOut>,
}

/// A reply that may be an opt-out: the text, kept as evidence, and why it was
/// singled out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PossibleOptOut {
    pub text: String,
    pub reason: String,
}

/// An opt-out a person asked for in a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptOutRequest {
    /// whatsapp_reply (or sms_reply for a Twilio SMS).
    pub method: String,
    /// What they sent: the text, or the button's payload and text.
    pub evidence: String,
}

/// Meta's `user_preferences`: a person stopped or resumed marketing messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreferenceEvent {
    pub source: Source,
    /// The number, unless the user hides it; then `user_id` alone names them.
    pub wa_id: Option<E164>,
    pub user_id: Option<crate::identity::Bsuid>,
    pub marketing: Preference,
    pub timestamp: i64,
    pub occurred_at: String,
    /// The preference object as Meta sent it.
    pub evidence: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preference {
    Stop,
    Resume,
}

/// A person moved to another number (`user_changed_number`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberChange {
    pub source: Source,
    pub old: E164,
    pub new: E164,
    pub occurred_at: String,
    /// The system message that told us.
    pub message_id: String,
    pub body: String,
}

/// A provider's Unix timestamp as RFC 3339 (`None` when out of range).
pub(crate) fn unix_to_rfc3339(seconds: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(seconds, 0).map(crate::clock::format)
}
