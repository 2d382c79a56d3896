//! Business-scoped user IDs (BSUIDs) through the real webhook server: a stop that
//! names only a BSUID is recorded under it, and blocks the number a later (or an
//! earlier) webhook links to it, in a campaign whose contacts file has only numbers.

use serde_json::{Value, json};

use super::harness::{Server, Workspace};
use super::{envelope, metadata, now};
use crate::support::{CAMPAIGN, edit, opt_in_everyone};

const BSUID: &str = "MX.13491208655302741918";
/// Ana's number as WhatsApp spells it (the old Mexican mobile 1); the contacts
/// file writes it `5512345678`.
const ANA_WA_ID: &str = "5215512345678";

/// A `user_preferences` stop from a user who hides their number: `user_id` alone.
fn bsuid_stop(timestamp: i64) -> Value {
    envelope(
        "user_preferences",
        json!({
            "messaging_product": "whatsapp",
            "metadata": metadata(),
            "contacts": [{"profile": {"name": "Ana"}, "user_id": BSUID}],
            "user_preferences": [{
                "user_id": BSUID,
                "detail": "User requested to stop marketing messages",
                "category": "marketing_messages",
                "value": "stop",
                "timestamp": timestamp
            }]
        }),
    )
}

/// A reply whose `contacts` entry carries the BSUID beside the number.
fn reply_with_both(id: &str, timestamp: i64) -> Value {
    envelope(
        "messages",
        json!({
            "messaging_product": "whatsapp",
            "metadata": metadata(),
            "contacts": [{"profile": {"name": "Ana"}, "wa_id": ANA_WA_ID, "user_id": BSUID}],
            "messages": [{
                "from": ANA_WA_ID, "id": id, "timestamp": timestamp.to_string(),
                "type": "text", "text": {"body": "hola"}
            }]
        }),
    )
}

/// A delivery status naming both identities of the recipient.
fn status_with_both(timestamp: i64) -> Value {
    envelope(
        "messages",
        json!({
            "messaging_product": "whatsapp",
            "metadata": metadata(),
            "statuses": [{
                "id": "wamid.HBgNNTIxNTUxMjM0NTY3OBUCABEYEjk1",
                "status": "delivered",
                "timestamp": timestamp.to_string(),
                "recipient_id": ANA_WA_ID,
                "recipient_user_id": BSUID
            }]
        }),
    )
}

/// A marketing campaign whose contacts file has numbers only, everyone opted in.
fn marketing_campaign(ws: &Workspace) {
    ws.write(
        "campaign.toml",
        edit(
            CAMPAIGN,
            "category = \"utility\"",
            "category = \"marketing\"",
        ),
    );
    ws.write(
        "contacts.csv",
        "name,phone,date\nAna,5512345678,lunes\nBeto,5587654321,martes\n",
    );
    opt_in_everyone(&ws.path().join("campaign.toml"), &ws.db());
}

/// The excluded rows `check` writes, without the header.
fn excluded(ws: &Workspace) -> String {
    ws.wacampaign()
        .args(["check", "campaign.toml", "--excluded", "excluded.csv"])
        .assert()
        .code(0);
    std::fs::read_to_string(ws.path().join("excluded.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn a_bsuid_only_stop_excludes_the_number_once_the_link_arrives() {
    let ws = Workspace::new();
    marketing_campaign(&ws);
    let server = Server::start(&ws, &[]);
    let t = now();
    let reply = server.post_meta_signed(&bsuid_stop(t));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        ws.count(&format!(
            "SELECT count(*) FROM consent_events WHERE subject = '{BSUID}' AND action = 'opt_out'"
        )),
        1,
        "the stop is recorded under the BSUID, never seen before"
    );
    assert_eq!(
        excluded(&ws),
        "",
        "nothing links the BSUID to a number yet: nobody is known to have stopped"
    );

    let reply =
        server.post_meta_signed(&reply_with_both("wamid.HBgNNTIxNTUxMjM0NTY3OBUCABIYAA", t));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        excluded(&ws),
        format!(
            "2,5512345678,opted_out,opted out on {} via whatsapp_preference\n",
            super::date_of(t)
        ),
        "the link makes Ana's number the person who stopped"
    );

    // Either identity shows the person, opted out of marketing.
    for who in [BSUID, "+52 55 1234 5678"] {
        let shown = ws
            .wacampaign()
            .args(["consent", "show", who])
            .assert()
            .code(0);
        let out = String::from_utf8_lossy(&shown.get_output().stdout).into_owned();
        assert!(
            out.contains("blocked for marketing: opted out on"),
            "{who}:\n{out}"
        );
        assert!(
            out.contains(BSUID),
            "{who}: the BSUID's event is listed:\n{out}"
        );
    }
    let exported = ws
        .wacampaign()
        .args(["consent", "export", "--format", "csv", "--subject", BSUID])
        .assert()
        .code(0);
    let csv = String::from_utf8_lossy(&exported.get_output().stdout).into_owned();
    assert_eq!(
        csv.lines().count(),
        2,
        "the header and the BSUID's stop:\n{csv}"
    );
}

#[test]
fn a_bsuid_only_stop_after_the_link_excludes_the_number_at_once() {
    let ws = Workspace::new();
    marketing_campaign(&ws);
    let server = Server::start(&ws, &[]);
    let t = now();
    // The link first, from a delivery status carrying `recipient_user_id`.
    assert_eq!(server.post_meta_signed(&status_with_both(t)).status, 200);
    assert_eq!(excluded(&ws), "");
    assert_eq!(server.post_meta_signed(&bsuid_stop(t + 1)).status, 200);
    assert_eq!(
        excluded(&ws),
        format!(
            "2,5512345678,opted_out,opted out on {} via whatsapp_preference\n",
            super::date_of(t + 1)
        )
    );
}

#[test]
fn a_bsuid_change_keeps_the_stop_and_an_unknown_one_is_recorded_with_a_warning() {
    let ws = Workspace::new();
    marketing_campaign(&ws);
    let server = Server::start(&ws, &[]);
    let t = now();
    assert_eq!(server.post_meta_signed(&bsuid_stop(t)).status, 200);
    // The user's BSUID changes (a system message with no number), then the new one
    // comes with the number.
    let change = |previous: &str, new: &str, id: &str| {
        envelope(
            "messages",
            json!({
                "messaging_product": "whatsapp",
                "metadata": metadata(),
                "messages": [{
                    "id": id, "timestamp": t.to_string(), "type": "system",
                    "system": {"type": "user_changed_user_id", "previous_user_id": previous,
                               "user_id": new, "body": "User changed their user ID"}
                }]
            }),
        )
    };
    let reply = server.post_meta_signed(&change(BSUID, "MX.99", "wamid.change.1"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let link = envelope(
        "messages",
        json!({
            "messaging_product": "whatsapp", "metadata": metadata(),
            "contacts": [{"wa_id": ANA_WA_ID, "user_id": "MX.99"}],
            "statuses": []
        }),
    );
    assert_eq!(server.post_meta_signed(&link).status, 200);
    assert!(
        excluded(&ws).starts_with("2,5512345678,opted_out,"),
        "the stop given under the old BSUID follows the person"
    );
    // A change from a BSUID never seen: recorded, warned about, not an error.
    let reply = server.post_meta_signed(&change("MX.7", "MX.8", "wamid.change.2"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        ws.count("SELECT count(*) FROM identities WHERE bsuid IN ('MX.7', 'MX.8')"),
        2
    );
    let (_, log) = server.stop();
    assert!(
        log.contains("MX.7 was never seen before"),
        "the server's log says so:\n{log}"
    );
}

#[test]
fn a_stop_reply_from_a_user_who_hides_their_number_is_recorded_under_the_bsuid() {
    let ws = Workspace::new();
    marketing_campaign(&ws);
    let server = Server::start(&ws, &[]);
    let t = now();
    let stop = envelope(
        "messages",
        json!({
            "messaging_product": "whatsapp",
            "metadata": metadata(),
            "contacts": [{"profile": {"name": "Beto", "username": "@beto"}, "user_id": "MX.5555"}],
            "messages": [{
                "from_user_id": "MX.5555", "id": "wamid.bsuid.stop", "timestamp": t.to_string(),
                "type": "text", "text": {"body": " STOP "}
            }]
        }),
    );
    let reply = server.post_meta_signed(&stop);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        ws.count(
            "SELECT count(*) FROM consent_events
             WHERE subject = 'MX.5555' AND action = 'opt_out' AND purpose = 'all'"
        ),
        1
    );
    // Once Beto's number is linked to it, he is left out.
    let link = envelope(
        "messages",
        json!({
            "messaging_product": "whatsapp", "metadata": metadata(),
            "contacts": [{"wa_id": "5215587654321", "user_id": "MX.5555"}],
            "statuses": []
        }),
    );
    assert_eq!(server.post_meta_signed(&link).status, 200);
    assert_eq!(
        excluded(&ws),
        format!(
            "3,5587654321,opted_out,opted out on {} via whatsapp_reply\n",
            super::date_of(t)
        )
    );
}
