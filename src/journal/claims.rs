//! Claims by mark: how a run holds the planned rows it sends as in flight.
//!
//! A claim of planned rows writes one mark on their campaign (`campaigns.claimed_*`,
//! migration 0019): the last row it took in send order (seq, then id), of which plan
//! run, and when. A planned row of that run at or before the mark is in flight,
//! though its `state` column still says `planned`, and its outcome is its one
//! update. Writing `in_flight` on every claimed row made each message two row
//! updates, and cost a third of the journal writer's instructions (BENCHMARKS.md,
//! "Claims by mark").
//!
//! The mark is made durable in the claim's transaction, before any request leaves,
//! as the rows' state was: a crash, a kill or a power cut leaves it, and the next
//! run of the campaign turns its rows into `in_flight` rows ([`make_explicit`])
//! before it reads or writes anything else, so recovery, the departure log and
//! everything after see what they saw before. Retries (deferred rows due again)
//! are still claimed row by row: they are out of send order, and few.
//!
//! Whatever asks which rows are in flight reads both spellings: [`under_mark!`] and
//! [`effective_state!`] say it in SQL for a journal row, whichever its alias.

use rusqlite::{Connection, OptionalExtension, params};

/// SQL: whether the journal row aliased `$j` is in flight under the mark of the
/// campaign row aliased `$c`, its own. A literal, for `concat!` into a statement.
/// For a statement over one campaign, with its row read once
/// (`FROM campaigns c CROSS JOIN journal j`: SQLite keeps that order).
macro_rules! under_mark_of {
    ($j:literal, $c:literal) => {
        concat!(
            "(",
            $j,
            ".state = 'planned' AND ",
            $j,
            ".plan_run = ",
            $c,
            ".claimed_run AND (",
            $j,
            ".seq, ",
            $j,
            ".id) <= (",
            $c,
            ".claimed_seq, ",
            $c,
            ".claimed_id))"
        )
    };
}
pub(crate) use under_mark_of;

/// SQL: whether the journal row aliased `$j` is in flight under its campaign's
/// mark (a planned row a run claimed), its campaign looked up for the row. Planned
/// rows only pay for the lookup.
macro_rules! under_mark {
    ($j:literal) => {
        concat!(
            "(",
            $j,
            ".state = 'planned' AND EXISTS (SELECT 1 FROM campaigns claim_mark WHERE claim_mark.id = ",
            $j,
            ".campaign_id AND ",
            $crate::journal::claims::under_mark_of!($j, "claim_mark"),
            "))"
        )
    };
}
pub(crate) use under_mark;

/// SQL: the state of the journal row aliased `$j` as a reader should take it:
/// `in_flight` for a planned row under its campaign's mark.
macro_rules! effective_state {
    ($j:literal) => {
        concat!(
            "(CASE WHEN ",
            $crate::journal::claims::under_mark!($j),
            " THEN 'in_flight' ELSE ",
            $j,
            ".state END)"
        )
    };
}
pub(crate) use effective_state;

/// [`effective_state!`] under the campaign row aliased `$c` ([`under_mark_of!`]).
macro_rules! effective_state_of {
    ($j:literal, $c:literal) => {
        concat!(
            "(CASE WHEN ",
            $crate::journal::claims::under_mark_of!($j, $c),
            " THEN 'in_flight' ELSE ",
            $j,
            ".state END)"
        )
    };
}
pub(crate) use effective_state_of;

/// [`effective_attempts!`] under the campaign row aliased `$c` ([`under_mark_of!`]).
macro_rules! effective_attempts_of {
    ($j:literal, $c:literal) => {
        concat!(
            "(",
            $j,
            ".attempts + coalesce(",
            $crate::journal::claims::under_mark_of!($j, $c),
            ", 0))"
        )
    };
}
pub(crate) use effective_attempts_of;

/// [`effective_intent_at!`] under the campaign row aliased `$c` ([`under_mark_of!`]).
macro_rules! effective_intent_at_of {
    ($j:literal, $c:literal) => {
        concat!(
            "coalesce(",
            $j,
            ".intent_at, CASE WHEN ",
            $crate::journal::claims::under_mark_of!($j, $c),
            " THEN ",
            $c,
            ".claimed_at END)"
        )
    };
}
pub(crate) use effective_intent_at_of;

/// SQL: the attempts of the journal row aliased `$j`, the claimed one included
/// for a row under its campaign's mark (its outcome will count it).
macro_rules! effective_attempts {
    ($j:literal) => {
        concat!(
            "(",
            $j,
            ".attempts + ",
            $crate::journal::claims::under_mark!($j),
            ")"
        )
    };
}
pub(crate) use effective_attempts;

/// SQL: the intent time of the journal row aliased `$j`: for a row under its
/// campaign's mark, the latest claim's (the mark keeps one time for all its rows,
/// so a row claimed earlier reads a little late).
macro_rules! effective_intent_at {
    ($j:literal) => {
        concat!(
            "coalesce(",
            $j,
            ".intent_at, CASE WHEN ",
            $crate::journal::claims::under_mark!($j),
            " THEN (SELECT claim_time.claimed_at FROM campaigns claim_time WHERE claim_time.id = ",
            $j,
            ".campaign_id) END)"
        )
    };
}
pub(crate) use effective_intent_at;

/// The last planned row a run claimed, in send order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub seq: i64,
    pub id: i64,
}

/// Moves `campaign_id`'s mark to `to`, claimed at `at`: every planned row of
/// `plan_run` at or before it is in flight from this transaction's commit.
pub fn advance(
    conn: &Connection,
    campaign_id: &str,
    plan_run: i64,
    to: Position,
    at: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE campaigns SET claimed_run = ?2, claimed_seq = ?3, claimed_id = ?4, claimed_at = ?5
         WHERE id = ?1",
    )?
    .execute(params![campaign_id, plan_run, to.seq, to.id, at])?;
    Ok(())
}

/// Writes `in_flight` on the rows under `campaign_id`'s mark, as a claim used to
/// (an attempt counted, the claim's time as their intent), and clears the mark.
/// A run calls it first, in its opening transaction: the rows a killed run left
/// under its mark are then the rows in flight that recovery settles. Returns how
/// many rows it wrote.
pub fn make_explicit(conn: &Connection, campaign_id: &str, now: &str) -> rusqlite::Result<u64> {
    let mark: Option<(i64, Position, Option<String>)> = conn
        .query_row(
            "SELECT claimed_run, claimed_seq, claimed_id, claimed_at FROM campaigns
             WHERE id = ?1 AND claimed_run IS NOT NULL",
            params![campaign_id],
            |r| {
                let at = Position {
                    seq: r.get(1)?,
                    id: r.get(2)?,
                };
                Ok((r.get(0)?, at, r.get(3)?))
            },
        )
        .optional()?;
    let Some((run, Position { seq, id }, at)) = mark else {
        return Ok(0);
    };
    let written = conn.execute(
        "UPDATE journal SET state = 'in_flight', attempts = attempts + 1,
             intent_at = coalesce(?5, ?6), updated_at = ?6, retry_at = NULL
         WHERE campaign_id = ?1 AND state = 'planned' AND plan_run = ?2 AND (seq, id) <= (?3, ?4)",
        params![campaign_id, run, seq, id, at, now],
    )?;
    clear(conn, campaign_id)?;
    Ok(written as u64)
}

/// Clears `campaign_id`'s mark once no planned row is left under it: a run whose
/// every claimed row has its outcome ends without one, and later runs start from a
/// clean slate.
pub fn clear_if_settled(conn: &Connection, campaign_id: &str) -> rusqlite::Result<bool> {
    let left: bool = conn.query_row(
        concat!(
            "SELECT EXISTS (SELECT 1 FROM campaigns c CROSS JOIN journal j
                            WHERE c.id = ?1 AND j.campaign_id = ?1 AND ",
            under_mark_of!("j", "c"),
            ")"
        ),
        params![campaign_id],
        |r| r.get(0),
    )?;
    if !left {
        clear(conn, campaign_id)?;
    }
    Ok(!left)
}

fn clear(conn: &Connection, campaign_id: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE campaigns SET claimed_run = NULL, claimed_seq = NULL, claimed_id = NULL,
             claimed_at = NULL
         WHERE id = ?1 AND claimed_run IS NOT NULL",
        params![campaign_id],
    )?;
    Ok(())
}
