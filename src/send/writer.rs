//! The journal writer: a thread of its own that owns the SQLite connection,
//! commits outcomes together with the next claim, and answers a claim only once
//! its intents (and every outcome before it) are durable.
//!
//! Another process may hold the database's write lock for longer than SQLite's
//! busy timeout: a large `prune`, an `erase`, a `webhook serve` migrating, the first
//! capped send building its index. Giving up then would end the run with the
//! answers of the messages already on the wire unrecorded, and the next run would
//! have to hold them in doubt. So the writer waits the lock out (nothing is claimed,
//! so nothing leaves meanwhile), says so, and only gives up after [`LOCK_WAIT`] or
//! when the run is stopped.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::progress::Progress;
use crate::journal::{Claimed, Journal, Outcome};

/// How long the writer waits for another process's write lock before the run
/// stops: long enough for any maintenance command on a large database, short
/// enough that a forgotten open transaction does not hold a cron job for ever.
pub const LOCK_WAIT: Duration = Duration::from_secs(10 * 60);

/// How long the writer still waits for the lock once the run is interrupted: the
/// answers in flight are worth recording, but a stop must not hang (systemd kills a
/// unit that takes 90 s to stop).
const GRACE_AFTER_INTERRUPT: Duration = Duration::from_secs(30);

/// How long one write waits in SQLite's busy handler before the writer says it is
/// waiting and tries again.
const LOCK_POLL: Duration = Duration::from_secs(1);

pub(super) enum WriterMsg {
    /// Claim rows, committing the outcomes gathered since the last message with
    /// the claim's intents: one fsync for both.
    Claim {
        limit: usize,
        new_limit: usize,
        outcomes: Vec<Outcome>,
        reply: oneshot::Sender<anyhow::Result<Claimed>>,
    },
    /// Outcomes that found no claim to ride with.
    Record(Vec<Outcome>),
    /// Persist the halt at once (with the outcomes gathered so far): a kill while
    /// in-flight requests finish must not lose it.
    Halt(String, Vec<Outcome>),
}

/// The writer's loop, until every sender of `inbox` is gone.
pub(super) fn write_journal(
    mut journal: Journal,
    inbox: std::sync::mpsc::Receiver<WriterMsg>,
    progress: &Progress,
    interrupt: &CancellationToken,
) -> anyhow::Result<Journal> {
    let mut failure: Option<String> = None;
    // Whether a claim carried the failure to the pipeline, which halts on it.
    let mut reported = false;
    // Outcomes a failed write could not record (its transaction was rolled back),
    // tried again with every later write: an answer that came back is recorded if
    // the database takes a write again before the run ends.
    let mut unrecorded: Vec<Outcome> = Vec::new();
    // Told within a second, not after SQLite's usual ten, that it is waiting.
    journal
        .set_busy_timeout(LOCK_POLL)
        .context("setting the journal's busy timeout")?;
    let mut patient = Patience::new(progress, interrupt, GRACE_AFTER_INTERRUPT);
    let unrecorded_failure = |e: &rusqlite::Error, n: usize| {
        if is_busy(e) {
            format!(
                "{n} answers could not be recorded: another process held the database's write \
                 lock; the next run holds them in doubt (or sends those that never left)"
            )
        } else {
            format!("recording outcomes: {e}")
        }
    };
    while let Ok(msg) = inbox.recv() {
        match msg {
            WriterMsg::Record(outcomes) => {
                unrecorded.extend(outcomes);
                match patient.retry(Wait::ToRecord, || journal.record(&unrecorded)) {
                    Ok(()) => unrecorded.clear(),
                    Err(e) => failure = Some(unrecorded_failure(&e, unrecorded.len())),
                }
            }
            WriterMsg::Halt(reason, outcomes) => {
                unrecorded.extend(outcomes);
                match patient.retry(Wait::ToRecord, || {
                    journal.record_and_halt(&unrecorded, &reason)
                }) {
                    Ok(()) => unrecorded.clear(),
                    Err(e) => {
                        failure = Some(format!("recording the halt: {}", {
                            unrecorded_failure(&e, unrecorded.len())
                        }));
                    }
                }
            }
            WriterMsg::Claim {
                limit,
                new_limit,
                outcomes,
                reply,
            } => {
                unrecorded.extend(outcomes);
                let result = if failure.is_some() || interrupt.is_cancelled() {
                    // Nothing more is claimed after a failure or a stop (a claim now
                    // would only reserve people it cannot send to); what came back
                    // still goes in.
                    match patient.retry(Wait::ToRecord, || journal.record(&unrecorded)) {
                        Ok(()) => unrecorded.clear(),
                        Err(e) => failure = Some(unrecorded_failure(&e, unrecorded.len())),
                    }
                    match &failure {
                        Some(reason) => Err(anyhow::anyhow!("{reason}")),
                        None => Ok(Claimed::default()),
                    }
                } else {
                    patient
                        .retry(Wait::ToClaim, || {
                            journal.claim(limit, new_limit, &unrecorded)
                        })
                        .inspect(|_| unrecorded.clear())
                        .context("claiming rows")
                };
                if let (Err(e), None) = (&result, &failure) {
                    failure = Some(format!("{e:#}"));
                }
                reported |= result.is_err();
                let _ = reply.send(result);
            }
        }
    }
    // The outcomes of a last write that failed, when nothing came after it.
    if !unrecorded.is_empty() {
        match patient.retry(Wait::ToRecord, || journal.record(&unrecorded)) {
            Ok(()) => unrecorded.clear(),
            Err(e) => {
                failure = Some(unrecorded_failure(&e, unrecorded.len()));
                // Answers are lost to this run: that is an error of its own.
                reported = false;
            }
        }
    }
    // What follows the run (its last counts, a halt) waits as every command does.
    journal
        .set_busy_timeout(crate::db::BUSY_TIMEOUT)
        .context("setting the journal's busy timeout")?;
    match failure {
        Some(reason) if !reported => anyhow::bail!("{reason}"),
        _ => Ok(journal),
    }
}

/// What a write is for, which decides how long it waits once the run is stopped.
#[derive(Debug, Clone, Copy)]
enum Wait {
    /// Worth nothing once the run is stopped.
    ToClaim,
    /// Answers that came back: worth the grace after a stop.
    ToRecord,
}

/// Retries journal writes while another process holds the write lock, against one
/// deadline for the run: it starts at the first refusal and ends with the next
/// write that goes through.
struct Patience<'a> {
    progress: &'a Progress,
    interrupt: &'a CancellationToken,
    /// How long records still wait once the run is interrupted.
    grace: Duration,
    /// Since when writes have been refused.
    waiting_since: Option<Instant>,
    /// When it first found the run interrupted.
    interrupted_at: Option<Instant>,
}

impl<'a> Patience<'a> {
    fn new(progress: &'a Progress, interrupt: &'a CancellationToken, grace: Duration) -> Self {
        Patience {
            progress,
            interrupt,
            grace,
            waiting_since: None,
            interrupted_at: None,
        }
    }

    /// Runs `write` until it is not refused for the lock, the writes have been
    /// refused for [`LOCK_WAIT`], or the run has been interrupted (Ctrl-C, SIGTERM)
    /// for longer than `wait` allows. A halt does not end the wait: its own record
    /// needs the lock too. Each refusal comes after [`LOCK_POLL`] in SQLite's busy
    /// handler, so this loop turns over once a second, not in a spin.
    fn retry<T>(
        &mut self,
        wait: Wait,
        mut write: impl FnMut() -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        loop {
            let attempted = Instant::now();
            let result = write();
            if !matches!(&result, Err(e) if is_busy(e)) {
                if let Some(since) = self.waiting_since.take() {
                    self.progress.waiting_for_lock(false);
                    self.progress.note(&format!(
                        "the database's write lock was released after {} s; {}",
                        since.elapsed().as_secs(),
                        if self.interrupt.is_cancelled() {
                            "recording what was in flight"
                        } else {
                            "sending resumes"
                        }
                    ));
                }
                return result;
            }
            let since = match self.waiting_since {
                Some(since) => since,
                None => {
                    self.progress.waiting_for_lock(true);
                    self.progress.note(&format!(
                        "warning: another process holds the database's write lock; nothing is \
                         sent until it is released (waiting up to {} min, Ctrl-C stops the run)",
                        LOCK_WAIT.as_secs() / 60
                    ));
                    *self.waiting_since.insert(attempted)
                }
            };
            if self.out_of_patience(since, wait) {
                return result;
            }
        }
    }

    fn out_of_patience(&mut self, waiting_since: Instant, wait: Wait) -> bool {
        if self.interrupt.is_cancelled() {
            let at = *self.interrupted_at.get_or_insert_with(Instant::now);
            let grace = match wait {
                Wait::ToClaim => Duration::ZERO,
                Wait::ToRecord => self.grace,
            };
            if at.elapsed() >= grace {
                return true;
            }
        }
        waiting_since.elapsed() >= LOCK_WAIT
    }
}

/// Whether SQLite refused for another connection's lock (after its busy timeout).
pub(super) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DatabaseBusy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::send::progress::Display;

    fn busy() -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            Some("database is locked".into()),
        )
    }

    #[test]
    fn a_write_refused_for_the_lock_is_tried_again_until_it_goes_through() {
        let progress = Progress::new(Display::Hidden, 1, 0);
        let interrupt = CancellationToken::new();
        let mut patient = Patience::new(&progress, &interrupt, Duration::ZERO);
        let mut attempts = 0;
        let result = patient.retry(Wait::ToRecord, || {
            attempts += 1;
            if attempts < 3 {
                Err(busy())
            } else {
                Ok(attempts)
            }
        });
        assert_eq!(result.ok(), Some(3));
        assert!(!progress.log_line().contains("paused"));
    }

    #[test]
    fn an_interrupted_run_stops_waiting_and_other_errors_are_not_retried() {
        let progress = Progress::new(Display::Hidden, 1, 0);
        let interrupt = CancellationToken::new();
        interrupt.cancel();
        // A claim gets no grace after a stop, however long records get.
        let mut patient = Patience::new(&progress, &interrupt, Duration::from_secs(3600));
        let mut attempts = 0;
        let result: rusqlite::Result<()> = patient.retry(Wait::ToClaim, || {
            attempts += 1;
            Err(busy())
        });
        assert!(result.as_ref().is_err_and(is_busy), "{result:?}");
        assert_eq!(attempts, 1);

        let mut patient = Patience::new(&progress, &interrupt, Duration::ZERO);
        let mut attempts = 0;
        let result: rusqlite::Result<()> = patient.retry(Wait::ToRecord, || {
            attempts += 1;
            if attempts < 3 {
                Err(busy())
            } else {
                Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                    None,
                ))
            }
        });
        assert!(result.as_ref().is_err_and(is_busy), "{result:?}");
        assert_eq!(attempts, 1, "out of patience at the first refusal");

        let interrupt = CancellationToken::new();
        let mut patient = Patience::new(&progress, &interrupt, Duration::ZERO);
        let mut attempts = 0;
        let result: rusqlite::Result<()> = patient.retry(Wait::ToRecord, || {
            attempts += 1;
            Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                None,
            ))
        });
        assert!(result.is_err());
        assert_eq!(attempts, 1, "a full disk is not waited out");
    }

    #[test]
    fn the_wait_is_one_deadline_for_the_run_until_a_write_goes_through() {
        let progress = Progress::new(Display::Hidden, 1, 0);
        let interrupt = CancellationToken::new();
        let mut patient = Patience::new(&progress, &interrupt, Duration::ZERO);
        // Writes refused since long ago: the next refused one gives up at once.
        patient.waiting_since = Some(Instant::now() - LOCK_WAIT);
        let mut attempts = 0;
        let result: rusqlite::Result<()> = patient.retry(Wait::ToRecord, || {
            attempts += 1;
            Err(busy())
        });
        assert!(result.is_err());
        assert_eq!(attempts, 1);
        // One that goes through ends the wait; the next refusal starts a new one.
        assert_eq!(patient.retry(Wait::ToRecord, || Ok(7)).ok(), Some(7));
        assert!(patient.waiting_since.is_none());
        assert!(!progress.log_line().contains("paused"));
    }
}
