//! Contract conformance: every request body wacampaign builds satisfies the
//! providers' official OpenAPI descriptions, as Prism checks them (see `prism.rs`).
//!
//! The bodies come from the real binary (`wacampaign preview --payload --json`), which
//! prints exactly what the Cloud API provider POSTs. Each is POSTed to Prism's
//! `/{api_version}/{phone_number_id}/messages` with a bearer token; a test passes only
//! if every one is answered 2xx with a response the provider can read (the wamid in
//! `messages[0].id`, the WhatsApp ID in `contacts[0].wa_id`).
//!
//! Prism 5 in mock mode answers a request that breaks the contract with 422 and an
//! `application/problem+json` body listing the violations (when the operation defines
//! no 422 or 400 of its own, as Meta's and Twilio's message operations do not), and a
//! request without the credentials the contract asks for with 401. `Prefer` headers
//! choose among valid responses only; these tests send none. The negative tests
//! prove the harness can fail: a real payload with one contract rule broken is
//! answered 422, naming the rule.
//!
//! What Prism cannot check: Meta's spec maps template parameters through a
//! `discriminator`, which Prism does not follow, so the shape of each parameter
//! (`type`, `text`, `parameter_name`) is not validated here; the envelope, the
//! template's name and language, and the component types are.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use wacampaign::campaign::{Campaign, ProviderConfig};

use crate::prism::{self, Prism, Reply};

/// The Cloud API version whose contract `../shared/specs` holds.
const CONTRACT_VERSION: &str = "v23.0";
const TOKEN: &str = "test-token";

/// A payload from the preview, with the contacts-file line it came from.
struct Payload {
    line: u64,
    body: Value,
}

fn shipped(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("campaigns")
        .join(name)
}

/// Every request body the Cloud API provider would send for `campaign`, with an
/// opt-in recorded for each of its contacts so none is left out for want of consent.
fn preview_payloads(campaign: &Path) -> Vec<Payload> {
    let loaded = Campaign::load(campaign).expect("loading the campaign");
    let ledger_dir = tempfile::tempdir().expect("creating a temporary directory");
    let db = ledger_dir.path().join("ledger.db");
    let imported = Command::new(env!("CARGO_BIN_EXE_wacampaign"))
        .args(["consent", "import"])
        .arg(&loaded.contacts.path)
        .args([
            "--purpose",
            loaded.purpose().as_str(),
            "--method",
            "web_form",
        ])
        .args([
            "--phone-column",
            &loaded.contacts.phone_column,
            "--default-region",
            "MX",
        ])
        .arg("--db")
        .arg(&db)
        .output()
        .expect("running wacampaign consent import");
    assert!(
        imported.status.success(),
        "consent import failed: {}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let output = Command::new(env!("CARGO_BIN_EXE_wacampaign"))
        .arg("--db")
        .arg(&db)
        .args([
            "preview",
            "--payload",
            "--json",
            "--limit",
            "1000",
            "--color",
            "never",
        ])
        .arg(campaign)
        .env("NO_COLOR", "1")
        .env_remove("WACAMPAIGN_DB")
        .env_remove("WACAMPAIGN_COLOR")
        .output()
        .expect("running wacampaign preview");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "wacampaign preview {} failed ({}):\n{}{stdout}",
        campaign.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line).unwrap_or_else(|e| {
                panic!("preview printed a line that is not JSON ({e}): {line}")
            });
            assert_eq!(record["type"], "preview", "unexpected record: {line}");
            let data = &record["data"];
            Payload {
                line: data["line"].as_u64().expect("data.line"),
                body: data["payload"].clone(),
            }
        })
        .collect()
}

/// Where the Cloud API provider POSTs for `campaign`, without the base URL.
fn messages_path(campaign: &Path) -> String {
    let campaign = Campaign::load(campaign).expect("loading the campaign");
    let ProviderConfig::CloudApi {
        phone_number_id,
        api_version,
        ..
    } = campaign.provider
    else {
        panic!("{} does not use the Cloud API", campaign.file.display());
    };
    assert_eq!(
        api_version, CONTRACT_VERSION,
        "the contract in ../shared/specs is for {CONTRACT_VERSION}"
    );
    format!("/{api_version}/{phone_number_id}/messages")
}

/// POSTs every payload of `campaign` to Prism; fails unless every one is accepted
/// with a readable answer. Returns how many were sent.
fn assert_every_payload_accepted(prism: &Prism, campaign: &Path) -> usize {
    let path = messages_path(campaign);
    let payloads = preview_payloads(campaign);
    assert!(
        !payloads.is_empty(),
        "{} previews no payload: nothing would be checked",
        campaign.display()
    );
    let mut failures = Vec::new();
    for payload in &payloads {
        let body = serde_json::to_vec(&payload.body).expect("serializing a payload");
        let reply = prism.post_json(&path, Some(TOKEN), &body);
        if let Err(why) = check_accepted(&reply) {
            failures.push((payload, why, reply));
        }
    }
    if let Some((_, _, first)) = failures.first() {
        let mut message = format!(
            "{} of {} payloads of {} broke Meta's contract (POST {}{path}):\n",
            failures.len(),
            payloads.len(),
            campaign.display(),
            prism.base_url()
        );
        for (payload, why, reply) in failures.iter().take(5) {
            let _ = writeln!(
                message,
                "- line {}: {why}\n  request: {}",
                payload.line, payload.body
            );
            for violation in template_branch_violations(reply) {
                let _ = writeln!(message, "  violation: {violation}");
            }
        }
        let _ = write!(message, "Prism's whole answer to the first:\n{first}");
        panic!("{message}");
    }
    payloads.len()
}

/// The message types of the other branches of the contract's `oneOf`.
const OTHER_MESSAGE_TYPES: &[&str] = &[
    "text",
    "audio",
    "document",
    "image",
    "location",
    "video",
    "sticker",
    "reaction",
    "interactive",
    "contacts",
];

/// Prism's violations without those only the other branches of the `oneOf` can
/// raise (a template payload fails every one of them too, and Prism lists it all),
/// once each.
fn template_branch_violations(reply: &Reply) -> Vec<String> {
    let other_branch = |message: &str| {
        message.contains("found 'template'")
            || OTHER_MESSAGE_TYPES.iter().any(|kind| {
                message.ends_with(&format!("required property '{kind}'"))
                    || message.ends_with(&format!("allowed values: {kind}"))
            })
    };
    let mut violations: Vec<String> = Vec::new();
    for message in reply.violations() {
        if !other_branch(&message) && !violations.contains(&message) {
            violations.push(message);
        }
    }
    violations
}

/// A 2xx with the wamid and the WhatsApp ID where the provider will read them.
fn check_accepted(reply: &Reply) -> Result<(), String> {
    if !reply.is_success() {
        return Err(format!("answered {}", reply.status));
    }
    let answer: Value =
        serde_json::from_str(&reply.body).map_err(|e| format!("answer is not JSON: {e}"))?;
    let non_empty = |value: &Value| value.as_str().is_some_and(|s| !s.is_empty());
    if !non_empty(&answer["messages"][0]["id"]) {
        return Err("answer has no messages[0].id (the wamid)".into());
    }
    if !non_empty(&answer["contacts"][0]["wa_id"]) {
        return Err("answer has no contacts[0].wa_id".into());
    }
    Ok(())
}

#[test]
fn positional_appointment_reminder_payloads_conform_to_the_cloud_api_contract() {
    let Some(prism) = prism::meta() else { return };
    assert_every_payload_accepted(prism, &shipped("appointment-reminder.toml"));
}

#[test]
fn named_promotion_payloads_conform_to_the_cloud_api_contract() {
    let Some(prism) = prism::meta() else { return };
    assert_every_payload_accepted(prism, &shipped("promotion.toml"));
}

/// Values that trip encoders: accents, quotes, commas, emoji, right-to-left text,
/// markup, backslashes, and an empty cell that takes the default.
const NAMES: &[&str] = &[
    "Ana",
    "José María",
    "Zoë O'Connor",
    "Lucía \"Lu\"",
    "Ñandú, S.A.",
    "李小龍",
    "محمد",
    "🎉 Fiesta",
    "<b>Tom & Jerry</b>",
    r"Back\slash",
    "",
];

/// 100 distinct Mexican mobile numbers in the spellings people type.
fn phone(i: usize) -> String {
    let n = 5000 + i;
    match i % 5 {
        0 => format!("+52 55 1234 {n}"),
        1 => format!("(55) 1234-{n}"),
        2 => format!("55-1234-{n}"),
        3 => format!("0052 55 1234 {n}"),
        _ => format!("+52 1 55 1234 {n}"),
    }
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

#[test]
fn a_generated_campaign_of_100_contacts_conforms_to_the_cloud_api_contract() {
    let Some(prism) = prism::meta() else { return };
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let mut contacts = String::from("nombre,telefono,pedido,monto\n");
    for i in 0..100 {
        let row = [
            csv_field(NAMES[i % NAMES.len()]),
            csv_field(&phone(i)),
            format!("A-{i:05}"),
            csv_field(&format!("${},{:03}.50 MXN", 1 + i / 10, i * 7 % 1000)),
        ];
        contacts.push_str(&row.join(","));
        contacts.push('\n');
    }
    fs_write(&dir.path().join("contacts.csv"), &contacts);
    fs_write(
        &dir.path().join("generated.toml"),
        r#"[campaign]
id = "generated-100"
category = "utility"
contacts = "contacts.csv"
phone_column = "telefono"
default_region = "MX"

[template]
name = "order_ready"
language = "es_MX"
body = "Hola {{first_name}}, tu pedido {{order}} por {{amount}} está listo en {{store}}."

[template.variables]
first_name = { column = "nombre", default = "cliente" }
order = { column = "pedido" }
amount = { column = "monto" }
store = { value = "Tiendas Aurora — Sucursal Roma" }

[provider]
kind = "cloud_api"
phone_number_id = "106540352242922"
"#,
    );
    let sent = assert_every_payload_accepted(prism, &dir.path().join("generated.toml"));
    assert_eq!(
        sent, 100,
        "every generated contact is eligible and previewed"
    );
}

fn fs_write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// The first payload of the shipped reminder, and where it goes; accepted as is, so
/// a rejection of an edited copy is down to the edit.
fn a_real_payload(prism: &Prism) -> (String, Value) {
    let campaign = shipped("appointment-reminder.toml");
    let path = messages_path(&campaign);
    let payload = preview_payloads(&campaign)
        .into_iter()
        .next()
        .expect("the shipped reminder previews at least one payload")
        .body;
    let body = serde_json::to_vec(&payload).expect("serializing a payload");
    let reply = prism.post_json(&path, Some(TOKEN), &body);
    assert!(
        reply.is_success(),
        "the unedited payload is rejected: {reply}"
    );
    (path, payload)
}

/// A 422 problem whose violations name `rule`.
fn assert_rejected_for(reply: &Reply, rule: &str) {
    assert_eq!(
        reply.status, 422,
        "expected Prism to reject the request: {reply}"
    );
    assert!(
        reply.content_type.starts_with("application/problem+json"),
        "expected an application/problem+json answer: {reply}"
    );
    let violations = reply.violations();
    assert!(
        violations.iter().any(|message| message.contains(rule)),
        "no violation names {rule}: {violations:#?}"
    );
}

#[test]
fn the_harness_fails_a_payload_without_recipient_type() {
    let Some(prism) = prism::meta() else { return };
    let (path, mut payload) = a_real_payload(prism);
    payload
        .as_object_mut()
        .expect("a payload is an object")
        .remove("recipient_type")
        .expect("the real payload has recipient_type");
    let body = serde_json::to_vec(&payload).expect("serializing a payload");
    let reply = prism.post_json(&path, Some(TOKEN), &body);
    assert_rejected_for(&reply, "required property 'recipient_type'");
}

#[test]
fn the_harness_fails_a_payload_with_another_language_policy() {
    let Some(prism) = prism::meta() else { return };
    let (path, mut payload) = a_real_payload(prism);
    let policy = &mut payload["template"]["language"]["policy"];
    assert_eq!(*policy, "deterministic", "the real payload's policy");
    *policy = Value::from("fallback");
    let body = serde_json::to_vec(&payload).expect("serializing a payload");
    let reply = prism.post_json(&path, Some(TOKEN), &body);
    assert_rejected_for(&reply, "template.language.policy");
}

#[test]
fn the_harness_fails_a_request_without_a_bearer_token() {
    let Some(prism) = prism::meta() else { return };
    let (path, payload) = a_real_payload(prism);
    let body = serde_json::to_vec(&payload).expect("serializing a payload");
    let reply = prism.post_json(&path, None, &body);
    assert_eq!(reply.status, 401, "expected 401 without a token: {reply}");
}

// ---- Twilio: the harness serves its contract too, for the Twilio provider to come ----

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "test-auth-token";
const CONTENT_SID: &str = "HX0123456789abcdef0123456789abcdef";

fn twilio_messages_path() -> String {
    format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json")
}

#[test]
fn a_twilio_whatsapp_template_form_conforms_to_the_messages_contract() {
    let Some(prism) = prism::twilio() else { return };
    let reply = prism.post_form(
        &twilio_messages_path(),
        Some((ACCOUNT_SID, AUTH_TOKEN)),
        &[
            ("To", "whatsapp:+5215512345678"),
            ("From", "whatsapp:+14155238886"),
            ("ContentSid", CONTENT_SID),
            ("ContentVariables", r#"{"1":"Ana","2":"Clínica Roma"}"#),
        ],
    );
    assert!(
        reply.is_success(),
        "Twilio's contract rejects the form: {reply}"
    );
    let answer = reply.json();
    for field in ["sid", "status"] {
        assert!(
            answer[field].as_str().is_some_and(|s| !s.is_empty()),
            "the answer has no {field}: {reply}"
        );
    }
}

#[test]
fn the_harness_fails_a_twilio_form_with_a_malformed_content_sid() {
    let Some(prism) = prism::twilio() else { return };
    let reply = prism.post_form(
        &twilio_messages_path(),
        Some((ACCOUNT_SID, AUTH_TOKEN)),
        &[
            ("To", "whatsapp:+5215512345678"),
            ("From", "whatsapp:+14155238886"),
            ("ContentSid", "HX123"),
        ],
    );
    assert_rejected_for(&reply, "ContentSid");
}

#[test]
fn the_harness_fails_a_twilio_form_without_basic_auth() {
    let Some(prism) = prism::twilio() else { return };
    let reply = prism.post_form(
        &twilio_messages_path(),
        None,
        &[
            ("To", "whatsapp:+5215512345678"),
            ("ContentSid", CONTENT_SID),
        ],
    );
    assert_eq!(
        reply.status, 401,
        "expected 401 without Basic auth: {reply}"
    );
}
