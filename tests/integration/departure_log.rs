//! The departure log beside the database (`<db>.<campaign>.departures`, 12 MiB) is
//! for the run after a kill: a run that ends with nothing in flight leaves none,
//! however it ends. (That a killed run leaves it, and what the next run does with
//! it, is tested in `send.rs`.)

use crate::support::{Fixture, files_ending, simulated_and_priced, stderr};

/// The departure logs beside the database.
fn logs(fx: &Fixture) -> Vec<String> {
    files_ending(&fx.path("."), ".departures")
}

#[test]
fn a_send_that_ends_with_nothing_in_flight_leaves_no_departure_log() {
    // Three opted-in Mexican contacts, 0.0085 USD each.
    let fx = simulated_and_priced(
        "name,phone,date\nAna,5512345678,lunes\nBeto,5587654321,martes\nCaro,5511223344,lunes\n",
    );
    // Refused by --max-cost (3 × 0.0085 = 0.0255 USD): nothing sent, no log.
    let refused = fx
        .wacampaign()
        .args(["send", "campaign.toml", "--yes", "--max-cost", "0.01USD"])
        .assert()
        .code(2);
    assert!(
        stderr(&refused).contains("above --max-cost"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(
        logs(&fx),
        Vec::<String>::new(),
        "after a --max-cost refusal"
    );

    // Without --yes and without a terminal: refused, no log.
    fx.wacampaign()
        .args(["send", "campaign.toml"])
        .assert()
        .code(2);
    assert_eq!(logs(&fx), Vec::<String>::new(), "after an unconfirmed run");

    // A run that sends removes its log once every outcome is recorded.
    fx.wacampaign()
        .args(["send", "campaign.toml", "--yes"])
        .assert()
        .code(0);
    assert_eq!(logs(&fx), Vec::<String>::new(), "after a finished run");

    // Run again: nothing to send, no log.
    let again = fx
        .wacampaign()
        .args(["send", "campaign.toml", "--yes"])
        .assert()
        .code(0);
    assert!(
        stderr(&again).contains("nothing to send"),
        "{}",
        stderr(&again)
    );
    assert_eq!(logs(&fx), Vec::<String>::new(), "after nothing to send");
}
