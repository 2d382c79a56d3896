//! `send --dry-run` reports what the same command without it would send in this
//! run, and what that costs: the journal's progress and `--limit` counted, as the
//! real send that follows it counts them, and nothing written.

use serde_json::Value;

use crate::support::{Fixture, simulated_and_priced, stdout};

/// Twelve Mexican numbers: each a utility message at 0.0085 USD on the shipped card.
fn twelve_mexicans() -> String {
    let mut csv = String::from("name,phone,date\n");
    for i in 0..12 {
        csv.push_str(&format!("Cliente {i},+52 55 3000 {:04},martes\n", i));
    }
    csv
}

fn summary(out: &str) -> Value {
    out.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == "send_summary")
        .unwrap_or_else(|| panic!("no send_summary in {out}"))["data"]
        .clone()
}

/// Everything a dry run must leave as it was: the journal, the campaign's
/// record, the ledger, and the files beside the database.
fn written(fx: &Fixture) -> (String, String, i64, Vec<String>) {
    let conn = rusqlite::Connection::open(fx.path("wacampaign.db")).unwrap();
    let journal: String = conn
        .query_row(
            "SELECT coalesce(group_concat(id || ':' || state || ':' || plan_run || ':' || seq, ','), '')
             FROM (SELECT * FROM journal ORDER BY id)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let campaigns: String = conn
        .query_row(
            "SELECT coalesce(group_concat(id || ':' || plan_run || ':' || coalesce(departure_log, ''), ','), '')
             FROM campaigns",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let ledger: i64 = conn
        .query_row("SELECT count(*) FROM consent_events", [], |r| r.get(0))
        .unwrap();
    let mut files: Vec<String> = std::fs::read_dir(fx.path("."))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with("-wal") && !n.ends_with("-shm"))
        .collect();
    files.sort();
    (journal, campaigns, ledger, files)
}

/// Runs `send campaign.toml --json` with `args`, expecting `code`.
fn send_json(fx: &Fixture, args: &[&str], code: i32) -> Value {
    let assert = fx
        .wacampaign()
        .args(["--json", "send", "campaign.toml"])
        .args(args)
        .assert()
        .code(code);
    summary(&stdout(&assert))
}

/// The dry run of a command, then the command itself: the dry run said what the
/// command then sent, at the cost it then estimated, and wrote nothing.
fn dry_run_then_send(fx: &Fixture, args: &[&str]) -> (Value, Value) {
    let before = written(fx);
    let dry = send_json(fx, &[&["--dry-run"], args].concat(), 0);
    assert_eq!(written(fx), before, "the dry run wrote nothing");
    assert_eq!(dry["dry_run"], true);
    let real = send_json(fx, &[&["--yes"], args].concat(), 0);
    assert_eq!(dry["to_send"], real["to_send"], "dry: {dry}\nreal: {real}");
    assert_eq!(dry["already_served"], real["already_served"]);
    assert_eq!(dry["cost"], real["cost"], "dry: {dry}\nreal: {real}");
    let sent = real["this_run"]["accepted"].as_u64().unwrap_or(0);
    assert_eq!(dry["to_send"].as_u64(), Some(sent), "what the run sent");
    (dry, real)
}

#[test]
fn a_dry_run_counts_what_the_journal_and_limit_leave_for_this_run() {
    let fx = simulated_and_priced(&twelve_mexicans());
    // A test batch of 5, then the rest, then nothing: each dry run agrees with the
    // send that follows it.
    let (dry, _) = dry_run_then_send(&fx, &["--limit", "5"]);
    assert_eq!(dry["to_send"], 5);
    assert_eq!(dry["cost"]["priced_messages"], 5);
    assert_eq!(dry["cost"]["total"], "0.0425");

    // Five sent, seven left: a limit of 5 costs 5 messages, within a --max-cost that
    // the whole list (12 × 0.0085 = 0.102) is above.
    let (dry, _) = dry_run_then_send(&fx, &["--limit", "5", "--max-cost", "0.05USD"]);
    assert_eq!(dry["to_send"], 5);
    assert_eq!(dry["already_served"], 5);

    let (dry, _) = dry_run_then_send(&fx, &[]);
    assert_eq!(dry["to_send"], 2);
    assert_eq!(dry["already_served"], 10);
    assert_eq!(dry["journal"]["accepted"], 10);

    // Finished: the dry run sends nothing, costs nothing, as the run then says.
    let (dry, real) = dry_run_then_send(&fx, &["--limit", "5", "--max-cost", "0.01USD"]);
    assert_eq!(dry["to_send"], 0);
    assert_eq!(dry["already_served"], 12);
    assert_eq!(dry["cost"]["priced_messages"], 0);
    assert_eq!(real["journal"]["accepted"], 12);

    let before = written(&fx);
    let text = fx
        .wacampaign()
        .args(["send", "campaign.toml", "--dry-run", "--limit", "5"])
        .assert()
        .code(0);
    assert_eq!(written(&fx), before);
    let out = stdout(&text);
    assert!(
        out.contains("dry run: 0 messages would be sent in this run (12 rendered and validated)"),
        "{out}"
    );
    assert!(out.contains("already served 12 occurrences"), "{out}");
    assert!(out.contains(" 0 messages now"), "{out}");
}

#[test]
fn a_dry_run_refuses_by_max_cost_what_this_run_would_cost_not_the_whole_list() {
    let fx = simulated_and_priced(&twelve_mexicans());
    // 12 × 0.0085 = 0.102 USD for the list; 3 × 0.0085 = 0.0255 for --limit 3.
    let refused = fx
        .wacampaign()
        .args([
            "send",
            "campaign.toml",
            "--dry-run",
            "--max-cost",
            "0.03USD",
        ])
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&refused.get_output().stderr).into_owned();
    assert!(stderr.contains("estimated at 0.102 USD"), "{stderr}");
    let dry = send_json(
        &fx,
        &["--dry-run", "--limit", "3", "--max-cost", "0.03USD"],
        0,
    );
    assert_eq!(dry["to_send"], 3);
    assert_eq!(dry["cost"]["total"], "0.0255");
}
