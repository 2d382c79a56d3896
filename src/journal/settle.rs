//! Transitions that come from outside the send pipeline: delivery statuses from
//! the webhook server, held rows settled before a run, Meta's refusals reported
//! after acceptance, and halts ordered by a webhook. Each runs inside the caller's
//! transaction and is idempotent: the same status applied twice changes nothing.

use rusqlite::{Connection, OptionalExtension, params};

use super::{RowKey, State};
use crate::clock;

/// A journal row, as a status finds it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RowRef {
    pub campaign_id: String,
    pub key: RowKey,
}

/// How a status's rank orders it: the highest is a message's latest status.
pub fn status_rank(status: &str) -> i64 {
    match status {
        "failed" | "undelivered" | "canceled" => FAILED_RANK,
        "read" => 3,
        "delivered" => 2,
        "sent" => 1,
        _ => 0,
    }
}

/// The rank of a failure after acceptance.
pub const FAILED_RANK: i64 = 4;

/// The journal row a status belongs to: by message id, else by the callback data
/// the send put on the message. Returns the row, where it was sent (E.164 or
/// BSUID), and its rowid (for [`super::fold::apply`]).
pub fn find_row(
    conn: &Connection,
    message_id: &str,
    callback: Option<&str>,
) -> rusqlite::Result<Option<(RowRef, String, i64)>> {
    let to_row = |r: &rusqlite::Row<'_>| {
        Ok((
            RowRef {
                campaign_id: r.get(0)?,
                key: RowKey {
                    person: r.get(1)?,
                    occurrence: r.get(2)?,
                },
            },
            r.get(3)?,
            r.get(4)?,
        ))
    };
    let by_id = conn
        .prepare_cached(
            "SELECT campaign_id, person_id, occurrence, coalesce(phone, bsuid), id FROM journal
             WHERE message_id = ?1 LIMIT 1",
        )?
        .query_row(params![message_id], to_row)
        .optional()?;
    if by_id.is_some() {
        return Ok(by_id);
    }
    let Some((campaign_id, key)) = callback.and_then(crate::row_key::parse_callback_data) else {
        return Ok(None);
    };
    conn.prepare_cached(
        "SELECT campaign_id, person_id, occurrence, coalesce(phone, bsuid), id FROM journal
         WHERE campaign_id = ?1 AND person_id = ?2 AND occurrence = ?3",
    )?
    .query_row(params![campaign_id, key.person, key.occurrence], to_row)
    .optional()
}

/// What [`settle`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The row's send is still in flight: settle it again once its outcome is in.
    InFlight,
    /// The row was held in doubt (or waiting for a retry) and a status proves it
    /// was sent: it is now accepted.
    Resolved,
    Unchanged,
}

/// Brings a journal row in line with the statuses recorded for it: a row held in
/// doubt (or waiting to be retried after an attempt) whose message has a status was
/// sent, so it becomes `accepted` with the message id; an accepted row whose message
/// failed afterwards gets the error. Idempotent.
pub fn settle(
    conn: &Connection,
    row: &RowRef,
    message_id: Option<&str>,
    now: &str,
) -> rusqlite::Result<Settled> {
    let RowKey { person, occurrence } = &row.key;
    let current: Option<(State, i64, Option<String>, i64)> = conn
        .prepare_cached(concat!(
            "SELECT ",
            super::claims::effective_state!("j"),
            ", j.attempts, j.message_id, j.id FROM journal j
             WHERE j.campaign_id = ?1 AND j.person_id = ?2 AND j.occurrence = ?3"
        ))?
        .query_row(params![row.campaign_id, person, occurrence], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((state, attempts, row_message_id, rowid)) = current else {
        return Ok(Settled::Unchanged);
    };
    let lookup_id = row_message_id.as_deref().or(message_id);
    // The most advanced status of this row's message (or of any attempt of it
    // that named the row in its callback data).
    let best: Option<BestStatus> = conn
        .prepare_cached(
            "SELECT message_id, status, occurred_at, error_code, error_detail, recipient, rank
             FROM message_statuses
             WHERE message_id = ?4 OR (campaign_id = ?1 AND person_id = ?2 AND occurrence = ?3)
             ORDER BY rank DESC, timestamp DESC, id DESC LIMIT 1",
        )?
        .query_row(
            params![row.campaign_id, person, occurrence, lookup_id],
            |r| {
                Ok(BestStatus {
                    message_id: r.get(0)?,
                    status: r.get(1)?,
                    occurred_at: r.get(2)?,
                    error_code: r.get(3)?,
                    error_detail: r.get(4)?,
                    recipient: r.get(5)?,
                    rank: r.get(6)?,
                })
            },
        )
        .optional()?;
    let Some(best) = best else {
        return Ok(Settled::Unchanged);
    };
    let wa_id = best
        .recipient
        .as_deref()
        .map(|r| {
            r.trim()
                .trim_start_matches("whatsapp:")
                .trim_start_matches('+')
        })
        .filter(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()));
    let mut settled = Settled::Unchanged;
    match state {
        State::InFlight => {
            // The send pipeline records the outcome; keep the id so a timeout that
            // leaves the row in doubt still finds its statuses.
            let named = conn
                .prepare_cached(
                    "UPDATE journal SET message_id = ?4
                     WHERE campaign_id = ?1 AND person_id = ?2 AND occurrence = ?3 AND message_id IS NULL",
                )?
                .execute(params![row.campaign_id, person, occurrence, best.message_id])?;
            if named > 0 {
                super::fold::refold(conn, rowid)?;
            }
            return Ok(Settled::InFlight);
        }
        // A failed status does not make a deferred row sent: Meta defers some
        // refusals (131049) by failing the accepted message, and the row waits.
        State::Deferred | State::Planned if best.rank == FAILED_RANK => {}
        State::InDoubt | State::Deferred | State::Planned if attempts > 0 => {
            conn.prepare_cached(
                "UPDATE journal SET state = 'accepted', message_id = ?4, wa_id = coalesce(wa_id, ?5),
                     error_code = NULL, error_detail = ?6, retry_at = NULL, outcome_at = ?7,
                     updated_at = ?7
                 WHERE campaign_id = ?1 AND person_id = ?2 AND occurrence = ?3",
            )?
            .execute(params![
                row.campaign_id,
                person,
                occurrence,
                best.message_id,
                wa_id,
                format!(
                    "was {state}; sent after all: the provider reported it {} on {}",
                    best.status, best.occurred_at
                ),
                now
            ])?;
            // The row's message may have changed: its fold follows.
            super::fold::refold(conn, rowid)?;
            settled = Settled::Resolved;
        }
        _ => {}
    }
    if best.rank == FAILED_RANK {
        let detail = format!(
            "{} after it was accepted: {}",
            best.status,
            best.error_detail.as_deref().unwrap_or("no detail")
        );
        conn.prepare_cached(
            "UPDATE journal SET error_code = ?4, error_detail = ?5, updated_at = ?6
             WHERE campaign_id = ?1 AND person_id = ?2 AND occurrence = ?3 AND state = 'accepted'
               AND (error_code IS NOT ?4 OR error_detail IS NOT ?5)",
        )?
        .execute(params![
            row.campaign_id,
            person,
            occurrence,
            best.error_code,
            detail,
            now
        ])?;
    }
    Ok(settled)
}

struct BestStatus {
    message_id: String,
    status: String,
    occurred_at: String,
    error_code: Option<i64>,
    error_detail: Option<String>,
    recipient: Option<String>,
    rank: i64,
}

/// A journal row `j` whose message the provider has reported on: a status matched
/// by message id, or by the callback data the send put on it. Constant SQL text,
/// for the queries that settle such rows and the dry run that counts them.
pub(super) const REPORTED_ON: &str = "\
    (EXISTS (SELECT 1 FROM message_statuses s WHERE s.message_id = j.message_id)
     OR EXISTS (SELECT 1 FROM message_statuses s
                WHERE s.campaign_id = j.campaign_id AND s.person_id = j.person_id
                  AND s.occurrence = j.occurrence))";

/// Resolves a campaign's rows held in doubt whose message the provider has since
/// reported on (matched by message id or by the callback data the send put on it):
/// they were sent, so they become `accepted`. Returns how many were resolved.
///
/// The webhook server does this as statuses arrive; call it before deciding what
/// to resend, to catch statuses that arrived while the row was still in flight.
pub fn resolve_in_doubt(conn: &Connection, campaign_id: &str) -> rusqlite::Result<u64> {
    let keys: Vec<RowKey> = {
        let mut stmt = conn.prepare(&format!(
            "SELECT person_id, occurrence FROM journal j
             WHERE campaign_id = ?1 AND state = 'in_doubt' AND {REPORTED_ON}"
        ))?;
        stmt.query_map(params![campaign_id], |r| {
            Ok(RowKey {
                person: r.get(0)?,
                occurrence: r.get(1)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?
    };
    if keys.is_empty() {
        return Ok(0);
    }
    let now = clock::now_string();
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    let mut resolved = 0;
    for key in keys {
        let row = RowRef {
            campaign_id: campaign_id.to_owned(),
            key,
        };
        if settle(&tx, &row, None, &now)? == Settled::Resolved {
            resolved += 1;
        }
    }
    tx.commit()?;
    Ok(resolved)
}

/// An accepted message that the provider later reported it did not deliver for a
/// reason that passes (Meta's 131049, the per-user marketing limit): the row goes
/// back to `deferred`, due at `until`, with one more deferral counted; once it was
/// deferred `max_deferrals` times, it fails instead, with the reason. A row that was
/// already deferred (or moved on) is left as it is, so a status delivered twice
/// defers once. Returns whether the row changed.
pub fn defer_accepted(
    conn: &Connection,
    row: &RowRef,
    until: &str,
    code: Option<i64>,
    detail: &str,
    max_deferrals: u32,
    now: &str,
) -> rusqlite::Result<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE journal SET
                 state = CASE WHEN deferrals + 1 >= ?8 THEN 'failed' ELSE 'deferred' END,
                 retry_at = CASE WHEN deferrals + 1 >= ?8 THEN NULL ELSE ?4 END,
                 error_code = ?5,
                 error_detail = CASE WHEN deferrals + 1 >= ?8
                     THEN 'given up after ' || (deferrals + 1) || ' deferrals: ' || ?6 ELSE ?6 END,
                 deferrals = deferrals + 1, updated_at = ?7
             WHERE campaign_id = ?1 AND person_id = ?2 AND occurrence = ?3 AND state = 'accepted'",
        )?
        .execute(params![
            row.campaign_id,
            row.key.person,
            row.key.occurrence,
            until,
            code,
            detail,
            now,
            i64::from(max_deferrals)
        ])?;
    Ok(changed > 0)
}

/// Halts a campaign from outside its run (a webhook reporting its template paused,
/// say): its next claim stops it, and later runs refuse until `--resume-halted`.
/// The first reason stands. Returns whether the campaign was running unhalted.
pub fn halt_campaign(
    conn: &Connection,
    campaign_id: &str,
    reason: &str,
    now: &str,
) -> rusqlite::Result<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE campaigns SET halted_at = ?2, halt_reason = ?3
             WHERE id = ?1 AND halted_at IS NULL",
        )?
        .execute(params![campaign_id, now, reason])?;
    Ok(changed > 0)
}
