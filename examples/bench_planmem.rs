//! Data for timing `wacampaign check` on very large lists with a consent ledger.
//!
//! ```sh
//! cargo run --release --example bench_planmem -- N DIR
//! /usr/bin/time -v target/release/wacampaign --db DIR/ledger.db check DIR/campaign.toml
//! ```
//!
//! Writes into DIR (which must not hold a `ledger.db`) a marketing campaign, a
//! contacts file of N distinct Mexico City mobiles and a ledger holding a marketing
//! opt-in for every one of them, so `check` finds all N eligible.
//!
//! `consent import` records about 22,000 rows a second (45 s per million), too slow
//! for ten million, so the ledger's rows are written here directly: bound-parameter
//! inserts in one transaction, in key order, with the columns `check` reads filled as
//! an import fills them. The hash chain is not computed (`consent verify` would
//! refuse this ledger); `check` does not read it.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, bail};
use wacampaign::db::Db;
use wacampaign::phone::E164;

/// The i-th person's number: Mexico City mobiles, all valid and distinct.
fn number(i: u64) -> u64 {
    525_510_000_000 + i
}

const CAMPAIGN: &str = r#"[campaign]
id = "bench-planmem"
category = "marketing"
contacts = "contacts.csv"
phone_column = "phone"

[template]
name = "bench_offer"
language = "es_MX"
body = "Hola {{1}}, tienes 20% de descuento esta semana."

[template.variables]
"1" = { column = "name" }

[provider]
kind = "cloud_api"
phone_number_id = "106540352242922"
"#;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(n), Some(dir)) = (args.next(), args.next()) else {
        bail!("usage: bench_planmem N DIR");
    };
    let n: u64 = n
        .replace(['_', ','], "")
        .parse()
        .with_context(|| format!("N: `{n}` is not a number"))?;
    if n == 0 || n > 89_999_999 {
        bail!("N must be between 1 and 89,999,999");
    }
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir)?;
    let db_path = dir.join("ledger.db");
    if db_path.exists() {
        bail!("{} exists; give an empty directory", db_path.display());
    }
    let started = Instant::now();
    std::fs::write(dir.join("campaign.toml"), CAMPAIGN)?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join("contacts.csv"))?);
    writeln!(out, "name,phone")?;
    for i in 0..n {
        writeln!(out, "Cliente {i},+{}", number(i))?;
    }
    out.flush()?;
    drop(out);
    println!("contacts.csv: {n} rows in {:.1?}", started.elapsed());

    let started = Instant::now();
    let mut db = Db::open(&db_path)?;
    // A throwaway file: no need to survive a crash while it is written.
    db.conn
        .execute_batch("PRAGMA synchronous = OFF; PRAGMA journal_mode = MEMORY;")?;
    let tx = db.conn.transaction()?;
    {
        let mut insert = tx.prepare(
            "INSERT INTO consent_events (id, subject, subject_key, purpose, action, \
             occurred_at, recorded_at, method, recorded_via, source, evidence, actor, \
             prev_hash, hash, format, commitment) \
             VALUES (?1, ?2, ?3, 'marketing', 'opt_in', ?4, '2026-01-31T00:00:00Z', \
             'web_form', 'import', 'optins.csv', ?5, 'bench', '', ?6, 2, ?6)",
        )?;
        // Keys in ascending order, so the index is appended to, not split.
        let mut people: Vec<(i64, u64)> = (0..n)
            .map(|i| {
                let phone = E164::from_digits(&number(i).to_string())
                    .with_context(|| format!("number {i}"))?;
                Ok((phone.consent_key() as i64, i))
            })
            .collect::<anyhow::Result<_>>()?;
        people.sort_unstable();
        for (row, (key, i)) in people.into_iter().enumerate() {
            let id = row as i64 + 1;
            insert.execute(rusqlite::params![
                id,
                format!("+{}", number(i)),
                key,
                format!("2026-01-{:02}T09:30:00Z", 1 + i % 28),
                format!("form-{i}"),
                format!("{id:064x}"),
            ])?;
        }
    }
    tx.commit()?;
    drop(db);
    println!(
        "ledger.db: {n} opt-ins in {:.1?}, {:.0} MiB",
        started.elapsed(),
        std::fs::metadata(&db_path)?.len() as f64 / 1048576.0
    );
    Ok(())
}
