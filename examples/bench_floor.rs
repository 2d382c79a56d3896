//! The floor under `send`: what its two unavoidable parts cost per message at
//! 1,000 messages a second on this machine, each with nothing of the pipeline
//! around it. `bench_send operating-point` measures the whole engine; the gap
//! between the two is the pipeline's own cost (the pacer, the window, the plan's
//! rows and their consent checks, the departure log, the request's body, the
//! answer's classification, the outcome).
//!
//! ```sh
//! cargo run --release --example bench_floor -- wire [SECONDS] [LATENCY_MS...]
//! cargo run --release --example bench_floor -- journal [ROWS] [--wide]
//! ```
//!
//! - `wire`: the requests alone, on the provider's connections (`provider::wire`,
//!   HTTP/1.1 on hyper), against the same loopback mock as `bench_send` (default
//!   20 s at 0 and 300 ms). Every 20 ms (the pipeline's batch interval) it starts
//!   20 requests, each in a task of its own as the pipeline does, each with a Cloud
//!   API template body of the size the pipeline sends, and parses each answer's
//!   JSON. CPU of the whole process (one thread), per request.
//! - `journal`: a durable SQLite journal reduced to what recording a send must
//!   write (default 20,000 rows): the connection set up as the tool's
//!   (WAL, `synchronous=FULL`, `secure_delete`), a table with the two indexes a send
//!   changes (`journal_by_state`, `journal_by_message_id`), and every 20 ms one
//!   transaction that moves a campaign's mark and records 20 answers (state,
//!   message id, time, attempts), committed with its fsync. CPU of that thread per
//!   message. `--wide` pads each row to the size of a real journal row.

mod support;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use support::server::Server;
use support::{rusage_self, timeval};
use wacampaign::provider::wire::Wire;
use wacampaign::provider::{Departure, Pace};
use wacampaign::secret::Secret;

/// Messages per batch and the batch interval, as the pipeline has them at 1,000/s.
const BATCH: u64 = 20;
const INTERVAL: Duration = Duration::from_millis(20);

fn main() -> anyhow::Result<()> {
    // As `wacampaign` sets it (src/main.rs): freed memory is kept ten seconds.
    // SAFETY: option 15 is mimalloc's purge delay; any value is valid for it.
    unsafe { libmimalloc_sys::mi_option_set(15, 10_000) };
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => support::server::serve_args(&args[1..]),
        Some("wire") => wire(&args[1..]),
        Some("journal") => journal(&args[1..]),
        _ => bail!(
            "usage: bench_floor wire [SECONDS] [LATENCY_MS...]\n       bench_floor journal [ROWS] [--wide]"
        ),
    }
}

fn numbers(args: &[String]) -> anyhow::Result<Vec<u64>> {
    args.iter()
        .filter(|a| !a.starts_with("--"))
        .map(|a| a.parse().with_context(|| format!("`{a}` is not a number")))
        .collect()
}

/// Lets every request go at once: the schedule is the pacing.
struct Open;

impl Pace for Open {
    fn depart(&self) -> Result<(), Duration> {
        Ok(())
    }
    fn abandon(&self) {}
}

fn wire(args: &[String]) -> anyhow::Result<()> {
    let numbers = numbers(args)?;
    let seconds = numbers.first().copied().unwrap_or(20);
    let latencies = if numbers.len() > 1 {
        numbers[1..].to_vec()
    } else {
        vec![0, 300]
    };
    for latency_ms in latencies {
        let server = Server::start(Duration::from_millis(latency_ms), None)?;
        let url = format!("{}/v23.0/1234567890/messages", server.base_url());
        let wire = Arc::new(Wire::new(
            &url,
            &[
                (http::header::AUTHORIZATION, "Bearer EAAGbenchmarktoken"),
                (http::header::CONTENT_TYPE, "application/json"),
            ],
            Duration::from_secs(10),
            Duration::from_secs(30),
            4096,
        )?);
        let secret = Arc::new(Secret::new("EAAGbenchmarktoken", "the benchmark")?);
        let runtime = wacampaign::send::runtime()?;
        let before = rusage_self();
        let started = Instant::now();
        let sent = runtime.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            let mut tick = tokio::time::interval(INTERVAL);
            let mut n: u64 = 0;
            while started.elapsed() < Duration::from_secs(seconds) {
                tick.tick().await;
                while tasks.try_join_next().is_some() {}
                for _ in 0..BATCH {
                    n += 1;
                    let body = bytes::Bytes::from(format!(
                        "{{\"messaging_product\":\"whatsapp\",\"recipient_type\":\"individual\",\
                         \"to\":\"+5215512{n:06}\",\"type\":\"template\",\"template\":{{\"name\":\
                         \"order_update\",\"language\":{{\"policy\":\"deterministic\",\"code\":\
                         \"es_MX\"}},\"components\":[{{\"type\":\"body\",\"parameters\":[{{\"type\":\
                         \"text\",\"text\":\"Ana\"}},{{\"type\":\"text\",\"text\":\"A-{n}\"}}]}}]}},\
                         \"biz_opaque_callback_data\":\"wacampaign:bench:{n}\"}}"
                    ));
                    let wire = Arc::clone(&wire);
                    let secret = Arc::clone(&secret);
                    tasks.spawn(async move {
                        let departure = Departure::paced(Arc::new(Open));
                        if let Ok(answer) = wire.send(body, departure, &secret).await {
                            let parsed: Option<serde_json::Value> =
                                serde_json::from_slice(&answer.body).ok();
                            std::hint::black_box(parsed);
                        }
                    });
                }
            }
            while tasks.join_next().await.is_some() {}
            n
        });
        let after = rusage_self();
        let served = server.stop()?;
        if served.count != sent {
            bail!("sent {sent} requests but the server saw {}", served.count);
        }
        // User and system together: this kernel splits them by sampling ticks.
        let cpu = timeval(after.ru_utime).saturating_sub(timeval(before.ru_utime))
            + timeval(after.ru_stime).saturating_sub(timeval(before.ru_stime));
        println!(
            "wire at {latency_ms} ms: {sent} requests, {:.1}/s at the server, {:.1} us CPU per \
             request",
            served.achieved_rate(),
            cpu.as_secs_f64() * 1e6 / sent as f64,
        );
    }
    Ok(())
}

/// This thread's CPU time so far.
fn thread_cpu() -> Duration {
    // SAFETY: a zeroed rusage is valid; getrusage(2) fills it for this thread.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above, with a pointer to a live rusage.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &raw mut usage) };
    timeval(usage.ru_utime) + timeval(usage.ru_stime)
}

fn journal(args: &[String]) -> anyhow::Result<()> {
    let rows = numbers(args)?.first().copied().unwrap_or(20_000);
    let wide = args.iter().any(|a| a == "--wide");
    let rows = i64::try_from(rows)?;
    let dir = tempfile::tempdir()?;
    let conn = rusqlite::Connection::open(dir.path().join("floor.db"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.execute_batch(
        "CREATE TABLE campaigns (id TEXT PRIMARY KEY, claimed_seq INTEGER);
         INSERT INTO campaigns VALUES ('bench', 0);
         CREATE TABLE journal (id INTEGER PRIMARY KEY, campaign_id TEXT NOT NULL,
             state TEXT NOT NULL, seq INTEGER NOT NULL, message_id TEXT, outcome_at TEXT,
             attempts INTEGER NOT NULL, plan TEXT);
         CREATE INDEX journal_by_state ON journal (campaign_id, state, seq);
         CREATE INDEX journal_by_message_id ON journal (message_id) WHERE message_id IS NOT NULL;",
    )?;
    {
        // A real row's plan: its contact, values and the rest, about 600 bytes.
        let plan = if wide { "x".repeat(600) } else { String::new() };
        let tx = conn.unchecked_transaction()?;
        let mut insert = tx.prepare(
            "INSERT INTO journal (id, campaign_id, state, seq, attempts, plan)
             VALUES (?1, 'bench', 'planned', ?1, 0, ?2)",
        )?;
        for id in 1..=rows {
            insert.execute(rusqlite::params![id, plan])?;
        }
        drop(insert);
        tx.commit()?;
    }
    let before = thread_cpu();
    let started = Instant::now();
    let mut due = Instant::now();
    let mut next = 1;
    let batch = i64::try_from(BATCH)?;
    while next <= rows {
        let last = (next + batch - 1).min(rows);
        let tx = conn.unchecked_transaction()?;
        tx.prepare_cached("UPDATE campaigns SET claimed_seq = ?1 WHERE id = 'bench'")?
            .execute([last])?;
        let mut record = tx.prepare_cached(
            "UPDATE journal SET state = 'accepted', message_id = ?2, outcome_at = ?3,
                 attempts = attempts + 1
             WHERE id = ?1",
        )?;
        for id in next..=last {
            record.execute(rusqlite::params![
                id,
                format!("wamid.HBgNBENCH{id:016X}"),
                "2026-11-28T21:00:00.123Z"
            ])?;
        }
        drop(record);
        tx.commit()?;
        next = last + 1;
        due += INTERVAL;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let cpu = thread_cpu().saturating_sub(before);
    println!(
        "journal: {rows} messages in {:.1} s, {:.1} us CPU per message ({} rows)",
        started.elapsed().as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / rows as f64,
        if wide { "wide" } else { "narrow" }
    );
    Ok(())
}
