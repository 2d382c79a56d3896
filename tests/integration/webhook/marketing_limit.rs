//! Meta's per-user marketing limit (131049) for half a campaign, as Meta reports it:
//! half in the send's answer, half in a failed status webhook after the send was
//! accepted, posted signed to the real `webhook serve`. The breaker (which trips
//! above 5% failures) does not trip; those people wait a day, never less.

use serde_json::json;

use super::harness::{Server, Workspace};
use super::{envelope, metadata};
use crate::mock_server::{MockServer, Reply};
use crate::support::{CAMPAIGN, NO_MESSAGING_LIMIT, opt_in_everyone};

const CONTACTS: usize = 40;
const TOKEN: &str = "EAAGtest0token0for0the0mock";

fn phone(i: usize) -> String {
    format!("+5255{}", 20_000_000 + i)
}

#[test]
fn the_per_user_limit_in_answers_and_in_failed_statuses_waits_a_day_without_tripping_the_breaker() {
    let server = MockServer::start();
    // Every fourth and every fourth-plus-one: a quarter refused in the answer, a
    // quarter accepted and reported failed later.
    let in_answer = |i: usize| i.is_multiple_of(4);
    let in_status = |i: usize| i % 4 == 1;
    let refused: std::collections::HashSet<String> =
        (0..CONTACTS).filter(|i| in_answer(*i)).map(phone).collect();
    server.set_rule(move |r| {
        if refused.contains(r.to) && r.earlier_for_recipient == 0 {
            Reply::graph(
                131049,
                "This message was not delivered to maintain healthy ecosystem engagement.",
            )
        } else {
            Reply::Accept
        }
    });
    let ws = Workspace::new();
    let mut csv = String::from("name,phone,date\n");
    for i in 0..CONTACTS {
        csv.push_str(&format!("Cliente {i},{},martes\n", phone(i)));
    }
    ws.write("contacts.csv", csv);
    ws.write(
        "campaign.toml",
        format!(
            "{CAMPAIGN}base_url = \"{}\"\ntimeout_ms = 5000\n\n[sending]\nrate_per_second = 200\n",
            server.base_url()
        ),
    );
    opt_in_everyone(&ws.path().join("campaign.toml"), &ws.db());
    let hooks = Server::start(&ws, &[]);
    let start = chrono::Utc::now();
    let at = |hours: i64| (start + chrono::Duration::hours(hours)).to_rfc3339();
    let send = |now: String| {
        ws.wacampaign()
            .env("WHATSAPP_TOKEN", TOKEN)
            .env(NO_MESSAGING_LIMIT.0, NO_MESSAGING_LIMIT.1)
            .env("WACAMPAIGN_NOW", now)
            .args(["send", "campaign.toml", "--yes"])
            .timeout(std::time::Duration::from_secs(120))
            .assert()
            .code(0)
    };

    send(at(0));
    assert_eq!(
        ws.count("SELECT count(*) FROM journal WHERE state = 'deferred'"),
        10
    );
    assert_eq!(
        ws.count("SELECT count(*) FROM journal WHERE state = 'accepted'"),
        30
    );

    // Meta reports the second half later, in failed statuses of accepted messages.
    let conn = rusqlite::Connection::open(ws.db()).unwrap();
    let mut accepted: Vec<(String, String)> = conn
        .prepare("SELECT phone, message_id FROM journal WHERE state = 'accepted'")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    drop(conn);
    accepted.retain(|(p, _)| (0..CONTACTS).any(|i| in_status(i) && phone(i) == *p));
    assert_eq!(accepted.len(), 10);
    let statuses: Vec<_> = accepted
        .iter()
        .map(|(phone, wamid)| {
            json!({
                "id": wamid, "status": "failed", "timestamp": start.timestamp().to_string(),
                "recipient_id": phone.trim_start_matches('+'),
                "errors": [{"code": 131049, "title": "This message was not delivered to maintain healthy ecosystem engagement.",
                            "message": "This message was not delivered to maintain healthy ecosystem engagement.",
                            "error_data": {"details": "per-user marketing limit"}}]
            })
        })
        .collect();
    let payload = envelope(
        "messages",
        json!({"messaging_product": "whatsapp", "metadata": metadata(), "statuses": statuses}),
    );
    let reply = hooks.post_meta_signed(&payload);
    assert_eq!(reply.status, 200, "{}", reply.body);

    // Half the campaign is deferred, none failed, and nothing halted it.
    assert_eq!(
        ws.count("SELECT count(*) FROM journal WHERE state = 'deferred'"),
        20
    );
    assert_eq!(
        ws.count("SELECT count(*) FROM journal WHERE state = 'failed'"),
        0
    );
    assert_eq!(
        ws.count("SELECT count(*) FROM campaigns WHERE halted_at IS NOT NULL"),
        0,
        "the breaker did not trip"
    );

    // 23 hours later nobody is messaged again.
    let before = server.count();
    send(at(23));
    assert_eq!(server.count(), before);
    assert_eq!(
        ws.count("SELECT count(*) FROM journal WHERE state = 'deferred'"),
        20
    );

    // 24 hours later, all twenty, once each.
    send(at(24));
    assert_eq!(server.count(), before + 20);
    assert_eq!(
        ws.count("SELECT count(*) FROM journal WHERE state = 'accepted'"),
        40
    );
    let log = server.log();
    for i in (0..CONTACTS).filter(|i| in_answer(*i) || in_status(*i)) {
        assert_eq!(
            log.iter().filter(|r| r.to == phone(i)).count(),
            2,
            "{}: sent once, then once more a day later",
            phone(i)
        );
    }
    assert_eq!(
        ws.count("SELECT count(*) FROM campaigns WHERE halted_at IS NOT NULL"),
        0
    );
}
