//! How many messages a SIGKILL leaves in doubt, and how many of those never reached
//! the server.
//!
//! ```sh
//! cargo build --release            # the example runs target/release/wacampaign
//! cargo run --release --example bench_kill -- [KILLS=50] [CONTACTS=10000] \
//!     [--seed N] [--latency-ms 10] [--max-delay-ms MS] [--dir NEW_DIR]
//! ```
//!
//! Writes a Cloud API campaign of CONTACTS opted-in contacts (the campaign's
//! defaults except `rate_per_second = 1000`, and no messaging limit) pointed at the loopback server
//! (`support/server.rs`, a child answering in `--latency-ms`, logging each request's
//! `to` as it arrives). Then, KILLS times: starts the release binary's
//! `wacampaign send CAMPAIGN --yes`, waits for this run's first request to reach the
//! server, waits a random time in [0, MAX_DELAY) (seeded; by default
//! 1000 × CONTACTS / (1000 × KILLS) ms, so the kills spread over about half the
//! campaign), sends SIGKILL, and reads the journal through `wacampaign status --csv`:
//! the rows left in flight or in doubt that were not in doubt before are this kill's.
//! Each next run resumes and holds those rows (`--in-doubt hold`, the default). A
//! last run finishes the campaign.
//!
//! At the end it compares with the server's log: how many in-doubt rows the server
//! received (the rest never left, or left incomplete), how many rows left in
//! flight the next run sent again because the departure log proved they never
//! left, how many it recorded as accepted because the log kept their answers, and
//! whether any recipient was received twice (it must not be: the program fails if
//! one was).

#[path = "support/mod.rs"]
mod support;

use std::collections::{HashMap, HashSet};
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use support::server::Server;

const RATE: u64 = 1000;
const CAMPAIGN_ID: &str = "bench-kill";
const TOKEN_ENV: &str = "BENCH_KILL_TOKEN";

struct Args {
    kills: u64,
    contacts: u64,
    seed: u64,
    latency: Duration,
    max_delay: Option<Duration>,
    dir: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve") {
        return support::server::serve_args(&args[1..]);
    }
    run(&parse(&args)?)
}

fn parse(args: &[String]) -> anyhow::Result<Args> {
    let number = |a: &str| -> anyhow::Result<u64> {
        a.replace(['_', ','], "")
            .parse()
            .with_context(|| format!("`{a}` is not a number"))
    };
    let mut parsed = Args {
        kills: 50,
        contacts: 10_000,
        seed: 9,
        latency: Duration::from_millis(10),
        max_delay: None,
        dir: None,
    };
    let mut positional = 0;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--seed" => parsed.seed = number(value()?)?,
            "--latency-ms" => parsed.latency = Duration::from_millis(number(value()?)?),
            "--max-delay-ms" => {
                parsed.max_delay = Some(Duration::from_millis(number(value()?)?));
            }
            "--dir" => parsed.dir = Some(PathBuf::from(value()?)),
            _ if positional == 0 => {
                parsed.kills = number(arg)?;
                positional += 1;
            }
            _ if positional == 1 => {
                parsed.contacts = number(arg)?;
                positional += 1;
            }
            _ => bail!(
                "usage: bench_kill [KILLS] [CONTACTS] [--seed N] [--latency-ms MS] \
                 [--max-delay-ms MS] [--dir DIR]"
            ),
        }
    }
    Ok(parsed)
}

/// One kill: how long after the run's first request it came, the rows it left in
/// flight, and of those the rows the next run held in doubt (the others its
/// departure log proved never left: they were sent again, once).
struct Kill {
    delay: Duration,
    in_flight: HashSet<String>,
    in_doubt: Vec<String>,
    /// Of the rows left in flight, those the server had received before the kill.
    received_before: HashSet<String>,
}

fn run(args: &Args) -> anyhow::Result<()> {
    let binary = support::release_binary()?;
    let age = std::fs::metadata(&binary)?
        .modified()?
        .elapsed()
        .unwrap_or_default();
    let temp = tempfile::tempdir()?;
    let dir = args.dir.as_deref().unwrap_or(temp.path());
    std::fs::create_dir_all(dir)?;
    if dir.join("bench.db").exists() {
        bail!(
            "{} already holds a bench.db: use a new directory",
            dir.display()
        );
    }
    let log = dir.join("server-received.log");
    let _ = std::fs::remove_file(&log);
    let max_delay = args.max_delay.unwrap_or(Duration::from_millis(
        1000 * args.contacts / (RATE * args.kills.max(1)),
    ));
    println!(
        "machine: {} cores, load average {}; binary {} (built {:.0} s ago)",
        std::thread::available_parallelism().map_or(0, usize::from),
        load_average(),
        binary.display(),
        age.as_secs_f64()
    );
    println!(
        "bench_kill: {} kills of a {}-contact campaign at {RATE}/s, server latency {} ms, \
         kill {}..{} ms after each run's first request (seed {})",
        args.kills,
        args.contacts,
        args.latency.as_millis(),
        0,
        max_delay.as_millis(),
        args.seed
    );

    let server = Server::start(args.latency, Some(&log))?;
    let campaign = write_campaign(dir, args.contacts, &server)?;
    let db = dir.join("bench.db");
    let import = Command::new(&binary)
        .arg("--db")
        .arg(&db)
        .args(["consent", "import"])
        .arg(dir.join("contacts.csv"))
        .args(["--purpose", "utility", "--method", "web_form"])
        .args([
            "--phone-column",
            "phone",
            "--default-region",
            "MX",
            "--quiet",
        ])
        .stdout(Stdio::null())
        .status()?;
    if !import.success() {
        bail!("consent import failed: {import}");
    }

    let mut rng = fastrand::Rng::with_seed(args.seed);
    let mut kills = Vec::new();
    let started = Instant::now();
    for k in 0..args.kills {
        let before = file_len(&log);
        let mut child = send(&binary, &db, &campaign, dir)?;
        // Wait for this run's first request to reach the server: a kill before it
        // (while planning) tells nothing about requests in flight.
        let finished_alone = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if file_len(&log) > before {
                break None;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        if let Some(status) = finished_alone {
            println!(
                "  run {} ended on its own ({status}) before sending: campaign done",
                k + 1
            );
            break;
        }
        let delay = max_delay.mul_f64(rng.f64());
        std::thread::sleep(delay);
        kill(&mut child)?;
        let in_flight = journal_rows(&binary, &db, &campaign, dir, IN_FLIGHT)?;
        // Read after the journal: a request written just before the kill has
        // reached the server by now, and the next run has not started.
        let received_before = std::fs::read_to_string(&log)?
            .lines()
            .map(digits)
            .filter(|r| in_flight.contains(r))
            .collect();
        kills.push(Kill {
            delay,
            in_flight,
            in_doubt: Vec::new(),
            received_before,
        });
    }
    let kills_took = started.elapsed();

    // A last run resumes and finishes; held rows are not sent again.
    let last = send(&binary, &db, &campaign, dir)?.wait()?;
    let final_counts = journal_counts(&binary, &db, &campaign)?;
    let served = server.stop()?;

    // Held rows stay in doubt to the end. A row a kill left in flight that the next
    // run returned may be claimed again and caught by a later kill: it is that
    // later kill's.
    let mut in_doubt = journal_rows(&binary, &db, &campaign, dir, IN_DOUBT)?;
    let mut returned = 0;
    let mut kept_accepted = 0;
    for kill in kills.iter_mut().rev() {
        for row in &kill.in_flight {
            if in_doubt.remove(row) {
                kill.in_doubt.push(row.clone());
            } else if kill.received_before.contains(row) {
                // Not in doubt though it had gone: its acceptance was kept.
                kept_accepted += 1;
            } else {
                returned += 1;
            }
        }
    }
    let unattributed = in_doubt.len();

    let mut received: HashMap<String, u64> = HashMap::new();
    for line in std::fs::read_to_string(&log)?.lines() {
        *received.entry(digits(line)).or_default() += 1;
    }
    let duplicates: Vec<(&String, &u64)> = received.iter().filter(|(_, n)| **n > 1).collect();

    println!(
        "\n| kill | delay after first request | new in doubt | of which the server received |"
    );
    println!("| --- | --- | --- | --- |");
    let mut total = 0;
    let mut reached = 0;
    let mut max = 0;
    for (i, kill) in kills.iter().enumerate() {
        let got = kill
            .in_doubt
            .iter()
            .filter(|r| received.contains_key(*r))
            .count();
        println!(
            "| {} | {:.1} ms | {} | {got} |",
            i + 1,
            kill.delay.as_secs_f64() * 1e3,
            kill.in_doubt.len()
        );
        total += kill.in_doubt.len();
        reached += got;
        max = max.max(kill.in_doubt.len());
    }
    let n = kills.len().max(1);
    println!(
        "\nkills: {} in {:.1} s; in doubt per kill: mean {:.1}, max {max} (total {total})",
        kills.len(),
        kills_took.as_secs_f64(),
        total as f64 / n as f64
    );
    println!(
        "in-doubt rows the server received: {reached} of {total} ({:.1}%); never reached it: {}",
        if total == 0 {
            0.0
        } else {
            reached as f64 * 100.0 / total as f64
        },
        total - reached
    );
    println!(
        "left in flight but proved never sent by the departure log, sent once by a later run: \
         {returned} ({:.2} per kill)",
        returned as f64 / n as f64
    );
    println!(
        "left in flight, accepted before the kill, recorded as accepted from the log's \
         answers: {kept_accepted} ({:.2} per kill)",
        kept_accepted as f64 / n as f64
    );
    println!(
        "server: {} requests, {} recipients, duplicates: {}",
        served.count,
        received.len(),
        duplicates.len()
    );
    println!("last run: {last}; journal at the end: {final_counts}");
    if !duplicates.is_empty() {
        bail!(
            "FAILED: {} recipients were received twice, e.g. {:?}",
            duplicates.len(),
            &duplicates[..duplicates.len().min(5)]
        );
    }
    if unattributed > 0 {
        bail!("FAILED: {unattributed} rows in doubt at the end that no kill left in flight");
    }
    Ok(())
}

// ---- the campaign and the runs ----

fn write_campaign(dir: &Path, contacts: u64, server: &Server) -> anyhow::Result<PathBuf> {
    let mut csv = BufWriter::new(std::fs::File::create(dir.join("contacts.csv"))?);
    writeln!(csv, "name,phone,date")?;
    for i in 0..contacts {
        let national = 5_520_000_000 + i;
        writeln!(
            csv,
            "Cliente {i},+52 {} {:04} {:04},martes 25 de noviembre",
            national / 100_000_000,
            national / 10_000 % 10_000,
            national % 10_000
        )?;
    }
    csv.flush()?;
    let campaign = dir.join("campaign.toml");
    std::fs::write(
        &campaign,
        format!(
            r#"{}
[provider]
kind = "cloud_api"
phone_number_id = "106540352242922"
base_url = "{}"
token_env = "{TOKEN_ENV}"

[sending]
rate_per_second = {RATE}
# The benchmark's number is not a real one: no 24-hour limit to read or keep to.
messaging_limit = "unlimited"
"#,
            support::campaign(CAMPAIGN_ID),
            server.base_url()
        ),
    )?;
    Ok(campaign)
}

fn send(binary: &Path, db: &Path, campaign: &Path, dir: &Path) -> anyhow::Result<Child> {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("send-stderr.log"))?;
    Ok(Command::new(binary)
        .arg("--db")
        .arg(db)
        .arg("send")
        .arg(campaign)
        .args(["--yes", "--quiet"])
        .env(TOKEN_ENV, "EAAGbenchmarktoken")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()?)
}

fn kill(child: &mut Child) -> anyhow::Result<()> {
    let pid = libc::pid_t::try_from(child.id())?;
    // SAFETY: kill has no memory-safety preconditions; the child is not reaped yet,
    // so its pid is still ours.
    if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    child.wait()?;
    Ok(())
}

// ---- reading the journal (the one place that knows its state names) ----

/// Rows a kill left in flight (the next run holds in doubt those whose requests
/// may have left, and sends the others again).
const IN_FLIGHT: &str = "in_flight";
/// Rows held in doubt.
const IN_DOUBT: &str = "in_doubt";

/// The recipients (digits of the E.164 number) whose rows are in `wanted` state,
/// from `wacampaign status --csv`.
fn journal_rows(
    binary: &Path,
    db: &Path,
    campaign: &Path,
    dir: &Path,
    wanted: &str,
) -> anyhow::Result<HashSet<String>> {
    let csv_path = dir.join("status.csv");
    let status = Command::new(binary)
        .arg("--db")
        .arg(db)
        .arg("status")
        .arg(campaign)
        .arg("--csv")
        .arg(&csv_path)
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("wacampaign status failed: {status}");
    }
    let mut reader = csv::Reader::from_path(&csv_path)?;
    let headers = reader.headers()?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("status --csv has no `{name}` column"))
    };
    let (phone, state) = (column("phone")?, column("state")?);
    let mut doubtful = HashSet::new();
    for record in reader.records() {
        let record = record?;
        if record.get(state) == Some(wanted) {
            doubtful.insert(digits(record.get(phone).unwrap_or("")));
        }
    }
    Ok(doubtful)
}

/// The journal's counts by state, from `wacampaign status --json`, as one line.
fn journal_counts(binary: &Path, db: &Path, campaign: &Path) -> anyhow::Result<String> {
    let output = Command::new(binary)
        .arg("--db")
        .arg(db)
        .arg("--json")
        .arg("status")
        .arg(campaign)
        .output()?;
    let status: serde_json::Value = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("status --json: {}", String::from_utf8_lossy(&output.stdout)))?;
    Ok(status["data"]["counts"].to_string())
}

// ---- helpers ----

/// The digits of a phone number as written anywhere (`+52…`, `'+52…` in a CSV).
fn digits(number: &str) -> String {
    number.chars().filter(char::is_ascii_digit).collect()
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
