//! How fast the send pipeline goes, how well it keeps a rate, and how much memory a
//! million-recipient campaign takes, with the journal durable (`synchronous=FULL`).
//!
//! ```sh
//! cargo run --release --example bench_send -- throughput [MESSAGES] [CONCURRENCY]
//! cargo run --release --example bench_send -- paced [SECONDS] [CONCURRENCY]
//! cargo run --release --example bench_send -- memory [RECIPIENTS]
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
//!
//! The server is this program run again as `bench_send serve LATENCY_MS`, a child
//! process, so its CPU is measured apart from the sender's: a minimal HTTP/1.1
//! server on tokio that answers every request like Meta's Cloud API and keeps only
//! each request's receive time.

#[path = "support/mod.rs"]
mod support;

use std::io::{BufRead as _, BufReader, BufWriter, Read as _, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;
use wacampaign::campaign::Campaign;
use wacampaign::consent;
use wacampaign::db::Db;
use wacampaign::gate::Gate;
use wacampaign::journal::{Counts, Journal};
use wacampaign::plan::{PlanItem, Planner};
use wacampaign::send::progress::{Display, Progress};
use wacampaign::send::{self, Options, RunEnd};

const CAMPAIGN: &str = r#"[campaign]
id = "bench-send"
category = "utility"
contacts = "contacts.csv"
phone_column = "phone"
default_region = "MX"

[template]
name = "appointment_reminder"
language = "es_MX"
body = "Hola {{1}}, tu cita es el {{2}}."

[template.variables]
"1" = { column = "name" }
"2" = { column = "date" }
"#;

fn main() -> anyhow::Result<()> {
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
        Some("serve") => serve(Duration::from_millis(number(1, 0)?)),
        _ => {
            eprintln!(
                "usage: bench_send throughput [MESSAGES] [CONCURRENCY]\n       \
                 bench_send paced [SECONDS] [CONCURRENCY]\n       \
                 bench_send memory [RECIPIENTS]"
            );
            std::process::exit(2);
        }
    }
}

// ---- the scenarios ----

fn throughput(messages: u64, concurrency: u64) -> anyhow::Result<()> {
    machine();
    let dir = tempfile::tempdir()?;
    let server = Server::start(Duration::ZERO)?;
    prepare(dir.path(), messages, &cloud_api(&server, concurrency))?;
    let m = plan_and_send(dir.path(), None, concurrency)?;
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
    let server = Server::start(Duration::from_millis(100))?;
    let messages = seconds * u64::from(RATE);
    prepare(dir.path(), messages, &cloud_api(&server, concurrency))?;
    let m = plan_and_send(dir.path(), Some(RATE), concurrency)?;
    let served = server.stop()?;
    let span = served.last.saturating_sub(served.first).as_secs_f64();
    let achieved = (served.count.saturating_sub(1)) as f64 / span;
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
    let m = plan_and_send(dir, None, 64)?;
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

/// The `[provider]` and `[sending]` sections for the loopback server.
fn cloud_api(server: &Server, concurrency: u64) -> String {
    format!(
        "[provider]\nkind = \"cloud_api\"\nphone_number_id = \"106540352242922\"\n\
         base_url = \"http://127.0.0.1:{}\"\ntoken_file = \"token\"\n\n\
         [sending]\nrate_per_second = 1000\nconcurrency = {concurrency}\n",
        server.port
    )
}

/// Writes `recipients` contacts, the campaign and a token file into `dir`, and
/// records an opt-in for every contact in `dir/bench.db`.
fn prepare(dir: &Path, recipients: u64, provider_and_sending: &str) -> anyhow::Result<()> {
    let mut csv = BufWriter::new(std::fs::File::create(dir.join("contacts.csv"))?);
    writeln!(csv, "name,phone,date")?;
    for i in 0..recipients {
        let national = 5_520_000_000 + i;
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
        format!("{CAMPAIGN}\n{provider_and_sending}"),
    )?;
    let token = dir.join("token");
    std::fs::write(&token, "EAAGbenchmarktoken")?;
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let campaign = Campaign::load(&dir.join("campaign.toml"))?;
    let db = Db::open(&dir.join("bench.db"))?;
    consent::import_file(
        &db.conn,
        &consent::ImportOptions {
            file: campaign.contacts.path.clone(),
            purpose: campaign.purpose(),
            action: consent::Action::OptIn,
            method: "web_form".into(),
            phone_column: campaign.contacts.phone_column.clone(),
            default_region: campaign.contacts.default_region,
            occurred_column: None,
            evidence_column: None,
            notice: None,
            actor: "bench_send".into(),
            delimiter: campaign.contacts.delimiter,
            encoding: campaign.contacts.encoding,
            suppressions: None,
        },
    )?;
    Ok(())
}

struct Measured {
    plan_wall: Duration,
    /// `VmHWM` once the plan was written.
    peak_after_plan: String,
    send_wall: Duration,
    send_user: Duration,
    send_sys: Duration,
    counts: Counts,
}

/// What `wacampaign send --yes` does, through the library: plan into the journal,
/// then run the pipeline. Only the pipeline is in the send figures.
fn plan_and_send(dir: &Path, rate: Option<u32>, concurrency: u64) -> anyhow::Result<Measured> {
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
    let (mut journal, _) = Journal::begin(db.conn, &campaign, gate.clone(), false)?;
    let mut batch = Vec::with_capacity(10_000);
    let mut seq = 0;
    while let Some(item) = planner.next_item()? {
        if let PlanItem::Eligible(recipient) = item {
            seq += 1;
            batch.push((seq, recipient));
            if batch.len() == 10_000 {
                journal.plan(&batch)?;
                batch.clear();
            }
        }
    }
    journal.plan(&batch)?;
    // As in `wacampaign send`, the planner's consent index lives on through the run.
    let plan_wall = started.elapsed();
    let peak_after_plan = vm_hwm();

    let provider = wacampaign::provider::build(&campaign)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let options = Options {
        limit: None,
        rate,
        window: wacampaign::send::window::Sizing::Fixed(usize::try_from(concurrency)?),
    };
    let progress = Progress::new(Display::Hidden, seq, 0);
    let before = rusage_self();
    let started = Instant::now();
    let (end, journal) = runtime.block_on(send::run(
        journal,
        provider,
        &options,
        progress,
        CancellationToken::new(),
    ))?;
    let send_wall = started.elapsed();
    let after = rusage_self();
    if end != RunEnd::Finished {
        bail!("the run ended {end:?}");
    }
    Ok(Measured {
        plan_wall,
        peak_after_plan,
        send_wall,
        send_user: timeval(after.ru_utime).saturating_sub(timeval(before.ru_utime)),
        send_sys: timeval(after.ru_stime).saturating_sub(timeval(before.ru_stime)),
        counts: journal.counts()?,
    })
}

// ---- rusage ----

fn rusage_self() -> libc::rusage {
    // SAFETY: an all-zero rusage is valid for getrusage to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is valid for writes for the whole call.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
        + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
}

// ---- the loopback server ----

/// The server child: its port, and a pipe whose closing tells it to stop.
struct Server {
    port: u16,
    child: Child,
}

/// What the server saw.
struct Served {
    count: u64,
    first: Duration,
    last: Duration,
    busiest_second: u64,
    cpu: Duration,
}

impl Server {
    fn start(latency: Duration) -> anyhow::Result<Server> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["serve", &latency.as_millis().to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().context("server stdout")?).read_line(&mut line)?;
        let port = line.trim().parse().context("the server's port")?;
        Ok(Server { port, child })
    }

    fn stop(mut self) -> anyhow::Result<Served> {
        drop(self.child.stdin.take());
        let mut report = String::new();
        self.child
            .stdout
            .take()
            .context("server stdout")?
            .read_to_string(&mut report)?;
        let (status, usage) = support::wait_with_rusage(self.child.id())?;
        if status != 0 {
            bail!("the server exited with {status}");
        }
        let fields: Vec<u64> = report
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .context("the server's report")?;
        let [count, first, last, busiest_second] = fields[..] else {
            bail!("the server's report: `{report}`");
        };
        Ok(Served {
            count,
            first: Duration::from_micros(first),
            last: Duration::from_micros(last),
            busiest_second,
            cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
        })
    }
}

/// `bench_send serve LATENCY_MS`: prints its port, serves until stdin closes, then
/// prints `count first_us last_us busiest_second`.
fn serve(latency: Duration) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let times: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(Vec::with_capacity(1 << 20)));
    let started = Instant::now();
    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            stop.cancel();
        });
    }
    let recorded = Arc::clone(&times);
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("{}", listener.local_addr()?.port());
        std::io::stdout().flush()?;
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, _) = accepted?;
                    stream.set_nodelay(true)?;
                    tokio::spawn(connection(stream, Arc::clone(&recorded), started, latency));
                }
                () = stop.cancelled() => break,
            }
        }
        anyhow::Ok(())
    })?;
    let mut times = times
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    times.sort_unstable();
    let mut busiest = 0;
    let mut start = 0;
    for (end, t) in times.iter().enumerate() {
        while *t >= times[start] + 1_000_000 {
            start += 1;
        }
        busiest = busiest.max(end + 1 - start);
    }
    let mut gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort_unstable();
    eprintln!(
        "  server: longest gaps between requests (us): {:?}",
        gaps.iter().rev().take(8).collect::<Vec<_>>()
    );
    println!(
        "{} {} {} {busiest}",
        times.len(),
        times.first().unwrap_or(&0),
        times.last().unwrap_or(&0)
    );
    Ok(())
}

async fn connection(
    mut stream: tokio::net::TcpStream,
    times: Arc<Mutex<Vec<u64>>>,
    started: Instant,
    latency: Duration,
) {
    let mut buffer = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let mut response = Vec::with_capacity(512);
    loop {
        let head_end = loop {
            if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .split("\r\n")
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buffer.len() < head_end + length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let received = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let n = {
            let mut times = times
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            times.push(received);
            times.len()
        };
        let body = &buffer[head_end..head_end + length];
        let to = find_to(body).unwrap_or("+0").to_owned();
        buffer.drain(..head_end + length);
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let payload = format!(
            "{{\"messaging_product\":\"whatsapp\",\"contacts\":[{{\"input\":\"{to}\",\"wa_id\":\"{}\"}}],\
             \"messages\":[{{\"id\":\"wamid.HBgNBENCH{n:016X}\",\"message_status\":\"accepted\"}}]}}",
            to.trim_start_matches('+')
        );
        response.clear();
        let _ = write!(
            response,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{payload}",
            payload.len()
        );
        if stream.write_all(&response).await.is_err() {
            return;
        }
    }
}

/// The `to` of a request body, without parsing the whole JSON.
fn find_to(body: &[u8]) -> Option<&str> {
    let key = b"\"to\":\"";
    let start = body.windows(key.len()).position(|w| w == key)? + key.len();
    let len = body[start..].iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&body[start..start + len]).ok()
}
