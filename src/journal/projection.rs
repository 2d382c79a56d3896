//! What a run of a campaign would find to send, read from the journal without
//! writing to it: `send --dry-run`.
//!
//! A run changes rows before it counts what it will send ([`super::Journal::begin`],
//! `plan`, `expire_past_send_by`, `settle_in_doubt_from_statuses`): rows the last
//! run left in flight are held in doubt, or planned again when its departure log
//! proves they never left; today's plan is written over the journal (rows already
//! sent or settled keep their state), held rows are deferred, waiting rows past
//! their send-by time expire, and rows in doubt that a delivery status proved sent
//! are settled. A projection takes the same steps on what it reads, in the same
//! order, and counts as [`super::counts`] would afterwards; so a dry run reports
//! what the same command without `--dry-run` then sends. It writes nothing: not
//! the journal, not the ledger, not a departure log.

use std::collections::HashSet;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use super::{Counts, JournalError, State};
use crate::campaign::Campaign;
use crate::phone::E164;
use crate::plan::Recipient;

/// Where one message of today's plan would stand once a run has prepared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Not sent yet: sent in plan order, up to `--limit`.
    Planned,
    /// Waiting to be retried, or held (quiet hours, a cap): counted in the run
    /// whatever `--limit` says, as a run counts it.
    Deferred,
    /// Sent or settled by an earlier run.
    Served,
    /// It may have gone out: held in doubt (or settled by a delivery status).
    InDoubt,
    /// Its send-by time has passed: the run expires it, never sent.
    Expired,
}

/// What a run would find, as it counts it before sending.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projected {
    /// Rows by state, as [`super::Journal::counts`] would return them.
    pub counts: Counts,
    /// Occurrences of today's plan that earlier runs sent or settled.
    pub already_served: u64,
    /// Waiting rows the run would expire (past their send-by time).
    pub expired_now: u64,
    /// Rows left in flight by the last run that would be held in doubt.
    pub recovered_in_doubt: u64,
    /// Rows left in flight that the last run's departure log proves never left.
    pub recovered_never_left: u64,
    /// Rows left in flight whose acceptance the last run's departure log kept.
    pub recovered_accepted: u64,
    /// Rows in doubt that a delivery status has since proved sent.
    pub settled: u64,
}

/// The journal as a run of the campaign would find it, built up one plan item at
/// a time.
pub struct Projection<'c> {
    /// `None`: no database, or a campaign the journal does not know. Every
    /// message planned is then new.
    known: Option<Known<'c>>,
    projected: Projected,
}

struct Known<'c> {
    conn: &'c Connection,
    campaign_id: String,
    now: String,
    /// Whether the campaign has send-by times: only then does a run expire rows.
    send_by: bool,
    /// Rows in flight whose requests the last run's log proves never left.
    never_left: HashSet<i64>,
    /// Rows in flight whose acceptance the last run's log kept: a run records
    /// them as accepted.
    answered: HashSet<i64>,
    /// Rows in doubt (or to be) that a delivery status settles.
    settled: HashSet<i64>,
    /// Waiting rows today's plan names: the others keep their earlier plan.
    named: HashSet<i64>,
}

impl<'c> Projection<'c> {
    /// Reads what the run's preparation would start from. `conn`: the database,
    /// when there is one; `log`: where the campaign's departure log is. Refuses as a
    /// run would: a changed campaign that has messaged someone, a halted one
    /// without `resume_halted`.
    pub fn new(
        conn: Option<&'c Connection>,
        campaign: &Campaign,
        resume_halted: bool,
        log: Option<&Path>,
    ) -> Result<Projection<'c>, JournalError> {
        let mut projected = Projected::default();
        let Some(conn) = conn else {
            return Ok(Projection {
                known: None,
                projected,
            });
        };
        let Some(prior) = super::prior_run(conn, &campaign.id)? else {
            return Ok(Projection {
                known: None,
                projected,
            });
        };
        super::refuse(conn, campaign, &prior, resume_halted)?;
        let plan_run = prior.2;

        // Rows left in flight: a run holds them in doubt, except those the last
        // run's log proves never left (read, not replaced: the log stays the
        // next real run's to read).
        let mut never_left = HashSet::new();
        let mut answered = HashSet::new();
        for left in super::left_in_flight(conn, &campaign.id, log)? {
            if left.answer.is_some() {
                answered.insert(left.row);
                projected.recovered_accepted += 1;
                if !left.test {
                    projected.counts.accepted += 1;
                }
            } else if left.never_left {
                never_left.insert(left.row);
                projected.recovered_never_left += 1;
            } else {
                projected.recovered_in_doubt += 1;
                // The totals never count test sends.
                if !left.test {
                    projected.counts.in_doubt += 1;
                }
            }
        }

        // Rows that are sent or settled (and those in doubt) count campaign-wide,
        // whatever plan wrote them; planned and deferred rows are counted from
        // today's plan, item by item.
        let current = super::counts(conn, &campaign.id, Some(plan_run))?;
        for state in [
            State::Accepted,
            State::Failed,
            State::OptedOut,
            State::InDoubt,
            State::Expired,
        ] {
            projected.counts.add(state, current.get(state));
        }

        // Rows in doubt that a delivery status has since reported on: the run
        // settles them as accepted before it counts (`settle::resolve_in_doubt`).
        let mut settled = HashSet::new();
        let candidates: Vec<(i64, bool)> = conn
            .prepare(&format!(
                "SELECT id, occurrence GLOB 'test:*' FROM journal j
                 WHERE campaign_id = ?1 AND {} IN ('in_doubt', 'in_flight')
                   AND {}",
                super::claims::effective_state!("j"),
                super::settle::REPORTED_ON
            ))?
            .query_map(params![campaign.id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (row, test) in candidates {
            if never_left.contains(&row) || answered.contains(&row) {
                continue;
            }
            settled.insert(row);
            if !test {
                projected.settled += 1;
                projected.counts.in_doubt = projected.counts.in_doubt.saturating_sub(1);
                projected.counts.accepted += 1;
            }
        }

        Ok(Projection {
            known: Some(Known {
                conn,
                campaign_id: campaign.id.clone(),
                now: crate::clock::now_string(),
                send_by: campaign.send_by.is_some(),
                never_left,
                answered,
                settled,
                named: HashSet::new(),
            }),
            projected,
        })
    }

    /// The phones of the rows a run holds in doubt, in plan order: what
    /// `--in-doubt resend` sends again.
    pub fn in_doubt(&self) -> rusqlite::Result<Vec<Option<E164>>> {
        let Some(known) = &self.known else {
            return Ok(Vec::new());
        };
        let mut stmt = known.conn.prepare(concat!(
            "SELECT id, coalesce(phone, bsuid), state FROM (
                 SELECT j.id, j.phone, j.bsuid, j.seq, j.occurrence, ",
            super::claims::effective_state!("j"),
            " AS state FROM journal j WHERE j.campaign_id = ?1)
             WHERE state IN ('in_doubt', 'in_flight') AND occurrence NOT GLOB 'test:*'
             ORDER BY seq"
        ))?;
        let rows = stmt.query_map(params![known.campaign_id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, State>(2)?,
            ))
        })?;
        let mut phones = Vec::new();
        for row in rows {
            let (id, phone, state) = row?;
            if (state == State::InFlight
                && (known.never_left.contains(&id) || known.answered.contains(&id)))
                || known.settled.contains(&id)
            {
                continue;
            }
            phones.push(phone.as_deref().and_then(E164::from_digits));
        }
        Ok(phones)
    }

    /// Where one message of today's plan would stand: `person` is its person as the
    /// consent ledger keys them, as the run would journal it.
    pub fn item(&mut self, recipient: &Recipient, person: i64) -> rusqlite::Result<Fate> {
        let fate = match &mut self.known {
            None => Fate::Planned,
            Some(known) => {
                let row: Option<(i64, State, i64)> = known
                    .conn
                    .prepare_cached(concat!(
                        "SELECT j.id, ",
                        super::claims::effective_state!("j"),
                        ", ",
                        super::claims::effective_attempts!("j"),
                        " FROM journal j
                         WHERE j.campaign_id = ?1 AND j.person_id = ?2 AND j.occurrence = ?3"
                    ))?
                    .query_row(
                        params![known.campaign_id, person, recipient.occurrence],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .optional()?;
                let fate = match row {
                    None => Fate::Planned,
                    Some((id, state, attempts)) => {
                        let fate = match state {
                            State::Planned => Fate::Planned,
                            State::Deferred => Fate::Deferred,
                            // Back to waiting: a retry as a retry, a first attempt
                            // to the plan (`recover_in_flight`).
                            State::InFlight if known.never_left.contains(&id) => {
                                if attempts > 1 {
                                    Fate::Deferred
                                } else {
                                    Fate::Planned
                                }
                            }
                            // Recorded as accepted from the log's answers.
                            State::InFlight if known.answered.contains(&id) => Fate::Served,
                            State::InFlight | State::InDoubt => Fate::InDoubt,
                            State::Accepted | State::Failed | State::OptedOut | State::Expired => {
                                Fate::Served
                            }
                        };
                        if matches!(fate, Fate::Planned | Fate::Deferred) {
                            known.named.insert(id);
                        }
                        fate
                    }
                };
                // The plan writes the item's send-by onto a waiting row; the run
                // then expires it if that time has passed (`expire_past_send_by`:
                // the same comparison, of the same RFC 3339 text).
                let past = known.send_by
                    && recipient
                        .send_by
                        .as_deref()
                        .is_some_and(|by| by <= known.now.as_str());
                if past && matches!(fate, Fate::Planned | Fate::Deferred) {
                    Fate::Expired
                } else {
                    fate
                }
            }
        };
        // Quiet hours or a cap: the plan writes the row deferred (`hold::mark_planned`).
        let fate = if fate == Fate::Planned && recipient.hold.is_some() {
            Fate::Deferred
        } else {
            fate
        };
        match fate {
            Fate::Planned => self.projected.counts.planned += 1,
            Fate::Deferred => self.projected.counts.deferred += 1,
            Fate::Served => self.projected.already_served += 1,
            Fate::Expired => {
                self.projected.expired_now += 1;
                self.projected.counts.expired += 1;
            }
            Fate::InDoubt => {}
        }
        Ok(fate)
    }

    /// The projection once every item of today's plan was seen: waiting rows of
    /// earlier plans past their send-by time expire too, as a run expires them.
    pub fn finish(mut self) -> rusqlite::Result<Projected> {
        if let Some(known) = &self.known
            && known.send_by
        {
            let mut stmt = known.conn.prepare(concat!(
                "SELECT j.id, ",
                super::claims::effective_state!("j"),
                ", j.occurrence GLOB 'test:*' FROM journal j
                 WHERE j.campaign_id = ?1 AND j.state IN ('planned', 'deferred', 'in_flight')
                   AND j.send_by IS NOT NULL AND j.send_by <= ?2"
            ))?;
            let rows = stmt.query_map(params![known.campaign_id, known.now], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, State>(1)?,
                    r.get::<_, bool>(2)?,
                ))
            })?;
            for row in rows {
                let (id, state, test) = row?;
                // A row left in flight waits again only if it never left; a test
                // send's then fails instead (`recover_in_flight`).
                let waiting = state != State::InFlight || (known.never_left.contains(&id) && !test);
                if waiting && !known.named.contains(&id) {
                    self.projected.expired_now += 1;
                    if !test {
                        self.projected.counts.expired += 1;
                    }
                }
            }
        }
        Ok(self.projected)
    }
}
