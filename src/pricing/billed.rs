//! What Meta says it bills: the `pricing` object of status webhooks (`billable`,
//! `category`, `type`), per message of a campaign. The webhooks carry no amount,
//! so the cost shown is the billable count times the card's rate: an estimate.

use std::collections::BTreeMap;

use rusqlite::Connection;
use serde::Serialize;

use super::estimate::Estimate;
use super::{PriceCategory, Pricing};
use crate::phone::E164;

/// The `pricing.type` values of messages Meta does not charge for.
pub const FREE_TYPES: &[&str] = &["free_customer_service", "free_entry_point"];

/// A campaign's messages by what Meta's webhooks said about their billing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Billed {
    /// Billable messages by `pricing.category`.
    pub billable: BTreeMap<String, u64>,
    /// Messages Meta marked free, by `pricing.type` (or `billable: false`).
    pub free: BTreeMap<String, u64>,
    /// Billable count × the card's rate, when the campaign has a rate card. An
    /// estimate: the webhooks carry no amount.
    pub estimated_cost: Option<Estimate>,
}

impl Billed {
    pub fn is_empty(&self) -> bool {
        self.billable.is_empty() && self.free.is_empty()
    }
}

/// The billing of `campaign_id`'s messages, from the latest status of each that
/// carried a `pricing` object (as folded onto its journal row).
pub fn billed(
    conn: &Connection,
    campaign_id: &str,
    pricing: Option<&Pricing>,
) -> rusqlite::Result<Billed> {
    let mut tally = Tally::new(pricing);
    crate::journal::query::priced(conn, campaign_id, |recipient, billable, category, kind| {
        tally.add(recipient.as_deref(), billable, category, kind);
    })?;
    Ok(tally.finish())
}

/// [`Billed`] being counted, one priced message at a time: for a caller that reads
/// every message anyway (the report).
pub struct Tally<'a> {
    billed: Billed,
    estimator: Option<super::Estimator<'a>>,
}

impl<'a> Tally<'a> {
    pub fn new(pricing: Option<&'a Pricing>) -> Self {
        Tally {
            billed: Billed::default(),
            estimator: pricing.map(Pricing::estimator),
        }
    }

    /// One message's latest pricing: where it went (E.164 digits, or as Twilio
    /// names it), `billable`, `category`, `type`.
    pub fn add(
        &mut self,
        recipient: Option<&str>,
        billable: Option<bool>,
        category: Option<String>,
        kind: Option<String>,
    ) {
        let free_type = kind
            .as_deref()
            .filter(|k| FREE_TYPES.contains(k))
            .map(str::to_owned);
        let category = category.unwrap_or_else(|| "unknown".to_owned());
        match (free_type, billable) {
            (Some(kind), _) => *self.billed.free.entry(kind).or_default() += 1,
            (None, Some(false)) => {
                *self
                    .billed
                    .free
                    .entry("not billable".to_owned())
                    .or_default() += 1;
            }
            (None, _) => {
                if let Some(estimator) = self.estimator.as_mut() {
                    let price = PriceCategory::from_webhook(&category)
                        .unwrap_or(estimator.default_category());
                    match recipient
                        .and_then(|r| E164::from_digits(r.trim().trim_start_matches("whatsapp:")))
                    {
                        Some(phone) => estimator.add_as(phone, price, 1),
                        None => estimator.add_unknown(1),
                    }
                }
                *self.billed.billable.entry(category).or_default() += 1;
            }
        }
    }

    pub fn finish(mut self) -> Billed {
        self.billed.estimated_cost = self.estimator.map(super::Estimator::finish);
        self.billed
    }
}
