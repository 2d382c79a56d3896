//! The approved text a campaign is sent with, per language, so a text Meta approved
//! between two runs is noticed, shown, and accepted on purpose.

use rusqlite::{Connection, OptionalExtension, params};

/// A text that changed since the campaign's last run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextChange {
    pub language: String,
    pub old: String,
    pub new: String,
}

/// The last text recorded for the campaign in `language`.
pub fn last(
    conn: &Connection,
    campaign_id: &str,
    language: &str,
) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached(
        "SELECT text FROM campaign_template_texts WHERE campaign_id = ?1 AND language = ?2
         ORDER BY id DESC LIMIT 1",
    )?
    .query_row(params![campaign_id, language], |r| r.get(0))
    .optional()
}

/// Compares `texts` (language, approved text) with what was recorded: records the
/// first text of a language, and returns the ones that changed.
pub fn changes(
    conn: &Connection,
    campaign_id: &str,
    texts: &[(String, String)],
    now: &str,
) -> rusqlite::Result<Vec<TextChange>> {
    let mut changed = Vec::new();
    for (language, text) in texts {
        match last(conn, campaign_id, language)? {
            None => record(conn, campaign_id, language, text, false, now)?,
            Some(old) if old != *text => changed.push(TextChange {
                language: language.clone(),
                old,
                new: text.clone(),
            }),
            Some(_) => {}
        }
    }
    Ok(changed)
}

/// Records the operator's acceptance of the new texts, and the campaign's new
/// content fingerprint, so the journal goes on under the same campaign id.
pub fn accept(
    conn: &mut Connection,
    campaign_id: &str,
    accepted: &[TextChange],
    fingerprint: &str,
    now: &str,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for change in accepted {
        record(&tx, campaign_id, &change.language, &change.new, true, now)?;
    }
    tx.execute(
        "UPDATE campaigns SET fingerprint = ?2 WHERE id = ?1",
        params![campaign_id, fingerprint],
    )?;
    tx.commit()
}

fn record(
    conn: &Connection,
    campaign_id: &str,
    language: &str,
    text: &str,
    accepted: bool,
    now: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO campaign_template_texts (campaign_id, language, text, recorded_at, accepted_change)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![campaign_id, language, text, now, i64::from(accepted)])?;
    Ok(())
}
