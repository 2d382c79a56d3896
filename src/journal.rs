//! The send journal: one row per (campaign, recipient) in SQLite, so a crash, a kill
//! or a re-run never messages anyone twice.
//!
//! A row is `planned` when the plan is written, `in_flight` once the intent to send
//! it is durable (before the request is made), then `accepted`, `failed`,
//! `opted_out`, `deferred` (retry later) or `in_doubt` (the request may have gone
//! out). Rows left `in_flight` by a crash become `in_doubt` on the next run and are
//! held until the operator decides.

use std::collections::BTreeMap;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;
use thiserror::Error;

use crate::campaign::Campaign;
use crate::clock;
use crate::consent::{self, Action, ConsentIndex, NewEvent, Purpose, RecordedVia};
use crate::gate::Gate;
use crate::phone::E164;
use crate::plan::{ConsentGate, Recipient};

/// Why a campaign cannot be sent (again) as it is.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum JournalError {
    #[error(
        "campaign `{id}` was first sent on {since} with a different template or parameter \
         mapping; recipients already messaged got the old message. Give this version a new \
         campaign.id"
    )]
    ContentChanged { id: String, since: String },
    #[error(
        "campaign `{id}` halted on {at}: {reason}. Fix the cause, then run again with \
         --resume-halted"
    )]
    Halted {
        id: String,
        at: String,
        reason: String,
    },
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// A row claimed for sending: its intent is durable.
#[derive(Debug, Clone)]
pub struct Job {
    pub key: u64,
    pub phone: E164,
    pub values: Vec<String>,
    pub attempts: u32,
}

/// What happened to one claimed row, as the journal records it.
#[derive(Debug, Clone)]
pub enum Disposition {
    Accepted {
        message_id: Option<String>,
        wa_id: Option<String>,
        status: Option<String>,
    },
    Failed {
        code: Option<i64>,
        detail: String,
    },
    /// Not sent; try again at this time.
    Deferred {
        code: Option<i64>,
        detail: String,
        retry_in: Duration,
    },
    /// The provider says the person stopped these messages: also recorded in the ledger.
    OptedOut {
        /// What the person stopped: marketing (Meta's 131050) or everything (a STOP).
        purpose: Purpose,
        code: Option<i64>,
        detail: String,
    },
    InDoubt {
        /// A 5xx may carry a provider code worth keeping.
        code: Option<i64>,
        detail: String,
    },
}

/// Rows claimed by [`Journal::claim`], and what else it found.
#[derive(Debug, Default)]
pub struct Claimed {
    pub jobs: Vec<Job>,
    /// Rows not sent because an opt-out arrived after the plan was made.
    pub opted_out: u64,
    /// Rows of a session campaign whose window closed before their turn: failed.
    pub window_closed: u64,
    /// Nothing is ready now, but deferred rows become ready at this time.
    pub next_retry_at: Option<String>,
}

/// Rows by state for a campaign: every row that was ever sent or settled, and the
/// rows still to send in its current plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub planned: u64,
    pub in_flight: u64,
    pub accepted: u64,
    pub failed: u64,
    pub in_doubt: u64,
    pub deferred: u64,
    pub opted_out: u64,
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.planned
            + self.in_flight
            + self.accepted
            + self.failed
            + self.in_doubt
            + self.deferred
            + self.opted_out
    }

    /// Rows a run would still send.
    pub fn remaining(&self) -> u64 {
        self.planned + self.deferred
    }
}

/// The campaign as the journal knows it.
#[derive(Debug, Clone)]
pub struct CampaignRecord {
    pub id: String,
    pub plan_run: i64,
    pub created_at: String,
}

/// One journal row, for `status`.
#[derive(Debug, Clone, Serialize)]
pub struct JournalRow {
    pub phone: String,
    pub line: i64,
    pub state: String,
    pub attempts: i64,
    pub message_id: Option<String>,
    pub error_code: Option<i64>,
    pub error_detail: Option<String>,
    pub intent_at: Option<String>,
    pub outcome_at: Option<String>,
    pub updated_at: String,
}

/// The journal over an open database connection.
pub struct Journal {
    conn: Connection,
    campaign_id: String,
    plan_run: i64,
    /// The consent ledger as of `consent_seen`; refreshed before every claim so an
    /// opt-out recorded while the campaign runs wins.
    consent: ConsentIndex,
    consent_seen: i64,
    /// A session campaign: each row also needs its customer-service window open at
    /// the moment its intent is written.
    session: bool,
    /// Whether a provider's opt-out answer goes into the consent ledger. The
    /// simulator's made-up opt-outs must never block real people.
    record_opt_outs: bool,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("campaign_id", &self.campaign_id)
            .field("plan_run", &self.plan_run)
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// Registers the campaign (or checks it against its earlier runs) and starts a
    /// new planning run. Rows a crash left in flight become in doubt.
    pub fn begin(
        conn: Connection,
        campaign: &Campaign,
        gate: Gate,
        resume_halted: bool,
    ) -> Result<(Journal, u64), JournalError> {
        let now = clock::now_string();
        let fingerprint = campaign.content_fingerprint();
        let tx = rusqlite::Transaction::new_unchecked(&conn, TransactionBehavior::Immediate)?;
        let existing: Option<PriorRun> = tx
            .query_row(
                "SELECT fingerprint, created_at, plan_run, halted_at, halt_reason
                 FROM campaigns WHERE id = ?1",
                params![campaign.id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        let plan_run = match existing {
            None => {
                tx.execute(
                    "INSERT INTO campaigns (id, fingerprint, template, language, category, provider, created_at, plan_run)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1)",
                    params![
                        campaign.id,
                        fingerprint,
                        campaign.template.name,
                        campaign.template.language,
                        campaign.category.as_str(),
                        campaign.provider.kind(),
                        now
                    ],
                )?;
                1
            }
            Some((old, created_at, plan_run, halted_at, halt_reason)) => {
                if old != fingerprint {
                    let messaged: i64 = tx.query_row(
                        "SELECT count(*) FROM journal WHERE campaign_id = ?1 AND state <> 'planned'",
                        params![campaign.id],
                        |r| r.get(0),
                    )?;
                    if messaged > 0 {
                        return Err(JournalError::ContentChanged {
                            id: campaign.id.clone(),
                            since: created_at,
                        });
                    }
                    // Nobody was messaged yet: the new content simply replaces the old.
                    tx.execute(
                        "UPDATE campaigns SET fingerprint = ?2, template = ?3, language = ?4 WHERE id = ?1",
                        params![campaign.id, fingerprint, campaign.template.name, campaign.template.language],
                    )?;
                }
                // A halt is lifted only by `resume`, once the operator confirmed the run.
                if let Some(at) = halted_at
                    && !resume_halted
                {
                    return Err(JournalError::Halted {
                        id: campaign.id.clone(),
                        at,
                        reason: halt_reason.unwrap_or_default(),
                    });
                }
                tx.execute(
                    "UPDATE campaigns SET plan_run = plan_run + 1 WHERE id = ?1",
                    params![campaign.id],
                )?;
                plan_run + 1
            }
        };
        let recovered = tx.execute(
            "UPDATE journal SET state = 'in_doubt', updated_at = ?2,
                 error_detail = 'the process stopped while this message was in flight'
             WHERE campaign_id = ?1 AND state = 'in_flight'",
            params![campaign.id, now],
        )? as u64;
        // The ledger as the gate loaded it: events recorded since (while the plan was
        // being built, say) are applied at the first claim.
        let consent_seen = gate.consent_seen;
        tx.commit()?;
        Ok((
            Journal {
                conn,
                campaign_id: campaign.id.clone(),
                plan_run,
                session: gate.windows.is_some(),
                record_opt_outs: !matches!(
                    campaign.provider,
                    crate::campaign::ProviderConfig::Simulator(_)
                ),
                consent: gate.consent,
                consent_seen,
            },
            recovered,
        ))
    }

    pub fn campaign_id(&self) -> &str {
        &self.campaign_id
    }

    /// Writes a batch of the plan. Rows already journaled keep their state; rows not
    /// yet sent take the latest values.
    pub fn plan(&mut self, batch: &[(u64, Recipient)]) -> rusqlite::Result<()> {
        let now = clock::now_string();
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO journal (campaign_id, contact_key, phone, line, seq, plan_run, params, state, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'planned', ?8)
                 ON CONFLICT (campaign_id, contact_key) DO UPDATE SET
                     plan_run = excluded.plan_run,
                     line = excluded.line,
                     seq = excluded.seq,
                     params = CASE WHEN state IN ('planned', 'deferred') THEN excluded.params ELSE params END",
            )?;
            for (seq, recipient) in batch {
                let params_json = serde_json::to_string(&recipient.values)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                insert.execute(params![
                    self.campaign_id,
                    recipient.phone.digits() as i64,
                    recipient.phone.to_string(),
                    recipient.line as i64,
                    *seq as i64,
                    self.plan_run,
                    params_json,
                    now
                ])?;
            }
        }
        tx.commit()
    }

    /// Lifts a halt, once the operator confirmed the run with `--resume-halted`.
    pub fn resume(&mut self) -> rusqlite::Result<()> {
        self.conn.execute(
            "UPDATE campaigns SET halted_at = NULL, halt_reason = NULL WHERE id = ?1",
            params![self.campaign_id],
        )?;
        Ok(())
    }

    /// Settles rows held in doubt that a delivery status has since reported on: they
    /// were sent. Returns how many.
    pub fn settle_in_doubt_from_statuses(&mut self) -> rusqlite::Result<u64> {
        crate::webhook::history::resolve_in_doubt(&self.conn, &self.campaign_id)
    }

    /// Puts rows held in doubt back in the plan: the operator chose to resend them.
    pub fn release_in_doubt(&mut self) -> rusqlite::Result<u64> {
        Ok(self.conn.execute(
            "UPDATE journal SET state = 'planned', updated_at = ?3
             WHERE campaign_id = ?1 AND plan_run = ?2 AND state = 'in_doubt'",
            params![self.campaign_id, self.plan_run, clock::now_string()],
        )? as u64)
    }

    pub fn counts(&self) -> rusqlite::Result<Counts> {
        counts(&self.conn, &self.campaign_id, Some(self.plan_run))
    }

    /// Claims up to `limit` rows for sending (due retries first, then planned rows,
    /// of which at most `new_limit`), re-checking consent, and records the intent
    /// durably, together with `pending` outcomes, in one transaction.
    pub fn claim(
        &mut self,
        limit: usize,
        new_limit: usize,
        pending: &[(u64, Disposition)],
    ) -> rusqlite::Result<Claimed> {
        let now = clock::now_string();
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        record_in(&tx, &self.campaign_id, self.record_opt_outs, pending, &now)?;
        refresh_consent(&tx, &mut self.consent, &mut self.consent_seen)?;
        let mut claimed = Claimed::default();
        let mut candidates = Vec::new();
        {
            // INDEXED BY: left to itself, SQLite walks every row of the campaign by
            // primary key to sort by retry_at, on every claim (a million-row scan
            // per claim on a million-recipient campaign). Deferred rows are few.
            let mut due = tx.prepare_cached(
                "SELECT contact_key, params, attempts FROM journal INDEXED BY journal_by_state
                 WHERE campaign_id = ?1 AND state = 'deferred' AND plan_run = ?2 AND retry_at <= ?3
                 ORDER BY retry_at, seq LIMIT ?4",
            )?;
            let rows = due.query_map(
                params![self.campaign_id, self.plan_run, now, limit as i64],
                job_columns,
            )?;
            for row in rows {
                candidates.push(row?);
            }
            let room = limit.saturating_sub(candidates.len()).min(new_limit);
            if room > 0 {
                let mut planned = tx.prepare_cached(
                    "SELECT contact_key, params, attempts FROM journal
                     WHERE campaign_id = ?1 AND state = 'planned' AND plan_run = ?2
                     ORDER BY seq LIMIT ?3",
                )?;
                let rows = planned.query_map(
                    params![self.campaign_id, self.plan_run, room as i64],
                    job_columns,
                )?;
                for row in rows {
                    candidates.push(row?);
                }
            }
        }
        {
            let mut in_flight = tx.prepare_cached(
                "UPDATE journal SET state = 'in_flight', attempts = attempts + 1, intent_at = ?3,
                     updated_at = ?3, retry_at = NULL
                 WHERE campaign_id = ?1 AND contact_key = ?2",
            )?;
            let mut blocked = tx.prepare_cached(
                "UPDATE journal SET state = 'opted_out', error_detail = ?3, updated_at = ?4
                 WHERE campaign_id = ?1 AND contact_key = ?2",
            )?;
            let mut closed = tx.prepare_cached(
                "UPDATE journal SET state = 'failed', error_detail = ?3, outcome_at = ?4, updated_at = ?4
                 WHERE campaign_id = ?1 AND contact_key = ?2",
            )?;
            for (key, values, attempts) in candidates {
                let Some(phone) = E164::from_digits(&key.to_string()) else {
                    continue;
                };
                if let Err(reason) = self.consent.check(phone) {
                    blocked.execute(params![
                        self.campaign_id,
                        key as i64,
                        format!("{reason} (recorded after the plan was made)"),
                        now
                    ])?;
                    claimed.opted_out += 1;
                    continue;
                }
                if self.session && !crate::webhook::window::window_open(&tx, phone, clock::now())? {
                    closed.execute(params![
                        self.campaign_id,
                        key as i64,
                        "no open customer-service window: it closed before this message's turn",
                        now
                    ])?;
                    claimed.window_closed += 1;
                    continue;
                }
                in_flight.execute(params![self.campaign_id, key as i64, now])?;
                claimed.jobs.push(Job {
                    key,
                    phone,
                    values,
                    attempts: attempts + 1,
                });
            }
        }
        if claimed.jobs.is_empty() {
            claimed.next_retry_at = tx
                .prepare_cached(
                    "SELECT min(retry_at) FROM journal INDEXED BY journal_by_state
                     WHERE campaign_id = ?1 AND state = 'deferred' AND plan_run = ?2",
                )?
                .query_row(params![self.campaign_id, self.plan_run], |r| r.get(0))?;
        }
        tx.commit()?;
        Ok(claimed)
    }

    /// Records outcomes durably.
    pub fn record(&mut self, outcomes: &[(u64, Disposition)]) -> rusqlite::Result<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let now = clock::now_string();
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        record_in(&tx, &self.campaign_id, self.record_opt_outs, outcomes, &now)?;
        tx.commit()
    }

    /// Marks the campaign halted: later runs refuse until `--resume-halted`.
    pub fn halt(&mut self, reason: &str) -> rusqlite::Result<()> {
        self.conn.execute(
            "UPDATE campaigns SET halted_at = ?2, halt_reason = ?3 WHERE id = ?1",
            params![self.campaign_id, clock::now_string(), reason],
        )?;
        Ok(())
    }
}

type Candidate = (u64, Vec<String>, u32);
/// fingerprint, created_at, plan_run, halted_at, halt_reason
type PriorRun = (String, String, i64, Option<String>, Option<String>);
/// When and why a campaign halted.
pub type HaltRecord = (String, String);

fn job_columns(row: &rusqlite::Row<'_>) -> rusqlite::Result<Candidate> {
    let key: i64 = row.get(0)?;
    let params: String = row.get(1)?;
    let values: Vec<String> = serde_json::from_str(&params).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok((key as u64, values, row.get(2)?))
}

/// Brings the in-memory consent index up to date with events recorded since it was
/// loaded (by the webhook server, an operator, or this campaign).
fn refresh_consent(
    conn: &Connection,
    index: &mut ConsentIndex,
    seen: &mut i64,
) -> rusqlite::Result<()> {
    let mut stmt =
        conn.prepare_cached("SELECT DISTINCT subject FROM consent_events WHERE id > ?1")?;
    let subjects: Vec<String> = stmt
        .query_map(params![*seen], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if subjects.is_empty() {
        return Ok(());
    }
    let ledger = consent::Ledger::new(conn);
    for subject in subjects {
        if let Some(phone) = E164::from_digits(&subject) {
            let standing = ledger.standing(phone, index.purpose())?;
            index.set(phone, standing);
        }
    }
    *seen = conn.query_row("SELECT coalesce(max(id), 0) FROM consent_events", [], |r| {
        r.get(0)
    })?;
    Ok(())
}

/// A disposition as the journal row's columns.
#[derive(Default)]
struct Columns<'a> {
    state: &'static str,
    message_id: Option<&'a str>,
    wa_id: Option<&'a str>,
    status: Option<&'a str>,
    code: Option<i64>,
    detail: Option<&'a str>,
    retry_at: Option<String>,
}

impl<'a> Columns<'a> {
    fn error(state: &'static str, code: Option<i64>, detail: &'a str) -> Self {
        Columns {
            state,
            code,
            detail: Some(detail),
            ..Columns::default()
        }
    }
}

fn record_in(
    conn: &Connection,
    campaign_id: &str,
    record_opt_outs: bool,
    outcomes: &[(u64, Disposition)],
    now: &str,
) -> rusqlite::Result<()> {
    let mut update = conn.prepare_cached(
        "UPDATE journal SET state = ?3, message_id = coalesce(?4, message_id), wa_id = coalesce(?5, wa_id),
             message_status = coalesce(?6, message_status), error_code = ?7, error_detail = ?8,
             retry_at = ?9, outcome_at = ?10, updated_at = ?10
         WHERE campaign_id = ?1 AND contact_key = ?2",
    )?;
    for (key, disposition) in outcomes {
        let none = Columns::default();
        let c = match disposition {
            Disposition::Accepted {
                message_id,
                wa_id,
                status,
            } => Columns {
                state: "accepted",
                message_id: message_id.as_deref(),
                wa_id: wa_id.as_deref(),
                status: status.as_deref(),
                ..none
            },
            Disposition::Failed { code, detail } => Columns::error("failed", *code, detail),
            Disposition::Deferred {
                code,
                detail,
                retry_in,
            } => Columns {
                retry_at: Some(retry_at(clock::now(), *retry_in)),
                ..Columns::error("deferred", *code, detail)
            },
            Disposition::InDoubt { code, detail } => Columns::error("in_doubt", *code, detail),
            Disposition::OptedOut { code, detail, .. } => {
                Columns::error("opted_out", *code, detail)
            }
        };
        update.execute(params![
            campaign_id,
            *key as i64,
            c.state,
            c.message_id,
            c.wa_id,
            c.status,
            c.code,
            c.detail,
            c.retry_at,
            now
        ])?;
        if let Disposition::OptedOut {
            purpose,
            code,
            detail,
        } = disposition
            && record_opt_outs
            && let Some(phone) = E164::from_digits(&key.to_string())
        {
            let event = NewEvent {
                subject: phone,
                purpose: *purpose,
                action: Action::OptOut,
                occurred_at: now.to_owned(),
                method: format!("provider_error_{}", code.unwrap_or_default()),
                recorded_via: RecordedVia::Campaign,
                source: format!("campaign {campaign_id}: send to {phone} refused: {detail}"),
                evidence: None,
                notice: None,
                actor: format!("wacampaign send {campaign_id}"),
                dedupe_key: Some(format!("campaign:{campaign_id}:{key}:opt_out")),
            };
            consent::append_in(conn, &event)?;
        }
    }
    Ok(())
}

/// When a deferred row may be sent again, as the journal stores it: to the second,
/// rounded up. Rounding down would let a `Retry-After: 2` be retried after barely
/// one second, since claims compare it with the current time, also to the second.
fn retry_at(now: chrono::DateTime<chrono::Utc>, retry_in: Duration) -> String {
    use chrono::SubsecRound as _;
    // A wait too long to represent is capped at a year rather than panicking.
    let year = chrono::Duration::days(365);
    let due = chrono::Duration::from_std(retry_in)
        .ok()
        .filter(|d| *d < year)
        .map_or(now + year, |d| now + d);
    let whole = due.trunc_subsecs(0);
    clock::format(if whole < due {
        whole + chrono::Duration::seconds(1)
    } else {
        whole
    })
}

/// Rows by state for a campaign (its current plan only when `plan_run` is given).
pub fn counts(
    conn: &Connection,
    campaign_id: &str,
    plan_run: Option<i64>,
) -> rusqlite::Result<Counts> {
    let mut stmt = conn.prepare_cached(
        "SELECT state, count(*) FROM journal WHERE campaign_id = ?1
           AND (?2 IS NULL OR plan_run = ?2 OR state NOT IN ('planned', 'deferred'))
         GROUP BY state",
    )?;
    let mut counts = Counts::default();
    let rows = stmt.query_map(params![campaign_id, plan_run], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
    })?;
    for row in rows {
        let (state, n) = row?;
        match state.as_str() {
            "planned" => counts.planned = n,
            "in_flight" => counts.in_flight = n,
            "accepted" => counts.accepted = n,
            "failed" => counts.failed = n,
            "in_doubt" => counts.in_doubt = n,
            "deferred" => counts.deferred = n,
            "opted_out" => counts.opted_out = n,
            _ => {}
        }
    }
    Ok(counts)
}

/// The campaign's record, if it was ever sent.
pub fn campaign_record(
    conn: &Connection,
    campaign_id: &str,
) -> rusqlite::Result<Option<(CampaignRecord, Option<HaltRecord>)>> {
    conn.query_row(
        "SELECT id, plan_run, created_at, halted_at, halt_reason FROM campaigns WHERE id = ?1",
        params![campaign_id],
        |r| {
            let halted: Option<String> = r.get(3)?;
            let reason: Option<String> = r.get(4)?;
            Ok((
                CampaignRecord {
                    id: r.get(0)?,
                    plan_run: r.get(1)?,
                    created_at: r.get(2)?,
                },
                halted.map(|at| (at, reason.unwrap_or_default())),
            ))
        },
    )
    .optional()
}

/// Failed rows by error code.
pub fn failures_by_code(
    conn: &Connection,
    campaign_id: &str,
    plan_run: i64,
) -> rusqlite::Result<BTreeMap<String, u64>> {
    let mut stmt = conn.prepare(
        "SELECT coalesce(CAST(error_code AS TEXT), 'none'), count(*) FROM journal
         WHERE campaign_id = ?1 AND (plan_run = ?2 OR state NOT IN ('planned', 'deferred'))
           AND state IN ('failed', 'opted_out', 'deferred')
           AND (error_code IS NOT NULL OR state = 'failed')
         GROUP BY 1 ORDER BY 2 DESC",
    )?;
    let rows = stmt.query_map(params![campaign_id, plan_run], |r| {
        Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
    })?;
    rows.collect()
}

/// Every row of a campaign's current plan (or only those in `state`), in plan order.
pub fn rows(
    conn: &Connection,
    campaign_id: &str,
    plan_run: i64,
    state: Option<&str>,
    mut each: impl FnMut(JournalRow) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut stmt = conn.prepare(
        "SELECT phone, line, state, attempts, message_id, error_code, error_detail, intent_at, outcome_at, updated_at
         FROM journal WHERE campaign_id = ?1 AND (plan_run = ?2 OR state NOT IN ('planned', 'deferred'))
           AND (?3 IS NULL OR state = ?3)
         ORDER BY seq",
    )?;
    let mut rows = stmt.query(params![campaign_id, plan_run, state])?;
    while let Some(r) = rows.next()? {
        each(JournalRow {
            phone: r.get(0)?,
            line: r.get(1)?,
            state: r.get(2)?,
            attempts: r.get(3)?,
            message_id: r.get(4)?,
            error_code: r.get(5)?,
            error_detail: r.get(6)?,
            intent_at: r.get(7)?,
            outcome_at: r.get(8)?,
            updated_at: r.get(9)?,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_is_never_due_before_its_wait_is_over() {
        let at = |t: &str, ms: u64| {
            retry_at(
                clock::parse(t).unwrap() + chrono::Duration::milliseconds(900),
                Duration::from_millis(ms),
            )
        };
        // 10:00:00.900 + 2 s is 10:00:02.900: due at 10:00:03, not 10:00:02.
        assert_eq!(at("2026-11-21T10:00:00Z", 2000), "2026-11-21T10:00:03Z");
        assert_eq!(at("2026-11-21T10:00:00Z", 100), "2026-11-21T10:00:01Z");
        assert_eq!(
            retry_at(
                clock::parse("2026-11-21T10:00:00Z").unwrap(),
                Duration::from_secs(2)
            ),
            "2026-11-21T10:00:02Z"
        );
        assert_eq!(
            at("2026-11-21T10:00:00Z", u64::MAX),
            "2027-11-21T10:00:01Z",
            "capped, not a panic"
        );
    }
}
