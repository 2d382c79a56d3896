//! Lists for the follow-up campaign: the people of a campaign whose message was not
//! delivered, not read, not replied to, failed or is in doubt, each with the columns
//! of their contact row as the plan kept them plus their outcome, so the file is the
//! contacts file of the next campaign (`status --only not-read --csv FILE`).
//!
//! People who opted out are never listed, whatever was asked: neither those the
//! provider answered with an opt-out nor those who opted out (a STOP reply, an
//! operator) since the campaign began. A follow-up must not be where an opt-out is
//! forgotten; its own plan checks the ledger again too.

use std::path::Path;

use clap::ValueEnum;
use rusqlite::{Connection, params};

use crate::journal::State;
use crate::report::{PrivateFile, spreadsheet_safe};

/// Who goes on the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Only {
    /// Accepted but never reported delivered (no status, sent, or failed after
    /// acceptance), and those that failed before acceptance.
    NotDelivered,
    /// Accepted and not reported read, failed after acceptance excluded. Includes
    /// people who turned read receipts off: they may have read it.
    NotRead,
    /// Accepted, not failed, and no message from the person since the campaign began.
    NoReply,
    /// Failed, before or after acceptance.
    Failed,
    /// Held in doubt: the request may or may not have reached the provider.
    InDoubt,
}

impl Only {
    pub fn as_str(self) -> &'static str {
        match self {
            Only::NotDelivered => "not-delivered",
            Only::NotRead => "not-read",
            Only::NoReply => "no-reply",
            Only::Failed => "failed",
            Only::InDoubt => "in-doubt",
        }
    }
}

/// The message statuses' ranks (`message_statuses.rank`).
const DELIVERED: i64 = 2;
const READ: i64 = 3;
const FAILED: i64 = 4;

/// One message's outcome, as the list needs it.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub state: State,
    /// The best delivery status reached (rank), if any status arrived.
    pub best: Option<i64>,
    pub replied: bool,
    pub error_code: Option<i64>,
    pub error_detail: Option<String>,
}

impl Outcome {
    /// Whether this message belongs on the `only` list.
    pub fn is_listed(&self, only: Only) -> bool {
        let accepted = self.state == State::Accepted;
        let failed_after = accepted && self.best == Some(FAILED);
        match only {
            Only::NotDelivered => {
                (accepted && self.best.is_none_or(|b| b < DELIVERED || b == FAILED))
                    || self.state == State::Failed
            }
            Only::NotRead => accepted && !failed_after && self.best != Some(READ),
            Only::NoReply => accepted && !failed_after && !self.replied,
            Only::Failed => self.state == State::Failed || failed_after,
            Only::InDoubt => self.state == State::InDoubt,
        }
    }

    /// What happened, in one word: the journal's state, or the best delivery status
    /// of an accepted message.
    pub fn label(&self) -> &'static str {
        match (self.state, self.best) {
            (State::Accepted, Some(FAILED)) => "failed_after_accepted",
            (State::Accepted, Some(READ)) => "read",
            (State::Accepted, Some(DELIVERED)) => "delivered",
            (State::Accepted, Some(_)) => "sent",
            (State::Accepted, None) => "accepted_no_status",
            (state, _) => state.as_str(),
        }
    }

    /// A sentence for the person reading the list.
    pub fn note(&self, only: Only) -> String {
        let mut note = match self.label() {
            _ if self.state == State::InDoubt => {
                "in doubt: may have been sent (see `status`); resend with `send --in-doubt resend`"
                    .to_owned()
            }
            "read" => "read".to_owned(),
            "delivered" => "delivered, no read receipt".to_owned(),
            "sent" => "sent, not reported delivered".to_owned(),
            "accepted_no_status" => "accepted; no delivery status received".to_owned(),
            other => other.replace('_', " "),
        };
        if let Some(code) = self.error_code {
            note.push_str(&format!(" (error {code}"));
            if let Some(detail) = &self.error_detail {
                note.push_str(&format!(": {detail}"));
            }
            note.push(')');
        }
        if only == Only::NotRead {
            note.push_str("; not-read includes people who turned read receipts off");
        }
        if self.replied {
            note.push_str("; replied");
        }
        note
    }
}

/// How many were listed, and how many of them had no kept columns (planned before
/// columns were kept: only their number is written).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Written {
    pub listed: u64,
    pub without_columns: u64,
}

/// Writes the `only` list of a campaign's current plan to `path`: the kept contact
/// columns (the campaign's phone column first if it was not kept), then `outcome`,
/// `outcome_note` and `error_code`.
pub fn write(
    conn: &Connection,
    campaign_id: &str,
    plan_run: i64,
    first_sent: &str,
    phone_column: &str,
    only: Only,
    path: &Path,
) -> anyhow::Result<Written> {
    let mut header: Vec<String> = match latest_contact(conn, campaign_id)? {
        Some(contact) => contact.keys().cloned().collect(),
        None => Vec::new(),
    };
    let own_phone = !header.iter().any(|h| h == phone_column);
    if own_phone {
        header.insert(0, phone_column.to_owned());
    }
    // A list made from a list already has these: they are overwritten, not repeated.
    let added = ["outcome", "outcome_note", "error_code"];
    let kept_len = header.len();
    for name in added {
        if !header.iter().any(|h| h == name) {
            header.push(name.to_owned());
        }
    }
    let position = |name: &str| header.iter().position(|h| h == name);
    let (outcome_at, note_at, code_at) = (
        position("outcome").unwrap_or(kept_len),
        position("outcome_note").unwrap_or(kept_len),
        position("error_code").unwrap_or(kept_len),
    );

    let file = PrivateFile::create(path)?;
    let mut csv = csv::Writer::from_writer(std::io::BufWriter::new(file));
    csv.write_record(&header)?;
    let mut stmt = conn.prepare(
        "SELECT coalesce(j.phone, j.bsuid), j.state, j.contact, j.error_code, j.error_detail,
                j.status_rank,
                EXISTS (SELECT 1 FROM inbound_messages i
                        WHERE i.consent_key = j.person_id AND i.occurred_at >= ?3),
                j.status_error_code, j.status_error_detail
         FROM journal j
         WHERE j.campaign_id = ?1 AND (j.plan_run = ?2 OR j.state NOT IN (?4, ?5))
           AND j.state IN (?6, ?7, ?8)
           -- A test send (`send --to`) went to the marketer, not to a contact.
           AND j.occurrence NOT GLOB 'test:*'
           AND NOT EXISTS (SELECT 1 FROM consent_events e WHERE e.subject_key = j.person_id
                             AND e.action = 'opt_out' AND e.occurred_at >= ?3)
         ORDER BY j.seq",
    )?;
    let mut rows = stmt.query(params![
        campaign_id,
        plan_run,
        first_sent,
        State::Planned,
        State::Deferred,
        State::Accepted,
        State::Failed,
        State::InDoubt
    ])?;
    let mut written = Written::default();
    let mut record = vec![String::new(); header.len()];
    while let Some(r) = rows.next()? {
        let status_code: Option<i64> = r.get(7)?;
        let outcome = Outcome {
            state: r.get(1)?,
            best: r.get(5)?,
            replied: r.get(6)?,
            error_code: status_code.or(r.get(3)?),
            error_detail: if status_code.is_some() {
                r.get(8)?
            } else {
                r.get(4)?
            },
        };
        if !outcome.is_listed(only) {
            continue;
        }
        record.iter_mut().for_each(String::clear);
        let contact: Option<String> = r.get(2)?;
        let contact = contact.and_then(|c| {
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&c).ok()
        });
        match &contact {
            Some(contact) => {
                for (cell, name) in record.iter_mut().zip(&header).take(kept_len) {
                    if let Some(serde_json::Value::String(value)) = contact.get(name) {
                        cell.push_str(value);
                    }
                }
            }
            None => written.without_columns += 1,
        }
        if own_phone || contact.is_none() {
            let phone: String = r.get(0)?;
            if let Some(at) = position(phone_column) {
                record[at] = phone;
            }
        }
        record[outcome_at] = outcome.label().to_owned();
        record[note_at] = spreadsheet_safe(&outcome.note(only)).into_owned();
        record[code_at] = outcome
            .error_code
            .map(|c| c.to_string())
            .unwrap_or_default();
        csv.write_record(&record)?;
        written.listed += 1;
    }
    crate::report::finish_csv(csv)?;
    Ok(written)
}

/// The kept columns of the campaign's most recently planned row: the list's header.
fn latest_contact(
    conn: &Connection,
    campaign_id: &str,
) -> anyhow::Result<Option<serde_json::Map<String, serde_json::Value>>> {
    use rusqlite::OptionalExtension as _;
    let text: Option<String> = conn
        .query_row(
            "SELECT contact FROM journal WHERE campaign_id = ?1 AND contact IS NOT NULL
             ORDER BY plan_run DESC, seq LIMIT 1",
            params![campaign_id],
            |r| r.get(0),
        )
        .optional()?;
    Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(state: State, best: Option<i64>, replied: bool) -> Outcome {
        Outcome {
            state,
            best,
            replied,
            error_code: None,
            error_detail: None,
        }
    }

    #[test]
    fn each_list_takes_whom_its_name_says() {
        let read = outcome(State::Accepted, Some(READ), false);
        let delivered = outcome(State::Accepted, Some(DELIVERED), false);
        let silent = outcome(State::Accepted, None, false);
        let failed_after = outcome(State::Accepted, Some(FAILED), false);
        let failed = outcome(State::Failed, None, false);
        let doubt = outcome(State::InDoubt, None, false);
        let replied = outcome(State::Accepted, Some(READ), true);
        let table = [
            (
                Only::NotDelivered,
                [false, false, true, true, true, false, false],
            ),
            (
                Only::NotRead,
                [false, true, true, false, false, false, false],
            ),
            (
                Only::NoReply,
                [true, true, true, false, false, false, false],
            ),
            (
                Only::Failed,
                [false, false, false, true, true, false, false],
            ),
            (
                Only::InDoubt,
                [false, false, false, false, false, true, false],
            ),
        ];
        let all = [
            read,
            delivered,
            silent,
            failed_after,
            failed,
            doubt,
            replied,
        ];
        for (only, expected) in table {
            let got: Vec<bool> = all.iter().map(|o| o.is_listed(only)).collect();
            assert_eq!(got, expected, "{only:?}");
        }
    }

    #[test]
    fn the_not_read_note_says_read_receipts_may_be_off() {
        let delivered = outcome(State::Accepted, Some(DELIVERED), false);
        assert!(delivered.note(Only::NotRead).contains("read receipts off"));
        assert_eq!(delivered.label(), "delivered");
    }
}
