//! WhatsApp's customer-service window: for 24 hours after a person's last message,
//! a business may send them free-form (session) messages, not only templates.
//!
//! The webhook server records every message a person sends (`inbound_messages`,
//! dated by the provider's timestamp, which is what Meta counts from). Sending
//! counts from a safety margin inside the window, so a session campaign never
//! sends just as it closes.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use rusqlite::{Connection, params};

use crate::clock;
use crate::phone::E164;

/// How long the window stays open after a person's message.
pub const WINDOW: Duration = Duration::hours(24);
/// How much earlier than the window's end we stop treating it as open: time for a
/// campaign to queue, pace and send.
pub const SAFETY_MARGIN: Duration = Duration::hours(1);

/// When `phone` (or another spelling WhatsApp uses for it) last messaged us.
pub fn last_inbound(conn: &Connection, phone: E164) -> rusqlite::Result<Option<DateTime<Utc>>> {
    let last: Option<String> = conn
        .prepare_cached("SELECT max(occurred_at) FROM inbound_messages WHERE consent_key = ?1")?
        .query_row(params![phone.consent_key() as i64], |r| r.get(0))?;
    Ok(last.and_then(|t| clock::parse(&t).ok()))
}

/// Whether a session message may be sent to `phone` at `now`: its last message is
/// less than 23 hours old (the 24-hour window less [`SAFETY_MARGIN`]).
pub fn window_open(conn: &Connection, phone: E164, now: DateTime<Utc>) -> rusqlite::Result<bool> {
    Ok(last_inbound(conn, phone)?.is_some_and(|last| is_open(last, now)))
}

fn is_open(last: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    last <= now + Duration::minutes(5) && now - last < WINDOW - SAFETY_MARGIN
}

/// The windows open at one moment, loaded once for a whole campaign: one query,
/// then a hash lookup per recipient.
#[derive(Debug, Clone, Default)]
pub struct OpenWindows {
    now: DateTime<Utc>,
    /// Last inbound time by consent key.
    last: HashMap<u64, DateTime<Utc>>,
}

impl OpenWindows {
    /// Every number whose window is open at `now` (less the safety margin).
    pub fn load(conn: &Connection, now: DateTime<Utc>) -> rusqlite::Result<OpenWindows> {
        let since = clock::format(now - (WINDOW - SAFETY_MARGIN));
        let mut stmt = conn.prepare(
            "SELECT consent_key, max(occurred_at) FROM inbound_messages
             WHERE occurred_at > ?1 GROUP BY consent_key",
        )?;
        let mut last = HashMap::new();
        let rows = stmt.query_map(params![since], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))
        })?;
        for row in rows {
            let (key, at) = row?;
            if let Ok(at) = clock::parse(&at) {
                last.insert(key, at);
            }
        }
        Ok(OpenWindows { now, last })
    }

    pub fn is_open(&self, phone: E164) -> bool {
        self.last
            .get(&phone.consent_key())
            .is_some_and(|&last| is_open(last, self.now))
    }

    /// When `phone`'s window stops counting as open (its end less the margin).
    pub fn closes_at(&self, phone: E164) -> Option<DateTime<Utc>> {
        self.last
            .get(&phone.consent_key())
            .map(|&last| last + WINDOW - SAFETY_MARGIN)
            .filter(|&at| at > self.now)
    }

    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    fn inbound(conn: &Connection, id: &str, phone: &str, at: &str) {
        let phone = E164::from_digits(phone).unwrap();
        conn.execute(
            "INSERT INTO inbound_messages (message_id, provider, phone, consent_key, kind, occurred_at, received_at)
             VALUES (?1, 'meta', ?2, ?3, 'text', ?4, ?4)",
            params![id, phone.to_string(), phone.consent_key() as i64, at],
        )
        .unwrap();
    }

    #[test]
    fn the_window_closes_an_hour_early() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("w.db")).unwrap();
        // Sent from the old Mexican mobile spelling; asked about in the new one.
        inbound(&db.conn, "wamid.1", "5215512345678", "2026-03-01T10:00:00Z");
        inbound(&db.conn, "wamid.0", "5215512345678", "2026-02-28T09:00:00Z");
        let phone = E164::from_digits("525512345678").unwrap();
        let at = |t: &str| clock::parse(t).unwrap();
        assert_eq!(
            last_inbound(&db.conn, phone).unwrap(),
            Some(at("2026-03-01T10:00:00Z"))
        );
        assert!(window_open(&db.conn, phone, at("2026-03-01T10:00:01Z")).unwrap());
        assert!(window_open(&db.conn, phone, at("2026-03-02T08:59:59Z")).unwrap());
        assert!(!window_open(&db.conn, phone, at("2026-03-02T09:00:00Z")).unwrap());
        let stranger = E164::from_digits("14155550123").unwrap();
        assert!(!window_open(&db.conn, stranger, at("2026-03-01T10:00:01Z")).unwrap());

        let windows = OpenWindows::load(&db.conn, at("2026-03-01T12:00:00Z")).unwrap();
        assert_eq!(windows.len(), 1);
        assert!(windows.is_open(phone));
        assert!(!windows.is_open(stranger));
        assert_eq!(windows.closes_at(phone), Some(at("2026-03-02T09:00:00Z")));
        let later = OpenWindows::load(&db.conn, at("2026-03-02T09:30:00Z")).unwrap();
        assert!(!later.is_open(phone));
    }
}
