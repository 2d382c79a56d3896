//! Which market of Meta's rate card a recipient is priced in: the country of the
//! number (libphonenumber's region), then the country-to-market map. Meta prices
//! some countries on their own and groups the rest into regional markets ("Rest of
//! Latin America"); a country the map does not list is in "Other".

use std::collections::HashMap;
use std::path::Path;

use super::PricingError;
use super::card::{normalise_name, read_table};
use crate::phone::E164;

/// The map shipped with wacampaign (`campaigns/meta-markets.csv`).
pub const DEFAULT_MAP: &str = include_str!("../../campaigns/meta-markets.csv");
pub const DEFAULT_MAP_NAME: &str = "the built-in market map (campaigns/meta-markets.csv)";

/// The market of a country not in the map.
pub const OTHER: &str = "Other";

/// Countries and markets already looked up, by number prefix and length.
#[derive(Debug, Clone, Default)]
pub struct LocateCache(HashMap<(u64, u32), (Option<String>, String)>);

/// Country code to market name.
#[derive(Debug, Clone)]
pub struct MarketMap {
    by_country: HashMap<String, String>,
}

impl MarketMap {
    /// The shipped map.
    pub fn builtin() -> MarketMap {
        MarketMap::parse(DEFAULT_MAP, DEFAULT_MAP_NAME).expect("the shipped market map is valid")
    }

    pub fn load(path: &Path) -> Result<MarketMap, PricingError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PricingError::Read {
            path: shown.clone(),
            source,
        })?;
        MarketMap::parse(&text, &shown)
    }

    /// Reads `country,market` rows (a header row naming both, `#` comments).
    pub fn parse(text: &str, shown: &str) -> Result<MarketMap, PricingError> {
        let table = read_table(text, shown, &["country", "market"])?;
        let country = table.column("country");
        let market = table.column("market");
        let mut by_country = HashMap::new();
        for row in &table.rows {
            let code = row.cell(country).trim().to_ascii_uppercase();
            if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(row.invalid(
                    country,
                    format!(
                        "`{}` is not a country code; use ISO 3166-1 alpha-2 codes such as MX, BR or IN",
                        row.cell(country)
                    ),
                ));
            }
            let name = row.cell(market).trim();
            if name.is_empty() {
                return Err(row.invalid(market, format!("no market for {code}; name its market")));
            }
            by_country.insert(code, name.to_owned());
        }
        Ok(MarketMap { by_country })
    }

    /// The market of a country (`Other` when the map does not list it).
    pub fn market_of_country(&self, country: &str) -> &str {
        self.by_country.get(country).map_or(OTHER, String::as_str)
    }

    /// A recipient's country and market.
    pub fn locate(&self, phone: E164) -> (Option<String>, String) {
        let country = phone.region();
        let market = match &country {
            Some(country) => self.market_of_country(country).to_owned(),
            None => OTHER.to_owned(),
        };
        (country, market)
    }

    /// [`MarketMap::locate`] through `cache`, keyed by the number's first seven digits
    /// (which decide its country, and +1's area code): libphonenumber's lookup costs
    /// microseconds, and a report or an estimate asks it once per message.
    pub fn locate_cached(&self, phone: E164, cache: &mut LocateCache) -> (Option<String>, String) {
        let digits = phone.digits();
        let length = digits.checked_ilog10().unwrap_or(0) + 1;
        let prefix = (digits / 10u64.pow(length.saturating_sub(7)), length);
        cache
            .0
            .entry(prefix)
            .or_insert_with(|| self.locate(phone))
            .clone()
    }

    /// Whether two market names are the same market, as cards spell them.
    pub fn same(a: &str, b: &str) -> bool {
        normalise_name(a) == normalise_name(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countries_fall_into_their_markets() {
        let map = MarketMap::builtin();
        let market = |d: &str| map.locate(E164::from_digits(d).unwrap()).1;
        assert_eq!(market("525512345678"), "Mexico");
        assert_eq!(market("14155550123"), "North America");
        assert_eq!(market("16135550123"), "North America");
        assert_eq!(market("50588123456"), "Rest of Latin America");
        assert_eq!(market("4915123456789"), "Germany");
        assert_eq!(market("41791234567"), "Rest of Western Europe");
        assert_eq!(market("97699123456"), "Rest of Asia Pacific");
        assert_eq!(
            market("3545512345"),
            "Other",
            "Iceland is in no named group"
        );
    }

    #[test]
    fn a_bad_map_row_is_located() {
        let err = MarketMap::parse("country,market\nMX,Mexico\nMEX,Mexico\n", "m.csv")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("m.csv:3:1:"), "{err}");
        assert!(err.contains("ISO 3166-1"), "{err}");
    }
}
