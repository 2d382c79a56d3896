//! How long `wacampaign report` takes on a large campaign, and how big the page is.
//!
//! ```sh
//! cargo build --release && cargo run --release --example bench_report -- [RECIPIENTS] [--statuses N] [--runs N] [--dir DIR]
//! ```
//!
//! Builds a database holding one campaign of RECIPIENTS (default 1,000,000) journal
//! rows as `send` leaves them, each with its kept contact columns (name, phone, city,
//! offer): 99% accepted, 0.7% refused (131026), 0.3% opted out (131050), to numbers
//! in five markets. It then records N (default 3,000,000) delivery statuses in
//! `message_statuses`, with the columns the webhook server writes (campaign and
//! person matched, Meta's `pricing`): `sent` for every accepted message, then
//! `delivered` (or `failed` 131026 for 3%), `read` for three in four delivered, and
//! the rest as repeated `delivered` statuses (Meta sends a status again when an
//! answer is slow). Each status is folded onto its journal row as the webhook store
//! folds it (`journal::fold::apply` on the row found by its message id). Raw
//! webhook bodies are not written: the report never reads them.
//! One recipient in twenty replies.
//!
//! Then runs the release binary's `report campaign.toml --html report.html --by city`
//! RUNS times (default 3) and `--json` once, and prints wall time, CPU, peak memory
//! and the page's size.

#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use wacampaign::journal::fold::{self, StatusFold};
use wacampaign::journal::settle;

const CAMPAIGN: &str = "bench-report";
const CITIES: [&str; 12] = [
    "Ciudad de México",
    "Guadalajara",
    "Monterrey",
    "Puebla",
    "Tijuana",
    "León",
    "Mérida",
    "Querétaro",
    "Bogotá",
    "São Paulo",
    "Mumbai",
    "Miami",
];
/// Numbers by market: their first digits, their length, their share (of 100).
const PREFIXES: [(u64, u32, u64); 5] = [
    (5255, 12, 70),   // Mexico
    (57_300, 12, 10), // Colombia
    (55_119, 13, 10), // Brazil
    (9198, 12, 5),    // India
    (1305, 11, 5),    // North America
];

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut recipients, mut statuses, mut runs) = (1_000_000u64, 3_000_000u64, 3usize);
    let mut dir: Option<PathBuf> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--dir" => dir = args.next().map(PathBuf::from),
            "--statuses" => statuses = args.next().unwrap_or_default().replace('_', "").parse()?,
            "--runs" => runs = args.next().unwrap_or_default().parse()?,
            n => recipients = n.replace('_', "").parse()?,
        }
    }
    let binary = support::release_binary()?;
    let temp = tempfile::tempdir()?;
    let dir = dir.unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("bench.db");
    let _ = std::fs::remove_file(&path);
    let card = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("campaigns/meta-rate-card-EXAMPLE-rates-not-current-prices.csv");
    std::fs::copy(&card, dir.join("card.csv"))?;
    std::fs::write(dir.join("contacts.csv"), "name,phone,city,offer\n")?;
    std::fs::write(
        dir.join("campaign.toml"),
        format!(
            r#"[campaign]
id = "{CAMPAIGN}"
category = "marketing"
contacts = "contacts.csv"
phone_column = "phone"

[template]
name = "black_friday_preview"
language = "es_MX"
body = "Hola {{{{name}}}}, tu acceso anticipado empieza hoy: {{{{offer}}}}."

[template.variables]
name = {{ column = "name" }}
offer = {{ column = "offer" }}

[provider]
kind = "simulator"

[pricing]
rate_card = "card.csv"
"#
        ),
    )?;
    {
        let db = wacampaign::db::Db::open(&path)?;
        let started = Instant::now();
        seed_journal(&db.conn, recipients)?;
        eprintln!(
            "journal: {recipients} rows in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let started = Instant::now();
        let written = seed_statuses(&db.conn, recipients, statuses)?;
        eprintln!(
            "statuses: {written} rows, replies: {} in {:.1} s",
            recipients / 20,
            started.elapsed().as_secs_f64()
        );
        db.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE); ANALYZE;")?;
    }
    eprintln!(
        "database: {} MB",
        std::fs::metadata(&path)?.len() / 1_000_000
    );

    let mut walls = Vec::new();
    for run in 0..runs {
        let m = run_report(&binary, &dir, &["--html", "report.html", "--by", "city"])?;
        let size = std::fs::metadata(dir.join("report.html"))?.len();
        println!(
            "report --html, run {}: {:.2} s wall, {:.2} s CPU, {} MB peak, page {} KB",
            run + 1,
            m.0.as_secs_f64(),
            m.1.as_secs_f64(),
            m.2 / 1024,
            size / 1024
        );
        walls.push(m.0);
    }
    walls.sort();
    if let Some(median) = walls.get(walls.len() / 2) {
        println!("median {:.2} s", median.as_secs_f64());
    }
    let m = run_report(&binary, &dir, &["--by", "city"])?;
    println!(
        "report (text): {:.2} s wall, {:.2} s CPU, {} MB peak",
        m.0.as_secs_f64(),
        m.1.as_secs_f64(),
        m.2 / 1024
    );
    Ok(())
}

/// Runs `wacampaign report campaign.toml ARGS`: (wall, CPU, peak RSS in KB).
fn run_report(
    binary: &Path,
    dir: &Path,
    args: &[&str],
) -> anyhow::Result<(Duration, Duration, u64)> {
    let started = Instant::now();
    let child = Command::new(binary)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .args([
            "--color",
            "never",
            "-q",
            "--db",
            "bench.db",
            "report",
            "campaign.toml",
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()?;
    let (status, usage) = support::wait_with_rusage(child.id())?;
    let wall = started.elapsed();
    anyhow::ensure!(status == 0, "wacampaign report exited with {status}");
    let cpu = support::timeval(usage.ru_utime) + support::timeval(usage.ru_stime);
    Ok((wall, cpu, u64::try_from(usage.ru_maxrss).unwrap_or(0)))
}

fn phone(i: u64) -> u64 {
    let mut pick = i % 100;
    for (prefix, length, share) in PREFIXES {
        if pick < share {
            let rest = length - (prefix.checked_ilog10().unwrap_or(0) + 1);
            return prefix * 10u64.pow(rest) + i % 10u64.pow(rest);
        }
        pick -= share;
    }
    unreachable!("the shares add up to 100")
}

/// The journal's person id for a number: its consent key.
fn person(digits: u64) -> i64 {
    wacampaign::phone::E164::from_digits(&digits.to_string()).map_or(digits, |p| p.consent_key())
        as i64
}

fn wamid(i: u64) -> String {
    format!("wamid.HBgNNTI1NTAwMDAwMDAwFQIAERgSQkVOQ0g{i:012}")
}

/// Accepted, refused with 131026, or opted out (131050).
fn state_of(i: u64) -> (&'static str, Option<i64>) {
    match i % 1000 {
        0..=6 => ("failed", Some(131_026)),
        7..=9 => ("opted_out", Some(131_050)),
        _ => ("accepted", None),
    }
}

fn seed_journal(conn: &Connection, recipients: u64) -> anyhow::Result<()> {
    let stats = serde_json::json!({
        "contacts_read": recipients + recipients / 50,
        "eligible": recipients,
        "excluded": recipients / 50,
        "excluded_by_reason": {"no_opt_in": recipients / 60, "invalid_number": recipients / 50 - recipients / 60},
    });
    conn.execute(
        "INSERT INTO campaigns (id, fingerprint, template, language, category, provider, created_at, plan_run, plan_stats)
         VALUES (?1, 'bench', 'black_friday_preview', 'es_MX', 'marketing', 'simulator',
                 '2026-01-01T00:00:00Z', 1, ?2)",
        params![CAMPAIGN, stats.to_string()],
    )?;
    let mut i = 0;
    while i < recipients {
        let tx =
            rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO journal (campaign_id, person_id, occurrence, phone, line, seq, plan_run,
                     params, state, attempts, message_id, wa_id, error_code, error_detail,
                     intent_at, outcome_at, updated_at, contact)
                 VALUES (?1, ?2, '', ?3, ?4, ?4, 1, ?5, ?6, 1, ?7, ?8, ?9, ?10,
                     ?11, ?11, ?11, ?12)",
            )?;
            for j in i..(i + 10_000).min(recipients) {
                let digits = phone(j);
                let (state, code) = state_of(j);
                // Sends spread over about six hours, as a paced campaign's are.
                let at = format!(
                    "2026-01-01T{:02}:{:02}:{:02}Z",
                    j * 6 / recipients.max(1),
                    (j / 60) % 60,
                    j % 60
                );
                let name = format!("Cliente {j}");
                let offer = ["2x1 en jeans", "30% en calzado", "envío gratis"][(j % 3) as usize];
                let contact = serde_json::json!({
                    "name": name, "phone": format!("+{digits}"),
                    "city": CITIES[(j % 12) as usize], "offer": offer,
                });
                insert.execute(params![
                    CAMPAIGN,
                    person(digits),
                    format!("+{digits}"),
                    j as i64 + 2,
                    serde_json::json!([name, offer]).to_string(),
                    state,
                    (state == "accepted").then(|| wamid(j)),
                    (state == "accepted").then(|| digits.to_string()),
                    code,
                    code.map(|c| format!("error {c}")),
                    at,
                    contact.to_string(),
                ])?;
            }
        }
        tx.commit()?;
        i += 10_000;
    }
    Ok(())
}

/// Rows of `message_statuses` as the webhook server writes them, until `total`.
fn seed_statuses(conn: &Connection, recipients: u64, total: u64) -> anyhow::Result<u64> {
    let accepted: Vec<u64> = (0..recipients)
        .filter(|i| state_of(*i).0 == "accepted")
        .collect();
    let base = 1_767_225_600i64; // 2026-01-01T00:00:00Z
    let mut written = 0u64;
    conn.execute_batch("BEGIN IMMEDIATE")?;
    {
        let mut insert = conn.prepare_cached(
            "INSERT OR IGNORE INTO message_statuses (message_id, status, rank, timestamp, occurred_at,
                 provider, recipient, error_code, error_detail, campaign_id, person_id, occurrence,
                 received_at, billable, pricing_category, pricing_type)
             VALUES (?1, ?2, ?3, ?4, ?5, 'meta', ?6, ?7, ?8, ?9, ?10, '', ?5, ?11, ?12, ?13)",
        )?;
        let sent_at = |i: u64| base + (i * 6 * 3600 / recipients.max(1)) as i64;
        // Pass 0: sent; 1: delivered or failed; 2: read; 3 and later: delivered again.
        'passes: for pass in 0.. {
            for &i in &accepted {
                if written >= total {
                    break 'passes;
                }
                let failed = i % 33 == 0;
                let (status, rank, after) = match pass {
                    0 => ("sent", 1, 1),
                    1 if failed => ("failed", 4, 20),
                    1 => ("delivered", 2, 5 + (i % 120) as i64),
                    2 if failed || i % 4 == 0 => continue,
                    2 => ("read", 3, 60 + (i % 7200) as i64 * (1 + (i % 5) as i64)),
                    _ if failed => continue,
                    _ => ("delivered", 2, 300 * pass as i64),
                };
                let t = sent_at(i) + after;
                let at = chrono::DateTime::from_timestamp(t, 0)
                    .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                    .unwrap_or_default();
                let digits = phone(i);
                let billable = status != "failed";
                // Transactions of 100,000, as a webhook server's would be: the WAL is
                // checkpointed between them rather than growing to the whole load.
                if written.is_multiple_of(100_000) && written > 0 {
                    conn.execute_batch("COMMIT; BEGIN IMMEDIATE")?;
                }
                let id = wamid(i);
                let inserted = insert.execute(params![
                    id,
                    status,
                    rank,
                    t,
                    at,
                    digits.to_string(),
                    failed.then_some(131_026),
                    failed.then_some("Message undeliverable"),
                    CAMPAIGN,
                    person(digits),
                    billable,
                    billable.then_some("marketing"),
                    billable.then_some("regular"),
                ])? as u64;
                // Folded onto the journal row as the webhook store does it: the row
                // found by its message id, then one UPDATE by rowid.
                if inserted > 0
                    && let Some((_, _, row)) = settle::find_row(conn, &id, None)?
                {
                    fold::apply(
                        conn,
                        row,
                        &id,
                        &StatusFold {
                            rank,
                            at: fold::status_seconds(t, &at),
                            error_code: failed.then_some(131_026),
                            error_detail: failed.then_some("Message undeliverable"),
                            billable: Some(billable),
                            pricing_category: billable.then_some("marketing"),
                            pricing_type: billable.then_some("regular"),
                        },
                    )?;
                }
                written += inserted;
            }
            if pass > 50 {
                break;
            }
        }
        let mut reply = conn.prepare_cached(
            "INSERT INTO inbound_messages (message_id, provider, phone, consent_key, kind, context_id,
                 occurred_at, received_at)
             VALUES (?1, 'meta', ?2, ?3, 'text', ?4, ?5, ?5)",
        )?;
        for &i in accepted.iter().step_by(20) {
            let digits = phone(i);
            reply.execute(params![
                format!("wamid.reply{i:012}"),
                format!("+{digits}"),
                person(digits),
                wamid(i),
                "2026-01-01T08:00:00Z"
            ])?;
        }
    }
    conn.execute_batch("COMMIT")?;
    Ok(written)
}
