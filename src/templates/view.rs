//! A template as a customer sees it, and its parameters, for `templates show` and
//! `templates list`.

use std::fmt::Write as _;

use super::SyncedTemplate;

/// Header, body, footer and buttons as the chat draws them, then the parameters a
/// message must fill.
pub fn render(template: &SyncedTemplate) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} ({}) · {} · {} · quality {} · {} parameters",
        template.name,
        template.language,
        template.category,
        template.status,
        template.quality.as_deref().unwrap_or("UNKNOWN"),
        template.parameter_format(),
    );
    let _ = writeln!(out, "┌──");
    if let Some(header) = template.header() {
        match (header.format.as_str(), header.text) {
            ("TEXT", Some(text)) => {
                let _ = writeln!(out, "│ *{text}*");
            }
            (format, _) => {
                let _ = writeln!(out, "│ [{}]", format.to_ascii_lowercase());
            }
        }
    }
    for line in template.body_text().unwrap_or("(no body)").lines() {
        let _ = writeln!(out, "│ {line}");
    }
    if let Some(footer) = template.footer_text() {
        let _ = writeln!(out, "│ _{footer}_");
    }
    for button in template.buttons() {
        let target = button
            .url
            .as_deref()
            .map(|u| format!(" → {u}"))
            .unwrap_or_default();
        let _ = writeln!(out, "│ [ {} ]{target}", button.text);
    }
    let _ = writeln!(out, "└──");
    let parameters = parameters(template);
    if parameters.is_empty() {
        let _ = writeln!(out, "parameters: none");
    } else {
        let _ = writeln!(out, "parameters:");
        for p in parameters {
            let _ = writeln!(out, "  {p}");
        }
    }
    out
}

/// Every value a message must give, by component.
pub fn parameters(template: &SyncedTemplate) -> Vec<String> {
    let mut out = Vec::new();
    if template.header_needs_parameter()
        && let Some(header) = template.header()
    {
        out.push(format!("HEADER: {}", header.format.to_ascii_lowercase()));
    }
    if let Some(body) = template
        .body_text()
        .and_then(|b| crate::template::Template::parse(b).ok())
    {
        for key in body.placeholders() {
            out.push(format!("BODY: {key}"));
        }
    }
    for (index, button) in template.buttons().iter().enumerate() {
        if button.needs_parameter() {
            out.push(format!(
                "BUTTONS[{index}]: {} \"{}\"",
                button.kind.to_ascii_lowercase(),
                button.text
            ));
        }
    }
    out
}

/// Header and buttons at a glance, for `templates list`: `image`, `url+quick_reply`.
pub fn header_glance(template: &SyncedTemplate) -> String {
    template
        .header()
        .map_or_else(|| "-".to_owned(), |h| h.format.to_ascii_lowercase())
}

pub fn buttons_glance(template: &SyncedTemplate) -> String {
    let buttons = template.buttons();
    if buttons.is_empty() {
        "-".to_owned()
    } else {
        buttons
            .iter()
            .map(|b| b.kind.to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join("+")
    }
}
