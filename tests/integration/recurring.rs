//! Recurring campaigns: occurrences and send-by times, run day after day with
//! `WACAMPAIGN_NOW` against a mock Cloud API on 127.0.0.1. The server's log is the
//! oracle: each message carries its journal key (campaign, person, occurrence) as
//! its callback data, so the test sees exactly which occurrence went to whom.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::mock_server::{MockServer, Received};
use crate::support::{Fixture, opt_in_everyone, wacampaign_in};

/// A clinic's reminder: one message per appointment, useless after it.
pub const REMINDERS: &str = r#"[campaign]
id = "clinic-reminders"
category = "utility"
contacts = "appointments.csv"
phone_column = "phone"
default_region = "MX"
occurrence = "{{appointment_id}}"
send_by = "{{date}} {{time}}"
timezone = "America/Mexico_City"

[template]
name = "appointment_reminder"
language = "es_MX"
body = "Hola {{1}}, te recordamos tu cita del {{2}} a las {{3}}."

[template.variables]
"1" = { column = "name" }
"2" = { column = "date" }
"3" = { column = "time" }

[provider]
kind = "cloud_api"
phone_number_id = "106540352242922"
"#;

pub const HEADER: &str = "appointment_id,name,phone,date,time\n";

/// A reminder campaign in a scratch directory, sending to a mock server.
pub struct Clinic {
    pub fx: Fixture,
    pub server: MockServer,
}

impl Clinic {
    pub fn new() -> Clinic {
        Clinic::with_campaign(REMINDERS, 1000, 8)
    }

    pub fn with_campaign(text: &str, rate: u32, concurrency: usize) -> Clinic {
        let server = MockServer::start();
        let fx = Fixture::new();
        fx.write(
            "campaign.toml",
            format!(
                "{text}base_url = \"{}\"\ntimeout_ms = 5000\n\n[sending]\nrate_per_second = {rate}\nconcurrency = {concurrency}\n",
                server.base_url()
            ),
        );
        Clinic { fx, server }
    }

    pub fn dir(&self) -> PathBuf {
        self.fx.path("")
    }

    pub fn db(&self) -> PathBuf {
        self.fx.path("wacampaign.db")
    }

    /// Today's export of appointments, everyone in it opted in.
    pub fn appointments(&self, rows: &str) {
        self.fx.write("appointments.csv", format!("{HEADER}{rows}"));
        opt_in_everyone(&self.fx.path("campaign.toml"), &self.db());
    }

    /// The binary at `now`, with the token the campaign reads.
    pub fn at(&self, now: &str) -> assert_cmd::Command {
        let mut cmd = wacampaign_in(&self.dir(), &self.db());
        cmd.env("WHATSAPP_TOKEN", "EAAGtest0token0for0the0mock")
            .env("WACAMPAIGN_NOW", now)
            .env_remove("WACAMPAIGN_RATE")
            .env_remove("WACAMPAIGN_CONCURRENCY")
            .timeout(Duration::from_secs(120));
        cmd
    }

    /// `send campaign.toml --yes --json` at `now`: its summary.
    pub fn send(&self, now: &str) -> Value {
        let out = self
            .at(now)
            .args(["--json", "send", "campaign.toml", "--yes"])
            .assert();
        let code = out.get_output().status.code();
        assert!(
            matches!(code, Some(0 | 1)),
            "send at {now} exited {code:?}: {}",
            String::from_utf8_lossy(&out.get_output().stderr)
        );
        summary(&String::from_utf8_lossy(&out.get_output().stdout))
    }

    /// Messages the server accepted, by (to, occurrence), with how often.
    pub fn accepted(&self) -> BTreeMap<(String, String), usize> {
        let mut by_key = BTreeMap::new();
        for r in self.server.log().iter().filter(|r| r.reply.accepts()) {
            *by_key.entry((r.to.clone(), occurrence(r))).or_default() += 1;
        }
        by_key
    }
}

/// The `send_summary` object of a `--json` run's stdout.
pub fn summary(stdout: &str) -> Value {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == "send_summary")
        .map(|v| v["data"].clone())
        .unwrap_or_else(|| panic!("no send_summary in:\n{stdout}"))
}

/// The occurrence a request carried in its callback data.
pub fn occurrence(r: &Received) -> String {
    let data = r.body["biz_opaque_callback_data"]
        .as_str()
        .unwrap_or_default();
    // wacampaign:CAMPAIGN:PERSON[:OCCURRENCE]
    data.splitn(4, ':').nth(3).unwrap_or_default().to_owned()
}

fn key(to: &str, occurrence: &str) -> (String, String) {
    (to.to_owned(), occurrence.to_owned())
}

#[test]
fn a_daily_file_sends_each_occurrence_once_however_the_row_moves_or_is_spelt() {
    let clinic = Clinic::new();
    clinic.appointments(
        "A1,Ana,+52 55 1111 0001,2026-12-02,10:00\n\
         A2,Beto,+52 55 1111 0002,2026-12-02,11:00\n",
    );
    let day1 = clinic.send("2026-12-01T15:00:00Z");
    assert_eq!(day1["journal"]["accepted"], 2, "{day1}");
    assert_eq!(day1["already_served"], 0);
    // Day 2: Ana's first appointment is still in the export, on another line and
    // with her number spelt the old Mexican way; she has a second appointment too.
    clinic.appointments(
        "A3,Ana,+52 55 1111 0001,2026-12-03,09:00\n\
         A4,Carla,+52 55 1111 0003,2026-12-03,12:00\n\
         A1,Ana,+52 1 55 1111 0001,2026-12-02,10:00\n",
    );
    let day2 = clinic.send("2026-12-02T09:00:00Z");
    assert_eq!(day2["already_served"], 1, "{day2}");
    assert_eq!(day2["this_run"]["accepted"], 2, "{day2}");
    assert_eq!(day2["journal"]["accepted"], 4, "totals count every day");
    // Day 3, the same file again: nothing left to send.
    let day3 = clinic.send("2026-12-02T09:30:00Z");
    assert_eq!(day3["to_send"], 0, "{day3}");
    assert_eq!(day3["already_served"], 3);
    let ana = "+525511110001";
    let expected: BTreeMap<_, _> = [
        (key(ana, "A1"), 1),
        (key("+525511110002", "A2"), 1),
        (key(ana, "A3"), 1),
        (key("+525511110003", "A4"), 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(clinic.accepted(), expected);
}

#[test]
fn a_row_without_an_occurrence_or_send_by_is_left_out_alone() {
    let clinic = Clinic::new();
    clinic.appointments(
        "A1,Ana,+52 55 1111 0001,2026-12-02,10:00\n\
         ,Beto,+52 55 1111 0002,2026-12-02,11:00\n\
         A3,Carla,+52 55 1111 0003,2026-13-02,12:00\n\
         A1,Ana again,+52 55 1111 0001,2026-12-02,10:00\n\
         A5,Ana,+52 55 1111 0001,2026-12-04,10:00\n",
    );
    let out = clinic
        .at("2026-12-01T15:00:00Z")
        .args(["--json", "check", "campaign.toml"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let report: Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["data"]["excluded_by_reason"].is_object())
        .unwrap_or_else(|| panic!("no check report in:\n{text}"))["data"]
        .clone();
    let reasons = &report["excluded_by_reason"];
    assert_eq!(reasons["no_occurrence"], 1, "{report}");
    assert_eq!(reasons["invalid_send_by"], 1, "{report}");
    assert_eq!(
        reasons["duplicate"], 1,
        "the same person, the same occurrence"
    );
    assert_eq!(report["eligible"], 2, "Ana's two appointments: {report}");
    clinic
        .at("2026-12-01T15:00:00Z")
        .args(["check", "campaign.toml", "--excluded", "excluded.csv"])
        .assert()
        .success();
    let shown = clinic.fx.read("excluded.csv");
    assert!(
        shown.contains("column `appointment_id` is empty"),
        "the reason names the column:\n{shown}"
    );
    assert!(shown.contains("2026-13-02 12:00"), "{shown}");
}

#[test]
fn a_reminder_deferred_past_its_send_by_expires_unsent() {
    let clinic = Clinic::new();
    clinic.server.set_rule(|r| {
        if r.to == "+525511110001" {
            crate::mock_server::Reply::graph(131049, "per-user marketing limit")
        } else {
            crate::mock_server::Reply::Accept
        }
    });
    clinic.appointments(
        "A1,Ana,+52 55 1111 0001,2026-12-02,10:00\n\
         A2,Beto,+52 55 1111 0002,2026-12-02,11:00\n",
    );
    let day1 = clinic.send("2026-12-01T15:00:00Z");
    assert_eq!(day1["journal"]["deferred"], 1, "{day1}");
    // Day 2, after Ana's appointment (10:00 in Mexico City is 16:00 UTC); the
    // export lists only later appointments, yet her reminder expires.
    clinic.appointments("A3,Carla,+52 55 1111 0003,2026-12-03,09:00\n");
    let day2 = clinic.send("2026-12-02T17:00:00Z");
    assert_eq!(day2["expired_now"], 1, "{day2}");
    assert_eq!(day2["journal"]["expired"], 1, "{day2}");
    assert_eq!(day2["journal"]["deferred"], 0, "{day2}");
    let to_ana = clinic
        .server
        .log()
        .iter()
        .filter(|r| r.to == "+525511110001")
        .count();
    assert_eq!(to_ana, 1, "tried once, deferred, never again");
}

/// `check` of a one-appointment export under `campaign`: refused (exit 2); its stderr.
fn check_refuses(campaign: &str) -> String {
    let clinic = Clinic::with_campaign(campaign, 10, 2);
    clinic.appointments("A1,Ana,+52 55 1111 0001,2026-12-02,10:00\n");
    let out = clinic
        .at("2026-12-01T15:00:00Z")
        .args(["check", "campaign.toml"])
        .assert()
        .code(2);
    String::from_utf8_lossy(&out.get_output().stderr).into_owned()
}

#[test]
fn send_by_needs_a_time_zone_and_a_known_one() {
    let stderr = check_refuses(&REMINDERS.replace("timezone = \"America/Mexico_City\"\n", ""));
    assert!(
        stderr.contains("campaign.toml:8:") && stderr.contains("set campaign.timezone"),
        "{stderr}"
    );
    let stderr = check_refuses(&REMINDERS.replace("America/Mexico_City", "America/Monterey"));
    assert!(
        stderr.contains("campaign.toml:9:")
            && stderr.contains("`America/Monterey` is not a time zone"),
        "{stderr}"
    );
}

#[test]
fn an_occurrence_rule_that_names_no_column_is_a_located_error() {
    for (rule, expected) in [
        ("occurrence = 5", "a column name, a template over columns"),
        ("occurrence = \"{{1}}\"", "names no column"),
        (
            "occurrence = \"{{appt}}\"",
            "no column `appt` (campaign.occurrence)",
        ),
    ] {
        let stderr = check_refuses(&REMINDERS.replace("occurrence = \"{{appointment_id}}\"", rule));
        assert!(stderr.contains(expected), "{rule}: {stderr}");
    }
    // A list of columns is one occurrence per distinct combination.
    let clinic = Clinic::with_campaign(
        &REMINDERS.replace(
            "occurrence = \"{{appointment_id}}\"",
            "occurrence = [\"date\", \"time\"]",
        ),
        1000,
        8,
    );
    clinic.appointments(
        "A1,Ana,+52 55 1111 0001,2026-12-02,10:00\n\
         A2,Ana,+52 55 1111 0001,2026-12-02,10:00\n\
         A3,Ana,+52 55 1111 0001,2026-12-02,12:00\n",
    );
    let sent = clinic.send("2026-12-01T15:00:00Z");
    assert_eq!(sent["this_run"]["accepted"], 2, "{sent}");
    assert_eq!(sent["excluded_by_reason"]["duplicate"], 1, "{sent}");
    assert!(
        clinic
            .accepted()
            .contains_key(&key("+525511110001", "2026-12-02:12:00"))
    );
}
