//! What every integration test needs: a temporary directory holding a campaign and
//! its contacts, and the real binary run inside it, so the paths it prints are the
//! relative ones the test wrote and the output is the same on every machine.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use tempfile::TempDir;

/// A positional utility campaign: `{{1}}` from `name`, `{{2}}` from `date` (empty
/// cells become "lunes"). Tests derive variants with [`edit`].
pub const CAMPAIGN: &str = r#"[campaign]
id = "test-campaign"
category = "utility"
contacts = "contacts.csv"
phone_column = "phone"
default_region = "MX"

[template]
name = "appointment_reminder"
language = "es_MX"
body = "Hola {{1}}, tu cita es el {{2}}."

[template.variables]
"1" = { column = "name" }
"2" = { column = "date", default = "lunes" }

[provider]
kind = "cloud_api"
phone_number_id = "106540352242922"
"#;

/// What the tests' mock numbers hold to: no messaging limit, so a test of 5,000
/// messages is not held to the 250 of a number whose limit was never read.
pub const NO_MESSAGING_LIMIT: (&str, &str) = ("WACAMPAIGN_MESSAGING_LIMIT", "unlimited");

/// Replaces the first `from` in `text`; panics if it is not there, so a test never
/// runs against the unedited campaign by mistake.
pub fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "`{from}` is not in:\n{text}");
    text.replacen(from, to, 1)
}

/// The repository's shipped example campaigns.
pub fn shipped_campaigns() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("campaigns")
}

/// A scratch directory the binary runs in.
pub struct Fixture {
    dir: TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().expect("creating a temporary directory"),
        }
    }

    /// [`CAMPAIGN`] as `campaign.toml`, with `contacts` as `contacts.csv`.
    pub fn with_contacts(contacts: impl AsRef<[u8]>) -> Fixture {
        let fixture = Fixture::new();
        fixture.write("campaign.toml", CAMPAIGN);
        fixture.write("contacts.csv", contacts);
        fixture
    }

    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("writing {name}: {e}"));
        path
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn read(&self, name: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {name}: {e}"))
    }

    /// The binary, run in this directory, without color, with its database here.
    pub fn wacampaign(&self) -> Command {
        wacampaign_in(self.dir.path(), &self.dir.path().join("wacampaign.db"))
    }

    /// `wacampaign check campaign.toml` plus `args`, with every contact opted in.
    pub fn check(&self, args: &[&str]) -> Command {
        opt_in_everyone(
            &self.dir.path().join("campaign.toml"),
            &self.dir.path().join("wacampaign.db"),
        );
        let mut cmd = self.wacampaign();
        cmd.args(["check", "campaign.toml"]).args(args);
        cmd
    }

    /// `wacampaign preview campaign.toml` plus `args`, with every contact opted in.
    pub fn preview(&self, args: &[&str]) -> Command {
        opt_in_everyone(
            &self.dir.path().join("campaign.toml"),
            &self.dir.path().join("wacampaign.db"),
        );
        let mut cmd = self.wacampaign();
        cmd.args(["preview", "campaign.toml"]).args(args);
        cmd
    }
}

/// The shared campaign sent through the built-in simulator (no refusals, no
/// opt-outs), priced with the shipped example card, with `contacts` and everyone in
/// it opted in.
pub fn simulated_and_priced(contacts: &str) -> Fixture {
    let card = shipped_campaigns().join("meta-rate-card-EXAMPLE-rates-not-current-prices.csv");
    let campaign = edit(
        &format!(
            "{CAMPAIGN}\n[pricing]\nrate_card = \"{}\"\n",
            card.display()
        ),
        "kind = \"cloud_api\"\nphone_number_id = \"106540352242922\"\n",
        "kind = \"simulator\"\nlatency_ms = 1\nundeliverable_rate = 0.0\nopt_out_rate = 0.0\n",
    );
    let fx = Fixture::with_contacts(contacts);
    fx.write("campaign.toml", campaign);
    opt_in_everyone(&fx.path("campaign.toml"), &fx.path("wacampaign.db"));
    fx
}

/// Creates the consent ledger at `db` and, when the campaign and its contacts can be
/// read, records an opt-in for the campaign's purpose for every contact, so tests of
/// the contacts file see every row the ledger would let through. Consent itself is
/// tested in `consent.rs`.
pub fn opt_in_everyone(campaign: &Path, db: &Path) {
    let db = wacampaign::db::Db::open(db).expect("creating the consent ledger");
    let Ok(campaign) = wacampaign::campaign::Campaign::load(campaign) else {
        return;
    };
    let options = wacampaign::consent::ImportOptions {
        file: campaign.contacts.path.clone(),
        purpose: campaign.purpose(),
        action: wacampaign::consent::Action::OptIn,
        method: "web_form".into(),
        phone_column: campaign.contacts.phone_column.clone(),
        default_region: campaign.contacts.default_region,
        occurred_column: None,
        evidence_column: None,
        notice: None,
        actor: "tests".into(),
        delimiter: campaign.contacts.delimiter,
        encoding: campaign.contacts.encoding,
        suppressions: None,
    };
    // A contacts file a test made unreadable on purpose simply records nothing.
    let _ = wacampaign::consent::import_file(&db.conn, &options);
}

/// The binary run in `dir` with deterministic output: no color, and nothing taken
/// from the developer's own `WACAMPAIGN_*` environment. The mock servers' numbers
/// have no messaging limit ([`NO_MESSAGING_LIMIT`]); the tests of the limit set
/// their own.
pub fn wacampaign_in(dir: &Path, db: &Path) -> Command {
    let mut cmd = Command::cargo_bin("wacampaign").expect("the wacampaign binary is built");
    cmd.current_dir(dir)
        .env("NO_COLOR", "1")
        .env(NO_MESSAGING_LIMIT.0, NO_MESSAGING_LIMIT.1)
        .env_remove("WACAMPAIGN_DB")
        .env_remove("WACAMPAIGN_COLOR")
        .arg("--color")
        .arg("never")
        .arg("--db")
        .arg(db);
    cmd
}

/// stdout of a finished command, as text.
pub fn stdout(assert: &assert_cmd::assert::Assert) -> String {
    String::from_utf8(assert.get_output().stdout.clone()).expect("stdout is UTF-8")
}

/// What a command wrote on stderr, lossily decoded.
pub fn stderr(assert: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&assert.get_output().stderr).into_owned()
}

/// The names of the files in `dir` whose names end with `suffix`.
pub fn files_ending(dir: &Path, suffix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("listing the directory")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(suffix))
        .collect()
}
