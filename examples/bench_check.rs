//! How long `wacampaign check` takes on a large contacts file, and how much memory.
//!
//! ```sh
//! cargo build --release    # building the example alone does not rebuild the binary
//! cargo run --release --example bench_check -- [ROWS] [RUNS] [--dir DIR]
//! ```
//!
//! Writes a realistic Mexican contacts export of ROWS rows (default 1,000,000) and a
//! campaign for it into a temporary directory, then runs the release binary
//! (`target/release/wacampaign`, beside this example's own directory) RUNS times
//! (default 3) and reports, for each run, the wall time, rows per second, CPU time
//! and the child's peak resident memory (from `wait4`'s rusage, so the figure is
//! the kernel's, not a sample). The generated data is deleted afterwards.
//!
//! The file mixes the spellings people type (`+52 55 1234 5678`, `(55) 1234-5678`,
//! `0052 55...`, `+52 1 55...`, bare 10 digits), about 1% invalid numbers, about 1%
//! duplicates written another way, accented names, and a few empty cells.

#[path = "support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DEFAULT_ROWS: usize = 1_000_000;
const DEFAULT_RUNS: usize = 3;

const CAMPAIGN: &str = r#"[campaign]
id = "bench-check"
category = "utility"
contacts = "contacts.csv"
phone_column = "mobile"
default_region = "MX"

[template]
name = "appointment_reminder"
language = "es_MX"
body = "Hola {{1}}, te recordamos tu cita en {{2}} el {{3}} a las {{4}}."

[template.variables]
"1" = { column = "first_name", default = "paciente" }
"2" = { value = "Clínica Roma" }
"3" = { column = "date" }
"4" = { column = "time" }

[provider]
kind = "cloud_api"
phone_number_id = "106540352242922"
"#;

const FIRST_NAMES: &[&str] = &[
    "José",
    "María",
    "Sofía",
    "Ana",
    "Luis",
    "Valentina",
    "Diego",
    "Regina",
    "Ximena",
    "Íñigo",
    "Begoña",
    "Martín",
    "Andrés",
    "Lucía",
    "Ramón",
    "Camila",
    "Mateo",
    "Renata",
    "Jesús",
    "Inés",
];
const LAST_NAMES: &[&str] = &[
    "García",
    "Hernández",
    "López",
    "Martínez",
    "Pérez",
    "Gómez",
    "Sánchez",
    "Núñez",
    "Muñoz",
    "Rodríguez",
    "Díaz",
    "Castañeda",
];
const DATES: &[&str] = &[
    "lunes 24 de noviembre",
    "martes 25 de noviembre",
    "miércoles 26 de noviembre",
    "jueves 27 de noviembre",
    "viernes 28 de noviembre",
];
/// Area codes of Mexico City, Guadalajara, Monterrey, Puebla and Mérida.
const AREAS: &[u64] = &[55, 33, 81, 222, 999];
const INVALID: &[&str] = &[
    "55-CALL-NOW",
    "12345",
    "+52 55 123",
    "n/a",
    "+1 000 000 0000",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut positional = Vec::new();
    let mut keep_in = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--dir" => keep_in = Some(PathBuf::from(args.next().ok_or("--dir needs a path")?)),
            "-h" | "--help" => {
                println!("usage: bench_check [ROWS] [RUNS] [--dir DIR (keep the data there)]");
                return Ok(());
            }
            _ => positional.push(arg),
        }
    }
    let rows = match positional.first() {
        Some(n) => n.replace(['_', ','], "").parse()?,
        None => DEFAULT_ROWS,
    };
    let runs = match positional.get(1) {
        Some(n) => n.parse()?,
        None => DEFAULT_RUNS,
    };
    let binary = support::release_binary()?;
    // The data goes in a temporary directory, deleted on exit, unless --dir asks to
    // keep it (to profile, say).
    let temp = tempfile::tempdir()?;
    let dir = match keep_in {
        Some(keep) => {
            std::fs::create_dir_all(&keep)?;
            keep
        }
        None => temp.path().to_owned(),
    };

    let started = Instant::now();
    let expected = write_contacts(&dir.join("contacts.csv"), rows)?;
    std::fs::write(dir.join("campaign.toml"), CAMPAIGN)?;
    let size = std::fs::metadata(dir.join("contacts.csv"))?.len();
    println!(
        "generated {rows} rows ({:.1} MB) in {:.1?}: ~{} invalid numbers, ~{} duplicates, \
         {} empty dates",
        size as f64 / 1e6,
        started.elapsed(),
        expected.invalid,
        expected.duplicates,
        expected.empty_dates
    );
    // The target directory may be shared: say how old the binary is, so a stale
    // or foreign build is noticed.
    let age = std::fs::metadata(&binary)?
        .modified()?
        .elapsed()
        .unwrap_or_default();
    println!(
        "binary    {} (built {} s ago)",
        binary.display(),
        age.as_secs()
    );

    let mut walls = Vec::new();
    for run in 1..=runs {
        let m = run_check(&binary, &dir)?;
        println!(
            "run {run}: {:>6.2} s wall, {:>9.0} rows/s, {:>6.2} s user + {:.2} s sys, \
             peak RSS {:>5.1} MB | {}",
            m.wall.as_secs_f64(),
            rows as f64 / m.wall.as_secs_f64(),
            m.user.as_secs_f64(),
            m.sys.as_secs_f64(),
            m.peak_rss_bytes as f64 / 1e6,
            m.summary
        );
        walls.push(m.wall);
    }
    walls.sort();
    if let Some(median) = walls.get(walls.len() / 2) {
        println!(
            "median {:.2} s, {:.0} rows/s",
            median.as_secs_f64(),
            rows as f64 / median.as_secs_f64()
        );
    }
    Ok(())
}

#[derive(Default)]
struct Expected {
    invalid: usize,
    duplicates: usize,
    empty_dates: usize,
}

fn write_contacts(path: &Path, rows: usize) -> std::io::Result<Expected> {
    let mut rng = fastrand::Rng::with_seed(2026);
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    out.write_all(b"first_name,last_name,mobile,date,time,email\n")?;
    let mut expected = Expected::default();
    let mut earlier: Vec<u64> = Vec::with_capacity(rows);
    // Fresh numbers never repeat by chance, so duplicates are only the planted ones.
    let mut used = std::collections::HashSet::with_capacity(rows);
    let mut line = String::new();
    for _ in 0..rows {
        line.clear();
        let first = if rng.u32(0..200) == 0 {
            "" // the default "paciente" fills it
        } else {
            FIRST_NAMES[rng.usize(..FIRST_NAMES.len())]
        };
        let last = LAST_NAMES[rng.usize(..LAST_NAMES.len())];
        let roll = rng.u32(0..1000);
        let phone = if roll < 10 {
            expected.invalid += 1;
            INVALID[rng.usize(..INVALID.len())].to_owned()
        } else if roll < 20 && !earlier.is_empty() {
            expected.duplicates += 1;
            spell(earlier[rng.usize(..earlier.len())], &mut rng)
        } else {
            let national = loop {
                let area = AREAS[rng.usize(..AREAS.len())];
                let digits = if area < 100 { 8 } else { 7 };
                // Real MX subscriber numbers start with 2-9.
                let subscriber = rng.u64(2 * 10u64.pow(digits - 1)..10u64.pow(digits));
                let national = area * 10u64.pow(digits) + subscriber;
                if used.insert(national) {
                    break national;
                }
            };
            earlier.push(national);
            spell(national, &mut rng)
        };
        let date = if rng.u32(0..500) == 0 {
            expected.empty_dates += 1;
            ""
        } else {
            DATES[rng.usize(..DATES.len())]
        };
        let time = format!("{:02}:{:02}", rng.u32(8..19), rng.u32(0..4) * 15);
        let email = if rng.bool() {
            format!("{}.{}@example.com", ascii(first), ascii(last))
        } else {
            String::new()
        };
        let _ = writeln!(line, "{first},{last},{phone},{date},{time},{email}");
        out.write_all(line.as_bytes())?;
    }
    out.flush()?;
    Ok(expected)
}

/// One of the ways a Mexican number turns up in a spreadsheet.
fn spell(national: u64, rng: &mut fastrand::Rng) -> String {
    let n = national.to_string();
    let (area, rest) = if n.starts_with("55") || n.starts_with("33") || n.starts_with("81") {
        n.split_at(2)
    } else {
        n.split_at(3)
    };
    let (a, b) = rest.split_at(rest.len() - 4);
    match rng.u32(0..8) {
        0 => format!("+52 {area} {a} {b}"),
        1 => format!("({area}) {a}-{b}"),
        2 => format!("0052 {area} {a} {b}"),
        3 => format!("+52 1 {area} {a} {b}"),
        4 => format!("+52{n}"),
        5 => format!("{area}-{a}-{b}"),
        6 => format!("\"{area} {a} {b}\""),
        _ => n,
    }
}

fn ascii(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            'á' => 'a',
            'é' => 'e',
            'í' | 'Í' => 'i',
            'ó' => 'o',
            'ú' => 'u',
            'ñ' => 'n',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

struct Measurement {
    wall: Duration,
    user: Duration,
    sys: Duration,
    peak_rss_bytes: u64,
    summary: String,
}

fn run_check(binary: &Path, dir: &Path) -> Result<Measurement, Box<dyn std::error::Error>> {
    let json_path = dir.join("check.json");
    let started = Instant::now();
    let child = Command::new(binary)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .args(["--color", "never", "--json", "--db"])
        .arg(dir.join("bench.db"))
        .args(["check", "campaign.toml"])
        .stdin(Stdio::null())
        .stdout(File::create(&json_path)?)
        .spawn()?;
    let (status, usage) = support::wait_with_rusage(child.id())?;
    let wall = started.elapsed();
    if status != 0 {
        return Err(format!("wacampaign check exited with status {status}").into());
    }
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(&json_path)?)?;
    let data = &record["data"];
    let summary = format!(
        "read {} eligible {} excluded {} {}",
        data["contacts_read"], data["eligible"], data["excluded"], data["excluded_by_reason"]
    );
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    Ok(Measurement {
        wall,
        user: time(usage.ru_utime),
        sys: time(usage.ru_stime),
        // Linux reports ru_maxrss in kilobytes.
        peak_rss_bytes: usage.ru_maxrss as u64 * 1024,
        summary,
    })
}
