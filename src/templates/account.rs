//! Whose templates a campaign uses: the key its cache is stored under.

use std::fmt;
use std::path::PathBuf;

use crate::campaign::{Campaign, ProviderConfig};

/// An account that holds templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Account {
    /// A WhatsApp Business Account, by its ID.
    Waba(String),
    /// The simulator's account: the saved `message_templates` answer it serves.
    Simulator(PathBuf),
    /// A Twilio account (`AC...`), whose Content API holds its WhatsApp templates.
    Twilio(String),
}

impl Account {
    /// The campaign's account: `--waba-id` first, then `provider.waba_id`, the
    /// simulator's `provider.templates` file, or Twilio's `provider.account_sid`.
    /// `None` when the campaign names none.
    pub fn of(campaign: &Campaign, waba_id: Option<&str>) -> Option<Account> {
        if let Some(id) = waba_id {
            return Some(Account::Waba(id.to_owned()));
        }
        match &campaign.provider {
            ProviderConfig::CloudApi { waba_id, .. } => waba_id.clone().map(Account::Waba),
            ProviderConfig::Simulator(config) => config.templates.clone().map(Account::Simulator),
            // Named in the file: an account SID only in the environment leaves
            // pre-flight off, as before template sync existed.
            ProviderConfig::Twilio(config) => config.account_sid.clone().map(Account::Twilio),
        }
    }

    /// The key its cache is stored under.
    pub fn key(&self) -> String {
        match self {
            Account::Waba(id) => format!("waba:{id}"),
            Account::Twilio(sid) => format!("twilio:{sid}"),
            Account::Simulator(file) => format!(
                "simulator:{}",
                file.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
        }
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Account::Waba(id) => write!(f, "WhatsApp Business Account {id}"),
            Account::Twilio(sid) => write!(f, "Twilio account {sid}"),
            Account::Simulator(file) => {
                write!(f, "the simulator's account ({})", file.display())
            }
        }
    }
}

/// Whether `id` is a WhatsApp Business Account ID (digits only).
pub fn valid_waba_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())
}
