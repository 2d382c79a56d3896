//! Whether a parsed number is valid in its country's numbering plan: the answer
//! `phonenumber::is_valid` gives, from the same metadata, at a fraction of the cost.
//!
//! `phonenumber` keeps every metadata regex in one `Mutex<RegexCache>` shared by the
//! process: each match takes the lock, SipHashes the pattern text (hundreds of bytes
//! for Mexico) to find the compiled regex in an LRU list, and runs it with Unicode
//! `\d`, whose lazy DFA outgrows its cache and is rebuilt over and over. Validation
//! was ~60% of `check`'s time on a large file, single-threaded by that lock.
//!
//! Here the same patterns are compiled once per country code, anchored at the start
//! (the crate accepts a match that starts at 0, which is exactly what an anchored
//! search finds), with ASCII `\d` (national numbers are ASCII digits, so the answer
//! is the same), and shared read-only across threads. The decision procedure mirrors
//! `phonenumber::validator::is_valid_with` step by step; a test checks both agree
//! on example numbers of every region and variations of them. A pattern this module
//! cannot compile sends its country code back to the crate.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use phonenumber::PhoneNumber;
use phonenumber::metadata::{DATABASE, Descriptor, Metadata};
use regex::{Regex, RegexBuilder};

/// Whether `number`, whose national significant number is `national` (its digits,
/// leading zeros included), is valid.
pub(super) fn is_valid(number: &PhoneNumber, national: &str) -> bool {
    let code = number.code().value();
    match &*rules_for(code) {
        CodeRules::Unknown => false,
        CodeRules::Crate => phonenumber::is_valid(number),
        CodeRules::Single(region) => region.as_ref().is_some_and(|r| r.has_type(national)),
        CodeRules::Shared(regions) => {
            // The first region whose leading digits match, or (for a region
            // without leading digits) whose number types match, decides.
            let chosen = regions.iter().find(|r| match &r.leading_digits {
                Some(leading) => leading.is_match(national),
                None => r.has_type(national),
            });
            chosen.is_some_and(|r| r.has_type(national))
        }
    }
}

/// The compiled rules for one country calling code.
enum CodeRules {
    /// No region uses this code.
    Unknown,
    /// A pattern did not compile here: ask the crate.
    Crate,
    /// One region (or a non-geographic code); `None` when its id is not a
    /// country the crate knows, which the crate treats as invalid.
    Single(Option<Region>),
    /// Several regions share the code (+1, +7, +44...), in the crate's order.
    Shared(Vec<Region>),
}

struct Region {
    leading_digits: Option<Regex>,
    general: Pattern,
    /// Every specific type `number_type` tries (premium rate, toll free, shared
    /// cost, VoIP, personal, pager, UAN, voicemail, fixed line, mobile): a number
    /// is valid when the general pattern and any one of these match.
    types: Vec<Pattern>,
}

impl Region {
    fn new(meta: &Metadata) -> Option<Region> {
        let d = meta.descriptors();
        let types = [
            d.premium_rate(),
            d.toll_free(),
            d.shared_cost(),
            d.voip(),
            d.personal_number(),
            d.pager(),
            d.uan(),
            d.voicemail(),
            d.fixed_line(),
            d.mobile(),
        ];
        Some(Region {
            leading_digits: match meta.leading_digits() {
                Some(leading) => Some(anchored(leading.as_str())?),
                None => None,
            },
            general: Pattern::new(d.general())?,
            types: types
                .into_iter()
                .flatten()
                .map(Pattern::new)
                .collect::<Option<_>>()?,
        })
    }

    /// `number_type(meta, national) != Type::Unknown` in the crate.
    fn has_type(&self, national: &str) -> bool {
        self.general.is_match(national) && self.types.iter().any(|t| t.is_match(national))
    }
}

struct Pattern {
    regex: Regex,
    possible_length: Vec<u16>,
}

impl Pattern {
    fn new(descriptor: &Descriptor) -> Option<Pattern> {
        Some(Pattern {
            regex: anchored(descriptor.national_number().as_str())?,
            possible_length: descriptor.possible_length().to_vec(),
        })
    }

    /// `Descriptor::is_match` in the crate.
    fn is_match(&self, national: &str) -> bool {
        let length_fits = self.possible_length.is_empty()
            || u16::try_from(national.len()).is_ok_and(|n| self.possible_length.contains(&n));
        length_fits && self.regex.is_match(national)
    }
}

/// The crate's pattern, compiled as the crate does (`ignore_whitespace`), matching
/// only at the start. The newline ends any `#` comment before the closing paren.
fn anchored(pattern: &str) -> Option<Regex> {
    RegexBuilder::new(&format!("^(?:{pattern}\n)"))
        .ignore_whitespace(true)
        .unicode(false)
        .build()
        .ok()
}

type Cache = RwLock<HashMap<u16, Arc<CodeRules>>>;

fn rules_for(code: u16) -> Arc<CodeRules> {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Cache::default);
    if let Some(rules) = cache.read().ok().and_then(|map| map.get(&code).cloned()) {
        return rules;
    }
    // Built outside the lock; if two threads race, both results are the same.
    let rules = Arc::new(build(code));
    match cache.write() {
        Ok(mut map) => Arc::clone(map.entry(code).or_insert(rules)),
        Err(_) => rules,
    }
}

fn build(code: u16) -> CodeRules {
    let Some(regions) = DATABASE.region(&code) else {
        return CodeRules::Unknown;
    };
    let compiled = if let [only] = regions[..] {
        let meta = if only == "001" {
            DATABASE.by_code(&code).and_then(|m| m.into_iter().next())
        } else if only.parse::<phonenumber::country::Id>().is_ok() {
            DATABASE.by_id(only)
        } else {
            None
        };
        match meta {
            Some(meta) => Region::new(meta).map(|r| CodeRules::Single(Some(r))),
            None => Some(CodeRules::Single(None)),
        }
    } else {
        regions
            .iter()
            .map(|id| DATABASE.by_id(*id).and_then(Region::new))
            .collect::<Option<Vec<_>>>()
            .map(CodeRules::Shared)
    };
    compiled.unwrap_or(CodeRules::Crate)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both answers for `+{code}{national}`, when the crate parses it.
    fn both(code: u16, national: &str) -> Option<(bool, bool, String)> {
        let text = format!("+{code}{national}");
        let number = phonenumber::parse(None, &text).ok()?;
        let parsed_national = number.national().to_string();
        Some((
            is_valid(&number, &parsed_national),
            phonenumber::is_valid(&number),
            text,
        ))
    }

    fn variations(example: &str) -> Vec<String> {
        let mut out = vec![example.to_owned()];
        let bytes = example.as_bytes();
        for i in 0..bytes.len() {
            for d in [b'0', b'1', b'5', b'9'] {
                let mut changed = bytes.to_vec();
                changed[i] = d;
                out.push(String::from_utf8(changed).unwrap());
            }
        }
        out.push(format!("{example}7"));
        out.push(example[..example.len().saturating_sub(1)].to_owned());
        out
    }

    #[test]
    fn agrees_with_the_crate_on_every_region() {
        let mut checked = 0;
        let mut valid = 0;
        for meta in DATABASE.iter() {
            let d = meta.descriptors();
            let examples = [
                Some(d.general()),
                d.fixed_line(),
                d.mobile(),
                d.toll_free(),
                d.premium_rate(),
                d.shared_cost(),
                d.voip(),
                d.personal_number(),
                d.pager(),
                d.uan(),
                d.voicemail(),
            ];
            for example in examples
                .into_iter()
                .flatten()
                .filter_map(Descriptor::example)
            {
                for national in variations(example) {
                    if let Some((ours, theirs, text)) = both(meta.country_code(), &national) {
                        assert_eq!(ours, theirs, "{text} ({})", meta.id());
                        checked += 1;
                        valid += usize::from(ours);
                    }
                }
            }
        }
        // Enough cases, and both answers well represented, for the check to mean something.
        assert!(checked > 20_000, "only {checked} numbers checked");
        assert!(
            valid > 5_000 && checked - valid > 5_000,
            "{valid} of {checked} valid"
        );
    }

    #[test]
    fn mexican_spellings_agree_with_the_crate() {
        let mx = Some(phonenumber::country::Id::MX);
        for raw in [
            "+52 55 1234 5678",
            "(55) 1234-5678",
            "0052 55 1234 5678",
            "+52 1 55 1234 5678",
            "+52 222 123 4567",
            "+52 999 123 4567",
            "55 0000 0000",
            "+52 12 3456 7890",
            "+1 000 000 0000",
            "+1 415 555 0123",
            "+1 800 555 0123",
            "+44 20 7946 0958",
        ] {
            let Ok(number) = phonenumber::parse(mx, raw) else {
                continue;
            };
            assert_eq!(
                is_valid(&number, &number.national().to_string()),
                phonenumber::is_valid(&number),
                "{raw}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn random_numbers_agree_with_the_crate(
            code in proptest::sample::select(vec![1u16, 7, 34, 39, 44, 52, 54, 55, 57, 61, 800, 979]),
            national in "[0-9]{4,14}",
        ) {
            if let Some((ours, theirs, text)) = both(code, &national) {
                proptest::prop_assert_eq!(ours, theirs, "{}", text);
            }
        }
    }
}
