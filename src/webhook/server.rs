//! The HTTP side: axum handlers that verify each request, parse it, and hand it to
//! one writer thread that owns the SQLite connection (the house pattern, as the
//! send pipeline's journal writer). The writer groups whatever arrived together into
//! one short transaction, so a burst costs one fsync per group, not per request;
//! a handler answers only once its delivery is durable.
//!
//! Anyone who can reach the port can open connections, so the accept loop is ours
//! rather than `axum::serve`'s: it bounds how many connections are open, gives each
//! request's headers and body a deadline, and on shutdown stops within a bound
//! instead of waiting for clients that never finish (see [`Limits`]).

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rusqlite::{Connection, TransactionBehavior};
use serde::Serialize;
use tokio::sync::{Semaphore, oneshot};
use tokio_util::sync::CancellationToken;

use super::store::{self, Followups, Recorded};
use super::{
    Delivery, HEALTH_PATH, MAX_BODY_BYTES, META_PATH, OptOutRules, TWILIO_PATH, meta, twilio,
};
use crate::clock;
use crate::db::Db;
use crate::journal::settle::{RowRef, Settled, settle};
use crate::secret::Secret;
use crate::ui::Ui;

/// Deliveries recorded in one transaction at most.
const MAX_GROUP: usize = 512;
/// How often rows a status found in flight are looked at again.
const RECHECK_EVERY: Duration = Duration::from_secs(2);
/// How long to keep looking at such a row (longer than any send timeout).
const RECHECK_FOR: Duration = Duration::from_secs(15 * 60);
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// What the server accepts, and with which secrets.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Meta's webhooks, when the app secret is known.
    pub meta: Option<MetaConfig>,
    /// Twilio's webhooks, when the auth token and the public URL are known.
    pub twilio: Option<TwilioConfig>,
    pub rules: OptOutRules,
    /// Raw bodies older than this are pruned (their hashes stay); `None` keeps them.
    pub keep_bodies: Option<chrono::Duration>,
    pub limits: Limits,
}

/// What one client may hold, and how long a stop may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once. Beyond it the server stops accepting, and new
    /// connections wait in the kernel's backlog (costing this process no file)
    /// until one closes: a burst of real deliveries is delayed, never refused.
    pub max_connections: u32,
    /// A request's headers must arrive within this; it is also how long an idle
    /// keep-alive connection is kept (hyper's timer covers the wait for the next
    /// request's first byte).
    pub header_timeout: Duration,
    /// A request's whole body must arrive within this after its headers.
    pub body_timeout: Duration,
    /// On a stop, how long deliveries already received may take to be recorded;
    /// any still waiting then are answered 503 so the provider sends them again.
    pub shutdown_grace: Duration,
}

impl Limits {
    /// Open files under systemd's default soft limit (1,024): 512 connections
    /// leave room for the database, its WAL, the listener and the runtime.
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 512;
    pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    /// 3 MB (the largest body accepted) at 100 kB/s.
    pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
    /// Well inside systemd's default stop timeout (90 s).
    pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            header_timeout: Self::DEFAULT_HEADER_TIMEOUT,
            body_timeout: Self::DEFAULT_BODY_TIMEOUT,
            shutdown_grace: Self::DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

/// After the grace period, how long connections get to write the 503s handlers
/// then answer before they are dropped.
const FLUSH_AFTER_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct MetaConfig {
    pub app_secret: Secret,
    /// Without one, the verification handshake is always refused.
    pub verify_token: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct TwilioConfig {
    pub auth_token: Secret,
    /// The URL Twilio calls, as configured in Twilio: what it signs.
    pub public_url: String,
}

/// What the server did, for its closing line.
#[derive(Debug, Default)]
pub struct Tally {
    pub recorded: AtomicU64,
    pub events: AtomicU64,
    pub duplicates: AtomicU64,
    pub unreadable: AtomicU64,
    /// Refused: a bad or missing signature, or a wrong verify token.
    pub rejected: AtomicU64,
    /// Could not be recorded; the provider retries.
    pub failed: AtomicU64,
    pub resolved_in_doubt: AtomicU64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct TallySnapshot {
    pub recorded: u64,
    pub events: u64,
    pub duplicates: u64,
    pub unreadable: u64,
    pub rejected: u64,
    pub failed: u64,
    pub resolved_in_doubt: u64,
}

impl Tally {
    pub fn snapshot(&self) -> TallySnapshot {
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        TallySnapshot {
            recorded: get(&self.recorded),
            events: get(&self.events),
            duplicates: get(&self.duplicates),
            unreadable: get(&self.unreadable),
            rejected: get(&self.rejected),
            failed: get(&self.failed),
            resolved_in_doubt: get(&self.resolved_in_doubt),
        }
    }
}

/// What a delivery came to, as the handler answers it.
#[derive(Debug)]
enum Outcome {
    Recorded(Recorded),
    /// The database could not be written (locked too long, disk full): 503.
    Unavailable(String),
}

struct Job {
    delivery: Delivery,
    reply: oneshot::Sender<Outcome>,
}

struct AppState {
    config: ServerConfig,
    writer: mpsc::Sender<Job>,
    tally: Arc<Tally>,
    ui: Ui,
    /// Cancelled when a stop begins: bodies still arriving are refused.
    stopping: CancellationToken,
    /// Cancelled when the grace period is over: deliveries still waiting for the
    /// writer are answered 503.
    given_up: CancellationToken,
}

/// Serves webhooks on `listener` until `shutdown` completes, recording into `db`.
/// Then stops accepting, closes idle connections, refuses bodies still arriving
/// (503), waits up to [`Limits::shutdown_grace`] for deliveries being recorded,
/// answers any still waiting 503, and returns; never later than the grace period,
/// a short flush and the grace period again for the writer's last transaction.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: ServerConfig,
    db: Db,
    ui: Ui,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<TallySnapshot> {
    let limits = config.limits;
    anyhow::ensure!(
        limits.max_connections > 0,
        "the connection limit must be at least 1"
    );
    let tally = Arc::new(Tally::default());
    let (writer_tx, writer_rx) = mpsc::channel();
    // The writer reports here rather than being joined, so a writer stuck in
    // SQLite's busy wait cannot hold the stop past its bound.
    let (written_tx, written_rx) = oneshot::channel();
    {
        let tally = Arc::clone(&tally);
        let ui = ui.clone();
        let keep_bodies = config.keep_bodies;
        std::thread::Builder::new()
            .name("webhook-writer".into())
            .spawn(move || {
                let written = write_deliveries(db.conn, writer_rx, &tally, &ui, keep_bodies);
                let _ = written_tx.send(written);
            })
            .context("starting the webhook writer")?;
    }
    let stopping = CancellationToken::new();
    let given_up = CancellationToken::new();
    let dropped = CancellationToken::new();
    let state = Arc::new(AppState {
        config,
        writer: writer_tx,
        tally: Arc::clone(&tally),
        ui: ui.clone(),
        stopping: stopping.clone(),
        given_up: given_up.clone(),
    });
    let connections = Arc::new(Semaphore::new(limits.max_connections as usize));
    let accepted = accept_loop(
        listener,
        router(state),
        limits,
        &connections,
        &stopping,
        &dropped,
        &ui,
        shutdown,
    )
    .await;

    // Every connection holds a permit until it ends: all of them back means none is
    // left. Idle ones were closed and bodies still arriving refused when the stop
    // began; what remains is deliveries waiting for the writer.
    let drained = async {
        let _ = connections.acquire_many(limits.max_connections).await;
    };
    let mut drained = pin!(drained);
    if tokio::time::timeout(limits.shutdown_grace, &mut drained)
        .await
        .is_err()
    {
        given_up.cancel();
        if tokio::time::timeout(FLUSH_AFTER_GRACE, &mut drained)
            .await
            .is_err()
        {
            ui.warn(format!(
                "{} connections still open {} s after the stop began; closing them",
                limits.max_connections as usize - connections.available_permits(),
                (limits.shutdown_grace + FLUSH_AFTER_GRACE).as_secs()
            ));
        }
    }
    // Dropping the last connection drops the last sender: the writer drains and stops.
    dropped.cancel();
    let written = match tokio::time::timeout(limits.shutdown_grace, written_rx).await {
        Ok(Ok(written)) => written,
        Ok(Err(_)) => Err(anyhow::anyhow!("the webhook writer panicked")),
        Err(_) => {
            // Whatever it has not committed was answered 503, never 200: SQLite
            // rolls it back when the process ends, and the provider sends it again.
            ui.warn("the webhook writer is still busy with the database; stopping without it");
            Ok(())
        }
    };
    accepted?;
    written?;
    Ok(tally.snapshot())
}

/// Accepts connections while fewer than [`Limits::max_connections`] are open, until
/// `shutdown` completes; each connection is served on its own task, which holds a
/// permit of `connections` until it ends.
#[allow(clippy::too_many_arguments)]
async fn accept_loop(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: Limits,
    connections: &Arc<Semaphore>,
    stopping: &CancellationToken,
    dropped: &CancellationToken,
    ui: &Ui,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut shutdown = pin!(shutdown);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut warned_full = false;
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = Arc::clone(connections).acquire_owned() => {
                permit.context("the connection limit was closed")?
            }
        };
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of files, most likely: wait for some to close rather than spin.
                ui.warn(format!(
                    "accepting a connection: {e}; retrying in 1 s (raise the open-file limit, \
                     or lower --max-connections)"
                ));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if connections.available_permits() == 0 && !warned_full {
            warned_full = true;
            ui.warn(format!(
                "{} connections open: new ones wait until one closes (--max-connections)",
                limits.max_connections
            ));
        } else if connections.available_permits() > limits.max_connections as usize / 2 {
            warned_full = false;
        }
        let _ = stream.set_nodelay(true);
        let connection = http.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone()),
        );
        let stopping = stopping.clone();
        let dropped = dropped.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut connection = pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                () = stopping.cancelled() => {}
                () = dropped.cancelled() => return,
            }
            // Closes the connection if it is between requests (or still sending
            // headers); otherwise lets the request in progress finish, then closes.
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                _ = connection => {}
                () = dropped.cancelled() => {}
            }
        });
    }
    // Dropping the listener resets connections still in the backlog: they were
    // never read, and their clients retry.
    drop(listener);
    stopping.cancel();
    Ok(())
}

/// Errors of one connection, not of the listener (as hyper's and axum's loops
/// tell them apart).
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(META_PATH, get(meta_verify).post(meta_post))
        .route(TWILIO_PATH, post(twilio_post))
        .route(HEALTH_PATH, get(|| async { "ok\n" }))
        .with_state(state)
}

/// The request's head and its whole body, or 413 when the body is over
/// [`MAX_BODY_BYTES`]: refused from `Content-Length` before a byte of it is read,
/// or as soon as a body without one goes over. A body that does not arrive within
/// [`Limits::body_timeout`] gets 408, and one still arriving when a stop begins
/// 503; both close the connection.
async fn read_body(state: &AppState, request: Request) -> Result<(Parts, Bytes), Response> {
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request bodies are limited to {MAX_BODY_BYTES} bytes\n"),
        )
            .into_response()
    };
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let timeout = state.config.limits.body_timeout;
    tokio::select! {
        read = tokio::time::timeout(timeout, axum::body::to_bytes(body, MAX_BODY_BYTES)) => {
            match read {
                Ok(Ok(bytes)) => Ok((parts, bytes)),
                Ok(Err(_)) => Err(too_large()),
                Err(_) => {
                    state.ui.debug(format!(
                        "closed a connection whose request body did not arrive within {} s",
                        timeout.as_secs_f64()
                    ));
                    Err((
                        StatusCode::REQUEST_TIMEOUT,
                        [(header::CONNECTION, "close")],
                        format!(
                            "the request body did not arrive within {} s\n",
                            timeout.as_secs_f64()
                        ),
                    )
                        .into_response())
                }
            }
        }
        () = state.stopping.cancelled() => Err(stopping()),
    }
}

/// The answer to a request the server will not record because it is stopping: the
/// provider sends it again later.
fn stopping() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "10"), (header::CONNECTION, "close")],
        "the server is stopping; send this again later\n",
    )
        .into_response()
}

async fn meta_verify(
    State(state): State<Arc<AppState>>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let expected = state
        .config
        .meta
        .as_ref()
        .and_then(|m| m.verify_token.as_ref())
        .map(Secret::expose);
    match meta::handshake(
        expected,
        get("hub.mode"),
        get("hub.verify_token"),
        get("hub.challenge"),
    ) {
        Some(challenge) => {
            state.ui.info("Meta verified the webhook subscription");
            (
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                challenge.to_owned(),
            )
                .into_response()
        }
        None => {
            state.tally.rejected.fetch_add(1, Ordering::Relaxed);
            state
                .ui
                .warn("refused a Meta verification request: wrong or missing hub.verify_token");
            (StatusCode::FORBIDDEN, "verification failed\n").into_response()
        }
    }
}

async fn meta_post(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let Some(config) = &state.config.meta else {
        return not_configured("Meta", "WHATSAPP_APP_SECRET");
    };
    let (parts, body) = match read_body(&state, request).await {
        Ok(read) => read,
        Err(refused) => return refused,
    };
    let signature = parts
        .headers
        .get(meta::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok());
    if !meta::signature_valid(config.app_secret.expose().as_bytes(), &body, signature) {
        return reject(&state, "Meta", signature.is_some());
    }
    let delivery = meta::parse(body.to_vec(), &state.config.rules, &clock::now_string());
    let outcome = submit(&state, delivery).await;
    answer(outcome, "ok\n", "text/plain; charset=utf-8")
}

async fn twilio_post(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let Some(config) = &state.config.twilio else {
        return not_configured("Twilio", "TWILIO_AUTH_TOKEN and --public-url");
    };
    let (parts, body) = match read_body(&state, request).await {
        Ok(read) => read,
        Err(refused) => return refused,
    };
    let uri = &parts.uri;
    let params = twilio::form_params(&body);
    let url = match uri.query() {
        Some(query) => format!("{}?{query}", config.public_url),
        None => config.public_url.clone(),
    };
    let signature = parts
        .headers
        .get(twilio::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok());
    if !twilio::signature_valid(
        config.auth_token.expose().as_bytes(),
        &url,
        &params,
        signature,
    ) {
        return reject(&state, "Twilio", signature.is_some());
    }
    let callback = uri.query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == twilio::CALLBACK_QUERY)
            .map(|(_, v)| v.into_owned())
    });
    let delivery = twilio::parse(
        body.to_vec(),
        &params,
        callback,
        &state.config.rules,
        &clock::now_string(),
    );
    let outcome = submit(&state, delivery).await;
    // An empty TwiML response: nothing is sent back to the person.
    answer(
        outcome,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>",
        "text/xml",
    )
}

fn not_configured(provider: &str, needs: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        format!("{provider} webhooks are not enabled on this server (they need {needs})\n"),
    )
        .into_response()
}

fn reject(state: &AppState, provider: &str, had_signature: bool) -> Response {
    state.tally.rejected.fetch_add(1, Ordering::Relaxed);
    let why = if had_signature {
        "a signature that does not match"
    } else {
        "no signature"
    };
    state.ui.debug(format!(
        "refused a {provider} request with {why}; nothing recorded"
    ));
    (StatusCode::UNAUTHORIZED, "invalid signature\n").into_response()
}

async fn submit(state: &AppState, delivery: Delivery) -> Outcome {
    let source = delivery.source;
    let (reply, answer) = oneshot::channel();
    if state.writer.send(Job { delivery, reply }).is_err() {
        return Outcome::Unavailable("the writer stopped".to_owned());
    }
    tokio::select! {
        answer = answer => {
            answer.unwrap_or_else(|_| Outcome::Unavailable("the writer stopped".to_owned()))
        }
        // The writer may still commit it; the provider's retry is then a duplicate,
        // recognised by its hash. What matters is never to answer 200 before that.
        () = state.given_up.cancelled() => {
            state.ui.warn(format!(
                "a {} webhook was not recorded within the shutdown grace period; \
                 answered 503 so it is sent again",
                source
            ));
            Outcome::Unavailable("the server is stopping".to_owned())
        }
    }
}

fn answer(outcome: Outcome, ok_body: &'static str, content_type: &'static str) -> Response {
    match outcome {
        Outcome::Recorded(Recorded::Failed(reason)) => {
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{reason}\n")).into_response()
        }
        Outcome::Recorded(_) => ([(header::CONTENT_TYPE, content_type)], ok_body).into_response(),
        Outcome::Unavailable(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "10")],
            format!("cannot record now: {reason}\n"),
        )
            .into_response(),
    }
}

/// The writer: owns the connection, records whatever arrived together in one
/// transaction, answers each handler once that is durable, and looks again at rows
/// a status found while their send was in flight.
fn write_deliveries(
    conn: Connection,
    inbox: mpsc::Receiver<Job>,
    tally: &Tally,
    ui: &Ui,
    keep_bodies: Option<chrono::Duration>,
) -> anyhow::Result<()> {
    let mut in_flight: Vec<(RowRef, Instant)> = Vec::new();
    let mut last_recheck = Instant::now();
    let mut last_prune: Option<Instant> = None;
    loop {
        match inbox.recv_timeout(RECHECK_EVERY) {
            Ok(first) => {
                let mut group = vec![first];
                while group.len() < MAX_GROUP {
                    match inbox.try_recv() {
                        Ok(job) => group.push(job),
                        Err(_) => break,
                    }
                }
                let mut followups = Followups::default();
                record_group(&conn, group, &mut followups, tally, ui);
                let now = Instant::now();
                in_flight.extend(followups.in_flight.into_iter().map(|row| (row, now)));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if !in_flight.is_empty() && last_recheck.elapsed() >= RECHECK_EVERY {
            last_recheck = Instant::now();
            match recheck(&conn, &mut in_flight) {
                Ok(resolved) => {
                    tally
                        .resolved_in_doubt
                        .fetch_add(resolved, Ordering::Relaxed);
                }
                Err(e) => ui.warn(format!("looking again at rows in flight: {e}")),
            }
        }
        if let Some(keep) = keep_bodies
            && last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY)
        {
            last_prune = Some(Instant::now());
            let before = clock::format(clock::now() - keep);
            if let Err(e) = store::prune_bodies(&conn, &before) {
                ui.warn(format!("pruning old webhook bodies: {e}"));
            }
        }
    }
    if !in_flight.is_empty() {
        let resolved = recheck(&conn, &mut in_flight).context("settling rows in flight")?;
        tally
            .resolved_in_doubt
            .fetch_add(resolved, Ordering::Relaxed);
    }
    Ok(())
}

fn record_group(
    conn: &Connection,
    group: Vec<Job>,
    followups: &mut Followups,
    tally: &Tally,
    ui: &Ui,
) {
    let now = clock::now_string();
    let written = (|| -> rusqlite::Result<Vec<Recorded>> {
        let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
        let mut outcomes = Vec::with_capacity(group.len());
        for job in &group {
            outcomes.push(store::record_delivery(&tx, &job.delivery, &now, followups)?);
        }
        tx.commit()?;
        Ok(outcomes)
    })();
    match written {
        Ok(outcomes) => {
            for (job, recorded) in group.into_iter().zip(outcomes) {
                match &recorded {
                    Recorded::New { events } => {
                        tally.recorded.fetch_add(1, Ordering::Relaxed);
                        tally.events.fetch_add(*events as u64, Ordering::Relaxed);
                    }
                    Recorded::Duplicate => {
                        tally.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                    Recorded::Unreadable(reason) => {
                        tally.unreadable.fetch_add(1, Ordering::Relaxed);
                        ui.warn(format!(
                            "kept a signed {} webhook that could not be read ({reason}); body SHA-256 {}",
                            job.delivery.source, job.delivery.body_sha256
                        ));
                    }
                    Recorded::Failed(reason) => {
                        tally.failed.fetch_add(1, Ordering::Relaxed);
                        ui.warn(format!(
                            "could not record a {} webhook ({reason}); answered 500 so it is sent again",
                            job.delivery.source
                        ));
                    }
                }
                let _ = job.reply.send(Outcome::Recorded(recorded));
            }
        }
        Err(e) => {
            ui.warn(format!(
                "could not write {} webhook deliveries to the database: {e}; answered 503 so they are sent again",
                group.len()
            ));
            tally
                .failed
                .fetch_add(group.len() as u64, Ordering::Relaxed);
            for job in group {
                let _ = job.reply.send(Outcome::Unavailable(e.to_string()));
            }
        }
    }
}

/// Settles rows a status found in flight, now that their send may have recorded an
/// outcome; keeps those still in flight for a while. Returns how many were resolved.
fn recheck(conn: &Connection, rows: &mut Vec<(RowRef, Instant)>) -> rusqlite::Result<u64> {
    let now = clock::now_string();
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let mut resolved = 0;
    let mut keep = Vec::new();
    for (row, since) in rows.iter() {
        match settle(&tx, row, None, &now)? {
            Settled::InFlight if since.elapsed() < RECHECK_FOR => keep.push((row.clone(), *since)),
            Settled::Resolved => resolved += 1,
            _ => {}
        }
    }
    tx.commit()?;
    *rows = keep;
    Ok(resolved)
}
