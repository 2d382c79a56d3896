//! Amounts of money as exact decimals: a rate card's rates have four to six
//! decimals, and a cost is a count times a rate, so floating point would make the
//! estimate differ from a computation by hand.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// Decimal places kept: more than any rate card uses.
const SCALE: u32 = 9;
const UNIT: i128 = 10_i128.pow(SCALE);

/// A non-negative decimal amount, exact to nine decimals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(i128);

impl Amount {
    pub const ZERO: Amount = Amount(0);

    /// Reads `0.0250`, `0,0250` (a decimal comma), `$0.025`, `25`; `None` when it is
    /// not a non-negative number with at most nine decimals.
    pub fn parse(text: &str) -> Option<Amount> {
        let text = text.trim().trim_start_matches(['$', '€', '£', '₹']).trim();
        let text = text.replace(',', ".");
        let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
        if whole.is_empty() && fraction.is_empty()
            || fraction.len() > SCALE as usize
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !fraction.bytes().all(|b| b.is_ascii_digit())
            || whole.len() > 18
        {
            return None;
        }
        let whole: i128 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        let mut frac: i128 = if fraction.is_empty() {
            0
        } else {
            fraction.parse().ok()?
        };
        frac *= 10_i128.pow(SCALE - fraction.len() as u32);
        Some(Amount(whole * UNIT + frac))
    }

    /// As a float, for ratios shown rounded (cost per read); never for sums.
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / UNIT as f64
    }

    /// This amount `n` times.
    pub fn times(self, n: u64) -> Amount {
        Amount(self.0 * i128::from(n))
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::Add for Amount {
    type Output = Amount;
    fn add(self, other: Amount) -> Amount {
        Amount(self.0 + other.0)
    }
}

impl std::ops::AddAssign for Amount {
    fn add_assign(&mut self, other: Amount) {
        self.0 += other.0;
    }
}

impl std::iter::Sum for Amount {
    fn sum<I: Iterator<Item = Amount>>(iter: I) -> Amount {
        iter.fold(Amount::ZERO, |a, b| a + b)
    }
}

/// Exact, with at least two decimals: `0.1854`, `12.50`, `0.00`.
impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / UNIT;
        let fraction = format!("{:09}", self.0 % UNIT);
        let mut fraction = fraction.trim_end_matches('0').to_owned();
        while fraction.len() < 2 {
            fraction.push('0');
        }
        write!(f, "{whole}.{fraction}")
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An amount in a currency, as `--max-cost` takes it: `25USD`, `25 USD`, `USD 25`,
/// `1500.50 INR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    pub amount: Amount,
    /// ISO 4217, upper case.
    pub currency: String,
}

impl FromStr for Money {
    type Err = String;

    fn from_str(text: &str) -> Result<Money, String> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let split = compact.find(|c: char| c.is_ascii_alphabetic()).map(|i| {
            if i == 0 {
                let end = compact
                    .find(|c: char| !c.is_ascii_alphabetic())
                    .unwrap_or(compact.len());
                (&compact[end..], &compact[..end])
            } else {
                (&compact[..i], &compact[i..])
            }
        });
        let refuse = || {
            format!(
                "`{text}` is not an amount with its currency; write it as the rate card's \
                 currency follows it, e.g. `25USD`, `\"25 USD\"` or `1500INR`"
            )
        };
        let Some((number, currency)) = split else {
            return Err(refuse());
        };
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(refuse());
        }
        let amount = Amount::parse(number).ok_or_else(refuse)?;
        Ok(Money {
            amount,
            currency: currency.to_ascii_uppercase(),
        })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(text: &str) -> Amount {
        Amount::parse(text).unwrap()
    }

    #[test]
    fn amounts_are_exact_decimals() {
        assert_eq!(a("0.0618").times(3).to_string(), "0.1854");
        assert_eq!((a("0.1") + a("0.2")).to_string(), "0.30");
        assert_eq!(a("0,0250").to_string(), "0.025");
        assert_eq!(a("$1").to_string(), "1.00");
        assert_eq!(a(".5").to_string(), "0.50");
        for bad in ["", "abc", "-1", "1.2.3", "0.0000000001", "1e3", "."] {
            assert_eq!(Amount::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn max_cost_takes_an_amount_and_a_currency() {
        let m = |t: &str| t.parse::<Money>().unwrap().to_string();
        assert_eq!(m("25USD"), "25.00 USD");
        assert_eq!(m("25 usd"), "25.00 USD");
        assert_eq!(m("USD 25.5"), "25.50 USD");
        assert_eq!(m("1500.75INR"), "1500.75 INR");
        for bad in ["25", "USD", "25 US", "25 dollars", "-5USD", "abcUSD"] {
            assert!(bad.parse::<Money>().is_err(), "{bad:?}");
        }
    }
}
