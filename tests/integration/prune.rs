//! `wacampaign prune`: rows older than the period go, `status` keeps its figures.

use serde_json::{Value, json};

use crate::erase::{cmd, envelope};
use crate::mock_server::{MockServer, Reply};
use crate::support::CAMPAIGN;
use crate::webhook::harness::{Server, Workspace};

fn status(ws: &Workspace, now: Option<&str>) -> Value {
    let mut c = cmd(ws);
    if let Some(now) = now {
        c.env("WACAMPAIGN_NOW", now);
    }
    let out = c
        .args(["--json", "status", "campaign.toml"])
        .assert()
        .success();
    let line: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    line["data"].clone()
}

/// 30 people sent a campaign: 3 refused by the provider, statuses for the rest
/// (some read, some delivered, one failed), and replies from two of them.
fn sent(ws: &Workspace, mock: &MockServer) {
    ws.write(
        "campaign.toml",
        format!("{CAMPAIGN}base_url = \"{}\"\n", mock.base_url()),
    );
    let mut csv = String::from("name,phone,date\n");
    for i in 0..30 {
        csv.push_str(&format!("Cliente {i},+52 55 {},martes\n", 40_000_000 + i));
    }
    ws.write("contacts.csv", csv);
    crate::support::opt_in_everyone(&ws.path().join("campaign.toml"), &ws.db());
    mock.set_rule(|r| {
        if r.to.ends_with("7") {
            Reply::graph(131_026, "Message undeliverable")
        } else {
            Reply::Accept
        }
    });
    cmd(ws)
        .args(["send", "campaign.toml", "--yes"])
        .assert()
        .code(1);
    let conn = rusqlite::Connection::open(ws.db()).unwrap();
    let rows: Vec<(String, i64, String)> = conn
        .prepare("SELECT message_id, person_id, phone FROM journal WHERE state = 'accepted'")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    drop(conn);
    assert_eq!(rows.len(), 27);
    let server = Server::start(ws, &[]);
    let now = chrono::Utc::now().timestamp();
    let meta = json!({"display_phone_number": "15550783881", "phone_number_id": "106540352242922"});
    for (i, (message_id, person, phone)) in rows.iter().enumerate() {
        let wa_id = phone.trim_start_matches('+');
        let kinds: &[&str] = match i % 4 {
            0 => &["sent", "delivered", "read"],
            1 => &["sent", "delivered"],
            2 => &["sent", "failed"],
            _ => &[],
        };
        for (t, kind) in kinds.iter().enumerate() {
            let payload = envelope(json!({
                "messaging_product": "whatsapp", "metadata": meta,
                "statuses": [{"id": message_id, "status": kind,
                              "timestamp": (now + t as i64).to_string(), "recipient_id": wa_id,
                              "biz_opaque_callback_data": format!("wacampaign:test-campaign:{person}")}]
            }));
            assert_eq!(server.post_meta_signed(&payload).status, 200);
        }
        if i < 2 {
            let reply = envelope(json!({
                "messaging_product": "whatsapp", "metadata": meta,
                "contacts": [{"profile": {"name": "P"}, "wa_id": wa_id}],
                "messages": [{"from": wa_id, "id": format!("wamid.r{i}"),
                              "timestamp": (now + 9).to_string(), "type": "text",
                              "text": {"body": "ok"}}]
            }));
            assert_eq!(server.post_meta_signed(&reply).status, 200);
        }
    }
    server.stop();
}

#[test]
fn prune_removes_old_rows_and_status_keeps_identical_counts() {
    let ws = Workspace::new();
    let mock = MockServer::start();
    sent(&ws, &mock);
    let later = (chrono::Utc::now() + chrono::Duration::days(10))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let before = status(&ws, Some(&later));
    assert_eq!(before["counts"]["accepted"], 27);
    assert_eq!(before["counts"]["failed"], 3);
    assert_eq!(before["deliveries"]["read"], 7);
    assert_eq!(before["deliveries"]["replies"], 2);

    // Nothing is 30 days old yet: nothing goes, nothing changes.
    cmd(&ws)
        .env("WACAMPAIGN_NOW", &later)
        .args(["prune", "--older-than", "30d"])
        .assert()
        .success()
        .stdout(predicates::str::contains("journal rows          0"));
    let out = cmd(&ws)
        .env("WACAMPAIGN_NOW", &later)
        .args(["prune", "--older-than", "7d"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.contains("journal rows          30"), "{text}");
    assert!(text.contains("replies               2"), "{text}");
    assert_eq!(ws.count("SELECT count(*) FROM journal"), 0);
    assert_eq!(ws.count("SELECT count(*) FROM message_statuses"), 0);
    assert_eq!(ws.count("SELECT count(*) FROM inbound_messages"), 0);
    assert_eq!(
        ws.count("SELECT count(*) FROM webhook_deliveries WHERE body IS NOT NULL"),
        0
    );
    // The ledger is never pruned.
    assert_eq!(ws.count("SELECT count(*) FROM consent_events"), 30);

    let after = status(&ws, Some(&later));
    assert_eq!(after, before, "status shows the same figures after pruning");
    // Twice is the same as once.
    cmd(&ws)
        .env("WACAMPAIGN_NOW", &later)
        .args(["prune", "--older-than", "7d"])
        .assert()
        .success();
    assert_eq!(status(&ws, Some(&later)), before);
}

#[test]
fn prune_refuses_a_period_shorter_than_a_campaign_still_running() {
    let ws = Workspace::new();
    let mock = MockServer::start();
    sent(&ws, &mock);
    let conn = rusqlite::Connection::open(ws.db()).unwrap();
    conn.execute_batch(
        "INSERT INTO campaigns (id, fingerprint, template, language, category, provider, created_at, plan_run)
         VALUES ('slow-drip', 'f', 't', 'es_MX', 'utility', 'cloud_api', '2026-01-01T00:00:00Z', 1);
         INSERT INTO journal (campaign_id, person_id, occurrence, phone, line, seq, plan_run, params,
             state, updated_at)
         VALUES ('slow-drip', 525540000001, '', '+525540000001', 2, 1, 1, '[]', 'planned',
             '2026-01-01T00:00:00Z');",
    )
    .unwrap();
    drop(conn);
    let journal = ws.count("SELECT count(*) FROM journal");
    cmd(&ws)
        .args(["prune", "--older-than", "1d"])
        .env("WACAMPAIGN_NOW", "2026-12-31T00:00:00Z")
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "campaign `slow-drip` started on 2026-01-01",
        ))
        .stderr(predicates::str::contains("nothing was removed"));
    assert_eq!(ws.count("SELECT count(*) FROM journal"), journal);
    cmd(&ws)
        .args(["prune", "--older-than", "2h"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("shorter than a day"));
}

/// `prune` works in small transactions: the webhook server keeps recording while it
/// removes a large campaign (150,000 rows: at 60,000 a faster prune left too few
/// webhooks inside its run for the test to mean anything).
#[test]
fn the_webhook_server_keeps_recording_while_prune_runs() {
    let ws = Workspace::new();
    drop(wacampaign::db::Db::open(&ws.db()).unwrap());
    let conn = rusqlite::Connection::open(ws.db()).unwrap();
    conn.execute_batch(
        "INSERT INTO campaigns (id, fingerprint, template, language, category, provider, created_at, plan_run)
         VALUES ('old', 'f', 't', 'es_MX', 'utility', 'cloud_api', '2025-01-01T00:00:00Z', 1);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 150000)
         INSERT INTO journal (campaign_id, person_id, occurrence, phone, line, seq, plan_run, params,
             state, message_id, outcome_at, updated_at)
         SELECT 'old', 525500000000 + i, '', '+' || (525500000000 + i), i, i, 1, '[\"x\"]',
             'accepted', 'wamid.old' || i, '2025-01-01T00:00:00Z', '2025-01-01T00:00:00Z' FROM n;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 150000)
         INSERT INTO message_statuses (message_id, status, rank, timestamp, occurred_at, provider,
             campaign_id, person_id, occurrence, received_at)
         SELECT 'wamid.old' || i, 'delivered', 2, 1, '2025-01-01T00:00:00Z', 'meta', 'old',
             525500000000 + i, '', '2025-01-01T00:00:00Z' FROM n;",
    )
    .unwrap();
    drop(conn);
    let server = Server::start(&ws, &[]);
    let mut prune = std::process::Command::new(env!("CARGO_BIN_EXE_wacampaign"))
        .current_dir(ws.path())
        .args(["--db"])
        .arg(ws.db())
        .args(["prune", "--older-than", "30d"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let meta = json!({"display_phone_number": "15550783881", "phone_number_id": "106540352242922"});
    let now = chrono::Utc::now().timestamp();
    // Post statuses for as long as prune runs.
    let (mut posted, mut answered) = (0i64, 0);
    while prune.try_wait().unwrap().is_none() {
        let payload = envelope(json!({
            "messaging_product": "whatsapp", "metadata": meta,
            "statuses": [{"id": format!("wamid.new{posted}"), "status": "delivered",
                          "timestamp": (now + posted).to_string(), "recipient_id": "525511112222"}]
        }));
        answered += i64::from(server.post_meta_signed(&payload).status == 200);
        posted += 1;
    }
    let output = prune.wait_with_output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("journal rows          150000"), "{text}");
    server.stop();
    eprintln!("prune alongside the webhook server: {posted} statuses posted while it ran");
    assert!(
        posted >= 5,
        "only {posted} webhooks while prune ran: the test did not test"
    );
    assert_eq!(answered, posted, "every webhook answered while prune ran");
    assert_eq!(
        ws.count("SELECT count(*) FROM message_statuses WHERE message_id LIKE 'wamid.new%'"),
        posted,
        "and recorded"
    );
    assert_eq!(ws.count("SELECT count(*) FROM journal"), 0);
}
