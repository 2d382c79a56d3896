//! How many bytes of database a sent message costs, before and after `prune`.
//!
//! ```sh
//! cargo run --release --example bench_size -- [MESSAGES] [--dir DIR]
//! ```
//!
//! Builds a database holding one campaign of MESSAGES (default 1,000,000) accepted
//! messages: journal rows as `send` writes them (the number, two rendered values,
//! the wamid, the answer's times), then three status webhooks per message (`sent`,
//! `delivered`, `read`, each its own request shaped and recorded as Meta's are:
//! parsed by `webhook::meta::parse` and written by `webhook::store::record_delivery`,
//! raw body included), and a reply from one recipient in twenty. It then measures
//! the file (after a WAL checkpoint) and the bytes in use (every page's size less its
//! unused space, from SQLite's dbstat table),
//! runs `retention::prune --older-than 90d` with every row past the period, and
//! measures again. The
//! file does not shrink until a `VACUUM`; the bytes in use are what a VACUUM (or
//! `wacampaign backup`, which compacts) would leave.

use std::path::PathBuf;
use std::time::Instant;

use rusqlite::{Connection, params};
use wacampaign::webhook::optout::OptOutRules;
use wacampaign::webhook::store::{Followups, record_delivery};

const CAMPAIGN: &str = "bench-size";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut messages: u64 = 1_000_000;
    let mut dir: Option<PathBuf> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--dir" => dir = args.next().map(PathBuf::from),
            n => messages = n.replace('_', "").parse()?,
        }
    }
    let temp = tempfile::tempdir()?;
    let dir = dir.unwrap_or_else(|| temp.path().to_path_buf());
    let path = dir.join("size.db");
    let _ = std::fs::remove_file(&path);
    let db = wacampaign::db::Db::open(&path)?;
    let conn = &db.conn;
    let started = Instant::now();
    seed_journal(conn, messages)?;
    eprintln!(
        "journal: {messages} rows in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    record_statuses(conn, messages)?;
    eprintln!(
        "webhooks: {} statuses and {} replies in {:.1} s",
        messages * 3,
        messages / 20,
        started.elapsed().as_secs_f64()
    );
    let before = measure(conn, &path)?;
    let started = Instant::now();
    let report = wacampaign::retention::prune(
        conn,
        chrono::Duration::days(90),
        chrono::DateTime::parse_from_rfc3339("2027-01-01T00:00:00Z")?.with_timezone(&chrono::Utc),
    )?;
    eprintln!(
        "prune: {} journal rows, {} statuses, {} replies, {} raw bodies in {:.1} s",
        report.journal_rows,
        report.statuses,
        report.replies,
        report.raw_bodies,
        started.elapsed().as_secs_f64()
    );
    let after = measure(conn, &path)?;
    let per = |b: u64| b as f64 / messages as f64;
    println!("messages sent                {messages}");
    println!("statuses recorded            {}", messages * 3);
    println!("                             file bytes    in use       in use per message");
    println!(
        "before prune                 {:<13} {:<12} {:.0}",
        before.0,
        before.1,
        per(before.1)
    );
    println!(
        "after prune                  {:<13} {:<12} {:.0}",
        after.0,
        after.1,
        per(after.1)
    );
    for (label, tables) in [("before", &before.2), ("after", &after.2)] {
        for (table, bytes) in tables.iter().filter(|(_, b)| *b >= 1024) {
            println!(
                "  {label}: {table:<36} {bytes:>12} bytes  {:.1} per message",
                per(*bytes)
            );
        }
    }
    Ok(())
}

/// Journal rows as a send leaves them once every message was accepted.
fn seed_journal(conn: &Connection, messages: u64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO campaigns (id, fingerprint, template, language, category, provider, created_at, plan_run)
         VALUES (?1, 'bench', 'appointment_reminder', 'es_MX', 'utility', 'cloud_api',
                 '2026-01-01T00:00:00Z', 1)",
        [CAMPAIGN],
    )?;
    let mut i = 0;
    while i < messages {
        let tx =
            rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO journal (campaign_id, person_id, occurrence, phone, line, seq, plan_run,
                     params, state, attempts, message_id, wa_id, message_status, intent_at,
                     outcome_at, updated_at)
                 VALUES (?1, ?2, '', ?3, ?4, ?4, 1, ?5, 'accepted', 1, ?6, ?7, 'accepted',
                     '2026-01-01T00:00:00Z', '2026-01-01T00:00:01Z', '2026-01-01T00:00:01Z')",
            )?;
            for j in i..(i + 10_000).min(messages) {
                let digits = phone(j);
                insert.execute(params![
                    CAMPAIGN,
                    digits as i64,
                    format!("+{digits}"),
                    j as i64 + 2,
                    format!("[\"Cliente {j}\",\"martes 14 a las 10:30\"]"),
                    wamid(j),
                    digits.to_string(),
                ])?;
            }
        }
        tx.commit()?;
        i += 10_000;
    }
    Ok(())
}

/// Three status webhooks per message and a reply from one in twenty, through the
/// webhook server's own parse and record.
fn record_statuses(conn: &Connection, messages: u64) -> rusqlite::Result<()> {
    let rules = OptOutRules::default();
    let base = 1_767_225_600i64; // 2026-01-01
    let mut batch = Vec::with_capacity(1000);
    let flush = |batch: &mut Vec<Vec<u8>>| -> rusqlite::Result<()> {
        let tx =
            rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
        let mut followups = Followups::default();
        for body in batch.drain(..) {
            let delivery = wacampaign::webhook::meta::parse(body, &rules, "2026-01-01T00:00:10Z");
            record_delivery(&tx, &delivery, "2026-01-01T00:00:10Z", &mut followups)?;
        }
        tx.commit()
    };
    for (round, status) in ["sent", "delivered", "read"].iter().enumerate() {
        for i in 0..messages {
            batch.push(status_body(
                i,
                status,
                base + i as i64 % 3600 + round as i64 * 5,
            ));
            if batch.len() == 1000 {
                flush(&mut batch)?;
            }
        }
    }
    for i in (0..messages).step_by(20) {
        batch.push(reply_body(i, base + 7200));
        if batch.len() == 1000 {
            flush(&mut batch)?;
        }
    }
    flush(&mut batch)
}

fn status_body(i: u64, status: &str, timestamp: i64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "419561257915477", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "statuses": [{
                "id": wamid(i),
                "status": status,
                "timestamp": timestamp.to_string(),
                "recipient_id": phone(i).to_string(),
                "biz_opaque_callback_data": format!("wacampaign:{CAMPAIGN}:{}", phone(i)),
                "conversation": {"id": format!("0f9c2b7e8a{i:012}"), "origin": {"type": "utility"}},
                "pricing": {"billable": true, "pricing_model": "PMP", "category": "utility"}
            }]
        }}]}]
    }))
    .expect("JSON")
}

fn reply_body(i: u64, timestamp: i64) -> Vec<u8> {
    let from = phone(i).to_string();
    serde_json::to_vec(&serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "419561257915477", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Cliente"}, "wa_id": from}],
            "messages": [{"from": from, "id": format!("wamid.reply{i:012}"),
                          "timestamp": timestamp.to_string(), "type": "text",
                          "text": {"body": "Gracias, ahí estaré"}, "context": {"id": wamid(i)}}]
        }}]}]
    }))
    .expect("JSON")
}

type Measured = (u64, u64, Vec<(String, u64)>);

/// (file bytes after a checkpoint, bytes in use, bytes per table and index if the
/// build has the dbstat table).
fn measure(conn: &Connection, path: &std::path::Path) -> anyhow::Result<Measured> {
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    let file = std::fs::metadata(path)?.len();
    let page_size: u64 = conn.query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))? as u64;
    let pages: u64 = conn.query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0))? as u64;
    let free: u64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get::<_, i64>(0))? as u64;
    // Bytes in use: every page's size less its unused space, as a VACUUM would
    // pack it (free pages and half-empty pages after a prune are not counted).
    let used: Option<u64> = conn
        .query_row("SELECT sum(pgsize - unused) FROM dbstat", [], |r| {
            r.get::<_, i64>(0)
        })
        .ok()
        .map(|n| n as u64);
    let tables = conn
        .prepare("SELECT name, sum(pgsize - unused) FROM dbstat GROUP BY name ORDER BY 2 DESC")
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .unwrap_or_default();
    Ok((file, used.unwrap_or((pages - free) * page_size), tables))
}

fn phone(i: u64) -> u64 {
    525_500_000_000 + i
}

fn wamid(i: u64) -> String {
    format!("wamid.HBgNNTI1NTAwMDAwMDAwFQIAERgSQkVOQ0g{i:012}")
}
