//! `examples/reminders/`: the reminder campaign, its crontab line and its systemd
//! service and timer. The units are parsed and checked, and the timer's command (the
//! service's ExecStart) is run as systemd would, against the simulator, with
//! `WACAMPAIGN_NOW` on the day before the appointments.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::recurring::summary;
use crate::support::{Fixture, opt_in_everyone};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/reminders")
        .join(name)
}

/// A unit file's sections, each key's values in order (a key may repeat).
type Unit = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn unit(name: &str) -> Unit {
    let text = std::fs::read_to_string(example(name)).expect("reading the unit");
    let mut unit = Unit::new();
    let mut section = String::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{name}:{}: not `Key=value`: {line}", n + 1));
        assert!(
            !section.is_empty(),
            "{name}:{}: a key outside a section",
            n + 1
        );
        unit.entry(section.clone())
            .or_default()
            .entry(key.trim().to_owned())
            .or_default()
            .push(value.trim().to_owned());
    }
    unit
}

fn one<'a>(unit: &'a Unit, section: &str, key: &str) -> &'a str {
    match unit
        .get(section)
        .and_then(|s| s.get(key))
        .map(Vec::as_slice)
    {
        Some([value]) => value,
        other => panic!("[{section}] {key}: expected one value, found {other:?}"),
    }
}

#[test]
fn the_timer_and_service_are_well_formed_and_agree_with_the_crontab() {
    let timer = unit("wacampaign-reminders.timer");
    let calendar = one(&timer, "Timer", "OnCalendar");
    let fields: Vec<&str> = calendar.split_whitespace().collect();
    assert_eq!(
        fields[..2],
        ["*-*-*", "09:00:00"],
        "daily at 09:00: {calendar}"
    );
    assert!(
        fields
            .get(2)
            .is_some_and(|z| z.parse::<chrono_tz::Tz>().is_ok()),
        "in a real time zone: {calendar}"
    );
    assert_eq!(one(&timer, "Timer", "Persistent"), "true");
    let service_name = one(&timer, "Timer", "Unit");
    assert!(example(service_name).exists(), "{service_name} is shipped");
    assert_eq!(one(&timer, "Install", "WantedBy"), "timers.target");

    let service = unit(service_name);
    assert_eq!(one(&service, "Service", "Type"), "oneshot");
    let exec = one(&service, "Service", "ExecStart");
    assert!(
        exec.starts_with('/'),
        "ExecStart needs an absolute path: {exec}"
    );
    assert!(
        one(&service, "Service", "Environment").starts_with("WACAMPAIGN_DB=/"),
        "the database is named, never found by accident"
    );
    assert!(one(&service, "Service", "WorkingDirectory").starts_with('/'));

    // The crontab runs the same command.
    let crontab = std::fs::read_to_string(example("crontab")).expect("reading the crontab");
    let line = crontab
        .lines()
        .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .expect("a crontab line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    for (field, range) in fields[..5].iter().zip([0..60, 0..24, 1..32, 1..13, 0..8]) {
        assert!(
            *field == "*" || field.parse::<u32>().is_ok_and(|n| range.contains(&n)),
            "crontab field `{field}` in: {line}"
        );
    }
    let command = fields[5..].join(" ");
    assert!(
        command.contains("WACAMPAIGN_DB=/") && command.contains(exec),
        "the crontab runs the service's command with the database named:\n{command}\n{exec}"
    );
}

#[test]
fn the_timers_command_sends_each_reminder_once_against_the_simulator() {
    let service = unit("wacampaign-reminders.service");
    let exec = one(&service, "Service", "ExecStart").to_owned();
    let mut words = exec.split_whitespace();
    let program = words.next().expect("a program");
    assert!(program.ends_with("/wacampaign"), "{program}");
    let args: Vec<String> = words.map(str::to_owned).collect();

    // The WorkingDirectory, with the example's files; its database.
    let fx = Fixture::new();
    for name in ["reminders.toml", "appointments.csv"] {
        fx.write(
            name,
            std::fs::read(example(name)).expect("reading the example"),
        );
    }
    let db = fx.path("wacampaign.db");
    opt_in_everyone(&fx.path("reminders.toml"), &db);
    let run = |now: &str| -> Value {
        let out = assert_cmd::Command::cargo_bin("wacampaign")
            .expect("the binary")
            .current_dir(fx.path(""))
            .env("NO_COLOR", "1")
            .env("WACAMPAIGN_DB", &db)
            .env("WACAMPAIGN_NOW", now)
            .env_remove("WACAMPAIGN_RATE")
            .args(&args)
            .timeout(std::time::Duration::from_secs(120))
            .assert()
            .code(0);
        summary(&String::from_utf8_lossy(&out.get_output().stdout))
    };
    // 09:00 in Mexico City the day before: every appointment is reminded.
    let first = run("2026-12-01T15:00:00Z");
    assert_eq!(first["eligible"], 5, "{first}");
    assert_eq!(first["this_run"]["accepted"], 5, "{first}");
    // The timer firing again (a reboot, Persistent=true) sends nothing twice.
    let again = run("2026-12-01T15:05:00Z");
    assert_eq!(again["already_served"], 5, "{again}");
    assert_eq!(again["to_send"], 0, "{again}");
    assert_eq!(again["journal"]["accepted"], 5);
}
