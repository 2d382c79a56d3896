//! Property tests where untrusted bytes come in: the contacts CSV (exported by
//! anyone's CRM), template bodies (typed by hand), and webhook bodies (anyone can
//! POST; parsing runs on signed bodies, but Meta's and Twilio's shapes change).
//!
//! They run on stable Rust with every `cargo test`, at a case count that keeps the
//! module to a few seconds on a loaded 2-core machine; `PROPTEST_CASES=100000 cargo
//! test --test integration fuzz::` runs them longer. Inputs are capped in size, so
//! "finishes" also means "in bounded time and memory".

use std::io::Write as _;

use proptest::prelude::*;
use proptest::test_runner::Config;
use sha2::{Digest, Sha256};

use wacampaign::campaign::Encoding;
use wacampaign::contacts::{ContactReader, ContactsError, MAX_RECORD_BYTES, Row};
use wacampaign::template::{MAX_BODY_CHARS, Template};
use wacampaign::webhook::{Event, OptOutRules, meta, twilio};

/// `cases` unless `PROPTEST_CASES` says otherwise (proptest's default config reads it).
fn config(cases: u32) -> Config {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    // A failure is reported with its minimal input; no regression files are
    // written into the source tree from CI.
    config.failure_persistence = None;
    config
}

// ---- contacts CSV ----

/// Everything the reader does with a file: open, then read every row. Returns the
/// rows, or the error that stopped it.
fn read_all(bytes: &[u8], delimiter: Option<u8>, encoding: Encoding) -> Result<Vec<Row>, String> {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(bytes).unwrap();
    file.flush().unwrap();
    let mut reader =
        ContactReader::open_path(file.path(), delimiter, encoding).map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    loop {
        let mut row = Row::default();
        match reader.read_row(&mut row) {
            Ok(true) => rows.push(row),
            Ok(false) => return Ok(rows),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Bytes that look like a CSV more often than uniform noise does.
fn csvish_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b",".to_vec()),
        Just(b";".to_vec()),
        Just(b"\t".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"\"\"".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\xEF\xBB\xBF".to_vec()),
        Just(b"\xFF\xFE".to_vec()),
        Just(b"\0".to_vec()),
        Just("José".as_bytes().to_vec()),
        Just(b"\xe9\x80".to_vec()),
        Just(b"+52 55 1234 5678".to_vec()),
        "[a-z ]{1,6}".prop_map(String::into_bytes),
        any::<u8>().prop_map(|b| vec![b]),
    ];
    proptest::collection::vec(piece, 0..200).prop_map(|pieces| pieces.concat())
}

fn encoding() -> impl Strategy<Value = Encoding> {
    prop_oneof![Just(Encoding::Utf8), Just(Encoding::Windows1252)]
}

fn delimiter() -> impl Strategy<Value = Option<u8>> {
    prop_oneof![
        Just(None),
        Just(Some(b',')),
        Just(Some(b';')),
        Just(Some(b'\t'))
    ]
}

/// A cell as people type them: quotes, delimiters, line breaks, accents, emoji.
fn cell() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-zA-Z0-9 \"',;\t\r\néñ😀+-]{0,12}").unwrap()
}

proptest! {
    #![proptest_config(config(256))]

    /// Any bytes, with any delimiter and encoding: an error or rows, never a panic,
    /// and each row's line within the file.
    #[test]
    fn the_contacts_reader_survives_any_bytes(
        bytes in prop_oneof![csvish_bytes(), proptest::collection::vec(any::<u8>(), 0..2048)],
        delimiter in delimiter(),
        encoding in encoding(),
    ) {
        if let Ok(rows) = read_all(&bytes, delimiter, encoding) {
            let lines = bytes.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
            for row in &rows {
                prop_assert!((1..=lines).contains(&row.line), "row at line {} of {lines}", row.line);
                prop_assert!(!row.is_blank());
            }
        }
    }

    /// A file the `csv` crate writes (any delimiter the reader detects, cells with
    /// quotes and line breaks) reads back as the same rows, each at the line it
    /// starts on.
    #[test]
    fn a_csv_written_by_the_csv_crate_reads_back_the_same(
        columns in 2usize..5,
        delimiter in prop_oneof![Just(b','), Just(b';'), Just(b'\t')],
        crlf in any::<bool>(),
        rows in proptest::collection::vec(proptest::collection::vec(cell(), 4), 0..12),
    ) {
        let header: Vec<String> = (0..columns).map(|i| format!("col_{i}")).collect();
        let rows: Vec<Vec<String>> = rows.into_iter().map(|mut r| { r.truncate(columns); r }).collect();
        let mut writer = csv::WriterBuilder::new()
            .delimiter(delimiter)
            .terminator(if crlf { csv::Terminator::CRLF } else { csv::Terminator::Any(b'\n') })
            .from_writer(Vec::new());
        writer.write_record(&header).unwrap();
        writer.flush().unwrap();
        let mut expected = Vec::new();
        for row in &rows {
            let starts_at = writer.get_ref().iter().filter(|&&b| b == b'\n').count() as u64 + 1;
            writer.write_record(row).unwrap();
            writer.flush().unwrap();
            // The reader skips rows of blank cells: they are no one.
            if row.iter().any(|cell| !cell.trim().is_empty()) {
                expected.push((starts_at, row.clone()));
            }
        }
        let bytes = writer.into_inner().unwrap();

        let read = read_all(&bytes, None, Encoding::Utf8).map_err(TestCaseError::fail)?;
        let read: Vec<(u64, Vec<String>)> = read
            .iter()
            .map(|row| (row.line, row.record.iter().map(str::to_owned).collect()))
            .collect();
        prop_assert_eq!(read, expected, "file: {:?}", String::from_utf8_lossy(&bytes));
    }
}

proptest! {
    // Each case reads a megabyte: a few are enough to show the limit holds wherever
    // the runaway quote starts, however many cases the others run.
    #![proptest_config(Config { cases: 4, ..config(4) })]

    /// An unclosed quote cannot make the reader buffer the rest of the file: it
    /// stops at the record limit and names the line the record started on.
    #[test]
    fn a_runaway_quote_stops_at_the_record_limit(
        rows_before in 0usize..20,
        filler in prop_oneof![Just(b'x'), Just(b','), Just(b'\n')],
    ) {
        let mut bytes = b"name,phone\n".to_vec();
        for i in 0..rows_before {
            bytes.extend_from_slice(format!("n{i},+5255{i:08}\n").as_bytes());
        }
        bytes.extend_from_slice(b"\"unclosed,");
        bytes.resize(bytes.len() + MAX_RECORD_BYTES + 10, filler);
        let failed = read_all(&bytes, None, Encoding::Utf8);
        let line = rows_before + 2;
        let expected = ContactsError::RecordTooLong { path: String::new(), line: line as u64 }
            .to_string();
        let expected = expected.trim_start();
        match failed {
            Err(message) => prop_assert!(message.ends_with(expected), "{message}"),
            Ok(rows) => prop_assert!(false, "read {} rows past an unclosed quote", rows.len()),
        }
    }
}

// ---- template bodies ----

/// Bodies made of the pieces that matter to the parser, and some that do not.
fn template_body() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("{{".to_owned()),
        Just("}}".to_owned()),
        Just("<<".to_owned()),
        Just(">>".to_owned()),
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("\n".to_owned()),
        Just("{{1}}".to_owned()),
        Just("{{2}}".to_owned()),
        Just("<<3>>".to_owned()),
        Just("{{0}}".to_owned()),
        Just("{{4294967296}}".to_owned()),
        Just("{{first_name}}".to_owned()),
        Just("<<date>>".to_owned()),
        "[0-9a-z_ ]{1,5}",
        "\\PC{1,3}",
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(config(2000))]

    /// Any body parses or is refused with an error that says where; one that
    /// parses renders with exactly one value per placeholder, every value appears,
    /// no placeholder is left, and the length it predicts is the length it renders.
    #[test]
    fn a_template_that_parses_renders_every_value(
        body in prop_oneof![template_body(), "\\PC{0,300}"],
    ) {
        let Ok(template) = Template::parse(&body) else {
            return Ok(());
        };
        let values: Vec<String> = (0..template.placeholders().len())
            .map(|i| format!("\u{1}{i}\u{2}"))
            .collect();
        let rendered = template.render(&values);
        for value in &values {
            prop_assert!(rendered.contains(value.as_str()), "{value:?} missing from {rendered:?}");
        }
        prop_assert!(!rendered.contains("{{") && !rendered.contains("<<"), "{rendered:?}");
        prop_assert_eq!(template.rendered_chars(&values), rendered.chars().count());
        prop_assert_eq!(
            template.check_values(&values).is_ok(),
            rendered.chars().count() <= MAX_BODY_CHARS
        );
    }

    /// Written with `{{ }}` only, a body renders back to itself when each value is
    /// its own placeholder: nothing is dropped, duplicated or reordered.
    #[test]
    fn a_curly_template_renders_back_to_its_body(
        body in template_body().prop_map(|body| body.replace('<', "[")),
    ) {
        if let Ok(template) = Template::parse(&body) {
            let own: Vec<String> = template.placeholders().iter().map(ToString::to_string).collect();
            prop_assert_eq!(template.render(&own), body);
        }
    }
}

// ---- webhook bodies ----

/// JSON shaped like Meta's webhooks, with every field sometimes missing, of the
/// wrong type, empty or absurd.
fn meta_json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
    let scalar = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        Just(json!(i64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(1.5e300)),
        Just(json!("99999999999999999999")),
        Just(json!("1700000000")),
        Just(json!("16505551234")),
        Just(json!("+52 1 55 1234 5678")),
        Just(json!("STOP")),
        Just(json!("stop")),
        Just(json!("resume")),
        Just(json!("marketing_messages")),
        Just(json!("failed")),
        Just(json!("delivered")),
        Just(json!("user_changed_number")),
        Just(json!(131_050)),
        "\\PC{0,8}".prop_map(Value::from),
    ];
    let keys = prop_oneof![
        Just("object"),
        Just("entry"),
        Just("changes"),
        Just("field"),
        Just("value"),
        Just("statuses"),
        Just("messages"),
        Just("contacts"),
        Just("user_preferences"),
        Just("id"),
        Just("status"),
        Just("timestamp"),
        Just("recipient_id"),
        Just("biz_opaque_callback_data"),
        Just("errors"),
        Just("code"),
        Just("title"),
        Just("from"),
        Just("type"),
        Just("text"),
        Just("body"),
        Just("button"),
        Just("payload"),
        Just("interactive"),
        Just("context"),
        Just("system"),
        Just("wa_id"),
        Just("new_wa_id"),
        Just("category"),
        Just("metadata"),
    ];
    scalar.prop_recursive(5, 96, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::vec((keys.clone(), inner), 0..6).prop_map(|fields| {
                Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

/// A well-formed envelope around a generated value, so the parser gets past the
/// top level and into the statuses and messages.
fn meta_payload() -> impl Strategy<Value = serde_json::Value> {
    (
        meta_json(),
        prop_oneof![
            Just("messages".to_owned()),
            Just("user_preferences".to_owned()),
            "[a-z_]{0,8}"
        ],
    )
        .prop_map(|(value, field)| {
            serde_json::json!({
                "object": "whatsapp_business_account",
                "entry": [{ "id": "1", "changes": [{ "field": field, "value": value }] }]
            })
        })
}

fn twilio_form() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = prop_oneof![
        Just("MessageSid"),
        Just("SmsSid"),
        Just("MessageStatus"),
        Just("SmsStatus"),
        Just("From"),
        Just("To"),
        Just("Body"),
        Just("ButtonPayload"),
        Just("OptOutType"),
        Just("NumMedia"),
        Just("ErrorCode"),
        Just("ErrorMessage"),
        Just("OriginalRepliedMessageSid"),
    ]
    .prop_map(str::to_owned);
    let value = prop_oneof![
        Just("SM0123456789abcdef0123456789abcdef".to_owned()),
        Just("whatsapp:+5215512345678".to_owned()),
        Just("whatsapp:".to_owned()),
        Just("+".to_owned()),
        Just("99999999999999999999".to_owned()),
        Just("received".to_owned()),
        Just("delivered".to_owned()),
        Just("undelivered".to_owned()),
        Just("STOP".to_owned()),
        Just("63016".to_owned()),
        Just("-1".to_owned()),
        "\\PC{0,10}",
    ];
    proptest::collection::vec((name, value), 0..10)
}

proptest! {
    #![proptest_config(config(1000))]

    /// Meta: any bytes, and JSON in Meta's shape with anything in its fields, come
    /// back as a delivery keyed by the body's hash: events, or kept as unreadable.
    #[test]
    fn the_meta_parser_survives_any_body(
        body in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..512),
            meta_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
            meta_payload().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        ],
        header in proptest::option::of("\\PC{0,80}"),
    ) {
        let _ = meta::signature_valid(b"secret", &body, header.as_deref());
        let rules = OptOutRules::default();
        let delivery = meta::parse(body.clone(), &rules, "2026-01-01T00:00:00Z");
        prop_assert_eq!(&delivery.body, &body);
        prop_assert_eq!(&delivery.body_sha256, &hex::encode(Sha256::digest(&body)));
        if delivery.unreadable.is_some() {
            prop_assert!(delivery.events.is_empty());
        }
        // No event is made from nothing: each needs at least an object in the body.
        let objects = body.iter().filter(|&&b| b == b'{').count();
        prop_assert!(delivery.events.len() <= objects, "{} events from {objects} objects", delivery.events.len());
    }

    /// Twilio: any form body, and forms of Twilio's parameters with anything in
    /// them, give at most one event (a callback is about one message).
    #[test]
    fn the_twilio_parser_survives_any_form(
        body in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..512),
            twilio_form().prop_map(|params| {
                form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(params)
                    .finish()
                    .into_bytes()
            }),
        ],
        callback in proptest::option::of("\\PC{0,20}"),
        header in proptest::option::of("\\PC{0,40}"),
    ) {
        let params = twilio::form_params(&body);
        let _ = twilio::signature_valid(b"token", "https://h.example/webhook/twilio", &params, header.as_deref());
        let rules = OptOutRules::default();
        let delivery = twilio::parse(body.clone(), &params, callback, &rules, "2026-01-01T00:00:00Z");
        prop_assert_eq!(&delivery.body_sha256, &hex::encode(Sha256::digest(&body)));
        prop_assert!(delivery.events.len() <= 1);
        prop_assert_eq!(delivery.unreadable.is_some(), delivery.events.is_empty());
        if let Some(Event::Inbound(inbound)) = delivery.events.first() {
            prop_assert!(!inbound.message_id.is_empty());
        }
    }
}
