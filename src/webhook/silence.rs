//! Silent webhooks: opt-outs and failures arrive by webhook, so messages sent in
//! the last 24 hours with no webhook recorded in that time mean the webhook server
//! is not running, not reachable, or writing to another database, and opt-outs and
//! statuses may be missing.

use chrono::{DateTime, Duration, Utc};
use rusqlite::{Connection, params};
use serde::Serialize;

use crate::clock;

/// How far back sends and webhooks are looked for.
pub const WINDOW_HOURS: i64 = 24;

/// Sends younger than this are not counted yet: their first statuses may still be
/// on their way.
pub const GRACE_MINUTES: i64 = 15;

/// Messages sent in the window while no webhook was recorded in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Silence {
    /// Messages the provider accepted in the window (any campaign).
    pub sent: u64,
    /// The window's start, RFC 3339.
    pub since: String,
}

impl Silence {
    /// The warning `send` and `status` print.
    pub fn warning(&self, db: &std::path::Path) -> String {
        let sent = if self.sent == 1 {
            "1 message was".to_owned()
        } else {
            format!("{} messages were", self.sent)
        };
        format!(
            "{sent} sent in the last {WINDOW_HOURS} h but no webhook was recorded since {}: \
             opt-outs and delivery statuses may be missing. Check that `wacampaign --db {} webhook \
             serve` is running with this database, that its /healthz answers from outside, and that \
             the callback URL in Meta's App Dashboard (or Twilio's status callback) points at it",
            self.since,
            db.display()
        )
    }
}

/// Whether messages were sent in the last 24 hours (before `now`, leaving out the
/// last [`GRACE_MINUTES`]) while no webhook was recorded since the window began.
/// A database without the tables (nothing ever sent or received) is not silent.
pub fn check(conn: &Connection, now: DateTime<Utc>) -> rusqlite::Result<Option<Silence>> {
    let since = clock::format(now - Duration::hours(WINDOW_HOURS));
    let until = clock::format(now - Duration::minutes(GRACE_MINUTES));
    let sent = crate::journal::query::sent_between(conn, &since, &until)?;
    if sent == 0 {
        return Ok(None);
    }
    let webhooks: i64 = conn
        .prepare_cached("SELECT count(*) FROM webhook_deliveries WHERE received_at >= ?1")?
        .query_row(params![since], |r| r.get(0))?;
    Ok((webhooks == 0).then_some(Silence { sent, since }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;
    use crate::journal::{State, fixture};

    fn at(text: &str) -> DateTime<Utc> {
        clock::parse(text).unwrap()
    }

    #[test]
    fn sends_without_webhooks_are_silent_until_one_arrives() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("w.db")).unwrap();
        let now = at("2026-06-02T12:00:00Z");
        assert_eq!(check(&db.conn, now).unwrap(), None, "nothing sent");
        db.conn
            .execute(
                "INSERT INTO campaigns (id, fingerprint, template, language, category, provider, created_at)
                 VALUES ('promo', 'f', 't', 'es_MX', 'marketing', 'cloud_api', '2026-06-01T00:00:00Z'),
                        ('demo', 'f', 't', 'es_MX', 'marketing', 'simulator', '2026-06-01T00:00:00Z')",
                [],
            )
            .unwrap();
        // The simulator's sends never get a webhook: they do not count.
        for (campaign, person, phone, message_id, at) in [
            ("promo", 1, "+1", "w1", "2026-06-02T08:00:00Z"),
            ("promo", 2, "+2", "w2", "2026-06-02T11:55:00Z"),
            ("promo", 3, "+3", "w3", "2026-05-31T08:00:00Z"),
            ("demo", 4, "+4", "w4", "2026-06-02T08:00:00Z"),
        ] {
            fixture::insert(
                &db.conn,
                &fixture::Row {
                    campaign,
                    person,
                    phone,
                    seq: person,
                    state: State::Accepted,
                    message_id: Some(message_id),
                    outcome_at: Some(at),
                    updated_at: at,
                },
            )
            .unwrap();
        }
        let silence = check(&db.conn, now).unwrap().expect("silent");
        // The send five minutes ago is in its grace; the one three days ago is out.
        assert_eq!(silence.sent, 1);
        assert_eq!(silence.since, "2026-06-01T12:00:00Z");
        // The day after, nothing was sent in the window.
        assert_eq!(check(&db.conn, at("2026-06-03T13:00:00Z")).unwrap(), None);
        // A webhook before the window does not count; one inside it does.
        db.conn
            .execute(
                "INSERT INTO webhook_deliveries (body_sha256, provider, received_at)
                 VALUES ('a', 'meta', '2026-06-01T11:00:00Z')",
                [],
            )
            .unwrap();
        assert!(check(&db.conn, now).unwrap().is_some());
        db.conn
            .execute(
                "INSERT INTO webhook_deliveries (body_sha256, provider, received_at)
                 VALUES ('b', 'meta', '2026-06-02T09:00:00Z')",
                [],
            )
            .unwrap();
        assert_eq!(check(&db.conn, now).unwrap(), None);
    }
}
