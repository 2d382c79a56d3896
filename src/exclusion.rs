//! Why a contact is left out of a campaign, and the gate that decides it.
//!
//! The plan reports these reasons and the consent ledger produces some of them, so
//! they live here, below both: the ledger need not know about plans.

use std::fmt;

use serde::Serialize;
use thiserror::Error;

use crate::identity::Bsuid;
use crate::occurrence::OccurrenceError;
use crate::phone::{E164, PhoneError};
use crate::template::ValueError;

/// Why a contact is left out. [`Exclusion::kind`] is the stable key reports count by.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Exclusion {
    #[error("invalid number: {0}")]
    InvalidNumber(PhoneError),
    #[error("duplicate of row {first_line}")]
    Duplicate { first_line: u64 },
    #[error("missing value: {0}")]
    MissingValue(ValueError),
    #[error("invalid value: {0}")]
    InvalidValue(ValueError),
    #[error("malformed row: {fields} fields where the header has {expected}")]
    MalformedRow { fields: usize, expected: usize },
    #[error("no opt-in for {purpose}")]
    NoOptIn { purpose: String },
    #[error("opted out on {date} via {method}")]
    OptedOut { date: String, method: String },
    #[error("no open customer-service window")]
    NoWindow,
    /// Erased at the person's request (`wacampaign erase`): suppressed until they
    /// give a new, evidenced consent.
    #[error("erased on {date} at the person's request")]
    Erased { date: String },
    /// A US number in a marketing campaign: Meta delivers no marketing templates to
    /// US numbers (Canada and the Caribbean share +1 and are not affected).
    #[error(
        "a US number: Meta delivers no marketing templates there (set sending.us_marketing = true if that changes)"
    )]
    UsMarketing,
    /// `campaign.occurrence` names an empty cell: never merged with another row.
    #[error("no occurrence: {0}")]
    NoOccurrence(OccurrenceError),
    /// `campaign.send_by` cannot be read from the row.
    #[error("invalid send-by: {0}")]
    InvalidSendBy(OccurrenceError),
    /// A cell the audience expression needs did not convert (`number(total)` of
    /// `n/a`): the row can be judged neither in nor out.
    #[error("audience: {0}")]
    AudienceValue(String),
    #[error("invalid business-scoped user ID: {0}")]
    InvalidBsuid(crate::identity::BsuidError),
    /// Known only by a BSUID, and the provider has no way to send to one.
    #[error(
        "only a business-scoped user ID, and {provider} sends to phone numbers only: add the number to the row"
    )]
    BsuidUnreachable { provider: String },
    /// Meta sends no one-tap, zero-tap or copy-code authentication template to a
    /// BSUID (error 131062).
    #[error(
        "only a business-scoped user ID, and Meta sends no one-tap, zero-tap or copy-code authentication template to one (error 131062): add the number to the row"
    )]
    BsuidTemplate,
}

impl Exclusion {
    pub fn kind(&self) -> ExclusionKind {
        match self {
            Exclusion::InvalidNumber(_) => ExclusionKind::InvalidNumber,
            Exclusion::Duplicate { .. } => ExclusionKind::Duplicate,
            Exclusion::MissingValue(_) => ExclusionKind::MissingValue,
            Exclusion::InvalidValue(_) => ExclusionKind::InvalidValue,
            Exclusion::MalformedRow { .. } => ExclusionKind::MalformedRow,
            Exclusion::NoOptIn { .. } => ExclusionKind::NoOptIn,
            Exclusion::OptedOut { .. } => ExclusionKind::OptedOut,
            Exclusion::NoWindow => ExclusionKind::NoWindow,
            Exclusion::Erased { .. } => ExclusionKind::Erased,
            Exclusion::UsMarketing => ExclusionKind::UsMarketing,
            Exclusion::NoOccurrence(_) => ExclusionKind::NoOccurrence,
            Exclusion::InvalidSendBy(_) => ExclusionKind::InvalidSendBy,
            Exclusion::AudienceValue(_) => ExclusionKind::AudienceValue,
            Exclusion::InvalidBsuid(_) => ExclusionKind::InvalidBsuid,
            Exclusion::BsuidUnreachable { .. } => ExclusionKind::BsuidUnreachable,
            Exclusion::BsuidTemplate => ExclusionKind::BsuidTemplate,
        }
    }
}

/// The reasons a report counts by, in the order it lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExclusionKind {
    InvalidNumber,
    Duplicate,
    MalformedRow,
    MissingValue,
    InvalidValue,
    NoOptIn,
    OptedOut,
    NoWindow,
    Erased,
    UsMarketing,
    NoOccurrence,
    InvalidSendBy,
    AudienceValue,
    InvalidBsuid,
    BsuidUnreachable,
    BsuidTemplate,
}

impl ExclusionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ExclusionKind::InvalidNumber => "invalid_number",
            ExclusionKind::Duplicate => "duplicate",
            ExclusionKind::MalformedRow => "malformed_row",
            ExclusionKind::MissingValue => "missing_value",
            ExclusionKind::InvalidValue => "invalid_value",
            ExclusionKind::NoOptIn => "no_opt_in",
            ExclusionKind::OptedOut => "opted_out",
            ExclusionKind::NoWindow => "no_window",
            ExclusionKind::Erased => "erased",
            ExclusionKind::UsMarketing => "us_marketing",
            ExclusionKind::NoOccurrence => "no_occurrence",
            ExclusionKind::InvalidSendBy => "invalid_send_by",
            ExclusionKind::AudienceValue => "audience_value",
            ExclusionKind::InvalidBsuid => "invalid_bsuid",
            ExclusionKind::BsuidUnreachable => "bsuid_unreachable",
            ExclusionKind::BsuidTemplate => "bsuid_template",
        }
    }

    /// How a person reads it in a report.
    pub fn label(self) -> &'static str {
        match self {
            ExclusionKind::InvalidNumber => "invalid number",
            ExclusionKind::Duplicate => "duplicate",
            ExclusionKind::MalformedRow => "malformed row",
            ExclusionKind::MissingValue => "missing value",
            ExclusionKind::InvalidValue => "invalid value",
            ExclusionKind::NoOptIn => "no opt-in",
            ExclusionKind::OptedOut => "opted out",
            ExclusionKind::NoWindow => "no open window",
            ExclusionKind::Erased => "erased",
            ExclusionKind::UsMarketing => "US number (marketing)",
            ExclusionKind::NoOccurrence => "no occurrence",
            ExclusionKind::InvalidSendBy => "invalid send-by",
            ExclusionKind::AudienceValue => "unreadable for audience",
            ExclusionKind::InvalidBsuid => "invalid BSUID",
            ExclusionKind::BsuidUnreachable => "BSUID only (provider)",
            ExclusionKind::BsuidTemplate => "BSUID only (template)",
        }
    }
}

impl fmt::Display for ExclusionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Decides whether a number may receive the campaign. The consent ledger is the
/// real gate; tests and benchmarks may pass their own.
pub trait ConsentGate {
    fn check(&self, phone: E164) -> Result<(), Exclusion>;

    /// A contact with a business-scoped user ID, and a number when the contacts file
    /// has one. A gate that knows nothing of BSUIDs judges the number alone, and lets
    /// a BSUID-only contact through as it lets everyone through.
    fn check_bsuid(&self, phone: Option<E164>, _bsuid: &Bsuid) -> Result<(), Exclusion> {
        phone.map_or(Ok(()), |p| self.check(p))
    }

    /// How many persons [`ConsentGate::slot`] numbers: a planner keeps the first line
    /// of each in a vector this long, 4 bytes a person, rather than in a hash map.
    fn slots(&self) -> usize {
        0
    }

    /// A number below [`ConsentGate::slots`] for a person the gate knows (the key
    /// [`ConsentGate::person`] gives), the same for the whole plan; `None` for others.
    fn slot(&self, _person: i64) -> Option<usize> {
        None
    }

    /// The person a contact is, for telling duplicates: a number's consent key, else
    /// the person its BSUID is linked to. A gate that knows no links keys a
    /// BSUID-only contact by the BSUID itself.
    fn person(&self, phone: Option<E164>, bsuid: Option<&Bsuid>) -> i64 {
        match (phone, bsuid) {
            (Some(p), _) => p.consent_key() as i64,
            (None, Some(b)) => b.key(),
            (None, None) => 0,
        }
    }
}

/// Lets everyone through: for tools and tests that look at the contacts file alone.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoGate;

impl ConsentGate for NoGate {
    fn check(&self, _phone: E164) -> Result<(), Exclusion> {
        Ok(())
    }
}
