//! What a cron job sees: JSON progress on stderr while a `--json` run goes on, a
//! refused run naming the process that holds the campaign, and two overlapping runs
//! from one business number taking turns without exceeding its rate.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::recurring::{Clinic, REMINDERS};

const NOW: &str = "2026-12-01T15:00:00Z";

/// `n` appointments tomorrow, from +52 55 3000 0000 on, ids prefixed with `tag`.
fn appointments(tag: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{tag}{i},Paciente {i},+52 55 {},2026-12-02,10:00\n",
                30_000_000 + i
            )
        })
        .collect()
}

/// `wacampaign ARGS` in the clinic's directory, in the background.
fn spawn(clinic: &Clinic, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_wacampaign"))
        .current_dir(clinic.dir())
        .env("NO_COLOR", "1")
        .env("WHATSAPP_TOKEN", "EAAGtest0token0for0the0mock")
        .env("WACAMPAIGN_NOW", NOW)
        .env_remove("WACAMPAIGN_DB")
        .env_remove("WACAMPAIGN_RATE")
        .env_remove("WACAMPAIGN_CONCURRENCY")
        .args(["--color", "never", "--db"])
        .arg(clinic.db())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting wacampaign")
}

/// Waits for a background run, at most two minutes; its exit code and stderr.
fn finish(child: Child) -> (Option<i32>, String) {
    let started = Instant::now();
    let pid = child.id();
    let output = std::thread::spawn(move || child.wait_with_output());
    while !output.is_finished() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "run {pid} did not finish"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = output.join().expect("waiting").expect("the run's output");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_json_run_reports_progress_on_stderr_every_five_seconds() {
    let clinic = Clinic::with_campaign(REMINDERS, 4, 2);
    clinic.appointments(&appointments("P", 26));
    let started = Instant::now();
    let out = clinic
        .at(NOW)
        .args(["--json", "send", "campaign.toml", "--yes"])
        .assert()
        .code(0);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let progress: Vec<Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "progress")
        .map(|v| v["data"].clone())
        .collect();
    let expected = (took.as_secs_f64() / 5.0).floor() as usize;
    assert!(
        !progress.is_empty() && progress.len() + 1 >= expected,
        "{} progress lines in {took:?}:\n{stderr}",
        progress.len()
    );
    let first = &progress[0];
    for field in ["sent", "failed", "remaining", "rate", "elapsed"] {
        assert!(first.get(field).is_some(), "no {field} in {first}");
    }
    let elapsed = first["elapsed"].as_f64().expect("elapsed is a number");
    assert!((4.5..6.5).contains(&elapsed), "first line at {elapsed} s");
    let sent = first["sent"].as_u64().unwrap_or_default();
    assert!(
        sent > 0 && sent + first["remaining"].as_u64().unwrap_or_default() == 26,
        "{first}"
    );
    assert!(stdout_has_summary(&out), "the summary still goes to stdout");
}

fn stdout_has_summary(out: &assert_cmd::assert::Assert) -> bool {
    String::from_utf8_lossy(&out.get_output().stdout).contains("\"send_summary\"")
}

#[test]
fn a_run_refused_by_the_lock_names_the_process_holding_it() {
    let clinic = Clinic::with_campaign(REMINDERS, 2, 1);
    clinic.appointments(&appointments("P", 20));
    let holder = spawn(&clinic, &["send", "campaign.toml", "--yes"]);
    let pid = holder.id();
    assert!(
        clinic.server.wait_for(1, Duration::from_secs(30)),
        "the first run started sending"
    );
    let out = clinic
        .at(NOW)
        .args(["send", "campaign.toml", "--yes"])
        .assert()
        .code(3);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains(&format!("pid {pid}")), "{stderr}");
    assert!(stderr.contains("since 2026-12-01T15:00"), "{stderr}");
    assert!(stderr.contains("send campaign.toml --yes"), "{stderr}");
    // Stopped with SIGTERM: it records what was in flight and lets go.
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let (code, _) = finish(holder);
    assert_eq!(code, Some(130));
}

/// A second campaign from the same business number, with its own contacts.
fn second_campaign(clinic: &Clinic) {
    let text = clinic.fx.read("campaign.toml");
    clinic.fx.write(
        "second.toml",
        text.replace("id = \"clinic-reminders\"", "id = \"lab-results\"")
            .replace("appointments.csv", "second.csv"),
    );
    clinic.fx.write(
        "second.csv",
        format!("{}{}", crate::recurring::HEADER, appointments("L", 15)),
    );
    crate::support::opt_in_everyone(&clinic.fx.path("second.toml"), &clinic.db());
}

#[test]
fn two_overlapping_runs_from_one_number_never_exceed_its_rate() {
    const RATE: usize = 5;
    let clinic = Clinic::with_campaign(REMINDERS, RATE as u32, 4);
    clinic.appointments(&appointments("P", 15));
    second_campaign(&clinic);
    let first = spawn(&clinic, &["send", "campaign.toml", "--yes"]);
    let second = spawn(&clinic, &["send", "second.toml", "--yes"]);
    let (first_code, first_err) = finish(first);
    let (second_code, second_err) = finish(second);
    assert_eq!(
        (first_code, second_code),
        (Some(0), Some(0)),
        "{first_err}\n{second_err}"
    );
    assert!(
        format!("{first_err}{second_err}").contains("for its turn (--wait)"),
        "one of them waited, saying for whom:\n{first_err}\n{second_err}"
    );
    let log = clinic.server.log();
    assert_eq!(log.len(), 30, "every contact of both campaigns, once");
    let mut times: Vec<Duration> = log.iter().map(|r| r.at).collect();
    times.sort();
    let mut busiest = 0;
    for (i, start) in times.iter().enumerate() {
        let in_window = times[i..]
            .iter()
            .take_while(|t| **t < *start + Duration::from_secs(1))
            .count();
        busiest = busiest.max(in_window);
        assert!(
            in_window <= RATE,
            "{in_window} requests in the second from {start:?}: the number's rate is {RATE}"
        );
    }
    // When the second campaign's first request came, after the first's last.
    let of = |lab: bool| {
        log.iter()
            .filter(|r| crate::recurring::occurrence(r).starts_with('L') == lab)
            .map(|r| r.at)
            .collect::<Vec<_>>()
    };
    let (clinic_times, lab_times) = (of(false), of(true));
    let (first, second) = if clinic_times[0] < lab_times[0] {
        (clinic_times, lab_times)
    } else {
        (lab_times, clinic_times)
    };
    let last_of_first = first.iter().max().copied().unwrap_or_default();
    let first_of_second = second.iter().min().copied().unwrap_or_default();
    assert!(first_of_second > last_of_first, "the runs took turns");
    eprintln!(
        "one number: at most {busiest} requests in any second (rate {RATE}); the second run's \
         first request {:?} after the first run's last",
        first_of_second - last_of_first
    );
}

#[test]
fn a_run_that_waits_too_long_for_the_number_gives_up_with_exit_3() {
    let clinic = Clinic::with_campaign(REMINDERS, 2, 1);
    clinic.appointments(&appointments("P", 20));
    second_campaign(&clinic);
    let holder = spawn(&clinic, &["send", "campaign.toml", "--yes"]);
    assert!(clinic.server.wait_for(1, Duration::from_secs(30)));
    let before = clinic.server.count();
    let out = clinic
        .at(NOW)
        .args(["send", "second.toml", "--yes", "--wait", "1s"])
        .assert()
        .code(3);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("business number cloud_api-106540352242922")
            && stderr.contains(&format!("pid {}", holder.id())),
        "{stderr}"
    );
    let lab_sent = clinic
        .server
        .log()
        .iter()
        .filter(|r| crate::recurring::occurrence(r).starts_with('L'))
        .count();
    assert_eq!(
        lab_sent, 0,
        "the second campaign sent nothing ({before} before)"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &holder.id().to_string()])
        .status();
    finish(holder);
}
