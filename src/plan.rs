//! The plan: who will receive what, and who is left out and why.
//!
//! `check`, `preview` and `send` all build the plan the same way, from the validated
//! campaign, the contacts file and the consent ledger, one row at a time, so a
//! million-row file is never held in memory. Each row becomes either a [`Recipient`]
//! with its rendered values or an [`Excluded`] row with a reason.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use thiserror::Error;

use crate::audience::{Audience, Verdict};
use crate::campaign::{Campaign, ValueSource};
use crate::contacts::{ContactReader, ContactsError, Row};
use crate::frequency_cap::CapIndex;
use crate::hold::{Hold, HoldKind, PlanMemo, Rules};
// The reasons and the gate are shared with the consent ledger, so they live below
// both; re-exported because they are part of what a plan says.
pub use crate::exclusion::{ConsentGate, Exclusion, ExclusionKind, NoGate};
use crate::identity::Bsuid;
use crate::phone::E164;
use crate::template::ValueError;

/// Someone who will receive the campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The line of the contacts file the contact came from.
    pub line: u64,
    /// The number, unless the row names the person by a business-scoped user ID
    /// alone (then `bsuid` is set).
    pub phone: Option<E164>,
    pub bsuid: Option<Bsuid>,
    /// One value per placeholder, in send order.
    pub values: Vec<String>,
    /// Which of the person's messages this is (`campaign.occurrence`); empty for
    /// one message per person.
    pub occurrence: String,
    /// Past this instant (RFC 3339, UTC) the message expires unsent.
    pub send_by: Option<String>,
    /// The contact's own time zone, from `campaign.timezone_column`.
    pub time_zone: Option<String>,
    /// Quiet hours or a frequency cap hold the message until later.
    pub hold: Option<Hold>,
    /// The contact's kept columns as a JSON object (header → cell), journaled with
    /// the plan; `None` when the campaign keeps none.
    pub contact: Option<String>,
}

impl Recipient {
    /// Where the message goes, as the operator reads it: the number, else the BSUID.
    pub fn address(&self) -> String {
        match (&self.phone, &self.bsuid) {
            (Some(p), _) => p.to_string(),
            (None, Some(b)) => b.to_string(),
            (None, None) => String::new(),
        }
    }
}

/// A contact left out of the campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excluded {
    pub line: u64,
    /// The phone cell as written, for the operator to find the row.
    pub phone_raw: String,
    pub reason: Exclusion,
}

/// One row's fate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanItem {
    Eligible(Recipient),
    Excluded(Excluded),
}

/// The counts a report shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PlanStats {
    /// Data rows read, blank rows not counted.
    pub contacts_read: u64,
    pub eligible: u64,
    pub excluded: u64,
    pub excluded_by_reason: BTreeMap<ExclusionKind, u64>,
    pub blank_rows: u64,
    /// Eligible contacts by the language they are sent in (per-contact languages only).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub by_language: BTreeMap<String, u64>,
    /// Rows the audience filter leaves out: neither eligible nor excluded (present
    /// when the campaign has an audience).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outside_audience: Option<u64>,
    /// Eligible contacts in quiet hours now: deferred, sent once their window opens.
    #[serde(skip_serializing_if = "is_zero")]
    pub quiet_hours: u64,
    /// Eligible contacts at a frequency cap: deferred until they are under it.
    #[serde(skip_serializing_if = "is_zero")]
    pub frequency_capped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PlanError {
    #[error(transparent)]
    Contacts(#[from] ContactsError),
    #[error(transparent)]
    Audience(#[from] crate::audience::AudienceError),
    #[error(
        "{path}: line {line} is past the {} lines a plan can hold; split the file",
        u32::MAX
    )]
    TooManyLines { path: String, line: u64 },
}

/// A person's key as the duplicate map holds it: two halves, so the map's entries
/// are aligned to 4 bytes.
fn halves(key: i64) -> [u32; 2] {
    let key = key as u64;
    [(key >> 32) as u32, key as u32]
}

enum Source {
    Column {
        index: usize,
        default: Option<String>,
    },
    Fixed(String),
}

/// Streams a campaign's contacts through the checks, one row per call.
pub struct Planner<'a> {
    campaign: &'a Campaign,
    gate: &'a dyn ConsentGate,
    reader: ContactReader,
    phone_index: usize,
    /// The column of business-scoped user IDs, when the campaign names one.
    bsuid_index: Option<usize>,
    sources: Vec<Source>,
    /// The column of each contact's language, when the campaign has one.
    language_index: Option<usize>,
    /// The columns kept with the plan (`campaign.keep_columns`, else all): name, index.
    kept: Vec<(String, usize)>,
    header_len: usize,
    /// First line each person was seen on (a number's consent key, or the person a
    /// BSUID is linked to): the same person twice is a duplicate. A person the gate
    /// numbers (everyone opted in, in a marketing plan) has their line at that
    /// number in `seen_slots`, 4 bytes each and allocated once; anyone else is in
    /// `seen`, keyed by the key split in two halves so an entry takes 12 bytes, not 16.
    /// Lines are u32 (a file past 4,294,967,295 lines is refused); 0 is "not seen".
    seen: HashMap<[u32; 2], u32>,
    seen_slots: Vec<u32>,
    /// With occurrences, a duplicate is the same person for the same occurrence.
    seen_occurrences: HashMap<(i64, String), u32>,
    occurrence: Option<crate::occurrence::Bound>,
    send_by: Option<(crate::occurrence::SendBySpec, crate::occurrence::Bound)>,
    row: Row,
    stats: PlanStats,
    audience: Option<Audience>,
    rules: Option<Rules>,
    caps: CapIndex,
    memo: PlanMemo,
    zone_index: Option<usize>,
    /// The instant holds are judged at: the plan's.
    now: chrono::DateTime<chrono::Utc>,
}

impl<'a> Planner<'a> {
    /// Opens the contacts file and checks its header against the campaign: a missing
    /// column is a campaign error, found before any row is read.
    pub fn new(campaign: &'a Campaign, gate: &'a dyn ConsentGate) -> Result<Self, PlanError> {
        let reader = ContactReader::open(&campaign.contacts)?;
        let phone_index =
            reader.column_index(&campaign.contacts.phone_column, "campaign.phone_column")?;
        let bsuid_index = campaign
            .contacts
            .bsuid_column
            .as_ref()
            .map(|c| reader.column_index(c, "campaign.bsuid_column"))
            .transpose()?;
        let mut sources = Vec::with_capacity(campaign.template.sources.len());
        for (key, source) in campaign
            .template
            .body
            .placeholders()
            .iter()
            .zip(&campaign.template.sources)
        {
            sources.push(match source {
                ValueSource::Column { column, default } => Source::Column {
                    index: reader.column_index(
                        column,
                        &format!("template.variables.{}", key.as_variable_name()),
                    )?,
                    default: default.clone(),
                },
                ValueSource::Fixed(value) => Source::Fixed(value.clone()),
            });
        }
        // The header's and buttons' values come after the body's.
        for part in &campaign.template.parts {
            sources.push(match &part.source {
                ValueSource::Column { column, default } => Source::Column {
                    index: reader.column_index(column, &part.key)?,
                    default: default.clone(),
                },
                ValueSource::Fixed(value) => Source::Fixed(value.clone()),
            });
        }
        let language_index = campaign
            .template
            .language_column
            .as_ref()
            .map(|c| reader.column_index(c, "template.language_column"))
            .transpose()?;
        let kept = match &campaign.keep_columns {
            None => reader
                .headers()
                .iter()
                .enumerate()
                .map(|(i, name)| (name.clone(), i))
                .collect(),
            Some(names) => names
                .iter()
                .map(|name| {
                    Ok((
                        name.clone(),
                        reader.column_index(name, "campaign.keep_columns")?,
                    ))
                })
                .collect::<Result<_, ContactsError>>()?,
        };
        let header_len = reader.headers().len();
        let occurrence = campaign
            .occurrence
            .as_ref()
            .map(|o| crate::occurrence::Bound::new(o, &reader, "campaign.occurrence"))
            .transpose()?;
        let send_by = campaign
            .send_by
            .as_ref()
            .map(|s| {
                crate::occurrence::Bound::new(&s.template, &reader, "campaign.send_by")
                    .map(|bound| (s.clone(), bound))
            })
            .transpose()?;
        let now = crate::clock::now();
        let headers = reader.headers().to_vec();
        let audience = campaign
            .audience
            .as_ref()
            .map(|spec| Audience::new(spec, &headers, campaign.timezone, now))
            .transpose()?;
        let zone_index = campaign
            .timezone_column
            .as_ref()
            .map(|c| reader.column_index(c, "campaign.timezone_column"))
            .transpose()?;
        let stats = PlanStats {
            outside_audience: audience.as_ref().map(|_| 0),
            ..PlanStats::default()
        };
        Ok(Planner {
            seen_occurrences: HashMap::new(),
            occurrence,
            send_by,
            audience,
            rules: Rules::of(campaign),
            caps: CapIndex::default(),
            memo: PlanMemo::default(),
            zone_index,
            now,
            language_index,
            kept,
            campaign,
            gate,
            reader,
            phone_index,
            bsuid_index,
            sources,
            header_len,
            seen: HashMap::new(),
            seen_slots: Vec::new(),
            row: Row::default(),
            stats,
        })
    }

    /// Whether the campaign caps how often a person hears from the business.
    pub fn has_caps(&self) -> bool {
        self.rules.as_ref().is_some_and(Rules::has_caps)
    }

    /// The persons at this campaign's frequency caps, read from the journal once
    /// before planning, so contacts over a cap are reported and deferred.
    pub fn with_caps(mut self, conn: &rusqlite::Connection) -> rusqlite::Result<Self> {
        if let Some(rules) = &self.rules
            && rules.has_caps()
        {
            self.caps = CapIndex::load(conn, rules.caps(), rules.category(), self.now)?;
        }
        Ok(self)
    }

    pub fn contacts_path(&self) -> &str {
        self.reader.path()
    }

    pub fn stats(&self) -> &PlanStats {
        &self.stats
    }

    /// The next row's fate; `None` once the file is read.
    pub fn next_item(&mut self) -> Result<Option<PlanItem>, PlanError> {
        let item = loop {
            let got = self.reader.read_row(&mut self.row)?;
            self.stats.blank_rows = self.reader.blank_rows();
            if !got {
                return Ok(None);
            }
            self.stats.contacts_read += 1;
            match self.judge()? {
                Some(item) => break item,
                None => *self.stats.outside_audience.get_or_insert(0) += 1,
            }
        };
        match &item {
            PlanItem::Eligible(recipient) => {
                self.stats.eligible += 1;
                match recipient.hold.as_ref().map(|h| h.kind) {
                    Some(HoldKind::QuietHours) => self.stats.quiet_hours += 1,
                    Some(HoldKind::FrequencyCap) => self.stats.frequency_capped += 1,
                    None => {}
                }
                if self.language_index.is_some() {
                    *self
                        .stats
                        .by_language
                        .entry(
                            self.campaign
                                .template
                                .language_of(&recipient.values)
                                .to_owned(),
                        )
                        .or_default() += 1;
                }
            }
            PlanItem::Excluded(excluded) => {
                self.stats.excluded += 1;
                *self
                    .stats
                    .excluded_by_reason
                    .entry(excluded.reason.kind())
                    .or_default() += 1;
            }
        }
        Ok(Some(item))
    }

    /// A row's fate; `None` for a row outside the audience. The audience comes
    /// first: a row it leaves out is neither a duplicate nor excluded.
    fn judge(&mut self) -> Result<Option<PlanItem>, PlanError> {
        if u32::try_from(self.row.line).is_err() {
            return Err(PlanError::TooManyLines {
                path: self.reader.path().to_owned(),
                line: self.row.line,
            });
        }
        let well_formed = self.row.record.len() >= self.header_len;
        if let Some(audience) = &self.audience
            && well_formed
        {
            match audience.judge(&self.row.record)? {
                Verdict::In => {}
                Verdict::Out => return Ok(None),
                Verdict::Unreadable(why) => {
                    return Ok(Some(PlanItem::Excluded(Excluded {
                        line: self.row.line,
                        phone_raw: self.row.get(self.phone_index).unwrap_or("").to_owned(),
                        reason: Exclusion::AudienceValue(why),
                    })));
                }
            }
        }
        let mut item = self.judge_row();
        if let PlanItem::Eligible(recipient) = &mut item {
            let zone = match self.zone_index {
                Some(index) => match self.row.get(index).map(str::trim) {
                    Some(cell) if !cell.is_empty() => match crate::timezone::parse(cell) {
                        Ok(zone) => {
                            recipient.time_zone = Some(zone.name().to_owned());
                            Some(zone)
                        }
                        Err(reason) => {
                            return Ok(Some(PlanItem::Excluded(Excluded {
                                line: recipient.line,
                                phone_raw: self.row.get(self.phone_index).unwrap_or("").to_owned(),
                                reason: Exclusion::InvalidValue(ValueError::Part(
                                    "campaign.timezone_column".into(),
                                    reason,
                                )),
                            })));
                        }
                    },
                    _ => None,
                },
                None => None,
            };
            if let Some(rules) = &self.rules {
                let person = self.gate.person(recipient.phone, recipient.bsuid.as_ref());
                recipient.hold = rules.at_plan(
                    recipient.phone,
                    person,
                    zone,
                    &self.caps,
                    self.now,
                    &mut self.memo,
                );
            }
        }
        Ok(Some(item))
    }

    fn judge_row(&mut self) -> PlanItem {
        let line = self.row.line;
        let phone_raw = self.row.get(self.phone_index).unwrap_or("").to_owned();
        let exclude = |reason| {
            PlanItem::Excluded(Excluded {
                line,
                phone_raw: phone_raw.clone(),
                reason,
            })
        };
        let fields = self.row.record.len();
        let extra_has_data = self
            .row
            .record
            .iter()
            .skip(self.header_len)
            .any(|f| !f.trim().is_empty());
        if fields < self.header_len || extra_has_data {
            return exclude(Exclusion::MalformedRow {
                fields,
                expected: self.header_len,
            });
        }
        let bsuid_raw = self
            .bsuid_index
            .and_then(|i| self.row.get(i))
            .map(str::trim)
            .filter(|b| !b.is_empty());
        let bsuid = match bsuid_raw.map(Bsuid::parse).transpose() {
            Ok(bsuid) => bsuid,
            Err(e) => return exclude(Exclusion::InvalidBsuid(e)),
        };
        // A row with a BSUID needs no number; one without needs a valid number.
        let phone = match (phone_raw.trim().is_empty(), &bsuid) {
            (true, Some(_)) => None,
            _ => match E164::normalize(&phone_raw, self.campaign.contacts.default_region) {
                Ok(phone) => Some(phone),
                Err(e) => return exclude(Exclusion::InvalidNumber(e)),
            },
        };
        let occurrence = match crate::occurrence::occurrence_of(self.occurrence.as_ref(), &self.row)
        {
            Ok(occurrence) => occurrence,
            Err(e) => return exclude(Exclusion::NoOccurrence(e)),
        };
        let send_by = match &self.send_by {
            Some((spec, bound)) => match crate::occurrence::send_by_of(spec, bound, &self.row) {
                Ok(at) => Some(at),
                Err(e) => return exclude(Exclusion::InvalidSendBy(e)),
            },
            None => None,
        };
        // A row with both identities links them for the rest of the file too.
        let person = self.gate.person(phone, bsuid.as_ref());
        let own = bsuid.as_ref().map(Bsuid::key).filter(|k| *k != person);
        let keys = [Some(person), own].into_iter().flatten();
        // `judge` refused a line past u32::MAX.
        let line32 = u32::try_from(line).unwrap_or(u32::MAX);
        if self.occurrence.is_some() {
            if let Some(first_line) = keys
                .clone()
                .find_map(|k| self.seen_occurrences.get(&(k, occurrence.clone())).copied())
            {
                return exclude(Exclusion::Duplicate {
                    first_line: first_line.into(),
                });
            }
            for key in keys {
                self.seen_occurrences
                    .insert((key, occurrence.clone()), line32);
            }
        } else {
            if let Some(first_line) = keys.clone().find_map(|k| self.first_seen(k)) {
                return exclude(Exclusion::Duplicate {
                    first_line: first_line.into(),
                });
            }
            for key in keys {
                self.mark_seen(key, line32);
            }
        }
        let us = match (phone, &bsuid) {
            // Most numbers are not +1: no metadata lookup for them.
            (Some(phone), _) => {
                phone.digits() / 10_000_000_000 == 1 && phone.region().as_deref() == Some("US")
            }
            (None, Some(b)) => b.country() == "US",
            (None, None) => false,
        };
        if self.campaign.category == crate::campaign::Category::Marketing
            && !self.campaign.sending.us_marketing
            && us
        {
            return exclude(Exclusion::UsMarketing);
        }
        if phone.is_none() {
            if let crate::campaign::ProviderConfig::Twilio(_) = self.campaign.provider {
                return exclude(Exclusion::BsuidUnreachable {
                    provider: "Twilio".to_owned(),
                });
            }
            if self.campaign.forbidden_for_bsuids() {
                return exclude(Exclusion::BsuidTemplate);
            }
        }
        let judged = match (phone, &bsuid) {
            (_, Some(b)) => self.gate.check_bsuid(phone, b),
            (Some(p), None) => self.gate.check(p),
            (None, None) => Ok(()),
        };
        if let Err(reason) = judged {
            return exclude(reason);
        }
        let mut values = Vec::with_capacity(self.sources.len());
        for source in &self.sources {
            let value = match source {
                Source::Column { index, default } => {
                    let cell = self.row.get(*index).unwrap_or("").trim();
                    match default {
                        Some(default) if cell.is_empty() => default.as_str(),
                        _ => cell,
                    }
                }
                Source::Fixed(value) => value.as_str(),
            };
            values.push(value.to_owned());
        }
        let body_len = self.campaign.template.sources.len();
        for (value, part) in values[body_len..]
            .iter_mut()
            .zip(&self.campaign.template.parts)
        {
            match crate::campaign::components::check(&part.part, value) {
                Ok(sent) => *value = sent,
                Err(_) if value.trim().is_empty() => {
                    return exclude(Exclusion::MissingValue(ValueError::EmptyPart(
                        part.key.clone(),
                    )));
                }
                Err(reason) => {
                    return exclude(Exclusion::InvalidValue(ValueError::Part(
                        part.key.clone(),
                        reason,
                    )));
                }
            }
        }
        if let Some(index) = self.language_index {
            match self.language(self.row.get(index).unwrap_or("")) {
                Ok(language) => values.push(language),
                Err(reason) => {
                    return exclude(Exclusion::InvalidValue(ValueError::Part(
                        "template.language_column".into(),
                        reason,
                    )));
                }
            }
        }
        let limit = self.campaign.kind.max_body_chars();
        if let Err(e) = self
            .campaign
            .template
            .body
            .check_values_within(&values[..body_len], limit)
        {
            return exclude(match e {
                ValueError::Empty(_) => Exclusion::MissingValue(e),
                _ => Exclusion::InvalidValue(e),
            });
        }
        PlanItem::Eligible(Recipient {
            line,
            phone,
            bsuid,
            values,
            occurrence,
            send_by,
            time_zone: None,
            hold: None,
            contact: self.kept_columns(),
        })
    }

    /// The line a person was first seen on, if they were.
    fn first_seen(&self, key: i64) -> Option<u32> {
        match self.gate.slot(key) {
            Some(slot) => self.seen_slots.get(slot).copied().filter(|l| *l != 0),
            None => self.seen.get(&halves(key)).copied(),
        }
    }

    fn mark_seen(&mut self, key: i64, line: u32) {
        if let Some(slot) = self.gate.slot(key) {
            if self.seen_slots.is_empty() {
                // Zeroed pages from the allocator: untouched slots cost nothing.
                self.seen_slots = vec![0; self.gate.slots()];
            }
            if let Some(seen) = self.seen_slots.get_mut(slot) {
                *seen = line;
                return;
            }
        }
        self.seen.insert(halves(key), line);
    }

    /// The current row's kept columns, as a JSON object in the file's column order.
    fn kept_columns(&self) -> Option<String> {
        if self.kept.is_empty() {
            return None;
        }
        let object: serde_json::Map<String, serde_json::Value> = self
            .kept
            .iter()
            .map(|(name, index)| {
                let cell = self.row.get(*index).unwrap_or("");
                (name.clone(), serde_json::Value::String(cell.to_owned()))
            })
            .collect();
        Some(serde_json::Value::Object(object).to_string())
    }

    /// The translation a contact gets: their language when the campaign sends it
    /// (`es-MX`, `es_mx` and `ES_MX` are one language), the campaign's language for
    /// an empty cell, else the first fallback; `Err` says why there is none.
    fn language(&self, cell: &str) -> Result<String, String> {
        let template = &self.campaign.template;
        let cell = cell.trim();
        if cell.is_empty() {
            return Ok(template.language.clone());
        }
        let wanted = crate::campaign::normalize_language(cell);
        if let Some(l) = template
            .languages
            .iter()
            .find(|l| crate::campaign::normalize_language(l) == wanted)
        {
            return Ok(l.clone());
        }
        template.language_fallback.first().cloned().ok_or_else(|| {
            format!(
                "no approved translation in `{cell}`; the campaign sends {} (add a \
                 template.language_fallback to send those contacts another)",
                template.languages.join(", ")
            )
        })
    }

    /// Reads every row, handing each to `each`, and returns the totals.
    pub fn run(mut self, mut each: impl FnMut(PlanItem)) -> Result<PlanStats, PlanError> {
        while let Some(item) = self.next_item()? {
            each(item);
        }
        Ok(self.stats)
    }
}
