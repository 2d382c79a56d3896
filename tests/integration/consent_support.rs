//! What the consent ledger tests share: a temporary directory holding a real SQLite
//! ledger, the real binary run against it, the `sqlite3` shell an operator (or an
//! attacker) would use, and a small campaign to see the ledger through `check`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;

/// A campaign of `category` over `contacts.csv` (columns `name,phone`), numbers
/// written with their country code.
pub fn campaign(category: &str) -> String {
    format!(
        r#"[campaign]
id = "consent-test"
category = "{category}"
contacts = "contacts.csv"
phone_column = "phone"

[template]
name = "consent_test"
language = "es_MX"
body = "Hola {{{{1}}}}"

[template.variables]
"1" = {{ column = "name" }}

[provider]
kind = "cloud_api"
phone_number_id = "106540352242922"
"#
    )
}

/// What `check` made of a campaign: the phone cells that are eligible, and the
/// reason each excluded phone cell (as written) was left out.
#[derive(Debug)]
pub struct Checked {
    pub eligible: Vec<String>,
    pub excluded: BTreeMap<String, String>,
}

/// A scratch directory with a ledger at `ledger.db`.
pub struct Ledger {
    dir: TempDir,
    db: PathBuf,
}

impl Ledger {
    pub fn new() -> Ledger {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let db = dir.path().join("ledger.db");
        Ledger { dir, db }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn db(&self) -> &Path {
        &self.db
    }

    /// The database path as the binary prints it.
    pub fn db_shown(&self) -> String {
        self.db.display().to_string()
    }

    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("writing {name}: {e}"));
        path
    }

    pub fn read(&self, name: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {name}: {e}"))
    }

    /// The real binary, run in the directory against the ledger, with deterministic
    /// output and nothing taken from the developer's own environment.
    pub fn wacampaign(&self) -> Command {
        let mut cmd = Command::cargo_bin("wacampaign").expect("the wacampaign binary is built");
        cmd.current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .env("WACAMPAIGN_ACTOR", "test-operator")
            .env_remove("WACAMPAIGN_DB")
            .env_remove("WACAMPAIGN_COLOR")
            .env_remove("WACAMPAIGN_DEFAULT_REGION")
            .args(["--color", "never", "--db"])
            .arg(&self.db);
        cmd
    }

    /// `wacampaign consent ARGS...`
    pub fn consent(&self, args: &[&str]) -> Command {
        let mut cmd = self.wacampaign();
        cmd.arg("consent").args(args);
        cmd
    }

    /// Records an opt-in through the CLI; `at` is when the person acted.
    pub fn opt_in(&self, number: &str, purpose: &str, at: &str, source: &str) {
        self.consent(&[
            "opt-in",
            number,
            "--purpose",
            purpose,
            "--method",
            "web_form",
            "--source",
            source,
            "--occurred-at",
            at,
        ])
        .assert()
        .success();
    }

    /// Records an opt-out through the CLI, as an operator taking a phone call would.
    pub fn opt_out(&self, number: &str, purpose: &str, at: &str, method: &str) {
        self.consent(&[
            "opt-out",
            number,
            "--purpose",
            purpose,
            "--method",
            method,
            "--source",
            "ticket 4411",
            "--occurred-at",
            at,
        ])
        .assert()
        .success()
        .stdout(predicates::str::starts_with("recorded opt_out #"));
    }

    /// `consent show --json`: the `data` of its one record.
    pub fn show(&self, number: &str) -> Value {
        let out = self
            .consent(&["show", number])
            .arg("--json")
            .assert()
            .success();
        let lines = json_lines(&out.get_output().stdout);
        assert_eq!(lines.len(), 1, "show prints one record: {lines:?}");
        assert_eq!(lines[0]["type"], "consent_show");
        lines[0]["data"].clone()
    }

    /// A number's standing for `purpose` as `show --json` reports it: `state`, and
    /// `since` (the date) and `method` when there are any.
    pub fn standing(&self, number: &str, purpose: &str) -> String {
        let data = self.show(number);
        let s = &data["standing"][purpose];
        let state = s["state"].as_str().expect("a state");
        match (s["since"].as_str(), s["method"].as_str()) {
            (Some(since), Some(method)) => format!("{state} {} via {method}", &since[..10]),
            _ => state.to_owned(),
        }
    }

    /// The ids of the events `show` lists for a number, in the order the person acted.
    pub fn event_ids(&self, number: &str) -> Vec<i64> {
        self.show(number)["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| e["id"].as_i64().expect("an id"))
            .collect()
    }

    /// Runs `check` on a campaign of `category` whose contacts are `phones` (one row
    /// each), and reads back who is eligible and why the others are excluded.
    pub fn check(&self, category: &str, phones: &[&str]) -> Checked {
        self.write("campaign.toml", campaign(category));
        let mut contacts = String::from("name,phone\n");
        for (i, phone) in phones.iter().enumerate() {
            contacts.push_str(&format!("Contact {i},{phone}\n"));
        }
        self.write("contacts.csv", contacts);
        let out = self
            .wacampaign()
            .args([
                "--json",
                "check",
                "campaign.toml",
                "--excluded",
                "excluded.csv",
            ])
            .assert()
            .success();
        let report = json_lines(&out.get_output().stdout);
        let excluded_csv = self.read("excluded.csv");
        let mut reader = csv::Reader::from_reader(excluded_csv.as_bytes());
        assert_eq!(
            reader.headers().unwrap(),
            vec!["line", "phone", "reason_code", "reason"]
        );
        let mut excluded = BTreeMap::new();
        for record in reader.records() {
            let record = record.unwrap();
            // The file is for spreadsheets: a cell starting with `+` is escaped.
            let phone = record[1]
                .strip_prefix('\'')
                .unwrap_or(&record[1])
                .to_owned();
            excluded.insert(phone, record[3].to_owned());
        }
        let eligible: Vec<String> = phones
            .iter()
            .filter(|p| !excluded.contains_key(**p))
            .map(|p| (*p).to_owned())
            .collect();
        assert_eq!(
            report[0]["data"]["eligible"].as_u64(),
            Some(eligible.len() as u64),
            "the report's count agrees with the excluded file"
        );
        Checked { eligible, excluded }
    }

    /// Runs the `sqlite3` shell on the ledger, as an operator (or an attacker) can.
    pub fn sqlite3(&self, sql: &str) -> Output {
        std::process::Command::new("sqlite3")
            .arg(&self.db)
            .arg(sql)
            .output()
            .expect("running sqlite3")
    }

    /// Runs `sqlite3` and returns its stdout, requiring success.
    pub fn query(&self, sql: &str) -> String {
        let out = self.sqlite3(sql);
        assert!(
            out.status.success(),
            "sqlite3 {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("sqlite3 prints UTF-8")
    }

    /// Runs `sqlite3 -json`: the rows as the database holds them, for comparing
    /// with what the binary reports.
    /// The SQL goes to its stdin, as if pasted into the shell.
    pub fn query_json(&self, sql: &str) -> Vec<Value> {
        use std::io::Write as _;
        let mut child = std::process::Command::new("sqlite3")
            .arg("-json")
            .arg(&self.db)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("running sqlite3");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(sql.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.stderr.is_empty(),
            "sqlite3 -json {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "sqlite3 -json {sql}");
        if out.stdout.is_empty() {
            return Vec::new();
        }
        serde_json::from_slice(&out.stdout).expect("sqlite3 -json prints a JSON array")
    }

    /// Opens the ledger in this process, as a webhook receiver linked to the
    /// library would.
    pub fn open(&self) -> wacampaign::db::Db {
        wacampaign::db::Db::open(&self.db).expect("opening the ledger")
    }

    /// The `-wal` file beside the database.
    pub fn wal(&self) -> PathBuf {
        let mut name = self.db.clone().into_os_string();
        name.push("-wal");
        PathBuf::from(name)
    }
}

/// Parses JSON Lines.
pub fn json_lines(bytes: &[u8]) -> Vec<Value> {
    std::str::from_utf8(bytes)
        .expect("UTF-8")
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// stdout or stderr as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8")
}
