//! Meta's WhatsApp Cloud API: `POST {base_url}/{api_version}/{phone_number_id}/messages`.
//!
//! Request bodies follow `Message` in Meta's OpenAPI description (v23.0), including
//! the fields that examples on the web often leave out and the schema requires:
//! `recipient_type: "individual"` and `template.language.policy: "deterministic"`.

use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::{Message, Provider, Response, SendFuture};
use crate::campaign::{Campaign, MessageKind, ProviderConfig};
use crate::phone::E164;
use crate::secret::Secret;
use crate::template::PlaceholderKey;

#[derive(Serialize)]
pub struct TemplateMessage<'a> {
    messaging_product: &'static str,
    recipient_type: &'static str,
    to: String,
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
    #[serde(skip_serializing_if = "Vec::is_empty")]
    components: Vec<Component<'a>>,
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
    to: String,
    #[serde(rename = "type")]
    kind: &'static str,
    text: TextBody,
}

#[derive(Serialize)]
struct TextBody {
    body: String,
    preview_url: bool,
}

/// The request body for one recipient, as the campaign's kind requires.
#[derive(Serialize)]
#[serde(untagged)]
pub enum Body<'a> {
    Template(TemplateMessage<'a>),
    Text(TextMessage),
}

pub fn message_body<'a>(campaign: &'a Campaign, phone: E164, values: &'a [String]) -> Body<'a> {
    match campaign.kind {
        MessageKind::Template => Body::Template(template_message(campaign, phone, values)),
        MessageKind::Session => Body::Text(TextMessage {
            messaging_product: "whatsapp",
            recipient_type: "individual",
            to: phone.to_string(),
            kind: "text",
            text: TextBody {
                body: campaign.template.body.render(values),
                preview_url: false,
            },
        }),
    }
}

/// What `biz_opaque_callback_data` carries: the campaign and the recipient's journal key.
pub fn callback_data(campaign_id: &str, phone: E164) -> String {
    format!("wacampaign:{campaign_id}:{}", phone.digits())
}

/// Reads `biz_opaque_callback_data` back into (campaign id, journal key).
pub fn parse_callback_data(data: &str) -> Option<(&str, u64)> {
    let rest = data.strip_prefix("wacampaign:")?;
    let (campaign, key) = rest.rsplit_once(':')?;
    Some((campaign, key.parse().ok()?))
}

/// The request body for one recipient, exactly as it is sent.
pub fn template_message<'a>(
    campaign: &'a Campaign,
    phone: E164,
    values: &'a [String],
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
    let components = if parameters.is_empty() {
        Vec::new()
    } else {
        vec![Component {
            kind: "body",
            parameters,
        }]
    };
    TemplateMessage {
        messaging_product: "whatsapp",
        recipient_type: "individual",
        to: phone.to_string(),
        kind: "template",
        template: TemplateObject {
            name: &template.name,
            language: Language {
                policy: "deterministic",
                code: &template.language,
            },
            components,
        },
        biz_opaque_callback_data: callback_data(&campaign.id, phone),
    }
}

/// The Cloud API as a [`Provider`]: one `reqwest::Client`, reused, with explicit
/// timeouts (reqwest has none by default).
pub struct CloudApi {
    client: reqwest::Client,
    url: String,
    token: Secret,
    authorization: String,
    campaign: Campaign,
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
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(*timeout)
            .pool_max_idle_per_host(campaign.sending.concurrency)
            .user_agent(concat!("wacampaign/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        Ok(CloudApi {
            client,
            url: format!("{base_url}/{api_version}/{phone_number_id}/messages"),
            authorization: format!("Bearer {}", token.expose()),
            token,
            campaign: campaign.clone(),
        })
    }

    async fn post(&self, message: &Message) -> Response {
        let body = message_body(&self.campaign, message.phone, &message.values);
        let sent = self
            .client
            .post(&self.url)
            .header(reqwest::header::AUTHORIZATION, &self.authorization)
            .json(&body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => return self.transport_error(&e),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            // The status line arrived, so a 2xx means Meta took the message.
            Err(e) if (200..300).contains(&status) => {
                return Response::Accepted {
                    message_id: None,
                    wa_id: None,
                    status: Some(format!(
                        "accepted; body unreadable: {}",
                        self.token.redact(&e.to_string())
                    )),
                };
            }
            Err(e) => return self.transport_error(&e),
        };
        if (200..300).contains(&status) {
            let parsed: Option<SendResponse> = serde_json::from_slice(&bytes).ok();
            let message = parsed.as_ref().and_then(|p| p.messages.first());
            // Every field is stored and shown: scrub the token from them too, in
            // case the server echoes what it was sent.
            let redact = |text: &String| self.token.redact(text);
            return Response::Accepted {
                message_id: message.map(|m| redact(&m.id)),
                wa_id: parsed
                    .as_ref()
                    .and_then(|p| p.contacts.first())
                    .and_then(|c| c.wa_id.as_ref())
                    .map(redact),
                status: message.and_then(|m| m.message_status.as_ref()).map(redact),
            };
        }
        let error = serde_json::from_slice::<ErrorResponse>(&bytes)
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
            None => format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            ),
        };
        Response::Rejected {
            family: super::Family::Meta,
            http_status: status,
            code: error.and_then(|e| e.code),
            detail: self.token.redact(&detail),
            retry_after,
        }
    }

    fn transport_error(&self, error: &reqwest::Error) -> Response {
        // reqwest's messages name the URL, never headers; redact anyway.
        let detail = self.token.redact(&format!("{error:#}"));
        if error.is_connect() {
            Response::NotSent { detail }
        } else {
            Response::InDoubt { detail }
        }
    }
}

impl Provider for CloudApi {
    fn send<'a>(&'a self, message: &'a Message) -> SendFuture<'a> {
        Box::pin(self.post(message))
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
