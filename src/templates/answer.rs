//! Reading one `message_templates` answer (one page of Meta's listing, or a saved
//! one): every template it holds, and the cursor to the next page.

use serde_json::Value;
use thiserror::Error;

use super::SyncedTemplate;

/// What is wrong with an answer; `source` names where it came from (a file, or
/// "page N of <url>").
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AnswerError {
    #[error(
        "{origin}: empty; expected a `message_templates` answer (a JSON object with a `data` array)"
    )]
    Empty { origin: String },
    #[error(
        "{origin}: not JSON ({detail}); expected a `message_templates` answer (a JSON object with a `data` array)"
    )]
    NotJson { origin: String, detail: String },
    #[error(
        "{origin}: not a `message_templates` answer: {detail}. Save the answer of \
         `GET /<version>/<WABA-ID>/message_templates` as it comes"
    )]
    NotTemplates { origin: String, detail: String },
    #[error("{origin}: data[{index}] ({name}): {detail}")]
    Template {
        origin: String,
        index: usize,
        name: String,
        detail: String,
    },
}

/// One page: its templates and, when there are more, the cursor that follows.
#[derive(Debug)]
pub struct Page {
    pub templates: Vec<SyncedTemplate>,
    pub after: Option<String>,
}

/// Parses an answer. A page says more follow when it has `paging.next`; its
/// `paging.cursors.after` is the cursor to ask for (the `next` URL itself is not
/// followed: it would carry the token wherever it points).
pub fn parse(bytes: &[u8], source: &str) -> Result<Page, AnswerError> {
    let text = std::str::from_utf8(bytes).map_err(|e| AnswerError::NotJson {
        origin: source.to_owned(),
        detail: e.to_string(),
    })?;
    if text.trim().is_empty() {
        return Err(AnswerError::Empty {
            origin: source.to_owned(),
        });
    }
    let value: Value = serde_json::from_str(text).map_err(|e| AnswerError::NotJson {
        origin: source.to_owned(),
        detail: e.to_string(),
    })?;
    let not_templates = |detail: &str| AnswerError::NotTemplates {
        origin: source.to_owned(),
        detail: detail.to_owned(),
    };
    let Some(object) = value.as_object() else {
        return Err(not_templates("the top level is not an object"));
    };
    let Some(data) = object.get("data") else {
        return Err(not_templates("it has no `data` key"));
    };
    let Some(data) = data.as_array() else {
        return Err(not_templates("`data` is not an array"));
    };
    let templates = data
        .iter()
        .enumerate()
        .map(|(index, item)| template(item, index, source))
        .collect::<Result<Vec<_>, _>>()?;
    let paging = object.get("paging");
    let after = match paging {
        Some(p) if p.get("next").is_some_and(|n| !n.is_null()) => {
            let cursor = p
                .pointer("/cursors/after")
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty())
                .ok_or_else(|| {
                    not_templates("`paging.next` is given without `paging.cursors.after`")
                })?;
            Some(cursor.to_owned())
        }
        _ => None,
    };
    Ok(Page { templates, after })
}

fn template(item: &Value, index: usize, source: &str) -> Result<SyncedTemplate, AnswerError> {
    let name = item
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("no name")
        .to_owned();
    let error = |detail: String| AnswerError::Template {
        origin: source.to_owned(),
        index,
        name: name.clone(),
        detail,
    };
    if !item.is_object() {
        return Err(error("not an object".into()));
    }
    let text = |key: &str| -> Result<String, AnswerError> {
        match item.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
            Some(_) => Err(error(format!("`{key}` is not a non-empty string"))),
            None => Err(error(format!(
                "`{key}` is missing; sync with fields=name,language,status,category,quality_score,parameter_format,components"
            ))),
        }
    };
    let optional = |key: &str| item.get(key).and_then(Value::as_str).map(str::to_owned);
    let components = match item.get("components") {
        Some(Value::Array(c)) => c.clone(),
        Some(_) => return Err(error("`components` is not an array".into())),
        None => {
            return Err(error(
                "`components` is missing; sync with fields=...,components".into(),
            ));
        }
    };
    // Meta answers {"score": "GREEN", "date": ...}; a plain string is taken too.
    let quality = match item.get("quality_score") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(q) => q.get("score").and_then(Value::as_str).map(str::to_owned),
        None => None,
    };
    Ok(SyncedTemplate {
        id: optional("id"),
        name: text("name")?,
        language: text("language")?,
        status: text("status")?.to_ascii_uppercase(),
        category: text("category")?.to_ascii_uppercase(),
        quality: quality.map(|q| q.to_ascii_uppercase()),
        parameter_format: optional("parameter_format").map(|f| f.to_ascii_uppercase()),
        components,
    })
}

/// Parses one page of Twilio's `GET /v1/ContentAndApprovals`: each Content resource
/// as a template (its WhatsApp name, language, approval status and category, and its
/// body, media header and buttons as Meta's components); `after` is the query of
/// `meta.next_page_url`, asked of our own base URL (never the URL itself).
pub fn parse_twilio(bytes: &[u8], source: &str) -> Result<Page, AnswerError> {
    let not_templates = |detail: &str| AnswerError::NotTemplates {
        origin: source.to_owned(),
        detail: detail.to_owned(),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(AnswerError::Empty {
            origin: source.to_owned(),
        });
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| AnswerError::NotJson {
        origin: source.to_owned(),
        detail: e.to_string(),
    })?;
    let contents = value
        .get("contents")
        .and_then(Value::as_array)
        .ok_or_else(|| not_templates("it has no `contents` array (a ContentAndApprovals page)"))?;
    let mut templates = Vec::new();
    for (index, item) in contents.iter().enumerate() {
        let approval = item.get("approval_requests");
        let text = |v: Option<&Value>| {
            v.and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let name = text(approval.and_then(|a| a.get("name")))
            .or_else(|| text(item.get("friendly_name")))
            .ok_or_else(|| AnswerError::Template {
                origin: source.to_owned(),
                index,
                name: "no name".into(),
                detail: "neither `approval_requests.name` nor `friendly_name`".into(),
            })?;
        let types = item.get("types").and_then(Value::as_object);
        let mut components = Vec::new();
        let mut body = None;
        let mut buttons = Vec::new();
        for (kind, content) in types.into_iter().flatten() {
            if body.is_none() {
                body = text(content.get("body"));
            }
            // A fixed media URL needs no value per message; one with a variable does.
            let variable_media = content
                .get("media")
                .and_then(Value::as_array)
                .is_some_and(|m| {
                    m.iter()
                        .any(|u| u.as_str().is_some_and(|u| u.contains("{{")))
                });
            if kind == "twilio/media" && variable_media && components.is_empty() {
                components.push(serde_json::json!({"type": "HEADER", "format": "IMAGE"}));
            }
            for action in content
                .get("actions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let mut button = serde_json::json!({
                    "type": text(action.get("type")).unwrap_or_default().to_ascii_uppercase(),
                    "text": text(action.get("title")).unwrap_or_default(),
                });
                if let Some(url) = text(action.get("url")) {
                    button["url"] = Value::String(url);
                }
                buttons.push(button);
            }
        }
        if let Some(body) = body {
            components.push(serde_json::json!({"type": "BODY", "text": body}));
        }
        if !buttons.is_empty() {
            components.push(serde_json::json!({"type": "BUTTONS", "buttons": buttons}));
        }
        templates.push(SyncedTemplate {
            id: text(item.get("sid")),
            name,
            language: text(item.get("language")).unwrap_or_default(),
            status: text(approval.and_then(|a| a.get("status")))
                .unwrap_or_else(|| "UNSUBMITTED".into())
                .to_ascii_uppercase(),
            // TRANSACTIONAL is the category's name before Meta called it UTILITY.
            category: match text(approval.and_then(|a| a.get("category")))
                .unwrap_or_else(|| "UNKNOWN".into())
                .to_ascii_uppercase()
                .as_str()
            {
                "TRANSACTIONAL" => "UTILITY".to_owned(),
                other => other.to_owned(),
            },
            quality: None,
            parameter_format: None,
            components,
        });
    }
    let after = value
        .pointer("/meta/next_page_url")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .map(|u| {
            reqwest::Url::parse(u)
                .map(|url| url.query().unwrap_or_default().to_owned())
                .map_err(|e| not_templates(&format!("`meta.next_page_url` is not a URL: {e}")))
        })
        .transpose()?;
    Ok(Page { templates, after })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_gives_its_templates_and_the_next_cursor() {
        let page = parse(
            br#"{"data":[{"name":"a","language":"es_MX","status":"approved","category":"MARKETING",
                "quality_score":{"score":"GREEN"},"components":[{"type":"BODY","text":"Hola"}]}],
                "paging":{"cursors":{"before":"B","after":"A1"},"next":"https://graph.facebook.com/x"}}"#,
            "page 1",
        )
        .unwrap();
        assert_eq!(page.templates[0].status, "APPROVED");
        assert_eq!(page.templates[0].quality.as_deref(), Some("GREEN"));
        assert_eq!(page.after.as_deref(), Some("A1"));
    }

    #[test]
    fn the_last_page_has_no_next() {
        let page = parse(br#"{"data":[],"paging":{"cursors":{"after":"A1"}}}"#, "p").unwrap();
        assert!(page.after.is_none());
    }

    #[test]
    fn what_is_not_an_answer_says_what_it_is() {
        let err = |b: &[u8]| parse(b, "f.json").unwrap_err().to_string();
        assert!(err(b"").contains("f.json: empty"));
        assert!(err(b"{").contains("f.json: not JSON"));
        assert!(err(b"[]").contains("the top level is not an object"));
        assert!(err(br#"{"error":{"code":190}}"#).contains("it has no `data` key"));
        assert!(
            err(br#"{"data":[{"name":"x","language":"es","status":"APPROVED","category":"UTILITY"}]}"#)
                .contains("data[0] (x): `components` is missing")
        );
    }
}
