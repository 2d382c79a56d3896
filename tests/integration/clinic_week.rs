//! A clinic's week: the reminder campaign run every morning for seven days on the
//! day's export of appointments (tomorrow's and the day after's, so most
//! appointments are listed twice), against a mock Cloud API on 127.0.0.1, with
//! `WACAMPAIGN_NOW` set to each morning.
//!
//! Along the way: a patient with two appointments, a run SIGKILLed mid-send on day 3
//! and resumed, a reminder deferred by Meta's per-user limit (131049) past its
//! appointment, a test send to the clinic's own number, and a run started from the
//! wrong directory. In the end every appointment was messaged at most once, and
//! exactly once when it could be.
//!
//! The second week plays the same clinic across a DST change, with patients in three
//! zones of Mexico, quiet hours in each patient's zone, an all-categories frequency
//! cap shared with a marketing campaign sent from the same number at the same time,
//! and the kill, the test send and the wrong directory again.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::mock_server::Reply;
use crate::recurring::{Clinic, REMINDERS, occurrence};

/// Runs start at 09:00 in Mexico City (UTC-6, no DST since 2022).
fn morning(day: u32) -> String {
    format!("2026-12-{day:02}T15:00:00Z")
}

struct Appointment {
    id: String,
    patient: usize,
    day: u32,
    time: &'static str,
}

const PATIENTS: [(&str, &str); 6] = [
    ("Ana", "+52 55 1111 0001"),
    ("Beto", "+52 55 1111 0002"),
    ("Carla", "+52 55 1111 0003"),
    ("Dani", "+52 55 1111 0004"),
    ("Eva", "+52 55 1111 0005"),
    ("Fede", "+52 55 1111 0006"),
];
/// Beto: every send answers 131049 (Meta's per-user limit): deferred a day each time.
const BETO: &str = "+525511110002";
const FILLERS: usize = 24;

fn appointments() -> Vec<Appointment> {
    let mut all = vec![
        // Ana has two appointments in the week: both are reminded, once each.
        ("ANA-1", 0, 3, "10:00"),
        ("ANA-2", 0, 6, "10:00"),
        // Beto's is at 08:00 on day 6 (14:00 UTC), before the 09:00 run: deferred a
        // day by 131049 on day 4 (and again on day 5 if it comes due then), it expires.
        ("BETO-1", 1, 6, "08:00"),
        ("CARLA-1", 2, 2, "12:00"),
        ("DANI-1", 3, 4, "09:30"),
        ("EVA-1", 4, 7, "16:00"),
        ("FEDE-1", 5, 8, "11:00"),
    ]
    .into_iter()
    .map(|(id, patient, day, time)| Appointment {
        id: id.to_owned(),
        patient,
        day,
        time,
    })
    .collect::<Vec<_>>();
    // A busy day 5, first listed on day 3, so day 3's run is long enough to be
    // killed mid-send.
    for i in 0..FILLERS {
        all.push(Appointment {
            id: format!("F-{i}"),
            patient: usize::MAX - i,
            day: 5,
            time: "13:00",
        });
    }
    all
}

fn phone_of(a: &Appointment) -> String {
    match PATIENTS.get(a.patient) {
        Some((_, phone)) => (*phone).to_owned(),
        None => format!("+52 55 2000 {:04}", usize::MAX - a.patient),
    }
}

/// The morning's export: tomorrow's and the day after's appointments, in an order
/// that changes from day to day (the rows move; the occurrences do not).
fn export(day: u32, all: &[Appointment]) -> String {
    let mut rows: Vec<String> = all
        .iter()
        .filter(|a| a.day == day + 1 || a.day == day + 2)
        .map(|a| {
            let name = PATIENTS.get(a.patient).map_or("Paciente", |p| p.0);
            format!(
                "{},{name},{},2026-12-{:02},{}\n",
                a.id,
                phone_of(a),
                a.day,
                a.time
            )
        })
        .collect();
    if day.is_multiple_of(2) {
        rows.reverse();
    }
    rows.concat()
}

/// What happens on a day besides the morning run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Day {
    Plain,
    /// A test send to the clinic's own number before the run.
    TestSend,
    /// The run is SIGKILLed mid-send, then run again.
    KilledAndResumed,
    /// A run from the wrong directory first: refused, nothing sent.
    WrongDirectoryFirst,
}

const WEEK: [Day; 7] = [
    Day::Plain,
    Day::TestSend,
    Day::KilledAndResumed,
    Day::Plain,
    Day::Plain,
    Day::WrongDirectoryFirst,
    Day::Plain,
];

const CLINIC_PHONE: &str = "+52 55 9999 0000";

#[test]
fn a_week_of_daily_reminders_messages_each_appointment_once() {
    let clinic = Clinic::new();
    clinic.server.set_rule(|r| {
        if r.to == BETO {
            Reply::graph(
                131049,
                "This message was not delivered to maintain healthy ecosystem engagement.",
            )
        } else {
            Reply::Accept
        }
    });
    let all = appointments();
    let mut in_doubt = 0;
    let mut last: Option<Value> = None;
    for (i, event) in WEEK.iter().enumerate() {
        let day = i as u32 + 1;
        let now = morning(day);
        clinic.appointments(&export(day, &all));
        match event {
            Day::Plain => {}
            Day::TestSend => test_send(&clinic, &now, last.as_ref()),
            Day::KilledAndResumed => kill_mid_send(&clinic, &now),
            Day::WrongDirectoryFirst => wrong_directory(&clinic, &now),
        }
        let resumed_at = if *event == Day::KilledAndResumed {
            format!("2026-12-{day:02}T15:02:00Z")
        } else {
            now
        };
        let summary = clinic.send(&resumed_at);
        in_doubt = summary["journal"]["in_doubt"].as_u64().unwrap_or_default();
        last = Some(summary);
    }
    let last = last.expect("seven runs");

    // Requests the server read, per (number, occurrence).
    let mut requests: BTreeMap<(String, String), usize> = BTreeMap::new();
    for r in clinic.server.log() {
        *requests.entry((r.to.clone(), occurrence(&r))).or_default() += 1;
    }
    let mut never_reached = 0;
    for a in &all {
        let to = phone_of(a).replace(' ', "");
        let n = requests
            .get(&(to.clone(), a.id.clone()))
            .copied()
            .unwrap_or(0);
        if to == BETO {
            // Tried, deferred a day each time by 131049, never accepted, and expired
            // on day 6 once its 08:00 had passed.
            assert!((1..=2).contains(&n), "{}: {n} requests", a.id);
        } else if n == 0 {
            never_reached += 1;
        } else {
            assert_eq!(n, 1, "{} was messaged {n} times", a.id);
        }
    }
    // Only a message held in doubt by the kill may have never left: it is held, not
    // resent, since it may have gone out.
    assert!(
        never_reached <= in_doubt as usize,
        "{never_reached} appointments never messaged, {in_doubt} held in doubt"
    );
    assert_eq!(
        requests.get(&("+525511110001".into(), "ANA-1".into())),
        Some(&1)
    );
    assert_eq!(
        requests.get(&("+525511110001".into(), "ANA-2".into())),
        Some(&1)
    );
    assert_eq!(last["journal"]["expired"], 1, "Beto's reminder: {last}");
    let journal = &last["journal"];
    let settled = ["accepted", "in_doubt", "expired"]
        .iter()
        .map(|s| journal[s].as_u64().unwrap_or_default())
        .sum::<u64>();
    assert_eq!(
        settled,
        all.len() as u64,
        "every appointment accounted for once, test sends apart: {journal}"
    );
    // The test send went out, to the clinic's own number, and is in no total.
    assert!(
        requests
            .keys()
            .any(|(to, o)| to == "+525599990000" && o.starts_with("test:"))
    );
}

/// Day 2: a test send to the clinic's own number leaves the totals as they were.
fn test_send(clinic: &Clinic, now: &str, before: Option<&Value>) {
    clinic
        .at(now)
        .args(["consent", "opt-in", CLINIC_PHONE, "--purpose", "utility"])
        .args(["--method", "operator", "--source", "the clinic's own phone"])
        .assert()
        .success();
    clinic
        .at(now)
        .args(["send", "campaign.toml", "--to", CLINIC_PHONE, "--yes"])
        .assert()
        .code(0);
    let status = clinic
        .at(now)
        .args(["--json", "status", "campaign.toml"])
        .assert()
        .code(0);
    let status = String::from_utf8_lossy(&status.get_output().stdout).into_owned();
    let accepted_before = before.map_or(0, |b| b["journal"]["accepted"].as_u64().unwrap_or(0));
    assert!(
        status.contains(&format!("\"accepted\":{accepted_before}")),
        "the test send is not in the totals ({accepted_before} accepted before):\n{status}"
    );
}

/// Day 3: the run is killed with SIGKILL while requests are on the wire.
fn kill_mid_send(clinic: &Clinic, now: &str) {
    clinic.server.set_latency(Duration::from_millis(250));
    let before = clinic.server.count();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wacampaign"))
        .current_dir(clinic.dir())
        .env("NO_COLOR", "1")
        .env("WHATSAPP_TOKEN", "EAAGtest0token0for0the0mock")
        .env("WACAMPAIGN_NOW", now)
        .env("WACAMPAIGN_RATE", "8")
        .env_remove("WACAMPAIGN_DB")
        .env_remove("WACAMPAIGN_CONCURRENCY")
        .args(["--color", "never", "--db"])
        .arg(clinic.db())
        .args(["send", "campaign.toml", "--yes"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the day-3 run");
    assert!(
        clinic.server.wait_for(before + 5, Duration::from_secs(60)),
        "the day-3 run started sending"
    );
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("reaping the killed run");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    let sent = clinic.server.count() - before;
    assert!(sent < FILLERS, "killed mid-run, after {sent} requests");
    clinic.server.set_latency(Duration::ZERO);
    // Give answers still in the server's hands time to be written and logged.
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_millis(300) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Day 6: cron starts the job in the home directory, without the database.
fn wrong_directory(clinic: &Clinic, now: &str) {
    let home = tempfile::tempdir().expect("a home directory");
    let before = clinic.server.count();
    let out = assert_cmd::Command::cargo_bin("wacampaign")
        .expect("the binary")
        .current_dir(home.path())
        .env("NO_COLOR", "1")
        .env("WHATSAPP_TOKEN", "EAAGtest0token0for0the0mock")
        .env("WACAMPAIGN_NOW", now)
        .env_remove("WACAMPAIGN_DB")
        .arg("--json")
        .arg("send")
        .arg(clinic.fx.path("campaign.toml"))
        .arg("--yes")
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("WACAMPAIGN_DB"), "{stderr}");
    assert!(!home.path().join("wacampaign.db").exists());
    assert_eq!(clinic.server.count(), before, "nothing sent");
}

// ---- The same clinic across a DST change, with quiet hours and a cap ----
//
// Wednesday 28 October to Tuesday 3 November 2026. The clinic's patients live in
// three zones of Mexico: Mexico City (UTC-6 all year), Cancún (UTC-5 all year) and
// Tijuana, which keeps US daylight saving time: UTC-7 until 02:00 on Sunday
// 1 November, UTC-8 after. Cron runs the reminders at 14:30, 15:30 and 16:30 UTC;
// the campaign keeps quiet hours from 20:00 to 08:00 in each patient's own zone and
// an all-categories cap of 2 messages per 7 days, shared with a marketing campaign
// the shop sends from the same business number on the first morning, at the same
// time as the clinic's first run.

/// Quiet from 20:00 to 08:00 local time.
const QUIET: (u32, u32) = (20, 8);
const RUNS_UTC: [&str; 3] = ["14:30:00", "15:30:00", "16:30:00"];
const RATE: usize = 10;

/// Day `day` (1 = Wednesday 28 October) as a date.
fn date_of(day: u32) -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2026, 10, 27).unwrap() + chrono::Duration::days(day.into())
}

fn zone_of(to: &str) -> chrono_tz::Tz {
    if to.starts_with("+52664") {
        chrono_tz::America::Tijuana
    } else if to.starts_with("+52998") {
        chrono_tz::America::Cancun
    } else {
        chrono_tz::America::Mexico_City
    }
}

const ZONED: [(&str, &str, &str, u32, &str); 8] = [
    // (appointment, name, number, day, local time)
    ("ANA-1", "Ana", "+52 55 1111 0001", 3, "10:00"),
    // Ana's second reminder finds her at the cap (the shop's message and ANA-1):
    // deferred past her appointment, it expires unsent.
    ("ANA-2", "Ana", "+52 55 1111 0001", 6, "10:00"),
    // First listed on Wednesday: 07:30 in Tijuana at 14:30 UTC, 08:30 at 15:30.
    ("TITO-1", "Tito", "+52 664 111 0002", 3, "11:00"),
    // First listed on Sunday, after the change: 06:30, 07:30, then 08:30 at 16:30 UTC.
    ("TINA-1", "Tina", "+52 664 111 0003", 7, "11:00"),
    // 09:30 in Cancún at 14:30 UTC.
    ("CARO-1", "Caro", "+52 998 111 0004", 4, "12:00"),
    // Every send answers 131049 (Meta's per-user limit): deferred a day each time,
    // it passes its 08:00 appointment and expires.
    ("BETO-1", "Beto", "+52 55 1111 0005", 6, "08:00"),
    ("DANI-1", "Dani", "+52 55 1111 0006", 2, "09:30"),
    ("EVA-1", "Eva", "+52 998 111 0007", 8, "16:00"),
];
const BETO_E164: &str = "+525511110005";
/// Appointments on day 5, listed from day 3: the run killed on day 3 is busy.
const ZONED_FILLERS: usize = 24;

fn zoned_appointments() -> Vec<(String, String, String, u32, String)> {
    let mut all: Vec<_> = ZONED
        .iter()
        .map(|(id, name, phone, day, time)| {
            (
                id.to_string(),
                name.to_string(),
                phone.to_string(),
                *day,
                time.to_string(),
            )
        })
        .collect();
    for i in 0..ZONED_FILLERS {
        all.push((
            format!("F-{i}"),
            "Paciente".into(),
            format!("+52 55 2000 {i:04}"),
            5,
            "13:00".into(),
        ));
    }
    all
}

fn zoned_export(day: u32, all: &[(String, String, String, u32, String)]) -> String {
    let mut rows: Vec<String> = all
        .iter()
        .filter(|a| a.3 == day + 1 || a.3 == day + 2)
        .map(|(id, name, phone, d, time)| format!("{id},{name},{phone},{},{time}\n", date_of(*d)))
        .collect();
    if day.is_multiple_of(2) {
        rows.reverse();
    }
    rows.concat()
}

/// The shop's marketing campaign: same business number, Ana among its customers.
fn write_promo(clinic: &Clinic) {
    let mut customers = String::from("name,phone\nAna,+52 55 1111 0001\n");
    for i in 0..19 {
        customers.push_str(&format!("Cliente,+52 55 3000 {i:04}\n"));
    }
    clinic.fx.write("customers.csv", customers);
    clinic.fx.write(
        "promo.toml",
        format!(
            r#"[campaign]
id = "shop-promo"
category = "marketing"
contacts = "customers.csv"
phone_column = "phone"
default_region = "MX"

[template]
name = "weekend_sale"
language = "es_MX"
body = "Hola {{{{1}}}}, este fin de semana 20% en toda la tienda."

[template.variables]
"1" = {{ column = "name" }}

[provider]
kind = "cloud_api"
phone_number_id = "106540352242922"
base_url = "{}"
timeout_ms = 5000

[sending]
rate_per_second = {RATE}
"#,
            clinic.server.base_url()
        ),
    );
    crate::support::opt_in_everyone(&clinic.fx.path("promo.toml"), &clinic.db());
}

/// The campaign id in a request's callback data (`wacampaign:CAMPAIGN:…`).
fn campaign_of(r: &crate::mock_server::Received) -> String {
    r.body["biz_opaque_callback_data"]
        .as_str()
        .unwrap_or_default()
        .split(':')
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

fn journal_rows(clinic: &Clinic) -> BTreeMap<String, (String, Option<String>)> {
    let conn = rusqlite::Connection::open(clinic.db()).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT occurrence, state, error_detail FROM journal
             WHERE campaign_id = 'clinic-reminders' AND occurrence NOT GLOB 'test:*'",
        )
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn a_week_across_a_dst_change_in_three_zones_keeps_quiet_hours_and_a_shared_cap() {
    use chrono::Timelike;
    let clinic = Clinic::with_campaign(REMINDERS, RATE as u32, 4);
    // The reminders keep quiet hours and share an all-categories cap.
    let text = std::fs::read_to_string(clinic.fx.path("campaign.toml")).unwrap();
    clinic.fx.write(
        "campaign.toml",
        format!(
            "{text}quiet_hours = \"{:02}:00-{:02}:00\"\nfrequency_cap = {{ all = \"2 per 7d\" }}\n",
            QUIET.0, QUIET.1
        ),
    );
    clinic.server.set_rule(|r| {
        if r.to == BETO_E164 {
            Reply::graph(
                131049,
                "This message was not delivered to maintain healthy ecosystem engagement.",
            )
        } else {
            Reply::Accept
        }
    });
    write_promo(&clinic);
    let all = zoned_appointments();

    // Which run sent each request: (requests before it, instant of the run).
    let mut runs: Vec<(usize, chrono::DateTime<chrono::Utc>)> = Vec::new();
    let mut in_doubt = 0;
    let mut last: Option<Value> = None;
    let mut ana_capped = false;
    for day in 1..=7u32 {
        clinic.appointments(&zoned_export(day, &all));
        for (i, time) in RUNS_UTC.iter().enumerate() {
            let now = format!("{}T{time}Z", date_of(day));
            let instant: chrono::DateTime<chrono::Utc> = now.parse().unwrap();
            runs.push((clinic.server.count(), instant));
            match (day, i) {
                (1, 0) => {
                    // Two runs from one number at once: the shop's, and the clinic's.
                    let promo = promo_process(&clinic, &now);
                    last = Some(clinic.send(&now));
                    let out = promo.wait_with_output().expect("the shop's run");
                    assert_eq!(
                        out.status.code(),
                        Some(0),
                        "{}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    continue;
                }
                (2, 0) => test_send(&clinic, &now, last.as_ref()),
                (3, 0) => {
                    kill_mid_send(&clinic, &now);
                    runs.push((clinic.server.count(), instant));
                }
                (6, 0) => wrong_directory(&clinic, &now),
                _ => {}
            }
            let summary = clinic.send(&now);
            in_doubt = summary["journal"]["in_doubt"].as_u64().unwrap_or_default();
            last = Some(summary);
        }
        if let Some((state, detail)) = journal_rows(&clinic).get("ANA-2")
            && state == "deferred"
            && detail
                .as_deref()
                .is_some_and(|d| d.contains("frequency cap"))
        {
            ana_capped = true;
        }
    }
    let log = clinic.server.log();
    let run_of = |n: usize| {
        runs.iter()
            .rev()
            // Requests are numbered from 1: a run's first is one past the count
            // before it.
            .find(|(before, _)| n > *before)
            .map(|(_, at)| *at)
            .expect("a request after the first run")
    };

    // Never inside quiet hours in the recipient's own zone.
    for r in log.iter().filter(|r| campaign_of(r) == "clinic-reminders") {
        let local = run_of(r.n).with_timezone(&zone_of(&r.to));
        let hour = local.hour();
        assert!(
            hour >= QUIET.1 && hour < QUIET.0,
            "{} was messaged at {local} in its zone",
            r.to
        );
    }
    // The DST change, seen from Tijuana: the same wall-clock morning is an hour
    // later in UTC after 1 November.
    let sent_at = |wanted: &str| -> Vec<chrono::DateTime<chrono::Utc>> {
        log.iter()
            .filter(|r| campaign_of(r) == "clinic-reminders" && occurrence(r) == wanted)
            .map(|r| run_of(r.n))
            .collect()
    };
    assert_eq!(
        sent_at("TITO-1"),
        vec![
            "2026-10-28T15:30:00Z"
                .parse::<chrono::DateTime<chrono::Utc>>()
                .unwrap()
        ],
        "08:30 PDT"
    );
    assert_eq!(
        sent_at("TINA-1"),
        vec![
            "2026-11-01T16:30:00Z"
                .parse::<chrono::DateTime<chrono::Utc>>()
                .unwrap()
        ],
        "08:30 PST"
    );
    assert_eq!(
        sent_at("CARO-1"),
        vec![
            "2026-10-29T14:30:00Z"
                .parse::<chrono::DateTime<chrono::Utc>>()
                .unwrap()
        ],
        "09:30 in Cancún"
    );

    // Each appointment at most once, and exactly once when it could be.
    let rows = journal_rows(&clinic);
    let mut never_reached = 0;
    for (id, _, phone, _, _) in &all {
        let n = sent_at(id).len();
        let state = rows.get(id).map(|(s, _)| s.as_str());
        match id.as_str() {
            "ANA-2" => {
                assert_eq!(n, 0, "Ana is at the cap");
                assert_eq!(state, Some("expired"));
            }
            "BETO-1" => {
                assert!((1..=2).contains(&n), "{id}: {n} requests");
                assert_eq!(state, Some("expired"));
            }
            _ if n == 0 => {
                never_reached += 1;
                assert_eq!(state, Some("in_doubt"), "{id} ({phone}) was never messaged");
            }
            _ => assert_eq!(n, 1, "{id} was messaged {n} times"),
        }
    }
    assert!(never_reached <= in_doubt as usize);
    assert!(ana_capped, "ANA-2 was deferred by the cap: {rows:?}");

    // Ana heard from the business twice in the week: the shop, and ANA-1.
    let to_ana = log
        .iter()
        .filter(|r| r.to == "+525511110001" && r.reply.accepts())
        .count();
    assert_eq!(to_ana, 2);

    // One number, one pace: the shop's run and the clinic's never add up to more
    // than the number's rate in any second.
    let first_morning: Vec<_> = log
        .iter()
        .filter(|r| r.n <= runs[1].0)
        .map(|r| r.at)
        .collect();
    assert!(
        first_morning.len() >= 20,
        "both runs sent on the first morning"
    );
    for (i, start) in first_morning.iter().enumerate() {
        let in_second = first_morning[i..]
            .iter()
            .take_while(|t| **t < *start + Duration::from_secs(1))
            .count();
        assert!(
            in_second <= RATE,
            "{in_second} requests in the second from {start:?}"
        );
    }
}

/// The shop's marketing run, started in the background.
fn promo_process(clinic: &Clinic, now: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_wacampaign"))
        .current_dir(clinic.dir())
        .env("NO_COLOR", "1")
        .env("WHATSAPP_TOKEN", "EAAGtest0token0for0the0mock")
        .env("WACAMPAIGN_NOW", now)
        .env(
            crate::support::NO_MESSAGING_LIMIT.0,
            crate::support::NO_MESSAGING_LIMIT.1,
        )
        .env_remove("WACAMPAIGN_DB")
        .env_remove("WACAMPAIGN_RATE")
        .args(["--color", "never", "--db"])
        .arg(clinic.db())
        .args(["send", "promo.toml", "--yes"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the shop's run")
}
