//! What the journal tells `status`, `send`'s summary and the reports. Read-only.

use std::collections::{BTreeMap, HashMap};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::State;

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
    pub expired: u64,
}

impl Counts {
    pub fn total(&self) -> u64 {
        State::ALL.into_iter().map(|s| self.get(s)).sum()
    }

    /// Rows a run would still send.
    pub fn remaining(&self) -> u64 {
        self.planned + self.deferred
    }

    pub fn get(&self, state: State) -> u64 {
        match state {
            State::Planned => self.planned,
            State::InFlight => self.in_flight,
            State::Accepted => self.accepted,
            State::Failed => self.failed,
            State::InDoubt => self.in_doubt,
            State::Deferred => self.deferred,
            State::OptedOut => self.opted_out,
            State::Expired => self.expired,
        }
    }

    /// Counts `n` more rows in `state`.
    pub fn add(&mut self, state: State, n: u64) {
        *self.slot(state) += n;
    }

    fn slot(&mut self, state: State) -> &mut u64 {
        match state {
            State::Planned => &mut self.planned,
            State::InFlight => &mut self.in_flight,
            State::Accepted => &mut self.accepted,
            State::Failed => &mut self.failed,
            State::InDoubt => &mut self.in_doubt,
            State::Deferred => &mut self.deferred,
            State::OptedOut => &mut self.opted_out,
            State::Expired => &mut self.expired,
        }
    }
}

/// The campaign as the journal knows it.
#[derive(Debug, Clone)]
pub struct CampaignRecord {
    pub id: String,
    pub plan_run: i64,
    pub created_at: String,
}

/// When and why a campaign halted.
pub type HaltRecord = (String, String);

/// One journal row, for `status`.
#[derive(Debug, Clone, Serialize)]
pub struct JournalRow {
    pub phone: String,
    pub occurrence: String,
    pub line: i64,
    pub state: State,
    pub attempts: i64,
    pub message_id: Option<String>,
    pub error_code: Option<i64>,
    pub error_detail: Option<String>,
    pub intent_at: Option<String>,
    pub outcome_at: Option<String>,
    pub updated_at: String,
}

/// Rows by state for a campaign (its current plan only when `plan_run` is given).
pub fn counts(
    conn: &Connection,
    campaign_id: &str,
    plan_run: Option<i64>,
) -> rusqlite::Result<Counts> {
    // Planned rows a running (or killed) run claimed count as in flight (`claims`).
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT ",
        super::claims::effective_state_of!("j", "c"),
        ", count(*) FROM campaigns c CROSS JOIN journal j
         WHERE c.id = ?1 AND j.campaign_id = ?1
           AND (?2 IS NULL OR j.plan_run = ?2 OR j.state NOT IN ('planned', 'deferred'))
           AND j.occurrence NOT GLOB 'test:*'
         GROUP BY 1"
    ))?;
    let mut counts = Counts::default();
    let rows = stmt.query_map(params![campaign_id, plan_run], |r| {
        Ok((r.get::<_, State>(0)?, r.get::<_, i64>(1)? as u64))
    })?;
    for row in rows {
        let (state, n) = row?;
        *counts.slot(state) = n;
    }
    add_pruned(conn, campaign_id, &mut counts)?;
    Ok(counts)
}

/// Adds the rows `prune` removed to counts tallied from the journal, by state (only
/// settled rows are pruned).
pub fn add_pruned(
    conn: &Connection,
    campaign_id: &str,
    counts: &mut Counts,
) -> rusqlite::Result<()> {
    let mut pruned = conn.prepare_cached(
        "SELECT substr(what, 9), count FROM pruned_counts
         WHERE campaign_id = ?1 AND what LIKE 'journal:%'",
    )?;
    let rows = pruned.query_map(params![campaign_id], |r| {
        Ok((r.get::<_, State>(0)?, r.get::<_, i64>(1)? as u64))
    })?;
    for row in rows {
        let (state, n) = row?;
        *counts.slot(state) += n;
    }
    Ok(())
}

/// Test sends (`send --to`) of a campaign by state: kept apart from its totals,
/// which never count them (their occurrences start with `test:`).
pub fn test_sends(conn: &Connection, campaign_id: &str) -> rusqlite::Result<Counts> {
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT ",
        super::claims::effective_state!("j"),
        ", count(*) FROM journal j WHERE j.campaign_id = ?1
           AND j.occurrence GLOB 'test:*' GROUP BY 1"
    ))?;
    let mut counts = Counts::default();
    let rows = stmt.query_map(params![campaign_id], |r| {
        Ok((r.get::<_, State>(0)?, r.get::<_, i64>(1)? as u64))
    })?;
    for row in rows {
        let (state, n) = row?;
        *counts.slot(state) = n;
    }
    Ok(counts)
}

/// Occurrences of the current plan that earlier runs already served (sent or
/// settled): a daily run on a file that still lists them counts them here.
pub fn already_served(
    conn: &Connection,
    campaign_id: &str,
    plan_run: i64,
) -> rusqlite::Result<u64> {
    conn.prepare_cached(
        "SELECT count(*) FROM journal WHERE campaign_id = ?1 AND plan_run = ?2
           AND state IN ('accepted', 'failed', 'opted_out', 'expired')",
    )?
    .query_row(params![campaign_id, plan_run], |r| {
        r.get::<_, i64>(0).map(|n| n as u64)
    })
}

/// A figure `prune` folded away for a campaign (0 when none).
pub fn pruned(conn: &Connection, campaign_id: &str, what: &str) -> rusqlite::Result<u64> {
    conn.prepare_cached("SELECT count FROM pruned_counts WHERE campaign_id = ?1 AND what = ?2")?
        .query_row(params![campaign_id, what], |r| r.get::<_, i64>(0))
        .optional()
        .map(|n| n.unwrap_or(0) as u64)
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

/// Accepted messages the Cloud API answered `message_status:
/// held_for_quality_assessment`: Meta holds them while it judges the template's
/// quality, and may not deliver them.
pub fn held_for_quality(conn: &Connection, campaign_id: &str) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT count(*) FROM journal WHERE campaign_id = ?1
           AND message_status = 'held_for_quality_assessment'",
        params![campaign_id],
        |r| r.get::<_, i64>(0).map(|n| n as u64),
    )
}

/// Failed (or refused) rows by error code.
pub fn failures_by_code(
    conn: &Connection,
    campaign_id: &str,
    plan_run: i64,
) -> rusqlite::Result<BTreeMap<String, u64>> {
    let mut stmt = conn.prepare(
        "SELECT coalesce(CAST(error_code AS TEXT), 'none'), count(*) FROM journal
         WHERE campaign_id = ?1 AND (plan_run = ?2 OR state NOT IN ('planned', 'deferred'))
           AND state IN ('failed', 'opted_out', 'deferred', 'expired')
           AND (error_code IS NOT NULL OR state = 'failed')
           AND occurrence NOT GLOB 'test:*'
         GROUP BY 1 ORDER BY 2 DESC",
    )?;
    let rows = stmt.query_map(params![campaign_id, plan_run], |r| {
        Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
    })?;
    let mut by_code: BTreeMap<String, u64> = rows.collect::<rusqlite::Result<_>>()?;
    let mut pruned = conn.prepare_cached(
        "SELECT substr(what, 6), count FROM pruned_counts
         WHERE campaign_id = ?1 AND what LIKE 'code:%'",
    )?;
    for row in pruned.query_map(params![campaign_id], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
    })? {
        let (code, n) = row?;
        *by_code.entry(code).or_default() += n;
    }
    Ok(by_code)
}

/// Every row of a campaign's current plan (or only those in `state`), in plan order.
pub fn rows(
    conn: &Connection,
    campaign_id: &str,
    plan_run: i64,
    state: Option<State>,
    mut each: impl FnMut(JournalRow) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    // A planned row under the campaign's mark is in flight since the mark's claim,
    // its attempt counted (`claims`).
    let mut stmt = conn.prepare(concat!(
        "SELECT coalesce(phone, bsuid), occurrence, line, effective, effective_attempts,
                message_id, error_code, error_detail, effective_intent_at, outcome_at, updated_at
         FROM (SELECT j.phone, j.bsuid, j.occurrence, j.line, j.message_id, j.error_code,
                      j.error_detail, j.outcome_at, j.updated_at, j.seq, ",
        super::claims::effective_state_of!("j", "c"),
        " AS effective, ",
        super::claims::effective_attempts_of!("j", "c"),
        " AS effective_attempts, ",
        super::claims::effective_intent_at_of!("j", "c"),
        " AS effective_intent_at
               FROM campaigns c CROSS JOIN journal j WHERE c.id = ?1 AND j.campaign_id = ?1
               AND (j.plan_run = ?2 OR j.state NOT IN ('planned', 'deferred'))
               AND j.occurrence NOT GLOB 'test:*')
         WHERE ?3 IS NULL OR effective = ?3
         ORDER BY seq"
    ))?;
    let mut rows = stmt.query(params![campaign_id, plan_run, state])?;
    while let Some(r) = rows.next()? {
        each(JournalRow {
            phone: r.get(0)?,
            occurrence: r.get(1)?,
            line: r.get(2)?,
            state: r.get(3)?,
            attempts: r.get(4)?,
            message_id: r.get(5)?,
            error_code: r.get(6)?,
            error_detail: r.get(7)?,
            intent_at: r.get(8)?,
            outcome_at: r.get(9)?,
            updated_at: r.get(10)?,
        })?;
    }
    Ok(())
}

/// Delivery progress of a campaign's accepted messages, by the best status each
/// reached: (accepted, with any status, delivered, read, failed after acceptance).
pub fn accepted_by_best_status(
    conn: &Connection,
    campaign_id: &str,
) -> rusqlite::Result<(u64, u64, u64, u64, u64)> {
    // The statuses as folded onto each row (see `fold`): one row per message.
    conn.prepare_cached(
        "SELECT count(*), count(status_rank), coalesce(sum(status_rank IN (2, 3)), 0),
                coalesce(sum(status_rank = 3), 0), coalesce(sum(status_rank = 4), 0)
         FROM journal WHERE campaign_id = ?1 AND state = 'accepted'
           AND occurrence NOT GLOB 'test:*'",
    )?
    .query_row(params![campaign_id], |r| {
        let n = |i| r.get::<_, i64>(i).map(|v| v as u64);
        Ok((n(0)?, n(1)?, n(2)?, n(3)?, n(4)?))
    })
    .and_then(|(accepted, with_status, delivered, read, failed)| {
        // Accepted rows `prune` removed, by the best status each had reached.
        let p = |what| pruned(conn, campaign_id, what);
        Ok((
            accepted + p("delivery:accepted")?,
            with_status + p("delivery:with_status")?,
            delivered + p("delivery:delivered")?,
            read + p("delivery:read")?,
            failed + p("delivery:failed")?,
        ))
    })
}

/// What Meta's status webhooks said each of a campaign's messages bills as (the
/// latest `pricing` folded onto its row), test sends included: they are billed too.
/// Calls `each` with (the number, billable, category, type) of every priced message.
pub fn priced(
    conn: &Connection,
    campaign_id: &str,
    mut each: impl FnMut(Option<String>, Option<bool>, Option<String>, Option<String>),
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT coalesce(phone, wa_id), billable, pricing_category, pricing_type FROM journal
         WHERE campaign_id = ?1 AND (billable IS NOT NULL OR pricing_category IS NOT NULL)",
    )?;
    let mut rows = stmt.query(params![campaign_id])?;
    while let Some(r) = rows.next()? {
        each(r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
    }
    Ok(())
}

/// Whether a row's state means a message may have reached its person (for replies).
pub fn may_have_reached(state: State) -> bool {
    matches!(
        state,
        State::Accepted | State::InDoubt | State::Failed | State::OptedOut
    )
}

/// Replies from the people a campaign messaged (a message may have reached them),
/// given inbound message counts by sender's consent key: (replies, people who
/// replied).
pub fn replies_from_recipients(
    conn: &Connection,
    campaign_id: &str,
    mut by_sender: HashMap<u64, u64>,
) -> rusqlite::Result<(u64, u64)> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT person_id FROM journal WHERE campaign_id = ?1
           AND state IN ('accepted', 'in_doubt', 'failed', 'opted_out') AND person_id > 0",
    )?;
    let mut rows = stmt.query(params![campaign_id])?;
    let (mut replies, mut replied) = (0, 0);
    while let Some(row) = rows.next()? {
        let person: i64 = row.get(0)?;
        if let Some(n) = by_sender.remove(&(person as u64)) {
            replies += n;
            replied += 1;
        }
    }
    Ok((replies, replied))
}

/// Messages of any campaign whose send was answered (accepted, or held in doubt)
/// between `since` and `until` (RFC 3339), leaving out the simulator's, for which no
/// webhook ever comes.
pub fn sent_between(conn: &Connection, since: &str, until: &str) -> rusqlite::Result<u64> {
    conn.prepare_cached(
        "SELECT count(*) FROM journal j JOIN campaigns c ON c.id = j.campaign_id
         WHERE j.state IN ('accepted', 'in_doubt') AND c.provider <> 'simulator'
           AND j.outcome_at >= ?1 AND j.outcome_at <= ?2",
    )?
    .query_row(params![since, until], |r| {
        r.get::<_, i64>(0).map(|n| n as u64)
    })
}

/// The replies `prune` removed from a campaign's figures: (replies, people).
pub fn pruned_replies(conn: &Connection, campaign_id: &str) -> rusqlite::Result<(u64, u64)> {
    Ok((
        pruned(conn, campaign_id, "replies")?,
        pruned(conn, campaign_id, "replied")?,
    ))
}

/// One message a person was sent (or planned to be), with its delivery history.
#[derive(Debug, Clone, Serialize)]
pub struct PersonMessage {
    pub campaign_id: String,
    pub template: String,
    pub category: String,
    pub occurrence: String,
    pub phone: Option<String>,
    pub bsuid: Option<String>,
    /// The values rendered into the template, in placeholder order.
    pub values: serde_json::Value,
    /// The contact row's columns kept with the plan (header → cell), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<serde_json::Value>,
    pub state: State,
    pub attempts: i64,
    pub message_id: Option<String>,
    pub error_code: Option<i64>,
    pub error_detail: Option<String>,
    pub intent_at: Option<String>,
    pub outcome_at: Option<String>,
    pub statuses: Vec<PersonStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PersonStatus {
    pub status: String,
    pub occurred_at: String,
    pub error_code: Option<i64>,
    pub error_detail: Option<String>,
}

/// Every journal row of one person (by journal person id), in every campaign, with
/// the statuses recorded for each.
pub fn messages_of_person(conn: &Connection, person: i64) -> rusqlite::Result<Vec<PersonMessage>> {
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT j.campaign_id, c.template, c.category, j.occurrence, j.phone, j.bsuid, j.params, ",
        super::claims::effective_state!("j"),
        ", ",
        super::claims::effective_attempts!("j"),
        ", j.message_id, j.error_code, j.error_detail, ",
        super::claims::effective_intent_at!("j"),
        ", j.outcome_at, j.contact
         FROM journal j JOIN campaigns c ON c.id = j.campaign_id
         WHERE j.person_id = ?1 ORDER BY c.created_at, j.campaign_id, j.occurrence"
    ))?;
    let mut messages: Vec<PersonMessage> = stmt
        .query_map(params![person], |r| {
            let params: String = r.get(6)?;
            Ok(PersonMessage {
                campaign_id: r.get(0)?,
                template: r.get(1)?,
                category: r.get(2)?,
                occurrence: r.get(3)?,
                phone: r.get(4)?,
                bsuid: r.get(5)?,
                values: serde_json::from_str(&params).unwrap_or(serde_json::Value::String(params)),
                contact: r
                    .get::<_, Option<String>>(14)?
                    .map(|c| serde_json::from_str(&c).unwrap_or(serde_json::Value::String(c))),
                state: r.get(7)?,
                attempts: r.get(8)?,
                message_id: r.get(9)?,
                error_code: r.get(10)?,
                error_detail: r.get(11)?,
                intent_at: r.get(12)?,
                outcome_at: r.get(13)?,
                statuses: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut statuses = conn.prepare_cached(
        "SELECT status, occurred_at, error_code, error_detail FROM message_statuses
         WHERE (campaign_id = ?1 AND person_id = ?2 AND occurrence = ?3)
            OR (?4 IS NOT NULL AND message_id = ?4)
         ORDER BY rank, occurred_at",
    )?;
    for m in &mut messages {
        m.statuses = statuses
            .query_map(
                params![m.campaign_id, person, m.occurrence, m.message_id],
                |r| {
                    Ok(PersonStatus {
                        status: r.get(0)?,
                        occurred_at: r.get(1)?,
                        error_code: r.get(2)?,
                        error_detail: r.get(3)?,
                    })
                },
            )?
            .collect::<rusqlite::Result<_>>()?;
    }
    Ok(messages)
}

/// A campaign created before `cutoff` whose current plan still has rows to send or
/// settle, and it is not halted: (campaign, created_at, rows), the oldest first.
pub fn unsettled_before(
    conn: &Connection,
    cutoff: &str,
) -> rusqlite::Result<Option<(String, String, i64)>> {
    conn.query_row(
        "SELECT c.id, c.created_at, count(*) FROM campaigns c JOIN journal j ON j.campaign_id = c.id
         WHERE c.created_at < ?1 AND j.state IN ('planned', 'in_flight', 'deferred', 'in_doubt')
           AND j.plan_run = c.plan_run AND c.halted_at IS NULL
         GROUP BY c.id ORDER BY c.created_at LIMIT 1",
        params![cutoff],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .optional()
}

/// A settled row, as retention folds it before removing it.
#[derive(Debug, Clone)]
pub struct SettledRow {
    pub person: i64,
    pub occurrence: String,
    pub state: State,
    pub error_code: Option<i64>,
    pub message_id: Option<String>,
    /// The best delivery status reached (its rank).
    pub status_rank: Option<i64>,
}

/// Up to `limit` rows of `campaign_id` in a final state whose outcome is older
/// than `cutoff`.
pub fn settled_before(
    conn: &Connection,
    campaign_id: &str,
    cutoff: &str,
    limit: i64,
) -> rusqlite::Result<Vec<SettledRow>> {
    conn.prepare_cached(
        "SELECT j.person_id, j.occurrence, j.state, j.error_code, j.message_id, j.status_rank
         FROM journal j
         WHERE j.campaign_id = ?1
           AND j.state IN ('accepted', 'failed', 'opted_out', 'expired')
           AND coalesce(j.outcome_at, j.updated_at) < ?2
         LIMIT ?3",
    )?
    .query_map(params![campaign_id, cutoff, limit], |r| {
        Ok(SettledRow {
            person: r.get(0)?,
            occurrence: r.get(1)?,
            state: r.get(2)?,
            error_code: r.get(3)?,
            message_id: r.get(4)?,
            status_rank: r.get(5)?,
        })
    })?
    .collect()
}

/// How many people a campaign's accepted messages went to who opted out at or
/// after `since` (test sends aside).
pub fn accepted_then_opted_out(
    conn: &Connection,
    campaign_id: &str,
    since: &str,
) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT count(DISTINCT j.person_id) FROM journal j
         WHERE j.campaign_id = ?1 AND j.state = 'accepted'
           AND j.occurrence NOT GLOB 'test:*'
           AND EXISTS (SELECT 1 FROM consent_events e WHERE e.subject_key = j.person_id
                       AND e.action = 'opt_out' AND e.occurred_at >= ?2)",
        params![campaign_id, since],
        |r| r.get::<_, i64>(0).map(|n| n as u64),
    )
}

/// The campaign of a message in flight to one of `persons`, if any: its request
/// may be on the wire.
pub fn in_flight_to(conn: &Connection, persons: &[i64]) -> rusqlite::Result<Option<String>> {
    // Through the partial index of sent rows by person (migration 0010).
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT j.campaign_id FROM journal j WHERE j.person_id = ?1
           AND (j.state = 'in_flight' OR ",
        super::claims::under_mark!("j"),
        ") LIMIT 1"
    ))?;
    for person in persons {
        if let Some(c) = stmt
            .query_row(params![person], |r| r.get::<_, String>(0))
            .optional()?
        {
            return Ok(Some(c));
        }
    }
    Ok(None)
}
