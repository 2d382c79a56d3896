//! How a journal row is named: (campaign, person, occurrence).
//!
//! A person with a phone number is keyed by the number's consent key, the same for
//! every spelling WhatsApp produces of it, so a number written `+54 9 11…` in one
//! run and `+54 11…` in the next is one person with one row. The key travels with
//! each message as its callback data, so a delivery status finds its row even
//! before the send's answer is recorded.
//!
//! It stands below the journal: the providers write the key into each message and
//! identities resolve a number to its person without reaching into the journal.

use crate::phone::E164;

/// A journal row's key within its campaign.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RowKey {
    /// The person's consent key (a number), or a negative id for a person known
    /// only by a business-scoped user ID.
    pub person: i64,
    /// Which of the person's messages in a recurring campaign; empty for one message
    /// per person.
    pub occurrence: String,
}

impl RowKey {
    /// The row of a person reached by `phone`, for `occurrence` (empty for one per
    /// person).
    pub fn for_phone(phone: E164, occurrence: &str) -> RowKey {
        RowKey {
            person: person_of(phone),
            occurrence: occurrence.to_owned(),
        }
    }
}

/// The journal's person key for a number.
pub fn person_of(phone: E164) -> i64 {
    // Consent keys are at most 15 digits, far inside i64.
    phone.consent_key() as i64
}

const CALLBACK_PREFIX: &str = "wacampaign:";

/// What a message carries as its callback data (Meta's `biz_opaque_callback_data`,
/// Twilio's status-callback query): the campaign and the row.
pub fn callback_data(campaign_id: &str, key: &RowKey) -> String {
    // Pieced together rather than through `format!`: every request carries one.
    let mut person = itoa::Buffer::new();
    let person = person.format(key.person);
    let mut data = String::with_capacity(
        CALLBACK_PREFIX.len() + campaign_id.len() + person.len() + key.occurrence.len() + 2,
    );
    data.push_str(CALLBACK_PREFIX);
    data.push_str(campaign_id);
    data.push(':');
    data.push_str(person);
    if !key.occurrence.is_empty() {
        data.push(':');
        data.push_str(&key.occurrence);
    }
    data
}

/// Reads callback data back into (campaign id, row key). Data written before rows
/// were keyed by person (`wacampaign:CAMPAIGN:E164DIGITS`) reads as that number's
/// person, since a consent key of a consent key is itself.
pub fn parse_callback_data(data: &str) -> Option<(&str, RowKey)> {
    let rest = data.strip_prefix(CALLBACK_PREFIX)?;
    // Campaign ids hold no `:` (campaign::validate_id); occurrences may.
    let (campaign, rest) = rest.split_once(':')?;
    let (person, occurrence) = rest.split_once(':').unwrap_or((rest, ""));
    let person: i64 = person.parse().ok()?;
    let person = if person > 0 {
        E164::from_digits(&person.to_string()).map_or(person, person_of)
    } else {
        person
    };
    Some((
        campaign,
        RowKey {
            person,
            occurrence: occurrence.to_owned(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_spellings_of_one_number_are_one_person() {
        let a = E164::from_digits("5491123456789").unwrap();
        let b = E164::from_digits("541123456789").unwrap();
        assert_eq!(person_of(a), person_of(b));
        let mx_old = E164::from_digits("5215512345678").unwrap();
        let mx = E164::from_digits("525512345678").unwrap();
        assert_eq!(person_of(mx_old), person_of(mx));
    }

    #[test]
    fn callback_data_round_trips_with_and_without_an_occurrence() {
        let key = RowKey {
            person: 525_512_345_678,
            occurrence: "appt:2026-12-01:10:30".into(),
        };
        let data = callback_data("clinic.daily", &key);
        assert_eq!(parse_callback_data(&data), Some(("clinic.daily", key)));
        let plain = RowKey {
            person: -7,
            occurrence: String::new(),
        };
        assert_eq!(
            parse_callback_data(&callback_data("c", &plain)),
            Some(("c", plain))
        );
    }

    #[test]
    fn callback_data_written_by_earlier_versions_finds_the_person() {
        let (campaign, key) = parse_callback_data("wacampaign:promo:5215512345678").unwrap();
        assert_eq!(campaign, "promo");
        assert_eq!(key.person, 525_512_345_678);
        assert_eq!(key.occurrence, "");
        assert_eq!(parse_callback_data("other:promo:1"), None);
        assert_eq!(parse_callback_data("wacampaign:promo:x"), None);
    }
}
