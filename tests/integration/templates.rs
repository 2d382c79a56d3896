//! `wacampaign templates` (sync, import, list, show) against a loopback server, and
//! the pre-flight that `check`, `preview` and `send` run against the synced
//! templates: every mismatch refused before the first request.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::mock_server::{MockServer, Reply};
use crate::support::{CAMPAIGN, Fixture, edit, stdout};

const TOKEN: &str = "EAAGtemplates0token0for0the0mock";
const WABA: &str = "102290129340398";

/// The shared test campaign with an account, pointed at `base_url`.
fn campaign(base_url: &str) -> String {
    format!("{CAMPAIGN}waba_id = \"{WABA}\"\nbase_url = \"{base_url}\"\ntimeout_ms = 5000\n")
}

/// A template as Meta lists it.
fn template(name: &str, language: &str, status: &str, category: &str, body: &str) -> Value {
    json!({
        "name": name,
        "language": language,
        "status": status,
        "category": category,
        "quality_score": {"score": "GREEN"},
        "parameter_format": "POSITIONAL",
        "components": [{"type": "BODY", "text": body}],
        "id": format!("{name}-{language}"),
    })
}

/// The template the test campaign describes, approved.
fn reminder() -> Value {
    template(
        "appointment_reminder",
        "es_MX",
        "APPROVED",
        "UTILITY",
        "Hola {{1}}, tu cita es el {{2}}.",
    )
}

/// One page of a listing; `after` makes it say more follow.
fn page(data: Vec<Value>, after: Option<&str>) -> String {
    let mut answer = json!({"data": data});
    if let Some(cursor) = after {
        answer["paging"] = json!({
            "cursors": {"before": "B", "after": cursor},
            "next": format!("https://graph.facebook.com/v23.0/{WABA}/message_templates?after={cursor}"),
        });
    }
    answer.to_string()
}

fn ok(body: String) -> Reply {
    Reply::Raw { status: 200, body }
}

/// A fixture whose campaign reaches `server`, with two contacts.
fn fixture(server: &MockServer) -> Fixture {
    let fx = Fixture::with_contacts(
        "name,phone,date\nAna,+52 55 1234 5678,martes\nLuis,+52 55 2345 6789,\n",
    );
    fx.write("campaign.toml", campaign(&server.base_url()));
    fx
}

fn sync(fx: &Fixture) -> assert_cmd::assert::Assert {
    fx.wacampaign()
        .env("WHATSAPP_TOKEN", TOKEN)
        .args(["templates", "sync", "campaign.toml"])
        .assert()
}

/// The names in the cache, as `templates list --json` prints them.
fn listed(fx: &Fixture) -> Vec<String> {
    let out = fx
        .wacampaign()
        .args(["--json", "templates", "list", "--waba-id", WABA])
        .assert()
        .success();
    stdout(&out)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("JSON Lines");
            assert_eq!(v["type"], "template");
            v["data"]["name"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// The listing in three pages, by the cursor each request carries.
fn three_pages(path: &str) -> Reply {
    if path.contains("after=P3") {
        ok(page(
            vec![template("c_one", "es_MX", "APPROVED", "UTILITY", "c")],
            None,
        ))
    } else if path.contains("after=P2") {
        ok(page(
            vec![
                template("b_one", "es_MX", "APPROVED", "UTILITY", "b"),
                template("b_two", "en_US", "PAUSED", "MARKETING", "b"),
            ],
            Some("P3"),
        ))
    } else {
        ok(page(vec![reminder()], Some("P2")))
    }
}

#[test]
fn sync_follows_three_pages_and_stores_every_template() {
    let server = MockServer::start();
    server.set_rule(|r| three_pages(r.path));
    let fx = fixture(&server);
    sync(&fx).success().stderr(format!(
        "stored 4 templates (3 approved) of WhatsApp Business Account {WABA}\n"
    ));
    let log = server.log();
    assert_eq!(log.len(), 3, "one request per page");
    for (i, request) in log.iter().enumerate() {
        assert_eq!(request.method, "GET");
        assert!(
            request.path.starts_with(&format!("/v23.0/{WABA}/message_templates?fields=name%2Clanguage%2Cstatus%2Ccategory%2Cquality_score%2Cparameter_format%2Ccomponents&limit=100")),
            "{}",
            request.path
        );
        assert_eq!(
            request.header("authorization"),
            Some(&*format!("Bearer {TOKEN}"))
        );
        let cursor = ["", "&after=P2", "&after=P3"][i];
        assert!(
            request.path.ends_with(&format!("limit=100{cursor}")),
            "{}",
            request.path
        );
    }
    let mut names = listed(&fx);
    names.sort();
    assert_eq!(names, ["appointment_reminder", "b_one", "b_two", "c_one"]);
}

#[test]
fn a_sync_interrupted_on_page_two_keeps_the_previous_cache_whole() {
    let server = MockServer::start();
    server.set_rule(|_| ok(page(vec![reminder()], None)));
    let fx = fixture(&server);
    sync(&fx).success();
    for broken in [
        Reply::Status(500),
        ok("{\"data\": [".to_owned()),
        ok(String::new()),
        Reply::Drop,
    ] {
        server.set_rule(move |r| {
            if r.path.contains("after=P2") {
                broken.clone()
            } else {
                ok(page(
                    vec![template("new_one", "es_MX", "APPROVED", "UTILITY", "x")],
                    Some("P2"),
                ))
            }
        });
        let out = sync(&fx).code(2);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(stderr.contains("The cache was not changed."), "{stderr}");
        assert!(!stderr.contains(TOKEN), "the token was echoed: {stderr}");
        assert_eq!(listed(&fx), ["appointment_reminder"], "after: {stderr}");
    }
}

#[test]
fn a_refused_token_is_a_clear_error_that_does_not_echo_it() {
    let server = MockServer::start();
    server.set_rule(|_| Reply::EchoAuthorization);
    let fx = fixture(&server);
    let out = sync(&fx).code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("the access token was refused (HTTP 401"),
        "{stderr}"
    );
    assert!(stderr.contains("$WHATSAPP_TOKEN"), "{stderr}");
    assert!(!stderr.contains(TOKEN), "the token was echoed: {stderr}");
}

#[test]
fn a_429_is_asked_again_after_its_retry_after() {
    let server = MockServer::start();
    server.set_rule(|r| {
        if r.n == 1 {
            Reply::TooMany { retry_after: 1 }
        } else {
            ok(page(vec![reminder()], None))
        }
    });
    let fx = fixture(&server);
    let started = Instant::now();
    sync(&fx).success();
    assert!(started.elapsed() >= Duration::from_secs(1));
    let log = server.log();
    assert_eq!(log.len(), 2);
    assert!(log[1].at - log[0].at >= Duration::from_millis(950));
    assert_eq!(listed(&fx), ["appointment_reminder"]);
}

#[test]
fn an_endless_429_gives_up_with_when_to_retry() {
    let server = MockServer::start();
    server.set_rule(|_| Reply::TooMany { retry_after: 3600 });
    let fx = fixture(&server);
    sync(&fx).code(2).stderr(predicates::str::contains(
        "rate limited (HTTP 429) 1 times (Retry-After: 3600s); run `wacampaign templates sync` again later",
    ));
    assert_eq!(server.count(), 1);
}

#[test]
fn import_refuses_what_is_not_a_message_templates_answer() {
    let fx = Fixture::new();
    for (contents, message) in [
        ("", "empty; expected a `message_templates` answer"),
        ("{\"data\": [", "not JSON"),
        (
            "{\"error\": {\"code\": 190}}",
            "not a `message_templates` answer: it has no `data` key",
        ),
        (
            "{\"data\": [{\"name\": \"x\", \"language\": \"es\", \"components\": []}]}",
            "data[0] (x): `status` is missing",
        ),
    ] {
        fx.write("saved.json", contents);
        fx.wacampaign()
            .args(["templates", "import", "saved.json", "--waba-id", WABA])
            .assert()
            .code(2)
            .stderr(predicates::str::contains(format!("saved.json: {message}")));
    }
    fx.wacampaign()
        .args(["templates", "list"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("run `wacampaign templates sync"));
    assert!(
        !fx.path("wacampaign.db").exists(),
        "a refused import writes nothing"
    );
}

/// A fixture with `templates` imported as the account's cache.
fn imported(templates: Vec<Value>) -> Fixture {
    let fx = Fixture::with_contacts("name,phone,date\nAna,+52 55 1234 5678,martes\n");
    fx.write("campaign.toml", campaign("http://127.0.0.1:9"));
    fx.write("saved.json", page(templates, None));
    fx.wacampaign()
        .args(["templates", "import", "saved.json", "--waba-id", WABA])
        .assert()
        .success();
    fx
}

#[test]
fn show_draws_the_template_as_a_customer_sees_it() {
    let mut rich = reminder();
    rich["components"] = json!([
        {"type": "HEADER", "format": "IMAGE"},
        {"type": "BODY", "text": "Hola {{1}}, tu cita es el {{2}}."},
        {"type": "FOOTER", "text": "Clínica Roma"},
        {"type": "BUTTONS", "buttons": [
            {"type": "URL", "text": "Ver cita", "url": "https://clinica.example/c/{{1}}"},
            {"type": "QUICK_REPLY", "text": "No más mensajes"}
        ]}
    ]);
    let fx = imported(vec![rich]);
    let out = fx
        .wacampaign()
        .args([
            "templates",
            "show",
            "appointment_reminder",
            "--language",
            "es-mx",
            "--waba-id",
            WABA,
        ])
        .assert()
        .success();
    assert_eq!(
        stdout(&out),
        "appointment_reminder (es_MX) · UTILITY · APPROVED · quality GREEN · POSITIONAL parameters\n\
         ┌──\n\
         │ [image]\n\
         │ Hola {{1}}, tu cita es el {{2}}.\n\
         │ _Clínica Roma_\n\
         │ [ Ver cita ] → https://clinica.example/c/{{1}}\n\
         │ [ No más mensajes ]\n\
         └──\n\
         parameters:\n  HEADER: image\n  BODY: {{1}}\n  BODY: {{2}}\n  BUTTONS[0]: url \"Ver cita\"\n\n"
    );
    fx.wacampaign()
        .args(["templates", "show", "appointment_remindr", "--waba-id", WABA])
        .assert()
        .code(2)
        .stderr("error: no synced template is named `appointment_remindr`; did you mean appointment_reminder?\n");
    fx.wacampaign()
        .args([
            "templates",
            "show",
            "appointment_reminder",
            "--language",
            "en_US",
            "--waba-id",
            WABA,
        ])
        .assert()
        .code(2)
        .stderr(
            "error: template `appointment_reminder` has no `en_US` translation; it has es_MX\n",
        );
}

#[test]
fn a_campaign_that_matches_its_synced_template_passes_check() {
    let fx = imported(vec![reminder()]);
    fx.check(&[]).assert().success().stderr("");
    fx.check(&["--offline"])
        .assert()
        .success()
        .stderr(predicates::str::starts_with(format!(
            "--offline: using the templates of WhatsApp Business Account {WABA} synced "
        )));
}

#[test]
fn without_any_sync_check_warns_and_goes_on() {
    let fx = Fixture::with_contacts("name,phone,date\nAna,+52 55 1234 5678,martes\n");
    fx.write("campaign.toml", campaign("http://127.0.0.1:9"));
    fx.check(&[]).assert().success().stderr(format!(
        "warning: no templates were ever synced for WhatsApp Business Account {WABA}: the campaign \
         is not checked against the approved template; run `wacampaign templates sync campaign.toml`\n"
    ));
}

/// `check` refuses the campaign against `templates` with `message` among its problems.
fn refused(templates: Vec<Value>, campaign_edit: Option<(&str, &str)>, message: &str) {
    let fx = imported(templates);
    if let Some((from, to)) = campaign_edit {
        fx.write(
            "campaign.toml",
            edit(&campaign("http://127.0.0.1:9"), from, to),
        );
    }
    let out = fx.check(&[]).assert().code(2).stdout("");
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.starts_with(&format!(
            "error: campaign.toml: the campaign does not match the template synced from WhatsApp Business Account {WABA} "
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(message),
        "expected `{message}` in:\n{stderr}"
    );
}

#[test]
fn a_template_that_does_not_exist_is_refused_with_the_closest_names() {
    refused(
        vec![template(
            "appointment_reminders",
            "es_MX",
            "APPROVED",
            "UTILITY",
            "x",
        )],
        None,
        "template.name (template appointment_reminder): the account has no template named \
         `appointment_reminder`; did you mean `appointment_reminders`?",
    );
}

#[test]
fn a_template_not_in_the_campaigns_language_is_refused() {
    refused(
        vec![template(
            "appointment_reminder",
            "en_US",
            "APPROVED",
            "UTILITY",
            "x",
        )],
        None,
        "template.language (template appointment_reminder): `appointment_reminder` has no `es_MX` \
         translation; it has en_US",
    );
}

#[test]
fn every_status_but_approved_is_refused_with_what_to_do() {
    for (status, words) in [
        ("PENDING", "is still in review (status PENDING)"),
        ("REJECTED", "was rejected by Meta"),
        ("PAUSED", "is paused by Meta for low quality"),
        ("DISABLED", "was disabled by Meta"),
        ("ARCHIVED", "is archived"),
    ] {
        let mut t = reminder();
        t["status"] = json!(status);
        refused(
            vec![t],
            None,
            &format!(
                "template.name (template appointment_reminder (es_MX)): `appointment_reminder` {words}"
            ),
        );
    }
}

#[test]
fn red_quality_is_refused() {
    let mut t = reminder();
    t["quality_score"] = json!({"score": "RED"});
    refused(vec![t], None, "`appointment_reminder` has RED quality");
}

#[test]
fn another_category_names_the_consent_and_price_that_apply() {
    let mut t = reminder();
    t["category"] = json!("MARKETING");
    refused(
        vec![t],
        None,
        "campaign.category (template appointment_reminder (es_MX)): the campaign says `utility` but \
         Meta approved `appointment_reminder` as MARKETING: it is priced as marketing and needs a \
         marketing opt-in from each contact (the campaign checks for a utility opt-in)",
    );
}

#[test]
fn more_or_fewer_values_than_parameters_are_refused() {
    let mut fewer = reminder();
    fewer["components"] = json!([{"type": "BODY", "text": "Hola {{1}}."}]);
    refused(
        vec![fewer],
        None,
        "template.variables (BODY of appointment_reminder (es_MX)): the campaign gives 1 value(s) \
         the template lacks: {{2}}",
    );
    let mut more = reminder();
    more["components"] =
        json!([{"type": "BODY", "text": "Hola {{1}}, tu cita es el {{2}} a las {{3}}."}]);
    refused(
        vec![more],
        None,
        "the template has 1 parameter(s) with no value source: {{3}}",
    );
}

#[test]
fn a_named_parameter_the_template_lacks_is_refused() {
    let mut named = reminder();
    named["parameter_format"] = json!("NAMED");
    named["components"] =
        json!([{"type": "BODY", "text": "Hola {{name}}, tu cita es el {{date}}."}]);
    let body = "body = \"Hola {{name}}, tu cita es el {{day}}.\"\n\n[template.variables]\nname = { column = \"name\" }\nday = { column = \"date\" }\n";
    let fx = imported(vec![named]);
    let text = campaign("http://127.0.0.1:9");
    let start = text.find("body = ").unwrap();
    let end = text.find("[provider]").unwrap();
    fx.write(
        "campaign.toml",
        format!("{}{body}\n{}", &text[..start], &text[end..]),
    );
    fx.check(&[])
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "the campaign gives 1 value(s) the template lacks: {{day}}",
        ));
}

#[test]
fn another_parameter_format_is_refused() {
    let mut named = reminder();
    named["parameter_format"] = json!("NAMED");
    named["components"] =
        json!([{"type": "BODY", "text": "Hola {{name}}, tu cita es el {{date}}."}]);
    refused(
        vec![named],
        None,
        "the template's parameters are NAMED, the campaign's are POSITIONAL",
    );
}

#[test]
fn a_body_that_differs_shows_both_texts_and_spelling_does_not_count() {
    refused(
        vec![reminder()],
        Some(("tu cita es el", "su cita es el")),
        "campaign: \"Hola {{1}}, su cita es el {{2}}.\"\n      approved: \"Hola {{1}}, tu cita es el {{2}}.\"",
    );
    let fx = imported(vec![reminder()]);
    fx.write(
        "campaign.toml",
        edit(
            &campaign("http://127.0.0.1:9"),
            "\"Hola {{1}}, tu cita es el {{2}}.\"",
            "\"  Hola <<1>>, tu cita es el {{2}}.\\n\"",
        ),
    );
    fx.check(&[]).assert().success();
}

#[test]
fn send_refuses_a_mismatch_before_the_first_request() {
    let server = MockServer::start();
    server.set_rule(|r| {
        if r.path.contains("message_templates") {
            let mut t = reminder();
            t["status"] = json!("PAUSED");
            ok(page(vec![t], None))
        } else {
            Reply::Accept
        }
    });
    let fx = fixture(&server);
    crate::support::opt_in_everyone(&fx.path("campaign.toml"), &fx.path("wacampaign.db"));
    sync(&fx).success();
    let out = fx
        .wacampaign()
        .env("WHATSAPP_TOKEN", TOKEN)
        .args(["send", "campaign.toml", "--yes"])
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("is paused by Meta for low quality"),
        "{stderr}"
    );
    let log = server.log();
    assert_eq!(log.len(), 1, "only the template sync: {log:?}");
    assert!(log[0].path.contains("/message_templates?"));
}

#[test]
fn a_stale_cache_is_refreshed_with_a_token_and_used_as_is_offline() {
    let server = MockServer::start();
    server.set_rule(|_| ok(page(vec![reminder()], None)));
    let fx = fixture(&server);
    // Synced two days ago, PAUSED then.
    let mut paused = reminder();
    paused["status"] = json!("PAUSED");
    fx.write("saved.json", page(vec![paused], None));
    fx.wacampaign()
        .env("WACAMPAIGN_NOW", "2026-11-20T10:00:00Z")
        .args(["templates", "import", "saved.json", "--waba-id", WABA])
        .assert()
        .success();
    fx.check(&["--offline"])
        .env("WACAMPAIGN_NOW", "2026-11-22T10:00:00Z")
        .assert()
        .code(2)
        .stderr(predicates::str::contains("synced 48h 00m ago"))
        .stderr(predicates::str::contains("is paused by Meta"));
    assert_eq!(server.count(), 0, "--offline reads nothing");
    fx.check(&[])
        .env("WACAMPAIGN_NOW", "2026-11-22T10:00:00Z")
        .env("WHATSAPP_TOKEN", TOKEN)
        .assert()
        .success();
    assert_eq!(server.count(), 1, "the stale cache was refreshed");
}

// ---- mid-run halts, and --resume-halted gated on a sync ----

/// A mock that lists `status` for the template (changeable) and accepts messages.
fn halting_server(
    status: std::sync::Arc<std::sync::Mutex<&'static str>>,
    fail_from: usize,
) -> MockServer {
    let server = MockServer::start();
    server.set_latency(Duration::from_millis(5));
    server.set_rule(move |r| {
        if r.path.contains("message_templates") {
            let mut t = reminder();
            t["status"] = json!(*status.lock().unwrap());
            ok(page(vec![t], None))
        } else if fail_from > 0 && r.n >= fail_from {
            Reply::graph(132015, "(#132015) Template is paused")
        } else {
            Reply::Accept
        }
    });
    server
}

/// `n` opted-in contacts and the campaign against `server`, at `rate`/s with a
/// window of `concurrency`.
fn run_setup(dir: &std::path::Path, server: &MockServer, n: usize, rate: u32, concurrency: usize) {
    let mut csv = String::from("name,phone,date\n");
    for i in 0..n {
        csv.push_str(&format!("Cliente {i},+52 55 {},martes\n", 20_000_000 + i));
    }
    std::fs::write(dir.join("contacts.csv"), csv).unwrap();
    std::fs::write(
        dir.join("campaign.toml"),
        format!(
            "{}\n[sending]\nrate_per_second = {rate}\nconcurrency = {concurrency}\n",
            campaign(&server.base_url())
        ),
    )
    .unwrap();
    crate::support::opt_in_everyone(&dir.join("campaign.toml"), &dir.join("wacampaign.db"));
    crate::support::wacampaign_in(dir, &dir.join("wacampaign.db"))
        .env("WHATSAPP_TOKEN", TOKEN)
        .args(["templates", "sync", "campaign.toml"])
        .assert()
        .success();
}

fn messages_sent(server: &MockServer) -> usize {
    server
        .log()
        .iter()
        .filter(|r| r.path.ends_with("/messages"))
        .count()
}

fn send_in(dir: &std::path::Path, args: &[&str]) -> assert_cmd::assert::Assert {
    crate::support::wacampaign_in(dir, &dir.join("wacampaign.db"))
        .env("WHATSAPP_TOKEN", TOKEN)
        .args(["send", "campaign.toml", "--yes"])
        .args(args)
        .assert()
}

#[test]
fn error_132015_halts_and_resume_waits_for_a_sync_that_says_approved() {
    const FAIL_FROM: usize = 12;
    const CONCURRENCY: usize = 4;
    let status = std::sync::Arc::new(std::sync::Mutex::new("APPROVED"));
    let server = halting_server(status.clone(), FAIL_FROM);
    let fx = Fixture::new();
    let dir = fx.path("");
    run_setup(&dir, &server, 60, 1000, CONCURRENCY);
    let halted = send_in(&dir, &[]).code(3);
    let sent = messages_sent(&server);
    // The first request is the pre-flight sync.
    assert!(
        sent <= FAIL_FROM + CONCURRENCY,
        "{sent} messages after the halt"
    );
    let output = halted.get_output();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(out.contains("132015"), "{out}");

    // Offline, with the cache older than the halt, the resume is refused.
    send_in(&dir, &["--resume-halted", "--offline"])
        .code(2)
        .stderr(predicates::str::contains(
            "--resume-halted needs a template sync made since then that shows `appointment_reminder` APPROVED as UTILITY",
        ));
    // A minute after the halt (so every sync from here on is newer than it, as an
    // operator's would be): Meta paused it, the refreshed cache says so, and the
    // resume is refused.
    let halted_at: String = rusqlite::Connection::open(dir.join("wacampaign.db"))
        .unwrap()
        .query_row("SELECT halted_at FROM campaigns", [], |r| r.get(0))
        .unwrap();
    let minutes_after = |minutes: i64| {
        (chrono::DateTime::parse_from_rfc3339(&halted_at).unwrap()
            + chrono::Duration::minutes(minutes))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let send_later = |minutes: i64, args: &[&str]| {
        crate::support::wacampaign_in(&dir, &dir.join("wacampaign.db"))
            .env("WHATSAPP_TOKEN", TOKEN)
            .env("WACAMPAIGN_NOW", minutes_after(minutes))
            .args(["send", "campaign.toml", "--yes"])
            .args(args)
            .assert()
    };
    *status.lock().unwrap() = "PAUSED";
    send_later(1, &["--resume-halted"])
        .code(2)
        .stderr(predicates::str::contains(
            "is paused by Meta for low quality",
        ));
    assert_eq!(messages_sent(&server), sent, "a paused template was sent");
    // Still PAUSED in the cache, offline: refused as well.
    send_later(2, &["--resume-halted", "--offline"]).code(2);

    // Approved again: the sync says so and the run continues.
    *status.lock().unwrap() = "APPROVED";
    server.set_rule(|r| {
        if r.path.contains("message_templates") {
            ok(page(vec![reminder()], None))
        } else {
            Reply::Accept
        }
    });
    // The cache, newer than the halt, still says PAUSED: the resume asks again.
    send_later(3, &["--resume-halted"]).code(0);
    let accepted: std::collections::HashSet<String> = server
        .log()
        .iter()
        .filter(|r| r.path.ends_with("/messages") && r.reply == Reply::Accept)
        .map(|r| r.to.clone())
        .collect();
    assert_eq!(accepted.len(), 60);
}

fn template_webhook(field: &str, value: Value) -> Value {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA, "time": 1_764_000_000, "changes": [{"field": field, "value": value}]}]
    })
}

#[test]
fn a_paused_webhook_halts_the_run_and_updates_the_cache() {
    use crate::webhook::harness::{Server, Workspace};
    const CONCURRENCY: usize = 2;
    let status = std::sync::Arc::new(std::sync::Mutex::new("APPROVED"));
    let server = halting_server(status.clone(), 0);
    let ws = Workspace::new();
    run_setup(ws.path(), &server, 200, 20, CONCURRENCY);
    let hooks = Server::start(&ws, &[]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wacampaign"))
        .current_dir(ws.path())
        .env("NO_COLOR", "1")
        .env("WHATSAPP_TOKEN", TOKEN)
        .env(
            crate::support::NO_MESSAGING_LIMIT.0,
            crate::support::NO_MESSAGING_LIMIT.1,
        )
        .args([
            "--db",
            "wacampaign.db",
            "send",
            "campaign.toml",
            "--yes",
            "--quiet",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting wacampaign send");
    assert!(
        server.wait_for(10, Duration::from_secs(30)),
        "the campaign never started"
    );
    let reply = hooks.post_meta_signed(&template_webhook(
        "message_template_status_update",
        json!({
            "event": "PAUSED",
            "message_template_id": 1_234_567_890,
            "message_template_name": "appointment_reminder",
            "message_template_language": "es_MX",
            "reason": "LOW_QUALITY"
        }),
    ));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let at_webhook = messages_sent(&server);
    let code = child.wait().expect("send finishes").code();
    assert_eq!(code, Some(3), "the run halted");
    let after = messages_sent(&server) - at_webhook;
    // At 20/s, one claim may already be on its way besides the window.
    assert!(
        after <= CONCURRENCY + 1,
        "{after} messages after the webhook"
    );
    assert!(messages_sent(&server) < 200);

    // The cache says PAUSED (no refresh: it is fresh, and offline anyway).
    let listed = ws
        .wacampaign()
        .args(["--json", "templates", "list", "--waba-id", WABA])
        .assert()
        .success();
    assert!(
        stdout(&listed).contains("\"status\":\"PAUSED\""),
        "{}",
        stdout(&listed)
    );
    ws.wacampaign()
        .env("WHATSAPP_TOKEN", TOKEN)
        .args(["check", "campaign.toml", "--offline"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("is paused by Meta"));
    // A quality webhook updates the cache too.
    let reply = hooks.post_meta_signed(&template_webhook(
        "message_template_quality_update",
        json!({
            "previous_quality_score": "GREEN",
            "new_quality_score": "RED",
            "message_template_id": 1_234_567_890,
            "message_template_name": "appointment_reminder",
            "message_template_language": "es_MX"
        }),
    ));
    assert_eq!(reply.status, 200);
    let listed = ws
        .wacampaign()
        .args(["--json", "templates", "list", "--waba-id", WABA])
        .assert()
        .success();
    assert!(
        stdout(&listed).contains("\"quality\":\"RED\""),
        "{}",
        stdout(&listed)
    );
    drop(hooks);

    // A sync that says APPROVED and GREEN lets the run resume.
    send_in(ws.path(), &["--resume-halted"]).code(0);
    let accepted: std::collections::HashSet<String> = server
        .log()
        .iter()
        .filter(|r| r.path.ends_with("/messages") && r.reply == Reply::Accept)
        .map(|r| r.to.clone())
        .collect();
    assert_eq!(accepted.len(), 200);
}

// ---- header, buttons and languages: the shipped two-language campaign ----

/// The shipped campaign run against a scratch database, from `campaigns/`.
fn shipped(db: &std::path::Path, args: &[&str]) -> assert_cmd::assert::Assert {
    crate::support::wacampaign_in(&crate::support::shipped_campaigns(), db)
        .args(args)
        .assert()
}

#[test]
fn the_shipped_spring_sale_checks_previews_per_language_and_sends_through_the_simulator() {
    let scratch = Fixture::new();
    let db = scratch.path("spring.db");
    shipped(
        &db,
        &[
            "consent",
            "import",
            "spring-sale.csv",
            "--purpose",
            "marketing",
            "--method",
            "web_form",
            "--default-region",
            "MX",
            "--evidence-column",
            "form_submission",
        ],
    )
    .success();
    let excluded = scratch.path("excluded.csv");
    let check = shipped(
        &db,
        &[
            "check",
            "spring-sale.toml",
            "--excluded",
            excluded.to_str().unwrap(),
        ],
    )
    .success()
    .stderr("");
    let report = stdout(&check);
    assert!(report.contains("eligible 6\n"), "{report}");
    assert!(report.contains("language en_US 3, es_MX 3\n"), "{report}");
    // Sofía's suffix has a space: left out with the reason, as Meta would refuse it.
    assert_eq!(
        std::fs::read_to_string(&excluded).unwrap(),
        "line,phone,reason_code,reason\n\
         8,'+52 55 4100 2007,invalid_value,invalid value: template.buttons[0].suffix: `sofia 2007` has spaces; a URL suffix cannot\n"
    );

    // Each contact in their language, the body from the sync, the buttons filled.
    let preview = stdout(&shipped(&db, &["preview", "spring-sale.toml", "--limit", "2"]).success());
    assert_eq!(
        preview,
        "── line 2 · +525541002001 · es_MX ──\n\
         [image: https://tiendas-aurora.example.com/img/primavera-2027.jpg]\n\
         Hola Lucía, llegó la venta de primavera: hasta 40% en toda la tienda. Tu selección personal te espera.\n\
         _Tiendas Aurora_\n\
         [ Ver mi selección ] → https://tiendas-aurora.example.com/primavera/lucia-2001\n\
         [ No más promociones ] (payload STOP_PROMOS: opts out)\n\n\
         ── line 3 · +525541002002 · en_US ──\n\
         [image: https://tiendas-aurora.example.com/img/primavera-2027.jpg]\n\
         Hi Tom, our spring sale is here: up to 40% off everything. Your personal picks are waiting.\n\
         _Tiendas Aurora_\n\
         [ See my picks ] → https://tiendas-aurora.example.com/spring/tom-2002\n\
         [ Stop promotions ] (payload STOP_PROMOS: opts out)\n\n"
    );
    // Marie writes fr_FR: no French translation, so the first fallback (en_US).
    let payload = stdout(
        &shipped(
            &db,
            &["--json", "preview", "spring-sale.toml", "--row", "6"],
        )
        .success(),
    );
    let line: Value = serde_json::from_str(payload.trim()).unwrap();
    let template = &line["data"]["payload"]["template"];
    assert_eq!(template["language"]["code"], "en_US");
    assert_eq!(
        template["components"],
        json!([
            {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://tiendas-aurora.example.com/img/primavera-2027.jpg"}}]},
            {"type": "body", "parameters": [{"type": "text", "text": "Marie"}]},
            {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "marie-2005"}]},
            {"type": "button", "sub_type": "quick_reply", "index": "1", "parameters": [{"type": "payload", "payload": "STOP_PROMOS"}]}
        ])
    );

    let sent = shipped(&db, &["send", "spring-sale.toml", "--yes"]).success();
    let out = stdout(&sent);
    assert!(out.contains("this run   6 accepted"), "{out}");
}

/// A cloud_api campaign with an image header and two buttons, against `templates`.
const WITH_COMPONENTS: &str = r#"
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

fn rich_template() -> Value {
    let mut t = reminder();
    t["components"] = json!([
        {"type": "HEADER", "format": "IMAGE"},
        {"type": "BODY", "text": "Hola {{1}}, tu cita es el {{2}}."},
        {"type": "BUTTONS", "buttons": [
            {"type": "URL", "text": "Ver", "url": "https://clinica.example/c/{{1}}"},
            {"type": "QUICK_REPLY", "text": "Baja"}
        ]}
    ]);
    t
}

fn with_components(contacts: &str) -> Fixture {
    let fx = imported(vec![rich_template()]);
    let text = campaign("http://127.0.0.1:9");
    let at = text.find("[provider]").unwrap();
    fx.write(
        "campaign.toml",
        format!("{}{WITH_COMPONENTS}\n{}", &text[..at], &text[at..]),
    );
    fx.write("contacts.csv", contacts);
    fx
}

#[test]
fn a_row_whose_header_or_button_value_meta_would_refuse_is_left_out_with_the_reason() {
    let fx = with_components(
        "name,phone,date,image,order\n\
         Ana,+52 55 1234 5678,martes,https://x.example/a.jpg,A-1\n\
         Beto,+52 55 1234 5679,martes,http://x.example/a.jpg,A-2\n\
         Carla,+52 55 1234 5680,martes,not a link,A-3\n\
         Dora,+52 55 1234 5681,martes,https://x.example/a.jpg,A 4\n\
         Eva,+52 55 1234 5682,martes,,A-5\n",
    );
    fx.check(&["--excluded", "excluded.csv"]).assert().success();
    assert_eq!(
        fx.read("excluded.csv"),
        "line,phone,reason_code,reason\n\
         3,'+52 55 1234 5679,invalid_value,invalid value: template.header.link: `http://x.example/a.jpg`: WhatsApp fetches media over https only\n\
         4,'+52 55 1234 5680,invalid_value,invalid value: template.header.link: `not a link` is not a URL (relative URL without a base)\n\
         5,'+52 55 1234 5681,invalid_value,invalid value: template.buttons[0].suffix: `A 4` has spaces; a URL suffix cannot\n\
         6,'+52 55 1234 5682,missing_value,missing value: empty value for template.header.link\n"
    );
}

#[test]
fn a_column_missing_for_a_header_link_is_a_campaign_error() {
    let fx = with_components("name,phone,date,order\nAna,+52 55 1234 5678,martes,A-1\n");
    fx.check(&[])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("template.header.link"))
        .stderr(predicates::str::contains("image"));
}

#[test]
fn a_header_or_button_the_campaign_does_not_fill_is_refused() {
    // The campaign gives only the body; the template's image and URL need values.
    refused(
        vec![rich_template()],
        None,
        "template.header (HEADER (IMAGE) of appointment_reminder (es_MX)): the template's image header needs a value in every message",
    );
    refused(
        vec![rich_template()],
        None,
        "template.buttons (BUTTONS[0] (URL \"Ver\") of appointment_reminder (es_MX)): the button needs a value in every message; add [[template.buttons]] with index = 0 and type = \"url\"",
    );
}

#[test]
fn a_tap_on_a_declared_opt_out_button_opts_the_contact_out() {
    use crate::webhook::harness::{Server, Workspace};
    let ws = Workspace::new();
    ws.write("saved.json", page(vec![rich_template()], None));
    let text = campaign("http://127.0.0.1:9");
    let at = text.find("[provider]").unwrap();
    ws.write(
        "campaign.toml",
        format!("{}{WITH_COMPONENTS}\n{}", &text[..at], &text[at..]),
    );
    ws.write(
        "contacts.csv",
        "name,phone,date,image,order\nAna,+52 55 1234 5678,martes,https://x.example/a.jpg,A-1\n",
    );
    crate::support::opt_in_everyone(&ws.path().join("campaign.toml"), &ws.db());
    ws.wacampaign()
        .args(["templates", "import", "saved.json", "--waba-id", WABA])
        .assert()
        .success();
    // A dry run declares nothing; a send records the opt-out payload before it sends.
    let server = MockServer::start();
    ws.write(
        "campaign.toml",
        format!(
            "{}{WITH_COMPONENTS}\n{}",
            &campaign(&server.base_url())[..at],
            &campaign(&server.base_url())[at..]
        ),
    );
    ws.wacampaign()
        .env("WHATSAPP_TOKEN", TOKEN)
        .args(["send", "campaign.toml", "--yes", "--no-media-check"])
        .assert()
        .success();
    assert_eq!(server.count(), 1);
    let hooks = Server::start(&ws, &[]);
    let tap = json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA, "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Ana"}, "wa_id": "5215512345678"}],
            "messages": [{
                "from": "5215512345678", "id": "wamid.TAP1", "timestamp": "1764000000",
                "type": "button", "button": {"payload": "STOP_PROMOS", "text": "Baja"}
            }]
        }}]}]
    });
    assert_eq!(hooks.post_meta_signed(&tap).status, 200);
    drop(hooks);
    ws.wacampaign()
        .args([
            "check",
            "campaign.toml",
            "--offline",
            "--excluded",
            "excluded.csv",
        ])
        .assert()
        .success();
    let excluded = std::fs::read_to_string(ws.path().join("excluded.csv")).unwrap();
    assert!(excluded.contains("opted_out"), "{excluded}");
}

#[test]
fn a_send_held_for_quality_assessment_is_recorded_and_shown_by_status() {
    let server = MockServer::start();
    server.set_rule(|r| {
        if r.path.contains("message_templates") {
            return ok(page(vec![reminder()], None));
        }
        let wa_id = r.to.trim_start_matches('+');
        let held = r.to.ends_with('8');
        ok(json!({
            "messaging_product": "whatsapp",
            "contacts": [{"input": r.to, "wa_id": wa_id}],
            "messages": [if held {
                json!({"id": format!("wamid.{wa_id}"), "message_status": "held_for_quality_assessment"})
            } else {
                json!({"id": format!("wamid.{wa_id}"), "message_status": "accepted"})
            }]
        })
        .to_string())
    });
    let fx = fixture(&server);
    crate::support::opt_in_everyone(&fx.path("campaign.toml"), &fx.path("wacampaign.db"));
    fx.wacampaign()
        .env("WHATSAPP_TOKEN", TOKEN)
        .args(["send", "campaign.toml", "--yes"])
        .assert()
        .success();
    let status = fx
        .wacampaign()
        .args(["status", "campaign.toml"])
        .assert()
        .success();
    assert!(
        stdout(&status).contains(
            "  1 accepted messages are held for quality assessment by Meta (message_status held_for_quality_assessment)"
        ),
        "{}",
        stdout(&status)
    );
    let json = fx
        .wacampaign()
        .args(["--json", "status", "campaign.toml"])
        .assert()
        .success();
    let line: Value = serde_json::from_str(stdout(&json).trim()).unwrap();
    assert_eq!(line["data"]["held_for_quality_assessment"], 1);
}

#[test]
fn a_body_left_out_is_taken_from_the_sync_and_a_new_approved_text_needs_accepting() {
    let text = std::sync::Arc::new(std::sync::Mutex::new("Hola {{1}}, tu cita es el {{2}}."));
    let served = text.clone();
    let server = MockServer::start();
    server.set_rule(move |r| {
        if r.path.contains("message_templates") {
            let mut t = reminder();
            t["components"] = json!([{"type": "BODY", "text": *served.lock().unwrap()}]);
            ok(page(vec![t], None))
        } else {
            Reply::Accept
        }
    });
    let fx = fixture(&server);
    // Opt-ins recorded with the full campaign: the helper needs it to load.
    crate::support::opt_in_everyone(&fx.path("campaign.toml"), &fx.path("wacampaign.db"));
    fx.write(
        "campaign.toml",
        edit(
            &campaign(&server.base_url()),
            "body = \"Hola {{1}}, tu cita es el {{2}}.\"\n",
            "",
        ),
    );
    // Without any sync the body cannot be known.
    fx.wacampaign()
        .args(["check", "campaign.toml"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "template.body is left out, so it is taken from the synced template `appointment_reminder` (es_MX), and there is none",
        ));
    sync(&fx).success();
    let preview = fx
        .wacampaign()
        .args(["preview", "campaign.toml", "--limit", "1"])
        .assert()
        .success();
    assert!(
        stdout(&preview).contains("Hola Ana, tu cita es el martes."),
        "{}",
        stdout(&preview)
    );
    let send = |args: &[&str]| {
        fx.wacampaign()
            .env("WHATSAPP_TOKEN", TOKEN)
            .args(["send", "campaign.toml", "--yes", "--template-max-age", "0"])
            .args(args)
            .assert()
    };
    send(&["--limit", "1"]).success();
    let sent = messages_sent(&server);
    assert_eq!(sent, 1);

    // Meta approves a new text: the run shows both and stops, nothing sent.
    *text.lock().unwrap() = "Hola {{1}}, le recordamos su cita del {{2}}.";
    let refused = send(&[]).code(2);
    let stderr = String::from_utf8_lossy(&refused.get_output().stderr).into_owned();
    assert!(
        stderr.contains("was: \"Hola {{1}}, tu cita es el {{2}}.\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("now: \"Hola {{1}}, le recordamos su cita del {{2}}.\""),
        "{stderr}"
    );
    assert!(stderr.contains("--accept-template-change"), "{stderr}");
    assert_eq!(messages_sent(&server), sent);

    // Accepted: the same campaign id goes on, and the journal records it.
    send(&["--accept-template-change"]).success();
    assert_eq!(messages_sent(&server), 2);
    let db = wacampaign::db::Db::open(&fx.path("wacampaign.db")).unwrap();
    let accepted: i64 = db
        .conn
        .query_row(
            "SELECT count(*) FROM campaign_template_texts WHERE campaign_id = 'test-campaign' AND accepted_change = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(accepted, 1);
    let campaigns: i64 = db
        .conn
        .query_row("SELECT count(*) FROM campaigns", [], |r| r.get(0))
        .unwrap();
    assert_eq!(campaigns, 1, "no new campaign id");
}

// ---- media links, fetched before the first send ----

/// A loopback server answering each request by its path, one request per
/// connection: `/photo.jpg` a 1 kB JPEG, `/huge.jpg` a 6 MB one, `/page` HTML,
/// `/ranged.png` refusing HEAD (405) but answering a ranged GET, anything else 404.
fn media_server() -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let mut parts = request_line.split_whitespace();
            let method = parts.next().unwrap_or_default().to_owned();
            let path = parts.next().unwrap_or_default().to_owned();
            let head = match (method.as_str(), path.as_str()) {
                (_, "/photo.jpg") => "200 OK\r\ncontent-type: image/jpeg\r\ncontent-length: 1000".to_owned(),
                (_, "/huge.jpg") => "200 OK\r\ncontent-type: image/jpeg\r\ncontent-length: 6291456".to_owned(),
                (_, "/page") => "200 OK\r\ncontent-type: text/html\r\ncontent-length: 10".to_owned(),
                ("HEAD", "/ranged.png") => "405 Method Not Allowed\r\ncontent-length: 0".to_owned(),
                ("GET", "/ranged.png") => "206 Partial Content\r\ncontent-type: image/png\r\ncontent-range: bytes 0-0/2048\r\ncontent-length: 1".to_owned(),
                _ => "404 Not Found\r\ncontent-length: 0".to_owned(),
            };
            let body = if method == "GET" && path == "/ranged.png" {
                "x"
            } else {
                ""
            };
            let mut stream = stream;
            let _ = write!(stream, "HTTP/1.1 {head}\r\nconnection: close\r\n\r\n{body}");
        }
    });
    base
}

#[test]
fn media_links_are_fetched_and_held_to_whatsapps_limits() {
    use wacampaign::campaign::components::Media;
    use wacampaign::media::check_links;
    let base = media_server();
    let links: Vec<String> = [
        "/photo.jpg",
        "/ranged.png",
        "/huge.jpg",
        "/page",
        "/gone.jpg",
    ]
    .iter()
    .map(|p| format!("{base}{p}"))
    .collect();
    let problems: Vec<String> = check_links(&links, Media::Image, Duration::from_secs(5))
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        problems,
        [
            format!("{base}/huge.jpg: 6291456 bytes; a image header takes at most 5242880"),
            format!(
                "{base}/page: content type `text/html`; a image header takes image/jpeg, image/png"
            ),
            format!("{base}/gone.jpg: HTTP 404"),
        ]
    );
}

#[test]
fn an_unreachable_media_link_stops_the_send_before_the_first_message() {
    let server = MockServer::start();
    server.set_rule(|r| {
        if r.path.contains("message_templates") {
            ok(page(vec![rich_template()], None))
        } else {
            Reply::Accept
        }
    });
    let fx = Fixture::with_contacts("name,phone,date,order\nAna,+52 55 1234 5678,martes,A-1\n");
    let text = campaign(&server.base_url());
    let at = text.find("[provider]").unwrap();
    // Nothing listens on port 9 of 127.0.0.1: the link cannot be fetched.
    let components = WITH_COMPONENTS.replace(
        "link = { column = \"image\" }",
        "link = { value = \"https://127.0.0.1:9/promo.jpg\" }",
    );
    fx.write(
        "campaign.toml",
        format!("{}{components}\n{}", &text[..at], &text[at..]),
    );
    crate::support::opt_in_everyone(&fx.path("campaign.toml"), &fx.path("wacampaign.db"));
    let out = fx
        .wacampaign()
        .env("WHATSAPP_TOKEN", TOKEN)
        .args(["send", "campaign.toml", "--yes"])
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains(
            "1 of 1 header image link(s) would fail (template.header.link); nothing was sent"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("https://127.0.0.1:9/promo.jpg: not reachable"),
        "{stderr}"
    );
    assert_eq!(messages_sent(&server), 0);
    // --no-media-check sends it anyway.
    fx.wacampaign()
        .env("WHATSAPP_TOKEN", TOKEN)
        .args(["send", "campaign.toml", "--yes", "--no-media-check"])
        .assert()
        .success();
    assert_eq!(messages_sent(&server), 1);
}

// ---- Twilio's Content API ----

const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";

/// One page of `GET /v1/ContentAndApprovals`.
fn content_page(contents: Value, next: Option<&str>) -> String {
    json!({
        "contents": contents,
        "meta": {
            "page": 0, "page_size": 100, "key": "contents",
            "next_page_url": next.map(|token| format!("https://content.twilio.com/v1/ContentAndApprovals?PageSize=100&Page=1&PageToken={token}")),
        }
    })
    .to_string()
}

#[test]
fn twilio_content_is_synced_page_by_page_and_holds_a_twilio_campaign() {
    let server = MockServer::start();
    server.set_rule(|r| {
        if r.path.contains("PageToken=T2") {
            ok(content_page(
                json!([{
                    "sid": "HX0123456789abcdef0123456789abcdef", "language": "es_MX",
                    "friendly_name": "order ready",
                    "types": {"twilio/text": {"body": "Hola {{1}}, tu cita es el {{2}}."}},
                    "approval_requests": {"name": "appointment_reminder", "category": "UTILITY", "status": "approved"}
                }]),
                None,
            ))
        } else {
            ok(content_page(
                json!([{
                    "sid": "HX1123456789abcdef0123456789abcdef", "language": "en",
                    "friendly_name": "Media Test",
                    "types": {"twilio/media": {"body": "{{1}} hi", "media": ["https://example.com/a.jpg"]}},
                    "approval_requests": {"name": "media_test", "category": "TRANSACTIONAL", "status": "rejected"}
                }]),
                Some("T2"),
            ))
        }
    });
    let fx = Fixture::with_contacts("name,phone,date\nAna,+52 55 1234 5678,martes\n");
    let twilio = edit(
        &edit(
            CAMPAIGN,
            "language = \"es_MX\"\n",
            "language = \"es_MX\"\ncontent_sid = \"HX0123456789abcdef0123456789abcdef\"\n",
        ),
        "[provider]\nkind = \"cloud_api\"\nphone_number_id = \"106540352242922\"\n",
        &format!(
            "[provider]\nkind = \"twilio\"\nfrom = \"+14155238886\"\n\
             account_sid = \"{TWILIO_SID}\"\ncontent_base_url = \"{}\"\n",
            server.base_url()
        ),
    );
    fx.write("campaign.toml", &twilio);
    fx.wacampaign()
        .env("TWILIO_AUTH_TOKEN", "twilio-test-token")
        .args(["templates", "sync", "campaign.toml"])
        .assert()
        .success()
        .stderr(format!(
            "stored 2 templates (1 approved) of Twilio account {TWILIO_SID}\n"
        ));
    let log = server.log();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].path, "/v1/ContentAndApprovals?PageSize=100");
    assert_eq!(
        log[1].path,
        "/v1/ContentAndApprovals?PageSize=100&Page=1&PageToken=T2"
    );
    // HTTP Basic: the account SID and the auth token.
    use base64::Engine as _;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{TWILIO_SID}:twilio-test-token"));
    assert_eq!(
        log[0].header("authorization"),
        Some(&*format!("Basic {basic}"))
    );
    fx.check(&[]).assert().success().stderr("");
    // The same campaign against another body is refused before anything is sent.
    fx.write(
        "campaign.toml",
        edit(&twilio, "tu cita es el {{2}}.", "su cita es el {{2}}."),
    );
    fx.check(&["--offline"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("differs from the approved text"));
}

#[test]
fn a_twilio_message_takes_its_languages_content_sid_and_every_variable() {
    let fx = Fixture::with_contacts(
        "name,phone,date,image,order,lang\nAna,+52 55 1234 5678,martes,https://x.example/a.jpg,A-1,en-us\n",
    );
    let text = edit(
        &edit(
            CAMPAIGN,
            "language = \"es_MX\"\n",
            "language = \"es_MX\"\nlanguages = [\"es_MX\", \"en_US\"]\nlanguage_column = \"lang\"\n\
             content_sid = \"HX0123456789abcdef0123456789abcdef\"\n\
             content_sids = { en_US = \"HX1123456789abcdef0123456789abcdef\" }\n",
        ),
        "[provider]\nkind = \"cloud_api\"\nphone_number_id = \"106540352242922\"\n",
        "[template.header]\ntype = \"image\"\nlink = { column = \"image\" }\ntwilio_variable = \"3\"\n\n\
         [[template.buttons]]\nindex = 0\ntype = \"url\"\nsuffix = { column = \"order\" }\ntwilio_variable = \"4\"\n\n\
         [provider]\nkind = \"twilio\"\nfrom = \"+14155238886\"\n",
    );
    fx.write("campaign.toml", &text);
    let out = fx.preview(&["--json"]).assert().success();
    let line: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let payload = &line["data"]["payload"];
    assert_eq!(payload["ContentSid"], "HX1123456789abcdef0123456789abcdef");
    let variables: Value =
        serde_json::from_str(payload["ContentVariables"].as_str().unwrap()).unwrap();
    assert_eq!(
        variables,
        json!({"1": "Ana", "2": "martes", "3": "https://x.example/a.jpg", "4": "A-1"})
    );
    // Without the variable's name, or without the second language's SID: refused.
    fx.write(
        "campaign.toml",
        edit(&text, "twilio_variable = \"4\"\n", ""),
    );
    fx.check(&[]).assert().code(2).stderr(predicates::str::contains(
        "twilio: template.buttons[0].suffix fills a variable of the Content template: add twilio_variable",
    ));
    fx.write(
        "campaign.toml",
        edit(
            &text,
            "content_sids = { en_US = \"HX1123456789abcdef0123456789abcdef\" }\n",
            "",
        ),
    );
    fx.check(&[]).assert().code(2).stderr(predicates::str::contains(
        "twilio has one Content SID per language: add `en_US = \"HX...\"` to [template.content_sids]",
    ));
}

#[test]
fn a_file_sent_to_everyone_is_uploaded_once_and_sent_by_its_media_id() {
    let server = MockServer::start();
    server.set_rule(|r| {
        if r.path.ends_with("/media") {
            ok(json!({"id": "4490709327384033"}).to_string())
        } else {
            Reply::Accept
        }
    });
    let fx = Fixture::with_contacts(
        "name,phone,date\nAna,+52 55 1234 5678,martes\nLuis,+52 55 2345 6789,jueves\n",
    );
    fx.write("promo.jpg", b"\xff\xd8\xff\xe0 not really a jpeg");
    let text = CAMPAIGN.replace(
        "[provider]",
        "[template.header]\ntype = \"image\"\nfile = \"promo.jpg\"\n\n[provider]",
    );
    fx.write(
        "campaign.toml",
        format!("{text}base_url = \"{}\"\n", server.base_url()),
    );
    let preview = fx.preview(&["--limit", "1"]).assert().success();
    assert!(
        stdout(&preview).contains("[image: promo.jpg (uploaded once at send)]"),
        "{}",
        stdout(&preview)
    );
    fx.wacampaign()
        .env("WHATSAPP_TOKEN", TOKEN)
        .args(["send", "campaign.toml", "--yes"])
        .assert()
        .success()
        .stderr(predicates::str::contains(
            "uploaded promo.jpg once: media id 4490709327384033",
        ));
    let log = server.log();
    let uploads: Vec<_> = log.iter().filter(|r| r.path.ends_with("/media")).collect();
    assert_eq!(uploads.len(), 1, "one upload for two messages");
    assert_eq!(uploads[0].path, "/v23.0/106540352242922/media");
    assert!(
        uploads[0]
            .header("content-type")
            .is_some_and(|c| c.starts_with("multipart/form-data; boundary=")),
        "{:?}",
        uploads[0].headers
    );
    let messages: Vec<_> = log
        .iter()
        .filter(|r| r.path.ends_with("/messages"))
        .collect();
    assert_eq!(messages.len(), 2);
    for m in messages {
        assert_eq!(
            m.body["template"]["components"][0],
            json!({"type": "header", "parameters": [{"type": "image", "image": {"id": "4490709327384033"}}]})
        );
    }
    // The next run uploads again (a new id) and goes on under the same campaign.
    fx.wacampaign()
        .env("WHATSAPP_TOKEN", TOKEN)
        .args(["send", "campaign.toml", "--yes"])
        .assert()
        .success();
}
