//! `wacampaign webhook serve`, run as the real binary on 127.0.0.1 and sent real
//! HTTP requests: payloads shaped like the webhook examples in Meta's OpenAPI
//! description (v23.0) and Twilio's form callbacks, signed the way each signs them.

pub mod harness;
mod identities;
mod limits;
mod marketing_limit;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{CAMPAIGN, edit, opt_in_everyone};
use harness::{
    APP_SECRET, Server, TWILIO_TOKEN, TWILIO_URL, VERIFY_TOKEN, Workspace, form, meta_signature,
    twilio_signature,
};
use wacampaign::consent::{Ledger, Purpose, Standing};
use wacampaign::db::Db;
use wacampaign::phone::E164;

// ---- payloads, as in the spec's examples ----

fn envelope(field: &str, value: Value) -> Value {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "419561257915477",
            "changes": [{"value": value, "field": field}]
        }]
    })
}

fn metadata() -> Value {
    json!({"display_phone_number": "15550783881", "phone_number_id": "106540352242922"})
}

fn statuses(statuses: Vec<Value>) -> Value {
    envelope(
        "messages",
        json!({"messaging_product": "whatsapp", "metadata": metadata(), "statuses": statuses}),
    )
}

fn status(id: &str, kind: &str, timestamp: i64, recipient: &str, callback: Option<&str>) -> Value {
    let mut status = json!({
        "id": id,
        "status": kind,
        "timestamp": timestamp.to_string(),
        "recipient_id": recipient,
        "conversation": {"id": "9b9a8f0e6f0d4a0b", "origin": {"type": "utility"}},
        "pricing": {"billable": true, "pricing_model": "PMP", "category": "utility"}
    });
    if let Some(callback) = callback {
        status["biz_opaque_callback_data"] = json!(callback);
    }
    status
}

fn messages(from: &str, messages: Vec<Value>) -> Value {
    envelope(
        "messages",
        json!({
            "messaging_product": "whatsapp",
            "metadata": metadata(),
            "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": from}],
            "messages": messages
        }),
    )
}

fn text(from: &str, id: &str, timestamp: i64, body: &str) -> Value {
    messages(
        from,
        vec![json!({
            "from": from, "id": id, "timestamp": timestamp.to_string(),
            "type": "text", "text": {"body": body}
        })],
    )
}

fn preference(wa_id: &str, value: &str, timestamp: i64) -> Value {
    envelope(
        "user_preferences",
        json!({
            "messaging_product": "whatsapp",
            "metadata": metadata(),
            "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": wa_id}],
            "user_preferences": [{
                "wa_id": wa_id,
                "detail": format!("User requested to {value} marketing messages"),
                "category": "marketing_messages",
                "value": value,
                "timestamp": timestamp
            }]
        }),
    )
}

fn changed_number(old: &str, new: &str, id: &str, timestamp: i64) -> Value {
    envelope(
        "messages",
        json!({
            "messaging_product": "whatsapp",
            "metadata": metadata(),
            "messages": [{
                "from": old, "id": id, "timestamp": timestamp.to_string(), "type": "system",
                "system": {
                    "body": format!("User Sheena Nelson changed from {old} to {new}"),
                    "wa_id": new,
                    "type": "user_changed_number"
                }
            }]
        }),
    )
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn date_of(timestamp: i64) -> String {
    chrono::DateTime::from_timestamp(timestamp, 0)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string()
}

fn standing(ws: &Workspace, phone: &str, purpose: Purpose) -> Standing {
    let db = Db::open(&ws.db()).unwrap();
    Ledger::new(&db.conn)
        .standing(E164::from_digits(phone).unwrap(), purpose)
        .unwrap()
}

/// One JSON Lines record of `data` from a command's stdout.
fn json_data(stdout: &[u8], kind: &str) -> Value {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|v| v["type"] == kind)
        .unwrap_or_else(|| panic!("no `{kind}` record in {}", String::from_utf8_lossy(stdout)))
        ["data"]
        .clone()
}

// ---- the tests ----

#[test]
fn the_test_signer_reproduces_twilios_published_vector() {
    // From Twilio's own validator tests (twilio-php RequestValidatorTest).
    let signature = twilio_signature(
        "12345",
        "https://mycompany.com/myapp.php?foo=1&bar=2",
        &[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ],
    );
    assert_eq!(signature, "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
}

#[test]
fn the_verification_handshake_answers_only_the_right_token() {
    let ws = Workspace::new();
    let server = Server::start(&ws, &[]);
    let before = ws.snapshot();
    let ok = server.verify(&[
        ("hub.mode", "subscribe"),
        ("hub.verify_token", VERIFY_TOKEN),
        ("hub.challenge", "1158201444"),
    ]);
    assert_eq!((ok.status, ok.body.as_str()), (200, "1158201444"));
    assert!(
        ok.content_type.starts_with("text/plain"),
        "{}",
        ok.content_type
    );
    for query in [
        vec![
            ("hub.mode", "subscribe"),
            ("hub.verify_token", "wrong-token"),
            ("hub.challenge", "1158201444"),
        ],
        vec![("hub.mode", "subscribe"), ("hub.challenge", "1158201444")],
        vec![
            ("hub.mode", "subscribe"),
            ("hub.verify_token", &VERIFY_TOKEN[..VERIFY_TOKEN.len() - 1]),
            ("hub.challenge", "1"),
        ],
        vec![
            ("hub.mode", "unsubscribe"),
            ("hub.verify_token", VERIFY_TOKEN),
            ("hub.challenge", "1"),
        ],
    ] {
        let refused = server.verify(&query);
        assert_eq!(refused.status, 403, "{query:?}");
        assert!(!refused.body.contains("1158201444"));
    }
    assert_eq!(ws.snapshot(), before, "a handshake records nothing");
}

#[test]
fn unsigned_forged_or_tampered_requests_are_refused_and_record_nothing() {
    let ws = Workspace::new();
    let server = Server::start(&ws, &[]);
    let before = ws.snapshot();
    let payload = text(
        "16505551234",
        "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQz",
        now(),
        "STOP",
    );
    let body = serde_json::to_vec(&payload).unwrap();
    let good = meta_signature(APP_SECRET, &body);
    let mut flipped = body.clone();
    let at = flipped.len() / 2;
    flipped[at] ^= 0x01;
    let refused = [
        (body.clone(), None),
        (body.clone(), Some(meta_signature("another-secret", &body))),
        (body.clone(), Some(format!("sha256={}", "0".repeat(64)))),
        (
            body.clone(),
            Some(good.trim_start_matches("sha256=").to_owned()),
        ),
        (body.clone(), Some("sha256=not-hex".to_owned())),
        (flipped, Some(good.clone())),
    ];
    for (body, signature) in refused {
        let reply = server.post_meta(&body, signature.as_deref());
        assert_eq!(reply.status, 401, "{signature:?}: {}", reply.body);
    }

    let params = [
        ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
        ("From", "whatsapp:+5215512345678"),
        ("To", "whatsapp:+14155238886"),
        ("Body", "STOP"),
    ];
    let signed = twilio_signature(TWILIO_TOKEN, TWILIO_URL, &params);
    let other_url = twilio_signature(
        TWILIO_TOKEN,
        "https://elsewhere.test/webhook/twilio",
        &params,
    );
    let other_token = twilio_signature("not-the-token", TWILIO_URL, &params);
    let mut tampered = params;
    tampered[3] = ("Body", "Hola");
    for (body, signature) in [
        (form(&params), None),
        (form(&params), Some(other_url.as_str())),
        (form(&params), Some(other_token.as_str())),
        (form(&tampered), Some(signed.as_str())),
    ] {
        let reply = server.post_twilio("", &body, signature);
        assert_eq!(reply.status, 401, "{signature:?}: {}", reply.body);
    }
    // A query the signature did not cover.
    let reply = server.post_twilio("?cb=x", &form(&params), Some(&signed));
    assert_eq!(reply.status, 401);

    assert_eq!(ws.snapshot(), before, "nothing refused was recorded");
    assert_eq!(server.post_meta(&body, Some(&good)).status, 200);
    assert_eq!(server.post_twilio_signed(&params).status, 200);
    assert_eq!(ws.count("SELECT count(*) FROM consent_events"), 2);
}

#[test]
fn a_body_over_3_mb_is_refused_with_413() {
    let ws = Workspace::new();
    let server = Server::start(&ws, &[]);
    let line = server.status_line_for_declared_length(3 * 1024 * 1024 + 1);
    assert!(line.starts_with("HTTP/1.1 413"), "{line}");
    // Just under the cap: read, verified and recorded.
    let mut body = b"{\"object\":\"whatsapp_business_account\",\"entry\":[],\"pad\":\"".to_vec();
    body.resize(3 * 1024 * 1024 - 2, b'x');
    body.extend_from_slice(b"\"}");
    let reply = server.post_meta(&body, Some(&meta_signature(APP_SECRET, &body)));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(ws.count("SELECT count(*) FROM webhook_deliveries"), 1);
}

#[test]
fn the_same_payload_three_times_is_recorded_once() {
    let ws = Workspace::new();
    let server = Server::start(&ws, &[]);
    let t = now();
    let payload = statuses(vec![
        status(
            "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI5",
            "sent",
            t,
            "16505551234",
            None,
        ),
        status(
            "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI5",
            "delivered",
            t + 2,
            "16505551234",
            None,
        ),
    ]);
    let stop = text(
        "16505551234",
        "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQ0",
        t + 5,
        "Baja",
    );
    for _ in 0..3 {
        assert_eq!(server.post_meta_signed(&payload).status, 200);
        assert_eq!(server.post_meta_signed(&stop).status, 200);
    }
    let after_three = ws.snapshot();
    assert_eq!(ws.count("SELECT count(*) FROM webhook_deliveries"), 2);
    assert_eq!(ws.count("SELECT count(*) FROM message_statuses"), 2);
    assert_eq!(ws.count("SELECT count(*) FROM inbound_messages"), 1);
    assert_eq!(ws.count("SELECT count(*) FROM consent_events"), 1);
    // The same status again inside a differently batched body changes nothing either.
    let rebatched = statuses(vec![status(
        "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI5",
        "delivered",
        t + 2,
        "16505551234",
        None,
    )]);
    assert_eq!(server.post_meta_signed(&rebatched).status, 200);
    assert_eq!(ws.count("SELECT count(*) FROM message_statuses"), 2);
    assert_ne!(
        ws.snapshot(),
        after_three,
        "only the new body's hash is added"
    );
    let (exit, log) = server.stop();
    assert!(exit.success(), "{exit}: {log}");
    assert!(
        log.contains("3 deliveries recorded") && log.contains("4 duplicates ignored"),
        "{log}"
    );
}

#[test]
fn a_stop_reply_excludes_the_contact_from_the_next_check() {
    let ws = Workspace::new();
    ws.write("campaign.toml", CAMPAIGN);
    ws.write(
        "contacts.csv",
        "name,phone,date\nAna,5512345678,lunes\nBeto,5587654321,martes\n",
    );
    opt_in_everyone(&ws.path().join("campaign.toml"), &ws.db());
    let server = Server::start(&ws, &[]);
    let t = now();
    // WhatsApp still spells some Mexican numbers with the old mobile 1.
    let reply = server.post_meta_signed(&text(
        "5215512345678",
        "wamid.HBgNNTIxNTUxMjM0NTY3OBUCABIYFDNB",
        t,
        "  STOP ",
    ));
    assert_eq!(reply.status, 200, "{}", reply.body);
    // A reply that only mentions the word is not an opt-out.
    let chat = text(
        "5215587654321",
        "wamid.HBgNNTIxNTU4NzY1NDMyMRUCABIYFDNC",
        t,
        "no pares, gracias",
    );
    assert_eq!(server.post_meta_signed(&chat).status, 200);
    ws.wacampaign()
        .args(["check", "campaign.toml", "--excluded", "excluded.csv"])
        .assert()
        .code(0);
    assert_eq!(
        std::fs::read_to_string(ws.path().join("excluded.csv")).unwrap(),
        format!(
            "line,phone,reason_code,reason\n\
             2,5512345678,opted_out,opted out on {} via whatsapp_reply\n",
            date_of(t)
        )
    );
    let db = Db::open(&ws.db()).unwrap();
    let history = Ledger::new(&db.conn)
        .history(E164::from_digits("525512345678").unwrap())
        .unwrap();
    let opt_out = history.last().unwrap();
    assert_eq!(
        (
            opt_out.purpose.as_str(),
            opt_out.source.as_str(),
            opt_out.evidence.as_deref(),
            opt_out.recorded_via.as_str()
        ),
        (
            "all",
            "wamid.HBgNNTIxNTUxMjM0NTY3OBUCABIYFDNB",
            Some("  STOP "),
            "webhook"
        )
    );
    // Both replies opened the customer-service window.
    let now = chrono::Utc::now();
    for phone in ["525512345678", "525587654321"] {
        assert!(
            wacampaign::service_window::window_open(
                &db.conn,
                E164::from_digits(phone).unwrap(),
                now
            )
            .unwrap()
        );
    }
}

#[test]
fn a_twilio_status_callback_carrying_63014_opts_out_as_a_send_answer_does() {
    let ws = Workspace::new();
    ws.write("campaign.toml", CAMPAIGN);
    ws.write(
        "contacts.csv",
        "name,phone,date\nAna,5512345678,lunes\nBeto,5587654321,martes\n",
    );
    opt_in_everyone(&ws.path().join("campaign.toml"), &ws.db());
    let server = Server::start(&ws, &[]);
    // 63014: the person blocked the sender. In a send's answer it has always
    // recorded an opt-out; a status callback must mean the same.
    for (sid, to, code) in [
        (
            "SM22222222222222222222222222222222",
            "whatsapp:+525512345678",
            "63014",
        ),
        // A failure that is not an opt-out leaves Beto in the campaign.
        (
            "SM33333333333333333333333333333333",
            "whatsapp:+525587654321",
            "63016",
        ),
    ] {
        let reply = server.post_twilio_signed(&[
            ("MessageSid", sid),
            ("SmsSid", sid),
            ("MessageStatus", "undelivered"),
            ("SmsStatus", "undelivered"),
            ("AccountSid", "AC00000000000000000000000000000000"),
            ("From", "whatsapp:+14155238886"),
            ("To", to),
            ("ErrorCode", code),
            ("ApiVersion", "2010-04-01"),
            ("ChannelPrefix", "whatsapp"),
        ]);
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let Standing::OptedOut { method, .. } = standing(&ws, "525512345678", Purpose::Marketing)
    else {
        panic!("63014 in a status callback opts out")
    };
    assert_eq!(method, "provider_error_63014");
    assert!(matches!(
        standing(&ws, "525512345678", Purpose::Utility),
        Standing::OptedOut { .. }
    ));
    ws.wacampaign()
        .args(["check", "campaign.toml", "--excluded", "excluded.csv"])
        .assert()
        .code(0);
    assert_eq!(
        std::fs::read_to_string(ws.path().join("excluded.csv")).unwrap(),
        format!(
            "line,phone,reason_code,reason\n\
             2,5512345678,opted_out,opted out on {} via provider_error_63014\n",
            date_of(now())
        )
    );
}

/// A Cloud API stand-in that reads each request and never answers, so every send
/// times out after the request went out: in doubt.
fn silent_graph_api() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buffer = [0u8; 4096];
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = stream.read(&mut buffer);
                std::thread::sleep(Duration::from_secs(5));
                let _ = stream.write_all(b"");
            });
        }
    });
    port
}

#[test]
fn a_status_resolves_a_send_held_in_doubt() {
    let ws = Workspace::new();
    let port = silent_graph_api();
    let campaign = edit(
        CAMPAIGN,
        "phone_number_id = \"106540352242922\"\n",
        &format!(
            "phone_number_id = \"106540352242922\"\nbase_url = \"http://127.0.0.1:{port}\"\ntimeout_ms = 300\n"
        ),
    );
    ws.write("campaign.toml", campaign);
    ws.write("contacts.csv", "name,phone,date\nAna,5512345678,lunes\n");
    opt_in_everyone(&ws.path().join("campaign.toml"), &ws.db());
    ws.wacampaign()
        .env("WHATSAPP_TOKEN", "test-token")
        .args(["send", "campaign.toml", "--yes"])
        .assert()
        .code(1);
    assert_eq!(
        ws.count("SELECT count(*) FROM journal WHERE state = 'in_doubt' AND message_id IS NULL"),
        1
    );

    let server = Server::start(&ws, &[]);
    let wamid = "wamid.HBgNNTI1NTEyMzQ1Njc4FQIAERgSQTVBRDk3";
    let t = now();
    // The callback data the send put on the message names its journal row.
    let sent = statuses(vec![status(
        wamid,
        "sent",
        t,
        "525512345678",
        Some("wacampaign:test-campaign:525512345678"),
    )]);
    assert_eq!(server.post_meta_signed(&sent).status, 200);
    assert_eq!(
        ws.count(&format!(
            "SELECT count(*) FROM journal WHERE state = 'accepted' AND message_id = '{wamid}'"
        )),
        1
    );
    // Later statuses find the row by its wamid.
    for (kind, at) in [("read", t + 9), ("delivered", t + 4)] {
        let later = statuses(vec![status(wamid, kind, at, "525512345678", None)]);
        assert_eq!(server.post_meta_signed(&later).status, 200);
    }
    let history = {
        let db = Db::open(&ws.db()).unwrap();
        wacampaign::webhook::history::status_history(&db.conn, wamid).unwrap()
    };
    let kinds: Vec<&str> = history.iter().map(|s| s.status.as_str()).collect();
    assert_eq!(
        kinds,
        ["sent", "delivered", "read"],
        "in the order they happened"
    );

    let output = ws
        .wacampaign()
        .args(["--json", "status", "campaign.toml", "--csv", "status.csv"])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let data = json_data(&output, "status");
    assert_eq!(data["counts"]["accepted"], 1);
    assert_eq!(data["counts"]["in_doubt"], 0);
    assert_eq!(data["deliveries"]["delivered"], 1);
    assert_eq!(data["deliveries"]["read"], 1);
    assert_eq!(data["deliveries"]["delivered_rate"], 1.0);
    let csv = std::fs::read_to_string(ws.path().join("status.csv")).unwrap();
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().ends_with(",delivery_status"));
    let row = lines.next().unwrap();
    // The number is quoted for spreadsheets, as every report does.
    assert!(row.starts_with("'+525512345678,2,accepted,1,"), "{row}");
    assert!(row.ends_with(",read"), "{row}");
}

#[test]
fn user_preferences_stop_then_resume() {
    let ws = Workspace::new();
    let server = Server::start(&ws, &[]);
    let t = now();
    let stop = preference("16505551234", "stop", t);
    assert_eq!(server.post_meta_signed(&stop).status, 200);
    let Standing::OptedOut { method, .. } = standing(&ws, "16505551234", Purpose::Marketing) else {
        panic!("stop is a marketing opt-out")
    };
    assert_eq!(method, "whatsapp_preference");
    assert_eq!(
        standing(&ws, "16505551234", Purpose::Utility),
        Standing::NoOptIn,
        "utility messages are not stopped"
    );
    // Resumed within the same second: still dated after the stop, so it lifts it.
    assert_eq!(
        server
            .post_meta_signed(&preference("16505551234", "resume", t))
            .status,
        200
    );
    let Standing::OptedIn { method, .. } = standing(&ws, "16505551234", Purpose::Marketing) else {
        panic!("resume lifts the stop")
    };
    assert_eq!(method, "whatsapp_preference");
    // Meta retrying the old stop changes nothing.
    assert_eq!(server.post_meta_signed(&stop).status, 200);
    assert!(standing(&ws, "16505551234", Purpose::Marketing).allows());
    assert_eq!(ws.count("SELECT count(*) FROM consent_events"), 2);
}

#[test]
fn a_changed_number_is_linked_and_keeps_the_opt_out() {
    let ws = Workspace::new();
    let server = Server::start(&ws, &[]);
    let t = now();
    let stop = text("16505551234", "wamid.HBgLMTY1MDUTOP", t - 60, "unsubscribe");
    assert_eq!(server.post_meta_signed(&stop).status, 200);
    let change = changed_number(
        "16505551234",
        "12195555358",
        "wamid.HBgLMTk4MzU1NTE5NzQVAgASGAoxMTgyMDg2MjY3AA==",
        t,
    );
    for _ in 0..2 {
        assert_eq!(server.post_meta_signed(&change).status, 200);
    }
    assert_eq!(
        ws.count(
            "SELECT count(*) FROM number_links WHERE old_phone = '+16505551234'
               AND new_phone = '+12195555358'"
        ),
        1
    );
    for purpose in [Purpose::Marketing, Purpose::Utility] {
        let Standing::OptedOut { method, .. } = standing(&ws, "12195555358", purpose) else {
            panic!("the new number inherits the opt-out")
        };
        assert_eq!(method, "number_change");
    }
    let db = Db::open(&ws.db()).unwrap();
    let new = E164::from_digits("12195555358").unwrap();
    let event = Ledger::new(&db.conn).history(new).unwrap().pop().unwrap();
    assert_eq!(
        event.source,
        "wamid.HBgLMTk4MzU1NTE5NzQVAgASGAoxMTgyMDg2MjY3AA=="
    );
    assert!(
        event
            .evidence
            .unwrap()
            .contains("from +16505551234 to +12195555358"),
    );
    assert_eq!(
        wacampaign::webhook::history::current_number(
            &db.conn,
            E164::from_digits("16505551234").unwrap()
        )
        .unwrap(),
        new
    );
}

#[test]
fn twilio_status_callbacks_and_replies() {
    let ws = Workspace::new();
    let campaign = edit(
        CAMPAIGN,
        "kind = \"cloud_api\"\nphone_number_id = \"106540352242922\"\n",
        "kind = \"simulator\"\nlatency_ms = 1\nundeliverable_rate = 0.0\nopt_out_rate = 0.0\n",
    );
    ws.write("campaign.toml", campaign);
    ws.write(
        "contacts.csv",
        "name,phone,date\nAna,5512345678,lunes\nBeto,5587654321,martes\n",
    );
    opt_in_everyone(&ws.path().join("campaign.toml"), &ws.db());
    ws.wacampaign()
        .args(["send", "campaign.toml", "--yes"])
        .assert()
        .code(0);
    let ids: Vec<String> = {
        let db = Db::open(&ws.db()).unwrap();
        let mut stmt = db
            .conn
            .prepare("SELECT message_id FROM journal ORDER BY seq")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(ids.len(), 2);
    let server = Server::start(&ws, &[]);
    for (id, kind, error) in [
        (&ids[0], "sent", None),
        (&ids[0], "delivered", None),
        (&ids[1], "sent", None),
        (&ids[1], "undelivered", Some("63016")),
    ] {
        let mut params = vec![
            ("MessageSid", id.as_str()),
            ("SmsSid", id.as_str()),
            ("MessageStatus", kind),
            ("SmsStatus", kind),
            ("AccountSid", "AC00000000000000000000000000000000"),
            ("From", "whatsapp:+14155238886"),
            ("To", "whatsapp:+525512345678"),
            ("ApiVersion", "2010-04-01"),
            ("ChannelPrefix", "whatsapp"),
        ];
        if let Some(code) = error {
            params.push(("ErrorCode", code));
        }
        let reply = server.post_twilio_signed(&params);
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(reply.body.contains("<Response>"));
    }
    assert_eq!(ws.count("SELECT count(*) FROM message_statuses"), 4);
    assert_eq!(
        ws.count("SELECT count(*) FROM journal WHERE state = 'accepted' AND error_code = 63016"),
        1
    );
    // A reply: Twilio's Advanced Opt-Out marks it, whatever the words.
    let reply = server.post_twilio_signed(&[
        ("MessageSid", "SM11111111111111111111111111111111"),
        ("SmsStatus", "received"),
        ("From", "whatsapp:+5215587654321"),
        ("To", "whatsapp:+14155238886"),
        ("Body", "ya no quiero mensajes"),
        ("OptOutType", "STOP"),
        ("WaId", "5215587654321"),
        ("NumMedia", "0"),
    ]);
    assert_eq!(reply.status, 200);
    let Standing::OptedOut { method, .. } = standing(&ws, "525587654321", Purpose::Utility) else {
        panic!("an OptOutType=STOP reply opts out")
    };
    assert_eq!(method, "whatsapp_reply");
    let output = ws
        .wacampaign()
        .args(["--json", "status", "campaign.toml"])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let deliveries = &json_data(&output, "status")["deliveries"];
    assert_eq!(deliveries["delivered"], 1);
    assert_eq!(deliveries["failed_after_accept"], 1);
    assert_eq!(deliveries["replies"], 1);
    assert_eq!(deliveries["replied"], 1);
}

#[test]
fn configured_keywords_and_payloads_opt_out_too() {
    let ws = Workspace::new();
    let server = Server::start(
        &ws,
        &[
            "--opt-out-keyword",
            "basta,no mas",
            "--opt-out-payload",
            "PROMO_NO",
        ],
    );
    let t = now();
    let button = messages(
        "16505550001",
        vec![json!({
            "context": {"from": "15550783881", "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJF"},
            "from": "16505550001", "id": "wamid.BUTTON1", "timestamp": t.to_string(),
            "type": "button", "button": {"payload": "PROMO_NO", "text": "No, gracias"}
        })],
    );
    for payload in [
        text("16505550002", "wamid.TEXT1", t, "¡Basta!"),
        text("16505550003", "wamid.TEXT2", t, "No  mas"),
        text(
            "16505550004",
            "wamid.TEXT3",
            t,
            "basta de spam, pero sigo interesado",
        ),
        button,
    ] {
        assert_eq!(server.post_meta_signed(&payload).status, 200);
    }
    for (phone, opted_out) in [
        ("16505550001", true),
        ("16505550002", true),
        ("16505550003", true),
        ("16505550004", false),
    ] {
        assert_eq!(
            matches!(
                standing(&ws, phone, Purpose::Marketing),
                Standing::OptedOut { .. }
            ),
            opted_out,
            "{phone}"
        );
    }
    assert_eq!(ws.count("SELECT count(*) FROM inbound_messages"), 4);
}

#[test]
fn without_a_secret_there_is_nothing_to_serve() {
    let ws = Workspace::new();
    ws.wacampaign()
        .env_remove("WHATSAPP_APP_SECRET")
        .env_remove("TWILIO_AUTH_TOKEN")
        .args(["webhook", "serve", "--listen", "127.0.0.1:0"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("nothing to serve"));
    ws.wacampaign()
        .env_remove("WHATSAPP_APP_SECRET")
        .env("TWILIO_AUTH_TOKEN", TWILIO_TOKEN)
        .args(["webhook", "serve", "--listen", "127.0.0.1:0"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--public-url"));
}

#[test]
fn a_reply_that_reads_like_an_opt_out_is_listed_for_a_person_with_its_command() {
    let ws = Workspace::new();
    let campaign = edit(
        CAMPAIGN,
        "kind = \"cloud_api\"\nphone_number_id = \"106540352242922\"\n",
        "kind = \"simulator\"\nlatency_ms = 1\nundeliverable_rate = 0.0\nopt_out_rate = 0.0\n",
    );
    ws.write("campaign.toml", campaign);
    ws.write(
        "contacts.csv",
        "name,phone,date\nAna,5512345678,lunes\nBeto,5587654321,martes\n",
    );
    opt_in_everyone(&ws.path().join("campaign.toml"), &ws.db());
    ws.wacampaign()
        .args(["send", "campaign.toml", "--yes"])
        .assert()
        .code(0);
    let server = Server::start(&ws, &[]);
    let t = now();
    let id = "wamid.HBgNNTIxNTUxMjM0NTY3OBUCABIYFFBPU1NJQkxF";
    // Not a bare keyword: nobody is opted out automatically.
    let reply =
        server.post_meta_signed(&text("5215512345678", id, t, "No me manden más, porfa 🙏"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    // A bare keyword in Hindi opts out at once and is not listed.
    let reply = server.post_meta_signed(&text(
        "5215587654321",
        "wamid.HBgNNTIxNTU4NzY1NDMyMRUCABIYFEhJTkRJ",
        t,
        " बंद करो 🙏",
    ));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(matches!(
        standing(&ws, "525587654321", Purpose::Utility),
        Standing::OptedOut { .. }
    ));
    assert!(matches!(
        standing(&ws, "525512345678", Purpose::Utility),
        Standing::OptedIn { .. }
    ));
    let status = ws
        .wacampaign()
        .args(["status", "campaign.toml"])
        .assert()
        .code(0);
    let out = crate::support::stdout(&status);
    assert!(
        out.contains("possible opt-out, needs a person (1)"),
        "{out}"
    );
    assert!(out.contains("\"No me manden más, porfa 🙏\""), "{out}");
    let command = out
        .lines()
        .find(|l| l.trim_start().starts_with("wacampaign consent opt-out"))
        .unwrap_or_else(|| panic!("no command in {out}"))
        .trim()
        .to_owned();
    assert!(
        command.contains(&format!("--method whatsapp_reply --source {id}")),
        "{command}"
    );
    let json = ws
        .wacampaign()
        .args(["--json", "status", "campaign.toml"])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let listed = &json_data(&json, "status")["possible_opt_outs"];
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["message_id"], id);
    assert_eq!(
        listed[0]["phone"], "+5215512345678",
        "as WhatsApp spelled it"
    );

    // `send` points at them before sending.
    let again = ws
        .wacampaign()
        .args(["send", "campaign.toml", "--yes"])
        .assert()
        .code(0);
    let stderr = String::from_utf8_lossy(&again.get_output().stderr).into_owned();
    assert!(
        stderr.contains("1 replies to this campaign may be opt-outs and need a person"),
        "{stderr}"
    );
    // The command, run as printed by a shell, records it with the text as evidence.
    let db = ws.db();
    let ran = std::process::Command::new("sh")
        .arg("-c")
        .arg(command.replacen(
            "wacampaign ",
            &format!(
                "{} --db {} ",
                env!("CARGO_BIN_EXE_wacampaign"),
                db.display()
            ),
            1,
        ))
        .current_dir(ws.path())
        .env("WACAMPAIGN_ACTOR", "tester")
        .output()
        .unwrap();
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let Standing::OptedOut { method, .. } = standing(&ws, "525512345678", Purpose::Utility) else {
        panic!("recorded")
    };
    assert_eq!(method, "whatsapp_reply");
    let event = {
        let db = Db::open(&ws.db()).unwrap();
        Ledger::new(&db.conn)
            .history(E164::from_digits("525512345678").unwrap())
            .unwrap()
            .pop()
            .unwrap()
    };
    assert_eq!(event.source, id);
    assert_eq!(
        event.evidence.as_deref(),
        Some("No me manden más, porfa 🙏")
    );
    let out = crate::support::stdout(
        &ws.wacampaign()
            .args(["status", "campaign.toml"])
            .assert()
            .code(0),
    );
    assert!(
        !out.contains("possible opt-out"),
        "recorded, so no longer listed: {out}"
    );
}

#[test]
fn sends_without_webhooks_for_a_day_are_warned_about_until_one_arrives() {
    let ws = Workspace::new();
    let graph = crate::mock_server::MockServer::start();
    let campaign = edit(
        CAMPAIGN,
        "phone_number_id = \"106540352242922\"\n",
        &format!(
            "phone_number_id = \"106540352242922\"\nbase_url = \"{}\"\n",
            graph.base_url()
        ),
    );
    ws.write("campaign.toml", campaign);
    ws.write("contacts.csv", "name,phone,date\nAna,5512345678,lunes\n");
    opt_in_everyone(&ws.path().join("campaign.toml"), &ws.db());
    // The simulator's sends, which never get a webhook, are no sign of silence.
    let simulated = edit(
        &edit(
            CAMPAIGN,
            "kind = \"cloud_api\"\nphone_number_id = \"106540352242922\"\n",
            "kind = \"simulator\"\nlatency_ms = 1\nundeliverable_rate = 0.0\nopt_out_rate = 0.0\n",
        ),
        "id = \"test-campaign\"",
        "id = \"simulated\"",
    );
    ws.write("simulated.toml", simulated);
    let sent_at = chrono::Utc::now() - chrono::Duration::hours(3);
    // What a command says on stderr, run `after` the sends (`None`: now), exit 0.
    let said = |args: &[&str], after: Option<chrono::Duration>| {
        let mut cmd = ws.wacampaign();
        cmd.env("WHATSAPP_TOKEN", "test-token");
        if let Some(after) = after {
            cmd.env(
                "WACAMPAIGN_NOW",
                (sent_at + after).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            );
        }
        crate::support::stderr(&cmd.args(args).assert().code(0))
    };
    let at_send = Some(chrono::Duration::zero());
    said(&["send", "simulated.toml", "--yes"], at_send);
    let quiet = said(&["status", "simulated.toml"], None);
    assert!(!quiet.contains("no webhook"), "{quiet}");
    said(&["send", "campaign.toml", "--yes"], at_send);
    // Just after the send: too early to expect webhooks, no warning.
    let early = said(
        &["status", "campaign.toml"],
        Some(chrono::Duration::minutes(1)),
    );
    assert!(!early.contains("no webhook"), "{early}");
    // Three hours on, with no webhook recorded: `status` and `send` warn.
    let shown = said(&["status", "campaign.toml"], None);
    assert!(
        shown.contains("1 message was sent in the last 24 h but no webhook was recorded")
            && shown.contains("opt-outs and delivery statuses may be missing")
            && shown.contains("webhook serve"),
        "{shown}"
    );
    let send = said(&["send", "campaign.toml", "--yes"], None);
    assert!(send.contains("no webhook was recorded"), "{send}");
    // A day later still nothing sent in the window: no warning.
    let later = said(
        &["status", "campaign.toml"],
        Some(chrono::Duration::hours(25)),
    );
    assert!(!later.contains("no webhook"), "{later}");
    // Once a webhook arrives, the warning stops.
    let server = Server::start(&ws, &[]);
    let reply = server.post_meta_signed(&statuses(vec![status(
        "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJTSUxFTlQ=",
        "sent",
        now(),
        "525512345678",
        None,
    )]));
    assert_eq!(reply.status, 200);
    let shown = said(&["status", "campaign.toml"], None);
    assert!(!shown.contains("no webhook"), "{shown}");
}

#[test]
fn status_reports_what_meta_marked_billable_and_its_estimated_cost() {
    let ws = Workspace::new();
    let card = crate::support::shipped_campaigns()
        .join("meta-rate-card-EXAMPLE-rates-not-current-prices.csv");
    let campaign = edit(
        CAMPAIGN,
        "kind = \"cloud_api\"\nphone_number_id = \"106540352242922\"\n",
        "kind = \"simulator\"\nlatency_ms = 1\nundeliverable_rate = 0.0\nopt_out_rate = 0.0\n",
    ) + &format!("\n[pricing]\nrate_card = \"{}\"\n", card.display());
    ws.write("campaign.toml", campaign);
    ws.write(
        "contacts.csv",
        "name,phone,date\nAna,5512345678,lunes\nBeto,5587654321,martes\nCaio,+55 11 98765 4321,lunes\n",
    );
    opt_in_everyone(&ws.path().join("campaign.toml"), &ws.db());
    ws.wacampaign()
        .args(["send", "campaign.toml", "--yes"])
        .assert()
        .code(0);
    let ids: Vec<(String, String)> = {
        let db = Db::open(&ws.db()).unwrap();
        let mut stmt = db
            .conn
            .prepare("SELECT message_id, phone FROM journal ORDER BY seq")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(ids.len(), 3);
    let server = Server::start(&ws, &[]);
    let t = now();
    let priced = |i: usize, kind: &str, billable: bool, category: &str, pricing_type: &str| {
        let (id, phone) = &ids[i];
        let mut s = status(id, kind, t + i as i64, phone.trim_start_matches('+'), None);
        s["pricing"] = json!({
            "billable": billable, "pricing_model": "PMP",
            "category": category, "type": pricing_type
        });
        s
    };
    let reply = server.post_meta_signed(&statuses(vec![
        // Billable utility, reported on each status: counted once.
        priced(0, "sent", true, "utility", "regular"),
        priced(0, "delivered", true, "utility", "regular"),
        // Free: inside a customer-service window.
        priced(1, "sent", false, "utility", "free_customer_service"),
        // Billable utility to Brazil.
        priced(2, "delivered", true, "utility", "regular"),
    ]));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let output = ws
        .wacampaign()
        .args(["--json", "status", "campaign.toml"])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let billing = &json_data(&output, "status")["billing"];
    assert_eq!(billing["billable"], json!({"utility": 2}), "{billing}");
    assert_eq!(
        billing["free"],
        json!({"free_customer_service": 1}),
        "{billing}"
    );
    // By hand on the shipped card: Mexico utility 0.0085 + Brazil utility 0.0068.
    assert_eq!(billing["estimated_cost"]["total"], "0.0153", "{billing}");
    assert_eq!(billing["estimated_cost"]["currency"], "USD");
    let text = crate::support::stdout(
        &ws.wacampaign()
            .args(["status", "campaign.toml"])
            .assert()
            .code(0),
    );
    assert!(text.contains("billable   2 utility"), "{text}");
    assert!(
        text.contains("free       1 free_customer_service"),
        "{text}"
    );
    assert!(
        text.contains(
            "estimated cost (billable × card rate; the webhooks carry no amount): 0.0153 USD"
        ),
        "{text}"
    );
}
