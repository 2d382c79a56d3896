//! `[template.header]` and `[[template.buttons]]`: the values a template's header
//! and buttons take in each message, and the checks Meta makes on them, so a row
//! whose value Meta would refuse is left out with the reason instead.
//!
//! Each part gives one value per message; a recipient's values are the body's,
//! then the parts' in this order.

use serde::Deserialize;
use toml::Spanned;

use super::ValueSource;
use super::error::{CampaignError, Locate};

/// Meta's limit on a text header's rendered length.
pub const MAX_HEADER_TEXT_CHARS: usize = 60;
/// A quick-reply button's payload, as Meta caps it.
pub const MAX_PAYLOAD_CHARS: usize = 128;
/// A copy-code button's coupon code.
pub const MAX_COUPON_CHARS: usize = 15;
/// A one-time password.
pub const MAX_OTP_CHARS: usize = 15;
/// A whole URL WhatsApp opens.
pub const MAX_URL_CHARS: usize = 2000;

/// The kind of media a header carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    Image,
    Video,
    Document,
}

impl Media {
    pub fn as_str(self) -> &'static str {
        match self {
            Media::Image => "image",
            Media::Video => "video",
            Media::Document => "document",
        }
    }
}

/// One field of a location header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocationField {
    Latitude,
    Longitude,
    Name,
    Address,
}

impl LocationField {
    pub fn as_str(self) -> &'static str {
        match self {
            LocationField::Latitude => "latitude",
            LocationField::Longitude => "longitude",
            LocationField::Name => "name",
            LocationField::Address => "address",
        }
    }
}

/// What one value fills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// The variable of a text header.
    HeaderText,
    /// A media header by `link` (https) or by an uploaded media `id`.
    HeaderMedia {
        media: Media,
        by_id: bool,
        filename: Option<String>,
    },
    HeaderLocation(LocationField),
    /// The variable suffix of a URL button.
    ButtonUrl {
        index: u8,
    },
    /// A quick-reply button's payload; `opt_out` ties a tap to an opt-out.
    ButtonQuickReply {
        index: u8,
        opt_out: bool,
    },
    ButtonCopyCode {
        index: u8,
    },
    /// An authentication template's one-time password (sent on its URL button).
    ButtonOtp {
        index: u8,
    },
}

impl Part {
    /// The button index, for a button.
    pub fn button_index(&self) -> Option<u8> {
        match self {
            Part::ButtonUrl { index }
            | Part::ButtonQuickReply { index, .. }
            | Part::ButtonCopyCode { index }
            | Part::ButtonOtp { index } => Some(*index),
            _ => None,
        }
    }
}

/// One part and where its value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartSpec {
    pub part: Part,
    pub source: ValueSource,
    /// The campaign key, for messages: `template.header.link`, `template.buttons[0].suffix`.
    pub key: String,
    /// Twilio: the Content template's variable this value fills (`"3"`).
    pub twilio_variable: Option<String>,
    /// A local file sent to everyone: uploaded once per run (`POST
    /// /{phone-number-id}/media`) and sent by the media id the upload answers.
    pub upload: Option<std::path::PathBuf>,
}

// ---- the sections as serde reads them ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHeader {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    text: Option<RawValue>,
    link: Option<RawValue>,
    media_id: Option<RawValue>,
    file: Option<String>,
    filename: Option<String>,
    latitude: Option<RawValue>,
    longitude: Option<RawValue>,
    name: Option<RawValue>,
    address: Option<RawValue>,
    twilio_variable: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawButton {
    index: Spanned<u8>,
    #[serde(rename = "type")]
    kind: Spanned<String>,
    suffix: Option<RawValue>,
    payload: Option<RawValue>,
    code: Option<RawValue>,
    #[serde(default)]
    opt_out: bool,
    twilio_variable: Option<String>,
}

/// `{ column = "...", default = "..." }` or `{ value = "..." }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawValue {
    column: Option<String>,
    value: Option<String>,
    default: Option<String>,
}

fn source(
    raw: &RawValue,
    key: &str,
    span: std::ops::Range<usize>,
    at: &Locate<'_>,
) -> Result<ValueSource, CampaignError> {
    match (&raw.column, &raw.value, &raw.default) {
        (Some(column), None, default) if !column.trim().is_empty() => Ok(ValueSource::Column {
            column: column.trim().to_owned(),
            default: default.clone(),
        }),
        (None, Some(value), None) => Ok(ValueSource::Fixed(value.clone())),
        _ => Err(at(
            span,
            format!("{key}: give either `column` (with an optional `default`) or `value`"),
        )),
    }
}

/// The parts `[template.header]` and `[[template.buttons]]` describe, checked.
pub(super) fn build(
    header: Option<&RawHeader>,
    buttons: &[RawButton],
    base_dir: &std::path::Path,
    at: &Locate<'_>,
) -> Result<Vec<PartSpec>, CampaignError> {
    let mut parts = Vec::new();
    if let Some(h) = header
        && let Some(file) = &h.file
    {
        let kind = h.kind.get_ref().trim().to_ascii_lowercase();
        let media = match kind.as_str() {
            "image" => Media::Image,
            "video" => Media::Video,
            "document" => Media::Document,
            _ => {
                return Err(at(
                    h.kind.span(),
                    "template.header.file: only an image, video or document header takes a file"
                        .into(),
                ));
            }
        };
        if h.link.is_some() || h.media_id.is_some() {
            return Err(at(
                h.kind.span(),
                "template.header: give one of `file`, `link` or `media_id`".into(),
            ));
        }
        let path = base_dir.join(file);
        let size = std::fs::metadata(&path).map(|m| m.len()).map_err(|e| {
            at(
                h.kind.span(),
                format!("template.header.file: cannot read {}: {e}", path.display()),
            )
        })?;
        let (_, limit) = limits(media);
        if size > limit {
            return Err(at(
                h.kind.span(),
                format!(
                    "template.header.file: {} is {size} bytes; a {} header takes at most {limit}",
                    path.display(),
                    media.as_str()
                ),
            ));
        }
        parts.push(PartSpec {
            part: Part::HeaderMedia {
                media,
                by_id: true,
                filename: h.filename.clone(),
            },
            // The media id the upload answers replaces it before the first send.
            source: ValueSource::Fixed("0".into()),
            key: "template.header.file".into(),
            twilio_variable: h.twilio_variable.clone(),
            upload: Some(path),
        });
    } else if let Some(h) = header {
        let span = h.kind.span();
        let mut push = |part: Part, raw: &RawValue, key: &str| -> Result<(), CampaignError> {
            let source = source(raw, key, span.clone(), at)?;
            // A fixed value is checked here, once, rather than excluding every row.
            if let ValueSource::Fixed(value) = &source {
                check(&part, value).map_err(|e| at(span.clone(), format!("{key}: {e}")))?;
            }
            parts.push(PartSpec {
                part,
                source,
                key: key.to_owned(),
                twilio_variable: h.twilio_variable.clone(),
                upload: None,
            });
            Ok(())
        };
        let kind = h.kind.get_ref().trim().to_ascii_lowercase();
        match kind.as_str() {
            "text" => {
                let text = h.text.as_ref().ok_or_else(|| {
                    at(
                        span.clone(),
                        "template.header: a text header with a variable needs `text = { column = \"...\" }` or `{ value = \"...\" }`".into(),
                    )
                })?;
                push(Part::HeaderText, text, "template.header.text")?;
            }
            "image" | "video" | "document" => {
                let media = match kind.as_str() {
                    "image" => Media::Image,
                    "video" => Media::Video,
                    _ => Media::Document,
                };
                if h.filename.is_some() && media != Media::Document {
                    return Err(at(
                        span,
                        "template.header.filename: only a document header has a file name".into(),
                    ));
                }
                match (&h.link, &h.media_id) {
                    (Some(link), None) => push(
                        Part::HeaderMedia {
                            media,
                            by_id: false,
                            filename: h.filename.clone(),
                        },
                        link,
                        "template.header.link",
                    )?,
                    (None, Some(id)) => push(
                        Part::HeaderMedia {
                            media,
                            by_id: true,
                            filename: h.filename.clone(),
                        },
                        id,
                        "template.header.media_id",
                    )?,
                    _ => {
                        return Err(at(
                            span,
                            format!(
                                "template.header: an {kind} header needs exactly one of `link` \
                                 (an https URL, from a column or fixed) or `media_id` (an uploaded media id)"
                            ),
                        ));
                    }
                }
            }
            "location" => {
                for (field, raw) in [
                    (LocationField::Latitude, &h.latitude),
                    (LocationField::Longitude, &h.longitude),
                    (LocationField::Name, &h.name),
                    (LocationField::Address, &h.address),
                ] {
                    let key = format!("template.header.{}", field.as_str());
                    let raw = raw.as_ref().ok_or_else(|| {
                        at(
                            span.clone(),
                            format!("{key} is required for a location header (latitude, longitude, name, address)"),
                        )
                    })?;
                    push(Part::HeaderLocation(field), raw, &key)?;
                }
            }
            other => {
                return Err(at(
                    span,
                    format!(
                        "template.header.type `{other}`: expected \"text\", \"image\", \"video\", \"document\" or \"location\""
                    ),
                ));
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (n, b) in buttons.iter().enumerate() {
        let index = *b.index.get_ref();
        let span = b.kind.span();
        if !seen.insert(index) {
            return Err(at(
                b.index.span(),
                format!("template.buttons[{n}]: index {index} is given twice"),
            ));
        }
        if index > 9 {
            return Err(at(
                b.index.span(),
                format!(
                    "template.buttons[{n}].index {index}: a template has at most 10 buttons, indexed from 0"
                ),
            ));
        }
        let kind = b.kind.get_ref().trim().to_ascii_lowercase();
        let (part, raw, field) = match kind.as_str() {
            "url" => (Part::ButtonUrl { index }, &b.suffix, "suffix"),
            "quick_reply" => (
                Part::ButtonQuickReply {
                    index,
                    opt_out: b.opt_out,
                },
                &b.payload,
                "payload",
            ),
            "copy_code" => (Part::ButtonCopyCode { index }, &b.code, "code"),
            "otp" => (Part::ButtonOtp { index }, &b.code, "code"),
            other => {
                return Err(at(
                    span,
                    format!(
                        "template.buttons[{n}].type `{other}`: expected \"url\", \"quick_reply\", \"copy_code\" or \"otp\""
                    ),
                ));
            }
        };
        if b.opt_out && kind != "quick_reply" {
            return Err(at(
                span,
                format!(
                    "template.buttons[{n}].opt_out: only a quick_reply button can opt a contact out"
                ),
            ));
        }
        let key = format!("template.buttons[{n}].{field}");
        let raw = raw.as_ref().ok_or_else(|| {
            at(
                span.clone(),
                format!("{key} is required for a {kind} button: `{{ column = \"...\" }}` or `{{ value = \"...\" }}`"),
            )
        })?;
        let source = source(raw, &key, span.clone(), at)?;
        if b.opt_out && !matches!(source, ValueSource::Fixed(_)) {
            return Err(at(
                span,
                format!(
                    "{key}: an opt-out button's payload is fixed (`{{ value = \"STOP_PROMOS\" }}`), \
                     so the webhook server knows a tap on it"
                ),
            ));
        }
        if let ValueSource::Fixed(value) = &source {
            check(&part, value).map_err(|e| at(span.clone(), format!("{key}: {e}")))?;
        }
        parts.push(PartSpec {
            part,
            source,
            key,
            twilio_variable: b.twilio_variable.clone(),
            upload: None,
        });
    }
    Ok(parts)
}

/// Checks one value as Meta does and returns it as it is sent (a URL suffix
/// percent-encoded); `Err` says why Meta would refuse it.
pub fn check(part: &Part, value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("empty".into());
    }
    let chars = value.chars().count();
    match part {
        Part::HeaderText => {
            if value.contains(['\n', '\r', '\t']) {
                return Err("a header has no newlines or tabs".into());
            }
            if chars > MAX_HEADER_TEXT_CHARS {
                return Err(format!(
                    "{chars} characters; a header holds at most {MAX_HEADER_TEXT_CHARS}"
                ));
            }
            Ok(value.to_owned())
        }
        Part::HeaderMedia { by_id: false, .. } => {
            let url =
                reqwest::Url::parse(value).map_err(|e| format!("`{value}` is not a URL ({e})"))?;
            if url.scheme() != "https" {
                return Err(format!("`{value}`: WhatsApp fetches media over https only"));
            }
            if url.host_str().is_none_or(str::is_empty) {
                return Err(format!("`{value}` has no host"));
            }
            Ok(url.to_string())
        }
        Part::HeaderMedia { by_id: true, .. } => {
            if value.chars().any(char::is_whitespace) {
                Err(format!(
                    "`{value}`: a media id is the one token an upload answered"
                ))
            } else {
                Ok(value.to_owned())
            }
        }
        Part::HeaderLocation(field @ (LocationField::Latitude | LocationField::Longitude)) => {
            let bound = if *field == LocationField::Latitude {
                90.0
            } else {
                180.0
            };
            match value.parse::<f64>() {
                Ok(n) if n.is_finite() && n.abs() <= bound => Ok(value.to_owned()),
                _ => Err(format!(
                    "`{value}` is not a {} between -{bound} and {bound}",
                    field.as_str()
                )),
            }
        }
        Part::HeaderLocation(_) => Ok(value.to_owned()),
        Part::ButtonUrl { .. } | Part::ButtonOtp { .. } => {
            if value.chars().any(char::is_whitespace) {
                return Err(format!("`{value}` has spaces; a URL suffix cannot"));
            }
            if matches!(part, Part::ButtonOtp { .. }) && chars > MAX_OTP_CHARS {
                return Err(format!(
                    "{chars} characters; a code holds at most {MAX_OTP_CHARS}"
                ));
            }
            let encoded = encode_suffix(value);
            if encoded.len() > MAX_URL_CHARS {
                return Err(format!(
                    "{} characters encoded; a URL holds at most {MAX_URL_CHARS}",
                    encoded.len()
                ));
            }
            Ok(encoded)
        }
        Part::ButtonQuickReply { .. } => {
            if chars > MAX_PAYLOAD_CHARS {
                return Err(format!(
                    "{chars} characters; a payload holds at most {MAX_PAYLOAD_CHARS}"
                ));
            }
            Ok(value.to_owned())
        }
        Part::ButtonCopyCode { .. } => {
            if chars > MAX_COUPON_CHARS {
                return Err(format!(
                    "{chars} characters; a coupon code holds at most {MAX_COUPON_CHARS}"
                ));
            }
            Ok(value.to_owned())
        }
    }
}

/// A URL suffix as it is appended: characters a URL may not carry literally are
/// percent-encoded; `/`, `?`, `=`, `&`, `#` and `%`-escapes are kept as written.
pub fn encode_suffix(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c.is_ascii_alphanumeric() || "-._~/?=&#%+:@!$'()*,;".contains(c) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// What WhatsApp takes for a media header: content types and the largest size.
pub fn limits(media: Media) -> (&'static [&'static str], u64) {
    match media {
        Media::Image => (&["image/jpeg", "image/png"], 5 * 1024 * 1024),
        Media::Video => (&["video/mp4", "video/3gpp"], 16 * 1024 * 1024),
        Media::Document => (
            &[
                "application/pdf",
                "application/msword",
                "application/vnd.",
                "application/octet-stream",
                "text/plain",
            ],
            100 * 1024 * 1024,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_as_meta_checks_them() {
        let link = Part::HeaderMedia {
            media: Media::Image,
            by_id: false,
            filename: None,
        };
        assert!(
            check(&link, "http://x.example/a.jpg")
                .unwrap_err()
                .contains("https only")
        );
        assert!(
            check(&link, "not a url")
                .unwrap_err()
                .contains("is not a URL")
        );
        assert_eq!(
            check(&link, " https://x.example/a.jpg ").unwrap(),
            "https://x.example/a.jpg"
        );
        let url = Part::ButtonUrl { index: 0 };
        assert!(check(&url, "A 1").unwrap_err().contains("has spaces"));
        assert_eq!(check(&url, "pedido/ñ1\"").unwrap(), "pedido/%C3%B11%22");
        assert!(check(&Part::HeaderText, "a\nb").is_err());
        assert!(
            check(&Part::HeaderText, &"x".repeat(61))
                .unwrap_err()
                .contains("at most 60")
        );
        let qr = Part::ButtonQuickReply {
            index: 1,
            opt_out: true,
        };
        assert!(check(&qr, &"p".repeat(129)).is_err());
        assert!(check(&Part::ButtonCopyCode { index: 0 }, "ABCDEFGHIJKLMNOP").is_err());
        assert!(check(&Part::HeaderLocation(LocationField::Latitude), "91").is_err());
        assert!(check(&Part::HeaderLocation(LocationField::Longitude), "-99.13").is_ok());
    }
}
