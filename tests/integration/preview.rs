//! `wacampaign preview`: the message as the customer reads it, and the exact Cloud
//! API request body.

use crate::support::{CAMPAIGN, Fixture, edit, shipped_campaigns, stdout, wacampaign_in};

/// Five eligible contacts around one excluded row (line 4).
const CONTACTS: &str = "name,phone,date\n\
                        Ana,+52 55 1234 5678,lunes\n\
                        Luis,(55) 2345-6789,martes\n\
                        Eva,55-CALL-NOW,miércoles\n\
                        María,+52 1 55 4567 8901,jueves\n\
                        José,0052 55 5678 9012,\n\
                        Sofía,5567890123,sábado\n";

fn block(line: u64, phone: &str, name: &str, date: &str) -> String {
    format!("── line {line} · {phone} ──\nHola {name}, tu cita es el {date}.\n\n")
}

#[test]
fn shows_the_first_three_eligible_contacts_by_default() {
    let expected = [
        block(2, "+525512345678", "Ana", "lunes"),
        block(3, "+525523456789", "Luis", "martes"),
        block(5, "+525545678901", "María", "jueves"),
    ]
    .concat();
    Fixture::with_contacts(CONTACTS)
        .preview(&[])
        .assert()
        .code(0)
        .stderr("")
        .stdout(expected);
}

#[test]
fn limit_sets_how_many() {
    let fx = Fixture::with_contacts(CONTACTS);
    fx.preview(&["--limit", "1"]).assert().code(0).stdout(block(
        2,
        "+525512345678",
        "Ana",
        "lunes",
    ));
    let all = [
        block(2, "+525512345678", "Ana", "lunes"),
        block(3, "+525523456789", "Luis", "martes"),
        block(5, "+525545678901", "María", "jueves"),
        block(6, "+525556789012", "José", "lunes"),
        block(7, "+525567890123", "Sofía", "sábado"),
    ]
    .concat();
    fx.preview(&["--limit", "50"]).assert().code(0).stdout(all);
}

#[test]
fn limit_zero_is_a_usage_error() {
    Fixture::with_contacts(CONTACTS)
        .preview(&["--limit", "0"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicates::str::starts_with(
            "error: invalid value '0' for '--limit <N>': 0 is not in 1..",
        ));
}

#[test]
fn row_shows_that_line() {
    Fixture::with_contacts(CONTACTS)
        .preview(&["--row", "6"])
        .assert()
        .code(0)
        .stdout(block(6, "+525556789012", "José", "lunes"));
}

#[test]
fn row_on_an_excluded_contact_says_why() {
    Fixture::with_contacts(CONTACTS)
        .preview(&["--row", "4"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(
            "error: contacts.csv line 4 is excluded from this campaign: invalid number: phone \
             number `55-CALL-NOW` contains letters\n",
        );
}

#[test]
fn row_past_the_end_says_so() {
    Fixture::with_contacts(CONTACTS)
        .preview(&["--row", "99"])
        .assert()
        .code(2)
        .stdout("")
        .stderr("error: contacts.csv has no contact on line 99\n");
}

#[test]
fn phone_finds_a_contact_written_another_way() {
    let fx = Fixture::with_contacts(CONTACTS);
    for spelling in ["0052 55 2345 6789", "+52 1 55 2345 6789", "5523456789"] {
        fx.preview(&["--phone", spelling])
            .assert()
            .code(0)
            .stdout(block(3, "+525523456789", "Luis", "martes"));
    }
    fx.preview(&["--phone", "55 9999 0000"])
        .assert()
        .code(2)
        .stdout("")
        .stderr("error: contacts.csv has no contact with number +525599990000\n");
}

#[test]
fn phone_on_a_duplicate_shows_the_first_row() {
    let fx = Fixture::with_contacts(
        "name,phone,date\nAna,5512345678,lunes\nAna G,(55) 1234-5678,martes\n",
    );
    fx.preview(&["--phone", "+525512345678"])
        .assert()
        .code(0)
        .stdout(block(2, "+525512345678", "Ana", "lunes"));
    fx.preview(&["--row", "3"])
        .assert()
        .code(2)
        .stdout("")
        .stderr("error: contacts.csv line 3 is excluded from this campaign: duplicate of row 2\n");
}

fn payload(fx: &Fixture, args: &[&str]) -> serde_json::Value {
    let assert = fx
        .preview(args)
        .arg("--payload")
        .assert()
        .code(0)
        .stderr("");
    serde_json::from_str(&stdout(&assert)).expect("--payload prints one JSON document")
}

#[test]
fn payload_is_the_cloud_api_request_body() {
    let fx = Fixture::with_contacts(CONTACTS);
    let body = payload(&fx, &["--row", "5"]);
    assert_eq!(
        body,
        serde_json::json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "+525545678901",
            "type": "template",
            "template": {
                "name": "appointment_reminder",
                "language": { "policy": "deterministic", "code": "es_MX" },
                "components": [{
                    "type": "body",
                    "parameters": [
                        { "type": "text", "text": "María" },
                        { "type": "text", "text": "jueves" }
                    ]
                }]
            },
            "biz_opaque_callback_data": "wacampaign:test-campaign:525545678901"
        })
    );
}

#[test]
fn payload_names_the_parameters_of_a_named_template() {
    let campaign = edit(
        CAMPAIGN,
        r#"body = "Hola {{1}}, tu cita es el {{2}}.""#,
        r#"body = "Hola {{first_name}}, tu cita es el {{date}} en {{clinic}}.""#,
    );
    let campaign = edit(
        &campaign,
        "\"1\" = { column = \"name\" }\n\"2\" = { column = \"date\", default = \"lunes\" }\n",
        "first_name = { column = \"name\" }\ndate = { column = \"date\", default = \"lunes\" }\n\
         clinic = { value = \"Clínica Roma\" }\n",
    );
    let fx = Fixture::with_contacts(CONTACTS);
    fx.write("campaign.toml", campaign);
    let body = payload(&fx, &["--phone", "(55) 5678-9012"]);
    assert_eq!(body["recipient_type"], "individual");
    assert_eq!(body["to"], "+525556789012");
    assert_eq!(body["template"]["language"]["policy"], "deterministic");
    assert_eq!(
        body["template"]["components"],
        serde_json::json!([{
            "type": "body",
            "parameters": [
                { "type": "text", "parameter_name": "first_name", "text": "José" },
                { "type": "text", "parameter_name": "date", "text": "lunes" },
                { "type": "text", "parameter_name": "clinic", "text": "Clínica Roma" }
            ]
        }])
    );
}

#[test]
fn payload_prints_one_document_per_contact() {
    let assert = Fixture::with_contacts(CONTACTS)
        .preview(&["--payload", "--limit", "2"])
        .assert()
        .code(0);
    let out = stdout(&assert);
    let bodies: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&out)
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("a stream of JSON documents");
    let to: Vec<&str> = bodies.iter().map(|b| b["to"].as_str().unwrap()).collect();
    assert_eq!(to, ["+525512345678", "+525523456789"]);
}

#[test]
fn no_eligible_contact_is_a_warning_not_an_error() {
    Fixture::with_contacts("name,phone,date\nEva,55-CALL-NOW,lunes\n")
        .preview(&[])
        .assert()
        .code(0)
        .stdout("")
        .stderr("warning: no eligible contacts to preview; run `wacampaign check` to see why\n");
}

// ---- the shipped campaigns ----

fn preview_shipped(args: &[&str]) -> String {
    let scratch = tempfile::tempdir().unwrap();
    crate::support::opt_in_everyone(
        &shipped_campaigns().join(args[0]),
        &scratch.path().join("wacampaign.db"),
    );
    let assert = wacampaign_in(&shipped_campaigns(), &scratch.path().join("wacampaign.db"))
        .arg("preview")
        .args(args)
        .assert()
        .code(0)
        .stderr("");
    stdout(&assert)
}

#[test]
fn appointment_reminder_preview() {
    insta::assert_snapshot!(
        "appointment_reminder_preview",
        preview_shipped(&["appointment-reminder.toml"])
    );
}

#[test]
fn promotion_preview() {
    insta::assert_snapshot!(
        "promotion_preview",
        preview_shipped(&["promotion.toml", "--limit", "10"])
    );
}

#[test]
fn promotion_payload() {
    insta::assert_snapshot!(
        "promotion_payload",
        preview_shipped(&["promotion.toml", "--payload", "--limit", "1"])
    );
}
