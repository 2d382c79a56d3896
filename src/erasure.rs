//! Erasing a person: every identity linked to them, from every table, in one
//! transaction, leaving only what proves the request was honoured.
//!
//! The ledger keeps each of their events with its personal fields blanked (its hash
//! covers a commitment, not the fields, so the chain still verifies) and gains an
//! erasure event with no personal data; the suppression list gains a keyed hash of
//! each identity. Journal rows, statuses, inbound messages, number links, identities
//! and the raw webhook bodies that mention them are deleted (a body is cleared, its
//! hash kept for deduplication). The transaction runs with `secure_delete`; after it
//! the file is rebuilt (VACUUM) and the WAL checkpointed and truncated, so no free
//! page or old WAL frame keeps the bytes.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;
use thiserror::Error;

use crate::clock;
use crate::consent::ledger_erasure;
use crate::phone::E164;
use crate::suppression::{Identity, SuppressionKey, suppress_in};

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ErasureError {
    #[error(
        "a message to this person is in flight in campaign {campaign} (a send is waiting for \
         the provider's answer); waited {waited_s} s. Let the send finish or stop it, then run \
         `wacampaign erase` again; nothing was erased"
    )]
    InFlight { campaign: String, waited_s: u64 },
    #[error("--reason is empty; say why (the request's reference), without personal data")]
    NoReason,
    #[error(transparent)]
    Suppression(#[from] crate::suppression::SuppressionError),
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// What an erasure removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ErasureReport {
    /// Whether anything at all was held about the person.
    pub seen: bool,
    /// Identities suppressed: kinds only, no values.
    pub phones: usize,
    pub bsuids: usize,
    pub ledger_events_erased: u64,
    pub journal_rows: u64,
    pub statuses: u64,
    pub inbound_messages: u64,
    pub number_links: u64,
    pub identity_links: u64,
    pub raw_bodies_cleared: u64,
    /// The ledger event recording the erasure.
    pub erasure_event: i64,
    pub erased_at: String,
    /// Whether the file was rebuilt (VACUUM) so no free page keeps old bytes.
    pub vacuumed: bool,
    /// Whether the WAL was checkpointed and truncated (false while another process
    /// kept reading; then the old pages go at its next checkpoint).
    pub wal_truncated: bool,
}

/// Every identity linked to the one asked for, and how each is written.
#[derive(Debug, Default)]
pub struct Linked {
    /// Consent keys of numbers (positive journal person ids).
    pub phone_keys: BTreeSet<i64>,
    /// Numbers as E.164 digits, in every spelling seen or WhatsApp produces.
    pub spellings: BTreeSet<String>,
    pub bsuids: BTreeSet<String>,
    /// Journal person ids of BSUID-only persons (negative).
    pub bsuid_persons: BTreeSet<i64>,
}

impl Linked {
    fn add_phone(&mut self, phone: E164) -> bool {
        for spelling in whatsapp_spellings(phone) {
            self.spellings.insert(spelling);
        }
        self.phone_keys.insert(phone.consent_key() as i64)
    }

    pub fn persons(&self) -> Vec<i64> {
        self.phone_keys
            .iter()
            .chain(&self.bsuid_persons)
            .copied()
            .collect()
    }

    fn identities(&self) -> Vec<Identity> {
        self.phone_keys
            .iter()
            .filter_map(|k| E164::from_digits(&k.to_string()))
            .map(Identity::Phone)
            .chain(self.bsuids.iter().cloned().map(Identity::Bsuid))
            .collect()
    }
}

/// The E.164 digits of every spelling WhatsApp produces of a number (see
/// `E164::consent_key`): the key itself and the mobile-prefix forms.
pub fn whatsapp_spellings(phone: E164) -> Vec<String> {
    let key = phone.consent_key().to_string();
    let mut out = vec![phone.digits().to_string(), key.clone()];
    match key.as_bytes() {
        [b'5', b'2', rest @ ..] if rest.len() == 10 => out.push(format!("521{}", &key[2..])),
        [b'5', b'4', rest @ ..] if rest.len() == 10 => out.push(format!("549{}", &key[2..])),
        [b'5', b'5', _, _, rest @ ..] if rest.len() == 8 => {
            out.push(format!("{}9{}", &key[..4], &key[4..]));
        }
        _ => {}
    }
    out.sort();
    out.dedup();
    out
}

/// Follows number changes and BSUID links to every identity of the person.
pub fn resolve(conn: &Connection, identity: &Identity) -> rusqlite::Result<Linked> {
    let mut linked = Linked::default();
    let mut pending_phones: Vec<E164> = Vec::new();
    let mut pending_bsuids: Vec<String> = Vec::new();
    match identity {
        Identity::Phone(p) => pending_phones.push(*p),
        Identity::Bsuid(b) => pending_bsuids.push(b.clone()),
    }
    loop {
        if let Some(phone) = pending_phones.pop() {
            if !linked.add_phone(phone) {
                continue;
            }
            let key = phone.consent_key() as i64;
            let mut links = conn.prepare_cached(
                "SELECT new_phone FROM number_links WHERE old_consent_key = ?1
                 UNION SELECT old_phone FROM number_links WHERE new_consent_key = ?1",
            )?;
            for other in links.query_map(params![key], |r| r.get::<_, String>(0))? {
                if let Some(p) = E164::from_digits(&other?) {
                    pending_phones.push(p);
                }
            }
            let mut bsuids =
                conn.prepare_cached("SELECT bsuid FROM identities WHERE person_id = ?1")?;
            for b in bsuids.query_map(params![key], |r| r.get::<_, String>(0))? {
                pending_bsuids.push(b?);
            }
        } else if let Some(bsuid) = pending_bsuids.pop() {
            if !linked.bsuids.insert(bsuid.clone()) {
                continue;
            }
            let row: Option<(i64, Option<String>)> = conn
                .prepare_cached("SELECT person_id, phone FROM identities WHERE bsuid = ?1")?
                .query_row(params![bsuid], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            if let Some((person, phone)) = row {
                if person < 0 {
                    linked.bsuid_persons.insert(person);
                    let mut same =
                        conn.prepare_cached("SELECT bsuid FROM identities WHERE person_id = ?1")?;
                    for b in same.query_map(params![person], |r| r.get::<_, String>(0))? {
                        pending_bsuids.push(b?);
                    }
                } else if let Some(p) = E164::from_digits(&person.to_string()) {
                    pending_phones.push(p);
                }
                if let Some(p) = phone.as_deref().and_then(E164::from_digits) {
                    pending_phones.push(p);
                }
            }
            let mut journal = conn
                .prepare_cached("SELECT DISTINCT person_id, phone FROM journal WHERE bsuid = ?1")?;
            let rows = journal.query_map(params![bsuid], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?))
            })?;
            for row in rows {
                let (person, phone) = row?;
                if person < 0 {
                    linked.bsuid_persons.insert(person);
                }
                if let Some(p) = phone.as_deref().and_then(E164::from_digits) {
                    pending_phones.push(p);
                }
            }
        } else {
            break;
        }
    }
    Ok(linked)
}

/// Erases `identity` and everything linked to it. Waits up to `wait` for a message
/// to them that is in flight (its request sent, its answer not yet recorded) and
/// then removes its row; if one is still in flight, erases nothing.
pub fn erase(
    conn: &Connection,
    key: &SuppressionKey,
    identity: &Identity,
    reason: &str,
    actor: &str,
    wait: Duration,
    vacuum: bool,
) -> Result<ErasureReport, ErasureError> {
    if reason.trim().is_empty() {
        return Err(ErasureError::NoReason);
    }
    key.check_against(conn)?;
    // Overwrite freed content with zeros in this connection's writes, so deleted rows
    // leave no bytes behind in the file or the WAL.
    conn.pragma_update(None, "secure_delete", "ON")?;
    let started = Instant::now();
    let report = loop {
        let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
        let linked = resolve(&tx, identity)?;
        let persons = linked.persons();
        if let Some(campaign) = crate::journal::query::in_flight_to(&tx, &persons)? {
            drop(tx);
            if started.elapsed() >= wait {
                return Err(ErasureError::InFlight {
                    campaign,
                    waited_s: started.elapsed().as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let report = erase_in(&tx, key, &linked, reason, actor)?;
        tx.commit()?;
        break report;
    };
    // Pages freed before this version zeroed what it frees, or by another program,
    // may still hold old copies of rows: rebuilding the file leaves only live data.
    // The erasure is committed either way; a VACUUM that cannot get the database
    // (a long write elsewhere) is reported, not an error.
    let vacuumed = vacuum && conn.execute_batch("VACUUM").is_ok();
    Ok(ErasureReport {
        vacuumed,
        wal_truncated: truncate_wal(conn, wait)?,
        ..report
    })
}

fn erase_in(
    tx: &Connection,
    key: &SuppressionKey,
    linked: &Linked,
    reason: &str,
    actor: &str,
) -> rusqlite::Result<ErasureReport> {
    let persons = linked.persons();
    let mut report = ErasureReport {
        phones: linked.phone_keys.len(),
        bsuids: linked.bsuids.len(),
        ..ErasureReport::default()
    };
    let mut spellings = linked.spellings.clone();
    // The numbers exactly as the journal and the webhook tables hold them.
    for person in &persons {
        let mut stmt = tx.prepare_cached(
            "SELECT phone FROM journal WHERE person_id = ?1 AND phone IS NOT NULL
             UNION SELECT phone FROM inbound_messages WHERE consent_key = ?1",
        )?;
        for phone in stmt.query_map(params![person], |r| r.get::<_, String>(0))? {
            let phone = phone?;
            spellings.insert(phone.trim_start_matches('+').to_owned());
        }
    }
    // Late statuses for these messages must not bring the number back.
    for person in &persons {
        let ids: Vec<String> = tx
            .prepare_cached(
                "SELECT message_id FROM journal WHERE person_id = ?1 AND message_id IS NOT NULL
                 UNION SELECT message_id FROM message_statuses WHERE person_id = ?1",
            )?
            .query_map(params![person], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for id in ids {
            crate::webhook::store::forget_message_in(tx, &id)?;
        }
    }
    for person in &persons {
        report.statuses += tx
            .prepare_cached(
                "DELETE FROM message_statuses WHERE person_id = ?1
                    OR message_id IN (SELECT message_id FROM journal
                                      WHERE person_id = ?1 AND message_id IS NOT NULL)",
            )?
            .execute(params![person])? as u64;
        report.journal_rows += tx
            .prepare_cached("DELETE FROM journal WHERE person_id = ?1")?
            .execute(params![person])? as u64;
        report.inbound_messages += tx
            .prepare_cached("DELETE FROM inbound_messages WHERE consent_key = ?1")?
            .execute(params![person])? as u64;
        report.number_links += tx
            .prepare_cached(
                "DELETE FROM number_links WHERE old_consent_key = ?1 OR new_consent_key = ?1",
            )?
            .execute(params![person])? as u64;
        report.identity_links += tx
            .prepare_cached("DELETE FROM identities WHERE person_id = ?1")?
            .execute(params![person])? as u64;
        // Their place in the messaging limit's count names them too.
        tx.prepare_cached("DELETE FROM limit_reach WHERE person_id = ?1")?
            .execute(params![person])?;
    }
    for bsuid in &linked.bsuids {
        report.journal_rows += tx
            .prepare_cached("DELETE FROM journal WHERE bsuid = ?1")?
            .execute(params![bsuid])? as u64;
        report.identity_links += tx
            .prepare_cached("DELETE FROM identities WHERE bsuid = ?1")?
            .execute(params![bsuid])? as u64;
    }
    // Statuses not matched to a journal row still name their recipient.
    let needles: Vec<&String> = spellings.iter().chain(&linked.bsuids).collect();
    for needle in &needles {
        report.statuses += tx
            .prepare_cached(
                "DELETE FROM message_statuses WHERE recipient = ?1 OR recipient = '+' || ?1",
            )?
            .execute(params![needle])? as u64;
        // Raw bodies: cleared, their hash kept so a provider's retry is still
        // recognised. Digits are searched as text inside the JSON or form body.
        report.raw_bodies_cleared += tx
            .prepare_cached(
                "UPDATE webhook_deliveries SET body = NULL, error = NULL
                 WHERE (body IS NOT NULL AND instr(CAST(body AS TEXT), ?1) > 0)
                    OR instr(coalesce(error, ''), ?1) > 0",
            )?
            .execute(params![needle])? as u64;
    }
    // The numbers' events, and those recorded under each BSUID's own key.
    let subject_keys: Vec<i64> = linked
        .phone_keys
        .iter()
        .copied()
        .chain(linked.bsuids.iter().map(|b| crate::identity::bsuid_key(b)))
        .collect();
    report.ledger_events_erased = ledger_erasure::erase_subjects_in(tx, &subject_keys)?;
    report.seen = report.ledger_events_erased
        + report.journal_rows
        + report.statuses
        + report.inbound_messages
        + report.number_links
        + report.identity_links
        + report.raw_bodies_cleared
        > 0;
    let identities = linked.identities();
    report.erasure_event = ledger_erasure::append_erasure_in(tx, reason, identities.len(), actor)?;
    report.erased_at = clock::now_string();
    for identity in &identities {
        suppress_in(tx, key, identity, &report.erased_at, report.erasure_event)?;
    }
    Ok(report)
}

/// Checkpoints the WAL into the database and truncates it, so the pages written
/// before the erasure are gone from it. Retries while readers hold old pages.
fn truncate_wal(conn: &Connection, wait: Duration) -> rusqlite::Result<bool> {
    let deadline = Instant::now() + wait.max(Duration::from_secs(1));
    loop {
        let (busy, _log, _done): (i64, i64, i64) =
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
        if busy == 0 {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_cover_the_mobile_prefixes() {
        let mx = E164::from_digits("5215512345678").unwrap();
        assert_eq!(whatsapp_spellings(mx), ["5215512345678", "525512345678"]);
        let ar = E164::from_digits("541123456789").unwrap();
        assert!(whatsapp_spellings(ar).contains(&"5491123456789".to_owned()));
        let br = E164::from_digits("5511912345678").unwrap();
        assert!(whatsapp_spellings(br).contains(&"551112345678".to_owned()));
    }
}
