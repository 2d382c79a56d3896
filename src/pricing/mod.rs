//! What a campaign costs: an estimate before sending from Meta's rate card, and
//! afterwards the messages Meta's status webhooks marked billable.
//!
//! Meta charges per delivered template message, at the rate of the recipient's
//! market (the country of the number, grouped as [`market`] says) and the message's
//! category. The card ([`card`]) is the operator's copy of Meta's, in its currency;
//! a market or category it has no rate for is reported with its message count,
//! never counted as zero. Amounts are exact decimals ([`money`]).

pub mod billed;
pub mod card;
pub mod estimate;
pub mod market;
pub mod money;

use std::fmt;

use serde::Serialize;
use thiserror::Error;

pub use card::RateCard;
pub use estimate::{Estimate, Estimator};
pub use market::MarketMap;
pub use money::{Amount, Money};

use crate::campaign::{Campaign, Category, MessageKind};

/// The categories Meta prices separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceCategory {
    Marketing,
    Utility,
    Authentication,
    /// Authentication messages from a business outside the recipient's country, in
    /// the markets that price them apart.
    AuthenticationInternational,
    /// Free-form messages inside a customer-service window.
    Service,
}

impl PriceCategory {
    pub const ALL: [PriceCategory; 5] = [
        PriceCategory::Marketing,
        PriceCategory::Utility,
        PriceCategory::Authentication,
        PriceCategory::AuthenticationInternational,
        PriceCategory::Service,
    ];

    /// Its column in a rate card, and its name in Meta's `pricing.category`.
    pub fn column(self) -> &'static str {
        match self {
            PriceCategory::Marketing => "marketing",
            PriceCategory::Utility => "utility",
            PriceCategory::Authentication => "authentication",
            PriceCategory::AuthenticationInternational => "authentication_international",
            PriceCategory::Service => "service",
        }
    }

    /// Meta's `pricing.category` of a status webhook (`marketing_lite` is priced as
    /// marketing).
    pub fn from_webhook(category: &str) -> Option<PriceCategory> {
        match category
            .trim()
            .to_ascii_lowercase()
            .replace('-', "_")
            .as_str()
        {
            "marketing" | "marketing_lite" => Some(PriceCategory::Marketing),
            "utility" => Some(PriceCategory::Utility),
            "authentication" => Some(PriceCategory::Authentication),
            "authentication_international" => Some(PriceCategory::AuthenticationInternational),
            "service" => Some(PriceCategory::Service),
            _ => None,
        }
    }

    /// What a campaign's messages are priced as.
    pub fn of_campaign(campaign: &Campaign) -> PriceCategory {
        match (campaign.kind, campaign.category) {
            (MessageKind::Session, _) => PriceCategory::Service,
            (_, Category::Marketing) => PriceCategory::Marketing,
            (_, Category::Utility) => PriceCategory::Utility,
            (_, Category::Authentication) => PriceCategory::Authentication,
        }
    }
}

impl fmt::Display for PriceCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.column())
    }
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PricingError {
    #[error(
        "reading {path}: {source}; check pricing.rate_card (or pricing.markets) in the campaign file"
    )]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: String,
        line: u64,
        column: usize,
        message: String,
    },
    #[error(
        "{path}: no header row naming the columns {columns}; see \"Cost\" in the README for the layout"
    )]
    NoHeader { path: String, columns: String },
    #[error("{path}: the rate card has a header but no market rows; add one row per market")]
    Empty { path: String },
}

/// A campaign's pricing, loaded: the card and the market map.
#[derive(Debug, Clone)]
pub struct Pricing {
    pub card: RateCard,
    pub markets: MarketMap,
    pub category: PriceCategory,
    pub business_country: Option<String>,
}

impl Pricing {
    /// The campaign's pricing, when its file has a `[pricing]` section.
    pub fn of(campaign: &Campaign) -> Result<Option<Pricing>, PricingError> {
        let Some(config) = &campaign.pricing else {
            return Ok(None);
        };
        let card = RateCard::load(&config.rate_card)?;
        let markets = match &config.markets {
            Some(path) => MarketMap::load(path)?,
            None => MarketMap::builtin(),
        };
        Ok(Some(Pricing {
            card,
            markets,
            category: PriceCategory::of_campaign(campaign),
            business_country: config.business_country.clone(),
        }))
    }

    pub fn estimator(&self) -> Estimator<'_> {
        Estimator::new(self)
    }
}
