//! The send journal: one row per (campaign, person, occurrence) in SQLite, so a
//! crash, a kill or a re-run never messages anyone twice.
//!
//! Every state change of a row happens in this module ([`state`] lists the states
//! and the transitions): the send pipeline plans, claims and records through
//! [`Journal`]; the webhook server and `send`'s preparation settle rows through
//! [`settle`], and the webhook server folds each status onto its row through
//! [`fold`]; reports read through [`query`]; [`hold`] defers held rows and reads
//! what the frequency caps count; [`projection`] tells `send --dry-run` what a run
//! would find, without writing.
//!
//! A row is `planned` when the plan is written and in flight once the intent to
//! send it is durable, committed just before its request is written to a socket:
//! a retry's row is written `in_flight`, a planned row is passed by its campaign's
//! mark ([`claims`]), which every reader of the state takes as `in_flight`.
//! Rows left `in_flight` by a crash become `in_doubt` on the next run and are held
//! until the operator decides or a delivery status settles them; except those the
//! departure log ([`crate::departure_log`]) proves never left, which are due again.

pub mod claims;
#[cfg(test)]
pub mod fixture;
pub mod fold;
pub mod hold;
pub mod projection;
pub mod query;
pub mod settle;
pub mod state;
pub mod template_text;

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use thiserror::Error;

use crate::campaign::Campaign;
use crate::clock;
use crate::consent::{self, Action, ConsentIndex, NewEvent, Purpose, RecordedVia};
use crate::gate::Gate;
use crate::phone::E164;
use crate::plan::{ConsentGate, Recipient};
use crate::provider::To;

pub use crate::row_key::RowKey;
pub use query::{
    CampaignRecord, Counts, HaltRecord, JournalRow, already_served, campaign_record, counts,
    failures_by_code, held_for_quality, rows, test_sends,
};
pub use state::State;

/// The plan run test sends are written under: no run of a plan has it.
const TEST_PLAN_RUN: i64 = 0;

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
        "campaign `{id}` halted on {at}: {}. Fix the cause, then run again with \
         --resume-halted",
        // Providers' details often end in a full stop of their own.
        .reason.trim_end_matches('.')
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
    /// The row's id: outcomes update it directly.
    pub row: i64,
    pub key: RowKey,
    /// The number, or the BSUID of a person known by that alone.
    pub to: To,
    pub values: Vec<String>,
    pub attempts: u32,
    /// How many times a rule (Meta's per-user limit) deferred it before.
    pub deferrals: u32,
    /// When the claim that took it was made durable: its intent time.
    pub claimed_at: std::sync::Arc<str>,
}

impl Job {
    /// A new message, not a retry: what `--limit` counts.
    pub fn first_attempt(&self) -> bool {
        self.attempts == 1
    }
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
        /// A rule deferred it (Meta's per-user limit), rather than a transient
        /// error: counted in the row's deferrals.
        by_rule: bool,
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
    /// Claimed, never sent: given back (rows claimed ahead at a stop or a long
    /// wait), due again at once, as if never claimed: no attempt counted.
    Unsent {
        detail: String,
    },
}

/// One outcome for the journal writer: the row, where it went, what happened.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub row: i64,
    pub key: RowKey,
    pub to: To,
    pub disposition: Disposition,
    /// The job's [`Job::claimed_at`]: a row claimed under the campaign's mark
    /// takes it as its intent time with its outcome.
    pub claimed_at: std::sync::Arc<str>,
}

/// Rows claimed by [`Journal::claim`], and what else it found.
#[derive(Debug, Default)]
pub struct Claimed {
    pub jobs: Vec<Job>,
    /// Rows not sent because an opt-out arrived after the plan was made.
    pub opted_out: u64,
    /// Rows of a session campaign whose window closed before their turn: failed.
    pub window_closed: u64,
    /// Rows whose send-by time passed before their turn: expired, never sent.
    pub expired: u64,
    /// Rows with no address this provider can send to: failed.
    pub unreachable: u64,
    /// Rows that reached quiet hours or a frequency cap since the plan: deferred.
    pub held: u64,
    /// Rows deferred because the portfolio's messaging limit is reached.
    pub limited: u64,
    /// Nothing is ready now, but deferred rows become ready at this time.
    pub next_retry_at: Option<String>,
    /// The campaign was halted from outside this run (a webhook, an operator).
    pub halted: Option<String>,
}

impl Claimed {
    /// Rows the claim settled without sending.
    pub fn skipped(&self) -> u64 {
        self.opted_out
            + self.window_closed
            + self.expired
            + self.unreachable
            + self.held
            + self.limited
    }
}

/// The journal over an open database connection.
pub struct Journal {
    conn: Connection,
    campaign_id: String,
    plan_run: i64,
    /// The last planned row this run claimed: the next claim takes the rows after
    /// it, and moves the campaign's mark (`claims`).
    claimed: Option<claims::Position>,
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
    /// Quiet hours and frequency caps, checked again at every claim.
    holds: Option<crate::hold::Rules>,
    /// The portfolio's messaging limit, when this run holds to one.
    messaging_limit: Option<crate::messaging_limit::Guard>,
    /// Where this run's requests note their departure, once it keeps a log.
    departures: Option<std::sync::Arc<crate::departure_log::Departures>>,
    /// The log this run will keep (its path and the nonce the journal names it
    /// by), until [`Journal::start_departures`] creates it.
    departure_log_to_start: Option<(std::path::PathBuf, i64)>,
    /// Why this run keeps no departure log though it was asked to.
    departure_log_problem: Option<String>,
    /// This run's recent claims of planned rows alone, newest last, each with the
    /// database's `data_version` inside its transaction (see [`Journal::unseen`]).
    quiet_claims: std::collections::VecDeque<(std::sync::Arc<str>, i64)>,
}

/// How many claims [`Journal::quiet_claims`] remembers: at 50 claims a second, the
/// last 80 s, longer than any request may take.
const QUIET_CLAIMS: usize = 4096;

/// What a run found left in flight by the run before it, which stopped without
/// recording their outcomes (a kill, a crash, a power cut).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Rows whose request may have gone: held in doubt.
    pub in_doubt: u64,
    /// Rows the departure log proves never left: due again, as if never claimed.
    pub never_left: u64,
    /// Rows whose acceptance the departure log kept, though the journal had not
    /// recorded it: recorded as accepted, with their message ids.
    pub accepted: u64,
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
    /// new planning run. Rows a crash left in flight become in doubt, except those
    /// the last run's departure log proves never left, which are due again.
    /// `departures`: where this run keeps its own log (beside the database, see
    /// [`crate::departure_log::path`]), created when it starts sending
    /// ([`Journal::start_departures`]); `None` keeps none, and the next run holds every
    /// row this one leaves in flight in doubt.
    pub fn begin(
        conn: Connection,
        campaign: &Campaign,
        gate: Gate,
        resume_halted: bool,
        departures: Option<&std::path::Path>,
    ) -> Result<(Journal, Recovered), JournalError> {
        Self::begin_run(conn, campaign, gate, resume_halted, false, departures)
    }

    /// A journal for test sends (`send --to`): the campaign is registered and
    /// checked as for a run, but its plan is left alone. Test rows are written under
    /// plan run 0, which no run of the campaign's plan claims, with occurrences
    /// starting with `test:`, which its totals never count.
    pub fn begin_test(
        conn: Connection,
        campaign: &Campaign,
        gate: Gate,
        departures: Option<&std::path::Path>,
    ) -> Result<(Journal, Recovered), JournalError> {
        Self::begin_run(conn, campaign, gate, false, true, departures)
    }

    fn begin_run(
        conn: Connection,
        campaign: &Campaign,
        gate: Gate,
        resume_halted: bool,
        test: bool,
        log: Option<&std::path::Path>,
    ) -> Result<(Journal, Recovered), JournalError> {
        let now = clock::now_string();
        let fingerprint = campaign.content_fingerprint();
        let tx = rusqlite::Transaction::new_unchecked(&conn, TransactionBehavior::Immediate)?;
        // Before anything reads a row's state: the rows a killed run left under its
        // mark are in flight, spelled as such.
        claims::make_explicit(&tx, &campaign.id, &now)?;
        let existing = prior_run(&tx, &campaign.id)?;
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
            Some(prior) => {
                refuse(&tx, campaign, &prior, resume_halted)?;
                let (old, _, plan_run, _, _) = prior;
                if old != fingerprint {
                    // Nobody was messaged yet (or `refuse` said so): the new content
                    // simply replaces the old.
                    tx.execute(
                        "UPDATE campaigns SET fingerprint = ?2, template = ?3, language = ?4 WHERE id = ?1",
                        params![campaign.id, fingerprint, campaign.template.name, campaign.template.language],
                    )?;
                }
                // A test send leaves the plan's run alone: the next run resumes it.
                if !test {
                    tx.execute(
                        "UPDATE campaigns SET plan_run = plan_run + 1 WHERE id = ?1",
                        params![campaign.id],
                    )?;
                }
                plan_run + 1
            }
        };
        let plan_run = if test { TEST_PLAN_RUN } else { plan_run };
        let recovered = recover_in_flight(&tx, &campaign.id, log, &now)?;
        // This run's log, named in the journal in the same transaction: a later run
        // trusts only the log the latest run wrote.
        let nonce = log.map(|_| fastrand::i64(1..));
        tx.execute(
            "UPDATE campaigns SET departure_log = ?2 WHERE id = ?1",
            params![campaign.id, nonce],
        )?;
        // The ledger as the gate loaded it: events recorded since (while the plan was
        // being built, say) are applied at the first claim.
        let consent_seen = gate.consent_seen;
        tx.commit()?;
        // The last run's log spoke for rows that are settled now, and the journal
        // names this run's log instead: nobody will read it again. This run's own
        // log is created only when it starts sending (`start_departures`), so a run
        // that ends before (nothing to send, a refusal, a question answered no)
        // leaves no log behind. Best effort: a log left behind is never trusted,
        // since its nonce is not the one the journal names.
        let departure_log_to_start = log.zip(nonce).map(|(path, nonce)| {
            let _ = std::fs::remove_file(path);
            (path.to_owned(), nonce)
        });
        // A test send goes now to the operator's own numbers: the contacts'
        // quiet hours and caps are not theirs to keep.
        let holds = if test {
            None
        } else {
            crate::hold::Rules::of(campaign)
        };
        if holds.as_ref().is_some_and(crate::hold::Rules::has_caps) {
            hold::ensure_cap_indexes(&conn)?;
        }
        Ok((
            Journal {
                conn,
                campaign_id: campaign.id.clone(),
                plan_run,
                claimed: None,
                session: gate.windows.is_some(),
                record_opt_outs: !matches!(
                    campaign.provider,
                    crate::campaign::ProviderConfig::Simulator(_)
                ),
                consent: gate.consent,
                consent_seen,
                holds,
                messaging_limit: None,
                departures: None,
                departure_log_to_start,
                departure_log_problem: None,
                quiet_claims: Default::default(),
            },
            recovered,
        ))
    }

    /// Creates this run's departure log, before its first claim: from then on a
    /// kill leaves it for the next run. Does nothing when the log was started
    /// already or the run keeps none. A log that cannot be written (a full disk)
    /// leaves the run without one, and [`Journal::departure_log_problem`] says why:
    /// a kill then holds its rows in flight in doubt, as the journal alone would.
    pub fn start_departures(&mut self) {
        let Some((path, nonce)) = self.departure_log_to_start.take() else {
            return;
        };
        match crate::departure_log::Departures::start(&path, nonce) {
            Ok(log) => self.departures = log.map(std::sync::Arc::new),
            Err(e) => self.departure_log_problem = Some(format!("{e:#}")),
        }
    }

    /// Where this run's requests note their departure, once it keeps a log.
    pub fn departures(&self) -> Option<std::sync::Arc<crate::departure_log::Departures>> {
        self.departures.clone()
    }

    /// The run ended with every outcome recorded: its departure log has nothing
    /// left to tell and is removed. A run that ended with rows still in flight (a
    /// journal it could not write) keeps it for the next run.
    pub fn end_departures(&mut self) -> rusqlite::Result<()> {
        let settled = claims::clear_if_settled(&self.conn, &self.campaign_id)?;
        let Some(log) = self.departures.take() else {
            return Ok(());
        };
        let in_flight: i64 = self.conn.query_row(
            "SELECT count(*) FROM journal INDEXED BY journal_by_state
             WHERE campaign_id = ?1 AND state = 'in_flight'",
            params![self.campaign_id],
            |r| r.get(0),
        )?;
        if settled && in_flight == 0 {
            // Best effort: a log left behind is only a file the next run replaces.
            let _ = std::fs::remove_file(log.path());
        } else {
            self.departures = Some(log);
        }
        Ok(())
    }

    /// Why this run keeps no departure log though it was asked to (a full disk, a
    /// directory it may not write): a kill then holds every row in flight in doubt.
    pub fn departure_log_problem(&self) -> Option<&str> {
        self.departure_log_problem.as_deref()
    }

    pub fn campaign_id(&self) -> &str {
        &self.campaign_id
    }

    /// Holds the run's claims to the portfolio's messaging limit.
    pub fn hold_to_messaging_limit(&mut self, guard: crate::messaging_limit::Guard) {
        self.messaging_limit = Some(guard);
    }

    /// The connection, for reads that must see what the journal committed.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Writes a batch of the plan. Rows already journaled keep their state; rows not
    /// yet sent take the latest values.
    pub fn plan(&mut self, batch: &[(u64, Recipient)]) -> rusqlite::Result<()> {
        // A planned row at or before a live mark is in flight (`claims`): rows are
        // planned (and released, below) only before the run's first claim.
        debug_assert!(self.claimed.is_none(), "planning after a claim");
        let now = clock::now_string();
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO journal (campaign_id, person_id, occurrence, phone, line, seq, plan_run,
                     params, state, updated_at, bsuid, send_by, contact)
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'planned', ?9, ?10, ?12, ?13
                 -- Someone erased after the plan's consent was loaded has no event under
                 -- their keys any more: they are not planned (the erasure and this
                 -- insert each hold the write lock, so one sees the other). Two
                 -- lookups, not `subject_key IN (?2, ?11)`: SQLite builds a temporary
                 -- b-tree of a bound IN list at every execution, once per planned row.
                 WHERE EXISTS (SELECT 1 FROM consent_events WHERE subject_key = ?2)
                    OR EXISTS (SELECT 1 FROM consent_events WHERE subject_key = ?11)
                 ON CONFLICT (campaign_id, person_id, occurrence) DO UPDATE SET
                     plan_run = excluded.plan_run,
                     line = excluded.line,
                     seq = excluded.seq,
                     phone = CASE WHEN state IN ('planned', 'deferred') THEN excluded.phone ELSE phone END,
                     bsuid = CASE WHEN state IN ('planned', 'deferred') THEN excluded.bsuid ELSE bsuid END,
                     params = CASE WHEN state IN ('planned', 'deferred') THEN excluded.params ELSE params END,
                     send_by = CASE WHEN state IN ('planned', 'deferred') THEN excluded.send_by ELSE send_by END,
                     contact = CASE WHEN state IN ('planned', 'deferred') THEN excluded.contact ELSE contact END",
            )?;
            for (seq, recipient) in batch {
                let params_json = serde_json::to_string(&recipient.values)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                // A row with both identities teaches the link, as a webhook would.
                if let (Some(phone), Some(bsuid)) = (recipient.phone, &recipient.bsuid) {
                    crate::identity::link(&tx, bsuid, Some(phone), &now)?;
                }
                let person = self
                    .consent
                    .person(recipient.phone, recipient.bsuid.as_ref());
                insert.execute(params![
                    self.campaign_id,
                    person,
                    recipient.occurrence,
                    recipient.phone.map(|p| p.to_string()),
                    recipient.line as i64,
                    *seq as i64,
                    self.plan_run,
                    params_json,
                    now,
                    recipient.bsuid.as_ref().map(|b| b.to_string()),
                    recipient
                        .bsuid
                        .as_ref()
                        .map_or(person, crate::identity::Bsuid::key),
                    recipient.send_by,
                    recipient.contact
                ])?;
                hold::mark_planned(
                    &tx,
                    &self.campaign_id,
                    person,
                    &recipient.occurrence,
                    recipient.time_zone.as_deref(),
                    recipient.hold.as_ref(),
                    &now,
                )?;
            }
        }
        tx.commit()
    }

    /// Expires every row of the campaign still waiting (planned or deferred, by this
    /// plan or an earlier one) whose send-by time has passed: such an occurrence is
    /// never sent, whatever deferred it, even when today's file no longer lists it.
    pub fn expire_past_send_by(&mut self) -> rusqlite::Result<u64> {
        let now = clock::now_string();
        Ok(self.conn.execute(
            "UPDATE journal SET state = 'expired', outcome_at = ?2, updated_at = ?2,
                 error_detail = 'its send-by time ' || send_by || ' passed before it could be sent'
             WHERE campaign_id = ?1 AND state IN ('planned', 'deferred')
               AND send_by IS NOT NULL AND send_by <= ?2",
            params![self.campaign_id, now],
        )? as u64)
    }

    /// Occurrences of this plan that earlier runs already served.
    pub fn already_served(&self) -> rusqlite::Result<u64> {
        already_served(&self.conn, &self.campaign_id, self.plan_run)
    }

    /// Keeps the finished plan's figures with the campaign, for the report's funnel.
    pub fn record_plan_stats(&mut self, stats: &crate::plan::PlanStats) -> rusqlite::Result<()> {
        let json = serde_json::to_string(stats)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        self.conn.execute(
            "UPDATE campaigns SET plan_stats = ?2 WHERE id = ?1",
            params![self.campaign_id, json],
        )?;
        Ok(())
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
        settle::resolve_in_doubt(&self.conn, &self.campaign_id)
    }

    /// Puts rows held in doubt back in the plan: the operator chose to resend them.
    pub fn release_in_doubt(&mut self) -> rusqlite::Result<u64> {
        debug_assert!(self.claimed.is_none(), "releasing after a claim");
        Ok(self.conn.execute(
            "UPDATE journal SET state = 'planned', updated_at = ?3
             WHERE campaign_id = ?1 AND plan_run = ?2 AND state = 'in_doubt'",
            params![self.campaign_id, self.plan_run, clock::now_string()],
        )? as u64)
    }

    pub fn counts(&self) -> rusqlite::Result<Counts> {
        counts(&self.conn, &self.campaign_id, Some(self.plan_run))
    }

    /// Failed (or refused) rows of this plan by error code.
    pub fn failures_by_code(&self) -> rusqlite::Result<std::collections::BTreeMap<String, u64>> {
        failures_by_code(&self.conn, &self.campaign_id, self.plan_run)
    }

    /// Claims up to `limit` rows for sending (due retries first, then planned rows,
    /// of which at most `new_limit`), re-checking consent, and records the intent
    /// durably, together with `pending` outcomes, in one transaction.
    ///
    /// The caller holds a pacing ticket for each of `limit` rows and writes every
    /// claimed request at once: a row is in flight only from just before its request
    /// leaves, so a crash holds in doubt only messages that may have gone out.
    pub fn claim(
        &mut self,
        limit: usize,
        new_limit: usize,
        pending: &[Outcome],
    ) -> rusqlite::Result<Claimed> {
        let now = clock::now_string();
        // A claim that failed (and rolled back) may have left its estimate behind.
        if let Some(guard) = self.messaging_limit.as_mut() {
            guard.end_claim();
        }
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        let version: i64 = tx
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?;
        let probe = !self.unseen(pending, version);
        record_in(
            &tx,
            &self.campaign_id,
            self.record_opt_outs,
            pending,
            &now,
            probe,
        )?;
        let mut claimed = Claimed::default();
        // A halt ordered from outside this run (a webhook, another command) stops it
        // before another message leaves.
        let halt: Option<(Option<String>, Option<String>)> = tx
            .prepare_cached("SELECT halted_at, halt_reason FROM campaigns WHERE id = ?1")?
            .query_row(params![self.campaign_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((Some(_), reason)) = halt {
            claimed.halted = Some(reason.unwrap_or_default());
            tx.commit()?;
            return Ok(claimed);
        }
        // Opt-outs recorded since the last claim (by the webhook server, an operator)
        // win over the plan.
        self.consent_seen = consent::changes_since(&tx, self.consent_seen, &mut self.consent)?;
        // Rows are marked in flight by the statement that picks them (one statement
        // per kind instead of a select and an update per row); the few a check
        // below turns away are set to what they became in the same transaction.
        // `LIMIT ?n + 0`, not `LIMIT ?n`: SQLite plans a bare bound LIMIT with its
        // value, so it re-prepared both statements at every claim (a fifth of the
        // writer's time at 1,000/s).
        let mut candidates = Vec::with_capacity(limit);
        // This claim's mark, kept once the transaction commits.
        let mut claimed_through = None;
        // Rows claimed again (retries, rows held or given back, planned rows sent
        // before), not planned rows on their first attempt.
        let mut retries = 0;
        // Usually no retry is due. Asking first is a fifth of the cost of running the
        // claiming UPDATE to find nothing: that one builds three temporary b-trees
        // (its IN list, its rows to update, its RETURNING rows) at every execution.
        let any_due = limit > 0
            && tx
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM journal INDEXED BY journal_due
                                    WHERE campaign_id = ?1 AND plan_run = ?2 AND state = 'deferred'
                                      AND retry_at <= ?3)",
                )?
                .query_row(params![self.campaign_id, self.plan_run, now], |r| {
                    r.get::<_, bool>(0)
                })?;
        if limit > 0 {
            // Rows never attempted (held by quiet hours or a cap, or claimed ahead and
            // given back) are new messages: `new_limit` counts them, as it counts
            // planned rows; retries it does not.
            let mut unattempted = 0;
            if any_due {
                let mut due = tx.prepare_cached(
                    "UPDATE journal SET state = 'in_flight', attempts = attempts + 1, intent_at = ?5,
                         updated_at = ?5, retry_at = NULL
                     WHERE id IN (SELECT id FROM journal INDEXED BY journal_due
                                  WHERE campaign_id = ?1 AND plan_run = ?2 AND state = 'deferred'
                                    AND retry_at <= ?3 AND (attempts = 0) = ?6
                                  ORDER BY retry_at LIMIT ?4 + 0)
                     RETURNING person_id, occurrence, phone, params, attempts, send_by, id, deferrals,
                         bsuid, time_zone",
                )?;
                for never_attempted in [false, true] {
                    let most = if never_attempted {
                        limit.saturating_sub(candidates.len()).min(new_limit)
                    } else {
                        limit
                    };
                    if most == 0 {
                        continue;
                    }
                    let before = candidates.len();
                    let rows = due.query_map(
                        params![
                            self.campaign_id,
                            self.plan_run,
                            now,
                            most as i64,
                            now,
                            never_attempted
                        ],
                        candidate,
                    )?;
                    for row in rows {
                        candidates.push(row?);
                    }
                    if never_attempted {
                        unattempted = candidates.len() - before;
                    }
                }
            }
            retries = candidates.len();
            let room = limit
                .saturating_sub(candidates.len())
                .min(new_limit - unattempted);
            if room > 0 {
                // Planned rows are read, not written: the mark moved past them below
                // makes them in flight (`claims`). In send order from this run's last
                // claim; `seq >= ?4` bounds the index range, the rest breaks ties.
                let after = self.claimed.unwrap_or(claims::Position {
                    seq: i64::MIN,
                    id: i64::MIN,
                });
                let mut planned = tx.prepare_cached(
                    "SELECT person_id, occurrence, phone, params, attempts + 1, send_by, id, deferrals,
                         bsuid, time_zone, seq
                     FROM journal INDEXED BY journal_by_state
                     WHERE campaign_id = ?1 AND state = 'planned' AND seq >= ?4
                       AND (seq > ?4 OR id > ?5) AND plan_run = ?2
                     ORDER BY seq, id LIMIT ?3 + 0",
                )?;
                let rows = planned.query_map(
                    params![
                        self.campaign_id,
                        self.plan_run,
                        room as i64,
                        after.seq,
                        after.id
                    ],
                    |r| Ok((candidate(r)?, r.get::<_, i64>(10)?)),
                )?;
                let mut last = None;
                for row in rows {
                    let (c, seq) = row?;
                    last = Some(claims::Position { seq, id: c.row });
                    // A planned row sent before (held in doubt, then released to be
                    // sent again) may carry its earlier message's statuses.
                    if c.attempts > 1 {
                        retries += 1;
                    }
                    candidates.push(c);
                }
                if let Some(last) = last {
                    claims::advance(&tx, &self.campaign_id, self.plan_run, last, &now)?;
                    claimed_through = Some(last);
                }
            }
        }
        {
            let mut settled = tx.prepare_cached(
                "UPDATE journal SET state = ?2, error_detail = ?3, outcome_at = ?4, updated_at = ?4,
                     attempts = attempts - (state = 'in_flight'), intent_at = NULL
                 WHERE id = ?1",
            )?;
            let mut limited = tx.prepare_cached(
                "UPDATE journal SET state = 'deferred', error_code = NULL, error_detail = ?2,
                     retry_at = ?3, updated_at = ?4, attempts = attempts - (state = 'in_flight'),
                     intent_at = NULL
                 WHERE id = ?1",
            )?;
            let now_instant = clock::now();
            let claimed_at: std::sync::Arc<str> = std::sync::Arc::from(now.as_str());
            for c in candidates {
                let skip = if c.send_by.as_deref().is_some_and(|by| by <= now.as_str()) {
                    claimed.expired += 1;
                    Some((
                        State::Expired,
                        format!(
                            "its send-by time {} passed before it could be sent",
                            c.send_by.as_deref().unwrap_or_default()
                        ),
                    ))
                } else if (c.phone.is_some() || c.bsuid.is_some())
                    && let Err(reason) = self.consent.check_contact(c.phone, c.bsuid.as_ref())
                {
                    claimed.opted_out += 1;
                    Some((
                        State::OptedOut,
                        format!("{reason} (recorded after the plan was made)"),
                    ))
                } else if self.session
                    && !match c.phone {
                        Some(phone) => crate::service_window::window_open(&tx, phone, now_instant)?,
                        // Windows are recorded by number.
                        None => false,
                    }
                {
                    claimed.window_closed += 1;
                    Some((
                        State::Failed,
                        "no open customer-service window: it closed before this message's turn"
                            .to_owned(),
                    ))
                } else if c.phone.is_none() && c.bsuid.is_none() {
                    claimed.unreachable += 1;
                    Some((
                        State::Failed,
                        "no number and no business-scoped user ID to send to".to_owned(),
                    ))
                } else {
                    None
                };
                if let Some((state, detail)) = skip {
                    settled.execute(params![c.row, state, detail, now])?;
                    continue;
                }
                let to = match (c.phone, c.bsuid) {
                    (Some(phone), _) => To::Phone(phone),
                    (None, Some(bsuid)) => To::Bsuid {
                        bsuid: bsuid.to_string(),
                        person: c.key.person,
                    },
                    (None, None) => continue,
                };
                if let Some(rules) = &self.holds
                    && let Some(hold) = rules.at_claim(
                        &tx,
                        c.key.person,
                        c.phone,
                        c.time_zone.as_deref(),
                        now_instant,
                    )?
                {
                    hold::defer(&tx, c.row, &hold, &now)?;
                    claimed.held += 1;
                    continue;
                }
                // Last, once the row is sure to be sent: the reservation is made here.
                if let Some(guard) = self.messaging_limit.as_mut()
                    && let crate::messaging_limit::Verdict::Full { detail, retry_at } =
                        guard.admit(&tx, c.key.person, to.phone(), now_instant)?
                {
                    claimed.limited += 1;
                    limited.execute(params![c.row, detail, retry_at, now])?;
                    continue;
                }
                claimed.jobs.push(Job {
                    row: c.row,
                    key: c.key,
                    to,
                    values: c.values,
                    // This attempt included: a retry's claim counted it, a planned
                    // row's outcome will.
                    attempts: c.attempts,
                    deferrals: c.deferrals,
                    claimed_at: std::sync::Arc::clone(&claimed_at),
                });
            }
        }
        if let Some(guard) = self.messaging_limit.as_mut() {
            guard.end_claim();
        }
        if claimed.jobs.is_empty() {
            // Rows never attempted wait for a later run once `--limit` is reached.
            claimed.next_retry_at = tx
                .prepare_cached(
                    "SELECT min(retry_at) FROM journal INDEXED BY journal_due
                     WHERE campaign_id = ?1 AND plan_run = ?2 AND state = 'deferred'
                       AND (?3 OR attempts > 0)",
                )?
                .query_row(
                    params![self.campaign_id, self.plan_run, new_limit > 0],
                    |r| r.get(0),
                )?;
        }
        let quiet = retries == 0 && !claimed.jobs.is_empty();
        let claimed_at = claimed
            .jobs
            .first()
            .map(|j| std::sync::Arc::clone(&j.claimed_at));
        tx.commit()?;
        if claimed_through.is_some() {
            self.claimed = claimed_through;
        }
        if let Some(claimed_at) = claimed_at.filter(|_| quiet) {
            if self.quiet_claims.len() == QUIET_CLAIMS {
                self.quiet_claims.pop_front();
            }
            self.quiet_claims.push_back((claimed_at, version));
        }
        Ok(claimed)
    }

    /// Whether no status can have been recorded yet for any of `outcomes`, so the
    /// probe for statuses that came before their message's answer would find none:
    /// each was claimed as a planned row (which has no status folded) by a claim
    /// that saw `version` too. Statuses come from other connections (the webhook
    /// server); the database's `data_version` tells whether any of them committed
    /// since, and a status names a message only after its request left, after the
    /// claim. Probing every batch was 6% of the journal writer's instructions.
    fn unseen(&self, outcomes: &[Outcome], version: i64) -> bool {
        let mut known: Option<&std::sync::Arc<str>> = None;
        outcomes.iter().all(|o| {
            if known.is_some_and(|k| std::sync::Arc::ptr_eq(k, &o.claimed_at)) {
                return true;
            }
            let quiet = self
                .quiet_claims
                .iter()
                .rev()
                .find(|(at, _)| std::sync::Arc::ptr_eq(at, &o.claimed_at))
                .is_some_and(|(_, v)| *v == version);
            if quiet {
                known = Some(&o.claimed_at);
            }
            quiet
        })
    }

    /// How long a write waits for another connection's lock before SQLite refuses
    /// it as busy.
    pub fn set_busy_timeout(&self, timeout: Duration) -> rusqlite::Result<()> {
        self.conn.busy_timeout(timeout)
    }

    /// Records outcomes durably.
    pub fn record(&mut self, outcomes: &[Outcome]) -> rusqlite::Result<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        self.record_then_halt(outcomes, None)
    }

    /// Records outcomes and the halt in one transaction: a retry after a refusal
    /// never applies the outcomes twice (a deferral would count twice).
    pub fn record_and_halt(&mut self, outcomes: &[Outcome], reason: &str) -> rusqlite::Result<()> {
        self.record_then_halt(outcomes, Some(reason))
    }

    /// Outcomes recorded outside a claim are always probed for early statuses: no
    /// claim's `data_version` vouches for them.
    fn record_then_halt(
        &mut self,
        outcomes: &[Outcome],
        halt: Option<&str>,
    ) -> rusqlite::Result<()> {
        let now = clock::now_string();
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        record_in(
            &tx,
            &self.campaign_id,
            self.record_opt_outs,
            outcomes,
            &now,
            true,
        )?;
        if let Some(reason) = halt {
            halt_in(&tx, &self.campaign_id, reason, &now)?;
        }
        tx.commit()
    }

    /// Marks the campaign halted: later runs refuse until `--resume-halted`.
    pub fn halt(&mut self, reason: &str) -> rusqlite::Result<()> {
        halt_in(&self.conn, &self.campaign_id, reason, &clock::now_string())
    }
}

fn halt_in(conn: &Connection, campaign_id: &str, reason: &str, now: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE campaigns SET halted_at = coalesce(halted_at, ?2),
             halt_reason = coalesce(halt_reason, ?3) WHERE id = ?1",
        params![campaign_id, now, reason],
    )?;
    Ok(())
}

/// Settles the rows the last run left in flight: those its departure log (at
/// `log`, if it is the one the journal names and is trusted) proves never left
/// are due again as if never claimed; the others are held in doubt.
fn recover_in_flight(
    tx: &Connection,
    campaign_id: &str,
    log: Option<&std::path::Path>,
    now: &str,
) -> rusqlite::Result<Recovered> {
    let mut recovered = Recovered::default();
    let mut named = Vec::new();
    for left in left_in_flight(tx, campaign_id, log)? {
        if let Some(answer) = &left.answer {
            let at = chrono::DateTime::from_timestamp_millis(answer.at_ms)
                .map_or_else(|| now.to_owned(), clock::format);
            tx.prepare_cached(
                "UPDATE journal SET state = 'accepted', message_id = ?2, outcome_at = ?3,
                     updated_at = ?4, error_code = NULL, error_detail = NULL, retry_at = NULL
                 WHERE id = ?1",
            )?
            .execute(params![left.row, answer.message_id, at, now])?;
            named.push(left.row);
            recovered.accepted += 1;
        } else if left.never_left {
            // A retry goes back to waiting as a retry, due now; a first attempt to
            // the plan, which this run's plan takes up again. A test send's row is
            // the operator's to send again (`send --to`): left planned under the
            // test run, the next test send to another number would send it too.
            tx.prepare_cached(
                "UPDATE journal SET
                     state = CASE WHEN plan_run = ?3 THEN 'failed'
                                  WHEN attempts > 1 THEN 'deferred' ELSE 'planned' END,
                     error_detail = CASE WHEN plan_run = ?3
                         THEN 'the test send stopped before this message left: it was not sent'
                         ELSE error_detail END,
                     retry_at = CASE WHEN plan_run <> ?3 AND attempts > 1 THEN ?2 END,
                     attempts = attempts - 1, intent_at = NULL, updated_at = ?2
                 WHERE id = ?1",
            )?
            .execute(params![left.row, now, TEST_PLAN_RUN])?;
            recovered.never_left += 1;
        } else {
            tx.prepare_cached(
                "UPDATE journal SET state = 'in_doubt', updated_at = ?2,
                     error_detail = 'the process stopped while this message was in flight'
                 WHERE id = ?1",
            )?
            .execute(params![left.row, now])?;
            recovered.in_doubt += 1;
        }
    }
    // A status may have come for them while the journal did not know their ids.
    fold::refold_rows(tx, &named)?;
    Ok(recovered)
}

/// A row the campaign's last run left in flight.
struct LeftInFlight {
    row: i64,
    /// That run's departure log proves its request never left.
    never_left: bool,
    /// That run's departure log kept its acceptance.
    answer: Option<crate::departure_log::Answer>,
    /// A test send's row (`send --to`).
    test: bool,
}

/// The rows `campaign_id`'s last run left in flight, told apart by its departure log
/// at `log` (when the journal names one). Reads only: a run recovers them
/// ([`recover_in_flight`]), a dry run counts them (`projection`).
fn left_in_flight(
    conn: &Connection,
    campaign_id: &str,
    log: Option<&std::path::Path>,
) -> rusqlite::Result<Vec<LeftInFlight>> {
    // A run turned the rows under the mark into `in_flight` rows first; a dry run
    // reads them where they are.
    let in_flight: Vec<(i64, bool)> = conn
        .prepare(concat!(
            "SELECT id, occurrence GLOB 'test:*' FROM journal INDEXED BY journal_by_state
             WHERE campaign_id = ?1 AND state = 'in_flight'
             UNION ALL
             SELECT j.id, j.occurrence GLOB 'test:*' FROM journal j
             WHERE j.campaign_id = ?1 AND ",
            claims::under_mark!("j")
        ))?
        .query_map(params![campaign_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    if in_flight.is_empty() {
        return Ok(Vec::new());
    }
    let nonce: Option<i64> = conn.query_row(
        "SELECT departure_log FROM campaigns WHERE id = ?1",
        params![campaign_id],
        |r| r.get(0),
    )?;
    let previous = log
        .zip(nonce)
        .and_then(|(path, nonce)| crate::departure_log::previous(path, nonce));
    Ok(in_flight
        .into_iter()
        .map(|(row, test)| {
            let answer = previous
                .as_ref()
                .and_then(|p| p.answered.get(&row).cloned());
            LeftInFlight {
                row,
                never_left: answer.is_none()
                    && previous
                        .as_ref()
                        .is_some_and(|p| !p.departed.contains(&row)),
                answer,
                test,
            }
        })
        .collect())
}

/// A row a claim may send.
struct Candidate {
    row: i64,
    deferrals: u32,
    key: RowKey,
    phone: Option<E164>,
    bsuid: Option<crate::identity::Bsuid>,
    values: Vec<String>,
    attempts: u32,
    send_by: Option<String>,
    /// The contact's zone when the contacts file gave one, for quiet hours.
    time_zone: Option<String>,
}

/// fingerprint, created_at, plan_run, halted_at, halt_reason
type PriorRun = (String, String, i64, Option<String>, Option<String>);

/// What the journal knows of `campaign_id` from its earlier runs, if any: a run
/// and a dry run start from it alike.
fn prior_run(conn: &Connection, campaign_id: &str) -> rusqlite::Result<Option<PriorRun>> {
    conn.query_row(
        "SELECT fingerprint, created_at, plan_run, halted_at, halt_reason
         FROM campaigns WHERE id = ?1",
        params![campaign_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )
    .optional()
}

/// Refuses a run of a campaign the journal knows (`prior`) when its content changed
/// after someone was messaged, or when it halted and the operator did not resume it.
/// Read-only: a run and a dry run refuse alike.
fn refuse(
    conn: &Connection,
    campaign: &Campaign,
    prior: &PriorRun,
    resume_halted: bool,
) -> Result<(), JournalError> {
    let (old, created_at, _, halted_at, halt_reason) = prior;
    if *old != campaign.content_fingerprint() {
        let messaged: i64 = conn.query_row(
            concat!(
                "SELECT count(*) FROM campaigns c CROSS JOIN journal j
                 WHERE c.id = ?1 AND j.campaign_id = ?1 AND (j.state <> 'planned' OR ",
                claims::under_mark_of!("j", "c"),
                ")"
            ),
            params![campaign.id],
            |r| r.get(0),
        )?;
        if messaged > 0 {
            return Err(JournalError::ContentChanged {
                id: campaign.id.clone(),
                since: created_at.clone(),
            });
        }
    }
    // A halt is lifted only by `resume`, once the operator confirmed the run.
    if let Some(at) = halted_at
        && !resume_halted
    {
        return Err(JournalError::Halted {
            id: campaign.id.clone(),
            at: at.clone(),
            reason: halt_reason.clone().unwrap_or_default(),
        });
    }
    Ok(())
}

fn candidate(row: &rusqlite::Row<'_>) -> rusqlite::Result<Candidate> {
    // Read in place: both are only parsed, and a claim reads them for every row.
    let phone = row
        .get_ref(2)?
        .as_str_or_null()?
        .and_then(E164::from_digits);
    let values: Vec<String> = serde_json::from_str(row.get_ref(3)?.as_str()?).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(Candidate {
        row: row.get(6)?,
        deferrals: row.get(7)?,
        key: RowKey {
            person: row.get(0)?,
            occurrence: row.get(1)?,
        },
        phone,
        bsuid: row
            .get::<_, Option<String>>(8)?
            .and_then(|b| crate::identity::Bsuid::parse(&b).ok()),
        values,
        attempts: row.get(4)?,
        send_by: row.get(5)?,
        time_zone: row.get(9)?,
    })
}

/// A disposition other than an acceptance as the journal row's columns.
struct Columns<'a> {
    state: State,
    code: Option<i64>,
    detail: &'a str,
    retry_at: Option<String>,
    deferral: bool,
}

impl<'a> Columns<'a> {
    fn error(state: State, code: Option<i64>, detail: &'a str) -> Self {
        Columns {
            state,
            code,
            detail,
            retry_at: None,
            deferral: false,
        }
    }
}

fn record_in(
    conn: &Connection,
    campaign_id: &str,
    record_opt_outs: bool,
    outcomes: &[Outcome],
    now: &str,
    probe_early_statuses: bool,
) -> rusqlite::Result<()> {
    if outcomes.is_empty() {
        return Ok(());
    }
    // A row still `planned` was claimed under the campaign's mark (`claims`): its
    // attempt and intent are written now, with its outcome.
    let mut update = conn.prepare_cached(
        "UPDATE journal SET state = ?2, error_code = ?3, error_detail = ?4, retry_at = ?5,
             outcome_at = ?6, updated_at = ?6, deferrals = deferrals + ?7,
             attempts = attempts + (state = 'planned'),
             intent_at = CASE WHEN state = 'planned' THEN ?8 ELSE intent_at END
         WHERE id = ?1",
    )?;
    let mut accepted = conn.prepare_cached(
        "UPDATE journal SET state = 'accepted', message_id = coalesce(?2, message_id),
             wa_id = coalesce(?3, wa_id), message_status = coalesce(?4, message_status),
             error_code = NULL, error_detail = NULL, retry_at = NULL, outcome_at = ?5,
             updated_at = ?5, attempts = attempts + (state = 'planned'),
             intent_at = CASE WHEN state = 'planned' THEN ?6 ELSE intent_at END
         WHERE id = ?1",
    )?;
    let now_instant = clock::now();
    // Rows whose message id this batch recorded.
    let mut named: Vec<i64> = Vec::with_capacity(outcomes.len());
    for Outcome {
        row,
        key,
        to,
        disposition,
        claimed_at,
    } in outcomes
    {
        let c = match disposition {
            Disposition::Unsent { detail } => {
                // A planned row under the mark waits as a retry due now (the mark
                // still covers its position), with no attempt; a retry claimed
                // row by row gives its attempt back, as recovery does for a row
                // whose request never left.
                conn.prepare_cached(
                    "UPDATE journal SET state = 'deferred', retry_at = ?2, error_code = NULL,
                         error_detail = ?3, updated_at = ?4,
                         attempts = attempts - (state = 'in_flight'),
                         intent_at = CASE WHEN state = 'in_flight' THEN NULL ELSE intent_at END
                     WHERE id = ?1",
                )?
                .execute(params![row, clock::format(now_instant), detail, now])?;
                continue;
            }
            Disposition::Accepted {
                message_id,
                wa_id,
                status,
            } => {
                // Nearly every outcome: its own statement, with only the values an
                // acceptance has to bind (each text bound is copied by SQLite).
                accepted.execute(params![
                    row,
                    message_id,
                    wa_id,
                    status,
                    now,
                    claimed_at.as_ref()
                ])?;
                if message_id.is_some() {
                    named.push(*row);
                }
                continue;
            }
            Disposition::Failed { code, detail } => Columns::error(State::Failed, *code, detail),
            Disposition::Deferred {
                code,
                detail,
                retry_in,
                by_rule,
            } => Columns {
                retry_at: Some(retry_at(now_instant, *retry_in)),
                deferral: *by_rule,
                ..Columns::error(State::Deferred, *code, detail)
            },
            Disposition::InDoubt { code, detail } => Columns::error(State::InDoubt, *code, detail),
            Disposition::OptedOut { code, detail, .. } => {
                Columns::error(State::OptedOut, *code, detail)
            }
        };
        update.execute(params![
            row,
            c.state,
            c.code,
            c.detail,
            c.retry_at,
            now,
            i64::from(c.deferral),
            claimed_at.as_ref()
        ])?;
        if let Disposition::OptedOut {
            purpose,
            code,
            detail,
        } = disposition
            && record_opt_outs
        {
            // A number by its digits, as before BSUIDs; a BSUID as it is.
            let address = match to {
                To::Phone(phone) => phone.digits().to_string(),
                To::Bsuid { bsuid, .. } => bsuid.clone(),
            };
            let event = NewEvent {
                subject: to.identity(),
                purpose: *purpose,
                action: Action::OptOut,
                occurred_at: now.to_owned(),
                method: format!("provider_error_{}", code.unwrap_or_default()),
                recorded_via: RecordedVia::Campaign,
                source: format!("campaign {campaign_id}: send to {to} refused: {detail}"),
                evidence: None,
                notice: None,
                actor: format!("wacampaign send {campaign_id}"),
                // The same key as before occurrences, for one message per person.
                dedupe_key: Some(if key.occurrence.is_empty() {
                    format!("campaign:{campaign_id}:{}:opt_out", address)
                } else {
                    format!(
                        "campaign:{campaign_id}:{}:{}:opt_out",
                        address, key.occurrence
                    )
                }),
            };
            consent::append_in(conn, &event)?;
        }
    }
    // A status can arrive before the answer that names its message is recorded.
    if probe_early_statuses {
        fold::refold_rows(conn, &named)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    #[test]
    fn a_halt_reason_ending_in_a_full_stop_reads_as_one_sentence() {
        let e = JournalError::Halted {
            id: "promo".into(),
            at: "2026-11-27T10:00:00Z".into(),
            reason: "the provider refused with error 131031: Account has been locked.".into(),
        };
        let text = e.to_string();
        assert!(!text.contains(".."), "{text}");
        assert!(text.contains("locked. Fix the cause"), "{text}");
    }

    /// A database with one campaign and rows in the given states, keyed by phone.
    fn journal_with(rows: &[(&str, &str, Option<&str>)]) -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("w.db")).unwrap();
        db.conn
            .execute(
                "INSERT INTO campaigns (id, fingerprint, template, language, category, provider,
                     created_at, plan_run)
                 VALUES ('c', 'f', 't', 'es_MX', 'utility', 'cloud_api', '2026-01-01T00:00:00Z', 1)",
                [],
            )
            .unwrap();
        for (seq, (phone, state, send_by)) in rows.iter().enumerate() {
            let e164 = E164::from_digits(phone).unwrap();
            db.conn
                .execute(
                    "INSERT INTO journal (campaign_id, person_id, occurrence, phone, line, seq, plan_run,
                         params, state, attempts, retry_at, send_by, updated_at)
                     VALUES ('c', ?1, 'appt-1', ?2, 2, ?3, 1, '[]', ?4, 0, '2026-01-01T00:00:00Z', ?5,
                             '2026-01-01T00:00:00Z')",
                    params![crate::row_key::person_of(e164), e164.to_string(), seq as i64, state, send_by],
                )
                .unwrap();
        }
        (dir, db)
    }

    fn state_of(db: &Db, phone: &str) -> State {
        db.conn
            .query_row(
                "SELECT state FROM journal WHERE person_id = ?1",
                params![crate::row_key::person_of(E164::from_digits(phone).unwrap())],
                |r| r.get(0),
            )
            .unwrap()
    }

    #[test]
    fn an_accepted_message_refused_later_is_deferred_once() {
        let (_dir, db) = journal_with(&[("525512345678", "accepted", None)]);
        let row = settle::RowRef {
            campaign_id: "c".into(),
            key: RowKey::for_phone(E164::from_digits("525512345678").unwrap(), "appt-1"),
        };
        let now = "2026-01-02T00:00:00Z";
        let until = "2026-01-03T00:00:00Z";
        assert!(
            settle::defer_accepted(&db.conn, &row, until, Some(131_049), "limit", 3, now).unwrap()
        );
        assert!(
            !settle::defer_accepted(&db.conn, &row, until, Some(131_049), "limit", 3, now).unwrap(),
            "the same status again changes nothing"
        );
        let (state, retry_at, deferrals): (State, String, i64) = db
            .conn
            .query_row("SELECT state, retry_at, deferrals FROM journal", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(
            (state, retry_at.as_str(), deferrals),
            (State::Deferred, until, 1)
        );
    }

    #[test]
    fn a_claim_expires_what_is_past_its_send_by_and_stops_on_an_outside_halt() {
        let (_dir, db) = journal_with(&[
            ("525512345678", "deferred", Some("2000-01-01T00:00:00Z")),
            ("525512345679", "deferred", Some("2999-01-01T00:00:00Z")),
        ]);
        let path = db.path().to_owned();
        let mut journal = journal_over(db, &["525512345678", "525512345679"]);
        let claimed = journal.claim(10, 10, &[]).unwrap();
        assert_eq!(claimed.expired, 1);
        assert_eq!(claimed.jobs.len(), 1, "the other is sent");
        let other = Db::open(&path).unwrap();
        assert_eq!(state_of(&other, "525512345678"), State::Expired);
        assert_eq!(state_of(&other, "525512345679"), State::InFlight);
        assert!(
            settle::halt_campaign(&other.conn, "c", "template paused", "2026-01-01T00:00:00Z")
                .unwrap()
        );
        let claimed = journal.claim(10, 10, &[]).unwrap();
        assert_eq!(claimed.halted.as_deref(), Some("template paused"));
        assert!(claimed.jobs.is_empty());
    }

    #[test]
    fn a_run_expires_every_waiting_row_past_its_send_by_whatever_its_plan() {
        let (_dir, db) = journal_with(&[
            ("525512345670", "deferred", Some("2000-01-01T00:00:00Z")),
            ("525512345671", "planned", Some("2000-01-01T00:00:00Z")),
            ("525512345672", "accepted", Some("2000-01-01T00:00:00Z")),
            ("525512345673", "deferred", Some("2999-01-01T00:00:00Z")),
            ("525512345674", "planned", None),
        ]);
        let path = db.path().to_owned();
        let mut journal = Journal {
            // A later plan: the rows above belong to an earlier one.
            plan_run: 2,
            ..journal_over(db, &[])
        };
        assert_eq!(journal.expire_past_send_by().unwrap(), 2);
        let other = Db::open(&path).unwrap();
        assert_eq!(state_of(&other, "525512345670"), State::Expired);
        assert_eq!(state_of(&other, "525512345671"), State::Expired);
        assert_eq!(state_of(&other, "525512345672"), State::Accepted);
        assert_eq!(state_of(&other, "525512345673"), State::Deferred);
        assert_eq!(state_of(&other, "525512345674"), State::Planned);
        assert_eq!(journal.expire_past_send_by().unwrap(), 0, "once");
    }

    /// A journal over `db` for campaign `c`'s plan run 1, with everyone in `phones`
    /// opted in.
    fn journal_over(db: Db, phones: &[&str]) -> Journal {
        let mut consent = ConsentIndex::empty(Purpose::Utility);
        for phone in phones {
            consent.set(
                E164::from_digits(phone).unwrap(),
                consent::Standing::OptedIn {
                    since: "2026-01-01T00:00:00Z".into(),
                    method: "web_form".into(),
                },
            );
        }
        Journal {
            conn: db.conn,
            campaign_id: "c".into(),
            plan_run: 1,
            claimed: None,
            consent,
            consent_seen: i64::MAX,
            session: false,
            record_opt_outs: false,
            holds: None,
            messaging_limit: None,
            departures: None,
            departure_log_to_start: None,
            departure_log_problem: None,
            quiet_claims: Default::default(),
        }
    }

    fn accepted(job: &Job, message_id: &str) -> Outcome {
        Outcome {
            row: job.row,
            key: job.key.clone(),
            to: job.to.clone(),
            disposition: Disposition::Accepted {
                message_id: Some(message_id.to_owned()),
                wa_id: None,
                status: None,
            },
            claimed_at: std::sync::Arc::clone(&job.claimed_at),
        }
    }

    #[test]
    fn a_claim_holds_planned_rows_in_flight_by_its_mark_and_a_later_run_spells_them_out() {
        let phones = [
            "525512345670",
            "525512345671",
            "525512345672",
            "525512345673",
            "525512345674",
        ];
        let rows: Vec<_> = phones.iter().map(|p| (*p, "planned", None)).collect();
        let (_dir, db) = journal_with(&rows);
        let path = db.path().to_owned();
        let other = Db::open(&path).unwrap();
        let mut journal = journal_over(db, &phones);
        let claimed = journal.claim(3, 3, &[]).unwrap();
        let sent: Vec<String> = claimed.jobs.iter().map(|j| j.to.to_string()).collect();
        assert_eq!(
            sent,
            ["+525512345670", "+525512345671", "+525512345672"],
            "in plan order"
        );
        assert!(claimed.jobs.iter().all(|j| j.attempts == 1));

        // The rows were not written, yet every reader takes them as in flight.
        let raw: i64 = other
            .conn
            .query_row(
                "SELECT count(*) FROM journal WHERE state = 'planned'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(raw, 5, "a claim of planned rows writes only the mark");
        let counts = query::counts(&other.conn, "c", Some(1)).unwrap();
        assert_eq!((counts.in_flight, counts.planned), (3, 2));
        let claim_time = Some(claimed.jobs[0].claimed_at.to_string());
        let mut listed = Vec::new();
        query::rows(&other.conn, "c", 1, Some(State::InFlight), |row| {
            listed.push((row.phone, row.attempts, row.intent_at));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            listed,
            phones[..3]
                .iter()
                .map(|p| (format!("+{p}"), 1, claim_time.clone()))
                .collect::<Vec<_>>(),
            "status lists them in flight, an attempt each, since the claim"
        );
        let person = crate::row_key::person_of(E164::from_digits(phones[1]).unwrap());
        let of_person = query::messages_of_person(&other.conn, person).unwrap();
        assert_eq!(
            (
                of_person[0].state,
                of_person[0].attempts,
                &of_person[0].intent_at
            ),
            (State::InFlight, 1, &claim_time),
            "and so does a subject's access export"
        );
        assert_eq!(
            query::in_flight_to(&other.conn, &[person])
                .unwrap()
                .as_deref(),
            Some("c"),
            "erasure waits for them"
        );

        // The first is answered: its outcome writes its attempt and intent too.
        journal
            .record(&[accepted(&claimed.jobs[0], "wamid.A")])
            .unwrap();
        let (state, attempts, intent_at): (State, i64, Option<String>) = other
            .conn
            .query_row(
                "SELECT state, attempts, intent_at FROM journal WHERE message_id = 'wamid.A'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((state, attempts), (State::Accepted, 1));
        assert_eq!(intent_at.as_deref(), Some(&*claimed.jobs[0].claimed_at));

        // The next claim goes on after the mark.
        let next = journal.claim(10, 10, &[]).unwrap();
        let sent: Vec<String> = next.jobs.iter().map(|j| j.to.to_string()).collect();
        assert_eq!(sent, ["+525512345673", "+525512345674"]);
        journal
            .record(&[accepted(&next.jobs[0], "wamid.D")])
            .unwrap();

        // The process dies with three rows unanswered; the next run's first step
        // writes them in flight, as a claim once did, and clears the mark.
        drop(journal);
        let now = "2026-11-28T12:00:00Z";
        assert_eq!(claims::make_explicit(&other.conn, "c", now).unwrap(), 3);
        let states: Vec<(State, i64, Option<String>)> = other
            .conn
            .prepare("SELECT state, attempts, intent_at FROM journal ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let claim_time = Some(next.jobs[0].claimed_at.to_string());
        assert_eq!(
            states,
            [
                (State::Accepted, 1, intent_at),
                (State::InFlight, 1, claim_time.clone()),
                (State::InFlight, 1, claim_time.clone()),
                (State::Accepted, 1, claim_time.clone()),
                (State::InFlight, 1, claim_time),
            ],
            "in flight since the latest claim, the time the mark keeps"
        );
        let mark: Option<i64> = other
            .conn
            .query_row("SELECT claimed_run FROM campaigns", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mark, None);
        assert_eq!(
            claims::make_explicit(&other.conn, "c", now).unwrap(),
            0,
            "once"
        );
        let counts = query::counts(&other.conn, "c", Some(1)).unwrap();
        assert_eq!((counts.in_flight, counts.accepted), (3, 2));
    }

    #[test]
    fn rows_that_share_a_place_in_the_plan_are_each_claimed_once() {
        let phones = ["525512345670", "525512345671", "525512345672"];
        let rows: Vec<_> = phones.iter().map(|p| (*p, "planned", None)).collect();
        let (_dir, db) = journal_with(&rows);
        db.conn.execute("UPDATE journal SET seq = 7", []).unwrap();
        let mut journal = journal_over(db, &phones);
        let mut sent = Vec::new();
        for _ in 0..4 {
            for job in journal.claim(1, 1, &[]).unwrap().jobs {
                sent.push(job.to.to_string());
            }
        }
        assert_eq!(sent, ["+525512345670", "+525512345671", "+525512345672"]);
    }

    #[test]
    fn a_run_that_records_every_outcome_ends_without_a_mark() {
        let phones = ["525512345670", "525512345671"];
        let rows: Vec<_> = phones.iter().map(|p| (*p, "planned", None)).collect();
        let (_dir, db) = journal_with(&rows);
        let mut journal = journal_over(db, &phones);
        let claimed = journal.claim(2, 2, &[]).unwrap();
        let mark = |journal: &Journal| -> Option<i64> {
            journal
                .conn
                .query_row("SELECT claimed_seq FROM campaigns", [], |r| r.get(0))
                .unwrap()
        };
        journal
            .record(&[accepted(&claimed.jobs[0], "wamid.A")])
            .unwrap();
        assert!(!claims::clear_if_settled(&journal.conn, "c").unwrap());
        assert_eq!(mark(&journal), Some(1), "a row is still under it");
        journal
            .record(&[accepted(&claimed.jobs[1], "wamid.B")])
            .unwrap();
        journal.end_departures().unwrap();
        assert_eq!(mark(&journal), None);
    }

    #[test]
    fn recovery_returns_only_the_rows_whose_requests_never_left() {
        let (dir, db) = journal_with(&[
            ("525512345670", "in_flight", None),
            ("525512345671", "in_flight", None),
            ("525512345672", "in_flight", None),
            ("525512345673", "in_flight", None),
        ]);
        let person = |phone| crate::row_key::person_of(E164::from_digits(phone).unwrap());
        let set = |phone, sql: &str| {
            db.conn
                .execute(
                    &format!("UPDATE journal SET {sql} WHERE person_id = ?1"),
                    params![person(phone)],
                )
                .unwrap()
        };
        set("525512345670", "attempts = 1");
        // A retry (its second attempt) and a test send's row.
        set("525512345671", "attempts = 2");
        set(
            "525512345672",
            "attempts = 1, plan_run = 0, occurrence = 'test:1'",
        );
        set("525512345673", "attempts = 1");
        db.conn
            .execute("UPDATE campaigns SET departure_log = 41", [])
            .unwrap();
        let row = |phone| -> i64 {
            db.conn
                .query_row(
                    "SELECT id FROM journal WHERE person_id = ?1",
                    params![person(phone)],
                    |r| r.get(0),
                )
                .unwrap()
        };
        let log_path = dir.path().join("w.db.c.departures");
        let Some(log) = crate::departure_log::Departures::start(&log_path, 41).unwrap() else {
            // No boot id on this machine: no log is trusted, every row is in doubt.
            return;
        };
        // Only the last one's request was written before the process died.
        log.departed(row("525512345673"));
        let now = "2026-11-28T12:00:00Z";
        let recovered = recover_in_flight(&db.conn, "c", Some(&log_path), now).unwrap();
        assert_eq!(
            (recovered.never_left, recovered.in_doubt, recovered.accepted),
            (3, 1, 0)
        );
        let detail_of = |phone| -> (State, Option<String>, i64) {
            db.conn
                .query_row(
                    "SELECT state, error_detail, attempts FROM journal WHERE person_id = ?1",
                    params![person(phone)],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .unwrap()
        };
        assert_eq!(detail_of("525512345670"), (State::Planned, None, 0));
        let (state, _, attempts) = detail_of("525512345671");
        assert_eq!(
            (state, attempts),
            (State::Deferred, 1),
            "a retry waits as one"
        );
        let (state, detail, _) = detail_of("525512345672");
        assert_eq!(state, State::Failed, "a test send's row is not sent again");
        assert!(
            detail.is_some_and(|d| d.contains("test send stopped before this message left")),
            "and says why"
        );
        assert_eq!(detail_of("525512345673").0, State::InDoubt);

        // Without the log (another boot, a deleted file), every row in flight is in doubt.
        set("525512345670", "state = 'in_flight', attempts = 1");
        let recovered =
            recover_in_flight(&db.conn, "c", Some(&dir.path().join("none")), now).unwrap();
        assert_eq!((recovered.never_left, recovered.in_doubt), (0, 1));
        assert_eq!(detail_of("525512345670").0, State::InDoubt);
    }

    #[test]
    fn recovery_records_as_accepted_what_the_log_kept_an_answer_for() {
        let (dir, db) = journal_with(&[
            ("525512345670", "in_flight", None),
            ("525512345671", "in_flight", None),
        ]);
        let row = |phone| -> i64 {
            db.conn
                .query_row(
                    "SELECT id FROM journal WHERE person_id = ?1",
                    params![crate::row_key::person_of(E164::from_digits(phone).unwrap())],
                    |r| r.get(0),
                )
                .unwrap()
        };
        db.conn
            .execute(
                "UPDATE journal SET attempts = 1, error_detail = 'an earlier try'",
                [],
            )
            .unwrap();
        db.conn
            .execute("UPDATE campaigns SET departure_log = 42", [])
            .unwrap();
        // Its delivery status came in (a webhook) before the run was killed.
        db.conn
            .execute(
                "INSERT INTO message_statuses (message_id, status, rank, timestamp, occurred_at,
                     provider, received_at)
                 VALUES ('wamid.KEPT', 'delivered', 2, 1764331201, '2025-11-28T12:00:01Z', 'meta',
                         '2025-11-28T12:00:01Z')",
                [],
            )
            .unwrap();
        let log_path = dir.path().join("w.db.c.departures");
        let Some(log) = crate::departure_log::Departures::start(&log_path, 42).unwrap() else {
            return;
        };
        // Both requests left; the first one's acceptance came back before the kill.
        log.departed(row("525512345670"));
        log.answered(row("525512345670"), "wamid.KEPT", 1_764_331_200_250);
        log.departed(row("525512345671"));
        let now = "2026-11-28T12:00:00Z";
        let recovered = recover_in_flight(&db.conn, "c", Some(&log_path), now).unwrap();
        assert_eq!(
            (recovered.accepted, recovered.in_doubt, recovered.never_left),
            (1, 1, 0)
        );
        let (state, message_id, outcome_at, detail, rank): (
            State,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<i64>,
        ) = db
            .conn
            .query_row(
                "SELECT state, message_id, outcome_at, error_detail, status_rank FROM journal
                 WHERE id = ?1",
                params![row("525512345670")],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        assert_eq!(state, State::Accepted);
        assert_eq!(message_id.as_deref(), Some("wamid.KEPT"));
        assert_eq!(outcome_at.as_deref(), Some("2025-11-28T12:00:00Z"));
        assert_eq!(detail, None, "no error of an earlier try is left on it");
        assert_eq!(
            rank,
            Some(2),
            "the status that came first is folded onto it"
        );
        assert_eq!(state_of(&db, "525512345671"), State::InDoubt);
    }

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

    fn status_rank_of(db: &Db, message_id: &str) -> Option<i64> {
        db.conn
            .query_row(
                "SELECT status_rank FROM journal WHERE message_id = ?1",
                params![message_id],
                |r| r.get(0),
            )
            .unwrap()
    }

    #[test]
    fn a_status_another_connection_records_before_the_answer_is_folded_with_it() {
        let phones = ["525512345670", "525512345671"];
        let rows: Vec<_> = phones.iter().map(|p| (*p, "planned", None)).collect();
        let (_dir, db) = journal_with(&rows);
        let other = Db::open(db.path()).unwrap();
        let mut journal = journal_over(db, &phones);
        let first = journal.claim(2, 2, &[]).unwrap();
        assert_eq!(first.jobs.len(), 2);
        // The webhook server records a delivery before the send's answer is.
        other
            .conn
            .execute(
                "INSERT INTO message_statuses (message_id, status, rank, timestamp, occurred_at,
                     provider, received_at)
                 VALUES ('wamid.EARLY', 'delivered', 2, 1764331201, '2025-11-28T12:00:01Z',
                         'meta', '2025-11-28T12:00:01Z')",
                [],
            )
            .unwrap();
        journal
            .claim(
                0,
                0,
                &[
                    accepted(&first.jobs[0], "wamid.EARLY"),
                    accepted(&first.jobs[1], "wamid.LATER"),
                ],
            )
            .unwrap();
        assert_eq!(status_rank_of(&other, "wamid.EARLY"), Some(2));
        assert_eq!(status_rank_of(&other, "wamid.LATER"), None);
    }

    /// A row whose first message failed (a status folded onto it) is claimed and
    /// accepted again: the rank folded for its new message. `state` is where the
    /// first message left it; `release` puts it back in the plan first, as the
    /// operator does for rows held in doubt.
    fn rank_after_resending(state: &str, release: bool) -> Option<i64> {
        let (_dir, db) = journal_with(&[("525512345670", state, None)]);
        let other = Db::open(db.path()).unwrap();
        other
            .conn
            .execute(
                "UPDATE journal SET attempts = 1, message_id = 'wamid.OLD', status_rank = 4,
                     status_error_code = 131049",
                [],
            )
            .unwrap();
        let mut journal = journal_over(db, &["525512345670"]);
        if release {
            assert_eq!(journal.release_in_doubt().unwrap(), 1);
        }
        let again = journal.claim(1, 1, &[]).unwrap();
        assert_eq!(again.jobs.len(), 1);
        journal
            .claim(0, 0, &[accepted(&again.jobs[0], "wamid.NEW")])
            .unwrap();
        status_rank_of(&other, "wamid.NEW")
    }

    #[test]
    fn a_retried_row_gets_its_statuses_folded_again_for_its_new_message() {
        assert_eq!(
            rank_after_resending("deferred", false),
            None,
            "nothing is known of the new message yet; the old one's failure is not its"
        );
    }

    #[test]
    fn a_row_released_from_doubt_gets_its_statuses_folded_again_for_its_new_message() {
        assert_eq!(rank_after_resending("in_doubt", true), None);
    }
}
