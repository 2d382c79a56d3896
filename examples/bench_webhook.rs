//! Whether one `wacampaign webhook serve` keeps up with a burst of status webhooks.
//!
//! ```sh
//! cargo build --release    # building the example alone does not rebuild the binary
//! cargo run --release --example bench_webhook -- [RATE] [SECONDS] [--in-flight N] [--dir DIR]
//!     [--with-send CONTACTS]
//! ```
//!
//! Seeds a database with a campaign of RATE × SECONDS / 3 accepted messages (1 in
//! 100 held in doubt, with no message id), starts the release binary
//! (`target/release/wacampaign webhook serve`, beside this example's own directory)
//! on a free port of 127.0.0.1, and sends it RATE signed status webhooks a second
//! (default 1,000) for SECONDS seconds (default 30): `sent`, then `delivered`, then
//! `read` for every message, each in its own request, shaped like Meta's and signed
//! as Meta signs them.
//!
//! The load is open-loop: request i is due at start + i / RATE whether or not
//! earlier ones were answered (up to --in-flight at once, default 1,024), and its
//! latency counts from when it was due, so a server that falls behind shows it
//! (no coordinated omission). Afterwards the server is stopped with SIGTERM, its
//! CPU time read from `wait4`, and the database checked: every status recorded
//! exactly once, every row held in doubt resolved.
//!
//! `--with-send CONTACTS` also runs a real `wacampaign send` of a simulator campaign
//! to CONTACTS opted-in contacts at 200 messages a second on the same database for
//! the whole load, as in production, where campaigns and the webhook server share
//! the journal.

#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use tokio::sync::Semaphore;

const SECRET: &str = "bench-app-secret";
const CAMPAIGN: &str = "bench-webhooks";

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let mut positional = Vec::new();
    let mut in_flight = 1024usize;
    let mut dir: Option<PathBuf> = None;
    let mut with_send: Option<u64> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--in-flight" => in_flight = args.next().ok_or("--in-flight N")?.parse()?,
            "--dir" => dir = Some(args.next().ok_or("--dir DIR")?.into()),
            "--with-send" => with_send = Some(args.next().ok_or("--with-send N")?.parse()?),
            _ => positional.push(arg.parse::<u64>()?),
        }
    }
    let rate = positional.first().copied().unwrap_or(1000);
    let seconds = positional.get(1).copied().unwrap_or(30);
    let total = rate * seconds;
    let messages = total.div_ceil(3);

    let binary = support::release_binary()?;
    let scratch = tempfile::tempdir()?;
    let dir = dir.unwrap_or_else(|| scratch.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("bench.db");
    let _ = std::fs::remove_file(&db);
    let in_doubt = seed(&db, messages)?;
    if let Some(contacts) = with_send {
        prepare_send(&dir, &db, contacts)?;
    }
    let payloads = payloads(messages, total);
    let age = std::fs::metadata(&binary)?.modified()?.elapsed()?.as_secs();
    println!(
        "binary    {} (built {age} s ago)\nload      {total} status webhooks, {rate}/s for {seconds} s, \
         {messages} messages ({in_doubt} held in doubt), at most {in_flight} in flight",
        binary.display()
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let log = dir.join("server.log");
    let child = Command::new(&binary)
        .current_dir(&dir)
        .env("WHATSAPP_APP_SECRET", SECRET)
        .env("NO_COLOR", "1")
        .args(["--color", "never", "--db"])
        .arg(&db)
        .args(["webhook", "serve", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log)?)
        .stderr(std::fs::File::create(dir.join("server.err"))?)
        .spawn()?;
    let base = format!("http://127.0.0.1:{port}");

    let send = match with_send {
        Some(_) => Some((
            Instant::now(),
            Command::new(&binary)
                .current_dir(&dir)
                .env("NO_COLOR", "1")
                .args(["--color", "never", "--json", "--db"])
                .arg(&db)
                .args(["send", "send.toml", "--yes"])
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(dir.join("send.json"))?)
                .stderr(std::fs::File::create(dir.join("send.err"))?)
                .spawn()?,
        )),
        None => None,
    };
    // The generator gets one thread, so the server has the other core.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let run = runtime.block_on(load(&base, payloads, rate, in_flight))?;

    if let Some((started, mut send)) = send {
        let status = send.wait()?;
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("send.json"))?).unwrap_or_default();
        println!(
            "send      alongside: exit {} after {:.1} s, journal {}",
            status.code().unwrap_or(-1),
            started.elapsed().as_secs_f64(),
            summary["data"]["journal"]
        );
    }
    let pid = libc::pid_t::try_from(child.id())?;
    // SAFETY: signalling our own child, not yet reaped.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let (status, usage) = support::wait_with_rusage(child.id())?;
    let cpu = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;

    let conn = rusqlite::Connection::open(&db)?;
    let count = |sql: &str| -> rusqlite::Result<i64> { conn.query_row(sql, [], |r| r.get(0)) };
    let recorded = count("SELECT count(*) FROM message_statuses")?;
    let matched = count("SELECT count(*) FROM message_statuses WHERE campaign_id IS NOT NULL")?;
    let still_in_doubt = count("SELECT count(*) FROM journal WHERE state = 'in_doubt'")?;
    let read = count(
        "SELECT count(*) FROM journal j WHERE state = 'accepted' AND EXISTS
           (SELECT 1 FROM message_statuses s WHERE s.message_id = j.message_id AND s.status = 'read')",
    )?;
    // What the webhook store folded onto the rows must say the same.
    let folded_read = count(
        "SELECT count(*) FROM journal WHERE state = 'accepted' AND status_rank = 3
           AND read_ts IS NOT NULL AND delivered_ts IS NOT NULL",
    )?;

    let mut latencies = run.latencies;
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i].as_secs_f64() * 1000.0
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "answered  {} of {total} with 200 in {:.2} s: {:.0}/s achieved ({} not 200, {} errors)",
        run.ok,
        run.elapsed.as_secs_f64(),
        run.ok as f64 / run.elapsed.as_secs_f64(),
        run.not_ok,
        run.errors
    );
    println!(
        "latency   from when each request was due: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, \
         p99.9 {:.1} ms, max {:.1} ms",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999),
        pct(1.0)
    );
    println!(
        "generator latest start {:.1} ms after due; at most {} requests in flight",
        run.max_lag.as_secs_f64() * 1000.0,
        run.max_in_flight
    );
    println!(
        "server    exit {status}; CPU {:.2} s user + {:.2} s sys ({:.0}% of one core over the run); peak RSS {} MB",
        cpu(usage.ru_utime),
        cpu(usage.ru_stime),
        (cpu(usage.ru_utime) + cpu(usage.ru_stime)) / run.elapsed.as_secs_f64() * 100.0,
        usage.ru_maxrss / 1024
    );
    println!(
        "database  {recorded} statuses recorded ({matched} matched to journal rows), {read} messages read, \
         {} of {in_doubt} in-doubt rows resolved, {folded_read} read as folded onto the journal",
        in_doubt - still_in_doubt
    );
    println!("machine   {} cores, load average {}", cores(), load.trim());
    let lost = total as i64 - recorded;
    if lost != 0 || run.ok != total || still_in_doubt != 0 || status != 0 || folded_read != read {
        return Err(format!(
            "FAILED: {lost} statuses missing, {} requests not answered 200, {still_in_doubt} rows still in doubt, \
             {folded_read} of {read} reads folded, exit {status}",
            total - run.ok
        )
        .into());
    }
    println!("ok        every status recorded exactly once");
    Ok(())
}

/// A campaign of `messages` accepted rows; every hundredth is held in doubt with no
/// message id (its `sent` status finds it by callback data). Returns how many.
fn seed(db: &Path, messages: u64) -> Result<i64, Error> {
    let mut db = wacampaign::db::Db::open(db)?;
    let tx = db.conn.transaction()?;
    tx.execute(
        "INSERT INTO campaigns (id, fingerprint, template, language, category, provider, created_at)
         VALUES (?1, 'bench', 'bench', 'es_MX', 'utility', 'cloud_api', '2026-01-01T00:00:00Z')",
        [CAMPAIGN],
    )?;
    let mut in_doubt = 0;
    {
        let mut insert = tx.prepare(
            "INSERT INTO journal (campaign_id, person_id, phone, line, seq, plan_run, params, state,
                 attempts, message_id, intent_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?4, 1, '[]', ?5, 1, ?6, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
        )?;
        for i in 0..messages {
            let digits = phone(i);
            let doubtful = i % 100 == 0;
            in_doubt += i64::from(doubtful);
            // The journal's person key, as the callback data of the in-doubt rows'
            // statuses reads back.
            let person = wacampaign::phone::E164::from_digits(&digits.to_string())
                .map_or(digits as i64, wacampaign::row_key::person_of);
            insert.execute(rusqlite::params![
                CAMPAIGN,
                person,
                format!("+{digits}"),
                i as i64 + 2,
                if doubtful { "in_doubt" } else { "accepted" },
                (!doubtful).then(|| wamid(i)),
            ])?;
        }
    }
    tx.commit()?;
    Ok(in_doubt)
}

/// A simulator campaign of `contacts` opted-in contacts, sent at 200 a second.
fn prepare_send(dir: &Path, db: &Path, contacts: u64) -> Result<(), Error> {
    std::fs::write(
        dir.join("send.toml"),
        r#"[campaign]
id = "bench-send-alongside"
category = "utility"
contacts = "send-contacts.csv"
phone_column = "phone"
default_region = "MX"

[template]
name = "appointment_reminder"
language = "es_MX"
body = "Hola {{1}}, tu cita es mañana."

[template.variables]
"1" = { column = "name" }

[provider]
kind = "simulator"
latency_ms = 40
undeliverable_rate = 0.0
opt_out_rate = 0.0

[sending]
rate_per_second = 200
concurrency = 32
"#,
    )?;
    let mut csv = String::from("name,phone\n");
    for i in 0..contacts {
        csv.push_str(&format!("Ana,+52 55 2{:07}\n", i));
    }
    std::fs::write(dir.join("send-contacts.csv"), csv)?;
    let campaign = wacampaign::campaign::Campaign::load(&dir.join("send.toml"))?;
    let db = wacampaign::db::Db::open(db)?;
    support::opt_in_everyone(&db, &campaign, "bench")?;
    Ok(())
}

fn phone(i: u64) -> u64 {
    525_500_000_000 + i
}

fn wamid(i: u64) -> String {
    format!("wamid.HBgNNTI1NTAwMDAwMDAwFQIAERgSQkVOQ0g{i:012}")
}

/// Every request body and its signature, in send order: `sent` for every message,
/// then `delivered`, then `read`.
fn payloads(messages: u64, total: u64) -> Vec<(Vec<u8>, String)> {
    let base = 1_763_700_000i64;
    ["sent", "delivered", "read"]
        .iter()
        .enumerate()
        .flat_map(|(round, status)| (0..messages).map(move |i| (round, *status, i)))
        .take(total as usize)
        .map(|(round, status, i)| {
            let mut entry = serde_json::json!({
                "id": wamid(i),
                "status": status,
                "timestamp": (base + i as i64 + round as i64 * 5).to_string(),
                "recipient_id": phone(i).to_string(),
                "conversation": {"id": format!("conv{i}"), "origin": {"type": "utility"}},
                "pricing": {"billable": true, "pricing_model": "PMP", "category": "utility"}
            });
            if i % 100 == 0 {
                entry["biz_opaque_callback_data"] =
                    serde_json::json!(format!("wacampaign:{CAMPAIGN}:{}", phone(i)));
            }
            let body = serde_json::to_vec(&serde_json::json!({
                "object": "whatsapp_business_account",
                "entry": [{"id": "419561257915477", "changes": [{"field": "messages", "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                    "statuses": [entry]
                }}]}]
            }))
            .expect("JSON");
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
            mac.update(&body);
            let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
            (body, signature)
        })
        .collect()
}

struct Run {
    ok: u64,
    not_ok: u64,
    errors: u64,
    latencies: Vec<Duration>,
    elapsed: Duration,
    max_lag: Duration,
    max_in_flight: usize,
}

async fn load(
    base: &str,
    payloads: Vec<(Vec<u8>, String)>,
    rate: u64,
    in_flight: usize,
) -> Result<Run, Error> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(in_flight)
        .build()?;
    let url = format!("{base}/webhook/meta");
    let health = format!("{base}/healthz");
    let waiting = Instant::now();
    while client.get(&health).send().await.is_err() {
        if waiting.elapsed() > Duration::from_secs(30) {
            return Err("the server did not answer within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let slots = Arc::new(Semaphore::new(in_flight));
    let mut tasks = tokio::task::JoinSet::new();
    let mut run = Run {
        ok: 0,
        not_ok: 0,
        errors: 0,
        latencies: Vec::with_capacity(payloads.len()),
        elapsed: Duration::ZERO,
        max_lag: Duration::ZERO,
        max_in_flight: 0,
    };
    let tally = |run: &mut Run, (outcome, latency): (Option<u16>, Duration)| {
        match outcome {
            Some(200) => run.ok += 1,
            Some(_) => run.not_ok += 1,
            None => run.errors += 1,
        }
        run.latencies.push(latency);
    };
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let interval = Duration::from_secs(1).as_nanos() as u64 / rate;
    for (i, (body, signature)) in payloads.into_iter().enumerate() {
        let due = start + Duration::from_nanos(interval * i as u64);
        tokio::time::sleep_until(due).await;
        let permit = Arc::clone(&slots).acquire_owned().await?;
        run.max_lag = run.max_lag.max(tokio::time::Instant::now() - due);
        run.max_in_flight = run.max_in_flight.max(in_flight - slots.available_permits());
        let client = client.clone();
        let url = url.clone();
        tasks.spawn(async move {
            let sent = client
                .post(&url)
                .header("content-type", "application/json")
                .header("x-hub-signature-256", signature)
                .body(body)
                .send()
                .await;
            let outcome = sent.ok().map(|response| response.status().as_u16());
            drop(permit);
            (outcome, tokio::time::Instant::now() - due)
        });
        while let Some(done) = tasks.try_join_next() {
            tally(&mut run, done?);
        }
    }
    while let Some(done) = tasks.join_next().await {
        tally(&mut run, done?);
    }
    run.elapsed = tokio::time::Instant::now() - start;
    Ok(run)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}
