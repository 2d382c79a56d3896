//! A contact's time zones: from a column when the campaign names one, else from
//! the phone number, through libphonenumber's prefix-to-time-zone data (generated
//! into `prefix_zones.rs` by `scripts/gen-prefix-zones.py`; Apache-2.0, see
//! `LICENSE-libphonenumber` and `NOTICE` beside it).

mod prefix_zones;

use std::sync::OnceLock;

use chrono_tz::Tz;

use crate::phone::E164;

/// A time zone by its IANA name (`America/Monterrey`), with a message that says
/// what to write instead.
pub fn parse(name: &str) -> Result<Tz, String> {
    let name = name.trim();
    name.parse::<Tz>().map_err(|_| {
        format!(
            "`{name}` is not a time zone; use an IANA name such as America/Mexico_City, \
             America/Monterrey, America/Sao_Paulo or Europe/Madrid"
        )
    })
}

/// The prefix table with its zones parsed once: (digits, number of digits, zones).
struct Table {
    prefixes: Vec<(u64, u8, u16)>,
    sets: Vec<Vec<Tz>>,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut prefixes: Vec<(u64, u8, u16)> = prefix_zones::PREFIXES
            .iter()
            .filter_map(|(p, set)| Some((p.parse().ok()?, p.len() as u8, *set)))
            .collect();
        prefixes.sort_unstable_by_key(|(p, len, _)| (*len, *p));
        // A zone the time-zone database does not know (a newer libphonenumber
        // than chrono-tz) is skipped: the others of its set still apply.
        let sets = prefix_zones::ZONE_SETS
            .iter()
            .map(|names| names.iter().filter_map(|n| n.parse().ok()).collect())
            .collect();
        Table { prefixes, sets }
    })
}

/// The zones libphonenumber gives a number's longest known prefix: one for most
/// numbers, several for a country-wide prefix of a country that spans zones, none
/// for a number it does not know.
pub fn of_phone(phone: E164) -> &'static [Tz] {
    let table = table();
    let digits = phone.digits();
    let len = digits.checked_ilog10().map_or(1, |l| l + 1) as u8;
    for take in (1..=len.min(9)).rev() {
        let prefix = digits / 10u64.pow(u32::from(len - take));
        if let Ok(at) = table
            .prefixes
            .binary_search_by_key(&(take, prefix), |(p, l, _)| (*l, *p))
        {
            let set = usize::from(table.prefixes[at].2);
            return table.sets.get(set).map_or(&[], Vec::as_slice);
        }
    }
    &[]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zones(number: &str) -> Vec<String> {
        let phone = E164::normalize(number, None).unwrap();
        of_phone(phone)
            .iter()
            .map(|z| z.name().to_owned())
            .collect()
    }

    #[test]
    fn a_countrys_zones_come_from_the_numbers_prefix() {
        // Mexico: Mexico City, Tijuana (Baja California), Cancún (Quintana Roo).
        assert_eq!(zones("+52 55 1234 5678"), ["America/Mexico_City"]);
        assert_eq!(zones("+52 664 123 4567"), ["America/Tijuana"]);
        assert_eq!(zones("+52 998 123 4567"), ["America/Cancun"]);
        assert_eq!(zones("+1 212 555 0123"), ["America/New_York"]);
        assert_eq!(zones("+34 612 345 678"), ["Europe/Madrid"]);
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(
            parse(" America/Monterrey ").unwrap(),
            chrono_tz::America::Monterrey
        );
        assert!(
            parse("America/Gotham")
                .unwrap_err()
                .contains("not a time zone")
        );
    }
}
