//! The synced template store: every template of an account as Meta approved it,
//! read by `templates sync` (or loaded by `templates import`), kept in the database
//! with the time of the sync, and what pre-flight holds a campaign against.
//!
//! A template here is Meta's own shape (`name`, `language`, `status`, `category`,
//! `quality_score`, `parameter_format`, `components`): the components are kept as
//! the account answered them, and read through the accessors below.

pub mod account;
pub mod answer;
pub mod preflight;
pub mod store;
pub mod sync;
pub mod view;

use serde::Serialize;
use serde_json::Value;

pub use account::Account;
pub use answer::{AnswerError, Page};
pub use store::Cache;

/// One template in one language, as the account holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncedTemplate {
    pub id: Option<String>,
    pub name: String,
    pub language: String,
    /// APPROVED, PENDING, REJECTED, PAUSED, DISABLED, ARCHIVED, ...
    pub status: String,
    /// MARKETING, UTILITY or AUTHENTICATION.
    pub category: String,
    /// GREEN, YELLOW, RED or UNKNOWN.
    pub quality: Option<String>,
    /// POSITIONAL or NAMED.
    pub parameter_format: Option<String>,
    pub components: Vec<Value>,
}

/// A template's header, as a customer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// TEXT, IMAGE, VIDEO, DOCUMENT or LOCATION.
    pub format: String,
    pub text: Option<String>,
}

/// One button, in the order the template lists them (its send index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Button {
    /// QUICK_REPLY, URL, PHONE_NUMBER, COPY_CODE, OTP, FLOW, ...
    pub kind: String,
    pub text: String,
    pub url: Option<String>,
}

impl Button {
    /// Whether a message must give this button a value: a URL with a variable
    /// suffix, a copy code, a one-time password.
    pub fn needs_parameter(&self) -> bool {
        match self.kind.as_str() {
            "URL" => self.url.as_deref().is_some_and(|u| u.contains("{{")),
            "COPY_CODE" | "OTP" => true,
            _ => false,
        }
    }
}

fn kind_of(component: &Value) -> String {
    component
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_ascii_uppercase()
}

impl SyncedTemplate {
    fn component(&self, kind: &str) -> Option<&Value> {
        self.components.iter().find(|c| kind_of(c) == kind)
    }

    /// The approved body text, with its placeholders as Meta spells them.
    pub fn body_text(&self) -> Option<&str> {
        self.component("BODY")?.get("text")?.as_str()
    }

    pub fn header(&self) -> Option<Header> {
        let header = self.component("HEADER")?;
        Some(Header {
            format: header
                .get("format")
                .and_then(Value::as_str)
                .unwrap_or("TEXT")
                .to_ascii_uppercase(),
            text: header
                .get("text")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }

    pub fn footer_text(&self) -> Option<&str> {
        self.component("FOOTER")?.get("text")?.as_str()
    }

    pub fn buttons(&self) -> Vec<Button> {
        self.component("BUTTONS")
            .and_then(|c| c.get("buttons"))
            .and_then(Value::as_array)
            .map(|buttons| {
                buttons
                    .iter()
                    .map(|b| Button {
                        kind: kind_of(b),
                        text: b
                            .get("text")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        url: b.get("url").and_then(Value::as_str).map(str::to_owned),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// POSITIONAL or NAMED: as the account says, else as the body's placeholders are
    /// written (Meta leaves the field out for templates made before it existed,
    /// which are positional).
    pub fn parameter_format(&self) -> &str {
        match self.parameter_format.as_deref() {
            Some(f) if f.eq_ignore_ascii_case("named") => "NAMED",
            Some(_) => "POSITIONAL",
            None => match self
                .body_text()
                .and_then(|b| crate::template::Template::parse(b).ok())
            {
                Some(t) if t.is_named() => "NAMED",
                _ => "POSITIONAL",
            },
        }
    }

    /// Whether the header needs a value per message: a text header with a variable,
    /// or any media or location header.
    pub fn header_needs_parameter(&self) -> bool {
        self.header().is_some_and(|h| match h.format.as_str() {
            "TEXT" => h.text.is_some_and(|t| t.contains("{{")),
            _ => true,
        })
    }
}

/// The names among `candidates` closest to `name` (by edit distance), best first,
/// for "did you mean".
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut scored: Vec<(usize, &str)> = candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, c)| *d <= (name.len().max(c.len()) / 2).max(2))
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(3).map(|(_, c)| c).collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template(components: Value) -> SyncedTemplate {
        SyncedTemplate {
            id: None,
            name: "t".into(),
            language: "es_MX".into(),
            status: "APPROVED".into(),
            category: "MARKETING".into(),
            quality: None,
            parameter_format: None,
            components: serde_json::from_value(components).unwrap(),
        }
    }

    #[test]
    fn language_spellings_are_one_language() {
        assert_eq!(
            crate::campaign::normalize_language("es-MX"),
            crate::campaign::normalize_language("ES_mx")
        );
        assert_ne!(
            crate::campaign::normalize_language("es_MX"),
            crate::campaign::normalize_language("es_ES")
        );
    }

    #[test]
    fn closest_names_come_first_and_far_ones_are_left_out() {
        let names = [
            "appointment_reminder",
            "order_ready",
            "appointment_reminders",
        ];
        assert_eq!(
            closest("apointment_reminder", names),
            vec!["appointment_reminder", "appointment_reminders"]
        );
        assert!(closest("zzz", names).is_empty());
    }

    #[test]
    fn components_are_read_whatever_their_case() {
        let t = template(json!([
            {"type": "header", "format": "image"},
            {"type": "BODY", "text": "Hola {{name}}"},
            {"type": "FOOTER", "text": "Aurora"},
            {"type": "BUTTONS", "buttons": [
                {"type": "URL", "text": "Ver", "url": "https://x.example/{{1}}"},
                {"type": "QUICK_REPLY", "text": "Baja"}
            ]}
        ]));
        assert_eq!(t.header().unwrap().format, "IMAGE");
        assert!(t.header_needs_parameter());
        assert_eq!(t.body_text(), Some("Hola {{name}}"));
        assert_eq!(t.parameter_format(), "NAMED");
        let buttons = t.buttons();
        assert!(buttons[0].needs_parameter());
        assert!(!buttons[1].needs_parameter());
    }
}
