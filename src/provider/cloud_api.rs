//! Meta's WhatsApp Cloud API: `POST {base_url}/{api_version}/{phone_number_id}/messages`.
//!
//! Request bodies follow `Message` in Meta's OpenAPI description (v23.0), including
//! the fields that examples on the web often leave out and the schema requires:
//! `recipient_type: "individual"` and `template.language.policy: "deterministic"`.

use serde::Serialize;

use crate::campaign::Campaign;
use crate::plan::Recipient;
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

/// What `biz_opaque_callback_data` carries: the campaign and the recipient's journal key.
pub fn callback_data(campaign_id: &str, recipient: &Recipient) -> String {
    format!("wacampaign:{campaign_id}:{}", recipient.phone.digits())
}

/// The request body for one recipient, exactly as it is sent.
pub fn template_message<'a>(
    campaign: &'a Campaign,
    recipient: &'a Recipient,
) -> TemplateMessage<'a> {
    let template = &campaign.template;
    let parameters: Vec<TextParameter<'a>> = template
        .body
        .placeholders()
        .iter()
        .zip(&recipient.values)
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
        to: recipient.phone.to_string(),
        kind: "template",
        template: TemplateObject {
            name: &template.name,
            language: Language {
                policy: "deterministic",
                code: &template.language,
            },
            components,
        },
        biz_opaque_callback_data: callback_data(&campaign.id, recipient),
    }
}
