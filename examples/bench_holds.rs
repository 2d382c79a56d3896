//! What an audience filter, quiet hours and frequency caps add to planning.
//!
//! ```sh
//! cargo build --release
//! cargo run --release --example bench_check -- 1000000 1 --dir bench-data   # the data
//! cargo run --release --example bench_holds -- bench-data [RUNS] [--sends N]
//! ```
//!
//! Plans `check`'s 1,000,000-row benchmark file (`bench_check --dir` writes it) in
//! this process, as `check` does but with every contact let through the consent
//! gate (`NoGate`, as `bench_consent` measures the plan alone), so every eligible
//! contact meets quiet hours and the caps:
//!
//! 1. the campaign as it is;
//! 2. with `[audience] where` over two columns and `sending.quiet_hours`, at an
//!    instant when it is night in Mexico (every eligible contact is held: the
//!    slower path, which looks for the opening);
//!    once with a filter that leaves a quarter out and once with one every row
//!    passes (the cost alone);
//! 3. with `sending.frequency_cap = { all = "2 per 7d" }` over a database of N
//!    earlier accepted messages (default 10,000,000), `--in-window` of them
//!    (default a tenth) inside the cap's 7 days, spread over the file's own people. The database is built once,
//!    as `DIR/caps.db`, and kept.
//!
//! Each figure is the median of RUNS (default 3) of this process's CPU time
//! (`getrusage`), with the peak memory (VmHWM) at the end.

#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rusqlite::params;
use wacampaign::audience::AudienceSpec;
use wacampaign::campaign::Campaign;
use wacampaign::db::Db;
use wacampaign::frequency_cap::Cap;
use wacampaign::plan::{NoGate, PlanItem, PlanStats, Planner};
use wacampaign::quiet_hours::QuietHours;

/// 22:00 in Mexico City on Friday 27 Nov 2026.
const NIGHT: &str = "2026-11-28T04:00:00Z";
/// Two columns; leaves out about a quarter of the rows.
const AUDIENCE: &str = r#"last_name != "Díaz" && !date.startsWith("lunes")"#;
/// Two columns; every row passes, so every row pays for the whole expression and
/// every eligible contact for quiet hours: the cost alone, with no rows saved.
const AUDIENCE_ALL: &str = r#"last_name != "Nadie" && date != "nunca""#;

fn main() -> anyhow::Result<()> {
    let mut positional = Vec::new();
    let mut sends: u64 = 10_000_000;
    let mut in_window: Option<u64> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--sends" => {
                sends = args
                    .next()
                    .context("--sends needs a number")?
                    .replace(['_', ','], "")
                    .parse()?;
            }
            "--in-window" => {
                in_window = Some(
                    args.next()
                        .context("--in-window needs a number")?
                        .replace(['_', ','], "")
                        .parse()?,
                );
            }
            _ => positional.push(arg),
        }
    }
    let Some(dir) = positional.first().map(PathBuf::from) else {
        bail!(
            "usage: bench_holds DIR [RUNS] [--sends N] [--in-window N] (DIR from bench_check --dir)"
        );
    };
    let runs: usize = positional.get(1).map_or(Ok(3), |r| r.parse())?;
    // The one clock reads this once, before the first plan.
    // SAFETY: no other thread exists yet.
    unsafe { std::env::set_var("WACAMPAIGN_NOW", NIGHT) };
    wacampaign::clock::init()?;

    let base = Campaign::load(&dir.join("campaign.toml"))?;
    let mut held = base.clone();
    held.timezone = chrono_tz::America::Mexico_City;
    held.audience = Some(
        AudienceSpec::new(AUDIENCE, "bench".into(), Default::default())
            .map_err(anyhow::Error::msg)?,
    );
    held.quiet_hours =
        Some(QuietHours::parse(Some("21:00-09:00"), None).map_err(anyhow::Error::msg)?);
    let mut held_all = held.clone();
    held_all.audience = Some(
        AudienceSpec::new(AUDIENCE_ALL, "bench".into(), Default::default())
            .map_err(anyhow::Error::msg)?,
    );
    let mut capped = base.clone();
    capped.frequency_caps = vec![Cap::parse("all", "2 per 7d").map_err(anyhow::Error::msg)?];

    let (plain, stats) = measure(runs, || plan(&base, None))?;
    println!(
        "plain          {:>6.2} s CPU  {}",
        secs(plain),
        summary(&stats)
    );
    let (with_holds, stats) = measure(runs, || plan(&held, None))?;
    println!(
        "audience+quiet {:>6.2} s CPU  {}  (+{:.0}%)",
        secs(with_holds),
        summary(&stats),
        (secs(with_holds) / secs(plain) - 1.0) * 100.0
    );

    let (with_all, stats) = measure(runs, || plan(&held_all, None))?;
    println!(
        "all pass+quiet {:>6.2} s CPU  {}  (+{:.0}%)",
        secs(with_all),
        summary(&stats),
        (secs(with_all) / secs(plain) - 1.0) * 100.0
    );

    let db_path = dir.join("caps.db");
    if !db_path.exists() {
        let started = Instant::now();
        build_sends(&base, &db_path, sends, in_window.unwrap_or(sends / 10))?;
        println!(
            "built {} with {sends} earlier sends in {:.0?}",
            db_path.display(),
            started.elapsed()
        );
    }
    let db = Db::open(&db_path)?;
    let in_window: i64 = db.conn.query_row(
        "SELECT count(*) FROM journal WHERE state = 'accepted' AND outcome_at > ?1",
        params!["2026-11-21T04:00:00Z"],
        |r| r.get(0),
    )?;
    let (with_caps, stats) = measure(runs, || plan(&capped, Some(&db.conn)))?;
    println!(
        "frequency cap  {:>6.2} s CPU  {}  (+{:.2} s; {in_window} sends inside the 7 days)",
        secs(with_caps),
        summary(&stats),
        secs(with_caps) - secs(plain)
    );
    println!(
        "peak memory (VmHWM) {:.0} MB",
        // Linux reports ru_maxrss in kilobytes.
        support::rusage_self().ru_maxrss as f64 * 1024.0 / 1e6
    );
    Ok(())
}

fn plan(campaign: &Campaign, conn: Option<&rusqlite::Connection>) -> anyhow::Result<PlanStats> {
    let mut planner = Planner::new(campaign, &NoGate)?;
    if let Some(conn) = conn {
        planner = planner.with_caps(conn)?;
    }
    Ok(planner.run(|item| {
        std::hint::black_box(&item);
    })?)
}

/// The median CPU time of `runs` calls, and the last call's result.
fn measure<T>(
    runs: usize,
    mut f: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<(Duration, T)> {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..runs.max(1) {
        let before = cpu();
        last = Some(f()?);
        times.push(cpu() - before);
    }
    times.sort();
    Ok((times[times.len() / 2], last.context("no run")?))
}

fn cpu() -> Duration {
    let usage = support::rusage_self();
    support::timeval(usage.ru_utime) + support::timeval(usage.ru_stime)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn summary(stats: &PlanStats) -> String {
    format!(
        "eligible {} excluded {} outside {} quiet {} capped {}",
        stats.eligible,
        stats.excluded,
        stats.outside_audience.unwrap_or(0),
        stats.quiet_hours,
        stats.frequency_capped
    )
}

/// `sends` accepted messages to the file's people over the past year, 100
/// campaigns, `in_window` of them inside the last 7 days. Rows go in key order with
/// the secondary indexes dropped, then the indexes are built again as the
/// migrations define them: far faster than random inserts into six B-trees.
fn build_sends(campaign: &Campaign, path: &Path, sends: u64, in_window: u64) -> anyhow::Result<()> {
    let mut people = Vec::new();
    Planner::new(campaign, &NoGate)?.run(|item| {
        if let PlanItem::Eligible(r) = item
            && let Some(phone) = r.phone
        {
            people.push(wacampaign::row_key::person_of(phone));
        }
    })?;
    let mut rng = fastrand::Rng::with_seed(11);
    let mut rows: Vec<(u8, i64, u64, i64)> = (0..sends)
        .map(|i| {
            let person = people[rng.usize(..people.len())];
            // `in_window` inside the cap's 7 days, the rest over the year before.
            let ago = if i < in_window {
                rng.i64(0..7 * 86_400)
            } else {
                rng.i64(7 * 86_400..365 * 86_400)
            };
            ((i % 100) as u8, person, i, ago)
        })
        .collect();
    // The unique key's order: campaign ids sort as text (`old-10` before `old-2`).
    let mut names: Vec<u8> = (0..100).collect();
    names.sort_by_key(|c| format!("old-{c}"));
    let mut rank = [0u8; 100];
    for (r, c) in names.iter().enumerate() {
        rank[usize::from(*c)] = r as u8;
    }
    rows.sort_unstable_by_key(|&(c, p, i, _)| (rank[usize::from(c)], p, i));

    let mut db = Db::open(path)?;
    db.conn
        .execute_batch("PRAGMA synchronous = OFF; PRAGMA cache_size = -400000;")?;
    let indexes: Vec<(String, String)> = {
        let mut stmt = db.conn.prepare(
            "SELECT name, sql FROM sqlite_master
             WHERE type = 'index' AND tbl_name = 'journal' AND sql IS NOT NULL",
        )?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?
    };
    let tx = db.conn.transaction()?;
    for (name, _) in &indexes {
        tx.execute_batch(&format!("DROP INDEX \"{name}\""))?;
    }
    for c in 0..100 {
        tx.execute(
            "INSERT INTO campaigns (id, fingerprint, template, language, category, provider, created_at, plan_run)
             VALUES (?1, 'f', 't', 'es_MX', ?2, 'simulator', '2025-11-01T00:00:00Z', 1)",
            params![format!("old-{c}"), if c % 2 == 0 { "marketing" } else { "utility" }],
        )?;
    }
    let now = wacampaign::clock::parse(NIGHT).map_err(anyhow::Error::msg)?;
    {
        let mut insert = tx.prepare(
            "INSERT INTO journal (campaign_id, person_id, occurrence, phone, line, seq, plan_run,
                 params, state, attempts, outcome_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5, 1, '[]', 'accepted', 1, ?6, ?6)",
        )?;
        for (c, person, i, ago) in rows {
            let at = wacampaign::clock::format(now - chrono::Duration::seconds(ago));
            insert.execute(params![
                format!("old-{c}"),
                person,
                i.to_string(),
                format!("+{person}"),
                i as i64,
                at
            ])?;
        }
    }
    for (_, sql) in &indexes {
        tx.execute_batch(sql)?;
    }
    tx.commit()?;
    Ok(())
}
