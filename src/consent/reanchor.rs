//! Moving a ledger written before erasable events (format 1) to format 2 without
//! losing what its chain proves.
//!
//! A format-1 event's hash covers the phone number itself, so erasing it would break
//! the chain. Migration 0007 therefore re-anchors once: it verifies the old chain,
//! notes its head and length in `consent_anchors`, and rewrites every event in
//! format 2 (a fresh salt, a commitment to the personal fields, a new hash), the new
//! chain starting from
//!
//! ```text
//! anchor = SHA-256("wacampaign re-anchor\n" || legacy_head || "\n" || legacy_events)
//! ```
//!
//! instead of the all-zero genesis. An auditor who noted the old head (from an
//! earlier `consent verify`) checks that `consent verify` now reports the same
//! `legacy_head` and recomputes the anchor from it; with a backup taken before the
//! upgrade, the old chain can be verified by an older wacampaign up to that head.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::Event;
use super::chain::{GENESIS, commitment, hash_event};
use crate::clock;
use crate::phone::E164;

/// Where the format-2 chain starts, and the format-1 chain it continues.
#[derive(Debug, Clone, Serialize)]
pub struct Anchor {
    pub legacy_head: String,
    pub legacy_events: i64,
    /// What was wrong with the old chain when it was re-anchored, if anything.
    pub legacy_problem: Option<String>,
    pub anchor: String,
    pub recorded_at: String,
}

/// The anchor the chain starts from, if the ledger was re-anchored.
pub fn latest(conn: &Connection) -> rusqlite::Result<Option<Anchor>> {
    conn.prepare_cached(
        "SELECT legacy_head, legacy_events, legacy_problem, anchor, recorded_at
         FROM consent_anchors ORDER BY id DESC LIMIT 1",
    )?
    .query_row([], |r| {
        Ok(Anchor {
            legacy_head: r.get(0)?,
            legacy_events: r.get(1)?,
            legacy_problem: r.get(2)?,
            anchor: r.get(3)?,
            recorded_at: r.get(4)?,
        })
    })
    .optional()
}

/// The anchor for an old chain's head and length.
pub fn anchor_of(legacy_head: &str, legacy_events: i64) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"wacampaign re-anchor\n");
    hasher.update(legacy_head.as_bytes());
    hasher.update(b"\n");
    hasher.update(legacy_events.to_string().as_bytes());
    hex::encode(hasher.finalize())
}

/// Re-anchors every format-1 event, inside the migration's transaction (with the
/// update trigger not yet in place). Nothing to do for a ledger with no such events.
pub fn run(tx: &Connection) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare(
        "SELECT id, subject, purpose, action, occurred_at, recorded_at, method, recorded_via,
                source, evidence, notice_hash, actor, dedupe_key, prev_hash, hash, format,
                subject_key
         FROM consent_events ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            Event {
                id: r.get(0)?,
                subject: r.get(1)?,
                purpose: r.get(2)?,
                action: r.get(3)?,
                occurred_at: r.get(4)?,
                recorded_at: r.get(5)?,
                method: r.get(6)?,
                recorded_via: r.get(7)?,
                source: r.get(8)?,
                evidence: r.get(9)?,
                notice_hash: r.get(10)?,
                actor: r.get(11)?,
                dedupe_key: r.get(12)?,
                prev_hash: r.get(13)?,
                hash: r.get(14)?,
                format: r.get(15)?,
                salt: None,
                commitment: None,
            },
            r.get::<_, i64>(16)?,
        ))
    })?;
    let events: Vec<(Event, i64)> = rows.collect::<rusqlite::Result<_>>()?;
    drop(stmt);
    if events.is_empty() {
        return Ok(());
    }
    let (legacy_head, legacy_problem) = verify_legacy(&events);
    let legacy_events = events.len() as i64;
    let anchor = anchor_of(&legacy_head, legacy_events);
    tx.execute(
        "INSERT INTO consent_anchors (legacy_head, legacy_events, legacy_problem, anchor, recorded_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![legacy_head, legacy_events, legacy_problem, anchor, clock::now_string()],
    )?;
    let mut update = tx.prepare(
        "UPDATE consent_events SET format = 2, salt = ?2, commitment = ?3, prev_hash = ?4,
             hash = ?5 WHERE id = ?1",
    )?;
    let mut prev = anchor;
    for (mut event, _) in events {
        event.format = 2;
        event.salt = Some(salt_for_migration()?);
        event.prev_hash = prev;
        event.commitment = Some(commitment(&event));
        event.hash = hash_event(&event);
        update.execute(params![
            event.id,
            event.salt,
            event.commitment,
            event.prev_hash,
            event.hash
        ])?;
        prev = event.hash;
    }
    Ok(())
}

/// The old chain's head, and its first problem if it does not verify.
fn verify_legacy(events: &[(Event, i64)]) -> (String, Option<String>) {
    let mut prev = GENESIS.to_owned();
    let mut problem = None;
    for (index, (event, subject_key)) in events.iter().enumerate() {
        if problem.is_none() {
            let mut as_legacy = event.clone();
            as_legacy.format = 1;
            problem = if event.id != index as i64 + 1 {
                Some(format!("event {} is missing", index + 1))
            } else if event.prev_hash != prev {
                Some(format!("event {}: its prev_hash does not match", event.id))
            } else if hash_event(&as_legacy) != event.hash {
                Some(format!(
                    "event {}: its content does not match its hash",
                    event.id
                ))
            } else if E164::from_digits(&event.subject)
                .is_none_or(|s| s.consent_key() as i64 != *subject_key)
            {
                Some(format!(
                    "event {}: its subject_key does not match",
                    event.id
                ))
            } else {
                None
            };
        }
        prev.clone_from(&event.hash);
    }
    (prev, problem)
}

fn salt_for_migration() -> rusqlite::Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| {
            rusqlite::Error::UserFunctionError(format!("reading /dev/urandom: {e}").into())
        })?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::Ledger;
    use crate::db::Db;
    use std::os::unix::fs::PermissionsExt;

    /// A ledger as version 5 wrote it: three format-1 events, correctly chained.
    fn legacy_ledger(path: &std::path::Path) -> String {
        let conn = Connection::open(path).unwrap();
        for sql in &crate::db::MIGRATIONS[..5] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 5).unwrap();
        let mut prev = GENESIS.to_owned();
        for id in 1..=3i64 {
            let subject = format!("+52550000000{id}");
            let mut event = Event {
                id,
                subject: subject.clone(),
                purpose: "utility".into(),
                action: "opt_in".into(),
                occurred_at: "2026-01-01T00:00:00Z".into(),
                recorded_at: "2026-01-01T00:00:00Z".into(),
                method: "web_form".into(),
                recorded_via: "command".into(),
                source: format!("form {id}"),
                evidence: None,
                notice_hash: None,
                actor: "ana".into(),
                dedupe_key: None,
                prev_hash: prev.clone(),
                hash: String::new(),
                format: 1,
                salt: None,
                commitment: None,
            };
            event.hash = hash_event(&event);
            conn.execute(
                "INSERT INTO consent_events (id, subject, subject_key, purpose, action, occurred_at,
                     recorded_at, method, recorded_via, source, actor, prev_hash, hash)
                 VALUES (?1, ?2, ?3, 'utility', 'opt_in', ?4, ?4, 'web_form', 'command', ?5, 'ana', ?6, ?7)",
                params![
                    id,
                    subject,
                    E164::from_digits(&subject).unwrap().consent_key() as i64,
                    event.occurred_at,
                    event.source,
                    event.prev_hash,
                    event.hash
                ],
            )
            .unwrap();
            prev = event.hash;
        }
        drop(conn);
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
        prev
    }

    #[test]
    fn an_old_ledger_is_re_anchored_to_its_head_and_verifies_before_and_after_an_erasure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let old_head = legacy_ledger(&path);
        let db = Db::open(&path).unwrap();
        let report = Ledger::new(&db.conn).verify().unwrap();
        assert!(report.intact(), "{report:?}");
        let anchor = report.anchor.expect("an anchor");
        assert_eq!(anchor.legacy_head, old_head);
        assert_eq!(anchor.legacy_events, 3);
        assert_eq!(anchor.anchor, anchor_of(&old_head, 3));
        assert!(anchor.legacy_problem.is_none());

        let key = crate::consent::ledger_erasure::erase_subjects_in(&db.conn, &[525_500_000_002]);
        assert_eq!(key.unwrap(), 1);
        let report = Ledger::new(&db.conn).verify().unwrap();
        assert!(report.intact(), "{report:?}");
        assert_eq!(report.erased, 1);
        // Editing a kept field of an erased event is still refused by the trigger.
        assert!(
            db.conn
                .execute(
                    "UPDATE consent_events SET action = 'opt_out' WHERE id = 2",
                    []
                )
                .is_err()
        );
        // And restoring personal fields in place is refused too.
        assert!(
            db.conn
                .execute(
                    "UPDATE consent_events SET subject = '+525500000009' WHERE id = 1",
                    []
                )
                .is_err()
        );
    }

    #[test]
    fn a_broken_old_chain_stays_reported_after_re_anchoring() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        legacy_ledger(&path);
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TRIGGER consent_events_append_only_update;
             UPDATE consent_events SET action = 'opt_out' WHERE id = 2;",
        )
        .unwrap();
        drop(conn);
        let db = Db::open(&path).unwrap();
        let report = Ledger::new(&db.conn).verify().unwrap();
        assert!(!report.intact());
        let broken = report.first_broken.expect("the old break is reported");
        assert!(broken.problem.contains("event 2"), "{}", broken.problem);
    }
}
