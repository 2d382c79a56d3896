//! Meta's messaging limit: how many unique people the business portfolio may reach
//! outside a customer-service window in any rolling 24 hours (250, 2,000, 10,000,
//! 100,000 or unlimited, shared by every number of the portfolio).
//!
//! A campaign larger than what remains would fail at the limit, having spent the
//! allowance on whoever came first. So each person is reserved in `limit_reach` in
//! the transaction that claims their send (two campaigns running at once count each
//! other's reservations before their own, as SQLite serialises the two claims), and
//! once the limit is reached the rest are deferred until the oldest reservation is
//! 24 hours old. People inside an open customer-service window are not counted, as
//! Meta does not count them.

use std::fmt;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use crate::clock;
use crate::phone::E164;

/// Meta's lowest tier: what an unknown limit is taken to be, never unlimited.
pub const LOWEST_TIER: u64 = 250;

/// The rolling window Meta counts unique people over.
pub const WINDOW: chrono::Duration = chrono::Duration::hours(24);

/// A messaging limit: unique people per rolling 24 hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    Users(u64),
    Unlimited,
}

impl Limit {
    /// Reads a limit as the campaign file, the command line or Meta writes it: a
    /// number (`2000`, `2K`, `100k`), `TIER_2K`, or `unlimited` / `TIER_UNLIMITED`.
    pub fn parse(text: &str) -> Result<Limit, String> {
        let t = text.trim().to_ascii_uppercase();
        let t = t.strip_prefix("TIER_").unwrap_or(&t);
        if t == "UNLIMITED" {
            return Ok(Limit::Unlimited);
        }
        let (digits, scale) = match t.strip_suffix('K') {
            Some(d) => (d, 1000),
            None => (t, 1),
        };
        match digits.replace([',', '_'], "").parse::<u64>() {
            Ok(n) if n > 0 => Ok(Limit::Users(n * scale)),
            _ => Err(format!(
                "messaging limit `{}`: give the number of unique people per 24 hours (250, 2000, \
                 10000, 100000) or `unlimited`",
                text.trim()
            )),
        }
    }

    /// As the database stores it: -1 for unlimited.
    pub fn to_db(self) -> i64 {
        match self {
            Limit::Users(n) => i64::try_from(n).unwrap_or(i64::MAX),
            Limit::Unlimited => -1,
        }
    }

    pub fn from_db(n: i64) -> Limit {
        u64::try_from(n).map_or(Limit::Unlimited, Limit::Users)
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Users(n) => write!(f, "{n}"),
            Limit::Unlimited => f.write_str("unlimited"),
        }
    }
}

/// Where the limit a run holds to came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum Source {
    /// `--messaging-limit` or `WACAMPAIGN_MESSAGING_LIMIT`.
    CommandLine,
    /// `sending.messaging_limit` in the campaign file.
    Campaign,
    /// The phone number's account, as `wacampaign account` last read it.
    Account { fetched_at: String },
    /// Nobody said: the lowest tier.
    Unknown,
}

/// How much of the limit is used now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// People reached outside a window in the last 24 h by campaigns in this
    /// database, plus what other systems send (`sending.messaging_limit_other`).
    pub used: u64,
    pub limit: u64,
    /// When the oldest reservation in the window leaves it (RFC 3339).
    pub frees_at: Option<String>,
}

impl Usage {
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }

    /// What a deferred row says.
    pub fn deferral(&self) -> String {
        format!(
            "messaging limit: {} of {} used in the last 24 h; the rest can go after {}",
            self.used,
            self.limit,
            self.frees_at
                .as_deref()
                .and_then(|t| clock::parse(t).ok())
                .map_or_else(|| "24 h".to_owned(), |t| t.format("%H:%M UTC").to_string())
        )
    }
}

/// Reads the usage now (no reservation is made).
pub fn usage(
    conn: &Connection,
    limit: u64,
    other: u64,
    now: DateTime<Utc>,
) -> rusqlite::Result<Usage> {
    let since = clock::format(now - WINDOW);
    let (count, oldest): (i64, Option<String>) = conn
        .prepare_cached("SELECT count(*), min(reached_at) FROM limit_reach WHERE reached_at > ?1")?
        .query_row(params![since], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(Usage {
        used: u64::try_from(count).unwrap_or(0) + other,
        limit,
        frees_at: oldest
            .as_deref()
            .and_then(|t| clock::parse(t).ok())
            .map(|t| clock::format(t + WINDOW)),
    })
}

/// The guard a run's claims go through.
#[derive(Debug, Clone)]
pub struct Guard {
    pub limit: u64,
    pub other: u64,
    campaign_id: String,
    /// Counted at the start of the claim being made; `None` between claims.
    current: Option<Usage>,
    /// The last exact count (people in the window, without `other`), when it was
    /// made (to the second, as `reached_at` is written) and how long ago.
    counted: Option<(u64, String, std::time::Instant)>,
}

/// How long an exact count is built on before the guard counts again (so people
/// leaving the window free their places).
const RECOUNT_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// What the guard says about one person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Send: reserved now, already counted in the window, or inside an open
    /// customer-service window.
    Send,
    /// Not now: the limit is reached until `retry_at`.
    Full { detail: String, retry_at: String },
}

impl Guard {
    pub fn new(limit: u64, other: u64, campaign_id: &str) -> Guard {
        Guard {
            limit,
            other,
            campaign_id: campaign_id.to_owned(),
            current: None,
            counted: None,
        }
    }

    /// The usage at the start of a claim. Counting everyone in the window costs
    /// O(people reached), about 5 ms at 100,000, at every claim; so the last exact count
    /// plus everyone reserved since it (in any process: `reached_at` at or after
    /// its second) stands in for it. That can only overstate the use (people who
    /// left the window are still counted, someone reached again counts twice), so
    /// it never lets a run overshoot; once it reaches the limit, or is ten seconds
    /// old, the guard counts exactly again (8,000 rows reserved since count in well
    /// under a millisecond).
    fn usage_now(&mut self, tx: &Connection, now: DateTime<Utc>) -> rusqlite::Result<Usage> {
        if let Some((base, at, when)) = &self.counted
            && when.elapsed() < RECOUNT_AFTER
        {
            let added: i64 = tx
                .prepare_cached("SELECT count(*) FROM limit_reach WHERE reached_at >= ?1")?
                .query_row(params![at], |r| r.get(0))?;
            let used = base + u64::try_from(added).unwrap_or(0) + self.other;
            if used < self.limit {
                return Ok(Usage {
                    used,
                    limit: self.limit,
                    frees_at: None,
                });
            }
        }
        let exact = usage(tx, self.limit, self.other, now)?;
        self.counted = Some((
            exact.used - self.other,
            clock::format(now),
            std::time::Instant::now(),
        ));
        Ok(exact)
    }

    /// Judges one person inside the claim's transaction, reserving them when they
    /// count. The usage is read once per claim (the transaction holds the write
    /// lock, so nobody else adds to it meanwhile) and kept up to date here.
    pub fn admit(
        &mut self,
        tx: &Connection,
        person: i64,
        phone: Option<E164>,
        now: DateTime<Utc>,
    ) -> rusqlite::Result<Verdict> {
        if let Some(phone) = phone
            && crate::service_window::window_open(tx, phone, now)?
        {
            return Ok(Verdict::Send);
        }
        let now_text = clock::format(now);
        let last: Option<String> = tx
            .prepare_cached("SELECT reached_at FROM limit_reach WHERE person_id = ?1")?
            .query_row(params![person], |r| r.get(0))
            .optional()?;
        let since = clock::format(now - WINDOW);
        let counted = last.as_deref().is_some_and(|t| t > since.as_str());
        if !counted {
            let mut usage = match self.current.take() {
                Some(u) => u,
                None => self.usage_now(tx, now)?,
            };
            // At the limit by an estimate (or with no time it frees): count exactly,
            // this claim's own reservations included, before deferring anyone.
            if usage.used >= usage.limit && usage.frees_at.is_none() {
                self.counted = None;
                usage = self.usage_now(tx, now)?;
            }
            if usage.used >= usage.limit {
                let retry_at = usage
                    .frees_at
                    .clone()
                    .unwrap_or_else(|| clock::format(now + WINDOW));
                let verdict = Verdict::Full {
                    detail: usage.deferral(),
                    retry_at,
                };
                self.current = Some(usage);
                return Ok(verdict);
            }
            self.current = Some(Usage {
                used: usage.used + 1,
                ..usage
            });
        }
        tx.prepare_cached(
            "INSERT INTO limit_reach (person_id, reached_at, campaign_id) VALUES (?1, ?2, ?3)
             ON CONFLICT (person_id) DO UPDATE SET reached_at = excluded.reached_at,
                 campaign_id = excluded.campaign_id",
        )?
        .execute(params![person, now_text, self.campaign_id])?;
        Ok(Verdict::Send)
    }

    /// Forgets the usage counted for the claim that just ended.
    pub fn end_claim(&mut self) {
        self.current = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    #[test]
    fn limits_read_as_meta_and_people_write_them() {
        assert_eq!(Limit::parse("250"), Ok(Limit::Users(250)));
        assert_eq!(Limit::parse("TIER_2K"), Ok(Limit::Users(2000)));
        assert_eq!(Limit::parse("100k"), Ok(Limit::Users(100_000)));
        assert_eq!(Limit::parse("10,000"), Ok(Limit::Users(10_000)));
        assert_eq!(Limit::parse("TIER_UNLIMITED"), Ok(Limit::Unlimited));
        assert_eq!(Limit::parse("unlimited"), Ok(Limit::Unlimited));
        assert!(Limit::parse("lots").is_err());
        assert!(Limit::parse("0").is_err());
        assert_eq!(Limit::from_db(Limit::Unlimited.to_db()), Limit::Unlimited);
        assert_eq!(Limit::from_db(2000), Limit::Users(2000));
    }

    #[test]
    fn the_guard_counts_unique_people_and_frees_them_after_a_day() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("w.db")).unwrap();
        let t0 = clock::parse("2026-11-01T10:00:00Z").unwrap();
        let mut guard = Guard::new(3, 1, "c");
        for person in [1, 2] {
            assert_eq!(
                guard.admit(&db.conn, person, None, t0).unwrap(),
                Verdict::Send
            );
        }
        // Person 1 again: already counted, so it costs nothing.
        assert_eq!(guard.admit(&db.conn, 1, None, t0).unwrap(), Verdict::Send);
        let Verdict::Full { detail, retry_at } = guard.admit(&db.conn, 3, None, t0).unwrap() else {
            panic!("3 of 3 are used (2 here, 1 elsewhere)");
        };
        assert_eq!(
            detail,
            "messaging limit: 3 of 3 used in the last 24 h; the rest can go after 10:00 UTC"
        );
        assert_eq!(retry_at, "2026-11-02T10:00:00Z");
        guard.end_claim();
        let later = t0 + chrono::Duration::hours(23);
        assert!(matches!(
            guard.admit(&db.conn, 3, None, later).unwrap(),
            Verdict::Full { .. }
        ));
        guard.end_claim();
        let day = t0 + WINDOW;
        assert_eq!(guard.admit(&db.conn, 3, None, day).unwrap(), Verdict::Send);
    }

    #[test]
    fn reservations_made_elsewhere_between_claims_count_without_a_full_recount() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let db = Db::open(&path).unwrap();
        let other = Db::open(&path).unwrap();
        let t0 = clock::parse("2026-11-01T10:00:00Z").unwrap();
        let mut guard = Guard::new(4, 0, "a");
        let mut elsewhere = Guard::new(4, 0, "b");
        assert_eq!(guard.admit(&db.conn, 1, None, t0).unwrap(), Verdict::Send);
        guard.end_claim();
        // Another campaign reserves two people in its own claims.
        for person in [2, 3] {
            assert_eq!(
                elsewhere.admit(&other.conn, person, None, t0).unwrap(),
                Verdict::Send
            );
            elsewhere.end_claim();
        }
        assert_eq!(guard.admit(&db.conn, 4, None, t0).unwrap(), Verdict::Send);
        let Verdict::Full { detail, retry_at } = guard.admit(&db.conn, 5, None, t0).unwrap() else {
            panic!("4 of 4: the other campaign's two count");
        };
        assert!(
            detail.starts_with("messaging limit: 4 of 4 used"),
            "{detail}"
        );
        assert_eq!(
            retry_at, "2026-11-02T10:00:00Z",
            "when the oldest frees, exactly"
        );
    }
}
