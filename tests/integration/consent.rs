//! The consent ledger, through the real binary on a real SQLite file: opt-outs win in
//! every order, WhatsApp's spellings of one number block each other, the ledger is
//! append-only and tamper-evident, exports are exact, an acknowledged opt-out
//! survives a kill, and bad input is refused with a message that says what to do.

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::process::Stdio;

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use wacampaign::consent::{Action, Event, NewEvent, Purpose, RecordedVia, hash_event};
use wacampaign::phone::E164;

use crate::consent_support::{Ledger, json_lines, text};

/// Opted in for marketing in every test that needs a contact who may receive it.
const ANA: &str = "+52 55 1234 5678";
const ANA_E164: &str = "+525512345678";
/// The same person as WhatsApp may still report her: the old `+52 1` mobile prefix.
const ANA_WA_ID: &str = "5215512345678";
const BETO: &str = "+52 55 2222 3333";
const CARLA: &str = "+52 55 4444 5555";
/// Never recorded in any ledger.
const NOBODY: &str = "+52 55 9999 0000";

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const BAD_DATE_HELP: &str = "use RFC 3339 (2026-11-21T09:30:00Z or with an offset, \
    2026-11-21T03:30:00-06:00), `2026-11-21 09:30:00` (UTC) or `2026-11-21`";

const STILL_BLOCKED: &str = "is still blocked for marketing: an opt-out is lifted only by a \
    later opt-in (by when the person acted) with its own evidence, and never by an import";

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Appends an event through the library, as a webhook receiver would: `wa_id` is the
/// number exactly as WhatsApp sent it, which need not be a valid number today.
fn webhook_event(ledger: &Ledger, wa_id: &str, action: Action, purpose: Purpose, at: &str) {
    let db = ledger.open();
    let appended = wacampaign::consent::Ledger::new(&db.conn)
        .append(&NewEvent {
            subject: E164::from_digits(wa_id).expect("a wa_id is digits").into(),
            purpose,
            action,
            occurred_at: at.to_owned(),
            method: "whatsapp_reply".to_owned(),
            recorded_via: RecordedVia::Webhook,
            source: format!("wamid.HBgN{wa_id}"),
            evidence: Some("STOP".to_owned()),
            notice: None,
            actor: "webhook".to_owned(),
            dedupe_key: Some(format!("webhook:wamid.HBgN{wa_id}:{at}")),
        })
        .expect("appending through the library");
    assert!(matches!(
        appended,
        wacampaign::consent::Appended::Recorded(_)
    ));
}

// ---- opt-out wins, in every order of events ----

#[test]
fn an_opt_out_after_an_opt_in_blocks() {
    let l = Ledger::new();
    l.opt_in(
        ANA,
        "marketing",
        "2026-01-10",
        "signup form v3, submission 1",
    );
    l.opt_in(
        BETO,
        "marketing",
        "2026-01-10",
        "signup form v3, submission 2",
    );
    l.opt_out(ANA, "marketing", "2026-02-01", "whatsapp_reply");

    assert_eq!(
        l.standing(ANA, "marketing"),
        "opted_out 2026-02-01 via whatsapp_reply"
    );
    assert_eq!(
        l.standing(BETO, "marketing"),
        "opted_in 2026-01-10 via web_form"
    );
    assert_eq!(l.standing(NOBODY, "marketing"), "no_opt_in");

    let checked = l.check("marketing", &[ANA, BETO, NOBODY]);
    assert_eq!(checked.eligible, [BETO]);
    assert_eq!(
        checked.excluded[ANA],
        "opted out on 2026-02-01 via whatsapp_reply"
    );
    assert_eq!(checked.excluded[NOBODY], "no opt-in for marketing");
}

#[test]
fn an_import_never_lifts_an_opt_out_even_dated_later() {
    let l = Ledger::new();
    l.opt_out(ANA, "all", "2026-02-01", "whatsapp_reply");
    // A CRM export claiming Ana signed up a month after she opted out.
    l.write(
        "crm.csv",
        format!(
            "phone,signed_up_at,form_id\n{ANA},2026-03-01,crm-881\n{BETO},2026-03-01,crm-882\n"
        ),
    );
    l.consent(&[
        "import",
        "crm.csv",
        "--purpose",
        "marketing",
        "--method",
        "web_form",
        "--occurred-column",
        "signed_up_at",
        "--evidence-column",
        "form_id",
    ])
    .assert()
    .success()
    .stdout(predicates::str::contains(
        "  recorded              2\n  already present       0\n  blocked by opt-out    1\n",
    ));

    assert_eq!(
        l.standing(ANA, "marketing"),
        "opted_out 2026-02-01 via whatsapp_reply"
    );
    assert_eq!(
        l.standing(BETO, "marketing"),
        "opted_in 2026-03-01 via web_form"
    );
    let checked = l.check("marketing", &[ANA, BETO]);
    assert_eq!(checked.eligible, [BETO]);
    assert_eq!(
        checked.excluded[ANA],
        "opted out on 2026-02-01 via whatsapp_reply"
    );
}

#[test]
fn an_opt_out_for_all_blocks_a_marketing_opt_in_and_a_utility_one() {
    let l = Ledger::new();
    l.opt_in(
        ANA,
        "marketing",
        "2026-01-10",
        "signup form v3, submission 1",
    );
    l.opt_in(ANA, "utility", "2026-01-10", "signup form v3, submission 1");
    l.opt_out(ANA, "all", "2026-02-01", "operator");
    // An opt-out from marketing alone leaves utility messages allowed.
    l.opt_in(
        BETO,
        "marketing",
        "2026-01-10",
        "signup form v3, submission 2",
    );
    l.opt_in(
        BETO,
        "utility",
        "2026-01-10",
        "signup form v3, submission 2",
    );
    l.opt_out(BETO, "marketing", "2026-02-01", "whatsapp_reply");

    assert_eq!(
        l.standing(ANA, "marketing"),
        "opted_out 2026-02-01 via operator"
    );
    assert_eq!(
        l.standing(ANA, "utility"),
        "opted_out 2026-02-01 via operator"
    );
    assert_eq!(
        l.standing(BETO, "marketing"),
        "opted_out 2026-02-01 via whatsapp_reply"
    );
    assert_eq!(
        l.standing(BETO, "utility"),
        "opted_in 2026-01-10 via web_form"
    );

    let marketing = l.check("marketing", &[ANA, BETO]);
    assert!(marketing.eligible.is_empty(), "{marketing:?}");
    assert_eq!(
        marketing.excluded[ANA],
        "opted out on 2026-02-01 via operator"
    );
    assert_eq!(
        marketing.excluded[BETO],
        "opted out on 2026-02-01 via whatsapp_reply"
    );
    for category in ["utility", "authentication"] {
        let checked = l.check(category, &[ANA, BETO]);
        assert_eq!(checked.eligible, [BETO], "{category}");
        assert_eq!(
            checked.excluded[ANA], "opted out on 2026-02-01 via operator",
            "{category}"
        );
    }
}

#[test]
fn a_later_opt_in_with_its_own_evidence_lifts_an_opt_out() {
    let l = Ledger::new();
    // Ana opted out of everything, then signed up for offers again on a form.
    l.opt_in(
        ANA,
        "marketing",
        "2026-01-10",
        "signup form v3, submission 1",
    );
    l.opt_out(ANA, "all", "2026-02-01", "whatsapp_reply");
    l.consent(&[
        "opt-in",
        ANA,
        "--purpose",
        "marketing",
        "--method",
        "web_form",
        "--source",
        "signup form v4, submission 77",
        "--evidence",
        "ticked: offers by WhatsApp",
        "--occurred-at",
        "2026-03-01T12:00:00Z",
    ])
    .assert()
    .success()
    .stdout(format!(
        "recorded opt_in #3: {ANA_E164} marketing\n\
         {ANA_E164} may receive marketing messages: opted in on 2026-03-01 via web_form\n"
    ))
    .stderr("");
    // Beto's opt-in is recorded after his opt-out, but he gave it before: it does
    // not lift the opt-out. Nor does Carla's, given in the same second as hers.
    l.opt_out(BETO, "all", "2026-02-01", "whatsapp_reply");
    l.opt_in(
        BETO,
        "marketing",
        "2026-01-20",
        "signup form v3, submission 2",
    );
    l.opt_out(CARLA, "marketing", "2026-02-01T10:00:00Z", "whatsapp_reply");
    l.opt_in(
        CARLA,
        "marketing",
        "2026-02-01T10:00:00Z",
        "signup form v3, submission 3",
    );

    assert_eq!(
        l.standing(ANA, "marketing"),
        "opted_in 2026-03-01 via web_form"
    );
    // The new opt-in was for marketing only: the opt-out still stands for utility.
    assert_eq!(
        l.standing(ANA, "utility"),
        "opted_out 2026-02-01 via whatsapp_reply"
    );
    assert_eq!(
        l.standing(BETO, "marketing"),
        "opted_out 2026-02-01 via whatsapp_reply"
    );
    assert_eq!(
        l.standing(CARLA, "marketing"),
        "opted_out 2026-02-01 via whatsapp_reply"
    );

    let marketing = l.check("marketing", &[ANA, BETO, CARLA]);
    assert_eq!(marketing.eligible, [ANA]);
    assert_eq!(
        marketing.excluded[BETO],
        "opted out on 2026-02-01 via whatsapp_reply"
    );
    assert_eq!(
        marketing.excluded[CARLA],
        "opted out on 2026-02-01 via whatsapp_reply"
    );
    let authentication = l.check("authentication", &[ANA]);
    assert_eq!(
        authentication.excluded[ANA],
        "opted out on 2026-02-01 via whatsapp_reply"
    );
}

#[test]
fn authentication_campaigns_need_utility_consent() {
    let l = Ledger::new();
    l.opt_in(
        ANA,
        "marketing",
        "2026-01-10",
        "signup form v3, submission 1",
    );
    l.opt_in(
        BETO,
        "utility",
        "2026-01-10",
        "clinic intake form, patient 12",
    );

    for category in ["authentication", "utility"] {
        let checked = l.check(category, &[ANA, BETO]);
        assert_eq!(checked.eligible, [BETO], "{category}");
        assert_eq!(checked.excluded[ANA], "no opt-in for utility", "{category}");
    }
    let marketing = l.check("marketing", &[ANA, BETO]);
    assert_eq!(marketing.eligible, [ANA]);
    assert_eq!(marketing.excluded[BETO], "no opt-in for marketing");
}

// ---- WhatsApp's spellings of one number ----

#[test]
fn mexican_spellings_block_each_other() {
    let l = Ledger::new();
    l.opt_in(
        ANA,
        "marketing",
        "2026-01-10",
        "signup form v3, submission 1",
    );
    // The opt-out arrives from WhatsApp under the old `+52 1` spelling.
    webhook_event(
        &l,
        ANA_WA_ID,
        Action::OptOut,
        Purpose::All,
        "2026-02-01T08:00:00Z",
    );
    // And an operator types Beto's opt-out with the `1`, his opt-in was without.
    l.opt_in(
        BETO,
        "marketing",
        "2026-01-10",
        "signup form v3, submission 2",
    );
    l.opt_out("+52 1 55 2222 3333", "all", "2026-02-01", "operator");

    for spelling in [ANA, "+52 1 55 1234 5678"] {
        assert_eq!(
            l.standing(spelling, "marketing"),
            "opted_out 2026-02-01 via whatsapp_reply",
            "{spelling}"
        );
        let subjects: Vec<Value> = l.show(spelling)["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["subject"].clone())
            .collect();
        assert_eq!(subjects, [ANA_E164, "+5215512345678"], "{spelling}");
    }
    assert_eq!(
        l.standing(BETO, "marketing"),
        "opted_out 2026-02-01 via operator"
    );
    for ana in [ANA, "+52 1 55 1234 5678", "+5215512345678"] {
        let contacts = [ana, BETO, "+52 1 55 2222 3333"];
        let checked = l.check("marketing", &contacts[..2]);
        assert!(checked.eligible.is_empty(), "{checked:?}");
        assert_eq!(
            checked.excluded[ana], "opted out on 2026-02-01 via whatsapp_reply",
            "{ana}"
        );
        let checked = l.check("marketing", &contacts[2..]);
        assert_eq!(
            checked.excluded["+52 1 55 2222 3333"],
            "opted out on 2026-02-01 via operator"
        );
    }
}

#[test]
fn argentine_spellings_block_each_other() {
    let l = Ledger::new();
    // Opted in as a mobile (+54 9), opted out without the 9 ...
    l.opt_in(
        "+54 9 11 2345 6789",
        "marketing",
        "2026-01-10",
        "formulario web v2, envío 1",
    );
    l.opt_out("+54 11 2345 6789", "all", "2026-02-01", "operator");
    // ... and the other way round.
    l.opt_in(
        "+54 11 3456 7890",
        "marketing",
        "2026-01-10",
        "formulario web v2, envío 2",
    );
    l.opt_out(
        "+54 9 11 3456 7890",
        "marketing",
        "2026-02-01",
        "whatsapp_reply",
    );

    for spelling in ["+54 9 11 2345 6789", "+54 11 2345 6789"] {
        assert_eq!(
            l.standing(spelling, "marketing"),
            "opted_out 2026-02-01 via operator",
            "{spelling}"
        );
    }
    for spelling in ["+54 11 3456 7890", "+54 9 11 3456 7890"] {
        assert_eq!(
            l.standing(spelling, "marketing"),
            "opted_out 2026-02-01 via whatsapp_reply",
            "{spelling}"
        );
    }
    let checked = l.check("marketing", &["+54 9 11 2345 6789", "+54 11 3456 7890"]);
    assert!(checked.eligible.is_empty(), "{checked:?}");
    assert_eq!(
        checked.excluded["+54 9 11 2345 6789"],
        "opted out on 2026-02-01 via operator"
    );
    assert_eq!(
        checked.excluded["+54 11 3456 7890"],
        "opted out on 2026-02-01 via whatsapp_reply"
    );
}

#[test]
fn brazilian_spellings_block_each_other() {
    let l = Ledger::new();
    l.opt_in(
        "+55 11 98765-4321",
        "marketing",
        "2026-01-10",
        "formulário web v1, envio 9",
    );
    // The account predates the ninth digit, so WhatsApp reports the opt-out under
    // the 8-digit spelling, which libphonenumber no longer accepts as typed input.
    webhook_event(
        &l,
        "551187654321",
        Action::OptOut,
        Purpose::All,
        "2026-02-01T08:00:00Z",
    );

    assert_eq!(
        l.standing("+55 11 98765-4321", "marketing"),
        "opted_out 2026-02-01 via whatsapp_reply"
    );
    let subjects: Vec<Value> = l.show("+55 11 98765-4321")["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["subject"].clone())
        .collect();
    assert_eq!(subjects, ["+5511987654321", "+551187654321"]);

    let checked = l.check("marketing", &["+55 11 98765-4321"]);
    assert_eq!(
        checked.excluded["+55 11 98765-4321"],
        "opted out on 2026-02-01 via whatsapp_reply"
    );
    // An import of the new spelling cannot lift it either.
    l.write("leads.csv", "phone\n+55 11 98765-4321\n");
    let out = l
        .consent(&[
            "import",
            "leads.csv",
            "--purpose",
            "marketing",
            "--method",
            "web_form",
            "--json",
        ])
        .assert()
        .success();
    let summary = &json_lines(&out.get_output().stdout)[0]["data"];
    assert_eq!(summary["recorded"], 1);
    assert_eq!(summary["blocked_by_opt_out"], 1);
    assert_eq!(
        l.check("marketing", &["+55 11 98765-4321"]).excluded["+55 11 98765-4321"],
        "opted out on 2026-02-01 via whatsapp_reply"
    );
}

// ---- append-only ----

#[test]
fn update_and_delete_through_sqlite3_are_refused() {
    let l = Ledger::new();
    l.opt_in(
        ANA,
        "marketing",
        "2026-01-10",
        "signup form v3, submission 1",
    );
    l.opt_out(ANA, "all", "2026-02-01", "whatsapp_reply");
    let notice = l.write("notice.txt", "Acepto recibir ofertas por WhatsApp.");
    l.consent(&[
        "opt-in",
        BETO,
        "--purpose",
        "marketing",
        "--method",
        "web_form",
        "--source",
        "form 3",
        "--notice-file",
    ])
    .arg(&notice)
    .assert()
    .success();
    // An imported event, the one kind with a dedupe key.
    l.write("optins.csv", format!("phone\n{CARLA}\n"));
    l.consent(&[
        "import",
        "optins.csv",
        "--purpose",
        "utility",
        "--method",
        "paper",
    ])
    .assert()
    .success();
    assert_eq!(
        l.query("SELECT count(*) FROM consent_events WHERE dedupe_key IS NOT NULL"),
        "1\n"
    );
    let all_rows = "SELECT * FROM consent_events ORDER BY id; SELECT * FROM consent_notices;";
    let before = l.query(all_rows);

    for (sql, message) in [
        (
            "UPDATE consent_events SET action = 'opt_in' WHERE id = 2",
            "consent_events is append-only: record a new event instead",
        ),
        (
            "DELETE FROM consent_events WHERE id = 2",
            "consent_events is append-only: record an opt-out instead",
        ),
        (
            "UPDATE consent_notices SET text = 'Acepto todo.'",
            "consent_notices is append-only",
        ),
        (
            "DELETE FROM consent_notices",
            "consent_notices is append-only",
        ),
        // REPLACE's hidden delete fires no DELETE trigger: each of these edited
        // event 2 or the notice in place before migration 0005.
        (
            "REPLACE INTO consent_events SELECT id, subject, subject_key, purpose, 'opt_in', \
             occurred_at, recorded_at, method, recorded_via, source, evidence, notice_hash, \
             actor, dedupe_key, prev_hash, hash, format, salt, commitment FROM consent_events WHERE id = 2",
            "consent_events is append-only",
        ),
        (
            "INSERT OR REPLACE INTO consent_events SELECT id, subject, subject_key, 'utility', \
             action, occurred_at, recorded_at, method, recorded_via, source, evidence, \
             notice_hash, actor, dedupe_key, prev_hash, hash, format, salt, commitment FROM consent_events WHERE id = 2",
            "consent_events is append-only",
        ),
        (
            "INSERT INTO consent_events SELECT * FROM consent_events WHERE id = 2 \
             ON CONFLICT (id) DO UPDATE SET action = 'opt_in'",
            "consent_events is append-only",
        ),
        (
            "INSERT INTO consent_events SELECT * FROM consent_events WHERE id = 2",
            "consent_events is append-only",
        ),
        // A new id under an existing dedupe key: REPLACE would delete the imported event.
        (
            "INSERT OR REPLACE INTO consent_events (id, subject, subject_key, purpose, action, \
             occurred_at, recorded_at, method, recorded_via, source, evidence, notice_hash, \
             actor, dedupe_key, prev_hash, hash) SELECT 99, subject, subject_key, purpose, \
             'opt_in', occurred_at, recorded_at, method, recorded_via, source, evidence, \
             notice_hash, actor, dedupe_key, prev_hash, hash FROM consent_events \
             WHERE dedupe_key IS NOT NULL",
            "consent_events is append-only",
        ),
        (
            "REPLACE INTO consent_notices SELECT hash, 'Acepto todo.', recorded_at \
             FROM consent_notices",
            "consent_notices is append-only",
        ),
        (
            "INSERT OR REPLACE INTO consent_notices SELECT hash, 'Acepto todo.', recorded_at \
             FROM consent_notices",
            "consent_notices is append-only",
        ),
        (
            "INSERT INTO consent_notices SELECT hash, 'Acepto todo.', recorded_at \
             FROM consent_notices WHERE true ON CONFLICT (hash) DO UPDATE SET text = excluded.text",
            "consent_notices is append-only",
        ),
    ] {
        let out = l.sqlite3(sql);
        assert!(!out.status.success(), "{sql} succeeded");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(message), "{sql}: {stderr}");
        assert_eq!(l.query(all_rows), before, "{sql} changed a row");
    }
    // The same notice text again is skipped, not refused (the ledger cites a notice
    // with INSERT OR IGNORE), and changes nothing either.
    for sql in [
        "INSERT OR IGNORE INTO consent_notices SELECT hash, text, 'later' FROM consent_notices",
        "INSERT OR REPLACE INTO consent_notices SELECT hash, text, 'later' FROM consent_notices",
    ] {
        let out = l.sqlite3(sql);
        assert!(out.status.success(), "{sql}: {}", text(&out.stderr));
    }
    assert_eq!(l.query(all_rows), before, "no row changed");
    assert_eq!(
        l.standing(ANA, "marketing"),
        "opted_out 2026-02-01 via whatsapp_reply"
    );
    l.consent(&["verify"])
        .assert()
        .success()
        .stdout(predicates::str::starts_with(
            "ledger intact: 4 events, head ",
        ));
}

// ---- tamper evidence ----

/// Records four events; the second carries `marker` in its source.
fn four_events(l: &Ledger, marker: &str) {
    l.opt_in(
        ANA,
        "marketing",
        "2026-01-10",
        "signup form v3, submission 1",
    );
    l.opt_in(BETO, "marketing", "2026-01-11", marker);
    l.opt_in(
        CARLA,
        "utility",
        "2026-01-12",
        "clinic intake form, patient 12",
    );
    l.opt_out(ANA, "all", "2026-02-01", "whatsapp_reply");
}

/// The hash `verify` reports as the head.
fn head(l: &Ledger) -> String {
    let out = l.consent(&["verify"]).assert().success();
    let stdout = text(&out.get_output().stdout);
    stdout
        .trim_end()
        .rsplit(' ')
        .next()
        .expect("verify prints the head last")
        .to_owned()
}

#[test]
fn a_byte_edited_in_the_file_is_named_by_verify() {
    let l = Ledger::new();
    let marker = "ticket-7731 signed consent";
    four_events(&l, marker);
    l.consent(&["verify"])
        .assert()
        .success()
        .stdout(predicates::str::starts_with(
            "ledger intact: 4 events, head ",
        ));

    // The writer has closed, so every commit is in the main file, not in a WAL.
    let wal = l.wal();
    assert!(
        !wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0,
        "{} holds frames not yet in the database file",
        wal.display()
    );
    // An attacker with the file edits it directly: no SQL, so no trigger fires.
    let mut bytes = std::fs::read(l.db()).unwrap();
    let at: Vec<usize> = bytes
        .windows(marker.len())
        .enumerate()
        .filter(|(_, w)| *w == marker.as_bytes())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "the marker is stored once");
    let digit = at[0] + "ticket-773".len();
    bytes[digit] ^= 0x01; // `1` becomes `0`
    std::fs::write(l.db(), &bytes).unwrap();
    assert_eq!(
        l.query("SELECT source FROM consent_events WHERE id = 2"),
        "ticket-7730 signed consent\n",
        "the edit took"
    );

    l.consent(&["verify"]).assert().code(1).stdout(
        "ledger BROKEN at event #2: its content does not match its hash: the event was edited\n",
    );
    let out = l.consent(&["verify", "--json"]).assert().code(1);
    let report = &json_lines(&out.get_output().stdout)[0]["data"];
    assert_eq!(report["intact"], false);
    assert_eq!(report["report"]["first_broken"]["id"], 2);
    assert_eq!(report["report"]["events"], 4);
}

#[test]
fn an_edited_or_deleted_notice_is_named_by_verify() {
    let l = Ledger::new();
    let notice = "Acepto recibir ofertas de Tienda Roma por WhatsApp.";
    l.write("notice.txt", notice);
    for number in [ANA, BETO] {
        l.consent(&[
            "opt-in",
            number,
            "--purpose",
            "marketing",
            "--method",
            "web_form",
            "--source",
            "signup form v3",
            "--notice-file",
            "notice.txt",
        ])
        .assert()
        .success();
    }
    let hash = sha256_hex(notice.as_bytes());
    assert_eq!(
        l.query("SELECT hash FROM consent_notices"),
        format!("{hash}\n")
    );

    // The events' hashes cover the notice's hash, not its text: change the text.
    let wal = l.wal();
    assert!(!wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0);
    let mut bytes = std::fs::read(l.db()).unwrap();
    let at: Vec<usize> = bytes
        .windows(notice.len())
        .enumerate()
        .filter(|(_, w)| *w == notice.as_bytes())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "the notice is stored once");
    bytes[at[0] + "Acepto recibir ofert".len()] ^= 0x03; // `a` becomes `b`
    std::fs::write(l.db(), &bytes).unwrap();
    assert_eq!(
        l.query("SELECT text FROM consent_notices"),
        "Acepto recibir ofertbs de Tienda Roma por WhatsApp.\n"
    );
    l.consent(&["verify"]).assert().code(1).stdout(format!(
        "notice {hash}: its text does not match its hash: the notice was edited\n"
    ));

    l.query("DROP TRIGGER consent_notices_append_only_delete; DELETE FROM consent_notices;");
    l.consent(&["verify"]).assert().code(1).stdout(format!(
        "trigger consent_notices_append_only_delete is missing or altered: events could be \
         changed in place\n\
         notice {hash}: event #1 refers to it, but it is missing: the notice was deleted\n"
    ));
}

#[test]
fn a_deleted_middle_event_names_the_first_broken_one() {
    let l = Ledger::new();
    four_events(&l, "signup form v3, submission 2");
    l.query(
        "DROP TRIGGER consent_events_append_only_delete;
         DELETE FROM consent_events WHERE id = 2;",
    );
    l.consent(&["verify"]).assert().code(1).stdout(
        "trigger consent_events_append_only_delete is missing or altered: events could be \
         changed in place\n\
         ledger BROKEN at event #3: event 2 is missing (the next event is 3)\n",
    );
}

#[test]
fn a_deleted_event_is_found_even_when_the_gap_and_triggers_are_restored() {
    let l = Ledger::new();
    four_events(&l, "signup form v3, submission 2");
    // A careful attacker renumbers the later events and puts the triggers back.
    let triggers = l.query(
        "SELECT sql || ';' FROM sqlite_master WHERE type = 'trigger' AND name IN \
         ('consent_events_append_only_delete', 'consent_events_append_only_update')",
    );
    l.query(&format!(
        "DROP TRIGGER consent_events_append_only_delete;
         DROP TRIGGER consent_events_append_only_update;
         DELETE FROM consent_events WHERE id = 2;
         UPDATE consent_events SET id = id - 1 WHERE id > 2;
         {triggers}"
    ));
    assert_eq!(
        l.query("SELECT group_concat(id) FROM consent_events"),
        "1,2,3\n"
    );
    l.consent(&["verify"]).assert().code(1).stdout(
        "ledger BROKEN at event #2: its prev_hash does not match the event before it: an \
         event was removed, inserted or reordered\n",
    );
}

#[test]
fn a_truncated_ledger_is_caught_with_the_head_noted_earlier() {
    let l = Ledger::new();
    four_events(&l, "signup form v3, submission 2");
    let first_hash = l.query("SELECT hash FROM consent_events WHERE id = 1");
    let noted = head(&l);

    let trigger = l.query(
        "SELECT sql || ';' FROM sqlite_master WHERE name = 'consent_events_append_only_delete'",
    );
    l.query(&format!(
        "DROP TRIGGER consent_events_append_only_delete;
         DELETE FROM consent_events WHERE id = 4;
         {trigger}"
    ));
    // What is left is a valid chain: only the noted head shows what is missing.
    let cut = head(&l);
    assert_ne!(cut, noted);
    l.consent(&["verify"])
        .assert()
        .success()
        .stdout(format!("ledger intact: 3 events, head {cut}\n"));
    l.consent(&["verify", "--expect-head", &noted])
        .assert()
        .code(1)
        .stdout(
            "the expected head is not in the chain: events were cut from the end or the \
             chain was rebuilt\n",
        );
    // Appending after the cut does not hide it.
    l.opt_in(
        NOBODY,
        "utility",
        "2026-03-01",
        "clinic intake form, patient 13",
    );
    l.consent(&["verify", "--expect-head", &noted])
        .assert()
        .code(1);
    let out = l
        .consent(&["verify", "--expect-head", &noted, "--json"])
        .assert()
        .code(1);
    let data = &json_lines(&out.get_output().stdout)[0]["data"];
    assert_eq!(data["intact"], false);
    assert_eq!(data["expected_head_found"], false);
    // An older head, still in the chain, is fine.
    l.consent(&["verify", "--expect-head", first_hash.trim_end()])
        .assert()
        .success();
}

// ---- export ----

/// A ledger with every kind of event: CLI opt-ins with evidence and a notice, an
/// import, a webhook opt-out under a variant spelling, and a CLI opt-out.
fn varied_ledger() -> Ledger {
    let l = Ledger::new();
    l.write(
        "notice.txt",
        "- Acepto recibir ofertas de Tienda Roma por WhatsApp.\nPuedo darme de baja con BAJA.\n",
    );
    l.consent(&[
        "opt-in",
        ANA,
        "--purpose",
        "marketing",
        "--method",
        "web_form",
        "--source",
        "=HYPERLINK(\"http://example.com\",\"form\")",
        "--evidence",
        "@SUM(A1) ticked",
        "--notice-file",
        "notice.txt",
        "--occurred-at",
        "2026-01-10T09:30:00-06:00",
        "--actor",
        "maria@tienda",
    ])
    .assert()
    .success();
    l.write(
        "crm.csv",
        format!("phone,fecha,folio\n{BETO},2026-01-11,F-1\n{CARLA},2026-01-12,\n"),
    );
    l.consent(&[
        "import",
        "crm.csv",
        "--purpose",
        "utility",
        "--method",
        "paper",
        "--occurred-column",
        "fecha",
        "--evidence-column",
        "folio",
        "--notice-file",
        "notice.txt",
    ])
    .assert()
    .success();
    webhook_event(
        &l,
        ANA_WA_ID,
        Action::OptOut,
        Purpose::Marketing,
        "2026-02-01T08:00:00Z",
    );
    l.opt_out(CARLA, "all", "2026-02-02", "operator");
    l
}

#[test]
fn the_json_export_round_trips_every_event() {
    let l = varied_ledger();
    let out = l
        .consent(&["export", "--format", "json"])
        .assert()
        .success();
    let lines = json_lines(&out.get_output().stdout);
    let recorded = l.query_json("SELECT * FROM consent_events ORDER BY id");
    let events: Vec<&Value> = lines
        .iter()
        .filter(|r| r["type"] == "event")
        .map(|r| &r["data"])
        .collect();
    assert_eq!(events.len(), 5);
    assert_eq!(events.len(), recorded.len());

    let mut prev = GENESIS.to_owned();
    for (exported, row) in events.iter().zip(&recorded) {
        // Every column but the internal matching key is exported, unchanged.
        let mut row = row.as_object().unwrap().clone();
        row.remove("subject_key");
        assert_eq!(*exported, &Value::Object(row));
        let event: Event = serde_json::from_value((*exported).clone()).unwrap();
        assert_eq!(
            event.prev_hash, prev,
            "event #{} links to the one before",
            event.id
        );
        assert_eq!(hash_event(&event), event.hash, "event #{}", event.id);
        prev = event.hash;
    }
    assert_eq!(
        head(&l),
        prev,
        "the exported chain ends at the ledger's head"
    );

    // What was recorded is what was asked for.
    let ana: Event = serde_json::from_value(events[0].clone()).unwrap();
    let notice_text =
        "- Acepto recibir ofertas de Tienda Roma por WhatsApp.\nPuedo darme de baja con BAJA.\n";
    let notice_hash = sha256_hex(notice_text.as_bytes());
    assert_eq!(
        (
            ana.subject.as_str(),
            ana.purpose.as_str(),
            ana.action.as_str(),
            ana.occurred_at.as_str(),
            ana.method.as_str(),
            ana.recorded_via.as_str(),
            ana.source.as_str(),
            ana.evidence.as_deref(),
            ana.notice_hash.as_deref(),
            ana.actor.as_str(),
            ana.dedupe_key.as_deref(),
        ),
        (
            ANA_E164,
            "marketing",
            "opt_in",
            "2026-01-10T15:30:00Z",
            "web_form",
            "command",
            "=HYPERLINK(\"http://example.com\",\"form\")",
            Some("@SUM(A1) ticked"),
            Some(notice_hash.as_str()),
            "maria@tienda",
            None,
        )
    );
    let crm_sha = sha256_hex(l.read("crm.csv").as_bytes());
    let carla: Event = serde_json::from_value(events[2].clone()).unwrap();
    assert_eq!(carla.recorded_via, "import");
    assert_eq!(carla.source, format!("crm.csv sha256:{crm_sha} line 3"));
    assert_eq!(
        carla.evidence, None,
        "an empty evidence cell is no evidence"
    );
    assert_eq!(
        carla.dedupe_key.as_deref(),
        Some(format!("import:{crm_sha}:3:utility:opt_in").as_str())
    );
    let webhook: Event = serde_json::from_value(events[3].clone()).unwrap();
    assert_eq!(webhook.subject, "+5215512345678");

    // The notice, once, with a hash anyone can recompute.
    let notices: Vec<&Value> = lines
        .iter()
        .filter(|r| r["type"] == "notice")
        .map(|r| &r["data"])
        .collect();
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0]["hash"], notice_hash.as_str());
    assert_eq!(notices[0]["text"], notice_text);
    assert_eq!(lines.len(), events.len() + notices.len());
}

#[test]
fn the_csv_export_is_safe_to_open_in_a_spreadsheet_and_carries_the_notice() {
    let l = varied_ledger();
    let out = l.consent(&["export", "--format", "csv"]).assert().success();
    let stdout = text(&out.get_output().stdout);
    let mut reader = csv::Reader::from_reader(stdout.as_bytes());
    assert_eq!(
        reader.headers().unwrap(),
        vec![
            "id",
            "subject",
            "purpose",
            "action",
            "occurred_at",
            "recorded_at",
            "method",
            "recorded_via",
            "source",
            "evidence",
            "notice_hash",
            "notice_text",
            "actor",
            "dedupe_key",
            "prev_hash",
            "hash"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 5);
    let notice_text =
        "- Acepto recibir ofertas de Tienda Roma por WhatsApp.\nPuedo darme de baja con BAJA.\n";
    let ana = &rows[0];
    assert_eq!(&ana[1], "'+525512345678");
    assert_eq!(&ana[8], "'=HYPERLINK(\"http://example.com\",\"form\")");
    assert_eq!(&ana[9], "'@SUM(A1) ticked");
    assert_eq!(&ana[10], sha256_hex(notice_text.as_bytes()));
    assert_eq!(&ana[11], format!("'{notice_text}"));
    assert_eq!(&ana[12], "maria@tienda");
    // Every phone cell is escaped, the variant spelling too.
    let subjects: Vec<&str> = rows.iter().map(|r| &r[1]).collect();
    assert_eq!(
        subjects,
        [
            "'+525512345678",
            "'+525522223333",
            "'+525544445555",
            "'+5215512345678",
            "'+525544445555"
        ]
    );
    // The imported rows carry the notice too.
    assert_eq!(&rows[1][11], format!("'{notice_text}"));
    assert_eq!(&rows[4][11], "", "the opt-out had no notice");

    // --output writes the same bytes.
    l.consent(&["export", "--format", "csv", "--output", "ledger.csv"])
        .assert()
        .success()
        .stdout("");
    assert_eq!(l.read("ledger.csv"), stdout);
    let mode = std::fs::metadata(l.dir().join("ledger.csv"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the export is as private as the ledger"
    );
}

#[test]
fn export_subject_keeps_one_person_with_their_variant_spellings() {
    let l = varied_ledger();
    for spelling in [ANA, "+52 1 55 1234 5678"] {
        let out = l
            .consent(&["export", "--format", "json", "--subject", spelling])
            .assert()
            .success();
        let lines = json_lines(&out.get_output().stdout);
        let kinds_and_ids: Vec<(String, Value)> = lines
            .iter()
            .map(|r| {
                (
                    r["type"].as_str().unwrap().to_owned(),
                    r["data"]["id"].clone(),
                )
            })
            .collect();
        assert_eq!(
            kinds_and_ids,
            [
                ("event".to_owned(), Value::from(1)),
                ("event".to_owned(), Value::from(4)),
                ("notice".to_owned(), Value::Null),
            ],
            "{spelling}"
        );
        assert_eq!(lines[1]["data"]["subject"], "+5215512345678");

        let out = l
            .consent(&["export", "--format", "csv", "--subject", spelling])
            .assert()
            .success();
        let stdout = text(&out.get_output().stdout);
        let mut reader = csv::Reader::from_reader(stdout.as_bytes());
        let ids: Vec<String> = reader.records().map(|r| r.unwrap()[0].to_owned()).collect();
        assert_eq!(ids, ["1", "4"], "{spelling}");
    }
    // Someone with no notice gets none.
    let out = l
        .consent(&["export", "--format", "json", "--subject", NOBODY])
        .assert()
        .success();
    assert_eq!(text(&out.get_output().stdout), "");
}

// ---- durability ----

#[test]
fn an_opt_out_acknowledged_before_a_kill_is_kept() {
    let l = Ledger::new();
    l.opt_in(
        ANA,
        "marketing",
        "2026-01-10",
        "signup form v3, submission 1",
    );
    let numbers = [
        "+52 55 1234 5678",
        "+52 55 2222 3333",
        "+52 55 4444 5555",
        "+52 55 6666 7777",
        "+52 55 8888 9999",
    ];
    let mut killed = 0;
    for number in numbers {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("wacampaign"))
            .current_dir(l.dir())
            .env("WACAMPAIGN_ACTOR", "test-operator")
            .args(["--color", "never", "--db"])
            .arg(l.db())
            .args([
                "consent",
                "opt-out",
                number,
                "--method",
                "whatsapp_reply",
                "--source",
                "call, ticket 4411",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting wacampaign");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            let n = stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "wacampaign ended without acknowledging the opt-out");
            if line.starts_with("recorded opt_out") {
                break;
            }
        }
        // The moment it says so, pull the plug: no clean close, no checkpoint.
        child.kill().expect("sending SIGKILL");
        let status = child.wait().unwrap();
        assert!(
            status.signal() == Some(9) || status.success(),
            "wacampaign failed on its own: {status:?}"
        );
        killed += u32::from(status.signal() == Some(9));

        let data = l.show(number);
        let last = data["events"].as_array().unwrap().last().cloned().unwrap();
        assert_eq!(last["action"], "opt_out", "{number}");
        assert_eq!(last["source"], "call, ticket 4411");
        assert_eq!(data["standing"]["marketing"]["state"], "opted_out");
    }
    // The kill lands before the process would have exited by itself (20 out of 20
    // when this was written): the test is not passing on clean exits alone.
    assert!(killed > 0, "no run was killed before it exited");
    l.consent(&["verify"])
        .assert()
        .success()
        .stdout(predicates::str::starts_with(
            "ledger intact: 6 events, head ",
        ));
}

#[test]
fn concurrent_writers_on_a_new_ledger_keep_one_chain() {
    let l = Ledger::new();
    // Four operators at once, the first of them creating the database.
    let children: Vec<std::process::Child> = (0..4)
        .map(|writer| {
            let script = (0..5)
                .map(|i| {
                    format!(
                        "\"$0\" --color never --db \"$1\" consent opt-out \
                         '+52 55 10{writer}0 00{i:02}' --source 'writer {writer} event {i}' || exit 1"
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .arg(assert_cmd::cargo::cargo_bin("wacampaign"))
                .arg(l.db())
                .env("WACAMPAIGN_ACTOR", "test-operator")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("starting a writer")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    l.consent(&["verify"])
        .assert()
        .success()
        .stdout(predicates::str::starts_with(
            "ledger intact: 20 events, head ",
        ));
    assert_eq!(
        l.query("SELECT count(DISTINCT subject) FROM consent_events"),
        "20\n"
    );
}

// ---- bad input ----

#[test]
fn an_import_row_with_a_bad_date_is_reported_with_its_line_and_skipped() {
    let l = Ledger::new();
    let csv = format!(
        "phone,signed_up_at,form_id\n\
         {ANA},2026-03-01,form-1\n\
         {BETO},21/11/2026,form-2\n\
         {CARLA},2026-03-01T09:30:00-06:00,form-3\n"
    );
    l.write("optins.csv", &csv);
    l.consent(&[
        "import",
        "optins.csv",
        "--purpose",
        "marketing",
        "--method",
        "web_form",
        "--occurred-column",
        "signed_up_at",
    ])
    .assert()
    .success()
    .stdout(format!(
        "imported optins.csv (sha256 {})\n  \
         recorded              2\n  \
         already present       0\n  \
         blocked by opt-out    0\n  \
         invalid               1\n",
        sha256_hex(csv.as_bytes())
    ))
    .stderr(format!(
        "warning: optins.csv line 3: invalid date: `21/11/2026` is not a date; {BAD_DATE_HELP}; skipped\n"
    ));
    assert_eq!(l.event_ids(BETO), Vec::<i64>::new());
    assert_eq!(
        l.show(CARLA)["events"][0]["occurred_at"],
        "2026-03-01T15:30:00Z",
        "an offset is converted to UTC"
    );
}

#[test]
fn a_bad_occurred_at_is_refused_and_nothing_is_written() {
    let l = Ledger::new();
    for bad in ["21/11/2026", "2026-02-30", "yesterday"] {
        l.consent(&[
            "opt-out",
            ANA,
            "--source",
            "ticket 4411",
            "--occurred-at",
            bad,
        ])
        .assert()
        .code(2)
        .stdout("")
        .stderr(format!(
            "error: --occurred-at: `{bad}` is not a date; {BAD_DATE_HELP}\n"
        ));
    }
    assert!(!l.db().exists(), "no database was created");
}

#[test]
fn an_event_dated_in_the_future_is_refused_so_it_cannot_outrank_a_later_stop() {
    let l = Ledger::new();
    let now = "2026-11-28T12:00:00Z";
    // A typo in the year: dated 2062, this opt-in would outrank every STOP until then.
    l.consent(&[
        "opt-in",
        ANA,
        "--purpose",
        "marketing",
        "--method",
        "web_form",
        "--source",
        "form-42",
        "--occurred-at",
        "2062-11-28",
    ])
    .env("WACAMPAIGN_NOW", now)
    .assert()
    .code(2)
    .stdout("")
    .stderr(
        "error: --occurred-at: 2062-11-28T00:00:00Z is in the future (now is \
         2026-11-28T12:00:00Z): an event is recorded when it happened; check the date\n",
    );
    assert!(!l.db().exists(), "nothing was written");

    let csv = format!("phone,signed_up_at\n{ANA},2062-11-28\n{BETO},2026-11-28 12:04:00\n");
    l.write("optins.csv", &csv);
    l.consent(&[
        "import",
        "optins.csv",
        "--purpose",
        "marketing",
        "--method",
        "web_form",
        "--occurred-column",
        "signed_up_at",
    ])
    .env("WACAMPAIGN_NOW", now)
    .assert()
    .success()
    .stderr(
        "warning: optins.csv line 2: invalid date: 2062-11-28T00:00:00Z is in the future \
         (now is 2026-11-28T12:00:00Z): an event is recorded when it happened; check the \
         date; skipped\n",
    );
    assert_eq!(
        l.event_ids(ANA),
        Vec::<i64>::new(),
        "the future row is skipped"
    );
    assert_eq!(
        l.show(BETO)["events"][0]["occurred_at"],
        "2026-11-28T12:04:00Z",
        "a clock a few minutes fast is not the future"
    );
}

#[test]
fn an_unknown_purpose_or_action_is_a_usage_error() {
    let l = Ledger::new();
    l.write("optins.csv", format!("phone\n{ANA}\n"));
    l.consent(&[
        "opt-in",
        ANA,
        "--purpose",
        "promotions",
        "--method",
        "web_form",
        "--source",
        "form 1",
    ])
    .assert()
    .code(2)
    .stdout("")
    .stderr(
        "error: invalid value 'promotions' for '--purpose <PURPOSE>'\n  \
         [possible values: marketing, utility]\n\n\
         For more information, try '--help'.\n",
    );
    l.consent(&[
        "import",
        "optins.csv",
        "--purpose",
        "marketing",
        "--method",
        "web_form",
        "--action",
        "unsubscribe",
    ])
    .assert()
    .code(2)
    .stdout("")
    .stderr(
        "error: invalid value 'unsubscribe' for '--action <ACTION>'\n  \
         [possible values: opt-in, opt-out]\n\n\
         For more information, try '--help'.\n",
    );
    // `all` is only for opt-outs.
    l.consent(&[
        "opt-in",
        ANA,
        "--purpose",
        "all",
        "--method",
        "web_form",
        "--source",
        "form 1",
    ])
    .assert()
    .code(2)
    .stderr(
        "error: invalid value 'all' for '--purpose <PURPOSE>'\n  \
         [possible values: marketing, utility]\n\n\
         For more information, try '--help'.\n",
    );
    assert!(!l.db().exists(), "no database was created");
}

#[test]
fn an_import_without_the_phone_column_lists_the_header() {
    let l = Ledger::new();
    l.write(
        "optins.csv",
        "telefono;fecha\n+52 55 1234 5678;2026-03-01\n",
    );
    l.consent(&[
        "import",
        "optins.csv",
        "--purpose",
        "marketing",
        "--method",
        "paper",
    ])
    .assert()
    .code(2)
    .stdout("")
    .stderr(
        "error: optins.csv: no column `phone` (--phone-column); the header has: \
             `telefono`, `fecha`\n",
    );
    l.consent(&["stats", "--json"])
        .assert()
        .success()
        .stdout(predicates::str::contains("\"events\":0,"));
}

#[test]
fn an_import_naming_a_missing_evidence_column_lists_the_header() {
    let l = Ledger::new();
    l.write(
        "optins.csv",
        "phone,signed_up_at,form_id\n+52 55 1234 5678,2026-03-01,f-1\n",
    );
    l.consent(&[
        "import",
        "optins.csv",
        "--purpose",
        "marketing",
        "--method",
        "web_form",
        "--evidence-column",
        "form",
    ])
    .assert()
    .code(2)
    .stdout("")
    .stderr(
        "error: optins.csv: no column `form` (--evidence-column); the header has: \
         `phone`, `signed_up_at`, `form_id`\n",
    );
    l.consent(&["stats", "--json"])
        .assert()
        .success()
        .stdout(predicates::str::contains("\"events\":0,"));
}

#[test]
fn a_number_that_cannot_be_normalised_is_reported_by_import_and_refused_by_opt_in() {
    let l = Ledger::new();
    l.write(
        "optins.csv",
        format!("phone\n+52 55 12\n{ANA}\nllamar a Ana\n\n55 1234 5678\n"),
    );
    l.consent(&[
        "import",
        "optins.csv",
        "--purpose",
        "marketing",
        "--method",
        "paper",
    ])
    .assert()
    .success()
    .stdout(predicates::str::contains(
        "  recorded              1\n  already present       0\n  \
             blocked by opt-out    0\n  invalid               3\n",
    ))
    .stderr(
        "warning: optins.csv line 2: invalid number: `+52 55 12` is not a valid number \
             for MX; skipped\n\
             warning: optins.csv line 4: invalid number: phone number `llamar a Ana` contains \
             letters; skipped\n\
             warning: optins.csv line 6: invalid number: `55 1234 5678` has no country code: \
             write it as +52 55…, or set default_region under [campaign] (--default-region \
             for consent commands); skipped\n",
    );
    // With the region given, the number without a country code is read.
    l.consent(&[
        "import",
        "optins.csv",
        "--purpose",
        "utility",
        "--method",
        "paper",
        "--default-region",
        "MX",
    ])
    .assert()
    .success()
    .stdout(predicates::str::contains("  recorded              2\n"));

    let opt_in = |number: &str| {
        let mut cmd = l.consent(&[
            "opt-in",
            number,
            "--purpose",
            "marketing",
            "--method",
            "web_form",
            "--source",
            "form 1",
        ]);
        cmd.assert().code(2).stdout("");
        cmd
    };
    opt_in("+52 55 12")
        .assert()
        .stderr("error: `+52 55 12` is not a valid number for MX\n");
    opt_in("llamar a Ana")
        .assert()
        .stderr("error: phone number `llamar a Ana` contains letters\n");
    opt_in("55 1234 5678").assert().stderr(
        "error: `55 1234 5678` has no country code: write it as +52 55…, or set \
         default_region under [campaign] (--default-region for consent commands)\n",
    );
}

#[test]
fn an_opt_in_for_an_opted_out_number_is_recorded_but_reported_as_still_blocked() {
    let l = Ledger::new();
    l.opt_out(ANA, "all", "2026-02-01", "whatsapp_reply");
    // The paper form is older than the opt-out.
    l.consent(&[
        "opt-in",
        ANA,
        "--purpose",
        "marketing",
        "--method",
        "paper",
        "--source",
        "paper form 2026-01-15, box 3",
        "--occurred-at",
        "2026-01-15",
    ])
    .assert()
    .success()
    .stdout(format!(
        "recorded opt_in #2: {ANA_E164} marketing\n\
         {ANA_E164} blocked for marketing: opted out on 2026-02-01 via whatsapp_reply\n"
    ))
    .stderr(format!("warning: {ANA_E164} {STILL_BLOCKED}\n"));

    let out = l
        .consent(&[
            "opt-in",
            ANA,
            "--purpose",
            "marketing",
            "--method",
            "paper",
            "--source",
            "paper form 2026-01-16, box 3",
            "--occurred-at",
            "2026-01-16",
            "--json",
        ])
        .assert()
        .success()
        .stderr(format!("warning: {ANA_E164} {STILL_BLOCKED}\n"));
    let recorded = &json_lines(&out.get_output().stdout)[0];
    assert_eq!(recorded["type"], "consent_recorded");
    assert_eq!(recorded["data"]["id"], 3);
    assert_eq!(recorded["data"]["already_present"], false);
    assert_eq!(recorded["data"]["standing"]["state"], "opted_out");

    assert_eq!(l.event_ids(ANA), [2, 3, 1]);
    assert_eq!(
        l.standing(ANA, "marketing"),
        "opted_out 2026-02-01 via whatsapp_reply"
    );
    l.consent(&["show", ANA])
        .assert()
        .success()
        .stdout(predicates::str::starts_with(format!(
            "{ANA_E164}\n  blocked for marketing: opted out on 2026-02-01 via whatsapp_reply\n  \
             blocked for utility: opted out on 2026-02-01 via whatsapp_reply\n"
        )));
}

#[test]
fn a_world_readable_database_is_refused() {
    let l = Ledger::new();
    l.opt_in(
        ANA,
        "marketing",
        "2026-01-10",
        "signup form v3, submission 1",
    );
    l.write(
        "campaign.toml",
        crate::consent_support::campaign("marketing"),
    );
    l.write("contacts.csv", format!("name,phone\nAna,{ANA}\n"));
    for mode in [0o644, 0o640, 0o604] {
        std::fs::set_permissions(l.db(), std::fs::Permissions::from_mode(mode)).unwrap();
        let before = std::fs::read(l.db()).unwrap();
        let db = l.db_shown();
        let message = format!(
            "error: {db} is readable by other users (mode {mode:04o}) and holds customers' \
             phone numbers; run `chmod 600 {db}` and try again\n"
        );
        for args in [
            &["consent", "opt-out", ANA, "--source", "ticket 1"][..],
            &["consent", "show", ANA],
            &["consent", "verify"],
            &["consent", "export"],
            &["check", "campaign.toml"],
        ] {
            l.wacampaign()
                .args(args)
                .assert()
                .code(2)
                .stdout("")
                .stderr(message.clone());
        }
        assert_eq!(
            std::fs::read(l.db()).unwrap(),
            before,
            "nothing was written"
        );
    }
    std::fs::set_permissions(l.db(), std::fs::Permissions::from_mode(0o600)).unwrap();
    l.consent(&["verify"]).assert().success();
}

#[test]
fn a_database_from_a_newer_version_is_refused_and_left_alone() {
    let l = Ledger::new();
    l.opt_in(
        ANA,
        "marketing",
        "2026-01-10",
        "signup form v3, submission 1",
    );
    l.query("PRAGMA user_version = 99");
    l.write(
        "campaign.toml",
        crate::consent_support::campaign("marketing"),
    );
    l.write("contacts.csv", format!("name,phone\nAna,{ANA}\n"));
    l.write("optins.csv", format!("phone\n{BETO}\n"));
    let before = std::fs::read(l.db()).unwrap();
    let db = l.db_shown();
    let message = format!(
        "error: {db} was written by a newer wacampaign (schema 99, this build knows up to {}); \
         upgrade wacampaign. The file was not changed.\n",
        wacampaign::db::SCHEMA_VERSION
    );
    for args in [
        &["consent", "opt-out", ANA, "--source", "ticket 1"][..],
        &[
            "consent",
            "import",
            "optins.csv",
            "--purpose",
            "marketing",
            "--method",
            "paper",
        ],
        &["consent", "show", ANA],
        &["consent", "stats"],
        &["consent", "verify"],
        &["check", "campaign.toml"],
    ] {
        l.wacampaign()
            .args(args)
            .assert()
            .code(2)
            .stdout("")
            .stderr(message.clone());
        assert_eq!(
            std::fs::read(l.db()).unwrap(),
            before,
            "{args:?} changed the file"
        );
    }
    let wal = l.wal();
    assert!(!wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0);
    assert_eq!(l.query("PRAGMA user_version"), "99\n");
}

#[test]
fn an_import_that_is_not_utf8_says_how_to_read_it_and_records_nothing() {
    let l = Ledger::new();
    l.write(
        "latin.csv",
        b"phone,name\n+52 55 1234 5678,Ana\n+52 55 2222 3333,Jos\xe9\n",
    );
    let import = || {
        l.consent(&[
            "import",
            "latin.csv",
            "--purpose",
            "marketing",
            "--method",
            "paper",
        ])
    };
    import().assert().code(2).stdout("").stderr(
        "error: latin.csv line 3 is not valid UTF-8; if the file came from Excel, pass \
         --encoding windows-1252, or save it as \"CSV UTF-8\"; nothing was imported\n",
    );
    l.consent(&["stats", "--json"])
        .assert()
        .success()
        .stdout(predicates::str::contains("\"events\":0,"));
    import()
        .args(["--encoding", "windows-1252"])
        .assert()
        .success()
        .stdout(predicates::str::contains("  recorded              2\n"));
}

/// A stray quote on line 3 of a thousand-row file: the import used to record two
/// opt-ins and exit 0, the rest swallowed into one cell.
#[test]
fn an_import_with_an_unclosed_quote_names_its_line_and_records_nothing() {
    let l = Ledger::new();
    let mut csv = String::from("phone,name\n+52 55 1234 5678,Ana\n+52 55 2222 3333,\"Beto\n");
    for n in 0..1000 {
        csv.push_str(&format!("+52 55 3{n:03} {n:04},Row {n}\n"));
    }
    l.write("optins.csv", csv);
    l.consent(&[
        "import",
        "optins.csv",
        "--purpose",
        "marketing",
        "--method",
        "paper",
    ])
    .assert()
    .code(2)
    .stdout("")
    .stderr(
        "error: optins.csv line 3: a quote (\") opens a cell here and is never closed, so \
         every line after it would be read as part of that one cell; close the quote (or \
         remove it) and run again\n",
    );
    l.consent(&["stats", "--json"])
        .assert()
        .success()
        .stdout(predicates::str::contains("\"events\":0,"));
}

/// A 2 GB sparse file is refused from its first mebibyte, before it is hashed.
#[test]
fn an_import_of_a_sparse_file_is_refused_before_hashing_it() {
    let l = Ledger::new();
    let path = l.write("optins.csv", "");
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let started = std::time::Instant::now();
    l.consent(&[
        "import",
        "optins.csv",
        "--purpose",
        "marketing",
        "--method",
        "paper",
    ])
    .assert()
    .code(2)
    .stdout("")
    .stderr(
        "error: optins.csv: 100% NUL bytes in the first MiB: not a text file; check that \
         this is the CSV you meant (a damaged, truncated or preallocated file is mostly \
         zeros)\n",
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "refused without hashing 2 GB: {:?}",
        started.elapsed()
    );
}

#[test]
fn a_file_that_is_not_a_ledger_is_refused_with_its_cause_once() {
    let l = Ledger::new();
    l.write("ledger.db", "phone,name\n+52 55 1234 5678,Ana\n");
    std::fs::set_permissions(l.db(), std::fs::Permissions::from_mode(0o600)).unwrap();
    l.consent(&["show", ANA])
        .assert()
        .code(2)
        .stdout("")
        .stderr(format!(
            "error: database {}: file is not a database: Error code 26: File opened that is not \
         a database file\n",
            l.db_shown()
        ));
}

// ---- idempotent imports ----

#[test]
fn importing_the_same_file_twice_records_nothing_new() {
    let l = Ledger::new();
    l.opt_out(CARLA, "all", "2026-02-01", "whatsapp_reply");
    let csv = format!(
        "phone,signed_up_at\n{ANA},2026-03-01\n{BETO},2026-03-02\n{CARLA},2026-03-03\nnot a phone,2026-03-04\n"
    );
    l.write("optins.csv", &csv);
    let sha = sha256_hex(csv.as_bytes());
    let import = || {
        l.consent(&[
            "import",
            "optins.csv",
            "--purpose",
            "marketing",
            "--method",
            "web_form",
            "--occurred-column",
            "signed_up_at",
        ])
    };
    let counts = |recorded, present, blocked, invalid| {
        format!(
            "imported optins.csv (sha256 {sha})\n  \
             recorded              {recorded}\n  \
             already present       {present}\n  \
             blocked by opt-out    {blocked}\n  \
             invalid               {invalid}\n"
        )
    };
    let rejected = "warning: optins.csv line 5: invalid number: phone number `not a phone` \
                    contains letters; skipped\n";
    import()
        .assert()
        .success()
        .stdout(counts(3, 0, 1, 1))
        .stderr(rejected);
    import()
        .assert()
        .success()
        .stdout(counts(0, 3, 0, 1))
        .stderr(rejected);
    let out = import().arg("--json").assert().success().stderr("");
    let lines = json_lines(&out.get_output().stdout);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["type"], "consent_import");
    assert_eq!(
        lines[0]["data"],
        serde_json::json!({
            "file": "optins.csv",
            "sha256": sha,
            "recorded": 0,
            "already_present": 3,
            "blocked_by_opt_out": 0,
            "invalid": 1,
            "erased": 0,
            "rejected": [{"line": 5, "reason": "invalid number: phone number `not a phone` contains letters"}],
        })
    );
    l.consent(&["verify"])
        .assert()
        .success()
        .stdout(predicates::str::starts_with(
            "ledger intact: 4 events, head ",
        ));
    assert_eq!(l.event_ids(ANA).len(), 1);
    // The same rows in a different file are a different import.
    l.write("optins-copy.csv", format!("{csv}\n"));
    let out = l
        .consent(&[
            "import",
            "optins-copy.csv",
            "--purpose",
            "marketing",
            "--method",
            "web_form",
            "--json",
        ])
        .assert()
        .success();
    assert_eq!(
        json_lines(&out.get_output().stdout)[0]["data"]["recorded"],
        3
    );
}

// ---- the README's audit section ----

/// The `sql` code blocks of the README's section for ops engineers, by their first
/// line (a `-- name` comment).
fn readme_queries() -> std::collections::BTreeMap<String, String> {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("## For ops engineers: auditing the consent ledger")
        .expect("the README has the audit section");
    let section = &readme[start..];
    let section = match section[3..].find("\n## ") {
        Some(end) => &section[..end + 3],
        None => section,
    };
    section
        .split("```sql\n")
        .skip(1)
        .map(|block| {
            let sql = &block[..block.find("\n```").expect("a closed block")];
            let name = sql.lines().next().unwrap().trim_start_matches("-- ");
            (name.to_owned(), sql.to_owned())
        })
        .collect()
}

/// Everyone in [`audit_ledger`], as typed by the operator.
const AUDITED: [&str; 8] = [
    ANA,
    BETO,
    CARLA,
    "+52 55 6666 7777",
    "+54 9 11 2345 6789",
    "+52 55 8888 9999",
    "+52 55 1010 2020",
    "+52 55 3030 4040",
];

/// A ledger with each rule at work at least once.
fn audit_ledger() -> Ledger {
    let l = Ledger::new();
    let [ana, beto, carla, dani, elena, fer, gabi, hugo] = AUDITED;
    l.write(
        "crm.csv",
        format!(
            "phone,fecha,folio\n{ana},2026-01-10,F-1\n{beto},2026-01-10,F-2\n{carla},2026-01-10,\n"
        ),
    );
    l.consent(&[
        "import",
        "crm.csv",
        "--purpose",
        "marketing",
        "--method",
        "web_form",
        "--occurred-column",
        "fecha",
        "--evidence-column",
        "folio",
    ])
    .assert()
    .success();
    // Ana: opted out under her old spelling, then signed up again: marketing only.
    webhook_event(
        &l,
        ANA_WA_ID,
        Action::OptOut,
        Purpose::All,
        "2026-02-01T08:00:00Z",
    );
    l.opt_in(
        ana,
        "marketing",
        "2026-03-01",
        "signup form v4, submission 77",
    );
    // Beto: opted out of marketing; a paper form from before does not lift it.
    l.opt_out(beto, "marketing", "2026-02-05", "whatsapp_reply");
    l.opt_in(beto, "marketing", "2026-01-20", "paper form, box 3");
    // Carla: opted out of all; a later import does not lift it.
    l.opt_out(carla, "all", "2026-02-01", "operator");
    l.write("crm2.csv", format!("phone,fecha\n{carla},2026-02-10\n"));
    l.consent(&[
        "import",
        "crm2.csv",
        "--purpose",
        "marketing",
        "--method",
        "web_form",
        "--occurred-column",
        "fecha",
    ])
    .assert()
    .success();
    // Dani: an opt-in in the same second as the opt-out.
    l.opt_out(dani, "marketing", "2026-02-01T10:00:00Z", "whatsapp_reply");
    l.opt_in(
        dani,
        "marketing",
        "2026-02-01T10:00:00Z",
        "signup form v4, submission 80",
    );
    // Elena: opted in as +54 9, opted out as +54.
    l.opt_in(
        elena,
        "marketing",
        "2026-01-10",
        "formulario web v2, envío 1",
    );
    l.opt_out("+54 11 2345 6789", "all", "2026-02-01", "operator");
    // Fer: utility only.
    l.opt_in(
        fer,
        "utility",
        "2026-01-10",
        "clinic intake form, patient 12",
    );
    // Elena again: a webhook opt-in with no evidence at all does not lift it.
    let db = l.open();
    wacampaign::consent::Ledger::new(&db.conn)
        .append(&NewEvent {
            subject: E164::from_digits("5491123456789").unwrap().into(),
            purpose: Purpose::Marketing,
            action: Action::OptIn,
            occurred_at: "2026-03-01T00:00:00Z".to_owned(),
            method: "whatsapp_reply".to_owned(),
            recorded_via: RecordedVia::Webhook,
            source: String::new(),
            evidence: None,
            notice: None,
            actor: "webhook".to_owned(),
            dedupe_key: None,
        })
        .unwrap();
    drop(db);
    // Gabi: never opted in; out of utility, then of everything.
    l.opt_out(gabi, "utility", "2026-02-01", "operator");
    l.opt_out(gabi, "all", "2026-02-15", "whatsapp_reply");
    // Hugo: out of all, back in for both, then out of marketing again.
    l.opt_out(hugo, "all", "2026-01-05", "operator");
    l.opt_in(
        hugo,
        "marketing",
        "2026-01-10",
        "signup form v4, submission 81",
    );
    l.opt_in(
        hugo,
        "utility",
        "2026-01-10",
        "clinic intake form, patient 13",
    );
    l.opt_out(hugo, "marketing", "2026-03-01", "whatsapp_reply");
    l
}

#[test]
fn the_readme_queries_run_and_agree_with_the_binary() {
    let queries = readme_queries();
    assert_eq!(
        queries.keys().collect::<Vec<_>>(),
        [
            "current opt-outs",
            "events by method",
            "one person's history",
            "opt-ins without evidence"
        ]
    );
    let l = audit_ledger();
    let key = |subject: &str| E164::from_digits(subject).unwrap().consent_key();

    let mut standings: Vec<(u64, String, String)> = Vec::new();
    for n in AUDITED {
        let data = l.show(n);
        let of = |purpose: &str| {
            let s = &data["standing"][purpose];
            match (s["since"].as_str(), s["method"].as_str()) {
                (Some(since), Some(method)) => {
                    format!(
                        "{} {} via {method}",
                        s["state"].as_str().unwrap(),
                        &since[..10]
                    )
                }
                _ => s["state"].as_str().unwrap().to_owned(),
            }
        };
        let subject_key = key(data["subject"].as_str().unwrap());
        standings.push((subject_key, of("marketing"), of("utility")));
    }
    let out = l.consent(&["stats", "--json"]).assert().success();
    let stats = json_lines(&out.get_output().stdout)[0]["data"].clone();
    for purpose in ["marketing", "utility"] {
        let sql = queries["current opt-outs"].replace("'marketing'", &format!("'{purpose}'"));
        let mut from_sql: Vec<(u64, String)> = l
            .query_json(&sql)
            .iter()
            .map(|r| {
                let subject = r["subject"].as_str().unwrap();
                let since = &r["occurred_at"].as_str().unwrap()[..10];
                let method = r["method"].as_str().unwrap();
                (key(subject), format!("opted_out {since} via {method}"))
            })
            .collect();
        from_sql.sort();
        let mut from_binary: Vec<(u64, String)> = standings
            .iter()
            .map(|(k, m, u)| (*k, if purpose == "marketing" { m } else { u }.clone()))
            .filter(|(_, s)| s.starts_with("opted_out"))
            .collect();
        from_binary.sort();
        assert_eq!(from_sql, from_binary, "{purpose}");
        assert_eq!(stats[purpose]["opted_out"], from_sql.len(), "{purpose}");
    }
    // Every rule was at work: Beto, Carla, Dani, Elena, Gabi and Hugo are out of
    // marketing; Ana, Carla, Elena and Gabi out of utility.
    assert_eq!(l.query_json(&queries["current opt-outs"]).len(), 6);
    let utility = queries["current opt-outs"].replace("'marketing'", "'utility'");
    assert_eq!(l.query_json(&utility).len(), 4);

    let history = l.query_json(&queries["one person's history"]);
    let ids: Vec<i64> = history.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, l.event_ids(ANA));
    assert_eq!(history[1]["subject"], "+5215512345678");
    assert_eq!(history[0]["evidence"], "F-1");

    let by_method = l.query_json(&queries["events by method"]);
    let total: i64 = by_method
        .iter()
        .map(|r| r["events"].as_i64().unwrap())
        .sum();
    assert_eq!(
        l.query("SELECT count(*) FROM consent_events"),
        format!("{total}\n")
    );

    let without = l.query_json(&queries["opt-ins without evidence"]);
    assert_eq!(stats["opt_ins_without_evidence"], without.len());
    assert!(!without.is_empty(), "the ledger has such opt-ins");
}
