//! Contacts known by a business-scoped user ID (BSUID): a campaign's `bsuid_column`,
//! validated row by row; a BSUID-only contact sent with `recipient` on the Cloud API
//! (checked against the loopback mock: Meta's v23.0 description predates
//! `recipient` and requires `to`, so Prism would refuse it), left out of a Twilio
//! campaign and of an authentication template with the reason.

use std::time::Duration;

use crate::mock_server::{MockServer, Reply};
use crate::support::{CAMPAIGN, Fixture, edit, opt_in_everyone};

const TOKEN: &str = "EAAGtest0token0for0bsuids";

/// Ana has a number and a BSUID, Beto a number, Carla a BSUID only; Dani's BSUID is
/// malformed, Eva has neither, and Fer is Ana again by her BSUID.
const CONTACTS: &str = "name,phone,bsuid,date\n\
Ana,5512345678,MX.1111,lunes\n\
Beto,5587654321,,martes\n\
Carla,,MX.2222.ENT,lunes\n\
Dani,,mx.3333,lunes\n\
Eva,,,lunes\n\
Fer,,MX.1111,lunes\n";

fn campaign_with_bsuids(base_url: &str) -> String {
    let text = edit(
        CAMPAIGN,
        "phone_column = \"phone\"",
        "phone_column = \"phone\"\nbsuid_column = \"bsuid\"",
    );
    format!("{text}base_url = \"{base_url}\"\ntimeout_ms = 5000\n")
}

/// Opt-ins for the numbers (from the file) and for Carla's BSUID (by command).
fn opted_in(fx: &Fixture) {
    opt_in_everyone(&fx.path("campaign.toml"), &fx.path("wacampaign.db"));
    fx.wacampaign()
        .args([
            "consent",
            "opt-in",
            "MX.2222.ENT",
            "--purpose",
            "utility",
            "--method",
            "web_form",
            "--source",
            "signup form v3, submission 88214",
        ])
        .assert()
        .code(0);
}

#[test]
fn bsuids_are_validated_and_a_bsuid_only_contact_is_sent_with_recipient() {
    let server = MockServer::start();
    let fx = Fixture::new();
    fx.write("campaign.toml", campaign_with_bsuids(&server.base_url()));
    fx.write("contacts.csv", CONTACTS);
    opted_in(&fx);

    fx.wacampaign()
        .args(["check", "campaign.toml", "--excluded", "excluded.csv"])
        .assert()
        .code(0);
    let excluded = fx.read("excluded.csv");
    let lines: Vec<&str> = excluded.lines().collect();
    assert_eq!(lines.len(), 4, "{excluded}");
    assert!(
        lines[1]
            .starts_with("5,,invalid_bsuid,\"invalid business-scoped user ID: `mx.3333` is not"),
        "{excluded}"
    );
    assert!(lines[2].starts_with("6,,invalid_number,"), "{excluded}");
    assert_eq!(
        lines[3], "7,,duplicate,duplicate of row 2",
        "Fer is Ana: her BSUID came with her number on row 2"
    );

    let sent = fx
        .wacampaign()
        .env("WHATSAPP_TOKEN", TOKEN)
        .args(["send", "campaign.toml", "--yes"])
        .timeout(Duration::from_secs(120))
        .assert()
        .code(0);
    let log = server.log();
    assert_eq!(
        log.len(),
        3,
        "{}",
        String::from_utf8_lossy(&sent.get_output().stderr)
    );
    let carla = log
        .iter()
        .find(|r| r.body.get("recipient").is_some())
        .expect("Carla's message names her by `recipient`");
    assert_eq!(carla.body["recipient"], "MX.2222.ENT");
    assert!(carla.body.get("to").is_none(), "{}", carla.body);
    let callback = carla.body["biz_opaque_callback_data"].as_str().unwrap();
    assert!(
        callback.starts_with("wacampaign:test-campaign:-"),
        "a BSUID-only person's row has a negative key: {callback}"
    );
    let to: Vec<&str> = log.iter().map(|r| r.to.as_str()).collect();
    assert!(to.contains(&"+525512345678") && to.contains(&"+525587654321"));

    let conn = rusqlite::Connection::open(fx.path("wacampaign.db")).unwrap();
    let (state, phone): (String, Option<String>) = conn
        .query_row(
            "SELECT state, phone FROM journal WHERE bsuid = 'MX.2222.ENT'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((state.as_str(), phone), ("accepted", None));
    // Ana's row taught the link between her number and her BSUID.
    let linked: String = conn
        .query_row(
            "SELECT phone FROM identities WHERE bsuid = 'MX.1111'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(linked, "+525512345678");
    let before = server.count();
    // Run again: nobody twice.
    fx.wacampaign()
        .env("WHATSAPP_TOKEN", TOKEN)
        .args(["send", "campaign.toml", "--yes"])
        .timeout(Duration::from_secs(120))
        .assert()
        .code(0);
    assert_eq!(server.count(), before);
}

#[test]
fn an_opt_out_recorded_for_a_bsuid_excludes_the_bsuid_only_contact() {
    let server = MockServer::start();
    server.set_rule(|_| Reply::Accept);
    let fx = Fixture::new();
    fx.write("campaign.toml", campaign_with_bsuids(&server.base_url()));
    fx.write(
        "contacts.csv",
        "name,phone,bsuid,date\nCarla,,MX.2222.ENT,lunes\n",
    );
    opted_in(&fx);
    fx.wacampaign()
        .args([
            "consent",
            "opt-out",
            "MX.2222.ENT",
            "--source",
            "email, ticket 4412",
        ])
        .assert()
        .code(0);
    fx.wacampaign()
        .args(["check", "campaign.toml", "--excluded", "excluded.csv"])
        .assert()
        .code(0);
    assert!(
        fx.read("excluded.csv")
            .contains("2,,opted_out,opted out on"),
        "{}",
        fx.read("excluded.csv")
    );
    // Events recorded under a BSUID keep the chain verifiable.
    fx.wacampaign().args(["consent", "verify"]).assert().code(0);
}

#[test]
fn twilio_and_authentication_templates_leave_bsuid_only_contacts_out_with_the_reason() {
    let fx = Fixture::new();
    let twilio = edit(
        &edit(
            &edit(
                CAMPAIGN,
                "phone_column = \"phone\"",
                "phone_column = \"phone\"\nbsuid_column = \"bsuid\"",
            ),
            "[provider]\nkind = \"cloud_api\"\nphone_number_id = \"106540352242922\"\n",
            "[provider]\nkind = \"twilio\"\nfrom = \"+14155238886\"\n",
        ),
        "[template.variables]",
        "content_sid = \"HX0123456789abcdef0123456789abcdef\"\n\n[template.variables]",
    );
    fx.write("campaign.toml", &twilio);
    fx.write(
        "contacts.csv",
        "name,phone,bsuid,date\nBeto,5587654321,,martes\nCarla,,MX.2222.ENT,lunes\n",
    );
    opted_in(&fx);
    fx.wacampaign()
        .args(["check", "campaign.toml", "--excluded", "excluded.csv"])
        .assert()
        .code(0);
    assert_eq!(
        fx.read("excluded.csv").lines().nth(1),
        Some(
            "3,,bsuid_unreachable,\"only a business-scoped user ID, and Twilio sends to phone numbers only: add the number to the row\""
        )
    );

    let auth = edit(
        &edit(
            CAMPAIGN,
            "phone_column = \"phone\"",
            "phone_column = \"phone\"\nbsuid_column = \"bsuid\"",
        ),
        "category = \"utility\"",
        "category = \"authentication\"",
    );
    fx.write("campaign.toml", &auth);
    opt_in_everyone(&fx.path("campaign.toml"), &fx.path("wacampaign.db"));
    let checked = fx
        .wacampaign()
        .args(["check", "campaign.toml", "--excluded", "excluded.csv"])
        .assert();
    let out = String::from_utf8_lossy(&checked.get_output().stderr).into_owned();
    assert!(
        fx.read("excluded.csv")
            .contains("3,,bsuid_template,\"only a business-scoped user ID, and Meta sends no one-tap, zero-tap or copy-code authentication template to one (error 131062)"),
        "{}\n{out}",
        fx.read("excluded.csv")
    );
}
