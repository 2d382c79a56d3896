//! Frequency caps: how many messages one person may receive from this business in
//! a rolling window, across every campaign in the database.
//!
//! `sending.frequency_cap = { marketing = "2 per 7d", all = "4 per 7d" }`. Messages
//! count once accepted, by the journal's person (one key for a number's Mexican,
//! Brazilian and Argentine spellings), through indexes of accepted rows by time
//! (migration 0010) and by person (0014) rather than a scan per contact.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::Connection;

use crate::category::Category;

/// The messages caps count, as the journal keeps them. The journal implements it
/// for its connection (`journal::hold`): it alone spells its states, and the
/// partial indexes these reads go through (migrations 0010 and 0014) are chosen only
/// when the states are written into the SQL.
pub trait Sent {
    /// Each message accepted after `since`: `each(person, campaign, outcome_at)`.
    fn accepted_since(
        &self,
        since: &str,
        each: &mut dyn FnMut(i64, &str, Option<&str>),
    ) -> rusqlite::Result<()>;

    /// The times of the latest `limit` messages to `person`: accepted after `since`
    /// (by a campaign of `category`, when given), or in flight from a campaign other
    /// than `campaign_id`.
    fn latest_to(
        &self,
        person: i64,
        since: &str,
        category: Option<&str>,
        limit: u32,
        campaign_id: &str,
    ) -> rusqlite::Result<Vec<String>>;
}

/// Which messages a cap counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    All,
    Category(Category),
}

/// At most `count` messages in any `window`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cap {
    pub scope: Scope,
    pub count: u32,
    pub window: chrono::Duration,
    /// As written, for messages: `2 per 7d`.
    pub text: String,
}

impl Cap {
    /// `key` is `all` or a category; `text` is `N per Nd` (also `h` hours, `w` weeks).
    pub fn parse(key: &str, text: &str) -> Result<Cap, String> {
        let scope = match key.trim() {
            "all" => Scope::All,
            "marketing" => Scope::Category(Category::Marketing),
            "utility" => Scope::Category(Category::Utility),
            "authentication" => Scope::Category(Category::Authentication),
            other => {
                return Err(format!(
                    "sending.frequency_cap: `{other}` is not a category; use marketing, \
                     utility, authentication or all"
                ));
            }
        };
        let bad = |why: &str| {
            format!(
                "sending.frequency_cap.{key}: `{text}` {why}; write it as \"N per Nd\", e.g. \
                 \"2 per 7d\" (at most 2 messages in any 7 days; h for hours, w for weeks)"
            )
        };
        let (count, window) = text
            .split_once(" per ")
            .ok_or_else(|| bad("is not a cap"))?;
        let count: u32 = count.trim().parse().map_err(|_| bad("is not a cap"))?;
        if count == 0 {
            return Err(bad(
                "allows no message at all (leave the campaign unsent instead)",
            ));
        }
        let window = window.trim();
        let split = window.len().saturating_sub(1);
        let (n, unit) = (window.get(..split).unwrap_or(""), window.get(split..));
        let n: i64 = n.trim().parse().map_err(|_| bad("is not a cap"))?;
        let window = match unit {
            Some("d") => chrono::Duration::days(n.min(3650)),
            Some("h") => chrono::Duration::hours(n.min(87_600)),
            Some("w") => chrono::Duration::weeks(n.min(520)),
            _ => return Err(bad("has no unit (d, h or w)")),
        };
        if n <= 0 {
            return Err(bad("has an empty window"));
        }
        Ok(Cap {
            scope,
            count,
            window,
            text: text.trim().to_owned(),
        })
    }

    /// Whether this cap counts a campaign of `category`'s messages at all.
    pub fn applies_to(&self, category: Category) -> bool {
        match self.scope {
            Scope::All => true,
            Scope::Category(c) => c == category,
        }
    }

    fn label(&self) -> String {
        match self.scope {
            Scope::All => format!("{} (all categories)", self.text),
            Scope::Category(c) => format!("{} {c}", self.text),
        }
    }
}

/// A person over a cap: when they may be messaged again, and which cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Over {
    pub until: DateTime<Utc>,
    pub detail: String,
}

fn over(cap: &Cap, mut times: Vec<String>) -> Option<Over> {
    if times.len() < cap.count as usize {
        return None;
    }
    times.sort_unstable_by(|a, b| b.cmp(a));
    let nth = crate::clock::parse(&times[cap.count as usize - 1]).ok()?;
    Some(over_from(cap, nth))
}

fn over_from(cap: &Cap, nth: DateTime<Utc>) -> Over {
    let until = nth + cap.window;
    Over {
        until,
        detail: format!(
            "frequency cap {} reached; eligible from {}",
            cap.label(),
            crate::clock::format(until)
        ),
    }
}

/// A journal time (`2026-11-21T05:30:00Z`, as the one clock writes them) in Unix
/// seconds, without the general parser's allocations; other forms go through it.
fn unix_seconds(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let fixed = b.len() == 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z';
    if !fixed {
        return crate::clock::parse(text).ok().map(|t| t.timestamp());
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> { text.get(r)?.parse().ok() };
    let date = chrono::NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    let time = date.and_hms_opt(num(11..13)?, num(14..16)?, num(17..19)?)?;
    Some(time.and_utc().timestamp())
}

/// Every person at or over this campaign's caps, read once before planning.
#[derive(Debug, Default)]
pub struct CapIndex {
    over: HashMap<i64, Over>,
}

impl CapIndex {
    /// Reads the accepted messages inside each cap's window, by time (an index
    /// scan), and keeps the persons at their cap.
    pub fn load(
        conn: &Connection,
        caps: &[Cap],
        category: Category,
        now: DateTime<Utc>,
    ) -> rusqlite::Result<CapIndex> {
        let mut index = CapIndex::default();
        let categories: HashMap<String, String> = {
            let mut stmt = conn.prepare("SELECT id, category FROM campaigns")?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?
        };
        for cap in caps.iter().filter(|c| c.applies_to(category)) {
            let since = crate::clock::format(now - cap.window);
            // (person, when) pairs sorted, rather than a map of vectors: a million
            // messages in the window cost one allocation and one sort.
            let mut sent: Vec<(i64, i64)> = Vec::new();
            conn.accepted_since(&since, &mut |person, campaign, at| {
                if let Scope::Category(wanted) = cap.scope
                    && categories.get(campaign).map(String::as_str) != Some(wanted.as_str())
                {
                    return;
                }
                if let Some(at) = at.and_then(unix_seconds) {
                    sent.push((person, at));
                }
            })?;
            sent.sort_unstable();
            let n = cap.count as usize;
            for times in sent.chunk_by(|a, b| a.0 == b.0) {
                if times.len() < n {
                    continue;
                }
                // The n-th latest: once it leaves the window, the person is under.
                let Some(nth) = DateTime::from_timestamp(times[times.len() - n].1, 0) else {
                    continue;
                };
                let o = over_from(cap, nth);
                let person = times[0].0;
                if index
                    .over
                    .get(&person)
                    .is_none_or(|old| old.until < o.until)
                {
                    index.over.insert(person, o);
                }
            }
        }
        Ok(index)
    }

    pub fn over(&self, person: i64) -> Option<&Over> {
        self.over.get(&person)
    }
}

/// One person against the caps, at the moment of sending: their accepted
/// messages, and those another campaign has in flight to them (two campaigns
/// running at once must not both take the last place under a cap), through the
/// person index.
pub fn check(
    conn: &Connection,
    caps: &[Cap],
    category: Category,
    person: i64,
    campaign_id: &str,
    now: DateTime<Utc>,
) -> rusqlite::Result<Option<Over>> {
    let mut worst: Option<Over> = None;
    for cap in caps.iter().filter(|c| c.applies_to(category)) {
        let since = crate::clock::format(now - cap.window);
        let category = match cap.scope {
            Scope::All => None,
            Scope::Category(c) => Some(c.as_str()),
        };
        let times = conn.latest_to(person, &since, category, cap.count, campaign_id)?;
        if let Some(o) = over(cap, times)
            && worst.as_ref().is_none_or(|w| w.until < o.until)
        {
            worst = Some(o);
        }
    }
    Ok(worst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_parse_and_bad_ones_say_what_to_write() {
        let cap = Cap::parse("marketing", "2 per 7d").unwrap();
        assert_eq!(cap.count, 2);
        assert_eq!(cap.window, chrono::Duration::days(7));
        assert!(cap.applies_to(Category::Marketing) && !cap.applies_to(Category::Utility));
        assert_eq!(Cap::parse("all", "4 per 2w").unwrap().window.num_days(), 14);
        for (key, text, why) in [
            ("marketing", "0 per 7d", "allows no message"),
            ("marketing", "2 per 0d", "empty window"),
            ("marketing", "2 a week", "is not a cap"),
            ("marketing", "2 per 7", "is not a cap"),
            ("promos", "2 per 7d", "not a category"),
        ] {
            let e = Cap::parse(key, text).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        }
    }

    #[test]
    fn the_nth_latest_message_says_when_the_person_is_eligible() {
        let cap = Cap::parse("all", "2 per 7d").unwrap();
        let o = over(
            &cap,
            vec![
                "2026-11-20T10:00:00Z".into(),
                "2026-11-27T10:00:00Z".into(),
                "2026-11-25T10:00:00Z".into(),
            ],
        )
        .unwrap();
        assert_eq!(crate::clock::format(o.until), "2026-12-02T10:00:00Z");
        assert!(over(&cap, vec!["2026-11-27T10:00:00Z".into()]).is_none());
        assert_eq!(
            unix_seconds("2026-11-27T10:00:00Z"),
            Some(
                crate::clock::parse("2026-11-27T10:00:00Z")
                    .unwrap()
                    .timestamp()
            )
        );
        assert_eq!(
            unix_seconds("2026-11-27 10:00:00"),
            unix_seconds("2026-11-27T10:00:00Z")
        );
        assert_eq!(unix_seconds("2026-13-27T10:00:00Z"), None);
    }
}
