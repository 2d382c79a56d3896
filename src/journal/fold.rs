//! Each message's delivery statuses folded onto its journal row (migration 0013),
//! so `report` and `status` read one row per message and never search
//! `message_statuses`.
//!
//! The invariant: a row's folded columns are what the statuses recorded for its
//! `message_id` say (the best rank, the first delivered and read times, the first
//! failure's error, the latest pricing). The webhook store folds each new status in
//! as it is recorded ([`apply`], one UPDATE by rowid); when the journal gives a row
//! a message id, statuses that arrived before are folded from the table
//! ([`refold`]); migration 0013 backfills existing rows with the same statement
//! ([`backfill`]).

use rusqlite::{Connection, OptionalExtension, params};

/// One recorded status, as the fold needs it.
#[derive(Debug, Clone, Default)]
pub struct StatusFold<'a> {
    /// `message_statuses.rank` (see [`super::settle::status_rank`]).
    pub rank: i64,
    /// When it happened, Unix seconds ([`status_seconds`]).
    pub at: i64,
    pub error_code: Option<i64>,
    pub error_detail: Option<&'a str>,
    pub billable: Option<bool>,
    pub pricing_category: Option<&'a str>,
    pub pricing_type: Option<&'a str>,
}

/// A status's time as the fold keeps it: the provider's Unix timestamp, else (Twilio
/// sends none) when it happened as recorded, else 0, as the report always read it.
pub fn status_seconds(timestamp: i64, occurred_at: &str) -> i64 {
    if timestamp != 0 {
        return timestamp;
    }
    chrono::DateTime::parse_from_rfc3339(occurred_at).map_or(0, |t| t.timestamp())
}

/// Folds one newly recorded status onto journal row `row`, if the row's message is
/// `message_id` (a status of an earlier attempt is history, not the row's outcome).
/// Monotone whatever order statuses arrive in: the rank only rises, the earliest
/// delivered and read times win, the first failure's error stays; the latest
/// pricing replaces the one before, as the latest recorded status is what bills.
/// Returns whether the row was updated.
pub fn apply(
    conn: &Connection,
    row: i64,
    message_id: &str,
    status: &StatusFold<'_>,
) -> rusqlite::Result<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE journal SET
                 status_rank = max(coalesce(status_rank, ?3), ?3),
                 delivered_ts = CASE WHEN ?3 = 2 THEN min(coalesce(delivered_ts, ?4), ?4)
                                ELSE delivered_ts END,
                 read_ts = CASE WHEN ?3 = 3 THEN min(coalesce(read_ts, ?4), ?4) ELSE read_ts END,
                 status_error_code = CASE WHEN ?3 = 4 AND status_rank IS NOT 4 THEN ?5
                                     ELSE status_error_code END,
                 status_error_detail = CASE WHEN ?3 = 4 AND status_rank IS NOT 4 THEN ?6
                                       ELSE status_error_detail END,
                 billable = CASE WHEN ?7 IS NOT NULL OR ?8 IS NOT NULL THEN ?7 ELSE billable END,
                 pricing_category = CASE WHEN ?7 IS NOT NULL OR ?8 IS NOT NULL THEN ?8
                                    ELSE pricing_category END,
                 pricing_type = CASE WHEN ?7 IS NOT NULL OR ?8 IS NOT NULL THEN ?9
                                ELSE pricing_type END
             WHERE id = ?1 AND message_id = ?2",
        )?
        .execute(params![
            row,
            message_id,
            status.rank,
            status.at,
            status.error_code,
            status.error_detail,
            status.billable,
            status.pricing_category,
            status.pricing_type,
        ])?;
    Ok(changed > 0)
}

/// The folded columns computed from `message_statuses`, for the rows `WHERE` picks.
/// Billing counts only statuses matched to the row's campaign, as `status` always
/// billed them.
macro_rules! refold_sql {
    ($rows:literal) => {
        concat!(
            "UPDATE journal SET
                 status_rank = (SELECT max(s.rank) FROM message_statuses s
                                WHERE s.message_id = journal.message_id),
                 delivered_ts = (SELECT min(CASE WHEN s.timestamp <> 0 THEN s.timestamp
                                            ELSE coalesce(unixepoch(s.occurred_at), 0) END)
                                 FROM message_statuses s
                                 WHERE s.message_id = journal.message_id AND s.rank = 2),
                 read_ts = (SELECT min(CASE WHEN s.timestamp <> 0 THEN s.timestamp
                                       ELSE coalesce(unixepoch(s.occurred_at), 0) END)
                            FROM message_statuses s
                            WHERE s.message_id = journal.message_id AND s.rank = 3),
                 (status_error_code, status_error_detail) =
                     (SELECT s.error_code, s.error_detail FROM message_statuses s
                      WHERE s.message_id = journal.message_id AND s.rank = 4
                      ORDER BY s.id LIMIT 1),
                 (billable, pricing_category, pricing_type) =
                     (SELECT s.billable, s.pricing_category, s.pricing_type
                      FROM message_statuses s
                      WHERE s.message_id = journal.message_id
                        AND s.campaign_id = journal.campaign_id
                        AND (s.billable IS NOT NULL OR s.pricing_category IS NOT NULL)
                      ORDER BY s.id DESC LIMIT 1)
             WHERE ",
            $rows
        )
    };
}

/// Folds again, from `message_statuses`, the statuses of row `row`'s message: call
/// it when the journal gives a row its message id (or another one), since statuses
/// may have arrived before the row knew it.
///
/// The send path calls it for every accepted message, and almost always the
/// message has no status yet and the row had none folded: a read-only probe
/// answers that for a quarter less than running the fold's UPDATE to find nothing
/// to change (a write statement, whose long text the statement cache hashes and
/// compares at every call).
pub fn refold(conn: &Connection, row: i64) -> rusqlite::Result<()> {
    let stale: Option<bool> = conn
        .prepare_cached(
            "SELECT status_rank IS NOT NULL
                 OR EXISTS (SELECT 1 FROM message_statuses s WHERE s.message_id = journal.message_id)
             FROM journal WHERE id = ?1",
        )?
        .query_row(params![row], |r| r.get(0))
        .optional()?;
    if stale == Some(true) {
        conn.prepare_cached(refold_sql!("id = ?1"))?
            .execute(params![row])?;
    }
    Ok(())
}

/// [`refold`] for the rows a batch of outcomes just gave message ids: one probe
/// for the batch instead of a statement per row (a statement's own cost was most of
/// a probe's, 6% of the journal writer's instructions), the ids handed to SQLite as
/// one JSON array.
pub fn refold_rows(conn: &Connection, rows: &[i64]) -> rusqlite::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let rows = serde_json::to_string(rows).unwrap_or_else(|_| "[]".to_owned());
    let stale: Vec<i64> = conn
        .prepare_cached(
            "SELECT j.id FROM json_each(?1) AS r JOIN journal j ON j.id = r.value
             WHERE j.status_rank IS NOT NULL
                OR EXISTS (SELECT 1 FROM message_statuses s WHERE s.message_id = j.message_id)",
        )?
        .query_map(params![rows], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for row in stale {
        conn.prepare_cached(refold_sql!("id = ?1"))?
            .execute(params![row])?;
    }
    Ok(())
}

/// Folds every journal row's recorded statuses (migration 0013, inside its
/// transaction).
pub fn backfill(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute(
        refold_sql!(
            "message_id IS NOT NULL
               AND EXISTS (SELECT 1 FROM message_statuses s WHERE s.message_id = journal.message_id)"
        ),
        [],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    type Folded = (
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<String>,
        Option<bool>,
        Option<String>,
        Option<String>,
    );

    fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("w.db")).unwrap();
        db.conn
            .execute_batch(
                "INSERT INTO campaigns (id, fingerprint, template, language, category, provider, created_at)
                 VALUES ('c', 'f', 't', 'es_MX', 'marketing', 'cloud_api', '2026-01-01T00:00:00Z');
                 INSERT INTO journal (id, campaign_id, person_id, phone, line, seq, plan_run, params,
                     state, attempts, message_id, updated_at)
                 VALUES (1, 'c', 525512345678, '+525512345678', 2, 1, 1, '[]', 'accepted', 1,
                         'wamid.A', '2026-01-01T00:00:00Z');",
            )
            .unwrap();
        (dir, db)
    }

    fn folded(db: &Db) -> Folded {
        db.conn
            .query_row(
                "SELECT status_rank, delivered_ts, read_ts, status_error_code, status_error_detail,
                        billable, pricing_category, pricing_type FROM journal WHERE id = 1",
                [],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                    ))
                },
            )
            .unwrap()
    }

    fn status(rank: i64, at: i64) -> StatusFold<'static> {
        StatusFold {
            rank,
            at,
            ..StatusFold::default()
        }
    }

    #[test]
    fn late_and_repeated_statuses_never_lower_the_fold() {
        let (_dir, db) = db();
        // Read arrives first, then the delivered it implies, then delivered again
        // earlier than the first one, then sent: Meta's order is not guaranteed.
        for s in [
            status(3, 500),
            status(2, 200),
            status(2, 100),
            status(1, 50),
        ] {
            assert!(apply(&db.conn, 1, "wamid.A", &s).unwrap());
        }
        let f = folded(&db);
        assert_eq!((f.0, f.1, f.2), (Some(3), Some(100), Some(500)));
        // A later read does not move the first read; a later delivered does not
        // move the first delivery.
        apply(&db.conn, 1, "wamid.A", &status(3, 900)).unwrap();
        apply(&db.conn, 1, "wamid.A", &status(2, 150)).unwrap();
        let f = folded(&db);
        assert_eq!((f.0, f.1, f.2), (Some(3), Some(100), Some(500)));
    }

    #[test]
    fn a_failure_outranks_a_read_and_its_first_error_stays() {
        let (_dir, db) = db();
        let failed = |code, detail| StatusFold {
            rank: 4,
            at: 10,
            error_code: Some(code),
            error_detail: Some(detail),
            ..StatusFold::default()
        };
        apply(&db.conn, 1, "wamid.A", &status(2, 5)).unwrap();
        apply(&db.conn, 1, "wamid.A", &failed(131_026, "undeliverable")).unwrap();
        apply(&db.conn, 1, "wamid.A", &failed(131_000, "later")).unwrap();
        apply(&db.conn, 1, "wamid.A", &status(3, 20)).unwrap();
        let f = folded(&db);
        assert_eq!(f.0, Some(4), "failed is the best rank");
        assert_eq!(
            (f.3, f.4.as_deref()),
            (Some(131_026), Some("undeliverable"))
        );
        assert_eq!((f.1, f.2), (Some(5), Some(20)), "its times are still kept");
    }

    #[test]
    fn the_latest_pricing_bills_and_a_status_without_one_keeps_it() {
        let (_dir, db) = db();
        let priced = |category| StatusFold {
            rank: 1,
            billable: Some(true),
            pricing_category: Some(category),
            pricing_type: Some("regular"),
            ..StatusFold::default()
        };
        apply(&db.conn, 1, "wamid.A", &priced("utility")).unwrap();
        apply(&db.conn, 1, "wamid.A", &priced("marketing")).unwrap();
        apply(&db.conn, 1, "wamid.A", &status(2, 5)).unwrap();
        let f = folded(&db);
        assert_eq!(
            (f.5, f.6.as_deref(), f.7.as_deref()),
            (Some(true), Some("marketing"), Some("regular"))
        );
    }

    #[test]
    fn a_status_of_another_message_is_not_the_rows_outcome() {
        let (_dir, db) = db();
        assert!(!apply(&db.conn, 1, "wamid.OLD", &status(3, 5)).unwrap());
        assert_eq!(folded(&db).0, None);
    }

    #[test]
    fn refolding_from_the_table_gives_what_the_live_fold_gave() {
        let (_dir, db) = db();
        // Recorded out of order, repeated, one Twilio-style status with no
        // timestamp (its time is when it happened), and pricing twice.
        let rows: [(&str, i64, i64, &str, Option<&str>); 6] = [
            ("read", 3, 1_750_000_300, "2025-06-15T15:11:40Z", None),
            ("delivered", 2, 0, "2025-06-15T15:06:50Z", Some("utility")),
            ("delivered", 2, 1_750_000_100, "2025-06-15T15:08:20Z", None),
            (
                "sent",
                1,
                1_750_000_001,
                "2025-06-15T15:06:41Z",
                Some("marketing"),
            ),
            ("read", 3, 1_750_000_200, "2025-06-15T15:10:00Z", None),
            ("sent", 1, 1_750_000_000, "2025-06-15T15:06:40Z", None),
        ];
        for (name, rank, ts, at, category) in rows {
            db.conn
                .execute(
                    "INSERT INTO message_statuses (message_id, status, rank, timestamp, occurred_at,
                         provider, campaign_id, person_id, occurrence, received_at, billable,
                         pricing_category, pricing_type)
                     VALUES ('wamid.A', ?1, ?2, ?3, ?4, 'meta', 'c', 525512345678, '', ?4, ?5, ?6, ?7)",
                    params![
                        name,
                        rank,
                        ts,
                        at,
                        category.map(|_| true),
                        category,
                        category.map(|_| "regular")
                    ],
                )
                .unwrap();
            apply(
                &db.conn,
                1,
                "wamid.A",
                &StatusFold {
                    rank,
                    at: status_seconds(ts, at),
                    billable: category.map(|_| true),
                    pricing_category: category,
                    pricing_type: category.map(|_| "regular"),
                    ..StatusFold::default()
                },
            )
            .unwrap();
        }
        let live = folded(&db);
        assert_eq!(
            (live.0, live.1, live.2, live.6.as_deref()),
            (
                Some(3),
                Some(1_750_000_010),
                Some(1_750_000_200),
                Some("marketing")
            )
        );
        db.conn
            .execute_batch(
                "UPDATE journal SET status_rank = NULL, delivered_ts = NULL, read_ts = NULL,
                     billable = NULL, pricing_category = NULL, pricing_type = NULL",
            )
            .unwrap();
        assert_eq!(backfill(&db.conn).unwrap(), 1);
        assert_eq!(folded(&db), live);
        // A row given another message id sheds the old message's fold.
        db.conn
            .execute("UPDATE journal SET message_id = 'wamid.B'", [])
            .unwrap();
        refold(&db.conn, 1).unwrap();
        assert_eq!(folded(&db), Folded::default());
    }

    #[test]
    fn statuses_recorded_before_the_row_knew_its_message_are_folded_when_it_does() {
        let (_dir, db) = db();
        db.conn
            .execute_batch(
                "UPDATE journal SET message_id = NULL, state = 'in_flight';
                 INSERT INTO message_statuses (message_id, status, rank, timestamp, occurred_at,
                     provider, received_at)
                 VALUES ('wamid.Z', 'delivered', 2, 1750000100, '2025-06-15T15:08:20Z', 'meta',
                         '2025-06-15T15:08:21Z');",
            )
            .unwrap();
        refold(&db.conn, 1).unwrap();
        assert_eq!(
            folded(&db),
            Folded::default(),
            "no message, nothing to fold"
        );
        db.conn
            .execute("UPDATE journal SET message_id = 'wamid.Y'", [])
            .unwrap();
        refold(&db.conn, 1).unwrap();
        assert_eq!(folded(&db), Folded::default(), "another message's status");
        db.conn
            .execute("UPDATE journal SET message_id = 'wamid.Z'", [])
            .unwrap();
        refold(&db.conn, 1).unwrap();
        let (rank, delivered, ..) = folded(&db);
        assert_eq!((rank, delivered), (Some(2), Some(1_750_000_100)));
    }

    /// What the report and `status` computed before the fold, straight from
    /// `message_statuses` (the queries they ran then), for one journal row's message:
    /// (best rank, first delivered, first read, first failure's code).
    fn searched(
        conn: &Connection,
        message_id: &str,
    ) -> (Option<i64>, Option<i64>, Option<i64>, Option<i64>) {
        let best = conn
            .query_row(
                "SELECT max(rank) FROM message_statuses WHERE message_id = ?1",
                params![message_id],
                |r| r.get(0),
            )
            .unwrap();
        let first = |rank: i64| -> Option<i64> {
            let mut stmt = conn
                .prepare("SELECT status, timestamp FROM message_statuses WHERE message_id = ?1 AND rank = ?2")
                .unwrap();
            let pairs: Vec<(String, i64)> = stmt
                .query_map(params![message_id, rank], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            pairs
                .into_iter()
                .map(|(name, ts)| {
                    if ts != 0 {
                        return ts;
                    }
                    let text: Option<String> = conn
                        .query_row(
                            "SELECT min(occurred_at) FROM message_statuses WHERE message_id = ?1 AND status = ?2",
                            params![message_id, name],
                            |r| r.get(0),
                        )
                        .unwrap();
                    text.and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
                        .map_or(0, |t| t.timestamp())
                })
                .min()
        };
        let code = conn
            .query_row(
                "SELECT error_code FROM message_statuses WHERE message_id = ?1 AND rank = 4
                 ORDER BY id LIMIT 1",
                params![message_id],
                |r| r.get(0),
            )
            .optional()
            .unwrap()
            .flatten();
        (best, first(2), first(3), code)
    }

    /// `status`'s billing as it was: the latest priced status of each message
    /// matched to the campaign.
    fn billed_by_search(conn: &Connection) -> Vec<(Option<bool>, Option<String>, Option<String>)> {
        let mut stmt = conn
            .prepare(
                "SELECT s.billable, s.pricing_category, s.pricing_type
                 FROM (SELECT max(id) AS id FROM message_statuses
                       WHERE campaign_id = 'c'
                         AND (billable IS NOT NULL OR pricing_category IS NOT NULL)
                       GROUP BY message_id) latest
                 JOIN message_statuses s ON s.id = latest.id ORDER BY 1, 2, 3",
            )
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn migrating_folds_what_the_old_queries_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        {
            // The schema before 0013, as that build wrote it.
            let conn = crate::db::at_schema(&path, 12);
            conn
                .execute(
                    "INSERT INTO campaigns (id, fingerprint, template, language, category, provider, created_at, plan_run)
                     VALUES ('c', 'f', 't', 'es_MX', 'marketing', 'cloud_api', '2026-01-01T00:00:00Z', 1)",
                    [],
                )
                .unwrap();
            let journal = [
                (1, "", "accepted", Some("wamid.1")),
                (2, "", "accepted", Some("wamid.2")),
                (3, "", "accepted", Some("wamid.3")),
                (4, "", "accepted", Some("wamid.4")),
                (5, "", "failed", None),
                (6, "test:1", "accepted", Some("wamid.6")),
                (7, "", "accepted", Some("wamid.7")),
            ];
            for (person, occurrence, state, message_id) in journal {
                conn.execute(
                    "INSERT INTO journal (campaign_id, person_id, occurrence, phone, line, seq,
                             plan_run, params, state, attempts, message_id, updated_at)
                         VALUES ('c', ?1, ?2, '+5255123456' || ?1, 2, ?1, 1, '[]', ?3, 1, ?4,
                                 '2026-01-01T00:00:00Z')",
                    params![person, occurrence, state, message_id],
                )
                .unwrap();
            }
            // (message, status, rank, timestamp, occurred_at, error, matched, pricing)
            type Row<'a> = (
                &'a str,
                &'a str,
                i64,
                i64,
                &'a str,
                Option<i64>,
                bool,
                Option<&'a str>,
            );
            let statuses: [Row<'_>; 14] = [
                (
                    "wamid.1",
                    "read",
                    3,
                    1_750_000_300,
                    "2025-06-15T15:11:40Z",
                    None,
                    true,
                    None,
                ),
                (
                    "wamid.1",
                    "delivered",
                    2,
                    1_750_000_100,
                    "2025-06-15T15:08:20Z",
                    None,
                    true,
                    Some("marketing"),
                ),
                (
                    "wamid.1",
                    "delivered",
                    2,
                    1_750_000_050,
                    "2025-06-15T15:07:30Z",
                    None,
                    true,
                    None,
                ),
                (
                    "wamid.1",
                    "sent",
                    1,
                    1_750_000_010,
                    "2025-06-15T15:06:50Z",
                    None,
                    true,
                    Some("utility"),
                ),
                // Twilio: no timestamps, so each status once, timed when it happened.
                (
                    "wamid.2",
                    "sent",
                    1,
                    0,
                    "2025-06-15T15:06:41Z",
                    None,
                    true,
                    None,
                ),
                (
                    "wamid.2",
                    "delivered",
                    2,
                    0,
                    "2025-06-15T15:06:45Z",
                    None,
                    true,
                    None,
                ),
                (
                    "wamid.3",
                    "sent",
                    1,
                    1_750_000_001,
                    "2025-06-15T15:06:41Z",
                    None,
                    true,
                    Some("marketing"),
                ),
                (
                    "wamid.3",
                    "failed",
                    4,
                    1_750_000_020,
                    "2025-06-15T15:07:00Z",
                    Some(131_026),
                    true,
                    None,
                ),
                (
                    "wamid.3",
                    "failed",
                    4,
                    1_750_000_030,
                    "2025-06-15T15:07:10Z",
                    Some(131_000),
                    true,
                    None,
                ),
                (
                    "wamid.3",
                    "read",
                    3,
                    1_750_000_040,
                    "2025-06-15T15:07:20Z",
                    None,
                    true,
                    None,
                ),
                (
                    "wamid.6",
                    "delivered",
                    2,
                    1_750_000_040,
                    "2025-06-15T15:07:20Z",
                    None,
                    true,
                    Some("marketing"),
                ),
                // Recorded before its row knew the message, and never matched.
                (
                    "wamid.7",
                    "read",
                    3,
                    1_750_000_040,
                    "2025-06-15T15:07:20Z",
                    None,
                    false,
                    Some("marketing"),
                ),
                (
                    "wamid.7",
                    "sent",
                    1,
                    1_750_000_001,
                    "2025-06-15T15:06:41Z",
                    None,
                    false,
                    None,
                ),
                (
                    "wamid.X",
                    "read",
                    3,
                    1_750_000_040,
                    "2025-06-15T15:07:20Z",
                    None,
                    false,
                    None,
                ),
            ];
            for (message_id, status, rank, ts, at, code, matched, category) in statuses {
                conn
                    .execute(
                        "INSERT INTO message_statuses (message_id, status, rank, timestamp, occurred_at,
                             provider, error_code, campaign_id, received_at, billable,
                             pricing_category, pricing_type)
                         VALUES (?1, ?2, ?3, ?4, ?5, 'meta', ?6, ?7, ?5, ?8, ?9, ?10)",
                        params![
                            message_id,
                            status,
                            rank,
                            ts,
                            at,
                            code,
                            matched.then_some("c"),
                            category.map(|_| true),
                            category,
                            category.map(|_| "regular")
                        ],
                    )
                    .unwrap();
            }
        }
        let before_conn = Connection::open(&path).unwrap();
        let ids = [
            "wamid.1", "wamid.2", "wamid.3", "wamid.4", "wamid.6", "wamid.7",
        ];
        let before: Vec<_> = ids.iter().map(|id| searched(&before_conn, id)).collect();
        let billed_before = billed_by_search(&before_conn);
        let best_before: (i64, i64, i64, i64, i64) = before_conn
            .query_row(
                "SELECT count(*), count(best), coalesce(sum(best IN (2, 3)), 0),
                        coalesce(sum(best = 3), 0), coalesce(sum(best = 4), 0)
                 FROM (SELECT (SELECT max(s.rank) FROM message_statuses s
                               WHERE s.message_id = j.message_id) AS best
                       FROM journal j WHERE j.campaign_id = 'c' AND j.state = 'accepted'
                         AND j.occurrence NOT GLOB 'test:*')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        drop(before_conn);

        let db = Db::open(&path).unwrap();
        let after: Vec<_> = ids
            .iter()
            .map(|id| {
                db.conn
                    .query_row(
                        "SELECT status_rank, delivered_ts, read_ts, status_error_code FROM journal
                         WHERE message_id = ?1",
                        params![id],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                    )
                    .unwrap()
            })
            .collect();
        assert_eq!(after, before);
        assert_eq!(
            after[0],
            (Some(3), Some(1_750_000_050), Some(1_750_000_300), None),
            "the test is about something"
        );
        assert_eq!(after[2].3, Some(131_026), "the first failure's code");
        let (accepted, with_status, delivered, read, failed) = best_before;
        assert_eq!(
            super::super::query::accepted_by_best_status(&db.conn, "c").unwrap(),
            (
                accepted as u64,
                with_status as u64,
                delivered as u64,
                read as u64,
                failed as u64
            )
        );
        let mut billed_after = Vec::new();
        super::super::query::priced(&db.conn, "c", |_, billable, category, kind| {
            billed_after.push((billable, category, kind));
        })
        .unwrap();
        billed_after.sort();
        assert_eq!(billed_after, billed_before);
        assert_eq!(billed_after.len(), 3, "wamid.1, wamid.3 and the test send");
    }

    #[test]
    fn statuses_that_came_before_the_sends_answer_are_folded_when_it_is_recorded() {
        let (_dir, db) = db();
        db.conn
            .execute_batch(
                "UPDATE journal SET state = 'in_flight', message_id = NULL;
                 INSERT INTO message_statuses (message_id, status, rank, timestamp, occurred_at,
                     provider, received_at)
                 VALUES ('wamid.Z', 'delivered', 2, 1750000100, '2025-06-15T15:08:20Z', 'meta',
                         '2025-06-15T15:08:20Z');",
            )
            .unwrap();
        let accepted = |row: i64, digits: &str, wamid: &str| {
            let phone = crate::phone::E164::from_digits(digits).unwrap();
            super::super::Outcome {
                row,
                key: super::super::RowKey::for_phone(phone, ""),
                to: crate::provider::To::Phone(phone),
                disposition: super::super::Disposition::Accepted {
                    message_id: Some(wamid.to_owned()),
                    wa_id: None,
                    status: None,
                },
                claimed_at: "2025-06-15T15:08:00Z".into(),
            }
        };
        // A second message of the same batch, with no status yet.
        db.conn
            .execute_batch(
                "INSERT INTO journal (id, campaign_id, person_id, phone, line, seq, plan_run,
                     params, state, attempts, updated_at)
                 VALUES (2, 'c', 525512345679, '+525512345679', 3, 2, 1, '[]', 'in_flight', 1,
                         '2026-01-01T00:00:00Z');",
            )
            .unwrap();
        let outcome = accepted(1, "525512345678", "wamid.Z");
        let second = accepted(2, "525512345679", "wamid.Y");
        super::super::record_in(
            &db.conn,
            "c",
            false,
            &[outcome, second],
            "2025-06-15T15:08:30Z",
            true,
        )
        .unwrap();
        let f = folded(&db);
        assert_eq!((f.0, f.1), (Some(2), Some(1_750_000_100)));
        let rank: Option<i64> = db
            .conn
            .query_row("SELECT status_rank FROM journal WHERE id = 2", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(rank, None, "a message with no status has nothing folded");
    }
}
