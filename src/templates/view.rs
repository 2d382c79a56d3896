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

/// One recipient's message as the customer sees it: header, body, footer and
/// buttons. The body is the synced translation in the recipient's language when
/// there is one, else the campaign's; without a synced template the footer and the
/// buttons' labels are unknown, and the buttons show what the campaign fills.
pub fn message(
    campaign: &crate::campaign::Campaign,
    template: Option<&SyncedTemplate>,
    values: &[String],
) -> String {
    use crate::campaign::components::Part;
    let spec = &campaign.template;
    let body_len = spec.sources.len();
    let body_values = &values[..body_len.min(values.len())];
    let parts: Vec<_> = spec
        .parts
        .iter()
        .zip(values.get(body_len..).unwrap_or_default())
        .collect();
    let mut out = String::new();
    // Header.
    let location: Vec<&str> = parts
        .iter()
        .filter(|(p, _)| matches!(p.part, Part::HeaderLocation(_)))
        .map(|(_, v)| v.as_str())
        .collect();
    if let [lat, lon, name, address] = location.as_slice() {
        let _ = writeln!(out, "[location: {name}, {address} ({lat}, {lon})]");
    }
    for (part, value) in &parts {
        match &part.part {
            Part::HeaderMedia {
                media, filename, ..
            } => {
                let name = filename
                    .as_deref()
                    .map(|f| format!(" \"{f}\""))
                    .unwrap_or_default();
                let shown = part.upload.as_ref().map_or_else(
                    || (*value).clone(),
                    |file| format!("{} (uploaded once at send)", file.display()),
                );
                let _ = writeln!(out, "[{}{name}: {shown}]", media.as_str());
            }
            Part::HeaderText => {
                let text = template
                    .and_then(SyncedTemplate::header)
                    .and_then(|h| h.text)
                    .map_or_else(|| (*value).clone(), |t| fill_one(&t, value));
                let _ = writeln!(out, "*{text}*");
            }
            _ => {}
        }
    }
    if parts.is_empty()
        && let Some(header) = template.and_then(SyncedTemplate::header)
        && let Some(text) = header.text
    {
        let _ = writeln!(out, "*{text}*");
    }
    // Body.
    let synced_body = template
        .and_then(SyncedTemplate::body_text)
        .and_then(|b| crate::template::Template::parse(b).ok());
    let body = match synced_body {
        Some(synced) => {
            let by_key: std::collections::HashMap<_, _> =
                spec.body.placeholders().iter().zip(body_values).collect();
            let ordered: Vec<String> = synced
                .placeholders()
                .iter()
                .map(|k| {
                    by_key
                        .get(k)
                        .map_or_else(|| k.to_string(), |v| (*v).clone())
                })
                .collect();
            synced.render(&ordered)
        }
        None => spec.body.render(body_values),
    };
    let _ = writeln!(out, "{body}");
    if let Some(footer) = template.and_then(SyncedTemplate::footer_text) {
        let _ = writeln!(out, "_{footer}_");
    }
    // Buttons: the template's, with the campaign's values; else the campaign's.
    let value_of = |index: usize| {
        parts
            .iter()
            .find(|(p, _)| p.part.button_index() == Some(index as u8))
            .map(|(p, v)| (&p.part, v.as_str()))
    };
    match template {
        Some(t) if !t.buttons().is_empty() => {
            for (index, button) in t.buttons().iter().enumerate() {
                let target = match (button.url.as_deref(), value_of(index)) {
                    (Some(url), Some((_, suffix))) => format!(" → {}", fill_one(url, suffix)),
                    (Some(url), None) => format!(" → {url}"),
                    (None, Some((Part::ButtonQuickReply { opt_out: true, .. }, payload))) => {
                        format!(" (payload {payload}: opts out)")
                    }
                    (None, Some((Part::ButtonCopyCode { .. }, code))) => {
                        format!(" (copies {code})")
                    }
                    _ => String::new(),
                };
                let _ = writeln!(out, "[ {} ]{target}", button.text);
            }
        }
        _ => {
            for (part, value) in &parts {
                let line = match &part.part {
                    Part::ButtonUrl { index } => format!("[ button {index}: link …/{value} ]"),
                    Part::ButtonQuickReply { index, opt_out } => format!(
                        "[ button {index}: reply {value}{} ]",
                        if *opt_out { ", opts out" } else { "" }
                    ),
                    Part::ButtonCopyCode { index } => format!("[ button {index}: copy {value} ]"),
                    Part::ButtonOtp { index } => format!("[ button {index}: code {value} ]"),
                    _ => continue,
                };
                let _ = writeln!(out, "{line}");
            }
        }
    }
    out.trim_end().to_owned()
}

/// A text with one variable (`{{1}}` or a named one) filled.
fn fill_one(text: &str, value: &str) -> String {
    match (text.find("{{"), text.find("}}")) {
        (Some(start), Some(end)) if end > start => {
            format!("{}{value}{}", &text[..start], &text[end + 2..])
        }
        _ => text.to_owned(),
    }
}
