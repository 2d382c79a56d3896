//! Possible opt-outs: replies that read like an opt-out without being a bare
//! keyword ("please stop", "no me manden más"). They are never acted on
//! automatically (a reply quoting "stop" in passing is no revocation); they are
//! kept with their text and listed by `status` for a person to decide, with the
//! one command that records each in the ledger.

use rusqlite::{Connection, params};
use serde::Serialize;

use super::optout::Reading;
use super::{InboundEvent, OptOutRules, PossibleOptOut};

/// Whether a text reply is a possible opt-out, and why.
pub fn possible(rules: &OptOutRules, text: &str) -> Option<PossibleOptOut> {
    match rules.read_text(text) {
        Reading::Possible(reason) => Some(PossibleOptOut {
            text: text.to_owned(),
            reason,
        }),
        Reading::OptOut | Reading::Other => None,
    }
}

/// Keeps a possible opt-out (inside the webhook writer's transaction), once.
pub(crate) fn record(
    conn: &Connection,
    message: &InboundEvent,
    possible: &PossibleOptOut,
    now: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO possible_opt_outs (message_id, provider, phone, consent_key, text,
             reason, occurred_at, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        message.message_id,
        message.source.as_str(),
        message.from.to_string(),
        message.from.consent_key() as i64,
        possible.text,
        possible.reason,
        message.occurred_at,
        now
    ])?;
    Ok(())
}

/// A possible opt-out waiting for a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pending {
    pub message_id: String,
    pub phone: String,
    pub text: String,
    pub reason: String,
    pub occurred_at: String,
    /// The command that records it as an opt-out of everything.
    pub record_with: String,
}

/// Possible opt-outs since `since` (RFC 3339) from people `campaign_id` messaged,
/// leaving out those the ledger already records (an event whose source is the
/// message).
pub fn pending(
    conn: &Connection,
    campaign_id: &str,
    since: &str,
) -> rusqlite::Result<Vec<Pending>> {
    let mut stmt = conn.prepare_cached(
        "SELECT p.message_id, p.phone, p.text, p.reason, p.occurred_at
         FROM possible_opt_outs p
         WHERE p.occurred_at >= ?2
           AND EXISTS (SELECT 1 FROM journal j WHERE j.campaign_id = ?1
                         AND j.person_id = p.consent_key)
           AND NOT EXISTS (SELECT 1 FROM consent_events e WHERE e.source = p.message_id)
         ORDER BY p.occurred_at, p.message_id",
    )?;
    let rows = stmt.query_map(params![campaign_id, since], |r| {
        let message_id: String = r.get(0)?;
        let phone: String = r.get(1)?;
        let text: String = r.get(2)?;
        let occurred_at: String = r.get(4)?;
        let record_with = format!(
            "wacampaign consent opt-out {phone} --purpose all --method whatsapp_reply --source {} \
             --occurred-at {occurred_at} --evidence {}",
            shell_quote(&message_id),
            shell_quote(&text)
        );
        Ok(Pending {
            message_id,
            phone,
            text,
            reason: r.get(3)?,
            occurred_at,
            record_with,
        })
    })?;
    rows.collect()
}

/// Quotes a word for a POSIX shell: as it is when it is plainly safe, else in
/// single quotes (a quote inside becoming `'\''`).
pub fn shell_quote(text: &str) -> String {
    let safe = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-_.:/=@,".contains(&b));
    if safe {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_keeps_any_text_one_word() {
        assert_eq!(shell_quote("wamid.HBg=="), "wamid.HBg==");
        assert_eq!(shell_quote("please stop"), "'please stop'");
        assert_eq!(shell_quote("don't"), "'don'\\''t'");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
        assert_eq!(shell_quote(""), "''");
    }
}
