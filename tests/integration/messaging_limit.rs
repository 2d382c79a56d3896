//! The portfolio messaging limit against the mock Cloud API: two campaigns sent at
//! once by two real processes share one limit, reserved person by person in the
//! transaction that claims each send; `wacampaign account` reads and caches it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::mock_server::{MockServer, Reply};
use crate::support::{CAMPAIGN, edit, opt_in_everyone, wacampaign_in};

const TOKEN: &str = "EAAGtest0token0for0the0limit";

/// Campaign `id` of `contacts` recipients from `first` (Mexico City numbers), sent
/// to the mock at `base_url` from the business number `phone_number_id`.
fn write_campaign(
    dir: &Path,
    id: &str,
    first: usize,
    contacts: usize,
    base_url: &str,
    phone_number_id: &str,
) {
    let mut csv = String::from("name,phone,date\n");
    for i in 0..contacts {
        csv.push_str(&format!("Cliente {i},+5255{},martes\n", first + i));
    }
    std::fs::write(dir.join(format!("{id}.csv")), csv).unwrap();
    let text = edit(
        &edit(
            CAMPAIGN,
            "id = \"test-campaign\"",
            &format!("id = \"{id}\""),
        ),
        "contacts = \"contacts.csv\"",
        &format!("contacts = \"{id}.csv\""),
    );
    let text = edit(
        &text,
        "phone_number_id = \"106540352242922\"",
        &format!("phone_number_id = \"{phone_number_id}\""),
    );
    let text = format!(
        "{text}base_url = \"{base_url}\"\ntimeout_ms = 5000\n\n[sending]\nrate_per_second = 150\n"
    );
    std::fs::write(dir.join(format!("{id}.toml")), text).unwrap();
    opt_in_everyone(&dir.join(format!("{id}.toml")), &dir.join("wacampaign.db"));
}

/// `wacampaign send ID.toml --yes` at `now`, holding to a limit of `limit`.
fn send(dir: &Path, id: &str, now: &str, limit: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wacampaign"));
    cmd.current_dir(dir)
        .env("NO_COLOR", "1")
        .env("WHATSAPP_TOKEN", TOKEN)
        .env("WACAMPAIGN_NOW", now)
        .env("WACAMPAIGN_MESSAGING_LIMIT", limit)
        .env_remove("WACAMPAIGN_DB")
        .env_remove("WACAMPAIGN_RATE")
        .args(["--color", "never", "--db", "wacampaign.db", "send"])
        .arg(format!("{id}.toml"))
        .arg("--yes")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn count(dir: &Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(dir.join("wacampaign.db")).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Runs both campaigns at once, as two processes, and waits for both.
fn send_both_at_once(dir: &Path, now: &str) -> Vec<std::process::Output> {
    let children: Vec<_> = ["limit-a", "limit-b"]
        .iter()
        .map(|id| {
            send(dir, id, now, "250")
                .spawn()
                .expect("starting wacampaign")
        })
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().expect("waiting for wacampaign"))
        .collect()
}

#[test]
fn two_campaigns_at_once_share_a_limit_of_250_and_the_rest_go_a_day_later() {
    let server = MockServer::start();
    // A little latency keeps both runs sending at the same time.
    server.set_latency(Duration::from_millis(20));
    let dir = tempfile::tempdir().unwrap();
    // Two numbers of one portfolio: one number's runs take turns, but the limit is
    // the portfolio's, shared by runs from its numbers at the same time.
    write_campaign(
        dir.path(),
        "limit-a",
        30_000_000,
        150,
        &server.base_url(),
        "106540352242922",
    );
    write_campaign(
        dir.path(),
        "limit-b",
        40_000_000,
        150,
        &server.base_url(),
        "106540352242923",
    );
    let start = chrono::Utc::now();
    let at = |hours: i64| (start + chrono::Duration::hours(hours)).to_rfc3339();

    let outputs = send_both_at_once(dir.path(), &at(0));
    for output in &outputs {
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert_eq!(
        server.count(),
        250,
        "exactly the limit, over both campaigns"
    );
    let log = server.log();
    let unique: std::collections::HashSet<&str> = log.iter().map(|r| r.to.as_str()).collect();
    assert_eq!(unique.len(), 250, "each person once");
    let first = |prefix: &str| log.iter().position(|r| r.to.starts_with(prefix)).unwrap();
    let last = |prefix: &str| log.iter().rposition(|r| r.to.starts_with(prefix)).unwrap();
    assert!(
        first("+52553") < last("+52554") && first("+52554") < last("+52553"),
        "the two runs sent at the same time"
    );
    assert_eq!(
        count(
            dir.path(),
            "SELECT count(*) FROM journal WHERE state = 'accepted'"
        ),
        250
    );
    assert_eq!(
        count(
            dir.path(),
            "SELECT count(*) FROM journal WHERE state = 'deferred' AND error_detail LIKE \
             'messaging limit: 250 of 250 used in the last 24 h; the rest can go after __:__ UTC'"
        ),
        50,
        "the rest wait, saying why and until when"
    );
    assert_eq!(count(dir.path(), "SELECT count(*) FROM limit_reach"), 250);
    let said = outputs
        .iter()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .collect::<String>();
    assert!(said.contains("recipients left for a later run"), "{said}");

    // 23 hours later the 250 still count: nobody is messaged.
    for output in send_both_at_once(dir.path(), &at(23)) {
        assert_eq!(output.status.code(), Some(0));
    }
    assert_eq!(server.count(), 250);

    // A day later the limit has room again: the 50 go, once each.
    for output in send_both_at_once(dir.path(), &at(24)) {
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert_eq!(server.count(), 300);
    assert_eq!(
        count(
            dir.path(),
            "SELECT count(*) FROM journal WHERE state = 'accepted'"
        ),
        300
    );
    let log = server.log();
    let unique: std::collections::HashSet<&str> = log.iter().map(|r| r.to.as_str()).collect();
    assert_eq!(unique.len(), 300, "nobody twice");
}

#[test]
fn people_inside_a_service_window_do_not_count_and_an_unknown_limit_is_250_with_a_warning() {
    let server = MockServer::start();
    let dir = tempfile::tempdir().unwrap();
    write_campaign(
        dir.path(),
        "limit-a",
        30_000_000,
        260,
        &server.base_url(),
        "106540352242922",
    );
    // Ten people wrote in an hour ago: their windows are open, Meta does not count
    // them.
    let db = wacampaign::db::Db::open(&dir.path().join("wacampaign.db")).unwrap();
    let hour_ago = wacampaign::clock::format(chrono::Utc::now() - chrono::Duration::hours(1));
    for i in 0..10 {
        let phone =
            wacampaign::phone::E164::from_digits(&format!("5255{}", 30_000_000 + i)).unwrap();
        db.conn
            .execute(
                "INSERT INTO inbound_messages (message_id, provider, phone, consent_key, kind,
                     occurred_at, received_at) VALUES (?1, 'meta', ?2, ?3, 'text', ?4, ?4)",
                rusqlite::params![
                    format!("wamid.in{i}"),
                    phone.to_string(),
                    phone.consent_key() as i64,
                    hour_ago
                ],
            )
            .unwrap();
    }
    drop(db);
    let output = wacampaign_in(dir.path(), &dir.path().join("wacampaign.db"))
        .env_remove("WACAMPAIGN_MESSAGING_LIMIT")
        .env("WHATSAPP_TOKEN", TOKEN)
        .args(["send", "limit-a.toml", "--yes"])
        .timeout(Duration::from_secs(120))
        .assert()
        .code(0);
    let stderr = String::from_utf8_lossy(&output.get_output().stderr).into_owned();
    assert!(
        stderr.contains(
            "the messaging limit of this number is unknown: holding to Meta's lowest tier, 250"
        ),
        "{stderr}"
    );
    assert_eq!(
        server.count(),
        260,
        "250 counted, and the 10 inside a window"
    );
    assert_eq!(count(dir.path(), "SELECT count(*) FROM limit_reach"), 250);
}

#[test]
fn account_reads_the_portfolio_limit_caches_it_and_send_holds_to_it() {
    let server = MockServer::start();
    let answer = r#"{"id":"106540352242922","display_phone_number":"+52 55 5555 0000",
        "verified_name":"Clinica Norte","quality_rating":"GREEN","name_status":"APPROVED",
        "throughput":{"level":"STANDARD"},
        "whatsapp_business_manager_messaging_limit":"TIER_2K","messaging_limit_tier":"TIER_250"}"#;
    server.set_rule(move |r| {
        if r.path.starts_with("/v23.0/106540352242922?") {
            Reply::Raw {
                status: 200,
                body: answer.to_owned(),
            }
        } else {
            Reply::Accept
        }
    });
    let dir = tempfile::tempdir().unwrap();
    write_campaign(
        dir.path(),
        "limit-a",
        30_000_000,
        300,
        &server.base_url(),
        "106540352242922",
    );
    let db = dir.path().join("wacampaign.db");
    let shown = wacampaign_in(dir.path(), &db)
        .env("WHATSAPP_TOKEN", TOKEN)
        .args(["account", "limit-a.toml"])
        .assert()
        .code(0);
    let out = String::from_utf8_lossy(&shown.get_output().stdout).into_owned();
    for line in [
        "messaging limit   2000 people per 24 h (from whatsapp_business_manager_messaging_limit)",
        "used, last 24 h   0 (2000 remaining)",
        "throughput        STANDARD",
        "quality rating    GREEN",
        "name status       APPROVED",
    ] {
        assert!(out.contains(line), "`{line}` in:\n{out}");
    }
    let request = &server.log()[0];
    assert_eq!(request.method, "GET");
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert!(
        request
            .path
            .contains("whatsapp_business_manager_messaging_limit")
    );
    assert!(!out.contains(TOKEN));

    // Offline: the cache, without a request.
    let before = server.count();
    wacampaign_in(dir.path(), &db)
        .args(["account", "limit-a.toml", "--offline"])
        .assert()
        .code(0)
        .stdout(predicates::str::contains("2000 people per 24 h"));
    assert_eq!(server.count(), before);

    // `send` holds to the cached 2000, so all 300 go, with no warning about it.
    let sent = wacampaign_in(dir.path(), &db)
        .env_remove("WACAMPAIGN_MESSAGING_LIMIT")
        .env("WHATSAPP_TOKEN", TOKEN)
        .args(["send", "limit-a.toml", "--yes"])
        .timeout(Duration::from_secs(120))
        .assert()
        .code(0);
    assert!(!String::from_utf8_lossy(&sent.get_output().stderr).contains("messaging limit"));
    assert_eq!(server.count(), before + 300);
    assert_eq!(count(dir.path(), "SELECT count(*) FROM limit_reach"), 300);
}

#[test]
fn an_answer_without_the_limit_is_a_warning_and_a_twilio_campaign_is_told_what_to_set() {
    let server = MockServer::start();
    server.set_rule(|_| Reply::Raw {
        status: 200,
        body: r#"{"id":"106540352242922","quality_rating":"YELLOW"}"#.to_owned(),
    });
    let dir = tempfile::tempdir().unwrap();
    write_campaign(
        dir.path(),
        "limit-a",
        30_000_000,
        1,
        &server.base_url(),
        "106540352242922",
    );
    let db = dir.path().join("wacampaign.db");
    wacampaign_in(dir.path(), &db)
        .env("WHATSAPP_TOKEN", TOKEN)
        .args(["account", "limit-a.toml"])
        .assert()
        .code(0)
        .stdout(predicates::str::contains(
            "unknown (held to 250 people per 24 h)",
        ))
        .stderr(predicates::str::contains(
            "the answer gives no messaging limit",
        ));
    let twilio = edit(
        &edit(
            CAMPAIGN,
            "[provider]\nkind = \"cloud_api\"\nphone_number_id = \"106540352242922\"\n",
            "[provider]\nkind = \"twilio\"\nfrom = \"+14155238886\"\n",
        ),
        "[template.variables]",
        "content_sid = \"HX0123456789abcdef0123456789abcdef\"\n\n[template.variables]",
    );
    std::fs::write(dir.path().join("contacts.csv"), "name,phone,date\n").unwrap();
    std::fs::write(dir.path().join("twilio.toml"), twilio).unwrap();
    wacampaign_in(dir.path(), &db)
        .args(["account", "twilio.toml"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("set sending.messaging_limit"));
}
