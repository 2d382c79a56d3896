//! The HTTP side: axum handlers that verify each request, parse it, and hand it to
//! one writer thread that owns the SQLite connection (the house pattern, as the
//! send pipeline's journal writer). The writer groups whatever arrived together into
//! one short transaction, so a burst costs one fsync per group, not per request;
//! a handler answers only once its delivery is durable.

use std::future::Future;
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
use rusqlite::{Connection, TransactionBehavior};
use serde::Serialize;
use tokio::sync::oneshot;

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
}

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
}

/// Serves webhooks on `listener` until `shutdown` completes, recording into `db`;
/// then lets requests in progress finish, and returns once everything accepted is
/// durable.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: ServerConfig,
    db: Db,
    ui: Ui,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<TallySnapshot> {
    let tally = Arc::new(Tally::default());
    let (writer_tx, writer_rx) = mpsc::channel();
    let writer = {
        let tally = Arc::clone(&tally);
        let ui = ui.clone();
        let keep_bodies = config.keep_bodies;
        std::thread::Builder::new()
            .name("webhook-writer".into())
            .spawn(move || write_deliveries(db.conn, writer_rx, &tally, &ui, keep_bodies))
            .context("starting the webhook writer")?
    };
    let state = Arc::new(AppState {
        config,
        writer: writer_tx,
        tally: Arc::clone(&tally),
        ui,
    });
    let served = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving webhooks");
    // The router, and with it the last sender, is gone: the writer drains and stops.
    let written = tokio::task::spawn_blocking(move || writer.join())
        .await
        .context("waiting for the webhook writer")?
        .map_err(|_| anyhow::anyhow!("the webhook writer panicked"))?;
    served?;
    written?;
    Ok(tally.snapshot())
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
/// or as soon as a body without one goes over.
async fn read_body(request: Request) -> Result<(Parts, Bytes), Response> {
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
    match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => Ok((parts, bytes)),
        Err(_) => Err(too_large()),
    }
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
    let (parts, body) = match read_body(request).await {
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
    let (parts, body) = match read_body(request).await {
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
    let (reply, answer) = oneshot::channel();
    if state.writer.send(Job { delivery, reply }).is_err() {
        return Outcome::Unavailable("the writer stopped".to_owned());
    }
    answer
        .await
        .unwrap_or_else(|_| Outcome::Unavailable("the writer stopped".to_owned()))
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
