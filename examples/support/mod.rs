//! What the benchmark programs share: their campaign, finding the release binary,
//! measuring a child process, and the loopback Cloud API server (`server`). Each example
//! includes it with `#[path]`; cargo does not build it on its own.

#![allow(dead_code)]

pub mod server;

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The benchmarks' campaign `id` up to its provider: a utility reminder with two
/// values from `contacts.csv` (columns name, phone, date; Mexican numbers).
pub fn campaign(id: &str) -> String {
    format!(
        r#"[campaign]
id = "{id}"
category = "utility"
contacts = "contacts.csv"
phone_column = "phone"
default_region = "MX"

[template]
name = "appointment_reminder"
language = "es_MX"
body = "Hola {{{{1}}}}, tu cita es el {{{{2}}}}."

[template.variables]
"1" = {{ column = "name" }}
"2" = {{ column = "date" }}
"#
    )
}

/// `target/release/wacampaign`, beside `target/release/examples/<this example>`.
pub fn release_binary() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| std::io::Error::other("cannot locate the target directory"))?;
    let binary = profile_dir.join(format!("wacampaign{}", std::env::consts::EXE_SUFFIX));
    if !binary.exists() {
        return Err(std::io::Error::other(format!(
            "{} does not exist; run `cargo build --release` first",
            binary.display()
        )));
    }
    Ok(binary)
}

/// Reaps the child with `wait4`, which returns that child's own resource usage
/// (peak RSS included), rather than `RUSAGE_CHILDREN`'s maximum over every child.
pub fn wait_with_rusage(pid: u32) -> std::io::Result<(i32, libc::rusage)> {
    let pid = libc::pid_t::try_from(pid).map_err(std::io::Error::other)?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `status` and `usage` are valid for writes for the whole call.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            break;
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Ok((code, usage))
}

/// A `timeval` from rusage as a `Duration`.
pub fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
        + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
}

/// This process's resource usage so far (every thread; not its children).
pub fn rusage_self() -> libc::rusage {
    rusage(libc::RUSAGE_SELF)
}

/// The calling thread's CPU time (user and system) so far.
pub fn thread_cpu() -> Duration {
    let usage = rusage(libc::RUSAGE_THREAD);
    timeval(usage.ru_utime) + timeval(usage.ru_stime)
}

fn rusage(who: libc::c_int) -> libc::rusage {
    // SAFETY: an all-zero rusage is valid for getrusage to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is valid for writes for the whole call.
    unsafe { libc::getrusage(who, &mut usage) };
    usage
}

/// Records an opt-in for every contact of `campaign`'s file, as an operator's
/// import would, so that the whole list is eligible.
pub fn opt_in_everyone(
    db: &wacampaign::db::Db,
    campaign: &wacampaign::campaign::Campaign,
    actor: &str,
) -> anyhow::Result<()> {
    use wacampaign::consent;
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
            actor: actor.into(),
            delimiter: campaign.contacts.delimiter,
            encoding: campaign.contacts.encoding,
            suppressions: None,
        },
    )?;
    Ok(())
}

/// Writes the planner's eligible contacts into the journal in batches of 10,000,
/// as `wacampaign send` does; returns how many were planned.
pub fn write_plan(
    planner: &mut wacampaign::plan::Planner,
    journal: &mut wacampaign::journal::Journal,
) -> anyhow::Result<u64> {
    let mut batch = Vec::with_capacity(10_000);
    let mut seq = 0;
    while let Some(item) = planner.next_item()? {
        if let wacampaign::plan::PlanItem::Eligible(recipient) = item {
            seq += 1;
            batch.push((seq, recipient));
            if batch.len() == 10_000 {
                journal.plan(&batch)?;
                batch.clear();
            }
        }
    }
    journal.plan(&batch)?;
    Ok(seq)
}
