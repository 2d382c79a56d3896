//! Appending to the ledger, reading it back, and proving it was not altered.

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::chain::{GENESIS, commitment, hash_event};
use super::{Event, Fact, NewEvent, Purpose, RecordedVia, Standing, StandingFold};
use crate::clock;
use crate::identity::Identity;

/// Whether an event carries its own evidence (a source reference, evidence text or a
/// notice), as SQL; [`standing_of`] applies the same test in Rust. The index
/// `consent_events_standing` (migration 0003) holds this exact expression, so that
/// loading standings never reads the table itself.
pub const HAS_EVIDENCE: &str =
    "(source <> '' OR coalesce(evidence, '') <> '' OR notice_hash IS NOT NULL)";

const TRIGGERS: &[&str] = &[
    "consent_events_append_only_update",
    "consent_events_append_only_delete",
    "consent_notices_append_only_update",
    "consent_notices_append_only_delete",
    // An INSERT OR REPLACE deletes the row it collides with without firing the
    // delete triggers: these refuse the collision (migration 0005).
    "consent_events_append_only_insert",
    "consent_notices_append_only_insert",
    // Only format-2 events, whose personal fields sit outside the chain (0007).
    "consent_events_erasable_only",
    "consent_anchors_append_only_update",
    "consent_anchors_append_only_delete",
];

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    Recorded(i64),
    /// An event with the same dedupe key exists: nothing was written.
    AlreadyPresent(i64),
}

/// The consent ledger in an open database.
#[derive(Debug, Clone, Copy)]
pub struct Ledger<'c> {
    conn: &'c Connection,
}

/// The result of `consent verify`.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub events: u64,
    /// Events whose personal fields were erased: their hashes still verify, through
    /// the commitment they keep.
    pub erased: u64,
    /// Where the chain starts when the ledger predates erasable events: the old
    /// chain's head, re-anchored (see `consent::reanchor`).
    pub anchor: Option<super::reanchor::Anchor>,
    /// The last event's hash: note it somewhere else to detect a later truncation.
    pub head: String,
    pub missing_triggers: Vec<String>,
    pub first_broken: Option<BrokenEvent>,
    /// Notices whose text no longer matches their hash, or that events refer to but
    /// are gone: the events' hashes cover only the notice's hash, not its text.
    pub broken_notices: Vec<BrokenNotice>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BrokenEvent {
    pub id: i64,
    pub problem: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct BrokenNotice {
    pub hash: String,
    pub problem: String,
}

impl VerifyReport {
    pub fn intact(&self) -> bool {
        self.missing_triggers.is_empty()
            && self.first_broken.is_none()
            && self.broken_notices.is_empty()
    }
}

/// Counts for `consent stats`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LedgerStats {
    pub events: u64,
    pub subjects: u64,
    pub marketing: StateCounts,
    pub utility: StateCounts,
    /// Opt-in events with neither evidence nor a notice.
    pub opt_ins_without_evidence: u64,
    /// Standing opt-ins (either purpose) older than the age asked for.
    pub opt_ins_older_than: u64,
    pub older_than_days: u32,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StateCounts {
    pub opted_in: u64,
    pub opted_out: u64,
    pub no_opt_in: u64,
}

impl<'c> Ledger<'c> {
    pub fn new(conn: &'c Connection) -> Self {
        Ledger { conn }
    }

    /// Appends one event in its own transaction; durable (synchronous=FULL) once this
    /// returns.
    pub fn append(&self, event: &NewEvent) -> rusqlite::Result<Appended> {
        let tx = Transaction::new_unchecked(self.conn, TransactionBehavior::Immediate)?;
        let appended = append_in(&tx, event)?;
        tx.commit()?;
        Ok(appended)
    }

    /// The whole history of a number and its WhatsApp variants, in the order the
    /// person acted.
    pub fn history(&self, subject: impl Into<Identity>) -> rusqlite::Result<Vec<Event>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, subject, purpose, action, occurred_at, recorded_at, method, recorded_via,
                    source, evidence, notice_hash, actor, dedupe_key, prev_hash, hash,
                    format, salt, commitment
             FROM consent_events WHERE subject_key = ?1 ORDER BY occurred_at, id",
        )?;
        let rows = stmt.query_map(params![subject.into().key()], event_from_row)?;
        rows.collect()
    }

    /// The events of several ledger keys (a person's linked identities), in the
    /// order the person acted.
    pub fn history_of_keys(&self, keys: &[i64]) -> rusqlite::Result<Vec<Event>> {
        let mut all = Vec::new();
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, subject, purpose, action, occurred_at, recorded_at, method, recorded_via,
                    source, evidence, notice_hash, actor, dedupe_key, prev_hash, hash,
                    format, salt, commitment
             FROM consent_events WHERE subject_key = ?1 ORDER BY occurred_at, id",
        )?;
        for key in keys {
            for event in stmt.query_map(params![key], event_from_row)? {
                all.push(event?);
            }
        }
        all.sort_by(|a, b| (&a.occurred_at, a.id).cmp(&(&b.occurred_at, b.id)));
        Ok(all)
    }

    pub fn standing(
        &self,
        subject: impl Into<Identity>,
        purpose: Purpose,
    ) -> rusqlite::Result<Standing> {
        let history = self.history(subject)?;
        Ok(standing_of(&history, purpose))
    }

    /// The id of the last event recorded, 0 for an empty ledger: the mark up to which
    /// an index loaded now is complete.
    pub fn head_id(&self) -> rusqlite::Result<i64> {
        self.conn
            .prepare_cached("SELECT coalesce(max(id), 0) FROM consent_events")?
            .query_row([], |r| r.get(0))
    }

    /// The numbers (as stored, in E.164) with events recorded after `id`, each once.
    /// Made distinct here rather than by `DISTINCT`, which builds a temporary b-tree
    /// at every call, and a send's journal writer calls this at every claim, almost
    /// always to find nothing.
    pub fn subjects_since(&self, id: i64) -> rusqlite::Result<Vec<String>> {
        let mut subjects: Vec<String> = self
            .conn
            .prepare_cached("SELECT subject FROM consent_events WHERE id > ?1")?
            .query_map(params![id], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        subjects.sort_unstable();
        subjects.dedup();
        Ok(subjects)
    }

    /// Every event (of one identity, or all), in id order, for export.
    pub fn for_each_event(
        &self,
        subject: Option<Identity>,
        mut each: impl FnMut(Event) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let sql =
            "SELECT id, subject, purpose, action, occurred_at, recorded_at, method, recorded_via,
                          source, evidence, notice_hash, actor, dedupe_key, prev_hash, hash,
                    format, salt, commitment
                   FROM consent_events WHERE (?1 IS NULL OR subject_key = ?1) ORDER BY id";
        let mut stmt = self.conn.prepare(sql)?;
        let key = subject.map(|s| s.key());
        let mut rows = stmt.query(params![key])?;
        while let Some(row) = rows.next()? {
            each(event_from_row(row)?)?;
        }
        Ok(())
    }

    /// The notices events refer to (all, or those of one number's events).
    pub fn notices(
        &self,
        subject: Option<Identity>,
    ) -> rusqlite::Result<Vec<(String, String, String)>> {
        let mut stmt = self.conn.prepare(
            "SELECT hash, text, recorded_at FROM consent_notices n
             WHERE ?1 IS NULL OR EXISTS (SELECT 1 FROM consent_events e
                                         WHERE e.notice_hash = n.hash AND e.subject_key = ?1)
             ORDER BY recorded_at, hash",
        )?;
        let key = subject.map(|s| s.key());
        let rows = stmt.query_map(params![key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect()
    }

    /// Whether an event with this hash is in the ledger. A database error is an
    /// error, not "absent": `verify --expect-head` would otherwise report a truncated
    /// ledger over what was a locked or unreadable file.
    pub fn contains_hash(&self, hash: &str) -> rusqlite::Result<bool> {
        self.conn
            .query_row(
                "SELECT 1 FROM consent_events WHERE hash = ?1",
                params![hash],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
    }

    /// Where the chain starts, when the ledger was re-anchored (migration 0007).
    pub fn anchor(&self) -> rusqlite::Result<Option<super::reanchor::Anchor>> {
        super::reanchor::latest(self.conn)
    }

    /// Recomputes the hash chain and checks the append-only triggers.
    pub fn verify(&self) -> rusqlite::Result<VerifyReport> {
        let mut missing_triggers = Vec::new();
        for name in TRIGGERS {
            let sql: Option<String> = self
                .conn
                .query_row(
                    "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?1",
                    params![name],
                    |r| r.get(0),
                )
                .optional()?;
            if !sql.is_some_and(|sql| sql.contains("RAISE(ABORT")) {
                missing_triggers.push((*name).to_owned());
            }
        }
        let mut stmt = self.conn.prepare(
            "SELECT id, subject, purpose, action, occurred_at, recorded_at, method, recorded_via,
                    source, evidence, notice_hash, actor, dedupe_key, prev_hash, hash,
                    format, salt, commitment, subject_key
             FROM consent_events ORDER BY id",
        )?;
        let mut rows = stmt.query([])?;
        let anchor = super::reanchor::latest(self.conn)?;
        let mut expected_prev = anchor
            .as_ref()
            .map_or_else(|| GENESIS.to_owned(), |a| a.anchor.clone());
        let mut expected_id = 1;
        let mut events = 0;
        let mut erased = 0;
        let mut first_broken = anchor.as_ref().and_then(|a| {
            a.legacy_problem.as_ref().map(|problem| BrokenEvent {
                id: 0,
                problem: format!("before it was re-anchored, the old chain was broken: {problem}"),
            })
        });
        while let Some(row) = rows.next()? {
            let event = event_from_row(row)?;
            let subject_key: i64 = row.get(18)?;
            events += 1;
            erased += u64::from(event.is_erased());
            if first_broken.is_some() {
                continue;
            }
            let problem = if event.format != 2 {
                Some("it was written in the old form after the ledger was re-anchored".to_owned())
            } else if event.id != expected_id {
                Some(format!(
                    "event {expected_id} is missing (the next event is {})",
                    event.id
                ))
            } else if event.prev_hash != expected_prev {
                Some("its prev_hash does not match the event before it: an event was removed, inserted or reordered".to_owned())
            } else if hash_event(&event) != event.hash {
                Some("its content does not match its hash: the event was edited".to_owned())
            } else if event.is_erased() {
                erased_problem(&event, subject_key)
            } else if event.commitment.as_deref() != Some(commitment(&event).as_str()) {
                Some("its content does not match its hash: the event was edited".to_owned())
            } else if event.recorded_via == RecordedVia::Erasure.as_str() {
                (subject_key != 0 || !event.subject.is_empty())
                    .then(|| "an erasure event names a subject".to_owned())
            } else if Identity::from_stored(&event.subject).is_none_or(|s| s.key() != subject_key) {
                Some("its subject_key does not match its subject".to_owned())
            } else {
                None
            };
            if let Some(problem) = problem {
                first_broken = Some(BrokenEvent {
                    id: event.id,
                    problem,
                });
            }
            expected_prev = event.hash;
            expected_id = event.id + 1;
        }
        Ok(VerifyReport {
            events,
            erased,
            anchor,
            head: expected_prev,
            missing_triggers,
            first_broken,
            broken_notices: self.verify_notices()?,
        })
    }

    /// A notice is stored under the SHA-256 of its text, and an event's hash covers
    /// only that key: so the text is checked against it, and every key an event
    /// refers to must still be there.
    fn verify_notices(&self) -> rusqlite::Result<Vec<BrokenNotice>> {
        let mut broken = Vec::new();
        let mut stmt = self
            .conn
            .prepare("SELECT hash, text FROM consent_notices ORDER BY recorded_at, hash")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let hash: String = row.get(0)?;
            // Raw bytes: an edit may leave text that is no longer UTF-8.
            let text = row.get_ref(1)?.as_bytes()?;
            if hex::encode(Sha256::digest(text)) != hash {
                broken.push(BrokenNotice {
                    hash,
                    problem: "its text does not match its hash: the notice was edited".to_owned(),
                });
            }
        }
        let mut stmt = self.conn.prepare(
            "SELECT min(e.id), e.notice_hash FROM consent_events e
             WHERE e.notice_hash IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM consent_notices n WHERE n.hash = e.notice_hash)
             GROUP BY e.notice_hash ORDER BY min(e.id)",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            broken.push(BrokenNotice {
                hash: row.get(1)?,
                problem: format!(
                    "event #{id} refers to it, but it is missing: the notice was deleted"
                ),
            });
        }
        Ok(broken)
    }

    pub fn stats(&self, older_than_days: u32) -> rusqlite::Result<LedgerStats> {
        let mut stats = LedgerStats {
            older_than_days,
            ..LedgerStats::default()
        };
        stats.events = self
            .conn
            .query_row("SELECT count(*) FROM consent_events", [], |r| r.get(0))?;
        stats.opt_ins_without_evidence = self.conn.query_row(
            "SELECT count(*) FROM consent_events WHERE action = 'opt_in'
               AND coalesce(evidence, '') = '' AND notice_hash IS NULL",
            [],
            |r| r.get(0),
        )?;
        let cutoff =
            clock::format(clock::now() - chrono::Duration::days(i64::from(older_than_days)));
        let mut stmt = self.conn.prepare(&format!(
            "SELECT subject_key, purpose, action, occurred_at, method, recorded_via, {HAS_EVIDENCE}
             FROM consent_events WHERE subject_key <> 0 ORDER BY subject_key, occurred_at, id"
        ))?;
        let mut rows = stmt.query([])?;
        let mut current: Option<i64> = None;
        let mut folds = [
            StandingFold::new(Purpose::Marketing),
            StandingFold::new(Purpose::Utility),
        ];
        let finish = |folds: [StandingFold; 2], stats: &mut LedgerStats| {
            let [marketing, utility] = folds;
            stats.subjects += 1;
            for (standing, counts) in [
                (marketing.finish(), &mut stats.marketing),
                (utility.finish(), &mut stats.utility),
            ] {
                match standing {
                    Standing::OptedIn { since, .. } => {
                        counts.opted_in += 1;
                        if since < cutoff {
                            stats.opt_ins_older_than += 1;
                        }
                    }
                    Standing::OptedOut { .. } => counts.opted_out += 1,
                    Standing::NoOptIn => counts.no_opt_in += 1,
                }
            }
        };
        while let Some(row) = rows.next()? {
            let key: i64 = row.get(0)?;
            if current.is_some_and(|c| c != key) {
                let done = std::mem::replace(
                    &mut folds,
                    [
                        StandingFold::new(Purpose::Marketing),
                        StandingFold::new(Purpose::Utility),
                    ],
                );
                finish(done, &mut stats);
            }
            current = Some(key);
            let fact = Fact {
                purpose: row.get_ref(1)?.as_str()?,
                action: row.get_ref(2)?.as_str()?,
                occurred_at: row.get_ref(3)?.as_str()?,
                method: row.get_ref(4)?.as_str()?,
                recorded_via: row.get_ref(5)?.as_str()?,
                has_evidence: row.get(6)?,
            };
            for fold in &mut folds {
                fold.push(&fact);
            }
        }
        if current.is_some() {
            finish(folds, &mut stats);
        }
        Ok(stats)
    }
}

/// Appends inside a caller's transaction (which must hold the write lock, i.e. be
/// IMMEDIATE, so the chain's head cannot move underneath it).
pub fn append_in(tx: &Connection, event: &NewEvent) -> rusqlite::Result<Appended> {
    if let Some(key) = &event.dedupe_key {
        let existing: Option<i64> = tx
            .prepare_cached("SELECT id FROM consent_events WHERE dedupe_key = ?1")?
            .query_row(params![key], |r| r.get(0))
            .optional()?;
        if let Some(id) = existing {
            return Ok(Appended::AlreadyPresent(id));
        }
    }
    let recorded_at = clock::now_string();
    let notice_hash = match &event.notice {
        Some(text) => {
            let hash = hex::encode(Sha256::digest(text.as_bytes()));
            tx.prepare_cached(
                "INSERT OR IGNORE INTO consent_notices (hash, text, recorded_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![hash, text, recorded_at])?;
            Some(hash)
        }
        None => None,
    };
    let (last_id, prev_hash) = chain_head(tx)?;
    let mut stored = Event {
        id: last_id + 1,
        subject: event.subject.to_string(),
        purpose: event.purpose.as_str().to_owned(),
        action: event.action.as_str().to_owned(),
        occurred_at: event.occurred_at.clone(),
        recorded_at,
        method: event.method.clone(),
        recorded_via: event.recorded_via.as_str().to_owned(),
        source: event.source.clone(),
        evidence: event.evidence.clone(),
        notice_hash,
        actor: event.actor.clone(),
        dedupe_key: event.dedupe_key.clone(),
        prev_hash,
        hash: String::new(),
        format: 2,
        salt: None,
        commitment: None,
    };
    seal(&mut stored)?;
    insert(tx, &stored, event.subject.key())?;
    Ok(Appended::Recorded(stored.id))
}

/// The head of the chain: (last id, its hash), or (0, where the chain starts).
fn chain_head(tx: &Connection) -> rusqlite::Result<(i64, String)> {
    let last: Option<(i64, String)> = tx
        .prepare_cached("SELECT id, hash FROM consent_events ORDER BY id DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match last {
        Some(head) => Ok(head),
        None => Ok((
            0,
            super::reanchor::latest(tx)?.map_or_else(|| GENESIS.to_owned(), |a| a.anchor),
        )),
    }
}

/// Gives an event a fresh salt, its commitment and its hash.
fn seal(event: &mut Event) -> rusqlite::Result<()> {
    event.format = 2;
    event.salt = Some(random_salt().map_err(|e| {
        rusqlite::Error::UserFunctionError(format!("reading /dev/urandom for a salt: {e}").into())
    })?);
    event.commitment = Some(commitment(event));
    event.hash = hash_event(event);
    Ok(())
}

fn insert(tx: &Connection, stored: &Event, subject_key: i64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO consent_events (id, subject, subject_key, purpose, action, occurred_at,
             recorded_at, method, recorded_via, source, evidence, notice_hash, actor, dedupe_key,
             prev_hash, hash, format, salt, commitment)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                 ?18, ?19)",
    )?
    .execute(params![
        stored.id,
        stored.subject,
        subject_key,
        stored.purpose,
        stored.action,
        stored.occurred_at,
        stored.recorded_at,
        stored.method,
        stored.recorded_via,
        stored.source,
        stored.evidence,
        stored.notice_hash,
        stored.actor,
        stored.dedupe_key,
        stored.prev_hash,
        stored.hash,
        stored.format,
        stored.salt,
        stored.commitment,
    ])?;
    Ok(())
}

/// Appends the event that records an erasure, inside the erasing transaction. It
/// holds no personal data: no subject, the operator's reason, how many identities.
pub fn append_erasure_in(
    tx: &Connection,
    reason: &str,
    identities: usize,
    actor: &str,
) -> rusqlite::Result<i64> {
    let (last_id, prev_hash) = chain_head(tx)?;
    let now = clock::now_string();
    let mut stored = Event {
        id: last_id + 1,
        subject: String::new(),
        purpose: Purpose::All.as_str().to_owned(),
        action: super::Action::OptOut.as_str().to_owned(),
        occurred_at: now.clone(),
        recorded_at: now,
        method: "erasure".to_owned(),
        recorded_via: RecordedVia::Erasure.as_str().to_owned(),
        source: format!("erasure of {identities} identities"),
        evidence: Some(reason.to_owned()),
        notice_hash: None,
        actor: actor.to_owned(),
        dedupe_key: None,
        prev_hash,
        hash: String::new(),
        format: 2,
        salt: None,
        commitment: None,
    };
    seal(&mut stored)?;
    insert(tx, &stored, 0)?;
    Ok(stored.id)
}

/// Blanks the personal fields of every event of these subject keys, keeping their
/// commitments and hashes. Returns how many events were erased.
pub fn erase_subjects_in(tx: &Connection, subject_keys: &[i64]) -> rusqlite::Result<u64> {
    let mut erased = 0;
    let mut stmt = tx.prepare_cached(
        "UPDATE consent_events SET subject = '', subject_key = 0, source = '', evidence = NULL,
             dedupe_key = NULL, salt = NULL
         WHERE subject_key = ?1",
    )?;
    for key in subject_keys {
        erased += stmt.execute(params![key])? as u64;
    }
    Ok(erased)
}

/// Why an erased event does not look erased, if it does not.
fn erased_problem(event: &Event, subject_key: i64) -> Option<String> {
    let blank = event.subject.is_empty()
        && subject_key == 0
        && event.source.is_empty()
        && event.evidence.is_none()
        && event.dedupe_key.is_none()
        && event.commitment.is_some();
    (!blank).then(|| {
        "its salt is gone but personal fields remain, or its commitment is missing".to_owned()
    })
}

/// 16 random bytes, hex. A salt makes a commitment useless for guessing the number
/// behind it once the fields are erased.
fn random_salt() -> std::io::Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// A standing from a history already in the order the person acted.
pub fn standing_of(history: &[Event], purpose: Purpose) -> Standing {
    super::standing(
        purpose,
        history.iter().map(|e| Fact {
            purpose: &e.purpose,
            action: &e.action,
            occurred_at: &e.occurred_at,
            method: &e.method,
            recorded_via: &e.recorded_via,
            has_evidence: e.evidence.as_deref().is_some_and(|s| !s.is_empty())
                || e.notice_hash.is_some()
                || !e.source.is_empty(),
        }),
    )
}

fn event_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        id: row.get(0)?,
        subject: row.get(1)?,
        purpose: row.get(2)?,
        action: row.get(3)?,
        occurred_at: row.get(4)?,
        recorded_at: row.get(5)?,
        method: row.get(6)?,
        recorded_via: row.get(7)?,
        source: row.get(8)?,
        evidence: row.get(9)?,
        notice_hash: row.get(10)?,
        actor: row.get(11)?,
        dedupe_key: row.get(12)?,
        prev_hash: row.get(13)?,
        hash: row.get(14)?,
        format: row.get(15)?,
        salt: row.get(16)?,
        commitment: row.get(17)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::{Action, RecordedVia};
    use crate::db::Db;

    #[test]
    fn head_id_and_contains_hash_read_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("w.db")).unwrap();
        let ledger = Ledger::new(&db.conn);
        assert_eq!(ledger.head_id().unwrap(), 0);
        let event = NewEvent {
            subject: crate::phone::E164::from_digits("5215512345678")
                .unwrap()
                .into(),
            purpose: Purpose::Marketing,
            action: Action::OptIn,
            occurred_at: clock::now_string(),
            method: "operator".into(),
            recorded_via: RecordedVia::Command,
            source: "ticket 1".into(),
            evidence: None,
            notice: None,
            actor: "test".into(),
            dedupe_key: None,
        };
        let Appended::Recorded(id) = ledger.append(&event).unwrap() else {
            panic!("a new event is recorded")
        };
        assert_eq!(ledger.head_id().unwrap(), id);
        let head = ledger.verify().unwrap().head;
        assert!(ledger.contains_hash(&head).unwrap());
        assert!(!ledger.contains_hash(GENESIS).unwrap());
        assert_eq!(ledger.subjects_since(0).unwrap(), ["+5215512345678"]);
        assert!(ledger.subjects_since(id).unwrap().is_empty());

        // Each subject once, however many events it has since.
        let other = NewEvent {
            subject: crate::phone::E164::from_digits("5215587654321")
                .unwrap()
                .into(),
            ..event.clone()
        };
        let opt_out = NewEvent {
            action: Action::OptOut,
            source: "ticket 2".into(),
            ..event.clone()
        };
        for next in [&opt_out, &other, &event] {
            assert!(matches!(
                ledger.append(next).unwrap(),
                Appended::Recorded(_)
            ));
        }
        assert_eq!(
            ledger.subjects_since(id).unwrap(),
            ["+5215512345678", "+5215587654321"]
        );
    }

    #[test]
    fn a_database_error_is_not_a_missing_hash() {
        let conn = Connection::open_in_memory().unwrap();
        let ledger = Ledger::new(&conn);
        assert!(
            ledger.contains_hash("ab").is_err(),
            "no table is an error, not `false`"
        );
        conn.execute_batch("CREATE TABLE consent_events (hash TEXT)")
            .unwrap();
        conn.execute("INSERT INTO consent_events VALUES ('ab')", [])
            .unwrap();
        assert!(ledger.contains_hash("ab").unwrap());
        assert!(!ledger.contains_hash("cd").unwrap());
    }
}
