//! The cost estimate of a plan: messages by market and category, times the card's
//! rates, in the card's currency.

use std::collections::BTreeMap;

use serde::Serialize;

use anyhow::bail;
use rusqlite::Connection;

use super::market::LocateCache;
use super::money::{Amount, Money};
use super::{PriceCategory, Pricing};
use crate::journal::{self, State};
use crate::phone::E164;

/// One market and category of an estimate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    pub market: String,
    pub category: PriceCategory,
    pub messages: u64,
    pub rate: Amount,
    pub cost: Amount,
}

/// Messages the card has no rate for: reported, never counted as zero.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unpriced {
    pub market: String,
    pub category: PriceCategory,
    pub messages: u64,
    /// `no market` (the card has no row for it) or `no rate` (its cell is empty).
    pub reason: String,
}

/// What a plan is estimated to cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Estimate {
    pub currency: String,
    pub rate_card: String,
    pub lines: Vec<Line>,
    /// The sum of the priced lines.
    pub total: Amount,
    pub priced_messages: u64,
    pub unpriced: Vec<Unpriced>,
    pub unpriced_messages: u64,
    /// What the estimate does not account for.
    pub leaves_out: Vec<String>,
}

impl Estimate {
    pub fn total_money(&self) -> Money {
        Money {
            amount: self.total,
            currency: self.currency.clone(),
        }
    }

    /// The estimate as a person reads it, under `heading`.
    pub fn render(&self, heading: &str) -> String {
        let mut out = format!(
            "{heading} {} {} for {} messages (estimate from {}; Meta bills delivered messages)\n",
            self.total, self.currency, self.priced_messages, self.rate_card
        );
        for line in &self.lines {
            out.push_str(&format!(
                "  {:<32} {:<28} {:>7} × {} = {} {}\n",
                line.market, line.category, line.messages, line.rate, line.cost, self.currency
            ));
        }
        for u in &self.unpriced {
            out.push_str(&format!(
                "  no rate for {} messages to market {} ({}: {}); add it to the rate card\n",
                u.messages, u.market, u.category, u.reason
            ));
        }
        for note in &self.leaves_out {
            out.push_str(&format!("  leaves out: {note}\n"));
        }
        out
    }
}

/// Counts recipients by market and category.
pub struct Estimator<'a> {
    pricing: &'a Pricing,
    counts: BTreeMap<(String, PriceCategory), u64>,
    /// Authentication messages priced domestic because no business country is set,
    /// in markets whose card has an international rate.
    international_unknown: u64,
    located: LocateCache,
}

impl<'a> Estimator<'a> {
    pub fn new(pricing: &'a Pricing) -> Estimator<'a> {
        Estimator {
            pricing,
            counts: BTreeMap::new(),
            international_unknown: 0,
            located: LocateCache::default(),
        }
    }

    /// One message to a contact: by its number's market, or with an unknown market
    /// for one known by a BSUID alone.
    pub fn add_contact(&mut self, phone: Option<E164>) {
        match phone {
            Some(phone) => self.add(phone),
            None => self.add_unknown(1),
        }
    }

    /// One message to `phone`.
    pub fn add(&mut self, phone: E164) {
        self.add_n(phone, 1);
    }

    pub fn add_n(&mut self, phone: E164, n: u64) {
        let (country, market) = self.pricing.markets.locate_cached(phone, &mut self.located);
        let category = self.category_for(country.as_deref(), &market);
        *self.counts.entry((market, category)).or_default() += n;
    }

    /// `n` messages to `phone` priced as `category` (as a webhook reports it).
    pub fn add_as(&mut self, phone: E164, category: PriceCategory, n: u64) {
        let (_, market) = self.pricing.markets.locate_cached(phone, &mut self.located);
        *self.counts.entry((market, category)).or_default() += n;
    }

    /// The campaign's category.
    pub fn default_category(&self) -> PriceCategory {
        self.pricing.category
    }

    /// Messages whose recipient is not known by number (a BSUID): market unknown.
    pub fn add_unknown(&mut self, n: u64) {
        *self
            .counts
            .entry((
                "unknown (no phone number)".to_owned(),
                self.pricing.category,
            ))
            .or_default() += n;
    }

    fn category_for(&mut self, country: Option<&str>, market: &str) -> PriceCategory {
        let category = self.pricing.category;
        if category != PriceCategory::Authentication {
            return category;
        }
        let card = &self.pricing.card;
        if card
            .rate(market, PriceCategory::AuthenticationInternational)
            .is_none()
        {
            return category;
        }
        match (&self.pricing.business_country, country) {
            (Some(business), Some(country)) if !business.eq_ignore_ascii_case(country) => {
                PriceCategory::AuthenticationInternational
            }
            (None, _) => {
                self.international_unknown += 1;
                category
            }
            _ => category,
        }
    }

    pub fn finish(self) -> Estimate {
        let card = &self.pricing.card;
        let mut lines = Vec::new();
        let mut unpriced = Vec::new();
        for ((market, category), messages) in self.counts {
            match card.market(&market) {
                None => unpriced.push(Unpriced {
                    market,
                    category,
                    messages,
                    reason: "no market row in the card".to_owned(),
                }),
                Some(rates) => match rates.rates.get(&category) {
                    None => unpriced.push(Unpriced {
                        market: rates.name.clone(),
                        category,
                        messages,
                        reason: format!("no {category} rate in the card"),
                    }),
                    Some(rate) => lines.push(Line {
                        market: rates.name.clone(),
                        category,
                        messages,
                        rate: *rate,
                        cost: rate.times(messages),
                    }),
                },
            }
        }
        let mut leaves_out = vec![
            "volume tiers: Meta lowers utility and authentication rates past monthly volume \
             thresholds; this card gives list rates only"
                .to_owned(),
            "undelivered messages, which Meta does not charge, and taxes".to_owned(),
        ];
        if self.pricing.category == PriceCategory::Utility {
            leaves_out.push(
                "utility messages delivered inside an open customer-service window, which are free"
                    .to_owned(),
            );
        }
        if self.international_unknown > 0 {
            leaves_out.push(format!(
                "authentication-international rates: {} messages go to markets that have one; \
                 set pricing.business_country to apply it",
                self.international_unknown
            ));
        }
        Estimate {
            currency: card.currency.clone(),
            rate_card: card.source.clone(),
            total: lines.iter().map(|l| l.cost).sum(),
            priced_messages: lines.iter().map(|l| l.messages).sum(),
            unpriced_messages: unpriced.iter().map(|u| u.messages).sum(),
            lines,
            unpriced,
            leaves_out,
        }
    }
}

/// Prices a run's messages as `send` counts them: every deferred row, and fresh
/// ones (those held in doubt when they are resent, then the planned ones, in plan
/// order) up to `--limit`. A run ([`of_journal`]) and a dry run (which reads the
/// journal without writing the plan into it) price through this one rule, so both
/// estimate the same messages.
pub struct RunPricer<'a> {
    estimator: Estimator<'a>,
    limit: Option<u64>,
    fresh: u64,
}

impl<'a> RunPricer<'a> {
    pub fn new(pricing: &'a Pricing, limit: Option<u64>) -> RunPricer<'a> {
        RunPricer {
            estimator: pricing.estimator(),
            limit,
            fresh: 0,
        }
    }

    /// A deferred row: due again in this run whatever `--limit` says.
    pub fn deferred(&mut self, phone: Option<E164>) {
        self.estimator.add_contact(phone);
    }

    /// A row sent as new (planned, or in doubt and resent): counted while under
    /// `--limit`, in the order given.
    pub fn fresh(&mut self, phone: Option<E164>) {
        if self.limit.is_some_and(|cap| self.fresh >= cap) {
            return;
        }
        self.fresh += 1;
        self.estimator.add_contact(phone);
    }

    pub fn finish(self) -> Estimate {
        self.estimator.finish()
    }
}

/// The estimate of what a run will send, from the journal: the deferred rows, the
/// planned ones (the first `limit`), and those held in doubt when they are resent.
pub fn of_journal(
    conn: &Connection,
    pricing: &Pricing,
    campaign_id: &str,
    limit: Option<u64>,
    resend_in_doubt: bool,
) -> anyhow::Result<Estimate> {
    let Some((record, _)) = journal::campaign_record(conn, campaign_id)? else {
        return Ok(pricing.estimator().finish());
    };
    let mut pricer = RunPricer::new(pricing, limit);
    let mut states = vec![State::Deferred, State::Planned];
    if resend_in_doubt {
        states.insert(0, State::InDoubt);
    }
    for state in states {
        journal::rows(conn, campaign_id, record.plan_run, Some(state), |row| {
            let phone = E164::from_digits(&row.phone);
            if state == State::Deferred {
                pricer.deferred(phone);
            } else {
                pricer.fresh(phone);
            }
            Ok(())
        })?;
    }
    Ok(pricer.finish())
}

/// Refuses a run whose estimate is above `max`, in another currency than `max`,
/// or incomplete (messages the card has no rate for).
pub fn check_max_cost(estimate: Option<&Estimate>, max: &Money) -> anyhow::Result<()> {
    let Some(estimate) = estimate else {
        bail!(
            "--max-cost {max} needs a cost estimate, and the campaign has no rate card: add \
             [pricing] rate_card = \"...csv\" to the campaign file (see \"Cost\" in the README). \
             Nothing was sent"
        );
    };
    if estimate.currency != max.currency {
        bail!(
            "--max-cost is in {}, but the rate card {} is in {}: give the limit in {} \
             (e.g. --max-cost {}{}). Nothing was sent",
            max.currency,
            estimate.rate_card,
            estimate.currency,
            estimate.currency,
            max.amount,
            estimate.currency
        );
    }
    if estimate.unpriced_messages > 0 {
        let missing: Vec<String> = estimate
            .unpriced
            .iter()
            .map(|u| format!("{} messages to market {}", u.messages, u.market))
            .collect();
        bail!(
            "the cost cannot be checked against --max-cost {max}: the rate card {} has no rate \
             for {} ({}); add those markets' rates to it. Nothing was sent",
            estimate.rate_card,
            estimate.unpriced_messages,
            missing.join(", ")
        );
    }
    if estimate.total > max.amount {
        bail!(
            "the run is estimated at {} {}, above --max-cost {max}: nothing was sent. \
             Send fewer (--limit N), or raise --max-cost",
            estimate.total,
            estimate.currency
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::{MarketMap, RateCard};

    const CARD: &str = "market,currency,marketing,utility,authentication,authentication_international\n\
                        India,USD,0.0107,0.0014,0.0014,0.0280\n\
                        Mexico,USD,0.0305,0.0085,0.0085,\n";

    fn pricing(category: PriceCategory, business: Option<&str>) -> Pricing {
        Pricing {
            card: RateCard::parse(CARD, "card.csv").unwrap(),
            markets: MarketMap::builtin(),
            category,
            business_country: business.map(str::to_owned),
        }
    }

    fn phone(digits: &str) -> E164 {
        E164::from_digits(digits).unwrap()
    }

    #[test]
    fn authentication_abroad_is_priced_international_where_the_card_has_it() {
        let p = pricing(PriceCategory::Authentication, Some("MX"));
        let mut e = p.estimator();
        e.add(phone("919876543210"));
        e.add(phone("525512345678"));
        let estimate = e.finish();
        let by: Vec<(&str, PriceCategory, String)> = estimate
            .lines
            .iter()
            .map(|l| (l.market.as_str(), l.category, l.cost.to_string()))
            .collect();
        assert_eq!(
            by,
            [
                (
                    "India",
                    PriceCategory::AuthenticationInternational,
                    "0.028".to_owned()
                ),
                ("Mexico", PriceCategory::Authentication, "0.0085".to_owned()),
            ]
        );
        assert_eq!(estimate.total.to_string(), "0.0365");

        // Without the business's country the domestic rate is used, and said.
        let p = pricing(PriceCategory::Authentication, None);
        let mut e = p.estimator();
        e.add(phone("919876543210"));
        let estimate = e.finish();
        assert_eq!(estimate.total.to_string(), "0.0014");
        assert!(
            estimate
                .leaves_out
                .iter()
                .any(|n| n.contains("set pricing.business_country")),
            "{:?}",
            estimate.leaves_out
        );
    }

    #[test]
    fn max_cost_refuses_above_in_another_currency_or_incomplete() {
        let p = pricing(PriceCategory::Utility, None);
        let mut e = p.estimator();
        e.add(phone("525512345678"));
        let complete = e.finish();
        let max = |t: &str| t.parse::<Money>().unwrap();
        assert!(
            check_max_cost(Some(&complete), &max("0.0085USD")).is_ok(),
            "equal is within"
        );
        let above = check_max_cost(Some(&complete), &max("0.0084USD")).unwrap_err();
        assert!(above.to_string().contains("above --max-cost"), "{above}");
        let currency = check_max_cost(Some(&complete), &max("1EUR")).unwrap_err();
        assert!(
            currency.to_string().contains("--max-cost is in EUR"),
            "{currency}"
        );
        assert!(
            check_max_cost(None, &max("1USD")).is_err(),
            "no card, no limit"
        );

        let mut e = p.estimator();
        e.add(phone("4915123456789"));
        let incomplete = e.finish();
        assert_eq!(incomplete.unpriced_messages, 1);
        assert!(incomplete.total.is_zero());
        let err = check_max_cost(Some(&incomplete), &max("100USD")).unwrap_err();
        assert!(
            err.to_string().contains("1 messages to market Germany"),
            "{err}"
        );
    }
}
