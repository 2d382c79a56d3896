//! How the consent ledger scales with the number of people in it.
//!
//! Builds a ledger of N marketing opt-ins (default 1,000,000) plus an opt-out for
//! every hundredth person, through the same import path `wacampaign consent import`
//! uses, then times what `check` does with it: loading the ledger into a
//! `ConsentIndex`, N gate checks, and a whole plan over a contacts file of the same
//! N people. Peak memory is the process's high-water mark (VmHWM).
//!
//! ```sh
//! cargo run --release --example bench_consent -- [N] [DIR]
//! ```
//!
//! With DIR the ledger, campaign and contacts are kept there, so the real binary
//! can be timed on them: `wacampaign --db DIR/ledger.db check DIR/campaign.toml`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, bail};
use wacampaign::campaign::{Campaign, Encoding};
use wacampaign::consent::{Action, ConsentIndex, ImportOptions, Purpose, import_file};
use wacampaign::db::Db;
use wacampaign::phone::E164;
use wacampaign::plan::{ConsentGate as _, NoGate, Planner};

/// The i-th person's number: Mexico City mobiles, all valid and distinct.
fn number(i: u64) -> u64 {
    525_510_000_000 + i
}

/// A fixed shuffle of 0..n (j -> j * step + offset mod n, with step coprime to n):
/// people sign up in no particular order of their numbers, so the ledger's rows
/// are not in the order `check` reads them, as in a real ledger.
fn shuffled(n: u64) -> impl Iterator<Item = u64> {
    let gcd = |mut a: u64, mut b: u64| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    let step = (7_919..).find(|s| gcd(*s, n) == 1).expect("a step");
    (0..n).map(move |j| (j * step + 12_345) % n)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: u64 = match args.next() {
        Some(text) => text
            .replace(['_', ','], "")
            .parse()
            .with_context(|| format!("N: `{text}` is not a number"))?,
        None => 1_000_000,
    };
    if n == 0 || n > 89_999_999 {
        bail!("N must be between 1 and 89,999,999");
    }
    // Without DIR, a temporary directory removed at the end.
    let (kept, temp) = match args.next() {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            (Some(PathBuf::from(dir)), None)
        }
        None => (None, Some(tempfile::tempdir()?)),
    };
    let dir: &Path = kept
        .as_deref()
        .or_else(|| temp.as_ref().map(tempfile::TempDir::path))
        .expect("one of them");
    let db_path = dir.join("ledger.db");
    if db_path.exists() {
        bail!("{} exists; give an empty directory", db_path.display());
    }
    println!("consent ledger benchmark: {n} people, in {}", dir.display());

    // ---- the ledger ----
    let t = Timer::start();
    write_csv(
        &dir.join("optins.csv"),
        "phone,signed_up_at,form_id",
        shuffled(n).map(|i| format!("+{},2026-01-{:02} 09:30:00,form-{i}", number(i), 1 + i % 28)),
    )?;
    write_csv(
        &dir.join("optouts.csv"),
        "phone,stopped_at",
        (0..n)
            .step_by(100)
            .map(|i| format!("+{},2026-02-01 08:00:00", number(i))),
    )?;
    write_campaign(dir)?;
    write_csv(
        &dir.join("contacts.csv"),
        "name,phone",
        (0..n).map(|i| format!("Cliente {i},+{}", number(i))),
    )?;
    let generate = t.stop();

    let db = Db::open(&db_path)?;
    let import = |file: &str, purpose, action, occurred: &str, evidence: Option<&str>| {
        import_file(
            &db.conn,
            &ImportOptions {
                file: dir.join(file),
                purpose,
                action,
                method: "web_form".to_owned(),
                phone_column: "phone".to_owned(),
                default_region: None,
                occurred_column: Some(occurred.to_owned()),
                evidence_column: evidence.map(str::to_owned),
                notice: Some("Acepto recibir ofertas por WhatsApp.".to_owned()),
                actor: "bench".to_owned(),
                delimiter: None,
                encoding: Encoding::Utf8,
                suppressions: None,
            },
        )
    };
    let t = Timer::start();
    let optins = import(
        "optins.csv",
        Purpose::Marketing,
        Action::OptIn,
        "signed_up_at",
        Some("form_id"),
    )?;
    let import_optins = t.stop();
    let t = Timer::start();
    let optouts = import(
        "optouts.csv",
        Purpose::All,
        Action::OptOut,
        "stopped_at",
        None,
    )?;
    let import_optouts = t.stop();
    if optins.recorded != n || optins.invalid != 0 || optouts.invalid != 0 {
        bail!("the import did not record every row: {optins:?} {optouts:?}");
    }
    let events = optins.recorded + optouts.recorded;
    drop(db);
    let db_bytes = std::fs::metadata(&db_path)?.len();
    let after_import = memory();

    // ---- what `check` does with the ledger ----
    let db = Db::open(&db_path)?;
    let t = Timer::start();
    let index = ConsentIndex::load(&db.conn, Purpose::Marketing)?;
    let load = t.stop();
    let after_load = memory();

    let phones: Vec<E164> = (0..n)
        .map(|i| E164::from_digits(&number(i).to_string()).expect("digits"))
        .collect();
    let t = Timer::start();
    let allowed = phones.iter().filter(|p| index.check(**p).is_ok()).count() as u64;
    let checks = t.stop();
    let expected_allowed = n - n.div_ceil(100);
    if allowed != expected_allowed {
        bail!("{allowed} allowed, expected {expected_allowed}");
    }
    drop(phones);
    drop(index);

    // The same plan without the ledger, to tell its cost from reading the contacts.
    let campaign = Campaign::load(&dir.join("campaign.toml"))?;
    let t = Timer::start();
    let bare = Planner::new(&campaign, &NoGate)?.run(|_| {})?;
    let plan_bare = t.stop();
    if bare.eligible != n {
        bail!("plan without the ledger: {bare:?}");
    }
    let t = Timer::start();
    let campaign = Campaign::load(&dir.join("campaign.toml"))?;
    let plan_index = ConsentIndex::load(&db.conn, campaign.purpose())?;
    let stats = Planner::new(&campaign, &plan_index)?.run(|_| {})?;
    let plan = t.stop();
    if stats.eligible != expected_allowed {
        bail!("plan: {stats:?}");
    }
    let peak = memory();

    let opt_outs = optouts.recorded;
    println!();
    println!(
        "ledger: {events} events ({n} opt-ins, {opt_outs} opt-outs), {:.0} MiB on disk",
        mib(db_bytes)
    );
    println!("{:<48} {:>9} {:>9}", "", "wall", "cpu");
    let row = |what: String, m: &Measure, note: String| {
        println!("{what:<48} {:>7.2} s {:>7.2} s  {note}", m.wall, m.cpu);
    };
    row("generate the CSV files".into(), &generate, String::new());
    row(
        format!("import {n} opt-ins (one transaction)"),
        &import_optins,
        format!("{:.0} rows/s", n as f64 / import_optins.wall),
    );
    row(
        format!("import {opt_outs} opt-outs"),
        &import_optouts,
        String::new(),
    );
    row(
        "ConsentIndex::load (marketing)".into(),
        &load,
        format!("{} people", plan_index.len()),
    );
    row(
        format!("{n} gate checks"),
        &checks,
        format!(
            "{:.0} ns each, {allowed} allowed",
            checks.wall * 1e9 / n as f64
        ),
    );
    row(
        format!("plan of {n} contacts, no ledger"),
        &plan_bare,
        format!("{:.0} contacts/s", n as f64 / plan_bare.wall),
    );
    row(
        format!("plan of {n} contacts, with the ledger"),
        &plan,
        format!(
            "{} eligible, {} excluded (what `check` does)",
            stats.eligible, stats.excluded
        ),
    );
    println!("memory, VmRSS / VmHWM:");
    println!("  after the imports          {after_import}");
    println!("  after ConsentIndex::load   {after_load}");
    println!("  at the end                 {peak}   <- VmHWM is the peak");
    std::io::stdout().flush()?;
    Ok(())
}

/// Wall-clock and CPU seconds of one phase: on a busy machine the CPU time is the
/// steadier figure.
struct Measure {
    wall: f64,
    cpu: f64,
}

struct Timer {
    wall: Instant,
    cpu: f64,
}

impl Timer {
    fn start() -> Timer {
        Timer {
            wall: Instant::now(),
            cpu: cpu_seconds(),
        }
    }

    fn stop(self) -> Measure {
        Measure {
            wall: self.wall.elapsed().as_secs_f64(),
            cpu: cpu_seconds() - self.cpu,
        }
    }
}

/// User plus system CPU time of this process, from /proc/self/stat (in clock ticks,
/// 100 a second on Linux).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name may hold spaces; the fields after it are plain.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

fn write_csv(path: &Path, header: &str, rows: impl Iterator<Item = String>) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "{header}")?;
    for row in rows {
        writeln!(out, "{row}")?;
    }
    out.flush()
}

fn write_campaign(dir: &Path) -> std::io::Result<()> {
    std::fs::write(
        dir.join("campaign.toml"),
        r#"[campaign]
id = "bench-consent"
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
"#,
    )
}

/// `VmRSS / VmHWM` of this process, in MiB.
fn memory() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or_else(
                || "?".to_owned(),
                |kb| format!("{:.0} MiB", kb as f64 / 1024.0),
            )
    };
    format!("{} / {}", field("VmRSS:"), field("VmHWM:"))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
