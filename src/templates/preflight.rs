//! Pre-flight: the campaign held against the synced template, before anything is
//! sent. Every mismatch names the campaign key and the template component.

use std::fmt;

use thiserror::Error;

use super::{Cache, SyncedTemplate, closest};
use crate::campaign::components::{Media, Part};
use crate::campaign::{Campaign, Category, MessageKind, normalize_language};
use crate::template::{PlaceholderKey, Template};

/// One mismatch between the campaign file and the synced template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The campaign file's key: `template.name`, `template.body`, `campaign.category`...
    pub key: &'static str,
    /// The template's part: `BODY`, `HEADER`, `BUTTONS[0]`, or the template itself.
    pub component: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.key, self.component, self.message)
    }
}

/// Everything that stops the campaign, found together.
#[derive(Debug, Error)]
pub struct PreflightError {
    pub file: String,
    pub account: String,
    pub age: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for PreflightError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: the campaign does not match the template synced from {} {} ago; nothing was sent:",
            self.file, self.account, self.age
        )?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

/// The campaign's mismatches against `cache`; empty when it may be sent.
pub fn check(campaign: &Campaign, cache: &Cache) -> Vec<Problem> {
    if campaign.kind == MessageKind::Session {
        return Vec::new();
    }
    let spec = &campaign.template;
    let mut problems = Vec::new();
    let this = format!("template {}", spec.name);
    let mut named = cache.named(&spec.name).peekable();
    if named.peek().is_none() {
        let names: Vec<&str> = cache.templates.iter().map(|t| t.name.as_str()).collect();
        let suggestions = closest(&spec.name, names);
        let hint = if suggestions.is_empty() {
            "; run `wacampaign templates list` to see the account's templates".to_owned()
        } else {
            format!(
                "; did you mean {}?",
                suggestions
                    .iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        problems.push(Problem {
            key: "template.name",
            component: this,
            message: format!("the account has no template named `{}`{hint}", spec.name),
        });
        return problems;
    }
    for (n, language) in spec.languages.iter().enumerate() {
        let Some(template) = cache.find(&spec.name, language) else {
            let languages: Vec<&str> = cache
                .named(&spec.name)
                .map(|t| t.language.as_str())
                .collect();
            problems.push(Problem {
                key: if n == 0 {
                    "template.language"
                } else {
                    "template.languages"
                },
                component: this.clone(),
                message: format!(
                    "`{}` has no `{language}` translation; it has {}",
                    spec.name,
                    languages.join(", ")
                ),
            });
            continue;
        };
        let here = format!("template {} ({})", template.name, template.language);
        check_standing(campaign, template, &here, &mut problems);
        // The campaign's body is its first language's; the others' come from the sync.
        check_body(campaign, template, n == 0, &mut problems);
        check_components(campaign, template, &mut problems);
    }
    problems
}

/// Status, quality and category: whether Meta lets it go out, and as what.
fn check_standing(
    campaign: &Campaign,
    template: &SyncedTemplate,
    this: &str,
    problems: &mut Vec<Problem>,
) {
    let status_problem = match template.status.as_str() {
        "APPROVED" => None,
        "PENDING" | "IN_APPEAL" | "PENDING_DELETION" => Some(
            "is still in review (status {status}); wait for Meta's decision, then run \
             `wacampaign templates sync`",
        ),
        "REJECTED" => Some(
            "was rejected by Meta (status {status}); edit it in WhatsApp Manager and submit it again",
        ),
        "PAUSED" => Some(
            "is paused by Meta for low quality (status {status}); it may be sent again once Meta \
             lifts the pause; run `wacampaign templates sync` then",
        ),
        "DISABLED" => Some(
            "was disabled by Meta after repeated low quality (status {status}); create a new template",
        ),
        "ARCHIVED" => {
            Some("is archived (status {status}); unarchive it in WhatsApp Manager and sync again")
        }
        _ => Some("has status {status}, not APPROVED; only approved templates can be sent"),
    };
    if let Some(message) = status_problem {
        problems.push(Problem {
            key: "template.name",
            component: this.to_owned(),
            message: format!(
                "`{}` {}",
                template.name,
                message.replace("{status}", &template.status)
            ),
        });
    }
    if template.quality.as_deref() == Some("RED") {
        problems.push(Problem {
            key: "template.name",
            component: this.to_owned(),
            message: format!(
                "`{}` has RED quality: customers are blocking or reporting it and Meta may pause \
                 it at the next send; improve the template (or its audience) before sending",
                template.name
            ),
        });
    }
    let approved_as = match template.category.as_str() {
        "MARKETING" => Some(Category::Marketing),
        "UTILITY" => Some(Category::Utility),
        "AUTHENTICATION" => Some(Category::Authentication),
        _ => None,
    };
    if approved_as != Some(campaign.category) {
        let consent = |c: Option<Category>| match c {
            Some(Category::Marketing) => "a marketing opt-in",
            Some(Category::Utility | Category::Authentication) => "a utility opt-in",
            None => "an unknown opt-in",
        };
        problems.push(Problem {
            key: "campaign.category",
            component: this.to_owned(),
            message: format!(
                "the campaign says `{}` but Meta approved `{}` as {}: it is priced as {} and \
                 needs {} from each contact (the campaign checks for {}); set campaign.category \
                 = \"{}\" if that is what you mean to send",
                campaign.category,
                template.name,
                template.category,
                template.category.to_ascii_lowercase(),
                consent(approved_as),
                consent(Some(campaign.category)),
                template.category.to_ascii_lowercase(),
            ),
        });
    }
}

/// Parameter format and count, and the text once placeholder spellings and
/// surrounding whitespace are normalised.
fn check_body(
    campaign: &Campaign,
    template: &SyncedTemplate,
    compare_text: bool,
    problems: &mut Vec<Problem>,
) {
    let spec = &campaign.template;
    let component = format!("BODY of {} ({})", template.name, template.language);
    let Some(approved_text) = template.body_text() else {
        problems.push(Problem {
            key: "template.body",
            component,
            message: "the synced template has no BODY component".into(),
        });
        return;
    };
    let approved = match Template::parse(approved_text) {
        Ok(t) => t,
        Err(e) => {
            problems.push(Problem {
                key: "template.body",
                component,
                message: format!("the approved body cannot be read: {e}"),
            });
            return;
        }
    };
    let ours = spec.body.placeholders();
    let theirs = approved.placeholders();
    let format = template.parameter_format();
    if !ours.is_empty() && (format == "NAMED") != spec.body.is_named() {
        problems.push(Problem {
            key: "template.body",
            component: component.clone(),
            message: format!(
                "the template's parameters are {format}, the campaign's are {}; write them as \
                 the approved body does: {}",
                if spec.body.is_named() {
                    "NAMED"
                } else {
                    "POSITIONAL"
                },
                approved_text
            ),
        });
        return;
    }
    let missing: Vec<String> = theirs
        .iter()
        .filter(|k| !ours.contains(k))
        .map(PlaceholderKey::to_string)
        .collect();
    let extra: Vec<String> = ours
        .iter()
        .filter(|k| !theirs.contains(k))
        .map(PlaceholderKey::to_string)
        .collect();
    if !extra.is_empty() {
        problems.push(Problem {
            key: "template.variables",
            component: component.clone(),
            message: format!(
                "the campaign gives {} value(s) the template lacks: {} (the template has {} \
                 parameter(s){}); remove them",
                extra.len(),
                extra.join(", "),
                theirs.len(),
                list(theirs)
            ),
        });
    }
    if !missing.is_empty() {
        problems.push(Problem {
            key: "template.variables",
            component: component.clone(),
            message: format!(
                "the template has {} parameter(s) with no value source: {}; add each to \
                 [template.variables] and to template.body",
                missing.len(),
                missing.join(", ")
            ),
        });
    }
    let normalized = |t: &Template| {
        t.render(
            &t.placeholders()
                .iter()
                .map(PlaceholderKey::to_string)
                .collect::<Vec<_>>(),
        )
        .trim()
        .to_owned()
    };
    let (ours_text, theirs_text) = (normalized(&spec.body), normalized(&approved));
    if compare_text && extra.is_empty() && missing.is_empty() && ours_text != theirs_text {
        problems.push(Problem {
            key: "template.body",
            component,
            message: format!(
                "differs from the approved text; customers get the approved one. Copy it into \
                 the campaign file, or leave template.body out to use it as synced.\n      \
                 campaign: {ours_text:?}\n      approved: {theirs_text:?}"
            ),
        });
    }
}

fn list(keys: &[PlaceholderKey]) -> String {
    if keys.is_empty() {
        String::new()
    } else {
        format!(
            ": {}",
            keys.iter()
                .map(PlaceholderKey::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// The header and buttons: every one that needs a value has a source of the
/// right kind in the campaign, and every part the campaign gives has its place.
fn check_components(campaign: &Campaign, template: &SyncedTemplate, problems: &mut Vec<Problem>) {
    let parts = &campaign.template.parts;
    let header_part = parts.iter().find(|p| p.part.button_index().is_none());
    let header = template.header();
    let component = |what: String| format!("{what} of {} ({})", template.name, template.language);
    match (&header, header_part) {
        (Some(h), None) if template.header_needs_parameter() => problems.push(Problem {
            key: "template.header",
            component: component(format!("HEADER ({})", h.format)),
            message: format!(
                "the template's {} header needs a value in every message; add [template.header] \
                 with type = \"{}\"",
                h.format.to_ascii_lowercase(),
                h.format.to_ascii_lowercase()
            ),
        }),
        (Some(h), Some(part)) => {
            let expected = match &part.part {
                Part::HeaderText => "TEXT",
                Part::HeaderMedia { media, .. } => match media {
                    Media::Image => "IMAGE",
                    Media::Video => "VIDEO",
                    Media::Document => "DOCUMENT",
                },
                _ => "LOCATION",
            };
            if h.format != expected {
                problems.push(Problem {
                    key: "template.header",
                    component: component(format!("HEADER ({})", h.format)),
                    message: format!(
                        "the campaign gives a {} header, the template has a {} one",
                        expected.to_ascii_lowercase(),
                        h.format.to_ascii_lowercase()
                    ),
                });
            } else if !template.header_needs_parameter() {
                problems.push(Problem {
                    key: "template.header",
                    component: component(format!("HEADER ({})", h.format)),
                    message: "the template's header has no variable; remove [template.header]"
                        .into(),
                });
            }
        }
        (None, Some(_)) => problems.push(Problem {
            key: "template.header",
            component: component("HEADER".into()),
            message: "the template has no header; remove [template.header]".into(),
        }),
        _ => {}
    }
    let buttons = template.buttons();
    for (index, button) in buttons.iter().enumerate() {
        let given = parts
            .iter()
            .find(|p| p.part.button_index() == Some(index as u8));
        let where_ = component(format!(
            "BUTTONS[{index}] ({} \"{}\")",
            button.kind, button.text
        ));
        let wanted = match button.kind.as_str() {
            "URL" => "url",
            "QUICK_REPLY" => "quick_reply",
            "COPY_CODE" => "copy_code",
            "OTP" => "otp",
            _ => "",
        };
        match given {
            None if button.needs_parameter() => problems.push(Problem {
                key: "template.buttons",
                component: where_,
                message: format!(
                    "the button needs a value in every message; add [[template.buttons]] with \
                     index = {index} and type = \"{wanted}\""
                ),
            }),
            Some(part) => {
                let given_kind = match part.part {
                    Part::ButtonUrl { .. } => "url",
                    Part::ButtonQuickReply { .. } => "quick_reply",
                    Part::ButtonCopyCode { .. } => "copy_code",
                    _ => "otp",
                };
                // An authentication template's one-time password goes on its URL
                // button (Meta lists it as OTP or URL).
                let fits = given_kind == wanted
                    || (given_kind == "otp" && wanted == "url")
                    || (given_kind == "url" && wanted == "otp");
                if !fits {
                    problems.push(Problem {
                        key: "template.buttons",
                        component: where_,
                        message: format!(
                            "the campaign gives a {given_kind} value for button {index}, which is a {} button",
                            button.kind.to_ascii_lowercase()
                        ),
                    });
                } else if given_kind == "url" && !button.needs_parameter() {
                    problems.push(Problem {
                        key: "template.buttons",
                        component: where_,
                        message: "the button's URL has no variable suffix; remove its [[template.buttons]] entry".into(),
                    });
                }
            }
            None => {}
        }
    }
    for part in parts {
        if let Some(index) = part.part.button_index()
            && usize::from(index) >= buttons.len()
        {
            problems.push(Problem {
                key: "template.buttons",
                component: component(format!("BUTTONS[{index}]")),
                message: format!(
                    "{}: the template has {} button(s), so no button {index}",
                    part.key,
                    buttons.len()
                ),
            });
        }
    }
}

/// Whether `code` is one of the languages of the campaign (for `templates show`).
pub fn same_language(a: &str, b: &str) -> bool {
    normalize_language(a) == normalize_language(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const CAMPAIGN: &str = r#"
[campaign]
category = "utility"
contacts = "contacts.csv"
phone_column = "phone"

[template]
name = "appointment_reminder"
language = "es_MX"
body = "  Hola <<1>>, tu cita es el {{2}}. "

[template.variables]
"1" = { column = "name" }
"2" = { column = "date" }

[provider]
kind = "cloud_api"
phone_number_id = "1"
waba_id = "2"
"#;

    fn cache(body: &str, status: &str, category: &str) -> Cache {
        Cache {
            account: "waba:2".into(),
            origin: "test".into(),
            synced_at: crate::clock::now(),
            templates: vec![SyncedTemplate {
                id: None,
                name: "appointment_reminder".into(),
                language: "es_MX".into(),
                status: status.into(),
                category: category.into(),
                quality: Some("GREEN".into()),
                parameter_format: Some("POSITIONAL".into()),
                components: vec![serde_json::json!({"type": "BODY", "text": body})],
            }],
        }
    }

    fn campaign(text: &str) -> Campaign {
        Campaign::parse(text, Path::new("c.toml")).unwrap()
    }

    #[test]
    fn spelling_and_surrounding_whitespace_do_not_count() {
        let c = campaign(CAMPAIGN);
        let problems = check(
            &c,
            &cache("Hola {{1}}, tu cita es el {{2}}.", "APPROVED", "UTILITY"),
        );
        assert_eq!(problems, []);
    }

    #[test]
    fn another_text_shows_both() {
        let c = campaign(CAMPAIGN);
        let problems = check(
            &c,
            &cache("Hola {{1}}, su cita es el {{2}}.", "APPROVED", "UTILITY"),
        );
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.contains("su cita"), "{}", problems[0]);
        assert!(problems[0].message.contains("tu cita"), "{}", problems[0]);
    }

    #[test]
    fn paused_and_another_category_are_both_reported() {
        let c = campaign(CAMPAIGN);
        let problems = check(
            &c,
            &cache("Hola {{1}}, tu cita es el {{2}}.", "PAUSED", "MARKETING"),
        );
        let keys: Vec<_> = problems.iter().map(|p| p.key).collect();
        assert_eq!(keys, ["template.name", "campaign.category"]);
        assert!(problems[1].message.contains("needs a marketing opt-in"));
    }

    #[test]
    fn fewer_parameters_in_the_template_is_a_count_mismatch() {
        let c = campaign(CAMPAIGN);
        let problems = check(&c, &cache("Hola {{1}}.", "APPROVED", "UTILITY"));
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].message.contains("lacks: {{2}}"),
            "{}",
            problems[0]
        );
    }
}
