//! How fast the send pipeline goes, how well it keeps a rate, and how much memory a
//! million-recipient campaign takes, with the journal durable (`synchronous=FULL`).
//!
//! ```sh
//! cargo run --release --example bench_send -- throughput [MESSAGES] [CONCURRENCY]
//! cargo run --release --example bench_send -- paced [SECONDS] [CONCURRENCY]
//! cargo run --release --example bench_send -- memory [RECIPIENTS]
//! cargo run --release --example bench_send -- operating-point [SECONDS] [LATENCY_MS...] [--peer-limit N|engine] [--engine-only]
//! ```
//!
//! Each scenario writes a contacts file and a campaign into a temporary directory,
//! records an opt-in for every contact, then drives the library as `wacampaign send`
//! does: load the campaign, begin a [`Journal`], write the plan into it, and call
//! [`wacampaign::send::run`].
//!
//! - `throughput` (default 200,000 messages, concurrency 256): no rate limit,
//!   against a loopback Cloud API that answers at once. Prints messages per second
//!   and CPU per message (`getrusage`) of the sender and, separately, of the server.
//! - `paced` (default 60 s, concurrency 200): `rate_per_second = 1000` against a
//!   server that answers each request after 100 ms. Prints the achieved rate, from
//!   the server's receive times, and the most requests it saw in any one second.
//! - `memory` (default 1,000,000): plans and sends a campaign through the simulator
//!   with no latency and no rate limit, in a child process, and prints its peak
//!   resident memory (`VmHWM`, and `wait4`'s `ru_maxrss`).
//! - `operating-point` (default 20 s at latencies 0, 100 and 300 ms): the campaign's
//!   defaults except `rate_per_second = 1000` (concurrency is the default), against
//!   a server answering in each latency, for SECONDS; then, in the same run, the
//!   Python peer `examples/peer/aiohttp_sender.py` (asyncio + aiohttp, a WAL +
//!   `synchronous=FULL` journal) at the same rate against a fresh server. Prints
//!   each one's CPU per message, achieved rate and busiest second at the server, and
//!   the CPU ratio peer / engine. The peer's connection limit is sized for the
//!   latency (rate × (latency + 50 ms)) unless `--peer-limit` sets it (`engine`: the
//!   engine's concurrency). `examples/peer/setup.sh` makes its venv on first use.
//!
//! The server (`support/server.rs`) is this program run again as
//! `bench_send serve LATENCY_MS [LOG]`, a child process, so its CPU is measured
//! apart from the sender's.

#[path = "support/mod.rs"]
mod support;

// The allocator `wacampaign` itself uses (src/main.rs), so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::fmt::Write as _;
use std::io::{BufWriter, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use support::server::{Served, Server};
use support::{rusage_self, timeval};
use tokio_util::sync::CancellationToken;
use wacampaign::campaign::Campaign;
use wacampaign::db::Db;
use wacampaign::gate::Gate;
use wacampaign::journal::{Counts, Journal};
use wacampaign::plan::Planner;
use wacampaign::send::progress::{Display, Progress};
use wacampaign::send::{self, Options, RunEnd};

fn main() -> anyhow::Result<()> {
    // As src/main.rs: freed memory is kept ten seconds (`BENCH_PURGE_DELAY_MS` to
    // compare with mimalloc's default of 1,000).
    let purge_delay = std::env::var("BENCH_PURGE_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    // SAFETY: option 15 is mimalloc's purge delay; any value is valid for it.
    unsafe { libmimalloc_sys::mi_option_set(15, purge_delay) };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: u64| -> anyhow::Result<u64> {
        args.get(i).map_or(Ok(default), |a| {
            a.replace(['_', ','], "")
                .parse()
                .with_context(|| format!("`{a}` is not a number"))
        })
    };
    match args.first().map(String::as_str) {
        Some("throughput") => throughput(number(1, 200_000)?, number(2, 256)?),
        Some("paced") => paced(number(1, 60)?, number(2, 200)?),
        Some("memory") => memory(number(1, 1_000_000)?),
        Some("memory-run") => memory_run(Path::new(args.get(1).context("memory-run DIR")?)),
        Some("operating-point") => operating_point(&args[1..]),
        Some("serve") => support::server::serve_args(&args[1..]),
        _ => {
            eprintln!(
                "usage: bench_send throughput [MESSAGES] [CONCURRENCY]\n       \
                 bench_send paced [SECONDS] [CONCURRENCY]\n       \
                 bench_send memory [RECIPIENTS]\n       \
                 bench_send operating-point [SECONDS] [LATENCY_MS...] [--peer-limit N|engine]"
            );
            std::process::exit(2);
        }
    }
}

// ---- the scenarios ----

fn throughput(messages: u64, concurrency: u64) -> anyhow::Result<()> {
    machine();
    let dir = tempfile::tempdir()?;
    let server = Server::start(Duration::ZERO, None)?;
    prepare(dir.path(), messages, &cloud_api(&server, concurrency))?;
    let m = plan_and_send(dir.path(), Some(unpaced(concurrency)?), None)?;
    let served = server.stop()?;
    let n = m.counts.accepted;
    println!(
        "throughput: {n} messages in {:.2} s = {:.0} msg/s (concurrency {concurrency}, no rate limit)",
        m.send_wall.as_secs_f64(),
        n as f64 / m.send_wall.as_secs_f64(),
    );
    println!(
        "  sender CPU {:.2} s user + {:.2} s sys = {:.1} us/msg; server CPU {:.1} us/msg; \
         plan {:.2} s",
        m.send_user.as_secs_f64(),
        m.send_sys.as_secs_f64(),
        (m.send_user + m.send_sys).as_secs_f64() * 1e6 / n as f64,
        served.cpu.as_secs_f64() * 1e6 / served.count.max(1) as f64,
        m.plan_wall.as_secs_f64(),
    );
    println!(
        "  server read {} requests; journal {:?}",
        served.count, m.counts
    );
    check(
        served.count == n && m.counts.accepted == messages,
        "every message sent once",
    )?;
    verdict(
        n as f64 / m.send_wall.as_secs_f64() >= 10_000.0,
        "at least 10,000 msg/s",
    );
    Ok(())
}

/// Says whether a budget was met; a miss is reported, not an error, so the figures
/// still print.
fn verdict(met: bool, target: &str) {
    println!("  target {target}: {}", if met { "met" } else { "MISSED" });
}

fn paced(seconds: u64, concurrency: u64) -> anyhow::Result<()> {
    const RATE: u32 = 1000;
    machine();
    let dir = tempfile::tempdir()?;
    let server = Server::start(Duration::from_millis(100), None)?;
    let messages = seconds * u64::from(RATE);
    prepare(dir.path(), messages, &cloud_api(&server, concurrency))?;
    let options = Options {
        rate: Some(RATE),
        ..unpaced(concurrency)?
    };
    let m = plan_and_send(dir.path(), Some(options), None)?;
    let served = server.stop()?;
    let span = served.span().as_secs_f64();
    let achieved = served.achieved_rate();
    println!(
        "paced: rate {RATE}/s, server latency 100 ms, concurrency {concurrency}: {} messages, \
         first to last request {span:.2} s = {achieved:.1} msg/s ({:+.2}% of the rate); \
         busiest one-second window at the server: {} requests",
        served.count,
        (achieved / f64::from(RATE) - 1.0) * 100.0,
        served.busiest_second
    );
    println!(
        "  sender CPU {:.1} us/msg; send::run took {:.2} s",
        (m.send_user + m.send_sys).as_secs_f64() * 1e6 / served.count.max(1) as f64,
        m.send_wall.as_secs_f64()
    );
    check(
        m.counts.accepted == messages && served.count == messages,
        "every message sent once",
    )?;
    check(
        served.busiest_second <= u64::from(RATE),
        "no one-second window over the rate",
    )?;
    verdict(
        (achieved / f64::from(RATE) - 1.0).abs() <= 0.01,
        "within 1% of the rate",
    );
    Ok(())
}

/// One sender's figures at one latency, from its own CPU count and the server's
/// receive times.
struct Point {
    sender: &'static str,
    latency_ms: u64,
    concurrency: usize,
    messages: u64,
    cpu: Duration,
    served: Served,
}

impl Point {
    fn us_per_message(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.messages.max(1) as f64
    }
}

/// How many connections the peer gets.
#[derive(Clone, Copy)]
enum PeerLimit {
    /// rate × (latency + 50 ms): enough to keep the rate at that latency.
    Latency,
    /// The engine's concurrency, for a like-for-like run at the engine's pace.
    Engine,
    Fixed(usize),
}

fn operating_point(args: &[String]) -> anyhow::Result<()> {
    const RATE: u32 = 1000;
    let mut numbers = Vec::new();
    let mut peer_limit = PeerLimit::Latency;
    let mut engine_only = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--engine-only" {
            engine_only = true;
        } else if arg == "--peer-limit" {
            peer_limit = match args.next().map(String::as_str) {
                Some("engine") => PeerLimit::Engine,
                Some(n) => PeerLimit::Fixed(n.parse().context("--peer-limit N|engine")?),
                None => bail!("--peer-limit N|engine"),
            };
        } else {
            numbers.push(
                arg.parse::<u64>()
                    .with_context(|| format!("`{arg}` is not a number"))?,
            );
        }
    }
    let seconds = numbers.first().copied().unwrap_or(20);
    let latencies = if numbers.len() > 1 {
        numbers[1..].to_vec()
    } else {
        vec![0, 100, 300]
    };
    machine();
    let python = peer_python()?;
    let mut points = Vec::new();
    for &latency_ms in &latencies {
        let latency = Duration::from_millis(latency_ms);
        // The engine, through the library, with the campaign's defaults but the rate.
        let dir = tempfile::tempdir()?;
        let server = Server::start(latency, None)?;
        let messages = seconds * u64::from(RATE);
        let sending = format!(
            "[provider]\nkind = \"cloud_api\"\nphone_number_id = \"{PHONE_NUMBER_ID}\"\n\
             base_url = \"{}\"\ntoken_file = \"token\"\n\n[sending]\nrate_per_second = {RATE}\n",
            server.base_url()
        );
        prepare(dir.path(), messages, &sending)?;
        let m = plan_and_send(dir.path(), None, Some(Duration::from_secs(seconds)))?;
        let served = server.stop()?;
        check(
            served.count == m.counts.accepted,
            "the server saw each accepted message once",
        )?;
        let engine = Point {
            sender: "wacampaign",
            latency_ms,
            concurrency: m.concurrency,
            messages: m.counts.accepted,
            cpu: m.send_user + m.send_sys,
            served,
        };
        print_point(&engine);
        if engine_only {
            continue;
        }

        // The peer, against a fresh server at the same latency and rate.
        let limit = match peer_limit {
            PeerLimit::Latency => {
                usize::try_from(u64::from(RATE) * (latency_ms + 50) / 1000)?.max(1)
            }
            PeerLimit::Engine => m.concurrency,
            PeerLimit::Fixed(n) => n,
        };
        write_peer_recipients(dir.path(), messages)?;
        let server = Server::start(latency, None)?;
        let output = Command::new(&python)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/examples/peer/aiohttp_sender.py"
            ))
            .args([
                "--url",
                &format!("{}/v23.0/{PHONE_NUMBER_ID}/messages", server.base_url()),
                "--token-env",
                "BENCH_PEER_TOKEN",
                "--recipients",
            ])
            .arg(dir.path().join("recipients.csv"))
            .arg("--journal")
            .arg(dir.path().join("peer.db"))
            .args([
                "--rate",
                &RATE.to_string(),
                "--limit",
                &limit.to_string(),
                "--seconds",
                &seconds.to_string(),
            ])
            .env("BENCH_PEER_TOKEN", "EAAGbenchmarktoken")
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()?;
        let served = server.stop()?;
        if !output.status.success() {
            bail!("the peer failed: {}", output.status);
        }
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout).with_context(|| {
                format!(
                    "the peer's output: {}",
                    String::from_utf8_lossy(&output.stdout)
                )
            })?;
        let sent = report["messages"].as_u64().context("the peer's messages")?;
        check(
            served.count == sent,
            "the server saw each message the peer counts as sent once",
        )?;
        let peer = Point {
            sender: "python-aiohttp",
            latency_ms,
            concurrency: limit,
            messages: sent,
            cpu: Duration::from_secs_f64(report["cpu_seconds"].as_f64().context("cpu_seconds")?),
            served,
        };
        print_point(&peer);
        points.push((engine, peer));
    }

    println!(
        "\noperating point: rate_per_second = {RATE}, {seconds} s per run, durable journals \
         (engine: synchronous=FULL WAL; peer: the same)"
    );
    println!(
        "| latency | sender | in flight | messages | span at server | achieved | busiest 1 s \
         | CPU / msg | server CPU / msg | peer / engine CPU |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (engine, peer) in &points {
        for point in [engine, peer] {
            let mut ratio = String::new();
            if point.sender != engine.sender {
                let _ = write!(
                    ratio,
                    "{:.2}×",
                    peer.us_per_message() / engine.us_per_message()
                );
            }
            println!(
                "| {} ms | {} | {} | {} | {:.2} s | {:.1} msg/s | {} | {:.1} µs | {:.1} µs | {ratio} |",
                point.latency_ms,
                point.sender,
                point.concurrency,
                point.messages,
                point.served.span().as_secs_f64(),
                point.served.achieved_rate(),
                point.served.busiest_second,
                point.us_per_message(),
                point.served.cpu.as_secs_f64() * 1e6 / point.served.count.max(1) as f64,
            );
        }
    }
    // The engine's promise is checked; the peer's figures are reported as they are
    // (it paces when it sends, not when its bytes leave, and can show 1,001).
    for (engine, _) in &points {
        check(
            engine.served.busiest_second <= u64::from(RATE),
            &format!(
                "{} at {} ms: no one-second window over the rate",
                engine.sender, engine.latency_ms
            ),
        )?;
    }
    Ok(())
}

fn print_point(p: &Point) {
    println!(
        "  {} at {} ms ({} in flight): {} messages, {:.1} msg/s at the server over {:.2} s, \
         busiest second {}, {:.1} us CPU/msg",
        p.sender,
        p.latency_ms,
        p.concurrency,
        p.messages,
        p.served.achieved_rate(),
        p.served.span().as_secs_f64(),
        p.served.busiest_second,
        p.us_per_message()
    );
}

/// The peer's interpreter: `examples/peer/setup.sh` makes the venv if needed and
/// prints its python.
fn peer_python() -> anyhow::Result<String> {
    let output = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/peer/setup.sh"
    ))
    .stderr(Stdio::inherit())
    .output()
    .context("running examples/peer/setup.sh")?;
    if !output.status.success() {
        bail!("examples/peer/setup.sh failed: {}", output.status);
    }
    let stdout = String::from_utf8(output.stdout)?;
    Ok(stdout
        .lines()
        .last()
        .context("setup.sh printed no path")?
        .trim()
        .to_owned())
}

/// The same recipients as `prepare`'s contacts, for the peer: `to` in E.164 and the
/// two template values.
fn write_peer_recipients(dir: &Path, recipients: u64) -> anyhow::Result<()> {
    let mut csv = BufWriter::new(std::fs::File::create(dir.join("recipients.csv"))?);
    writeln!(csv, "to,name,date")?;
    for i in 0..recipients {
        writeln!(csv, "+52{},Cliente {i},martes 25 de noviembre", national(i))?;
    }
    csv.flush()?;
    Ok(())
}

fn memory(recipients: u64) -> anyhow::Result<()> {
    machine();
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    let simulator = "[provider]\nkind = \"simulator\"\nlatency_ms = 0\nundeliverable_rate = 0.0\n\
                     opt_out_rate = 0.0\n\n[sending]\nconcurrency = 64\n";
    prepare(dir.path(), recipients, simulator)?;
    println!(
        "memory: {recipients} contacts written and opted in, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let child = Command::new(std::env::current_exe()?)
        .arg("memory-run")
        .arg(dir.path())
        .stdin(Stdio::null())
        .spawn()?;
    let (status, usage) = support::wait_with_rusage(child.id())?;
    if status != 0 {
        bail!("the measured run exited with {status}");
    }
    let peak = usage.ru_maxrss as f64 * 1024.0 / 1e6;
    println!("  child peak RSS from wait4: {peak:.1} MB");
    verdict(peak < 300.0, "peak memory under 300 MB");
    Ok(())
}

/// The measured part of `memory`, in its own process.
fn memory_run(dir: &Path) -> anyhow::Result<()> {
    let m = plan_and_send(dir, Some(unpaced(64)?), None)?;
    println!(
        "  planned {} rows in {:.1} s (peak so far {}), sent in {:.1} s ({:.0} msg/s); \
         peak {}",
        m.counts.total(),
        m.plan_wall.as_secs_f64(),
        m.peak_after_plan,
        m.send_wall.as_secs_f64(),
        m.counts.accepted as f64 / m.send_wall.as_secs_f64(),
        vm_hwm()
    );
    check(
        m.counts.accepted == m.counts.total(),
        "every recipient accepted",
    )
}

/// This process's peak resident memory so far, as the kernel counts it.
fn vm_hwm() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_else(|| "?".to_owned())
}

fn check(ok: bool, what: &str) -> anyhow::Result<()> {
    if ok { Ok(()) } else { bail!("FAILED: {what}") }
}

fn machine() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {} cores ({cpu}), load average {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}

// ---- the campaign ----

const PHONE_NUMBER_ID: &str = "106540352242922";

/// The `[provider]` and `[sending]` sections for the loopback server.
fn cloud_api(server: &Server, concurrency: u64) -> String {
    format!(
        "[provider]\nkind = \"cloud_api\"\nphone_number_id = \"{PHONE_NUMBER_ID}\"\n\
         base_url = \"http://127.0.0.1:{}\"\ntoken_file = \"token\"\n\n\
         [sending]\nrate_per_second = 1000\nconcurrency = {concurrency}\n",
        server.port
    )
}

/// Contact `i`'s national number: Mexico City mobiles from 55 2000 0000.
fn national(i: u64) -> u64 {
    5_520_000_000 + i
}

/// Writes `recipients` contacts, the campaign and a token file into `dir`, and
/// records an opt-in for every contact in `dir/bench.db`.
fn prepare(dir: &Path, recipients: u64, provider_and_sending: &str) -> anyhow::Result<()> {
    let mut csv = BufWriter::new(std::fs::File::create(dir.join("contacts.csv"))?);
    writeln!(csv, "name,phone,date")?;
    for i in 0..recipients {
        let national = national(i);
        writeln!(
            csv,
            "Cliente {i},+52 {} {:04} {:04},martes 25 de noviembre",
            national / 100_000_000,
            national / 10_000 % 10_000,
            national % 10_000
        )?;
    }
    csv.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::write(
        dir.join("campaign.toml"),
        format!(
            "{}\n{provider_and_sending}",
            support::campaign("bench-send")
        ),
    )?;
    let token = dir.join("token");
    std::fs::write(&token, "EAAGbenchmarktoken")?;
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let campaign = Campaign::load(&dir.join("campaign.toml"))?;
    let db = Db::open(&dir.join("bench.db"))?;
    support::opt_in_everyone(&db, &campaign, "bench_send")?;
    Ok(())
}

struct Measured {
    concurrency: usize,
    plan_wall: Duration,
    /// `VmHWM` once the plan was written.
    peak_after_plan: String,
    send_wall: Duration,
    send_user: Duration,
    send_sys: Duration,
    counts: Counts,
}

/// No rate limit, `concurrency` requests in flight.
fn unpaced(concurrency: u64) -> anyhow::Result<Options> {
    Ok(Options {
        limit: None,
        rate: None,
        window: wacampaign::send::window::Sizing::Fixed(usize::try_from(concurrency)?),
    })
}

/// What `wacampaign send --yes` does, through the library: plan into the journal,
/// then run the pipeline. Only the pipeline is in the send figures. `options`
/// `None` takes them from the campaign as `wacampaign send` does; `stop_after`
/// interrupts the run then, as Ctrl-C would (what is in flight finishes).
fn plan_and_send(
    dir: &Path,
    options: Option<Options>,
    stop_after: Option<Duration>,
) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let campaign = Campaign::load(&dir.join("campaign.toml"))?;
    let db = Db::open(&dir.join("bench.db"))?;
    let synchronous: i64 = db
        .conn
        .pragma_query_value(None, "synchronous", |r| r.get(0))?;
    check(
        synchronous == 2,
        "the journal is durable (synchronous=FULL)",
    )?;
    let gate = Gate::load(Some(&db.conn), &campaign)?;
    let mut planner = Planner::new(&campaign, &gate)?;
    // The departure log `wacampaign send` keeps, so its cost is in the figures.
    let log = wacampaign::departure_log::path(&dir.join("bench.db"), &campaign.id);
    let (mut journal, _) = Journal::begin(db.conn, &campaign, gate.clone(), false, Some(&log))?;
    let seq = support::write_plan(&mut planner, &mut journal)?;
    // As in `wacampaign send`, the planner's consent index lives on through the run.
    let plan_wall = started.elapsed();
    let peak_after_plan = vm_hwm();

    let provider = wacampaign::provider::build(&campaign)?;
    let runtime = send::runtime()?;
    let options = options.unwrap_or(Options {
        limit: None,
        rate: Some(campaign.sending.rate_per_second),
        window: wacampaign::send::window::Sizing::of(&campaign.sending),
    });
    let progress = Progress::new(Display::Hidden, seq, 0);
    let stop = CancellationToken::new();
    if std::env::var_os("BENCH_SEND_MARK").is_some() {
        // For attaching a profiler to the send phase alone (`perf record -p`).
        eprintln!("send phase starts, pid {}", std::process::id());
    }
    let before = rusage_self();
    let started = Instant::now();
    let (end, journal) = runtime.block_on(async {
        if let Some(after) = stop_after {
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                stop.cancel();
            });
        }
        send::run(journal, provider, &options, progress, stop).await
    })?;
    let send_wall = started.elapsed();
    let after = rusage_self();
    let stopped = stop_after.is_some() && end == RunEnd::Interrupted;
    if end != RunEnd::Finished && !stopped {
        bail!("the run ended {end:?}");
    }
    Ok(Measured {
        // The most in flight at once: the fixed window, or the automatic one's cap.
        concurrency: options.window.bound(),
        plan_wall,
        peak_after_plan,
        send_wall,
        send_user: timeval(after.ru_utime).saturating_sub(timeval(before.ru_utime)),
        send_sys: timeval(after.ru_stime).saturating_sub(timeval(before.ru_stime)),
        counts: journal.counts()?,
    })
}
