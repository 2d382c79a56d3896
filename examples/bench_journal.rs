//! How many pages the send path's journal writer writes per message, and to which
//! table or index each one belongs.
//!
//! ```sh
//! cargo run --example bench_journal -- [ROWS] [--sequential] [--unpaced]
//! ```
//!
//! At 1,000 messages a second the send pipeline's journal writer commits once per
//! batch interval (`send::rate::BATCH_INTERVAL`, 20 ms): the claims of the next batch (planned → in flight) together with the
//! outcomes of earlier claims (in flight → accepted). Each commit appends every
//! page it changed to the WAL, a 4 KiB frame each, and the commit's cost, the
//! fsync's and the checkpoint's grow with that count. This program drives
//! [`Journal::claim`] as the pipeline does, a batch of claims (20 at 1,000/s) and the
//! previous batch's outcomes per transaction, one transaction per batch interval,
//! over a plan of ROWS
//! contacts (default 20,000) with an opt-in each, and reads the WAL afterwards
//! (automatic checkpoints are off, so every frame stays in it). It prints the frames
//! per message over the whole run and over its middle 80% (the steady state), and
//! the frames per commit of each table and index, from SQLite's `dbstat`.
//!
//! The count does not depend on the build: a debug build gives the figures a
//! release build gives. Only which second each outcome falls in depends on the
//! machine, and moves the count by a few frames in a thousand.
//!
//! - By default the contacts are Mexican mobile numbers in no particular order and
//!   the message ids random, as real lists and Meta's `wamid`s are: indexes keyed
//!   by person or by message id get one page per row.
//! - `--sequential`: numbers and message ids in send order, as `bench_send`'s
//!   contacts and its mock's ids are; such keys land on the same few pages.
//! - `--unpaced`: commits back to back instead of once per batch interval. Quicker, but many
//!   more messages then share one second of `outcome_at`, which changes how the
//!   indexes ordered by time fill.
//! - `--caps-index`: builds the caps' person index first, as a database where a
//!   campaign with a frequency cap has sent keeps it (`journal::hold::ensure_cap_indexes`).
//! - `--pragma=NAME=VALUE` (repeatable): sets a pragma on the writer's connection
//!   before the plan is written, to try a setting (`cache_size`, `mmap_size`).
//! - `--drop-index=NAME` (repeatable): drops one of the journal's indexes first, to
//!   see what keeping it costs the writer.
//! - `--cpu`: the writer's CPU time per message instead of the pages. Automatic
//!   checkpoints stay on, as in `wacampaign send`, so their cost is in the figure
//!   (and the WAL's frames can no longer be counted). One thread does all the
//!   work, so the figure is that thread's, read from `getrusage`; it moves with
//!   the machine's load, so compare builds or options run by turns.

#[path = "support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use wacampaign::campaign::Campaign;
use wacampaign::db::Db;
use wacampaign::gate::Gate;
use wacampaign::journal::{Disposition, Journal, Outcome};
use wacampaign::plan::Planner;

/// Rows claimed per commit at 1,000 messages a second, and outcomes recorded with
/// them: the pipeline's own batch.
fn claim_batch() -> usize {
    wacampaign::send::rate::batch_size(1000.0)
}
/// How often the writer commits.
const TICK: Duration = wacampaign::send::rate::BATCH_INTERVAL;

/// A fixed-seed generator (xorshift64), so every run writes the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn main() -> anyhow::Result<()> {
    let mut rows: u64 = 20_000;
    let mut sequential = false;
    let mut paced = true;
    let mut caps_index = false;
    let mut cpu = false;
    let mut pragmas = Vec::new();
    let mut dropped = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--sequential" => sequential = true,
            "--unpaced" => paced = false,
            "--caps-index" => caps_index = true,
            "--cpu" => cpu = true,
            drop if drop.starts_with("--drop-index=") => {
                dropped.push(drop["--drop-index=".len()..].to_owned())
            }
            pragma if pragma.starts_with("--pragma=") => {
                pragmas.push(pragma["--pragma=".len()..].to_owned())
            }
            n => {
                rows = n
                    .replace(['_', ','], "")
                    .parse()
                    .with_context(|| format!("ROWS: `{n}` is not a number"))?;
            }
        }
    }
    if rows < 10 * claim_batch() as u64 || rows > 10_000_000 {
        bail!("ROWS must be between {} and 10,000,000", 10 * claim_batch());
    }
    let temp = tempfile::tempdir()?;
    let dir = temp.path();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    write_contacts(dir, rows, sequential, &mut rng)?;
    std::fs::write(
        dir.join("campaign.toml"),
        format!(
            "{}\n[provider]\nkind = \"cloud_api\"\nphone_number_id = \"106540352242922\"\n",
            support::campaign("bench-journal")
        ),
    )?;
    let campaign = Campaign::load(&dir.join("campaign.toml"))?;
    let path = dir.join("bench.db");
    let db = Db::open(&path)?;
    support::opt_in_everyone(&db, &campaign, "bench_journal")?;
    if !cpu {
        // Every frame of the run stays in the WAL, to be counted.
        db.conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    }
    for pragma in &pragmas {
        let (name, value) = pragma
            .split_once('=')
            .with_context(|| format!("--pragma={pragma}: write NAME=VALUE"))?;
        match value.parse::<i64>() {
            Ok(number) => db.conn.pragma_update(None, name, number)?,
            Err(_) => db.conn.pragma_update(None, name, value)?,
        }
    }
    if caps_index {
        wacampaign::journal::hold::ensure_cap_indexes(&db.conn)?;
    }
    for index in &dropped {
        // A name, not a value: it cannot be bound.
        if !index.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("--drop-index={index}: not an index name");
        }
        db.conn.execute_batch(&format!("DROP INDEX {index}"))?;
    }
    let gate = Gate::load(Some(&db.conn), &campaign)?;
    let mut planner = Planner::new(&campaign, &gate)?;
    let (mut journal, _) = Journal::begin(db.conn, &campaign, gate.clone(), false, None)?;
    let seq = support::write_plan(&mut planner, &mut journal)?;
    journal
        .conn()
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;

    eprintln!(
        "sending {seq} messages{}",
        if paced {
            ", one commit per batch interval"
        } else {
            ""
        }
    );
    let started = Instant::now();
    let cpu_before = support::thread_cpu();
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut messages = 0u64;
    let mut ids = 0u64;
    for tick in 0u32.. {
        if paced {
            let due = started + TICK * tick;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let claimed = journal.claim(claim_batch(), claim_batch(), &outcomes)?;
        messages += outcomes.len() as u64;
        if claimed.jobs.is_empty() {
            break;
        }
        outcomes = claimed
            .jobs
            .into_iter()
            .map(|job| {
                ids += 1;
                let message_id = if sequential {
                    format!("wamid.HBgMNTIxNTUxMjM0NTY3OBUCABIYFDNBMDQ{ids:012}")
                } else {
                    random_message_id(&mut rng)
                };
                let wa_id = job.to.to_string().trim_start_matches('+').to_owned();
                Outcome {
                    row: job.row,
                    key: job.key,
                    to: job.to,
                    disposition: Disposition::Accepted {
                        message_id: Some(message_id),
                        wa_id: Some(wa_id),
                        status: Some("accepted".into()),
                    },
                    claimed_at: job.claimed_at,
                }
            })
            .collect();
    }
    if messages != seq {
        bail!("{messages} of {seq} messages were recorded");
    }
    if cpu {
        let spent = support::thread_cpu() - cpu_before;
        println!(
            "{messages} messages in {:.1} s: the writer's CPU {:.1} µs per message",
            started.elapsed().as_secs_f64(),
            spent.as_secs_f64() * 1e6 / messages as f64
        );
        return Ok(());
    }
    report(&path, messages)
}

/// ROWS distinct Mexican mobile numbers: in no particular order, or in send order.
fn write_contacts(dir: &Path, rows: u64, sequential: bool, rng: &mut Rng) -> anyhow::Result<()> {
    let mut csv = std::io::BufWriter::new(std::fs::File::create(dir.join("contacts.csv"))?);
    writeln!(csv, "name,phone,date")?;
    let mut seen = HashSet::new();
    while (seen.len() as u64) < rows {
        let national = if sequential {
            5_520_000_000 + seen.len() as u64
        } else {
            5_500_000_000 + rng.next() % 100_000_000
        };
        if seen.insert(national) {
            writeln!(
                csv,
                "Cliente {},+52 {national},martes 25 de noviembre",
                seen.len()
            )?;
        }
    }
    csv.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(())
}

/// A `wamid.` of Meta's length; real ones begin with the recipient's number, so
/// their order has nothing to do with the send order.
fn random_message_id(rng: &mut Rng) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut id = String::from("wamid.HBgM");
    for _ in 0..40 {
        id.push(char::from(ALPHABET[(rng.next() % 62) as usize]));
    }
    id
}

/// The pages each commit wrote, from the WAL's frame headers: (page size, commits).
fn commits_in_wal(wal: &Path) -> anyhow::Result<(usize, Vec<Vec<u32>>)> {
    let bytes = std::fs::read(wal)?;
    let word =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    if bytes.len() < 32 {
        bail!("{} holds no WAL header", wal.display());
    }
    let page = word(8) as usize;
    let mut commits = Vec::new();
    let mut pages = Vec::new();
    let mut at = 32;
    while at + 24 + page <= bytes.len() {
        pages.push(word(at));
        // A commit's last frame carries the database size; the others carry 0.
        if word(at + 4) != 0 {
            commits.push(std::mem::take(&mut pages));
        }
        at += 24 + page;
    }
    Ok((page, commits))
}

fn report(path: &Path, messages: u64) -> anyhow::Result<()> {
    let (page, commits) = commits_in_wal(&path.with_extension("db-wal"))?;
    let frames: usize = commits.iter().map(Vec::len).sum();
    // The first and last tenth (the plan's first pages, the run's tail) left out.
    let tenth = commits.len() / 10;
    let steady = &commits[tenth..commits.len() - tenth];
    let steady_frames: usize = steady.iter().map(Vec::len).sum();
    let per_commit = |n: usize| n as f64 / steady.len() as f64;
    println!(
        "{messages} messages in {} commits: {frames} frames of {page} B, {:.2} per message; \
         steady: {:.1} per commit, {:.2} per message",
        commits.len(),
        frames as f64 / messages as f64,
        per_commit(steady_frames),
        per_commit(steady_frames) / claim_batch() as f64,
    );
    // Which b-tree each page belongs to, as the file is at the end of the run.
    let conn = rusqlite::Connection::open(path)?;
    let owner: HashMap<u32, String> = conn
        .prepare("SELECT pageno, name FROM dbstat")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut by_tree: BTreeMap<&str, usize> = BTreeMap::new();
    for page in steady.iter().flatten() {
        *by_tree
            .entry(owner.get(page).map_or("(free)", String::as_str))
            .or_default() += 1;
    }
    let mut by_tree: Vec<_> = by_tree.into_iter().collect();
    by_tree.sort_by_key(|(name, n)| (std::cmp::Reverse(*n), *name));
    println!("steady frames per commit, by table or index:");
    for (name, n) in by_tree {
        println!("  {name:32} {:6.2}", per_commit(n));
    }
    Ok(())
}
