//! Holds as the journal keeps them: a held row is `deferred` until its hold lifts
//! (`crate::hold` judges who is held), and the frequency caps read the messages
//! the journal has sent.
//!
//! The cap reads go through partial indexes of accepted (and in-flight) rows
//! (migration 0010), which SQLite chooses only when the query spells the states the
//! index was built for: they are written here, not bound.

use rusqlite::{Connection, params};

use crate::hold::Hold;

/// Writes a hold on a journal row: deferred until it lifts, unless the row was
/// already sent or waits longer for another reason.
pub fn defer(conn: &Connection, row: i64, hold: &Hold, now: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE journal SET state = 'deferred', retry_at = ?2, error_detail = ?3,
             updated_at = ?4, attempts = max(attempts - (state = 'in_flight'), 0),
             intent_at = NULL, deferrals = deferrals + 1
         WHERE id = ?1 AND state IN ('planned', 'deferred', 'in_flight')",
    )?
    .execute(params![
        row,
        crate::clock::format(hold.until),
        hold.detail,
        now
    ])?;
    Ok(())
}

/// Records, as the plan is written, a row's time zone (from the contacts file) and
/// its hold, for the row of (campaign, person, occurrence) just planned.
pub fn mark_planned(
    conn: &Connection,
    campaign_id: &str,
    person: i64,
    occurrence: &str,
    zone: Option<&str>,
    hold: Option<&Hold>,
    now: &str,
) -> rusqlite::Result<()> {
    if zone.is_none() && hold.is_none() {
        return Ok(());
    }
    conn.prepare_cached(
        "UPDATE journal SET time_zone = ?4,
             state = CASE WHEN ?5 IS NOT NULL AND state = 'planned' THEN 'deferred' ELSE state END,
             retry_at = CASE WHEN ?5 IS NOT NULL AND state IN ('planned', 'deferred')
                 AND (retry_at IS NULL OR retry_at < ?5) THEN ?5 ELSE retry_at END,
             error_detail = CASE WHEN ?5 IS NOT NULL AND state IN ('planned', 'deferred')
                 AND (retry_at IS NULL OR retry_at < ?5) THEN ?6 ELSE error_detail END,
             deferrals = deferrals + (?5 IS NOT NULL AND state = 'planned'),
             updated_at = ?7
         WHERE campaign_id = ?1 AND person_id = ?2 AND occurrence = ?3",
    )?
    .execute(params![
        campaign_id,
        person,
        occurrence,
        zone,
        hold.map(|h| crate::clock::format(h.until)),
        hold.map(|h| h.detail.as_str()),
        now
    ])?;
    Ok(())
}

impl crate::frequency_cap::Sent for Connection {
    fn accepted_since(
        &self,
        since: &str,
        each: &mut dyn FnMut(i64, &str, Option<&str>),
    ) -> rusqlite::Result<()> {
        let mut stmt = self.prepare(
            "SELECT person_id, campaign_id, outcome_at FROM journal INDEXED BY journal_accepted_by_time
             WHERE state = 'accepted' AND outcome_at > ?1",
        )?;
        let mut rows = stmt.query(params![since])?;
        while let Some(row) = rows.next()? {
            each(
                row.get(0)?,
                row.get_ref(1)?.as_str().unwrap_or_default(),
                row.get_ref(2)?.as_str().ok(),
            );
        }
        Ok(())
    }

    fn latest_to(
        &self,
        person: i64,
        since: &str,
        category: Option<&str>,
        limit: u32,
        campaign_id: &str,
    ) -> rusqlite::Result<Vec<String>> {
        self.prepare_cached(
            "SELECT CASE j.state WHEN 'in_flight' THEN j.intent_at ELSE j.outcome_at END AS at
             FROM journal j INDEXED BY journal_sent_by_person
             JOIN campaigns c ON c.id = j.campaign_id
             WHERE j.person_id = ?1 AND j.state IN ('accepted', 'in_flight')
               AND (j.state = 'accepted' AND j.outcome_at > ?2
                    OR j.state = 'in_flight' AND j.campaign_id <> ?5)
               AND (?3 IS NULL OR c.category = ?3)
             ORDER BY at DESC LIMIT ?4 + 0",
        )?
        .query_map(
            params![person, since, category, i64::from(limit), campaign_id],
            |r| r.get::<_, String>(0),
        )?
        .collect()
    }
}
