//! Test sends (`send --to`): the campaign's message, rendered for one of its
//! contacts, sent to the operator's own numbers before the real run.
//!
//! The numbers pass the consent gate like anyone (the marketer records their own
//! opt-in with `consent opt-in`). Each message is journaled under an occurrence
//! starting with `test:` in a plan run of its own, so it never marks the real
//! contact served and never counts in the campaign's totals.

use chrono::{DateTime, SecondsFormat, Utc};
use thiserror::Error;

use crate::campaign::Campaign;
use crate::exclusion::{ConsentGate, Exclusion};
use crate::occurrence::TEST_PREFIX;
use crate::phone::{E164, PhoneError};
use crate::plan::{PlanError, PlanItem, Planner, Recipient};

/// How long a test message may wait for its turn: one left planned by a killed
/// test send expires rather than going out with a later one.
const TEST_SEND_BY_MINUTES: i64 = 10;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TestSendError {
    #[error("--to `{raw}`: {source}")]
    InvalidNumber { raw: String, source: PhoneError },
    #[error(
        "--to {number}: {reason}. Test numbers need a recorded opt-in like anyone; record \
         your own with `wacampaign consent opt-in '{number}' --purpose {purpose} --method \
         operator --source 'test number of <your name>'`. Nothing was sent"
    )]
    NoConsent {
        number: String,
        reason: Exclusion,
        purpose: String,
    },
    #[error("{path}: no contact is eligible, so there is no message to render for a test send")]
    NoEligible { path: String },
    #[error("{path}: line {line} is not a contact row (the file has no data on that line)")]
    RowNotFound { path: String, line: u64 },
    #[error("{path}: line {line} is left out ({reason}); pick an eligible row with --row")]
    RowExcluded {
        path: String,
        line: u64,
        reason: Exclusion,
    },
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// The numbers of `--to`, each allowed to receive the campaign.
pub fn numbers(
    raw: &[String],
    campaign: &Campaign,
    gate: &dyn ConsentGate,
) -> Result<Vec<E164>, TestSendError> {
    let mut numbers: Vec<E164> = Vec::with_capacity(raw.len());
    for text in raw.iter().map(|t| t.trim()).filter(|t| !t.is_empty()) {
        let phone = E164::normalize(text, campaign.contacts.default_region).map_err(|source| {
            TestSendError::InvalidNumber {
                raw: text.to_owned(),
                source,
            }
        })?;
        gate.check(phone)
            .map_err(|reason| TestSendError::NoConsent {
                number: phone.to_string(),
                reason,
                purpose: campaign.purpose().to_string(),
            })?;
        if !numbers
            .iter()
            .any(|n| n.consent_key() == phone.consent_key())
        {
            numbers.push(phone);
        }
    }
    Ok(numbers)
}

/// The contact whose message is sent: the first eligible one, or the one on `line`.
pub fn sample(
    campaign: &Campaign,
    gate: &dyn ConsentGate,
    line: Option<u64>,
) -> Result<Recipient, TestSendError> {
    let mut planner = Planner::new(campaign, gate)?;
    let path = planner.contacts_path().to_owned();
    while let Some(item) = planner.next_item()? {
        match (item, line) {
            (PlanItem::Eligible(recipient), None) => return Ok(recipient),
            (PlanItem::Eligible(recipient), Some(wanted)) if recipient.line == wanted => {
                return Ok(recipient);
            }
            (PlanItem::Excluded(excluded), Some(wanted)) if excluded.line == wanted => {
                return Err(TestSendError::RowExcluded {
                    path,
                    line: wanted,
                    reason: excluded.reason,
                });
            }
            _ => {}
        }
    }
    Err(match line {
        Some(line) => TestSendError::RowNotFound { path, line },
        None => TestSendError::NoEligible { path },
    })
}

/// The journal rows of one test send: the sample's message to each number.
pub fn recipients(
    sample: &Recipient,
    numbers: &[E164],
    now: DateTime<Utc>,
) -> Vec<(u64, Recipient)> {
    // The time says when; the nonce keeps two test sends apart that start in the same
    // millisecond (two cron jobs, or runs started at one `WACAMPAIGN_NOW`), which
    // would otherwise share a journal row and the second send nothing.
    let occurrence = format!(
        "{TEST_PREFIX}{}:{:08x}",
        now.to_rfc3339_opts(SecondsFormat::Millis, true),
        fastrand::u32(..)
    );
    let send_by = crate::clock::format(now + chrono::Duration::minutes(TEST_SEND_BY_MINUTES));
    numbers
        .iter()
        .enumerate()
        .map(|(i, phone)| {
            (
                i as u64 + 1,
                Recipient {
                    line: sample.line,
                    phone: Some(*phone),
                    bsuid: None,
                    values: sample.values.clone(),
                    occurrence: occurrence.clone(),
                    send_by: Some(send_by.clone()),
                    // A test goes to the marketer's own phone, now: no quiet hours
                    // or caps of the campaign's audience apply to it.
                    time_zone: None,
                    hold: None,
                    contact: sample.contact.clone(),
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_test_sends_started_in_the_same_millisecond_get_rows_of_their_own() {
        let phone = E164::normalize("+52 55 9999 0000", None).expect("a valid number");
        let sample = Recipient {
            line: 2,
            phone: Some(phone),
            bsuid: None,
            values: vec!["Ana".to_owned()],
            occurrence: String::new(),
            send_by: None,
            time_zone: None,
            hold: None,
            contact: None,
        };
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-01T15:00:00.123Z")
            .expect("a time")
            .with_timezone(&Utc);
        let first = recipients(&sample, &[phone], now);
        let second = recipients(&sample, &[phone], now);
        let (a, b) = (&first[0].1.occurrence, &second[0].1.occurrence);
        assert!(a.starts_with("test:2026-12-01T15:00:00.123Z:"), "{a}");
        assert_ne!(a, b, "the second would find the first's row served");
    }
}
