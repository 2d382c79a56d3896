//! `wacampaign check`: every campaign-level problem is exit 2 with one located
//! message; every row-level problem leaves the campaign valid (exit 0) and excludes
//! the row with a reason.

use crate::support::{CAMPAIGN, Fixture, edit, shipped_campaigns, stderr, stdout, wacampaign_in};

const HEADER: &str = "name,phone,date\n";

/// Runs check on a campaign file that is wrong, expecting exit 2, nothing on stdout
/// and exactly `message` on stderr.
fn refused(campaign: &str, contacts: &str, message: &str) {
    let fx = Fixture::with_contacts(contacts);
    fx.write("campaign.toml", campaign);
    fx.check(&[])
        .assert()
        .code(2)
        .stdout("")
        .stderr(message.to_owned());
}

/// Runs check with `--excluded`, expecting exit 0, and returns the excluded CSV.
fn excluded_rows(fx: &Fixture) -> String {
    fx.check(&["--excluded", "excluded.csv"]).assert().code(0);
    fx.read("excluded.csv")
}

// ---- the campaign file ----

#[test]
fn malformed_toml_is_shown_where_it_breaks() {
    refused(
        &edit(
            CAMPAIGN,
            r#"phone_column = "phone""#,
            r#"phone_column = "phone"#,
        ),
        HEADER,
        "error: campaign.toml: TOML parse error at line 5, column 22\n  \
         |\n\
         5 | phone_column = \"phone\n  \
         |                      ^\n\
         invalid basic string, expected `\"`\n",
    );
}

#[test]
fn an_unknown_key_is_named_with_its_line_and_column() {
    refused(
        &edit(
            CAMPAIGN,
            "category = \"utility\"\n",
            "category = \"utility\"\ncolour = \"red\"\n",
        ),
        HEADER,
        "error: campaign.toml: TOML parse error at line 4, column 1\n  \
         |\n\
         4 | colour = \"red\"\n  \
         | ^^^^^^\n\
         unknown field `colour`, expected one of `id`, `description`, `category`, \
         `contacts`, `phone_column`, `bsuid_column`, `default_region`, `delimiter`, `encoding`, `kind`, `occurrence`, `send_by`, `send_by_format`, `timezone`, `timezone_column`, `keep_columns`
",
    );
}

#[test]
fn a_missing_phone_column_setting_is_a_missing_field() {
    refused(
        &edit(CAMPAIGN, "phone_column = \"phone\"\n", ""),
        HEADER,
        "error: campaign.toml: TOML parse error at line 1, column 1\n  \
         |\n\
         1 | [campaign]\n  \
         | ^^^^^^^^^^\n\
         missing field `phone_column`\n",
    );
}

#[test]
fn a_phone_column_absent_from_the_header_lists_the_header() {
    refused(
        &edit(
            CAMPAIGN,
            r#"phone_column = "phone""#,
            r#"phone_column = "mobile""#,
        ),
        HEADER,
        "error: contacts.csv: no column `mobile` (campaign.phone_column); the header has: \
         `name`, `phone`, `date`\n",
    );
}

#[test]
fn a_placeholder_column_absent_from_the_header_lists_the_header() {
    refused(
        &edit(CAMPAIGN, r#"column = "name""#, r#"column = "nombre""#),
        HEADER,
        "error: contacts.csv: no column `nombre` (template.variables.1); the header has: \
         `name`, `phone`, `date`\n",
    );
}

#[test]
fn a_literal_token_is_refused_without_echoing_it() {
    let secret = "EAAGm0PX4ZCpsBAKZAsuperSecret";
    let campaign = edit(
        CAMPAIGN,
        "phone_number_id = \"106540352242922\"\n",
        &format!("phone_number_id = \"106540352242922\"\ntoken = \"{secret}\"\n"),
    );
    let fx = Fixture::with_contacts(HEADER);
    fx.write("campaign.toml", campaign);
    let assert = fx.check(&[]).assert().code(2).stdout("").stderr(
        "error: campaign.toml:20:9: a token does not belong in the campaign file (it would \
         end up in version control and backups); put it in the environment variable named \
         by provider.token_env (default WHATSAPP_TOKEN) or in a file readable only by you, \
         named by provider.token_file\n",
    );
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(!stderr.contains("EAAG"), "the secret was echoed: {stderr}");
}

#[test]
fn secrets_in_the_campaign_file_are_never_printed_back() {
    // A token under a key the file does not have: the parser quotes the line.
    let campaign = edit(
        CAMPAIGN,
        "phone_number_id = \"106540352242922\"\n",
        "phone_number_id = \"106540352242922\"\nwhatsapp_token = \"EAAGm0PX4ZCpsBAKZAsuperSecret\"\n",
    );
    let fx = Fixture::with_contacts(HEADER);
    fx.write("campaign.toml", campaign);
    let assert = fx.check(&[]).assert().code(2).stdout("");
    let said = stderr(&assert);
    assert!(
        said.starts_with("error: campaign.toml: TOML parse error at line 20, column 1\n")
            && said.contains("20 | whatsapp_token = \"(hidden)\"")
            && said.contains("unknown field `whatsapp_token`"),
        "{said}"
    );
    assert!(!said.contains("EAAG"), "the secret was echoed: {said}");

    // A proxy's password in the provider's URL.
    let campaign = edit(
        CAMPAIGN,
        "phone_number_id = \"106540352242922\"\n",
        "phone_number_id = \"106540352242922\"\nbase_url = \"http://proxyuser:Pr0xyPass@127.0.0.1:9\"\n",
    );
    fx.write("campaign.toml", campaign);
    let assert = fx.check(&[]).assert().code(2).stdout("").stderr(
        "error: campaign.toml:20:12: this URL holds a user name or password (`user:pass@`): \
         remove them; a proxy's credentials go in HTTPS_PROXY, the token in its environment \
         variable\n",
    );
    let said = stderr(&assert);
    assert!(!said.contains("Pr0xyPass"), "{said}");
}

fn with_body(body: &str, variables: &str) -> String {
    let campaign = edit(
        CAMPAIGN,
        r#"body = "Hola {{1}}, tu cita es el {{2}}.""#,
        &format!("body = \"{body}\""),
    );
    edit(
        &campaign,
        "\"1\" = { column = \"name\" }\n\"2\" = { column = \"date\", default = \"lunes\" }\n",
        variables,
    )
}

#[test]
fn placeholder_zero_is_located() {
    refused(
        &with_body("Hola {{0}}", "\"1\" = { column = \"name\" }\n"),
        HEADER,
        "error: campaign.toml:11:8: template.body: line 1, column 6: `{{0}}`: positional \
         placeholders start at 1\n",
    );
}

#[test]
fn a_gap_in_positional_placeholders_is_located() {
    refused(
        &with_body(
            "{{1}}{{3}}",
            "\"1\" = { column = \"name\" }\n\"3\" = { column = \"date\" }\n",
        ),
        HEADER,
        "error: campaign.toml:11:8: template.body: positional placeholders must be numbered \
         1 to n without gaps: {{2}} is missing (the body uses up to {{3}})\n",
    );
}

#[test]
fn a_placeholder_name_with_a_space_is_located() {
    refused(
        &with_body(
            "Hola {{First Name}}",
            "\"First Name\" = { column = \"name\" }\n",
        ),
        HEADER,
        "error: campaign.toml:11:8: template.body: line 1, column 6: `{{First Name}}` is not \
         a valid placeholder; use a number from 1 (`{{1}}`) or a lowercase name of letters, \
         digits and underscores (`{{first_name}}`)\n",
    );
}

#[test]
fn an_unclosed_placeholder_is_located() {
    refused(
        &with_body("Hola {{1", "\"1\" = { column = \"name\" }\n"),
        HEADER,
        "error: campaign.toml:11:8: template.body: line 1, column 6: unclosed placeholder \
         `{{1`; close it with `}}`\n",
    );
}

#[test]
fn a_missing_campaign_file_is_named() {
    let fx = Fixture::new();
    fx.wacampaign()
        .args(["check", "nowhere.toml"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(
            "error: cannot read campaign file nowhere.toml: No such file or directory \
             (os error 2)\n",
        );
}

// ---- the contacts file as a whole ----

#[test]
fn a_missing_contacts_file_is_named_once() {
    let fx = Fixture::new();
    fx.write("campaign.toml", CAMPAIGN);
    fx.check(&[]).assert().code(2).stdout("").stderr(
        "error: cannot open contacts file contacts.csv (campaign.contacts: a path relative \
         to the campaign file): No such file or directory (os error 2)\n",
    );
}

#[test]
fn a_report_that_cannot_be_written_names_the_file_asked_for() {
    let fx = Fixture::with_contacts(HEADER);
    fx.write("campaign.toml", CAMPAIGN);
    fx.check(&["--excluded", "missing/excluded.csv"])
        .assert()
        .code(2)
        .stdout("")
        .stderr("error: creating missing/excluded.csv: No such file or directory (os error 2)\n");
}

#[test]
fn an_empty_contacts_file_asks_for_a_header() {
    Fixture::with_contacts("")
        .check(&[])
        .assert()
        .code(2)
        .stdout("")
        .stderr(
            "error: contacts.csv is empty; it needs a header row naming the columns, then one row \
         per contact\n",
        );
}

#[test]
fn a_header_without_rows_is_a_valid_campaign_with_no_one_in_it() {
    Fixture::with_contacts(HEADER)
        .check(&[])
        .assert()
        .code(0)
        .stderr("")
        .stdout(
            "campaign test-campaign (utility, template appointment_reminder es_MX)\n\
             contacts contacts.csv: 0 rows read\n\
             eligible 0\n\
             excluded 0\n\
             sending  cloud_api at 80 messages/s, about 0s\n\
             in flight up to 100 at once, the most a crash can leave in doubt; the rate holds with answers under 1.25 s\n",
        );
}

fn utf16le(text: &str, bom: bool) -> Vec<u8> {
    let mut bytes = if bom { vec![0xFF, 0xFE] } else { Vec::new() };
    bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    bytes
}

#[test]
fn utf16_is_refused_with_how_to_save_it() {
    let text = "name,phone,date\nAna,5512345678,lunes\n";
    for bytes in [utf16le(text, true), utf16le(text, false)] {
        Fixture::with_contacts(bytes)
            .check(&[])
            .assert()
            .code(2)
            .stdout("")
            .stderr(
                "error: contacts.csv is UTF-16 text; save it as \"CSV UTF-8\" (in Excel: File > \
                 Save As > CSV UTF-8)\n",
            );
    }
}

/// An Excel "CSV" export in a Western locale: Windows-1252, with accents.
const LATIN1: &[u8] = b"name,phone,date\nAna,5512345678,lunes\nJos\xE9,5523456789,mi\xE9rcoles\n";

#[test]
fn latin1_without_an_encoding_names_the_line_and_the_setting() {
    Fixture::with_contacts(LATIN1)
        .check(&[])
        .assert()
        .code(2)
        .stdout("")
        .stderr(
            "error: contacts.csv line 3 is not valid UTF-8; if the file came from Excel, set \
             encoding = \"windows-1252\" under [campaign], or save it as \"CSV UTF-8\"\n",
        );
    // Line breaks in quoted cells and blank lines before the row still count.
    Fixture::with_contacts(
        b"name,phone,date\r\n\"Ana\r\nMar\xEDa\",5512345678,lunes\r\n\r\nJos\xE9,5523456789,x\r\n",
    )
    .check(&[])
    .assert()
    .code(2)
    .stderr(predicates::str::starts_with(
        "error: contacts.csv line 2 is not valid UTF-8;",
    ));
    Fixture::with_contacts(
        b"name,phone,date\r\n\"Ana\r\nMar\xC3\xADa\",5512345678,lunes\r\n\r\nJos\xE9,5523456789,x\r\n",
    )
    .check(&[])
    .assert()
    .code(2)
    .stderr(predicates::str::starts_with(
        // María is UTF-8: the file mixes encodings, and windows-1252 is no fix.
        "error: contacts.csv line 5 is not valid UTF-8, but lines before it are UTF-8 with \
         accented letters: the file mixes two encodings",
    ));
}

#[test]
fn latin1_with_its_encoding_declared_keeps_the_accents() {
    let fx = Fixture::with_contacts(LATIN1);
    fx.write(
        "campaign.toml",
        edit(
            CAMPAIGN,
            "default_region = \"MX\"\n",
            "default_region = \"MX\"\nencoding = \"windows-1252\"\n",
        ),
    );
    fx.check(&[])
        .assert()
        .code(0)
        .stdout(predicates::str::contains(
            "contacts.csv: 2 rows read\neligible 2\n",
        ));
    fx.preview(&["--row", "3"]).assert().code(0).stdout(
        "── line 3 · +525523456789 ──\n\
         Hola José, tu cita es el miércoles.\n\n",
    );
}

#[test]
fn a_utf8_bom_wins_over_a_declared_windows_1252() {
    let fx = Fixture::with_contacts("\u{FEFF}name,phone,date\nJosé,5523456789,miércoles\n");
    fx.write(
        "campaign.toml",
        edit(
            CAMPAIGN,
            "default_region = \"MX\"\n",
            "default_region = \"MX\"\nencoding = \"windows-1252\"\n",
        ),
    );
    fx.preview(&[]).assert().code(0).stdout(
        "── line 2 · +525523456789 ──\n\
         Hola José, tu cita es el miércoles.\n\n",
    );
}

#[test]
fn a_two_megabyte_cell_is_refused_at_its_line() {
    let mut contacts = String::from("name,phone,date\nAna,5512345678,lunes\n");
    contacts.push_str("Luis,5523456789,");
    contacts.push_str(&"x".repeat(2 * 1024 * 1024));
    contacts.push_str("\nEva,5534567890,martes\n");
    Fixture::with_contacts(contacts)
        .check(&[])
        .assert()
        .code(2)
        .stdout("")
        .stderr(
            "error: contacts.csv line 3: a record is longer than 1048576 bytes; look for an \
             unclosed quote (\") on or before this line, or remove the oversized cell\n",
        );
}

#[test]
fn an_unclosed_quote_is_refused_at_the_line_it_opens() {
    let mut contacts = String::from("name,phone,date\nAna,5512345678,lunes\n\"Luis,5523456789,x\n");
    for n in 0..40_000 {
        contacts.push_str(&format!("Row {n},55{n:08},martes\n"));
    }
    Fixture::with_contacts(contacts)
        .check(&[])
        .assert()
        .code(2)
        .stdout("")
        .stderr(
            "error: contacts.csv line 3: a record is longer than 1048576 bytes; look for an \
             unclosed quote (\") on or before this line, or remove the oversized cell\n",
        );
}

/// A stray quote in a file short enough to stay under the record limit: without the
/// check, everything after it read as one cell and `check` counted two contacts.
#[test]
fn an_unclosed_quote_in_a_short_file_is_refused_at_its_line() {
    let mut contacts = String::from("name,phone,date\nAna,5512345678,lunes\n\"Luis,5523456789,x\n");
    for n in 0..1000 {
        contacts.push_str(&format!("Row {n},55{n:08},martes\n"));
    }
    Fixture::with_contacts(contacts)
        .check(&[])
        .assert()
        .code(2)
        .stdout("")
        .stderr(
            "error: contacts.csv line 3: a quote (\") opens a cell here and is never closed, \
             so every line after it would be read as part of that one cell; close the quote \
             (or remove it) and run again\n",
        );
}

/// A 2 GB sparse file (a preallocated or damaged export) is refused from its first
/// mebibyte, as what it is, rather than as UTF-16 text.
#[test]
fn a_sparse_file_is_refused_as_not_text() {
    let fx = Fixture::with_contacts("");
    std::fs::File::options()
        .write(true)
        .open(fx.path("contacts.csv"))
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let started = std::time::Instant::now();
    fx.check(&[]).assert().code(2).stdout("").stderr(
        "error: contacts.csv: 100% NUL bytes in the first MiB: not a text file; check \
             that this is the CSV you meant (a damaged, truncated or preallocated file is \
             mostly zeros)\n",
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "refused without reading the whole file: {:?}",
        started.elapsed()
    );
}

#[test]
fn a_hundred_thousand_columns_are_refused() {
    let mut header: Vec<String> = (0..99_997).map(|n| format!("c{n}")).collect();
    header.extend(["name", "phone", "date"].map(String::from));
    let contacts = format!("{}\nAna,5512345678,lunes\n", header.join(","));
    Fixture::with_contacts(contacts)
        .check(&[])
        .assert()
        .code(2)
        .stdout("")
        .stderr("error: contacts.csv: the header has 100000 columns; at most 1000 are supported\n");
}

// ---- rows: excluded with a reason, the campaign stays valid ----

#[test]
fn a_row_with_fewer_fields_than_the_header_is_malformed() {
    let fx = Fixture::with_contacts(
        "name,phone,date\nAna,5512345678,lunes\nLuis,5523456789\nEva,5534567890,martes,\n",
    );
    assert_eq!(
        excluded_rows(&fx),
        "line,phone,reason_code,reason\n\
         3,5523456789,malformed_row,malformed row: 2 fields where the header has 3\n"
    );
}

#[test]
fn a_phone_with_letters_is_an_invalid_number() {
    let fx = Fixture::with_contacts("name,phone,date\nSofía,55-CALL-NOW,lunes\n");
    assert_eq!(
        excluded_rows(&fx),
        "line,phone,reason_code,reason\n\
         2,55-CALL-NOW,invalid_number,invalid number: phone number `55-CALL-NOW` contains letters\n"
    );
}

#[test]
fn one_number_written_three_ways_is_one_contact() {
    let fx = Fixture::with_contacts(
        "name,phone,date\n\
         Ana,+52 55 1234 5678,lunes\n\
         Ana G,(55) 1234-5678,lunes\n\
         Ana García,0052 55 1234 5678,lunes\n",
    );
    assert_eq!(
        excluded_rows(&fx),
        "line,phone,reason_code,reason\n\
         3,(55) 1234-5678,duplicate,duplicate of row 2\n\
         4,0052 55 1234 5678,duplicate,duplicate of row 2\n"
    );
    fx.check(&[]).assert().code(0).stdout(
        "campaign test-campaign (utility, template appointment_reminder es_MX)\n\
         contacts contacts.csv: 3 rows read\n\
         eligible 1\n\
         excluded 2\n  \
         duplicate          2\n\
         sending  cloud_api at 80 messages/s, about 1s\n\
         in flight up to 100 at once, the most a crash can leave in doubt; the rate holds with answers under 1.25 s\n",
    );
}

#[test]
fn semicolons_and_a_utf8_bom_are_read_as_excel_writes_them() {
    let fx = Fixture::with_contacts(
        "\u{FEFF}name;phone;date\nAna;+52 55 1234 5678;lunes 24\n\"Pérez; Luis\";5523456789;martes\n",
    );
    fx.check(&[])
        .assert()
        .code(0)
        .stdout(predicates::str::contains(
            "contacts contacts.csv: 2 rows read\neligible 2\nexcluded 0\n",
        ));
    fx.preview(&[]).assert().code(0).stdout(
        "── line 2 · +525512345678 ──\n\
         Hola Ana, tu cita es el lunes 24.\n\n\
         ── line 3 · +525523456789 ──\n\
         Hola Pérez; Luis, tu cita es el martes.\n\n",
    );
}

#[test]
fn crlf_and_quoted_newlines_keep_line_numbers_right() {
    let fx = Fixture::with_contacts(
        "name,phone,date\r\n\
         Ana,5512345678,lunes\r\n\
         \"Luis\r\nHernández\",5523456789,martes\r\n\
         \r\n\
         Eva,55-CALL-NOW,jueves\r\n\
         \"Mia\",+52 55 1234 5678,\"viernes\r\n28\"\r\n\
         Zoe,5545678901\r\n",
    );
    assert_eq!(
        excluded_rows(&fx),
        "line,phone,reason_code,reason\n\
         3,5523456789,invalid_value,invalid value: value for {{1}} contains a newline or tab\n\
         6,55-CALL-NOW,invalid_number,invalid number: phone number `55-CALL-NOW` contains letters\n\
         7,'+52 55 1234 5678,duplicate,duplicate of row 2\n\
         9,5545678901,malformed_row,malformed row: 2 fields where the header has 3\n"
    );
}

#[test]
fn the_excluded_file_is_safe_to_open_in_a_spreadsheet() {
    let fx = Fixture::with_contacts(
        "name,phone,date\n\
         Ana,+52 55 1234 5678,lunes\n\
         Ana,+52 1 55 1234 5678,lunes\n\
         Bob,=HYPERLINK(\"http://x\"),lunes\n\
         ,+52 55 2345 6789,lunes\n\
         Luis,-55-CALL-NOW,lunes\n\
         Mia,@SUM(A1),lunes\n",
    );
    // A cell starting with = + - or @ would run as a formula; a leading ' keeps it text.
    assert_eq!(
        excluded_rows(&fx),
        "line,phone,reason_code,reason\n\
         3,'+52 1 55 1234 5678,duplicate,duplicate of row 2\n\
         4,\"'=HYPERLINK(\"\"http://x\"\")\",invalid_number,\"invalid number: phone number `=HYPERLINK(\"\"http://x\"\")` contains letters\"\n\
         5,'+52 55 2345 6789,missing_value,missing value: empty value for {{1}}\n\
         6,'-55-CALL-NOW,invalid_number,invalid number: phone number `-55-CALL-NOW` contains letters\n\
         7,'@SUM(A1),invalid_number,invalid number: phone number `@SUM(A1)` contains letters\n"
    );
}

#[test]
fn the_excluded_file_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let fx = Fixture::with_contacts("name,phone,date\nAna,55-CALL-NOW,lunes\n");
    excluded_rows(&fx);
    let mode = std::fs::metadata(fx.path("excluded.csv"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "it holds customers' phone numbers");
}

#[test]
fn json_output_is_one_check_record_with_the_counts() {
    let fx = Fixture::with_contacts(
        "name,phone,date\n\
         Ana,+52 55 1234 5678,lunes\n\
         Luis,(55) 1234-5678,lunes\n\
         Eva,abc,lunes\n\
         ,,\n\
         Mia,5534567890,martes\n",
    );
    let assert = fx.check(&[]).arg("--json").assert().code(0).stderr("");
    let out = stdout(&assert);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON line: {out}");
    let record: serde_json::Value = serde_json::from_str(lines[0]).expect("valid JSON");
    assert_eq!(record["type"], "check");
    let data = &record["data"];
    assert_eq!(data["campaign"], "test-campaign");
    assert_eq!(data["contacts_file"], "contacts.csv");
    assert_eq!(data["contacts_read"], 4);
    assert_eq!(data["eligible"], 2);
    assert_eq!(data["excluded"], 2);
    assert_eq!(
        data["excluded_by_reason"],
        serde_json::json!({"invalid_number": 1, "duplicate": 1})
    );
    assert_eq!(data["blank_rows"], 1);
    assert_eq!(data["rate_per_second"], 80);
}

#[test]
fn blank_rows_are_counted_in_the_report() {
    let fx = Fixture::with_contacts("name,phone,date\nAna,5512345678,lunes\n,,\n\n , ,\n");
    fx.check(&[]).assert().code(0).stdout(
        "campaign test-campaign (utility, template appointment_reminder es_MX)\n\
         contacts contacts.csv: 1 row read\n\
         eligible 1\n\
         excluded 0\n  \
         (2 blank rows skipped)\n\
         sending  cloud_api at 80 messages/s, about 1s\n\
         in flight up to 100 at once, the most a crash can leave in doubt; the rate holds with answers under 1.25 s\n",
    );
}

// ---- the shipped campaigns, as an operator sees them ----

fn check_shipped(campaign: &str) -> (String, String) {
    let scratch = tempfile::tempdir().unwrap();
    let excluded = scratch.path().join("excluded.csv");
    crate::support::opt_in_everyone(
        &shipped_campaigns().join(campaign),
        &scratch.path().join("wacampaign.db"),
    );
    let assert = wacampaign_in(&shipped_campaigns(), &scratch.path().join("wacampaign.db"))
        .arg("check")
        .arg(campaign)
        .arg("--excluded")
        .arg(&excluded)
        .assert()
        .code(0)
        .stderr("");
    (stdout(&assert), std::fs::read_to_string(&excluded).unwrap())
}

#[test]
fn appointment_reminder_report() {
    let (report, excluded) = check_shipped("appointment-reminder.toml");
    insta::assert_snapshot!("appointment_reminder_report", report);
    insta::assert_snapshot!("appointment_reminder_excluded", excluded);
}

#[test]
fn promotion_report() {
    let (report, excluded) = check_shipped("promotion.toml");
    insta::assert_snapshot!("promotion_report", report);
    insta::assert_snapshot!("promotion_excluded", excluded);
}

#[test]
fn a_malformed_clock_override_is_refused_before_anything_runs() {
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("wacampaign"))
        .args(["check", "campaigns/demo.toml"])
        .env("WACAMPAIGN_NOW", "next tuesday")
        .output()
        .expect("running wacampaign");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("WACAMPAIGN_NOW=`next tuesday` is not an RFC 3339 instant"),
        "{stderr}"
    );
}

/// Meta delivers no marketing templates to US numbers: a marketing campaign leaves
/// them out with the reason, by libphonenumber's region (a Canadian +1 number stays),
/// a utility campaign keeps them, and `sending.us_marketing = true` sends to them.
#[test]
fn us_numbers_are_left_out_of_marketing_campaigns_only() {
    let contacts = "name,phone,date\n\
                    Ana,+1 650 253 0000,lunes\n\
                    Bea,+1 416 979 5000,lunes\n\
                    Cris,+52 55 1234 5678,lunes\n";
    let marketing = edit(
        CAMPAIGN,
        r#"category = "utility""#,
        r#"category = "marketing""#,
    );
    let fx = Fixture::with_contacts(contacts);
    fx.write("campaign.toml", &marketing);
    assert_eq!(
        excluded_rows(&fx),
        "line,phone,reason_code,reason\n\
         2,'+1 650 253 0000,us_marketing,a US number: Meta delivers no marketing templates there (set sending.us_marketing = true if that changes)\n"
    );

    let utility = Fixture::with_contacts(contacts);
    assert_eq!(excluded_rows(&utility), "line,phone,reason_code,reason\n");

    let allowed = Fixture::with_contacts(contacts);
    allowed.write(
        "campaign.toml",
        format!("{marketing}\n[sending]\nus_marketing = true\n"),
    );
    assert_eq!(excluded_rows(&allowed), "line,phone,reason_code,reason\n");
}
