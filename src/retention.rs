//! Retention: removing journal rows, statuses, replies and raw webhook bodies older
//! than a period, after folding them into per-campaign counts (`pruned_counts`) so
//! `status` and the reports keep their figures. Ledger events are never pruned (only
//! an erasure touches them).
//!
//! Work goes in small transactions (a batch of rows each), so sends and the webhook
//! server keep writing while it runs.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, TransactionBehavior, params};
use serde::Serialize;
use thiserror::Error;

use crate::clock;
use crate::journal::State;
use crate::webhook::history;

/// Rows per transaction.
const BATCH: i64 = 2000;

/// How long providers retry a webhook (Meta: up to 7 days).
const RETRY_DAYS: i64 = 7;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RetentionError {
    #[error(
        "campaign `{campaign}` started on {started} and still has {pending} message(s) to send or \
         settle; pruning rows older than {cutoff} would cut into it. Use a period longer than its \
         age, or let it finish first; nothing was removed"
    )]
    RunningCampaign {
        campaign: String,
        started: String,
        pending: i64,
        cutoff: String,
    },
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// What `prune` removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    pub cutoff: String,
    pub journal_rows: u64,
    pub statuses: u64,
    pub replies: u64,
    /// Raw webhook deliveries removed (older than a week: whole; else their body).
    pub raw_bodies: u64,
    /// Journal rows removed, by campaign.
    pub by_campaign: BTreeMap<String, u64>,
}

/// Parses `90d`, `12w`, `36h` (a number and a unit: h, d or w).
pub fn parse_period(text: &str) -> Result<chrono::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: i64 = number.parse().map_err(|_| {
        format!("`{text}` is not a period; write a number and a unit: 90d, 12w, 36h")
    })?;
    let period = match unit {
        "h" => chrono::Duration::hours(n),
        "d" => chrono::Duration::days(n),
        "w" => chrono::Duration::weeks(n),
        _ => {
            return Err(format!(
                "`{text}`: the unit must be h, d or w (90d, 12w, 36h)"
            ));
        }
    };
    if period < chrono::Duration::days(1) {
        return Err(format!(
            "`{text}` is shorter than a day: replies keep customer-service windows (24 h) open, \
             so keep at least 1d"
        ));
    }
    Ok(period)
}

/// Removes what is older than `now - period`.
pub fn prune(
    conn: &Connection,
    period: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<PruneReport, RetentionError> {
    let cutoff = clock::format(now - period);
    refuse_running(conn, &cutoff)?;
    let mut report = PruneReport {
        cutoff: cutoff.clone(),
        ..PruneReport::default()
    };
    let campaigns: Vec<(String, String)> = conn
        .prepare("SELECT id, created_at FROM campaigns ORDER BY created_at")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    // Replies are counted from the inbound messages of people in the journal: what
    // `status` shows now is kept, as a figure, for the rows about to go.
    let mut replies_before = BTreeMap::new();
    for (id, created_at) in &campaigns {
        let d = history::delivery_counts(conn, id, created_at)?;
        replies_before.insert(id.clone(), (d.replies, d.replied));
    }
    for (id, _) in &campaigns {
        loop {
            let (rows, statuses) = prune_batch(conn, id, &cutoff)?;
            if rows == 0 {
                break;
            }
            report.journal_rows += rows;
            report.statuses += statuses;
            *report.by_campaign.entry(id.clone()).or_default() += rows;
        }
    }
    // Replies and statuses matched to no journal row, older than the cutoff.
    loop {
        let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
        let replies = tx.execute(
            "DELETE FROM inbound_messages WHERE rowid IN (SELECT rowid FROM inbound_messages
             WHERE occurred_at < ?1 LIMIT ?2)",
            params![cutoff, BATCH],
        )? as u64;
        let orphans = tx.execute(
            "DELETE FROM message_statuses WHERE id IN (SELECT id FROM message_statuses
             WHERE campaign_id IS NULL AND received_at < ?1 LIMIT ?2)",
            params![cutoff, BATCH],
        )? as u64;
        tx.commit()?;
        report.replies += replies;
        report.statuses += orphans;
        if replies == 0 && orphans == 0 {
            break;
        }
    }
    // Providers retry a webhook for up to a week: a delivery's hash is kept that long
    // so a retry is recognised; older deliveries go whole, newer ones lose their body.
    if period >= chrono::Duration::days(RETRY_DAYS) {
        loop {
            let gone = conn.execute(
                "DELETE FROM webhook_deliveries WHERE body_sha256 IN (SELECT body_sha256
                 FROM webhook_deliveries WHERE received_at < ?1 AND processed_at IS NOT NULL
                 LIMIT ?2)",
                params![cutoff, BATCH],
            )? as u64;
            report.raw_bodies += gone;
            if gone == 0 {
                break;
            }
        }
    } else {
        report.raw_bodies = crate::webhook::store::prune_bodies(conn, &cutoff)? as u64;
    }
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    for (id, created_at) in &campaigns {
        let (before, before_people) = replies_before[id];
        let shown = history::delivery_counts(&tx, id, created_at)?;
        let folded = crate::journal::query::pruned_replies(&tx, id)?;
        let raw = (shown.replies - folded.0, shown.replied - folded.1);
        set(&tx, id, "replies", before.saturating_sub(raw.0))?;
        set(&tx, id, "replied", before_people.saturating_sub(raw.1))?;
    }
    tx.commit()?;
    Ok(report)
}

/// A campaign that started before the cutoff and still has rows to send or settle.
fn refuse_running(conn: &Connection, cutoff: &str) -> Result<(), RetentionError> {
    let running = crate::journal::query::unsettled_before(conn, cutoff)?;
    match running {
        Some((campaign, started, pending)) => Err(RetentionError::RunningCampaign {
            campaign,
            started,
            pending,
            cutoff: cutoff.to_owned(),
        }),
        None => Ok(()),
    }
}

/// One transaction: up to BATCH settled rows of `campaign` whose outcome is older
/// than the cutoff, folded into `pruned_counts`, then removed with their statuses.
fn prune_batch(conn: &Connection, campaign: &str, cutoff: &str) -> rusqlite::Result<(u64, u64)> {
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let batch = crate::journal::query::settled_before(&tx, campaign, cutoff, BATCH)?;
    if batch.is_empty() {
        return Ok((0, 0));
    }
    let mut folds: BTreeMap<String, i64> = BTreeMap::new();
    let mut statuses = 0;
    {
        let mut delete_statuses = tx.prepare_cached(
            "DELETE FROM message_statuses WHERE message_id = ?1
                OR (campaign_id = ?2 AND person_id = ?3 AND occurrence = ?4)",
        )?;
        let mut delete_row = tx.prepare_cached(
            "DELETE FROM journal WHERE campaign_id = ?1 AND person_id = ?2 AND occurrence = ?3",
        )?;
        for row in &batch {
            let (person, occurrence, state, code) =
                (row.person, &row.occurrence, row.state, row.error_code);
            // Test sends are in no total, so they are removed without being folded.
            let test = occurrence.starts_with(crate::occurrence::TEST_PREFIX);
            if !test {
                *folds.entry(format!("journal:{state}")).or_default() += 1;
            }
            // As `failures_by_code` counts them.
            if !test
                && matches!(state, State::Failed | State::OptedOut | State::Expired)
                && (code.is_some() || state == State::Failed)
            {
                let code = code.map_or_else(|| "none".to_owned(), |c| c.to_string());
                *folds.entry(format!("code:{code}")).or_default() += 1;
            }
            // As `accepted_by_best_status` counts them.
            if !test && state == State::Accepted {
                *folds.entry("delivery:accepted".to_owned()).or_default() += 1;
                if let Some(best) = row.status_rank {
                    *folds.entry("delivery:with_status".to_owned()).or_default() += 1;
                    if matches!(best, 2 | 3) {
                        *folds.entry("delivery:delivered".to_owned()).or_default() += 1;
                    }
                    if best == 3 {
                        *folds.entry("delivery:read".to_owned()).or_default() += 1;
                    }
                    if best == 4 {
                        *folds.entry("delivery:failed".to_owned()).or_default() += 1;
                    }
                }
            }
            statuses +=
                delete_statuses.execute(params![row.message_id, campaign, person, occurrence])?
                    as u64;
            delete_row.execute(params![campaign, person, occurrence])?;
        }
    }
    for (what, n) in folds {
        tx.prepare_cached(
            "INSERT INTO pruned_counts (campaign_id, what, count) VALUES (?1, ?2, ?3)
             ON CONFLICT (campaign_id, what) DO UPDATE SET count = count + excluded.count",
        )?
        .execute(params![campaign, what, n])?;
    }
    tx.commit()?;
    Ok((batch.len() as u64, statuses))
}

fn set(tx: &Connection, campaign: &str, what: &str, n: u64) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO pruned_counts (campaign_id, what, count) VALUES (?1, ?2, ?3)
         ON CONFLICT (campaign_id, what) DO UPDATE SET count = excluded.count",
        params![campaign, what, n as i64],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_read_with_their_unit_and_a_day_at_least() {
        assert_eq!(parse_period("90d").unwrap(), chrono::Duration::days(90));
        assert_eq!(parse_period("2w").unwrap(), chrono::Duration::days(14));
        assert_eq!(parse_period("36h").unwrap(), chrono::Duration::hours(36));
        assert!(
            parse_period("12h")
                .unwrap_err()
                .contains("shorter than a day")
        );
        assert!(parse_period("90").unwrap_err().contains("unit"));
        assert!(parse_period("d").is_err());
    }
}
