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
    // SAFETY: an all-zero rusage is valid for getrusage to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is valid for writes for the whole call.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage
}
