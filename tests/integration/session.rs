//! Session campaigns: free-form text, only to contacts whose customer-service window
//! (opened by their own last message, recorded by the webhook server) is open now,
//! and still only with consent. Sent through Prism, the text bodies must satisfy both
//! providers' contracts.

use std::path::{Path, PathBuf};
use std::process::Command;

use rusqlite::params;
use wacampaign::phone::E164;

use crate::prism::{self, Prism};
use crate::support::opt_in_everyone;

/// Ana wrote an hour ago, Luis 25 hours ago, Eva never; all three opted in. Rosa
/// wrote an hour ago but never opted in.
const CONTACTS: &str = "phone,name\n\
                        +52 55 1111 1111,Ana\n\
                        +52 55 2222 2222,Luis\n\
                        +52 55 3333 3333,Eva\n\
                        +52 55 4444 4444,Rosa\n";

fn campaign(provider: &str) -> String {
    format!(
        "[campaign]\nid = \"session-test\"\nkind = \"session\"\ncategory = \"utility\"\n\
         contacts = \"contacts.csv\"\nphone_column = \"phone\"\ndefault_region = \"MX\"\n\n\
         [template]\nbody = \"Hola {{{{name}}}}, ya tenemos tu pedido listo.\\nPasa cuando quieras.\"\n\n\
         [template.variables]\nname = {{ column = \"name\" }}\n\n\
         [sending]\nrate_per_second = 1000\n\n{provider}"
    )
}

struct Setup {
    dir: tempfile::TempDir,
    db: PathBuf,
}

/// Writes the campaign, opts everyone but Rosa in, and records the inbound messages
/// the webhook server would have.
fn setup(provider: &str) -> Setup {
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    std::fs::write(dir.path().join("campaign.toml"), campaign(provider)).expect("writing");
    let without_rosa: String = CONTACTS
        .lines()
        .filter(|l| !l.contains("Rosa"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.path().join("contacts.csv"), without_rosa).expect("writing");
    let db = dir.path().join("wacampaign.db");
    opt_in_everyone(&dir.path().join("campaign.toml"), &db);
    std::fs::write(dir.path().join("contacts.csv"), CONTACTS).expect("writing");
    let conn = rusqlite::Connection::open(&db).expect("opening the database");
    let now = chrono::Utc::now();
    for (id, digits, hours_ago) in [
        ("wamid.in1", "525511111111", 1),
        ("wamid.in2", "525522222222", 25),
        ("wamid.in4", "525544444444", 1),
    ] {
        let phone = E164::from_digits(digits).expect("a number");
        let at = wacampaign::clock::format(now - chrono::Duration::hours(hours_ago));
        conn.execute(
            "INSERT INTO inbound_messages (message_id, provider, phone, consent_key, kind, occurred_at, received_at)
             VALUES (?1, 'meta', ?2, ?3, 'text', ?4, ?4)",
            params![id, phone.to_string(), phone.consent_key() as i64, at],
        )
        .expect("recording an inbound message");
    }
    Setup { dir, db }
}

fn wacampaign(setup: &Setup) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wacampaign"));
    cmd.current_dir(setup.dir.path())
        .args(["--color", "never", "--db"])
        .arg(&setup.db)
        .env("WHATSAPP_TOKEN", "session-test-token")
        .env("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef")
        .env("TWILIO_AUTH_TOKEN", "session-test-auth-token")
        .env_remove("WACAMPAIGN_DB")
        .env_remove("TWILIO_API_KEY_SID")
        .env_remove("TWILIO_API_KEY_SECRET");
    cmd
}

const SIMULATOR: &str = "[provider]\nkind = \"simulator\"\nlatency_ms = 1\n";

#[test]
fn only_contacts_with_an_open_window_and_consent_are_planned() {
    let setup = setup(SIMULATOR);
    let output = wacampaign(&setup)
        .args(["check", "campaign.toml", "--excluded", "excluded.csv"])
        .output()
        .expect("running check");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let excluded = std::fs::read_to_string(setup.dir.path().join("excluded.csv")).expect("reading");
    assert_eq!(
        excluded,
        "line,phone,reason_code,reason\n\
         3,'+52 55 2222 2222,no_window,no open customer-service window\n\
         4,'+52 55 3333 3333,no_window,no open customer-service window\n\
         5,'+52 55 4444 4444,no_opt_in,no opt-in for utility\n"
    );
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(report.contains("free-form session message"), "{report}");
    assert!(report.contains("eligible 1\n"), "{report}");
}

fn journal_rows(db: &Path) -> Vec<(String, String, Option<String>)> {
    let conn = rusqlite::Connection::open(db).expect("opening the journal");
    let mut stmt = conn
        .prepare("SELECT phone, state, message_id FROM journal ORDER BY seq")
        .expect("querying");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("reading")
        .collect::<Result<_, _>>()
        .expect("reading")
}

fn send_through(prism: &Prism, provider: &str) -> (Setup, serde_json::Value) {
    let setup = setup(&provider.replace("BASE_URL", prism.base_url()));
    let output = wacampaign(&setup)
        .args(["--json", "send", "campaign.toml", "--yes"])
        .output()
        .expect("running send");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{stdout}\nPrism's log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        prism.log_tail(30)
    );
    let summary = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|r| r["type"] == "send_summary")
        .expect("a send summary")["data"]
        .clone();
    (setup, summary)
}

#[test]
fn a_session_message_through_the_cloud_api_is_valid_text_to_the_open_window_only() {
    let Some(prism) = prism::meta() else { return };
    let (setup, summary) = send_through(
        prism,
        "[provider]\nkind = \"cloud_api\"\nphone_number_id = \"106540352242922\"\nbase_url = \"BASE_URL\"\n",
    );
    assert_eq!(summary["this_run"]["requests"], 1, "{summary}");
    let rows = journal_rows(&setup.db);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, "+525511111111");
    assert_eq!(
        rows[0].1, "accepted",
        "Prism accepted the text body on the first try"
    );
    assert!(
        rows[0]
            .2
            .as_deref()
            .is_some_and(|id| id.starts_with("wamid."))
    );
}

#[test]
fn a_session_message_through_twilio_is_a_valid_body_to_the_open_window_only() {
    let Some(prism) = prism::twilio() else { return };
    let (setup, summary) = send_through(
        prism,
        "[provider]\nkind = \"twilio\"\nfrom = \"+14155238886\"\nbase_url = \"BASE_URL\"\n",
    );
    assert_eq!(summary["this_run"]["requests"], 1, "{summary}");
    let rows = journal_rows(&setup.db);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, "+525511111111");
    assert_eq!(rows[0].1, "accepted");
}

#[test]
fn preview_shows_the_text_body_each_provider_sends() {
    let setup = setup(SIMULATOR);
    let output = wacampaign(&setup)
        .args(["preview", "campaign.toml", "--payload"])
        .output()
        .expect("running preview");
    let body: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(body["type"], "text");
    assert_eq!(
        body["text"]["body"],
        "Hola Ana, ya tenemos tu pedido listo.\nPasa cuando quieras."
    );
    assert!(
        body.get("biz_opaque_callback_data").is_none(),
        "Meta's text schema allows none"
    );
}
