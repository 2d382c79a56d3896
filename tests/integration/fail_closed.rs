//! Commands that send fail closed: a database that is missing or whose consent
//! ledger is empty is refused with exit 2, naming the path and how it was chosen;
//! `check` only warns. A run where everyone lacks consent says so.

use assert_cmd::Command;
use serde_json::Value;

use crate::recurring::{Clinic, summary};
use crate::support::Fixture;

/// The binary in `dir` as a cron job would run it: no `--db`, nothing from the
/// developer's environment.
fn bare(dir: &std::path::Path) -> Command {
    let mut cmd = Command::cargo_bin("wacampaign").expect("the wacampaign binary is built");
    cmd.current_dir(dir)
        .env("NO_COLOR", "1")
        .env("WHATSAPP_TOKEN", "EAAGtest0token0for0the0mock")
        .env_remove("WACAMPAIGN_DB")
        .env_remove("WACAMPAIGN_COLOR");
    cmd
}

#[test]
fn a_send_from_the_wrong_directory_creates_nothing_and_exits_2() {
    let clinic = Clinic::new();
    clinic.appointments("A1,Ana,+52 55 1111 0001,2026-12-02,10:00\n");
    // The cron job's working directory: the campaign is named by its full path.
    let elsewhere = Fixture::new();
    let campaign = clinic.fx.path("campaign.toml");
    let out = bare(&elsewhere.path(""))
        .arg("send")
        .arg(&campaign)
        .arg("--yes")
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let opened = elsewhere.path("wacampaign.db");
    assert!(
        stderr.contains(&opened.display().to_string()),
        "names the path it opened: {stderr}"
    );
    assert!(
        stderr.contains("--db") && stderr.contains("WACAMPAIGN_DB"),
        "{stderr}"
    );
    assert!(!opened.exists(), "no database was created");
    assert_eq!(clinic.server.count(), 0);
    // WACAMPAIGN_DB naming a file that does not exist is refused the same way.
    let named = elsewhere.path("typo.db");
    let out = bare(&elsewhere.path(""))
        .env("WACAMPAIGN_DB", &named)
        .arg("send")
        .arg(&campaign)
        .arg("--yes")
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains(&named.display().to_string()), "{stderr}");
    assert!(!named.exists());
    // With the right database, the same command sends.
    bare(&elsewhere.path(""))
        .env("WACAMPAIGN_DB", clinic.db())
        .env("WACAMPAIGN_NOW", "2026-12-01T15:00:00Z")
        .arg("send")
        .arg(&campaign)
        .arg("--yes")
        .assert()
        .code(0);
    assert_eq!(clinic.server.count(), 1);
}

#[test]
fn an_empty_ledger_is_refused_by_send_and_not_by_check() {
    let clinic = Clinic::new();
    clinic.fx.write(
        "appointments.csv",
        format!(
            "{}A1,Ana,+52 55 1111 0001,2026-12-02,10:00\n",
            crate::recurring::HEADER
        ),
    );
    // The tables exist (migrations ran), but no one ever consented.
    drop(wacampaign::db::Db::open(&clinic.db()).expect("creating the database"));
    let out = clinic
        .at("2026-12-01T15:00:00Z")
        .args(["send", "campaign.toml", "--yes"])
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("holds no event"), "{stderr}");
    assert!(
        stderr.contains(&clinic.db().display().to_string()),
        "{stderr}"
    );
    assert_eq!(clinic.server.count(), 0);
    let checked = clinic
        .at("2026-12-01T15:00:00Z")
        .args(["check", "campaign.toml"])
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&checked.get_output().stdout).into_owned();
    assert!(stdout.contains("no opt-in"), "{stdout}");
}

#[test]
fn a_run_where_nobody_has_consent_says_so() {
    let clinic = Clinic::new();
    // The ledger holds someone else's opt-in only.
    clinic.fx.write(
        "appointments.csv",
        format!(
            "{}Z9,Zoe,+52 55 9999 0009,2026-12-02,10:00\n",
            crate::recurring::HEADER
        ),
    );
    crate::support::opt_in_everyone(&clinic.fx.path("campaign.toml"), &clinic.db());
    clinic.fx.write(
        "appointments.csv",
        format!(
            "{}A1,Ana,+52 55 1111 0001,2026-12-02,10:00\nA2,Beto,+52 55 1111 0002,2026-12-02,11:00\n",
            crate::recurring::HEADER
        ),
    );
    let out = clinic
        .at("2026-12-01T15:00:00Z")
        .args(["--json", "send", "campaign.toml", "--yes"])
        .assert()
        .code(0);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("every contact of") && stderr.contains("lack of consent"),
        "{stderr}"
    );
    let summary: Value = summary(&String::from_utf8_lossy(&out.get_output().stdout));
    assert_eq!(summary["no_consent"], true, "{summary}");
    assert_eq!(summary["to_send"], 0);
    assert_eq!(clinic.server.count(), 0);
}
