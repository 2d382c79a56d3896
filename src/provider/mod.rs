//! Providers: Meta's Cloud API and the built-in simulator, behind one small trait,
//! so the send pipeline never knows which one it talks to.

pub mod classify;
pub mod cloud_api;
pub mod departure;
pub mod http;
pub mod prepared_body;
pub mod simulator;
pub mod twilio;
pub mod wire;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::campaign::{Campaign, ProviderConfig};
use crate::phone::E164;
use crate::secret::Secret;

pub use classify::{Class, classify};
pub use departure::{Departure, Pace};

/// One message to send: the recipient and its rendered values.
#[derive(Debug, Clone)]
pub struct Message {
    pub to: To,
    /// One value per placeholder, in send order.
    pub values: Vec<String>,
    /// The journal row's occurrence (empty for one message per person): carried
    /// with the message so its statuses find the row.
    pub occurrence: String,
}

/// Where a message goes: a number, or the business-scoped user ID of a person
/// known by that alone (with the journal's person key, for the callback data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum To {
    Phone(E164),
    Bsuid { bsuid: String, person: i64 },
}

impl To {
    pub fn phone(&self) -> Option<E164> {
        match self {
            To::Phone(p) => Some(*p),
            To::Bsuid { .. } => None,
        }
    }

    /// The journal's person for this address, for one message per person.
    pub fn person(&self) -> i64 {
        match self {
            To::Phone(p) => crate::row_key::person_of(*p),
            To::Bsuid { person, .. } => *person,
        }
    }

    /// Who the ledger records an opt-out for.
    pub fn identity(&self) -> crate::identity::Identity {
        match self {
            To::Phone(p) => crate::identity::Identity::Phone(*p),
            To::Bsuid { bsuid, .. } => crate::identity::Identity::Bsuid(bsuid.clone()),
        }
    }

    /// A recipient of a plan.
    pub fn of(recipient: &crate::plan::Recipient, person: i64) -> Option<To> {
        match (&recipient.phone, &recipient.bsuid) {
            (Some(p), _) => Some(To::Phone(*p)),
            (None, Some(b)) => Some(To::Bsuid {
                bsuid: b.to_string(),
                person,
            }),
            (None, None) => None,
        }
    }
}

impl std::fmt::Display for To {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            To::Phone(p) => p.fmt(f),
            To::Bsuid { bsuid, .. } => f.write_str(bsuid),
        }
    }
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
    /// Sends one message; `departure` is told when its request starts to leave (or
    /// that it never did).
    fn send<'a>(&'a self, message: &'a Message, departure: Departure) -> SendFuture<'a>;
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
        ProviderConfig::Simulator(config) => Arc::new(simulator::Simulator::new(
            config.clone(),
            campaign.category,
            &campaign.id,
        )),
    })
}

/// The request body a campaign's provider sends for one recipient: the Cloud API's
/// JSON (the simulator stands in for it), or Twilio's form fields as a JSON object.
pub fn request_body(campaign: &Campaign, to: &To, values: &[String]) -> serde_json::Value {
    match (&campaign.provider, to) {
        (ProviderConfig::Twilio(config), To::Phone(phone)) => serde_json::Value::Object(
            twilio::form_fields(campaign, config, *phone, values)
                .into_iter()
                .map(|(name, value)| (name.to_owned(), serde_json::Value::String(value)))
                .collect(),
        ),
        // The plan never gives Twilio a BSUID-only contact.
        (ProviderConfig::Twilio(_), To::Bsuid { .. }) => serde_json::Value::Null,
        (ProviderConfig::CloudApi { .. } | ProviderConfig::Simulator(_), _) => {
            serde_json::to_value(cloud_api::message_body(campaign, to, values)).unwrap_or_default()
        }
    }
}
