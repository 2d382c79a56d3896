//! Reading what the webhook server recorded: the status history of a message,
//! delivery figures for `status`, and where a number moved.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::journal;
use crate::phone::E164;

/// One recorded status of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusRecord {
    pub message_id: String,
    pub status: String,
    /// RFC 3339 UTC: the provider's time, else when it was received.
    pub occurred_at: String,
    pub provider: String,
    pub error_code: Option<i64>,
    pub error_detail: Option<String>,
}

fn status_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StatusRecord> {
    Ok(StatusRecord {
        message_id: r.get(0)?,
        status: r.get(1)?,
        occurred_at: r.get(2)?,
        provider: r.get(3)?,
        error_code: r.get(4)?,
        error_detail: r.get(5)?,
    })
}

/// Every status of a message (a wamid or a Twilio SID), in the order they happened.
pub fn status_history(conn: &Connection, message_id: &str) -> rusqlite::Result<Vec<StatusRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT message_id, status, occurred_at, provider, error_code, error_detail
         FROM message_statuses WHERE message_id = ?1 ORDER BY occurred_at, rank, id",
    )?;
    let rows = stmt.query_map(params![message_id], status_from_row)?;
    rows.collect()
}

/// A message's latest status: the furthest it got (sent < delivered < read; failed
/// overrides), whatever order the webhooks arrived in.
pub fn latest_status(
    conn: &Connection,
    message_id: &str,
) -> rusqlite::Result<Option<StatusRecord>> {
    conn.prepare_cached(
        "SELECT message_id, status, occurred_at, provider, error_code, error_detail
         FROM message_statuses WHERE message_id = ?1
         ORDER BY rank DESC, timestamp DESC, id DESC LIMIT 1",
    )?
    .query_row(params![message_id], status_from_row)
    .optional()
}

/// Delivery figures for a campaign's accepted messages, and replies to it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DeliveryCounts {
    /// Rows accepted by the provider (the base of the rates).
    pub accepted: u64,
    /// Delivered (or read, which implies delivered).
    pub delivered: u64,
    pub read: u64,
    /// Accepted, then reported failed or undelivered.
    pub failed_after_accept: u64,
    /// Accepted messages with no status yet.
    pub no_status: u64,
    pub delivered_rate: Option<f64>,
    pub read_rate: Option<f64>,
    pub failed_rate: Option<f64>,
    /// Messages received since the campaign started from the people it messaged,
    /// and how many people sent them.
    pub replies: u64,
    pub replied: u64,
}

/// Delivery figures for `campaign_id`; replies count from `since` (RFC 3339, the
/// campaign's start).
pub fn delivery_counts(
    conn: &Connection,
    campaign_id: &str,
    since: &str,
) -> rusqlite::Result<DeliveryCounts> {
    let best = journal::query::accepted_by_best_status(conn, campaign_id)?;
    let by_sender = replies_by_sender(conn, since)?;
    let replies = if by_sender.is_empty() {
        (0, 0)
    } else {
        journal::query::replies_from_recipients(conn, campaign_id, by_sender)?
    };
    delivery_counts_from(conn, campaign_id, best, replies)
}

/// Messages received since `since` (RFC 3339), by sender's consent key: a reply may
/// come from another spelling of the number, so replies are matched on the key.
pub fn replies_by_sender(conn: &Connection, since: &str) -> rusqlite::Result<HashMap<u64, u64>> {
    let mut by_sender: HashMap<u64, u64> = HashMap::new();
    let mut stmt = conn.prepare_cached(
        "SELECT consent_key, count(*) FROM inbound_messages WHERE occurred_at >= ?1
         GROUP BY consent_key",
    )?;
    let rows = stmt.query_map(params![since], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
    })?;
    for row in rows {
        let (key, n) = row?;
        by_sender.insert(key, n);
    }
    Ok(by_sender)
}

/// [`delivery_counts`] from the accepted messages' best statuses already tallied
/// (accepted, with any status, delivered, read, failed; `prune`'s folded counts
/// included) and the replies matched to the journal's people (replies, people),
/// for a caller that reads every message anyway (the report).
pub fn delivery_counts_from(
    conn: &Connection,
    campaign_id: &str,
    (accepted, with_status, delivered, read, failed): (u64, u64, u64, u64, u64),
    (replies, replied): (u64, u64),
) -> rusqlite::Result<DeliveryCounts> {
    let rate = |n: u64| (accepted > 0).then(|| n as f64 / accepted as f64);
    let (pruned_replies, pruned_replied) = journal::query::pruned_replies(conn, campaign_id)?;
    Ok(DeliveryCounts {
        accepted,
        delivered,
        read,
        failed_after_accept: failed,
        no_status: accepted - with_status,
        delivered_rate: rate(delivered),
        read_rate: rate(read),
        failed_rate: rate(failed),
        replies: replies + pruned_replies,
        replied: replied + pruned_replied,
    })
}

/// Where a number moved: follows `user_changed_number` links to the latest number
/// (the number itself when it never changed).
pub fn current_number(conn: &Connection, phone: E164) -> rusqlite::Result<E164> {
    let mut current = phone;
    let mut stmt = conn.prepare_cached(
        "SELECT new_phone FROM number_links WHERE old_consent_key = ?1
         ORDER BY changed_at DESC LIMIT 1",
    )?;
    // A chain of changes, bounded in case links ever form a loop (A → B → A).
    for _ in 0..16 {
        let next: Option<String> = stmt
            .query_row(params![current.consent_key() as i64], |r| r.get(0))
            .optional()?;
        match next.as_deref().and_then(E164::from_digits) {
            Some(next) if next.consent_key() != current.consent_key() => current = next,
            _ => break,
        }
    }
    Ok(current)
}
