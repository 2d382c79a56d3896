//! Twilio's Messages API for WhatsApp:
//! `POST {base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded,
//! with HTTP Basic auth (an API key SID and secret, or the account SID and auth token).
//!
//! Twilio queues requests above a sender's throughput for hours and keeps sending
//! from its queue, so a halted campaign would go on messaging people. The pacer keeps
//! requests at the campaign's rate, which should stay below the sender's.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use serde::Deserialize;

use super::{Departure, Family, Message, Provider, Response, SendFuture, http};
use crate::campaign::{Campaign, MessageKind, TwilioConfig, TwilioSender};
use crate::phone::E164;
use crate::secret::Secret;
use crate::template::PlaceholderKey;

/// The credentials Twilio's Basic auth takes.
pub struct Credentials {
    pub account_sid: String,
    /// The API key SID, or the account SID with an auth token.
    pub username: String,
    pub password: Secret,
}

impl Credentials {
    /// Reads the account SID and the secret from the environment: an API key pair
    /// when both are set, else the auth token.
    pub fn load(config: &TwilioConfig) -> anyhow::Result<Credentials> {
        let env = |name: &str| {
            std::env::var(name)
                .ok()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let account_sid = match &config.account_sid {
            Some(sid) => sid.clone(),
            None => env(&config.account_sid_env).with_context(|| {
                format!(
                    "the environment variable {} is not set; export your Twilio account SID (AC...) \
                     there, or set provider.account_sid",
                    crate::secret::variable_shown(&config.account_sid_env)
                )
            })?,
        };
        if let (Some(key), Some(secret)) = (
            env(&config.api_key_sid_env),
            env(&config.api_key_secret_env),
        ) {
            return Ok(Credentials {
                account_sid,
                username: key,
                password: Secret::new(&secret, &config.api_key_secret_env)?,
            });
        }
        if let Some(token) = env(&config.auth_token_env) {
            return Ok(Credentials {
                username: account_sid.clone(),
                account_sid,
                password: Secret::new(&token, &config.auth_token_env)?,
            });
        }
        bail!(
            "no Twilio credentials: export {} and {} (an API key, preferred), or {} (the auth token)",
            crate::secret::variable_shown(&config.api_key_sid_env),
            crate::secret::variable_shown(&config.api_key_secret_env),
            crate::secret::variable_shown(&config.auth_token_env)
        )
    }
}

/// The form fields of one message, in the order they are sent.
pub fn form_fields(
    campaign: &Campaign,
    config: &TwilioConfig,
    phone: E164,
    values: &[String],
) -> Vec<(&'static str, String)> {
    let mut fields = vec![("To", format!("whatsapp:{phone}"))];
    match &config.sender {
        TwilioSender::From(from) => fields.push(("From", format!("whatsapp:{from}"))),
        TwilioSender::MessagingService(sid) => fields.push(("MessagingServiceSid", sid.clone())),
    }
    if campaign.kind == MessageKind::Session {
        fields.push(("Body", campaign.template.body.render(values)));
        if let Some(callback) = &config.status_callback {
            fields.push(("StatusCallback", callback.clone()));
        }
        return fields;
    }
    let language = campaign.template.language_of(values);
    if let Some(content_sid) = campaign.template.content_sid_for(language) {
        fields.push(("ContentSid", content_sid.to_owned()));
    }
    let body_len = campaign.template.sources.len();
    let mut variables: BTreeMap<String, &str> = campaign
        .template
        .body
        .placeholders()
        .iter()
        .zip(values)
        .map(|(key, value)| {
            let name = match key {
                PlaceholderKey::Positional(n) => n.to_string(),
                PlaceholderKey::Named(name) => name.clone(),
            };
            (name, value.as_str())
        })
        .collect();
    // The header's and buttons' values, under the Content template's variables.
    for (part, value) in campaign
        .template
        .parts
        .iter()
        .zip(values.get(body_len..).unwrap_or_default())
    {
        if let Some(variable) = &part.twilio_variable {
            variables.insert(variable.clone(), value.as_str());
        }
    }
    if !variables.is_empty() {
        fields.push((
            "ContentVariables",
            serde_json::to_string(&variables).unwrap_or_default(),
        ));
    }
    if let Some(callback) = &config.status_callback {
        fields.push(("StatusCallback", callback.clone()));
    }
    fields
}

pub struct Twilio {
    messages: http::Messages,
    credentials: Credentials,
    config: TwilioConfig,
    campaign: Campaign,
}

impl Twilio {
    pub fn new(
        campaign: &Campaign,
        config: &TwilioConfig,
        credentials: Credentials,
    ) -> anyhow::Result<Twilio> {
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            credentials.username,
            credentials.password.expose()
        ));
        Ok(Twilio {
            // The URL is left out of errors: a base URL may carry credentials.
            messages: http::Messages::new(
                &format!(
                    "{}/2010-04-01/Accounts/{}/Messages.json",
                    config.base_url, credentials.account_sid
                ),
                "application/x-www-form-urlencoded",
                &format!("Basic {basic}"),
                config.timeout,
                campaign.sending.in_flight_cap(),
            )?,
            credentials,
            config: config.clone(),
            campaign: campaign.clone(),
        })
    }

    async fn post(&self, message: &Message, departure: Departure) -> Response {
        // The plan leaves BSUID-only contacts out of a Twilio campaign.
        let Some(phone) = message.to.phone() else {
            return Response::Rejected {
                family: super::Family::Twilio,
                http_status: 400,
                code: None,
                detail: "Twilio sends to phone numbers only; this person is known by a business-scoped user ID alone".into(),
                retry_after: None,
            };
        };
        let fields = form_fields(&self.campaign, &self.config, phone, &message.values);
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&fields)
            .finish();
        let secret = &self.credentials.password;
        let answer = match self
            .messages
            .send(bytes::Bytes::from(body), departure, secret)
            .await
        {
            Ok(answer) => answer,
            Err(response) => return response,
        };
        if answer.is_success() {
            let parsed: Option<MessageResource> = serde_json::from_slice(&answer.body).ok();
            // Every field is stored and shown: scrub the secret from them too, in case
            // the server echoes what it was sent.
            return Response::Accepted {
                message_id: parsed
                    .as_ref()
                    .and_then(|p| p.sid.as_deref())
                    .map(|s| secret.redact(s)),
                wa_id: None,
                status: parsed.and_then(|p| p.status).map(|s| secret.redact(&s)),
            };
        }
        let error: Option<TwilioError> = serde_json::from_slice(&answer.body).ok();
        let detail = match &error {
            Some(e) => e.message.clone().unwrap_or_default(),
            None => answer.snippet(secret),
        };
        // A 5xx may still have sent the message (Twilio says so): the table treats it
        // as in doubt.
        Response::Rejected {
            family: Family::Twilio,
            http_status: answer.status,
            code: error.and_then(|e| e.code),
            detail: secret.redact(&detail),
            retry_after: answer.retry_after,
        }
    }
}

impl Provider for Twilio {
    fn send<'a>(&'a self, message: &'a Message, departure: Departure) -> SendFuture<'a> {
        Box::pin(self.post(message, departure))
    }
}

#[derive(Deserialize)]
struct MessageResource {
    sid: Option<String>,
    status: Option<String>,
}

#[derive(Deserialize)]
struct TwilioError {
    code: Option<i64>,
    message: Option<String>,
}
