//! Who a person is to WhatsApp: a phone number, a business-scoped user ID (BSUID),
//! or both once they are linked.
//!
//! Meta identifies users by a BSUID (`US.13491208655302741918`: a country code, a
//! dot, then letters, digits and dots, as parent BSUIDs like `US.ENT.…` have) beside
//! or instead of the number; a user who adopts a username may hide the number. The
//! ledger records consent per identity, and the `identities` table links a BSUID to
//! the person it belongs to: the number's consent key once a number is known, else
//! the BSUID's own key. An opt-out recorded for any identity of a person blocks them
//! all, whichever identity was learned first.

use std::fmt;

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::phone::{DefaultRegion, E164};

/// The longest BSUID accepted. Meta documents no maximum; parent BSUIDs are longer
/// than the 20-odd characters of a plain one, and nothing real comes near this.
pub const MAX_BSUID_LEN: usize = 150;

/// Why a cell is not a BSUID.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BsuidError {
    #[error(
        "`{0}` is not a business-scoped user ID: it needs a two-letter country code, a dot, then letters, digits and dots (US.13491208655302741918)"
    )]
    Shape(String),
    #[error(
        "a business-scoped user ID of {0} characters is longer than the {MAX_BSUID_LEN} accepted"
    )]
    TooLong(usize),
}

/// A validated business-scoped user ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bsuid(String);

impl Bsuid {
    /// Reads a BSUID as written, surrounding spaces ignored.
    pub fn parse(raw: &str) -> Result<Bsuid, BsuidError> {
        let raw = raw.trim();
        if raw.len() > MAX_BSUID_LEN {
            return Err(BsuidError::TooLong(raw.chars().count()));
        }
        if is_bsuid(raw) {
            Ok(Bsuid(raw.to_owned()))
        } else {
            Err(BsuidError::Shape(raw.chars().take(40).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The ISO 3166 country code it starts with (`US`).
    pub fn country(&self) -> &str {
        &self.0[..2]
    }

    /// The key its own consent events and, while no number is linked, its journal
    /// rows are kept under: negative, so it never meets a number's consent key, and
    /// derived from the BSUID, so an opt-out for a BSUID never seen before needs no
    /// table to be recorded and is found by whoever meets it later.
    pub fn key(&self) -> i64 {
        bsuid_key(&self.0)
    }
}

impl fmt::Display for Bsuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// [`Bsuid::key`] of a BSUID as stored.
pub fn bsuid_key(bsuid: &str) -> i64 {
    let digest = Sha256::digest(bsuid.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // 62 bits: -1 down to -2^62, far from 0 (an erased event's key).
    -((u64::from_be_bytes(first) >> 2) as i64) - 1
}

/// Whether `raw` has a BSUID's shape: two capital letters, a dot, then letters,
/// digits and dots (no empty part, so no `..` and no trailing dot). `-` and `_` are
/// accepted too, as earlier versions did for `erase` and `subject`.
pub fn is_bsuid(raw: &str) -> bool {
    let Some((cc, rest)) = raw.split_once('.') else {
        return false;
    };
    cc.len() == 2
        && cc.bytes().all(|b| b.is_ascii_uppercase())
        && raw.len() <= MAX_BSUID_LEN
        && rest.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Who is recorded, erased or looked up: a phone number (every WhatsApp spelling of
/// it is one person) or a BSUID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    Phone(E164),
    Bsuid(String),
}

impl Identity {
    /// Reads a number as typed (with its country code, or `region`) or a BSUID.
    pub fn parse(raw: &str, region: Option<DefaultRegion>) -> Result<Identity, String> {
        let raw = raw.trim();
        if is_bsuid(raw) {
            return Ok(Identity::Bsuid(raw.to_owned()));
        }
        E164::normalize(raw, region)
            .map(Identity::Phone)
            .map_err(|e| {
                format!(
                    "{e}; give a phone number with its country code (+52...) or a business-scoped \
                 user ID such as US.13491208655302741918"
                )
            })
    }

    /// An identity as the ledger stores its subject: `+E164` or the BSUID.
    pub fn from_stored(subject: &str) -> Option<Identity> {
        if is_bsuid(subject) {
            Some(Identity::Bsuid(subject.to_owned()))
        } else {
            E164::from_digits(subject).map(Identity::Phone)
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Identity::Phone(_) => "phone",
            Identity::Bsuid(_) => "bsuid",
        }
    }

    /// The ledger's `subject_key`: a number's consent key, or the BSUID's own key.
    pub fn key(&self) -> i64 {
        match self {
            Identity::Phone(phone) => phone.consent_key() as i64,
            Identity::Bsuid(b) => bsuid_key(b),
        }
    }

    pub fn phone(&self) -> Option<E164> {
        match self {
            Identity::Phone(p) => Some(*p),
            Identity::Bsuid(_) => None,
        }
    }
}

impl From<E164> for Identity {
    fn from(phone: E164) -> Self {
        Identity::Phone(phone)
    }
}

impl From<&Bsuid> for Identity {
    fn from(bsuid: &Bsuid) -> Self {
        Identity::Bsuid(bsuid.0.clone())
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Phone(p) => p.fmt(f),
            Identity::Bsuid(b) => f.write_str(b),
        }
    }
}

/// What recording a link found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Linked {
    /// Nothing new: already known so.
    Known,
    /// A new identity, or one now linked to a number.
    Changed,
    /// The BSUID is linked to another number already; the first link is kept.
    Conflict { linked_to: String },
}

/// The person a BSUID belongs to now, if it was ever seen.
pub fn person_of_bsuid(conn: &Connection, bsuid: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT person_id FROM identities WHERE bsuid = ?1")?
        .query_row(params![bsuid], |r| r.get(0))
        .optional()
}

/// The person a contact is: its number's, else its BSUID's person as linked.
pub fn person_of(
    conn: &Connection,
    phone: Option<E164>,
    bsuid: Option<&Bsuid>,
) -> rusqlite::Result<Option<i64>> {
    if let Some(phone) = phone {
        return Ok(Some(crate::row_key::person_of(phone)));
    }
    match bsuid {
        Some(b) => Ok(Some(person_of_bsuid(conn, b.as_str())?.unwrap_or(b.key()))),
        None => Ok(None),
    }
}

fn next_change(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT coalesce(max(changed), 0) + 1 FROM identities")?
        .query_row([], |r| r.get(0))
}

/// Records that `bsuid` was seen, with `phone` when it came with one. A BSUID first
/// seen alone, and every BSUID linked to it since, moves to the number's person
/// once a number comes with it. Inside the caller's transaction.
pub fn link(
    conn: &Connection,
    bsuid: &Bsuid,
    phone: Option<E164>,
    now: &str,
) -> rusqlite::Result<Linked> {
    let existing: Option<(i64, Option<String>)> = conn
        .prepare_cached("SELECT person_id, phone FROM identities WHERE bsuid = ?1")?
        .query_row(params![bsuid.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let change = next_change(conn)?;
    match (existing, phone) {
        (None, _) => {
            conn.prepare_cached(
                "INSERT INTO identities (bsuid, person_id, phone, linked_at, changed)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                bsuid.as_str(),
                phone.map_or(bsuid.key(), crate::row_key::person_of),
                phone.map(|p| p.to_string()),
                now,
                change
            ])?;
            Ok(Linked::Changed)
        }
        (Some(_), None) => Ok(Linked::Known),
        (Some((person, known)), Some(phone)) => {
            let person_now = crate::row_key::person_of(phone);
            if person == person_now {
                if known.is_none() {
                    conn.prepare_cached(
                        "UPDATE identities SET phone = ?2, changed = ?3 WHERE bsuid = ?1",
                    )?
                    .execute(params![
                        bsuid.as_str(),
                        phone.to_string(),
                        change
                    ])?;
                    return Ok(Linked::Changed);
                }
                return Ok(Linked::Known);
            }
            if person > 0 {
                return Ok(Linked::Conflict {
                    linked_to: known.unwrap_or_default(),
                });
            }
            // Known only by BSUIDs until now: the whole group joins the number.
            conn.prepare_cached(
                "UPDATE identities SET person_id = ?2, linked_at = ?3, changed = ?4
                 WHERE person_id = ?1",
            )?
            .execute(params![person, person_now, now, change])?;
            conn.prepare_cached("UPDATE identities SET phone = ?2 WHERE bsuid = ?1")?
                .execute(params![bsuid.as_str(), phone.to_string()])?;
            Ok(Linked::Changed)
        }
    }
}

/// Records that a user's BSUID changed from `old` to `new` (Meta's
/// `user_changed_user_id`, `user_id_update`): the new one joins the old one's
/// person. An old BSUID never seen before is recorded too (the two are one person
/// from now on); `false` says it was unknown, for the caller to warn.
pub fn link_successor(
    conn: &Connection,
    old: &Bsuid,
    new: &Bsuid,
    now: &str,
) -> rusqlite::Result<bool> {
    let known = person_of_bsuid(conn, old.as_str())?;
    if known.is_none() {
        link(conn, old, None, now)?;
    }
    let person = known.unwrap_or(old.key());
    let phone: Option<String> = conn
        .prepare_cached("SELECT phone FROM identities WHERE bsuid = ?1")?
        .query_row(params![old.as_str()], |r| r.get(0))
        .optional()?
        .flatten();
    let change = next_change(conn)?;
    match person_of_bsuid(conn, new.as_str())? {
        None => {
            conn.prepare_cached(
                "INSERT INTO identities (bsuid, person_id, phone, linked_at, changed)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![new.as_str(), person, phone, now, change])?;
        }
        Some(same) if same == person => {}
        // Two groups become one: toward the number's person when one has a number;
        // two different numbers stay apart (the first links are kept).
        Some(theirs) if theirs < 0 || person < 0 => {
            let (from, to) = if theirs < 0 {
                (theirs, person)
            } else {
                (person, theirs)
            };
            conn.prepare_cached(
                "UPDATE identities SET person_id = ?2, linked_at = ?3, changed = ?4
                 WHERE person_id = ?1",
            )?
            .execute(params![from, to, now, change])?;
        }
        Some(_) => {}
    }
    Ok(known.is_some())
}

/// The ledger keys of every identity linked to `identity`: its own, its person's
/// number, and every BSUID of that person.
pub fn linked_keys(conn: &Connection, identity: &Identity) -> rusqlite::Result<Vec<i64>> {
    let own = identity.key();
    let person = match identity {
        Identity::Phone(_) => own,
        Identity::Bsuid(b) => person_of_bsuid(conn, b)?.unwrap_or(own),
    };
    let mut keys = vec![own];
    if person != own {
        keys.push(person);
    }
    let mut stmt = conn.prepare_cached("SELECT bsuid FROM identities WHERE person_id = ?1")?;
    for b in stmt.query_map(params![person], |r| r.get::<_, String>(0))? {
        let key = bsuid_key(&b?);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    #[test]
    fn bsuids_are_validated() {
        for ok in [
            "US.13491208655302741918",
            " BR.abcDEF123 ",
            "US.ENT.11815799212886844830",
        ] {
            assert!(Bsuid::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "us.123",
            "US.",
            "US",
            "USA.123",
            "US..1",
            "US.1.",
            "US.12 34",
            "+5215512345678",
            "",
        ] {
            assert!(
                matches!(Bsuid::parse(bad), Err(BsuidError::Shape(_))),
                "{bad}"
            );
        }
        let long = format!("US.{}", "1".repeat(MAX_BSUID_LEN));
        assert!(matches!(Bsuid::parse(&long), Err(BsuidError::TooLong(_))));
    }

    #[test]
    fn a_bsuid_key_is_negative_and_stable() {
        let b = Bsuid::parse("US.13491208655302741918").unwrap();
        assert!(b.key() < 0);
        assert_eq!(b.key(), bsuid_key("US.13491208655302741918"));
        assert_ne!(b.key(), bsuid_key("US.13491208655302741919"));
        assert_eq!(b.country(), "US");
    }

    #[test]
    fn a_bsuid_seen_alone_joins_the_number_seen_with_it_later() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("w.db")).unwrap();
        let now = "2026-01-01T00:00:00Z";
        let a = Bsuid::parse("US.1").unwrap();
        let b = Bsuid::parse("US.2").unwrap();
        let phone = E164::from_digits("525512345678").unwrap();
        assert_eq!(link(&db.conn, &a, None, now).unwrap(), Linked::Changed);
        assert_eq!(link(&db.conn, &a, None, now).unwrap(), Linked::Known);
        assert!(!link_successor(&db.conn, &b, &Bsuid::parse("US.3").unwrap(), now).unwrap());
        assert!(link_successor(&db.conn, &a, &b, now).unwrap());
        assert_eq!(person_of_bsuid(&db.conn, "US.2").unwrap(), Some(a.key()));
        assert_eq!(
            person_of_bsuid(&db.conn, "US.3").unwrap(),
            Some(a.key()),
            "US.3 followed US.2, which now follows US.1"
        );
        assert_eq!(
            link(&db.conn, &b, Some(phone), now).unwrap(),
            Linked::Changed
        );
        let person = crate::row_key::person_of(phone);
        for id in ["US.1", "US.2", "US.3"] {
            assert_eq!(person_of_bsuid(&db.conn, id).unwrap(), Some(person), "{id}");
        }
        let other = E164::from_digits("525587654321").unwrap();
        assert!(matches!(
            link(&db.conn, &a, Some(other), now).unwrap(),
            Linked::Conflict { .. }
        ));
    }
}
