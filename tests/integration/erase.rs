//! `wacampaign erase`: a person sent a campaign, with delivery statuses, a reply and
//! a linked BSUID recorded by the real webhook server, is erased from a real database
//! file; then no byte of the file, its WAL or the status CSV holds any spelling of
//! them, the ledger still verifies, and they stay out of imports, opt-ins and
//! campaigns. A SIGKILL in the middle leaves them erased or untouched, never half.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::mock_server::MockServer;
use crate::support::CAMPAIGN;
use crate::webhook::harness::{Server, Workspace};

const KEY: &str = "k3y-for-the-suppression-list-0123456789";

/// The person erased: the CSV writes their number nationally; WhatsApp's wa_id
/// carries Mexico's old mobile `1`.
const ANA_CSV: &str = "55 3141 5926";
const ANA_WA_ID: &str = "5215531415926";
const ANA_NAME: &str = "Anabel Borrada";
const ANA_BSUID: &str = "MX.anab0rrada0bsuid";
/// Someone else, who must keep everything.
const BETO_WA_ID: &str = "5215587654321";

/// Every spelling of Ana that must be gone: E.164 with and without `+`, with and
/// without the mobile `1`, the national digits (inside all of them) and the CSV's
/// spaced form, her linked BSUID and the name rendered into her message.
const ANA_SPELLINGS: &[&str] = &[
    "+5215531415926",
    "5215531415926",
    "+525531415926",
    "525531415926",
    "5531415926",
    "55 3141 5926",
    "3141 5926",
    ANA_BSUID,
    ANA_NAME,
];

pub(crate) fn key_file(ws: &Workspace) -> std::path::PathBuf {
    let path = ws.write("suppression.key", KEY);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

pub(crate) fn cmd(ws: &Workspace) -> assert_cmd::Command {
    let mut cmd = ws.wacampaign();
    cmd.env(
        "WACAMPAIGN_SUPPRESSION_KEY_FILE",
        ws.path().join("suppression.key"),
    )
    .env_remove("WACAMPAIGN_SUPPRESSION_KEY")
    .env("WHATSAPP_TOKEN", "EAAGtest0token")
    .timeout(Duration::from_secs(120));
    cmd
}

/// Where `needle` occurs in `bytes`, if anywhere.
fn find(bytes: &[u8], needle: &str) -> Option<usize> {
    bytes
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
}

/// Every file an erasure must leave clean: the database, its WAL (if any) and `extra`.
fn leaks(ws: &Workspace, extra: &[&str], spellings: &[&str]) -> Vec<String> {
    let db = ws.db();
    let mut files = vec![db.clone(), db.with_extension("db-wal")];
    files.extend(extra.iter().map(|f| ws.path().join(f)));
    let mut found = Vec::new();
    for file in files {
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        for s in spellings {
            if let Some(at) = find(&bytes, s) {
                let context = &bytes[at.saturating_sub(60)..(at + 40).min(bytes.len())];
                found.push(format!(
                    "`{s}` at byte {at} of {}: {:?}",
                    file.display(),
                    String::from_utf8_lossy(context)
                ));
            }
        }
    }
    found
}

/// A campaign to Ana and Beto sent through a mock Cloud API; statuses, a reply and
/// Ana's BSUID recorded by the webhook server.
fn sent_to_ana(ws: &Workspace, mock: &MockServer) {
    key_file(ws);
    ws.write(
        "campaign.toml",
        format!(
            "{CAMPAIGN}base_url = \"{}\"\n\n[sending]\nrate_per_second = 100\nconcurrency = 2\n",
            mock.base_url()
        ),
    );
    ws.write(
        "contacts.csv",
        format!("name,phone,date\n{ANA_NAME},{ANA_CSV},martes\nBeto Queda,55 8765 4321,lunes\n"),
    );
    crate::support::opt_in_everyone(&ws.path().join("campaign.toml"), &ws.db());
    cmd(ws)
        .args(["send", "campaign.toml", "--yes"])
        .assert()
        .success();

    let conn = rusqlite::Connection::open(ws.db()).unwrap();
    let rows: Vec<(String, i64)> = conn
        .prepare("SELECT message_id, person_id FROM journal ORDER BY phone")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 2, "both were sent");
    // BSUIDs are not received yet: link Ana's as the webhook will.
    conn.execute(
        "INSERT INTO identities (bsuid, person_id, phone, linked_at)
         VALUES (?1, 525531415926, '+5215531415926', '2026-11-01T00:00:00Z')",
        [ANA_BSUID],
    )
    .unwrap();
    drop(conn);

    let server = Server::start(ws, &[]);
    let now = chrono::Utc::now().timestamp();
    for (message_id, person) in &rows {
        let wa_id = if *person == 525_531_415_926 {
            ANA_WA_ID
        } else {
            BETO_WA_ID
        };
        for (i, kind) in ["sent", "delivered", "read"].iter().enumerate() {
            let payload = envelope(json!({
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                "statuses": [{
                    "id": message_id, "status": kind, "timestamp": (now + i as i64).to_string(),
                    "recipient_id": wa_id,
                    "biz_opaque_callback_data": format!("wacampaign:test-campaign:{person}")
                }]
            }));
            assert_eq!(server.post_meta_signed(&payload).status, 200);
        }
        let reply = envelope(json!({
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Perfil"}, "wa_id": wa_id}],
            "messages": [{"from": wa_id, "id": format!("wamid.reply.{person}"),
                          "timestamp": (now + 5).to_string(), "type": "text",
                          "text": {"body": "gracias"}, "context": {"id": message_id}}]
        }));
        assert_eq!(server.post_meta_signed(&reply).status, 200);
    }
    server.stop();
}

pub(crate) fn envelope(value: serde_json::Value) -> serde_json::Value {
    json!({"object": "whatsapp_business_account",
           "entry": [{"id": "419561257915477", "changes": [{"value": value, "field": "messages"}]}]})
}

fn status_csv(ws: &Workspace) -> String {
    cmd(ws)
        .args(["status", "campaign.toml", "--csv", "status.csv"])
        .assert()
        .success();
    std::fs::read_to_string(ws.path().join("status.csv")).unwrap()
}

#[test]
fn after_erase_no_byte_names_the_person_the_ledger_verifies_and_they_stay_out() {
    let ws = Workspace::new();
    let mock = MockServer::start();
    sent_to_ana(&ws, &mock);
    let before = status_csv(&ws);
    assert!(
        before.contains("5531415926"),
        "the scan can see Ana: {before}"
    );
    assert!(
        !leaks(&ws, &["status.csv"], ANA_SPELLINGS).is_empty(),
        "before the erasure her number is in the files"
    );
    let statuses_before = ws.count("SELECT count(*) FROM message_statuses");
    assert_eq!(statuses_before, 6, "three statuses each");

    let ana_message: String = rusqlite::Connection::open(ws.db())
        .unwrap()
        .query_row(
            "SELECT message_id FROM journal WHERE phone = '+525531415926'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let out = cmd(&ws)
        .args([
            "erase",
            "+52 1 55 3141 5926",
            "--reason",
            "request 2026-11-27 ticket 5120",
        ])
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        stdout.contains("erased 1 phone number(s) and 1 business-scoped ID(s)"),
        "{stdout}"
    );
    for line in [
        "journal rows            1",
        "statuses                3",
        "inbound messages        1",
    ] {
        assert!(stdout.contains(line), "`{line}` in:\n{stdout}");
    }

    // A status the provider sends days later for her message brings nothing back.
    let server = Server::start(&ws, &[]);
    let late = envelope(json!({
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "statuses": [{"id": ana_message, "status": "read", "timestamp": "1893456000",
                      "recipient_id": ANA_WA_ID}]
    }));
    assert_eq!(server.post_meta_signed(&late).status, 200);
    server.stop();
    let conn = rusqlite::Connection::open(ws.db()).unwrap();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    drop(conn);
    assert_eq!(
        ws.count("SELECT count(*) FROM webhook_deliveries WHERE body IS NULL"),
        5,
        "her 4 deliveries cleared, and the late one recorded (so a retry is recognised) without its body"
    );

    let after = status_csv(&ws);
    let found = leaks(&ws, &["status.csv"], ANA_SPELLINGS);
    assert!(found.is_empty(), "Ana is still in the files: {found:?}");
    // Beto keeps everything: the erasure was of Ana only.
    assert!(after.contains("5587654321"), "{after}");
    assert_eq!(ws.count("SELECT count(*) FROM message_statuses"), 3);
    assert_eq!(ws.count("SELECT count(*) FROM inbound_messages"), 1);
    assert!(find(&std::fs::read(ws.db()).unwrap(), "5587654321").is_some());

    // The chain still verifies, through the commitments the blanked event kept.
    cmd(&ws)
        .args(["consent", "verify"])
        .assert()
        .success()
        .stdout(predicates::str::contains("1 events erased"))
        .stdout(predicates::str::contains("ledger intact: 3 events"));

    // An import of an opt-in for her, in another spelling, is refused with the reason.
    ws.write("optins.csv", "phone\n+52 55 3141 5926\n+52 55 1111 2222\n");
    let out = cmd(&ws)
        .args([
            "consent",
            "import",
            "optins.csv",
            "--purpose",
            "utility",
            "--method",
            "web_form",
        ])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned()
        + &String::from_utf8_lossy(&out.get_output().stderr);
    assert!(text.contains("refused (erased)      1"), "{text}");
    assert!(text.contains("recorded              1"), "{text}");
    assert!(text.contains("was erased on"), "{text}");
    // So is an opt-in, unless it is a new, evidenced consent after the erasure.
    cmd(&ws)
        .args([
            "consent",
            "opt-in",
            "+5215531415926",
            "--purpose",
            "utility",
            "--method",
            "web_form",
            "--source",
            "form 3",
        ])
        .assert()
        .failure()
        .stderr(predicates::str::contains("was erased on"))
        .stderr(predicates::str::contains("--after-erasure"));

    // A campaign that lists her leaves her out as erased.
    cmd(&ws)
        .args(["check", "campaign.toml", "--excluded", "excluded.csv"])
        .assert()
        .success();
    let excluded = std::fs::read_to_string(ws.path().join("excluded.csv")).unwrap();
    let line = excluded
        .lines()
        .find(|l| l.contains("55 3141 5926"))
        .unwrap_or_else(|| panic!("Ana is not excluded:\n{excluded}"));
    assert!(line.contains(",erased,"), "{line}");

    // A new consent with its own evidence, given after the erasure, lifts it.
    let later = (chrono::Utc::now() + chrono::Duration::seconds(2))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    cmd(&ws)
        .args([
            "consent",
            "opt-in",
            "+525531415926",
            "--purpose",
            "utility",
            "--method",
            "web_form",
            "--source",
            "form 4",
            "--evidence",
            "signed again",
            "--after-erasure",
            "--occurred-at",
            &later,
        ])
        .assert()
        .success();
    cmd(&ws)
        .args(["check", "campaign.toml", "--excluded", "excluded.csv"])
        .assert()
        .success();
    let excluded = std::fs::read_to_string(ws.path().join("excluded.csv")).unwrap();
    assert!(!excluded.contains("55 3141 5926"), "{excluded}");
}

#[test]
fn erasing_someone_never_seen_suppresses_them_all_the_same() {
    let ws = Workspace::new();
    key_file(&ws);
    cmd(&ws)
        .args([
            "erase",
            "+54 9 11 2345 6789",
            "--reason",
            "request by email, ref 88",
        ])
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "nothing was held about this phone",
        ));
    ws.write("optins.csv", "phone\n+54 11 2345 6789\n");
    cmd(&ws)
        .args([
            "consent",
            "import",
            "optins.csv",
            "--purpose",
            "marketing",
            "--method",
            "web_form",
        ])
        .assert()
        .success()
        .stdout(predicates::str::contains("refused (erased)      1"));
    cmd(&ws).args(["consent", "verify"]).assert().success();
    // The suppression list holds a keyed hash, not the number.
    assert!(leaks(&ws, &[], &["1123456789"]).is_empty());
}

#[test]
fn a_missing_world_readable_or_changed_key_is_refused_with_the_fix() {
    let ws = Workspace::new();
    cmd(&ws)
        .env_remove("WACAMPAIGN_SUPPRESSION_KEY_FILE")
        .args(["erase", "+525531415926", "--reason", "r"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("no suppression key"))
        .stderr(predicates::str::contains("head -c 32 /dev/urandom"));
    let path = key_file(&ws);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    cmd(&ws)
        .args(["erase", "+525531415926", "--reason", "r"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("chmod 600"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    cmd(&ws)
        .args(["erase", "+525531415926", "--reason", "r"])
        .assert()
        .success();
    // Another key would silently match nobody: refused.
    std::fs::write(&path, "another-key-0123456789-abcdef").unwrap();
    cmd(&ws)
        .args([
            "consent",
            "opt-in",
            "+525531415926",
            "--purpose",
            "utility",
            "--method",
            "x",
            "--source",
            "y",
        ])
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "not the one earlier erasures used",
        ));
}

/// One person with many journal rows (a recurring campaign's occurrences), so an
/// erasure takes long enough to be killed in the middle.
fn big_person(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch(
        "INSERT INTO campaigns (id, fingerprint, template, language, category, provider, created_at, plan_run)
         VALUES ('recurring', 'f', 't', 'es_MX', 'utility', 'cloud_api', '2026-01-01T00:00:00Z', 1);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 150000)
         INSERT INTO journal (campaign_id, person_id, occurrence, phone, line, seq, plan_run, params,
             state, message_id, updated_at)
         SELECT 'recurring', 525531415926, 'visit-' || i, '+525531415926', i, i, 1,
             '[\"Anabel Borrada\", \"cita ' || i || '\"]', 'accepted', 'wamid.' || i,
             '2026-01-01T00:00:00Z' FROM n;",
    )
    .unwrap();
}

#[test]
fn sigkill_in_the_middle_of_erase_leaves_the_person_erased_or_untouched() {
    let ws = Workspace::new();
    key_file(&ws);
    cmd(&ws)
        .args([
            "consent",
            "opt-in",
            "+525531415926",
            "--purpose",
            "utility",
            "--method",
            "web_form",
            "--source",
            "form 1",
        ])
        .assert()
        .success();
    big_person(&ws.db());
    // Someone else erased first, so the key is already noted: an erasure then writes
    // nothing before its transaction.
    cmd(&ws)
        .args(["erase", "+54 9 11 2345 6789", "--reason", "earlier request"])
        .assert()
        .success();
    let pristine = ws.path().join("pristine.db");
    {
        let conn = rusqlite::Connection::open(ws.db()).unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
    }
    std::fs::copy(ws.db(), &pristine).unwrap();

    let (mut erased, mut untouched, mut mid_transaction) = (0, 0, 0);
    for attempt in 0..10u64 {
        std::fs::copy(&pristine, ws.db()).unwrap();
        let _ = std::fs::remove_file(ws.db().with_extension("db-wal"));
        let _ = std::fs::remove_file(ws.db().with_extension("db-shm"));
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wacampaign"))
            .current_dir(ws.path())
            .env(
                "WACAMPAIGN_SUPPRESSION_KEY_FILE",
                ws.path().join("suppression.key"),
            )
            .args(["--db"])
            .arg(ws.db())
            .args(["erase", "+525531415926", "--reason", "ticket 9"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(100 + attempt * 250));
        // `Child::kill` is SIGKILL.
        let _ = child.kill();
        child.wait().unwrap();
        // Frames in the WAL of an untouched database are an erasure's uncommitted
        // writes: that kill landed inside its transaction.
        let wal = std::fs::metadata(ws.db().with_extension("db-wal")).map_or(0, |m| m.len());

        let rows = ws.count("SELECT count(*) FROM journal");
        let blanked = ws.count("SELECT count(*) FROM consent_events WHERE subject = ''");
        let suppressed = ws.count("SELECT count(*) FROM suppressions");
        match (rows, blanked, suppressed) {
            (150_000, 1, 1) => {
                untouched += 1;
                mid_transaction += usize::from(wal > 0);
            }
            // Blanked: the earlier erasure event, the opt-in, this erasure event.
            (0, 3, 2) => erased += 1,
            other => {
                panic!("attempt {attempt}: half erased (rows, blanked, suppressions) = {other:?}")
            }
        }
        cmd(&ws).args(["consent", "verify"]).assert().success();
    }
    eprintln!(
        "sigkill erase: {erased} erased, {untouched} untouched ({mid_transaction} killed \
         inside the transaction) of 10"
    );
    assert!(
        mid_transaction > 0,
        "no kill landed inside the erasing transaction: the test did not test"
    );
}

#[test]
fn erasing_during_a_send_to_that_person_waits_for_the_request_then_removes_it() {
    let ws = Workspace::new();
    let mock = MockServer::start();
    key_file(&ws);
    mock.set_latency(Duration::from_millis(2500));
    ws.write(
        "campaign.toml",
        format!(
            "{CAMPAIGN}base_url = \"{}\"\ntimeout_ms = 10000\n",
            mock.base_url()
        ),
    );
    ws.write(
        "contacts.csv",
        format!("name,phone,date\n{ANA_NAME},{ANA_CSV},martes\n"),
    );
    crate::support::opt_in_everyone(&ws.path().join("campaign.toml"), &ws.db());
    let mut send = std::process::Command::new(env!("CARGO_BIN_EXE_wacampaign"))
        .current_dir(ws.path())
        .env("WHATSAPP_TOKEN", "EAAGtest0token")
        .args(["--color", "never", "--db"])
        .arg(ws.db())
        .args(["send", "campaign.toml", "--yes"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        mock.wait_for(1, Duration::from_secs(30)),
        "the request left"
    );
    // Not willing to wait: refused, nothing erased.
    cmd(&ws)
        .args([
            "erase",
            ANA_CSV,
            "--default-region",
            "MX",
            "--reason",
            "t",
            "--wait",
            "0",
        ])
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "in flight in campaign test-campaign",
        ))
        .stderr(predicates::str::contains("nothing was erased"));
    assert_eq!(ws.count("SELECT count(*) FROM suppressions"), 0);
    // Willing: it waits for the answer to be recorded, then removes the row.
    cmd(&ws)
        .args([
            "erase",
            ANA_CSV,
            "--default-region",
            "MX",
            "--reason",
            "t",
            "--wait",
            "30",
        ])
        .assert()
        .success()
        .stdout(predicates::str::contains("journal rows            1"));
    assert!(send.wait().unwrap().success());
    assert_eq!(mock.count(), 1, "sent once, not again");
    assert_eq!(
        ws.count("SELECT count(*) FROM journal"),
        0,
        "no half-erased row"
    );
    assert!(leaks(&ws, &[], ANA_SPELLINGS).is_empty());
    cmd(&ws).args(["consent", "verify"]).assert().success();
}

/// A send loads consent, then someone is erased before its plan is written: the
/// plan leaves them out (in-process, to hit the gap between the two every time).
#[test]
fn someone_erased_while_a_send_plans_is_not_planned() {
    use wacampaign::plan::{PlanItem, Planner};
    let ws = Workspace::new();
    let mock = MockServer::start();
    key_file(&ws);
    ws.write(
        "campaign.toml",
        format!("{CAMPAIGN}base_url = \"{}\"\n", mock.base_url()),
    );
    ws.write(
        "contacts.csv",
        format!("name,phone,date\n{ANA_NAME},{ANA_CSV},martes\nBeto,55 8765 4321,lunes\n"),
    );
    crate::support::opt_in_everyone(&ws.path().join("campaign.toml"), &ws.db());
    let campaign = wacampaign::campaign::Campaign::load(&ws.path().join("campaign.toml")).unwrap();
    let db = wacampaign::db::Db::open(&ws.db()).unwrap();
    let gate = wacampaign::gate::Gate::load(Some(&db.conn), &campaign).unwrap();
    let mut planner = Planner::new(&campaign, &gate).unwrap();
    let mut batch = Vec::new();
    while let Some(item) = planner.next_item().unwrap() {
        if let PlanItem::Eligible(r) = item {
            batch.push((batch.len() as u64 + 1, r));
        }
    }
    assert_eq!(batch.len(), 2, "both were eligible when consent was loaded");

    cmd(&ws)
        .args(["erase", "+52 55 3141 5926", "--reason", "t"])
        .assert()
        .success();

    let conn = rusqlite::Connection::open(ws.db()).unwrap();
    let (mut journal, _) =
        wacampaign::journal::Journal::begin(conn, &campaign, gate.clone(), false, None).unwrap();
    journal.plan(&batch).unwrap();
    drop(journal);
    let phones: Vec<String> = db
        .conn
        .prepare("SELECT phone FROM journal")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(phones, ["+525587654321"], "only Beto is planned");
}

/// A BSUID names the person it is linked to: erasing it erases their number too.
#[test]
fn erasing_a_bsuid_erases_the_number_linked_to_it() {
    let ws = Workspace::new();
    key_file(&ws);
    cmd(&ws)
        .args([
            "consent",
            "opt-in",
            "+525531415926",
            "--purpose",
            "utility",
            "--method",
            "web_form",
            "--source",
            "form 1",
        ])
        .assert()
        .success();
    let conn = rusqlite::Connection::open(ws.db()).unwrap();
    conn.execute(
        "INSERT INTO identities (bsuid, person_id, phone, linked_at)
         VALUES (?1, 525531415926, '+525531415926', '2026-11-01T00:00:00Z')",
        [ANA_BSUID],
    )
    .unwrap();
    drop(conn);
    // A stop recorded under the BSUID itself is hers too.
    cmd(&ws)
        .args([
            "consent",
            "opt-out",
            ANA_BSUID,
            "--source",
            "email, ticket 9",
        ])
        .assert()
        .success();
    cmd(&ws)
        .args(["erase", ANA_BSUID, "--reason", "request 77"])
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "erased 1 phone number(s) and 1 business-scoped ID(s)",
        ))
        .stdout(predicates::str::contains("consent events blanked  2"));
    let needles: Vec<&str> = ANA_SPELLINGS.iter().copied().chain([ANA_BSUID]).collect();
    assert_eq!(leaks(&ws, &[], &needles), Vec::<String>::new());
    cmd(&ws)
        .args([
            "consent",
            "opt-in",
            "+5215531415926",
            "--purpose",
            "utility",
            "--method",
            "web_form",
            "--source",
            "form 2",
        ])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("was erased on"));
}
