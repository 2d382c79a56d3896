//! What Meta says it bills: the `pricing` object of status webhooks (`billable`,
//! `category`, `type`), per message of a campaign. The webhooks carry no amount,
//! so the cost shown is the billable count times the card's rate: an estimate.

use std::collections::BTreeMap;

use rusqlite::{Connection, params};
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
/// carried a `pricing` object.
pub fn billed(
    conn: &Connection,
    campaign_id: &str,
    pricing: Option<&Pricing>,
) -> rusqlite::Result<Billed> {
    let mut stmt = conn.prepare_cached(
        // Each message's latest status with pricing: the ids from the
        // message_statuses_billing index alone, then one row per message.
        "SELECT s.recipient, s.billable, s.pricing_category, s.pricing_type
         FROM (SELECT max(id) AS id FROM message_statuses
               WHERE campaign_id = ?1
                 AND (billable IS NOT NULL OR pricing_category IS NOT NULL)
               GROUP BY message_id) latest
         JOIN message_statuses s ON s.id = latest.id",
    )?;
    let rows = stmt.query_map(params![campaign_id], |r| {
        Ok((
            r.get::<_, Option<String>>(0)?,
            r.get::<_, Option<bool>>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, Option<String>>(3)?,
        ))
    })?;
    let mut billed = Billed::default();
    let mut estimator = pricing.map(Pricing::estimator);
    for row in rows {
        let (recipient, billable, category, kind) = row?;
        let free_type = kind
            .as_deref()
            .filter(|k| FREE_TYPES.contains(k))
            .map(str::to_owned);
        let category = category.unwrap_or_else(|| "unknown".to_owned());
        match (free_type, billable) {
            (Some(kind), _) => *billed.free.entry(kind).or_default() += 1,
            (None, Some(false)) => *billed.free.entry("not billable".to_owned()).or_default() += 1,
            (None, _) => {
                *billed.billable.entry(category.clone()).or_default() += 1;
                if let Some(estimator) = estimator.as_mut() {
                    let category = PriceCategory::from_webhook(&category)
                        .unwrap_or(estimator.default_category());
                    match recipient
                        .as_deref()
                        .and_then(|r| E164::from_digits(r.trim().trim_start_matches("whatsapp:")))
                    {
                        Some(phone) => estimator.add_as(phone, category, 1),
                        None => estimator.add_unknown(1),
                    }
                }
            }
        }
    }
    billed.estimated_cost = estimator.map(super::Estimator::finish);
    Ok(billed)
}
