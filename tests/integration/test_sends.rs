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
