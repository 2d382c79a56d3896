//! The ledger loaded for a plan: one pass over the events of a purpose, folded into a
//! compact map, so planning a million contacts costs one query, not a million.

use std::collections::HashMap;

use rusqlite::{Connection, params};

use super::ledger::{HAS_EVIDENCE, Ledger};
use super::{Fact, Purpose, Standing, StandingFold};
use crate::exclusion::{ConsentGate, Exclusion};
use crate::identity::{Bsuid, Identity};
use crate::phone::E164;

/// A standing, small enough to hold a million of.
#[derive(Debug, Clone, Copy)]
enum Compact {
    OptedIn,
    /// The date (YYYY-MM-DD) and an index into the interned method names.
    OptedOut {
        date: [u8; 10],
        method: u16,
    },
}

/// Every identity's standing for one purpose, and which identities are one person.
///
/// Planning ten million contacts loads ten million opt-ins, so an opt-in costs 8
/// bytes: its key in a sorted vector (a hash map of standings cost ~42 bytes a
/// person with its spare capacity). Opt-outs, far fewer, keep their date and
/// method in a map; changes after the load go in a small overlay.
#[derive(Debug, Clone)]
pub struct ConsentIndex {
    purpose: Purpose,
    /// The keys opted in at the load, ascending.
    opted_in: Vec<u64>,
    /// The keys opted out at the load.
    opted_out: HashMap<u64, Compact>,
    /// Standings set since the load (`None`: no standing); they override the two above.
    changed: HashMap<u64, Option<Compact>>,
    methods: Vec<String>,
    links: Links,
}

/// The `identities` table as the index needs it: every BSUID's key by the person it
/// belongs to, so an opt-out under a BSUID blocks the number linked to it.
#[derive(Debug, Clone, Default)]
struct Links {
    by_person: HashMap<i64, Vec<i64>>,
    person_of: HashMap<i64, i64>,
    /// The last change applied (`identities.changed`).
    seen: i64,
}

impl Links {
    fn apply(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let mut stmt = conn.prepare_cached(
            "SELECT bsuid, person_id, changed FROM identities WHERE changed > ?1 ORDER BY changed",
        )?;
        let mut rows = stmt.query(params![self.seen])?;
        while let Some(row) = rows.next()? {
            let key = crate::identity::bsuid_key(row.get_ref(0)?.as_str()?);
            let person: i64 = row.get(1)?;
            self.seen = self.seen.max(row.get(2)?);
            if let Some(old) = self.person_of.insert(key, person)
                && let Some(keys) = self.by_person.get_mut(&old)
            {
                keys.retain(|k| *k != key);
            }
            self.by_person.entry(person).or_default().push(key);
        }
        Ok(())
    }

    /// Every ledger key of the person a contact is.
    fn keys(&self, phone: Option<E164>, bsuid: Option<&Bsuid>) -> Vec<i64> {
        let mut keys = Vec::with_capacity(4);
        let person = |p: i64, keys: &mut Vec<i64>| {
            keys.push(p);
            if let Some(linked) = self.by_person.get(&p) {
                keys.extend(linked);
            }
        };
        if let Some(phone) = phone {
            person(phone.consent_key() as i64, &mut keys);
        }
        if let Some(b) = bsuid {
            let own = b.key();
            keys.push(own);
            let theirs = self.person_of.get(&own).copied().unwrap_or(own);
            if !keys.contains(&theirs) {
                person(theirs, &mut keys);
            }
        }
        keys
    }
}

impl ConsentIndex {
    /// An index with no events: every contact lacks an opt-in.
    pub fn empty(purpose: Purpose) -> Self {
        ConsentIndex {
            purpose,
            opted_in: Vec::new(),
            opted_out: HashMap::new(),
            changed: HashMap::new(),
            methods: Vec::new(),
            links: Links::default(),
        }
    }

    pub fn load(conn: &Connection, purpose: Purpose) -> rusqlite::Result<Self> {
        let mut index = ConsentIndex::empty(purpose);
        // An upper bound on the people, read from the rowid's b-tree at once (a
        // count of distinct keys scanned ten million index entries): the vector is
        // shrunk to its length once loaded.
        let count: i64 =
            conn.query_row("SELECT coalesce(max(id), 0) FROM consent_events", [], |r| {
                r.get(0)
            })?;
        index.opted_in.reserve(usize::try_from(count).unwrap_or(0));
        let mut stmt = conn.prepare(&standings_sql())?;
        let mut rows = stmt.query(params![purpose.as_str()])?;
        let mut current: Option<(i64, StandingFold)> = None;
        while let Some(row) = rows.next()? {
            let key: i64 = row.get(0)?;
            let fact = Fact {
                purpose: row.get_ref(1)?.as_str()?,
                action: row.get_ref(2)?.as_str()?,
                occurred_at: row.get_ref(3)?.as_str()?,
                method: row.get_ref(4)?.as_str()?,
                recorded_via: row.get_ref(5)?.as_str()?,
                has_evidence: row.get(6)?,
            };
            match &mut current {
                Some((k, fold)) if *k == key => fold.push(&fact),
                _ => {
                    if let Some((k, fold)) = current.take() {
                        index.insert(k, fold.finish());
                    }
                    let mut fold = StandingFold::new(purpose);
                    fold.push(&fact);
                    current = Some((key, fold));
                }
            }
        }
        if let Some((k, fold)) = current {
            index.insert(k, fold.finish());
        }
        drop(rows);
        // The rows come in key order as SQLite's signed integers; a negative key
        // (a BSUID's) sorts last as u64, so sort unless already in order.
        if !index.opted_in.is_sorted() {
            index.opted_in.sort_unstable();
        }
        index.opted_in.shrink_to_fit();
        index.links.apply(conn)?;
        Ok(index)
    }

    /// Adds a standing while loading (each key once).
    fn insert(&mut self, key: i64, standing: Standing) {
        match self.compact(standing) {
            Some(Compact::OptedIn) => self.opted_in.push(key as u64),
            Some(out) => {
                self.opted_out.insert(key as u64, out);
            }
            None => {}
        }
    }

    fn compact(&mut self, standing: Standing) -> Option<Compact> {
        Some(match standing {
            Standing::OptedIn { .. } => Compact::OptedIn,
            Standing::OptedOut { since, method } => {
                let mut date = [b'?'; 10];
                let bytes = since.as_bytes();
                let n = bytes.len().min(10);
                date[..n].copy_from_slice(&bytes[..n]);
                let method = match self.methods.iter().position(|m| *m == method) {
                    Some(i) => i,
                    None => {
                        self.methods.push(method);
                        self.methods.len() - 1
                    }
                };
                Compact::OptedOut {
                    date,
                    method: u16::try_from(method).unwrap_or(u16::MAX),
                }
            }
            Standing::NoOptIn => return None,
        })
    }

    /// One key's standing, the latest change first.
    fn standing_of(&self, key: u64) -> Option<Compact> {
        if let Some(changed) = self.changed.get(&key) {
            return *changed;
        }
        if let Some(out) = self.opted_out.get(&key) {
            return Some(*out);
        }
        self.opted_in
            .binary_search(&key)
            .is_ok()
            .then_some(Compact::OptedIn)
    }

    /// Replaces one identity's standing (after an event was recorded for it).
    pub fn set(&mut self, identity: impl Into<Identity>, standing: Standing) {
        let key = identity.into().key();
        let compact = self.compact(standing);
        self.changed.insert(key as u64, compact);
    }

    /// Whether a contact (a number, a BSUID, or both) may receive messages of this
    /// purpose: every identity linked to it counts, and an opt-out of any blocks.
    pub fn check_contact(
        &self,
        phone: Option<E164>,
        bsuid: Option<&Bsuid>,
    ) -> Result<(), Exclusion> {
        let mut opted_in = false;
        let mut opted_out: Option<([u8; 10], u16)> = None;
        for key in self.links.keys(phone, bsuid) {
            match self.standing_of(key as u64) {
                Some(Compact::OptedIn) => opted_in = true,
                Some(Compact::OptedOut { date, method })
                    if opted_out.is_none_or(|(d, _)| date > d) =>
                {
                    opted_out = Some((date, method));
                }
                _ => {}
            }
        }
        match (opted_out, opted_in) {
            (Some((date, method)), _) => Err(Exclusion::OptedOut {
                date: String::from_utf8_lossy(&date).into_owned(),
                method: self
                    .methods
                    .get(usize::from(method))
                    .cloned()
                    .unwrap_or_else(|| "unknown".to_owned()),
            }),
            (None, true) => Ok(()),
            (None, false) => Err(Exclusion::NoOptIn {
                purpose: self.purpose.as_str().to_owned(),
            }),
        }
    }

    pub fn purpose(&self) -> Purpose {
        self.purpose
    }

    /// How many identities have a standing.
    pub fn len(&self) -> usize {
        let loaded = |key: &u64| {
            self.opted_out.contains_key(key) || self.opted_in.binary_search(key).is_ok()
        };
        let (mut added, mut removed) = (0, 0);
        for (key, standing) in &self.changed {
            match (loaded(key), standing.is_some()) {
                (false, true) => added += 1,
                (true, false) => removed += 1,
                _ => {}
            }
        }
        self.opted_in.len() + self.opted_out.len() + added - removed
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Brings `index` up to date with the events recorded after `seen_id` (by the
/// webhook server, an operator, or a running campaign) and returns the id of the
/// last event it now reflects, to pass as `seen_id` next time. Call it inside the
/// transaction that acts on the index, so no event can fall between the two reads.
pub fn changes_since(
    conn: &Connection,
    seen_id: i64,
    index: &mut ConsentIndex,
) -> rusqlite::Result<i64> {
    // Links learned since (a BSUID now linked to a number that opted out) count at
    // once, like events.
    index.links.apply(conn)?;
    let ledger = Ledger::new(conn);
    let subjects = ledger.subjects_since(seen_id)?;
    if subjects.is_empty() {
        return Ok(seen_id);
    }
    for subject in subjects {
        if let Some(identity) = Identity::from_stored(&subject) {
            let standing = ledger.standing(identity.clone(), index.purpose())?;
            index.set(identity, standing);
        }
    }
    ledger.head_id()
}

/// Every event of a purpose (`?1`) or `all`, in the order [`StandingFold`] needs:
/// answered from the covering index `consent_events_standing` alone.
fn standings_sql() -> String {
    format!(
        "SELECT subject_key, purpose, action, occurred_at, method, recorded_via, {HAS_EVIDENCE}
         FROM consent_events WHERE purpose IN (?1, 'all')
         ORDER BY subject_key, occurred_at, id"
    )
}

impl ConsentGate for ConsentIndex {
    fn check(&self, phone: E164) -> Result<(), Exclusion> {
        self.check_contact(Some(phone), None)
    }

    fn check_bsuid(&self, phone: Option<E164>, bsuid: &Bsuid) -> Result<(), Exclusion> {
        self.check_contact(phone, Some(bsuid))
    }

    fn slots(&self) -> usize {
        self.opted_in.len()
    }

    /// A person opted in at the load is numbered by their place among the opt-ins.
    fn slot(&self, person: i64) -> Option<usize> {
        self.opted_in.binary_search(&(person as u64)).ok()
    }

    fn person(&self, phone: Option<E164>, bsuid: Option<&Bsuid>) -> i64 {
        match (phone, bsuid) {
            (Some(p), _) => p.consent_key() as i64,
            (None, Some(b)) => self
                .links
                .person_of
                .get(&b.key())
                .copied()
                .unwrap_or(b.key()),
            (None, None) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::{Action, NewEvent, RecordedVia};
    use crate::db::Db;
    use crate::exclusion::Exclusion;

    fn event(subject: &str, purpose: Purpose, action: Action) -> NewEvent {
        NewEvent {
            subject: E164::from_digits(subject).unwrap().into(),
            purpose,
            action,
            occurred_at: crate::clock::now_string(),
            method: "operator".into(),
            recorded_via: RecordedVia::Command,
            source: "ticket 1".into(),
            evidence: None,
            notice: None,
            actor: "test".into(),
            dedupe_key: None,
        }
    }

    #[test]
    fn changes_since_applies_events_another_connection_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let reader = Db::open(&path).unwrap();
        // A second connection to the same file, as the webhook server or an operator's
        // `consent opt-out` would be.
        let writer = Db::open(&path).unwrap();
        let ledger = Ledger::new(&writer.conn);
        let (a, b) = ("5215512345678", "5215587654321");
        let phone = |d| E164::from_digits(d).unwrap();

        ledger
            .append(&event(a, Purpose::Marketing, Action::OptIn))
            .unwrap();
        let mut index = ConsentIndex::load(&reader.conn, Purpose::Marketing).unwrap();
        let seen = Ledger::new(&reader.conn).head_id().unwrap();
        assert_eq!(seen, 1);
        assert_eq!(changes_since(&reader.conn, seen, &mut index).unwrap(), seen);
        assert_eq!(index.check(phone(a)), Ok(()));

        ledger
            .append(&event(a, Purpose::All, Action::OptOut))
            .unwrap();
        ledger
            .append(&event(b, Purpose::Marketing, Action::OptIn))
            .unwrap();
        ledger
            .append(&event(b, Purpose::Utility, Action::OptOut))
            .unwrap();
        let seen = changes_since(&reader.conn, seen, &mut index).unwrap();
        assert_eq!(seen, 4);
        assert!(matches!(
            index.check(phone(a)),
            Err(Exclusion::OptedOut { .. })
        ));
        // An opt-out of another purpose leaves this one's opt-in standing.
        assert_eq!(index.check(phone(b)), Ok(()));
        assert_eq!(changes_since(&reader.conn, seen, &mut index).unwrap(), seen);
    }

    #[test]
    fn a_standing_set_after_the_load_overrides_the_loaded_one_and_slots_stay() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("w.db")).unwrap();
        let ledger = Ledger::new(&db.conn);
        let (a, b, c) = ("5215512345678", "5215587654321", "5215511111111");
        let phone = |d| E164::from_digits(d).unwrap();
        for d in [a, b] {
            ledger
                .append(&event(d, Purpose::Marketing, Action::OptIn))
                .unwrap();
        }
        let mut index = ConsentIndex::load(&db.conn, Purpose::Marketing).unwrap();
        assert_eq!(index.len(), 2);
        let slot = |index: &ConsentIndex, d| index.slot(phone(d).consent_key() as i64);
        let (slot_a, slot_b) = (slot(&index, a), slot(&index, b));
        assert!(slot_a.is_some() && slot_b.is_some() && slot_a != slot_b);
        assert_eq!(slot(&index, c), None);
        assert_eq!(index.slots(), 2);

        let out = Standing::OptedOut {
            since: "2026-02-01T08:00:00Z".into(),
            method: "whatsapp_reply".into(),
        };
        index.set(phone(a), out);
        index.set(phone(b), Standing::NoOptIn);
        index.set(
            phone(c),
            Standing::OptedIn {
                since: "2026-02-02T08:00:00Z".into(),
                method: "operator".into(),
            },
        );
        assert!(matches!(
            index.check(phone(a)),
            Err(Exclusion::OptedOut { ref date, ref method })
                if date == "2026-02-01" && method == "whatsapp_reply"
        ));
        assert!(matches!(
            index.check(phone(b)),
            Err(Exclusion::NoOptIn { .. })
        ));
        assert_eq!(index.check(phone(c)), Ok(()));
        // a and c have a standing, b none; the numbering of the load is kept.
        assert_eq!(index.len(), 2);
        assert_eq!((slot(&index, a), slot(&index, b)), (slot_a, slot_b));
    }

    #[test]
    fn a_link_learned_while_a_campaign_runs_brings_a_bsuid_stop_to_the_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let reader = Db::open(&path).unwrap();
        let writer = Db::open(&path).unwrap();
        let ledger = Ledger::new(&writer.conn);
        let phone = E164::from_digits("5215512345678").unwrap();
        let bsuid = Bsuid::parse("MX.1349").unwrap();
        ledger
            .append(&event("5215512345678", Purpose::Marketing, Action::OptIn))
            .unwrap();
        ledger
            .append(&NewEvent {
                subject: (&bsuid).into(),
                ..event("5215512345678", Purpose::Marketing, Action::OptOut)
            })
            .unwrap();
        let mut index = ConsentIndex::load(&reader.conn, Purpose::Marketing).unwrap();
        let seen = Ledger::new(&reader.conn).head_id().unwrap();
        assert_eq!(index.check(phone), Ok(()), "nothing links them yet");
        assert!(matches!(
            index.check_contact(None, Some(&bsuid)),
            Err(Exclusion::OptedOut { .. })
        ));
        crate::identity::link(&writer.conn, &bsuid, Some(phone), "2026-01-01T00:00:00Z").unwrap();
        changes_since(&reader.conn, seen, &mut index).unwrap();
        assert!(
            matches!(index.check(phone), Err(Exclusion::OptedOut { .. })),
            "the BSUID's stop now blocks the number"
        );
        assert_eq!(
            index.person(None, Some(&bsuid)),
            phone.consent_key() as i64,
            "one person"
        );
    }

    #[test]
    fn loading_reads_the_covering_index_alone() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("w.db")).unwrap();
        let mut stmt = db
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", standings_sql()))
            .unwrap();
        let plan: Vec<String> = stmt
            .query_map(["marketing"], |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        // No table lookups and no sort: one pass over the index, in order.
        assert_eq!(
            plan,
            ["SCAN consent_events USING COVERING INDEX consent_events_standing"]
        );
    }
}
