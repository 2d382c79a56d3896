//! Recording deliveries: each signed body once, and each of its effects idempotent,
//! so the same payload delivered again (or the same status in another payload)
//! changes nothing.
//!
//! Everything here runs inside the writer's IMMEDIATE transaction; one delivery's
//! effects are all-or-nothing (a savepoint), so a delivery that cannot be recorded
//! is kept with its error and tried again when the provider retries.

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::{
    Delivery, Event, IdentityLink, InboundEvent, NumberChange, Preference, PreferenceEvent,
    StatusEvent, TemplateChange, TemplateEvent,
};
use crate::clock;
use crate::consent::{self, Action, Ledger, NewEvent, Purpose, RecordedVia, Standing};
use crate::identity::{self, Identity};
use crate::journal::fold::{self, StatusFold};
use crate::journal::settle::{RowRef, Settled, find_row, settle, status_rank};
use crate::phone::E164;
use crate::provider::classify::{self, Class};

/// Who the ledger says recorded webhook events.
pub const ACTOR: &str = "wacampaign webhook";

/// What recording one delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Its effects are recorded.
    New { events: usize },
    /// This exact body was recorded before: nothing changed.
    Duplicate,
    /// Signed but not a payload we can read: kept as it is, answered 200 (a retry
    /// would be the same body).
    Unreadable(String),
    /// Its effects could not be recorded; the body is kept with the error and the
    /// provider's retry tries again.
    Failed(String),
}

/// Work left for after the transaction: rows a status matched while their send was
/// still in flight, to resolve once the send pipeline records its outcome.
#[derive(Debug, Default)]
pub struct Followups {
    pub in_flight: Vec<RowRef>,
}

/// Records a delivery (inside the caller's IMMEDIATE transaction).
pub fn record_delivery(
    conn: &Connection,
    delivery: &Delivery,
    now: &str,
    followups: &mut Followups,
) -> rusqlite::Result<Recorded> {
    let processed: Option<Option<String>> = conn
        .prepare_cached("SELECT processed_at FROM webhook_deliveries WHERE body_sha256 = ?1")?
        .query_row(params![delivery.body_sha256], |r| r.get(0))
        .optional()?;
    if matches!(processed, Some(Some(_))) {
        return Ok(Recorded::Duplicate);
    }
    if let Some(reason) = &delivery.unreadable {
        write_delivery(conn, delivery, now, Some(now), Some(reason))?;
        return Ok(Recorded::Unreadable(reason.clone()));
    }
    // A status of a message to someone since erased is dropped, and the body that
    // names them is not kept.
    let keep_body = !delivery.events.iter().try_fold(false, |any, event| {
        Ok::<_, rusqlite::Error>(
            any || matches!(event, Event::Status(s) if is_erased_message(conn, &s.message_id)?),
        )
    })?;
    conn.execute_batch("SAVEPOINT delivery")?;
    let applied = delivery
        .events
        .iter()
        .try_for_each(|event| apply(conn, event, now, followups));
    match applied {
        Ok(()) => {
            conn.execute_batch("RELEASE delivery")?;
            if keep_body {
                write_delivery(conn, delivery, now, Some(now), None)?;
            } else {
                let bodiless = Delivery {
                    body: Vec::new(),
                    ..delivery.clone()
                };
                write_delivery(conn, &bodiless, now, Some(now), None)?;
            }
            Ok(Recorded::New {
                events: delivery.events.len(),
            })
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO delivery; RELEASE delivery")?;
            let reason = format!("recording its effects failed: {e}");
            write_delivery(conn, delivery, now, None, Some(&reason))?;
            Ok(Recorded::Failed(reason))
        }
    }
}

fn write_delivery(
    conn: &Connection,
    delivery: &Delivery,
    now: &str,
    processed_at: Option<&str>,
    error: Option<&str>,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO webhook_deliveries (body_sha256, provider, received_at, body, processed_at, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (body_sha256) DO UPDATE SET processed_at = excluded.processed_at,
             error = excluded.error",
    )?
    .execute(params![
        delivery.body_sha256,
        delivery.source.as_str(),
        now,
        // No body is kept for a delivery about someone erased (see record_delivery).
        (!delivery.body.is_empty()).then_some(&delivery.body),
        processed_at,
        error
    ])?;
    Ok(())
}

fn apply(
    conn: &Connection,
    event: &Event,
    now: &str,
    followups: &mut Followups,
) -> rusqlite::Result<()> {
    match event {
        Event::Status(status) => apply_status(conn, status, now, followups),
        Event::Inbound(message) => apply_inbound(conn, message, now),
        Event::Preference(preference) => apply_preference(conn, preference, now),
        Event::NumberChanged(change) => apply_number_change(conn, change, now),
        Event::Template(template) => apply_template(conn, template, now),
        Event::Link(link) => apply_link(conn, link, now),
        Event::BsuidOptOut(opt_out) => {
            identity::link(conn, &opt_out.bsuid, None, now)?;
            consent::append_in(
                conn,
                &NewEvent {
                    subject: (&opt_out.bsuid).into(),
                    purpose: Purpose::All,
                    action: Action::OptOut,
                    occurred_at: opt_out.occurred_at.clone(),
                    method: opt_out.request.method.clone(),
                    recorded_via: RecordedVia::Webhook,
                    source: opt_out.message_id.clone(),
                    evidence: Some(opt_out.request.evidence.clone()),
                    notice: None,
                    actor: ACTOR.to_owned(),
                    dedupe_key: Some(format!("webhook:meta:{}:opt_out", opt_out.message_id)),
                },
            )?;
            Ok(())
        }
    }
}

/// Notes, inside an erasure's transaction, that `message_id` went to someone erased.
pub fn forget_message_in(conn: &Connection, message_id: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT OR IGNORE INTO erased_messages (message_sha256) VALUES (?1)")?
        .execute(params![hex::encode(Sha256::digest(message_id.as_bytes()))])?;
    Ok(())
}

fn is_erased_message(conn: &Connection, message_id: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM erased_messages WHERE message_sha256 = ?1")?
        .query_row(
            params![hex::encode(Sha256::digest(message_id.as_bytes()))],
            |_| Ok(()),
        )
        .optional()
        .map(|found| found.is_some())
}

/// A template's new status, quality or category goes into every cache that holds
/// it; a pause, a disable or a move to another category halts at once every
/// campaign that sends it (its next claim stops the run), until a sync shows it
/// APPROVED in the campaign's category again.
fn apply_template(conn: &Connection, event: &TemplateEvent, now: &str) -> rusqlite::Result<()> {
    use crate::templates::store::{Field, update};
    let (field, value) = match &event.change {
        TemplateChange::Status(s) => (Field::Status, s),
        TemplateChange::Quality(q) => (Field::Quality, q),
        TemplateChange::Category(c) => (Field::Category, c),
    };
    update(
        conn,
        event.template_id.as_deref(),
        &event.name,
        event.language.as_deref(),
        field,
        value,
    )?;
    // Every campaign of the template, whichever translation changed: one may send
    // several, and the journal records only its first.
    let mut campaigns = conn.prepare_cached(
        "SELECT id, language, category FROM campaigns WHERE template = ?1 AND halted_at IS NULL",
    )?;
    let running = campaigns
        .query_map(params![event.name], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for (id, _, category) in running {
        let reason = match &event.change {
            TemplateChange::Status(s) if s != "APPROVED" && s != "PENDING" => format!(
                "a webhook reported template {} {s}; resume with --resume-halted once `wacampaign templates sync` shows it APPROVED",
                event.name
            ),
            TemplateChange::Category(c) if !c.eq_ignore_ascii_case(&category) => format!(
                "a webhook reported template {} moved to category {c} (the campaign is {category}: the consent it needs and its price change); resume with --resume-halted once a sync shows it {} again, or send it as a {} campaign",
                event.name,
                category.to_ascii_uppercase(),
                c.to_ascii_lowercase()
            ),
            _ => continue,
        };
        crate::journal::settle::halt_campaign(conn, &id, &reason, now)?;
    }
    Ok(())
}

fn apply_status(
    conn: &Connection,
    status: &StatusEvent,
    now: &str,
    followups: &mut Followups,
) -> rusqlite::Result<()> {
    if is_erased_message(conn, &status.message_id)? {
        return Ok(());
    }
    let row = find_row(conn, &status.message_id, status.callback.as_deref())?;
    let inserted = conn.prepare_cached(
        "INSERT OR IGNORE INTO message_statuses (message_id, status, rank, timestamp, occurred_at,
             provider, recipient, error_code, error_detail, campaign_id, person_id, occurrence,
             received_at, billable, pricing_category, pricing_type)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    )?
    .execute(params![
        status.message_id,
        status.status,
        status_rank(&status.status),
        status.timestamp,
        status.occurred_at,
        status.source.as_str(),
        status.recipient,
        status.error_code,
        status.error_detail,
        row.as_ref().map(|r| &r.0.campaign_id),
        row.as_ref().map(|r| r.0.key.person),
        row.as_ref().map(|r| &r.0.key.occurrence),
        now,
        status.pricing.as_ref().and_then(|p| p.billable),
        status.pricing.as_ref().and_then(|p| p.category.as_deref()),
        status.pricing.as_ref().and_then(|p| p.kind.as_deref()),
    ])? > 0;
    let mut subject: Option<Identity> = status
        .recipient
        .as_deref()
        .and_then(recipient_number)
        .map(Identity::from);
    if let Some((key, phone, rowid)) = &row {
        if settle(conn, key, Some(&status.message_id), now)? == Settled::InFlight {
            followups.in_flight.push(key.clone());
        }
        // After settling, which may have just given the row this message id. A
        // status recorded before (the same one delivered again) is folded already.
        if inserted {
            fold::apply(
                conn,
                *rowid,
                &status.message_id,
                &StatusFold {
                    rank: status_rank(&status.status),
                    at: fold::status_seconds(status.timestamp, &status.occurred_at),
                    error_code: status.error_code,
                    error_detail: status.error_detail.as_deref(),
                    billable: status.pricing.as_ref().and_then(|p| p.billable),
                    pricing_category: status.pricing.as_ref().and_then(|p| p.category.as_deref()),
                    pricing_type: status.pricing.as_ref().and_then(|p| p.kind.as_deref()),
                },
            )?;
        }
        // The row's number, or its BSUID for a person known by that alone.
        subject = Identity::from_stored(phone).or(subject);
    }
    // The same table as a send's answer: a code that records an opt-out there records
    // one here. The other classes only describe the failure the row already shows.
    let class = status
        .error_code
        .and_then(|code| classify::code_class(status.source.family(), code));
    // Meta reports its per-user marketing limit (131049) mostly in a failed status
    // after accepting the send: the row goes back to wait a day, as if the send had
    // been refused.
    if let (Some(Class::DeferRecipient { after }), Some((key, _, _))) = (&class, &row)
        && status.status == "failed"
    {
        let from = clock::parse(&status.occurred_at).unwrap_or_else(|_| clock::now());
        let until = clock::format(
            from + chrono::Duration::from_std(*after).unwrap_or(chrono::Duration::days(1)),
        );
        let detail = format!(
            "{} after it was accepted: {}",
            status.status,
            status
                .error_detail
                .as_deref()
                .unwrap_or("per-user marketing limit")
        );
        crate::journal::settle::defer_accepted(
            conn,
            key,
            &until,
            status.error_code,
            &detail,
            classify::MAX_DEFERRALS,
            now,
        )?;
    }
    let opt_out = match class {
        Some(Class::OptOut { purpose }) => Some(purpose),
        _ => None,
    };
    if let (Some(purpose), Some(subject)) = (opt_out, subject) {
        let code = status.error_code.unwrap_or_default();
        let detail = status
            .error_detail
            .clone()
            .unwrap_or_else(|| format!("error {code}"));
        consent::append_in(
            conn,
            &NewEvent {
                subject,
                purpose,
                action: Action::OptOut,
                occurred_at: status.occurred_at.clone(),
                method: format!("provider_error_{code}"),
                recorded_via: RecordedVia::Webhook,
                source: status.message_id.clone(),
                evidence: Some(format!(
                    "{} {} status for {}: error {code}: {detail}",
                    status.source, status.status, status.message_id
                )),
                notice: None,
                actor: ACTOR.to_owned(),
                dedupe_key: Some(format!(
                    "webhook:{}:{}:opt_out",
                    status.source, status.message_id
                )),
            },
        )?;
    }
    Ok(())
}

/// A number as a provider names a recipient: `525512345678` or `whatsapp:+52...`.
fn recipient_number(text: &str) -> Option<E164> {
    E164::from_digits(text.trim().trim_start_matches("whatsapp:"))
}

fn apply_inbound(conn: &Connection, message: &InboundEvent, now: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO inbound_messages (message_id, provider, phone, consent_key, kind,
             context_id, occurred_at, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        message.message_id,
        message.source.as_str(),
        message.from.to_string(),
        message.from.consent_key() as i64,
        message.kind,
        message.context_id,
        message.occurred_at,
        now
    ])?;
    if let Some(possible) = &message.possible_opt_out {
        super::possible::record(conn, message, possible, now)?;
    }
    let declared = match (&message.opt_out, &message.button_payload) {
        (None, Some(payload)) => {
            super::optout::declared_by(conn, payload)?.map(|campaign| super::OptOutRequest {
                method: "whatsapp_reply".to_owned(),
                evidence: format!(
                    "button payload `{payload}`, declared an opt-out by campaign {campaign}"
                ),
            })
        }
        _ => None,
    };
    if let Some(request) = message.opt_out.as_ref().or(declared.as_ref()) {
        consent::append_in(
            conn,
            &NewEvent {
                subject: message.from.into(),
                purpose: Purpose::All,
                action: Action::OptOut,
                occurred_at: message.occurred_at.clone(),
                method: request.method.clone(),
                recorded_via: RecordedVia::Webhook,
                source: message.message_id.clone(),
                evidence: Some(request.evidence.clone()),
                notice: None,
                actor: ACTOR.to_owned(),
                dedupe_key: Some(format!(
                    "webhook:{}:{}:opt_out",
                    message.source, message.message_id
                )),
            },
        )?;
    }
    Ok(())
}

/// A BSUID learned beside a number, alone, or replacing another. A change from a
/// BSUID never seen is recorded all the same (the two are one person from now on),
/// with a warning in the server's log: it is news, not an error.
fn apply_link(conn: &Connection, link: &IdentityLink, now: &str) -> rusqlite::Result<()> {
    match &link.previous {
        Some(previous) => {
            if !identity::link_successor(conn, previous, &link.bsuid, now)? {
                tracing_warn(&format!(
                    "a BSUID change from {previous} to {}: {previous} was never seen before; \
                     both are recorded as one person",
                    link.bsuid
                ));
            }
            if let Some(phone) = link.phone {
                identity::link(conn, &link.bsuid, Some(phone), now)?;
            }
        }
        None => {
            if let identity::Linked::Conflict { linked_to } =
                identity::link(conn, &link.bsuid, link.phone, now)?
            {
                tracing_warn(&format!(
                    "{} came with {} but is linked to {linked_to} already; the first link is kept",
                    link.bsuid,
                    link.phone.map(|p| p.to_string()).unwrap_or_default()
                ));
            }
        }
    }
    Ok(())
}

/// The webhook server's log is its standard error.
fn tracing_warn(message: &str) {
    eprintln!("warning: {message}");
}

fn apply_preference(
    conn: &Connection,
    preference: &PreferenceEvent,
    now: &str,
) -> rusqlite::Result<()> {
    let (action, value) = match preference.marketing {
        Preference::Stop => (Action::OptOut, "stop"),
        Preference::Resume => (Action::OptIn, "resume"),
    };
    // The number when it came, else the BSUID: a stop for a BSUID never seen is
    // recorded under it, and blocks whatever number is linked to it later.
    let subject: Identity = match (preference.wa_id, &preference.user_id) {
        (Some(phone), bsuid) => {
            if let Some(bsuid) = bsuid {
                identity::link(conn, bsuid, Some(phone), now)?;
            }
            phone.into()
        }
        (None, Some(bsuid)) => {
            identity::link(conn, bsuid, None, now)?;
            bsuid.into()
        }
        (None, None) => return Ok(()),
    };
    let mut occurred_at = preference.occurred_at.clone();
    if preference.marketing == Preference::Resume {
        // The ledger lifts an opt-out only with an opt-in dated after it. A resume
        // in the same second as the stop it follows (Meta's timestamps are whole
        // seconds) is dated one second later, so it does lift it.
        if let Standing::OptedOut { since, method } =
            Ledger::new(conn).standing(subject.clone(), Purpose::Marketing)?
            && method == "whatsapp_preference"
            && since == occurred_at
            && let Ok(at) = clock::parse(&since)
        {
            occurred_at = clock::format(at + chrono::Duration::seconds(1));
        }
    }
    consent::append_in(
        conn,
        &NewEvent {
            subject: subject.clone(),
            purpose: Purpose::Marketing,
            action,
            occurred_at,
            method: "whatsapp_preference".to_owned(),
            recorded_via: RecordedVia::Webhook,
            source: format!(
                "{} user_preferences: marketing_messages {value} at {}",
                preference.source, preference.timestamp
            ),
            evidence: Some(preference.evidence.clone()),
            notice: None,
            actor: ACTOR.to_owned(),
            dedupe_key: Some(format!(
                "webhook:{}:preference:{}:{value}:{}",
                preference.source,
                match &subject {
                    Identity::Phone(p) => p.digits().to_string(),
                    Identity::Bsuid(b) => b.clone(),
                },
                preference.timestamp
            )),
        },
    )?;
    Ok(())
}

fn apply_number_change(
    conn: &Connection,
    change: &NumberChange,
    now: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO number_links (old_phone, old_consent_key, new_phone, new_consent_key,
             changed_at, message_id, provider, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        change.old.to_string(),
        change.old.consent_key() as i64,
        change.new.to_string(),
        change.new.consent_key() as i64,
        change.occurred_at,
        change.message_id,
        change.source.as_str(),
        now
    ])?;
    // An opt-out follows the person to the new number. Opt-ins do not: consent to
    // the old number is not consent we can prove for the new one.
    let ledger = Ledger::new(conn);
    let history = ledger.history(change.old)?;
    let marketing = consent::standing_of(&history, Purpose::Marketing);
    let utility = consent::standing_of(&history, Purpose::Utility);
    let carried = match (&marketing, &utility) {
        (Standing::OptedOut { .. }, Standing::OptedOut { .. }) => Some((Purpose::All, &marketing)),
        (Standing::OptedOut { .. }, _) => Some((Purpose::Marketing, &marketing)),
        (_, Standing::OptedOut { .. }) => Some((Purpose::Utility, &utility)),
        _ => None,
    };
    let Some((purpose, Standing::OptedOut { since, method })) = carried else {
        return Ok(());
    };
    consent::append_in(
        conn,
        &NewEvent {
            subject: change.new.into(),
            purpose,
            action: Action::OptOut,
            occurred_at: change.occurred_at.clone(),
            method: "number_change".to_owned(),
            recorded_via: RecordedVia::Webhook,
            source: change.message_id.clone(),
            evidence: Some(format!(
                "{} changed number from {} to {} ({}); {} stands opted out of {purpose} since {} via {method}",
                change.source,
                change.old,
                change.new,
                change.body,
                change.old,
                clock::date_part(since)
            )),
            notice: None,
            actor: ACTOR.to_owned(),
            dedupe_key: Some(format!(
                "webhook:{}:{}:carried_opt_out",
                change.source, change.message_id
            )),
        },
    )?;
    Ok(())
}

/// Prunes the bodies of deliveries received before `before` (RFC 3339), keeping
/// their hashes so a late retry is still recognised. Returns how many.
pub fn prune_bodies(conn: &Connection, before: &str) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE webhook_deliveries SET body = NULL
         WHERE received_at < ?1 AND body IS NOT NULL AND processed_at IS NOT NULL",
        params![before],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;
    use crate::journal::{State, fixture};
    use crate::webhook::{OptOutRequest, Source};

    const PHONE: &str = "525512345678";

    fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("w.db")).unwrap();
        (dir, db)
    }

    fn seed(conn: &Connection, state: State, message_id: Option<&str>) {
        conn.execute(
            "INSERT OR IGNORE INTO campaigns (id, fingerprint, template, language, category, provider, created_at)
             VALUES ('promo', 'f', 't', 'es_MX', 'marketing', 'cloud_api', '2026-01-01T00:00:00Z')",
            [],
        )
        .unwrap();
        fixture::insert(
            conn,
            &fixture::Row {
                campaign: "promo",
                person: PHONE.parse().unwrap(),
                phone: &format!("+{PHONE}"),
                seq: 1,
                state,
                message_id,
                outcome_at: None,
                updated_at: "2026-01-01T00:00:00Z",
            },
        )
        .unwrap();
    }

    fn status(id: &str, kind: &str, ts: i64, error: Option<i64>) -> Event {
        Event::Status(StatusEvent {
            source: Source::Meta,
            message_id: id.to_owned(),
            status: kind.to_owned(),
            timestamp: ts,
            occurred_at: crate::webhook::unix_to_rfc3339(ts).unwrap(),
            recipient: Some(PHONE.to_owned()),
            callback: Some(format!("wacampaign:promo:{PHONE}")),
            error_code: error,
            error_detail: error.map(|c| format!("error {c} detail")),
            pricing: None,
        })
    }

    fn deliver(conn: &Connection, tag: &str, events: Vec<Event>) -> Recorded {
        let mut delivery = Delivery::new(Source::Meta, tag.as_bytes().to_vec());
        delivery.events = events;
        let tx =
            rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)
                .unwrap();
        let recorded = record_delivery(
            &tx,
            &delivery,
            "2026-06-01T00:00:00Z",
            &mut Followups::default(),
        )
        .unwrap();
        tx.commit().unwrap();
        recorded
    }

    fn row(conn: &Connection) -> (State, Option<String>, Option<i64>, Option<String>) {
        conn.query_row(
            "SELECT state, message_id, error_code, error_detail FROM journal WHERE campaign_id = 'promo'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap()
    }

    fn count(conn: &Connection, table: &str) -> i64 {
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    fn standing(conn: &Connection, phone: &str, purpose: Purpose) -> Standing {
        Ledger::new(conn)
            .standing(E164::from_digits(phone).unwrap(), purpose)
            .unwrap()
    }

    #[test]
    fn a_status_resolves_a_row_held_in_doubt_once() {
        let (_dir, db) = db();
        seed(&db.conn, State::InDoubt, None);
        let events = vec![status("wamid.X", "sent", 1_750_000_000, None)];
        assert_eq!(
            deliver(&db.conn, "body", events.clone()),
            Recorded::New { events: 1 }
        );
        let (state, id, code, detail) = row(&db.conn);
        assert_eq!(
            (state, id.as_deref(), code),
            (State::Accepted, Some("wamid.X"), None)
        );
        assert!(detail.unwrap().contains("sent after all"));
        for _ in 0..2 {
            assert_eq!(
                deliver(&db.conn, "body", events.clone()),
                Recorded::Duplicate
            );
        }
        // The same status in another body (Meta batches differently on retries).
        assert_eq!(
            deliver(&db.conn, "other body", events),
            Recorded::New { events: 1 }
        );
        assert_eq!(count(&db.conn, "message_statuses"), 1);
        assert_eq!(count(&db.conn, "webhook_deliveries"), 2);
    }

    #[test]
    fn the_per_user_limit_in_a_failed_status_defers_the_row_a_day() {
        let (_dir, db) = db();
        seed(&db.conn, State::Accepted, Some("wamid.X"));
        let failed = || vec![status("wamid.X", "failed", 1_750_000_000, Some(131_049))];
        deliver(&db.conn, "a", failed());
        deliver(&db.conn, "b", failed());
        let (state, retry_at, deferrals): (State, String, i64) = db
            .conn
            .query_row("SELECT state, retry_at, deferrals FROM journal", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        // 1,750,000,000 is 2025-06-15T15:06:40Z: due a day later, deferred once
        // however often the status is delivered.
        assert_eq!(
            (state, retry_at.as_str(), deferrals),
            (State::Deferred, "2025-06-16T15:06:40Z", 1)
        );
        assert_eq!(
            standing(&db.conn, PHONE, Purpose::Marketing),
            Standing::NoOptIn,
            "not an opt-out"
        );
    }

    #[test]
    fn a_marketing_refusal_records_an_opt_out_and_other_failures_the_error() {
        let (_dir, db) = db();
        seed(&db.conn, State::Accepted, Some("wamid.X"));
        deliver(
            &db.conn,
            "a",
            vec![status("wamid.X", "failed", 1_750_000_000, Some(131_026))],
        );
        let (state, _, code, detail) = row(&db.conn);
        assert_eq!((state, code), (State::Accepted, Some(131_026)));
        assert!(detail.unwrap().starts_with("failed after it was accepted"));
        assert_eq!(
            standing(&db.conn, PHONE, Purpose::Marketing),
            Standing::NoOptIn
        );

        deliver(
            &db.conn,
            "b",
            vec![status("wamid.Y", "failed", 1_750_000_100, Some(131_050))],
        );
        let Standing::OptedOut { method, .. } = standing(&db.conn, PHONE, Purpose::Marketing)
        else {
            panic!("131050 is a marketing opt-out")
        };
        assert_eq!(method, "provider_error_131050");
        assert!(standing(&db.conn, PHONE, Purpose::Utility) == Standing::NoOptIn);
        let source: String = db
            .conn
            .query_row("SELECT source FROM consent_events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(source, "wamid.Y");
    }

    #[test]
    fn a_twilio_block_in_a_status_callback_opts_out_as_in_a_send_answer() {
        let (_dir, db) = db();
        seed(&db.conn, State::Accepted, Some("SM0001"));
        let twilio = |id: &str, code| {
            let Event::Status(mut status) = status(id, "undelivered", 0, Some(code)) else {
                unreachable!()
            };
            status.source = Source::Twilio;
            status.recipient = Some(format!("whatsapp:+{PHONE}"));
            Event::Status(status)
        };
        // 63016 (outside the window) is a failure, not an opt-out.
        deliver(&db.conn, "a", vec![twilio("SM0001", 63_016)]);
        assert_eq!(count(&db.conn, "consent_events"), 0);
        deliver(&db.conn, "b", vec![twilio("SM0002", 63_014)]);
        let Standing::OptedOut { method, .. } = standing(&db.conn, PHONE, Purpose::Utility) else {
            panic!("63014 (blocked by the user) is an opt-out of everything")
        };
        assert_eq!(method, "provider_error_63014");
        assert!(matches!(
            standing(&db.conn, PHONE, Purpose::Marketing),
            Standing::OptedOut { .. }
        ));
    }

    #[test]
    fn a_status_for_a_planned_row_under_its_campaigns_mark_waits_as_one_in_flight() {
        let (_dir, db) = db();
        seed(&db.conn, State::Planned, None);
        db.conn
            .execute("UPDATE journal SET attempts = 0", [])
            .unwrap();
        let id: i64 = db
            .conn
            .query_row("SELECT id FROM journal", [], |r| r.get(0))
            .unwrap();
        // A run claimed it: the mark, not the row, says so (`journal::claims`).
        crate::journal::claims::advance(
            &db.conn,
            "promo",
            1,
            crate::journal::claims::Position { seq: 1, id },
            "2026-06-01T00:00:00Z",
        )
        .unwrap();
        let mut followups = Followups::default();
        let mut delivery = Delivery::new(Source::Meta, b"x".to_vec());
        delivery.events = vec![status("wamid.X", "delivered", 1_750_000_000, None)];
        record_delivery(&db.conn, &delivery, "2026-06-01T00:00:01Z", &mut followups).unwrap();
        assert_eq!(
            followups.in_flight.len(),
            1,
            "rechecked once the send records it"
        );
        let (state, message_id, ..) = row(&db.conn);
        assert_eq!(state, State::Planned, "the send records its outcome");
        assert_eq!(
            message_id.as_deref(),
            Some("wamid.X"),
            "its id kept meanwhile"
        );
    }

    #[test]
    fn a_status_while_in_flight_settles_once_the_send_gives_up() {
        let (_dir, db) = db();
        seed(&db.conn, State::InFlight, None);
        let mut followups = Followups::default();
        let mut delivery = Delivery::new(Source::Meta, b"x".to_vec());
        delivery.events = vec![status("wamid.X", "delivered", 1_750_000_000, None)];
        record_delivery(&db.conn, &delivery, "2026-06-01T00:00:00Z", &mut followups).unwrap();
        assert_eq!(followups.in_flight.len(), 1);
        assert_eq!(row(&db.conn).0, State::InFlight);
        // The send timed out: the pipeline holds it in doubt (keeping the id).
        fixture::set_state(&db.conn, "promo", State::InDoubt).unwrap();
        let resolved = crate::journal::settle::resolve_in_doubt(&db.conn, "promo").unwrap();
        assert_eq!(resolved, 1);
        assert_eq!(row(&db.conn).0, State::Accepted);
    }

    #[test]
    fn stop_then_resume_in_the_same_second_lifts_the_opt_out() {
        let (_dir, db) = db();
        let pref = |value: Preference| {
            Event::Preference(PreferenceEvent {
                source: Source::Meta,
                wa_id: Some(E164::from_digits(PHONE).unwrap()),
                user_id: None,
                marketing: value,
                timestamp: 1_731_705_721,
                occurred_at: "2024-11-15T21:22:01Z".to_owned(),
                evidence: "{}".to_owned(),
            })
        };
        deliver(&db.conn, "stop", vec![pref(Preference::Stop)]);
        assert!(matches!(
            standing(&db.conn, PHONE, Purpose::Marketing),
            Standing::OptedOut { .. }
        ));
        deliver(&db.conn, "resume", vec![pref(Preference::Resume)]);
        let Standing::OptedIn { since, method } = standing(&db.conn, PHONE, Purpose::Marketing)
        else {
            panic!("resume lifts the stop")
        };
        assert_eq!(
            (since.as_str(), method.as_str()),
            ("2024-11-15T21:22:02Z", "whatsapp_preference")
        );
    }

    #[test]
    fn a_changed_number_is_linked_and_inherits_the_opt_out() {
        let (_dir, db) = db();
        let old = E164::from_digits(PHONE).unwrap();
        let new = E164::from_digits("525587654321").unwrap();
        deliver(
            &db.conn,
            "stop",
            vec![Event::Inbound(InboundEvent {
                source: Source::Meta,
                message_id: "wamid.S".to_owned(),
                from: old,
                kind: "text".to_owned(),
                context_id: None,
                occurred_at: "2026-02-01T00:00:00Z".to_owned(),
                opt_out: Some(OptOutRequest {
                    method: "whatsapp_reply".to_owned(),
                    evidence: "STOP".to_owned(),
                }),
                possible_opt_out: None,
                button_payload: None,
            })],
        );
        let change = Event::NumberChanged(NumberChange {
            source: Source::Meta,
            old,
            new,
            occurred_at: "2026-03-01T00:00:00Z".to_owned(),
            message_id: "wamid.C".to_owned(),
            body: "User changed number".to_owned(),
        });
        deliver(&db.conn, "change", vec![change.clone()]);
        deliver(&db.conn, "change again", vec![change]);
        assert_eq!(count(&db.conn, "number_links"), 1);
        assert_eq!(count(&db.conn, "consent_events"), 2);
        let Standing::OptedOut { method, .. } =
            standing(&db.conn, "525587654321", Purpose::Utility)
        else {
            panic!("the opt-out follows the number")
        };
        assert_eq!(method, "number_change");
        assert_eq!(
            crate::webhook::history::current_number(&db.conn, old).unwrap(),
            new
        );
    }

    #[test]
    fn statuses_rank_by_progress() {
        let mut statuses = ["read", "sent", "failed", "delivered", "queued"];
        statuses.sort_by_key(|s| status_rank(s));
        assert_eq!(statuses, ["queued", "sent", "delivered", "read", "failed"]);
    }
}
