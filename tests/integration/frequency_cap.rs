//! Frequency caps across campaigns: messages accepted for a person in any campaign
//! of the database count, by the person's identity; contacts at a cap are deferred
//! until the date they become eligible.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::quiet_hours::journal;
use crate::support::{Fixture, opt_in_everyone, stdout, wacampaign_in};

fn campaign(id: &str, category: &str, contacts: &str, sending: &str) -> String {
    format!(
        r#"[campaign]
id = "{id}"
category = "{category}"
contacts = "{contacts}"
phone_column = "phone"
default_region = "MX"

[template]
name = "aviso"
language = "es_MX"
body = "Hola {{{{1}}}}, tenemos noticias."

[template.variables]
"1" = {{ column = "name" }}

[provider]
kind = "simulator"
latency_ms = 1
undeliverable_rate = 0.0
opt_out_rate = 0.0
throttle_burst = 0

[sending]
{sending}
"#
    )
}

/// Several campaign files over one database.
struct Shop {
    _fx: Fixture,
    dir: PathBuf,
}

impl Shop {
    fn new() -> Shop {
        let fx = Fixture::new();
        let dir = fx
            .write("placeholder", "")
            .parent()
            .expect("a directory")
            .to_path_buf();
        Shop { _fx: fx, dir }
    }

    fn add(&self, file: &str, text: &str, contacts_file: &str, contacts: &str) {
        std::fs::write(self.dir.join(contacts_file), contacts).unwrap();
        std::fs::write(self.dir.join(file), text).unwrap();
        opt_in_everyone(&self.dir.join(file), &self.dir.join("wacampaign.db"));
    }

    fn cmd(&self, now: &str) -> assert_cmd::Command {
        let mut cmd = wacampaign_in(&self.dir, &self.dir.join("wacampaign.db"));
        cmd.env("WACAMPAIGN_NOW", now)
            .env_remove("WACAMPAIGN_RATE")
            .timeout(Duration::from_secs(120));
        cmd
    }

    fn send(&self, file: &str, now: &str) {
        self.cmd(now).args(["send", file, "--yes"]).assert().code(0);
    }

    /// How many of the caps' three indexes (accepted by time and by person, in
    /// flight by person) exist: the first capped send builds them all.
    fn cap_indexes(&self) -> i64 {
        let conn = rusqlite::Connection::open(self.dir.join("wacampaign.db")).unwrap();
        conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index'
                 AND name IN ('journal_accepted_by_time', 'journal_accepted_by_person',
                     'journal_in_flight_by_person')",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
    }

    fn states(&self, campaign: &str) -> Vec<(String, String, Option<String>)> {
        let conn = rusqlite::Connection::open(self.dir.join("wacampaign.db")).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT phone, state, retry_at FROM journal WHERE campaign_id = ?1 ORDER BY phone",
            )
            .unwrap();
        stmt.query_map([campaign], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }
}

const PEOPLE: &str =
    "name,phone\nAna,+52 55 1111 0001\nBeto,+52 55 1111 0002\nCaro,+52 55 1111 0003\n";

#[test]
fn an_all_categories_cap_counts_a_marketing_campaigns_messages() {
    let shop = Shop::new();
    // Monday: a promotion to Ana and Beto.
    shop.add(
        "promo.toml",
        &campaign("promo", "marketing", "promo.csv", ""),
        "promo.csv",
        "name,phone\nAna,+52 55 1111 0001\nBeto,+52 55 1111 0002\n",
    );
    shop.send("promo.toml", "2026-11-23T16:00:00Z");
    // Tuesday: a service notice to Ana alone (spelt with the old mobile 1).
    shop.add(
        "notice.toml",
        &campaign("notice", "utility", "notice.csv", ""),
        "notice.csv",
        "name,phone\nAna,+52 1 55 1111 0001\n",
    );
    shop.send("notice.toml", "2026-11-24T16:00:00Z");
    assert_eq!(
        shop.cap_indexes(),
        0,
        "campaigns without a cap do not keep the caps' indexes"
    );

    // Friday: a reminder capped at 2 messages a week in every category. Ana had
    // two (the promotion and the notice): deferred until a week after the first.
    let reminder = campaign(
        "reminder",
        "utility",
        "people.csv",
        "frequency_cap = { all = \"2 per 7d\", marketing = \"1 per 7d\" }",
    );
    shop.add("reminder.toml", &reminder, "people.csv", PEOPLE);
    let check = shop
        .cmd("2026-11-27T16:00:00Z")
        .args(["--json", "check", "reminder.toml"])
        .assert()
        .code(0);
    let data: Value = serde_json::from_str(stdout(&check).trim()).unwrap();
    assert_eq!(data["data"]["eligible"], 3);
    assert_eq!(data["data"]["frequency_capped"], 1, "{data}");
    assert_eq!(
        shop.cap_indexes(),
        0,
        "check writes nothing: it read the journal without the caps' indexes"
    );

    shop.send("reminder.toml", "2026-11-27T16:00:00Z");
    assert_eq!(shop.cap_indexes(), 3, "the first capped send builds them");
    let states = shop.states("reminder");
    assert_eq!(states[0].0, "+525511110001");
    assert_eq!(states[0].1, "deferred");
    let ana_first = &shop.states("promo")[0];
    assert_eq!(ana_first.1, "accepted");
    let detail = journal(&shop.dir.join("wacampaign.db"))
        .into_iter()
        .filter(|(_, (state, _, _))| state == "deferred")
        .map(|(_, (_, _, detail))| detail.unwrap_or_default())
        .collect::<Vec<_>>();
    assert_eq!(detail.len(), 1);
    assert!(
        detail[0].starts_with(
            "frequency cap 2 per 7d (all categories) reached; eligible from 2026-11-30T16:00:0"
        ),
        "{detail:?}"
    );
    assert!(states[0].2.as_deref() >= Some("2026-11-30T16:00:00Z"));
    assert_eq!(states[1].1, "accepted", "Beto had one message");
    assert_eq!(states[2].1, "accepted", "Caro had none");

    // A marketing campaign's own cap counts marketing messages only: Beto had the
    // promotion, Caro only the reminder.
    shop.add(
        "promo2.toml",
        &campaign(
            "promo2",
            "marketing",
            "people.csv",
            "frequency_cap = { marketing = \"1 per 7d\" }",
        ),
        "people.csv",
        PEOPLE,
    );
    shop.send("promo2.toml", "2026-11-27T17:00:00Z");
    let states = shop.states("promo2");
    assert_eq!(
        states.iter().map(|s| s.1.as_str()).collect::<Vec<_>>(),
        ["deferred", "deferred", "accepted"]
    );

    // The next Monday afternoon, Ana is under the cap again: the reminder goes.
    shop.send("reminder.toml", "2026-11-30T16:05:00Z");
    assert!(shop.states("reminder").iter().all(|s| s.1 == "accepted"));
}

#[test]
fn caps_that_allow_nothing_are_campaign_errors() {
    for (cap, expected) in [
        (
            "{ marketing = \"0 per 7d\" }",
            "`0 per 7d` allows no message",
        ),
        ("{ all = \"2 per 0d\" }", "`2 per 0d` has an empty window"),
        ("{ all = \"2 weekly\" }", "`2 weekly` is not a cap"),
        ("{ promos = \"2 per 7d\" }", "`promos` is not a category"),
    ] {
        let shop = Shop::new();
        shop.add(
            "c.toml",
            &campaign("c", "marketing", "c.csv", &format!("frequency_cap = {cap}")),
            "c.csv",
            PEOPLE,
        );
        let assert = shop
            .cmd("2026-11-27T16:00:00Z")
            .args(["check", "c.toml"])
            .assert()
            .code(2);
        let err = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
        assert!(
            err.contains("c.toml:") && err.contains(expected),
            "{expected}: {err}"
        );
    }
}

#[test]
fn two_campaigns_running_at_once_share_a_cap_at_the_moment_of_sending() {
    let shop = Shop::new();
    let mut people = String::from("name,phone\n");
    for i in 0..12 {
        people.push_str(&format!("P{i},+52 55 4000 {i:04}\n"));
    }
    for id in ["first", "second"] {
        shop.add(
            &format!("{id}.toml"),
            &campaign(
                id,
                "utility",
                "people.csv",
                "frequency_cap = { all = \"1 per 7d\" }\nrate_per_second = 6\nconcurrency = 1",
            ),
            "people.csv",
            &people,
        );
    }
    // Both plan everyone (nobody has had a message yet), then send side by side.
    let spawn = |file: &str| {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("wacampaign"));
        cmd.current_dir(&shop.dir)
            .env("NO_COLOR", "1")
            .env("WACAMPAIGN_NOW", "2026-11-27T16:00:00Z")
            .env_remove("WACAMPAIGN_DB")
            .args([
                "--color",
                "never",
                "--db",
                "wacampaign.db",
                "send",
                file,
                "--yes",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting wacampaign send")
    };
    let mut a = spawn("first.toml");
    let mut b = spawn("second.toml");
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    let conn = rusqlite::Connection::open(shop.dir.join("wacampaign.db")).unwrap();
    let most: i64 = conn
        .query_row(
            "SELECT max(n) FROM (SELECT count(*) AS n FROM journal WHERE state = 'accepted'
             GROUP BY person_id)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(most, 1, "nobody got two messages under a cap of one");
    let (accepted, deferred): (i64, i64) = conn
        .query_row(
            "SELECT sum(state = 'accepted'), sum(state = 'deferred') FROM journal",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (accepted, deferred),
        (12, 12),
        "each person got exactly one"
    );
}
