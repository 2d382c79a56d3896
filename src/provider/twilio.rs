//! Twilio's Messages API for WhatsApp:
//! `POST {base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded,
//! with HTTP Basic auth (an API key SID and secret, or the account SID and auth token).
//!
//! Twilio queues requests above a sender's throughput for hours and keeps sending
//! from its queue, so a halted campaign would go on messaging people. The pacer keeps
//! requests at the campaign's rate, which should stay below the sender's.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Deserialize;

use super::{Family, Message, Provider, Response, SendFuture};
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
                    config.account_sid_env
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
            config.api_key_sid_env,
            config.api_key_secret_env,
            config.auth_token_env
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
    if let Some(content_sid) = &campaign.template.content_sid {
        fields.push(("ContentSid", content_sid.clone()));
    }
    let variables: BTreeMap<String, &str> = campaign
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
    client: reqwest::Client,
    url: String,
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
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(config.timeout)
            .pool_max_idle_per_host(campaign.sending.concurrency)
            .user_agent(concat!("wacampaign/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        Ok(Twilio {
            client,
            url: format!(
                "{}/2010-04-01/Accounts/{}/Messages.json",
                config.base_url, credentials.account_sid
            ),
            credentials,
            config: config.clone(),
            campaign: campaign.clone(),
        })
    }

    async fn post(&self, message: &Message) -> Response {
        let fields = form_fields(&self.campaign, &self.config, message.phone, &message.values);
        let sent = self
            .client
            .post(&self.url)
            .basic_auth(
                &self.credentials.username,
                Some(self.credentials.password.expose()),
            )
            .form(&fields)
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
            Err(_) if (200..300).contains(&status) => {
                return Response::Accepted {
                    message_id: None,
                    wa_id: None,
                    status: Some("accepted; body unreadable".to_owned()),
                };
            }
            Err(e) => return self.transport_error(&e),
        };
        if (200..300).contains(&status) {
            let parsed: Option<MessageResource> = serde_json::from_slice(&bytes).ok();
            return Response::Accepted {
                message_id: parsed.as_ref().and_then(|p| p.sid.clone()),
                wa_id: None,
                status: parsed.and_then(|p| p.status),
            };
        }
        let error: Option<TwilioError> = serde_json::from_slice(&bytes).ok();
        let detail = match &error {
            Some(e) => e.message.clone().unwrap_or_default(),
            None => format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            ),
        };
        // A 5xx may still have sent the message (Twilio says so): the table treats it
        // as in doubt.
        Response::Rejected {
            family: Family::Twilio,
            http_status: status,
            code: error.and_then(|e| e.code),
            detail: self.credentials.password.redact(&detail),
            retry_after,
        }
    }

    fn transport_error(&self, error: &reqwest::Error) -> Response {
        let detail = self.credentials.password.redact(&format!("{error:#}"));
        if error.is_connect() {
            Response::NotSent { detail }
        } else {
            Response::InDoubt { detail }
        }
    }
}

impl Provider for Twilio {
    fn send<'a>(&'a self, message: &'a Message) -> SendFuture<'a> {
        Box::pin(self.post(message))
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
