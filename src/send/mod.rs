//! The send pipeline: claims journaled rows, paces requests, sends them through a
//! provider, classifies every outcome once and records it.
//!
//! Shape (as oha's client): one dispatcher claims as many rows as there are free
//! slots (the intent to send is durable before the claim returns), one task per
//! claimed row waits for its pacing ticket, sends, and hands the outcome to the one
//! journal writer, a thread that owns the SQLite connection and groups commits.
//! A stop (Ctrl-C, SIGTERM, a halt) stops claiming, lets what is in flight finish,
//! and records it, so the run can be resumed.

pub mod breaker;
pub mod progress;
pub mod rate;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::journal::{Claimed, Disposition, Job, Journal};
use crate::provider::{Class, Message, Provider, Response, classify};
use breaker::Breaker;
use progress::Progress;
use rate::{Pacer, backoff};

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
    pub concurrency: usize,
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

enum WriterMsg {
    Claim {
        limit: usize,
        new_limit: usize,
        reply: oneshot::Sender<anyhow::Result<Claimed>>,
    },
    Record(u64, Disposition),
    /// Persist the halt at once: a kill while in-flight requests finish must not
    /// lose it.
    Halt(String),
}

/// What the tasks share.
struct Control {
    breaker: Mutex<Breaker>,
    halt: Mutex<Option<String>>,
    stop: CancellationToken,
    writer: std::sync::mpsc::Sender<WriterMsg>,
}

impl Control {
    fn halt(&self, reason: String) {
        if let Ok(mut halt) = self.halt.lock()
            && halt.is_none()
        {
            *halt = Some(reason.clone());
            let _ = self.writer.send(WriterMsg::Halt(reason));
        }
        self.stop.cancel();
    }

    fn halted(&self) -> Option<String> {
        self.halt.lock().ok().and_then(|h| h.clone())
    }
}

/// Runs the pipeline until the plan is sent, the campaign halts, or `interrupt` fires.
/// Returns how it ended and the journal (for the final counts).
pub async fn run(
    journal: Journal,
    provider: Arc<dyn Provider>,
    options: &Options,
    progress: Progress,
    interrupt: CancellationToken,
) -> anyhow::Result<(RunEnd, Journal)> {
    // A std channel: sending never blocks (it is unbounded), and the writer thread
    // can wait on it with a timeout.
    let (writer_tx, writer_rx) = std::sync::mpsc::channel();
    let writer = std::thread::Builder::new()
        .name("journal-writer".into())
        .spawn(move || write_journal(journal, writer_rx))
        .context("starting the journal writer")?;

    let control = Arc::new(Control {
        breaker: Mutex::new(Breaker::default()),
        halt: Mutex::new(None),
        stop: interrupt.child_token(),
        writer: writer_tx.clone(),
    });
    let pacer = Pacer::start(options.rate).context("starting the pacer")?;
    let ticker = spawn_ticker(&progress, &pacer, &control.stop);
    let dispatched = dispatch(&writer_tx, &provider, options, &progress, &pacer, &control).await;

    ticker.abort();
    // The writer stops once every sender is gone; the tasks' are, the control's too.
    let halted = control.halted();
    drop(control);
    drop(writer_tx);
    let mut journal = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the journal writer panicked"))??;
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
    let slots = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let mut new_remaining = options.limit.unwrap_or(u64::MAX);
    let mut tasks = JoinSet::new();
    let stop = control.stop.clone();
    loop {
        let first = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => permit.context("slots closed")?,
            () = stop.cancelled() => break,
        };
        let mut permits = vec![first];
        while let Ok(permit) = Arc::clone(&slots).try_acquire_owned() {
            permits.push(permit);
        }
        let (reply, claimed) = oneshot::channel();
        writer
            .send(WriterMsg::Claim {
                limit: permits.len(),
                new_limit: usize::try_from(new_remaining).unwrap_or(usize::MAX),
                reply,
            })
            .map_err(|_| anyhow::anyhow!("the journal writer stopped"))?;
        let claimed = match claimed.await {
            Ok(Ok(claimed)) => claimed,
            Ok(Err(e)) => {
                control.halt(format!("the journal could not be written: {e:#}"));
                break;
            }
            Err(_) => anyhow::bail!("the journal writer stopped"),
        };
        for _ in 0..claimed.opted_out {
            progress
                .tally
                .opted_out
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            progress.advance(pacer.current_rate());
        }
        if claimed.jobs.is_empty() {
            drop(permits);
            if claimed.opted_out + claimed.window_closed > 0 {
                // Every candidate was skipped; more rows may wait behind them.
                continue;
            }
            let retry_at = claimed
                .next_retry_at
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| {
                    let wait = (t.with_timezone(&chrono::Utc) - chrono::Utc::now())
                        .to_std()
                        .unwrap_or_default();
                    tokio::time::Instant::now() + wait + Duration::from_millis(50)
                });
            if tasks.is_empty() && retry_at.is_none() {
                break;
            }
            tokio::select! {
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => joined.context("a send task failed")?,
                () = tokio::time::sleep_until(retry_at.unwrap_or_else(tokio::time::Instant::now)), if retry_at.is_some() => {},
                () = stop.cancelled() => break,
            }
            continue;
        }
        let fresh = claimed.jobs.iter().filter(|j| j.attempts == 1).count() as u64;
        new_remaining = new_remaining.saturating_sub(fresh);
        for (job, permit) in claimed.jobs.into_iter().zip(permits) {
            let provider = Arc::clone(provider);
            let pacer = pacer.clone();
            let writer = writer.clone();
            let control = Arc::clone(control);
            let progress = progress.clone();
            tasks.spawn(async move {
                let disposition =
                    send_one(&job, provider.as_ref(), &pacer, &control, &progress).await;
                let _ = writer.send(WriterMsg::Record(job.key, disposition));
                drop(permit);
            });
        }
        while let Some(joined) = tasks.try_join_next() {
            joined.context("a send task failed")?;
        }
    }
    while let Some(joined) = tasks.join_next().await {
        joined.context("a send task failed")?;
    }
    Ok(())
}

async fn send_one(
    job: &Job,
    provider: &dyn Provider,
    pacer: &Pacer,
    control: &Control,
    progress: &Progress,
) -> Disposition {
    let unsent = || Disposition::Deferred {
        code: None,
        detail: "stopped before sending".to_owned(),
        retry_in: Duration::ZERO,
    };
    tokio::select! {
        () = pacer.ticket() => {},
        () = control.stop.cancelled() => return unsent(),
    }
    if control.stop.is_cancelled() {
        return unsent();
    }
    let message = Message {
        phone: job.phone,
        values: job.values.clone(),
    };
    progress
        .tally
        .requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let response = provider.send(&message).await;
    let class = classify(&response);
    let (disposition, hard_failure) = decide(job, &response, &class, pacer, control);
    let tally = &progress.tally;
    let counter = match &disposition {
        Disposition::Accepted { .. } => Some(&tally.accepted),
        Disposition::Failed { .. } => Some(&tally.failed),
        Disposition::InDoubt { .. } => Some(&tally.in_doubt),
        Disposition::OptedOut { .. } => Some(&tally.opted_out),
        Disposition::Deferred { .. } => {
            tally
                .retried
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            None
        }
    };
    if let Some(counter) = counter {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        progress.advance(pacer.current_rate());
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
    job: &Job,
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
            if job.attempts >= MAX_ATTEMPTS {
                let detail = format!("gave up after {} attempts: {}", job.attempts, describe());
                (Disposition::Failed { code, detail }, Some(true))
            } else {
                let retry_in = backoff(job.attempts, *retry_after);
                (
                    Disposition::Deferred {
                        code,
                        detail: describe(),
                        retry_in,
                    },
                    None,
                )
            }
        }
        // Too many messages to this one person (Meta's pair rate limit): only their
        // row waits; neither the pace nor the breaker counts it.
        Class::BackOffRecipient { retry_after } => (
            Disposition::Deferred {
                code,
                detail: describe(),
                retry_in: backoff(job.attempts, *retry_after),
            },
            None,
        ),
        Class::Unknown => {
            if job.attempts >= MAX_UNKNOWN_ATTEMPTS {
                let detail = format!(
                    "unknown error, gave up after {} attempts: {}",
                    job.attempts,
                    describe()
                );
                (Disposition::Failed { code, detail }, Some(true))
            } else {
                (
                    Disposition::Deferred {
                        code,
                        detail: describe(),
                        retry_in: backoff(job.attempts, None),
                    },
                    None,
                )
            }
        }
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

/// How long the writer holds outcomes back for a claim to commit them with, when
/// none is in its inbox: a finished task frees a slot, so a claim usually follows
/// at once, and one commit (one fsync) instead of two is then enough.
const RECORD_DELAY: Duration = Duration::from_millis(2);

/// The journal writer: owns the connection, groups outcome commits, and answers
/// claims only once their intent (and every outcome before it) is durable.
fn write_journal(
    mut journal: Journal,
    inbox: std::sync::mpsc::Receiver<WriterMsg>,
) -> anyhow::Result<Journal> {
    use std::sync::mpsc::RecvTimeoutError;
    const GROUP: usize = 2048;
    let mut pending: Vec<(u64, Disposition)> = Vec::new();
    // When the oldest outcome in `pending` arrived.
    let mut pending_since = Instant::now();
    let mut failure: Option<String> = None;
    let mut next = None;
    loop {
        let first = match next.take() {
            Some(msg) => msg,
            None => match inbox.recv() {
                Ok(msg) => msg,
                Err(_) => break,
            },
        };
        let mut batch = vec![first];
        while batch.len() < GROUP {
            match inbox.try_recv() {
                Ok(msg) => batch.push(msg),
                Err(_) => break,
            }
        }
        for msg in batch {
            match msg {
                WriterMsg::Record(key, disposition) => {
                    if pending.is_empty() {
                        pending_since = Instant::now();
                    }
                    pending.push((key, disposition));
                }
                WriterMsg::Halt(reason) => {
                    if failure.is_none() {
                        let halted = journal
                            .record(&pending)
                            .and_then(|()| journal.halt(&reason));
                        match halted {
                            Ok(()) => pending.clear(),
                            Err(e) => failure = Some(format!("recording the halt: {e}")),
                        }
                    }
                }
                WriterMsg::Claim {
                    limit,
                    new_limit,
                    reply,
                } => {
                    let result = match &failure {
                        Some(reason) => Err(anyhow::anyhow!("{reason}")),
                        None => journal
                            .claim(limit, new_limit, &pending)
                            .context("claiming rows"),
                    };
                    if result.is_ok() {
                        pending.clear();
                    } else if failure.is_none() {
                        failure = result.as_ref().err().map(|e| format!("{e:#}"));
                    }
                    let _ = reply.send(result);
                }
            }
        }
        if pending.is_empty() || failure.is_some() {
            continue;
        }
        let wait = RECORD_DELAY.saturating_sub(pending_since.elapsed());
        match inbox.recv_timeout(wait) {
            Ok(msg) if !wait.is_zero() => next = Some(msg),
            Ok(msg) => {
                next = Some(msg);
                record(&mut journal, &mut pending, &mut failure);
            }
            Err(RecvTimeoutError::Timeout) => record(&mut journal, &mut pending, &mut failure),
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    if !pending.is_empty() {
        journal
            .record(&pending)
            .context("recording the last outcomes")?;
    }
    Ok(journal)
}

fn record(
    journal: &mut Journal,
    pending: &mut Vec<(u64, Disposition)>,
    failure: &mut Option<String>,
) {
    match journal.record(pending) {
        Ok(()) => pending.clear(),
        Err(e) => *failure = Some(format!("recording outcomes: {e}")),
    }
}

fn spawn_ticker(
    progress: &Progress,
    pacer: &Pacer,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let progress = progress.clone();
    let pacer = pacer.clone();
    let stop = stop.clone();
    tokio::spawn(async move {
        if !progress.logs() {
            return;
        }
        let mut interval = tokio::time::interval(Progress::log_interval());
        interval.tick().await;
        loop {
            tokio::select! {
                _ = interval.tick() => eprintln!("{}", progress.log_line(pacer.current_rate())),
                () = stop.cancelled() => return,
            }
        }
    })
}
