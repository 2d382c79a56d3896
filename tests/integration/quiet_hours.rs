//! Quiet hours in each contact's time zone: contacts inside them are deferred, not
//! sent and not failed, sent by a later run once their window opens, and checked
//! again at the moment of sending.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::support::{Fixture, opt_in_everyone, stdout, wacampaign_in};

/// A utility campaign sent through the simulator, with `extra` lines appended to
/// `[campaign]` and `[sending]`.
fn campaign(id: &str, campaign_extra: &str, sending: &str, latency_ms: u64) -> String {
    format!(
        r#"[campaign]
id = "{id}"
category = "utility"
contacts = "contacts.csv"
phone_column = "phone"
default_region = "MX"
{campaign_extra}

[template]
name = "appointment_reminder"
language = "es_MX"
body = "Hola {{{{1}}}}, tu cita es mañana."

[template.variables]
"1" = {{ column = "name" }}

[provider]
kind = "simulator"
latency_ms = {latency_ms}
undeliverable_rate = 0.0
opt_out_rate = 0.0
throttle_burst = 0

[sending]
{sending}
"#
    )
}

struct Run {
    _fx: Fixture,
    dir: PathBuf,
}

impl Run {
    fn new(campaign_text: &str, contacts: &str) -> Run {
        let fx = Fixture::new();
        fx.write("contacts.csv", contacts);
        let dir = fx
            .write("campaign.toml", campaign_text)
            .parent()
            .expect("the fixture's directory")
            .to_path_buf();
        opt_in_everyone(&dir.join("campaign.toml"), &dir.join("wacampaign.db"));
        Run { _fx: fx, dir }
    }

    fn db(&self) -> PathBuf {
        self.dir.join("wacampaign.db")
    }

    fn wacampaign(&self, now: &str) -> assert_cmd::Command {
        let mut cmd = wacampaign_in(&self.dir, &self.db());
        cmd.env("WACAMPAIGN_NOW", now)
            .env_remove("WACAMPAIGN_RATE")
            .env_remove("WACAMPAIGN_CONCURRENCY")
            .timeout(Duration::from_secs(120));
        cmd
    }

    fn send(&self, now: &str) -> assert_cmd::assert::Assert {
        self.wacampaign(now)
            .args(["send", "campaign.toml", "--yes"])
            .assert()
            .code(0)
    }
}

/// Each phone's (state, retry_at, detail) in the journal.
pub fn journal(db: &Path) -> HashMap<String, (String, Option<String>, Option<String>)> {
    let conn = rusqlite::Connection::open(db).expect("opening the database");
    let mut stmt = conn
        .prepare("SELECT phone, state, retry_at, error_detail FROM journal")
        .expect("a journal");
    stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?, r.get(3)?)))
    })
    .expect("reading the journal")
    .map(|r| r.expect("a journal row"))
    .collect()
}

const THREE_ZONES: &str = "\
name,phone,tz
CDMX,+52 55 1234 5678,
Tijuana,+52 664 123 4567,
Cancun,+52 998 123 4567,
Monterrey,+52 81 1234 5678,America/Monterrey
";

#[test]
fn contacts_in_three_zones_of_mexico_are_each_sent_when_their_morning_comes() {
    let run = Run::new(
        &campaign(
            "three-zones",
            "timezone = \"America/Mexico_City\"\ntimezone_column = \"tz\"",
            "quiet_hours = \"21:00-09:00\"",
            1,
        ),
        THREE_ZONES,
    );
    // 14:30 UTC on Friday 27 Nov: 09:30 in Cancún (UTC-5), 08:30 in Mexico City
    // and Monterrey (UTC-6), 06:30 in Tijuana (UTC-8).
    let check = run
        .wacampaign("2026-11-27T14:30:00Z")
        .args(["--json", "check", "campaign.toml"])
        .assert()
        .code(0);
    let data: Value = serde_json::from_str(stdout(&check).trim()).unwrap();
    assert_eq!(data["data"]["eligible"], 4);
    assert_eq!(data["data"]["quiet_hours"], 3, "{data}");

    let sent = run.send("2026-11-27T14:30:00Z");
    let output = sent.get_output();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        said.contains(
            "4 messages: 1 now, 3 deferred (quiet hours, a cap, a retry), each sent \
             when due"
        ),
        "the summary does not promise now what waits for the morning: {said}"
    );
    let j = journal(&run.db());
    assert_eq!(j["+529981234567"].0, "accepted");
    assert_eq!(
        j["+525512345678"],
        (
            "deferred".into(),
            Some("2026-11-27T15:00:00Z".into()),
            Some("quiet hours until 09:00 America/Mexico_City".into())
        )
    );
    assert_eq!(
        j["+528112345678"],
        (
            "deferred".into(),
            Some("2026-11-27T15:00:00Z".into()),
            Some("quiet hours until 09:00 America/Monterrey".into())
        ),
        "the column's zone wins over the number's"
    );
    assert_eq!(
        j["+526641234567"],
        (
            "deferred".into(),
            Some("2026-11-27T17:00:00Z".into()),
            Some("quiet hours until 09:00 America/Tijuana".into())
        )
    );

    // 09:05 in Mexico City: it and Monterrey go; Tijuana still sleeps.
    run.send("2026-11-27T15:05:00Z");
    let j = journal(&run.db());
    assert_eq!(j["+525512345678"].0, "accepted");
    assert_eq!(j["+528112345678"].0, "accepted");
    assert_eq!(j["+526641234567"].0, "deferred");

    run.send("2026-11-27T17:00:30Z");
    let j = journal(&run.db());
    assert!(j.values().all(|(state, _, _)| state == "accepted"), "{j:?}");

    // Finished: another run sends nothing more.
    run.send("2026-11-27T18:00:00Z");
    assert_eq!(journal(&run.db()).len(), 4);
}

#[test]
fn a_dst_change_moves_the_morning_in_utc() {
    // Tijuana keeps US daylight saving time: on Saturday 7 March 2026 it is UTC-8,
    // from Sunday 8 March UTC-7. 16:30 UTC is 08:30 on the 7th (quiet) and 09:30
    // on the 8th (open).
    let contacts = "name,phone,tz\nTijuana,+52 664 123 4567,\n";
    let saturday = Run::new(
        &campaign("dst-saturday", "", "quiet_hours = \"21:00-09:00\"", 1),
        contacts,
    );
    saturday.send("2026-03-07T16:30:00Z");
    assert_eq!(
        journal(&saturday.db())["+526641234567"],
        (
            "deferred".into(),
            Some("2026-03-07T17:00:00Z".into()),
            Some("quiet hours until 09:00 America/Tijuana".into())
        )
    );
    let sunday = Run::new(
        &campaign("dst-sunday", "", "quiet_hours = \"21:00-09:00\"", 1),
        contacts,
    );
    sunday.send("2026-03-08T16:30:00Z");
    assert_eq!(journal(&sunday.db())["+526641234567"].0, "accepted");
    // Saturday night (21:30 on the 7th, UTC-8) waits until 09:00 on the 8th, which
    // is 16:00 UTC after the change, not 17:00.
    let night = Run::new(
        &campaign("dst-night", "", "quiet_hours = \"21:00-09:00\"", 1),
        contacts,
    );
    night.send("2026-03-08T05:30:00Z");
    assert_eq!(
        journal(&night.db())["+526641234567"].1.as_deref(),
        Some("2026-03-08T16:00:00Z")
    );
}

#[test]
fn a_long_run_that_crosses_21_00_stops_messaging_at_21_00() {
    // 30 contacts in Mexico City at 2 a second: about 15 s of sending, started at
    // 20:59:55 local (02:59:55 UTC), so about 10 go out before 21:00.
    let mut contacts = String::from("name,phone,tz\n");
    for i in 0..30 {
        contacts.push_str(&format!("C{i},+52 55 3000 {:04},\n", i));
    }
    let run = Run::new(
        &campaign(
            "crossing",
            "",
            "quiet_hours = \"21:00-09:00\"\nrate_per_second = 2\nconcurrency = 1",
            20,
        ),
        &contacts,
    );
    run.send("2026-11-28T02:59:55Z");
    let conn = rusqlite::Connection::open(run.db()).unwrap();
    let (accepted, last_intent): (i64, Option<String>) = conn
        .query_row(
            "SELECT count(*), max(intent_at) FROM journal WHERE state = 'accepted'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let deferred: i64 = conn
        .query_row(
            "SELECT count(*) FROM journal WHERE state = 'deferred'
             AND retry_at = '2026-11-28T15:00:00Z'
             AND error_detail = 'quiet hours until 09:00 America/Mexico_City'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(accepted >= 3, "some went out before 21:00: {accepted}");
    assert!(deferred >= 10, "the rest wait for the morning: {deferred}");
    assert_eq!(accepted + deferred, 30);
    assert!(
        last_intent.as_deref() < Some("2026-11-28T03:00:00Z"),
        "nothing left after 21:00 local: {last_intent:?}"
    );
}

#[test]
fn allowed_days_hold_a_weekend_until_monday() {
    let run = Run::new(
        &campaign(
            "weekdays",
            "",
            "quiet_hours = \"21:00-09:00\"\ndays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"]",
            1,
        ),
        "name,phone,tz\nCDMX,+52 55 1234 5678,\n",
    );
    // Saturday 28 Nov, noon in Mexico City.
    run.send("2026-11-28T18:00:00Z");
    assert_eq!(
        journal(&run.db())["+525512345678"],
        (
            "deferred".into(),
            Some("2026-11-30T15:00:00Z".into()),
            Some("quiet hours until Mon 2026-11-30 09:00 America/Mexico_City".into())
        )
    );
}

#[test]
fn bad_quiet_hours_and_zones_are_located_campaign_errors() {
    for (campaign_extra, sending, expected) in [
        (
            "",
            "quiet_hours = \"25:00-09:00\"",
            "sending.quiet_hours: `25:00-09:00` has no time 25:00",
        ),
        (
            "",
            "quiet_hours = \"21:00-21:00\"",
            "`21:00-21:00` is empty (it starts when it ends)",
        ),
        (
            "timezone = \"America/Gotham\"",
            "",
            "campaign.timezone: `America/Gotham` is not a time zone",
        ),
        (
            "",
            "days = [\"mon\", \"funday\"]",
            "sending.days: `funday` is not a day",
        ),
    ] {
        let run = Run::new(
            &campaign("bad", campaign_extra, sending, 1),
            "name,phone,tz\nA,+52 55 1234 5678,\n",
        );
        let assert = run
            .wacampaign("2026-11-28T18:00:00Z")
            .args(["check", "campaign.toml"])
            .assert()
            .code(2);
        let err = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
        assert!(
            err.contains("campaign.toml:") && err.contains(expected),
            "{expected}: {err}"
        );
    }
    // A zone in the contacts file that is not one excludes that row, with the reason.
    let run = Run::new(
        &campaign(
            "bad-cell",
            "timezone_column = \"tz\"",
            "quiet_hours = \"21:00-09:00\"",
            1,
        ),
        "name,phone,tz\nA,+52 55 1234 5678,Mars/Olympus\nB,+52 55 1234 5679,\n",
    );
    let check = run
        .wacampaign("2026-11-28T18:00:00Z")
        .args(["--json", "check", "campaign.toml"])
        .assert()
        .code(0);
    let data: Value = serde_json::from_str(stdout(&check).trim()).unwrap();
    assert_eq!(data["data"]["eligible"], 1);
    assert_eq!(data["data"]["excluded_by_reason"]["invalid_value"], 1);
}
