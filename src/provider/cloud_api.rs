//! Meta's WhatsApp Cloud API: `POST {base_url}/{api_version}/{phone_number_id}/messages`.
//!
//! Request bodies follow `Message` in Meta's OpenAPI description (v23.0), including
//! the fields that examples on the web often leave out and the schema requires:
//! `recipient_type: "individual"` and `template.language.policy: "deterministic"`.

use std::sync::OnceLock;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::prepared_body::PreparedBody;
use super::{Departure, Message, Provider, Response, SendFuture, To, http};
use crate::campaign::components::{Part, PartSpec};
use crate::campaign::{Campaign, MessageKind, ProviderConfig};
use crate::secret::Secret;
use crate::template::PlaceholderKey;

#[derive(Serialize)]
pub struct TemplateMessage<'a> {
    messaging_product: &'static str,
    recipient_type: &'static str,
    #[serde(flatten)]
    to: Address,
    #[serde(rename = "type")]
    kind: &'static str,
    template: TemplateObject<'a>,
    /// Echoed back in every status webhook, so statuses find their journal row
    /// even before the wamid is known (an in-doubt send).
    biz_opaque_callback_data: String,
}

#[derive(Serialize)]
struct TemplateObject<'a> {
    name: &'a str,
    language: Language<'a>,
    /// Header, body and buttons, in that order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    components: Vec<AnyComponent<'a>>,
}

/// A component: the body's parameters serialized straight from the rendered values
/// (every message has them, so no JSON tree is built for them), or a header or
/// button, built as JSON.
#[derive(Serialize)]
#[serde(untagged)]
enum AnyComponent<'a> {
    Body(Component<'a>),
    Other(serde_json::Value),
}

#[derive(Serialize)]
struct Language<'a> {
    policy: &'static str,
    code: &'a str,
}

#[derive(Serialize)]
struct Component<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    parameters: Vec<TextParameter<'a>>,
}

#[derive(Serialize)]
struct TextParameter<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    /// Named templates (`{{first_name}}`) must name each parameter.
    #[serde(skip_serializing_if = "Option::is_none")]
    parameter_name: Option<&'a str>,
    text: &'a str,
}

/// A free-form text message, for a session campaign (inside the customer-service
/// window). Meta's contract allows no `biz_opaque_callback_data` here: statuses for
/// these are matched by wamid alone.
#[derive(Serialize)]
pub struct TextMessage {
    messaging_product: &'static str,
    recipient_type: &'static str,
    #[serde(flatten)]
    to: Address,
    #[serde(rename = "type")]
    kind: &'static str,
    text: TextBody,
}

#[derive(Serialize)]
struct TextBody {
    body: String,
    preview_url: bool,
}

/// Who a message is for: `to` with a number, or `recipient` with a business-scoped
/// user ID. Meta's v23.0 description requires `to` and predates `recipient`; Meta's
/// BSUID guide adds `recipient` for people known by a BSUID alone.
#[derive(Serialize)]
struct Address {
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recipient: Option<String>,
}

impl Address {
    fn of(to: &To) -> Address {
        match to {
            To::Phone(p) => Address {
                to: Some(p.to_string()),
                recipient: None,
            },
            To::Bsuid { bsuid, .. } => Address {
                to: None,
                recipient: Some(bsuid.clone()),
            },
        }
    }
}

/// The request body for one recipient, as the campaign's kind requires.
#[derive(Serialize)]
#[serde(untagged)]
pub enum Body<'a> {
    Template(TemplateMessage<'a>),
    Text(TextMessage),
}

pub fn message_body<'a>(campaign: &'a Campaign, to: &To, values: &'a [String]) -> Body<'a> {
    match campaign.kind {
        MessageKind::Template => Body::Template(template_message(campaign, to, values)),
        MessageKind::Session => Body::Text(TextMessage {
            messaging_product: "whatsapp",
            recipient_type: "individual",
            to: Address::of(to),
            kind: "text",
            text: TextBody {
                body: campaign.template.body.render(values),
                preview_url: false,
            },
        }),
    }
}

/// What `biz_opaque_callback_data` carries: the campaign and the recipient's journal
/// row (see `row_key`).
pub fn callback_data(campaign_id: &str, to: &To) -> String {
    crate::row_key::callback_data(
        campaign_id,
        &crate::row_key::RowKey {
            person: to.person(),
            occurrence: String::new(),
        },
    )
}

/// The request body for one recipient, exactly as it is sent.
pub fn template_message<'a>(
    campaign: &'a Campaign,
    to: &To,
    values: &'a [String],
) -> TemplateMessage<'a> {
    template_message_to(
        campaign,
        Address::of(to),
        values,
        callback_data(&campaign.id, to),
    )
}

fn template_message_to<'a>(
    campaign: &'a Campaign,
    to: Address,
    values: &'a [String],
    biz_opaque_callback_data: String,
) -> TemplateMessage<'a> {
    let template = &campaign.template;
    let parameters: Vec<TextParameter<'a>> = template
        .body
        .placeholders()
        .iter()
        .zip(values)
        .map(|(key, value)| TextParameter {
            kind: "text",
            parameter_name: match key {
                PlaceholderKey::Named(name) => Some(name.as_str()),
                PlaceholderKey::Positional(_) => None,
            },
            text: value,
        })
        .collect();
    let body_len = template.sources.len();
    let mut components = Vec::new();
    let parts = template
        .parts
        .iter()
        .zip(values.get(body_len..).unwrap_or_default());
    let header: Vec<(&PartSpec, &String)> = parts
        .clone()
        .filter(|(p, _)| p.part.button_index().is_none())
        .collect();
    if let Some(header) = header_component(&header) {
        components.push(AnyComponent::Other(header));
    }
    if !parameters.is_empty() {
        components.push(AnyComponent::Body(Component {
            kind: "body",
            parameters,
        }));
    }
    for (part, value) in parts.filter(|(p, _)| p.part.button_index().is_some()) {
        components.push(AnyComponent::Other(button_component(&part.part, value)));
    }
    TemplateMessage {
        messaging_product: "whatsapp",
        recipient_type: "individual",
        to,
        kind: "template",
        template: TemplateObject {
            name: &template.name,
            language: Language {
                policy: "deterministic",
                code: template.language_of(values),
            },
            components,
        },
        biz_opaque_callback_data,
    }
}

/// A campaign's template body prepared once for numbers and once for BSUIDs
/// (`to` or `recipient`), for the first message of each.
#[derive(Default)]
struct Prepared {
    phone: OnceLock<Option<PreparedBody>>,
    bsuid: OnceLock<Option<PreparedBody>>,
}

impl Prepared {
    /// The message's body, serialized as `template_message` would be; `None` where
    /// it must be serialized in full.
    fn body(&self, campaign: &Campaign, message: &Message) -> Option<Vec<u8>> {
        if campaign.kind != MessageKind::Template {
            return None;
        }
        let phone;
        let (cell, recipient, address): (_, &str, fn(String) -> Address) = match &message.to {
            To::Phone(p) => {
                phone = p.to_string();
                (&self.phone, &phone, |to| Address {
                    to: Some(to),
                    recipient: None,
                })
            }
            To::Bsuid { bsuid, .. } => (&self.bsuid, bsuid, |recipient| Address {
                to: None,
                recipient: Some(recipient),
            }),
        };
        let prepared = cell.get_or_init(|| {
            PreparedBody::new(message.values.len(), |s| {
                let body = template_message_to(
                    campaign,
                    address(s.recipient.clone()),
                    &s.values,
                    s.callback.clone(),
                );
                serde_json::to_vec(&Body::Template(body)).ok()
            })
        });
        let callback = crate::row_key::callback_data(
            &campaign.id,
            &crate::row_key::RowKey {
                person: message.to.person(),
                occurrence: message.occurrence.clone(),
            },
        );
        prepared
            .as_ref()?
            .fill(recipient, &message.values, &callback)
    }
}

/// The header component for its values: a text variable, a media link or id, or a
/// location's four fields. `None` for a template whose header takes no value.
fn header_component(parts: &[(&PartSpec, &String)]) -> Option<serde_json::Value> {
    use serde_json::json;
    let (first, value) = parts.first()?;
    let parameter = match &first.part {
        Part::HeaderText => json!({"type": "text", "text": value}),
        Part::HeaderMedia {
            media,
            by_id,
            filename,
        } => {
            let mut object = if *by_id {
                json!({"id": value})
            } else {
                json!({"link": value})
            };
            if let Some(name) = filename {
                object["filename"] = json!(name);
            }
            json!({"type": media.as_str(), media.as_str(): object})
        }
        Part::HeaderLocation(_) => {
            let mut location = serde_json::Map::new();
            for (part, value) in parts {
                if let Part::HeaderLocation(field) = part.part {
                    location.insert(field.as_str().to_owned(), json!(value));
                }
            }
            json!({"type": "location", "location": location})
        }
        _ => return None,
    };
    Some(json!({"type": "header", "parameters": [parameter]}))
}

/// One button's component: its sub-type, its index (a string, as Meta's examples
/// send it) and its one parameter.
fn button_component(part: &Part, value: &str) -> serde_json::Value {
    use serde_json::json;
    let (sub_type, parameter) = match part {
        Part::ButtonUrl { .. } | Part::ButtonOtp { .. } => {
            ("url", json!({"type": "text", "text": value}))
        }
        Part::ButtonQuickReply { .. } => {
            ("quick_reply", json!({"type": "payload", "payload": value}))
        }
        Part::ButtonCopyCode { .. } => (
            "copy_code",
            json!({"type": "coupon_code", "coupon_code": value}),
        ),
        _ => ("url", json!({"type": "text", "text": value})),
    };
    json!({
        "type": "button",
        "sub_type": sub_type,
        "index": part.button_index().unwrap_or(0).to_string(),
        "parameters": [parameter],
    })
}

/// The content type WhatsApp is told for an uploaded file, from its extension.
pub fn mime_of(path: &std::path::Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("mp4") => "video/mp4",
        Some("3gp") => "video/3gpp",
        Some("pdf") => "application/pdf",
        _ => "application/octet-stream",
    }
}

/// Uploads a file once (`POST {base}/{version}/{phone-number-id}/media`, multipart)
/// and returns the media id the messages then carry.
pub fn upload_media(
    campaign: &Campaign,
    token: &Secret,
    path: &std::path::Path,
) -> anyhow::Result<String> {
    let ProviderConfig::CloudApi {
        phone_number_id,
        api_version,
        base_url,
        timeout,
        ..
    } = &campaign.provider
    else {
        anyhow::bail!("only the Cloud API uploads media");
    };
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mime = mime_of(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().replace(['"', '\r', '\n'], "_"))
        .unwrap_or_else(|| "file".into());
    let boundary = format!("wacampaign-{:016x}", fastrand::u64(..));
    let mut body = Vec::with_capacity(bytes.len() + 512);
    for (field, value) in [("messaging_product", "whatsapp"), ("type", mime)] {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: {mime}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(&bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let url = format!("{base_url}/{api_version}/{phone_number_id}/media");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let client = http::client(*timeout, 1)?;
    let request = client
        .post(&url)
        .bearer_auth(token.expose())
        .header(
            reqwest::header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body);
    let answer = runtime
        .block_on(http::send(request, token, *timeout))
        .map_err(|r| anyhow::anyhow!("uploading {} to {url}: {r:?}", path.display()))?;
    let parsed: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    match parsed.get("id").and_then(serde_json::Value::as_str) {
        Some(id) if answer.is_success() && !id.is_empty() => Ok(id.to_owned()),
        _ => anyhow::bail!(
            "uploading {} to {url}: HTTP {}: {}; nothing was sent",
            path.display(),
            answer.status,
            answer.snippet(token)
        ),
    }
}

/// The Cloud API as a [`Provider`]: its messages go on connections kept for the
/// run, with explicit timeouts.
pub struct CloudApi {
    messages: http::Messages,
    token: Secret,
    campaign: Campaign,
    prepared: Prepared,
}

fn messages_url(
    base_url: &str,
    api_version: &str,
    phone_number_id: &str,
) -> anyhow::Result<reqwest::Url> {
    let url = format!("{base_url}/{api_version}/{phone_number_id}/messages");
    // The URL is left out of the message: a base URL may carry credentials.
    reqwest::Url::parse(&url)
        .context("provider.base_url does not make a valid URL: fix it in the campaign file")
}

impl CloudApi {
    pub fn new(campaign: &Campaign, token: Secret) -> anyhow::Result<CloudApi> {
        let ProviderConfig::CloudApi {
            phone_number_id,
            api_version,
            base_url,
            timeout,
            ..
        } = &campaign.provider
        else {
            anyhow::bail!("not a cloud_api campaign");
        };
        Ok(CloudApi {
            messages: http::Messages::new(
                messages_url(base_url, api_version, phone_number_id)?.as_str(),
                "application/json",
                &format!("Bearer {}", token.expose()),
                *timeout,
                campaign.sending.in_flight_cap(),
            )?,
            token,
            campaign: campaign.clone(),
            prepared: Prepared::default(),
        })
    }

    async fn post(&self, message: &Message, departure: Departure) -> Response {
        let body = match self.prepared.body(&self.campaign, message) {
            Some(bytes) => bytes::Bytes::from(bytes),
            None => match self.serialized(message) {
                Ok(bytes) => bytes,
                Err(response) => return response,
            },
        };
        self.exchange(body, departure).await
    }

    /// The message's body written by serde_json in full.
    fn serialized(&self, message: &Message) -> Result<bytes::Bytes, Response> {
        let mut body = message_body(&self.campaign, &message.to, &message.values);
        if let Body::Template(template) = &mut body
            && !message.occurrence.is_empty()
        {
            // The row's whole key, so a status finds the occurrence it is about.
            template.biz_opaque_callback_data = crate::row_key::callback_data(
                &self.campaign.id,
                &crate::row_key::RowKey {
                    person: message.to.person(),
                    occurrence: message.occurrence.clone(),
                },
            );
        }
        // Sized for a template message at once, instead of grown to it by doubling.
        let mut bytes = Vec::with_capacity(512);
        match serde_json::to_writer(&mut bytes, &body) {
            Ok(()) => Ok(bytes::Bytes::from(bytes)),
            Err(e) => Err(Response::NotSent {
                detail: format!("the request body could not be encoded: {e}"),
            }),
        }
    }

    async fn exchange(&self, body: bytes::Bytes, departure: Departure) -> Response {
        let answer = match self.messages.send(body, departure, &self.token).await {
            Ok(answer) => answer,
            Err(response) => return response,
        };
        if answer.is_success() {
            let (message, contact) = match serde_json::from_slice::<SendResponse>(&answer.body) {
                Ok(parsed) => (
                    parsed.messages.into_iter().next(),
                    parsed.contacts.into_iter().next(),
                ),
                Err(_) => (None, None),
            };
            // Every field is stored and shown: scrub the token from them too, in
            // case the server echoes what it was sent.
            let redact = |text: String| self.token.redact_owned(text);
            let (message_id, status) = match message {
                Some(m) => (Some(redact(m.id)), m.message_status.map(redact)),
                None => (None, None),
            };
            return Response::Accepted {
                message_id,
                wa_id: contact.and_then(|c| c.wa_id).map(redact),
                status,
            };
        }
        let error = serde_json::from_slice::<ErrorResponse>(&answer.body)
            .ok()
            .map(|e| e.error);
        let detail = match &error {
            Some(e) => {
                let mut detail = e.message.clone().unwrap_or_default();
                if let Some(details) = e.error_data.as_ref().and_then(|d| d.details.as_ref()) {
                    detail = format!("{detail}: {details}");
                }
                detail
            }
            None => answer.snippet(&self.token),
        };
        Response::Rejected {
            family: super::Family::Meta,
            http_status: answer.status,
            code: error.and_then(|e| e.code),
            detail: self.token.redact(&detail),
            retry_after: answer.retry_after,
        }
    }
}

impl Provider for CloudApi {
    fn send<'a>(&'a self, message: &'a Message, departure: Departure) -> SendFuture<'a> {
        Box::pin(self.post(message, departure))
    }
}

#[derive(Deserialize)]
struct SendResponse {
    #[serde(default)]
    contacts: Vec<ContactResponse>,
    #[serde(default)]
    messages: Vec<MessageResponse>,
}

#[derive(Deserialize)]
struct ContactResponse {
    wa_id: Option<String>,
}

#[derive(Deserialize)]
struct MessageResponse {
    id: String,
    message_status: Option<String>,
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: GraphError,
}

#[derive(Deserialize)]
struct GraphError {
    message: Option<String>,
    code: Option<i64>,
    error_data: Option<ErrorData>,
}

#[derive(Deserialize)]
struct ErrorData {
    details: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::Path;

    const CAMPAIGN: &str = "[campaign]\ncategory = \"marketing\"\ncontacts = \"contacts.csv\"\n\
                            phone_column = \"phone\"\ndefault_region = \"MX\"\n\n";
    const PROVIDER: &str =
        "\n[provider]\nkind = \"cloud_api\"\nphone_number_id = \"106540352242922\"\n";

    /// Templates with every kind of part a message fills: positional and named
    /// placeholders, a text, media and location header, each kind of button, and
    /// a language per contact.
    const TEMPLATES: &[&str] = &[
        "[template]\nname = \"t\"\nlanguage = \"es_MX\"\nbody = \"Hola {{1}}, {{2}}.\"\n\n\
         [template.variables]\n\"1\" = { column = \"a\" }\n\"2\" = { column = \"b\" }\n",
        "[template]\nname = \"t\"\nlanguage = \"es_MX\"\nbody = \"Hola {{first_name}}.\"\n\
         languages = [\"es_MX\", \"en_US\"]\nlanguage_column = \"lang\"\n\n\
         [template.variables]\nfirst_name = { column = \"a\" }\n\n\
         [template.header]\ntype = \"image\"\nlink = { column = \"image\" }\n\n\
         [[template.buttons]]\nindex = 0\ntype = \"url\"\nsuffix = { column = \"order\" }\n\n\
         [[template.buttons]]\nindex = 1\ntype = \"quick_reply\"\npayload = { value = \"STOP\" }\n",
        "[template]\nname = \"t\"\nlanguage = \"es_MX\"\nbody = \"Factura {{1}}.\"\n\n\
         [template.variables]\n\"1\" = { column = \"a\" }\n\n\
         [template.header]\ntype = \"document\"\nlink = { column = \"doc\" }\nfilename = \"f.pdf\"\n\n\
         [[template.buttons]]\nindex = 0\ntype = \"copy_code\"\ncode = { column = \"code\" }\n",
        "[template]\nname = \"t\"\nlanguage = \"es_MX\"\nbody = \"Aquí {{1}}.\"\n\n\
         [template.variables]\n\"1\" = { column = \"a\" }\n\n\
         [template.header]\ntype = \"location\"\nlatitude = { value = \"19.4\" }\n\
         longitude = { column = \"lon\" }\nname = { value = \"Roma\" }\naddress = { column = \"addr\" }\n",
        "[template]\nname = \"t\"\nlanguage = \"es_MX\"\nbody = \"Tu pedido.\"\n\n\
         [template.header]\ntype = \"text\"\ntext = { column = \"a\" }\n",
    ];

    fn campaign(template: &str) -> Campaign {
        Campaign::parse(
            &format!("{CAMPAIGN}{template}{PROVIDER}"),
            Path::new("dir/promo.toml"),
        )
        .unwrap_or_else(|e| panic!("{e}\n{template}"))
    }

    /// How many values a contact of this campaign brings.
    fn values_of(c: &Campaign) -> usize {
        c.template.sources.len()
            + c.template.parts.len()
            + usize::from(c.template.language_column.is_some())
    }

    fn serialized(c: &Campaign, message: &Message) -> Vec<u8> {
        let mut body = message_body(c, &message.to, &message.values);
        if let Body::Template(t) = &mut body
            && !message.occurrence.is_empty()
        {
            t.biz_opaque_callback_data = crate::row_key::callback_data(
                &c.id,
                &crate::row_key::RowKey {
                    person: message.to.person(),
                    occurrence: message.occurrence.clone(),
                },
            );
        }
        serde_json::to_vec(&body).unwrap()
    }

    fn to(bsuid: Option<String>, national: u64) -> To {
        match bsuid {
            Some(bsuid) => To::Bsuid { bsuid, person: -7 },
            None => To::Phone(
                crate::phone::E164::normalize(&format!("+52155{national:08}"), None).unwrap(),
            ),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Whatever the values (quotes, control characters, the stand-ins' own
        /// private-use characters), a prepared body is byte for byte serde_json's.
        #[test]
        fn a_prepared_body_is_the_serialized_one(
            template in 0..TEMPLATES.len(),
            extra in -1i64..2,
            values in proptest::collection::vec("(?s).{0,12}|[\"\\\\\u{0}-\u{1f}\u{e000}\u{e001}a]{0,6}", 8),
            bsuid in proptest::option::of("[A-Za-z0-9.\"\\\\\u{e000}]{1,20}"),
            national in 0u64..100_000_000,
            occurrence in "|2026-12-0[1-9]",
        ) {
            let c = campaign(TEMPLATES[template]);
            // The campaign's number of values, and one fewer or more.
            let n = usize::try_from(values_of(&c) as i64 + extra).unwrap_or(0).min(values.len());
            let message = Message {
                to: to(bsuid, national),
                values: values[..n].to_vec(),
                occurrence,
            };
            let prepared = Prepared::default();
            let body = prepared.body(&c, &message);
            prop_assert!(body.is_some(), "a template message is prepared");
            prop_assert_eq!(
                String::from_utf8(body.unwrap()).unwrap(),
                String::from_utf8(serialized(&c, &message)).unwrap()
            );
        }
    }

    #[test]
    fn a_message_with_another_number_of_values_is_serialized_in_full() {
        let c = campaign(TEMPLATES[1]);
        let n = values_of(&c);
        let message = |n: usize| Message {
            to: to(None, 12_345_678),
            values: (0..n).map(|i| format!("v{i}")).collect(),
            occurrence: String::new(),
        };
        let prepared = Prepared::default();
        assert!(prepared.body(&c, &message(n)).is_some());
        assert!(prepared.body(&c, &message(n + 1)).is_none());
        let body = prepared.body(&c, &message(n)).unwrap();
        assert_eq!(body, serialized(&c, &message(n)));
    }

    #[test]
    fn a_session_message_is_not_prepared() {
        let text = format!(
            "{CAMPAIGN}[template]\nbody = \"Hola {{{{1}}}}\"\n\n[template.variables]\n\
             \"1\" = {{ column = \"a\" }}\n{PROVIDER}"
        )
        .replace(
            "category = \"marketing\"",
            "kind = \"session\"\ncategory = \"utility\"",
        );
        let c = Campaign::parse(&text, Path::new("dir/s.toml")).unwrap();
        let message = Message {
            to: to(None, 1),
            values: vec!["Ana".into()],
            occurrence: String::new(),
        };
        assert!(Prepared::default().body(&c, &message).is_none());
    }
}
