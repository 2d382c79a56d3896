//! `wacampaign subject export`: everything held about a person who received three
//! campaigns, with their statuses, replies and linked identities.

use std::os::unix::fs::PermissionsExt;

use serde_json::{Value, json};

use crate::erase::{cmd, envelope, key_file};
use crate::mock_server::MockServer;
use crate::support::{CAMPAIGN, edit};
use crate::webhook::harness::{Server, Workspace};

const ANA: &str = "5215531415926";
const ANA_KEY: i64 = 525_531_415_926;

#[test]
fn a_person_who_received_three_campaigns_gets_all_three_with_their_statuses() {
    let ws = Workspace::new();
    let mock = MockServer::start();
    key_file(&ws);
    ws.write(
        "contacts.csv",
        "name,phone,date\nAnabel,55 3141 5926,martes\nBeto,55 8765 4321,lunes\n",
    );
    for id in ["spring", "summer", "autumn"] {
        let text = edit(
            CAMPAIGN,
            "id = \"test-campaign\"",
            &format!("id = \"{id}\""),
        );
        ws.write(
            "campaign.toml",
            format!("{text}base_url = \"{}\"\n", mock.base_url()),
        );
        crate::support::opt_in_everyone(&ws.path().join("campaign.toml"), &ws.db());
        cmd(&ws)
            .args(["send", "campaign.toml", "--yes"])
            .assert()
            .success();
    }
    let conn = rusqlite::Connection::open(ws.db()).unwrap();
    let sent: Vec<(String, String)> = conn
        .prepare("SELECT campaign_id, message_id FROM journal WHERE person_id = ?1")
        .unwrap()
        .query_map([ANA_KEY], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(sent.len(), 3);
    drop(conn);
    let server = Server::start(&ws, &[]);
    let now = chrono::Utc::now().timestamp();
    let meta = json!({"display_phone_number": "15550783881", "phone_number_id": "106540352242922"});
    for (campaign, message_id) in &sent {
        for (i, kind) in ["sent", "delivered", "read"].iter().enumerate() {
            let payload = envelope(json!({
                "messaging_product": "whatsapp", "metadata": meta,
                "statuses": [{"id": message_id, "status": kind,
                              "timestamp": (now + i as i64).to_string(), "recipient_id": ANA,
                              "biz_opaque_callback_data": format!("wacampaign:{campaign}:{ANA_KEY}")}]
            }));
            assert_eq!(server.post_meta_signed(&payload).status, 200);
        }
    }
    let reply = envelope(json!({
        "messaging_product": "whatsapp", "metadata": meta,
        "contacts": [{"profile": {"name": "Perfil"}, "wa_id": ANA}],
        "messages": [{"from": ANA, "id": "wamid.reply.1", "timestamp": (now + 9).to_string(),
                      "type": "text", "text": {"body": "gracias"}, "context": {"id": sent[0].1}}]
    }));
    assert_eq!(server.post_meta_signed(&reply).status, 200);
    server.stop();

    cmd(&ws)
        .args([
            "subject",
            "export",
            "+52 55 3141 5926",
            "--output",
            "request-5120",
        ])
        .assert()
        .success();
    for file in ["request-5120.json", "request-5120.txt"] {
        let mode = std::fs::metadata(ws.path().join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file} is private");
    }
    let record: Value = serde_json::from_str(
        &std::fs::read_to_string(ws.path().join("request-5120.json")).unwrap(),
    )
    .unwrap();
    let messages = record["messages"].as_array().unwrap();
    let mut campaigns: Vec<&str> = messages
        .iter()
        .map(|m| m["campaign_id"].as_str().unwrap())
        .collect();
    campaigns.sort_unstable();
    assert_eq!(campaigns, ["autumn", "spring", "summer"]);
    for m in messages {
        assert_eq!(m["state"], "accepted");
        assert_eq!(m["values"][0], "Anabel", "the rendered values are included");
        let statuses: Vec<&str> = m["statuses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["sent", "delivered", "read"], "{m}");
    }
    assert_eq!(record["replies"].as_array().unwrap().len(), 1);
    assert_eq!(record["replies"][0]["context_id"], sent[0].1.as_str());
    // The contacts file imported three times records one event, with its source.
    let events = record["consent_events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert!(
        events
            .iter()
            .all(|e| e["source"].as_str().unwrap().contains("contacts.csv"))
    );
    // Nothing about Beto.
    let json_text = std::fs::read_to_string(ws.path().join("request-5120.json")).unwrap();
    assert!(
        !json_text.contains("87654321"),
        "another person's data leaked into the export"
    );

    let text = std::fs::read_to_string(ws.path().join("request-5120.txt")).unwrap();
    for campaign in ["spring", "summer", "autumn"] {
        assert!(text.contains(&format!("campaign {campaign}")), "{text}");
    }
    assert_eq!(text.matches("    read at ").count(), 3, "{text}");
    assert!(text.contains("Replies (1)"), "{text}");
}
