//! Providers: Meta's Cloud API and the built-in simulator, behind one small trait,
//! so the send pipeline never knows which one it talks to.

pub mod classify;
pub mod cloud_api;
pub mod http;
pub mod simulator;
pub mod twilio;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::campaign::{Campaign, ProviderConfig};
use crate::phone::E164;
use crate::secret::Secret;

pub use classify::{Class, classify};

/// One message to send: the recipient and its rendered values.
#[derive(Debug, Clone)]
pub struct Message {
    pub phone: E164,
    /// One value per placeholder, in send order.
    pub values: Vec<String>,
    /// The journal row's occurrence (empty for one message per person): carried
    /// with the message so its statuses find the row.
    pub occurrence: String,
}

/// What a provider said about one message, before classification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Response {
    /// The provider took the message: its id (a wamid, or a Twilio SID).
    Accepted {
        message_id: Option<String>,
        wa_id: Option<String>,
        status: Option<String>,
    },
    /// The provider answered with an error.
    Rejected {
        /// Whose error codes these are.
        family: Family,
        http_status: u16,
        code: Option<i64>,
        detail: String,
        #[serde(skip)]
        retry_after: Option<Duration>,
    },
    /// The request never left: connection refused, DNS failure. Safe to retry.
    NotSent { detail: String },
    /// The request may have been delivered: a timeout after it was written, a reset,
    /// a 5xx with no error code. Never resent without the operator's say-so.
    InDoubt { detail: String },
}

/// Whose error codes a response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Meta,
    Twilio,
}

pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Response> + Send + 'a>>;

/// A way to send template messages.
pub trait Provider: Send + Sync {
    fn send<'a>(&'a self, message: &'a Message) -> SendFuture<'a>;
}

/// Builds the provider a campaign names. Secrets are read here, before anything is
/// sent, so a missing token stops the run up front.
pub fn build(campaign: &Campaign) -> anyhow::Result<Arc<dyn Provider>> {
    Ok(match &campaign.provider {
        ProviderConfig::CloudApi { token, .. } => {
            let secret = Secret::load(token)?;
            Arc::new(cloud_api::CloudApi::new(campaign, secret)?)
        }
        ProviderConfig::Twilio(config) => {
            let credentials = twilio::Credentials::load(config)?;
            Arc::new(twilio::Twilio::new(campaign, config, credentials)?)
        }
        ProviderConfig::Simulator(config) => {
            Arc::new(simulator::Simulator::new(config.clone(), campaign.category))
        }
    })
}

/// The request body a campaign's provider sends for one recipient: the Cloud API's
/// JSON (the simulator stands in for it), or Twilio's form fields as a JSON object.
pub fn request_body(campaign: &Campaign, phone: E164, values: &[String]) -> serde_json::Value {
    match &campaign.provider {
        ProviderConfig::Twilio(config) => serde_json::Value::Object(
            twilio::form_fields(campaign, config, phone, values)
                .into_iter()
                .map(|(name, value)| (name.to_owned(), serde_json::Value::String(value)))
                .collect(),
        ),
        ProviderConfig::CloudApi { .. } | ProviderConfig::Simulator(_) => {
            serde_json::to_value(cloud_api::message_body(campaign, phone, values))
                .unwrap_or_default()
        }
    }
}
