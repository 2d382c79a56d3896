//! What a marketer gets after a campaign: the follow-up list (`status --only`) that
//! feeds the next campaign, and the HTML report.

use serde_json::{Value, json};

use crate::erase::envelope;
use crate::webhook::harness::{Server, Workspace};

/// The shipped demo, sent from a fresh copy of `campaigns/`, then the statuses and
/// replies a webhook server records: of the accepted messages, by position, a
/// quarter read, a quarter delivered, a quarter failed after acceptance, a quarter
/// with no status; two people reply, and one of the delivered replies STOP.
pub struct Demo {
    pub ws: Workspace,
    pub accepted: usize,
    pub read: usize,
    pub delivered_only: usize,
    pub failed_after: usize,
    pub stopped: String,
}

pub fn demo() -> Demo {
    let ws = Workspace::new();
    let to = ws.path().join("campaigns");
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(crate::support::shipped_campaigns()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    ws.wacampaign()
        .args([
            "-q",
            "consent",
            "import",
            "campaigns/demo-optins.csv",
            "--purpose",
            "marketing",
            "--method",
            "web_form",
            "--occurred-column",
            "signed_up_at",
            "--evidence-column",
            "form_submission",
        ])
        .assert()
        .success();
    ws.wacampaign()
        .args(["-q", "send", "campaigns/demo.toml", "--yes"])
        .assert()
        .success();
    let conn = rusqlite::Connection::open(ws.db()).unwrap();
    let rows: Vec<(String, i64, String)> = conn
        .prepare(
            "SELECT message_id, person_id, phone FROM journal
             WHERE state = 'accepted' ORDER BY seq",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    drop(conn);
    let server = Server::start(&ws, &[]);
    let now = chrono::Utc::now().timestamp();
    let meta = json!({"display_phone_number": "15550783881", "phone_number_id": "106540352242922"});
    let (mut read, mut delivered_only, mut failed_after) = (0, 0, 0);
    let mut stopped = String::new();
    for (i, (message_id, person, phone)) in rows.iter().enumerate() {
        let wa_id = phone.trim_start_matches('+');
        let kinds: &[(&str, i64)] = match i % 4 {
            0 => {
                read += 1;
                &[
                    ("sent", 0),
                    ("delivered", 60),
                    ("read", 60 + 600 * (i as i64 % 7)),
                ]
            }
            1 => {
                delivered_only += 1;
                &[("sent", 0), ("delivered", 90)]
            }
            2 => {
                failed_after += 1;
                &[("sent", 0), ("failed", 30)]
            }
            _ => &[],
        };
        for (kind, after) in kinds {
            let mut status = json!({"id": message_id, "status": kind,
                "timestamp": (now + after).to_string(), "recipient_id": wa_id,
                "biz_opaque_callback_data": format!("wacampaign:demo-black-friday:{person}")});
            if *kind == "failed" {
                status["errors"] = json!([{"code": 131026, "title": "Message undeliverable"}]);
            }
            let payload = envelope(json!({
                "messaging_product": "whatsapp", "metadata": meta, "statuses": [status]
            }));
            assert_eq!(server.post_meta_signed(&payload).status, 200);
        }
        // Two replies: one who read it says thanks, one who got it says STOP.
        let text = match i {
            0 => "gracias!",
            1 => {
                stopped = phone.clone();
                "STOP"
            }
            _ => continue,
        };
        let reply = envelope(json!({
            "messaging_product": "whatsapp", "metadata": meta,
            "contacts": [{"profile": {"name": "P"}, "wa_id": wa_id}],
            "messages": [{"from": wa_id, "id": format!("wamid.reply{i}"),
                          "timestamp": (now + 900).to_string(), "type": "text",
                          "text": {"body": text}}]
        }));
        assert_eq!(server.post_meta_signed(&reply).status, 200);
    }
    server.stop();
    Demo {
        accepted: rows.len(),
        read,
        delivered_only,
        failed_after,
        stopped,
        ws,
    }
}

pub fn status_json(ws: &Workspace, campaign: &str) -> Value {
    let out = ws
        .wacampaign()
        .args(["--json", "status", campaign])
        .assert()
        .success();
    let line: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    line["data"].clone()
}

fn read_csv(path: &std::path::Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    (header, rows)
}

#[test]
fn the_not_read_list_feeds_the_shipped_follow_up_campaign() {
    let d = demo();
    let ws = &d.ws;
    let status = status_json(ws, "campaigns/demo.toml");
    assert_eq!(status["counts"]["accepted"], d.accepted);
    assert_eq!(status["deliveries"]["read"], d.read);

    let out = ws
        .wacampaign()
        .args([
            "status",
            "campaigns/demo.toml",
            "--only",
            "not-read",
            "--csv",
            "campaigns/demo-not-read.csv",
        ])
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("read receipts off"), "{stderr}");
    let (header, rows) = read_csv(&ws.path().join("campaigns/demo-not-read.csv"));
    // The contact's own columns, in the file's order, then the outcome.
    assert_eq!(
        header,
        [
            "first_name",
            "last_name",
            "phone",
            "offer",
            "form_submission",
            "outcome",
            "outcome_note",
            "error_code"
        ]
    );
    // Not read: delivered only, and no status at all; not the failed, not the one
    // who said STOP.
    let no_status = d.accepted - d.read - d.delivered_only - d.failed_after;
    assert_eq!(rows.len(), d.delivered_only - 1 + no_status, "{rows:?}");
    let contacts = std::fs::read_to_string(ws.path().join("campaigns/demo-contacts.csv")).unwrap();
    for row in &rows {
        assert!(
            ["delivered", "accepted_no_status"].contains(&row[5].as_str()),
            "{row:?}"
        );
        assert!(row[6].contains("read receipts off"), "{row:?}");
        // The row as it was in the contacts file.
        let line = row[..5].join(",");
        assert!(
            contacts.contains(&line),
            "{line} is not a row of the contacts file"
        );
    }
    let stopped_digits: String = d.stopped.chars().filter(char::is_ascii_digit).collect();
    assert!(
        !rows.iter().any(|r| {
            let digits: String = r[2].chars().filter(char::is_ascii_digit).collect();
            stopped_digits.ends_with(&digits[digits.len().saturating_sub(10)..])
        }),
        "the person who replied STOP is listed"
    );

    // The list is the follow-up's contacts file: every row eligible, then sent.
    let out = ws
        .wacampaign()
        .args(["--json", "check", "campaigns/demo-follow-up.toml"])
        .assert()
        .success();
    let check: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(check["data"]["eligible"], rows.len(), "{check}");
    assert_eq!(check["data"]["excluded"], 0, "{check}");
    ws.wacampaign()
        .args(["-q", "send", "campaigns/demo-follow-up.toml", "--yes"])
        .assert()
        .success();
    let follow_up = status_json(ws, "campaigns/demo-follow-up.toml");
    assert_eq!(follow_up["counts"]["accepted"], rows.len(), "{follow_up}");

    // The other lists, by their definitions.
    let count = |only: &str| {
        let file = format!("{only}.csv");
        ws.wacampaign()
            .args([
                "status",
                "campaigns/demo.toml",
                "--only",
                only,
                "--csv",
                &file,
            ])
            .assert()
            .success();
        read_csv(&ws.path().join(&file)).1
    };
    let failed = count("failed");
    assert_eq!(failed.len(), d.failed_after);
    assert!(
        failed
            .iter()
            .all(|r| r[5] == "failed_after_accepted" && r[7] == "131026")
    );
    assert_eq!(count("not-delivered").len(), d.failed_after + no_status);
    // Everyone accepted and not failed, but the one who thanked and the one who
    // said STOP (out anyway).
    assert_eq!(
        count("no-reply").len(),
        d.accepted - d.failed_after - 2,
        "no-reply"
    );
    assert_eq!(count("in-doubt").len(), 0);

    // --only needs a file to write.
    ws.wacampaign()
        .args(["status", "campaigns/demo.toml", "--only", "failed"])
        .assert()
        .code(2);
}

#[test]
fn kept_columns_are_the_campaigns_choice_and_a_missing_one_is_named() {
    use crate::support::{CAMPAIGN, Fixture, edit};
    let f = Fixture::with_contacts("name,phone,date,city\nAna,+52 55 1234 5678,martes,Puebla\n");
    f.write(
        "campaign.toml",
        edit(
            CAMPAIGN,
            "default_region = \"MX\"",
            "default_region = \"MX\"\nkeep_columns = [\"city\", \"ciudad\"]",
        ),
    );
    let out = f.check(&[]).assert().code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("ciudad") && stderr.contains("campaign.keep_columns"),
        "{stderr}"
    );

    // The plan keeps only what is listed, in the journal beside the row.
    let f = Fixture::with_contacts("name,phone,date,city\nAna,+52 55 1234 5678,martes,Puebla\n");
    let campaign = edit(
        CAMPAIGN,
        "default_region = \"MX\"",
        "default_region = \"MX\"\nkeep_columns = [\"city\"]",
    );
    let campaign = edit(
        &campaign,
        "kind = \"cloud_api\"\nphone_number_id = \"106540352242922\"",
        "kind = \"simulator\"\nlatency_ms = 1",
    );
    f.write("campaign.toml", campaign);
    crate::support::opt_in_everyone(&f.path("campaign.toml"), &f.path("wacampaign.db"));
    f.wacampaign()
        .args(["-q", "send", "campaign.toml", "--yes"])
        .assert()
        .success();
    let conn = rusqlite::Connection::open(f.path("wacampaign.db")).unwrap();
    let contact: String = conn
        .query_row("SELECT contact FROM journal", [], |r| r.get(0))
        .unwrap();
    assert_eq!(contact, r#"{"city":"Puebla"}"#);
    // The list adds the phone column the campaign reads, since it was not kept.
    f.wacampaign()
        .args([
            "status",
            "campaign.toml",
            "--only",
            "not-read",
            "--csv",
            "list.csv",
        ])
        .assert()
        .success();
    let list = f.read("list.csv");
    let mut lines = list.lines();
    assert_eq!(
        lines.next(),
        Some("phone,city,outcome,outcome_note,error_code")
    );
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("+525512345678,Puebla,accepted_no_status,"),
        "{list}"
    );
}
