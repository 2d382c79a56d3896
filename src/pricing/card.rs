//! Meta's rate card: one row per market, its currency, and a rate per message
//! category.
//!
//! The columns read, by name, in any order (case, spaces, hyphens and underscores
//! ignored, so Meta's published `Authentication-International` is
//! `authentication_international`): `market`, `currency`, `marketing`, `utility`,
//! `authentication`, and optionally `authentication_international` and `service`.
//! Rows before the header (a published card's title lines) and `#` comments are
//! skipped; `,` `;` and tab delimiters are detected. An empty cell, `n/a` or `-`
//! means the card has no rate there: messages that need it are reported, never
//! priced at zero.

use std::collections::BTreeMap;
use std::path::Path;

use super::money::Amount;
use super::{PriceCategory, PricingError};

/// A market's rates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketRates {
    /// The market as the card names it.
    pub name: String,
    pub rates: BTreeMap<PriceCategory, Amount>,
}

/// A rate card, in one currency.
#[derive(Debug, Clone)]
pub struct RateCard {
    /// Where it was read from, for messages.
    pub source: String,
    pub currency: String,
    /// By normalised market name.
    markets: BTreeMap<String, MarketRates>,
    /// Which categories the card has columns for.
    pub columns: Vec<PriceCategory>,
}

impl RateCard {
    pub fn load(path: &Path) -> Result<RateCard, PricingError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PricingError::Read {
            path: shown.clone(),
            source,
        })?;
        RateCard::parse(&text, &shown)
    }

    pub fn parse(text: &str, shown: &str) -> Result<RateCard, PricingError> {
        let table = read_table(
            text,
            shown,
            &[
                "market",
                "currency",
                "marketing",
                "utility",
                "authentication",
            ],
        )?;
        let market = table.column("market");
        let currency = table.column("currency");
        let columns: Vec<(PriceCategory, usize)> = PriceCategory::ALL
            .iter()
            .filter_map(|c| table.find(c.column()).map(|i| (*c, i)))
            .collect();
        let mut card_currency: Option<(String, u64)> = None;
        let mut markets = BTreeMap::new();
        for row in &table.rows {
            let name = row.cell(market).trim();
            if name.is_empty() {
                return Err(row.invalid(
                    market,
                    "a row without a market name; name its market or remove the row".into(),
                ));
            }
            let code = row.cell(currency).trim().to_ascii_uppercase();
            if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(row.invalid(
                    currency,
                    format!(
                        "`{}` is not a currency code; use ISO 4217, e.g. USD, EUR, INR",
                        row.cell(currency)
                    ),
                ));
            }
            match &card_currency {
                None => card_currency = Some((code.clone(), row.line)),
                Some((first, line)) if *first != code => {
                    return Err(row.invalid(
                        currency,
                        format!(
                            "{code}, but line {line} is in {first}: a rate card is in one currency; use the card Meta publishes for your billing currency"
                        ),
                    ));
                }
                Some(_) => {}
            }
            let mut rates = BTreeMap::new();
            for (category, index) in &columns {
                let cell = row.cell(*index).trim();
                if matches!(cell.to_ascii_lowercase().as_str(), "" | "-" | "n/a" | "na") {
                    continue;
                }
                let rate = Amount::parse(cell).ok_or_else(|| {
                    row.invalid(
                        *index,
                        format!(
                            "the {} rate for {name} is `{cell}`, not a number; write it as 0.0250 (or leave it empty when the market has none)",
                            category.column()
                        ),
                    )
                })?;
                rates.insert(*category, rate);
            }
            markets.insert(
                normalise_name(name),
                MarketRates {
                    name: name.to_owned(),
                    rates,
                },
            );
        }
        let Some((currency, _)) = card_currency else {
            return Err(PricingError::Empty {
                path: shown.to_owned(),
            });
        };
        Ok(RateCard {
            source: shown.to_owned(),
            currency,
            markets,
            columns: columns.iter().map(|(c, _)| *c).collect(),
        })
    }

    pub fn market(&self, name: &str) -> Option<&MarketRates> {
        self.markets.get(&normalise_name(name))
    }

    /// The rate for a category in a market, if the card has one.
    pub fn rate(&self, market: &str, category: PriceCategory) -> Option<Amount> {
        self.market(market)
            .and_then(|m| m.rates.get(&category).copied())
    }
}

/// A market or column name compared loosely: case, spacing, `&`/`and`, hyphens and
/// underscores do not matter.
pub(crate) fn normalise_name(name: &str) -> String {
    name.to_lowercase()
        .replace('&', " and ")
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A CSV table found by its header row.
pub(crate) struct Table {
    header: Vec<String>,
    pub rows: Vec<TableRow>,
}

pub(crate) struct TableRow {
    source: String,
    pub line: u64,
    cells: Vec<String>,
}

impl Table {
    pub fn find(&self, column: &str) -> Option<usize> {
        let wanted = normalise_name(column).replace(' ', "");
        self.header
            .iter()
            .position(|h| normalise_name(h).replace(' ', "") == wanted)
    }

    /// A column [`read_table`] already required.
    pub fn column(&self, column: &str) -> usize {
        self.find(column).unwrap_or(usize::MAX)
    }
}

impl TableRow {
    pub fn cell(&self, index: usize) -> &str {
        self.cells.get(index).map_or("", String::as_str)
    }

    /// An error at this row's cell, with its line and column.
    pub fn invalid(&self, index: usize, message: String) -> PricingError {
        let column = 1 + self
            .cells
            .iter()
            .take(index)
            .map(|c| c.chars().count() + 1)
            .sum::<usize>();
        PricingError::Invalid {
            path: self.source.clone(),
            line: self.line,
            column,
            message,
        }
    }
}

/// Reads a CSV whose header row is the first to name every `required` column;
/// lines before it and `#` comments are skipped, blank rows ignored.
pub(crate) fn read_table(
    text: &str,
    shown: &str,
    required: &[&str],
) -> Result<Table, PricingError> {
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let delimiter = detect_delimiter(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .delimiter(delimiter)
        .from_reader(text.as_bytes());
    let mut header: Option<Vec<String>> = None;
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| PricingError::Invalid {
            path: shown.to_owned(),
            line: e.position().map_or(0, csv::Position::line),
            column: 1,
            message: format!("not CSV: {e}"),
        })?;
        let line = record.position().map_or(0, csv::Position::line);
        let cells: Vec<String> = record.iter().map(str::to_owned).collect();
        if cells.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        match &header {
            None => {
                let names: Vec<String> = cells
                    .iter()
                    .map(|c| normalise_name(c).replace(' ', ""))
                    .collect();
                if required.iter().all(|r| {
                    names
                        .iter()
                        .any(|n| *n == normalise_name(r).replace(' ', ""))
                }) {
                    header = Some(cells);
                }
            }
            Some(_) => rows.push(TableRow {
                source: shown.to_owned(),
                line,
                cells,
            }),
        }
    }
    let Some(header) = header else {
        return Err(PricingError::NoHeader {
            path: shown.to_owned(),
            columns: required.join(", "),
        });
    };
    Ok(Table { header, rows })
}

/// `,` unless the first line that is not a comment has more `;` or tabs.
fn detect_delimiter(text: &str) -> u8 {
    let line = text
        .lines()
        .find(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .unwrap_or("");
    let count = |c: char| line.matches(c).count();
    [(b'\t', count('\t')), (b';', count(';'))]
        .into_iter()
        .filter(|(_, n)| *n > count(','))
        .max_by_key(|(_, n)| *n)
        .map_or(b',', |(d, _)| d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_layout_with_title_rows_and_semicolons_is_read() {
        let text = "WhatsApp Business Platform pricing;;;;;;\n\
                    Rates effective 2025-07-01;;;;;;\n\
                    Market;Currency;Marketing;Utility;Authentication;Authentication-International;Service\n\
                    Rest of Central & Eastern Europe;EUR;0,0800;0,0190;0,0190;;0\n\
                    India;EUR;0,0099;0,0013;0,0013;0,0259;0\n";
        let card = RateCard::parse(text, "card.csv").unwrap();
        assert_eq!(card.currency, "EUR");
        assert_eq!(
            card.rate(
                "Rest of Central and Eastern Europe",
                PriceCategory::Marketing
            )
            .unwrap()
            .to_string(),
            "0.08"
        );
        assert_eq!(
            card.rate("india", PriceCategory::AuthenticationInternational)
                .unwrap()
                .to_string(),
            "0.0259"
        );
        assert_eq!(
            card.rate(
                "Rest of Central & Eastern Europe",
                PriceCategory::AuthenticationInternational
            ),
            None
        );
    }

    #[test]
    fn a_non_numeric_rate_is_located_with_what_to_do() {
        let text = "market,currency,marketing,utility,authentication\n\
                    Mexico,USD,0.0305,0.0085,0.0085\n\
                    Brazil,USD,0.0625,cheap,0.0068\n";
        let err = RateCard::parse(text, "card.csv").unwrap_err().to_string();
        assert!(err.starts_with("card.csv:3:19:"), "{err}");
        assert!(
            err.contains("the utility rate for Brazil is `cheap`"),
            "{err}"
        );
    }

    #[test]
    fn a_card_in_two_currencies_is_refused() {
        let text = "market,currency,marketing,utility,authentication\n\
                    Mexico,USD,0.0305,0.0085,0.0085\n\
                    Brazil,BRL,0.30,0.04,0.04\n";
        let err = RateCard::parse(text, "card.csv").unwrap_err().to_string();
        assert!(err.starts_with("card.csv:3:8:"), "{err}");
        assert!(err.contains("line 2 is in USD"), "{err}");
    }

    #[test]
    fn a_card_without_the_columns_says_which_it_needs() {
        let err = RateCard::parse("country,price\nMX,1\n", "card.csv")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("market, currency, marketing, utility, authentication"),
            "{err}"
        );
    }
}
