//! Holds as the journal keeps them: a held row is `deferred` until its hold lifts
//! (`crate::hold` judges who is held), and the frequency caps read the messages
//! the journal has sent.
//!
//! The cap reads go through partial indexes of accepted rows (by time and by
//! person) and of rows in flight (by person), built by the first capped send
//! ([`ensure_cap_indexes`]), which SQLite chooses only when the query spells the
//! states the index was built for: they are written here, not bound.

use rusqlite::{Connection, params};

use crate::hold::Hold;

/// Builds the indexes the frequency caps read, unless they exist: accepted rows by
/// time (the plan's scan of a cap's window) and by person, and rows in flight by
/// person (the check at the moment of sending). A campaign with a frequency cap
/// calls this before its first claim (`Journal::begin`).
///
/// They are not part of the schema (migrations 0016, 0017 and 0018 dropped them):
/// a batch's accepted rows land on as many pages of the person index as the batch
/// has messages, a fifth to a third of the pages every send writes; every accepted
/// message enters the index by time, another fifth; every message enters the
/// in-flight index at its claim and leaves it at its outcome; and only a cap reads
/// them. Once built they stay, and every campaign's sends keep them, since a cap
/// counts them all. Building them sorts the journal's accepted rows once, while
/// other writers wait.
pub fn ensure_cap_indexes(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS journal_accepted_by_time
             ON journal (outcome_at, id, person_id, campaign_id) WHERE state = 'accepted';
         CREATE INDEX IF NOT EXISTS journal_accepted_by_person ON journal (person_id, outcome_at)
             WHERE state = 'accepted';
         CREATE INDEX IF NOT EXISTS journal_in_flight_by_person ON journal (person_id)
             WHERE state = 'in_flight';",
    )
}

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

/// [`crate::frequency_cap::Sent::latest_to`]: each part reads its own index, so
/// the two states are asked for apart rather than with `IN`, which neither partial
/// index covers. The third part: planned rows another campaign's run claimed under
/// its mark (`claims`), in flight too: by campaign (`CROSS JOIN` keeps that order,
/// and few campaigns send at once), then the person's rows in it (`+j.state`
/// keeps SQLite off the state index, whose planned rows before the mark include
/// any an earlier plan left, however many). `LIMIT ?4 + 0`: a bare bound LIMIT is planned with its value, and
/// the statement would be prepared again at every claim.
const LATEST_TO: &str = "\
    SELECT j.outcome_at FROM journal j INDEXED BY journal_accepted_by_person
    JOIN campaigns c ON c.id = j.campaign_id
    WHERE j.person_id = ?1 AND j.state = 'accepted' AND j.outcome_at > ?2
      AND (?3 IS NULL OR c.category = ?3)
    UNION ALL
    SELECT j.intent_at FROM journal j INDEXED BY journal_in_flight_by_person
    JOIN campaigns c ON c.id = j.campaign_id
    WHERE j.person_id = ?1 AND j.state = 'in_flight' AND j.campaign_id <> ?5
      AND (?3 IS NULL OR c.category = ?3)
    UNION ALL
    SELECT c.claimed_at FROM campaigns c CROSS JOIN journal j ON j.campaign_id = c.id
    WHERE c.claimed_run IS NOT NULL AND c.id <> ?5 AND j.person_id = ?1
      AND +j.state = 'planned' AND j.plan_run = c.claimed_run
      AND (j.seq, j.id) <= (c.claimed_seq, c.claimed_id)
      AND (?3 IS NULL OR c.category = ?3)
    ORDER BY 1 DESC LIMIT ?4 + 0";

/// [`crate::frequency_cap::Sent::accepted_since`]: not `INDEXED BY`, which fails
/// where the index is missing. A send of a capped campaign builds it before it
/// plans; `check` and `preview` write nothing, so on a database where no capped
/// campaign has sent yet they read the journal end to end for the same rows.
const ACCEPTED_SINCE: &str = "\
    SELECT person_id, campaign_id, outcome_at FROM journal
    WHERE state = 'accepted' AND outcome_at > ?1";

impl crate::frequency_cap::Sent for Connection {
    fn accepted_since(
        &self,
        since: &str,
        each: &mut dyn FnMut(i64, &str, Option<&str>),
    ) -> rusqlite::Result<()> {
        let mut stmt = self.prepare(ACCEPTED_SINCE)?;
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
        self.prepare_cached(LATEST_TO)?
            .query_map(
                params![person, since, category, i64::from(limit), campaign_id],
                |r| r.get::<_, String>(0),
            )?
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;
    use crate::frequency_cap::Sent as _;

    const PERSON: i64 = 525_512_345_678;

    /// Two campaigns, `promo` (marketing) and `notice` (utility), and the given rows
    /// to PERSON: (campaign, occurrence, state, intent_at, outcome_at).
    fn journal(rows: &[(&str, &str, &str, &str, Option<&str>)]) -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("w.db")).unwrap();
        ensure_cap_indexes(&db.conn).unwrap();
        db.conn
            .execute_batch(
                "INSERT INTO campaigns (id, fingerprint, template, language, category, provider, created_at)
                 VALUES ('promo', 'f', 't', 'es_MX', 'marketing', 'cloud_api', '2026-01-01T00:00:00Z'),
                        ('notice', 'f', 't', 'es_MX', 'utility', 'cloud_api', '2026-01-01T00:00:00Z');",
            )
            .unwrap();
        for (seq, (campaign, occurrence, state, intent_at, outcome_at)) in rows.iter().enumerate() {
            db.conn
                .execute(
                    "INSERT INTO journal (campaign_id, person_id, occurrence, phone, line, seq,
                         plan_run, params, state, attempts, intent_at, outcome_at, updated_at)
                     VALUES (?1, ?2, ?3, '+525512345678', 2, ?4, 1, '[]', ?5, 1, ?6, ?7, ?6)",
                    params![
                        campaign, PERSON, occurrence, seq as i64, state, intent_at, outcome_at
                    ],
                )
                .unwrap();
        }
        (dir, db)
    }

    #[test]
    fn the_latest_messages_to_a_person_are_the_accepted_ones_and_others_in_flight() {
        let (_dir, db) = journal(&[
            (
                "promo",
                "a",
                "accepted",
                "2026-11-01T09:00:00Z",
                Some("2026-11-01T09:00:01Z"),
            ),
            (
                "promo",
                "b",
                "accepted",
                "2026-11-20T09:00:00Z",
                Some("2026-11-20T09:00:01Z"),
            ),
            (
                "notice",
                "c",
                "accepted",
                "2026-11-21T09:00:00Z",
                Some("2026-11-21T09:00:01Z"),
            ),
            ("notice", "d", "in_flight", "2026-11-22T09:00:00Z", None),
            ("promo", "e", "in_flight", "2026-11-23T09:00:00Z", None),
            (
                "promo",
                "f",
                "failed",
                "2026-11-24T09:00:00Z",
                Some("2026-11-24T09:00:01Z"),
            ),
            ("notice", "g", "in_doubt", "2026-11-24T10:00:00Z", None),
        ]);
        let since = "2026-11-10T00:00:00Z";
        let latest = |category, limit, campaign| {
            db.conn
                .latest_to(PERSON, since, category, limit, campaign)
                .unwrap()
        };
        assert_eq!(
            latest(None, 10, "promo"),
            [
                "2026-11-22T09:00:00Z",
                "2026-11-21T09:00:01Z",
                "2026-11-20T09:00:01Z"
            ],
            "accepted in the window by when they were accepted, in flight elsewhere by \
             when the intent was written; nothing before the window, failed or in doubt"
        );
        assert_eq!(
            latest(None, 10, "notice"),
            [
                "2026-11-23T09:00:00Z",
                "2026-11-21T09:00:01Z",
                "2026-11-20T09:00:01Z"
            ],
            "the sending campaign's own rows in flight are not counted"
        );
        assert_eq!(
            latest(Some("marketing"), 10, "notice"),
            ["2026-11-23T09:00:00Z", "2026-11-20T09:00:01Z"],
            "a category's cap counts that category's messages, in flight or accepted"
        );
        assert_eq!(
            latest(None, 2, "promo"),
            ["2026-11-22T09:00:00Z", "2026-11-21T09:00:01Z"],
            "the latest `limit`"
        );
        assert!(
            db.conn
                .latest_to(PERSON + 1, since, None, 10, "promo")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_planned_row_another_run_claimed_under_its_mark_counts_as_in_flight() {
        let (_dir, db) = journal(&[
            ("notice", "a", "planned", "2026-11-22T09:00:00Z", None),
            ("notice", "b", "planned", "2026-11-22T09:00:00Z", None),
        ]);
        let since = "2026-11-10T00:00:00Z";
        assert!(
            db.conn
                .latest_to(PERSON, since, None, 10, "promo")
                .unwrap()
                .is_empty(),
            "planned, not claimed"
        );
        let first: i64 = db
            .conn
            .query_row("SELECT id FROM journal WHERE occurrence = 'a'", [], |r| {
                r.get(0)
            })
            .unwrap();
        super::super::claims::advance(
            &db.conn,
            "notice",
            1,
            super::super::claims::Position { seq: 0, id: first },
            "2026-11-25T08:00:00Z",
        )
        .unwrap();
        assert_eq!(
            db.conn.latest_to(PERSON, since, None, 10, "promo").unwrap(),
            ["2026-11-25T08:00:00Z"],
            "the row under the mark, at the claim's time; the one after it is not claimed"
        );
        assert!(
            db.conn
                .latest_to(PERSON, since, None, 10, "notice")
                .unwrap()
                .is_empty(),
            "not for its own campaign"
        );
        assert!(
            db.conn
                .latest_to(PERSON, since, Some("marketing"), 10, "promo")
                .unwrap()
                .is_empty(),
            "nor for another category's cap"
        );
    }

    #[test]
    fn a_caps_window_is_read_by_time_through_its_index_and_the_same_without_it() {
        let (_dir, db) = journal(&[
            (
                "promo",
                "a",
                "accepted",
                "2026-11-01T09:00:00Z",
                Some("2026-11-01T09:00:01Z"),
            ),
            (
                "notice",
                "b",
                "accepted",
                "2026-11-21T09:00:00Z",
                Some("2026-11-21T09:00:01Z"),
            ),
            ("promo", "c", "in_flight", "2026-11-22T09:00:00Z", None),
            (
                "promo",
                "d",
                "failed",
                "2026-11-24T09:00:00Z",
                Some("2026-11-24T09:00:01Z"),
            ),
        ]);
        let since = "2026-11-10T00:00:00Z";
        let read = |conn: &Connection| {
            let mut sent = Vec::new();
            conn.accepted_since(since, &mut |person, campaign, at| {
                sent.push((person, campaign.to_owned(), at.map(str::to_owned)));
            })
            .unwrap();
            sent
        };
        let plan: Vec<String> = db
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {ACCEPTED_SINCE}"))
            .unwrap()
            .query_map(params![since], |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            plan,
            ["SEARCH journal USING COVERING INDEX journal_accepted_by_time (outcome_at>?)"]
        );
        let expected = vec![(
            PERSON,
            "notice".to_owned(),
            Some("2026-11-21T09:00:01Z".to_owned()),
        )];
        assert_eq!(read(&db.conn), expected, "accepted inside the window only");

        db.conn
            .execute_batch("DROP INDEX journal_accepted_by_time")
            .unwrap();
        assert_eq!(
            read(&db.conn),
            expected,
            "where no capped campaign has sent, the same rows from the whole journal"
        );
    }

    #[test]
    fn the_cap_check_at_claim_time_searches_both_person_indexes() {
        let (_dir, db) = journal(&[]);
        let plan: Vec<String> = db
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {LATEST_TO}"))
            .unwrap()
            .query_map(
                params![PERSON, "2026-11-10T00:00:00Z", "marketing", 4, "promo"],
                |r| r.get(3),
            )
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for wanted in [
            "SEARCH j USING INDEX journal_accepted_by_person (person_id=? AND outcome_at>?)",
            "SEARCH j USING INDEX journal_in_flight_by_person (person_id=?)",
            // Another run's claimed rows: the person's rows in each marked campaign.
            "SEARCH j USING INDEX sqlite_autoindex_journal_1 (campaign_id=? AND person_id=?)",
        ] {
            assert!(
                plan.iter().any(|step| step == wanted),
                "{wanted} not in {plan:#?}"
            );
        }
        assert!(
            !plan.iter().any(|step| step.starts_with("SCAN j")),
            "no part reads the journal end to end: {plan:#?}"
        );
    }
}
