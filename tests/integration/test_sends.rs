//! `send --to`: the campaign's message, rendered for one contact, to the operator's
//! own numbers; journaled as a test, never counted in the campaign's totals.

use serde_json::Value;

use crate::recurring::{Clinic, summary};

const ROWS: &str = "A1,Ana,+52 55 1111 0001,2026-12-02,10:00\n\
                    A2,Beto,+52 55 1111 0002,2026-12-02,11:00\n";
const NOW: &str = "2026-12-01T15:00:00Z";
const MINE: &str = "+52 55 9999 0000";

fn body_text(r: &crate::mock_server::Received) -> String {
    r.body["template"]["components"].to_string()
}

#[test]
fn a_test_send_goes_to_the_given_numbers_and_leaves_the_totals_alone() {
    let clinic = Clinic::new();
    clinic.appointments(ROWS);
    // The marketer's own number needs an opt-in like anyone's: one command.
    record_mine(&clinic);
    let out = clinic
        .at(NOW)
        .args(["--json", "send", "campaign.toml", "--to", MINE, "--yes"])
        .assert()
        .code(0);
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let report: Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == "test_send")
        .unwrap_or_else(|| panic!("no test_send in {stdout}"))["data"]
        .clone();
    assert_eq!(report["this_run"]["accepted"], 1, "{report}");
    assert_eq!(report["rendered_for_line"], 2);
    let log = clinic.server.log();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].to, "+525599990000");
    assert!(body_text(&log[0]).contains("Ana"), "{}", body_text(&log[0]));
    // --row renders another contact's message.
    clinic
        .at(NOW)
        .args(["send", "campaign.toml", "--to", MINE, "--row", "3", "--yes"])
        .assert()
        .code(0);
    let log = clinic.server.log();
    assert_eq!(log.len(), 2);
    assert!(body_text(&log[1]).contains("Beto"));
    // The real run: both contacts, Ana included, and totals without the tests.
    let real = clinic.send(NOW);
    assert_eq!(real["this_run"]["accepted"], 2, "{real}");
    assert_eq!(real["journal"]["accepted"], 2, "{real}");
    let status = clinic
        .at(NOW)
        .args(["--json", "status", "campaign.toml"])
        .assert()
        .code(0);
    let status = String::from_utf8_lossy(&status.get_output().stdout).into_owned();
    assert!(status.contains("\"accepted\":2"), "{status}");
    assert!(!status.contains("\"accepted\":4"), "{status}");
    assert!(
        status.contains("\"test_sends\":2"),
        "listed apart: {status}"
    );
    let text = clinic
        .at(NOW)
        .args(["status", "campaign.toml"])
        .assert()
        .code(0);
    let text = String::from_utf8_lossy(&text.get_output().stdout).into_owned();
    assert!(
        text.contains("2 test sends (`send --to`), not counted above"),
        "{text}"
    );
}

#[test]
fn a_test_number_without_an_opt_in_is_refused() {
    let clinic = Clinic::new();
    clinic.appointments(ROWS);
    let out = clinic
        .at(NOW)
        .args(["send", "campaign.toml", "--to", MINE, "--yes"])
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("+525599990000") && stderr.contains("wacampaign consent opt-in"),
        "{stderr}"
    );
    assert_eq!(clinic.server.count(), 0);
    // Nor is a test send counted when the real run comes.
    let real = summary(&String::from_utf8_lossy(
        &clinic
            .at(NOW)
            .args(["--json", "send", "campaign.toml", "--yes"])
            .assert()
            .code(0)
            .get_output()
            .stdout,
    ));
    assert_eq!(real["journal"]["accepted"], 2);
}

#[test]
fn pruned_test_sends_are_not_folded_into_the_totals() {
    let clinic = Clinic::new();
    clinic.appointments(ROWS);
    record_mine_and_test_send(&clinic);
    let later = "2027-01-15T15:00:00Z";
    clinic
        .at(later)
        .args(["prune", "--older-than", "30d"])
        .assert()
        .success();
    let status = clinic
        .at(later)
        .args(["--json", "status", "campaign.toml"])
        .assert()
        .code(0);
    let status = String::from_utf8_lossy(&status.get_output().stdout).into_owned();
    assert!(status.contains("\"accepted\":0"), "{status}");
    assert!(status.contains("\"test_sends\":0"), "pruned: {status}");
}

#[test]
fn a_test_send_goes_out_inside_the_contacts_quiet_hours() {
    let clinic = Clinic::new();
    // 09:00 in Mexico City, inside the campaign's quiet hours.
    let mut text = clinic.fx.read("campaign.toml");
    text.push_str("quiet_hours = \"08:00-10:00\"\n");
    clinic.fx.write("campaign.toml", text);
    clinic.appointments(ROWS);
    record_mine_and_test_send(&clinic);
    assert_eq!(clinic.server.count(), 1, "the test send went out");
    // The contacts themselves wait for the window to open.
    let real = clinic.send(NOW);
    assert_eq!(real["this_run"]["accepted"], 0, "{real}");
    assert_eq!(clinic.server.count(), 1);
}

/// The marketer records their own number's opt-in, at `NOW`.
fn record_mine(clinic: &Clinic) {
    clinic
        .at(NOW)
        .args([
            "consent",
            "opt-in",
            MINE,
            "--purpose",
            "utility",
            "--method",
            "operator",
        ])
        .args(["--source", "marketer's own test number"])
        .assert()
        .success();
}

/// The marketer records their own number's opt-in, then sends the campaign's
/// message to it as a test, at `NOW`.
fn record_mine_and_test_send(clinic: &Clinic) {
    record_mine(clinic);
    clinic
        .at(NOW)
        .args(["send", "campaign.toml", "--to", MINE, "--yes"])
        .assert()
        .code(0);
}
