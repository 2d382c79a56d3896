//! What a marketer gets after a campaign: the follow-up list (`status --only`) that
//! feeds the next campaign, and the HTML report.

use serde_json::{Value, json};

use crate::erase::envelope;
use crate::webhook::harness::{Server, Workspace};

/// The shipped demo, sent from a fresh copy of `campaigns/`, then the statuses and
/// replies a webhook server records: of the accepted messages, by position, a
/// quarter read, a quarter delivered, a quarter failed after acceptance, a quarter
/// with no status; two people reply, and one of the delivered replies STOP.
pub struct Demo {
    pub ws: Workspace,
    pub accepted: usize,
    pub read: usize,
    pub delivered_only: usize,
    pub failed_after: usize,
    pub stopped: String,
}

pub fn demo() -> Demo {
    let ws = Workspace::new();
    let to = ws.path().join("campaigns");
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(crate::support::shipped_campaigns()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    ws.wacampaign()
        .args([
            "-q",
            "consent",
            "import",
            "campaigns/demo-optins.csv",
            "--purpose",
            "marketing",
            "--method",
            "web_form",
            "--occurred-column",
            "signed_up_at",
            "--evidence-column",
            "form_submission",
        ])
        .assert()
        .success();
    ws.wacampaign()
        .args(["-q", "send", "campaigns/demo.toml", "--yes"])
        .assert()
        .success();
    let rows = accepted_messages(&ws);
    let server = Server::start(&ws, &[]);
    let now = chrono::Utc::now().timestamp();
    let meta = json!({"display_phone_number": "15550783881", "phone_number_id": "106540352242922"});
    let (mut read, mut delivered_only, mut failed_after) = (0, 0, 0);
    let mut stopped = String::new();
    for (i, (message_id, person, phone)) in rows.iter().enumerate() {
        let wa_id = phone.trim_start_matches('+');
        let kinds: &[(&str, i64)] = match i % 4 {
            0 => {
                read += 1;
                &[
                    ("sent", 0),
                    ("delivered", 60),
                    ("read", 60 + 600 * (i as i64 % 7)),
                ]
            }
            1 => {
                delivered_only += 1;
                &[("sent", 0), ("delivered", 90)]
            }
            2 => {
                failed_after += 1;
                &[("sent", 0), ("failed", 30)]
            }
            _ => &[],
        };
        for (kind, after) in kinds {
            let mut status = json!({"id": message_id, "status": kind,
                "timestamp": (now + after).to_string(), "recipient_id": wa_id,
                "biz_opaque_callback_data": format!("wacampaign:demo-black-friday:{person}")});
            if *kind == "failed" {
                status["errors"] = json!([{"code": 131026, "title": "Message undeliverable"}]);
            }
            let payload = envelope(json!({
                "messaging_product": "whatsapp", "metadata": meta, "statuses": [status]
            }));
            assert_eq!(server.post_meta_signed(&payload).status, 200);
        }
        // Two replies: one who read it says thanks, one who got it says STOP.
        let text = match i {
            0 => "gracias!",
            1 => {
                stopped = phone.clone();
                "STOP"
            }
            _ => continue,
        };
        let reply = envelope(json!({
            "messaging_product": "whatsapp", "metadata": meta,
            "contacts": [{"profile": {"name": "P"}, "wa_id": wa_id}],
            "messages": [{"from": wa_id, "id": format!("wamid.reply{i}"),
                          "timestamp": (now + 900).to_string(), "type": "text",
                          "text": {"body": text}}]
        }));
        assert_eq!(server.post_meta_signed(&reply).status, 200);
    }
    server.stop();
    Demo {
        accepted: rows.len(),
        read,
        delivered_only,
        failed_after,
        stopped,
        ws,
    }
}

pub fn status_json(ws: &Workspace, campaign: &str) -> Value {
    let out = ws
        .wacampaign()
        .args(["--json", "status", campaign])
        .assert()
        .success();
    let line: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    line["data"].clone()
}

fn read_csv(path: &std::path::Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    (header, rows)
}

#[test]
fn the_not_read_list_feeds_the_shipped_follow_up_campaign() {
    let d = demo();
    let ws = &d.ws;
    let status = status_json(ws, "campaigns/demo.toml");
    assert_eq!(status["counts"]["accepted"], d.accepted);
    assert_eq!(status["deliveries"]["read"], d.read);

    let out = ws
        .wacampaign()
        .args([
            "status",
            "campaigns/demo.toml",
            "--only",
            "not-read",
            "--csv",
            "campaigns/demo-not-read.csv",
        ])
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("read receipts off"), "{stderr}");
    let (header, rows) = read_csv(&ws.path().join("campaigns/demo-not-read.csv"));
    // The contact's own columns, in the file's order, then the outcome.
    assert_eq!(
        header,
        [
            "first_name",
            "last_name",
            "phone",
            "offer",
            "form_submission",
            "outcome",
            "outcome_note",
            "error_code"
        ]
    );
    // Not read: delivered only, and no status at all; not the failed, not the one
    // who said STOP.
    let no_status = d.accepted - d.read - d.delivered_only - d.failed_after;
    assert_eq!(rows.len(), d.delivered_only - 1 + no_status, "{rows:?}");
    let contacts = std::fs::read_to_string(ws.path().join("campaigns/demo-contacts.csv")).unwrap();
    for row in &rows {
        assert!(
            ["delivered", "accepted_no_status"].contains(&row[5].as_str()),
            "{row:?}"
        );
        assert!(row[6].contains("read receipts off"), "{row:?}");
        // The row as it was in the contacts file.
        let line = row[..5].join(",");
        assert!(
            contacts.contains(&line),
            "{line} is not a row of the contacts file"
        );
    }
    let stopped_digits: String = d.stopped.chars().filter(char::is_ascii_digit).collect();
    assert!(
        !rows.iter().any(|r| {
            let digits: String = r[2].chars().filter(char::is_ascii_digit).collect();
            stopped_digits.ends_with(&digits[digits.len().saturating_sub(10)..])
        }),
        "the person who replied STOP is listed"
    );

    // The list is the follow-up's contacts file: every row eligible, then sent.
    let out = ws
        .wacampaign()
        .args(["--json", "check", "campaigns/demo-follow-up.toml"])
        .assert()
        .success();
    let check: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(check["data"]["eligible"], rows.len(), "{check}");
    assert_eq!(check["data"]["excluded"], 0, "{check}");
    ws.wacampaign()
        .args(["-q", "send", "campaigns/demo-follow-up.toml", "--yes"])
        .assert()
        .success();
    let follow_up = status_json(ws, "campaigns/demo-follow-up.toml");
    assert_eq!(follow_up["counts"]["accepted"], rows.len(), "{follow_up}");

    // The other lists, by their definitions.
    let count = |only: &str| {
        let file = format!("{only}.csv");
        ws.wacampaign()
            .args([
                "status",
                "campaigns/demo.toml",
                "--only",
                only,
                "--csv",
                &file,
            ])
            .assert()
            .success();
        read_csv(&ws.path().join(&file)).1
    };
    let failed = count("failed");
    assert_eq!(failed.len(), d.failed_after);
    assert!(
        failed
            .iter()
            .all(|r| r[5] == "failed_after_accepted" && r[7] == "131026")
    );
    assert_eq!(count("not-delivered").len(), d.failed_after + no_status);
    // Everyone accepted and not failed, but the one who thanked and the one who
    // said STOP (out anyway).
    assert_eq!(
        count("no-reply").len(),
        d.accepted - d.failed_after - 2,
        "no-reply"
    );
    assert_eq!(count("in-doubt").len(), 0);

    // The two campaigns side by side; the rate card of the one whose file is named.
    let out = ws
        .wacampaign()
        .args([
            "--json",
            "report",
            "--all",
            "--since",
            "30d",
            "campaigns/demo.toml",
        ])
        .assert()
        .success();
    let rows: Vec<Value> = String::from_utf8_lossy(&out.get_output().stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["data"].clone())
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["campaign"], "demo-black-friday");
    assert_eq!(rows[0]["sent"], d.accepted);
    let read_rate = rows[0]["read_rate"].as_f64().unwrap();
    assert!((read_rate - d.read as f64 / d.accepted as f64).abs() < 1e-9);
    // 5 refused as opted out by the provider, one STOP since: of 263 attempted.
    let opt_out = rows[0]["opt_out_rate"].as_f64().unwrap();
    assert!(
        (opt_out - 6.0 / (d.accepted as f64 + 5.0)).abs() < 1e-9,
        "{opt_out}"
    );
    assert!(rows[0]["cost_per_read"].as_str().unwrap().ends_with(" USD"));
    assert_eq!(rows[1]["campaign"], "demo-black-friday-reminder");
    assert!(rows[1]["cost_per_read"].is_null());
    ws.wacampaign()
        .args(["report", "--all", "--html", "all.html"])
        .assert()
        .success();
    assert!(
        std::fs::read_to_string(ws.path().join("all.html"))
            .unwrap()
            .contains("demo-black-friday-reminder")
    );
    // --by names a kept column, or says how to keep it.
    let out = ws
        .wacampaign()
        .args(["report", "campaigns/demo.toml", "--by", "city"])
        .assert()
        .code(2);
    assert!(String::from_utf8_lossy(&out.get_output().stderr).contains("campaign.keep_columns"));

    // --only needs a file to write.
    ws.wacampaign()
        .args(["status", "campaigns/demo.toml", "--only", "failed"])
        .assert()
        .code(2);
}

#[test]
fn kept_columns_are_the_campaigns_choice_and_a_missing_one_is_named() {
    use crate::support::{CAMPAIGN, Fixture, edit};
    let f = Fixture::with_contacts("name,phone,date,city\nAna,+52 55 1234 5678,martes,Puebla\n");
    f.write(
        "campaign.toml",
        edit(
            CAMPAIGN,
            "default_region = \"MX\"",
            "default_region = \"MX\"\nkeep_columns = [\"city\", \"ciudad\"]",
        ),
    );
    let out = f.check(&[]).assert().code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("ciudad") && stderr.contains("campaign.keep_columns"),
        "{stderr}"
    );

    // The plan keeps only what is listed, in the journal beside the row.
    let f = Fixture::with_contacts("name,phone,date,city\nAna,+52 55 1234 5678,martes,Puebla\n");
    let campaign = edit(
        CAMPAIGN,
        "default_region = \"MX\"",
        "default_region = \"MX\"\nkeep_columns = [\"city\"]",
    );
    let campaign = edit(
        &campaign,
        "kind = \"cloud_api\"\nphone_number_id = \"106540352242922\"",
        "kind = \"simulator\"\nlatency_ms = 1",
    );
    f.write("campaign.toml", campaign);
    crate::support::opt_in_everyone(&f.path("campaign.toml"), &f.path("wacampaign.db"));
    f.wacampaign()
        .args(["-q", "send", "campaign.toml", "--yes"])
        .assert()
        .success();
    let conn = rusqlite::Connection::open(f.path("wacampaign.db")).unwrap();
    let contact: String = conn
        .query_row("SELECT contact FROM journal", [], |r| r.get(0))
        .unwrap();
    assert_eq!(contact, r#"{"city":"Puebla"}"#);
    // The list adds the phone column the campaign reads, since it was not kept.
    f.wacampaign()
        .args([
            "status",
            "campaign.toml",
            "--only",
            "not-read",
            "--csv",
            "list.csv",
        ])
        .assert()
        .success();
    let list = f.read("list.csv");
    let mut lines = list.lines();
    assert_eq!(
        lines.next(),
        Some("phone,city,outcome,outcome_note,error_code")
    );
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("+525512345678,Puebla,accepted_no_status,"),
        "{list}"
    );
}

// ---- the HTML report, against `status --json` and in a real browser ----

/// The number written in the page's `data-figure="NAME"` element.
fn html_figure(html: &str, name: &str) -> u64 {
    let at = html
        .find(&format!("data-figure=\"{name}\">"))
        .unwrap_or_else(|| panic!("the report has no figure `{name}`"));
    let rest = &html[at..];
    let start = rest.find('>').unwrap() + 1;
    let end = rest.find('<').unwrap();
    rest[start..end]
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("figure `{name}`: {e}"))
}

/// The count in the funnel table's row for `stage`.
fn html_stage(html: &str, stage: &str) -> u64 {
    let marker = format!("data-stage=\"{stage}\">");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("the funnel has no stage `{stage}`"))
        + marker.len();
    html[at..at + html[at..].find('<').unwrap()]
        .parse()
        .unwrap()
}

/// Chromium's binary, by the names Debian and others give it.
fn chromium() -> Option<std::path::PathBuf> {
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .iter()
    .find_map(|name| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
    })
}

/// Records console errors and uncaught exceptions from the first moment.
const RECORD_ERRORS: &str = "<script>window.__errors=[];\
window.addEventListener('error',function(e){__errors.push('uncaught: '+e.message)});\
(function(){var ce=console.error;console.error=function(){__errors.push(Array.prototype.join.call(arguments,' '));ce.apply(console,arguments)}})();\
</script>";

/// After load: for each chart, the data marks (elements in its series' colours)
/// with a rendered size, and whether its table is on the page; written into the DOM
/// for `--dump-dom`.
const MEASURE: &str = "<script>(function(){\
var out={errors:window.__errors,charts:[]};\
document.querySelectorAll('figure.chart').forEach(function(fig){\
var colours=(fig.getAttribute('data-marks')||'').split(',').filter(Boolean).map(function(c){return c.toUpperCase()});\
var marks=0;\
fig.querySelectorAll('svg rect, svg polyline, svg path, svg circle, svg line').forEach(function(el){\
var paint=((el.getAttribute('fill')||'')+' '+(el.getAttribute('stroke')||'')).toUpperCase();\
if(!colours.some(function(c){return paint.indexOf(c)>=0}))return;\
var b=el.getBoundingClientRect();\
var sized=el.tagName==='polyline'?(b.width>0||b.height>0):(b.width>0&&b.height>0);\
if(sized)marks++;});\
var table=fig.getAttribute('aria-describedby');\
out.charts.push({table:table,colours:colours,marks:marks,has_table:!!document.getElementById(table)});});\
var pre=document.createElement('pre');pre.id='selftest';pre.textContent=JSON.stringify(out);document.body.appendChild(pre);\
})();</script>";

#[test]
fn the_html_report_agrees_with_status_and_renders_in_chromium() {
    let d = demo();
    let ws = &d.ws;
    let status = status_json(ws, "campaigns/demo.toml");
    let out = ws
        .wacampaign()
        .args(["--json", "report", "campaigns/demo.toml", "--by", "offer"])
        .assert()
        .success();
    let report: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let report = &report["data"];
    // The same figures as `status`, from the same functions.
    assert_eq!(report["counts"], status["counts"]);
    assert_eq!(report["deliveries"], status["deliveries"]);
    assert_eq!(report["cost"]["billed"], status["billing"]);
    let failed_when_sent: u64 = report["failures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["when"] == "when sent")
        .map(|f| f["count"].as_u64().unwrap())
        .sum();
    let by_code: u64 = status["failures_by_code"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(failed_when_sent, by_code);
    let after: Vec<&Value> = report["failures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["when"] == "after acceptance")
        .collect();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0]["code"], "131026");
    assert_eq!(after[0]["count"], d.failed_after);
    assert!(after[0]["advice"].as_str().unwrap().contains("not billed"));
    // Breakdowns add up; the kept column is there.
    let sum = |key: &str, field: &str| -> u64 {
        report[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g[field].as_u64().unwrap())
            .sum()
    };
    assert_eq!(sum("by_market", "read"), d.read as u64);
    assert_eq!(sum("by_language", "sent"), d.accepted as u64);
    let by_offer: u64 = report["by_column"]["offer"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["read"].as_u64().unwrap())
        .sum();
    assert_eq!(by_offer, d.read as u64);
    let reads: u64 = report["time_to_read"]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b[1].as_u64().unwrap())
        .sum();
    assert_eq!(reads, d.read as u64);
    let hourly_sent: u64 = report["hourly"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["sent"].as_u64().unwrap())
        .sum();
    assert_eq!(hourly_sent, d.accepted as u64);

    // The page says the same, in numbers a person reads.
    ws.wacampaign()
        .args([
            "report",
            "campaigns/demo.toml",
            "--html",
            "report.html",
            "--by",
            "offer",
        ])
        .assert()
        .success();
    let html = std::fs::read_to_string(ws.path().join("report.html")).unwrap();
    let c = &status["counts"];
    let dl = &status["deliveries"];
    assert_eq!(html_figure(&html, "sent"), c["accepted"].as_u64().unwrap());
    assert_eq!(
        html_figure(&html, "delivered"),
        dl["delivered"].as_u64().unwrap()
    );
    assert_eq!(html_figure(&html, "read"), dl["read"].as_u64().unwrap());
    assert_eq!(
        html_figure(&html, "replied"),
        dl["replied"].as_u64().unwrap()
    );
    assert_eq!(
        html_figure(&html, "failed"),
        c["failed"].as_u64().unwrap() + dl["failed_after_accept"].as_u64().unwrap()
    );
    assert_eq!(
        html_figure(&html, "opted_out"),
        c["opted_out"].as_u64().unwrap()
    );
    assert_eq!(html_stage(&html, "sent"), c["accepted"].as_u64().unwrap());
    assert_eq!(html_stage(&html, "read"), d.read as u64);
    assert_eq!(html_stage(&html, "replied"), 2);
    assert_eq!(html_stage(&html, "excluded: no opt-in"), 37);
    assert!(html.contains("data-figure=\"cost\""), "no cost");
    assert!(
        html.contains("Hola {{first_name}}, tu acceso anticipado"),
        "no template"
    );
    assert!(html.contains("By offer"));
    // Self-contained: nothing to fetch.
    for needle in ["src=", "href=", "url(", "@import", "<link", "<script"] {
        assert!(!html.contains(needle), "the report references `{needle}`");
    }
    assert!(html.len() < 200_000, "{} bytes", html.len());
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(ws.path().join("report.html"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // In a browser.
    let Some(chromium) = chromium() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true and no Chromium: .ci/run installs the `chromium` package"
        );
        eprintln!(
            "SKIPPED the browser half of the report test: Chromium is not installed \
             (apt-get install chromium); CI installs it and fails without it"
        );
        return;
    };
    let under_test = html
        .replacen("<head>", &format!("<head>{RECORD_ERRORS}"), 1)
        .replacen("</body>", &format!("{MEASURE}</body>"), 1);
    let page = ws.write("report-under-test.html", under_test);
    let browse = |extra: &[&str], url: &std::path::Path| {
        let profile = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(format!("file://{}", url.display()))
            .output()
            .expect("running chromium");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let out = browse(&["--dump-dom"], &page);
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    for line in stderr.lines().filter(|l| l.contains(":CONSOLE(")) {
        let lower = line.to_lowercase();
        assert!(
            !lower.contains("error") && !lower.contains("uncaught"),
            "console: {line}"
        );
    }
    let start = dom
        .find("<pre id=\"selftest\">")
        .unwrap_or_else(|| panic!("the measuring script did not run:\n{dom}"))
        + "<pre id=\"selftest\">".len();
    let text = &dom[start..start + dom[start..].find("</pre>").unwrap()];
    let text = text.replace("&quot;", "\"").replace("&amp;", "&");
    let result: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(result["errors"], json!([]), "console errors: {result}");
    let charts = result["charts"].as_array().unwrap();
    // Funnel, failures, per hour, time to read.
    assert_eq!(charts.len(), 4, "{result}");
    for chart in charts {
        assert!(
            chart["marks"].as_u64().unwrap() >= 1,
            "a chart without data marks: {chart}"
        );
        assert_eq!(
            chart["has_table"], true,
            "a chart without its table: {chart}"
        );
    }

    // A screenshot of the report as delivered, kept as the test's artefact.
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-demo.png");
    let _ = std::fs::remove_file(&shot);
    browse(
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,4000",
            "--hide-scrollbars",
        ],
        &ws.path().join("report.html"),
    );
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 10_000,
        "no screenshot at {} ({size} bytes)",
        shot.display()
    );
    eprintln!("screenshot of the report: {}", shot.display());
}

/// The folded columns (migration 0013), newest first in the order they were added.
const FOLDED: [&str; 8] = [
    "pricing_type",
    "pricing_category",
    "billable",
    "status_error_detail",
    "status_error_code",
    "read_ts",
    "delivered_ts",
    "status_rank",
];

/// `report --json` without the moment it was made.
fn report_json(ws: &Workspace) -> Value {
    let out = ws
        .wacampaign()
        .args(["--json", "report", "campaigns/demo.toml", "--by", "offer"])
        .assert()
        .success();
    let mut line: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    line["data"]["generated_at"] = Value::Null;
    line["data"].clone()
}

#[test]
fn a_database_from_before_the_fold_reports_the_same_after_migrating() {
    let d = demo();
    let ws = &d.ws;
    // Statuses as Meta really sends them: out of order, repeated, some priced.
    let rows = accepted_messages(ws);
    let server = Server::start(ws, &[]);
    let meta = json!({"display_phone_number": "15550783881", "phone_number_id": "106540352242922"});
    let now = chrono::Utc::now().timestamp();
    for (i, (message_id, person, phone)) in rows.iter().enumerate() {
        // Those with no status in the demo (every fourth) get a read before its
        // delivered, a delivered again earlier, and pricing; a read one gets a late
        // delivered that must not lower it.
        let kinds: &[(&str, i64, Option<&str>)] = match i % 4 {
            3 => &[
                ("read", 4000, None),
                ("delivered", 900, Some("marketing")),
                ("delivered", 300, None),
                ("sent", 5, Some("marketing")),
            ],
            0 => &[("delivered", 7000, Some("utility"))],
            _ => continue,
        };
        for (kind, after, category) in kinds {
            let mut status = json!({"id": message_id, "status": kind,
                "timestamp": (now + after).to_string(), "recipient_id": phone.trim_start_matches('+'),
                "biz_opaque_callback_data": format!("wacampaign:demo-black-friday:{person}")});
            if let Some(category) = category {
                status["pricing"] =
                    json!({"billable": true, "pricing_model": "PMP", "category": category});
            }
            let payload = envelope(json!({
                "messaging_product": "whatsapp", "metadata": meta, "statuses": [status]
            }));
            assert_eq!(server.post_meta_signed(&payload).status, 200);
        }
    }
    server.stop();

    let status_before = status_json(ws, "campaigns/demo.toml");
    let report_before = report_json(ws);
    let deliveries = &status_before["deliveries"];
    let late = rows.iter().skip(3).step_by(4).count();
    assert_eq!(deliveries["read"], d.read + late, "the late reads count");
    assert_eq!(deliveries["delivered"], d.read + d.delivered_only + late);
    assert_eq!(deliveries["no_status"], 0);
    assert!(
        !status_before["billing"]["billable"]
            .as_object()
            .unwrap()
            .is_empty(),
        "{status_before}"
    );

    // The database as the version before the fold left it: no folded columns.
    let conn = rusqlite::Connection::open(ws.db()).unwrap();
    let folded: i64 = conn
        .query_row(
            "SELECT count(*) FROM journal WHERE status_rank IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        folded as usize,
        rows.len(),
        "every accepted row has statuses"
    );
    for column in FOLDED {
        conn.execute_batch(&format!("ALTER TABLE journal DROP COLUMN {column}"))
            .unwrap();
    }
    // Later migrations' columns go too, so they can be added again.
    for column in [
        "departure_log",
        "claimed_run",
        "claimed_seq",
        "claimed_id",
        "claimed_at",
    ] {
        conn.execute_batch(&format!("ALTER TABLE campaigns DROP COLUMN {column}"))
            .unwrap();
    }
    // Nor the person indexes of 0014, which came after it (0016 and 0017 dropped
    // them again).
    conn.execute_batch(
        "DROP INDEX IF EXISTS journal_accepted_by_person;
         DROP INDEX IF EXISTS journal_in_flight_by_person;
         CREATE INDEX journal_sent_by_person ON journal (person_id, outcome_at)
             WHERE state IN ('accepted', 'in_flight');",
    )
    .unwrap();
    conn.pragma_update(None, "user_version", 12).unwrap();
    drop(conn);

    // Opening it migrates and backfills; the figures are those of the live fold.
    let status_after = status_json(ws, "campaigns/demo.toml");
    let report_after = report_json(ws);
    assert_eq!(status_after, status_before);
    assert_eq!(report_after, report_before);
    let conn = rusqlite::Connection::open(ws.db()).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, i64::from(wacampaign::db::SCHEMA_VERSION));
}

/// Each accepted message of the demo's journal: (message id, person, number).
fn accepted_messages(ws: &Workspace) -> Vec<(String, i64, String)> {
    let conn = rusqlite::Connection::open(ws.db()).unwrap();
    conn.prepare(
        "SELECT message_id, person_id, phone FROM journal
         WHERE state = 'accepted' ORDER BY seq",
    )
    .unwrap()
    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}
