//! Phone numbers: normalisation to E.164 with libphonenumber's metadata, and the
//! variants WhatsApp itself produces for the same person.

use std::fmt;
use std::str::FromStr;

use phonenumber::country::Id as Region;
use thiserror::Error;

mod validity;

/// A phone number in E.164, stored as its digits (at most 15, so a `u64` holds it):
/// hashing, comparing and storing one is cheap on the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164(u64);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PhoneError {
    #[error("empty phone number")]
    Empty,
    #[error("phone number `{0}` contains letters")]
    Letters(String),
    #[error("`{0}` is not a phone number: {1}")]
    Unparseable(String, String),
    #[error("`{raw}` is not a valid number for {region}")]
    Invalid { raw: String, region: String },
    #[error(
        "`{0}` has no country code: write it as +52 55…, or set default_region under \
         [campaign] (--default-region for consent commands)"
    )]
    NoCountryCode(String),
}

/// A region for numbers written without a country code, e.g. `MX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultRegion(Region);

impl FromStr for DefaultRegion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim()
            .to_ascii_uppercase()
            .parse::<Region>()
            .map(DefaultRegion)
            .map_err(|_| format!("`{s}` is not an ISO 3166 country code such as MX, BR or US"))
    }
}

impl fmt::Display for DefaultRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl E164 {
    /// Normalises what a person typed into a spreadsheet: `+52 1 55 1234 5678`,
    /// `(55) 1234-5678`, `0052 55...`, `5512345678`.
    pub fn normalize(raw: &str, region: Option<DefaultRegion>) -> Result<E164, PhoneError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(PhoneError::Empty);
        }
        // libphonenumber reads letters as a keypad (1-800-FLOWERS); in a contact list
        // they are a typo or the wrong column.
        if trimmed
            .chars()
            .any(|c| c.is_alphabetic() && !matches!(c, 'x' | 'X'))
        {
            return Err(PhoneError::Letters(trimmed.to_owned()));
        }
        let mut parsed = phonenumber::parse(region.map(|r| r.0), trimmed).map_err(|e| {
            if region.is_none() && !trimmed.starts_with('+') && !trimmed.starts_with("00") {
                PhoneError::NoCountryCode(trimmed.to_owned())
            } else {
                PhoneError::Unparseable(trimmed.to_owned(), e.to_string())
            }
        })?;
        let mut national = parsed.national().to_string();
        let mut valid = validity::is_valid(&parsed, &national);
        if !valid {
            // Mexico dropped the `1` after +52 for mobiles in 2019, but CRMs still hold
            // `+52 1 55 ...`; libphonenumber no longer accepts it, so retry without.
            let digits = parsed.national().value();
            if parsed.code().value() == 52 && (10_000_000_000..20_000_000_000).contains(&digits) {
                let without = format!("+52{}", digits - 10_000_000_000);
                if let Ok(retry) = phonenumber::parse(None, &without) {
                    let retry_national = retry.national().to_string();
                    if validity::is_valid(&retry, &retry_national) {
                        parsed = retry;
                        national = retry_national;
                        valid = true;
                    }
                }
            }
        }
        // E.164 is the country code then the national number, which is what the
        // crate's E164 formatter writes (after needlessly looking up a format).
        let e164 = format!("{}{national}", parsed.code().value());
        match E164::from_digits(&e164) {
            Some(number) if valid => Ok(number),
            _ => {
                let region = parsed.country().id().map_or_else(
                    || format!("+{}", parsed.code().value()),
                    |id| format!("{id:?}"),
                );
                Err(PhoneError::Invalid {
                    raw: trimmed.to_owned(),
                    region,
                })
            }
        }
    }

    /// Reads a number already in E.164 (`+525512345678` or `525512345678`) without
    /// validating it against the numbering plan: for values this tool wrote itself.
    pub fn from_digits(digits: &str) -> Option<E164> {
        let digits = digits.strip_prefix('+').unwrap_or(digits);
        if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok().map(E164)
    }

    pub fn digits(self) -> u64 {
        self.0
    }

    /// The number's country (ISO 3166-1 alpha-2, e.g. `MX`), from libphonenumber's
    /// metadata; `None` for a number no region claims (a non-geographic +800 number).
    pub fn region(self) -> Option<String> {
        let parsed = phonenumber::parse(None, self.to_string()).ok()?;
        parsed.country().id().map(|id| format!("{id:?}"))
    }

    /// The key consent is matched on: the same for every spelling WhatsApp produces
    /// of one person's number.
    ///
    /// - Mexico: `+52 1 55…` (the old mobile prefix, still in some `wa_id`s) and `+52 55…`.
    /// - Argentina: `+54 9 11…` (mobile) and `+54 11…`.
    /// - Brazil: `+55 11 9xxxx-xxxx` and `+55 11 xxxx-xxxx` (accounts created before
    ///   the ninth digit keep the old form as their `wa_id`).
    pub fn consent_key(self) -> u64 {
        let text = self.0.to_string();
        let strip_at = |index: usize| -> u64 {
            let mut s = text.clone();
            s.remove(index);
            s.parse().unwrap_or(self.0)
        };
        match text.as_bytes() {
            // +52 1 + 10 digits
            [b'5', b'2', b'1', rest @ ..] if rest.len() == 10 => strip_at(2),
            // +54 9 + 10 digits
            [b'5', b'4', b'9', rest @ ..] if rest.len() == 10 => strip_at(2),
            // +55 AA 9 + 8 digits
            [b'5', b'5', _, _, b'9', rest @ ..] if rest.len() == 8 => strip_at(4),
            _ => self.0,
        }
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Written whole rather than through `write!`: every request's body has one.
        f.write_str("+")?;
        f.write_str(itoa::Buffer::new().format(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mx() -> Option<DefaultRegion> {
        Some("MX".parse().unwrap())
    }

    fn norm(raw: &str) -> String {
        E164::normalize(raw, mx()).unwrap().to_string()
    }

    #[test]
    fn spreadsheet_spellings_normalise_to_one_number() {
        assert_eq!(norm("+52 55 1234 5678"), "+525512345678");
        assert_eq!(norm("(55) 1234-5678"), "+525512345678");
        assert_eq!(norm("5512345678"), "+525512345678");
        assert_eq!(norm("0052 55 1234 5678"), "+525512345678");
        assert_eq!(norm(" +52-55-1234-5678 "), "+525512345678");
    }

    #[test]
    fn the_old_mexican_mobile_prefix_is_dropped() {
        assert_eq!(norm("+52 1 55 1234 5678"), "+525512345678");
        assert_eq!(norm("521 55 1234 5678"), "+525512345678");
    }

    #[test]
    fn e164_is_what_the_crate_formats() {
        for raw in [
            "+52 55 1234 5678",
            "+39 02 3661 8300",
            "+44 20 7946 0958",
            "+1 415 555 0123",
            "+55 11 98765 4321",
            "+225 07 07 07 07 07",
        ] {
            let parsed = phonenumber::parse(None, raw).unwrap();
            let formatted = parsed.format().mode(phonenumber::Mode::E164).to_string();
            assert_eq!(E164::normalize(raw, None).unwrap().to_string(), formatted);
        }
    }

    #[test]
    fn bad_numbers_say_why() {
        assert_eq!(E164::normalize("  ", mx()), Err(PhoneError::Empty));
        assert_eq!(
            E164::normalize("55-CALL-NOW", mx()),
            Err(PhoneError::Letters("55-CALL-NOW".into()))
        );
        assert!(matches!(
            E164::normalize("123", mx()),
            Err(PhoneError::Invalid { .. } | PhoneError::Unparseable(..))
        ));
        assert!(
            E164::normalize("5512345678", None).is_err(),
            "no region, no +"
        );
    }

    #[test]
    fn whatsapp_variants_share_a_consent_key() {
        let key = |d: &str| E164::from_digits(d).unwrap().consent_key();
        assert_eq!(key("5215512345678"), key("525512345678"));
        assert_eq!(key("5491123456789"), key("541123456789"));
        assert_eq!(key("5511987654321"), key("551187654321"));
        assert_ne!(key("525512345678"), key("525512345679"));
        assert_eq!(key("14155550123"), 14_155_550_123);
    }

    #[test]
    fn a_number_knows_its_country() {
        let region = |d: &str| E164::from_digits(d).unwrap().region();
        assert_eq!(region("525512345678").as_deref(), Some("MX"));
        assert_eq!(region("14155550123").as_deref(), Some("US"));
        assert_eq!(region("16135550123").as_deref(), Some("CA"));
        assert_eq!(region("5511987654321").as_deref(), Some("BR"));
        assert_eq!(region("919876543210").as_deref(), Some("IN"));
        assert_eq!(region("50588123456").as_deref(), Some("NI"));
    }

    #[test]
    fn regions_parse_case_insensitively() {
        assert_eq!("br".parse::<DefaultRegion>().unwrap().to_string(), "BR");
        assert!("XX".parse::<DefaultRegion>().is_err());
    }
}
