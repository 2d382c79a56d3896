//! `[audience] where`: a CEL expression picks the rows a campaign is for; rows
//! outside it are counted apart from exclusions, and bad expressions are located
//! campaign errors.

use serde_json::Value;

use crate::support::{CAMPAIGN, Fixture, edit, stdout};

const CONTACTS: &str = "\
name,phone,date,city,total,bought_at
Ana,+52 81 1234 0001,martes,Monterrey,250.00,2026-10-15
Beto,+52 81 1234 0002,martes,monterrey,80,2026-11-20
Caro,+52 55 1234 0003,martes,CDMX,900,2026-11-01
Dani,+52 81 1234 0004,martes,Monterrey,1200,2025-01-01
Eva,no-number,martes,Puebla,10,2026-11-01
Fer,+52 81 1234 0006,martes,Monterrey,n/a,2026-11-25
Gabi,+52 81 1234 0001,martes,Monterrey,300,2026-11-26
";

/// The campaign with an audience section (and `columns`, when given).
fn fixture(audience: &str) -> Fixture {
    let fx = Fixture::with_contacts(CONTACTS);
    fx.write(
        "campaign.toml",
        edit(
            CAMPAIGN,
            "default_region = \"MX\"\n",
            "default_region = \"MX\"\ntimezone = \"America/Monterrey\"\n",
        ) + "\n[audience]\n"
            + audience,
    );
    fx
}

fn check_json(fx: &Fixture, args: &[&str]) -> Value {
    let assert = fx
        .check(&["--json"])
        .args(args)
        .env("WACAMPAIGN_NOW", "2026-11-28T18:00:00Z")
        .assert()
        .code(0);
    let record: Value = serde_json::from_str(stdout(&assert).trim()).expect("one JSON record");
    record["data"].clone()
}

#[test]
fn two_columns_and_dates_relative_to_today_pick_the_audience() {
    // Monterrey customers who bought in the last 90 days (today is 28 Nov 2026 in
    // Monterrey): Ana, Beto, Fer; Gabi repeats Ana's number. Caro is in CDMX, Dani
    // bought too long ago, and Eva (a bad number) is in Puebla: outside, not excluded.
    let fx = fixture(
        "where = 'lower(city) == \"monterrey\" && date(bought_at) >= today() - days(90)'\n",
    );
    let data = check_json(&fx, &[]);
    assert_eq!(data["contacts_read"], 7);
    assert_eq!(data["outside_audience"], 3, "{data}");
    assert_eq!(data["eligible"], 3, "{data}");
    assert_eq!(
        data["excluded_by_reason"],
        serde_json::json!({"duplicate": 1}),
        "{data}"
    );

    let text = stdout(
        &fx.check(&[])
            .env("WACAMPAIGN_NOW", "2026-11-28T18:00:00Z")
            .assert()
            .code(0),
    );
    assert!(
        text.contains("outside the audience 3 (not in the audience; not excluded)"),
        "{text}"
    );
}

#[test]
fn a_typed_column_that_does_not_convert_excludes_its_row_with_the_reason() {
    let fx = fixture(
        "where = 'total >= 100.0 && city in [\"Monterrey\", \"CDMX\"]'\n\n[audience.columns]\ntotal = \"number\"\n",
    );
    let data = check_json(&fx, &["--excluded", "excluded.csv"]);
    // Ana 250, Caro 900, Dani 1200 and Gabi (Ana's number again) pass; Beto (80) and
    // Eva (Puebla) do not; Fer's `n/a` is not a number.
    assert_eq!(data["eligible"], 3, "{data}");
    assert_eq!(data["outside_audience"], 2, "{data}");
    assert_eq!(
        data["excluded_by_reason"],
        serde_json::json!({"duplicate": 1, "audience_value": 1}),
        "{data}"
    );
    let excluded = fx.read("excluded.csv");
    assert!(
        excluded.contains(
            "7,'+52 81 1234 0006,audience_value,audience: column `total`: `n/a` is not a number"
        ),
        "{excluded}"
    );
}

#[test]
fn where_on_the_command_line_overrides_the_campaigns_audience() {
    let fx = fixture("where = 'city == \"CDMX\"'\n");
    assert_eq!(check_json(&fx, &[])["eligible"], 1);
    let data = check_json(
        &fx,
        &["--where", "city.startsWith(\"Mon\") && name != \"Ana\""],
    );
    // Dani, Fer, Gabi (Ana's number, but Ana is outside: not a duplicate).
    assert_eq!(data["eligible"], 3, "{data}");
    assert_eq!(data["outside_audience"], 4, "{data}");
    assert_eq!(data["excluded"], 0, "{data}");

    // preview and send take it too.
    let text = stdout(
        &fx.preview(&["--where", "name == \"Caro\""])
            .assert()
            .code(0),
    );
    assert!(text.contains("Caro") && !text.contains("Ana"), "{text}");
}

#[test]
fn a_campaign_without_an_audience_reports_no_audience_count() {
    let fx = Fixture::with_contacts(CONTACTS);
    let data = check_json(&fx, &[]);
    assert!(data.get("outside_audience").is_none(), "{data}");
    assert_eq!(data["eligible"], 5, "{data}");
}

#[test]
fn an_expression_that_does_not_parse_is_a_located_campaign_error() {
    let fx = fixture("where = 'city == \"Monterrey\" &&'\n");
    let assert = fx.check(&[]).assert().code(2);
    let err = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    // The campaign file's line and column of the expression, then CEL's position.
    assert!(
        err.contains(
            "campaign.toml:23:9: audience.where: the expression does not parse at line 1, \
             column 23 of the expression: Syntax error: mismatched input '<EOF>'"
        ),
        "{err}"
    );

    let fx = fixture("where = 'city == \"Monterrey\"'\n");
    let assert = fx.check(&["--where", "city ==="]).assert().code(2);
    let err = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(
        err.contains("--where: the expression does not parse"),
        "{err}"
    );
}

#[test]
fn an_unknown_column_names_its_position_and_the_headers_columns() {
    let fx = fixture("where = 'city == \"Monterrey\" && totl > 5'\n");
    let assert = fx.check(&[]).assert().code(2);
    let err = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(
        err.contains("audience.where: unknown column `totl` at line 1, column 24 of the expression; the contacts file's header has: name, phone, date, city, total, bought_at"),
        "{err}"
    );
}

#[test]
fn a_date_compared_with_a_number_is_a_type_error_before_any_row() {
    let fx = fixture("where = 'date(bought_at) > 5'\n");
    let assert = fx.check(&[]).assert().code(2);
    let err = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(
        err.contains("audience.where: the expression does not work on these values"),
        "{err}"
    );
    assert!(
        err.contains("date(bought_at) >= today() - days(90)"),
        "{err}"
    );

    let fx = fixture("where = 'city > 5'\n\n[audience.columns]\ncity = \"daate\"\n");
    let assert = fx.check(&[]).assert().code(2);
    let err = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(
        err.contains("audience.columns.city: `daate` is not a column type"),
        "{err}"
    );
}

#[test]
fn the_report_shows_who_was_outside_the_audience_and_who_waits_for_quiet_hours() {
    // Sent through the simulator at 22:00 in Monterrey with quiet hours from 21:00:
    // the Monterrey audience is planned and held, the rest is outside it.
    let fx = fixture("where = 'lower(city) == \"monterrey\"'\n");
    let text = std::fs::read_to_string(fx.path("campaign.toml")).unwrap();
    let text = edit(
        &text,
        "kind = \"cloud_api\"\nphone_number_id = \"106540352242922\"\n",
        "kind = \"simulator\"\nlatency_ms = 1\nundeliverable_rate = 0.0\nopt_out_rate = 0.0\n",
    );
    fx.write(
        "campaign.toml",
        edit(
            &text,
            "\n[audience]\n",
            "\n[sending]\nquiet_hours = \"21:00-09:00\"\n\n[audience]\n",
        ),
    );
    let now = "2026-11-28T04:00:00Z";
    fx.check(&[]).env("WACAMPAIGN_NOW", now).assert().code(0);
    fx.wacampaign()
        .args(["send", "campaign.toml", "--yes"])
        .env("WACAMPAIGN_NOW", now)
        .assert()
        .code(0);
    let out = fx
        .wacampaign()
        .args(["--json", "report", "campaign.toml"])
        .env("WACAMPAIGN_NOW", now)
        .assert()
        .code(0);
    let report: Value = stdout(&out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .next()
        .expect("a JSON report");
    let funnel = report["data"]["funnel"]
        .as_array()
        .unwrap_or_else(|| panic!("a funnel in {report}"));
    let stage = |name: &str| {
        funnel
            .iter()
            .find(|s| s["stage"] == name)
            .and_then(|s| s["count"].as_u64())
    };
    // Caro (CDMX) and Eva (Puebla) are outside; of the five Monterrey rows, Gabi
    // repeats Ana's number and Fer's total is never read: four are planned, and
    // every one of them waits for 09:00 in Monterrey.
    assert_eq!(stage("outside the audience"), Some(2), "{report}");
    assert_eq!(stage("excluded: duplicate"), Some(1), "{report}");
    assert_eq!(stage("held: quiet hours"), Some(4), "{report}");
    assert_eq!(stage("sent"), Some(0), "{report}");
    assert_eq!(stage("deferred"), Some(4), "{report}");
}
