//! Real campaigns sent with `wacampaign send` through both providers to Prism serving
//! the providers' official OpenAPI descriptions. Prism answers 422 to a request that
//! breaks the contract and 401 to one without credentials; either would leave a
//! recipient retried or failed. So a run passes only if every request was accepted on
//! the first try, and the journal holds what our parser read from Prism's example
//! answers: the wamid and `wa_id` for Meta, the message SID and status for Twilio.

use std::process::Command;

use serde_json::Value;

use crate::prism::{self, Prism};
use crate::support::opt_in_everyone;

const META_PROVIDER: &str = r#"[provider]
kind = "cloud_api"
phone_number_id = "106540352242922"
base_url = "BASE_URL"
timeout_ms = 10000
"#;

const TWILIO_PROVIDER: &str = r#"[provider]
kind = "twilio"
from = "+14155238886"
base_url = "BASE_URL"
timeout_ms = 10000
"#;

/// A test account SID: Twilio's contract insists on `AC` and 32 hex digits.
const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";

/// state, message_id, wa_id, message_status
type JournalRow = (String, Option<String>, Option<String>, Option<String>);

struct Run {
    summary: Value,
    rows: Vec<JournalRow>,
}

/// Writes the campaign (with `provider` aimed at Prism) and its contacts, records an
/// opt-in for everyone, runs `send --yes --json` with `account_sid` for Twilio, and
/// reads the journal back.
fn run_send(
    prism: &Prism,
    template: &str,
    provider: &str,
    contacts: &str,
    account_sid: &str,
) -> (std::process::Output, Vec<JournalRow>) {
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let campaign = format!(
        "[campaign]\nid = \"conformance\"\ncategory = \"utility\"\ncontacts = \"contacts.csv\"\n\
         phone_column = \"phone\"\ndefault_region = \"MX\"\n\n{template}\n[sending]\n\
         rate_per_second = 1000\nconcurrency = 8\n\n{}",
        provider.replace("BASE_URL", prism.base_url())
    );
    std::fs::write(dir.path().join("campaign.toml"), campaign).expect("writing the campaign");
    std::fs::write(dir.path().join("contacts.csv"), contacts).expect("writing the contacts");
    let db = dir.path().join("wacampaign.db");
    opt_in_everyone(&dir.path().join("campaign.toml"), &db);
    let output = Command::new(env!("CARGO_BIN_EXE_wacampaign"))
        .current_dir(dir.path())
        .args(["--color", "never", "--json", "--db"])
        .arg(&db)
        .args(["send", "campaign.toml", "--yes", "--no-media-check"])
        .env("WHATSAPP_TOKEN", "conformance-test-token")
        .env("TWILIO_ACCOUNT_SID", account_sid)
        .env("TWILIO_AUTH_TOKEN", "conformance-test-auth-token")
        .env_remove("TWILIO_API_KEY_SID")
        .env_remove("TWILIO_API_KEY_SECRET")
        .env_remove("WACAMPAIGN_DB")
        .env_remove("WACAMPAIGN_RATE")
        .env_remove("WACAMPAIGN_CONCURRENCY")
        .output()
        .expect("running wacampaign send");
    let conn = rusqlite::Connection::open(&db).expect("opening the journal");
    let mut stmt = conn
        .prepare("SELECT state, message_id, wa_id, message_status FROM journal ORDER BY seq")
        .expect("querying the journal");
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("reading the journal")
        .collect::<Result<Vec<_>, _>>()
        .expect("reading the journal");
    (output, rows)
}

/// [`run_send`] with valid credentials, which must finish cleanly.
fn send(prism: &Prism, template: &str, provider: &str, contacts: &str) -> Run {
    let (output, rows) = run_send(prism, template, provider, contacts, ACCOUNT_SID);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "send did not finish cleanly:\n{stderr}{stdout}\nPrism's log:\n{}",
        prism.log_tail(40)
    );
    let summary: Value = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|record| record["type"] == "send_summary")
        .unwrap_or_else(|| panic!("no send_summary in:\n{stdout}"))["data"]
        .clone();
    Run { summary, rows }
}

/// Every contact accepted on the first request, none retried, none failed.
fn assert_all_accepted_first_time(run: &Run, expected: usize) {
    let this_run = &run.summary["this_run"];
    assert_eq!(run.rows.len(), expected, "journal rows: {:?}", run.summary);
    assert_eq!(this_run["accepted"], expected as u64, "{}", run.summary);
    assert_eq!(
        this_run["requests"], expected as u64,
        "a request was retried, so the contract refused one: {}",
        run.summary
    );
    for (state, ..) in &run.rows {
        assert_eq!(state, "accepted");
    }
}

fn contacts(n: usize) -> String {
    let names = ["Ana", "José", "María \"Mary\"", "Zoë, Jr.", "李雷", "Renée"];
    let mut text = String::from("phone,name,order,amount\n");
    for i in 0..n {
        let name = names[i % names.len()].replace('"', "\"\"");
        text.push_str(&format!(
            "+52 55 {:04} {:04},\"{name}\",A-{i:05},\"${}.50\"\n",
            1000 + i,
            2000 + i * 3,
            i + 1
        ));
    }
    text
}

const POSITIONAL: &str = r#"[template]
name = "order_ready"
language = "es_MX"
content_sid = "HX0123456789abcdef0123456789abcdef"
body = "Hola {{1}}, tu pedido {{2}} está listo."

[template.variables]
"1" = { column = "name" }
"2" = { column = "order" }
"#;

const NAMED: &str = r#"[template]
name = "order_total"
language = "es_MX"
content_sid = "HX0123456789abcdef0123456789abcdef"
body = "Hola {{first_name}}, tu pedido {{order}} por {{amount}} está listo en <<store>>."

[template.variables]
first_name = { column = "name" }
order = { column = "order" }
amount = { column = "amount" }
store = { value = "Tiendas Aurora" }
"#;

fn assert_meta_answers_read(run: &Run) {
    // Prism's example answer has no `message_status` (it is optional): only the wamid
    // and the WhatsApp ID are certain to be there.
    for (_, message_id, wa_id, _) in &run.rows {
        let message_id = message_id.as_deref().unwrap_or_default();
        assert!(
            message_id.starts_with("wamid."),
            "wamid read from Prism's answer: {message_id}"
        );
        assert!(
            wa_id.as_deref().is_some_and(|w| !w.is_empty()),
            "wa_id read"
        );
    }
}

fn assert_twilio_answers_read(run: &Run) {
    for (_, message_id, _, status) in &run.rows {
        let sid = message_id.as_deref().unwrap_or_default();
        assert!(
            sid.starts_with("SM") || sid.starts_with("MM"),
            "message SID read: {sid}"
        );
        assert!(
            status.as_deref().is_some_and(|s| !s.is_empty()),
            "status read"
        );
    }
}

#[test]
fn a_positional_template_sent_through_the_cloud_api_conforms() {
    let Some(prism) = prism::meta() else { return };
    let run = send(prism, POSITIONAL, META_PROVIDER, &contacts(3));
    assert_all_accepted_first_time(&run, 3);
    assert_meta_answers_read(&run);
}

#[test]
fn a_named_template_sent_through_the_cloud_api_conforms() {
    let Some(prism) = prism::meta() else { return };
    let run = send(prism, NAMED, META_PROVIDER, &contacts(3));
    assert_all_accepted_first_time(&run, 3);
    assert_meta_answers_read(&run);
}

#[test]
fn a_hundred_contacts_sent_through_the_cloud_api_conform() {
    let Some(prism) = prism::meta() else { return };
    let run = send(prism, NAMED, META_PROVIDER, &contacts(100));
    assert_all_accepted_first_time(&run, 100);
    assert_meta_answers_read(&run);
}

#[test]
fn a_positional_template_sent_through_twilio_conforms() {
    let Some(prism) = prism::twilio() else { return };
    let run = send(prism, POSITIONAL, TWILIO_PROVIDER, &contacts(3));
    assert_all_accepted_first_time(&run, 3);
    assert_twilio_answers_read(&run);
}

#[test]
fn a_named_template_sent_through_twilio_conforms() {
    let Some(prism) = prism::twilio() else { return };
    let run = send(prism, NAMED, TWILIO_PROVIDER, &contacts(3));
    assert_all_accepted_first_time(&run, 3);
    assert_twilio_answers_read(&run);
}

#[test]
fn a_hundred_contacts_sent_through_twilio_conform() {
    let Some(prism) = prism::twilio() else { return };
    let run = send(prism, POSITIONAL, TWILIO_PROVIDER, &contacts(100));
    assert_all_accepted_first_time(&run, 100);
    assert_twilio_answers_read(&run);
}

/// The harness must be able to fail: a campaign whose requests break the contract
/// (an account SID Twilio's contract refuses) does not pass as accepted.
#[test]
fn a_request_that_breaks_the_contract_is_not_accepted() {
    let Some(prism) = prism::twilio() else { return };
    // Not `AC` + 32 hex digits: the contract's path pattern refuses it (422).
    let (output, rows) = run_send(
        prism,
        POSITIONAL,
        TWILIO_PROVIDER,
        &contacts(1),
        "ACnot-a-real-sid",
    );
    assert_ne!(
        output.status.code(),
        Some(0),
        "a refused request must not finish cleanly"
    );
    assert_eq!(rows.len(), 1, "the contact was planned");
    assert_ne!(
        rows[0].0,
        "accepted",
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

// ---- header and buttons, through the errata overlay (tests/integration/specs) ----

/// An image header from a column, a URL button with a per-contact suffix, an opt-out
/// quick reply, in each contact's language.
const WITH_COMPONENTS: &str = r#"[template]
name = "spring_sale"
language = "es_MX"
languages = ["es_MX", "en_US"]
language_column = "lang"
language_fallback = ["en_US"]
body = "Hola {{1}}, tu selección {{2}} te espera."

[template.variables]
"1" = { column = "name" }
"2" = { column = "order" }

[template.header]
type = "image"
link = { column = "image" }

[[template.buttons]]
index = 0
type = "url"
suffix = { column = "order" }

[[template.buttons]]
index = 1
type = "quick_reply"
payload = { value = "STOP_PROMOS" }
opt_out = true
"#;

/// A document header with its file name and a copy-code button.
const DOCUMENT_AND_COUPON: &str = r#"[template]
name = "invoice_coupon"
language = "es_MX"
body = "Hola {{1}}, aquí está tu factura {{2}}."

[template.variables]
"1" = { column = "name" }
"2" = { column = "order" }

[template.header]
type = "document"
link = { value = "https://tiendas-aurora.example.com/facturas/f.pdf" }
filename = "factura.pdf"

[[template.buttons]]
index = 0
type = "copy_code"
code = { value = "AURORA25" }
"#;

/// A location header from columns and a URL button.
const LOCATION: &str = r#"[template]
name = "pickup_point"
language = "es_MX"
body = "Hola {{1}}, tu pedido {{2}} te espera aquí."

[template.variables]
"1" = { column = "name" }
"2" = { column = "order" }

[template.header]
type = "location"
latitude = { value = "19.4326" }
longitude = { value = "-99.1332" }
name = { value = "Tiendas Aurora Roma" }
address = { column = "address" }

[[template.buttons]]
index = 0
type = "url"
suffix = { column = "order" }
"#;

fn component_contacts(n: usize) -> String {
    let langs = ["es-MX", "en_US", "ES_mx", "fr_FR", ""];
    let mut text = String::from("phone,name,order,lang,image,address\n");
    for i in 0..n {
        text.push_str(&format!(
            "+52 55 {:04} {:04},Cliente {i},A-{i:05},{},https://tiendas-aurora.example.com/img/{i}.jpg,\"Calle {i}, Roma Nte.\"\n",
            1000 + i,
            2000 + i * 3,
            langs[i % langs.len()]
        ));
    }
    text
}

#[test]
fn a_template_with_an_image_header_buttons_and_two_languages_sent_through_the_cloud_api_conforms() {
    let Some(prism) = prism::meta() else { return };
    let run = send(
        prism,
        WITH_COMPONENTS,
        META_PROVIDER,
        &component_contacts(10),
    );
    assert_all_accepted_first_time(&run, 10);
    assert_meta_answers_read(&run);
}

#[test]
fn a_document_header_and_a_copy_code_button_sent_through_the_cloud_api_conform() {
    let Some(prism) = prism::meta() else { return };
    let run = send(
        prism,
        DOCUMENT_AND_COUPON,
        META_PROVIDER,
        &component_contacts(3),
    );
    assert_all_accepted_first_time(&run, 3);
}

#[test]
fn a_location_header_sent_through_the_cloud_api_conforms() {
    let Some(prism) = prism::meta() else { return };
    let run = send(prism, LOCATION, META_PROVIDER, &component_contacts(3));
    assert_all_accepted_first_time(&run, 3);
}

/// Without the overlay, Meta's v23.0 file refuses the index every first button has.
#[test]
fn the_errata_overlay_fits_the_spec_and_is_what_lets_index_0_through() {
    let spec = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/specs/meta-business-messaging-api_v23.0.yaml");
    if !spec.is_file() {
        eprintln!("skipped: {} is not there", spec.display());
        return;
    }
    let original = std::fs::read_to_string(&spec).unwrap();
    let patched = prism::apply_errata(&spec, &prism::errata_file(prism::Spec::Meta)).unwrap();
    assert!(original.contains("pattern: ^[2-6, 11-14]$"));
    assert!(!patched.contains("pattern: ^[2-6, 11-14]$"));
    assert!(patched.contains("ButtonCouponCodeParameter:"));
    assert!(patched.contains("LocationParameter:"));
    // Nothing but additions and the index pattern: every original line but the
    // patterns is still there, in order.
    let kept: Vec<&str> = original
        .lines()
        .filter(|l| !l.contains("pattern: ^[2-6, 11-14]$"))
        .collect();
    let mut patched_lines = patched.lines();
    for line in kept {
        assert!(
            patched_lines.any(|p| p == line),
            "the overlay removed or reordered `{line}`"
        );
    }
}

#[test]
fn templates_sync_against_the_contract_reads_the_listing() {
    let Some(prism) = prism::meta() else { return };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let provider = format!(
        "{}waba_id = \"102290129340398\"\n",
        META_PROVIDER.replace("BASE_URL", prism.base_url())
    );
    let campaign = format!(
        "[campaign]\nid = \"sync\"\ncategory = \"marketing\"\ncontacts = \"contacts.csv\"\n\
         phone_column = \"phone\"\n\n{POSITIONAL}\n{provider}"
    );
    std::fs::write(dir.path().join("campaign.toml"), campaign).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_wacampaign"))
        .current_dir(dir.path())
        .args([
            "--color",
            "never",
            "--db",
            "w.db",
            "templates",
            "sync",
            "campaign.toml",
        ])
        .env("WHATSAPP_TOKEN", "conformance-test-token")
        .env_remove("WACAMPAIGN_DB")
        .output()
        .expect("running wacampaign templates sync");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stderr}\nPrism's log:\n{}",
        prism.log_tail(40)
    );
    // The spec's example answer: two templates on one page.
    assert!(stderr.contains("stored 2 templates"), "{stderr}");
}

#[test]
fn templates_sync_against_twilios_content_contract_reads_the_listing() {
    let Some(prism) = prism::twilio_content() else {
        return;
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let provider = format!(
        "{}account_sid = \"{ACCOUNT_SID}\"\ncontent_base_url = \"{}\"\n",
        TWILIO_PROVIDER.replace("BASE_URL", "https://api.twilio.com"),
        prism.base_url()
    );
    let campaign = format!(
        "[campaign]\nid = \"sync\"\ncategory = \"utility\"\ncontacts = \"contacts.csv\"\n\
         phone_column = \"phone\"\n\n{POSITIONAL}\n{provider}"
    );
    std::fs::write(dir.path().join("campaign.toml"), campaign).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_wacampaign"))
        .current_dir(dir.path())
        .args([
            "--color",
            "never",
            "--db",
            "w.db",
            "templates",
            "sync",
            "campaign.toml",
        ])
        .env("TWILIO_AUTH_TOKEN", "conformance-test-auth-token")
        .env_remove("TWILIO_API_KEY_SID")
        .env_remove("TWILIO_API_KEY_SECRET")
        .env_remove("WACAMPAIGN_DB")
        .output()
        .expect("running wacampaign templates sync");
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Prism answers a request that breaks the contract with 4xx, which fails the sync.
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stderr}\nPrism's log:\n{}",
        prism.log_tail(40)
    );
    assert!(stderr.contains("templates"), "{stderr}");
    assert!(
        stderr.contains(&format!("of Twilio account {ACCOUNT_SID}")),
        "{stderr}"
    );
}

/// [`WITH_COMPONENTS`] for Twilio: one Content SID per language, and the Content
/// template's variable each header and button value fills.
fn twilio_components() -> String {
    WITH_COMPONENTS
        .replace(
            "language_fallback = [\"en_US\"]\n",
            "language_fallback = [\"en_US\"]\ncontent_sid = \"HX0123456789abcdef0123456789abcdef\"\n\
             content_sids = { en_US = \"HX1123456789abcdef0123456789abcdef\" }\n",
        )
        .replace(
            "link = { column = \"image\" }\n",
            "link = { column = \"image\" }\ntwilio_variable = \"3\"\n",
        )
        .replace(
            "suffix = { column = \"order\" }\n",
            "suffix = { column = \"order\" }\ntwilio_variable = \"4\"\n",
        )
        .replace("opt_out = true\n", "opt_out = true\ntwilio_variable = \"5\"\n")
}

#[test]
fn a_template_with_an_image_header_buttons_and_two_languages_sent_through_twilio_conforms() {
    let Some(prism) = prism::twilio() else { return };
    let template = twilio_components();
    let run = send(prism, &template, TWILIO_PROVIDER, &component_contacts(10));
    assert_all_accepted_first_time(&run, 10);
    assert_twilio_answers_read(&run);
}

/// The shipped `campaigns/spring-sale.toml` (image header, URL button, opt-out quick
/// reply, two languages), its `[provider]` aimed at Prism: every request of the real
/// campaign file is accepted on the first try.
fn send_shipped_spring_sale(prism: &Prism, provider: &str, twilio: bool) -> Run {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("campaigns");
    let text = std::fs::read_to_string(shipped.join("spring-sale.toml")).unwrap();
    let at = text.find("[provider]").unwrap();
    let sending = text.find("[sending]").unwrap();
    let mut campaign = format!(
        "{}{}\n{}",
        &text[..at],
        provider.replace("BASE_URL", prism.base_url()),
        &text[sending..]
    );
    if twilio {
        campaign = campaign
            .replace(
                "language_fallback = [\"en_US\"]\n",
                "language_fallback = [\"en_US\"]\ncontent_sid = \"HX0123456789abcdef0123456789abcdef\"\n\
                 content_sids = { en_US = \"HX1123456789abcdef0123456789abcdef\" }\n",
            )
            .replace("primavera-2027.jpg\" }\n", "primavera-2027.jpg\" }\ntwilio_variable = \"2\"\n")
            .replace("suffix = { column = \"oferta\" }\n", "suffix = { column = \"oferta\" }\ntwilio_variable = \"3\"\n")
            .replace("opt_out = true\n", "opt_out = true\ntwilio_variable = \"4\"\n");
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("spring-sale.toml"), campaign).unwrap();
    std::fs::copy(
        shipped.join("spring-sale.csv"),
        dir.path().join("spring-sale.csv"),
    )
    .unwrap();
    let db = dir.path().join("wacampaign.db");
    opt_in_everyone(&dir.path().join("spring-sale.toml"), &db);
    let output = Command::new(env!("CARGO_BIN_EXE_wacampaign"))
        .current_dir(dir.path())
        .args(["--color", "never", "--json", "--db"])
        .arg(&db)
        .args(["send", "spring-sale.toml", "--yes", "--no-media-check"])
        .env("WHATSAPP_TOKEN", "conformance-test-token")
        .env("TWILIO_ACCOUNT_SID", ACCOUNT_SID)
        .env("TWILIO_AUTH_TOKEN", "conformance-test-auth-token")
        .env_remove("TWILIO_API_KEY_SID")
        .env_remove("TWILIO_API_KEY_SECRET")
        .env_remove("WACAMPAIGN_DB")
        .env_remove("WACAMPAIGN_RATE")
        .env_remove("WACAMPAIGN_CONCURRENCY")
        .output()
        .expect("running wacampaign send");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{stdout}\nPrism's log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        prism.log_tail(40)
    );
    let summary: Value = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|record| record["type"] == "send_summary")
        .unwrap_or_else(|| panic!("no send_summary in:\n{stdout}"))["data"]
        .clone();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let rows = conn
        .prepare("SELECT state, message_id, wa_id, message_status FROM journal ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    Run { summary, rows }
}

#[test]
fn the_shipped_two_language_campaign_sent_through_the_cloud_api_conforms() {
    let Some(prism) = prism::meta() else { return };
    let run = send_shipped_spring_sale(prism, META_PROVIDER, false);
    // Seven contacts; one is left out for the space in its URL suffix.
    assert_all_accepted_first_time(&run, 6);
    assert_meta_answers_read(&run);
}

#[test]
fn the_shipped_two_language_campaign_sent_through_twilio_conforms() {
    let Some(prism) = prism::twilio() else { return };
    let run = send_shipped_spring_sale(prism, TWILIO_PROVIDER, true);
    assert_all_accepted_first_time(&run, 6);
    assert_twilio_answers_read(&run);
}

#[test]
fn a_file_uploaded_once_and_sent_by_media_id_conforms() {
    let Some(prism) = prism::meta() else { return };
    let template = r#"[template]
name = "promo_image"
language = "es_MX"
body = "Hola {{1}}, tu pedido {{2}} está listo."

[template.variables]
"1" = { column = "name" }
"2" = { column = "order" }

[template.header]
type = "image"
file = "/PROMO_JPG"
"#;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("promo.jpg");
    std::fs::write(&file, b"\xff\xd8\xff\xe0 not really a jpeg").unwrap();
    let template = template.replace("/PROMO_JPG", file.to_str().unwrap());
    let run = send(prism, &template, META_PROVIDER, &contacts(3));
    assert_all_accepted_first_time(&run, 3);
}
