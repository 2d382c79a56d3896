//! The send pipeline: takes pacing tickets, claims that many journaled rows, sends
//! them through a provider, classifies every outcome once and records it.
//!
//! Shape (as oha's client): one dispatcher loop takes the tickets that are due (a
//! batch every few milliseconds), has the one journal writer claim that many rows
//! and the next interval's (the intent to send is durable before the claim
//! returns), and writes their requests at once, each in a task of its own; each
//! task hands its outcome back to the writer, a thread that owns the SQLite
//! connection and commits outcomes together with the next claim. Each request notes
//! its departure, and each acceptance its message id, in the departure log, so what
//! a kill leaves in doubt is only what may have reached the provider and not come
//! back.
//! A stop (Ctrl-C, SIGTERM, a halt) stops claiming, lets what is in flight finish,
//! and records it, so the run can be resumed.

pub mod breaker;
pub mod progress;
pub mod rate;
pub mod window;
mod writer;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::journal::{Disposition, Job, Journal, Outcome};
use crate::provider::{Class, Departure, Message, Provider, Response, classify};
use breaker::Breaker;
use progress::Progress;
use rate::{Lead, Pacer, backoff};
use window::{Sizing, Window};
use writer::WriterMsg;

/// Attempts for outcomes that are safe to retry (throttling, maintenance, refused
/// connections) before the recipient is failed.
pub const MAX_ATTEMPTS: u32 = 6;
/// Attempts for error codes the table does not know.
pub const MAX_UNKNOWN_ATTEMPTS: u32 = 3;

#[derive(Debug, Clone)]
pub struct Options {
    /// Send to at most this many new recipients in this run.
    pub limit: Option<u64>,
    /// Messages per second; `None` for no limit (benchmarks).
    pub rate: Option<u32>,
    /// How many requests may be on the wire at once.
    pub window: Sizing,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "end", content = "reason", rename_all = "snake_case")]
pub enum RunEnd {
    /// Nothing left to send in this run.
    Finished,
    /// A halt-class error or the circuit breaker: resumable with `--resume-halted`.
    Halted(String),
    /// Ctrl-C or SIGTERM: resumable.
    Interrupted,
}

/// How long outcomes wait for a claim to ride with before they are committed on
/// their own: claims come every batch interval while the campaign runs.
const OUTCOME_FLUSH: Duration = Duration::from_millis(25);

/// What the tasks share.
struct Control {
    breaker: Mutex<Breaker>,
    halt: Mutex<Option<String>>,
    stop: CancellationToken,
    writer: std::sync::mpsc::Sender<WriterMsg>,
    /// Outcomes not yet handed to the writer. Gathered here rather than sent one
    /// by one, so the writer thread wakes once per claim, not once per message.
    outcomes: Mutex<Vec<Outcome>>,
    window: Mutex<Window>,
    in_flight: AtomicUsize,
    /// Wakes the dispatcher when a request finishes (a slot in the window frees).
    finished: Notify,
    /// The pacer, as each request's departure asks it.
    pace: Arc<dyn crate::provider::Pace>,
    /// Where each request notes that it left, for the next run after a kill.
    departures: Option<Arc<crate::departure_log::Departures>>,
}

impl Control {
    fn halt(&self, reason: String) {
        if let Ok(mut halt) = self.halt.lock()
            && halt.is_none()
        {
            *halt = Some(reason.clone());
            let _ = self
                .writer
                .send(WriterMsg::Halt(reason, self.take_outcomes()));
        }
        self.stop.cancel();
    }

    fn take_outcomes(&self) -> Vec<Outcome> {
        self.outcomes
            .lock()
            .map(|mut o| std::mem::take(&mut *o))
            .unwrap_or_default()
    }

    /// Hands gathered outcomes to the writer, when there are any.
    fn flush_outcomes(&self) {
        let outcomes = self.take_outcomes();
        if !outcomes.is_empty() {
            let _ = self.writer.send(WriterMsg::Record(outcomes));
        }
    }

    fn halted(&self) -> Option<String> {
        self.halt.lock().ok().and_then(|h| h.clone())
    }

    fn window_size(&self) -> usize {
        self.window.lock().map_or(1, |w| w.size())
    }
}

/// The runtime a send runs on: one thread. The pipeline's own work per message is
/// a few microseconds of HTTP and bookkeeping, so one thread keeps 1,000 messages a
/// second with room to spare, while a work-stealing scheduler on a small machine
/// spent about a quarter of the send's CPU handing tasks and wake-ups between its
/// threads (BENCHMARKS.md, "send at the operating point"). The journal writer has a
/// thread of its own, so a commit's fsync never holds up the pacer.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Runs the pipeline until the plan is sent, the campaign halts, or `interrupt` fires.
/// Returns how it ended and the journal (for the final counts). Starts the journal's
/// departure log, unless the caller did, and removes it once every outcome is recorded.
pub async fn run(
    mut journal: Journal,
    provider: Arc<dyn Provider>,
    options: &Options,
    progress: Progress,
    interrupt: CancellationToken,
) -> anyhow::Result<(RunEnd, Journal)> {
    // A std channel: sending never blocks (it is unbounded), and the writer thread
    // can wait on it with a timeout.
    journal.start_departures();
    let departures = journal.departures();
    let (writer_tx, writer_rx) = std::sync::mpsc::channel();
    let writer = std::thread::Builder::new()
        .name("journal-writer".into())
        .spawn({
            let progress = progress.clone();
            let interrupt = interrupt.clone();
            move || writer::write_journal(journal, writer_rx, &progress, &interrupt)
        })
        .context("starting the journal writer")?;

    let pacer = Pacer::start(options.rate);
    let control = Arc::new(Control {
        breaker: Mutex::new(Breaker::default()),
        halt: Mutex::new(None),
        stop: interrupt.child_token(),
        writer: writer_tx.clone(),
        outcomes: Mutex::new(Vec::new()),
        window: Mutex::new(Window::new(options.window, options.rate)),
        in_flight: AtomicUsize::new(0),
        finished: Notify::new(),
        pace: Arc::new(pacer.clone()),
        departures,
    });
    let ticker = spawn_ticker(&progress, &control.stop);
    let dispatched = dispatch(&writer_tx, &provider, options, &progress, &pacer, &control).await;

    ticker.abort();
    // The writer stops once every sender is gone; the tasks' are, the control's too.
    let halted = control.halted();
    drop(control);
    drop(writer_tx);
    let mut journal = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the journal writer panicked"))??;
    journal
        .end_departures()
        .context("removing the run's departure log")?;
    progress.finish();
    dispatched?;
    let end = match halted {
        Some(reason) => {
            journal.halt(&reason).context("recording the halt")?;
            RunEnd::Halted(reason)
        }
        None if interrupt.is_cancelled() => RunEnd::Interrupted,
        None => RunEnd::Finished,
    };
    Ok((end, journal))
}

async fn dispatch(
    writer: &std::sync::mpsc::Sender<WriterMsg>,
    provider: &Arc<dyn Provider>,
    options: &Options,
    progress: &Progress,
    pacer: &Pacer,
    control: &Arc<Control>,
) -> anyhow::Result<()> {
    let mut new_remaining = options.limit.unwrap_or(u64::MAX);
    let mut sends = Sends {
        tasks: JoinSet::new(),
        most_in_flight: 0,
        provider,
        pacer,
        control,
        progress,
    };
    let stop = control.stop.clone();
    let mut next_claim = tokio::time::Instant::now();
    // When the run's first rows were claimed: until an answer comes, the time since
    // is a floor on the latency.
    let mut first_sent: Option<Instant> = None;
    let batch = options
        .rate
        .map_or(usize::MAX, |rate| rate::batch_size(f64::from(rate)));
    // Rows claimed ahead, for the next interval. A claim takes the rows of the
    // interval after its own with them, and that interval sends them without a
    // claim: one durable commit for two intervals' rows, which halves the commits'
    // fsyncs and pages (BENCHMARKS.md, "Claiming ahead"). They wait claimed but
    // unsent, so a kill leaves them to the departure log, which proves they never
    // left; they count against the window all the same, which bounds what a power
    // cut (no log then) leaves in doubt.
    //
    // Only where an interval holds more than one message (above 50 a second):
    // then a row waits claimed for at most two intervals (40 ms), where at a slow
    // rate it would wait for seconds, and an opt-out recorded meanwhile would not
    // stop it.
    let ahead = match options.rate {
        Some(_) if batch >= 2 => batch + batch / 2,
        _ => 0,
    };
    let mut ready: std::collections::VecDeque<Job> = std::collections::VecDeque::new();
    loop {
        while let Some(joined) = sends.tasks.try_join_next() {
            joined.context("a send task failed")?;
        }
        if stop.is_cancelled() {
            break;
        }
        let mut room = control
            .window_size()
            .saturating_sub(control.in_flight.load(Ordering::Acquire));
        if room == 0
            && let Some(first) = first_sent
            && let Ok(mut window) = control.window.lock()
        {
            window.unanswered_for(first.elapsed(), options.rate.map(f64::from));
            room = window
                .size()
                .saturating_sub(control.in_flight.load(Ordering::Acquire));
        }
        if room == 0 {
            // No telling how long until a request finishes (a slow provider):
            // rows claimed ahead do not wait for it claimed.
            new_remaining = new_remaining.saturating_add(give_back(&mut ready, control));
            tokio::select! {
                () = control.finished.notified() => {},
                () = tokio::time::sleep(OUTCOME_FLUSH) => control.flush_outcomes(),
                () = stop.cancelled() => break,
            }
            continue;
        }
        // One claim (one durable commit) per batch interval at most.
        if options.rate.is_some() && tokio::time::Instant::now() < next_claim {
            tokio::select! {
                () = tokio::time::sleep_until(next_claim) => {},
                () = stop.cancelled() => break,
            }
        }
        // As many tickets as are due (a late wake-up catches up), no more than the
        // window has room for.
        let claim_started = tokio::time::Instant::now();
        // A claim takes more than its batch, to catch up after a stall, only as many
        // rows as there are connections the run has opened and is not using, and never
        // more than half a batch: a claim of 64 rows that each needed a new connection
        // took milliseconds to write its first request, and bursts that size came back a
        // second later as the one-second log let them through again. (Runs used to start
        // slowly too, 1, 2, 4… rows per claim, so that a kill while the first
        // connections opened held few unsent rows in doubt; the departure log now tells
        // those apart, and the slow start only cost the first second a tenth of its
        // messages.)
        let idle = sends
            .most_in_flight
            .saturating_sub(control.in_flight.load(Ordering::Acquire));
        let most = batch.saturating_add(idle.min(batch / 2));
        // An interval that rows claimed ahead fill goes without a claim; its
        // outcomes wait for the next one.
        let from_ready = ready.len() >= most;
        let lead = if from_ready { Lead::None } else { Lead::Claim };
        let tickets = match pacer.take(room.min(most), lead) {
            Ok(n) => n,
            Err(wait) => {
                // A pause (throttling) holds back neither the answers already in
                // nor the rows claimed ahead: those are given back, to be claimed
                // (and checked) again when sending resumes.
                if wait > rate::BATCH_INTERVAL {
                    new_remaining = new_remaining.saturating_add(give_back(&mut ready, control));
                }
                if wait >= OUTCOME_FLUSH {
                    control.flush_outcomes();
                }
                tokio::select! {
                    () = tokio::time::sleep(wait) => {},
                    () = stop.cancelled() => break,
                }
                continue;
            }
        };
        // From the claim's start: the commit's own time is part of the interval.
        next_claim = claim_started + rate::BATCH_INTERVAL;
        if from_ready {
            let jobs: Vec<Job> = ready.drain(..tickets).collect();
            sends.start(jobs).await;
            continue;
        }
        // This interval's rows not already claimed, and the next interval's, as far
        // as the window has room for them.
        let due = tickets.saturating_sub(ready.len());
        let room_ahead = control
            .window_size()
            .saturating_sub(control.in_flight.load(Ordering::Acquire) + ready.len() + due);
        let (reply, claimed) = oneshot::channel();
        writer
            .send(WriterMsg::Claim {
                limit: due + ahead.min(room_ahead),
                new_limit: usize::try_from(new_remaining).unwrap_or(usize::MAX),
                outcomes: control.take_outcomes(),
                reply,
            })
            .map_err(|_| anyhow::anyhow!("the journal writer stopped"))?;
        let mut claimed = match claimed.await {
            Ok(Ok(claimed)) => claimed,
            Ok(Err(e)) => {
                pacer.release(tickets);
                let reason = format!("the journal could not be written: {e:#}");
                // A run stopped while the writer waited for another process's lock
                // ends as interrupted, not halted: nothing is wrong with the campaign.
                let locked_out = e.chain().any(|c| {
                    c.downcast_ref::<rusqlite::Error>()
                        .is_some_and(writer::is_busy)
                });
                if stop.is_cancelled() && locked_out {
                    progress.note(&format!("stopped: {reason}"));
                } else {
                    control.halt(reason);
                }
                break;
            }
            Err(_) => anyhow::bail!("the journal writer stopped"),
        };
        // Counted against --limit as claimed, whether they go now or next interval.
        let fresh = claimed.jobs.iter().filter(|j| j.first_attempt()).count() as u64;
        new_remaining = new_remaining.saturating_sub(fresh);
        ready.extend(std::mem::take(&mut claimed.jobs));
        if let Some(reason) = claimed.halted {
            pacer.release(tickets);
            control.halt(format!("halted from outside this run: {reason}"));
            break;
        }
        let sending = tickets.min(ready.len());
        claimed.jobs = ready.drain(..sending).collect();
        pacer.release(tickets - sending);
        for _ in 0..claimed.skipped() {
            progress.advance();
        }
        progress
            .tally
            .opted_out
            .fetch_add(claimed.opted_out, Ordering::Relaxed);
        progress.tally.failed.fetch_add(
            claimed.window_closed + claimed.unreachable,
            Ordering::Relaxed,
        );
        progress
            .tally
            .expired
            .fetch_add(claimed.expired, Ordering::Relaxed);
        if claimed.jobs.is_empty() {
            if claimed.skipped() > 0 {
                // Every candidate was settled without sending; more rows may wait.
                continue;
            }
            let retry_at = claimed
                .next_retry_at
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| crate::clock::until(t.with_timezone(&chrono::Utc)))
                // A row due much later (Meta's per-user limit asks for a day) is left
                // for a later run, rather than keeping this one waiting.
                .filter(|wait| *wait <= rate::MAX_PAUSE)
                // The one clock, so a run started at WACAMPAIGN_NOW waits as long as
                // the journal's due times say.
                .map(|wait| tokio::time::Instant::now() + wait + Duration::from_millis(50));
            if sends.tasks.is_empty() && retry_at.is_none() {
                break;
            }
            tokio::select! {
                Some(joined) = sends.tasks.join_next(), if !sends.tasks.is_empty() => joined.context("a send task failed")?,
                () = tokio::time::sleep_until(retry_at.unwrap_or_else(tokio::time::Instant::now)), if retry_at.is_some() => {},
                () = tokio::time::sleep(OUTCOME_FLUSH) => control.flush_outcomes(),
                () = stop.cancelled() => break,
            }
            continue;
        }
        first_sent.get_or_insert_with(Instant::now);
        sends.start(claimed.jobs).await;
        if let Ok(window) = control.window.lock() {
            let rate = pacer.current_rate();
            progress.pace.set(rate, window.size(), window.limits(rate));
        }
    }
    // Rows claimed ahead when the run stopped.
    give_back(&mut ready, control);
    loop {
        tokio::select! {
            joined = sends.tasks.join_next() => match joined {
                Some(joined) => joined.context("a send task failed")?,
                None => break,
            },
            () = tokio::time::sleep(OUTCOME_FLUSH) => control.flush_outcomes(),
        }
    }
    control.flush_outcomes();
    Ok(())
}

/// Gives the rows claimed ahead back to the journal, unsent and with no attempt
/// counted: due again at once, they are claimed, and checked, again.
/// Returns how many of them were first attempts, which `--limit` no longer counts.
fn give_back(ready: &mut std::collections::VecDeque<Job>, control: &Control) -> u64 {
    if ready.is_empty() {
        return 0;
    }
    let Ok(mut outcomes) = control.outcomes.lock() else {
        return 0;
    };
    let fresh = ready.iter().filter(|j| j.first_attempt()).count() as u64;
    outcomes.extend(ready.drain(..).map(|job| Outcome {
        row: job.row,
        key: job.key,
        to: job.to,
        disposition: Disposition::Unsent {
            detail: "claimed ahead and given back before sending".to_owned(),
        },
        claimed_at: job.claimed_at,
    }));
    fresh
}

/// The requests in flight, each in a task of its own.
struct Sends<'a> {
    tasks: JoinSet<()>,
    /// The most requests the run has had in flight at once: connections it has
    /// opened, so the ones it is not using are idle.
    most_in_flight: usize,
    provider: &'a Arc<dyn Provider>,
    pacer: &'a Pacer,
    control: &'a Arc<Control>,
    progress: &'a Progress,
}

impl Sends<'_> {
    /// Starts a request for each of `jobs`, in order.
    async fn start(&mut self, jobs: Vec<Job>) {
        let control = self.control;
        let in_flight = control.in_flight.fetch_add(jobs.len(), Ordering::AcqRel) + jobs.len();
        self.most_in_flight = self.most_in_flight.max(in_flight);
        for job in jobs {
            let provider = Arc::clone(self.provider);
            let pacer = self.pacer.clone();
            let control = Arc::clone(control);
            let progress = self.progress.clone();
            self.tasks.spawn(async move {
                let (row, to, key, claimed_at) = (
                    job.row,
                    job.to.clone(),
                    job.key.clone(),
                    Arc::clone(&job.claimed_at),
                );
                let disposition =
                    send_one(job, provider.as_ref(), &pacer, &control, &progress).await;
                if let Ok(mut outcomes) = control.outcomes.lock() {
                    outcomes.push(Outcome {
                        row,
                        key,
                        to,
                        disposition,
                        claimed_at,
                    });
                }
                control.in_flight.fetch_sub(1, Ordering::AcqRel);
                control.finished.notify_one();
            });
            // Let this request reach its socket before the next is built: the runtime
            // runs tasks in turn, so otherwise the first request of a batch waited for
            // every other to be built, with the whole batch in flight and none sent.
            tokio::task::yield_now().await;
        }
    }
}

async fn send_one(
    job: Job,
    provider: &dyn Provider,
    pacer: &Pacer,
    control: &Control,
    progress: &Progress,
) -> Disposition {
    if control.stop.is_cancelled() {
        // Claimed but stopped before its request was written: due again at once,
        // with no attempt counted, as the rows claimed ahead are given back.
        pacer.release(1);
        return Disposition::Unsent {
            detail: "stopped before sending".to_owned(),
        };
    }
    let (attempts, deferrals, row) = (job.attempts, job.deferrals, job.row);
    let message = Message {
        to: job.to,
        values: job.values,
        occurrence: job.key.occurrence.clone(),
    };
    progress.tally.requests.fetch_add(1, Ordering::Relaxed);
    // The one-second rule is checked, and the request counted, when it goes to the
    // socket (after any handshake of a new connection); a request that never goes
    // gives its ticket back.
    let departure =
        Departure::paced(Arc::clone(&control.pace)).noting(control.departures.clone(), row);
    let started = Instant::now();
    let response = provider.send(&message, departure).await;
    let class = classify(&response);
    if let Ok(mut window) = control.window.lock() {
        match (&response, &class) {
            (Response::InDoubt { .. }, _) => window.trouble(Instant::now()),
            (Response::Rejected { http_status, .. }, _) if *http_status >= 500 => {
                window.trouble(Instant::now());
            }
            _ => window.answered(
                started.elapsed(),
                Some(pacer.current_rate()).filter(|r| *r > 0.0),
                Instant::now(),
            ),
        }
    }
    let (disposition, hard_failure) =
        decide(attempts, deferrals, &response, &class, pacer, control);
    // Kept where a kill cannot lose it until the journal commits it with the next
    // claim, so the next run records the message as accepted, not in doubt.
    if let (
        Disposition::Accepted {
            message_id: Some(id),
            ..
        },
        Some(log),
    ) = (&disposition, &control.departures)
    {
        log.answered(row, id, crate::clock::now().timestamp_millis());
    }
    let tally = &progress.tally;
    let counter = match &disposition {
        Disposition::Accepted { .. } => Some(&tally.accepted),
        Disposition::Failed { .. } => Some(&tally.failed),
        Disposition::InDoubt { .. } => Some(&tally.in_doubt),
        Disposition::OptedOut { .. } => Some(&tally.opted_out),
        Disposition::Deferred { .. } => {
            tally.retried.fetch_add(1, Ordering::Relaxed);
            None
        }
        Disposition::Unsent { .. } => None,
    };
    if let Some(counter) = counter {
        counter.fetch_add(1, Ordering::Relaxed);
        progress.advance();
    }
    if let Some(hard_failure) = hard_failure {
        let tripped = control
            .breaker
            .lock()
            .ok()
            .and_then(|mut b| b.record(hard_failure));
        if let Some(reason) = tripped {
            control.halt(reason);
        }
    }
    disposition
}

/// Turns a classified response into what the journal records; `Some(hard_failure)`
/// for outcomes the circuit breaker counts.
fn decide(
    attempts: u32,
    deferrals: u32,
    response: &Response,
    class: &Class,
    pacer: &Pacer,
    control: &Control,
) -> (Disposition, Option<bool>) {
    let (code, detail) = match response {
        Response::Rejected { code, detail, .. } => (*code, detail.clone()),
        Response::NotSent { detail } | Response::InDoubt { detail } => (None, detail.clone()),
        Response::Accepted { .. } => (None, String::new()),
    };
    let http_status = match response {
        Response::Rejected { http_status, .. } => Some(*http_status),
        _ => None,
    };
    let describe = || match (code, http_status) {
        (Some(code), _) => format!("error {code}: {detail}"),
        (None, Some(status)) => format!("HTTP {status}: {detail}"),
        (None, None) => detail.clone(),
    };
    match class {
        Class::Accepted => {
            let Response::Accepted {
                message_id,
                wa_id,
                status,
            } = response
            else {
                unreachable!("only an accepted response is classed as accepted")
            };
            (
                Disposition::Accepted {
                    message_id: message_id.clone(),
                    wa_id: wa_id.clone(),
                    status: status.clone(),
                },
                Some(false),
            )
        }
        Class::RetryLater {
            throttled,
            retry_after,
        } => {
            if *throttled {
                pacer.throttled(*retry_after);
            }
            if attempts >= MAX_ATTEMPTS {
                let detail = format!("gave up after {} attempts: {}", attempts, describe());
                (Disposition::Failed { code, detail }, Some(true))
            } else {
                let retry_in = backoff(attempts, *retry_after);
                (
                    Disposition::Deferred {
                        code,
                        detail: describe(),
                        retry_in,
                        by_rule: false,
                    },
                    None,
                )
            }
        }
        // Too many messages to this one person (Meta's pair rate limit): only their
        // row waits; neither the pace nor the breaker counts it.
        Class::BackOffRecipient { retry_after } if attempts < MAX_ATTEMPTS => (
            Disposition::Deferred {
                code,
                detail: describe(),
                retry_in: backoff(attempts, *retry_after),
                by_rule: false,
            },
            None,
        ),
        Class::BackOffRecipient { .. } => (
            Disposition::Failed {
                code,
                detail: format!("gave up after {attempts} attempts: {}", describe()),
            },
            None,
        ),
        Class::Unknown => {
            if attempts >= MAX_UNKNOWN_ATTEMPTS {
                let detail = format!(
                    "unknown error, gave up after {} attempts: {}",
                    attempts,
                    describe()
                );
                (Disposition::Failed { code, detail }, Some(true))
            } else {
                (
                    Disposition::Deferred {
                        code,
                        detail: describe(),
                        retry_in: backoff(attempts, None),
                        by_rule: false,
                    },
                    None,
                )
            }
        }
        // Meta's per-user marketing limit: that person's message waits a day (never
        // less), then goes again; given up after a few.
        Class::DeferRecipient { after } if deferrals < crate::provider::classify::MAX_DEFERRALS => {
            (
                Disposition::Deferred {
                    code,
                    detail: describe(),
                    retry_in: *after,
                    by_rule: true,
                },
                None,
            )
        }
        Class::DeferRecipient { .. } => (
            Disposition::Failed {
                code,
                detail: format!("given up after {deferrals} deferrals: {}", describe()),
            },
            None,
        ),
        Class::SkipRecipient => (
            Disposition::Failed {
                code,
                detail: describe(),
            },
            None,
        ),
        Class::FailRecipient => (
            Disposition::Failed {
                code,
                detail: describe(),
            },
            Some(true),
        ),
        Class::OptOut { purpose } => (
            Disposition::OptedOut {
                purpose: *purpose,
                code,
                detail: describe(),
            },
            Some(false),
        ),
        Class::Halt => {
            control.halt(format!("the provider refused with {}", describe()));
            // Not sent: the row goes back to be sent once the cause is fixed.
            (
                Disposition::Deferred {
                    code,
                    detail: describe(),
                    retry_in: Duration::ZERO,
                    by_rule: false,
                },
                None,
            )
        }
        Class::InDoubt => (
            Disposition::InDoubt {
                code,
                detail: describe(),
            },
            Some(true),
        ),
    }
}

fn spawn_ticker(progress: &Progress, stop: &CancellationToken) -> tokio::task::JoinHandle<()> {
    let progress = progress.clone();
    let stop = stop.clone();
    tokio::spawn(async move {
        if !progress.logs() {
            return;
        }
        let mut interval = tokio::time::interval(Progress::log_interval());
        interval.tick().await;
        loop {
            tokio::select! {
                _ = interval.tick() => eprintln!("{}", progress.log_line()),
                () = stop.cancelled() => return,
            }
        }
    })
}
