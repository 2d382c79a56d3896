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
    // Outcomes a failed write could not record (their transaction was rolled back),
    // tried again with every later write: an answer that came back is recorded if
    // the database takes a write again before the run ends.
    let mut unrecorded: Vec<Outcome> = Vec::new();
    // Told within a second, not after SQLite's usual ten, that it is waiting.
    journal
        .set_busy_timeout(LOCK_POLL)
        .context("setting the journal's busy timeout")?;
    let mut patient = Patience {
        progress,
        interrupt,
        grace: GRACE_AFTER_INTERRUPT,
        interrupted_at: None,
    };
    while let Ok(msg) = inbox.recv() {
        match msg {
            WriterMsg::Record(outcomes) => {
                unrecorded.extend(outcomes);
                match patient.retry(|| journal.record(&unrecorded)) {
                    Ok(()) => unrecorded.clear(),
                    Err(e) => {
                        failure.get_or_insert(format!("recording outcomes: {e}"));
                    }
                }
            }
            WriterMsg::Halt(reason, outcomes) => {
                unrecorded.extend(outcomes);
                match patient.retry(|| {
                    journal
                        .record(&unrecorded)
                        .and_then(|()| journal.halt(&reason))
                }) {
                    Ok(()) => unrecorded.clear(),
                    Err(e) => {
                        failure.get_or_insert(format!("recording the halt: {e}"));
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
                let result = match &failure {
                    // No claim after a failure; what came back still goes in.
                    Some(reason) => {
                        if patient.retry(|| journal.record(&unrecorded)).is_ok() {
                            unrecorded.clear();
                        }
                        Err(anyhow::anyhow!("{reason}"))
                    }
                    None => patient
                        .retry(|| journal.claim(limit, new_limit, &unrecorded))
                        .inspect(|_| unrecorded.clear())
                        .context("claiming rows"),
                };
                if let (Err(e), None) = (&result, &failure) {
                    failure = Some(format!("{e:#}"));
                }
                reported |= result.is_err();
                let _ = reply.send(result);
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

/// Retries a journal write while another process holds the write lock.
struct Patience<'a> {
    progress: &'a Progress,
    interrupt: &'a CancellationToken,
    /// How long it still waits once the run is interrupted.
    grace: Duration,
    /// When it first found the run interrupted.
    interrupted_at: Option<Instant>,
}

impl Patience<'_> {
    /// Runs `write` until it is not refused for the lock, [`LOCK_WAIT`] has passed,
    /// or the run has been interrupted (Ctrl-C, SIGTERM) for longer than the grace.
    /// A halt does not end the wait: its own record needs the lock too. Each refusal
    /// comes after [`LOCK_POLL`] in SQLite's busy handler, so this loop turns over
    /// once a second, not in a spin.
    fn retry<T>(&mut self, mut write: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
        let mut waiting_since: Option<Instant> = None;
        loop {
            let attempted = Instant::now();
            let result = write();
            let busy = matches!(&result, Err(e) if is_busy(e));
            match (busy, waiting_since) {
                (true, None) => {
                    waiting_since = Some(attempted);
                    self.progress.waiting_for_lock(true);
                    self.progress.note(&format!(
                        "warning: another process holds the database's write lock; nothing is \
                         sent until it is released (waiting up to {} min, Ctrl-C stops the run)",
                        LOCK_WAIT.as_secs() / 60
                    ));
                }
                (true, Some(since)) if !self.out_of_patience(since) => {}
                (true, Some(_)) => {
                    self.progress.waiting_for_lock(false);
                    return result;
                }
                (false, Some(since)) => {
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
                    return result;
                }
                (false, None) => return result,
            }
        }
    }

    fn out_of_patience(&mut self, waiting_since: Instant) -> bool {
        if self.interrupt.is_cancelled() {
            let at = *self.interrupted_at.get_or_insert_with(Instant::now);
            if at.elapsed() >= self.grace {
                return true;
            }
        }
        waiting_since.elapsed() >= LOCK_WAIT
    }
}

/// Whether SQLite refused for another connection's lock (after its busy timeout).
fn is_busy(e: &rusqlite::Error) -> bool {
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
        let mut patient = Patience {
            progress: &progress,
            interrupt: &interrupt,
            grace: Duration::ZERO,
            interrupted_at: None,
        };
        let mut attempts = 0;
        let result = patient.retry(|| {
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
        let mut patient = Patience {
            progress: &progress,
            interrupt: &interrupt,
            grace: Duration::ZERO,
            interrupted_at: None,
        };
        let mut attempts = 0;
        let result: rusqlite::Result<()> = patient.retry(|| {
            attempts += 1;
            Err(busy())
        });
        assert!(result.as_ref().is_err_and(is_busy), "{result:?}");
        // The first refusal starts the wait; the second, interrupted, ends it.
        assert_eq!(attempts, 2);

        let mut attempts = 0;
        let result: rusqlite::Result<()> = patient.retry(|| {
            attempts += 1;
            Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                None,
            ))
        });
        assert!(result.is_err());
        assert_eq!(attempts, 1);
    }
}
