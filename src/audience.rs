//! The audience: which rows of the contacts file a campaign is for.
//!
//! `[audience] where = "…"` is a CEL expression (the Common Expression Language,
//! through the `cel` crate) over the row's columns, which are strings unless
//! `[audience.columns]` declares them numbers or dates. We add the functions
//! marketers need: `today()` and `date(…)` in the campaign's time zone, `days(n)`,
//! `number(…)` and `lower(…)`. A cell that does not convert excludes its row with
//! the reason; an expression that cannot work for any row (a parse error, an
//! unknown column, a date compared with a number) is a campaign error.

use std::collections::BTreeMap;
use std::sync::Arc;

use cel::common::types::{CelDouble, CelInt, CelString, CelTimestamp};
use cel::common::value::CowVal;
use cel::context::VariableResolver;
use cel::extractors::This;
use cel::objects::Value;
use cel::{Context, ExecutionError, Program};
use chrono::{DateTime, FixedOffset, NaiveDate, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use thiserror::Error;

/// How a column's cells are read before the expression sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    String,
    Number,
    Int,
    Date,
}

impl ColumnType {
    pub fn parse(text: &str) -> Result<ColumnType, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "string" | "text" => Ok(ColumnType::String),
            "number" | "double" => Ok(ColumnType::Number),
            "int" | "integer" => Ok(ColumnType::Int),
            "date" => Ok(ColumnType::Date),
            other => Err(format!(
                "`{other}` is not a column type; use \"string\", \"number\", \"int\" or \"date\""
            )),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            ColumnType::String => "string",
            ColumnType::Number => "number",
            ColumnType::Int => "int",
            ColumnType::Date => "date",
        }
    }
}

/// The audience as the campaign file (or `--where`) gives it: checked for syntax,
/// not yet against a header.
#[derive(Debug, Clone)]
pub struct AudienceSpec {
    pub expression: String,
    /// Where it was written, for errors: `campaign.toml:14:9: audience.where` or
    /// `--where`.
    pub origin: String,
    pub columns: BTreeMap<String, ColumnType>,
}

impl PartialEq for AudienceSpec {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression && self.columns == other.columns
    }
}
impl Eq for AudienceSpec {}

impl AudienceSpec {
    /// Parses the expression; `Err` is the parser's message with its position.
    pub fn new(
        expression: &str,
        origin: String,
        columns: BTreeMap<String, ColumnType>,
    ) -> Result<AudienceSpec, String> {
        compile(expression)?;
        Ok(AudienceSpec {
            expression: expression.trim().to_owned(),
            origin,
            columns,
        })
    }
}

/// An audience expression that cannot be applied to this contacts file.
#[derive(Debug, Error)]
#[error("{origin}: {message}")]
pub struct AudienceError {
    pub origin: String,
    pub message: String,
}

fn compile(expression: &str) -> Result<Program, String> {
    if expression.trim().is_empty() {
        return Err(
            "the expression is empty; write one like `city == \"Monterrey\"`, or leave \
             [audience] out to send to every row"
                .into(),
        );
    }
    Program::compile(expression.trim()).map_err(|e| {
        let first = e.errors.first();
        let (line, column) = first.map_or((1, 0), |f| f.pos);
        format!(
            "the expression does not parse at line {line}, column {column} of the expression: {}",
            first.map_or_else(|| e.to_string(), |f| f.msg.clone())
        )
    })
}

/// A compiled audience, bound to a contacts file's header.
pub struct Audience {
    program: Program,
    context: Context<'static, 'static>,
    /// The columns the expression names: (name, index in the row, type).
    columns: Vec<(String, usize, ColumnType)>,
    zone: Tz,
    origin: String,
}

/// Why a row is outside the audience or left out by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    In,
    Out,
    /// A cell did not convert: the row is excluded with this reason.
    Unreadable(String),
}

impl Audience {
    /// Binds the expression to the header: every column it names must be there,
    /// and it must make sense for typed values (a date is not compared with a
    /// number). `now` fixes `today()` for the whole run.
    pub fn new(
        spec: &AudienceSpec,
        headers: &[String],
        zone: Tz,
        now: DateTime<Utc>,
    ) -> Result<Audience, AudienceError> {
        let error = |message: String| AudienceError {
            origin: spec.origin.clone(),
            message,
        };
        let program = compile(&spec.expression).map_err(error)?;
        let mut names: Vec<String> = program
            .references()
            .variables()
            .into_iter()
            .map(str::to_owned)
            .collect();
        names.sort();
        let mut columns = Vec::with_capacity(names.len());
        for name in names {
            let Some(index) = headers.iter().position(|h| h.trim() == name) else {
                return Err(error(format!(
                    "unknown column `{name}` at {}; the contacts file's header has: {}",
                    position_of(&spec.expression, &name),
                    headers.join(", ")
                )));
            };
            let kind = spec
                .columns
                .get(&name)
                .copied()
                .unwrap_or(ColumnType::String);
            columns.push((name, index, kind));
        }
        for declared in spec.columns.keys() {
            if !headers.iter().any(|h| h.trim() == declared) {
                return Err(error(format!(
                    "audience.columns names `{declared}`, which the contacts file's header \
                     lacks; it has: {}",
                    headers.join(", ")
                )));
            }
        }
        let today = midnight(zone, now.with_timezone(&zone).date_naive());
        let audience = Audience {
            program,
            context: context(zone, today, false),
            columns,
            zone,
            origin: spec.origin.clone(),
        };
        audience.probe()?;
        Ok(audience)
    }

    /// Evaluates the expression once with values of the right types, so a type
    /// error is found before any row is judged rather than at the first row that
    /// reaches it.
    fn probe(&self) -> Result<(), AudienceError> {
        let today = midnight(
            self.zone,
            NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or_default(),
        );
        let context = context(self.zone, today, true);
        let values: Vec<Cell<'_>> = self
            .columns
            .iter()
            .map(|(_, _, kind)| match kind {
                ColumnType::String => Cell::Text("0"),
                ColumnType::Number => Cell::Number(0.0),
                ColumnType::Int => Cell::Int(0),
                ColumnType::Date => Cell::Date(today),
            })
            .collect();
        match self.evaluate(&context, &values) {
            Ok(_) => Ok(()),
            // The probe's strings are not real cells: a conversion of one proves nothing.
            Err(e) if is_conversion(&e) => Ok(()),
            Err(e) => Err(self.type_error(&e)),
        }
    }

    fn type_error(&self, e: &ExecutionError) -> AudienceError {
        AudienceError {
            origin: self.origin.clone(),
            message: format!(
                "the expression does not work on these values: {}. Columns are strings \
                 unless [audience.columns] types them ({}); compare numbers with \
                 number(col), dates with date(col), e.g. date(bought_at) >= today() - days(90)",
                describe(e),
                self.columns
                    .iter()
                    .map(|(name, _, kind)| format!("{name}: {}", kind.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// Judges one row (`cells` as the reader split it).
    pub fn judge(&self, cells: &csv::StringRecord) -> Result<Verdict, AudienceError> {
        let mut values = Vec::with_capacity(self.columns.len());
        for (name, index, kind) in &self.columns {
            let cell = cells.get(*index).unwrap_or("").trim();
            let value = match kind {
                ColumnType::String => Cell::Text(cell),
                ColumnType::Number => match parse_number(cell) {
                    Ok(n) => Cell::Number(n),
                    Err(m) => return Ok(Verdict::Unreadable(format!("column `{name}`: {m}"))),
                },
                ColumnType::Int => match cell.parse::<i64>() {
                    Ok(n) => Cell::Int(n),
                    Err(_) => {
                        return Ok(Verdict::Unreadable(format!(
                            "column `{name}`: `{cell}` is not a whole number"
                        )));
                    }
                },
                ColumnType::Date => match parse_date(self.zone, cell) {
                    Ok(d) => Cell::Date(d),
                    Err(m) => return Ok(Verdict::Unreadable(format!("column `{name}`: {m}"))),
                },
            };
            values.push(value);
        }
        match self.evaluate(&self.context, &values) {
            Ok(true) => Ok(Verdict::In),
            Ok(false) => Ok(Verdict::Out),
            Err(e) if is_conversion(&e) => Ok(Verdict::Unreadable(describe(&e))),
            Err(e) => Err(self.type_error(&e)),
        }
    }

    fn evaluate(
        &self,
        context: &Context<'static, 'static>,
        values: &[Cell<'_>],
    ) -> Result<bool, ExecutionError> {
        let vars = RowVars {
            columns: &self.columns,
            values,
        };
        let mut scope = context.new_inner_scope();
        scope.set_variable_resolver(&vars);
        match self.program.execute(&scope)? {
            Value::Bool(b) => Ok(b),
            other => Err(ExecutionError::UnexpectedType {
                got: format!("{:?}", other.type_of()),
                want: "a true/false result".into(),
            }),
        }
    }
}

/// A cell as the expression sees it.
enum Cell<'a> {
    Text(&'a str),
    Number(f64),
    Int(i64),
    Date(DateTime<FixedOffset>),
}

struct RowVars<'a> {
    columns: &'a [(String, usize, ColumnType)],
    values: &'a [Cell<'a>],
}

impl VariableResolver for RowVars<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let at = self.columns.iter().position(|(n, _, _)| n == variable)?;
        Some(match self.values.get(at)? {
            Cell::Text(s) => CowVal::owned(CelString::from(*s)),
            Cell::Number(n) => CowVal::owned(CelDouble::from(*n)),
            Cell::Int(n) => CowVal::owned(CelInt::from(*n)),
            Cell::Date(d) => CowVal::owned(CelTimestamp::from(*d)),
        })
    }
}

/// The functions that turn a cell into a value, whose failure is the row's, not
/// the expression's.
const CONVERSIONS: &[&str] = &["date", "number", "int", "double", "timestamp", "duration"];

fn is_conversion(e: &ExecutionError) -> bool {
    matches!(e, ExecutionError::FunctionError { function, .. } if CONVERSIONS.contains(&function.as_str()))
}

fn describe(e: &ExecutionError) -> String {
    match e {
        ExecutionError::FunctionError { function, message } => format!("{function}(): {message}"),
        other => other.to_string(),
    }
}

/// The root context: CEL's standard library and ours. In `probe` mode the
/// conversions accept anything, so one evaluation checks the types alone.
fn context(zone: Tz, today: DateTime<FixedOffset>, probe: bool) -> Context<'static, 'static> {
    let mut context = Context::default();
    // Registration fails only for a name the standard library already has, which
    // these are not (a test holds that).
    let _ = context.add_function("today", move || Value::Timestamp(today));
    let _ = context.add_function("date", move |v: Value| -> Result<Value, ExecutionError> {
        match v {
            Value::Timestamp(t) => Ok(Value::Timestamp(midnight(
                zone,
                t.with_timezone(&zone).date_naive(),
            ))),
            Value::String(_) if probe => Ok(Value::Timestamp(today)),
            Value::String(s) => parse_date(zone, &s)
                .map(Value::Timestamp)
                .map_err(|m| ExecutionError::function_error("date", m)),
            other => Err(ExecutionError::function_error(
                "date",
                format!("takes a string or a date, not {:?}", other.type_of()),
            )),
        }
    });
    let _ = context.add_function("days", |n: i64| {
        Value::Duration(chrono::Duration::days(n.clamp(-100_000, 100_000)))
    });
    let _ = context.add_function("number", move |v: Value| -> Result<Value, ExecutionError> {
        match v {
            Value::Float(f) => Ok(Value::Float(f)),
            Value::Int(i) => Ok(Value::Float(i as f64)),
            Value::String(_) if probe => Ok(Value::Float(0.0)),
            Value::String(s) => parse_number(&s)
                .map(Value::Float)
                .map_err(|m| ExecutionError::function_error("number", m)),
            other => Err(ExecutionError::function_error(
                "number",
                format!("takes a string or a number, not {:?}", other.type_of()),
            )),
        }
    });
    let _ = context.add_function("lower", |This(s): This<Arc<String>>| s.to_lowercase());
    context
}

fn midnight(zone: Tz, date: NaiveDate) -> DateTime<FixedOffset> {
    let naive = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    // A zone whose clocks skip midnight (a DST change at 00:00) starts the day at
    // the first instant that exists.
    let local = zone
        .from_local_datetime(&naive)
        .earliest()
        .or_else(|| {
            zone.from_local_datetime(&(naive + chrono::Duration::hours(1)))
                .earliest()
        })
        .unwrap_or_else(|| zone.from_utc_datetime(&naive));
    local.with_timezone(&local.offset().fix())
}

/// A date as exports write it: `2026-11-28`, `2026-11-28 10:30[:00]`, RFC 3339, or
/// `28/11/2026` (day first, as in Mexico and most of the world). The time is
/// dropped: `date()` is a day, in the campaign's time zone.
fn parse_date(zone: Tz, text: &str) -> Result<DateTime<FixedOffset>, String> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(midnight(zone, t.with_timezone(&zone).date_naive()));
    }
    let date_part = text.split([' ', 'T']).next().unwrap_or("");
    for pattern in ["%Y-%m-%d", "%d/%m/%Y", "%Y/%m/%d"] {
        if let Ok(d) = NaiveDate::parse_from_str(date_part, pattern) {
            return Ok(midnight(zone, d));
        }
    }
    Err(if text.is_empty() {
        "empty, not a date".to_owned()
    } else {
        format!("`{text}` is not a date (use 2026-11-28, 2026-11-28 10:30 or 28/11/2026)")
    })
}

/// A number as spreadsheets export it: `1234.5`, `1,234.50`, `$1,234`.
fn parse_number(text: &str) -> Result<f64, String> {
    let cleaned: String = text
        .trim()
        .trim_start_matches('$')
        .chars()
        .filter(|c| *c != ',' && *c != '_' && !c.is_whitespace())
        .collect();
    cleaned
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite())
        .ok_or_else(|| {
            if text.trim().is_empty() {
                "empty, not a number".to_owned()
            } else {
                format!("`{}` is not a number", text.trim())
            }
        })
}

/// Where a name first appears in the expression, as "line L, column C".
fn position_of(expression: &str, name: &str) -> String {
    let bytes = expression.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut offset = None;
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if expression[i..].starts_with(name)
                && (i == 0 || !is_ident(bytes[i - 1]))
                && bytes.get(i + name.len()).is_none_or(|b| !is_ident(*b)) =>
            {
                offset = Some(i);
                break;
            }
            None => {}
        }
        i += 1;
    }
    let offset = offset.unwrap_or(0);
    let before = &expression[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column} of the expression")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audience(expression: &str, columns: &[(&str, ColumnType)]) -> Result<Audience, String> {
        let spec = AudienceSpec::new(
            expression,
            "audience.where".into(),
            columns.iter().map(|(n, t)| ((*n).to_owned(), *t)).collect(),
        )?;
        let headers: Vec<String> = ["phone", "city", "total", "bought_at"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        Audience::new(
            &spec,
            &headers,
            chrono_tz::America::Monterrey,
            crate::clock::parse("2026-11-28T18:00:00Z").unwrap(),
        )
        .map_err(|e| e.to_string())
    }

    fn row(cells: &[&str]) -> csv::StringRecord {
        csv::StringRecord::from(cells.to_vec())
    }

    #[test]
    fn two_columns_with_dates_relative_to_today() {
        let a = audience(
            r#"lower(city) == "monterrey" && date(bought_at) >= today() - days(90)"#,
            &[],
        )
        .unwrap();
        assert_eq!(
            a.judge(&row(&["+52", "Monterrey", "1", "2026-10-01"]))
                .unwrap(),
            Verdict::In
        );
        assert_eq!(
            a.judge(&row(&["+52", "MONTERREY", "1", "2026-01-01"]))
                .unwrap(),
            Verdict::Out
        );
        assert_eq!(
            a.judge(&row(&["+52", "Puebla", "1", "2026-11-01"]))
                .unwrap(),
            Verdict::Out
        );
        match a.judge(&row(&["+52", "Monterrey", "1", "ayer"])).unwrap() {
            Verdict::Unreadable(why) => assert!(why.contains("`ayer` is not a date"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn typed_columns_numbers_lists_and_methods() {
        let a = audience(
            r#"total > 100.0 && city in ["Monterrey", "Puebla"] && city.startsWith("M") && !city.contains("x")"#,
            &[("total", ColumnType::Number)],
        )
        .unwrap();
        assert_eq!(
            a.judge(&row(&["+52", "Monterrey", "1,250.00", ""]))
                .unwrap(),
            Verdict::In
        );
        assert_eq!(
            a.judge(&row(&["+52", "Monterrey", "99", ""])).unwrap(),
            Verdict::Out
        );
        assert!(matches!(
            a.judge(&row(&["+52", "Monterrey", "n/a", ""])).unwrap(),
            Verdict::Unreadable(why) if why == "column `total`: `n/a` is not a number"
        ));
        let ints = audience(r#"int(total) >= 3 || number(total) < 0.5"#, &[]).unwrap();
        assert_eq!(ints.judge(&row(&["", "", "4", ""])).unwrap(), Verdict::In);
        assert_eq!(
            ints.judge(&row(&["", "", "0.25", ""])).unwrap(),
            Verdict::In
        );
    }

    #[test]
    fn the_readmes_examples_work() {
        let a = audience(
            r#"city.lower() == "monterrey" && bought_at >= today() - days(90) && city.matches("^Mon") && size(phone) > 0"#,
            &[("bought_at", ColumnType::Date)],
        )
        .unwrap();
        assert_eq!(
            a.judge(&row(&["+52", "Monterrey", "", "2026-11-28 10:30"]))
                .unwrap(),
            Verdict::In
        );
        let tomorrow = audience(
            r#"date(bought_at) == today() + days(1) && date(bought_at) > date("2026-11-01")"#,
            &[],
        )
        .unwrap();
        assert_eq!(
            tomorrow.judge(&row(&["", "", "", "29/11/2026"])).unwrap(),
            Verdict::In
        );
        assert_eq!(
            tomorrow.judge(&row(&["", "", "", "2026-11-28"])).unwrap(),
            Verdict::Out
        );
    }

    #[test]
    fn today_is_the_campaign_zones_date() {
        // 18:00 UTC on the 28th is 12:00 in Monterrey; 03:00 UTC on the 29th is
        // still the 28th there.
        let a = audience(r#"date(bought_at) == today()"#, &[]).unwrap();
        assert_eq!(
            a.judge(&row(&["", "", "", "2026-11-28"])).unwrap(),
            Verdict::In
        );
        let spec =
            AudienceSpec::new("date(bought_at) == today()", "w".into(), BTreeMap::new()).unwrap();
        let late = Audience::new(
            &spec,
            &["bought_at".to_owned()],
            chrono_tz::America::Monterrey,
            crate::clock::parse("2026-11-29T03:00:00Z").unwrap(),
        )
        .unwrap();
        assert_eq!(late.judge(&row(&["2026-11-28"])).unwrap(), Verdict::In);
        assert_eq!(late.judge(&row(&["2026-11-29"])).unwrap(), Verdict::Out);
    }

    #[test]
    fn bad_expressions_are_located_errors() {
        let e = audience(r#"city == "Monterrey" &&"#, &[]).err().unwrap();
        assert!(
            e.contains("does not parse at line 1, column 23 of the expression"),
            "{e}"
        );
        let e = audience(r#"city == "x" && cty == "y""#, &[]).err().unwrap();
        assert!(
            e.contains("unknown column `cty` at line 1, column 16")
                && e.contains("phone, city, total, bought_at"),
            "{e}"
        );
        let e = audience("date(bought_at) > 5", &[]).err().unwrap();
        assert!(e.contains("does not work on these values"), "{e}");
        let e = audience("total > 5", &[("total", ColumnType::Date)])
            .err()
            .unwrap();
        assert!(e.contains("total: date"), "{e}");
        let e = audience("city", &[]).err().unwrap();
        assert!(e.contains("true/false"), "{e}");
    }
}
